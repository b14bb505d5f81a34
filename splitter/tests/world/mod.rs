//! A world simulator for canary rollouts (issue #17, "Measured"): tenants with their own
//! volumes, error rates and latencies, routed by the product's real bucketing, served by three
//! replicas that record minutes of traffic in the product's own document model (version totals
//! *and* the same minute by cohort and heaviest tenants), and judged at the controller's cadence
//! by either judge: the product's tenant-aware [`splitter::analysis::judge`]
//! ([`Judge::After`]) or the one before issue #17, kept in [`before`] ([`Judge::Before`]). Both
//! run in the same world: the same seeds give the same tenants, salt, phases, bursts and traffic
//! until the two judges decide differently.
//!
//! The generator is written from the world it describes, not from either judge's statistics:
//!
//! - **Tenants** ([`Population`]): `tenants` ids `tenant-00000…` in rank order; tenant `i`
//!   sends `requests_per_minute × (i+1)^-zipf / H` requests a minute (Zipf; `H` normalises;
//!   with [`CanaryVolume::InEveryRollout`] all scaled, per rollout, so that the tenants the
//!   first step moves send `requests_per_minute × 5 %`).
//!   Its 5xx rate is the same for all ([`Rates::Equal`], the independent-request world) or
//!   drawn once from Beta(μκ, (1−μ)κ) ([`Rates::Beta`]: mean μ, concentration κ); its latency
//!   median is `median_ms × exp(tenant_latency_sd × N(0,1))`. A healthy canary serves each
//!   tenant exactly as stable does: same rate, same latency.
//! - **Requests**: every tenant's requests arrive as a Poisson stream, each failing
//!   independently at the tenant's current rate, each taking a lognormal latency around the
//!   tenant's median (log-sd `request_latency_sd`). The [`HEAVY`] busiest tenants are drawn one
//!   by one; the others are drawn per *cohort* (the product's unit, [`splitter::cohort`]: the
//!   tenants of 10 neighbouring buckets) and version: a superposition of Poisson streams is the
//!   Poisson stream of rate Σλ with Σλp failures, so a cohort-minute's 5xx are Poisson(Σλp) and
//!   its successes Poisson(Σλ(1−p)), *exactly*. Each request's latency bucket is drawn from its
//!   tenant's lognormal (a heavy tenant) or its cohort's mixture of its tenants' lognormals
//!   (request-weighted, precomputed per routing); the one approximation: a failed request of a
//!   cohort takes the request-weighted mixture, not the failure-weighted one (the same when the
//!   tenants' rates are equal); tenant medians are snapped to a 0.01 log-unit grid (±0.5 %).
//!   Each request also draws its replica (a third each: Poisson splitting is exact) and the
//!   5-second slice of the minute it arrives in. A minute is drawn when it begins; when a tick
//!   changes the routing, the slices not yet served are drawn again with the new routing (a
//!   Poisson process has no memory, so this is exact too).
//! - **Routing**: the real [`splitter::bucket`] of each tenant under the policy's salt (one salt
//!   per rollout, so every rollout has its own fixed canary cohort), decided by the real
//!   [`splitter::decision::evaluate`] against the config's current share. No tenant is pinned.
//! - **Warm-up**: the policy exists with its canary version at 0 % for `warmup_minutes` (60,
//!   [`Guards::baseline_minutes`]) before the plan starts, so the first step has its baseline.
//! - **Events** ([`Events`]): a top-`top` tenant failing at `error_rate` for one minute, about
//!   every `every_minutes` (a Bernoulli draw each minute; its extra 5xx go to its own stream,
//!   so to its cohort); diurnal load `1 + A sin(2πt/1 day + φ)` with a random phase; a shared
//!   upstream incident once per step (starting uniformly within the step's hold) that fails an
//!   extra `error_rate` of *every* request of both versions for `minutes`.
//! - **Bad canaries** ([`Canary`]): k × each tenant's 5xx rate; latencies × f (so every quantile,
//!   p95 too, is f ×); "at the margin": each tenant's rate × (1 + max(error_margin / μ,
//!   error_margin_relative)) from the plan's own [`Guards`]; a canary that loses a fraction of
//!   its requests before they are recorded.
//! - **Replicas and recording**: `replicas` replicas each keep running totals per minute and
//!   flush every `flush_every_ms` (own phase) a [`ReplicaMinute`] with a growing `seq` into one
//!   real [`TrafficCache`] (the shared stored data), as [`splitter::recorder::TrafficRecorder`]
//!   does. A flush while the minute is still filling carries its version totals (what the
//!   judge before reads, partial minute included); the first flush after the minute ends carries
//!   its totals and its [`Detail`]: per version, per cohort of the tenant's real bucket,
//!   [`Counts`] with latency histograms, and `heavy`, the 10 busiest (tenant, version) pairs of
//!   that replica-minute by requests (exactly, among the [`HEAVY`] tenants drawn one by one: a
//!   tenant below them sends too little to be among the 10). The recorder writes its detail on
//!   every flush; the product's judge reads only complete minutes, whose last flush is this one.
//!   With [`Judge::Before`] the detail is not built (nothing reads it; the draws are the same).
//!   [`Recording::Recorder`] replays every request through real `TrafficRecorder`s (their
//!   Space-Saving sketch picks the heavy tenants) and a store instead (slow; the smoke test
//!   checks both give identical verdicts and identical cohorts).
//! - **Judging**: each replica ticks every `plan_every_ms` on its own phase (staggered by a
//!   third); a tick does what `server/src/controller.rs` + `app/src/ssr/plans.rs::verdict` do,
//!   then [`next_move`] and the move through the real [`splitter::ops::plan`]. A rollback or a
//!   pause ends the rollout (a pause with its reason).
//!   - [`Judge::After`]: `judge(&cache.detail(policy, from, to), &Step { .. }, &plan.guards)`
//!     with `from = minute_of(entered) − baseline_minutes` and `to` the last complete minute
//!     ([`splitter::analysis::Step::minutes`]). Its verdict depends only on the
//!     complete minutes (a minute counts once `now ≥ its end + GRACE_SECS`) and the step, so the
//!     world **memoises** it: a look whose step and last complete minute are those of the
//!     previous look reuses its verdict (three replicas looking every 10 s compute it about
//!     once a minute), and each complete minute is read from the cache once
//!     (`cache.detail(policy, m, m)`) and kept. `Recording::Direct { exact_reads: true }` reads
//!     `cache.detail(policy, from, last complete minute)` and judges at every look instead, as
//!     the product does (its memo is keyed on the cache's generation of those minutes); the
//!     smoke test checks the looks are identical.
//!   - [`Judge::Before`]: the step's minutes from `minute_of(since)` to `minute_of(now)` (the
//!     still-filling minute as flushed so far), [`before::sum_versions`], [`before::judge`] with
//!     the plan's guards and the old look count (Σ over steps of ⌈hold/60⌉ × 2); closed minutes
//!     are summed once (`exact_reads`: every minute at every look).
//! - **Plan**: [`splitter::plans::preset`] (5 % 15 min, 10 % 30 min, 50 % 1 h, 100 % 2 h),
//!   promote at the end, the default guards.

#![allow(dead_code)]

pub mod before;

use splitter::analysis::{self, Guards, Outcome, Side, Verdict};
use splitter::cohort::{cohort_of, Counts, Detail, Heavy, Who, COHORTS, HEAVY_WRITTEN};
use splitter::decision::evaluate;
use splitter::ops::{self, NewPolicy, Operation, Request};
use splitter::plans::{next_move, preset, AtEnd, Move, Plan, Status, Step};
use splitter::recorder::TrafficRecorder;
use splitter::store::TrafficStore;
use splitter::traffic::{
    latency_buckets, minute_of, ReplicaMinute, StoredMinute, VersionTraffic, Via, LATENCY_BOUNDS_US,
};
use splitter::traffic_cache::TrafficCache;
use splitter::{Actor, BasisPoints, Bucket, PolicyConfig, PolicyName, Version};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Random numbers: xoshiro256++ seeded by SplitMix64, and the draws the world needs.
// ---------------------------------------------------------------------------------------------

/// xoshiro256++ (Blackman & Vigna), seeded through SplitMix64.
#[derive(Clone)]
pub struct Rng([u64; 4]);

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed derived from two numbers (a cell's seed and a rollout's index, say).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut s = a ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    splitmix(&mut s)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut s = seed;
        Rng([
            splitmix(&mut s),
            splitmix(&mut s),
            splitmix(&mut s),
            splitmix(&mut s),
        ])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1).
    fn open(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.open(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, 1): Marsaglia & Tsang, boosted below shape 1.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            return self.gamma(shape + 1.0) * self.open().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.open();
            if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }

    /// Beta(a, b) as a ratio of gammas.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        if x + y > 0.0 {
            x / (x + y)
        } else {
            a / (a + b)
        }
    }

    /// Poisson(mean): inversion below 12, Hörmann's PTRS (transformed rejection) above.
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 12.0 {
            let u = self.uniform();
            let mut p = (-mean).exp();
            let mut cdf = p;
            let mut k = 0u64;
            while u > cdf && k < 1_000 {
                k += 1;
                p *= mean / k as f64;
                cdf += p;
            }
            return k;
        }
        let slam = mean.sqrt();
        let loglam = mean.ln();
        let b = 0.931 + 2.53 * slam;
        let a = -0.059 + 0.02483 * b;
        let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
        let vr = 0.9277 - 3.6224 / (b - 2.0);
        loop {
            let u = self.uniform() - 0.5;
            let v = self.uniform();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + mean + 0.43).floor();
            if us >= 0.07 && v <= vr {
                return k as u64;
            }
            if k < 0.0 || (us < 0.013 && v > us) {
                continue;
            }
            if v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln()
                <= -mean + k * loglam - ln_gamma(k + 1.0)
            {
                return k as u64;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Numerics: ln Γ, Φ, the regularised incomplete beta, Clopper–Pearson, percentiles.
// ---------------------------------------------------------------------------------------------

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; ~15 digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The standard normal CDF (via erfc, Chebyshev fit with fractional error < 1.2e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if x >= 0.0 { y } else { 2.0 - y };
    0.5 * erfc
}

/// The regularised incomplete beta function I_x(a, b) (continued fraction).
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let cf = |a: f64, b: f64, x: f64| {
        let tiny = 1e-300;
        let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
        let mut c = 1.0;
        let mut d = 1.0 - qab * x / qap;
        if d.abs() < tiny {
            d = tiny;
        }
        d = 1.0 / d;
        let mut h = d;
        for m in 1..500 {
            let m = f64::from(m);
            let m2 = 2.0 * m;
            let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
            d = 1.0 + aa * d;
            d = if d.abs() < tiny { tiny } else { d };
            c = 1.0 + aa / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            h *= d * c;
            let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
            d = 1.0 + aa * d;
            d = if d.abs() < tiny { tiny } else { d };
            c = 1.0 + aa / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-14 {
                break;
            }
        }
        h
    };
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * cf(b, a, 1.0 - x) / b
    }
}

/// The upper end of the two-sided 95 % Clopper–Pearson interval of `x` successes in `n`
/// trials: the p with P(Binomial(n, p) ≤ x) = 2.5 %, i.e. the 97.5 % quantile of
/// Beta(x + 1, n − x).
pub fn clopper_pearson_upper(x: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    if x >= n {
        return 1.0;
    }
    let (a, b) = ((x + 1) as f64, (n - x) as f64);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if incomplete_beta(a, b, mid) < 0.975 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The nearest-rank `q` quantile of sorted values (`None` if empty).
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

// ---------------------------------------------------------------------------------------------
// The world's parameters.
// ---------------------------------------------------------------------------------------------

/// How tenants' 5xx rates differ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rates {
    /// Every tenant fails at the mean rate: the independent-request world.
    Equal,
    /// Each tenant's rate is drawn once from Beta with the mean rate and this concentration.
    Beta { kappa: f64 },
}

/// Occasional tenant bursts: one of the top `top` tenants fails at `error_rate` for a minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bursts {
    pub top: usize,
    pub error_rate: f64,
    /// Mean minutes between bursts.
    pub every_minutes: f64,
}

/// A shared upstream incident once per step: every request of both versions fails with
/// `error_rate` more (on top of its own rate) for `minutes`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Incident {
    pub minutes: u32,
    pub error_rate: f64,
}

/// What happens in the world besides the steady state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Events {
    pub bursts: Option<Bursts>,
    /// Diurnal load amplitude (0.4: ±40 %); 0 for none.
    pub diurnal: f64,
    pub incident: Option<Incident>,
}

impl Events {
    pub const CALM: Events = Events {
        bursts: None,
        diurnal: 0.0,
        incident: None,
    };

    /// A top-50 tenant failing 20 % for a minute every two hours or so, ±40 % diurnal load, a
    /// 5-minute upstream incident (+5 % 5xx on both versions) once per step.
    pub const EVENTFUL: Events = Events {
        bursts: Some(Bursts {
            top: 50,
            error_rate: 0.20,
            every_minutes: 120.0,
        }),
        diurnal: 0.4,
        incident: Some(Incident {
            minutes: 5,
            error_rate: 0.05,
        }),
    };

    /// Each of [`Events::EVENTFUL`]'s events alone.
    pub const BURSTS: Events = Events {
        bursts: Events::EVENTFUL.bursts,
        ..Events::CALM
    };
    pub const DIURNAL: Events = Events {
        diurnal: Events::EVENTFUL.diurnal,
        ..Events::CALM
    };
    pub const INCIDENT: Events = Events {
        incident: Events::EVENTFUL.incident,
        ..Events::CALM
    };
}

/// What the canary is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Canary {
    /// Exactly as good as stable, tenant by tenant.
    Healthy,
    /// Each tenant's 5xx rate × k (capped at 1).
    ErrorsTimes(f64),
    /// Every latency × f (so p95 × f).
    SlowerBy(f64),
    /// Each tenant's rate × (1 + the plan's margin relative to the mean rate): as much worse as
    /// the guards allow.
    AtMargin,
    /// Loses this fraction of its requests before they are recorded; otherwise healthy.
    Loses(f64),
}

impl Canary {
    pub fn is_healthy(self) -> bool {
        self == Canary::Healthy
    }

    pub fn label(self) -> String {
        match self {
            Canary::Healthy => "healthy".into(),
            Canary::ErrorsTimes(k) => format!("{k}× 5xx"),
            Canary::SlowerBy(f) => format!("+{:.0}% latency (p95)", (f - 1.0) * 100.0),
            Canary::AtMargin => "at the margin".into(),
            Canary::Loses(f) => format!("loses {:.0}% unrecorded", f * 100.0),
        }
    }
}

/// How replicas' traffic reaches the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    /// Running totals per replica and minute written as [`ReplicaMinute`]s straight into the
    /// cache; complete minutes are read once and the product's verdict is memoised
    /// (`exact_reads`: every look reads every minute and judges afresh).
    Direct { exact_reads: bool },
    /// Every request through a real [`TrafficRecorder`] per replica, flushed to an in-memory
    /// [`TrafficStore`] that the cache reads ([`TrafficCache::refresh`]) before each look.
    Recorder,
}

/// Which judge the plan controller runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// The judge before issue #17 ([`before::judge`]): canary against stable, version totals.
    Before,
    /// The product's tenant-aware judge ([`splitter::analysis::judge`]).
    After,
}

impl Judge {
    pub fn label(self) -> &'static str {
        match self {
            Judge::Before => "before",
            Judge::After => "after",
        }
    }
}

/// What the world's canary volume (`requests_per_minute × 5 %`) is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryVolume {
    /// The mean over salts: a salt whose 5 % holds a heavy tenant gets more, one without less
    /// (a few hundred requests a minute for many salts).
    OnAverage,
    /// Each rollout's: every tenant's volume is scaled so that the tenants the first step
    /// moves send exactly that many a minute (a power bound "at N canary requests a minute").
    InEveryRollout,
}

/// One cell of the grid: the world, the canary, the plan and the fleet.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    pub tenants: usize,
    pub zipf: f64,
    /// All tenants' requests a minute (at the diurnal mean).
    pub requests_per_minute: f64,
    /// Whether `requests_per_minute × 5 %` is the canary's volume on average over salts or in
    /// every rollout.
    pub canary_volume: CanaryVolume,
    /// Mean 5xx rate of a tenant.
    pub error_rate: f64,
    pub rates: Rates,
    pub median_ms: f64,
    /// Log-sd of tenants' latency medians.
    pub tenant_latency_sd: f64,
    /// Log-sd of one request's latency around its tenant's median.
    pub request_latency_sd: f64,
    pub events: Events,
    pub canary: Canary,
    pub steps: Vec<Step>,
    pub at_end: AtEnd,
    pub replicas: usize,
    pub plan_every_ms: i64,
    pub flush_every_ms: i64,
    /// All-stable minutes (canary version set, share 0 %) before the plan starts.
    pub warmup_minutes: u32,
    pub judge: Judge,
    pub recording: Recording,
    /// Keep every look's numbers in [`Rollout::looks`] (tests).
    pub trace: bool,
}

impl WorldSpec {
    /// The reference world: 10 000 Zipf(1.1) tenants, `canary_per_minute` canary requests a
    /// minute on average at 5 % of tenants (so 20 × that in all), 0.5 % mean 5xx, 20 ms
    /// median latency, tenant latency log-sd 0.2, request log-sd 0.5, the product's preset plan
    /// (promote at the end) after 30 minutes at 0 %, 3 replicas judging every 10 s and flushing
    /// every 5 s, the product's judge.
    pub fn new(canary_per_minute: f64, rates: Rates, canary: Canary) -> WorldSpec {
        WorldSpec {
            tenants: 10_000,
            zipf: 1.1,
            requests_per_minute: canary_per_minute / 0.05,
            canary_volume: CanaryVolume::OnAverage,
            error_rate: 0.005,
            rates,
            median_ms: 20.0,
            tenant_latency_sd: 0.2,
            request_latency_sd: 0.5,
            events: Events::CALM,
            canary,
            steps: preset(1.0),
            at_end: AtEnd::Promote,
            replicas: 3,
            plan_every_ms: 10_000,
            flush_every_ms: 5_000,
            warmup_minutes: Guards::default().baseline_minutes,
            judge: Judge::After,
            recording: Recording::Direct { exact_reads: false },
            trace: false,
        }
    }

    pub fn with_events(mut self, events: Events) -> WorldSpec {
        self.events = events;
        self
    }

    pub fn with_tenant_latency_sd(mut self, sd: f64) -> WorldSpec {
        self.tenant_latency_sd = sd;
        self
    }

    pub fn with_steps(mut self, steps: Vec<Step>) -> WorldSpec {
        self.steps = steps;
        self
    }

    /// Every rollout's first step sends its canary cohort `canary_per_minute` requests a
    /// minute (all tenants' volumes scaled by the same factor for that salt).
    pub fn with_canary_volume_in_every_rollout(mut self) -> WorldSpec {
        self.canary_volume = CanaryVolume::InEveryRollout;
        self
    }

    pub fn with_judge(mut self, judge: Judge) -> WorldSpec {
        self.judge = judge;
        self
    }

    /// Whether replicas build the minute by cohort (nothing reads it with the judge before).
    fn by_cohort(&self) -> bool {
        self.judge == Judge::After || self.recording == Recording::Recorder
    }

    /// The world in words (not the canary).
    pub fn world_label(&self) -> String {
        let rates = match self.rates {
            Rates::Equal => "equal rates".to_string(),
            Rates::Beta { kappa } => format!("Beta κ={kappa}"),
        };
        let mut events = Vec::new();
        if self.events.bursts.is_some() {
            events.push("bursts");
        }
        if self.events.diurnal > 0.0 {
            events.push("diurnal");
        }
        if self.events.incident.is_some() {
            events.push("incident");
        }
        let events = if events.is_empty() {
            "calm".to_string()
        } else {
            events.join("+")
        };
        format!("{rates}, {events}, lat-sd {}", self.tenant_latency_sd)
    }

    /// Canary requests a minute at 5 % of tenants, on average over salts.
    pub fn canary_per_minute(&self) -> f64 {
        self.requests_per_minute * 0.05
    }

    /// The canary's 5xx rate for a tenant whose stable rate is `p`.
    pub fn canary_rate(&self, p: f64, guards: &Guards) -> f64 {
        match self.canary {
            Canary::ErrorsTimes(k) => (p * k).min(1.0),
            Canary::AtMargin => {
                let relative =
                    (guards.error_margin / self.error_rate).max(guards.error_margin_relative);
                (p * (1.0 + relative)).min(1.0)
            }
            _ => p,
        }
    }

    fn canary_latency_factor(&self) -> f64 {
        match self.canary {
            Canary::SlowerBy(f) => f,
            _ => 1.0,
        }
    }

    fn canary_kept(&self) -> f64 {
        match self.canary {
            Canary::Loses(f) => 1.0 - f,
            _ => 1.0,
        }
    }

    /// The longest a rollout may take before it counts as timed out (twice every hold, and
    /// some).
    fn limit_ms(&self) -> i64 {
        self.steps
            .iter()
            .map(|s| 2 * i64::from(s.hold_secs) * 1000)
            .sum::<i64>()
            + 10 * 60_000
    }
}

// ---------------------------------------------------------------------------------------------
// The tenants.
// ---------------------------------------------------------------------------------------------

/// Step of the grid tenants' latency medians are snapped to (log units).
const GRID_STEP: f64 = 0.01;

/// One draw of the tenant population.
pub struct Population {
    pub ids: Vec<String>,
    /// Requests a minute at the diurnal mean.
    pub weight: Vec<f64>,
    /// 5xx rate on stable (and on a healthy canary).
    pub rate: Vec<f64>,
    /// ln(latency median / the world's median).
    pub log_median: Vec<f64>,
    /// Index of `log_median` on the latency grid.
    cell: Vec<usize>,
}

impl Population {
    pub fn draw(spec: &WorldSpec, rng: &mut Rng) -> Population {
        let n = spec.tenants;
        let raw: Vec<f64> = (0..n).map(|i| ((i + 1) as f64).powf(-spec.zipf)).collect();
        let total: f64 = raw.iter().sum();
        let weight = raw
            .iter()
            .map(|w| w / total * spec.requests_per_minute)
            .collect();
        let mu = spec.error_rate;
        let rate = (0..n)
            .map(|_| match spec.rates {
                Rates::Equal => mu,
                Rates::Beta { kappa } => rng.beta(mu * kappa, (1.0 - mu) * kappa),
            })
            .collect();
        let span = 6.0 * spec.tenant_latency_sd;
        let mut log_median = Vec::with_capacity(n);
        let mut cell = Vec::with_capacity(n);
        for _ in 0..n {
            let x = (spec.tenant_latency_sd * rng.normal()).clamp(-span, span);
            log_median.push(x);
            cell.push(((x + span) / GRID_STEP).round() as usize);
        }
        Population {
            ids: (0..n).map(|i| format!("tenant-{i:05}")).collect(),
            weight,
            rate,
            log_median,
            cell,
        }
    }

    /// Each tenant's (requests, 5xx) over `minutes` at the diurnal mean, drawn per tenant
    /// (errors and successes as the two independent Poisson streams they are): what a
    /// per-tenant log of this world would show.
    pub fn observe(&self, rng: &mut Rng, minutes: f64) -> Vec<(u64, u64)> {
        self.weight
            .iter()
            .zip(&self.rate)
            .map(|(&w, &p)| {
                let errors = rng.poisson(w * minutes * p);
                let ok = rng.poisson(w * minutes * (1.0 - p));
                (ok + errors, errors)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Latency: the probability of each recorded latency bucket, per grid cell of tenant medians.
// ---------------------------------------------------------------------------------------------

/// Most latency buckets this simulator handles (the product has 42).
const MAX_BUCKETS: usize = 48;

/// Below this a latency bucket's probability counts as none.
const NEGLIGIBLE: f64 = 1e-12;

/// `probs[cell × buckets + b]`: the chance that a request of a tenant in `cell` lands in
/// latency bucket `b`; `rows[cell]`: the buckets `lo..=hi` outside which it is negligible.
pub struct Kernel {
    buckets: usize,
    cells: usize,
    probs: Vec<f64>,
    rows: Vec<(usize, usize)>,
}

impl Kernel {
    fn new(spec: &WorldSpec, factor: f64) -> Kernel {
        let buckets = latency_buckets();
        assert!(
            buckets <= MAX_BUCKETS,
            "the product has more latency buckets than assumed"
        );
        let span = 6.0 * spec.tenant_latency_sd;
        let cells = (2.0 * span / GRID_STEP).round() as usize + 1;
        let ln_bounds: Vec<f64> = LATENCY_BOUNDS_US.iter().map(|&b| (b as f64).ln()).collect();
        let mut probs = Vec::with_capacity(cells * buckets);
        let mut rows = Vec::with_capacity(cells);
        for c in 0..cells {
            let x = -span + c as f64 * GRID_STEP;
            let mu = (spec.median_ms * 1000.0 * factor).ln() + x;
            let mut below = 0.0;
            for b in 0..buckets {
                let cdf = match ln_bounds.get(b) {
                    Some(&lb) => normal_cdf((lb - mu) / spec.request_latency_sd),
                    None => 1.0,
                };
                probs.push((cdf - below).max(0.0));
                below = cdf;
            }
            let row = &probs[c * buckets..];
            let lo = row.iter().position(|&p| p > NEGLIGIBLE).unwrap_or(0);
            let hi = row.iter().rposition(|&p| p > NEGLIGIBLE).unwrap_or(0);
            rows.push((lo, hi));
        }
        Kernel {
            buckets,
            cells,
            probs,
            rows,
        }
    }

    /// Adds `weight` × cell `c`'s bucket probabilities to `mix`.
    fn add_to(&self, mix: &mut [f64; MAX_BUCKETS], c: usize, weight: f64) {
        let (lo, hi) = self.rows[c];
        let row = &self.probs[c * self.buckets..(c + 1) * self.buckets];
        for b in lo..=hi {
            mix[b] += weight * row[b];
        }
    }
}

/// Walker's alias table over the latency buckets a stream can reach: one `u64` draws a bucket.
#[derive(Clone)]
struct Alias {
    lo: u8,
    n: u8,
    /// Chance (× 2³²) of keeping column `i` rather than taking its alias.
    keep: [u32; MAX_BUCKETS],
    alias: [u8; MAX_BUCKETS],
}

impl Alias {
    /// The table of `weights` (any scale); `None` if they are all negligible.
    fn new(weights: &[f64; MAX_BUCKETS]) -> Option<Alias> {
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return None;
        }
        let lo = weights.iter().position(|&w| w / total > NEGLIGIBLE)?;
        let hi = weights.iter().rposition(|&w| w / total > NEGLIGIBLE)?;
        let n = hi - lo + 1;
        let kept: f64 = weights[lo..=hi].iter().sum();
        let mut scaled: Vec<f64> = weights[lo..=hi]
            .iter()
            .map(|w| w / kept * n as f64)
            .collect();
        let mut table = Alias {
            lo: lo as u8,
            n: n as u8,
            keep: [u32::MAX; MAX_BUCKETS],
            alias: std::array::from_fn(|i| i as u8),
        };
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            table.keep[s] = (scaled[s] * 4_294_967_296.0).min(u32::MAX as f64) as u32;
            table.alias[s] = l as u8;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left is 1 up to rounding: kept whole (`keep` stays at its maximum).
        Some(table)
    }

    #[inline]
    fn sample(&self, u: u64) -> usize {
        let i = (((u >> 32) * u64::from(self.n)) >> 32) as usize;
        let column = if (u as u32) < self.keep[i] {
            i
        } else {
            usize::from(self.alias[i])
        };
        usize::from(self.lo) + column
    }
}

/// What a cell's rollouts share: the spec and its latency kernels.
pub struct Prepared {
    pub spec: WorldSpec,
    stable: Kernel,
    canary: Kernel,
    guards: Guards,
}

impl Prepared {
    pub fn new(spec: &WorldSpec) -> Prepared {
        assert_eq!(
            60_000 % spec.flush_every_ms,
            0,
            "a minute is a whole number of flush intervals"
        );
        assert!(spec.replicas <= 4, "a request's replica takes two bits");
        Prepared {
            stable: Kernel::new(spec, 1.0),
            canary: Kernel::new(spec, spec.canary_latency_factor()),
            guards: Guards::default(),
            spec: spec.clone(),
        }
    }

    fn kernel(&self, version: usize) -> &Kernel {
        if version == CANARY {
            &self.canary
        } else {
            &self.stable
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routing: which version each tenant is on, and the request streams that gives.
// ---------------------------------------------------------------------------------------------

/// Tenants drawn one by one (the busiest, in rank order): the heavy-hitter candidates.
pub const HEAVY: usize = 50;

const STABLE: usize = 0;
const CANARY: usize = 1;

/// One request stream: a heavy tenant, or the other tenants of one cohort on one version.
struct Stream {
    version: usize,
    cohort: u16,
    /// The heavy tenant's index, if it is one.
    tenant: Option<usize>,
    /// Σλ and Σλp of its tenants (per minute, diurnal mean).
    requests: f64,
    errors: f64,
    latency: Option<Alias>,
    /// Its tenants with their cumulative weights (to name a request's tenant in recorder mode).
    members: Vec<(f64, usize)>,
}

/// The routing of every tenant and the streams it gives.
struct Routing {
    canary: Vec<bool>,
    /// Each tenant's 5xx rate on the version it is routed to.
    rate: Vec<f64>,
    /// Each tenant's stream.
    stream: Vec<usize>,
    streams: Vec<Stream>,
}

impl Routing {
    fn route(
        prep: &Prepared,
        pop: &Population,
        buckets: &[Bucket],
        config: &PolicyConfig,
    ) -> Routing {
        let n = pop.ids.len();
        let mut canary = Vec::with_capacity(n);
        let mut rate = Vec::with_capacity(n);
        let mut stream = Vec::with_capacity(n);
        let mut streams: Vec<Stream> = Vec::new();
        let mut mixes: Vec<[f64; MAX_BUCKETS]> = Vec::new();
        // (cohort, version) → the stream of that cohort's light tenants on that version.
        let mut pooled = vec![usize::MAX; usize::from(COHORTS) * 2];
        for (t, id) in pop.ids.iter().enumerate() {
            let (is_canary, _) = evaluate(config, id, || buckets[t]);
            let version = usize::from(is_canary);
            let p = if is_canary {
                prep.spec.canary_rate(pop.rate[t], &prep.guards)
            } else {
                pop.rate[t]
            };
            let cohort = cohort_of(buckets[t].get());
            let slot = usize::from(cohort) * 2 + version;
            let s = if t < HEAVY || pooled[slot] == usize::MAX {
                streams.push(Stream {
                    version,
                    cohort,
                    tenant: (t < HEAVY).then_some(t),
                    requests: 0.0,
                    errors: 0.0,
                    latency: None,
                    members: Vec::new(),
                });
                mixes.push([0.0; MAX_BUCKETS]);
                if t >= HEAVY {
                    pooled[slot] = streams.len() - 1;
                }
                streams.len() - 1
            } else {
                pooled[slot]
            };
            let w = pop.weight[t];
            let st = &mut streams[s];
            st.requests += w;
            st.errors += w * p;
            st.members.push((st.requests, t));
            prep.kernel(version).add_to(&mut mixes[s], pop.cell[t], w);
            canary.push(is_canary);
            rate.push(p);
            stream.push(s);
        }
        for (st, mix) in streams.iter_mut().zip(&mixes) {
            st.latency = Alias::new(mix);
        }
        Routing {
            canary,
            rate,
            stream,
            streams,
        }
    }
}

/// A request as drawn: latency bucket (6 bits), failed (1), replica (2), version (1),
/// cohort (10), heavy tenant + 1 or 0 (6).
#[derive(Clone, Copy)]
struct Packed(u32);

impl Packed {
    fn stream_bits(s: &Stream) -> u32 {
        let heavy = s.tenant.map_or(0, |t| t as u32 + 1);
        (s.version as u32) << 9 | u32::from(s.cohort) << 10 | heavy << 20
    }

    fn bucket(self) -> usize {
        (self.0 & 0x3f) as usize
    }

    fn failed(self) -> bool {
        self.0 >> 6 & 1 == 1
    }

    fn replica(self) -> usize {
        (self.0 >> 7 & 3) as usize
    }

    fn version(self) -> usize {
        (self.0 >> 9 & 1) as usize
    }

    fn cohort(self) -> usize {
        (self.0 >> 10 & 0x3ff) as usize
    }

    fn heavy(self) -> Option<usize> {
        match self.0 >> 20 & 0x3f {
            0 => None,
            h => Some(h as usize - 1),
        }
    }
}

/// A latency inside bucket `b` (its inclusive upper bound; above the top bound for the open one).
fn representative_us(b: usize) -> u64 {
    LATENCY_BOUNDS_US
        .get(b)
        .copied()
        .unwrap_or_else(|| LATENCY_BOUNDS_US.last().copied().unwrap_or(0) + 1)
}

// ---------------------------------------------------------------------------------------------
// A replica's running totals of one minute.
// ---------------------------------------------------------------------------------------------

/// One replica's minute: version totals, and (when built) by cohort and for the heavy tenants,
/// as dense counters that become [`Counts`] when the minute is written whole.
struct Totals {
    minute: Option<i64>,
    /// Requests arrived since the last flush.
    dirty: bool,
    /// Per version: requests per latency bucket, and 5xx.
    versions: [[u64; MAX_BUCKETS]; 2],
    errors: [u64; 2],
    by_cohort: bool,
    /// `(version × COHORTS + cohort) × MAX_BUCKETS + bucket`, and per `version × COHORTS + cohort`.
    cells: Vec<u32>,
    cell_requests: Vec<u32>,
    cell_errors: Vec<u32>,
    touched: Vec<usize>,
    /// The same for `version × HEAVY + heavy tenant`.
    heavy: Vec<u32>,
    heavy_requests: Vec<u32>,
    heavy_errors: Vec<u32>,
    heavy_touched: Vec<usize>,
}

impl Totals {
    fn new(by_cohort: bool) -> Totals {
        let (cells, heavy) = if by_cohort {
            (usize::from(COHORTS) * 2, HEAVY * 2)
        } else {
            (0, 0)
        };
        Totals {
            minute: None,
            dirty: false,
            versions: [[0; MAX_BUCKETS]; 2],
            errors: [0; 2],
            by_cohort,
            cells: vec![0; cells * MAX_BUCKETS],
            cell_requests: vec![0; cells],
            cell_errors: vec![0; cells],
            touched: Vec::new(),
            heavy: vec![0; heavy * MAX_BUCKETS],
            heavy_requests: vec![0; heavy],
            heavy_errors: vec![0; heavy],
            heavy_touched: Vec::new(),
        }
    }

    #[inline]
    fn add(&mut self, r: Packed) {
        let (v, b, failed) = (r.version(), r.bucket(), u32::from(r.failed()));
        self.dirty = true;
        self.versions[v][b] += 1;
        self.errors[v] += u64::from(failed);
        if !self.by_cohort {
            return;
        }
        let k = v * usize::from(COHORTS) + r.cohort();
        if self.cell_requests[k] == 0 {
            self.touched.push(k);
        }
        self.cell_requests[k] += 1;
        self.cell_errors[k] += failed;
        self.cells[k * MAX_BUCKETS + b] += 1;
        if let Some(h) = r.heavy() {
            let k = v * HEAVY + h;
            if self.heavy_requests[k] == 0 {
                self.heavy_touched.push(k);
            }
            self.heavy_requests[k] += 1;
            self.heavy_errors[k] += failed;
            self.heavy[k * MAX_BUCKETS + b] += 1;
        }
    }

    /// Version totals as the recorder keeps them (each request at its bucket's upper bound).
    fn traffic(&self, v: usize) -> VersionTraffic {
        let hist = &self.versions[v];
        let Some(last) = hist.iter().rposition(|&n| n > 0) else {
            return VersionTraffic::default();
        };
        let latency: Vec<u64> = hist[..=last].to_vec();
        VersionTraffic {
            requests: latency.iter().sum(),
            errors: self.errors[v],
            latency_sum_us: latency
                .iter()
                .enumerate()
                .map(|(b, &n)| n * representative_us(b))
                .sum(),
            latency,
        }
    }

    /// The minute by tenant, and the dense counters cleared for the next minute.
    fn take_detail(&mut self, ids: &[String]) -> Detail {
        fn counts(requests: u32, errors: u32, hist: &mut [u32]) -> Counts {
            let from = hist.iter().position(|&n| n > 0).unwrap_or(0);
            let to = hist.iter().rposition(|&n| n > 0).unwrap_or(0);
            let latency = hist[from..=to].iter().map(|&n| u64::from(n)).collect();
            hist.fill(0);
            Counts {
                requests: u64::from(requests),
                errors: u64::from(errors),
                from,
                latency,
            }
        }
        let mut detail = Detail::default();
        self.touched.sort_unstable();
        let cohorts = usize::from(COHORTS);
        for v in [STABLE, CANARY] {
            let mine: BTreeMap<u16, Counts> = self
                .touched
                .iter()
                .filter(|&&k| k / cohorts == v)
                .map(|&k| {
                    let hist = &mut self.cells[k * MAX_BUCKETS..(k + 1) * MAX_BUCKETS];
                    let c = counts(self.cell_requests[k], self.cell_errors[k], hist);
                    ((k % cohorts) as u16, c)
                })
                .collect();
            if !mine.is_empty() {
                detail.cohorts.insert(version_name(v).to_string(), mine);
            }
        }
        for &k in &self.touched {
            self.cell_requests[k] = 0;
            self.cell_errors[k] = 0;
        }
        self.touched.clear();
        // The busiest (tenant, version) pairs, busiest first, ties by name (as the sketch).
        let mut heavy: Vec<(u32, &str, usize)> = self
            .heavy_touched
            .iter()
            .map(|&k| (self.heavy_requests[k], ids[k % HEAVY].as_str(), k))
            .collect();
        heavy.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let written: Vec<usize> = heavy.iter().take(HEAVY_WRITTEN).map(|h| h.2).collect();
        for &k in &written {
            let hist = &mut self.heavy[k * MAX_BUCKETS..(k + 1) * MAX_BUCKETS];
            detail.heavy.push(Heavy {
                tenant: ids[k % HEAVY].clone(),
                version: version_name(k / HEAVY).to_string(),
                counts: counts(self.heavy_requests[k], self.heavy_errors[k], hist),
            });
        }
        for &k in &self.heavy_touched {
            self.heavy[k * MAX_BUCKETS..(k + 1) * MAX_BUCKETS].fill(0);
            self.heavy_requests[k] = 0;
            self.heavy_errors[k] = 0;
        }
        self.heavy_touched.clear();
        detail
    }

    /// Ready for another minute (the detail, if built, already taken).
    fn reset(&mut self) {
        self.minute = None;
        self.dirty = false;
        self.versions = [[0; MAX_BUCKETS]; 2];
        self.errors = [0; 2];
    }
}

fn version_name(v: usize) -> &'static str {
    if v == STABLE {
        "v1"
    } else {
        "v2"
    }
}

/// One replica: its two open minutes (the one filling and the one just ended) and its flushes.
struct Replica {
    slots: [Totals; 2],
    seq: u64,
}

impl Replica {
    fn new(by_cohort: bool) -> Replica {
        Replica {
            slots: [Totals::new(by_cohort), Totals::new(by_cohort)],
            seq: 0,
        }
    }

    fn minute(&mut self, minute: i64) -> &mut Totals {
        let slot = &mut self.slots[minute.rem_euclid(2) as usize];
        if slot.minute != Some(minute) {
            assert!(
                slot.minute.is_none(),
                "minute {:?} was never written whole",
                slot.minute
            );
            slot.minute = Some(minute);
        }
        slot
    }
}

// ---------------------------------------------------------------------------------------------
// A store for the recorder mode.
// ---------------------------------------------------------------------------------------------

/// An in-memory [`TrafficStore`] whose positions follow the simulated clock.
#[derive(Default)]
pub struct MemoryTraffic {
    docs: Mutex<BTreeMap<String, StoredMinute>>,
    position: Mutex<(i64, i64)>,
}

impl MemoryTraffic {
    fn set_now(&self, micros: i64) {
        self.position.lock().unwrap().0 = micros;
    }
}

#[async_trait::async_trait]
impl TrafficStore for MemoryTraffic {
    async fn put_traffic(&self, docs: &[ReplicaMinute]) -> splitter::Result<()> {
        let at = {
            let mut p = self.position.lock().unwrap();
            p.1 = p.0.max(p.1 + 1);
            p.1
        };
        let mut map = self.docs.lock().unwrap();
        for d in docs {
            map.insert(
                d.key(),
                StoredMinute {
                    doc: d.clone(),
                    stored_at: at,
                },
            );
        }
        Ok(())
    }

    async fn traffic_since(&self, since: i64) -> splitter::Result<Vec<StoredMinute>> {
        let map = self.docs.lock().unwrap();
        Ok(map
            .values()
            .filter(|s| s.stored_at >= since)
            .cloned()
            .collect())
    }

    async fn prune_traffic(&self, before: i64) -> splitter::Result<usize> {
        let mut map = self.docs.lock().unwrap();
        let n = map.len();
        map.retain(|_, s| s.doc.minute >= before);
        Ok(n - map.len())
    }
}

// ---------------------------------------------------------------------------------------------
// One rollout.
// ---------------------------------------------------------------------------------------------

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Rolled back by the plan this many seconds after it started.
    RolledBack { after_secs: u64 },
    /// Every step passed: promoted (or holding for a person at the end).
    Promoted { after_secs: u64 },
    /// Paused by the plan (data it cannot trust, or no verdict for twice a step's hold): the
    /// reason is [`Rollout::reason`].
    Paused { after_secs: u64 },
    /// Still running at [`WorldSpec::limit_ms`] (never expected).
    TimedOut,
}

/// One look by one replica: what it judged and what it decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    /// Milliseconds since the plan started.
    pub at_ms: i64,
    pub replica: usize,
    pub step: usize,
    pub outcome: Outcome,
    pub canary: (u64, u64),
    pub stable: (u64, u64),
    /// The verdict's words, without the tenants it names as most affected (a real recorder's
    /// sketch may pick other heavy tenants than the exact top 10).
    pub reason: String,
    pub decided: Option<String>,
}

/// What one rollout did.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub end: End,
    /// Looks taken (all replicas).
    pub looks_taken: u64,
    /// What the judge before was told it may take (Σ ⌈hold/60⌉ × 2).
    pub looks_assumed: u32,
    /// Verdicts computed (the rest were memoised) and the time spent computing them.
    pub judged: u64,
    pub judge_time: Duration,
    /// Every look, with [`WorldSpec::trace`].
    pub looks: Vec<Look>,
    /// The verdict's reason for the move that ended the rollout.
    pub reason: Option<String>,
    /// Requests recorded per version over the rollout (stable, canary).
    pub recorded: [VersionTraffic; 2],
    /// The configuration at the end.
    pub config: PolicyConfig,
    /// With [`WorldSpec::trace`] and the product's judge: the complete minutes by tenant it
    /// read last, replicas summed.
    pub detail: BTreeMap<i64, Detail>,
}

/// The closed minutes of the current step, summed once (the judge before, direct mode).
struct ClosedSum {
    from: i64,
    through: i64,
    sum: (VersionTraffic, VersionTraffic),
}

/// The requests of the minute being served, by the slice they arrive in.
struct Drawn {
    minute: i64,
    start_ms: i64,
    slices: Vec<Vec<Packed>>,
    /// Recorder mode: each request's tenant.
    tenants: Vec<Vec<u32>>,
}

/// What the product's memoised verdict is keyed on: when the step was entered, its share and
/// the last complete minute.
type VerdictKey = (i64, u16, i64);

struct Sim<'a> {
    prep: &'a Prepared,
    pop: Population,
    buckets: Vec<Bucket>,
    config: PolicyConfig,
    routing: Routing,
    /// The traffic's draws; incidents' starts; which tenant of a cohort a request is for
    /// (recorder mode only): separate, so the traffic is the same whatever the mode.
    rng: Rng,
    events_rng: Rng,
    names_rng: Rng,
    drawn: Drawn,
    means: Vec<(f64, f64)>,
    replicas: Vec<Replica>,
    recorders: Vec<TrafficRecorder>,
    store: Arc<MemoryTraffic>,
    runtime: Option<tokio::runtime::Runtime>,
    cache: TrafficCache,
    closed: Option<ClosedSum>,
    /// The product's judge: complete minutes read so far (each once), and the last verdict.
    complete: BTreeMap<i64, Detail>,
    complete_through: i64,
    memo: Option<(VerdictKey, Verdict)>,
    /// The product's comparison kept between looks ([`analysis::Judging`]).
    judging: Option<analysis::Judging>,
    incidents: Vec<(i64, i64)>,
    /// Minute index (since the start of the simulation) → bursting tenant.
    bursts: BTreeMap<i64, usize>,
    diurnal_phase: f64,
    start_ms: i64,
    plan_start_ms: i64,
    looks: Vec<Look>,
    looks_taken: u64,
    judged: u64,
    judge_time: Duration,
    recorded: [VersionTraffic; 2],
    reason: Option<String>,
}

const POLICY: &str = "world";

fn at(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).expect("a simulated time in range")
}

/// The product's controller shortens what it writes to the audit trail.
fn short(text: &str) -> String {
    text.chars().take(900).collect()
}

/// The policy's salt in the rollout with `seed`: one salt, so one canary cohort, per rollout.
pub fn salt_of(seed: u64) -> String {
    format!("world-{seed:016x}")
}

/// The looks the judge before assumed a plan takes (the old `Plan::looks`).
pub fn old_looks(steps: &[Step]) -> u32 {
    steps
        .iter()
        .map(|s| s.hold_secs.div_ceil(60) * 2)
        .sum::<u32>()
        .max(1)
}

/// The judge before's guards: the same fields of the plan's guards.
fn old_guards(g: &Guards) -> before::Guards {
    before::Guards {
        min_requests: g.min_requests,
        error_margin: g.error_margin,
        error_margin_relative: g.error_margin_relative,
        min_errors: g.min_errors,
        alpha: g.alpha,
        slow_margin: g.slow_margin,
        latency_slack_ms: g.latency_slack_ms,
    }
}

/// The judge before's verdict in the product's terms (for [`next_move`]).
fn from_old(v: before::Verdict) -> Verdict {
    let side = |s: &before::Side| Side {
        requests: s.requests,
        errors: s.errors,
        p95_ms: s.p95_ms,
        p99_ms: s.p99_ms,
    };
    Verdict {
        outcome: match v.outcome {
            before::Outcome::Pass => Outcome::Pass,
            before::Outcome::Fail => Outcome::Fail,
            before::Outcome::Inconclusive => Outcome::Inconclusive,
            before::Outcome::NoData => Outcome::NoData,
        },
        canary: side(&v.canary),
        stable: side(&v.stable),
        reason: v.reason,
        comparison: None,
        hurt: Vec::new(),
    }
}

/// A world drawn from `seed`: its tenants, their buckets under the rollout's salt, the rng.
fn world(spec: &WorldSpec, seed: u64) -> (Population, Vec<Bucket>, String, Rng) {
    let mut rng = Rng::new(seed);
    let mut pop = Population::draw(spec, &mut rng);
    let salt = salt_of(seed);
    let buckets: Vec<Bucket> = pop.ids.iter().map(|t| splitter::bucket(&salt, t)).collect();
    if spec.canary_volume == CanaryVolume::InEveryRollout {
        let first = spec.steps.first().map_or(0, |s| s.share.get());
        let moved: f64 = (buckets.iter().zip(&pop.weight))
            .filter(|(b, _)| b.get() < first)
            .map(|(_, w)| w)
            .sum();
        let scale = spec.canary_per_minute() / moved;
        pop.weight.iter_mut().for_each(|w| *w *= scale);
    }
    (pop, buckets, salt, rng)
}

/// Runs one rollout of `prep`'s world with `seed` (everything random in it — tenants, salt,
/// phases, traffic — follows from the seed).
pub fn run_rollout(prep: &Prepared, seed: u64) -> Rollout {
    let spec = &prep.spec;
    let (pop, buckets, salt, mut rng) = world(spec, seed);
    // Simulated time: a minute boundary, the plan starting somewhere in the minute that follows
    // the warm-up.
    let start_ms = 1_800_000_000_000i64 / 60_000 * 60_000;
    let plan_start_ms =
        start_ms + i64::from(spec.warmup_minutes) * 60_000 + rng.below(60_000) as i64;
    let name = PolicyName::new(POLICY).unwrap();
    let create = Request {
        policy: name.clone(),
        expected_revision: None,
        operation: Operation::Create(NewPolicy {
            stable_version: Version::new("v1").unwrap(),
            canary_version: Some(Version::new("v2").unwrap()),
            share: BasisPoints::ZERO,
            salt: Some(salt),
        }),
        actor: Actor::new("world").unwrap(),
        reason: String::new(),
    };
    let config = ops::plan(None, &create, at(start_ms))
        .expect("create")
        .after
        .expect("created");
    let diurnal_phase = rng.uniform() * std::f64::consts::TAU;
    let total_minutes = (plan_start_ms - start_ms + spec.limit_ms()) / 60_000 + 2;
    let mut bursts = BTreeMap::new();
    if let Some(b) = spec.events.bursts {
        for m in 0..total_minutes {
            if rng.uniform() < 1.0 / b.every_minutes {
                bursts.insert(m, rng.below(b.top.min(spec.tenants) as u64) as usize);
            }
        }
    }
    let mut sim = Sim::new(prep, pop, buckets, config, rng, seed, start_ms);
    sim.bursts = bursts;
    sim.diurnal_phase = diurnal_phase;
    sim.plan_start_ms = plan_start_ms;
    let end = sim.run();
    // What the replicas hold and have not written whole yet counts as recorded too.
    for replica in &sim.replicas {
        for totals in replica.slots.iter().filter(|t| t.minute.is_some()) {
            for v in [STABLE, CANARY] {
                sim.recorded[v].add(&totals.traffic(v));
            }
        }
    }
    let detail = if spec.trace {
        std::mem::take(&mut sim.complete)
    } else {
        BTreeMap::new()
    };
    Rollout {
        end,
        looks_taken: sim.looks_taken,
        looks_assumed: old_looks(&spec.steps),
        judged: sim.judged,
        judge_time: sim.judge_time,
        looks: sim.looks,
        reason: sim.reason,
        recorded: sim.recorded,
        config: sim.config,
        detail,
    }
}

/// An event within a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    StartPlan,
    Flush(usize),
    Tick(usize),
}

impl<'a> Sim<'a> {
    fn new(
        prep: &'a Prepared,
        pop: Population,
        buckets: Vec<Bucket>,
        config: PolicyConfig,
        rng: Rng,
        seed: u64,
        start_ms: i64,
    ) -> Sim<'a> {
        let spec = &prep.spec;
        let recorder_mode = spec.recording == Recording::Recorder;
        let per_minute = (60_000 / spec.flush_every_ms) as usize;
        let routing = Routing::route(prep, &pop, &buckets, &config);
        Sim {
            prep,
            pop,
            buckets,
            config,
            routing,
            rng,
            events_rng: Rng::new(mix(seed, 0x6576_656e_7473)),
            names_rng: Rng::new(mix(seed, 0x006e_616d_6573)),
            drawn: Drawn {
                minute: minute_of(at(start_ms)),
                start_ms,
                slices: vec![Vec::new(); per_minute],
                tenants: vec![Vec::new(); per_minute],
            },
            means: Vec::new(),
            replicas: if recorder_mode {
                Vec::new()
            } else {
                (0..spec.replicas)
                    .map(|_| Replica::new(spec.by_cohort()))
                    .collect()
            },
            recorders: if recorder_mode {
                (0..spec.replicas)
                    .map(|r| {
                        TrafficRecorder::new(&format!("r{r}"), TrafficRecorder::DEFAULT_MAX_PENDING)
                    })
                    .collect()
            } else {
                Vec::new()
            },
            store: Arc::new(MemoryTraffic::default()),
            runtime: recorder_mode.then(|| {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime")
            }),
            cache: TrafficCache::new(),
            closed: None,
            complete: BTreeMap::new(),
            complete_through: minute_of(at(start_ms)) - 1,
            memo: None,
            judging: None,
            incidents: Vec::new(),
            bursts: BTreeMap::new(),
            diurnal_phase: 0.0,
            start_ms,
            plan_start_ms: start_ms,
            looks: Vec::new(),
            looks_taken: 0,
            judged: 0,
            judge_time: Duration::ZERO,
            recorded: Default::default(),
            reason: None,
        }
    }

    fn spec(&self) -> &WorldSpec {
        &self.prep.spec
    }

    fn run(&mut self) -> End {
        let prep = self.prep;
        let spec = &prep.spec;
        let slice_ms = spec.flush_every_ms;
        let replicas = spec.replicas;
        let phase = self.rng.below(spec.plan_every_ms as u64) as i64;
        let ticks: Vec<i64> = (0..replicas)
            .map(|j| (phase + j as i64 * spec.plan_every_ms / replicas as i64) % spec.plan_every_ms)
            .collect();
        let flush_phase = self.rng.below(slice_ms as u64) as i64;
        let flushes: Vec<i64> = (0..replicas)
            .map(|r| (flush_phase + r as i64 * slice_ms / replicas as i64) % slice_ms)
            .collect();
        let mut s = self.start_ms;
        loop {
            // The slice that ended now reaches each replica's totals …
            if s > self.start_ms {
                self.deliver(s - slice_ms);
            }
            // … and a minute that begins now is drawn with the routing of now.
            if (s - self.start_ms) % 60_000 == 0 {
                self.draw_minute(s);
            }
            let mut events: Vec<(i64, Event)> = Vec::new();
            if (s..s + slice_ms).contains(&self.plan_start_ms) {
                events.push((self.plan_start_ms, Event::StartPlan));
            }
            for (r, &f) in flushes.iter().enumerate() {
                events.push((s + f, Event::Flush(r)));
            }
            for (j, &th) in ticks.iter().enumerate() {
                let off = (th - s).rem_euclid(spec.plan_every_ms);
                if off < slice_ms {
                    events.push((s + off, Event::Tick(j)));
                }
            }
            events.sort();
            for (t, e) in events {
                match e {
                    Event::StartPlan => self.start_plan(t),
                    Event::Flush(r) => self.flush(r, t),
                    Event::Tick(j) if t >= self.plan_start_ms => {
                        if let Some(end) = self.tick(j, t) {
                            return end;
                        }
                    }
                    Event::Tick(_) => {}
                }
            }
            s += slice_ms;
            if s - self.plan_start_ms > spec.limit_ms() {
                return End::TimedOut;
            }
        }
    }

    fn start_plan(&mut self, t: i64) {
        let spec = &self.prep.spec;
        let request = Request {
            policy: self.config.policy_name.clone(),
            expected_revision: Some(self.config.revision),
            operation: Operation::StartPlan {
                steps: spec.steps.clone(),
                at_end: spec.at_end,
            },
            actor: Actor::new("world").unwrap(),
            reason: String::new(),
        };
        self.config = ops::plan(Some(&self.config), &request, at(t))
            .expect("start the plan")
            .after
            .expect("a config");
        self.step_started(t);
    }

    /// A step began at `t` (its share is set): route again, draw the slices not yet served
    /// again, schedule the step's incident.
    fn step_started(&mut self, t: i64) {
        self.routing = Routing::route(self.prep, &self.pop, &self.buckets, &self.config);
        self.closed = None;
        self.memo = None;
        let slice = ((t - self.drawn.start_ms) / self.spec().flush_every_ms) as usize;
        for k in slice + 1..self.drawn.slices.len() {
            self.drawn.slices[k].clear();
            self.drawn.tenants[k].clear();
        }
        let Some(incident) = self.spec().events.incident else {
            self.draw(slice + 1);
            return;
        };
        if let Some(Status::Running { step, .. }) = self.config.plan.as_ref().map(|p| &p.status) {
            let hold_ms = i64::from(self.spec().steps[*step].hold_secs) * 1000;
            let len_ms = i64::from(incident.minutes) * 60_000;
            let room = (hold_ms - len_ms).max(0);
            let begin = t + (self.events_rng.uniform() * room as f64) as i64;
            self.incidents.push((begin, begin + len_ms));
        }
        self.draw(slice + 1);
    }

    /// Draws the minute that begins at `s`.
    fn draw_minute(&mut self, s: i64) {
        self.drawn.minute = minute_of(at(s));
        self.drawn.start_ms = s;
        for k in 0..self.drawn.slices.len() {
            self.drawn.slices[k].clear();
            self.drawn.tenants[k].clear();
        }
        self.draw(0);
    }

    /// Draws the requests of the current minute's slices `from..`, with the routing of now:
    /// runs of slices alike (inside a shared incident or not) at a time.
    fn draw(&mut self, from: usize) {
        let per_minute = self.drawn.slices.len();
        let slice_ms = self.spec().flush_every_ms;
        let incident_at = |sim: &Sim, k: usize| {
            let s = sim.drawn.start_ms + k as i64 * slice_ms;
            match sim.spec().events.incident {
                Some(i) if sim.incidents.iter().any(|&(a, b)| (a..b).contains(&s)) => i.error_rate,
                _ => 0.0,
            }
        };
        let mut k = from;
        while k < per_minute {
            let rate = incident_at(self, k);
            let mut end = k + 1;
            while end < per_minute && incident_at(self, end) == rate {
                end += 1;
            }
            self.draw_run(k, end, rate);
            k = end;
        }
    }

    /// The means of each stream over a whole minute (`incident`: the extra 5xx rate).
    fn stream_means(&mut self, incident: f64) {
        let spec = &self.prep.spec;
        let day = 86_400_000.0;
        let s = self.drawn.start_ms;
        let load = 1.0
            + spec.events.diurnal
                * (std::f64::consts::TAU * (s - self.start_ms) as f64 / day + self.diurnal_phase)
                    .sin();
        let minute = (s - self.start_ms).div_euclid(60_000);
        let burst = match (self.bursts.get(&minute), spec.events.bursts) {
            (Some(&t), Some(b)) => {
                let p = self.routing.rate[t];
                Some((
                    self.routing.stream[t],
                    load * self.pop.weight[t] * (b.error_rate.max(p) - p),
                ))
            }
            _ => None,
        };
        self.means.clear();
        for (i, st) in self.routing.streams.iter().enumerate() {
            let requests = st.requests * load;
            let mut errors = st.errors * load;
            if let Some((_, extra)) = burst.filter(|b| b.0 == i) {
                errors += extra;
            }
            let requests = requests.max(errors);
            let mut ok = requests - errors;
            errors += incident * ok;
            ok *= 1.0 - incident;
            if st.version == CANARY {
                ok *= spec.canary_kept();
                errors *= spec.canary_kept();
            }
            self.means.push((ok, errors));
        }
    }

    /// Draws slices `from..to` of the current minute: each stream's successes and 5xx
    /// (Poisson), and each request's latency bucket, replica and slice.
    fn draw_run(&mut self, from: usize, to: usize, incident: f64) {
        self.stream_means(incident);
        let per_minute = self.drawn.slices.len();
        let fraction = (to - from) as f64 / per_minute as f64;
        let slices = (to - from) as u64;
        let replicas = self.prep.spec.replicas as u64;
        let named = !self.recorders.is_empty();
        for (st, &(ok, errors)) in self.routing.streams.iter().zip(&self.means) {
            let Some(latency) = &st.latency else {
                continue;
            };
            let n_ok = self.rng.poisson(ok * fraction);
            let n = n_ok + self.rng.poisson(errors * fraction);
            let bits = Packed::stream_bits(st);
            for i in 0..n {
                let failed = u32::from(i >= n_ok);
                let bucket = latency.sample(self.rng.next_u64()) as u32;
                let w = self.rng.next_u64();
                let replica = (((w >> 32) * replicas) >> 32) as u32;
                let k = from + (((w & 0xffff_ffff) * slices) >> 32) as usize;
                self.drawn.slices[k].push(Packed(bits | bucket | failed << 6 | replica << 7));
                if named {
                    let t = st.tenant.unwrap_or_else(|| {
                        let total = st.members.last().map_or(0.0, |m| m.0);
                        let u = self.names_rng.uniform() * total;
                        let i = st.members.partition_point(|m| m.0 <= u);
                        st.members[i.min(st.members.len() - 1)].1
                    });
                    self.drawn.tenants[k].push(t as u32);
                }
            }
        }
    }

    /// The slice of the current minute that began at `s` reaches each replica's totals (or its
    /// real recorder).
    fn deliver(&mut self, s: i64) {
        let k = ((s - self.drawn.start_ms) / self.spec().flush_every_ms) as usize;
        let minute = self.drawn.minute;
        debug_assert_eq!(minute, minute_of(at(s)));
        let requests = std::mem::take(&mut self.drawn.slices[k]);
        if self.recorders.is_empty() {
            for &r in &requests {
                self.replicas[r.replica()].minute(minute).add(r);
            }
        } else {
            let tenants = std::mem::take(&mut self.drawn.tenants[k]);
            for (&r, &t) in requests.iter().zip(&tenants) {
                let status = if r.failed() { 503 } else { 200 };
                let latency = Duration::from_micros(representative_us(r.bucket()));
                let tenant = self.pop.ids[t as usize].as_str();
                debug_assert_eq!(
                    usize::from(cohort_of(self.buckets[t as usize].get())),
                    r.cohort()
                );
                let who = Who {
                    tenant: Some(tenant),
                    cohort: Some(r.cohort() as u16),
                };
                self.recorders[r.replica()].record_outcome(
                    minute,
                    POLICY,
                    version_name(r.version()),
                    who,
                    status,
                    latency,
                    Via::Layer,
                );
                self.recorded[r.version()].record(status, latency);
            }
            self.drawn.tenants[k] = tenants;
            self.drawn.tenants[k].clear();
        }
        self.drawn.slices[k] = requests;
        self.drawn.slices[k].clear();
    }

    /// Replica `r` writes the minute still filling if it changed (version totals), and the
    /// minute that ended whole (totals and detail), as the real recorder's flush does.
    fn flush(&mut self, r: usize, t: i64) {
        if let Some(recorder) = self.recorders.get(r) {
            self.store.set_now(t * 1000);
            let runtime = self.runtime.as_ref().expect("a runtime in recorder mode");
            runtime
                .block_on(recorder.flush(&*self.store, minute_of(at(t))))
                .expect("an in-memory flush");
            return;
        }
        let now_minute = minute_of(at(t));
        let name = format!("r{r}");
        let replica = &mut self.replicas[r];
        replica.seq += 1;
        let mut docs = Vec::new();
        for totals in &mut replica.slots {
            let Some(minute) = totals.minute else {
                continue;
            };
            let whole = minute < now_minute;
            if !whole && !totals.dirty {
                continue;
            }
            let versions: BTreeMap<String, VersionTraffic> = [STABLE, CANARY]
                .into_iter()
                .map(|v| (version_name(v).to_string(), totals.traffic(v)))
                .filter(|(_, t)| t.requests > 0)
                .collect();
            let mut detail = BTreeMap::new();
            if whole {
                if totals.by_cohort {
                    detail.insert(POLICY.to_string(), totals.take_detail(&self.pop.ids));
                }
                for v in [STABLE, CANARY] {
                    self.recorded[v].add(&totals.traffic(v));
                }
                totals.reset();
            } else {
                totals.dirty = false;
            }
            let policies = [(POLICY.to_string(), versions)].into();
            docs.extend(splitter::traffic::shard(
                minute,
                &name,
                replica.seq,
                t.div_euclid(1000),
                &policies,
                &detail,
            ));
        }
        if !docs.is_empty() {
            self.cache.apply(docs);
        }
    }

    /// The judge before's read: the stored traffic of the step so far, closed minutes summed
    /// once (or every minute every time, with `exact_reads` and for the recorder).
    fn read(&mut self, from: i64, to: i64, t: i64) -> (VersionTraffic, VersionTraffic) {
        let (canary, stable) = match &self.config.canary_version {
            Some(c) => (c.to_string(), self.config.stable_version.to_string()),
            None => return Default::default(),
        };
        let exact = match self.spec().recording {
            Recording::Direct { exact_reads } => exact_reads,
            Recording::Recorder => {
                self.refresh(t);
                true
            }
        };
        if exact {
            let minutes = self.cache.policy(POLICY, from, to).minutes;
            return before::sum_versions(&minutes, &canary, &stable);
        }
        // Minute m is final once every replica flushed after its last slice was delivered (at
        // the start of minute m + 1): from (m + 1) min + one flush interval on.
        let final_through = ((t - self.prep.spec.flush_every_ms).div_euclid(60_000) - 1).min(to);
        if self.closed.as_ref().is_none_or(|c| c.from != from) {
            self.closed = Some(ClosedSum {
                from,
                through: from - 1,
                sum: Default::default(),
            });
        }
        let closed = self.closed.as_mut().expect("set above");
        if final_through > closed.through {
            let minutes = self
                .cache
                .policy(POLICY, closed.through + 1, final_through)
                .minutes;
            let (c, s) = before::sum_versions(&minutes, &canary, &stable);
            closed.sum.0.add(&c);
            closed.sum.1.add(&s);
            closed.through = final_through;
        }
        let (mut c, mut s) = closed.sum.clone();
        if to > closed.through {
            let minutes = self.cache.policy(POLICY, closed.through + 1, to).minutes;
            let (oc, os) = before::sum_versions(&minutes, &canary, &stable);
            c.add(&oc);
            s.add(&os);
        }
        (c, s)
    }

    /// Recorder mode: the cache reads what the store got since its last read.
    fn refresh(&self, t: i64) {
        let runtime = self.runtime.as_ref().expect("a runtime in recorder mode");
        runtime
            .block_on(self.cache.refresh(&*self.store, at(t)))
            .expect("an in-memory read");
    }

    /// The judge before on the step so far (the controller before issue #17).
    fn verdict_before(&mut self, plan: &Plan, t: i64) -> Option<Verdict> {
        let (Status::Running { since, .. } | Status::Paused { since, .. }) = &plan.status else {
            return None;
        };
        self.config.canary_version.as_ref()?;
        let (from, to) = (minute_of(*since), minute_of(at(t)));
        let (c, s) = self.read(from, to, t);
        let started = Instant::now();
        let v = before::judge(&c, &s, &old_guards(&plan.guards), old_looks(&plan.steps));
        self.judged += 1;
        self.judge_time += started.elapsed();
        Some(from_old(v))
    }

    /// `app::ssr::plans::verdict`: the product's judge on the step's baseline and complete
    /// minutes, memoised while they are the same.
    fn verdict_after(&mut self, plan: &Plan, t: i64) -> Option<Verdict> {
        let (step, entered) = plan.step_entered()?;
        let canary = self.config.canary_version.as_ref()?.to_string();
        let stable = self.config.stable_version.to_string();
        let step = analysis::Step {
            canary: &canary,
            stable: &stable,
            share: plan.steps.get(step)?.share.get(),
            entered: entered.as_second(),
            now: t.div_euclid(1000),
            index: step,
            steps: plan.steps.len(),
        };
        let (pre, post) = step.minutes(&plan.guards);
        let (from, last) = (*pre.start(), *post.end());
        let recorder = self.spec().recording == Recording::Recorder;
        if self.spec().recording == (Recording::Direct { exact_reads: true }) {
            let detail = self.cache.detail(POLICY, from, last);
            let started = Instant::now();
            let v = analysis::judge(&detail, &step, &plan.guards);
            self.judged += 1;
            self.judge_time += started.elapsed();
            if self.spec().trace {
                self.complete = detail.into_iter().filter(|(m, _)| *m <= last).collect();
            }
            return Some(v);
        }
        let key = (step.entered, step.share, last);
        if let Some((k, v)) = &self.memo {
            if *k == key {
                return Some(v.clone());
            }
        }
        if recorder {
            self.refresh(t);
        }
        // Complete minutes never change again: each is read once.
        while self.complete_through < last {
            let m = self.complete_through + 1;
            if let Some(d) = self.cache.detail(POLICY, m, m).remove(&m) {
                self.complete.insert(m, d);
            }
            self.complete_through = m;
        }
        self.complete = self.complete.split_off(&from);
        let started = Instant::now();
        let v = match &mut self.judging {
            Some(j) => j.verdict(&self.complete, &step, &plan.guards),
            None => {
                let mut j = analysis::Judging::new(&self.complete, &step, &plan.guards);
                let v = j.verdict(&self.complete, &step, &plan.guards);
                self.judging = Some(j);
                v
            }
        };
        self.judged += 1;
        self.judge_time += started.elapsed();
        self.memo = Some((key, v.clone()));
        Some(v)
    }

    /// One controller tick of replica `j` at `t` (`server/src/controller.rs::tick`).
    fn tick(&mut self, j: usize, t: i64) -> Option<End> {
        let plan = self.config.plan.clone()?;
        let Status::Running { step, .. } = plan.status else {
            return None;
        };
        let verdict = match self.spec().judge {
            Judge::Before => self.verdict_before(&plan, t),
            Judge::After => self.verdict_after(&plan, t),
        };
        self.looks_taken += 1;
        let decided = next_move(&plan, verdict.as_ref(), at(t));
        if self.spec().trace {
            if let Some(v) = &verdict {
                let reason = v.reason.split("; most affected").next().unwrap_or("");
                self.looks.push(Look {
                    at_ms: t - self.plan_start_ms,
                    replica: j,
                    step,
                    outcome: v.outcome,
                    canary: (v.canary.requests, v.canary.errors),
                    stable: (v.stable.requests, v.stable.errors),
                    reason: reason.to_string(),
                    decided: decided.as_ref().map(|m| format!("{m:?}")),
                });
            }
        }
        let decided = decided?;
        let (Move::Advance(why) | Move::RollBack(why) | Move::Pause(why)) = &decided;
        self.reason = Some(why.clone());
        let (operation, reason) = match &decided {
            Move::Advance(why) => (
                Operation::AdvancePlan { why: short(why) },
                format!("step passed: {why}"),
            ),
            Move::RollBack(why) => (
                Operation::AbortPlan { why: short(why) },
                format!("rolled back automatically: {why}"),
            ),
            Move::Pause(why) => (
                Operation::PausePlan { why: short(why) },
                format!("paused: {why}"),
            ),
        };
        let request = Request {
            policy: self.config.policy_name.clone(),
            expected_revision: Some(self.config.revision),
            operation,
            actor: Actor::new(format!("plan of {}", self.config.policy_name)).unwrap(),
            reason: short(&reason),
        };
        self.config = ops::plan(Some(&self.config), &request, at(t))
            .expect("the controller's move applies")
            .after
            .expect("a config");
        let after_secs = ((t - self.plan_start_ms) / 1000) as u64;
        match &self.config.plan.as_ref().expect("a plan").status {
            Status::Running { .. } => {
                self.step_started(t);
                None
            }
            Status::Paused { .. } => Some(End::Paused { after_secs }),
            Status::Ended { .. } if self.config.rolled_back => Some(End::RolledBack { after_secs }),
            Status::Ended { .. } => Some(End::Promoted { after_secs }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A cell: many rollouts of one world, summed up.
// ---------------------------------------------------------------------------------------------

/// Which of the judge's tests rolled a canary back, from the verdict's own words (either
/// judge's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Errors,
    Latency,
    Other,
}

impl Cause {
    pub fn of(reason: &str) -> Cause {
        if reason.starts_with("error rate") || reason.starts_with("5xx") {
            Cause::Errors
        } else if reason.starts_with("latency") || reason.starts_with("share") {
            Cause::Latency
        } else {
            Cause::Other
        }
    }
}

/// A pause's reason up to its first `:` or `(`: what kind of pause it is.
pub fn reason_kind(reason: &str) -> String {
    reason
        .split([':', '('])
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The pause reason of a sample-ratio mismatch.
pub const SAMPLE_RATIO: &str = "sample-ratio mismatch";

/// A cell's rollouts, summed up.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub judge: Judge,
    pub rollouts: usize,
    pub rolled_back: usize,
    pub promoted: usize,
    pub paused: usize,
    pub timed_out: usize,
    /// Seconds from the plan's start to each rollback (each pause), sorted.
    pub rollback_secs: Vec<u64>,
    pub pause_secs: Vec<u64>,
    /// Rollbacks by the error-rate test, by the latency tests.
    pub by_errors: usize,
    pub by_latency: usize,
    /// Pauses by [`reason_kind`].
    pub pauses: BTreeMap<String, usize>,
    pub looks_taken: u64,
    pub looks_assumed: u32,
    /// Verdicts computed, and the time they took (all rollouts).
    pub judged: u64,
    pub judge_time: Duration,
    pub elapsed: Duration,
}

impl CellResult {
    pub fn rollback_rate(&self) -> f64 {
        self.rolled_back as f64 / self.rollouts.max(1) as f64
    }

    /// Upper end of the 95 % Clopper–Pearson interval of the rollback rate.
    pub fn rollback_upper(&self) -> f64 {
        clopper_pearson_upper(self.rolled_back, self.rollouts)
    }

    /// Lower end of the 95 % Clopper–Pearson interval of the rate rolled back within `secs`.
    pub fn caught_lower(&self, secs: u64) -> f64 {
        1.0 - clopper_pearson_upper(self.rollouts - self.rolled_back_within(secs), self.rollouts)
    }

    pub fn rolled_back_within(&self, secs: u64) -> usize {
        self.rollback_secs.iter().filter(|&&s| s <= secs).count()
    }

    pub fn paused_within(&self, secs: u64) -> usize {
        self.pause_secs.iter().filter(|&&s| s <= secs).count()
    }

    /// Pauses whose reason is of `kind`.
    pub fn paused_for(&self, kind: &str) -> usize {
        self.pauses.get(kind).copied().unwrap_or(0)
    }

    /// Minutes to the rollback at quantile `q` of the rolled-back rollouts.
    pub fn rollback_minutes(&self, q: f64) -> Option<f64> {
        percentile(&self.rollback_secs, q).map(|s| s as f64 / 60.0)
    }

    /// Minutes to the rollback at quantile `q` of *all* rollouts (one never rolled back counts
    /// as never): `None` when that quantile was never rolled back.
    pub fn rollback_minutes_of_all(&self, q: f64) -> Option<f64> {
        let mut all = self.rollback_secs.clone();
        all.resize(self.rollouts, u64::MAX);
        percentile(&all, q)
            .filter(|&s| s != u64::MAX)
            .map(|s| s as f64 / 60.0)
    }

    /// Minutes to the pause at quantile `q` of all rollouts (as above).
    pub fn pause_minutes_of_all(&self, q: f64) -> Option<f64> {
        let mut all = self.pause_secs.clone();
        all.resize(self.rollouts, u64::MAX);
        percentile(&all, q)
            .filter(|&s| s != u64::MAX)
            .map(|s| s as f64 / 60.0)
    }

    /// Pauses by kind, in words: `kind × n; …`.
    pub fn pause_words(&self) -> String {
        if self.pauses.is_empty() {
            return "—".into();
        }
        self.pauses
            .iter()
            .map(|(k, n)| format!("{k} × {n}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs `rollouts` rollouts of `spec` on `threads` threads; rollout `i` has seed
/// `mix(seed, i)`, so the result does not depend on the threads (and a cell run with either
/// judge draws the same worlds).
pub fn run_cell(spec: &WorldSpec, rollouts: usize, seed: u64, threads: usize) -> CellResult {
    let started = Instant::now();
    let prep = Prepared::new(spec);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Rollout)>> = Mutex::new(Vec::with_capacity(rollouts));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= rollouts {
                    return;
                }
                let mut r = run_rollout(&prep, mix(seed, i as u64));
                r.looks.clear();
                r.detail.clear();
                results.lock().unwrap().push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    let mut cell = CellResult {
        judge: spec.judge,
        rollouts,
        rolled_back: 0,
        promoted: 0,
        paused: 0,
        timed_out: 0,
        rollback_secs: Vec::new(),
        pause_secs: Vec::new(),
        by_errors: 0,
        by_latency: 0,
        pauses: BTreeMap::new(),
        looks_taken: 0,
        looks_assumed: old_looks(&spec.steps),
        judged: 0,
        judge_time: Duration::ZERO,
        elapsed: Duration::ZERO,
    };
    for (_, r) in results {
        cell.looks_taken += r.looks_taken;
        cell.judged += r.judged;
        cell.judge_time += r.judge_time;
        let reason = r.reason.as_deref().unwrap_or("");
        match r.end {
            End::RolledBack { after_secs } => {
                cell.rolled_back += 1;
                cell.rollback_secs.push(after_secs);
                match Cause::of(reason) {
                    Cause::Errors => cell.by_errors += 1,
                    Cause::Latency => cell.by_latency += 1,
                    Cause::Other => {}
                }
            }
            End::Promoted { .. } => cell.promoted += 1,
            End::Paused { after_secs } => {
                cell.paused += 1;
                cell.pause_secs.push(after_secs);
                *cell.pauses.entry(reason_kind(reason)).or_default() += 1;
            }
            End::TimedOut => cell.timed_out += 1,
        }
    }
    cell.rollback_secs.sort_unstable();
    cell.pause_secs.sort_unstable();
    cell.elapsed = started.elapsed();
    cell
}

/// Threads to use: every core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---------------------------------------------------------------------------------------------
// Looking at the world itself (for the smoke test).
// ---------------------------------------------------------------------------------------------

/// The concentration κ that per-tenant observations imply, by the method of moments over the
/// tenants with at least `min_requests`: the spread of observed rates less its binomial part
/// is the spread of true rates, μ(1−μ)/(κ+1). `None` when no spread is left (equal rates).
pub fn implied_kappa(observed: &[(u64, u64)], min_requests: u64) -> Option<f64> {
    let used: Vec<(f64, f64)> = observed
        .iter()
        .filter(|(n, _)| *n >= min_requests)
        .map(|&(n, e)| (n as f64, e as f64 / n as f64))
        .collect();
    let k = used.len() as f64;
    let mean = used.iter().map(|(_, r)| r).sum::<f64>() / k;
    let spread = used.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / (k - 1.0);
    let noise = used
        .iter()
        .map(|(n, _)| mean * (1.0 - mean) / n)
        .sum::<f64>()
        / k;
    let between = spread - noise;
    (between > 0.0).then(|| mean * (1.0 - mean) / between - 1.0)
}

/// `minutes` minutes with the canary held at `share` (no plan, no events), through the same
/// routing, draws, replicas and documents a rollout uses: the version totals over the
/// replicas (stable, canary), the minutes by tenant as the cache sums them (when the spec
/// builds them), and the canary cohort's expected 5xx and requests per minute.
pub fn hold(prep: &Prepared, seed: u64, share: BasisPoints, minutes: i64) -> Held {
    let spec = &prep.spec;
    let (pop, buckets, salt, rng) = world(spec, seed);
    let mut config = PolicyConfig::new(
        PolicyName::new(POLICY).unwrap(),
        Version::new("v1").unwrap(),
        Some(Version::new("v2").unwrap()),
        share,
        Actor::new("world").unwrap(),
        at(0),
    );
    config.salt = salt;
    let mut sim = Sim::new(prep, pop, buckets, config, rng, seed, 0);
    let canary = sim.routing.streams.iter().filter(|s| s.version == CANARY);
    let expected = canary.fold((0.0, 0.0), |a, s| (a.0 + s.errors, a.1 + s.requests));
    let kept = spec.canary_kept();
    let canary_tenants = sim.routing.canary.iter().filter(|&&c| c).count();
    let slice_ms = spec.flush_every_ms;
    for m in 0..minutes {
        let s = m * 60_000;
        sim.draw_minute(s);
        for k in 0..60_000 / slice_ms {
            sim.deliver(s + k * slice_ms);
        }
        for r in 0..spec.replicas {
            sim.flush(r, s + 60_000 + r as i64);
        }
    }
    if spec.recording == Recording::Recorder {
        sim.refresh(minutes * 60_000 + 10_000);
    }
    Held {
        stable: sim.recorded[STABLE].clone(),
        canary: sim.recorded[CANARY].clone(),
        detail: sim.cache.detail(POLICY, 0, minutes),
        expected_canary_errors_per_minute: expected.0 * kept,
        expected_canary_requests_per_minute: expected.1 * kept,
        canary_tenants,
        buckets: sim.buckets,
        weight: sim.pop.weight,
    }
}

/// What [`hold`] saw.
pub struct Held {
    pub stable: VersionTraffic,
    pub canary: VersionTraffic,
    /// Minute → the minute by tenant, replicas summed.
    pub detail: BTreeMap<i64, Detail>,
    pub expected_canary_errors_per_minute: f64,
    pub expected_canary_requests_per_minute: f64,
    pub canary_tenants: usize,
    /// The tenants' buckets under the salt and their requests a minute.
    pub buckets: Vec<Bucket>,
    pub weight: Vec<f64>,
}
