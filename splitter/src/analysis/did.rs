//! The tenant-aware comparison behind a verdict: the cohorts that moved to the canary at this
//! step against their own traffic before it, corrected by the change the unmoved cohorts saw in
//! the same minutes (difference-in-differences), with a variance that holds when tenants differ.
//!
//! Units: a **cell** is one cohort's requests in one minute. For a count metric (5xx, requests
//! slower than a threshold) the moved cohorts' excess in minute *t* is
//! `x_t = Σ_moved (hits − requests × (r_k + Δ_t))`, where `r_k` is cohort *k*'s own rate before the
//! step and `Δ_t` the unmoved cohorts' change in minute *t* against their own rates before it.
//! The estimate is `Σ x_t / Σ requests`; its variance sums the squared residuals of every cell
//! (a burst of one tenant, or an incident, widens it instead of looking like evidence), never
//! less than chance alone gives at the tested margin, plus the noise of every `r_k` estimated
//! from the baseline minutes.

use crate::cohort::{buckets_of, Counts, Detail, COHORTS};
use std::collections::BTreeMap;

/// The count metrics a step is judged on.
pub const METRICS: usize = 3;
pub const ERRORS: usize = 0;
pub const SLOW_P95: usize = 1;
pub const SLOW_P99: usize = 2;

/// A cohort's part in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// On stable before the step, on the canary since: what is judged.
    Moved,
    /// On the same version before and since (stable, or canary from an earlier step): the
    /// control for what changed in the same minutes.
    Unmoved,
    /// Split by the share, or on both versions before the step: left out.
    Out,
}

/// What the judge reads from the minutes: roles, baselines and cells.
pub struct Data {
    canary: String,
    stable: String,
    pub roles: Vec<Role>,
    /// The version each cohort is read on since the step.
    version: Vec<Option<bool>>,
    /// Per cohort: the baseline's accumulators per metric.
    pre: Vec<Pre>,
    /// Each post-step minute's cells: (minute index, cohort, requests, hits per metric).
    cells: Vec<Cell>,
    pub post_minutes: usize,
    /// Where a request is slow: stable's p95 and p99 before the step.
    pub slow_after: [Option<Threshold>; 2],
    /// Totals: moved before (on stable) and since (on the canary), unmoved before and since.
    pub moved_before: Counts,
    pub moved_after: Counts,
    pub unmoved_before: Counts,
    pub unmoved_after: Counts,
    /// Moved cohorts with no request before the step: their requests since.
    pub unbaselined_requests: u64,
    /// Requests per minute: (moved, unmoved) before the step and since (minute index order).
    pub volume_before: Vec<(f64, f64)>,
    pub volume_after: Vec<(f64, f64)>,
}

#[derive(Clone, Default)]
struct Pre {
    n: f64,
    nn: f64,
    x: [f64; METRICS],
    xx: [f64; METRICS],
    xn: [f64; METRICS],
}

impl Pre {
    fn rate(&self, m: usize) -> f64 {
        if self.n > 0.0 {
            self.x[m] / self.n
        } else {
            0.0
        }
    }

    /// The variance of [`Pre::rate`]: from the minutes' residuals, never below chance's.
    fn rate_variance(&self, m: usize) -> f64 {
        if self.n <= 0.0 {
            return 0.0;
        }
        let r = self.rate(m);
        let residual = self.xx[m] - 2.0 * r * self.xn[m] + r * r * self.nn;
        let floor_rate = r.max(0.5 / self.n).min(1.0);
        residual.max(self.n * floor_rate * (1.0 - floor_rate)) / (self.n * self.n)
    }
}

#[derive(Clone, Copy)]
struct Cell {
    minute: usize,
    cohort: usize,
    n: f64,
    x: [f64; METRICS],
}

fn hits(c: &Counts, slow_after: &[Option<Threshold>; 2]) -> [f64; METRICS] {
    let slow = |t: Option<Threshold>| t.map_or(0.0, |t| t.slow(c));
    [c.errors as f64, slow(slow_after[0]), slow(slow_after[1])]
}

/// A latency quantile on the histogram: the bucket it falls in and the part of that bucket's
/// requests above it (requests are taken as spread evenly within a bucket, as
/// [`crate::traffic::VersionTraffic::quantile`] does). So exactly 5 % of stable's requests are
/// "slower than its p95", not the 2–5 % above the bucket's edge, and a slower canary shows as
/// soon as its requests cross the quantile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub bucket: usize,
    pub part_above: f64,
}

impl Threshold {
    /// The requests of `c` slower than the threshold (fractional within its bucket).
    pub fn slow(&self, c: &Counts) -> f64 {
        let within = self
            .bucket
            .checked_sub(c.from)
            .and_then(|i| c.latency.get(i))
            .map_or(0, |&n| n);
        c.above(self.bucket) as f64 + self.part_above * within as f64
    }
}

/// The minutes of a step, read: `pre` and `post` are the baseline's and the step's minutes
/// (`post` starts with the minute the share changed in); `share` in basis points.
pub fn read(
    detail: &BTreeMap<i64, Detail>,
    pre: std::ops::RangeInclusive<i64>,
    post: std::ops::RangeInclusive<i64>,
    canary: &str,
    stable: &str,
    share: u16,
) -> Data {
    let n = usize::from(COHORTS);
    let keys = |d: &'_ Detail, v: &str| -> Vec<u16> {
        d.cohorts
            .get(v)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    };
    // Which versions served each cohort before the step, and stable's latency then (the
    // minute of the change included: stable is stable).
    let mut seen = vec![(false, false); n];
    let mut stable_latency = Counts::default();
    for d in within(detail, pre.clone()) {
        for c in keys(d, stable) {
            seen[usize::from(c)].0 = true;
        }
        for c in keys(d, canary) {
            seen[usize::from(c)].1 = true;
        }
    }
    let boundary = *pre.end() + 1;
    for d in within(detail, *pre.start()..=boundary) {
        for counts in d.cohorts.get(stable).into_iter().flat_map(|m| m.values()) {
            stable_latency.add(counts);
        }
    }
    let slow_after = [0.95, 0.99].map(|q| quantile_bucket(&stable_latency, q));
    let mut roles = vec![Role::Out; n];
    let mut version = vec![None; n];
    for k in 0..n {
        let (first, end) = buckets_of(k as u16);
        let (inside, outside) = (end <= share, first >= share);
        // A cohort on the canary in the baseline's minutes (an earlier step moved it, perhaps
        // within them) is a control: its baseline is its canary requests then.
        (roles[k], version[k]) = match seen[k] {
            (_, true) if inside => (Role::Unmoved, Some(true)),
            (_, false) if inside => (Role::Moved, Some(true)),
            (true, false) if outside => (Role::Unmoved, Some(false)),
            _ => (Role::Out, None),
        };
    }
    let mut data = Data {
        canary: canary.to_string(),
        stable: stable.to_string(),
        roles,
        version,
        pre: vec![Pre::default(); n],
        cells: Vec::new(),
        post_minutes: 0,
        slow_after,
        moved_before: Counts::default(),
        moved_after: Counts::default(),
        unmoved_before: Counts::default(),
        unmoved_after: Counts::default(),
        unbaselined_requests: 0,
        volume_before: Vec::new(),
        volume_after: Vec::new(),
    };
    for d in within(detail, pre) {
        let volume = data.baseline_minute(d, canary, stable, false);
        data.volume_before.push(volume);
    }
    // In the minute the share changed in, the moved cohorts' stable requests came before the
    // move: they are baseline too (not for the request share: the minute is split).
    if let Some(d) = detail.get(post.start()) {
        data.baseline_minute(d, canary, stable, true);
    }
    for d in within(detail, post) {
        data.push(d);
    }
    data
}

impl Data {
    /// Adds the step's next minute (in order; the first is the minute the share changed in,
    /// already part of the baseline).
    pub fn push(&mut self, d: &Detail) {
        let i = self.post_minutes;
        self.post_minutes = i + 1;
        let mut volume = (0.0, 0.0);
        // Each cohort is read on the version it has since the step.
        let (canary, stable) = (self.canary.clone(), self.stable.clone());
        for (k, c) in self.read_on(d, &canary, &stable, |on_canary| on_canary) {
            let moved = self.roles[k] == Role::Moved;
            if moved {
                self.moved_after.add(c);
                volume.0 += c.requests as f64;
            } else {
                self.unmoved_after.add(c);
                volume.1 += c.requests as f64;
            }
            if self.pre[k].n <= 0.0 {
                if moved {
                    self.unbaselined_requests += c.requests;
                }
                continue;
            }
            self.cells.push(Cell {
                minute: i,
                cohort: k,
                n: c.requests as f64,
                x: hits(c, &self.slow_after),
            });
        }
        self.volume_after.push(volume);
    }
}

impl Data {
    /// The cohorts of `d` with a role, each with its counts on the version `on(its version
    /// since the step)` says (true: the canary); only the cohorts present are visited.
    fn read_on<'d>(
        &self,
        d: &'d Detail,
        canary: &str,
        stable: &str,
        on: impl Fn(bool) -> bool,
    ) -> Vec<(usize, &'d Counts)> {
        self.read_on_at(d, canary, stable, |_, v| on(v))
    }

    fn read_on_at<'d>(
        &self,
        d: &'d Detail,
        canary: &str,
        stable: &str,
        on: impl Fn(usize, bool) -> bool,
    ) -> Vec<(usize, &'d Counts)> {
        let mut out = Vec::new();
        for (version, is_canary) in [(stable, false), (canary, true)] {
            for (&k, c) in d.cohorts.get(version).into_iter().flatten() {
                let k = usize::from(k);
                if let Some(Some(since)) = self.version.get(k) {
                    if on(k, *since) == is_canary {
                        out.push((k, c));
                    }
                }
            }
        }
        out
    }

    /// Adds one baseline minute (`moved_only`: only the moved cohorts' stable requests) and
    /// returns its requests (moved, unmoved).
    fn baseline_minute(
        &mut self,
        d: &Detail,
        canary: &str,
        stable: &str,
        moved_only: bool,
    ) -> (f64, f64) {
        let mut volume = (0.0, 0.0);
        // Before the step, moved cohorts were on stable (the rest on the version they have).
        let roles = self.roles.clone();
        let before = |k: usize, on_canary: bool| on_canary && roles[k] != Role::Moved;
        for (k, c) in self.read_on_at(d, canary, stable, before) {
            let moved = self.roles[k] == Role::Moved;
            if moved_only && !moved {
                continue;
            }
            let x = hits(c, &self.slow_after);
            let p = &mut self.pre[k];
            let cn = c.requests as f64;
            p.n += cn;
            p.nn += cn * cn;
            for (m, x) in x.iter().enumerate() {
                p.x[m] += x;
                p.xx[m] += x * x;
                p.xn[m] += x * cn;
            }
            if moved {
                self.moved_before.add(c);
            } else {
                self.unmoved_before.add(c);
            }
        }
        // The request share counts each cohort's tenants whatever version served them (a
        // control cohort moved within the baseline's minutes sent requests to both).
        for (version, _) in [(stable, false), (canary, true)] {
            for (&k, c) in d.cohorts.get(version).into_iter().flatten() {
                match self.roles.get(usize::from(k)) {
                    Some(Role::Moved) => volume.0 += c.requests as f64,
                    Some(Role::Unmoved) => volume.1 += c.requests as f64,
                    _ => {}
                }
            }
        }
        volume
    }
}

/// The minutes of `range` in `detail`, in order; none if the range is empty (a step with no
/// complete minute yet: `first..=first - 1`).
pub fn within(
    detail: &BTreeMap<i64, Detail>,
    range: std::ops::RangeInclusive<i64>,
) -> impl Iterator<Item = &Detail> {
    let range = (range.start() <= range.end()).then_some(range);
    range
        .into_iter()
        .flat_map(move |r| detail.range(r).map(|(_, d)| d))
}

/// The `q` quantile of `c`'s requests as a [`Threshold`].
fn quantile_bucket(c: &Counts, q: f64) -> Option<Threshold> {
    let total: u64 = c.latency.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, &n) in c.latency.iter().enumerate() {
        let n = n as f64;
        if n > 0.0 && seen + n >= rank {
            let below = ((rank - seen) / n).clamp(0.0, 1.0);
            return Some(Threshold {
                bucket: c.from + i,
                part_above: 1.0 - below,
            });
        }
        seen += n;
    }
    None
}

/// One metric's comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The moved cohorts' rate before the step (their own baseline) and since.
    pub before: f64,
    pub after: f64,
    /// The unmoved cohorts' change over the same minutes (each against its own baseline).
    pub control_change: f64,
    /// The moved cohorts' change beyond the control's: what the canary is blamed for.
    pub excess: f64,
    pub se: f64,
    /// Requests the estimate rests on (moved, since the step) and their expected hits at
    /// zero excess.
    pub requests: f64,
    pub hits: f64,
    pub expected: f64,
}

/// The difference-in-differences estimate of metric `m` and its standard error, with the
/// chance floor taken at `margin` (the null being tested).
pub fn estimate(data: &Data, m: usize, margin: f64) -> Option<Estimate> {
    let t = data.post_minutes;
    // Per minute: unmoved (hits, expected, requests), moved (hits, expected, requests).
    let mut minute = vec![[0.0f64; 6]; t];
    for c in &data.cells {
        let r = data.pre[c.cohort].rate(m);
        let slot = &mut minute[c.minute];
        let o = if data.roles[c.cohort] == Role::Moved {
            3
        } else {
            0
        };
        slot[o] += c.x[m];
        slot[o + 1] += c.n * r;
        slot[o + 2] += c.n;
    }
    let delta: Vec<f64> = minute
        .iter()
        .map(|s| {
            if s[2] > 0.0 {
                (s[0] - s[1]) / s[2]
            } else {
                0.0
            }
        })
        .collect();
    let weight: Vec<f64> = minute
        .iter()
        .map(|s| if s[2] > 0.0 { s[5] / s[2] } else { 0.0 })
        .collect();
    let (hits, base, requests) = minute
        .iter()
        .fold((0.0, 0.0, 0.0), |a, s| (a.0 + s[3], a.1 + s[4], a.2 + s[5]));
    if requests <= 0.0 {
        return None;
    }
    let shift: f64 = minute.iter().zip(&delta).map(|(s, d)| s[5] * d).sum();
    let excess = (hits - base - shift) / requests;
    let variance = variance(data, m, &delta, &weight, margin, excess);
    let control_change = shift / requests;
    Some(Estimate {
        before: base / requests,
        after: hits / requests,
        control_change,
        excess,
        se: variance.sqrt() / requests,
        requests,
        hits,
        expected: base + shift,
    })
}

/// Var(Σ x_t) under the null being tested (the moved cohorts `margin` worse than their own
/// rates): chance at those rates, scaled by how much more the moved cells vary around the fitted
/// excess than chance would (quasi-binomial dispersion, never below 1: a burst or an incident
/// widens it); the control cells' residuals (never below chance); and every baseline rate's
/// noise, moved and unmoved. Taking chance at the null's rates, not the fitted ones, is the
/// score test's variance: exact in level at the margin, and it does not shrink the evidence of a
/// large regression by the variance the regression itself adds.
fn variance(data: &Data, m: usize, delta: &[f64], weight: &[f64], margin: f64, fit: f64) -> f64 {
    let n = usize::from(COHORTS);
    let chance = |p: f64| {
        let p = p.clamp(0.0, 1.0);
        p * (1.0 - p)
    };
    let ratio = times(data, m, delta);
    // Residuals around an excess added to every cohort's rate, and around the same factor on
    // every cohort's rate (a canary doubling each tenant's 5xx adds most to the worst tenants:
    // that is the regression's shape, not noise).
    let (mut added, mut at_added, mut scaled, mut at_scaled, mut at_null) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut control, mut control_floor) = (0.0, 0.0);
    let mut moved_requests = vec![0.0f64; n];
    let mut control_weighted = vec![0.0f64; n];
    for c in &data.cells {
        let r = data.pre[c.cohort].rate(m) + delta[c.minute];
        if data.roles[c.cohort] == Role::Moved {
            added += (c.x[m] - c.n * (r + fit)).powi(2);
            at_added += c.n * chance(r + fit);
            let q = r.max(0.0) * ratio;
            scaled += (c.x[m] - c.n * q).powi(2);
            at_scaled += c.n * chance(q);
            at_null += c.n * chance(r + margin);
            moved_requests[c.cohort] += c.n;
        } else {
            let w = weight[c.minute];
            let residual = c.x[m] - c.n * r;
            control += w * w * residual * residual;
            control_floor += w * w * c.n * chance(r);
            control_weighted[c.cohort] += w * c.n;
        }
    }
    let of = |residuals: f64, chance: f64| {
        if chance > 0.0 {
            residuals / chance
        } else {
            f64::INFINITY
        }
    };
    let dispersion = of(added, at_added).min(of(scaled, at_scaled));
    let dispersion = if dispersion.is_finite() {
        dispersion.max(1.0)
    } else {
        1.0
    };
    let baselines: f64 = (0..n)
        .map(|k| {
            let scale = moved_requests[k] + control_weighted[k];
            scale * scale * data.pre[k].rate_variance(m)
        })
        .sum();
    dispersion * at_null + control.max(control_floor) + baselines
}

/// The factor on the moved cohorts' rates (their own, plus the control's change) that their
/// hits since the step show.
fn times(data: &Data, m: usize, delta: &[f64]) -> f64 {
    let (mut hits, mut expected) = (0.0, 0.0);
    for c in data
        .cells
        .iter()
        .filter(|c| data.roles[c.cohort] == Role::Moved)
    {
        hits += c.x[m];
        expected += c.n * (data.pre[c.cohort].rate(m) + delta[c.minute]).max(0.0);
    }
    if expected > 0.0 {
        hits / expected
    } else {
        1.0
    }
}

/// The moved cohorts' request share since the step against before it, relative (−0.05: 5 %
/// fewer requests than their share before predicts), with its standard error (minutes as
/// clusters). The minute the share changed in is left out (the moved cohorts' part of it
/// before the change is on stable). `None` without both groups in both periods.
pub fn share_change(data: &Data) -> Option<(f64, f64)> {
    let sum = |v: &[(f64, f64)]| v.iter().fold((0.0, 0.0), |a, x| (a.0 + x.0, a.1 + x.1));
    let (m0, u0) = sum(&data.volume_before);
    let after = data.volume_after.get(1..)?;
    let (m1, u1) = sum(after);
    if m0 <= 0.0 || u0 <= 0.0 || u1 <= 0.0 || after.is_empty() {
        return None;
    }
    let ratio = m0 / u0;
    let expected = ratio * u1;
    let change = (m1 - expected) / expected;
    let cluster =
        |v: &[(f64, f64)], fit: f64| -> f64 { v.iter().map(|(m, u)| (m - fit * u).powi(2)).sum() };
    // Chance alone: Poisson counts on both sides.
    let after_var = cluster(after, ratio * (1.0 + change)).max(m1 + ratio * ratio * u1);
    let before_var = cluster(&data.volume_before, ratio).max(m0 + ratio * ratio * u0) / (u0 * u0);
    let variance = after_var + u1 * u1 * before_var;
    Some((change, variance.sqrt() / expected))
}
