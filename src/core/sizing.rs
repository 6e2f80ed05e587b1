//! SLO sizing: how many instances the pool needs so that no more than the SLO's share of
//! requests finds the queue full, judged from the distribution of its demand over the next
//! launch time.
//!
//! A new instance serves one launch time after it is asked for, so two questions matter at
//! every decision:
//! - *up*: what will the minutes that a launch asked for now would serve need? Capacity short
//!   of it is launched now.
//! - *keep*: what do the minutes from now until capacity given back could return need?
//!   Capacity above it (by more than `slo.tolerance`) is given back now.
//!
//! The distribution of those minutes' demand comes from the pool's own history: the moments of
//! the last `slo.history` most like now (by how far the newest sample stands from its running
//! median: a spike looks like past spikes, a step like past steps), and the same moments a day
//! and a week earlier, each replayed from today's level. For each question the SLO asks for
//! the fewest instances whose expected shortfall over those futures (requests beyond what the
//! instances serve at saturation, less what their queues absorb) is at most the SLO's share of
//! the demand. A spike the futures say is over before a launch serves buys nothing; a
//! recurrent burst keeps its capacity; a rise seen a day earlier is met one launch time ahead.
//!
//! Meeting the SLO is never bought at any price: what the SLO asks is capped at what the
//! band's setpoint asks for the *mean* of the same futures (what a reactive scaler aiming at the
//! setpoint would hold for the demand to come). Where the tail is cheap to cover (smooth
//! traffic) the SLO asks for less than the cap and the pool runs lean; where covering it would
//! take a multiple of the demand (random spikes far above the traffic) the cap holds, and the
//! reason says that the SLO is out of reach at that price.

use std::time::Duration;

use super::demand::DemandHistory;
use super::policy::{PoolPolicy, Slo};
use super::ratios::{self, Distribution};

/// What sizing needs for one window of minutes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Need {
    /// Instances planned: the SLO's, capped.
    pub instances: u32,
    /// Instances the SLO alone asks for (the most any minute of the window asks).
    pub for_slo: u32,
    /// The cap: the band's setpoint over the highest mean demand of a minute of the window.
    pub cap: u32,
    /// The highest mean demand of a minute of the window (RPS).
    pub mean_rps: f64,
    /// The demand (RPS) the SLO's instances are sized for: beyond it lies no more than the
    /// SLO's share of the demand.
    pub covered_rps: f64,
}

impl Need {
    /// Whether the cap, not the SLO, decided.
    pub fn capped(&self) -> bool {
        self.instances < self.for_slo
    }
}

/// The outlook of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Outlook {
    /// The newest minute with a sample.
    pub newest_minute: i64,
    /// Minutes from that sample until capacity asked for now would serve.
    pub lead_minutes: u32,
    /// The pool's level now (running median, RPS).
    pub level: f64,
    /// Moments of history the outlook reads (at the farthest lead), and the days a
    /// same-time-of-day future was drawn from.
    pub moments: u32,
    pub days: usize,
    /// The minutes a launch asked for now would serve.
    pub up: Need,
    /// From now until capacity given back could return.
    pub keep: Need,
    /// Each minute's own need, minutes 1..=lead + 1 after the newest sample.
    pub minutes: Vec<Need>,
    /// Nothing in the history looked like now: the newest minute was taken to persist.
    pub unseen: bool,
}

/// Why there is no outlook yet.
#[derive(Debug, Clone, PartialEq)]
pub enum NoOutlook {
    /// Not enough history: this many usable moments, `needed` wanted.
    Learning { moments: u32, needed: u32 },
    /// No sample at or before now.
    NoSample,
}

/// The fewest moments an outlook is drawn from: below it, the band decides.
pub const MIN_MOMENTS: u32 = 30;

/// The weight of the same-time-of-day future (the median over the days the history holds):
/// a tenth of the distribution with three days or more (a one-off event does not survive the
/// median), half that with fewer.
const SEASONAL_WEIGHT: f64 = 0.1;
const SEASONAL_DAYS: i64 = 7;

/// Minutes the history must keep for `slo`: its window, a week of same-time-of-day futures,
/// and a little more.
pub fn retention_minutes(slo: &Slo) -> usize {
    let window = (slo.history.as_secs() / 60) as usize;
    window.max(SEASONAL_DAYS as usize * 1_440) + 180
}

/// Leads the ratio book keeps for a launch time of `lead` (and one interval more).
pub fn book_ahead(lead: Duration) -> usize {
    (lead.as_secs() as usize).div_ceil(60) + 3
}

/// The outlook at `now_ms` for a pool whose launches serve after `lead`. The history's ratio
/// book must cover `book_ahead(lead)` leads (`DemandHistory::keep_book`).
pub fn outlook(
    policy: &PoolPolicy,
    slo: &Slo,
    history: &DemandHistory,
    now_ms: i64,
    lead: Duration,
) -> Result<Outlook, NoOutlook> {
    let newest = history.newest().ok_or(NoOutlook::NoSample)?;
    let newest_ms = newest.saturating_mul(60_000);
    if newest_ms > now_ms {
        return Err(NoOutlook::NoSample);
    }
    // Minutes after the newest sample until a launch asked for now serves; one more covers
    // the interval until the next decision.
    let ahead_ms = now_ms
        .saturating_sub(newest_ms)
        .saturating_add(lead.as_millis().min(i64::MAX as u128) as i64);
    let lead_minutes = (ahead_ms.max(1) as u64).div_ceil(60_000).clamp(1, 180) as usize;
    let width = lead_minutes + 1;
    let learning = |moments| NoOutlook::Learning {
        moments,
        needed: MIN_MOMENTS,
    };
    let book = history
        .book()
        .filter(|b| b.ahead() >= width)
        .ok_or(learning(0))?;
    let moments = book.moments(width);
    if moments < MIN_MOMENTS {
        return Err(learning(moments));
    }
    let delta = history.delta();
    let x_n = history.get(newest).unwrap_or(0.0);
    let level = history.level(newest).unwrap_or(x_n);
    let peak = history.peak(newest).unwrap_or(x_n);
    let state = ratios::state(x_n, level, peak, delta);
    let (seasonal, days) = same_time_of_day(history, newest, width, delta);
    let inst = &policy.instances;
    // A minute's loss is demand beyond what the instances serve at saturation. Their queues'
    // slack is spent within the minute: the distribution is of minute means, and the queue
    // absorbs the second-to-second noise around them (Poisson noise of √rps a second at 10
    // requests per instance is seconds of excess). Sustained excess fills it for good.
    let per_instance = inst.max_rps;
    let mut unseen = false;
    let per_minute: Vec<(f64, f64)> = (1..=width)
        .map(|k| {
            let (mut dist, known) = book.lookup(k, state, level, delta);
            if !known {
                // Nothing in the history looks like now (traffic back after a long outage, a
                // jump never seen): the newest minute itself is the best guess of what stays.
                unseen = true;
            }
            if let Some(y) = seasonal.get(k - 1).copied().flatten() {
                let total: f64 = dist.iter().map(|(_, w)| w).sum();
                let phi = if days >= 3 {
                    SEASONAL_WEIGHT
                } else {
                    SEASONAL_WEIGHT / 2.0
                };
                let v = ((level + delta) * y.exp() - delta).max(0.0);
                let at = dist.partition_point(|(x, _)| *x > v);
                dist.insert(at, (v, total * phi / (1.0 - phi)));
            }
            (covered(&dist, slo.over_capacity), mean(&dist))
        })
        .collect();
    // When the history has nothing like now, the newest minute persists: never less than it
    // needs at saturation.
    let floor = if unseen { x_n } else { 0.0 };
    let need = |ks: std::ops::RangeInclusive<usize>| {
        let (covered_rps, mean_rps) = ks
            .map(|k| per_minute[k - 1])
            .fold((floor, floor), |(c, m), (ck, mk)| (c.max(ck), m.max(mk)));
        let for_slo = super::decide::instances_for(covered_rps, per_instance);
        let cap = super::decide::instances_for(mean_rps, policy.band.low)
            .max(super::decide::instances_for(mean_rps, inst.max_rps));
        Need {
            instances: for_slo.min(cap),
            for_slo,
            cap,
            mean_rps,
            covered_rps,
        }
    };
    Ok(Outlook {
        newest_minute: newest,
        lead_minutes: lead_minutes as u32,
        level,
        moments,
        days,
        up: need(lead_minutes..=width),
        keep: need(1..=width),
        minutes: (1..=width).map(|k| need(k..=k)).collect(),
        unseen,
    })
}

/// The demand beyond which lies no more than `share` of the distribution's demand: the
/// smallest `x` with E[(V − x)+] ≤ share · E[V]. Cells are (RPS, weight), highest first.
fn covered(dist: &Distribution, share: f64) -> f64 {
    let total: f64 = dist.iter().map(|(v, w)| v * w).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let budget = share * total;
    let (mut above_w, mut above_s) = (0.0, 0.0);
    for (i, &(v, w)) in dist.iter().enumerate() {
        above_w += w;
        above_s += v * w;
        let next = dist.get(i + 1).map_or(0.0, |c| c.0);
        // For x in [next, v]: E[(V − x)+] = above_s − x · above_w, falling as x rises; the
        // answer lies in this interval once the shortfall at its bottom exceeds the budget.
        if above_s - next * above_w > budget {
            return ((above_s - budget) / above_w).clamp(next, v);
        }
    }
    0.0
}

fn mean(dist: &Distribution) -> f64 {
    let w: f64 = dist.iter().map(|(_, w)| w).sum();
    if w <= 0.0 {
        0.0
    } else {
        dist.iter().map(|(v, w)| v * w).sum::<f64>() / w
    }
}

/// The log-ratio the same time of day took over the next `width` minutes, the median over the
/// days the history holds (up to a week), and how many days it saw.
fn same_time_of_day(
    h: &DemandHistory,
    newest: i64,
    width: usize,
    delta: f64,
) -> (Vec<Option<f64>>, usize) {
    let mut per_k: Vec<Vec<f64>> = vec![Vec::new(); width];
    let mut days = 0;
    for d in 1..=SEASONAL_DAYS {
        let s = newest - d * 1_440;
        let Some(b) = h.level(s) else { continue };
        let ys: Option<Vec<f64>> = (1..=width as i64)
            .map(|k| h.get(s + k).map(|x| ((x + delta) / (b + delta)).ln()))
            .collect();
        if let Some(ys) = ys {
            days += 1;
            for (k, y) in ys.into_iter().enumerate() {
                per_k[k].push(y);
            }
        }
    }
    let medians = per_k
        .into_iter()
        .map(|mut v| {
            if v.is_empty() {
                return None;
            }
            v.sort_by(f64::total_cmp);
            Some(v[v.len() / 2])
        })
        .collect();
    (medians, days)
}

/// How far demand rose over a launch time in the pool's history, at the SLO: the multiplier
/// `q` such that, over the moments of `slo.history`, the demand of the next launch time (its
/// highest minute) beyond `q` times the moment's own demand is no more than the SLO's share
/// of it. Capacity sized to `q` times today's demand at saturation meets the SLO until a launch
/// asked for now would serve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    pub q: f64,
    /// Moments it was drawn from.
    pub moments: usize,
    /// The newest minute it covers.
    pub newest_minute: i64,
}

/// The moments a growth estimate wants at least: fewer, and the band stays as written.
pub const MIN_GROWTH_MOMENTS: usize = 60;

/// The growth multiplier of `history` for launches of `lead` (None with too little history).
pub fn growth(slo: &Slo, history: &DemandHistory, lead: Duration) -> Option<Growth> {
    let newest = history.newest()?;
    let width = lead.as_secs().div_ceil(60) as i64 + 1;
    let window = (slo.history.as_secs() / 60) as i64;
    let delta = history.delta();
    // (future peak, base) of every moment with a whole future.
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let from = history.oldest().max(newest - window - width);
    // The minutes a launch asked for at the moment would serve: its last two.
    for s in from..=newest - width {
        let Some(x) = history.get(s) else { continue };
        for k in width - 1..=width {
            if let Some(v) = history.get(s + k) {
                pairs.push((v + delta, x + delta));
            }
        }
    }
    if pairs.len() < MIN_GROWTH_MOMENTS {
        return None;
    }
    // Smallest q with Σ (V − q·b)+ ≤ ε Σ V: walk the moments by V/b, highest first.
    let total: f64 = pairs.iter().map(|(v, _)| v).sum();
    let budget = slo.over_capacity * total;
    pairs.sort_by(|a, b| (b.0 / b.1).total_cmp(&(a.0 / a.1)));
    let (mut sv, mut sb) = (0.0, 0.0);
    let mut q = 0.0;
    for (i, &(v, b)) in pairs.iter().enumerate() {
        sv += v;
        sb += b;
        let next = pairs.get(i + 1).map_or(0.0, |(v, b)| v / b);
        // For q in [next, v/b]: shortfall = sv − q·sb.
        if sv - next * sb > budget {
            q = ((sv - budget) / sb).clamp(next, v / b);
            break;
        }
    }
    Some(Growth {
        q: q.max(1.0),
        moments: pairs.len(),
        newest_minute: newest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decide::Sample;

    fn policy() -> PoolPolicy {
        PoolPolicy {
            slo: Some(Slo::default()),
            ..PoolPolicy::with_defaults("p", "us-east-1", "g", 0, 1000)
        }
    }

    fn history(minutes: impl IntoIterator<Item = (i64, f64)>) -> DemandHistory {
        let mut h = DemandHistory::new(20_000);
        h.keep_book(book_ahead(Duration::from_secs(360)), 1_440);
        for (m, rps) in minutes {
            h.push(Sample {
                at_ms: m * 60_000,
                rps,
            });
        }
        h
    }

    const N: i64 = 30_000_000;

    fn at(minute: i64) -> i64 {
        minute * 60_000 + 10_000
    }

    #[test]
    fn steady_traffic_runs_close_to_saturation() {
        // 100 rps for a day, flat: the futures are all 100 rps.
        let h = history((N - 1_440..=N).map(|m| (m, 100.0)));
        let p = policy();
        let o = outlook(
            &p,
            p.slo.as_ref().unwrap(),
            &h,
            at(N),
            Duration::from_secs(360),
        )
        .unwrap();
        assert_eq!(o.up.for_slo, 50, "100 rps at 2.0 per instance");
        assert_eq!(o.up.instances, 50);
        assert_eq!(
            o.up.cap, 100,
            "band.low: an instance carrying 1.0 rps on average"
        );
        assert_eq!(o.lead_minutes, 7);
    }

    #[test]
    fn too_little_history_is_learning() {
        let h = history((N - 10..=N).map(|m| (m, 100.0)));
        let p = policy();
        assert!(matches!(
            outlook(
                &p,
                p.slo.as_ref().unwrap(),
                &h,
                at(N),
                Duration::from_secs(360)
            ),
            Err(NoOutlook::Learning { .. })
        ));
    }
}
