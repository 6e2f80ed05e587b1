//! A pool's instances in one region, joined with routing health and the latest cleanup
//! validation (DESIGN §4), at a read cost that stays flat as the pool grows and with time.
//!
//! An informer, as Kubernetes controllers have: the three tables are read once (per pool, per
//! region), then followed through their DynamoDB streams (`streams::StreamFollower`), polled at
//! most once per `join_max_age` (so once per cycle, shared by the cycle's pools), and read in
//! full again every `resync_every` and after any gap or stream error. Heartbeats, state changes
//! (drains included), routing health and new validations all arrive as stream records, so the
//! counting sees what a full read would. Where the streams cannot be followed (not enabled,
//! not permitted) the tables are read in full every cycle, as below, and the start is retried
//! at the next resync. What a full read does:
//!
//! - instances: one Query of `model-pool-index` (pool, region), paged past 1 MB;
//! - routing health: one Query of `region-score-index` for the whole region, shared by the
//!   pools of one cycle (`join_max_age`). A BatchGetItem of the pool's instances would cost
//!   0.5 read unit *per item* (each item is rounded up to 4 KB), about 25 units for 50
//!   instances; the Query sums the item sizes before rounding: about 1–3 units for the region.
//!   Routing items without a `routing_score` are not in that index: routers cannot route to
//!   them either, and the instance then counts as if it had no routing item (not unhealthy);
//! - cleanup validation: failures are rare and validation records are history, so the fleet's
//!   failed validations are kept in memory, refreshed once per cycle by one Query of
//!   `status-timestamp-index` for the failures since the newest one seen (the first read takes
//!   them all). Only for an instance of the pool with a failure since it launched is its newest
//!   later validation looked up (a later pass clears it; that answer is remembered). A Query
//!   per instance would cost 0.5 read unit per instance and cycle.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::core::capacity::MAX_QUEUE_DEPTH;
use crate::core::{Health, InstanceRecord, InstanceState, Validation};
use crate::ports::{Inventory, PoolInventory, PortResult};
use crate::schema;

use super::item::{self, BadItem, Item};
use super::meter::{Op, one, write_item_units};
use super::streams::{Change, StreamFollower};
use super::{AwsClients, Service, port_error, query_pages};

/// How often the streamed tables are read in full again by default, even with no gap seen.
pub const DEFAULT_RESYNC_EVERY: Duration = Duration::from_secs(3600);

/// The informer's state: the three followers and what was read of the instances table.
struct Feed {
    instances: StreamFollower,
    routing: StreamFollower,
    cleanup: StreamFollower,
    /// When the streams were last (re)started with a full read after; None: not following.
    started: Option<Instant>,
    polled: Option<Instant>,
    /// The streams could not be started: read in full every cycle until then.
    unavailable_until: Option<Instant>,
    /// (pool, region) → instance id → item: the last full read plus the changes since, kept
    /// in id order (the order a pool's instances are returned in).
    pools: HashMap<(String, String), BTreeMap<String, Item>>,
}

impl Feed {
    fn following(&self) -> bool {
        self.started.is_some()
    }
}

/// Slack before the oldest launch time when looking for failed validations (clock skew
/// between the instance and the car wash).
const VALIDATION_SLACK_SECS: i64 = 3_600;

/// The cleanup-validation table's TTL: older failures are forgotten.
const FAILURE_HORIZON_SECS: i64 = 90 * 86_400;

/// Settled failures remembered, at most (then forgotten at once and looked up again).
const SUPERSEDED_CAPACITY: usize = 100_000;

/// Failed cleanup validations of the whole fleet (the table has no region), shared by every
/// pool: the newest failure per instance, read incrementally.
#[derive(Default)]
struct Failures {
    fetched: Option<Instant>,
    /// Newest failure time seen (Unix seconds).
    watermark: Option<i64>,
    /// instance → (newest failure time, its key text as stored)
    newest: HashMap<String, (f64, String)>,
    /// (instance, failure key text) whose failure a later validation superseded.
    superseded: HashSet<(String, String)>,
    /// While the cleanup table is followed: (instance, failure key text) found still failed,
    /// kept until the table's stream shows a new validation.
    confirmed: HashSet<(String, String)>,
    /// The cleanup table's stream showed a change: read the failures again.
    stale: bool,
}

struct RoutingSnapshot {
    region: String,
    fetched: Instant,
    health: HashMap<String, Result<Health, BadItem>>,
}

pub struct DynamoInventory {
    c: Arc<AwsClients>,
    instances_table: String,
    routing_table: String,
    cleanup_table: String,
    join_max_age: Duration,
    routing: Mutex<Option<RoutingSnapshot>>,
    failures: Mutex<Failures>,
    /// Follow the tables' streams (false: read them in full every cycle).
    streams: bool,
    resync_every: Duration,
    feed: Mutex<Feed>,
}

impl DynamoInventory {
    pub fn new(c: Arc<AwsClients>, join_max_age: Duration) -> Self {
        Self::with_streams(c, join_max_age, false, DEFAULT_RESYNC_EVERY)
    }

    /// An inventory that follows the tables' streams between full reads (`streams`), reading
    /// them in full at least every `resync_every`.
    pub fn with_streams(
        c: Arc<AwsClients>,
        join_max_age: Duration,
        streams: bool,
        resync_every: Duration,
    ) -> Self {
        let feed = Feed {
            instances: StreamFollower::new(&c.table(&schema::GPU_INSTANCES)),
            routing: StreamFollower::new(&c.table(&schema::ROUTING_STATE)),
            cleanup: StreamFollower::new(&c.table(&schema::CLEANUP_VALIDATION)),
            started: None,
            polled: None,
            unavailable_until: None,
            pools: HashMap::new(),
        };
        DynamoInventory {
            streams,
            resync_every,
            feed: Mutex::new(feed),
            instances_table: c.table(&schema::GPU_INSTANCES),
            routing_table: c.table(&schema::ROUTING_STATE),
            cleanup_table: c.table(&schema::CLEANUP_VALIDATION),
            c,
            join_max_age,
            routing: Mutex::new(None),
            failures: Mutex::new(Failures::default()),
        }
    }

    /// Forget the shared routing snapshot: the next pool reads routing health afresh. (Tests
    /// that run cycles back to back in less than `join_max_age` use it to count the reads one
    /// cycle makes.)
    /// While the streams are followed, the next read polls them instead (nothing is read in
    /// full again).
    pub async fn invalidate_joins(&self) {
        let mut feed = self.feed.lock().await;
        feed.polled = None;
        if !feed.following() {
            *self.routing.lock().await = None;
            self.failures.lock().await.fetched = None;
        }
    }

    /// Whether the tables are being followed through their streams now.
    pub async fn following_streams(&self) -> bool {
        self.feed.lock().await.following()
    }

    /// Bring the informer up to date: (re)start the streams when due (then everything is read
    /// in full again, lazily), else poll them at most once per `join_max_age` and apply what
    /// changed. A failure to follow is never an error of the read: the tables are then read in
    /// full.
    async fn sync(&self) {
        if !self.streams {
            return;
        }
        let mut feed = self.feed.lock().await;
        if feed.unavailable_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let resync = feed
            .started
            .is_none_or(|t| t.elapsed() >= self.resync_every);
        if !resync {
            if feed.polled.is_some_and(|t| t.elapsed() < self.join_max_age) {
                return;
            }
            match self.poll(&mut feed).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "a gap in the inventory's streams: reading the tables in full again")
                }
            }
        }
        if let Err(e) = self.restart(&mut feed).await {
            tracing::warn!(
                error = %e,
                retry_in_s = self.resync_every.as_secs(),
                "cannot follow the inventory's streams: reading the tables in full every cycle"
            );
            feed.started = None;
            feed.unavailable_until = Some(Instant::now() + self.resync_every);
            self.forget(&mut feed).await;
        }
    }

    /// Start the three streams at their tips, then forget what was read: each table is read
    /// in full on its next use.
    async fn restart(&self, feed: &mut Feed) -> PortResult<()> {
        feed.started = None;
        feed.unavailable_until = None;
        feed.instances.start(&self.c).await?;
        feed.routing.start(&self.c).await?;
        feed.cleanup.start(&self.c).await?;
        self.forget(feed).await;
        feed.started = Some(Instant::now());
        feed.polled = Some(Instant::now());
        Ok(())
    }

    async fn forget(&self, feed: &mut Feed) {
        feed.pools.clear();
        *self.routing.lock().await = None;
        let mut f = self.failures.lock().await;
        f.fetched = None;
        f.stale = true;
        f.confirmed.clear();
    }

    /// Poll the three streams and apply their changes.
    async fn poll(&self, feed: &mut Feed) -> PortResult<()> {
        let instances = feed.instances.poll(&self.c).await?;
        let routing = feed.routing.poll(&self.c).await?;
        let cleanup = feed.cleanup.poll(&self.c).await?;
        feed.polled = Some(Instant::now());
        for ch in instances {
            let Ok(id) = item::string(ch.item(), "instance_id").map(str::to_string) else {
                continue;
            };
            for items in feed.pools.values_mut() {
                items.remove(&id);
            }
            if let Change::Put(it) = ch {
                // As model-pool-index holds it: both keys present as strings.
                let key = match (it.get("model_pool"), it.get("region")) {
                    (
                        Some(aws_sdk_dynamodb::types::AttributeValue::S(p)),
                        Some(aws_sdk_dynamodb::types::AttributeValue::S(r)),
                    ) => (p.clone(), r.clone()),
                    _ => continue,
                };
                if let Some(items) = feed.pools.get_mut(&key) {
                    items.insert(id, it);
                }
            }
        }
        if !routing.is_empty() {
            let mut snap = self.routing.lock().await;
            if let Some(snap) = snap.as_mut() {
                for ch in routing {
                    let Ok(id) = item::string(ch.item(), "instance_id").map(str::to_string) else {
                        continue;
                    };
                    snap.health.remove(&id);
                    if let Change::Put(it) = ch {
                        // As region-score-index holds it: the region, and a numeric score.
                        let in_index = matches!(
                            it.get("region"),
                            Some(aws_sdk_dynamodb::types::AttributeValue::S(r)) if *r == snap.region
                        ) && matches!(
                            it.get("routing_score"),
                            Some(aws_sdk_dynamodb::types::AttributeValue::N(_))
                        );
                        if in_index {
                            snap.health
                                .insert(id, item::enumerated(&it, "health_status", Health::parse));
                        }
                    }
                }
            }
        }
        if !cleanup.is_empty() {
            let mut f = self.failures.lock().await;
            f.stale = true;
            f.confirmed.clear();
        }
        Ok(())
    }

    /// A pool's instances: from the informer while it follows the streams (the pool is read
    /// in full on first use), else by a full read.
    async fn pool_items(&self, pool: &str, region: &str) -> PortResult<Vec<Item>> {
        let mut feed = self.feed.lock().await;
        if !feed.following() {
            drop(feed);
            return self.query_instances(pool, region).await;
        }
        let key = (pool.to_string(), region.to_string());
        if let Some(items) = feed.pools.get(&key) {
            return Ok(items.values().cloned().collect());
        }
        let items = self.query_instances(pool, region).await?;
        // `instance_id` is the table's key: every item has it.
        let map = items
            .iter()
            .filter_map(|it| {
                item::string(it, "instance_id")
                    .ok()
                    .map(|id| (id.to_string(), it.clone()))
            })
            .collect();
        feed.pools.insert(key, map);
        Ok(items)
    }

    async fn query_instances(&self, pool: &str, region: &str) -> PortResult<Vec<Item>> {
        let idx = index(&schema::GPU_INSTANCES, "model-pool-index");
        query_pages(
            &self.c,
            &self.instances_table,
            &format!("reading the instances of {pool} in {region}"),
            None,
            || {
                self.c
                    .ddb
                    .query()
                    .table_name(&self.instances_table)
                    .index_name(idx.name)
                    .key_condition_expression("#p = :p AND #r = :r")
                    .expression_attribute_names("#p", idx.hash.name)
                    .expression_attribute_names("#r", idx.range.map_or("region", |k| k.name))
                    .expression_attribute_values(":p", item::s(pool))
                    .expression_attribute_values(":r", item::s(region))
            },
        )
        .await
    }

    async fn instances(&self, pool: &str, region: &str) -> PortResult<(Vec<InstanceRecord>, u32)> {
        self.sync().await;
        let items = self.pool_items(pool, region).await?;
        let mut out = Vec::with_capacity(items.len());
        let mut skipped = 0u32;
        for it in &items {
            match parse_instance(it) {
                Ok((rec, soft)) => {
                    if let Some(p) = soft {
                        self.c.bad.report_attribute(
                            schema::GPU_INSTANCES.suffix,
                            &item::key_text(it, &["instance_id"]),
                            &p,
                        );
                    }
                    out.push(rec)
                }
                Err(p) => {
                    skipped = skipped.saturating_add(1);
                    self.c.bad.report(
                        schema::GPU_INSTANCES.suffix,
                        &item::key_text(it, &["instance_id"]),
                        &p,
                    );
                }
            }
        }
        Ok((out, skipped))
    }

    /// Routing health of every instance in `region`, at most `join_max_age` old.
    async fn routing_health(
        &self,
        region: &str,
    ) -> PortResult<HashMap<String, Result<Health, BadItem>>> {
        let following = self.feed.lock().await.following();
        let mut cache = self.routing.lock().await;
        if let Some(s) = cache.as_ref()
            && s.region == region
            && (following || s.fetched.elapsed() < self.join_max_age)
        {
            return Ok(s.health.clone());
        }
        let idx = index(&schema::ROUTING_STATE, "region-score-index");
        let items = query_pages(
            &self.c,
            &self.routing_table,
            &format!("reading routing health in {region}"),
            None,
            || {
                self.c
                    .ddb
                    .query()
                    .table_name(&self.routing_table)
                    .index_name(idx.name)
                    .key_condition_expression("#r = :r")
                    .expression_attribute_names("#r", idx.hash.name)
                    .expression_attribute_values(":r", item::s(region))
            },
        )
        .await?;
        let mut health = HashMap::with_capacity(items.len());
        for it in &items {
            // An item without a usable id cannot be joined to anything: nothing to count.
            if let Ok(id) = item::string(it, "instance_id") {
                health.insert(
                    id.to_string(),
                    item::enumerated(it, "health_status", Health::parse),
                );
            }
        }
        *cache = Some(RoutingSnapshot {
            region: region.to_string(),
            fetched: Instant::now(),
            health: health.clone(),
        });
        Ok(health)
    }

    /// Bring the shared view of failed validations up to date: at most once per
    /// `join_max_age`, one Query for the failures since the newest one already seen (less
    /// `VALIDATION_SLACK_SECS` for late writers); the first read takes all of them.
    async fn refresh_failures(&self, f: &mut Failures, following: bool) -> PortResult<()> {
        if f.fetched.is_some() && following && !f.stale {
            return Ok(());
        }
        if !following && f.fetched.is_some_and(|t| t.elapsed() < self.join_max_age) {
            return Ok(());
        }
        let since = f
            .watermark
            .map_or(0, |w| (w - VALIDATION_SLACK_SECS).max(0));
        let idx = index(&schema::CLEANUP_VALIDATION, "status-timestamp-index");
        let items = query_pages(
            &self.c,
            &self.cleanup_table,
            "reading failed cleanup validations",
            None,
            || {
                self.c
                    .ddb
                    .query()
                    .table_name(&self.cleanup_table)
                    .index_name(idx.name)
                    .key_condition_expression("#s = :s AND #t >= :t")
                    .expression_attribute_names("#s", idx.hash.name)
                    .expression_attribute_names(
                        "#t",
                        idx.range.map_or("validation_timestamp", |k| k.name),
                    )
                    .expression_attribute_values(":s", item::s(Validation::Failed.as_str()))
                    .expression_attribute_values(":t", item::n(since))
            },
        )
        .await?;
        for it in &items {
            let parsed = item::string(it, "instance_id").and_then(|id| {
                let ts = item::number(it, "validation_timestamp")?;
                Ok((id, ts))
            });
            match parsed {
                Ok((id, ts)) => {
                    let raw = item::get_raw_number(it, "validation_timestamp").unwrap_or_default();
                    let newer = f.newest.get(id).is_none_or(|(t, _)| ts > *t);
                    if newer {
                        f.newest.insert(id.to_string(), (ts, raw));
                    }
                    f.watermark = Some(f.watermark.map_or(ts as i64, |w| w.max(ts as i64)));
                }
                Err(p) => self.c.bad.report(
                    schema::CLEANUP_VALIDATION.suffix,
                    &item::key_text(it, &["instance_id", "validation_timestamp"]),
                    &p,
                ),
            }
        }
        // Failures past the table's TTL (90 days) are gone from DynamoDB too.
        if let Some(w) = f.watermark {
            let horizon = (w - FAILURE_HORIZON_SECS) as f64;
            f.newest.retain(|_, (t, _)| *t >= horizon);
        }
        f.fetched = Some(Instant::now());
        f.stale = false;
        Ok(())
    }

    /// The instances among `instances` whose latest cleanup validation failed.
    async fn failed_validations(
        &self,
        instances: &[InstanceRecord],
    ) -> PortResult<HashSet<String>> {
        let following = self.feed.lock().await.following();
        let mut f = self.failures.lock().await;
        self.refresh_failures(&mut f, following).await?;
        let mut failed = HashSet::new();
        for i in instances {
            let Some((ts, raw)) = f.newest.get(&*i.instance_id).cloned() else {
                continue;
            };
            // A validation from before the instance launched is not about it.
            if ts < (i.launch_time_ms.div_euclid(1000) - VALIDATION_SLACK_SECS) as f64 {
                continue;
            }
            let key = (i.instance_id.to_string(), raw.clone());
            if f.superseded.contains(&key) {
                continue;
            }
            if following && f.confirmed.contains(&key) {
                failed.insert(i.instance_id.to_string());
                continue;
            }
            // Anything validated after the failure? The newest such validation decides.
            let later = query_pages(
                &self.c,
                &self.cleanup_table,
                &format!("reading the latest validation of {}", i.instance_id),
                Some(1),
                || {
                    self.c
                        .ddb
                        .query()
                        .table_name(&self.cleanup_table)
                        .key_condition_expression("#i = :i AND #t > :t")
                        .expression_attribute_names("#i", "instance_id")
                        .expression_attribute_names("#t", "validation_timestamp")
                        .expression_attribute_values(":i", item::s(&*i.instance_id))
                        .expression_attribute_values(":t", item::n(&raw))
                        .scan_index_forward(false)
                        .limit(1)
                },
            )
            .await?;
            let latest = match later.first() {
                None => Validation::Failed,
                Some(it) => match item::enumerated(it, "validation_status", Validation::parse) {
                    Ok(v) => v,
                    Err(p) => {
                        // A malformed later record proves nothing: the failure stands.
                        self.c.bad.report(
                            schema::CLEANUP_VALIDATION.suffix,
                            &item::key_text(it, &["instance_id", "validation_timestamp"]),
                            &p,
                        );
                        Validation::Failed
                    }
                },
            };
            if latest == Validation::Failed {
                failed.insert(i.instance_id.to_string());
                if following {
                    // Until the table's stream shows a new validation, it stays failed.
                    if f.confirmed.len() >= SUPERSEDED_CAPACITY {
                        f.confirmed.clear();
                    }
                    f.confirmed.insert(key);
                }
            } else {
                // Validation records are history: a later failure would be a newer failed
                // item, which the next refresh sees. This one is settled for good.
                if f.superseded.len() >= SUPERSEDED_CAPACITY {
                    f.superseded.clear();
                }
                f.superseded.insert(key);
            }
        }
        Ok(failed)
    }
}

fn index(t: &schema::TableSchema, name: &str) -> schema::Index {
    // The names passed here are literals of the schema module's own tables: a miss would be a
    // typo caught by every test that reads instances, so fall back to a never-matching index
    // rather than panic.
    t.indexes
        .iter()
        .find(|i| i.name == name)
        .copied()
        .unwrap_or(schema::Index {
            name: "missing-index",
            hash: t.hash,
            range: None,
        })
}

/// One instance item, checked: the attributes counting needs must be present and typed (else
/// the item is skipped). A `queue_depth` that is missing, not a whole number or beyond
/// `MAX_QUEUE_DEPTH` does not lose the instance, but is not believed either: it is reported
/// (the second value) and read as unknown, so the instance is never taken for idle.
pub(crate) fn parse_instance(it: &Item) -> Result<(InstanceRecord, Option<BadItem>), BadItem> {
    let instance_id = item::string(it, "instance_id")?.into();
    let region = item::string(it, "region")?.into();
    let model_pool = item::string(it, "model_pool")?.into();
    let state = item::enumerated(it, "state", InstanceState::parse)?;
    let last_heartbeat_ms = item::unix_secs_as_ms(it, "last_heartbeat")?;
    let launch_time_ms = item::unix_secs_as_ms(it, "launch_time")?;
    // queue_depth does not count capacity: a malformed one is not a reason to lose an
    // instance, but never a reason to think it idle.
    let (queue_depth, soft) = match item::count(it, "queue_depth") {
        Ok(q) if q <= MAX_QUEUE_DEPTH => (Some(q), None),
        Ok(q) => (
            None,
            Some(item::bad_value(
                "queue_depth",
                format!("{q} is beyond any real queue (at most {MAX_QUEUE_DEPTH})"),
            )),
        ),
        Err(p) => (None, Some(p)),
    };
    // Written by this controller when it starts a drain; malformed, the drain is not ours to
    // finish (the instance stays held), which is the safe side.
    let drain_started_ms = item::opt_number(it, "drain_started_at")
        .ok()
        .flatten()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| (v * 1000.0) as i64);
    let rec = InstanceRecord {
        instance_id,
        region,
        model_pool,
        state,
        queue_depth,
        last_heartbeat_ms,
        launch_time_ms,
        health: None,
        validation: None,
        drain_started_ms,
    };
    Ok((rec, soft))
}

/// The instances table's TTL after termination (the seed's 7 days).
const TERMINATED_TTL_SECS: i64 = 7 * 86_400;

impl DynamoInventory {
    /// One conditional UpdateItem of an instance's state; a failed condition is `Conflict`.
    async fn update_state(
        &self,
        instance_id: &str,
        update: &str,
        condition: &str,
        values: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) -> PortResult<()> {
        let mut req = self
            .c
            .ddb
            .update_item()
            .table_name(&self.instances_table)
            .key("instance_id", item::s(instance_id))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#s", "state")
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        if update.contains("#ttl") {
            req = req.expression_attribute_names("#ttl", "ttl");
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        let result = self
            .c
            .caller
            .call(Service::DynamoDb, "UpdateItem", req.send())
            .await;
        let consumed = result.as_ref().ok().and_then(|o| o.consumed_capacity());
        // An instance item is well under 1 KB: one write unit, refused or not.
        self.c.meter.book(
            &self.instances_table,
            "UpdateItem",
            Op::Write,
            one(consumed),
            0.0,
            write_item_units(0),
        );
        result
            .map(|_| ())
            .map_err(|e| port_error(&format!("updating instance {instance_id}"), &e))
    }
}

#[async_trait]
impl Inventory for DynamoInventory {
    async fn pool_instances(&self, pool: &str, region: &str) -> PortResult<PoolInventory> {
        let (mut instances, skipped) = self.instances(pool, region).await?;
        if instances.is_empty() {
            return Ok(PoolInventory { instances, skipped });
        }
        let health = self.routing_health(region).await?;
        for i in &mut instances {
            match health.get(&*i.instance_id) {
                Some(Ok(h)) => i.health = Some(*h),
                Some(Err(p)) => self.c.bad.report(
                    schema::ROUTING_STATE.suffix,
                    &format!("instance_id={}", i.instance_id),
                    p,
                ),
                None => {}
            }
        }
        let failed = self.failed_validations(&instances).await?;
        for i in &mut instances {
            if failed.contains(&*i.instance_id) {
                i.validation = Some(Validation::Failed);
            }
        }
        Ok(PoolInventory { instances, skipped })
    }

    async fn mark_draining(&self, instance_id: &str, at_ms: i64) -> PortResult<()> {
        self.update_state(
            instance_id,
            "SET #s = :draining, drain_started_at = :t",
            "#s IN (:available, :launching)",
            vec![
                (":draining", item::s(InstanceState::Draining.as_str())),
                (":available", item::s(InstanceState::Available.as_str())),
                (":launching", item::s(InstanceState::Launching.as_str())),
                (":t", item::n_f64(at_ms as f64 / 1000.0)),
            ],
        )
        .await
    }

    async fn undrain(&self, instance_id: &str) -> PortResult<()> {
        self.update_state(
            instance_id,
            "SET #s = :available REMOVE drain_started_at",
            "#s = :draining",
            vec![
                (":available", item::s(InstanceState::Available.as_str())),
                (":draining", item::s(InstanceState::Draining.as_str())),
            ],
        )
        .await
    }

    async fn mark_terminated(&self, instance_id: &str, at_ms: i64) -> PortResult<()> {
        self.update_state(
            instance_id,
            "SET #s = :terminated, #ttl = :ttl",
            "#s = :draining",
            vec![
                (":terminated", item::s(InstanceState::Terminated.as_str())),
                (":draining", item::s(InstanceState::Draining.as_str())),
                (":ttl", item::n(at_ms / 1000 + TERMINATED_TTL_SECS)),
            ],
        )
        .await
    }
}
