//! `run`: the reconcile loop, on the embedded in-memory region or on AWS.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use mrgc_autoscaler::adapters::aws::tables::{self, TablesError};
use mrgc_autoscaler::adapters::aws::{AwsBackends, AwsOptions};
use mrgc_autoscaler::app::clock::TokioClock;
use mrgc_autoscaler::app::election::ElectionConfig;
use mrgc_autoscaler::app::http::Status;
use mrgc_autoscaler::app::local::{LocalHooks, LocalOptions, run_local};
use mrgc_autoscaler::app::reconciler::Settings;
use mrgc_autoscaler::app::service::{ServiceDeps, ServiceOptions, run_service};
use mrgc_autoscaler::core::policy::PolicySet;
use mrgc_autoscaler::schema;
use mrgc_autoscaler::telemetry::Metrics;

use super::{
    EXIT_CONFIG, EXIT_USAGE, aws_region, bounded, default_controller_id, load_policies, runtime,
    shutdown_signal, spawn_sighup,
};

/// The embedded region's name when none is given.
const LOCAL_REGION: &str = "us-east-1";

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Backend {
    /// The embedded in-memory region with a traffic replay (no AWS account needed).
    Local,
    /// DynamoDB, Auto Scaling and CloudWatch in --region.
    Aws,
}

#[derive(Args)]
pub(super) struct RunArgs {
    /// Where the controller runs.
    #[arg(long, env = "MRGC_BACKEND", value_enum, default_value_t = Backend::Local)]
    pub(super) backend: Backend,
    /// Policy directory or files.
    #[arg(
        long,
        env = "MRGC_POLICIES",
        default_value = "policies",
        value_delimiter = ','
    )]
    policies: Vec<PathBuf>,
    /// The region this controller runs for: its Auto Scaling Groups, its DynamoDB replica, its
    /// lease. Local backend: default us-east-1. AWS backend: default AWS_REGION, else
    /// AWS_DEFAULT_REGION; none of them set is a usage error (exit 64).
    #[arg(long, env = "MRGC_REGION")]
    region: Option<String>,
    /// Time between reconcile cycles.
    #[arg(long, env = "MRGC_INTERVAL", default_value = "30s", value_parser = bounded::interval)]
    interval: Duration,
    /// Local backend: controller seconds per wall second.
    #[arg(long, env = "MRGC_SPEED", default_value_t = 60.0, value_parser = bounded::speed)]
    speed: f64,
    /// Local backend: controller time to run for (default: until Ctrl-C).
    #[arg(long, env = "MRGC_DURATION", value_parser = bounded::span)]
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
    #[arg(long, env = "MRGC_RECORD_HEARTBEAT", default_value = "10m", value_parser = bounded::interval)]
    record_heartbeat: Duration,
    /// AWS backend: table names are `<prefix>-<table>`.
    #[arg(long, env = "MRGC_TABLE_PREFIX")]
    table_prefix: Option<String>,
    /// AWS backend: a local AWS-compatible server (moto, LocalStack) instead of AWS.
    #[arg(long, env = "MRGC_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// AWS backend: do not publish the pools' summary to CloudWatch.
    #[arg(long, env = "MRGC_NO_CLOUDWATCH")]
    no_cloudwatch: bool,
    /// AWS backend: publish the pools' summary to CloudWatch at most this often (leader only,
    /// one PutMetricData for every pool).
    #[arg(long, env = "MRGC_CLOUDWATCH_EVERY", default_value = "60s", value_parser = bounded::interval)]
    cloudwatch_every: Duration,
    /// AWS backend: read the instances, routing and cleanup tables in full every cycle instead
    /// of following their DynamoDB streams between full reads.
    #[arg(long, env = "MRGC_NO_STREAMS")]
    no_streams: bool,
    /// AWS backend: read the streamed tables in full again at least this often.
    #[arg(long, env = "MRGC_RESYNC_EVERY", default_value = "1h", value_parser = bounded::interval)]
    resync_every: Duration,
    /// Evaluate this candidate policy set beside the live one every cycle and record what it
    /// would have done (dry-run records with its own policy hash); never acted on.
    #[arg(long, env = "MRGC_SHADOW_POLICIES", value_delimiter = ',')]
    shadow_policies: Option<Vec<PathBuf>>,
    /// Serve /healthz, /readyz and /metrics here (port 0: any free port).
    #[arg(long, env = "MRGC_LISTEN", default_value = "127.0.0.1:9464")]
    listen: std::net::SocketAddr,
    /// Re-read the policy files this often when they changed (and at once on SIGHUP).
    #[arg(long, env = "MRGC_POLICY_POLL", default_value = "5s", value_parser = bounded::poll)]
    policy_poll: Duration,
    /// How long a leader's lease lasts without renewal (a kill -9 takeover takes up to this
    /// plus the lease's slack over --renew-every, plus 0.5 s). `mrgc-autoscaler cost` prices
    /// other timings.
    #[arg(long, env = "MRGC_LEASE_DURATION", default_value = "24s", value_parser = bounded::lease)]
    pub(super) lease_duration: Duration,
    /// How often the leader renews its lease (one write each; a standby reads once per renewal).
    #[arg(long, env = "MRGC_RENEW_EVERY", default_value = "20s", value_parser = bounded::lease)]
    pub(super) renew_every: Duration,
    /// The longest a standby goes between two lease reads (default: the lease duration). A
    /// standby reads when the lease it saw would expire unless renewed (once per renewal) and
    /// at once when the leader's watch answers; a shorter poll bounds a SIGTERM takeover where
    /// the watch cannot reach the leader, at half a read unit per read.
    #[arg(long, env = "MRGC_STANDBY_POLL", value_parser = bounded::lease)]
    pub(super) standby_poll: Option<Duration>,
    /// AWS backend: where the standbys reach this replica's lease watch while it leads (an IP,
    /// or IP:port; without a port, the port --listen bound), written into the lease. Default:
    /// $POD_IP when set; `none` turns the watch off (a standby then learns of a release at its
    /// next lease read, within --renew-every).
    #[arg(long, env = "MRGC_ADVERTISE_ADDR", value_parser = advertise)]
    pub(super) advertise_addr: Option<Advertise>,
    /// Local backend: print every decision, holds included (by default only the decisions
    /// that change something, and a summary line per pool every --summary-every).
    #[arg(short, long, env = "MRGC_VERBOSE")]
    verbose: bool,
    /// Local backend: controller time between the per-pool summary lines (0s: none).
    #[arg(long, env = "MRGC_SUMMARY_EVERY", default_value = "10m", value_parser = bounded::span)]
    summary_every: Duration,
    /// Local backend: keep the decision log here as JSON lines (decisions.jsonl, replaced by
    /// each run), for `history --backend local`.
    #[arg(long, env = "MRGC_STATE_DIR", default_value = ".mrgc-local")]
    state_dir: PathBuf,
}

/// `--advertise-addr`: an IP address, with or without a port, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Advertise {
    None,
    Ip(std::net::IpAddr),
    Socket(std::net::SocketAddr),
}

fn advertise(s: &str) -> Result<Advertise, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(Advertise::None);
    }
    let bare = t.trim_start_matches('[').trim_end_matches(']');
    let (a, ip, port) = if let Ok(sock) = t.parse::<std::net::SocketAddr>() {
        (Advertise::Socket(sock), sock.ip(), Some(sock.port()))
    } else if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        (Advertise::Ip(ip), ip, None)
    } else {
        return Err(format!(
            "`{s}` is not an IP address or IP:port (or `none`); names are not resolved"
        ));
    };
    if ip.is_unspecified() || ip.is_multicast() || port == Some(0) {
        return Err(format!(
            "`{s}` cannot be reached by another replica: give this replica's own address"
        ));
    }
    Ok(a)
}

/// The watch address to write into the lease: `--advertise-addr`, else $POD_IP, with the
/// port `listen` bound when none is given. A replica that listens on loopback only cannot be
/// watched from another host: it advertises nothing then (and says why).
pub(super) fn advertised(
    flag: Option<Advertise>,
    pod_ip: Option<&str>,
    listen: std::net::SocketAddr,
) -> Result<Option<std::net::SocketAddr>, String> {
    let chosen = match flag {
        Some(a) => a,
        None => match pod_ip.map(str::trim).filter(|p| !p.is_empty()) {
            Some(ip) => advertise(ip).map_err(|e| format!("POD_IP: {e}"))?,
            None => return Ok(None),
        },
    };
    let addr = match chosen {
        Advertise::None => return Ok(None),
        Advertise::Ip(ip) => std::net::SocketAddr::new(ip, listen.port()),
        Advertise::Socket(s) => s,
    };
    if listen.ip().is_loopback() && !addr.ip().is_loopback() {
        tracing::warn!(
            listen = %listen,
            advertise = %addr,
            "the HTTP port listens on loopback only: the lease watch is not advertised (listen on 0.0.0.0 or the pod's IP to let standbys watch)"
        );
        return Ok(None);
    }
    Ok(Some(addr))
}

pub(super) fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    // Signals first: a SIGTERM at any moment from here on stops the process cleanly.
    let rt = runtime()?;
    let shutdown = {
        let _in_runtime = rt.enter();
        shutdown_signal()
    };
    let set = match load_policies(&a.policies) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
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
    if !ElectionConfig::timing_is_valid(a.lease_duration, a.renew_every) {
        eprintln!(
            "error: --lease-duration ({}) must exceed --renew-every ({}) by at least {} so a leader retries a failed renewal before its lease expires",
            humantime::format_duration(a.lease_duration),
            humantime::format_duration(a.renew_every),
            humantime::format_duration(mrgc_autoscaler::app::election::MIN_LEASE_SLACK)
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    match a.backend {
        Backend::Aws => {
            let Some(region) = aws_region(a.region.clone()) else {
                eprintln!(
                    "error: --backend aws needs a region: pass --region (MRGC_REGION) or set AWS_REGION"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            let Some(prefix) = a.table_prefix.clone().filter(|p| !p.is_empty()) else {
                eprintln!("error: --backend aws needs --table-prefix (MRGC_TABLE_PREFIX)");
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            if !set.pools.values().any(|p| p.region(&region).is_some()) {
                eprintln!(
                    "error: no pool has a policy for region {region}: add a [regions.{region}] section or pick another --region"
                );
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            rt.block_on(run_aws(
                set,
                a,
                region,
                prefix,
                controller_id,
                shadow,
                shutdown,
            ))
        }
        Backend::Local => {
            let region = a
                .region
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| LOCAL_REGION.to_string());
            println!(
                "backend: local (embedded in-memory region {region}, traffic replay at {}x), policy files in {} (hash {})",
                a.speed,
                a.policies
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                set.hash
            );
            let listen = a.listen;
            let opts = LocalOptions {
                region,
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
                verbose: a.verbose,
                summary_every: Some(a.summary_every).filter(|d| !d.is_zero()),
                state_dir: Some(a.state_dir),
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
                run_local(set, opts, hooks, &mut out, shutdown).await
            });
            match result {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(e @ mrgc_autoscaler::app::local::LocalError::Io(_)) => Err(e.into()),
                Err(e @ mrgc_autoscaler::app::local::LocalError::NoPools(_)) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EXIT_CONFIG))
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EXIT_USAGE))
                }
            }
        }
    }
}

pub(super) async fn run_aws(
    set: PolicySet,
    a: RunArgs,
    region: String,
    prefix: String,
    controller_id: String,
    shadow: Option<PolicySet>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    tokio::pin!(shutdown);
    let metrics = Metrics::new(&region);
    let mut opts = AwsOptions::new(&region, &prefix, a.endpoint_url.clone());
    opts.cloudwatch = !a.no_cloudwatch;
    opts.cloudwatch_every = a.cloudwatch_every;
    opts.streams = !a.no_streams;
    opts.resync_every = a.resync_every;
    // Start-up gives way to a signal too: nothing is held yet, so there is nothing to release.
    let started = async {
        let aws = AwsBackends::build(&opts, &metrics).await;
        let tables = tables::verify_tables(&aws.clients, &schema::ALL).await;
        (aws, tables)
    };
    let (aws, verified) = tokio::select! {
        r = started => r,
        _ = &mut shutdown => {
            tracing::info!("stopped while starting");
            return Ok(ExitCode::SUCCESS);
        }
    };
    match verified {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e @ (TablesError::Missing(_) | TablesError::Differ(_))) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("checking the tables")),
    }
    println!(
        "backend: aws in {region} (tables {prefix}-*{}); controller {controller_id}; policies hash {}",
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
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let bound = listener.local_addr().unwrap_or(a.listen);
    let pod_ip = std::env::var("POD_IP").ok();
    let advertise = match advertised(a.advertise_addr, pod_ip.as_deref(), bound) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let (backends, leases) = aws.ports();
    let mut election =
        ElectionConfig::new(&region, &controller_id).with_timing(a.lease_duration, a.renew_every);
    if let Some(poll) = a.standby_poll {
        election.standby_poll = poll;
    }
    election.advertise = advertise.map(|s| s.to_string());
    let opts = ServiceOptions {
        settings: Settings {
            region: region.clone(),
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
        listen = %bound,
        lease_watch = advertise.map_or_else(|| "not advertised".to_string(), |s| s.to_string()),
        "serving /healthz, /readyz, /metrics and the lease watch"
    );
    let deps = ServiceDeps {
        backends,
        leases,
        clock: std::sync::Arc::new(TokioClock::new(1.0)),
        status,
        reload,
        listener: Some(listener),
    };
    run_service(set, opts, deps, metrics, shutdown, |_| {}).await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_are_ips_with_the_bound_port_by_default() {
        let listen: std::net::SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let at = |flag: Option<&str>, pod_ip: Option<&str>| {
            advertised(flag.map(|f| advertise(f).unwrap()), pod_ip, listen)
                .map(|a| a.map(|a| a.to_string()))
        };
        assert_eq!(at(None, None), Ok(None));
        assert_eq!(at(None, Some("")), Ok(None));
        assert_eq!(at(None, Some("10.1.2.3")), Ok(Some("10.1.2.3:9464".into())));
        assert_eq!(
            at(Some("10.9.9.9:8080"), Some("10.1.2.3")),
            Ok(Some("10.9.9.9:8080".into()))
        );
        assert_eq!(at(Some("fd00::7"), None), Ok(Some("[fd00::7]:9464".into())));
        assert_eq!(
            at(Some("[fd00::7]"), None),
            Ok(Some("[fd00::7]:9464".into()))
        );
        assert_eq!(at(Some("none"), Some("10.1.2.3")), Ok(None));
        assert!(
            at(None, Some("pod.example")).is_err(),
            "a bad POD_IP is an error"
        );
        // Loopback only: nobody else could reach it.
        let local: std::net::SocketAddr = "127.0.0.1:9464".parse().unwrap();
        assert_eq!(
            advertised(Some(advertise("10.1.2.3").unwrap()), None, local),
            Ok(None)
        );
        assert_eq!(
            advertised(Some(advertise("127.0.0.1").unwrap()), None, local),
            Ok(Some(local))
        );
        for bad in [
            "0.0.0.0",
            "[::]:9464",
            "224.0.0.1",
            "10.1.2.3:0",
            "leader:9464",
            "10.1.2",
        ] {
            assert!(advertise(bad).is_err(), "{bad}");
        }
    }
}
