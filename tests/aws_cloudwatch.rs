//! The CloudWatch gauge adapter, against aws-smithy-mocks: moto cannot speak the CBOR protocol
//! aws-sdk-cloudwatch ≥ 1.100 uses, so the requests are checked as the SDK builds them, just
//! before they would go on the wire.

use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatch::operation::put_metric_data::{
    PutMetricDataError, PutMetricDataInput, PutMetricDataOutput,
};
use aws_sdk_cloudwatch::types::error::InvalidParameterValueException;
use aws_smithy_mocks::{RuleMode, mock, mock_client};

use mrgc_autoscaler::adapters::aws::{
    AwsBackends, AwsClients, AwsOptions, CLOUDWATCH_NAMESPACE, UTILISATION_METRIC,
};
use mrgc_autoscaler::ports::{GaugeSink, PoolGauges, PortError};
use mrgc_autoscaler::telemetry::Metrics;

fn backends(cw: aws_sdk_cloudwatch::Client, metrics: &Metrics) -> AwsBackends {
    // DynamoDB and Auto Scaling clients that are never called here.
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build(),
    );
    let asg = aws_sdk_autoscaling::Client::from_conf(
        aws_sdk_autoscaling::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_autoscaling::config::Region::new("us-east-1"))
            .build(),
    );
    let opts = AwsOptions::new("us-east-1", "mrgc-test", None);
    AwsBackends::from_clients(
        AwsClients::from_clients(ddb, asg, cw, &opts, metrics),
        &opts,
    )
}

/// (metric, value, dimensions) of each data point.
type Point = (String, f64, Vec<(String, String)>);

fn points(input: &PutMetricDataInput) -> Vec<Point> {
    input
        .metric_data()
        .iter()
        .map(|d| {
            (
                d.metric_name().unwrap_or("").to_string(),
                d.value().unwrap_or(f64::NAN),
                d.dimensions()
                    .iter()
                    .map(|x| {
                        (
                            x.name().unwrap_or("").to_string(),
                            x.value().unwrap_or("").to_string(),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_pool_goes_in_one_call_as_one_distribution_per_region_at_most_once_a_period() {
    let seen: Arc<Mutex<Vec<PutMetricDataInput>>> = Arc::default();
    let record = seen.clone();
    let rule = mock!(aws_sdk_cloudwatch::Client::put_metric_data)
        .match_requests(move |req| {
            record.lock().unwrap().push(req.clone());
            true
        })
        .then_output(|| PutMetricDataOutput::builder().build());
    let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &[&rule]);
    let metrics = Metrics::new("us-east-1");
    let aws = backends(cw, &metrics);
    let sink = aws
        .gauges
        .clone()
        .expect("CloudWatch gauges are on by default");
    let gauges = |rps: Option<f64>, serving: u32, utilisation: Option<f64>| PoolGauges {
        rps,
        serving,
        launching: 0,
        desired: serving,
        utilisation,
    };
    let pools = vec![
        ("model-a".to_string(), gauges(Some(90.5), 60, Some(1.25))),
        // Without an RPS reading a pool sends no value rather than a zero.
        ("model-b".to_string(), gauges(None, 3, None)),
        ("model-c".to_string(), gauges(Some(3.0), 2, Some(1.5))),
    ];
    sink.publish("us-west-2", &pools).await.unwrap();
    // The next cycle, 30 s later, is inside the 60 s period: nothing is sent.
    sink.publish("us-west-2", &pools).await.unwrap();
    assert_eq!(
        rule.num_calls(),
        1,
        "one call for every pool, once a period"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].namespace(), Some(CLOUDWATCH_NAMESPACE));
    assert_eq!(CLOUDWATCH_NAMESPACE, "MRGC/Autoscaler");
    let data = seen[0].metric_data();
    assert_eq!(data.len(), 1, "one data point: the region's distribution");
    assert_eq!(data[0].metric_name(), Some(UTILISATION_METRIC));
    assert_eq!(data[0].values(), &[1.25, 1.5]);
    assert_eq!(data[0].counts(), &[1.0, 1.0]);
    assert_eq!(
        points(&seen[0])[0].2,
        vec![("Region".to_string(), "us-west-2".to_string())]
    );
    assert_eq!(
        metrics
            .aws_calls
            .with_label_values(&["cloudwatch", "PutMetricData"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_rejected_publish_is_a_permanent_error_and_counted() {
    let rule = mock!(aws_sdk_cloudwatch::Client::put_metric_data).then_error(|| {
        PutMetricDataError::InvalidParameterValueException(
            InvalidParameterValueException::builder()
                .message("bad value")
                .build(),
        )
    });
    let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &[&rule]);
    let metrics = Metrics::new("us-east-1");
    let aws = backends(cw, &metrics);
    let sink = aws.gauges.clone().expect("gauges");
    let g = PoolGauges {
        rps: Some(1.0),
        serving: 1,
        launching: 0,
        desired: 1,
        utilisation: Some(1.0),
    };
    let err = sink
        .publish("us-east-1", &[("model-a".to_string(), g)])
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Permanent(_)), "{err:?}");
    assert_eq!(
        metrics
            .aws_errors
            .with_label_values(&["cloudwatch", "PutMetricData", "permanent"])
            .get(),
        1
    );
}
