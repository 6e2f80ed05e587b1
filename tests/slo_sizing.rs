//! SLO sizing end to end, through the simulator: the decisions `core::sizing` drives, judged
//! by what they cost and lose on made-up traffic whose answer is known.
//!
//! - A diurnal rise is met a launch time early: on a smooth day-long swing the SLO policy
//!   loses no more than its SLO, while running leaner than the band as written.
//! - A steady bursty pool keeps its capacity through its bursts: a 4-minute burst every 12
//!   minutes comes back within two launch times, so capacity is not given back between them
//!   (the band as written with the HPA's 5-minute stabilization gives it back and buys it
//!   again every time).

use std::path::PathBuf;
use std::time::Duration;

use mrgc_autoscaler::core::policy::{PolicySource, parse_sources};
use mrgc_autoscaler::replay::trace::Trace;
use mrgc_autoscaler::replay::traffic::Scale;
use mrgc_autoscaler::sim::engine::Summary;
use mrgc_autoscaler::sim::run::{SimOptions, simulate};
use mrgc_autoscaler::sim::scenario::Scenario;

fn run(rates: Vec<f64>, policy: &str) -> Summary {
    let set = parse_sources(&[PolicySource {
        path: PathBuf::from("p.toml"),
        text: format!(
            "pool = \"p\"\nmin = 2\nmax = 400\n{policy}\n[regions.us-east-1]\nasg = \"asg-p\"\n"
        ),
    }])
    .unwrap();
    let trace = Trace {
        name: "made-up".into(),
        step_s: 60,
        rates,
    };
    let mut s = Scenario::with_trace(
        trace,
        "made-up",
        &set,
        Some("p"),
        Scale::Factor(1.0),
        Some(Duration::from_secs(360)),
        "us-east-1",
    )
    .unwrap();
    s.baselines.clear();
    let out = simulate(&s, &SimOptions::default()).unwrap();
    out.results[0].summary.clone()
}

const SLO: &str = "[slo]\nover_capacity = \"0.1%\"\n";

#[test]
fn a_diurnal_rise_is_met_a_launch_time_early() {
    // Three days swinging between 40 and 200 rps over 24 h: the steepest rise is about
    // 0.35 rps a minute, 2 % over a launch time near the bottom of the day.
    let rates: Vec<f64> = (0..3 * 1440)
        .map(|m| 120.0 - 80.0 * (2.0 * std::f64::consts::PI * f64::from(m) / 1440.0).cos())
        .collect();
    let slo = run(rates.clone(), SLO);
    let written = run(rates, "");
    assert!(
        slo.over_capacity_pct <= 0.1,
        "the SLO policy lost {} % on a smooth day",
        slo.over_capacity_pct
    );
    // Knowing the day's growth, it runs far leaner than the cautious band as written.
    assert!(
        slo.instance_hours < written.instance_hours * 0.9,
        "SLO {} against written {} instance-hours",
        slo.instance_hours,
        written.instance_hours
    );
}

#[test]
fn a_steady_bursty_pool_keeps_its_capacity_through_its_bursts() {
    // Two days at 60 rps with a burst to 150 rps for 4 minutes every 12.
    let rates: Vec<f64> = (0..2 * 1440)
        .map(|m| if m % 12 < 4 { 150.0 } else { 60.0 })
        .collect();
    let five = "[scale_down]\nstabilization = \"5m\"\n";
    let slo = run(rates.clone(), &format!("{SLO}{five}"));
    let written = run(rates, five);
    // After the first day of history the bursts are recurrent: the capacity stays.
    assert!(
        slo.scale_downs * 4 < written.scale_downs,
        "SLO policy gave capacity back {} times, the band as written {}",
        slo.scale_downs,
        written.scale_downs
    );
    assert!(
        slo.over_capacity_pct <= written.over_capacity_pct,
        "SLO {} % against written {} %",
        slo.over_capacity_pct,
        written.over_capacity_pct
    );
    // Keeping the bursts' capacity is not keeping everything: the quiet minutes between them
    // are paid for, no more.
    assert!(
        slo.instance_hours <= written.instance_hours * 1.25,
        "SLO {} against written {} instance-hours",
        slo.instance_hours,
        written.instance_hours
    );
}
