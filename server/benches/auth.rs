//! What access costs: one argon2id password check (a sign-in) against the SHA-256 digest that
//! checks a token; and the guard's added cost per request — the same axum route with and without
//! `auth::guard`, called with a bearer token and with a session cookie (each looked up in a real
//! embedded store), all in the same run.
//! Run: cargo bench -p server --bench auth

use app::access::Role;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use server::auth::{credentials, Auth};
use splitter::store::embedded::EmbeddedStore;
use std::sync::Arc;
use tower::ServiceExt;

/// As the server runs (`server/src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn ok() -> &'static str {
    "ok"
}

fn bench(c: &mut Criterion) {
    let stored = credentials::hash_password("correct horse battery staple");
    let mut g = c.benchmark_group("credentials");
    g.bench_function("token digest (sha-256)", |b| {
        b.iter(|| credentials::digest("apxc_0123456789abcdef0123456789abcdef0123456"))
    });
    g.sample_size(20);
    g.bench_function("password check (argon2id m=19MiB t=2 p=1)", |b| {
        b.iter(|| credentials::verify_password("correct horse battery staple", &stored))
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("c.redb")).unwrap());
    let auth = Arc::new(Auth::new(store));
    let token = rt.block_on(server::testing::token(&auth, "bench", Role::Viewer, &[]));
    let (cookie, _) = rt.block_on(server::testing::session(&auth, "bench", Role::Viewer, &[]));
    // A read route under a rule that needs a signed-in principal.
    let plain: Router = Router::new().route("/api/v1/policies/{name}/events", get(ok));
    // As the server installs it: on every route and the fallback, the path check first.
    let guarded = plain.clone().layer(axum::middleware::from_fn_with_state(
        server::auth::GuardState {
            auth: auth.clone(),
            site_root: std::path::Path::new("target/site").into(),
        },
        server::auth::guard,
    ));
    let request = |header: Option<(&str, String)>| {
        let mut r = Request::get("/api/v1/policies/payment-api/events");
        if let Some((k, v)) = header {
            r = r.header(k, v);
        }
        r.body(Body::empty()).unwrap()
    };
    let mut g = c.benchmark_group("guard");
    g.bench_function("without guard", |b| {
        b.to_async(&rt)
            .iter(|| plain.clone().oneshot(request(None)))
    });
    g.bench_function("guard, bearer token", |b| {
        b.to_async(&rt).iter(|| {
            guarded
                .clone()
                .oneshot(request(Some(("authorization", format!("Bearer {token}")))))
        })
    });
    g.bench_function("guard, session cookie", |b| {
        b.to_async(&rt).iter(|| {
            guarded
                .clone()
                .oneshot(request(Some(("cookie", cookie.clone()))))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
