//! A pool's recent decisions: what the stabilization window, cooldowns and the collapse hold
//! look back at.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Action, Decision};
use crate::core::demand::DemandHistory;

/// A pool's recent decisions, as the stabilization window and cooldowns need them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolHistory {
    recommendations: VecDeque<(i64, u32)>,
    pub last_scale_up_ms: Option<i64>,
    pub last_scale_down_ms: Option<i64>,
    /// Start of the current traffic collapse, if traffic is collapsed.
    pub collapse_since_ms: Option<i64>,
    /// The pool's per-minute demand, for SLO sizing (empty without an SLO).
    pub demand: DemandHistory,
}

impl PoolHistory {
    /// Remember a decision; `applied` says whether its action took effect.
    pub fn record(&mut self, d: &Decision, applied: bool, keep: Duration) {
        self.recommendations.push_back((d.at_ms, d.recommendation));
        let horizon = d.at_ms - keep.as_millis() as i64;
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| *t < horizon)
        {
            self.recommendations.pop_front();
        }
        self.collapse_since_ms = d.collapse_since_ms;
        if applied {
            match d.action {
                Action::ScaleUp => self.last_scale_up_ms = Some(d.at_ms),
                Action::ScaleDown => self.last_scale_down_ms = Some(d.at_ms),
                Action::None => {}
            }
        }
    }

    /// Add a past recommendation (e.g. replayed from the decision log by a new leader).
    pub fn seed(&mut self, at_ms: i64, recommendation: u32) {
        self.recommendations.push_back((at_ms, recommendation));
    }

    /// The highest recommendation made after `since_ms`.
    pub fn highest_since(&self, since_ms: i64) -> Option<u32> {
        self.recommendations
            .iter()
            .rev()
            .take_while(|(t, _)| *t > since_ms)
            .map(|(_, r)| *r)
            .max()
    }

    pub fn len(&self) -> usize {
        self.recommendations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recommendations.is_empty()
    }
}
