//! Everything of the app that only the server runs, fenced by the `ssr` feature here and
//! nowhere else: the shared state, and the pure functions that turn store data into pages
//! (the browser build never compiles them).

pub mod assets;
pub mod events;
pub mod overview;
pub mod plans;
pub mod preview;
pub mod state;
pub mod traffic;
pub mod traffic_pages;

/// The caller of the request being served (left in its extensions by the server's guard).
/// Also says whether the store is unreachable (pages show a banner and disable changes).
pub fn caller() -> crate::access::Caller {
    let mut caller: crate::access::Caller = leptos::prelude::use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<crate::access::Caller>().cloned())
        .unwrap_or_default();
    if let Some(state) = leptos::prelude::use_context::<state::AppState>() {
        caller.outage = state.outage().map(|o| o.describe(state.store_kind()));
    }
    caller
}
