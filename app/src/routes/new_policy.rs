//! `/policies/new`: create a policy.

use crate::components::Flash;
use leptos::prelude::*;

#[component]
pub fn NewPolicy() -> impl IntoView {
    view! {
        <nav class="crumbs"><a href="/">"Policies"</a> " / new"</nav>
        <h1>"New policy"</h1>
        <Flash/>
        <form method="post" action="/policies" class="card">
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
            <label for="new-actor">"Your name"</label>
            <input id="new-actor" name="actor" required maxlength="256"/>
            <label for="new-reason">"Reason (kept in the history)"</label>
            <input id="new-reason" name="reason" maxlength="1000"/>
            <button type="submit" class="primary">"Create policy"</button>
        </form>
    }
}
