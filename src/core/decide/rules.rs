//! The rules of the band: what capacity a pool wants for its RPS, scaling up (confirmation,
//! cooldown, step limit), scaling down (stabilization, cooldown, step limit), and holding on
//! stale metrics. Each returns the reason code, the capacity and the sentence.

use std::time::Duration;

use super::{Decision, Observation, PoolHistory, ReasonCode, Sample};
use crate::core::policy::{PoolPolicy, Slo};
use crate::core::sizing;

/// The band's rules on a fresh RPS: no capacity, scale up (once confirmed), hold inside the
/// band, hold through a collapse, or scale down. Sets the utilisation, the recommendation and
/// the collapse start on `d`.
pub(super) fn band(
    policy: &PoolPolicy,
    obs: &Observation,
    history: &PoolHistory,
    now_ms: i64,
    newest: &Sample,
    rps: f64,
    d: &mut Decision,
) -> (ReasonCode, u32, String) {
    let band = policy.band;
    let cap = obs.capacity;
    let current = cap.counted();
    let u = rps / f64::from(current.max(1));
    d.utilisation = Some(u);
    let rec = policy.wanted(rps);
    d.recommendation = rec;
    let sd = &policy.scale_down;
    d.collapse_since_ms = (!sd.collapse_hold.is_zero()
        && current > 0
        && f64::from(rec) < sd.collapse_below * f64::from(current))
    .then(|| history.collapse_since_ms.unwrap_or(now_ms));
    let head = head(policy, u, rps, cap.serving, cap.launching);
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
        && let Some(why) = unconfirmed(policy, obs, newest, current)
    {
        (
            ReasonCode::ScaleUpUnconfirmed,
            current,
            format!("{head} is above {:?}; {why}; hold at {current}", band.high),
        )
    } else if u > band.high {
        let wanted = wanted_text(policy, rps, rec);
        scale_up(policy, history, now_ms, current, rec, &head, &wanted)
    } else if u < band.low && current > 0 {
        match d.collapse_since_ms {
            Some(since) if now_ms.saturating_sub(since) < sd.collapse_hold.as_millis() as i64 => (
                ReasonCode::CollapseHold,
                current,
                format!(
                    "{head} is below {:?}; recommends {rec}, under {} of the {current} counted: \
                     traffic collapsed {} ago, and a collapse usually ends with the traffic \
                     back at once; hold at {current} for up to {} (scale_down.collapse_hold)",
                    band.low,
                    sd.collapse_below,
                    dur(now_ms.saturating_sub(since)),
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

/// SLO sizing (`core::sizing`): the SLO moves the band, and judges rises above it.
/// - The highest utilisation the pool may run at is the one from which demand's growth over a
///   launch time, as the pool's own history shows it at the SLO, stays within saturation:
///   `high = max_rps / q` (at most 95 % of saturation, never below the band as written). The
///   band keeps its shape: low and the setpoint move in proportion.
/// - Capacity is given back only when no higher recommendation stands within two launch
///   times (the stabilization window, at least): given back sooner, it may be needed again
///   before a replacement could serve.
/// - A rise above the band is bought unless the rises of the history that stood as high for
///   as long were mostly over a launch time later and letting them all pass stayed within the
///   SLO (`sizing::burst`).
///
/// With too little history the band stays as written, and the reason says so.
#[allow(clippy::too_many_arguments)]
pub(super) fn slo(
    policy: &PoolPolicy,
    slo: &Slo,
    obs: &Observation,
    history: &PoolHistory,
    now_ms: i64,
    newest: &Sample,
    rps: f64,
    d: &mut Decision,
) -> (ReasonCode, u32, String) {
    let lead = obs.learned_launch.unwrap_or(policy.instances.launch_time);
    let mut moved = policy.clone();
    moved.scale_down.stabilization = sizing::hold(policy, lead);
    let g = obs
        .growth
        .or_else(|| sizing::growth(slo, &history.demand, lead, moved.scale_down.stabilization));
    let pct = slo.over_capacity * 100.0;
    let Some(g) = g else {
        let (_, desired, reason) = band(&moved, obs, history, now_ms, newest, rps, d);
        return (
            ReasonCode::SloLearning,
            desired,
            format!(
                "SLO {pct}%: too little history yet to size from (an hour of samples with a \
                 launch time after them); the band as written decides: {reason}"
            ),
        );
    };
    // Only ever leaner than the band as written: the written band is the planner's ceiling on
    // caution; the pool's history lifts it where its growth over a launch time is small. The
    // last 5 % below saturation are never planned for.
    let max_rps = policy.instances.max_rps;
    let high = (max_rps / g.q).min(max_rps * 0.95).max(policy.band.high);
    let scale = high / policy.band.high;
    moved.band.high = high;
    moved.band.low = policy.band.low * scale;
    moved.band.setpoint = policy.band.setpoint * scale;
    let basis = format!(
        "SLO {pct}%: demand rose up to ×{:.2} within a launch time ({} moments of the last {}), \
         so the band is {:.2}–{:.2} rps per instance (setpoint {:.2}; {:?} at saturation)",
        g.q,
        g.moments,
        fmt_dur(slo.history),
        moved.band.low,
        moved.band.high,
        moved.band.setpoint,
        max_rps
    );
    let (code, desired, reason) = band(&moved, obs, history, now_ms, newest, rps, d);
    let current = obs.capacity.counted();
    if matches!(code, ReasonCode::AboveBand | ReasonCode::ScaleUpLimited)
        && desired > current
        && let Some(b) = sizing::burst(
            slo,
            &history.demand,
            lead,
            f64::from(current) * high,
            f64::from(current) * max_rps,
        )
        && b.skip()
    {
        return (
            ReasonCode::SloShortRise,
            current,
            format!(
                "{basis}; {rps:.1} rps is above the band at {current} counted, ×{:.2} the \
                 level of {:.1} rps for {} min; of the {} rises that high for that long in the \
                 last {}, {} still needed more than {current} instances a launch time later, \
                 and letting them all pass cost about {:.0} requests, within the SLO's {:.0}: \
                 capacity bought now would serve after this one is over; hold at {current}",
                b.ratio,
                b.level,
                b.age_minutes,
                b.alike,
                fmt_dur(slo.history),
                b.lasted,
                b.skipped_loss,
                b.budget
            ),
        );
    }
    (code, desired, format!("{basis}; {reason}"))
}

/// "1.45 rps/instance (97.2 rps over 67 serving + 0 launching)": two decimals, or three when
/// two would print a band edge ("1.50 is above 1.5").
fn head(policy: &PoolPolicy, u: f64, rps: f64, serving: u32, launching: u32) -> String {
    let band = policy.band;
    let near_edge = [band.low, band.high]
        .iter()
        .any(|e| ((u * 100.0).round() - e * 100.0).abs() < 1e-6 && (u - e).abs() > 1e-9);
    let counts = format!("{serving} serving + {launching} launching");
    if near_edge {
        format!("{u:.3} rps/instance ({rps:.1} rps over {counts})")
    } else {
        format!("{u:.2} rps/instance ({rps:.1} rps over {counts})")
    }
}

/// "ceil(rps/1.35) = 67 + headroom 10% = 74": how a recommendation was reached.
pub(super) fn wanted_text(policy: &PoolPolicy, rps: f64, rec: u32) -> String {
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

pub(super) fn dur(ms: i64) -> String {
    let secs = (ms.max(0) as u64).div_ceil(1000);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

pub(super) fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Why a scale-up waits for confirmation, or None when it may go ahead: the newest
/// `scale_up.confirm` samples must each be above the band, unless the newest alone is above
/// `scale_up.confirm_unless` per instance.
pub(super) fn unconfirmed(
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

pub(super) fn stale_hold(
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

pub(super) fn scale_up(
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

pub(super) fn scale_down(
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
