//! The decision maths: a table of named cases for every branch, and property tests for the
//! invariants (desired within bounds; no action inside the band; no scale-down on stale
//! metrics; never two launches for one deficit).

use std::path::PathBuf;
use std::time::Duration;

use mrgc_autoscaler::core::policy::{PolicySource, PoolPolicy, apply_override, parse_sources};
use mrgc_autoscaler::core::{
    Action, AsgState, Capacity, Observation, PoolHistory, ReasonCode, Sample, decide,
};
use proptest::prelude::*;

const NOW: i64 = 1_764_000_000_000; // 2025-11-24 16:00:00 UTC, a Monday
const MIN: i64 = 60_000;

fn policy(extra: &str) -> PoolPolicy {
    // Top-level keys in `extra` (before its first section) replace the defaults.
    let top = extra.split('[').next().unwrap_or("");
    let default = |key: &str, value: &str| {
        if top
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{key} =")))
        {
            String::new()
        } else {
            format!("{key} = {value}\n")
        }
    };
    let text = format!(
        "pool = \"model-a\"\n{}{}{extra}\n[regions.us-east-1]\nasg = \"asg-a\"\n",
        default("min", "2"),
        default("max", "100"),
    );
    let set = parse_sources(&[PolicySource {
        path: PathBuf::from("test.toml"),
        text,
    }])
    .unwrap_or_else(|e| panic!("test policy invalid: {e}"));
    set.pools["model-a"].clone()
}

struct Case {
    name: &'static str,
    extra: &'static str,
    /// (age in ms, rps) of samples, oldest first.
    samples: Vec<(i64, f64)>,
    serving: u32,
    launching: u32,
    held: u32,
    history: Vec<(i64, u32)>,
    last_up: Option<i64>,
    last_down: Option<i64>,
    asg_desired: Option<u32>,
    want_desired: u32,
    want_action: Action,
    want_code: ReasonCode,
    /// Fragments the reason must quote.
    reason_has: &'static [&'static str],
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            extra: "",
            samples: vec![],
            serving: 0,
            launching: 0,
            held: 0,
            history: vec![],
            last_up: None,
            last_down: None,
            asg_desired: None,
            want_desired: 0,
            want_action: Action::None,
            want_code: ReasonCode::WithinBand,
            reason_has: &[],
        }
    }
}

fn fresh(rps: f64) -> Vec<(i64, f64)> {
    vec![(30_000, rps)]
}

fn run(c: &Case) -> mrgc_autoscaler::core::Decision {
    let p = policy(c.extra);
    let mut h = PoolHistory::default();
    for (age, rec) in &c.history {
        h.seed(NOW - age, *rec);
    }
    h.last_scale_up_ms = c.last_up.map(|a| NOW - a);
    h.last_scale_down_ms = c.last_down.map(|a| NOW - a);
    let obs = Observation {
        samples: c
            .samples
            .iter()
            .map(|(age, rps)| Sample {
                at_ms: NOW - age,
                rps: *rps,
            })
            .collect(),
        capacity: Capacity {
            serving: c.serving,
            launching: c.launching,
            held: c.held,
            skipped: 0,
            ..Default::default()
        },
        asg: AsgState {
            name: "asg-a".into(),
            min: 0,
            max: 500,
            desired: c.asg_desired.unwrap_or(c.serving + c.launching + c.held),
        },
        seasonal: vec![],
        learned_launch: None,
        ..Default::default()
    };
    decide(&p, "us-east-1", &obs, &h, NOW)
}

#[test]
fn decision_table() {
    let cases = vec![
        Case {
            name: "inside the band holds",
            samples: fresh(60.0),
            serving: 48,
            want_desired: 48,
            want_code: ReasonCode::WithinBand,
            reason_has: &[
                "1.25 rps/instance",
                "60.0 rps over 48 serving",
                "hold at 48",
            ],
            ..Case::default()
        },
        Case {
            name: "at the top edge of the band holds",
            samples: fresh(60.0),
            serving: 40,
            want_desired: 40,
            want_code: ReasonCode::WithinBand,
            ..Case::default()
        },
        Case {
            name: "above the band scales up to rps / setpoint at once",
            samples: fresh(100.0),
            serving: 50,
            want_desired: 80,
            want_action: Action::ScaleUp,
            want_code: ReasonCode::AboveBand,
            reason_has: &["2.00 rps/instance", "above 1.5", "ceil(rps/1.25) = 80"],
            ..Case::default()
        },
        Case {
            name: "scale-up limited by a count step",
            extra: "[scale_up]\nmax_step = 5\n",
            samples: fresh(100.0),
            serving: 50,
            want_desired: 55,
            want_action: Action::ScaleUp,
            want_code: ReasonCode::ScaleUpLimited,
            reason_has: &[
                "wants ceil(rps/1.25) = 80",
                "max_step 5 allows +5",
                "scale up to 55",
            ],
            ..Case::default()
        },
        Case {
            name: "scale-up limited by a percent step",
            extra: "[scale_up]\nmax_step = \"50%\"\n",
            samples: fresh(200.0),
            serving: 10,
            want_desired: 15,
            want_action: Action::ScaleUp,
            want_code: ReasonCode::ScaleUpLimited,
            ..Case::default()
        },
        Case {
            name: "scale-up inside its cooldown holds",
            extra: "[scale_up]\ncooldown = \"2m\"\n",
            samples: fresh(100.0),
            serving: 50,
            last_up: Some(MIN),
            want_desired: 50,
            want_code: ReasonCode::ScaleUpCooldown,
            reason_has: &["last scale-up 1m ago", "2m cooldown"],
            ..Case::default()
        },
        Case {
            name: "launching instances count: no second launch for one deficit",
            samples: fresh(100.0),
            serving: 50,
            launching: 30,
            want_desired: 80,
            want_code: ReasonCode::WithinBand,
            reason_has: &["50 serving + 30 launching"],
            ..Case::default()
        },
        Case {
            name: "launched but not yet registered: the ASG already asks for enough",
            samples: fresh(100.0),
            serving: 50,
            asg_desired: Some(80),
            want_desired: 80,
            want_action: Action::None,
            want_code: ReasonCode::AboveBand,
            reason_has: &["the ASG already asks for 80"],
            ..Case::default()
        },
        Case {
            name: "no capacity with demand scales up without a step limit",
            extra: "min = 0\n",
            samples: fresh(30.0),
            serving: 0,
            want_desired: 24,
            want_action: Action::ScaleUp,
            want_code: ReasonCode::NoCapacity,
            ..Case::default()
        },
        Case {
            name: "below the band with no history scales down, step-limited",
            samples: fresh(20.0),
            serving: 50,
            want_desired: 45,
            want_action: Action::ScaleDown,
            want_code: ReasonCode::ScaleDownLimited,
            reason_has: &[
                "0.40 rps/instance",
                "below 1.0",
                "stabilized recommendation over 10m is 16",
                "allows −5",
            ],
            ..Case::default()
        },
        Case {
            name: "below the band within one step scales to the recommendation",
            extra: "[scale_down]\nmax_step = \"50%\"\n",
            samples: fresh(36.0),
            serving: 40,
            want_desired: 29,
            want_action: Action::ScaleDown,
            want_code: ReasonCode::BelowBand,
            reason_has: &["highest recommendation over the last 10m is 29"],
            ..Case::default()
        },
        Case {
            name: "stabilization: a higher recommendation in the window holds",
            samples: fresh(20.0),
            serving: 50,
            history: vec![(5 * MIN, 50), (2 * MIN, 30)],
            want_desired: 50,
            want_code: ReasonCode::ScaleDownStabilized,
            reason_has: &["recommends 16", "50 was recommended within the last 10m"],
            ..Case::default()
        },
        Case {
            name: "stabilization: recommendations older than the window are ignored",
            extra: "[scale_down]\nmax_step = \"100%\"\n",
            samples: fresh(20.0),
            serving: 50,
            history: vec![(11 * MIN, 50), (3 * MIN, 30)],
            want_desired: 30,
            want_action: Action::ScaleDown,
            want_code: ReasonCode::BelowBand,
            ..Case::default()
        },
        Case {
            name: "scale-down cooldown after a recent scaling",
            extra: "[scale_down]\ncooldown = \"5m\"\n",
            samples: fresh(20.0),
            serving: 50,
            last_up: Some(2 * MIN),
            want_desired: 50,
            want_code: ReasonCode::ScaleDownCooldown,
            reason_has: &["last scaling 2m ago", "5m scale-down cooldown"],
            ..Case::default()
        },
        Case {
            name: "stale metrics hold: never scale down",
            samples: vec![(10 * MIN, 5.0)],
            serving: 50,
            want_desired: 50,
            want_code: ReasonCode::MetricsStale,
            reason_has: &["10m old (stale after 3m)", "never scale down", "hold at 50"],
            ..Case::default()
        },
        Case {
            name: "missing metrics hold",
            samples: vec![],
            serving: 12,
            want_desired: 12,
            want_code: ReasonCode::MetricsMissing,
            reason_has: &["no rps samples for model-a in us-east-1"],
            ..Case::default()
        },
        Case {
            name: "stale metrics with a fallback raise to it",
            extra: "[metrics]\nstale_fallback = 10\n",
            samples: vec![],
            serving: 4,
            want_desired: 10,
            want_action: Action::ScaleUp,
            want_code: ReasonCode::MetricsFallback,
            reason_has: &["fallback of 10"],
            ..Case::default()
        },
        Case {
            name: "stale metrics with a fallback below capacity hold",
            extra: "[metrics]\nstale_fallback = 10\n",
            samples: vec![(10 * MIN, 500.0)],
            serving: 40,
            want_desired: 40,
            want_code: ReasonCode::MetricsStale,
            ..Case::default()
        },
        Case {
            name: "clamped to min",
            samples: fresh(0.0),
            serving: 3,
            extra: "[scale_down]\nmax_step = \"100%\"\n",
            want_desired: 2,
            want_action: Action::ScaleDown,
            want_code: ReasonCode::BelowMinimum,
            reason_has: &["scale down to 0; min is 2, so 2"],
            ..Case::default()
        },
        Case {
            name: "raised to min",
            samples: fresh(0.5),
            serving: 1,
            history: vec![],
            want_desired: 2,
            want_action: Action::ScaleUp,
            want_code: ReasonCode::BelowMinimum,
            reason_has: &["min is 2, so 2"],
            ..Case::default()
        },
        Case {
            name: "lowered to max",
            samples: fresh(1000.0),
            serving: 90,
            want_desired: 100,
            want_action: Action::ScaleUp,
            want_code: ReasonCode::AboveMaximum,
            reason_has: &["max is 100, so 100"],
            ..Case::default()
        },
        Case {
            name: "scheduled minimum raises min inside its window",
            extra: "[[schedule]]\nname = \"monday\"\ncron = \"0 15 * * 1\"\nduration = \"2h\"\nmin = 30\n",
            samples: fresh(12.5),
            serving: 10,
            want_desired: 30,
            want_action: Action::ScaleUp,
            want_code: ReasonCode::ScheduledMinimum,
            reason_has: &["scheduled window `monday` sets min 30"],
            ..Case::default()
        },
        Case {
            name: "held instances are added to the ASG's desired capacity",
            samples: fresh(100.0),
            serving: 50,
            held: 3,
            want_desired: 80,
            want_action: Action::ScaleUp,
            want_code: ReasonCode::AboveBand,
            ..Case::default()
        },
        Case {
            name: "no demand and no capacity holds at zero",
            extra: "min = 0\n",
            samples: fresh(0.0),
            serving: 0,
            want_desired: 0,
            want_code: ReasonCode::WithinBand,
            reason_has: &["no demand and no capacity"],
            ..Case::default()
        },
        Case {
            name: "window mean over several samples",
            extra: "[metrics]\nwindow = \"3m\"\n",
            samples: vec![
                (4 * MIN, 999.0),
                (2 * MIN + 30_000, 40.0),
                (MIN + 30_000, 60.0),
                (30_000, 80.0),
            ],
            serving: 48,
            want_desired: 48,
            want_code: ReasonCode::WithinBand,
            reason_has: &["60.0 rps over 48"],
            ..Case::default()
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let d = run(c);
        let ok = d.desired == c.want_desired
            && d.action == c.want_action
            && d.reason_code == c.want_code
            && c.reason_has.iter().all(|f| d.reason.contains(f));
        if !ok {
            failures.push(format!(
                "{}: got desired {} {} {} — {}\n   want desired {} {} {} with {:?}",
                c.name,
                d.desired,
                d.action,
                d.reason_code,
                d.reason,
                c.want_desired,
                c.want_action,
                c.want_code,
                c.reason_has
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn asg_desired_adds_held_and_respects_the_groups_bounds() {
    let p = policy("");
    let obs = Observation {
        samples: vec![Sample {
            at_ms: NOW - 1_000,
            rps: 100.0,
        }],
        capacity: Capacity {
            serving: 50,
            launching: 0,
            held: 3,
            skipped: 0,
            ..Default::default()
        },
        asg: AsgState {
            name: "asg-a".into(),
            min: 0,
            max: 70,
            desired: 53,
        },
        seasonal: vec![],
        learned_launch: None,
        ..Default::default()
    };
    let d = decide(&p, "us-east-1", &obs, &PoolHistory::default(), NOW);
    assert_eq!(d.desired, 80);
    assert_eq!(d.asg_desired, 70);
    assert_eq!(d.reason_code, ReasonCode::AsgBounds);
    assert!(
        d.reason.contains("the ASG asg-a allows 0–70"),
        "{}",
        d.reason
    );
}

#[test]
fn a_region_without_policy_is_left_alone() {
    let p = policy("");
    let obs = Observation {
        samples: vec![],
        capacity: Capacity::default(),
        asg: AsgState {
            name: "x".into(),
            min: 0,
            max: 5,
            desired: 3,
        },
        seasonal: vec![],
        learned_launch: None,
        ..Default::default()
    };
    let d = decide(&p, "eu-west-1", &obs, &PoolHistory::default(), NOW);
    assert_eq!(
        (d.action, d.reason_code, d.asg_desired),
        (Action::None, ReasonCode::RegionNotInPolicy, 3)
    );
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// Policies over every knob the shipped policies use: bounds, band, steps, stabilization,
/// confirmation, the collapse hold, headroom, the stale fallback and the SLO.
fn arb_policy() -> impl Strategy<Value = PoolPolicy> {
    (
        (0u32..20, 0u32..200, 1u32..4, 1u32..60, prop_oneof![Just("3"), Just("\"25%\""), Just("\"100%\"")]),
        (
            1u32..=3,
            prop_oneof![Just("0s"), Just("30m")],
            prop_oneof![Just(""), Just("headroom = 5\n"), Just("headroom = \"10%\"\n")],
            prop_oneof![Just(""), Just("stale_fallback = 10\n")],
            prop_oneof![Just(""), Just("[slo]\nover_capacity = \"0.1%\"\n")],
        ),
    )
        .prop_map(
            |((min, span, low_x, stab_m, step), (confirm, collapse, headroom, fallback, slo))| {
                let low = 0.5 * f64::from(low_x);
                policy(&format!(
                    "min = {min}\nmax = {}\n[band]\nlow = {low}\nhigh = {}\n{headroom}[scale_down]\nmax_step = {step}\nstabilization = \"{stab_m}m\"\ncollapse_hold = \"{collapse}\"\n[scale_up]\nmax_step = {step}\nconfirm = {confirm}\n[metrics]\n{fallback}{slo}",
                    min + span,
                    low + 0.5
                ))
            },
        )
}

fn arb_obs() -> impl Strategy<Value = (Vec<(i64, f64)>, u32, u32, u32)> {
    (
        prop::collection::vec((0i64..20 * MIN, 0.0f64..600.0), 0..5),
        0u32..300,
        0u32..50,
        0u32..5,
    )
}

fn observation(samples: &[(i64, f64)], serving: u32, launching: u32, held: u32) -> Observation {
    let mut s: Vec<Sample> = samples
        .iter()
        .map(|(age, rps)| Sample {
            at_ms: NOW - age,
            rps: *rps,
        })
        .collect();
    s.sort_by_key(|x| x.at_ms);
    s.dedup_by_key(|x| x.at_ms);
    Observation {
        samples: s,
        capacity: Capacity {
            serving,
            launching,
            held,
            skipped: 0,
            ..Default::default()
        },
        asg: AsgState {
            name: "asg-a".into(),
            min: 0,
            max: 10_000,
            desired: serving + launching + held,
        },
        seasonal: vec![],
        learned_launch: None,
        ..Default::default()
    }
}

fn arb_history() -> impl Strategy<Value = Vec<(i64, u32)>> {
    prop::collection::vec((0i64..30 * MIN, 0u32..300), 0..10)
}

fn history(recs: &[(i64, u32)]) -> PoolHistory {
    let mut sorted = recs.to_vec();
    sorted.sort_by_key(|(age, _)| -age);
    let mut h = PoolHistory::default();
    for (age, r) in sorted {
        h.seed(NOW - age, r);
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn desired_is_always_within_the_effective_bounds(
        p in arb_policy(), (samples, serving, launching, held) in arb_obs(), h in arb_history()
    ) {
        let d = decide(&p, "us-east-1", &observation(&samples, serving, launching, held), &history(&h), NOW);
        prop_assert!(d.min <= d.desired && d.desired <= d.max, "{} not in [{}, {}]: {}", d.desired, d.min, d.max, d.reason);
    }

    #[test]
    fn no_action_inside_the_band(
        p in arb_policy(), at in 0.0f64..1.0, launching_share in 0.0f64..1.0, u in 0.0f64..1.0, h in arb_history()
    ) {
        let r = &p.regions["us-east-1"];
        let counted = (r.min.max(1) as f64 + at * f64::from(r.max.saturating_sub(r.min.max(1)))).round() as u32;
        prop_assume!(counted >= r.min.max(1) && counted <= r.max);
        let launching = (f64::from(counted) * launching_share) as u32;
        let serving = counted - launching;
        let rps = f64::from(counted) * (p.band.low + u * (p.band.high - p.band.low));
        let d = decide(&p, "us-east-1", &observation(&[(1_000, rps)], serving, launching, 0), &history(&h), NOW);
        prop_assert_eq!(d.action, Action::None, "{}", d.reason);
        prop_assert_eq!(d.desired, counted);
    }

    #[test]
    fn never_a_scale_down_on_stale_or_missing_metrics(
        p in arb_policy(), rps in 0.0f64..600.0, age_extra in 1i64..60 * MIN, missing in any::<bool>(),
        serving in 0u32..300, launching in 0u32..50, h in arb_history()
    ) {
        let stale = p.metrics.stale_after.as_millis() as i64 + age_extra;
        let samples = if missing { vec![] } else { vec![(stale, rps)] };
        let d = decide(&p, "us-east-1", &observation(&samples, serving, launching, 0), &history(&h), NOW);
        let max = p.regions["us-east-1"].max;
        // Only the policy's max may bring capacity down.
        prop_assert!(d.desired >= (serving + launching).min(max), "{}", d.reason);
        if serving + launching <= max {
            prop_assert_ne!(d.action, Action::ScaleDown, "{}", d.reason);
        }
    }

    #[test]
    fn never_two_launches_for_one_deficit(
        p in arb_policy(), at in 0.0f64..1.0, over in 0.01f64..4.0, h in arb_history()
    ) {
        let r = &p.regions["us-east-1"];
        let serving = (f64::from(r.min) + at * f64::from(r.max - r.min)).floor() as u32;
        let rps = f64::from(serving.max(1)) * p.band.high * (1.0 + over);
        let first = decide(&p, "us-east-1", &observation(&[(1_000, rps)], serving, 0, 0), &history(&h), NOW);
        prop_assume!(first.action == Action::ScaleUp);
        // The ASG launched what was asked; the instances now show as launching.
        let launching = first.asg_desired - serving;
        let mut h2 = history(&h);
        h2.record(&first, true, std::time::Duration::from_secs(3600));
        let mut obs = observation(&[(1_000, rps)], serving, launching, 0);
        obs.asg.desired = first.asg_desired;
        let second = decide(&p, "us-east-1", &obs, &h2, NOW + 30_000);
        // If the first decision asked for the whole deficit, the second launches nothing more;
        // if a step limit held it back, the second may only continue towards the same target.
        let full = first.recommendation.clamp(first.min, first.max);
        if first.desired >= full {
            prop_assert_ne!(second.action, Action::ScaleUp, "first: {} / second: {}", first.reason, second.reason);
        } else {
            prop_assert!(second.desired <= full, "first: {} / second: {}", first.reason, second.reason);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The forecast floor.

fn ramp_obs(serving: u32, start_rps: f64, per_min: f64, minutes: i64) -> Observation {
    Observation {
        samples: (0..minutes)
            .map(|m| Sample {
                at_ms: NOW - (minutes - 1 - m) * MIN - 10_000,
                rps: start_rps + per_min * m as f64,
            })
            .collect(),
        capacity: Capacity {
            serving,
            launching: 0,
            held: 0,
            skipped: 0,
            ..Default::default()
        },
        asg: AsgState {
            name: "asg-a".into(),
            min: 0,
            max: 1000,
            desired: serving,
        },
        seasonal: vec![],
        learned_launch: None,
        ..Default::default()
    }
}

#[test]
fn a_rising_trend_lifts_capacity_one_launch_time_ahead() {
    let p = policy("[forecast]\nmode = \"trend\"\n");
    // 2 rps more every minute for 10 minutes, now at 58 rps on 40 instances: inside the band.
    let obs = ramp_obs(40, 40.0, 2.0, 10);
    let d = decide(&p, "us-east-1", &obs, &PoolHistory::default(), NOW);
    assert_eq!(d.reason_code, ReasonCode::Forecast, "{}", d.reason);
    assert_eq!(d.action, Action::ScaleUp);
    // 58 rps now, +2 rps/min for the 6m10s from the newest sample to now + 6m: ≈ 70.3 rps.
    let f = d.forecast_rps.unwrap();
    assert!((f - 70.33).abs() < 0.1, "{f}");
    // Enough to keep 70.3 rps inside the band (≤ 1.5 per instance): 47.
    assert_eq!(d.desired, 47);
    assert!(
        d.reason
            .contains("forecast 70 rps at +6m (trend +2.0 rps/min over 10m) needs 47; floor 47"),
        "{}",
        d.reason
    );
    // Off: the same observation holds.
    let off = decide(&policy(""), "us-east-1", &obs, &PoolHistory::default(), NOW);
    assert_eq!(
        (off.action, off.reason_code),
        (Action::None, ReasonCode::WithinBand)
    );
}

#[test]
fn the_forecast_lift_is_capped() {
    let p = policy("[forecast]\nmode = \"trend\"\nmax_lift = 5\n");
    let d = decide(
        &p,
        "us-east-1",
        &ramp_obs(40, 40.0, 2.0, 10),
        &PoolHistory::default(),
        NOW,
    );
    assert_eq!(d.desired, 45, "{}", d.reason);
    assert!(
        d.reason.contains("capped by forecast.max_lift 5"),
        "{}",
        d.reason
    );
}

#[test]
fn a_falling_trend_never_lowers_anything() {
    let p = policy("[forecast]\nmode = \"trend\"\n");
    let obs = ramp_obs(40, 70.0, -2.0, 10);
    let on = decide(&p, "us-east-1", &obs, &PoolHistory::default(), NOW);
    let off = decide(&policy(""), "us-east-1", &obs, &PoolHistory::default(), NOW);
    assert_eq!((on.desired, on.action), (off.desired, off.action));
    assert_eq!(on.forecast_rps, None);
}

#[test]
fn seasonal_history_lifts_ahead_of_a_daily_rise() {
    let p = policy("[forecast]\nmode = \"seasonal\"\n");
    let mut obs = ramp_obs(40, 50.0, 0.0, 10); // flat at 50 rps: no trend
    obs.seasonal = vec![
        mrgc_autoscaler::core::decide::SeasonalRef {
            lag_ms: 86_400_000,
            then: Some(40.0),
            then_ahead: Some(60.0),
        },
        mrgc_autoscaler::core::decide::SeasonalRef {
            lag_ms: 7 * 86_400_000,
            then: None,
            then_ahead: None,
        },
    ];
    let d = decide(&p, "us-east-1", &obs, &PoolHistory::default(), NOW);
    // A day ago traffic rose ×1.5 over the next 6 minutes: 75 rps → 50 instances at 1.5.
    assert_eq!(
        (d.reason_code, d.desired),
        (ReasonCode::Forecast, 50),
        "{}",
        d.reason
    );
    assert!(
        d.reason.contains("a day ago traffic rose ×1.50"),
        "{}",
        d.reason
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_forecast_never_causes_a_scale_down(
        p in arb_policy(), serving in 0u32..300, start in 0.0f64..400.0, slope in -20.0f64..20.0,
        h in arb_history(), seasonal_ratio in 0.2f64..3.0
    ) {
        let mut with = p.clone();
        with.forecast.mode = mrgc_autoscaler::core::policy::ForecastMode::Seasonal;
        let mut obs = ramp_obs(serving, start, slope, 12);
        obs.samples.retain(|s| s.rps >= 0.0);
        obs.seasonal = vec![mrgc_autoscaler::core::decide::SeasonalRef {
            lag_ms: 86_400_000,
            then: Some(50.0),
            then_ahead: Some(50.0 * seasonal_ratio),
        }];
        let hist = history(&h);
        let on = decide(&with, "us-east-1", &obs, &hist, NOW);
        let off = decide(&p, "us-east-1", &obs, &hist, NOW);
        prop_assert!(on.desired >= off.desired, "on {} < off {}: {}", on.desired, off.desired, on.reason);
        if on.action == Action::ScaleDown {
            prop_assert_eq!(off.action, Action::ScaleDown);
        }
    }
}

#[test]
fn a_single_minute_above_the_band_waits_for_confirmation() {
    let p = policy("[scale_up]\nconfirm = 2\n");
    // 40 instances: the previous minute at 1.25 per instance, the newest at 1.75 (a spike).
    let spike = observation(&[(90_000, 50.0), (30_000, 70.0)], 40, 0, 0);
    let d = decide(&p, "us-east-1", &spike, &PoolHistory::default(), NOW);
    assert_eq!(
        (d.action, d.reason_code, d.desired),
        (Action::None, ReasonCode::ScaleUpUnconfirmed, 40),
        "{}",
        d.reason
    );
    assert!(
        d.reason.contains(
            "the newest 1 of the 2 samples scale_up.confirm asks for are above it, and the newest is 1.75 per instance, not above scale_up.confirm_unless 2.0; hold at 40"
        ),
        "{}",
        d.reason
    );
    // Its recommendation still feeds the stabilization window.
    assert_eq!(d.recommendation, 56);
    // The second minute above the band confirms: scale up at once.
    let rise = observation(&[(90_000, 66.0), (30_000, 70.0)], 40, 0, 0);
    let d = decide(&p, "us-east-1", &rise, &PoolHistory::default(), NOW);
    assert_eq!(
        (d.action, d.reason_code, d.desired),
        (Action::ScaleUp, ReasonCode::AboveBand, 56)
    );
    // A jump past confirm_unless per instance needs no confirmation.
    let jump = observation(&[(90_000, 50.0), (30_000, 84.0)], 40, 0, 0);
    let d = decide(&p, "us-east-1", &jump, &PoolHistory::default(), NOW);
    assert_eq!((d.action, d.desired), (Action::ScaleUp, 68), "{}", d.reason);
    // With only one sample there is no telling a spike from a rise: act.
    let first = observation(&[(30_000, 70.0)], 40, 0, 0);
    let d = decide(&p, "us-east-1", &first, &PoolHistory::default(), NOW);
    assert_eq!(d.action, Action::ScaleUp, "{}", d.reason);
    // The default (confirm = 1) acts on the spike.
    let d = decide(
        &policy(""),
        "us-east-1",
        &spike,
        &PoolHistory::default(),
        NOW,
    );
    assert_eq!((d.action, d.desired), (Action::ScaleUp, 56));
}

#[test]
fn a_collapse_of_traffic_holds_capacity_for_the_collapse_hold() {
    let p = policy(
        "[scale_down]\nstabilization = \"1m\"\ncollapse_hold = \"30m\"\ncollapse_below = 0.5\n",
    );
    // 60 instances, traffic fell to 10 rps: 8 wanted, under half of 60.
    let obs = observation(&[(30_000, 10.0)], 60, 0, 0);
    let mut h = PoolHistory::default();
    let d = decide(&p, "us-east-1", &obs, &h, NOW);
    assert_eq!(
        (d.action, d.reason_code, d.desired),
        (Action::None, ReasonCode::CollapseHold, 60),
        "{}",
        d.reason
    );
    assert!(
        d.reason
            .contains("recommends 8, under 0.5 of the 60 counted")
            && d.reason
                .contains("hold at 60 for up to 30m (scale_down.collapse_hold)"),
        "{}",
        d.reason
    );
    assert_eq!(d.collapse_since_ms, Some(NOW));
    h.record(&d, true, Duration::from_secs(60));
    // Still collapsed 29 minutes on: hold, quoting how long ago it began.
    let later = |m: i64| {
        let mut o = obs.clone();
        o.samples[0].at_ms += m * MIN;
        o
    };
    let d = decide(&p, "us-east-1", &later(29), &h, NOW + 29 * MIN);
    assert_eq!(d.reason_code, ReasonCode::CollapseHold, "{}", d.reason);
    assert!(d.reason.contains("collapsed 29m ago"), "{}", d.reason);
    h.record(&d, true, Duration::from_secs(60));
    // After the hold the ordinary scale-down applies (10 % per cycle by default).
    let d = decide(&p, "us-east-1", &later(30), &h, NOW + 30 * MIN);
    assert_eq!(
        (d.action, d.reason_code, d.desired, d.collapse_since_ms),
        (
            Action::ScaleDown,
            ReasonCode::ScaleDownLimited,
            54,
            Some(NOW)
        ),
        "{}",
        d.reason
    );
    // A fall to 40 rps (30 wanted, half of 60) is no collapse: the ordinary scale-down.
    let d = decide(
        &p,
        "us-east-1",
        &observation(&[(30_000, 40.0)], 60, 0, 0),
        &h,
        NOW,
    );
    assert_eq!(d.collapse_since_ms, None);
    assert_eq!(d.action, Action::ScaleDown, "{}", d.reason);
    // Off by default.
    let d = decide(&policy(""), "us-east-1", &obs, &PoolHistory::default(), NOW);
    assert_eq!(d.action, Action::ScaleDown, "{}", d.reason);
}

#[test]
fn confirmation_and_collapse_knobs_are_validated_and_sweepable() {
    let text = "pool = \"p\"\nmin = 1\nmax = 2\n[scale_up]\nconfirm = 5\nconfirm_unless = 0\n[scale_down]\ncollapse_below = 1.5\ncollapse_hold = \"2d\"\n[regions.us-east-1]\nasg = \"a\"\n";
    let err = parse_sources(&[PolicySource {
        path: PathBuf::from("bad.toml"),
        text: text.into(),
    }])
    .unwrap_err()
    .to_string();
    for want in [
        "bad.toml:5:11: scale_up.confirm = 5 is outside 1–3 samples",
        "bad.toml:6:18: scale_up.confirm_unless = 0 is outside (0, 100]",
        "bad.toml:8:18: scale_down.collapse_below = 1.5 is outside (0, 1)",
        "bad.toml:9:17: scale_down.collapse_hold (2days) is longer than a day",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    let p = policy("");
    let q = apply_override(&p, "scale_up.confirm", "2").unwrap();
    assert_eq!(q.scale_up.confirm, 2);
    let q = apply_override(&q, "scale_down.collapse_hold", "30m").unwrap();
    assert_eq!(q.scale_down.collapse_hold, Duration::from_secs(1800));
    assert!(apply_override(&q, "scale_down.collapse_below", "1").is_err());
    assert!(apply_override(&q, "scale_up.confirm", "4").is_err());
}
