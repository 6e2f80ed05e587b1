//! `tables create`: the tables of `schema::ALL`, created when missing (on-demand billing, GSIs
//! projecting ALL attributes, streams with new and old images on the global tables), TTL on
//! `ttl`, waited for until ACTIVE. Idempotent. An existing table whose keys or indexes differ
//! from the schema is an error naming each difference; nothing is ever altered then.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use tokio::time::Instant;

use crate::ports::PortError;
use crate::schema::{AttrType, Index, Key, TableSchema};

use super::{AwsClients, Service, port_error};

#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error("existing tables differ from the schema (nothing was changed):\n  - {}", .0.join("\n  - "))]
    Differ(Vec<String>),
    #[error("tables missing (run `mrgc-autoscaler tables create`): {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("{0}")]
    Port(#[from] PortError),
    #[error("{0} did not become ACTIVE within {1:?}")]
    Timeout(String, Duration),
    #[error("building the request: {0}")]
    Build(String),
}

/// What happened to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub name: String,
    pub created: bool,
    /// TTL was switched on by this run.
    pub ttl_enabled_now: bool,
    /// Differences that do not break the controller (billing mode, streams).
    pub warnings: Vec<String>,
}

fn build_err(e: impl std::fmt::Display) -> TablesError {
    TablesError::Build(e.to_string())
}

fn scalar(t: AttrType) -> ScalarAttributeType {
    match t {
        AttrType::S => ScalarAttributeType::S,
        AttrType::N => ScalarAttributeType::N,
    }
}

fn key_schema(hash: Key, range: Option<Key>) -> Result<Vec<KeySchemaElement>, TablesError> {
    let mut v = vec![
        KeySchemaElement::builder()
            .attribute_name(hash.name)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build_err)?,
    ];
    if let Some(r) = range {
        v.push(
            KeySchemaElement::builder()
                .attribute_name(r.name)
                .key_type(KeyType::Range)
                .build()
                .map_err(build_err)?,
        );
    }
    Ok(v)
}

/// A key as described: (attribute name, type letter).
type Described = Option<(String, String)>;

fn describe_keys(
    keys: &[KeySchemaElement],
    defs: &[AttributeDefinition],
) -> (Described, Described) {
    let ty = |name: &str| {
        defs.iter()
            .find(|d| d.attribute_name() == name)
            .map_or("?".to_string(), |d| d.attribute_type().as_str().to_string())
    };
    let find = |kt: KeyType| {
        keys.iter()
            .find(|k| *k.key_type() == kt)
            .map(|k| (k.attribute_name().to_string(), ty(k.attribute_name())))
    };
    (find(KeyType::Hash), find(KeyType::Range))
}

fn show(k: &Described) -> String {
    match k {
        Some((n, t)) => format!("`{n}` ({t})"),
        None => "none".into(),
    }
}

fn want(k: Option<Key>) -> Described {
    k.map(|k| (k.name.to_string(), k.ty.as_str().to_string()))
}

/// Every way `desc` differs from `schema` in keys and indexes (errors), and in billing mode
/// and streams (warnings).
pub fn differences(schema: &TableSchema, desc: &TableDescription) -> (Vec<String>, Vec<String>) {
    let name = desc.table_name().unwrap_or("?");
    let defs = desc.attribute_definitions();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let (hash, range) = describe_keys(desc.key_schema(), defs);
    if hash != want(Some(schema.hash)) {
        errors.push(format!(
            "{name}: partition key is {}, the schema says {}",
            show(&hash),
            show(&want(Some(schema.hash)))
        ));
    }
    if range != want(schema.range) {
        errors.push(format!(
            "{name}: sort key is {}, the schema says {}",
            show(&range),
            show(&want(schema.range))
        ));
    }
    let gsis = desc.global_secondary_indexes();
    for ix in schema.indexes {
        match gsis.iter().find(|g| g.index_name() == Some(ix.name)) {
            None => errors.push(format!("{name}: index `{}` is missing", ix.name)),
            Some(g) => {
                let (h, r) = describe_keys(g.key_schema(), defs);
                if h != want(Some(ix.hash)) || r != want(ix.range) {
                    errors.push(format!(
                        "{name}: index `{}` is keyed by {} / {}, the schema says {} / {}",
                        ix.name,
                        show(&h),
                        show(&r),
                        show(&want(Some(ix.hash))),
                        show(&want(ix.range))
                    ));
                }
                let projection = g.projection().and_then(|p| p.projection_type());
                if projection != Some(&ProjectionType::All) {
                    errors.push(format!(
                        "{name}: index `{}` projects {}, the controller needs ALL attributes",
                        ix.name,
                        projection.map_or("nothing", |p| p.as_str())
                    ));
                }
            }
        }
    }
    for g in gsis {
        let n = g.index_name().unwrap_or("?");
        if !schema.indexes.iter().any(|ix| ix.name == n) {
            errors.push(format!(
                "{name}: index `{n}` is not in the schema (add it to schema.rs or drop it)"
            ));
        }
    }
    for l in desc.local_secondary_indexes() {
        errors.push(format!(
            "{name}: local index `{}` is not in the schema",
            l.index_name().unwrap_or("?")
        ));
    }
    let billing = desc
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .cloned()
        .unwrap_or(BillingMode::Provisioned);
    if billing != BillingMode::PayPerRequest {
        warnings.push(format!(
            "{name}: billing mode is {}, the schema creates PAY_PER_REQUEST",
            billing.as_str()
        ));
    }
    if schema.global {
        let s = desc.stream_specification();
        let ok = s.is_some_and(|s| {
            s.stream_enabled() && s.stream_view_type() == Some(&StreamViewType::NewAndOldImages)
        });
        if !ok {
            warnings.push(format!(
                "{name}: a global table needs a stream with NEW_AND_OLD_IMAGES"
            ));
        }
    }
    (errors, warnings)
}

async fn describe(c: &AwsClients, table: &str) -> Result<Option<TableDescription>, PortError> {
    match c
        .caller
        .call(
            Service::DynamoDb,
            "DescribeTable",
            c.ddb.describe_table().table_name(table).send(),
        )
        .await
    {
        Ok(out) => Ok(out.table().cloned()),
        Err(SdkError::ServiceError(se))
            if matches!(se.err(), DescribeTableError::ResourceNotFoundException(_)) =>
        {
            Ok(None)
        }
        Err(e) => Err(port_error(&format!("describing {table}"), &e)),
    }
}

async fn create(c: &AwsClients, t: &TableSchema, table: &str) -> Result<(), TablesError> {
    let defs = t
        .key_attributes()
        .into_iter()
        .map(|k| {
            AttributeDefinition::builder()
                .attribute_name(k.name)
                .attribute_type(scalar(k.ty))
                .build()
                .map_err(build_err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let gsis = t
        .indexes
        .iter()
        .map(|ix: &Index| {
            GlobalSecondaryIndex::builder()
                .index_name(ix.name)
                .set_key_schema(Some(key_schema(ix.hash, ix.range)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(build_err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut req = c
        .ddb
        .create_table()
        .table_name(table)
        .set_attribute_definitions(Some(defs))
        .set_key_schema(Some(key_schema(t.hash, t.range)?))
        .billing_mode(BillingMode::PayPerRequest);
    if !gsis.is_empty() {
        req = req.set_global_secondary_indexes(Some(gsis));
    }
    if t.global {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(build_err)?,
        );
    }
    c.caller
        .call(Service::DynamoDb, "CreateTable", req.send())
        .await
        .map_err(|e| port_error(&format!("creating {table}"), &e))?;
    Ok(())
}

async fn wait_active(c: &AwsClients, table: &str, timeout: Duration) -> Result<(), TablesError> {
    let start = Instant::now();
    loop {
        if let Some(d) = describe(c, table).await? {
            let table_ok = d.table_status() == Some(&TableStatus::Active);
            let indexes_ok = d
                .global_secondary_indexes()
                .iter()
                .all(|g| g.index_status() == Some(&IndexStatus::Active));
            if table_ok && indexes_ok {
                return Ok(());
            }
        }
        if start.elapsed() >= timeout {
            return Err(TablesError::Timeout(table.to_string(), timeout));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Switch TTL on `attribute` on; true when this call switched it on.
async fn ensure_ttl(c: &AwsClients, table: &str, attribute: &str) -> Result<bool, TablesError> {
    let out = c
        .caller
        .call(
            Service::DynamoDb,
            "DescribeTimeToLive",
            c.ddb.describe_time_to_live().table_name(table).send(),
        )
        .await
        .map_err(|e| port_error(&format!("describing TTL of {table}"), &e))?;
    let d = out.time_to_live_description();
    let status = d.and_then(|d| d.time_to_live_status());
    let on = matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    );
    if on {
        let current = d.and_then(|d| d.attribute_name()).unwrap_or("");
        if current != attribute {
            return Err(TablesError::Differ(vec![format!(
                "{table}: TTL is on `{current}`, the schema says `{attribute}`"
            )]));
        }
        return Ok(false);
    }
    c.caller
        .call(
            Service::DynamoDb,
            "UpdateTimeToLive",
            c.ddb
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(attribute)
                        .build()
                        .map_err(build_err)?,
                )
                .send(),
        )
        .await
        .map_err(|e| port_error(&format!("enabling TTL on {table}"), &e))?;
    Ok(true)
}

/// Create what is missing, check what exists. Fails before changing anything when an existing
/// table differs.
pub async fn create_tables(
    c: &AwsClients,
    tables: &[TableSchema],
    timeout: Duration,
) -> Result<Vec<TableReport>, TablesError> {
    let mut existing = Vec::new();
    let mut errors = Vec::new();
    for t in tables {
        let name = c.table(t);
        let desc = describe(c, &name).await?;
        if let Some(d) = &desc {
            let (e, _) = differences(t, d);
            errors.extend(e);
        }
        existing.push((t, name, desc));
    }
    if !errors.is_empty() {
        return Err(TablesError::Differ(errors));
    }
    let mut reports = Vec::new();
    for (t, name, desc) in &existing {
        let warnings = desc
            .as_ref()
            .map(|d| differences(t, d).1)
            .unwrap_or_default();
        if desc.is_none() {
            create(c, t, name).await?;
        }
        reports.push(TableReport {
            name: name.clone(),
            created: desc.is_none(),
            ttl_enabled_now: false,
            warnings,
        });
    }
    for ((t, name, _), report) in existing.iter().zip(reports.iter_mut()) {
        wait_active(c, name, timeout).await?;
        report.ttl_enabled_now = ensure_ttl(c, name, t.ttl_attribute).await?;
    }
    Ok(reports)
}

/// Check that every table exists and matches, without changing anything (`run` at start).
pub async fn verify_tables(
    c: &AwsClients,
    tables: &[TableSchema],
) -> Result<Vec<String>, TablesError> {
    let mut missing = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for t in tables {
        let name = c.table(t);
        match describe(c, &name).await? {
            None => missing.push(name),
            Some(d) => {
                let (e, w) = differences(t, &d);
                errors.extend(e);
                warnings.extend(w);
            }
        }
    }
    if !missing.is_empty() {
        return Err(TablesError::Missing(missing));
    }
    if !errors.is_empty() {
        return Err(TablesError::Differ(errors));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use aws_sdk_dynamodb::types::{
        BillingModeSummary, GlobalSecondaryIndexDescription, StreamSpecification,
    };

    fn described(t: &TableSchema) -> TableDescription {
        let defs = t
            .key_attributes()
            .into_iter()
            .map(|k| {
                AttributeDefinition::builder()
                    .attribute_name(k.name)
                    .attribute_type(scalar(k.ty))
                    .build()
                    .unwrap()
            })
            .collect();
        let gsis = t
            .indexes
            .iter()
            .map(|ix| {
                GlobalSecondaryIndexDescription::builder()
                    .index_name(ix.name)
                    .set_key_schema(Some(key_schema(ix.hash, ix.range).unwrap()))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
            })
            .collect();
        TableDescription::builder()
            .table_name(t.table_name("p"))
            .set_attribute_definitions(Some(defs))
            .set_key_schema(Some(key_schema(t.hash, t.range).unwrap()))
            .set_global_secondary_indexes(Some(gsis))
            .billing_mode_summary(
                BillingModeSummary::builder()
                    .billing_mode(BillingMode::PayPerRequest)
                    .build(),
            )
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .unwrap(),
            )
            .build()
    }

    #[test]
    fn a_table_as_the_schema_says_has_no_differences() {
        for t in schema::ALL {
            assert_eq!(
                differences(&t, &described(&t)),
                (vec![], vec![]),
                "{}",
                t.suffix
            );
        }
    }

    #[test]
    fn each_difference_is_named() {
        // Sort key of another type.
        let mut d = described(&schema::METRICS);
        let defs: Vec<AttributeDefinition> = d
            .attribute_definitions()
            .iter()
            .map(|a| {
                if a.attribute_name() == "timestamp" {
                    AttributeDefinition::builder()
                        .attribute_name("timestamp")
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .unwrap()
                } else {
                    a.clone()
                }
            })
            .collect();
        d = TableDescription::builder()
            .table_name("p-metrics")
            .set_attribute_definitions(Some(defs))
            .set_key_schema(Some(d.key_schema().to_vec()))
            .set_global_secondary_indexes(Some(vec![]))
            .build();
        let (errors, warnings) = differences(&schema::METRICS, &d);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("sort key is `timestamp` (S)")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("index `region-timestamp-index` is missing")),
            "{errors:?}"
        );
        assert!(warnings.iter().any(|w| w.contains("billing mode")));
        assert!(warnings.iter().any(|w| w.contains("stream")));
    }
}
