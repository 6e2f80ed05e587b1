//! The pool's Auto Scaling Group: DescribeAutoScalingGroups and SetDesiredCapacity.
//!
//! SetDesiredCapacity is clamped to the group's own min/max first: AWS rejects a value outside
//! them (moto accepts it). The bounds come from the describe the reconciler makes in the same
//! cycle; older than a minute, they are described again.

use std::collections::HashMap;
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
}

fn non_negative(v: Option<i32>) -> u32 {
    v.map_or(0, |x| u32::try_from(x).unwrap_or(0))
}

impl AsgActuator {
    pub fn new(c: Arc<AwsClients>) -> Self {
        AsgActuator {
            c,
            bounds: Mutex::new(HashMap::new()),
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
}
