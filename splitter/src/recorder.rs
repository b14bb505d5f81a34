//! The traffic recorder: aggregates every outcome this replica served in memory, per minute,
//! and writes each minute it changed as one document per flush (all policies it served in
//! that minute, sharded only if large: see [`crate::traffic::ReplicaMinute`]).
//!
//! A write never needs to read, increment or lock anything: a replica replaces its own
//! document with its running totals, so re-sending is harmless and no document is written by
//! two replicas. Each flush carries a sequence number; a reader keeps the newest flush of each
//! (minute, replica).

use crate::cohort::{Counts, Detail, Sketch, Who};
use crate::decision::{Decision, Reason};
use crate::error::Result;
use crate::store::TrafficStore;
use crate::traffic::{
    minute_of, sanitize_replica, shard, Minute, ReplicaMinute, VersionTraffic, Via,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Aggregates outcomes in memory and flushes them to a store. Recording takes a short
/// in-memory lock (no allocation once a policy and version have been seen) and never waits
/// for the store; a failed flush keeps the data (up to `max_pending` policy-minutes) for the
/// next one, and whatever has to be dropped to stay within that bound is counted in
/// [`RecorderStats::lost_requests`].
pub struct TrafficRecorder {
    replica: String,
    max_pending: usize,
    state: Mutex<State>,
    lost_requests: AtomicU64,
    flush_failures: AtomicU64,
    flushed_writes: AtomicU64,
    last_error: Mutex<Option<String>>,
}

#[derive(Default)]
struct State {
    /// minute → what this replica served in it.
    minutes: BTreeMap<i64, Entry>,
    /// Number of (policy, minute) pairs held.
    pending: usize,
    /// The number of the next flush (see [`ReplicaMinute::seq`]).
    next_seq: u64,
    /// policy → version → since start (for Prometheus counters).
    totals: HashMap<String, BTreeMap<String, VersionTraffic>>,
    /// policy → version → decisions handed out, indexed by [`Via`] (in `Via::ALL` order).
    decisions: HashMap<String, BTreeMap<String, [u64; 2]>>,
}

#[derive(Default)]
struct Entry {
    policies: Minute,
    /// policy → the minute by tenant.
    detail: HashMap<String, PolicyDetail>,
    /// Bumped on every record; the store holds `flushed_generation`.
    generation: u64,
    flushed_generation: u64,
    requests: u64,
    flushed_requests: u64,
}

/// One policy's minute by tenant, as the recorder builds it.
#[derive(Default)]
struct PolicyDetail {
    /// version → cohort → counts.
    cohorts: BTreeMap<String, BTreeMap<u16, Counts>>,
    sketch: Sketch,
}

impl PolicyDetail {
    fn detail(&self) -> Detail {
        Detail {
            cohorts: self.cohorts.clone(),
            heavy: self.sketch.heaviest(),
        }
    }
}

impl Entry {
    fn details(&self) -> BTreeMap<String, Detail> {
        self.detail
            .iter()
            .map(|(p, d)| (p.clone(), d.detail()))
            .collect()
    }

    fn dirty(&self) -> bool {
        self.generation > self.flushed_generation
    }
}

/// The value for `key`, inserted (and the key allocated) only the first time.
fn slot<'a, M: Slots<V>, V: Default>(map: &'a mut M, key: &str) -> &'a mut V {
    map.slot(key)
}

trait Slots<V> {
    fn slot(&mut self, key: &str) -> &mut V;
}

impl<V: Default> Slots<V> for HashMap<String, V> {
    fn slot(&mut self, key: &str) -> &mut V {
        if !self.contains_key(key) {
            self.insert(key.to_string(), V::default());
        }
        self.get_mut(key).expect("inserted above")
    }
}

impl<V: Default> Slots<V> for BTreeMap<String, V> {
    fn slot(&mut self, key: &str) -> &mut V {
        if !self.contains_key(key) {
            self.insert(key.to_string(), V::default());
        }
        self.get_mut(key).expect("inserted above")
    }
}

fn flatten<V: Clone>(map: &HashMap<String, BTreeMap<String, V>>) -> BTreeMap<(String, String), V> {
    map.iter()
        .flat_map(|(p, inner)| {
            inner
                .iter()
                .map(|(k, v)| ((p.clone(), k.clone()), v.clone()))
        })
        .collect()
}

/// What `/metrics` and the dashboard show about the recorder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Policy-minutes held in memory.
    pub pending_minutes: usize,
    /// Minutes with data the store has not acknowledged yet.
    pub unflushed_minutes: usize,
    /// Requests recorded but not yet in the store.
    pub unflushed_requests: u64,
    /// Requests dropped unflushed to keep memory bounded during a long store outage.
    pub lost_requests: u64,
    pub flush_failures: u64,
    /// Documents written by successful flushes.
    pub flushed_writes: u64,
    pub last_error: Option<String>,
}

impl TrafficRecorder {
    /// Default bound on policy-minutes held in memory (for example 1 000 busy policies
    /// through a 20-minute store outage).
    pub const DEFAULT_MAX_PENDING: usize = 20_000;

    pub fn new(replica: &str, max_pending: usize) -> TrafficRecorder {
        TrafficRecorder {
            replica: sanitize_replica(replica),
            max_pending: max_pending.max(1),
            state: Mutex::new(State::default()),
            lost_requests: AtomicU64::new(0),
            flush_failures: AtomicU64::new(0),
            flushed_writes: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Records one served request at `minute`. Requests for policies without config are
    /// not recorded (anyone can send any name; the store must not fill with typos).
    pub fn record_at(
        &self,
        minute: i64,
        policy: &str,
        who: Who<'_>,
        decision: &Decision,
        status: u16,
        latency: Duration,
    ) {
        if decision.reason == Reason::NoConfig {
            return;
        }
        let version = decision.version.as_str();
        self.record_outcome(minute, policy, version, who, status, latency, Via::Layer);
    }

    /// Records one served request of `version` (the caller checked that the policy exists
    /// and the version is one of its own). `via` says who decided; the layer's requests also
    /// count as its decisions.
    #[allow(clippy::too_many_arguments)]
    pub fn record_outcome(
        &self,
        minute: i64,
        policy: &str,
        version: &str,
        who: Who<'_>,
        status: u16,
        latency: Duration,
        via: Via,
    ) {
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        let known = state
            .minutes
            .get(&minute)
            .is_some_and(|e| e.policies.contains_key(policy));
        if !known {
            if state.pending >= self.max_pending {
                self.evict_oldest(state);
            }
            state.pending += 1;
        }
        let entry = state.minutes.entry(minute).or_default();
        slot(slot(&mut entry.policies, policy), version).record(status, latency);
        if let Some(tenant) = who.tenant.filter(|t| crate::names::tenant_is_valid(t)) {
            let detail = slot(&mut entry.detail, policy);
            if let Some(cohort) = who.cohort {
                let by_cohort = slot(&mut detail.cohorts, version);
                by_cohort.entry(cohort).or_default().record(status, latency);
            }
            detail.sketch.record(tenant, version, status, latency);
        }
        entry.generation += 1;
        entry.requests += 1;
        slot(slot(&mut state.totals, policy), version).record(status, latency);
        if via == Via::Layer {
            slot(slot(&mut state.decisions, policy), version)[via as usize] += 1;
        }
    }

    /// Counts a decision handed out without an outcome (the JSON decision API).
    pub fn decided(&self, policy: &str, decision: &Decision, via: Via) {
        if decision.reason == Reason::NoConfig {
            return;
        }
        let mut state = self.state.lock().unwrap();
        let counts = slot(
            slot(&mut state.decisions, policy),
            decision.version.as_str(),
        );
        counts[via as usize] += 1;
    }

    /// Drops the oldest minute (already written ones first); whatever it held unflushed is
    /// lost and counted.
    fn evict_oldest(&self, state: &mut State) {
        let oldest = state
            .minutes
            .iter()
            .map(|(m, e)| ((e.dirty(), *m), *m))
            .min()
            .map(|(_, m)| m);
        if let Some(e) = oldest.and_then(|m| state.minutes.remove(&m)) {
            state.pending -= e.policies.len();
            let lost = e.requests - e.flushed_requests;
            self.lost_requests.fetch_add(lost, Ordering::Relaxed);
        }
    }

    /// What a flush writes: every changed minute, whole, under one new sequence number.
    fn batch(&self, written_at: i64) -> Vec<(i64, u64, u64, Vec<ReplicaMinute>)> {
        let mut state = self.state.lock().unwrap();
        let seq = state.next_seq;
        state.next_seq += 1;
        state
            .minutes
            .iter()
            .filter(|(_, e)| e.dirty())
            .map(|(&minute, e)| {
                let details = e.details();
                let docs = shard(
                    minute,
                    &self.replica,
                    seq,
                    written_at,
                    &e.policies,
                    &details,
                );
                (minute, e.generation, e.requests, docs)
            })
            .collect()
    }

    /// Writes every minute changed since its last write. On success, closed minutes (before
    /// `now_minute - 1`) that are fully written are forgotten. Returns the documents written.
    pub async fn flush(
        &self,
        store: &dyn TrafficStore,
        now_minute: i64,
    ) -> Result<Vec<ReplicaMinute>> {
        let batch = self.batch(jiff::Timestamp::now().as_second());
        let docs: Vec<ReplicaMinute> = batch.iter().flat_map(|b| b.3.iter().cloned()).collect();
        if !docs.is_empty() {
            if let Err(e) = store.put_traffic(&docs).await {
                self.flush_failures.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap() = Some(e.to_string());
                return Err(e);
            }
            self.flushed_writes
                .fetch_add(docs.len() as u64, Ordering::Relaxed);
            *self.last_error.lock().unwrap() = None;
        }
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        for (minute, generation, requests, _) in &batch {
            if let Some(e) = state.minutes.get_mut(minute) {
                // Records that arrived during the write keep the entry dirty.
                e.flushed_generation = e.flushed_generation.max(*generation);
                e.flushed_requests = e.flushed_requests.max(*requests);
            }
        }
        state
            .minutes
            .retain(|m, e| *m >= now_minute - 1 || e.dirty());
        state.pending = state.minutes.values().map(|e| e.policies.len()).sum();
        Ok(docs)
    }

    /// Flushes every `interval` until the recorder is dropped elsewhere, handing what it wrote
    /// to `written` (the replica's own traffic view); every 120 flushes (and at start), asks
    /// the store to drop minutes older than `retention` (Firestore leaves that to its TTL).
    pub fn spawn_flusher(
        self: &Arc<Self>,
        store: Arc<dyn TrafficStore>,
        interval: Duration,
        retention: Duration,
        written: impl Fn(Vec<ReplicaMinute>) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks: u64 = 0;
            loop {
                tokio::time::sleep(interval).await;
                let Some(recorder) = weak.upgrade() else {
                    return;
                };
                let now = minute_of(jiff::Timestamp::now());
                match recorder.flush(&*store, now).await {
                    Ok(docs) if !docs.is_empty() => written(docs),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "traffic flush failed; counts are kept for the next flush")
                    }
                }
                if ticks.is_multiple_of(120) {
                    let keep = (retention.as_secs() / 60) as i64;
                    if let Err(e) = store.prune_traffic(now - keep).await {
                        tracing::warn!(error = %e, "pruning old traffic failed");
                    }
                }
                ticks += 1;
            }
        })
    }

    pub fn stats(&self) -> RecorderStats {
        let state = self.state.lock().unwrap();
        let (unflushed_minutes, unflushed_requests) = state
            .minutes
            .values()
            .filter(|e| e.dirty())
            .fold((0, 0), |(n, r), e| {
                (n + 1, r + e.requests - e.flushed_requests)
            });
        RecorderStats {
            pending_minutes: state.pending,
            unflushed_minutes,
            unflushed_requests,
            lost_requests: self.lost_requests.load(Ordering::Relaxed),
            flush_failures: self.flush_failures.load(Ordering::Relaxed),
            flushed_writes: self.flushed_writes.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap().clone(),
        }
    }

    /// Traffic since start per (policy, version).
    pub fn totals(&self) -> BTreeMap<(String, String), VersionTraffic> {
        flatten(&self.state.lock().unwrap().totals)
    }

    /// Decisions since start per (policy, version, who decided); zero counts are left out.
    pub fn decisions(&self) -> BTreeMap<(String, String, Via), u64> {
        flatten(&self.state.lock().unwrap().decisions)
            .into_iter()
            .flat_map(|((p, v), counts)| {
                Via::ALL
                    .into_iter()
                    .filter(move |&via| counts[via as usize] > 0)
                    .map(move |via| ((p.clone(), v.clone(), via), counts[via as usize]))
            })
            .collect()
    }
}

#[cfg(feature = "layer")]
impl crate::layer::Recorder for TrafficRecorder {
    fn record(
        &self,
        policy: &str,
        who: Who<'_>,
        decision: &Decision,
        status: u16,
        latency: Duration,
    ) {
        let minute = minute_of(jiff::Timestamp::now());
        self.record_at(minute, policy, who, decision, status, latency);
    }
}
