//! Baselines: what the field would do on the same traffic and fleet. Small, documented, and
//! never tuned for this project. Each sees what it would see in production: the routers'
//! per-minute RPS samples (the same delay as the controller) and the group's counts.

use std::collections::VecDeque;

use crate::core::decide::instances_for;

use super::engine::BaselineRule;

/// Kubernetes HPA on an external RPS metric with an AverageValue target at the band's setpoint,
/// with its documented defaults: a 15 s sync period, 10 % tolerance, a 300 s scale-down
/// stabilization window (the highest recommendation in the window wins), scale-up limited to
/// max(100 %, 4 pods) per period, scale-down to 100 % per period.
pub struct Hpa {
    pub target: f64,
    pub min: u32,
    pub max: u32,
    recommendations: VecDeque<(u64, u32)>,
}

impl Hpa {
    pub const PERIOD_S: u64 = 15;
    pub const TOLERANCE: f64 = 0.1;
    pub const DOWN_WINDOW_S: u64 = 300;

    pub fn new(target: f64, min: u32, max: u32) -> Self {
        Hpa {
            target,
            min,
            max,
            recommendations: VecDeque::new(),
        }
    }
}

impl BaselineRule for Hpa {
    fn period_s(&self) -> u64 {
        Self::PERIOD_S
    }

    fn desired(&mut self, t: u64, sample: f64, _serving: u32, current: u32) -> u32 {
        // replica_calculator: usage ratio of the external metric to target × replicas.
        let raw = if current == 0 {
            instances_for(sample, self.target).max(1)
        } else {
            let ratio = sample / (self.target * f64::from(current));
            if (ratio - 1.0).abs() <= Self::TOLERANCE {
                current
            } else {
                instances_for(sample, self.target)
            }
        };
        let raw = raw.clamp(self.min, self.max);
        // stabilizeRecommendationWithBehaviors: up window 0 s, down window 300 s.
        self.recommendations.push_back((t, raw));
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| *at + Self::DOWN_WINDOW_S <= t)
        {
            self.recommendations.pop_front();
        }
        let down = self
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(raw);
        let mut stabilized = current;
        if stabilized < raw {
            stabilized = raw;
        }
        if stabilized > down {
            stabilized = down;
        }
        // Scale-up policies: max(100 %, 4 pods) per period.
        let up_limit = current.saturating_add(current.max(4));
        stabilized.min(up_limit).clamp(self.min, self.max)
    }
}

/// AWS target tracking on per-instance RPS at the setpoint (ASG target tracking with an
/// ALBRequestCountPerTarget-style metric over in-service instances): the scale-out alarm fires
/// after 3 consecutive one-minute datapoints above target, the scale-in alarm after 15 below
/// 90 % of target. Scale-out sets ceil(total / target) counting warming instances as capacity
/// (no double launch); scale-in is gradual: at most 10 % (at least one instance) per step, with
/// the default 300 s scale-in cooldown.
pub struct TargetTracking {
    pub target: f64,
    pub min: u32,
    pub max: u32,
    high: u32,
    low: u32,
    last_scale_in: Option<u64>,
}

impl TargetTracking {
    pub const OUT_DATAPOINTS: u32 = 3;
    pub const IN_DATAPOINTS: u32 = 15;
    pub const IN_THRESHOLD: f64 = 0.9;
    pub const IN_COOLDOWN_S: u64 = 300;

    pub fn new(target: f64, min: u32, max: u32) -> Self {
        TargetTracking {
            target,
            min,
            max,
            high: 0,
            low: 0,
            last_scale_in: None,
        }
    }
}

impl BaselineRule for TargetTracking {
    fn period_s(&self) -> u64 {
        60
    }

    fn desired(&mut self, t: u64, sample: f64, serving: u32, current: u32) -> u32 {
        let per_instance = sample / f64::from(serving.max(1));
        if per_instance > self.target {
            self.high += 1;
        } else {
            self.high = 0;
        }
        if per_instance < self.target * Self::IN_THRESHOLD {
            self.low += 1;
        } else {
            self.low = 0;
        }
        let want = instances_for(sample, self.target).clamp(self.min, self.max);
        if self.high >= Self::OUT_DATAPOINTS && want > current {
            return want;
        }
        let cooled = self
            .last_scale_in
            .is_none_or(|at| t >= at + Self::IN_COOLDOWN_S);
        if self.low >= Self::IN_DATAPOINTS && want < current && cooled {
            self.last_scale_in = Some(t);
            let step = (current / 10).max(1);
            return want
                .max(current.saturating_sub(step))
                .clamp(self.min, self.max);
        }
        current.clamp(self.min, self.max)
    }
}

/// The physical limit: knows the rate, and at every second has ceil(rate / band.high)
/// instances serving (within min/max), each launched one launch time early (and paid for while
/// it launches), and kept through any gap shorter than the launch time (cheaper than
/// relaunching). Returns per-second (serving, launching) counts.
pub fn oracle(rate: &[f64], high: f64, min: u32, max: u32, launch_s: u64) -> (Vec<u32>, Vec<u32>) {
    let n = rate.len();
    let need: Vec<u32> = rate
        .iter()
        .map(|&r| instances_for(r, high).clamp(min, max))
        .collect();
    let top = need.iter().copied().max().unwrap_or(0) as usize;
    // Level k (1-based) is the k-th instance; it is needed while need >= k. Walk time once,
    // tracking when each level last stopped being needed.
    let mut serving_diff = vec![0i64; n + 1];
    let mut launching_diff = vec![0i64; n + 1];
    let mut last_end: Vec<Option<usize>> = vec![None; top + 1];
    let mut run_start: Vec<Option<usize>> = vec![None; top + 1];
    let mut prev = 0usize;
    let close = |k: usize, start: usize, end: usize, serving_diff: &mut Vec<i64>| {
        let _ = k;
        serving_diff[start] += 1;
        serving_diff[end] -= 1;
    };
    for t in 0..=n {
        let cur = if t < n { need[t] as usize } else { 0 };
        if cur > prev {
            for k in prev + 1..=cur {
                match last_end[k] {
                    // Kept through a short gap: the earlier run continues.
                    Some(end) if t - end < launch_s as usize => {}
                    Some(end) => {
                        // The earlier run really ended: close it, start a fresh one.
                        if let Some(s) = run_start[k] {
                            close(k, s, end, &mut serving_diff);
                        }
                        run_start[k] = Some(t);
                        let l = t.saturating_sub(launch_s as usize);
                        launching_diff[l] += 1;
                        launching_diff[t] -= 1;
                    }
                    None => {
                        run_start[k] = Some(t);
                        if t > 0 {
                            let l = t.saturating_sub(launch_s as usize);
                            launching_diff[l] += 1;
                            launching_diff[t] -= 1;
                        }
                    }
                }
                last_end[k] = None;
            }
        } else if cur < prev {
            for end in last_end.iter_mut().take(prev + 1).skip(cur + 1) {
                *end = Some(t);
            }
        }
        prev = cur;
    }
    for k in 1..=top {
        if let (Some(s), Some(e)) = (run_start[k], last_end[k]) {
            close(k, s, e, &mut serving_diff);
        }
    }
    let mut serving = Vec::with_capacity(n);
    let mut launching = Vec::with_capacity(n);
    let (mut s, mut l) = (0i64, 0i64);
    for t in 0..n {
        s += serving_diff[t];
        l += launching_diff[t];
        serving.push(s.max(0) as u32);
        launching.push(l.max(0) as u32);
    }
    (serving, launching)
}

/// Enough for the peak all the time.
pub fn static_peak(peak_rate: f64, high: f64, min: u32) -> u32 {
    instances_for(peak_rate, high).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_tolerates_ten_percent_and_scales_up_at_most_double_or_four() {
        let mut h = Hpa::new(1.25, 1, 1000);
        assert_eq!(
            h.desired(0, 10.0 * 1.25 * 1.09, 10, 10),
            10,
            "inside tolerance"
        );
        assert_eq!(h.desired(15, 10.0 * 1.25 * 1.5, 10, 10), 15);
        assert_eq!(h.desired(30, 100.0, 2, 2), 6, "max(100%, 4) from 2");
        assert_eq!(h.desired(45, 1000.0, 15, 15), 30, "doubling from 15");
    }

    #[test]
    fn hpa_scale_down_waits_for_the_window_max() {
        let mut h = Hpa::new(1.0, 1, 1000);
        assert_eq!(h.desired(0, 20.0, 20, 20), 20);
        for t in (15..300).step_by(15) {
            assert_eq!(h.desired(t, 5.0, 20, 20), 20, "at {t}");
        }
        assert_eq!(h.desired(300, 5.0, 20, 20), 5);
    }

    #[test]
    fn target_tracking_needs_three_breaching_minutes_and_fifteen_low_ones() {
        let mut tt = TargetTracking::new(1.25, 1, 1000);
        assert_eq!(tt.desired(0, 20.0, 10, 10), 10);
        assert_eq!(tt.desired(60, 20.0, 10, 10), 10);
        assert_eq!(tt.desired(120, 20.0, 10, 10), 16);
        let mut tt = TargetTracking::new(1.25, 1, 1000);
        for m in 0..14 {
            assert_eq!(tt.desired(m * 60, 5.0, 20, 20), 20);
        }
        assert_eq!(tt.desired(14 * 60, 5.0, 20, 20), 18, "10 % of 20 per step");
        assert_eq!(tt.desired(15 * 60, 5.0, 18, 18), 18, "cooldown");
        assert_eq!(tt.desired(19 * 60, 5.0, 18, 18), 17);
    }

    #[test]
    fn oracle_on_a_step_launches_one_launch_time_early() {
        // 100 s at 1.5 rps (1 instance at high = 1.5), then 100 s at 3.0 (2 instances).
        let rate: Vec<f64> = (0..200).map(|t| if t < 100 { 1.5 } else { 3.0 }).collect();
        let (s, l) = oracle(&rate, 1.5, 0, 10, 30);
        assert_eq!((s[0], s[99], s[100], s[199]), (1, 1, 2, 2));
        assert_eq!((l[69], l[70], l[99], l[100]), (0, 1, 1, 0));
        let paid: u32 = s.iter().chain(l.iter()).sum();
        assert_eq!(paid, 100 + 200 + 30);
    }

    #[test]
    fn oracle_keeps_an_instance_through_a_gap_shorter_than_the_launch_time() {
        // Two instances needed, except a 20 s dip to one; launch time 30 s: keep it.
        let rate: Vec<f64> = (0..100)
            .map(|t| if (40..60).contains(&t) { 1.0 } else { 2.0 })
            .collect();
        let (s, l) = oracle(&rate, 1.0, 0, 10, 30);
        assert!(s.iter().all(|&x| x == 2), "{s:?}");
        assert!(l.iter().all(|&x| x == 0));
        // A 40 s dip is longer than the launch time: release and relaunch 30 s early.
        let rate: Vec<f64> = (0..120)
            .map(|t| if (40..80).contains(&t) { 1.0 } else { 2.0 })
            .collect();
        let (s, l) = oracle(&rate, 1.0, 0, 10, 30);
        assert_eq!((s[39], s[40], s[79], s[80]), (2, 1, 1, 2));
        assert_eq!((l[49], l[50], l[79], l[80]), (0, 1, 1, 0));
        let paid: u32 = s.iter().chain(l.iter()).sum();
        assert_eq!(paid, 120 + 80 + 30);
    }

    #[test]
    fn static_peak_covers_the_peak_at_band_high() {
        assert_eq!(static_peak(90.0, 1.5, 2), 60);
        assert_eq!(static_peak(0.0, 1.5, 2), 2);
    }
}
