//! The reconciler against the in-memory region: observe → decide → act → record, failures
//! isolated per pool, dry-run, leadership gating, fencing, and the service loop on paused time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mrgc_autoscaler::adapters::memory::MemoryRegion;
use mrgc_autoscaler::app::clock::TokioClock;
use mrgc_autoscaler::app::election::{ElectionConfig, lease_key};
use mrgc_autoscaler::app::service::{ServiceDeps, ServiceOptions, run_service};
use mrgc_autoscaler::app::{Leadership, PoolError, Settings};
use mrgc_autoscaler::core::policy::{PolicySource, parse_sources};
use mrgc_autoscaler::core::{Action, Outcome, ReasonCode};
use mrgc_autoscaler::ports::{DecisionLog, Fence, LeaseStore, PortError, Stamp};
use mrgc_autoscaler::telemetry::{Metrics, sample};

mod fixtures;
use fixtures::{REGION, T0, policies, reconciler, region, shadow_policy, traffic};

/// model-a's per-pool series.
const MODEL_A: [(&str, &str); 2] = [("pool", "model-a"), ("region", REGION)];

#[tokio::test]
async fn the_loop_scales_up_waits_for_launches_then_scales_down() {
    let r = region();
    let p = policies();
    let mut rec = reconciler(&r, false);
    let lead = Leadership::sole();

    // Demand doubles for model-a: 20 rps on 8 instances is 2.5 per instance.
    traffic(&r, T0 - 300_000, T0, 20.0, 10.0);
    r.advance(T0);
    let c = rec.reconcile_all(&p, T0, &lead).await;
    let a = c
        .pools
        .iter()
        .find(|x| x.pool == "model-a")
        .expect("model-a");
    assert_eq!(
        (a.decision.action, a.decision.desired),
        (Action::ScaleUp, 16)
    );
    assert_eq!(a.outcome, Outcome::Applied);
    assert_eq!(r.asg("asg-model-a").unwrap().desired, 16);
    let b = c
        .pools
        .iter()
        .find(|x| x.pool == "model-b")
        .expect("model-b");
    assert_eq!(b.decision.reason_code, ReasonCode::WithinBand);

    // While the 8 new instances launch, nothing more is launched.
    for i in 1..=14 {
        let t = T0 + i * 30_000;
        traffic(&r, t - 60_000, t, 20.0, 10.0);
        r.advance(t);
        let c = rec.reconcile_all(&p, t, &lead).await;
        let a = c.pools.iter().find(|x| x.pool == "model-a").unwrap();
        assert_ne!(
            a.decision.action,
            Action::ScaleUp,
            "at +{}s: {}",
            i * 30,
            a.decision.reason
        );
    }
    assert_eq!(
        r.fleet("asg-model-a").0,
        16,
        "all serving after the launch time"
    );

    // Demand falls back: the scale-down waits for the 5 m stabilization, then steps.
    let mut downs = Vec::new();
    for i in 15..=42 {
        let t = T0 + i * 30_000;
        traffic(&r, t - 60_000, t, 5.0, 10.0);
        r.advance(t);
        let c = rec.reconcile_all(&p, t, &lead).await;
        let a = c.pools.iter().find(|x| x.pool == "model-a").unwrap();
        if a.decision.action == Action::ScaleDown {
            downs.push((i, a.decision.desired));
        }
    }
    let first = downs.first().expect("a scale-down happened");
    // The last in-band recommendation (16) was at cycle 14; it holds for 5 minutes = 10 cycles.
    assert!(
        first.0 >= 14 + 10,
        "scale-down before the 5 m stabilization: {downs:?}"
    );
    assert_eq!(downs.last().unwrap().1, 4, "{downs:?}");

    // Every decision that changed something was recorded, with its reason.
    let log = r
        .history("model-a", Some(REGION), T0 - 1, 1000)
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|d| d.scaling_action == Action::ScaleUp && d.reason.contains("scale up to ceil"))
    );
    assert!(
        log.iter()
            .all(|d| d.controller_id == "test-1" && !d.dry_run && d.policy_hash == p.hash)
    );
    assert_eq!(
        log.iter()
            .filter(|d| d.scaling_action == Action::ScaleDown)
            .count(),
        downs.len()
    );
}

#[tokio::test]
async fn one_pools_failure_never_stops_the_others_and_it_backs_off() {
    let r = region();
    let p = policies();
    let mut rec = reconciler(&r, false);
    traffic(&r, T0 - 300_000, T0, 20.0, 20.0);
    r.fail_inventory("model-b", Some(PortError::Transient("throttled".into())));
    let c = rec.reconcile_all(&p, T0, &Leadership::sole()).await;
    assert_eq!(c.pools.len(), 1);
    assert_eq!(c.pools[0].pool, "model-a");
    assert!(
        matches!(&c.errors[..], [(pool, PoolError::Inventory(PortError::Transient(_)))] if pool == "model-b")
    );
    // Backing off: the next cycle a moment later skips model-b, a later one retries it.
    let c = rec.reconcile_all(&p, T0 + 500, &Leadership::sole()).await;
    assert_eq!(c.backing_off, vec!["model-b".to_string()]);
    r.fail_inventory("model-b", None);
    let c = rec
        .reconcile_all(&p, T0 + 30_000, &Leadership::sole())
        .await;
    assert_eq!(c.pools.len(), 2);
    let errors = rec.metrics().render();
    let labels = [
        ("kind", "inventory"),
        ("pool", "model-b"),
        ("region", "us-east-1"),
    ];
    assert_eq!(
        sample(&errors, "mrgc_autoscaler_reconcile_errors_total", &labels),
        Some(1.0),
        "{errors}"
    );
}

#[tokio::test]
async fn a_failed_action_is_recorded_and_retried_next_cycle() {
    let r = region();
    let p = policies();
    let mut rec = reconciler(&r, false);
    traffic(&r, T0 - 300_000, T0 + 60_000, 20.0, 10.0);
    r.fail_set_desired(vec![PortError::Transient(
        "Throttling: Rate exceeded".into(),
    )]);
    let c = rec.reconcile_all(&p, T0, &Leadership::sole()).await;
    let a = c.pools.iter().find(|x| x.pool == "model-a").unwrap();
    assert_eq!(
        a.outcome,
        Outcome::Failed("set desired capacity 16: transient: Throttling: Rate exceeded".into())
    );
    assert!(a.recorded);
    // Recorded before acting, then settled with what happened.
    let recs = r.decisions();
    let rec_a = recs.iter().find(|x| x.model_pool == "model-a").unwrap();
    assert_eq!(rec_a.result, a.outcome);
    let c = rec
        .reconcile_all(&p, T0 + 30_000, &Leadership::sole())
        .await;
    let a = c.pools.iter().find(|x| x.pool == "model-a").unwrap();
    assert_eq!(
        (a.decision.action, a.outcome.clone()),
        (Action::ScaleUp, Outcome::Applied)
    );
    assert_eq!(r.asg("asg-model-a").unwrap().desired, 16);
}

#[tokio::test]
async fn dry_run_decides_and_records_but_never_acts() {
    let r = region();
    let p = policies();
    let mut rec = reconciler(&r, true);
    for i in 0..10 {
        let t = T0 + i * 30_000;
        traffic(&r, t - 300_000, t, if i < 5 { 40.0 } else { 1.0 }, 10.0);
        r.advance(t);
        rec.reconcile_all(&p, t, &Leadership::sole()).await;
    }
    assert_eq!(r.calls().set_desired, 0);
    assert_eq!(r.asg("asg-model-a").unwrap().desired, 8);
    let log = r.history("model-a", None, 0, 100).await.unwrap();
    assert!(log.iter().any(|d| d.scaling_action == Action::ScaleUp));
    assert!(log.iter().all(|d| d.dry_run));
    assert!(
        log.iter()
            .filter(|d| d.scaling_action != Action::None)
            .all(|d| d.result == Outcome::Skipped("dry-run".into()))
    );
}

#[tokio::test]
async fn a_follower_observes_but_neither_acts_nor_records() {
    let r = region();
    let p = policies();
    let mut rec = reconciler(&r, false);
    traffic(&r, T0 - 300_000, T0, 40.0, 40.0);
    let c = rec.reconcile_all(&p, T0, &Leadership::follower()).await;
    assert!(c.pools.iter().all(|x| x.decision.action == Action::ScaleUp
        && x.outcome == Outcome::Skipped("not leader".into())
        && !x.recorded));
    assert_eq!(r.calls().set_desired, 0);
    assert_eq!(r.calls().appends, 0);
    assert_eq!(
        sample(
            &rec.metrics().render(),
            "mrgc_autoscaler_pool_rps",
            &MODEL_A
        ),
        Some(40.0)
    );
}

#[tokio::test]
async fn a_deposed_leader_cannot_append() {
    let r = region();
    let p = policies();
    let key = lease_key(REGION);
    let old = r
        .acquire(
            &key,
            "old",
            None,
            Duration::from_secs(15),
            &Stamp::default(),
        )
        .await
        .unwrap();
    r.acquire(
        &key,
        "new",
        Some(old.version),
        Duration::from_secs(15),
        &Stamp::default(),
    )
    .await
    .unwrap();
    let mut rec = reconciler(&r, false);
    traffic(&r, T0 - 300_000, T0, 20.0, 20.0);
    let stale = Leadership {
        fence: Some(Fence {
            lease_key: key,
            holder: "old".into(),
            epoch: old.epoch,
        }),
        epoch: old.epoch,
        is_leader: true,
        guard: mrgc_autoscaler::app::leadership::ActGuard::always(),
    };
    let c = rec.reconcile_all(&p, T0, &stale).await;
    assert!(c.lost_leadership);
    assert!(
        c.errors
            .iter()
            .all(|(_, e)| matches!(e, PoolError::Record(PortError::Conflict(_))))
    );
    assert!(r.decisions().is_empty());
    // Both pools wanted to scale up (20 rps on 8 instances): neither did, not even the one
    // after the pool whose fenced append failed. Records come before actions.
    assert_eq!(
        c.errors.len(),
        1,
        "the second pool no longer tries to record"
    );
    assert!(!c.pools.is_empty());
    assert!(c.pools.iter().all(|p| p.decision.action == Action::ScaleUp));
    assert_eq!(r.calls().set_desired, 0, "a deposed leader acted");
}

#[tokio::test]
async fn unchanged_holds_are_recorded_on_change_and_at_the_heartbeat_only() {
    let r = region();
    let p = policies();
    let mut rec = reconciler(&r, false);
    // 30 minutes of steady in-band traffic: 60 cycles.
    for i in 0..60 {
        let t = T0 + i * 30_000;
        traffic(&r, t - 300_000, t, 10.0, 10.0);
        r.advance(t);
        rec.reconcile_all(&p, t, &Leadership::sole()).await;
    }
    let log = r.history("model-a", None, 0, 1000).await.unwrap();
    // First cycle, then every 10 minutes: at 0, 10, 20 minutes.
    assert_eq!(
        log.len(),
        3,
        "{:#?}",
        log.iter().map(|d| d.at_ms()).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn the_service_loop_leads_reconciles_and_releases_on_shutdown() {
    let r = region();
    traffic(&r, T0 - 300_000, T0 + 3_600_000, 20.0, 10.0);
    let clock = Arc::new(TokioClock::starting_at(T0, 1.0));
    let metrics = Metrics::new(REGION);
    let deps = ServiceDeps {
        backends: r.backends(),
        leases: Arc::new(r.clone()),
        clock,
        status: mrgc_autoscaler::app::http::Status::new(Duration::from_secs(30)),
        reload: Arc::new(tokio::sync::Notify::new()),
        listener: None,
    };
    let opts = ServiceOptions {
        settings: Settings {
            region: REGION.into(),
            controller_id: "svc-1".into(),
            dry_run: false,
            record_heartbeat: Duration::from_secs(600),
        },
        interval: Duration::from_secs(30),
        election: ElectionConfig::new(REGION, "svc-1"),
        policy_paths: vec![],
        policy_poll: Duration::from_secs(5),
        shadow: None,
        shadow_paths: vec![],
    };
    // The world: instances heartbeat and launch on the same clock.
    let world = {
        let (r, clock) = (r.clone(), TokioClock::starting_at(T0, 1.0));
        tokio::spawn(async move {
            loop {
                r.advance(mrgc_autoscaler::ports::Clock::now_ms(&clock));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let mut cycles = 0;
    run_service(
        policies(),
        opts,
        deps,
        metrics.clone(),
        tokio::time::sleep(Duration::from_secs(300)),
        |_| cycles += 1,
    )
    .await;
    world.abort();
    assert!((10..=11).contains(&cycles), "{cycles} cycles in 5 minutes");
    assert_eq!(r.asg("asg-model-a").unwrap().desired, 16);
    let lease = r
        .read(&lease_key(REGION))
        .await
        .unwrap()
        .expect("lease row");
    assert_eq!(
        (lease.holder.as_str(), lease.epoch),
        ("", 1),
        "released on shutdown"
    );
    assert!(
        r.decisions()
            .iter()
            .all(|d| d.leader_epoch == 1 && d.controller_id == "svc-1")
    );
    assert_eq!(metrics.leader.get(), 0);
}

#[tokio::test]
async fn the_launch_time_is_learned_and_exported() {
    let r = MemoryRegion::new(REGION, 7);
    r.create_asg(
        "asg-model-a",
        "model-a",
        0,
        100,
        Duration::from_secs(240),
        Duration::ZERO,
    );
    r.create_asg(
        "asg-model-b",
        "model-b",
        0,
        100,
        Duration::from_secs(240),
        Duration::ZERO,
    );
    r.warm_start("asg-model-a", 4, T0);
    r.warm_start("asg-model-b", 4, T0);
    let p = policies();
    let mut rec = reconciler(&r, false);
    // 20 rps on 4 instances: model-a grows to 16, launching 12 instances that serve after 240 s.
    for i in 0..20 {
        let t = T0 + i * 30_000;
        traffic(&r, t - 300_000, t, 20.0, 5.0);
        r.advance(t);
        rec.reconcile_all(&p, t, &Leadership::sole()).await;
    }
    let text = rec.metrics().render();
    assert!(
        sample(&text, "mrgc_autoscaler_launch_time_p90_seconds", &MODEL_A) == Some(240.0),
        "{}",
        text.lines()
            .filter(|l| l.contains("launch_time"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !text.contains("launch_time_p90_seconds{pool=\"model-b\""),
        "model-b launched too few to learn from"
    );
}

#[tokio::test]
async fn the_model_load_time_metric_raises_a_launch_time_set_too_short() {
    let r = region();
    let p = policies(); // launch_time 6m
    // model-a: loads take 400-490 s, longer than the configured 6 minutes; model-b: 100 s.
    for k in 0..10 {
        let at = T0 - 3_600_000 + k * 60_000;
        r.put_metric(
            "model_load_time",
            "model-a",
            REGION,
            at,
            400.0 + 10.0 * k as f64,
        );
        r.put_metric("model_load_time", "model-b", REGION, at, 100.0);
    }
    traffic(&r, T0 - 300_000, T0, 10.0, 10.0);
    let mut rec = reconciler(&r, false);
    let a = rec
        .observe_pool(&p.pools["model-a"], None, T0)
        .await
        .expect("reads");
    // p90 of 400..490 (10 samples) is the 9th: 480 s.
    assert_eq!(a.learned_launch, Some(Duration::from_secs(480)));
    let b = rec
        .observe_pool(&p.pools["model-b"], None, T0)
        .await
        .expect("reads");
    assert_eq!(
        b.learned_launch, None,
        "a load time within the configured launch time changes nothing"
    );
    let text = rec.metrics().render();
    assert_eq!(
        sample(
            &text,
            "mrgc_autoscaler_model_load_time_p90_seconds",
            &MODEL_A
        ),
        Some(480.0),
        "{text}"
    );
    // Too few samples: no hint.
    let r2 = region();
    r2.put_metric("model_load_time", "model-a", REGION, T0 - 60_000, 900.0);
    let mut rec2 = reconciler(&r2, false);
    let a2 = rec2
        .observe_pool(&p.pools["model-a"], None, T0)
        .await
        .expect("reads");
    assert_eq!(a2.learned_launch, None);
}

#[tokio::test]
async fn a_shadow_policy_is_recorded_beside_the_live_one_and_never_acts() {
    let r = region();
    let live = policies();
    // The candidate: a tighter band, so it wants more instances than the live policy.
    let shadow = parse_sources(&[PolicySource {
        path: PathBuf::from("model-a.toml"),
        text: "pool = \"model-a\"\nmin = 2\nmax = 50\n[band]\nlow = 0.5\nhigh = 0.8\n[regions.us-east-1]\nasg = \"asg-model-a\"\n".into(),
    }])
    .unwrap();
    let mut rec = reconciler(&r, false);
    rec.set_shadow(Some(shadow.clone()));
    // 10 rps on 8: in the live band (1.25), above the shadow's (0.8 max).
    traffic(&r, T0 - 300_000, T0, 10.0, 10.0);
    let c = rec.reconcile_all(&live, T0, &Leadership::sole()).await;
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(
        r.calls().set_desired,
        0,
        "neither policy acted: live holds, shadow never acts"
    );
    let records = r.history("model-a", None, 0, 100).await.unwrap();
    let live_rec = records
        .iter()
        .find(|d| d.policy_hash == live.hash)
        .expect("live record");
    let shadow_rec = records
        .iter()
        .find(|d| d.policy_hash == shadow.hash)
        .expect("shadow record");
    assert_eq!(
        (
            live_rec.scaling_action,
            live_rec.dry_run,
            live_rec.key.slot()
        ),
        (Action::None, false, 0)
    );
    assert_eq!(shadow_rec.scaling_action, Action::ScaleUp);
    assert_eq!(shadow_rec.desired_capacity, 16, "ceil(10 / 0.65)");
    assert!(shadow_rec.dry_run);
    assert_eq!(shadow_rec.key.slot(), 1);
    assert_eq!(shadow_rec.result, Outcome::Skipped("shadow policy".into()));
    assert_eq!(r.asg("asg-model-a").unwrap().desired, 8);
    let labels = [
        ("action", "scale-up"),
        ("pool", "model-a"),
        ("reason_code", "above_band"),
        ("region", "us-east-1"),
    ];
    assert_eq!(
        sample(
            &rec.metrics().render(),
            "mrgc_autoscaler_shadow_decisions_total",
            &labels
        ),
        Some(1.0)
    );
}

/// A one-pool candidate for model-a with extra TOML after the bounds.

#[tokio::test]
async fn the_live_policy_acts_while_the_shadow_one_only_records_from_the_same_reads() {
    let r = region();
    let live = policies();
    // The candidate: a wide band, so it holds where the live policy scales up.
    let shadow = shadow_policy("[band]\nlow = 0.5\nhigh = 3.0");
    let mut rec = reconciler(&r, false);
    rec.set_shadow(Some(shadow.clone()));
    // 20 rps on 8: 2.5 per instance, above the live band (1.5), inside the shadow's (3.0).
    traffic(&r, T0 - 300_000, T0, 20.0, 10.0);
    let c = rec.reconcile_all(&live, T0, &Leadership::sole()).await;
    assert!(c.errors.is_empty() && c.shadow_errors.is_empty(), "{c:?}");

    // Exactly one SetDesiredCapacity, the live one; the group follows the live decision.
    assert_eq!(r.calls().set_desired, 1);
    assert_eq!(r.asg("asg-model-a").unwrap().desired, 16);
    // One read of each pool's group, though two policies decided on model-a.
    assert_eq!(r.calls().describe, 2);

    let live_a = c.pools.iter().find(|p| p.pool == "model-a").unwrap();
    assert_eq!(
        (live_a.decision.action, live_a.outcome.clone()),
        (Action::ScaleUp, Outcome::Applied)
    );
    let [shadow_a] = &c.shadow[..] else {
        panic!("one shadow decision (model-a only): {:?}", c.shadow)
    };
    assert_eq!(
        (
            shadow_a.decision.action,
            shadow_a.decision.reason_code,
            shadow_a.outcome.clone()
        ),
        (
            Action::None,
            ReasonCode::WithinBand,
            Outcome::Skipped("shadow policy".into())
        )
    );
    // Both saw the same world.
    assert_eq!(
        (shadow_a.decision.serving, shadow_a.decision.rps),
        (live_a.decision.serving, live_a.decision.rps)
    );

    let records = r.history("model-a", None, 0, 100).await.unwrap();
    let shadow_recs: Vec<_> = records
        .iter()
        .filter(|d| d.policy_hash == shadow.hash)
        .collect();
    assert_eq!(shadow_recs.len(), 1, "{records:#?}");
    assert!(shadow_recs[0].dry_run && shadow_recs[0].key.slot() == 1);
    assert_eq!(shadow_recs[0].scaling_action, Action::None);
    let live_recs: Vec<_> = records
        .iter()
        .filter(|d| d.policy_hash == live.hash)
        .collect();
    assert_eq!(live_recs.len(), 1);
    assert!(!live_recs[0].dry_run && live_recs[0].key.slot() == 0);
    assert_eq!(live_recs[0].result, Outcome::Applied);
    let text = rec.metrics().render();
    assert_eq!(
        sample(&text, "mrgc_autoscaler_shadow_pool_desired", &MODEL_A),
        Some(8.0),
        "{text}"
    );
}

#[tokio::test]
async fn the_shadow_policy_counts_capacity_with_its_own_timeouts() {
    let r = region();
    let live = policies();
    // Heartbeats are stamped every 10 s; at 30 s after the last stamp the live policy (90 s
    // timeout) counts the instances, a candidate with a 20 s timeout does not.
    let shadow = shadow_policy("[instances]\nheartbeat_timeout = \"20s\"");
    let mut rec = reconciler(&r, false);
    rec.set_shadow(Some(shadow));
    traffic(&r, T0 - 300_000, T0 + 60_000, 10.0, 10.0);
    r.advance(T0);
    let c = rec
        .reconcile_all(&live, T0 + 30_000, &Leadership::sole())
        .await;
    let live_a = c.pools.iter().find(|p| p.pool == "model-a").unwrap();
    assert_eq!(live_a.decision.serving, 8);
    assert_eq!(c.shadow[0].decision.serving, 0);
    assert_eq!(c.shadow[0].decision.held, 8);
}

#[tokio::test]
async fn a_new_candidate_starts_with_a_fresh_history_and_is_recorded_at_once() {
    let r = region();
    let live = policies();
    let band = "[band]\nlow = 0.5\nhigh = 3.0";
    // Dry-run, so the live policy leaves the group alone and both see the same 8 instances.
    let mut rec = reconciler(&r, true);
    rec.set_shadow(Some(shadow_policy(band)));
    // 20 rps on 8 is inside the candidate's band: it recommends holding 8.
    traffic(&r, T0 - 300_000, T0, 20.0, 20.0);
    rec.reconcile_all(&live, T0, &Leadership::sole()).await;
    // Demand falls to 2 rps: the candidate's stabilization window still holds the 8.
    traffic(&r, T0 + 1, T0 + 120_000, 2.0, 20.0);
    let shadow_a = |c: &mrgc_autoscaler::app::CycleReport| {
        c.shadow
            .iter()
            .find(|s| s.pool == "model-a")
            .expect("a shadow decision for model-a")
            .clone()
    };
    r.advance(T0 + 60_000);
    let c = rec
        .reconcile_all(&live, T0 + 60_000, &Leadership::sole())
        .await;
    assert_eq!(
        shadow_a(&c).decision.reason_code,
        ReasonCode::ScaleDownStabilized
    );
    // The same candidate set again (a reload that changed nothing) keeps its history.
    rec.set_shadow(Some(shadow_policy(band)));
    r.advance(T0 + 90_000);
    let c = rec
        .reconcile_all(&live, T0 + 90_000, &Leadership::sole())
        .await;
    assert_eq!(
        shadow_a(&c).decision.reason_code,
        ReasonCode::ScaleDownStabilized
    );
    assert!(!shadow_a(&c).recorded, "unchanged: nothing new to record");
    // Another candidate (here the same rules under a new hash) does not inherit the old one's
    // recommendations, and its first decision is recorded at once under its own hash.
    let other = shadow_policy(&format!("{band}\n# v2"));
    rec.set_shadow(Some(other.clone()));
    r.advance(T0 + 120_000);
    let c = rec
        .reconcile_all(&live, T0 + 120_000, &Leadership::sole())
        .await;
    let s = shadow_a(&c);
    assert_eq!(
        s.decision.action,
        Action::ScaleDown,
        "{}",
        s.decision.reason
    );
    assert!(s.recorded);
    assert!(r.decisions().iter().any(|d| d.policy_hash == other.hash));
}

/// The counters alerts watch for a first failure exist at 0 from a pool's first cycle, also
/// when a new leader's warm-up read the pool's history before it.
#[tokio::test]
async fn failure_counters_start_at_zero_after_a_warm_up_too() {
    let r = region();
    traffic(&r, T0 - 300_000, T0, 20.0, 10.0);
    let p = policies();
    let mut rec = reconciler(&r, false);
    rec.warm_history(&p, T0).await;
    rec.reconcile_all(&p, T0, &Leadership::sole()).await;
    let text = rec.metrics().render();
    for pool in ["model-a", "model-b"] {
        let drains = [("pool", pool), ("region", REGION), ("step", "failed")];
        let results = [("pool", pool), ("region", REGION), ("result", "failed")];
        assert_eq!(
            sample(&text, "mrgc_autoscaler_drains_total", &drains),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "mrgc_autoscaler_decision_results_total", &results),
            Some(0.0),
            "{text}"
        );
    }
}
