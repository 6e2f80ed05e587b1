//! The long-lived service: leader election, the reconcile loop on the interval, and a clean
//! shutdown that stops acting and releases the lease. Backend-agnostic: production passes the
//! AWS adapters, tests pass the in-memory region.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::core::PolicySet;
use crate::ports::{Clock, LeaseStore};

use super::election::{ElectionConfig, Elector, Transition};
use super::http::Status;
use super::metrics::Metrics;
use super::reconciler::{Backends, CycleReport, PoolError, Reconciler, Settings};
use super::reload::{PolicyWatcher, ReloadOutcome};

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub settings: Settings,
    pub interval: Duration,
    pub election: ElectionConfig,
    /// Where the policies came from, re-read every `policy_poll` and on a reload signal
    /// (empty: no reload).
    pub policy_paths: Vec<PathBuf>,
    pub policy_poll: Duration,
    /// A candidate policy set evaluated beside the live one and recorded as dry-run.
    pub shadow: Option<PolicySet>,
}

pub struct ServiceDeps {
    pub backends: Backends,
    pub leases: Arc<dyn LeaseStore>,
    pub clock: Arc<dyn Clock>,
    /// What the HTTP endpoints report.
    pub status: Arc<Status>,
    /// Notified on SIGHUP: reload the policies now.
    pub reload: Arc<tokio::sync::Notify>,
}

/// Run until `shutdown` resolves. `on_cycle` sees every cycle's report (tests, printing).
pub async fn run_service(
    mut policies: PolicySet,
    opts: ServiceOptions,
    deps: ServiceDeps,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
    mut on_cycle: impl FnMut(&CycleReport),
) {
    let clock = deps.clock.clone();
    let status = deps.status.clone();
    let mut elector = Elector::new(deps.leases.clone(), opts.election.clone());
    let region = opts.settings.region.clone();
    let mut reconciler = Reconciler::new(deps.backends, opts.settings, metrics.clone());
    reconciler.set_shadow(opts.shadow);
    let mut watcher = (!opts.policy_paths.is_empty())
        .then(|| PolicyWatcher::new(opts.policy_paths.clone(), &policies));
    metrics.policy_loaded.set(1);
    status.policy(&policies.hash);
    let tick = opts
        .election
        .renew_every
        .min(opts.interval)
        .max(Duration::from_millis(100));
    let interval_ms = opts.interval.as_millis() as i64;
    let poll_ms = opts.policy_poll.as_millis().max(100) as i64;
    let mut next_cycle = clock.now_ms();
    let mut next_poll = clock.now_ms() + poll_ms;
    let mut reload_now = false;
    tokio::pin!(shutdown);
    loop {
        status.tick();
        let now = clock.now_ms();
        if let Some(w) = watcher.as_mut()
            && (reload_now || now >= next_poll)
        {
            reload_now = false;
            next_poll = now + poll_ms;
            match w.poll() {
                ReloadOutcome::Unchanged => {}
                ReloadOutcome::Applied(set) => {
                    tracing::info!(region = %region, old = %policies.hash, new = %set.hash, "policy reloaded; applies from the next cycle");
                    metrics.policy_reloads.with_label_values(&["applied"]).inc();
                    status.policy(&set.hash);
                    status.policy_rejected(None);
                    policies = set;
                }
                ReloadOutcome::Rejected(e) => {
                    tracing::error!(region = %region, in_force = %policies.hash, "policy edit rejected; the last good policy stays in force:\n{e}");
                    metrics
                        .policy_reloads
                        .with_label_values(&["rejected"])
                        .inc();
                    status.policy_rejected(Some(e.to_string().trim().replace('\n', " ")));
                }
            }
        }
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
        status.leadership(leadership.is_leader, leadership.epoch);
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
            // Ready means every backend read worked; a record conflict is leadership, not
            // reachability.
            let unreachable = report
                .errors
                .iter()
                .find(|(_, e)| !matches!(e, PoolError::Record(_)))
                .map(|(pool, e)| format!("{pool}: {e}"));
            status.cycle(unreachable);
            on_cycle(&report);
            // Keep the cadence; after a long stall, start again from now rather than burst.
            next_cycle += interval_ms;
            if next_cycle < now {
                next_cycle = now + interval_ms;
            }
        }
        tokio::select! {
            _ = clock.sleep(tick) => {}
            _ = deps.reload.notified() => reload_now = true,
            _ = &mut shutdown => break,
        }
    }
    // Stop acting, then hand the lease over so a standby takes over at once.
    if let Err(e) = elector.release().await {
        tracing::warn!(region = %region, error = %e, "releasing the lease failed; a standby takes over after one lease duration");
    }
    metrics.leader.set(0);
    metrics.leader_epoch.set(0);
    status.leadership(false, 0);
    tracing::info!(region = %region, "stopped");
}
