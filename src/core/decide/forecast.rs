//! The forecast floor: RPS predicted one horizon ahead, from the recent trend and (seasonal
//! mode) from how traffic moved over the same stretch a day and a week earlier. Only ever a
//! floor for scaling up.

use super::{Observation, Sample};
use crate::core::policy::{ForecastMode, PoolPolicy};
use std::time::Duration;

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
