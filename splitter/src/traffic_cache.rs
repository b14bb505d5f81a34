//! Each replica's copy of the fleet's stored traffic: the last 25 h of every replica's
//! documents, in memory, kept current by reading **only** the documents stored since the last
//! read (each store assigns every write a position, [`StoredMinute::stored_at`]). Page views
//! read this, never the store; a closed minute is read from the store once.

use crate::cohort::Detail;
use crate::error::Result;
use crate::store::TrafficStore;
use crate::traffic::{Minute, ReplicaMinute, StoredMinute, VersionTraffic};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::traffic::RETENTION_MINUTES;

#[derive(Default)]
pub struct TrafficCache {
    state: Mutex<State>,
    /// When a page last read the cache (its reader polls often only while someone looks).
    viewed: Mutex<Option<std::time::Instant>>,
}

/// A replica whose traffic pages nobody viewed for this long reads the store only every
/// `idle_every` ([`TrafficCache::spawn_reader`]): most replicas of a fleet serve no dashboard.
pub const VIEWED_RECENTLY: Duration = Duration::from_secs(120);

#[derive(Default)]
struct State {
    /// (minute, replica) → that replica's newest flush of that minute.
    flushes: BTreeMap<(i64, String), Flush>,
    /// Where the next read starts: the newest position read so far.
    cursor: Option<i64>,
    reads: u64,
    /// Counts changes of what the cache holds (for those who keep results computed from it).
    generation: u64,
}

struct Flush {
    seq: u64,
    written_at: i64,
    /// The cache's generation when this flush last changed.
    generation: u64,
    shards: BTreeMap<u32, Minute>,
    /// The same shards' detail by tenant ([`crate::cohort`]).
    details: BTreeMap<u32, BTreeMap<String, Detail>>,
}

impl Flush {
    fn new(seq: u64, written_at: i64) -> Flush {
        Flush {
            seq,
            written_at,
            generation: 0,
            shards: BTreeMap::new(),
            details: BTreeMap::new(),
        }
    }
}

/// One policy's traffic per minute, replicas summed, and when each minute was last written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PolicyMinutes {
    pub minutes: BTreeMap<i64, BTreeMap<String, VersionTraffic>>,
    /// Per minute: the latest time (Unix seconds) any replica's totals were taken.
    pub written_through: BTreeMap<i64, i64>,
}

impl TrafficCache {
    pub fn new() -> TrafficCache {
        TrafficCache::default()
    }

    /// Takes documents in: a later flush of a (minute, replica) replaces every shard of an
    /// earlier one; shards of the same flush add up; older flushes are ignored.
    pub fn apply(&self, docs: impl IntoIterator<Item = ReplicaMinute>) {
        let mut state = self.state.lock().unwrap();
        state.generation += 1;
        let generation = state.generation;
        for doc in docs {
            let key = (doc.minute, doc.replica.clone());
            let flush = state
                .flushes
                .entry(key)
                .or_insert_with(|| Flush::new(doc.seq, doc.written_at));
            if doc.seq < flush.seq {
                continue;
            }
            if doc.seq > flush.seq {
                *flush = Flush::new(doc.seq, doc.written_at);
            }
            flush.generation = generation;
            flush.shards.insert(doc.shard, doc.policies);
            if doc.detail.is_empty() {
                flush.details.remove(&doc.shard);
            } else {
                flush.details.insert(doc.shard, doc.detail);
            }
        }
    }

    /// Reads what the store holds since the last read (the last [`RETENTION_MINUTES`] on the
    /// first), takes it in, and forgets minutes older than that. Returns how many documents
    /// came back.
    pub async fn refresh(&self, store: &dyn TrafficStore, now: jiff::Timestamp) -> Result<usize> {
        let earliest = now.as_microsecond() - RETENTION_MINUTES * 60_000_000;
        let since = self.state.lock().unwrap().cursor.unwrap_or(earliest);
        let stored: Vec<StoredMinute> = store.traffic_since(since).await?;
        let n = stored.len();
        let newest = stored.iter().map(|s| s.stored_at).max();
        self.apply(stored.into_iter().map(|s| s.doc));
        let mut state = self.state.lock().unwrap();
        state.cursor = Some(newest.map_or(since, |t| t.max(since)));
        state.reads += 1;
        let oldest_minute = crate::traffic::minute_of(now) - RETENTION_MINUTES;
        let before = state.flushes.len();
        state.flushes.retain(|(m, _), _| *m >= oldest_minute);
        if state.flushes.len() != before {
            state.generation += 1;
        }
        Ok(n)
    }

    /// Changes whenever what the cache holds may have changed: a result computed from it at
    /// one generation is still exact while the generation stays the same.
    pub fn generation(&self) -> u64 {
        self.state.lock().unwrap().generation
    }

    /// Refreshes every `every` while a page read the cache in the last [`VIEWED_RECENTLY`],
    /// else every `idle_every` (a minute rewritten many times is then read once), until the
    /// cache is dropped elsewhere.
    pub fn spawn_reader(
        self: &Arc<Self>,
        store: Arc<dyn TrafficStore>,
        every: Duration,
        idle_every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last_read = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let Some(cache) = weak.upgrade() else {
                    return;
                };
                if !cache.viewed_recently() && last_read.elapsed() < idle_every {
                    continue;
                }
                last_read = tokio::time::Instant::now();
                if let Err(e) = cache.refresh(&*store, jiff::Timestamp::now()).await {
                    tracing::warn!(error = %e, "reading new traffic failed; pages show what was read before");
                }
            }
        })
    }

    fn viewed(&self) {
        *self.viewed.lock().unwrap() = Some(std::time::Instant::now());
    }

    fn viewed_recently(&self) -> bool {
        self.viewed
            .lock()
            .unwrap()
            .is_some_and(|at| at.elapsed() < VIEWED_RECENTLY)
    }

    /// Whether the first read has happened.
    pub fn loaded(&self) -> bool {
        self.state.lock().unwrap().cursor.is_some()
    }

    /// `policy`'s traffic in minutes `from..=to`, replicas summed.
    pub fn policy(&self, policy: &str, from: i64, to: i64) -> PolicyMinutes {
        self.viewed();
        let state = self.state.lock().unwrap();
        let mut out = PolicyMinutes::default();
        let range = (from, String::new())..(to.saturating_add(1).max(from), String::new());
        for ((minute, _), flush) in state.flushes.range(range) {
            for versions in flush.shards.values().filter_map(|s| s.get(policy)) {
                let slot = out.minutes.entry(*minute).or_default();
                for (v, t) in versions {
                    slot.entry(v.clone()).or_default().add(t);
                }
                let through = out
                    .written_through
                    .entry(*minute)
                    .or_insert(flush.written_at);
                *through = (*through).max(flush.written_at);
            }
        }
        out
    }

    /// When minutes `from..=to` last changed (a generation, as [`TrafficCache::generation`]
    /// counts; 0 if they hold nothing): a result computed from only these minutes is still exact
    /// while this stays the same, whatever happens to other minutes.
    pub fn generation_of(&self, from: i64, to: i64) -> u64 {
        let state = self.state.lock().unwrap();
        let range = (from, String::new())..(to.saturating_add(1).max(from), String::new());
        state
            .flushes
            .range(range)
            .map(|(_, f)| f.generation)
            .max()
            .unwrap_or(0)
    }

    /// `policy`'s traffic by tenant ([`crate::cohort`]) in minutes `from..=to`, replicas summed.
    pub fn detail(&self, policy: &str, from: i64, to: i64) -> BTreeMap<i64, Detail> {
        let state = self.state.lock().unwrap();
        let mut out: BTreeMap<i64, Detail> = BTreeMap::new();
        let range = (from, String::new())..(to.saturating_add(1).max(from), String::new());
        for ((minute, _), flush) in state.flushes.range(range) {
            for d in flush.details.values().filter_map(|s| s.get(policy)) {
                out.entry(*minute).or_default().add(d);
            }
        }
        out
    }

    /// Every policy's traffic in minutes `from..=to`, minutes and replicas summed.
    pub fn totals(&self, from: i64, to: i64) -> BTreeMap<String, BTreeMap<String, VersionTraffic>> {
        self.viewed();
        let state = self.state.lock().unwrap();
        let mut out: BTreeMap<String, BTreeMap<String, VersionTraffic>> = BTreeMap::new();
        for flush in state.flushes_in(from, to) {
            for (policy, versions) in flush.shards.values().flatten() {
                add_versions(out.entry(policy.clone()).or_default(), versions);
            }
        }
        out
    }

    /// [`TrafficCache::totals`] of `policies` only (an overview page's rows: its cost follows
    /// the page, not the fleet).
    pub fn totals_of(
        &self,
        policies: &[&str],
        from: i64,
        to: i64,
    ) -> BTreeMap<String, BTreeMap<String, VersionTraffic>> {
        self.viewed();
        let state = self.state.lock().unwrap();
        let mut out: BTreeMap<String, BTreeMap<String, VersionTraffic>> = BTreeMap::new();
        for flush in state.flushes_in(from, to) {
            for shard in flush.shards.values() {
                for policy in policies {
                    if let Some(versions) = shard.get(*policy) {
                        add_versions(out.entry(policy.to_string()).or_default(), versions);
                    }
                }
            }
        }
        out
    }
}

fn add_versions(
    slot: &mut BTreeMap<String, VersionTraffic>,
    versions: &BTreeMap<String, VersionTraffic>,
) {
    for (v, t) in versions {
        match slot.get_mut(v) {
            Some(sum) => sum.add(t),
            None => {
                slot.insert(v.clone(), t.clone());
            }
        }
    }
}

impl State {
    /// The flushes of minutes `from..=to`.
    fn flushes_in(&self, from: i64, to: i64) -> impl Iterator<Item = &Flush> {
        let range = (from, String::new())..(to.saturating_add(1).max(from), String::new());
        self.flushes.range(range).map(|(_, f)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(
        minute: i64,
        replica: &str,
        seq: u64,
        shard: u32,
        policy: &str,
        n: u64,
    ) -> ReplicaMinute {
        let t = VersionTraffic {
            requests: n,
            ..Default::default()
        };
        ReplicaMinute {
            minute,
            replica: replica.into(),
            shard,
            shards: 1,
            seq,
            written_at: minute * 60 + seq as i64,
            policies: [(policy.to_string(), [("v1".to_string(), t)].into())].into(),
            detail: BTreeMap::new(),
        }
    }

    #[test]
    fn totals_of_some_policies_are_the_fleet_totals_of_those() {
        let cache = TrafficCache::new();
        cache.apply([
            doc(10, "r1", 1, 0, "a", 3),
            doc(10, "r2", 1, 0, "a", 4),
            doc(11, "r1", 1, 0, "b", 5),
            doc(12, "r1", 1, 0, "c", 6),
            doc(30, "r1", 1, 0, "a", 100),
        ]);
        let all = cache.totals(10, 12);
        let some = cache.totals_of(&["a", "c", "none"], 10, 12);
        assert_eq!(some.len(), 2);
        assert_eq!(some["a"], all["a"]);
        assert_eq!(
            some["a"]["v1"].requests, 7,
            "replicas add up; minute 30 is outside"
        );
        assert_eq!(some["c"], all["c"]);
        let g = cache.generation();
        let (g10, g12) = (cache.generation_of(10, 11), cache.generation_of(12, 12));
        cache.apply([doc(12, "r1", 2, 0, "c", 7)]);
        assert!(cache.generation() > g, "a change moves the generation");
        assert_eq!(
            cache.generation_of(10, 11),
            g10,
            "minutes 10–11 did not change"
        );
        assert!(cache.generation_of(12, 12) > g12);
        assert_eq!(cache.generation_of(40, 50), 0);
    }

    #[test]
    fn a_later_flush_replaces_an_earlier_one_and_replicas_add_up() {
        let cache = TrafficCache::new();
        cache.apply([doc(10, "a", 1, 0, "p", 3), doc(10, "b", 7, 0, "p", 4)]);
        cache.apply([doc(10, "a", 2, 0, "p", 5), doc(10, "a", 1, 0, "p", 3)]);
        let p = cache.policy("p", 10, 10);
        assert_eq!(p.minutes[&10]["v1"].requests, 9, "a's newest (5) + b's (4)");
        assert_eq!(p.written_through[&10], 10 * 60 + 7);
        assert_eq!(cache.totals(0, 20)["p"]["v1"].requests, 9);
        assert!(cache.policy("p", 11, 20).minutes.is_empty());
    }

    #[test]
    fn shards_of_one_flush_add_up_and_a_newer_flush_drops_stale_shards() {
        let cache = TrafficCache::new();
        cache.apply([doc(3, "a", 1, 0, "p", 1), doc(3, "a", 1, 1, "q", 2)]);
        assert_eq!(cache.totals(3, 3).len(), 2);
        // The next flush fits in one shard: shard 1 of flush 1 must not linger.
        cache.apply([doc(3, "a", 2, 0, "p", 6)]);
        let totals = cache.totals(3, 3);
        assert_eq!(totals.keys().collect::<Vec<_>>(), ["p"]);
        assert_eq!(totals["p"]["v1"].requests, 6);
    }
}
