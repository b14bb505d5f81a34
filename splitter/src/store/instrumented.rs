//! A store wrapper that counts every call, its failures and its time, for `/metrics`.

use super::ConfigStore;
use crate::config::PolicyConfig;
use crate::error::Result;
use crate::names::PolicyName;
use crate::ops::{AuditEvent, Change};
use crate::traffic::TrafficMinute;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// Per store operation (`get`, `list`, `commit`, …): calls, failures, total seconds.
#[derive(Default)]
pub struct StoreMetrics {
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpStats {
    pub calls: u64,
    pub errors: u64,
    pub seconds: f64,
}

impl StoreMetrics {
    pub fn snapshot(&self) -> BTreeMap<&'static str, OpStats> {
        self.ops.lock().unwrap().clone()
    }
}

/// Wraps a store; every trait call is timed and counted in [`StoreMetrics`].
pub struct Instrumented {
    inner: Arc<dyn ConfigStore>,
    metrics: Arc<StoreMetrics>,
}

impl Instrumented {
    pub fn wrap(inner: Arc<dyn ConfigStore>) -> (Arc<dyn ConfigStore>, Arc<StoreMetrics>) {
        let metrics = Arc::new(StoreMetrics::default());
        let store = Arc::new(Instrumented {
            inner,
            metrics: metrics.clone(),
        });
        (store, metrics)
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = f.await;
        let mut ops = self.metrics.ops.lock().unwrap();
        let s = ops.entry(op).or_default();
        s.calls += 1;
        s.errors += u64::from(result.is_err());
        s.seconds += started.elapsed().as_secs_f64();
        result
    }
}

#[async_trait::async_trait]
impl ConfigStore for Instrumented {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get(&self, name: &PolicyName) -> Result<Option<PolicyConfig>> {
        self.timed("get", self.inner.get(name)).await
    }
    async fn list(&self) -> Result<Vec<PolicyConfig>> {
        self.timed("list", self.inner.list()).await
    }
    async fn commit(&self, change: &Change) -> Result<()> {
        self.timed("commit", self.inner.commit(change)).await
    }
    async fn events(&self, name: &PolicyName, limit: usize) -> Result<Vec<AuditEvent>> {
        self.timed("events", self.inner.events(name, limit)).await
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes()
    }
    async fn put_traffic(&self, minutes: &[TrafficMinute]) -> Result<()> {
        self.timed("put_traffic", self.inner.put_traffic(minutes))
            .await
    }
    async fn traffic(
        &self,
        policy: Option<&PolicyName>,
        from: i64,
        to: i64,
    ) -> Result<Vec<TrafficMinute>> {
        self.timed("traffic", self.inner.traffic(policy, from, to))
            .await
    }
    async fn prune_traffic(&self, before: i64) -> Result<usize> {
        self.timed("prune_traffic", self.inner.prune_traffic(before))
            .await
    }
}
