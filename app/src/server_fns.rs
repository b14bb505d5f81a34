//! Server functions: how pages read data. They run on the server; the browser calls them over
//! HTTP once hydrated.

use crate::model::PolicyPage;
use leptos::prelude::*;
use splitter::PolicyConfig;

/// Every policy, and a label naming the store they come from.
#[server]
pub async fn list_policies() -> Result<(String, Vec<PolicyConfig>), ServerFnError> {
    let state = expect_context::<crate::state::AppState>();
    let list = state
        .store
        .list()
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok((state.store_label.clone(), list))
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
