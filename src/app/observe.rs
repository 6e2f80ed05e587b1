//! Observing a pool: one set of reads per cycle (RPS samples, the instances, the group, the
//! seasonal references, the model load time), from which every policy for the pool — the
//! live one and a shadow — builds its own `Observation`.

use std::sync::Arc;
use std::time::Duration;

use crate::core::capacity;
use crate::core::decide::SeasonalRef;
use crate::core::policy::{Bounds, ForecastMode, PoolPolicy};
use crate::core::sizing;
use crate::core::{AsgState, InstanceState, Observation, Sample};
use crate::ports::{PoolInventory, PortError};

use super::reconciler::{PoolError, Reconciler};

/// What one cycle read for one pool: the raw material every policy for the pool decides
/// from, so the live and the shadow policy see the same world from one set of reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolReads {
    pub at_ms: i64,
    /// RPS samples over the longest lookback any of the policies needs, oldest first, the
    /// implausible ones removed (`implausible_samples` says how many).
    pub samples: Vec<Sample>,
    pub implausible_samples: u32,
    /// Instance items the inventory could not read (counted as launching, never as idle).
    pub skipped_items: u32,
    /// The instances, shared by every observation made from these reads.
    pub instances: Arc<[crate::core::InstanceRecord]>,
    pub asg: AsgState,
    /// Per seasonal lag that could be read: the samples around that moment and over the
    /// longest horizon after it.
    pub seasonal: Vec<(i64, Vec<Sample>)>,
    pub learned_launch: Option<Duration>,
    /// The instances the group holds in service or pending, when the backend lists them and
    /// an instance is draining (the only case it is needed).
    pub members: Option<Arc<[Arc<str>]>>,
}

const SEASONAL_LAGS_MS: [i64; 2] = [86_400_000, 7 * 86_400_000];

/// How often the `model_load_time` metric is read (it changes with model releases, not
/// minutes; one Query per pool every 15 minutes costs nothing worth counting).
pub const MODEL_LOAD_REFRESH_MS: i64 = 15 * 60_000;

/// Routers write one RPS sample a minute: the metrics table is read for a pool only once the
/// next sample is due (`SampleCache`), so once per sample, not once per cycle.
pub const SAMPLE_PERIOD_MS: i64 = 60_000;

/// RPS per instance beyond which a sample is not believed, as a multiple of the pool's
/// saturation rate at its largest size: demand can exceed capacity, but not by a thousandfold
/// (a sample of 1e30 is a broken writer, and would scale to the maximum).
const IMPLAUSIBLE_LOAD_FACTOR: f64 = 1000.0;

/// The highest RPS `policy`'s pool could plausibly see.
pub fn plausible_rps(policy: &PoolPolicy) -> f64 {
    let largest = policy
        .regions
        .values()
        .map(|r| r.max)
        .max()
        .unwrap_or(policy.max)
        .max(1);
    f64::from(largest)
        * policy.scale_up.confirm_unless.max(policy.band.high)
        * IMPLAUSIBLE_LOAD_FACTOR
}

/// How far back `policy` looks at RPS samples.
pub(crate) fn lookback(policy: &PoolPolicy) -> Duration {
    let mut lookback = policy.metrics.stale_after + policy.metrics.window + Duration::from_secs(60);
    if policy.forecast.mode != ForecastMode::Off {
        lookback = lookback.max(policy.forecast.trend_window + Duration::from_secs(60));
    }
    lookback
}

/// (window before, span after) of `policy`'s seasonal references, in ms; None when it does
/// not forecast seasonally.
fn seasonal_span(policy: &PoolPolicy, learned_launch: Option<Duration>) -> Option<(i64, i64)> {
    (policy.forecast.mode == ForecastMode::Seasonal).then(|| {
        let horizon = policy
            .forecast
            .horizon
            .or(learned_launch)
            .unwrap_or(policy.instances.launch_time);
        (
            policy.metrics.window.as_millis() as i64,
            horizon.as_millis() as i64 + 60_000,
        )
    })
}

impl PoolReads {
    /// The observation `policy` decides from: its own lookback, capacity counting (heartbeat
    /// and launch timeouts) and seasonal window, all from the same reads. `bounds` are the
    /// bounds in force when the caller computed them.
    pub fn observation(&self, policy: &PoolPolicy, bounds: Option<Bounds>) -> Observation {
        let from = self.at_ms - lookback(policy).as_millis() as i64;
        let samples = self
            .samples
            .iter()
            .filter(|s| s.at_ms > from)
            .copied()
            .collect();
        let members = self.members.clone();
        let in_group = |i: &crate::core::InstanceRecord| {
            members.as_ref().is_none_or(|m| m.contains(&i.instance_id))
        };
        // A draining instance the group no longer holds is gone, whatever its item says
        // (terminated, its item not yet marked): counting it as held would launch a
        // replacement.
        let counted = capacity::count(
            self.instances
                .iter()
                .filter(|i| i.state != InstanceState::Draining || in_group(i)),
            &policy.instances,
            self.at_ms,
            self.skipped_items,
        );
        Observation {
            samples,
            capacity: capacity::within_group(counted, self.asg.desired),
            asg: self.asg.clone(),
            seasonal: self.seasonal_refs(policy),
            learned_launch: self.learned_launch,
            instances: self.instances.clone(),
            members: self.members.clone(),
            bounds,
            growth: None,
        }
    }

    fn seasonal_refs(&self, policy: &PoolPolicy) -> Vec<SeasonalRef> {
        let Some((window, ahead)) = seasonal_span(policy, self.learned_launch) else {
            return Vec::new();
        };
        self.seasonal
            .iter()
            .map(|(lag, samples)| {
                let then = self.at_ms - lag;
                let before: Vec<f64> = samples
                    .iter()
                    .filter(|s| s.at_ms > then - window && s.at_ms <= then)
                    .map(|s| s.rps)
                    .collect();
                let peak = samples
                    .iter()
                    .filter(|s| s.at_ms > then && s.at_ms <= then + ahead)
                    .map(|s| s.rps)
                    .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
                SeasonalRef {
                    lag_ms: *lag,
                    then: (!before.is_empty())
                        .then(|| before.iter().sum::<f64>() / before.len() as f64),
                    then_ahead: peak,
                }
            })
            .collect()
    }
}

/// The samples read so far for a pool: the newest few minutes (what band policies look back
/// at), and how far back the reads reach. Samples arrive once a minute, so the table is read
/// only when the next one is due, and then only for what is new.
#[derive(Debug, Default)]
pub(crate) struct SampleCache {
    recent: std::collections::VecDeque<Sample>,
    /// The newest sample's time, and how far back the reads have covered.
    newest_ms: Option<i64>,
    covered_from_ms: Option<i64>,
}

impl SampleCache {
    /// The oldest sample the pool needs: the decision's lookback, or the SLO history's
    /// retention when longer.
    fn wanted_from(now_ms: i64, lookback: Duration, retention_minutes: usize) -> i64 {
        now_ms
            .saturating_sub(lookback.as_millis() as i64)
            .min(now_ms.saturating_sub(retention_minutes as i64 * 60_000))
    }

    /// Where to read from, and whether a read is due at all: a new sample is expected a
    /// minute after the newest one; until then nothing new can be in the table.
    fn next_read(&self, now_ms: i64, lookback: Duration, retention_minutes: usize) -> (i64, bool) {
        let wanted_from = Self::wanted_from(now_ms, lookback, retention_minutes);
        match (self.newest_ms, self.covered_from_ms) {
            (Some(newest), Some(covered)) if covered <= wanted_from => {
                (newest, now_ms >= newest.saturating_add(SAMPLE_PERIOD_MS))
            }
            _ => (wanted_from, true),
        }
    }
}

impl Reconciler {
    /// Read everything `policy` (and `also`, the shadow policy of the same pool) needs, once:
    /// RPS samples over the longer lookback, the pool's instances, the ASG, and the seasonal
    /// references over the wider window when either forecasts seasonally.
    pub async fn observe_pool(
        &mut self,
        policy: &PoolPolicy,
        also: Option<&PoolPolicy>,
        now_ms: i64,
    ) -> Result<PoolReads, PoolError> {
        let region = self.settings().region.clone();
        let Some(regional) = policy.region(&region) else {
            return Err(PoolError::Asg(PortError::Permanent(format!(
                "pool {} has no policy for region {region}",
                policy.pool
            ))));
        };
        let lookback = also.map_or(lookback(policy), |a| lookback(policy).max(lookback(a)));
        // SLO sizing learns from days of history: read them once, then only what is new.
        let retention = [Some(policy), also]
            .into_iter()
            .flatten()
            .filter_map(|p| p.slo.as_ref())
            .map(sizing::retention_minutes)
            .max()
            .unwrap_or(0);
        let cache = &self.pool_state(&policy.pool).samples;
        let (from, due) = cache.next_read(now_ms, lookback, retention);
        let b = self.backends().clone();
        let read = async {
            if due {
                b.metrics
                    .rps_samples(&policy.pool, &region, from, now_ms)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        };
        let (fresh, inventory, asg) = tokio::join!(
            read,
            b.inventory.pool_instances(&policy.pool, &region),
            b.actuator.describe(&regional.asg),
        );
        let fresh = fresh.map_err(PoolError::Metrics)?;
        let inventory = inventory.map_err(PoolError::Inventory)?;
        let asg = asg.map_err(PoolError::Asg)?;
        let limit = plausible_rps(policy);
        let fresh = fresh.unwrap_or_default();
        let total = fresh.len();
        let fresh: Vec<Sample> = fresh
            .into_iter()
            .filter(|s| s.rps.is_finite() && s.rps >= 0.0 && s.rps <= limit)
            .collect();
        let implausible_samples = (total - fresh.len()) as u32;
        let samples = self.remember_samples(policy, also, &fresh, now_ms, lookback, retention, due);
        if implausible_samples > 0 {
            self.metrics()
                .bad_items
                .with_label_values(&["metrics", "implausible"])
                .inc_by(u64::from(implausible_samples));
            tracing::warn!(
                pool = %policy.pool,
                region = %region,
                skipped = implausible_samples,
                limit_rps = limit,
                "ignoring RPS samples no pool of this size could see (negative, not finite, or \
                 above the pool's saturation at its maximum a thousandfold)"
            );
        }
        let learned_launch = self.learn_launch_time(policy, &inventory, now_ms).await;
        let spans = [Some(policy), also]
            .into_iter()
            .flatten()
            .filter_map(|p| seasonal_span(p, learned_launch))
            .reduce(|(w1, a1), (w2, a2)| (w1.max(w2), a1.max(a2)));
        let seasonal = match spans {
            Some((window, ahead)) => {
                self.seasonal(&policy.pool, &region, now_ms, window, ahead)
                    .await
            }
            None => Vec::new(),
        };
        // Membership only matters for draining instances; most cycles have none.
        let members = inventory
            .instances
            .iter()
            .any(|i| i.state == InstanceState::Draining)
            .then(|| b.actuator.members(&regional.asg))
            .flatten()
            .map(Arc::from);
        let skipped_items = inventory.skipped;
        let instances: Arc<[crate::core::InstanceRecord]> = inventory.instances.into();
        Ok(PoolReads {
            at_ms: now_ms,
            samples,
            implausible_samples,
            skipped_items,
            instances,
            asg,
            seasonal,
            learned_launch,
            members,
        })
    }

    /// The launch time to forecast with: launches seen in the instances table first; until
    /// there are enough, the model load time alone says the configured launch time is too
    /// short when it is longer.
    async fn learn_launch_time(
        &mut self,
        policy: &PoolPolicy,
        inventory: &PoolInventory,
        now_ms: i64,
    ) -> Option<Duration> {
        let region = self.settings().region.clone();
        let due = self
            .pool_state(&policy.pool)
            .model_load
            .is_none_or(|(at, _)| now_ms - at >= MODEL_LOAD_REFRESH_MS);
        if due {
            let p90 = self.model_load_p90(&policy.pool, &region, now_ms).await;
            self.pool_state(&policy.pool).model_load = Some((now_ms, p90));
        }
        let st = self.pool_state(&policy.pool);
        st.launch_times.observe(&inventory.instances);
        let model_load = st.model_load.and_then(|(_, p)| p);
        let learned = st
            .launch_times
            .p90()
            .or_else(|| model_load.filter(|l| *l > policy.instances.launch_time));
        if let Some(l) = learned {
            self.metrics()
                .launch_time_p90
                .with_label_values(&[&policy.pool])
                .set(l.as_secs_f64());
        }
        learned
    }

    /// Fold newly read samples into the pool's cache and, for SLO policies, their demand
    /// histories; the samples the band looks back at.
    #[allow(clippy::too_many_arguments)]
    fn remember_samples(
        &mut self,
        policy: &PoolPolicy,
        also: Option<&PoolPolicy>,
        fresh: &[Sample],
        now_ms: i64,
        lookback: Duration,
        retention: usize,
        read: bool,
    ) -> Vec<Sample> {
        let st = self.pool_state(&policy.pool);
        let c = &mut st.samples;
        if read {
            let from = SampleCache::wanted_from(now_ms, lookback, retention);
            if c.covered_from_ms.is_none_or(|f| f > from) {
                c.covered_from_ms = Some(from);
            }
        }
        for s in fresh {
            if c.newest_ms.is_none_or(|n| s.at_ms > n) {
                c.newest_ms = Some(s.at_ms);
                c.recent.push_back(*s);
            }
        }
        let keep_from = now_ms.saturating_sub(lookback.as_millis() as i64);
        while c.recent.front().is_some_and(|s| s.at_ms <= keep_from) {
            c.recent.pop_front();
        }
        let recent: Vec<Sample> = c.recent.iter().copied().collect();
        st.feed_demand(policy, fresh);
        if let Some(a) = also {
            self.shadow_state(&a.pool).feed_demand(a, fresh);
        }
        recent
    }

    /// The p90 of the seed's `model_load_time` metric (seconds) over the last day, when it
    /// has at least `LaunchTimes::MIN_SAMPLES` samples. A failed read only loses the hint.
    async fn model_load_p90(&self, pool: &str, region: &str, now_ms: i64) -> Option<Duration> {
        let samples = match self
            .backends()
            .metrics
            .samples("model_load_time", pool, region, now_ms - 86_400_000, now_ms)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(pool, region, error = %e, "reading model_load_time failed");
                return None;
            }
        };
        if samples.len() < capacity::LaunchTimes::MIN_SAMPLES {
            return None;
        }
        // Seconds as the metric stores them; a day is the most a load time can be believed.
        let p90 = capacity::p90_ms(
            samples
                .iter()
                .filter(|s| s.rps.is_finite())
                .map(|s| (s.rps.clamp(0.0, 86_400.0) * 1000.0) as i64)
                .collect(),
        )?;
        self.metrics()
            .model_load_time_p90
            .with_label_values(&[pool])
            .set(p90.as_secs_f64());
        Some(p90)
    }

    /// Traffic one day and one week ago: the samples from `window` before each moment to
    /// `ahead` after it. A failed read only loses the seasonal part of the forecast.
    async fn seasonal(
        &self,
        pool: &str,
        region: &str,
        now_ms: i64,
        window: i64,
        ahead: i64,
    ) -> Vec<(i64, Vec<Sample>)> {
        let mut out = Vec::new();
        for lag in SEASONAL_LAGS_MS {
            let then = now_ms - lag;
            if let Ok(samples) = self
                .backends()
                .metrics
                .rps_samples(pool, region, then - window, then + ahead)
                .await
            {
                out.push((lag, samples));
            }
        }
        out
    }
}
