//! The command line as a user runs it.

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("RUST_LOG");
    c
}

#[test]
fn shipped_policies_are_valid() {
    let out = bin()
        .args(["policy", "check", "policies/"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pool in ["model-a", "model-b", "model-c"] {
        assert!(stdout.contains(&format!("ok  {pool}")), "{stdout}");
    }
    assert!(
        stdout.contains("us-east-1, us-east-2, us-west-2"),
        "{stdout}"
    );
}

#[test]
fn a_bad_policy_exits_64_naming_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "pool = \"model-x\"\nmin = 10\nmax = 5\nmax_stepp = 3\n\n[regions.us-east-1]\nasg = \"g\"\n\n[[schedule]]\nname = \"s\"\ncron = \"0 25 * * *\"\nduration = \"1h\"\nmin = 1\n",
    )
    .unwrap();
    let out = bin().args(["policy", "check"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!("{file}:3:7: min (10) is greater than max (5)")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:4:1: unknown key `max_stepp`")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:11:8: cron \"0 25 * * *\" is not valid")),
        "{err}"
    );
    assert!(err.contains("3 problems"), "{err}");
}

#[test]
fn explain_prints_the_decision_and_its_reason() {
    let out = bin()
        .args([
            "policy",
            "explain",
            "--pool",
            "model-a",
            "--region",
            "us-west-2",
            "--rps",
            "90",
            "--serving",
            "50",
            "--at",
            "2026-11-22T03:00:00Z",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // ceil(90 / 1.35) = 67, plus 10 % headroom = 74.
    assert!(stdout.contains("decision    scale-up to 74"), "{stdout}");
    assert!(
        stdout.contains("scale up to ceil(rps/1.35) = 67 + headroom 10% = 74"),
        "{stdout}"
    );
    assert!(stdout.contains("reason_code above_band"), "{stdout}");
    assert!(
        stdout.contains("1.80 rps/instance (90.0 rps over 50 serving + 0 launching)"),
        "{stdout}"
    );

    let out = bin()
        .args([
            "policy",
            "explain",
            "--pool",
            "nope",
            "--rps",
            "1",
            "--serving",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("known pools: model-a, model-b, model-c")
    );
}

#[test]
fn run_on_the_embedded_region_scales_every_pool_up_and_down_within_an_hour() {
    // The README's first command runs this at 60x (an hour in a minute); here at 3600x.
    let out = bin()
        .args(["run", "--duration", "60m", "--speed", "3600"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("backend: local (embedded in-memory region us-east-1"),
        "{stdout}"
    );
    for pool in ["model-a", "model-b", "model-c"] {
        let lines: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains(&format!(" {pool} ")))
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(" scale-up ") && l.contains("above_band")),
            "{pool} never scaled up:\n{stdout}"
        );
        assert!(
            lines.iter().any(|l| l.contains(" scale-down ")),
            "{pool} never scaled down:\n{stdout}"
        );
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("pool ") || l.contains(": ")),
            "a decision without a reason"
        );
    }
    // The stop line; the cycle count depends on how the host schedules a 1 ms sleep at 3600x.
    let last = stdout.lines().last().unwrap_or("");
    assert!(last.starts_with("stopped after +01:00:"), "{last}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = bin().args(["run", "--interval", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a duration"));
    let out = bin()
        .args(["run", "--policies", "does-not-exist"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist:1:1: cannot read"));
}
