//! Where policy configs and traffic live. Two traits — [`PolicyStore`] (configs, their audit
//! trail, their changes) and [`TrafficStore`] (recorded traffic) — each with its conformance
//! suite (`tests/conformance.rs`) run on both implementations: [`embedded`] (default, on disk)
//! and [`firestore`] (production).

use crate::config::PolicyConfig;
use crate::error::{Error, Result};
use crate::names::PolicyName;
use crate::ops::{plan, AuditEvent, Change, Request};
use crate::traffic::{ReplicaMinute, StoredMinute};
use tokio::sync::watch;

pub mod access;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "firestore")]
pub mod firestore;
pub mod instrumented;

/// What changed in the store, as its change feed tells followers.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyChange {
    /// The policy now has this config.
    Put(std::sync::Arc<PolicyConfig>),
    /// The policy is gone.
    Removed(String),
    /// The feed lost track (a reconnect, a reset): read everything again.
    Resync,
}

/// A store of policy configs and their audit trail.
///
/// Implementations provide reads and one atomic compare-and-swap ([`PolicyStore::commit`]);
/// the operation rules live in [`crate::ops`], shared by every store through
/// [`PolicyStore::execute`].
#[async_trait::async_trait]
pub trait PolicyStore: Send + Sync + 'static {
    /// A short description for people: `embedded (data/canary.redb)`, `firestore (project x)`.
    fn describe(&self) -> String;

    async fn get(&self, name: &PolicyName) -> Result<Option<PolicyConfig>>;

    /// Every policy, sorted by name.
    async fn list(&self) -> Result<Vec<PolicyConfig>>;

    /// Atomically: if the policy's revision equals `change.expected` (`None`: it must not
    /// exist), write `change.after` (`None`: delete) and append `change.event`. Otherwise fail
    /// with [`Error::Conflict`] carrying what the store holds now, and write nothing.
    async fn commit(&self, change: &Change) -> Result<()>;

    /// The policy's newest audit events first, at most `limit`.
    async fn events(&self, name: &PolicyName, limit: usize) -> Result<Vec<AuditEvent>>;

    /// A counter that moves whenever the store may have changed (in-process for the embedded
    /// store, from a real-time listener for Firestore).
    fn changes(&self) -> watch::Receiver<u64>;

    /// The change feed: every config written or deleted, as the store learns of it (in-process
    /// for the embedded store, from the real-time listener for Firestore), so that followers
    /// apply changes without re-reading the collection.
    fn feed(&self) -> tokio::sync::broadcast::Receiver<PolicyChange>;

    /// Plans `request` against the current config and commits it; returns the new config
    /// (`None` after a delete). A concurrent writer makes this fail with [`Error::Conflict`].
    async fn execute(&self, request: &Request) -> Result<Option<PolicyConfig>> {
        let current = self.get(&request.policy).await?;
        let change = plan(current.as_ref(), request, jiff::Timestamp::now())?;
        self.commit(&change).await?;
        Ok(change.after)
    }
}

/// Where every replica's recorded traffic lives ([`crate::recorder`] writes it,
/// [`crate::traffic_cache`] reads it).
#[async_trait::async_trait]
pub trait TrafficStore: Send + Sync + 'static {
    /// Writes one flush's documents atomically, each replacing what the same key
    /// ([`ReplicaMinute::key`]) held. Never merges: only one replica writes a key, so replacing
    /// is exact and retrying is harmless. Every document written gets the same new position.
    async fn put_traffic(&self, docs: &[ReplicaMinute]) -> Result<()>;

    /// Every document whose position is `since` or later (microseconds since the epoch), in no
    /// particular order: a reader that passes the newest position it has seen reads nothing
    /// twice but the documents of that one write.
    async fn traffic_since(&self, since: i64) -> Result<Vec<StoredMinute>>;

    /// Deletes traffic of minutes before `before`; returns how many documents went. Firestore
    /// leaves this to its TTL policy on `expire_at` and deletes nothing here.
    async fn prune_traffic(&self, before: i64) -> Result<usize>;
}

/// Everything a replica keeps in its store: policies, traffic and access records.
pub trait Store: PolicyStore + TrafficStore + access::AccessStore {}
impl<T: PolicyStore + TrafficStore + access::AccessStore> Store for T {}

/// How many live followers a change feed buffers for before one must resync.
pub const FEED_CAPACITY: usize = 1024;

/// Builds the conflict error for `change` given what the store holds now.
pub(crate) fn conflict(change: &Change, current: Option<PolicyConfig>) -> Error {
    if current.is_none() && change.expected.is_some() {
        return Error::Conflict {
            policy: change.policy.to_string(),
            expected: change.expected,
            current: None,
        };
    }
    if change.expected.is_none() && current.is_some() {
        return Error::AlreadyExists(change.policy.to_string());
    }
    Error::Conflict {
        policy: change.policy.to_string(),
        expected: change.expected,
        current: current.map(Box::new),
    }
}
