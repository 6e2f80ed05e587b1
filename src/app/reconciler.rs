//! The reconciler: per pool, observe → decide (with its plan) → record → act → settle.
//!
//! Observing (`observe`) and deciding are separate steps, so a shadow policy decides on the
//! same reads as the live one without reading the backends twice. Deciding is the core's
//! (`core::decide`, which plans too); this file only executes and records.
//!
//! No action without its record: a plan with steps is recorded first (fenced, `result =
//! pending`), then executed step by step under the leadership guard (`execute`), then its
//! outcome is settled on the record. If the record cannot be written, nothing is done.
//! Leadership gates acting and recording; the service runs cycles on the leader only (a
//! follower reads nothing but the lease), and a new leader warms its history from the
//! decision log (`warm_history`) before its first cycle. One pool's failure never stops the others;
//! a pool whose reads fail backs off (transient errors quickly, permanent ones slowly).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::core::capacity;
use crate::core::policy::ScheduleMemo;
use crate::core::{
    Action, Decision, DecisionRecord, Outcome, PolicySet, PoolHistory, PoolPolicy, ReasonCode,
    RecordContext, Sample, decide,
};
use crate::ports::{Backends, PoolGauges, PortError};
use crate::telemetry::Metrics;

pub use super::leadership::Leadership;
pub use super::observe::PoolReads;

#[derive(Debug, Clone)]
pub struct Settings {
    pub region: String,
    pub controller_id: String,
    pub dry_run: bool,
    /// Record an unchanged `none` decision at least this often (changes are always recorded).
    pub record_heartbeat: Duration,
}

/// Why one pool's cycle failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("reading metrics: {0}")]
    Metrics(#[source] PortError),
    #[error("reading instances: {0}")]
    Inventory(#[source] PortError),
    #[error("describing the ASG: {0}")]
    Asg(#[source] PortError),
    #[error("recording the decision: {0}")]
    Record(#[source] PortError),
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

    /// A backend read failed (as opposed to recording the decision).
    pub fn is_read(&self) -> bool {
        !matches!(self, PoolError::Record(_))
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

    /// The record could not be written because another controller holds the lease.
    pub fn is_fence(&self) -> bool {
        matches!(self, PoolError::Record(PortError::Conflict(_)))
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
    /// What the shadow policy would have done, on the same observations (never acted on).
    pub shadow: Vec<PoolReport>,
    /// Shadow records that could not be appended (the live pool is not affected).
    pub shadow_errors: Vec<(String, PoolError)>,
}

/// The last record appended for a pool: the record-on-change rule compares against it.
#[derive(Debug, Clone)]
struct LastRecord {
    reason_code: ReasonCode,
    action: Action,
    desired: u32,
    policy_hash: String,
    at_ms: i64,
}

#[derive(Debug, Default)]
pub(crate) struct PoolState {
    history: PoolHistory,
    pub(crate) launch_times: capacity::LaunchTimes,
    /// The p90 of the seed's `model_load_time` metric, and when it was last read.
    pub(crate) model_load: Option<(i64, Option<Duration>)>,
    schedules: ScheduleMemo,
    last_recorded: Option<LastRecord>,
    failures: u32,
    next_try_ms: i64,
    pub(crate) samples: super::observe::SampleCache,
    /// SLO sizing's growth estimate, refreshed every quarter hour of new samples.
    growth: Option<crate::core::sizing::Growth>,
}

impl PoolState {
    /// Feed new samples into the demand history SLO sizing learns from, with its ratio book
    /// covering the launch time (the learned one when longer than `policy`'s).
    pub(crate) fn feed_demand(&mut self, policy: &PoolPolicy, fresh: &[Sample]) {
        let Some(slo) = &policy.slo else { return };
        let lead = self
            .launch_times
            .p90()
            .map_or(policy.instances.launch_time, |l| {
                l.max(policy.instances.launch_time)
            });
        let d = &mut self.history.demand;
        d.retain_at_least(crate::core::sizing::retention_minutes(slo));
        for s in fresh {
            d.push(*s);
        }
        // The growth over a launch time moves slowly: recomputed every quarter hour.
        let newest = d.newest();
        let stale = match (&self.growth, newest) {
            (Some(g), Some(n)) => n - g.newest_minute >= 15,
            (None, Some(_)) => true,
            _ => false,
        };
        if stale {
            self.growth =
                crate::core::sizing::growth(slo, d, lead, crate::core::sizing::hold(policy, lead));
        }
    }
}

/// Whose decision: the live policy's (acted on) or the shadow policy's (recorded as dry-run
/// in slot 1, never acted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    Live,
    Shadow,
}

impl Track {
    fn label(self) -> &'static str {
        match self {
            Track::Live => "live",
            Track::Shadow => "shadow",
        }
    }
}

pub struct Reconciler {
    backends: Backends,
    settings: Settings,
    metrics: Metrics,
    pools: HashMap<String, PoolState>,
    /// The shadow policy's own history and records, per pool.
    shadow_pools: HashMap<String, PoolState>,
    /// A candidate policy set evaluated beside the live one, never acted on.
    shadow: Option<Arc<PolicySet>>,
    /// The live decisions' gauges of the cycle in progress, published in one batch at its end.
    gauges: Vec<(String, PoolGauges)>,
    /// Pools whose failure counters were started at 0 (`Metrics::init_pool`).
    counted: std::collections::HashSet<String>,
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
            shadow_pools: HashMap::new(),
            shadow: None,
            gauges: Vec::new(),
            counted: std::collections::HashSet::new(),
        }
    }

    /// Forget every pool's state (samples read, histories, last records): a replica that
    /// becomes leader again starts from the decision log, not from what it knew when it last
    /// led (followers read nothing, so that knowledge is stale).
    pub fn forget_pools(&mut self) {
        self.pools.clear();
        self.shadow_pools.clear();
    }

    /// Evaluate `shadow` beside the live policies every cycle, on the same observation,
    /// recording what it would have done as dry-run records (slot 1, its own policy hash).
    /// A different candidate starts with a fresh history: the old one's recommendations say
    /// nothing about what the new one would have done.
    pub fn set_shadow(&mut self, shadow: Option<PolicySet>) {
        let old = self.shadow.as_ref().map(|s| s.hash.clone());
        if old != shadow.as_ref().map(|s| s.hash.clone()) {
            self.shadow_pools.clear();
        }
        self.shadow = shadow.map(Arc::new);
    }

    pub fn shadow(&self) -> Option<&PolicySet> {
        self.shadow.as_deref()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn backends(&self) -> &Backends {
        &self.backends
    }

    pub(crate) fn pool_state(&mut self, pool: &str) -> &mut PoolState {
        self.pools.entry(pool.to_string()).or_default()
    }

    pub(crate) fn shadow_state(&mut self, pool: &str) -> &mut PoolState {
        self.shadow_pools.entry(pool.to_string()).or_default()
    }

    /// A new policy set is in force: pools backing off retry at once (a fix to the policy,
    /// such as a corrected ASG name, must not wait out the backoff).
    pub fn policies_changed(&mut self) {
        for st in self.pools.values_mut() {
            st.failures = 0;
            st.next_try_ms = 0;
        }
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

    /// One cycle over every pool that has a policy for this region: the live policy observes,
    /// decides, records and acts; the shadow policy, if any, decides on the same reads and
    /// records. Once a fenced append fails (another controller leads), the rest of the cycle
    /// neither records nor acts.
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
        let mut lead = leadership.clone();
        let shadow_set = self.shadow.clone();
        self.gauges.clear();
        for policy in policies.pools.values() {
            if policy.region(&self.settings.region).is_none() {
                continue;
            }
            // Its failure counters start at 0, so alerts see the first failure. (Not keyed on
            // `pools`: a new leader's warm-up may have made its state already.)
            if !self.counted.contains(&policy.pool) {
                self.metrics.init_pool(&policy.pool);
                self.counted.insert(policy.pool.clone());
            }
            let st = self.pools.entry(policy.pool.clone()).or_default();
            if st.next_try_ms > now_ms {
                report.backing_off.push(policy.pool.clone());
                continue;
            }
            let span = tracing::info_span!(
                "pool",
                pool = %policy.pool,
                region = %self.settings.region,
                epoch = lead.epoch
            );
            let shadow = shadow_set.as_deref().and_then(|s| {
                s.pool(&policy.pool)
                    .filter(|p| p.region(&self.settings.region).is_some())
                    .map(|p| (p, s.hash.as_str()))
            });
            let result = self
                .live_cycle(
                    policy,
                    &policies.hash,
                    shadow.map(|(p, _)| p),
                    now_ms,
                    &lead,
                )
                .instrument(span.clone())
                .await;
            self.settle(&policy.pool, now_ms, result.as_ref().err());
            let reads = match result {
                Ok((r, reads)) => {
                    report.pools.push(r);
                    reads
                }
                Err(e) => {
                    if e.is_fence() {
                        report.lost_leadership = true;
                        lead.guard.revoke();
                        lead = Leadership::follower();
                    }
                    report.errors.push((policy.pool.clone(), e));
                    continue;
                }
            };
            let Some((sp, hash)) = shadow else { continue };
            match self
                .decide_and_record(Track::Shadow, sp, hash, &reads, &lead)
                .instrument(span)
                .await
            {
                Ok(r) => report.shadow.push(r),
                Err(e) => {
                    if e.is_fence() {
                        report.lost_leadership = true;
                        lead.guard.revoke();
                        lead = Leadership::follower();
                    }
                    self.metrics
                        .reconcile_errors
                        .with_label_values(&[&policy.pool, "shadow_record"])
                        .inc();
                    tracing::warn!(pool = %policy.pool, error = %e, "recording the shadow decision failed");
                    report.shadow_errors.push((policy.pool.clone(), e));
                }
            }
        }
        self.publish_gauges().await;
        report
    }

    /// Every pool's gauges of this cycle in one batch (one CloudWatch call), leader only.
    async fn publish_gauges(&mut self) {
        let batch = std::mem::take(&mut self.gauges);
        if batch.is_empty() {
            return;
        }
        if let Some(g) = &self.backends.gauges
            && let Err(e) = g.publish(&self.settings.region, &batch).await
        {
            tracing::warn!(region = %self.settings.region, error = %e, "publishing gauges failed");
        }
    }

    /// observe → decide → record → act for one pool with the live policy (no shadow).
    pub async fn reconcile_pool(
        &mut self,
        policy: &PoolPolicy,
        policy_hash: &str,
        now_ms: i64,
        leadership: &Leadership,
    ) -> Result<PoolReport, PoolError> {
        self.gauges.clear();
        let result = self
            .live_cycle(policy, policy_hash, None, now_ms, leadership)
            .await;
        self.settle(&policy.pool, now_ms, result.as_ref().err());
        self.publish_gauges().await;
        result.map(|(r, _)| r)
    }

    async fn live_cycle(
        &mut self,
        policy: &PoolPolicy,
        policy_hash: &str,
        shadow: Option<&PoolPolicy>,
        now_ms: i64,
        leadership: &Leadership,
    ) -> Result<(PoolReport, PoolReads), PoolError> {
        let reads = self.observe_pool(policy, shadow, now_ms).await?;
        let report = self
            .decide_and_record(Track::Live, policy, policy_hash, &reads, leadership)
            .await?;
        Ok((report, reads))
    }

    /// Reset or extend a pool's backoff after a live cycle. Only failed reads back off: a
    /// record that could not be written is retried on the next cycle (nothing was done).
    fn settle(&mut self, pool: &str, now_ms: i64, error: Option<&PoolError>) {
        let region = self.settings.region.clone();
        let st = self.pools.entry(pool.to_string()).or_default();
        let Some(e) = error else {
            st.failures = 0;
            st.next_try_ms = 0;
            return;
        };
        self.metrics
            .reconcile_errors
            .with_label_values(&[pool, e.metric_label()])
            .inc();
        if !e.is_read() {
            tracing::warn!(pool = %pool, region = %region, error = %e, "the decision was not recorded, so nothing was done; retrying next cycle");
            return;
        }
        st.failures = st.failures.saturating_add(1);
        let wait = if e.port().is_transient() {
            (BACKOFF_BASE_MS << st.failures.min(10).saturating_sub(1)).min(BACKOFF_MAX_TRANSIENT_MS)
        } else {
            BACKOFF_PERMANENT_MS
        };
        st.next_try_ms = now_ms.saturating_add(wait);
        tracing::warn!(pool = %pool, region = %region, error = %e, retry_in_ms = wait, "reconcile failed; backing off");
    }

    /// decide → record → act (live only) → settle the record, from one pool's reads.
    async fn decide_and_record(
        &mut self,
        track: Track,
        policy: &PoolPolicy,
        policy_hash: &str,
        reads: &PoolReads,
        leadership: &Leadership,
    ) -> Result<PoolReport, PoolError> {
        let region = self.settings.region.clone();
        let now_ms = reads.at_ms;
        let states = match track {
            Track::Live => &mut self.pools,
            Track::Shadow => &mut self.shadow_pools,
        };
        let st = states.entry(policy.pool.clone()).or_default();
        let bounds = policy.bounds_memo(&region, now_ms, &mut st.schedules);
        let mut obs = reads.observation(policy, bounds);
        if policy.slo.is_some() {
            obs.growth = st.growth;
        }
        let decision = decide(policy, &region, &obs, &st.history, now_ms);
        let acting = track == Track::Live && leadership.is_leader && !self.settings.dry_run;
        let (outcome, recorded) = if acting && !decision.plan.is_empty() {
            self.record_then_act(policy, policy_hash, &decision, leadership)
                .await?
        } else {
            let outcome = self.not_acting(track, leadership, &decision);
            let recorded = self
                .record_if_due(
                    track,
                    &policy.pool,
                    &decision,
                    &outcome,
                    policy_hash,
                    leadership,
                )
                .await?;
            (outcome, recorded)
        };
        let states = match track {
            Track::Live => &mut self.pools,
            Track::Shadow => &mut self.shadow_pools,
        };
        states
            .entry(policy.pool.clone())
            .or_default()
            .history
            .record(&decision, outcome == Outcome::Applied, remembered(policy));
        self.publish(
            track,
            policy,
            policy_hash,
            &decision,
            &outcome,
            reads,
            recorded,
            leadership,
        )
        .await;
        Ok(PoolReport {
            pool: policy.pool.clone(),
            decision,
            outcome,
            recorded,
        })
    }

    /// Why a decision is not acted on here (shadow, follower, dry-run, nothing to do).
    fn not_acting(&self, track: Track, leadership: &Leadership, d: &Decision) -> Outcome {
        if track == Track::Shadow {
            Outcome::Skipped("shadow policy".into())
        } else if d.action == Action::None && d.plan.is_empty() {
            Outcome::Skipped("no change".into())
        } else if !leadership.is_leader {
            Outcome::Skipped("not leader".into())
        } else if self.settings.dry_run {
            Outcome::Skipped("dry-run".into())
        } else {
            Outcome::Skipped(
                d.plan
                    .held_back
                    .clone()
                    .unwrap_or_else(|| "nothing to do".into()),
            )
        }
    }

    /// The leader's path for a plan with steps: record it (fenced) as pending — if that
    /// fails, do nothing — then execute it under the guard, then settle the record's outcome.
    async fn record_then_act(
        &mut self,
        policy: &PoolPolicy,
        policy_hash: &str,
        decision: &Decision,
        leadership: &Leadership,
    ) -> Result<(Outcome, bool), PoolError> {
        let region = self.settings.region.clone();
        let record = self
            .record(
                Track::Live,
                &policy.pool,
                decision,
                &Outcome::Pending,
                policy_hash,
                leadership,
            )
            .await?;
        let asg = policy.region(&region).map_or("", |r| r.asg.as_str());
        let target = super::execute::Target {
            pool: &policy.pool,
            asg,
        };
        let done = super::execute::execute(
            &self.backends,
            &self.metrics,
            &target,
            &decision.plan,
            &leadership.guard,
            decision.at_ms,
        )
        .await;
        let outcome = done.outcome(decision);
        if let Err(e) = self.backends.log.settle(&record, &outcome).await {
            // The decision and its steps are recorded; only the outcome is missing.
            self.metrics
                .reconcile_errors
                .with_label_values(&[&policy.pool, "settle"])
                .inc();
            tracing::warn!(error = %e, outcome = %outcome.to_attr(), "recording the outcome failed; the record stays `pending`");
        }
        Ok((outcome, true))
    }

    /// Append `decision` when it is due: on any action, a change of reason, action, desired
    /// capacity or policy (so the first decision under a reloaded policy carries its hash), or
    /// at the record heartbeat. Leader only.
    async fn record_if_due(
        &mut self,
        track: Track,
        pool: &str,
        decision: &Decision,
        outcome: &Outcome,
        policy_hash: &str,
        leadership: &Leadership,
    ) -> Result<bool, PoolError> {
        let heartbeat_ms = self.settings.record_heartbeat.as_millis() as i64;
        let states = match track {
            Track::Live => &self.pools,
            Track::Shadow => &self.shadow_pools,
        };
        let due = match states.get(pool).and_then(|st| st.last_recorded.as_ref()) {
            None => true,
            Some(last) => {
                decision.action != Action::None
                    || !decision.plan.is_empty()
                    || last.reason_code != decision.reason_code
                    || last.action != decision.action
                    || last.desired != decision.desired
                    || last.policy_hash != policy_hash
                    || decision.at_ms - last.at_ms >= heartbeat_ms
            }
        };
        if !(leadership.is_leader && due) {
            return Ok(false);
        }
        self.record(track, pool, decision, outcome, policy_hash, leadership)
            .await?;
        Ok(true)
    }

    /// Append one record (fenced when leading under a lease) and remember it.
    async fn record(
        &mut self,
        track: Track,
        pool: &str,
        decision: &Decision,
        outcome: &Outcome,
        policy_hash: &str,
        leadership: &Leadership,
    ) -> Result<DecisionRecord, PoolError> {
        let region = self.settings.region.clone();
        let (dry_run, slot) = match track {
            Track::Live => (self.settings.dry_run, 0),
            Track::Shadow => (true, 1),
        };
        let cx = RecordContext {
            pool,
            region: &region,
            controller_id: &self.settings.controller_id,
            leader_epoch: leadership.epoch,
            policy_hash,
            dry_run,
            slot,
        };
        let mut record = DecisionRecord::from_decision(decision, &cx, outcome.clone());
        record.key = self
            .backends
            .log
            .append(&record, leadership.fence.as_ref())
            .await
            .map_err(PoolError::Record)?;
        let states = match track {
            Track::Live => &mut self.pools,
            Track::Shadow => &mut self.shadow_pools,
        };
        states.entry(pool.to_string()).or_default().last_recorded = Some(LastRecord {
            reason_code: decision.reason_code,
            action: decision.action,
            desired: decision.desired,
            policy_hash: policy_hash.to_string(),
            at_ms: decision.at_ms,
        });
        self.metrics
            .decisions_recorded
            .with_label_values(&[pool])
            .inc();
        Ok(record)
    }

    /// Metrics, gauges (kept for the cycle's batch) and the decision's log line.
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &mut self,
        track: Track,
        policy: &PoolPolicy,
        policy_hash: &str,
        d: &Decision,
        outcome: &Outcome,
        reads: &PoolReads,
        recorded: bool,
        leadership: &Leadership,
    ) {
        let region = &self.settings.region;
        let l = &[policy.pool.as_str()];
        match track {
            Track::Live => {
                self.metrics.observe_decision(&policy.pool, d, outcome);
                let draining = reads
                    .instances
                    .iter()
                    .filter(|i| capacity::is_our_drain(i))
                    .count();
                self.metrics
                    .pool_draining
                    .with_label_values(l)
                    .set(draining as i64);
                // CloudWatch is the leader's: a follower's view is not the one acted on.
                if self.backends.gauges.is_some() && leadership.is_leader {
                    self.gauges.push((
                        policy.pool.clone(),
                        PoolGauges {
                            rps: d.rps,
                            serving: d.serving,
                            launching: d.launching,
                            desired: d.desired,
                            utilisation: d.utilisation,
                        },
                    ));
                }
            }
            Track::Shadow => {
                self.metrics
                    .shadow_decisions
                    .with_label_values(&[l[0], d.action.as_str(), d.reason_code.as_str()])
                    .inc();
                self.metrics
                    .shadow_pool_desired
                    .with_label_values(l)
                    .set(i64::from(d.desired));
            }
        }
        if d.action != Action::None || recorded || !d.plan.is_empty() {
            tracing::info!(
                pool = %policy.pool,
                region = %region,
                epoch = leadership.epoch,
                reason_code = %d.reason_code,
                action = %d.action,
                policy = track.label(),
                policy_hash = %policy_hash,
                rps = d.rps.unwrap_or(f64::NAN),
                serving = d.serving,
                launching = d.launching,
                desired = d.desired,
                asg_desired = d.asg_desired,
                plan = %d.plan.describe(),
                result = %outcome.to_attr(),
                dry_run = self.settings.dry_run || track == Track::Shadow,
                "{}",
                d.reason
            );
        }
    }
}

/// How long a pool's recommendations are remembered: the band's stabilization (with an SLO,
/// at least two launch times) and at least a minute.
fn remembered(policy: &PoolPolicy) -> Duration {
    let keep = match policy.slo {
        Some(_) => crate::core::sizing::hold(policy, policy.instances.launch_time),
        None => policy.scale_down.stabilization,
    };
    keep.max(Duration::from_secs(60))
}
