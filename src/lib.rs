//! mrgc-autoscaler: the capacity controller of a multi-region GPU inference cluster.
//!
//! Layers (see the README): `core` is pure (policy, decision, counting); `ports` are the
//! narrow traits to the world; `adapters` implement them (in-memory region, AWS); `app` runs
//! the reconcile loop; `sim` replays traces through the same code.

pub mod adapters;
pub mod app;
pub mod core;
pub mod ports;
pub mod replay;
pub mod schema;
pub mod sim;
pub mod telemetry;
