//! The in-memory snapshot that answers `select_version` without a store round trip, and the
//! task that keeps it following a store.

use crate::config::PolicyConfig;
use crate::decision::{decide, Decision};
use crate::error::Result;
use crate::store::ConfigStore;
use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Policies by name, as of one read of the store.
pub type Policies = FxHashMap<String, Arc<PolicyConfig>>;

/// Routing decisions from a snapshot of every policy. Cheap to clone; all clones share it.
#[derive(Clone)]
pub struct Splitter {
    inner: Arc<Inner>,
}

struct Inner {
    policies: ArcSwap<Policies>,
    sync: Mutex<SyncState>,
}

#[derive(Debug, Clone)]
struct SyncState {
    synced_at: Instant,
    last_error: Option<String>,
}

/// How fresh the snapshot is.
#[derive(Debug, Clone)]
pub struct SnapshotHealth {
    /// Time since the snapshot last matched the store.
    pub age: Duration,
    /// The last refresh error, if the most recent refresh failed.
    pub last_error: Option<String>,
    pub policies: usize,
}

impl Splitter {
    /// A splitter over a fixed set of configs (tests, the CLI, previews).
    pub fn from_configs(configs: impl IntoIterator<Item = PolicyConfig>) -> Splitter {
        let splitter = Splitter {
            inner: Arc::new(Inner {
                policies: ArcSwap::from_pointee(Policies::default()),
                sync: Mutex::new(SyncState {
                    synced_at: Instant::now(),
                    last_error: None,
                }),
            }),
        };
        splitter.replace(configs);
        splitter
    }

    /// Reads every policy from `store`, then keeps following it: on every change signal and at
    /// least every `refresh`. When the store is unreachable, decisions continue from the last
    /// snapshot and [`Splitter::health`] shows its age and the error.
    pub async fn follow(store: Arc<dyn ConfigStore>, refresh: Duration) -> Result<Splitter> {
        let splitter = Splitter::from_configs(store.list().await?);
        let weak = Arc::downgrade(&splitter.inner);
        let mut changes = store.changes();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(refresh) => {}
                }
                let Some(inner) = Weak::upgrade(&weak) else {
                    return;
                };
                let splitter = Splitter { inner };
                match store.list().await {
                    Ok(configs) => splitter.replace(configs),
                    Err(e) => {
                        tracing::warn!(error = %e, "snapshot refresh failed; routing continues from the last snapshot");
                        splitter.inner.sync.lock().unwrap().last_error = Some(e.to_string());
                    }
                }
            }
        });
        Ok(splitter)
    }

    /// Replaces the snapshot with `configs` and marks it fresh.
    pub fn replace(&self, configs: impl IntoIterator<Item = PolicyConfig>) {
        let policies: Policies = configs
            .into_iter()
            .map(|c| (c.policy_name.to_string(), Arc::new(c)))
            .collect();
        self.inner.policies.store(Arc::new(policies));
        *self.inner.sync.lock().unwrap() = SyncState {
            synced_at: Instant::now(),
            last_error: None,
        };
    }

    /// The decision for `tenant` on `policy`, from memory.
    pub fn select_version(&self, policy: &str, tenant: Option<&str>) -> Decision {
        let policies = self.inner.policies.load();
        decide(policies.get(policy).map(|c| &**c), tenant)
    }

    /// The decision and the config it came from (`None` for an unknown policy), from one read
    /// of the snapshot. The routing layer keeps the config to name the policy without copying.
    pub fn route(
        &self,
        policy: &str,
        tenant: Option<&str>,
    ) -> (Option<Arc<PolicyConfig>>, Decision) {
        let config = self.inner.policies.load().get(policy).cloned();
        let decision = decide(config.as_deref(), tenant);
        (config, decision)
    }

    /// The config the snapshot holds for `policy`.
    pub fn policy(&self, policy: &str) -> Option<Arc<PolicyConfig>> {
        self.inner.policies.load().get(policy).cloned()
    }

    /// Every config in the snapshot.
    pub fn policies(&self) -> Arc<Policies> {
        self.inner.policies.load_full()
    }

    pub fn health(&self) -> SnapshotHealth {
        let sync = self.inner.sync.lock().unwrap().clone();
        SnapshotHealth {
            age: sync.synced_at.elapsed(),
            last_error: sync.last_error,
            policies: self.inner.policies.load().len(),
        }
    }
}
