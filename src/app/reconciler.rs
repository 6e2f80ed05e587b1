//! The reconciler: per pool, observe → decide → act → record.
//!
//! Leadership gates acting and recording only; observing and deciding happen on every replica
//! so a new leader acts at once with a warm history. One pool's failure never stops the others;
//! a failing pool backs off (transient errors quickly, permanent ones slowly).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::core::capacity;
use crate::core::decide::SeasonalRef;
use crate::core::policy::ForecastMode;
use crate::core::{
    Action, Decision, DecisionRecord, Observation, Outcome, PolicySet, PoolHistory, PoolPolicy,
    ReasonCode, RecordContext, decide,
};
use crate::ports::{
    Actuator, DecisionLog, Fence, GaugeSink, Inventory, MetricsSource, PoolGauges, PortError,
};

use super::metrics::Metrics;

/// The backends a reconciler talks to.
#[derive(Clone)]
pub struct Backends {
    pub metrics: Arc<dyn MetricsSource>,
    pub inventory: Arc<dyn Inventory>,
    pub actuator: Arc<dyn Actuator>,
    pub log: Arc<dyn DecisionLog>,
    pub gauges: Option<Arc<dyn GaugeSink>>,
}

impl Backends {
    /// Every port on one in-memory region (tests, the embedded run, the simulator).
    pub fn in_memory(region: &crate::adapters::memory::MemoryRegion) -> Self {
        Backends {
            metrics: Arc::new(region.clone()),
            inventory: Arc::new(region.clone()),
            actuator: Arc::new(region.clone()),
            log: Arc::new(region.clone()),
            gauges: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub region: String,
    pub controller_id: String,
    pub dry_run: bool,
    /// Record an unchanged `none` decision at least this often (changes are always recorded).
    pub record_heartbeat: Duration,
}

/// This replica's leadership, as the reconciler needs it for one cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub fence: Option<Fence>,
    pub epoch: u64,
    /// Whether the lease has enough time left to act on an ASG.
    pub can_act: bool,
    pub is_leader: bool,
}

impl Leadership {
    /// Sole controller (embedded region, simulator): always leader, no fence.
    pub fn sole() -> Self {
        Leadership {
            fence: None,
            epoch: 0,
            can_act: true,
            is_leader: true,
        }
    }

    pub fn follower() -> Self {
        Leadership {
            fence: None,
            epoch: 0,
            can_act: false,
            is_leader: false,
        }
    }
}

/// Why one pool's cycle failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("reading metrics: {0}")]
    Metrics(PortError),
    #[error("reading instances: {0}")]
    Inventory(PortError),
    #[error("describing the ASG: {0}")]
    Asg(PortError),
    #[error("recording the decision: {0}")]
    Record(PortError),
}

impl PoolError {
    pub fn port(&self) -> &PortError {
        match self {
            PoolError::Metrics(e)
            | PoolError::Inventory(e)
            | PoolError::Asg(e)
            | PoolError::Record(e) => e,
        }
    }

    /// Bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PoolError::Metrics(_) => "metrics",
            PoolError::Inventory(_) => "inventory",
            PoolError::Asg(_) => "asg",
            PoolError::Record(_) => "record",
        }
    }
}

/// What one pool's cycle produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolReport {
    pub pool: String,
    pub decision: Decision,
    pub outcome: Outcome,
    pub recorded: bool,
}

/// Everything one cycle did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleReport {
    pub at_ms: i64,
    pub pools: Vec<PoolReport>,
    pub errors: Vec<(String, PoolError)>,
    /// Pools skipped because they are backing off after errors.
    pub backing_off: Vec<String>,
    /// A fenced append failed: this replica is no longer leader.
    pub lost_leadership: bool,
}

#[derive(Debug, Default)]
struct PoolState {
    history: PoolHistory,
    launch_times: capacity::LaunchTimes,
    last_recorded: Option<(ReasonCode, Action, u32, i64)>,
    failures: u32,
    next_try_ms: i64,
}

pub struct Reconciler {
    backends: Backends,
    settings: Settings,
    metrics: Metrics,
    /// Per pool (live) and per `<pool>#shadow` (the shadow policy's own history).
    pools: HashMap<String, PoolState>,
    /// A candidate policy set evaluated beside the live one, never acted on.
    shadow: Option<PolicySet>,
}

const BACKOFF_BASE_MS: i64 = 1_000;
const BACKOFF_MAX_TRANSIENT_MS: i64 = 60_000;
const BACKOFF_PERMANENT_MS: i64 = 300_000;

impl Reconciler {
    pub fn new(backends: Backends, settings: Settings, metrics: Metrics) -> Self {
        Reconciler {
            backends,
            settings,
            metrics,
            pools: HashMap::new(),
            shadow: None,
        }
    }

    /// Evaluate `shadow` beside the live policies every cycle, on the same observation,
    /// recording what it would have done as dry-run records (slot 1, its own policy hash).
    pub fn set_shadow(&mut self, shadow: Option<PolicySet>) {
        self.shadow = shadow;
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Seed a pool's stabilization history from recorded decisions (e.g. after a failover).
    pub async fn warm_history(&mut self, policies: &PolicySet, now_ms: i64) {
        for p in policies.pools.values() {
            let since = now_ms - p.scale_down.stabilization.as_millis() as i64;
            if let Ok(recs) = self
                .backends
                .log
                .history(&p.pool, Some(&self.settings.region), since, 1_000)
                .await
            {
                let st = self.pools.entry(p.pool.clone()).or_default();
                for r in recs.iter().rev().filter(|r| !r.dry_run) {
                    st.history.seed(r.at_ms(), r.recommendation);
                }
            }
        }
    }

    /// One cycle over every pool that has a policy for this region.
    pub async fn reconcile_all(
        &mut self,
        policies: &PolicySet,
        now_ms: i64,
        leadership: &Leadership,
    ) -> CycleReport {
        let mut report = CycleReport {
            at_ms: now_ms,
            ..CycleReport::default()
        };
        for policy in policies.pools.values() {
            if policy.region(&self.settings.region).is_none() {
                continue;
            }
            let st = self.pools.entry(policy.pool.clone()).or_default();
            if st.next_try_ms > now_ms {
                report.backing_off.push(policy.pool.clone());
                continue;
            }
            match self
                .reconcile_pool(policy, &policies.hash, now_ms, leadership)
                .await
            {
                Ok(r) => report.pools.push(r),
                Err(e) => {
                    if matches!(&e, PoolError::Record(PortError::Conflict(_))) {
                        report.lost_leadership = true;
                    }
                    report.errors.push((policy.pool.clone(), e));
                }
            }
        }
        report
    }

    /// observe → decide → act → record for one pool.
    pub async fn reconcile_pool(
        &mut self,
        policy: &PoolPolicy,
        policy_hash: &str,
        now_ms: i64,
        leadership: &Leadership,
    ) -> Result<PoolReport, PoolError> {
        let result = self.cycle(policy, policy_hash, now_ms, leadership).await;
        let region = self.settings.region.clone();
        let st = self.pools.entry(policy.pool.clone()).or_default();
        match &result {
            Ok(_) => {
                st.failures = 0;
                st.next_try_ms = 0;
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let wait = if e.port().is_transient() {
                    (BACKOFF_BASE_MS << st.failures.min(10).saturating_sub(1))
                        .min(BACKOFF_MAX_TRANSIENT_MS)
                } else {
                    BACKOFF_PERMANENT_MS
                };
                st.next_try_ms = now_ms + wait;
                self.metrics
                    .reconcile_errors
                    .with_label_values(&[&policy.pool, &region, e.metric_label()])
                    .inc();
                tracing::warn!(
                    pool = %policy.pool,
                    region = %region,
                    error = %e,
                    retry_in_ms = wait,
                    "reconcile failed; backing off"
                );
            }
        }
        result
    }

    async fn cycle(
        &mut self,
        policy: &PoolPolicy,
        policy_hash: &str,
        now_ms: i64,
        leadership: &Leadership,
    ) -> Result<PoolReport, PoolError> {
        let region = self.settings.region.clone();
        let Some(regional) = policy.region(&region) else {
            return Err(PoolError::Asg(PortError::Permanent(format!(
                "pool {} has no policy for region {region}",
                policy.pool
            ))));
        };
        // Observe (all three reads at once).
        let mut lookback =
            policy.metrics.stale_after + policy.metrics.window + Duration::from_secs(60);
        if policy.forecast.mode != ForecastMode::Off {
            lookback = lookback.max(policy.forecast.trend_window + Duration::from_secs(60));
        }
        let from = now_ms - lookback.as_millis() as i64;
        let (samples, inventory, asg) = tokio::join!(
            self.backends
                .metrics
                .rps_samples(&policy.pool, &region, from, now_ms),
            self.backends
                .inventory
                .pool_instances(&policy.pool, &region),
            self.backends.actuator.describe(&regional.asg),
        );
        let samples = samples.map_err(PoolError::Metrics)?;
        let inventory = inventory.map_err(PoolError::Inventory)?;
        let asg = asg.map_err(PoolError::Asg)?;
        let capacity = capacity::count(
            &inventory.instances,
            &policy.instances,
            now_ms,
            inventory.skipped,
        );
        let st = self.pools.entry(policy.pool.clone()).or_default();
        st.launch_times.observe(&inventory.instances);
        let learned_launch = st.launch_times.p90();
        let seasonal = if policy.forecast.mode == ForecastMode::Seasonal {
            let horizon = policy
                .forecast
                .horizon
                .or(learned_launch)
                .unwrap_or(policy.instances.launch_time);
            self.seasonal(policy, &region, now_ms, horizon).await
        } else {
            Vec::new()
        };
        if let Some(l) = learned_launch {
            self.metrics
                .launch_time_p90
                .with_label_values(&[&policy.pool, &region])
                .set(l.as_secs_f64());
        }
        let obs = Observation {
            samples,
            capacity,
            asg,
            seasonal,
            learned_launch,
        };

        // Decide.
        let st = self.pools.entry(policy.pool.clone()).or_default();
        let decision = decide(policy, &region, &obs, &st.history, now_ms);

        // Act (leader only, and only with margin on the lease).
        let outcome = if decision.action == Action::None {
            Outcome::Skipped("no change".into())
        } else if !leadership.is_leader {
            Outcome::Skipped("not leader".into())
        } else if self.settings.dry_run {
            Outcome::Skipped("dry-run".into())
        } else if !leadership.can_act {
            Outcome::Skipped("lease margin too small to act".into())
        } else {
            match self
                .backends
                .actuator
                .set_desired(&regional.asg, decision.asg_desired)
                .await
            {
                Ok(()) => Outcome::Applied,
                Err(e) => Outcome::Failed(e.to_string()),
            }
        };
        let applied = outcome == Outcome::Applied;
        let st = self.pools.entry(policy.pool.clone()).or_default();
        st.history.record(
            &decision,
            applied,
            policy.scale_down.stabilization.max(Duration::from_secs(60)),
        );

        // Record (leader only): changes always, an unchanged `none` at the heartbeat interval.
        let recorded = self
            .record_if_due(
                &policy.pool,
                &policy.pool,
                &decision,
                &outcome,
                policy_hash,
                self.settings.dry_run,
                0,
                leadership,
            )
            .await?;

        // The shadow policy: same observation, its own history, recorded, never acted on.
        let shadow = self
            .shadow
            .as_ref()
            .and_then(|s| s.pool(&policy.pool).map(|p| (p.clone(), s.hash.clone())));
        if let Some((sp, shadow_hash)) = shadow
            && sp.region(&region).is_some()
        {
            let key = format!("{}#shadow", policy.pool);
            let st = self.pools.entry(key.clone()).or_default();
            let sd = decide(&sp, &region, &obs, &st.history, now_ms);
            st.history.record(
                &sd,
                false,
                sp.scale_down.stabilization.max(Duration::from_secs(60)),
            );
            self.metrics
                .shadow_decisions
                .with_label_values(&[
                    &policy.pool,
                    &region,
                    sd.action.as_str(),
                    sd.reason_code.as_str(),
                ])
                .inc();
            let skipped = Outcome::Skipped("shadow policy".into());
            self.record_if_due(
                &key,
                &policy.pool,
                &sd,
                &skipped,
                &shadow_hash,
                true,
                1,
                leadership,
            )
            .await?;
        }

        self.observe_metrics(&policy.pool, &region, &decision, &outcome);
        if let Some(g) = &self.backends.gauges {
            let gauges = PoolGauges {
                rps: decision.rps,
                serving: decision.serving,
                launching: decision.launching,
                desired: decision.desired,
                utilisation: decision.utilisation,
            };
            if let Err(e) = g.publish(&policy.pool, &region, &gauges).await {
                tracing::warn!(pool = %policy.pool, error = %e, "publishing gauges failed");
            }
        }
        if decision.action != Action::None || recorded {
            tracing::info!(
                pool = %policy.pool,
                region = %region,
                epoch = leadership.epoch,
                reason_code = %decision.reason_code,
                action = %decision.action,
                rps = decision.rps.unwrap_or(f64::NAN),
                serving = decision.serving,
                launching = decision.launching,
                desired = decision.desired,
                asg_desired = decision.asg_desired,
                result = %outcome.to_attr(),
                dry_run = self.settings.dry_run,
                "{}",
                decision.reason
            );
        }
        Ok(PoolReport {
            pool: policy.pool.clone(),
            decision,
            outcome,
            recorded,
        })
    }

    /// Traffic one day and one week ago, around now and over the following horizon. A failed
    /// read only loses the seasonal part of the forecast.
    async fn seasonal(
        &self,
        policy: &PoolPolicy,
        region: &str,
        now_ms: i64,
        horizon: Duration,
    ) -> Vec<SeasonalRef> {
        let window = policy.metrics.window.as_millis() as i64;
        let horizon = horizon.as_millis() as i64 + 60_000;
        let mut out = Vec::new();
        for lag in [86_400_000i64, 7 * 86_400_000] {
            let then = now_ms - lag;
            let Ok(samples) = self
                .backends
                .metrics
                .rps_samples(&policy.pool, region, then - window, then + horizon)
                .await
            else {
                continue;
            };
            let before: Vec<f64> = samples
                .iter()
                .filter(|s| s.at_ms <= then)
                .map(|s| s.rps)
                .collect();
            let ahead = samples
                .iter()
                .filter(|s| s.at_ms > then)
                .map(|s| s.rps)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            out.push(SeasonalRef {
                lag_ms: lag,
                then: (!before.is_empty())
                    .then(|| before.iter().sum::<f64>() / before.len() as f64),
                then_ahead: ahead,
            });
        }
        out
    }

    /// Append `decision` when it is due for the history kept under `state_key`: on any action,
    /// a change of reason/action/desired, or the record heartbeat. Leader only.
    #[allow(clippy::too_many_arguments)]
    async fn record_if_due(
        &mut self,
        state_key: &str,
        pool: &str,
        decision: &Decision,
        outcome: &Outcome,
        policy_hash: &str,
        dry_run: bool,
        slot: u8,
        leadership: &Leadership,
    ) -> Result<bool, PoolError> {
        let region = self.settings.region.clone();
        let key = (decision.reason_code, decision.action, decision.desired);
        let heartbeat_ms = self.settings.record_heartbeat.as_millis() as i64;
        let st = self.pools.entry(state_key.to_string()).or_default();
        let due = match st.last_recorded {
            None => true,
            Some((code, action, desired, at)) => {
                decision.action != Action::None
                    || (code, action, desired) != key
                    || decision.at_ms - at >= heartbeat_ms
            }
        };
        if !(leadership.is_leader && due) {
            return Ok(false);
        }
        let cx = RecordContext {
            pool,
            region: &region,
            controller_id: &self.settings.controller_id,
            leader_epoch: leadership.epoch,
            policy_hash,
            dry_run,
            slot,
        };
        let record = DecisionRecord::from_decision(decision, &cx, outcome.clone());
        self.backends
            .log
            .append(&record, leadership.fence.as_ref())
            .await
            .map_err(PoolError::Record)?;
        let st = self.pools.entry(state_key.to_string()).or_default();
        st.last_recorded = Some((key.0, key.1, key.2, decision.at_ms));
        self.metrics
            .decisions_recorded
            .with_label_values(&[pool, &region])
            .inc();
        Ok(true)
    }

    fn observe_metrics(&self, pool: &str, region: &str, d: &Decision, outcome: &Outcome) {
        let m = &self.metrics;
        let l = &[pool, region];
        if let Some(rps) = d.rps {
            m.pool_rps.with_label_values(l).set(rps);
        }
        m.pool_serving
            .with_label_values(l)
            .set(i64::from(d.serving));
        m.pool_launching
            .with_label_values(l)
            .set(i64::from(d.launching));
        m.pool_held.with_label_values(l).set(i64::from(d.held));
        m.pool_desired
            .with_label_values(l)
            .set(i64::from(d.desired));
        if let Some(u) = d.utilisation {
            m.pool_utilisation.with_label_values(l).set(u);
        }
        if let Some(age) = d.metrics_age_ms {
            m.metrics_age.with_label_values(l).set(age as f64 / 1000.0);
        }
        m.decisions
            .with_label_values(&[pool, region, d.action.as_str(), d.reason_code.as_str()])
            .inc();
        m.decision_results
            .with_label_values(&[pool, region, outcome.label()])
            .inc();
    }
}
