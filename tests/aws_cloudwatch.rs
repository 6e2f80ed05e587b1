//! The CloudWatch gauge adapter, against aws-smithy-mocks: moto cannot speak the CBOR protocol
//! aws-sdk-cloudwatch ≥ 1.100 uses, so the requests are checked as the SDK builds them, just
//! before they would go on the wire.

use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatch::operation::put_metric_data::{
    PutMetricDataError, PutMetricDataInput, PutMetricDataOutput,
};
use aws_sdk_cloudwatch::types::error::InvalidParameterValueException;
use aws_smithy_mocks::{RuleMode, mock, mock_client};

use mrgc_autoscaler::adapters::aws::{AwsBackends, AwsClients, AwsOptions, CLOUDWATCH_NAMESPACE};
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
async fn gauges_are_published_per_pool_with_pool_and_region_dimensions() {
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
    sink.publish(
        "model-a",
        "us-west-2",
        &PoolGauges {
            rps: Some(90.5),
            serving: 60,
            launching: 12,
            desired: 72,
            utilisation: Some(1.25),
        },
    )
    .await
    .unwrap();
    // Without an RPS reading, rps and utilisation are left out rather than sent as zero.
    sink.publish(
        "model-b",
        "us-west-2",
        &PoolGauges {
            rps: None,
            serving: 3,
            launching: 0,
            desired: 3,
            utilisation: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(rule.num_calls(), 2);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].namespace(), Some(CLOUDWATCH_NAMESPACE));
    assert_eq!(CLOUDWATCH_NAMESPACE, "MRGC/Autoscaler");
    let dims = |pool: &str| {
        vec![
            ("Pool".to_string(), pool.to_string()),
            ("Region".to_string(), "us-west-2".to_string()),
        ]
    };
    assert_eq!(
        points(&seen[0]),
        vec![
            ("rps".to_string(), 90.5, dims("model-a")),
            ("serving".to_string(), 60.0, dims("model-a")),
            ("launching".to_string(), 12.0, dims("model-a")),
            ("desired".to_string(), 72.0, dims("model-a")),
            ("utilisation".to_string(), 1.25, dims("model-a")),
        ]
    );
    assert_eq!(
        points(&seen[1]),
        vec![
            ("serving".to_string(), 3.0, dims("model-b")),
            ("launching".to_string(), 0.0, dims("model-b")),
            ("desired".to_string(), 3.0, dims("model-b")),
        ]
    );
    assert_eq!(
        metrics
            .aws_calls
            .with_label_values(&["cloudwatch", "PutMetricData"])
            .get(),
        2
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
    let err = sink.publish("model-a", "us-east-1", &g).await.unwrap_err();
    assert!(matches!(err, PortError::Permanent(_)), "{err:?}");
    assert_eq!(
        metrics
            .aws_errors
            .with_label_values(&["cloudwatch", "PutMetricData", "permanent"])
            .get(),
        1
    );
}
