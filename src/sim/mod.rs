//! Simulation ("what if"): the virtual-clock driver that replays traffic (`replay`) through
//! the real reconciler, the baselines, and the reports.

pub mod baselines;
pub mod engine;
pub mod report;
pub mod run;
pub mod scenario;
