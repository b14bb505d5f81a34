//! The embedded store: one redb file on local disk.
//!
//! redb is a pure-Rust, ACID, copy-on-write B-tree store with checksummed commits: a commit is
//! durable when `commit()` returns and a crash never leaves a half-written transaction. Writes
//! are serialised by redb's single writer, which makes compare-and-swap exact.

use super::access::{AccessKind, AccessStore};
use super::{conflict, PolicyChange, PolicyStore, TrafficStore};
use crate::config::PolicyConfig;
use crate::error::{Error, Result};
use crate::names::PolicyName;
use crate::ops::{AuditEvent, Change};
use crate::traffic::{ReplicaMinute, StoredMinute};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

const CONFIGS: TableDefinition<&str, &[u8]> = TableDefinition::new("canary_configs");
/// Keyed by (policy, sequence) so one policy's events are one range, oldest first.
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("canary_events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Keyed by (minute, replica, shard) so pruning cuts a prefix; the value is a [`Row`].
const TRAFFIC: TableDefinition<(i64, &str, u32), &[u8]> =
    TableDefinition::new("canary_replica_minutes");
/// (position, minute, replica, shard): what was stored since a position is one range.
const TRAFFIC_BY_POSITION: TableDefinition<(i64, i64, &str, u32), u8> =
    TableDefinition::new("canary_replica_minutes_by_position");
const NEXT_EVENT: &str = "next_event_seq";
/// Accounts, sessions and tokens: (collection, key) → JSON.
const ACCESS: TableDefinition<(&str, &str), &str> = TableDefinition::new("canary_access");

pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    changed: watch::Sender<u64>,
    feed: broadcast::Sender<PolicyChange>,
    /// The last position given to a traffic write (microseconds; never goes back).
    position: Arc<AtomicI64>,
}

/// A stored traffic document and its position.
#[derive(serde::Serialize, serde::Deserialize)]
struct Row {
    stored_at: i64,
    doc: ReplicaMinute,
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        store: "embedded",
        detail: e.to_string(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        store: "embedded",
        key: key.to_string(),
        detail: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("config types always serialise")
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path`, creating its directory.
    pub fn open(path: impl AsRef<Path>) -> Result<EmbeddedStore> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Unavailable {
                store: "embedded",
                detail: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        let db = Database::create(&path).map_err(|e| Error::Unavailable {
            store: "embedded",
            detail: format!("cannot open {}: {e}", path.display()),
        })?;
        // Create the tables so that readers never meet a missing table.
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(CONFIGS).map_err(unavailable)?;
        txn.open_table(EVENTS).map_err(unavailable)?;
        txn.open_table(META).map_err(unavailable)?;
        txn.open_table(TRAFFIC).map_err(unavailable)?;
        let last = txn
            .open_table(TRAFFIC_BY_POSITION)
            .map_err(unavailable)?
            .last()
            .map_err(unavailable)?
            .map_or(0, |(k, _)| k.value().0);
        txn.open_table(ACCESS).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path,
            changed: watch::channel(0).0,
            feed: broadcast::channel(super::FEED_CAPACITY).0,
            position: Arc::new(AtomicI64::new(last)),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(unavailable)?
    }
}

#[async_trait::async_trait]
impl PolicyStore for EmbeddedStore {
    fn describe(&self) -> String {
        format!("embedded ({})", self.path.display())
    }

    async fn get(&self, name: &PolicyName) -> Result<Option<PolicyConfig>> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(CONFIGS).map_err(unavailable)?;
            let value = table.get(name.as_str()).map_err(unavailable)?;
            value.map(|v| decode(&name, v.value())).transpose()
        })
        .await
    }

    async fn list(&self) -> Result<Vec<PolicyConfig>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(CONFIGS).map_err(unavailable)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(unavailable)? {
                let (k, v) = entry.map_err(unavailable)?;
                out.push(decode(k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn commit(&self, change: &Change) -> Result<()> {
        let fed = match &change.after {
            Some(after) => PolicyChange::Put(Arc::new(after.clone())),
            None => PolicyChange::Removed(change.policy.to_string()),
        };
        let change = change.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut configs = txn.open_table(CONFIGS).map_err(unavailable)?;
                let name = change.policy.as_str();
                let current: Option<PolicyConfig> = configs
                    .get(name)
                    .map_err(unavailable)?
                    .map(|v| decode(name, v.value()))
                    .transpose()?;
                if current.as_ref().map(|c| c.revision) != change.expected {
                    return Err(conflict(&change, current));
                }
                match &change.after {
                    Some(after) => configs.insert(name, encode(after).as_slice()),
                    None => configs.remove(name),
                }
                .map_err(unavailable)?;
                let mut meta = txn.open_table(META).map_err(unavailable)?;
                let seq = meta
                    .get(NEXT_EVENT)
                    .map_err(unavailable)?
                    .map_or(0, |v| v.value());
                meta.insert(NEXT_EVENT, seq + 1).map_err(unavailable)?;
                let mut events = txn.open_table(EVENTS).map_err(unavailable)?;
                events
                    .insert((name, seq), encode(&change.event).as_slice())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await?;
        self.feed.send(fed).ok();
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn events(&self, name: &PolicyName, limit: usize) -> Result<Vec<AuditEvent>> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(EVENTS).map_err(unavailable)?;
            let range = table
                .range((name.as_str(), 0u64)..=(name.as_str(), u64::MAX))
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for entry in range.rev().take(limit) {
                let (_, v) = entry.map_err(unavailable)?;
                out.push(decode(&name, v.value())?);
            }
            Ok(out)
        })
        .await
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn feed(&self) -> broadcast::Receiver<PolicyChange> {
        self.feed.subscribe()
    }
}

impl EmbeddedStore {
    /// The position for the next traffic write: now, or just after the last one.
    fn next_position(&self) -> i64 {
        let now = jiff::Timestamp::now().as_microsecond();
        let previous = self
            .position
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .expect("the update always succeeds");
        now.max(previous + 1)
    }
}

#[async_trait::async_trait]
impl TrafficStore for EmbeddedStore {
    async fn put_traffic(&self, docs: &[ReplicaMinute]) -> Result<()> {
        let docs = docs.to_vec();
        let stored_at = self.next_position();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(TRAFFIC).map_err(unavailable)?;
                let mut index = txn.open_table(TRAFFIC_BY_POSITION).map_err(unavailable)?;
                for doc in docs {
                    let key = (doc.minute, doc.replica.as_str(), doc.shard);
                    if let Some(old) = table.get(key).map_err(unavailable)? {
                        let old: Row = decode("traffic", old.value())?;
                        index
                            .remove((old.stored_at, doc.minute, doc.replica.as_str(), doc.shard))
                            .map_err(unavailable)?;
                    }
                    index
                        .insert((stored_at, doc.minute, doc.replica.as_str(), doc.shard), 0)
                        .map_err(unavailable)?;
                    let row = encode(&Row {
                        stored_at,
                        doc: doc.clone(),
                    });
                    table.insert(key, row.as_slice()).map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn traffic_since(&self, since: i64) -> Result<Vec<StoredMinute>> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(TRAFFIC).map_err(unavailable)?;
            let index = txn.open_table(TRAFFIC_BY_POSITION).map_err(unavailable)?;
            let mut out = Vec::new();
            for entry in index
                .range((since, i64::MIN, "", 0)..)
                .map_err(unavailable)?
            {
                let (k, _) = entry.map_err(unavailable)?;
                let (_, minute, replica, shard) = k.value();
                if let Some(v) = table.get((minute, replica, shard)).map_err(unavailable)? {
                    let row: Row = decode("traffic", v.value())?;
                    out.push(StoredMinute {
                        doc: row.doc,
                        stored_at: row.stored_at,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn prune_traffic(&self, before: i64) -> Result<usize> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let mut gone = Vec::new();
            {
                let mut table = txn.open_table(TRAFFIC).map_err(unavailable)?;
                let old = table
                    .extract_from_if((i64::MIN, "", 0)..(before, "", 0), |_, _| true)
                    .map_err(unavailable)?;
                for entry in old {
                    let (_, v) = entry.map_err(unavailable)?;
                    let row: Row = decode("traffic", v.value())?;
                    gone.push((
                        row.stored_at,
                        row.doc.minute,
                        row.doc.replica,
                        row.doc.shard,
                    ));
                }
                let mut index = txn.open_table(TRAFFIC_BY_POSITION).map_err(unavailable)?;
                for (at, minute, replica, shard) in &gone {
                    index
                        .remove((*at, *minute, replica.as_str(), *shard))
                        .map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)?;
            Ok(gone.len())
        })
        .await
    }
}

#[async_trait::async_trait]
impl AccessStore for EmbeddedStore {
    async fn get_record(&self, kind: AccessKind, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ACCESS).map_err(unavailable)?;
            let value = table
                .get((kind.collection(), key.as_str()))
                .map_err(unavailable)?;
            Ok(value.map(|v| v.value().to_string()))
        })
        .await
    }

    async fn put_record(
        &self,
        kind: AccessKind,
        key: &str,
        json: &str,
        create_only: bool,
    ) -> Result<()> {
        let (key, json) = (key.to_string(), json.to_string());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(ACCESS).map_err(unavailable)?;
                let k = (kind.collection(), key.as_str());
                if create_only && table.get(k).map_err(unavailable)?.is_some() {
                    return Err(Error::RecordExists(key.clone()));
                }
                table.insert(k, json.as_str()).map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn delete_record(&self, kind: AccessKind, key: &str) -> Result<()> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(ACCESS).map_err(unavailable)?;
                table
                    .remove((kind.collection(), key.as_str()))
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn list_records(&self, kind: AccessKind) -> Result<Vec<(String, String)>> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ACCESS).map_err(unavailable)?;
            let c = kind.collection();
            let mut out = Vec::new();
            for entry in table.range((c, "")..).map_err(unavailable)? {
                let (k, v) = entry.map_err(unavailable)?;
                let (collection, key) = k.value();
                if collection != c {
                    break;
                }
                out.push((key.to_string(), v.value().to_string()));
            }
            Ok(out)
        })
        .await
    }
}
