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
    crate::seed::seed_if_empty(&*store).await.unwrap();
    let auth = Arc::new(auth);
    let state = crate::app_state(store.clone(), store, traffic)
        .await
        .unwrap();
    let leptos = leptos::config::LeptosOptions::builder()
        .output_name("apx-canary")
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
