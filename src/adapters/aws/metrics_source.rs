//! Samples from the metrics table: one Query on `metric_name = "<metric>#<pool>#<region>"`
//! (`rps` once per pool per cycle; `model_load_time` rarely) with `timestamp` (Unix seconds,
//! the end of the minute the sample covers) within the window.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::Sample;
use crate::ports::{MetricsSource, PortResult};
use crate::schema;

use super::item::{self, Item};
use super::{AwsClients, query_pages};

pub struct DynamoMetricsSource {
    c: Arc<AwsClients>,
    table: String,
}

impl DynamoMetricsSource {
    pub fn new(c: Arc<AwsClients>) -> Self {
        let table = c.table(&schema::METRICS);
        DynamoMetricsSource { c, table }
    }
}

/// `from_ms < t * 1000 <= to_ms` as whole seconds bounds, or None when the window is empty.
fn second_bounds(from_ms: i64, to_ms: i64) -> Option<(i64, i64)> {
    let lo = from_ms.div_euclid(1000) + 1;
    let hi = to_ms.div_euclid(1000);
    (lo <= hi).then_some((lo, hi))
}

#[async_trait]
impl MetricsSource for DynamoMetricsSource {
    async fn samples(
        &self,
        metric: &str,
        pool: &str,
        region: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> PortResult<Vec<Sample>> {
        let Some((lo, hi)) = second_bounds(from_ms, to_ms) else {
            return Ok(Vec::new());
        };
        let name = crate::schema::metric_key(metric, pool, region);
        let items = query_pages(
            &self.c,
            &self.table,
            &format!("reading {name}"),
            None,
            || {
                self.c
                    .ddb
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("#m = :m AND #ts BETWEEN :lo AND :hi")
                    .expression_attribute_names("#m", "metric_name")
                    .expression_attribute_names("#ts", "timestamp")
                    .expression_attribute_values(":m", item::s(&name))
                    .expression_attribute_values(":lo", item::n(lo))
                    .expression_attribute_values(":hi", item::n(hi))
            },
        )
        .await?;
        let mut samples = Vec::with_capacity(items.len());
        for it in &items {
            match parse_sample(it) {
                Ok(s) => samples.push(s),
                Err(p) => self.c.bad.report(
                    schema::METRICS.suffix,
                    &item::key_text(it, &["metric_name", "timestamp"]),
                    &p,
                ),
            }
        }
        samples.sort_by_key(|s| s.at_ms);
        Ok(samples)
    }
}

pub(crate) fn parse_sample(it: &Item) -> Result<Sample, item::BadItem> {
    let at_ms = item::unix_secs_as_ms(it, "timestamp")?;
    let rps = item::number(it, "value")?;
    if rps < 0.0 {
        return Err(item::BadItem {
            reason: item::BadReason::OutOfRange,
            attribute: "value".into(),
            detail: format!("{rps} is negative"),
        });
    }
    Ok(Sample { at_ms, rps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_are_exclusive_at_the_start_and_whole_seconds() {
        assert_eq!(second_bounds(120_000, 240_000), Some((121, 240)));
        assert_eq!(second_bounds(120_500, 240_999), Some((121, 240)));
        assert_eq!(second_bounds(5_000, 5_999), None);
        assert_eq!(second_bounds(10_000, 5_000), None);
    }
}
