//! The routing layer's added cost per request: the same axum router with and without
//! `CanaryLayer` (decision + response headers), and with the traffic recorder attached, all in
//! the same run, and once more with a tracing subscriber listening (the `canary` span is then
//! real work). Tenants cycle through 1 000 ids so buckets are really computed.
//! Run: cargo bench -p server --bench layer

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use splitter::layer::{CanaryLayer, PolicySource};
use splitter::recorder::TrafficRecorder;
use splitter::snapshot::Splitter;
use splitter::{Actor, BasisPoints, PolicyConfig, PolicyName, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

async fn ok() -> &'static str {
    "ok"
}

fn splitter() -> Splitter {
    let config = PolicyConfig::new(
        PolicyName::new("payment-api").unwrap(),
        Version::new("v1").unwrap(),
        Some(Version::new("v2").unwrap()),
        BasisPoints::new(2500).unwrap(),
        Actor::new("bench").unwrap(),
        jiff::Timestamp::now(),
    );
    Splitter::from_configs([config])
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tenants: Vec<String> = (0..1000).map(|i| format!("tenant-{i}")).collect();
    let next = AtomicUsize::new(0);
    let request = || {
        let t = &tenants[next.fetch_add(1, Ordering::Relaxed) % tenants.len()];
        Request::get("/demo/payment-api/charge")
            .header("x-tenant-id", t)
            .body(Body::empty())
            .unwrap()
    };
    let plain: Router = Router::new().route("/demo/{policy}/{*rest}", get(ok));
    let layered = plain.clone().layer(CanaryLayer::new(
        Some(splitter()),
        PolicySource::PathSegment(1),
    ));
    let recorder = Arc::new(TrafficRecorder::new("bench", 1000));
    let recorded = plain
        .clone()
        .layer(CanaryLayer::new(Some(splitter()), PolicySource::PathSegment(1)).recorder(recorder));
    let mut g = c.benchmark_group("layer");
    for (name, router) in [
        ("without_layer", &plain),
        ("with_layer", &layered),
        ("with_layer_and_recorder", &recorded),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let res = router.clone().oneshot(request()).await.unwrap();
                assert!(res.status().is_success());
                res
            })
        });
    }
    // The server's own subscriber (fmt at info), writing to nowhere: what the `canary` span costs
    // when someone listens.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_env_filter("info")
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    g.bench_function("with_layer_and_recorder_and_subscriber", |b| {
        b.to_async(&rt).iter(|| async {
            let res = recorded.clone().oneshot(request()).await.unwrap();
            assert!(res.status().is_success());
            res
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
