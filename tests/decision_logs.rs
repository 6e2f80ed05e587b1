//! Decision log lines, live and shadow, carry pool, region, epoch and reason_code. In a test
//! binary of its own: a thread-local subscriber races with other tests' callsite caches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mrgc_autoscaler::adapters::memory::MemoryRegion;
use mrgc_autoscaler::app::metrics::Metrics;
use mrgc_autoscaler::app::{Backends, Leadership, Reconciler, Settings};
use mrgc_autoscaler::core::PolicySet;
use mrgc_autoscaler::core::policy::{PolicySource, parse_sources};

const T0: i64 = 1_764_000_000_000;
const REGION: &str = "us-east-1";

fn policies() -> PolicySet {
    let mk = |pool: &str| PolicySource {
        path: PathBuf::from(format!("{pool}.toml")),
        text: format!(
            "pool = \"{pool}\"\nmin = 2\nmax = 50\n[scale_down]\nmax_step = \"50%\"\nstabilization = \"5m\"\n[instances]\nlaunch_time = \"6m\"\n[regions.us-east-1]\nasg = \"asg-{pool}\"\n"
        ),
    };
    parse_sources(&[mk("model-a"), mk("model-b")]).expect("valid test policies")
}

fn region() -> MemoryRegion {
    let r = MemoryRegion::new(REGION, 7);
    for pool in ["model-a", "model-b"] {
        r.create_asg(
            &format!("asg-{pool}"),
            pool,
            0,
            100,
            Duration::from_secs(360),
            Duration::ZERO,
        );
        r.warm_start(&format!("asg-{pool}"), 8, T0);
    }
    r
}

fn reconciler(r: &MemoryRegion, dry_run: bool) -> Reconciler {
    Reconciler::new(
        Backends::in_memory(r),
        Settings {
            region: REGION.into(),
            controller_id: "test-1".into(),
            dry_run,
            record_heartbeat: Duration::from_secs(600),
        },
        Metrics::new(),
    )
}

/// Write `rps` for both pools at every minute end in [from, to].
fn traffic(r: &MemoryRegion, from: i64, to: i64, rps_a: f64, rps_b: f64) {
    let mut t = from - from.rem_euclid(60_000);
    while t <= to {
        r.put_rps("model-a", REGION, t, rps_a);
        r.put_rps("model-b", REGION, t, rps_b);
        t += 60_000;
    }
}

fn shadow_policy(extra: &str) -> PolicySet {
    parse_sources(&[PolicySource {
        path: PathBuf::from("model-a.toml"),
        text: format!(
            "pool = \"model-a\"\nmin = 2\nmax = 50\n{extra}\n[regions.us-east-1]\nasg = \"asg-model-a\"\n"
        ),
    }])
    .expect("valid shadow policy")
}

/// Captures what the JSON log layer writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_decision_log_line_carries_pool_region_epoch_and_reason_code() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Tests run in parallel threads: another one may have cached these callsites as
    // uninteresting (no subscriber) before this thread-local one existed.
    tracing::callsite::rebuild_interest_cache();

    let r = region();
    let mut rec = reconciler(&r, false);
    rec.set_shadow(Some(shadow_policy("[band]\nlow = 0.5\nhigh = 0.8")));
    traffic(&r, T0 - 300_000, T0, 20.0, 10.0);
    let lead = Leadership {
        epoch: 3,
        ..Leadership::sole()
    };
    rec.reconcile_all(&policies(), T0, &lead).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let decisions: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON log line"))
        .filter(|v| v.get("action").is_some())
        .collect();
    // model-a and model-b live, model-a shadow.
    assert_eq!(decisions.len(), 3, "{text}");
    for d in &decisions {
        for field in [
            "pool",
            "region",
            "epoch",
            "reason_code",
            "policy",
            "policy_hash",
        ] {
            assert!(d.get(field).is_some(), "{field} missing in {d}");
        }
        assert_eq!(d["epoch"], 3);
        assert_eq!(d["region"], REGION);
    }
    assert!(
        decisions
            .iter()
            .any(|d| d["policy"] == "shadow" && d["dry_run"] == true)
    );
}
