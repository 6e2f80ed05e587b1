//! The documentation against the code: the reference pages in docs/reference/ are what the
//! binary generates from its command line and its metrics registry (run scripts/docs after
//! changing a flag or a metric), and the man pages and shell completions generate.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"))
        .arg("generate")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn assert_current(rel: &str, generated: &str) {
    let committed = std::fs::read_to_string(repo().join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}: run scripts/docs"));
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "its length".to_string(), |i| format!("line {}", i + 1));
        panic!(
            "{rel} is stale (it differs from the binary's output at {line}): run scripts/docs and commit it"
        );
    }
}

#[test]
fn the_configuration_reference_is_current() {
    let text = generate(&["config-reference"]);
    for s in [
        "## `mrgc-autoscaler run`",
        "`MRGC_STATE_DIR`",
        "`MRGC_SIM_SWEEP`",
        "`MRGC_EXPLAIN_RPS`",
    ] {
        assert!(text.contains(s), "{s}");
    }
    assert!(
        !text.contains("## `mrgc-autoscaler generate"),
        "generate is hidden"
    );
    assert_current("docs/reference/configuration.md", &text);
}

#[test]
fn the_metrics_reference_is_current() {
    let text = generate(&["metrics-reference"]);
    for s in [
        "| `mrgc_autoscaler_pool_max` | gauge | `pool` |",
        "| `mrgc_autoscaler_build_info` | gauge | `version`, `commit`, `built` |",
        "| `mrgc_autoscaler_drains_total` | counter | `pool`, `step` |",
        "`mrgc_autoscaler_reconcile_duration_seconds` (`_bucket`, `_sum`, `_count`) | histogram | — |",
    ] {
        assert!(text.contains(s), "missing `{s}` in:\n{text}");
    }
    assert_current("docs/reference/metrics.md", &text);
}

#[test]
fn man_pages_and_completions_generate_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    generate(&["man", "--out", dir.path().to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for p in [
        "mrgc-autoscaler.1",
        "mrgc-autoscaler-run.1",
        "mrgc-autoscaler-policy-check.1",
        "mrgc-autoscaler-policy-explain.1",
        "mrgc-autoscaler-simulate.1",
        "mrgc-autoscaler-tables-create.1",
        "mrgc-autoscaler-history.1",
    ] {
        assert!(pages.contains(&p.to_string()), "no {p} in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("generate")), "{pages:?}");
    let main = std::fs::read_to_string(dir.path().join("mrgc-autoscaler.1")).unwrap();
    assert!(
        main.starts_with(".ie") || main.contains(".TH mrgc-autoscaler 1"),
        "{main}"
    );
    assert!(
        main.contains("history") && main.contains("MRGC_LOG_FORMAT"),
        "{main}"
    );
    let run = std::fs::read_to_string(dir.path().join("mrgc-autoscaler-run.1")).unwrap();
    assert!(
        run.contains("MRGC_STATE_DIR") && run.contains("verbose"),
        "{run}"
    );

    let bash = generate(&["completions", "--shell", "bash"]);
    assert!(
        bash.contains("complete -F") && bash.contains("mrgc-autoscaler"),
        "{bash}"
    );
    let zsh = generate(&["completions", "--shell", "zsh"]);
    assert!(zsh.starts_with("#compdef mrgc-autoscaler"), "{zsh}");
    let fish = generate(&["completions", "--shell", "fish"]);
    assert!(fish.contains("complete -c mrgc-autoscaler"), "{fish}");
    for (shell, text) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
        for word in ["history", "simulate", "--state-dir", "--table-prefix"] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
        assert!(
            !text.contains("config-reference"),
            "{shell} completes the hidden generate"
        );
    }
    // Written under the names the shells look for.
    for shell in ["bash", "zsh", "fish"] {
        generate(&[
            "completions",
            "--shell",
            shell,
            "--out",
            dir.path().to_str().unwrap(),
        ]);
    }
    for f in [
        "mrgc-autoscaler",
        "_mrgc-autoscaler",
        "mrgc-autoscaler.fish",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
}
