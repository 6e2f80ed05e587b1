//! The in-memory region: the five tables, Auto Scaling Groups that launch instances which
//! register as `launching`, become `available` after their launch time and heartbeat, and
//! terminate on scale-in; plus the lease table. Used by tests, by `run`'s embedded default and
//! by the simulator.
//!
//! Simplifications, all deliberate: an instance the group removes itself leaves the instances
//! table at once, and one the controller marks `terminated` after a drain leaves it then
//! (DynamoDB's TTL would take days); when the desired capacity is lowered the group terminates
//! launching instances first, newest first, then the newest available ones; an instance's
//! heartbeat is stamped by `advance`; a draining instance's queue empties at `drain_rps`
//! requests per second (0, the default, leaves queues to the test).

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::core::{
    AsgState, DecisionKey, DecisionRecord, Health, InstanceRecord, InstanceState, Outcome, Sample,
    Validation,
};
use crate::ports::{
    Actuator, Backends, DecisionLog, Fence, Inventory, Lease, LeaseStore, MetricsSource,
    PoolInventory, PortError, PortResult, Stamp,
};
use crate::schema;

/// One Auto Scaling Group of the in-memory region.
#[derive(Debug, Clone)]
pub struct MemoryAsg {
    pub name: String,
    pub pool: Arc<str>,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    /// Boot + model load of a new instance.
    pub launch_time: Duration,
    /// Uniform jitter added to the launch time, 0..=jitter.
    pub launch_jitter: Duration,
    /// Instance ids in launch order.
    pub members: Vec<Arc<str>>,
}

#[derive(Debug, Clone)]
struct Member {
    rec: InstanceRecord,
    asg: Option<String>,
    ready_at_ms: i64,
    /// When a draining instance's queue is empty (with a `drain_rps` above 0).
    drained_at_ms: Option<i64>,
}

/// Counters and injected failures, for tests that assert what the controller called.
#[derive(Debug, Default, Clone)]
pub struct Calls {
    pub set_desired: u64,
    pub describe: u64,
    pub appends: u64,
    /// Instance ids terminated through `terminate`, in call order.
    pub terminated: Vec<String>,
    pub mark_draining: u64,
    /// Lease reads (`LeaseStore::read`), as a standby makes them.
    pub lease_reads: u64,
}

/// Instance ids of one pool by region.
type RegionIndex = FxHashMap<Arc<str>, Vec<Arc<str>>>;

#[derive(Debug)]
struct State {
    region: Arc<str>,
    instances: FxHashMap<Arc<str>, Member>,
    /// Instance ids by pool, then region, in insertion order: the model-pool-index.
    by_pool: FxHashMap<Arc<str>, RegionIndex>,
    metrics: HashMap<String, BTreeMap<i64, f64>>,
    decisions: BTreeMap<(String, DecisionKey), DecisionRecord>,
    asgs: BTreeMap<String, MemoryAsg>,
    leases: HashMap<String, Lease>,
    next_id: u64,
    rng: ChaCha8Rng,
    heartbeat_every_ms: i64,
    drain_rps: f64,
    calls: Calls,
    fail_set_desired: Vec<PortError>,
    /// The next this many appends fail (transiently).
    fail_appends: u32,
    fail_inventory: HashMap<String, PortError>,
}

/// A whole region in memory. Cheap to clone: clones share the same state.
#[derive(Debug, Clone)]
pub struct MemoryRegion {
    state: Arc<Mutex<State>>,
}

impl MemoryRegion {
    pub fn new(region: &str, seed: u64) -> Self {
        MemoryRegion {
            state: Arc::new(Mutex::new(State {
                region: Arc::from(region),
                instances: FxHashMap::default(),
                by_pool: FxHashMap::default(),
                metrics: HashMap::new(),
                decisions: BTreeMap::new(),
                asgs: BTreeMap::new(),
                leases: HashMap::new(),
                next_id: 1,
                rng: ChaCha8Rng::seed_from_u64(seed),
                heartbeat_every_ms: 10_000,
                drain_rps: 0.0,
                calls: Calls::default(),
                fail_set_desired: Vec::new(),
                fail_appends: 0,
                fail_inventory: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would poison it; the state is plain data and every
        // mutation leaves it consistent, so continuing with the inner value is sound.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every port on this region (tests, the embedded run, the simulator).
    pub fn backends(&self) -> Backends {
        Backends {
            metrics: Arc::new(self.clone()),
            inventory: Arc::new(self.clone()),
            actuator: Arc::new(self.clone()),
            log: Arc::new(self.clone()),
            gauges: None,
        }
    }

    pub fn region(&self) -> String {
        self.lock().region.to_string()
    }

    /// Create (or replace) an ASG for `pool`.
    pub fn create_asg(
        &self,
        name: &str,
        pool: &str,
        min: u32,
        max: u32,
        launch_time: Duration,
        launch_jitter: Duration,
    ) {
        self.lock().asgs.insert(
            name.to_string(),
            MemoryAsg {
                name: name.to_string(),
                pool: Arc::from(pool),
                min,
                max,
                desired: 0,
                launch_time,
                launch_jitter,
                members: Vec::new(),
            },
        );
    }

    /// Start an ASG with `n` instances already available at `now_ms` (a warm start).
    pub fn warm_start(&self, asg: &str, n: u32, now_ms: i64) {
        let mut s = self.lock();
        let Some(g) = s.asgs.get(asg).cloned() else {
            return;
        };
        for _ in 0..n {
            let id = s.new_id();
            let region = s.region.clone();
            s.insert_instance(
                id.clone(),
                Member {
                    rec: InstanceRecord {
                        instance_id: id.clone(),
                        region: region.clone(),
                        model_pool: g.pool.clone(),
                        state: InstanceState::Available,
                        queue_depth: Some(0),
                        last_heartbeat_ms: now_ms,
                        launch_time_ms: now_ms,
                        health: Some(Health::Healthy),
                        validation: Some(Validation::Passed),
                        drain_started_ms: None,
                    },
                    asg: Some(asg.to_string()),
                    ready_at_ms: now_ms,
                    drained_at_ms: None,
                },
            );
            if let Some(a) = s.asgs.get_mut(asg) {
                a.members.push(id);
                a.desired += 1;
            }
        }
    }

    /// Change a group's min and max (an operator's edit); desired capacity is kept within them.
    pub fn set_bounds(&self, name: &str, min: u32, max: u32) {
        if let Some(g) = self.lock().asgs.get_mut(name) {
            g.min = min;
            g.max = max.max(min);
            g.desired = g.desired.clamp(g.min, g.max);
        }
    }

    /// The group's desired capacity (cheaper than cloning the group).
    pub fn asg_desired(&self, name: &str) -> Option<u32> {
        self.lock().asgs.get(name).map(|g| g.desired)
    }

    pub fn asg(&self, name: &str) -> Option<MemoryAsg> {
        self.lock().asgs.get(name).cloned()
    }

    /// Bring every ASG to its desired capacity and move instances along their lifecycle.
    pub fn advance(&self, now_ms: i64) {
        let mut s = self.lock();
        s.advance(now_ms);
    }

    /// (available, draining or otherwise held, ready times of launching members) of an ASG:
    /// lets the simulator count serving and paid capacity second by second between two
    /// `advance` calls.
    pub fn fleet(&self, asg: &str) -> (u32, u32, Vec<i64>) {
        let s = self.lock();
        let mut available = 0;
        let mut held = 0;
        let mut pending = Vec::new();
        if let Some(g) = s.asgs.get(asg) {
            for id in &g.members {
                if let Some(m) = s.instances.get(id) {
                    match m.rec.state {
                        InstanceState::Available => available += 1,
                        InstanceState::Launching => pending.push(m.ready_at_ms),
                        _ => held += 1,
                    }
                }
            }
        }
        (available, held, pending)
    }

    /// A draining instance's queue empties at `rps` requests per second (the simulator sets
    /// the instances' serving rate; 0 leaves queue depths to `set_queue_depth`).
    pub fn set_drain_rate(&self, rps: f64) {
        self.lock().drain_rps = rps.max(0.0);
    }

    pub fn set_queue_depth(&self, instance_id: &str, depth: u32) {
        if let Some(m) = self.lock().instances.get_mut(instance_id) {
            m.rec.queue_depth = Some(depth);
        }
    }

    /// Spread a pool's backlog over the group's available instances, as their `queue_depth`
    /// heartbeats would report it (the simulator's pool-level queue, per instance).
    pub fn spread_queue(&self, asg: &str, backlog: f64) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let Some(group) = s.asgs.get(asg) else {
            return;
        };
        let available = |m: &Member| m.rec.state == InstanceState::Available;
        let n = group
            .members
            .iter()
            .filter(|id| s.instances.get(*id).is_some_and(available))
            .count();
        if n == 0 {
            return;
        }
        let each = (backlog / n as f64).ceil().max(0.0) as u32;
        for id in &group.members {
            if let Some(m) = s.instances.get_mut(id)
                && available(m)
            {
                m.rec.queue_depth = Some(each);
            }
        }
    }

    /// Write a per-minute RPS sample as a router would.
    pub fn put_rps(&self, pool: &str, region: &str, at_ms: i64, rps: f64) {
        self.put_metric("rps", pool, region, at_ms, rps);
    }

    /// Write a sample of any per-pool metric (e.g. `model_load_time`, seconds).
    pub fn put_metric(&self, metric: &str, pool: &str, region: &str, at_ms: i64, value: f64) {
        self.lock()
            .metrics
            .entry(schema::metric_key(metric, pool, region))
            .or_default()
            .insert(at_ms, value);
    }

    /// Put an instance item directly (tests; instances registered outside any ASG).
    pub fn put_instance(&self, rec: InstanceRecord, asg: Option<&str>) {
        let mut s = self.lock();
        let id: Arc<str> = rec.instance_id.clone();
        if let Some(a) = asg.and_then(|a| s.asgs.get_mut(a))
            && !a.members.contains(&id)
        {
            a.members.push(id.clone());
            a.desired = a.members.len() as u32;
        }
        s.insert_instance(
            id,
            Member {
                ready_at_ms: rec.launch_time_ms,
                rec,
                asg: asg.map(str::to_string),
                drained_at_ms: None,
            },
        );
    }

    /// Drop an instance's item from the instances table while the group keeps it (an agent
    /// that never registered, or an item so malformed the reader skips it).
    pub fn forget_item(&self, instance_id: &str) {
        let mut s = self.lock();
        let id: Arc<str> = Arc::from(instance_id);
        if let Some(old) = s.instances.get(&id).cloned() {
            s.unindex(&id, &old.rec.model_pool, &old.rec.region);
        }
    }

    pub fn set_state(&self, instance_id: &str, state: InstanceState) {
        if let Some(m) = self.lock().instances.get_mut(instance_id) {
            m.rec.state = state;
        }
    }

    pub fn set_health(&self, instance_id: &str, health: Health) {
        if let Some(m) = self.lock().instances.get_mut(instance_id) {
            m.rec.health = Some(health);
        }
    }

    pub fn set_validation(&self, instance_id: &str, v: Validation) {
        if let Some(m) = self.lock().instances.get_mut(instance_id) {
            m.rec.validation = Some(v);
        }
    }

    pub fn instances(&self) -> Vec<InstanceRecord> {
        let mut v: Vec<InstanceRecord> = self
            .lock()
            .instances
            .values()
            .map(|m| m.rec.clone())
            .collect();
        v.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        v
    }

    pub fn decisions(&self) -> Vec<DecisionRecord> {
        self.lock().decisions.values().cloned().collect()
    }

    pub fn calls(&self) -> Calls {
        self.lock().calls.clone()
    }

    /// The next `set_desired` calls fail with these errors, in order.
    pub fn fail_set_desired(&self, errors: Vec<PortError>) {
        self.lock().fail_set_desired = errors;
    }

    /// The next `n` decision-log appends fail (transiently).
    pub fn fail_appends(&self, n: u32) {
        self.lock().fail_appends = n;
    }

    /// Inventory reads for `pool` fail with `err` until cleared with None.
    pub fn fail_inventory(&self, pool: &str, err: Option<PortError>) {
        let mut s = self.lock();
        match err {
            Some(e) => s.fail_inventory.insert(pool.to_string(), e),
            None => s.fail_inventory.remove(pool),
        };
    }

    /// Drop every metric sample older than `before_ms` (the metrics table's TTL).
    pub fn expire_metrics(&self, before_ms: i64) {
        for series in self.lock().metrics.values_mut() {
            *series = series.split_off(&before_ms);
        }
    }

    /// Drop decision records older than `before_ms` (the autoscaling-state TTL).
    pub fn expire_decisions(&self, before_ms: i64) {
        self.lock().decisions.retain(|_, r| r.at_ms() >= before_ms);
    }
}

impl State {
    fn insert_instance(&mut self, id: Arc<str>, m: Member) {
        let (pool, region) = (m.rec.model_pool.clone(), m.rec.region.clone());
        if let Some(old) = self.instances.insert(id.clone(), m) {
            self.unindex(&id, &old.rec.model_pool, &old.rec.region);
        }
        self.by_pool
            .entry(pool)
            .or_default()
            .entry(region)
            .or_default()
            .push(id);
    }

    fn unindex(&mut self, id: &Arc<str>, pool: &str, region: &str) {
        if let Some(set) = self
            .by_pool
            .get_mut(pool)
            .and_then(|regions| regions.get_mut(region))
        {
            set.retain(|x| x != id);
        }
    }

    /// An instance item whose state is one of `from`, for a conditional write: `NotFound`
    /// without an item, `Conflict` in another state (as DynamoDB's condition would fail).
    fn member_in(&mut self, instance_id: &str, from: &[InstanceState]) -> PortResult<&mut Member> {
        let m = self
            .instances
            .get_mut(instance_id)
            .ok_or_else(|| PortError::NotFound(format!("instance {instance_id}")))?;
        if !from.contains(&m.rec.state) {
            let wanted: Vec<&str> = from.iter().map(|f| f.as_str()).collect();
            return Err(PortError::Conflict(format!(
                "instance {instance_id} is {}, not {}",
                m.rec.state,
                wanted.join(" or ")
            )));
        }
        Ok(m)
    }

    fn remove_instance(&mut self, id: &Arc<str>) {
        if let Some(old) = self.instances.remove(id) {
            self.unindex(id, &old.rec.model_pool, &old.rec.region);
        }
    }

    fn new_id(&mut self) -> Arc<str> {
        let id = format!("i-{:017x}", self.next_id);
        self.next_id += 1;
        Arc::from(id)
    }

    fn advance(&mut self, now_ms: i64) {
        let names: Vec<String> = self.asgs.keys().cloned().collect();
        for name in names {
            self.converge(&name, now_ms);
        }
        let every = self.heartbeat_every_ms;
        for m in self.instances.values_mut() {
            match m.rec.state {
                InstanceState::Launching if m.asg.is_some() && m.ready_at_ms <= now_ms => {
                    m.rec.state = InstanceState::Available;
                    m.rec.last_heartbeat_ms = m.ready_at_ms;
                }
                InstanceState::Draining if m.drained_at_ms.is_some_and(|t| t <= now_ms) => {
                    m.rec.queue_depth = Some(0);
                    m.drained_at_ms = None;
                }
                _ => {}
            }
            if m.asg.is_some()
                && matches!(
                    m.rec.state,
                    InstanceState::Available | InstanceState::Draining
                )
                && now_ms - m.rec.last_heartbeat_ms >= every
            {
                m.rec.last_heartbeat_ms = now_ms;
            }
        }
    }

    fn converge(&mut self, name: &str, now_ms: i64) {
        let Some(g) = self.asgs.get(name) else { return };
        let have = g.members.len() as u32;
        let want = g.desired;
        let pool = g.pool.clone();
        let (launch, jitter) = (g.launch_time, g.launch_jitter);
        if have < want {
            for _ in have..want {
                let id = self.new_id();
                let j = if jitter.is_zero() {
                    0
                } else {
                    self.rng.random_range(0..=jitter.as_millis() as i64)
                };
                let ready = now_ms + launch.as_millis() as i64 + j;
                self.insert_instance(
                    id.clone(),
                    Member {
                        rec: InstanceRecord {
                            instance_id: id.clone(),
                            region: self.region.clone(),
                            model_pool: pool.clone(),
                            state: InstanceState::Launching,
                            queue_depth: Some(0),
                            last_heartbeat_ms: now_ms,
                            launch_time_ms: now_ms,
                            health: Some(Health::Healthy),
                            validation: Some(Validation::Passed),
                            drain_started_ms: None,
                        },
                        asg: Some(name.to_string()),
                        ready_at_ms: ready,
                        drained_at_ms: None,
                    },
                );
                if let Some(g) = self.asgs.get_mut(name) {
                    g.members.push(id);
                }
            }
        } else if have > want {
            let mut excess = (have - want) as usize;
            let members = self
                .asgs
                .get(name)
                .map(|g| g.members.clone())
                .unwrap_or_default();
            // Launching first (newest first), then the rest newest first.
            let mut order: Vec<(bool, usize, Arc<str>)> = members
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let launching = self
                        .instances
                        .get(id)
                        .is_some_and(|m| m.rec.state == InstanceState::Launching);
                    (!launching, usize::MAX - i, id.clone())
                })
                .collect();
            order.sort();
            let mut victims = Vec::new();
            for (_, _, id) in order {
                if excess == 0 {
                    break;
                }
                victims.push(id);
                excess -= 1;
            }
            for v in &victims {
                self.remove_instance(v);
            }
            if let Some(g) = self.asgs.get_mut(name) {
                g.members.retain(|m| !victims.contains(m));
            }
        }
    }
}

#[async_trait]
impl MetricsSource for MemoryRegion {
    async fn samples(
        &self,
        metric: &str,
        pool: &str,
        region: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> PortResult<Vec<Sample>> {
        let s = self.lock();
        let Some(series) = s.metrics.get(&schema::metric_key(metric, pool, region)) else {
            return Ok(Vec::new());
        };
        if from_ms >= to_ms {
            return Ok(Vec::new());
        }
        Ok(series
            .range(from_ms.saturating_add(1)..=to_ms)
            .map(|(t, v)| Sample { at_ms: *t, rps: *v })
            .collect())
    }
}

#[async_trait]
impl Inventory for MemoryRegion {
    async fn pool_instances(&self, pool: &str, region: &str) -> PortResult<PoolInventory> {
        let s = self.lock();
        if let Some(e) = s.fail_inventory.get(pool) {
            return Err(e.clone());
        }
        let instances = s
            .by_pool
            .get(pool)
            .and_then(|regions| regions.get(region))
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| s.instances.get(id))
                    .map(|m| m.rec.clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok(PoolInventory {
            instances,
            skipped: 0,
        })
    }

    async fn mark_draining(&self, instance_id: &str, at_ms: i64) -> PortResult<()> {
        let mut s = self.lock();
        s.calls.mark_draining += 1;
        let rate = s.drain_rps;
        let m = s.member_in(
            instance_id,
            &[InstanceState::Available, InstanceState::Launching],
        )?;
        m.rec.state = InstanceState::Draining;
        m.rec.drain_started_ms = Some(at_ms);
        m.drained_at_ms = (rate > 0.0).then(|| {
            at_ms + (f64::from(m.rec.queue_depth.unwrap_or(0)) / rate * 1000.0).ceil() as i64
        });
        Ok(())
    }

    async fn undrain(&self, instance_id: &str) -> PortResult<()> {
        let mut s = self.lock();
        let m = s.member_in(instance_id, &[InstanceState::Draining])?;
        m.rec.state = InstanceState::Available;
        m.rec.drain_started_ms = None;
        m.drained_at_ms = None;
        Ok(())
    }

    async fn mark_terminated(&self, instance_id: &str, _at_ms: i64) -> PortResult<()> {
        let mut s = self.lock();
        let id = s
            .member_in(instance_id, &[InstanceState::Draining])?
            .rec
            .instance_id
            .clone();
        // The item's TTL, compressed: a terminated instance leaves the table now.
        s.remove_instance(&id);
        Ok(())
    }
}

#[async_trait]
impl Actuator for MemoryRegion {
    async fn describe(&self, asg: &str) -> PortResult<AsgState> {
        let mut s = self.lock();
        s.calls.describe += 1;
        let g = s
            .asgs
            .get(asg)
            .ok_or_else(|| PortError::NotFound(format!("Auto Scaling Group {asg}")))?;
        Ok(AsgState {
            name: g.name.clone(),
            min: g.min,
            max: g.max,
            desired: g.desired,
        })
    }

    async fn set_desired(&self, asg: &str, desired: u32) -> PortResult<()> {
        let mut s = self.lock();
        s.calls.set_desired += 1;
        if !s.fail_set_desired.is_empty() {
            return Err(s.fail_set_desired.remove(0));
        }
        let g = s
            .asgs
            .get_mut(asg)
            .ok_or_else(|| PortError::NotFound(format!("Auto Scaling Group {asg}")))?;
        if desired < g.min || desired > g.max {
            // As AWS does (moto does not).
            return Err(PortError::Permanent(format!(
                "ValidationError: desired capacity {desired} is outside {}–{} of {asg}",
                g.min, g.max
            )));
        }
        g.desired = desired;
        Ok(())
    }

    fn members(&self, asg: &str) -> Option<Vec<Arc<str>>> {
        self.lock().asgs.get(asg).map(|g| g.members.clone())
    }

    async fn terminate(&self, asg: &str, instance_id: &str) -> PortResult<()> {
        let mut s = self.lock();
        let g = s
            .asgs
            .get_mut(asg)
            .ok_or_else(|| PortError::NotFound(format!("Auto Scaling Group {asg}")))?;
        let Some(pos) = g.members.iter().position(|m| &**m == instance_id) else {
            return Err(PortError::NotFound(format!(
                "instance {instance_id} in Auto Scaling Group {asg}"
            )));
        };
        if g.desired <= g.min {
            // As AWS does: decrementing would take the group below its minimum.
            return Err(PortError::Permanent(format!(
                "ValidationError: terminating {instance_id} with a decrement would take {asg} \
                 below its minimum {}",
                g.min
            )));
        }
        g.members.remove(pos);
        g.desired -= 1;
        s.calls.terminated.push(instance_id.to_string());
        // The instance is gone: it stops heartbeating; its item stays until marked.
        if let Some(m) = s.instances.get_mut(instance_id) {
            m.asg = None;
        }
        Ok(())
    }
}

#[async_trait]
impl DecisionLog for MemoryRegion {
    async fn append(
        &self,
        record: &DecisionRecord,
        fence: Option<&Fence>,
    ) -> PortResult<DecisionKey> {
        let mut s = self.lock();
        if s.fail_appends > 0 {
            s.fail_appends -= 1;
            return Err(PortError::Transient(
                "injected: the decision log is unavailable".into(),
            ));
        }
        if let Some(f) = fence {
            let ok = s
                .leases
                .get(&f.lease_key)
                .is_some_and(|l| l.holder == f.holder && l.epoch == f.epoch);
            if !ok {
                return Err(PortError::Conflict(format!(
                    "lease {} is no longer held by {} at epoch {}",
                    f.lease_key, f.holder, f.epoch
                )));
            }
        }
        s.calls.appends += 1;
        let mut rec = record.clone();
        for slot in rec.key.slot()..10 {
            rec.key = rec.key.with_slot(slot);
            let k = (rec.model_pool.clone(), rec.key);
            if let std::collections::btree_map::Entry::Vacant(e) = s.decisions.entry(k) {
                let key = rec.key;
                e.insert(rec);
                return Ok(key);
            }
        }
        Err(PortError::Conflict(format!(
            "ten records for {} in one millisecond",
            record.model_pool
        )))
    }

    async fn settle(&self, record: &DecisionRecord, outcome: &Outcome) -> PortResult<()> {
        let mut s = self.lock();
        match s
            .decisions
            .get_mut(&(record.model_pool.clone(), record.key))
        {
            Some(r) if r.result == Outcome::Pending => {
                r.result = outcome.clone();
                Ok(())
            }
            Some(r) => Err(PortError::Conflict(format!(
                "record {} is {}, not pending",
                record.key.to_number(),
                r.result.to_attr()
            ))),
            None => Err(PortError::NotFound(format!(
                "record {}",
                record.key.to_number()
            ))),
        }
    }

    async fn history(
        &self,
        pool: &str,
        region: Option<&str>,
        since_ms: i64,
        limit: usize,
    ) -> PortResult<Vec<DecisionRecord>> {
        let s = self.lock();
        let from = (
            pool.to_string(),
            DecisionKey::new(since_ms, "", 0).with_slot(0),
        );
        let to = (
            pool.to_string(),
            DecisionKey {
                secs: i64::MAX,
                frac: u32::MAX,
            },
        );
        Ok(s.decisions
            .range(from..=to)
            .map(|(_, r)| r)
            .filter(|r| r.at_ms() > since_ms && region.is_none_or(|x| r.region == x))
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Leases in memory with the same conditional semantics as the DynamoDB table.
#[async_trait]
impl LeaseStore for MemoryRegion {
    async fn read(&self, key: &str) -> PortResult<Option<Lease>> {
        let mut s = self.lock();
        s.calls.lease_reads += 1;
        Ok(s.leases.get(key).cloned())
    }

    async fn acquire(
        &self,
        key: &str,
        holder: &str,
        expected_version: Option<u64>,
        duration: Duration,
        stamp: &Stamp,
    ) -> PortResult<Lease> {
        let mut s = self.lock();
        let current = s.leases.get(key);
        let (epoch, version) = match (current, expected_version) {
            (None, None) => (1, 1),
            (Some(l), Some(v)) if l.version == v => (l.epoch + 1, l.version + 1),
            (Some(l), _) => {
                return Err(PortError::Conflict(format!(
                    "lease {key} is held by {} (version {})",
                    l.holder, l.version
                )));
            }
            (None, Some(_)) => (1, 1),
        };
        let lease = Lease {
            key: key.to_string(),
            holder: holder.to_string(),
            epoch,
            version,
            duration_ms: duration.as_millis() as u64,
            renewed_at_ms: Some(stamp.at_ms),
            addr: stamp.addr.clone(),
        };
        s.leases.insert(key.to_string(), lease.clone());
        Ok(lease)
    }

    async fn renew(&self, key: &str, holder: &str, epoch: u64, at_ms: i64) -> PortResult<Lease> {
        let mut s = self.lock();
        match s.leases.get_mut(key) {
            Some(l) if l.holder == holder && l.epoch == epoch => {
                l.version += 1;
                l.renewed_at_ms = Some(at_ms);
                Ok(l.clone())
            }
            Some(l) => Err(PortError::Conflict(format!(
                "lease {key} is now held by {} at epoch {}",
                l.holder, l.epoch
            ))),
            None => Err(PortError::Conflict(format!("lease {key} was released"))),
        }
    }

    async fn release(&self, key: &str, holder: &str, epoch: u64) -> PortResult<()> {
        let mut s = self.lock();
        // Released leases keep their epoch and version (epochs never repeat); an empty holder
        // tells followers they may take over at once.
        if let Some(l) = s.leases.get_mut(key)
            && l.holder == holder
            && l.epoch == epoch
        {
            l.holder.clear();
            l.addr = None;
            l.version += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    #[test]
    fn asg_launches_registers_and_serves_after_launch_time() {
        let r = MemoryRegion::new("us-east-1", 1);
        r.create_asg(
            "g",
            "model-a",
            0,
            10,
            Duration::from_secs(360),
            Duration::ZERO,
        );
        rt().block_on(r.set_desired("g", 3)).expect("set");
        r.advance(0);
        let inv = rt()
            .block_on(r.pool_instances("model-a", "us-east-1"))
            .unwrap();
        assert_eq!(inv.instances.len(), 3);
        assert!(
            inv.instances
                .iter()
                .all(|i| i.state == InstanceState::Launching)
        );
        r.advance(359_999);
        assert_eq!(r.fleet("g"), (0, 0, vec![360_000; 3]));
        r.advance(360_000);
        assert_eq!(r.fleet("g").0, 3);
        let inv = rt()
            .block_on(r.pool_instances("model-a", "us-east-1"))
            .unwrap();
        assert!(
            inv.instances
                .iter()
                .all(|i| i.state == InstanceState::Available && i.last_heartbeat_ms == 360_000)
        );
    }

    #[test]
    fn scale_in_terminates_launching_first() {
        let r = MemoryRegion::new("us-east-1", 1);
        r.create_asg("g", "p", 0, 10, Duration::from_secs(60), Duration::ZERO);
        r.warm_start("g", 2, 0);
        rt().block_on(r.set_desired("g", 4)).unwrap();
        r.advance(1_000);
        assert_eq!(r.fleet("g"), (2, 0, vec![61_000, 61_000]));
        rt().block_on(r.set_desired("g", 1)).unwrap();
        r.advance(2_000);
        assert_eq!(r.fleet("g"), (1, 0, vec![]));
        assert_eq!(r.instances().len(), 1);
    }

    #[test]
    fn set_desired_outside_bounds_is_rejected_like_aws() {
        let r = MemoryRegion::new("us-east-1", 1);
        r.create_asg("g", "p", 1, 5, Duration::from_secs(60), Duration::ZERO);
        let e = rt().block_on(r.set_desired("g", 6)).unwrap_err();
        assert!(matches!(e, PortError::Permanent(_)));
        assert!(matches!(
            rt().block_on(r.describe("nope")).unwrap_err(),
            PortError::NotFound(_)
        ));
    }

    #[test]
    fn metrics_range_is_half_open_at_the_start() {
        let r = MemoryRegion::new("us-east-1", 1);
        for m in 1..=5 {
            r.put_rps("p", "us-east-1", m * 60_000, m as f64);
        }
        r.put_rps("p", "us-west-2", 120_000, 99.0);
        let s = rt()
            .block_on(r.rps_samples("p", "us-east-1", 120_000, 240_000))
            .unwrap();
        assert_eq!(s.iter().map(|x| x.rps).collect::<Vec<_>>(), vec![3.0, 4.0]);
    }

    #[test]
    fn lease_conditions_hold() {
        let r = MemoryRegion::new("us-east-1", 1);
        let rt = rt();
        let d = Duration::from_secs(15);
        let at = |ms: i64, addr: Option<&str>| Stamp {
            at_ms: ms,
            addr: addr.map(str::to_string),
        };
        let a = rt
            .block_on(r.acquire("k", "a", None, d, &at(1_000, Some("10.0.0.1:9464"))))
            .unwrap();
        assert_eq!((a.epoch, a.version), (1, 1));
        assert_eq!(
            (a.renewed_at_ms, a.addr.as_deref()),
            (Some(1_000), Some("10.0.0.1:9464"))
        );
        assert!(
            rt.block_on(r.acquire("k", "b", None, d, &at(1_000, None)))
                .is_err()
        );
        let a2 = rt.block_on(r.renew("k", "a", 1, 21_000)).unwrap();
        assert_eq!(a2.version, 2);
        assert_eq!(
            (a2.renewed_at_ms, a2.addr.as_deref()),
            (Some(21_000), Some("10.0.0.1:9464"))
        );
        // b saw version 1, but it moved on: the takeover must fail.
        assert!(
            rt.block_on(r.acquire("k", "b", Some(1), d, &at(22_000, None)))
                .is_err()
        );
        let b = rt
            .block_on(r.acquire("k", "b", Some(2), d, &at(50_000, None)))
            .unwrap();
        assert_eq!((b.holder.as_str(), b.epoch), ("b", 2));
        assert_eq!(b.addr, None, "a new holder's address replaces the old one");
        assert!(rt.block_on(r.renew("k", "a", 1, 50_000)).is_err());
        rt.block_on(r.release("k", "a", 1)).unwrap();
        assert_eq!(
            rt.block_on(r.read("k")).unwrap().unwrap().holder,
            "b",
            "a cannot release b's lease"
        );
        rt.block_on(r.release("k", "b", 2)).unwrap();
        let released = rt.block_on(r.read("k")).unwrap().unwrap();
        assert_eq!(released.addr, None);
        assert_eq!(r.calls().lease_reads, 2);
        assert_eq!(
            (released.holder.as_str(), released.epoch, released.version),
            ("", 2, 4)
        );
    }
}
