//! The autoscaling-state table: decision records, appended without ever overwriting one, and
//! read back newest first.
//!
//! The sort key is a [`DecisionKey`]: Unix seconds with a fraction that carries the
//! millisecond, the region and a slot, so the seed's `timestamp > :t` still works and three
//! regions deciding in the same millisecond write three items. A put is conditional on
//! `attribute_not_exists(timestamp)`; on a collision the next slot is tried. A collision with
//! an identical item is this controller's own earlier attempt (an SDK retry after a lost
//! response) and counts as written, so retries do not duplicate records.
//!
//! With a fence, the put runs in a TransactWriteItems with a ConditionCheck on the lease item
//! (`holder = :h AND epoch = :e`): a deposed leader cannot append.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnConsumedCapacity,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use crate::core::{Action, DecisionKey, DecisionRecord, Outcome, ReasonCode};
use crate::ports::{DecisionLog, Fence, PortError, PortResult};
use crate::schema;

use super::item::{self, BadItem, BadReason, Item};
use super::meter::{Op, get_item_units, one, write_item_units};
use super::{AwsClients, Service, error, port_error, query_pages};

pub struct DynamoDecisionLog {
    c: Arc<AwsClients>,
    table: String,
    leases: String,
}

/// How one conditional write ended.
enum Written {
    Yes,
    /// The key is taken; the item there, when DynamoDB returned it.
    Collision(Option<Item>),
}

/// The idempotency token of a fenced append: the same for every retry of one record's write
/// (the SDK's retries after a lost response resend it), so DynamoDB answers a retry of a
/// transaction that already succeeded with success instead of a failed condition — which
/// would otherwise read like a leadership conflict. Distinct per table and key (≤ 36 chars).
pub(crate) fn request_token(table: &str, it: &Item) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(table.as_bytes());
    for key in ["model_pool", "timestamp"] {
        h.update([0u8]);
        match it.get(key) {
            Some(AttributeValue::S(v)) | Some(AttributeValue::N(v)) => h.update(v.as_bytes()),
            _ => {}
        }
    }
    hex::encode(&h.finalize()[..16])
}

impl DynamoDecisionLog {
    pub fn new(c: Arc<AwsClients>) -> Self {
        DynamoDecisionLog {
            table: c.table(&schema::AUTOSCALING_STATE),
            leases: c.table(&schema::CONTROLLER_LEASES),
            c,
        }
    }

    async fn put(&self, it: &Item) -> PortResult<Written> {
        let units = write_item_units(item::item_size(it));
        let result = self
            .c
            .caller
            .call(
                Service::DynamoDb,
                "PutItem",
                self.c
                    .ddb
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(it.clone()))
                    .condition_expression("attribute_not_exists(#ts)")
                    .expression_attribute_names("#ts", "timestamp")
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send(),
            )
            .await;
        match result {
            Ok(out) => {
                self.c.meter.book(
                    &self.table,
                    "PutItem",
                    Op::Write,
                    one(out.consumed_capacity()),
                    0.0,
                    units,
                );
                Ok(Written::Yes)
            }
            Err(SdkError::ServiceError(se)) => {
                if let PutItemError::ConditionalCheckFailedException(e) = se.err() {
                    self.c
                        .meter
                        .book(&self.table, "PutItem", Op::Write, &[], 0.0, units);
                    Ok(Written::Collision(e.item().cloned()))
                } else {
                    let e = SdkError::ServiceError(se);
                    Err(port_error(&format!("appending to {}", self.table), &e))
                }
            }
            Err(e) => Err(port_error(&format!("appending to {}", self.table), &e)),
        }
    }

    async fn put_fenced(&self, it: &Item, fence: &Fence) -> PortResult<Written> {
        let check = ConditionCheck::builder()
            .table_name(&self.leases)
            .key("lease_key", item::s(&fence.lease_key))
            .condition_expression("#h = :h AND #e = :e")
            .expression_attribute_names("#h", "holder")
            .expression_attribute_names("#e", "epoch")
            .expression_attribute_values(":h", item::s(&fence.holder))
            .expression_attribute_values(":e", item::n(fence.epoch))
            .build()
            .map_err(|e| PortError::Permanent(format!("building the lease check: {e}")))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(it.clone()))
            .condition_expression("attribute_not_exists(#ts)")
            .expression_attribute_names("#ts", "timestamp")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| PortError::Permanent(format!("building the put: {e}")))?;
        let units = 2.0 * write_item_units(item::item_size(it));
        let result = self
            .c
            .caller
            .call(
                Service::DynamoDb,
                "TransactWriteItems",
                self.c
                    .ddb
                    .transact_write_items()
                    .client_request_token(request_token(&self.table, it))
                    .transact_items(TransactWriteItem::builder().condition_check(check).build())
                    .transact_items(TransactWriteItem::builder().put(put).build())
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send(),
            )
            .await;
        let book = |reported: &[aws_sdk_dynamodb::types::ConsumedCapacity]| {
            self.c.meter.book(
                &self.table,
                "TransactWriteItems",
                Op::Write,
                reported,
                2.0 * get_item_units(0),
                units,
            );
        };
        match result {
            Ok(out) => {
                book(out.consumed_capacity());
                Ok(Written::Yes)
            }
            Err(SdkError::ServiceError(se)) => {
                if let TransactWriteItemsError::TransactionCanceledException(e) = se.err() {
                    book(&[]);
                    let reasons = e.cancellation_reasons();
                    let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
                    if code(0) == "ConditionalCheckFailed" {
                        return Err(PortError::Conflict(format!(
                            "lease {} is no longer held by {} at epoch {}",
                            fence.lease_key, fence.holder, fence.epoch
                        )));
                    }
                    if code(1) == "ConditionalCheckFailed" {
                        return Ok(Written::Collision(
                            reasons.get(1).and_then(|r| r.item()).cloned(),
                        ));
                    }
                    let codes = format!("[{}, {}]", code(0), code(1));
                    return Err(
                        match error::from_code(Some("TransactionCanceledException"), &codes, 400) {
                            PortError::Conflict(m) | PortError::Permanent(m) => {
                                PortError::Permanent(format!("appending to {}: {m}", self.table))
                            }
                            other => other,
                        },
                    );
                }
                let e = SdkError::ServiceError(se);
                Err(port_error(&format!("appending to {}", self.table), &e))
            }
            Err(e) => Err(port_error(&format!("appending to {}", self.table), &e)),
        }
    }
}

#[async_trait]
impl DecisionLog for DynamoDecisionLog {
    async fn append(
        &self,
        record: &DecisionRecord,
        fence: Option<&Fence>,
    ) -> PortResult<DecisionKey> {
        let mut rec = record.clone();
        for slot in record.key.slot()..10 {
            rec.key = record.key.with_slot(slot);
            let it = record_to_item(&rec);
            let written = match fence {
                None => self.put(&it).await?,
                Some(f) => self.put_fenced(&it, f).await?,
            };
            match written {
                Written::Yes => return Ok(rec.key),
                Written::Collision(Some(existing)) if same_item(&existing, &it) => {
                    return Ok(rec.key);
                }
                Written::Collision(_) => {
                    tracing::debug!(
                        pool = %rec.model_pool,
                        key = %rec.key.to_number(),
                        "decision key taken; trying the next slot"
                    );
                }
            }
        }
        Err(PortError::Conflict(format!(
            "ten records for {} in one millisecond in {}",
            record.model_pool, record.region
        )))
    }

    async fn settle(&self, record: &DecisionRecord, outcome: &Outcome) -> PortResult<()> {
        let result = self
            .c
            .caller
            .call(
                Service::DynamoDb,
                "UpdateItem",
                self.c
                    .ddb
                    .update_item()
                    .table_name(&self.table)
                    .key("model_pool", item::s(&record.model_pool))
                    .key("timestamp", AttributeValue::N(record.key.to_number()))
                    .update_expression("SET #r = :r")
                    .condition_expression("#r = :pending")
                    .expression_attribute_names("#r", "result")
                    .expression_attribute_values(":r", item::s(outcome.to_attr()))
                    .expression_attribute_values(":pending", item::s(Outcome::Pending.to_attr()))
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send(),
            )
            .await;
        let consumed = result.as_ref().ok().and_then(|o| o.consumed_capacity());
        // A record is well under 1 KB: one write unit.
        self.c.meter.book(
            &self.table,
            "UpdateItem",
            Op::Write,
            one(consumed),
            0.0,
            write_item_units(0),
        );
        result.map(|_| ()).map_err(|e| {
            port_error(
                &format!(
                    "settling decision {} of {}",
                    record.key.to_number(),
                    record.model_pool
                ),
                &e,
            )
        })
    }

    async fn history(
        &self,
        pool: &str,
        region: Option<&str>,
        since_ms: i64,
        limit: usize,
    ) -> PortResult<Vec<DecisionRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = since_ms.saturating_add(1);
        let from = DecisionKey {
            secs: after.div_euclid(1000),
            frac: after.rem_euclid(1000) as u32 * 10_000,
        };
        // The page limit applies before the region filter: read more per page when filtering.
        let page = if region.is_some() {
            limit.saturating_mul(3)
        } else {
            limit
        }
        .clamp(1, 1_000) as i32;
        let items = query_pages(
            &self.c,
            &self.table,
            &format!("reading the decisions of {pool}"),
            Some(limit),
            || {
                let q = self
                    .c
                    .ddb
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("#p = :p AND #ts >= :t")
                    .expression_attribute_names("#p", "model_pool")
                    .expression_attribute_names("#ts", "timestamp")
                    .expression_attribute_values(":p", item::s(pool))
                    .expression_attribute_values(":t", AttributeValue::N(from.to_number()))
                    .scan_index_forward(false)
                    .limit(page);
                match region {
                    Some(r) => q
                        .filter_expression("#r = :r")
                        .expression_attribute_names("#r", "region")
                        .expression_attribute_values(":r", item::s(r)),
                    None => q,
                }
            },
        )
        .await?;
        let mut out = Vec::with_capacity(items.len().min(limit));
        for it in &items {
            match record_from_item(it) {
                Ok(r) if r.at_ms() > since_ms && region.is_none_or(|x| r.region == x) => {
                    out.push(r)
                }
                Ok(_) => {}
                Err(p) => self.c.bad.report(
                    schema::AUTOSCALING_STATE.suffix,
                    &item::key_text(it, &["model_pool", "timestamp"]),
                    &p,
                ),
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// Whether two items hold the same values (numbers compared as numbers: DynamoDB may return
/// `1.50` as `1.5`).
fn same_item(a: &Item, b: &Item) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w)))
}

fn same_value(a: &AttributeValue, b: &AttributeValue) -> bool {
    match (a, b) {
        (AttributeValue::N(x), AttributeValue::N(y)) => {
            x == y || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(p), Ok(q)) if p == q)
        }
        (AttributeValue::L(x), AttributeValue::L(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        _ => a == b,
    }
}

/// The item of a record: the seed's attributes plus the auditor's.
pub fn record_to_item(r: &DecisionRecord) -> Item {
    let mut it = Item::new();
    let mut put = |k: &str, v: AttributeValue| {
        it.insert(k.to_string(), v);
    };
    put("model_pool", item::s(&r.model_pool));
    put("timestamp", AttributeValue::N(r.key.to_number()));
    put("region", item::s(&r.region));
    put("current_capacity", item::n(r.current_capacity));
    put("desired_capacity", item::n(r.desired_capacity));
    put("min_capacity", item::n(r.min_capacity));
    put("max_capacity", item::n(r.max_capacity));
    if let Some(rps) = r.current_rps {
        put("current_rps", item::n_f64(rps));
    }
    put("target_rps", item::n_f64(r.target_rps));
    put("scaling_action", item::s(r.scaling_action.as_str()));
    put("reason", item::s(&r.reason));
    put("ttl", item::n(r.ttl));
    put("reason_code", item::s(r.reason_code.as_str()));
    put(
        "rps_window",
        AttributeValue::L(r.rps_window.iter().map(|v| item::n_f64(*v)).collect()),
    );
    put("serving", item::n(r.serving));
    put("launching", item::n(r.launching));
    put("held", item::n(r.held));
    put("recommendation", item::n(r.recommendation));
    put("asg_desired", item::n(r.asg_desired));
    put("controller_id", item::s(&r.controller_id));
    put("leader_epoch", item::n(r.leader_epoch));
    put("policy_hash", item::s(&r.policy_hash));
    put("dry_run", AttributeValue::Bool(r.dry_run));
    put("result", item::s(r.result.to_attr()));
    it
}

/// A record from its item, checked attribute by attribute.
pub fn record_from_item(it: &Item) -> Result<DecisionRecord, BadItem> {
    let key_text = item::get_raw_number(it, "timestamp");
    let key = match key_text.as_deref().map(DecisionKey::parse) {
        Some(Some(k)) => k,
        Some(None) => {
            return Err(BadItem {
                reason: BadReason::OutOfRange,
                attribute: "timestamp".into(),
                detail: format!("{key_text:?} is not a decision key"),
            });
        }
        None => {
            item::number(it, "timestamp")?;
            return Err(BadItem {
                reason: BadReason::WrongType,
                attribute: "timestamp".into(),
                detail: "expected a number (N)".into(),
            });
        }
    };
    let result_text = item::string(it, "result")?;
    let result = Outcome::parse(result_text).ok_or_else(|| BadItem {
        reason: BadReason::UnknownState,
        attribute: "result".into(),
        detail: format!("unknown result {result_text:?}"),
    })?;
    Ok(DecisionRecord {
        model_pool: item::string(it, "model_pool")?.to_string(),
        key,
        region: item::string(it, "region")?.to_string(),
        current_capacity: item::count(it, "current_capacity")?,
        desired_capacity: item::count(it, "desired_capacity")?,
        min_capacity: item::count(it, "min_capacity")?,
        max_capacity: item::count(it, "max_capacity")?,
        current_rps: item::opt_number(it, "current_rps")?,
        target_rps: item::number(it, "target_rps")?,
        scaling_action: item::enumerated(it, "scaling_action", Action::parse)?,
        reason_code: item::enumerated(it, "reason_code", ReasonCode::parse)?,
        reason: item::string(it, "reason")?.to_string(),
        rps_window: item::number_list(it, "rps_window")?,
        serving: item::count(it, "serving")?,
        launching: item::count(it, "launching")?,
        held: item::count(it, "held")?,
        recommendation: item::count(it, "recommendation")?,
        asg_desired: item::count(it, "asg_desired")?,
        controller_id: item::string(it, "controller_id")?.to_string(),
        leader_epoch: item::whole(it, "leader_epoch")?,
        policy_hash: item::string(it, "policy_hash")?.to_string(),
        dry_run: item::boolean(it, "dry_run")?,
        result,
        ttl: item::number(it, "ttl")? as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_record() -> DecisionRecord {
        DecisionRecord {
            model_pool: "model-a".into(),
            key: DecisionKey::new(1_764_000_000_123, "us-east-2", 0),
            region: "us-east-2".into(),
            current_capacity: 10,
            desired_capacity: 14,
            min_capacity: 4,
            max_capacity: 120,
            current_rps: Some(17.5),
            target_rps: 1.25,
            scaling_action: Action::ScaleUp,
            reason_code: ReasonCode::AboveBand,
            reason: "utilisation 1.75 above 1.5".into(),
            rps_window: vec![16.0, 17.5],
            serving: 9,
            launching: 1,
            held: 2,
            recommendation: 14,
            asg_desired: 16,
            controller_id: "c-1".into(),
            leader_epoch: 3,
            policy_hash: "abc".into(),
            dry_run: false,
            result: Outcome::Applied,
            ttl: 1_764_000_000 + 30 * 86_400,
        }
    }

    #[test]
    fn records_round_trip_through_items() {
        let r = sample_record();
        let it = record_to_item(&r);
        assert_eq!(record_from_item(&it), Ok(r.clone()));
        let mut none = r;
        none.current_rps = None;
        none.result = Outcome::Failed("throttled".into());
        assert_eq!(record_from_item(&record_to_item(&none)), Ok(none));
    }

    #[test]
    fn damaged_records_are_rejected_with_a_reason() {
        let base = record_to_item(&sample_record());
        type Damage = Box<dyn Fn(&mut Item)>;
        let cases: Vec<(&str, Damage, BadReason)> = vec![
            (
                "missing reason",
                Box::new(|i| {
                    i.remove("reason");
                }),
                BadReason::MissingAttribute,
            ),
            (
                "desired as a string",
                Box::new(|i| {
                    i.insert("desired_capacity".into(), item::s("14"));
                }),
                BadReason::StringForNumber,
            ),
            (
                "unknown action",
                Box::new(|i| {
                    i.insert("scaling_action".into(), item::s("sideways"));
                }),
                BadReason::UnknownState,
            ),
            (
                "window of strings",
                Box::new(|i| {
                    i.insert("rps_window".into(), AttributeValue::L(vec![item::s("x")]));
                }),
                BadReason::WrongType,
            ),
        ];
        for (name, damage, reason) in cases {
            let mut it = base.clone();
            damage(&mut it);
            assert_eq!(
                record_from_item(&it).map_err(|e| e.reason),
                Err(reason),
                "case {name}"
            );
        }
    }

    #[test]
    fn identical_items_match_across_number_spellings() {
        let a = record_to_item(&sample_record());
        let mut b = a.clone();
        b.insert("target_rps".into(), AttributeValue::N("1.250".into()));
        assert!(same_item(&a, &b));
        b.insert("controller_id".into(), item::s("c-2"));
        assert!(!same_item(&a, &b));
    }
}
