//! `history`: a pool's recorded decisions, newest first.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use mrgc_autoscaler::adapters::aws::{AwsBackends, AwsOptions};
use mrgc_autoscaler::core::DecisionRecord;
use mrgc_autoscaler::ports::DecisionLog;
use mrgc_autoscaler::telemetry::Metrics;

use super::tables::TableArgs;
use super::{EXIT_USAGE, aws_region, runtime};

#[derive(Args)]
pub(super) struct HistoryArgs {
    #[command(flatten)]
    tables: TableArgs,
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
    let Some(region) = aws_region(a.region) else {
        eprintln!("error: no region: pass --region (or --all-regions with AWS_REGION set)");
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let mut opts = AwsOptions::new(&region, &a.tables.table_prefix, a.tables.endpoint_url);
    opts.cloudwatch = false;
    let rt = runtime()?;
    let records = rt.block_on(async {
        let aws = AwsBackends::build(&opts, &Metrics::new(&region)).await;
        let since = chrono::Utc::now().timestamp_millis() - a.since.as_millis() as i64;
        aws.log
            .history(&a.pool, filter.as_deref(), since, a.limit)
            .await
    });
    let records = match records {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
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

pub(super) fn stamp_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

pub(super) fn record_line(r: &DecisionRecord) -> String {
    let rps = r
        .current_rps
        .map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    format!(
        "{} {} {:<10} {:>3} -> {:<3} asg={:<3} rps={:>6} {}{} {}: {}",
        stamp_ms(r.at_ms()),
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
    serde_json::json!({
        "model_pool": r.model_pool,
        "timestamp": r.key.to_number(),
        "at": stamp_ms(r.at_ms()),
        "region": r.region,
        "current_capacity": r.current_capacity,
        "desired_capacity": r.desired_capacity,
        "min_capacity": r.min_capacity,
        "max_capacity": r.max_capacity,
        "current_rps": r.current_rps,
        "target_rps": r.target_rps,
        "scaling_action": r.scaling_action.as_str(),
        "reason_code": r.reason_code.as_str(),
        "reason": r.reason,
        "rps_window": r.rps_window,
        "serving": r.serving,
        "launching": r.launching,
        "held": r.held,
        "recommendation": r.recommendation,
        "asg_desired": r.asg_desired,
        "controller_id": r.controller_id,
        "leader_epoch": r.leader_epoch,
        "policy_hash": r.policy_hash,
        "dry_run": r.dry_run,
        "result": r.result.to_attr(),
        "ttl": r.ttl,
    })
}
