#![recursion_limit = "512"]
//! The APX Canary dashboard: pages (`routes/`), reusable pieces (`components/`), plain data and
//! its formatting (`model`), and the server functions that read the store (`server_fns`).

pub mod access;
pub mod actions;
pub mod charts;
pub mod components;
pub mod live;
pub mod model;
pub mod routes;
pub mod server_fns;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod traffic;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{path, Lazy, SsrMode};

/// The HTML document around the app (server only renders it).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    let stylesheet = ssr::assets::stylesheet;
    #[cfg(not(feature = "ssr"))]
    let stylesheet = || "/pkg/apx-canary.css";
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <link rel="stylesheet" id="leptos" href=stylesheet()/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    live::provide();
    components::provide_caller();
    let store = Resource::new(|| (), |_| server_fns::store_label());
    view! {
        <Title text="APX Canary"/>
        <header class="top">
            <a href="/" class="brand">"APX Canary"</a>
            <Suspense fallback=|| ()>
                <span class="store-label" data-test="store-label">
                    {move || Suspend::new(async move { store.await.map(|s| format!("store: {s}")).unwrap_or_default() })}
                </span>
            </Suspense>
            <span class="legend"><span class="swatch stable"></span>"stable" <span class="swatch canary"></span>"canary"</span>
            <components::WhoAmI/>
        </header>
        <components::OutageBanner/>
        <Router>
            <main>
                // Async: the whole page is rendered before it is sent, so it works without JavaScript.
                <Routes fallback=|| view! { <h1>"Page not found"</h1><p><a href="/">"All policies"</a></p> }>
                    <Route path=path!("/") view=routes::overview::Overview ssr=SsrMode::Async/>
                    <Route path=path!("/policies/new") view={Lazy::<routes::lazy::NewPolicyPage>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/policies/:name") view={Lazy::<routes::lazy::PolicyPage>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/policies/:name/simulate") view={Lazy::<routes::lazy::SimulatePage>::new()} ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Lazy pages hydrate asynchronously (their code may still be arriving): the page is marked
    // interactive, for tools and tests, once hydration has finished.
    let _ = any_spawner::Executor::init_wasm_bindgen();
    leptos::task::spawn_local(async {
        let Some(body) = leptos::prelude::document().body() else {
            return;
        };
        leptos::mount::hydrate_from_async(body, App).await.forget();
        live::mark("data-hydrated", "true");
    });
}
