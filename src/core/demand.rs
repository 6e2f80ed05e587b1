//! A pool's demand history: the routers' per-minute RPS samples, by minute, kept as far back as
//! SLO sizing needs (`slo.history`). Updated as samples arrive; read by `sizing`. Missing
//! minutes are gaps, never zeros.

use std::collections::VecDeque;

use super::decide::Sample;

const MINUTE_MS: i64 = 60_000;

/// Minutes of the running median that is a minute's *level* (robust to a spike of a minute or
/// two, while following a shift within a few minutes).
pub const LEVEL_MINUTES: usize = 31;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DemandHistory {
    /// Minute index (`at_ms / 60_000` of the sample that ends it) of `values[0]`.
    first: i64,
    /// RPS per minute; NaN where no sample arrived.
    values: VecDeque<f64>,
    /// The level of each minute: the median of the last `LEVEL_MINUTES` present samples
    /// (NaN with fewer than three).
    levels: VecDeque<f64>,
    /// Minutes kept.
    retention: usize,
    /// Sum and count of the present values, for the scale of the pool's traffic.
    sum: f64,
    count: usize,
}

impl DemandHistory {
    /// A history keeping `retention_minutes` minutes.
    pub fn new(retention_minutes: usize) -> Self {
        DemandHistory {
            retention: retention_minutes.max(LEVEL_MINUTES),
            ..DemandHistory::default()
        }
    }

    /// Keep at least this many minutes from now on.
    pub fn retain_at_least(&mut self, minutes: usize) {
        self.retention = self.retention.max(minutes);
    }

    /// The minute index of a sample (the minute it ends).
    pub fn minute_of(at_ms: i64) -> i64 {
        at_ms.div_euclid(MINUTE_MS)
    }

    /// The index of the newest minute with a sample.
    pub fn newest(&self) -> Option<i64> {
        (0..self.values.len())
            .rev()
            .find(|&i| !self.values[i].is_nan())
            .map(|i| self.first + i as i64)
    }

    /// The oldest minute kept.
    pub fn oldest(&self) -> i64 {
        self.first
    }

    fn index(&self, minute: i64) -> Option<usize> {
        let i = minute.checked_sub(self.first)?;
        (0..self.values.len() as i64)
            .contains(&i)
            .then_some(i as usize)
    }

    /// The RPS of `minute`, if a sample arrived for it.
    pub fn get(&self, minute: i64) -> Option<f64> {
        self.index(minute)
            .map(|i| self.values[i])
            .filter(|v| !v.is_nan())
    }

    /// The level (running median) at `minute`.
    pub fn level(&self, minute: i64) -> Option<f64> {
        self.index(minute)
            .map(|i| self.levels[i])
            .filter(|v| !v.is_nan())
    }

    /// Mean RPS over the history (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The scale below which demand is noise: 1 % of the mean, at least 0.01 RPS (keeps the
    /// ratios of an idle pool finite).
    pub fn delta(&self) -> f64 {
        (0.01 * self.mean()).max(0.01)
    }

    /// Add (or replace) a sample. Samples older than the history are dropped; a gap longer
    /// than the retention starts the history afresh.
    pub fn push(&mut self, s: Sample) {
        if !s.rps.is_finite() || s.rps < 0.0 {
            return;
        }
        let m = Self::minute_of(s.at_ms);
        if self.values.is_empty() {
            self.first = m;
        }
        if m < self.first {
            return;
        }
        let end = self.first + self.values.len() as i64;
        if m - end >= self.retention as i64 {
            *self = DemandHistory::new(self.retention);
            self.first = m;
        }
        while self.first + (self.values.len() as i64) <= m {
            self.values.push_back(f64::NAN);
            self.levels.push_back(f64::NAN);
        }
        let i = (m - self.first) as usize;
        let old = self.values[i];
        if !old.is_nan() {
            self.sum -= old;
            self.count -= 1;
        }
        self.values[i] = s.rps;
        self.sum += s.rps;
        self.count += 1;
        // The levels this sample is part of.
        for j in i..(i + LEVEL_MINUTES).min(self.values.len()) {
            self.levels[j] = self.median_at(j);
        }
        while self.values.len() > self.retention {
            if let Some(v) = self.values.pop_front()
                && !v.is_nan()
            {
                self.sum -= v;
                self.count -= 1;
            }
            self.levels.pop_front();
            self.first += 1;
        }
    }

    fn median_at(&self, i: usize) -> f64 {
        let mut w: Vec<f64> = (i.saturating_sub(LEVEL_MINUTES - 1)..=i)
            .map(|j| self.values[j])
            .filter(|v| !v.is_nan())
            .collect();
        if w.len() < 3 {
            return f64::NAN;
        }
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(minute: i64, rps: f64) -> Sample {
        Sample {
            at_ms: minute * MINUTE_MS,
            rps,
        }
    }

    #[test]
    fn keeps_minutes_with_gaps_and_a_robust_level() {
        let mut h = DemandHistory::new(40);
        for (m, v) in [
            (100, 10.0),
            (101, 11.0),
            (102, 50.0),
            (103, 12.0),
            (105, 13.0),
        ] {
            h.push(s(m, v));
        }
        assert_eq!(h.get(104), None, "a gap, not a zero");
        assert_eq!(h.get(102), Some(50.0));
        assert_eq!(h.newest(), Some(105));
        // The spike at 102 does not move the level: median of 10, 11, 50, 12 (and no 104).
        assert_eq!(h.level(103), Some(12.0));
        assert_eq!(h.level(101), None, "fewer than three samples");
        // Retention: 40 minutes.
        h.push(s(145, 9.0));
        assert_eq!(h.oldest(), 106);
        assert_eq!(h.get(103), None);
        assert!((h.mean() - 9.0).abs() < 1e-9);
        // Nonsense is not history.
        h.push(s(116, f64::NAN));
        h.push(s(116, -1.0));
        assert_eq!(h.get(116), None);
    }
}
