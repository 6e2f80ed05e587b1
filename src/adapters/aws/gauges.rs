//! Per-pool gauges in CloudWatch: one PutMetricData per pool and cycle, namespace
//! `MRGC/Autoscaler`, dimensions `Pool` and `Region`, metrics rps, serving, launching, desired
//! and utilisation (rps and utilisation only when the RPS is known).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use crate::ports::{GaugeSink, PoolGauges, PortResult};

use super::{AwsClients, Service, port_error};

pub const NAMESPACE: &str = "MRGC/Autoscaler";

pub struct CloudWatchGauges {
    c: Arc<AwsClients>,
}

impl CloudWatchGauges {
    pub fn new(c: Arc<AwsClients>) -> Self {
        CloudWatchGauges { c }
    }
}

/// The data points of one publish.
pub(crate) fn datums(pool: &str, region: &str, g: &PoolGauges) -> Vec<MetricDatum> {
    let dims = [
        Dimension::builder().name("Pool").value(pool).build(),
        Dimension::builder().name("Region").value(region).build(),
    ];
    let mut points: Vec<(&str, f64, StandardUnit)> = Vec::with_capacity(5);
    if let Some(rps) = g.rps.filter(|v| v.is_finite()) {
        points.push(("rps", rps, StandardUnit::CountSecond));
    }
    points.push(("serving", f64::from(g.serving), StandardUnit::Count));
    points.push(("launching", f64::from(g.launching), StandardUnit::Count));
    points.push(("desired", f64::from(g.desired), StandardUnit::Count));
    if let Some(u) = g.utilisation.filter(|v| v.is_finite()) {
        points.push(("utilisation", u, StandardUnit::None));
    }
    points
        .into_iter()
        .map(|(name, value, unit)| {
            MetricDatum::builder()
                .metric_name(name)
                .set_dimensions(Some(dims.to_vec()))
                .value(value)
                .unit(unit)
                .build()
        })
        .collect()
}

#[async_trait]
impl GaugeSink for CloudWatchGauges {
    async fn publish(&self, pool: &str, region: &str, gauges: &PoolGauges) -> PortResult<()> {
        self.c
            .caller
            .call(
                Service::CloudWatch,
                "PutMetricData",
                self.c
                    .cw
                    .put_metric_data()
                    .namespace(NAMESPACE)
                    .set_metric_data(Some(datums(pool, region, gauges)))
                    .send(),
            )
            .await
            .map_err(|e| port_error(&format!("publishing gauges of {pool}"), &e))?;
        Ok(())
    }
}
