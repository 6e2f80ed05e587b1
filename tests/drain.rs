//! Drain before terminate, through the reconciler on the in-memory region: victims chosen
//! launching-first then by queue depth, failed cleanup and age; marked `draining`; terminated
//! (with a decrement) only once their queue is empty or the drain timeout passed; the group's
//! desired capacity never lowered any other way while a drain is under way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mrgc_autoscaler::adapters::memory::MemoryRegion;
use mrgc_autoscaler::app::reconciler::PoolReport;
use mrgc_autoscaler::app::{Leadership, Reconciler};
use mrgc_autoscaler::core::policy::{PolicySource, parse_sources};
use mrgc_autoscaler::core::{
    Action, Health, InstanceRecord, InstanceState, Outcome, PolicySet, Validation,
};
use mrgc_autoscaler::telemetry::sample;

mod fixtures;
use fixtures::{REGION, T0, reconciler};

const ASG: &str = "asg-model-a";

fn policy(scale_down: &str) -> PolicySet {
    parse_sources(&[PolicySource {
        path: PathBuf::from("model-a.toml"),
        text: format!(
            "pool = \"model-a\"\nmin = 1\nmax = 50\n[scale_down]\nmax_step = \"100%\"\n\
             stabilization = \"1m\"\n{scale_down}\n[regions.us-east-1]\nasg = \"{ASG}\"\n"
        ),
    }])
    .expect("valid test policy")
}

/// One instance of the pool, serving, launched `age_s` before T0, with `queue` requests.
fn instance(id: &str, age_s: i64, queue: u32) -> InstanceRecord {
    InstanceRecord {
        instance_id: Arc::from(id),
        region: Arc::from(REGION),
        model_pool: Arc::from("model-a"),
        state: InstanceState::Available,
        queue_depth: Some(queue),
        last_heartbeat_ms: T0,
        launch_time_ms: T0 - age_s * 1000,
        health: Some(Health::Healthy),
        validation: Some(Validation::Passed),
        drain_started_ms: None,
    }
}

/// A group of eight serving instances with distinct queues and ages; `i-failed` failed its
/// latest cleanup validation.
fn region() -> MemoryRegion {
    let r = MemoryRegion::new(REGION, 1);
    r.create_asg(
        ASG,
        "model-a",
        1,
        100,
        Duration::from_secs(360),
        Duration::ZERO,
    );
    for (id, age, queue) in [
        ("i-busy", 9_000, 9),
        ("i-old-idle", 8_000, 0),
        ("i-young-idle", 1_000, 0),
        ("i-light", 7_000, 2),
        ("i-failed", 500, 0),
        ("i-lighter", 6_000, 1),
        ("i-mid", 5_000, 4),
        ("i-busier", 4_000, 7),
    ] {
        r.put_instance(instance(id, age, queue), Some(ASG));
    }
    r.set_validation("i-failed", Validation::Failed);
    r
}

fn traffic(r: &MemoryRegion, at: i64, rps: f64) {
    for m in 0..6 {
        r.put_rps("model-a", REGION, at - m * 60_000, rps);
    }
}

/// One cycle of the live policy at `t`, routers reporting `rps`; instances heartbeat and
/// launch first.
async fn cycle(
    r: &MemoryRegion,
    rec: &mut Reconciler,
    p: &PolicySet,
    t: i64,
    rps: f64,
    lead: &Leadership,
) -> PoolReport {
    traffic(r, t, rps);
    r.advance(t);
    rec.reconcile_pool(&p.pools["model-a"], &p.hash, t, lead)
        .await
        .expect("cycle")
}

fn draining(r: &MemoryRegion) -> Vec<String> {
    r.instances()
        .into_iter()
        .filter(|i| i.state == InstanceState::Draining)
        .map(|i| i.instance_id.to_string())
        .collect()
}

/// Instances terminated so far, sorted.
fn terminated(r: &MemoryRegion) -> Vec<String> {
    let mut t = r.calls().terminated;
    t.sort();
    t
}

#[tokio::test]
async fn scale_in_drains_victims_in_order_and_terminates_each_with_a_decrement() {
    let r = region();
    let p = policy("drain_timeout = \"2m\"");
    let mut rec = reconciler(&r, false);
    let lead = Leadership::sole();

    // 7 serving (i-failed is held), 3.75 rps: ceil(3.75 / 1.25) = 3 wanted, 4 to let go.
    let d = cycle(&r, &mut rec, &p, T0, 3.75, &lead).await;
    assert_eq!(
        (d.decision.action, d.decision.desired),
        (Action::ScaleDown, 3)
    );
    assert_eq!(d.outcome, Outcome::Applied);
    // Least queued first; at equal queue a failed cleanup first, then the oldest. i-failed
    // serves nothing: it goes along without counting toward the four.
    let victims = [
        "i-failed",
        "i-old-idle",
        "i-young-idle",
        "i-lighter",
        "i-light",
    ];
    assert!(
        d.decision
            .reason
            .contains(&format!("draining {}", victims.join(", "))),
        "{}",
        d.decision.reason
    );
    let mut want: Vec<String> = victims.iter().map(|v| v.to_string()).collect();
    want.sort();
    assert_eq!(draining(&r), want);
    // The group was not told to shrink: it would pick its own victims.
    assert_eq!(r.calls().set_desired, 0);
    assert_eq!(r.asg_desired(ASG), Some(8));
    assert!(r.calls().terminated.is_empty());

    // The idle ones are terminated on the next cycle; i-lighter and i-light still have
    // requests queued.
    let t1 = T0 + 30_000;
    let d = cycle(&r, &mut rec, &p, t1, 3.75, &lead).await;
    assert_eq!(d.decision.action, Action::None, "{}", d.decision.reason);
    assert_eq!(terminated(&r), ["i-failed", "i-old-idle", "i-young-idle"]);
    assert_eq!(r.asg_desired(ASG), Some(5), "8 less the 3 terminated");
    assert_eq!(draining(&r), ["i-light", "i-lighter"]);

    // Their queues never empty: kept until the 2-minute timeout, then terminated.
    let mut t = t1;
    while t + 30_000 < T0 + 120_000 {
        t += 30_000;
        cycle(&r, &mut rec, &p, t, 3.75, &lead).await;
        assert_eq!(
            draining(&r),
            ["i-light", "i-lighter"],
            "at +{} s",
            (t - T0) / 1000
        );
        assert_eq!(r.asg_desired(ASG), Some(5));
    }
    let t_out = T0 + 120_000;
    cycle(&r, &mut rec, &p, t_out, 3.75, &lead).await;
    assert_eq!(r.calls().terminated.len(), 5);
    assert!(draining(&r).is_empty());
    // Desired dropped by exactly the five drained, by terminations alone.
    assert_eq!(r.asg_desired(ASG), Some(3));
    assert_eq!(r.calls().set_desired, 0);
    let left: Vec<String> = r
        .instances()
        .into_iter()
        .map(|i| i.instance_id.to_string())
        .collect();
    assert_eq!(left, ["i-busier", "i-busy", "i-mid"]);
    let m = rec.metrics().render();
    for (step, n) in [
        ("started", 5),
        ("terminated_empty", 3),
        ("terminated_timeout", 2),
    ] {
        let labels = [("pool", "model-a"), ("region", "us-east-1"), ("step", step)];
        assert_eq!(
            sample(&m, "mrgc_autoscaler_drains_total", &labels),
            Some(f64::from(n)),
            "{step} in\n{m}"
        );
    }
}

#[tokio::test]
async fn an_instance_with_queued_work_is_terminated_as_soon_as_its_queue_empties() {
    let r = region();
    let p = policy("drain_timeout = \"10m\"");
    let mut rec = reconciler(&r, false);
    let lead = Leadership::sole();
    // 6.25 rps: 5 wanted of 7 serving; i-old-idle and i-young-idle go, i-failed along.
    cycle(&r, &mut rec, &p, T0, 6.25, &lead).await;
    assert_eq!(draining(&r), ["i-failed", "i-old-idle", "i-young-idle"]);
    r.set_queue_depth("i-old-idle", 3);
    let t1 = T0 + 30_000;
    cycle(&r, &mut rec, &p, t1, 6.25, &lead).await;
    assert_eq!(terminated(&r), ["i-failed", "i-young-idle"]);
    assert_eq!(draining(&r), ["i-old-idle"]);
    r.set_queue_depth("i-old-idle", 0);
    let t2 = t1 + 30_000;
    cycle(&r, &mut rec, &p, t2, 6.25, &lead).await;
    assert_eq!(
        r.calls().terminated.last().map(String::as_str),
        Some("i-old-idle")
    );
    assert_eq!(r.calls().terminated.len(), 3);
    assert_eq!(r.asg_desired(ASG), Some(5));
}

#[tokio::test]
async fn demand_returning_during_a_drain_brings_warm_instances_back_before_launching() {
    let r = region();
    let p = policy("drain_timeout = \"5m\"");
    let mut rec = reconciler(&r, false);
    let lead = Leadership::sole();
    cycle(&r, &mut rec, &p, T0, 3.75, &lead).await;
    // Keep every victim busy so none finishes, then demand doubles.
    let victims = draining(&r);
    assert_eq!(victims.len(), 5);
    for v in &victims {
        r.set_queue_depth(v, 5);
    }
    let t1 = T0 + 60_000;
    let d = cycle(&r, &mut rec, &p, t1, 7.5, &lead).await;
    // 3 serving, 6 wanted: three of the draining instances return to service (not i-failed,
    // which would not serve), and nothing is launched.
    assert_eq!(
        (d.decision.action, d.decision.desired),
        (Action::ScaleUp, 6)
    );
    assert_eq!(d.outcome, Outcome::Applied);
    assert!(
        d.decision
            .reason
            .contains("i-light, i-lighter, i-old-idle returned to service from draining"),
        "{}",
        d.decision.reason
    );
    assert_eq!(draining(&r), ["i-failed", "i-young-idle"]);
    assert_eq!(r.calls().set_desired, 0, "no launch");
    assert_eq!(r.asg_desired(ASG), Some(8));
    // The two left finish; each termination lowers the group by one: 6 serve.
    for v in ["i-failed", "i-young-idle"] {
        r.set_queue_depth(v, 0);
    }
    let t2 = t1 + 30_000;
    let d = cycle(&r, &mut rec, &p, t2, 7.5, &lead).await;
    assert_eq!(d.decision.action, Action::None, "{}", d.decision.reason);
    assert_eq!(terminated(&r), ["i-failed", "i-young-idle"]);
    assert_eq!(r.asg_desired(ASG), Some(6));
    assert_eq!(d.decision.serving, 6);

    // Fewer warm ones that would serve than the shortfall: they come back and the rest is
    // launched.
    let r = region();
    let mut rec = reconciler(&r, false);
    cycle(&r, &mut rec, &p, T0, 3.75, &lead).await;
    for v in draining(&r) {
        r.set_queue_depth(&v, 5);
    }
    r.set_health("i-light", Health::Unhealthy);
    r.set_health("i-lighter", Health::Unhealthy);
    let d = cycle(&r, &mut rec, &p, t1, 7.5, &lead).await;
    assert_eq!(d.decision.desired, 6, "{}", d.decision.reason);
    assert_eq!(draining(&r), ["i-failed", "i-light", "i-lighter"]);
    // 3 serving + 2 back + 1 launching, beside the 3 still draining.
    assert_eq!(r.asg_desired(ASG), Some(9));
    assert_eq!(d.decision.asg_desired, 9);
}

#[tokio::test]
async fn victims_never_take_the_group_below_its_minimum() {
    let r = region();
    r.set_bounds(ASG, 6, 100);
    let p = policy("");
    let mut rec = reconciler(&r, false);
    let lead = Leadership::sole();
    let d = cycle(&r, &mut rec, &p, T0, 3.75, &lead).await;
    // 4 fewer wanted, but 8 − 6 = 2 victims at most, i-failed included.
    assert_eq!(
        draining(&r),
        ["i-failed", "i-old-idle"],
        "{}",
        d.decision.reason
    );
    let t1 = T0 + 30_000;
    let d = cycle(&r, &mut rec, &p, t1, 3.75, &lead).await;
    assert_eq!(r.asg_desired(ASG), Some(6));
    assert!(
        matches!(&d.outcome, Outcome::Skipped(why) if why.contains("the group's minimum 6")),
        "{:?}",
        d.outcome
    );
    assert!(draining(&r).is_empty());

    // The minimum raised while a drain is under way: the instance serves again.
    let r = region();
    let mut rec = reconciler(&r, false);
    cycle(&r, &mut rec, &p, T0, 3.75, &lead).await;
    assert_eq!(draining(&r).len(), 5);
    r.set_bounds(ASG, 8, 100);
    cycle(&r, &mut rec, &p, t1, 3.75, &lead).await;
    assert!(r.calls().terminated.is_empty());
    assert!(draining(&r).is_empty(), "{:?}", draining(&r));
    assert_eq!(r.asg_desired(ASG), Some(8));
}

#[tokio::test]
async fn an_empty_queue_counts_only_from_a_heartbeat_after_routers_saw_the_drain() {
    let r = region();
    let p = policy("drain_timeout = \"5m\"");
    let pool = &p.pools["model-a"];
    let mut rec = reconciler(&r, false);
    let lead = Leadership::sole();
    cycle(&r, &mut rec, &p, T0, 6.25, &lead).await;
    assert_eq!(draining(&r), ["i-failed", "i-old-idle", "i-young-idle"]);
    // No heartbeat since T0 (no advance): their 0 may predate requests routed meanwhile.
    let t1 = T0 + 30_000;
    traffic(&r, t1, 6.25);
    rec.reconcile_pool(pool, &p.hash, t1, &lead).await.unwrap();
    assert!(r.calls().terminated.is_empty());
    // Heartbeats after the grace still say 0: now they go.
    let t2 = t1 + 30_000;
    cycle(&r, &mut rec, &p, t2, 6.25, &lead).await;
    assert_eq!(terminated(&r), ["i-failed", "i-old-idle", "i-young-idle"]);
}

#[tokio::test]
async fn a_drained_instance_the_group_let_go_of_is_not_replaced() {
    use mrgc_autoscaler::ports::Actuator;
    let r = region();
    let p = policy("drain_timeout = \"5m\"");
    let mut rec = reconciler(&r, false);
    let lead = Leadership::sole();
    cycle(&r, &mut rec, &p, T0, 3.75, &lead).await;
    for v in draining(&r) {
        r.set_queue_depth(&v, 5);
    }
    // i-old-idle was terminated (say by an earlier leader whose item update failed): the
    // group no longer holds it, its item still says draining.
    r.terminate(ASG, "i-old-idle").await.unwrap();
    assert_eq!(r.asg_desired(ASG), Some(7));
    // Demand back up: it must not count as held (that would launch one too many), and the
    // item is marked at last.
    let t1 = T0 + 60_000;
    let d = cycle(&r, &mut rec, &p, t1, 7.5, &lead).await;
    assert_eq!(d.decision.desired, 6, "{}", d.decision.reason);
    assert_eq!(d.decision.held, 4, "{}", d.decision.reason);
    assert!(!draining(&r).contains(&"i-old-idle".to_string()));
    assert!(
        r.instances()
            .iter()
            .all(|i| &*i.instance_id != "i-old-idle"),
        "its item is marked terminated (and leaves the in-memory table)"
    );
    // 3 serving + 3 back = 6 serving, i-failed and i-young-idle... the group: 7 members, no
    // launch.
    assert_eq!(r.asg_desired(ASG), Some(7));
    assert_eq!(r.calls().set_desired, 0);
}

#[tokio::test]
async fn a_new_leader_finishes_the_drains_of_the_old_one_and_followers_never_do() {
    let r = region();
    let p = policy("drain_timeout = \"5m\"");
    let pool = &p.pools["model-a"];
    let mut old = reconciler(&r, false);
    cycle(&r, &mut old, &p, T0, 3.75, &Leadership::sole()).await;
    assert_eq!(draining(&r).len(), 5);
    let t1 = T0 + 30_000;
    traffic(&r, t1, 3.75);
    r.advance(t1);
    // A follower and a dry-run controller see the drains but never end them.
    for (dry_run, lead) in [(false, Leadership::follower()), (true, Leadership::sole())] {
        let mut other = reconciler(&r, dry_run);
        other
            .reconcile_pool(pool, &p.hash, t1, &lead)
            .await
            .unwrap();
        assert!(r.calls().terminated.is_empty());
        assert_eq!(draining(&r).len(), 5);
    }
    // The new leader, with no memory of them, finishes the idle ones.
    let mut new = reconciler(&r, false);
    new.reconcile_pool(pool, &p.hash, t1, &Leadership::sole())
        .await
        .unwrap();
    assert_eq!(terminated(&r), ["i-failed", "i-old-idle", "i-young-idle"]);
    assert_eq!(r.asg_desired(ASG), Some(5));
}

#[tokio::test]
async fn dry_run_and_followers_show_the_same_plan_but_never_drain() {
    let p = policy("");
    for (dry_run, lead, why) in [
        (true, Leadership::sole(), "dry-run"),
        (false, Leadership::follower(), "not leader"),
    ] {
        let r = region();
        let mut rec = reconciler(&r, dry_run);
        let d = cycle(&r, &mut rec, &p, T0, 3.75, &lead).await;
        assert_eq!(d.decision.action, Action::ScaleDown);
        assert!(
            d.decision
                .reason
                .contains("draining i-failed, i-old-idle, i-young-idle, i-lighter, i-light"),
            "{}",
            d.decision.reason
        );
        assert_eq!(d.decision.plan.steps.len(), 5, "{:?}", d.decision.plan);
        assert_eq!(d.outcome, Outcome::Skipped(why.into()));
        assert!(draining(&r).is_empty());
        assert_eq!(r.calls().mark_draining, 0);
        assert_eq!(r.asg_desired(ASG), Some(8));
    }
}

#[tokio::test]
async fn without_drain_the_group_is_lowered_but_never_during_a_drain() {
    let p = policy("drain = false");
    // A drain this controller started under an earlier policy is still under way.
    let r = region();
    let mut rec = reconciler(&r, false);
    traffic(&r, T0, 3.75);
    r.advance(T0);
    let with_drain = policy("");
    rec.reconcile_pool(
        &with_drain.pools["model-a"],
        &with_drain.hash,
        T0,
        &Leadership::sole(),
    )
    .await
    .unwrap();
    for v in draining(&r) {
        r.set_queue_depth(&v, 5);
    }
    // Past the 1-minute stabilization of the recommendation at T0.
    let t1 = T0 + 90_000;
    let d = cycle(&r, &mut rec, &p, t1, 1.0, &Leadership::sole()).await;
    assert_eq!(
        d.decision.action,
        Action::ScaleDown,
        "{}",
        d.decision.reason
    );
    assert!(
        matches!(&d.outcome, Outcome::Skipped(why) if why.contains("not lowered during a drain")),
        "{:?}",
        d.outcome
    );
    assert_eq!(r.calls().set_desired, 0);

    // No drain under way: the group's desired capacity is lowered and it picks victims.
    let r = region();
    let mut rec = reconciler(&r, false);
    let d = cycle(&r, &mut rec, &p, T0, 3.75, &Leadership::sole()).await;
    assert_eq!(d.outcome, Outcome::Applied);
    assert_eq!(r.calls().set_desired, 1);
    assert_eq!(r.calls().mark_draining, 0);
    assert_eq!(r.asg_desired(ASG), Some(d.decision.asg_desired));
}

#[tokio::test]
async fn an_instance_draining_for_someone_else_is_left_alone() {
    let r = region();
    let p = policy("drain_timeout = \"1m\"");
    // Marked draining by an operator (no drain_started_at): held, never terminated by us.
    r.set_state("i-mid", InstanceState::Draining);
    let mut rec = reconciler(&r, false);
    for k in 0..6 {
        let t = T0 + k * 30_000;
        cycle(&r, &mut rec, &p, t, 7.5, &Leadership::sole()).await;
    }
    assert!(!r.calls().terminated.contains(&"i-mid".to_string()));
    assert!(draining(&r).contains(&"i-mid".to_string()));
}
