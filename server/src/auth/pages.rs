//! Signing in and out, the one-time setup of the first admin, and API tokens (an admin page
//! and the JSON API). Small server-rendered pages: they work without JavaScript and need none.

use super::records::{self, Account};
use super::{credentials, limiter, now, Auth, SECURE_SESSION_COOKIE, SESSION_COOKIE};
use crate::error::ApiError;
use app::access::{Caller, Principal, Role, SignIn};
use app::routes::overview::urlencode;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// The client's address, for the sign-in limiter: the TCP peer's or, when the peer is a trusted
/// proxy (`--trusted-proxy`), the one its `X-Forwarded-For` names ([`limiter::client_ip`]);
/// IPv6 by its /64 ([`limiter::address_key`]). "unknown" in-process (no peer address).
pub struct ClientAddr(pub String);

impl<S> FromRequestParts<S> for ClientAddr
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        else {
            return Ok(ClientAddr("unknown".into()));
        };
        let auth = Arc::<Auth>::from_ref(state);
        let forwarded = parts.headers.get_all("x-forwarded-for");
        let ip = limiter::client_ip(peer, forwarded.iter(), &auth.trusted_proxies);
        Ok(ClientAddr(limiter::address_key(ip)))
    }
}

/// Text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small page in the dashboard's style.
pub fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · APX Canary</title><link rel=\"stylesheet\" href=\"{css}\"><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\"></head>\
<body><header class=\"top\"><a href=\"/\" class=\"brand\">APX Canary</a></header><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title),
        css = app::ssr::assets::stylesheet()
    ))
}

fn flash(notice: Option<&str>, error: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(n) = notice {
        out += &format!("<p class=\"flash notice\" role=\"status\">{}</p>", esc(n));
    }
    if let Some(e) = error {
        out += &format!("<p class=\"flash error\" role=\"alert\">{}</p>", esc(e));
    }
    out
}

/// Where to go after signing in: `next` only if a browser would read it as a path on this
/// site, else the overview. Browsers drop ASCII tabs and newlines anywhere in a URL, trim
/// leading and trailing spaces and control characters, and read `\` as `/`: to them
/// `/\t/evil.example` is `//evil.example`, another site. The answer is that normalised form,
/// in visible ASCII only (it goes into a `Location` header), at most 2 KB.
pub fn safe_next(next: &str) -> String {
    let cleaned: String = next
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    let on_this_site = cleaned.starts_with('/') && !cleaned.starts_with("//");
    let printable = cleaned.len() <= 2048 && cleaned.bytes().all(|b| b.is_ascii_graphic());
    if on_this_site && printable {
        cleaned
    } else {
        "/".into()
    }
}

fn session_cookie(id: &str, max_age: i64, headers: &HeaderMap, secure: bool) -> HeaderValue {
    let https = secure
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let value = if https {
        format!("{SECURE_SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}; Secure")
    } else {
        format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}")
    };
    HeaderValue::from_str(&value).expect("cookie values are URL-safe text")
}

fn with_cookie(to: &str, cookie: HeaderValue) -> Response {
    let mut r = Redirect::to(to).into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInQuery {
    next: String,
    error: Option<String>,
    notice: Option<String>,
}

pub async fn signin_page(Query(q): Query<SignInQuery>) -> Html<String> {
    page(
        "Sign in",
        &format!(
            "{}<form method=\"post\" action=\"/signin\" class=\"card\">\
<input type=\"hidden\" name=\"next\" value=\"{}\">\
<label for=\"name\">Account</label><input id=\"name\" name=\"name\" required maxlength=\"64\" autocomplete=\"username\">\
<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" required maxlength=\"256\" autocomplete=\"current-password\">\
<button type=\"submit\" class=\"primary\">Sign in</button></form>\
<p class=\"muted\">No account yet? An admin creates one (<code>apx-canary user add NAME</code>); on a new installation, use the one-time link the server printed on its console.</p>",
            flash(q.notice.as_deref(), q.error.as_deref()),
            esc(&safe_next(&q.next))
        ),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInForm {
    name: String,
    password: String,
    next: String,
}

/// What every refused sign-in is told, whatever was wrong.
const WRONG: &str = "Wrong account or password.";
const STORE_DOWN: &str = "Cannot check your password: the store is unavailable. Try again shortly.";

/// `POST /signin`. In order: the name is checked (an invalid one is no account: counted against
/// the address only, never stored, never logged); the attempt takes its failure slot in this
/// replica's limiter (account and address) and, for an existing account, in the store (shared
/// by every replica); only then is the password checked, off the async workers; a right
/// password gives both slots back. Store work: no account: 1 read; an account: 1 read and
/// usually 1 create-only write, plus 1 delete and the session's write when the password is
/// right.
pub async fn signin(
    State(auth): State<Arc<Auth>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<SignInForm>,
) -> Response {
    let next = safe_next(&f.next);
    let back = |error: &str| {
        Redirect::to(&format!(
            "/signin?error={}&next={}",
            urlencode(error),
            urlencode(&next)
        ))
        .into_response()
    };
    let too_many = |secs: i64| {
        let minutes = (secs + 59) / 60;
        back(&format!(
            "Too many failed sign-ins for this account or from this address. Try again in {minutes} minute(s)."
        ))
    };
    let raw = f.name.trim();
    let name = (raw.len() <= 64)
        .then(|| raw.to_lowercase())
        .filter(|n| records::check_name("account name", n).is_ok());
    let t = now();
    let reservation = match auth.limiter.reserve(name.as_deref(), &addr, t) {
        Ok(r) => r,
        Err(secs) => {
            tracing::info!(%addr, "sign-in refused: too many failures for the account or address");
            return too_many(secs);
        }
    };
    let Some(name) = name else {
        reservation.failed();
        tracing::info!(account = %"unknown account", %addr, "sign-in refused: not an account name");
        return back(WRONG);
    };
    let account = match records::account(&*auth.store, &name).await {
        Ok(a) => a,
        Err(e) => {
            auth.limiter.release(reservation);
            tracing::warn!(error = %e, "sign-in: cannot read the account");
            return back(STORE_DOWN);
        }
    };
    // Only an existing account's name is logged: a made-up one may be a password typed into
    // the wrong field.
    let who = if account.is_some() {
        limiter::for_log(&name)
    } else {
        "unknown account".to_string()
    };
    // The account's count on every replica: a failure slot in the store.
    let (secs, limit) = (auth.limiter.window(), auth.limiter.per_account());
    let window = records::failure_window(t, secs);
    let window_left = (window + 1) * secs - t;
    let mut slot = None;
    if account.is_some() {
        let known = auth.limiter.store_slots(&name, window);
        let taken = if known.is_some_and(|k| k.full) {
            Ok(None)
        } else {
            let start = known.map_or(0, |k| k.next);
            records::reserve_failure_slot(&*auth.store, &name, window, limit, start, t).await
        };
        match taken {
            Ok(Some(s)) => {
                let next = (s + 1) % limit;
                let slots = limiter::StoreSlots {
                    window,
                    next,
                    full: false,
                };
                auth.limiter.note_store_slots(&name, slots);
                slot = Some(s);
            }
            Ok(None) => {
                let slots = limiter::StoreSlots {
                    window,
                    next: 0,
                    full: true,
                };
                auth.limiter.note_store_slots(&name, slots);
                // Not checked, so not counted here again: the store's count refused it.
                auth.limiter.release(reservation);
                tracing::info!(account = %who, %addr, "sign-in refused: too many failures for the account on all replicas");
                return too_many(window_left);
            }
            Err(e) => {
                auth.limiter.release(reservation);
                tracing::warn!(error = %e, "sign-in: cannot count the attempt in the store");
                return back(STORE_DOWN);
            }
        }
    }
    let verified = if f.password.len() > credentials::MAX_PASSWORD {
        Ok(false) // no stored password is that long
    } else {
        let hash = account.as_ref().map(|a| a.password_hash.as_str());
        auth.hasher.verify(&f.password, hash).await
    };
    let give_back = |slot: Option<usize>| {
        let (auth, name) = (auth.clone(), name.clone());
        async move {
            if let Some(s) = slot {
                if let Err(e) = records::release_failure_slot(&*auth.store, &name, window, s).await
                {
                    tracing::warn!(error = %e, "sign-in: cannot give the failure slot back");
                }
            }
        }
    };
    let account = match (verified, account) {
        (Ok(true), Some(account)) => account,
        (Err(credentials::Busy), _) => {
            auth.limiter.release(reservation);
            give_back(slot).await;
            tracing::info!(account = %who, %addr, "sign-in not checked: too many password checks waiting");
            return back(credentials::BUSY);
        }
        _ => {
            reservation.failed();
            if slot.is_some() && auth.limiter.sweep_due(window) {
                let store = auth.store.clone();
                tokio::spawn(async move {
                    match records::sweep_failures(&*store, window).await {
                        Ok(n) => tracing::debug!(deleted = n, "old sign-in failures deleted"),
                        Err(e) => tracing::warn!(error = %e, "cannot delete old sign-in failures"),
                    }
                });
            }
            tracing::info!(account = %who, %addr, "sign-in refused");
            return back(WRONG);
        }
    };
    auth.limiter.release(reservation);
    give_back(slot).await;
    let principal = Principal {
        name: account.name,
        role: account.role,
        policies: account.policies,
        via: SignIn::Password,
    };
    match records::start_session(&*auth.store, principal, t).await {
        Ok(id) => {
            tracing::info!(account = %who, "signed in");
            let cookie = session_cookie(&id, auth.limits.absolute, &headers, auth.secure_cookies);
            with_cookie(&next, cookie)
        }
        Err(e) => {
            tracing::warn!(error = %e, "sign-in: cannot store the session");
            back("Cannot sign you in: the store is unavailable. Try again shortly.")
        }
    }
}

pub async fn signout(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    if let Some(id) = auth.session_id(&headers) {
        auth.forget(id);
        if let Err(e) = records::end_session(&*auth.store, id).await {
            tracing::warn!(error = %e, "sign-out: cannot delete the session");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "Cannot sign you out: the store is unavailable. Try again shortly.\n",
            )
                .into_response();
        }
    }
    let cleared = session_cookie("", 0, &headers, auth.secure_cookies);
    with_cookie("/signin?notice=Signed%20out.", cleared)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SetupQuery {
    token: String,
    error: Option<String>,
}

/// Whether `token` is a live setup link's ([`records::setup_link_live`]: in the store, so on
/// every replica; dead once any account exists); `Err` is the answer when the store cannot say.
async fn setup_ok(auth: &Auth, token: &str) -> Result<(), Response> {
    match records::setup_link_live(&*auth.store, token, now()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(setup_gone()),
        Err(e) => {
            tracing::warn!(error = %e, "setup: cannot read the setup link");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                page("Setup", &flash(None, Some(SETUP_DOWN))),
            )
                .into_response())
        }
    }
}

const SETUP_GONE: &str = "This setup link is not valid: it was used, it expired, an account exists already, or it was mistyped. Restart the server while no account exists to get a new one, or run `apx-canary user add --admin NAME`.";
const SETUP_DOWN: &str =
    "The store is unavailable: nothing was created. Try the setup link again shortly.";

/// The answer to a setup link that is used, expired, mistyped, or no longer needed.
fn setup_gone() -> Response {
    (
        StatusCode::FORBIDDEN,
        page("Setup", &flash(None, Some(SETUP_GONE))),
    )
        .into_response()
}

pub async fn setup_page(State(auth): State<Arc<Auth>>, Query(q): Query<SetupQuery>) -> Response {
    if let Err(refused) = setup_ok(&auth, &q.token).await {
        return refused;
    }
    page(
        "Create the first admin",
        &format!(
            "{}<form method=\"post\" action=\"/setup\" class=\"card\">\
<input type=\"hidden\" name=\"token\" value=\"{}\">\
<label for=\"name\">Account name</label><input id=\"name\" name=\"name\" required maxlength=\"64\" autocomplete=\"username\">\
<label for=\"password\">Password (at least {} characters)</label><input id=\"password\" name=\"password\" type=\"password\" required autocomplete=\"new-password\">\
<label for=\"password2\">Password again</label><input id=\"password2\" name=\"password2\" type=\"password\" required autocomplete=\"new-password\">\
<button type=\"submit\" class=\"primary\">Create admin and sign in</button></form>",
            flash(None, q.error.as_deref()),
            esc(&q.token),
            credentials::MIN_PASSWORD
        ),
    )
    .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SetupForm {
    token: String,
    name: String,
    password: String,
    password2: String,
}

/// `POST /setup`: creates the first admin. The link is checked in the store, then the setup is
/// claimed there (create-only): of concurrent posts, on any replicas, exactly one creates an
/// admin; the others are refused as for a used link.
pub async fn setup(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Form(f): Form<SetupForm>,
) -> Response {
    if let Err(refused) = setup_ok(&auth, &f.token).await {
        return refused;
    }
    let back = |e: &str| {
        Redirect::to(&format!(
            "/setup?token={}&error={}",
            urlencode(&f.token),
            urlencode(e)
        ))
        .into_response()
    };
    let name = f.name.trim().to_lowercase();
    if let Err(e) = records::check_name("account name", &name) {
        return back(&e.to_string());
    }
    if f.password != f.password2 {
        return back("The two passwords differ.");
    }
    if let Err(e) = credentials::check_password_rules(&f.password) {
        return back(&e);
    }
    let Ok(password_hash) = auth.hasher.hash(&f.password).await else {
        return back(credentials::BUSY);
    };
    match records::claim_setup(&*auth.store, now()).await {
        Ok(true) => {}
        Ok(false) => return setup_gone(),
        Err(e) => {
            tracing::warn!(error = %e, "setup: cannot claim the setup");
            return back(SETUP_DOWN);
        }
    }
    let account = Account {
        name: name.clone(),
        password_hash,
        role: Role::Admin,
        policies: vec![],
        created_at: now(),
        created_by: "setup link".into(),
    };
    let store = &*auth.store;
    // An account may have been created meanwhile (`apx-canary user add`): then no admin here.
    let created = match records::has_accounts(store).await {
        Ok(true) => Ok(false),
        Ok(false) => records::create_account(store, &account)
            .await
            .map(|()| true),
        Err(e) => Err(e),
    };
    match created {
        Ok(true) => {}
        Ok(false) => return setup_gone(),
        Err(e) => {
            // Nothing was created: the link may be tried again.
            if let Err(e) = records::unclaim_setup(store).await {
                tracing::warn!(error = %e, "setup: cannot give the claim back; use `apx-canary user add --admin NAME`");
            }
            return back(&e.to_string());
        }
    }
    if let Err(e) = records::forget_setup_links(store).await {
        tracing::warn!(error = %e, "setup: cannot delete the used setup links (they no longer work)");
    }
    tracing::info!(account = %limiter::for_log(&name), "first admin created through the setup link");
    let principal = Principal {
        name,
        role: Role::Admin,
        policies: vec![],
        via: SignIn::Password,
    };
    match records::start_session(store, principal, now()).await {
        Ok(id) => with_cookie(
            "/?notice=Admin%20account%20created.",
            session_cookie(&id, auth.limits.absolute, &headers, auth.secure_cookies),
        ),
        Err(_) => {
            Redirect::to("/signin?notice=Admin%20account%20created%3A%20sign%20in.").into_response()
        }
    }
}

/// `GET /api/v1/session`: who is signed in, and the CSRF token for `X-CSRF-Token`.
pub async fn session_json(Extension(caller): Extension<Caller>) -> Response {
    Json(json!({ "principal": caller.principal, "csrf": caller.csrf })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    name: String,
    role: String,
    #[serde(default)]
    policies: Vec<String>,
}

fn creator(caller: &Caller) -> String {
    caller
        .principal
        .as_ref()
        .map_or_else(|| "unknown".into(), Principal::actor)
}

fn parse_role(role: &str) -> Result<Role, splitter::Error> {
    Role::from_key(role).ok_or_else(|| {
        splitter::Error::invalid(
            "role",
            format!(
                "'{}': choose viewer, operator, admin or service",
                role.escape_debug()
            ),
        )
    })
}

/// `POST /api/v1/tokens`: the token is in this answer and nowhere else, ever.
pub async fn create_token_json(
    State(auth): State<Arc<Auth>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<TokenBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let b = crate::api::body(body)?;
    let role = parse_role(&b.role)?;
    let policies = records::parse_patterns(&b.policies.join(","))?;
    let (record, secret) = records::create_token(
        &*auth.store,
        b.name.trim(),
        role,
        policies,
        &creator(&caller),
        now(),
    )
    .await?;
    tracing::info!(token = %record.name, id = %record.id, role = %record.role, "API token created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": secret, "id": record.id, "name": record.name, "role": record.role, "policies": record.policies })),
    )
        .into_response())
}

pub async fn list_tokens_json(State(auth): State<Arc<Auth>>) -> Result<Response, ApiError> {
    let list: Vec<_> = records::tokens(&*auth.store)
        .await?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    Ok(Json(list).into_response())
}

pub async fn revoke_token_json(
    State(auth): State<Arc<Auth>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(key) = records::revoke_token(&*auth.store, &id, now()).await? {
        auth.forget_key(&key);
        tracing::info!(%id, "API token revoked");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::Splitter(splitter::Error::invalid(
            "id",
            format!("no token has id '{}'", id.escape_debug()),
        )))
    }
}

fn when(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| "—".into(), app::model::when)
}

/// `GET /admin/tokens`.
pub async fn tokens_page(
    State(auth): State<Arc<Auth>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SignInQuery>,
) -> Result<Html<String>, ApiError> {
    let csrf = esc(caller.csrf.as_deref().unwrap_or(""));
    let rows: String = records::tokens(&*auth.store)
        .await?
        .into_iter()
        .map(|(_, t)| {
            let state = match t.revoked_at {
                Some(at) => format!("revoked {}", when(at)),
                None => format!(
                    "<form method=\"post\" action=\"/admin/tokens/{id}/revoke\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"danger\">Revoke</button></form>",
                    id = esc(&t.id)
                ),
            };
            format!(
                "<tr data-token=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{} by {}</td><td>{}</td><td>{}</td></tr>",
                esc(&t.id),
                esc(&t.name),
                t.role,
                esc(&if t.policies.is_empty() { "all".to_string() } else { t.policies.join(", ") }),
                when(t.created_at),
                esc(&t.created_by),
                t.last_used_at.map_or_else(|| "never".into(), when),
                state
            )
        })
        .collect();
    let roles: String = Role::ALL
        .iter()
        .map(|r| format!("<option value=\"{r}\">{r}</option>"))
        .collect();
    Ok(page(
        "API tokens",
        &format!(
            "{}<table class=\"tokens\"><thead><tr><th scope=\"col\">Id</th><th scope=\"col\">Name</th><th scope=\"col\">Role</th><th scope=\"col\">Policies</th><th scope=\"col\">Created</th><th scope=\"col\">Last used</th><th scope=\"col\">State</th></tr></thead><tbody>{rows}</tbody></table>\
<form method=\"post\" action=\"/admin/tokens\" class=\"card\"><h2>New token</h2><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"token-name\">Name</label><input id=\"token-name\" name=\"name\" required maxlength=\"64\" placeholder=\"e.g. ci-deploy\">\
<label for=\"token-role\">Role</label><select id=\"token-role\" name=\"role\">{roles}</select>\
<label for=\"token-policies\">Policies (patterns, e.g. payments-*; empty: all)</label><input id=\"token-policies\" name=\"policies\" maxlength=\"1000\">\
<button type=\"submit\" class=\"primary\">Create token</button></form><p><a href=\"/\">All policies</a></p>",
            flash(q.notice.as_deref(), q.error.as_deref())
        ),
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenForm {
    name: String,
    role: String,
    policies: String,
}

/// `POST /admin/tokens`: answers with the token itself, shown this once.
pub async fn create_token_form(
    State(auth): State<Arc<Auth>>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<TokenForm>,
) -> Response {
    let made = async {
        let role = parse_role(&f.role)?;
        let policies = records::parse_patterns(&f.policies)?;
        records::create_token(
            &*auth.store,
            f.name.trim(),
            role,
            policies,
            &creator(&caller),
            now(),
        )
        .await
    }
    .await;
    match made {
        Ok((record, secret)) => {
            tracing::info!(token = %record.name, id = %record.id, role = %record.role, "API token created");
            let mut r = page(
                "Token created",
                &format!(
                    "<p class=\"flash notice\" role=\"status\">Token '{}' ({}) created. Copy it now: it is shown only this once and stored only as a hash.</p>\
<p><code data-test=\"new-token\">{}</code></p><p>Send it as <code>Authorization: Bearer &lt;token&gt;</code>.</p><p><a href=\"/admin/tokens\">All tokens</a></p>",
                    esc(&record.name),
                    record.role,
                    esc(&secret)
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => Redirect::to(&format!(
            "/admin/tokens?error={}",
            urlencode(&e.to_string())
        ))
        .into_response(),
    }
}

pub async fn revoke_token_form(State(auth): State<Arc<Auth>>, Path(id): Path<String>) -> Response {
    let message = match records::revoke_token(&*auth.store, &id, now()).await {
        Ok(Some(key)) => {
            auth.forget_key(&key);
            format!("notice={}", urlencode(&format!("Token {id} revoked.")))
        }
        Ok(None) => format!("error={}", urlencode(&format!("No token has id {id}."))),
        Err(e) => format!("error={}", urlencode(&e.to_string())),
    };
    Redirect::to(&format!("/admin/tokens?{message}")).into_response()
}
