//! Shared by the tests against a real AWS-compatible server (moto, started by scripts/moto).
#![allow(dead_code)] // each test crate uses a different part

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use mrgc_autoscaler::adapters::aws::{AwsBackends, AwsClients, AwsOptions, tables};
use mrgc_autoscaler::core::PolicySet;
use mrgc_autoscaler::core::policy::{PolicySource, parse_sources};
use mrgc_autoscaler::schema;
use mrgc_autoscaler::telemetry::Metrics;

/// The server's endpoint, or None after printing why the test is skipped. Under `CI=true` a
/// missing endpoint fails the test: CI must run these.
pub fn endpoint() -> Option<String> {
    match std::env::var("MRGC_TEST_AWS_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "MRGC_TEST_AWS_ENDPOINT is not set but CI=true: the AWS integration tests must \
                 run in CI. Run them through scripts/test (or scripts/moto cargo test)."
            );
            eprintln!(
                "SKIPPED: MRGC_TEST_AWS_ENDPOINT is not set; run `scripts/moto cargo test` or \
                 `scripts/test` to run this test against moto"
            );
            None
        }
    }
}

/// `let endpoint = moto!();` — the endpoint, or return from the test after a printed skip.
#[macro_export]
macro_rules! moto {
    () => {
        match support::endpoint() {
            Some(e) => e,
            None => return,
        }
    };
}

/// A table prefix no other test (or run) uses: tests run in parallel on one server.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t{}-{nanos:09}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub async fn sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

/// One controller's view of the server: the adapters plus raw clients for arranging data.
pub struct Env {
    pub endpoint: String,
    pub region: String,
    pub prefix: String,
    pub metrics: Metrics,
    pub aws: AwsBackends,
    pub ddb: aws_sdk_dynamodb::Client,
    pub asg: aws_sdk_autoscaling::Client,
}

impl Env {
    /// Adapters for `region` on tables under `prefix` (not created).
    pub async fn connect(endpoint: &str, region: &str, prefix: &str) -> Env {
        let sdk = sdk_config(endpoint, region).await;
        let metrics = Metrics::new(region);
        let mut opts = AwsOptions::new(region, prefix, Some(endpoint.to_string()));
        opts.cloudwatch = false; // moto cannot speak CloudWatch's CBOR protocol
        opts.join_max_age = Duration::ZERO; // every read sees the latest routing state
        let aws = AwsBackends::from_clients(AwsClients::new(&sdk, &opts, &metrics), &opts);
        Env {
            endpoint: endpoint.to_string(),
            region: region.to_string(),
            prefix: prefix.to_string(),
            metrics,
            aws,
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            asg: aws_sdk_autoscaling::Client::new(&sdk),
        }
    }

    /// New adapters (same metrics) whose inventory shares one routing read for
    /// `join_max_age`, as in production.
    pub async fn share_joins_for(&mut self, join_max_age: Duration) {
        let sdk = sdk_config(&self.endpoint, &self.region).await;
        let mut opts = AwsOptions::new(&self.region, &self.prefix, Some(self.endpoint.clone()));
        opts.cloudwatch = false;
        opts.join_max_age = join_max_age;
        self.aws = AwsBackends::from_clients(AwsClients::new(&sdk, &opts, &self.metrics), &opts);
    }

    /// Adapters plus freshly created tables.
    pub async fn with_tables(endpoint: &str, region: &str, name: &str) -> Env {
        let env = Env::connect(endpoint, region, &unique_prefix(name)).await;
        tables::create_tables(&env.aws.clients, &schema::ALL, Duration::from_secs(60))
            .await
            .expect("tables create");
        env
    }

    pub fn table(&self, t: &schema::TableSchema) -> String {
        t.table_name(&self.prefix)
    }

    pub async fn put(&self, t: &schema::TableSchema, item: Item) {
        self.ddb
            .put_item()
            .table_name(self.table(t))
            .set_item(Some(item))
            .send()
            .await
            .expect("put item");
    }

    /// Many items at once (25 per BatchWriteItem, retrying what comes back unprocessed).
    pub async fn put_many(&self, t: &schema::TableSchema, items: Vec<Item>) {
        let table = self.table(t);
        for chunk in items.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|i| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(i.clone()))
                                .build()
                                .expect("put request"),
                        )
                        .build()
                })
                .collect();
            while !pending.is_empty() {
                let out = self
                    .ddb
                    .batch_write_item()
                    .request_items(&table, pending)
                    .send()
                    .await
                    .expect("batch write");
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&table))
                    .cloned()
                    .unwrap_or_default();
            }
        }
    }

    /// A router's per-minute RPS sample (DESIGN §3 convention).
    pub async fn put_rps(&self, pool: &str, minute_end_s: i64, rps: f64) {
        self.put(
            &schema::METRICS,
            rps_item(pool, &self.region, minute_end_s, rps),
        )
        .await;
    }

    /// A steady pool as the cost tests seed it: its group `<prefix>-<pool>` holding `n`
    /// instances, and `n` available, healthy instances whose cleanup passed, heartbeats at
    /// `t0_s` (the policy's long heartbeat timeout keeps them fresh: they are not refreshed).
    /// Returns the pool's policy. `extra_validations` are written with the pool's own.
    pub async fn seed_steady_pool(
        &self,
        pool: &str,
        n: usize,
        t0_s: i64,
        extra_validations: Vec<Item>,
    ) -> PolicySource {
        let region = &self.region;
        let asg = format!("{}-{pool}", self.prefix);
        self.create_asg(&asg, 0, 200, n as i32).await;
        let mut instances = Vec::new();
        let mut routing = Vec::new();
        let mut validations = Vec::new();
        for k in 0..n {
            let id = format!("i-{pool}-{k:04}");
            instances.push(instance_item(
                &id,
                pool,
                region,
                "available",
                t0_s,
                t0_s - 86_400,
            ));
            routing.push(routing_item(&id, region, "healthy", 70.0));
            validations.push(validation_item(&id, t0_s - 80_000, "passed"));
        }
        validations.extend(extra_validations);
        self.put_many(&schema::GPU_INSTANCES, instances).await;
        self.put_many(&schema::ROUTING_STATE, routing).await;
        self.put_many(&schema::CLEANUP_VALIDATION, validations)
            .await;
        PolicySource {
            path: format!("{pool}.toml").into(),
            text: format!(
                "pool = \"{pool}\"\nmin = 2\nmax = 120\n[instances]\nheartbeat_timeout = \"3h\"\n\
                 [regions.{region}]\nasg = \"{asg}\"\n"
            ),
        }
    }

    /// An Auto Scaling Group with a launch template, as moto needs (an AZ, any AMI).
    pub async fn create_asg(&self, name: &str, min: i32, max: i32, desired: i32) {
        let template = format!("{name}-lt");
        create_launch_template(&self.endpoint, &self.region, &template).await;
        self.asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_name(&template)
                    .version("$Latest")
                    .build(),
            )
            .min_size(min)
            .max_size(max)
            .desired_capacity(desired)
            .availability_zones(format!("{}a", self.region))
            .send()
            .await
            .expect("create ASG");
    }

    pub async fn asg_desired(&self, name: &str) -> i32 {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .expect("describe ASG");
        out.auto_scaling_groups()
            .first()
            .and_then(|g| g.desired_capacity())
            .expect("ASG has a desired capacity")
    }

    /// The instance ids the group holds, sorted.
    pub async fn asg_members(&self, name: &str) -> Vec<String> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .expect("describe ASG");
        let mut ids: Vec<String> = out
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// An instance's item in the instances table, as stored.
    pub async fn instance(&self, id: &str) -> Item {
        self.ddb
            .get_item()
            .table_name(self.table(&schema::GPU_INSTANCES))
            .key("instance_id", s(id))
            .send()
            .await
            .expect("get instance item")
            .item
            .expect("instance item exists")
    }

    pub fn bad_items(&self, table: &str, reason: &str) -> u64 {
        self.metrics
            .bad_items
            .with_label_values(&[table, reason])
            .get()
    }
}

pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// An instance item with every attribute of the seed, as an instance registers itself.
pub fn instance_item(
    id: &str,
    pool: &str,
    region: &str,
    state: &str,
    heartbeat_s: i64,
    launch_s: i64,
) -> Item {
    let mut i = Item::new();
    i.insert("instance_id".into(), s(id));
    i.insert("region".into(), s(region));
    i.insert("model_pool".into(), s(pool));
    i.insert("state".into(), s(state));
    i.insert("queue_depth".into(), n(3));
    i.insert("last_heartbeat".into(), n(heartbeat_s));
    i.insert("launch_time".into(), n(launch_s));
    i.insert("ip_address".into(), s("10.42.17.203"));
    i.insert("subnet_id".into(), s("subnet-0a1b2c3d4e5f60718"));
    i.insert("availability_zone".into(), s(&format!("{region}a")));
    i.insert(
        "metadata".into(),
        s(r#"{"instance_type":"p4d.24xlarge","ami":"ami-0c55b159cbfafe1f0","gpus":8,"model_version":"2026-10-01","driver":"550.54"}"#),
    );
    i.insert("ttl".into(), n(launch_s + 30 * 86_400));
    i
}

/// A routing-state item as routers write it.
pub fn routing_item(id: &str, region: &str, health: &str, score: f64) -> Item {
    let mut i = Item::new();
    i.insert("instance_id".into(), s(id));
    i.insert("region".into(), s(region));
    i.insert("routing_score".into(), n(score));
    i.insert("queue_depth".into(), n(2));
    i.insert("avg_latency_ms".into(), n(412));
    i.insert("health_status".into(), s(health));
    i.insert("last_updated".into(), n(1_764_000_000));
    i.insert("subnet_cidr".into(), s("10.42.16.0/20"));
    i.insert("ttl".into(), n(1_764_003_600));
    i
}

/// A cleanup-validation item as the car wash writes it.
pub fn validation_item(id: &str, at_s: i64, status: &str) -> Item {
    let mut i = Item::new();
    i.insert("instance_id".into(), s(id));
    i.insert("validation_timestamp".into(), n(at_s));
    i.insert("validation_status".into(), s(status));
    i.insert(
        "gpu_memory_wiped".into(),
        AttributeValue::Bool(status != "failed"),
    );
    i.insert("system_memory_wiped".into(), AttributeValue::Bool(true));
    i.insert("enclave_stopped".into(), AttributeValue::Bool(true));
    i.insert(
        "integrity_check".into(),
        s("sha256:9f86d081884c7d659a2feaa0c55ad015"),
    );
    i.insert("validator_id".into(), s("carwash-1"));
    i.insert("ttl".into(), n(at_s + 90 * 86_400));
    i
}

/// A metrics item by the router convention: `rps#<pool>#<region>`, minute end in seconds.
pub fn rps_item(pool: &str, region: &str, minute_end_s: i64, rps: f64) -> Item {
    let mut i = Item::new();
    i.insert("metric_name".into(), s(&format!("rps#{pool}#{region}")));
    i.insert("timestamp".into(), n(minute_end_s));
    i.insert("model_pool".into(), s(pool));
    i.insert("region".into(), s(region));
    i.insert("value".into(), n(rps));
    i.insert("unit".into(), s("Count/Second"));
    i.insert("ttl".into(), n(minute_end_s + 30 * 86_400));
    i
}

/// A policy for one pool in the given regions, each with its ASG.
pub fn policy(pool: &str, min: u32, max: u32, asgs: &[(&str, &str)]) -> PolicySet {
    let mut text = format!(
        "pool = \"{pool}\"\nmin = {min}\nmax = {max}\n\n[scale_down]\nstabilization = \"2m\"\n"
    );
    for (region, asg) in asgs {
        text.push_str(&format!("\n[regions.{region}]\nasg = \"{asg}\"\n"));
    }
    parse_sources(&[PolicySource {
        path: format!("{pool}.toml").into(),
        text,
    }])
    .expect("valid test policy")
}

/// EC2 CreateLaunchTemplate by hand (the project has no EC2 client): moto reads the service
/// and region from the credential scope and checks no signature.
pub async fn create_launch_template(endpoint: &str, region: &str, name: &str) {
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let body = format!(
        "Action=CreateLaunchTemplate&Version=2016-11-15&LaunchTemplateName={name}\
         &LaunchTemplateData.ImageId=ami-12c6146b&LaunchTemplateData.InstanceType=t3.micro"
    );
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/{region}/ec2/aws4_request, \
         SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect to moto");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send CreateLaunchTemplate");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read CreateLaunchTemplate response");
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "CreateLaunchTemplate failed: {response}"
    );
}
