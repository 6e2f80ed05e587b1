//! The documentation against the code: the reference pages in docs/reference/ are what the
//! binary generates from its command line and its metrics registry (run scripts/docs after
//! changing a flag or a metric), the man pages and shell completions generate, every relative
//! link in the README and docs/ resolves, and the example policies in docs/policy.md are valid.

use std::path::{Path, PathBuf};
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

/// Every Markdown file of the book and the README.
fn markdown_files() -> Vec<PathBuf> {
    let mut out = vec![repo().join("README.md"), repo().join("deploy/RUNBOOK.md")];
    let mut dirs = vec![repo().join("docs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut in_code = false;
    let mut out = Vec::new();
    for l in text.lines() {
        if l.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && l.starts_with('#') {
            out.push(anchor(l));
        }
    }
    out
}

/// `[text](target)` links outside code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for l in text.lines() {
        if l.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = l;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(j) = after.find(')') else { break };
            out.push(after[..j].to_string());
            rest = &after[j..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (path, frag) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let rel = file.strip_prefix(repo()).unwrap().display().to_string();
            if !target.exists() {
                broken.push(format!("{rel}: {link} (no such file)"));
            } else if !frag.is_empty()
                && target.extension().is_some_and(|x| x == "md")
                && !anchors(&target).iter().any(|a| a == frag)
            {
                broken.push(format!("{rel}: {link} (no such heading)"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_book_has_its_pages_and_leaves_a_place_for_the_results() {
    for page in [
        "docs/install.md",
        "docs/operations.md",
        "docs/policy.md",
        "docs/simulation.md",
        "docs/architecture.md",
        "docs/reference/configuration.md",
        "docs/reference/metrics.md",
    ] {
        assert!(repo().join(page).is_file(), "{page}");
        assert!(
            std::fs::read_to_string(repo().join("README.md"))
                .unwrap()
                .contains(
                    page.trim_start_matches("docs/")
                        .split('/')
                        .next_back()
                        .unwrap()
                ),
            "the README does not point at {page}"
        );
    }
    let sim = std::fs::read_to_string(repo().join("docs/simulation.md")).unwrap();
    assert!(
        sim.lines().any(|l| l == "## Results"),
        "docs/simulation.md has no Results section"
    );
}

/// The ```toml examples of docs/policy.md that are whole policies (they name a pool) pass the
/// same validator as policy files.
#[test]
fn the_policy_examples_are_valid() {
    use mrgc_autoscaler::core::policy::{PolicySource, parse_sources};
    let text = std::fs::read_to_string(repo().join("docs/policy.md")).unwrap();
    let mut examples = Vec::new();
    let mut cur: Option<String> = None;
    for l in text.lines() {
        match (&mut cur, l) {
            (None, "```toml") => cur = Some(String::new()),
            (Some(s), "```") => {
                examples.push(std::mem::take(s));
                cur = None;
            }
            (Some(s), l) => {
                s.push_str(l);
                s.push('\n');
            }
            _ => {}
        }
    }
    let policies: Vec<&String> = examples
        .iter()
        .filter(|e| e.starts_with("pool = "))
        .collect();
    assert!(policies.len() >= 2, "{examples:?}");
    let mut slo = false;
    for (i, e) in policies.iter().enumerate() {
        let set = parse_sources(&[PolicySource {
            path: PathBuf::from(format!("docs/policy.md example {}", i + 1)),
            text: e.to_string(),
        }])
        .unwrap_or_else(|err| panic!("{err}\n{e}"));
        slo |= set.pools.values().any(|p| p.slo.is_some());
    }
    assert!(slo, "no [slo] example");
}
