//! Reading table items defensively: every attribute is checked for presence and type, numbers
//! for range; a malformed item becomes a [`BadItem`] (skipped, counted, logged once), never a
//! panic.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::telemetry::Metrics;

pub type Item = HashMap<String, AttributeValue>;

/// Why an item was skipped: the `reason` label of `bad_items_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadReason {
    MissingAttribute,
    WrongType,
    /// A string (S) where a number (N) belongs.
    StringForNumber,
    UnknownState,
    OutOfRange,
}

impl BadReason {
    pub fn label(self) -> &'static str {
        match self {
            BadReason::MissingAttribute => "missing_attribute",
            BadReason::WrongType => "wrong_type",
            BadReason::StringForNumber => "string_for_number",
            BadReason::UnknownState => "unknown_state",
            BadReason::OutOfRange => "out_of_range",
        }
    }
}

/// What is wrong with an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadItem {
    pub reason: BadReason,
    pub attribute: String,
    pub detail: String,
}

impl fmt::Display for BadItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}`: {}",
            self.reason.label(),
            self.attribute,
            self.detail
        )
    }
}

/// An attribute whose value is out of the range anything real would have.
pub(crate) fn bad_value(attribute: &str, detail: impl Into<String>) -> BadItem {
    bad(BadReason::OutOfRange, attribute, detail)
}

fn bad(reason: BadReason, attribute: &str, detail: impl Into<String>) -> BadItem {
    BadItem {
        reason,
        attribute: attribute.to_string(),
        detail: detail.into(),
    }
}

/// The DynamoDB type letter of a value, for messages.
pub(crate) fn type_name(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::L(_) => "L",
        AttributeValue::M(_) => "M",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "unknown",
    }
}

fn present<'a>(item: &'a Item, name: &str) -> Result<&'a AttributeValue, BadItem> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Err(bad(
            BadReason::MissingAttribute,
            name,
            "attribute is missing",
        )),
        Some(v) => Ok(v),
    }
}

pub(crate) fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str, BadItem> {
    match present(item, name)? {
        AttributeValue::S(s) => Ok(s),
        other => Err(bad(
            BadReason::WrongType,
            name,
            format!("expected a string (S), found {}", type_name(other)),
        )),
    }
}

pub(crate) fn opt_string<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, BadItem> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => string(item, name).map(Some),
    }
}

/// A finite number.
pub(crate) fn number(item: &Item, name: &str) -> Result<f64, BadItem> {
    let text = match present(item, name)? {
        AttributeValue::N(n) => n,
        AttributeValue::S(s) => {
            return Err(bad(
                BadReason::StringForNumber,
                name,
                format!("expected a number (N), found the string {s:?}"),
            ));
        }
        other => {
            return Err(bad(
                BadReason::WrongType,
                name,
                format!("expected a number (N), found {}", type_name(other)),
            ));
        }
    };
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(bad(
            BadReason::OutOfRange,
            name,
            format!("{text:?} is not a finite number"),
        )),
    }
}

/// The text of a number attribute as stored (to use it again in a key condition unchanged).
pub(crate) fn get_raw_number(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => Some(n.clone()),
        _ => None,
    }
}

pub(crate) fn opt_number(item: &Item, name: &str) -> Result<Option<f64>, BadItem> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => number(item, name).map(Some),
    }
}

/// A whole number in `0..=u32::MAX`.
pub(crate) fn count(item: &Item, name: &str) -> Result<u32, BadItem> {
    let v = number(item, name)?;
    if v < 0.0 || v > f64::from(u32::MAX) || v.fract() != 0.0 {
        return Err(bad(
            BadReason::OutOfRange,
            name,
            format!("{v} is not a whole number ≥ 0"),
        ));
    }
    Ok(v as u32)
}

/// A whole number ≥ 0 that fits i64 (epochs, versions).
pub(crate) fn whole(item: &Item, name: &str) -> Result<u64, BadItem> {
    let text = match present(item, name)? {
        AttributeValue::N(n) => n.trim(),
        _ => return number(item, name).map(|_| 0), // reports the type problem
    };
    text.parse::<u64>().map_err(|_| {
        bad(
            BadReason::OutOfRange,
            name,
            format!("{text:?} is not a whole number ≥ 0"),
        )
    })
}

/// Latest plausible Unix time in seconds (year 5138): beyond it a value is garbage.
const MAX_UNIX_SECS: f64 = 1e11;

/// A Unix time in seconds (possibly fractional), as milliseconds.
pub(crate) fn unix_secs_as_ms(item: &Item, name: &str) -> Result<i64, BadItem> {
    let v = number(item, name)?;
    if !(0.0..=MAX_UNIX_SECS).contains(&v) {
        return Err(bad(
            BadReason::OutOfRange,
            name,
            format!("{v} is not a Unix time in seconds"),
        ));
    }
    Ok((v * 1000.0).round() as i64)
}

pub(crate) fn boolean(item: &Item, name: &str) -> Result<bool, BadItem> {
    match present(item, name)? {
        AttributeValue::Bool(b) => Ok(*b),
        other => Err(bad(
            BadReason::WrongType,
            name,
            format!("expected a boolean (BOOL), found {}", type_name(other)),
        )),
    }
}

/// A list of finite numbers.
pub(crate) fn number_list(item: &Item, name: &str) -> Result<Vec<f64>, BadItem> {
    match present(item, name)? {
        AttributeValue::L(values) => values
            .iter()
            .map(|v| match v {
                AttributeValue::N(n) => n
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| {
                        bad(
                            BadReason::OutOfRange,
                            name,
                            format!("{n:?} is not a finite number"),
                        )
                    }),
                other => Err(bad(
                    BadReason::WrongType,
                    name,
                    format!("expected numbers in the list, found {}", type_name(other)),
                )),
            })
            .collect(),
        other => Err(bad(
            BadReason::WrongType,
            name,
            format!("expected a list (L), found {}", type_name(other)),
        )),
    }
}

/// A value that parses from a string attribute by `parse`, else `unknown_state`.
pub(crate) fn enumerated<T>(
    item: &Item,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, BadItem> {
    let s = string(item, name)?;
    parse(s).ok_or_else(|| {
        bad(
            BadReason::UnknownState,
            name,
            format!("unknown value {s:?}"),
        )
    })
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A float as a DynamoDB number; NULL when it cannot be one (not finite, or beyond the 1e125
/// DynamoDB accepts).
pub(crate) fn n_f64(v: f64) -> AttributeValue {
    if v.is_finite() && v.abs() < 1e100 {
        AttributeValue::N(format!("{v}"))
    } else {
        AttributeValue::Null(true)
    }
}

/// A short text naming an item by its key attributes, for logs.
pub(crate) fn key_text(item: &Item, keys: &[&str]) -> String {
    keys.iter()
        .map(|k| match item.get(*k) {
            Some(AttributeValue::S(s)) => format!("{k}={s}"),
            Some(AttributeValue::N(n)) => format!("{k}={n}"),
            Some(other) => format!("{k}=<{}>", type_name(other)),
            None => format!("{k}=<missing>"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The size DynamoDB bills an item at (attribute names plus values), approximately: numbers
/// count one byte per two significant digits plus one.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn number_size(n: &str) -> usize {
    let digits = n
        .trim_start_matches('-')
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
        AttributeValue::Ns(ns) => ns.iter().map(|x| number_size(x)).sum(),
        AttributeValue::Bs(bs) => bs.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// Keys already logged are remembered up to this many, then forgotten all at once (a
/// malformed item is then logged once more: bounded memory beats perfect silence).
const LOGGED_CAPACITY: usize = 4_096;

/// Counts skipped items in `bad_items_total{table,reason}` and logs each item once.
pub(crate) struct BadItems {
    metrics: Metrics,
    logged: Mutex<HashSet<String>>,
}

impl BadItems {
    pub(crate) fn new(metrics: Metrics) -> Self {
        BadItems {
            metrics,
            logged: Mutex::new(HashSet::new()),
        }
    }

    /// Count a skipped item of `table` (the schema suffix) named by `key`; log it if new.
    /// A malformed attribute of an item that is still used (e.g. `queue_depth`): counted and
    /// logged once like a skipped item, the attribute read as unknown.
    pub(crate) fn report_attribute(&self, table: &str, key: &str, problem: &BadItem) {
        self.count_and_log(
            table,
            key,
            problem,
            "not believing a malformed attribute (the item still counts)",
        );
    }

    pub(crate) fn report(&self, table: &str, key: &str, problem: &BadItem) {
        self.count_and_log(table, key, problem, "skipping a malformed item");
    }

    fn count_and_log(&self, table: &str, key: &str, problem: &BadItem, what: &'static str) {
        self.metrics
            .bad_items
            .with_label_values(&[table, problem.reason.label()])
            .inc();
        let first = {
            // The set is plain data, consistent after every insert: a poisoned lock is safe
            // to keep using.
            let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
            if logged.len() >= LOGGED_CAPACITY {
                logged.clear();
            }
            logged.insert(format!("{table}/{key}"))
        };
        if first {
            tracing::warn!(
                table,
                item = key,
                reason = problem.reason.label(),
                attribute = %problem.attribute,
                "{what}: {}",
                problem.detail
            );
        }
    }

    #[cfg(test)]
    pub(crate) fn logged_count(&self) -> usize {
        self.logged.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn numbers_are_checked_for_presence_type_and_range() {
        let i = item(&[
            ("a", n(5)),
            ("s", s("5")),
            ("b", AttributeValue::Bool(true)),
            ("neg", n(-1)),
            ("frac", n(1.5)),
            ("huge", n("1e300")),
        ]);
        assert_eq!(count(&i, "a"), Ok(5));
        let reason = |r: Result<u32, BadItem>| r.unwrap_err().reason;
        assert_eq!(reason(count(&i, "x")), BadReason::MissingAttribute);
        assert_eq!(reason(count(&i, "s")), BadReason::StringForNumber);
        assert_eq!(reason(count(&i, "b")), BadReason::WrongType);
        assert_eq!(reason(count(&i, "neg")), BadReason::OutOfRange);
        assert_eq!(reason(count(&i, "frac")), BadReason::OutOfRange);
        assert_eq!(
            unix_secs_as_ms(&i, "huge").unwrap_err().reason,
            BadReason::OutOfRange
        );
        assert_eq!(unix_secs_as_ms(&i, "frac"), Ok(1_500));
    }

    #[test]
    fn each_item_is_logged_once_but_counted_every_time() {
        let metrics = Metrics::new("us-east-1");
        let b = BadItems::new(metrics.clone());
        let p = bad(BadReason::WrongType, "state", "x");
        for _ in 0..3 {
            b.report("gpu-instances", "instance_id=i-1", &p);
        }
        b.report("gpu-instances", "instance_id=i-2", &p);
        assert_eq!(b.logged_count(), 2);
        assert_eq!(
            metrics
                .bad_items
                .with_label_values(&["gpu-instances", "wrong_type"])
                .get(),
            4
        );
    }

    #[test]
    fn item_sizes_follow_dynamodb_rules() {
        let i = item(&[("ab", s("xyz")), ("n", n(12345)), ("t", n("1.50"))]);
        // 2+3 + 1+(3+1) + 1+(1+1)
        assert_eq!(item_size(&i), 13);
    }
}

/// Item values from outside never panic a reader: every parser of an item, fed items made of
/// the attributes it reads with values of every type and hostile numbers. The suite runs a
/// few hundred cases; `PROPTEST_CASES=40000 cargo test --release --lib never_panic` is the
/// fuzzing run behind the README's figure.
#[cfg(test)]
mod never_panic {
    use super::*;
    use proptest::prelude::*;

    const NAMES: &[&str] = &[
        "instance_id",
        "region",
        "model_pool",
        "state",
        "queue_depth",
        "last_heartbeat",
        "launch_time",
        "drain_started_at",
        "value",
        "timestamp",
        "metric_name",
        "current_capacity",
        "desired_capacity",
        "min_capacity",
        "max_capacity",
        "current_rps",
        "target_rps",
        "scaling_action",
        "reason",
        "reason_code",
        "rps_window",
        "serving",
        "launching",
        "held",
        "recommendation",
        "asg_desired",
        "controller_id",
        "leader_epoch",
        "policy_hash",
        "dry_run",
        "result",
        "ttl",
        "holder",
        "epoch",
        "version",
        "duration_ms",
        "lease_key",
        "renewed_at_ms",
        "holder_addr",
    ];

    fn arb_number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| v.to_string()),
            Just("1e30".to_string()),
            Just("-1e308".to_string()),
            Just("NaN".to_string()),
            Just("99999999999999999999999999".to_string()),
            Just("1764000000.1230020".to_string()),
            "[0-9eE.+-]{0,14}",
        ]
    }

    fn arb_value() -> impl Strategy<Value = AttributeValue> {
        prop_oneof![
            arb_number().prop_map(AttributeValue::N),
            prop_oneof![
                Just("available".to_string()),
                Just("draining".to_string()),
                Just("scale-up".to_string()),
                Just("applied".to_string()),
                Just("failed: x".to_string()),
                Just("within_band".to_string()),
                ".{0,12}",
                arb_number(),
            ]
            .prop_map(AttributeValue::S),
            any::<bool>().prop_map(AttributeValue::Bool),
            Just(AttributeValue::Null(true)),
            prop::collection::vec(arb_number().prop_map(AttributeValue::N), 0..4)
                .prop_map(AttributeValue::L),
        ]
    }

    fn arb_item() -> impl Strategy<Value = Item> {
        prop::collection::vec((0..NAMES.len(), arb_value()), 0..NAMES.len() * 2).prop_map(|kv| {
            kv.into_iter()
                .map(|(k, v)| (NAMES[k].to_string(), v))
                .collect()
        })
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn item_values_never_panic_a_reader(it in arb_item()) {
            if let Ok((rec, _)) = super::super::inventory::parse_instance(&it) {
                prop_assert!(rec.queue_depth.is_none_or(|q| q <= crate::core::capacity::MAX_QUEUE_DEPTH));
            }
            let _ = super::super::decision_log::record_from_item(&it);
            let _ = super::super::metrics_source::parse_sample(&it);
            let _ = super::super::lease::parse_lease(&it);
        }
    }
}
