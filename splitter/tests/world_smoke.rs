//! The world simulator's own checks (issue #17, "Measured"), on a small, fast grid: that the
//! world has the properties it was given (tenant spread, routing, bad canaries), that its
//! documents — version totals and the minute by cohort — are what the real recorder writes,
//! that memoising the product's verdict changes no look, and the grid's claims on a few fixed
//! rollouts each: a canary failing five times as often is rolled back by either judge, a
//! healthy canary among very different tenants is not rolled back by the product's judge, and
//! one losing requests is paused for a sample-ratio mismatch. The rates themselves are
//! measured, not asserted: `cargo bench -p splitter --bench world`.

mod world;

use splitter::cohort::{cohort_of, COHORTS};
use splitter::plans::Step;
use splitter::BasisPoints;
use std::collections::BTreeMap;
use world::{
    hold, implied_kappa, run_cell, run_rollout, salt_of, threads, Canary, End, Events, Judge,
    Population, Prepared, Rates, Recording, Rng, WorldSpec, HEAVY, SAMPLE_RATIO,
};

/// A short plan for the tests: 5 %, 10 %, 50 % for 2 minutes each, 100 % for 1.
fn short_plan() -> Vec<Step> {
    [(500, 120), (1_000, 120), (5_000, 120), (10_000, 60)]
        .map(|(bp, hold_secs)| Step {
            share: BasisPoints::new(bp).unwrap(),
            hold_secs,
        })
        .to_vec()
}

#[test]
fn tenant_rates_have_the_spread_they_were_given() {
    for kappa in [200.0, 50.0, 10.0] {
        let spec = WorldSpec::new(1_000.0, Rates::Beta { kappa }, Canary::Healthy);
        let mut estimates: Vec<f64> = (0..5)
            .map(|seed| {
                let mut rng = Rng::new(seed);
                let pop = Population::draw(&spec, &mut rng);
                // A day of each tenant's requests, as a per-tenant log would show them.
                let seen = pop.observe(&mut rng, 1_440.0);
                implied_kappa(&seen, 2_000).unwrap_or(f64::INFINITY)
            })
            .collect();
        estimates.sort_by(f64::total_cmp);
        let median = estimates[2];
        assert!(
            (median / kappa - 1.0).abs() < 0.3,
            "κ = {kappa}: the observed tenants imply κ ≈ {median:.1} ({estimates:?})"
        );
        let mut rng = Rng::new(7);
        let pop = Population::draw(&spec, &mut rng);
        let mean = pop.rate.iter().sum::<f64>() / pop.rate.len() as f64;
        assert!(
            (mean / spec.error_rate - 1.0).abs() < 0.1,
            "κ = {kappa}: mean tenant rate {mean}"
        );
    }
    // Equal rates: nothing beyond the binomial noise of each tenant's own requests.
    let spec = WorldSpec::new(1_000.0, Rates::Equal, Canary::Healthy);
    let mut rng = Rng::new(1);
    let pop = Population::draw(&spec, &mut rng);
    assert!(pop.rate.iter().all(|&p| p == spec.error_rate));
    let seen = pop.observe(&mut rng, 1_440.0);
    let implied = implied_kappa(&seen, 2_000);
    assert!(
        implied.is_none_or(|k| k > 2_000.0),
        "equal rates imply κ = {implied:?}"
    );
}

#[test]
fn tenants_send_zipf_volumes_that_add_up_to_the_load() {
    let spec = WorldSpec::new(1_000.0, Rates::Equal, Canary::Healthy);
    let pop = Population::draw(&spec, &mut Rng::new(3));
    let total: f64 = pop.weight.iter().sum();
    assert!((total / 20_000.0 - 1.0).abs() < 1e-9, "{total}");
    for (a, b) in [(0usize, 1usize), (9, 99), (99, 999)] {
        let ratio = pop.weight[a] / pop.weight[b];
        let zipf = ((b + 1) as f64 / (a + 1) as f64).powf(1.1);
        assert!((ratio / zipf - 1.0).abs() < 1e-9, "{a} vs {b}");
    }
}

/// The canary cohort's traffic follows the tenants the real bucketing routes to it (recomputed
/// here from the population and `splitter::bucket`, not from the simulator's routing), and
/// with κ = 10 cohorts differ from each other about as much as κ says.
#[test]
fn a_canary_cohort_fails_at_the_rate_of_the_tenants_routed_to_it() {
    let share = BasisPoints::new(500).unwrap();
    let minutes = 30;
    for rates in [Rates::Equal, Rates::Beta { kappa: 10.0 }] {
        let spec = WorldSpec::new(1_000.0, rates, Canary::Healthy).with_judge(Judge::Before);
        let prep = Prepared::new(&spec);
        let (mut z2, mut zsum, mut spread2) = (0.0, 0.0, 0.0);
        let salts = 40;
        for seed in 0..salts {
            // What the world says the cohort is, from scratch.
            let pop = Population::draw(&spec, &mut Rng::new(seed));
            let salt = salt_of(seed);
            let (mut w, mut wp, mut w2) = (0.0, 0.0, 0.0);
            for (t, id) in pop.ids.iter().enumerate() {
                if splitter::bucket(&salt, id).get() < share.get() {
                    w += pop.weight[t];
                    wp += pop.weight[t] * pop.rate[t];
                    w2 += pop.weight[t] * pop.weight[t];
                }
            }
            let held = hold(&prep, seed, share, minutes);
            let expected = wp * minutes as f64;
            let z = (held.canary.errors as f64 - expected) / expected.sqrt();
            z2 += z * z;
            zsum += z;
            let requests = w * minutes as f64;
            assert!(
                (held.canary.requests as f64 - requests).abs() < 5.0 * requests.sqrt(),
                "{rates:?} seed {seed}: {} canary requests, expected {requests}",
                held.canary.requests
            );
            // The cohort's true rate against the population mean, in units of the spread κ
            // implies for a cohort of these weights.
            let mu = spec.error_rate;
            if let Rates::Beta { kappa } = rates {
                let sd = (mu * (1.0 - mu) / (kappa + 1.0) * w2 / (w * w)).sqrt();
                spread2 += ((wp / w - mu) / sd).powi(2);
            } else {
                assert!((wp / w - mu).abs() < 1e-12);
            }
        }
        let n = salts as f64;
        assert!(
            (0.4..1.8).contains(&(z2 / n)) && (zsum / n).abs() < 0.6,
            "{rates:?}: observed canary 5xx vs the routed tenants' rates: mean z² {:.2}, mean z {:.2}",
            z2 / n,
            zsum / n
        );
        if let Rates::Beta { .. } = rates {
            let rms = (spread2 / n).sqrt();
            assert!(
                (0.5..1.6).contains(&rms),
                "κ = 10: cohort rates spread {rms:.2} × what κ implies"
            );
        }
    }
}

#[test]
fn a_slower_canary_is_slower_by_its_factor_and_a_lossy_one_records_less() {
    let share = BasisPoints::new(500).unwrap();
    for seed in [11u64, 12] {
        let run = |canary| {
            let spec = WorldSpec::new(1_000.0, Rates::Beta { kappa: 50.0 }, canary)
                .with_tenant_latency_sd(0.4)
                .with_judge(Judge::Before);
            hold(&Prepared::new(&spec), seed, share, 30)
        };
        let (healthy, slow, lossy) = (
            run(Canary::Healthy),
            run(Canary::SlowerBy(1.5)),
            run(Canary::Loses(0.05)),
        );
        let p95 = |t: &splitter::traffic::VersionTraffic| t.quantile(0.95).unwrap().as_secs_f64();
        let ratio = p95(&slow.canary) / p95(&healthy.canary);
        assert!(
            (1.35..1.65).contains(&ratio),
            "seed {seed}: p95 × {ratio:.3}"
        );
        let stable = p95(&slow.stable) / p95(&healthy.stable);
        assert!((0.93..1.07).contains(&stable), "stable p95 × {stable:.3}");
        // The same cohort sends this many requests; 5 % of the lossy canary's never arrive.
        let sent = healthy.expected_canary_requests_per_minute * 30.0;
        let kept = lossy.canary.requests as f64;
        assert!(
            (kept - 0.95 * sent).abs() < 4.0 * sent.sqrt(),
            "seed {seed}: {kept} of {sent:.0} recorded"
        );
        assert!(
            (healthy.canary.requests as f64 - sent).abs() < 4.0 * sent.sqrt(),
            "seed {seed}: a healthy canary records what it is sent"
        );
        let rates = (
            lossy.canary.error_rate().unwrap(),
            healthy.canary.error_rate().unwrap(),
        );
        assert!(
            (rates.0 - rates.1).abs()
                < 4.0 * (rates.1 / lossy.canary.requests as f64).sqrt() + 1e-4,
            "a lossy canary's recorded 5xx rate stays: {rates:?}"
        );
    }
}

/// The minute by cohort is the version totals split by the real bucket's cohort: it adds up to
/// them, the canary's cohorts are the share's, each cohort sends what its tenants send, and the
/// heavy tenants are the busiest.
#[test]
fn the_minutes_by_cohort_add_up_and_follow_the_tenants_buckets() {
    let share = BasisPoints::new(500).unwrap();
    let spec = WorldSpec::new(1_000.0, Rates::Beta { kappa: 50.0 }, Canary::Healthy);
    let minutes = 4;
    let held = hold(&Prepared::new(&spec), 3, share, minutes);
    assert_eq!(held.detail.len(), minutes as usize);
    // Σ cohorts = the version totals, requests, 5xx and every latency bucket.
    for (version, totals) in [("v1", &held.stable), ("v2", &held.canary)] {
        let (mut requests, mut errors) = (0, 0);
        let mut latency = vec![0u64; totals.latency.len()];
        for d in held.detail.values() {
            for c in d.cohorts[version].values() {
                requests += c.requests;
                errors += c.errors;
                assert_eq!(c.latency.iter().sum::<u64>(), c.requests);
                for (i, n) in c.latency.iter().enumerate() {
                    latency[c.from + i] += n;
                }
            }
        }
        assert_eq!(
            (requests, errors),
            (totals.requests, totals.errors),
            "{version}"
        );
        assert_eq!(latency, totals.latency, "{version}");
    }
    // The canary's cohorts are those below the share; each cohort's requests are its tenants'.
    let mut rate = vec![0.0; usize::from(COHORTS)];
    for (b, w) in held.buckets.iter().zip(&held.weight) {
        rate[usize::from(cohort_of(b.get()))] += w;
    }
    let (mut z2, mut n) = (0.0, 0.0);
    let mut seen = BTreeMap::new();
    for d in held.detail.values() {
        for (version, cohorts) in &d.cohorts {
            for (&k, c) in cohorts {
                assert_eq!(version == "v2", k < 50, "cohort {k} on {version}");
                *seen.entry(k).or_insert(0u64) += c.requests;
            }
        }
    }
    for (k, &expected) in rate.iter().enumerate() {
        let expected = expected * minutes as f64;
        let got = seen.get(&(k as u16)).copied().unwrap_or(0) as f64;
        if expected > 0.0 {
            z2 += (got - expected).powi(2) / expected;
            n += 1.0;
        }
    }
    assert!(
        (0.85..1.15).contains(&(z2 / n)),
        "cohort requests vs their tenants': mean z² {:.2}",
        z2 / n
    );
    // Heavy: at most 10 a replica-minute, tenants drawn one by one, tenant-00000 the busiest.
    for d in held.detail.values() {
        assert!(
            !d.heavy.is_empty() && d.heavy.len() <= 30,
            "{}",
            d.heavy.len()
        );
        assert!(d
            .heavy
            .iter()
            .all(|h| h.tenant.as_str() < format!("tenant-{HEAVY:05}").as_str()));
        let top = d.heavy.iter().max_by_key(|h| h.counts.requests).unwrap();
        assert_eq!(top.tenant, "tenant-00000");
        let k = usize::from(cohort_of(held.buckets[0].get()));
        let cohort = &d.cohorts[&top.version][&(k as u16)];
        assert!(top.counts.requests <= cohort.requests && top.counts.errors <= cohort.errors);
    }
}

/// Whatever the judge, a canary failing five times as often as stable on the same tenants is
/// rolled back in most rollouts, half of them within 5 minutes.
#[test]
fn a_canary_failing_five_times_as_often_is_rolled_back_by_either_judge() {
    for judge in [Judge::Before, Judge::After] {
        for rates in [Rates::Equal, Rates::Beta { kappa: 200.0 }] {
            let spec = WorldSpec::new(1_000.0, rates, Canary::ErrorsTimes(5.0)).with_judge(judge);
            let cell = run_cell(&spec, 6, 17, threads());
            assert_eq!(cell.rollouts, 6);
            assert!(
                cell.rolled_back >= 5,
                "{judge:?} {rates:?}: rolled back {}/6 ({cell:?})",
                cell.rolled_back
            );
            assert!(cell.rollback_minutes(0.5).unwrap() < 5.0, "{cell:?}");
            assert_eq!(cell.timed_out, 0);
        }
    }
}

/// The product's judge compares the tenants that moved with themselves: a healthy canary among
/// tenants whose 5xx rates differ a lot (κ = 10) is promoted, never rolled back, in a few fixed
/// rollouts of a short plan.
#[test]
fn a_healthy_canary_among_very_different_tenants_is_promoted_by_the_products_judge() {
    let spec = WorldSpec::new(1_000.0, Rates::Beta { kappa: 10.0 }, Canary::Healthy)
        .with_steps(short_plan());
    let cell = run_cell(&spec, 6, 23, threads());
    assert_eq!(cell.rolled_back, 0, "{cell:?}");
    assert_eq!(cell.promoted, 6, "{cell:?}");
}

/// A canary losing a fifth of its requests before they are recorded pauses the plan for a
/// sample-ratio mismatch (the product's judge), never promotes.
#[test]
fn a_canary_losing_requests_is_paused_for_a_sample_ratio_mismatch() {
    let spec = WorldSpec::new(1_000.0, Rates::Equal, Canary::Loses(0.2));
    let cell = run_cell(&spec, 4, 29, threads());
    assert_eq!(cell.paused_for(SAMPLE_RATIO), 4, "{cell:?}");
    assert!(cell.paused_within(10 * 60) == 4, "{cell:?}");
}

/// The direct documents are what real `TrafficRecorder`s write and the cache reads back, and
/// memoising (summing closed minutes once, reading complete minutes once) equals reading
/// every minute at every look: the three give the same looks with either judge, and the same
/// minutes by cohort.
#[test]
fn the_documents_are_what_the_real_recorder_writes() {
    for judge in [Judge::Before, Judge::After] {
        let base = WorldSpec::new(100.0, Rates::Beta { kappa: 50.0 }, Canary::Healthy)
            .with_events(Events::EVENTFUL)
            .with_steps(short_plan())
            .with_judge(judge);
        let run = |recording| {
            let mut spec = base.clone();
            spec.recording = recording;
            spec.trace = true;
            run_rollout(&Prepared::new(&spec), 5)
        };
        let direct = run(Recording::Direct { exact_reads: false });
        let exact = run(Recording::Direct { exact_reads: true });
        let recorder = run(Recording::Recorder);
        assert!(direct.looks.len() > 20, "{} looks", direct.looks.len());
        assert_eq!(direct.looks, exact.looks, "{judge:?}");
        assert_eq!(direct.looks, recorder.looks, "{judge:?}");
        assert_eq!(direct.end, recorder.end);
        assert_eq!(direct.recorded, recorder.recorded);
        if judge == Judge::After {
            assert!(
                direct.judged < direct.looks_taken / 5,
                "memoised: {} verdicts for {} looks",
                direct.judged,
                direct.looks_taken
            );
            assert_eq!(exact.judged, exact.looks_taken);
            assert!(direct.detail.len() >= 30, "{} minutes", direct.detail.len());
            let cohorts = |r: &world::Rollout| -> Vec<_> {
                r.detail
                    .iter()
                    .map(|(m, d)| (*m, d.cohorts.clone()))
                    .collect()
            };
            assert_eq!(cohorts(&direct), cohorts(&recorder));
            assert_eq!(cohorts(&direct), cohorts(&exact));
            // The sketch keeps the busiest tenant of every minute too.
            for (m, d) in &direct.detail {
                let top = |d: &splitter::cohort::Detail| {
                    d.heavy
                        .iter()
                        .max_by_key(|h| h.counts.requests)
                        .map(|h| h.tenant.clone())
                };
                assert_eq!(top(d), top(&recorder.detail[m]), "minute {m}");
            }
        }
        // Three replicas, every 10 s each: a look every 3⅓ s.
        let (End::Promoted { after_secs }
        | End::RolledBack { after_secs }
        | End::Paused { after_secs }) = direct.end
        else {
            panic!("a rollout never ended");
        };
        let per_10s = direct.looks_taken as f64 / after_secs as f64 * 10.0;
        assert!((2.9..3.1).contains(&per_10s), "{per_10s} looks per 10 s");
        assert!((0..3).all(|r| direct.looks.iter().any(|l| l.replica == r)));
        // How it ended is what the config says.
        match direct.end {
            End::Promoted { .. } => {
                assert_eq!(direct.config.stable_version.as_str(), "v2");
                assert!(direct.config.canary_version.is_none());
            }
            End::RolledBack { .. } => assert!(direct.config.rolled_back),
            End::Paused { .. } => assert!(direct.config.plan.as_ref().unwrap().active()),
            End::TimedOut => panic!("a rollout never ended"),
        }
    }
}
