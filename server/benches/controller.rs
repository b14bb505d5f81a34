//! The plan controller's cost per tick: 1 000 policies with running plans and 15 minutes of
//! traffic each in memory, judged and found not due (no write), next to a tick over the same
//! 1 000 policies without plans, in the same run. Store reads and writes per tick: none (the
//! verdicts come from memory; only a due move writes).
//! Run: cargo bench -p server --bench controller

use criterion::{criterion_group, criterion_main, Criterion};
use splitter::plans::{preset, AtEnd};
use splitter::store::embedded::EmbeddedStore;
use splitter::traffic::{minute_of, ReplicaMinute, VersionTraffic};
use splitter::{Actor, BasisPoints, NewPolicy, Operation, PolicyName, Request, Version};
use std::sync::Arc;
use std::time::Duration;

async fn state(n: usize, plans: bool, dir: &std::path::Path) -> app::ssr::state::AppState {
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
    let now = minute_of(jiff::Timestamp::now());
    state.traffic.apply((now - 14..=now).map(|minute| {
        ReplicaMinute {
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
        }
    }));
    state
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d0, d1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let without = rt.block_on(state(1000, false, d0.path()));
    let with = rt.block_on(state(1000, true, d1.path()));
    let now = jiff::Timestamp::now();
    assert!(
        rt.block_on(server::controller::tick(&with, now)).is_empty(),
        "nothing is due"
    );
    let mut g = c.benchmark_group("controller");
    g.bench_function("tick_1000_policies_no_plans", |b| {
        b.to_async(&rt)
            .iter(|| server::controller::tick(&without, now))
    });
    g.bench_function("tick_1000_running_plans", |b| {
        b.to_async(&rt)
            .iter(|| server::controller::tick(&with, now))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
