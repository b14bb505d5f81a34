//! `/policies/new`: create a policy (admins).

use crate::access::Need;
use crate::components::{use_caller, Flash, ReadOnly};
use leptos::prelude::*;

#[component]
pub fn NewPolicy() -> impl IntoView {
    let caller = use_caller();
    view! {
        <nav class="crumbs"><a href="/">"Policies"</a> " / new"</nav>
        <h1>"New policy"</h1>
        <Flash/>
        {match caller.cannot(&Need::Admin) {
            Some(reason) => view! { <ReadOnly reason/> }.into_any(),
            None => create_form(caller.csrf.clone().unwrap_or_default()).into_any(),
        }}
    }
}

fn create_form(csrf: String) -> impl IntoView {
    view! {
        <form method="post" action="/policies" class="card">
            <input type="hidden" name="csrf" value=csrf/>
            <label for="new-name">"Policy name (lowercase letters, digits, - _ .)"</label>
            <input id="new-name" name="name" required maxlength="100" pattern="[a-z0-9][a-z0-9._\\-]*"/>
            <label for="new-stable">"Stable version"</label>
            <input id="new-stable" name="stable_version" required maxlength="128" placeholder="e.g. v1"/>
            <label for="new-canary">"Canary version (optional)"</label>
            <input id="new-canary" name="canary_version" maxlength="128"/>
            <label for="new-share">"Canary share (optional, e.g. 5 or 0.5%)"</label>
            <input id="new-share" name="share" maxlength="16" inputmode="decimal"/>
            <label for="new-salt">"Salt (optional; defaults to the policy name)"</label>
            <input id="new-salt" name="salt" maxlength="256"/>
            <label for="new-reason">"Reason (kept in the history)"</label>
            <input id="new-reason" name="reason" maxlength="1000"/>
            <button type="submit" class="primary">"Create policy"</button>
        </form>
    }
}
