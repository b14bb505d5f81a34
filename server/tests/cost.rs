//! What a page view costs in store documents: nothing but audit events, once per revision. The
//! dashboard reads configs from the snapshot and traffic from memory; counted through
//! `/metrics` (`apx_canary_store_documents_total`, the documents Firestore bills), on the
//! embedded store and on the Firestore emulator.

use splitter::store::embedded::EmbeddedStore;
use std::sync::Arc;

use server::testing::Served as Server;

/// Page views and counts, on a server whose background work is an hour apart (only page views
/// and the test's own change touch the store).
trait Views {
    async fn view_every_page(&self);
    async fn reads(&self) -> [u64; 4];
}

impl Views for Server {
    /// Every page of the dashboard once, each checked to have rendered its data.
    async fn view_every_page(&self) {
        for (path, shows) in [
            ("/", "demo-payment-api"),
            ("/?q=search", "demo-search-api"),
            ("/policies/demo-payment-api", "Traffic by version"),
            ("/policies/demo-payment-api?window=24h", "History"),
            ("/policies/demo-search-api", "demo-search-api"),
            ("/policies/demo-payment-api/simulate", "Simulate"),
        ] {
            let (code, page) = self.send(reqwest::Method::GET, path, "").await;
            assert_eq!(code, 200, "{path}");
            assert!(page.contains(shows), "{path} does not show '{shows}'");
        }
    }

    /// (documents read, get calls, list calls, events calls) so far, from `/metrics`.
    async fn reads(&self) -> [u64; 4] {
        let (_, text) = self.send(reqwest::Method::GET, "/metrics", "").await;
        let value = |prefix: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
        };
        [
            value("apx_canary_store_documents_total{kind=\"read\"} "),
            value("apx_canary_store_calls_total{op=\"get\"} "),
            value("apx_canary_store_calls_total{op=\"list\"} "),
            value("apx_canary_store_calls_total{op=\"events\"} "),
        ]
    }
}

/// `exact`: the store sends no listener resets (the embedded store), so the documents a change
/// costs are exact. (The Firestore emulator resets its listeners after changes, and the
/// snapshot then reads the collection again, on its own schedule.)
async fn page_views_cost_only_new_events(s: Server, exact: bool) {
    // The first views read each viewed policy's events once.
    s.view_every_page().await;
    let before = s.reads().await;
    for _ in 0..10 {
        s.view_every_page().await;
    }
    assert_eq!(s.reads().await, before, "60 more page views read nothing");

    // A change: `execute` reads the config, the compare-and-swap reads it again; the next
    // views read the one new event, once.
    let (code, body) = s
        .send(
            reqwest::Method::PUT,
            "/api/v1/policies/demo-payment-api/share",
            r#"{"share":"20","reason":"a step"}"#,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    for _ in 0..5 {
        s.view_every_page().await;
    }
    let after = s.reads().await;
    assert_eq!(after[1] - before[1], 1, "one get: the change's own");
    assert_eq!(
        after[3] - before[3],
        1,
        "one events query for five rounds of views"
    );
    if exact {
        assert_eq!(
            after[0] - before[0],
            3,
            "the change's two reads and its one new event"
        );
        assert_eq!(after[2], before[2], "no list");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_views_cost_only_new_events_on_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap());
    page_views_cost_only_new_events(
        Server::start(store, server::testing::quiet("cost")).await,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_views_cost_only_new_events_on_firestore_emulator() {
    let store = server::testing::firestore(&format!("server-cost-{}", std::process::id())).await;
    page_views_cost_only_new_events(
        Server::start(store, server::testing::quiet("cost")).await,
        false,
    )
    .await;
}
