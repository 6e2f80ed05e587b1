//! Prometheus metrics, all named `mrgc_autoscaler_*`. One `Metrics` per controller, with its
//! own registry, so tests and simulations never share counters. The registry carries the
//! controller's region as a constant label: every series has `region`, on Kubernetes and on a
//! plain host alike, and no metric has a `region` label of its own.

use std::collections::HashMap;

use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// This build: the crate version, the git commit and the build date (build.rs).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("MRGC_BUILD_COMMIT");
pub const BUILT: &str = env!("MRGC_BUILD_DATE");

/// The buckets of `mrgc_autoscaler_reconcile_duration_seconds`, finite up to 120 s so that a
/// p99 well above the alert's 10 s is measured, not clipped at the top bucket.
pub const RECONCILE_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The steps a drain counts (`drains_total{step}`).
pub const DRAIN_STEPS: [&str; 5] = [
    "started",
    "terminated_empty",
    "terminated_timeout",
    "returned",
    "failed",
];

/// What became of a live decision (`decision_results_total{result}`), as alerts ask for them.
pub const DECISION_RESULTS: [&str; 3] = ["applied", "failed", "skipped"];

/// One exported metric, as the reference documentation lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricInfo {
    pub name: String,
    /// counter, gauge or histogram.
    pub kind: &'static str,
    pub help: String,
    /// Its own labels (every series also carries the registry's constant `region`).
    pub labels: Vec<String>,
}

/// The Prometheus type of a collector, for `MetricInfo`.
trait Kind {
    const KIND: &'static str;
}
impl Kind for GaugeVec {
    const KIND: &'static str = "gauge";
}
impl Kind for IntGaugeVec {
    const KIND: &'static str = "gauge";
}
impl Kind for IntGauge {
    const KIND: &'static str = "gauge";
}
impl Kind for CounterVec {
    const KIND: &'static str = "counter";
}
impl Kind for IntCounterVec {
    const KIND: &'static str = "counter";
}
impl Kind for Histogram {
    const KIND: &'static str = "histogram";
}

fn kind_of<T: Kind>(_: &T) -> &'static str {
    T::KIND
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub pool_rps: GaugeVec,
    pub pool_serving: IntGaugeVec,
    pub pool_launching: IntGaugeVec,
    pub pool_held: IntGaugeVec,
    pub pool_desired: IntGaugeVec,
    pub pool_utilisation: GaugeVec,
    pub metrics_age: GaugeVec,
    pub launch_time_p90: GaugeVec,
    pub model_load_time_p90: GaugeVec,
    pub decisions: IntCounterVec,
    pub decision_results: IntCounterVec,
    pub decisions_recorded: IntCounterVec,
    pub drains: IntCounterVec,
    pub pool_draining: IntGaugeVec,
    pub shadow_decisions: IntCounterVec,
    pub shadow_pool_desired: IntGaugeVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: Histogram,
    pub bad_items: IntCounterVec,
    pub aws_calls: IntCounterVec,
    pub aws_errors: IntCounterVec,
    pub aws_throttles: IntCounterVec,
    pub dynamodb_capacity: CounterVec,
    pub leader: IntGauge,
    pub leader_epoch: IntGauge,
    pub lease_watch_open: IntGauge,
    pub lease_watches: IntCounterVec,
    pub policy_reloads: IntCounterVec,
    pub shadow_policy_reloads: IntCounterVec,
    pub policy_loaded: IntGauge,
    /// The effective bounds of the last live decision (the policy's or its region's, a
    /// scheduled minimum included).
    pub pool_min: IntGaugeVec,
    pub pool_max: IntGaugeVec,
    /// 1, labelled with this build's version, commit and date.
    pub build_info: IntGaugeVec,
    region: String,
    names: Vec<String>,
    infos: Vec<MetricInfo>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("mrgc_autoscaler_{name}"), help)
}

impl Metrics {
    /// The metrics of the controller of `region`; every series carries `region` as a constant
    /// label. (The simulator and tests pass a region of their own.)
    pub fn new(region: &str) -> Self {
        let labels: HashMap<String, String> = [("region".to_string(), region.to_string())].into();
        // "region" is a valid label name and there is no prefix: this cannot fail.
        let registry = Registry::new_custom(None, Some(labels)).expect("a valid constant label");
        let mut names: Vec<String> = Vec::new();
        let mut infos: Vec<MetricInfo> = Vec::new();
        let pool = &["pool"];
        // Each metric is registered once on a fresh registry under a unique name, so
        // construction and registration cannot fail: the expects below are invariants.
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("static metric definition");
                for d in prometheus::core::Collector::desc(&m) {
                    names.push(d.fq_name.clone());
                    infos.push(MetricInfo {
                        name: d.fq_name.clone(),
                        kind: kind_of(&m),
                        help: d.help.clone(),
                        labels: d.variable_labels.clone(),
                    });
                }
                registry
                    .register(Box::new(m.clone()))
                    .expect("unique metric name");
                m
            }};
        }
        let m = Metrics {
            pool_rps: reg!(GaugeVec::new(
                opts("pool_rps", "Requests per second the last decision used."),
                pool
            )),
            pool_serving: reg!(IntGaugeVec::new(
                opts("pool_serving", "Serving instances."),
                pool
            )),
            pool_launching: reg!(IntGaugeVec::new(
                opts("pool_launching", "Launching instances."),
                pool
            )),
            pool_held: reg!(IntGaugeVec::new(
                opts(
                    "pool_held",
                    "Instances the ASG holds that do not serve (draining, quarantined, failed)."
                ),
                pool
            )),
            pool_desired: reg!(IntGaugeVec::new(
                opts(
                    "pool_desired",
                    "Desired serving + launching instances of the last decision."
                ),
                pool
            )),
            pool_utilisation: reg!(GaugeVec::new(
                opts("pool_utilisation", "RPS per counted instance."),
                pool
            )),
            model_load_time_p90: reg!(GaugeVec::new(
                opts(
                    "model_load_time_p90_seconds",
                    "The 90th percentile of the metrics table's model_load_time over the last day (seconds)."
                ),
                pool
            )),
            launch_time_p90: reg!(GaugeVec::new(
                opts(
                    "launch_time_p90_seconds",
                    "Learned launch time (launch to first available heartbeat), 90th percentile of recent launches."
                ),
                pool
            )),
            metrics_age: reg!(GaugeVec::new(
                opts(
                    "metrics_age_seconds",
                    "Age of the newest RPS sample at decision time."
                ),
                pool
            )),
            decisions: reg!(IntCounterVec::new(
                opts("decisions_total", "Decisions by action and reason_code."),
                &["pool", "action", "reason_code"]
            )),
            decision_results: reg!(IntCounterVec::new(
                opts(
                    "decision_results_total",
                    "What became of decisions: applied, failed, skipped."
                ),
                &["pool", "result"]
            )),
            shadow_decisions: reg!(IntCounterVec::new(
                opts(
                    "shadow_decisions_total",
                    "What the shadow policy would have done, by action and reason_code (never acted on)."
                ),
                &["pool", "action", "reason_code"]
            )),
            shadow_pool_desired: reg!(IntGaugeVec::new(
                opts(
                    "shadow_pool_desired",
                    "Desired serving + launching instances the shadow policy would have set."
                ),
                pool
            )),
            decisions_recorded: reg!(IntCounterVec::new(
                opts(
                    "decisions_recorded_total",
                    "Decision records appended to the autoscaling-state table."
                ),
                pool
            )),
            reconcile_errors: reg!(IntCounterVec::new(
                opts(
                    "reconcile_errors_total",
                    "Pool reconciles that failed, by error kind."
                ),
                &["pool", "kind"]
            )),
            reconcile_duration: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "mrgc_autoscaler_reconcile_duration_seconds",
                    "Wall time of one reconcile cycle over all pools."
                )
                .buckets(RECONCILE_BUCKETS.to_vec()),
            )),
            drains: reg!(IntCounterVec::new(
                opts(
                    "drains_total",
                    "Scale-in drains by step: started (marked draining), terminated_empty (queue empty), terminated_timeout (drain timeout passed with work queued), returned (back in service: demand came back, or the group is at its minimum), failed."
                ),
                &["pool", "step"]
            )),
            pool_draining: reg!(IntGaugeVec::new(
                opts(
                    "pool_draining",
                    "Instances this controller is draining, waiting for their queues to empty."
                ),
                pool
            )),
            bad_items: reg!(IntCounterVec::new(
                opts(
                    "bad_items_total",
                    "Table items skipped because they were malformed."
                ),
                &["table", "reason"]
            )),
            aws_calls: reg!(IntCounterVec::new(
                opts("aws_calls_total", "AWS API calls."),
                &["service", "operation"]
            )),
            aws_errors: reg!(IntCounterVec::new(
                opts("aws_errors_total", "AWS API calls that failed, by kind."),
                &["service", "operation", "kind"]
            )),
            aws_throttles: reg!(IntCounterVec::new(
                opts(
                    "aws_throttles_total",
                    "AWS API calls throttled (by AWS or by our own rate limit)."
                ),
                &["service", "operation"]
            )),
            dynamodb_capacity: reg!(CounterVec::new(
                opts(
                    "dynamodb_capacity_units_total",
                    "DynamoDB capacity units consumed, as DynamoDB reports them, by table and kind (read, write)."
                ),
                &["table", "kind"]
            )),
            leader: reg!(IntGauge::with_opts(opts(
                "leader",
                "1 while this controller holds the region's lease."
            ))),
            leader_epoch: reg!(IntGauge::with_opts(opts(
                "leader_epoch",
                "Epoch of the lease this controller holds (0 when it holds none)."
            ))),
            lease_watch_open: reg!(IntGauge::with_opts(opts(
                "lease_watch_open",
                "1 while this standby holds a watch open on the leader's lease."
            ))),
            lease_watches: reg!(IntCounterVec::new(
                opts(
                    "lease_watches_total",
                    "Lease watches this standby made, by outcome (held, released, not_holder, gone, unreachable)."
                ),
                &["outcome"]
            )),
            policy_reloads: reg!(IntCounterVec::new(
                opts(
                    "policy_reloads_total",
                    "Policy reloads by result (applied, rejected)."
                ),
                &["result"]
            )),
            shadow_policy_reloads: reg!(IntCounterVec::new(
                opts(
                    "shadow_policy_reloads_total",
                    "Shadow policy reloads by result (applied, rejected)."
                ),
                &["result"]
            )),
            policy_loaded: reg!(IntGauge::with_opts(opts(
                "policy_loaded",
                "1 when a valid policy set is in force."
            ))),
            pool_min: reg!(IntGaugeVec::new(
                opts(
                    "pool_min",
                    "The effective minimum of the last decision (the policy's or its region's, raised by a scheduled minimum)."
                ),
                pool
            )),
            pool_max: reg!(IntGaugeVec::new(
                opts(
                    "pool_max",
                    "The effective maximum of the last decision (the policy's or its region's)."
                ),
                pool
            )),
            build_info: reg!(IntGaugeVec::new(
                opts(
                    "build_info",
                    "1, labelled with this controller's version, git commit and build date."
                ),
                &["version", "commit", "built"]
            )),
            region: region.to_string(),
            registry,
            names,
            infos,
        };
        m.build_info
            .with_label_values(&[VERSION, COMMIT, BUILT])
            .set(1);
        m.init_reload_counters()
    }

    /// Start the reload counters at 0 for both results, so `increase()` sees the first
    /// rejection (a series that appears at 1 has no increase).
    fn init_reload_counters(self) -> Self {
        for result in ["applied", "rejected"] {
            self.policy_reloads.with_label_values(&[result]);
            self.shadow_policy_reloads.with_label_values(&[result]);
        }
        self
    }

    /// Start a pool's alert-relevant counters at 0 (every drain step, every decision result),
    /// so `increase()` and `rate()` see its first failure: a series that appears at 1 has no
    /// increase. Call it when the pool is first reconciled; calling it again changes nothing.
    pub fn init_pool(&self, pool: &str) {
        for step in DRAIN_STEPS {
            self.drains.with_label_values(&[pool, step]);
        }
        for result in DECISION_RESULTS {
            self.decision_results.with_label_values(&[pool, result]);
        }
    }

    /// The region every series is labelled with.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The gauges and counters of one live decision.
    pub fn observe_decision(
        &self,
        pool: &str,
        d: &crate::core::Decision,
        outcome: &crate::core::Outcome,
    ) {
        let l = &[pool];
        if let Some(rps) = d.rps {
            self.pool_rps.with_label_values(l).set(rps);
        }
        self.pool_serving
            .with_label_values(l)
            .set(i64::from(d.serving));
        self.pool_launching
            .with_label_values(l)
            .set(i64::from(d.launching));
        self.pool_held.with_label_values(l).set(i64::from(d.held));
        self.pool_desired
            .with_label_values(l)
            .set(i64::from(d.desired));
        if let Some(u) = d.utilisation {
            self.pool_utilisation.with_label_values(l).set(u);
        }
        if let Some(age) = d.metrics_age_ms {
            self.metrics_age
                .with_label_values(l)
                .set(age as f64 / 1000.0);
        }
        self.pool_min.with_label_values(l).set(i64::from(d.min));
        self.pool_max.with_label_values(l).set(i64::from(d.max));
        self.decisions
            .with_label_values(&[pool, d.action.as_str(), d.reason_code.as_str()])
            .inc();
        self.decision_results
            .with_label_values(&[pool, outcome.label()])
            .inc();
    }

    /// The name of every metric this controller exports.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Every metric with its type, help and labels, in registration order.
    pub fn infos(&self) -> &[MetricInfo] {
        &self.infos
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The value of one series in a Prometheus text exposition (what `render` and `/metrics`
/// give): the sample named `name` whose label set is exactly `labels`, in any order. For tests
/// and tools that read `/metrics`; None when no such series is there.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, set) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let mut got = parse_labels(set)?;
        got.sort();
        (got == want).then(|| value.parse().ok()).flatten()
    })
}

/// `a="x",b="y"` (values escaped as the text format escapes them).
fn parse_labels(set: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = set;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((k.trim_start_matches(',').to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_found_by_its_label_set_in_any_order() {
        let text = "# HELP x y\nm_total{b=\"2\",a=\"1\"} 3\nm_total{a=\"1\"} 4\nn 5\nq{v=\"a\\\"b,c\"} 6\n";
        assert_eq!(
            sample(text, "m_total", &[("a", "1"), ("b", "2")]),
            Some(3.0)
        );
        assert_eq!(sample(text, "m_total", &[("a", "1")]), Some(4.0));
        assert_eq!(sample(text, "n", &[]), Some(5.0));
        assert_eq!(sample(text, "q", &[("v", "a\"b,c")]), Some(6.0));
        assert_eq!(sample(text, "m_total", &[("b", "2")]), None);
        assert_eq!(sample(text, "m", &[]), None);
    }

    #[test]
    fn every_series_carries_the_region_and_no_metric_has_its_own() {
        let m = Metrics::new("eu-west-1");
        for i in m.infos() {
            assert!(
                !i.labels.iter().any(|l| l == "region"),
                "{} has a region label of its own",
                i.name
            );
        }
        m.init_pool("model-a");
        m.reconcile_duration.observe(0.2);
        let text = m.render();
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(!series.is_empty());
        for l in series {
            assert!(l.contains("region=\"eu-west-1\""), "{l}");
        }
    }

    #[test]
    fn build_info_is_one_with_the_version_commit_and_date() {
        let text = Metrics::new("us-east-1").render();
        let labels = [
            ("version", VERSION),
            ("commit", COMMIT),
            ("built", BUILT),
            ("region", "us-east-1"),
        ];
        assert_eq!(
            sample(&text, "mrgc_autoscaler_build_info", &labels),
            Some(1.0),
            "{text}"
        );
        assert!(
            !COMMIT.is_empty() && BUILT.ends_with('Z') && BUILT.len() == 20,
            "{BUILT}"
        );
    }

    #[test]
    fn a_pools_failure_counters_start_at_zero() {
        let m = Metrics::new("us-east-1");
        m.init_pool("model-a");
        let text = m.render();
        let pool = |k: &'static str, v: &'static str| {
            [("pool", "model-a"), ("region", "us-east-1"), (k, v)]
        };
        for step in DRAIN_STEPS {
            assert_eq!(
                sample(&text, "mrgc_autoscaler_drains_total", &pool("step", step)),
                Some(0.0),
                "{text}"
            );
        }
        for result in DECISION_RESULTS {
            assert_eq!(
                sample(
                    &text,
                    "mrgc_autoscaler_decision_results_total",
                    &pool("result", result)
                ),
                Some(0.0),
                "{text}"
            );
        }
    }

    #[test]
    fn every_metric_is_described() {
        let m = Metrics::new("us-east-1");
        assert_eq!(m.infos().len(), m.names().len());
        for i in m.infos() {
            assert!(i.name.starts_with("mrgc_autoscaler_"), "{}", i.name);
            assert!(!i.help.is_empty(), "{} has no help", i.name);
            assert!(["counter", "gauge", "histogram"].contains(&i.kind));
        }
        for n in [
            "mrgc_autoscaler_pool_min",
            "mrgc_autoscaler_pool_max",
            "mrgc_autoscaler_build_info",
        ] {
            assert!(m.names().iter().any(|x| x == n), "{n}");
        }
    }
}
