//! A store that bills like Firestore (see `fleet_cost.rs`): configs and events are kept and
//! returned; traffic documents are counted, not kept.

use splitter::ops::{AuditEvent, Change};
use splitter::store::ConfigStore;
use splitter::traffic::TrafficMinute;
use splitter::{PolicyConfig, PolicyName, Result};
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use tokio::sync::watch;

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
    replicas: usize,
    policies: usize,
    /// The first minute of the simulation: the 25 h before it hold a fleet's steady-state
    /// traffic (every replica wrote every policy every minute).
    start_minute: i64,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    counts: Counts,
    configs: BTreeMap<String, PolicyConfig>,
    events: Vec<AuditEvent>,
    /// Keys of traffic documents written during the simulation, and how many per minute and
    /// per (policy, minute).
    traffic_keys: HashSet<String>,
    per_minute: BTreeMap<i64, usize>,
    per_policy_minute: BTreeMap<(String, i64), usize>,
    /// When the last prune ran (steady state: the one before the simulation, 10 min earlier).
    pruned_at: Option<tokio::time::Instant>,
}

impl CostStore {
    pub fn new(replicas: usize, policies: usize) -> CostStore {
        CostStore {
            replicas,
            policies,
            start_minute: splitter::traffic::minute_of(jiff::Timestamp::now()),
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
        }
    }

    pub fn counts(&self) -> Counts {
        self.state.lock().unwrap().counts
    }

    /// Traffic documents Firestore holds for minutes `from..=to` (one policy or all).
    fn traffic_docs(&self, state: &State, policy: Option<&str>, from: i64, to: i64) -> u64 {
        let history_to = to.min(self.start_minute - 1);
        let history_from = from.max(self.start_minute - 25 * 60);
        let history_minutes = (history_to - history_from + 1).max(0) as u64;
        let per_minute = self.replicas as u64
            * if policy.is_some() {
                1
            } else {
                self.policies as u64
            };
        let simulated: usize = match policy {
            None => state
                .per_minute
                .range(from.max(self.start_minute)..=to)
                .map(|(_, n)| n)
                .sum(),
            Some(p) => (from.max(self.start_minute)..=to)
                .map(|m| {
                    state
                        .per_policy_minute
                        .get(&(p.to_string(), m))
                        .copied()
                        .unwrap_or(0)
                })
                .sum(),
        };
        history_minutes * per_minute + simulated as u64
    }
}

/// A query or get is billed at least one read.
fn billed(docs: u64) -> u64 {
    docs.max(1)
}

#[async_trait::async_trait]
impl ConfigStore for CostStore {
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
        s.counts.reads += billed(s.configs.len() as u64);
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
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn events(&self, name: &PolicyName, limit: usize) -> Result<Vec<AuditEvent>> {
        let mut s = self.state.lock().unwrap();
        let mut found: Vec<AuditEvent> = s
            .events
            .iter()
            .rev()
            .filter(|e| e.policy_name == *name)
            .take(limit)
            .cloned()
            .collect();
        found.truncate(limit);
        s.counts.reads += billed(found.len() as u64);
        Ok(found)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    async fn put_traffic(&self, minutes: &[TrafficMinute]) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.counts.writes += minutes.len() as u64;
        for m in minutes {
            if s.traffic_keys.insert(m.key()) {
                *s.per_minute.entry(m.minute).or_default() += 1;
                *s.per_policy_minute
                    .entry((m.policy.clone(), m.minute))
                    .or_default() += 1;
            }
        }
        Ok(())
    }

    async fn traffic(
        &self,
        policy: Option<&PolicyName>,
        from: i64,
        to: i64,
    ) -> Result<Vec<TrafficMinute>> {
        let mut s = self.state.lock().unwrap();
        let docs = self.traffic_docs(&s, policy.map(|p| p.as_str()), from, to);
        s.counts.reads += billed(docs);
        Ok(Vec::new())
    }

    async fn prune_traffic(&self, before: i64) -> Result<usize> {
        // Steady state: everything older than `before` that the last prune left is the fleet's
        // traffic of the minutes since then (each replica, each policy, each minute).
        let _ = before;
        let now = tokio::time::Instant::now();
        let mut s = self.state.lock().unwrap();
        let last = s
            .pruned_at
            .unwrap_or(now - std::time::Duration::from_secs(600));
        let minutes = (now - last).as_secs() / 60;
        let aged = minutes * (self.replicas * self.policies) as u64;
        if minutes > 0 {
            s.pruned_at = Some(last + std::time::Duration::from_secs(minutes * 60));
        }
        s.counts.reads += billed(aged);
        s.counts.deletes += aged;
        Ok(aged as usize)
    }
}
