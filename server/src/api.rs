//! JSON API v1, mirroring the dashboard. Reads return the policy with `ETag: "<revision>"`;
//! writes need `If-Match` with that ETag and answer 409 with the current state when it is stale,
//! 422 with the field at fault for bad input. Who writes is the authenticated principal.

use crate::error::ApiError;
use app::access::Caller;
use app::actions::{ActionInput, NewPolicyInput, PolicyAction};
use app::ssr::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use splitter::cohort::Who;
use splitter::traffic::Via;
use splitter::{Actor, AuditEvent, Operation, PolicyConfig, PolicyName, Request, TenantId};
use std::collections::HashMap;

pub fn routes() -> Router<crate::ServerState> {
    use PolicyAction::*;
    Router::new()
        .route("/policies", get(list).post(create))
        .route("/policies/{name}", get(get_one).delete(act(Delete)))
        .route("/policies/{name}/events", get(events))
        .route("/policies/{name}/share", put(act(SetShare)))
        .route("/policies/{name}/canary", put(act(SetCanary)))
        .route("/policies/{name}/promote", post(act(Promote)))
        .route("/policies/{name}/rollback", post(act(Rollback)))
        .route("/policies/{name}/plan", post(act(StartPlan)))
        .route("/policies/{name}/plan/pause", post(act(PausePlan)))
        .route("/policies/{name}/plan/resume", post(act(ResumePlan)))
        .route("/policies/{name}/plan/skip", post(act(SkipStep)))
        .route("/policies/{name}/plan/abort", post(act(AbortPlan)))
        .route(
            "/policies/{name}/overrides/{tenant}",
            put(act(Pin)).delete(act(Unpin)),
        )
        .route("/policies/{name}/decision", get(decision))
        .route("/policies/{name}/decisions", post(decisions))
        .route("/policies/{name}/outcomes", post(outcomes))
        .route("/changes", get(changes))
}

/// Most tenants (or outcomes) one batch call takes.
pub const MAX_BATCH: usize = 10_000;

/// The policy as the routing snapshot holds it (what the layer would use), or 404.
fn routed_policy(state: &AppState, name: &str) -> Result<std::sync::Arc<PolicyConfig>, ApiError> {
    let name = PolicyName::new(name)?;
    state
        .splitter
        .policy(name.as_str())
        .ok_or_else(|| ApiError::Splitter(splitter::Error::NotFound(name.to_string())))
}

fn decision_json(config: &PolicyConfig, tenant: &str, d: &splitter::Decision) -> serde_json::Value {
    json!({
        "policy": config.policy_name,
        "tenant": tenant,
        "version": d.version,
        "canary": d.is_canary,
        "reason": d.reason,
        "revision": config.revision,
    })
}

fn tenant_field(raw: Option<&str>) -> Result<&str, ApiError> {
    match raw {
        None | Some("") => Err(ApiError::Splitter(splitter::Error::Invalid {
            field: "tenant",
            message: "is missing: pass ?tenant=<tenant id>".into(),
        })),
        Some(t) => {
            TenantId::new(t)?;
            Ok(t)
        }
    }
}

#[derive(Deserialize)]
struct DecisionQuery {
    tenant: Option<String>,
}

/// One decision from the routing snapshot, as the layer would make it. Counted as a decision
/// (`/metrics`), not as traffic: nothing was served yet. Report what was served through
/// `POST …/outcomes` to see it in the charts.
async fn decision(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DecisionQuery>,
) -> Result<Response, ApiError> {
    let config = routed_policy(&state, &name)?;
    let tenant = tenant_field(q.tenant.as_deref())?;
    // From the config read above, so the answer and its `revision` always belong together.
    let d = splitter::decide(Some(&config), Some(tenant));
    state
        .recorder
        .decided(config.policy_name.as_str(), &d, Via::Api);
    let mut r = Json(decision_json(&config, tenant, &d)).into_response();
    splitter::layer::mark_response(r.headers_mut(), &d);
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionsBody {
    tenants: Vec<String>,
}

/// Decisions for up to [`MAX_BATCH`] tenants at once, in the order given, from one snapshot.
async fn decisions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    b: Result<Json<DecisionsBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let config = routed_policy(&state, &name)?;
    let b = body(b)?;
    if b.tenants.len() > MAX_BATCH {
        return Err(ApiError::BadBody(format!(
            "tenants: {} given; at most {MAX_BATCH} per call",
            b.tenants.len()
        )));
    }
    let mut out = Vec::with_capacity(b.tenants.len());
    for (i, t) in b.tenants.iter().enumerate() {
        if let Err(e) = TenantId::new(t) {
            return Err(ApiError::BadBody(format!("tenants[{i}]: {e}")));
        }
        let d = splitter::decide(Some(&config), Some(t));
        state
            .recorder
            .decided(config.policy_name.as_str(), &d, Via::Api);
        out.push(decision_json(&config, t, &d));
    }
    Ok(
        Json(
            json!({ "policy": config.policy_name, "revision": config.revision, "decisions": out }),
        )
        .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    version: String,
    status: u16,
    latency_ms: f64,
    /// The tenant served (optional): with it, the outcome counts in the tenant-aware analysis
    /// and the heavy-hitter list, as the layer's requests do.
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomesBody {
    outcomes: Vec<Outcome>,
}

/// What a service outside Rust served after asking for a decision: recorded as traffic exactly
/// like the layer's outcomes. Every outcome is checked before any is recorded.
async fn outcomes(
    State(state): State<AppState>,
    Path(name): Path<String>,
    b: Result<Json<OutcomesBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let config = routed_policy(&state, &name)?;
    let b = body(b)?;
    if b.outcomes.len() > MAX_BATCH {
        return Err(ApiError::BadBody(format!(
            "outcomes: {} given; at most {MAX_BATCH} per call",
            b.outcomes.len()
        )));
    }
    let known = |v: &str| {
        config.stable_version.as_str() == v
            || config
                .canary_version
                .as_ref()
                .is_some_and(|c| c.as_str() == v)
    };
    for (i, o) in b.outcomes.iter().enumerate() {
        if !known(&o.version) {
            return Err(ApiError::BadBody(format!(
                "outcomes[{i}].version: '{}' is neither the stable ({}) nor the canary ({}) version of '{}'",
                o.version.escape_debug(),
                config.stable_version,
                config.canary_version.as_ref().map_or("none", |c| c.as_str()),
                config.policy_name
            )));
        }
        if !(100..=599).contains(&o.status) {
            return Err(ApiError::BadBody(format!(
                "outcomes[{i}].status: {} is not an HTTP status (100–599)",
                o.status
            )));
        }
        if !(o.latency_ms.is_finite() && (0.0..=3_600_000.0).contains(&o.latency_ms)) {
            return Err(ApiError::BadBody(format!(
                "outcomes[{i}].latency_ms: {} must be between 0 and 3600000",
                o.latency_ms
            )));
        }
        if let Some(t) = &o.tenant {
            if let Err(e) = TenantId::new(t) {
                return Err(ApiError::BadBody(format!("outcomes[{i}].tenant: {e}")));
            }
        }
    }
    let minute = splitter::traffic::minute_of(jiff::Timestamp::now());
    for o in &b.outcomes {
        let tenant = o.tenant.as_deref();
        let decision = splitter::decide(Some(&config), tenant);
        state.recorder.record_outcome(
            minute,
            config.policy_name.as_str(),
            &o.version,
            Who::of(&config, tenant, &decision),
            o.status,
            std::time::Duration::from_secs_f64(o.latency_ms / 1000.0),
            Via::Api,
        );
    }
    Ok(Json(json!({ "recorded": b.outcomes.len() })).into_response())
}

/// Server-sent events: one `message` whenever this replica's snapshot applied a change (its
/// data is a counter), so a page that re-reads on it reads the change. Pages use it to
/// refresh without a reload; other tools can too.
/// Streams held open at once: 1 024 in total, 16 per session or token (a page holds one).
async fn changes(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    use futures::StreamExt;
    let slot = match STREAMS.take(&crate::limits::caller_key(&caller)) {
        Ok(slot) => slot,
        Err(refused) => return *refused,
    };
    let stream =
        tokio_stream::wrappers::WatchStream::from_changes(state.splitter.changes()).map(move |n| {
            // The slot lives as long as the stream.
            let _held = &slot;
            Ok::<_, std::convert::Infallible>(Event::default().data(n.to_string()))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

static STREAMS: std::sync::LazyLock<std::sync::Arc<crate::limits::Caps>> =
    std::sync::LazyLock::new(|| crate::limits::Caps::new("event streams", 1024, 16));

/// `ok`, or `degraded: routing from a snapshot N s old, store unreachable since T` (still 200:
/// routing works; monitors alert on the status text).
pub async fn healthz(State(state): State<AppState>) -> Response {
    let health = state.splitter.health();
    let recorder = state.recorder.stats();
    let status = match state.outage() {
        None => "ok".to_string(),
        Some(o) => format!(
            "degraded: routing from a snapshot {} s old, store unreachable since {} UTC",
            o.snapshot_age_secs,
            o.since.strftime("%Y-%m-%d %H:%M:%S")
        ),
    };
    Json(json!({
        "status": status,
        "store": state.store_label,
        "snapshot_age_ms": state.snapshot_age().as_millis() as u64,
        "snapshot_error": health.last_error,
        "policies": health.policies,
        "traffic": {
            "replica": state.recorder.replica(),
            "unflushed_requests": recorder.unflushed_requests,
            "lost_requests": recorder.lost_requests,
            "last_flush_error": recorder.last_error,
        },
    }))
    .into_response()
}

fn with_etag(config: &PolicyConfig, status: StatusCode) -> Response {
    let mut r = (status, Json(config)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", config.revision)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// A JSON body, or a 422 saying why it is not one.
pub(crate) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::BadBody(e.body_text()))
}

/// The audit trail's actor: the authenticated principal (`X-Actor` is ignored).
fn actor(caller: &Caller) -> Result<Actor, ApiError> {
    crate::forms::actor(caller).map_err(ApiError::Unauthenticated)
}

/// The revision in `If-Match: "7"` (also `W/"7"` or `7`).
fn if_match(headers: &HeaderMap) -> Result<u64, ApiError> {
    let raw = headers
        .get(header::IF_MATCH)
        .ok_or(ApiError::PreconditionRequired)?;
    let text = raw.to_str().unwrap_or("");
    text.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map_err(|_| {
            ApiError::Splitter(splitter::Error::Invalid {
                field: "If-Match",
                message: format!("'{text}' is not an ETag from this API (e.g. \"7\")"),
            })
        })
}

async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut configs = state.configs();
    configs.sort_by(|a, b| a.policy_name.cmp(&b.policy_name));
    Ok(Json(configs).into_response())
}

/// One policy; `304 Not Modified` (no body) when `If-None-Match` already names its revision,
/// so a poller re-reads nothing until the policy changes.
async fn get_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let name = PolicyName::new(&name)?;
    let config = state
        .config(name.as_str())
        .ok_or_else(|| splitter::Error::NotFound(name.to_string()))?;
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if known.is_some_and(|v| etag_matches(v, config.revision)) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", config.revision)) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    Ok(with_etag(&config, StatusCode::OK))
}

/// Whether an `If-None-Match` value (`"7"`, `W/"7"`, `"6", "7"` or `*`) names `revision`.
pub fn etag_matches(if_none_match: &str, revision: u64) -> bool {
    let want = revision.to_string();
    if_none_match.split(',').any(|tag| {
        let tag = tag.trim();
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')) == Some(want.as_str())
    })
}

#[derive(Deserialize)]
struct EventsQuery {
    limit: Option<usize>,
}

async fn events(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let name = PolicyName::new(&name)?;
    Ok(Json(
        state
            .store
            .events(&name, q.limit.unwrap_or(100).min(1000))
            .await?,
    ))
}

async fn run(
    state: &AppState,
    name: &str,
    rev: Option<u64>,
    op: Operation,
    caller: &Caller,
    reason: Option<String>,
) -> Result<Option<PolicyConfig>, ApiError> {
    let request = Request {
        policy: PolicyName::new(name)?,
        expected_revision: rev,
        operation: op,
        actor: actor(caller)?,
        reason: reason.unwrap_or_default(),
    };
    Ok(state.execute(&request).await?)
}

/// A share, version or pin given in a JSON body, as the text the parser takes: a string as
/// it is, a share also as a JSON number (through its text, so `12.5` stays exact).
fn text_of(field: &'static str, v: &serde_json::Value) -> Result<String, ApiError> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) if field == "share" => Ok(n.to_string()),
        other => Err(ApiError::Splitter(splitter::Error::invalid(
            field,
            match field {
                "share" => format!("{other} is not a share: give 12.5, \"12.5%\" or \"1250bp\""),
                _ => format!("{other} is not text: give a string"),
            },
        ))),
    }
}

/// The body fields each action takes besides `reason` (all required); the tenant of a pin
/// comes from the path.
fn body_fields(action: PolicyAction) -> &'static [&'static str] {
    match action {
        PolicyAction::SetShare => &["share"],
        PolicyAction::SetCanary => &["version"],
        PolicyAction::Pin => &["pin"],
        PolicyAction::StartPlan => &["steps", "at_end"],
        PolicyAction::PausePlan
        | PolicyAction::ResumePlan
        | PolicyAction::SkipStep
        | PolicyAction::AbortPlan
        | PolicyAction::Promote
        | PolicyAction::Rollback
        | PolicyAction::Unpin
        | PolicyAction::Delete => &[],
    }
}

/// The JSON body of a write: an object with exactly the action's fields and an optional
/// `reason`; actions without fields also take no body at all.
fn action_body(
    action: PolicyAction,
    body: &Bytes,
) -> Result<(ActionInput, Option<String>), ApiError> {
    let fields = body_fields(action);
    let takes = || {
        fields
            .iter()
            .chain(&["reason"])
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut input = ActionInput::default();
    if body.iter().all(u8::is_ascii_whitespace) && fields.is_empty() {
        return Ok((input, None));
    }
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| {
            ApiError::BadBody(format!(
                "the body is not a JSON object with {}: {e}",
                takes()
            ))
        })?;
    let mut reason = None;
    for (key, value) in &object {
        match (key.as_str(), value) {
            ("reason", serde_json::Value::String(r)) => reason = Some(r.clone()),
            ("reason", serde_json::Value::Null) => {}
            ("reason", _) => return Err(ApiError::BadBody("reason: give a string".into())),
            ("share", v) if fields.contains(&"share") => input.share = text_of("share", v)?,
            ("version", v) if fields.contains(&"version") => input.version = text_of("version", v)?,
            ("pin", v) if fields.contains(&"pin") => input.pin = text_of("pin", v)?,
            ("steps", v) if fields.contains(&"steps") => input.steps = text_of("steps", v)?,
            ("at_end", v) if fields.contains(&"at_end") => input.at_end = text_of("at_end", v)?,
            (other, _) => {
                return Err(ApiError::BadBody(format!(
                    "unknown field `{}`: this endpoint takes {}",
                    other.escape_debug(),
                    takes()
                )))
            }
        }
    }
    if let Some(missing) = fields.iter().find(|f| !object.contains_key(**f)) {
        return Err(ApiError::BadBody(format!("missing field `{missing}`")));
    }
    Ok((input, reason))
}

type Reply = futures::future::BoxFuture<'static, Result<Response, ApiError>>;

/// The handler of one write: the path names the policy (and a pin's tenant), the body the
/// action's fields; both go through the one parser ([`PolicyAction::operation`]), the same the
/// form posts use. Needs `If-Match`.
// The type is an axum handler's argument list; naming it would not make it simpler.
#[allow(clippy::type_complexity)]
fn act(
    action: PolicyAction,
) -> impl Fn(
    State<AppState>,
    Extension<Caller>,
    Path<HashMap<String, String>>,
    HeaderMap,
    Bytes,
) -> Reply
       + Clone
       + Send
       + Sync
       + 'static {
    move |State(state), Extension(caller), Path(path), headers, body| {
        Box::pin(async move {
            let (mut input, reason) = action_body(action, &body)?;
            input.tenant = path.get("tenant").cloned().unwrap_or_default();
            let op = action.operation(&input)?;
            let name = path.get("name").map_or("", String::as_str);
            let rev = if_match(&headers)?;
            match run(&state, name, Some(rev), op, &caller, reason).await? {
                Some(config) => Ok(with_etag(&config, StatusCode::OK)),
                None => Ok(StatusCode::NO_CONTENT.into_response()),
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    stable_version: String,
    canary_version: Option<String>,
    /// `12.5`, `"12.5%"` or `"1250bp"`.
    share: Option<serde_json::Value>,
    salt: Option<String>,
    reason: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<CreateBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let share = match &b.share {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(v) => text_of("share", v)?,
    };
    let (name, new) = NewPolicyInput {
        name: b.name,
        stable_version: b.stable_version,
        canary_version: b.canary_version.unwrap_or_default(),
        share,
        salt: b.salt.unwrap_or_default(),
    }
    .parse()?;
    let config = run(
        &state,
        name.as_str(),
        None,
        Operation::Create(new),
        &caller,
        b.reason,
    )
    .await?
    .expect("create returns a config");
    Ok(with_etag(&config, StatusCode::CREATED))
}
