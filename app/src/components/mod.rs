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

/// The fields every change form carries: who, why, and (for an action that moves traffic) its
/// confirmation. `revision` is the revision the page showed.
#[component]
pub fn ChangeFields(
    revision: u64,
    action: crate::actions::PolicyAction,
    #[prop(into)] id: String,
) -> impl IntoView {
    let confirm = action.confirmation();
    let actor_id = format!("{id}-actor");
    let reason_id = format!("{id}-reason");
    let confirm_id = format!("{id}-confirm");
    view! {
        <input type="hidden" name="revision" value=revision.to_string()/>
        <label for=actor_id.clone()>"Your name"</label>
        <input id=actor_id name="actor" required maxlength="256" autocomplete="name"/>
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
