//! What the controller's DynamoDB calls cost: requests, the capacity units DynamoDB reports
//! (`ReturnConsumedCapacity=TOTAL`, free to ask for), and the units the on-demand pricing rules
//! give for the bytes actually read and written (a local server's reported units are not
//! realistic: moto reports a constant per call).
//!
//! Pricing rules used for the model (on-demand, per request):
//! - Query, eventually consistent: 0.5 read unit per 4 KB of the items returned by each page
//!   (sizes summed, then rounded up; at least one unit).
//! - GetItem, strongly consistent: 1 read unit per 4 KB of the item (at least one).
//! - BatchGetItem, eventually consistent: 0.5 per 4 KB of each item, rounded per item.
//! - PutItem / UpdateItem: 1 write unit per 1 KB of the larger of old and new item (at least
//!   one), also when the condition fails.
//! - TransactWriteItems: twice the units of each action; a ConditionCheck reads its item
//!   (2 × 1 read unit per 4 KB).
//! - DynamoDB Streams GetRecords: one streams read request unit per call, billed apart from
//!   the table's read units. DescribeTable, DescribeStream and GetShardIterator: not billed
//!   (booked as requests only).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::ConsumedCapacity;

use crate::telemetry::Metrics;

/// Usage of one (table, operation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub requests: u64,
    /// As DynamoDB reported them.
    pub reported_read_units: f64,
    pub reported_write_units: f64,
    /// From the pricing rules and the item sizes.
    pub read_units: f64,
    pub write_units: f64,
    /// Streams read request units (GetRecords calls).
    pub stream_read_units: f64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.stream_read_units += o.stream_read_units;
        self.requests += o.requests;
        self.reported_read_units += o.reported_read_units;
        self.reported_write_units += o.reported_write_units;
        self.read_units += o.read_units;
        self.write_units += o.write_units;
    }
}

/// Whether an operation reads or writes, for attributing reported units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
}

/// Books every DynamoDB call; cheap to clone (shared state).
#[derive(Clone)]
pub struct CostMeter {
    inner: Arc<Mutex<BTreeMap<(String, String), Usage>>>,
    metrics: Metrics,
}

impl CostMeter {
    pub(crate) fn new(metrics: Metrics) -> Self {
        CostMeter {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
            metrics,
        }
    }

    /// Book one request on `table` (full table name) with modeled units.
    pub(crate) fn book(
        &self,
        table: &str,
        operation: &str,
        op: Op,
        reported: &[ConsumedCapacity],
        read_units: f64,
        write_units: f64,
    ) {
        let mut u = Usage {
            requests: 1,
            read_units,
            write_units,
            ..Usage::default()
        };
        for c in reported {
            let (r, w) = match (c.read_capacity_units(), c.write_capacity_units()) {
                (None, None) => match op {
                    Op::Read => (c.capacity_units().unwrap_or(0.0), 0.0),
                    Op::Write => (0.0, c.capacity_units().unwrap_or(0.0)),
                },
                (r, w) => (r.unwrap_or(0.0), w.unwrap_or(0.0)),
            };
            u.reported_read_units += r;
            u.reported_write_units += w;
        }
        if u.reported_read_units > 0.0 {
            self.metrics
                .dynamodb_capacity
                .with_label_values(&[table, "read"])
                .inc_by(u.reported_read_units);
        }
        if u.reported_write_units > 0.0 {
            self.metrics
                .dynamodb_capacity
                .with_label_values(&[table, "write"])
                .inc_by(u.reported_write_units);
        }
        self.add(table, operation, u);
    }

    /// Book a call that is not billed (control-plane reads of the stream set-up).
    pub(crate) fn book_call(&self, table: &str, operation: &str) {
        self.add(
            table,
            operation,
            Usage {
                requests: 1,
                ..Usage::default()
            },
        );
    }

    /// Book one GetRecords on `table`'s stream: one streams read request unit.
    pub(crate) fn book_stream_read(&self, table: &str) {
        self.add(
            table,
            "GetRecords",
            Usage {
                requests: 1,
                stream_read_units: 1.0,
                ..Usage::default()
            },
        );
    }

    fn add(&self, table: &str, operation: &str, u: Usage) {
        // Plain data, consistent after every update: a poisoned lock is safe to reuse.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .entry((table.to_string(), operation.to_string()))
            .or_default()
            .add(&u);
    }

    /// Usage by (table, operation) since the last reset.
    pub fn snapshot(&self) -> BTreeMap<(String, String), Usage> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The sum over every table and operation.
    pub fn total(&self) -> Usage {
        let mut t = Usage::default();
        for u in self.snapshot().values() {
            t.add(u);
        }
        t
    }

    pub fn reset(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A single reported capacity as a slice.
pub(crate) fn one(c: Option<&ConsumedCapacity>) -> &[ConsumedCapacity] {
    c.map(std::slice::from_ref).unwrap_or_default()
}

/// Read units of one eventually consistent Query page returning `bytes`.
pub(crate) fn query_page_units(bytes: usize) -> f64 {
    (bytes.div_ceil(4096).max(1)) as f64 * 0.5
}

/// Read units of a strongly consistent GetItem of `bytes`.
pub(crate) fn get_item_units(bytes: usize) -> f64 {
    bytes.div_ceil(4096).max(1) as f64
}

/// Write units of a PutItem / UpdateItem of `bytes`.
pub(crate) fn write_item_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pricing_rules_round_as_dynamodb_does() {
        assert_eq!(query_page_units(0), 0.5);
        assert_eq!(query_page_units(4096), 0.5);
        assert_eq!(query_page_units(4097), 1.0);
        assert_eq!(get_item_units(100), 1.0);
        assert_eq!(write_item_units(1024), 1.0);
        assert_eq!(write_item_units(1025), 2.0);
    }

    #[test]
    fn bookings_add_up_and_reported_units_reach_prometheus() {
        let m = Metrics::new("us-east-1");
        let meter = CostMeter::new(m.clone());
        let reported = ConsumedCapacity::builder()
            .table_name("t")
            .capacity_units(1.5)
            .build();
        meter.book("t", "Query", Op::Read, &[reported], 0.5, 0.0);
        meter.book("t", "Query", Op::Read, &[], 1.0, 0.0);
        meter.book("t", "PutItem", Op::Write, &[], 0.0, 1.0);
        let q = meter.snapshot()[&("t".to_string(), "Query".to_string())];
        assert_eq!(q.requests, 2);
        assert_eq!(q.read_units, 1.5);
        assert_eq!(q.reported_read_units, 1.5);
        assert_eq!(meter.total().write_units, 1.0);
        assert_eq!(
            m.dynamodb_capacity.with_label_values(&["t", "read"]).get(),
            1.5
        );
        meter.reset();
        assert_eq!(meter.total(), Usage::default());
    }
}
