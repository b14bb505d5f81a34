//! The APX Canary server: SSR pages, server functions, the JSON API v1 and the form handlers
//! that let every page work without JavaScript.

pub mod api;
pub mod error;
pub mod forms;
pub mod seed;

use app::state::AppState;
use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use splitter::snapshot::Splitter;
use splitter::store::ConfigStore;
use std::sync::Arc;
use std::time::Duration;

/// Router state: Leptos's options for the pages, our [`AppState`] for everything else.
#[derive(Clone)]
pub struct ServerState {
    pub leptos: LeptosOptions,
    pub app: AppState,
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

/// Builds the app state over `store`: the snapshot follows it for routing decisions.
pub async fn app_state(store: Arc<dyn ConfigStore>) -> Result<AppState, splitter::Error> {
    let splitter = Splitter::follow(store.clone(), Duration::from_secs(30)).await?;
    Ok(AppState {
        store_label: store.describe(),
        store,
        splitter,
        uploads: Default::default(),
    })
}

/// Every route: pages, server functions, API v1, form posts, health and static files.
pub fn router(leptos: LeptosOptions, app: AppState) -> Router {
    let routes = generate_route_list(app::App);
    let state = ServerState { leptos, app };
    let context = {
        let app = state.app.clone();
        move || provide_context(app.clone())
    };
    let shell = {
        let options = state.leptos.clone();
        move || app::shell(options.clone())
    };
    Router::new()
        .route("/healthz", get(api::healthz))
        .nest("/api/v1", api::routes())
        .route("/policies", post(forms::create))
        .route("/policies/{name}/actions/{action}", post(forms::change))
        .route(
            "/policies/{name}/simulate/upload",
            post(forms::upload).layer(axum::extract::DefaultBodyLimit::max(
                app::state::Uploads::MAX_BYTES + 64 * 1024,
            )),
        )
        .leptos_routes_with_context(&state, routes, context.clone(), shell)
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            ServerState,
            _,
        >(context, app::shell))
        .with_state(state)
}
