//! `generate` (hidden): man pages, shell completions and the reference documentation, all
//! generated from the command line's definition and the metrics registry, so none of them
//! can drift from the binary. scripts/package and scripts/docs call it; tests compare the
//! committed docs/reference/ files with its output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use mrgc_autoscaler::telemetry::Metrics;

const BIN: &str = "mrgc-autoscaler";

/// `mrgc-autoscaler generate ...`: parsed apart from the main command line (before it), so the
/// man pages, completions and references generated from that definition do not list it.
#[derive(Parser)]
#[command(
    name = "mrgc-autoscaler generate",
    bin_name = "mrgc-autoscaler generate"
)]
pub(super) struct GenerateCli {
    #[command(subcommand)]
    what: GenerateCommand,
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// Write the man pages (mrgc-autoscaler.1 and one per subcommand) into a directory.
    Man {
        /// The directory to write into (created if missing).
        #[arg(long, env = "MRGC_GENERATE_OUT")]
        out: PathBuf,
    },
    /// Print a shell's completion script (or write it into --out under its usual name).
    Completions(CompletionArgs),
    /// Print docs/reference/configuration.md: every subcommand's flags, env twins, defaults.
    ConfigReference,
    /// Print docs/reference/metrics.md: every metric with its type, labels and help.
    MetricsReference,
}

#[derive(Args)]
pub(super) struct CompletionArgs {
    #[arg(long, env = "MRGC_GENERATE_SHELL", value_enum)]
    shell: Shell,
    /// Write the script into this directory instead of printing it.
    #[arg(long, env = "MRGC_GENERATE_OUT")]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }

    /// The file name each shell looks for (Debian: bash-completion's completions/, zsh's
    /// vendor-completions/, fish's vendor_completions.d/).
    fn file_name(self) -> String {
        match self {
            Shell::Bash => BIN.to_string(),
            Shell::Zsh => format!("_{BIN}"),
            Shell::Fish => format!("{BIN}.fish"),
        }
    }
}

/// Run `generate` with the arguments after the program name (`generate ...`).
pub(super) fn main(args: &[std::ffi::OsString]) -> ExitCode {
    let g = match GenerateCli::try_parse_from(args) {
        Ok(g) => g,
        Err(e) => {
            let code = if e.use_stderr() { super::EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match generate(g.what) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn generate(g: GenerateCommand) -> anyhow::Result<ExitCode> {
    match g {
        GenerateCommand::Man { out } => {
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            clap_mangen::generate_to(super::command(), &out)
                .with_context(|| format!("writing man pages into {}", out.display()))?;
        }
        GenerateCommand::Completions(a) => {
            let mut cmd = super::command();
            let mut buf = Vec::new();
            clap_complete::generate(a.shell.generator(), &mut cmd, BIN, &mut buf);
            match a.out {
                Some(dir) => write(&dir, &a.shell.file_name(), &buf)?,
                None => print!("{}", String::from_utf8_lossy(&buf)),
            }
        }
        GenerateCommand::ConfigReference => print!("{}", config_reference(&super::command())),
        GenerateCommand::MetricsReference => print!("{}", metrics_reference()),
    }
    Ok(ExitCode::SUCCESS)
}

fn write(dir: &Path, name: &str, data: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// docs/reference/configuration.md

/// One line of help text (doc comments wrap; tables do not).
fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Help text as a sentence: ending in a full stop.
fn sentence(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() || s.ends_with(['.', '!', '?', ')']) {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

/// "The embedded region" → "the embedded region", but "DynamoDB" stays.
fn lower_first(s: &str) -> String {
    let s = s.trim().trim_end_matches('.');
    let first_word = s.split_whitespace().next().unwrap_or_default();
    if first_word.chars().skip(1).any(char::is_uppercase) {
        return s.to_string();
    }
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn help_of(a: &clap::Arg) -> String {
    a.get_long_help()
        .or_else(|| a.get_help())
        .map(|h| one_line(&h.to_string()))
        .unwrap_or_default()
}

/// The flag as written: `--name <VALUE>`, `-v, --verbose`, or `<NAME>` for a positional.
fn flag_of(a: &clap::Arg) -> String {
    let takes_value =
        a.get_num_args().is_some_and(|n| n.takes_values()) || a.get_action().takes_values();
    let value = a
        .get_value_names()
        .and_then(|v| v.first().map(|n| n.to_string()))
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
    match a.get_long() {
        Some(long) => {
            let short = a.get_short().map(|c| format!("-{c}, ")).unwrap_or_default();
            if takes_value {
                format!("{short}--{long} <{value}>")
            } else {
                format!("{short}--{long}")
            }
        }
        None => format!("<{value}>"),
    }
}

fn is_builtin(a: &clap::Arg) -> bool {
    matches!(a.get_id().as_str(), "help" | "version")
}

fn rows(cmd: &clap::Command, out: &mut String, globals: bool) {
    let args: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !is_builtin(a) && !a.is_hide_set() && a.is_global_set() == globals)
        .collect();
    if args.is_empty() {
        out.push_str("No flags.\n");
        return;
    }
    out.push_str("| flag | env | default | meaning |\n| --- | --- | --- | --- |\n");
    for a in args {
        let env = a
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_else(|| "—".into());
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            if a.is_required_set() {
                "required".to_string()
            } else {
                "—".to_string()
            }
        } else {
            format!("`{}`", defaults.join(","))
        };
        let mut meaning = sentence(&help_of(a));
        let values: Vec<String> = a
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| match v.get_help() {
                Some(h) => format!(
                    "`{}`, {}",
                    v.get_name(),
                    lower_first(&one_line(&h.to_string()))
                ),
                None => format!("`{}`", v.get_name()),
            })
            .collect();
        if !values.is_empty() && a.get_action().takes_values() {
            meaning = format!("{meaning} One of: {}.", values.join("; "))
                .trim()
                .to_string();
        }
        if let Some(d) = a.get_value_delimiter()
            && !meaning.contains("separate")
        {
            meaning = format!("{meaning} Several values: separate them with `{d}`.")
                .trim()
                .to_string();
        }
        let _ = writeln!(out, "| `{}` | {env} | {default} | {meaning} |", flag_of(a));
    }
}

fn section(cmd: &clap::Command, path: &str, out: &mut String) {
    if cmd.is_hide_set() {
        return;
    }
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !path.is_empty() {
        let _ = writeln!(out, "\n## `{BIN} {path}`\n");
        if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
            let _ = writeln!(out, "{}\n", sentence(&one_line(&about.to_string())));
        }
        if subs.is_empty() {
            rows(cmd, out, false);
        }
    }
    for s in subs {
        if s.get_name() == "help" {
            continue;
        }
        let p = if path.is_empty() {
            s.get_name().to_string()
        } else {
            format!("{path} {}", s.get_name())
        };
        section(s, &p, out);
    }
}

pub(super) fn config_reference(cmd: &clap::Command) -> String {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut out = String::new();
    out.push_str(
        "# Configuration reference\n\n\
         <!-- Generated by `mrgc-autoscaler generate config-reference` from the command line's \
         definition: do not edit. scripts/docs regenerates it; a test fails while it is stale. -->\n\n\
         Every flag has an environment twin: set the variable instead of passing the flag (a \
         flag on the command line wins). Durations are written like `30s`, `10m` or `1h 30m`. \
         `--help` on any subcommand prints the same, and `man mrgc-autoscaler` once the Debian \
         package is installed.\n\n\
         Exit codes: 0 success; 1 a failure at run time (AWS unreachable, access denied); 64 \
         (EX_USAGE) a bad flag, environment value, policy or scenario file; 78 (EX_CONFIG) the \
         environment does not match the configuration (tables missing or different, no pool \
         for the region, the listen address taken). Restarting cannot fix 64 or 78.\n\n\
         ## Global options\n\n\
         These go before or after the subcommand.\n\n",
    );
    rows(&cmd, &mut out, true);
    section(&cmd, "", &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// docs/reference/metrics.md

pub(super) fn metrics_reference() -> String {
    let m = Metrics::new("us-east-1");
    let mut infos = m.infos().to_vec();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    out.push_str(
        "# Metrics reference\n\n\
         <!-- Generated by `mrgc-autoscaler generate metrics-reference` from the controller's \
         metrics registry: do not edit. scripts/docs regenerates it; a test fails while it is \
         stale. -->\n\n\
         The controller serves these on `/metrics` at `--listen` (Prometheus text format \
         0.0.4). **Every series carries `region`**, the region the controller runs for: a \
         constant label of its registry, so the same rules and dashboards work on Kubernetes \
         and on plain hosts. Per-pool series carry `pool` too. Alert rules: \
         `deploy/prometheus/alerts.yaml`; what to do when one fires: `deploy/RUNBOOK.md`.\n\n\
         Counters that alerts watch for a first failure (`drains_total` for every `step`, \
         `decision_results_total` for `applied`, `failed` and `skipped`, the reload counters \
         for both results) exist at 0 from the moment a pool is first reconciled (the reload \
         counters from the start), so `increase()` sees the first one.\n\n\
         | metric | type | labels | meaning |\n| --- | --- | --- | --- |\n",
    );
    for i in &infos {
        let labels = if i.labels.is_empty() {
            "—".to_string()
        } else {
            i.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let name = if i.kind == "histogram" {
            format!("`{0}` (`_bucket`, `_sum`, `_count`)", i.name)
        } else {
            format!("`{}`", i.name)
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {labels} | {} |",
            i.kind,
            one_line(&i.help)
        );
    }
    let buckets: Vec<String> = mrgc_autoscaler::telemetry::RECONCILE_BUCKETS
        .iter()
        .map(|b| b.to_string())
        .collect();
    let _ = write!(
        out,
        "\n`mrgc_autoscaler_reconcile_duration_seconds` has the buckets {} seconds (and `+Inf`).\n",
        buckets.join(", ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of every subcommand users see has an MRGC_* environment twin, so a service
    /// can be configured from its environment alone.
    #[test]
    fn every_flag_has_an_env_twin() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if is_builtin(a) || a.is_positional() {
                    continue;
                }
                match a.get_env() {
                    Some(e) if e.to_string_lossy().starts_with("MRGC_") => {}
                    _ => missing.push(format!("{path} --{}", a.get_id())),
                }
            }
            for s in cmd.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        for mut cmd in [
            super::super::command(),
            <GenerateCli as clap::CommandFactory>::command(),
        ] {
            cmd.build();
            let name = cmd.get_name().to_string();
            walk(&cmd, &name, &mut missing);
        }
        assert!(missing.is_empty(), "flags without an env twin: {missing:?}");
    }

    #[test]
    fn the_config_reference_lists_every_subcommand_with_its_env_twins() {
        let text = config_reference(&super::super::command());
        for s in [
            "## `mrgc-autoscaler run`",
            "## `mrgc-autoscaler policy check`",
            "## `mrgc-autoscaler policy explain`",
            "## `mrgc-autoscaler simulate`",
            "## `mrgc-autoscaler tables create`",
            "## `mrgc-autoscaler history`",
            "| `--interval <INTERVAL>` | `MRGC_INTERVAL` | `30s` |",
            "`MRGC_LOG_FORMAT`",
        ] {
            assert!(text.contains(s), "missing `{s}`");
        }
        assert!(!text.contains("## `mrgc-autoscaler generate"), "{text}");
    }
}
