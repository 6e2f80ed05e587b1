//! `tune`: search a pool's policy knobs walk-forward, on a trace or on the pool's own history
//! in the metrics table; write the tuned policy beside a report, never over the live one.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use mrgc_autoscaler::core::PoolPolicy;
use mrgc_autoscaler::replay::trace::Trace;
use mrgc_autoscaler::replay::traffic::Scale;
use mrgc_autoscaler::sim::engine::Summary;
use mrgc_autoscaler::sim::scenario::Scenario;
use mrgc_autoscaler::sim::tune::{self, Tier, TuneOptions, TuneOutcome};

use super::{EXIT_USAGE, aws_region, runtime};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// The pool's RPS samples in the metrics table.
    Aws,
}

#[derive(Args)]
pub(super) struct TuneArgs {
    /// The traffic to tune on (timestamp_s,rps CSV); or --backend aws --days N.
    #[arg(
        long,
        env = "MRGC_TUNE_TRACE",
        required_unless_present = "backend",
        conflicts_with = "backend"
    )]
    trace: Option<PathBuf>,
    /// Tune on the pool's own history in the metrics table instead of a trace.
    #[arg(long, env = "MRGC_TUNE_BACKEND", value_enum, requires = "table_prefix")]
    backend: Option<Source>,
    /// With --backend aws: how many days of history (at least 2).
    #[arg(long, env = "MRGC_TUNE_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u32).range(2..=120))]
    days: u32,
    /// With --backend aws: table names are `<prefix>-<table>`.
    #[arg(long, env = "MRGC_TABLE_PREFIX")]
    table_prefix: Option<String>,
    /// With --backend aws: a local AWS-compatible server instead of AWS.
    #[arg(long, env = "MRGC_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// With --backend aws: the region whose history is read (default AWS_REGION).
    #[arg(long, env = "MRGC_REGION")]
    region: Option<String>,
    /// The policy directory (or files) holding the pool's current policy.
    #[arg(
        long,
        env = "MRGC_POLICIES",
        default_value = "policies",
        value_delimiter = ','
    )]
    policies: Vec<PathBuf>,
    /// The pool to tune.
    #[arg(long, env = "MRGC_POOL")]
    pool: String,
    /// The SLO to tune for (share of requests over capacity, e.g. 0.1%); default the policy's
    /// [slo], else 0.1%.
    #[arg(long, env = "MRGC_TUNE_SLO", value_parser = slo_pct)]
    slo: Option<f64>,
    /// Scale the trace to this mean RPS (default: a trace file to 75, history as it is).
    #[arg(long, env = "MRGC_TUNE_MEAN_RPS", value_parser = mean_rps)]
    mean_rps: Option<f64>,
    /// Instance launch time (boot + model load) of the simulated pool (default 6m).
    #[arg(long, env = "MRGC_TUNE_LAUNCH_TIME", value_parser = super::bounded::launch)]
    launch_time: Option<Duration>,
    /// Output directory for <pool>.toml, report.html and summary.json (default out/tune-<pool>).
    #[arg(long, env = "MRGC_TUNE_OUT")]
    out: Option<PathBuf>,
    /// Candidates to replay (the current policy is one of them).
    #[arg(long, env = "MRGC_TUNE_POINTS", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    points: u32,
    /// The share of the traffic chosen on; the rest is scored on.
    #[arg(long, env = "MRGC_TUNE_SPLIT", default_value_t = 0.7)]
    split: f64,
    /// Seed of the candidate sample and of the simulated arrivals.
    #[arg(long, env = "MRGC_TUNE_SEED", default_value_t = 1)]
    seed: u64,
    /// Search only these knobs and values, e.g. --knob band.high=1.2,1.4,1.6 (repeatable; in
    /// the environment, separated by `;`).
    #[arg(long, env = "MRGC_TUNE_KNOBS", value_delimiter = ';')]
    knob: Vec<String>,
    /// Setpoints (RPS per instance) of the HPA and target-tracking families the tuned policy
    /// is measured against (`savings_at_equal_loss`).
    #[arg(long, env = "MRGC_TUNE_BASELINE_SETPOINTS", value_delimiter = ',', value_parser = super::simulate::setpoint, default_values_t = tune::DEFAULT_SETPOINTS)]
    baseline_setpoints: Vec<f64>,
    /// Worker threads.
    #[arg(long, env = "MRGC_TUNE_THREADS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
}

fn slo_pct(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%');
    match t.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 50.0 => Ok(v),
        _ => Err(format!("`{s}` is not an SLO share in (0, 50]% (e.g. 0.1%)")),
    }
}

fn mean_rps(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1_000_000.0 => Ok(v),
        _ => Err(format!("`{s}` is not a mean rate in (0, 1000000] RPS")),
    }
}

pub(super) fn tune(a: TuneArgs) -> anyhow::Result<ExitCode> {
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        Ok(ExitCode::from(EXIT_USAGE))
    };
    let set = match mrgc_autoscaler::app::policy_files::load_paths(&a.policies) {
        Ok(s) => s,
        Err(e) => return usage(e.to_string()),
    };
    let Some(current) = set.pools.get(&a.pool) else {
        return usage(format!(
            "no policy for pool `{}` in {}",
            a.pool,
            a.policies
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let mut current = current.clone();
    if let Some(pct) = a.slo {
        current
            .slo
            .get_or_insert_with(Default::default)
            .over_capacity = pct / 100.0;
    }
    // The trace, and where the pool runs.
    let (trace, origin, scale, region) = match (&a.trace, a.backend) {
        (Some(path), _) => match Trace::load(path) {
            Ok(t) => (
                t,
                path.display().to_string(),
                Scale::Mean(a.mean_rps.unwrap_or(75.0)),
                current
                    .regions
                    .keys()
                    .next()
                    .cloned()
                    .unwrap_or_else(|| "us-east-1".into()),
            ),
            Err(e) => return usage(e.to_string()),
        },
        (None, Some(Source::Aws)) => {
            let Some(region) = aws_region(a.region.clone()) else {
                return usage("no region: pass --region or set AWS_REGION".into());
            };
            let prefix = a.table_prefix.clone().unwrap_or_default();
            match history_trace(&a, &prefix, &region) {
                Ok((t, filled)) => {
                    if filled > 0 {
                        eprintln!(
                            "note: {filled} minute(s) of the last {} days had no RPS sample; \
                             each repeats the minute before",
                            a.days
                        );
                    }
                    let scale = a.mean_rps.map_or(Scale::Factor(1.0), Scale::Mean);
                    (t, format!("{prefix} metrics table"), scale, region)
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        (None, None) => return usage("give --trace FILE, or --backend aws --days N".into()),
    };
    if current.region(&region).is_none() {
        return usage(format!(
            "the policy of pool `{}` has no [regions.{region}] section",
            a.pool
        ));
    }
    let mut one = set.clone();
    one.pools.clear();
    one.pools.insert(a.pool.clone(), current.clone());
    let mut scenario = match Scenario::with_trace(
        trace,
        &origin,
        &one,
        Some(&a.pool),
        scale,
        a.launch_time,
        &region,
    ) {
        Ok(s) => s,
        Err(e) => return usage(e.to_string()),
    };
    scenario.seed = a.seed;
    let mut space = Vec::new();
    for k in &a.knob {
        match tune::parse_knob(k) {
            Ok(x) => space.push(x),
            Err(e) => return usage(e.to_string()),
        }
    }
    let opts = TuneOptions {
        split: a.split,
        points: a.points as usize,
        seed: a.seed,
        threads: a.threads as usize,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        space: (!space.is_empty()).then_some(space),
        baseline_setpoints: a.baseline_setpoints.clone(),
    };
    let outcome = match tune::tune(&scenario, &opts) {
        Ok(o) => o,
        Err(e) => return usage(e.to_string()),
    };
    let dir = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(format!("tune-{}", a.pool)));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let original = std::fs::read_to_string(&current.source)
        .with_context(|| format!("reading {}", current.source.display()))?;
    let header = header(&outcome, &current);
    let tuned = outcome.tuned();
    let mut settings = tuned.settings.clone();
    if a.slo.is_some() {
        settings.push(("slo.over_capacity".into(), format!("{}%", outcome.slo_pct)));
    }
    let text = mrgc_autoscaler::sim::tune_file::tuned_text(
        &original,
        &current.source,
        &settings,
        &tuned.policy,
        &header,
    )
    .map_err(anyhow::Error::msg)?;
    let file = dir.join(format!("{}.toml", a.pool));
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    std::fs::write(
        dir.join("summary.json"),
        mrgc_autoscaler::sim::tune_report::summary_json(&outcome),
    )
    .with_context(|| format!("writing {}/summary.json", dir.display()))?;
    std::fs::write(
        dir.join("report.html"),
        mrgc_autoscaler::sim::tune_report::report_html(&outcome, &scenario),
    )
    .with_context(|| format!("writing {}/report.html", dir.display()))?;
    print!("{}", printout(&outcome, &current));
    println!(
        "\nwrote {} (not live: try it as a shadow policy first, see docs/simulation.md), \
         report.html and summary.json in {:.1} s",
        file.display(),
        outcome.wall_seconds
    );
    Ok(ExitCode::SUCCESS)
}

/// The pool's RPS history from the metrics table, as a per-minute trace.
fn history_trace(a: &TuneArgs, prefix: &str, region: &str) -> anyhow::Result<(Trace, u64)> {
    use mrgc_autoscaler::adapters::aws::{AwsBackends, AwsOptions};
    use mrgc_autoscaler::ports::MetricsSource;
    let mut opts = AwsOptions::new(region, prefix, a.endpoint_url.clone());
    opts.cloudwatch = false;
    let rt = runtime()?;
    let samples = rt.block_on(async {
        let aws =
            AwsBackends::build(&opts, &mrgc_autoscaler::telemetry::Metrics::new(region)).await;
        let to = chrono::Utc::now().timestamp_millis();
        let from = to - i64::from(a.days) * 86_400_000;
        aws.metrics.rps_samples(&a.pool, region, from, to).await
    })?;
    Trace::from_minute_samples(&format!("{} history", a.pool), &samples).ok_or_else(|| {
        anyhow::anyhow!(
            "no RPS samples for pool {} in {region} over the last {} days",
            a.pool,
            a.days
        )
    })
}

fn pct(x: f64) -> String {
    format!("{x:.3}%")
}

fn header(o: &TuneOutcome, current: &PoolPolicy) -> Vec<String> {
    let mut h = vec![
        format!(
            "Tuned by `mrgc-autoscaler tune` for pool {} on {} ({} days).",
            o.pool,
            o.trace,
            o.duration_s / 86_400
        ),
        format!(
            "Chosen among {} candidates on the first {:.0} % of the traffic, scored on the rest \
             (never on the data it was chosen on); rule: {}.",
            o.candidates.len(),
            o.split_s as f64 / o.duration_s as f64 * 100.0,
            tier_text(o.tier)
        ),
    ];
    if let (Some(c), Some(t)) = (o.tail_row("current"), o.tail_row("tuned")) {
        h.push(format!(
            "On the later part: {:.1} instance-hours and {} over capacity, against {:.1} and {} \
             for the policy it was tuned from ({}).",
            t.instance_hours,
            pct(t.over_capacity_pct),
            c.instance_hours,
            pct(c.over_capacity_pct),
            current.source.display()
        ));
    }
    h.push(
        "Not live: run it as a shadow policy beside the current one first (docs/simulation.md)."
            .into(),
    );
    h
}

fn tier_text(t: Tier) -> &'static str {
    match t {
        Tier::MeetsSlo => {
            "the cheapest that met the SLO and beat the HPA and target tracking on both \
             instance-hours and over-capacity, in sum and in each half of the earlier part, \
             with no more scale actions than the HPA"
        }
        Tier::Dominates => {
            "none met the SLO while beating both baselines; of those beating them (in sum and \
             in each half of the earlier part), the lowest savings at equal loss"
        }
        Tier::BestEffort => {
            "none beat both baselines in sum and in each half of the earlier part; of the \
             candidates that spent and lost no more than the current policy in each half, the \
             lowest savings at equal loss (with none, the current policy)"
        }
    }
}

fn printout(o: &TuneOutcome, current: &PoolPolicy) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "tune {}: {} candidates chosen on the first {} min, scored on the last {} min; SLO {}",
        o.pool,
        o.candidates.len(),
        o.split_s / 60,
        (o.duration_s - o.split_s) / 60,
        pct(o.slo_pct)
    );
    let _ = writeln!(s, "rule: {}", tier_text(o.tier));
    let _ = writeln!(
        s,
        "\n{:<24} {:>11} {:>9} {:>8} {:>8} {:>8}",
        "on the later part", "inst-hours", "over-%", "actions", "×oracle", "savings"
    );
    let line = |s: &mut String, name: &str, r: &Summary| {
        let _ = writeln!(
            s,
            "{:<24} {:>11.1} {:>9.3} {:>8} {:>8.3} {:>8}",
            name,
            r.instance_hours,
            r.over_capacity_pct,
            r.scale_ups + r.scale_downs,
            r.vs_oracle,
            r.savings_at_equal_loss
                .map_or_else(|| "-".to_string(), |x| format!("{x:.3}"))
        );
    };
    for (name, row) in [
        ("current policy", "current"),
        ("tuned policy", "tuned"),
        ("hpa (reference)", "hpa"),
        ("target tracking (ref.)", "target-tracking"),
        ("oracle", "oracle"),
    ] {
        if let Some(r) = o.tail_row(row) {
            line(&mut s, name, r);
        }
    }
    let _ = writeln!(s, "\nchanges against {}:", current.source.display());
    let tuned = o.tuned();
    if tuned.settings.is_empty() {
        let _ = writeln!(s, "  none: the current policy did best");
    }
    for (k, v) in &tuned.settings {
        let before = describe(current, k);
        let after = describe(&tuned.policy, k);
        if before == after {
            continue;
        }
        let _ = writeln!(s, "  {k}: {before} → {after}  ({k}={v})");
    }
    if let (Some(c), Some(t)) = (o.tail_row("current"), o.tail_row("tuned")) {
        let _ = writeln!(
            s,
            "expected: {:.1} → {:.1} instance-hours ({:+.1} %), {} → {} over capacity",
            c.instance_hours,
            t.instance_hours,
            (t.instance_hours / c.instance_hours.max(1e-9) - 1.0) * 100.0,
            pct(c.over_capacity_pct),
            pct(t.over_capacity_pct)
        );
    }
    let _ = writeln!(s, "verdict: {}", o.verdict().advice());
    s
}

/// A policy's value of a knob, as a person reads it.
fn describe(p: &PoolPolicy, key: &str) -> String {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    match key {
        "band.high" => format!(
            "band {:.2}–{:.2} (setpoint {:.2})",
            p.band.low, p.band.high, p.band.setpoint
        ),
        "band.headroom" => p
            .band
            .headroom
            .map_or_else(|| "none".into(), |h| h.to_string()),
        "scale_up.confirm" => p.scale_up.confirm.to_string(),
        "scale_up.max_step" => p.scale_up.max_step.to_string(),
        "scale_down.stabilization" => d(p.scale_down.stabilization),
        "scale_down.max_step" => p.scale_down.max_step.to_string(),
        "scale_down.collapse_hold" => d(p.scale_down.collapse_hold),
        "forecast.mode" => p.forecast.mode.as_str().into(),
        _ => "(see the file)".into(),
    }
}
