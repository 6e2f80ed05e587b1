//! Leadership leases in the regional `<prefix>-controller-leases` table (hash `lease_key`),
//! with exactly the semantics of the in-memory store: conditional writes only.
//!
//! - acquire: one UpdateItem, conditional on the item being absent (no expected version) or
//!   absent-or-at-the-expected-version; it sets the holder, its watch address (`holder_addr`,
//!   removed when it has none) and the write time (`renewed_at_ms`), and adds one to epoch and
//!   version.
//! - renew: UpdateItem adding one to the version and setting `renewed_at_ms` if `holder` and
//!   `epoch` still match.
//! - read: eventually consistent (see `read`).
//! - release: clears the holder, removes its address and adds one to the version if `holder`
//!   and `epoch` match, keeps the epoch (epochs never repeat); a lease held by someone else is
//!   left alone.
//!
//! `renewed_at_ms` and `holder_addr` are hints for the standbys (when to read next, whom to
//! watch); a missing or malformed hint is read as absent, never as a bad lease.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    ReturnConsumedCapacity, ReturnValue, ReturnValuesOnConditionCheckFailure,
};

use crate::ports::{Lease, LeaseStore, PortError, PortResult, Stamp};
use crate::schema;

use super::item::{self, BadItem, Item};
use super::meter::{Op, get_item_units, one, write_item_units};
use super::{AwsClients, Service, port_error};

pub struct DynamoLeaseStore {
    c: Arc<AwsClients>,
    table: String,
}

/// The longest watch address kept from a lease item (an `ip:port` is at most 47 bytes).
pub const MAX_ADDR_LEN: usize = 64;

pub(crate) fn parse_lease(it: &Item) -> Result<Lease, BadItem> {
    Ok(Lease {
        key: item::string(it, "lease_key")?.to_string(),
        holder: item::opt_string(it, "holder")?.unwrap_or("").to_string(),
        epoch: item::whole(it, "epoch")?,
        version: item::whole(it, "version")?,
        duration_ms: item::whole(it, "duration_ms")?,
        renewed_at_ms: item::whole(it, "renewed_at_ms")
            .ok()
            .and_then(|v| i64::try_from(v).ok()),
        addr: item::opt_string(it, "holder_addr")
            .ok()
            .flatten()
            .filter(|a| !a.is_empty() && a.len() <= MAX_ADDR_LEN)
            .map(str::to_string),
    })
}

/// What a conditional update came to.
enum Updated {
    Done(Item),
    /// The condition failed; the item as it was, if there was one.
    Refused(Option<Item>),
}

impl DynamoLeaseStore {
    pub fn new(c: Arc<AwsClients>) -> Self {
        DynamoLeaseStore {
            table: c.table(&schema::CONTROLLER_LEASES),
            c,
        }
    }

    fn lease_of(&self, it: &Item) -> PortResult<Lease> {
        parse_lease(it).map_err(|p| {
            self.c.bad.report(
                schema::CONTROLLER_LEASES.suffix,
                &item::key_text(it, &["lease_key"]),
                &p,
            );
            PortError::Permanent(format!("malformed lease item in {}: {p}", self.table))
        })
    }

    async fn update(
        &self,
        key: &str,
        update: &str,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) -> PortResult<Updated> {
        let mut req = self
            .c
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("lease_key", item::s(key))
            .update_expression(update)
            .condition_expression(condition)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        for (k, v) in names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        let result = self
            .c
            .caller
            .call(Service::DynamoDb, "UpdateItem", req.send())
            .await;
        match result {
            Ok(out) => {
                let it = out.attributes().cloned().unwrap_or_default();
                self.c.meter.book(
                    &self.table,
                    "UpdateItem",
                    Op::Write,
                    one(out.consumed_capacity()),
                    0.0,
                    write_item_units(item::item_size(&it)),
                );
                Ok(Updated::Done(it))
            }
            Err(SdkError::ServiceError(se)) => {
                if let UpdateItemError::ConditionalCheckFailedException(e) = se.err() {
                    self.c.meter.book(
                        &self.table,
                        "UpdateItem",
                        Op::Write,
                        &[],
                        0.0,
                        write_item_units(0),
                    );
                    Ok(Updated::Refused(e.item().cloned()))
                } else {
                    let e = SdkError::ServiceError(se);
                    Err(port_error(&format!("updating lease {key}"), &e))
                }
            }
            Err(e) => Err(port_error(&format!("updating lease {key}"), &e)),
        }
    }
}

const NAMES: &[(&str, &str)] = &[
    ("#k", "lease_key"),
    ("#h", "holder"),
    ("#e", "epoch"),
    ("#v", "version"),
    ("#d", "duration_ms"),
    ("#r", "renewed_at_ms"),
    ("#a", "holder_addr"),
];

/// The expression names an expression uses (DynamoDB refuses unused ones).
fn names(used: &[&str]) -> Vec<(&'static str, &'static str)> {
    NAMES
        .iter()
        .filter(|(k, _)| used.contains(k))
        .copied()
        .collect()
}

#[async_trait]
impl LeaseStore for DynamoLeaseStore {
    async fn read(&self, key: &str) -> PortResult<Option<Lease>> {
        let out = self
            .c
            .caller
            .call(
                Service::DynamoDb,
                "GetItem",
                self.c
                    .ddb
                    .get_item()
                    .table_name(&self.table)
                    .key("lease_key", item::s(key))
                    // Eventually consistent (half the price): only followers read, and a stale
                    // version can only delay a takeover, never make one succeed, because
                    // `acquire` is conditional on the version really being unchanged.
                    .consistent_read(false)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send(),
            )
            .await
            .map_err(|e| port_error(&format!("reading lease {key}"), &e))?;
        let size = out.item().map_or(0, item::item_size);
        self.c.meter.book(
            &self.table,
            "GetItem",
            Op::Read,
            one(out.consumed_capacity()),
            get_item_units(size) / 2.0,
            0.0,
        );
        match out.item() {
            None => Ok(None),
            Some(it) => self.lease_of(it).map(Some),
        }
    }

    async fn acquire(
        &self,
        key: &str,
        holder: &str,
        expected_version: Option<u64>,
        duration: Duration,
        stamp: &Stamp,
    ) -> PortResult<Lease> {
        let (condition, mut values) = match expected_version {
            None => ("attribute_not_exists(#k)", Vec::new()),
            Some(v) => (
                "attribute_not_exists(#k) OR #v = :expected",
                vec![(":expected", item::n(v))],
            ),
        };
        values.extend([
            (":h", item::s(holder)),
            (":d", item::n(duration.as_millis())),
            (":zero", item::n(0)),
            (":one", item::n(1)),
            (":r", item::n(stamp.at_ms.max(0))),
        ]);
        let set = "SET #h = :h, #d = :d, #e = if_not_exists(#e, :zero) + :one, \
                   #v = if_not_exists(#v, :zero) + :one, #r = :r";
        let update = match &stamp.addr {
            Some(a) => {
                values.push((":a", item::s(a)));
                format!("{set}, #a = :a")
            }
            None => format!("{set} REMOVE #a"),
        };
        let names = names(&["#k", "#h", "#e", "#v", "#d", "#r", "#a"]);
        match self.update(key, &update, condition, &names, values).await? {
            Updated::Done(it) => self.lease_of(&it),
            Updated::Refused(old) => {
                let who = old.as_ref().and_then(|o| parse_lease(o).ok()).map_or_else(
                    || "someone else".to_string(),
                    |l| format!("{} (version {})", l.holder, l.version),
                );
                Err(PortError::Conflict(format!("lease {key} is held by {who}")))
            }
        }
    }

    async fn renew(&self, key: &str, holder: &str, epoch: u64, at_ms: i64) -> PortResult<Lease> {
        let values = vec![
            (":h", item::s(holder)),
            (":e", item::n(epoch)),
            (":one", item::n(1)),
            (":r", item::n(at_ms.max(0))),
        ];
        match self
            .update(
                key,
                "SET #v = #v + :one, #r = :r",
                "#h = :h AND #e = :e",
                &names(&["#h", "#e", "#v", "#r"]),
                values,
            )
            .await?
        {
            Updated::Done(it) => self.lease_of(&it),
            Updated::Refused(None) => Err(PortError::Conflict(format!("lease {key} was released"))),
            Updated::Refused(Some(old)) => {
                let now = parse_lease(&old)
                    .map(|l| format!("{} at epoch {}", l.holder, l.epoch))
                    .unwrap_or_else(|_| "someone else".into());
                Err(PortError::Conflict(format!(
                    "lease {key} is now held by {now}"
                )))
            }
        }
    }

    async fn release(&self, key: &str, holder: &str, epoch: u64) -> PortResult<()> {
        let values = vec![
            (":h", item::s(holder)),
            (":e", item::n(epoch)),
            (":empty", item::s("")),
            (":one", item::n(1)),
        ];
        match self
            .update(
                key,
                "SET #h = :empty, #v = #v + :one REMOVE #a",
                "#h = :h AND #e = :e",
                &names(&["#h", "#e", "#v", "#a"]),
                values,
            )
            .await?
        {
            // Not ours (any more): nothing to give up, as in memory.
            Updated::Done(_) | Updated::Refused(_) => Ok(()),
        }
    }
}
