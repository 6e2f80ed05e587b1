//! Executing a plan: each step is one call to the group or the instances table, made only
//! after the leadership guard says the lease still has margin left, and given up on when it
//! has not returned by the time the lease could have passed to another replica (the request
//! may still land; SetDesiredCapacity is absolute, so the next leader corrects a late one).

use std::future::Future;

use crate::core::plan::{Plan, Step, Undrain};
use crate::core::{Action, Decision, Outcome};
use crate::ports::{Backends, PortError, PortResult};
use crate::telemetry::Metrics;

use super::leadership::{ActGuard, Permit};

/// What became of each step.
#[derive(Debug, Default)]
pub(crate) struct Executed {
    /// Steps of the decision's own action (set desired, drain, return to service on demand)
    /// that succeeded, and that failed.
    pub action_done: usize,
    pub action_failed: Vec<String>,
    /// Steps ending drains (terminate, mark terminated, return at the group's minimum).
    pub drains_ended: usize,
    pub drain_failures: Vec<String>,
    /// Why the remaining steps were not run (the lease's margin ran out).
    pub stopped: Option<String>,
}

impl Executed {
    /// The decision's outcome: its action applied (for drains: at least one victim marked),
    /// failed, or not done because the lease's margin ran out; for a plan that only ends
    /// drains, whether that worked.
    pub fn outcome(&self, d: &Decision) -> Outcome {
        let action_steps = d.plan.steps.iter().filter(|s| is_action(s)).count();
        if action_steps == 0 {
            if d.action != Action::None {
                let why = d.plan.held_back.clone();
                return Outcome::Skipped(why.unwrap_or_else(|| "nothing to do".into()));
            }
            return match (&self.stopped, self.drain_failures.is_empty()) {
                (_, false) => Outcome::Failed(self.drain_failures.join("; ")),
                (Some(why), true) => Outcome::Skipped(why.clone()),
                (None, true) => Outcome::Applied,
            };
        }
        let drains_only = d.action == Action::ScaleDown
            && d.plan
                .steps
                .iter()
                .all(|s| !matches!(s, Step::SetDesired { .. }));
        if self.action_done == 0 {
            return match &self.stopped {
                Some(why) if self.action_failed.is_empty() => Outcome::Skipped(why.clone()),
                _ => Outcome::Failed(self.action_failed.join("; ")),
            };
        }
        if !drains_only && !self.action_failed.is_empty() {
            return Outcome::Failed(self.action_failed.join("; "));
        }
        if !drains_only && let Some(why) = &self.stopped {
            return Outcome::Failed(format!("partly done: {why}"));
        }
        Outcome::Applied
    }
}

/// Whether a step carries out the decision's own action (as opposed to ending a drain).
fn is_action(step: &Step) -> bool {
    matches!(
        step,
        Step::SetDesired { .. }
            | Step::Drain { .. }
            | Step::Undrain {
                why: Undrain::Demand,
                ..
            }
    )
}

/// Run `call` if the guard allows it now, bounded by the lease's remaining margin.
async fn guarded<T>(
    guard: &ActGuard,
    call: impl Future<Output = PortResult<T>>,
) -> Result<T, StepError> {
    match guard.permit() {
        Permit::Denied => Err(StepError::Stopped),
        Permit::Unbounded => call.await.map_err(StepError::Failed),
        Permit::For(left) => match tokio::time::timeout(left, call).await {
            Ok(r) => r.map_err(StepError::Failed),
            Err(_) => Err(StepError::Failed(PortError::Transient(format!(
                "no answer before the lease's margin ran out ({} ms)",
                left.as_millis()
            )))),
        },
    }
}

enum StepError {
    Stopped,
    Failed(PortError),
}

/// Where a plan runs: the pool, its region and its Auto Scaling Group.
pub(crate) struct Target<'a> {
    pub pool: &'a str,
    pub asg: &'a str,
}

/// Execute `plan` on the target's group, step by step, each under the guard.
pub(crate) async fn execute(
    b: &Backends,
    metrics: &Metrics,
    target: &Target<'_>,
    plan: &Plan,
    guard: &ActGuard,
    at_ms: i64,
) -> Executed {
    let Target { pool, asg } = *target;
    let mut out = Executed::default();
    let count = |step: &str| metrics.drains.with_label_values(&[pool, step]).inc();
    for step in &plan.steps {
        let is_action = is_action(step);
        let result = match step {
            Step::SetDesired { desired } => {
                guarded(guard, b.actuator.set_desired(asg, *desired)).await
            }
            Step::Drain { instance_id } => {
                guarded(guard, b.inventory.mark_draining(instance_id, at_ms)).await
            }
            Step::Undrain { instance_id, .. } => {
                guarded(guard, b.inventory.undrain(instance_id)).await
            }
            Step::Terminate { instance_id, .. } => {
                // The group let go of it since the describe: only the item is left to mark.
                match guarded(guard, b.actuator.terminate(asg, instance_id)).await {
                    Ok(()) | Err(StepError::Failed(PortError::NotFound(_))) => {
                        guarded(guard, mark_terminated(b, instance_id, at_ms)).await
                    }
                    Err(e) => Err(e),
                }
            }
            Step::Forget { instance_id } => {
                guarded(guard, mark_terminated(b, instance_id, at_ms)).await
            }
        };
        match result {
            Ok(()) => {
                match step {
                    Step::Drain { .. } => count("started"),
                    Step::Undrain { .. } => count("returned"),
                    Step::Terminate { end, .. } => count(match end {
                        crate::core::capacity::DrainEnd::Timeout => "terminated_timeout",
                        crate::core::capacity::DrainEnd::Empty => "terminated_empty",
                    }),
                    _ => {}
                }
                if is_action {
                    out.action_done += 1;
                } else {
                    out.drains_ended += 1;
                }
                tracing::info!(step = step.label(), "{step}");
            }
            Err(StepError::Stopped) => {
                out.stopped = Some(
                    "the lease has too little margin left to act: stopped before acting"
                        .to_string(),
                );
                tracing::warn!(
                    step = step.label(),
                    "not acting: the lease's margin ran out (another controller may lead now)"
                );
                break;
            }
            Err(StepError::Failed(e)) => {
                if !matches!(step, Step::SetDesired { .. }) {
                    count("failed");
                }
                tracing::warn!(step = step.label(), error = %e, "{step} failed; retrying next cycle");
                let text = format!("{step}: {e}");
                if is_action {
                    out.action_failed.push(text);
                } else {
                    out.drain_failures.push(text);
                }
            }
        }
    }
    out
}

/// Mark a drained instance terminated; an item already gone is fine.
async fn mark_terminated(b: &Backends, instance_id: &str, at_ms: i64) -> PortResult<()> {
    match b.inventory.mark_terminated(instance_id, at_ms).await {
        Ok(()) | Err(PortError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
