//! The command line: parses arguments (clap; every flag has an `MRGC_*` environment twin),
//! sets up logging and signals, and calls into the library. One file per subcommand. `anyhow`
//! is used here and nowhere in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use mrgc_autoscaler::app::policy_files;
use mrgc_autoscaler::core::policy::PolicySet;

mod history;
mod policy;
mod run;
mod simulate;
mod tables;

use history::HistoryArgs;
use policy::PolicyCommand;
use run::RunArgs;
use simulate::SimArgs;
use tables::TablesCommand;

/// EX_USAGE: bad configuration or policy.
pub(super) const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "mrgc-autoscaler",
    version,
    about = "Capacity controller of a multi-region GPU inference cluster"
)]
struct Cli {
    /// Log format for diagnostics on stderr.
    #[arg(long, env = "MRGC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reconcile loop (the embedded in-memory region unless --backend aws).
    Run(RunArgs),
    /// Check policy files, or explain a decision.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Replay traffic through the controller and baselines ("what if").
    Simulate(SimArgs),
    /// The DynamoDB tables (schema.rs is their single source of truth).
    #[command(subcommand)]
    Tables(TablesCommand),
    /// Print a pool's recorded decisions with their reasons, newest first.
    History(HistoryArgs),
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 10m, 1h"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only the AWS service logs at info by default; one-shot commands, the simulator and the
    // local demo (which prints its own decision lines) keep stderr for warnings.
    init_tracing(
        cli.log_format,
        !matches!(&cli.command, Command::Run(a) if a.backend == run::Backend::Aws),
    );
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: journald and `kubectl logs` would show the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

pub(super) fn load_policies(paths: &[PathBuf]) -> Result<PolicySet, ExitCode> {
    policy_files::load_paths(paths).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Policy(PolicyCommand::Check { paths }) => {
            let set = match load_policies(&paths) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            for p in set.pools.values() {
                let regions: Vec<&str> = p.regions.keys().map(String::as_str).collect();
                println!(
                    "ok  {:<10} {}  regions: {}",
                    p.pool,
                    p.source.display(),
                    regions.join(", ")
                );
            }
            println!("{} pools valid (policy hash {})", set.pools.len(), set.hash);
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Explain(a)) => policy::explain(a),
        Command::Run(a) => run::run(a),
        Command::Simulate(a) => simulate::simulate(a),
        Command::Tables(TablesCommand::Create(a)) => tables::tables_cmd(a, true),
        Command::Tables(TablesCommand::Check(a)) => tables::tables_cmd(a, false),
        Command::History(a) => history::history(a),
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// --region, else the SDK's usual environment variables.
pub(super) fn aws_region(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
}

/// SIGHUP asks for a policy reload now.
pub(super) fn spawn_sighup(reload: std::sync::Arc<tokio::sync::Notify>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the policies");
                    reload.notify_one();
                }
            });
        }
    }
}

/// Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(super) fn default_controller_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "controller".to_string());
    format!("{host}-{}", std::process::id())
}
