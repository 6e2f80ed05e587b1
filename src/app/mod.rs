//! The application: reconciler, leader election, the embedded region runner, metrics, clocks.

pub mod clock;
pub mod decision_file;
pub mod election;
pub(crate) mod execute;
pub mod http;
pub mod leadership;
pub mod local;
pub mod observe;
pub mod plan;
pub mod policy_files;
pub mod reconciler;
pub mod reload;
pub mod service;
pub mod watch;

pub use reconciler::{CycleReport, Leadership, PoolError, Reconciler, Settings};
