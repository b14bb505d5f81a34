//! Recorded traffic: per policy, per version, per minute — requests, server errors (5xx) and a
//! latency histogram good enough for p50/p95/p99.
//!
//! Each replica keeps its own running totals per minute and writes each minute it changed as
//! one document ([`ReplicaMinute`]: every policy it served in that minute) per flush: see
//! [`crate::recorder`]. Readers keep the fleet's documents in memory and sum the replicas: see
//! [`crate::traffic_cache`].

use crate::cohort::Detail;
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

/// How far back traffic is kept and shown (the pages show at most 24 h; an hour more for the
/// edges).
pub const RETENTION_MINUTES: i64 = 25 * 60;

/// One minute of one replica: policy → version → totals.
pub type Minute = BTreeMap<String, BTreeMap<String, VersionTraffic>>;

/// What the stores hold: one replica's totals for one minute, for every policy it served in
/// that minute (or, for a very busy replica, one shard of them: see [`shard`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMinute {
    /// Minutes since the Unix epoch (UTC).
    pub minute: i64,
    pub replica: String,
    /// Which part of the flush this is (`0..shards`).
    pub shard: u32,
    pub shards: u32,
    /// The replica's flush number: a later flush of the same minute replaces every shard of an
    /// earlier one.
    pub seq: u64,
    /// When these totals were taken (Unix seconds): they cover the minute up to then. Lets a
    /// reader rate the still-filling current minute by the seconds it really covers.
    pub written_at: i64,
    pub policies: Minute,
    /// The same minute by tenant, for the policies in this shard: cohorts and the heaviest
    /// tenants ([`crate::cohort`]). Absent in documents written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, Detail>,
}

impl ReplicaMinute {
    /// The store key: unique per (minute, replica, shard), a valid Firestore document id, and
    /// ordered by minute first.
    pub fn key(&self) -> String {
        format!("{:012}@{}@{}", self.minute, self.replica, self.shard)
    }

    /// When the store may delete it (Firestore's TTL policy reads this): 25 h after its minute.
    pub fn expires_at(&self) -> jiff::Timestamp {
        let end = (self.minute + 1 + RETENTION_MINUTES) * 60;
        jiff::Timestamp::from_second(end).unwrap_or(jiff::Timestamp::MAX)
    }
}

/// A document as read back, with the position the store gave its write (microseconds since
/// the epoch, by the store's clock): readers ask for everything at or after the newest
/// position they have seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMinute {
    pub doc: ReplicaMinute,
    pub stored_at: i64,
}

/// Largest shard, in bytes of JSON: well under Firestore's 1 MiB per document.
pub const MAX_SHARD_BYTES: usize = 512 * 1024;

/// Splits one replica's minute into as few documents as fit [`MAX_SHARD_BYTES`] each (one,
/// unless a replica serves thousands of policies), in policy order; a policy's detail goes with
/// its totals.
pub fn shard(
    minute: i64,
    replica: &str,
    seq: u64,
    written_at: i64,
    policies: &Minute,
    detail: &BTreeMap<String, Detail>,
) -> Vec<ReplicaMinute> {
    type Part = (Minute, BTreeMap<String, Detail>);
    let mut parts: Vec<Part> = vec![Part::default()];
    let mut size = 0;
    for (policy, versions) in policies {
        let d = detail.get(policy);
        let bytes = policy.len()
            + serde_json::to_vec(versions).map_or(0, |v| v.len())
            + d.map_or(0, |d| {
                serde_json::to_vec(d).map_or(0, |v| v.len()) + policy.len()
            })
            + 8;
        if size + bytes > MAX_SHARD_BYTES && !parts.last().is_some_and(|p| p.0.is_empty()) {
            parts.push(Part::default());
            size = 0;
        }
        size += bytes;
        let part = parts.last_mut().expect("never empty");
        part.0.insert(policy.clone(), versions.clone());
        if let Some(d) = d {
            part.1.insert(policy.clone(), d.clone());
        }
    }
    let shards = parts.len() as u32;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, (policies, detail))| ReplicaMinute {
            minute,
            replica: replica.to_string(),
            shard: i as u32,
            shards,
            seq,
            written_at,
            policies,
            detail,
        })
        .collect()
}

/// The minute (since the Unix epoch) that `t` falls in.
pub fn minute_of(t: jiff::Timestamp) -> i64 {
    t.as_second().div_euclid(60)
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
    fn a_minute_is_one_document_unless_it_is_huge() {
        let t = VersionTraffic {
            requests: 1,
            latency: vec![1; 30],
            ..Default::default()
        };
        let minute = |n: usize| -> Minute {
            (0..n)
                .map(|i| {
                    (
                        format!("policy-{i:05}"),
                        [("v1".to_string(), t.clone())].into(),
                    )
                })
                .collect()
        };
        let none = BTreeMap::new();
        let one = shard(7, "r", 3, 420, &minute(1_000), &none);
        assert_eq!(one.len(), 1);
        assert_eq!(
            (one[0].shards, one[0].seq, one[0].policies.len()),
            (1, 3, 1_000)
        );
        let many = shard(7, "r", 3, 420, &minute(20_000), &none);
        assert!(many.len() > 1);
        assert!(many.iter().all(|d| d.shards == many.len() as u32));
        assert!(many
            .iter()
            .all(|d| serde_json::to_vec(&d.policies).unwrap().len() <= MAX_SHARD_BYTES));
        assert_eq!(many.iter().map(|d| d.policies.len()).sum::<usize>(), 20_000);
        assert_eq!(one[0].key(), "000000000007@r@0");
        assert_eq!(sanitize_replica("Web_1.local"), "web-1-local");
    }
}
