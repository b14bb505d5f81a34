//! Traffic by tenant, as much as the analysis needs and no more: per **cohort** (the tenants of
//! 10 neighbouring buckets, 0.1 % of tenants) and for the **heaviest tenants** by name.
//!
//! Tenants, not requests, are what a canary randomises: a share sends whole tenants (whole
//! buckets) to the canary for a whole step, and tenants differ. Cohorts let the analysis compare
//! the tenants that moved at a step with their own traffic before it ([`crate::analysis`]), and
//! the heavy-hitter sketch says which customers a number is about ("who is hurt", "which
//! customers move"). Both ride in the same per-minute documents as the version totals
//! ([`crate::traffic::ReplicaMinute::detail`]).

use crate::traffic::latency_bucket;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// Buckets per cohort: a cohort is 0.1 % of tenants, so any share on a 0.1 % boundary is a
/// whole number of cohorts (a share in between leaves one cohort split, which the analysis
/// leaves out).
pub const BUCKETS_PER_COHORT: u16 = 10;
/// Number of cohorts.
pub const COHORTS: u16 = crate::bucket::BUCKETS / BUCKETS_PER_COHORT;

/// The cohort of a bucket.
pub fn cohort_of(bucket: u16) -> u16 {
    bucket / BUCKETS_PER_COHORT
}

/// The buckets of a cohort, `first..end`.
pub fn buckets_of(cohort: u16) -> (u16, u16) {
    let first = cohort * BUCKETS_PER_COHORT;
    (first, first + BUCKETS_PER_COHORT)
}

/// Who a request was for, as far as traffic records it: the tenant (for the heavy-hitter
/// sketch) and its cohort when its bucket decided its version (pinned tenants and requests
/// without a tenant have none: they are not randomised).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Who<'a> {
    pub tenant: Option<&'a str>,
    pub cohort: Option<u16>,
}

impl<'a> Who<'a> {
    /// Who `tenant` is under `config`, given the decision it got: its cohort if its bucket
    /// decided (or would have, had the policy a canary), none if it is pinned or invalid.
    pub fn of(
        config: &crate::config::PolicyConfig,
        tenant: Option<&'a str>,
        decision: &crate::decision::Decision,
    ) -> Who<'a> {
        use crate::decision::Reason;
        let cohort = match decision.reason {
            Reason::Bucket { bucket, .. } => Some(cohort_of(bucket.get())),
            Reason::NoCanary => {
                tenant.map(|t| cohort_of(crate::bucket::bucket(&config.salt, t).get()))
            }
            _ => None,
        };
        let tenant = tenant.filter(|t| crate::names::tenant_is_valid(t));
        Who {
            tenant,
            cohort: cohort.filter(|_| tenant.is_some()),
        }
    }
}

/// Requests, 5xx and a latency histogram (the same buckets as
/// [`crate::traffic::VersionTraffic`], stored from the first non-empty one). Stored as one
/// array, `[requests, errors, first bucket, counts…]`, to keep documents small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
    /// Index of `latency[0]` among the latency buckets.
    pub from: usize,
    pub latency: Vec<u64>,
}

impl Counts {
    pub fn record(&mut self, status: u16, latency: Duration) {
        self.requests += 1;
        if (500..600).contains(&status) {
            self.errors += 1;
        }
        self.count_bucket(latency_bucket(latency), 1);
    }

    fn count_bucket(&mut self, b: usize, n: u64) {
        if self.latency.is_empty() {
            self.from = b;
        }
        if b < self.from {
            let grow = self.from - b;
            self.latency.splice(0..0, std::iter::repeat_n(0, grow));
            self.from = b;
        }
        let i = b - self.from;
        if self.latency.len() <= i {
            self.latency.resize(i + 1, 0);
        }
        self.latency[i] += n;
    }

    pub fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (i, &n) in other.latency.iter().enumerate() {
            if n > 0 {
                self.count_bucket(other.from + i, n);
            }
        }
    }

    /// Requests in latency buckets above `bucket`.
    pub fn above(&self, bucket: usize) -> u64 {
        self.latency
            .iter()
            .enumerate()
            .filter(|(i, _)| self.from + i > bucket)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let head = [self.requests, self.errors, self.from as u64];
        s.collect_seq(head.iter().chain(&self.latency))
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Counts, D::Error> {
        let v = Vec::<u64>::deserialize(d)?;
        if v.len() < 3 || v[2] > 64 {
            return Err(serde::de::Error::custom(
                "cohort counts are [requests, errors, first bucket, counts…]",
            ));
        }
        Ok(Counts {
            requests: v[0],
            errors: v[1],
            from: v[2] as usize,
            latency: v[3..].to_vec(),
        })
    }
}

/// One of the heaviest tenants of a policy in a minute, on one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heavy {
    pub tenant: String,
    pub version: String,
    /// Exact from the moment the tenant entered this replica's sketch in that minute.
    pub counts: Counts,
}

/// A policy's minute by tenant: version → cohort → counts, and the heaviest tenants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cohorts: BTreeMap<String, BTreeMap<u16, Counts>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heavy: Vec<Heavy>,
}

impl Detail {
    /// Adds another replica's (or minute's) detail: cohorts add up, heavy tenants add up by
    /// (tenant, version).
    pub fn add(&mut self, other: &Detail) {
        for (version, cohorts) in &other.cohorts {
            let mine = self.cohorts.entry(version.clone()).or_default();
            for (c, n) in cohorts {
                mine.entry(*c).or_default().add(n);
            }
        }
        for h in &other.heavy {
            match self
                .heavy
                .iter_mut()
                .find(|m| m.tenant == h.tenant && m.version == h.version)
            {
                Some(m) => m.counts.add(&h.counts),
                None => self.heavy.push(h.clone()),
            }
        }
    }
}

/// Tenants a replica's sketch tracks per policy and minute: a tenant with more than 1/32 of a
/// policy's requests in a minute is always among them (Space-Saving).
pub const HEAVY_TRACKED: usize = 32;
/// Tenants written per policy, minute and replica (the busiest of those tracked).
pub const HEAVY_WRITTEN: usize = 10;

/// A Space-Saving heavy-hitter sketch over (tenant, version) for one policy and minute. A hit
/// compares hashes (no allocation); once full, a new tenant takes the place of the one with the
/// fewest requests, reusing its strings.
#[derive(Debug, Clone, Default)]
pub struct Sketch {
    slots: Vec<Slot>,
}

#[derive(Debug, Clone)]
struct Slot {
    hash: u64,
    tenant: String,
    version: String,
    /// Requests counted before this tenant took the slot (the sketch's overestimate).
    inherited: u64,
    counts: Counts,
}

impl Slot {
    fn rank(&self) -> u64 {
        self.inherited + self.counts.requests
    }
}

/// FNV-1a over tenant, a separator and version: cheap for short keys, the same on every
/// replica; a collision would only merge two tenants' counts in one minute's sketch.
fn key_hash(tenant: &str, version: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant.bytes().chain([0xff]).chain(version.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Sketch {
    pub fn record(&mut self, tenant: &str, version: &str, status: u16, latency: Duration) {
        let hash = key_hash(tenant, version);
        if let Some(s) = self.slots.iter_mut().find(|s| s.hash == hash) {
            s.counts.record(status, latency);
            return;
        }
        if self.slots.len() < HEAVY_TRACKED {
            let mut counts = Counts::default();
            counts.record(status, latency);
            self.slots.push(Slot {
                hash,
                tenant: tenant.to_string(),
                version: version.to_string(),
                inherited: 0,
                counts,
            });
            return;
        }
        let min = self
            .slots
            .iter_mut()
            .min_by_key(|s| s.rank())
            .expect("the sketch is full");
        min.inherited = min.rank();
        min.hash = hash;
        min.tenant.clear();
        min.tenant.push_str(tenant);
        min.version.clear();
        min.version.push_str(version);
        // Reuse the slot's histogram (no allocation once the sketch is full).
        min.counts.requests = 0;
        min.counts.errors = 0;
        min.counts.latency.clear();
        min.counts.record(status, latency);
    }

    /// The [`HEAVY_WRITTEN`] busiest tracked tenants, busiest first.
    pub fn heaviest(&self) -> Vec<Heavy> {
        let mut slots: Vec<&Slot> = self.slots.iter().collect();
        slots.sort_by(|a, b| b.rank().cmp(&a.rank()).then(a.tenant.cmp(&b.tenant)));
        slots
            .into_iter()
            .take(HEAVY_WRITTEN)
            .map(|s| Heavy {
                tenant: s.tenant.clone(),
                version: s.version.clone(),
                counts: s.counts.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_store_as_one_short_array_and_read_back() {
        let mut c = Counts::default();
        c.record(200, Duration::from_millis(20));
        c.record(503, Duration::from_millis(5));
        c.record(200, Duration::from_millis(40));
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.starts_with("[3,1,"), "{json}");
        assert!(json.len() < 30, "{json}");
        let back: Counts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.latency.iter().sum::<u64>(), 3);
        let b20 = latency_bucket(Duration::from_millis(20));
        assert_eq!(
            c.above(b20),
            1,
            "only the 40 ms request is above 20 ms's bucket"
        );
        assert!(serde_json::from_str::<Counts>("[1,2]").is_err());
    }

    #[test]
    fn counts_add_up_whatever_their_first_bucket() {
        let (mut a, mut b) = (Counts::default(), Counts::default());
        a.record(200, Duration::from_millis(50));
        b.record(500, Duration::from_micros(100));
        b.record(200, Duration::from_secs(2));
        a.add(&b);
        assert_eq!((a.requests, a.errors), (3, 1));
        assert_eq!(a.from, latency_bucket(Duration::from_micros(100)));
        assert_eq!(a.latency.iter().sum::<u64>(), 3);
        assert_eq!(a.above(latency_bucket(Duration::from_millis(50))), 1);
    }

    #[test]
    fn cohorts_are_a_tenth_of_a_percent_of_buckets() {
        assert_eq!(COHORTS, 1_000);
        assert_eq!(cohort_of(0), 0);
        assert_eq!(cohort_of(9), 0);
        assert_eq!(cohort_of(499), 49);
        assert_eq!(cohort_of(9_999), 999);
        assert_eq!(buckets_of(49), (490, 500));
    }

    #[test]
    fn the_sketch_keeps_every_tenant_above_its_share_and_counts_it_exactly() {
        let mut s = Sketch::default();
        let ms = Duration::from_millis(3);
        // A heavy tenant (1 in 4 requests, 1 in 10 of them failing) among 2 000 light ones.
        let mut heavy_errors = 0;
        for i in 0..8_000u32 {
            if i % 4 == 0 {
                let status = if i % 40 == 0 { 500 } else { 200 };
                heavy_errors += u64::from(status == 500);
                s.record("big", "v2", status, ms);
            } else {
                s.record(&format!("t{}", i % 2_000), "v1", 200, ms);
            }
        }
        let top = s.heaviest();
        assert_eq!(top.len(), HEAVY_WRITTEN);
        assert_eq!(top[0].tenant, "big");
        assert_eq!(top[0].version, "v2");
        assert_eq!(
            top[0].counts.requests, 2_000,
            "tracked from its first request"
        );
        assert_eq!(top[0].counts.errors, heavy_errors);
    }

    #[test]
    fn details_add_up_by_cohort_and_by_tenant() {
        let mut c = Counts::default();
        c.record(500, Duration::from_millis(1));
        let one = Detail {
            cohorts: [("v1".to_string(), [(3u16, c.clone())].into())].into(),
            heavy: vec![Heavy {
                tenant: "a".into(),
                version: "v1".into(),
                counts: c.clone(),
            }],
        };
        let mut sum = one.clone();
        sum.add(&one);
        assert_eq!(sum.cohorts["v1"][&3].errors, 2);
        assert_eq!(sum.heavy.len(), 1);
        assert_eq!(sum.heavy[0].counts.requests, 2);
        let json = serde_json::to_string(&sum).unwrap();
        assert_eq!(serde_json::from_str::<Detail>(&json).unwrap(), sum);
        assert_eq!(serde_json::to_string(&Detail::default()).unwrap(), "{}");
    }
}
