//! Leader election on a `LeaseStore` (DESIGN §6).
//!
//! A follower takes over only after it has seen the *same lease version* unchanged for a full
//! lease duration by its own clock, as Kubernetes' leader election does: no timestamps from
//! another host are compared, so clock skew between hosts cannot create two leaders. A leader
//! counts its lease from the moment it *sent* its last successful renewal and stops acting
//! `act_margin` before that runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::ports::{Clock, Fence, Lease, LeaseStore, PortError};

use super::leadership::{ActGuard, Leadership};

#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// `autoscaler#<region>`.
    pub key: String,
    /// This replica's identity (controller_id).
    pub holder: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
    /// Do not act on an ASG with less than this left on the lease.
    pub act_margin: Duration,
    /// How often a follower reads the lease: a released lease is taken over within this.
    pub standby_poll: Duration,
    /// After a failed renewal, try again this soon (not a whole `renew_every` later): the
    /// lease outlives the renewal period by only a few seconds.
    pub retry_after: Duration,
}

/// The default lease timing, chosen for cost and failover together (docs/cost.md): a renewal
/// every 20 s keeps the three regions' lease writes near 0.39 M a month; a 24 s lease plus a
/// 4.5 s standby poll bounds a kill -9 takeover by 28.5 s and a SIGTERM takeover by 4.5 s
/// (plus the release and acquire calls).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(24);
pub const DEFAULT_RENEW_EVERY: Duration = Duration::from_secs(20);
pub const DEFAULT_STANDBY_POLL: Duration = Duration::from_millis(4_500);
/// The least a lease may outlive its renewal period: room for the retries of a failed renewal
/// and for the acting margin.
pub const MIN_LEASE_SLACK: Duration = Duration::from_secs(2);

/// The acting margin for a lease timing: half the slack between the lease and its renewal
/// period (so a renewal a little late does not close the guard), at most one renewal period.
pub fn act_margin(lease_duration: Duration, renew_every: Duration) -> Duration {
    (lease_duration.saturating_sub(renew_every) / 2).min(renew_every)
}

impl ElectionConfig {
    pub fn new(region: &str, holder: &str) -> Self {
        ElectionConfig {
            key: lease_key(region),
            holder: holder.to_string(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_every: DEFAULT_RENEW_EVERY,
            act_margin: act_margin(DEFAULT_LEASE_DURATION, DEFAULT_RENEW_EVERY),
            standby_poll: DEFAULT_STANDBY_POLL,
            retry_after: Duration::from_secs(1),
        }
    }

    /// The lease timing from the command line: the leader acts only with `act_margin` of its
    /// lease left.
    pub fn with_timing(mut self, lease_duration: Duration, renew_every: Duration) -> Self {
        self.lease_duration = lease_duration;
        self.renew_every = renew_every;
        self.act_margin = act_margin(lease_duration, renew_every);
        self
    }

    /// Whether a lease outlives its renewal period by at least `MIN_LEASE_SLACK`.
    pub fn timing_is_valid(lease_duration: Duration, renew_every: Duration) -> bool {
        !renew_every.is_zero() && lease_duration >= renew_every + MIN_LEASE_SLACK
    }
}

pub fn lease_key(region: &str) -> String {
    format!("autoscaler#{region}")
}

#[derive(Debug, Clone)]
enum Role {
    Follower {
        /// (version seen, local time it was first seen at that version)
        observed: Option<(u64, i64)>,
    },
    Leader {
        lease: Lease,
        renewed_at_ms: i64,
    },
}

/// This replica's leadership as the rest of the process watches it
/// (`tokio::sync::watch::Receiver<LeaderState>`); the epoch is 0 while following.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaderState {
    pub is_leader: bool,
    pub epoch: u64,
}

/// What changed in a tick, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    None,
    Acquired { epoch: u64 },
    Lost { reason: String },
}

pub struct Elector {
    store: Arc<dyn LeaseStore>,
    cfg: ElectionConfig,
    role: Role,
    last_renew_try_ms: i64,
    /// The last renewal attempt failed (the store could not be reached): retry sooner.
    renew_failed: bool,
    /// The last lease read or renewal that could not reach the store (None once one did).
    store_error: Option<String>,
    clock: Arc<dyn Clock>,
    /// Until when (controller clock, ms) this replica may act: shared with every `ActGuard`
    /// it hands out, so a guard asked mid-cycle sees the lease as it is now.
    act_until_ms: Arc<AtomicI64>,
}

impl Elector {
    pub fn new(store: Arc<dyn LeaseStore>, cfg: ElectionConfig, clock: Arc<dyn Clock>) -> Self {
        Elector {
            store,
            cfg,
            role: Role::Follower { observed: None },
            last_renew_try_ms: i64::MIN,
            renew_failed: false,
            store_error: None,
            clock,
            act_until_ms: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// The lease is ours from `sent_ms` (when the successful write was sent): acting is
    /// allowed until one lease duration later, less the margin.
    fn held_from(&self, sent_ms: i64) {
        let until = sent_ms
            .saturating_add(self.cfg.lease_duration.as_millis() as i64)
            .saturating_sub(self.cfg.act_margin.as_millis() as i64);
        self.act_until_ms.store(until, Ordering::SeqCst);
    }

    fn lost(&mut self) {
        self.role = Role::Follower { observed: None };
        self.act_until_ms.store(i64::MIN, Ordering::SeqCst);
    }

    /// Why the lease store could not be reached at the last read or renewal (None: it could).
    pub fn store_error(&self) -> Option<&str> {
        self.store_error.as_deref()
    }

    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    /// This replica's leadership at `now_ms` (local clock), without touching the store.
    /// When the next `tick` has something to do, as a delay from `now_ms`: a leader's next
    /// renewal (or retry), a follower's next lease read.
    pub fn next_tick_in(&self, now_ms: i64) -> Duration {
        match &self.role {
            Role::Leader { .. } => {
                let wait = if self.renew_failed {
                    self.cfg.retry_after.min(self.cfg.renew_every)
                } else {
                    self.cfg.renew_every
                };
                let due = self
                    .last_renew_try_ms
                    .saturating_add(wait.as_millis() as i64);
                Duration::from_millis(due.saturating_sub(now_ms).max(0) as u64)
            }
            Role::Follower { .. } => self.cfg.standby_poll,
        }
    }

    pub fn leadership(&self, now_ms: i64) -> Leadership {
        match &self.role {
            Role::Follower { .. } => Leadership::follower(),
            Role::Leader {
                lease,
                renewed_at_ms,
            } => {
                let expires = renewed_at_ms + self.cfg.lease_duration.as_millis() as i64;
                let valid = now_ms < expires;
                Leadership {
                    fence: Some(Fence {
                        lease_key: self.cfg.key.clone(),
                        holder: self.cfg.holder.clone(),
                        epoch: lease.epoch,
                    }),
                    epoch: lease.epoch,
                    is_leader: valid,
                    guard: ActGuard::lease(self.clock.clone(), self.act_until_ms.clone()),
                }
            }
        }
    }

    /// Renew, observe or take over, as due. Call at least every `renew_every`.
    pub async fn tick(&mut self, now_ms: i64) -> Transition {
        match self.role.clone() {
            Role::Leader {
                lease,
                renewed_at_ms,
            } => {
                let wait = if self.renew_failed {
                    self.cfg.retry_after.min(self.cfg.renew_every)
                } else {
                    self.cfg.renew_every
                };
                if now_ms.saturating_sub(self.last_renew_try_ms) < wait.as_millis() as i64 {
                    return Transition::None;
                }
                self.last_renew_try_ms = now_ms;
                self.renew_failed = false;
                match self
                    .store
                    .renew(&self.cfg.key, &self.cfg.holder, lease.epoch)
                    .await
                {
                    Ok(l) => {
                        self.store_error = None;
                        self.role = Role::Leader {
                            lease: l,
                            renewed_at_ms: now_ms,
                        };
                        self.held_from(now_ms);
                        Transition::None
                    }
                    Err(PortError::Conflict(why)) => {
                        self.store_error = None;
                        self.lost();
                        Transition::Lost { reason: why }
                    }
                    Err(e) => {
                        // Could not reach the store: keep leading only while the lease we hold
                        // is certainly still ours, and try again soon.
                        self.renew_failed = true;
                        self.store_error = Some(e.to_string());
                        if now_ms >= renewed_at_ms + self.cfg.lease_duration.as_millis() as i64 {
                            self.lost();
                            Transition::Lost {
                                reason: format!("could not renew before expiry: {e}"),
                            }
                        } else {
                            Transition::None
                        }
                    }
                }
            }
            Role::Follower { observed } => {
                let current = match self.store.read(&self.cfg.key).await {
                    Ok(c) => {
                        self.store_error = None;
                        c
                    }
                    Err(e) => {
                        self.store_error = Some(e.to_string());
                        return Transition::None;
                    }
                };
                let expected = match &current {
                    None => None,
                    Some(l) if l.holder.is_empty() => Some(l.version),
                    Some(l) => {
                        let seen = match observed {
                            Some((v, at)) if v == l.version => at,
                            _ => {
                                self.role = Role::Follower {
                                    observed: Some((l.version, now_ms)),
                                };
                                return Transition::None;
                            }
                        };
                        if now_ms - seen < l.duration_ms as i64 {
                            return Transition::None;
                        }
                        Some(l.version)
                    }
                };
                match self
                    .store
                    .acquire(
                        &self.cfg.key,
                        &self.cfg.holder,
                        expected,
                        self.cfg.lease_duration,
                    )
                    .await
                {
                    Ok(l) => {
                        let epoch = l.epoch;
                        self.role = Role::Leader {
                            lease: l,
                            renewed_at_ms: now_ms,
                        };
                        self.held_from(now_ms);
                        self.last_renew_try_ms = now_ms;
                        Transition::Acquired { epoch }
                    }
                    Err(_) => {
                        self.role = Role::Follower { observed: None };
                        Transition::None
                    }
                }
            }
        }
    }

    /// Give up the lease (on shutdown) so a standby can take over at once.
    pub async fn release(&mut self) -> Result<(), PortError> {
        if let Role::Leader { lease, .. } = &self.role {
            let epoch = lease.epoch;
            self.lost();
            self.store
                .release(&self.cfg.key, &self.cfg.holder, epoch)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryRegion;
    use crate::app::leadership::Permit;

    fn elector(store: &MemoryRegion, holder: &str) -> Elector {
        elector_at(store, holder, &crate::app::clock::ManualClock::new(0))
    }

    fn elector_at(
        store: &MemoryRegion,
        holder: &str,
        clock: &crate::app::clock::ManualClock,
    ) -> Elector {
        Elector::new(
            Arc::new(store.clone()),
            ElectionConfig::new("us-east-1", holder),
            Arc::new(clock.clone()),
        )
    }

    #[tokio::test]
    async fn first_comer_leads_and_a_follower_waits_while_it_renews() {
        let store = MemoryRegion::new("us-east-1", 1);
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        assert_eq!(a.tick(0).await, Transition::Acquired { epoch: 1 });
        for t in (0..120_000).step_by(5_000) {
            a.tick(t).await;
            assert_eq!(b.tick(t).await, Transition::None, "b took over at {t}");
            assert!(a.leadership(t).is_leader);
            assert!(!b.leadership(t).is_leader);
        }
    }

    #[tokio::test]
    async fn a_follower_takes_over_a_dead_leader_after_one_lease_duration() {
        let store = MemoryRegion::new("us-east-1", 1);
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        let lease = DEFAULT_LEASE_DURATION.as_millis() as i64;
        a.tick(0).await;
        b.tick(1_000).await; // sees version 1
        // a dies: no more renewals.
        assert_eq!(b.tick(1_000 + lease - 1).await, Transition::None);
        assert_eq!(
            b.tick(1_000 + lease).await,
            Transition::Acquired { epoch: 2 }
        );
        // a's stale view: it still believes until its own lease time runs out, but its renewal
        // fails.
        assert!(matches!(
            a.tick(1_000 + lease).await,
            Transition::Lost { .. }
        ));
        assert_eq!(a.leadership(1_000 + lease).guard.permit(), Permit::Denied);
    }

    #[tokio::test]
    async fn the_guard_closes_a_margin_before_the_lease_runs_out_on_its_own_clock() {
        let store = MemoryRegion::new("us-east-1", 1);
        let clock = crate::app::clock::ManualClock::new(0);
        let mut a = elector_at(&store, "a", &clock);
        assert_eq!(a.tick(0).await, Transition::Acquired { epoch: 1 });
        // Taken once per cycle, asked before each action: it reads the clock then.
        let guard = a.leadership(0).guard;
        let open = DEFAULT_LEASE_DURATION - act_margin(DEFAULT_LEASE_DURATION, DEFAULT_RENEW_EVERY);
        assert_eq!(open, Duration::from_secs(22), "lease 24 s, margin 2 s");
        let open_ms = open.as_millis() as i64;
        assert_eq!(guard.permit(), Permit::For(open));
        clock.set(open_ms - 1);
        assert_eq!(guard.permit(), Permit::For(Duration::from_millis(1)));
        clock.set(open_ms);
        assert_eq!(guard.permit(), Permit::Denied);
        // A renewal opens it again for the guards already handed out.
        a.tick(open_ms).await;
        assert_eq!(guard.permit(), Permit::For(open));
        // Revoked (a fenced append failed): closed at once.
        guard.revoke();
        assert_eq!(guard.permit(), Permit::Denied);
    }

    #[tokio::test]
    async fn a_follower_with_a_fast_clock_does_not_steal_a_renewed_lease() {
        let store = MemoryRegion::new("us-east-1", 1);
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        a.tick(0).await;
        // b's clock runs 10 s ahead: it only ever compares its own readings.
        for t in (0..300_000).step_by(5_000) {
            a.tick(t).await;
            assert_eq!(b.tick(t + 10_000).await, Transition::None);
        }
        assert_eq!(store_holder(&store).await, "a");
    }

    #[tokio::test]
    async fn release_lets_a_standby_take_over_on_its_next_tick() {
        let store = MemoryRegion::new("us-east-1", 1);
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        a.tick(0).await;
        b.tick(0).await;
        a.release().await.unwrap();
        assert_eq!(b.tick(1_000).await, Transition::Acquired { epoch: 2 });
    }

    #[test]
    fn the_default_timing_is_valid_and_margins_stay_inside_the_slack() {
        assert!(ElectionConfig::timing_is_valid(
            DEFAULT_LEASE_DURATION,
            DEFAULT_RENEW_EVERY
        ));
        assert!(!ElectionConfig::timing_is_valid(
            Duration::from_secs(21),
            Duration::from_secs(20)
        ));
        assert!(!ElectionConfig::timing_is_valid(
            Duration::from_secs(5),
            Duration::ZERO
        ));
        // The old default (15 s, renew 5 s): a margin of one renewal period.
        assert_eq!(
            act_margin(Duration::from_secs(15), Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    async fn store_holder(store: &MemoryRegion) -> String {
        store
            .read(&lease_key("us-east-1"))
            .await
            .unwrap()
            .map(|l| l.holder)
            .unwrap_or_default()
    }
}
