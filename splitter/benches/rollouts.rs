//! False rollbacks and detection time of the canary analysis, on simulated per-minute traffic
//! (fixed seeds): `cargo bench -p splitter --bench rollouts`. See BENCHMARKS.md.

#[path = "../tests/support/rollouts.rs"]
mod rollouts;

use rollouts::{
    detection_minutes, rollout, zipf_request_share, Behaviour, Draws, End, Rng, PRESET,
};
use splitter::analysis::Guards;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let guards = Guards::default();
    false_rollbacks(&guards);
    detection(&guards);
}

/// 1 000 healthy rollouts through the preset plan: canary = stable, error rate 0.1 %–1 %,
/// 10–100 000 requests a minute (log-uniform), Zipf tenants.
fn false_rollbacks(guards: &Guards) {
    let mut rng = Rng(2026);
    let (mut rolled_back, mut completed, mut paused) = (0, 0, 0);
    for i in 0..1_000 {
        let per_minute = 10f64.powf(1.0 + 4.0 * rng.uniform()).round() as u64;
        let error_rate = 0.001 + 0.009 * rng.uniform();
        let healthy = Behaviour {
            error_rate,
            median_ms: 20.0,
        };
        let salt = format!("healthy-{i}");
        let shares: Vec<(f64, f64)> = PRESET
            .iter()
            .map(|(s, _)| (*s, zipf_request_share(&salt, 10_000, *s)))
            .collect();
        let share_of = |s: f64| shares.iter().find(|(x, _)| *x == s).map_or(s, |(_, r)| *r);
        match rollout(
            &mut rng, &PRESET, per_minute, share_of, healthy, healthy, guards,
        ) {
            End::RolledBack(_) => rolled_back += 1,
            End::Completed => completed += 1,
            End::Paused => paused += 1,
        }
    }
    println!("healthy rollouts: 1000; rolled back {rolled_back} ({:.1} %), completed {completed}, paused (too little traffic) {paused}", rolled_back as f64 / 10.0);
}

/// Minutes from the first bad minute to the rollback, p50 and p95 of 200 runs per cell.
fn detection(guards: &Guards) {
    let stable = Behaviour {
        error_rate: 0.005,
        median_ms: 20.0,
    };
    let cases = [
        (
            "2× errors",
            Behaviour {
                error_rate: 0.010,
                ..stable
            },
        ),
        (
            "5× errors",
            Behaviour {
                error_rate: 0.025,
                ..stable
            },
        ),
        (
            "20× errors",
            Behaviour {
                error_rate: 0.100,
                ..stable
            },
        ),
        (
            "+50% p95",
            Behaviour {
                median_ms: 30.0,
                ..stable
            },
        ),
    ];
    println!("| canary | share | canary req/min | p50 min | p95 min | caught in 60 min |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut rng = Rng(99);
    for (name, canary) in cases {
        for share in [0.01, 0.05, 0.10] {
            for canary_per_minute in [100u64, 1_000, 10_000] {
                let per_minute = (canary_per_minute as f64 / share).round() as u64;
                let mut minutes: Vec<u32> = (0..200)
                    .filter_map(|_| {
                        detection_minutes(&mut rng, share, per_minute, canary, stable, guards, 60)
                    })
                    .collect();
                minutes.sort_unstable();
                let q = |p: f64| {
                    minutes
                        .get(((minutes.len() as f64 * p).ceil() as usize).saturating_sub(1))
                        .map_or("—".to_string(), |m| m.to_string())
                };
                println!(
                    "| {name} | {:.0}% | {canary_per_minute} | {} | {} | {}/200 |",
                    share * 100.0,
                    q(0.5),
                    q(0.95),
                    minutes.len()
                );
            }
        }
    }
}
