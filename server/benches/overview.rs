//! Server-side render of the overview page (`GET /`) with 1 000 policies, next to the same page
//! with 3 policies and to `GET /healthz`, all in the same run.
//! Run: cargo bench -p server --bench overview

use axum::body::Body;
use axum::http::Request;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use splitter::store::embedded::EmbeddedStore;
use splitter::store::PolicyStore;
use splitter::{Actor, BasisPoints, NewPolicy, Operation, PolicyName, Request as Change, Version};
use std::sync::Arc;
use tower::ServiceExt;

/// The router over `n` policies, and a viewer's bearer token to read its pages.
async fn router_with(n: usize, dir: &std::path::Path) -> (axum::Router, String) {
    let store = Arc::new(EmbeddedStore::open(dir.join("canary.redb")).unwrap());
    for i in 0..n {
        let change = Change {
            policy: PolicyName::new(format!("policy-{i:04}")).unwrap(),
            expected_revision: None,
            operation: Operation::Create(NewPolicy {
                stable_version: Version::new("v1").unwrap(),
                canary_version: (i % 3 != 0).then(|| Version::new("v2").unwrap()),
                share: BasisPoints::new(if i % 3 != 0 { (i % 10_000) as u32 } else { 0 }).unwrap(),
                salt: None,
            }),
            actor: Actor::new("bench").unwrap(),
            reason: String::new(),
        };
        store.execute(&change).await.unwrap();
    }
    let (router, auth) = server::testing::router(store, Default::default(), false).await;
    let token = server::testing::token(&auth, "bench", app::access::Role::Viewer, &[]).await;
    (router, format!("Bearer {token}"))
}

async fn get((app, token): &(axum::Router, String), uri: &str) -> usize {
    let req = Request::get(uri).header("authorization", token.as_str());
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(res.status().is_success());
    res.into_body().collect().await.unwrap().to_bytes().len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d3, d1000) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let small = rt.block_on(router_with(3, d3.path()));
    let large = rt.block_on(router_with(1000, d1000.path()));
    let bytes = rt.block_on(get(&large, "/"));
    eprintln!("overview page with 1000 policies: {bytes} bytes (first page of 50)");
    let mut g = c.benchmark_group("overview");
    g.bench_function("healthz", |b| {
        b.to_async(&rt).iter(|| get(&small, "/healthz"))
    });
    g.bench_function("overview_3_policies", |b| {
        b.to_async(&rt).iter(|| get(&small, "/"))
    });
    g.bench_function("overview_1000_policies", |b| {
        b.to_async(&rt).iter(|| get(&large, "/"))
    });
    g.bench_function("overview_1000_filtered_sorted_page_2", |b| {
        b.to_async(&rt)
            .iter(|| get(&large, "/?q=policy-0&state=ramping&sort=share&page=2"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
