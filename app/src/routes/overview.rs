//! `/`: every policy on one screen, filtered, sorted and paged through the URL.

use crate::components::{Flash, SplitBar, StateBadge};
use crate::model::{ago_secs, OverviewQuery};
use crate::server_fns::list_policies;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use splitter::RolloutState;

#[component]
pub fn Overview() -> impl IntoView {
    let query = use_query_map();
    let overview_query = move || {
        let q = query.read();
        OverviewQuery {
            q: q.get("q").unwrap_or_default(),
            state: q.get("state").unwrap_or_default(),
            sort: q.get("sort").unwrap_or_default(),
            page: q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1),
        }
    };
    let admin = crate::access::authorize(
        crate::components::use_caller().principal.as_ref(),
        &crate::access::Need::Admin,
    )
    .is_ok();
    // An ArcResource: the Suspend below owns a handle, so a re-render that outlives this view
    // (a store change while the page is being replaced) finds it alive instead of panicking.
    let policies = ArcResource::new(
        move || (overview_query(), crate::live::store_version()),
        |(q, _)| list_policies(q),
    );
    view! {
        <h1>"Policies"</h1>
        <Flash/>
        // A Transition: a store change elsewhere re-reads the page without blanking it.
        <Transition fallback=|| view! { <p>"Loading policies…"</p> }>
            {move || {
                let oq = overview_query();
                let policies = policies.clone();
                Suspend::new(async move {
                match policies.await {
                    Err(e) => view! { <p class="flash error" role="alert">{format!("Cannot read the policies: {e}")}</p> }.into_any(),
                    Ok((store, page)) => {
                        let total = page.total;
                        let now = crate::model::now_secs();
                        let link = {
                            let oq = oq.clone();
                            move |p: usize| format!("/?q={}&state={}&sort={}&page={p}", urlencode(&oq.q), oq.state, oq.sort)
                        };
                        view! {
                            <p class="store">"Store: " <strong data-test="store">{store}</strong></p>
                            <form method="get" action="/" class="filters">
                                <label for="q">"Name contains"</label>
                                <input id="q" name="q" value=oq.q.clone()/>
                                <label for="state">"State"</label>
                                <select id="state" name="state">
                                    <option value="" selected=oq.state.is_empty()>"all"</option>
                                    {RolloutState::ALL
                                        .into_iter()
                                        .map(|s| view! { <option value=s.key() selected=oq.state == s.key()>{s.label()}</option> })
                                        .collect_view()}
                                </select>
                                <label for="sort">"Sort by"</label>
                                <select id="sort" name="sort">
                                    {[("name", "name"), ("share", "canary share"), ("updated", "last change")]
                                        .into_iter()
                                        .map(|(k, label)| view! { <option value=k selected=oq.sort == k>{label}</option> })
                                        .collect_view()}
                                </select>
                                <button type="submit">"Apply"</button>
                                {admin.then(|| view! { <a class="button secondary" href="/policies/new">"New policy"</a> })}
                            </form>
                            <p class="count" data-test="count">
                                {format!("{} of {} policies", page.matching, total)}
                                {(page.pages > 1).then(|| format!(" — page {} of {}", page.page, page.pages))}
                            </p>
                            <table class="policies">
                                <thead><tr>
                                    <th scope="col">"Policy"</th><th scope="col">"Stable"</th><th scope="col">"Canary"</th>
                                    <th scope="col">"Canary share"</th><th scope="col">"Split"</th><th scope="col">"Traffic, last 15 min"</th><th scope="col">"State"</th><th scope="col">"Plan"</th><th scope="col">"Last change"</th>
                                </tr></thead>
                                <tbody>
                                    {page.rows.into_iter().map(|c| {
                                        let href = format!("/policies/{}", c.name);
                                        let observed = page.traffic.get(c.name.as_str()).copied();
                                        let key = c.name.clone();
                                        view! {
                                            <tr data-policy=key>
                                                <th scope="row"><a href=href>{c.name}</a></th>
                                                <td class="version stable">{c.stable}</td>
                                                <td class="version canary">{c.canary.unwrap_or_else(|| "—".into())}</td>
                                                <td class="share" data-test="share">{c.share.to_string()}</td>
                                                <td><SplitBar share=c.effective/></td>
                                                <td class="share-indicator" data-test="observed">{match observed {
                                                    Some(o) if o.requests > 0 => view! {
                                                        <SplitBar share=o.basis_points()/>
                                                        <span>{format!("{} canary of {} requests", o.basis_points(), o.requests)}</span>
                                                    }.into_any(),
                                                    _ => view! { <span class="muted">"no traffic"</span> }.into_any(),
                                                }}</td>
                                                <td><StateBadge state=c.state/></td>
                                                <td data-test="plan">{c.plan}</td>
                                                <td title=c.updated_when>{format!("{} by {}", ago_secs(c.updated_secs, now), c.updated_by)}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                            <nav class="pager" aria-label="pages">
                                {(page.page > 1).then(|| view! { <a href=link(page.page - 1) rel="prev">"← Previous"</a> })}
                                {(page.page < page.pages).then(|| view! { <a href=link(page.page + 1) rel="next">"Next →"</a> })}
                            </nav>
                        }.into_any()
                    }
                }
            })}}
        </Transition>
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
