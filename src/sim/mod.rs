//! Simulation: traces, the traffic model, and (later) the virtual-clock driver.

pub mod trace;
pub mod traffic;
