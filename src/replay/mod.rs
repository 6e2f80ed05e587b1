//! Traffic replay: request traces and the traffic model that turns a trace into per-second
//! arrivals. Shared by the embedded run (`app::local`) and the simulator (`sim`), and below
//! both: it imports neither.

pub mod trace;
pub mod traffic;
