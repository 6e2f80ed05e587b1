//! `policy check|explain`: validate policy files; the planner's calculator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use mrgc_autoscaler::core::{AsgState, Capacity, Observation, PoolHistory, Sample, decide};

use super::{EXIT_USAGE, load_policies};

#[derive(Subcommand)]
pub(super) enum PolicyCommand {
    /// Validate policy files; exit 64 listing every problem.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the decision and its reason for one observation (the planner's calculator).
    Explain(ExplainArgs),
}

#[derive(Args)]
pub(super) struct ExplainArgs {
    /// Policy directory or files.
    #[arg(
        long,
        env = "MRGC_POLICIES",
        default_value = "policies",
        value_delimiter = ','
    )]
    policies: Vec<PathBuf>,
    /// The pool whose policy decides.
    #[arg(long, env = "MRGC_POOL")]
    pool: String,
    /// The region whose bounds and group apply.
    #[arg(long, env = "MRGC_REGION", default_value = "us-east-1")]
    region: String,
    /// Requests per second now.
    #[arg(long, env = "MRGC_EXPLAIN_RPS")]
    rps: f64,
    /// Serving instances now.
    #[arg(long, env = "MRGC_EXPLAIN_SERVING")]
    serving: u32,
    /// Launching instances now (they count as capacity).
    #[arg(long, env = "MRGC_EXPLAIN_LAUNCHING", default_value_t = 0)]
    launching: u32,
    /// Instances the ASG holds that do not serve (draining, quarantined).
    #[arg(long, env = "MRGC_EXPLAIN_HELD", default_value_t = 0)]
    held: u32,
    /// Evaluate at this time (RFC 3339, UTC) for scheduled minimums; default now.
    #[arg(long, env = "MRGC_EXPLAIN_AT")]
    at: Option<String>,
}

pub(super) fn explain(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let set = match load_policies(&a.policies) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let Some(policy) = set.pool(&a.pool) else {
        eprintln!(
            "error: no policy for pool `{}`; known pools: {}",
            a.pool,
            set.pools.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let Some(regional) = policy.region(&a.region) else {
        eprintln!(
            "error: pool `{}` has no policy for region {}; its regions: {}",
            a.pool,
            a.region,
            policy
                .regions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    if !a.rps.is_finite() || a.rps < 0.0 {
        eprintln!("error: --rps must be a number ≥ 0");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let now_ms = match &a.at {
        Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.timestamp_millis(),
            Err(e) => {
                eprintln!(
                    "error: --at `{s}` is not an RFC 3339 time ({e}); write e.g. 2026-11-23T13:30:00Z"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        },
        None => chrono::Utc::now().timestamp_millis(),
    };
    let current = a.serving.saturating_add(a.launching).saturating_add(a.held);
    let obs = Observation {
        samples: vec![Sample {
            at_ms: now_ms,
            rps: a.rps,
        }],
        capacity: Capacity {
            serving: a.serving,
            launching: a.launching,
            held: a.held,
            skipped: 0,
            ..Default::default()
        },
        asg: AsgState {
            name: regional.asg.clone(),
            min: 0,
            max: regional.max.saturating_add(a.held).max(current),
            desired: current,
        },
        seasonal: vec![],
        learned_launch: None,
        ..Default::default()
    };
    let d = decide(policy, &a.region, &obs, &PoolHistory::default(), now_ms);
    println!(
        "pool        {} in {} (ASG {})",
        a.pool, a.region, regional.asg
    );
    println!(
        "observed    {} rps, {} serving, {} launching, {} held",
        a.rps, a.serving, a.launching, a.held
    );
    println!(
        "bounds      min {} max {}, band {}–{} (setpoint {})",
        d.min, d.max, policy.band.low, policy.band.high, policy.band.setpoint
    );
    println!(
        "decision    {} to {} (ASG desired capacity {} → {})",
        d.action, d.desired, d.asg_current, d.asg_desired
    );
    println!("reason_code {}", d.reason_code);
    println!("reason      {}", d.reason);
    if d.action == mrgc_autoscaler::core::Action::ScaleDown {
        let cut = (d.serving + d.launching).saturating_sub(d.desired);
        match policy.scale_down.drain {
            Some(timeout) => println!(
                "act         drain {cut} instance(s): the lowest queue_depth first, then a failed cleanup, then the oldest; each terminated (ASG desired − 1) once idle or after {}",
                humantime::format_duration(timeout)
            ),
            None => println!(
                "act         set the ASG's desired capacity to {}: the group picks the victims (scale_down.drain = false)",
                d.asg_desired
            ),
        }
    }
    println!(
        "note        a single observation with no history: scale-down stabilization only sees this one recommendation"
    );
    Ok(ExitCode::SUCCESS)
}
