//! `cost`: what a deployment's controllers will cost a month in DynamoDB, DynamoDB Streams and
//! CloudWatch, from the code's own call plan (`app::plan`), before anything runs.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use mrgc_autoscaler::app::election::{ElectionConfig, MIN_LEASE_SLACK};
use mrgc_autoscaler::app::plan::{Deployment, ItemSizes, Prices, monthly_bill};

use super::{EXIT_USAGE, bounded};

#[derive(Args)]
pub(super) struct CostArgs {
    /// Regions, each with its own controllers.
    #[arg(long, env = "MRGC_COST_REGIONS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    regions: u32,
    /// Replicas per region (one leads, the others stand by).
    #[arg(long, env = "MRGC_COST_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    replicas: u32,
    /// Model pools per region.
    #[arg(long, env = "MRGC_COST_POOLS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pools: u32,
    /// Instances per pool and region.
    #[arg(long, env = "MRGC_COST_INSTANCES", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    instances: u32,
    /// Open shards per streamed table.
    #[arg(long, env = "MRGC_COST_STREAM_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    stream_shards: u32,
    /// As `run --interval`.
    #[arg(long, env = "MRGC_INTERVAL", default_value = "30s", value_parser = bounded::interval)]
    interval: Duration,
    /// As `run --lease-duration`.
    #[arg(long, env = "MRGC_LEASE_DURATION", default_value = "24s", value_parser = bounded::lease)]
    lease_duration: Duration,
    /// As `run --renew-every`.
    #[arg(long, env = "MRGC_RENEW_EVERY", default_value = "20s", value_parser = bounded::lease)]
    renew_every: Duration,
    /// As `run --standby-poll` (default: the lease duration).
    #[arg(long, env = "MRGC_STANDBY_POLL", value_parser = bounded::lease)]
    standby_poll: Option<Duration>,
    /// As `run --record-heartbeat`.
    #[arg(long, env = "MRGC_RECORD_HEARTBEAT", default_value = "10m", value_parser = bounded::interval)]
    record_heartbeat: Duration,
    /// As `run --cloudwatch-every`.
    #[arg(long, env = "MRGC_CLOUDWATCH_EVERY", default_value = "60s", value_parser = bounded::interval)]
    cloudwatch_every: Duration,
    /// As `run --no-cloudwatch`.
    #[arg(long, env = "MRGC_NO_CLOUDWATCH")]
    no_cloudwatch: bool,
    /// As `run --no-streams`.
    #[arg(long, env = "MRGC_NO_STREAMS")]
    no_streams: bool,
    /// As `run --resync-every`.
    #[arg(long, env = "MRGC_RESYNC_EVERY", default_value = "1h", value_parser = bounded::interval)]
    resync_every: Duration,
    /// US dollars per million read request units (on-demand, us-east-1).
    #[arg(long, env = "MRGC_PRICE_READS", default_value_t = Prices::default().per_million_reads, value_parser = price)]
    price_reads: f64,
    /// US dollars per million write request units (and replicated write units).
    #[arg(long, env = "MRGC_PRICE_WRITES", default_value_t = Prices::default().per_million_writes, value_parser = price)]
    price_writes: f64,
    /// US dollars per million DynamoDB Streams read request units.
    #[arg(long, env = "MRGC_PRICE_STREAM_READS", default_value_t = Prices::default().per_million_stream_reads, value_parser = price)]
    price_stream_reads: f64,
    /// US dollars per 1,000 CloudWatch PutMetricData requests.
    #[arg(long, env = "MRGC_PRICE_CLOUDWATCH_REQUESTS", default_value_t = Prices::default().per_thousand_cloudwatch_requests, value_parser = price)]
    price_cloudwatch_requests: f64,
    /// US dollars per custom metric and month.
    #[arg(long, env = "MRGC_PRICE_CUSTOM_METRIC", default_value_t = Prices::default().per_custom_metric_month, value_parser = price)]
    price_custom_metric: f64,
}

fn price(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1_000.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a price from 0 to 1000 (US dollars)")),
    }
}

fn millions(v: f64) -> String {
    format!("{:.3} M", v / 1e6)
}

pub(super) fn cost(a: CostArgs) -> anyhow::Result<ExitCode> {
    if !ElectionConfig::timing_is_valid(a.lease_duration, a.renew_every) {
        eprintln!(
            "error: --lease-duration ({}) must exceed --renew-every ({}) by at least {}",
            humantime::format_duration(a.lease_duration),
            humantime::format_duration(a.renew_every),
            humantime::format_duration(MIN_LEASE_SLACK)
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let d = Deployment {
        regions: a.regions,
        replicas: a.replicas,
        pools: a.pools,
        instances: a.instances,
        interval: a.interval,
        lease_duration: a.lease_duration,
        renew_every: a.renew_every,
        standby_poll: a.standby_poll.unwrap_or(a.lease_duration),
        record_heartbeat: a.record_heartbeat,
        cloudwatch: !a.no_cloudwatch,
        cloudwatch_every: a.cloudwatch_every,
        streams: !a.no_streams,
        resync_every: a.resync_every,
        stream_shards: a.stream_shards,
    };
    let prices = Prices {
        per_million_reads: a.price_reads,
        per_million_writes: a.price_writes,
        per_million_replicated_writes: a.price_writes,
        per_million_stream_reads: a.price_stream_reads,
        per_thousand_cloudwatch_requests: a.price_cloudwatch_requests,
        per_custom_metric_month: a.price_custom_metric,
    };
    let sizes = ItemSizes::seed();
    let bill = monthly_bill(&d, &sizes, &prices);
    let r = f64::from(d.regions);
    println!(
        "{} regions x {} replicas x {} pools x {} instances; interval {}, lease {}, renew {}, standby poll {}, streams {}",
        d.regions,
        d.replicas,
        d.pools,
        d.instances,
        humantime::format_duration(d.interval),
        humantime::format_duration(d.lease_duration),
        humantime::format_duration(d.renew_every),
        humantime::format_duration(d.standby_poll),
        if d.streams { "on" } else { "off" },
    );
    println!("per month (30 days), all regions:");
    println!(
        "{:<9} {:<20} {:<50} {:>14} {:>12} {:>12} {:>12} {:>12}",
        "who",
        "table",
        "operation",
        "calls",
        "read units",
        "write units",
        "replicated",
        "stream reads"
    );
    for l in &bill.lines {
        println!(
            "{:<9} {:<20} {:<50} {:>14.0} {:>12.0} {:>12.0} {:>12.0} {:>12.0}",
            l.role.as_str(),
            l.target,
            l.operation,
            l.calls * r,
            l.read_units * r,
            l.write_units * r,
            l.replicated_write_units * r,
            l.stream_read_units * r,
        );
    }
    println!();
    println!(
        "DynamoDB: {} read units, {} write units (+ {} replicated), {} stream read units: ${:.2}",
        millions(bill.read_units),
        millions(bill.write_units),
        millions(bill.replicated_write_units),
        millions(bill.stream_read_units),
        bill.dynamodb_dollars
    );
    println!(
        "CloudWatch: {:.0} PutMetricData requests, {:.0} custom metrics: ${:.2}",
        bill.cloudwatch_requests, bill.custom_metrics, bill.cloudwatch_dollars
    );
    println!(
        "takeover: within {} after a kill -9 of the leader (a standby has read the lease within {} of each renewal, and takes it over one lease after the last one); after a SIGTERM within {} through the leader's watch (release, answer, read, write), within {} without it (a standby's next read)",
        humantime::format_duration(bill.kill_takeover),
        humantime::format_duration(bill.kill_takeover.saturating_sub(d.lease_duration)),
        humantime::format_duration(bill.term_takeover),
        humantime::format_duration(bill.term_takeover_unwatched)
    );
    println!(
        "prices: ${}/M reads, ${}/M writes and replicated writes, ${}/M stream reads, ${}/1000 CloudWatch requests, ${}/custom metric-month (on-demand, us-east-1; change with --price-*)",
        prices.per_million_reads,
        prices.per_million_writes,
        prices.per_million_stream_reads,
        prices.per_thousand_cloudwatch_requests,
        prices.per_custom_metric_month
    );
    println!(
        "items: lease {} B, decision record {} B, instance {} B, routing {} B, RPS sample {} B",
        sizes.lease, sizes.record, sizes.instance, sizes.routing, sizes.sample
    );
    Ok(ExitCode::SUCCESS)
}
