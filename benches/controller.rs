//! Speed of the controller's hot paths. `cargo bench --bench controller` prints the figures;
//! under `cargo test` it runs a few iterations only, as a smoke test.
//!
//! - one `decide()` call (goal: under 5 µs median);
//! - one reconcile cycle over 1,000 pools against the in-memory region (goal: under 50 ms).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mrgc_autoscaler::adapters::memory::MemoryRegion;
use mrgc_autoscaler::app::{Leadership, Reconciler, Settings};
use mrgc_autoscaler::core::policy::{PolicySource, parse_sources};
use mrgc_autoscaler::core::{
    AsgState, Capacity, Observation, PolicySet, PoolHistory, Sample, decide,
};
use mrgc_autoscaler::telemetry::Metrics;

const T0: i64 = 1_764_000_000_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn policy_text(pool: &str) -> String {
    format!(
        "pool = \"{pool}\"\nmin = 2\nmax = 200\n[scale_down]\nstabilization = \"10m\"\n[regions.us-east-1]\nasg = \"asg-{pool}\"\n[[schedule]]\nname = \"peak\"\ncron = \"30 12 * * 1-5\"\nduration = \"4h\"\nmin = 20\n"
    )
}

fn bench_decide(iterations: usize) {
    let set = parse_sources(&[PolicySource {
        path: PathBuf::from("model-a.toml"),
        text: policy_text("model-a"),
    }])
    .expect("bench policy");
    let p = &set.pools["model-a"];
    let mut history = PoolHistory::default();
    for i in 0..20 {
        history.seed(T0 - 600_000 + i * 30_000, 60 + (i % 7) as u32);
    }
    let obs = Observation {
        samples: (0..5)
            .map(|m| Sample {
                at_ms: T0 - 30_000 - m * 60_000,
                rps: 80.0 + m as f64,
            })
            .rev()
            .collect(),
        capacity: Capacity {
            serving: 50,
            launching: 4,
            held: 1,
            skipped: 0,
            ..Default::default()
        },
        asg: AsgState {
            name: "asg-model-a".into(),
            min: 0,
            max: 500,
            desired: 55,
        },
        seasonal: vec![],
        learned_launch: None,
        ..Default::default()
    };
    let mut times = Vec::with_capacity(iterations);
    let mut sink = 0u64;
    for i in 0..iterations {
        let now = T0 + (i as i64 % 1000);
        let t = Instant::now();
        let d = decide(p, "us-east-1", &obs, &history, now);
        times.push(t.elapsed());
        sink = sink.wrapping_add(u64::from(d.desired));
    }
    times.sort();
    println!(
        "decide(): {iterations} calls, median {:?}, p90 {:?}, p99 {:?} (goal: median < 5 µs) [{sink}]",
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99)
    );
}

fn bench_cycle(pools: usize, instances_per_pool: u32, cycles: usize) {
    let sources: Vec<PolicySource> = (0..pools)
        .map(|i| PolicySource {
            path: PathBuf::from(format!("pool-{i:04}.toml")),
            text: policy_text(&format!("pool-{i:04}")),
        })
        .collect();
    let set: PolicySet = parse_sources(&sources).expect("bench policies");
    let region = MemoryRegion::new("us-east-1", 1);
    for i in 0..pools {
        let pool = format!("pool-{i:04}");
        region.create_asg(
            &format!("asg-{pool}"),
            &pool,
            0,
            500,
            Duration::from_secs(360),
            Duration::ZERO,
        );
        region.warm_start(&format!("asg-{pool}"), instances_per_pool, T0);
        for m in 0..10 {
            let rps = f64::from(instances_per_pool) * (1.0 + ((i + m) % 7) as f64 * 0.1);
            region.put_rps(&pool, "us-east-1", T0 - m as i64 * 60_000, rps);
        }
    }
    let mut rec = Reconciler::new(
        region.backends(),
        Settings {
            region: "us-east-1".into(),
            controller_id: "bench".into(),
            dry_run: false,
            record_heartbeat: Duration::from_secs(600),
        },
        Metrics::new("us-east-1"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lead = Leadership::sole();
    let mut times = Vec::with_capacity(cycles);
    for c in 0..cycles {
        let now = T0 + c as i64 * 30_000;
        region.advance(now);
        let t = Instant::now();
        let report = rt.block_on(rec.reconcile_all(&set, now, &lead));
        times.push(t.elapsed());
        assert_eq!(report.pools.len(), pools, "{:?}", report.errors.first());
    }
    times.sort();
    println!(
        "reconcile cycle: {pools} pools × {instances_per_pool} instances, {cycles} cycles, median {:?}, max {:?} (goal: < 50 ms)",
        percentile(&times, 0.5),
        times[times.len() - 1]
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if full {
        bench_decide(200_000);
        bench_cycle(1_000, 20, 20);
    } else {
        bench_decide(1_000);
        bench_cycle(20, 5, 2);
    }
}
