//! The traffic section of the policy page: window selector, per-version numbers and the
//! charts (SVG rendered on the server). Refreshes itself every 10 s once hydrated.

use crate::server_fns::policy_traffic;
use crate::traffic::{TrafficPage, Window};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The policy's traffic for the window in the URL, re-read every 10 s once hydrated and on
/// every store change.
pub type TrafficData = ArcResource<Result<Option<TrafficPage>, ServerFnError>>;

/// Created once by the policy page, outside its `Suspend`: a resource created in there is
/// created again on every render pass, and each copy is built and sent with the page.
/// (An ArcResource: a refetch still in flight when the page re-renders must not await a
/// disposed resource.)
pub fn resource(name: impl Fn() -> String + Send + Sync + 'static) -> TrafficData {
    let query = use_query_map();
    let window = move || query.with(|q| q.get("window").unwrap_or_default());
    let tick = RwSignal::new(0u64);
    #[cfg(feature = "hydrate")]
    {
        if let Ok(handle) = set_interval_with_handle(
            move || tick.update(|t| *t += 1),
            std::time::Duration::from_secs(10),
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    ArcResource::new(
        move || (name(), window(), tick.get(), crate::live::store_version()),
        |(n, w, _, _)| policy_traffic(n, w),
    )
}

#[component]
pub fn Traffic(data: TrafficData) -> impl IntoView {
    view! {
        <section class="traffic" data-test="traffic" aria-labelledby="traffic-title">
            <h2 id="traffic-title">"Traffic by version"</h2>
            <Transition fallback=|| view! { <p>"Loading traffic…"</p> }>
                {move || {
                    let data = data.clone();
                    Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <p class="flash error" role="alert">{format!("Cannot read traffic: {e}")}</p> }.into_any(),
                        Ok(None) => ().into_any(),
                        Ok(Some(t)) => traffic_view(t).into_any(),
                    }
                })}}
            </Transition>
        </section>
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| format!("{:.2}%", x * 100.0))
}

fn ms(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| {
        if x < 10.0 {
            format!("{x:.2} ms")
        } else {
            format!("{x:.0} ms")
        }
    })
}

fn traffic_view(t: TrafficPage) -> impl IntoView {
    let window = t.window;
    view! {
        <nav class="windows" aria-label="Time window">
            {Window::ALL.iter().map(|w| {
                let current = (*w == window).then_some("page");
                view! { <a href=format!("?window={}", w.key()) aria-current=current data-window=w.key()>{w.label()}</a> }
            }).collect_view()}
        </nav>
        <p data-test="traffic-summary">
            <strong data-test="traffic-requests">{t.requests}</strong>
            {format!(" requests in the last {}; canary share observed ", window.label())}
            <strong data-test="observed-share">{pct(t.observed_share)}</strong>
            " against " <strong data-test="configured-share">{pct(Some(t.configured_share))}</strong> " configured now."
        </p>
        <table class="traffic-versions" data-test="traffic-versions">
            <caption>{format!("Per version, last {}", window.label())}</caption>
            <thead><tr>
                <th scope="col">"Version"</th><th scope="col">"Requests"</th><th scope="col">"Per second (mean)"</th>
                <th scope="col">"5xx"</th><th scope="col">"Error rate"</th>
                <th scope="col">"p50"</th><th scope="col">"p95"</th><th scope="col">"p99"</th>
            </tr></thead>
            <tbody>
                {t.versions.is_empty().then(|| view! { <tr><td colspan="8">"No requests recorded in this window."</td></tr> })}
                {t.versions.into_iter().map(|v| view! {
                    <tr data-version=v.version.clone() data-role=v.role.key()>
                        <th scope="row" class=format!("version {}", v.role)>{format!("{} ({})", v.version, v.role)}</th>
                        <td data-test="requests">{v.requests}</td>
                        <td>{format!("{:.2}", v.rps)}</td>
                        <td data-test="errors">{v.errors}</td>
                        <td data-test="error-rate">{pct(v.error_rate)}</td>
                        <td>{ms(v.p50_ms)}</td><td>{ms(v.p95_ms)}</td><td>{ms(v.p99_ms)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        <div class="charts">
            {t.charts.into_iter().map(|c| view! {
                <figure class="chart" data-test=format!("chart-{}", c.id)>
                    <div role="img" aria-label=format!("{}. {}", c.title, c.alt) inner_html=c.svg></div>
                    <figcaption>{c.alt}</figcaption>
                </figure>
            }).collect_view()}
        </div>
        <p class="muted" data-test="recorder">
            {format!(
                "Counts are written to the store every few seconds by each server and summed here. On this server: {} request(s) not yet written, {} lost{}.",
                t.unflushed_requests,
                t.lost_requests,
                t.recorder_error.map(|e| format!("; last write failed: {e}")).unwrap_or_default()
            )}
        </p>
    }
}
