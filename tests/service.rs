//! The long-lived service against the in-memory region: policy hot reload (a valid edit
//! applies on the next cycle, an invalid one is rejected and the old policy keeps running),
//! shadow reload, readiness while a pool backs off, the HTTP endpoints, the leadership watch
//! and a graceful shutdown that hands the lease to a standby. Loops run on paused time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use mrgc_autoscaler::adapters::memory::MemoryRegion;
use mrgc_autoscaler::app::clock::TokioClock;
use mrgc_autoscaler::app::election::{DEFAULT_RENEW_EVERY, ElectionConfig, LeaderState, lease_key};
use mrgc_autoscaler::app::http::{self, Status};
use mrgc_autoscaler::app::policy_files::load_paths;
use mrgc_autoscaler::app::service::{Handover, ServiceDeps, ServiceOptions, run_service};
use mrgc_autoscaler::app::{CycleReport, Settings};
use mrgc_autoscaler::core::DecisionRecord;
use mrgc_autoscaler::ports::{Clock, LeaseStore, PortError, Stamp};
use mrgc_autoscaler::telemetry::{Metrics, sample};

const T0: i64 = 1_764_000_000_000;
const REGION: &str = "us-east-1";

fn write_policy(dir: &Path, max: &str) {
    std::fs::write(
        dir.join("model-a.toml"),
        format!("pool = \"model-a\"\nmin = 2\nmax = {max}\n[regions.us-east-1]\nasg = \"asg-a\"\n"),
    )
    .expect("write policy");
}

/// One pool, 8 instances serving, 10 rps for an hour (inside the band: a steady hold).
fn region() -> MemoryRegion {
    let r = MemoryRegion::new(REGION, 1);
    r.create_asg(
        "asg-a",
        "model-a",
        0,
        200,
        Duration::from_secs(60),
        Duration::ZERO,
    );
    r.warm_start("asg-a", 8, T0);
    for m in -5..60 {
        r.put_rps("model-a", REGION, T0 + m * 60_000, 10.0);
    }
    r
}

/// Instances heartbeat on the controller's clock.
fn world(r: &MemoryRegion, clock: &TokioClock) -> tokio::task::JoinHandle<()> {
    let (r, clock) = (r.clone(), clock.clone());
    tokio::spawn(async move {
        loop {
            r.advance(clock.now_ms());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

struct Replica {
    status: Arc<Status>,
    metrics: Metrics,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(Handover, Vec<CycleReport>)>,
}

impl Replica {
    async fn stop(self) -> (Handover, Vec<CycleReport>) {
        let _ = self.stop.send(());
        self.task.await.expect("service task")
    }
}

/// The reload counters' series for `r` (applied, rejected).
fn result(r: &str) -> [(&str, &str); 2] {
    [("region", REGION), ("result", r)]
}

#[derive(Default)]
struct Start {
    policy_paths: Vec<PathBuf>,
    shadow_paths: Vec<PathBuf>,
    listener: Option<tokio::net::TcpListener>,
    record_heartbeat: Option<Duration>,
    /// Write this watch address into the lease while leading.
    advertise: Option<String>,
}

/// Start one replica `id` of the service on `r`. Replicas share `clock` (T0 at the test's
/// start), as hosts share the wall.
fn start(r: &MemoryRegion, clock: &TokioClock, id: &str, s: Start) -> Replica {
    let policies = match s.policy_paths.first() {
        Some(_) => load_paths(&s.policy_paths).expect("valid policies"),
        None => {
            let dir = tempfile::tempdir().unwrap();
            write_policy(dir.path(), "50");
            load_paths(&[dir.path().to_path_buf()]).unwrap()
        }
    };
    let shadow = (!s.shadow_paths.is_empty())
        .then(|| load_paths(&s.shadow_paths).expect("valid shadow policies"));
    let metrics = Metrics::new(REGION);
    let status = Status::new(Duration::from_secs(30));
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = ServiceOptions {
        settings: Settings {
            region: REGION.into(),
            controller_id: id.into(),
            dry_run: false,
            record_heartbeat: s.record_heartbeat.unwrap_or(Duration::from_secs(600)),
        },
        interval: Duration::from_secs(30),
        election: ElectionConfig {
            advertise: s.advertise,
            ..ElectionConfig::new(REGION, id)
        },
        policy_paths: s.policy_paths,
        policy_poll: Duration::from_secs(5),
        shadow,
        shadow_paths: s.shadow_paths,
    };
    let deps = ServiceDeps {
        backends: r.backends(),
        leases: Arc::new(r.clone()),
        clock: Arc::new(clock.clone()),
        status: status.clone(),
        reload: Arc::new(tokio::sync::Notify::new()),
        listener: s.listener,
    };
    let task = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut reports = Vec::new();
            let handover = run_service(
                policies,
                opts,
                deps,
                metrics,
                async {
                    let _ = stopped.await;
                },
                |r| reports.push(r.clone()),
            )
            .await;
            (handover, reports)
        })
    };
    Replica {
        status,
        metrics,
        stop,
        task,
    }
}

fn hashes(records: &[DecisionRecord]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|d| d.policy_hash.clone()).collect();
    v.dedup();
    v
}

#[tokio::test(start_paused = true)]
async fn a_valid_edit_applies_on_the_next_cycle_and_an_invalid_one_is_rejected() {
    let clock = TokioClock::starting_at(T0, 1.0);
    let dir = tempfile::tempdir().unwrap();
    write_policy(dir.path(), "50");
    let r = region();
    let world = world(&r, &clock);
    let svc = start(
        &r,
        &clock,
        "svc",
        Start {
            policy_paths: vec![dir.path().to_path_buf()],
            ..Start::default()
        },
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    let h1 = hashes(&r.decisions());
    assert_eq!(h1.len(), 1, "{h1:?}");

    // A valid edit: the decision stays a hold, yet the first cycle after the next poll records
    // it under the new hash (a new policy is a change worth recording).
    write_policy(dir.path(), "60");
    let edited_at = T0 + 61_000;
    tokio::time::sleep(Duration::from_secs(61)).await;
    let records = r.decisions();
    let h2 = hashes(&records);
    assert_eq!(h2.len(), 2, "{h2:?}");
    let first_new = records
        .iter()
        .find(|d| d.policy_hash == h2[1])
        .expect("a record under the new hash");
    assert!(
        first_new.at_ms() <= edited_at + 5_000 + 30_000,
        "applied on the cycle after the next poll, not later: at +{} ms",
        first_new.at_ms() - edited_at
    );
    assert_eq!(
        sample(
            &svc.metrics.render(),
            "mrgc_autoscaler_policy_reloads_total",
            &result("applied")
        ),
        Some(1.0)
    );
    let ready = svc.status.ready().expect("ready");
    assert!(ready.contains(&format!("policy {}", h2[1])), "{ready}");

    // An invalid edit: rejected once with its file:line:col, the last good policy keeps
    // deciding and recording.
    write_policy(dir.path(), "1");
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(
        hashes(&r.decisions()),
        h2,
        "the rejected edit must not replace the running policy"
    );
    let text = svc.metrics.render();
    assert_eq!(
        sample(
            &text,
            "mrgc_autoscaler_policy_reloads_total",
            &result("rejected")
        ),
        Some(1.0),
        "{text}"
    );
    let ready = svc
        .status
        .ready()
        .expect("still ready on the last good policy");
    assert!(
        ready.contains("the last policy edit was rejected")
            && ready.contains("model-a.toml:3:7: min (2) is greater than max (1)"),
        "{ready}"
    );
    // Fixed back to the running content: the rejection is gone, nothing is reloaded.
    write_policy(dir.path(), "60");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ready = svc.status.ready().expect("ready");
    assert!(!ready.contains("rejected"), "{ready}");

    let (_, reports) = svc.stop().await;
    world.abort();
    assert!(
        reports
            .iter()
            .flat_map(|c| &c.pools)
            .all(|p| p.decision.max == 50 || p.decision.max == 60),
        "decisions only ever used a valid policy"
    );
}

#[tokio::test(start_paused = true)]
async fn the_shadow_policy_reloads_and_rejects_on_its_own() {
    let clock = TokioClock::starting_at(T0, 1.0);
    let live = tempfile::tempdir().unwrap();
    let shadow = tempfile::tempdir().unwrap();
    write_policy(live.path(), "50");
    write_policy(shadow.path(), "40");
    let r = region();
    let world = world(&r, &clock);
    let svc = start(
        &r,
        &clock,
        "svc",
        Start {
            policy_paths: vec![live.path().to_path_buf()],
            shadow_paths: vec![shadow.path().to_path_buf()],
            ..Start::default()
        },
    );
    tokio::time::sleep(Duration::from_secs(31)).await;
    let shadow_hashes = |r: &MemoryRegion| {
        let recs: Vec<DecisionRecord> = r
            .decisions()
            .into_iter()
            .filter(|d| d.key.slot() == 1)
            .collect();
        assert!(recs.iter().all(|d| d.dry_run));
        hashes(&recs)
    };
    let s1 = shadow_hashes(&r);
    assert_eq!(s1.len(), 1);

    // An invalid candidate: rejected and counted apart from the live policy; the old
    // candidate keeps being evaluated.
    write_policy(shadow.path(), "0");
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(shadow_hashes(&r), s1);
    let text = svc.metrics.render();
    assert_eq!(
        sample(
            &text,
            "mrgc_autoscaler_shadow_policy_reloads_total",
            &result("rejected")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mrgc_autoscaler_policy_reloads_total",
            &result("rejected")
        ),
        Some(0.0),
        "{text}"
    );
    let ready = svc
        .status
        .ready()
        .expect("a bad candidate does not unready");
    assert!(
        ready.contains("the last shadow edit was rejected"),
        "{ready}"
    );

    // A valid candidate: recorded under its hash from the next cycle.
    write_policy(shadow.path(), "45");
    tokio::time::sleep(Duration::from_secs(61)).await;
    let s2 = shadow_hashes(&r);
    assert_eq!(s2.len(), 2, "{s2:?}");
    assert!(
        svc.status
            .ready()
            .unwrap()
            .contains(&format!("shadow policy {}", s2[1]))
    );
    svc.stop().await;
    world.abort();
    assert_eq!(r.calls().set_desired, 0, "a steady hold: nobody acted");
}

#[tokio::test(start_paused = true)]
async fn readiness_stays_down_while_a_failing_pool_backs_off() {
    let clock = TokioClock::starting_at(T0, 1.0);
    let r = region();
    let world = world(&r, &clock);
    r.fail_inventory("model-a", Some(PortError::Permanent("AccessDenied".into())));
    let svc = start(&r, &clock, "svc", Start::default());
    // A permanent error backs off 5 minutes: the cycles in between skip the pool.
    tokio::time::sleep(Duration::from_secs(4 * 60)).await;
    let not_ready = svc.status.ready().expect_err("not ready");
    assert!(
        not_ready.contains("model-a: reading instances: AccessDenied"),
        "{not_ready}"
    );
    r.fail_inventory("model-a", None);
    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    assert!(svc.status.ready().is_ok(), "{:?}", svc.status.ready());
    let (_, reports) = svc.stop().await;
    world.abort();
    assert!(
        reports
            .iter()
            .any(|c| c.backing_off == vec!["model-a".to_string()]),
        "some cycles skipped the backing-off pool"
    );
}

#[tokio::test(start_paused = true)]
async fn on_shutdown_the_leader_releases_and_an_unwatching_standby_takes_over_at_its_next_read() {
    let clock = TokioClock::starting_at(T0, 1.0);
    let r = region();
    let world = world(&r, &clock);
    let a = start(&r, &clock, "a", Start::default());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = start(&r, &clock, "b", Start::default());
    let mut a_watch = a.status.leader_watch();
    let mut b_watch = b.status.leader_watch();
    let reads = r.calls().lease_reads;
    tokio::time::sleep(Duration::from_secs(120)).await;
    // Once per renewal: 6 in two minutes (and a's first read).
    let reads = r.calls().lease_reads - reads;
    assert!((5..=7).contains(&reads), "{reads} lease reads in 120 s");
    assert_eq!(
        *a_watch.borrow_and_update(),
        LeaderState {
            is_leader: true,
            epoch: 1
        }
    );
    assert!(!b_watch.borrow_and_update().is_leader);

    let stopped_at = tokio::time::Instant::now();
    let (handover, _) = a.stop().await;
    assert_eq!(handover, Handover::Released { epoch: 1 });
    assert!(!a_watch.borrow().is_leader, "a published that it follows");
    let took_over =
        tokio::time::timeout(Duration::from_secs(10), b_watch.wait_for(|s| s.is_leader))
            .await
            .expect("b takes over")
            .map(|s| *s)
            .expect("b's watch is open");
    let after = stopped_at.elapsed();
    assert_eq!(took_over.epoch, 2);
    // No watch (a advertises no address): b reads the lease once per renewal, when the lease
    // it saw would expire unless renewed.
    assert!(
        after <= DEFAULT_RENEW_EVERY + Duration::from_millis(100),
        "the standby reads the lease every {DEFAULT_RENEW_EVERY:?}, took {after:?}"
    );
    let lease = r.read(&lease_key(REGION)).await.unwrap().unwrap();
    assert_eq!((lease.holder.as_str(), lease.epoch), ("b", 2));

    tokio::time::sleep(Duration::from_secs(60)).await;
    b.stop().await;
    world.abort();
    // Each epoch appended in its own stretch of time: a before the handover, b after.
    let records = r.decisions();
    let last_a = records
        .iter()
        .filter(|d| d.leader_epoch == 1)
        .map(|d| d.at_ms())
        .max()
        .expect("a recorded");
    let first_b = records
        .iter()
        .filter(|d| d.leader_epoch == 2)
        .map(|d| d.at_ms())
        .min()
        .expect("b recorded after taking over");
    assert!(last_a < first_b);
    assert!(
        records
            .iter()
            .all(|d| (d.leader_epoch == 1 && d.controller_id == "a")
                || (d.leader_epoch == 2 && d.controller_id == "b"))
    );
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    (code, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn endpoints_report_health_readiness_and_metrics() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = Status::new(Duration::from_secs(30));
    let metrics = Metrics::new(REGION);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(
        listener,
        status.clone(),
        metrics.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (code, _, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("no valid policy loaded"), "{body}");

    status.policy("abc123");
    status.tick();
    let (code, _, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(
        body.contains("no reconcile cycle has completed yet"),
        "{body}"
    );

    status.cycle(Some(
        "model-a: reading instances: transient: throttled".into(),
    ));
    let (code, _, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(
        body.contains("could not read its backends: model-a: reading instances"),
        "{body}"
    );

    status.cycle(None);
    let mut watch = status.leader_watch();
    assert_eq!(
        status.leadership(true, 4),
        Some(LeaderState::default()),
        "a transition returns the previous state"
    );
    assert_eq!(status.leadership(true, 4), None, "no transition");
    assert!(watch.has_changed().unwrap());
    assert_eq!(watch.borrow_and_update().epoch, 4);
    let (code, _, body) = get(addr, "/readyz").await;
    assert_eq!(
        (code, body.trim()),
        (200, "ready: leader (epoch 4), policy abc123")
    );
    status.leadership(false, 0);
    assert!(get(addr, "/readyz").await.2.contains("ready: follower"));
    status.stopping();
    let (code, _, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("shutting down"), "{body}");

    metrics.leader.set(1);
    let (code, head, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(
        sample(&body, "mrgc_autoscaler_leader", &[("region", REGION)]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(get(addr, "/nope").await.0, 404);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_service_serves_its_endpoints_and_stops_serving_when_it_stops() {
    let clock = TokioClock::starting_at(T0, 1.0);
    let r = region();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = start(
        &r,
        &clock,
        "svc",
        Start {
            listener: Some(listener),
            ..Start::default()
        },
    );
    // The first cycle runs at once; wait for it through the leadership watch.
    let mut watch = svc.status.leader_watch();
    watch
        .wait_for(|s| s.is_leader)
        .await
        .expect("watch open while the service runs");
    let mut ready = get(addr, "/readyz").await;
    for _ in 0..100 {
        if ready.0 == 200 {
            break;
        }
        tokio::task::yield_now().await;
        ready = get(addr, "/readyz").await;
    }
    assert_eq!(ready.0, 200, "{}", ready.2);
    assert!(ready.2.starts_with("ready: leader (epoch 1), policy "));
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (code, _, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        sample(&body, "mrgc_autoscaler_leader", &[("region", REGION)]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "mrgc_autoscaler_reconcile_duration_seconds_count",
            &[("region", REGION)]
        ),
        Some(1.0),
        "{body}"
    );

    let (handover, _) = svc.stop().await;
    assert_eq!(handover, Handover::Released { epoch: 1 });
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the endpoints stop with the service"
    );
}

/// `GET /v1/lease/watch?epoch=N` (what a standby holds open on the leader).
async fn watch(addr: std::net::SocketAddr, epoch: &str) -> (u16, String) {
    let (code, _, body) = get(addr, &format!("/v1/lease/watch?epoch={epoch}")).await;
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_watch_answers_when_the_leader_lets_go() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = Status::new(Duration::from_secs(30));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(
        listener,
        status.clone(),
        Metrics::new(REGION),
        async {
            let _ = stopped.await;
        },
    ));
    // Bad requests are refused, not waited on.
    for bad in ["x", "-1", "", "1e3", "99999999999999999999999"] {
        assert_eq!(watch(addr, bad).await.0, 400, "epoch={bad}");
    }
    assert_eq!(get(addr, "/v1/lease/watch").await.0, 400);
    // Before any release, epoch 0 (no lease has it) is not "released".
    assert_eq!(
        watch(addr, "0").await,
        (200, r#"{"epoch":0,"state":"not_holder"}"#.to_string())
    );

    status.leadership(true, 5);
    // Another epoch than the one it leads at: at once.
    assert_eq!(
        watch(addr, "4").await,
        (200, r#"{"epoch":4,"state":"not_holder"}"#.to_string())
    );
    // Its own epoch: held open until it lets go, then `released` (it gave the lease up).
    let open = tokio::spawn(watch(addr, "5"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!open.is_finished(), "a watch on the leader's epoch waits");
    status.released(5);
    status.leadership(false, 0);
    let answered = tokio::time::timeout(Duration::from_secs(5), open)
        .await
        .expect("answered once it let go")
        .unwrap();
    assert_eq!(
        answered,
        (200, r#"{"epoch":5,"state":"released"}"#.to_string())
    );
    // Lost without a release (a lapsed lease): `not_holder`.
    status.leadership(true, 6);
    let open = tokio::spawn(watch(addr, "6"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    status.leadership(false, 0);
    assert_eq!(
        open.await.unwrap(),
        (200, r#"{"epoch":6,"state":"not_holder"}"#.to_string())
    );
    // A bounded number of watches at once: the next one is turned away.
    status.leadership(true, 7);
    let held: Vec<_> = (0..mrgc_autoscaler::app::watch::MAX_WATCHERS)
        .map(|_| tokio::spawn(watch(addr, "7")))
        .collect();
    // Give the 32 time to be open on the server before asking for one more (a probe that got
    // in first would hold a slot itself for the watch's whole length).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut turned_away = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if watch(addr, "7").await.0 == 503 {
            turned_away = true;
            break;
        }
    }
    assert!(turned_away, "watch number {} is refused", held.len() + 1);
    status.leadership(false, 0);
    for h in held {
        let (code, body) = h.await.unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("not_holder"), "{body}");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Poll `cond` every 20 ms for up to `limit`.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = tokio::time::Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_hears_a_release_through_the_leaders_watch_at_once() {
    let clock = TokioClock::starting_at(T0, 1.0);
    let r = region();
    let world = world(&r, &clock);
    let serve = |id: &str, listener: tokio::net::TcpListener| {
        let advertise = listener.local_addr().unwrap().to_string();
        start(
            &r,
            &clock,
            id,
            Start {
                listener: Some(listener),
                advertise: Some(advertise),
                ..Start::default()
            },
        )
    };
    let a = serve(
        "a",
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let mut a_watch = a.status.leader_watch();
    a_watch.wait_for(|s| s.is_leader).await.unwrap();
    let b = serve(
        "b",
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    assert!(
        eventually(Duration::from_secs(10), || b.metrics.lease_watch_open.get()
            == 1)
        .await,
        "b watches a"
    );
    let reads = r.calls().lease_reads;
    let mut b_watch = b.status.leader_watch();
    let stopped_at = std::time::Instant::now();
    let stopping = tokio::spawn(a.stop());
    let took_over =
        tokio::time::timeout(Duration::from_secs(15), b_watch.wait_for(|s| s.is_leader))
            .await
            .expect("b takes over")
            .map(|s| *s)
            .expect("b's watch is open");
    let after = stopped_at.elapsed();
    let (handover, _) = stopping.await.unwrap();
    assert_eq!(handover, Handover::Released { epoch: 1 });
    assert_eq!(took_over.epoch, 2);
    println!("SIGTERM takeover through the watch, in process: {after:?}");
    // Without the watch b would read at its next scheduled read, up to a renewal period
    // (20 s) later; through it, at once.
    assert!(after < Duration::from_secs(2), "took {after:?}");
    assert!(
        r.calls().lease_reads - reads <= 4,
        "b read the lease {} times to take over",
        r.calls().lease_reads - reads
    );
    assert!(
        b.metrics.render().contains(
            "mrgc_autoscaler_lease_watches_total{outcome=\"released\",region=\"us-east-1\"} 1"
        ),
        "{}",
        b.metrics.render()
    );
    b.stop().await;
    world.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_leader_is_gone_reads_at_the_expiry_and_takes_over() {
    let clock = TokioClock::starting_at(T0, 1.0);
    let r = region();
    let world = world(&r, &clock);
    // A holder that died: its address refuses connections, its 3 s lease is not renewed.
    let gone = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let lease = Duration::from_secs(3);
    r.acquire(
        &lease_key(REGION),
        "ghost",
        None,
        lease,
        &Stamp {
            at_ms: clock.now_ms(),
            addr: Some(gone.to_string()),
        },
    )
    .await
    .unwrap();
    let reads = r.calls().lease_reads;
    let started = std::time::Instant::now();
    let b = start(&r, &clock, "b", Start::default());
    let mut b_watch = b.status.leader_watch();
    let took_over =
        tokio::time::timeout(Duration::from_secs(20), b_watch.wait_for(|s| s.is_leader))
            .await
            .expect("b takes over")
            .map(|s| *s)
            .expect("b's watch is open");
    let after = started.elapsed();
    assert_eq!(took_over.epoch, 2);
    // Not before the lease ran a whole duration by b's clock, and at its expiry, not later.
    assert!(after >= lease, "took over after {after:?}");
    assert!(after < lease + Duration::from_secs(3), "took {after:?}");
    assert!(
        b.metrics
            .render()
            .contains("mrgc_autoscaler_lease_watches_total{outcome=\"gone\",region=\"us-east-1\"}"),
        "the refused watch was seen: {}",
        b.metrics.render()
    );
    // A first read, one for the refused watch, one at the expiry.
    let reads = r.calls().lease_reads - reads;
    assert!(reads <= 4, "{reads} lease reads");
    b.stop().await;
    world.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_watch_costs_a_few_reads_and_never_a_live_lease() {
    let clock = TokioClock::starting_at(T0, 1.0);
    let r = region();
    let world = world(&r, &clock);
    // The holder's address answers every watch at once: "released" (for the right epoch),
    // while the holder keeps renewing its lease.
    let liar = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar_addr = liar.local_addr().unwrap();
    let asked = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let lying = {
        let asked = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = liar.accept().await {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let body = r#"{"epoch":1,"state":"released"}"#;
                    let _ = s
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        })
    };
    let key = lease_key(REGION);
    let lease = Duration::from_secs(3);
    r.acquire(
        &key,
        "liar",
        None,
        lease,
        &Stamp {
            at_ms: clock.now_ms(),
            addr: Some(liar_addr.to_string()),
        },
    )
    .await
    .unwrap();
    let renewing = {
        let (r, clock, key) = (r.clone(), clock.clone(), key.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                r.renew(&key, "liar", 1, clock.now_ms()).await.unwrap();
            }
        })
    };
    let reads = r.calls().lease_reads;
    let b = start(&r, &clock, "b", Start::default());
    let mut b_watch = b.status.leader_watch();
    let span = Duration::from_secs(8);
    assert!(
        tokio::time::timeout(span, b_watch.wait_for(|s| s.is_leader))
            .await
            .is_err(),
        "b took a lease that was renewed all along"
    );
    let lease_now = r.read(&key).await.unwrap().unwrap();
    assert_eq!((lease_now.holder.as_str(), lease_now.epoch), ("liar", 1));
    // Backing off (1 s, 2 s, 4 s): a handful of watches, each a read and a few re-reads.
    let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=6).contains(&asked), "{asked} watches in {span:?}");
    let reads = r.calls().lease_reads - reads;
    // Once per renewal (1 s) on schedule, and up to 4 per lie.
    assert!(reads <= 8 + 4 * u64::from(asked) + 2, "{reads} lease reads");
    b.stop().await;
    renewing.abort();
    lying.abort();
    world.abort();
}
