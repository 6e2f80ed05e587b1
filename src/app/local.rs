//! `run --backend local`: the whole loop against the embedded in-memory region, with traffic
//! replayed from a trace at `speed` controller seconds per wall second.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::memory::MemoryRegion;
use crate::core::{Action, PolicySet};
use crate::ports::Clock;
use crate::sim::trace::Trace;
use crate::sim::traffic::{Rate, Scale};

use super::clock::TokioClock;
use super::election::{ElectionConfig, Elector, Transition};
use super::metrics::Metrics;
use super::reconciler::{Backends, CycleReport, Reconciler, Settings};

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
    Trace(#[from] crate::sim::trace::TraceError),
    #[error(
        "no pool has a policy for region {0}: add a [regions.{0}] section or pick another --region"
    )]
    NoPools(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the embedded region until `duration` passes or `shutdown` resolves.
pub async fn run_local<W: Write + Send>(
    policies: PolicySet,
    opts: LocalOptions,
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
        replays.push((p.pool.clone(), arrivals));
    }

    let backends = Backends::in_memory(&region);
    let settings = Settings {
        region: opts.region.clone(),
        controller_id: opts.controller_id.clone(),
        dry_run: opts.dry_run,
        record_heartbeat: opts.record_heartbeat,
    };
    let mut reconciler = Reconciler::new(backends, settings, Metrics::new());
    reconciler.set_shadow(opts.shadow.clone());
    let mut elector = Elector::new(
        Arc::new(region.clone()),
        ElectionConfig::new(&opts.region, &opts.controller_id),
    );

    let mut summary = LocalSummary::default();
    let mut next_minute = start + 60_000;
    let mut next_cycle = start;
    let end = opts.duration.map(|d| start + d.as_millis() as i64);
    tokio::pin!(shutdown);
    loop {
        let now = clock.now_ms();
        if end.is_some_and(|e| now >= e) {
            break;
        }
        region.advance(now);
        // Routers: one sample per minute, that minute's mean, written at the minute's end.
        while next_minute <= now {
            let minute = ((next_minute - start) / 60_000 - 1) as usize;
            for (pool, arrivals) in &replays {
                let n = arrivals.len().max(1);
                let sum: u64 = (0..60)
                    .map(|s| u64::from(arrivals[(minute * 60 + s) % n]))
                    .sum();
                region.put_rps(pool, &opts.region, next_minute, sum as f64 / 60.0);
            }
            next_minute += 60_000;
        }
        if let Transition::Acquired { epoch } = elector.tick(now).await {
            writeln!(
                out,
                "{} leader of {} (epoch {epoch})",
                stamp(now - start),
                opts.region
            )?;
        }
        if now >= next_cycle {
            let leadership = elector.leadership(now);
            let report = reconciler.reconcile_all(&policies, now, &leadership).await;
            print_report(out, &report, start, &opts.region, &mut summary)?;
            next_cycle += opts.interval.as_millis() as i64;
        }
        tokio::select! {
            _ = clock.sleep(Duration::from_secs(1)) => {}
            _ = &mut shutdown => break,
        }
    }
    if let Err(e) = elector.release().await {
        writeln!(out, "releasing the lease failed: {e}")?;
    }
    writeln!(
        out,
        "stopped after {} of controller time: {} cycles, {} decisions",
        stamp(clock.now_ms() - start),
        summary.cycles,
        summary.decisions
    )?;
    Ok(summary)
}

fn stamp(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn print_report<W: Write>(
    out: &mut W,
    report: &CycleReport,
    start: i64,
    region: &str,
    summary: &mut LocalSummary,
) -> std::io::Result<()> {
    summary.cycles += 1;
    for p in &report.pools {
        let d = &p.decision;
        summary.decisions += 1;
        match d.action {
            Action::ScaleUp => *summary.scale_ups.entry(p.pool.clone()).or_default() += 1,
            Action::ScaleDown => *summary.scale_downs.entry(p.pool.clone()).or_default() += 1,
            Action::None => {}
        }
        let rps = d.rps.map_or_else(|| "-".to_string(), |r| format!("{r:.1}"));
        writeln!(
            out,
            "{} {region} {:<8} rps={:>6} serving={:>3} launching={:>3} desired={:>3} {:<10} {}: {}",
            stamp(d.at_ms - start),
            p.pool,
            rps,
            d.serving,
            d.launching,
            d.desired,
            d.action.as_str(),
            d.reason_code,
            d.reason
        )?;
    }
    for (pool, e) in &report.errors {
        writeln!(
            out,
            "{} {region} {pool:<8} error: {e}",
            stamp(report.at_ms - start)
        )?;
    }
    Ok(())
}
