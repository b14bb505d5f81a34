//! Reusable pieces of the pages.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use splitter::BasisPoints;

/// The stable/canary split as a bar, labelled in text (readable without colour). `share` is
/// the canary's effective share ([`splitter::PolicyConfig::effective_share`]).
#[component]
pub fn SplitBar(share: BasisPoints) -> impl IntoView {
    let canary_pct = share.fraction() * 100.0;
    let stable = BasisPoints::new(10_000 - u32::from(share.get())).unwrap_or(BasisPoints::ZERO);
    let aria = format!("{share} canary, {stable} stable");
    view! {
        <div class="split" role="img" aria-label=aria.clone() title=aria>
            <span class="split-canary" style=format!("width:{canary_pct}%")></span>
            <span class="split-stable" style=format!("width:{}%", 100.0 - canary_pct)></span>
        </div>
    }
}

/// A policy's rollout state as a badge (`state-ramping`, …).
#[component]
pub fn StateBadge(state: splitter::RolloutState) -> impl IntoView {
    view! { <span class=format!("state state-{}", state.key())>{state.label()}</span> }
}

/// The outcome of the last form post, carried in the URL by the redirect (`?notice=` / `?error=`).
#[component]
pub fn Flash() -> impl IntoView {
    let query = use_query_map();
    move || {
        let q = query.read();
        let notice = q
            .get("notice")
            .map(|n| view! { <p class="flash notice" role="status">{n}</p> });
        let error = q
            .get("error")
            .map(|e| view! { <p class="flash error" role="alert">{e}</p> });
        (notice, error)
    }
}

/// The fields every change form carries: the session's CSRF token, why, and (for an action
/// that moves traffic) its confirmation. `revision` is the revision the page showed. Who makes
/// the change is the signed-in principal, recorded by the server.
#[component]
pub fn ChangeFields(
    revision: u64,
    action: crate::actions::PolicyAction,
    #[prop(into)] id: String,
    #[prop(into)] csrf: String,
) -> impl IntoView {
    let confirm = action.confirmation();
    let reason_id = format!("{id}-reason");
    let confirm_id = format!("{id}-confirm");
    view! {
        <input type="hidden" name="revision" value=revision.to_string()/>
        <input type="hidden" name="csrf" value=csrf/>
        <label for=reason_id.clone()>"Reason (kept in the history)"</label>
        <input id=reason_id name="reason" required maxlength="1000"/>
        {confirm.map(|text| view! {
            <label class="confirm" for=confirm_id.clone()>
                <input id=confirm_id.clone() type="checkbox" name="confirm" value="yes" required/>
                {text}
            </label>
        })}
    }
}

/// The caller of this page: who is signed in, and the CSRF token its forms carry. Read on the
/// server while rendering and handed to the browser with the page (a shared value, not a
/// resource: nothing to wait for, and hydration never re-renders a form over it).
pub fn provide_caller() {
    let caller = leptos::server::SharedValue::new(|| {
        #[cfg(feature = "ssr")]
        {
            crate::ssr::caller()
        }
        #[cfg(not(feature = "ssr"))]
        {
            crate::access::Caller::default()
        }
    })
    .into_inner();
    provide_context(caller);
}

pub fn use_caller() -> crate::access::Caller {
    use_context::<crate::access::Caller>().unwrap_or_default()
}

/// The store is unreachable: says so on every page, with since when and how old the snapshot
/// is (the server puts the text in the caller).
#[component]
pub fn OutageBanner() -> impl IntoView {
    use_caller().outage.map(|text| {
        view! { <p class="flash error outage" role="alert" data-test="outage">{text}</p> }
    })
}

/// Why a control is absent, in place of the control.
#[component]
pub fn ReadOnly(#[prop(into)] reason: String) -> impl IntoView {
    view! { <p class="read-only" data-test="read-only">{reason}</p> }
}

/// Who is signed in, with sign-out (and the tokens page for admins); or a sign-in link.
#[component]
pub fn WhoAmI() -> impl IntoView {
    let c = use_caller();
    match c.principal {
        Some(p) => view! {
            <span class="who" data-test="who">{format!("{} · {}", p.name, p.role)}</span>
            {(p.role == crate::access::Role::Admin).then(|| view! { <a href="/admin/tokens">"API tokens"</a> })}
            <form method="post" action="/signout" class="inline signout">
                <input type="hidden" name="csrf" value=c.csrf.unwrap_or_default()/>
                <button type="submit" class="secondary">"Sign out"</button>
            </form>
        }.into_any(),
        None => view! { <a href="/signin">"Sign in"</a> }.into_any(),
    }
}
