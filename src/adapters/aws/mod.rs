//! The production backend: the ports on DynamoDB, Auto Scaling and CloudWatch through the AWS
//! SDK for Rust.
//!
//! Every call goes through one [`Caller`]: a `governor` rate limit per service in front, the
//! SDK's standard retry mode (with backoff) and timeouts inside, and Prometheus counters
//! around (`aws_calls_total`, `aws_errors_total{kind}`, `aws_throttles_total`). Errors become
//! [`PortError`]s by one mapping (`error::classify`). Every DynamoDB call asks for
//! `ReturnConsumedCapacity=TOTAL` (free) and books it in the [`CostMeter`].
//!
//! Naming convention, checked by a test against `schema::IAM_ACTIONS`: the SDK clients are
//! always reached as `ddb`, `asg` or `cw`, and each operation is called as `<client>.op()`.

mod actuator;
mod decision_log;
mod error;
mod gauges;
mod inventory;
mod item;
mod lease;
mod meter;
mod metrics_source;
mod streams;
pub mod tables;

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::ports::Backends;
use crate::ports::{LeaseStore, PortError};
use crate::schema;
use crate::telemetry::Metrics;

pub use actuator::AsgActuator;
pub use decision_log::{DynamoDecisionLog, record_from_item, record_to_item};
pub use gauges::{CloudWatchGauges, NAMESPACE as CLOUDWATCH_NAMESPACE, UTILISATION_METRIC};
pub use gauges::{
    DEFAULT_EVERY as CLOUDWATCH_DEFAULT_EVERY, METRICS_PER_REGION as CLOUDWATCH_METRICS_PER_REGION,
    calls_for as cloudwatch_calls_for, publishes_per_month as cloudwatch_publishes,
};
pub use inventory::DEFAULT_RESYNC_EVERY;
pub use inventory::DynamoInventory;
pub use item::{BadItem, BadReason, item_size};
pub use lease::DynamoLeaseStore;
pub use meter::{CostMeter, Usage};
/// The pricing rules the meter books by, for the call plan (`app::plan`).
pub(crate) use meter::{get_item_units, query_page_units, write_item_units};
pub use metrics_source::DynamoMetricsSource;

/// How to reach AWS and how hard to lean on it.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    pub region: String,
    pub table_prefix: String,
    /// A local server (moto, LocalStack) instead of AWS.
    pub endpoint_url: Option<String>,
    /// Attempts per call in the SDK's standard retry mode (exponential backoff with jitter).
    pub max_attempts: u32,
    /// Calls per second, per service, that this controller allows itself.
    pub dynamodb_per_sec: u32,
    pub autoscaling_per_sec: u32,
    pub cloudwatch_per_sec: u32,
    /// How long one read of a region's routing health serves the pools of that region: the
    /// pools of one cycle share it (one Query instead of one per pool).
    pub join_max_age: Duration,
    /// Publish the pools' summary to CloudWatch (leader only).
    pub cloudwatch: bool,
    /// At most one CloudWatch publish per this period.
    pub cloudwatch_every: Duration,
    /// Follow the instances, routing and cleanup tables through DynamoDB Streams between full
    /// reads (false: read them in full every cycle, as before streams).
    pub streams: bool,
    /// Read the streamed tables in full at least this often, streams or not.
    pub resync_every: Duration,
}

impl AwsOptions {
    pub fn new(region: &str, table_prefix: &str, endpoint_url: Option<String>) -> Self {
        AwsOptions {
            region: region.to_string(),
            table_prefix: table_prefix.to_string(),
            endpoint_url,
            max_attempts: 4,
            dynamodb_per_sec: 50,
            autoscaling_per_sec: 5,
            cloudwatch_per_sec: 10,
            join_max_age: Duration::from_secs(10),
            cloudwatch: true,
            cloudwatch_every: gauges::DEFAULT_EVERY,
            streams: true,
            resync_every: inventory::DEFAULT_RESYNC_EVERY,
        }
    }
}

/// Build the SDK configuration: the standard credential chain, `region`, the standard retry
/// mode with `max_attempts`, and timeouts that keep one cycle bounded.
pub async fn load_sdk_config(opts: &AwsOptions) -> SdkConfig {
    let retry =
        aws_config::retry::RetryConfig::standard().with_max_attempts(opts.max_attempts.max(1));
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(20))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(opts.region.clone()))
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(url) = &opts.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The AWS services the controller calls, for labels and rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    DynamoDb,
    AutoScaling,
    CloudWatch,
}

impl Service {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Service::DynamoDb => "dynamodb",
            Service::AutoScaling => "autoscaling",
            Service::CloudWatch => "cloudwatch",
        }
    }
}

/// Rate limits and metrics around every call.
pub(crate) struct Caller {
    metrics: Metrics,
    dynamodb: DefaultDirectRateLimiter,
    autoscaling: DefaultDirectRateLimiter,
    cloudwatch: DefaultDirectRateLimiter,
}

fn limiter(per_sec: u32) -> DefaultDirectRateLimiter {
    let n = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(n).allow_burst(n))
}

impl Caller {
    fn new(metrics: Metrics, opts: &AwsOptions) -> Self {
        Caller {
            metrics,
            dynamodb: limiter(opts.dynamodb_per_sec),
            autoscaling: limiter(opts.autoscaling_per_sec),
            cloudwatch: limiter(opts.cloudwatch_per_sec),
        }
    }

    /// Wait for the service's rate limit, run the call (the future does nothing until polled),
    /// and count it. The raw SDK error is returned so callers can look at typed details
    /// (cancellation reasons, the old item of a failed condition).
    pub(crate) async fn call<T, E>(
        &self,
        service: Service,
        operation: &'static str,
        fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, SdkError<E, HttpResponse>>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let limit = match service {
            Service::DynamoDb => &self.dynamodb,
            Service::AutoScaling => &self.autoscaling,
            Service::CloudWatch => &self.cloudwatch,
        };
        let labels = [service.label(), operation];
        if limit.check().is_err() {
            self.metrics.aws_throttles.with_label_values(&labels).inc();
            limit.until_ready().await;
        }
        self.metrics.aws_calls.with_label_values(&labels).inc();
        let result = fut.await;
        if let Err(e) = &result {
            let kind = error::classify(e).kind();
            self.metrics
                .aws_errors
                .with_label_values(&[service.label(), operation, kind])
                .inc();
        }
        result
    }
}

/// Counts every throttled *attempt* (the SDK retries them with backoff inside one call, so
/// the caller would only see the last one).
#[derive(Clone)]
struct ThrottleCounter {
    metrics: Metrics,
    service: Service,
}

impl std::fmt::Debug for ThrottleCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleCounter")
            .field("service", &self.service)
            .finish()
    }
}

impl Intercept for ThrottleCounter {
    fn name(&self) -> &'static str {
        "mrgc-throttle-counter"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        let status = response.status().as_u16();
        let body = response.body().bytes().unwrap_or_default();
        if error::is_throttling_response(status, body) {
            let op = cfg
                .load::<Metadata>()
                .map_or("unknown", |m| m.name())
                .to_string();
            self.metrics
                .aws_throttles
                .with_label_values(&[self.service.label(), &op])
                .inc();
        }
        Ok(())
    }
}

/// The three SDK clients, the shared caller, the bad-item reporter and the cost meter.
pub struct AwsClients {
    pub(crate) ddb: aws_sdk_dynamodb::Client,
    pub(crate) asg: aws_sdk_autoscaling::Client,
    pub(crate) cw: aws_sdk_cloudwatch::Client,
    /// DynamoDB Streams (the informer's change feed).
    pub(crate) streams: aws_sdk_dynamodbstreams::Client,
    pub(crate) caller: Caller,
    pub(crate) bad: item::BadItems,
    pub(crate) meter: CostMeter,
    pub(crate) prefix: String,
}

impl AwsClients {
    pub fn new(sdk: &SdkConfig, opts: &AwsOptions, metrics: &Metrics) -> Self {
        let ddb_conf = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(ThrottleCounter {
                metrics: metrics.clone(),
                service: Service::DynamoDb,
            })
            .build();
        let asg_conf = aws_sdk_autoscaling::config::Builder::from(sdk)
            .interceptor(ThrottleCounter {
                metrics: metrics.clone(),
                service: Service::AutoScaling,
            })
            .build();
        let cw_conf = aws_sdk_cloudwatch::config::Builder::from(sdk)
            .interceptor(ThrottleCounter {
                metrics: metrics.clone(),
                service: Service::CloudWatch,
            })
            .build();
        let streams_conf = aws_sdk_dynamodbstreams::config::Builder::from(sdk)
            .interceptor(ThrottleCounter {
                metrics: metrics.clone(),
                service: Service::DynamoDb,
            })
            .build();
        Self::from_clients(
            aws_sdk_dynamodb::Client::from_conf(ddb_conf),
            aws_sdk_autoscaling::Client::from_conf(asg_conf),
            aws_sdk_cloudwatch::Client::from_conf(cw_conf),
            opts,
            metrics,
        )
        .with_streams(aws_sdk_dynamodbstreams::Client::from_conf(streams_conf))
    }

    /// The same clients with `streams` as the DynamoDB Streams client.
    pub fn with_streams(mut self, streams: aws_sdk_dynamodbstreams::Client) -> Self {
        self.streams = streams;
        self
    }

    /// From clients built elsewhere (tests with aws-smithy-mocks). The streams client is one
    /// for the DynamoDB client's region with no endpoint of its own: give it a real one with
    /// `with_streams` (the inventory reads in full when it cannot follow the streams).
    pub fn from_clients(
        ddb: aws_sdk_dynamodb::Client,
        asg: aws_sdk_autoscaling::Client,
        cw: aws_sdk_cloudwatch::Client,
        opts: &AwsOptions,
        metrics: &Metrics,
    ) -> Self {
        let streams = aws_sdk_dynamodbstreams::Client::from_conf(
            aws_sdk_dynamodbstreams::Config::builder()
                .behavior_version_latest()
                .region(
                    ddb.config()
                        .region()
                        .map(|r| aws_sdk_dynamodbstreams::config::Region::new(r.to_string())),
                )
                .build(),
        );
        AwsClients {
            ddb,
            asg,
            cw,
            streams,
            caller: Caller::new(metrics.clone(), opts),
            bad: item::BadItems::new(metrics.clone()),
            meter: CostMeter::new(metrics.clone()),
            prefix: opts.table_prefix.clone(),
        }
    }

    pub(crate) fn table(&self, t: &schema::TableSchema) -> String {
        t.table_name(&self.prefix)
    }

    pub fn meter(&self) -> &CostMeter {
        &self.meter
    }

    pub fn table_prefix(&self) -> &str {
        &self.prefix
    }
}

/// Every AWS adapter, sharing one set of clients.
#[derive(Clone)]
pub struct AwsBackends {
    pub clients: Arc<AwsClients>,
    pub metrics: Arc<DynamoMetricsSource>,
    pub inventory: Arc<DynamoInventory>,
    pub actuator: Arc<AsgActuator>,
    pub log: Arc<DynamoDecisionLog>,
    pub leases: Arc<DynamoLeaseStore>,
    pub gauges: Option<Arc<CloudWatchGauges>>,
}

impl AwsBackends {
    /// The production wiring: SDK clients from the standard credential chain for `region`,
    /// tables under `table_prefix`, optionally a local server at `endpoint_url`.
    pub async fn connect(
        region: &str,
        table_prefix: &str,
        endpoint_url: Option<String>,
        metrics: &Metrics,
    ) -> (Backends, Arc<dyn LeaseStore>) {
        let opts = AwsOptions::new(region, table_prefix, endpoint_url);
        Self::build(&opts, metrics).await.ports()
    }

    pub async fn build(opts: &AwsOptions, metrics: &Metrics) -> Self {
        let sdk = load_sdk_config(opts).await;
        Self::from_clients(AwsClients::new(&sdk, opts, metrics), opts)
    }

    pub fn from_clients(clients: AwsClients, opts: &AwsOptions) -> Self {
        let clients = Arc::new(clients);
        AwsBackends {
            metrics: Arc::new(DynamoMetricsSource::new(clients.clone())),
            inventory: Arc::new(DynamoInventory::with_streams(
                clients.clone(),
                opts.join_max_age,
                opts.streams,
                opts.resync_every,
            )),
            actuator: Arc::new(AsgActuator::new(clients.clone())),
            log: Arc::new(DynamoDecisionLog::new(clients.clone())),
            leases: Arc::new(DynamoLeaseStore::new(clients.clone())),
            gauges: opts.cloudwatch.then(|| {
                Arc::new(CloudWatchGauges::new(
                    clients.clone(),
                    opts.cloudwatch_every,
                ))
            }),
            clients,
        }
    }

    /// The ports the reconciler and the elector take.
    pub fn ports(&self) -> (Backends, Arc<dyn LeaseStore>) {
        let gauges: Option<Arc<dyn crate::ports::GaugeSink>> = match &self.gauges {
            Some(g) => Some(g.clone()),
            None => None,
        };
        (
            Backends {
                metrics: self.metrics.clone(),
                inventory: self.inventory.clone(),
                actuator: self.actuator.clone(),
                log: self.log.clone(),
                gauges,
            },
            self.leases.clone(),
        )
    }
}

/// Map an SDK error to the port's error, for callers that need no typed detail.
pub(crate) fn port_error<E>(context: &str, err: &SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error::classify(err) {
        PortError::Transient(m) => PortError::Transient(format!("{context}: {m}")),
        PortError::Permanent(m) => PortError::Permanent(format!("{context}: {m}")),
        PortError::Conflict(m) => PortError::Conflict(format!("{context}: {m}")),
        PortError::NotFound(m) => PortError::NotFound(format!("{context}: {m}")),
    }
}

/// Run a Query to its end (following `LastEvaluatedKey` past DynamoDB's 1 MB pages), or until
/// `limit` items arrived; books every page in the cost meter.
pub(crate) async fn query_pages(
    c: &AwsClients,
    table: &str,
    what: &str,
    limit: Option<usize>,
    build: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
) -> Result<Vec<item::Item>, PortError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = c
            .caller
            .call(
                Service::DynamoDb,
                "Query",
                build()
                    .set_exclusive_start_key(start.take())
                    .return_consumed_capacity(
                        aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total,
                    )
                    .send(),
            )
            .await
            .map_err(|e| port_error(&format!("{what} ({table})"), &e))?;
        let page = out.items();
        let bytes = page.iter().map(item::item_size).sum();
        c.meter.book(
            table,
            "Query",
            meter::Op::Read,
            meter::one(out.consumed_capacity()),
            meter::query_page_units(bytes),
            0.0,
        );
        items.extend(page.iter().cloned());
        if limit.is_some_and(|l| items.len() >= l) {
            break;
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(items)
}

#[cfg(test)]
mod iam_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{GaugeSink, PoolGauges};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    #[tokio::test]
    async fn throttled_attempts_are_counted_by_the_interceptor() {
        let metrics = Metrics::new("us-east-1");
        let rule = mock!(aws_sdk_cloudwatch::Client::put_metric_data).then_http_response(|| {
            Response::new(
                StatusCode::try_from(400).expect("a valid status"),
                SdkBody::from(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
            )
        });
        let m = metrics.clone();
        let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &[&rule], move |b| b
            .interceptor(ThrottleCounter {
                metrics: m.clone(),
                service: Service::CloudWatch,
            }));
        let ddb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version_latest()
                .region(Region::new("us-east-1"))
                .build(),
        );
        let asg = aws_sdk_autoscaling::Client::from_conf(
            aws_sdk_autoscaling::Config::builder()
                .behavior_version_latest()
                .region(Region::new("us-east-1"))
                .build(),
        );
        let opts = AwsOptions::new("us-east-1", "p", None);
        let clients = Arc::new(AwsClients::from_clients(ddb, asg, cw, &opts, &metrics));
        let sink = CloudWatchGauges::new(clients, std::time::Duration::ZERO);
        let g = PoolGauges {
            rps: Some(1.0),
            serving: 1,
            launching: 0,
            desired: 1,
            utilisation: Some(1.0),
        };
        assert!(
            sink.publish("us-east-1", &[("p".to_string(), g)])
                .await
                .is_err()
        );
        let labels = ["cloudwatch", "PutMetricData"];
        assert!(metrics.aws_throttles.with_label_values(&labels).get() >= 1);
        assert_eq!(metrics.aws_calls.with_label_values(&labels).get(), 1);
    }

    #[tokio::test]
    async fn our_own_rate_limit_waits_and_is_counted() {
        let metrics = Metrics::new("us-east-1");
        let mut opts = AwsOptions::new("us-east-1", "p", None);
        opts.dynamodb_per_sec = 1;
        let caller = Caller::new(metrics.clone(), &opts);
        let ok = || async {
            Ok::<(), SdkError<aws_sdk_dynamodb::operation::query::QueryError, HttpResponse>>(())
        };
        caller
            .call(Service::DynamoDb, "Query", ok())
            .await
            .expect("first call passes at once");
        let started = tokio::time::Instant::now();
        caller
            .call(Service::DynamoDb, "Query", ok())
            .await
            .expect("second call waits, then passes");
        assert!(started.elapsed() >= std::time::Duration::from_millis(500));
        let labels = ["dynamodb", "Query"];
        assert_eq!(metrics.aws_throttles.with_label_values(&labels).get(), 1);
        assert_eq!(metrics.aws_calls.with_label_values(&labels).get(), 2);
    }
}
