//! `tables create|check`: the DynamoDB tables (`schema.rs` is their single source of truth).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use mrgc_autoscaler::adapters::aws::tables;
use mrgc_autoscaler::adapters::aws::{AwsBackends, AwsOptions};
use mrgc_autoscaler::schema;
use mrgc_autoscaler::telemetry::Metrics;

use super::{EXIT_CONFIG, EXIT_USAGE, aws_region, runtime};

#[derive(Subcommand)]
pub(super) enum TablesCommand {
    /// Create the missing tables, enable TTL and wait until they are ACTIVE. Idempotent; an
    /// existing table whose keys or indexes differ is reported and never altered.
    Create(TablesArgs),
    /// Check that every table exists and matches the schema; change nothing.
    Check(TablesArgs),
}

/// Where the tables are.
#[derive(Args, Clone)]
pub(super) struct TableArgs {
    /// Table names are `<prefix>-<table>`, e.g. mrgc-prod-gpu-instances.
    #[arg(long, env = "MRGC_TABLE_PREFIX")]
    pub(super) table_prefix: String,
    /// A local AWS-compatible server (moto, LocalStack) instead of AWS.
    #[arg(long, env = "MRGC_ENDPOINT_URL")]
    pub(super) endpoint_url: Option<String>,
}

#[derive(Args)]
pub(super) struct TablesArgs {
    #[command(flatten)]
    tables: TableArgs,
    /// AWS region (default: AWS_REGION).
    #[arg(long, env = "MRGC_REGION")]
    region: Option<String>,
    /// Give up waiting for ACTIVE after this long.
    #[arg(long, env = "MRGC_TABLES_TIMEOUT", default_value = "10m", value_parser = super::bounded::span)]
    timeout: Duration,
}

pub(super) fn tables_cmd(a: TablesArgs, create: bool) -> anyhow::Result<ExitCode> {
    let Some(region) = aws_region(a.region) else {
        eprintln!("error: no region: pass --region or set AWS_REGION");
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let mut opts = AwsOptions::new(&region, &a.tables.table_prefix, a.tables.endpoint_url);
    opts.cloudwatch = false;
    let rt = runtime()?;
    rt.block_on(async {
        let aws = AwsBackends::build(&opts, &Metrics::new(&region)).await;
        if create {
            match tables::create_tables(&aws.clients, &schema::ALL, a.timeout).await {
                Ok(reports) => {
                    for r in reports {
                        let what = if r.created {
                            "created"
                        } else {
                            "exists, matches the schema"
                        };
                        let ttl = if r.ttl_enabled_now {
                            "; TTL enabled"
                        } else {
                            ""
                        };
                        println!("{:<45} {what}{ttl}", r.name);
                        for w in r.warnings {
                            println!("  warning: {w}");
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(tables_exit(&e))
                }
            }
        } else {
            match tables::verify_tables(&aws.clients, &schema::ALL).await {
                Ok(warnings) => {
                    for w in warnings {
                        println!("warning: {w}");
                    }
                    println!(
                        "{} tables with prefix {} match the schema",
                        schema::ALL.len(),
                        a.tables.table_prefix
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(tables_exit(&e))
                }
            }
        }
    })
}

/// A table missing or different from the schema is the environment not matching the
/// configuration (78); anything else (the service unreachable, access denied) is a failure.
fn tables_exit(e: &tables::TablesError) -> ExitCode {
    match e {
        tables::TablesError::Missing(_) | tables::TablesError::Differ(_) => {
            ExitCode::from(EXIT_CONFIG)
        }
        _ => ExitCode::FAILURE,
    }
}
