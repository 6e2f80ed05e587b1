//! Counting a pool's capacity from the instances, routing and cleanup tables (DESIGN §4).

use std::fmt;

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
    pub instance_id: String,
    pub region: String,
    pub model_pool: String,
    pub state: InstanceState,
    pub queue_depth: u32,
    pub last_heartbeat_ms: i64,
    pub launch_time_ms: i64,
    pub health: Option<Health>,
    pub validation: Option<Validation>,
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

/// Classify one instance by the rules of DESIGN §4.
pub fn classify(i: &InstanceRecord, rules: &Instances, now_ms: i64) -> Counted {
    match i.state {
        InstanceState::Terminated => Counted::Gone,
        InstanceState::Draining | InstanceState::Quarantined => Counted::Held,
        InstanceState::Launching => {
            if now_ms - i.launch_time_ms < rules.launch_timeout.as_millis() as i64 {
                Counted::Launching
            } else {
                Counted::Held
            }
        }
        InstanceState::Available => {
            let fresh = now_ms - i.last_heartbeat_ms <= rules.heartbeat_timeout.as_millis() as i64;
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

/// Count a pool's instances; `skipped` is the number of malformed items the adapter dropped.
pub fn count(
    instances: &[InstanceRecord],
    rules: &Instances,
    now_ms: i64,
    skipped: u32,
) -> Capacity {
    let mut c = Capacity {
        skipped,
        ..Capacity::default()
    };
    for i in instances {
        match classify(i, rules, now_ms) {
            Counted::Serving => c.serving += 1,
            Counted::Launching => c.launching += 1,
            Counted::Held => c.held += 1,
            Counted::Gone => {}
        }
    }
    c
}

/// The ASG desired capacity for a target of serving instances: target + held non-serving,
/// clamped to the group's own bounds (AWS rejects values outside them).
pub fn asg_desired(target_serving: u32, held: u32, asg_min: u32, asg_max: u32) -> u32 {
    target_serving
        .saturating_add(held)
        .clamp(asg_min, asg_max.max(asg_min))
}
