//! The Firestore store: collection `canary_configs` (document id = policy name) and
//! `canary_events` (one document per change, written in the change's transaction), and
//! `canary_replica_minutes` (one document per replica and minute, all its policies; see
//! [`crate::traffic`]). Traffic documents carry `expire_at`, for Firestore's TTL policy:
//! `gcloud firestore fields ttls update expire_at --collection-group=canary_replica_minutes
//! --enable-ttl --project=PROJECT` (the README says more).
//!
//! The document layout stays readable by the original design's readers: `canary_percentage`
//! (whole percent, rounded down) is written next to the exact `canary_basis_points`, and
//! documents written by them (without the new fields) are read as basis points = percent × 100,
//! salt = policy name, revision 0.

use super::access::{AccessKind, AccessStore};
use super::{conflict, PolicyChange, PolicyStore, TrafficStore};
use crate::config::{Pin, PolicyConfig};
use crate::error::{Error, Result};
use crate::names::{Actor, PolicyName, TenantId, Version};
use crate::ops::{AuditEvent, Change};
use crate::share::BasisPoints;
use crate::traffic::{Minute, ReplicaMinute, StoredMinute};
use firestore::errors::FirestoreError;
use firestore::{
    FirestoreDb, FirestoreDbOptions, FirestoreInstant, FirestoreListenEvent, FirestoreListener,
    FirestoreListenerTarget, FirestoreMemListenStateStorage, FirestoreTimestamp,
    FirestoreTransaction, FirestoreTransformServerValue, FirestoreWritePrecondition,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch, Mutex};

pub const CONFIGS: &str = "canary_configs";
pub const EVENTS: &str = "canary_events";
pub const TRAFFIC: &str = "canary_replica_minutes";
/// Writes per commit (Firestore allows 500).
const TRAFFIC_CHUNK: usize = 400;

/// A `canary_replica_minutes` document. The policies are one JSON text (version labels may
/// contain `.`, which Firestore field paths would split, and one field keeps the document
/// small); `stored_at` is set by Firestore to the commit time (readers ask for what is newer).
#[derive(Debug, Serialize, Deserialize)]
struct ReplicaMinuteDoc {
    minute: i64,
    replica: String,
    shard: i64,
    shards: i64,
    seq: i64,
    written_at: i64,
    policies: String,
    /// [`ReplicaMinute::detail`] as JSON; absent when empty (and in older documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(with = "firestore::serialize_as_timestamp")]
    expire_at: FirestoreInstant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "firestore::serialize_as_optional_timestamp")]
    stored_at: Option<FirestoreInstant>,
}

impl From<&ReplicaMinute> for ReplicaMinuteDoc {
    fn from(m: &ReplicaMinute) -> ReplicaMinuteDoc {
        ReplicaMinuteDoc {
            minute: m.minute,
            replica: m.replica.clone(),
            shard: i64::from(m.shard),
            shards: i64::from(m.shards),
            seq: i64::try_from(m.seq).unwrap_or(i64::MAX),
            written_at: m.written_at,
            policies: serde_json::to_string(&m.policies).expect("traffic always serialises"),
            detail: (!m.detail.is_empty())
                .then(|| serde_json::to_string(&m.detail).expect("traffic always serialises")),
            expire_at: m.expires_at(),
            stored_at: None,
        }
    }
}

impl ReplicaMinuteDoc {
    fn into_stored(self) -> Result<StoredMinute> {
        let key = format!("{}@{}@{}", self.minute, self.replica, self.shard);
        let policies: Minute =
            serde_json::from_str(&self.policies).map_err(|e| Error::Corrupt {
                store: "firestore",
                key: key.clone(),
                detail: e.to_string(),
            })?;
        let detail = match &self.detail {
            Some(d) => serde_json::from_str(d).map_err(|e| Error::Corrupt {
                store: "firestore",
                key: key.clone(),
                detail: e.to_string(),
            })?,
            None => Default::default(),
        };
        let stored_at = self.stored_at.map_or(0, |t| t.as_microsecond());
        Ok(StoredMinute {
            doc: ReplicaMinute {
                minute: self.minute,
                replica: self.replica,
                shard: u32::try_from(self.shard).unwrap_or(0),
                shards: u32::try_from(self.shards).unwrap_or(1),
                seq: u64::try_from(self.seq).unwrap_or(0),
                written_at: self.written_at,
                policies,
                detail,
            },
            stored_at,
        })
    }
}

/// A `canary_configs` document. Every field added after the original layout is optional so
/// that older documents still read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyDoc {
    pub policy_name: String,
    pub stable_version: String,
    /// Empty when there is no canary (the original layout's convention).
    #[serde(default)]
    pub canary_version: Option<String>,
    #[serde(default)]
    pub canary_percentage: i64,
    #[serde(default)]
    pub canary_basis_points: Option<i64>,
    #[serde(default)]
    pub salt: Option<String>,
    #[serde(default)]
    pub overrides: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub rolled_back: Option<bool>,
    #[serde(default)]
    pub revision: Option<i64>,
    #[serde(with = "firestore::serialize_as_timestamp")]
    pub created_at: FirestoreInstant,
    #[serde(with = "firestore::serialize_as_timestamp")]
    pub updated_at: FirestoreInstant,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub updated_by: Option<String>,
    /// The rollout plan as JSON text (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EventDoc {
    id: String,
    policy_name: String,
    action: String,
    before: Option<PolicyDoc>,
    after: Option<PolicyDoc>,
    actor: String,
    reason: String,
    #[serde(with = "firestore::serialize_as_timestamp")]
    time: FirestoreInstant,
    revision: i64,
}

impl From<&PolicyConfig> for PolicyDoc {
    fn from(c: &PolicyConfig) -> PolicyDoc {
        PolicyDoc {
            policy_name: c.policy_name.to_string(),
            stable_version: c.stable_version.to_string(),
            canary_version: Some(
                c.canary_version
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ),
            canary_percentage: i64::from(c.canary_basis_points.whole_percent_floor()),
            canary_basis_points: Some(i64::from(c.canary_basis_points.get())),
            salt: Some(c.salt.clone()),
            overrides: Some(
                c.overrides
                    .iter()
                    .map(|(t, p)| (t.to_string(), p.to_string()))
                    .collect(),
            ),
            rolled_back: Some(c.rolled_back),
            revision: Some(c.revision as i64),
            created_at: c.created_at,
            updated_at: c.updated_at,
            created_by: c.created_by.to_string(),
            updated_by: Some(c.updated_by.to_string()),
            plan: c
                .plan
                .as_ref()
                .map(|p| serde_json::to_string(p).expect("plans always serialise")),
        }
    }
}

impl PolicyDoc {
    /// Reads a document of either layout; an unreadable field names itself.
    pub fn into_config(self) -> Result<PolicyConfig> {
        let key = self.policy_name.clone();
        let corrupt = |e: Error| Error::Corrupt {
            store: "firestore",
            key: key.clone(),
            detail: e.to_string(),
        };
        let basis_points = match self.canary_basis_points {
            Some(bp) => BasisPoints::new(u32::try_from(bp).unwrap_or(u32::MAX)),
            None => {
                BasisPoints::from_percent(u32::try_from(self.canary_percentage).unwrap_or(u32::MAX))
            }
        }
        .map_err(corrupt)?;
        let actor = |s: &str| Actor::new(if s.trim().is_empty() { "unknown" } else { s });
        let created_by = actor(&self.created_by).map_err(corrupt)?;
        let mut overrides = BTreeMap::new();
        for (t, p) in self.overrides.unwrap_or_default() {
            overrides.insert(
                TenantId::new(&t).map_err(corrupt)?,
                p.parse::<Pin>().map_err(corrupt)?,
            );
        }
        Ok(PolicyConfig {
            policy_name: PolicyName::new(&self.policy_name).map_err(corrupt)?,
            stable_version: Version::new(&self.stable_version).map_err(corrupt)?,
            canary_version: match self.canary_version.as_deref() {
                None | Some("") => None,
                Some(v) => Some(Version::new(v).map_err(corrupt)?),
            },
            canary_basis_points: basis_points,
            salt: self.salt.unwrap_or_else(|| self.policy_name.clone()),
            overrides,
            rolled_back: self.rolled_back.unwrap_or(false),
            revision: self.revision.unwrap_or(0).max(0) as u64,
            created_at: self.created_at,
            updated_by: match self.updated_by.as_deref() {
                Some(u) => actor(u).map_err(corrupt)?,
                None => created_by.clone(),
            },
            created_by,
            updated_at: self.updated_at,
            plan: self
                .plan
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| Error::Corrupt {
                    store: "firestore",
                    key: key.clone(),
                    detail: format!("plan: {e}"),
                })?,
        })
    }
}

impl From<&AuditEvent> for EventDoc {
    fn from(e: &AuditEvent) -> EventDoc {
        EventDoc {
            id: e.id.clone(),
            policy_name: e.policy_name.to_string(),
            action: e.action.clone(),
            before: e.before.as_ref().map(PolicyDoc::from),
            after: e.after.as_ref().map(PolicyDoc::from),
            actor: e.actor.to_string(),
            reason: e.reason.clone(),
            time: e.time,
            revision: e.revision as i64,
        }
    }
}

impl EventDoc {
    fn into_event(self) -> Result<AuditEvent> {
        let corrupt = |e: Error| Error::Corrupt {
            store: "firestore",
            key: self.id.clone(),
            detail: e.to_string(),
        };
        Ok(AuditEvent {
            policy_name: PolicyName::new(&self.policy_name).map_err(corrupt)?,
            actor: Actor::new(&self.actor).map_err(corrupt)?,
            before: self
                .before
                .clone()
                .map(PolicyDoc::into_config)
                .transpose()?,
            after: self.after.clone().map(PolicyDoc::into_config).transpose()?,
            id: self.id,
            action: self.action,
            reason: self.reason,
            time: self.time,
            revision: self.revision.max(0) as u64,
        })
    }
}

/// What a listen event means for followers (`None`: nothing they need).
fn feed_change(event: FirestoreListenEvent) -> Option<PolicyChange> {
    use firestore::gcloud_sdk::google::firestore::v1::target_change::TargetChangeType;
    let id = |path: &str| path.rsplit('/').next().unwrap_or_default().to_string();
    match event {
        FirestoreListenEvent::DocumentChange(change) => {
            let doc = change.document?;
            let config = FirestoreDb::deserialize_doc_to::<PolicyDoc>(&doc)
                .ok()
                .and_then(|d| d.into_config().ok());
            // An unreadable document: a full read reports it properly.
            Some(config.map_or(PolicyChange::Resync, |c| PolicyChange::Put(Arc::new(c))))
        }
        FirestoreListenEvent::DocumentDelete(d) => Some(PolicyChange::Removed(id(&d.document))),
        FirestoreListenEvent::DocumentRemove(d) => Some(PolicyChange::Removed(id(&d.document))),
        FirestoreListenEvent::Filter(_) => Some(PolicyChange::Resync),
        FirestoreListenEvent::TargetChange(t) => {
            (t.target_change_type == TargetChangeType::Reset as i32).then_some(PolicyChange::Resync)
        }
    }
}

/// Whether a commit failed because another writer got there first (a precondition failed).
fn lost_race(e: &FirestoreError) -> bool {
    match e {
        FirestoreError::DataConflictError(_) | FirestoreError::DataNotFoundError(_) => true,
        FirestoreError::DatabaseError(e) => {
            matches!(e.public.code.as_str(), "FailedPrecondition" | "Aborted")
        }
        _ => false,
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        store: "firestore",
        detail: e.to_string(),
    }
}

pub struct FirestoreStore {
    db: FirestoreDb,
    project: String,
    changed: watch::Sender<u64>,
    feed: broadcast::Sender<PolicyChange>,
    listener: Mutex<Option<FirestoreListener<FirestoreDb, FirestoreMemListenStateStorage>>>,
}

impl FirestoreStore {
    /// Connects to `project` (honouring `FIRESTORE_EMULATOR_HOST`) and starts the real-time
    /// listener on `canary_configs`. Requests time out after `timeout` so an outage surfaces
    /// as an error rather than a hang.
    pub async fn connect(project: &str, timeout: Duration) -> Result<Arc<FirestoreStore>> {
        let options = FirestoreDbOptions::new(project.to_string()).with_request_timeout(timeout);
        let db = FirestoreDb::with_options(options)
            .await
            .map_err(unavailable)?;
        let store = Arc::new(FirestoreStore {
            db,
            project: project.to_string(),
            changed: watch::channel(0).0,
            feed: broadcast::channel(super::FEED_CAPACITY).0,
            listener: Mutex::new(None),
        });
        store.listen().await?;
        Ok(store)
    }

    async fn listen(&self) -> Result<()> {
        let mut listener = self
            .db
            .create_listener(FirestoreMemListenStateStorage::new())
            .await
            .map_err(unavailable)?;
        self.db
            .fluent()
            .select()
            .from(CONFIGS)
            .listen()
            .add_target(FirestoreListenerTarget::new(17), &mut listener)
            .map_err(unavailable)?;
        let changed = self.changed.clone();
        let feed = self.feed.clone();
        listener
            .start(move |event| {
                // Followers apply each changed document as it comes; a reset or an existence
                // filter (the listen protocol's "you may have missed something") asks them to
                // read the collection again.
                if let Some(change) = feed_change(event) {
                    feed.send(change).ok();
                }
                changed.send_modify(|n| *n += 1);
                async { Ok(()) }
            })
            .await
            .map_err(unavailable)?;
        *self.listener.lock().await = Some(listener);
        Ok(())
    }

    async fn read_with_time(
        &self,
        name: &str,
    ) -> Result<(Option<PolicyConfig>, Option<FirestoreInstant>)> {
        let doc = self
            .db
            .fluent()
            .select()
            .by_id_in(CONFIGS)
            .one(name)
            .await
            .map_err(unavailable)?;
        let Some(doc) = doc else {
            return Ok((None, None));
        };
        let config = FirestoreDb::deserialize_doc_to::<PolicyDoc>(&doc)
            .map_err(|e| Error::Corrupt {
                store: "firestore",
                key: name.to_string(),
                detail: e.to_string(),
            })?
            .into_config()?;
        let time = doc
            .update_time
            .map(firestore::timestamp_utils::from_timestamp)
            .transpose()
            .map_err(unavailable)?;
        Ok((Some(config), time))
    }

    /// Commits one write per item, in transactions of at most [`TRAFFIC_CHUNK`] writes.
    async fn commit_chunked<T>(
        &self,
        items: &[T],
        queue: impl for<'t> Fn(&T, &mut FirestoreTransaction<'t>) -> firestore::FirestoreResult<()>,
    ) -> Result<()> {
        for chunk in items.chunks(TRAFFIC_CHUNK) {
            let mut tx = self.db.begin_transaction().await.map_err(unavailable)?;
            if let Err(e) = chunk.iter().try_for_each(|item| queue(item, &mut tx)) {
                tx.rollback().await.ok();
                return Err(unavailable(e));
            }
            tx.commit().await.map_err(unavailable)?;
        }
        Ok(())
    }

    pub fn db(&self) -> &FirestoreDb {
        &self.db
    }
}

#[async_trait::async_trait]
impl PolicyStore for FirestoreStore {
    fn describe(&self) -> String {
        match std::env::var("FIRESTORE_EMULATOR_HOST") {
            Ok(host) => format!("firestore (project {}, emulator at {host})", self.project),
            Err(_) => format!("firestore (project {})", self.project),
        }
    }

    async fn get(&self, name: &PolicyName) -> Result<Option<PolicyConfig>> {
        let doc: Option<PolicyDoc> = self
            .db
            .fluent()
            .select()
            .by_id_in(CONFIGS)
            .obj()
            .one(name.as_str())
            .await
            .map_err(unavailable)?;
        doc.map(PolicyDoc::into_config).transpose()
    }

    async fn list(&self) -> Result<Vec<PolicyConfig>> {
        let docs: Vec<PolicyDoc> = self
            .db
            .fluent()
            .select()
            .from(CONFIGS)
            .obj()
            .query()
            .await
            .map_err(unavailable)?;
        let mut configs = docs
            .into_iter()
            .map(PolicyDoc::into_config)
            .collect::<Result<Vec<_>>>()?;
        configs.sort_by(|a, b| a.policy_name.cmp(&b.policy_name));
        Ok(configs)
    }

    /// Optimistic compare-and-swap without locks: read the document and its update time,
    /// check the revision, then commit the config write (precondition: unchanged since that
    /// read, or absent for a create) together with the event (precondition: new) in one atomic
    /// commit. Losing the race fails the precondition; we then re-read to say who won.
    async fn commit(&self, change: &Change) -> Result<()> {
        let name = change.policy.as_str();
        let (current, update_time) = self.read_with_time(name).await?;
        if current.as_ref().map(|c| c.revision) != change.expected {
            return Err(conflict(change, current));
        }
        let precondition = match update_time {
            Some(t) => FirestoreWritePrecondition::UpdateTime(t),
            None => FirestoreWritePrecondition::Exists(false),
        };
        let mut tx = self.db.begin_transaction().await.map_err(unavailable)?;
        let queued = (|| -> firestore::FirestoreResult<()> {
            match &change.after {
                Some(after) => {
                    self.db
                        .fluent()
                        .update()
                        .in_col(CONFIGS)
                        .precondition(precondition)
                        .document_id(name)
                        .object(&PolicyDoc::from(after))
                        .add_to_transaction(&mut tx)?;
                }
                None => {
                    self.db
                        .fluent()
                        .delete()
                        .from(CONFIGS)
                        .document_id(name)
                        .precondition(precondition)
                        .add_to_transaction(&mut tx)?;
                }
            }
            let event = EventDoc::from(&change.event);
            self.db
                .fluent()
                .update()
                .in_col(EVENTS)
                .precondition(FirestoreWritePrecondition::Exists(false))
                .document_id(&event.id)
                .object(&event)
                .add_to_transaction(&mut tx)?;
            Ok(())
        })();
        if let Err(e) = queued {
            tx.rollback().await.ok();
            return Err(unavailable(e));
        }
        match tx.commit().await {
            Ok(_) => Ok(()),
            Err(e) if lost_race(&e) => {
                let (now, _) = self.read_with_time(name).await?;
                Err(conflict(change, now))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn events(&self, name: &PolicyName, limit: usize) -> Result<Vec<AuditEvent>> {
        let name = name.to_string();
        let docs: Vec<EventDoc> = self
            .db
            .fluent()
            .select()
            .from(EVENTS)
            .filter(|q| q.for_all([q.field("policy_name").eq(name.as_str())]))
            .order(|o| o.fields([o.field("time").descending()]))
            .limit(limit.min(u32::MAX as usize) as u32)
            .obj()
            .query()
            .await
            .map_err(unavailable)?;
        docs.into_iter().map(EventDoc::into_event).collect()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn feed(&self) -> broadcast::Receiver<PolicyChange> {
        self.feed.subscribe()
    }
}

#[async_trait::async_trait]
impl TrafficStore for FirestoreStore {
    async fn put_traffic(&self, docs: &[ReplicaMinute]) -> Result<()> {
        self.commit_chunked(docs, |m, tx| {
            self.db
                .fluent()
                .update()
                .in_col(TRAFFIC)
                .document_id(m.key())
                .transforms(|t| {
                    t.fields([t
                        .field("stored_at")
                        .server_value(FirestoreTransformServerValue::RequestTime)])
                })
                .object(&ReplicaMinuteDoc::from(m))
                .add_to_transaction(tx)
                .map(|_| ())
        })
        .await
    }

    async fn traffic_since(&self, since: i64) -> Result<Vec<StoredMinute>> {
        let since = jiff::Timestamp::from_microsecond(since).map_err(unavailable)?;
        let docs: Vec<ReplicaMinuteDoc> = self
            .db
            .fluent()
            .select()
            .from(TRAFFIC)
            .filter(|q| {
                q.for_all([q
                    .field("stored_at")
                    .greater_than_or_equal(FirestoreTimestamp(since))])
            })
            .obj()
            .query()
            .await
            .map_err(unavailable)?;
        docs.into_iter()
            .map(ReplicaMinuteDoc::into_stored)
            .collect()
    }

    /// Firestore deletes expired traffic itself (TTL on `expire_at`): nothing to do, nothing
    /// billed here.
    async fn prune_traffic(&self, _before: i64) -> Result<usize> {
        Ok(0)
    }
}

/// An access record in Firestore: the server's JSON, kept as text.
#[derive(Debug, Serialize, Deserialize)]
struct AccessDoc {
    json: String,
}

#[async_trait::async_trait]
impl AccessStore for FirestoreStore {
    async fn get_record(&self, kind: AccessKind, key: &str) -> Result<Option<String>> {
        let doc: Option<AccessDoc> = self
            .db
            .fluent()
            .select()
            .by_id_in(kind.collection())
            .obj()
            .one(key)
            .await
            .map_err(unavailable)?;
        Ok(doc.map(|d| d.json))
    }

    async fn put_record(
        &self,
        kind: AccessKind,
        key: &str,
        json: &str,
        create_only: bool,
    ) -> Result<()> {
        let doc = AccessDoc {
            json: json.to_string(),
        };
        let write = self.db.fluent().update().in_col(kind.collection());
        let result = if create_only {
            write
                .precondition(FirestoreWritePrecondition::Exists(false))
                .document_id(key)
                .object(&doc)
                .execute::<()>()
                .await
        } else {
            write.document_id(key).object(&doc).execute::<()>().await
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if create_only && lost_race(&e) => Err(Error::RecordExists(key.to_string())),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete_record(&self, kind: AccessKind, key: &str) -> Result<()> {
        self.db
            .fluent()
            .delete()
            .from(kind.collection())
            .document_id(key)
            .execute()
            .await
            .map_err(unavailable)
    }

    async fn list_records(&self, kind: AccessKind) -> Result<Vec<(String, String)>> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(kind.collection())
            .query()
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            let key = doc.name.rsplit('/').next().unwrap_or_default().to_string();
            let record: AccessDoc =
                FirestoreDb::deserialize_doc_to(&doc).map_err(|e| Error::Corrupt {
                    store: "firestore",
                    key: key.clone(),
                    detail: e.to_string(),
                })?;
            out.push((key, record.json));
        }
        out.sort();
        Ok(out)
    }
}
