//! The ratio book: for every minute of a pool's recent history, how the demand `k` minutes
//! later compared with that minute's level, for every `k` up to a launch time and a little
//! more — kept as histograms, updated as samples arrive, so that the distribution of demand
//! over the next minutes is a lookup, not a search of the history.
//!
//! Each moment is filed by its *state*: how far its newest sample stood from its level (its
//! standing: well below, below, at, above or well above), because what follows a spike is not
//! what follows a quiet minute; and how far the last quarter hour's peak rose above the level
//! (its regime: calm to wild), because bursts come in clusters. A lookup reads the histograms
//! of moments in the same state, widening to the neighbouring standings, then regimes, when
//! those are too few.

use std::collections::VecDeque;

/// Log-ratio histogram: bins of 2 % from e^-4 to e^+4 (a fiftyfold fall or rise); values
/// beyond land in the end bins.
const BINS: usize = 400;
const LO: f64 = -4.0;
const BIN: f64 = 0.02;

/// Standing edges (log of newest sample over level): −26 %, −10 %, +10 %, +35 %.
const STANDING_EDGES: [f64; 4] = [-0.3, -0.1, 0.1, 0.3];
pub const STANDINGS: usize = 5;
/// The standing of a moment at its level.
const AT_LEVEL: usize = 2;

/// Regime edges (log of the quarter hour's peak over the level): +16 %, +49 %, +122 %.
const REGIME_EDGES: [f64; 3] = [0.15, 0.4, 0.8];
pub const REGIMES: usize = 4;
const STATES: usize = STANDINGS * REGIMES;

/// Minutes back the regime's peak is taken over.
pub const PEAK_MINUTES: usize = 15;

/// A lookup wants at least this many moments; fewer, and it widens to neighbouring states.
pub const MIN_MOMENTS: u32 = 30;

/// The state of a moment: its sample `x`, level `b` and the last quarter hour's `peak`.
pub fn state(x: f64, b: f64, peak: f64, delta: f64) -> usize {
    let spread = ((peak.max(x) + delta) / (b + delta)).ln();
    let regime = REGIME_EDGES.iter().take_while(|e| spread > **e).count();
    regime * STANDINGS + standing(x, b, delta)
}

/// States in the order a lookup for `state` reads them: its own; the other standings of its
/// regime, nearest first and towards the level before away from it; then the neighbouring
/// regimes, nearest first, with their standings in the same order.
fn preference(state: usize) -> Vec<usize> {
    let (regime, standing) = (state / STANDINGS, state % STANDINGS);
    let mut standings: Vec<usize> = (0..STANDINGS).collect();
    standings.sort_by_key(|&s| {
        let away = s.abs_diff(standing);
        let towards_level =
            (s as i64 - AT_LEVEL as i64).abs() < (standing as i64 - AT_LEVEL as i64).abs();
        (away, !towards_level)
    });
    let mut regimes: Vec<usize> = (0..REGIMES).collect();
    regimes.sort_by_key(|&r| (r.abs_diff(regime), r < regime));
    regimes
        .into_iter()
        .flat_map(|r| standings.iter().map(move |s| r * STANDINGS + s))
        .collect()
}

/// The standing of a sample `x` against its level `b` (with `delta` keeping zeros finite).
pub fn standing(x: f64, b: f64, delta: f64) -> usize {
    let z = ((x + delta) / (b + delta)).ln();
    STANDING_EDGES.iter().take_while(|e| z > **e).count()
}

fn bin(y: f64) -> usize {
    (((y - LO) / BIN).floor().max(0.0) as usize).min(BINS - 1)
}

#[derive(Debug, Clone, PartialEq)]
struct Moment {
    minute: i64,
    state: usize,
    /// The log-ratio filed for each lead so far (index k − 1).
    ys: Vec<f64>,
    /// Its level and the scale constant it was filed with.
    level: f64,
    delta: f64,
}

/// The histograms of one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct RatioBook {
    /// Leads 1..=ahead.
    ahead: usize,
    /// Moments kept (minutes of history).
    window: usize,
    /// counts[(k − 1) * STATES * BINS + state * BINS + bin]
    counts: Vec<u32>,
    /// Sum of the log-ratios per cell, for the cell's mean.
    sums: Vec<f64>,
    /// Moments per (k − 1, state).
    totals: Vec<u32>,
    moments: VecDeque<Moment>,
}

/// One minute's distribution of demand, as (RPS, weight) cells, highest first.
pub type Distribution = Vec<(f64, f64)>;

impl RatioBook {
    pub fn new(ahead: usize, window: usize) -> Self {
        let ahead = ahead.max(1);
        RatioBook {
            ahead,
            window: window.max(1),
            counts: vec![0; ahead * STATES * BINS],
            sums: vec![0.0; ahead * STATES * BINS],
            totals: vec![0; ahead * STATES],
            moments: VecDeque::new(),
        }
    }

    pub fn ahead(&self) -> usize {
        self.ahead
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Moments filed for lead `k` in every state.
    pub fn moments(&self, k: usize) -> u32 {
        (0..STATES).map(|s| self.totals[(k - 1) * STATES + s]).sum()
    }

    fn cell(&self, k: usize, state: usize, bin: usize) -> usize {
        ((k - 1) * STATES + state) * BINS + bin
    }

    /// A new moment `minute` (sample `x`, level `b`, the last quarter hour's `peak`) to be
    /// filed as its future arrives.
    pub fn open(&mut self, minute: i64, x: f64, b: f64, peak: f64, delta: f64) {
        self.moments.push_back(Moment {
            minute,
            state: state(x, b, peak, delta),
            ys: Vec::with_capacity(self.ahead),
            level: b,
            delta,
        });
    }

    /// The sample of `minute` arrived: file it as lead `k` of every moment `k` minutes before
    /// it whose future so far is whole (a gap closes a moment's future for good). Moments
    /// older than the window leave the book.
    pub fn arrive(&mut self, minute: i64, value: f64) {
        let ahead = self.ahead;
        let mut filed: Vec<(usize, usize, f64)> = Vec::new();
        for (i, m) in self.moments.iter().enumerate().rev() {
            if minute <= m.minute {
                continue;
            }
            let k = (minute - m.minute) as usize;
            if k > ahead {
                break;
            }
            if m.ys.len() + 1 == k {
                filed.push((i, k, ((value + m.delta) / (m.level + m.delta)).ln()));
            }
        }
        for (i, k, y) in filed {
            let st = self.moments[i].state;
            self.moments[i].ys.push(y);
            let c = self.cell(k, st, bin(y));
            self.counts[c] += 1;
            self.sums[c] += y;
            self.totals[(k - 1) * STATES + st] += 1;
        }
        while self
            .moments
            .front()
            .is_some_and(|m| m.minute < minute - self.window as i64)
        {
            if let Some(m) = self.moments.pop_front() {
                for (j, &y) in m.ys.iter().enumerate() {
                    let k = j + 1;
                    let c = self.cell(k, m.state, bin(y));
                    self.counts[c] -= 1;
                    self.sums[c] = if self.counts[c] == 0 {
                        0.0
                    } else {
                        self.sums[c] - y
                    };
                    self.totals[(k - 1) * STATES + m.state] -= 1;
                }
            }
        }
    }

    /// The distribution of demand `k` minutes after a moment in `state`, replayed from
    /// `level`: (RPS, weight) cells, highest first. Reads the moments of the same state,
    /// widening (`preference`) until there are `MIN_MOMENTS`.
    pub fn distribution(&self, k: usize, state: usize, level: f64, delta: f64) -> Distribution {
        self.lookup(k, state, level, delta).0
    }

    /// `distribution`, and whether the moments read were all of `state`'s regime (false: the
    /// history holds too few moments like now, and the lookup borrowed from other regimes).
    pub fn lookup(&self, k: usize, state: usize, level: f64, delta: f64) -> (Distribution, bool) {
        let mut take = Vec::new();
        let mut total = 0u32;
        for s in preference(state) {
            if total >= MIN_MOMENTS {
                break;
            }
            let n = self.totals[(k - 1) * STATES + s];
            if n > 0 {
                take.push(s);
                total += n;
            }
        }
        let mut out = Vec::new();
        for b in (0..BINS).rev() {
            let mut count = 0u32;
            let mut sum = 0.0;
            for &s in &take {
                let c = self.cell(k, s, b);
                count += self.counts[c];
                sum += self.sums[c];
            }
            if count > 0 {
                let y = sum / f64::from(count);
                out.push((
                    ((level + delta) * y.exp() - delta).max(0.0),
                    f64::from(count),
                ));
            }
        }
        let own_regime = take.iter().all(|s| s / STANDINGS == state / STANDINGS);
        (out, own_regime && total >= MIN_MOMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_each_moment_at_every_lead_and_forgets_it_after_the_window() {
        let mut book = RatioBook::new(3, 10);
        // Level 100 throughout; minute 5 is a spike (standing "well above").
        for m in 0..20i64 {
            let x = if m == 5 { 300.0 } else { 100.0 };
            book.arrive(m, x);
            book.open(m, x, 100.0, x, 1.0);
        }
        assert_eq!(
            book.moments(1),
            10 + 1 - 1,
            "moments within the window, with a next minute"
        );
        // Moments standing at their level: three leads later, the spike shows once (if it is
        // still in the window: it is not).
        let d = book.distribution(3, state(100.0, 100.0, 100.0, 1.0), 100.0, 1.0);
        assert!(d.iter().all(|(v, _)| (*v - 100.0).abs() < 2.0), "{d:?}");
        let n: f64 = d.iter().map(|(_, w)| w).sum();
        assert!(n >= 7.0, "{n}");
    }

    #[test]
    fn what_follows_a_spike_is_learned_apart_from_what_follows_quiet() {
        let mut book = RatioBook::new(2, 10_000);
        let mut m = 0i64;
        // Many spikes of one minute, always followed by the level.
        for _ in 0..50 {
            for x in [100.0, 100.0, 100.0, 400.0] {
                book.arrive(m, x);
                book.open(m, x, 100.0, x, 1.0);
                m += 1;
            }
        }
        let after_spike = book.distribution(1, state(400.0, 100.0, 400.0, 1.0), 100.0, 1.0);
        assert!(
            after_spike.iter().all(|(v, _)| *v < 110.0),
            "{after_spike:?}"
        );
        let after_quiet = book.distribution(1, state(100.0, 100.0, 100.0, 1.0), 100.0, 1.0);
        assert!(
            after_quiet.iter().any(|(v, _)| *v > 390.0),
            "{after_quiet:?}"
        );
    }
}
