//! Statistical checks of the bucketing with fixed seeds (deterministic: same result every run).

mod support;

use splitter::{bucket, BUCKETS};
use support::SplitMix;

const N: usize = 1_000_000;

fn tenants(seed: u64, n: usize) -> Vec<String> {
    let mut rng = SplitMix(seed);
    (0..n).map(|_| rng.tenant()).collect()
}

/// `observed` of N successes is within 5 standard deviations of a Binomial(N, p).
fn assert_binomial(observed: usize, p: f64, what: &str) {
    let mean = N as f64 * p;
    let sd = (N as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (observed as f64 - mean).abs() < 5.0 * sd,
        "{what}: {observed}, expected {mean:.0} ± {:.0}",
        5.0 * sd
    );
}

/// Chi-square over the 10 000 buckets: with 9 999 degrees of freedom the statistic has mean
/// 9 999 and standard deviation ~141.4; we accept within 5 standard deviations.
#[test]
fn buckets_are_uniform_chi_square() {
    let mut counts = vec![0u64; BUCKETS as usize];
    for t in tenants(1, N) {
        counts[bucket("payment-api", &t).get() as usize] += 1;
    }
    let expected = N as f64 / f64::from(BUCKETS);
    let chi2: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    let df = f64::from(BUCKETS) - 1.0;
    let sd = (2.0 * df).sqrt();
    assert!(
        (chi2 - df).abs() < 5.0 * sd,
        "chi-square {chi2:.1} is not within 5 sd of {df}"
    );
    assert!(counts.iter().all(|&c| c > 0), "every bucket is reachable");
}

/// The share of tenants on canary is within 5 binomial standard deviations of the target.
#[test]
fn binomial_bounds_at_each_share() {
    let ts = tenants(2, N);
    let buckets: Vec<u16> = ts.iter().map(|t| bucket("search-api", t).get()).collect();
    for bp in [1u16, 100, 500, 1000, 2500, 5000, 9999] {
        let on = buckets.iter().filter(|&&b| b < bp).count();
        assert_binomial(on, f64::from(bp) / 10_000.0, &format!("{bp}bp on canary"));
    }
}

/// Two policies at 10% share about p² = 1% of tenants: salts make them independent.
#[test]
fn policies_are_independent() {
    let ts = tenants(3, N);
    let p = 0.10;
    let both = ts
        .iter()
        .filter(|t| bucket("payment-api", t).get() < 1000 && bucket("search-api", t).get() < 1000)
        .count();
    assert_binomial(both, p * p, "on canary for both policies");
    // The unsalted original design would put the very same 10% on canary for both.
    assert!((both as f64) < 0.5 * N as f64 * p);
}
