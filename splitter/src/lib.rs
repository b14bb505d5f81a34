//! APX Canary's splitter: exact, salted, sticky tenant bucketing for canary rollouts.
//!
//! - [`bucket`]: the bucketing contract (`vectors/` proves it).
//! - [`share`], [`names`], [`config`]: the validated policy model.
//! - [`decision`]: one request's decision; [`simulate`]: previews of a share change by tenant,
//!   [`preview`]: by request (from recorded traffic).
//! - [`ops`]: operations and their audit events, as pure functions; [`analysis`]: judging a
//!   canary against stable from recorded traffic, as pure functions.
//! - [`store`] (feature `store`): the `PolicyStore` and `TrafficStore` traits, embedded and
//!   Firestore stores; [`snapshot`]: the in-memory snapshot that follows a store's change feed
//!   and answers `select_version`.
//! - [`traffic`]: recorded traffic per policy, version and minute ([`cohort`]: and by tenant); [`recorder`] writes this
//!   replica's, [`traffic_cache`] keeps the fleet's in memory.
//! - [`layer`] (feature `layer`): the tower layer that routes requests and records outcomes.

pub mod analysis;
pub mod bucket;
pub mod cohort;
pub mod config;
pub mod decision;
pub mod error;
pub mod names;
pub mod ops;
mod plan_ops;
pub mod plans;
pub mod preview;
pub mod share;
pub mod simulate;
pub mod traffic;

#[cfg(feature = "layer")]
pub mod layer;
#[cfg(feature = "store")]
pub mod recorder;
#[cfg(feature = "store")]
pub mod snapshot;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "store")]
pub mod traffic_cache;

pub use bucket::{bucket, Bucket, BUCKETS};
pub use config::{Pin, PolicyConfig, RolloutState, VersionRole};
pub use decision::{decide, Decision, Reason};
pub use error::{Error, Result};
pub use names::{Actor, PolicyName, TenantId, Version, LATEST};
pub use ops::{AuditEvent, Change, NewPolicy, Operation, Request};
pub use share::BasisPoints;
pub use simulate::{SimulatedTenant, SimulationCounts, Simulator};
