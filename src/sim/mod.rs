//! Simulation ("what if"): traces, the traffic model, the virtual-clock driver that replays
//! traffic through the real reconciler, the baselines, and the reports.

pub mod baselines;
pub mod engine;
pub mod report;
pub mod run;
pub mod scenario;
pub mod trace;
pub mod traffic;
