//! Live updates: once hydrated, pages re-read their data whenever the store changes (another
//! operator, the API, another replica), fed by the server-sent events of `/api/v1/changes`.

use leptos::prelude::*;

/// Moves whenever the store changed; resources that read it refetch.
#[derive(Clone, Copy)]
pub struct StoreVersion(pub RwSignal<u64>);

/// Provides [`StoreVersion`] and, in the browser, connects it to the server's change stream.
pub fn provide() {
    let version = RwSignal::new(0u64);
    provide_context(StoreVersion(version));
    // Effects run only in the browser, once hydrated.
    Effect::new(move |_| connect(version));
}

/// The current store version (0 on the server).
pub fn store_version() -> u64 {
    use_context::<StoreVersion>().map_or(0, |v| v.0.get())
}

#[cfg(feature = "hydrate")]
fn connect(version: RwSignal<u64>) {
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    let Ok(source) = web_sys::EventSource::new("/api/v1/changes") else {
        return;
    };
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_: web_sys::MessageEvent| {
            version.update(|v| *v += 1);
        });
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // Both live as long as the page: the browser reconnects the stream by itself.
    on_message.forget();
    std::mem::forget(source);
}

#[cfg(not(feature = "hydrate"))]
fn connect(_version: RwSignal<u64>) {}
