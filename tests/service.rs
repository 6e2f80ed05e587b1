//! The long-lived service: policy hot reload (a valid edit applies, an invalid one is rejected
//! and the old policy keeps running) and the HTTP endpoints.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use mrgc_autoscaler::adapters::memory::MemoryRegion;
use mrgc_autoscaler::app::clock::TokioClock;
use mrgc_autoscaler::app::election::ElectionConfig;
use mrgc_autoscaler::app::http::{self, Status};
use mrgc_autoscaler::app::metrics::Metrics;
use mrgc_autoscaler::app::service::{ServiceDeps, ServiceOptions, run_service};
use mrgc_autoscaler::app::{Backends, Settings};
use mrgc_autoscaler::core::policy::load_paths;

const T0: i64 = 1_764_000_000_000;
const REGION: &str = "us-east-1";

fn write_policy(dir: &Path, max: &str) {
    std::fs::write(
        dir.join("model-a.toml"),
        format!("pool = \"model-a\"\nmin = 2\nmax = {max}\n[regions.us-east-1]\nasg = \"asg-a\"\n"),
    )
    .expect("write policy");
}

#[tokio::test(start_paused = true)]
async fn a_valid_edit_applies_and_an_invalid_one_is_rejected_while_the_old_policy_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_policy(dir.path(), "50");
    let first = load_paths(&[dir.path().to_path_buf()]).unwrap();
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
    // 10 rps on 8: in the band, recorded once and at each change.
    for m in -5..30 {
        r.put_rps("model-a", REGION, T0 + m * 60_000, 10.0);
    }
    let metrics = Metrics::new();
    let status = Status::new(Duration::from_secs(30));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = {
        let (r, metrics, status) = (r.clone(), metrics.clone(), status.clone());
        let paths = vec![dir.path().to_path_buf()];
        tokio::spawn(async move {
            run_service(
                first,
                ServiceOptions {
                    settings: Settings {
                        region: REGION.into(),
                        controller_id: "svc".into(),
                        dry_run: false,
                        // Record every cycle, so every cycle's policy hash is visible.
                        record_heartbeat: Duration::ZERO,
                    },
                    interval: Duration::from_secs(30),
                    election: ElectionConfig::new(REGION, "svc"),
                    policy_paths: paths,
                    policy_poll: Duration::from_secs(5),
                    shadow: None,
                    shadow_paths: vec![],
                },
                ServiceDeps {
                    backends: Backends::in_memory(&r),
                    leases: Arc::new(r.clone()),
                    clock: Arc::new(TokioClock::starting_at(T0, 1.0)),
                    status,
                    reload: Arc::new(tokio::sync::Notify::new()),
                    listener: None,
                },
                metrics,
                async {
                    let _ = stopped.await;
                },
                |_| {},
            )
            .await;
        })
    };
    let hashes = |r: &MemoryRegion| -> Vec<String> {
        let mut v: Vec<String> = r
            .decisions()
            .iter()
            .map(|d| d.policy_hash.clone())
            .collect();
        v.dedup();
        v
    };
    tokio::time::sleep(Duration::from_secs(61)).await;
    let h1 = hashes(&r);
    assert_eq!(h1.len(), 1, "{h1:?}");

    // A valid edit: recorded under its new hash from the next cycle on.
    write_policy(dir.path(), "60");
    tokio::time::sleep(Duration::from_secs(61)).await;
    let h2 = hashes(&r);
    assert_eq!(h2.len(), 2, "{h2:?}");
    assert!(
        metrics
            .render()
            .contains("mrgc_autoscaler_policy_reloads_total{result=\"applied\"} 1")
    );
    assert!(
        status.ready().unwrap_or_default().contains(&h2[1]),
        "{:?}",
        status.ready()
    );

    // An invalid edit: rejected once, the last good policy keeps deciding.
    write_policy(dir.path(), "1");
    tokio::time::sleep(Duration::from_secs(61)).await;
    let h3 = hashes(&r);
    assert_eq!(
        h3, h2,
        "the rejected edit must not replace the running policy"
    );
    let text = metrics.render();
    assert!(
        text.contains("mrgc_autoscaler_policy_reloads_total{result=\"rejected\"} 1"),
        "{text}"
    );
    let ready = status.ready().expect("still ready on the last good policy");
    assert!(
        ready.contains("the last policy edit was rejected")
            && ready.contains("min (2) is greater than max (1)"),
        "{ready}"
    );

    let _ = stop.send(());
    service.await.unwrap();
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
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
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

#[tokio::test]
async fn endpoints_report_health_readiness_and_metrics() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = Status::new(Duration::from_secs(30));
    let metrics = Metrics::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(
        listener,
        status.clone(),
        metrics.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("no valid policy loaded"), "{body}");

    status.policy("abc123");
    status.tick();
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(
        body.contains("no reconcile cycle has completed yet"),
        "{body}"
    );

    status.cycle(Some(
        "model-a: reading instances: transient: throttled".into(),
    ));
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(
        body.contains("could not read its backends: model-a: reading instances"),
        "{body}"
    );

    status.cycle(None);
    status.leadership(true, 4);
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(
        (code, body.trim()),
        (200, "ready: leader (epoch 4), policy abc123")
    );
    status.leadership(false, 0);
    assert!(get(addr, "/readyz").await.1.contains("ready: follower"));

    metrics.leader.set(1);
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("mrgc_autoscaler_leader 1"), "{body}");
    assert_eq!(get(addr, "/nope").await.0, 404);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
