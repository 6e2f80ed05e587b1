//! SLO sizing: how lean a pool may run so that no more than the SLO's share of requests finds
//! the queue full, judged from the pool's own per-minute history. Pure functions of the
//! history; `decide::rules::slo` applies them.
//!
//! A new instance serves one launch time after it is asked for. Two questions follow:
//! - **How much can demand grow before new capacity serves?** `growth` answers with the
//!   multiplier `q` of the pool's demand over a launch time, at the SLO: over the moments of
//!   the last `slo.history`, the smallest `q` such that capacity for `q ×` the demand the
//!   rules keep capacity for at that moment (the highest of the stabilization window before
//!   it, `hold`) would have left no more than the SLO's share of the requests of the minutes a
//!   launch asked for then would serve. Noise the window already covers is not paid twice. A pool may run at up to `max_rps / q` per instance: the band's
//!   top moves there (never above 95 % of saturation, never more cautious than written).
//!   A diurnal rise is met a launch time early because the rise is in `q`.
//! - **Is a rise above the band worth buying for?** `burst` looks up the rises of the history
//!   that stood as high over their level (running median) for as long as this one, and what
//!   the demand did one launch time later. When most of them were over by then, and skipping
//!   all of them would have cost no more than the SLO's share of the window's requests, the
//!   capacity is not bought: it would have served after the spike was gone. A recurrent burst
//!   that outlasts a launch time is bought at once; a one-off spike shorter than a launch time
//!   buys nothing when the SLO allows it.

use std::time::Duration;

use super::demand::DemandHistory;
use super::policy::Slo;

/// Minutes the history must keep for `slo`: its window, a launch time's future and a margin.
pub fn retention_minutes(slo: &Slo) -> usize {
    (slo.history.as_secs() / 60) as usize + 180
}

/// Minutes from a sample until capacity asked for at it serves, and one more: capacity asked
/// for within a minute's sample serves from `width - 1` to `width` minutes after it.
fn width(lead: Duration) -> i64 {
    lead.as_secs().div_ceil(60) as i64 + 1
}

/// How long an SLO policy keeps capacity after the demand that asked for it: its
/// stabilization window, at least two launch times (given back sooner, capacity may be needed
/// again before a replacement could serve).
pub fn hold(policy: &crate::core::PoolPolicy, lead: Duration) -> Duration {
    policy.scale_down.stabilization.max(lead * 2)
}

/// Demand's growth over a launch time, at the SLO.
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
pub fn growth(
    slo: &Slo,
    history: &DemandHistory,
    lead: Duration,
    hold: Duration,
) -> Option<Growth> {
    let newest = history.newest()?;
    let width = width(lead);
    let window = (slo.history.as_secs() / 60) as i64;
    let hold = (hold.as_secs() / 60).max(1) as i64;
    let delta = history.delta();
    // (future, base) of every moment with a whole future; the base is the highest demand of
    // the `hold` minutes up to the moment, the capacity the rules keep.
    // The highest of the hold is a sliding maximum (minutes kept in decreasing demand), so
    // the cost stays linear in the window whatever the hold.
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let from = history.oldest().max(newest - window - width);
    let mut highest: std::collections::VecDeque<(i64, f64)> = std::collections::VecDeque::new();
    for m in from - hold + 1..from {
        push_max(&mut highest, m, history.get(m));
    }
    for s in from..=newest - width {
        push_max(&mut highest, s, history.get(s));
        while highest.front().is_some_and(|&(m, _)| m <= s - hold) {
            highest.pop_front();
        }
        if history.get(s).is_none() {
            continue;
        }
        let Some(&(_, x)) = highest.front() else {
            continue;
        };
        for k in width - 1..=width {
            if let Some(v) = history.get(s + k) {
                pairs.push((v + delta, x + delta));
            }
        }
    }
    if pairs.len() < MIN_GROWTH_MOMENTS {
        return None;
    }
    Some(Growth {
        q: smallest_q(&mut pairs, slo.over_capacity),
        moments: pairs.len(),
        newest_minute: newest,
    })
}

/// The smallest q (at least 1) with Σ (V − q·b)+ ≤ ε Σ V over (future V, base b) pairs: walk
/// the moments by V/b, highest first.
fn smallest_q(pairs: &mut [(f64, f64)], over_capacity: f64) -> f64 {
    let total: f64 = pairs.iter().map(|(v, _)| v).sum();
    let budget = over_capacity * total;
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
    q.max(1.0)
}

/// Add minute `m`'s demand to a sliding maximum: values no higher than it can never be the
/// highest again while it is in the window.
fn push_max(q: &mut std::collections::VecDeque<(i64, f64)>, m: i64, v: Option<f64>) {
    let Some(v) = v else { return };
    while q.back().is_some_and(|&(_, w)| w <= v) {
        q.pop_back();
    }
    q.push_back((m, v));
}

/// How the rises of the history like the current one went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// The pool's level now (running median, RPS) and the newest sample over it.
    pub level: f64,
    pub ratio: f64,
    /// Consecutive newest minutes above the trigger (this one included).
    pub age_minutes: u32,
    /// Moments of the window that stood at least as high over their level, after as many
    /// minutes above the trigger's equivalent.
    pub alike: u32,
    /// Of them, those whose demand a launch time later, rescaled to now, was still beyond the
    /// capacity the pool has.
    pub lasted: u32,
    /// Requests those would have lost in the minutes new capacity would have served, rescaled
    /// to now: what skipping every such rise cost over the window.
    pub skipped_loss: f64,
    /// The SLO's share of the window's requests.
    pub budget: f64,
}

/// The fewest alike rises `burst` judges from.
pub const MIN_ALIKE: u32 = 10;

impl Burst {
    /// Whether to let this rise pass without buying: most rises like it were over before a
    /// launch could serve, and skipping them all stays within the SLO.
    pub fn skip(&self) -> bool {
        self.alike >= MIN_ALIKE && 2 * self.lasted < self.alike && self.skipped_loss <= self.budget
    }
}

/// The rise the newest sample makes above `trigger_rps` (the band's top at the capacity the
/// pool has), judged against the last `slo.history` of `history` for launches of `lead`, with
/// `capacity_rps` (what the pool serves at saturation, queue slack aside) as the line demand
/// must stay under. None when the newest sample is not above the trigger or the history has no
/// level yet.
pub fn burst(
    slo: &Slo,
    history: &DemandHistory,
    lead: Duration,
    trigger_rps: f64,
    capacity_rps: f64,
) -> Option<Burst> {
    let newest = history.newest()?;
    let now = history.get(newest)?;
    let delta = history.delta();
    let level = history.level(newest)?.max(delta);
    if now <= trigger_rps {
        return None;
    }
    let ratio = now / level;
    let trigger = trigger_rps / level;
    let line = capacity_rps / level;
    let mut age = 0u32;
    while age < 1_000
        && history
            .get(newest - i64::from(age))
            .is_some_and(|v| v > trigger_rps)
    {
        age += 1;
    }
    let width = width(lead);
    let window = (slo.history.as_secs() / 60) as i64;
    let from = history.oldest().max(newest - window - width);
    let (mut alike, mut lasted, mut loss, mut total) = (0u32, 0u32, 0.0, 0.0);
    for t in from..=newest - width {
        if let Some(v) = history.get(t) {
            total += v * 60.0;
        }
        let (Some(x), Some(l)) = (history.get(t), history.level(t)) else {
            continue;
        };
        let l = l.max(delta);
        let was_alike = x / l >= ratio
            && (1..i64::from(age)).all(|j| history.get(t - j).is_some_and(|v| v / l > trigger));
        if !was_alike {
            continue;
        }
        alike += 1;
        let later = (width - 1..=width)
            .filter_map(|k| history.get(t + k))
            .map(|v| v / l)
            .fold(0.0, f64::max);
        if later > line {
            lasted += 1;
        }
        loss += (later - line).max(0.0) * level * 60.0;
    }
    Some(Burst {
        level,
        ratio,
        age_minutes: age,
        alike,
        lasted,
        skipped_loss: loss,
        budget: slo.over_capacity * total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decide::Sample;

    fn history(minutes: impl IntoIterator<Item = (i64, f64)>) -> DemandHistory {
        let mut h = DemandHistory::new(20_000);
        for (m, rps) in minutes {
            h.push(Sample {
                at_ms: m * 60_000,
                rps,
            });
        }
        h
    }

    const N: i64 = 30_000_000;
    const LEAD: Duration = Duration::from_secs(360);

    fn slo(pct: f64) -> Slo {
        Slo {
            over_capacity: pct / 100.0,
            ..Slo::default()
        }
    }

    #[test]
    fn flat_traffic_does_not_grow() {
        let h = history((N - 1_440..=N).map(|m| (m, 100.0)));
        let g = growth(&slo(0.1), &h, LEAD, Duration::ZERO).unwrap();
        assert_eq!(g.q, 1.0);
        // Each moment counts the two minutes a launch would serve: 6 and 7 minutes later.
        assert_eq!(g.moments, 2 * (1_440 - 7 + 1));
    }

    #[test]
    fn a_steady_rise_is_in_the_growth() {
        // Up 1 rps a minute from 100: 7 minutes later demand is (x + 7) / x of now. At a 0.1 %
        // SLO nearly every moment must be covered: q is the largest such ratio, that of the
        // lowest base, (100 + 7 + δ) / (100 + δ) ≈ 1.069 (δ, the noise floor, is 1 % of the
        // mean: about 8.2).
        let h = history((0..=1_440).map(|i| (N - 1_440 + i, 100.0 + i as f64 * 0.5)));
        let g = growth(&slo(0.1), &h, LEAD, Duration::ZERO).unwrap();
        let delta = h.delta();
        let top = (100.0 + 3.5 + delta) / (100.0 + delta);
        assert!(g.q > 1.0 && g.q <= top + 1e-9, "q {} top {top}", g.q);
        // A looser SLO runs leaner.
        let loose = growth(&slo(5.0), &h, LEAD, Duration::ZERO).unwrap();
        assert!(loose.q < g.q, "{} {}", loose.q, g.q);
    }

    #[test]
    fn noise_the_hold_covers_is_not_paid_twice() {
        // Minutes alternate 100 and 120 rps. Sized from a single minute, the pool must grow
        // about ×(120 + δ)/(100 + δ) to cover the next high minute; sized from the highest minute of
        // a 12-minute hold (what the stabilization window keeps), it needs no growth at all.
        let h = history((N - 1_440..=N).map(|m| (m, if m % 2 == 0 { 100.0 } else { 120.0 })));
        let delta = h.delta();
        let single = growth(&slo(0.1), &h, LEAD, Duration::ZERO).unwrap();
        let want = (120.0 + delta) / (100.0 + delta);
        // (The SLO's 0.1 % lets a sliver of the high minutes go short: q is just under that.)
        assert!(
            single.q > 1.15 && single.q <= want + 1e-9,
            "q {} want {want}",
            single.q
        );
        let held = growth(&slo(0.1), &h, LEAD, Duration::from_secs(720)).unwrap();
        assert_eq!(held.q, 1.0);
    }

    #[test]
    fn the_sliding_maximum_is_the_maximum_of_the_hold() {
        // Against the plain maximum of each moment's hold, on uneven traffic with gaps.
        let h = history((N - 2_000..=N).filter(|m| m % 17 != 3).map(|m| {
            let x = (m as f64 * 0.37).sin() * 40.0 + (m as f64 * 0.011).cos() * 25.0;
            (m, 100.0 + x)
        }));
        for hold_min in [1u64, 5, 12, 60] {
            let hold = Duration::from_secs(hold_min * 60);
            let fast = growth(&slo(0.1), &h, LEAD, hold).unwrap();
            // The same estimate, with each base found by brute force.
            let width = width(LEAD);
            let delta = h.delta();
            let newest = h.newest().unwrap();
            let from = h.oldest().max(newest - 1_440 - width);
            let mut pairs = Vec::new();
            for s in from..=newest - width {
                if h.get(s).is_none() {
                    continue;
                }
                let x = (s - hold_min as i64 + 1..=s)
                    .filter_map(|m| h.get(m))
                    .fold(f64::NEG_INFINITY, f64::max);
                for k in width - 1..=width {
                    if let Some(v) = h.get(s + k) {
                        pairs.push((v + delta, x + delta));
                    }
                }
            }
            assert_eq!(fast.moments, pairs.len(), "hold {hold_min}");
            assert_eq!(fast.q, smallest_q(&mut pairs, 0.001), "hold {hold_min}");
            assert!(fast.q > 1.0, "hold {hold_min}: uneven traffic grows");
        }
    }

    #[test]
    fn too_little_history_keeps_the_band_as_written() {
        let h = history((N - 30..=N).map(|m| (m, 100.0)));
        assert!(growth(&slo(0.1), &h, LEAD, Duration::ZERO).is_none());
    }

    /// A day at 100 rps with a spike to `spike` rps lasting `len` minutes at the start of every
    /// `every`-minute period (none in the last hour), the last `now_len` minutes at `spike`.
    /// An hour before the day gives every minute of it a level.
    fn spiky(every: i64, len: i64, spike: f64, now_len: i64) -> DemandHistory {
        history((N - 1_500..=N).map(|m| {
            let in_spike = if m > N - now_len {
                true
            } else {
                (N - 1_440..N - 60).contains(&m) && m.rem_euclid(every) < len
            };
            (m, if in_spike { spike } else { 100.0 })
        }))
    }

    /// How many spikes `spiky(every, ..)` has.
    fn starts(every: i64) -> u32 {
        (N - 1_440..N - 60)
            .filter(|m| m.rem_euclid(every) == 0)
            .count() as u32
    }

    #[test]
    fn a_spike_shorter_than_a_launch_buys_nothing_when_the_slo_allows_it() {
        // One-minute spikes to 150 rps every 45 minutes (31 in the day), each gone a minute
        // later; now another has begun. The pool has 55 instances: 110 rps at saturation, the
        // band's top at 1.9 rps per instance is 104.5 rps.
        let h = spiky(45, 1, 150.0, 1);
        let b = burst(&slo(1.0), &h, LEAD, 104.5, 110.0).unwrap();
        assert_eq!(b.age_minutes, 1);
        assert_eq!(b.level, 100.0);
        assert_eq!(b.ratio, 1.5);
        assert_eq!(b.alike, starts(45), "{b:?}");
        assert_eq!(b.lasted, 0, "every past spike was over a launch time later");
        assert_eq!(b.skipped_loss, 0.0);
        assert!(b.skip());
    }

    #[test]
    fn a_burst_that_outlasts_a_launch_is_bought_at_once() {
        // Bursts to 150 rps lasting 20 minutes every hour. Their first 15 minutes stand 1.5×
        // over the level (the half-hour median is still the 100 between bursts); of those, the
        // first 14 are still in the burst a launch time (6–7 minutes) later, 40 rps beyond the
        // 110 the pool serves.
        let h = spiky(60, 20, 150.0, 1);
        let b = burst(&slo(1.0), &h, LEAD, 104.5, 110.0).unwrap();
        let bursts = starts(60);
        assert_eq!(bursts, 23);
        assert_eq!(b.alike, bursts * 15, "{b:?}");
        assert_eq!(b.lasted, bursts * 14, "{b:?}");
        assert!((b.skipped_loss - f64::from(bursts * 14) * 40.0 * 60.0).abs() < 1e-6);
        assert!(!b.skip());
    }

    #[test]
    fn a_short_spike_is_bought_when_skipping_would_break_the_slo() {
        // Spikes to 400 rps lasting 7 minutes every 45: most of their minutes are over a launch
        // time later, but a launch asked for at each one's first minute would have served its
        // last (290 rps beyond the pool's 110, a minute): 31 × 17,400 requests, beyond a
        // 0.01 % SLO of the day's requests (about 900).
        let h = spiky(45, 7, 400.0, 1);
        let b = burst(&slo(0.01), &h, LEAD, 104.5, 110.0).unwrap();
        let spikes = starts(45);
        assert_eq!(spikes, 31);
        assert_eq!(b.alike, spikes * 7, "{b:?}");
        assert_eq!(b.lasted, spikes, "{b:?}");
        assert!(
            (b.skipped_loss - f64::from(spikes) * 290.0 * 60.0).abs() < 1e-6,
            "{b:?}"
        );
        assert!(b.skipped_loss > b.budget, "{b:?}");
        assert!(!b.skip());
        // At a 5 % SLO (about 627,000 of the day's 12.5 million requests) they pass.
        let loose = burst(&slo(5.0), &h, LEAD, 104.5, 110.0).unwrap();
        assert!(loose.budget > loose.skipped_loss, "{loose:?}");
        assert!(loose.skip());
    }

    #[test]
    fn a_rise_the_history_has_not_seen_is_bought() {
        // A flat day, then a jump: nothing alike to judge from.
        let h = spiky(1_000_000, 0, 150.0, 1);
        let b = burst(&slo(1.0), &h, LEAD, 104.5, 110.0).unwrap();
        assert_eq!(b.alike, 0);
        assert!(!b.skip());
        // Below the trigger there is no rise to judge.
        assert!(burst(&slo(1.0), &h, LEAD, 200.0, 210.0).is_none());
    }

    #[test]
    fn a_rise_older_than_the_spikes_of_the_history_is_bought() {
        // Past spikes lasted two minutes; this rise has lasted three: none are alike.
        let h = spiky(45, 2, 150.0, 3);
        let b = burst(&slo(1.0), &h, LEAD, 104.5, 110.0).unwrap();
        assert_eq!(b.age_minutes, 3);
        assert_eq!(b.alike, 0, "{b:?}");
        assert!(!b.skip());
    }
}
