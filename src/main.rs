//! The command line. Everything here parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use mrgc_autoscaler::adapters::aws::tables::{self, TablesError};
use mrgc_autoscaler::adapters::aws::{AwsBackends, AwsOptions};
use mrgc_autoscaler::app::clock::TokioClock;
use mrgc_autoscaler::app::election::ElectionConfig;
use mrgc_autoscaler::app::http::Status;
use mrgc_autoscaler::app::local::{LocalHooks, LocalOptions, run_local};
use mrgc_autoscaler::app::metrics::Metrics;
use mrgc_autoscaler::app::reconciler::Settings;
use mrgc_autoscaler::app::service::{ServiceDeps, ServiceOptions, run_service};
use mrgc_autoscaler::core::policy::{self, PolicySet};
use mrgc_autoscaler::core::{
    AsgState, Capacity, DecisionRecord, Observation, PoolHistory, Sample, decide,
};
use mrgc_autoscaler::ports::DecisionLog;
use mrgc_autoscaler::schema;

/// EX_USAGE: bad configuration or policy.
const EXIT_USAGE: u8 = 64;

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

#[derive(Subcommand)]
enum TablesCommand {
    /// Create the missing tables, enable TTL and wait until they are ACTIVE. Idempotent; an
    /// existing table whose keys or indexes differ is reported and never altered.
    Create(TablesArgs),
    /// Check that every table exists and matches the schema; change nothing.
    Check(TablesArgs),
}

/// Where the tables are.
#[derive(Args, Clone)]
struct TableArgs {
    /// Table names are `<prefix>-<table>`, e.g. mrgc-prod-gpu-instances.
    #[arg(long, env = "MRGC_TABLE_PREFIX")]
    table_prefix: String,
    /// A local AWS-compatible server (moto, LocalStack) instead of AWS.
    #[arg(long, env = "MRGC_ENDPOINT_URL")]
    endpoint_url: Option<String>,
}

#[derive(Args)]
struct TablesArgs {
    #[command(flatten)]
    tables: TableArgs,
    /// AWS region (default: AWS_REGION).
    #[arg(long, env = "MRGC_REGION")]
    region: Option<String>,
    /// Give up waiting for ACTIVE after this long.
    #[arg(long, env = "MRGC_TABLES_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Args)]
struct HistoryArgs {
    #[command(flatten)]
    tables: TableArgs,
    #[arg(long, env = "MRGC_POOL")]
    pool: String,
    /// Only this region's decisions (also the region whose replica is read; default:
    /// AWS_REGION, all regions).
    #[arg(long, env = "MRGC_REGION")]
    region: Option<String>,
    /// Every region's decisions even when --region is set.
    #[arg(long, env = "MRGC_ALL_REGIONS")]
    all_regions: bool,
    /// How far back.
    #[arg(long, env = "MRGC_SINCE", default_value = "1h", value_parser = parse_duration)]
    since: Duration,
    /// At most this many records.
    #[arg(long, env = "MRGC_LIMIT", default_value_t = 100)]
    limit: usize,
    /// One JSON object per line instead of text.
    #[arg(long, env = "MRGC_JSON")]
    json: bool,
}

#[derive(Args)]
struct SimArgs {
    /// Scenario file (see simulations/); or use --trace and --policies.
    #[arg(required_unless_present = "trace")]
    scenario: Option<PathBuf>,
    /// Output directory for summary.json, timeseries.csv and report.html
    /// (default: out/<scenario or trace name>).
    #[arg(long, env = "MRGC_SIM_OUT")]
    out: Option<PathBuf>,
    /// Without a scenario: the trace to replay (timestamp_s,rps CSV, or arrival times).
    #[arg(long, conflicts_with = "scenario")]
    trace: Option<PathBuf>,
    /// Without a scenario: policy directory or files.
    #[arg(long, default_value = "policies", value_delimiter = ',')]
    policies: Vec<PathBuf>,
    /// Without a scenario: only this pool.
    #[arg(long)]
    pool: Option<String>,
    /// Without a scenario: scale the trace to this mean RPS (default 75).
    #[arg(long)]
    mean_rps: Option<f64>,
    /// Without a scenario: instance launch time (boot + model load; default 6m).
    #[arg(long, value_parser = parse_duration)]
    launch_time: Option<Duration>,
    /// Sweep a policy field over values, e.g. --sweep band.high=1.4,1.5 (repeatable; grid).
    #[arg(long)]
    sweep: Vec<String>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Baselines to run (comma-separated: oracle, static-peak, hpa, target-tracking; or
    /// `none` to time the policies alone). Default: the scenario's list, or all.
    #[arg(long, value_delimiter = ',')]
    baselines: Option<Vec<String>>,
    /// timeseries.csv resolution in seconds (default: 1 up to a day of trace, 60 beyond).
    #[arg(long)]
    resolution: Option<u64>,
    /// Worker threads.
    #[arg(long, env = "MRGC_SIM_THREADS", default_value_t = 2)]
    threads: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The embedded in-memory region with a traffic replay (no AWS account needed).
    Local,
    /// DynamoDB, Auto Scaling and CloudWatch in --region.
    Aws,
}

#[derive(Args)]
struct RunArgs {
    #[arg(long, env = "MRGC_BACKEND", value_enum, default_value_t = Backend::Local)]
    backend: Backend,
    /// Policy directory or files.
    #[arg(
        long,
        env = "MRGC_POLICIES",
        default_value = "policies",
        value_delimiter = ','
    )]
    policies: Vec<PathBuf>,
    #[arg(long, env = "MRGC_REGION", default_value = "us-east-1")]
    region: String,
    /// Time between reconcile cycles.
    #[arg(long, env = "MRGC_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    interval: Duration,
    /// Local backend: controller seconds per wall second.
    #[arg(long, env = "MRGC_SPEED", default_value_t = 60.0)]
    speed: f64,
    /// Local backend: controller time to run for (default: until Ctrl-C).
    #[arg(long, env = "MRGC_DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Decide and record, never act.
    #[arg(long, env = "MRGC_DRY_RUN")]
    dry_run: bool,
    /// Local backend: replay this trace (timestamp_s,rps CSV) instead of the embedded one.
    #[arg(long, env = "MRGC_TRACE")]
    trace: Option<PathBuf>,
    /// Local backend: seed for arrivals and launch jitter.
    #[arg(long, env = "MRGC_SEED", default_value_t = 1)]
    seed: u64,
    /// This replica's identity in leases and decision records (default: hostname-pid).
    #[arg(long, env = "MRGC_CONTROLLER_ID")]
    controller_id: Option<String>,
    /// Record an unchanged `none` decision at least this often.
    #[arg(long, env = "MRGC_RECORD_HEARTBEAT", default_value = "10m", value_parser = parse_duration)]
    record_heartbeat: Duration,
    /// AWS backend: table names are `<prefix>-<table>`.
    #[arg(long, env = "MRGC_TABLE_PREFIX")]
    table_prefix: Option<String>,
    /// AWS backend: a local AWS-compatible server (moto, LocalStack) instead of AWS.
    #[arg(long, env = "MRGC_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// AWS backend: do not publish per-pool gauges to CloudWatch.
    #[arg(long, env = "MRGC_NO_CLOUDWATCH")]
    no_cloudwatch: bool,
    /// Evaluate this candidate policy set beside the live one every cycle and record what it
    /// would have done (dry-run records with its own policy hash); never acted on.
    #[arg(long, env = "MRGC_SHADOW_POLICIES", value_delimiter = ',')]
    shadow_policies: Option<Vec<PathBuf>>,
    /// Serve /healthz, /readyz and /metrics here (port 0: any free port).
    #[arg(long, env = "MRGC_LISTEN", default_value = "127.0.0.1:9464")]
    listen: std::net::SocketAddr,
    /// Re-read the policy files this often when they changed (and at once on SIGHUP).
    #[arg(long, env = "MRGC_POLICY_POLL", default_value = "5s", value_parser = parse_duration)]
    policy_poll: Duration,
    /// How long a leader's lease lasts without renewal.
    #[arg(long, env = "MRGC_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How often the leader renews its lease.
    #[arg(long, env = "MRGC_RENEW_EVERY", default_value = "5s", value_parser = parse_duration)]
    renew_every: Duration,
    /// How often a standby reads the lease: after the leader's SIGTERM it takes over within
    /// this. Each standby reads once per poll (about 1.3 M read units a month at 1 s).
    #[arg(long, env = "MRGC_STANDBY_POLL", default_value = "1s", value_parser = parse_duration)]
    standby_poll: Duration,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files; exit 64 listing every problem.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the decision and its reason for one observation (the planner's calculator).
    Explain(ExplainArgs),
}

#[derive(Args)]
struct ExplainArgs {
    #[arg(
        long,
        env = "MRGC_POLICIES",
        default_value = "policies",
        value_delimiter = ','
    )]
    policies: Vec<PathBuf>,
    #[arg(long)]
    pool: String,
    #[arg(long, env = "MRGC_REGION", default_value = "us-east-1")]
    region: String,
    /// Requests per second now.
    #[arg(long)]
    rps: f64,
    /// Serving instances now.
    #[arg(long)]
    serving: u32,
    #[arg(long, default_value_t = 0)]
    launching: u32,
    /// Instances the ASG holds that do not serve (draining, quarantined).
    #[arg(long, default_value_t = 0)]
    held: u32,
    /// Evaluate at this time (RFC 3339, UTC) for scheduled minimums; default now.
    #[arg(long)]
    at: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 10m, 1h"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only the AWS service logs at info by default; one-shot commands, the simulator and the
    // local demo (which prints its own decision lines) keep stderr for warnings.
    init_tracing(
        cli.log_format,
        !matches!(&cli.command, Command::Run(a) if a.backend == Backend::Aws),
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

fn load_policies(paths: &[PathBuf]) -> Result<PolicySet, ExitCode> {
    policy::load_paths(paths).map_err(|e| {
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
        Command::Policy(PolicyCommand::Explain(a)) => explain(a),
        Command::Run(a) => run(a),
        Command::Simulate(a) => simulate(a),
        Command::Tables(TablesCommand::Create(a)) => tables_cmd(a, true),
        Command::Tables(TablesCommand::Check(a)) => tables_cmd(a, false),
        Command::History(a) => history(a),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// --region, else the SDK's usual environment variables.
fn aws_region(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
}

fn tables_cmd(a: TablesArgs, create: bool) -> anyhow::Result<ExitCode> {
    let Some(region) = aws_region(a.region) else {
        eprintln!("error: no region: pass --region or set AWS_REGION");
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let mut opts = AwsOptions::new(&region, &a.tables.table_prefix, a.tables.endpoint_url);
    opts.cloudwatch = false;
    let rt = runtime()?;
    rt.block_on(async {
        let aws = AwsBackends::build(&opts, &Metrics::new()).await;
        if create {
            match tables::create_tables(&aws.clients, &schema::ALL, a.timeout).await {
                Ok(reports) => {
                    for r in reports {
                        let what = if r.created {
                            "created"
                        } else {
                            "exists, matches the schema"
                        };
                        let ttl = if r.ttl_enabled_now {
                            "; TTL enabled"
                        } else {
                            ""
                        };
                        println!("{:<45} {what}{ttl}", r.name);
                        for w in r.warnings {
                            println!("  warning: {w}");
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        } else {
            match tables::verify_tables(&aws.clients, &schema::ALL).await {
                Ok(warnings) => {
                    for w in warnings {
                        println!("warning: {w}");
                    }
                    println!(
                        "{} tables with prefix {} match the schema",
                        schema::ALL.len(),
                        a.tables.table_prefix
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    })
}

fn history(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let filter = if a.all_regions {
        None
    } else {
        a.region.clone()
    };
    let Some(region) = aws_region(a.region) else {
        eprintln!("error: no region: pass --region (or --all-regions with AWS_REGION set)");
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let mut opts = AwsOptions::new(&region, &a.tables.table_prefix, a.tables.endpoint_url);
    opts.cloudwatch = false;
    let rt = runtime()?;
    let records = rt.block_on(async {
        let aws = AwsBackends::build(&opts, &Metrics::new()).await;
        let since = chrono::Utc::now().timestamp_millis() - a.since.as_millis() as i64;
        aws.log
            .history(&a.pool, filter.as_deref(), since, a.limit)
            .await
    });
    let records = match records {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for r in &records {
        if a.json {
            println!("{}", record_json(r));
        } else {
            println!("{}", record_line(r));
        }
    }
    if !a.json && records.is_empty() {
        eprintln!(
            "no decisions for {} in the last {}",
            a.pool,
            humantime::format_duration(a.since)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stamp_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn record_line(r: &DecisionRecord) -> String {
    let rps = r
        .current_rps
        .map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    format!(
        "{} {} {:<10} {:>3} -> {:<3} asg={:<3} rps={:>6} {}{} {}: {}",
        stamp_ms(r.at_ms()),
        r.region,
        r.scaling_action.as_str(),
        r.current_capacity,
        r.desired_capacity,
        r.asg_desired,
        rps,
        if r.dry_run { "[dry-run] " } else { "" },
        r.result.to_attr(),
        r.reason_code,
        r.reason
    )
}

fn record_json(r: &DecisionRecord) -> serde_json::Value {
    serde_json::json!({
        "model_pool": r.model_pool,
        "timestamp": r.key.to_number(),
        "at": stamp_ms(r.at_ms()),
        "region": r.region,
        "current_capacity": r.current_capacity,
        "desired_capacity": r.desired_capacity,
        "min_capacity": r.min_capacity,
        "max_capacity": r.max_capacity,
        "current_rps": r.current_rps,
        "target_rps": r.target_rps,
        "scaling_action": r.scaling_action.as_str(),
        "reason_code": r.reason_code.as_str(),
        "reason": r.reason,
        "rps_window": r.rps_window,
        "serving": r.serving,
        "launching": r.launching,
        "held": r.held,
        "recommendation": r.recommendation,
        "asg_desired": r.asg_desired,
        "controller_id": r.controller_id,
        "leader_epoch": r.leader_epoch,
        "policy_hash": r.policy_hash,
        "dry_run": r.dry_run,
        "result": r.result.to_attr(),
        "ttl": r.ttl,
    })
}

fn simulate(a: SimArgs) -> anyhow::Result<ExitCode> {
    use mrgc_autoscaler::sim::{report, run as simrun, scenario::Scenario};
    let loaded = match (&a.scenario, &a.trace) {
        (Some(path), _) => Scenario::load(path),
        (None, Some(trace)) => Scenario::quick(
            trace,
            &a.policies,
            a.pool.as_deref(),
            a.mean_rps,
            a.launch_time,
        ),
        (None, None) => unreachable_args(),
    };
    let mut scenario = match loaded {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if let Some(seed) = a.seed {
        scenario.seed = seed;
    }
    if let Some(list) = &a.baselines {
        let list: Vec<String> = list
            .iter()
            .filter(|b| b.as_str() != "none")
            .cloned()
            .collect();
        if let Some(bad) = list
            .iter()
            .find(|b| !mrgc_autoscaler::sim::scenario::BASELINES.contains(&b.as_str()))
        {
            eprintln!(
                "error: unknown baseline `{bad}`; choose from {} or none",
                mrgc_autoscaler::sim::scenario::BASELINES.join(", ")
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        scenario.baselines = list;
    }
    let mut sweeps = Vec::new();
    for s in &a.sweep {
        match simrun::parse_sweep(s) {
            Ok(x) => sweeps.push(x),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    let opts = simrun::SimOptions {
        sweeps,
        resolution: a
            .resolution
            .map_or(simrun::Resolution::Auto, simrun::Resolution::Seconds),
        threads: a.threads.max(1),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let out = match simrun::simulate(&scenario, &opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    print!("{}", report::table(&out));
    if !opts.sweeps.is_empty() {
        println!();
        print!("{}", report::frontier(&out));
    }
    let stem = a
        .scenario
        .as_ref()
        .or(a.trace.as_ref())
        .and_then(|p| p.file_stem())
        .map_or_else(
            || "simulation".to_string(),
            |s| s.to_string_lossy().to_string(),
        );
    let dir = a.out.unwrap_or_else(|| PathBuf::from("out").join(stem));
    report::write_all(&scenario, &out, &dir)
        .with_context(|| format!("writing {}", dir.display()))?;
    println!(
        "\n{} runs, {} simulated seconds in {:.2} s ({:.0} simulated seconds per wall second); wrote {}/summary.json, timeseries.csv, report.html",
        out.results.len(),
        out.simulated_seconds,
        out.wall_seconds,
        out.simulated_seconds as f64 / out.wall_seconds.max(1e-9),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn unreachable_args() -> ! {
    // clap enforces `scenario` unless `--trace` is given.
    eprintln!("error: give a scenario file or --trace");
    std::process::exit(i32::from(EXIT_USAGE))
}

fn explain(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let set = match load_policies(&a.policies) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let Some(policy) = set.pool(&a.pool) else {
        eprintln!(
            "error: no policy for pool `{}`; known pools: {}",
            a.pool,
            set.pools.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let Some(regional) = policy.region(&a.region) else {
        eprintln!(
            "error: pool `{}` has no policy for region {}; its regions: {}",
            a.pool,
            a.region,
            policy
                .regions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    if !a.rps.is_finite() || a.rps < 0.0 {
        eprintln!("error: --rps must be a number ≥ 0");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let now_ms = match &a.at {
        Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.timestamp_millis(),
            Err(e) => {
                eprintln!(
                    "error: --at `{s}` is not an RFC 3339 time ({e}); write e.g. 2026-11-23T13:30:00Z"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        },
        None => chrono::Utc::now().timestamp_millis(),
    };
    let current = a.serving.saturating_add(a.launching).saturating_add(a.held);
    let obs = Observation {
        samples: vec![Sample {
            at_ms: now_ms,
            rps: a.rps,
        }],
        capacity: Capacity {
            serving: a.serving,
            launching: a.launching,
            held: a.held,
            skipped: 0,
        },
        asg: AsgState {
            name: regional.asg.clone(),
            min: 0,
            max: regional.max.saturating_add(a.held).max(current),
            desired: current,
        },
        seasonal: vec![],
        learned_launch: None,
    };
    let d = decide(policy, &a.region, &obs, &PoolHistory::default(), now_ms);
    println!(
        "pool        {} in {} (ASG {})",
        a.pool, a.region, regional.asg
    );
    println!(
        "observed    {} rps, {} serving, {} launching, {} held",
        a.rps, a.serving, a.launching, a.held
    );
    println!(
        "bounds      min {} max {}, band {}–{} (setpoint {})",
        d.min, d.max, policy.band.low, policy.band.high, policy.band.setpoint
    );
    println!(
        "decision    {} to {} (ASG desired capacity {} → {})",
        d.action, d.desired, d.asg_current, d.asg_desired
    );
    println!("reason_code {}", d.reason_code);
    println!("reason      {}", d.reason);
    if d.action == mrgc_autoscaler::core::Action::ScaleDown {
        let cut = (d.serving + d.launching).saturating_sub(d.desired);
        match policy.scale_down.drain {
            Some(timeout) => println!(
                "act         drain {cut} instance(s): the lowest queue_depth first, then a failed cleanup, then the oldest; each terminated (ASG desired − 1) once idle or after {}",
                humantime::format_duration(timeout)
            ),
            None => println!(
                "act         set the ASG's desired capacity to {}: the group picks the victims (scale_down.drain = false)",
                d.asg_desired
            ),
        }
    }
    println!(
        "note        a single observation with no history: scale-down stabilization only sees this one recommendation"
    );
    Ok(ExitCode::SUCCESS)
}

fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let set = match load_policies(&a.policies) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if a.interval.is_zero() || !(a.speed.is_finite() && a.speed > 0.0) {
        eprintln!("error: --interval must be longer than zero and --speed a positive number");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let controller_id = a
        .controller_id
        .clone()
        .unwrap_or_else(default_controller_id);
    let shadow = match &a.shadow_policies {
        Some(paths) => match load_policies(paths) {
            Ok(s) => Some(s),
            Err(code) => return Ok(code),
        },
        None => None,
    };
    if a.renew_every.is_zero() || a.lease_duration <= a.renew_every * 2 {
        eprintln!(
            "error: --lease-duration ({}) must be more than twice --renew-every ({}) so a leader renews before it expires",
            humantime::format_duration(a.lease_duration),
            humantime::format_duration(a.renew_every)
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let rt = runtime()?;
    match a.backend {
        Backend::Aws => {
            let Some(prefix) = a.table_prefix.clone().filter(|p| !p.is_empty()) else {
                eprintln!("error: --backend aws needs --table-prefix (MRGC_TABLE_PREFIX)");
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            if !set.pools.values().any(|p| p.region(&a.region).is_some()) {
                eprintln!(
                    "error: no pool has a policy for region {0}: add a [regions.{0}] section or pick another --region",
                    a.region
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            rt.block_on(run_aws(set, a, prefix, controller_id, shadow))
        }
        Backend::Local => {
            println!(
                "backend: local (embedded in-memory region {}, traffic replay at {}x); policies {} (hash {})",
                a.region,
                a.speed,
                a.policies
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                set.hash
            );
            let listen = a.listen;
            let opts = LocalOptions {
                region: a.region,
                interval: a.interval,
                speed: a.speed,
                duration: a.duration,
                dry_run: a.dry_run,
                trace: a.trace,
                seed: a.seed,
                controller_id,
                record_heartbeat: a.record_heartbeat,
                shadow,
                policy_paths: a.policies,
                shadow_paths: a.shadow_policies.unwrap_or_default(),
                policy_poll: a.policy_poll,
                lease_duration: a.lease_duration,
                renew_every: a.renew_every,
            };
            let mut out = std::io::stdout();
            let result = rt.block_on(async {
                // The demo runs without endpoints rather than not at all when the port is taken.
                let listener = match tokio::net::TcpListener::bind(listen).await {
                    Ok(l) => {
                        if let Ok(addr) = l.local_addr() {
                            println!("endpoints: http://{addr}/metrics, /healthz, /readyz");
                        }
                        Some(l)
                    }
                    Err(e) => {
                        eprintln!(
                            "warning: cannot listen on {listen} ({e}); running without endpoints (pick another with --listen)"
                        );
                        None
                    }
                };
                let reload = std::sync::Arc::new(tokio::sync::Notify::new());
                spawn_sighup(reload.clone());
                let hooks = LocalHooks { listener, reload };
                run_local(set, opts, hooks, &mut out, shutdown_signal()).await
            });
            match result {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(e @ mrgc_autoscaler::app::local::LocalError::Io(_)) => Err(e.into()),
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EXIT_USAGE))
                }
            }
        }
    }
}

async fn run_aws(
    set: PolicySet,
    a: RunArgs,
    prefix: String,
    controller_id: String,
    shadow: Option<PolicySet>,
) -> anyhow::Result<ExitCode> {
    let metrics = Metrics::new();
    let mut opts = AwsOptions::new(&a.region, &prefix, a.endpoint_url.clone());
    opts.cloudwatch = !a.no_cloudwatch;
    let aws = AwsBackends::build(&opts, &metrics).await;
    match tables::verify_tables(&aws.clients, &schema::ALL).await {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e @ (TablesError::Missing(_) | TablesError::Differ(_))) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(anyhow::Error::new(e).context("checking the tables")),
    }
    println!(
        "backend: aws in {} (tables {prefix}-*{}); controller {controller_id}; policies hash {}",
        a.region,
        a.endpoint_url
            .as_deref()
            .map(|u| format!(", endpoint {u}"))
            .unwrap_or_default(),
        set.hash
    );
    let listener = match tokio::net::TcpListener::bind(a.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {} ({e}); pick another --listen",
                a.listen
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let (backends, leases) = aws.ports();
    let mut election =
        ElectionConfig::new(&a.region, &controller_id).with_timing(a.lease_duration, a.renew_every);
    election.standby_poll = a.standby_poll;
    let opts = ServiceOptions {
        settings: Settings {
            region: a.region.clone(),
            controller_id: controller_id.clone(),
            dry_run: a.dry_run,
            record_heartbeat: a.record_heartbeat,
        },
        interval: a.interval,
        election,
        policy_paths: a.policies.clone(),
        policy_poll: a.policy_poll,
        shadow,
        shadow_paths: a.shadow_policies.clone().unwrap_or_default(),
    };
    let status = Status::new(a.interval);
    let reload = std::sync::Arc::new(tokio::sync::Notify::new());
    spawn_sighup(reload.clone());
    tracing::info!(
        listen = %listener.local_addr().unwrap_or(a.listen),
        "serving /healthz, /readyz and /metrics"
    );
    let deps = ServiceDeps {
        backends,
        leases,
        clock: std::sync::Arc::new(TokioClock::new(1.0)),
        status,
        reload,
        listener: Some(listener),
    };
    run_service(set, opts, deps, metrics, shutdown_signal(), |_| {}).await;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP asks for a policy reload now.
fn spawn_sighup(reload: std::sync::Arc<tokio::sync::Notify>) {
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
async fn shutdown_signal() {
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

fn default_controller_id() -> String {
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
