//! `tune` end to end: it chooses on the head and only on the head, scores on the tail and only
//! on the tail, and writes a policy the controller accepts, a report and a summary.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

const POLICY: &str = r#"# model-a, as a planner wrote it
pool = "model-a"
min = 1
max = 400

[band]
low = 1.0
high = 1.5
setpoint = 1.25

[slo]
over_capacity = "0.1%"

[regions.us-east-1]
asg = "asg-a"
"#;

/// Three days a minute apart: the first 70 % steady, the rest with a 10-minute burst to four
/// times the level every hour. A lean band costs nothing on the steady part and loses
/// requests in every burst of the rest.
fn trace() -> String {
    let minutes = 3 * 1440;
    let head = minutes * 7 / 10;
    let mut s = String::from("timestamp_s,rps\n");
    for m in 0..minutes {
        let rps = if m < head {
            60.0
        } else if m % 60 < 10 {
            160.0
        } else {
            40.0
        };
        let _ = writeln!(s, "{},{rps}", m * 60);
    }
    s
}

fn tune(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"))
        .arg("tune")
        .arg("--trace")
        .arg(dir.join("rps.csv"))
        .arg("--policies")
        .arg(dir.join("policies"))
        .args([
            "--pool",
            "model-a",
            "--mean-rps",
            "60",
            "--baseline-setpoints",
            "1.0",
        ])
        .arg("--out")
        .arg(dir.join("out"))
        .args(extra)
        .output()
        .unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/model-a.toml"), POLICY).unwrap();
    std::fs::write(dir.path().join("rps.csv"), trace()).unwrap();
    dir
}

fn row<'a>(rows: &'a [serde_json::Value], policy: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["policy"] == policy)
        .unwrap_or_else(|| panic!("no row {policy} in {rows:?}"))
}

#[test]
fn tune_chooses_on_the_head_and_scores_on_the_tail_only() {
    let dir = setup();
    let o = tune(dir.path(), &["--knob", "band.high=1.2,1.9"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let out = dir.path().join("out");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();

    // On the steady head the lean band is cheaper and loses nothing: it is the choice. Had the
    // bursty tail been looked at, it would not be.
    let settings = summary["chosen"]["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 1, "{summary}");
    assert_eq!(settings[0]["key"], "band.high");
    assert_eq!(settings[0]["value"], "1.9", "{summary}");
    // The later part says what the choice is worth there: cheaper but losing more than the
    // current policy (the bursts), a trade-off, not an improvement.
    assert!(
        summary["verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("trade_off_")),
        "{summary}"
    );
    let head_tuned = &summary["head"]["tuned"];
    assert_eq!(head_tuned["over_capacity_pct"], 0.0, "{summary}");

    // The tail is scored on the tail: the bursts the head never had cost the lean band requests,
    // and its instance-hours are those of the tail's 30 % only.
    let split = summary["split_s"].as_u64().unwrap();
    let duration = summary["duration_s"].as_u64().unwrap();
    assert_eq!(split, 3 * 86_400 * 7 / 10 / 60 * 60);
    assert_eq!(duration, 3 * 86_400);
    let rows = summary["tail"]["rows"].as_array().unwrap();
    let tail_tuned = row(rows, "tuned");
    assert!(
        tail_tuned["over_capacity_pct"].as_f64().unwrap() > 0.5,
        "{tail_tuned}"
    );
    let head_hours = head_tuned["instance_hours"].as_f64().unwrap();
    let tail_hours = tail_tuned["instance_hours"].as_f64().unwrap();
    // The head is 50.4 h, the tail 21.6 h: even holding half as many instances again for the
    // bursts, the tail's hours are fewer than the head's.
    assert!(
        tail_hours < head_hours * 0.8,
        "head {head_hours}, tail {tail_hours}"
    );
    for name in [
        "current",
        "tuned",
        "hpa",
        "target-tracking",
        "oracle",
        "hpa@1",
        "target-tracking@1",
    ] {
        row(rows, name);
    }
    assert!(row(rows, "tuned")["savings_at_equal_loss"].is_number());

    // The policy file: valid, commented, the tuned band in it, the planner's comment kept.
    let text = std::fs::read_to_string(out.join("model-a.toml")).unwrap();
    assert!(
        text.starts_with("# Tuned by `mrgc-autoscaler tune`"),
        "{text}"
    );
    assert!(text.contains("# model-a, as a planner wrote it"), "{text}");
    assert!(text.contains("high = 1.9 # tuned (was 1.5)"), "{text}");
    let check = Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"))
        .args(["policy", "check"])
        .arg(out.join("model-a.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // The live policy is untouched.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("policies/model-a.toml")).unwrap(),
        POLICY
    );

    // The report: both Pareto charts with every family's marks.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(
        html.matches("instance-hours against requests over capacity")
            .count(),
        4
    );
    for fam in [
        "policy",
        "tuned policy",
        "HPA (setpoints)",
        "target tracking (setpoints)",
        "oracle",
    ] {
        assert!(
            html.contains(&format!(">{fam}</text>")),
            "{fam} missing from the report"
        );
    }

    // What it prints: the diff and the expected figures.
    assert!(
        stdout.contains("band.high: band 1.00–1.50 (setpoint 1.25) → band 1.27–1.90"),
        "{stdout}"
    );
    assert!(stdout.contains("expected: "), "{stdout}");
    // And what to make of it, from the later part the choice never saw.
    let verdict_line = stdout
        .lines()
        .find(|l| l.starts_with("verdict: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let says = match summary["verdict"].as_str().unwrap_or("") {
        "trade_off_better" => "a different trade-off that was cheaper at equal loss",
        "trade_off_worse" => "keep the current policy: on the later part the tuned one traded",
        other => panic!("verdict {other}: {summary}"),
    };
    assert!(verdict_line.contains(says), "{verdict_line}");
}

#[test]
fn tune_refuses_what_it_cannot_judge() {
    let dir = setup();
    // Too short to hold anything out.
    let short: String = trace()
        .lines()
        .take(1000)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("rps.csv"), short).unwrap();
    let o = tune(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least two days"));
    // A knob that does not exist is named.
    std::fs::write(dir.path().join("rps.csv"), trace()).unwrap();
    let o = tune(dir.path(), &["--knob", "band.hihg=1.2"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("band.hihg"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A split that leaves nothing to score.
    let o = tune(dir.path(), &["--split", "1.0"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(!dir.path().join("out/model-a.toml").exists());
}
