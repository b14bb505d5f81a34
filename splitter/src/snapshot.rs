//! The in-memory snapshot that answers `select_version` without a store round trip, and the
//! task that keeps it following a store.

use crate::config::PolicyConfig;
use crate::decision::{decide, Decision};
use crate::error::Result;
use crate::store::{PolicyChange, PolicyStore};
use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

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
    /// Moves after every change applied (pages re-read from the snapshot when it moves).
    applied: watch::Sender<u64>,
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
                applied: watch::channel(0).0,
            }),
        };
        splitter.replace(configs);
        splitter
    }

    /// Reads every policy from `store`, then keeps following its change feed: each change is
    /// applied as it comes (no re-read); the whole collection is read again only when the feed
    /// says so (a reconnect), when it fell behind, and every `resync_every` as a safety net. A
    /// failed re-read is retried every 5 s; meanwhile decisions continue from the snapshot and
    /// [`Splitter::health`] shows its age and the error.
    pub async fn follow(store: Arc<dyn PolicyStore>, resync_every: Duration) -> Result<Splitter> {
        // Subscribed before the first read, so that no change falls between the two.
        let mut feed = store.feed();
        let splitter = Splitter::from_configs(store.list().await?);
        let weak = Arc::downgrade(&splitter.inner);
        tokio::spawn(async move {
            let mut resync = false;
            loop {
                let wait = if resync {
                    Duration::from_secs(5)
                } else {
                    resync_every
                };
                let change = tokio::select! {
                    change = feed.recv() => Some(change),
                    _ = tokio::time::sleep(wait) => None,
                };
                let Some(inner) = Weak::upgrade(&weak) else {
                    return;
                };
                let splitter = Splitter { inner };
                match change {
                    Some(Ok(PolicyChange::Put(config))) => splitter.put(config),
                    Some(Ok(PolicyChange::Removed(name))) => splitter.remove(&name),
                    Some(Err(RecvError::Closed)) => return,
                    Some(Ok(PolicyChange::Resync) | Err(RecvError::Lagged(_))) | None => {
                        resync = !splitter.resync(&*store).await;
                    }
                }
            }
        });
        Ok(splitter)
    }

    /// Reads every policy again; false if the store could not be read.
    async fn resync(&self, store: &dyn PolicyStore) -> bool {
        match store.list().await {
            Ok(configs) => {
                self.replace(configs);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "snapshot refresh failed; routing continues from the last snapshot");
                self.inner.sync.lock().unwrap().last_error = Some(e.to_string());
                false
            }
        }
    }

    /// Applies one config from the feed, or one this replica just wrote: it replaces what the
    /// snapshot holds unless that is a later revision (a feed may deliver an older change
    /// after this replica applied its own newer write).
    pub fn put(&self, config: Arc<PolicyConfig>) {
        let name = config.policy_name.as_str();
        self.inner.policies.rcu(|current| {
            let mut next = Policies::clone(current);
            if current
                .get(name)
                .is_none_or(|c| c.revision <= config.revision)
            {
                next.insert(name.to_string(), config.clone());
            }
            next
        });
        self.fresh();
    }

    /// Forgets a deleted policy.
    pub fn remove(&self, name: &str) {
        self.inner.policies.rcu(|current| {
            let mut next = Policies::clone(current);
            next.remove(name);
            next
        });
        self.fresh();
    }

    fn fresh(&self) {
        *self.inner.sync.lock().unwrap() = SyncState {
            synced_at: Instant::now(),
            last_error: None,
        };
        self.inner.applied.send_modify(|n| *n += 1);
    }

    /// Moves after every change the snapshot applied: read the snapshot again when it does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.applied.subscribe()
    }

    /// Replaces the snapshot with `configs` and marks it fresh.
    pub fn replace(&self, configs: impl IntoIterator<Item = PolicyConfig>) {
        let policies: Policies = configs
            .into_iter()
            .map(|c| (c.policy_name.to_string(), Arc::new(c)))
            .collect();
        self.inner.policies.store(Arc::new(policies));
        self.fresh();
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
