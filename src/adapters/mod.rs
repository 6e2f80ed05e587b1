//! Implementations of the ports.

pub mod memory;
