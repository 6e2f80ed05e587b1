//! Decisions as data: from a pool's decision and what was observed of its instances and group,
//! the steps that carry it out. Karpenter's disruption controller is the model: decide the
//! commands first, then execute them. The reconciler only executes and records a plan; the
//! dry-run, followers, the shadow policy and the simulator all see the same plan.
//!
//! The rules, all here:
//! - scaling up sets the group's desired capacity; instances this controller is draining that
//!   would serve return to service first (warm, no launch needed), so only the rest launches;
//! - scaling down *drains* (with `scale_down.drain`): victims (`capacity::pick_victims`) are
//!   marked `draining` and the group's desired capacity is left alone; without drains it is
//!   lowered and the group picks its victims, but never while a drain is under way;
//! - every cycle, each drain this controller started ends once its queue is empty (reported
//!   after the routers' grace) or its timeout passed: terminated with the group's desired
//!   capacity decremented, then marked terminated; one the group let go of is only marked;
//!   one whose termination would take the group below its minimum returns to service.

use std::fmt;
use std::sync::Arc;

use super::InstanceRecord;
use super::capacity::{self, DrainEnd};
use super::decide::{Action, Decision, Observation};
use super::policy::PoolPolicy;

/// One step of a plan, in the order the executor runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Return a draining instance to service (`available`, drain mark removed).
    Undrain { instance_id: Arc<str>, why: Undrain },
    /// Set the group's desired capacity (absolute: a repeat or a late call is harmless).
    SetDesired { desired: u32 },
    /// Mark a serving instance `draining`: routers stop sending it requests.
    Drain { instance_id: Arc<str> },
    /// Terminate a drained instance with the group's desired capacity decremented, then mark
    /// it `terminated`.
    Terminate {
        instance_id: Arc<str>,
        end: DrainEnd,
    },
    /// Mark `terminated` a drained instance the group already let go of.
    Forget { instance_id: Arc<str> },
}

/// Why a draining instance returns to service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undrain {
    /// Demand is back: it serves again instead of a launch.
    Demand,
    /// Terminating it would take the group below its minimum (raised since the drain began).
    GroupMinimum,
}

impl Step {
    /// Whether the step touches the Auto Scaling Group or the instances table (every step
    /// does; kept for readers of a plan).
    pub fn instance(&self) -> Option<&str> {
        match self {
            Step::Undrain { instance_id, .. }
            | Step::Drain { instance_id }
            | Step::Terminate { instance_id, .. }
            | Step::Forget { instance_id } => Some(instance_id),
            Step::SetDesired { .. } => None,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Step::Undrain { .. } => "undrain",
            Step::SetDesired { .. } => "set_desired",
            Step::Drain { .. } => "drain",
            Step::Terminate { .. } => "terminate",
            Step::Forget { .. } => "forget",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Undrain {
                instance_id,
                why: Undrain::Demand,
            } => write!(f, "return {instance_id} to service"),
            Step::Undrain {
                instance_id,
                why: Undrain::GroupMinimum,
            } => write!(
                f,
                "return {instance_id} to service (the group is at its minimum)"
            ),
            Step::SetDesired { desired } => write!(f, "set desired capacity {desired}"),
            Step::Drain { instance_id } => write!(f, "drain {instance_id}"),
            Step::Terminate { instance_id, end } => {
                write!(f, "terminate {instance_id} (drained: {})", end.describe())
            }
            Step::Forget { instance_id } => {
                write!(f, "mark {instance_id} terminated (the group let go of it)")
            }
        }
    }
}

/// The steps that carry out a decision, and, when its action cannot be carried out at all,
/// why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Why the decision's action has no step (no victim to drain, a drain under way).
    pub held_back: Option<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The steps in words, e.g. "drain i-1; drain i-2".
    pub fn describe(&self) -> String {
        self.steps
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What the plan sees of the pool's instances: the ones this controller is draining, and
/// whether the group still holds each.
struct Drains<'a> {
    obs: &'a Observation,
}

impl<'a> Drains<'a> {
    /// Instances this controller is draining (`draining` with its `drain_started_at`).
    fn ours(&self) -> impl Iterator<Item = &'a InstanceRecord> + use<'a> {
        self.obs
            .instances
            .iter()
            .filter(|i| capacity::is_our_drain(i))
    }

    fn in_group(&self, i: &InstanceRecord) -> bool {
        self.obs.in_group(i)
    }

    /// Our drains the group still holds.
    fn held(&self) -> impl Iterator<Item = &'a InstanceRecord> + use<'a> {
        let obs = self.obs;
        self.ours().filter(move |i| obs.in_group(i))
    }
}

/// The plan for `d` (decided on `obs`), completing `d` itself: its reason names the
/// instances the plan touches, and its `asg_desired` is what the group's desired capacity
/// will be once the plan's capacity step is done (the group's own while drains go on).
pub fn plan(policy: &PoolPolicy, obs: &Observation, d: &mut Decision) -> Plan {
    let drains = Drains { obs };
    let draining = drains.held().count();
    let mut out = Plan::default();
    let mut reclaimed: Vec<Arc<str>> = Vec::new();
    let mut group_desired = obs.asg.desired;
    match d.action {
        Action::None => {}
        Action::ScaleDown if policy.scale_down.drain.is_some() => {
            plan_drains(policy, obs, d, draining, &mut out)
        }
        _ if draining > 0 && d.asg_desired < obs.asg.desired => {
            // Lowering the desired capacity would let the group pick its own victims, perhaps
            // instances with work queued, while drains are under way.
            out.held_back = Some(format!(
                "{draining} instance(s) draining: the group's desired capacity is not lowered \
                 during a drain"
            ));
        }
        _ => {
            if d.action == Action::ScaleUp && draining > 0 {
                reclaimed = reclaim(policy, &drains, d, &mut out);
            }
            let target = d.asg_desired.saturating_sub(reclaimed.len() as u32);
            if reclaimed.is_empty() || target > obs.asg.desired {
                out.steps.push(Step::SetDesired { desired: target });
                d.asg_desired = target;
                group_desired = target;
            } else {
                // The instances returned to service cover the whole shortfall.
                d.asg_desired = obs.asg.desired;
            }
        }
    }
    finish_drains(
        policy,
        obs.asg.min,
        &drains,
        &reclaimed,
        group_desired,
        d.at_ms,
        &mut out,
    );
    let ended: Vec<String> = out
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Terminate { .. } | Step::Forget { .. }))
        .map(ToString::to_string)
        .chain(out.steps.iter().filter_map(|s| match s {
            Step::Undrain {
                why: Undrain::GroupMinimum,
                ..
            } => Some(s.to_string()),
            _ => None,
        }))
        .collect();
    if !ended.is_empty() {
        d.reason = format!("{}; drains ending: {}", d.reason, ended.join(", "));
    }
    out
}

/// Scale in by draining: mark the victims `draining` and leave the group's desired capacity
/// alone (it drops by one with each termination later).
fn plan_drains(
    policy: &PoolPolicy,
    obs: &Observation,
    d: &mut Decision,
    draining: usize,
    out: &mut Plan,
) {
    let cut = d.current().saturating_sub(d.desired);
    // No more victims, the failed-cleanup ones that come along included, than keep the group
    // at its minimum once every drain under way has ended.
    let room = obs
        .asg
        .desired
        .saturating_sub(draining as u32)
        .saturating_sub(obs.asg.min) as usize;
    let victims = capacity::pick_victims(
        &obs.instances,
        cut as usize,
        room,
        &policy.instances,
        d.at_ms,
    );
    if victims.is_empty() {
        out.held_back = Some(if room == 0 {
            format!(
                "no instance to drain: the group's minimum {} is reached once the drains under \
                 way end",
                obs.asg.min
            )
        } else {
            "no instance to drain (launching, unhealthy and stale instances are not victims)"
                .to_string()
        });
        return;
    }
    let ids: Vec<&str> = victims.iter().map(|v| &*v.instance_id).collect();
    d.asg_desired = obs.asg.desired;
    d.reason = format!(
        "{}; draining {} (each terminated once idle, or after {}, lowering the group's desired \
         capacity by one)",
        d.reason,
        ids.join(", "),
        humantime::format_duration(policy.scale_down.drain_timeout())
    );
    out.steps.extend(victims.into_iter().map(|v| Step::Drain {
        instance_id: v.instance_id.clone(),
    }));
}

/// Demand is back while this controller drains instances: return up to the shortfall of them
/// to service (warm; a launch takes minutes), the most recently drained first.
fn reclaim(
    policy: &PoolPolicy,
    drains: &Drains<'_>,
    d: &mut Decision,
    out: &mut Plan,
) -> Vec<Arc<str>> {
    let short = d.desired.saturating_sub(d.current()) as usize;
    let mut ours: Vec<&InstanceRecord> = drains
        .held()
        .filter(|i| capacity::would_serve(i, &policy.instances, d.at_ms))
        .collect();
    ours.sort_by(|a, b| {
        b.drain_started_ms
            .cmp(&a.drain_started_ms)
            .then_with(|| a.instance_id.cmp(&b.instance_id))
    });
    let back: Vec<Arc<str>> = ours
        .into_iter()
        .take(short)
        .map(|i| i.instance_id.clone())
        .collect();
    if !back.is_empty() {
        let ids: Vec<&str> = back.iter().map(|i| &**i).collect();
        d.reason = format!(
            "{}; {} returned to service from draining (warm, no launch needed)",
            d.reason,
            ids.join(", ")
        );
        out.steps.extend(back.iter().map(|id| Step::Undrain {
            instance_id: id.clone(),
            why: Undrain::Demand,
        }));
    }
    back
}

/// End the drains that are over: terminate (with a decrement) those the group holds whose
/// queue is empty or whose timeout passed, mark those it let go of, and return to service
/// those whose termination would take the group below its minimum.
fn finish_drains(
    policy: &PoolPolicy,
    group_min: u32,
    drains: &Drains<'_>,
    skip: &[Arc<str>],
    group_desired: u32,
    now_ms: i64,
    out: &mut Plan,
) {
    let timeout = policy.scale_down.drain_timeout();
    let mut desired = group_desired;
    for i in drains.ours() {
        if skip.contains(&i.instance_id) {
            continue;
        }
        let id = i.instance_id.clone();
        if !drains.in_group(i) {
            // Gone from the group already (terminated earlier, or replaced by it): only the
            // item is left to mark, whatever its queue says.
            out.steps.push(Step::Forget { instance_id: id });
        } else if desired <= group_min {
            out.steps.push(Step::Undrain {
                instance_id: id,
                why: Undrain::GroupMinimum,
            });
        } else if let Some(end) = capacity::drain_end(i, timeout, now_ms) {
            out.steps.push(Step::Terminate {
                instance_id: id,
                end,
            });
            desired = desired.saturating_sub(1);
        }
    }
}
