//! `history`: a pool's recorded decisions, newest first: from the autoscaling-state table
//! (AWS), or from the decision log the embedded run keeps in its state directory (local).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use mrgc_autoscaler::adapters::aws::{AwsBackends, AwsOptions};
use mrgc_autoscaler::app::decision_file;
use mrgc_autoscaler::core::DecisionRecord;
use mrgc_autoscaler::ports::DecisionLog;
use mrgc_autoscaler::telemetry::Metrics;

use super::{EXIT_USAGE, aws_region, runtime};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Source {
    /// The decision log of `run`'s embedded region, in --state-dir.
    Local,
    /// The autoscaling-state table (DynamoDB) under --table-prefix.
    Aws,
}

#[derive(Args)]
pub(super) struct HistoryArgs {
    /// Where the decisions are: the autoscaling-state table, or the embedded run's log.
    #[arg(long, env = "MRGC_BACKEND", value_enum, default_value_t = Source::Aws)]
    backend: Source,
    /// AWS: table names are `<prefix>-<table>`, e.g. mrgc-prod-autoscaling-state.
    #[arg(long, env = "MRGC_TABLE_PREFIX")]
    table_prefix: Option<String>,
    /// AWS: a local AWS-compatible server (moto, LocalStack) instead of AWS.
    #[arg(long, env = "MRGC_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Local: the state directory the embedded run kept its decision log in.
    #[arg(long, env = "MRGC_STATE_DIR", default_value = ".mrgc-local")]
    state_dir: PathBuf,
    /// The pool whose decisions to print.
    #[arg(long, env = "MRGC_POOL")]
    pool: String,
    /// Only this region's decisions (also the region whose replica is read; default:
    /// AWS_REGION, all regions).
    #[arg(long, env = "MRGC_REGION")]
    region: Option<String>,
    /// Every region's decisions even when --region is set.
    #[arg(long, env = "MRGC_ALL_REGIONS")]
    all_regions: bool,
    /// How far back.
    #[arg(long, env = "MRGC_SINCE", default_value = "1h", value_parser = super::bounded::lookback)]
    since: Duration,
    /// At most this many records.
    #[arg(long, env = "MRGC_LIMIT", default_value_t = 100)]
    limit: usize,
    /// One JSON object per line instead of text.
    #[arg(long, env = "MRGC_JSON")]
    json: bool,
}

pub(super) fn history(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let filter = if a.all_regions {
        None
    } else {
        a.region.clone()
    };
    let since = chrono::Utc::now().timestamp_millis() - a.since.as_millis() as i64;
    let records = match a.backend {
        Source::Local => {
            match decision_file::read_history(
                &a.state_dir,
                &a.pool,
                filter.as_deref(),
                since,
                a.limit,
            ) {
                Ok(r) => r,
                Err(e @ decision_file::ReadError::Missing(_)) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Source::Aws => {
            let Some(prefix) = a.table_prefix.clone().filter(|p| !p.is_empty()) else {
                eprintln!("error: --backend aws needs --table-prefix (MRGC_TABLE_PREFIX)");
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            let Some(region) = aws_region(a.region.clone()) else {
                eprintln!("error: no region: pass --region (or --all-regions with AWS_REGION set)");
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            let mut opts = AwsOptions::new(&region, &prefix, a.endpoint_url.clone());
            opts.cloudwatch = false;
            let rt = runtime()?;
            let records = rt.block_on(async {
                let aws = AwsBackends::build(&opts, &Metrics::new(&region)).await;
                aws.log
                    .history(&a.pool, filter.as_deref(), since, a.limit)
                    .await
            });
            match records {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    for r in &records {
        if a.json {
            println!("{}", record_json(r));
        } else {
            println!("{}", record_line(r));
        }
    }
    if !a.json && records.is_empty() {
        eprintln!(
            "no decisions for {} in the last {}",
            a.pool,
            humantime::format_duration(a.since)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn record_line(r: &DecisionRecord) -> String {
    let rps = r
        .current_rps
        .map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    format!(
        "{} {} {:<10} {:>3} -> {:<3} asg={:<3} rps={:>6} {}{} {}: {}",
        decision_file::stamp_ms(r.at_ms()),
        r.region,
        r.scaling_action.as_str(),
        r.current_capacity,
        r.desired_capacity,
        r.asg_desired,
        rps,
        if r.dry_run { "[dry-run] " } else { "" },
        r.result.to_attr(),
        r.reason_code,
        r.reason
    )
}

pub(super) fn record_json(r: &DecisionRecord) -> serde_json::Value {
    decision_file::to_json(r)
}
