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
            mark("data-store-version", &version.get_untracked().to_string());
        });
    // Observable state for tools and tests: whether the stream is open, and how many changes
    // it delivered (`<html data-live="open" data-store-version="3">`).
    let on_open = Closure::<dyn FnMut()>::new(move || mark("data-live", "open"));
    let on_error = Closure::<dyn FnMut()>::new(move || mark("data-live", "reconnecting"));
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    // All live as long as the page: the browser reconnects the stream by itself.
    on_message.forget();
    on_open.forget();
    on_error.forget();
    std::mem::forget(source);
}

/// Sets an attribute on `<html>`.
#[cfg(feature = "hydrate")]
pub fn mark(attribute: &str, value: &str) {
    if let Some(root) = document().document_element() {
        let _ = root.set_attribute(attribute, value);
    }
}

#[cfg(not(feature = "hydrate"))]
fn connect(_version: RwSignal<u64>) {}
