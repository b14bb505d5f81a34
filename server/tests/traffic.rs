//! Traffic end to end, in-process but over real HTTP: the load generator sends requests through
//! the routing layer (the demo service), the recorder flushes them to the store, and the policy
//! page, the overview and `/metrics` show exactly what the load generator got back. Runs on the
//! embedded store and on the Firestore emulator. Also: the decision and outcome APIs.

use app::access::Role;
use server::loadgen::{LoadArgs, LoadReport};
use splitter::store::embedded::EmbeddedStore;
use splitter::store::firestore::FirestoreStore;
use splitter::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Each test server's admin token, by base URL (the pages and APIs need a principal).
static TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn token_for(url: &str) -> String {
    let tokens = TOKENS.lock().unwrap();
    let (_, t) = tokens
        .iter()
        .find(|(base, _)| url.starts_with(base.as_str()))
        .unwrap();
    format!("Bearer {t}")
}

async fn serve(store: Arc<dyn Store>) -> String {
    let traffic = server::TrafficSettings {
        replica: "test-replica".into(),
        flush_every: Duration::from_millis(200),
        ..Default::default()
    };
    let (app, auth) = server::testing::router(store, traffic, true).await;
    let token = server::testing::token(&auth, "tester", Role::Admin, &[]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    TOKENS.lock().unwrap().push((base.clone(), token));
    base
}

async fn text(url: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .get(url)
        .header("authorization", token_for(url))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn send_json(method: reqwest::Method, url: &str, body: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .request(method, url)
        .header("content-type", "application/json")
        .header("authorization", token_for(url))
        .header("if-match", "\"1\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn args(base: &str, policy: &str) -> LoadArgs {
    LoadArgs {
        target: base.into(),
        policy: vec![policy.into()],
        seconds: 2,
        rps: 300,
        tenants: 2_000,
        zipf: 1.1,
        canary_error_rate: 0.3,
        heaviest_error_rate: 0.0,
        latency_ms: 0,
        canary_latency_ms: None,
        concurrency: 8,
        seed: 7,
    }
}

fn counts(report: &LoadReport, policy: &str, version: &str) -> (u64, u64) {
    report
        .by_version
        .get(&(policy.to_string(), version.to_string()))
        .copied()
        .unwrap_or_default()
}

/// Checks the Prometheus text format: every family has HELP and TYPE before its samples, every
/// sample is `name{labels} number`, histogram buckets are cumulative and `+Inf` equals `_count`.
fn check_exposition(text: &str) {
    use std::collections::HashMap;
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut last_bucket: HashMap<String, f64> = HashMap::new();
    let mut inf: HashMap<String, f64> = HashMap::new();
    let mut count: HashMap<String, f64> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(matches!(kind, "counter" | "gauge" | "histogram"), "{line}");
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                assert!(l.ends_with('}'), "{line}");
                (n, &l[..l.len() - 1])
            }
            None => (series, ""),
        };
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample before its TYPE: {line}");
        if name.ends_with("_bucket") {
            let key = labels.rsplit_once(",le=").unwrap().0.to_string();
            let prev = last_bucket.insert(key.clone(), value).unwrap_or(0.0);
            assert!(value >= prev, "buckets must be cumulative: {line}");
            if labels.ends_with("le=\"+Inf\"") {
                inf.insert(key, value);
            }
        } else if name.ends_with("_count") && family != name {
            count.insert(labels.to_string(), value);
        }
    }
    assert!(!inf.is_empty());
    assert_eq!(inf, count, "+Inf bucket equals _count for every series");
}

async fn traffic_shows_up(base: String) {
    let policy = "demo-payment-api"; // seeded: v1 stable, v2 canary at 12.5 %
    let (_, before) = text(&format!("{base}/policies/{policy}")).await;
    assert!(before.contains("No requests recorded in the last 15 min"));

    let report = server::loadgen::run(&args(&base, policy)).await.unwrap();
    let (stable, stable_5xx) = counts(&report, policy, "stable");
    let (canary, canary_5xx) = counts(&report, policy, "v2");
    assert_eq!(report.failed, 0);
    assert_eq!(stable + canary, report.responses());
    assert!(stable > 100 && canary > 10, "{report}");
    assert_eq!(stable_5xx, 0, "only canary fails");
    assert!(canary_5xx > 0 && canary_5xx < canary, "{report}");

    // /metrics counts in memory: exact at once.
    let (_, metrics) = text(&format!("{base}/metrics")).await;
    for line in [
        format!("apx_canary_requests_total{{policy=\"{policy}\",version=\"v1\"}} {stable}"),
        format!("apx_canary_requests_total{{policy=\"{policy}\",version=\"v2\"}} {canary}"),
        format!("apx_canary_errors_total{{policy=\"{policy}\",version=\"v2\"}} {canary_5xx}"),
        format!("apx_canary_errors_total{{policy=\"{policy}\",version=\"v1\"}} 0"),
        format!("apx_canary_decisions_total{{policy=\"{policy}\",version=\"v2\",via=\"layer\"}} {canary}"),
        format!("apx_canary_request_duration_seconds_count{{policy=\"{policy}\",version=\"v1\"}} {stable}"),
        format!("apx_canary_configured_share_ratio{{policy=\"{policy}\"}} 0.125"),
        "apx_canary_recorder_lost_requests_total 0".to_string(),
    ] {
        assert!(metrics.contains(&line), "missing in /metrics: {line}");
    }
    assert!(metrics.contains("apx_canary_store_calls_total{op=\"list\"}"));
    check_exposition(&metrics);
    assert!(metrics.contains("apx_canary_snapshot_age_seconds "));

    // The page reads the store: wait for the flush, then every number must match.
    let total = stable + canary;
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let (_, page) = text(&format!("{base}/policies/{policy}")).await;
        if page.contains(&format!("data-test=\"traffic-requests\">{total}<")) {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {total} requests"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rows = |v: &str| {
        let start = page.find(&format!("data-version=\"{v}\"")).unwrap();
        page[start..start + 800].to_string()
    };
    assert!(rows("v2").contains(&format!("data-test=\"requests\">{canary}<")));
    assert!(rows("v2").contains(&format!("data-test=\"errors\">{canary_5xx}<")));
    assert!(rows("v1").contains(&format!("data-test=\"requests\">{stable}<")));
    assert!(rows("v1").contains("data-test=\"errors\">0<"));
    for text in [
        "Requests per second by version, last 15 min",
        "Error rate (5xx) by version",
        "p95 latency by version, last 15 min",
        "observed (canary / all requests)",
        "v1 (stable)",
        "v2 (canary)",
        &format!("v2 (canary): {canary_5xx} of {canary} requests failed with 5xx"),
    ] {
        assert!(page.contains(text), "missing on the page: {text}");
    }
    let observed = format!("{:.2}%", canary as f64 * 100.0 / total as f64);
    assert!(page.contains(&format!("data-test=\"observed-share\">{observed}<")));

    // The overview's indicator, from the same store.
    let (_, overview) = text(&format!("{base}/?q=demo-payment")).await;
    assert!(
        overview.contains(&format!("canary of {total} requests")),
        "overview indicator"
    );

    // A share change is marked on the charts.
    let (status, body) = send_json(
        reqwest::Method::PUT,
        &format!("{base}/api/v1/policies/{policy}/share"),
        r#"{"share": "25", "reason": "ramp"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = text(&format!("{base}/policies/{policy}?window=1h")).await;
        if page.contains("share 25%") {
            assert!(page.contains("last 1 hour"));
            break;
        }
        assert!(Instant::now() < deadline, "no change marker on the chart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = text(&format!("{base}/policies/{policy}?window=2d")).await;
    assert!(
        body.contains("window &#x27;2d&#x27;: choose 15m, 1h or 24h")
            || body.contains("window '2d': choose 15m, 1h or 24h"),
        "{status}"
    );
}

async fn decision_api(base: String) {
    let url = |p: &str| format!("{base}/api/v1/policies/demo-payment-api/{p}");
    // Every answer is checked against the library's bucket for the same salt (the policy name).
    let (status, body) = text(&url("decision?tenant=acme")).await;
    assert_eq!(status, 200, "{body}");
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bucket = splitter::bucket("demo-payment-api", "acme").get();
    assert_eq!(d["canary"], bucket < 1250, "{body}");
    assert_eq!(d["version"], if bucket < 1250 { "v2" } else { "v1" });
    assert_eq!(d["reason"]["bucket"], bucket);

    let (status, body) = text(&url("decision")).await;
    assert_eq!(status, 422);
    assert!(body.contains("tenant: is missing"), "{body}");
    let (status, _) = text(&format!("{base}/api/v1/policies/nope/decision?tenant=a")).await;
    assert_eq!(status, 404);

    let tenants: Vec<String> = (0..500).map(|i| format!("t-{i}")).collect();
    let (status, body) = send_json(
        reqwest::Method::POST,
        &url("decisions"),
        &serde_json::json!({ "tenants": tenants }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let decisions = batch["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 500);
    for (t, d) in tenants.iter().zip(decisions) {
        assert_eq!(d["tenant"], t.as_str());
        assert_eq!(
            d["canary"],
            splitter::bucket("demo-payment-api", t).get() < 1250
        );
    }
    let too_many: Vec<String> = (0..10_001).map(|i| format!("t-{i}")).collect();
    let (status, body) = send_json(
        reqwest::Method::POST,
        &url("decisions"),
        &serde_json::json!({ "tenants": too_many }).to_string(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("at most 10000"), "{body}");

    // Decisions are counted as decisions, not as traffic.
    let (_, metrics) = text(&format!("{base}/metrics")).await;
    let api_decisions: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("apx_canary_decisions_total{policy=\"demo-payment-api\"")
                && l.contains("via=\"api\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(api_decisions, 501);
    assert!(!metrics.contains("apx_canary_requests_total{policy=\"demo-payment-api\""));

    // Outcomes reported by the caller become traffic.
    let (status, body) = send_json(
        reqwest::Method::POST,
        &url("outcomes"),
        r#"{"outcomes": [{"version": "v2", "status": 503, "latency_ms": 12.5}, {"version": "v1", "status": 200, "latency_ms": 3}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = text(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains("apx_canary_errors_total{policy=\"demo-payment-api\",version=\"v2\"} 1")
    );
    assert!(
        metrics.contains("apx_canary_requests_total{policy=\"demo-payment-api\",version=\"v1\"} 1")
    );
    for (bad, why) in [
        (
            r#"{"outcomes": [{"version": "v9", "status": 200, "latency_ms": 1}]}"#,
            "neither the stable",
        ),
        (
            r#"{"outcomes": [{"version": "v1", "status": 42, "latency_ms": 1}]}"#,
            "is not an HTTP status",
        ),
        (
            r#"{"outcomes": [{"version": "v1", "status": 200, "latency_ms": -1}]}"#,
            "latency_ms",
        ),
        (r#"{"outcomes": [{"version": "v1"}]}"#, "missing field"),
        (
            r#"{"outcomes": [{"version": "v1", "status": 200, "latency_ms": 1, "tenant": "a\u0007b"}]}"#,
            "outcomes[0].tenant",
        ),
    ] {
        let (status, body) = send_json(reqwest::Method::POST, &url("outcomes"), bad).await;
        assert_eq!(status, 422, "{bad}");
        assert!(body.contains(why), "{bad}: {body}");
    }
    // The demo service checks its settings too (these are served requests: recorded).
    for (query, why) in [
        (
            "canary_error_rate=1.5",
            "canary_error_rate: 1.5 must be between 0 and 1",
        ),
        ("error_rate=-1", "error_rate: -1 must be between 0 and 1"),
        ("latency_ms=6000", "latency_ms: 6000 is more than 5000"),
        ("latency_ms=abc", "latency_ms"),
    ] {
        let (status, body) = text(&format!("{base}/demo/demo-payment-api?{query}")).await;
        assert_eq!(status, 422, "{query}");
        assert!(body.contains(why), "{query}: {body}");
    }
}

async fn embedded() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap());
    (serve(store).await, dir)
}

async fn firestore(test: &str) -> String {
    let project = format!("server-{test}-{}", std::process::id());
    serve(server::testing::firestore(&project).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_traffic_on_embedded_store() {
    let (base, _dir) = embedded().await;
    traffic_shows_up(base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_traffic_on_firestore_emulator() {
    traffic_shows_up(firestore("traffic").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_and_outcome_api() {
    let (base, _dir) = embedded().await;
    decision_api(base).await;
}

/// Two replicas on one Firestore project: each records what it served, and either one's page
/// shows the sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_are_summed_on_the_page() {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "FIRESTORE_EMULATOR_HOST is not set: run the tests with `./dev test`, which starts the emulator"
    );
    let project = format!("server-replicas-{}", std::process::id());
    let connect = || async {
        FirestoreStore::connect(&project, Duration::from_secs(10))
            .await
            .unwrap()
    };
    let a = serve(connect().await).await;
    let b = serve(connect().await).await;
    let policy = "demo-search-api";
    let mut total = 0;
    for base in [&a, &b] {
        let mut args = args(base, policy);
        args.seconds = 1;
        let report = server::loadgen::run(&args).await.unwrap();
        assert_eq!(report.failed, 0);
        total += report.responses();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for base in [&a, &b] {
        loop {
            let (_, page) = text(&format!("{base}/policies/{policy}")).await;
            if page.contains(&format!("data-test=\"traffic-requests\">{total}<")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{base} never showed both replicas' {total} requests"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
