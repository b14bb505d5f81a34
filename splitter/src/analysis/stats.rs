//! The numerics the analysis needs: the normal quantile, the always-valid mixture sequential
//! probability ratio (mSPRT), and the Poisson mid-p tail for small counts.

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

/// ln of the mixture likelihood ratio for "the effect exceeds `margin`", given an estimate with
/// standard error `se` and a normal mixture of width `tau` over effects beyond the margin
/// (Robbins; Johari et al., "Always valid inference"). By Ville's inequality the chance that
/// it *ever* reaches ln(1/α) under the null is at most α, however often it is computed: the
/// test's level does not depend on the number of looks, replicas or the tick cadence.
/// One-sided: 0 while the estimate is within the margin.
pub fn log_mixture_ratio(estimate: f64, margin: f64, se: f64, tau: f64) -> f64 {
    let excess = estimate - margin;
    if excess <= 0.0 || se <= 0.0 || !se.is_finite() {
        return 0.0;
    }
    let (v, t) = (se * se, tau * tau);
    0.5 * (v / (v + t)).ln() + t * excess * excess / (2.0 * v * (v + t))
}

/// ln of the average of [`log_mixture_ratio`] over several widths: still always valid (an
/// average of test martingales is one), and strong both for effects of about a margin with much
/// data and for effects many margins large with little (one narrow width alone needs far more
/// data for a large effect).
pub fn log_mixture_ratio_over(estimate: f64, margin: f64, se: f64, taus: &[f64]) -> f64 {
    if taus.is_empty() || estimate <= margin {
        return 0.0;
    }
    let logs: Vec<f64> = taus
        .iter()
        .map(|&t| log_mixture_ratio(estimate, margin, se, t))
        .collect();
    let top = logs.iter().copied().fold(f64::MIN, f64::max);
    let mean = logs.iter().map(|l| (l - top).exp()).sum::<f64>() / taus.len() as f64;
    (top + mean.ln()).max(0.0)
}

/// The mid-p upper tail of Poisson(`mean`) at `observed`: P(X > observed) + P(X = observed)/2.
/// Exact by summation up to 5 000 (beyond it the normal approximation is as good).
pub fn poisson_mid_p(observed: u64, mean: f64) -> f64 {
    if mean <= 0.0 {
        return if observed == 0 { 0.5 } else { 0.0 };
    }
    if observed > 5_000 {
        let z = (observed as f64 - mean) / mean.sqrt();
        return 1.0 - normal_cdf(z);
    }
    let ln_mean = mean.ln();
    let mut ln_pmf = -mean;
    let mut below = 0.0;
    for k in 0..observed {
        below += ln_pmf.exp();
        ln_pmf += ln_mean - ((k + 1) as f64).ln();
    }
    (1.0 - below - 0.5 * ln_pmf.exp()).max(0.0)
}

/// The standard normal CDF (Abramowitz & Stegun 7.1.26 on erfc; error < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_quantile_and_cdf_match_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959964),
            (0.99, 2.326348),
            (0.999_955_6, 3.92),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-3, "{p}");
            assert!((normal_cdf(z) - p).abs() < 1e-6, "{z}");
        }
    }

    #[test]
    fn the_mixture_ratio_is_zero_within_the_margin_and_grows_with_evidence() {
        assert_eq!(log_mixture_ratio(0.001, 0.002, 0.001, 0.01), 0.0);
        let weak = log_mixture_ratio(0.004, 0.002, 0.001, 0.01);
        let strong = log_mixture_ratio(0.008, 0.002, 0.001, 0.01);
        assert!(0.0 < strong && weak < strong, "{weak} {strong}");
        // z = 6 at a small standard error clears ln(1/0.001) = 6.9; z = 2 does not.
        assert!(log_mixture_ratio(0.062, 0.002, 0.01, 0.05) > (1000f64).ln());
        assert!(log_mixture_ratio(0.022, 0.002, 0.01, 0.05) < (1000f64).ln());
    }

    #[test]
    fn several_widths_find_a_large_effect_on_little_data() {
        // 20 points of excess over a 0.2-point margin with a 2.8-point standard error (200
        // requests): one width of 1 point sees little; the mixture over widths sees it.
        let narrow = log_mixture_ratio(0.2, 0.002, 0.028, 0.01);
        let over = log_mixture_ratio_over(0.2, 0.002, 0.028, &[0.002, 0.008, 0.032, 0.128]);
        assert!(narrow < (1200f64).ln(), "{narrow}");
        assert!(over > (1200f64).ln(), "{over}");
        assert_eq!(log_mixture_ratio_over(0.001, 0.002, 0.01, &[0.01]), 0.0);
    }

    #[test]
    fn the_poisson_mid_p_matches_hand_computed_tails() {
        // Poisson(1): P(X > 3) = 0.018988, P(X = 3) = 0.061313.
        assert!((poisson_mid_p(3, 1.0) - (0.018_988 + 0.030_657)).abs() < 1e-5);
        assert!((poisson_mid_p(0, 2.0) - (1.0 - 0.5 * (-2f64).exp())).abs() < 1e-9);
        // Far in the tail, and the normal branch is continuous with the exact one.
        assert!(poisson_mid_p(30, 5.0) < 1e-9);
        let (a, b) = (poisson_mid_p(5_000, 4_800.0), poisson_mid_p(5_001, 4_800.0));
        assert!((a - b).abs() < 1e-3, "{a} {b}");
    }
}
