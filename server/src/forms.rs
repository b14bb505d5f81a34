//! Form posts from the pages (they work without JavaScript): validate, execute, then redirect
//! (303) back to the page with `?notice=` or `?error=` for it to show.

use app::access::Caller;
use app::actions::{ActionInput, NewPolicyInput, PolicyAction};
use app::routes::overview::urlencode;
use app::ssr::state::AppState;
use axum::extract::rejection::FormRejection;
use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use axum::Form;
use serde::Deserialize;
use splitter::{Actor, Operation, PolicyName, Request};

/// Every field any change form may send.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ChangeForm {
    pub revision: String,
    pub reason: String,
    pub confirm: String,
    pub version: String,
    pub share: String,
    /// A one-click share step; wins over `share`.
    pub step: String,
    pub tenant: String,
    pub pin: String,
    /// A plan's steps and what happens at its end (`StartPlan`).
    pub steps: String,
    pub at_end: String,
}

fn back(path: &str, key: &str, message: &str) -> Redirect {
    Redirect::to(&format!("{path}?{key}={}", urlencode(message)))
}

/// A form the browser should never send (a field twice, not form-encoded): say so, change nothing.
fn unreadable(e: &FormRejection) -> String {
    format!(
        "The form could not be read ({}); nothing was changed. Reload the page and try again.",
        e.body_text()
    )
}

fn required<'a>(value: &'a str, what: &str) -> Result<&'a str, String> {
    let v = value.trim();
    if v.is_empty() {
        Err(format!("{what} is required."))
    } else {
        Ok(v)
    }
}

/// `POST /policies/{name}/actions/{action}`.
pub async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, action)): Path<(String, String)>,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Redirect {
    let page = format!("/policies/{}", urlencode(&name));
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return back(&page, "error", &unreadable(&e)),
    };
    match run_change(&state, &caller, &name, &action, &form).await {
        Ok((message, true)) => back("/", "notice", &message),
        Ok((message, false)) => back(&page, "notice", &message),
        Err(message) => back(&page, "error", &message),
    }
}

impl ChangeForm {
    /// The action's fields; a one-click share step wins over the typed share.
    fn input(&self) -> ActionInput {
        ActionInput {
            version: self.version.clone(),
            share: if self.step.trim().is_empty() {
                self.share.clone()
            } else {
                self.step.clone()
            },
            tenant: self.tenant.clone(),
            pin: self.pin.clone(),
            steps: self.steps.clone(),
            at_end: self.at_end.clone(),
        }
    }
}

/// Runs one change form; on success, the message and whether the policy is gone.
async fn run_change(
    state: &AppState,
    caller: &Caller,
    name: &str,
    action: &str,
    f: &ChangeForm,
) -> Result<(String, bool), String> {
    let Some(action) = PolicyAction::from_segment(action) else {
        return Err(format!("'{action}' is not an action on a policy."));
    };
    let policy = PolicyName::new(name).map_err(|e| e.to_string())?;
    let revision: u64 = f.revision.trim().parse().map_err(|_| {
        "The form did not say which revision it was based on: reload the page and try again."
            .to_string()
    })?;
    let actor = actor(caller)?;
    let reason = required(&f.reason, "A reason")?.to_string();
    if action.moves_traffic() && f.confirm != "yes" {
        return Err(
            "Tick the confirmation box: this change moves real tenants. Nothing was changed."
                .into(),
        );
    }
    let operation = action
        .operation(&f.input())
        .map_err(|e| format!("{e}. Nothing was changed."))?;
    let request = Request {
        policy,
        expected_revision: Some(revision),
        operation,
        actor,
        reason,
    };
    let after = state
        .execute(&request)
        .await
        .map_err(|e| sentence(&e.to_string()))?;
    let message = action.success(name, &request.operation, after.as_ref());
    Ok((message, after.is_none()))
}

/// The audit trail's actor: the signed-in principal and how it signed in.
pub fn actor(caller: &Caller) -> Result<Actor, String> {
    let p = caller
        .principal
        .as_ref()
        .ok_or("Sign in first; nothing was changed.")?;
    Actor::new(p.actor()).map_err(|e| e.to_string())
}

/// Starts a message with a capital letter and ends it with a full stop.
fn sentence(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(1)
        .flat_map(char::to_uppercase)
        .chain(s.chars().skip(1))
        .collect();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct CreateForm {
    pub name: String,
    pub stable_version: String,
    pub canary_version: String,
    pub share: String,
    pub salt: String,
    pub reason: String,
}

/// `POST /policies`.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Redirect {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return back("/policies/new", "error", &unreadable(&e)),
    };
    match run_create(&state, &caller, &f).await {
        Ok(name) => back(
            &format!("/policies/{name}"),
            "notice",
            &format!("Policy '{name}' created."),
        ),
        Err(message) => back("/policies/new", "error", &message),
    }
}

async fn run_create(state: &AppState, caller: &Caller, f: &CreateForm) -> Result<String, String> {
    let e = |e: splitter::Error| sentence(&e.to_string());
    let (policy, new) = NewPolicyInput {
        name: f.name.clone(),
        stable_version: f.stable_version.clone(),
        canary_version: f.canary_version.clone(),
        share: f.share.clone(),
        salt: f.salt.clone(),
    }
    .parse()
    .map_err(e)?;
    let request = Request {
        policy: policy.clone(),
        expected_revision: None,
        operation: Operation::Create(new),
        actor: actor(caller)?,
        reason: f.reason.trim().to_string(),
    };
    state.execute(&request).await.map_err(e)?;
    Ok(policy.to_string())
}

/// Uploads being read at once: in total and per caller (each holds up to
/// [`app::ssr::state::Uploads::MAX_BYTES`] in memory while it arrives).
static UPLOADS: std::sync::LazyLock<std::sync::Arc<crate::limits::Caps>> =
    std::sync::LazyLock::new(|| crate::limits::Caps::new("uploads in progress", 4, 1));

/// `POST /policies/{name}/simulate/upload` (multipart: `file`, `share`): keeps the file in
/// memory and redirects to the simulator showing it.
pub async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    multipart: Multipart,
) -> Response {
    let _slot = match UPLOADS.take(&crate::limits::caller_key(&caller)) {
        Ok(slot) => slot,
        Err(refused) => return *refused,
    };
    read_upload(&state, &caller, &name, multipart)
        .await
        .into_response()
}

async fn read_upload(
    state: &AppState,
    caller: &Caller,
    name: &str,
    mut multipart: Multipart,
) -> Redirect {
    let page = format!("/policies/{}/simulate", urlencode(name));
    let mut share = String::new();
    let mut csrf = String::new();
    let mut text = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let field_name = field.name().unwrap_or("").to_string();
                match field.bytes().await {
                    Ok(bytes) if field_name == "file" => {
                        match String::from_utf8(bytes.to_vec()) {
                            Ok(t) => text = Some(t),
                            Err(_) => return back(
                                &page,
                                "error",
                                "The file is not UTF-8 text: save it as UTF-8 CSV or plain text.",
                            ),
                        }
                    }
                    Ok(bytes) if field_name == "share" => {
                        share = String::from_utf8_lossy(&bytes).to_string()
                    }
                    Ok(bytes) if field_name == "csrf" => {
                        csrf = String::from_utf8_lossy(&bytes).to_string()
                    }
                    Ok(_) => {}
                    Err(e) => return back(&page, "error", &upload_error(&e)),
                }
            }
            Ok(None) => break,
            Err(e) => return back(&page, "error", &upload_error(&e)),
        }
    }
    if let Err(message) = crate::auth::check_csrf(caller, &csrf) {
        return back(&page, "error", &message);
    }
    match text {
        Some(t) if !t.trim().is_empty() => {
            let owner = caller.session_key.as_deref().unwrap_or_default();
            let id = state.uploads.put(owner, t, crate::auth::now());
            Redirect::to(&format!("{page}?share={}&upload={id}", urlencode(&share)))
        }
        _ => back(&page, "error", "Choose a non-empty file of tenant ids."),
    }
}

fn upload_error(e: &axum::extract::multipart::MultipartError) -> String {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "The file is larger than {} MB. Split it, or run `splitter assign` on it offline.",
            app::ssr::state::Uploads::MAX_BYTES / (1024 * 1024)
        )
    } else {
        format!("The upload failed ({e}); nothing was simulated.")
    }
}
