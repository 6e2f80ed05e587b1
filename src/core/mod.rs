//! The pure core: policy model and validation, the decision and its plan, capacity counting,
//! decision records. No tokio, no AWS, no file system, no clock reads: `now` is always a
//! parameter.

pub mod capacity;
pub mod decide;
pub mod demand;
pub mod plan;
pub mod policy;
pub mod record;
pub mod sizing;

pub use capacity::{Counted, Health, InstanceRecord, InstanceState, Validation};
pub use decide::{
    Action, AsgState, Capacity, Decision, Observation, PoolHistory, ReasonCode, Sample, decide,
};
pub use plan::{Plan, Step};
pub use policy::{PolicyError, PolicySet, PoolPolicy, Problem};
pub use record::{DecisionKey, DecisionRecord, Outcome, RecordContext};
