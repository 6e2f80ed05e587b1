//! Every scenario shipped in simulations/ loads (its policies, traces and model) and runs
//! through the simulator, so an edit to a policy, a trace or the scenario format cannot leave
//! one broken. Each is run on at most its first six hours here (the whole of them is
//! `cargo run --release -- simulate simulations/<name>.toml`, minutes in a debug build).

use std::path::Path;

use mrgc_autoscaler::sim::run::{SimOptions, simulate};
use mrgc_autoscaler::sim::scenario::Scenario;

const HOURS: u64 = 6;

#[test]
fn every_shipped_scenario_loads_and_runs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let mut s = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!s.pools.is_empty(), "{name}: no pool");
        for p in &mut s.pools {
            assert!(
                !p.policies.is_empty(),
                "{name}: pool {} has no policy",
                p.name
            );
            // (The hour-long trace runs whole.)
            let keep = (HOURS * 3600 / u64::from(p.trace.step_s.max(1))) as usize;
            assert!(!p.trace.rates.is_empty(), "{name}: pool {}'s trace", p.name);
            p.trace.rates.truncate(keep);
        }
        let out = simulate(&s, &SimOptions::default()).unwrap();
        // A row per pool and policy, and one per pool and baseline.
        let policies: usize = s.pools.iter().map(|p| p.policies.len()).sum();
        assert_eq!(
            out.results.len(),
            policies + s.pools.len() * s.baselines.len(),
            "{name}"
        );
        for r in &out.results {
            let m = &r.summary;
            assert!(
                m.instance_hours > 0.0 && m.instance_hours.is_finite(),
                "{name}: {} {}: {m:?}",
                m.pool,
                m.policy
            );
            assert!(
                (0.0..=100.0).contains(&m.over_capacity_pct),
                "{name}: {m:?}"
            );
        }
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "azure-llm-2023-conv",
            "nab-aws-elb-requests",
            "nasa-http-1995",
            "servegen-language-m-large"
        ],
        "a scenario was added or removed: update this list"
    );
}
