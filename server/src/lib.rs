//! The APX Canary server: SSR pages, server functions, the JSON API v1 and the form handlers
//! that let every page work without JavaScript.

pub mod api;
pub mod auth;
pub mod controller;
pub mod demo;
pub mod demo_traffic;
pub mod error;
pub mod forms;
pub mod headers;
pub mod limits;
pub mod loadgen;
pub mod metrics;
pub mod paths;
pub mod seed;
pub mod testing;
pub mod webhooks;

use app::ssr::state::AppState;
use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use splitter::recorder::TrafficRecorder;
use splitter::snapshot::Splitter;
use splitter::store::instrumented::{Instrumented, StoreMetrics};
use splitter::store::{PolicyStore, TrafficStore};
use splitter::traffic_cache::TrafficCache;
use std::sync::Arc;
use std::time::Duration;

/// Router state: Leptos's options for the pages, our [`AppState`] for everything else.
#[derive(Clone)]
pub struct ServerState {
    pub leptos: LeptosOptions,
    pub app: AppState,
    pub auth: Arc<auth::Auth>,
}

impl FromRef<ServerState> for Arc<auth::Auth> {
    fn from_ref(s: &ServerState) -> Arc<auth::Auth> {
        s.auth.clone()
    }
}

impl FromRef<ServerState> for LeptosOptions {
    fn from_ref(s: &ServerState) -> LeptosOptions {
        s.leptos.clone()
    }
}

impl FromRef<ServerState> for AppState {
    fn from_ref(s: &ServerState) -> AppState {
        s.app.clone()
    }
}

/// How this replica records traffic.
#[derive(Debug, Clone)]
pub struct TrafficSettings {
    /// Names this replica's traffic documents (one per minute); the process start time is
    /// appended.
    pub replica: String,
    /// How often recorded traffic is written to the store.
    pub flush_every: Duration,
    /// How often the other replicas' new traffic is read from the store while someone views
    /// traffic on this replica, and how often when nobody does.
    pub read_every: Duration,
    pub idle_read_every: Duration,
    /// Stored traffic older than this is deleted (the embedded store; Firestore's TTL policy
    /// does it there).
    pub retention: Duration,
    /// How often the snapshot reads every config again, as a safety net under the change feed.
    pub resync_every: Duration,
    /// How often the plan controller judges running plans.
    pub plan_every: Duration,
    /// Where the controller's notices go.
    pub webhooks: Vec<reqwest::Url>,
}

impl Default for TrafficSettings {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .unwrap_or_else(|| "host".into());
        TrafficSettings {
            replica: format!("{}-{}", host.trim(), std::process::id()),
            flush_every: Duration::from_secs(5),
            read_every: Duration::from_secs(5),
            idle_read_every: Duration::from_secs(300),
            retention: Duration::from_secs(25 * 3600),
            resync_every: Duration::from_secs(3600),
            plan_every: Duration::from_secs(10),
            webhooks: Vec::new(),
        }
    }
}

/// Builds the app state over a store's two halves (usually the same store): the snapshot
/// follows the policies' change feed; the recorder flushes this replica's traffic; the traffic
/// cache reads the fleet's. Every call to the store is counted ([`StoreMetrics`]).
pub async fn app_state(
    policies: Arc<dyn PolicyStore>,
    traffic_store: Arc<dyn TrafficStore>,
    traffic: TrafficSettings,
) -> Result<AppState, splitter::Error> {
    let store_metrics = Arc::new(StoreMetrics::default());
    let store: Arc<dyn PolicyStore> = Arc::new(Instrumented::new(policies, store_metrics.clone()));
    let traffic_store: Arc<dyn TrafficStore> =
        Arc::new(Instrumented::new(traffic_store, store_metrics.clone()));
    let splitter = Splitter::follow(store.clone(), traffic.resync_every).await?;
    let recorder = Arc::new(TrafficRecorder::new(
        &unique_replica(&traffic.replica),
        TrafficRecorder::DEFAULT_MAX_PENDING,
    ));
    let cache = Arc::new(TrafficCache::new());
    if let Err(e) = cache.refresh(&*traffic_store, jiff::Timestamp::now()).await {
        tracing::warn!(error = %e, "reading stored traffic failed; it is read again in the background");
    }
    cache.spawn_reader(
        traffic_store.clone(),
        traffic.read_every,
        traffic.idle_read_every,
    );
    let written = {
        let cache = cache.clone();
        move |docs| cache.apply(docs)
    };
    recorder.spawn_flusher(
        traffic_store.clone(),
        traffic.flush_every,
        traffic.retention,
        written,
    );
    let state = AppState {
        store_label: store.describe(),
        store,
        traffic_store,
        splitter,
        traffic: cache,
        events: Default::default(),
        uploads: Default::default(),
        recorder,
        store_metrics,
        traffic_pages: Default::default(),
        verdicts: Default::default(),
    };
    let hooks = webhooks::Webhooks::start(traffic.webhooks.clone(), Duration::from_secs(1));
    controller::spawn(state.clone(), traffic.plan_every, hooks);
    Ok(state)
}

/// Each process writes its own documents, even when a restarted container comes back with the
/// same host name and pid within the same minute: the start time makes the key unique, so a
/// new process never overwrites (and so loses) what the previous one wrote. (A second state in
/// the same process, as in tests, gets a sequence number too.)
fn unique_replica(replica: &str) -> String {
    static STATES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let started = jiff::Timestamp::now().as_millisecond();
    let n = STATES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{replica}-{started:x}-{n}")
}

/// Every route: pages, server functions, API v1, form posts, sign-in, health and static files.
/// The largest sign-in form accepted (a name, a password, the `next` path).
pub const SIGN_IN_MAX_BYTES: usize = 16 * 1024;

/// Every request, routed or not, has its path checked ([`paths`]) and passes [`auth::guard`];
/// the demo service exists only when `demo`.
pub fn router(leptos: LeptosOptions, app: AppState, auth: Arc<auth::Auth>, demo: bool) -> Router {
    use axum::routing::delete;
    let routes = generate_route_list(app::App);
    let guard = auth::GuardState {
        auth: auth.clone(),
        site_root: std::path::Path::new(leptos.site_root.as_ref()).into(),
    };
    let state = ServerState { leptos, app, auth };
    let context = {
        let app = state.app.clone();
        move || {
            provide_context(app.clone());
            // The nonce the security headers announce, for the page's inline scripts.
            let nonce = use_context::<axum::http::request::Parts>()
                .and_then(|p| p.extensions.get::<headers::CspNonce>().cloned());
            if let Some(n) = nonce {
                provide_context(leptos::nonce::Nonce::from_value(n.0));
            }
        }
    };
    let shell = {
        let options = state.leptos.clone();
        move || app::shell(options.clone())
    };
    let demo_routes = if demo {
        demo::routes(&state.app)
    } else {
        Router::new()
    };
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::metrics))
        .merge(demo_routes)
        .route(
            "/signin",
            get(auth::pages::signin_page)
                .post(auth::pages::signin)
                // A name and a password: nobody needs 2 MB for that.
                .layer(axum::extract::DefaultBodyLimit::max(SIGN_IN_MAX_BYTES)),
        )
        .route("/signout", post(auth::pages::signout))
        .route(
            "/setup",
            get(auth::pages::setup_page).post(auth::pages::setup),
        )
        .route(
            "/admin/tokens",
            get(auth::pages::tokens_page).post(auth::pages::create_token_form),
        )
        .route(
            "/admin/tokens/{id}/revoke",
            post(auth::pages::revoke_token_form),
        )
        .route("/api/v1/session", get(auth::pages::session_json))
        .route(
            "/api/v1/tokens",
            get(auth::pages::list_tokens_json).post(auth::pages::create_token_json),
        )
        .route(
            "/api/v1/tokens/{id}",
            delete(auth::pages::revoke_token_json),
        )
        .nest("/api/v1", api::routes())
        .route("/policies", post(forms::create))
        .route("/policies/{name}/actions/{action}", post(forms::change))
        .route(
            "/policies/{name}/simulate/upload",
            post(forms::upload).layer(axum::extract::DefaultBodyLimit::max(
                app::ssr::state::Uploads::MAX_BYTES + 64 * 1024,
            )),
        )
        .leptos_routes_with_context(&state, routes, context.clone(), shell)
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            ServerState,
            _,
        >(context, app::shell))
        // After the fallback, so that it covers the fallback too (a `route_layer` would not).
        .layer(axum::middleware::from_fn_with_state(guard, auth::guard))
        .with_state(state)
        .layer(axum::middleware::from_fn(headers::secure))
        .layer(axum::middleware::from_fn(headers::cache_static))
        // Pages, JSON, WASM, JS and CSS go out brotli- or gzip-compressed when the client asks
        // (server-sent events and images never). The fastest level: the WASM is compressed
        // per request, and a fast level already takes most of its size off.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest),
        )
}
