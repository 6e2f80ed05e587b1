//! Changing one key of a policy in code, as sweeps and tuning do (`band.high=1.4`,
//! `scale_down.stabilization=5m`): the value is parsed as the file parser would, set, and the
//! whole policy goes through the same validator as a file. An override is accepted exactly
//! when the same edit to the file would be.

use super::validate;
use super::{ForecastMode, PoolPolicy, Step};

/// Keys a sweep (or a what-if, or tuning) may override.
pub const OVERRIDABLE: &[&str] = &[
    "min",
    "max",
    "band.low",
    "band.high",
    "band.setpoint",
    "band.headroom",
    "scale_up.max_step",
    "scale_up.cooldown",
    "scale_up.confirm",
    "scale_up.confirm_unless",
    "scale_down.max_step",
    "scale_down.stabilization",
    "scale_down.cooldown",
    "scale_down.drain",
    "scale_down.drain_timeout",
    "scale_down.collapse_below",
    "scale_down.collapse_hold",
    "metrics.window",
    "metrics.stale_after",
    "instances.launch_time",
    "instances.launch_timeout",
    "forecast.mode",
    "forecast.horizon",
    "forecast.trend_window",
    "forecast.max_lift",
    "instances.max_rps",
    "instances.queue",
    "slo.over_capacity",
    "slo.history",
];

/// A copy of `policy` with one field changed, e.g. (`band.high`, `1.4`) or
/// (`scale_down.stabilization`, `5m`). `min`/`max` apply to every region. The result is
/// validated as a policy file would be; the error names the key and every broken rule.
pub fn apply_override(policy: &PoolPolicy, key: &str, value: &str) -> Result<PoolPolicy, String> {
    let mut p = policy.clone();
    let bad = |what: &str| format!("{key}={value}: {what}");
    let num = || {
        value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad("expected a number"))
    };
    let count = || {
        value
            .trim()
            .parse::<u32>()
            .map_err(|_| bad("expected a whole number"))
    };
    let dur = || {
        humantime::parse_duration(value.trim())
            .map_err(|e| bad(&format!("not a duration ({e}); write e.g. 5m")))
    };
    let step = || Step::parse(value).ok_or_else(|| bad("expected a count ≥ 1 or a percentage"));
    match key {
        "min" => {
            let v = count()?;
            p.min = v;
            p.regions.values_mut().for_each(|r| r.min = v);
        }
        "max" => {
            let v = count()?;
            p.max = v;
            p.regions.values_mut().for_each(|r| r.max = v);
        }
        "band.low" => p.band.low = num()?,
        "band.high" => p.band.high = num()?,
        "band.setpoint" => p.band.setpoint = num()?,
        "band.headroom" => {
            p.band.headroom = if value.trim() == "0" {
                None
            } else {
                Some(step()?)
            }
        }
        "scale_up.max_step" => p.scale_up.max_step = step()?,
        "scale_up.cooldown" => p.scale_up.cooldown = dur()?,
        "scale_up.confirm" => p.scale_up.confirm = count()?,
        "scale_up.confirm_unless" => p.scale_up.confirm_unless = num()?,
        "scale_down.max_step" => p.scale_down.max_step = step()?,
        "scale_down.stabilization" => p.scale_down.stabilization = dur()?,
        "scale_down.cooldown" => p.scale_down.cooldown = dur()?,
        "scale_down.drain" => {
            p.scale_down.drain = match value.trim() {
                "true" => Some(p.scale_down.drain_timeout()),
                "false" => None,
                _ => return Err(bad("expected true or false")),
            }
        }
        "scale_down.drain_timeout" => p.scale_down.drain = Some(dur()?),
        "scale_down.collapse_below" => p.scale_down.collapse_below = num()?,
        "scale_down.collapse_hold" => p.scale_down.collapse_hold = dur()?,
        "metrics.window" => p.metrics.window = dur()?,
        "metrics.stale_after" => p.metrics.stale_after = dur()?,
        "instances.launch_time" => p.instances.launch_time = dur()?,
        "instances.launch_timeout" => p.instances.launch_timeout = dur()?,
        "forecast.mode" => {
            p.forecast.mode = ForecastMode::parse(value.trim())
                .ok_or_else(|| bad("write off, trend or seasonal"))?
        }
        "forecast.horizon" => p.forecast.horizon = Some(dur()?),
        "forecast.trend_window" => p.forecast.trend_window = dur()?,
        "forecast.max_lift" => p.forecast.max_lift = step()?,
        "instances.max_rps" => p.instances.max_rps = num()?,
        "instances.queue" => p.instances.queue = count()?,
        // Setting an SLO key on a policy without one gives it the default SLO first.
        "slo.over_capacity" => {
            p.slo.get_or_insert_with(Default::default).over_capacity =
                super::parse::parse_percent(value)
                    .ok_or_else(|| bad("expected a percentage, e.g. 0.1%"))?
        }
        "slo.history" => p.slo.get_or_insert_with(Default::default).history = dur()?,
        _ => {
            return Err(format!(
                "unknown key `{key}`; keys that can be set: {}",
                OVERRIDABLE.join(", ")
            ));
        }
    }
    // Keep the setpoint in the band's middle unless it was set explicitly.
    if matches!(key, "band.low" | "band.high")
        && (policy.band.setpoint - (policy.band.low + policy.band.high) / 2.0).abs() < 1e-12
    {
        p.band.setpoint = (p.band.low + p.band.high) / 2.0;
    }
    validated(p, key, value)
}

/// `p` if it passes the one validator; else its problems, prefixed with the override that
/// made it (`key=value: ...`).
pub fn validated(p: PoolPolicy, key: &str, value: &str) -> Result<PoolPolicy, String> {
    let problems = validate::check(&p);
    if problems.is_empty() {
        Ok(p)
    } else {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Err(format!("{key}={value}: {}", all.join("; ")))
    }
}
