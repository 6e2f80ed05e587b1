//! The long-lived service: leader election, the reconcile loop on the interval, and a clean
//! shutdown that stops acting and releases the lease. Backend-agnostic: production passes the
//! AWS adapters, tests pass the in-memory region.

use std::sync::Arc;
use std::time::Duration;

use crate::core::PolicySet;
use crate::ports::{Clock, LeaseStore};

use super::election::{ElectionConfig, Elector, Transition};
use super::metrics::Metrics;
use super::reconciler::{Backends, CycleReport, Reconciler, Settings};

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub settings: Settings,
    pub interval: Duration,
    pub election: ElectionConfig,
}

pub struct ServiceDeps {
    pub backends: Backends,
    pub leases: Arc<dyn LeaseStore>,
    pub clock: Arc<dyn Clock>,
}

/// Run until `shutdown` resolves. `on_cycle` sees every cycle's report (tests, printing).
pub async fn run_service(
    policies: PolicySet,
    opts: ServiceOptions,
    deps: ServiceDeps,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
    mut on_cycle: impl FnMut(&CycleReport),
) {
    let clock = deps.clock.clone();
    let mut elector = Elector::new(deps.leases.clone(), opts.election.clone());
    let region = opts.settings.region.clone();
    let mut reconciler = Reconciler::new(deps.backends, opts.settings, metrics.clone());
    metrics.policy_loaded.set(1);
    let tick = opts
        .election
        .renew_every
        .min(opts.interval)
        .max(Duration::from_millis(100));
    let interval_ms = opts.interval.as_millis() as i64;
    let mut next_cycle = clock.now_ms();
    tokio::pin!(shutdown);
    loop {
        let now = clock.now_ms();
        match elector.tick(now).await {
            Transition::Acquired { epoch } => {
                tracing::info!(region = %region, epoch, "acquired leadership");
                reconciler.warm_history(&policies, now).await;
            }
            Transition::Lost { reason } => {
                tracing::warn!(region = %region, %reason, "lost leadership");
            }
            Transition::None => {}
        }
        let leadership = elector.leadership(clock.now_ms());
        metrics.leader.set(i64::from(leadership.is_leader));
        metrics.leader_epoch.set(if leadership.is_leader {
            leadership.epoch as i64
        } else {
            0
        });
        if now >= next_cycle {
            let started = std::time::Instant::now();
            let report = reconciler
                .reconcile_all(&policies, clock.now_ms(), &leadership)
                .await;
            metrics
                .reconcile_duration
                .with_label_values(&[region.as_str()])
                .observe(started.elapsed().as_secs_f64());
            if report.lost_leadership {
                tracing::warn!(region = %region, "a fenced append failed: another controller leads");
            }
            on_cycle(&report);
            // Keep the cadence; after a long stall, start again from now rather than burst.
            next_cycle += interval_ms;
            if next_cycle < now {
                next_cycle = now + interval_ms;
            }
        }
        tokio::select! {
            _ = clock.sleep(tick) => {}
            _ = &mut shutdown => break,
        }
    }
    // Stop acting, then hand the lease over so a standby takes over at once.
    if let Err(e) = elector.release().await {
        tracing::warn!(region = %region, error = %e, "releasing the lease failed; a standby takes over after one lease duration");
    }
    metrics.leader.set(0);
    metrics.leader_epoch.set(0);
    tracing::info!(region = %region, "stopped");
}
