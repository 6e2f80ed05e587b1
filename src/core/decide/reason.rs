//! Reason codes: why a decision came out as it did.

use std::fmt;

/// Why a decision came out as it did. Doubles as a metric label and a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonCode {
    /// Utilisation inside the band: hold.
    WithinBand,
    /// Utilisation above the band: scale up to rps / setpoint.
    AboveBand,
    /// Above the band, but the scale-up step limit applies.
    ScaleUpLimited,
    /// Above the band, inside the scale-up cooldown.
    ScaleUpCooldown,
    /// No capacity at all while there is demand.
    NoCapacity,
    /// Below the band: scale down to the stabilized recommendation.
    BelowBand,
    /// Below the band, but the scale-down step limit applies.
    ScaleDownLimited,
    /// Below the band, but a higher recommendation within the stabilization window holds.
    ScaleDownStabilized,
    /// Below the band, inside the scale-down cooldown.
    ScaleDownCooldown,
    /// The newest sample is older than `metrics.stale_after`: hold.
    MetricsStale,
    /// No sample at all: hold.
    MetricsMissing,
    /// Stale or missing metrics with a configured fallback floor.
    MetricsFallback,
    /// Raised to the policy's minimum.
    BelowMinimum,
    /// Raised to a scheduled minimum.
    ScheduledMinimum,
    /// Lowered to the policy's maximum.
    AboveMaximum,
    /// The ASG's own min/max bound the value we asked for.
    AsgBounds,
    /// The pool has no policy for this region.
    RegionNotInPolicy,
    /// The forecast floor lifted capacity ahead of demand.
    Forecast,
    /// Traffic collapsed far below capacity: hold through it for `scale_down.collapse_hold`.
    CollapseHold,
    /// Above the band on fewer consecutive samples than `scale_up.confirm` asks for.
    ScaleUpUnconfirmed,
    /// SLO sizing: above the band, but rises like this one were over before a launch could
    /// serve, and letting them pass stays within the SLO: hold.
    SloShortRise,
    /// SLO sizing has too little of the pool's history yet: the band decides.
    SloLearning,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 22] = [
        ReasonCode::WithinBand,
        ReasonCode::AboveBand,
        ReasonCode::ScaleUpLimited,
        ReasonCode::ScaleUpCooldown,
        ReasonCode::NoCapacity,
        ReasonCode::BelowBand,
        ReasonCode::ScaleDownLimited,
        ReasonCode::ScaleDownStabilized,
        ReasonCode::ScaleDownCooldown,
        ReasonCode::MetricsStale,
        ReasonCode::MetricsMissing,
        ReasonCode::MetricsFallback,
        ReasonCode::BelowMinimum,
        ReasonCode::ScheduledMinimum,
        ReasonCode::AboveMaximum,
        ReasonCode::AsgBounds,
        ReasonCode::RegionNotInPolicy,
        ReasonCode::Forecast,
        ReasonCode::CollapseHold,
        ReasonCode::ScaleUpUnconfirmed,
        ReasonCode::SloShortRise,
        ReasonCode::SloLearning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::WithinBand => "within_band",
            ReasonCode::AboveBand => "above_band",
            ReasonCode::ScaleUpLimited => "scale_up_limited",
            ReasonCode::ScaleUpCooldown => "scale_up_cooldown",
            ReasonCode::NoCapacity => "no_capacity",
            ReasonCode::BelowBand => "below_band",
            ReasonCode::ScaleDownLimited => "scale_down_limited",
            ReasonCode::ScaleDownStabilized => "scale_down_stabilized",
            ReasonCode::ScaleDownCooldown => "scale_down_cooldown",
            ReasonCode::MetricsStale => "metrics_stale",
            ReasonCode::MetricsMissing => "metrics_missing",
            ReasonCode::MetricsFallback => "metrics_fallback",
            ReasonCode::BelowMinimum => "below_minimum",
            ReasonCode::ScheduledMinimum => "scheduled_minimum",
            ReasonCode::AboveMaximum => "above_maximum",
            ReasonCode::AsgBounds => "asg_bounds",
            ReasonCode::RegionNotInPolicy => "region_not_in_policy",
            ReasonCode::Forecast => "forecast",
            ReasonCode::CollapseHold => "collapse_hold",
            ReasonCode::ScaleUpUnconfirmed => "scale_up_unconfirmed",
            ReasonCode::SloShortRise => "slo_short_rise",
            ReasonCode::SloLearning => "slo_learning",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
