//! The command line as a user runs it.

use std::process::Command;

use mrgc_autoscaler::telemetry::sample;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("RUST_LOG");
    // The embedded run's decision log goes under target/, not into the repository.
    c.env(
        "MRGC_STATE_DIR",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-state"),
    );
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
    // The shipped policy sizes from an SLO; one observation is no history, so the band as
    // written decides: ceil(90 / 1.25) = 72.
    assert!(stdout.contains("decision    scale-up to 72"), "{stdout}");
    assert!(
        stdout.contains("scale up to ceil(rps/1.25) = 72"),
        "{stdout}"
    );
    assert!(stdout.contains("reason_code slo_learning"), "{stdout}");
    assert!(
        stdout.contains("1.80 rps/instance (90.0 rps over 50 serving + 0 launching)"),
        "{stdout}"
    );

    // A scale-down says how it will be carried out: a drain, not a lower desired capacity.
    let out = bin()
        .args([
            "policy",
            "explain",
            "--pool",
            "model-b",
            "--rps",
            "30",
            "--serving",
            "40",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("decision    scale-down"), "{stdout}");
    assert!(
        stdout.contains("act         drain ")
            && stdout.contains("the lowest queue_depth")
            && stdout.contains("once idle or after 5m"),
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
    // The README's first command runs this at 60x (an hour in a minute); here at 720x (five
    // seconds): faster, a busy machine's pause of a tenth of a second would be minutes of
    // controller time, and heartbeats would go stale in it.
    let out = bin()
        .args(["run", "--duration", "60m", "--speed", "720"])
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
            lines.iter().any(|l| l.contains(" scale-up ")
                && (l.contains("above_band: ") || l.contains("slo_learning: "))),
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

/// The first screen says what it is doing: the policy in force for each pool, that the replay
/// loops, what it shows; then only the decisions that change something and a summary line per
/// pool every 10 controller-minutes. `--verbose` adds every hold.
#[test]
fn the_embedded_run_explains_itself_and_keeps_holds_for_verbose() {
    let out = bin()
        .args([
            "run",
            "--duration",
            "65m",
            "--speed",
            "3600",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("backend: local (embedded in-memory region us-east-1, traffic replay at 3600x), policy files in policies (hash "),
        "{stdout}"
    );
    assert!(!stdout.contains("policies policies"), "{stdout}");
    // model-a's shipped policy: an SLO over the default band; us-east-1 overrides min.
    assert!(
        stdout.contains(
            "pool model-a    policy: SLO: at most 0.1% of requests over capacity (band 1–1.5 RPS per instance, made leaner from 1 day of the pool's history); min 6 max 240, 1 scheduled minimum; launch 6m"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("replay: azure-llm-2023-conv lasts 58m 23s of controller time")
            && stdout.contains("it loops when it ends"),
        "{stdout}"
    );
    // The 3503 s trace wraps once within 65 minutes.
    assert!(
        stdout.contains("+00:58:23 replay: azure-llm-2023-conv ended and loops"),
        "{stdout}"
    );
    let decisions: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('+') && l.contains(" us-east-1 model-"))
        .collect();
    assert!(
        decisions.iter().all(|l| !l.contains(" none ")),
        "a hold printed without --verbose:\n{stdout}"
    );
    for pool in ["model-a", "model-b", "model-c"] {
        let summaries: Vec<&&str> = decisions
            .iter()
            .filter(|l| l.contains(&format!(" {pool} ")) && l.contains(" summary "))
            .collect();
        // At +10, +20, ..., +60 minutes of controller time.
        assert_eq!(summaries.len(), 6, "{pool}:\n{stdout}");
        assert!(
            summaries[0].contains("since +00:00:00: "),
            "{}",
            summaries[0]
        );
        assert!(
            summaries
                .iter()
                .all(|l| l.contains(" holds") || l.contains(" hold"))
        );
    }

    let out = bin()
        .args([
            "run",
            "--duration",
            "5m",
            "--speed",
            "3600",
            "--listen",
            "127.0.0.1:0",
            "-v",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.contains(" model-a ")
            && l.contains(" none ")
            && l.contains("slo_learning: ")
            && l.contains("inside the band")),
        "--verbose shows every hold:\n{stdout}"
    );
    let out = bin()
        .args([
            "run",
            "--duration",
            "5m",
            "--speed",
            "3600",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("MRGC_VERBOSE", "true")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(" none "));
}

/// The embedded run keeps its decision log in --state-dir; `history --backend local` reads it
/// as `history` reads the table: newest first, text or JSON lines.
#[test]
fn history_reads_the_embedded_runs_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "run",
            "--duration",
            "30m",
            "--speed",
            "3600",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "decisions: recorded in {}/decisions.jsonl",
            dir.path().display()
        )),
        "{stdout}"
    );
    let scale_ups = stdout
        .lines()
        .filter(|l| l.contains(" model-a ") && l.contains(" scale-up "))
        .count();
    assert!(scale_ups >= 1, "{stdout}");

    let out = bin()
        .args([
            "history",
            "--backend",
            "local",
            "--pool",
            "model-a",
            "--since",
            "1d",
        ])
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l.contains(" us-east-1 ")), "{text}");
    assert_eq!(
        lines.iter().filter(|l| l.contains(" scale-up ")).count(),
        scale_ups,
        "every scale-up the run printed is in the log:\n{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("applied slo_learning: ")),
        "{text}"
    );

    let out = bin()
        .args([
            "history",
            "--backend",
            "local",
            "--pool",
            "model-a",
            "--json",
            "--since",
            "1d",
        ])
        .env("MRGC_STATE_DIR", dir.path())
        .output()
        .unwrap();
    let json: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(json.len(), lines.len());
    let stamps: Vec<&str> = json
        .iter()
        .map(|j| j["timestamp"].as_str().unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort_by(|a, b| {
        b.parse::<f64>()
            .unwrap()
            .total_cmp(&a.parse::<f64>().unwrap())
    });
    assert_eq!(stamps, sorted, "newest first");
    assert!(
        json.iter()
            .all(|j| j["model_pool"] == "model-a" && j["policy_hash"].is_string())
    );

    // No log there: a usage error that says how to make one.
    let out = bin()
        .args(["history", "--backend", "local", "--pool", "model-a"])
        .arg("--state-dir")
        .arg(dir.path().join("nothing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mrgc-autoscaler run"));
}

#[test]
fn version_names_the_version_commit_and_build_date() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    let line = v.trim();
    let rest = line
        .strip_prefix(&format!(
            "mrgc-autoscaler {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, built) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line}"
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(built).is_ok() && built.ends_with('Z'),
        "{line}"
    );
}

#[test]
fn help_names_the_program_whatever_the_executable_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("some-other-name");
    std::fs::copy(env!("CARGO_BIN_EXE_mrgc-autoscaler"), &renamed).unwrap();
    for args in [vec!["--help"], vec!["run", "--help"]] {
        let out = Command::new(&renamed).args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("Usage: mrgc-autoscaler"), "{args:?}: {text}");
        assert!(!text.contains("some-other-name"), "{text}");
    }
}

/// `run --backend aws` takes its region from --region/MRGC_REGION, else AWS_REGION, else
/// AWS_DEFAULT_REGION, and refuses to start (64) without one.
#[test]
fn run_on_aws_finds_its_region_in_the_sdks_variables_or_exits_64() {
    let aws = |env: &[(&str, &str)]| {
        let mut c = bin();
        c.args([
            "run",
            "--backend",
            "aws",
            "--table-prefix",
            "t",
            "--listen",
            "127.0.0.1:0",
        ]);
        for k in ["MRGC_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"] {
            c.env_remove(k);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = aws(&[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("--backend aws needs a region: pass --region (MRGC_REGION) or set AWS_REGION"),
        "{err}"
    );
    // A region no policy has stops before any AWS call (78), naming the region it took.
    for (k, region) in [
        ("AWS_REGION", "eu-west-9"),
        ("AWS_DEFAULT_REGION", "eu-west-8"),
        ("MRGC_REGION", "eu-west-7"),
    ] {
        let (code, err) = aws(&[(k, region)]);
        assert_eq!(code, Some(78), "{k}: {err}");
        assert!(
            err.contains(&format!("no pool has a policy for region {region}")),
            "{k}: {err}"
        );
    }
    let (code, err) = aws(&[("MRGC_REGION", "eu-west-7"), ("AWS_REGION", "eu-west-9")]);
    assert_eq!(code, Some(78));
    assert!(err.contains("region eu-west-7"), "MRGC_REGION wins: {err}");
}

/// Every flag of `policy explain` and `simulate` has an MRGC_* twin; the simulator's table has
/// a legend.
#[test]
fn explain_and_simulate_read_their_flags_from_the_environment() {
    let out = bin()
        .args(["policy", "explain"])
        .env("MRGC_POOL", "model-a")
        .env("MRGC_REGION", "us-west-2")
        .env("MRGC_EXPLAIN_RPS", "90")
        .env("MRGC_EXPLAIN_SERVING", "50")
        .env("MRGC_EXPLAIN_AT", "2026-11-22T03:00:00Z")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("decision    scale-up to 72"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("flat.csv");
    let mut csv = String::from("timestamp_s,rps\n");
    for m in 0..60 {
        csv.push_str(&format!("{},{}\n", m * 60, 20 + (m % 7)));
    }
    std::fs::write(&trace, csv).unwrap();
    let out = bin()
        .arg("simulate")
        .env("MRGC_SIM_TRACE", &trace)
        .env("MRGC_SIM_POOL", "model-c")
        .env("MRGC_SIM_MEAN_RPS", "20")
        .env("MRGC_SIM_LAUNCH_TIME", "4m")
        .env("MRGC_SIM_SEED", "3")
        .env("MRGC_SIM_BASELINES", "oracle")
        .env("MRGC_SIM_RESOLUTION", "60")
        .env("MRGC_SIM_OUT", dir.path().join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("model-c") && stdout.contains("[oracle]"),
        "{stdout}"
    );
    for column in [
        "inst-hours  ",
        "cost  ",
        "over-%  ",
        "short-s  ",
        "ups, downs  ",
        "peak  ",
        "util  ",
        "×oracle  ",
        "[name]  ",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(column)),
            "no legend line for {column}:\n{stdout}"
        );
    }
    let rows = std::fs::read_to_string(dir.path().join("out/timeseries.csv")).unwrap();
    // 60 minutes at 60 s resolution, for the policy and the oracle.
    assert_eq!(rows.lines().count(), 1 + 2 * 60, "{rows}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = bin().args(["run", "--interval", "soon"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "a bad flag is a usage error (EX_USAGE)"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a duration"));
    let out = bin()
        .args(["run", "--policies", "does-not-exist"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist:1:1: cannot read"));
}

/// Send `sig` with the shell's own `kill` (no procps needed).
fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {}", child.id())])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} failed");
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the endpoints");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read the response");
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        buf.split_once("\r\n\r\n").map_or("", |x| x.1).to_string(),
    )
}

/// Poll `/metrics` until the series `name{labels}` has `value` (at most ~10 s), returning the
/// last text.
fn wait_for_metric(addr: &str, name: &str, labels: &[(&str, &str)], value: f64) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = http_get(addr, "/metrics").1;
        if sample(&text, name, labels) == Some(value) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    text
}

#[test]
fn run_serves_its_endpoints_reloads_on_sighup_and_exits_0_on_sigterm() {
    use std::io::BufRead;
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for f in ["model-a.toml", "model-b.toml", "model-c.toml"] {
        std::fs::copy(shipped.join(f), dir.path().join(f)).unwrap();
    }
    let mut child = bin()
        .args([
            "run",
            "--speed",
            "600",
            "--listen",
            "127.0.0.1:0",
            "--policy-poll",
            "100ms",
            "--policies",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut s);
        s
    });
    let mut seen = Vec::new();
    let mut wait_line = |pred: &dyn Fn(&str) -> bool| -> String {
        while let Ok(l) = lines.recv_timeout(Duration::from_secs(10)) {
            seen.push(l.clone());
            if pred(&l) {
                return l;
            }
        }
        panic!("no such line in:\n{}", seen.join("\n"));
    };

    let endpoints = wait_line(&|l| l.starts_with("endpoints: http://"));
    let addr = endpoints["endpoints: http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    wait_line(&|l| l.contains("leader of us-east-1 (epoch 1)"));
    let region = [("region", "us-east-1")];
    let text = wait_for_metric(&addr, "mrgc_autoscaler_leader", &region, 1.0);
    assert_eq!(
        sample(&text, "mrgc_autoscaler_leader", &region),
        Some(1.0),
        "{text}"
    );
    // The build it runs, and the region on every series.
    let build = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("commit", mrgc_autoscaler::telemetry::COMMIT),
        ("built", mrgc_autoscaler::telemetry::BUILT),
        ("region", "us-east-1"),
    ];
    assert_eq!(
        sample(&text, "mrgc_autoscaler_build_info", &build),
        Some(1.0),
        "{text}"
    );
    for pool in ["model-a", "model-b", "model-c"] {
        let labels = [("pool", pool), ("region", "us-east-1")];
        let max = sample(&text, "mrgc_autoscaler_pool_max", &labels).expect("pool_max");
        let min = sample(&text, "mrgc_autoscaler_pool_min", &labels).expect("pool_min");
        assert!(min >= 1.0 && min <= max, "{pool}: min {min} max {max}");
        let failed = [("pool", pool), ("region", "us-east-1"), ("step", "failed")];
        assert_eq!(
            sample(&text, "mrgc_autoscaler_drains_total", &failed),
            Some(0.0)
        );
    }
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.contains("region=\"us-east-1\"")),
        "{text}"
    );
    let (code, body) = http_get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("ready: leader (epoch 1)"), "{body}");

    // An invalid edit is rejected (and logged with its file:line:col); SIGHUP re-reads it and
    // rejects it again; the process keeps running on the last good policy.
    std::fs::write(
        dir.path().join("model-a.toml"),
        "pool = \"model-a\"\nmin = 10\nmax = 5\n[regions.us-east-1]\nasg = \"g\"\n",
    )
    .unwrap();
    let reloads = "mrgc_autoscaler_policy_reloads_total";
    let rejected = [("region", "us-east-1"), ("result", "rejected")];
    let text = wait_for_metric(&addr, reloads, &rejected, 1.0);
    assert_eq!(sample(&text, reloads, &rejected), Some(1.0), "{text}");
    signal(&child, "HUP");
    let text = wait_for_metric(&addr, reloads, &rejected, 2.0);
    assert_eq!(sample(&text, reloads, &rejected), Some(2.0), "{text}");
    assert_eq!(http_get(&addr, "/readyz").0, 200, "still ready");

    signal(&child, "TERM");
    let mut status = None;
    for _ in 0..100 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("still running 10 s after SIGTERM");
    };
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    seen.extend(lines.try_iter());
    let out = seen.join("\n");
    assert!(
        out.contains("released the lease of us-east-1 (epoch 1)"),
        "{out}"
    );
    assert!(
        seen.last().is_some_and(|l| l.starts_with("stopped after")),
        "{out}"
    );
    let err = stderr.join().unwrap();
    assert!(err.contains("policy reload rejected"), "{err}");
    assert!(
        err.contains("model-a.toml:3:7: min (10) is greater than max (5)"),
        "{err}"
    );
}

#[test]
fn a_bad_shadow_policy_or_lease_setting_exits_64_before_running() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("model-a.toml"),
        "pool = \"model-a\"\nmin = 3\nmax = 2\n[regions.us-east-1]\nasg = \"g\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["run", "--listen", "127.0.0.1:0", "--shadow-policies"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model-a.toml:3:7: min (3) is greater than max (2)"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "never started"
    );

    let out = bin()
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--lease-duration",
            "6s",
            "--renew-every",
            "5s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("must exceed --renew-every (5s) by at least 2s"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Absurd values and malformed input from outside end in a located error and exit 64 (or 78
/// for an environment that does not match), never a panic (101), an abort (134) or a kill.
#[test]
fn absurd_values_exit_64_with_a_message_and_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("far.csv");
    std::fs::write(&trace, "timestamp_s,rps\n0,5\n4294967295,5\n").unwrap();
    let policy = dir.path().join("huge.toml");
    std::fs::write(
        &policy,
        "pool = \"p\"\nmin = 30000000\nmax = 30000000\n[regions.us-east-1]\nasg = \"g\"\n",
    )
    .unwrap();
    let trace = trace.display().to_string();
    let policy = policy.display().to_string();
    // (arguments, environment, what stderr must say)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["run", "--renew-every", "300000000000y"],
            vec![],
            "--renew-every",
        ),
        (
            vec!["run", "--policy-poll", "300000000000y"],
            vec![],
            "--policy-poll",
        ),
        (
            vec!["run", "--speed", "1e-18", "--duration", "1m"],
            vec![],
            "--speed",
        ),
        (vec!["run"], vec![("MRGC_INTERVAL", "abc")], "--interval"),
        (
            vec!["run", "--lease-duration", "0s"],
            vec![],
            "--lease-duration",
        ),
        (
            vec!["simulate", "--trace", &trace, "--baselines", "none"],
            vec![],
            "far.csv:3: step 4294967295 s is longer than a day",
        ),
        (
            vec!["policy", "check", &policy],
            vec![],
            "huge.toml:2:7: min = 30000000 is more than 100000 instances",
        ),
        (
            vec!["run", "--policies", &policy, "--duration", "1m"],
            vec![],
            "huge.toml:3:7: max = 30000000 is more than 100000 instances",
        ),
    ];
    for (args, env, says) in cases {
        let mut cmd = bin();
        cmd.args(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} should say `{says}`:\n{err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// The signal handlers are installed before any work: a SIGTERM during start-up stops the
/// process cleanly (exit 0), it is not killed by the signal.
#[test]
fn a_sigterm_during_start_up_exits_0() {
    for delay_ms in [30, 150, 400] {
        let child = bin()
            .args(["run", "--listen", "127.0.0.1:0", "--speed", "3600"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        signal(&child, "TERM");
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "SIGTERM after {delay_ms} ms: {:?}",
            out.status
        );
    }
}
