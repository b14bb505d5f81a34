//! The judge before issue #17, kept verbatim (test-only) so the world simulator can measure it
//! side by side with the product's analysis. Judging a canary against stable over the same minutes: pure functions (minutes and guards
//! in, a verdict with its numbers out), no clock and no I/O, so they are tested exhaustively on
//! simulated traffic.
//!
//! - **Error rate**: a one-sided two-proportion z-test of "canary's 5xx rate exceeds stable's by
//!   more than the margin" (the larger of `error_margin` and `error_margin_relative` × stable's
//!   rate), on the step's cumulative minutes. The test is repeated every
//!   minute, so its level is split over every look a plan can make (Bonferroni): with
//!   `alpha` = 1 % and 225 looks, a look fails only beyond z = 3.92. The absolute margin keeps
//!   one canary 5xx at a near-zero stable rate from counting as a regression, and so does
//!   `min_errors` (fewer canary 5xx than that never fail).
//! - **Latency**: how many canary requests are slower than stable's p95 (and, with enough
//!   requests, its p99), against how many of stable's are, by the same test: a regression is
//!   more than `slow_margin` (p95: 5 points, i.e. 10 % slow instead of 5 %; p99: a fifth of it)
//!   beyond the same z threshold, *and* a p95 (p99) difference above `latency_slack_ms` (so 2 ms
//!   against 1 ms is not "twice as slow"). Comparing counts, not two noisy quantiles, keeps the
//!   test honest at low traffic.
//! - **Too little traffic** (fewer canary requests than `min_requests`) is inconclusive, never a
//!   pass or a fail; no traffic at all is "no data".

use serde::{Deserialize, Serialize};
use splitter::traffic::VersionTraffic;
use std::collections::BTreeMap;

/// What a plan tolerates before it rolls back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guards {
    /// Canary requests needed (over the step so far) before anything is judged.
    pub min_requests: u64,
    /// Tolerated excess of the canary's 5xx rate over stable's: at least this much (absolute,
    /// 0.002 = 0.2 points) …
    pub error_margin: f64,
    /// … or this fraction of stable's rate if that is more (0.5: 1.5 × stable's rate passes).
    pub error_margin_relative: f64,
    /// Canary 5xx needed before the error rate can fail: a handful of errors is no evidence
    /// (and the test's normal approximation needs a few).
    pub min_errors: u64,
    /// Overall false-alarm level of the error-rate test over a whole plan (split over looks).
    pub alpha: f64,
    /// Tolerated excess share of canary requests slower than stable's p95 (0.05: 10 % of the
    /// canary's requests instead of stable's 5 %); at p99, a fifth of it.
    pub slow_margin: f64,
    /// A latency difference below this is never a regression (milliseconds).
    pub latency_slack_ms: f64,
}

impl Default for Guards {
    fn default() -> Guards {
        Guards {
            min_requests: 100,
            error_margin: 0.002,
            error_margin_relative: 0.5,
            min_errors: 5,
            alpha: 0.01,
            slow_margin: 0.05,
            latency_slack_ms: 5.0,
        }
    }
}

/// Canary requests needed before p99 is compared (below it, only p95).
pub const P99_MIN_REQUESTS: u64 = 1_000;

/// One version's totals over the judged minutes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub requests: u64,
    pub errors: u64,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Side {
    fn from(t: &VersionTraffic) -> Side {
        let ms = |q: f64| t.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
        Side {
            requests: t.requests,
            errors: t.errors,
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
        }
    }

    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// The outcome of one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Enough data and no regression.
    Pass,
    /// A regression: the plan rolls back.
    Fail,
    /// Too few canary requests to judge: the step waits.
    Inconclusive,
    /// No traffic at all in the judged minutes.
    NoData,
}

/// A verdict with the numbers it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub canary: Side,
    pub stable: Side,
    /// The error-rate test's statistic and the value it had to exceed to fail.
    pub z: Option<f64>,
    pub z_threshold: f64,
    /// Why, in words an operator can check.
    pub reason: String,
}

/// The one-sided z beyond which a look fails: the normal quantile of `1 - alpha / looks`.
pub fn z_threshold(alpha: f64, looks: u32) -> f64 {
    normal_quantile(1.0 - alpha / f64::from(looks.max(1)))
}

/// Judges `canary` against `stable` (each summed over the same minutes). `looks`: how many
/// times a plan may judge (one per minute of its holds), for the repeated-looks correction.
pub fn judge(
    canary: &VersionTraffic,
    stable: &VersionTraffic,
    guards: &Guards,
    looks: u32,
) -> Verdict {
    let (c, s) = (Side::from(canary), Side::from(stable));
    let threshold = z_threshold(guards.alpha, looks);
    let verdict = |outcome, z, reason: String| Verdict {
        outcome,
        canary: c.clone(),
        stable: s.clone(),
        z,
        z_threshold: threshold,
        reason,
    };
    if c.requests == 0 && s.requests == 0 {
        return verdict(
            Outcome::NoData,
            None,
            "no requests recorded for either version".into(),
        );
    }
    if c.requests < guards.min_requests || s.requests == 0 {
        let why = format!(
            "{} canary and {} stable requests so far; {} canary requests are needed to judge",
            c.requests, s.requests, guards.min_requests
        );
        return verdict(Outcome::Inconclusive, None, why);
    }
    let margin = guards
        .error_margin
        .max(guards.error_margin_relative * s.error_rate());
    let z = error_z(&c, &s, margin);
    let rates = format!(
        "canary 5xx {:.2}% ({} of {}), stable {:.2}% ({} of {})",
        c.error_rate() * 100.0,
        c.errors,
        c.requests,
        s.error_rate() * 100.0,
        s.errors,
        s.requests
    );
    if z > threshold && c.errors >= guards.min_errors {
        let why = format!(
            "error rate: {rates}; z = {z:.2} > {threshold:.2} for an excess over {:.2} points",
            margin * 100.0
        );
        return verdict(Outcome::Fail, Some(z), why);
    }
    if let Some(why) = latency_regression(canary, stable, &c, &s, guards, threshold) {
        return verdict(Outcome::Fail, Some(z), why);
    }
    let latency = match (c.p95_ms, s.p95_ms) {
        (Some(a), Some(b)) => format!("p95 canary {a:.1} ms, stable {b:.1} ms"),
        _ => "no latency recorded".into(),
    };
    let why = format!("{rates}; z = {z:.2} ≤ {threshold:.2}; {latency}");
    verdict(Outcome::Pass, Some(z), why)
}

/// The z statistic of "canary's rate − stable's rate > margin" (pooled standard error; 0 when
/// neither version has an error).
pub fn error_z(c: &Side, s: &Side, margin: f64) -> f64 {
    proportion_z(c.errors, c.requests, s.errors, s.requests, margin)
}

fn latency_regression(
    canary: &VersionTraffic,
    stable: &VersionTraffic,
    c: &Side,
    s: &Side,
    guards: &Guards,
    threshold: f64,
) -> Option<String> {
    let mut checks = vec![("p95", 0.95, guards.slow_margin, c.p95_ms, s.p95_ms)];
    if c.requests >= P99_MIN_REQUESTS {
        checks.push(("p99", 0.99, guards.slow_margin / 5.0, c.p99_ms, s.p99_ms));
    }
    checks.into_iter().find_map(|(name, q, margin, canary_ms, stable_ms)| {
        let (canary_ms, stable_ms) = (canary_ms?, stable_ms?);
        if canary_ms - stable_ms <= guards.latency_slack_ms {
            return None;
        }
        let (c_slow, s_slow) = slower_than(canary, stable, q)?;
        let z = proportion_z(c_slow, canary.requests, s_slow, stable.requests, margin);
        (z > threshold).then(|| {
            format!(
                "latency: {:.1}% of canary requests slower than stable's {name} ({stable_ms:.1} ms) \
                 against {:.1}% of stable's; z = {z:.2} > {threshold:.2}; canary {name} {canary_ms:.1} ms",
                100.0 * c_slow as f64 / canary.requests.max(1) as f64,
                100.0 * s_slow as f64 / stable.requests.max(1) as f64,
            )
        })
    })
}

/// Requests of each version in the latency buckets above the one holding stable's `q` quantile.
fn slower_than(canary: &VersionTraffic, stable: &VersionTraffic, q: f64) -> Option<(u64, u64)> {
    let at = splitter::traffic::latency_bucket(stable.quantile(q)?);
    let above = |t: &VersionTraffic| t.latency.iter().skip(at + 1).sum::<u64>();
    Some((above(canary), above(stable)))
}

/// The z statistic of "canary's proportion − stable's > margin", pooled.
fn proportion_z(c_hits: u64, c_n: u64, s_hits: u64, s_n: u64, margin: f64) -> f64 {
    let (n1, n2) = (c_n as f64, s_n as f64);
    let pooled = (c_hits + s_hits) as f64 / (n1 + n2);
    // A floor on the pooled rate: with no hits at all the standard error would be 0.
    let p = pooled.max(0.5 / (n1 + n2));
    let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    (c_hits as f64 / n1 - s_hits as f64 / n2 - margin) / se
}

/// Sums each of two versions over minutes (`minutes`: minute → version → traffic).
pub fn sum_versions(
    minutes: &BTreeMap<i64, BTreeMap<String, VersionTraffic>>,
    canary: &str,
    stable: &str,
) -> (VersionTraffic, VersionTraffic) {
    let (mut c, mut s) = (VersionTraffic::default(), VersionTraffic::default());
    for versions in minutes.values() {
        if let Some(t) = versions.get(canary) {
            c.add(t);
        }
        if let Some(t) = versions.get(stable) {
            s.add(t);
        }
    }
    (c, s)
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn traffic(requests: u64, errors: u64, latency_ms: u64) -> VersionTraffic {
        let mut t = VersionTraffic::default();
        for i in 0..requests {
            let status = if i < errors { 503 } else { 200 };
            t.record(status, Duration::from_millis(latency_ms));
        }
        t
    }

    #[test]
    fn the_normal_quantile_matches_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959964),
            (0.99, 2.326348),
            (0.999_955_6, 3.92),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-3,
                "{p}: {}",
                normal_quantile(p)
            );
        }
        assert!((z_threshold(0.01, 225) - 3.92).abs() < 0.01);
    }

    #[test]
    fn a_canary_as_good_as_stable_passes() {
        let v = judge(
            &traffic(2_000, 10, 20),
            &traffic(38_000, 190, 20),
            &Guards::default(),
            225,
        );
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
        assert!(
            v.reason.contains("canary 5xx 0.50% (10 of 2000)"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn five_times_the_errors_fails_with_its_numbers() {
        let v = judge(
            &traffic(1_000, 25, 20),
            &traffic(19_000, 95, 20),
            &Guards::default(),
            225,
        );
        assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
        assert!(v.z.unwrap() > v.z_threshold);
        assert!(v.reason.contains("2.50% (25 of 1000)"), "{}", v.reason);
    }

    #[test]
    fn one_error_at_a_near_zero_stable_rate_is_not_a_regression() {
        let v = judge(
            &traffic(150, 1, 20),
            &traffic(20_000, 0, 20),
            &Guards::default(),
            225,
        );
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    }

    #[test]
    fn too_little_traffic_is_inconclusive_and_none_is_no_data() {
        let v = judge(
            &traffic(40, 40, 20),
            &traffic(1_000, 0, 20),
            &Guards::default(),
            225,
        );
        assert_eq!(
            v.outcome,
            Outcome::Inconclusive,
            "even all errors: too few to judge"
        );
        assert!(
            v.reason.contains("100 canary requests are needed"),
            "{}",
            v.reason
        );
        let none = judge(
            &VersionTraffic::default(),
            &VersionTraffic::default(),
            &Guards::default(),
            225,
        );
        assert_eq!(none.outcome, Outcome::NoData);
    }

    #[test]
    fn latency_regressions_fail_and_small_absolute_ones_do_not() {
        let slow = judge(
            &traffic(2_000, 0, 60),
            &traffic(20_000, 0, 40),
            &Guards::default(),
            225,
        );
        assert_eq!(slow.outcome, Outcome::Fail, "{}", slow.reason);
        assert!(
            slow.reason
                .starts_with("latency: 100.0% of canary requests slower"),
            "{}",
            slow.reason
        );
        let tiny = judge(
            &traffic(2_000, 0, 2),
            &traffic(20_000, 0, 1),
            &Guards::default(),
            225,
        );
        assert_eq!(tiny.outcome, Outcome::Pass, "2 ms vs 1 ms: {}", tiny.reason);
    }
}
