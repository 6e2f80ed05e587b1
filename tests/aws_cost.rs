//! What the controller costs in DynamoDB, measured: one region's controller (leader plus one
//! standby) runs 20 minutes of 30 s cycles for 3 pools of 50 instances each against moto, with
//! seed-shaped items (every attribute of the seed). Every DynamoDB call asks for
//! ReturnConsumedCapacity=TOTAL; since moto reports a constant per call, the units are also
//! computed from the bytes each call read or wrote by the on-demand pricing rules (see
//! `adapters::aws::meter`). The figures are extrapolated to a month for 3 regions and compared
//! with the seed's budget (10 M reads, 5 M writes a month for the whole system).
//!
//! Print the report: `scripts/moto cargo test --test aws_cost -- --nocapture`

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mrgc_autoscaler::adapters::aws::{Usage, item_size};
use mrgc_autoscaler::app::election::{ElectionConfig, Elector};
use mrgc_autoscaler::app::reconciler::{Reconciler, Settings};
use mrgc_autoscaler::core::policy::parse_sources;
use mrgc_autoscaler::ports::LeaseStore;
use mrgc_autoscaler::schema;

use support::{Env, instance_item, routing_item, validation_item};

const T0: i64 = 1_764_000_000;
const POOLS: [&str; 3] = ["model-a", "model-b", "model-c"];
const INSTANCES: usize = 50;
const INTERVAL_S: i64 = 30;
/// Controller time measured (moto answers a GSI Query in ~40 ms: a whole hour would take
/// minutes). Steady state repeats every 10 minutes (the record heartbeat).
const MINUTES: i64 = 20;
const HOURS_PER_MONTH: f64 = 30.0 * 24.0;
const REGIONS: f64 = 3.0;
const BUDGET_READS: f64 = 10e6;
const BUDGET_WRITES: f64 = 5e6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_dynamodb_cost_per_cycle_and_month() {
    let endpoint = moto!();
    let region = "us-east-1";
    let mut env = Env::with_tables(&endpoint, region, "cost").await;
    env.share_joins_for(Duration::from_secs(10)).await;

    // 50 instances per pool, serving at the setpoint (62.5 rps on 50): steady state.
    let mut policies = Vec::new();
    for pool in POOLS {
        // Heartbeats are not refreshed during the hour: the seeded policy's long timeout keeps
        // them fresh. One instance per pool failed a cleanup once and passed afterwards.
        let failed_once = validation_item(&format!("i-{pool}-0000"), T0 - 82_000, "failed");
        policies.push(
            env.seed_steady_pool(pool, INSTANCES, T0, vec![failed_once])
                .await,
        );
        let rps: Vec<_> = (-10..=MINUTES + 1)
            .map(|m| support::rps_item(pool, region, T0 + m * 60, 62.5))
            .collect();
        env.put_many(&schema::METRICS, rps).await;
    }
    let policies = parse_sources(&policies).expect("valid policies");

    let (backends, _) = env.aws.ports();
    let leases: Arc<dyn LeaseStore> = env.aws.leases.clone();
    let clock: Arc<dyn mrgc_autoscaler::ports::Clock> =
        Arc::new(mrgc_autoscaler::app::clock::ManualClock::new(T0 * 1000));
    let mut leader = Elector::new(
        leases.clone(),
        ElectionConfig::new(region, "leader"),
        clock.clone(),
    );
    let mut standby = Elector::new(leases, ElectionConfig::new(region, "standby"), clock);
    let settings = Settings {
        region: region.into(),
        controller_id: "leader".into(),
        dry_run: false,
        record_heartbeat: Duration::from_secs(600),
    };
    let mut reconciler = Reconciler::new(backends, settings, env.metrics.clone());
    let meter = env.aws.clients.meter().clone();
    meter.reset();

    // One hour in 5 s steps: the leader renews when due, the standby reads the lease when its
    // elector says (when the lease it saw would expire unless renewed: once per renewal); the
    // leader reconciles every 30 s.
    let mut cycles = 0u32;
    let mut recorded = 0u32;
    for tick in 0..MINUTES * 12 {
        let now = (T0 + tick * 5) * 1000 + 500;
        leader.tick(now).await;
        if standby.next_tick_in(now).is_zero() {
            standby.tick(now).await;
        }
        if tick % (INTERVAL_S / 5) == 0 {
            // Cycles run back to back here, 30 s apart in production (> join_max_age).
            env.aws.inventory.invalidate_joins().await;
            let report = reconciler
                .reconcile_all(&policies, now, &leader.leadership(now))
                .await;
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            assert_eq!(report.pools.len(), POOLS.len());
            recorded += report.pools.iter().filter(|p| p.recorded).count() as u32;
            cycles += 1;
        }
    }
    assert_eq!(i64::from(cycles), MINUTES * 2);
    let usage = meter.snapshot();
    let get = |t: &schema::TableSchema, op: &str| {
        usage
            .get(&(env.table(t), op.to_string()))
            .copied()
            .unwrap_or_default()
    };
    let pool_cycles = cycles * POOLS.len() as u32;
    // The read pattern this design promises: RPS once per new sample (a minute) per pool, the
    // first read covering the lookback; the model_load_time metric per pool every 15 minutes.
    let model_load_reads = POOLS.len() as u64 * (MINUTES as u64).div_ceil(15);
    assert_eq!(
        get(&schema::METRICS, "Query").requests,
        POOLS.len() as u64 * MINUTES as u64 + model_load_reads,
        "one RPS read per pool and new sample, not per cycle"
    );
    // The inventory is read once, then followed through the tables' streams: one GetRecords
    // per table (one shard each in moto) and cycle.
    assert!(env.aws.inventory.following_streams().await);
    assert_eq!(
        get(&schema::GPU_INSTANCES, "Query").requests,
        POOLS.len() as u64,
        "instances: one Query per pool, once"
    );
    assert_eq!(
        get(&schema::ROUTING_STATE, "Query").requests,
        1,
        "routing health: one Query for the region, once"
    );
    // Failed validations: one Query, plus one look-up, once, of the later validation of each
    // pool's failed-then-passed instance.
    assert_eq!(
        get(&schema::CLEANUP_VALIDATION, "Query").requests,
        1 + POOLS.len() as u64
    );
    for t in [
        &schema::GPU_INSTANCES,
        &schema::ROUTING_STATE,
        &schema::CLEANUP_VALIDATION,
    ] {
        assert_eq!(
            get(t, "GetRecords").requests,
            u64::from(cycles) - 1,
            "{}: one stream read per cycle after the first (which starts the streams)",
            t.suffix
        );
    }
    // Steady state: the first decision and a heartbeat every 10 minutes, no more.
    assert_eq!(
        i64::from(recorded),
        3 * MINUTES / 10,
        "per pool: the first record, then one every 10 minutes"
    );
    assert_eq!(
        get(&schema::AUTOSCALING_STATE, "TransactWriteItems").requests,
        u64::from(recorded)
    );

    print_report(&env, &usage, cycles, pool_cycles);
}

fn print_report(
    env: &Env,
    usage: &BTreeMap<(String, String), Usage>,
    cycles: u32,
    pool_cycles: u32,
) {
    // What was measured is MINUTES of one region's controller.
    let per_month = HOURS_PER_MONTH * 60.0 / MINUTES as f64 * REGIONS;
    println!();
    println!(
        "DynamoDB cost of one region's controller over {MINUTES} minutes: {cycles} cycles x {} pools x {INSTANCES} instances, leader + 1 standby",
        POOLS.len()
    );
    println!(
        "{:<22} {:<19} {:>8} {:>10} {:>10} {:>13} {:>13}",
        "table",
        "operation",
        "requests",
        "read units",
        "write units",
        "reads/month",
        "writes/month"
    );
    let mut total = Usage::default();
    let mut controller = Usage::default();
    let mut global_writes = 0.0;
    for ((table, op), u) in usage {
        let short = table
            .strip_prefix(&format!("{}-", env.prefix))
            .unwrap_or(table);
        println!(
            "{:<22} {:<19} {:>8} {:>10.1} {:>11.1} {:>13.0} {:>13.0}",
            short,
            op,
            u.requests,
            u.read_units,
            u.write_units,
            u.read_units * per_month,
            u.write_units * per_month
        );
        total.requests += u.requests;
        total.read_units += u.read_units;
        total.write_units += u.write_units;
        total.reported_read_units += u.reported_read_units;
        total.reported_write_units += u.reported_write_units;
        if short != schema::CONTROLLER_LEASES.suffix {
            controller.requests += u.requests;
            controller.read_units += u.read_units;
            controller.write_units += u.write_units;
            global_writes += u.write_units;
        }
    }
    let leases = Usage {
        requests: total.requests - controller.requests,
        read_units: total.read_units - controller.read_units,
        write_units: total.write_units - controller.write_units,
        ..Usage::default()
    };
    println!(
        "per pool and cycle (seed tables): {:.2} read units, {:.3} write units, {:.2} requests",
        controller.read_units / f64::from(pool_cycles),
        controller.write_units / f64::from(pool_cycles),
        controller.requests as f64 / f64::from(pool_cycles)
    );
    let line = |name: &str, u: &Usage, replicated: f64| {
        let reads = u.read_units * per_month;
        let writes = u.write_units * per_month;
        println!(
            "{name:<46} reads {:>9.0} ({:>5.1} % of 10 M)  writes {:>9.0} ({:>5.1} % of 5 M){}",
            reads,
            100.0 * reads / BUDGET_READS,
            writes,
            100.0 * writes / BUDGET_WRITES,
            if replicated > 0.0 {
                format!(
                    "; +{:.0} replicated writes in the 2 other replicas",
                    replicated * per_month * 2.0
                )
            } else {
                String::new()
            }
        );
    };
    println!("per month, 3 pools x 3 regions, 30 s interval:");
    line(
        "  seed tables (observe + record)",
        &controller,
        global_writes,
    );
    line("  leader election (regional lease table)", &leases, 0.0);
    line("  all", &total, global_writes);
    println!(
        "(moto reported {:.0} read / {:.0} write units for the same calls: a constant per call, not the real price)",
        total.reported_read_units, total.reported_write_units
    );
    print_levers(controller.read_units * per_month);
}

/// Read units of one Query returning `bytes`, eventually consistent.
fn query_units(bytes: usize) -> f64 {
    bytes.div_ceil(4096).max(1) as f64 * 0.5
}

fn projected_size(item: &support::Item, keep: &[&str]) -> usize {
    let only: support::Item = item
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    item_size(&only)
}

/// What the levers outside this adapter would bring, from the same items.
fn print_levers(measured_reads_per_month: f64) {
    let inst = instance_item(
        "i-0123456789abcdef0",
        "model-a",
        "us-east-1",
        "available",
        T0,
        T0,
    );
    let route = routing_item("i-0123456789abcdef0", "us-east-1", "healthy", 70.0);
    let n = INSTANCES;
    let pools = POOLS.len();
    let inst_keep = [
        "instance_id",
        "model_pool",
        "region",
        "state",
        "last_heartbeat",
        "launch_time",
    ];
    let route_keep = ["instance_id", "region", "routing_score", "health_status"];
    // Per region and cycle: metrics per pool, instances per pool, routing once, failures once.
    let per_cycle = |inst_size: usize, route_size: usize| {
        pools as f64 * 0.5
            + pools as f64 * query_units(n * inst_size)
            + query_units(pools * n * route_size)
            + 0.5
    };
    let month = |per_region_cycle: f64, interval_s: f64| {
        per_region_cycle * (HOURS_PER_MONTH * 3600.0 / interval_s) * REGIONS
    };
    let full = per_cycle(item_size(&inst), item_size(&route));
    let projected = per_cycle(
        projected_size(&inst, &inst_keep),
        projected_size(&route, &route_keep),
    );
    println!(
        "item sizes: instance {} B ({} B projected), routing {} B ({} B projected)",
        item_size(&inst),
        projected_size(&inst, &inst_keep),
        item_size(&route),
        projected_size(&route, &route_keep)
    );
    println!("levers (reads of the seed tables per month, 3 pools x 3 regions):");
    let row = |what: &str, reads: f64| {
        println!(
            "  {what:<78} {reads:>9.0} ({:>4.1} % of 10 M)",
            100.0 * reads / BUDGET_READS
        )
    };
    row("as measured", measured_reads_per_month);
    row(
        "model from the item sizes, ALL projections, 30 s",
        month(full, 30.0),
    );
    row(
        "INCLUDE projections (model-pool-index: state, heartbeat, launch; region-score-index: health), 30 s",
        month(projected, 30.0),
    );
    row("ALL projections, 60 s interval", month(full, 60.0));
    row("INCLUDE projections, 60 s interval", month(projected, 60.0));
    let lease_writes = |renew_s: f64| HOURS_PER_MONTH * 3600.0 / renew_s * REGIONS;
    println!(
        "lease renewals: every 5 s {:.0} writes/month ({:.1} % of 5 M); every 20 s {:.0} ({:.1} %)",
        lease_writes(5.0),
        100.0 * lease_writes(5.0) / BUDGET_WRITES,
        lease_writes(20.0),
        100.0 * lease_writes(20.0) / BUDGET_WRITES
    );
}
