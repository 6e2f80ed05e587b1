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

mod cost;
mod generate;
mod history;
mod policy;
mod run;
mod simulate;
mod tables;
mod tune;

use cost::CostArgs;
use history::HistoryArgs;
use policy::PolicyCommand;
use run::RunArgs;
use simulate::SimArgs;
use tables::TablesCommand;
use tune::TuneArgs;

/// EX_USAGE: bad configuration or policy.
pub(super) const EXIT_USAGE: u8 = 64;

/// `--version`: the crate version, the git commit and the build date (build.rs).
const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MRGC_BUILD_COMMIT"),
    ", built ",
    env!("MRGC_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "mrgc-autoscaler",
    // The name in usage lines, whatever the executable is called (cargo run, a test harness).
    bin_name = "mrgc-autoscaler",
    version = VERSION_LINE,
    about = "Capacity controller of a multi-region GPU inference cluster",
    long_about = "Capacity controller of a multi-region GPU inference cluster: one leader per AWS \
region sets each model pool's Auto Scaling Group from its requests per second, and records \
every decision with its reason. `mrgc-autoscaler run` with no flags runs the whole loop on an \
embedded in-memory region with a traffic replay (no AWS account needed).",
    after_help = "Every flag has an MRGC_* environment twin (listed with each flag's help). \
Exit codes: 0 success, 1 failure, 64 bad flag, value or policy file (EX_USAGE), 78 the \
environment does not match the configuration (EX_CONFIG)."
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
    /// Tune a pool's policy walk-forward on a trace or its own history; writes a policy to
    /// try, never the live one.
    Tune(TuneArgs),
    /// The DynamoDB tables (schema.rs is their single source of truth).
    #[command(subcommand)]
    Tables(TablesCommand),
    /// Print a pool's recorded decisions with their reasons, newest first.
    History(HistoryArgs),
    /// Price a deployment: the controllers' monthly DynamoDB, Streams and CloudWatch bill.
    Cost(CostArgs),
}

/// The command line's definition, for the generators.
pub(super) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 10m, 1h"))
}

/// A duration flag within `[lo, hi]`: every number from outside is bounded, so no flag can
/// overflow a timer or a clock.
pub(super) fn duration_within(s: &str, lo: Duration, hi: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < lo || d > hi {
        return Err(format!(
            "`{s}` is outside {} to {}",
            humantime::format_duration(lo),
            humantime::format_duration(hi)
        ));
    }
    Ok(d)
}

/// Bounded duration flags, by what they time.
pub(super) mod bounded {
    use std::time::Duration;

    use super::duration_within;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);
    const MIN: Duration = Duration::from_secs(60);
    const H: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86_400);

    /// The reconcile interval: 1 s to 1 h.
    pub fn interval(s: &str) -> Result<Duration, String> {
        duration_within(s, S, H)
    }
    /// Lease timings: 100 ms to 10 minutes.
    pub fn lease(s: &str) -> Result<Duration, String> {
        duration_within(s, 100 * MS, 10 * MIN)
    }
    /// Polls (policy files, the standby's lease read): 100 ms to 1 h.
    pub fn poll(s: &str) -> Result<Duration, String> {
        duration_within(s, 100 * MS, H)
    }
    /// How long something runs or looks back: up to 400 days.
    pub fn span(s: &str) -> Result<Duration, String> {
        duration_within(s, Duration::ZERO, 400 * DAY)
    }
    /// How far back to look in the decision log: up to 100,000 days ("everything").
    pub fn lookback(s: &str) -> Result<Duration, String> {
        duration_within(s, Duration::ZERO, 100_000 * DAY)
    }

    /// The embedded run's speed: 0.01 to 100000 controller seconds per wall second.
    pub fn speed(s: &str) -> Result<f64, String> {
        match s.trim().parse::<f64>() {
            Ok(v) if (0.01..=100_000.0).contains(&v) => Ok(v),
            _ => Err(format!(
                "`{s}` is not a speed from 0.01 to 100000 (controller seconds per wall second)"
            )),
        }
    }

    /// A launch time: 1 s to 2 h (as `instances.launch_time`).
    pub fn launch(s: &str) -> Result<Duration, String> {
        duration_within(s, S, 2 * H)
    }
}

/// EX_CONFIG: the environment does not match the configuration (tables missing or
/// different, no pool for the region, the listen address taken). Restarting cannot fix it.
pub(super) const EXIT_CONFIG: u8 = 78;

pub fn main() -> ExitCode {
    // `generate` (man pages, completions, references; for packaging and docs) is a hidden
    // subcommand parsed on its own, so what it generates from `Cli` does not list it.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "generate") {
        return generate::main(&args[1..]);
    }
    // Bad flags or environment values exit 64 (EX_USAGE), like every other usage error;
    // --help and --version exit 0.
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
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
        Command::Tune(a) => tune::tune(a),
        Command::Tables(TablesCommand::Create(a)) => tables::tables_cmd(a, true),
        Command::Tables(TablesCommand::Check(a)) => tables::tables_cmd(a, false),
        Command::History(a) => history::history(a),
        Command::Cost(a) => cost::cost(a),
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

/// SIGTERM or Ctrl-C (SIGINT). The handlers are installed when this is *called*, not when
/// the future is first polled, so a signal during start-up (reading the tables, the first
/// cycle) is caught. Call it inside the runtime (`rt.enter()`) before any other work.
pub(super) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let term = async {
                match term {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let int = async {
                match int {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term => {}
                _ = int => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
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
