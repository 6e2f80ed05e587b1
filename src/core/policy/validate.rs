//! The one validator: every rule on a policy's values, checked on the model whichever way it
//! was made (a file, a sweep or tuning override, code). Each rule names the key it is about,
//! so the file parser can point at the line, and says how to fix it.
//!
//! Every number from outside is bounded here, so nothing downstream sizes memory or does
//! arithmetic on an absurd value: instance counts, rates and durations all have a ceiling
//! far above any real pool and far below what would overflow.

use std::time::Duration;

use super::{PoolPolicy, Step};

/// The largest band bound we accept, in RPS per instance.
pub const MAX_BAND_RPS: f64 = 100.0;

/// The most instances a pool may have in one region. A GPU pool of this size is far beyond
/// any real one; a larger `max` is a typo (and would make the embedded region and the
/// simulator allocate for it).
pub const MAX_INSTANCES: u32 = 100_000;

/// The largest percentage a step may be.
pub const MAX_STEP_PERCENT: f64 = 1000.0;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// One broken rule: the key it is about (as written in a file: `band.low`,
/// `regions.us-east-1.max`, `schedule[0].min`), what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub what: String,
    pub fix: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} — {}", self.what, self.fix)
    }
}

struct Check {
    out: Vec<Violation>,
}

impl Check {
    fn fail(&mut self, key: impl Into<String>, what: impl Into<String>, fix: impl Into<String>) {
        self.out.push(Violation {
            key: key.into(),
            what: what.into(),
            fix: fix.into(),
        });
    }

    /// `d` within `[lo, hi]`, else one violation with `fix`.
    fn duration(&mut self, key: &str, d: Duration, lo: Duration, hi: Duration, fix: &str) {
        if d < lo {
            self.fail(
                key,
                format!("{key} ({}) is shorter than {}", fmt(d), describe(lo)),
                fix,
            );
        } else if d > hi {
            self.fail(
                key,
                format!("{key} ({}) is longer than {}", fmt(d), describe(hi)),
                fix,
            );
        }
    }

    fn positive_duration(&mut self, key: &str, d: Duration, hi: Duration, fix: &str) {
        if d.is_zero() {
            self.fail(key, format!("{key} must be longer than zero"), fix);
        } else {
            self.duration(key, d, Duration::ZERO, hi, fix);
        }
    }

    fn count(&mut self, key: &str, n: u32, fix: &str) {
        if n > MAX_INSTANCES {
            self.fail(
                key,
                format!("{key} = {n} is more than {MAX_INSTANCES} instances"),
                fix,
            );
        }
    }

    fn step(&mut self, key: &str, s: Step) {
        let fix = "write a count of instances (e.g. 4) or a percentage of current capacity (e.g. \"50%\")";
        match s {
            Step::Count(0) => self.fail(key, format!("`{key}` must be at least 1"), fix),
            Step::Count(n) if n > MAX_INSTANCES => self.fail(
                key,
                format!("`{key}` = {n} is more than {MAX_INSTANCES} instances"),
                fix,
            ),
            Step::Percent(p) if !(p > 0.0 && p <= MAX_STEP_PERCENT) => self.fail(
                key,
                format!("`{key}` = \"{p}%\" is not a percentage in (0, {MAX_STEP_PERCENT}]"),
                fix,
            ),
            _ => {}
        }
    }

    fn rate(&mut self, key: &str, v: f64, fix: &str) {
        if !(v.is_finite() && v > 0.0 && v <= MAX_BAND_RPS) {
            self.fail(
                key,
                format!("{key} = {v} is outside (0, {MAX_BAND_RPS}] RPS per instance"),
                fix,
            );
        }
    }
}

/// A limit in words: "a minute", "an hour", "2 hours", "a day", "a week".
fn describe(d: Duration) -> String {
    match d.as_secs() {
        60 => "a minute".into(),
        3600 => "an hour".into(),
        86_400 => "a day".into(),
        604_800 => "a week".into(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        _ => fmt(d),
    }
}

fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Every violated rule of `p`, in key order of the file's sections.
pub fn check(p: &PoolPolicy) -> Vec<Violation> {
    let mut c = Check { out: Vec::new() };
    bounds(&mut c, p);
    band(&mut c, p);
    scale_up(&mut c, p);
    scale_down(&mut c, p);
    metrics(&mut c, p);
    instances(&mut c, p);
    forecast(&mut c, p);
    schedules(&mut c, p);
    slo(&mut c, p);
    c.out
}

fn slo(c: &mut Check, p: &PoolPolicy) {
    let Some(s) = &p.slo else { return };
    if !(s.over_capacity > 0.0 && s.over_capacity <= 0.5) {
        c.fail(
            "slo.over_capacity",
            format!(
                "slo.over_capacity = {}% is outside (0%, 50%]",
                s.over_capacity * 100.0
            ),
            "write the share of requests that may find the queue full, e.g. \"0.1%\"",
        );
    }
    c.duration(
        "slo.history",
        s.history,
        HOUR,
        8 * DAY,
        "use about a day (\"1d\"), the pool's recent behaviour",
    );
}

fn bounds(c: &mut Check, p: &PoolPolicy) {
    let fix = "use a number of instances a region could really run (at most 100000)";
    c.count("min", p.min, fix);
    c.count("max", p.max, fix);
    if p.min > p.max {
        c.fail(
            "max",
            format!("min ({}) is greater than max ({})", p.min, p.max),
            "raise max or lower min so that min ≤ max",
        );
    }
    for (name, r) in &p.regions {
        let key = |k: &str| format!("regions.{name}.{k}");
        if r.min != p.min {
            c.count(&key("min"), r.min, fix);
        }
        if r.max != p.max {
            c.count(&key("max"), r.max, fix);
        }
        // A pool-wide min > max is reported once, at the pool level.
        if r.min > r.max && !(r.min == p.min && r.max == p.max) {
            c.fail(
                if r.max != p.max {
                    key("max")
                } else {
                    key("min")
                },
                format!("in {name}, min ({}) is greater than max ({})", r.min, r.max),
                "raise the region's max or lower its min so that min ≤ max",
            );
        }
        if r.asg.trim().is_empty() {
            c.fail(
                key("asg"),
                "the ASG name is empty",
                "write the group's name",
            );
        }
    }
}

fn band(c: &mut Check, p: &PoolPolicy) {
    let b = &p.band;
    let fix = "use a positive rate per instance, such as 1.0";
    let before = c.out.len();
    c.rate("band.low", b.low, fix);
    c.rate("band.high", b.high, fix);
    c.rate("band.setpoint", b.setpoint, fix);
    if c.out.len() > before {
        return;
    }
    if b.low >= b.high {
        c.fail(
            "band.high",
            format!("band.low ({}) must be below band.high ({})", b.low, b.high),
            "make low < high, e.g. low = 1.0, high = 1.5",
        );
    } else if !(b.low..=b.high).contains(&b.setpoint) {
        c.fail(
            "band.setpoint",
            format!(
                "band.setpoint ({}) is outside the band [{}, {}]",
                b.setpoint, b.low, b.high
            ),
            "put the setpoint between low and high, or remove it to use the middle",
        );
    }
    if let Some(h) = b.headroom {
        c.step("band.headroom", h);
    }
}

fn scale_up(c: &mut Check, p: &PoolPolicy) {
    let su = &p.scale_up;
    c.step("scale_up.max_step", su.max_step);
    c.duration(
        "scale_up.cooldown",
        su.cooldown,
        Duration::ZERO,
        DAY,
        "use minutes, e.g. \"2m\", or \"0s\" for none",
    );
    if !(1..=3).contains(&su.confirm) {
        c.fail(
            "scale_up.confirm",
            format!("scale_up.confirm = {} is outside 1–3 samples", su.confirm),
            "use 1 (act on the first sample above the band) or 2",
        );
    }
    c.rate(
        "scale_up.confirm_unless",
        su.confirm_unless,
        "use a rate per instance above band.high, such as 2.0 (saturation)",
    );
}

fn scale_down(c: &mut Check, p: &PoolPolicy) {
    let sd = &p.scale_down;
    c.step("scale_down.max_step", sd.max_step);
    c.duration(
        "scale_down.stabilization",
        sd.stabilization,
        Duration::ZERO,
        DAY,
        "use a window of minutes, e.g. \"10m\"",
    );
    c.duration(
        "scale_down.cooldown",
        sd.cooldown,
        Duration::ZERO,
        DAY,
        "use minutes, e.g. \"5m\", or \"0s\" for none",
    );
    if let Some(t) = sd.drain {
        c.positive_duration(
            "scale_down.drain_timeout",
            t,
            HOUR,
            "an idle GPU is paid for while it drains; use minutes, e.g. \"5m\"",
        );
    }
    if !(sd.collapse_below > 0.0 && sd.collapse_below < 1.0) {
        c.fail(
            "scale_down.collapse_below",
            format!(
                "scale_down.collapse_below = {} is outside (0, 1)",
                sd.collapse_below
            ),
            "use a fraction of current capacity, such as 0.5",
        );
    }
    c.duration(
        "scale_down.collapse_hold",
        sd.collapse_hold,
        Duration::ZERO,
        DAY,
        "use minutes, e.g. \"30m\", or \"0s\" to turn it off",
    );
}

fn metrics(c: &mut Check, p: &PoolPolicy) {
    let m = &p.metrics;
    c.duration(
        "metrics.window",
        m.window,
        MINUTE,
        HOUR,
        "routers write one sample a minute: use \"1m\" or more (at most \"1h\")",
    );
    c.duration(
        "metrics.stale_after",
        m.stale_after,
        MINUTE,
        DAY,
        "samples arrive once a minute: use at least \"2m\"",
    );
    if let Some(n) = m.stale_fallback {
        c.count(
            "metrics.stale_fallback",
            n,
            "use a number of instances the pool could really run",
        );
    }
}

fn instances(c: &mut Check, p: &PoolPolicy) {
    let i = &p.instances;
    c.positive_duration(
        "instances.heartbeat_timeout",
        i.heartbeat_timeout,
        DAY,
        "write a duration such as \"90s\"",
    );
    c.positive_duration(
        "instances.launch_time",
        i.launch_time,
        2 * HOUR,
        "write boot + model load, such as \"6m\"",
    );
    c.positive_duration(
        "instances.launch_timeout",
        i.launch_timeout,
        6 * HOUR,
        "write a duration such as \"15m\"",
    );
    c.rate(
        "instances.max_rps",
        i.max_rps,
        "write the requests per second one instance serves at saturation, e.g. 2.0",
    );
    if i.queue > 100_000 {
        c.fail(
            "instances.queue",
            format!("instances.queue = {} is beyond any real queue", i.queue),
            "write the requests one instance queues, e.g. 10",
        );
    }
    if i.launch_timeout < i.launch_time && !i.launch_timeout.is_zero() {
        c.fail(
            "instances.launch_timeout",
            format!(
                "instances.launch_timeout ({}) is shorter than launch_time ({})",
                fmt(i.launch_timeout),
                fmt(i.launch_time)
            ),
            "a launching instance must be given at least its launch time: raise launch_timeout",
        );
    }
}

fn forecast(c: &mut Check, p: &PoolPolicy) {
    let f = &p.forecast;
    if let Some(h) = f.horizon
        && (h.is_zero() || h > HOUR)
    {
        c.fail(
            "forecast.horizon",
            "forecast.horizon must be between 1s and 1h",
            "use about the launch time (boot + model load), or remove it to use launch_time",
        );
    }
    if f.trend_window < 3 * MINUTE || f.trend_window > 6 * HOUR {
        c.fail(
            "forecast.trend_window",
            "forecast.trend_window must be between 3m and 6h",
            "the trend needs at least three per-minute samples; \"10m\" is a good start",
        );
    }
    c.step("forecast.max_lift", f.max_lift);
}

fn schedules(c: &mut Check, p: &PoolPolicy) {
    for (i, s) in p.schedules.iter().enumerate() {
        let key = |k: &str| format!("schedule[{i}].{k}");
        if s.duration.is_zero() {
            c.fail(
                key("duration"),
                "schedule duration is zero",
                "write how long the minimum holds, e.g. \"3h\"",
            );
        } else if s.duration > 7 * DAY {
            c.fail(
                key("duration"),
                format!("schedule `{}` lasts longer than a week", s.name),
                "a cron window repeats; use at most \"7d\"",
            );
        }
        c.count(
            &key("min"),
            s.min,
            "use a number of instances a region could really run",
        );
        let over: Vec<&str> = p
            .regions
            .iter()
            .filter(|(k, r)| s.applies_to(k) && s.min > r.max)
            .map(|(k, _)| k.as_str())
            .collect();
        if !over.is_empty() {
            c.fail(
                key("min"),
                format!(
                    "schedule min ({}) is above max in {}",
                    s.min,
                    over.join(", ")
                ),
                "lower the scheduled min or raise the pool's max",
            );
        }
    }
}
