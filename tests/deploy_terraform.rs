//! The Terraform in deploy/terraform against the code: the tables (names, keys and their types,
//! indexes, TTL attribute, global or regional) must be exactly `schema::ALL`, and the
//! controller's IAM policy must grant exactly `schema::IAM_ACTIONS`; deletion protection on
//! every table and replica; the optional VPC endpoints and the IAM condition that restricts
//! the role to them; and every file laid out as `terraform fmt` would. No Terraform binary
//! runs here: the files are parsed with hcl-rs and their expressions compared as written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::{Block, Body, Expression, ObjectKey};
use mrgc_autoscaler::schema::{self, IAM_ACTIONS, TableSchema};

fn terraform_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/terraform")
}

/// Every top-level block of every `.tf` file in `dir`, in file-name order.
fn load(dir: &Path) -> Vec<Block> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .tf files in {}", dir.display());
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("readable .tf file");
            parse(&text, &f.display().to_string())
        })
        .collect()
}

fn parse(text: &str, what: &str) -> Vec<Block> {
    let body = hcl::parse(text).unwrap_or_else(|e| panic!("{what} is not valid HCL: {e}"));
    body.blocks().cloned().collect()
}

fn module(name: &str) -> Vec<Block> {
    load(&terraform_dir().join("modules").join(name))
}

fn labels(b: &Block) -> Vec<&str> {
    b.labels().iter().map(|l| l.as_str()).collect()
}

/// The block `ident "l1" "l2" {}` among `blocks`; panics if there is not exactly one.
fn block<'a>(blocks: &'a [Block], ident: &str, want: &[&str]) -> &'a Block {
    let found: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.identifier() == ident && labels(b) == want)
        .collect();
    assert_eq!(found.len(), 1, "want exactly one `{ident} {want:?}` block");
    found[0]
}

fn sub_blocks<'a>(body: &'a Body, ident: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
    body.blocks().filter(move |b| b.identifier() == ident)
}

/// A `dynamic "name" {}` block of `body`.
fn dynamic<'a>(body: &'a Body, name: &str) -> &'a Block {
    let found: Vec<&Block> = sub_blocks(body, "dynamic")
        .filter(|b| labels(b) == [name])
        .collect();
    assert_eq!(found.len(), 1, "want one `dynamic \"{name}\"` block");
    found[0]
}

fn content(dynamic: &Block) -> &Body {
    let c: Vec<&Block> = sub_blocks(dynamic.body(), "content").collect();
    assert_eq!(c.len(), 1, "a dynamic block has one content block");
    c[0].body()
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// The expression of `key` in `body` as written, formatted by hcl-rs on one line.
fn text(body: &Body, key: &str) -> String {
    one_line(
        &attr(body, key)
            .unwrap_or_else(|| panic!("missing attribute `{key}`"))
            .to_string(),
    )
}

/// hcl-rs formats arrays on several lines: `[\n  "a",\n  "b"\n]` becomes `["a", "b"]`.
fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("[ ", "[")
        .replace(" ]", "]")
}

fn local<'a>(blocks: &'a [Block], name: &str) -> &'a Expression {
    blocks
        .iter()
        .filter(|b| b.identifier() == "locals")
        .find_map(|b| attr(b.body(), name))
        .unwrap_or_else(|| panic!("no local `{name}`"))
}

// ---------------------------------------------------------------------------------------------
// The table schemas, as the code and as the Terraform state them.

/// What the Terraform must say about one table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableSpec {
    hash_key: String,
    range_key: Option<String>,
    /// Every key attribute of the table and its indexes, with its type ("S", "N").
    attributes: BTreeMap<String, String>,
    /// Index name → (hash key, range key).
    indexes: BTreeMap<String, (String, Option<String>)>,
    ttl_attribute: String,
}

fn from_schema(t: &TableSchema) -> TableSpec {
    TableSpec {
        hash_key: t.hash.name.to_string(),
        range_key: t.range.map(|k| k.name.to_string()),
        attributes: t
            .key_attributes()
            .iter()
            .map(|k| (k.name.to_string(), k.ty.as_str().to_string()))
            .collect(),
        indexes: t
            .indexes
            .iter()
            .map(|i| {
                (
                    i.name.to_string(),
                    (i.hash.name.to_string(), i.range.map(|k| k.name.to_string())),
                )
            })
            .collect(),
        ttl_attribute: t.ttl_attribute.to_string(),
    }
}

fn schema_tables(global: bool) -> BTreeMap<String, TableSpec> {
    schema::ALL
        .iter()
        .filter(|t| t.global == global)
        .map(|t| (t.suffix.to_string(), from_schema(t)))
        .collect()
}

fn key_str(k: &ObjectKey) -> Result<String, String> {
    match k {
        ObjectKey::Identifier(i) => Ok(i.as_str().to_string()),
        ObjectKey::Expression(Expression::String(s)) => Ok(s.clone()),
        other => Err(format!("object key {other:?} is not a literal")),
    }
}

fn object(e: &Expression) -> Result<BTreeMap<String, &Expression>, String> {
    match e {
        Expression::Object(o) => o
            .iter()
            .map(|(k, v)| Ok((key_str(k)?, v)))
            .collect::<Result<_, String>>(),
        other => Err(format!("`{other}` is not an object literal")),
    }
}

fn field<'a>(o: &BTreeMap<String, &'a Expression>, key: &str) -> Result<&'a Expression, String> {
    o.get(key)
        .copied()
        .ok_or_else(|| format!("missing `{key}`"))
}

fn string(e: &Expression) -> Result<String, String> {
    match e {
        Expression::String(s) => Ok(s.clone()),
        other => Err(format!("`{other}` is not a string literal")),
    }
}

fn optional_string(e: &Expression) -> Result<Option<String>, String> {
    match e {
        Expression::Null => Ok(None),
        other => string(other).map(Some),
    }
}

/// A `local.*_tables` object of the dynamodb module, read as table specs.
fn tables_from_hcl(e: &Expression) -> Result<BTreeMap<String, TableSpec>, String> {
    object(e)?
        .into_iter()
        .map(|(suffix, t)| {
            let t = object(t).map_err(|e| format!("{suffix}: {e}"))?;
            let spec = (|| {
                let attributes = object(field(&t, "attributes")?)?
                    .into_iter()
                    .map(|(name, ty)| Ok((name, string(ty)?)))
                    .collect::<Result<_, String>>()?;
                let indexes = object(field(&t, "indexes")?)?
                    .into_iter()
                    .map(|(name, i)| {
                        let i = object(i)?;
                        let keys = (
                            string(field(&i, "hash_key")?)?,
                            optional_string(field(&i, "range_key")?)?,
                        );
                        Ok((name, keys))
                    })
                    .collect::<Result<_, String>>()?;
                Ok::<_, String>(TableSpec {
                    hash_key: string(field(&t, "hash_key")?)?,
                    range_key: optional_string(field(&t, "range_key")?)?,
                    attributes,
                    indexes,
                    ttl_attribute: string(field(&t, "ttl_attribute")?)?,
                })
            })()
            .map_err(|e| format!("{suffix}: {e}"))?;
            Ok((suffix, spec))
        })
        .collect()
}

fn dynamodb_tables(blocks: &[Block], local_name: &str) -> BTreeMap<String, TableSpec> {
    tables_from_hcl(local(blocks, local_name)).unwrap_or_else(|e| panic!("local.{local_name}: {e}"))
}

#[test]
fn terraform_tables_are_exactly_the_schema() {
    let m = module("dynamodb");
    assert_eq!(
        dynamodb_tables(&m, "global_tables"),
        schema_tables(true),
        "local.global_tables in deploy/terraform/modules/dynamodb/main.tf differs from the global tables of src/schema.rs"
    );
    assert_eq!(
        dynamodb_tables(&m, "regional_tables"),
        schema_tables(false),
        "local.regional_tables in deploy/terraform/modules/dynamodb/main.tf differs from the regional tables of src/schema.rs"
    );
}

#[test]
fn a_table_that_drifts_from_the_schema_is_caught() {
    let main =
        std::fs::read_to_string(terraform_dir().join("modules/dynamodb/main.tf")).expect("main.tf");
    let want = schema_tables(true);
    let drifts = [
        // A key's type.
        ("routing_score = \"N\"", "routing_score = \"S\""),
        // An index's range key.
        (
            "\"model-pool-index\" = { hash_key = \"model_pool\", range_key = \"region\" }",
            "\"model-pool-index\" = { hash_key = \"model_pool\", range_key = null }",
        ),
        // The TTL attribute.
        ("ttl_attribute = \"ttl\"", "ttl_attribute = \"expires_at\""),
    ];
    for (from, to) in drifts {
        assert!(main.contains(from), "main.tf no longer contains `{from}`");
        let blocks = parse(&main.replacen(from, to, 1), "mutated main.tf");
        assert_ne!(
            dynamodb_tables(&blocks, "global_tables"),
            want,
            "changing `{from}` to `{to}` went unnoticed"
        );
    }
}

/// The body of `resource "aws_dynamodb_table" "<name>"` in the dynamodb module.
fn table_resource<'a>(m: &'a [Block], name: &str) -> &'a Body {
    block(m, "resource", &["aws_dynamodb_table", name]).body()
}

/// Checks that a table resource builds every table from its schema entry (`each.value`), so
/// that the checked locals are what Terraform creates.
fn assert_built_from_schema(r: &Body, name_expr: &str) {
    assert_eq!(text(r, "name"), name_expr);
    assert_eq!(text(r, "billing_mode"), "\"PAY_PER_REQUEST\"");
    assert_eq!(text(r, "hash_key"), "each.value.hash_key");
    assert_eq!(text(r, "range_key"), "each.value.range_key");

    let a = dynamic(r, "attribute");
    assert_eq!(text(a.body(), "for_each"), "each.value.attributes");
    assert_eq!(text(content(a), "name"), "attribute.key");
    assert_eq!(text(content(a), "type"), "attribute.value");

    let g = dynamic(r, "global_secondary_index");
    assert_eq!(text(g.body(), "for_each"), "each.value.indexes");
    let gc = content(g);
    assert_eq!(text(gc, "name"), "global_secondary_index.key");
    assert_eq!(
        text(gc, "hash_key"),
        "global_secondary_index.value.hash_key"
    );
    assert_eq!(
        text(gc, "range_key"),
        "global_secondary_index.value.range_key"
    );
    assert_eq!(text(gc, "projection_type"), "\"ALL\"");

    let ttl: Vec<&Block> = sub_blocks(r, "ttl").collect();
    assert_eq!(ttl.len(), 1, "one ttl block");
    assert_eq!(
        text(ttl[0].body(), "attribute_name"),
        "each.value.ttl_attribute"
    );
    assert_eq!(text(ttl[0].body(), "enabled"), "true");

    let sse: Vec<&Block> = sub_blocks(r, "server_side_encryption").collect();
    assert_eq!(sse.len(), 1, "one server_side_encryption block");
    assert_eq!(text(sse[0].body(), "enabled"), "true");
    assert!(
        text(sse[0].body(), "kms_key_arn").starts_with("local.kms_key_arns["),
        "tables are encrypted with the module's customer-managed keys"
    );

    let pitr: Vec<&Block> = sub_blocks(r, "point_in_time_recovery").collect();
    assert_eq!(pitr.len(), 1, "one point_in_time_recovery block");
    assert_eq!(
        text(pitr[0].body(), "enabled"),
        "var.enable_point_in_time_recovery"
    );
}

#[test]
fn global_tables_are_built_from_their_schema_and_replicated() {
    let m = module("dynamodb");
    let r = table_resource(&m, "global");
    assert_eq!(text(r, "for_each"), "local.global_tables");
    assert_built_from_schema(r, "\"${var.name_prefix}-${each.key}\"");
    assert!(
        attr(r, "region").is_none(),
        "global tables live in the provider's region"
    );

    // Global tables (2019.11.21) replicate through a stream with both images.
    assert_eq!(text(r, "stream_enabled"), "true");
    assert_eq!(text(r, "stream_view_type"), "\"NEW_AND_OLD_IMAGES\"");
    let rep = dynamic(r, "replica");
    assert_eq!(text(rep.body(), "for_each"), "var.replica_regions");
    let rc = content(rep);
    assert_eq!(text(rc, "region_name"), "replica.value");
    assert_eq!(text(rc, "kms_key_arn"), "local.kms_key_arns[replica.value]");
    assert_eq!(
        text(rc, "point_in_time_recovery"),
        "var.enable_point_in_time_recovery"
    );
}

#[test]
fn regional_tables_are_one_unreplicated_table_per_region() {
    let m = module("dynamodb");
    let r = table_resource(&m, "regional");
    assert_eq!(text(r, "for_each"), "local.regional_table_instances");
    assert_eq!(text(r, "region"), "each.value.region");
    assert_built_from_schema(r, "\"${var.name_prefix}-${each.value.suffix}\"");
    assert!(
        sub_blocks(r, "replica").next().is_none()
            && sub_blocks(r, "dynamic").all(|b| labels(b) != ["replica"]),
        "a regional table must never be replicated"
    );
    let instances = local(&m, "regional_table_instances").to_string();
    assert!(
        instances.contains("setproduct(keys(local.regional_tables), local.regions)"),
        "one instance per regional table and region, got {instances}"
    );
    assert_eq!(
        local(&m, "regions").to_string(),
        "concat([local.primary_region], var.replica_regions)"
    );
    let tables: Vec<&Block> = m
        .iter()
        .filter(|b| {
            b.identifier() == "resource" && labels(b).first() == Some(&"aws_dynamodb_table")
        })
        .collect();
    assert_eq!(
        tables.len(),
        2,
        "every table comes from one of the two schema-driven resources"
    );
}

#[test]
fn the_seed_alarms_exist_with_its_thresholds() {
    let m = module("dynamodb");
    let alarm = |name: &str| block(&m, "resource", &["aws_cloudwatch_metric_alarm", name]).body();

    let user = alarm("user_errors");
    assert_eq!(text(user, "metric_name"), "\"UserErrors\"");
    assert_eq!(text(user, "statistic"), "\"Sum\"");
    assert_eq!(text(user, "period"), "300");
    assert_eq!(text(user, "threshold"), "10");
    assert_eq!(
        text(user, "comparison_operator"),
        "\"GreaterThanThreshold\""
    );

    let system = alarm("system_errors");
    assert_eq!(text(system, "threshold"), "0");
    assert_eq!(
        text(system, "comparison_operator"),
        "\"GreaterThanThreshold\""
    );
    let q: Vec<&Block> = sub_blocks(system, "metric_query").collect();
    assert_eq!(q.len(), 1);
    assert!(text(q[0].body(), "expression").contains("SUM(SystemErrors)"));

    let latency = alarm("replication_latency");
    assert_eq!(text(latency, "metric_name"), "\"ReplicationLatency\"");
    assert_eq!(text(latency, "threshold"), "2000", "2 s, in milliseconds");
    assert_eq!(
        text(latency, "comparison_operator"),
        "\"GreaterThanThreshold\""
    );
    let dims = text(latency, "dimensions");
    assert!(
        dims.contains("ReceivingRegion") && dims.contains("TableName"),
        "{dims}"
    );

    // All three are switched by the seed's input.
    assert!(
        local(&m, "alarm_regions")
            .to_string()
            .contains("var.enable_cloudwatch_alarms")
    );
    for r in [system, latency] {
        assert!(text(r, "for_each").contains("var.enable_cloudwatch_alarms"));
    }
    assert_eq!(text(user, "for_each"), "local.alarm_regions");
}

#[test]
fn the_module_takes_the_seeds_inputs() {
    let m = module("dynamodb");
    for name in [
        "name_prefix",
        "replica_regions",
        "enable_point_in_time_recovery",
        "enable_cloudwatch_alarms",
        "tags",
    ] {
        let v = block(&m, "variable", &[name]).body();
        assert!(
            attr(v, "description").is_some(),
            "variable {name} has no description"
        );
        assert!(attr(v, "type").is_some(), "variable {name} has no type");
    }
    for name in ["name_prefix", "replica_regions"] {
        let v = block(&m, "variable", &[name]).body();
        assert!(
            sub_blocks(v, "validation").next().is_some(),
            "variable {name} is not validated"
        );
    }
    for v in m.iter().filter(|b| b.identifier() == "variable") {
        assert!(
            attr(v.body(), "description").is_some(),
            "variable {:?} has no description",
            labels(v)
        );
    }
    for out in ["table_names", "table_arns"] {
        block(&m, "output", &[out]);
    }
}

// ---------------------------------------------------------------------------------------------
// IAM.

/// Actions, resources and conditions of one policy statement, and whether it is conditional
/// (inside a `dynamic "statement"`).
struct Statement {
    sid: String,
    actions: Vec<String>,
    resources: String,
    conditions: Vec<(String, String, String)>,
    gated_by: Option<String>,
    effect: Option<String>,
}

fn strings(e: &Expression) -> Vec<String> {
    match e {
        Expression::Array(items) => items
            .iter()
            .map(|i| string(i).unwrap_or_else(|e| panic!("{e}")))
            .collect(),
        other => panic!("`{other}` is not a list of string literals"),
    }
}

fn statement(body: &Body, gated_by: Option<String>) -> Statement {
    Statement {
        sid: attr(body, "sid").map(|e| e.to_string()).unwrap_or_default(),
        actions: strings(attr(body, "actions").expect("statement actions")),
        resources: text(body, "resources"),
        conditions: sub_blocks(body, "condition")
            .map(|c| {
                (
                    text(c.body(), "test"),
                    text(c.body(), "variable"),
                    text(c.body(), "values"),
                )
            })
            .collect(),
        gated_by,
        effect: attr(body, "effect").map(|e| e.to_string()),
    }
}

fn controller_policy() -> Vec<Statement> {
    let m = module("autoscaler-iam");
    let doc = block(&m, "data", &["aws_iam_policy_document", "controller"]).body();
    let mut out: Vec<Statement> = sub_blocks(doc, "statement")
        .map(|s| statement(s.body(), None))
        .collect();
    for d in sub_blocks(doc, "dynamic") {
        assert_eq!(labels(d), ["statement"]);
        out.push(statement(content(d), Some(text(d.body(), "for_each"))));
    }
    for s in &out {
        assert!(
            s.is_allow()
                || (s.effect.as_deref() == Some("\"Deny\"")
                    && s.conditions.len() == 1
                    && s.conditions[0].0 == "\"StringNotEquals\""
                    && s.conditions[0].1 == "\"aws:SourceVpce\""),
            "statement {} is neither an Allow nor a Deny outside the VPC endpoints",
            s.sid
        );
    }
    out
}

impl Statement {
    fn is_allow(&self) -> bool {
        matches!(self.effect.as_deref(), None | Some("\"Allow\""))
    }
}

/// The policy's Allow statements: what it grants.
fn grants() -> Vec<Statement> {
    controller_policy()
        .into_iter()
        .filter(Statement::is_allow)
        .collect()
}

#[test]
fn the_policy_grants_exactly_the_actions_the_code_calls() {
    let granted: BTreeSet<String> = grants().iter().flat_map(|s| s.actions.clone()).collect();
    let wanted: BTreeSet<String> = IAM_ACTIONS.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        granted, wanted,
        "deploy/terraform/modules/autoscaler-iam grants other actions than schema::IAM_ACTIONS"
    );
    for a in &granted {
        assert!(!a.contains('*'), "wildcard action {a}");
    }
}

#[test]
fn table_creation_is_granted_only_on_request() {
    let policy = grants();
    let gated: Vec<&Statement> = policy.iter().filter(|s| s.gated_by.is_some()).collect();
    assert_eq!(gated.len(), 1);
    assert_eq!(
        gated[0].gated_by.as_deref(),
        Some("var.allow_table_management ? [1] : []")
    );
    assert_eq!(
        gated[0].actions,
        ["dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"]
    );
    for s in policy.iter().filter(|s| s.gated_by.is_none()) {
        for a in &s.actions {
            assert!(
                !["dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"].contains(&a.as_str()),
                "{a} must not be granted unconditionally (statement {})",
                s.sid
            );
        }
    }
}

#[test]
fn every_statement_is_scoped() {
    for s in grants() {
        let services: BTreeSet<&str> = s
            .actions
            .iter()
            .map(|a| a.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(services.len(), 1, "statement {} mixes services", s.sid);
        let cond_vars: Vec<&str> = s.conditions.iter().map(|c| c.1.as_str()).collect();
        match *services.first().expect("a service") {
            "dynamodb" => {
                assert!(
                    s.resources.starts_with("local."),
                    "{}: table ARNs, not {}",
                    s.sid,
                    s.resources
                );
                if s.resources == "local.instance_table_arns" {
                    // Drains: the state attribute of instance items, nothing else.
                    assert_eq!(s.actions, ["dynamodb:UpdateItem"], "{}", s.sid);
                } else if s.actions.iter().any(|a| {
                    [
                        "dynamodb:PutItem",
                        "dynamodb:UpdateItem",
                        "dynamodb:ConditionCheckItem",
                    ]
                    .contains(&a.as_str())
                }) {
                    assert_eq!(
                        s.resources, "local.written_table_arns",
                        "{}: writes go to the controller's own tables only",
                        s.sid
                    );
                }
            }
            "autoscaling" if s.actions == ["autoscaling:DescribeAutoScalingGroups"] => {
                assert_eq!(s.resources, "[\"*\"]");
            }
            "autoscaling" => {
                assert_eq!(s.resources, "local.asg_arns", "{}", s.sid);
                assert_eq!(
                    cond_vars,
                    ["\"aws:ResourceTag/${var.asg_tag.key}\""],
                    "{}: only groups tagged for MRGC",
                    s.sid
                );
            }
            "cloudwatch" => {
                assert_eq!(cond_vars, ["\"cloudwatch:namespace\""], "{}", s.sid);
                assert_eq!(s.conditions[0].2, "[local.cloudwatch_namespace]");
            }
            other => panic!("unexpected service {other} in {}", s.sid),
        }
    }
    let m = module("autoscaler-iam");
    assert_eq!(
        local(&m, "cloudwatch_namespace").to_string(),
        "\"MRGC/Autoscaler\""
    );
    let tag = text(block(&m, "variable", &["asg_tag"]).body(), "default");
    assert!(
        tag.contains("\"mrgc:managed\"") && tag.contains("\"true\""),
        "{tag}"
    );
}

#[test]
fn the_iam_module_knows_the_same_tables() {
    let m = module("autoscaler-iam");
    let suffixes: BTreeSet<String> = schema::ALL.iter().map(|t| t.suffix.to_string()).collect();
    let written: BTreeSet<String> = strings(local(&m, "written_tables")).into_iter().collect();
    assert_eq!(
        written,
        [
            schema::AUTOSCALING_STATE.suffix,
            schema::CONTROLLER_LEASES.suffix
        ]
        .into_iter()
        .map(String::from)
        .collect::<BTreeSet<_>>()
    );
    let v = block(&m, "variable", &["table_arns"]).body();
    let checked: Vec<String> = sub_blocks(v, "validation")
        .map(|b| text(b.body(), "condition"))
        .collect();
    let listed = checked
        .iter()
        .find(|c| c.contains("gpu-instances"))
        .expect("a validation that lists the tables");
    for s in &suffixes {
        assert!(
            listed.contains(&format!("\"{s}\"")),
            "table_arns validation does not require {s}"
        );
    }
}

#[test]
fn the_role_is_assumable_through_irsa_or_ec2() {
    let m = module("autoscaler-iam");
    let trust = block(&m, "data", &["aws_iam_policy_document", "trust"]).body();
    let bodies: Vec<String> = sub_blocks(trust, "dynamic")
        .map(|d| content(d).to_owned())
        .map(|b| hcl::format::to_string(&b).expect("format"))
        .collect();
    assert!(bodies.iter().any(|b| b.contains("sts:AssumeRoleWithWebIdentity")
        && b.contains("system:serviceaccount:${var.service_account.namespace}:${var.service_account.name}")
        && b.contains(":aud")));
    assert!(bodies.iter().any(|b| b.contains("ec2.amazonaws.com")));
}

#[test]
fn the_example_wires_both_modules() {
    let root = load(&terraform_dir().join("envs/example"));
    let ddb = block(&root, "module", &["dynamodb"]).body();
    assert_eq!(text(ddb, "source"), "\"../../modules/dynamodb\"");
    for input in [
        "name_prefix",
        "replica_regions",
        "enable_point_in_time_recovery",
        "enable_cloudwatch_alarms",
        "tags",
    ] {
        assert!(
            attr(ddb, input).is_some(),
            "the example does not set {input}"
        );
    }
    let iam = block(&root, "module", &["autoscaler_iam"]).body();
    assert_eq!(text(iam, "source"), "\"../../modules/autoscaler-iam\"");
    assert_eq!(text(iam, "table_arns"), "module.dynamodb.table_arns");
    assert_eq!(text(iam, "regions"), "module.dynamodb.regions");
    let provider = block(&root, "provider", &["aws"]).body();
    assert_eq!(text(provider, "region"), "var.primary_region");
    let vars = |name: &str| text(block(&root, "variable", &[name]).body(), "default");
    assert_eq!(vars("primary_region"), "\"us-east-1\"");
    assert_eq!(vars("replica_regions"), "[\"us-east-2\", \"us-west-2\"]");
}

// ---------------------------------------------------------------------------------------------
// Deletion protection.

#[test]
fn every_table_and_every_replica_has_deletion_protection() {
    let m = module("dynamodb");
    for name in ["global", "regional"] {
        assert_eq!(
            text(table_resource(&m, name), "deletion_protection_enabled"),
            "var.deletion_protection",
            "aws_dynamodb_table.{name}"
        );
    }
    // A replica is a table of its own in its region: the table's setting does not protect it.
    let replica = content(dynamic(table_resource(&m, "global"), "replica"));
    assert_eq!(
        text(replica, "deletion_protection_enabled"),
        "var.deletion_protection",
        "the replicas of the global tables"
    );
    let v = block(&m, "variable", &["deletion_protection"]).body();
    assert_eq!(text(v, "default"), "true");
    assert_eq!(text(v, "type"), "bool");
}

#[test]
fn every_root_and_module_requires_a_provider_with_replica_deletion_protection() {
    // replica.deletion_protection_enabled arrived in hashicorp/aws 6.9.
    for dir in [
        "modules/dynamodb",
        "modules/autoscaler-iam",
        "modules/vpc-endpoints",
        "envs/example",
    ] {
        let blocks = load(&terraform_dir().join(dir));
        let tf = blocks
            .iter()
            .find(|b| b.identifier() == "terraform")
            .unwrap_or_else(|| panic!("{dir}: no terraform block"));
        let providers: Vec<&Block> = sub_blocks(tf.body(), "required_providers").collect();
        assert_eq!(providers.len(), 1, "{dir}: one required_providers block");
        let aws = object(attr(providers[0].body(), "aws").expect("aws provider"))
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(
            string(field(&aws, "version").expect("version")).as_deref(),
            Ok(">= 6.9, < 7.0"),
            "{dir}"
        );
        assert_eq!(
            string(field(&aws, "source").expect("source")).as_deref(),
            Ok("hashicorp/aws")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// VPC endpoints.

#[test]
fn the_role_is_restricted_to_each_services_vpc_endpoints_only_when_asked() {
    let policy = controller_policy();
    let denies: Vec<&Statement> = policy.iter().filter(|s| !s.is_allow()).collect();
    // Every service the controller calls, and only those.
    let called: BTreeSet<String> = IAM_ACTIONS
        .iter()
        .map(|a| a.split(':').next().expect("service").to_string())
        .collect();
    let denied: BTreeSet<String> = denies
        .iter()
        .map(|s| {
            assert_eq!(s.actions.len(), 1, "{}", s.sid);
            s.actions[0]
                .strip_suffix(":*")
                .unwrap_or_else(|| panic!("{}: deny the whole service", s.sid))
                .to_string()
        })
        .collect();
    assert_eq!(denied, called, "one Deny per service the controller calls");
    for s in &denies {
        let service = s.actions[0].trim_end_matches(":*");
        // The module's input names CloudWatch's endpoint service, "monitoring".
        let ids = match service {
            "cloudwatch" => "monitoring",
            other => other,
        };
        assert_eq!(
            s.gated_by.as_deref(),
            Some(
                format!("var.restrict_to_vpc_endpoints ? [var.vpc_endpoint_ids.{ids}] : []")
                    .as_str()
            ),
            "{}: only with restrict_to_vpc_endpoints, with {service}'s own endpoints",
            s.sid
        );
        assert_eq!(s.resources, "[\"*\"]", "{}", s.sid);
        // StringNotEquals is true when aws:SourceVpce is missing (a call not through an
        // endpoint), so such calls are denied too.
        assert_eq!(
            s.conditions,
            [(
                "\"StringNotEquals\"".to_string(),
                "\"aws:SourceVpce\"".to_string(),
                "statement.value".to_string()
            )],
            "{}",
            s.sid
        );
    }

    let m = module("autoscaler-iam");
    let restrict = block(&m, "variable", &["restrict_to_vpc_endpoints"]).body();
    assert_eq!(text(restrict, "default"), "false", "off unless asked for");
    let ids = block(&m, "variable", &["vpc_endpoint_ids"]).body();
    let conditions: Vec<String> = sub_blocks(ids, "validation")
        .map(|v| text(v.body(), "condition"))
        .collect();
    assert!(
        conditions
            .iter()
            .any(|c| c.starts_with("!var.restrict_to_vpc_endpoints ||")
                && ["dynamodb", "autoscaling", "monitoring"]
                    .iter()
                    .all(|s| c.contains(&format!("var.vpc_endpoint_ids.{s}")))),
        "restricting without every service's endpoints must be rejected: {conditions:?}"
    );
}

#[test]
fn the_endpoints_module_makes_a_gateway_for_dynamodb_and_interfaces_for_the_rest() {
    let m = module("vpc-endpoints");
    let ddb = block(&m, "resource", &["aws_vpc_endpoint", "dynamodb"]).body();
    assert_eq!(text(ddb, "for_each"), "var.networks");
    assert_eq!(text(ddb, "region"), "each.key");
    assert_eq!(text(ddb, "vpc_endpoint_type"), "\"Gateway\"");
    assert_eq!(
        text(ddb, "service_name"),
        "\"com.amazonaws.${each.key}.dynamodb\""
    );
    assert_eq!(text(ddb, "route_table_ids"), "each.value.route_table_ids");

    let itf = block(&m, "resource", &["aws_vpc_endpoint", "interface"]).body();
    assert_eq!(text(itf, "vpc_endpoint_type"), "\"Interface\"");
    assert_eq!(text(itf, "private_dns_enabled"), "true");
    assert_eq!(text(itf, "region"), "each.value.region");
    assert_eq!(
        text(itf, "service_name"),
        "\"com.amazonaws.${each.value.region}.${each.value.service}\""
    );
    assert_eq!(
        strings(local(&m, "interface_services")),
        ["autoscaling", "monitoring"]
    );
    let rule = block(
        &m,
        "resource",
        &["aws_vpc_security_group_ingress_rule", "https"],
    )
    .body();
    assert_eq!(text(rule, "from_port"), "443");
    assert_eq!(text(rule, "to_port"), "443");
    assert_eq!(
        text(rule, "cidr_ipv4"),
        "data.aws_vpc.controllers[each.key].cidr_block"
    );

    let out = text(block(&m, "output", &["endpoint_ids"]).body(), "value");
    for key in ["dynamodb =", "autoscaling =", "monitoring ="] {
        assert!(out.contains(key), "endpoint_ids lacks {key}: {out}");
    }
}

#[test]
fn the_example_wires_the_optional_vpc_endpoints_to_the_role() {
    let root = load(&terraform_dir().join("envs/example"));
    let enable = block(&root, "variable", &["enable_vpc_endpoints"]).body();
    assert_eq!(text(enable, "default"), "false", "off by default");
    let ep = block(&root, "module", &["vpc_endpoints"]).body();
    assert_eq!(text(ep, "source"), "\"../../modules/vpc-endpoints\"");
    assert_eq!(text(ep, "count"), "var.enable_vpc_endpoints ? 1 : 0");
    assert_eq!(text(ep, "networks"), "var.vpc_endpoint_networks");
    let iam = block(&root, "module", &["autoscaler_iam"]).body();
    assert_eq!(
        text(iam, "restrict_to_vpc_endpoints"),
        "var.enable_vpc_endpoints"
    );
    assert_eq!(
        text(iam, "vpc_endpoint_ids"),
        "var.enable_vpc_endpoints ? module.vpc_endpoints[0].endpoint_ids : null"
    );
    // Every region's controllers need endpoints once the role is restricted to them.
    let networks = block(&root, "variable", &["vpc_endpoint_networks"]).body();
    let conditions: Vec<String> = sub_blocks(networks, "validation")
        .map(|v| text(v.body(), "condition"))
        .collect();
    assert!(
        conditions.iter().any(|c| c.contains(
            "toset(keys(var.vpc_endpoint_networks)) == toset(concat([var.primary_region], var.replica_regions))"
        )),
        "{conditions:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Layout: what `terraform fmt` would write (hclwrite's rules), checked without Terraform.

/// The problems `terraform fmt` would fix in `text`: each line indented two spaces per open
/// bracket level (a line that opens several brackets indents once, as hclwrite does), and the
/// `=` of consecutive one-line attributes aligned one space after the longest name. A line
/// that is blank, a comment, or opens a multi-line value ends such a run.
fn fmt_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut stack: Vec<i32> = Vec::new();
    let mut heredoc: Option<String> = None;
    // (line number, name width, column of `=`) of the current run of attribute lines.
    let mut run: Vec<(usize, usize, usize)> = Vec::new();
    let close = |run: &mut Vec<(usize, usize, usize)>, problems: &mut Vec<String>| {
        let width = run.iter().map(|r| r.1).max().unwrap_or(0);
        for &(n, _, eq) in run.iter() {
            if eq != width + 1 {
                problems.push(format!(
                    "line {n}: `=` at column {eq}, terraform fmt puts it at {}",
                    width + 1
                ));
            }
        }
        run.clear();
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("//") {
            close(&mut run, &mut problems);
            continue;
        }
        if line.contains('\t') || line.ends_with(' ') {
            problems.push(format!("line {n}: a tab or trailing space"));
        }
        // Brackets outside strings (interpolations count, as in hclwrite), and the first `=`.
        let (mut net, mut before_eq, mut eq) = (0i32, 0i32, None);
        let (mut in_str, mut interp) = (false, 0);
        let b = line.as_bytes();
        let mut j = 0;
        while j < b.len() {
            let c = b[j];
            if in_str {
                match c {
                    b'\\' => j += 1,
                    b'"' => in_str = false,
                    b'$' if b.get(j + 1) == Some(&b'{') => {
                        net += 1;
                        interp += 1;
                        in_str = false;
                        j += 1;
                    }
                    _ => {}
                }
            } else if interp > 0 && c == b'}' {
                net -= 1;
                interp -= 1;
                in_str = true;
            } else {
                match c {
                    b'"' => in_str = true,
                    b'#' => break,
                    b'/' if b.get(j + 1) == Some(&b'/') => break,
                    b'<' if line[j..].starts_with("<<") => {
                        heredoc = Some(line[j..].trim_start_matches(['<', '-']).to_string());
                    }
                    b'{' | b'[' | b'(' => net += 1,
                    b'}' | b']' | b')' => net -= 1,
                    b'=' if eq.is_none()
                        && b.get(j + 1) != Some(&b'=')
                        && !matches!(b.get(j.wrapping_sub(1)), Some(b'!' | b'<' | b'>' | b'=')) =>
                    {
                        eq = Some(j);
                        before_eq = net;
                    }
                    _ => {}
                }
            }
            j += 1;
        }
        let want = match net {
            0 => 2 * stack.len(),
            _ if net > 0 => {
                stack.push(net);
                2 * (stack.len() - 1)
            }
            _ => {
                let mut closed = -net;
                while closed > 0 {
                    let Some(top) = stack.last_mut() else { break };
                    if closed >= *top {
                        closed -= *top;
                        stack.pop();
                    } else {
                        *top -= closed;
                        closed = 0;
                    }
                }
                2 * stack.len()
            }
        };
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent != want {
            problems.push(format!(
                "line {n}: indented {indent}, terraform fmt indents {want}"
            ));
        }
        match eq {
            // A one-line attribute: the value's brackets close on the line.
            Some(e) if before_eq == 0 && net == 0 => {
                run.push((n, line[..e].trim_end().len(), e));
            }
            _ => close(&mut run, &mut problems),
        }
    }
    close(&mut run, &mut problems);
    problems
}

fn tf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable directory") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            tf_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "tf") {
            out.push(p);
        }
    }
}

#[test]
fn every_terraform_file_is_laid_out_as_terraform_fmt_would() {
    let mut files = Vec::new();
    tf_files(&terraform_dir(), &mut files);
    assert!(files.len() >= 10, "found only {files:?}");
    let mut bad = Vec::new();
    for f in &files {
        for p in fmt_problems(&std::fs::read_to_string(f).expect("readable")) {
            bad.push(format!("{}: {p}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "not as terraform fmt writes it:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_layout_check_finds_what_terraform_fmt_would_change() {
    let good = "locals {\n  a  = 1\n  bc = 2\n  d = [\n    \"x\",\n  ]\n  # c\n  e = jsonencode({\n    k = \"${var.x}\"\n  })\n}\n";
    assert_eq!(fmt_problems(good), Vec::<String>::new());
    // Unaligned `=` in a run, and a wrong indent.
    assert_eq!(fmt_problems("locals {\n  a = 1\n  bcd = 2\n}\n").len(), 1);
    assert_eq!(fmt_problems("locals {\n   a = 1\n}\n").len(), 1);
    // The run that was wrong in autoscaler-iam: a comment starts a new run.
    let iam = "locals {\n  # c\n  instance_table_arns = 1\n  index_arns         = 2\n}\n";
    assert_eq!(fmt_problems(iam).len(), 1);
}
