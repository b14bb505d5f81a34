//! Previewing a share change in **requests**, not tenants: how much of a policy's recorded
//! traffic the canary would get at a proposed share, and which of the busiest customers move.
//! Read from the traffic by cohort and the heaviest tenants ([`crate::cohort`]); pure (no I/O,
//! no clock), so the page, a test or a port compute the same thing.
//!
//! **The estimate.** A cohort's requests belong to its tenants whatever version served them,
//! so both (all) versions count. At share `s` (in buckets), the canary gets every cohort wholly
//! below `s`; the cohort that `s` splits is placed tenant by tenant where its heavy tenants are
//! known (their buckets are exact) and pro-rated by buckets for the rest. Pinned tenants carry no
//! cohort: those among the heavy tenants count where their pin sends them (pins as the config
//! has them now); other pinned tenants, and requests without a tenant, are not in the figures.
//!
//! **The range** is how much a minute varies, not a confidence interval of the mean: the 10th
//! to the 90th percentile of the per-minute fractions (interpolated between ranks), widened to
//! include the pooled figure. It is what an operator sees minute to minute once the share is
//! applied — a heavy tenant's burst shows up in it, which the sum hides. With a few minutes it
//! approaches their minimum and maximum; with one it is that minute.
//!
//! **Heavy tenants** are counted only in the minutes in which a replica listed them among its
//! busiest, so their requests are a lower bound.

use crate::cohort::{buckets_of, cohort_of, Detail};
use crate::config::PolicyConfig;
use crate::share::BasisPoints;
use crate::simulate::{SimulatedTenant, Simulator};
use std::collections::BTreeMap;

/// Complete minutes the dashboard's preview reads (the last hour).
pub const PREVIEW_MINUTES: i64 = 60;
/// Moving tenants listed, heaviest first.
pub const MOVERS_LISTED: usize = 8;
/// The range's percentiles of the per-minute fractions.
pub const RANGE_PERCENTILES: (f64, f64) = (0.10, 0.90);

/// A fraction of requests in `0.0..=1.0`, and the range it moves in from minute to minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestShare {
    /// All minutes pooled: canary requests over all requests.
    pub fraction: f64,
    pub low: f64,
    pub high: f64,
}

/// A heavy tenant whose version changes at the proposed share.
#[derive(Debug, Clone, PartialEq)]
pub struct Mover {
    pub tenant: String,
    /// Stable now, canary at the proposed share (else the reverse).
    pub to_canary: bool,
    /// Its requests in the window (at least: see the module's note on heavy tenants).
    pub requests: u64,
    pub per_minute: f64,
    /// Its share of all requests counted.
    pub fraction: f64,
}

/// What a proposed share means in requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPreview {
    pub proposed: BasisPoints,
    /// The canary's share of requests at the proposed share.
    pub canary: RequestShare,
    /// The same estimate at today's share (how the method reads the present).
    pub now: f64,
    /// Canary requests per minute at the proposed share (per minute with traffic).
    pub canary_per_minute: f64,
    /// Minutes with traffic the estimate rests on, and their requests.
    pub minutes: usize,
    pub requests: u64,
    /// Of those, requests of pinned heavy tenants (counted where their pin sends them).
    pub pinned_requests: u64,
    /// Pinned tenants never seen among the heavy ones: their requests are left out.
    pub pinned_left_out: usize,
    /// Heavy tenants that move, heaviest first, at most [`MOVERS_LISTED`].
    pub movers: Vec<Mover>,
    /// Heavy tenants that move beyond those listed.
    pub more_movers: usize,
}

/// A heavy tenant's assignment, computed once.
struct Known {
    row: SimulatedTenant<()>,
    pinned: bool,
    requests: u64,
}

/// Requests of one minute: all of them, and the canary's at today's and the proposed share.
#[derive(Default)]
struct MinuteSplit {
    total: u64,
    now: f64,
    proposed: f64,
}

/// The request preview of `proposed` for `config`, from `details` (minute → that minute's
/// detail, replicas summed, as `TrafficCache::detail` gives them). `None`: no
/// recorded traffic with tenants.
pub fn preview(
    details: &BTreeMap<i64, Detail>,
    config: &PolicyConfig,
    proposed: BasisPoints,
) -> Option<RequestPreview> {
    let sim = Simulator::new(config, proposed);
    let mut known: BTreeMap<&str, Known> = BTreeMap::new();
    for h in details.values().flat_map(|d| &d.heavy) {
        let k = known.entry(h.tenant.as_str()).or_insert_with(|| {
            let r = sim.tenant(h.tenant.as_str());
            Known {
                row: SimulatedTenant {
                    tenant: (),
                    bucket: r.bucket,
                    canary_now: r.canary_now,
                    canary_proposed: r.canary_proposed,
                },
                pinned: config.overrides.contains_key(h.tenant.as_str()),
                requests: 0,
            }
        });
        k.requests += h.counts.requests;
    }
    let shares = (
        config.effective_share().get(),
        sim.proposed_config().effective_share().get(),
    );
    let splits: Vec<MinuteSplit> = details
        .values()
        .map(|d| split_minute(d, &known, shares))
        .filter(|m| m.total > 0)
        .collect();
    let requests: u64 = splits.iter().map(|m| m.total).sum();
    if requests == 0 {
        return None;
    }
    let total = requests as f64;
    let canary: f64 = splits.iter().map(|m| m.proposed).sum();
    let minutes = splits.len();
    let per_minute: Vec<f64> = splits.iter().map(|m| m.proposed / m.total as f64).collect();
    let fraction = canary / total;
    let (lo, hi) = RANGE_PERCENTILES;
    let mut movers: Vec<Mover> = known
        .iter()
        .filter(|(_, k)| k.row.moves())
        .map(|(t, k)| Mover {
            tenant: t.to_string(),
            to_canary: k.row.canary_proposed,
            requests: k.requests,
            per_minute: k.requests as f64 / minutes as f64,
            fraction: k.requests as f64 / total,
        })
        .collect();
    movers.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.tenant.cmp(&b.tenant)));
    let more_movers = movers.len().saturating_sub(MOVERS_LISTED);
    movers.truncate(MOVERS_LISTED);
    Some(RequestPreview {
        proposed,
        canary: RequestShare {
            fraction,
            low: percentile(&per_minute, lo).min(fraction),
            high: percentile(&per_minute, hi).max(fraction),
        },
        now: splits.iter().map(|m| m.now).sum::<f64>() / total,
        canary_per_minute: canary / minutes as f64,
        minutes,
        requests,
        pinned_requests: details
            .values()
            .flat_map(|d| &d.heavy)
            .filter(|h| known[h.tenant.as_str()].pinned)
            .map(|h| h.counts.requests)
            .sum(),
        pinned_left_out: config
            .overrides
            .keys()
            .filter(|t| !known.contains_key(t.as_str()))
            .count(),
        movers,
        more_movers,
    })
}

/// One minute's requests and the canary's part of them at `(now, proposed)` shares (in buckets).
fn split_minute(
    d: &Detail,
    known: &BTreeMap<&str, Known>,
    (now, proposed): (u16, u16),
) -> MinuteSplit {
    let mut by_cohort: BTreeMap<u16, u64> = BTreeMap::new();
    for cohorts in d.cohorts.values() {
        for (c, n) in cohorts {
            *by_cohort.entry(*c).or_default() += n.requests;
        }
    }
    let mut m = MinuteSplit {
        total: by_cohort.values().sum(),
        ..MinuteSplit::default()
    };
    for h in &d.heavy {
        let k = &known[h.tenant.as_str()];
        if k.pinned {
            m.total += h.counts.requests;
            // A pin does not follow the share: where it sends the tenant now, it sends it then.
            if k.row.canary_now {
                m.now += h.counts.requests as f64;
                m.proposed += h.counts.requests as f64;
            }
        }
    }
    m.now += canary_part(d, &by_cohort, known, now);
    m.proposed += canary_part(d, &by_cohort, known, proposed);
    m
}

/// The requests of cohort-recorded tenants with a bucket below `share`.
fn canary_part(
    d: &Detail,
    by_cohort: &BTreeMap<u16, u64>,
    known: &BTreeMap<&str, Known>,
    share: u16,
) -> f64 {
    let split = cohort_of(share);
    let whole: u64 = by_cohort.range(..split).map(|(_, n)| n).sum();
    let (first, end) = buckets_of(split);
    let Some(&in_split) = by_cohort.get(&split).filter(|_| share > first) else {
        return whole as f64;
    };
    // The split cohort: its heavy tenants on the side their bucket puts them, the rest of its
    // requests spread evenly over its buckets.
    let (mut below, mut heavy) = (0u64, 0u64);
    for h in &d.heavy {
        let k = &known[h.tenant.as_str()];
        let b = k.row.bucket.get();
        if !k.pinned && (first..end).contains(&b) {
            heavy += h.counts.requests;
            below += if b < share { h.counts.requests } else { 0 };
        }
    }
    let rest = in_split.saturating_sub(heavy) as f64;
    let prorated = f64::from(share - first) / f64::from(end - first);
    whole as f64 + below.min(in_split) as f64 + rest * prorated
}

/// The `p` quantile of `values` (not empty), interpolated between the closest ranks.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = p * (v.len() - 1) as f64;
    let (i, t) = (at.floor() as usize, at.fract());
    match v.get(i + 1) {
        Some(next) => v[i] + (next - v[i]) * t,
        None => v[i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::bucket;
    use crate::cohort::{Counts, Heavy};
    use crate::config::Pin;
    use crate::names::{Actor, PolicyName, TenantId, Version};

    fn config(bp: u16) -> PolicyConfig {
        PolicyConfig::new(
            PolicyName::new("payment-api").unwrap(),
            Version::new("v1").unwrap(),
            Some(Version::new("v2").unwrap()),
            BasisPoints::new(bp.into()).unwrap(),
            Actor::new("t").unwrap(),
            jiff::Timestamp::UNIX_EPOCH,
        )
    }

    fn bp(n: u16) -> BasisPoints {
        BasisPoints::new(n.into()).unwrap()
    }

    fn counts(requests: u64) -> Counts {
        Counts {
            requests,
            ..Counts::default()
        }
    }

    /// A minute with `requests` per (version, cohort), and heavy tenants (tenant, version, n).
    fn minute(cohorts: &[(&str, u16, u64)], heavy: &[(&str, &str, u64)]) -> Detail {
        let mut d = Detail::default();
        for (v, c, n) in cohorts {
            d.cohorts
                .entry(v.to_string())
                .or_default()
                .insert(*c, counts(*n));
        }
        d.heavy = heavy
            .iter()
            .map(|(t, v, n)| Heavy {
                tenant: t.to_string(),
                version: v.to_string(),
                counts: counts(*n),
            })
            .collect();
        d
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// A tenant whose bucket (under `config(…)`'s salt) is in `range`, and that bucket.
    fn tenant_in(range: std::ops::Range<u16>) -> (String, u16) {
        tenant_where(|b| range.contains(&b))
    }

    fn tenant_where(wanted: impl Fn(u16) -> bool) -> (String, u16) {
        (0..)
            .map(|i| format!("tenant-{i}"))
            .map(|t| (bucket("payment-api", &t).get(), t))
            .find(|(b, _)| wanted(*b))
            .map(|(b, t)| (t, b))
            .unwrap()
    }

    #[test]
    fn no_recorded_traffic_is_no_preview() {
        assert_eq!(preview(&BTreeMap::new(), &config(500), bp(1000)), None);
        let empty = [(1, Detail::default()), (2, minute(&[("v1", 3, 0)], &[]))].into();
        assert_eq!(preview(&empty, &config(500), bp(1000)), None);
    }

    #[test]
    fn whole_cohorts_below_the_share_count_on_either_version() {
        // Cohorts 0–4 (buckets 0–49): 100 requests each, on canary or stable; cohort 500: 500.
        let mut cohorts: Vec<(&str, u16, u64)> = (0..5).map(|c| ("v2", c, 60)).collect();
        cohorts.extend((0..5).map(|c| ("v1", c, 40)));
        cohorts.push(("v1", 500, 500));
        let details = [(10, minute(&cohorts, &[]))].into();
        let p = preview(&details, &config(0), bp(50)).unwrap();
        assert_eq!((p.requests, p.minutes), (1_000, 1));
        assert!(close(p.canary.fraction, 0.5), "{p:?}");
        assert!(close(p.now, 0.0));
        assert!(close(p.canary_per_minute, 500.0));
        assert_eq!(
            (p.canary.low, p.canary.high),
            (p.canary.fraction, p.canary.fraction)
        );
        let all = preview(&details, &config(0), BasisPoints::FULL).unwrap();
        assert!(close(all.canary.fraction, 1.0));
    }

    #[test]
    fn the_straddling_cohort_is_pro_rated_by_buckets() {
        // Cohort 5 is buckets 50–59: a share of 53 bp takes 3 of its 10 buckets.
        let details = [(
            1,
            minute(&[("v1", 4, 100), ("v1", 5, 100), ("v1", 9, 800)], &[]),
        )]
        .into();
        let p = preview(&details, &config(0), bp(53)).unwrap();
        assert!(close(p.canary.fraction, (100.0 + 30.0) / 1_000.0), "{p:?}");
        // On the cohort's first bucket, none of it.
        let p = preview(&details, &config(0), bp(50)).unwrap();
        assert!(close(p.canary.fraction, 0.1));
    }

    #[test]
    fn a_heavy_tenant_in_the_straddling_cohort_is_placed_by_its_bucket() {
        // Inside its cohort, not on an edge: a share of `b` or `b + 1` splits the cohort.
        let (big, b) = tenant_where(|b| b >= 20 && (2..9).contains(&(b % 10)));
        let c = cohort_of(b);
        let (first, _) = buckets_of(c);
        // Its cohort has 100 requests, 90 of them the heavy tenant's.
        let details = [(
            1,
            minute(&[("v1", c, 100), ("v1", 0, 100)], &[(&big, "v1", 90)]),
        )]
        .into();
        // A share just above its bucket takes all of it; the other 10 requests are pro-rated.
        let p = preview(&details, &config(0), bp(b + 1)).unwrap();
        let rest = 10.0 * f64::from(b + 1 - first) / 10.0;
        assert!(
            close(p.canary.fraction, (100.0 + 90.0 + rest) / 200.0),
            "{p:?}"
        );
        // A share on its bucket leaves it out.
        let p = preview(&details, &config(0), bp(b)).unwrap();
        let rest = 10.0 * f64::from(b - first) / 10.0;
        assert!(close(p.canary.fraction, (100.0 + rest) / 200.0), "{p:?}");
    }

    #[test]
    fn a_heavy_tenant_that_moves_is_listed_with_its_traffic() {
        let (big, b) = tenant_in(1_000..9_000);
        let light = tenant_in(9_500..10_000).0;
        let c = cohort_of(b);
        let heavy = [(big.as_str(), "v1", 300), (light.as_str(), "v1", 50)];
        let details: BTreeMap<i64, Detail> = (0..3)
            .map(|m| {
                (
                    m,
                    minute(&[("v1", c, 300), ("v1", 999, 100), ("v2", 0, 100)], &heavy),
                )
            })
            .collect();
        let p = preview(&details, &config(10), bp(b + 1)).unwrap();
        assert_eq!((p.minutes, p.requests), (3, 1_500));
        assert_eq!(p.movers.len(), 1, "{p:?}");
        let m = &p.movers[0];
        assert_eq!(m.tenant, big);
        assert!(m.to_canary);
        assert_eq!(m.requests, 900);
        assert!(close(m.per_minute, 300.0));
        assert!(close(m.fraction, 0.6));
        // Back down to today's share: it moves the other way.
        let down = preview(&details, &config(b + 1), bp(10)).unwrap();
        assert_eq!(down.movers[0].tenant, big);
        assert!(!down.movers[0].to_canary);
    }

    #[test]
    fn a_pinned_tenant_counts_where_its_pin_sends_it_and_never_moves() {
        let (pinned, b) = tenant_in(0..5_000);
        let mut config = config(0);
        config
            .overrides
            .insert(TenantId::new(&pinned).unwrap(), Pin::Stable);
        config
            .overrides
            .insert(TenantId::new("quiet-one").unwrap(), Pin::Canary);
        // Pinned: no cohort of its own; 400 requests on stable. Cohort 999: 600 requests.
        let details = [(1, minute(&[("v1", 999, 600)], &[(&pinned, "v1", 400)]))].into();
        let p = preview(
            &details,
            &config,
            BasisPoints::new(u32::from(b) + 1).unwrap(),
        )
        .unwrap();
        assert!(
            p.movers.is_empty(),
            "a pin does not follow the share: {p:?}"
        );
        assert_eq!(
            (p.requests, p.pinned_requests, p.pinned_left_out),
            (1_000, 400, 1)
        );
        assert!(close(p.canary.fraction, 0.0));
        // Pinned to canary: its requests are the canary's at any share.
        config
            .overrides
            .insert(TenantId::new(&pinned).unwrap(), Pin::Canary);
        let p = preview(&details, &config, bp(0)).unwrap();
        assert!(close(p.canary.fraction, 0.4));
        assert!(close(p.now, 0.4));
    }

    #[test]
    fn the_range_spans_the_middle_minutes_and_the_pooled_figure() {
        // Ten minutes: the canary's cohort has 10, 20 … 100 of 100 requests.
        let details: BTreeMap<i64, Detail> = (1..=10u64)
            .map(|i| {
                (
                    i as i64,
                    minute(&[("v2", 0, i * 10), ("v1", 999, 100 - i * 10)], &[]),
                )
            })
            .collect();
        let p = preview(&details, &config(10), bp(10)).unwrap();
        assert!(close(p.canary.fraction, 0.55));
        assert!(close(p.now, 0.55));
        // The 10th percentile of 0.1 … 1.0 by rank interpolation: 0.1 + 0.9 × 0.1.
        assert!(close(p.canary.low, 0.19), "{p:?}");
        assert!(close(p.canary.high, 0.91), "{p:?}");
    }

    #[test]
    fn without_a_canary_version_nothing_goes_to_canary() {
        let mut config = config(5_000);
        config.canary_version = None;
        let details = [(1, minute(&[("v1", 0, 100), ("v1", 900, 100)], &[]))].into();
        let p = preview(&details, &config, BasisPoints::FULL).unwrap();
        assert!(close(p.canary.fraction, 0.0));
        assert!(p.movers.is_empty());
    }
}
