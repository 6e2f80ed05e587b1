//! Scenario files: what to replay, through which policies, on which fleet model.
//!
//! ```toml
//! name = "servegen 14 days"
//! seed = 42
//! start = "2025-01-06T00:00:00Z"   # virtual time of t = 0 (scheduled minimums are UTC)
//!
//! [model]
//! launch_time = "6m"                # boot + model load
//! launch_jitter = "30s"             # uniform 0..jitter added per launch (seeded)
//! instance_max_rps = 2.0            # an instance saturates here
//! queue_per_instance = 10           # requests an instance can queue
//! price_per_instance_hour = 4.10    # USD, for the cost column
//! interval = "30s"                  # the controller's reconcile interval
//! arrivals = "poisson"              # or "exact": arrive at the rate, no noise
//!
//! [[pool]]
//! name = "model-a"
//! trace = "traces/servegen-language-m-large/rps.csv"   # relative to this file
//! mean_rps = 75                     # or: scale = 1.0
//! offset = "0s"                     # start this far into the trace (wrapping)
//! policies = ["../policies/model-a.toml"]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::policy::{self, Band, PoolPolicy};

use crate::replay::trace::Trace;
use crate::replay::traffic::Scale;

/// The fleet and cost model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub launch_time: Duration,
    pub launch_jitter: Duration,
    pub instance_max_rps: f64,
    pub queue_per_instance: f64,
    pub price_per_instance_hour: f64,
    pub interval: Duration,
    /// Draw Poisson arrivals from the rate (true), or arrive exactly at the rate, carrying
    /// fractions (false: for hand-checked cases and for separating noise from shape).
    pub poisson: bool,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            launch_time: Duration::from_secs(360),
            launch_jitter: Duration::ZERO,
            instance_max_rps: 2.0,
            queue_per_instance: 10.0,
            price_per_instance_hour: 1.0,
            interval: Duration::from_secs(30),
            poisson: true,
        }
    }
}

/// One pool of a scenario, resolved: its trace, scaling and the policies to compare.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub name: String,
    pub trace: Trace,
    pub scale: Scale,
    pub offset_s: u64,
    /// Policies to run, each labelled (file stem, or the sweep point).
    pub policies: Vec<(String, PoolPolicy)>,
    /// The pool's launch time if it differs from the model's.
    pub launch_time: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub start_ms: i64,
    pub region: String,
    pub model: Model,
    pub pools: Vec<PoolSpec>,
    /// Baselines to run beside the policies.
    pub baselines: Vec<String>,
    /// The band the baselines (and the oracle) aim for: the product's target, fixed so that
    /// tuning a policy never moves the yardsticks. Default 1.0–1.5, setpoint 1.25.
    pub baseline_band: Band,
}

/// The product's target band: 1.0–1.5 RPS per instance, setpoint in the middle.
pub const REFERENCE_BAND: Band = Band {
    low: 1.0,
    high: 1.5,
    setpoint: 1.25,
    headroom: None,
};

pub const BASELINES: [&str; 4] = ["oracle", "static-peak", "hpa", "target-tracking"];

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{0}")]
    Trace(#[from] crate::replay::trace::TraceError),
    #[error("{0}")]
    Policy(#[from] policy::PolicyError),
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    #[serde(default = "default_seed")]
    seed: u64,
    start: Option<String>,
    #[serde(default = "default_region")]
    region: String,
    #[serde(default)]
    model: RawModel,
    #[serde(default)]
    baselines: Option<Vec<String>>,
    /// [low, high] of the baselines' band (setpoint in the middle).
    baseline_band: Option<[f64; 2]>,
    #[serde(rename = "pool")]
    pools: Vec<RawPool>,
}

fn default_seed() -> u64 {
    1
}

fn default_region() -> String {
    "us-east-1".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawModel {
    launch_time: Option<String>,
    launch_jitter: Option<String>,
    instance_max_rps: Option<f64>,
    queue_per_instance: Option<f64>,
    price_per_instance_hour: Option<f64>,
    interval: Option<String>,
    arrivals: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: String,
    trace: String,
    mean_rps: Option<f64>,
    scale: Option<f64>,
    offset: Option<String>,
    policies: Vec<String>,
    launch_time: Option<String>,
}

/// Default virtual start: Monday 2025-01-06 00:00 UTC.
pub const DEFAULT_START_MS: i64 = 1_736_121_600_000;

fn duration(file: &str, what: &str, s: &str) -> Result<Duration, ScenarioError> {
    humantime::parse_duration(s).map_err(|e| ScenarioError::Invalid {
        file: file.to_string(),
        message: format!("{what} = \"{s}\" is not a duration ({e}); write e.g. \"6m\""),
    })
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Parse {
            file: file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&file, &text, base)
    }

    /// Parse scenario text; relative paths resolve against `base`.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ScenarioError::Parse {
                file: format!("{file}:{line}:{col}"),
                message: e.message().trim().to_string(),
            }
        })?;
        let invalid = |message: String| ScenarioError::Invalid {
            file: file.to_string(),
            message,
        };
        let mut model = Model::default();
        if let Some(s) = &raw.model.launch_time {
            model.launch_time = duration(file, "model.launch_time", s)?;
        }
        if let Some(s) = &raw.model.launch_jitter {
            model.launch_jitter = duration(file, "model.launch_jitter", s)?;
        }
        if let Some(s) = &raw.model.interval {
            model.interval = duration(file, "model.interval", s)?;
            if model.interval.as_secs() == 0 || model.interval.subsec_millis() != 0 {
                return Err(invalid(
                    "model.interval must be a whole number of seconds ≥ 1".into(),
                ));
            }
        }
        for (name, v, target) in [
            (
                "instance_max_rps",
                raw.model.instance_max_rps,
                &mut model.instance_max_rps,
            ),
            (
                "queue_per_instance",
                raw.model.queue_per_instance,
                &mut model.queue_per_instance,
            ),
            (
                "price_per_instance_hour",
                raw.model.price_per_instance_hour,
                &mut model.price_per_instance_hour,
            ),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 || (name == "instance_max_rps" && v == 0.0) {
                    return Err(invalid(format!(
                        "model.{name} = {v} must be a positive number"
                    )));
                }
                *target = v;
            }
        }
        match raw.model.arrivals.as_deref() {
            None | Some("poisson") => {}
            Some("exact") => model.poisson = false,
            Some(other) => {
                return Err(invalid(format!(
                    "model.arrivals = \"{other}\": choose \"poisson\" or \"exact\""
                )));
            }
        }
        let start_ms = match &raw.start {
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| invalid(format!("start = \"{s}\" is not an RFC 3339 time ({e})")))?
                .timestamp_millis(),
            None => DEFAULT_START_MS,
        };
        let baselines = raw
            .baselines
            .unwrap_or_else(|| BASELINES.iter().map(|s| s.to_string()).collect());
        for b in &baselines {
            if !BASELINES.contains(&b.as_str()) {
                return Err(invalid(format!(
                    "unknown baseline `{b}`; choose from {}",
                    BASELINES.join(", ")
                )));
            }
        }
        let baseline_band = match raw.baseline_band {
            None => REFERENCE_BAND,
            Some([low, high]) if low > 0.0 && low < high && high <= policy::MAX_BAND_RPS => Band {
                low,
                high,
                setpoint: (low + high) / 2.0,
                headroom: None,
            },
            Some([low, high]) => {
                return Err(invalid(format!(
                    "baseline_band = [{low}, {high}] must satisfy 0 < low < high ≤ {}",
                    policy::MAX_BAND_RPS
                )));
            }
        };
        if raw.pools.is_empty() {
            return Err(invalid("the scenario has no [[pool]]".into()));
        }
        let mut pools = Vec::new();
        for p in raw.pools {
            let scale = match (p.mean_rps, p.scale) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "pool {}: give mean_rps or scale, not both",
                        p.name
                    )));
                }
                (Some(m), None) if m.is_finite() && m >= 0.0 => Scale::Mean(m),
                (None, Some(k)) if k.is_finite() && k >= 0.0 => Scale::Factor(k),
                (None, None) => Scale::Factor(1.0),
                _ => {
                    return Err(invalid(format!(
                        "pool {}: mean_rps/scale must be ≥ 0",
                        p.name
                    )));
                }
            };
            let trace = Trace::load(&base.join(&p.trace))?;
            let offset_s = match &p.offset {
                Some(s) => duration(file, "offset", s)?.as_secs(),
                None => 0,
            };
            let launch_time = match &p.launch_time {
                Some(s) => Some(duration(file, "launch_time", s)?),
                None => None,
            };
            if p.policies.is_empty() {
                return Err(invalid(format!(
                    "pool {}: list at least one policy file",
                    p.name
                )));
            }
            let mut policies = Vec::new();
            for f in &p.policies {
                let path = base.join(f);
                let set = crate::app::policy_files::load_paths(std::slice::from_ref(&path))?;
                let Some(pol) = set.pools.values().next() else {
                    return Err(invalid(format!("{f} defines no pool")));
                };
                let mut pol = pol.clone();
                if pol.region(&raw.region).is_none() {
                    return Err(invalid(format!(
                        "{f}: pool {} has no [regions.{}] section",
                        pol.pool, raw.region
                    )));
                }
                pol.pool = p.name.clone();
                let label = path
                    .file_stem()
                    .map_or_else(|| f.clone(), |s| s.to_string_lossy().to_string());
                policies.push((label, pol));
            }
            pools.push(PoolSpec {
                name: p.name,
                trace,
                scale,
                offset_s,
                policies,
                launch_time,
            });
        }
        Ok(Scenario {
            name: raw.name.unwrap_or_else(|| file.to_string()),
            seed: raw.seed,
            start_ms,
            region: raw.region,
            model,
            pools,
            baselines,
            baseline_band,
        })
    }

    /// A scenario without a file: one trace through every policy in `policies`.
    pub fn quick(
        trace_path: &Path,
        policies: &[PathBuf],
        pool: Option<&str>,
        mean_rps: Option<f64>,
        launch_time: Option<Duration>,
    ) -> Result<Scenario, ScenarioError> {
        let trace = Trace::load(trace_path)?;
        let set = crate::app::policy_files::load_paths(policies)?;
        let scale = mean_rps.map_or(Scale::Mean(75.0), Scale::Mean);
        Self::with_trace(
            trace,
            &trace_path.display().to_string(),
            &set,
            pool,
            scale,
            launch_time,
            &default_region(),
        )
    }

    /// A scenario of one trace replayed through the policies of `set` (one pool each, or
    /// only `pool`) in `region`. `origin` names where the trace came from, for errors.
    pub fn with_trace(
        trace: Trace,
        origin: &str,
        set: &crate::core::PolicySet,
        pool: Option<&str>,
        scale: Scale,
        launch_time: Option<Duration>,
        region: &str,
    ) -> Result<Scenario, ScenarioError> {
        let region = region.to_string();
        let mut model = Model::default();
        if let Some(l) = launch_time {
            model.launch_time = l;
        }
        let mut pools = Vec::new();
        for p in set.pools.values() {
            if pool.is_some_and(|x| x != p.pool) || p.region(&region).is_none() {
                continue;
            }
            pools.push(PoolSpec {
                name: p.pool.clone(),
                trace: trace.clone(),
                scale,
                offset_s: 0,
                policies: vec![(
                    p.source
                        .file_stem()
                        .map_or_else(|| p.pool.clone(), |s| s.to_string_lossy().to_string()),
                    p.clone(),
                )],
                launch_time: None,
            });
        }
        if pools.is_empty() {
            return Err(ScenarioError::Invalid {
                file: origin.to_string(),
                message: match pool {
                    Some(p) => format!("no policy for pool `{p}` in {region}"),
                    None => format!("no policy has a section for {region}"),
                },
            });
        }
        Ok(Scenario {
            name: trace.name.clone(),
            seed: default_seed(),
            start_ms: DEFAULT_START_MS,
            region,
            model,
            pools,
            baselines: BASELINES.iter().map(|s| s.to_string()).collect(),
            baseline_band: REFERENCE_BAND,
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_their_line() {
        let e = Scenario::parse(
            "s.toml",
            "name = \"x\"\nsede = 1\n[[pool]]\nname = \"a\"\ntrace = \"t\"\npolicies = []\n",
            Path::new("."),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("s.toml:2:1: unknown field `sede`"), "{s}");
    }

    #[test]
    fn bad_values_are_named() {
        let text = "[model]\nlaunch_time = \"soon\"\n[[pool]]\nname = \"a\"\ntrace = \"t\"\npolicies = [\"p\"]\n";
        let s = Scenario::parse("s.toml", text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("model.launch_time = \"soon\" is not a duration"),
            "{s}"
        );
    }
}
