//! The cost-versus-loss chart: instance-hours against the share of requests over capacity
//! (log scale), one mark per run, the baselines' setpoint families as curves. Inline SVG.

use std::fmt::Write as _;

use super::engine::Summary;
use super::report::esc;

/// Which family a mark belongs to (its colour and legend entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Policy,
    Tuned,
    Hpa,
    TargetTracking,
    Oracle,
}

impl Family {
    fn of(s: &Summary, tuned: Option<&str>) -> Option<Family> {
        let p = s.policy.as_str();
        if Some(p) == tuned {
            Some(Family::Tuned)
        } else if p == "oracle" {
            Some(Family::Oracle)
        } else if p == "hpa" || p.starts_with("hpa@") {
            Some(Family::Hpa)
        } else if p == "target-tracking" || p.starts_with("target-tracking@") {
            Some(Family::TargetTracking)
        } else if p == "static-peak" {
            None
        } else {
            Some(Family::Policy)
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Family::Policy => "#2b6cb0",
            Family::Tuned => "#2f855a",
            Family::Hpa => "#c05621",
            Family::TargetTracking => "#805ad5",
            Family::Oracle => "#222",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Policy => "policy",
            Family::Tuned => "tuned policy",
            Family::Hpa => "HPA (setpoints)",
            Family::TargetTracking => "target tracking (setpoints)",
            Family::Oracle => "oracle",
        }
    }
}

/// The lowest share drawn: runs that lost nothing sit on this line, labelled "0".
const FLOOR_PCT: f64 = 0.001;

fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// The chart of one pool's rows. `tuned` names the tuned policy's row, if any. The families
/// the rows hold are all drawn; the caller decides which rows to pass.
pub fn svg(rows: &[&Summary], tuned: Option<&str>, title: &str) -> String {
    let marks: Vec<(Family, &Summary)> = rows
        .iter()
        .filter_map(|s| Family::of(s, tuned).map(|f| (f, *s)))
        .collect();
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 64.0, 16.0, 28.0, 46.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let max_pct = marks
        .iter()
        .map(|(_, s)| s.over_capacity_pct)
        .fold(FLOOR_PCT * 10.0, f64::max);
    let (lo_dec, hi_dec) = (FLOOR_PCT.log10(), max_pct.log10().ceil().max(-2.0));
    let x = |pct: f64| {
        let v = pct.max(FLOOR_PCT).log10();
        left + pw * (v - lo_dec) / (hi_dec - lo_dec)
    };
    let hours: Vec<f64> = marks.iter().map(|(_, s)| s.instance_hours).collect();
    let (hmin, hmax) = hours
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
    let hmin = if hmin.is_finite() { hmin } else { 0.0 };
    let step = nice_step((hmax - hmin).max(1e-6));
    let (y0, y1) = ((hmin / step).floor() * step, (hmax / step).ceil() * step);
    let y1 = if y1 <= y0 { y0 + step } else { y1 };
    let y = |v: f64| top + ph - ph * (v - y0) / (y1 - y0);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{}"><text x="{left}" y="18" font-size="13" font-weight="600">{}</text><rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#ddd"/>"##,
        esc(title),
        esc(title)
    );
    // Axes: decades of over-capacity, round instance-hours.
    let mut d = lo_dec;
    while d <= hi_dec + 1e-9 {
        let pct = 10f64.powf(d);
        let label = if (d - lo_dec).abs() < 1e-9 {
            "0".to_string()
        } else if pct >= 1.0 {
            format!("{pct:.0}")
        } else {
            format!("{pct}")
        };
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" font-size="10" text-anchor="middle" fill="#555">{label}</text>"##,
            top + ph,
            top + ph + 13.0,
            x = x(pct)
        );
        d += 1.0;
    }
    let mut v = y0;
    while v <= y1 + step * 1e-6 {
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yv:.1}" y2="{yv:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
            left + pw,
            left - 4.0,
            y(v) + 3.0,
            if step >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            },
            yv = y(v)
        );
        v += step;
    }
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#333">requests over capacity (% of all, log scale; "0": none)</text><text transform="translate(14 {}) rotate(-90)" font-size="11" text-anchor="middle" fill="#333">instance-hours</text>"##,
        left + pw / 2.0,
        h - 8.0,
        top + ph / 2.0
    );
    // Family curves, by over-capacity.
    for fam in [Family::Hpa, Family::TargetTracking] {
        let mut pts: Vec<&Summary> = marks
            .iter()
            .filter(|(f, _)| *f == fam)
            .map(|(_, s)| *s)
            .collect();
        pts.sort_by(|a, b| a.over_capacity_pct.total_cmp(&b.over_capacity_pct));
        if pts.len() > 1 {
            let mut path = String::new();
            for (i, p) in pts.iter().enumerate() {
                let _ = write!(
                    path,
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { "L" },
                    x(p.over_capacity_pct),
                    y(p.instance_hours)
                );
            }
            let _ = write!(
                s,
                r##"<path d="{path}" fill="none" stroke="{}" stroke-opacity="0.5" stroke-dasharray="4 3"/>"##,
                fam.colour()
            );
        }
    }
    // Marks: area by the requests lost (the same traffic for every row).
    for (fam, r) in &marks {
        let radius = 3.0 + 9.0 * (r.over_capacity_pct / max_pct).sqrt();
        let (cx, cy) = (x(r.over_capacity_pct), y(r.instance_hours));
        let label = match fam {
            Family::Hpa | Family::TargetTracking => r
                .policy
                .split_once('@')
                .map_or_else(|| "ref".to_string(), |(_, sp)| format!("@{sp}")),
            _ => r.policy.clone(),
        };
        let anchor = if cx > left + pw * 0.8 { "end" } else { "start" };
        let dx = if anchor == "end" {
            -radius - 2.0
        } else {
            radius + 2.0
        };
        let _ = write!(
            s,
            r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="{radius:.1}" fill="{c}" fill-opacity="0.55" stroke="{c}"><title>{} — {:.1} instance-hours, {:.4}% over capacity</title></circle><text x="{:.1}" y="{:.1}" font-size="9" text-anchor="{anchor}" fill="{c}">{}</text>"##,
            esc(&r.policy),
            r.instance_hours,
            r.over_capacity_pct,
            cx + dx,
            cy + 3.0,
            esc(&label),
            c = fam.colour()
        );
    }
    // Legend, inside the plot's top right.
    let mut ly = top + 14.0;
    let mut seen = Vec::new();
    for (fam, _) in &marks {
        if seen.contains(fam) {
            continue;
        }
        seen.push(*fam);
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{c}" fill-opacity="0.55" stroke="{c}"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#333">{}</text>"##,
            left + pw - 170.0,
            ly - 3.0,
            left + pw - 162.0,
            ly,
            fam.name(),
            c = fam.colour()
        );
        ly += 14.0;
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#777">mark area ∝ requests lost</text>"##,
        left + pw - 170.0,
        ly
    );
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(policy: &str, hours: f64, over: f64) -> Summary {
        Summary {
            pool: "p".into(),
            policy: policy.into(),
            trace: "t".into(),
            instance_hours: hours,
            cost: hours,
            over_capacity_pct: over,
            shortfall_seconds: 0,
            scale_ups: 0,
            scale_downs: 0,
            peak_instances: 1,
            mean_utilisation: 0.5,
            vs_oracle: 1.0,
            savings_at_equal_loss: None,
        }
    }

    #[test]
    fn every_family_is_drawn_with_round_ticks() {
        let rows = [
            row("model-a", 120.0, 0.05),
            row("tuned", 110.0, 0.02),
            row("oracle", 100.0, 0.0),
            row("hpa", 130.0, 0.3),
            row("hpa@0.8", 160.0, 0.01),
            row("target-tracking", 140.0, 0.2),
            row("target-tracking@1.5", 125.0, 1.5),
            row("static-peak", 400.0, 0.0),
        ];
        let refs: Vec<&Summary> = rows.iter().collect();
        let svg = svg(&refs, Some("tuned"), "model-a on the tail");
        for fam in [
            "policy",
            "tuned policy",
            "HPA (setpoints)",
            "target tracking (setpoints)",
            "oracle",
        ] {
            assert!(svg.contains(&format!(">{fam}</text>")), "{fam} missing");
        }
        // One mark per row but static-peak; two family curves.
        assert_eq!(svg.matches("<circle").count() - 5, 7, "{svg}");
        assert_eq!(svg.matches("stroke-dasharray=\"4 3\"").count(), 2);
        // Log decades and round hours.
        for tick in [">0<", ">0.01<", ">0.1<", ">1<", ">10<"] {
            assert!(svg.contains(tick), "{tick} missing");
        }
        assert!(svg.contains(">100<") && svg.contains(">160<"), "{svg}");
        assert!(svg.contains("requests over capacity (% of all, log scale"));
        assert!(svg.contains(">instance-hours<"));
    }

    #[test]
    fn nice_steps_are_one_two_or_five() {
        assert_eq!(nice_step(60.0), 20.0);
        assert_eq!(nice_step(9.0), 2.0);
        assert_eq!(nice_step(0.4), 0.1);
    }
}
