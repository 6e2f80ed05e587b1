//! Narrow traits between the reconciler and the world. Each lists only the calls the
//! controller makes; backends implement them (in-memory region, AWS).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::core::{AsgState, DecisionKey, DecisionRecord, InstanceRecord, Outcome, Sample};

/// Errors a port reports, split the way the reconciler reacts to them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Worth retrying with backoff: throttling, timeouts, 5xx, connection resets.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying will not help until something changes: access denied, bad request.
    #[error("{0}")]
    Permanent(String),
    /// A conditional write lost: someone else holds the lease, or a fence failed.
    #[error("condition failed: {0}")]
    Conflict(String),
    /// The thing asked for does not exist (an ASG, a table).
    #[error("not found: {0}")]
    NotFound(String),
}

impl PortError {
    pub fn is_transient(&self) -> bool {
        matches!(self, PortError::Transient(_))
    }

    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PortError::Transient(_) => "transient",
            PortError::Permanent(_) => "permanent",
            PortError::Conflict(_) => "conflict",
            PortError::NotFound(_) => "not_found",
        }
    }
}

pub type PortResult<T> = Result<T, PortError>;

/// Per-pool metrics from the metrics table, keyed `<metric>#<pool>#<region>` (DESIGN §3):
/// requests per second as routers write them once a minute, and the seed's other metrics
/// (e.g. `model_load_time`, seconds).
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Samples of `metric` for `pool` in `region` with `from_ms < at_ms <= to_ms`, oldest
    /// first (`Sample::rps` holds the value, whatever its unit).
    async fn samples(
        &self,
        metric: &str,
        pool: &str,
        region: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> PortResult<Vec<Sample>>;

    /// RPS samples: `samples("rps", ...)`.
    async fn rps_samples(
        &self,
        pool: &str,
        region: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> PortResult<Vec<Sample>> {
        self.samples("rps", pool, region, from_ms, to_ms).await
    }
}

/// A pool's instances in one region, joined with routing health and the latest cleanup
/// validation, plus how many malformed items were skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolInventory {
    pub instances: Vec<InstanceRecord>,
    pub skipped: u32,
}

/// The instances table: read a pool's instances, and the two writes of a drain.
#[async_trait]
pub trait Inventory: Send + Sync {
    async fn pool_instances(&self, pool: &str, region: &str) -> PortResult<PoolInventory>;

    /// Mark an instance `draining` (routers stop sending it requests) with the time the drain
    /// began, only if it is still `available` or `launching`: `Conflict` otherwise.
    async fn mark_draining(&self, instance_id: &str, at_ms: i64) -> PortResult<()>;

    /// Mark a drained instance `terminated` (with the table's 7-day TTL), only if it is still
    /// `draining`: `Conflict` otherwise (DynamoDB's condition fails on a missing item too; the
    /// in-memory region says `NotFound`).
    async fn mark_terminated(&self, instance_id: &str, at_ms: i64) -> PortResult<()>;

    /// Return a draining instance to service (`available`, the drain mark removed), only if
    /// it is still `draining`: `Conflict` otherwise.
    async fn undrain(&self, instance_id: &str) -> PortResult<()>;
}

/// The Auto Scaling Group calls the controller makes.
#[async_trait]
pub trait Actuator: Send + Sync {
    async fn describe(&self, asg: &str) -> PortResult<AsgState>;
    /// Set the group's desired capacity (absolute, so a repeat or a late call is harmless).
    async fn set_desired(&self, asg: &str, desired: u32) -> PortResult<()>;
    /// Terminate one instance of the group and lower its desired capacity by one, so the
    /// group does not replace it. `NotFound` when the group does not hold the instance in
    /// service or pending (as of the last `describe`): it is never asked to terminate
    /// anything else, nor an instance it is already terminating.
    async fn terminate(&self, asg: &str, instance_id: &str) -> PortResult<()>;
    /// The instances the group held in service or pending at the last `describe`, when the
    /// backend lists them: a draining instance the group no longer holds is gone.
    fn members(&self, _asg: &str) -> Option<Vec<Arc<str>>> {
        None
    }
}

/// The proof a leader shows when it appends: the record is written only while the lease is
/// still held by `holder` at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease_key: String,
    pub holder: String,
    pub epoch: u64,
}

/// The autoscaling-state table.
#[async_trait]
pub trait DecisionLog: Send + Sync {
    /// Append a record; returns the key it was written under. With a fence, the write fails
    /// with `Conflict` unless the lease is held as the fence says. A key collision is retried
    /// with the next slot, never overwrites.
    async fn append(
        &self,
        record: &DecisionRecord,
        fence: Option<&Fence>,
    ) -> PortResult<DecisionKey>;

    /// Set the outcome of a record appended as `pending` (under `record.key`), once its plan
    /// ran. Only a pending record changes.
    async fn settle(&self, record: &DecisionRecord, outcome: &Outcome) -> PortResult<()>;

    /// Records for `pool` after `since_ms`, newest first, at most `limit`; `region` filters.
    async fn history(
        &self,
        pool: &str,
        region: Option<&str>,
        since_ms: i64,
        limit: usize,
    ) -> PortResult<Vec<DecisionRecord>>;
}

/// A leadership lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub holder: String,
    pub epoch: u64,
    /// Bumped by every write; followers watch it to tell a live leader from a dead one.
    pub version: u64,
    pub duration_ms: u64,
    /// When the holder last wrote the lease, by the holder's own clock (Unix ms). A hint for
    /// scheduling a standby's next read, never for deciding a takeover: another host's clock
    /// is not trusted.
    pub renewed_at_ms: Option<i64>,
    /// Where the holder serves its lease watch (`ip:port`), when it advertises one.
    pub addr: Option<String>,
}

/// What a holder writes beside its claim: when it wrote (its own clock, Unix ms) and where it
/// serves the lease watch. Standbys use both only to time their reads and to hear of a release
/// early; a takeover still needs the same version seen for a whole lease by the standby's own
/// clock, or a released lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    pub at_ms: i64,
    pub addr: Option<String>,
}

/// Conditional lease writes (the regional controller-leases table).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    async fn read(&self, key: &str) -> PortResult<Option<Lease>>;
    /// Create the lease if absent, or take it over if its version is still `expected_version`.
    /// The new lease has `holder`, epoch + 1 and version + 1.
    /// `stamp` is written with it (`addr` None: no watch address).
    async fn acquire(
        &self,
        key: &str,
        holder: &str,
        expected_version: Option<u64>,
        duration: Duration,
        stamp: &Stamp,
    ) -> PortResult<Lease>;
    /// Renew if still held by `holder` at `epoch`: bumps the version and sets the renewal time
    /// to `at_ms` (the holder's clock).
    async fn renew(&self, key: &str, holder: &str, epoch: u64, at_ms: i64) -> PortResult<Lease>;
    /// Give the lease up if still held by `holder` at `epoch`: the holder (and its watch
    /// address) becomes empty and the version moves on, the epoch stays (epochs never repeat).
    async fn release(&self, key: &str, holder: &str, epoch: u64) -> PortResult<()>;
}

/// Time, as the controller sees it. `now_ms` is Unix milliseconds; `sleep` takes controller
/// time (the embedded region may run faster than the wall clock).
#[async_trait]
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
    async fn sleep(&self, d: Duration);
}

/// The backends a reconciler talks to: one implementation of each port.
#[derive(Clone)]
pub struct Backends {
    pub metrics: Arc<dyn MetricsSource>,
    pub inventory: Arc<dyn Inventory>,
    pub actuator: Arc<dyn Actuator>,
    pub log: Arc<dyn DecisionLog>,
    pub gauges: Option<Arc<dyn GaugeSink>>,
}

/// Per-pool gauges published once per cycle by the leader, every pool of the region in one
/// batch (CloudWatch in production: one PutMetricData call per cycle, not one per pool).
#[async_trait]
pub trait GaugeSink: Send + Sync {
    /// Publish the gauges of `pools` (pool name, gauges) in `region`. Empty: nothing is sent.
    async fn publish(&self, region: &str, pools: &[(String, PoolGauges)]) -> PortResult<()>;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolGauges {
    pub rps: Option<f64>,
    pub serving: u32,
    pub launching: u32,
    pub desired: u32,
    pub utilisation: Option<f64>,
}
