//! The service's HTTP endpoints: `/healthz` (the loop is alive), `/readyz` (policies loaded,
//! backends reachable, and the lease state), `/metrics` (Prometheus text), and the lease watch
//! `/v1/lease/watch?epoch=N` that standbys hold open on the leader (`watch.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use serde::Deserialize;

use super::election::LeaderState;
use super::leadership::{ActGuard, Permit};
use super::watch::{MAX_WATCHERS, WATCH_HOLD, WATCH_PATH, WatchAnswer, WatchState};
use crate::telemetry::Metrics;

/// What the loop tells the endpoints. Written by the service loop, read by HTTP handlers; no
/// lock is held across an await. Leadership is a `watch` channel the rest of the process can
/// subscribe to (`leader_watch`).
#[derive(Debug)]
pub struct Status {
    last_tick: Mutex<Option<tokio::time::Instant>>,
    /// The loop counts as stuck when it has not ticked for this long.
    stuck_after_ms: AtomicU64,
    cycles: AtomicU64,
    backends_ok: AtomicBool,
    backend_error: Mutex<Option<String>>,
    policy_hash: Mutex<Option<String>>,
    policy_rejected: Mutex<Option<String>>,
    shadow_hash: Mutex<Option<String>>,
    shadow_rejected: Mutex<Option<String>>,
    stopping: AtomicBool,
    leader: watch::Sender<LeaderState>,
    /// When the last cycle ended: readiness reflects now, so a cycle stuck on a hung backend
    /// shows as not ready after a few intervals.
    last_cycle: Mutex<Option<tokio::time::Instant>>,
    /// The leader's guard: a lease that lapsed without renewal shows as not ready at once.
    guard: Mutex<Option<ActGuard>>,
    /// Why the lease store could not be reached at the last lease read or renewal.
    lease_error: Mutex<Option<String>>,
    /// The lease store answered at least once.
    lease_reached: AtomicBool,
    /// The epoch whose lease this replica gave up last (0: none), for the lease watch.
    released_epoch: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a panicked writer cannot leave it half-updated in a way that matters here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Status {
    pub fn new(interval: Duration) -> Arc<Self> {
        Arc::new(Status {
            last_tick: Mutex::new(None),
            stuck_after_ms: AtomicU64::new((interval.as_millis() as u64 * 3).max(10_000)),
            cycles: AtomicU64::new(0),
            backends_ok: AtomicBool::new(false),
            backend_error: Mutex::new(None),
            policy_hash: Mutex::new(None),
            policy_rejected: Mutex::new(None),
            shadow_hash: Mutex::new(None),
            shadow_rejected: Mutex::new(None),
            stopping: AtomicBool::new(false),
            leader: watch::Sender::new(LeaderState::default()),
            last_cycle: Mutex::new(None),
            guard: Mutex::new(None),
            lease_error: Mutex::new(None),
            lease_reached: AtomicBool::new(false),
            released_epoch: AtomicU64::new(0),
        })
    }

    pub fn tick(&self) {
        *lock(&self.last_tick) = Some(tokio::time::Instant::now());
    }

    /// After a cycle: were all backend reads fine? `error` says what was not.
    pub fn cycle(&self, error: Option<String>) {
        *lock(&self.last_cycle) = Some(tokio::time::Instant::now());
        self.cycles.fetch_add(1, Ordering::Relaxed);
        self.backends_ok.store(error.is_none(), Ordering::Relaxed);
        *lock(&self.backend_error) = error;
    }

    pub fn policy(&self, hash: &str) {
        *lock(&self.policy_hash) = Some(hash.to_string());
    }

    /// The last rejected policy edit (None once a valid one applied).
    pub fn policy_rejected(&self, error: Option<String>) {
        *lock(&self.policy_rejected) = error;
    }

    /// The shadow policy set in force (None: no shadow).
    pub fn shadow_policy(&self, hash: Option<&str>) {
        *lock(&self.shadow_hash) = hash.map(str::to_string);
    }

    /// The last rejected shadow policy edit (None once a valid one applied).
    pub fn shadow_rejected(&self, error: Option<String>) {
        *lock(&self.shadow_rejected) = error;
    }

    /// The service is shutting down: no longer ready.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Publish this replica's leadership; returns the previous state when it changed.
    pub fn leadership(&self, is_leader: bool, epoch: u64) -> Option<LeaderState> {
        let new = LeaderState {
            is_leader,
            epoch: if is_leader { epoch } else { 0 },
        };
        let mut previous = None;
        self.leader.send_if_modified(|s| {
            if *s == new {
                return false;
            }
            previous = Some(*s);
            *s = new;
            true
        });
        previous
    }

    /// This replica gave up the lease of `epoch` (before it publishes that it follows, so the
    /// lease watch answers `released`).
    pub fn released(&self, epoch: u64) {
        self.released_epoch.store(epoch, Ordering::SeqCst);
    }

    /// Whether the last lease read or renewal reached the lease store (None: it did).
    pub fn lease_store(&self, error: Option<String>) {
        if error.is_none() {
            self.lease_reached.store(true, Ordering::Relaxed);
        }
        *lock(&self.lease_error) = error;
    }

    /// The guard of the lease this replica leads under (None while following).
    pub fn lease_guard(&self, guard: Option<ActGuard>) {
        *lock(&self.guard) = guard;
    }

    /// Leadership as a watch channel: `changed().await` wakes on every transition.
    pub fn leader_watch(&self) -> watch::Receiver<LeaderState> {
        self.leader.subscribe()
    }

    pub fn leader_state(&self) -> LeaderState {
        *self.leader.borrow()
    }

    /// Alive: the loop ticked recently.
    pub fn healthy(&self) -> Result<String, String> {
        let stuck = Duration::from_millis(self.stuck_after_ms.load(Ordering::Relaxed));
        match *lock(&self.last_tick) {
            None => Ok("starting".into()),
            Some(t) if t.elapsed() <= stuck => Ok("ok".into()),
            Some(t) => Err(format!(
                "the reconcile loop has not ticked for {:.0} s",
                t.elapsed().as_secs_f64()
            )),
        }
    }

    /// Ready: a valid policy is in force and, for the leader, the last cycle reached every
    /// backend. A follower reads nothing but the lease: it is ready while its policies are
    /// loaded and the lease store answers (it can take over at once); the body says which.
    pub fn ready(&self) -> Result<String, String> {
        let l = self.leader_state();
        let lease = if l.is_leader {
            format!("leader (epoch {})", l.epoch)
        } else {
            "follower".to_string()
        };
        let Some(hash) = lock(&self.policy_hash).clone() else {
            return Err(format!("not ready: no valid policy loaded; {lease}"));
        };
        if self.stopping.load(Ordering::Relaxed) {
            return Err(format!("not ready: shutting down; {lease}"));
        }
        let rejected = lock(&self.policy_rejected)
            .as_ref()
            .map(|e| format!("; the last policy edit was rejected, {hash} stays in force: {e}"))
            .unwrap_or_default();
        let shadow = match (
            lock(&self.shadow_hash).clone(),
            lock(&self.shadow_rejected).clone(),
        ) {
            (None, _) => String::new(),
            (Some(h), None) => format!(", shadow policy {h}"),
            (Some(h), Some(e)) => {
                format!(", shadow policy {h} (the last shadow edit was rejected, {h} stays: {e})")
            }
        };
        if let Some(e) = lock(&self.lease_error).clone() {
            return Err(format!(
                "not ready: the lease store cannot be reached: {e}; {lease}"
            ));
        }
        if !l.is_leader && self.lease_reached.load(Ordering::Relaxed) {
            return Ok(format!(
                "ready: {lease} (reads only the lease), policy {hash}{shadow}{rejected}"
            ));
        }
        if self.cycles.load(Ordering::Relaxed) == 0 {
            return Err(format!(
                "not ready: no reconcile cycle has completed yet; {lease}"
            ));
        }
        let stuck = Duration::from_millis(self.stuck_after_ms.load(Ordering::Relaxed));
        if let Some(t) = *lock(&self.last_cycle)
            && t.elapsed() > stuck
        {
            return Err(format!(
                "not ready: no reconcile cycle has completed for {:.0} s (a backend may hang); {lease}",
                t.elapsed().as_secs_f64()
            ));
        }
        if l.is_leader
            && lock(&self.guard)
                .as_ref()
                .is_some_and(|g| g.permit() == Permit::Denied)
        {
            return Err(format!(
                "not ready: the lease was not renewed in time and has lapsed; {lease}"
            ));
        }
        if !self.backends_ok.load(Ordering::Relaxed) {
            let e = lock(&self.backend_error).clone().unwrap_or_default();
            return Err(format!(
                "not ready: the last cycle could not read its backends: {e}; {lease}"
            ));
        }
        Ok(format!("ready: {lease}, policy {hash}{shadow}{rejected}"))
    }
}

#[derive(Clone)]
struct AppState {
    status: Arc<Status>,
    metrics: Metrics,
    /// Lease watches served at once, at most `MAX_WATCHERS`.
    watchers: Arc<tokio::sync::Semaphore>,
}

fn reply(r: Result<String, String>) -> (StatusCode, String) {
    match r {
        Ok(body) => (StatusCode::OK, body + "\n"),
        Err(body) => (StatusCode::SERVICE_UNAVAILABLE, body + "\n"),
    }
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    reply(s.status.healthy())
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    reply(s.status.ready())
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

#[derive(Deserialize)]
struct WatchQuery {
    epoch: u64,
}

fn answer(epoch: u64, state: WatchState) -> axum::response::Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&WatchAnswer { epoch, state }).unwrap_or_default(),
    )
        .into_response()
}

/// The lease watch: answers when this replica no longer leads at `epoch` (`released` if it gave
/// that lease up, `not_holder` otherwise) or after `WATCH_HOLD` (`held`). It tells nothing the
/// lease item and `/readyz` do not.
async fn lease_watch(
    State(s): State<AppState>,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> axum::response::Response {
    let Ok(Query(q)) = query else {
        return (
            StatusCode::BAD_REQUEST,
            "expected ?epoch=<whole number>\n".to_string(),
        )
            .into_response();
    };
    let Ok(_permit) = s.watchers.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many lease watches\n".to_string(),
        )
            .into_response();
    };
    let mut leader = s.status.leader_watch();
    let deadline = tokio::time::Instant::now() + WATCH_HOLD;
    loop {
        let now = *leader.borrow_and_update();
        if !(now.is_leader && now.epoch == q.epoch) {
            // 0 is "released none": no lease has epoch 0, so it is never released.
            let released =
                q.epoch != 0 && s.status.released_epoch.load(Ordering::SeqCst) == q.epoch;
            let state = if released {
                WatchState::Released
            } else {
                WatchState::NotHolder
            };
            return answer(q.epoch, state);
        }
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() {
                    return answer(q.epoch, WatchState::NotHolder);
                }
            }
            _ = tokio::time::sleep_until(deadline) => return answer(q.epoch, WatchState::Held),
        }
    }
}

pub fn router(status: Arc<Status>, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route(WATCH_PATH, get(lease_watch))
        .with_state(AppState {
            status,
            metrics,
            watchers: Arc::new(tokio::sync::Semaphore::new(MAX_WATCHERS)),
        })
}

/// Serve the endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: Arc<Status>,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(status, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}
