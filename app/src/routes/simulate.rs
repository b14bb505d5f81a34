//! `/policies/:name/simulate`: which tenants are on canary now, which would be after a share
//! change, and who moves. A GET form (shareable URL) without JavaScript; the same computation
//! (the splitter crate) runs in the browser once hydrated.

use crate::components::{Flash, SplitBar};
use crate::server_fns::get_policy;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use splitter::{BasisPoints, Simulator, TenantId};

/// Rows listed on the page; counts always cover every tenant.
pub const MAX_ROWS: usize = 2_000;

/// The parsed simulator input.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationInput {
    pub tenants: Vec<String>,
    /// (line number, message) for each line that is not a tenant id.
    pub invalid: Vec<(usize, String)>,
}

/// One tenant id per line, or comma/semicolon separated (a CSV's first column). Blank lines and
/// a `tenant` header are skipped; duplicates are counted once.
pub fn parse_tenants(text: &str) -> SimulationInput {
    let mut seen = std::collections::HashSet::new();
    let mut tenants = Vec::new();
    let mut invalid = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let first = line.split([',', ';', '\t']).next().unwrap_or("").trim();
        if first.is_empty() || (i == 0 && first.eq_ignore_ascii_case("tenant")) {
            continue;
        }
        match TenantId::new(first) {
            Ok(_) => {
                if seen.insert(first.to_string()) {
                    tenants.push(first.to_string());
                }
            }
            Err(e) => invalid.push((i + 1, e.to_string())),
        }
    }
    SimulationInput { tenants, invalid }
}

#[component]
pub fn Simulate() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let name = move || params.read().get("name").unwrap_or_default();
    // ArcResources: a Suspend still pending when the page is replaced keeps its own handle.
    let page = ArcResource::new(
        move || (name(), crate::live::store_version()),
        |(n, _)| get_policy(n),
    );
    // Owned here, outside the part that re-renders when the store changes, so typing survives.
    // The share and tenant inputs, and the tenant list as last applied (debounced); the share
    // starts as the query's, so that the request preview below asks for it at once.
    let inputs = (
        RwSignal::new(query.with_untracked(|q| q.get("share").unwrap_or_default())),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
    );
    // The request preview, written on the server from the traffic it holds (markup, so the
    // page's WASM carries no code for it); asked again as the share changes.
    let share_input = inputs.0;
    let preview = ArcResource::new(
        move || (name(), share_input.get(), crate::live::store_version()),
        |(n, share, _)| crate::server_fns::request_preview(n, share),
    );
    let caller = crate::components::use_caller();
    let upload = ArcResource::new(
        move || query.with(|q| q.get("upload").unwrap_or_default()),
        |id| async move {
            if id.is_empty() {
                Ok(None)
            } else {
                crate::server_fns::uploaded_tenants(id).await
            }
        },
    );
    view! {
        // A Transition: while the policy is re-read after a store change, the simulator (and what
        // the operator typed) stays on screen instead of flashing "Loading…".
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let (share_text, tenants_text) = query.with_untracked(|q| {
                    (q.get("share").unwrap_or_default(), q.get("tenants").unwrap_or_default())
                });
                let csrf = caller.csrf.clone().unwrap_or_default();
                let (page, upload, preview) = (page.clone(), upload.clone(), preview.clone());
                Suspend::new(async move {
                let tenants_text = match upload.await {
                    Ok(Some(text)) => text,
                    Ok(None) => tenants_text,
                    Err(e) => return view! { <p class="flash error" role="alert">{format!("Cannot read the uploaded file: {e}")}</p> }.into_any(),
                };
                match page.await {
                    Err(e) => view! { <p class="flash error" role="alert">{format!("Cannot read the policy: {e}")}</p> }.into_any(),
                    Ok(None) => view! { <h1>"No such policy"</h1><p><a href="/">"All policies"</a></p> }.into_any(),
                    Ok(Some(p)) => simulator_view(p.config, share_text, tenants_text, inputs, csrf, preview).into_any(),
                }
            })}}
        </Transition>
    }
}

fn simulator_view(
    config: splitter::PolicyConfig,
    share_text: String,
    tenants_text: String,
    (share_input, tenants_input, applied): (RwSignal<String>, RwSignal<String>, RwSignal<String>),
    csrf: String,
    preview: ArcResource<Result<Option<String>, ServerFnError>>,
) -> impl IntoView {
    let name = config.policy_name.to_string();
    // The server renders the inputs once; once hydrated, every keystroke recomputes. A re-render
    // (the store changed) keeps what the operator had typed.
    if share_input.get_untracked().is_empty() {
        share_input.set(share_text);
    }
    if tenants_input.get_untracked().is_empty() {
        tenants_input.set(tenants_text);
    }
    let share_text = share_input.get_untracked();
    let tenants_text = tenants_input.get_untracked();
    let current = config.canary_basis_points;
    let canary_label = config
        .canary_version
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "none".into());
    let salt = config.salt.clone();
    // The tenant list is applied 120 ms after the last keystroke: typing or a browser that sends
    // one input event per pasted line does not recompute (and hash every tenant) each time.
    // Owned by the page, not by this view: a re-render while the list is being applied (the
    // store changed) must not leave the results reading a disposed signal.
    // A re-render may come between a keystroke and its debounced apply (the pending apply
    // belongs to the view being replaced): catch up with what the operator typed.
    if applied.get_untracked() != tenants_text {
        applied.set(tenants_text.clone());
    }
    let mut apply = leptos::leptos_dom::helpers::debounce(
        std::time::Duration::from_millis(120),
        move |_: ()| applied.set(tenants_input.get_untracked()),
    );
    let results = move || {
        let share_text = share_input.get();
        let share = if share_text.trim().is_empty() {
            Ok(current)
        } else {
            BasisPoints::parse(&share_text)
        };
        let input = applied.with(|t| parse_tenants(t));
        view! {
            {share.as_ref().err().map(|e| view! { <p class="flash error" role="alert">{e.to_string()}</p> })}
            {(!input.invalid.is_empty()).then(|| view! {
                <div class="flash error" role="alert"><p>{format!("{} line(s) are not tenant ids and were left out:", input.invalid.len())}</p>
                <ul>{input.invalid.iter().take(20).map(|(l, e)| view! { <li>{format!("line {l}: {e}")}</li> }).collect_view()}</ul></div>
            })}
            {share.ok().map(|proposed| result_view(&config, proposed, &input.tenants))}
        }
    };
    let on_file = move |ev: leptos::ev::Event| read_file(ev, [tenants_input, applied]);
    view! {
        <nav class="crumbs"><a href="/">"Policies"</a> " / " <a href=format!("/policies/{name}")>{name.clone()}</a> " / simulate"</nav>
        <h1>"Simulate " {name.clone()}</h1>
        <Flash/>
        <p>"Now: canary " <strong>{canary_label}</strong>
           " at " <strong data-test="current-share">{current.to_string()}</strong> ", salt " <code>{salt}</code></p>
        <form method="get" action=format!("/policies/{name}/simulate") class="card" data-test="simulate-form">
            <label for="sim-share">"Proposed share"</label>
            <input id="sim-share" name="share" value=share_text.clone() placeholder=current.to_string() inputmode="decimal"
                on:input=move |ev| share_input.set(event_target_value(&ev))/>
            <label for="sim-tenants">"Tenant ids (one per line, or a CSV whose first column is the tenant)"</label>
            <textarea id="sim-tenants" name="tenants" rows="8"
                on:input=move |ev| {
                    tenants_input.set(event_target_value(&ev));
                    apply(());
                }>{tenants_text.clone()}</textarea>
            <button type="submit">"Simulate"</button>
        </form>
        <form method="post" enctype="multipart/form-data" action=format!("/policies/{name}/simulate/upload") class="card">
            <label for="sim-file">"…or upload a CSV or text file of tenant ids"</label>
            <input id="sim-file" type="file" name="file" accept=".csv,.txt,text/plain,text/csv" on:change=on_file/>
            <input type="hidden" name="share" value=share_text/>
            <input type="hidden" name="csrf" value=csrf/>
            <noscript><button type="submit">"Upload and simulate"</button></noscript>
        </form>
        // The request preview, rendered on the server (`crate::ssr::preview`). Inside the page's
        // Transition: while a new share's preview loads, the last one stays.
        {move || {
            let preview = preview.clone();
            Suspend::new(async move {
                preview.await.ok().flatten().map(|html| view! { <div inner_html=html></div> })
            })
        }}
        {results}
    }
}

fn result_view(
    config: &splitter::PolicyConfig,
    proposed: BasisPoints,
    tenants: &[String],
) -> AnyView {
    let sim = Simulator::new(config, proposed);
    let c = sim.counts(tenants);
    let (steps, plan_label) = plan_steps(config);
    let rows: Vec<_> = sim
        .rows(&tenants[..tenants.len().min(MAX_ROWS)])
        .into_iter()
        .map(|r| {
            let joins = with_plan(config, &steps, r.tenant, r.bucket.get());
            (
                r.tenant.to_string(),
                r.bucket.get(),
                r.canary_now,
                r.canary_proposed,
                joins,
            )
        })
        .collect();
    let pct = |n: u64, d: u64| {
        if d == 0 {
            "—".to_string()
        } else {
            format!("{:.2}%", n as f64 * 100.0 / d as f64)
        }
    };
    view! {
        <SplitBar share=sim.proposed_config().effective_share()/>
        <table class="counts" data-test="counts">
            <tbody>
                <tr><th scope="row">"Tenants"</th><td data-test="tenants">{c.tenants}</td><td></td></tr>
                <tr><th scope="row">{format!("On canary now ({})", config.canary_basis_points)}</th><td data-test="canary-now">{c.canary_now}</td><td>{pct(c.canary_now, c.tenants)}</td></tr>
                <tr><th scope="row">{format!("On canary at {proposed}")}</th><td data-test="canary-proposed">{c.canary_proposed}</td>
                    <td data-test="observed">{format!("{} observed vs {} target", pct(c.canary_proposed, c.tenants), proposed)}</td></tr>
                <tr><th scope="row">"Move stable → canary"</th><td data-test="to-canary">{c.to_canary}</td><td>{pct(c.to_canary, c.tenants)}</td></tr>
                <tr><th scope="row">"Move canary → stable"</th><td data-test="to-stable">{c.to_stable}</td><td>{pct(c.to_stable, c.tenants)}</td></tr>
            </tbody>
        </table>
        {bucket_figure(config, proposed, tenants)}
        {(c.tenants as usize > MAX_ROWS).then(|| view! { <p>{format!("Listing the first {MAX_ROWS} of {} tenants; the counts cover all.", c.tenants)}</p> })}
        <table class="simulation" data-test="rows">
            <caption data-test="plan-caption">{format!("With the plan: {plan_label}")}</caption>
            <thead><tr><th scope="col">"Tenant"</th><th scope="col">"Bucket"</th><th scope="col">"Now"</th><th scope="col">"Proposed"</th><th scope="col">"Moves"</th><th scope="col">"With the plan"</th></tr></thead>
            <tbody>{rows.into_iter().map(|(t, b, now, next, joins)| {
                let label = |c: bool| if c { "canary" } else { "stable" };
                let cell = t.clone();
                view! {
                    <tr data-tenant=t data-proposed=label(next)>
                        <td>{cell}</td><td>{b}</td>
                        <td class=format!("version {}", label(now))>{label(now)}</td>
                        <td class=format!("version {}", label(next))>{label(next)}</td>
                        <td>{if now != next { "moves" } else { "" }}</td>
                        <td data-test="joins">{joins}</td>
                    </tr>
                }
            }).collect_view()}</tbody>
        </table>
    }.into_any()
}

/// The steps the "with the plan" column follows: the policy's running (or paused) plan, else
/// the original recipe; and how to name them.
fn plan_steps(config: &splitter::PolicyConfig) -> (Vec<splitter::plans::Step>, String) {
    let (steps, whose) = match config.plan.as_ref().filter(|p| p.active()) {
        Some(p) => (p.steps.clone(), "this policy's plan"),
        None => (
            splitter::plans::preset(1.0),
            "the original recipe, if started now",
        ),
    };
    let list: Vec<String> = steps
        .iter()
        .map(|s| format!("{} {}", s.share, minutes(u64::from(s.hold_secs))))
        .collect();
    (steps, format!("{whose} ({})", list.join(" → ")))
}

fn minutes(secs: u64) -> String {
    if secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// When a tenant reaches canary under the plan: at which step and how long after the plan's
/// start at the earliest (pins win over the plan).
fn with_plan(
    config: &splitter::PolicyConfig,
    steps: &[splitter::plans::Step],
    tenant: &str,
    bucket: u16,
) -> String {
    let pin = splitter::TenantId::new(tenant)
        .ok()
        .and_then(|t| config.overrides.get(&t).copied());
    match (pin, splitter::plans::joins_at(steps, bucket)) {
        (Some(p), _) => format!("pinned to {p}"),
        (None, Some((0, _))) => format!("step 1 ({}), at the start", steps[0].share),
        (None, Some((i, after))) => format!(
            "step {} ({}), {} after the start at the earliest",
            i + 1,
            steps[i].share,
            minutes(after)
        ),
        (None, None) => "stays on stable".into(),
    }
}

/// The given tenants' buckets in 100 bars of 1 %, canary bars below the proposed share.
fn bucket_figure(
    config: &splitter::PolicyConfig,
    proposed: BasisPoints,
    tenants: &[String],
) -> Option<AnyView> {
    if tenants.is_empty() {
        return None;
    }
    let bins = crate::charts::bucket_bins(&config.salt, tenants);
    let title = format!("Bucket distribution of {} tenants", tenants.len());
    let svg = crate::charts::bucket_chart(&title, &bins, proposed.get());
    let (min, max) = (
        bins.iter().min().copied().unwrap_or(0),
        bins.iter().max().copied().unwrap_or(0),
    );
    let alt = format!(
        "{} tenants in 100 bars of 1 % of the bucket range each (an even spread puts about {:.1} in each; here {min} to {max}). Bars below bucket {} are canary at the share you propose, {proposed}.",
        tenants.len(),
        tenants.len() as f64 / 100.0,
        proposed.get(),
    );
    Some(
        view! {
            <figure class="chart" data-test="chart-buckets">
                <div role="img" aria-label=format!("{title}. {alt}") inner_html=svg></div>
                <figcaption>{alt}</figcaption>
            </figure>
        }
        .into_any(),
    )
}

/// Once hydrated, a chosen file is read in the browser straight into the tenant list.
#[cfg(feature = "hydrate")]
fn read_file(ev: leptos::ev::Event, tenants: [RwSignal<String>; 2]) {
    use wasm_bindgen::JsCast;
    let Some(input) = ev
        .target()
        .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
    else {
        return;
    };
    let Some(file) = input.files().and_then(|f| f.get(0)) else {
        return;
    };
    leptos::task::spawn_local(async move {
        if let Ok(text) = wasm_bindgen_futures::JsFuture::from(file.text()).await {
            let text = text.as_string().unwrap_or_default();
            for signal in tenants {
                signal.set(text.clone());
            }
        }
    });
}

#[cfg(not(feature = "hydrate"))]
fn read_file(_ev: leptos::ev::Event, _tenants: [RwSignal<String>; 2]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_csv() {
        let input = parse_tenants("tenant,plan\nacme,gold\n\nbeta;x\nacme\nbad\u{1}\n");
        assert_eq!(input.tenants, ["acme", "beta"]);
        assert_eq!(input.invalid.len(), 1);
        assert_eq!(input.invalid[0].0, 6);
    }
}
