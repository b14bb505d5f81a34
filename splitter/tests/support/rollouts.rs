//! Simulated rollouts over synthetic per-minute traffic (fixed seeds), judged by
//! `splitter::analysis` the way a plan judges them: each minute of a step, on the step's
//! cumulative minutes; a fail rolls back; a step advances after its hold once a look passed.
//! Shared by `tests/analysis.rs` and `benches/rollouts.rs`.

use splitter::analysis::{judge, Guards, Outcome};
use splitter::traffic::VersionTraffic;
use std::time::Duration;

/// The original recipe: (share, hold in minutes).
pub const PRESET: [(f64, u32); 4] = [(0.05, 15), (0.10, 30), (0.50, 60), (1.00, 120)];

/// How many looks a plan of `steps` may make: every minute of its holds, twice (a step whose
/// verdict is inconclusive waits up to its hold again before the plan pauses).
pub fn looks(steps: &[(f64, u32)]) -> u32 {
    steps.iter().map(|(_, hold)| hold * 2).sum()
}

/// What a version serves: its 5xx rate and its median latency (lognormal, σ = 0.5).
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    pub error_rate: f64,
    pub median_ms: f64,
}

#[path = "splitmix.rs"]
mod splitmix;
pub use splitmix::SplitMix as Rng;

/// The draws a simulation needs, on the tests' [`Rng`].
pub trait Draws {
    fn uniform(&mut self) -> f64;
    fn normal(&mut self) -> f64;
    fn binomial(&mut self, n: u64, p: f64) -> u64;
}

impl Draws for Rng {
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Binomial(n, p): exact below 64 trials, else the normal approximation (rounded, clamped).
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n < 64 {
            return (0..n).filter(|_| self.uniform() < p).count() as u64;
        }
        let mean = n as f64 * p;
        let sd = (mean * (1.0 - p)).sqrt();
        (mean + sd * self.normal()).round().clamp(0.0, n as f64) as u64
    }
}

/// One minute of one version: `n` requests. Latencies: up to 1 000 drawn, the histogram scaled
/// to `n` (more noise than `n` real requests have, never less).
pub fn minute(rng: &mut Rng, n: u64, b: Behaviour) -> VersionTraffic {
    let errors = rng.binomial(n, b.error_rate);
    let drawn = n.min(1_000);
    let mut t = VersionTraffic::default();
    for i in 0..drawn {
        let ms = b.median_ms * (0.5 * rng.normal()).exp();
        let status = if i < errors.min(drawn) { 503 } else { 200 };
        t.record(status, Duration::from_secs_f64(ms / 1000.0));
    }
    if drawn < n {
        let k = n as f64 / drawn as f64;
        for c in &mut t.latency {
            *c = (*c as f64 * k).round() as u64;
        }
        t.latency_sum_us = (t.latency_sum_us as f64 * k) as u64;
    }
    t.requests = n;
    t.errors = errors;
    t
}

/// How a simulated rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Rolled back after this many minutes from the start.
    RolledBack(u32),
    Completed,
    /// Paused: a step stayed inconclusive past its deadline.
    Paused,
}

/// The share of requests that goes to canary when a share of tenants does: tenants `t-0…` with
/// Zipf weights (tenant k sends in proportion to 1/(k+1)), bucketed by the real splitter with
/// `salt`. A few heavy tenants make it differ from the tenant share.
pub fn zipf_request_share(salt: &str, tenants: usize, share: f64) -> f64 {
    let cut = (share * 10_000.0).round() as u32;
    let (mut total, mut canary) = (0.0, 0.0);
    for k in 0..tenants {
        let w = 1.0 / (k + 1) as f64;
        total += w;
        if u32::from(splitter::bucket(salt, &format!("t-{k}")).get()) < cut {
            canary += w;
        }
    }
    canary / total
}

/// Runs `steps` with `per_minute` requests a minute, of which `request_share(step share)` go to
/// canary.
pub fn rollout(
    rng: &mut Rng,
    steps: &[(f64, u32)],
    per_minute: u64,
    request_share: impl Fn(f64) -> f64,
    canary: Behaviour,
    stable: Behaviour,
    guards: &Guards,
) -> End {
    let looks = looks(steps);
    let mut elapsed = 0;
    for &(share, hold) in steps {
        let canary_share = request_share(share).min(1.0);
        let (mut c, mut s) = (VersionTraffic::default(), VersionTraffic::default());
        let mut passed = false;
        for m in 0..hold * 2 {
            elapsed += 1;
            let to_canary = rng.binomial(per_minute, canary_share);
            c.add(&minute(rng, to_canary, canary));
            s.add(&minute(rng, per_minute - to_canary, stable));
            // At 100% there is no stable to compare with in this step: the previous steps judged.
            if share >= 1.0 && s.requests == 0 {
                passed = true;
            } else {
                match judge(&c, &s, guards, looks).outcome {
                    Outcome::Fail => return End::RolledBack(elapsed),
                    Outcome::Pass => passed = true,
                    Outcome::Inconclusive | Outcome::NoData => {}
                }
            }
            if m + 1 >= hold && passed {
                break;
            }
        }
        if !passed {
            return End::Paused;
        }
    }
    End::Completed
}

/// Minutes until a bad canary, held at `share`, is rolled back (`None`: not within `limit`).
pub fn detection_minutes(
    rng: &mut Rng,
    share: f64,
    per_minute: u64,
    canary: Behaviour,
    stable: Behaviour,
    guards: &Guards,
    limit: u32,
) -> Option<u32> {
    let looks = looks(&PRESET);
    let (mut c, mut s) = (VersionTraffic::default(), VersionTraffic::default());
    for m in 1..=limit {
        let to_canary = rng.binomial(per_minute, share);
        c.add(&minute(rng, to_canary, canary));
        s.add(&minute(rng, per_minute - to_canary, stable));
        if judge(&c, &s, guards, looks).outcome == Outcome::Fail {
            return Some(m);
        }
    }
    None
}
