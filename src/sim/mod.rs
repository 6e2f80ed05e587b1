//! Simulation ("what if"): the virtual-clock driver that replays traffic (`replay`) through
//! the real reconciler, the baselines, and the reports.

pub mod baselines;
pub mod engine;
pub mod pareto;
pub mod report;
pub mod run;
pub mod scenario;
pub mod tune;
pub mod tune_file;
pub mod tune_report;
