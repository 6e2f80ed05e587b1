//! `tune`: a walk-forward search of one pool's policy knobs.
//!
//! The traffic is cut in two: the *head* (the first `split` of it) is the only data a choice
//! is made on; the *tail* (the rest) is the only data the choice is scored on. Every candidate
//! is replayed over the head alone, through the same reconciler as `run`, beside the reactive
//! baselines on the same head; one is chosen by the rule below; then the current policy, the
//! chosen one and the baselines are replayed over the whole trace and scored on the tail only
//! (the controller has the head behind it as history, as it would in service).
//!
//! The rule, on the head: among candidates that make no more scale actions than the HPA and
//! use no more instance-hours and lose no larger share of requests than both the HPA and
//! target tracking, in sum and in each half of the head, the cheapest that meets the SLO;
//! failing that, of those, the one with the lowest `savings_at_equal_loss`; failing that
//! (nothing dominates both), of the candidates that spent and lost no more than the current
//! policy in each half, the lowest `savings_at_equal_loss`; with none, the current policy.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::core::PoolPolicy;
use crate::core::policy::{apply_override, validated};

use super::engine::{Point, PoolInputs, RunResult, Summary};
use super::run::{self, Job};
use super::scenario::Scenario;

/// One searched policy key and the values it may take.
#[derive(Debug, Clone, PartialEq)]
pub struct Knob {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// The share of the trace chosen on (the rest is scored on).
    pub split: f64,
    /// Candidates to replay (the current policy is always one of them).
    pub points: usize,
    pub seed: u64,
    pub threads: usize,
    pub progress: bool,
    /// Knobs to search instead of the default space.
    pub space: Option<Vec<Knob>>,
    /// Setpoints of the baseline families (the yardstick of `savings_at_equal_loss`).
    pub baseline_setpoints: Vec<f64>,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            split: 0.7,
            points: 500,
            seed: 1,
            threads: 2,
            progress: false,
            space: None,
            baseline_setpoints: DEFAULT_SETPOINTS.to_vec(),
        }
    }
}

/// The setpoints of the baseline families tune compares against: from well below the
/// product's band to saturation.
pub const DEFAULT_SETPOINTS: [f64; 6] = [0.6, 0.8, 1.0, 1.25, 1.5, 1.75];

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(
        "the trace is {0} s long: tune needs at least two days (a day to choose on and more to \
         score on) to say anything about traffic it has not seen"
    )]
    TooShort(u64),
    #[error("--split {0}: must be within 0.3..=0.9")]
    Split(f64),
    #[error("knob {0}")]
    Knob(String),
    #[error("the scenario has no pool to tune")]
    NoPool,
}

/// Shortest trace tune accepts.
pub const MIN_TRACE_S: u64 = 2 * 86_400;

/// The knobs searched by default, with values by rule: utilisations as shares of an
/// instance's saturation, windows as multiples of the launch time, steps from a trickle to all
/// at once. Nothing here is fitted to any trace.
pub fn default_space(policy: &PoolPolicy) -> Vec<Knob> {
    let sat = policy.instances.max_rps;
    let lead = policy.instances.launch_time.as_secs().max(60);
    let band = [0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
        .iter()
        .map(|f| format!("{:.2}", f * sat))
        .collect();
    let windows = |mults: &[f64]| -> Vec<String> {
        mults
            .iter()
            .map(|m| {
                let s = ((lead as f64 * m) / 30.0).round().max(1.0) as u64 * 30;
                humantime::format_duration(Duration::from_secs(s)).to_string()
            })
            .collect()
    };
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    vec![
        Knob {
            key: "band.high".into(),
            values: band,
        },
        Knob {
            key: "band.headroom".into(),
            values: strs(&["0", "2%", "5%", "10%"]),
        },
        Knob {
            key: "scale_up.confirm".into(),
            values: strs(&["1", "2", "3"]),
        },
        Knob {
            key: "scale_down.stabilization".into(),
            values: windows(&[0.5, 1.0, 1.5, 2.0, 3.0, 5.0]),
        },
        Knob {
            key: "scale_down.max_step".into(),
            values: strs(&["2%", "5%", "10%", "25%", "100%"]),
        },
        Knob {
            key: "scale_down.collapse_hold".into(),
            values: {
                let mut v = vec!["0s".to_string()];
                v.extend(windows(&[2.5, 5.0]));
                v
            },
        },
        Knob {
            key: "forecast.mode".into(),
            values: strs(&["off", "trend", "seasonal"]),
        },
    ]
}

/// Parse `key=v1,v2,...` into a knob.
pub fn parse_knob(s: &str) -> Result<Knob, TuneError> {
    let (key, values) = run::parse_sweep(s).map_err(|e| TuneError::Knob(e.to_string()))?;
    Ok(Knob { key, values })
}

/// Set one knob. `band.high` moves the whole band in proportion (its shape stays the
/// planner's); every other key is an ordinary override. The result is validated.
pub fn with_knob(policy: &PoolPolicy, key: &str, value: &str) -> Result<PoolPolicy, String> {
    if key == "band.high" {
        let high: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("band.high={value}: expected a positive number"))?;
        let k = high / policy.band.high;
        let mut p = policy.clone();
        p.band.high = high;
        p.band.low = policy.band.low * k;
        p.band.setpoint = policy.band.setpoint * k;
        return validated(p, key, value);
    }
    apply_override(policy, key, value)
}

/// A policy to try: its settings of the knobs (empty for the current policy).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub settings: Vec<(String, String)>,
    pub policy: PoolPolicy,
}

impl Candidate {
    pub fn label(&self) -> String {
        if self.settings.is_empty() {
            "current".to_string()
        } else {
            self.settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    }
}

/// Up to `points` distinct candidates: the current policy first, then the whole grid when it
/// is that small, else a seeded random sample of it. Settings the validator rejects are
/// skipped.
pub fn candidates(
    current: &PoolPolicy,
    space: &[Knob],
    points: usize,
    seed: u64,
) -> Result<Vec<Candidate>, TuneError> {
    for k in space {
        // Every value must be settable on its own: a typo is an error, not a silent skip.
        for v in &k.values {
            with_knob(current, &k.key, v).map_err(TuneError::Knob)?;
        }
    }
    let size = space
        .iter()
        .map(|k| k.values.len().max(1))
        .try_fold(1usize, |a, n| a.checked_mul(n))
        .unwrap_or(usize::MAX);
    let mut picks: Vec<Vec<usize>> = Vec::new();
    if size <= points.saturating_sub(1) {
        for mut i in 0..size {
            let mut idx = Vec::with_capacity(space.len());
            for k in space {
                let n = k.values.len().max(1);
                idx.push(i % n);
                i /= n;
            }
            picks.push(idx);
        }
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut seen = std::collections::HashSet::new();
        let mut tries = 0usize;
        while picks.len() < points.saturating_sub(1) && tries < points.saturating_mul(20) {
            tries += 1;
            let idx: Vec<usize> = space
                .iter()
                .map(|k| rng.random_range(0..k.values.len().max(1)))
                .collect();
            if seen.insert(idx.clone()) {
                picks.push(idx);
            }
        }
        picks.shuffle(&mut rng);
    }
    let mut out = vec![Candidate {
        settings: Vec::new(),
        policy: current.clone(),
    }];
    for idx in picks {
        let mut p = current.clone();
        let mut settings = Vec::new();
        let mut ok = true;
        for (k, &i) in space.iter().zip(&idx) {
            let Some(v) = k.values.get(i) else { continue };
            match with_knob(&p, &k.key, v) {
                Ok(q) => p = q,
                Err(_) => {
                    ok = false;
                    break;
                }
            }
            settings.push((k.key.clone(), v.clone()));
        }
        if ok {
            out.push(Candidate {
                settings,
                policy: p,
            });
        }
    }
    Ok(out)
}

/// Which tier of the rule a choice came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Dominates both references, no more actions than the HPA, within the SLO: cheapest.
    MeetsSlo,
    /// Dominates both references, no more actions than the HPA: lowest savings at equal loss.
    Dominates,
    /// Nothing dominated: of the candidates no worse than the current policy in each half of
    /// the head, the lowest savings at equal loss; with none, the current policy.
    BestEffort,
}

/// Choose among candidates scored on the head (`scores[i]` is candidate i's head summary, with
/// `savings_at_equal_loss` set), against the head's reference HPA and target-tracking
/// summaries. Only head scores reach this function.
///
/// `steady(i)`: whether candidate i also beat both references in each part of the head
/// (`HEAD_PARTS`), not only in sum; the first two tiers ask it of every candidate.
/// `improves(i)`: whether candidate i spent no more and lost no larger share than the current
/// policy (candidate 0) in each part; the last tier keeps the current policy unless one does.
pub fn choose(
    scores: &[Summary],
    hpa: &Summary,
    tt: &Summary,
    slo_pct: f64,
    steady: &dyn Fn(usize) -> bool,
    improves: &dyn Fn(usize) -> bool,
) -> (usize, Tier) {
    let whole = |s: &Summary| {
        s.instance_hours <= hpa.instance_hours.min(tt.instance_hours)
            && s.over_capacity_pct <= hpa.over_capacity_pct.min(tt.over_capacity_pct)
            && s.scale_ups + s.scale_downs <= hpa.scale_ups + hpa.scale_downs
    };
    let dominates = |i: usize, s: &Summary| whole(s) && steady(i);
    let best_by = |filter: &dyn Fn(usize, &Summary) -> bool,
                   key: &dyn Fn(&Summary) -> (f64, f64)| {
        scores
            .iter()
            .enumerate()
            .filter(|(i, s)| filter(*i, s))
            .min_by(|(ia, a), (ib, b)| {
                let (ka, kb) = (key(a), key(b));
                ka.0.total_cmp(&kb.0)
                    .then(ka.1.total_cmp(&kb.1))
                    .then(ia.cmp(ib))
            })
            .map(|(i, _)| i)
    };
    if let Some(i) = best_by(
        &|i, s| dominates(i, s) && s.over_capacity_pct <= slo_pct,
        &|s| (s.instance_hours, s.over_capacity_pct),
    ) {
        return (i, Tier::MeetsSlo);
    }
    if let Some(i) = best_by(&dominates, &|s| (savings(s), s.instance_hours)) {
        return (i, Tier::Dominates);
    }
    // A candidate no worse than the current policy in each half is preferred to it, even
    // where no baseline reaches its loss (savings unknown).
    let i = best_by(&|i, _| i != 0 && improves(i), &|s| {
        (savings(s), s.instance_hours)
    })
    .unwrap_or(0);
    (i, Tier::BestEffort)
}

/// The head is also judged in this many consecutive parts: a candidate that beats the
/// references in sum but not in each part won on one stretch of traffic, which says little
/// about the next. Two is the fewest that can disagree.
pub const HEAD_PARTS: usize = 2;

/// What one run spent and lost in one part of a replay, from its time series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Part {
    pub instance_seconds: f64,
    pub over: f64,
    pub requests: f64,
}

impl Part {
    fn over_share(&self) -> f64 {
        if self.requests > 0.0 {
            self.over / self.requests
        } else {
            0.0
        }
    }
}

/// Split a run's series (buckets of `step` seconds over `span_s`) into `k` consecutive parts.
pub fn parts(series: &[Point], step: u64, span_s: u64, k: usize) -> Vec<Part> {
    let k = k.max(1);
    let mut out = vec![Part::default(); k];
    for p in series {
        let i = (u128::from(p.t) * k as u128 / u128::from(span_s.max(1))).min(k as u128 - 1);
        let w = step.min(span_s.saturating_sub(p.t)).max(1) as f64;
        let part = &mut out[i as usize];
        part.instance_seconds += (p.serving + p.launching) * w;
        part.over += p.over;
        part.requests += p.demand * w;
    }
    out
}

/// Whether `c` spent no more and lost no larger share than either reference in every part.
pub fn beats_in_every_part(c: &[Part], hpa: &[Part], tt: &[Part]) -> bool {
    c.iter().zip(hpa).zip(tt).all(|((c, h), t)| {
        c.instance_seconds <= h.instance_seconds.min(t.instance_seconds)
            && c.over_share() <= h.over_share().min(t.over_share())
    })
}

/// What a tune found.
#[derive(Debug)]
pub struct TuneOutcome {
    pub pool: String,
    pub trace: String,
    /// First scored second of the tail.
    pub split_s: u64,
    pub duration_s: u64,
    pub slo_pct: f64,
    pub candidates: Vec<Candidate>,
    /// Head summaries, candidate order.
    pub head: Vec<Summary>,
    /// Head summaries of the baselines (references and families) and the oracle.
    pub head_baselines: Vec<Summary>,
    pub chosen: usize,
    pub tier: Tier,
    /// Tail results: the current policy, the tuned one, then the baselines and the oracle.
    pub tail: Vec<RunResult>,
    pub wall_seconds: f64,
}

impl TuneOutcome {
    pub fn tuned(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }

    pub fn tail_row(&self, policy: &str) -> Option<&Summary> {
        self.tail
            .iter()
            .map(|r| &r.summary)
            .find(|s| s.policy == policy)
    }

    /// What the later part says of the choice made on the earlier one.
    pub fn verdict(&self) -> Verdict {
        match (self.tail_row("current"), self.tail_row("tuned")) {
            (Some(c), Some(t)) if !self.tuned().settings.is_empty() => verdict(c, t),
            _ => Verdict::Unchanged,
        }
    }
}

/// A row's savings at equal loss for ranking: unknown (no baseline reached its loss) ranks last.
fn savings(s: &Summary) -> f64 {
    match s.savings_at_equal_loss {
        Some(x) if x > 0.0 => x,
        _ => f64::INFINITY,
    }
}

/// The tuned policy's tail figures against the current one's.
pub fn verdict(current: &Summary, tuned: &Summary) -> Verdict {
    let cheaper = tuned.instance_hours <= current.instance_hours;
    let safer = tuned.over_capacity_pct <= current.over_capacity_pct;
    match (cheaper, safer) {
        (true, true) => Verdict::Better,
        (false, false) => Verdict::Worse,
        _ => {
            if savings(tuned) < savings(current) {
                Verdict::TradeOffBetter
            } else {
                Verdict::TradeOffWorse
            }
        }
    }
}

/// The tuned policy against the current one on the later part, which the choice never saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The current policy was kept.
    Unchanged,
    /// No more instance-hours and no more over-capacity.
    Better,
    /// Fewer of one, more of the other, and cheaper at equal loss against the baselines.
    TradeOffBetter,
    /// Fewer of one, more of the other, and no cheaper at equal loss.
    TradeOffWorse,
    /// More instance-hours and more over-capacity: the choice did not carry over.
    Worse,
}

impl Verdict {
    /// What a planner should do, in words.
    pub fn advice(self) -> &'static str {
        match self {
            Verdict::Unchanged => {
                "keep the current policy: no candidate did better on the earlier part"
            }
            Verdict::Better => {
                "promote it through shadow mode: on the later part it spent no more and lost no more"
            }
            Verdict::TradeOffBetter => {
                "a different trade-off that was cheaper at equal loss on the later part: promote it through shadow mode if that trade-off is the one you want"
            }
            Verdict::TradeOffWorse => {
                "keep the current policy: on the later part the tuned one traded one figure for the other at a worse rate"
            }
            Verdict::Worse => {
                "keep the current policy: the choice made on the earlier part did worse on both figures on the later part (it fitted the earlier traffic, not the pool)"
            }
        }
    }
}

/// Tune the scenario's first pool (its first policy is the current one).
pub fn tune(scenario: &Scenario, opts: &TuneOptions) -> Result<TuneOutcome, TuneError> {
    let started = std::time::Instant::now();
    if !(0.3..=0.9).contains(&opts.split) || !opts.split.is_finite() {
        return Err(TuneError::Split(opts.split));
    }
    let spec = scenario.pools.first().ok_or(TuneError::NoPool)?;
    let current = &spec.policies.first().ok_or(TuneError::NoPool)?.1;
    let full = PoolInputs::new(scenario, spec, 0, 60);
    let duration = full.duration_s();
    if duration < MIN_TRACE_S {
        return Err(TuneError::TooShort(duration));
    }
    // Cut on a whole minute, so the head's samples are whole.
    let split_s = ((duration as f64 * opts.split) as u64 / 60) * 60;
    let head = full.head(split_s);
    let tail = full.scored_from(split_s);
    let space = opts.space.clone().unwrap_or_else(|| default_space(current));
    let cands = candidates(current, &space, opts.points.max(1), opts.seed)?;
    let slo_pct = current
        .slo
        .as_ref()
        .map_or(0.1, |s| s.over_capacity * 100.0);

    let baseline_jobs = |pool: usize| {
        let mut jobs = vec![
            (pool, Job::Oracle),
            (pool, Job::Hpa(None)),
            (pool, Job::TargetTracking(None)),
        ];
        jobs.extend(run::setpoint_jobs(pool, &opts.baseline_setpoints));
        jobs
    };
    // The head: every candidate and the baselines, on the head's inputs only.
    let mut jobs: Vec<(usize, Job)> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| (0, Job::Policy(format!("c{i}"), Box::new(c.policy.clone()))))
        .collect();
    jobs.extend(baseline_jobs(0));
    // The tail replays the current and the chosen policy beside the same baselines.
    let tail_count = 2 + baseline_jobs(0).len() as u64;
    let bar = opts.progress.then(|| {
        let total = split_s * jobs.len() as u64 + duration * tail_count;
        run::progress_bar(total, "tuning")
    });
    let mut head_results = run::run_parallel(
        scenario,
        std::slice::from_ref(&head),
        &jobs,
        opts.threads,
        bar.as_ref(),
    );
    run::vs_oracle(&mut head_results);
    run::savings_at_equal_loss(&mut head_results);
    let (head_policies, head_baselines): (Vec<RunResult>, Vec<RunResult>) =
        head_results.into_iter().partition(|r| !r.is_baseline);
    let split = |r: &RunResult| parts(&r.series, head.series_step, split_s, HEAD_PARTS);
    let head_parts: Vec<Vec<Part>> = head_policies.iter().map(split).collect();
    let find = |name: &str| head_baselines.iter().find(|r| r.summary.policy == name);
    let (Some(hpa_run), Some(tt_run)) = (find("hpa"), find("target-tracking")) else {
        return Err(TuneError::NoPool);
    };
    let (hpa, tt) = (hpa_run.summary.clone(), tt_run.summary.clone());
    let (hpa_parts, tt_parts) = (split(hpa_run), split(tt_run));
    let head: Vec<Summary> = head_policies.into_iter().map(|r| r.summary).collect();
    let head_baselines: Vec<Summary> = head_baselines.into_iter().map(|r| r.summary).collect();
    let steady = |i: usize| beats_in_every_part(&head_parts[i], &hpa_parts, &tt_parts);
    let improves = |i: usize| beats_in_every_part(&head_parts[i], &head_parts[0], &head_parts[0]);
    let (chosen, tier) = choose(&head, &hpa, &tt, slo_pct, &steady, &improves);

    // The tail: the current and the chosen policy and the baselines, scored after the split.
    let mut tail_jobs = vec![
        (0, Job::Policy("current".into(), Box::new(current.clone()))),
        (
            0,
            Job::Policy("tuned".into(), Box::new(cands[chosen].policy.clone())),
        ),
    ];
    tail_jobs.extend(baseline_jobs(0));
    let mut tail_results = run::run_parallel(
        scenario,
        std::slice::from_ref(&tail),
        &tail_jobs,
        opts.threads,
        bar.as_ref(),
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    run::vs_oracle(&mut tail_results);
    run::savings_at_equal_loss(&mut tail_results);
    Ok(TuneOutcome {
        pool: spec.name.clone(),
        trace: spec.trace.name.clone(),
        split_s,
        duration_s: duration,
        slo_pct,
        candidates: cands,
        head,
        head_baselines,
        chosen,
        tier,
        tail: tail_results,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(ih: f64, over: f64, savings: Option<f64>) -> Summary {
        row("t", ih, over, 0, savings)
    }

    #[test]
    fn the_verdict_reads_the_later_part() {
        let cur = tail(100.0, 0.10, Some(0.90));
        assert_eq!(
            verdict(&cur, &tail(95.0, 0.10, Some(0.85))),
            Verdict::Better
        );
        assert_eq!(
            verdict(&cur, &tail(114.0, 0.12, Some(0.95))),
            Verdict::Worse
        );
        // Cheaper but losing more: judged at equal loss against the baselines.
        assert_eq!(
            verdict(&cur, &tail(90.0, 0.20, Some(0.80))),
            Verdict::TradeOffBetter
        );
        assert_eq!(
            verdict(&cur, &tail(90.0, 0.20, Some(0.95))),
            Verdict::TradeOffWorse
        );
        // No baseline reached the tuned policy's loss: no evidence it trades well.
        assert_eq!(
            verdict(&cur, &tail(110.0, 0.05, None)),
            Verdict::TradeOffWorse
        );
    }

    fn row(policy: &str, hours: f64, over: f64, actions: u64, savings: Option<f64>) -> Summary {
        Summary {
            pool: "p".into(),
            policy: policy.into(),
            trace: "t".into(),
            instance_hours: hours,
            cost: hours,
            over_capacity_pct: over,
            shortfall_seconds: 0,
            scale_ups: actions,
            scale_downs: 0,
            peak_instances: 1,
            mean_utilisation: 0.5,
            vs_oracle: 1.0,
            savings_at_equal_loss: savings,
        }
    }

    #[test]
    fn the_cheapest_candidate_that_dominates_and_meets_the_slo_wins() {
        let hpa = row("hpa", 100.0, 0.5, 50, None);
        let tt = row("target-tracking", 110.0, 0.3, 30, None);
        let scores = [
            row("c0", 95.0, 0.2, 40, Some(0.9)), // dominates, outside a 0.1 % SLO
            row("c1", 98.0, 0.05, 40, Some(0.8)), // dominates, meets it
            row("c2", 90.0, 0.08, 60, Some(0.7)), // more actions than the HPA
            row("c3", 80.0, 0.4, 10, Some(0.6)), // loses more than target tracking
            row("c4", 99.0, 0.01, 45, Some(0.95)), // dominates, meets it, dearer
        ];
        assert_eq!(
            choose(&scores, &hpa, &tt, 0.1, &|_| true, &|_| true),
            (1, Tier::MeetsSlo)
        );
        // With a looser SLO the cheaper c0 qualifies.
        assert_eq!(
            choose(&scores, &hpa, &tt, 0.25, &|_| true, &|_| true),
            (0, Tier::MeetsSlo)
        );
        // Nothing meets a tighter SLO: lowest savings among the dominating ones.
        assert_eq!(
            choose(&scores, &hpa, &tt, 0.001, &|_| true, &|_| true),
            (1, Tier::Dominates)
        );
        // Nothing dominates: the lowest savings of all.
        let tight = row("target-tracking", 50.0, 0.0, 30, None);
        assert_eq!(
            choose(&scores, &hpa, &tight, 0.1, &|_| true, &|_| true),
            (3, Tier::BestEffort)
        );
        // c1 won in sum but not in each part of the head: the dearer c4, steady, is chosen.
        assert_eq!(
            choose(&scores, &hpa, &tt, 0.1, &|i| i != 1, &|_| true),
            (4, Tier::MeetsSlo)
        );
        // Nothing beats the references, and only c2 improves on the current policy c0 in
        // each part: c2, though c3 has the lower savings in sum; with none, c0 stays.
        assert_eq!(
            choose(&scores, &hpa, &tight, 0.1, &|_| true, &|i| i == 2),
            (2, Tier::BestEffort)
        );
        assert_eq!(
            choose(&scores, &hpa, &tight, 0.1, &|_| true, &|_| false),
            (0, Tier::BestEffort)
        );
        // One that is no worse than the current policy in each half is preferred to it even
        // where no baseline reaches its loss (its savings unknown).
        let two = [
            row("c0", 100.0, 0.2, 10, Some(0.9)),
            row("c1", 95.0, 0.1, 10, None),
        ];
        assert_eq!(
            choose(&two, &hpa, &tight, 0.1, &|_| true, &|i| i == 1),
            (1, Tier::BestEffort)
        );
    }

    fn bucket(t: u64, instances: f64, demand: f64, over: f64) -> Point {
        Point {
            t,
            demand,
            demand_max: demand,
            serving: instances,
            launching: 0.0,
            desired: instances,
            over,
        }
    }

    #[test]
    fn a_win_in_sum_must_hold_in_each_part() {
        // Four minutes, two parts of two. The references spend 10 instances throughout and
        // lose nothing; the candidate spends 6 in the first part and 12 in the second: less
        // in sum (36 against 40 instance-minutes), more in the second part.
        let flat = |n: f64| {
            (0..4)
                .map(|m| bucket(m * 60, n, 10.0, 0.0))
                .collect::<Vec<_>>()
        };
        let reference = parts(&flat(10.0), 60, 240, HEAD_PARTS);
        assert_eq!(reference.len(), 2);
        assert_eq!(reference[0].instance_seconds, 1_200.0);
        assert_eq!(reference[1].requests, 1_200.0);
        let uneven: Vec<Point> = [6.0, 6.0, 12.0, 12.0]
            .iter()
            .enumerate()
            .map(|(m, &n)| bucket(m as u64 * 60, n, 10.0, 0.0))
            .collect();
        let c = parts(&uneven, 60, 240, HEAD_PARTS);
        assert!(c.iter().map(|p| p.instance_seconds).sum::<f64>() < 2_400.0);
        assert!(!beats_in_every_part(&c, &reference, &reference));
        assert!(beats_in_every_part(
            &parts(&flat(9.0), 60, 240, 2),
            &reference,
            &reference
        ));
        // Losing a larger share of a part's requests is not beating it either.
        let mut lossy = flat(9.0);
        lossy[3].over = 5.0;
        assert!(!beats_in_every_part(
            &parts(&lossy, 60, 240, 2),
            &reference,
            &reference
        ));
    }

    #[test]
    fn candidates_start_with_the_current_policy_and_are_valid_and_distinct() {
        let p = PoolPolicy::with_defaults("p", "us-east-1", "g", 1, 100);
        let space = default_space(&p);
        let c = candidates(&p, &space, 200, 7).unwrap();
        assert!(c.len() > 150 && c.len() <= 200, "{}", c.len());
        assert!(c[0].settings.is_empty());
        assert_eq!(c[0].policy, p);
        let labels: std::collections::HashSet<String> = c.iter().map(Candidate::label).collect();
        assert_eq!(labels.len(), c.len());
        for x in &c {
            assert!(crate::core::policy::validate::check(&x.policy).is_empty());
        }
        // The same seed gives the same sample.
        let again = candidates(&p, &space, 200, 7).unwrap();
        assert_eq!(
            c.iter().map(Candidate::label).collect::<Vec<_>>(),
            again.iter().map(Candidate::label).collect::<Vec<_>>()
        );
        // A small space is searched whole.
        let small = vec![Knob {
            key: "scale_up.confirm".into(),
            values: vec!["1".into(), "2".into(), "3".into()],
        }];
        assert_eq!(candidates(&p, &small, 500, 1).unwrap().len(), 4);
    }

    #[test]
    fn band_high_moves_the_band_in_proportion() {
        let p = PoolPolicy::with_defaults("p", "us-east-1", "g", 1, 100);
        let q = with_knob(&p, "band.high", "1.8").unwrap();
        assert!((q.band.high - 1.8).abs() < 1e-12);
        assert!((q.band.low - p.band.low * 1.2).abs() < 1e-9);
        assert!((q.band.setpoint - p.band.setpoint * 1.2).abs() < 1e-9);
        assert!(with_knob(&p, "band.high", "-1").is_err());
        assert!(with_knob(&p, "band.high", "1e9").is_err());
        assert!(with_knob(&p, "band.high", "NaN").is_err());
        let bad = [Knob {
            key: "scale_up.confirmm".into(),
            values: vec!["1".into()],
        }];
        assert!(matches!(
            candidates(&p, &bad, 10, 1),
            Err(TuneError::Knob(_))
        ));
    }
}
