//! Tests of parsing, validation and overrides.

use super::*;
use chrono::{TimeZone, Utc};
use std::path::PathBuf;
use std::time::Duration;

fn src(name: &str, text: &str) -> PolicySource {
    PolicySource {
        path: PathBuf::from(name),
        text: text.to_string(),
    }
}

const GOOD: &str = r#"
pool = "model-a"
min = 2
max = 40

[band]
low = 1.0
high = 1.5

[scale_down]
max_step = "20%"
stabilization = "10m"

[regions.us-east-1]
asg = "asg-a-use1"

[regions.us-west-2]
asg = "asg-a-usw2"
min = 1
max = 10

[[schedule]]
name = "peak"
cron = "0 13 * * 1-5"
duration = "3h"
min = 8
"#;

#[test]
fn parses_a_good_policy_with_defaults() {
    let set = parse_sources(&[src("a.toml", GOOD)]).expect("valid");
    let p = set.pool("model-a").expect("pool");
    assert_eq!(p.band.setpoint, 1.25);
    assert_eq!(p.scale_down.max_step, Step::Percent(20.0));
    assert_eq!(p.scale_up.max_step, Step::Percent(100.0));
    assert_eq!(p.regions["us-east-1"].min, 2);
    assert_eq!(p.regions["us-west-2"].max, 10);
    assert_eq!(p.instances.launch_time, Duration::from_secs(360));
    assert_eq!(p.schedules.len(), 1);
    assert_eq!(set.hash.len(), 12);
}

#[test]
fn collects_every_problem_with_its_line() {
    let text = r#"pool = "model-a"
min = 9
max = 3
colour = "blue"

[regions.us-east-1]
asg = "x"

[[schedule]]
name = "s"
cron = "61 * * * *"
duration = "1h"
min = 1
"#;
    let err = parse_sources(&[src("bad.toml", text)]).expect_err("invalid");
    let lines: Vec<(usize, &str)> = err
        .problems
        .iter()
        .map(|p| (p.line, p.what.as_str()))
        .collect();
    assert!(
        lines
            .iter()
            .any(|(l, w)| *l == 3 && w.contains("min (9) is greater than max (3)")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|(l, w)| *l == 4 && w.contains("unknown key `colour`")),
        "{err}"
    );
    assert!(
        lines.iter().any(|(l, w)| *l == 11 && w.contains("cron")),
        "{err}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("bad.toml:4:1: unknown key `colour`"),
        "{shown}"
    );
}

#[test]
fn suggests_the_closest_key() {
    let text = "pool = \"p\"\nmin = 1\nmax = 2\n[scale_down]\nstabilisation = \"5m\"\n[regions.us-east-1]\nasg = \"a\"\n";
    let err = parse_sources(&[src("p.toml", text)]).expect_err("invalid");
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(
        err.problems[0].fix.contains("did you mean `stabilization`"),
        "{err}"
    );
    assert_eq!((err.problems[0].line, err.problems[0].col), (5, 1));
}

#[test]
fn rejects_band_and_step_mistakes() {
    let text = r#"pool = "p"
min = 1
max = 2
[band]
low = 2.0
high = 1.5
[scale_up]
max_step = 0
[scale_down]
max_step = "lots"
[instances]
launch_time = "ten minutes"
[regions.us-east-1]
asg = "a"
"#;
    let err = parse_sources(&[src("p.toml", text)]).expect_err("invalid");
    let whats: Vec<&str> = err.problems.iter().map(|p| p.what.as_str()).collect();
    assert!(
        whats
            .iter()
            .any(|w| w.contains("band.low (2) must be below band.high (1.5)")),
        "{err}"
    );
    assert!(
        whats
            .iter()
            .any(|w| w.contains("scale_up.max_step` must be at least 1")),
        "{err}"
    );
    assert!(
        whats.iter().any(|w| w.contains("not a percentage")),
        "{err}"
    );
    assert!(whats.iter().any(|w| w.contains("not a duration")), "{err}");
}

#[test]
fn rejects_band_outside_range_and_missing_asg() {
    let text = "pool = \"p\"\nmin = 1\nmax = 2\n[band]\nlow = 0.0\nhigh = 150.0\n[regions.us-east-1]\nmin = 1\n";
    let err = parse_sources(&[src("p.toml", text)]).expect_err("invalid");
    let s = err.to_string();
    assert!(s.contains("band.low = 0 is outside"), "{s}");
    assert!(s.contains("band.high = 150 is outside"), "{s}");
    assert!(
        s.contains("region us-east-1 names no Auto Scaling Group"),
        "{s}"
    );
}

#[test]
fn rejects_duplicate_pools_across_files() {
    let err = parse_sources(&[src("a.toml", GOOD), src("b.toml", GOOD)]).expect_err("dup");
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].file == "b.toml");
    assert!(
        err.problems[0]
            .what
            .contains("already defined at a.toml:2:8"),
        "{err}"
    );
}

#[test]
fn reports_toml_syntax_errors_with_position() {
    let err = parse_sources(&[src("s.toml", "pool = \"p\"\nmin = \n")]).expect_err("syntax");
    assert_eq!(err.problems[0].line, 2, "{err}");
    assert!(err.problems[0].what.starts_with("not valid TOML"));
}

#[test]
fn schedules_raise_the_minimum_only_inside_their_window() {
    let set = parse_sources(&[src("a.toml", GOOD)]).expect("valid");
    let p = set.pool("model-a").expect("pool");
    // Monday 2026-11-23 13:30 UTC is inside "0 13 * * 1-5" + 3h.
    let inside = Utc
        .with_ymd_and_hms(2026, 11, 23, 13, 30, 0)
        .unwrap()
        .timestamp_millis();
    let after = Utc
        .with_ymd_and_hms(2026, 11, 23, 16, 0, 0)
        .unwrap()
        .timestamp_millis();
    let sunday = Utc
        .with_ymd_and_hms(2026, 11, 22, 13, 30, 0)
        .unwrap()
        .timestamp_millis();
    let b = p.bounds("us-east-1", inside).unwrap();
    assert_eq!((b.min, b.schedule.as_deref()), (8, Some("peak")));
    assert_eq!(p.bounds("us-east-1", after).unwrap().min, 2);
    assert_eq!(p.bounds("us-east-1", sunday).unwrap().min, 2);
    // Capped at the region's max.
    let w = p.bounds("us-west-2", inside).unwrap();
    assert_eq!(w.min, 8);
    assert!(p.bounds("eu-west-1", inside).is_none());
}

#[test]
fn drain_is_on_by_default_and_its_keys_are_checked() {
    let set = parse_sources(&[src("a.toml", GOOD)]).expect("valid");
    let p = set.pool("model-a").expect("pool");
    assert_eq!(p.scale_down.drain, Some(DEFAULT_DRAIN_TIMEOUT));
    let with = |extra: &str| {
        GOOD.replace(
            "stabilization = \"10m\"\n",
            &format!("stabilization = \"10m\"\n{extra}\n"),
        )
    };
    let set = parse_sources(&[src("a.toml", &with("drain_timeout = \"90s\""))]).unwrap();
    assert_eq!(
        set.pools["model-a"].scale_down.drain,
        Some(Duration::from_secs(90))
    );
    let set = parse_sources(&[src("a.toml", &with("drain = false"))]).unwrap();
    assert_eq!(set.pools["model-a"].scale_down.drain, None);
    for (extra, says) in [
        (
            "drain = \"yes\"",
            "`scale_down.drain` must be true or false",
        ),
        (
            "drain_timeout = \"2h\"",
            "scale_down.drain_timeout (2h) is longer than an hour",
        ),
        (
            "drain = false\ndrain_timeout = \"1m\"",
            "drain = false but a drain_timeout is set",
        ),
    ] {
        let err = parse_sources(&[src("a.toml", &with(extra))]).expect_err(extra);
        assert!(err.to_string().contains(says), "{extra}: {err}");
        assert!(err.problems.iter().all(|p| p.line >= 12), "{err}");
    }
    // Sweepable.
    let off = apply_override(p, "scale_down.drain", "false").unwrap();
    assert_eq!(off.scale_down.drain, None);
    let on = apply_override(&off, "scale_down.drain", "true").unwrap();
    assert_eq!(on.scale_down.drain, Some(DEFAULT_DRAIN_TIMEOUT));
    let t = apply_override(p, "scale_down.drain_timeout", "30s").unwrap();
    assert_eq!(t.scale_down.drain, Some(Duration::from_secs(30)));
    assert!(apply_override(p, "scale_down.drain", "maybe").is_err());
}

#[test]
fn hash_changes_with_content() {
    let a = hash_sources(&[src("a.toml", GOOD)]);
    let b = hash_sources(&[src("a.toml", &GOOD.replace("max = 40", "max = 41"))]);
    assert_ne!(a, b);
    assert_eq!(a, hash_sources(&[src("a.toml", GOOD)]));
}

/// The file parser and overrides (sweeps, tuning) go through one validator: an edit is
/// accepted by one exactly when it is accepted by the other. The cases include the three the
/// two once disagreed on (a stabilization over a day, a zero launch time, a window under a
/// minute) and the bounds on instance counts.
#[test]
fn overrides_and_files_accept_the_same_values() {
    let base = parse_sources(&[src("a.toml", GOOD)]).expect("valid");
    let p = base.pool("model-a").expect("pool");
    // (override key, value, the same edit as TOML in its section)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "scale_down.stabilization",
            "2d",
            "scale_down",
            "stabilization = \"2d\"",
        ),
        (
            "scale_down.stabilization",
            "20m",
            "scale_down",
            "stabilization = \"20m\"",
        ),
        (
            "instances.launch_time",
            "0s",
            "instances",
            "launch_time = \"0s\"",
        ),
        (
            "instances.launch_time",
            "3h",
            "instances",
            "launch_time = \"3h\"",
        ),
        (
            "instances.launch_time",
            "8m",
            "instances",
            "launch_time = \"8m\"",
        ),
        ("metrics.window", "30s", "metrics", "window = \"30s\""),
        ("metrics.window", "2m", "metrics", "window = \"2m\""),
        ("band.low", "0", "band", "low = 0.0"),
        ("band.high", "1.2", "band", "high = 1.2"),
        ("band.high", "0.9", "band", "high = 0.9"),
        ("scale_up.confirm", "4", "scale_up", "confirm = 4"),
        ("scale_up.max_step", "0", "scale_up", "max_step = 0"),
        (
            "scale_up.max_step",
            "2000%",
            "scale_up",
            "max_step = \"2000%\"",
        ),
        (
            "scale_down.collapse_below",
            "1.5",
            "scale_down",
            "collapse_below = 1.5",
        ),
        (
            "scale_down.drain_timeout",
            "2h",
            "scale_down",
            "drain_timeout = \"2h\"",
        ),
        (
            "forecast.trend_window",
            "1m",
            "forecast",
            "trend_window = \"1m\"",
        ),
        ("max", "30000000", "", "max = 30000000"),
        ("max", "300", "", "max = 300"),
        ("min", "50", "", "min = 50"),
    ];
    for (key, value, section, line) in cases {
        let text = if section.is_empty() {
            let (k, _) = line.split_once(" = ").unwrap();
            GOOD.lines()
                .map(|l| {
                    if l.starts_with(&format!("{k} = ")) {
                        line.to_string()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else if GOOD.contains(&format!("[{section}]\n")) {
            GOOD.replacen(
                &format!("[{section}]\n"),
                &format!("[{section}]\n{line}\n"),
                1,
            )
        } else {
            format!("{GOOD}\n[{section}]\n{line}\n")
        };
        // A key set twice in a section is a TOML error, not a validation one: drop the old line.
        let text = dedupe_keys(&text);
        let by_file = parse_sources(&[src("a.toml", &text)]);
        let by_override = apply_override(p, key, value);
        assert_eq!(
            by_file.is_ok(),
            by_override.is_ok(),
            "{key}={value}: file says {:?}, override says {:?}",
            by_file.as_ref().err().map(ToString::to_string),
            by_override.as_ref().err()
        );
        if let (Ok(f), Ok(o)) = (&by_file, &by_override) {
            let f = &f.pools["model-a"];
            assert_eq!(
                (
                    &f.band,
                    &f.scale_up,
                    &f.scale_down,
                    &f.metrics,
                    &f.instances,
                    &f.regions
                ),
                (
                    &o.band,
                    &o.scale_up,
                    &o.scale_down,
                    &o.metrics,
                    &o.instances,
                    &o.regions
                ),
                "{key}={value}"
            );
        }
    }
}

/// Keep the first of two `key = ...` lines within one TOML section (the inserted edit).
fn dedupe_keys(text: &str) -> String {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for l in text.lines() {
        if l.starts_with('[') {
            seen.clear();
        } else if let Some((k, _)) = l.split_once(" = ") {
            if seen.iter().any(|s| s == k) {
                continue;
            }
            seen.push(k.to_string());
        }
        out.push(l);
    }
    out.join("\n")
}

#[test]
fn absurd_instance_counts_are_rejected_with_their_line() {
    let text = GOOD
        .replace("max = 40", "max = 30000000")
        .replace("min = 2", "min = 30000000");
    let err = parse_sources(&[src("a.toml", &text)]).expect_err("absurd");
    let shown = err.to_string();
    assert!(
        shown.contains("a.toml:3:7: min = 30000000 is more than 100000 instances"),
        "{shown}"
    );
    assert!(
        shown.contains("a.toml:4:7: max = 30000000 is more than 100000 instances"),
        "{shown}"
    );
}
