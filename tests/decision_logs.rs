//! Decision log lines, live and shadow, carry pool, region, epoch and reason_code. In a test
//! binary of its own: a thread-local subscriber races with other tests' callsite caches.

use std::sync::Arc;

use mrgc_autoscaler::app::Leadership;

mod fixtures;
use fixtures::{REGION, T0, policies, reconciler, region, shadow_policy, traffic};

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
