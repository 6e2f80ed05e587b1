//! `simulate`: replay traffic through the controller and the baselines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::EXIT_USAGE;

#[derive(Args)]
pub(super) struct SimArgs {
    /// Scenario file (see simulations/); or use --trace and --policies.
    #[arg(required_unless_present = "trace")]
    scenario: Option<PathBuf>,
    /// Output directory for summary.json, timeseries.csv and report.html
    /// (default: out/<scenario or trace name>).
    #[arg(long, env = "MRGC_SIM_OUT")]
    out: Option<PathBuf>,
    /// Without a scenario: the trace to replay (timestamp_s,rps CSV, or arrival times).
    #[arg(long, env = "MRGC_SIM_TRACE", conflicts_with = "scenario")]
    trace: Option<PathBuf>,
    /// Without a scenario: policy directory or files.
    #[arg(
        long,
        env = "MRGC_POLICIES",
        default_value = "policies",
        value_delimiter = ','
    )]
    policies: Vec<PathBuf>,
    /// Without a scenario: only this pool.
    #[arg(long, env = "MRGC_SIM_POOL")]
    pool: Option<String>,
    /// Without a scenario: scale the trace to this mean RPS (default 75).
    #[arg(long, env = "MRGC_SIM_MEAN_RPS")]
    mean_rps: Option<f64>,
    /// Without a scenario: instance launch time (boot + model load; default 6m).
    #[arg(long, env = "MRGC_SIM_LAUNCH_TIME", value_parser = super::bounded::launch)]
    launch_time: Option<Duration>,
    /// Sweep a policy field over values, e.g. --sweep band.high=1.4,1.5 (repeatable: a grid;
    /// in one value or MRGC_SIM_SWEEP, separate sweeps with `;`).
    #[arg(long, env = "MRGC_SIM_SWEEP", value_delimiter = ';')]
    sweep: Vec<String>,
    /// Override the scenario's seed.
    #[arg(long, env = "MRGC_SIM_SEED")]
    seed: Option<u64>,
    /// Baselines to run (comma-separated: oracle, static-peak, hpa, target-tracking; or
    /// `none` to time the policies alone). Default: the scenario's list, or all.
    #[arg(long, env = "MRGC_SIM_BASELINES", value_delimiter = ',')]
    baselines: Option<Vec<String>>,
    /// Also run the HPA and target tracking aiming at these setpoints (RPS per instance, e.g.
    /// 0.6,0.8,1.0,1.25,1.5): each baseline's cost-versus-loss curve, the yardstick of
    /// `savings_at_equal_loss`.
    #[arg(long, env = "MRGC_SIM_BASELINE_SETPOINTS", value_delimiter = ',', value_parser = setpoint)]
    baseline_setpoints: Vec<f64>,
    /// timeseries.csv resolution in seconds (default: 1 up to a day of trace, 60 beyond).
    #[arg(long, env = "MRGC_SIM_RESOLUTION")]
    resolution: Option<u64>,
    /// Worker threads.
    #[arg(long, env = "MRGC_SIM_THREADS", default_value_t = 2)]
    threads: usize,
}

pub(super) fn simulate(a: SimArgs) -> anyhow::Result<ExitCode> {
    use mrgc_autoscaler::sim::{report, run as simrun, scenario::Scenario};
    let loaded = match (&a.scenario, &a.trace) {
        (Some(path), _) => Scenario::load(path),
        (None, Some(trace)) => Scenario::quick(
            trace,
            &a.policies,
            a.pool.as_deref(),
            a.mean_rps,
            a.launch_time,
        ),
        (None, None) => unreachable_args(),
    };
    let mut scenario = match loaded {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if let Some(seed) = a.seed {
        scenario.seed = seed;
    }
    if let Some(list) = &a.baselines {
        let list: Vec<String> = list
            .iter()
            .filter(|b| b.as_str() != "none")
            .cloned()
            .collect();
        if let Some(bad) = list
            .iter()
            .find(|b| !mrgc_autoscaler::sim::scenario::BASELINES.contains(&b.as_str()))
        {
            eprintln!(
                "error: unknown baseline `{bad}`; choose from {} or none",
                mrgc_autoscaler::sim::scenario::BASELINES.join(", ")
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        scenario.baselines = list;
    }
    let mut sweeps = Vec::new();
    for s in &a.sweep {
        match simrun::parse_sweep(s) {
            Ok(x) => sweeps.push(x),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    let opts = simrun::SimOptions {
        sweeps,
        resolution: a
            .resolution
            .map_or(simrun::Resolution::Auto, simrun::Resolution::Seconds),
        threads: a.threads.max(1),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        baseline_setpoints: a.baseline_setpoints.clone(),
    };
    let out = match simrun::simulate(&scenario, &opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    print!("{}", report::table(&out));
    print!("{LEGEND}");
    if !opts.sweeps.is_empty() {
        println!();
        print!("{}", report::frontier(&out));
    }
    let stem = a
        .scenario
        .as_ref()
        .or(a.trace.as_ref())
        .and_then(|p| p.file_stem())
        .map_or_else(
            || "simulation".to_string(),
            |s| s.to_string_lossy().to_string(),
        );
    let dir = a.out.unwrap_or_else(|| PathBuf::from("out").join(stem));
    report::write_all(&scenario, &out, &dir)
        .with_context(|| format!("writing {}", dir.display()))?;
    println!(
        "\n{} runs, {} simulated seconds in {:.2} s ({:.0} simulated seconds per wall second); wrote {}/summary.json, timeseries.csv, report.html",
        out.results.len(),
        out.simulated_seconds,
        out.wall_seconds,
        out.simulated_seconds as f64 / out.wall_seconds.max(1e-9),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What the table's columns mean (printed under it).
const LEGEND: &str = "
inst-hours  instance-hours paid for, launching and draining instances included
cost        inst-hours × the scenario's price per instance-hour
over-%      requests that found the pool's queue full, in % of all requests
short-s     seconds in which any request was over capacity
ups, downs  scale-ups and scale-downs applied
peak        most instances at once (serving + launching)
util        requests served / serving capacity
×oracle     inst-hours / the oracle's (1.000: as few as knowing the future allows)
[name]      a baseline, not a policy: oracle, static-peak, hpa (Kubernetes HPA),
            target-tracking (AWS target tracking); see docs/simulation.md
";

pub(super) fn unreachable_args() -> ! {
    // clap enforces `scenario` unless `--trace` is given.
    eprintln!("error: give a scenario file or --trace");
    std::process::exit(i32::from(EXIT_USAGE))
}

pub(super) fn setpoint(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 100.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a setpoint in (0, 100] RPS per instance"
        )),
    }
}
