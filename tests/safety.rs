//! Never wrong, never silent: the controller under faults, on the in-memory region. Each test
//! is one defect found from outside: a paused leader acting after its lease passed on, a
//! change without a record, a renewal stuck behind a slow cycle, step limits bypassed by
//! instances the table does not show, an absurd sample believed, a fixed policy left waiting
//! out a backoff, a shutdown held up by a hung backend, readiness blind to a lapsed lease.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mrgc_autoscaler::adapters::memory::MemoryRegion;
use mrgc_autoscaler::app::clock::{ManualClock, TokioClock};
use mrgc_autoscaler::app::election::{ElectionConfig, Elector, lease_key};
use mrgc_autoscaler::app::http::Status;
use mrgc_autoscaler::app::policy_files::load_paths;
use mrgc_autoscaler::app::service::{Handover, ServiceDeps, ServiceOptions, run_service};
use mrgc_autoscaler::app::{Leadership, PoolError, Settings};
use mrgc_autoscaler::core::policy::{PolicySource, parse_sources};
use mrgc_autoscaler::core::{Action, InstanceState, Outcome, PolicySet};
use mrgc_autoscaler::ports::{Backends, Clock, Inventory, LeaseStore, PoolInventory, PortResult};
use mrgc_autoscaler::telemetry::{Metrics, sample};
use tokio::sync::oneshot;

mod fixtures;
use fixtures::stall::Stall;
use fixtures::{REGION, T0, policies, reconciler, region, traffic};

fn one_pool(extra: &str) -> PolicySet {
    parse_sources(&[PolicySource {
        path: "model-a.toml".into(),
        text: format!(
            "pool = \"model-a\"\nmin = 1\nmax = 50\n{extra}\n[regions.us-east-1]\nasg = \"asg-model-a\"\n"
        ),
    }])
    .expect("valid policy")
}

struct Replica {
    status: Arc<Status>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Handover>,
}

/// One replica of the service with its own view of the region (`backends`, `leases`).
fn start(
    id: &str,
    backends: Backends,
    leases: Arc<dyn LeaseStore>,
    clock: &TokioClock,
    policies: PolicySet,
    policy_paths: Vec<std::path::PathBuf>,
) -> Replica {
    let status = Status::new(Duration::from_secs(30));
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = ServiceOptions {
        settings: Settings {
            region: REGION.into(),
            controller_id: id.into(),
            dry_run: false,
            record_heartbeat: Duration::from_secs(600),
        },
        interval: Duration::from_secs(30),
        election: ElectionConfig::new(REGION, id),
        policy_paths,
        policy_poll: Duration::from_secs(5),
        shadow: None,
        shadow_paths: Vec::new(),
    };
    let deps = ServiceDeps {
        backends,
        leases,
        clock: Arc::new(clock.clone()),
        status: status.clone(),
        reload: Arc::new(tokio::sync::Notify::new()),
        listener: None,
    };
    let task = tokio::spawn(async move {
        run_service(
            policies,
            opts,
            deps,
            Metrics::new(REGION),
            async {
                let _ = stopped.await;
            },
            |_| {},
        )
        .await
    });
    Replica { status, stop, task }
}

/// Instances launch and heartbeat; routers write `rps` for both pools every minute.
fn world(r: &MemoryRegion, clock: &TokioClock, rps: Arc<std::sync::Mutex<f64>>) {
    let (r, clock) = (r.clone(), clock.clone());
    tokio::spawn(async move {
        loop {
            let now = clock.now_ms();
            r.advance(now);
            let v = *rps.lock().unwrap();
            r.put_rps("model-a", REGION, now - now.rem_euclid(60_000), v);
            r.put_rps("model-b", REGION, now - now.rem_euclid(60_000), v);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

async fn holder(r: &MemoryRegion) -> (String, u64) {
    r.read(&lease_key(REGION))
        .await
        .unwrap()
        .map_or((String::new(), 0), |l| (l.holder, l.epoch))
}

/// Defect: a deposed leader could still act. A leader frozen for 25 s while one of its reads
/// is in flight (another replica takes the lease meanwhile and acts) must make no ASG call or
/// drain write once it resumes.
#[tokio::test(start_paused = true)]
async fn a_leader_paused_past_its_lease_makes_no_action_after_resuming() {
    let r = region();
    let clock = TokioClock::starting_at(T0, 1.0);
    let rps = Arc::new(std::sync::Mutex::new(10.0));
    traffic(&r, T0 - 600_000, T0, 10.0, 10.0);
    world(&r, &clock, rps.clone());
    let a_view = Stall::new(&r);
    a_view.slow_reads(Duration::from_secs(3));
    let a = start(
        "a",
        a_view.backends(),
        Arc::new(a_view.clone()),
        &clock,
        policies(),
        vec![],
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b = start(
        "b",
        r.backends(),
        Arc::new(r.clone()),
        &clock,
        policies(),
        vec![],
    );
    assert_eq!(holder(&r).await, ("a".to_string(), 1));
    // Demand rises just before a's third cycle (at +60 s), whose reads take 3 s.
    tokio::time::sleep(Duration::from_secs(50)).await;
    *rps.lock().unwrap() = 40.0;
    tokio::time::sleep(Duration::from_secs(6)).await; // +61 s: a's reads are in flight
    a_view.freeze();
    let before = a_view.actions();
    tokio::time::sleep(Duration::from_secs(39)).await;
    // b took over (after a lease duration of seeing no renewal) and acted at its next cycle,
    // while a was frozen.
    assert_eq!(holder(&r).await, ("b".to_string(), 2));
    // 40 rps on 8: wants 32, the step limit (100 %) allows 16.
    assert_eq!(r.asg("asg-model-a").unwrap().desired, 16, "b scaled up");
    a_view.thaw();
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(
        a_view.actions(),
        before,
        "the paused leader acted after resuming"
    );
    assert!(a.status.leader_state().epoch == 0, "a follows now");
    for rep in [a, b] {
        let _ = rep.stop.send(());
        let _ = rep.task.await;
    }
}

/// The inventory of a region whose every drain mark takes 25 s of the leader's clock (a
/// pause in the middle of a plan).
struct SlowMarks {
    inner: MemoryRegion,
    clock: ManualClock,
}

#[async_trait]
impl Inventory for SlowMarks {
    async fn pool_instances(&self, pool: &str, region: &str) -> PortResult<PoolInventory> {
        self.inner.pool_instances(pool, region).await
    }
    async fn mark_draining(&self, instance_id: &str, at_ms: i64) -> PortResult<()> {
        self.clock.advance(Duration::from_secs(25));
        self.inner.mark_draining(instance_id, at_ms).await
    }
    async fn mark_terminated(&self, instance_id: &str, at_ms: i64) -> PortResult<()> {
        self.inner.mark_terminated(instance_id, at_ms).await
    }
    async fn undrain(&self, instance_id: &str) -> PortResult<()> {
        self.inner.undrain(instance_id).await
    }
}

/// Defect: leadership was taken once per cycle. The guard is asked before *every* action: a
/// plan of five drains whose first step outlasts the lease's margin stops there.
#[tokio::test]
async fn every_action_asks_the_lease_so_a_pause_mid_plan_stops_the_plan() {
    let r = region();
    let clock = ManualClock::new(T0);
    let mut backends = r.backends();
    backends.inventory = Arc::new(SlowMarks {
        inner: r.clone(),
        clock: clock.clone(),
    });
    let mut rec = mrgc_autoscaler::app::Reconciler::new(
        backends,
        Settings {
            region: REGION.into(),
            controller_id: "a".into(),
            dry_run: false,
            record_heartbeat: Duration::from_secs(600),
        },
        Metrics::new(REGION),
    );
    let mut elector = Elector::new(
        Arc::new(r.clone()),
        ElectionConfig::new(REGION, "a"),
        Arc::new(clock.clone()),
    );
    elector.tick(T0).await;
    let lead = elector.leadership(T0);
    assert!(lead.is_leader);
    // 8 serving, 2 rps: a scale-in by drains of several instances.
    traffic(&r, T0 - 600_000, T0, 2.0, 10.0);
    let p = one_pool("[scale_down]\nmax_step = \"100%\"\nstabilization = \"0s\"");
    let report = rec
        .reconcile_pool(&p.pools["model-a"], &p.hash, T0, &lead)
        .await
        .expect("cycle");
    assert_eq!(report.decision.action, Action::ScaleDown);
    assert!(
        report.decision.plan.steps.len() >= 3,
        "{:?}",
        report.decision.plan
    );
    let draining = r
        .instances()
        .into_iter()
        .filter(|i| i.state == InstanceState::Draining)
        .count();
    assert_eq!(
        draining, 1,
        "only the step in flight when the margin ran out"
    );
    assert_eq!(report.outcome, Outcome::Applied, "one victim is draining");
}

/// Defect: renewal waited behind the cycle, so a slow cycle (reads taking 40 s) let the lease
/// lapse and another replica take over. Renewal now runs on its own task.
#[tokio::test(start_paused = true)]
async fn a_slow_cycle_never_delays_the_lease_renewal() {
    let r = region();
    let clock = TokioClock::starting_at(T0, 1.0);
    traffic(&r, T0 - 600_000, T0 + 600_000, 10.0, 10.0);
    let a_view = Stall::new(&r);
    a_view.slow_reads(Duration::from_secs(40));
    let a = start(
        "a",
        a_view.backends(),
        Arc::new(r.clone()),
        &clock,
        policies(),
        vec![],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = start(
        "b",
        r.backends(),
        Arc::new(r.clone()),
        &clock,
        policies(),
        vec![],
    );
    tokio::time::sleep(Duration::from_secs(180)).await;
    assert_eq!(
        holder(&r).await,
        ("a".to_string(), 1),
        "the lease changed hands"
    );
    for rep in [a, b] {
        let _ = rep.stop.send(());
        let _ = rep.task.await;
    }
}

/// Defect: an applied change without a record. While the decision log refuses writes, nothing
/// is done (no SetDesiredCapacity); the pool is not backed off either, and acts (with its
/// record) as soon as the log takes writes again.
#[tokio::test]
async fn failing_record_writes_mean_no_set_desired_capacity() {
    let r = region();
    let p = policies();
    let mut rec = reconciler(&r, false);
    traffic(&r, T0 - 300_000, T0 + 120_000, 20.0, 10.0);
    r.fail_appends(u32::MAX);
    let c = rec.reconcile_all(&p, T0, &Leadership::sole()).await;
    assert!(
        c.errors
            .iter()
            .any(|(pool, e)| pool == "model-a" && matches!(e, PoolError::Record(_)))
    );
    assert_eq!(r.calls().set_desired, 0, "acted without a record");
    let c = rec
        .reconcile_all(&p, T0 + 30_000, &Leadership::sole())
        .await;
    assert!(
        c.backing_off.is_empty(),
        "a record failure is not a read failure"
    );
    assert_eq!(r.calls().set_desired, 0);
    r.fail_appends(0);
    let c = rec
        .reconcile_all(&p, T0 + 60_000, &Leadership::sole())
        .await;
    let a = c.pools.iter().find(|x| x.pool == "model-a").unwrap();
    assert_eq!(
        (a.decision.action, &a.outcome),
        (Action::ScaleUp, &Outcome::Applied)
    );
    assert_eq!(r.calls().set_desired, 1);
    let recorded = r.decisions();
    let up = recorded
        .iter()
        .find(|d| d.model_pool == "model-a" && d.scaling_action == Action::ScaleUp)
        .expect("the scale-up is recorded");
    assert_eq!(up.result, Outcome::Applied, "settled after acting");
}

/// Defect: instances the group holds whose items are malformed (here: missing) were not
/// counted, so with `drain = false` a scale-down bypassed the step limit (10 → 4). They count
/// as coming capacity now: the group moves by one step.
#[tokio::test]
async fn instances_the_table_does_not_show_keep_the_step_limit() {
    let r = MemoryRegion::new(REGION, 3);
    r.create_asg(
        "asg-model-a",
        "model-a",
        0,
        100,
        Duration::from_secs(360),
        Duration::ZERO,
    );
    r.warm_start("asg-model-a", 10, T0);
    for i in r.instances().into_iter().take(5) {
        r.forget_item(&i.instance_id);
    }
    traffic(&r, T0 - 600_000, T0, 1.0, 1.0);
    let p = one_pool("[scale_down]\ndrain = false\nmax_step = \"10%\"\nstabilization = \"0s\"");
    let mut rec = reconciler(&r, false);
    let d = rec
        .reconcile_pool(&p.pools["model-a"], &p.hash, T0, &Leadership::sole())
        .await
        .expect("cycle");
    assert_eq!(
        d.decision.action,
        Action::ScaleDown,
        "{}",
        d.decision.reason
    );
    assert_eq!(
        r.asg("asg-model-a").unwrap().desired,
        9,
        "{}",
        d.decision.reason
    );
    assert!(
        d.decision
            .reason
            .contains("5 instance(s) the group holds are not in the instances table"),
        "{}",
        d.decision.reason
    );
}

/// Defect: one absurd RPS sample (1e30) scaled the pool up, uncounted. It is skipped and
/// counted; the decision rests on the believable samples.
#[tokio::test]
async fn an_absurd_rps_sample_is_counted_and_ignored() {
    let r = region();
    let p = policies();
    let mut rec = reconciler(&r, false);
    traffic(&r, T0 - 300_000, T0 - 60_000, 10.0, 10.0);
    r.put_rps("model-a", REGION, T0, 1e30);
    let c = rec.reconcile_all(&p, T0, &Leadership::sole()).await;
    let a = c.pools.iter().find(|x| x.pool == "model-a").unwrap();
    assert_eq!(a.decision.action, Action::None, "{}", a.decision.reason);
    assert_eq!(a.decision.rps, Some(10.0));
    assert_eq!(r.calls().set_desired, 0);
    let text = rec.metrics().render();
    let labels = [
        ("reason", "implausible"),
        ("table", "metrics"),
        ("region", REGION),
    ];
    assert_eq!(
        sample(&text, "mrgc_autoscaler_bad_items_total", &labels),
        Some(1.0),
        "{text}"
    );
}

/// Defect: a fixed policy did not end the backoff (`asg = "asg-typo"`, then fixed: the pool
/// stayed unmanaged for 290 s). A reload ends every pool's backoff.
#[tokio::test(start_paused = true)]
async fn a_fixed_policy_ends_the_backoff_at_once() {
    let r = region();
    let clock = TokioClock::starting_at(T0, 1.0);
    traffic(&r, T0 - 600_000, T0 + 3_600_000, 10.0, 10.0);
    let dir = tempfile::tempdir().unwrap();
    let write = |asg: &str| {
        std::fs::write(
            dir.path().join("model-a.toml"),
            format!(
                "pool = \"model-a\"\nmin = 1\nmax = 50\n[regions.us-east-1]\nasg = \"{asg}\"\n"
            ),
        )
        .unwrap()
    };
    write("asg-typo");
    let paths = vec![dir.path().to_path_buf()];
    let set = load_paths(&paths).unwrap();
    let a = start("a", r.backends(), Arc::new(r.clone()), &clock, set, paths);
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(a.status.ready().is_err(), "the typo is a failing read");
    write("asg-model-a");
    tokio::time::sleep(Duration::from_secs(40)).await;
    let ready = a.status.ready();
    assert!(ready.is_ok(), "{ready:?}");
    let _ = a.stop.send(());
    let _ = a.task.await;
}

/// Defects: shutdown on a hung backend took 59 s (past the 30 s grace periods), and /readyz
/// said "ready: leader" after the lease had lapsed. With every call hanging, the replica is
/// not ready within the lease's margin, and a shutdown returns within 10 s.
#[tokio::test(start_paused = true)]
async fn a_hung_backend_shows_on_readiness_and_never_holds_up_the_shutdown() {
    let r = region();
    let clock = TokioClock::starting_at(T0, 1.0);
    traffic(&r, T0 - 600_000, T0 + 3_600_000, 10.0, 10.0);
    let view = Stall::new(&r);
    let a = start(
        "a",
        view.backends(),
        Arc::new(view.clone()),
        &clock,
        policies(),
        vec![],
    );
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert!(a.status.ready().is_ok(), "{:?}", a.status.ready());
    view.freeze();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let ready = a.status.ready();
    assert!(ready.is_err(), "{ready:?}");
    let started = tokio::time::Instant::now();
    let _ = a.stop.send(());
    let handover = tokio::time::timeout(Duration::from_secs(60), a.task)
        .await
        .expect("the service stopped")
        .unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(matches!(handover, Handover::Failed { .. }), "{handover:?}");
}
