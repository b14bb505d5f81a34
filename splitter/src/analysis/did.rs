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
    /// Each step minute's sums per metric.
    sums: Vec<[Sums; METRICS]>,
    /// Per cohort and metric: the weight of its baseline rate in the estimate's numerator
    /// (its moved requests since the step, or its control requests × the minutes' weights).
    weights: Vec<[f64; METRICS]>,
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
    /// Per cohort: requests in the baseline's minutes (either version) and since the step's
    /// first minute (which is split between the versions).
    pre_volume: Vec<f64>,
    after_volume: Vec<f64>,
    /// Per cohort: baseline minutes (and versions) with requests from it.
    pre_active: Vec<u32>,
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

/// One step minute's sums for one metric, from which the estimate and its variance follow for
/// any fitted excess (the cohorts' baseline rates `r` and the minute's control change `δ` are
/// fixed once the minute is read). Moved cells: hits `x`, requests `n`, `q = r + δ`, `q⁺ =
/// max(q, 0)`.
#[derive(Clone, Copy, Default)]
struct Sums {
    /// Σx, Σn, Σ n r, Σ n δ.
    x: f64,
    n: f64,
    base: f64,
    shift: f64,
    /// Σ(x − n q)², Σ(x − n q) n, Σn²: the residuals around an added excess.
    a2: f64,
    an: f64,
    n2: f64,
    /// Σ n q, Σ n q²: chance at q + f.
    q1: f64,
    q2: f64,
    /// Σx², Σ x n q⁺, Σ n² q⁺², Σ n q⁺, Σ n q⁺²: the residuals around a factor on q⁺.
    x2: f64,
    xqp: f64,
    nqp2: f64,
    qp1: f64,
    qp2: f64,
    /// Control cells: Σ w² (x − n q)² and Σ w² n q (1 − q), `w` the minute's weight.
    control: f64,
    control_floor: f64,
}

impl Sums {
    fn plus(mut self, o: &Sums) -> Sums {
        self.x += o.x;
        self.n += o.n;
        self.base += o.base;
        self.shift += o.shift;
        self.a2 += o.a2;
        self.an += o.an;
        self.n2 += o.n2;
        self.q1 += o.q1;
        self.q2 += o.q2;
        self.x2 += o.x2;
        self.xqp += o.xqp;
        self.nqp2 += o.nqp2;
        self.qp1 += o.qp1;
        self.qp2 += o.qp2;
        self.control += o.control;
        self.control_floor += o.control_floor;
        self
    }
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
        sums: Vec::new(),
        weights: vec![[0.0; METRICS]; n],
        post_minutes: 0,
        slow_after,
        moved_before: Counts::default(),
        moved_after: Counts::default(),
        unmoved_before: Counts::default(),
        unmoved_after: Counts::default(),
        unbaselined_requests: 0,
        volume_before: Vec::new(),
        pre_volume: vec![0.0; n],
        after_volume: vec![0.0; n],
        pre_active: vec![0; n],
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
        self.post_minutes += 1;
        let mut volume = (0.0, 0.0);
        // Each cohort is read on the version it has since the step.
        let (canary, stable) = (self.canary.clone(), self.stable.clone());
        let mut cells: Vec<(usize, f64, [f64; METRICS])> = Vec::new();
        for (k, c) in self.read_on(d, &canary, &stable, |on_canary| on_canary) {
            let moved = self.roles[k] == Role::Moved;
            if self.post_minutes > 1 {
                self.after_volume[k] += c.requests as f64;
            }
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
            cells.push((k, c.requests as f64, hits(c, &self.slow_after)));
        }
        self.volume_after.push(volume);
        let sums = std::array::from_fn(|m| self.minute_sums(&cells, m));
        self.sums.push(sums);
    }

    /// One minute's [`Sums`] for metric `m` (and the cohorts' baseline weights).
    fn minute_sums(&mut self, cells: &[(usize, f64, [f64; METRICS])], m: usize) -> Sums {
        // The control's change this minute, and the minute's weight (moved / control requests).
        let (mut hits, mut expected, mut control_n, mut moved_n) = (0.0, 0.0, 0.0, 0.0);
        for &(k, n, x) in cells {
            if self.roles[k] == Role::Moved {
                moved_n += n;
            } else {
                hits += x[m];
                expected += n * self.pre[k].rate(m);
                control_n += n;
            }
        }
        let (delta, w) = if control_n > 0.0 {
            ((hits - expected) / control_n, moved_n / control_n)
        } else {
            (0.0, 0.0)
        };
        let mut s = Sums::default();
        for &(k, n, x) in cells {
            let (r, x) = (self.pre[k].rate(m), x[m]);
            let q = r + delta;
            if self.roles[k] == Role::Moved {
                let qp = q.max(0.0);
                let a = x - n * q;
                s.x += x;
                s.n += n;
                s.base += n * r;
                s.shift += n * delta;
                s.a2 += a * a;
                s.an += a * n;
                s.n2 += n * n;
                s.q1 += n * q;
                s.q2 += n * q * q;
                s.x2 += x * x;
                s.xqp += x * n * qp;
                s.nqp2 += n * n * qp * qp;
                s.qp1 += n * qp;
                s.qp2 += n * qp * qp;
                self.weights[k][m] += n;
            } else {
                let p = q.clamp(0.0, 1.0);
                s.control += w * w * (x - n * q).powi(2);
                s.control_floor += w * w * n * p * (1.0 - p);
                self.weights[k][m] += w * n;
            }
        }
        s
    }

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
                let k = usize::from(k);
                match self.roles.get(k) {
                    Some(Role::Moved) => volume.0 += c.requests as f64,
                    Some(Role::Unmoved) => volume.1 += c.requests as f64,
                    _ => continue,
                }
                if !moved_only {
                    self.pre_volume[k] += c.requests as f64;
                    self.pre_active[k] += 1;
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

/// The difference-in-differences estimate of metric `m` and its standard error under the null
/// being tested (`margin`), from the minutes' sums ([`Sums`]).
pub fn estimate(data: &Data, m: usize, margin: f64) -> Option<Estimate> {
    let t = data.sums.iter().fold(Sums::default(), |a, s| a.plus(&s[m]));
    if t.n <= 0.0 {
        return None;
    }
    let excess = (t.x - t.base - t.shift) / t.n;
    let variance = variance(data, m, &t, margin, excess);
    Some(Estimate {
        before: t.base / t.n,
        after: t.x / t.n,
        control_change: t.shift / t.n,
        excess,
        se: variance.sqrt() / t.n,
        requests: t.n,
        hits: t.x,
        expected: t.base + t.shift,
    })
}

/// Var(Σ x_t) under the null being tested (the moved cohorts `margin` worse than their own
/// rates): chance at those rates, scaled by how much more the moved cells vary around the fitted
/// excess than chance would (quasi-binomial dispersion, never below 1: a burst or an incident
/// widens it); the control cells' residuals (never below chance); and every baseline rate's
/// noise, moved and unmoved. Taking chance at the null's rates, not the fitted ones, is the
/// score test's variance: exact in level at the margin, and it does not shrink the evidence of a
/// large regression by the variance the regression itself adds. The moved cells' residuals are
/// taken around an excess added to every cohort's rate and around the same factor on every
/// cohort's rate, whichever fits better (a canary doubling each tenant's 5xx adds most to the
/// worst tenants: that is the regression's shape, not noise).
fn variance(data: &Data, m: usize, t: &Sums, margin: f64, fit: f64) -> f64 {
    // Chance of a cell at q + f, summed: Σ n (q + f)(1 − q − f).
    let chance = |f: f64| (t.q1 + f * t.n - (t.q2 + 2.0 * f * t.q1 + f * f * t.n)).max(0.0);
    let added = t.a2 - 2.0 * fit * t.an + fit * fit * t.n2;
    let ratio = if t.qp1 > 0.0 { t.x / t.qp1 } else { 1.0 };
    let scaled = t.x2 - 2.0 * ratio * t.xqp + ratio * ratio * t.nqp2;
    let at_scaled = (ratio * t.qp1 - ratio * ratio * t.qp2).max(0.0);
    let of = |residuals: f64, chance: f64| {
        if chance > 0.0 {
            residuals.max(0.0) / chance
        } else {
            f64::INFINITY
        }
    };
    let dispersion = of(added, chance(fit)).min(of(scaled, at_scaled));
    let dispersion = if dispersion.is_finite() {
        dispersion.max(1.0)
    } else {
        1.0
    };
    let baselines: f64 = data
        .weights
        .iter()
        .zip(&data.pre)
        .map(|(w, p)| w[m] * w[m] * p.rate_variance(m))
        .sum();
    dispersion * chance(margin) + t.control.max(t.control_floor) + baselines
}

/// Expected requests since the step's first minute above which a moved cohort's silence is
/// not chance (Poisson(30) gives none with probability 1e-13).
pub const SILENT_EXPECTED: f64 = 30.0;

/// The moved cohorts that sent requests in every baseline minute and none since the step's
/// first minute, though their volume before (scaled by the unmoved cohorts' change) expects at
/// least [`SILENT_EXPECTED`]: (how many, the requests they were expected to send). A canary
/// that drops some tenants' requests entirely shows here long before in the request share; a
/// tenant that sends in bursts (a nightly job) is not steady, so its silence says nothing.
pub fn silent(data: &Data) -> (usize, f64) {
    let minutes = data.volume_before.len() as u32;
    let before: f64 = data.volume_before.iter().map(|v| v.1).sum();
    let since: f64 = data.volume_after.iter().skip(1).map(|v| v.1).sum();
    if before <= 0.0 || since <= 0.0 {
        return (0, 0.0);
    }
    let scale = since / before;
    let mut out = (0, 0.0);
    for (k, role) in data.roles.iter().enumerate() {
        let expected = data.pre_volume[k] * scale;
        let steady = minutes > 0 && data.pre_active[k] >= minutes;
        if *role == Role::Moved
            && steady
            && data.after_volume[k] == 0.0
            && expected >= SILENT_EXPECTED
        {
            out.0 += 1;
            out.1 += expected;
        }
    }
    out
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
