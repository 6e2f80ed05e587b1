//! The traffic model (DESIGN §8): a trace is a *rate shape*. A per-second trace is smoothed
//! into a rate (60 s centred mean) so that scaling it does not scale its Poisson noise; a
//! coarser trace's rate is held over its step. The rate is scaled to the target, and
//! per-second arrivals are drawn from it (Poisson, seeded).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

use super::trace::Trace;

/// How to scale a trace's rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Factor(f64),
    /// Scale so that the mean rate is this many RPS.
    Mean(f64),
}

/// A per-second rate, ready to draw arrivals from.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    pub per_second: Vec<f64>,
}

impl Rate {
    /// The rate shape of `trace`, scaled, and rotated to start `offset_s` into the trace
    /// (wrapping around), so several pools can replay one trace out of phase.
    pub fn from_trace(trace: &Trace, scale: Scale, offset_s: u64) -> Rate {
        let raw = shape(trace);
        let mean = if raw.is_empty() {
            0.0
        } else {
            raw.iter().sum::<f64>() / raw.len() as f64
        };
        let k = match scale {
            Scale::Factor(k) => k,
            Scale::Mean(m) if mean > 0.0 => m / mean,
            Scale::Mean(_) => 0.0,
        };
        let n = raw.len();
        let off = if n == 0 {
            0
        } else {
            (offset_s % n as u64) as usize
        };
        let per_second = (0..n).map(|i| raw[(i + off) % n] * k).collect();
        Rate { per_second }
    }

    pub fn len(&self) -> usize {
        self.per_second.len()
    }

    pub fn is_empty(&self) -> bool {
        self.per_second.is_empty()
    }

    pub fn at(&self, t: usize) -> f64 {
        self.per_second.get(t).copied().unwrap_or(0.0)
    }

    pub fn peak(&self) -> f64 {
        self.per_second.iter().copied().fold(0.0, f64::max)
    }

    pub fn mean(&self) -> f64 {
        if self.per_second.is_empty() {
            0.0
        } else {
            self.per_second.iter().sum::<f64>() / self.per_second.len() as f64
        }
    }

    /// Per-second arrivals at exactly the rate, carrying fractions to the next second.
    pub fn exact_arrivals(&self) -> Vec<u32> {
        let mut carry = 0.0;
        self.per_second
            .iter()
            .map(|&r| {
                carry += r.max(0.0);
                let n = (carry + 1e-9).floor();
                carry -= n;
                n.min(f64::from(u32::MAX)) as u32
            })
            .collect()
    }

    /// Per-second arrivals drawn from the rate (Poisson), reproducible from `seed`.
    pub fn arrivals(&self, seed: u64) -> Vec<u32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.per_second
            .iter()
            .map(|&lambda| {
                if lambda <= 0.0 {
                    0
                } else {
                    match Poisson::new(lambda) {
                        Ok(p) => {
                            let x: f64 = p.sample(&mut rng);
                            x.min(f64::from(u32::MAX)) as u32
                        }
                        Err(_) => lambda.round() as u32,
                    }
                }
            })
            .collect()
    }
}

/// The unscaled per-second rate of a trace.
fn shape(trace: &Trace) -> Vec<f64> {
    if trace.step_s <= 1 {
        smooth(&trace.rates, 60)
    } else {
        let step = trace.step_s as usize;
        let mut out = Vec::with_capacity(trace.rates.len() * step);
        for &r in &trace.rates {
            out.extend(std::iter::repeat_n(r, step));
        }
        out
    }
}

/// Centred moving mean over `width` seconds (clipped at the ends), by prefix sums.
fn smooth(x: &[f64], width: usize) -> Vec<f64> {
    let n = x.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0);
    for v in x {
        prefix.push(prefix[prefix.len() - 1] + v);
    }
    let half = width / 2;
    (0..n)
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + width - half).min(n);
            (prefix[hi] - prefix[lo]) / (hi - lo) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_traces_are_held_and_scaled_to_a_mean() {
        let t = Trace {
            name: "t".into(),
            step_s: 60,
            rates: vec![1.0, 3.0],
        };
        let r = Rate::from_trace(&t, Scale::Mean(20.0), 0);
        assert_eq!(r.len(), 120);
        assert_eq!(
            (r.at(0), r.at(59), r.at(60), r.at(119)),
            (10.0, 10.0, 30.0, 30.0)
        );
        let rotated = Rate::from_trace(&t, Scale::Factor(1.0), 60);
        assert_eq!((rotated.at(0), rotated.at(60)), (3.0, 1.0));
    }

    #[test]
    fn per_second_traces_are_smoothed_before_scaling() {
        // Alternating 0/2 counts are noise around a rate of 1.
        let t = Trace {
            name: "t".into(),
            step_s: 1,
            rates: (0..600)
                .map(|i| if i % 2 == 0 { 0.0 } else { 2.0 })
                .collect(),
        };
        let r = Rate::from_trace(&t, Scale::Factor(75.0), 0);
        for i in 30..570 {
            assert!((r.at(i) - 75.0).abs() < 1e-9, "{i}: {}", r.at(i));
        }
    }

    #[test]
    fn arrivals_are_seeded_and_follow_the_rate() {
        let r = Rate {
            per_second: vec![50.0; 10_000],
        };
        let a = r.arrivals(7);
        assert_eq!(a, r.arrivals(7));
        assert_ne!(a, r.arrivals(8));
        let mean = a.iter().map(|&x| f64::from(x)).sum::<f64>() / a.len() as f64;
        assert!((mean - 50.0).abs() < 0.5, "{mean}");
        let var = a
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        assert!(
            (var - 50.0).abs() < 5.0,
            "Poisson variance ≈ mean, got {var}"
        );
    }
}
