//! `/policies/:name`: one policy's config, its controls and its history.

use crate::access::Caller;
use crate::actions::PolicyAction;
use crate::components::{use_caller, ChangeFields, Flash, ReadOnly, SplitBar, StateBadge};
use crate::model::{ago, describe, when, LiveRefresh, PolicyPage};
use crate::server_fns::get_policy;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use splitter::{AuditEvent, PolicyConfig};

/// The share steps offered as one-click buttons (percent).
pub const SHARE_STEPS: [&str; 6] = ["1", "5", "10", "25", "50", "100"];

#[component]
pub fn Policy() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    // An ArcResource: the Suspend below holds its own handle (awaiting a disposed arena
    // resource panics when a re-render outlives the view).
    let page = ArcResource::new(name, get_policy);
    let traffic = crate::routes::traffic::resource(name);
    let caller = use_caller();
    // Once hydrated, every store change re-reads this policy; the page (and the operator's
    // half-filled forms) is rebuilt only when this policy's revision changed. `fresh` holds the
    // latest answer with the name it was asked for, so an answer for another policy is never
    // shown; `refreshes` counts answers handled and `stale` those that arrived after the page
    // had moved to another policy (the e2e tests wait on both).
    let fresh: RwSignal<Option<LiveRefresh>> = RwSignal::new(None);
    let refreshes = RwSignal::new(0u64);
    let stale = RwSignal::new(0u64);
    // A refresh of the policy shown before must not outlive it. Only a real change is written:
    // setting the signal re-renders the page, and on hydration that would replace the forms
    // under an operator who is already typing.
    Effect::new(move |_| {
        name();
        if fresh.with_untracked(Option::is_some) {
            fresh.set(None);
        }
    });
    let refreshed_page = page.clone();
    Effect::new(move |_| {
        if crate::live::store_version() == 0 {
            return;
        }
        let asked = params.read_untracked().get("name").unwrap_or_default();
        let page_for_refresh = refreshed_page.clone();
        leptos::task::spawn_local(async move {
            let answer = get_policy(asked.clone()).await;
            // The page may have moved on (or gone) while the answer travelled.
            let Some(current) = params.try_with_untracked(|p| p.get("name").unwrap_or_default())
            else {
                return;
            };
            if asked != current {
                stale.try_update(|n| *n += 1);
            }
            if let Ok(latest) = answer {
                let shown = shown_revision(fresh, &page_for_refresh, &current);
                let refresh = LiveRefresh {
                    name: asked,
                    page: latest,
                };
                if refresh.replaces(&current, shown) {
                    fresh.try_set(Some(refresh));
                }
            }
            refreshes.try_update(|n| *n += 1);
        });
    });
    view! {
        <div class="policy-page" data-live-refreshes=move || refreshes.get().to_string() data-live-stale=move || stale.get().to_string()>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || {
                    let current = name();
                    let latest = fresh.get().filter(|f| f.name == current).map(|f| f.page);
                    let who = caller.clone();
                    let page = page.clone();
                    let traffic = traffic.clone();
                    Suspend::new(async move {
                        let loaded = page.await;
                        match latest.map(Ok).unwrap_or(loaded) {
                            Err(e) => view! { <p class="flash error" role="alert">{format!("Cannot read the policy: {e}")}</p> }.into_any(),
                            Ok(None) => missing_view(&current).into_any(),
                            Ok(Some(p)) => policy_view(p, &who, traffic).into_any(),
                        }
                    })
                }}
            </Suspense>
        </div>
    }
}

/// The revision the page shows now for `current` (`None`: none shown, or no such policy).
fn shown_revision(
    fresh: RwSignal<Option<LiveRefresh>>,
    page: &ArcResource<Result<Option<PolicyPage>, ServerFnError>>,
    current: &str,
) -> Option<u64> {
    let from_refresh = fresh
        .try_get_untracked()
        .flatten()
        .filter(|f| f.name == current)
        .map(|f| f.page.map(|p| p.config.revision));
    from_refresh.unwrap_or_else(|| {
        page.try_get_untracked()
            .flatten()
            .and_then(Result::ok)
            .flatten()
            .filter(|p| p.config.policy_name.as_str() == current)
            .map(|p| p.config.revision)
    })
}

fn missing_view(name: &str) -> impl IntoView {
    view! {
        <h1>"No such policy"</h1>
        <p>{format!("There is no policy named '{name}'.")} " " <a href="/">"All policies"</a></p>
    }
}

/// The form of `action`, or why the caller may not use it.
fn allowed(who: &Caller, action: PolicyAction, policy: &str) -> Result<String, String> {
    match who.cannot(&action.need(policy)) {
        None => Ok(who.csrf.clone().unwrap_or_default()),
        Some(reason) => Err(reason),
    }
}

fn policy_view(
    p: PolicyPage,
    who: &Caller,
    traffic: crate::routes::traffic::TrafficData,
) -> impl IntoView {
    let c = p.config;
    let name = c.policy_name.to_string();
    let delete = allowed(who, PolicyAction::Delete, &name);
    view! {
        <nav class="crumbs"><a href="/">"Policies"</a> " / " {name.clone()}</nav>
        <h1>{name.clone()} " " <StateBadge state=c.state()/></h1>
        <Flash/>
        <SplitBar share=c.effective_share()/>
        // The controls an incident needs (share, promote, roll back) come first: in the first
        // screen at 1280×800; the details and charts follow.
        {match allowed(who, PolicyAction::SetShare, &name) {
            Ok(csrf) => controls(&c, csrf).into_any(),
            Err(reason) => view! { <section class="controls"><h2>"Change the rollout"</h2><ReadOnly reason/></section> }.into_any(),
        }}
        {config_list(&c)}
        <p><a class="button secondary" href=format!("/policies/{name}/simulate")>"Simulate a share change"</a></p>
        {crate::routes::plan::plan_section(&c, p.verdict, who)}
        <crate::routes::traffic::Traffic data=traffic/>
        {pins_section(&c, allowed(who, PolicyAction::Unpin, &name).ok())}
        {history_section(p.events)}
        {delete.ok().map(|csrf| view! {
            <section class="danger-zone">
                <form method="post" action=PolicyAction::Delete.form_path(&name) class="card">
                    <h3>"Delete this policy"</h3>
                    <p>"Requests for it will get the version " <code>"latest"</code> "."</p>
                    <ChangeFields revision=c.revision action=PolicyAction::Delete id="delete" csrf/>
                    <button type="submit" class="danger">"Delete policy"</button>
                </form>
            </section>
        })}
    }
}

fn config_list(c: &PolicyConfig) -> impl IntoView {
    let now = jiff::Timestamp::now();
    let canary = c
        .canary_version
        .as_ref()
        .map_or_else(|| "none".to_string(), |v| v.to_string());
    view! {
        <dl class="config" data-revision=c.revision.to_string()>
            <dt>"Stable version"</dt><dd class="version stable" data-test="stable">{c.stable_version.to_string()}</dd>
            <dt>"Canary version"</dt><dd class="version canary" data-test="canary">{canary}</dd>
            <dt>"Canary share"</dt><dd data-test="share">{c.canary_basis_points.to_string()} " (" {c.canary_basis_points.get()} " bp)"</dd>
            <dt>"Salt"</dt><dd><code>{c.salt.clone()}</code></dd>
            <dt>"Revision"</dt><dd data-test="revision">{c.revision}</dd>
            <dt>"Last change"</dt><dd title=when(c.updated_at)>{format!("{} by {}", ago(c.updated_at, now), c.updated_by)}</dd>
        </dl>
    }
}

/// The forms that change the rollout, each posting to its [`PolicyAction`].
fn controls(c: &PolicyConfig, csrf: String) -> impl IntoView {
    let name = c.policy_name.to_string();
    let rev = c.revision;
    let has_canary = c.canary_version.is_some();
    let path = move |a: PolicyAction| a.form_path(&name);
    view! {
        <section class="controls">
            <h2>"Change the rollout"</h2>
            {(c.canary_basis_points.get() == 0).then(|| view! {
                <form method="post" action=path(PolicyAction::SetCanary) class="card">
                    <h3>{if has_canary { "Replace the canary version" } else { "Start a canary" }}</h3>
                    <label for="canary-version">"Canary version"</label>
                    <input id="canary-version" name="version" required maxlength="128" placeholder="e.g. v2"/>
                    <ChangeFields revision=rev action=PolicyAction::SetCanary id="canary" csrf=csrf.clone()/>
                    <button type="submit">"Set canary version"</button>
                </form>
            })}
            {has_canary.then(|| view! {
                <form method="post" action=path(PolicyAction::SetShare) class="card">
                    <h3>"Set the canary share"</h3>
                    <label for="share-input">"New share (e.g. 12.5, 12.5% or 1250bp)"</label>
                    <input id="share-input" name="share" inputmode="decimal" maxlength="16" placeholder=c.canary_basis_points.to_string()/>
                    <ChangeFields revision=rev action=PolicyAction::SetShare id="share" csrf=csrf.clone()/>
                    <div class="steps">
                        <button type="submit">"Set share"</button>
                        {SHARE_STEPS.iter().map(|s| view! {
                            <button type="submit" name="step" value=*s class="step">{format!("{s}%")}</button>
                        }).collect_view()}
                    </div>
                </form>
                <form method="post" action=path(PolicyAction::Promote) class="card">
                    <h3>"Promote"</h3>
                    <p>"Makes the canary the stable version for everybody; the canary is cleared."</p>
                    <ChangeFields revision=rev action=PolicyAction::Promote id="promote" csrf=csrf.clone()/>
                    <button type="submit" class="primary">"Promote canary"</button>
                </form>
                <form method="post" action=path(PolicyAction::Rollback) class="card">
                    <h3>"Roll back"</h3>
                    <p>"Sends every tenant back to stable (share 0%); the canary version is kept so you can resume."</p>
                    <ChangeFields revision=rev action=PolicyAction::Rollback id="rollback" csrf=csrf.clone()/>
                    <button type="submit" class="danger">"Roll back"</button>
                </form>
            })}
        </section>
    }
}

/// The pinned tenants, each with an unpin form when `csrf` is given (the caller may unpin).
fn pins_section(c: &PolicyConfig, csrf: Option<String>) -> impl IntoView {
    let action = PolicyAction::Unpin.form_path(c.policy_name.as_str());
    let rev = c.revision;
    let rows = c
        .overrides
        .iter()
        .map(|(t, p)| {
            let t = t.to_string();
            let form_id = format!("unpin-{}", crate::routes::overview::urlencode(&t));
            let unpin = csrf.clone().map(|csrf| view! {
                <form method="post" action=action.clone() class="inline">
                    <input type="hidden" name="tenant" value=t.clone()/>
                    <ChangeFields revision=rev action=PolicyAction::Unpin id=form_id csrf/>
                    <button type="submit">"Unpin"</button>
                </form>
            });
            view! {
                <tr><td>{t.clone()}</td><td class=format!("version {p}")>{p.to_string()}</td><td>{unpin}</td></tr>
            }
        })
        .collect_view();
    let pin_form = csrf.clone().map(|csrf| view! {
        <form method="post" action=PolicyAction::Pin.form_path(c.policy_name.as_str()) class="card">
            <h3>"Pin a tenant"</h3>
            <label for="pin-tenant">"Tenant id"</label>
            <input id="pin-tenant" name="tenant" required maxlength="256"/>
            <label for="pin-to">"Pin to"</label>
            <select id="pin-to" name="pin">
                <option value="canary">"canary"</option>
                <option value="stable">"stable"</option>
            </select>
            <ChangeFields revision=rev action=PolicyAction::Pin id="pin" csrf/>
            <button type="submit">"Pin"</button>
        </form>
    });
    view! {
        <section>
            <h2>"Pinned tenants"</h2>
            {pin_form}
            {if c.overrides.is_empty() {
                view! { <p>"None."</p> }.into_any()
            } else {
                view! {
                    <table class="pins"><thead><tr><th scope="col">"Tenant"</th><th scope="col">"Pinned to"</th><th scope="col">"Unpin"</th></tr></thead>
                    <tbody>{rows}</tbody></table>
                }.into_any()
            }}
        </section>
    }
}

fn history_section(events: Vec<AuditEvent>) -> impl IntoView {
    let now = jiff::Timestamp::now();
    view! {
        <section>
            <h2>"History"</h2>
            <table class="history">
                <thead><tr><th scope="col">"When"</th><th scope="col">"Who"</th><th scope="col">"What"</th><th scope="col">"Reason"</th><th scope="col">"Revision"</th></tr></thead>
                <tbody>{events.into_iter().map(|e| view! {
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
    }
}
