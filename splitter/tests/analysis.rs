//! The canary analysis on simulated rollouts (fixed seeds, no clock): healthy canaries are
//! rarely rolled back although every minute is a look, bad ones are caught fast, and too little
//! traffic never passes or fails. The full tables are `cargo bench -p splitter --bench rollouts`.

#[path = "support/rollouts.rs"]
mod rollouts;

use rollouts::{detection_minutes, rollout, zipf_request_share, Behaviour, End, Rng, PRESET};
use splitter::analysis::Guards;

const HEALTHY: Behaviour = Behaviour {
    error_rate: 0.005,
    median_ms: 20.0,
};

#[test]
fn repeated_looks_do_not_inflate_false_rollbacks() {
    let mut rng = Rng(7);
    let guards = Guards::default();
    let mut rolled_back = 0;
    for i in 0..100 {
        let per_minute = [100, 1_000, 10_000][i % 3];
        let salt = format!("healthy-{i}");
        let shares: Vec<(f64, f64)> = PRESET
            .iter()
            .map(|(s, _)| (*s, zipf_request_share(&salt, 2_000, *s)))
            .collect();
        let share_of = |s: f64| shares.iter().find(|(x, _)| *x == s).map_or(s, |(_, r)| *r);
        let end = rollout(
            &mut rng, &PRESET, per_minute, share_of, HEALTHY, HEALTHY, &guards,
        );
        rolled_back += u32::from(matches!(end, End::RolledBack(_)));
    }
    // 225 looks each; the goal is at most 1 % of healthy rollouts.
    assert!(
        rolled_back <= 1,
        "{rolled_back} of 100 healthy rollouts rolled back"
    );
}

#[test]
fn a_five_times_worse_canary_is_rolled_back_within_three_minutes() {
    let mut rng = Rng(11);
    let bad = Behaviour {
        error_rate: 0.025,
        ..HEALTHY
    };
    for _ in 0..20 {
        // 5 % of 20 000 requests a minute: 1 000 canary requests a minute.
        let m = detection_minutes(&mut rng, 0.05, 20_000, bad, HEALTHY, &Guards::default(), 30);
        assert!(m.is_some_and(|m| m <= 3), "{m:?}");
    }
}

#[test]
fn a_slower_canary_is_rolled_back() {
    let mut rng = Rng(13);
    let slow = Behaviour {
        median_ms: 30.0,
        ..HEALTHY
    };
    let m = detection_minutes(
        &mut rng,
        0.05,
        20_000,
        slow,
        HEALTHY,
        &Guards::default(),
        30,
    );
    assert!(m.is_some_and(|m| m <= 3), "{m:?}");
}

#[test]
fn too_little_traffic_pauses_rather_than_passing_or_failing() {
    let mut rng = Rng(17);
    let broken = Behaviour {
        error_rate: 1.0,
        ..HEALTHY
    };
    // 20 requests a minute at 5 %: about one canary request a minute, under 100 in 30 minutes.
    let end = rollout(
        &mut rng,
        &[(0.05, 15)],
        20,
        |s| s,
        broken,
        HEALTHY,
        &Guards::default(),
    );
    assert_eq!(end, End::Paused);
}
