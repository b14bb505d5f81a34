//! `/policies/:name`: one policy's config, its controls and its history.

use crate::components::{ChangeFields, Flash, SplitBar};
use crate::model::{ago, describe, state_key, when, PolicyPage};
use crate::server_fns::get_policy;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// The share steps offered as one-click buttons (percent).
pub const SHARE_STEPS: [&str; 6] = ["1", "5", "10", "25", "50", "100"];

#[component]
pub fn Policy() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let page = Resource::new(name, get_policy);
    // Once hydrated, every store change re-reads this policy, but the page (and the operator's
    // half-filled forms) is rebuilt only when this policy's revision changed.
    let fresh: RwSignal<Option<Option<PolicyPage>>> = RwSignal::new(None);
    Effect::new(move |_| {
        name();
        fresh.set(None);
    });
    Effect::new(move |_| {
        if crate::live::store_version() == 0 {
            return;
        }
        let n = params.read_untracked().get("name").unwrap_or_default();
        leptos::task::spawn_local(async move {
            let Ok(latest) = get_policy(n).await else {
                return;
            };
            let revision = |p: &Option<PolicyPage>| p.as_ref().map(|p| p.config.revision);
            let shown = match fresh.get_untracked() {
                Some(p) => revision(&p),
                None => page
                    .get_untracked()
                    .and_then(Result::ok)
                    .and_then(|p| revision(&p)),
            };
            if revision(&latest) != shown {
                fresh.set(Some(latest));
            }
        });
    });
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let latest = fresh.get();
                Suspend::new(async move {
                let loaded = page.await;
                match latest.map(Ok).unwrap_or(loaded) {
                    Err(e) => view! { <p class="flash error" role="alert">{format!("Cannot read the policy: {e}")}</p> }.into_any(),
                    Ok(None) => view! {
                        <h1>"No such policy"</h1>
                        <p>{format!("There is no policy named '{}'.", name())} " " <a href="/">"All policies"</a></p>
                    }.into_any(),
                    Ok(Some(p)) => policy_view(p).into_any(),
                }
            })}}
        </Suspense>
    }
}

fn policy_view(p: crate::model::PolicyPage) -> impl IntoView {
    let c = p.config;
    let name = c.policy_name.to_string();
    let action = move |a: &str| format!("/policies/{name}/actions/{a}");
    let rev = c.revision;
    let has_canary = c.canary_version.is_some();
    let share_zero = c.canary_basis_points.get() == 0;
    let now = jiff::Timestamp::now();
    let pins: Vec<_> = c
        .overrides
        .iter()
        .map(|(t, p)| (t.to_string(), *p))
        .collect();
    view! {
        <nav class="crumbs"><a href="/">"Policies"</a> " / " {c.policy_name.to_string()}</nav>
        <h1>{c.policy_name.to_string()} " " <span class=format!("state state-{}", state_key(&c))>{c.state().label()}</span></h1>
        <Flash/>
        <SplitBar share=c.canary_basis_points has_canary/>
        <dl class="config" data-revision=rev.to_string()>
            <dt>"Stable version"</dt><dd class="version stable" data-test="stable">{c.stable_version.to_string()}</dd>
            <dt>"Canary version"</dt><dd class="version canary" data-test="canary">{c.canary_version.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "none".into())}</dd>
            <dt>"Canary share"</dt><dd data-test="share">{c.canary_basis_points.to_string()} " (" {c.canary_basis_points.get()} " bp)"</dd>
            <dt>"Salt"</dt><dd><code>{c.salt.clone()}</code></dd>
            <dt>"Revision"</dt><dd data-test="revision">{rev}</dd>
            <dt>"Last change"</dt><dd title=when(c.updated_at)>{format!("{} by {}", ago(c.updated_at, now), c.updated_by)}</dd>
        </dl>
        <p><a class="button secondary" href=format!("/policies/{}/simulate", c.policy_name)>"Simulate a share change"</a></p>
        <crate::routes::traffic::Traffic name=c.policy_name.to_string()/>

        <section class="controls">
            <h2>"Change the rollout"</h2>
            {share_zero.then(|| view! {
                <form method="post" action=action("canary") class="card">
                    <h3>{if has_canary { "Replace the canary version" } else { "Start a canary" }}</h3>
                    <label for="canary-version">"Canary version"</label>
                    <input id="canary-version" name="version" required maxlength="128" placeholder="e.g. v2"/>
                    <ChangeFields revision=rev confirm=None id="canary"/>
                    <button type="submit">"Set canary version"</button>
                </form>
            })}
            {has_canary.then(|| view! {
                <form method="post" action=action("share") class="card">
                    <h3>"Set the canary share"</h3>
                    <label for="share-input">"New share (e.g. 12.5, 12.5% or 1250bp)"</label>
                    <input id="share-input" name="share" inputmode="decimal" maxlength="16" placeholder=c.canary_basis_points.to_string()/>
                    <ChangeFields revision=rev confirm=Some("I confirm this moves real tenants between versions") id="share"/>
                    <div class="steps">
                        <button type="submit">"Set share"</button>
                        {SHARE_STEPS.iter().map(|s| view! {
                            <button type="submit" name="step" value=*s class="step">{format!("{s}%")}</button>
                        }).collect_view()}
                    </div>
                </form>
                <form method="post" action=action("promote") class="card">
                    <h3>"Promote"</h3>
                    <p>"Makes the canary the stable version for everybody; the canary is cleared."</p>
                    <ChangeFields revision=rev confirm=Some("I confirm: promote to stable for all tenants") id="promote"/>
                    <button type="submit" class="primary">"Promote canary"</button>
                </form>
                <form method="post" action=action("rollback") class="card">
                    <h3>"Roll back"</h3>
                    <p>"Sends every tenant back to stable (share 0%); the canary version is kept so you can resume."</p>
                    <ChangeFields revision=rev confirm=Some("I confirm: roll back to 0%") id="rollback"/>
                    <button type="submit" class="danger">"Roll back"</button>
                </form>
            })}
            <form method="post" action=action("pin") class="card">
                <h3>"Pin a tenant"</h3>
                <label for="pin-tenant">"Tenant id"</label>
                <input id="pin-tenant" name="tenant" required maxlength="256"/>
                <label for="pin-to">"Pin to"</label>
                <select id="pin-to" name="pin">
                    <option value="canary">"canary"</option>
                    <option value="stable">"stable"</option>
                </select>
                <ChangeFields revision=rev confirm=None id="pin"/>
                <button type="submit">"Pin"</button>
            </form>
        </section>

        <section>
            <h2>"Pinned tenants"</h2>
            {if pins.is_empty() {
                view! { <p>"None."</p> }.into_any()
            } else {
                view! {
                    <table class="pins"><thead><tr><th scope="col">"Tenant"</th><th scope="col">"Pinned to"</th><th scope="col">"Unpin"</th></tr></thead>
                    <tbody>{pins.into_iter().map(|(t, p)| {
                        let form_id = format!("unpin-{}", crate::routes::overview::urlencode(&t));
                        view! {
                            <tr><td>{t.clone()}</td><td class=format!("version {p}")>{p.to_string()}</td><td>
                                <form method="post" action=action("unpin") class="inline">
                                    <input type="hidden" name="tenant" value=t/>
                                    <ChangeFields revision=rev confirm=None id=form_id/>
                                    <button type="submit">"Unpin"</button>
                                </form>
                            </td></tr>
                        }
                    }).collect_view()}</tbody></table>
                }.into_any()
            }}
        </section>

        <section>
            <h2>"History"</h2>
            <table class="history">
                <thead><tr><th scope="col">"When"</th><th scope="col">"Who"</th><th scope="col">"What"</th><th scope="col">"Reason"</th><th scope="col">"Revision"</th></tr></thead>
                <tbody>{p.events.into_iter().map(|e| view! {
                    <tr>
                        <td title=when(e.time)>{ago(e.time, now)}</td>
                        <td>{e.actor.to_string()}</td>
                        <td>{describe(&e)}</td>
                        <td>{e.reason.clone()}</td>
                        <td>{e.revision}</td>
                    </tr>
                }).collect_view()}</tbody>
            </table>
        </section>

        <section class="danger-zone">
            <form method="post" action=action("delete") class="card">
                <h3>"Delete this policy"</h3>
                <p>"Requests for it will get the version " <code>"latest"</code> "."</p>
                <ChangeFields revision=rev confirm=Some("I confirm: delete this policy") id="delete"/>
                <button type="submit" class="danger">"Delete policy"</button>
            </form>
        </section>
    }
}
