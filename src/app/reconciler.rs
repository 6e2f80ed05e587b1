//! The reconciler: per pool, observe → decide → act → record.
//!
//! Observing (`observe_pool`) and deciding are separate steps, so a shadow policy decides on the
//! same reads as the live one without reading the backends twice.
//!
//! Leadership gates acting and recording only; observing and deciding happen on every replica
//! so a new leader acts at once with a warm history. One pool's failure never stops the others;
//! a failing pool backs off (transient errors quickly, permanent ones slowly).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::core::InstanceState;
use crate::core::capacity;
use crate::core::decide::SeasonalRef;
use crate::core::policy::ForecastMode;
use crate::core::{
    Action, AsgState, Decision, DecisionRecord, Observation, Outcome, PolicySet, PoolHistory,
    PoolPolicy, ReasonCode, RecordContext, Sample, decide,
};
use crate::ports::{Backends, Fence, PoolGauges, PoolInventory, PortError};

use crate::telemetry::Metrics;

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

/// What one cycle read for one pool: the raw material every policy for the pool decides
/// from, so the live and the shadow policy see the same world from one set of reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolReads {
    pub at_ms: i64,
    /// RPS samples over the longest lookback any of the policies needs, oldest first.
    pub samples: Vec<Sample>,
    pub inventory: PoolInventory,
    pub asg: AsgState,
    /// Per seasonal lag that could be read: the samples around that moment and over the
    /// longest horizon after it.
    pub seasonal: Vec<(i64, Vec<Sample>)>,
    pub learned_launch: Option<Duration>,
    /// The instances the group holds in service or pending, when the backend lists them and
    /// an instance is draining (the only case it is needed).
    pub members: Option<Vec<Arc<str>>>,
}

const SEASONAL_LAGS_MS: [i64; 2] = [86_400_000, 7 * 86_400_000];

/// How often the `model_load_time` metric is read (it changes with model releases, not
/// minutes; one Query per pool every 15 minutes costs nothing worth counting).
const MODEL_LOAD_REFRESH_MS: i64 = 15 * 60_000;

/// How far back `policy` looks at RPS samples.
fn lookback(policy: &PoolPolicy) -> Duration {
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
    /// Instances this controller is draining (`draining` with its `drain_started_at`).
    pub fn our_drains(&self) -> impl Iterator<Item = &crate::core::InstanceRecord> {
        self.inventory
            .instances
            .iter()
            .filter(|i| i.state == InstanceState::Draining && i.drain_started_ms.is_some())
    }

    /// Whether the group still holds `i` (true when the backend does not list members).
    pub fn in_group(&self, i: &crate::core::InstanceRecord) -> bool {
        self.members
            .as_ref()
            .is_none_or(|m| m.contains(&i.instance_id))
    }

    /// This controller's drains that the group still holds (a drain whose instance the group
    /// let go of is only waiting to be marked terminated).
    pub fn held_drains(&self) -> impl Iterator<Item = &crate::core::InstanceRecord> {
        self.our_drains().filter(|i| self.in_group(i))
    }

    /// The victims of `decision`'s scale-down (`capacity::pick_victims`), with `draining`
    /// drains under way, and how many the group's minimum leaves room for.
    fn victims(
        &self,
        policy: &PoolPolicy,
        decision: &Decision,
        draining: usize,
    ) -> (Vec<&crate::core::InstanceRecord>, usize) {
        let cut = (decision.serving + decision.launching).saturating_sub(decision.desired);
        // No more victims, the failed-cleanup ones that come along included, than keep the
        // group at its minimum once every drain under way has ended.
        let room = self
            .asg
            .desired
            .saturating_sub(draining as u32)
            .saturating_sub(self.asg.min) as usize;
        let victims = capacity::pick_victims(
            &self.inventory.instances,
            cut as usize,
            room,
            &policy.instances,
            self.at_ms,
        );
        (victims, room)
    }

    /// The observation `policy` decides from: its own lookback, capacity counting (heartbeat
    /// and launch timeouts) and seasonal window, all from the same reads.
    pub fn observation(&self, policy: &PoolPolicy) -> Observation {
        let from = self.at_ms - lookback(policy).as_millis() as i64;
        let samples = self
            .samples
            .iter()
            .filter(|s| s.at_ms > from)
            .copied()
            .collect();
        // A draining instance the group no longer holds is gone, whatever its item says
        // (terminated, its item not yet marked): counting it as held would launch a
        // replacement.
        let capacity = capacity::count(
            self.inventory
                .instances
                .iter()
                .filter(|i| i.state != InstanceState::Draining || self.in_group(i)),
            &policy.instances,
            self.at_ms,
            self.inventory.skipped,
        );
        let seasonal = match seasonal_span(policy, self.learned_launch) {
            None => Vec::new(),
            Some((window, ahead)) => self
                .seasonal
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
                .collect(),
        };
        Observation {
            samples,
            capacity,
            asg: self.asg.clone(),
            seasonal,
            learned_launch: self.learned_launch,
        }
    }
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
struct PoolState {
    history: PoolHistory,
    launch_times: capacity::LaunchTimes,
    /// The p90 of the seed's `model_load_time` metric, and when it was last read.
    model_load: Option<(i64, Option<Duration>)>,
    last_recorded: Option<LastRecord>,
    failures: u32,
    next_try_ms: i64,
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
        }
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
    /// decides, acts and records; the shadow policy, if any, decides on the same reads and
    /// records.
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
        let shadow_set = self.shadow.clone();
        for policy in policies.pools.values() {
            if policy.region(&self.settings.region).is_none() {
                continue;
            }
            let st = self.pools.entry(policy.pool.clone()).or_default();
            if st.next_try_ms > now_ms {
                report.backing_off.push(policy.pool.clone());
                continue;
            }
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
                    leadership,
                )
                .await;
            self.settle(&policy.pool, now_ms, result.as_ref().err());
            let reads = match result {
                Ok((r, reads)) => {
                    report.pools.push(r);
                    reads
                }
                Err(e) => {
                    if matches!(&e, PoolError::Record(PortError::Conflict(_))) {
                        report.lost_leadership = true;
                    }
                    report.errors.push((policy.pool.clone(), e));
                    continue;
                }
            };
            let Some((sp, hash)) = shadow else { continue };
            match self
                .decide_and_record(Track::Shadow, sp, hash, &reads, leadership)
                .await
            {
                Ok(r) => report.shadow.push(r),
                Err(e) => {
                    if matches!(&e, PoolError::Record(PortError::Conflict(_))) {
                        report.lost_leadership = true;
                    }
                    self.metrics
                        .reconcile_errors
                        .with_label_values(&[&policy.pool, &self.settings.region, "shadow_record"])
                        .inc();
                    tracing::warn!(
                        pool = %policy.pool,
                        region = %self.settings.region,
                        epoch = leadership.epoch,
                        error = %e,
                        "recording the shadow decision failed"
                    );
                    report.shadow_errors.push((policy.pool.clone(), e));
                }
            }
        }
        report
    }

    /// observe → decide → act → record for one pool with the live policy (no shadow).
    pub async fn reconcile_pool(
        &mut self,
        policy: &PoolPolicy,
        policy_hash: &str,
        now_ms: i64,
        leadership: &Leadership,
    ) -> Result<PoolReport, PoolError> {
        let result = self
            .live_cycle(policy, policy_hash, None, now_ms, leadership)
            .await;
        self.settle(&policy.pool, now_ms, result.as_ref().err());
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

    /// Reset or extend a pool's backoff after a live cycle.
    fn settle(&mut self, pool: &str, now_ms: i64, error: Option<&PoolError>) {
        let region = self.settings.region.clone();
        let st = self.pools.entry(pool.to_string()).or_default();
        let Some(e) = error else {
            st.failures = 0;
            st.next_try_ms = 0;
            return;
        };
        st.failures = st.failures.saturating_add(1);
        let wait = if e.port().is_transient() {
            (BACKOFF_BASE_MS << st.failures.min(10).saturating_sub(1)).min(BACKOFF_MAX_TRANSIENT_MS)
        } else {
            BACKOFF_PERMANENT_MS
        };
        st.next_try_ms = now_ms + wait;
        self.metrics
            .reconcile_errors
            .with_label_values(&[pool, &region, e.metric_label()])
            .inc();
        tracing::warn!(
            pool = %pool,
            region = %region,
            error = %e,
            retry_in_ms = wait,
            "reconcile failed; backing off"
        );
    }

    /// Read everything `policy` (and `also`, the shadow policy of the same pool) needs, once:
    /// RPS samples over the longer lookback, the pool's instances, the ASG, and the seasonal
    /// references over the wider window when either forecasts seasonally.
    pub async fn observe_pool(
        &mut self,
        policy: &PoolPolicy,
        also: Option<&PoolPolicy>,
        now_ms: i64,
    ) -> Result<PoolReads, PoolError> {
        let region = self.settings.region.clone();
        let Some(regional) = policy.region(&region) else {
            return Err(PoolError::Asg(PortError::Permanent(format!(
                "pool {} has no policy for region {region}",
                policy.pool
            ))));
        };
        let lookback = also.map_or(lookback(policy), |a| lookback(policy).max(lookback(a)));
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
        let due = self
            .pools
            .get(&policy.pool)
            .and_then(|st| st.model_load)
            .is_none_or(|(at, _)| now_ms - at >= MODEL_LOAD_REFRESH_MS);
        if due {
            let p90 = self.model_load_p90(&policy.pool, &region, now_ms).await;
            self.pools
                .entry(policy.pool.clone())
                .or_default()
                .model_load = Some((now_ms, p90));
        }
        let st = self.pools.entry(policy.pool.clone()).or_default();
        st.launch_times.observe(&inventory.instances);
        let model_load = st.model_load.and_then(|(_, p)| p);
        // Launches seen in the instances table first; until there are enough, the model load
        // time alone says the configured launch time is too short when it is longer.
        let learned_launch = st
            .launch_times
            .p90()
            .or_else(|| model_load.filter(|l| *l > policy.instances.launch_time));
        if let Some(l) = learned_launch {
            self.metrics
                .launch_time_p90
                .with_label_values(&[&policy.pool, &region])
                .set(l.as_secs_f64());
        }
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
            .then(|| self.backends.actuator.members(&regional.asg))
            .flatten();
        Ok(PoolReads {
            at_ms: now_ms,
            samples,
            inventory,
            asg,
            seasonal,
            learned_launch,
            members,
        })
    }

    /// decide → act (live only) → record, from one pool's reads.
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
        let obs = reads.observation(policy);
        let states = match track {
            Track::Live => &mut self.pools,
            Track::Shadow => &mut self.shadow_pools,
        };
        let st = states.entry(policy.pool.clone()).or_default();
        let mut decision = decide(policy, &region, &obs, &st.history, now_ms);
        let acting = track == Track::Live
            && leadership.is_leader
            && !self.settings.dry_run
            && leadership.can_act;
        let draining = reads.held_drains().count();

        // Act: the live policy only, as leader, not in dry-run, with margin on the lease.
        let mut reclaimed: Vec<Arc<str>> = Vec::new();
        let mut group_desired = reads.asg.desired;
        let mut started = 0;
        let outcome = if track == Track::Shadow {
            Outcome::Skipped("shadow policy".into())
        } else if decision.action == Action::None {
            Outcome::Skipped("no change".into())
        } else if !leadership.is_leader {
            Outcome::Skipped("not leader".into())
        } else if self.settings.dry_run {
            Outcome::Skipped("dry-run".into())
        } else if !leadership.can_act {
            Outcome::Skipped("lease margin too small to act".into())
        } else {
            match policy.region(&region) {
                Some(_)
                    if decision.action == Action::ScaleDown
                        && policy.scale_down.drain.is_some() =>
                {
                    let (outcome, n) = self
                        .start_drains(policy, reads, &mut decision, draining)
                        .await;
                    started = n;
                    outcome
                }
                Some(_) if draining > 0 && decision.asg_desired < reads.asg.desired => {
                    // Lowering the desired capacity would let the group pick its own victims,
                    // perhaps instances with work queued, while drains are under way.
                    Outcome::Skipped(format!(
                        "{draining} instance(s) draining: the group's desired capacity is not \
                         lowered during a drain"
                    ))
                }
                Some(regional) => {
                    // Demand is back while instances drain: warm ones return to service
                    // before anything is launched.
                    if decision.action == Action::ScaleUp && draining > 0 {
                        reclaimed = self.reclaim_drains(policy, reads, &mut decision).await;
                    }
                    let target = decision.asg_desired.saturating_sub(reclaimed.len() as u32);
                    if reclaimed.is_empty() || target > reads.asg.desired {
                        match self
                            .backends
                            .actuator
                            .set_desired(&regional.asg, target)
                            .await
                        {
                            Ok(()) => {
                                group_desired = target;
                                decision.asg_desired = target;
                                Outcome::Applied
                            }
                            Err(e) => Outcome::Failed(e.to_string()),
                        }
                    } else {
                        // The instances returned to service cover the whole shortfall.
                        decision.asg_desired = reads.asg.desired;
                        Outcome::Applied
                    }
                }
                None => Outcome::Skipped("no policy for this region".into()),
            }
        };
        if track == Track::Live {
            let mut finished = 0;
            if acting && reads.our_drains().next().is_some() {
                finished = self
                    .finish_drains(policy, reads, &reclaimed, group_desired, leadership.epoch)
                    .await;
            }
            if decision.action == Action::ScaleDown && policy.scale_down.drain.is_some() && !acting
            {
                let (victims, _) = reads.victims(policy, &decision, draining);
                if !victims.is_empty() {
                    let ids: Vec<&str> = victims.iter().map(|v| &*v.instance_id).collect();
                    decision.reason =
                        format!("{}; would drain {}", decision.reason, ids.join(", "));
                }
            }
            let now_draining = (draining + started).saturating_sub(finished + reclaimed.len());
            self.metrics
                .pool_draining
                .with_label_values(&[&policy.pool, &region])
                .set(now_draining as i64);
        }
        let states = match track {
            Track::Live => &mut self.pools,
            Track::Shadow => &mut self.shadow_pools,
        };
        let st = states.entry(policy.pool.clone()).or_default();
        st.history.record(
            &decision,
            outcome == Outcome::Applied,
            policy.scale_down.stabilization.max(Duration::from_secs(60)),
        );

        // Record (leader only): changes always, an unchanged `none` at the heartbeat interval.
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

        match track {
            Track::Live => {
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
                        tracing::warn!(pool = %policy.pool, region = %region, error = %e, "publishing gauges failed");
                    }
                }
            }
            Track::Shadow => {
                let l = &[policy.pool.as_str(), region.as_str()];
                self.metrics
                    .shadow_decisions
                    .with_label_values(&[
                        &policy.pool,
                        &region,
                        decision.action.as_str(),
                        decision.reason_code.as_str(),
                    ])
                    .inc();
                self.metrics
                    .shadow_pool_desired
                    .with_label_values(l)
                    .set(i64::from(decision.desired));
            }
        }
        if decision.action != Action::None || recorded {
            tracing::info!(
                pool = %policy.pool,
                region = %region,
                epoch = leadership.epoch,
                reason_code = %decision.reason_code,
                action = %decision.action,
                policy = track.label(),
                policy_hash = %policy_hash,
                rps = decision.rps.unwrap_or(f64::NAN),
                serving = decision.serving,
                launching = decision.launching,
                desired = decision.desired,
                asg_desired = decision.asg_desired,
                result = %outcome.to_attr(),
                dry_run = self.settings.dry_run || track == Track::Shadow,
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

    fn count_drain(&self, pool: &str, step: &str) {
        self.metrics
            .drains
            .with_label_values(&[pool, &self.settings.region, step])
            .inc();
    }

    /// Return a draining instance to service, counted as `returned`; a failure is logged
    /// (the next cycle sees the instance still draining).
    async fn undrain(&self, pool: &str, instance_id: &str) -> bool {
        match self.backends.inventory.undrain(instance_id).await {
            Ok(()) => {
                self.count_drain(pool, "returned");
                true
            }
            Err(e) => {
                tracing::warn!(
                    pool,
                    region = %self.settings.region,
                    instance_id,
                    error = %e,
                    "returning a draining instance to service failed"
                );
                false
            }
        }
    }

    /// Scale in by draining: choose the victims (`capacity::pick_victims`), mark each
    /// `draining` so routers stop sending it work, and leave the group's desired capacity
    /// alone; `finish_drains` terminates them in later cycles. The decision's reason names
    /// the instances; its `asg_desired` stays the group's current one. Returns the outcome and
    /// how many drains started.
    async fn start_drains(
        &self,
        policy: &PoolPolicy,
        reads: &PoolReads,
        decision: &mut Decision,
        draining: usize,
    ) -> (Outcome, usize) {
        let region = &self.settings.region;
        let (victims, room) = reads.victims(policy, decision, draining);
        if victims.is_empty() {
            let why = if room == 0 {
                format!(
                    "no instance to drain: the group's minimum {} is reached once the drains \
                     under way end",
                    reads.asg.min
                )
            } else {
                "no instance to drain (launching, unhealthy and stale instances are not \
                 victims)"
                    .to_string()
            };
            return (Outcome::Skipped(why), 0);
        }
        let mut marked = Vec::new();
        let mut failed = Vec::new();
        for v in victims {
            match self
                .backends
                .inventory
                .mark_draining(&v.instance_id, reads.at_ms)
                .await
            {
                Ok(()) => {
                    marked.push(v.instance_id.to_string());
                    self.count_drain(&policy.pool, "started");
                }
                Err(e) => {
                    self.count_drain(&policy.pool, "failed");
                    tracing::warn!(
                        pool = %policy.pool,
                        region = %region,
                        instance_id = %v.instance_id,
                        error = %e,
                        "marking an instance draining failed"
                    );
                    failed.push(format!("{}: {e}", v.instance_id));
                }
            }
        }
        if marked.is_empty() {
            return (
                Outcome::Failed(format!(
                    "no victim could be marked draining: {}",
                    failed.join("; ")
                )),
                0,
            );
        }
        decision.asg_desired = reads.asg.desired;
        decision.reason = format!(
            "{}; draining {} (each terminated once idle, or after {}, lowering the group's \
             desired capacity by one)",
            decision.reason,
            marked.join(", "),
            humantime::format_duration(policy.scale_down.drain_timeout())
        );
        (Outcome::Applied, marked.len())
    }

    /// Demand is back while this controller drains instances: return up to the shortfall of
    /// them to service (they are warm; a launch takes minutes), the most recently drained
    /// first. Returns the ids returned to service.
    async fn reclaim_drains(
        &self,
        policy: &PoolPolicy,
        reads: &PoolReads,
        decision: &mut Decision,
    ) -> Vec<Arc<str>> {
        let short = decision
            .desired
            .saturating_sub(decision.serving + decision.launching) as usize;
        let mut ours: Vec<&crate::core::InstanceRecord> = reads
            .held_drains()
            .filter(|i| capacity::would_serve(i, &policy.instances, reads.at_ms))
            .collect();
        ours.sort_by(|a, b| {
            b.drain_started_ms
                .cmp(&a.drain_started_ms)
                .then_with(|| a.instance_id.cmp(&b.instance_id))
        });
        let mut back = Vec::new();
        for i in ours.into_iter().take(short) {
            if self.undrain(&policy.pool, &i.instance_id).await {
                back.push(i.instance_id.clone());
            }
        }
        if !back.is_empty() {
            let ids: Vec<&str> = back.iter().map(|i| &**i).collect();
            decision.reason = format!(
                "{}; {} returned to service from draining (warm, no launch needed)",
                decision.reason,
                ids.join(", ")
            );
        }
        back
    }

    /// Terminate the instances this controller is draining whose queue is empty or whose drain
    /// timeout passed, each with the group's desired capacity decremented (so it is not
    /// replaced), then mark them `terminated`. An instance the group no longer holds is just
    /// marked; one whose termination would take the group below its minimum returns to
    /// service instead. Failures are logged and retried next cycle. Returns how many drains
    /// ended.
    async fn finish_drains(
        &self,
        policy: &PoolPolicy,
        reads: &PoolReads,
        skip: &[Arc<str>],
        group_desired: u32,
        epoch: u64,
    ) -> usize {
        let region = &self.settings.region;
        let Some(regional) = policy.region(region) else {
            return 0;
        };
        let timeout = policy.scale_down.drain_timeout();
        let mut desired = group_desired;
        let mut ended = 0;
        for i in reads.our_drains() {
            if skip.contains(&i.instance_id) {
                continue;
            }
            let held = reads.in_group(i);
            if held && desired <= reads.asg.min {
                // Terminating with a decrement would take the group below its minimum (raised
                // since the drain began): the instance serves again instead of idling.
                if self.undrain(&policy.pool, &i.instance_id).await {
                    tracing::warn!(
                        pool = %policy.pool,
                        region = %region,
                        instance_id = %i.instance_id,
                        asg_min = reads.asg.min,
                        "drained instance returned to service: the group is at its minimum"
                    );
                    ended += 1;
                }
                continue;
            }
            // Gone from the group already (terminated earlier, or replaced by it): only the
            // item is left to mark, whatever its queue says.
            let end = if held {
                match capacity::drain_end(i, timeout, reads.at_ms) {
                    Some(end) => Some(end),
                    None => continue,
                }
            } else {
                None
            };
            let terminated = if held {
                match self
                    .backends
                    .actuator
                    .terminate(&regional.asg, &i.instance_id)
                    .await
                {
                    Ok(()) => {
                        desired = desired.saturating_sub(1);
                        true
                    }
                    // The group let go of it since the describe.
                    Err(PortError::NotFound(_)) => false,
                    Err(e) => {
                        self.count_drain(&policy.pool, "failed");
                        tracing::warn!(
                            pool = %policy.pool,
                            region = %region,
                            epoch,
                            instance_id = %i.instance_id,
                            error = %e,
                            "terminating a drained instance failed; retrying next cycle"
                        );
                        continue;
                    }
                }
            } else {
                false
            };
            match self
                .backends
                .inventory
                .mark_terminated(&i.instance_id, reads.at_ms)
                .await
            {
                Ok(()) | Err(PortError::NotFound(_)) => ended += 1,
                Err(e) => tracing::warn!(
                    pool = %policy.pool,
                    region = %region,
                    instance_id = %i.instance_id,
                    error = %e,
                    "marking a drained instance terminated failed; retrying next cycle"
                ),
            }
            if terminated {
                let step = match end {
                    Some(capacity::DrainEnd::Timeout) => "terminated_timeout",
                    _ => "terminated_empty",
                };
                self.count_drain(&policy.pool, step);
                tracing::info!(
                    pool = %policy.pool,
                    region = %region,
                    epoch,
                    instance_id = %i.instance_id,
                    queue_depth = i.queue_depth,
                    drained_for_s = (reads.at_ms - i.drain_started_ms.unwrap_or(reads.at_ms)) / 1000,
                    ended = end.map_or("gone", |e| e.as_str()),
                    "drained instance terminated; the group's desired capacity lowered by one"
                );
            }
        }
        ended
    }

    /// The p90 of the seed's `model_load_time` metric (seconds) over the last day, when it
    /// has at least `LaunchTimes::MIN_SAMPLES` samples. A failed read only loses the hint.
    async fn model_load_p90(&self, pool: &str, region: &str, now_ms: i64) -> Option<Duration> {
        let samples = match self
            .backends
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
        // Seconds as the metric stores them; the table's values are checked non-negative.
        let p90 = capacity::p90_ms(
            samples
                .iter()
                .map(|s| (s.rps * 1000.0).min(i64::MAX as f64) as i64)
                .collect(),
        )?;
        self.metrics
            .model_load_time_p90
            .with_label_values(&[pool, region])
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
                .backends
                .metrics
                .rps_samples(pool, region, then - window, then + ahead)
                .await
            {
                out.push((lag, samples));
            }
        }
        out
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
        let region = self.settings.region.clone();
        let heartbeat_ms = self.settings.record_heartbeat.as_millis() as i64;
        let states = match track {
            Track::Live => &self.pools,
            Track::Shadow => &self.shadow_pools,
        };
        let due = match states.get(pool).and_then(|st| st.last_recorded.as_ref()) {
            None => true,
            Some(last) => {
                decision.action != Action::None
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
        let record = DecisionRecord::from_decision(decision, &cx, outcome.clone());
        self.backends
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
