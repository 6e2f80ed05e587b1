//! The decision: from a pool's observation, its recent history and `now`, what capacity it
//! should have, why, and the plan that carries it out. Pure: no I/O, no clock.
//!
//! `decide` runs in four steps, each a function of its own: assess the metrics and apply the
//! band's rules (`rules`), lift by the forecast floor (`forecast`), clamp to the bounds in
//! force, and translate to the group's desired capacity; then `plan::plan` adds the steps.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::capacity::InstanceRecord;
use super::plan::{self, Plan};
use super::policy::{Bounds, PoolPolicy};

mod forecast;
mod history;
mod reason;
mod rules;

pub use forecast::{ForecastValue, SeasonalRef, forecast, horizon};
pub use history::PoolHistory;
pub use reason::ReasonCode;
pub use rules::instances_for;

use rules::{dur, fmt_dur};

/// One per-minute RPS sample from the metrics table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// End of the minute the sample covers (unix ms).
    pub at_ms: i64,
    pub rps: f64,
}

/// The Auto Scaling Group as AWS (or the in-memory region) reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// Instances whose heartbeat or launch time lies in the future beyond the clock-skew
    /// allowance: not believed, held.
    pub implausible: u32,
    /// Instances the group holds that the table does not account for (see
    /// `capacity::within_group`); included in `launching`.
    pub unaccounted: u32,
}

impl Capacity {
    pub fn counted(&self) -> u32 {
        self.serving.saturating_add(self.launching)
    }
}

/// What the controller saw for one pool in one region.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// The pool's instances as read (what the plan drains, terminates or returns to service).
    pub instances: Arc<[InstanceRecord]>,
    /// The instances the group holds in service or pending, when the backend lists them.
    pub members: Option<Arc<[Arc<str>]>>,
    /// The bounds in force, when the caller computed them (with its remembered schedule
    /// occurrences); None: computed here.
    pub bounds: Option<Bounds>,
    /// SLO sizing's growth estimate, when the caller keeps one up to date; None: computed
    /// here from the history.
    pub growth: Option<crate::core::sizing::Growth>,
}

impl Observation {
    /// Whether the group still holds `i` (true when the backend does not list members).
    pub fn in_group(&self, i: &InstanceRecord) -> bool {
        self.members
            .as_ref()
            .is_none_or(|m| m.contains(&i.instance_id))
    }
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
    /// The steps that carry the decision out (empty when there is nothing to do).
    pub plan: Plan,
}

impl Decision {
    pub fn current(&self) -> u32 {
        self.serving.saturating_add(self.launching)
    }

    /// A decision that holds at the observed capacity, before any rule has spoken.
    fn hold(policy: &PoolPolicy, obs: &Observation, history: &PoolHistory, now_ms: i64) -> Self {
        let cap = obs.capacity;
        Decision {
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
            recommendation: cap.counted(),
            desired: cap.counted(),
            min: 0,
            max: 0,
            setpoint: policy.band.setpoint,
            asg_current: obs.asg.desired,
            asg_desired: obs.asg.desired,
            action: Action::None,
            reason_code: ReasonCode::WithinBand,
            reason: String::new(),
            collapse_since_ms: history.collapse_since_ms,
            plan: Plan::default(),
        }
    }
}

/// Decide the desired capacity of one pool in one region, and plan how to get there.
pub fn decide(
    policy: &PoolPolicy,
    region: &str,
    obs: &Observation,
    history: &PoolHistory,
    now_ms: i64,
) -> Decision {
    let mut d = Decision::hold(policy, obs, history, now_ms);
    let bounds = obs.bounds.clone().or_else(|| policy.bounds(region, now_ms));
    let Some(bounds) = bounds else {
        d.reason_code = ReasonCode::RegionNotInPolicy;
        d.reason = format!(
            "pool {} has no policy for region {region}; leaving the ASG at {}",
            policy.pool, obs.asg.desired
        );
        return d;
    };
    d.min = bounds.min;
    d.max = bounds.max;
    let (code, desired, reason) = assess(policy, region, obs, history, now_ms, &mut d);
    d.reason_code = code;
    let (desired, reason) = lift_by_forecast(policy, obs, now_ms, &mut d, desired, reason);
    let (desired, reason) = clamp(&bounds, &mut d, desired, reason);
    d.desired = desired;
    let reason = to_group(obs, &mut d, reason);
    d.reason = reason;
    d.plan = plan::plan(policy, obs, &mut d);
    d
}

/// The band's verdict on the metrics: (reason code, desired capacity, sentence).
fn assess(
    policy: &PoolPolicy,
    region: &str,
    obs: &Observation,
    history: &PoolHistory,
    now_ms: i64,
    d: &mut Decision,
) -> (ReasonCode, u32, String) {
    let current = obs.capacity.counted();
    // The newest sample not in the future, and the mean over the window ending there.
    let newest = obs.samples.iter().rev().find(|s| s.at_ms <= now_ms);
    let Some(n) = newest else {
        return rules::stale_hold(
            policy,
            current,
            ReasonCode::MetricsMissing,
            format!("no rps samples for {} in {region}", policy.pool),
        );
    };
    let age = now_ms.saturating_sub(n.at_ms);
    d.metrics_age_ms = Some(age);
    if age > policy.metrics.stale_after.as_millis() as i64 {
        return rules::stale_hold(
            policy,
            current,
            ReasonCode::MetricsStale,
            format!(
                "newest rps sample is {} old (stale after {})",
                dur(age),
                fmt_dur(policy.metrics.stale_after)
            ),
        );
    }
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
    match &policy.slo {
        Some(slo) => rules::slo(policy, slo, obs, history, now_ms, n, rps, d),
        None => rules::band(policy, obs, history, now_ms, n, rps, d),
    }
}

/// The forecast floor: lift ahead of demand, never lower.
fn lift_by_forecast(
    policy: &PoolPolicy,
    obs: &Observation,
    now_ms: i64,
    d: &mut Decision,
    desired: u32,
    reason: String,
) -> (u32, String) {
    let Some(rps) = d.rps else {
        return (desired, reason);
    };
    let Some(f) = forecast(policy, obs, rps, now_ms) else {
        return (desired, reason);
    };
    d.forecast_rps = Some(f.rps);
    // Enough that the forecast demand stays inside the band (≤ high per instance).
    let raw = instances_for(f.rps, policy.band.high);
    let cap = desired.saturating_add(policy.forecast.max_lift.allowance(desired.max(1)));
    let floor = raw.min(cap);
    d.recommendation = d.recommendation.max(floor);
    if floor <= desired {
        return (desired, reason);
    }
    d.reason_code = ReasonCode::Forecast;
    let capped = if raw > cap {
        format!(", capped by forecast.max_lift {}", policy.forecast.max_lift)
    } else {
        String::new()
    };
    let reason = format!(
        "{reason}; but forecast {:.0} rps at +{} ({}) needs {raw}{capped}; floor {floor}",
        f.rps,
        fmt_dur(horizon(policy, obs)),
        f.source,
    );
    (floor, reason)
}

/// Clamp to the effective bounds: a reason of its own.
fn clamp(bounds: &Bounds, d: &mut Decision, desired: u32, reason: String) -> (u32, String) {
    let clamped = desired.clamp(bounds.min, bounds.max.max(bounds.min));
    if clamped > desired {
        d.reason_code = if bounds.schedule.is_some() {
            ReasonCode::ScheduledMinimum
        } else {
            ReasonCode::BelowMinimum
        };
        let reason = match &bounds.schedule {
            Some(s) => format!(
                "{reason}; scheduled window `{s}` sets min {}, so {clamped}",
                bounds.min
            ),
            None => format!("{reason}; min is {}, so {clamped}", bounds.min),
        };
        (clamped, reason)
    } else if clamped < desired {
        d.reason_code = ReasonCode::AboveMaximum;
        (
            clamped,
            format!("{reason}; max is {}, so {clamped}", bounds.max),
        )
    } else {
        (clamped, reason)
    }
}

/// Translate to the ASG: desired serving + held non-serving, inside the ASG's own bounds; and
/// the action that takes it there.
fn to_group(obs: &Observation, d: &mut Decision, mut reason: String) -> String {
    let cap = obs.capacity;
    let current = cap.counted();
    let wanted = d.desired.saturating_add(cap.held);
    let target = super::capacity::asg_desired(d.desired, cap.held, obs.asg.min, obs.asg.max);
    if target != wanted {
        d.reason_code = ReasonCode::AsgBounds;
        reason = format!(
            "{reason}; the ASG {} allows {}–{}, so desired capacity {target} instead of {wanted}",
            obs.asg.name, obs.asg.min, obs.asg.max
        );
    }
    let intent = d.desired.cmp(&current);
    d.action = match intent {
        std::cmp::Ordering::Greater if target > obs.asg.desired => Action::ScaleUp,
        std::cmp::Ordering::Less if target < obs.asg.desired => Action::ScaleDown,
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
    if d.action == Action::None {
        if intent != std::cmp::Ordering::Equal {
            reason = format!(
                "{reason}; the ASG already asks for {} ({} held not serving), nothing to change",
                obs.asg.desired, cap.held
            );
        }
        d.asg_desired = obs.asg.desired;
    } else {
        d.asg_desired = target;
    }
    if cap.skipped > 0 {
        reason = format!(
            "{reason} ({} malformed instance items skipped)",
            cap.skipped
        );
    }
    if cap.implausible > 0 {
        reason = format!(
            "{reason} ({} instance(s) with a heartbeat or launch time in the future not counted)",
            cap.implausible
        );
    }
    if cap.unaccounted > 0 {
        reason = format!(
            "{reason} ({} instance(s) the group holds are not in the instances table: counted \
             as launching)",
            cap.unaccounted
        );
    }
    reason
}
