//! The long-lived service: leader election, the reconcile loop on the interval, policy hot
//! reload, the HTTP endpoints, and a clean shutdown that stops acting and releases the lease.
//! Backend-agnostic: production passes the AWS adapters, the embedded run and tests pass the
//! in-memory region. Signals are not read here: the caller passes `shutdown` and notifies
//! `reload`, so tests drive both.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounterVec;

use crate::core::PolicySet;
use crate::core::policy::PolicyError;
use crate::ports::{Clock, LeaseStore};

use super::election::{ElectionConfig, Elector, Transition, WatchTarget};
use super::http::{self, Status};
use super::leadership::Leadership;
use super::reconciler::{CycleReport, Reconciler, Settings};
use super::reload::{PolicyWatcher, ReloadOutcome};
use super::watch::{self, WatchEvent};
use crate::ports::Backends;
use crate::telemetry::Metrics;

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
    /// Where the shadow policies came from, reloaded like the live ones (empty: no reload).
    pub shadow_paths: Vec<PathBuf>,
}

pub struct ServiceDeps {
    pub backends: Backends,
    pub leases: Arc<dyn LeaseStore>,
    pub clock: Arc<dyn Clock>,
    /// What the HTTP endpoints report; `status.leader_watch()` is the leadership signal.
    pub status: Arc<Status>,
    /// Notified on SIGHUP: reload the policies now.
    pub reload: Arc<tokio::sync::Notify>,
    /// Serve `/healthz`, `/readyz` and `/metrics` here while the service runs.
    pub listener: Option<tokio::net::TcpListener>,
}

/// How the service left the lease when it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// It did not hold the lease.
    NotLeader,
    /// It released the lease: a standby watching it takes over at once, the others at their
    /// next read.
    Released { epoch: u64 },
    /// Releasing failed: a standby takes over after one lease duration.
    Failed { epoch: u64, error: String },
}

/// The longest the shutdown waits for the lease store and for open HTTP connections. With the
/// cycle in progress abandoned at once, a SIGTERM ends well within 10 s whatever the
/// backends do (systemd's and Kubernetes' grace periods are 30 s).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(4);
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the renewal task shares with the loop.
struct Lease {
    elector: tokio::sync::Mutex<Elector>,
    /// This replica's leadership, as of the last renewal or lease read.
    leadership: tokio::sync::watch::Sender<Leadership>,
}

/// Run until `shutdown` resolves, then stop acting, release the lease and stop serving.
/// `on_cycle` sees every cycle's report (tests, printing).
pub async fn run_service(
    mut policies: PolicySet,
    opts: ServiceOptions,
    deps: ServiceDeps,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
    mut on_cycle: impl FnMut(&CycleReport),
) -> Handover {
    let clock = deps.clock.clone();
    let status = deps.status.clone();
    let region = opts.settings.region.clone();
    let http = deps.listener.map(|listener| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(
            listener,
            status.clone(),
            metrics.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        (stop, task)
    });
    let lease = Arc::new(Lease {
        elector: tokio::sync::Mutex::new(Elector::new(
            deps.leases.clone(),
            opts.election.clone(),
            clock.clone(),
        )),
        leadership: tokio::sync::watch::Sender::new(Leadership::follower()),
    });
    let mut leadership_rx = lease.leadership.subscribe();
    // A standby watches the leader it read (when the leader advertises an address): the
    // watcher tells the renewal task to read the lease at once when the leader lets go.
    let (targets, targets_rx) = tokio::sync::watch::channel(None);
    let (events, events_rx) = tokio::sync::mpsc::channel(1);
    let watcher = tokio::spawn(watch::run_watcher(targets_rx, events, metrics.clone()));
    // Renewal runs on its own task, never behind a slow cycle; the loop reads its result.
    let renewal = tokio::spawn(renew(
        lease.clone(),
        clock.clone(),
        status.clone(),
        metrics.clone(),
        opts.election.clone(),
        region.clone(),
        Watching {
            targets,
            events: events_rx,
        },
    ));
    let mut reconciler = Reconciler::new(deps.backends, opts.settings.clone(), metrics.clone());
    let mut live_watcher = (!opts.policy_paths.is_empty())
        .then(|| PolicyWatcher::new(opts.policy_paths.clone(), &policies));
    let mut shadow_watcher = match &opts.shadow {
        Some(s) if !opts.shadow_paths.is_empty() => {
            Some(PolicyWatcher::new(opts.shadow_paths.clone(), s))
        }
        _ => None,
    };
    status.shadow_policy(opts.shadow.as_ref().map(|s| s.hash.as_str()));
    reconciler.set_shadow(opts.shadow);
    metrics.policy_loaded.set(1);
    status.policy(&policies.hash);
    tracing::info!(
        region = %region,
        controller_id = %opts.settings.controller_id,
        policy_hash = %policies.hash,
        shadow_policy_hash = reconciler.shadow().map(|s| s.hash.as_str()).unwrap_or("none"),
        dry_run = opts.settings.dry_run,
        interval_s = opts.interval.as_secs_f64(),
        "service started"
    );
    warn_unmatched_shadow_pools(&region, &policies, reconciler.shadow());

    let interval_ms = opts.interval.as_millis().min(i64::MAX as u128) as i64;
    // File polling runs on tokio's clock, not the controller's: the embedded region may run
    // the controller faster than the wall, and files change at wall speed.
    let policy_poll = opts.policy_poll.max(Duration::from_millis(100));
    let mut next_poll = tokio::time::Instant::now() + policy_poll;
    let mut next_cycle = clock.now_ms();
    let mut reload_now = false;
    let mut led_epoch: Option<u64> = None;
    // Per pool, the last backend read error (kept while the pool backs off).
    let mut read_errors: BTreeMap<String, String> = BTreeMap::new();
    tokio::pin!(shutdown);
    'run: loop {
        status.tick();
        if reload_now || tokio::time::Instant::now() >= next_poll {
            let forced = std::mem::take(&mut reload_now);
            next_poll = tokio::time::Instant::now() + policy_poll;
            if let Some(w) = live_watcher.as_mut() {
                match settle_reload(
                    w,
                    forced,
                    &region,
                    &policies.hash,
                    "live",
                    &metrics.policy_reloads,
                ) {
                    Reloaded::Applied(set) => {
                        status.policy(&set.hash);
                        status.policy_rejected(None);
                        policies = set;
                        reconciler.policies_changed();
                        warn_unmatched_shadow_pools(&region, &policies, reconciler.shadow());
                    }
                    Reloaded::Rejected(e) => status.policy_rejected(Some(e)),
                    // Reverted to the running content: nothing is rejected any more.
                    Reloaded::Unchanged if !w.is_rejecting() => status.policy_rejected(None),
                    Reloaded::Unchanged => {}
                }
            }
            if let Some(w) = shadow_watcher.as_mut() {
                let in_force = reconciler
                    .shadow()
                    .map(|s| s.hash.clone())
                    .unwrap_or_default();
                match settle_reload(
                    w,
                    forced,
                    &region,
                    &in_force,
                    "shadow",
                    &metrics.shadow_policy_reloads,
                ) {
                    Reloaded::Applied(set) => {
                        status.shadow_policy(Some(&set.hash));
                        status.shadow_rejected(None);
                        reconciler.set_shadow(Some(set));
                        warn_unmatched_shadow_pools(&region, &policies, reconciler.shadow());
                    }
                    Reloaded::Rejected(e) => status.shadow_rejected(Some(e)),
                    Reloaded::Unchanged if !w.is_rejecting() => status.shadow_rejected(None),
                    Reloaded::Unchanged => {}
                }
            }
        }

        let leadership = leadership_rx.borrow_and_update().clone();
        let now = clock.now_ms();
        if leadership.is_leader && led_epoch != Some(leadership.epoch) {
            // A new leader starts from the decision log, not from what it knew when it last
            // led: it warms its stabilization history, then acts at once.
            reconciler.forget_pools();
            reconciler.warm_history(&policies, now).await;
            read_errors.clear();
            next_cycle = now;
        }
        led_epoch = leadership.is_leader.then_some(leadership.epoch);
        if !leadership.is_leader {
            // A follower reads nothing but the lease (the renewal task does): no metrics, no
            // instances, no ASG, no decision log, no gauges. It is ready while its policies
            // are loaded and the lease store answers.
            next_cycle = now.saturating_add(interval_ms);
            read_errors.clear();
        } else if now >= next_cycle {
            let started = std::time::Instant::now();
            // A cycle stuck on a hung backend is abandoned on shutdown, not waited for.
            let report = tokio::select! {
                r = reconciler.reconcile_all(&policies, now, &leadership) => r,
                _ = &mut shutdown => break 'run,
            };
            metrics
                .reconcile_duration
                .observe(started.elapsed().as_secs_f64());
            if report.lost_leadership {
                tracing::warn!(region = %region, epoch = leadership.epoch, "a fenced append failed: another controller leads; acting stopped");
            }
            // Ready means every pool's latest backend read worked; a pool backing off keeps
            // its error until it reads again. A record conflict is leadership, not
            // reachability.
            for p in &report.pools {
                read_errors.remove(&p.pool);
            }
            for (pool, e) in &report.errors {
                if e.is_read() {
                    read_errors.insert(pool.clone(), e.to_string());
                } else {
                    read_errors.remove(pool);
                }
            }
            read_errors.retain(|pool, _| policies.pools.contains_key(pool));
            status.cycle((!read_errors.is_empty()).then(|| {
                read_errors
                    .iter()
                    .map(|(pool, e)| format!("{pool}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            }));
            on_cycle(&report);
            // Keep the cadence; after a long stall, start again from now rather than burst.
            next_cycle = next_cycle.saturating_add(interval_ms);
            if next_cycle < now {
                next_cycle = now.saturating_add(interval_ms);
            }
        }
        let until_cycle = Duration::from_millis((next_cycle - clock.now_ms()).max(1) as u64);
        let until_poll = next_poll.saturating_duration_since(tokio::time::Instant::now());
        tokio::select! {
            _ = clock.sleep(until_cycle) => {}
            _ = tokio::time::sleep(until_poll) => {}
            _ = leadership_rx.changed() => {}
            _ = deps.reload.notified() => reload_now = true,
            _ = &mut shutdown => break 'run,
        }
    }

    // Stop acting (no cycle starts after this, the one in progress was dropped), then hand
    // the lease over so a standby takes over at once.
    status.stopping();
    renewal.abort();
    let _ = renewal.await;
    watcher.abort();
    let _ = watcher.await;
    metrics.lease_watch_open.set(0);
    let handover = release(&lease, &clock, &region).await;
    // Released before it says it follows: the lease watch then answers `released`, and the
    // standbys read the lease at once.
    if let Handover::Released { epoch } = &handover {
        status.released(*epoch);
    }
    metrics.leader.set(0);
    metrics.leader_epoch.set(0);
    status.leadership(false, 0);
    status.lease_guard(None);
    if let Some((stop, mut task)) = http {
        let _ = stop.send(());
        match tokio::time::timeout(HTTP_DRAIN_TIMEOUT, &mut task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP endpoints failed"),
            Ok(_) => {}
            Err(_) => task.abort(),
        }
    }
    tracing::info!(region = %region, "stopped");
    handover
}

/// Give the lease up, within `RELEASE_TIMEOUT` whatever the lease store does.
async fn release(lease: &Lease, clock: &Arc<dyn Clock>, region: &str) -> Handover {
    let mut elector = lease.elector.lock().await;
    let held = elector.leadership(clock.now_ms()).fence.map(|f| f.epoch);
    let handover = match held {
        None => Handover::NotLeader,
        Some(epoch) => match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
            Ok(Ok(())) => {
                tracing::info!(region = %region, epoch, "released the lease; a standby watching it takes over at once, the others at their next read");
                Handover::Released { epoch }
            }
            Ok(Err(e)) => Handover::Failed {
                epoch,
                error: e.to_string(),
            },
            Err(_) => Handover::Failed {
                epoch,
                error: format!("no answer from the lease store within {RELEASE_TIMEOUT:?}"),
            },
        },
    };
    if let Handover::Failed { epoch, error } = &handover {
        tracing::warn!(region = %region, epoch, %error, "releasing the lease failed; a standby takes over after one lease duration");
    }
    handover
}

/// The renewal task's side of the lease watch.
struct Watching {
    /// The leader to watch (None while leading, or when the leader advertises no address).
    targets: tokio::sync::watch::Sender<Option<WatchTarget>>,
    /// From the watcher: read the lease now.
    events: tokio::sync::mpsc::Receiver<WatchEvent>,
}

/// After the leader's watch says it released its lease, a read that still shows it held may be
/// a stale (eventually consistent) one: look again this often, this many times.
const CONFIRM_RELEASE_EVERY: Duration = Duration::from_millis(300);
const CONFIRM_RELEASE_READS: u8 = 3;

/// The renewal task: a leader renews every `renew_every` (retrying sooner after a failed
/// renewal); a follower reads the lease when the elector says (when the lease it saw would
/// expire unless renewed, or when it may take it over) and at once when the leader's watch
/// answers. Each publishes the leadership that results, and logs and counts transitions.
async fn renew(
    lease: Arc<Lease>,
    clock: Arc<dyn Clock>,
    status: Arc<Status>,
    metrics: Metrics,
    cfg: ElectionConfig,
    region: String,
    mut watching: Watching,
) {
    let leader_tick = cfg.renew_every.max(Duration::from_millis(100));
    // A release the watch announced and the lease did not show yet: (holder, epoch, reads left).
    let mut confirming: Option<(String, u64, u8)> = None;
    let mut watcher_alive = true;
    loop {
        let (transition, leadership, next_tick, lease_error, target, seen) = {
            let mut e = lease.elector.lock().await;
            let t = e.tick(clock.now_ms()).await;
            let now = clock.now_ms();
            (
                t,
                e.leadership(now),
                e.next_tick_in(now),
                e.store_error().map(str::to_string),
                e.watch_target(),
                e.seen().map(|l| (l.holder.clone(), l.epoch)),
            )
        };
        status.lease_store(lease_error);
        metrics.leader.set(i64::from(leadership.is_leader));
        metrics.leader_epoch.set(if leadership.is_leader {
            leadership.epoch as i64
        } else {
            0
        });
        status.lease_guard(leadership.is_leader.then(|| leadership.guard.clone()));
        if let Some(previous) = status.leadership(leadership.is_leader, leadership.epoch) {
            if leadership.is_leader {
                tracing::info!(region = %region, epoch = leadership.epoch, "leader: acting and recording");
            } else {
                let reason = match &transition {
                    Transition::Lost { reason } => reason.as_str(),
                    _ => "the lease ran out before it was renewed",
                };
                tracing::warn!(region = %region, epoch = previous.epoch, reason, "follower: stopped acting");
            }
        }
        watching.targets.send_if_modified(|t| {
            if *t == target {
                return false;
            }
            *t = target;
            true
        });
        let mut tick = if leadership.is_leader {
            next_tick.clamp(Duration::from_millis(100), leader_tick)
        } else {
            next_tick
        };
        // Still showing the holder that said it let go: a stale read, most likely.
        confirming = match confirming.take() {
            Some((holder, epoch, left))
                if !leadership.is_leader
                    && left > 0
                    && seen.as_ref() == Some(&(holder.clone(), epoch)) =>
            {
                tick = tick.min(CONFIRM_RELEASE_EVERY);
                Some((holder, epoch, left - 1))
            }
            _ => None,
        };
        let following = !leadership.is_leader;
        lease.leadership.send_replace(leadership);
        tokio::select! {
            _ = clock.sleep(tick) => {}
            event = watching.events.recv(), if following && watcher_alive => match event {
                Some(WatchEvent { target, outcome: watch::Outcome::Released }) => {
                    confirming = Some((target.holder, target.epoch, CONFIRM_RELEASE_READS));
                }
                Some(_) => {}
                // The watcher is gone: read on the elector's schedule alone.
                None => watcher_alive = false,
            }
        }
    }
}

enum Reloaded {
    Unchanged,
    Applied(PolicySet),
    /// Every problem, on one line (for `/readyz`).
    Rejected(String),
}

/// Poll (or, `forced`, re-read) one policy set; log and count what happened.
fn settle_reload(
    w: &mut PolicyWatcher,
    forced: bool,
    region: &str,
    in_force: &str,
    which: &'static str,
    counter: &IntCounterVec,
) -> Reloaded {
    let outcome = if forced { w.reload() } else { w.poll() };
    match outcome {
        ReloadOutcome::Unchanged => Reloaded::Unchanged,
        ReloadOutcome::Applied(set) => {
            counter.with_label_values(&["applied"]).inc();
            tracing::info!(
                region = %region,
                policy = which,
                old_hash = %in_force,
                policy_hash = %set.hash,
                "policy reloaded; applies from the next cycle"
            );
            Reloaded::Applied(set)
        }
        ReloadOutcome::Rejected(e) => {
            counter.with_label_values(&["rejected"]).inc();
            tracing::error!(
                region = %region,
                policy = which,
                policy_hash = %in_force,
                problems = e.problems.len(),
                "policy reload rejected: the last good policy stays in force"
            );
            for p in &e.problems {
                tracing::error!(region = %region, policy = which, problem = %p, "rejected policy edit");
            }
            Reloaded::Rejected(one_line(&e))
        }
    }
}

fn one_line(e: &PolicyError) -> String {
    e.to_string().trim().replace('\n', " ")
}

/// A shadow policy for a pool the live set does not run in this region is never evaluated:
/// say so once per load rather than silently.
fn warn_unmatched_shadow_pools(region: &str, live: &PolicySet, shadow: Option<&PolicySet>) {
    let Some(shadow) = shadow else { return };
    for p in shadow.pools.values() {
        if p.region(region).is_some() && live.pool(&p.pool).and_then(|l| l.region(region)).is_none()
        {
            tracing::warn!(region = %region, pool = %p.pool, "the shadow policy has a pool the live policies do not run here: it is not evaluated");
        }
    }
}
