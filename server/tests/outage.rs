//! A store outage is not a dashboard outage: with the Firestore emulator killed, pages render
//! from the snapshot and the cached traffic under a banner naming the outage, write controls
//! are disabled with that reason, API writes answer 503 with a message an operator can act on
//! (no transport internals), decisions keep flowing, and `/healthz` says "degraded". With the
//! emulator back, all of it recovers. Runs its own emulator, which it stops on purpose.

#[path = "../../splitter/tests/support/mod.rs"]
mod support;

use app::access::Role;
use splitter::store::firestore::FirestoreStore;
use std::time::{Duration, Instant};

use server::testing::Served as Server;

/// What `/healthz` says, polled.
trait Health {
    async fn status(&self) -> String;
    async fn wait_status(&self, prefix: &str) -> String;
}

impl Health for Server {
    async fn status(&self) -> String {
        let (_, body) = self.get("/healthz").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["status"].as_str().unwrap().to_string()
    }

    /// Waits (polling, at most 60 s) until `/healthz`'s status starts with `prefix`.
    async fn wait_status(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status().await;
            if status.starts_with(prefix) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz still says '{status}', not '{prefix}…'"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_not_a_dashboard_outage() {
    let mut emulator = support::Emulator::start();
    // This test binary has this one test, so pointing this process at its own emulator is safe.
    std::env::set_var("FIRESTORE_EMULATOR_HOST", &emulator.host);
    let store = FirestoreStore::connect("dashboard-outage", Duration::from_secs(2))
        .await
        .unwrap();
    let traffic = server::TrafficSettings {
        replica: "outage".into(),
        flush_every: Duration::from_millis(200),
        read_every: Duration::from_millis(200),
        ..Default::default()
    };
    let s = Server::start(store, traffic).await;
    let policy = "/policies/demo-payment-api";

    assert_eq!(s.status().await, "ok");
    let (code, page) = s.get(policy).await;
    assert_eq!(code, 200);
    assert!(!page.contains("data-test=\"outage\""));
    assert!(page.contains("action=\"/policies/demo-payment-api/actions/share\""));

    emulator.stop();
    let status = s.wait_status("degraded: routing from a snapshot").await;
    assert!(status.contains("store unreachable since"), "{status}");

    // Pages: from memory, under the banner, without write controls.
    let (code, overview) = s.get("/").await;
    assert_eq!(code, 200);
    assert!(
        overview.contains("demo-payment-api"),
        "the overview lists the snapshot's policies"
    );
    assert!(overview.contains("data-test=\"outage\""));
    assert!(overview.contains("has been unreachable since"));
    let (code, page) = s.get(policy).await;
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("<h1>demo-payment-api"),
        "the policy page renders"
    );
    assert!(page.contains("data-test=\"outage\""));
    assert!(page.contains("disabled: the store is unreachable"));
    assert!(!page.contains("action=\"/policies/demo-payment-api/actions/share\""));

    // An API write: 503, said plainly; decisions go on.
    let (code, body) = s
        .send(
            reqwest::Method::PUT,
            "/api/v1/policies/demo-payment-api/share",
            r#"{"share":"20","reason":"during the outage"}"#,
        )
        .await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("unreachable"), "{body}");
    for internal in ["tonic", "transport", "Database general error"] {
        assert!(
            !body.contains(internal),
            "transport internals leaked: {body}"
        );
    }
    let (code, decision) = s
        .get("/api/v1/policies/demo-payment-api/decision?tenant=t-1")
        .await;
    assert_eq!(code, 200, "{decision}");

    // Back: healthy again, and writes work (the emulator restarts empty, tokens and all: a new
    // token, a new policy).
    let _back = support::Emulator::start_on(emulator.port());
    s.wait_status("ok").await;
    let s = Server {
        token: server::testing::token(&s.auth, "ops-2", Role::Admin, &[]).await,
        ..s
    };
    let (code, body) = s
        .send(
            reqwest::Method::POST,
            "/api/v1/policies",
            r#"{"name":"after-outage","stable_version":"v1","reason":"recovered"}"#,
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (_, overview) = s.get("/").await;
    assert!(!overview.contains("data-test=\"outage\""));
    assert!(overview.contains("after-outage"));
}
