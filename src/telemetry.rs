//! Prometheus metrics, all named `mrgc_autoscaler_*`. One `Metrics` per controller, with its
//! own registry, so tests and simulations never share counters.

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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
    pub reconcile_duration: HistogramVec,
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
    names: Vec<String>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("mrgc_autoscaler_{name}"), help)
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let mut names: Vec<String> = Vec::new();
        let pool = &["pool", "region"];
        // Each metric is registered once on a fresh registry under a unique name, so
        // construction and registration cannot fail: the expects below are invariants.
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("static metric definition");
                for d in prometheus::core::Collector::desc(&m) {
                    names.push(d.fq_name.clone());
                }
                registry
                    .register(Box::new(m.clone()))
                    .expect("unique metric name");
                m
            }};
        }
        Metrics {
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
                &["pool", "region", "action", "reason_code"]
            )),
            decision_results: reg!(IntCounterVec::new(
                opts(
                    "decision_results_total",
                    "What became of decisions: applied, failed, skipped."
                ),
                &["pool", "region", "result"]
            )),
            shadow_decisions: reg!(IntCounterVec::new(
                opts(
                    "shadow_decisions_total",
                    "What the shadow policy would have done, by action and reason_code (never acted on)."
                ),
                &["pool", "region", "action", "reason_code"]
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
                &["pool", "region", "kind"]
            )),
            reconcile_duration: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "mrgc_autoscaler_reconcile_duration_seconds",
                    "Wall time of one reconcile cycle over all pools."
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
                ]),
                &["region"],
            )),
            drains: reg!(IntCounterVec::new(
                opts(
                    "drains_total",
                    "Scale-in drains by step: started (marked draining), terminated_empty (queue empty), terminated_timeout (drain timeout passed with work queued), returned (back in service: demand came back, or the group is at its minimum), failed."
                ),
                &["pool", "region", "step"]
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
            registry,
            names,
        }
        .init_reload_counters()
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

    /// The name of every metric this controller exports.
    /// The gauges and counters of one live decision.
    pub fn observe_decision(
        &self,
        pool: &str,
        region: &str,
        d: &crate::core::Decision,
        outcome: &crate::core::Outcome,
    ) {
        let l = &[pool, region];
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
        self.decisions
            .with_label_values(&[pool, region, d.action.as_str(), d.reason_code.as_str()])
            .inc();
        self.decision_results
            .with_label_values(&[pool, region, outcome.label()])
            .inc();
    }

    pub fn names(&self) -> &[String] {
        &self.names
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
