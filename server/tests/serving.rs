//! How the server hands out what does not change: built files precompressed and cached forever
//! under hashed names, policies answered `304` while the client's copy is current; and the
//! built-in demo traffic (embedded demo store only).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use server::auth::Auth;
use server::testing;
use splitter::store::embedded::EmbeddedStore;
use std::sync::Arc;
use tower::ServiceExt;

fn embedded(dir: &tempfile::TempDir) -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap())
}

async fn body(res: axum::response::Response) -> Vec<u8> {
    axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn built_files_go_out_precompressed_and_hashed_names_are_cached_forever() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let pkg = site.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let wasm = pkg.join("apx-canary.29Gu4SfLZexm1xOAiDSN1g.wasm");
    std::fs::write(&wasm, b"\0asm raw bytes").unwrap();
    std::fs::write(
        pkg.join("apx-canary.29Gu4SfLZexm1xOAiDSN1g.wasm.br"),
        b"brotli bytes",
    )
    .unwrap();
    std::fs::write(
        pkg.join("apx-canary.29Gu4SfLZexm1xOAiDSN1g.wasm.gz"),
        b"gzip bytes",
    )
    .unwrap();
    std::fs::write(pkg.join("plain.css"), b"body{}").unwrap();
    let store = embedded(&dir);
    let auth = Auth::new(store.clone());
    let (app, _) = testing::site_router(
        store,
        testing::quiet("serving"),
        false,
        auth,
        site.to_str().unwrap(),
    )
    .await;
    let get = |path: &str, encoding: Option<&str>| {
        let mut r = Request::get(path);
        if let Some(e) = encoding {
            r = r.header(header::ACCEPT_ENCODING, e);
        }
        app.clone().oneshot(r.body(Body::empty()).unwrap())
    };
    let path = "/pkg/apx-canary.29Gu4SfLZexm1xOAiDSN1g.wasm";
    for (accept, encoding, bytes) in [
        (Some("gzip, deflate, br"), Some("br"), &b"brotli bytes"[..]),
        (Some("gzip"), Some("gzip"), &b"gzip bytes"[..]),
        (None, None, &b"\0asm raw bytes"[..]),
    ] {
        let res = get(path, accept).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{accept:?}");
        let got = res
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(got.as_deref(), encoding, "{accept:?}");
        assert_eq!(
            res.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(res.headers()[header::VARY], "accept-encoding");
        assert_eq!(
            body(res).await,
            bytes,
            "the precompressed file itself, {accept:?}"
        );
    }
    let res = get("/pkg/plain.css", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CACHE_CONTROL],
        "no-cache",
        "an unhashed name is revalidated"
    );
}

#[tokio::test]
async fn a_policy_is_not_sent_again_while_the_callers_copy_is_current() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(&dir);
    let served = testing::Served::start(store, testing::quiet("etag")).await;
    let client = reqwest::Client::new();
    let get = |etag: Option<&str>| {
        let mut r = client
            .get(format!("{}/api/v1/policies/demo-payment-api", served.base))
            .header("authorization", format!("Bearer {}", served.token));
        if let Some(e) = etag {
            r = r.header("if-none-match", e);
        }
        r.send()
    };
    let first = get(None).await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let again = get(Some(&etag)).await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    // After a change the caller's copy is stale: the policy comes back whole.
    let (status, text) = served
        .send(
            reqwest::Method::PUT,
            "/api/v1/policies/demo-payment-api/share",
            r#"{"share": "20", "reason": "etag test"}"#,
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let after = get(Some(&etag)).await.unwrap();
    assert_eq!(after.status(), 200);
    assert_ne!(after.headers()["etag"].to_str().unwrap(), etag);
}

#[test]
fn if_none_match_forms() {
    use server::api::etag_matches;
    assert!(etag_matches("\"7\"", 7));
    assert!(etag_matches("W/\"7\"", 7));
    assert!(etag_matches("\"6\", \"7\"", 7));
    assert!(etag_matches("*", 7));
    assert!(!etag_matches("\"6\"", 7));
    assert!(!etag_matches("7", 7), "an ETag is quoted");
    assert!(!etag_matches("\"77\"", 7));
}

/// Virtual time: the loop's ticks and the demo service's latencies pass at once.
#[tokio::test(start_paused = true)]
async fn demo_traffic_reaches_every_demo_policy_and_one_canary_is_worse() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(&dir);
    server::seed::seed_if_empty(&*store).await.unwrap();
    let state = server::app_state(store.clone(), store, testing::quiet("demo"))
        .await
        .unwrap();
    let generator = server::demo_traffic::spawn(state.clone());
    let of = |policy: &str, version: &str| {
        state
            .recorder
            .totals()
            .get(&(policy.to_string(), version.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    // Until demo-payment-api's canary has answered 1 000 requests (about 400 virtual seconds).
    while of("demo-payment-api", "v2").requests < 1_000 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    generator.abort();
    let (stable, canary) = (of("demo-payment-api", "v1"), of("demo-payment-api", "v2"));
    let share = canary.requests as f64 / (canary.requests + stable.requests) as f64;
    assert!(
        (0.09..0.16).contains(&share),
        "12.5 % configured, {share} observed"
    );
    assert_eq!(stable.errors, 0, "stable never fails");
    let rate = canary.errors as f64 / canary.requests as f64;
    assert!(
        (0.01..0.06).contains(&rate),
        "3 % configured, {rate} observed"
    );
    assert!(of("demo-search-api", "2024.07").requests > 0);
    assert!(of("demo-search-api", "2024.06").requests > 0);
    assert!(
        of("demo-checkout", "v7").requests > 0,
        "a policy without canary gets traffic too"
    );
}
