//! The pool's Auto Scaling Group: DescribeAutoScalingGroups, SetDesiredCapacity and
//! TerminateInstanceInAutoScalingGroup.
//!
//! SetDesiredCapacity is clamped to the group's own min/max first: AWS rejects a value outside
//! them (moto accepts it). The bounds come from the describe the reconciler makes in the same
//! cycle; older than a minute, they are described again. A terminate is sent only for an
//! instance the group listed in that describe: a stale or foreign instances-table item can
//! never make the controller terminate an instance of another group.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::core::AsgState;
use crate::ports::{Actuator, PortError, PortResult};

use super::{AwsClients, Service, port_error};

const BOUNDS_MAX_AGE: Duration = Duration::from_secs(60);

pub struct AsgActuator {
    c: Arc<AwsClients>,
    bounds: Mutex<HashMap<String, (u32, u32, Instant)>>,
    /// Instance ids each group listed at its last describe.
    members: Mutex<HashMap<String, HashSet<String>>>,
}

fn non_negative(v: Option<i32>) -> u32 {
    v.map_or(0, |x| u32::try_from(x).unwrap_or(0))
}

impl AsgActuator {
    pub fn new(c: Arc<AwsClients>) -> Self {
        AsgActuator {
            c,
            bounds: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
        }
    }

    fn cached_bounds(&self, asg: &str) -> Option<(u32, u32)> {
        // Plain data, consistent after every insert: a poisoned lock is safe to reuse.
        let b = self.bounds.lock().unwrap_or_else(|p| p.into_inner());
        b.get(asg)
            .filter(|(_, _, at)| at.elapsed() < BOUNDS_MAX_AGE)
            .map(|(lo, hi, _)| (*lo, *hi))
    }
}

#[async_trait]
impl Actuator for AsgActuator {
    async fn describe(&self, asg: &str) -> PortResult<AsgState> {
        let out = self
            .c
            .caller
            .call(
                Service::AutoScaling,
                "DescribeAutoScalingGroups",
                self.c
                    .asg
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(asg)
                    .send(),
            )
            .await
            .map_err(|e| port_error(&format!("describing Auto Scaling Group {asg}"), &e))?;
        let g = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(asg))
            .ok_or_else(|| PortError::NotFound(format!("Auto Scaling Group {asg}")))?;
        let state = AsgState {
            name: asg.to_string(),
            min: non_negative(g.min_size()),
            max: non_negative(g.max_size()),
            desired: non_negative(g.desired_capacity()),
        };
        self.bounds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(asg.to_string(), (state.min, state.max, Instant::now()));
        // In service or on the way (Pending*); not Terminating*, Detaching, Standby...: an
        // instance the group is already letting go of is not ours to terminate again.
        let members = g
            .instances()
            .iter()
            .filter(|i| {
                let state = i.lifecycle_state().map_or("", |l| l.as_str());
                state == "InService" || state.starts_with("Pending")
            })
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(asg.to_string(), members);
        Ok(state)
    }

    async fn set_desired(&self, asg: &str, desired: u32) -> PortResult<()> {
        let (lo, hi) = match self.cached_bounds(asg) {
            Some(b) => b,
            None => {
                let s = self.describe(asg).await?;
                (s.min, s.max)
            }
        };
        let clamped = desired.clamp(lo, hi.max(lo));
        if clamped != desired {
            tracing::warn!(
                asg,
                asked = desired,
                set = clamped,
                min = lo,
                max = hi,
                "desired capacity clamped to the group's own bounds"
            );
        }
        let value = i32::try_from(clamped).unwrap_or(i32::MAX);
        self.c
            .caller
            .call(
                Service::AutoScaling,
                "SetDesiredCapacity",
                self.c
                    .asg
                    .set_desired_capacity()
                    .auto_scaling_group_name(asg)
                    .desired_capacity(value)
                    .honor_cooldown(false)
                    .send(),
            )
            .await
            .map_err(|e| port_error(&format!("setting the desired capacity of {asg}"), &e))?;
        Ok(())
    }

    fn members(&self, asg: &str) -> Option<Vec<Arc<str>>> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(asg)
            .map(|m| m.iter().map(|id| Arc::from(id.as_str())).collect())
    }

    async fn terminate(&self, asg: &str, instance_id: &str) -> PortResult<()> {
        let listed = self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(asg)
            .is_some_and(|m| m.contains(instance_id));
        if !listed {
            return Err(PortError::NotFound(format!(
                "instance {instance_id} in Auto Scaling Group {asg} (as last described)"
            )));
        }
        self.c
            .caller
            .call(
                Service::AutoScaling,
                "TerminateInstanceInAutoScalingGroup",
                self.c
                    .asg
                    .terminate_instance_in_auto_scaling_group()
                    .instance_id(instance_id)
                    .should_decrement_desired_capacity(true)
                    .send(),
            )
            .await
            .map_err(|e| port_error(&format!("terminating {instance_id} in {asg}"), &e))?;
        if let Some(m) = self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(asg)
        {
            m.remove(instance_id);
        }
        Ok(())
    }
}
