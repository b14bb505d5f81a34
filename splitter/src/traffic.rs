//! Recorded traffic: per policy, per version, per minute — requests, server errors (5xx) and a
//! latency histogram good enough for p50/p95/p99.
//!
//! Each replica keeps its own running totals for every (policy, minute) it served and writes
//! them whole to the store as one document per (policy, minute, replica). A write therefore
//! never needs to read, increment or lock anything: re-sending the same totals is harmless, and
//! no document is written by two replicas (Firestore allows about one write per second per
//! document; a replica writes each document at most once per flush interval). Readers sum the
//! replicas.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

/// Upper bounds of the latency buckets in microseconds: 50 µs × √2ⁱ for i = 0..=40, so about
/// 52 s at the top; a last, open bucket holds anything slower. Two buckets per doubling keeps a
/// quantile estimate within ±19 % of the true value.
pub static LATENCY_BOUNDS_US: LazyLock<Vec<u64>> = LazyLock::new(|| {
    (0..=40)
        .map(|i| (50.0 * 2f64.powf(i as f64 / 2.0)).round() as u64)
        .collect()
});

/// Number of latency buckets, the open one included.
pub fn latency_buckets() -> usize {
    LATENCY_BOUNDS_US.len() + 1
}

/// The bucket a latency falls into (bounds are inclusive upper bounds).
pub fn latency_bucket(latency: Duration) -> usize {
    let us = latency.as_micros().min(u64::MAX as u128) as u64;
    LATENCY_BOUNDS_US.partition_point(|&b| b < us)
}

/// One version's traffic in one minute (or any sum of minutes and replicas).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionTraffic {
    pub requests: u64,
    /// Responses with a 5xx status.
    pub errors: u64,
    /// Counts per latency bucket ([`LATENCY_BOUNDS_US`]); trailing empty buckets are omitted.
    pub latency: Vec<u64>,
    /// Sum of all latencies in microseconds (for the mean and Prometheus's `_sum`).
    pub latency_sum_us: u64,
}

impl VersionTraffic {
    pub fn record(&mut self, status: u16, latency: Duration) {
        self.requests += 1;
        if (500..600).contains(&status) {
            self.errors += 1;
        }
        let b = latency_bucket(latency);
        if self.latency.len() <= b {
            self.latency.resize(b + 1, 0);
        }
        self.latency[b] += 1;
        self.latency_sum_us = self
            .latency_sum_us
            .saturating_add(latency.as_micros().min(u64::MAX as u128) as u64);
    }

    pub fn add(&mut self, other: &VersionTraffic) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
        self.latency_sum_us = self.latency_sum_us.saturating_add(other.latency_sum_us);
    }

    /// Errors / requests, `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The latency below which a fraction `q` (0–1) of requests fell, interpolated within its
    /// bucket; `None` without requests. In the open top bucket the answer is its lower bound.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.latency.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_US[i - 1] };
                let Some(&upper) = LATENCY_BOUNDS_US.get(i) else {
                    return Some(Duration::from_micros(lower));
                };
                let within = (rank - seen as f64) / n as f64;
                let us = lower as f64 + within * (upper - lower) as f64;
                return Some(Duration::from_micros(us.round() as u64));
            }
            seen += n;
        }
        None
    }
}

/// One replica's totals for one policy in one minute: what the stores hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficMinute {
    pub policy: String,
    /// Minutes since the Unix epoch (UTC).
    pub minute: i64,
    pub replica: String,
    pub versions: BTreeMap<String, VersionTraffic>,
    /// When these totals were taken (Unix seconds): they cover the minute up to then. Lets a
    /// reader rate the still-filling current minute by the seconds it really covers.
    #[serde(default)]
    pub written_at: i64,
}

impl TrafficMinute {
    /// The store key: unique per (policy, minute, replica), a valid Firestore document id.
    pub fn key(&self) -> String {
        format!("{}@{}@{}", self.policy, self.minute, self.replica)
    }
}

/// The minute (since the Unix epoch) that `t` falls in.
pub fn minute_of(t: jiff::Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

/// Per (policy, minute): the latest time any replica's totals were taken.
pub fn written_through(docs: &[TrafficMinute]) -> BTreeMap<(String, i64), i64> {
    let mut out: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for d in docs {
        let t = out
            .entry((d.policy.clone(), d.minute))
            .or_insert(d.written_at);
        *t = (*t).max(d.written_at);
    }
    out
}

/// Sums replicas: per (policy, minute), per version.
pub fn sum_replicas(
    docs: impl IntoIterator<Item = TrafficMinute>,
) -> BTreeMap<(String, i64), BTreeMap<String, VersionTraffic>> {
    let mut out: BTreeMap<(String, i64), BTreeMap<String, VersionTraffic>> = BTreeMap::new();
    for doc in docs {
        let slot = out.entry((doc.policy, doc.minute)).or_default();
        for (version, t) in doc.versions {
            slot.entry(version).or_default().add(&t);
        }
    }
    out
}

/// A replica id for people and document keys: lowercase letters, digits and `-`, at most 60.
pub fn sanitize_replica(raw: &str) -> String {
    let s: String = raw
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect();
    if s.is_empty() {
        "replica".into()
    } else {
        s
    }
}

/// Who decided which version served a request: the routing layer inside a service, or a
/// caller of the decision API (which reports what it served through the outcomes API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Layer,
    Api,
}

impl Via {
    pub const ALL: [Via; 2] = [Via::Layer, Via::Api];

    /// As `/metrics` labels it.
    pub fn key(self) -> &'static str {
        match self {
            Via::Layer => "layer",
            Via::Api => "api",
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(feature = "store")]
pub use recorder::{RecorderStats, TrafficRecorder};

#[cfg(feature = "store")]
mod recorder {
    use super::*;
    use crate::decision::{Decision, Reason};
    use crate::error::Result;
    use crate::store::ConfigStore;
    use std::collections::HashMap;
    use std::hash::Hash;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

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
        /// policy → minute → what this replica served.
        minutes: HashMap<String, BTreeMap<i64, Entry>>,
        /// Number of (policy, minute) entries in `minutes`.
        pending: usize,
        /// policy → version → since start (for Prometheus counters).
        totals: HashMap<String, BTreeMap<String, VersionTraffic>>,
        /// policy → version → decisions handed out, indexed by [`Via`] (in `Via::ALL` order).
        decisions: HashMap<String, BTreeMap<String, [u64; 2]>>,
    }

    #[derive(Default)]
    struct Entry {
        versions: BTreeMap<String, VersionTraffic>,
        /// Bumped on every record; the store holds `flushed_generation`.
        generation: u64,
        flushed_generation: u64,
        requests: u64,
        flushed_requests: u64,
    }

    impl Entry {
        fn dirty(&self) -> bool {
            self.generation > self.flushed_generation
        }
    }

    /// The value for `key`, inserted (and the key allocated) only the first time.
    fn slot_hash<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
        if !map.contains_key(key) {
            map.insert(key.to_string(), V::default());
        }
        map.get_mut(key).expect("inserted above")
    }

    fn slot_tree<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
        if !map.contains_key(key) {
            map.insert(key.to_string(), V::default());
        }
        map.get_mut(key).expect("inserted above")
    }

    fn flatten<V: Clone, K: Clone + Ord + Hash>(
        map: &HashMap<String, BTreeMap<K, V>>,
    ) -> BTreeMap<(String, K), V> {
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
        /// Policy-minutes with data the store has not acknowledged yet.
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
            decision: &Decision,
            status: u16,
            latency: Duration,
        ) {
            if decision.reason == Reason::NoConfig {
                return;
            }
            self.record_outcome(
                minute,
                policy,
                decision.version.as_str(),
                status,
                latency,
                Via::Layer,
            );
        }

        /// Records one served request of `version` (the caller checked that the policy exists
        /// and the version is one of its own). `via` says who decided; the
        /// layer's requests also count as its decisions.
        pub fn record_outcome(
            &self,
            minute: i64,
            policy: &str,
            version: &str,
            status: u16,
            latency: Duration,
            via: Via,
        ) {
            let mut guard = self.state.lock().unwrap();
            let state = &mut *guard;
            let known = state
                .minutes
                .get(policy)
                .is_some_and(|m| m.contains_key(&minute));
            if !known {
                if state.pending >= self.max_pending {
                    self.evict_oldest(state);
                }
                state.pending += 1;
            }
            let entry = slot_hash(&mut state.minutes, policy)
                .entry(minute)
                .or_default();
            slot_tree(&mut entry.versions, version).record(status, latency);
            entry.generation += 1;
            entry.requests += 1;
            slot_tree(slot_hash(&mut state.totals, policy), version).record(status, latency);
            if via == Via::Layer {
                slot_tree(slot_hash(&mut state.decisions, policy), version)[via as usize] += 1;
            }
        }

        /// Counts a decision handed out without an outcome (the JSON decision API).
        pub fn decided(&self, policy: &str, decision: &Decision, via: Via) {
            if decision.reason == Reason::NoConfig {
                return;
            }
            let i = via as usize;
            let mut state = self.state.lock().unwrap();
            slot_tree(
                slot_hash(&mut state.decisions, policy),
                decision.version.as_str(),
            )[i] += 1;
        }

        /// Drops the oldest policy-minute (already written ones first); whatever it held
        /// unflushed is lost and counted.
        fn evict_oldest(&self, state: &mut State) {
            let oldest = state
                .minutes
                .iter()
                .flat_map(|(p, ms)| ms.iter().map(move |(m, e)| ((e.dirty(), *m), p, *m)))
                .min_by_key(|(rank, _, _)| *rank)
                .map(|(_, p, m)| (p.clone(), m));
            if let Some((policy, minute)) = oldest {
                let ms = state.minutes.get_mut(&policy).expect("found above");
                let e = ms.remove(&minute).expect("found above");
                if ms.is_empty() {
                    state.minutes.remove(&policy);
                }
                state.pending -= 1;
                self.lost_requests
                    .fetch_add(e.requests - e.flushed_requests, Ordering::Relaxed);
            }
        }

        /// Writes every policy-minute changed since its last write. On success, closed minutes
        /// (before `now_minute - 1`) that are fully written are forgotten. Returns how many
        /// documents were written.
        pub async fn flush(&self, store: &dyn ConfigStore, now_minute: i64) -> Result<usize> {
            let written_at = jiff::Timestamp::now().as_second();
            let batch: Vec<(u64, u64, TrafficMinute)> = {
                let state = self.state.lock().unwrap();
                state
                    .minutes
                    .iter()
                    .flat_map(|(policy, ms)| ms.iter().map(move |(m, e)| (policy, *m, e)))
                    .filter(|(_, _, e)| e.dirty())
                    .map(|(policy, minute, e)| {
                        (
                            e.generation,
                            e.requests,
                            TrafficMinute {
                                policy: policy.clone(),
                                minute,
                                replica: self.replica.clone(),
                                versions: e.versions.clone(),
                                written_at,
                            },
                        )
                    })
                    .collect()
            };
            if !batch.is_empty() {
                let docs: Vec<TrafficMinute> = batch.iter().map(|b| b.2.clone()).collect();
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
            for (generation, requests, doc) in &batch {
                if let Some(e) = state
                    .minutes
                    .get_mut(&doc.policy)
                    .and_then(|ms| ms.get_mut(&doc.minute))
                {
                    // Records that arrived during the write keep the entry dirty.
                    e.flushed_generation = e.flushed_generation.max(*generation);
                    e.flushed_requests = e.flushed_requests.max(*requests);
                }
            }
            let mut pending = 0;
            state.minutes.retain(|_, ms| {
                ms.retain(|m, e| *m >= now_minute - 1 || e.dirty());
                pending += ms.len();
                !ms.is_empty()
            });
            state.pending = pending;
            Ok(batch.len())
        }

        /// Flushes every `interval` until the recorder is dropped elsewhere; every 120 flushes
        /// (and at start), deletes stored minutes older than `retention`.
        pub fn spawn_flusher(
            self: &Arc<Self>,
            store: Arc<dyn ConfigStore>,
            interval: Duration,
            retention: Duration,
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
                    if let Err(e) = recorder.flush(&*store, now).await {
                        tracing::warn!(error = %e, "traffic flush failed; counts are kept for the next flush");
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
                .flat_map(|ms| ms.values())
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
        fn record(&self, policy: &str, decision: &Decision, status: u16, latency: Duration) {
            self.record_at(
                minute_of(jiff::Timestamp::now()),
                policy,
                decision,
                status,
                latency,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_increasing_and_bucketing_is_inclusive() {
        let b = &*LATENCY_BOUNDS_US;
        assert_eq!(b[0], 50);
        assert_eq!(b[2], 100);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(latency_bucket(Duration::from_micros(50)), 0);
        assert_eq!(latency_bucket(Duration::from_micros(51)), 1);
        assert_eq!(latency_bucket(Duration::from_secs(3600)), b.len());
    }

    #[test]
    fn quantiles_stay_within_a_bucket_of_the_truth() {
        let mut t = VersionTraffic::default();
        // 1..=1000 ms, uniformly: p50 = 500 ms, p95 = 950 ms, p99 = 990 ms.
        for ms in 1..=1000u64 {
            t.record(200, Duration::from_millis(ms));
        }
        for (q, truth) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = t.quantile(q).unwrap().as_secs_f64() * 1000.0;
            assert!(
                (got / truth - 1.0).abs() < 0.19,
                "q{q}: {got} ms vs {truth} ms"
            );
        }
        assert_eq!(VersionTraffic::default().quantile(0.5), None);
    }

    #[test]
    fn errors_are_5xx_only_and_sums_add_up() {
        let mut a = VersionTraffic::default();
        for s in [200, 404, 499, 500, 503, 599, 600] {
            a.record(s, Duration::from_millis(1));
        }
        assert_eq!((a.requests, a.errors), (7, 3));
        let mut b = VersionTraffic::default();
        b.record(502, Duration::from_secs(100));
        let mut sum = a.clone();
        sum.add(&b);
        assert_eq!((sum.requests, sum.errors), (8, 4));
        assert_eq!(sum.latency.iter().sum::<u64>(), 8);
        assert_eq!(sum.latency_sum_us, 7_000 + 100_000_000);
    }

    #[test]
    fn replicas_are_summed() {
        let doc = |replica: &str, n: u64| TrafficMinute {
            policy: "p".into(),
            minute: 7,
            replica: replica.into(),
            versions: [(
                "v1".to_string(),
                VersionTraffic {
                    requests: n,
                    ..Default::default()
                },
            )]
            .into(),
            written_at: 420 + n as i64,
        };
        let through = written_through(&[doc("a", 3), doc("b", 4)]);
        assert_eq!(through[&("p".to_string(), 7)], 424);
        let sum = sum_replicas([doc("a", 3), doc("b", 4)]);
        assert_eq!(sum[&("p".to_string(), 7)]["v1"].requests, 7);
        assert_eq!(sanitize_replica("Web_1.local"), "web-1-local");
    }
}
