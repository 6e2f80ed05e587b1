//! The simulator's outputs: a table on stdout, summary.json, timeseries.csv and a
//! self-contained report.html (inline SVG, no network).

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use super::engine::{Point, RunResult, Summary};
use super::run::{SimOutput, pareto};
use super::scenario::Scenario;

/// The side-by-side table.
pub fn table(out: &SimOutput) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:<34} {:>10} {:>10} {:>8} {:>9} {:>5} {:>5} {:>5} {:>6} {:>7}",
        "pool",
        "policy",
        "inst-hours",
        "cost",
        "over-%",
        "short-s",
        "ups",
        "downs",
        "peak",
        "util",
        "×oracle"
    );
    let mut last_pool = "";
    for r in &out.results {
        let x = &r.summary;
        if x.pool != last_pool && !last_pool.is_empty() {
            s.push('\n');
        }
        last_pool = &x.pool;
        let label = if r.is_baseline {
            format!("[{}]", x.policy)
        } else {
            x.policy.clone()
        };
        let _ = writeln!(
            s,
            "{:<10} {:<34} {:>10.1} {:>10.2} {:>8.3} {:>9} {:>5} {:>5} {:>5} {:>6.3} {:>7.3}",
            x.pool,
            truncate(&label, 34),
            x.instance_hours,
            x.cost,
            x.over_capacity_pct,
            x.shortfall_seconds,
            x.scale_ups,
            x.scale_downs,
            x.peak_instances,
            x.mean_utilisation,
            x.vs_oracle
        );
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// The pools of a run, in scenario order.
fn pools(out: &SimOutput) -> Vec<&str> {
    let mut pools: Vec<&str> = Vec::new();
    for r in &out.results {
        if !pools.contains(&r.summary.pool.as_str()) {
            pools.push(&r.summary.pool);
        }
    }
    pools
}

/// For sweeps: each pool's Pareto frontier of instance-hours against over-capacity.
pub fn frontier(out: &SimOutput) -> String {
    let mut s = String::new();
    for pool in pools(out) {
        let points: Vec<&RunResult> = out
            .results
            .iter()
            .filter(|r| r.summary.pool == pool && !r.is_baseline)
            .collect();
        let _ = writeln!(
            s,
            "Pareto frontier for {pool} ({} sweep points):",
            points.len()
        );
        for r in pareto(&points) {
            let _ = writeln!(
                s,
                "  {:>10.1} inst-hours  {:>8.3} % over  {:>6.3}× oracle  {}",
                r.summary.instance_hours,
                r.summary.over_capacity_pct,
                r.summary.vs_oracle,
                r.summary.policy
            );
        }
        for b in out
            .results
            .iter()
            .filter(|r| r.summary.pool == pool && r.is_baseline)
        {
            let _ = writeln!(
                s,
                "  {:>10.1} inst-hours  {:>8.3} % over  {:>6.3}× oracle  [{}]",
                b.summary.instance_hours,
                b.summary.over_capacity_pct,
                b.summary.vs_oracle,
                b.summary.policy
            );
        }
    }
    s
}

pub fn summary_json(out: &SimOutput) -> String {
    let all: Vec<&Summary> = out.results.iter().map(|r| &r.summary).collect();
    let mut s = serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

pub fn write_timeseries(out: &SimOutput, w: &mut dyn Write) -> std::io::Result<()> {
    writeln!(w, "t,pool,policy,demand,serving,launching,desired")?;
    for r in &out.results {
        for p in &r.series {
            // Per-second rows are whole numbers; bucket means keep three decimals.
            let prec = if out.series_step == 1 { 0 } else { 3 };
            writeln!(
                w,
                "{},{},{},{:.prec$},{:.prec$},{:.prec$},{}",
                p.t, r.summary.pool, r.summary.policy, p.demand, p.serving, p.launching, p.desired
            )?;
        }
    }
    Ok(())
}

/// Write the four outputs into `dir`.
pub fn write_all(scenario: &Scenario, out: &SimOutput, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("summary.json"), summary_json(out))?;
    let f = std::fs::File::create(dir.join("timeseries.csv"))?;
    let mut w = std::io::BufWriter::new(f);
    write_timeseries(out, &mut w)?;
    w.flush()?;
    std::fs::write(dir.join("report.html"), html(scenario, out))?;
    Ok(())
}

/// Text made safe for HTML and SVG.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_time(t: u64) -> String {
    if t >= 86_400 {
        format!("d{} {:02}:{:02}", t / 86_400, t / 3600 % 24, t / 60 % 60)
    } else {
        format!("{:02}:{:02}", t / 3600, t / 60 % 60)
    }
}

/// One chart: demand against serving capacity (serving × instance_max_rps), over-capacity
/// marked in red under the axis, forecast-driven decisions as ticks above it.
pub(crate) fn chart(r: &RunResult, max_rps: f64, y_max: f64, duration: u64) -> String {
    let (w, h, left, bottom, top) = (960.0, 170.0, 52.0, 22.0, 8.0);
    let pw = w - left - 8.0;
    let ph = h - bottom - top;
    // A tail's chart starts where its scoring does.
    let t0 = r.chart.first().map_or(0, |p| p.t);
    let x = |t: f64| left + pw * (t - t0 as f64).max(0.0) / duration.max(1) as f64;
    // Buckets of minutes or more: draw each one's busiest minute (the envelope), so spikes
    // shorter than a bucket stay visible; the mean is drawn faint beneath it.
    let envelope = r.chart.len() > 1 && r.chart[1].t.saturating_sub(r.chart[0].t) >= 120;
    let y = |v: f64| top + ph - ph * (v / y_max).min(1.0);
    let path = |f: &dyn Fn(&Point) -> f64| {
        let mut d = String::new();
        for (i, p) in r.chart.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                x(p.t as f64),
                y(f(p))
            );
        }
        d
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="demand and capacity of {}"><rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ddd"/>"##,
        esc(&r.summary.policy)
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end" fill="#666">{:.0}</text>"##,
            left + pw,
            y(v),
            y(v),
            left - 4.0,
            y(v) + 3.0,
            v
        );
    }
    for i in 0..=6 {
        let t = t0 as f64 + duration as f64 * f64::from(i) / 6.0;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle" fill="#666">{}</text>"##,
            x(t),
            h - 6.0,
            fmt_time(t as u64)
        );
    }
    let _ = write!(
        svg,
        r##"<path d="{}" fill="none" stroke="#2b6cb0" stroke-width="1.4"/>"##,
        path(&|p: &Point| p.serving * max_rps)
    );
    let _ = write!(
        svg,
        r##"<path d="{}" fill="none" stroke="#9f7aea" stroke-width="1" stroke-dasharray="3 2"/>"##,
        path(&|p: &Point| (p.serving + p.launching) * max_rps)
    );
    if envelope {
        let _ = write!(
            svg,
            r##"<path d="{}" fill="none" stroke="#999" stroke-width="0.8"/><path d="{}" fill="none" stroke="#222" stroke-width="1"><title>demand: each bucket's busiest minute</title></path>"##,
            path(&|p: &Point| p.demand),
            path(&|p: &Point| p.demand_max)
        );
    } else {
        let _ = write!(
            svg,
            r##"<path d="{}" fill="none" stroke="#222" stroke-width="1"/>"##,
            path(&|p: &Point| p.demand)
        );
    }
    for p in r.chart.iter().filter(|p| p.over > 0.0) {
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="2" height="5" fill="#e53e3e"/>"##,
            x(p.t as f64),
            top + ph + 1.0
        );
    }
    for &t in &r.marks {
        let _ = write!(
            svg,
            r##"<path d="M{:.1},{top} l-3,-6 l6,0 z" fill="#dd6b20"><title>forecast-driven scale-up at {}</title></path>"##,
            x(t as f64),
            fmt_time(t)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The y range of a pool's charts: its highest demand (busiest minute) or capacity.
pub(crate) fn y_max(runs: &[&RunResult], max_rps: f64) -> f64 {
    runs.iter()
        .flat_map(|r| r.chart.iter())
        .map(|p| p.demand_max.max(p.demand).max(p.serving * max_rps))
        .fold(1.0, f64::max)
        * 1.05
}

pub fn html(scenario: &Scenario, out: &SimOutput) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mrgc-autoscaler simulation: {name}</title>
<style>
body{{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}}
h1{{font-size:20px}} h2{{font-size:17px;margin-top:28px}} h3{{font-size:14px;margin:14px 0 2px}}
table{{border-collapse:collapse;font-variant-numeric:tabular-nums}} td,th{{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}}
td:nth-child(2),th:nth-child(2),td:first-child,th:first-child{{text-align:left}} tr.baseline td{{color:#555}} td.best{{font-weight:600;color:#276749}}
.legend span{{display:inline-block;margin-right:16px}} .sw{{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:4px}}
.note{{color:#555}}
</style></head><body>
<h1>Simulation: {name}</h1>
<p class="note">Model: launch time {launch}, jitter {jitter}, instance saturates at {max_rps} rps, queue {queue} per instance, ${price}/instance-hour, reconcile every {interval}. Seed {seed}. {sim} simulated seconds in {wall:.2} s.</p>
<p class="note">Over capacity: a request that finds the pool's queue full (it would wait longer than queue / max rps). Instance-hours include launching instances. ×oracle: instance-hours relative to the clairvoyant oracle. Baselines in [brackets].</p>
"##,
        name = esc(&scenario.name),
        launch = humantime::format_duration(scenario.model.launch_time),
        jitter = humantime::format_duration(scenario.model.launch_jitter),
        max_rps = scenario.model.instance_max_rps,
        queue = scenario.model.queue_per_instance,
        price = scenario.model.price_per_instance_hour,
        interval = humantime::format_duration(scenario.model.interval),
        seed = scenario.seed,
        sim = out.simulated_seconds,
        wall = out.wall_seconds,
    );
    s.push_str("<h2>Summary</h2><table><tr><th>pool</th><th>policy</th><th>instance-hours</th><th>cost</th><th>over-capacity %</th><th>shortfall s</th><th>ups</th><th>downs</th><th>peak</th><th>mean util</th><th>×oracle</th></tr>");
    for r in &out.results {
        let x = &r.summary;
        let pool_results: Vec<&Summary> = out
            .results
            .iter()
            .filter(|o| o.summary.pool == x.pool && o.summary.policy != "oracle")
            .map(|o| &o.summary)
            .collect();
        let best_hours = pool_results
            .iter()
            .map(|o| o.instance_hours)
            .fold(f64::INFINITY, f64::min);
        let best_over = pool_results
            .iter()
            .map(|o| o.over_capacity_pct)
            .fold(f64::INFINITY, f64::min);
        let cls = |best: bool| {
            if best && x.policy != "oracle" {
                " class=\"best\""
            } else {
                ""
            }
        };
        let _ = write!(
            s,
            "<tr{}><td>{}</td><td>{}</td><td{}>{:.1}</td><td>{:.2}</td><td{}>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            if r.is_baseline {
                " class=\"baseline\""
            } else {
                ""
            },
            esc(&x.pool),
            if r.is_baseline {
                format!("[{}]", esc(&x.policy))
            } else {
                esc(&x.policy)
            },
            cls(x.instance_hours <= best_hours),
            x.instance_hours,
            x.cost,
            cls(x.over_capacity_pct <= best_over),
            x.over_capacity_pct,
            x.shortfall_seconds,
            x.scale_ups,
            x.scale_downs,
            x.peak_instances,
            x.mean_utilisation,
            x.vs_oracle
        );
    }
    s.push_str("</table>");
    s.push_str(r##"<p class="legend"><span><i class="sw" style="background:#222"></i>demand (rps; on long traces each bucket's busiest minute, its mean in grey)</span><span><i class="sw" style="background:#2b6cb0"></i>serving capacity (serving × max rps)</span><span><i class="sw" style="background:#9f7aea"></i>with launching instances</span><span><i class="sw" style="background:#e53e3e"></i>over capacity</span><span><i class="sw" style="background:#dd6b20"></i>forecast-driven scale-up</span></p>"##);
    for pool in pools(out) {
        let runs: Vec<&RunResult> = out
            .results
            .iter()
            .filter(|r| r.summary.pool == pool)
            .collect();
        let duration = runs
            .first()
            .and_then(|r| r.chart.last())
            .map_or(1, |p| p.t + 1);
        let y_max = y_max(&runs, scenario.model.instance_max_rps);
        let trace = runs.first().map_or("", |r| r.summary.trace.as_str());
        let _ = write!(
            s,
            "<h2>{} <span class=\"note\">({})</span></h2>",
            esc(pool),
            esc(trace)
        );
        let summaries: Vec<&Summary> = runs.iter().map(|r| &r.summary).collect();
        if summaries.iter().any(|x| x.policy.contains('@')) {
            let _ = write!(
                s,
                "<h3>Cost against loss</h3>{}",
                super::pareto::svg(
                    &summaries,
                    None,
                    &format!("{pool}: instance-hours against requests over capacity")
                )
            );
        }
        for r in runs {
            let _ = write!(
                s,
                "<h3>{}{}</h3>{}",
                if r.is_baseline {
                    "baseline: "
                } else {
                    "policy: "
                },
                esc(&r.summary.policy),
                chart(r, scenario.model.instance_max_rps, y_max, duration)
            );
        }
    }
    s.push_str("</body></html>\n");
    s
}
