//! The decision: from a pool's observation, its recent history and `now`, what capacity it
//! should have and why. Pure: no I/O, no clock.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use super::policy::{ForecastMode, PoolPolicy};

/// One per-minute RPS sample from the metrics table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// End of the minute the sample covers (unix ms).
    pub at_ms: i64,
    pub rps: f64,
}

/// The Auto Scaling Group as AWS (or the in-memory region) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsgState {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
}

/// Counted capacity of a pool in a region (see `capacity::count`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Available, heartbeating, not failed cleanup, not unhealthy.
    pub serving: u32,
    /// Launching and younger than the launch timeout.
    pub launching: u32,
    /// Held by the ASG but not serving (draining, quarantined, failed, stale): they occupy
    /// desired-capacity slots without serving.
    pub held: u32,
    /// Items skipped because they were malformed.
    pub skipped: u32,
}

impl Capacity {
    pub fn counted(&self) -> u32 {
        self.serving.saturating_add(self.launching)
    }
}

/// What the controller saw for one pool in one region.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Samples, oldest first (at least the metrics window; the forecast's trend window when
    /// forecasting).
    pub samples: Vec<Sample>,
    pub capacity: Capacity,
    pub asg: AsgState,
    /// One day and one week earlier, for the seasonal forecast (empty otherwise).
    pub seasonal: Vec<SeasonalRef>,
    /// The p90 launch time learned from the instances table, when enough launches were seen.
    pub learned_launch: Option<Duration>,
}

/// How far ahead the forecast looks: the configured horizon, else the learned launch time,
/// else the configured launch time.
pub fn horizon(policy: &PoolPolicy, obs: &Observation) -> Duration {
    policy
        .forecast
        .horizon
        .or(obs.learned_launch)
        .unwrap_or(policy.instances.launch_time)
}

/// What traffic did `lag_ms` earlier: around that moment, and at its peak over the following
/// forecast horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeasonalRef {
    pub lag_ms: i64,
    /// Mean RPS over the metrics window ending `lag_ms` before now.
    pub then: Option<f64>,
    /// Highest RPS sample within the horizon after that moment.
    pub then_ahead: Option<f64>,
}

/// A forecast of RPS one horizon ahead, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastValue {
    pub rps: f64,
    pub source: String,
}

/// Predict RPS at now + horizon: the recent trend (least squares over the trend window,
/// rising only), and in seasonal mode the change seen over the same stretch a day and a week
/// earlier, applied to today's level; the highest wins. None when there is too little history.
pub fn forecast(
    policy: &PoolPolicy,
    obs: &Observation,
    rps: f64,
    now_ms: i64,
) -> Option<ForecastValue> {
    let f = &policy.forecast;
    if f.mode == ForecastMode::Off {
        return None;
    }
    let horizon_ms = horizon(policy, obs).as_millis() as i64;
    let newest = obs.samples.iter().rev().find(|s| s.at_ms <= now_ms)?;
    let from = newest.at_ms - f.trend_window.as_millis() as i64;
    let pts: Vec<&Sample> = obs
        .samples
        .iter()
        .filter(|s| s.at_ms > from && s.at_ms <= newest.at_ms)
        .collect();
    let mut best: Option<ForecastValue> = None;
    if pts.len() >= 3 {
        let n = pts.len() as f64;
        let mx = pts.iter().map(|s| s.at_ms as f64).sum::<f64>() / n;
        let my = pts.iter().map(|s| s.rps).sum::<f64>() / n;
        let sxx: f64 = pts.iter().map(|s| (s.at_ms as f64 - mx).powi(2)).sum();
        let sxy: f64 = pts
            .iter()
            .map(|s| (s.at_ms as f64 - mx) * (s.rps - my))
            .sum();
        if sxx > 0.0 {
            let slope = sxy / sxx; // rps per ms
            // Only a rise that stands out of the noise: slope above two standard errors.
            let intercept = my - slope * mx;
            let rss: f64 = pts
                .iter()
                .map(|s| (s.rps - (intercept + slope * s.at_ms as f64)).powi(2))
                .sum();
            let se = if pts.len() > 2 {
                (rss / (n - 2.0) / sxx).sqrt()
            } else {
                f64::INFINITY
            };
            if slope > 0.0 && slope > 2.0 * se {
                let ahead = (now_ms + horizon_ms - newest.at_ms) as f64;
                let fitted_now = my + slope * (newest.at_ms as f64 - mx);
                let value = fitted_now.max(rps) + slope * ahead;
                best = Some(ForecastValue {
                    rps: value,
                    source: format!(
                        "trend {:+.1} rps/min over {}",
                        slope * 60_000.0,
                        humantime::format_duration(f.trend_window)
                    ),
                });
            }
        }
    }
    if f.mode == ForecastMode::Seasonal {
        for r in &obs.seasonal {
            if let (Some(then), Some(ahead)) = (r.then, r.then_ahead)
                && then > 0.0
                && ahead > then
            {
                let value = rps * ahead / then;
                if best.as_ref().is_none_or(|b| value > b.rps) {
                    let days = r.lag_ms as f64 / 86_400_000.0;
                    best = Some(ForecastValue {
                        rps: value,
                        source: format!(
                            "{} ago traffic rose ×{:.2} over the same stretch",
                            if (days - 7.0).abs() < 0.01 {
                                "a week".to_string()
                            } else if (days - 1.0).abs() < 0.01 {
                                "a day".to_string()
                            } else {
                                format!("{days:.1} days")
                            },
                            ahead / then
                        ),
                    });
                }
            }
        }
    }
    best
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    ScaleUp,
    ScaleDown,
    None,
}

impl Action {
    /// The seed's `scaling_action` values.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ScaleUp => "scale-up",
            Action::ScaleDown => "scale-down",
            Action::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scale-up" => Some(Action::ScaleUp),
            "scale-down" => Some(Action::ScaleDown),
            "none" => Some(Action::None),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decision came out as it did. Doubles as a metric label and a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonCode {
    /// Utilisation inside the band: hold.
    WithinBand,
    /// Utilisation above the band: scale up to rps / setpoint.
    AboveBand,
    /// Above the band, but the scale-up step limit applies.
    ScaleUpLimited,
    /// Above the band, inside the scale-up cooldown.
    ScaleUpCooldown,
    /// No capacity at all while there is demand.
    NoCapacity,
    /// Below the band: scale down to the stabilized recommendation.
    BelowBand,
    /// Below the band, but the scale-down step limit applies.
    ScaleDownLimited,
    /// Below the band, but a higher recommendation within the stabilization window holds.
    ScaleDownStabilized,
    /// Below the band, inside the scale-down cooldown.
    ScaleDownCooldown,
    /// The newest sample is older than `metrics.stale_after`: hold.
    MetricsStale,
    /// No sample at all: hold.
    MetricsMissing,
    /// Stale or missing metrics with a configured fallback floor.
    MetricsFallback,
    /// Raised to the policy's minimum.
    BelowMinimum,
    /// Raised to a scheduled minimum.
    ScheduledMinimum,
    /// Lowered to the policy's maximum.
    AboveMaximum,
    /// The ASG's own min/max bound the value we asked for.
    AsgBounds,
    /// The pool has no policy for this region.
    RegionNotInPolicy,
    /// The forecast floor lifted capacity ahead of demand.
    Forecast,
    /// Traffic collapsed far below capacity: hold through it for `scale_down.collapse_hold`.
    CollapseHold,
    /// Above the band on fewer consecutive samples than `scale_up.confirm` asks for.
    ScaleUpUnconfirmed,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 20] = [
        ReasonCode::WithinBand,
        ReasonCode::AboveBand,
        ReasonCode::ScaleUpLimited,
        ReasonCode::ScaleUpCooldown,
        ReasonCode::NoCapacity,
        ReasonCode::BelowBand,
        ReasonCode::ScaleDownLimited,
        ReasonCode::ScaleDownStabilized,
        ReasonCode::ScaleDownCooldown,
        ReasonCode::MetricsStale,
        ReasonCode::MetricsMissing,
        ReasonCode::MetricsFallback,
        ReasonCode::BelowMinimum,
        ReasonCode::ScheduledMinimum,
        ReasonCode::AboveMaximum,
        ReasonCode::AsgBounds,
        ReasonCode::RegionNotInPolicy,
        ReasonCode::Forecast,
        ReasonCode::CollapseHold,
        ReasonCode::ScaleUpUnconfirmed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::WithinBand => "within_band",
            ReasonCode::AboveBand => "above_band",
            ReasonCode::ScaleUpLimited => "scale_up_limited",
            ReasonCode::ScaleUpCooldown => "scale_up_cooldown",
            ReasonCode::NoCapacity => "no_capacity",
            ReasonCode::BelowBand => "below_band",
            ReasonCode::ScaleDownLimited => "scale_down_limited",
            ReasonCode::ScaleDownStabilized => "scale_down_stabilized",
            ReasonCode::ScaleDownCooldown => "scale_down_cooldown",
            ReasonCode::MetricsStale => "metrics_stale",
            ReasonCode::MetricsMissing => "metrics_missing",
            ReasonCode::MetricsFallback => "metrics_fallback",
            ReasonCode::BelowMinimum => "below_minimum",
            ReasonCode::ScheduledMinimum => "scheduled_minimum",
            ReasonCode::AboveMaximum => "above_maximum",
            ReasonCode::AsgBounds => "asg_bounds",
            ReasonCode::RegionNotInPolicy => "region_not_in_policy",
            ReasonCode::Forecast => "forecast",
            ReasonCode::CollapseHold => "collapse_hold",
            ReasonCode::ScaleUpUnconfirmed => "scale_up_unconfirmed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of `decide`: data, not an effect. Acting on it is a separate step.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub at_ms: i64,
    /// RPS the decision used (mean over the metrics window); None when missing or stale.
    pub rps: Option<f64>,
    /// The samples inside the window, oldest first.
    pub rps_window: Vec<f64>,
    /// Age of the newest sample at `at_ms`.
    pub metrics_age_ms: Option<i64>,
    pub serving: u32,
    pub launching: u32,
    pub held: u32,
    pub skipped_items: u32,
    /// rps / max(serving + launching, 1), when rps is known.
    pub utilisation: Option<f64>,
    /// The forecast, when forecasting and there was enough history.
    pub forecast_rps: Option<f64>,
    /// What this cycle alone recommends (feeds the stabilization window).
    pub recommendation: u32,
    /// Desired serving + launching instances, within the effective bounds.
    pub desired: u32,
    /// Effective bounds at `at_ms`.
    pub min: u32,
    pub max: u32,
    pub setpoint: f64,
    /// The ASG's desired capacity before and after (desired + held, within the ASG's bounds).
    pub asg_current: u32,
    pub asg_desired: u32,
    pub action: Action,
    pub reason_code: ReasonCode,
    pub reason: String,
    /// Since when traffic has been collapsed far below capacity (`scale_down.collapse_below`),
    /// when it is; carried into the history.
    pub collapse_since_ms: Option<i64>,
}

impl Decision {
    pub fn current(&self) -> u32 {
        self.serving.saturating_add(self.launching)
    }
}

/// A pool's recent decisions, as the stabilization window and cooldowns need them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolHistory {
    recommendations: VecDeque<(i64, u32)>,
    pub last_scale_up_ms: Option<i64>,
    pub last_scale_down_ms: Option<i64>,
    /// Start of the current traffic collapse, if traffic is collapsed.
    pub collapse_since_ms: Option<i64>,
}

impl PoolHistory {
    /// Remember a decision; `applied` says whether its action took effect.
    pub fn record(&mut self, d: &Decision, applied: bool, keep: Duration) {
        self.recommendations.push_back((d.at_ms, d.recommendation));
        let horizon = d.at_ms - keep.as_millis() as i64;
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| *t < horizon)
        {
            self.recommendations.pop_front();
        }
        self.collapse_since_ms = d.collapse_since_ms;
        if applied {
            match d.action {
                Action::ScaleUp => self.last_scale_up_ms = Some(d.at_ms),
                Action::ScaleDown => self.last_scale_down_ms = Some(d.at_ms),
                Action::None => {}
            }
        }
    }

    /// Add a past recommendation (e.g. replayed from the decision log by a new leader).
    pub fn seed(&mut self, at_ms: i64, recommendation: u32) {
        self.recommendations.push_back((at_ms, recommendation));
    }

    /// The highest recommendation made after `since_ms`.
    pub fn highest_since(&self, since_ms: i64) -> Option<u32> {
        self.recommendations
            .iter()
            .rev()
            .take_while(|(t, _)| *t > since_ms)
            .map(|(_, r)| *r)
            .max()
    }

    pub fn len(&self) -> usize {
        self.recommendations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recommendations.is_empty()
    }
}

/// "ceil(rps/1.35) = 67 + headroom 10% = 74": how a recommendation was reached.
fn wanted_text(policy: &PoolPolicy, rps: f64, rec: u32) -> String {
    let base = instances_for(rps, policy.band.setpoint);
    match policy.band.headroom {
        Some(h) if rec > base => format!(
            "ceil(rps/{:?}) = {base} + headroom {h} = {rec}",
            policy.band.setpoint
        ),
        _ => format!("ceil(rps/{:?}) = {rec}", policy.band.setpoint),
    }
}

/// ceil(rps / setpoint) with a small tolerance so 2.5 / 1.25 is 2, not 3.
pub fn instances_for(rps: f64, per_instance: f64) -> u32 {
    if rps <= 0.0 || per_instance <= 0.0 {
        return 0;
    }
    let x = rps / per_instance;
    let c = (x - 1e-9).ceil();
    if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c.max(0.0) as u32
    }
}

fn dur(ms: i64) -> String {
    let secs = (ms.max(0) as u64).div_ceil(1000);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Decide the desired capacity of one pool in one region.
pub fn decide(
    policy: &PoolPolicy,
    region: &str,
    obs: &Observation,
    history: &PoolHistory,
    now_ms: i64,
) -> Decision {
    let cap = obs.capacity;
    let current = cap.counted();
    let band = policy.band;
    let mut d = Decision {
        at_ms: now_ms,
        rps: None,
        rps_window: Vec::new(),
        metrics_age_ms: None,
        serving: cap.serving,
        launching: cap.launching,
        held: cap.held,
        skipped_items: cap.skipped,
        utilisation: None,
        forecast_rps: None,
        recommendation: current,
        desired: current,
        min: 0,
        max: 0,
        setpoint: band.setpoint,
        asg_current: obs.asg.desired,
        asg_desired: obs.asg.desired,
        action: Action::None,
        reason_code: ReasonCode::WithinBand,
        reason: String::new(),
        collapse_since_ms: history.collapse_since_ms,
    };
    let Some(bounds) = policy.bounds(region, now_ms) else {
        d.reason_code = ReasonCode::RegionNotInPolicy;
        d.reason = format!(
            "pool {} has no policy for region {region}; leaving the ASG at {}",
            policy.pool, obs.asg.desired
        );
        return d;
    };
    d.min = bounds.min;
    d.max = bounds.max;
    let counts = format!("{} serving + {} launching", cap.serving, cap.launching);

    // Metrics: newest sample not in the future, and the mean over the window ending there.
    let newest = obs.samples.iter().rev().find(|s| s.at_ms <= now_ms);
    let (code, desired, mut reason) = match newest {
        None => stale_hold(
            policy,
            current,
            ReasonCode::MetricsMissing,
            format!("no rps samples for {} in {region}", policy.pool),
        ),
        Some(n) if now_ms - n.at_ms > policy.metrics.stale_after.as_millis() as i64 => {
            d.metrics_age_ms = Some(now_ms - n.at_ms);
            stale_hold(
                policy,
                current,
                ReasonCode::MetricsStale,
                format!(
                    "newest rps sample is {} old (stale after {})",
                    dur(now_ms - n.at_ms),
                    fmt_dur(policy.metrics.stale_after)
                ),
            )
        }
        Some(n) => {
            d.metrics_age_ms = Some(now_ms - n.at_ms);
            let from = n.at_ms - policy.metrics.window.as_millis() as i64;
            let mut sum = 0.0;
            for s in obs
                .samples
                .iter()
                .filter(|s| s.at_ms > from && s.at_ms <= n.at_ms)
            {
                d.rps_window.push(s.rps);
                sum += s.rps;
            }
            let rps = (sum / d.rps_window.len().max(1) as f64).max(0.0);
            d.rps = Some(rps);
            let u = rps / f64::from(current.max(1));
            d.utilisation = Some(u);
            let rec = policy.wanted(rps);
            d.recommendation = rec;
            let sd = &policy.scale_down;
            d.collapse_since_ms = (!sd.collapse_hold.is_zero()
                && current > 0
                && f64::from(rec) < sd.collapse_below * f64::from(current))
            .then(|| history.collapse_since_ms.unwrap_or(now_ms));
            // Two decimals, or three when two would print a band edge ("1.50 is above 1.5").
            let near_edge = [band.low, band.high]
                .iter()
                .any(|e| ((u * 100.0).round() - e * 100.0).abs() < 1e-6 && (u - e).abs() > 1e-9);
            let head = if near_edge {
                format!("{u:.3} rps/instance ({rps:.1} rps over {counts})")
            } else {
                format!("{u:.2} rps/instance ({rps:.1} rps over {counts})")
            };
            if current == 0 && rps > 0.0 {
                (
                    ReasonCode::NoCapacity,
                    rec.max(1),
                    format!(
                        "{rps:.1} rps with no capacity; scale up to {}",
                        wanted_text(policy, rps, rec.max(1))
                    ),
                )
            } else if u > band.high
                && let Some(why) = unconfirmed(policy, obs, n, current)
            {
                (
                    ReasonCode::ScaleUpUnconfirmed,
                    current,
                    format!("{head} is above {:?}; {why}; hold at {current}", band.high),
                )
            } else if u > band.high {
                scale_up(
                    policy,
                    history,
                    now_ms,
                    current,
                    rec,
                    &head,
                    &wanted_text(policy, rps, rec),
                )
            } else if u < band.low && current > 0 {
                match d.collapse_since_ms {
                    Some(since) if now_ms - since < sd.collapse_hold.as_millis() as i64 => (
                        ReasonCode::CollapseHold,
                        current,
                        format!(
                            "{head} is below {:?}; recommends {rec}, under {} of the {current} counted: \
                             traffic collapsed {} ago, and a collapse usually ends with the traffic \
                             back at once; hold at {current} for up to {} (scale_down.collapse_hold)",
                            band.low,
                            sd.collapse_below,
                            dur(now_ms - since),
                            fmt_dur(sd.collapse_hold)
                        ),
                    ),
                    _ => scale_down(policy, history, now_ms, current, rec, &head),
                }
            } else if current == 0 {
                (
                    ReasonCode::WithinBand,
                    0,
                    "no demand and no capacity; hold at 0".to_string(),
                )
            } else {
                d.recommendation = current;
                (
                    ReasonCode::WithinBand,
                    current,
                    format!(
                        "{head} is inside the band {:?}–{:?}; hold at {current}",
                        band.low, band.high
                    ),
                )
            }
        }
    };
    d.reason_code = code;

    // The forecast floor: lift ahead of demand, never lower.
    let mut desired = desired;
    if let Some(rps) = d.rps
        && let Some(f) = forecast(policy, obs, rps, now_ms)
    {
        d.forecast_rps = Some(f.rps);
        // Enough that the forecast demand stays inside the band (≤ high per instance).
        let raw = instances_for(f.rps, band.high);
        let cap = desired.saturating_add(policy.forecast.max_lift.allowance(desired.max(1)));
        let floor = raw.min(cap);
        d.recommendation = d.recommendation.max(floor);
        if floor > desired {
            desired = floor;
            d.reason_code = ReasonCode::Forecast;
            reason = format!(
                "{reason}; but forecast {:.0} rps at +{} ({}) needs {raw}{}; floor {floor}",
                f.rps,
                fmt_dur(horizon(policy, obs)),
                f.source,
                if raw > cap {
                    format!(", capped by forecast.max_lift {}", policy.forecast.max_lift)
                } else {
                    String::new()
                }
            );
        }
    }

    // Clamp to the effective bounds: a reason of its own.
    let desired_c = desired.clamp(bounds.min, bounds.max);
    if desired_c > desired {
        d.reason_code = if bounds.schedule.is_some() {
            ReasonCode::ScheduledMinimum
        } else {
            ReasonCode::BelowMinimum
        };
        reason = match &bounds.schedule {
            Some(s) => format!(
                "{reason}; scheduled window `{s}` sets min {}, so {desired_c}",
                bounds.min
            ),
            None => format!("{reason}; min is {}, so {desired_c}", bounds.min),
        };
    } else if desired_c < desired {
        d.reason_code = ReasonCode::AboveMaximum;
        reason = format!("{reason}; max is {}, so {desired_c}", bounds.max);
    }
    d.desired = desired_c;

    // Translate to the ASG: desired serving + held non-serving, inside the ASG's own bounds.
    let wanted = desired_c.saturating_add(cap.held);
    let asg_target = super::capacity::asg_desired(desired_c, cap.held, obs.asg.min, obs.asg.max);
    if asg_target != wanted {
        d.reason_code = ReasonCode::AsgBounds;
        reason = format!(
            "{reason}; the ASG {} allows {}–{}, so desired capacity {asg_target} instead of {wanted}",
            obs.asg.name, obs.asg.min, obs.asg.max
        );
    }
    let intent = desired_c.cmp(&current);
    d.action = match intent {
        std::cmp::Ordering::Greater if asg_target > obs.asg.desired => Action::ScaleUp,
        std::cmp::Ordering::Less if asg_target < obs.asg.desired => Action::ScaleDown,
        _ => Action::None,
    };
    // Out-of-bounds ASG settings are corrected even without a change in counted capacity.
    if d.action == Action::None && intent == std::cmp::Ordering::Equal {
        if obs.asg.desired < obs.asg.min {
            d.action = Action::ScaleUp;
        } else if obs.asg.desired > obs.asg.max {
            d.action = Action::ScaleDown;
        }
    }
    match d.action {
        Action::None => {
            if intent != std::cmp::Ordering::Equal {
                reason = format!(
                    "{reason}; the ASG already asks for {} ({} held not serving), nothing to change",
                    obs.asg.desired, cap.held
                );
            }
            d.asg_desired = obs.asg.desired;
        }
        _ => d.asg_desired = asg_target,
    }
    if cap.skipped > 0 {
        reason = format!(
            "{reason} ({} malformed instance items skipped)",
            cap.skipped
        );
    }
    d.reason = reason;
    d
}

/// Why a scale-up waits for confirmation, or None when it may go ahead: the newest
/// `scale_up.confirm` samples must each be above the band, unless the newest alone is above
/// `scale_up.confirm_unless` per instance.
fn unconfirmed(
    policy: &PoolPolicy,
    obs: &Observation,
    newest: &Sample,
    current: u32,
) -> Option<String> {
    let su = &policy.scale_up;
    if su.confirm <= 1 || current == 0 {
        return None;
    }
    let per = |s: &Sample| s.rps / f64::from(current);
    if per(newest) > su.confirm_unless {
        return None;
    }
    let recent: Vec<&Sample> = obs
        .samples
        .iter()
        .rev()
        .filter(|s| s.at_ms <= newest.at_ms)
        .take(su.confirm as usize)
        .collect();
    // Too little history to tell a spike from a rise: act.
    if recent.len() < su.confirm as usize {
        return None;
    }
    let above = recent
        .iter()
        .take_while(|s| per(s) > policy.band.high)
        .count() as u32;
    (above < su.confirm).then(|| {
        format!(
            "the newest {above} of the {} samples scale_up.confirm asks for are above it, and the newest is {:.2} per instance, not above scale_up.confirm_unless {:?}",
            su.confirm,
            per(newest),
            su.confirm_unless
        )
    })
}

fn stale_hold(
    policy: &PoolPolicy,
    current: u32,
    code: ReasonCode,
    why: String,
) -> (ReasonCode, u32, String) {
    match policy.metrics.stale_fallback {
        Some(floor) if floor > current => (
            ReasonCode::MetricsFallback,
            floor,
            format!("{why}; never scale down on stale metrics; raise to the fallback of {floor}"),
        ),
        _ => (
            code,
            current,
            format!("{why}; never scale down on stale metrics; hold at {current}"),
        ),
    }
}

fn scale_up(
    policy: &PoolPolicy,
    history: &PoolHistory,
    now_ms: i64,
    current: u32,
    rec: u32,
    head: &str,
    wanted: &str,
) -> (ReasonCode, u32, String) {
    let su = &policy.scale_up;
    if let Some(t) = history.last_scale_up_ms {
        let since = now_ms - t;
        if since < su.cooldown.as_millis() as i64 {
            return (
                ReasonCode::ScaleUpCooldown,
                current,
                format!(
                    "{head} is above {:?}; last scale-up {} ago, inside the {} cooldown; hold at {current}",
                    policy.band.high,
                    dur(since),
                    fmt_dur(su.cooldown)
                ),
            );
        }
    }
    let allowance = su.max_step.allowance(current);
    let limit = current.saturating_add(allowance);
    if rec > limit {
        (
            ReasonCode::ScaleUpLimited,
            limit,
            format!(
                "{head} is above {:?}; wants {wanted} but scale_up.max_step {} allows +{allowance}; scale up to {limit}",
                policy.band.high, su.max_step
            ),
        )
    } else {
        (
            ReasonCode::AboveBand,
            rec,
            format!(
                "{head} is above {:?}; scale up to {wanted}",
                policy.band.high
            ),
        )
    }
}

fn scale_down(
    policy: &PoolPolicy,
    history: &PoolHistory,
    now_ms: i64,
    current: u32,
    rec: u32,
    head: &str,
) -> (ReasonCode, u32, String) {
    let sd = &policy.scale_down;
    let window_start = now_ms - sd.stabilization.as_millis() as i64;
    let stabilized = history.highest_since(window_start).unwrap_or(0).max(rec);
    if stabilized >= current {
        return (
            ReasonCode::ScaleDownStabilized,
            current,
            format!(
                "{head} is below {:?}; recommends {rec}, but {stabilized} was recommended within the last {} (stabilization); hold at {current}",
                policy.band.low,
                fmt_dur(sd.stabilization)
            ),
        );
    }
    let last_change = history.last_scale_up_ms.max(history.last_scale_down_ms);
    if let Some(t) = last_change {
        let since = now_ms - t;
        if since < sd.cooldown.as_millis() as i64 {
            return (
                ReasonCode::ScaleDownCooldown,
                current,
                format!(
                    "{head} is below {:?}; last scaling {} ago, inside the {} scale-down cooldown; hold at {current}",
                    policy.band.low,
                    dur(since),
                    fmt_dur(sd.cooldown)
                ),
            );
        }
    }
    let allowance = sd.max_step.allowance(current);
    let floor = current.saturating_sub(allowance);
    if floor > stabilized {
        (
            ReasonCode::ScaleDownLimited,
            floor,
            format!(
                "{head} is below {:?}; stabilized recommendation over {} is {stabilized}, but scale_down.max_step {} allows −{allowance}; scale down to {floor}",
                policy.band.low,
                fmt_dur(sd.stabilization),
                sd.max_step
            ),
        )
    } else {
        (
            ReasonCode::BelowBand,
            stabilized,
            format!(
                "{head} is below {:?}; highest recommendation over the last {} is {stabilized}; scale down to {stabilized}",
                policy.band.low,
                fmt_dur(sd.stabilization)
            ),
        )
    }
}
