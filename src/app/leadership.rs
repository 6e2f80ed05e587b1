//! This replica's leadership as the reconciler sees it: who it is for the decision log's fence,
//! and a guard asked before *every* action (each SetDesiredCapacity, drain mark and
//! termination) whether the lease still has margin left — now, on this replica's own clock,
//! not at the start of the cycle. A leader paused past its lease (a GC pause, SIGSTOP, a hung
//! endpoint) finds its guard closed when it resumes and acts no more.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::ports::{Clock, Fence};

/// Whether an action may go ahead now, and for how long the lease is certainly still ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// No lease to lose (the simulator; the sole controller of a test).
    Unbounded,
    /// Act, and give up on the call if it has not returned within this long.
    For(Duration),
    /// Do not act.
    Denied,
}

#[derive(Clone)]
enum Inner {
    Always,
    Never,
    Lease {
        clock: Arc<dyn Clock>,
        /// Controller-clock time (ms) until which acting is allowed: the last renewal's send
        /// time plus the lease duration, less the margin. `i64::MIN` once the lease is lost.
        until_ms: Arc<AtomicI64>,
    },
}

/// Asked before every action. Cheap to clone; clones share the lease's state.
#[derive(Clone)]
pub struct ActGuard(Inner);

impl std::fmt::Debug for ActGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Always => f.write_str("ActGuard::Always"),
            Inner::Never => f.write_str("ActGuard::Never"),
            Inner::Lease { until_ms, .. } => {
                write!(
                    f,
                    "ActGuard::Lease(until {})",
                    until_ms.load(Ordering::SeqCst)
                )
            }
        }
    }
}

impl PartialEq for ActGuard {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Inner::Always, Inner::Always) | (Inner::Never, Inner::Never) => true,
            (Inner::Lease { until_ms: a, .. }, Inner::Lease { until_ms: b, .. }) => {
                Arc::ptr_eq(a, b)
            }
            _ => false,
        }
    }
}

impl Eq for ActGuard {}

impl ActGuard {
    pub fn always() -> Self {
        ActGuard(Inner::Always)
    }

    pub fn never() -> Self {
        ActGuard(Inner::Never)
    }

    /// A guard on a lease whose acting deadline `until_ms` the elector keeps up to date.
    pub fn lease(clock: Arc<dyn Clock>, until_ms: Arc<AtomicI64>) -> Self {
        ActGuard(Inner::Lease { clock, until_ms })
    }

    /// May an action go ahead now?
    pub fn permit(&self) -> Permit {
        match &self.0 {
            Inner::Always => Permit::Unbounded,
            Inner::Never => Permit::Denied,
            Inner::Lease { clock, until_ms } => {
                let left = until_ms
                    .load(Ordering::SeqCst)
                    .saturating_sub(clock.now_ms());
                if left > 0 {
                    Permit::For(Duration::from_millis(left as u64))
                } else {
                    Permit::Denied
                }
            }
        }
    }

    /// Stop acting at once (a fenced append just failed: someone else leads). A later
    /// successful renewal opens the guard again.
    pub fn revoke(&self) {
        if let Inner::Lease { until_ms, .. } = &self.0 {
            until_ms.store(i64::MIN, Ordering::SeqCst);
        }
    }
}

/// This replica's leadership, as the reconciler needs it for one cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub fence: Option<Fence>,
    pub epoch: u64,
    pub is_leader: bool,
    /// Asked before every action.
    pub guard: ActGuard,
}

impl Leadership {
    /// Sole controller (embedded region, simulator): always leader, no fence.
    pub fn sole() -> Self {
        Leadership {
            fence: None,
            epoch: 0,
            is_leader: true,
            guard: ActGuard::always(),
        }
    }

    pub fn follower() -> Self {
        Leadership {
            fence: None,
            epoch: 0,
            is_leader: false,
            guard: ActGuard::never(),
        }
    }
}
