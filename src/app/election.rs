//! Leader election on a `LeaseStore` (DESIGN §6).
//!
//! A follower takes over only after it has seen the *same lease version* unchanged for a full
//! lease duration by its own clock, as Kubernetes' leader election does, or once the lease is
//! released: no timestamps from another host decide anything, so clock skew between hosts
//! cannot create two leaders. A leader counts its lease from the moment it *sent* its last
//! successful renewal and stops acting `act_margin` before that runs out.
//!
//! A follower does not poll on a fixed period: it reads the lease again when the lease it saw
//! would expire unless renewed (its holder's last write, by the holder's clock, plus the lease
//! and `EXPIRY_READ_SLACK`), or when it may take over, whichever comes first, and at least every
//! `standby_poll`. While the leader lives that is one read per renewal, about
//! `lease - renew_every` after each renewal; after a kill -9 the follower has seen the last
//! version within that much of its write and takes over one lease later. The holder's clock
//! only times the reads: a wrong one costs reads or delay, never safety.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::ports::{Clock, Fence, Lease, LeaseStore, PortError, Stamp};

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
    /// The longest a follower goes between two lease reads (it usually reads sooner, when the
    /// lease it saw would expire). `with_timing` sets it to the lease duration.
    pub standby_poll: Duration,
    /// After a failed renewal, try again this soon (not a whole `renew_every` later): the
    /// lease outlives the renewal period by only a few seconds.
    pub retry_after: Duration,
    /// Where this replica serves the lease watch (`ip:port`), written into the lease it holds
    /// so that standbys hear of its release at once. None: no watch.
    pub advertise: Option<String>,
}

/// The default lease timing, chosen for cost and failover together (docs/cost.md): a renewal
/// every 20 s keeps the three regions' lease writes near 0.39 M a month (the write budget less
/// the decision records); a 24 s lease is the longest for which a kill -9 takeover stays within
/// 30 s (`kill_takeover_bound`: lease + lease - renewal + 0.5 s = 28.5 s). A standby reads
/// once per renewal; a SIGTERM takeover goes through the leader's watch.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(24);
pub const DEFAULT_RENEW_EVERY: Duration = Duration::from_secs(20);
/// The longest a standby goes between lease reads by default: the lease (it only ever binds
/// when the holder's write time is unknown).
pub const DEFAULT_STANDBY_POLL: Duration = DEFAULT_LEASE_DURATION;
/// The least a lease may outlive its renewal period: room for the retries of a failed renewal
/// and for the acting margin.
pub const MIN_LEASE_SLACK: Duration = Duration::from_secs(2);
/// A follower reads a lease this long after it would have expired unless renewed (by its
/// holder's clock): room for the renewal's write to land and for small clock differences.
pub const EXPIRY_READ_SLACK: Duration = Duration::from_millis(500);
/// Never read the lease again sooner than this after a read (whatever a lease item says).
pub const MIN_READ_GAP: Duration = Duration::from_millis(250);

/// The acting margin for a lease timing: half the slack between the lease and its renewal
/// period (so a renewal a little late does not close the guard), at most one renewal period.
pub fn act_margin(lease_duration: Duration, renew_every: Duration) -> Duration {
    (lease_duration.saturating_sub(renew_every) / 2).min(renew_every)
}

/// How long after a kill -9 of the leader a follower has taken over, at most (plus the read
/// and the write): it reads the lease about `lease - renew_every + EXPIRY_READ_SLACK` after
/// each renewal (or every `standby_poll`, if sooner), so it has seen the last version within
/// that of its write, and may take over one lease after seeing it.
pub fn kill_takeover_bound(
    lease_duration: Duration,
    renew_every: Duration,
    standby_poll: Duration,
) -> Duration {
    let lag = (lease_duration.saturating_sub(renew_every) + EXPIRY_READ_SLACK).min(standby_poll);
    lease_duration + lag
}

/// How often a follower reads the lease while the leader renews it: once per renewal, or
/// every `standby_poll` if that is shorter.
pub fn standby_read_period(renew_every: Duration, standby_poll: Duration) -> Duration {
    renew_every.min(standby_poll)
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
            advertise: None,
        }
    }

    /// The lease timing from the command line: the leader acts only with `act_margin` of its
    /// lease left; a follower reads at least once per lease.
    pub fn with_timing(mut self, lease_duration: Duration, renew_every: Duration) -> Self {
        self.lease_duration = lease_duration;
        self.renew_every = renew_every;
        self.act_margin = act_margin(lease_duration, renew_every);
        self.standby_poll = lease_duration;
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

/// The leader a follower can watch: the holder and epoch of the lease it read, and the address
/// the holder wrote into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchTarget {
    pub addr: SocketAddr,
    pub holder: String,
    pub epoch: u64,
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
    /// A follower's next lease read (local clock, ms).
    next_read_ms: i64,
    /// The lease as a follower last read it (None: absent, or not read yet).
    seen: Option<Lease>,
}

/// Milliseconds as i64, saturating (a lease item's duration comes from outside).
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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
            next_read_ms: i64::MIN,
            seen: None,
        }
    }

    /// The lease is ours from `sent_ms` (when the successful write was sent): acting is
    /// allowed until one lease duration later, less the margin.
    fn held_from(&self, sent_ms: i64) {
        let until = sent_ms
            .saturating_add(ms_of(self.cfg.lease_duration))
            .saturating_sub(ms_of(self.cfg.act_margin));
        self.act_until_ms.store(until, Ordering::SeqCst);
    }

    fn lost(&mut self) {
        self.role = Role::Follower { observed: None };
        self.act_until_ms.store(i64::MIN, Ordering::SeqCst);
        self.next_read_ms = i64::MIN;
        self.seen = None;
    }

    /// Why the lease store could not be reached at the last read or renewal (None: it could).
    pub fn store_error(&self) -> Option<&str> {
        self.store_error.as_deref()
    }

    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    /// The lease as this follower last read it (None while leading, or when there was none).
    pub fn seen(&self) -> Option<&Lease> {
        self.seen.as_ref()
    }

    /// The leader to watch, from the last lease read: held by another replica that wrote a
    /// watch address (an `ip:port`; anything else is not watched).
    pub fn watch_target(&self) -> Option<WatchTarget> {
        if !matches!(self.role, Role::Follower { .. }) {
            return None;
        }
        let l = self.seen.as_ref()?;
        if l.holder.is_empty() || l.holder == self.cfg.holder {
            return None;
        }
        let addr = l.addr.as_deref()?.parse::<SocketAddr>().ok()?;
        Some(WatchTarget {
            addr,
            holder: l.holder.clone(),
            epoch: l.epoch,
        })
    }

    /// A leader's time between renewal tries: the renewal period, or the retry after a
    /// failed one.
    fn renew_wait(&self) -> Duration {
        if self.renew_failed {
            self.cfg.retry_after.min(self.cfg.renew_every)
        } else {
            self.cfg.renew_every
        }
    }

    /// When the next `tick` has something to do, as a delay from `now_ms`: a leader's next
    /// renewal (or retry), a follower's next lease read.
    pub fn next_tick_in(&self, now_ms: i64) -> Duration {
        let due = match &self.role {
            Role::Leader { .. } => self
                .last_renew_try_ms
                .saturating_add(ms_of(self.renew_wait())),
            Role::Follower { .. } => self.next_read_ms,
        };
        Duration::from_millis(due.saturating_sub(now_ms).max(0) as u64)
    }

    /// A follower's next read after reading `l` at `now_ms`, first seen at `seen_ms` at its
    /// version: when it would expire unless renewed (by its holder's clock, plus the slack) or
    /// when this follower may take it over, whichever is first; never later than
    /// `standby_poll` from now, never sooner than `MIN_READ_GAP`.
    fn schedule_read(&mut self, l: &Lease, seen_ms: i64, now_ms: i64) {
        let eligible = seen_ms.saturating_add(ms(l.duration_ms));
        let mut next = eligible;
        if let Some(at) = l.renewed_at_ms {
            let expiry = at
                .saturating_add(ms(l.duration_ms))
                .saturating_add(ms_of(EXPIRY_READ_SLACK));
            // Already past (the holder's clock is behind, or this is a second look): the
            // takeover time decides.
            if expiry > now_ms {
                next = next.min(expiry);
            }
        }
        self.next_read_ms = next
            .min(now_ms.saturating_add(ms_of(self.cfg.standby_poll)))
            .max(now_ms.saturating_add(ms_of(MIN_READ_GAP)));
    }

    /// Read again `after` from `now_ms` (an error, a lost race): soon, within `standby_poll`.
    fn read_after(&mut self, now_ms: i64, after: Duration) {
        let after = after.min(self.cfg.standby_poll).max(MIN_READ_GAP);
        self.next_read_ms = now_ms.saturating_add(ms_of(after));
    }

    pub fn leadership(&self, now_ms: i64) -> Leadership {
        match &self.role {
            Role::Follower { .. } => Leadership::follower(),
            Role::Leader {
                lease,
                renewed_at_ms,
            } => {
                let expires = renewed_at_ms.saturating_add(ms_of(self.cfg.lease_duration));
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

    /// Renew, observe or take over, as due. A leader renews when its renewal is due (call at
    /// least every `renew_every`); a follower reads the lease on every call (call it when
    /// `next_tick_in` says, or at once when the leader's watch says the lease moved).
    pub async fn tick(&mut self, now_ms: i64) -> Transition {
        match self.role.clone() {
            Role::Leader {
                lease,
                renewed_at_ms,
            } => {
                if now_ms.saturating_sub(self.last_renew_try_ms) < ms_of(self.renew_wait()) {
                    return Transition::None;
                }
                self.last_renew_try_ms = now_ms;
                self.renew_failed = false;
                match self
                    .store
                    .renew(&self.cfg.key, &self.cfg.holder, lease.epoch, now_ms)
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
                        if now_ms >= renewed_at_ms.saturating_add(ms_of(self.cfg.lease_duration)) {
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
                        self.read_after(now_ms, self.cfg.retry_after.max(Duration::from_secs(1)));
                        return Transition::None;
                    }
                };
                self.seen = current.clone();
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
                                self.schedule_read(l, now_ms, now_ms);
                                return Transition::None;
                            }
                        };
                        if now_ms.saturating_sub(seen) < ms(l.duration_ms) {
                            self.schedule_read(l, seen, now_ms);
                            return Transition::None;
                        }
                        Some(l.version)
                    }
                };
                let stamp = Stamp {
                    at_ms: now_ms,
                    addr: self.cfg.advertise.clone(),
                };
                match self
                    .store
                    .acquire(
                        &self.cfg.key,
                        &self.cfg.holder,
                        expected,
                        self.cfg.lease_duration,
                        &stamp,
                    )
                    .await
                {
                    Ok(l) => {
                        let epoch = l.epoch;
                        self.role = Role::Leader {
                            lease: l,
                            renewed_at_ms: now_ms,
                        };
                        self.seen = None;
                        self.held_from(now_ms);
                        self.last_renew_try_ms = now_ms;
                        Transition::Acquired { epoch }
                    }
                    Err(_) => {
                        // Someone else was quicker (or the store failed): look again soon.
                        self.role = Role::Follower { observed: None };
                        self.read_after(now_ms, self.cfg.retry_after);
                        Transition::None
                    }
                }
            }
        }
    }

    /// Give the lease up (on shutdown) so a standby can take over at once.
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

    /// Drive `a` (leading) and `b` (following) on their own schedules, in 100 ms steps, from
    /// `from` to `to` (ms); `a` stops at `kill` (no renewal after it). Returns when `b` took
    /// over, if it did.
    async fn run_until(
        a: &mut Elector,
        b: &mut Elector,
        from: i64,
        to: i64,
        kill: Option<i64>,
        b_from: i64,
    ) -> Option<i64> {
        let mut t = from;
        while t <= to {
            if kill.is_none_or(|k| t < k) && a.next_tick_in(t).is_zero() {
                a.tick(t).await;
            }
            if t >= b_from
                && b.next_tick_in(t).is_zero()
                && let Transition::Acquired { .. } = b.tick(t).await
            {
                return Some(t);
            }
            t += 100;
        }
        None
    }

    /// When `a` last renewed (or acquired), by its own clock.
    fn last_write(a: &Elector) -> i64 {
        match &a.role {
            Role::Leader { renewed_at_ms, .. } => *renewed_at_ms,
            Role::Follower { .. } => panic!("a leads"),
        }
    }

    #[tokio::test]
    async fn a_standby_reads_once_per_renewal_while_the_leader_renews() {
        let store = MemoryRegion::new("us-east-1", 1);
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        assert_eq!(a.tick(0).await, Transition::Acquired { epoch: 1 });
        let before = store.calls().lease_reads;
        let hour = 3_600_000;
        assert_eq!(run_until(&mut a, &mut b, 0, hour, None, 3_300).await, None);
        let reads = store.calls().lease_reads - before;
        let renewals = hour / DEFAULT_RENEW_EVERY.as_millis() as i64;
        assert!(
            (renewals - 1..=renewals + 1).contains(&(reads as i64)),
            "{reads} reads in an hour of {renewals} renewals"
        );
        assert!(!b.leadership(hour).is_leader);
        assert_eq!(store_holder(&store).await, "a");
    }

    #[tokio::test]
    async fn a_killed_leader_is_taken_over_within_the_bound_and_never_early() {
        let bound = kill_takeover_bound(
            DEFAULT_LEASE_DURATION,
            DEFAULT_RENEW_EVERY,
            DEFAULT_STANDBY_POLL,
        );
        assert_eq!(bound, Duration::from_millis(28_500));
        let lease = DEFAULT_LEASE_DURATION.as_millis() as i64;
        let mut worst = 0;
        // Kills at every phase of the renewal period, standbys started at several phases.
        for b_from in [0, 7_300, 13_900] {
            for kill in (120_000..141_000).step_by(1_500) {
                let store = MemoryRegion::new("us-east-1", 1);
                let mut a = elector(&store, "a");
                let mut b = elector(&store, "b");
                a.tick(0).await;
                assert_eq!(
                    run_until(&mut a, &mut b, 0, kill - 100, None, b_from).await,
                    None
                );
                let renewed = last_write(&a);
                let took = run_until(&mut a, &mut b, kill, kill + 120_000, Some(kill), 0)
                    .await
                    .expect("b takes over");
                // Never while a's lease could still run by a's own clock.
                assert!(
                    took >= renewed + lease,
                    "b took over at {took}, a renewed at {renewed}"
                );
                // Within the bound (plus a step of this simulation).
                assert!(
                    took - kill <= bound.as_millis() as i64 + 100,
                    "kill at {kill}, b from {b_from}: took over {} ms later",
                    took - kill
                );
                worst = worst.max(took - kill);
            }
        }
        assert!(worst > 20_000, "the bound is nearly reached: {worst} ms");
    }

    /// A lease store whose reads show the holder's renewal time shifted by `by_ms` (a holder
    /// with a wrong clock), or replaced by a value from outside.
    struct Skewed {
        inner: MemoryRegion,
        shift: fn(i64) -> i64,
    }

    #[async_trait::async_trait]
    impl LeaseStore for Skewed {
        async fn read(&self, key: &str) -> crate::ports::PortResult<Option<Lease>> {
            let mut l = self.inner.read(key).await?;
            if let Some(l) = l.as_mut() {
                l.renewed_at_ms = l.renewed_at_ms.map(self.shift);
            }
            Ok(l)
        }
        async fn acquire(
            &self,
            key: &str,
            holder: &str,
            expected_version: Option<u64>,
            duration: Duration,
            stamp: &Stamp,
        ) -> crate::ports::PortResult<Lease> {
            self.inner
                .acquire(key, holder, expected_version, duration, stamp)
                .await
        }
        async fn renew(
            &self,
            key: &str,
            holder: &str,
            epoch: u64,
            at_ms: i64,
        ) -> crate::ports::PortResult<Lease> {
            self.inner.renew(key, holder, epoch, at_ms).await
        }
        async fn release(
            &self,
            key: &str,
            holder: &str,
            epoch: u64,
        ) -> crate::ports::PortResult<()> {
            self.inner.release(key, holder, epoch).await
        }
    }

    #[tokio::test]
    async fn a_wrong_renewal_time_costs_reads_never_a_live_lease() {
        let shifts: [fn(i64) -> i64; 7] = [
            |t| t - 60_000,
            |t| t - 5_000,
            |t| t - 3_900,
            |t| t + 3_000,
            |t| t + 600_000,
            |_| i64::MIN,
            |_| i64::MAX,
        ];
        for (i, shift) in shifts.into_iter().enumerate() {
            let store = MemoryRegion::new("us-east-1", 1);
            let mut a = elector(&store, "a");
            let mut b = Elector::new(
                Arc::new(Skewed {
                    inner: store.clone(),
                    shift,
                }),
                ElectionConfig::new("us-east-1", "b"),
                Arc::new(crate::app::clock::ManualClock::new(0)),
            );
            a.tick(0).await;
            let before = store.calls().lease_reads;
            let ten_minutes = 600_000;
            assert_eq!(
                run_until(&mut a, &mut b, 0, ten_minutes, None, 0).await,
                None,
                "shift {i}: b took a live lease"
            );
            // At most two reads per lease: the hint's, and the takeover time's.
            let reads = store.calls().lease_reads - before;
            assert!(reads <= 2 * 25 + 1, "shift {i}: {reads} reads");
        }
    }

    #[tokio::test]
    async fn a_follower_watches_the_holder_that_advertises_an_address() {
        let store = MemoryRegion::new("us-east-1", 1);
        let mut cfg = ElectionConfig::new("us-east-1", "a");
        cfg.advertise = Some("10.1.2.3:9464".into());
        let clock = crate::app::clock::ManualClock::new(0);
        let mut a = Elector::new(Arc::new(store.clone()), cfg, Arc::new(clock.clone()));
        let mut b = elector(&store, "b");
        assert_eq!(b.watch_target(), None, "nothing read yet");
        a.tick(0).await;
        assert_eq!(a.watch_target(), None, "a leader watches nobody");
        b.tick(100).await;
        assert_eq!(
            b.watch_target(),
            Some(WatchTarget {
                addr: "10.1.2.3:9464".parse().unwrap(),
                holder: "a".into(),
                epoch: 1
            })
        );
        // Released: nobody to watch, and b takes it at once.
        a.release().await.unwrap();
        assert_eq!(b.tick(200).await, Transition::Acquired { epoch: 2 });
        assert_eq!(b.watch_target(), None);
        // An address that is not ip:port is not watched.
        let key = lease_key("us-east-1");
        store.release(&key, "b", 2).await.unwrap();
        let released = store.read(&key).await.unwrap().unwrap();
        let d = store
            .acquire(
                &key,
                "d",
                Some(released.version),
                DEFAULT_LEASE_DURATION,
                &Stamp {
                    at_ms: 300,
                    addr: Some("leader.example:9464".into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(d.holder, "d");
        let mut c = elector(&store, "c");
        c.tick(400).await;
        assert_eq!(c.seen().map(|l| l.holder.as_str()), Some("d"));
        assert_eq!(c.watch_target(), None);
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
