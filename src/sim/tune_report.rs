//! What `tune` writes beside the tuned policy: summary.json (every figure, head and tail
//! apart) and report.html (the cost-versus-loss charts a planner reads first).

use std::fmt::Write as _;

use serde_json::json;

use super::engine::{RunResult, Summary};
use super::report::{chart, esc, y_max};
use super::scenario::Scenario;
use super::tune::TuneOutcome;

/// summary.json: the choice, the rule, and the figures on the head (chosen on) and the tail
/// (scored on), never mixed.
pub fn summary_json(o: &TuneOutcome) -> String {
    let tuned = o.tuned();
    let head_of = |name: &str| {
        o.head_baselines
            .iter()
            .find(|s| s.policy == name)
            .map(|s| serde_json::to_value(s).unwrap_or_default())
    };
    let v = json!({
        "pool": o.pool,
        "trace": o.trace,
        "duration_s": o.duration_s,
        "split_s": o.split_s,
        "slo_over_capacity_pct": o.slo_pct,
        "candidates": o.candidates.len(),
        "rule": o.tier,
        "verdict": o.verdict(),
        "chosen": {
            "index": o.chosen,
            "settings": tuned.settings.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        },
        "head": {
            "note": "chosen on: seconds 0..split_s",
            "current": o.head.first(),
            "tuned": o.head.get(o.chosen),
            "hpa": head_of("hpa"),
            "target_tracking": head_of("target-tracking"),
        },
        "tail": {
            "note": "scored on: seconds split_s..duration_s, replayed with the head as history",
            "rows": o.tail.iter().map(|r| &r.summary).collect::<Vec<_>>(),
        },
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// report.html: the tail's Pareto chart (current, tuned, both baseline families, oracle), the
/// head's (every candidate against the same families), the table, and the tail's time series.
pub fn report_html(o: &TuneOutcome, scenario: &Scenario) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mrgc-autoscaler tune: {pool}</title>
<style>
body{{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}}
h1{{font-size:20px}} h2{{font-size:17px;margin-top:28px}} .note{{color:#555}}
table{{border-collapse:collapse;font-variant-numeric:tabular-nums}} td,th{{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}} td:first-child,th:first-child{{text-align:left}}
</style></head><body><h1>Tune: {pool} on {trace}</h1>
<p class="note">{n} candidates were replayed over the first {head_h:.0} hours ({split:.0} %) and one chosen there; the figures below are from the remaining {tail_h:.0} hours only, which no choice saw. SLO: {slo}% of requests over capacity. Launch time {launch}; an instance saturates at {max_rps} rps with a queue of {queue}.</p>
"##,
        pool = esc(&o.pool),
        trace = esc(&o.trace),
        n = o.candidates.len(),
        head_h = o.split_s as f64 / 3600.0,
        tail_h = (o.duration_s - o.split_s) as f64 / 3600.0,
        split = o.split_s as f64 / o.duration_s.max(1) as f64 * 100.0,
        slo = o.slo_pct,
        launch = humantime::format_duration(scenario.model.launch_time),
        max_rps = scenario.model.instance_max_rps,
        queue = scenario.model.queue_per_instance,
    );
    let tail: Vec<&Summary> = o.tail.iter().map(|r| &r.summary).collect();
    let _ = write!(
        s,
        "<h2>Scored on the later part</h2>{}",
        super::pareto::svg(
            &tail,
            Some("tuned"),
            &format!(
                "{}: instance-hours against requests over capacity, later part",
                o.pool
            )
        )
    );
    s.push_str("<table><tr><th>run</th><th>instance-hours</th><th>over-capacity %</th><th>scale actions</th><th>×oracle</th><th>savings at equal loss</th></tr>");
    for x in &tail {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.4}</td><td>{}</td><td>{:.3}</td><td>{}</td></tr>",
            esc(&x.policy),
            x.instance_hours,
            x.over_capacity_pct,
            x.scale_ups + x.scale_downs,
            x.vs_oracle,
            x.savings_at_equal_loss
                .map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
        );
    }
    s.push_str("</table>");
    // The head: where the choice was made.
    let mut head: Vec<Summary> = o.head_baselines.clone();
    let mut chosen = o.head[o.chosen].clone();
    chosen.policy = "tuned".into();
    let mut current = o.head[0].clone();
    current.policy = "current".into();
    head.push(current);
    head.push(chosen);
    let refs: Vec<&Summary> = head.iter().collect();
    let _ = write!(
        s,
        "<h2>Chosen on the earlier part</h2><p class=\"note\">The same families on the part the choice was made on.</p>{}",
        super::pareto::svg(
            &refs,
            Some("tuned"),
            &format!(
                "{}: instance-hours against requests over capacity, earlier part",
                o.pool
            )
        )
    );
    // The later part's time series, the tuned policy's and the references'.
    let runs: Vec<&RunResult> = o
        .tail
        .iter()
        .filter(|r| {
            matches!(
                r.summary.policy.as_str(),
                "current" | "tuned" | "hpa" | "target-tracking"
            )
        })
        .collect();
    let duration = runs
        .first()
        .and_then(|r| Some(r.chart.last()?.t.saturating_sub(r.chart.first()?.t) + 1))
        .unwrap_or(1);
    let top = y_max(&runs, scenario.model.instance_max_rps);
    s.push_str("<h2>The later part, minute by minute</h2><p class=\"note\">Demand (black: each bucket's busiest minute; grey: its mean), serving capacity (blue), with launching instances (purple, dashed), over capacity (red marks).</p>");
    for r in runs {
        let _ = write!(
            s,
            "<h3>{}</h3>{}",
            esc(&r.summary.policy),
            chart(r, scenario.model.instance_max_rps, top, duration)
        );
    }
    s.push_str("</body></html>\n");
    s
}
