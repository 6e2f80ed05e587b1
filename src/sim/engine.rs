//! The virtual-clock driver. Each (pool, policy) run replays the pool's arrivals second by
//! second through the *same* reconciler and decision code as `run`, against the in-memory
//! region (routers' per-minute samples land in its metrics table, its ASG launches instances
//! that serve after the launch time). Baselines (`baselines.rs`) drive the same region's ASG
//! with their own rules; the oracle is computed from the rate. Every run is scored by the same
//! `Accumulator`.

use std::time::Duration;

use crate::adapters::memory::MemoryRegion;
use crate::app::{Leadership, Reconciler, Settings};
use crate::core::{Action, Outcome, PoolPolicy};
use crate::ports::Actuator;
use crate::telemetry::Metrics;

use super::scenario::{Model, PoolSpec, Scenario};
use crate::replay::traffic::Rate;

/// Scores of one run (DESIGN §8), the fields of `summary.json`.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Summary {
    pub pool: String,
    pub policy: String,
    pub trace: String,
    /// Instance-hours paid for, launching included.
    pub instance_hours: f64,
    pub cost: f64,
    /// Requests over capacity / all requests, in percent.
    pub over_capacity_pct: f64,
    /// Seconds with any request over capacity.
    pub shortfall_seconds: u64,
    pub scale_ups: u64,
    pub scale_downs: u64,
    /// Most instances (serving + launching) at once.
    pub peak_instances: u32,
    /// Requests served / serving capacity (serving instance-seconds × instance_max_rps).
    pub mean_utilisation: f64,
    /// instance_hours / the oracle's instance_hours.
    pub vs_oracle: f64,
    /// Policies only: instance_hours / the fewest instance-hours of any HPA or target-tracking
    /// run (any setpoint) losing no more than this one; 0 when none loses so little.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub savings_at_equal_loss: Option<f64>,
}

/// One bucket of the time series.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    pub t: u64,
    /// Mean arrivals per second over the bucket.
    pub demand: f64,
    /// The busiest minute's arrivals per second within the bucket (the trailing minute's mean
    /// at its highest): a long trace's envelope keeps the spikes that cost requests visible.
    pub demand_max: f64,
    pub serving: f64,
    pub launching: f64,
    pub desired: f64,
    /// Requests over capacity in the bucket.
    pub over: f64,
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub summary: Summary,
    /// At the time series resolution (for timeseries.csv).
    pub series: Vec<Point>,
    /// At most ~1,200 points (for the report's charts).
    pub chart: Vec<Point>,
    /// Seconds at which a scaling decision was driven by a forecast (for the report).
    pub marks: Vec<u64>,
    pub is_baseline: bool,
}

struct Bucketer {
    width: u64,
    points: Vec<Point>,
    cur: Point,
    n: u64,
}

impl Bucketer {
    fn new(width: u64) -> Self {
        Bucketer {
            width: width.max(1),
            points: Vec::new(),
            cur: Point::default(),
            n: 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        t: u64,
        demand: f64,
        minute: f64,
        serving: f64,
        launching: f64,
        desired: f64,
        over: f64,
    ) {
        if self.n == 0 {
            self.cur = Point {
                t,
                ..Point::default()
            };
        }
        self.cur.demand += demand;
        self.cur.demand_max = self.cur.demand_max.max(minute);
        self.cur.serving += serving;
        self.cur.launching += launching;
        self.cur.desired = desired;
        self.cur.over += over;
        self.n += 1;
        if self.n == self.width {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.n > 0 {
            let n = self.n as f64;
            self.cur.demand /= n;
            self.cur.serving /= n;
            self.cur.launching /= n;
            self.points.push(self.cur);
            self.n = 0;
        }
    }

    fn finish(mut self) -> Vec<Point> {
        self.flush();
        self.points
    }
}

/// Scores a run second by second with the queue model of DESIGN §8.
pub struct Accumulator {
    /// Seconds before this one move the queue but are not scored (walk-forward: the tail is
    /// scored with the head's history behind it).
    from: u64,
    max_rps: f64,
    queue: f64,
    backlog: f64,
    instance_seconds: u64,
    requests: u64,
    over: f64,
    shortfall: u64,
    peak: u32,
    served: f64,
    serving_seconds: u64,
    series: Bucketer,
    chart: Bucketer,
    /// The last minute's arrivals, second by second, and their sum.
    window: [u32; 60],
    window_sum: u64,
}

impl Accumulator {
    pub fn new(model: &Model, duration_s: u64, series_step: u64) -> Self {
        Self::scoring_from(model, 0, duration_s, series_step)
    }

    /// An accumulator that scores only seconds `from..duration_s`.
    pub fn scoring_from(model: &Model, from: u64, duration_s: u64, series_step: u64) -> Self {
        let scored = duration_s.saturating_sub(from);
        Accumulator {
            from,
            max_rps: model.instance_max_rps,
            queue: model.queue_per_instance,
            backlog: 0.0,
            instance_seconds: 0,
            requests: 0,
            over: 0.0,
            shortfall: 0,
            peak: 0,
            served: 0.0,
            serving_seconds: 0,
            series: Bucketer::new(series_step),
            chart: Bucketer::new(scored.div_ceil(1200)),
            window: [0; 60],
            window_sum: 0,
        }
    }

    /// Requests queued in the pool now.
    pub fn backlog(&self) -> f64 {
        self.backlog
    }

    /// One second: `arrivals` requests meet `serving` instances.
    pub fn second(&mut self, t: u64, arrivals: u32, serving: u32, launching: u32, desired: u32) {
        let capacity = f64::from(serving) * self.max_rps;
        self.backlog += f64::from(arrivals);
        let served = self.backlog.min(capacity);
        self.backlog -= served;
        let room = f64::from(serving) * self.queue;
        let mut over = 0.0;
        if self.backlog > room + 1e-9 {
            over = self.backlog - room;
            self.backlog = room;
            if t >= self.from {
                self.shortfall += 1;
            }
        }
        let slot = (t % 60) as usize;
        self.window_sum = self.window_sum - u64::from(self.window[slot]) + u64::from(arrivals);
        self.window[slot] = arrivals;
        if t < self.from {
            return;
        }
        self.over += over;
        self.served += served;
        self.requests += u64::from(arrivals);
        self.serving_seconds += u64::from(serving);
        let paid = serving + launching;
        self.instance_seconds += u64::from(paid);
        self.peak = self.peak.max(paid);
        let (s, l, d) = (f64::from(serving), f64::from(launching), f64::from(desired));
        let minute = self.window_sum as f64 / (t + 1).min(60) as f64;
        let a = f64::from(arrivals);
        self.series.push(t, a, minute, s, l, d, over);
        self.chart.push(t, a, minute, s, l, d, over);
    }

    /// Finish a run of `inputs` into its result.
    fn into_result(
        self,
        inputs: &PoolInputs<'_>,
        label: &str,
        (ups, downs): (u64, u64),
        marks: Vec<u64>,
        is_baseline: bool,
    ) -> RunResult {
        let (summary, series, chart) = self.finish(
            &inputs.spec.name,
            label,
            &inputs.spec.trace.name,
            &inputs.model,
            ups,
            downs,
        );
        RunResult {
            summary,
            series,
            chart,
            marks,
            is_baseline,
        }
    }

    pub fn finish(
        self,
        pool: &str,
        policy: &str,
        trace: &str,
        model: &Model,
        ups: u64,
        downs: u64,
    ) -> (Summary, Vec<Point>, Vec<Point>) {
        let hours = self.instance_seconds as f64 / 3600.0;
        let summary = Summary {
            pool: pool.to_string(),
            policy: policy.to_string(),
            trace: trace.to_string(),
            instance_hours: round(hours, 3),
            cost: round(hours * model.price_per_instance_hour, 2),
            over_capacity_pct: round(
                if self.requests == 0 {
                    0.0
                } else {
                    self.over / self.requests as f64 * 100.0
                },
                4,
            ),
            shortfall_seconds: self.shortfall,
            scale_ups: ups,
            scale_downs: downs,
            peak_instances: self.peak,
            mean_utilisation: round(
                if self.serving_seconds == 0 {
                    0.0
                } else {
                    self.served / (self.serving_seconds as f64 * self.max_rps)
                },
                4,
            ),
            vs_oracle: 0.0,
            savings_at_equal_loss: None,
        };
        (summary, self.series.finish(), self.chart.finish())
    }
}

/// Round for stable, readable output.
pub fn round(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

/// Per-minute means of arrivals: sample m covers [60m, 60m + 60) and is written at 60(m+1).
pub fn minute_means(arrivals: &[u32]) -> Vec<f64> {
    arrivals
        .chunks(60)
        .map(|c| c.iter().map(|&a| f64::from(a)).sum::<f64>() / c.len() as f64)
        .collect()
}

/// Inputs shared by every run of one pool.
pub struct PoolInputs<'a> {
    pub spec: &'a PoolSpec,
    pub rate: Rate,
    pub arrivals: Vec<u32>,
    pub minutes: Vec<f64>,
    pub model: Model,
    pub region: String,
    pub start_ms: i64,
    pub seed: u64,
    pub series_step: u64,
    /// The first second scored (0: all of it). Runs replay from the start either way.
    pub score_from: u64,
}

impl<'a> PoolInputs<'a> {
    pub fn new(scenario: &Scenario, spec: &'a PoolSpec, index: usize, series_step: u64) -> Self {
        let rate = Rate::from_trace(&spec.trace, spec.scale, spec.offset_s);
        let seed = mix(scenario.seed, index as u64);
        let arrivals = if scenario.model.poisson {
            rate.arrivals(seed)
        } else {
            rate.exact_arrivals()
        };
        let minutes = minute_means(&arrivals);
        let mut model = scenario.model.clone();
        if let Some(l) = spec.launch_time {
            model.launch_time = l;
        }
        PoolInputs {
            spec,
            rate,
            arrivals,
            minutes,
            model,
            region: scenario.region.clone(),
            start_ms: scenario.start_ms,
            seed,
            series_step,
            score_from: 0,
        }
    }

    /// The first `seconds` of these inputs (the same arrivals, cut): what a walk-forward
    /// search may choose on.
    pub fn head(&self, seconds: u64) -> PoolInputs<'a> {
        let n = (seconds as usize).min(self.arrivals.len());
        PoolInputs {
            spec: self.spec,
            rate: crate::replay::traffic::Rate {
                per_second: self.rate.per_second[..n.min(self.rate.per_second.len())].to_vec(),
            },
            arrivals: self.arrivals[..n].to_vec(),
            minutes: self.minutes[..n / 60].to_vec(),
            model: self.model.clone(),
            region: self.region.clone(),
            start_ms: self.start_ms,
            seed: self.seed,
            series_step: self.series_step,
            score_from: 0,
        }
    }

    /// These inputs, scoring only from second `from` on (replayed from the start, so the
    /// controller has the earlier traffic as history, as it would in service).
    pub fn scored_from(&self, from: u64) -> PoolInputs<'a> {
        PoolInputs {
            spec: self.spec,
            rate: self.rate.clone(),
            arrivals: self.arrivals.clone(),
            minutes: self.minutes.clone(),
            model: self.model.clone(),
            region: self.region.clone(),
            start_ms: self.start_ms,
            seed: self.seed,
            series_step: self.series_step,
            score_from: from.min(self.duration_s()),
        }
    }

    pub fn duration_s(&self) -> u64 {
        self.arrivals.len() as u64
    }

    fn accumulator(&self) -> Accumulator {
        Accumulator::scoring_from(
            &self.model,
            self.score_from,
            self.duration_s(),
            self.series_step,
        )
    }

    /// The newest per-minute sample a router would have written by second `t`.
    pub fn sample_at(&self, t: u64) -> f64 {
        if t < 60 {
            self.rate.at(0)
        } else {
            self.minutes[(t / 60 - 1) as usize]
        }
    }

    /// A fresh region with the pool's ASG warm-started at `initial` instances.
    fn region(&self, asg: &str, initial: u32, asg_max: u32) -> MemoryRegion {
        let region = MemoryRegion::new(&self.region, self.seed ^ 0x5eed);
        region.create_asg(
            asg,
            &self.spec.name,
            0,
            asg_max,
            self.model.launch_time,
            self.model.launch_jitter,
        );
        region.warm_start(asg, initial, self.start_ms);
        // A draining instance finishes its queue at the serving rate.
        region.set_drain_rate(self.model.instance_max_rps);
        region
    }
}

/// SplitMix64: derive independent seeds from one.
pub fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(stream.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Counts serving and paid-but-not-serving instances between two looks at the ASG, from the
/// launch ready times.
struct FleetView {
    available: u32,
    /// Draining (or otherwise held) members: paid for, not serving.
    held: u32,
    pending: Vec<i64>,
    ready: usize,
    desired: u32,
}

impl FleetView {
    fn look(region: &MemoryRegion, asg: &str) -> Self {
        let (available, held, mut pending) = region.fleet(asg);
        pending.sort_unstable();
        let desired = region.asg_desired(asg).unwrap_or(0);
        FleetView {
            available,
            held,
            pending,
            ready: 0,
            desired,
        }
    }

    /// (serving, paid but not serving: launching or draining) at `now_ms`.
    fn at(&mut self, now_ms: i64) -> (u32, u32) {
        while self.ready < self.pending.len() && self.pending[self.ready] <= now_ms {
            self.ready += 1;
        }
        let serving = self.available + self.ready as u32;
        (
            serving,
            (self.pending.len() - self.ready) as u32 + self.held,
        )
    }
}

/// The controller's rule for the start state: what it wants for rate(0), within min/max.
fn initial_for(policy: &PoolPolicy, region: &str, rate0: f64) -> u32 {
    let (min, max) = policy
        .region(region)
        .map_or((0, u32::MAX), |r| (r.min, r.max));
    policy.wanted(rate0).clamp(min, max)
}

/// Replay one pool through the real reconciler with `policy`.
pub async fn run_policy(inputs: &PoolInputs<'_>, label: &str, policy: &PoolPolicy) -> RunResult {
    let region_name = inputs.region.as_str();
    let Some(regional) = policy.region(region_name) else {
        unreachable_run(inputs, label)
    };
    let asg = regional.asg.clone();
    let initial = initial_for(policy, region_name, inputs.rate.at(0));
    let region = inputs.region(&asg, initial, regional.max.saturating_mul(2).max(100));
    // Routers were writing before t = 0: ten minutes at the opening rate.
    for m in 0..10 {
        region.put_rps(
            &inputs.spec.name,
            region_name,
            inputs.start_ms - m * 60_000,
            inputs.rate.at(0),
        );
    }
    let set = crate::core::PolicySet {
        pools: [(inputs.spec.name.clone(), policy.clone())]
            .into_iter()
            .collect(),
        hash: String::from("sim"),
    };
    let pool_policy = &set.pools[&inputs.spec.name];
    let mut reconciler = Reconciler::new(
        region.backends(),
        Settings {
            region: region_name.to_string(),
            controller_id: "simulator".into(),
            dry_run: false,
            record_heartbeat: Duration::from_secs(600),
        },
        Metrics::new(region_name),
    );
    let lead = Leadership::sole();
    let interval = inputs.model.interval.as_secs().max(1);
    let mut acc = inputs.accumulator();
    let (mut ups, mut downs) = (0, 0);
    let mut marks = Vec::new();
    let mut fleet = FleetView::look(&region, &asg);
    for t in 0..inputs.duration_s() {
        let now = inputs.start_ms + t as i64 * 1000;
        if t > 0 && t % 60 == 0 {
            region.put_rps(
                &inputs.spec.name,
                region_name,
                now,
                inputs.minutes[(t / 60 - 1) as usize],
            );
        }
        if t % interval == 0 {
            region.advance(now);
            // Instances report their share of the pool's backlog as queue_depth: drains wait
            // for it.
            region.spread_queue(&asg, acc.backlog());
            let result = reconciler
                .reconcile_pool(pool_policy, &set.hash, now, &lead)
                .await;
            if let Ok(r) = result
                && r.outcome == Outcome::Applied
            {
                if r.decision.reason_code == crate::core::ReasonCode::Forecast
                    && r.decision.action == Action::ScaleUp
                {
                    marks.push(t);
                }
                match r.decision.action {
                    _ if t < inputs.score_from => {}
                    Action::ScaleUp => ups += 1,
                    Action::ScaleDown => downs += 1,
                    Action::None => {}
                }
            }
            region.advance(now);
            fleet = FleetView::look(&region, &asg);
            if t % 3600 == 0 {
                // The tables' TTL: keep memory flat on long replays.
                region.expire_metrics(now - 8 * 86_400_000);
                region.expire_decisions(now - 86_400_000);
            }
        }
        let (serving, launching) = fleet.at(now);
        acc.second(
            t,
            inputs.arrivals[t as usize],
            serving,
            launching,
            fleet.desired,
        );
    }
    acc.into_result(inputs, label, (ups, downs), marks, false)
}

fn unreachable_run(inputs: &PoolInputs<'_>, label: &str) -> ! {
    // Scenario loading rejects policies without a section for the scenario's region.
    panic!(
        "policy {label} for pool {} has no section for region {}",
        inputs.spec.name, inputs.region
    )
}

/// A baseline's rule, called every `period_s` seconds with what it can see.
pub trait BaselineRule {
    fn period_s(&self) -> u64;
    /// Desired capacity given the newest per-minute RPS sample, the serving count and the
    /// group's current desired capacity, at second `t`.
    fn desired(&mut self, t: u64, sample: f64, serving: u32, current: u32) -> u32;
}

/// Drive the in-memory ASG with a baseline rule, scored like a policy run.
pub async fn run_baseline(
    inputs: &PoolInputs<'_>,
    label: &str,
    initial: u32,
    rule: &mut dyn BaselineRule,
) -> RunResult {
    let asg = format!("{}-{label}", inputs.spec.name);
    let region = inputs.region(&asg, initial, 100_000);
    let period = rule.period_s().max(1);
    let mut acc = inputs.accumulator();
    let (mut ups, mut downs) = (0, 0);
    let mut fleet = FleetView::look(&region, &asg);
    for t in 0..inputs.duration_s() {
        let now = inputs.start_ms + t as i64 * 1000;
        if t % period == 0 {
            region.advance(now);
            fleet = FleetView::look(&region, &asg);
            let (serving, _) = fleet.at(now);
            let want = rule.desired(t, inputs.sample_at(t), serving, fleet.desired);
            if want != fleet.desired
                && region.set_desired(&asg, want).await.is_ok()
                && t >= inputs.score_from
            {
                if want > fleet.desired {
                    ups += 1;
                } else {
                    downs += 1;
                }
            }
            region.advance(now);
            fleet = FleetView::look(&region, &asg);
        }
        let (serving, launching) = fleet.at(now);
        acc.second(
            t,
            inputs.arrivals[t as usize],
            serving,
            launching,
            fleet.desired,
        );
    }
    acc.into_result(inputs, label, (ups, downs), Vec::new(), true)
}

/// Score precomputed per-second serving/launching counts (the oracle).
pub fn run_counts(
    inputs: &PoolInputs<'_>,
    label: &str,
    serving: &[u32],
    launching: &[u32],
) -> RunResult {
    let mut acc = inputs.accumulator();
    let (mut ups, mut downs) = (0, 0);
    let mut prev = None;
    for t in 0..inputs.duration_s() as usize {
        let total = serving[t] + launching[t];
        if let Some(p) = prev {
            if total > p {
                ups += 1;
            } else if total < p {
                downs += 1;
            }
        }
        prev = Some(total);
        if (t as u64) < inputs.score_from {
            (ups, downs) = (0, 0);
        }
        acc.second(
            t as u64,
            inputs.arrivals[t],
            serving[t],
            launching[t],
            total,
        );
    }
    acc.into_result(inputs, label, (ups, downs), Vec::new(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            instance_max_rps: 2.0,
            queue_per_instance: 10.0,
            price_per_instance_hour: 2.0,
            ..Model::default()
        }
    }

    #[test]
    fn queue_absorbs_then_overflows() {
        let mut acc = Accumulator::new(&model(), 4, 1);
        // 1 instance: serves 2/s, queues 10.
        acc.second(0, 12, 1, 0, 1); // 10 left: fits the queue
        acc.second(1, 3, 1, 0, 1); // 11 left: 1 over
        acc.second(2, 0, 1, 0, 1); // 8 left
        acc.second(3, 0, 1, 1, 2);
        let (s, series, _) = acc.finish("p", "x", "t", &model(), 0, 0);
        assert_eq!(s.shortfall_seconds, 1);
        assert!(
            (s.over_capacity_pct - 100.0 / 15.0).abs() < 1e-3,
            "{}",
            s.over_capacity_pct
        );
        assert_eq!(s.instance_hours, round(5.0 / 3600.0, 3));
        assert_eq!(s.peak_instances, 2);
        assert_eq!(series.len(), 4);
        assert_eq!(series[1].over, 1.0);
        // served 2+2+2+2 of capacity 8
        assert_eq!(s.mean_utilisation, 1.0);
    }

    #[test]
    fn minute_means_average_each_minute() {
        let a: Vec<u32> = (0..150).map(|i| if i < 60 { 1 } else { 3 }).collect();
        assert_eq!(minute_means(&a), vec![1.0, 3.0, 3.0]);
    }

    #[test]
    fn seeds_are_mixed() {
        assert_ne!(mix(1, 0), mix(1, 1));
        assert_eq!(mix(7, 3), mix(7, 3));
    }
}
