//! Access: who is asking ([`Caller`]), what each route needs ([`rules`]), and the one guard
//! every request passes ([`guard`]): authentication (session cookie or bearer token),
//! authorisation ([`app::access::authorize`]), and for browser writes the Origin /
//! `Sec-Fetch-Site` check and the session's CSRF token. Pages and handlers read the
//! [`Caller`] the guard leaves in the request's extensions.

pub mod cli;
pub mod credentials;
pub mod iap;
pub mod limiter;
pub mod pages;
pub mod records;
pub mod rules;

use app::access::{authorize, Caller, Denied, Need};
use axum::body::{to_bytes, Body};
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use records::SessionLimits;
use serde_json::json;
use splitter::store::access::AccessStore;
use std::sync::{Arc, Mutex};

/// The session cookie's name over plain HTTP (a developer's `./dev run`).
pub const SESSION_COOKIE: &str = "apx_session";
/// Its name when it is `Secure`: the `__Host-` prefix makes browsers refuse it unless it was
/// set by this host over HTTPS with `Path=/` and no `Domain`, so a sibling sub-domain cannot
/// plant a session of its choosing.
pub const SECURE_SESSION_COOKIE: &str = "__Host-apx_session";
/// What a browser write without the session's CSRF token is told.
const CSRF_MISSING: &str =
    "the form's CSRF token is missing or stale: reload the page and try again; nothing was changed";
/// Largest form body the guard reads to find the CSRF token.
const MAX_FORM: usize = 1024 * 1024;

/// Access settings and state shared by every request.
pub struct Auth {
    pub store: Arc<dyn AccessStore>,
    pub limits: SessionLimits,
    /// Sign-in attempts in this replica's memory (the store counts them per account for all).
    pub limiter: limiter::Limiter,
    /// Password hashing and checks, off the async workers and bounded.
    pub hasher: credentials::Hasher,
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`); none: the TCP
    /// peer is the client.
    pub trusted_proxies: Vec<limiter::Cidr>,
    /// When set, `/metrics` needs `Authorization: Bearer <this>`.
    pub metrics_token: Option<String>,
    /// Always mark the session cookie `Secure` (it is also marked when a proxy says
    /// `X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
    /// Behind Google's IAP: its verifier, and the shared key that derives each proxy user's
    /// CSRF token (see [`records::shared_secret`]).
    pub iap: Option<(iap::Iap, String)>,
    /// The `Host` values this server answers to (`host:port`, compared without case); `None`:
    /// any. A page on another name that resolves here (DNS rebinding) is refused.
    pub allowed_hosts: Option<Vec<String>>,
    /// How long a looked-up token or session is trusted for reads (seconds; 0: never cached).
    /// Another replica's sign-out or revocation reaches reads here within this time; writes
    /// always check the store.
    pub cache_secs: i64,
    cache: Mutex<std::collections::HashMap<String, (i64, Caller)>>,
    /// When a look-up last found the store unreachable: for a few seconds after, reads use
    /// what the cache holds, however old, instead of waiting on the store again.
    store_down_at: Mutex<Option<i64>>,
}

/// Why a caller who proved an identity is still refused.
pub enum Refused {
    Store(splitter::Error),
    /// A verified identity without a role here.
    NoRole(String),
}

impl Auth {
    pub fn new(store: Arc<dyn AccessStore>) -> Auth {
        Auth {
            store,
            limits: SessionLimits::default(),
            limiter: Default::default(),
            hasher: Default::default(),
            trusted_proxies: Vec::new(),
            metrics_token: None,
            secure_cookies: false,
            allowed_hosts: None,
            iap: None,
            cache_secs: 10,
            cache: Mutex::new(Default::default()),
            store_down_at: Mutex::new(None),
        }
    }

    /// Trusts Google's IAP (see [`iap`]); loads the shared CSRF key from the store.
    pub async fn enable_iap(&mut self, verifier: iap::Iap) -> Result<(), splitter::Error> {
        let key = records::shared_secret(&*self.store, "iap-csrf").await?;
        self.iap = Some((verifier, key));
        Ok(())
    }

    /// Creates a one-time setup link's token (valid for `minutes`, on every replica: it is kept
    /// in the store) when no account exists and the setup was never claimed; returns it to be
    /// printed on the console, once.
    pub async fn setup_token(&self, minutes: i64) -> Result<Option<String>, splitter::Error> {
        records::create_setup_link(&*self.store, now(), minutes * 60).await
    }

    /// Who is asking: a bearer token, else (behind IAP) the proxy's signed assertion, else a
    /// session cookie, else nobody.
    /// Looked-up tokens and sessions are kept for [`Auth::cache_secs`]; a write (`fresh`)
    /// always asks the store, so a revoked token or ended session never writes anywhere.
    async fn identify(&self, headers: &HeaderMap, fresh: bool) -> Result<Caller, Refused> {
        if let Some(token) = bearer(headers) {
            return self
                .cached(token, fresh, || async {
                    let principal = records::token_principal(&*self.store, token, now()).await?;
                    Ok(Caller {
                        // A token's own key: it owns its simulator uploads, as a session does.
                        session_key: principal
                            .as_ref()
                            .map(|_| credentials::digest(&format!("token:{token}"))),
                        principal,
                        csrf: None,
                        ..Caller::default()
                    })
                })
                .await
                .map_err(Refused::Store);
        }
        if let (Some((iap, key)), Some(assertion)) = (&self.iap, headers.get(iap::ASSERTION_HEADER))
        {
            let email = match iap
                .verify_or_refresh(assertion.to_str().unwrap_or(""), now())
                .await
            {
                Ok(email) => email,
                Err(why) => {
                    tracing::info!(%why, "IAP assertion refused");
                    return Ok(Caller::default());
                }
            };
            let principal = iap
                .principal(&email)
                .ok_or_else(|| Refused::NoRole(email.clone()))?;
            return Ok(Caller {
                principal: Some(principal),
                csrf: Some(credentials::digest(&format!("{key}:csrf:{email}"))),
                session_key: Some(credentials::digest(&format!("iap:{email}"))),
                ..Caller::default()
            });
        }
        let Some(id) = self.session_id(headers) else {
            return Ok(Caller::default());
        };
        self.cached(id, fresh, || async {
            Ok(
                match records::session(&*self.store, id, self.limits, now()).await? {
                    Some(s) => Caller {
                        principal: Some(s.principal),
                        csrf: Some(s.csrf),
                        session_key: Some(credentials::digest(id)),
                        ..Caller::default()
                    },
                    None => Caller::default(),
                },
            )
        })
        .await
        .map_err(Refused::Store)
    }

    /// The caller for a credential: from the cache while it is young (and not `fresh`), else
    /// looked up and cached. Bounded: a full cache is emptied.
    async fn cached<F, Fut>(
        &self,
        credential: &str,
        fresh: bool,
        look_up: F,
    ) -> Result<Caller, splitter::Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Caller, splitter::Error>>,
    {
        let key = credentials::digest(credential);
        let t = now();
        let down = self
            .store_down_at
            .lock()
            .unwrap()
            .is_some_and(|d| t - d < 5);
        let cached = self.cache.lock().unwrap().get(&key).cloned();
        if let Some((at, caller)) = &cached {
            if !fresh && (down || (self.cache_secs > 0 && t - at < self.cache_secs)) {
                return Ok(caller.clone());
            }
        }
        let caller = match look_up().await {
            Ok(caller) => caller,
            // A store outage is not a dashboard outage: reads go on as whoever they were.
            Err(e @ splitter::Error::Unavailable { .. }) => {
                *self.store_down_at.lock().unwrap() = Some(t);
                return match cached {
                    Some((_, caller)) if !fresh => Ok(caller),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        *self.store_down_at.lock().unwrap() = None;
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(key, (t, caller.clone()));
        Ok(caller)
    }

    /// The session cookie's value: the `__Host-` one, or (unless cookies are always Secure)
    /// the plain one.
    pub fn session_id<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        cookie(headers, SECURE_SESSION_COOKIE).or_else(|| {
            (!self.secure_cookies)
                .then(|| cookie(headers, SESSION_COOKIE))
                .flatten()
        })
    }

    /// Whether `host` (the request's `Host`, or its URI's authority) is one this server
    /// answers to; `None` in [`Auth::allowed_hosts`]: any.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        match &self.allowed_hosts {
            None => true,
            Some(list) => host.is_some_and(|h| list.iter().any(|a| a.eq_ignore_ascii_case(h))),
        }
    }

    /// Forgets a credential here at once (sign-out on this replica).
    pub fn forget(&self, credential: &str) {
        self.forget_key(&credentials::digest(credential));
    }

    /// Forgets a credential by its digest (a token revoked on this replica).
    pub fn forget_key(&self, digest: &str) {
        self.cache.lock().unwrap().remove(digest);
    }
}

/// The `Host` values to accept ([`Auth::allowed_hosts`]) for a server listening on `addr` with
/// `--allowed-host` values `given`.
pub fn allowed_hosts(
    addr: std::net::SocketAddr,
    given: &[String],
) -> Result<Option<Vec<String>>, String> {
    let given: Vec<String> = given
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if given.iter().any(|h| h == "*") {
        return Ok(None);
    }
    if let Some(bad) = given.iter().find(|h| {
        h.parse::<axum::http::uri::Authority>().is_err() || h.contains('@') || h.contains('/')
    }) {
        return Err(format!(
            "--allowed-host '{}': give a host name or HOST:PORT, e.g. canary.example.com",
            bad.escape_debug()
        ));
    }
    if !given.is_empty() {
        return Ok(Some(given));
    }
    if !addr.ip().is_loopback() {
        return Ok(None);
    }
    let port = addr.port();
    let mut hosts = vec![addr.to_string(), format!("localhost:{port}")];
    if port == 80 {
        hosts.extend([addr.ip().to_string(), "localhost".into()]);
    }
    Ok(Some(hosts))
}

pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A cookie's value.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The header on every refusal by the guard, naming why (`unauthenticated`, `forbidden`,
/// `csrf`, `no_rule`, `unavailable`): tools and tests tell a guard refusal from a handler's.
pub const DENIED_HEADER: &str = "x-apx-denied";

/// A refusal, in JSON for the API (with a stable `code`) and as text elsewhere.
pub fn refuse(api: bool, status: StatusCode, code: &'static str, message: &str) -> Response {
    let mut r = if api {
        (
            status,
            axum::Json(json!({ "error": message, "code": code })),
        )
            .into_response()
    } else {
        (status, format!("{message}\n")).into_response()
    };
    r.headers_mut()
        .insert(DENIED_HEADER, axum::http::HeaderValue::from_static(code));
    r
}

/// Whether a browser sent this request from our own pages: `Sec-Fetch-Site: same-origin`, or
/// (older browsers) an `Origin` whose host is ours. A request that says neither is refused.
pub fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" => Ok(()),
            _ => {
                Err("this change was sent from another site (Sec-Fetch-Site); nothing was changed")
            }
        };
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => {
            let origin_host = origin.split("://").nth(1).unwrap_or("");
            if host.is_some_and(|h| h == origin_host) {
                Ok(())
            } else {
                Err("this change was sent from another site (Origin); nothing was changed")
            }
        }
        None => Err("the request did not say which page sent it (no Origin); nothing was changed"),
    }
}

fn wants_json(path: &str) -> bool {
    path.starts_with("/api/")
}

/// The guard's state: access settings, and where the built files are (the fallback serves them
/// to anybody; any other fallback request renders the app, for readers only).
#[derive(Clone)]
pub struct GuardState {
    pub auth: Arc<Auth>,
    pub site_root: Arc<std::path::Path>,
}

impl GuardState {
    /// Whether `path` names a file under the site root. It is canonical ([`crate::paths`] ran
    /// first): no `..` segment can leave the root.
    fn is_file(&self, path: &str) -> bool {
        let relative = path.trim_start_matches('/');
        !relative.is_empty() && self.site_root.join(relative).is_file()
    }
}

/// The guard: every request passes here, routed or not (installed with `Router::layer` after
/// the fallback). A path that is not canonical is redirected or refused first
/// ([`crate::paths`]). The rule is looked up with axum's matched route and its percent-decoded
/// path parameters — the values the handler's `Path` extractor reads — never by re-parsing it.
pub async fn guard(State(g): State<GuardState>, req: Request, next: Next) -> Response {
    // One spelling per path: what the rule and the handler read is the canonical path.
    if let Err(why) = crate::paths::check(req.uri().path()) {
        return crate::paths::refusal(req.method(), req.uri(), why);
    }
    let (mut parts, body) = req.into_parts();
    let api = wants_json(parts.uri.path());
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(parts.uri.authority().map(|a| a.as_str()));
    if !g.auth.host_allowed(host) {
        return refuse(
            api,
            StatusCode::MISDIRECTED_REQUEST,
            "host",
            "this server does not answer to that host name (see --allowed-host)",
        );
    }
    let route = parts.extensions.get::<MatchedPath>().cloned();
    let raw = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(p) => Some(p),
        Err(RawPathParamsRejection::MissingPathParams(_)) => None,
        Err(_) => {
            return refuse(
                api,
                StatusCode::BAD_REQUEST,
                "bad_path",
                "a path parameter is not valid UTF-8 once decoded",
            )
        }
    };
    // The target borrows the parameters; the rule it gives owns what it needs.
    let rule = rules::rule(&rules::Target {
        method: &parts.method,
        route: route.as_ref().map(MatchedPath::as_str),
        params: raw.as_ref().map_or(&() as &dyn rules::Params, |p| p),
        static_file: route.is_none() && g.is_file(parts.uri.path()),
    });
    let Some(rule) = rule else {
        return refuse(
            api,
            StatusCode::FORBIDDEN,
            "no_rule",
            "no access rule covers this route",
        );
    };
    let req = Request::from_parts(parts, body);
    let auth = &g.auth;
    let caller = match auth.identify(req.headers(), rule.changes_state).await {
        Ok(c) => c,
        Err(Refused::NoRole(email)) => {
            return refuse(
                api,
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "{email} has no role here: ask an admin to map it (--iap-role ROLE={email})"
                ),
            )
        }
        Err(Refused::Store(e)) => {
            tracing::warn!(error = %e, "cannot check the caller's session or token");
            return refuse(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is unreachable: no change can be made now (your sign-in cannot be \
                 checked either). Routing continues from the last snapshot; try again when \
                 /healthz says ok",
            );
        }
    };
    if let Err(denied) = authorize(caller.principal.as_ref(), &rule.need) {
        if route.is_none() {
            // No route and no file: nothing here for this caller (the app's not-found page is
            // for readers), and no sign-in detour for a path that does not exist.
            return refuse(api, StatusCode::NOT_FOUND, denied.code(), "nothing here");
        }
        let (path, query) = (req.uri().path(), req.uri().query());
        return denied_response(api, req.method(), path, query, denied);
    }
    let req = if rule.changes_state && (caller.csrf.is_some() || rule.need == Need::Nobody) {
        // Signing in or setting up has no session token yet: only the Origin check applies.
        let token = (rule.need != Need::Nobody)
            .then_some(caller.csrf.as_deref())
            .flatten();
        let multipart_ok = route.as_ref().map(MatchedPath::as_str) == Some(MULTIPART_ROUTE);
        match check_browser_write(req, token, multipart_ok).await {
            Ok(req) => req,
            Err(message) => return refuse(api, StatusCode::FORBIDDEN, "csrf", &message),
        }
    } else {
        req
    };
    let mut req = req;
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The one route whose handler reads a multipart body and checks the CSRF token among its parts
/// ([`check_csrf`]); a multipart write to any other route needs the `X-CSRF-Token` header.
pub const MULTIPART_ROUTE: &str = "/policies/{name}/simulate/upload";

fn denied_response(
    api: bool,
    method: &Method,
    path: &str,
    query: Option<&str>,
    denied: Denied,
) -> Response {
    match denied {
        Denied::Unauthenticated if !api && method == Method::GET => {
            let next = match query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            let mut r = Redirect::to(&format!(
                "/signin?next={}",
                app::routes::overview::urlencode(&next)
            ))
            .into_response();
            r.headers_mut().insert(
                DENIED_HEADER,
                axum::http::HeaderValue::from_static("unauthenticated"),
            );
            r
        }
        Denied::Unauthenticated => refuse(
            api,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first (or send Authorization: Bearer <token>)",
        ),
        Denied::Forbidden(why) => refuse(api, StatusCode::FORBIDDEN, "forbidden", &why),
    }
}

/// A write from a browser: it must come from our own pages, and (once signed in) carry the
/// session's CSRF token — in the form field `csrf`, or the `X-CSRF-Token` header. Multipart
/// uploads to [`MULTIPART_ROUTE`] are checked by their handler (the token is one of the parts).
async fn check_browser_write(
    req: Request,
    expected: Option<&str>,
    multipart_ok: bool,
) -> Result<Request, String> {
    same_origin(req.headers()).map_err(str::to_string)?;
    let Some(expected) = expected else {
        return Ok(req);
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let missing = || CSRF_MISSING.to_string();
    if let Some(token) = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return if credentials::same_secret(token, expected) {
            Ok(req)
        } else {
            Err(missing())
        };
    }
    if multipart_ok && content_type.starts_with("multipart/form-data") {
        return Ok(req);
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(missing());
    }
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| "the form is larger than 1 MB; nothing was changed".to_string())?;
    let token = form_urlencoded_field(&bytes, "csrf");
    if !token.is_some_and(|t| credentials::same_secret(&t, expected)) {
        return Err(missing());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// For handlers that read their own body (multipart): the CSRF token they found.
pub fn check_csrf(caller: &Caller, token: &str) -> Result<(), String> {
    match caller.csrf.as_deref() {
        Some(expected) if credentials::same_secret(token, expected) => Ok(()),
        Some(_) => Err(CSRF_MISSING.into()),
        None => Ok(()),
    }
}
