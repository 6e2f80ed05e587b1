//! The AWS adapters against a real AWS-compatible server (moto), through the real SDK clients.
//! Run with `scripts/test`, or `scripts/moto cargo test --test aws_moto`. Each test uses its
//! own table prefix (and ASG names), so they run in parallel on one server.

mod support;

use std::process::Command;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use mrgc_autoscaler::adapters::aws::tables::{self, TablesError};
use mrgc_autoscaler::app::reconciler::{Leadership, Reconciler, Settings};
use mrgc_autoscaler::core::{
    Action, DecisionKey, DecisionRecord, Health, InstanceState, Outcome, ReasonCode, Validation,
};
use mrgc_autoscaler::ports::{
    Actuator, DecisionLog, Fence, Inventory, LeaseStore, MetricsSource, PortError, Stamp,
};
use mrgc_autoscaler::schema;

use support::{Env, instance_item, n, routing_item, s, validation_item};

const T0: i64 = 1_764_000_000; // a whole minute, in seconds

fn settings(region: &str) -> Settings {
    Settings {
        region: region.to_string(),
        controller_id: format!("test-{region}"),
        dry_run: false,
        record_heartbeat: Duration::from_secs(600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_create_is_idempotent() {
    let endpoint = moto!();
    let env = Env::connect(&endpoint, "us-east-1", &support::unique_prefix("idem")).await;
    let first = tables::create_tables(&env.aws.clients, &schema::ALL, Duration::from_secs(60))
        .await
        .expect("first create");
    assert_eq!(first.len(), schema::ALL.len());
    assert!(
        first.iter().all(|r| r.created && r.ttl_enabled_now),
        "{first:?}"
    );
    let second = tables::create_tables(&env.aws.clients, &schema::ALL, Duration::from_secs(60))
        .await
        .expect("second create");
    assert!(
        second
            .iter()
            .all(|r| !r.created && !r.ttl_enabled_now && r.warnings.is_empty()),
        "{second:?}"
    );
    assert_eq!(
        tables::verify_tables(&env.aws.clients, &schema::ALL)
            .await
            .expect("tables match"),
        Vec::<String>::new()
    );
    // TTL is on `ttl` and the global tables stream new and old images.
    let ttl = env
        .ddb
        .describe_time_to_live()
        .table_name(env.table(&schema::AUTOSCALING_STATE))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        Some("ttl")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_create_refuses_a_conflicting_table_and_changes_nothing() {
    let endpoint = moto!();
    let prefix = support::unique_prefix("conflict");
    let env = Env::connect(&endpoint, "us-east-1", &prefix).await;
    // Someone made the metrics table with a string sort key.
    env.ddb
        .create_table()
        .table_name(env.table(&schema::METRICS))
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("metric_name")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("timestamp")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("metric_name")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("timestamp")
                .key_type(KeyType::Range)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let err = tables::create_tables(&env.aws.clients, &schema::ALL, Duration::from_secs(60))
        .await
        .expect_err("a conflicting table must be an error");
    let TablesError::Differ(diffs) = &err else {
        panic!("expected Differ, got {err}")
    };
    let metrics = env.table(&schema::METRICS);
    assert!(
        diffs
            .iter()
            .any(|d| d.contains(&metrics) && d.contains("sort key is `timestamp` (S)")),
        "{diffs:?}"
    );
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("index `region-timestamp-index` is missing")),
        "{diffs:?}"
    );
    // Nothing was created or altered. ListTables returns 100 names a page: a server that other
    // tests share holds more, so every page is read.
    let mut ours: Vec<String> = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let page = env
            .ddb
            .list_tables()
            .set_exclusive_start_table_name(start.take())
            .send()
            .await
            .unwrap();
        ours.extend(
            page.table_names()
                .iter()
                .filter(|t| t.starts_with(&prefix))
                .cloned(),
        );
        match page.last_evaluated_table_name() {
            Some(last) => start = Some(last.to_string()),
            None => break,
        }
    }
    assert_eq!(ours, vec![metrics.clone()]);

    // The command says so and exits non-zero.
    let out = Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"))
        .args(["tables", "create", "--table-prefix", &prefix])
        .args(["--endpoint-url", &endpoint, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("run mrgc-autoscaler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG: {stderr}");
    assert!(stderr.contains("sort key is `timestamp` (S)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_loop_scales_the_asg_and_records_its_decisions() {
    let endpoint = moto!();
    let region = "us-east-1";
    let env = Env::with_tables(&endpoint, region, "loop").await;
    let asg = format!("{}-model-a", env.prefix);
    env.create_asg(&asg, 1, 30, 4).await;
    let policies = support::policy("model-a", 2, 20, &[(region, &asg)]);
    // Four instances serving, routers report 10 rps: 2.5 per instance, above the band.
    let mut items = Vec::new();
    for k in 0..4 {
        let id = format!("i-loop{k:04}");
        items.push(instance_item(
            &id,
            "model-a",
            region,
            "available",
            T0,
            T0 - 3_600,
        ));
        env.put(
            &schema::ROUTING_STATE,
            routing_item(&id, region, "healthy", 80.0),
        )
        .await;
    }
    env.put_many(&schema::GPU_INSTANCES, items).await;
    for m in 0..5 {
        env.put_rps("model-a", T0 - m * 60, 10.0).await;
    }
    let (backends, _) = env.aws.ports();
    let mut r = Reconciler::new(backends, settings(region), env.metrics.clone());
    let now = T0 * 1000 + 5_000;

    let c1 = r.reconcile_all(&policies, now, &Leadership::sole()).await;
    assert!(c1.errors.is_empty(), "{:?}", c1.errors);
    let d1 = &c1.pools[0];
    assert_eq!(
        d1.decision.action,
        Action::ScaleUp,
        "{}",
        d1.decision.reason
    );
    assert_eq!(d1.decision.desired, 8); // ceil(10 / 1.25)
    assert_eq!(d1.outcome, Outcome::Applied);
    assert_eq!(env.asg_desired(&asg).await, 8);

    // The four new instances register as launching; the routers see the same load.
    // The serving ones keep heartbeating.
    let mut registered: Vec<_> = (0..4)
        .map(|k| {
            instance_item(
                &format!("i-loop{k:04}"),
                "model-a",
                region,
                "available",
                T0 + 60,
                T0 - 3_600,
            )
        })
        .collect();
    registered.extend((4..8).map(|k| {
        instance_item(
            &format!("i-loop{k:04}"),
            "model-a",
            region,
            "launching",
            T0 + 10,
            T0 + 10,
        )
    }));
    env.put_many(&schema::GPU_INSTANCES, registered).await;
    env.put_rps("model-a", T0 + 60, 10.0).await;
    let c2 = r
        .reconcile_all(&policies, now + 60_000, &Leadership::sole())
        .await;
    let d2 = &c2.pools[0];
    assert_eq!(d2.decision.action, Action::None, "{}", d2.decision.reason);
    assert_eq!((d2.decision.serving, d2.decision.launching), (4, 4));
    assert!(d2.recorded, "a new reason is recorded");
    // Unchanged: not recorded again before the heartbeat.
    let c3 = r
        .reconcile_all(&policies, now + 90_000, &Leadership::sole())
        .await;
    assert!(
        !c3.pools[0].recorded,
        "{:?} / {:?}",
        c2.pools[0].decision, c3.pools[0].decision
    );
    assert_eq!(env.asg_desired(&asg).await, 8);

    let history = env
        .aws
        .log
        .history("model-a", Some(region), now - 1, 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "{history:#?}");
    assert_eq!(history[0].scaling_action, Action::None);
    assert_eq!(history[0].reason_code, ReasonCode::WithinBand);
    assert_eq!(history[1].scaling_action, Action::ScaleUp);
    assert_eq!(history[1].asg_desired, 8);
    assert_eq!(history[1].current_rps, Some(10.0));
    assert_eq!(history[1].result, Outcome::Applied);
    assert_eq!(history[1].controller_id, "test-us-east-1");
    assert!(history[0].at_ms() > history[1].at_ms());

    // The history command prints the same, newest first.
    let out = Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"))
        .args(["history", "--pool", "model-a", "--region", region, "--json"])
        .args(["--since", "100000d", "--table-prefix", &env.prefix])
        .args(["--endpoint-url", &endpoint])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("run mrgc-autoscaler history");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["scaling_action"], "none");
    assert_eq!(lines[1]["scaling_action"], "scale-up");
    assert_eq!(lines[1]["reason_code"], "above_band");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_desired_is_clamped_to_the_groups_own_bounds() {
    let endpoint = moto!();
    let env = Env::connect(&endpoint, "us-east-1", &support::unique_prefix("clamp")).await;
    let asg = format!("{}-g", env.prefix);
    env.create_asg(&asg, 2, 6, 3).await;
    let a = &env.aws.actuator;
    let state = a.describe(&asg).await.unwrap();
    assert_eq!((state.min, state.max, state.desired), (2, 6, 3));
    a.set_desired(&asg, 50).await.unwrap();
    assert_eq!(
        env.asg_desired(&asg).await,
        6,
        "moto would take 50; we must not ask"
    );
    a.set_desired(&asg, 0).await.unwrap();
    assert_eq!(env.asg_desired(&asg).await, 2);
    assert!(matches!(
        a.describe("no-such-group").await,
        Err(PortError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_pages_past_the_one_megabyte_page() {
    let endpoint = moto!();
    let region = "us-west-2";
    let env = Env::with_tables(&endpoint, region, "paging").await;
    // 240 instances of ~6 KB: about 1.4 MB, more than one page.
    let pad = "x".repeat(6_000);
    let items: Vec<_> = (0..240)
        .map(|k| {
            let mut i = instance_item(
                &format!("i-page{k:05}"),
                "model-p",
                region,
                "available",
                T0,
                T0,
            );
            i.insert("padding".into(), s(&pad));
            i
        })
        .collect();
    env.put_many(&schema::GPU_INSTANCES, items).await;
    // Another pool and another region in the same index must not leak in.
    env.put(
        &schema::GPU_INSTANCES,
        instance_item("i-other-pool", "model-q", region, "available", T0, T0),
    )
    .await;
    env.put(
        &schema::GPU_INSTANCES,
        instance_item(
            "i-other-region",
            "model-p",
            "us-east-1",
            "available",
            T0,
            T0,
        ),
    )
    .await;
    env.aws.clients.meter().reset();
    let inv = env
        .aws
        .inventory
        .pool_instances("model-p", region)
        .await
        .unwrap();
    assert_eq!(inv.instances.len(), 240);
    assert_eq!(inv.skipped, 0);
    let pages = env.aws.clients.meter().snapshot()
        [&(env.table(&schema::GPU_INSTANCES), "Query".to_string())]
        .requests;
    assert!(pages >= 2, "expected several pages, got {pages}");
}

fn record(pool: &str, region: &str, at_ms: i64, reason: &str) -> DecisionRecord {
    DecisionRecord {
        model_pool: pool.into(),
        key: DecisionKey::new(at_ms, region, 0),
        region: region.into(),
        current_capacity: 4,
        desired_capacity: 5,
        min_capacity: 2,
        max_capacity: 20,
        current_rps: Some(6.5),
        target_rps: 1.25,
        scaling_action: Action::ScaleUp,
        reason_code: ReasonCode::AboveBand,
        reason: reason.into(),
        rps_window: vec![6.0, 6.5],
        serving: 4,
        launching: 0,
        held: 0,
        recommendation: 6,
        asg_desired: 5,
        controller_id: format!("c-{region}"),
        leader_epoch: 1,
        policy_hash: "h".into(),
        dry_run: false,
        result: Outcome::Applied,
        ttl: at_ms / 1000 + 30 * 86_400,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_deciding_in_the_same_millisecond_lose_no_record() {
    let endpoint = moto!();
    let env = Env::with_tables(&endpoint, "us-east-1", "regions").await;
    // One table stands for the global table's replica: every regional controller writes it.
    let logs: Vec<Env> = three_controllers(&endpoint, &env.prefix).await;
    let at = T0 * 1000 + 123;
    let regions = ["us-east-1", "us-east-2", "us-west-2"];
    let recs: Vec<DecisionRecord> = (0..3)
        .map(|k| record("model-a", regions[k], at, &format!("r{k}")))
        .collect();
    let (a, b, c) = tokio::join!(
        logs[0].aws.log.append(&recs[0], None),
        logs[1].aws.log.append(&recs[1], None),
        logs[2].aws.log.append(&recs[2], None),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    // Two records of one region in one millisecond (a shadow policy): the second takes the
    // next slot instead of overwriting.
    env.aws
        .log
        .append(&record("model-a", regions[0], at, "r0-second"), None)
        .await
        .unwrap();
    // A retry of an identical record (lost response) is not written twice.
    env.aws
        .log
        .append(&record("model-a", regions[1], at, "r1"), None)
        .await
        .unwrap();
    let all = env
        .aws
        .log
        .history("model-a", None, at - 1, 100)
        .await
        .unwrap();
    let mut reasons: Vec<&str> = all.iter().map(|r| r.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(reasons, ["r0", "r0-second", "r1", "r2"]);
    assert!(all.iter().all(|r| r.at_ms() == at));
    let east2 = env
        .aws
        .log
        .history("model-a", Some("us-east-2"), at - 1, 100)
        .await
        .unwrap();
    assert_eq!(east2.len(), 1);
    assert_eq!(east2[0].reason, "r1");
}

/// Three controllers (of three regions) on the same tables.
async fn three_controllers(endpoint: &str, prefix: &str) -> Vec<Env> {
    let mut v = Vec::new();
    for _ in 0..3 {
        // All through the us-east-1 endpoint: moto keeps tables per region and does not
        // replicate, so this is the one replica every record lands in.
        v.push(Env::connect(endpoint, "us-east-1", prefix).await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_readable_with_the_seeds_plain_query() {
    let endpoint = moto!();
    let env = Env::with_tables(&endpoint, "us-east-1", "seedq").await;
    let now_s = T0 + 7_200;
    env.aws
        .log
        .append(
            &record("model-a", "us-east-1", (now_s - 400) * 1000, "old"),
            None,
        )
        .await
        .unwrap();
    env.aws
        .log
        .append(
            &record("model-a", "us-east-1", (now_s - 20) * 1000 + 250, "new"),
            None,
        )
        .await
        .unwrap();
    // The seed's access pattern: model_pool = :pool AND timestamp > :time (Unix seconds),
    // newest first, Limit 1. (`timestamp` is a DynamoDB reserved word, hence #ts.)
    let out = env
        .ddb
        .query()
        .table_name(env.table(&schema::AUTOSCALING_STATE))
        .key_condition_expression("model_pool = :pool AND #ts > :time")
        .expression_attribute_names("#ts", "timestamp")
        .expression_attribute_values(":pool", s("model-a"))
        .expression_attribute_values(":time", n(now_s - 300))
        .scan_index_forward(false)
        .limit(1)
        .send()
        .await
        .unwrap();
    let items = out.items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].get("reason"), Some(&s("new")));
    // The seed's attributes are all there.
    for attr in [
        "model_pool",
        "timestamp",
        "region",
        "current_capacity",
        "desired_capacity",
        "min_capacity",
        "max_capacity",
        "current_rps",
        "target_rps",
        "scaling_action",
        "reason",
        "ttl",
    ] {
        assert!(items[0].contains_key(attr), "missing {attr}");
    }
    let ts: f64 = match items[0].get("timestamp") {
        Some(aws_sdk_dynamodb::types::AttributeValue::N(x)) => x.parse().unwrap(),
        other => panic!("timestamp {other:?}"),
    };
    assert_eq!(
        ts.floor() as i64,
        now_s - 20,
        "timestamp stays Unix seconds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_append_fails_after_the_lease_moved() {
    let endpoint = moto!();
    let env = Env::with_tables(&endpoint, "us-east-1", "fence").await;
    let leases = &env.aws.leases;
    let key = "autoscaler#us-east-1";
    let d = Duration::from_secs(15);
    let a = leases
        .acquire(key, "a", None, d, &Stamp::default())
        .await
        .unwrap();
    let fence_a = Fence {
        lease_key: key.into(),
        holder: "a".into(),
        epoch: a.epoch,
    };
    let at = T0 * 1000;
    env.aws
        .log
        .append(&record("model-a", "us-east-1", at, "by a"), Some(&fence_a))
        .await
        .unwrap();
    // b takes over after seeing a's version unchanged.
    let b = leases
        .acquire(key, "b", Some(a.version), d, &Stamp::default())
        .await
        .unwrap();
    assert_eq!((b.holder.as_str(), b.epoch), ("b", 2));
    let err = env
        .aws
        .log
        .append(
            &record("model-a", "us-east-1", at + 1, "late a"),
            Some(&fence_a),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Conflict(_)), "{err:?}");
    let fence_b = Fence {
        lease_key: key.into(),
        holder: "b".into(),
        epoch: b.epoch,
    };
    env.aws
        .log
        .append(
            &record("model-a", "us-east-1", at + 2, "by b"),
            Some(&fence_b),
        )
        .await
        .unwrap();
    let reasons: Vec<String> = env
        .aws
        .log
        .history("model-a", None, at - 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.reason)
        .collect();
    assert_eq!(reasons, ["by b", "by a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keep_the_in_memory_semantics() {
    let endpoint = moto!();
    let env = Env::with_tables(&endpoint, "us-east-1", "lease").await;
    let r = &env.aws.leases;
    let d = Duration::from_secs(15);
    let at = |ms: i64, addr: Option<&str>| Stamp {
        at_ms: ms,
        addr: addr.map(str::to_string),
    };
    assert_eq!(r.read("k").await.unwrap(), None);
    let a = r
        .acquire("k", "a", None, d, &at(1_000, Some("10.0.0.1:9464")))
        .await
        .unwrap();
    assert_eq!((a.epoch, a.version, a.duration_ms), (1, 1, 15_000));
    assert_eq!(
        (a.renewed_at_ms, a.addr.as_deref()),
        (Some(1_000), Some("10.0.0.1:9464"))
    );
    assert!(matches!(
        r.acquire("k", "b", None, d, &at(1_000, None)).await,
        Err(PortError::Conflict(_))
    ));
    let a2 = r.renew("k", "a", 1, 21_000).await.unwrap();
    assert_eq!(a2.version, 2);
    assert_eq!(
        (a2.renewed_at_ms, a2.addr.as_deref()),
        (Some(21_000), Some("10.0.0.1:9464"))
    );
    // What a standby reads: the renewal time and the address, for its schedule and its watch.
    let read = r.read("k").await.unwrap().unwrap();
    assert_eq!(read, a2);
    // b saw version 1, but it moved on: the takeover must fail.
    assert!(matches!(
        r.acquire("k", "b", Some(1), d, &at(22_000, None)).await,
        Err(PortError::Conflict(_))
    ));
    let b = r
        .acquire("k", "b", Some(2), d, &at(50_000, None))
        .await
        .unwrap();
    assert_eq!((b.holder.as_str(), b.epoch, b.version), ("b", 2, 3));
    assert_eq!(
        b.addr, None,
        "a holder without an address removes the old one"
    );
    assert!(matches!(
        r.renew("k", "a", 1, 50_000).await,
        Err(PortError::Conflict(_))
    ));
    r.release("k", "a", 1).await.unwrap();
    assert_eq!(
        r.read("k").await.unwrap().unwrap().holder,
        "b",
        "a cannot release b's lease"
    );
    let b2 = r
        .acquire("k", "b2", Some(3), d, &at(60_000, Some("[::1]:9464")))
        .await
        .unwrap();
    assert_eq!(b2.addr.as_deref(), Some("[::1]:9464"));
    r.release("k", "b2", 3).await.unwrap();
    let released = r.read("k").await.unwrap().unwrap();
    assert_eq!(
        (released.holder.as_str(), released.epoch, released.version),
        ("", 3, 5)
    );
    assert_eq!(released.addr, None, "a released lease names no address");
    // Absent lease with an expected version: created, as in memory.
    let c = r
        .acquire("k2", "c", Some(7), d, &Stamp::default())
        .await
        .unwrap();
    assert_eq!((c.epoch, c.version), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_health_and_the_latest_cleanup_validation_join_the_instances() {
    let endpoint = moto!();
    let region = "us-east-2";
    let env = Env::with_tables(&endpoint, region, "join").await;
    let ids = [
        "i-ok",
        "i-unhealthy",
        "i-failed",
        "i-failed-then-passed",
        "i-no-routing",
    ];
    for id in ids {
        env.put(
            &schema::GPU_INSTANCES,
            instance_item(id, "model-j", region, "available", T0, T0 - 600),
        )
        .await;
    }
    for (id, h) in [
        ("i-ok", "healthy"),
        ("i-unhealthy", "unhealthy"),
        ("i-failed", "degraded"),
        ("i-failed-then-passed", "healthy"),
    ] {
        env.put(&schema::ROUTING_STATE, routing_item(id, region, h, 50.0))
            .await;
    }
    env.put(
        &schema::CLEANUP_VALIDATION,
        validation_item("i-failed", T0 - 300, "passed"),
    )
    .await;
    env.put(
        &schema::CLEANUP_VALIDATION,
        validation_item("i-failed", T0 - 200, "failed"),
    )
    .await;
    env.put(
        &schema::CLEANUP_VALIDATION,
        validation_item("i-failed-then-passed", T0 - 200, "failed"),
    )
    .await;
    env.put(
        &schema::CLEANUP_VALIDATION,
        validation_item("i-failed-then-passed", T0 - 100, "passed"),
    )
    .await;
    // A failure of an instance long gone, before any of ours launched.
    env.put(
        &schema::CLEANUP_VALIDATION,
        validation_item("i-ok", T0 - 90_000, "failed"),
    )
    .await;
    let mut inv = env
        .aws
        .inventory
        .pool_instances("model-j", region)
        .await
        .unwrap();
    inv.instances
        .sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let got: Vec<(&str, Option<Health>, Option<Validation>)> = inv
        .instances
        .iter()
        .map(|i| (&*i.instance_id, i.health, i.validation))
        .collect();
    assert_eq!(
        got,
        vec![
            ("i-failed", Some(Health::Degraded), Some(Validation::Failed)),
            ("i-failed-then-passed", Some(Health::Healthy), None),
            ("i-no-routing", None, None),
            ("i-ok", Some(Health::Healthy), None),
            ("i-unhealthy", Some(Health::Unhealthy), None),
        ]
    );
    assert!(
        inv.instances
            .iter()
            .all(|i| i.state == InstanceState::Available
                && i.last_heartbeat_ms == T0 * 1000
                && i.launch_time_ms == (T0 - 600) * 1000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_items_are_skipped_counted_and_the_decision_still_happens() {
    let endpoint = moto!();
    let region = "us-east-1";
    let env = Env::with_tables(&endpoint, region, "bad").await;
    let asg = format!("{}-model-b", env.prefix);
    env.create_asg(&asg, 0, 30, 3).await;
    let policies = support::policy("model-b", 1, 20, &[(region, &asg)]);
    for k in 0..3 {
        env.put(
            &schema::GPU_INSTANCES,
            instance_item(
                &format!("i-good{k}"),
                "model-b",
                region,
                "available",
                T0,
                T0 - 600,
            ),
        )
        .await;
    }
    let base = |id: &str| instance_item(id, "model-b", region, "available", T0, T0 - 600);
    let mut missing = base("i-missing");
    missing.remove("last_heartbeat");
    let mut wrong_type = base("i-wrong-type");
    wrong_type.insert("state".into(), n(1));
    let mut string_number = base("i-string-number");
    string_number.insert("last_heartbeat".into(), s(&T0.to_string()));
    let mut unknown = base("i-unknown-state");
    unknown.insert("state".into(), s("zombie"));
    for it in [missing, wrong_type, string_number, unknown] {
        env.put(&schema::GPU_INSTANCES, it).await;
    }
    // A routing item with an unknown health and a metrics sample with a string value.
    env.put(
        &schema::ROUTING_STATE,
        routing_item("i-good0", region, "sickly", 10.0),
    )
    .await;
    let mut bad_rps = support::rps_item("model-b", region, T0 - 60, 0.0);
    bad_rps.insert("value".into(), s("lots"));
    env.put(&schema::METRICS, bad_rps).await;
    env.put_rps("model-b", T0, 7.5).await;

    let inv = env
        .aws
        .inventory
        .pool_instances("model-b", region)
        .await
        .unwrap();
    assert_eq!(inv.instances.len(), 3);
    assert_eq!(inv.skipped, 4);
    for reason in [
        "missing_attribute",
        "wrong_type",
        "string_for_number",
        "unknown_state",
    ] {
        assert_eq!(env.bad_items("gpu-instances", reason), 1, "{reason}");
    }
    assert_eq!(env.bad_items("routing-state", "unknown_state"), 1);
    let samples = env
        .aws
        .metrics
        .rps_samples("model-b", region, (T0 - 300) * 1000, T0 * 1000)
        .await
        .unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].rps, 7.5);
    assert_eq!(env.bad_items("metrics", "string_for_number"), 1);

    // The decision happens on the three good instances: 7.5 rps on 3 is 2.5, scale up.
    let (backends, _) = env.aws.ports();
    let mut r = Reconciler::new(backends, settings(region), env.metrics.clone());
    let c = r
        .reconcile_all(&policies, T0 * 1000 + 1_000, &Leadership::sole())
        .await;
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let d = &c.pools[0].decision;
    assert_eq!((d.serving, d.action, d.desired), (3, Action::ScaleUp, 6));
    assert!(
        d.reason.contains("4 malformed instance items skipped"),
        "{}",
        d.reason
    );
    assert_eq!(env.asg_desired(&asg).await, 6);
    // Read again: counted again, still skipped.
    let again = env
        .aws
        .inventory
        .pool_instances("model-b", region)
        .await
        .unwrap();
    assert_eq!(again.skipped, 4);
    assert_eq!(env.bad_items("gpu-instances", "unknown_state"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rps_samples_cover_the_window_of_one_pool_and_region() {
    let endpoint = moto!();
    let env = Env::with_tables(&endpoint, "us-east-1", "rps").await;
    for m in 1..=5 {
        env.put_rps("model-a", T0 + m * 60, m as f64).await;
    }
    // Same minute, other pool and other region: separate keys, nothing overwritten.
    env.put(
        &schema::METRICS,
        support::rps_item("model-b", "us-east-1", T0 + 120, 99.0),
    )
    .await;
    env.put(
        &schema::METRICS,
        support::rps_item("model-a", "us-west-2", T0 + 120, 98.0),
    )
    .await;
    let got = env
        .aws
        .metrics
        .rps_samples("model-a", "us-east-1", (T0 + 120) * 1000, (T0 + 240) * 1000)
        .await
        .unwrap();
    let v: Vec<(i64, f64)> = got.iter().map(|s| (s.at_ms, s.rps)).collect();
    assert_eq!(v, vec![((T0 + 180) * 1000, 3.0), ((T0 + 240) * 1000, 4.0)]);
    let calls = env
        .metrics
        .aws_calls
        .with_label_values(&["dynamodb", "Query"])
        .get();
    assert_eq!(calls, 1, "one Query per pool and window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_backend_aws_decides_records_and_releases_its_lease_on_sigterm() {
    let endpoint = moto!();
    let region = "us-east-1";
    let env = Env::with_tables(&endpoint, region, "run").await;
    let asg = format!("{}-model-r", env.prefix);
    env.create_asg(&asg, 0, 30, 2).await;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    for k in 0..2 {
        env.put(
            &schema::GPU_INSTANCES,
            instance_item(
                &format!("i-run{k}"),
                "model-r",
                region,
                "available",
                now_s,
                now_s - 600,
            ),
        )
        .await;
    }
    env.put_rps("model-r", now_s - now_s % 60, 5.0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("model-r.toml"),
        format!("pool = \"model-r\"\nmin = 1\nmax = 20\n\n[regions.{region}]\nasg = \"{asg}\"\n"),
    )
    .expect("write policy");
    let child = Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"))
        .args([
            "run",
            "--backend",
            "aws",
            "--region",
            region,
            "--interval",
            "1s",
        ])
        .args(["--table-prefix", &env.prefix, "--endpoint-url", &endpoint])
        .args([
            "--no-cloudwatch",
            "--listen",
            "127.0.0.1:0",
            "--controller-id",
            "run-test",
            "--policies",
        ])
        .arg(dir.path())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start mrgc-autoscaler run");
    // 5 rps on 2 instances is above the band: it scales the group up and records it.
    let mut desired = 0;
    for _ in 0..100 {
        desired = env.asg_desired(&asg).await;
        if desired == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The shell's own `kill`: no procps needed.
    let terminated = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .expect("send SIGTERM");
    assert!(terminated.success());
    let out = child.wait_with_output().expect("wait for the controller");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(desired, 4, "{stderr}");
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let records = env
        .aws
        .log
        .history("model-r", Some(region), 0, 10)
        .await
        .unwrap();
    assert!(
        records.iter().any(|r| r.scaling_action == Action::ScaleUp
            && r.controller_id == "run-test"
            && r.leader_epoch == 1),
        "{records:#?}"
    );
    let lease = env
        .aws
        .leases
        .read("autoscaler#us-east-1")
        .await
        .unwrap()
        .expect("the lease exists");
    assert_eq!(
        (lease.holder.as_str(), lease.epoch),
        ("", 1),
        "released on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_drains_then_terminates_with_a_decrement() {
    let endpoint = moto!();
    let region = "us-east-1";
    let env = Env::with_tables(&endpoint, region, "drain").await;
    let asg = format!("{}-model-a", env.prefix);
    env.create_asg(&asg, 1, 30, 6).await;
    let policies = support::policy("model-a", 1, 20, &[(region, &asg)]);
    let ids = env.asg_members(&asg).await;
    assert_eq!(ids.len(), 6);
    // The instances register as the group launches them; the idlest, oldest one is the
    // victim: queue 0 (the others 3), launched first.
    let mut items = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let mut it = instance_item(
            id,
            "model-a",
            region,
            "available",
            T0,
            T0 - 3_600 + k as i64,
        );
        if k == 1 {
            it.insert("queue_depth".into(), n(0));
        }
        items.push(it);
        env.put(
            &schema::ROUTING_STATE,
            routing_item(id, region, "healthy", 80.0),
        )
        .await;
    }
    env.put_many(&schema::GPU_INSTANCES, items).await;
    for m in 0..5 {
        env.put_rps("model-a", T0 - m * 60, 2.5).await;
    }
    let (backends, _) = env.aws.ports();
    let mut r = Reconciler::new(backends, settings(region), env.metrics.clone());
    let now = T0 * 1000 + 5_000;

    let c1 = r.reconcile_all(&policies, now, &Leadership::sole()).await;
    assert!(c1.errors.is_empty(), "{:?}", c1.errors);
    let d1 = &c1.pools[0];
    assert_eq!(
        d1.decision.action,
        Action::ScaleDown,
        "{}",
        d1.decision.reason
    );
    assert_eq!(d1.outcome, Outcome::Applied);
    assert!(
        d1.decision.reason.contains(&format!("draining {}", ids[1])),
        "{}",
        d1.decision.reason
    );
    // Marked draining with the time the drain began; the group untouched.
    let victim = env.instance(&ids[1]).await;
    assert_eq!(victim.get("state"), Some(&s("draining")));
    assert_eq!(victim.get("drain_started_at"), Some(&n(T0 + 5)));
    assert_eq!(env.asg_desired(&asg).await, 6);

    // Its agent heartbeats after routers saw the mark: still no queued work.
    for id in &ids {
        env.ddb
            .update_item()
            .table_name(env.table(&schema::GPU_INSTANCES))
            .key("instance_id", s(id))
            .update_expression("SET last_heartbeat = :h")
            .expression_attribute_values(":h", n(T0 + 30))
            .send()
            .await
            .unwrap();
    }
    // Next cycle: its queue is empty, so it is terminated and the group lowered by one.
    let c2 = r
        .reconcile_all(&policies, now + 30_000, &Leadership::sole())
        .await;
    assert!(c2.errors.is_empty(), "{:?}", c2.errors);
    assert_eq!(env.asg_desired(&asg).await, 5);
    let members = env.asg_members(&asg).await;
    assert!(!members.contains(&ids[1]), "{members:?}");
    let victim = env.instance(&ids[1]).await;
    assert_eq!(victim.get("state"), Some(&s("terminated")));
    assert_eq!(victim.get("ttl"), Some(&n(T0 + 35 + 7 * 86_400)));
    // An instance the group does not hold is never sent to TerminateInstanceInAutoScalingGroup.
    let foreign = env
        .aws
        .ports()
        .0
        .actuator
        .terminate(&asg, "i-0000000000not0ours")
        .await;
    assert!(
        matches!(foreign, Err(PortError::NotFound(_))),
        "{foreign:?}"
    );
    assert_eq!(env.asg_desired(&asg).await, 5);
}

/// Defect: a garbage `queue_depth` was read as 0, so an instance reporting `{"N":"1e30"}` or
/// `{"S":"7"}` was drained first and terminated as "empty" with its requests queued. Such an
/// instance still counts (its other attributes are fine), its queue is unknown (counted as a
/// bad attribute), and it is never taken for idle: the victims are the instances with known,
/// small queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_queue_depth_is_never_read_as_idle() {
    let endpoint = moto!();
    let region = "us-east-1";
    let env = Env::with_tables(&endpoint, region, "queue").await;
    let base = |id: &str| instance_item(id, "model-q", region, "available", T0, T0 - 600);
    let mut huge = base("i-huge");
    huge.insert("queue_depth".into(), n("1e30"));
    let mut string = base("i-string");
    string.insert("queue_depth".into(), s("7"));
    let mut missing = base("i-missing");
    missing.remove("queue_depth");
    let mut idle = base("i-idle");
    idle.insert("queue_depth".into(), n(0));
    let mut busy = base("i-busy");
    busy.insert("queue_depth".into(), n(9));
    for it in [huge, string, missing, idle, busy] {
        env.put(&schema::GPU_INSTANCES, it).await;
    }
    let inv = env
        .aws
        .inventory
        .pool_instances("model-q", region)
        .await
        .unwrap();
    assert_eq!(
        (inv.instances.len(), inv.skipped),
        (5, 0),
        "none is skipped"
    );
    let queue = |id: &str| {
        inv.instances
            .iter()
            .find(|i| &*i.instance_id == id)
            .map(|i| i.queue_depth)
            .unwrap()
    };
    assert_eq!(queue("i-huge"), None);
    assert_eq!(queue("i-string"), None);
    assert_eq!(queue("i-missing"), None);
    assert_eq!(queue("i-idle"), Some(0));
    assert_eq!(queue("i-busy"), Some(9));
    assert_eq!(env.bad_items("gpu-instances", "out_of_range"), 1);
    assert_eq!(env.bad_items("gpu-instances", "string_for_number"), 1);
    assert_eq!(env.bad_items("gpu-instances", "missing_attribute"), 1);
    // Three victims to pick: the known queues go first, then the unknown ones.
    let rules = mrgc_autoscaler::core::policy::Instances::default();
    let victims = mrgc_autoscaler::core::capacity::pick_victims(
        &inv.instances,
        2,
        usize::MAX,
        &rules,
        T0 * 1000,
    );
    let ids: Vec<&str> = victims.iter().map(|v| &*v.instance_id).collect();
    assert_eq!(ids, ["i-idle", "i-busy"]);
}

/// Configuration errors have their own exit code, which the systemd unit's
/// RestartPreventExitStatus and the manifests match: missing tables exit 78 (EX_CONFIG), not 1,
/// so the service is not restarted every 5 s forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_missing_tables_exits_78() {
    let endpoint = moto!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "pool = \"p\"\nmin = 1\nmax = 4\n[regions.us-east-1]\nasg = \"g\"\n",
    )
    .unwrap();
    let prefix = support::unique_prefix("none");
    let out = Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"))
        .args(["run", "--backend", "aws", "--region", "us-east-1"])
        .args(["--table-prefix", &prefix, "--endpoint-url", &endpoint])
        .args(["--listen", "127.0.0.1:0", "--policies"])
        .arg(dir.path())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("run mrgc-autoscaler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("{prefix}-gpu-instances")),
        "{stderr}"
    );
}
