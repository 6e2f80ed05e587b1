//! Counting a pool's capacity from the instances, routing and cleanup tables (DESIGN §4).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::decide::Capacity;
use super::policy::Instances;

/// The seed's instance states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Launching,
    Available,
    Draining,
    Terminated,
    Quarantined,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Launching => "launching",
            InstanceState::Available => "available",
            InstanceState::Draining => "draining",
            InstanceState::Terminated => "terminated",
            InstanceState::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "launching" => InstanceState::Launching,
            "available" => InstanceState::Available,
            "draining" => InstanceState::Draining,
            "terminated" => InstanceState::Terminated,
            "quarantined" => InstanceState::Quarantined,
            _ => return None,
        })
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Routing-state `health_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Health {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "healthy" => Health::Healthy,
            "degraded" => Health::Degraded,
            "unhealthy" => Health::Unhealthy,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Cleanup-validation `validation_status` of an instance's latest validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    Pending,
    Passed,
    Failed,
}

impl Validation {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Validation::Pending,
            "passed" => Validation::Passed,
            "failed" => Validation::Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Pending => "pending",
            Validation::Passed => "passed",
            Validation::Failed => "failed",
        }
    }
}

/// One instance of a pool, joined with its routing health and latest cleanup validation.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    // Shared strings: an inventory is read every cycle, and cloning it must stay cheap.
    pub instance_id: Arc<str>,
    pub region: Arc<str>,
    pub model_pool: Arc<str>,
    pub state: InstanceState,
    /// Requests the instance has queued, from its heartbeat; None when the item's value is
    /// missing or not believable (never read as idle: such an instance drains only by timeout).
    pub queue_depth: Option<u32>,
    pub last_heartbeat_ms: i64,
    pub launch_time_ms: i64,
    pub health: Option<Health>,
    pub validation: Option<Validation>,
    /// When this controller marked the instance `draining` (`drain_started_at`). A draining
    /// instance without it was marked by someone else and is left alone.
    pub drain_started_ms: Option<i64>,
}

/// How one instance counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Serving,
    Launching,
    /// Held by the ASG but not serving.
    Held,
    /// Gone: not in the ASG any more.
    Gone,
}

/// How far in the future an instance's heartbeat or launch time may be (the clocks of the
/// instance and of the controller disagree a little). Beyond it the value is not believed: the
/// instance is not counted as serving or launching (a heartbeat a year ahead would keep a dead
/// instance serving for a year).
pub const CLOCK_SKEW_ALLOWANCE_MS: i64 = 300_000;

/// The largest `queue_depth` believed (the seed's range is 0–10); larger is garbage.
pub const MAX_QUEUE_DEPTH: u32 = 10_000;

/// Whether an instance's timestamps are believable at `now_ms`.
pub fn plausible(i: &InstanceRecord, now_ms: i64) -> bool {
    let limit = now_ms.saturating_add(CLOCK_SKEW_ALLOWANCE_MS);
    i.last_heartbeat_ms <= limit && i.launch_time_ms <= limit
}

/// Classify one instance by the rules of DESIGN §4. An instance whose timestamps are in the
/// future beyond the clock-skew allowance is held: not believed to serve or to be coming.
pub fn classify(i: &InstanceRecord, rules: &Instances, now_ms: i64) -> Counted {
    if i.state != InstanceState::Terminated && !plausible(i, now_ms) {
        return Counted::Held;
    }
    match i.state {
        InstanceState::Terminated => Counted::Gone,
        InstanceState::Draining | InstanceState::Quarantined => Counted::Held,
        InstanceState::Launching => {
            if now_ms.saturating_sub(i.launch_time_ms) < rules.launch_timeout.as_millis() as i64 {
                Counted::Launching
            } else {
                Counted::Held
            }
        }
        InstanceState::Available => {
            let fresh = now_ms.saturating_sub(i.last_heartbeat_ms)
                <= rules.heartbeat_timeout.as_millis() as i64;
            let clean = i.validation != Some(Validation::Failed);
            let healthy = i.health != Some(Health::Unhealthy);
            if fresh && clean && healthy {
                Counted::Serving
            } else {
                Counted::Held
            }
        }
    }
}

/// Whether `i` would serve if it were `available`: heartbeat fresh, cleanup not failed,
/// routing not unhealthy (a draining instance worth returning to service).
pub fn would_serve(i: &InstanceRecord, rules: &Instances, now_ms: i64) -> bool {
    let as_available = InstanceRecord {
        state: InstanceState::Available,
        ..i.clone()
    };
    classify(&as_available, rules, now_ms) == Counted::Serving
}

/// Count a pool's instances; `skipped` is the number of malformed items the adapter dropped.
pub fn count<'a>(
    instances: impl IntoIterator<Item = &'a InstanceRecord>,
    rules: &Instances,
    now_ms: i64,
    skipped: u32,
) -> Capacity {
    let mut c = Capacity {
        skipped,
        ..Capacity::default()
    };
    for i in instances {
        if i.state != InstanceState::Terminated && !plausible(i, now_ms) {
            c.implausible += 1;
        }
        match classify(i, rules, now_ms) {
            Counted::Serving => c.serving += 1,
            Counted::Launching => c.launching += 1,
            Counted::Held => c.held += 1,
            Counted::Gone => {}
        }
    }
    c
}

/// `c` seen against the group: instances the group holds beyond those the table shows
/// serving, launching or held (launched but not yet registered by their agent, or with items
/// malformed and skipped) count as launching — coming capacity. Counting them as nothing
/// would launch them again (one deficit, two launches) and let a scale-down bypass the step
/// limit; counting them as held would launch replacements for them.
pub fn within_group(mut c: Capacity, group_desired: u32) -> Capacity {
    let seen = c.serving.saturating_add(c.launching).saturating_add(c.held);
    c.unaccounted = group_desired.saturating_sub(seen);
    c.launching = c.launching.saturating_add(c.unaccounted);
    c
}

/// The ASG desired capacity for a target of serving instances: target + held non-serving,
/// clamped to the group's own bounds (AWS rejects values outside them).
pub fn asg_desired(target_serving: u32, held: u32, asg_min: u32, asg_max: u32) -> u32 {
    target_serving
        .saturating_add(held)
        .clamp(asg_min, asg_max.max(asg_min))
}

/// Scale-in victims: the instances to drain so that `n` fewer serve, at most `max_total` in
/// all.
///
/// Candidates are the serving instances and the available instances whose latest cleanup
/// validation failed, ranked by the lowest `queue_depth` (least work to wait for), then a
/// failed cleanup validation, then the oldest launch; the instance id breaks remaining ties
/// so the choice is deterministic. The ranking is walked until `n` serving instances are
/// taken; a failed-cleanup instance ranked before that comes along: it serves nothing, so
/// removing it costs no capacity, and a scale-in is the moment to stop paying for it.
/// `max_total` bounds the victims, those included (the group's minimum).
///
/// Launching instances are not candidates: their agent marks them `available` when the
/// model is loaded, which would silently undo a drain, and they carry no work to lose.
/// Unhealthy or stale instances are not candidates either: they may recover, and they are
/// not capacity.
pub fn pick_victims<'a>(
    instances: &'a [InstanceRecord],
    n: usize,
    max_total: usize,
    rules: &Instances,
    now_ms: i64,
) -> Vec<&'a InstanceRecord> {
    let mut candidates: Vec<(&InstanceRecord, bool)> = instances
        .iter()
        .filter_map(|i| match classify(i, rules, now_ms) {
            Counted::Serving => Some((i, true)),
            Counted::Held
                if i.state == InstanceState::Available
                    && i.validation == Some(Validation::Failed) =>
            {
                Some((i, false))
            }
            _ => None,
        })
        .collect();
    candidates.sort_by(|(a, _), (b, _)| {
        // An unknown queue ranks after every known one: it may hold work.
        let key = |i: &InstanceRecord| {
            (
                i.queue_depth.unwrap_or(u32::MAX),
                i.validation != Some(Validation::Failed),
                i.launch_time_ms,
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.instance_id.cmp(&b.instance_id))
    });
    let mut left = n;
    let mut victims = Vec::new();
    for (c, serving) in candidates {
        if left == 0 || victims.len() == max_total {
            break;
        }
        if serving {
            left -= 1;
        }
        victims.push(c);
    }
    victims
}

/// Why a drain this controller started is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// The instance's queue is empty: nothing in flight is lost.
    Empty,
    /// The drain timeout passed with work still queued.
    Timeout,
}

impl DrainEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainEnd::Empty => "empty",
            DrainEnd::Timeout => "timeout",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            DrainEnd::Empty => "queue empty",
            DrainEnd::Timeout => "drain timeout",
        }
    }
}

/// Whether `i` is draining because this controller drained it (an operator's `draining`
/// carries no `drain_started_at` and is left alone).
pub fn is_our_drain(i: &InstanceRecord) -> bool {
    i.state == InstanceState::Draining && i.drain_started_ms.is_some()
}

/// How long after a drain begins routers may still send an instance requests (they see the
/// `draining` mark at their next read of the instances table): an empty queue reported by a
/// heartbeat older than that may predate requests still arriving.
pub const DRAIN_GRACE_MS: i64 = 15_000;

/// Whether `i`'s drain is over: only drains this controller started (`drain_started_ms`),
/// and only once a heartbeat sent at least `DRAIN_GRACE_MS` after the drain began reports
/// an empty queue, or `timeout` has passed since the drain began.
pub fn drain_end(i: &InstanceRecord, timeout: Duration, now_ms: i64) -> Option<DrainEnd> {
    if i.state != InstanceState::Draining {
        return None;
    }
    let started = i.drain_started_ms?;
    // An empty queue counts only from a believable heartbeat; an unknown queue never does.
    if i.queue_depth == Some(0)
        && plausible(i, now_ms)
        && i.last_heartbeat_ms >= started.saturating_add(DRAIN_GRACE_MS)
    {
        Some(DrainEnd::Empty)
    } else if now_ms.saturating_sub(started) >= timeout.as_millis() as i64 {
        Some(DrainEnd::Timeout)
    } else {
        None
    }
}

/// Launch times learned from the instances table: launch → first available heartbeat, for
/// instances seen launching and then available. The p90 replaces the configured launch time
/// once enough launches were seen.
#[derive(Debug, Clone, Default)]
pub struct LaunchTimes {
    /// Instances last seen launching: id → launch time.
    launching: std::collections::HashMap<Arc<str>, i64>,
    /// Recent samples, oldest first.
    samples: std::collections::VecDeque<i64>,
}

impl LaunchTimes {
    /// Samples kept.
    pub const WINDOW: usize = 64;
    /// Samples needed before the p90 is trusted.
    pub const MIN_SAMPLES: usize = 10;

    /// Look at this cycle's instances.
    pub fn observe(&mut self, instances: &[InstanceRecord]) {
        let mut still = std::collections::HashMap::new();
        for i in instances {
            match i.state {
                InstanceState::Launching => {
                    still.insert(i.instance_id.clone(), i.launch_time_ms);
                }
                InstanceState::Available => {
                    if let Some(launched) = self.launching.get(&i.instance_id) {
                        let took = i.last_heartbeat_ms.saturating_sub(*launched);
                        // A heartbeat before the launch, or a day later, is not a launch time.
                        if (0..86_400_000).contains(&took) {
                            if self.samples.len() == Self::WINDOW {
                                self.samples.pop_front();
                            }
                            self.samples.push_back(took);
                        }
                    }
                }
                _ => {}
            }
        }
        self.launching = still;
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The 90th percentile, once `MIN_SAMPLES` launches were seen.
    pub fn p90(&self) -> Option<std::time::Duration> {
        if self.samples.len() < Self::MIN_SAMPLES {
            return None;
        }
        p90_ms(self.samples.iter().copied().collect())
    }
}

/// The 90th percentile (nearest rank) of durations in milliseconds; None when empty.
pub fn p90_ms(mut v: Vec<i64>) -> Option<Duration> {
    v.sort_unstable();
    let idx = ((v.len() as f64 * 0.9).ceil() as usize).checked_sub(1)?;
    Some(Duration::from_millis(v[idx.min(v.len() - 1)].max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NOW: i64 = 10_000_000;

    fn rules() -> Instances {
        Instances {
            heartbeat_timeout: Duration::from_secs(90),
            launch_time: Duration::from_secs(360),
            launch_timeout: Duration::from_secs(900),
            ..Instances::default()
        }
    }

    /// Fixture builder: `inst("i-1").state(..).heartbeat_age(..)`.
    fn inst(id: &str) -> InstanceRecord {
        InstanceRecord {
            instance_id: id.into(),
            region: "us-east-1".into(),
            model_pool: "model-a".into(),
            state: InstanceState::Available,
            queue_depth: Some(0),
            last_heartbeat_ms: NOW - 5_000,
            launch_time_ms: NOW - 3_600_000,
            health: Some(Health::Healthy),
            validation: Some(Validation::Passed),
            drain_started_ms: None,
        }
    }

    trait Build {
        fn state(self, s: InstanceState) -> Self;
        fn heartbeat_age(self, ms: i64) -> Self;
        fn launched_ago(self, ms: i64) -> Self;
        fn health(self, h: Option<Health>) -> Self;
        fn validation(self, v: Option<Validation>) -> Self;
    }

    impl Build for InstanceRecord {
        fn state(mut self, s: InstanceState) -> Self {
            self.state = s;
            self
        }
        fn heartbeat_age(mut self, ms: i64) -> Self {
            self.last_heartbeat_ms = NOW - ms;
            self
        }
        fn launched_ago(mut self, ms: i64) -> Self {
            self.launch_time_ms = NOW - ms;
            self
        }
        fn health(mut self, h: Option<Health>) -> Self {
            self.health = h;
            self
        }
        fn validation(mut self, v: Option<Validation>) -> Self {
            self.validation = v;
            self
        }
    }

    #[test]
    fn classification_table() {
        use Counted::*;
        let cases = [
            ("available, fresh, healthy, clean", inst("a"), Serving),
            (
                "available, no routing or cleanup record yet",
                inst("a").health(None).validation(None),
                Serving,
            ),
            (
                "available, degraded still serves",
                inst("a").health(Some(Health::Degraded)),
                Serving,
            ),
            (
                "available, pending validation serves",
                inst("a").validation(Some(Validation::Pending)),
                Serving,
            ),
            (
                "heartbeat exactly at the timeout",
                inst("a").heartbeat_age(90_000),
                Serving,
            ),
            (
                "stale heartbeat is held",
                inst("a").heartbeat_age(90_001),
                Held,
            ),
            (
                "unhealthy is held",
                inst("a").health(Some(Health::Unhealthy)),
                Held,
            ),
            (
                "failed cleanup is held",
                inst("a").validation(Some(Validation::Failed)),
                Held,
            ),
            (
                "launching within the timeout",
                inst("a")
                    .state(InstanceState::Launching)
                    .launched_ago(60_000),
                Launching,
            ),
            (
                "launching past the timeout is held",
                inst("a")
                    .state(InstanceState::Launching)
                    .launched_ago(900_000),
                Held,
            ),
            (
                "draining is held",
                inst("a").state(InstanceState::Draining),
                Held,
            ),
            (
                "quarantined is held",
                inst("a").state(InstanceState::Quarantined),
                Held,
            ),
            (
                "terminated is gone",
                inst("a").state(InstanceState::Terminated),
                Gone,
            ),
        ];
        for (name, i, want) in cases {
            assert_eq!(classify(&i, &rules(), NOW), want, "{name}");
        }
    }

    #[test]
    fn counts_add_up_and_carry_skipped_items() {
        let all = vec![
            inst("a"),
            inst("b"),
            inst("c")
                .state(InstanceState::Launching)
                .launched_ago(10_000),
            inst("d").state(InstanceState::Draining),
            inst("e").state(InstanceState::Terminated),
            inst("f").validation(Some(Validation::Failed)),
        ];
        let c = count(&all, &rules(), NOW, 2);
        assert_eq!((c.serving, c.launching, c.held, c.skipped), (2, 1, 2, 2));
        assert_eq!(c.counted(), 3);
    }

    #[test]
    fn asg_desired_is_target_plus_held_within_the_groups_bounds() {
        assert_eq!(asg_desired(10, 2, 0, 100), 12);
        assert_eq!(asg_desired(10, 2, 0, 11), 11);
        assert_eq!(asg_desired(0, 0, 3, 100), 3);
        assert_eq!(asg_desired(u32::MAX, 5, 0, u32::MAX), u32::MAX);
    }

    #[test]
    fn launch_times_are_learned_from_launching_then_available_instances() {
        let mut lt = LaunchTimes::default();
        for k in 0..12i64 {
            let id = format!("i-{k}");
            let launched = k * 1_000_000;
            let launching = inst(&id).state(InstanceState::Launching);
            let launching = InstanceRecord {
                launch_time_ms: launched,
                ..launching
            };
            lt.observe(std::slice::from_ref(&launching));
            assert_eq!(lt.len(), k as usize);
            // Ready after 300 s, plus k seconds.
            let ready = InstanceRecord {
                state: InstanceState::Available,
                last_heartbeat_ms: launched + 300_000 + k * 1000,
                ..launching
            };
            lt.observe(std::slice::from_ref(&ready));
            lt.observe(&[ready]); // seen available again: not a second sample
        }
        assert_eq!(lt.len(), 12);
        // Samples 300..311 s: the 90th percentile of 12 is the 11th, 310 s.
        assert_eq!(lt.p90(), Some(Duration::from_secs(310)));
        let mut few = LaunchTimes::default();
        few.observe(&[inst("x").state(InstanceState::Launching)]);
        few.observe(&[inst("x")]);
        assert_eq!(few.p90(), None, "too few samples");
        // An instance first seen available was never seen launching: no sample.
        let mut none = LaunchTimes::default();
        none.observe(&[inst("y")]);
        assert!(none.is_empty());
    }

    fn queue(mut i: InstanceRecord, q: u32) -> InstanceRecord {
        i.queue_depth = Some(q);
        i
    }

    fn ids(v: &[&InstanceRecord]) -> Vec<String> {
        v.iter().map(|i| i.instance_id.to_string()).collect()
    }

    #[test]
    fn victims_least_queued_then_failed_cleanup_then_oldest() {
        let all = vec![
            queue(inst("busy"), 7),
            queue(inst("old-idle").launched_ago(9_000_000), 0),
            queue(inst("young-idle").launched_ago(1_000_000), 0),
            queue(
                inst("failed-idle")
                    .launched_ago(500_000)
                    .validation(Some(Validation::Failed)),
                0,
            ),
            queue(inst("light"), 1),
            queue(inst("failed-light").validation(Some(Validation::Failed)), 1),
            // Never victims: launching, already draining, quarantined, unhealthy or stale
            // (they may recover and are not capacity), terminated.
            inst("booting")
                .state(InstanceState::Launching)
                .launched_ago(10_000),
            inst("draining").state(InstanceState::Draining),
            inst("quarantined").state(InstanceState::Quarantined),
            inst("unhealthy").health(Some(Health::Unhealthy)),
            inst("stale").heartbeat_age(600_000),
            inst("gone").state(InstanceState::Terminated),
        ];
        let order = [
            "failed-idle",
            "old-idle",
            "young-idle",
            "failed-light",
            "light",
            "busy",
        ];
        // n fewer serving: the prefix of the ranking up to the n-th serving instance (the
        // failed-cleanup ones ranked before it come along).
        for (n, upto) in [(0, 0), (1, 2), (2, 3), (3, 5), (4, 6), (100, 6)] {
            assert_eq!(
                ids(&pick_victims(&all, n, usize::MAX, &rules(), NOW)),
                order[..upto],
                "{n} fewer"
            );
        }
        // The group's minimum bounds the victims, the ones that come along included.
        assert_eq!(
            ids(&pick_victims(&all, 3, 2, &rules(), NOW)),
            ["failed-idle", "old-idle"]
        );
        assert!(pick_victims(&all, 3, 0, &rules(), NOW).is_empty());
    }

    #[test]
    fn drains_end_on_an_empty_queue_or_at_the_timeout_and_only_our_own() {
        let timeout = Duration::from_secs(300);
        let draining = |q: u32, started_ago: Option<i64>| {
            let mut i = queue(inst("d").state(InstanceState::Draining), q);
            i.drain_started_ms = started_ago.map(|a| NOW - a);
            i
        };
        // The queue is empty, but the heartbeat saying so is older than the routers' grace:
        // requests may still have arrived after it.
        assert_eq!(drain_end(&draining(0, Some(1_000)), timeout, NOW), None);
        assert_eq!(
            drain_end(&draining(0, Some(DRAIN_GRACE_MS + 5_000)), timeout, NOW),
            Some(DrainEnd::Empty)
        );
        assert_eq!(drain_end(&draining(3, Some(299_999)), timeout, NOW), None);
        assert_eq!(
            drain_end(&draining(3, Some(300_000)), timeout, NOW),
            Some(DrainEnd::Timeout)
        );
        // Marked draining by someone else: never ours to terminate.
        assert_eq!(drain_end(&draining(0, None), timeout, NOW), None);
        // Not draining at all.
        let mut avail = inst("a");
        avail.drain_started_ms = Some(NOW - 1_000_000);
        assert_eq!(drain_end(&avail, timeout, NOW), None);
    }

    #[test]
    fn an_unknown_queue_is_never_idle() {
        let mut unknown = inst("unknown");
        unknown.queue_depth = None;
        let all = vec![
            unknown.clone(),
            queue(inst("busy"), 9),
            queue(inst("idle"), 0),
        ];
        // Ranked after every known queue, however busy.
        assert_eq!(
            ids(&pick_victims(&all, 3, usize::MAX, &rules(), NOW)),
            ["idle", "busy", "unknown"]
        );
        // Draining with an unknown queue: over only at the timeout.
        let mut d = unknown.state(InstanceState::Draining);
        d.drain_started_ms = Some(NOW - 60_000);
        let timeout = Duration::from_secs(300);
        assert_eq!(drain_end(&d, timeout, NOW), None);
        assert_eq!(
            drain_end(&d, timeout, NOW + 240_000),
            Some(DrainEnd::Timeout)
        );
    }

    #[test]
    fn timestamps_far_in_the_future_are_not_believed() {
        // A heartbeat a year ahead would keep a dead instance serving for a year.
        let year = 365 * 86_400_000;
        let future = inst("f").heartbeat_age(-year);
        assert_eq!(classify(&future, &rules(), NOW), Counted::Held);
        let launching = inst("l")
            .state(InstanceState::Launching)
            .launched_ago(-year);
        assert_eq!(classify(&launching, &rules(), NOW), Counted::Held);
        // Within the clock-skew allowance: believed.
        let skewed = inst("s").heartbeat_age(-CLOCK_SKEW_ALLOWANCE_MS);
        assert_eq!(classify(&skewed, &rules(), NOW), Counted::Serving);
        let c = count(&[future, launching, skewed], &rules(), NOW, 0);
        assert_eq!((c.serving, c.held, c.implausible), (1, 2, 2));
        // An empty queue reported by an unbelievable heartbeat ends no drain.
        let mut d = queue(inst("d").state(InstanceState::Draining), 0).heartbeat_age(-year);
        d.drain_started_ms = Some(NOW - 60_000);
        assert_eq!(drain_end(&d, Duration::from_secs(300), NOW), None);
    }

    #[test]
    fn instances_the_group_holds_beyond_the_table_count_as_coming_capacity() {
        let c = Capacity {
            serving: 5,
            held: 1,
            ..Capacity::default()
        };
        let g = within_group(c, 10);
        assert_eq!(
            (g.serving, g.launching, g.held, g.unaccounted),
            (5, 4, 1, 4)
        );
        // The table shows more than the group: nothing to add.
        assert_eq!(within_group(c, 3), c);
    }

    #[test]
    fn states_round_trip() {
        for s in [
            InstanceState::Launching,
            InstanceState::Available,
            InstanceState::Draining,
            InstanceState::Terminated,
            InstanceState::Quarantined,
        ] {
            assert_eq!(InstanceState::parse(s.as_str()), Some(s));
        }
        assert_eq!(InstanceState::parse("running"), None);
        assert_eq!(Health::parse("unhealthy"), Some(Health::Unhealthy));
        assert_eq!(Validation::parse("failed"), Some(Validation::Failed));
    }
}
