//! Running a scenario: every pool through every policy (and sweep point) and every baseline,
//! on a small pool of worker threads, in a deterministic order.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::core::PoolPolicy;
use crate::core::policy::apply_override;

use super::baselines::{Hpa, TargetTracking, oracle, static_peak};
use super::engine::{PoolInputs, RunResult, round, run_baseline, run_counts, run_policy};
use super::scenario::Scenario;

/// Time series resolution for timeseries.csv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// 1 s for replays up to a day, 60 s beyond (a 14-day per-second CSV is gigabytes).
    Auto,
    Seconds(u64),
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// `key=v1,v2,...` grids applied to every pool's first policy.
    pub sweeps: Vec<(String, Vec<String>)>,
    pub resolution: Resolution,
    pub threads: usize,
    pub progress: bool,
    /// Setpoints (RPS per instance) at which the HPA and target tracking also run, as rows
    /// `hpa@<setpoint>` and `target-tracking@<setpoint>`: each baseline's cost-versus-loss
    /// curve on the same traffic.
    pub baseline_setpoints: Vec<f64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            sweeps: Vec::new(),
            resolution: Resolution::Auto,
            threads: 2,
            progress: false,
            baseline_setpoints: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct SimOutput {
    /// Per pool, in scenario order: policies (or sweep points) first, then baselines.
    pub results: Vec<RunResult>,
    pub simulated_seconds: u64,
    pub wall_seconds: f64,
    pub series_step: u64,
    /// For sweeps: the labels of the grid points, in order.
    pub sweep_labels: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("--sweep {0}")]
    Sweep(String),
}

pub(crate) enum Job {
    Policy(String, Box<PoolPolicy>),
    Oracle,
    StaticPeak,
    /// The HPA and target tracking at the baseline band's setpoint (`None`, the reference
    /// rows) or at another (a family's row, labelled `@setpoint`).
    Hpa(Option<f64>),
    TargetTracking(Option<f64>),
}

/// The baseline families' jobs for pool `pool`: the HPA and target tracking at each setpoint.
pub(crate) fn setpoint_jobs(pool: usize, setpoints: &[f64]) -> Vec<(usize, Job)> {
    setpoints
        .iter()
        .flat_map(|&sp| {
            [
                (pool, Job::Hpa(Some(sp))),
                (pool, Job::TargetTracking(Some(sp))),
            ]
        })
        .collect()
}

/// Parse `key=v1,v2,...`.
pub fn parse_sweep(s: &str) -> Result<(String, Vec<String>), SimError> {
    let (k, v) = s.split_once('=').ok_or_else(|| {
        SimError::Sweep(format!(
            "`{s}` must look like key=v1,v2 (e.g. band.high=1.4,1.5)"
        ))
    })?;
    let values: Vec<String> = v
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    if values.is_empty() {
        return Err(SimError::Sweep(format!("`{s}` lists no values")));
    }
    Ok((k.trim().to_string(), values))
}

/// Every combination of the sweep values, as (label, [(key, value)]).
fn grid(sweeps: &[(String, Vec<String>)]) -> Vec<(String, Vec<(String, String)>)> {
    let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (k, values) in sweeps {
        let mut next = Vec::new();
        for p in &points {
            for v in values {
                let mut q = p.clone();
                q.push((k.clone(), v.clone()));
                next.push(q);
            }
        }
        points = next;
    }
    points
        .into_iter()
        .map(|p| {
            let label = p
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            (label, p)
        })
        .collect()
}

pub fn simulate(scenario: &Scenario, opts: &SimOptions) -> Result<SimOutput, SimError> {
    let started = Instant::now();
    let longest = scenario
        .pools
        .iter()
        .map(|p| p.trace.duration_s())
        .max()
        .unwrap_or(0);
    let step = match opts.resolution {
        Resolution::Auto if longest <= 86_400 => 1,
        Resolution::Auto => 60,
        Resolution::Seconds(s) => s.max(1),
    };
    let inputs: Vec<PoolInputs> = scenario
        .pools
        .iter()
        .enumerate()
        .map(|(i, spec)| PoolInputs::new(scenario, spec, i, step))
        .collect();

    // Jobs: per pool, the policies (or the sweep grid over the first policy), then baselines.
    let points = grid(&opts.sweeps);
    let mut jobs: Vec<(usize, Job)> = Vec::new();
    for (i, spec) in scenario.pools.iter().enumerate() {
        if opts.sweeps.is_empty() {
            for (label, p) in &spec.policies {
                jobs.push((i, Job::Policy(label.clone(), Box::new(p.clone()))));
            }
        } else {
            let base = &spec.policies[0].1;
            for (label, overrides) in &points {
                let mut p = base.clone();
                for (k, v) in overrides {
                    p = apply_override(&p, k, v).map_err(SimError::Sweep)?;
                }
                jobs.push((i, Job::Policy(label.clone(), Box::new(p))));
            }
        }
        // The oracle is the yardstick of vs_oracle: it runs whenever any baseline does.
        if !scenario.baselines.is_empty() {
            jobs.push((i, Job::Oracle));
        }
        for b in &scenario.baselines {
            match b.as_str() {
                "static-peak" => jobs.push((i, Job::StaticPeak)),
                "hpa" => jobs.push((i, Job::Hpa(None))),
                "target-tracking" => jobs.push((i, Job::TargetTracking(None))),
                _ => {}
            }
        }
        jobs.extend(setpoint_jobs(i, &opts.baseline_setpoints));
    }

    let bar = opts.progress.then(|| {
        let total: u64 = jobs.iter().map(|(i, _)| inputs[*i].duration_s()).sum();
        progress_bar(total, "simulating")
    });
    let mut results = run_parallel(scenario, &inputs, &jobs, opts.threads, bar.as_ref());
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    vs_oracle(&mut results);
    savings_at_equal_loss(&mut results);
    let simulated_seconds = jobs.iter().map(|(i, _)| inputs[*i].duration_s()).sum();
    Ok(SimOutput {
        results,
        simulated_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
        series_step: step,
        sweep_labels: if opts.sweeps.is_empty() {
            Vec::new()
        } else {
            points.into_iter().map(|(l, _)| l).collect()
        },
    })
}

pub(crate) async fn run_job(scenario: &Scenario, inp: &PoolInputs<'_>, job: &Job) -> RunResult {
    let reference = &inp.spec.policies[0].1;
    let (min, max) = reference
        .region(&scenario.region)
        .map_or((0, u32::MAX), |r| (r.min, r.max));
    // The yardsticks use the scenario's fixed band, never the policy under test's.
    let band = scenario.baseline_band;
    let opening = |sp: f64| crate::core::decide::instances_for(inp.rate.at(0), sp).clamp(min, max);
    // A family's row is labelled with its setpoint; a reference row is not.
    let label = |name: &str, at: &Option<f64>| match at {
        Some(sp) => format!("{name}@{sp}"),
        None => name.to_string(),
    };
    match job {
        Job::Policy(label, p) => run_policy(inp, label, p).await,
        Job::Oracle => {
            let (s, l) = oracle(
                &inp.rate.per_second,
                band.high,
                min,
                max,
                inp.model.launch_time.as_secs(),
            );
            run_counts(inp, "oracle", &s, &l)
        }
        Job::StaticPeak => {
            let n = static_peak(inp.rate.peak(), band.high, min);
            let serving = vec![n; inp.duration_s() as usize];
            let launching = vec![0; inp.duration_s() as usize];
            run_counts(inp, "static-peak", &serving, &launching)
        }
        Job::Hpa(at) => {
            let sp = at.unwrap_or(band.setpoint);
            let mut rule = Hpa::new(sp, min, max);
            run_baseline(inp, &label("hpa", at), opening(sp), &mut rule).await
        }
        Job::TargetTracking(at) => {
            let sp = at.unwrap_or(band.setpoint);
            let mut rule = TargetTracking::new(sp, min, max);
            run_baseline(inp, &label("target-tracking", at), opening(sp), &mut rule).await
        }
    }
}

/// A progress bar on stderr counting simulated seconds.
pub(crate) fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(total);
    b.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{percent:>3}}% {{msg}} ({{eta}} left)"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b
}

/// Run `jobs` (each on `inputs[pool]`) on `threads` workers; results in job order.
pub(crate) fn run_parallel(
    scenario: &Scenario,
    inputs: &[PoolInputs<'_>],
    jobs: &[(usize, Job)],
    threads: usize,
    bar: Option<&indicatif::ProgressBar>,
) -> Vec<RunResult> {
    let results: Mutex<Vec<Option<RunResult>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Each worker drives its runs on its own single-threaded runtime: the in-memory
                // adapters never wait, so a run is a plain loop of polls.
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
                    return;
                };
                loop {
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    let Some((pool, job)) = jobs.get(j) else {
                        break;
                    };
                    let inp = &inputs[*pool];
                    let r = rt.block_on(run_job(scenario, inp, job));
                    if let Some(b) = bar {
                        b.inc(inp.duration_s());
                        b.set_message(format!("{} {}", r.summary.pool, r.summary.policy));
                    }
                    results.lock().unwrap_or_else(|p| p.into_inner())[j] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// Each row's `vs_oracle`: its instance-hours over the oracle's of its pool.
pub(crate) fn vs_oracle(results: &mut [RunResult]) {
    let oracles: Vec<(String, f64)> = results
        .iter()
        .filter(|r| r.summary.policy == "oracle")
        .map(|r| (r.summary.pool.clone(), r.summary.instance_hours))
        .collect();
    for r in results.iter_mut() {
        let oracle_hours = oracles
            .iter()
            .find(|(p, _)| *p == r.summary.pool)
            .map_or(0.0, |(_, h)| *h);
        r.summary.vs_oracle = if oracle_hours > 0.0 {
            round(r.summary.instance_hours / oracle_hours, 4)
        } else {
            0.0
        };
    }
}

/// The Pareto frontier (fewer instance-hours, less over-capacity) of a pool's results.
pub fn pareto<'a>(results: &[&'a RunResult]) -> Vec<&'a RunResult> {
    let mut front: Vec<&RunResult> = results
        .iter()
        .copied()
        .filter(|a| {
            !results.iter().any(|b| {
                b.summary.instance_hours <= a.summary.instance_hours
                    && b.summary.over_capacity_pct <= a.summary.over_capacity_pct
                    && (b.summary.instance_hours < a.summary.instance_hours
                        || b.summary.over_capacity_pct < a.summary.over_capacity_pct)
            })
        })
        .collect();
    front.sort_by(|a, b| {
        a.summary
            .instance_hours
            .total_cmp(&b.summary.instance_hours)
    });
    front
}

/// Whether a row is one of the reactive baselines' (the HPA's or target tracking's, at any
/// setpoint).
pub fn is_reactive_baseline(policy: &str) -> bool {
    ["hpa", "target-tracking"]
        .iter()
        .any(|b| policy == *b || policy.starts_with(&format!("{b}@")))
}

/// Each policy row's `savings_at_equal_loss`: its instance-hours over the fewest instance-hours
/// of any HPA or target-tracking row of its pool (any setpoint) that loses no more than it
/// does; 0 when none loses so little.
pub fn savings_at_equal_loss(results: &mut [RunResult]) {
    let rows: Vec<(String, f64, f64)> = results
        .iter()
        .filter(|r| is_reactive_baseline(&r.summary.policy))
        .map(|r| {
            (
                r.summary.pool.clone(),
                r.summary.instance_hours,
                r.summary.over_capacity_pct,
            )
        })
        .collect();
    for r in results.iter_mut().filter(|r| !r.is_baseline) {
        let best = rows
            .iter()
            .filter(|(pool, _, over)| {
                *pool == r.summary.pool && *over <= r.summary.over_capacity_pct
            })
            .map(|(_, hours, _)| *hours)
            .fold(f64::INFINITY, f64::min);
        r.summary.savings_at_equal_loss = Some(if best.is_finite() && best > 0.0 {
            round(r.summary.instance_hours / best, 4)
        } else {
            0.0
        });
    }
}
