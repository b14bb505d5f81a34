//! A store wrapper that counts every call, its failures, its time and the documents it read,
//! wrote and deleted (what Firestore bills), for `/metrics` and the cost tests; and that tells
//! whether the store is reachable ([`StoreHealth`]).

use super::{PolicyChange, PolicyStore, TrafficStore};
use crate::config::PolicyConfig;
use crate::error::{Error, Result};
use crate::names::PolicyName;
use crate::ops::{AuditEvent, Change};
use crate::traffic::{ReplicaMinute, StoredMinute};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{broadcast, watch};

/// Per store operation (`get`, `list`, `commit`, …): calls, failures, total seconds.
#[derive(Default)]
pub struct StoreMetrics {
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
    documents: Mutex<Documents>,
    health: Mutex<StoreHealth>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpStats {
    pub calls: u64,
    pub errors: u64,
    pub seconds: f64,
}

/// Documents read, written and deleted, counted as Firestore bills them: a query or get is at
/// least one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Documents {
    pub read: u64,
    pub written: u64,
    pub deleted: u64,
}

/// Whether the store answers: set by every call through the wrapper.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreHealth {
    /// Since when calls fail because the store is unreachable (`None`: it answers).
    pub down_since: Option<jiff::Timestamp>,
    /// The last time a call succeeded.
    pub last_ok: Option<jiff::Timestamp>,
    /// What the last failure said (for the log and operators with access to it).
    pub last_error: Option<String>,
}

impl StoreMetrics {
    pub fn snapshot(&self) -> BTreeMap<&'static str, OpStats> {
        self.ops.lock().unwrap().clone()
    }

    pub fn documents(&self) -> Documents {
        *self.documents.lock().unwrap()
    }

    pub fn health(&self) -> StoreHealth {
        self.health.lock().unwrap().clone()
    }

    fn count(&self, f: impl FnOnce(&mut Documents)) {
        f(&mut self.documents.lock().unwrap());
    }
}

/// Wraps a store; every trait call is timed and counted in [`StoreMetrics`].
pub struct Instrumented<S: ?Sized> {
    inner: Arc<S>,
    metrics: Arc<StoreMetrics>,
}

impl<S: ?Sized> Instrumented<S> {
    /// Wraps `inner`, counting into `metrics` (one set of metrics can serve several wrappers
    /// over the same store).
    pub fn new(inner: Arc<S>, metrics: Arc<StoreMetrics>) -> Instrumented<S> {
        Instrumented { inner, metrics }
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = f.await;
        {
            let mut ops = self.metrics.ops.lock().unwrap();
            let s = ops.entry(op).or_default();
            s.calls += 1;
            s.errors += u64::from(result.is_err());
            s.seconds += started.elapsed().as_secs_f64();
        }
        let mut health = self.metrics.health.lock().unwrap();
        let now = jiff::Timestamp::now();
        match &result {
            Err(e @ Error::Unavailable { .. }) => {
                health.down_since.get_or_insert(now);
                health.last_error = Some(e.to_string());
            }
            _ => {
                health.down_since = None;
                health.last_ok = Some(now);
            }
        }
        result
    }
}

fn billed(docs: usize) -> u64 {
    docs.max(1) as u64
}

#[async_trait::async_trait]
impl PolicyStore for Instrumented<dyn PolicyStore> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get(&self, name: &PolicyName) -> Result<Option<PolicyConfig>> {
        let found = self.timed("get", self.inner.get(name)).await;
        self.metrics.count(|d| d.read += 1);
        found
    }
    async fn list(&self) -> Result<Vec<PolicyConfig>> {
        let found = self.timed("list", self.inner.list()).await?;
        self.metrics.count(|d| d.read += billed(found.len()));
        Ok(found)
    }
    async fn commit(&self, change: &Change) -> Result<()> {
        let done = self.timed("commit", self.inner.commit(change)).await;
        // The compare-and-swap reads the config; a commit writes it (or deletes it) and the event.
        self.metrics.count(|d| {
            d.read += 1;
            if done.is_ok() {
                d.written += if change.after.is_some() { 2 } else { 1 };
                d.deleted += u64::from(change.after.is_none());
            }
        });
        done
    }
    async fn events(&self, name: &PolicyName, limit: usize) -> Result<Vec<AuditEvent>> {
        let found = self.timed("events", self.inner.events(name, limit)).await?;
        self.metrics.count(|d| d.read += billed(found.len()));
        Ok(found)
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes()
    }
    fn feed(&self) -> broadcast::Receiver<PolicyChange> {
        self.inner.feed()
    }
}

#[async_trait::async_trait]
impl TrafficStore for Instrumented<dyn TrafficStore> {
    async fn put_traffic(&self, docs: &[ReplicaMinute]) -> Result<()> {
        self.timed("put_traffic", self.inner.put_traffic(docs))
            .await?;
        self.metrics.count(|d| d.written += docs.len() as u64);
        Ok(())
    }
    async fn traffic_since(&self, since: i64) -> Result<Vec<StoredMinute>> {
        let found = self
            .timed("traffic_since", self.inner.traffic_since(since))
            .await?;
        self.metrics.count(|d| d.read += billed(found.len()));
        Ok(found)
    }
    async fn prune_traffic(&self, before: i64) -> Result<usize> {
        let gone = self
            .timed("prune_traffic", self.inner.prune_traffic(before))
            .await?;
        self.metrics.count(|d| d.deleted += gone as u64);
        Ok(gone)
    }
}
