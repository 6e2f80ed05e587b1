//! Three replicas of the service for one region against moto, at the default lease timing,
//! each serving and advertising its lease watch as in production, with every AWS call counted
//! by an SDK interceptor on each replica's own clients: the counts (and the units the adapters
//! book from the items' sizes) match what `mrgc-autoscaler cost` predicts from the call plan,
//! within 10 %; the standbys call nothing but the lease's GetItem, once per renewal (the watch
//! they hold on the leader costs no call); the instances are read once and then followed
//! through their streams.
//!
//! The replicas run on a controller clock 20 times the wall's (a 30 s cycle every 1.5 s), so
//! ten controller minutes take 30 s.
//!
//! Print the counts: `scripts/moto cargo test --test cost_replicas -- --nocapture`

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use mrgc_autoscaler::adapters::aws::{AwsBackends, AwsClients, AwsOptions, Usage};
use mrgc_autoscaler::app::Settings;
use mrgc_autoscaler::app::clock::TokioClock;
use mrgc_autoscaler::app::election::ElectionConfig;
use mrgc_autoscaler::app::http::Status;
use mrgc_autoscaler::app::plan::{Deployment, ItemSizes, Role, plan};
use mrgc_autoscaler::app::service::{ServiceDeps, ServiceOptions, run_service};
use mrgc_autoscaler::core::policy::parse_sources;
use mrgc_autoscaler::ports::Clock;
use mrgc_autoscaler::schema;
use mrgc_autoscaler::telemetry::Metrics;

use support::Env;

const REGION: &str = "us-east-1";
const POOLS: [&str; 3] = ["model-a", "model-b", "model-c"];
const INSTANCES: usize = 50;
const SPEED: f64 = 20.0;
const WARM_UP: Duration = Duration::from_secs(90);
const MEASURED: Duration = Duration::from_secs(600);

/// Calls by (service, operation), counted once each operation ends (retries are one).
#[derive(Clone, Debug, Default)]
struct CallCounter(Arc<Mutex<BTreeMap<(String, String), u64>>>);

impl CallCounter {
    fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().unwrap().clone()
    }
    fn reset(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "cost-test-call-counter"
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, op) = cfg.load::<Metadata>().map_or_else(
            || ("unknown".to_string(), "unknown".to_string()),
            |m| (m.service().to_string(), m.name().to_string()),
        );
        *self.0.lock().unwrap().entry((service, op)).or_default() += 1;
        Ok(())
    }
}

struct Replica {
    id: String,
    calls: CallCounter,
    metrics: Metrics,
    aws: AwsBackends,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(
    env: &Env,
    id: &str,
    policies: &mrgc_autoscaler::core::PolicySet,
    clock: &TokioClock,
) -> Replica {
    let sdk = support::sdk_config(&env.endpoint, REGION).await;
    let calls = CallCounter::default();
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let asg = aws_sdk_autoscaling::Client::from_conf(
        aws_sdk_autoscaling::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let cw = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(
        aws_sdk_dynamodbstreams::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let metrics = Metrics::new(REGION);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the endpoints and the lease watch");
    let mut opts = AwsOptions::new(REGION, &env.prefix, Some(env.endpoint.clone()));
    // moto cannot speak CloudWatch's CBOR protocol; the plan is asked without it too.
    opts.cloudwatch = false;
    // One stream poll per cycle, as in production (10 s against a 30 s cycle): here a cycle
    // is 1.5 s of wall time and its three pools take far less than a second.
    opts.join_max_age = Duration::from_millis(1000);
    let replica_metrics = metrics.clone();
    let clients = AwsClients::from_clients(ddb, asg, cw, &opts, &metrics).with_streams(streams);
    let aws = AwsBackends::from_clients(clients, &opts);
    let (backends, leases) = aws.ports();
    let options = ServiceOptions {
        settings: Settings {
            region: REGION.into(),
            controller_id: id.into(),
            dry_run: false,
            record_heartbeat: Duration::from_secs(600),
        },
        interval: Duration::from_secs(30),
        election: ElectionConfig {
            advertise: Some(listener.local_addr().expect("bound").to_string()),
            ..ElectionConfig::new(REGION, id)
        },
        policy_paths: Vec::new(),
        policy_poll: Duration::from_secs(5),
        shadow: None,
        shadow_paths: Vec::new(),
    };
    let deps = ServiceDeps {
        backends,
        leases,
        clock: Arc::new(clock.clone()),
        status: Status::new(Duration::from_secs(30)),
        reload: Arc::new(tokio::sync::Notify::new()),
        listener: Some(listener),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let set = policies.clone();
    let task = tokio::spawn(async move {
        run_service(
            set,
            options,
            deps,
            metrics,
            async {
                let _ = stopped.await;
            },
            |_| {},
        )
        .await;
    });
    Replica {
        id: id.into(),
        calls,
        metrics: replica_metrics,
        aws,
        stop,
        task,
    }
}

fn usage_total(u: &BTreeMap<(String, String), Usage>) -> Usage {
    let mut t = Usage::default();
    for v in u.values() {
        t.requests += v.requests;
        t.read_units += v.read_units;
        t.write_units += v.write_units;
        t.stream_read_units += v.stream_read_units;
    }
    t
}

fn within(measured: f64, planned: f64, what: &str) {
    let diff = (measured - planned).abs();
    assert!(
        diff <= 0.10 * planned.max(1.0),
        "{what}: measured {measured:.1}, the plan says {planned:.1} (more than 10 % apart)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_cost_what_the_call_plan_says() {
    let endpoint = moto!();
    let env = Env::with_tables(&endpoint, REGION, "replicas").await;
    let t0_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let t0 = t0_ms / 1000;
    let end_s = t0 + ((WARM_UP + MEASURED).as_secs() as i64) + 300;
    let mut sources = Vec::new();
    for pool in POOLS {
        sources.push(env.seed_steady_pool(pool, INSTANCES, t0, Vec::new()).await);
        // 62.5 rps on 50 instances: inside the band, a steady hold. One sample a minute.
        let minute0 = t0 - t0 % 60;
        let rps: Vec<_> = (-10..)
            .map(|m| minute0 + m * 60)
            .take_while(|t| *t <= end_s)
            .map(|t| support::rps_item(pool, REGION, t, 62.5))
            .collect();
        env.put_many(&schema::METRICS, rps).await;
    }
    let policies = parse_sources(&sources).expect("valid policies");

    let clock = TokioClock::starting_at(t0_ms, SPEED);
    let mut replicas = Vec::new();
    for id in ["r1", "r2", "r3"] {
        replicas.push(start(&env, id, &policies, &clock).await);
    }
    let wall = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / SPEED);
    let until = |ms: i64| {
        let clock = clock.clone();
        async move {
            while clock.now_ms() < ms {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until(t0_ms + WARM_UP.as_millis() as i64).await;
    for r in &replicas {
        r.calls.reset();
        r.aws.clients.meter().reset();
    }
    let started = clock.now_ms();
    until(started + MEASURED.as_millis() as i64).await;
    let measured_ms = clock.now_ms() - started;
    let calls: Vec<_> = replicas.iter().map(|r| r.calls.snapshot()).collect();
    let usage: Vec<_> = replicas
        .iter()
        .map(|r| r.aws.clients.meter().snapshot())
        .collect();
    let mut leader_idx = None;
    let lease = mrgc_autoscaler::ports::LeaseStore::read(
        env.aws.leases.as_ref(),
        &mrgc_autoscaler::app::election::lease_key(REGION),
    )
    .await
    .expect("read the lease")
    .expect("a lease exists");
    for (i, r) in replicas.iter().enumerate() {
        if r.id == lease.holder {
            leader_idx = Some(i);
        }
    }
    let leader_idx = leader_idx.expect("one of the replicas leads");
    assert_eq!(lease.epoch, 1, "one leader throughout");
    let following = replicas[leader_idx].aws.inventory.following_streams().await;
    // A watch re-opens right after each answer ("held" every 55 s): look for a few seconds
    // rather than at one instant that could fall between two.
    let snapshot = || -> Vec<i64> {
        replicas
            .iter()
            .map(|r| r.metrics.lease_watch_open.get())
            .collect()
    };
    let expected: Vec<i64> = (0..replicas.len())
        .map(|i| i64::from(i != leader_idx))
        .collect();
    let mut watching = snapshot();
    for _ in 0..50 {
        if watching == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        watching = snapshot();
    }
    for r in replicas {
        let _ = r.stop.send(());
        let _ = tokio::time::timeout(wall(Duration::from_secs(600)), r.task).await;
    }

    // The standbys call nothing but the lease's GetItem.
    for (i, c) in calls.iter().enumerate() {
        if i == leader_idx {
            continue;
        }
        let ops: Vec<_> = c.keys().map(|(_, op)| op.as_str()).collect();
        assert_eq!(ops, vec!["GetItem"], "a standby called {c:?}");
    }
    assert!(
        following,
        "the leader follows the inventory through its streams"
    );
    for (i, w) in watching.iter().enumerate() {
        assert_eq!(
            *w,
            i64::from(i != leader_idx),
            "each standby holds a watch open on the leader, the leader none: {watching:?}"
        );
    }

    // Every call the adapters booked went through the interceptor, and the other way round.
    let mut all_calls: BTreeMap<String, u64> = BTreeMap::new();
    for c in &calls {
        for ((_, op), n) in c {
            *all_calls.entry(op.clone()).or_default() += n;
        }
    }
    let mut booked: BTreeMap<String, u64> = BTreeMap::new();
    for u in &usage {
        for ((_, op), v) in u {
            *booked.entry(op.clone()).or_default() += v.requests;
        }
    }
    for (op, n) in &booked {
        assert_eq!(
            all_calls.get(op),
            Some(n),
            "{op}: booked {n}, intercepted {all_calls:?}"
        );
    }
    let total = usage_total(&usage.iter().flat_map(|u| u.clone()).fold(
        BTreeMap::new(),
        |mut acc, (k, v)| {
            let e: &mut Usage = acc.entry(k).or_default();
            e.requests += v.requests;
            e.read_units += v.read_units;
            e.write_units += v.write_units;
            e.stream_read_units += v.stream_read_units;
            acc
        },
    ));

    // The plan for one region over the measured span.
    let d = Deployment {
        regions: 1,
        cloudwatch: false,
        ..Deployment::default()
    };
    let span = Duration::from_millis(measured_ms as u64);
    let lines = plan(&d, &ItemSizes::seed(), span);
    let planned = |op: &str, role: Option<Role>| -> f64 {
        lines
            .iter()
            .filter(|l| l.operation == op && role.is_none_or(|r| l.role == r))
            .map(|l| l.calls)
            .sum()
    };
    let sum = |f: fn(&mrgc_autoscaler::app::plan::Line) -> f64| lines.iter().map(f).sum::<f64>();
    println!(
        "measured over {:.0} controller seconds:",
        span.as_secs_f64()
    );
    for (op, n) in &all_calls {
        println!("  {op:<28} {n:>6} calls");
    }
    println!(
        "  read units {:.1} (plan {:.1}), write units {:.1} (plan {:.1}), stream reads {:.0} (plan {:.0})",
        total.read_units,
        sum(|l| l.read_units),
        total.write_units,
        sum(|l| l.write_units),
        total.stream_read_units,
        sum(|l| l.stream_read_units)
    );
    let n = |op: &str| all_calls.get(op).copied().unwrap_or(0) as f64;
    within(
        n("GetItem"),
        planned("GetItem", Some(Role::Standby)),
        "standby lease reads",
    );
    within(
        n("UpdateItem"),
        planned("UpdateItem", None),
        "lease renewals",
    );
    within(n("GetRecords"), planned("GetRecords", None), "stream reads");
    within(
        n("DescribeAutoScalingGroups"),
        planned("DescribeAutoScalingGroups", None),
        "group describes",
    );
    within(
        n("Query"),
        planned("Query", None) + planned("Query (model_load_time)", None),
        "queries",
    );
    within(total.read_units, sum(|l| l.read_units), "read units");
    within(total.write_units, sum(|l| l.write_units), "write units");
    within(
        total.stream_read_units,
        sum(|l| l.stream_read_units),
        "stream read units",
    );
}
