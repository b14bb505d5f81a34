//! Helpers for this crate's tests and benches (and for anyone embedding the server in theirs):
//! a router over a store with its access state, and principals to call it as.

use crate::auth::{records, Auth};
use app::access::{Principal, Role, SignIn};
use splitter::store::Store;
use std::sync::Arc;

/// The full router over `store` (demo policies seeded when empty), and its access state.
pub async fn router(
    store: Arc<dyn Store>,
    traffic: crate::TrafficSettings,
    demo: bool,
) -> (axum::Router, Arc<Auth>) {
    let auth = Auth::new(store.clone());
    router_with(store, traffic, demo, auth).await
}

/// [`router`] with access settings of the caller's own.
pub async fn router_with(
    store: Arc<dyn Store>,
    traffic: crate::TrafficSettings,
    demo: bool,
    auth: Auth,
) -> (axum::Router, Arc<Auth>) {
    site_router(store, traffic, demo, auth, "target/site").await
}

/// [`router_with`] serving the built files of `site_root`.
pub async fn site_router(
    store: Arc<dyn Store>,
    traffic: crate::TrafficSettings,
    demo: bool,
    auth: Auth,
    site_root: &str,
) -> (axum::Router, Arc<Auth>) {
    crate::seed::seed_if_empty(&*store).await.unwrap();
    let auth = Arc::new(auth);
    let state = crate::app_state(store.clone(), store, traffic)
        .await
        .unwrap();
    let leptos = leptos::config::LeptosOptions::builder()
        .output_name("apx-canary")
        .site_root(site_root)
        .build();
    (crate::router(leptos, state, auth.clone(), demo), auth)
}

/// A signed-in browser session: the `Cookie` header value and the session's CSRF token.
pub async fn session(auth: &Auth, name: &str, role: Role, policies: &[&str]) -> (String, String) {
    let principal = Principal {
        name: name.into(),
        role,
        policies: policies.iter().map(|p| p.to_string()).collect(),
        via: SignIn::Password,
    };
    let now = crate::auth::now();
    let id = records::start_session(&*auth.store, principal, now)
        .await
        .unwrap();
    let record = records::session(&*auth.store, &id, auth.limits, now)
        .await
        .unwrap()
        .unwrap();
    (format!("{}={id}", crate::auth::SESSION_COOKIE), record.csrf)
}

/// A bearer token for `role`.
pub async fn token(auth: &Auth, name: &str, role: Role, policies: &[&str]) -> String {
    let policies = policies.iter().map(|p| p.to_string()).collect();
    records::create_token(
        &*auth.store,
        name,
        role,
        policies,
        "test",
        crate::auth::now(),
    )
    .await
    .unwrap()
    .1
}

/// Background store work an hour apart (traffic flushes and reads, the plan controller): during
/// a test, only what the test does touches the store.
pub fn quiet(replica: &str) -> crate::TrafficSettings {
    let hour = std::time::Duration::from_secs(3600);
    crate::TrafficSettings {
        replica: replica.into(),
        flush_every: hour,
        read_every: hour,
        idle_read_every: hour,
        plan_every: hour,
        ..Default::default()
    }
}

/// The Firestore emulator's `project` (each test its own). Fails loudly without an emulator:
/// Firestore tests never skip.
pub async fn firestore(project: &str) -> Arc<splitter::store::firestore::FirestoreStore> {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "FIRESTORE_EMULATOR_HOST is not set: run the tests with `./dev test`, which starts the emulator"
    );
    splitter::store::firestore::FirestoreStore::connect(project, std::time::Duration::from_secs(10))
        .await
        .unwrap()
}

/// The full router served on 127.0.0.1 (demo policies seeded), called over real HTTP as an
/// admin's bearer token.
pub struct Served {
    pub base: String,
    pub token: String,
    pub auth: Arc<Auth>,
}

impl Served {
    pub async fn start(store: Arc<dyn Store>, traffic: crate::TrafficSettings) -> Served {
        let (app, auth) = router(store, traffic, true).await;
        let token = token(&auth, "ops", Role::Admin, &[]).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Served { base, token, auth }
    }

    /// A request with a JSON `body` and `If-Match: "1"`; the status and the body's text.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: &str) -> (u16, String) {
        let res = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .header("if-match", "\"1\"")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        self.send(reqwest::Method::GET, path, "").await
    }
}
