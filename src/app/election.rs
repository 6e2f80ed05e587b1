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
}

impl ElectionConfig {
    pub fn new(region: &str, holder: &str) -> Self {
        ElectionConfig {
            key: lease_key(region),
            holder: holder.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            act_margin: Duration::from_secs(5),
            standby_poll: Duration::from_secs(1),
        }
    }

    /// The lease timing from the command line: the leader acts only with a renewal's worth
    /// of lease left (`act_margin = renew_every`).
    pub fn with_timing(mut self, lease_duration: Duration, renew_every: Duration) -> Self {
        self.lease_duration = lease_duration;
        self.renew_every = renew_every;
        self.act_margin = renew_every;
        self
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

    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    /// This replica's leadership at `now_ms` (local clock), without touching the store.
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
                if now_ms - self.last_renew_try_ms < self.cfg.renew_every.as_millis() as i64 {
                    return Transition::None;
                }
                self.last_renew_try_ms = now_ms;
                match self
                    .store
                    .renew(&self.cfg.key, &self.cfg.holder, lease.epoch)
                    .await
                {
                    Ok(l) => {
                        self.role = Role::Leader {
                            lease: l,
                            renewed_at_ms: now_ms,
                        };
                        self.held_from(now_ms);
                        Transition::None
                    }
                    Err(PortError::Conflict(why)) => {
                        self.lost();
                        Transition::Lost { reason: why }
                    }
                    Err(e) => {
                        // Could not reach the store: keep leading only while the lease we hold
                        // is certainly still ours.
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
                    Ok(c) => c,
                    Err(_) => return Transition::None,
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
        a.tick(0).await;
        b.tick(1_000).await; // sees version 1
        // a dies: no more renewals.
        assert_eq!(b.tick(15_999).await, Transition::None);
        assert_eq!(b.tick(16_000).await, Transition::Acquired { epoch: 2 });
        // a's stale view: it still believes until its own lease time runs out, but its renewal
        // fails.
        assert!(matches!(a.tick(16_000).await, Transition::Lost { .. }));
        assert_eq!(a.leadership(16_000).guard.permit(), Permit::Denied);
    }

    #[tokio::test]
    async fn the_guard_closes_a_margin_before_the_lease_runs_out_on_its_own_clock() {
        let store = MemoryRegion::new("us-east-1", 1);
        let clock = crate::app::clock::ManualClock::new(0);
        let mut a = elector_at(&store, "a", &clock);
        assert_eq!(a.tick(0).await, Transition::Acquired { epoch: 1 });
        // Taken once per cycle, asked before each action: it reads the clock then.
        let guard = a.leadership(0).guard;
        assert_eq!(guard.permit(), Permit::For(Duration::from_secs(10)));
        clock.set(9_999);
        assert_eq!(guard.permit(), Permit::For(Duration::from_millis(1)));
        clock.set(10_000);
        assert_eq!(guard.permit(), Permit::Denied, "lease 15 s, margin 5 s");
        // A renewal opens it again for the guards already handed out.
        a.tick(10_000).await;
        assert_eq!(guard.permit(), Permit::For(Duration::from_secs(10)));
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

    async fn store_holder(store: &MemoryRegion) -> String {
        store
            .read(&lease_key("us-east-1"))
            .await
            .unwrap()
            .map(|l| l.holder)
            .unwrap_or_default()
    }
}
