//! `run --backend local`: the whole loop against the embedded in-memory region, with traffic
//! replayed from a trace at `speed` controller seconds per wall second.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::memory::MemoryRegion;
use crate::core::policy::{RegionPolicy, Step};
use crate::core::{Action, PolicySet, PoolPolicy};
use crate::ports::Clock;
use crate::replay::trace::Trace;
use crate::replay::traffic::{Rate, Scale};

use super::clock::TokioClock;
use super::decision_file::DecisionFile;
use super::election::ElectionConfig;
use super::http::Status;
use super::reconciler::{CycleReport, Settings};
use super::service::{Handover, ServiceDeps, ServiceOptions, run_service};
use crate::telemetry::Metrics;

/// The trace replayed when none is given: one hour of a production LLM chat service.
pub const EMBEDDED_TRACE: &str =
    include_str!("../../simulations/traces/azure-llm-2023-conv/rps.csv");

/// Mean RPS of the first, second and third pool in the embedded replay (then repeating), and
/// how far into the trace each starts, so the pools do not move in lockstep.
const POOL_MEANS: [f64; 3] = [75.0, 45.0, 20.0];
const POOL_OFFSETS_S: [u64; 3] = [1_500, 2_700, 300];

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub region: String,
    pub interval: Duration,
    pub speed: f64,
    /// Controller time to run for; None runs until shutdown.
    pub duration: Option<Duration>,
    pub dry_run: bool,
    pub trace: Option<PathBuf>,
    pub seed: u64,
    pub controller_id: String,
    pub record_heartbeat: Duration,
    /// A candidate policy set evaluated beside the live one (recorded as dry-run).
    pub shadow: Option<PolicySet>,
    /// Where the live and shadow policies came from, for hot reload (empty: none).
    pub policy_paths: Vec<PathBuf>,
    pub shadow_paths: Vec<PathBuf>,
    pub policy_poll: Duration,
    pub lease_duration: Duration,
    pub renew_every: Duration,
    /// Print every decision, holds included (by default only those that change something,
    /// and a summary per pool every `summary_every`).
    pub verbose: bool,
    /// Controller time between per-pool summary lines (None: no summaries).
    pub summary_every: Option<Duration>,
    /// Keep the decision log as JSON lines in this directory (`history --backend local`
    /// reads it); None keeps it in memory only.
    pub state_dir: Option<PathBuf>,
}

impl LocalOptions {
    /// The defaults of `run`, for `region` (tests and embedding).
    pub fn new(region: &str) -> Self {
        LocalOptions {
            region: region.to_string(),
            interval: Duration::from_secs(30),
            speed: 60.0,
            duration: None,
            dry_run: false,
            trace: None,
            seed: 1,
            controller_id: "local".to_string(),
            record_heartbeat: Duration::from_secs(600),
            shadow: None,
            policy_paths: Vec::new(),
            shadow_paths: Vec::new(),
            policy_poll: Duration::from_secs(5),
            lease_duration: crate::app::election::DEFAULT_LEASE_DURATION,
            renew_every: crate::app::election::DEFAULT_RENEW_EVERY,
            verbose: false,
            summary_every: Some(Duration::from_secs(600)),
            state_dir: None,
        }
    }
}

/// How the caller reaches into a local run: the endpoints' listener and the reload trigger.
#[derive(Default)]
pub struct LocalHooks {
    /// Serve `/healthz`, `/readyz` and `/metrics` here (None: no endpoints).
    pub listener: Option<tokio::net::TcpListener>,
    /// Notify to reload the policies now (SIGHUP).
    pub reload: Arc<tokio::sync::Notify>,
}

/// Counts of what a local run decided, per pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalSummary {
    pub cycles: u64,
    pub decisions: u64,
    pub scale_ups: std::collections::BTreeMap<String, u64>,
    pub scale_downs: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    Trace(#[from] crate::replay::trace::TraceError),
    #[error(
        "no pool has a policy for region {0}: add a [regions.{0}] section or pick another --region"
    )]
    NoPools(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the embedded region until `duration` passes or `shutdown` resolves: the same service
/// loop as production (leader election, reload, endpoints, graceful release) on an in-memory
/// region whose world runs beside it.
pub async fn run_local<W: Write + Send>(
    policies: PolicySet,
    opts: LocalOptions,
    hooks: LocalHooks,
    out: &mut W,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<LocalSummary, LocalError> {
    let trace = match &opts.trace {
        Some(p) => Trace::load(p)?,
        None => Trace::parse(
            "embedded:azure-llm-2023-conv/rps.csv",
            "azure-llm-2023-conv",
            EMBEDDED_TRACE,
        )?,
    };
    let region = MemoryRegion::new(&opts.region, opts.seed);

    // One ASG per pool, warm-started at what the policy wants for the first minute.
    let mut replays = Vec::new();
    let pools: Vec<_> = policies
        .pools
        .values()
        .filter_map(|p| p.region(&opts.region).map(|r| (p, r)))
        .collect();
    if pools.is_empty() {
        return Err(LocalError::NoPools(opts.region.clone()));
    }
    // Draw every pool's arrivals before the clock starts (the costly part of setting up).
    let rates: Vec<(f64, Rate, Vec<u32>)> = (0..pools.len())
        .map(|i| {
            let mean = POOL_MEANS[i % POOL_MEANS.len()];
            let offset = POOL_OFFSETS_S[i % POOL_OFFSETS_S.len()];
            let rate = Rate::from_trace(&trace, Scale::Mean(mean), offset);
            let arrivals = rate.arrivals(opts.seed.wrapping_add(i as u64));
            (mean, rate, arrivals)
        })
        .collect();
    let clock = TokioClock::new(opts.speed);
    let start = clock.now_ms();
    for (i, ((p, r), (mean, rate, arrivals))) in pools.iter().zip(rates).enumerate() {
        region.create_asg(
            &r.asg,
            &p.pool,
            0,
            r.max.saturating_mul(2).max(r.max + 10),
            p.instances.launch_time,
            Duration::from_secs(30),
        );
        // The opening rate: the first minute's mean (a smoothed trace starts with a half window).
        let opening = (0..60).map(|s| rate.at(s)).sum::<f64>() / 60.0;
        let warm = p.wanted(opening).clamp(r.min, r.max);
        region.warm_start(&r.asg, warm, start);
        // Routers were already writing before we started: five minutes at the opening rate.
        for m in 0..5 {
            region.put_rps(&p.pool, &opts.region, start - m * 60_000, opening);
        }
        writeln!(
            out,
            "pool {:<10} asg {:<28} replaying {} scaled to a mean of {mean} rps (starting {} s in); {warm} instances serving at start",
            p.pool,
            r.asg,
            trace.name,
            (POOL_OFFSETS_S[i % POOL_OFFSETS_S.len()]) % trace.duration_s().max(1),
        )?;
        writeln!(out, "pool {:<10} policy: {}", p.pool, describe_policy(p, r))?;
        replays.push((p.pool.clone(), arrivals));
    }
    // Every pool's replay has the trace's length (each starts at its own offset and wraps).
    let loop_s = replays.first().map_or(0, |(_, a)| a.len() as u64);
    writeln!(
        out,
        "replay: {} lasts {} of controller time ({} of wall time at {}x); it loops when it ends",
        trace.name,
        humantime::format_duration(Duration::from_secs(loop_s)),
        humantime::format_duration(Duration::from_secs(
            ((loop_s as f64 / opts.speed).round() as u64).max(1)
        )),
        opts.speed
    )?;
    writeln!(
        out,
        "showing: decisions that change something{}{}",
        match opts.summary_every {
            Some(every) if !every.is_zero() =>
                format!(", and each pool's state every {}", span(every.as_secs())),
            _ => String::new(),
        },
        if opts.verbose {
            "; every hold too (--verbose)"
        } else {
            "; every hold with --verbose"
        }
    )?;
    let mut log_file = match &opts.state_dir {
        Some(dir) => match DecisionFile::create(dir) {
            Ok(f) => {
                writeln!(
                    out,
                    "decisions: recorded in {} (mrgc-autoscaler history --backend local --state-dir {} --pool {})",
                    f.path().display(),
                    dir.display(),
                    pools[0].0.pool
                )?;
                Some(f)
            }
            Err(e) => {
                eprintln!(
                    "warning: cannot write the decision log in {} ({e}); `history --backend local` will not see this run (pick another --state-dir)",
                    dir.display()
                );
                None
            }
        },
        None => None,
    };

    let metrics = Metrics::new(&opts.region);
    let status = Status::new(opts.interval);
    let mut leader = status.leader_watch();
    let election = ElectionConfig::new(&opts.region, &opts.controller_id)
        .with_timing(opts.lease_duration, opts.renew_every);
    let service = ServiceOptions {
        settings: Settings {
            region: opts.region.clone(),
            controller_id: opts.controller_id.clone(),
            dry_run: opts.dry_run,
            record_heartbeat: opts.record_heartbeat,
        },
        interval: opts.interval,
        election,
        policy_paths: opts.policy_paths.clone(),
        policy_poll: opts.policy_poll,
        shadow: opts.shadow.clone(),
        shadow_paths: opts.shadow_paths.clone(),
    };
    let deps = ServiceDeps {
        backends: region.backends(),
        leases: Arc::new(region.clone()),
        clock: Arc::new(clock.clone()),
        status,
        reload: hooks.reload,
        listener: hooks.listener,
    };

    // The world runs beside the controller on the same clock: instances launch and
    // heartbeat, routers write each minute's RPS.
    let mut world = World {
        region: region.clone(),
        region_name: opts.region.clone(),
        replays,
        start,
        next_minute: start + 60_000,
    };
    world.step(start);
    let world = {
        let clock = clock.clone();
        tokio::spawn(async move {
            loop {
                clock.sleep(Duration::from_secs(1)).await;
                world.step(clock.now_ms());
            }
        })
    };

    // Stop on the caller's signal, after `duration` of controller time, or when the output
    // cannot be written.
    let io_failed = Arc::new(tokio::sync::Notify::new());
    let end = opts.duration.map(|d| start + d.as_millis() as i64);
    let stop = {
        let (clock, io_failed) = (clock.clone(), io_failed.clone());
        async move {
            let elapsed = async {
                match end {
                    Some(end) => {
                        clock
                            .sleep(Duration::from_millis((end - clock.now_ms()).max(0) as u64))
                            .await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown => {}
                _ = elapsed => {}
                _ = io_failed.notified() => {}
            }
        }
    };
    let mut summary = LocalSummary::default();
    let mut io_error: Option<std::io::Error> = None;
    let region_name = opts.region.clone();
    let mut screen = Screen {
        start,
        region: region_name.clone(),
        verbose: opts.verbose,
        summary_every_ms: opts
            .summary_every
            .filter(|d| !d.is_zero())
            .map(|d| d.as_millis().min(i64::MAX as u128) as i64),
        next_summary_ms: 0,
        last_summary_ms: start,
        counts: std::collections::BTreeMap::new(),
        loop_ms: loop_s as i64 * 1000,
        loops: 0,
        trace_name: trace.name.clone(),
    };
    screen.next_summary_ms = screen.summary_every_ms.map_or(i64::MAX, |e| start + e);
    let log_region = region.clone();
    let handover = run_service(policies, service, deps, metrics, stop, |report| {
        if io_error.is_some() {
            return;
        }
        let mut write = || -> std::io::Result<()> {
            if leader.has_changed().unwrap_or(false) {
                let l = *leader.borrow_and_update();
                if l.is_leader {
                    writeln!(
                        out,
                        "{} leader of {region_name} (epoch {})",
                        stamp(report.at_ms - start),
                        l.epoch
                    )?;
                } else {
                    writeln!(out, "{} follower", stamp(report.at_ms - start))?;
                }
            }
            screen.report(out, report, &mut summary)?;
            if let Some(f) = log_file.as_mut()
                && let Err(e) = f.append_new(&log_region.decisions())
            {
                eprintln!(
                    "warning: writing the decision log {} failed ({e}); it stops here",
                    f.path().display()
                );
                log_file = None;
            }
            Ok(())
        };
        if let Err(e) = write() {
            io_error = Some(e);
            io_failed.notify_one();
        }
    })
    .await;
    world.abort();
    if let Some(e) = io_error {
        return Err(e.into());
    }
    match handover {
        Handover::Released { epoch } => {
            writeln!(out, "released the lease of {} (epoch {epoch})", opts.region)?
        }
        Handover::Failed { error, .. } => writeln!(out, "releasing the lease failed: {error}")?,
        Handover::NotLeader => {}
    }
    writeln!(
        out,
        "stopped after {} of controller time: {} cycles, {} decisions",
        stamp(clock.now_ms() - start),
        summary.cycles,
        summary.decisions
    )?;
    out.flush()?;
    Ok(summary)
}

/// The embedded region's world: ASGs converge, instances launch and heartbeat, routers write
/// one sample per minute (that minute's mean, at the minute's end).
struct World {
    region: MemoryRegion,
    region_name: String,
    replays: Vec<(String, Vec<u32>)>,
    start: i64,
    next_minute: i64,
}

impl World {
    fn step(&mut self, now: i64) {
        self.region.advance(now);
        while self.next_minute <= now {
            let minute = ((self.next_minute - self.start) / 60_000 - 1) as usize;
            for (pool, arrivals) in &self.replays {
                let n = arrivals.len().max(1);
                let sum: u64 = (0..60)
                    .map(|s| u64::from(arrivals.get((minute * 60 + s) % n).copied().unwrap_or(0)))
                    .sum();
                self.region
                    .put_rps(pool, &self.region_name, self.next_minute, sum as f64 / 60.0);
            }
            self.next_minute += 60_000;
        }
    }
}

fn stamp(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// "1 hold", "3 holds".
fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// A duration in words: "60 minutes", "1 minute", "90 seconds", "2 hours".
fn span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s >= 7200 && s % 3600 == 0 => plural(s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

/// The policy in force for a pool, in one line: its band (or its SLO), and its bounds here.
pub fn describe_policy(p: &PoolPolicy, r: &RegionPolicy) -> String {
    let sizing = match &p.slo {
        Some(slo) => format!(
            "SLO: at most {}% of requests over capacity (band {}–{} RPS per instance, made \
             leaner from {} of the pool's history)",
            slo.over_capacity * 100.0,
            p.band.low,
            p.band.high,
            span(slo.history.as_secs()),
        ),
        None => {
            let b = &p.band;
            let headroom = match b.headroom {
                Some(Step::Count(n)) => format!(" + {n} spare"),
                Some(Step::Percent(pc)) => format!(" + {pc}% spare"),
                None => String::new(),
            };
            format!(
                "band {}–{} RPS per instance, setpoint {}{headroom}",
                b.low, b.high, b.setpoint
            )
        }
    };
    let schedules = match p.schedules.len() {
        0 => String::new(),
        1 => ", 1 scheduled minimum".to_string(),
        n => format!(", {n} scheduled minimums"),
    };
    format!(
        "{sizing}; min {} max {}{schedules}; launch {}",
        r.min,
        r.max,
        humantime::format_duration(p.instances.launch_time)
    )
}

/// Counts of one pool's decisions since its last summary line.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    ups: u64,
    downs: u64,
    holds: u64,
}

/// What the embedded run prints: decisions that change something, every hold with
/// --verbose, a summary line per pool every `summary_every`, and the replay's loops.
struct Screen {
    start: i64,
    region: String,
    verbose: bool,
    summary_every_ms: Option<i64>,
    next_summary_ms: i64,
    last_summary_ms: i64,
    counts: std::collections::BTreeMap<String, Counts>,
    /// The replay's length (0: no replay).
    loop_ms: i64,
    loops: i64,
    trace_name: String,
}

impl Screen {
    fn report<W: Write>(
        &mut self,
        out: &mut W,
        report: &CycleReport,
        summary: &mut LocalSummary,
    ) -> std::io::Result<()> {
        let (start, region) = (self.start, self.region.as_str());
        if self.loop_ms > 0 {
            let loops = (report.at_ms - start) / self.loop_ms;
            if loops > self.loops {
                self.loops = loops;
                writeln!(
                    out,
                    "{} replay: {} ended and loops; every pool's traffic starts over where it began",
                    stamp(loops * self.loop_ms),
                    self.trace_name
                )?;
            }
        }
        summary.cycles += 1;
        for p in &report.pools {
            let d = &p.decision;
            summary.decisions += 1;
            let c = self.counts.entry(p.pool.clone()).or_default();
            match d.action {
                Action::ScaleUp => {
                    *summary.scale_ups.entry(p.pool.clone()).or_default() += 1;
                    c.ups += 1;
                }
                Action::ScaleDown => {
                    *summary.scale_downs.entry(p.pool.clone()).or_default() += 1;
                    c.downs += 1;
                }
                Action::None => c.holds += 1,
            }
            if d.action == Action::None && !self.verbose {
                continue;
            }
            writeln!(
                out,
                "{} {region} {:<8} {} {:<10} {}: {}",
                stamp(d.at_ms - start),
                p.pool,
                state(d),
                d.action.as_str(),
                d.reason_code,
                d.reason
            )?;
        }
        // The shadow policy, where it would have done otherwise than the live one.
        for sh in &report.shadow {
            let d = &sh.decision;
            let live = report.pools.iter().find(|p| p.pool == sh.pool);
            if live.is_some_and(|l| l.decision.desired == d.desired) && d.action == Action::None {
                continue;
            }
            writeln!(
                out,
                "{} {region} {:<8} shadow                                  desired={:>3} {:<10} {}: {}",
                stamp(d.at_ms - start),
                sh.pool,
                d.desired,
                d.action.as_str(),
                d.reason_code,
                d.reason
            )?;
        }
        for (pool, e) in report.errors.iter().chain(&report.shadow_errors) {
            writeln!(
                out,
                "{} {region} {pool:<8} error: {e}",
                stamp(report.at_ms - start)
            )?;
        }
        if let Some(every) = self.summary_every_ms
            && report.at_ms >= self.next_summary_ms
        {
            for p in &report.pools {
                let c = self.counts.remove(&p.pool).unwrap_or_default();
                writeln!(
                    out,
                    "{} {region} {:<8} {} {:<10} since {}: {}, {}, {}",
                    stamp(report.at_ms - start),
                    p.pool,
                    state(&p.decision),
                    "summary",
                    stamp(self.last_summary_ms - start),
                    plural(c.ups, "scale-up"),
                    plural(c.downs, "scale-down"),
                    plural(c.holds, "hold")
                )?;
            }
            self.last_summary_ms = report.at_ms;
            while self.next_summary_ms <= report.at_ms {
                self.next_summary_ms += every;
            }
        }
        Ok(())
    }
}

/// `rps= 97.2 serving= 67 launching=  0 desired= 67`
fn state(d: &crate::core::Decision) -> String {
    let rps = d.rps.map_or_else(|| "-".to_string(), |r| format!("{r:.1}"));
    format!(
        "rps={:>6} serving={:>3} launching={:>3} desired={:>3}",
        rps, d.serving, d.launching, d.desired
    )
}
