//! Speed of the simulator and of `tune`. `cargo bench --bench simulator` prints the figures;
//! under `cargo test` it runs a few simulated hours and a two-candidate tune only, as a smoke
//! test.
//!
//! - the shipped 14-day, 3-pool scenario (`simulations/servegen-language-m-large.toml`), the
//!   policies only (goal: under 0.5 s);
//! - a 500-point tune of one 14-day pool, baseline families included (goal: under 60 s).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mrgc_autoscaler::sim::run::{SimOptions, simulate};
use mrgc_autoscaler::sim::scenario::Scenario;
use mrgc_autoscaler::sim::tune::{DEFAULT_SETPOINTS, TuneOptions, tune};

fn scenario() -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("simulations")
        .join("servegen-language-m-large.toml");
    let mut s = Scenario::load(&path).expect("the shipped scenario loads");
    s.baselines.clear();
    s
}

/// Keep the first `seconds` of every pool's trace.
fn truncate(s: &mut Scenario, seconds: u64) {
    for p in &mut s.pools {
        let keep = (seconds / u64::from(p.trace.step_s.max(1))) as usize;
        p.trace.rates.truncate(keep.max(1));
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn bench_simulate(s: &Scenario, runs: usize) {
    let opts = SimOptions {
        threads: threads(),
        ..SimOptions::default()
    };
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = simulate(s, &opts).expect("simulate");
            assert_eq!(out.results.len(), s.pools.len());
            t.elapsed()
        })
        .collect();
    times.sort();
    let days = s
        .pools
        .iter()
        .map(|p| p.trace.rates.len() as f64 * f64::from(p.trace.step_s) / 86_400.0)
        .fold(0.0, f64::max);
    println!(
        "simulate: {} pools × {days:.1} days, {runs} runs on {} threads, median {:?}, min {:?} (goal: < 0.5 s for 14 days × 3 pools)",
        s.pools.len(),
        threads(),
        times[times.len() / 2],
        times[0]
    );
}

fn bench_tune(s: &Scenario, points: usize, setpoints: &[f64]) {
    let mut one = s.clone();
    one.pools.truncate(1);
    let opts = TuneOptions {
        points,
        threads: threads(),
        baseline_setpoints: setpoints.to_vec(),
        ..TuneOptions::default()
    };
    let t = Instant::now();
    let out = tune(&one, &opts).expect("tune");
    let wall = t.elapsed();
    assert_eq!(out.head.len(), out.candidates.len());
    println!(
        "tune: {} candidates on {} ({:.1} days), {} baseline setpoints, {} threads: {wall:?} (goal: < 60 s for 500 points on 14 days)",
        out.candidates.len(),
        out.pool,
        out.duration_s as f64 / 86_400.0,
        setpoints.len(),
        threads()
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mut s = scenario();
    if full {
        bench_simulate(&s, 5);
        bench_tune(&s, 500, &DEFAULT_SETPOINTS);
    } else {
        truncate(&mut s, 2 * 86_400);
        let mut short = s.clone();
        truncate(&mut short, 6 * 3600);
        bench_simulate(&short, 1);
        bench_tune(&s, 2, &[]);
    }
}
