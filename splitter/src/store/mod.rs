//! Where policy configs live. One trait, one conformance suite (`tests/conformance.rs`), two
//! implementations: [`embedded`] (default, on disk) and [`firestore`] (production).

use crate::config::PolicyConfig;
use crate::error::{Error, Result};
use crate::names::PolicyName;
use crate::ops::{plan, AuditEvent, Change, Request};
use crate::traffic::TrafficMinute;
use tokio::sync::watch;

pub mod access;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "firestore")]
pub mod firestore;
pub mod instrumented;

/// A store of policy configs and their audit trail.
///
/// Implementations provide reads and one atomic compare-and-swap ([`ConfigStore::commit`]);
/// the operation rules live in [`crate::ops`], shared by every store through
/// [`ConfigStore::execute`].
#[async_trait::async_trait]
pub trait ConfigStore: Send + Sync + 'static {
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
    /// store, from a real-time listener for Firestore). Followers re-read on change.
    fn changes(&self) -> watch::Receiver<u64>;

    /// Writes each replica's totals for a (policy, minute), replacing what that replica wrote
    /// before for the same key ([`TrafficMinute::key`]). Never merges: only one replica writes
    /// a key, so replacing is exact and retrying is harmless.
    async fn put_traffic(&self, minutes: &[TrafficMinute]) -> Result<()>;

    /// Stored traffic for minutes `from..=to` (every replica's document), for one policy or all.
    async fn traffic(
        &self,
        policy: Option<&PolicyName>,
        from: i64,
        to: i64,
    ) -> Result<Vec<TrafficMinute>>;

    /// Deletes traffic for minutes before `before`; returns how many documents went.
    async fn prune_traffic(&self, before: i64) -> Result<usize>;

    /// Plans `request` against the current config and commits it; returns the new config
    /// (`None` after a delete). A concurrent writer makes this fail with [`Error::Conflict`].
    async fn execute(&self, request: &Request) -> Result<Option<PolicyConfig>> {
        let current = self.get(&request.policy).await?;
        let change = plan(current.as_ref(), request, jiff::Timestamp::now())?;
        self.commit(&change).await?;
        Ok(change.after)
    }
}

/// Everything a replica keeps in its store: policies (with traffic) and access records.
pub trait Store: ConfigStore + access::AccessStore {}
impl<T: ConfigStore + access::AccessStore> Store for T {}

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
