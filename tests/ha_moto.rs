//! Three controller processes for one region against moto, at the default lease timing, each
//! advertising its lease watch: exactly one acts; after `kill -9` of the leader another takes
//! over within 30 s (the lease, plus the 4.5 s after a renewal at which the standbys read it);
//! after SIGTERM of the leader another takes over within 5 s (through the leader's watch, at
//! once); no two epochs append in overlapping time; and the group's desired capacity stays
//! right throughout.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mrgc_autoscaler::core::Action;
use mrgc_autoscaler::ports::{DecisionLog, LeaseStore};
use mrgc_autoscaler::schema;
use support::{Env, instance_item};

const REGION: &str = "us-east-1";
const LEASE: Duration = mrgc_autoscaler::app::election::DEFAULT_LEASE_DURATION;
const INTERVAL: Duration = Duration::from_secs(1);
/// The goals: a kill -9 takeover within 30 s, a SIGTERM takeover within 5 s.
const KILL_TAKEOVER: Duration = Duration::from_secs(30);
const TERM_TAKEOVER: Duration = Duration::from_secs(5);

fn start(id: &str, env: &Env, endpoint: &str, policies: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mrgc-autoscaler"))
        .args([
            "run",
            "--backend",
            "aws",
            "--region",
            REGION,
            "--interval",
            "1s",
        ])
        .args(["--table-prefix", &env.prefix, "--endpoint-url", endpoint])
        .args([
            "--no-cloudwatch",
            "--listen",
            "127.0.0.1:0",
            // The watch on the port it bound: standbys hear of a SIGTERM at once.
            "--advertise-addr",
            "127.0.0.1",
            "--controller-id",
            id,
            "--policies",
        ])
        .arg(policies)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a controller")
}

fn signal(child: &Child, sig: &str) {
    // The shell's own `kill`: no procps needed.
    let ok = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {}", child.id())])
        .status()
        .expect("send a signal")
        .success();
    assert!(ok, "kill -{sig} failed");
}

async fn holder(env: &Env) -> (String, u64) {
    match env.aws.leases.read("autoscaler#us-east-1").await {
        Ok(Some(l)) => (l.holder, l.epoch),
        _ => (String::new(), 0),
    }
}

/// Poll until the lease is held by someone other than `not` (and not empty); returns who,
/// the epoch and how long it took. Also checks the group's desired capacity on each poll.
async fn wait_for_new_holder(
    env: &Env,
    asg: &str,
    not: &str,
    limit: Duration,
    desired_seen: &mut Vec<i32>,
) -> (String, u64, Duration) {
    let t0 = Instant::now();
    loop {
        let (h, e) = holder(env).await;
        desired_seen.push(env.asg_desired(asg).await);
        if !h.is_empty() && h != not {
            return (h, e, t0.elapsed());
        }
        assert!(
            t0.elapsed() < limit,
            "no new leader within {limit:?} (holder {h:?}, epoch {e})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_one_leader_failover_on_kill_and_on_sigterm() {
    let endpoint = moto!();
    let env = Env::with_tables(&endpoint, REGION, "ha").await;
    let asg = format!("{}-model-h", env.prefix);
    env.create_asg(&asg, 0, 30, 2).await;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    for k in 0..2 {
        env.put(
            &schema::GPU_INSTANCES,
            instance_item(
                &format!("i-ha{k}"),
                "model-h",
                REGION,
                "available",
                now_s + 60,
                now_s - 600,
            ),
        )
        .await;
    }
    // 5 rps on 2 instances: above the band; the leader sets the group to ceil(5 / 1.25) = 4.
    for m in 0..4 {
        env.put_rps("model-h", now_s - now_s % 60 + m * 60, 5.0)
            .await;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("model-h.toml"),
        format!("pool = \"model-h\"\nmin = 1\nmax = 20\n\n[regions.{REGION}]\nasg = \"{asg}\"\n"),
    )
    .expect("write policy");

    let mut children: Vec<(String, Child)> = ["c1", "c2", "c3"]
        .iter()
        .map(|id| (id.to_string(), start(id, &env, &endpoint, dir.path())))
        .collect();
    let mut desired_seen = Vec::new();

    // One of them leads.
    let (first, e1, _) =
        wait_for_new_holder(&env, &asg, "", Duration::from_secs(20), &mut desired_seen).await;
    assert_eq!(e1, 1);
    // Let it act and record for a few cycles.
    let t = Instant::now();
    while env.asg_desired(&asg).await != 4 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the leader never scaled the group"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // kill -9 the leader: the lease is not released; a follower must wait out a lease. (The
    // leader is read from the lease, not assumed to be the first: a replica starved of the
    // CPU for longer than the lease's slack over its renewal, 4 s, rightly loses the lease,
    // and on a busy machine that can happen before the kill or right after a takeover. The
    // epochs then only have to grow; the records below show no two leaders overlapping.)
    let (leader, e_before) = holder(&env).await;
    let idx = children
        .iter()
        .position(|(id, _)| *id == leader)
        .expect("leader is ours");
    let (_, mut dead) = children.remove(idx);
    signal(&dead, "KILL");
    let _ = dead.wait();
    let (_, e2, kill_failover) = wait_for_new_holder(
        &env,
        &asg,
        &leader,
        KILL_TAKEOVER + Duration::from_secs(10),
        &mut desired_seen,
    )
    .await;
    assert!(e2 > e_before, "epoch {e2} after {e_before}");
    assert!(
        kill_failover <= KILL_TAKEOVER,
        "kill -9 failover took {kill_failover:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    // SIGTERM the new leader: it releases the lease and answers its watch; the last one takes
    // over at once (without the watch it would be at its next read, up to 20 s later).
    let (second, e2) = holder(&env).await;
    let idx = children
        .iter()
        .position(|(id, _)| *id == second)
        .expect("leader is ours");
    let (_, mut stopping) = children.remove(idx);
    signal(&stopping, "TERM");
    let (third, e3, term_failover) = wait_for_new_holder(
        &env,
        &asg,
        &second,
        TERM_TAKEOVER + Duration::from_secs(10),
        &mut desired_seen,
    )
    .await;
    let status = stopping.wait().expect("wait for the stopped leader");
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
    assert!(e3 > e2, "epoch {e3} after {e2}");
    assert!(
        term_failover <= TERM_TAKEOVER,
        "SIGTERM failover took {term_failover:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    for (_, c) in &children {
        signal(c, "TERM");
    }
    for (_, mut c) in children {
        let _ = c.wait();
    }
    println!(
        "failover: kill -9 {:.1} s (lease {} s, interval {} s); SIGTERM {:.2} s; leaders {first} → {second} → {third}",
        kill_failover.as_secs_f64(),
        LEASE.as_secs(),
        INTERVAL.as_secs(),
        term_failover.as_secs_f64()
    );

    // The group's desired capacity was never anything but the starting 2 or the right 4.
    assert!(
        desired_seen.iter().all(|d| *d == 2 || *d == 4),
        "{desired_seen:?}"
    );
    assert_eq!(env.asg_desired(&asg).await, 4);

    // Records: each from the leader of its epoch, and no two epochs interleaved in time.
    let records = env
        .aws
        .log
        .history("model-h", Some(REGION), 0, 10_000)
        .await
        .expect("history");
    assert!(!records.is_empty());
    let mut spans: Vec<(u64, i64, i64, String)> = Vec::new();
    for r in records.iter().rev() {
        match spans.iter_mut().find(|s| s.0 == r.leader_epoch) {
            Some(s) => {
                s.1 = s.1.min(r.at_ms());
                s.2 = s.2.max(r.at_ms());
                assert_eq!(
                    s.3, r.controller_id,
                    "two controllers recorded under epoch {}",
                    r.leader_epoch
                );
            }
            None => spans.push((
                r.leader_epoch,
                r.at_ms(),
                r.at_ms(),
                r.controller_id.clone(),
            )),
        }
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].2 < w[1].1,
            "epoch {} appended after epoch {} began: {spans:?}",
            w[0].0,
            w[1].0
        );
    }
    assert_eq!(spans.first().map(|s| s.3.as_str()), Some(first.as_str()));
    assert!(
        records
            .iter()
            .any(|r| r.scaling_action == Action::ScaleUp && r.leader_epoch == 1)
    );
}

/// A leader stopped (SIGSTOP) past its lease while others go on: once continued (SIGCONT) it
/// makes no ASG call. Its policy is made distinguishable (min 9, where the others' is 1), so
/// any action of its shows in the group's desired capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_past_its_lease_acts_no_more_when_continued() {
    let endpoint = moto!();
    let env = Env::with_tables(&endpoint, REGION, "stop").await;
    let asg = format!("{}-model-h", env.prefix);
    env.create_asg(&asg, 0, 30, 2).await;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    for k in 0..2 {
        env.put(
            &schema::GPU_INSTANCES,
            instance_item(
                &format!("i-st{k}"),
                "model-h",
                REGION,
                "available",
                now_s + 60,
                now_s - 600,
            ),
        )
        .await;
    }
    for m in -2..6 {
        env.put_rps("model-h", now_s - now_s % 60 + m * 60, 1.0)
            .await;
    }
    let policy = |min: u32| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("model-h.toml"),
            format!(
                "pool = \"model-h\"\nmin = {min}\nmax = 20\n[scale_down]\ndrain = false\n\
                 max_step = \"100%\"\nstabilization = \"0s\"\n[regions.{REGION}]\nasg = \"{asg}\"\n"
            ),
        )
        .expect("write policy");
        dir
    };
    let (dir_a, dir_b) = (policy(9), policy(1));
    let a = start("a", &env, &endpoint, dir_a.path());
    let mut seen = Vec::new();
    let (first, _, _) =
        wait_for_new_holder(&env, &asg, "", Duration::from_secs(20), &mut seen).await;
    assert_eq!(first, "a");
    let t = Instant::now();
    while env.asg_desired(&asg).await != 9 {
        assert!(t.elapsed() < Duration::from_secs(20), "a never acted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let others: Vec<Child> = ["b", "c"]
        .iter()
        .map(|id| start(id, &env, &endpoint, dir_b.path()))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(&a, "STOP");
    let (second, _, _) =
        wait_for_new_holder(&env, &asg, "a", LEASE + Duration::from_secs(10), &mut seen).await;
    let t = Instant::now();
    while env.asg_desired(&asg).await != 1 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{second} never acted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&a, "CONT");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(8) {
        let d = env.asg_desired(&asg).await;
        assert_ne!(d, 9, "the stopped leader acted after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nor did it record anything once the next epoch began.
    let records = env
        .aws
        .log
        .history("model-h", Some(REGION), 0, 10_000)
        .await
        .expect("history");
    let took_over = records
        .iter()
        .filter(|r| r.controller_id == second)
        .map(|r| r.at_ms())
        .min()
        .expect("the new leader recorded");
    assert!(
        records
            .iter()
            .all(|r| r.controller_id != "a" || r.at_ms() < took_over),
        "the stopped leader recorded after the takeover"
    );
    for c in others.iter().chain(std::iter::once(&a)) {
        signal(c, "TERM");
    }
    let mut a = a;
    let _ = a.wait();
    for mut c in others {
        let _ = c.wait();
    }
}
