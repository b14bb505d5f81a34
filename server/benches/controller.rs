//! The plan controller's cost per tick: 1 000 policies with running plans, 14 minutes into
//! their first step with 30 minutes of baseline before it, traffic by cohort in memory, judged
//! and found not due (no write), next to a tick over the same 1 000 policies without plans, in
//! the same run: once with the traffic unchanged since the last tick (the verdicts are reused)
//! and once after new traffic arrived (every verdict computed afresh). Store reads and writes
//! per tick: none (the verdicts come from memory; only a due move writes).
//! Run: cargo bench -p server --bench controller

use criterion::{criterion_group, criterion_main, Criterion};
use splitter::cohort::{Counts, Detail};
use splitter::plans::{preset, AtEnd};
use splitter::store::embedded::EmbeddedStore;
use splitter::traffic::{minute_of, ReplicaMinute, VersionTraffic};
use splitter::{Actor, BasisPoints, NewPolicy, Operation, PolicyName, Request, Version};
use std::sync::Arc;
use std::time::Duration;

async fn state(
    n: usize,
    plans: bool,
    dir: &std::path::Path,
) -> (app::ssr::state::AppState, Vec<ReplicaMinute>) {
    let store = Arc::new(EmbeddedStore::open(dir.join("canary.redb")).unwrap());
    let settings = server::testing::quiet("bench");
    let state = server::app_state(store.clone(), store, settings)
        .await
        .unwrap();
    let request = |name: &str, revision, operation| Request {
        policy: PolicyName::new(name).unwrap(),
        expected_revision: revision,
        operation,
        actor: Actor::new("bench").unwrap(),
        reason: String::new(),
    };
    let mut policies = Vec::new();
    for i in 0..n {
        let name = format!("policy-{i:04}");
        let new = NewPolicy {
            stable_version: Version::new("v1").unwrap(),
            canary_version: Some(Version::new("v2").unwrap()),
            share: BasisPoints::ZERO,
            salt: None,
        };
        let c = state
            .execute(&request(&name, None, Operation::Create(new)))
            .await
            .unwrap()
            .unwrap();
        if plans {
            let start = Operation::StartPlan {
                steps: preset(1.0),
                at_end: AtEnd::Promote,
            };
            state
                .execute(&request(&name, Some(c.revision), start))
                .await
                .unwrap();
        }
        policies.push(name);
    }
    let version = |n: u64, errors: u64| {
        let mut t = VersionTraffic::default();
        for i in 0..n {
            t.record(
                if i < errors { 503 } else { 200 },
                Duration::from_micros(500 + i * 37 % 20_000),
            );
        }
        t
    };
    let (v1, v2) = (version(2_000, 4), version(100, 0));
    // By cohort: 10 cohorts on the canary (0–9, inside 5 %) and 40 on stable, 50 requests each.
    let cohort = |errors: u64| {
        let mut c = Counts::default();
        for i in 0..50u64 {
            c.record(
                if i < errors { 503 } else { 200 },
                Duration::from_micros(500 + i * 397),
            );
        }
        c
    };
    let now = minute_of(jiff::Timestamp::now());
    let detail = |minute: i64| {
        let on_canary = minute >= now;
        let mut d = Detail::default();
        for k in 0..50u16 {
            let version = if k < 10 && on_canary { "v2" } else { "v1" };
            let k = if k < 10 { k } else { 500 + k };
            d.cohorts
                .entry(version.to_string())
                .or_default()
                .insert(k, cohort(u64::from(k % 3 == 0)));
        }
        d
    };
    let docs: Vec<ReplicaMinute> = (now - 30..=now + 14)
        .map(|minute| ReplicaMinute {
            minute,
            replica: "bench".into(),
            shard: 0,
            shards: 1,
            seq: 1,
            written_at: minute * 60,
            policies: policies
                .iter()
                .map(|p| {
                    (
                        p.clone(),
                        [
                            ("v1".to_string(), v1.clone()),
                            ("v2".to_string(), v2.clone()),
                        ]
                        .into(),
                    )
                })
                .collect(),
            detail: policies
                .iter()
                .map(|p| (p.clone(), detail(minute)))
                .collect(),
        })
        .collect();
    state.traffic.apply(docs.iter().cloned());
    (state, docs)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d0, d1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (without, _) = rt.block_on(state(1000, false, d0.path()));
    let (with, docs) = rt.block_on(state(1000, true, d1.path()));
    // 14 minutes into the first 15-minute step.
    let now = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(14);
    assert!(
        rt.block_on(server::controller::tick(&with, now)).is_empty(),
        "nothing is due"
    );
    let v = app::ssr::plans::verdict(&with, &with.config("policy-0000").unwrap(), now).unwrap();
    assert_eq!(v.outcome, splitter::analysis::Outcome::Pass, "{}", v.reason);
    let mut g = c.benchmark_group("controller");
    g.bench_function("tick_1000_policies_no_plans", |b| {
        b.to_async(&rt)
            .iter(|| server::controller::tick(&without, now))
    });
    g.bench_function("tick_1000_running_plans", |b| {
        b.to_async(&rt)
            .iter(|| server::controller::tick(&with, now))
    });
    // The last complete minute written again (what changes a verdict's input, about once a
    // minute; flushes of the still-filling minute do not): every verdict computed afresh.
    let last = minute_of(now) - 1;
    let rewrite: Vec<ReplicaMinute> = docs.iter().filter(|d| d.minute == last).cloned().collect();
    assert_eq!(rewrite.len(), 1);
    g.bench_function("tick_1000_running_plans_after_new_traffic", |b| {
        b.to_async(&rt).iter(|| {
            with.traffic.apply(rewrite.iter().cloned());
            server::controller::tick(&with, now)
        })
    });
    // Its parts for one policy: reading its minutes by cohort from memory, and judging them.
    let config = with.config("policy-0000").unwrap();
    let (_, entered) = config.plan.as_ref().unwrap().step_entered().unwrap();
    let from = minute_of(entered) - 30;
    let to = minute_of(now);
    g.bench_function("one_policy_detail_from_memory", |b| {
        b.iter(|| with.traffic.detail("policy-0000", from, to))
    });
    let detail = with.traffic.detail("policy-0000", from, to);
    let step = splitter::analysis::Step {
        canary: "v2",
        stable: "v1",
        share: 500,
        entered: entered.as_second(),
        now: now.as_second(),
        index: 0,
        steps: 4,
    };
    let guards = splitter::analysis::Guards::default();
    g.bench_function("one_policy_judge", |b| {
        b.iter(|| splitter::analysis::judge(&detail, &step, &guards))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
