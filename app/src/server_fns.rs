//! Server functions: how pages read data. They run on the server; the browser calls them over
//! HTTP once hydrated.

use crate::model::{OverviewPage, OverviewQuery, PolicyPage};
use leptos::prelude::*;

/// One overview page (filtered, sorted, paged on the server, so only its rows travel), and a
/// label naming the store.
#[server]
pub async fn list_policies(query: OverviewQuery) -> Result<(String, OverviewPage), ServerFnError> {
    let state = expect_context::<crate::state::AppState>();
    let list = state
        .store
        .list()
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok((state.store_label.clone(), query.apply(list)))
}

/// One policy and its latest 50 audit events; `None` if it does not exist.
#[server]
pub async fn get_policy(name: String) -> Result<Option<PolicyPage>, ServerFnError> {
    let state = expect_context::<crate::state::AppState>();
    let Ok(name) = splitter::PolicyName::new(&name) else {
        return Ok(None);
    };
    let Some(config) = state
        .store
        .get(&name)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?
    else {
        return Ok(None);
    };
    let events = state
        .store
        .events(&name, 50)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok(Some(PolicyPage { config, events }))
}

/// The text of a file uploaded to the simulator without JavaScript (kept in memory, briefly).
#[server]
pub async fn uploaded_tenants(id: String) -> Result<Option<String>, ServerFnError> {
    let state = expect_context::<crate::state::AppState>();
    Ok(state.uploads.get(&id).map(|t| t.to_string()))
}

/// Which store the dashboard runs on, for the header.
#[server]
pub async fn store_label() -> Result<String, ServerFnError> {
    Ok(expect_context::<crate::state::AppState>()
        .store_label
        .clone())
}
