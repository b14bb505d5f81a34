//! A store that bills like Firestore (see `fleet_cost.rs`): configs and events are kept and
//! returned; traffic documents are kept without their content (only their number costs).

use splitter::ops::{AuditEvent, Change};
use splitter::store::{PolicyChange, PolicyStore, TrafficStore};
use splitter::traffic::{ReplicaMinute, StoredMinute};
use splitter::{PolicyConfig, PolicyName, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

/// Documents read, written and deleted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
}

impl Counts {
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            reads: self.reads - before.reads,
            writes: self.writes - before.writes,
            deletes: self.deletes - before.deletes,
        }
    }
    pub fn scaled(&self, k: f64) -> Counts {
        let s = |n: u64| (n as f64 * k).round() as u64;
        Counts {
            reads: s(self.reads),
            writes: s(self.writes),
            deletes: s(self.deletes),
        }
    }
}

pub struct CostStore {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    feed: broadcast::Sender<PolicyChange>,
    started: tokio::time::Instant,
    epoch_micros: i64,
}

#[derive(Default)]
struct State {
    counts: Counts,
    configs: BTreeMap<String, PolicyConfig>,
    events: Vec<AuditEvent>,
    /// Traffic documents by position (their content is dropped: only their number costs),
    /// and each key's position.
    by_position: BTreeMap<i64, Vec<ReplicaMinute>>,
    positions: HashMap<String, i64>,
    last_position: i64,
}

impl CostStore {
    pub fn new() -> CostStore {
        CostStore {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            feed: broadcast::channel(splitter::store::FEED_CAPACITY).0,
            started: tokio::time::Instant::now(),
            epoch_micros: jiff::Timestamp::now().as_microsecond(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.state.lock().unwrap().counts
    }
}

/// A query or get is billed at least one read.
fn billed(docs: usize) -> u64 {
    docs.max(1) as u64
}

#[async_trait::async_trait]
impl PolicyStore for CostStore {
    fn describe(&self) -> String {
        "cost model".into()
    }

    async fn get(&self, name: &PolicyName) -> Result<Option<PolicyConfig>> {
        let mut s = self.state.lock().unwrap();
        s.counts.reads += 1;
        Ok(s.configs.get(name.as_str()).cloned())
    }

    async fn list(&self) -> Result<Vec<PolicyConfig>> {
        let mut s = self.state.lock().unwrap();
        s.counts.reads += billed(s.configs.len());
        Ok(s.configs.values().cloned().collect())
    }

    async fn commit(&self, change: &Change) -> Result<()> {
        {
            let mut s = self.state.lock().unwrap();
            // Firestore's commit reads the document first (compare-and-swap), then writes the
            // config and the event.
            s.counts.reads += 1;
            s.counts.writes += 2;
            let name = change.policy.to_string();
            match &change.after {
                Some(after) => s.configs.insert(name, after.clone()),
                None => s.configs.remove(&name),
            };
            s.events.push(change.event.clone());
        }
        let fed = match &change.after {
            Some(after) => PolicyChange::Put(Arc::new(after.clone())),
            None => PolicyChange::Removed(change.policy.to_string()),
        };
        // Each listening replica is sent the changed document: one read each.
        let listeners = self.feed.send(fed).unwrap_or(0);
        self.state.lock().unwrap().counts.reads += listeners as u64;
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn events(&self, name: &PolicyName, limit: usize) -> Result<Vec<AuditEvent>> {
        let mut s = self.state.lock().unwrap();
        let found: Vec<AuditEvent> = s
            .events
            .iter()
            .rev()
            .filter(|e| e.policy_name == *name)
            .take(limit)
            .cloned()
            .collect();
        s.counts.reads += billed(found.len());
        Ok(found)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn feed(&self) -> broadcast::Receiver<PolicyChange> {
        self.feed.subscribe()
    }
}

#[async_trait::async_trait]
impl TrafficStore for CostStore {
    async fn put_traffic(&self, docs: &[ReplicaMinute]) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.counts.writes += docs.len() as u64;
        // Positions are times, like Firestore's commit times: the wall clock at the start plus
        // the simulated time since.
        let now = self.epoch_micros + self.started.elapsed().as_micros() as i64;
        let position = now.max(s.last_position + 1);
        s.last_position = position;
        for doc in docs {
            let key = doc.key();
            match s.positions.insert(key.clone(), position) {
                Some(old) => {
                    if let Some(at) = s.by_position.get_mut(&old) {
                        at.retain(|d| d.key() != key);
                    }
                }
                // Firestore's TTL policy deletes each document once, 25 h on.
                None => s.counts.deletes += 1,
            }
            let light = ReplicaMinute {
                policies: Default::default(),
                detail: Default::default(),
                ..doc.clone()
            };
            s.by_position.entry(position).or_default().push(light);
        }
        Ok(())
    }

    async fn traffic_since(&self, since: i64) -> Result<Vec<StoredMinute>> {
        let mut s = self.state.lock().unwrap();
        let found: Vec<StoredMinute> = s
            .by_position
            .range(since..)
            .flat_map(|(at, docs)| {
                docs.iter().map(|d| StoredMinute {
                    doc: d.clone(),
                    stored_at: *at,
                })
            })
            .collect();
        s.counts.reads += billed(found.len());
        Ok(found)
    }

    /// Firestore: TTL (counted when written).
    async fn prune_traffic(&self, _before: i64) -> Result<usize> {
        Ok(0)
    }
}
