//! Policy model, parsing and validation.
//!
//! A policy file is TOML, one model pool per file, edited by capacity planners. Parsing is
//! strict (unknown keys are errors) and collects *every* problem in a file before failing, each
//! with its `file:line:col`, what is wrong and how to fix it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The largest band bound we accept, in RPS per instance.
pub const MAX_BAND_RPS: f64 = 100.0;

/// How far a step may move capacity in one cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// At most this many instances.
    Count(u32),
    /// At most this percentage of the current capacity (at least one instance).
    Percent(f64),
}

impl Step {
    /// The number of instances this step allows from `current`.
    pub fn allowance(self, current: u32) -> u32 {
        match self {
            Step::Count(n) => n,
            Step::Percent(p) => ((f64::from(current) * p / 100.0).ceil() as u32).max(1),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Count(n) => write!(f, "{n}"),
            Step::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The tolerance band of RPS per instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub low: f64,
    pub high: f64,
    pub setpoint: f64,
    /// Spare capacity on top of rps / setpoint, for bursts shorter than a launch.
    pub headroom: Option<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleUp {
    pub max_step: Step,
    pub cooldown: Duration,
    /// Consecutive per-minute samples above the band needed before scaling up.
    pub confirm: u32,
    /// RPS per instance at which the newest sample alone scales up (no confirmation).
    pub confirm_unless: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleDown {
    pub max_step: Step,
    pub stabilization: Duration,
    pub cooldown: Duration,
    /// Drain before terminate: scale-in marks chosen instances `draining`, waits until their
    /// queue is empty or this timeout passes, then terminates each one (decrementing the
    /// group). `None`: lower the group's desired capacity and let the ASG choose victims.
    pub drain: Option<Duration>,
    /// A recommendation below this fraction of current capacity is a collapse of traffic.
    pub collapse_below: f64,
    /// Hold capacity through a collapse for up to this long (zero: off).
    pub collapse_hold: Duration,
}

/// Default drain timeout: a full queue (10 requests) at 2 RPS empties in seconds; five
/// minutes covers long generations without keeping an idle GPU for long.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

impl ScaleDown {
    /// The drain timeout in force, also for drains an earlier policy started when this one
    /// has `drain = false`.
    pub fn drain_timeout(&self) -> Duration {
        self.drain.unwrap_or(DEFAULT_DRAIN_TIMEOUT)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// RPS is the mean of the samples within this window ending at the newest sample.
    pub window: Duration,
    /// A newest sample older than this is stale: never scale down on it.
    pub stale_after: Duration,
    /// With stale or missing metrics, hold (None) or keep at least this many instances.
    pub stale_fallback: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instances {
    pub heartbeat_timeout: Duration,
    pub launch_time: Duration,
    pub launch_timeout: Duration,
}

/// Per-region settings of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionPolicy {
    pub asg: String,
    pub min: u32,
    pub max: u32,
}

/// A scheduled minimum: from every cron match (UTC) for `duration`, keep at least `min`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub cron_expr: String,
    pub cron: Cron,
    pub duration: Duration,
    pub min: u32,
    /// Empty means every region of the pool.
    pub regions: Vec<String>,
    /// The occurrence around the last `now` asked about: [start, next start). Cron searches
    /// are costly and `now` moves slowly, so most calls reuse it.
    pub(crate) memo: OccurrenceMemo,
}

#[derive(Debug, Default)]
pub(crate) struct OccurrenceMemo(std::sync::Mutex<Option<(i64, i64)>>);

impl Clone for OccurrenceMemo {
    fn clone(&self) -> Self {
        OccurrenceMemo(std::sync::Mutex::new(
            *self.0.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.cron_expr == other.cron_expr
            && self.duration == other.duration
            && self.min == other.min
            && self.regions == other.regions
    }
}

impl Schedule {
    /// Is this window active at `now_ms` (unix milliseconds, UTC)?
    pub fn active_at(&self, now_ms: i64) -> bool {
        let Some(now) = Utc.timestamp_millis_opt(now_ms).single() else {
            return false;
        };
        // The latest start at or before now; active if it is within `duration`.
        let duration = self.duration.as_millis() as i64;
        let mut memo = self.memo.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((start, next)) = *memo
            && start <= now_ms
            && now_ms < next
        {
            return now_ms - start < duration;
        }
        let start: Option<DateTime<Utc>> = self.cron.find_previous_occurrence(&now, true).ok();
        let next: Option<DateTime<Utc>> = self.cron.find_next_occurrence(&now, false).ok();
        match (start, next) {
            (Some(start), Some(next)) => {
                let start = start.timestamp_millis();
                *memo = Some((start, next.timestamp_millis()));
                now_ms - start < duration
            }
            (Some(start), None) => now_ms - start.timestamp_millis() < duration,
            _ => false,
        }
    }

    pub fn applies_to(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }
}

/// The whole policy of one model pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPolicy {
    pub pool: String,
    /// File the policy came from (for messages).
    pub source: PathBuf,
    pub band: Band,
    pub scale_up: ScaleUp,
    pub scale_down: ScaleDown,
    pub metrics: Metrics,
    pub instances: Instances,
    pub regions: BTreeMap<String, RegionPolicy>,
    pub schedules: Vec<Schedule>,
    pub forecast: Forecast,
}

/// How the forecast floor predicts demand one launch time ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastMode {
    Off,
    /// Extrapolate the recent trend.
    Trend,
    /// The trend, or what happened over the same stretch one day and one week earlier,
    /// whichever is higher.
    Seasonal,
}

/// The forecast floor: scale up ahead of demand, never down on a forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub mode: ForecastMode,
    /// How far ahead to predict; None means the pool's launch time.
    pub horizon: Option<Duration>,
    /// The samples the trend is fitted over.
    pub trend_window: Duration,
    /// The most the forecast may add on top of the reactive decision.
    pub max_lift: Step,
}

impl Default for Forecast {
    fn default() -> Self {
        Forecast {
            mode: ForecastMode::Off,
            horizon: None,
            trend_window: Duration::from_secs(600),
            max_lift: Step::Percent(50.0),
        }
    }
}

impl PoolPolicy {
    /// Instances wanted for `rps`: ceil(rps / setpoint), plus the burst headroom.
    pub fn wanted(&self, rps: f64) -> u32 {
        let base = crate::core::decide::instances_for(rps, self.band.setpoint);
        match self.band.headroom {
            Some(h) if base > 0 => base.saturating_add(h.allowance(base)),
            _ => base,
        }
    }
}

/// Effective bounds of a pool in a region at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
    /// The scheduled window that raised the minimum, if any.
    pub schedule: Option<String>,
}

impl PoolPolicy {
    pub fn region(&self, region: &str) -> Option<&RegionPolicy> {
        self.regions.get(region)
    }

    /// Min and max for `region` at `now_ms`, with scheduled minimums applied (capped at max).
    pub fn bounds(&self, region: &str, now_ms: i64) -> Option<Bounds> {
        let r = self.regions.get(region)?;
        let mut bounds = Bounds {
            min: r.min,
            max: r.max,
            schedule: None,
        };
        for s in &self.schedules {
            if s.min > bounds.min && s.applies_to(region) && s.active_at(now_ms) {
                bounds.min = s.min.min(r.max);
                bounds.schedule = Some(s.name.clone());
            }
        }
        Some(bounds)
    }
}

/// All pools' policies, loaded together.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    pub pools: BTreeMap<String, PoolPolicy>,
    /// Short hash of every file's name and contents: recorded with each decision.
    pub hash: String,
}

impl PolicySet {
    pub fn pool(&self, name: &str) -> Option<&PoolPolicy> {
        self.pools.get(name)
    }
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {} — {}",
            self.file, self.line, self.col, self.what, self.fix
        )
    }
}

/// Every problem found while loading policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{n} problem{} in the policies:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A policy file's name and text, as read from disk.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub path: PathBuf,
    pub text: String,
}

/// Parse and validate policy texts; the pure heart of loading (no file system).
pub fn parse_sources(sources: &[PolicySource]) -> Result<PolicySet, PolicyError> {
    let mut problems = Vec::new();
    let mut pools: BTreeMap<String, PoolPolicy> = BTreeMap::new();
    let mut seen: BTreeMap<String, (String, usize, usize)> = BTreeMap::new();
    for src in sources {
        let mut cx = FileCx::new(&src.path, &src.text);
        if let Some((policy, name_span)) = parse_pool(&mut cx) {
            let (line, col) = cx.line_col(name_span.start);
            if let Some((file, l, c)) = seen.get(&policy.pool) {
                cx.problem(
                    name_span,
                    format!(
                        "pool `{}` is already defined at {file}:{l}:{c}",
                        policy.pool
                    ),
                    "each pool must be defined once: merge the two files or rename one pool",
                );
            } else {
                seen.insert(policy.pool.clone(), (cx.file.clone(), line, col));
                pools.insert(policy.pool.clone(), policy);
            }
        }
        problems.append(&mut cx.problems);
    }
    if !problems.is_empty() {
        return Err(PolicyError { problems });
    }
    let hash = hash_sources(sources);
    Ok(PolicySet { pools, hash })
}

/// A short, stable hash of the policy files (names and contents, in name order).
pub fn hash_sources(sources: &[PolicySource]) -> String {
    let mut sorted: Vec<&PolicySource> = sources.iter().collect();
    sorted.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
    let mut h = Sha256::new();
    for s in sorted {
        if let Some(name) = s.path.file_name() {
            h.update(name.to_string_lossy().as_bytes());
        }
        h.update([0u8]);
        h.update(s.text.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..6])
}

/// Keys a sweep (or a what-if) may override, with the kind of value each takes.
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
];

/// A copy of `policy` with one field changed, e.g. (`band.high`, `1.4`) or
/// (`scale_down.stabilization`, `5m`). `min`/`max` apply to every region.
pub fn apply_override(policy: &PoolPolicy, key: &str, value: &str) -> Result<PoolPolicy, String> {
    let mut p = policy.clone();
    let num = || {
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0 && *v <= MAX_BAND_RPS)
            .ok_or_else(|| format!("{key}={value}: expected a rate in (0, {MAX_BAND_RPS}]"))
    };
    let count = || {
        value
            .parse::<u32>()
            .map_err(|_| format!("{key}={value}: expected a whole number"))
    };
    let dur = || {
        humantime::parse_duration(value)
            .map_err(|e| format!("{key}={value}: not a duration ({e}); write e.g. 5m"))
    };
    let step = || -> Result<Step, String> {
        if let Some(pct) = value.strip_suffix('%') {
            pct.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0 && *v <= 1000.0)
                .map(Step::Percent)
                .ok_or_else(|| format!("{key}={value}: expected a percentage in (0, 1000]"))
        } else {
            match value.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Step::Count(n)),
                _ => Err(format!(
                    "{key}={value}: expected a count ≥ 1 or a percentage"
                )),
            }
        }
    };
    match key {
        "min" => {
            let v = count()?;
            p.regions.values_mut().for_each(|r| r.min = v);
        }
        "max" => {
            let v = count()?;
            p.regions.values_mut().for_each(|r| r.max = v);
        }
        "band.low" => p.band.low = num()?,
        "band.high" => p.band.high = num()?,
        "band.setpoint" => p.band.setpoint = num()?,
        "band.headroom" => p.band.headroom = if value == "0" { None } else { Some(step()?) },
        "scale_up.max_step" => p.scale_up.max_step = step()?,
        "scale_up.cooldown" => p.scale_up.cooldown = dur()?,
        "scale_up.confirm" => {
            p.scale_up.confirm = Some(count()?)
                .filter(|n| (1..=3).contains(n))
                .ok_or_else(|| format!("{key}={value}: expected 1 to 3 samples"))?
        }
        "scale_up.confirm_unless" => p.scale_up.confirm_unless = num()?,
        "scale_down.max_step" => p.scale_down.max_step = step()?,
        "scale_down.stabilization" => p.scale_down.stabilization = dur()?,
        "scale_down.cooldown" => p.scale_down.cooldown = dur()?,
        "scale_down.drain" => {
            p.scale_down.drain = match value {
                "true" => Some(p.scale_down.drain_timeout()),
                "false" => None,
                _ => return Err(format!("{key}={value}: expected true or false")),
            }
        }
        "scale_down.drain_timeout" => p.scale_down.drain = Some(dur()?),
        "scale_down.collapse_below" => {
            p.scale_down.collapse_below = value
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0 && *v < 1.0)
                .ok_or_else(|| format!("{key}={value}: expected a fraction in (0, 1)"))?
        }
        "scale_down.collapse_hold" => p.scale_down.collapse_hold = dur()?,
        "metrics.window" => p.metrics.window = dur()?,
        "metrics.stale_after" => p.metrics.stale_after = dur()?,
        "instances.launch_time" => p.instances.launch_time = dur()?,
        "instances.launch_timeout" => p.instances.launch_timeout = dur()?,
        "forecast.mode" => {
            p.forecast.mode = match value {
                "off" => ForecastMode::Off,
                "trend" => ForecastMode::Trend,
                "seasonal" => ForecastMode::Seasonal,
                _ => return Err(format!("{key}={value}: write off, trend or seasonal")),
            }
        }
        "forecast.horizon" => p.forecast.horizon = Some(dur()?),
        "forecast.trend_window" => p.forecast.trend_window = dur()?,
        "forecast.max_lift" => p.forecast.max_lift = step()?,
        _ => {
            return Err(format!(
                "unknown key `{key}`; sweepable keys: {}",
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
    if p.band.low >= p.band.high || !(p.band.low..=p.band.high).contains(&p.band.setpoint) {
        return Err(format!(
            "{key}={value}: the band would be {}–{} with setpoint {}; low < setpoint < high is required",
            p.band.low, p.band.high, p.band.setpoint
        ));
    }
    if p.regions.values().any(|r| r.min > r.max) {
        return Err(format!("{key}={value}: min would exceed max"));
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// The strict walker over a span-carrying TOML tree.

struct FileCx<'s> {
    file: String,
    text: &'s str,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

type Table<'i> = DeTable<'i>;

impl<'s> FileCx<'s> {
    fn new(path: &Path, text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        FileCx {
            file: path.display().to_string(),
            text,
            line_starts,
            problems: Vec::new(),
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset.min(self.text.len()))
            .map_or(1, |s| s.chars().count() + 1);
        (line + 1, col)
    }

    fn problem(&mut self, span: Range<usize>, what: impl Into<String>, fix: impl Into<String>) {
        let (line, col) = self.line_col(span.start);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            col,
            what: what.into(),
            fix: fix.into(),
        });
    }
}

/// One table being read: records which keys were consumed so unknown ones can be reported.
struct Reader<'t, 'i> {
    table: &'t Table<'i>,
    path: String,
    used: Vec<&'static str>,
}

impl<'t, 'i> Reader<'t, 'i> {
    fn new(table: &'t Table<'i>, path: impl Into<String>) -> Self {
        Reader {
            table,
            path: path.into(),
            used: Vec::new(),
        }
    }

    fn key_name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.used.push(key);
        self.table.get(key)
    }

    /// Report every key not consumed, with a suggestion when one is close.
    fn finish(self, cx: &mut FileCx<'_>, known: &[&'static str]) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref();
            if !self.used.contains(&name) && !known.contains(&name) {
                let all: Vec<&str> = self.used.iter().chain(known.iter()).copied().collect();
                let fix = match closest(name, &all) {
                    Some(s) => format!("did you mean `{}`? Unknown keys are errors", s),
                    None => format!(
                        "remove it; keys allowed here: {}",
                        if all.is_empty() {
                            "none".to_string()
                        } else {
                            all.join(", ")
                        }
                    ),
                };
                cx.problem(
                    k.span(),
                    format!("unknown key `{}`", self.key_name(name)),
                    fix,
                );
            }
        }
    }

    fn table(
        &mut self,
        cx: &mut FileCx<'_>,
        key: &'static str,
    ) -> Option<(&'t Table<'i>, Range<usize>)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((t, v.span())),
            other => {
                cx.problem(
                    v.span(),
                    format!(
                        "`{}` must be a table, found {}",
                        self.key_name(key),
                        kind(other)
                    ),
                    format!("write it as a [{}] section", self.key_name(key)),
                );
                None
            }
        }
    }

    fn string(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<(String, Range<usize>)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            other => {
                cx.problem(
                    v.span(),
                    format!(
                        "`{}` must be a string, found {}",
                        self.key_name(key),
                        kind(other)
                    ),
                    "quote the value",
                );
                None
            }
        }
    }

    fn boolean(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<(bool, Range<usize>)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some((*b, v.span())),
            other => {
                cx.problem(
                    v.span(),
                    format!(
                        "`{}` must be true or false, found {}",
                        self.key_name(key),
                        kind(other)
                    ),
                    "write true or false, unquoted",
                );
                None
            }
        }
    }

    fn uint(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<(u32, Range<usize>)> {
        let v = self.get(key)?;
        let name = self.key_name(key);
        as_uint(cx, v, &name).map(|n| (n, v.span()))
    }

    fn float(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<(f64, Range<usize>)> {
        let v = self.get(key)?;
        let parsed = match v.get_ref() {
            DeValue::Float(f) => f64::from_str(&f.as_str().replace('_', "")).ok(),
            DeValue::Integer(i) if i.radix() == 10 => i
                .as_str()
                .replace('_', "")
                .parse::<i64>()
                .ok()
                .map(|n| n as f64),
            _ => None,
        };
        match parsed {
            Some(f) if f.is_finite() => Some((f, v.span())),
            _ => {
                cx.problem(
                    v.span(),
                    format!(
                        "`{}` must be a number, found {}",
                        self.key_name(key),
                        kind(v.get_ref())
                    ),
                    "write a decimal number such as 1.25",
                );
                None
            }
        }
    }

    fn duration(
        &mut self,
        cx: &mut FileCx<'_>,
        key: &'static str,
    ) -> Option<(Duration, Range<usize>)> {
        let (s, span) = self.string(cx, key)?;
        match humantime::parse_duration(&s) {
            Ok(d) => Some((d, span)),
            Err(e) => {
                cx.problem(
                    span,
                    format!("`{}` = \"{s}\" is not a duration: {e}", self.key_name(key)),
                    "write a duration such as \"30s\", \"6m\" or \"1h 30m\"",
                );
                None
            }
        }
    }

    fn step(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<(Step, Range<usize>)> {
        let v = self.get(key)?;
        let name = self.key_name(key);
        let fix = "write a count of instances (e.g. 4) or a percentage of current capacity (e.g. \"50%\")";
        match v.get_ref() {
            DeValue::Integer(_) => {
                let n = as_uint(cx, v, &name)?;
                if n == 0 {
                    cx.problem(v.span(), format!("`{name}` must be at least 1"), fix);
                    return None;
                }
                Some((Step::Count(n), v.span()))
            }
            DeValue::String(s) => {
                let parsed = s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok());
                match parsed {
                    Some(p) if p > 0.0 && p <= 1000.0 => Some((Step::Percent(p), v.span())),
                    _ => {
                        cx.problem(
                            v.span(),
                            format!("`{name}` = \"{s}\" is not a percentage in (0, 1000]"),
                            fix,
                        );
                        None
                    }
                }
            }
            other => {
                cx.problem(
                    v.span(),
                    format!(
                        "`{name}` must be a count or a percentage, found {}",
                        kind(other)
                    ),
                    fix,
                );
                None
            }
        }
    }
}

fn as_uint(cx: &mut FileCx<'_>, v: &Spanned<DeValue<'_>>, name: &str) -> Option<u32> {
    let fix = "write a whole number of instances, 0 or more";
    match v.get_ref() {
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let parsed = i64::from_str_radix(
                digits
                    .trim_start_matches("0x")
                    .trim_start_matches("0o")
                    .trim_start_matches("0b"),
                i.radix(),
            );
            match parsed {
                Ok(n) if (0..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
                _ => {
                    cx.problem(
                        v.span(),
                        format!("`{name}` = {digits} is out of range"),
                        fix,
                    );
                    None
                }
            }
        }
        other => {
            cx.problem(
                v.span(),
                format!("`{name}` must be a whole number, found {}", kind(other)),
                fix,
            );
            None
        }
    }
}

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The closest known key within edit distance 2, for "did you mean".
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

const TOP_KEYS: &[&str] = &[
    "pool",
    "min",
    "max",
    "band",
    "scale_up",
    "scale_down",
    "metrics",
    "instances",
    "regions",
    "schedule",
    "forecast",
];

/// Parse one file into a pool policy, recording every problem in `cx`.
fn parse_pool(cx: &mut FileCx<'_>) -> Option<(PoolPolicy, Range<usize>)> {
    let text = cx.text;
    let doc = match DeTable::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            cx.problem(
                span,
                format!("not valid TOML: {msg}"),
                "fix the syntax at this position",
            );
            return None;
        }
    };
    let root_span = doc.span();
    let root = doc.get_ref();
    let mut r = Reader::new(root, "");
    let problems_before = cx.problems.len();

    let pool = r.string(cx, "pool");
    let pool = match pool {
        Some((name, span)) => {
            if !valid_name(&name) {
                cx.problem(
                    span.clone(),
                    format!("pool name `{name}` is not allowed"),
                    "use 1–64 letters, digits, '-', '_' or '.' (no '#': it separates the metrics key)",
                );
            }
            Some((name, span))
        }
        None => {
            if !root.contains_key("pool") {
                cx.problem(
                    0..0,
                    "the file names no pool",
                    "add `pool = \"model-a\"` at the top of the file",
                );
            }
            None
        }
    };

    let min = r.uint(cx, "min");
    let max = r.uint(cx, "max");
    if min.is_none() && !root.contains_key("min") {
        cx.problem(
            0..0,
            "missing `min`",
            "add `min = N`, the fewest instances the pool may have in any region",
        );
    }
    if max.is_none() && !root.contains_key("max") {
        cx.problem(
            0..0,
            "missing `max`",
            "add `max = N`, the most instances the pool may have in any region",
        );
    }
    if let (Some((lo, _)), Some((hi, hspan))) = (&min, &max)
        && lo > hi
    {
        cx.problem(
            hspan.clone(),
            format!("min ({lo}) is greater than max ({hi})"),
            "raise max or lower min so that min ≤ max",
        );
    }

    let band = parse_band(cx, &mut r);
    let scale_up = parse_scale_up(cx, &mut r);
    let scale_down = parse_scale_down(cx, &mut r);
    let metrics = parse_metrics(cx, &mut r);
    let instances = parse_instances(cx, &mut r);
    let default_min = min.as_ref().map_or(0, |m| m.0);
    let default_max = max.as_ref().map_or(u32::MAX, |m| m.0);
    let regions = parse_regions(cx, &mut r, default_min, default_max);
    let schedules = parse_schedules(cx, &mut r, &regions);
    let forecast = parse_forecast(cx, &mut r);
    r.finish(cx, TOP_KEYS);

    if cx.problems.len() > problems_before {
        return None;
    }
    let (pool, pool_span) = pool?;
    let _ = root_span;
    Some((
        PoolPolicy {
            pool,
            source: PathBuf::from(&cx.file),
            band: band?,
            scale_up: scale_up?,
            scale_down: scale_down?,
            metrics: metrics?,
            instances: instances?,
            regions: regions.into_iter().map(|(k, (v, _))| (k, v)).collect(),
            schedules: schedules?,
            forecast: forecast?,
        },
        pool_span,
    ))
}

fn parse_band(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Option<Band> {
    let Some((t, span)) = root.table(cx, "band") else {
        return Some(Band {
            low: 1.0,
            high: 1.5,
            setpoint: 1.25,
            headroom: None,
        });
    };
    let mut r = Reader::new(t, "band");
    let low = r.float(cx, "low");
    let high = r.float(cx, "high");
    let setpoint = r.float(cx, "setpoint");
    let headroom = r.step(cx, "headroom").map(|h| h.0);
    r.finish(cx, &[]);
    let before = cx.problems.len();
    let in_range = |v: f64| v > 0.0 && v <= MAX_BAND_RPS;
    for (name, v) in [("low", &low), ("high", &high), ("setpoint", &setpoint)] {
        if let Some((x, s)) = v
            && !in_range(*x)
        {
            cx.problem(
                s.clone(),
                format!("band.{name} = {x} is outside (0, {MAX_BAND_RPS}] RPS per instance"),
                "use a positive rate per instance, such as 1.0",
            );
        }
    }
    let low_v = low.as_ref().map_or(1.0, |v| v.0);
    let high_v = high.as_ref().map_or(1.5, |v| v.0);
    if low_v >= high_v {
        let s = high
            .as_ref()
            .or(low.as_ref())
            .map_or(span.clone(), |v| v.1.clone());
        cx.problem(
            s,
            format!("band.low ({low_v}) must be below band.high ({high_v})"),
            "make low < high, e.g. low = 1.0, high = 1.5",
        );
    }
    let setpoint_v = setpoint.as_ref().map_or((low_v + high_v) / 2.0, |v| v.0);
    if let Some((sp, s)) = &setpoint
        && low_v < high_v
        && !(low_v..=high_v).contains(sp)
    {
        cx.problem(
            s.clone(),
            format!("band.setpoint ({sp}) is outside the band [{low_v}, {high_v}]"),
            "put the setpoint between low and high, or remove it to use the middle",
        );
    }
    (cx.problems.len() == before).then_some(Band {
        low: low_v,
        high: high_v,
        setpoint: setpoint_v,
        headroom,
    })
}

fn parse_scale_up(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Option<ScaleUp> {
    let mut out = ScaleUp {
        max_step: Step::Percent(100.0),
        cooldown: Duration::ZERO,
        confirm: 1,
        confirm_unless: 2.0,
    };
    let Some((t, _)) = root.table(cx, "scale_up") else {
        return Some(out);
    };
    let before = cx.problems.len();
    let mut r = Reader::new(t, "scale_up");
    if let Some((s, _)) = r.step(cx, "max_step") {
        out.max_step = s;
    }
    if let Some((d, _)) = r.duration(cx, "cooldown") {
        out.cooldown = d;
    }
    if let Some((n, s)) = r.uint(cx, "confirm") {
        if (1..=3).contains(&n) {
            out.confirm = n;
        } else {
            cx.problem(
                s,
                format!("scale_up.confirm = {n} is outside 1–3 samples"),
                "use 1 (act on the first sample above the band) or 2",
            );
        }
    }
    if let Some((f, s)) = r.float(cx, "confirm_unless") {
        if f > 0.0 && f <= MAX_BAND_RPS {
            out.confirm_unless = f;
        } else {
            cx.problem(
                s,
                format!(
                    "scale_up.confirm_unless = {f} is outside (0, {MAX_BAND_RPS}] RPS per instance"
                ),
                "use a rate per instance above band.high, such as 2.0 (saturation)",
            );
        }
    }
    r.finish(cx, &[]);
    (cx.problems.len() == before).then_some(out)
}

fn parse_scale_down(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Option<ScaleDown> {
    let mut out = ScaleDown {
        max_step: Step::Percent(10.0),
        stabilization: Duration::from_secs(600),
        cooldown: Duration::ZERO,
        drain: Some(DEFAULT_DRAIN_TIMEOUT),
        collapse_below: 0.5,
        collapse_hold: Duration::ZERO,
    };
    let Some((t, _)) = root.table(cx, "scale_down") else {
        return Some(out);
    };
    let before = cx.problems.len();
    let mut r = Reader::new(t, "scale_down");
    if let Some((s, _)) = r.step(cx, "max_step") {
        out.max_step = s;
    }
    if let Some((d, s)) = r.duration(cx, "stabilization") {
        if d > Duration::from_secs(86_400) {
            cx.problem(
                s,
                "scale_down.stabilization is longer than a day",
                "use a window of minutes, e.g. \"10m\"",
            );
        }
        out.stabilization = d;
    }
    if let Some((d, _)) = r.duration(cx, "cooldown") {
        out.cooldown = d;
    }
    let timeout = r.duration(cx, "drain_timeout");
    if let Some((d, s)) = &timeout {
        if *d > Duration::from_secs(3600) {
            cx.problem(
                s.clone(),
                "scale_down.drain_timeout is longer than an hour",
                "an idle GPU is paid for while it drains; use minutes, e.g. \"5m\"",
            );
        }
        out.drain = Some(*d);
    }
    if let Some((on, s)) = r.boolean(cx, "drain")
        && !on
    {
        if timeout.is_some() {
            cx.problem(
                s,
                "scale_down.drain = false but a drain_timeout is set",
                "remove drain_timeout, or drain = false to let the ASG choose victims",
            );
        }
        out.drain = None;
    }
    if let Some((f, s)) = r.float(cx, "collapse_below") {
        if f > 0.0 && f < 1.0 {
            out.collapse_below = f;
        } else {
            cx.problem(
                s,
                format!("scale_down.collapse_below = {f} is outside (0, 1)"),
                "use a fraction of current capacity, such as 0.5",
            );
        }
    }
    if let Some((d, s)) = r.duration(cx, "collapse_hold") {
        if d > Duration::from_secs(86_400) {
            cx.problem(
                s,
                "scale_down.collapse_hold is longer than a day",
                "use minutes, e.g. \"30m\", or \"0s\" to turn it off",
            );
        }
        out.collapse_hold = d;
    }
    r.finish(cx, &[]);
    (cx.problems.len() == before).then_some(out)
}

fn parse_metrics(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Option<Metrics> {
    let mut out = Metrics {
        window: Duration::from_secs(60),
        stale_after: Duration::from_secs(180),
        stale_fallback: None,
    };
    let Some((t, _)) = root.table(cx, "metrics") else {
        return Some(out);
    };
    let before = cx.problems.len();
    let mut r = Reader::new(t, "metrics");
    if let Some((d, s)) = r.duration(cx, "window") {
        if d < Duration::from_secs(60) {
            cx.problem(
                s,
                "metrics.window is shorter than one minute",
                "routers write one sample a minute: use \"1m\" or more",
            );
        }
        out.window = d;
    }
    if let Some((d, s)) = r.duration(cx, "stale_after") {
        if d < Duration::from_secs(60) {
            cx.problem(
                s,
                "metrics.stale_after is shorter than one minute",
                "samples arrive once a minute: use at least \"2m\"",
            );
        }
        out.stale_after = d;
    }
    if let Some((n, _)) = r.uint(cx, "stale_fallback") {
        out.stale_fallback = Some(n);
    }
    r.finish(cx, &[]);
    (cx.problems.len() == before).then_some(out)
}

fn parse_instances(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Option<Instances> {
    let mut out = Instances {
        heartbeat_timeout: Duration::from_secs(90),
        launch_time: Duration::from_secs(360),
        launch_timeout: Duration::from_secs(900),
    };
    let Some((t, _)) = root.table(cx, "instances") else {
        return Some(out);
    };
    let before = cx.problems.len();
    let mut r = Reader::new(t, "instances");
    let positive = |cx: &mut FileCx<'_>, r: &mut Reader<'_, '_>, key: &'static str| {
        let (d, s) = r.duration(cx, key)?;
        if d.is_zero() {
            cx.problem(
                s,
                format!("instances.{key} must be longer than zero"),
                "write a duration such as \"90s\"",
            );
            return None;
        }
        Some((d, s))
    };
    if let Some((d, _)) = positive(cx, &mut r, "heartbeat_timeout") {
        out.heartbeat_timeout = d;
    }
    if let Some((d, _)) = positive(cx, &mut r, "launch_time") {
        out.launch_time = d;
    }
    let timeout = positive(cx, &mut r, "launch_timeout");
    if let Some((d, _)) = &timeout {
        out.launch_timeout = *d;
    }
    r.finish(cx, &[]);
    if out.launch_timeout < out.launch_time {
        let s = timeout.map_or(0..0, |t| t.1);
        cx.problem(
            s,
            format!(
                "instances.launch_timeout ({}) is shorter than launch_time ({})",
                humantime::format_duration(out.launch_timeout),
                humantime::format_duration(out.launch_time)
            ),
            "a launching instance must be given at least its launch time: raise launch_timeout",
        );
    }
    (cx.problems.len() == before).then_some(out)
}

fn parse_forecast(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Option<Forecast> {
    let mut out = Forecast::default();
    let Some((t, _)) = root.table(cx, "forecast") else {
        return Some(out);
    };
    let before = cx.problems.len();
    let mut r = Reader::new(t, "forecast");
    if let Some((m, span)) = r.string(cx, "mode") {
        out.mode = match m.as_str() {
            "off" => ForecastMode::Off,
            "trend" => ForecastMode::Trend,
            "seasonal" => ForecastMode::Seasonal,
            other => {
                cx.problem(
                    span,
                    format!("forecast.mode = \"{other}\" is not a forecast mode"),
                    "write \"off\", \"trend\" or \"seasonal\"",
                );
                ForecastMode::Off
            }
        };
    }
    if let Some((d, s)) = r.duration(cx, "horizon") {
        if d.is_zero() || d > Duration::from_secs(3600) {
            cx.problem(
                s,
                "forecast.horizon must be between 1s and 1h",
                "use about the launch time (boot + model load), or remove it to use launch_time",
            );
        }
        out.horizon = Some(d);
    }
    if let Some((d, s)) = r.duration(cx, "trend_window") {
        if d < Duration::from_secs(180) || d > Duration::from_secs(6 * 3600) {
            cx.problem(
                s,
                "forecast.trend_window must be between 3m and 6h",
                "the trend needs at least three per-minute samples; \"10m\" is a good start",
            );
        }
        out.trend_window = d;
    }
    if let Some((st, _)) = r.step(cx, "max_lift") {
        out.max_lift = st;
    }
    r.finish(cx, &[]);
    (cx.problems.len() == before).then_some(out)
}

type ParsedRegions = BTreeMap<String, (RegionPolicy, Range<usize>)>;

fn parse_regions(
    cx: &mut FileCx<'_>,
    root: &mut Reader<'_, '_>,
    default_min: u32,
    default_max: u32,
) -> ParsedRegions {
    let mut out = BTreeMap::new();
    let present = root.table.contains_key("regions");
    let Some((t, span)) = root.table(cx, "regions") else {
        if !present {
            cx.problem(
                0..0,
                "the pool has no regions",
                "add a [regions.us-east-1] section with `asg = \"...\"` for each region it runs in",
            );
        }
        return out;
    };
    if t.is_empty() {
        cx.problem(
            span,
            "the pool has no regions",
            "add a [regions.us-east-1] section with `asg = \"...\"` for each region it runs in",
        );
        return out;
    }
    for (name, value) in t.iter() {
        let region: &str = name.get_ref();
        let DeValue::Table(rt) = value.get_ref() else {
            cx.problem(
                value.span(),
                format!("regions.{region} must be a table"),
                format!("write it as a [regions.{region}] section with `asg = \"...\"`"),
            );
            continue;
        };
        if !valid_region(region) {
            cx.problem(
                name.span(),
                format!("`{region}` is not an AWS region name"),
                "use a region code such as us-east-1",
            );
        }
        let before = cx.problems.len();
        let mut r = Reader::new(rt, format!("regions.{region}"));
        let asg = r.string(cx, "asg");
        if asg.is_none() && !rt.contains_key("asg") {
            cx.problem(
                name.span(),
                format!("region {region} names no Auto Scaling Group"),
                format!("add `asg = \"<group name>\"` under [regions.{region}]"),
            );
        }
        if let Some((a, s)) = &asg
            && a.trim().is_empty()
        {
            cx.problem(s.clone(), "the ASG name is empty", "write the group's name");
        }
        let min_v = r.uint(cx, "min");
        let max_v = r.uint(cx, "max");
        let overridden = min_v.is_some() || max_v.is_some();
        let min = min_v.map_or(default_min, |v| v.0);
        let max = max_v.as_ref().map_or(default_max, |v| v.0);
        r.finish(cx, &[]);
        // A pool-wide min > max is reported once, at the pool level.
        if overridden && min > max {
            let s = max_v.map_or(name.span(), |v| v.1);
            cx.problem(
                s,
                format!("in {region}, min ({min}) is greater than max ({max})"),
                "raise the region's max or lower its min so that min ≤ max",
            );
        }
        if cx.problems.len() == before
            && let Some((asg, _)) = asg
        {
            out.insert(
                region.to_string(),
                (RegionPolicy { asg, min, max }, name.span()),
            );
        }
    }
    out
}

fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn parse_schedules(
    cx: &mut FileCx<'_>,
    root: &mut Reader<'_, '_>,
    regions: &ParsedRegions,
) -> Option<Vec<Schedule>> {
    let Some(v) = root.get("schedule") else {
        return Some(Vec::new());
    };
    let DeValue::Array(items) = v.get_ref() else {
        cx.problem(
            v.span(),
            "`schedule` must be an array of tables",
            "write each window as a [[schedule]] section",
        );
        return None;
    };
    let before = cx.problems.len();
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for item in items.iter() {
        let DeValue::Table(t) = item.get_ref() else {
            cx.problem(
                item.span(),
                "each schedule must be a table",
                "write each window as a [[schedule]] section",
            );
            continue;
        };
        let mut r = Reader::new(t, "schedule");
        let name = r.string(cx, "name");
        let cron = r.string(cx, "cron");
        let duration = r.duration(cx, "duration");
        let min = r.uint(cx, "min");
        let mut sched_regions = Vec::new();
        if let Some(rv) = r.get("regions") {
            match rv.get_ref() {
                DeValue::Array(a) => {
                    for e in a.iter() {
                        match e.get_ref() {
                            DeValue::String(s) if regions.contains_key(s.as_ref()) => {
                                sched_regions.push(s.to_string())
                            }
                            DeValue::String(s) => cx.problem(
                                e.span(),
                                format!("schedule region `{s}` is not one of the pool's regions"),
                                format!(
                                    "use one of: {}",
                                    regions.keys().cloned().collect::<Vec<_>>().join(", ")
                                ),
                            ),
                            other => cx.problem(
                                e.span(),
                                format!("schedule regions must be strings, found {}", kind(other)),
                                "write region names such as \"us-east-1\"",
                            ),
                        }
                    }
                }
                other => cx.problem(
                    rv.span(),
                    format!("schedule.regions must be an array, found {}", kind(other)),
                    "write regions = [\"us-east-1\"]",
                ),
            }
        }
        r.finish(cx, &[]);
        for (key, present) in [
            ("name", name.is_some() || t.contains_key("name")),
            ("cron", cron.is_some() || t.contains_key("cron")),
            ("duration", duration.is_some() || t.contains_key("duration")),
            ("min", min.is_some() || t.contains_key("min")),
        ] {
            if !present {
                cx.problem(
                    item.span(),
                    format!("schedule is missing `{key}`"),
                    "a schedule needs name, cron (UTC), duration and min",
                );
            }
        }
        let parsed_cron = cron.as_ref().and_then(|(expr, span)| match Cron::from_str(expr) {
            Ok(c) => Some(c),
            Err(e) => {
                cx.problem(
                    span.clone(),
                    format!("cron \"{expr}\" is not valid: {e}"),
                    "write five fields in UTC: minute hour day-of-month month day-of-week, e.g. \"0 13 * * 1-5\"",
                );
                None
            }
        });
        if let Some((d, s)) = &duration
            && d.is_zero()
        {
            cx.problem(
                s.clone(),
                "schedule duration is zero",
                "write how long the minimum holds, e.g. \"3h\"",
            );
        }
        if let Some((n, _)) = &name {
            if names.contains(n) {
                cx.problem(
                    name.as_ref().map_or(0..0, |x| x.1.clone()),
                    format!("schedule `{n}` is defined twice"),
                    "give each schedule a distinct name",
                );
            }
            names.push(n.clone());
        }
        if let Some((m, s)) = &min {
            let over: Vec<&str> = regions
                .iter()
                .filter(|(k, (rp, _))| {
                    (sched_regions.is_empty() || sched_regions.contains(k)) && *m > rp.max
                })
                .map(|(k, _)| k.as_str())
                .collect();
            if !over.is_empty() {
                cx.problem(
                    s.clone(),
                    format!("schedule min ({m}) is above max in {}", over.join(", ")),
                    "lower the scheduled min or raise the pool's max",
                );
            }
        }
        if let (Some((n, _)), Some((expr, _)), Some(c), Some((d, _)), Some((m, _))) =
            (name, cron, parsed_cron, duration, min)
        {
            out.push(Schedule {
                name: n,
                cron_expr: expr,
                cron: c,
                duration: d,
                min: m,
                regions: sched_regions,
                memo: OccurrenceMemo::default(),
            });
        }
    }
    (cx.problems.len() == before).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, text: &str) -> PolicySource {
        PolicySource {
            path: PathBuf::from(name),
            text: text.to_string(),
        }
    }

    const GOOD: &str = r#"
pool = "model-a"
min = 2
max = 40

[band]
low = 1.0
high = 1.5

[scale_down]
max_step = "20%"
stabilization = "10m"

[regions.us-east-1]
asg = "asg-a-use1"

[regions.us-west-2]
asg = "asg-a-usw2"
min = 1
max = 10

[[schedule]]
name = "peak"
cron = "0 13 * * 1-5"
duration = "3h"
min = 8
"#;

    #[test]
    fn parses_a_good_policy_with_defaults() {
        let set = parse_sources(&[src("a.toml", GOOD)]).expect("valid");
        let p = set.pool("model-a").expect("pool");
        assert_eq!(p.band.setpoint, 1.25);
        assert_eq!(p.scale_down.max_step, Step::Percent(20.0));
        assert_eq!(p.scale_up.max_step, Step::Percent(100.0));
        assert_eq!(p.regions["us-east-1"].min, 2);
        assert_eq!(p.regions["us-west-2"].max, 10);
        assert_eq!(p.instances.launch_time, Duration::from_secs(360));
        assert_eq!(p.schedules.len(), 1);
        assert_eq!(set.hash.len(), 12);
    }

    #[test]
    fn collects_every_problem_with_its_line() {
        let text = r#"pool = "model-a"
min = 9
max = 3
colour = "blue"

[regions.us-east-1]
asg = "x"

[[schedule]]
name = "s"
cron = "61 * * * *"
duration = "1h"
min = 1
"#;
        let err = parse_sources(&[src("bad.toml", text)]).expect_err("invalid");
        let lines: Vec<(usize, &str)> = err
            .problems
            .iter()
            .map(|p| (p.line, p.what.as_str()))
            .collect();
        assert!(
            lines
                .iter()
                .any(|(l, w)| *l == 3 && w.contains("min (9) is greater than max (3)")),
            "{err}"
        );
        assert!(
            lines
                .iter()
                .any(|(l, w)| *l == 4 && w.contains("unknown key `colour`")),
            "{err}"
        );
        assert!(
            lines.iter().any(|(l, w)| *l == 11 && w.contains("cron")),
            "{err}"
        );
        let shown = err.to_string();
        assert!(
            shown.contains("bad.toml:4:1: unknown key `colour`"),
            "{shown}"
        );
    }

    #[test]
    fn suggests_the_closest_key() {
        let text = "pool = \"p\"\nmin = 1\nmax = 2\n[scale_down]\nstabilisation = \"5m\"\n[regions.us-east-1]\nasg = \"a\"\n";
        let err = parse_sources(&[src("p.toml", text)]).expect_err("invalid");
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(
            err.problems[0].fix.contains("did you mean `stabilization`"),
            "{err}"
        );
        assert_eq!((err.problems[0].line, err.problems[0].col), (5, 1));
    }

    #[test]
    fn rejects_band_and_step_mistakes() {
        let text = r#"pool = "p"
min = 1
max = 2
[band]
low = 2.0
high = 1.5
[scale_up]
max_step = 0
[scale_down]
max_step = "lots"
[instances]
launch_time = "ten minutes"
[regions.us-east-1]
asg = "a"
"#;
        let err = parse_sources(&[src("p.toml", text)]).expect_err("invalid");
        let whats: Vec<&str> = err.problems.iter().map(|p| p.what.as_str()).collect();
        assert!(
            whats
                .iter()
                .any(|w| w.contains("band.low (2) must be below band.high (1.5)")),
            "{err}"
        );
        assert!(
            whats
                .iter()
                .any(|w| w.contains("scale_up.max_step` must be at least 1")),
            "{err}"
        );
        assert!(
            whats.iter().any(|w| w.contains("not a percentage")),
            "{err}"
        );
        assert!(whats.iter().any(|w| w.contains("not a duration")), "{err}");
    }

    #[test]
    fn rejects_band_outside_range_and_missing_asg() {
        let text = "pool = \"p\"\nmin = 1\nmax = 2\n[band]\nlow = 0.0\nhigh = 150.0\n[regions.us-east-1]\nmin = 1\n";
        let err = parse_sources(&[src("p.toml", text)]).expect_err("invalid");
        let s = err.to_string();
        assert!(s.contains("band.low = 0 is outside"), "{s}");
        assert!(s.contains("band.high = 150 is outside"), "{s}");
        assert!(
            s.contains("region us-east-1 names no Auto Scaling Group"),
            "{s}"
        );
    }

    #[test]
    fn rejects_duplicate_pools_across_files() {
        let err = parse_sources(&[src("a.toml", GOOD), src("b.toml", GOOD)]).expect_err("dup");
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].file == "b.toml");
        assert!(
            err.problems[0]
                .what
                .contains("already defined at a.toml:2:8"),
            "{err}"
        );
    }

    #[test]
    fn reports_toml_syntax_errors_with_position() {
        let err = parse_sources(&[src("s.toml", "pool = \"p\"\nmin = \n")]).expect_err("syntax");
        assert_eq!(err.problems[0].line, 2, "{err}");
        assert!(err.problems[0].what.starts_with("not valid TOML"));
    }

    #[test]
    fn schedules_raise_the_minimum_only_inside_their_window() {
        let set = parse_sources(&[src("a.toml", GOOD)]).expect("valid");
        let p = set.pool("model-a").expect("pool");
        // Monday 2026-11-23 13:30 UTC is inside "0 13 * * 1-5" + 3h.
        let inside = Utc
            .with_ymd_and_hms(2026, 11, 23, 13, 30, 0)
            .unwrap()
            .timestamp_millis();
        let after = Utc
            .with_ymd_and_hms(2026, 11, 23, 16, 0, 0)
            .unwrap()
            .timestamp_millis();
        let sunday = Utc
            .with_ymd_and_hms(2026, 11, 22, 13, 30, 0)
            .unwrap()
            .timestamp_millis();
        let b = p.bounds("us-east-1", inside).unwrap();
        assert_eq!((b.min, b.schedule.as_deref()), (8, Some("peak")));
        assert_eq!(p.bounds("us-east-1", after).unwrap().min, 2);
        assert_eq!(p.bounds("us-east-1", sunday).unwrap().min, 2);
        // Capped at the region's max.
        let w = p.bounds("us-west-2", inside).unwrap();
        assert_eq!(w.min, 8);
        assert!(p.bounds("eu-west-1", inside).is_none());
    }

    #[test]
    fn drain_is_on_by_default_and_its_keys_are_checked() {
        let set = parse_sources(&[src("a.toml", GOOD)]).expect("valid");
        let p = set.pool("model-a").expect("pool");
        assert_eq!(p.scale_down.drain, Some(DEFAULT_DRAIN_TIMEOUT));
        let with = |extra: &str| {
            GOOD.replace(
                "stabilization = \"10m\"\n",
                &format!("stabilization = \"10m\"\n{extra}\n"),
            )
        };
        let set = parse_sources(&[src("a.toml", &with("drain_timeout = \"90s\""))]).unwrap();
        assert_eq!(
            set.pools["model-a"].scale_down.drain,
            Some(Duration::from_secs(90))
        );
        let set = parse_sources(&[src("a.toml", &with("drain = false"))]).unwrap();
        assert_eq!(set.pools["model-a"].scale_down.drain, None);
        for (extra, says) in [
            (
                "drain = \"yes\"",
                "`scale_down.drain` must be true or false",
            ),
            (
                "drain_timeout = \"2h\"",
                "drain_timeout is longer than an hour",
            ),
            (
                "drain = false\ndrain_timeout = \"1m\"",
                "drain = false but a drain_timeout is set",
            ),
        ] {
            let err = parse_sources(&[src("a.toml", &with(extra))]).expect_err(extra);
            assert!(err.to_string().contains(says), "{extra}: {err}");
            assert!(err.problems.iter().all(|p| p.line >= 12), "{err}");
        }
        // Sweepable.
        let off = apply_override(p, "scale_down.drain", "false").unwrap();
        assert_eq!(off.scale_down.drain, None);
        let on = apply_override(&off, "scale_down.drain", "true").unwrap();
        assert_eq!(on.scale_down.drain, Some(DEFAULT_DRAIN_TIMEOUT));
        let t = apply_override(p, "scale_down.drain_timeout", "30s").unwrap();
        assert_eq!(t.scale_down.drain, Some(Duration::from_secs(30)));
        assert!(apply_override(p, "scale_down.drain", "maybe").is_err());
    }

    #[test]
    fn hash_changes_with_content() {
        let a = hash_sources(&[src("a.toml", GOOD)]);
        let b = hash_sources(&[src("a.toml", &GOOD.replace("max = 40", "max = 41"))]);
        assert_ne!(a, b);
        assert_eq!(a, hash_sources(&[src("a.toml", GOOD)]));
    }
}
