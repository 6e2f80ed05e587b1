//! Policy model, parsing and validation.
//!
//! A policy file is TOML, one model pool per file, edited by capacity planners. Parsing
//! (`parse`) is strict (unknown keys are errors) and collects *every* problem in a file before
//! failing, each with its `file:line:col`, what is wrong and how to fix it. Every rule on
//! values lives in one validator (`validate`), which the file parser, sweeps and tuning
//! (`overrides`) all go through, so a value one of them accepts the others accept too.
//! Reading the files is not done here (the core does no I/O): see `app::policy_files`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;

mod hash;
pub mod overrides;
mod parse;
pub mod validate;

pub use hash::hash_sources;
pub use overrides::{OVERRIDABLE, apply_override, validated};
pub use validate::{MAX_BAND_RPS, MAX_INSTANCES, Violation};

/// How far a step may move capacity in one cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// At most this many instances.
    Count(u32),
    /// At most this percentage of the current capacity (at least one instance).
    Percent(f64),
}

impl Step {
    /// The number of instances this step allows from `current`.
    pub fn allowance(self, current: u32) -> u32 {
        match self {
            Step::Count(n) => n,
            Step::Percent(p) => {
                let raw = (f64::from(current) * p / 100.0).ceil();
                // Bounded by validation (≤ 1000 %), saturating all the same.
                (raw.min(f64::from(u32::MAX)) as u32).max(1)
            }
        }
    }

    /// Parse `"4"` (a count ≥ 1) or `"50%"` (a percentage in (0, 1000]); range checks are the
    /// validator's.
    pub fn parse(s: &str) -> Option<Step> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Step::Percent)
        } else {
            s.parse::<u32>().ok().map(Step::Count)
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Count(n) => write!(f, "{n}"),
            Step::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The tolerance band of RPS per instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub low: f64,
    pub high: f64,
    pub setpoint: f64,
    /// Spare capacity on top of rps / setpoint, for bursts shorter than a launch.
    pub headroom: Option<Step>,
}

impl Default for Band {
    fn default() -> Self {
        Band {
            low: 1.0,
            high: 1.5,
            setpoint: 1.25,
            headroom: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleUp {
    pub max_step: Step,
    pub cooldown: Duration,
    /// Consecutive per-minute samples above the band needed before scaling up.
    pub confirm: u32,
    /// RPS per instance at which the newest sample alone scales up (no confirmation).
    pub confirm_unless: f64,
}

impl Default for ScaleUp {
    fn default() -> Self {
        ScaleUp {
            max_step: Step::Percent(100.0),
            cooldown: Duration::ZERO,
            confirm: 1,
            confirm_unless: 2.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleDown {
    pub max_step: Step,
    pub stabilization: Duration,
    pub cooldown: Duration,
    /// Drain before terminate: scale-in marks chosen instances `draining`, waits until their
    /// queue is empty or this timeout passes, then terminates each one (decrementing the
    /// group). `None`: lower the group's desired capacity and let the ASG choose victims.
    pub drain: Option<Duration>,
    /// A recommendation below this fraction of current capacity is a collapse of traffic.
    pub collapse_below: f64,
    /// Hold capacity through a collapse for up to this long (zero: off).
    pub collapse_hold: Duration,
}

/// Default drain timeout: a full queue (10 requests) at 2 RPS empties in seconds; five
/// minutes covers long generations without keeping an idle GPU for long.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for ScaleDown {
    fn default() -> Self {
        ScaleDown {
            max_step: Step::Percent(10.0),
            stabilization: Duration::from_secs(600),
            cooldown: Duration::ZERO,
            drain: Some(DEFAULT_DRAIN_TIMEOUT),
            collapse_below: 0.5,
            collapse_hold: Duration::ZERO,
        }
    }
}

impl ScaleDown {
    /// The drain timeout in force, also for drains an earlier policy started when this one
    /// has `drain = false`.
    pub fn drain_timeout(&self) -> Duration {
        self.drain.unwrap_or(DEFAULT_DRAIN_TIMEOUT)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// RPS is the mean of the samples within this window ending at the newest sample.
    pub window: Duration,
    /// A newest sample older than this is stale: never scale down on it.
    pub stale_after: Duration,
    /// With stale or missing metrics, hold (None) or keep at least this many instances.
    pub stale_fallback: Option<u32>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            window: Duration::from_secs(60),
            stale_after: Duration::from_secs(180),
            stale_fallback: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instances {
    pub heartbeat_timeout: Duration,
    pub launch_time: Duration,
    pub launch_timeout: Duration,
    /// Requests per second one instance serves at saturation.
    pub max_rps: f64,
    /// Requests one instance queues beyond those it serves (the seed's `queue_depth` range).
    pub queue: u32,
}

impl Default for Instances {
    fn default() -> Self {
        Instances {
            heartbeat_timeout: Duration::from_secs(90),
            launch_time: Duration::from_secs(360),
            launch_timeout: Duration::from_secs(900),
            max_rps: 2.0,
            queue: 10,
        }
    }
}

/// The planner's objective: the share of requests that may find the pool's queue full. With
/// it the band is sized from the pool's own history (`core::sizing`): as lean as demand's
/// growth over a launch time allows, rises that are over before a launch could serve let
/// pass when skipping them stays within the SLO, and capacity kept for two launch times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Over-capacity allowed, as a fraction of requests (0.001 = 0.1 %).
    pub over_capacity: f64,
    /// How far back the pool's own history informs the sizing.
    pub history: Duration,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            over_capacity: 0.001,
            history: Duration::from_secs(86_400),
        }
    }
}

/// Per-region settings of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionPolicy {
    pub asg: String,
    pub min: u32,
    pub max: u32,
}

/// A scheduled minimum: from every cron match (UTC) for `duration`, keep at least `min`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub cron_expr: String,
    pub cron: Cron,
    pub duration: Duration,
    pub min: u32,
    /// Empty means every region of the pool.
    pub regions: Vec<String>,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.cron_expr == other.cron_expr
            && self.duration == other.duration
            && self.min == other.min
            && self.regions == other.regions
    }
}

impl Schedule {
    /// The occurrence in force at `now_ms` (unix milliseconds, UTC): `[start, next start)`
    /// of the latest match at or before now. Callers that ask often for slowly moving `now`
    /// keep it and ask again only past `next` (`Bounds` does; see `ScheduleMemo`).
    pub fn occurrence(&self, now_ms: i64) -> Option<(i64, Option<i64>)> {
        let now = Utc.timestamp_millis_opt(now_ms).single()?;
        let start: DateTime<Utc> = self.cron.find_previous_occurrence(&now, true).ok()?;
        let next: Option<DateTime<Utc>> = self.cron.find_next_occurrence(&now, false).ok();
        Some((start.timestamp_millis(), next.map(|n| n.timestamp_millis())))
    }

    /// Is this window active at `now_ms` (unix milliseconds, UTC)?
    pub fn active_at(&self, now_ms: i64) -> bool {
        self.occurrence(now_ms)
            .is_some_and(|(start, _)| self.covers(start, now_ms))
    }

    fn covers(&self, start_ms: i64, now_ms: i64) -> bool {
        now_ms.saturating_sub(start_ms) < self.duration.as_millis().min(i64::MAX as u128) as i64
    }

    pub fn applies_to(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }
}

/// Remembered schedule occurrences, so that asking for the bounds every cycle does not search
/// the cron expression every cycle. Plain data owned by the caller (the reconciler keeps one
/// per pool); pass a fresh one to compute from scratch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleMemo {
    /// Per schedule name: `[start, next)` of the occurrence last found.
    spans: BTreeMap<String, (i64, Option<i64>)>,
}

impl ScheduleMemo {
    fn active(&mut self, s: &Schedule, now_ms: i64) -> bool {
        if let Some((start, next)) = self.spans.get(&s.name)
            && *start <= now_ms
            && next.is_none_or(|n| now_ms < n)
        {
            return s.covers(*start, now_ms);
        }
        match s.occurrence(now_ms) {
            Some((start, next)) => {
                self.spans.insert(s.name.clone(), (start, next));
                s.covers(start, now_ms)
            }
            None => false,
        }
    }
}

/// How the forecast floor predicts demand one launch time ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastMode {
    Off,
    /// Extrapolate the recent trend.
    Trend,
    /// The trend, or what happened over the same stretch one day and one week earlier,
    /// whichever is higher.
    Seasonal,
}

impl ForecastMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ForecastMode::Off => "off",
            ForecastMode::Trend => "trend",
            ForecastMode::Seasonal => "seasonal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(ForecastMode::Off),
            "trend" => Some(ForecastMode::Trend),
            "seasonal" => Some(ForecastMode::Seasonal),
            _ => None,
        }
    }
}

/// The forecast floor: scale up ahead of demand, never down on a forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub mode: ForecastMode,
    /// How far ahead to predict; None means the pool's launch time.
    pub horizon: Option<Duration>,
    /// The samples the trend is fitted over.
    pub trend_window: Duration,
    /// The most the forecast may add on top of the reactive decision.
    pub max_lift: Step,
}

impl Default for Forecast {
    fn default() -> Self {
        Forecast {
            mode: ForecastMode::Off,
            horizon: None,
            trend_window: Duration::from_secs(600),
            max_lift: Step::Percent(50.0),
        }
    }
}

/// The whole policy of one model pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPolicy {
    pub pool: String,
    /// File the policy came from (for messages).
    pub source: PathBuf,
    /// The pool-wide bounds; each region has its effective ones in `regions`.
    pub min: u32,
    pub max: u32,
    pub band: Band,
    pub scale_up: ScaleUp,
    pub scale_down: ScaleDown,
    pub metrics: Metrics,
    pub instances: Instances,
    pub regions: BTreeMap<String, RegionPolicy>,
    pub schedules: Vec<Schedule>,
    pub forecast: Forecast,
    /// The objective; None: the band decides.
    pub slo: Option<Slo>,
}

impl PoolPolicy {
    /// A policy with every default and the given bounds, for one region's group (tests,
    /// fixtures and tools that build policies in code; still validated where it matters).
    pub fn with_defaults(pool: &str, region: &str, asg: &str, min: u32, max: u32) -> Self {
        PoolPolicy {
            pool: pool.to_string(),
            source: PathBuf::from(format!("{pool}.toml")),
            min,
            max,
            band: Band::default(),
            scale_up: ScaleUp::default(),
            scale_down: ScaleDown::default(),
            metrics: Metrics::default(),
            instances: Instances::default(),
            regions: [(
                region.to_string(),
                RegionPolicy {
                    asg: asg.to_string(),
                    min,
                    max,
                },
            )]
            .into_iter()
            .collect(),
            schedules: Vec::new(),
            forecast: Forecast::default(),
            slo: None,
        }
    }

    /// Instances wanted for `rps`: ceil(rps / setpoint), plus the burst headroom.
    pub fn wanted(&self, rps: f64) -> u32 {
        let base = crate::core::decide::instances_for(rps, self.band.setpoint);
        match self.band.headroom {
            Some(h) if base > 0 => base.saturating_add(h.allowance(base)),
            _ => base,
        }
    }

    pub fn region(&self, region: &str) -> Option<&RegionPolicy> {
        self.regions.get(region)
    }

    /// Min and max for `region` at `now_ms`, with scheduled minimums applied (capped at max).
    pub fn bounds(&self, region: &str, now_ms: i64) -> Option<Bounds> {
        self.bounds_memo(region, now_ms, &mut ScheduleMemo::default())
    }

    /// `bounds`, reusing and updating the caller's remembered schedule occurrences.
    pub fn bounds_memo(
        &self,
        region: &str,
        now_ms: i64,
        memo: &mut ScheduleMemo,
    ) -> Option<Bounds> {
        let r = self.regions.get(region)?;
        let mut bounds = Bounds {
            min: r.min,
            max: r.max,
            schedule: None,
        };
        for s in &self.schedules {
            if s.min > bounds.min && s.applies_to(region) && memo.active(s, now_ms) {
                bounds.min = s.min.min(r.max);
                bounds.schedule = Some(s.name.clone());
            }
        }
        Some(bounds)
    }
}

/// Effective bounds of a pool in a region at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
    /// The scheduled window that raised the minimum, if any.
    pub schedule: Option<String>,
}

/// All pools' policies, loaded together.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    pub pools: BTreeMap<String, PoolPolicy>,
    /// Short hash of every file's name and contents: recorded with each decision.
    pub hash: String,
}

impl PolicySet {
    pub fn pool(&self, name: &str) -> Option<&PoolPolicy> {
        self.pools.get(name)
    }
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {} — {}",
            self.file, self.line, self.col, self.what, self.fix
        )
    }
}

/// Every problem found while loading policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{n} problem{} in the policies:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A policy file's name and text, as read from disk.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub path: PathBuf,
    pub text: String,
}

/// Parse and validate policy texts; the pure heart of loading (no file system).
pub fn parse_sources(sources: &[PolicySource]) -> Result<PolicySet, PolicyError> {
    let mut problems = Vec::new();
    let mut pools: BTreeMap<String, PoolPolicy> = BTreeMap::new();
    let mut seen: BTreeMap<String, (String, usize, usize)> = BTreeMap::new();
    for src in sources {
        let parsed = parse::parse_file(&src.path, &src.text);
        let mut file_problems = parsed.problems;
        if let Some((policy, (line, col))) = parsed.policy {
            if let Some((file, l, c)) = seen.get(&policy.pool) {
                file_problems.push(Problem {
                    file: src.path.display().to_string(),
                    line,
                    col,
                    what: format!(
                        "pool `{}` is already defined at {file}:{l}:{c}",
                        policy.pool
                    ),
                    fix: "each pool must be defined once: merge the two files or rename one pool"
                        .into(),
                });
            } else {
                seen.insert(
                    policy.pool.clone(),
                    (src.path.display().to_string(), line, col),
                );
                pools.insert(policy.pool.clone(), policy);
            }
        }
        problems.append(&mut file_problems);
    }
    if !problems.is_empty() {
        return Err(PolicyError { problems });
    }
    let hash = hash_sources(sources);
    Ok(PolicySet { pools, hash })
}

#[cfg(test)]
mod tests;
