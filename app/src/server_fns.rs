//! Server functions: how pages read data. They run on the server; the browser calls them over
//! HTTP once hydrated.

use crate::model::{OverviewPage, OverviewQuery, PolicyPage};
use leptos::prelude::*;

/// One overview page (filtered, sorted, paged on the server, so only its rows travel), and a
/// label naming the store. Read from memory: the snapshot and the traffic cache.
#[server]
pub async fn list_policies(query: OverviewQuery) -> Result<(String, OverviewPage), ServerFnError> {
    let state = expect_context::<crate::ssr::state::AppState>();
    let mut page = query.apply(state.shared_configs());
    let to = splitter::traffic::minute_of(jiff::Timestamp::now());
    let from = to - crate::model::OBSERVED_MINUTES + 1;
    let names: Vec<&str> = page.rows.iter().map(|r| r.name.as_str()).collect();
    let totals = state.traffic.totals_of(&names, from, to);
    page.traffic = crate::model::ObservedShare::from_totals(&page.rows, &totals);
    Ok((state.store_label.clone(), page))
}

/// One policy (from the snapshot) and its latest 50 audit events; `None` if it does not exist.
#[server]
pub async fn get_policy(name: String) -> Result<Option<PolicyPage>, ServerFnError> {
    let state = expect_context::<crate::ssr::state::AppState>();
    let Some(config) = state.config(&name) else {
        return Ok(None);
    };
    let events = state
        .events(&config)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    let events = events.iter().take(50).cloned().collect();
    let verdict = crate::ssr::plans::verdict(&state, &config, jiff::Timestamp::now())
        .map(|v| crate::ssr::plans::view_of(&v));
    Ok(Some(PolicyPage {
        config,
        events,
        verdict,
    }))
}

/// The text of a file this session uploaded to the simulator without JavaScript (kept in
/// memory, briefly).
#[server]
pub async fn uploaded_tenants(id: String) -> Result<Option<String>, ServerFnError> {
    let state = expect_context::<crate::ssr::state::AppState>();
    let owner = crate::ssr::caller().session_key.unwrap_or_default();
    let now = jiff::Timestamp::now().as_second();
    Ok(state.uploads.get(&owner, &id, now).map(|t| t.to_string()))
}

/// Which store the dashboard runs on, for the header.
#[server]
pub async fn store_label() -> Result<String, ServerFnError> {
    Ok(expect_context::<crate::ssr::state::AppState>()
        .store_label
        .clone())
}

/// The policy's recorded traffic over `window` (`15m`, `1h`, `24h`): numbers and charts,
/// rendered here so they read without JavaScript. `None` if the policy does not exist.
#[server]
pub async fn policy_traffic(
    name: String,
    window: String,
) -> Result<Option<crate::traffic::TrafficPage>, ServerFnError> {
    use crate::ssr::traffic::{build, TrafficInput};
    use crate::traffic::Window;
    let state = expect_context::<crate::ssr::state::AppState>();
    let window = Window::parse(&window)
        .ok_or_else(|| ServerFnError::new(format!("window '{window}': choose 15m, 1h or 24h")))?;
    let Ok(name) = splitter::PolicyName::new(&name) else {
        return Ok(None);
    };
    let Some(config) = state.config(name.as_str()) else {
        return Ok(None);
    };
    let now = jiff::Timestamp::now();
    let to = splitter::traffic::minute_of(now);
    let from = to - window.minutes() + 1;
    let inputs = crate::ssr::traffic_pages::Inputs {
        generation: state.traffic.generation(),
        revision: config.revision,
        second: now.as_second(),
    };
    let events = state
        .events(&config)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    let mut page = state
        .traffic_pages
        .get_or_build(name.as_str(), window, inputs, || {
            let traffic = state.traffic.policy(name.as_str(), from, to);
            build(&TrafficInput {
                config: &config,
                events: &events,
                minutes: &traffic.minutes,
                through: &traffic.written_through,
                window,
                now,
            })
        });
    let stats = state.recorder.stats();
    page.unflushed_requests = stats.unflushed_requests;
    page.lost_requests = stats.lost_requests;
    page.recorder_error = stats.last_error;
    Ok(Some(page))
}

/// The running (or paused) plan's verdict on its current step, from memory; `None` without one.
#[server]
pub async fn plan_verdict(
    name: String,
) -> Result<Option<crate::model::VerdictView>, ServerFnError> {
    let state = expect_context::<crate::ssr::state::AppState>();
    Ok(state
        .config(&name)
        .and_then(|c| crate::ssr::plans::verdict(&state, &c, jiff::Timestamp::now()))
        .map(|v| crate::ssr::plans::view_of(&v)))
}

/// The simulator's request preview of `share` (empty: today's) for the policy `name`, from the
/// traffic in memory, as the section's markup; `None`: no such policy, or a share that does not
/// parse.
#[server]
pub async fn request_preview(
    name: String,
    #[server(default)] share: String,
) -> Result<Option<String>, ServerFnError> {
    let state = expect_context::<crate::ssr::state::AppState>();
    let now = jiff::Timestamp::now();
    Ok(crate::ssr::preview::request_preview(&state, &name, &share, now).map(|p| p.html()))
}
