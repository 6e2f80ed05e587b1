//! The call plan: every AWS call the controller makes in a region over a span of time, with
//! the units each is billed in, for a deployment and its timings. `mrgc-autoscaler cost` prints
//! it as a monthly bill; the three-replica test against moto checks it against the calls it
//! counts. It is built from the same constants and pricing rules the code runs by (the service's
//! cadences, the lease timing defaults, the inventory's resync period, the CloudWatch period,
//! the meter's unit rules and the items' sizes), so the two cannot drift apart silently.
//!
//! Steady state is assumed: traffic inside the band (no scaling actions, so no ASG writes and no
//! drains), one RPS sample a minute per pool arriving before the cycle after it, no
//! `model_load_time` samples, no failed cleanup validations, at most 1,000 changes per stream
//! shard and cycle, and one leader per region for the whole span (a takeover adds one warm-up
//! read of the decision log per pool).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::aws::{
    CLOUDWATCH_METRICS_PER_REGION, cloudwatch_calls_for, cloudwatch_publishes, get_item_units,
    item_size, query_page_units, record_to_item, write_item_units,
};
use crate::core::{Action, DecisionKey, DecisionRecord, Outcome, ReasonCode};

use super::election::{
    DEFAULT_LEASE_DURATION, DEFAULT_RENEW_EVERY, DEFAULT_STANDBY_POLL, kill_takeover_bound,
    standby_read_period,
};
use super::observe::{MODEL_LOAD_REFRESH_MS, SAMPLE_PERIOD_MS};

/// A 30-day month.
pub const MONTH: Duration = Duration::from_secs(30 * 86_400);

/// What is deployed and how it is timed (the `run` flags of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub regions: u32,
    /// Replicas per region: one leads, the others stand by.
    pub replicas: u32,
    pub pools: u32,
    /// Instances per pool and region.
    pub instances: u32,
    pub interval: Duration,
    pub lease_duration: Duration,
    pub renew_every: Duration,
    /// The longest a standby goes between lease reads (it reads once per renewal if sooner).
    pub standby_poll: Duration,
    pub record_heartbeat: Duration,
    pub cloudwatch: bool,
    pub cloudwatch_every: Duration,
    /// Follow the inventory through DynamoDB Streams (else read it in full every cycle).
    pub streams: bool,
    pub resync_every: Duration,
    /// Open shards per streamed table (a small table has one; DynamoDB adds shards with
    /// partitions).
    pub stream_shards: u32,
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            regions: 3,
            replicas: 3,
            pools: 3,
            instances: 50,
            interval: Duration::from_secs(30),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_every: DEFAULT_RENEW_EVERY,
            standby_poll: DEFAULT_STANDBY_POLL,
            record_heartbeat: Duration::from_secs(600),
            cloudwatch: true,
            cloudwatch_every: crate::adapters::aws::CLOUDWATCH_DEFAULT_EVERY,
            streams: true,
            resync_every: crate::adapters::aws::DEFAULT_RESYNC_EVERY,
            stream_shards: 1,
        }
    }
}

/// Who makes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Leader,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standbys",
        }
    }
}

/// One kind of call in one region over the span.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub role: Role,
    /// The table's suffix (schema), or the service for calls on no table.
    pub target: &'static str,
    pub operation: &'static str,
    pub calls: f64,
    pub read_units: f64,
    pub write_units: f64,
    /// Written again in each other region's replica of a global table.
    pub replicated_write_units: f64,
    pub stream_read_units: f64,
    /// CloudWatch requests (PutMetricData).
    pub cloudwatch_requests: f64,
}

impl Line {
    fn new(role: Role, target: &'static str, operation: &'static str, calls: f64) -> Self {
        Line {
            role,
            target,
            operation,
            calls,
            read_units: 0.0,
            write_units: 0.0,
            replicated_write_units: 0.0,
            stream_read_units: 0.0,
            cloudwatch_requests: 0.0,
        }
    }
}

/// The sizes of the items the calls read and write, in bytes (DynamoDB's item size rules).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ItemSizes {
    pub lease: usize,
    pub record: usize,
    pub instance: usize,
    pub routing: usize,
    pub sample: usize,
}

impl ItemSizes {
    /// Sizes of seed-shaped items (every attribute the seed lists) and of the records and
    /// leases this controller writes.
    pub fn seed() -> Self {
        ItemSizes {
            lease: item_size(&example_lease()),
            record: item_size(&record_to_item(&example_record())),
            instance: item_size(&example_instance()),
            routing: item_size(&example_routing()),
            sample: item_size(&example_sample()),
        }
    }
}

/// How many times something every `period` happens in `span` (0 for a zero period).
fn times(span: Duration, period: Duration) -> f64 {
    if period.is_zero() {
        return 0.0;
    }
    span.as_secs_f64() / period.as_secs_f64()
}

/// Every call one region's replicas make over `span`.
pub fn plan(d: &Deployment, sizes: &ItemSizes, span: Duration) -> Vec<Line> {
    let pools = f64::from(d.pools);
    let n = d.instances as usize;
    let cycles = times(span, d.interval);
    let other_regions = f64::from(d.regions.saturating_sub(1));
    let mut lines = Vec::new();

    // Leader election (the regional lease table).
    let mut renew = Line::new(
        Role::Leader,
        "controller-leases",
        "UpdateItem",
        times(span, d.renew_every),
    );
    renew.write_units = renew.calls * write_item_units(sizes.lease);
    lines.push(renew);
    // A standby reads the lease when the lease it saw would expire unless renewed: once per
    // renewal while the leader lives. The leader's watch costs no DynamoDB call; a read it
    // triggers comes with a takeover (or a leader's death), not in steady state.
    let standbys = f64::from(d.replicas.saturating_sub(1));
    if standbys > 0.0 {
        let mut read = Line::new(
            Role::Standby,
            "controller-leases",
            "GetItem",
            standbys * times(span, standby_read_period(d.renew_every, d.standby_poll)),
        );
        // Eventually consistent: half the strongly consistent price.
        read.read_units = read.calls * get_item_units(sizes.lease) / 2.0;
        lines.push(read);
    }

    // Metrics: RPS once per new sample per pool; model_load_time every 15 minutes.
    let mut rps = Line::new(
        Role::Leader,
        "metrics",
        "Query",
        pools * times(span, Duration::from_millis(SAMPLE_PERIOD_MS as u64)),
    );
    rps.read_units = rps.calls * query_page_units(sizes.sample);
    lines.push(rps);
    let mut load = Line::new(
        Role::Leader,
        "metrics",
        "Query (model_load_time)",
        pools * times(span, Duration::from_millis(MODEL_LOAD_REFRESH_MS as u64)),
    );
    load.read_units = load.calls * query_page_units(0);
    lines.push(load);

    // The inventory: full reads at every resync with streams, every cycle without.
    let full_reads = if d.streams {
        times(span, d.resync_every)
    } else {
        cycles
    };
    let mut inst = Line::new(Role::Leader, "gpu-instances", "Query", pools * full_reads);
    inst.read_units = inst.calls * query_page_units(n * sizes.instance);
    lines.push(inst);
    let mut route = Line::new(Role::Leader, "routing-state", "Query", full_reads);
    route.read_units = route.calls * query_page_units(d.pools as usize * n * sizes.routing);
    lines.push(route);
    let mut failures = Line::new(Role::Leader, "cleanup-validation", "Query", full_reads);
    failures.read_units = failures.calls * query_page_units(0);
    lines.push(failures);
    if d.streams {
        let shards = f64::from(d.stream_shards.max(1));
        let mut get = Line::new(
            Role::Leader,
            "streams (3 tables)",
            "GetRecords",
            3.0 * shards * cycles,
        );
        get.stream_read_units = get.calls;
        lines.push(get);
        let restarts = times(span, d.resync_every);
        lines.push(Line::new(
            Role::Leader,
            "streams (3 tables)",
            "DescribeTable + DescribeStream + GetShardIterator",
            restarts * 3.0 * (2.0 + shards),
        ));
    }

    // The pool's group: described every cycle (Auto Scaling's API is not billed).
    lines.push(Line::new(
        Role::Leader,
        "autoscaling",
        "DescribeAutoScalingGroups",
        pools * cycles,
    ));

    // Decision records: steady state records a heartbeat per pool, fenced.
    let mut rec = Line::new(
        Role::Leader,
        "autoscaling-state",
        "TransactWriteItems",
        pools * times(span, d.record_heartbeat),
    );
    rec.write_units = rec.calls * 2.0 * write_item_units(sizes.record);
    rec.read_units = rec.calls * 2.0 * get_item_units(sizes.lease);
    rec.replicated_write_units = rec.calls * other_regions * write_item_units(sizes.record);
    lines.push(rec);

    if d.cloudwatch {
        let publishes = cloudwatch_publishes(d.interval, d.cloudwatch_every, span);
        let mut cw = Line::new(
            Role::Leader,
            "cloudwatch",
            "PutMetricData",
            publishes * cloudwatch_calls_for(1) as f64,
        );
        cw.cloudwatch_requests = cw.calls;
        lines.push(cw);
    }
    lines
}

/// On-demand prices in US dollars (us-east-1; see docs/cost.md for the sources).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub per_million_reads: f64,
    pub per_million_writes: f64,
    /// Replicated write request units of global tables.
    pub per_million_replicated_writes: f64,
    pub per_million_stream_reads: f64,
    pub per_thousand_cloudwatch_requests: f64,
    pub per_custom_metric_month: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            per_million_reads: 0.125,
            per_million_writes: 0.625,
            per_million_replicated_writes: 0.625,
            per_million_stream_reads: 0.20,
            per_thousand_cloudwatch_requests: 0.01,
            per_custom_metric_month: 0.30,
        }
    }
}

/// The whole deployment's bill over a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Bill {
    /// One region's lines (every region is alike).
    pub lines: Vec<Line>,
    pub regions: u32,
    pub read_units: f64,
    pub write_units: f64,
    pub replicated_write_units: f64,
    pub stream_read_units: f64,
    pub cloudwatch_requests: f64,
    pub custom_metrics: f64,
    pub dynamodb_dollars: f64,
    pub cloudwatch_dollars: f64,
    /// Upper bounds of the takeover after a kill -9 and after a SIGTERM of the leader (the
    /// latter through the leader's watch, and without it: at a standby's next read).
    pub kill_takeover: Duration,
    pub term_takeover: Duration,
    pub term_takeover_unwatched: Duration,
}

/// A SIGTERM takeover through the leader's watch: the release, the watch's answer, one lease
/// read and one conditional write, four round trips inside one region (a release that takes
/// longer than `service::RELEASE_TIMEOUT` is abandoned, and the standby waits out the lease).
pub const WATCHED_TERM_TAKEOVER: Duration = Duration::from_secs(1);

/// The bill of `d` over a month.
pub fn monthly_bill(d: &Deployment, sizes: &ItemSizes, prices: &Prices) -> Bill {
    let lines = plan(d, sizes, MONTH);
    let regions = f64::from(d.regions);
    let sum = |f: fn(&Line) -> f64| lines.iter().map(f).sum::<f64>() * regions;
    let read_units = sum(|l| l.read_units);
    let write_units = sum(|l| l.write_units);
    let replicated_write_units = sum(|l| l.replicated_write_units);
    let stream_read_units = sum(|l| l.stream_read_units);
    let cloudwatch_requests = sum(|l| l.cloudwatch_requests);
    let custom_metrics = if d.cloudwatch {
        CLOUDWATCH_METRICS_PER_REGION as f64 * regions
    } else {
        0.0
    };
    let m = 1e-6;
    Bill {
        dynamodb_dollars: read_units * m * prices.per_million_reads
            + write_units * m * prices.per_million_writes
            + replicated_write_units * m * prices.per_million_replicated_writes
            + stream_read_units * m * prices.per_million_stream_reads,
        cloudwatch_dollars: cloudwatch_requests / 1000.0 * prices.per_thousand_cloudwatch_requests
            + custom_metrics * prices.per_custom_metric_month,
        lines,
        regions: d.regions,
        read_units,
        write_units,
        replicated_write_units,
        stream_read_units,
        cloudwatch_requests,
        custom_metrics,
        kill_takeover: kill_takeover_bound(d.lease_duration, d.renew_every, d.standby_poll),
        term_takeover: WATCHED_TERM_TAKEOVER,
        term_takeover_unwatched: standby_read_period(d.renew_every, d.standby_poll),
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A lease as the elector writes it, held by a replica named as in Kubernetes.
pub fn example_lease() -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("lease_key".to_string(), s("autoscaler#us-east-1")),
        ("holder".to_string(), s("mrgc-autoscaler-7d9f8c6b5-x2x9q-1")),
        ("epoch".to_string(), n(12)),
        ("version".to_string(), n(482_113)),
        ("duration_ms".to_string(), n(24_000)),
        ("renewed_at_ms".to_string(), n(1_764_000_000_123_i64)),
        ("holder_addr".to_string(), s("10.42.117.203:9464")),
    ])
}

/// A steady-state decision (hold inside the band), as recorded.
pub fn example_record() -> DecisionRecord {
    DecisionRecord {
        model_pool: "model-a".into(),
        key: DecisionKey::new(1_764_000_000_123, "us-east-1", 0),
        region: "us-east-1".into(),
        current_capacity: 50,
        desired_capacity: 50,
        min_capacity: 2,
        max_capacity: 120,
        current_rps: Some(62.5),
        target_rps: 1.25,
        scaling_action: Action::None,
        reason_code: ReasonCode::WithinBand,
        reason: "utilisation 1.25 (62.5 rps on 50 serving + 0 launching) is inside the band \
                 1.00–1.50: hold at 50"
            .into(),
        rps_window: vec![62.5, 62.5, 62.5],
        serving: 50,
        launching: 0,
        held: 0,
        recommendation: 50,
        asg_desired: 50,
        controller_id: "mrgc-autoscaler-7d9f8c6b5-x2x9q-1".into(),
        leader_epoch: 12,
        policy_hash: "3f2a9c1d7e4b8a60".into(),
        dry_run: false,
        result: Outcome::Skipped("no change".into()),
        ttl: 1_764_000_000 + 30 * 86_400,
    }
}

/// An instance item with every attribute of the seed, as an instance registers itself.
pub fn example_instance() -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("instance_id".to_string(), s("i-0123456789abcdef0")),
        ("region".to_string(), s("us-east-1")),
        ("model_pool".to_string(), s("model-a")),
        ("state".to_string(), s("available")),
        ("queue_depth".to_string(), n(3)),
        ("last_heartbeat".to_string(), n(1_764_000_000)),
        ("launch_time".to_string(), n(1_763_900_000)),
        ("ip_address".to_string(), s("10.42.17.203")),
        ("subnet_id".to_string(), s("subnet-0a1b2c3d4e5f60718")),
        ("availability_zone".to_string(), s("us-east-1a")),
        (
            "metadata".to_string(),
            s(
                r#"{"instance_type":"p4d.24xlarge","ami":"ami-0c55b159cbfafe1f0","gpus":8,"model_version":"2026-10-01","driver":"550.54"}"#,
            ),
        ),
        ("ttl".to_string(), n(1_766_592_000)),
    ])
}

/// A routing-state item as routers write it.
pub fn example_routing() -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("instance_id".to_string(), s("i-0123456789abcdef0")),
        ("region".to_string(), s("us-east-1")),
        ("routing_score".to_string(), n(70)),
        ("queue_depth".to_string(), n(2)),
        ("avg_latency_ms".to_string(), n(412)),
        ("health_status".to_string(), s("healthy")),
        ("last_updated".to_string(), n(1_764_000_000)),
        ("subnet_cidr".to_string(), s("10.42.16.0/20")),
        ("ttl".to_string(), n(1_764_003_600)),
    ])
}

/// An RPS sample as routers write it (DESIGN §3's key convention).
pub fn example_sample() -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("metric_name".to_string(), s("rps#model-a#us-east-1")),
        ("timestamp".to_string(), n(1_764_000_060)),
        ("model_pool".to_string(), s("model-a")),
        ("region".to_string(), s("us-east-1")),
        ("value".to_string(), n(62.5)),
        ("unit".to_string(), s("Count/Second")),
        ("ttl".to_string(), n(1_766_592_060)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_meet_the_read_write_and_failover_goals() {
        let bill = monthly_bill(
            &Deployment::default(),
            &ItemSizes::seed(),
            &Prices::default(),
        );
        assert!(bill.read_units <= 1e6, "{}", bill.read_units);
        assert!(bill.write_units <= 0.5e6, "{}", bill.write_units);
        assert!(
            bill.cloudwatch_dollars <= 3.0,
            "{}",
            bill.cloudwatch_dollars
        );
        assert_eq!(bill.kill_takeover, Duration::from_millis(28_500));
        assert!(bill.term_takeover <= Duration::from_secs(5));
        assert_eq!(bill.term_takeover_unwatched, DEFAULT_RENEW_EVERY);
        // The standbys read once per renewal: 2 × 3 regions × a month / 20 s × 0.5.
        let standby: f64 = bill
            .lines
            .iter()
            .filter(|l| l.role == Role::Standby)
            .map(|l| l.read_units)
            .sum::<f64>()
            * 3.0;
        assert_eq!(standby.round(), 388_800.0);
    }

    #[test]
    fn a_shorter_standby_poll_costs_reads_and_shortens_the_takeovers() {
        let sizes = ItemSizes::seed();
        let at = |poll: u64| {
            monthly_bill(
                &Deployment {
                    standby_poll: Duration::from_secs(poll),
                    ..Deployment::default()
                },
                &sizes,
                &Prices::default(),
            )
        };
        let (default, two) = (at(24), at(2));
        assert_eq!(
            default,
            monthly_bill(&Deployment::default(), &sizes, &Prices::default())
        );
        // Ten reads per renewal instead of one.
        assert!((two.read_units - default.read_units - 9.0 * 388_800.0).abs() < 1.0);
        assert_eq!(two.kill_takeover, Duration::from_secs(26));
        assert_eq!(two.term_takeover_unwatched, Duration::from_secs(2));
    }

    #[test]
    fn without_streams_the_inventory_is_read_every_cycle() {
        let with = monthly_bill(
            &Deployment::default(),
            &ItemSizes::seed(),
            &Prices::default(),
        );
        let without = monthly_bill(
            &Deployment {
                streams: false,
                ..Deployment::default()
            },
            &ItemSizes::seed(),
            &Prices::default(),
        );
        assert!(without.read_units > with.read_units + 2e6);
        assert_eq!(without.stream_read_units, 0.0);
        assert!(with.stream_read_units > 0.0);
    }

    #[test]
    fn seed_items_have_the_sizes_the_units_assume() {
        let s = ItemSizes::seed();
        assert!(s.lease < 1024 && s.record < 1024, "{s:?}");
        assert!(s.instance > 300 && s.instance < 1024, "{s:?}");
        assert!(s.sample < 4096, "{s:?}");
    }
}
