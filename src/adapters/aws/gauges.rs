//! A summary of the region's pools in CloudWatch, published by the leader only. Prometheus
//! (`/metrics`) is the primary surface, with every gauge per pool; CloudWatch gets what an
//! alarm needs at a price that stays small (docs/cost.md):
//!
//! - one custom metric per region, `pool_utilisation` (namespace `MRGC/Autoscaler`, dimension
//!   `Region`): each pool's RPS per counted instance as one value of a distribution (CloudWatch's
//!   `Values`/`Counts`), so Maximum says how hot the hottest pool runs and SampleCount how many
//!   pools reported; a pool without an RPS reading sends no value;
//! - at most one PutMetricData per `every` (default 60 s, CloudWatch's standard resolution):
//!   the first cycle after the period is published, the others are not, and every pool of the
//!   region goes in that one call (up to `MAX_DATUMS_PER_CALL` data points a call).
//!
//! Per-pool metrics would cost $0.30 a month each: 5 metrics × 3 pools × 3 regions were $13.50
//! a month, and one call per pool per 30 s cycle another $23.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use tokio::time::Instant;

use crate::ports::{GaugeSink, PoolGauges, PortResult};

use super::{AwsClients, Service, port_error};

pub const NAMESPACE: &str = "MRGC/Autoscaler";

/// The metric published: one per region.
pub const UTILISATION_METRIC: &str = "pool_utilisation";

/// Custom metrics each region's controller creates (each costs $0.30 a month).
pub const METRICS_PER_REGION: usize = 1;

/// The most data points one PutMetricData takes (CloudWatch's current limit: 1,000 metrics and
/// 1 MB per request).
pub const MAX_DATUMS_PER_CALL: usize = 1000;

/// The most values one data point's `Values` list takes.
pub const MAX_VALUES_PER_DATUM: usize = 150;

/// How often the summary is published by default.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

pub struct CloudWatchGauges {
    c: Arc<AwsClients>,
    every: Duration,
    last: Mutex<Option<Instant>>,
}

impl CloudWatchGauges {
    pub fn new(c: Arc<AwsClients>, every: Duration) -> Self {
        CloudWatchGauges {
            c,
            every,
            last: Mutex::new(None),
        }
    }

    /// Whether a publish is due now, and if so take the slot.
    fn due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // A few milliseconds early still counts: cycles come exactly `interval` apart.
        let slack = Duration::from_millis(500);
        match *last {
            Some(t) if t.elapsed() + slack < self.every => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }
}

/// Publishes per month with a reconcile `interval` and a publishing period `every`: the first
/// cycle at or after each period publishes.
pub fn publishes_per_month(interval: Duration, every: Duration, month: Duration) -> f64 {
    let interval_s = interval.as_secs_f64().max(1.0);
    let cycles_per_publish = (every.as_secs_f64() / interval_s).ceil().max(1.0);
    month.as_secs_f64() / (interval_s * cycles_per_publish)
}

/// The data points of one publish for `region`: the pools' utilisations as one distribution
/// (split in points of at most `MAX_VALUES_PER_DATUM` values).
pub(crate) fn datums(region: &str, pools: &[(String, PoolGauges)]) -> Vec<MetricDatum> {
    let values: Vec<f64> = pools
        .iter()
        .filter_map(|(_, g)| g.utilisation)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .collect();
    let dims = Dimension::builder().name("Region").value(region).build();
    values
        .chunks(MAX_VALUES_PER_DATUM)
        .map(|chunk| {
            MetricDatum::builder()
                .metric_name(UTILISATION_METRIC)
                .dimensions(dims.clone())
                .set_values(Some(chunk.to_vec()))
                .set_counts(Some(vec![1.0; chunk.len()]))
                .unit(StandardUnit::None)
                .build()
        })
        .collect()
}

/// How many PutMetricData calls a batch of `datums` points takes.
pub fn calls_for(datums: usize) -> usize {
    datums.div_ceil(MAX_DATUMS_PER_CALL)
}

#[async_trait]
impl GaugeSink for CloudWatchGauges {
    async fn publish(&self, region: &str, pools: &[(String, PoolGauges)]) -> PortResult<()> {
        let all = datums(region, pools);
        if all.is_empty() || !self.due() {
            return Ok(());
        }
        for chunk in all.chunks(MAX_DATUMS_PER_CALL) {
            self.c
                .caller
                .call(
                    Service::CloudWatch,
                    "PutMetricData",
                    self.c
                        .cw
                        .put_metric_data()
                        .namespace(NAMESPACE)
                        .set_metric_data(Some(chunk.to_vec()))
                        .send(),
                )
                .await
                .map_err(|e| port_error(&format!("publishing the gauges of {region}"), &e))?;
        }
        Ok(())
    }
}
