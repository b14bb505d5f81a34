//! A world simulator for canary rollouts (issue #17, "Measured"): tenants with their own
//! volumes, error rates and latencies, routed by the product's real bucketing, served by three
//! replicas that record minutes of traffic in the product's own document model, and judged by
//! the product's real judge and plan controller decision at the controller's cadence.
//!
//! The generator is written from the world it describes, not from the judge's statistics:
//!
//! - **Tenants** ([`Population`]): `tenants` ids `tenant-00000…` in rank order; tenant `i`
//!   sends `requests_per_minute × (i+1)^-zipf / H` requests a minute (Zipf; `H` normalises).
//!   Its 5xx rate is the same for all ([`Rates::Equal`], the independent-request world) or
//!   drawn once from Beta(μκ, (1−μ)κ) ([`Rates::Beta`]: mean μ, concentration κ); its latency
//!   median is `median_ms × exp(tenant_latency_sd × N(0,1))`. A healthy canary serves each
//!   tenant exactly as stable does: same rate, same latency.
//! - **Requests**: every tenant's requests arrive as a Poisson stream, each failing
//!   independently at the tenant's current rate, each taking a lognormal latency around the
//!   tenant's median (log-sd `request_latency_sd`). A version's traffic is the superposition of
//!   the streams of the tenants routed to it — a Poisson stream of rate Σλ, with Σλp failures —
//!   so each 5-second slice of each replica is drawn per version and per latency bucket, which
//!   is *exactly* that superposition (not an approximation of it), at a fraction of the cost of
//!   drawing 10 000 tenants every slice. The one approximation: a failed request's latency
//!   bucket is drawn from the version's request-weighted latency mixture (not its
//!   failure-weighted one); tenant medians are snapped to a 0.01 log-unit grid (±0.5 %).
//! - **Routing**: the real [`splitter::bucket`] of each tenant under the policy's salt (one salt
//!   per rollout, so every rollout has its own fixed canary cohort), decided by the real
//!   [`splitter::decision::evaluate`] against the config's current share.
//! - **Events** ([`Events`]): a top-`top` tenant failing at `error_rate` for one minute, about
//!   every `every_minutes` (a Bernoulli draw each minute); diurnal load `1 + A sin(2πt/1 day + φ)`
//!   with a random phase; a shared upstream incident once per step (starting uniformly within
//!   the step's hold) that fails an extra `error_rate` of *every* request of both versions for
//!   `minutes`.
//! - **Bad canaries** ([`Canary`]): k × each tenant's 5xx rate; latencies × f (so every quantile,
//!   p95 too, is f ×); "at the margin": each tenant's rate × (1 + max(error_margin / μ,
//!   error_margin_relative)) from the plan's own [`Guards`]; a canary that loses a fraction of
//!   its requests before they are recorded.
//! - **Replicas and recording**: `replicas` replicas each serve a third of every stream; each
//!   keeps running totals per minute and flushes every `flush_every_ms` (own phase) a
//!   [`ReplicaMinute`] with a growing `seq`, exactly as [`splitter::recorder::TrafficRecorder`]
//!   does, into one real [`TrafficCache`] (the shared stored data). [`Recording::Recorder`]
//!   replays every request through real `TrafficRecorder`s and a store instead (slow; the smoke
//!   test checks the two give identical verdicts).
//! - **Judging**: each replica ticks every `plan_every_ms` on its own phase (staggered by a third);
//!   a tick does what `server/src/controller.rs` + `app/src/ssr/plans.rs::verdict` do: the
//!   plan's step minutes from the cache, [`sum_versions`], [`judge`] with the plan's guards and
//!   [`splitter::plans::Plan::looks`], [`next_move`], and the move through the real
//!   [`splitter::ops::plan`]. A rollback by any replica ends the rollout.
//! - **Plan**: [`splitter::plans::preset`] (5 % 15 min, 10 % 30 min, 50 % 1 h, 100 % 2 h),
//!   promote at the end, the default guards.

#![allow(dead_code)]

use splitter::analysis::{judge, sum_versions, Guards, Outcome, Verdict};
use splitter::decision::evaluate;
use splitter::ops::{self, NewPolicy, Operation, Request};
use splitter::plans::{next_move, preset, AtEnd, Move, Status, Step};
use splitter::recorder::TrafficRecorder;
use splitter::store::TrafficStore;
use splitter::traffic::{
    latency_buckets, minute_of, ReplicaMinute, StoredMinute, VersionTraffic, Via, LATENCY_BOUNDS_US,
};
use splitter::traffic_cache::TrafficCache;
use splitter::{Actor, BasisPoints, Bucket, PolicyConfig, PolicyName, Version};
use std::collections::{BTreeMap, BTreeSet};
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
    /// cache; closed minutes are summed once (`exact_reads`: every look reads every minute).
    Direct { exact_reads: bool },
    /// Every request through a real [`TrafficRecorder`] per replica, flushed to an in-memory
    /// [`TrafficStore`] that the cache reads ([`TrafficCache::refresh`]) before each look.
    Recorder,
}

/// One cell of the grid: the world, the canary, the plan and the fleet.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    pub tenants: usize,
    pub zipf: f64,
    /// All tenants' requests a minute (at the diurnal mean).
    pub requests_per_minute: f64,
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
    pub recording: Recording,
    /// Keep every look's numbers in [`Rollout::looks`] (tests).
    pub trace: bool,
}

impl WorldSpec {
    /// The reference world: 10 000 Zipf(1.1) tenants, `canary_per_minute` canary requests a
    /// minute on average at 5 % of tenants (so 20 × that in all), 0.5 % mean 5xx, 20 ms
    /// median latency, tenant latency log-sd 0.2, request log-sd 0.5, the product's preset plan
    /// (promote at the end), 3 replicas judging every 10 s and flushing every 5 s.
    pub fn new(canary_per_minute: f64, rates: Rates, canary: Canary) -> WorldSpec {
        WorldSpec {
            tenants: 10_000,
            zipf: 1.1,
            requests_per_minute: canary_per_minute / 0.05,
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

/// `probs[cell × buckets + b]`: the chance that a request of a tenant in `cell` lands in
/// latency bucket `b`.
pub struct Kernel {
    buckets: usize,
    cells: usize,
    probs: Vec<f64>,
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
        }
        Kernel {
            buckets,
            cells,
            probs,
        }
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
        Prepared {
            stable: Kernel::new(spec, 1.0),
            canary: Kernel::new(spec, spec.canary_latency_factor()),
            guards: Guards::default(),
            spec: spec.clone(),
        }
    }
}

/// One version's rates under the current routing.
#[derive(Clone, Default)]
struct SideRates {
    /// Σλ and Σλp of the tenants routed to it (per minute, diurnal mean).
    requests: f64,
    errors: f64,
    /// Latency bucket probabilities (the tenants' mixture) and their CDF, over `lo..=hi`.
    probs: Vec<f64>,
    cdf: Vec<f64>,
    lo: usize,
    hi: usize,
}

/// The routing of every tenant and the rates it gives each version.
struct Cohorts {
    canary: Vec<bool>,
    /// Each tenant's 5xx rate on the version it is routed to.
    rate: Vec<f64>,
    sides: [SideRates; 2],
}

const STABLE: usize = 0;
const CANARY: usize = 1;

impl Cohorts {
    fn route(
        prep: &Prepared,
        pop: &Population,
        buckets: &[Bucket],
        config: &PolicyConfig,
    ) -> Cohorts {
        let n = pop.ids.len();
        let mut canary = Vec::with_capacity(n);
        let mut rate = Vec::with_capacity(n);
        let mut sums = [(0.0f64, 0.0f64); 2];
        let cells = prep.stable.cells;
        let mut grid = [vec![0.0f64; cells], vec![0.0f64; cells]];
        for t in 0..n {
            let (is_canary, _) = evaluate(config, &pop.ids[t], || buckets[t]);
            let side = usize::from(is_canary);
            let p = if is_canary {
                prep.spec.canary_rate(pop.rate[t], &prep.guards)
            } else {
                pop.rate[t]
            };
            let w = pop.weight[t];
            sums[side].0 += w;
            sums[side].1 += w * p;
            grid[side][pop.cell[t]] += w;
            canary.push(is_canary);
            rate.push(p);
        }
        let side = |s: usize, kernel: &Kernel| {
            let nb = kernel.buckets;
            let mut probs = vec![0.0; nb];
            if sums[s].0 > 0.0 {
                for (c, &w) in grid[s].iter().enumerate() {
                    if w > 0.0 {
                        let row = &kernel.probs[c * nb..(c + 1) * nb];
                        for (p, k) in probs.iter_mut().zip(row) {
                            *p += w * k;
                        }
                    }
                }
                for p in &mut probs {
                    *p /= sums[s].0;
                }
            }
            let lo = probs.iter().position(|&p| p > 1e-12).unwrap_or(0);
            let hi = probs.iter().rposition(|&p| p > 1e-12).unwrap_or(0);
            let mut acc = 0.0;
            let total: f64 = probs[lo..=hi].iter().sum();
            let cdf = probs[lo..=hi]
                .iter()
                .map(|p| {
                    acc += p;
                    acc / total.max(f64::MIN_POSITIVE)
                })
                .collect();
            SideRates {
                requests: sums[s].0,
                errors: sums[s].1,
                probs,
                cdf,
                lo,
                hi,
            }
        };
        Cohorts {
            sides: [side(STABLE, &prep.stable), side(CANARY, &prep.canary)],
            canary,
            rate,
        }
    }
}

/// One version's requests in one slice of one replica, per latency bucket.
#[derive(Clone, Copy)]
struct Slice {
    ok: [u64; MAX_BUCKETS],
    err: [u64; MAX_BUCKETS],
}

impl Slice {
    fn draw(rng: &mut Rng, side: &SideRates, ok_mean: f64, err_mean: f64) -> Slice {
        let mut s = Slice {
            ok: [0; MAX_BUCKETS],
            err: [0; MAX_BUCKETS],
        };
        if side.requests <= 0.0 {
            return s;
        }
        for b in side.lo..=side.hi {
            s.ok[b] = rng.poisson(ok_mean * side.probs[b]);
        }
        for _ in 0..rng.poisson(err_mean) {
            let u = rng.uniform();
            let i = side
                .cdf
                .partition_point(|&c| c <= u)
                .min(side.cdf.len() - 1);
            s.err[side.lo + i] += 1;
        }
        s
    }

    fn requests(&self) -> u64 {
        self.ok.iter().sum::<u64>() + self.err.iter().sum::<u64>()
    }

    /// As the recorder would total these requests (each at its bucket's upper bound).
    fn traffic(&self) -> VersionTraffic {
        let mut t = VersionTraffic::default();
        let last = (0..MAX_BUCKETS).rposition(|b| self.ok[b] + self.err[b] > 0);
        let Some(last) = last else {
            return t;
        };
        t.latency = (0..=last).map(|b| self.ok[b] + self.err[b]).collect();
        t.requests = t.latency.iter().sum();
        t.errors = self.err.iter().sum();
        t.latency_sum_us = t
            .latency
            .iter()
            .enumerate()
            .map(|(b, &n)| n * representative_us(b))
            .sum();
        t
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
    /// Paused: a step had no verdict for twice its hold.
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
    pub z: Option<f64>,
    pub decided: Option<String>,
}

/// What one rollout did.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub end: End,
    /// Looks taken (all replicas).
    pub looks_taken: u64,
    /// What the judge was told it may take ([`splitter::plans::Plan::looks`]).
    pub looks_assumed: u32,
    /// Every look, with [`WorldSpec::trace`].
    pub looks: Vec<Look>,
    /// The verdict's reason for the move that ended the rollout.
    pub reason: Option<String>,
    /// Requests recorded per version over the rollout (stable, canary).
    pub recorded: [VersionTraffic; 2],
    /// The configuration at the end.
    pub config: PolicyConfig,
}

/// One replica's recording state (direct mode).
#[derive(Default)]
struct ReplicaTotals {
    minutes: BTreeMap<i64, [VersionTraffic; 2]>,
    dirty: BTreeSet<i64>,
    seq: u64,
}

/// The closed minutes of the current step, summed once (direct mode).
struct ClosedSum {
    from: i64,
    through: i64,
    sum: (VersionTraffic, VersionTraffic),
}

struct Sim<'a> {
    prep: &'a Prepared,
    pop: Population,
    buckets: Vec<Bucket>,
    config: PolicyConfig,
    cohorts: Cohorts,
    rng: Rng,
    cache: TrafficCache,
    replicas: Vec<ReplicaTotals>,
    recorders: Vec<TrafficRecorder>,
    store: Arc<MemoryTraffic>,
    runtime: Option<tokio::runtime::Runtime>,
    closed: Option<ClosedSum>,
    incidents: Vec<(i64, i64)>,
    /// Minute index (since the start of the simulation) → bursting tenant.
    bursts: BTreeMap<i64, usize>,
    diurnal_phase: f64,
    start_ms: i64,
    plan_start_ms: i64,
    looks: Vec<Look>,
    looks_taken: u64,
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

/// Runs one rollout of `prep`'s world with `seed` (everything random in it — tenants, salt,
/// phases, traffic — follows from the seed).
pub fn run_rollout(prep: &Prepared, seed: u64) -> Rollout {
    let spec = &prep.spec;
    let mut rng = Rng::new(seed);
    let pop = Population::draw(spec, &mut rng);
    let salt = salt_of(seed);
    let buckets: Vec<Bucket> = pop.ids.iter().map(|t| splitter::bucket(&salt, t)).collect();

    // Simulated time: a minute boundary, the plan starting somewhere in that minute.
    let start_ms = 1_800_000_000_000i64 / 60_000 * 60_000;
    let plan_start_ms = start_ms + rng.below(60_000) as i64;
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
    let total_minutes = spec.limit_ms() / 60_000 + 2;
    let mut bursts = BTreeMap::new();
    if let Some(b) = spec.events.bursts {
        for m in 0..total_minutes {
            if rng.uniform() < 1.0 / b.every_minutes {
                bursts.insert(m, rng.below(b.top.min(spec.tenants) as u64) as usize);
            }
        }
    }
    let recorder_mode = spec.recording == Recording::Recorder;
    let cohorts = Cohorts::route(prep, &pop, &buckets, &config);
    let mut sim = Sim {
        prep,
        cohorts,
        pop,
        buckets,
        config,
        rng,
        cache: TrafficCache::new(),
        replicas: (0..spec.replicas)
            .map(|_| ReplicaTotals::default())
            .collect(),
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
        closed: None,
        incidents: Vec::new(),
        bursts,
        diurnal_phase,
        start_ms,
        plan_start_ms,
        looks: Vec::new(),
        looks_taken: 0,
        recorded: Default::default(),
        reason: None,
    };
    let end = sim.run();
    Rollout {
        end,
        looks_taken: sim.looks_taken,
        looks_assumed: sim.config.plan.as_ref().map_or(0, |p| p.looks()),
        looks: sim.looks,
        reason: sim.reason,
        recorded: sim.recorded,
        config: sim.config,
    }
}

/// An event within a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    StartPlan,
    Flush(usize),
    Tick(usize),
}

impl Sim<'_> {
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
        let mut pending: Option<(i64, Vec<[Slice; 2]>)> = None;
        let mut s = self.start_ms;
        loop {
            // The slice that ended now reaches each replica's totals …
            if let Some((slice_start, slices)) = pending.take() {
                self.deliver(slice_start, &slices);
            }
            // … and the next one is served with the routing of now.
            pending = Some((s, self.serve(s, slice_ms)));
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

    /// A step began at `t` (its share is set): route again, schedule its incident.
    fn step_started(&mut self, t: i64) {
        self.cohorts = Cohorts::route(self.prep, &self.pop, &self.buckets, &self.config);
        self.closed = None;
        let Some(incident) = self.spec().events.incident else {
            return;
        };
        let Some(Status::Running { step, .. }) = self.config.plan.as_ref().map(|p| &p.status)
        else {
            return;
        };
        let hold_ms = i64::from(self.spec().steps[*step].hold_secs) * 1000;
        let len_ms = i64::from(incident.minutes) * 60_000;
        let room = (hold_ms - len_ms).max(0);
        let begin = t + (self.rng.uniform() * room as f64) as i64;
        self.incidents.push((begin, begin + len_ms));
    }

    /// Draws one slice of traffic starting at `s` for every replica (stable, canary).
    fn serve(&mut self, s: i64, slice_ms: i64) -> Vec<[Slice; 2]> {
        let prep = self.prep;
        let spec = &prep.spec;
        let day = 86_400_000.0;
        let load = 1.0
            + spec.events.diurnal
                * (std::f64::consts::TAU * (s - self.start_ms) as f64 / day + self.diurnal_phase)
                    .sin();
        let minute = (s - self.start_ms).div_euclid(60_000);
        let incident = spec
            .events
            .incident
            .filter(|_| self.incidents.iter().any(|&(a, b)| (a..b).contains(&s)))
            .map_or(0.0, |i| i.error_rate);
        let burst = self.bursts.get(&minute).copied();
        let per = slice_ms as f64 / 60_000.0 / spec.replicas as f64;
        let mut means = [(0.0, 0.0); 2];
        for (v, side) in self.cohorts.sides.iter().enumerate() {
            let mut requests = side.requests * load;
            let mut errors = side.errors * load;
            if let (Some(t), Some(b)) = (burst, spec.events.bursts) {
                if usize::from(self.cohorts.canary[t]) == v {
                    let p = self.cohorts.rate[t];
                    errors += load * self.pop.weight[t] * (b.error_rate.max(p) - p);
                }
            }
            requests = requests.max(errors);
            let mut ok = requests - errors;
            errors += incident * ok;
            ok *= 1.0 - incident;
            if v == CANARY {
                ok *= spec.canary_kept();
                errors *= spec.canary_kept();
            }
            means[v] = (ok * per, errors * per);
        }
        (0..spec.replicas)
            .map(|_| {
                let stable = Slice::draw(
                    &mut self.rng,
                    &self.cohorts.sides[STABLE],
                    means[0].0,
                    means[0].1,
                );
                let canary = Slice::draw(
                    &mut self.rng,
                    &self.cohorts.sides[CANARY],
                    means[1].0,
                    means[1].1,
                );
                [stable, canary]
            })
            .collect()
    }

    fn version(&self, v: usize) -> String {
        if v == STABLE { "v1" } else { "v2" }.to_string()
    }

    /// The slice that began at `s` reaches each replica's totals (or its real recorder).
    fn deliver(&mut self, s: i64, slices: &[[Slice; 2]]) {
        let minute = minute_of(at(s));
        for (r, pair) in slices.iter().enumerate() {
            for (v, slice) in pair.iter().enumerate() {
                if slice.requests() == 0 {
                    continue;
                }
                let traffic = slice.traffic();
                self.recorded[v].add(&traffic);
                if let Some(recorder) = self.recorders.get(r) {
                    let version = self.version(v);
                    for b in 0..MAX_BUCKETS {
                        let latency = Duration::from_micros(representative_us(b));
                        for (count, status) in [(slice.ok[b], 200), (slice.err[b], 503)] {
                            for _ in 0..count {
                                recorder.record_outcome(
                                    minute,
                                    POLICY,
                                    &version,
                                    status,
                                    latency,
                                    Via::Layer,
                                );
                            }
                        }
                    }
                } else {
                    let totals = &mut self.replicas[r];
                    totals.minutes.entry(minute).or_default()[v].add(&traffic);
                    totals.dirty.insert(minute);
                }
            }
        }
    }

    /// Replica `r` writes every minute it changed since its last flush.
    fn flush(&mut self, r: usize, t: i64) {
        if let Some(recorder) = self.recorders.get(r) {
            self.store.set_now(t * 1000);
            let runtime = self.runtime.as_ref().expect("a runtime in recorder mode");
            runtime
                .block_on(recorder.flush(&*self.store, minute_of(at(t))))
                .expect("an in-memory flush");
            return;
        }
        let totals = &mut self.replicas[r];
        totals.seq += 1;
        let mut docs = Vec::new();
        for minute in std::mem::take(&mut totals.dirty) {
            let pair = &totals.minutes[&minute];
            let versions: BTreeMap<String, VersionTraffic> = pair
                .iter()
                .enumerate()
                .filter(|(_, t)| t.requests > 0)
                .map(|(v, t)| (if v == STABLE { "v1" } else { "v2" }.to_string(), t.clone()))
                .collect();
            docs.push(ReplicaMinute {
                minute,
                replica: format!("r{r}"),
                shard: 0,
                shards: 1,
                seq: totals.seq,
                written_at: t.div_euclid(1000),
                policies: [(POLICY.to_string(), versions)].into(),
            });
        }
        // A closed minute is never written again: forget it.
        let now_minute = minute_of(at(t));
        totals.minutes.retain(|m, _| *m >= now_minute - 1);
        if !docs.is_empty() {
            self.cache.apply(docs);
        }
    }

    /// The stored traffic of the step so far: `app::ssr::plans::verdict`'s read, with closed
    /// minutes summed once (or every minute every time, with `exact_reads` and for the recorder).
    fn read(&mut self, from: i64, to: i64, t: i64) -> (VersionTraffic, VersionTraffic) {
        let (canary, stable) = match &self.config.canary_version {
            Some(c) => (c.to_string(), self.config.stable_version.to_string()),
            None => return Default::default(),
        };
        let exact = match self.spec().recording {
            Recording::Direct { exact_reads } => exact_reads,
            Recording::Recorder => {
                let runtime = self.runtime.as_ref().expect("a runtime in recorder mode");
                runtime
                    .block_on(self.cache.refresh(&*self.store, at(t)))
                    .expect("an in-memory read");
                true
            }
        };
        if exact {
            let minutes = self.cache.policy(POLICY, from, to).minutes;
            return sum_versions(&minutes, &canary, &stable);
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
            let (c, s) = sum_versions(&minutes, &canary, &stable);
            closed.sum.0.add(&c);
            closed.sum.1.add(&s);
            closed.through = final_through;
        }
        let (mut c, mut s) = closed.sum.clone();
        if to > closed.through {
            let minutes = self.cache.policy(POLICY, closed.through + 1, to).minutes;
            let (oc, os) = sum_versions(&minutes, &canary, &stable);
            c.add(&oc);
            s.add(&os);
        }
        (c, s)
    }

    /// `app::ssr::plans::verdict` on the shared stored data.
    fn verdict(&mut self, t: i64) -> Option<Verdict> {
        let plan = self.config.plan.clone()?;
        let (Status::Running { since, .. } | Status::Paused { since, .. }) = &plan.status else {
            return None;
        };
        self.config.canary_version.as_ref()?;
        let (from, to) = (minute_of(*since), minute_of(at(t)));
        let (c, s) = self.read(from, to, t);
        Some(judge(&c, &s, &plan.guards, plan.looks()))
    }

    /// One controller tick of replica `j` at `t` (`server/src/controller.rs::tick`).
    fn tick(&mut self, j: usize, t: i64) -> Option<End> {
        let plan = self.config.plan.clone()?;
        let Status::Running { step, .. } = plan.status else {
            return None;
        };
        let verdict = self.verdict(t);
        self.looks_taken += 1;
        let decided = next_move(&plan, verdict.as_ref(), at(t));
        if self.spec().trace {
            if let Some(v) = &verdict {
                self.looks.push(Look {
                    at_ms: t - self.plan_start_ms,
                    replica: j,
                    step,
                    outcome: v.outcome,
                    canary: (v.canary.requests, v.canary.errors),
                    stable: (v.stable.requests, v.stable.errors),
                    z: v.z,
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

/// Which of the judge's tests rolled a canary back, from the verdict's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Errors,
    Latency,
    Other,
}

impl Cause {
    pub fn of(reason: &str) -> Cause {
        if reason.starts_with("error rate") {
            Cause::Errors
        } else if reason.starts_with("latency") {
            Cause::Latency
        } else {
            Cause::Other
        }
    }
}

/// A cell's rollouts, summed up.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub rollouts: usize,
    pub rolled_back: usize,
    pub promoted: usize,
    pub paused: usize,
    pub timed_out: usize,
    /// Seconds from the plan's start to each rollback, sorted.
    pub rollback_secs: Vec<u64>,
    /// Rollbacks by the error-rate test, by the latency test.
    pub by_errors: usize,
    pub by_latency: usize,
    pub looks_taken: u64,
    pub looks_assumed: u32,
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

    /// Minutes to the rollback, at quantile `q` of the rolled-back rollouts.
    pub fn rollback_minutes(&self, q: f64) -> Option<f64> {
        percentile(&self.rollback_secs, q).map(|s| s as f64 / 60.0)
    }
}

/// Runs `rollouts` rollouts of `spec` on `threads` threads; rollout `i` has seed
/// `mix(seed, i)`, so the result does not depend on the threads.
pub fn run_cell(spec: &WorldSpec, rollouts: usize, seed: u64, threads: usize) -> CellResult {
    let started = Instant::now();
    let prep = Prepared::new(spec);
    let next = AtomicUsize::new(0);
    type Row = (usize, End, u64, u32, Option<String>);
    let results: Mutex<Vec<Row>> = Mutex::new(Vec::with_capacity(rollouts));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= rollouts {
                    return;
                }
                let r = run_rollout(&prep, mix(seed, i as u64));
                results
                    .lock()
                    .unwrap()
                    .push((i, r.end, r.looks_taken, r.looks_assumed, r.reason));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    let mut cell = CellResult {
        rollouts,
        rolled_back: 0,
        promoted: 0,
        paused: 0,
        timed_out: 0,
        rollback_secs: Vec::new(),
        by_errors: 0,
        by_latency: 0,
        looks_taken: 0,
        looks_assumed: 0,
        elapsed: Duration::ZERO,
    };
    for (_, end, looks, assumed, reason) in results {
        cell.looks_taken += looks;
        cell.looks_assumed = assumed;
        match end {
            End::RolledBack { after_secs } => {
                cell.rolled_back += 1;
                cell.rollback_secs.push(after_secs);
                match Cause::of(reason.as_deref().unwrap_or("")) {
                    Cause::Errors => cell.by_errors += 1,
                    Cause::Latency => cell.by_latency += 1,
                    Cause::Other => {}
                }
            }
            End::Promoted { .. } => cell.promoted += 1,
            End::Paused { .. } => cell.paused += 1,
            End::TimedOut => cell.timed_out += 1,
        }
    }
    cell.rollback_secs.sort_unstable();
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

/// Traffic of `minutes` minutes with the canary held at `share`, summed over the replicas
/// (stable, canary), through the same routing and slices a rollout uses; and the canary
/// cohort's expected 5xx per minute and requests per minute (diurnal mean, no events).
pub fn hold(prep: &Prepared, seed: u64, share: BasisPoints, minutes: i64) -> Held {
    let spec = &prep.spec;
    let mut rng = Rng::new(seed);
    let pop = Population::draw(spec, &mut rng);
    let salt = salt_of(seed);
    let buckets: Vec<Bucket> = pop.ids.iter().map(|t| splitter::bucket(&salt, t)).collect();
    let mut config = PolicyConfig::new(
        PolicyName::new(POLICY).unwrap(),
        Version::new("v1").unwrap(),
        Some(Version::new("v2").unwrap()),
        share,
        Actor::new("world").unwrap(),
        at(0),
    );
    config.salt = salt;
    let cohorts = Cohorts::route(prep, &pop, &buckets, &config);
    let expected = (
        cohorts.sides[CANARY].errors * spec.canary_kept(),
        cohorts.sides[CANARY].requests * spec.canary_kept(),
    );
    let canary_tenants = cohorts.canary.iter().filter(|&&c| c).count();
    let mut sim = Sim {
        prep,
        pop,
        buckets,
        config,
        cohorts,
        rng,
        cache: TrafficCache::new(),
        replicas: (0..spec.replicas)
            .map(|_| ReplicaTotals::default())
            .collect(),
        recorders: Vec::new(),
        store: Arc::new(MemoryTraffic::default()),
        runtime: None,
        closed: None,
        incidents: Vec::new(),
        bursts: BTreeMap::new(),
        diurnal_phase: 0.0,
        start_ms: 0,
        plan_start_ms: 0,
        looks: Vec::new(),
        looks_taken: 0,
        recorded: Default::default(),
        reason: None,
    };
    let slice_ms = spec.flush_every_ms;
    let mut s = 0;
    while s < minutes * 60_000 {
        let slices = sim.serve(s, slice_ms);
        sim.deliver(s, &slices);
        s += slice_ms;
    }
    Held {
        stable: sim.recorded[STABLE].clone(),
        canary: sim.recorded[CANARY].clone(),
        expected_canary_errors_per_minute: expected.0,
        expected_canary_requests_per_minute: expected.1,
        canary_tenants,
    }
}

/// What [`hold`] saw.
pub struct Held {
    pub stable: VersionTraffic,
    pub canary: VersionTraffic,
    pub expected_canary_errors_per_minute: f64,
    pub expected_canary_requests_per_minute: f64,
    pub canary_tenants: usize,
}
