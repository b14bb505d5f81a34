//! A hostile reviewer's attack matrix, written from the router and its rule table rather than
//! from the guard: every route in `server::auth::rules::RULES` (and every Leptos page and
//! server function) is filled with concrete values, each concrete path is spelt in many
//! non-canonical ways (trailing and doubled slashes, dot segments, percent-encoding in upper
//! and lower hex, upper case, an extra segment, a matrix parameter), and each spelling is sent
//! as every kind of caller. A spelling never gets a caller more than the canonical path gives
//! it, no refused caller ever sees a planted marker, and refused writes change nothing.
//!
//! The fixtures (`payments-api`, `search-api`) carry unguessable versions and a pinned tenant
//! id; a refused caller's request carries a body that would succeed if it reached the handler
//! (current revision, confirmation ticked), so a hole in the guard shows up as a side effect,
//! which is recorded against the request and undone before the next one.

use app::access::Role;
use app::actions::PolicyAction;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use server::auth::{rules, Auth, DENIED_HEADER};
use splitter::store::embedded::EmbeddedStore;
use splitter::store::Store;
use splitter::{Actor, BasisPoints, NewPolicy, Operation, Pin, PolicyName, TenantId, Version};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// Fixtures

const POLICIES: [&str; 2] = ["payments-api", "search-api"];
/// Where a write's body names no current revision (the canonical request and the spellings of
/// it sent as a caller who may use the route): the handler refuses it as stale.
const STALE: u64 = 999_999;

fn random_hex() -> String {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The planted strings: per policy its stable and canary versions, and one pinned tenant id.
#[derive(Clone)]
struct Marks {
    versions: BTreeMap<&'static str, (String, String)>,
    tenant: String,
    /// The name of an admin token (only admins list tokens).
    token: String,
}

impl Marks {
    fn new() -> Marks {
        let versions = POLICIES
            .iter()
            .map(|p| {
                (
                    *p,
                    (
                        format!("v1-mark-{}", random_hex()),
                        format!("v2-mark-{}", random_hex()),
                    ),
                )
            })
            .collect();
        Marks {
            versions,
            tenant: format!("tenant-mark-{}", random_hex()),
            token: format!("token-mark-{}", random_hex()),
        }
    }

    fn all(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .versions
            .values()
            .flat_map(|(s, c)| [s.as_str(), c.as_str()])
            .collect();
        v.push(&self.tenant);
        v.push(&self.token);
        v
    }

    /// The first planted string found in the reply's headers or body.
    fn found_in(&self, r: &Reply) -> Option<String> {
        let headers: String = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        self.all()
            .into_iter()
            .find(|m| r.body.contains(m) || headers.contains(m))
            .map(str::to_string)
    }
}

async fn execute(store: &dyn Store, name: &str, expected: Option<u64>, op: Operation) {
    store
        .execute(&splitter::Request {
            policy: PolicyName::new(name).unwrap(),
            expected_revision: expected,
            operation: op,
            actor: Actor::new("fixture").unwrap(),
            reason: String::new(),
        })
        .await
        .unwrap();
}

async fn plant(store: &dyn Store, marks: &Marks) {
    for (name, (stable, canary)) in &marks.versions {
        execute(
            store,
            name,
            None,
            Operation::Create(NewPolicy {
                stable_version: Version::new(stable).unwrap(),
                canary_version: Some(Version::new(canary).unwrap()),
                share: BasisPoints::new(500).unwrap(),
                salt: None,
            }),
        )
        .await;
        execute(
            store,
            name,
            Some(1),
            Operation::Pin {
                tenant: TenantId::new(&marks.tenant).unwrap(),
                pin: Pin::Canary,
            },
        )
        .await;
    }
}

/// What the store holds, compactly: any write changes a revision, a create or delete the list.
async fn fixture_state(store: &dyn Store) -> Vec<String> {
    store
        .list()
        .await
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} r{} stable={} canary={:?} pins={:?}",
                c.policy_name,
                c.revision,
                c.stable_version,
                c.canary_version.as_ref().map(|v| v.to_string()),
                c.overrides
                    .keys()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
            )
        })
        .collect()
}

struct World {
    app: Router,
    auth: Arc<Auth>,
    store: Arc<dyn Store>,
    marks: Marks,
    /// An admin token, to see what the routing snapshot holds after a restore.
    admin_token: String,
    _dir: tempfile::TempDir,
}

async fn world(demo: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap());
    world_on(store, dir, demo).await
}

/// The same world on the Firestore emulator (a project of its own).
async fn firestore_world(demo: bool) -> World {
    let project = format!("variants-{}-{}", std::process::id(), random_hex());
    let store = server::testing::firestore(&project).await;
    world_on(store, tempfile::tempdir().unwrap(), demo).await
}

async fn world_on(store: Arc<dyn Store>, dir: tempfile::TempDir, demo: bool) -> World {
    let marks = Marks::new();
    plant(&*store, &marks).await;
    let auth = Auth::new(store.clone());
    // `public/` as the site root, so a static file (`/favicon.svg`) exists.
    let (app, auth) = server::testing::site_router(
        store.clone(),
        server::testing::quiet("variants"),
        demo,
        auth,
        SITE_ROOT,
    )
    .await;
    let admin_token = server::testing::token(&auth, &marks.token, Role::Admin, &[]).await;
    World {
        app,
        auth,
        store,
        marks,
        admin_token,
        _dir: dir,
    }
}

impl World {
    fn revision(&self, states: &[String], policy: &str) -> u64 {
        states
            .iter()
            .find_map(|s| {
                s.strip_prefix(&format!("{policy} r"))
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(STALE)
    }

    /// Deletes whatever a leaked write left and plants the fixtures again (same markers), then
    /// waits until the routing snapshot has them back.
    async fn restore(&self) {
        for c in self.store.list().await.unwrap() {
            execute(
                &*self.store,
                c.policy_name.as_str(),
                Some(c.revision),
                Operation::Delete,
            )
            .await;
        }
        plant(&*self.store, &self.marks).await;
        let admin = Who::Bearer(self.admin_token.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = send(
                &self.app,
                &admin,
                &Method::GET,
                "/api/v1/policies",
                "",
                None,
            )
            .await
            .unwrap();
            let back = self
                .marks
                .versions
                .values()
                .all(|(s, _)| r.body.contains(s))
                && r.body.matches("\"policy_name\"").count() == POLICIES.len();
            if back || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Callers

#[derive(Clone)]
enum Who {
    Nobody,
    Session {
        cookie: String,
        csrf: String,
    },
    Bearer(String),
    /// An admin's session cookie sent by a foreign page: foreign Origin, cross-site, no token.
    Foreign {
        cookie: String,
    },
}

#[derive(Clone)]
struct Caller {
    label: &'static str,
    who: Who,
    role: Role,
    patterns: Vec<String>,
}

impl Caller {
    async fn make(auth: &Auth, label: &'static str) -> Caller {
        let (role, patterns): (Role, &[&str]) = match label {
            "nobody" | "viewer" => (Role::Viewer, &[]),
            "operator" | "service" => (
                if label == "service" {
                    Role::Service
                } else {
                    Role::Operator
                },
                &["payments-*"],
            ),
            _ => (Role::Admin, &[]),
        };
        let who = match label {
            "nobody" => Who::Nobody,
            "service" => Who::Bearer(server::testing::token(auth, "svc", role, patterns).await),
            "foreign" => Who::Foreign {
                cookie: server::testing::session(auth, "ada", role, patterns)
                    .await
                    .0,
            },
            _ => {
                let (cookie, csrf) = server::testing::session(auth, label, role, patterns).await;
                Who::Session { cookie, csrf }
            }
        };
        Caller {
            label,
            who,
            role,
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// The same caller with a new session (signing out ends the one it has).
    async fn fresh(&self, auth: &Auth) -> Who {
        let pats: Vec<&str> = self.patterns.iter().map(String::as_str).collect();
        match &self.who {
            Who::Session { .. } => {
                let (cookie, csrf) =
                    server::testing::session(auth, self.label, self.role, &pats).await;
                Who::Session { cookie, csrf }
            }
            Who::Foreign { .. } => Who::Foreign {
                cookie: server::testing::session(auth, "ada", self.role, &pats)
                    .await
                    .0,
            },
            other => other.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sending and classifying

struct Reply {
    status: StatusCode,
    denied: Option<String>,
    location: String,
    headers: HeaderMap,
    body: String,
}

async fn send(
    app: &Router,
    who: &Who,
    method: &Method,
    uri: &str,
    body: &str,
    if_match: Option<u64>,
) -> Result<Reply, String> {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(header::HOST, "localhost");
    if !body.is_empty() {
        let content = if body.starts_with('{') {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        req = req.header(header::CONTENT_TYPE, content);
    }
    match who {
        Who::Nobody => {
            req = req
                .header(header::ORIGIN, "http://localhost")
                .header("sec-fetch-site", "same-origin");
        }
        Who::Session { cookie, csrf } => {
            req = req
                .header(header::ORIGIN, "http://localhost")
                .header("sec-fetch-site", "same-origin")
                .header(header::COOKIE, cookie)
                .header("x-csrf-token", csrf);
        }
        Who::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
        Who::Foreign { cookie } => {
            req = req
                .header(header::ORIGIN, "https://evil.example")
                .header("sec-fetch-site", "cross-site")
                .header(header::COOKIE, cookie);
        }
    }
    if let Some(rev) = if_match {
        req = req.header(header::IF_MATCH, format!("\"{rev}\""));
    }
    let req = req
        .body(Body::from(body.to_string()))
        .map_err(|e| format!("unbuildable request: {e}"))?;
    let res = app.clone().oneshot(req).await.unwrap();
    let headers = res.headers().clone();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, denied) = (res.status(), h(DENIED_HEADER));
    let location = h("location")
        .unwrap_or_default()
        .trim_start_matches("http://localhost")
        .to_string();
    // A server-sent-event stream never ends: its headers say enough.
    let streaming = h("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
    let body = if streaming {
        String::new()
    } else {
        match tokio::time::timeout(Duration::from_secs(5), res.into_body().collect()).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).to_string(),
            Ok(Err(e)) => format!("<body error: {e}>"),
            Err(_) => "<body timed out>".into(),
        }
    };
    Ok(Reply {
        status,
        denied,
        location,
        headers,
        body,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// Served: 2xx, 303 (a form handler ran) or anything not below.
    Allowed,
    /// 301/302/307/308 to the canonical path and query.
    ToCanonical,
    /// 301/302/307/308 somewhere else.
    Elsewhere(String),
    /// Refused by the guard (`x-apx-denied` or a redirect to sign in).
    Guard(String),
    /// 401/403 without the guard's header (a handler's own refusal).
    Handler(u16),
    /// Any other 4xx/5xx (not found, method not allowed, bad input…).
    Error(u16),
}

impl Class {
    fn refused(&self) -> bool {
        matches!(self, Class::Guard(_) | Class::Handler(_) | Class::Error(_))
    }

    fn short(&self) -> String {
        match self {
            Class::Allowed => "ALLOWED".into(),
            Class::ToCanonical => "REDIRECT-CANONICAL".into(),
            Class::Elsewhere(l) => format!("REDIRECT-ELSEWHERE({})", cut(l, 60)),
            Class::Guard(d) => format!("REFUSED({d})"),
            Class::Handler(s) => format!("REFUSED({s})"),
            Class::Error(s) => format!("REFUSED({s})"),
        }
    }

    /// For the tables: the class without its detail.
    fn kind(&self) -> String {
        match self {
            Class::Elsewhere(_) => "redirect-elsewhere".into(),
            Class::Guard(d) => format!("guard:{d}"),
            Class::Handler(s) | Class::Error(s) => s.to_string(),
            Class::Allowed => "ALLOWED".into(),
            Class::ToCanonical => "redirect-canonical".into(),
        }
    }
}

fn classify(r: &Reply, canonical: &str) -> Class {
    if let Some(d) = &r.denied {
        return Class::Guard(format!("{d}/{}", r.status.as_u16()));
    }
    if r.status.is_redirection() && r.location.starts_with("/signin?next=") {
        return Class::Guard(format!("signin/{}", r.status.as_u16()));
    }
    let s = r.status.as_u16();
    if matches!(s, 301 | 302 | 307 | 308) {
        return if r.location == canonical {
            Class::ToCanonical
        } else {
            Class::Elsewhere(r.location.clone())
        };
    }
    if matches!(s, 401 | 403) {
        return Class::Handler(s);
    }
    if s >= 400 {
        return Class::Error(s);
    }
    Class::Allowed
}

fn cut(s: &str, n: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n).collect::<String>())
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The route table, filled in

struct Row {
    method: Method,
    /// The table's route (or `(leptos)`, `(static)`).
    route: String,
    path: String,
    query: String,
}

impl Row {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.route)
    }
}

/// Concrete values for a route's parameters (every combination).
fn fill(route: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for seg in route.trim_start_matches('/').split('/') {
        let values: Vec<String> = match seg {
            "{name}" | "{policy}" | ":name" | ":policy" => {
                POLICIES.iter().map(|p| p.to_string()).collect()
            }
            "{action}" | ":action" => PolicyAction::ALL
                .iter()
                .map(|a| a.segment().to_string())
                .collect(),
            "{tenant}" | ":tenant" => vec!["acme".into()],
            "{id}" | ":id" => vec!["0000".into()],
            s if s.starts_with("{*") || s.starts_with('*') => vec!["a/b".into()],
            s if s.starts_with('{') || s.starts_with(':') => {
                panic!("{route}: no value for the parameter {s}: teach `fill` one")
            }
            s => vec![s.to_string()],
        };
        out = out
            .iter()
            .flat_map(|p| values.iter().map(move |v| format!("{p}/{v}")))
            .collect();
    }
    out.into_iter()
        .map(|p| if p.is_empty() { "/".into() } else { p })
        .collect()
}

/// Whether a concrete path matches an axum or Leptos route pattern.
fn route_matches(route: &str, path: &str) -> bool {
    let r: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let param = |s: &str| s.starts_with('{') || s.starts_with(':');
    if r.last()
        .is_some_and(|s| s.starts_with("{*") || s.starts_with('*'))
    {
        return p.len() >= r.len()
            && r[..r.len() - 1]
                .iter()
                .zip(&p)
                .all(|(a, b)| param(a) || a == b);
    }
    r.len() == p.len() && r.iter().zip(&p).all(|(a, b)| param(a) || a == b)
}

fn method_of(m: &str) -> Method {
    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).unwrap()
}

fn query_for(path: &str) -> String {
    if path.ends_with("/decision") {
        "tenant=acme".into()
    } else if path.ends_with("/simulate") {
        "tenants=a".into()
    } else {
        String::new()
    }
}

/// Every concrete request: the rule table's rows (server functions: each one), the Leptos
/// pages, a static file and a missing one.
fn rows() -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |method: Method, route: &str, path: String| {
        if !rows.iter().any(|r| r.method == method && r.path == path) {
            rows.push(Row {
                query: query_for(&path),
                method,
                route: route.to_string(),
                path,
            });
        }
    };
    let server_fns: Vec<(String, Method)> = leptos::server_fn::axum::server_fn_paths()
        .map(|(p, m)| (p.to_string(), method_of(m.as_str())))
        .collect();
    assert!(!server_fns.is_empty(), "no server functions registered");
    for (m, route, _, _) in rules::RULES {
        let methods = if *m == "ANY" {
            vec![Method::GET, Method::POST]
        } else {
            vec![method_of(m)]
        };
        for method in methods {
            if *route == rules::SERVER_FN {
                for (p, fm) in &server_fns {
                    push(fm.clone(), route, p.clone());
                }
            } else {
                for p in fill(route) {
                    push(method.clone(), route, p);
                }
            }
        }
    }
    for listing in leptos_axum::generate_route_list(app::App) {
        // Leptos may spell parameters `:name`; the table spells them `{name}`.
        let route: String = listing
            .path()
            .split('/')
            .map(|seg| match seg.strip_prefix(':') {
                Some(p) => format!("{{{p}}}"),
                None => seg.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        for m in listing.methods() {
            let method = method_of(&format!("{m:?}"));
            let covered = rules::RULES
                .iter()
                .any(|(rm, rr, _, _)| (*rm == "ANY" || method == *rm) && *rr == route);
            assert!(covered, "{method} {route}: a Leptos page without a rule");
            for p in fill(&route) {
                push(method.clone(), "(leptos)", p);
            }
        }
    }
    for (p, m) in &server_fns {
        assert!(
            p.starts_with("/api/") && !p.starts_with("/api/v1/") && *m == Method::POST,
            "{m} {p}: a server function outside the SERVER_FN rule"
        );
    }
    push(Method::GET, "(static)", "/favicon.svg".into());
    push(Method::GET, "(static)", "/robots.txt".into());
    push(Method::GET, "(static)", "/pkg/apx-canary.js".into());
    rows
}

/// A body that would succeed if it reached the handler (`rev`: the current revision, or
/// [`STALE`] so that it cannot), for the row's route.
fn body(row: &Row, rev: u64) -> String {
    let p = row.path.as_str();
    if row.method == Method::GET {
        return String::new();
    }
    if row.route == rules::SERVER_FN {
        let f = p.trim_start_matches("/api/");
        return if f.starts_with("list_policies") {
            "query[q]=&query[state]=&query[sort]=&query[page]=1".into()
        } else if f.starts_with("policy_traffic") {
            "name=search-api&window=15m".into()
        } else if f.starts_with("uploaded_tenants") {
            "id=x".into()
        } else if f.starts_with("store_label") {
            String::new()
        } else {
            "name=search-api".into()
        };
    }
    if p.starts_with("/api/v1/") {
        return match row.route.as_str() {
            "/api/v1/tokens" => r#"{"name":"t2","role":"admin"}"#.into(),
            "/api/v1/policies" => r#"{"name":"new2","stable_version":"v1"}"#.into(),
            r if r.ends_with("/share") => r#"{"share":"7","reason":"r"}"#.into(),
            r if r.ends_with("/canary") => r#"{"version":"v3-attack","reason":"r"}"#.into(),
            r if r.ends_with("/plan") => r#"{"steps":"fast","at_end":"promote"}"#.into(),
            r if r.ends_with("/overrides/{tenant}") && row.method == Method::PUT => {
                r#"{"pin":"canary"}"#.into()
            }
            r if r.ends_with("/decisions") => r#"{"tenants":["acme"]}"#.into(),
            // A version nobody knows: a handler that runs answers with the real ones.
            r if r.ends_with("/outcomes") => {
                r#"{"outcomes":[{"version":"guess","status":200,"latency_ms":1}]}"#.into()
            }
            r if r.starts_with("/api/v1/policies/{name}") => r#"{"reason":"r"}"#.into(),
            _ => String::new(),
        };
    }
    match row.route.as_str() {
        "/signin" => "name=x&password=y".into(),
        "/setup" => "token=x".into(),
        "/admin/tokens" => "name=t1&role=admin".into(),
        "/policies" => "name=new1&stable_version=v1&reason=r".into(),
        "/policies/{name}/actions/{action}" => {
            format!("{}&steps=fast&at_end=promote", action_form(rev))
        }
        _ => String::new(),
    }
}

/// The fixture policy a concrete path names, if any.
fn policy_in(path: &str) -> Option<&'static str> {
    POLICIES
        .iter()
        .find(|p| path.split('/').any(|s| s == **p))
        .copied()
}

// ---------------------------------------------------------------------------------------------
// Spellings

struct Variant {
    kind: String,
    path: String,
    /// The same path spelt differently (decodes or normalises to the canonical path), as
    /// opposed to a different path (upper case, an extra segment, a matrix parameter).
    same: bool,
    /// Another method than the row's (HEAD for GET; the method in lower case).
    method: Option<Method>,
}

fn pct(b: u8, upper: bool) -> String {
    if upper {
        format!("%{b:02X}")
    } else {
        format!("%{b:02x}")
    }
}

fn variants(path: &str) -> Vec<Variant> {
    let segs: Vec<&str> = if path == "/" {
        vec![]
    } else {
        path.trim_start_matches('/').split('/').collect()
    };
    let join = |s: &[String]| format!("/{}", s.join("/"));
    let owned: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
    let with_seg = |i: usize, new: String| {
        let mut s = owned.clone();
        s[i] = new;
        join(&s)
    };
    let mut out: Vec<Variant> = Vec::new();
    let mut add = |kind: String, p: String, same: bool| {
        if p != path && !out.iter().any(|v| v.path == p) {
            out.push(Variant {
                kind,
                path: p,
                same,
                method: None,
            });
        }
    };
    add("trailing-slash".into(), format!("{path}/"), true);
    // Each slash of the path (position i: before segment i), and the end.
    let slashes: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
    for (n, &i) in slashes.iter().enumerate() {
        let (a, b) = path.split_at(i);
        add(format!("double-slash@{n}"), format!("{a}/{b}"), true);
        add(format!("dot@{n}"), format!("{a}/.{b}"), true);
        add(format!("dotdot@{n}"), format!("{a}/x/..{b}"), true);
        add(format!("pct-dot-lower@{n}"), format!("{a}/%2e{b}"), true);
        add(format!("pct-dot-upper@{n}"), format!("{a}/%2E{b}"), true);
        add(format!("pct-dotdot@{n}"), format!("{a}/x/%2e%2e{b}"), true);
        if i > 0 {
            // `%2F` is not `/` (reserved), so these are different paths; and `\` is no separator.
            add(
                format!("pct-slash-upper@{n}"),
                format!("{a}%2F{}", &b[1..]),
                false,
            );
            add(
                format!("pct-slash-lower@{n}"),
                format!("{a}%2f{}", &b[1..]),
                false,
            );
            add(format!("backslash@{n}"), format!("{a}\\{}", &b[1..]), false);
        }
    }
    add("double-slash@end".into(), format!("{path}//"), true);
    add(
        "dot@end".into(),
        format!("{}/.", path.trim_end_matches('/')),
        true,
    );
    add(
        "dotdot@end".into(),
        format!("{}/x/..", path.trim_end_matches('/')),
        true,
    );
    for (i, seg) in segs.iter().enumerate() {
        for upper in [true, false] {
            let case = if upper { "upper" } else { "lower" };
            let all: String = seg.bytes().map(|b| pct(b, upper)).collect();
            add(format!("pct-all-{case}@{i}"), with_seg(i, all), true);
            if let Some((at, c)) = seg.char_indices().find(|(_, c)| c.is_ascii_alphanumeric()) {
                let one = format!("{}{}{}", &seg[..at], pct(c as u8, upper), &seg[at + 1..]);
                add(format!("pct-first-{case}@{i}"), with_seg(i, one), true);
            }
            if seg.contains('-') {
                add(
                    format!("pct-dash-{case}@{i}"),
                    with_seg(i, seg.replace('-', &pct(b'-', upper))),
                    true,
                );
            }
        }
        add(
            format!("upper@{i}"),
            with_seg(i, seg.to_ascii_uppercase()),
            false,
        );
        add(
            format!("matrix@{i}"),
            with_seg(i, format!("{seg};x")),
            false,
        );
        if let Some((at, c)) = seg.char_indices().find(|(_, c)| c.is_ascii_alphanumeric()) {
            // Encoded twice: `%2564elete` is the path segment `%64elete`, not `delete`.
            let twice = format!("{}%25{:02X}{}", &seg[..at], c as u8, &seg[at + 1..]);
            add(format!("pct-twice@{i}"), with_seg(i, twice), false);
        }
        add(
            format!("nul-suffix@{i}"),
            with_seg(i, format!("{seg}%00")),
            false,
        );
        add(
            format!("space-suffix@{i}"),
            with_seg(i, format!("{seg}%20")),
            false,
        );
    }
    add(
        "extra-segment".into(),
        format!("{}/x", path.trim_end_matches('/')),
        false,
    );
    out
}

/// The row's path sent with another method: HEAD for GET (the same request without a body),
/// and the method in lower case (a different, unknown method).
fn method_variants(row: &Row) -> Vec<Variant> {
    let mut out = Vec::new();
    if row.method == Method::GET {
        out.push(Variant {
            kind: "method-head".into(),
            path: row.path.clone(),
            same: true,
            method: Some(Method::HEAD),
        });
    }
    let other = |m: Method| Variant {
        kind: format!("method-{}", m.as_str().to_ascii_lowercase()),
        path: row.path.clone(),
        same: false,
        method: Some(m),
    };
    // Another method on the same path: GET for a write, POST for a read; OPTIONS, PATCH.
    out.push(if row.method == Method::GET {
        Variant {
            kind: "method-swap".into(),
            ..other(Method::POST)
        }
    } else {
        Variant {
            kind: "method-swap".into(),
            ..other(Method::GET)
        }
    });
    out.push(other(Method::OPTIONS));
    out.push(other(Method::PATCH));
    out.push(Variant {
        kind: "method-lowercase".into(),
        path: row.path.clone(),
        same: false,
        method: Some(
            Method::from_bytes(row.method.as_str().to_ascii_lowercase().as_bytes()).unwrap(),
        ),
    });
    out
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// The variant kind without its position, for the tables.
fn family(kind: &str) -> &str {
    kind.split('@').next().unwrap_or(kind)
}

// ---------------------------------------------------------------------------------------------
// The specification, independently of the rule table: `Some(true)` allowed, `Some(false)`
// refused, `None` where the specification does not say.

/// A file the site serves (the tests' site root is `public/`).
fn is_static(path: &str) -> bool {
    std::path::Path::new(SITE_ROOT)
        .join(path.trim_start_matches('/'))
        .is_file()
}

const SITE_ROOT: &str = "../public";

fn spec(caller: &str, method: &Method, path: &str) -> Option<bool> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = *method == Method::GET;
    if segs[0] == "demo" {
        return None; // the demo service is not among the spec's open routes; the product opens it
    }
    let open = matches!(path, "/healthz" | "/metrics" | "/signin" | "/setup") || is_static(path);
    if open && get {
        return Some(true);
    }
    if open {
        return (caller == "nobody").then_some(true);
    }
    if caller == "admin" {
        return Some(true);
    }
    if caller == "nobody" {
        return Some(false);
    }
    let api_policy = (segs.len() >= 4 && segs[..3] == ["api", "v1", "policies"]).then(|| segs[3]);
    let tail: &[&str] = if api_policy.is_some() {
        &segs[4..]
    } else {
        &[]
    };
    let decision_api = api_policy.is_some()
        && matches!(
            (method.as_str(), tail),
            ("GET", ["decision"]) | ("POST", ["decisions"])
        );
    let outcomes = api_policy.is_some() && *method == Method::POST && tail == ["outcomes"];
    let covered = |p: &str| p.starts_with("payments-");
    if caller == "service" {
        if path == "/api/v1/session" {
            return None; // "only the decision API and outcomes", but it may ask who it is
        }
        return Some((decision_api || outcomes) && api_policy.is_some_and(covered));
    }
    let server_fn = segs[0] == "api" && segs.get(1) != Some(&"v1");
    let admin_area =
        segs[0] == "admin" || (segs.len() >= 3 && segs[..3] == ["api", "v1", "tokens"]);
    let form_action = segs.len() == 4 && segs[0] == "policies" && segs[2] == "actions";
    let delete_or_create = (api_policy.is_some() && *method == Method::DELETE && tail.is_empty())
        || (form_action && segs[3] == "delete")
        || (*method == Method::POST && (path == "/policies" || path == "/api/v1/policies"));
    let rollout = (api_policy.is_some() && !get && !tail.is_empty() && !decision_api && !outcomes)
        || (form_action && segs[3] != "delete");
    let target = api_policy.or(form_action.then(|| segs[1]));
    match caller {
        "foreign" => (!(get || decision_api || server_fn)).then_some(false),
        "viewer" | "operator" => {
            if admin_area {
                return (!get).then_some(false);
            }
            if get || decision_api || server_fn {
                return Some(true);
            }
            if delete_or_create {
                return Some(false);
            }
            if rollout {
                return Some(caller == "operator" && target.is_some_and(covered));
            }
            if outcomes && caller == "viewer" {
                return Some(false);
            }
            None // signing out, uploading a tenant file, operators' outcome reports
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix

struct Failure {
    check: &'static str,
    route: String,
    variant: String,
    caller: &'static str,
    uri: String,
    got: String,
    expected: String,
}

#[derive(Default)]
struct Tally {
    failures: Vec<Failure>,
    /// (the caller's verdict on the canonical path, variant family) → outcome → count.
    seen: BTreeMap<(String, String), BTreeMap<String, usize>>,
    /// Not failures, worth a look: (what, caller, route, variant family) → (count, example).
    notes: BTreeMap<(&'static str, &'static str, String, String), (usize, String)>,
    requests: usize,
}

fn failure(
    check: &'static str,
    row: &Row,
    variant: &str,
    caller: &'static str,
    uri: &str,
    got: String,
    expected: &str,
) -> Failure {
    Failure {
        check,
        route: row.label(),
        variant: variant.to_string(),
        caller,
        uri: uri.to_string(),
        got,
        expected: expected.to_string(),
    }
}

impl Tally {
    fn report(&self) -> String {
        let mut out = String::new();
        // Failures grouped by check, route, variant family and caller: a count and one example.
        let mut groups: BTreeMap<(&str, &str, &str, &str), Vec<&Failure>> = BTreeMap::new();
        for f in &self.failures {
            groups
                .entry((f.check, &f.route, family(&f.variant), f.caller))
                .or_default()
                .push(f);
        }
        out.push_str(&format!(
            "\n{} failures in {} groups ({} requests)\n",
            self.failures.len(),
            groups.len(),
            self.requests
        ));
        out.push_str(&format!(
            "{:<14} {:<44} {:<18} {:<9} {:>4}  {:<60} {:<36} expected\n",
            "check", "route", "variant", "caller", "n", "example", "got"
        ));
        for ((check, route, fam, caller), fs) in &groups {
            let f = fs[0];
            out.push_str(&format!(
                "{:<14} {:<44} {:<18} {:<9} {:>4}  {:<60} {:<36} {}\n",
                check,
                cut(route, 44),
                fam,
                caller,
                fs.len(),
                cut(&f.uri, 60),
                cut(&f.got, 36),
                f.expected
            ));
        }
        out
    }

    fn note(
        &mut self,
        what: &'static str,
        caller: &'static str,
        row: &Row,
        v: &Variant,
        example: String,
    ) {
        let e = self
            .notes
            .entry((what, caller, row.label(), family(&v.kind).to_string()))
            .or_insert((0, example));
        e.0 += 1;
    }

    fn notes(&self) -> String {
        let mut out = String::from("\nNotes (not failures):\n");
        for ((what, caller, route, fam), (n, example)) in &self.notes {
            out.push_str(&format!(
                "  {what:<22} {caller:<9} {:<44} {fam:<18} {n:>4}  {}\n",
                cut(route, 44),
                cut(example, 90)
            ));
        }
        out
    }

    fn table(&self) -> String {
        let mut out = String::from(
            "\nWhat the product does with each spelling (outcome counts; `refused`/`allowed` = the caller's verdict on the canonical path):\n",
        );
        for ((base, fam), outcomes) in &self.seen {
            let cells: Vec<String> = outcomes.iter().map(|(k, n)| format!("{k}×{n}")).collect();
            out.push_str(&format!("  {base:<8} {fam:<18} {}\n", cells.join("  ")));
        }
        out
    }
}

/// Sends `row` (spelt and sent as `v` says, if given) as `caller`, with a body that writes if
/// `live`; the reply, its class and the URI sent.
async fn attempt(
    w: &World,
    caller: &Caller,
    row: &Row,
    v: Option<&Variant>,
    live: bool,
) -> Result<(Reply, Class, String), String> {
    let path = v.map_or(row.path.as_str(), |v| v.path.as_str());
    let method = v
        .and_then(|v| v.method.clone())
        .unwrap_or(row.method.clone());
    let uri = with_query(path, &row.query);
    let rev = if live {
        let states = fixture_state(&*w.store).await;
        policy_in(&row.path).map_or(1, |p| w.revision(&states, p))
    } else {
        STALE
    };
    let who = if row.route == "/signout" {
        caller.fresh(&w.auth).await
    } else {
        caller.who.clone()
    };
    let if_match = (row.method != Method::GET).then_some(rev);
    let r = send(&w.app, &who, &method, &uri, &body(row, rev), if_match).await?;
    let class = classify(&r, &with_query(&row.path, &row.query));
    Ok((r, class, uri))
}

async fn run_caller(
    w: &World,
    caller: &Caller,
    rows: &[Row],
    tally: &mut Tally,
    check_effects: bool,
) {
    let baseline = fixture_state(&*w.store).await;
    for row in rows {
        // The canonical request, with a body that cannot write.
        let (r, class, uri) = attempt(w, caller, row, None, false).await.unwrap();
        tally.requests += 1;
        let guard_refused = matches!(class, Class::Guard(_));
        let refused = guard_refused || matches!(class, Class::Handler(_));
        let base = if refused { "refused" } else { "allowed" };
        if let Some(want) = spec(caller.label, &row.method, &row.path) {
            if (want && guard_refused) || (!want && !refused) {
                tally.failures.push(failure(
                    "spec",
                    row,
                    "canonical",
                    caller.label,
                    &uri,
                    format!("{} {}", class.short(), cut(&r.body, 20)),
                    if want { "ALLOWED" } else { "REFUSED" },
                ));
            }
        }
        if refused {
            if let Some(m) = w.marks.found_in(&r) {
                tally.failures.push(failure(
                    "marker",
                    row,
                    "canonical",
                    caller.label,
                    &uri,
                    m,
                    "no marker",
                ));
            }
        }
        // Another method on a path is only a variant where it is not a route of its own (GET
        // on a policy is its own row, with its own verdict).
        let own_row = |v: &Variant| {
            v.method.as_ref().is_some_and(|m| {
                rows.iter()
                    .any(|r| r.method == *m && r.path == v.path && *m != Method::HEAD)
            })
        };
        let spellings = variants(&row.path).into_iter().chain(method_variants(row));
        for v in spellings.filter(|v| !own_row(v)) {
            // A refused caller's attempt carries a body that would write.
            let (r, class, uri) = match attempt(w, caller, row, Some(&v), refused).await {
                Ok(x) => x,
                Err(e) => {
                    *tally
                        .seen
                        .entry((base.into(), family(&v.kind).into()))
                        .or_default()
                        .entry(format!("unsendable({})", cut(&e, 20)))
                        .or_default() += 1;
                    continue;
                }
            };
            tally.requests += 1;
            *tally
                .seen
                .entry((base.into(), family(&v.kind).into()))
                .or_default()
                .entry(class.kind())
                .or_default() += 1;
            let handler_error = r.status == StatusCode::SEE_OTHER && r.location.contains("error=");
            let example = format!(
                "{} {uri} → {} {}",
                v.method.as_ref().unwrap_or(&row.method),
                r.status.as_u16(),
                cut(
                    if r.location.is_empty() {
                        &r.body
                    } else {
                        &r.location
                    },
                    40
                )
            );
            if refused && !matches!(class, Class::Guard(_)) && class != Class::ToCanonical {
                tally.note(
                    "guard-passed(refused)",
                    caller.label,
                    row,
                    &v,
                    example.clone(),
                );
            }
            if !refused && v.same && class == Class::Allowed {
                tally.note(
                    "same-verdict(allowed)",
                    caller.label,
                    row,
                    &v,
                    example.clone(),
                );
            }
            if refused {
                let ok =
                    class.refused() || class == Class::ToCanonical || (!v.same && handler_error);
                if !ok {
                    tally.failures.push(failure(
                        "escalation",
                        row,
                        &v.kind,
                        caller.label,
                        &uri,
                        format!(
                            "{} {} {}",
                            r.status.as_u16(),
                            class.short(),
                            cut(&r.body, 20)
                        ),
                        "REFUSED or REDIRECT-CANONICAL",
                    ));
                }
                if let Some(m) = w.marks.found_in(&r) {
                    tally.failures.push(failure(
                        "marker",
                        row,
                        &v.kind,
                        caller.label,
                        &uri,
                        format!("{} contains {m}", r.status.as_u16()),
                        "no marker",
                    ));
                }
            }
            if caller.label == "foreign" {
                let acao = r
                    .headers
                    .get("access-control-allow-origin")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
                if acao.is_some() {
                    tally.failures.push(failure(
                        "cors",
                        row,
                        &v.kind,
                        caller.label,
                        &uri,
                        format!("access-control-allow-origin: {acao:?}"),
                        "no CORS grant to a foreign origin",
                    ));
                }
            }
            if v.same && matches!(class, Class::Elsewhere(_)) {
                tally.failures.push(failure(
                    "redirect",
                    row,
                    &v.kind,
                    caller.label,
                    &uri,
                    format!("{} {}", r.status.as_u16(), class.short()),
                    "Location = canonical path + query",
                ));
            }
            if check_effects && refused {
                let now = fixture_state(&*w.store).await;
                if now != baseline {
                    let changed: Vec<String> = now
                        .iter()
                        .filter(|s| !baseline.contains(s))
                        .map(|s| cut(s, 40))
                        .chain(
                            baseline
                                .iter()
                                .filter(|s| {
                                    !now.iter()
                                        .any(|n| n.split(' ').next() == s.split(' ').next())
                                })
                                .map(|s| format!("deleted {}", s.split(' ').next().unwrap_or(""))),
                        )
                        .collect();
                    tally.failures.push(failure(
                        "side-effect",
                        row,
                        &v.kind,
                        caller.label,
                        &uri,
                        format!("{} {}", r.status.as_u16(), changed.join("; ")),
                        "store unchanged",
                    ));
                    w.restore().await;
                }
            }
        }
    }
}

/// Every route × every spelling × every caller. Non-admin callers first, with writing bodies
/// where the canonical path refuses them (side effects are recorded and undone); the admin last,
/// with stale bodies only (its rows say what the product does, they assert no escalation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_every_route_as_every_caller() {
    the_matrix(world(true).await).await;
}

/// The same matrix with the policies, sessions and tokens in Firestore (the emulator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_every_route_as_every_caller_on_firestore() {
    the_matrix(firestore_world(true).await).await;
}

async fn the_matrix(w: World) {
    let started = Instant::now();
    let rows = rows();
    for (m, route, _, _) in rules::RULES {
        assert!(
            rows.iter().any(|r| r.route == *route
                && (*m == "ANY" || r.method == *m)
                && (*route == rules::SERVER_FN || route_matches(route, &r.path))),
            "{m} {route}: no concrete request"
        );
    }
    let baseline = fixture_state(&*w.store).await;
    let mut tally = Tally::default();
    for label in ["nobody", "viewer", "operator", "service", "foreign"] {
        let caller = Caller::make(&w.auth, label).await;
        let t = Instant::now();
        run_caller(&w, &caller, &rows, &mut tally, true).await;
        eprintln!("{label}: {:?}", t.elapsed());
    }
    let after = fixture_state(&*w.store).await;
    if after != baseline {
        tally.failures.push(Failure {
            check: "side-effect",
            route: "(whole run)".into(),
            variant: "-".into(),
            caller: "non-admin",
            uri: "-".into(),
            got: after.join("; "),
            expected: baseline.join("; "),
        });
    }
    let admin = Caller::make(&w.auth, "admin").await;
    let t = Instant::now();
    run_caller(&w, &admin, &rows, &mut tally, false).await;
    eprintln!("admin: {:?}", t.elapsed());
    eprintln!("{}", tally.table());
    eprintln!("{}", tally.notes());
    eprintln!(
        "{} rows, {} requests in {:?}",
        rows.len(),
        tally.requests,
        started.elapsed()
    );
    let report = tally.report();
    eprintln!("{report}");
    assert!(tally.failures.is_empty(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Named attacks

async fn operator(w: &World, patterns: &[&str]) -> Who {
    let (cookie, csrf) = server::testing::session(&w.auth, "otto", Role::Operator, patterns).await;
    Who::Session { cookie, csrf }
}

async fn revision_of(w: &World, policy: &str) -> Option<u64> {
    w.store
        .get(&PolicyName::new(policy).unwrap())
        .await
        .unwrap()
        .map(|c| c.revision)
}

fn action_form(rev: u64) -> String {
    format!("revision={rev}&reason=r&confirm=yes&share=6&version=v3-attack&tenant=acme&pin=canary")
}

/// `/metrics` lines about `policy` (decisions and served traffic carry its name).
async fn metrics_of(w: &World, policy: &str) -> Vec<String> {
    let r = send(&w.app, &Who::Nobody, &Method::GET, "/metrics", "", None)
        .await
        .unwrap();
    r.body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&format!("policy=\"{policy}\"")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_action_segment_cannot_delete_as_operator() {
    let w = world(false).await;
    let otto = operator(&w, &["payments-*"]).await;
    let mut problems = Vec::new();
    for action in [
        "%64elete",
        "%64%65%6C%65%74%65",
        "%64%65%6c%65%74%65",
        "delet%65",
        "de%6Cete",
    ] {
        let rev = revision_of(&w, "payments-api")
            .await
            .expect("payments-api exists");
        let path = format!("/policies/payments-api/actions/{action}");
        let r = send(&w.app, &otto, &Method::POST, &path, &action_form(rev), None)
            .await
            .unwrap();
        let class = classify(&r, "/policies/payments-api/actions/delete");
        let after = revision_of(&w, "payments-api").await;
        if after != Some(rev) || !(class.refused() || class == Class::ToCanonical) {
            problems.push(format!(
                "{path}: {} {} {}; payments-api now {after:?} (was revision {rev})",
                r.status,
                class.short(),
                r.location
            ));
            if after.is_none() {
                w.restore().await;
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_slash_policy_page_is_not_served_to_nobody() {
    let w = world(false).await;
    let mut problems = Vec::new();
    for (uri, canonical) in [
        ("/policies/search-api/", "/policies/search-api"),
        (
            "/policies/search-api/simulate/?tenants=a",
            "/policies/search-api/simulate?tenants=a",
        ),
        ("/policies/search-api//", "/policies/search-api"),
        ("/policies//search-api", "/policies/search-api"),
        ("/policies/search-api/.", "/policies/search-api"),
    ] {
        let r = send(&w.app, &Who::Nobody, &Method::GET, uri, "", None)
            .await
            .unwrap();
        let class = classify(&r, canonical);
        let marker = w.marks.found_in(&r);
        if marker.is_some() || !(class.refused() || class == Class::ToCanonical) {
            problems.push(format!(
                "{uri}: {} {} marker={marker:?} {}",
                r.status,
                class.short(),
                cut(&r.body, 80)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_service_token_cannot_report_outcomes_for_another_policy() {
    let w = world(false).await;
    let svc =
        Who::Bearer(server::testing::token(&w.auth, "svc", Role::Service, &["payments-*"]).await);
    let outcome = |policy: &str| {
        format!(
            r#"{{"outcomes":[{{"version":"{}","status":500,"latency_ms":3}}]}}"#,
            w.marks.versions[policy].0
        )
    };
    let mut problems = Vec::new();
    // The control: its own policy's outcome is recorded, and /metrics shows it.
    let before_own = metrics_of(&w, "payments-api").await;
    let own = send(
        &w.app,
        &svc,
        &Method::POST,
        "/api/v1/policies/payments-api/outcomes",
        &outcome("payments-api"),
        None,
    )
    .await
    .unwrap();
    let observable = metrics_of(&w, "payments-api").await != before_own;
    eprintln!(
        "control: payments-api outcomes {} (visible in /metrics: {observable})",
        own.status
    );
    let before = metrics_of(&w, "search-api").await;
    for uri in [
        "/api/v1/policies/search-api/outcomes",
        "/api/v1/policies/search%2Dapi/outcomes",
        "/api/v1/policies/%73earch-api/outcomes",
        "/api/v1/policies/search-api/outcomes/",
        "/api/v1//policies/search-api/outcomes",
        "/api/v1/policies/payments-api/../search-api/outcomes",
        "/api/v1/policies/payments-api%2F..%2Fsearch-api/outcomes",
    ] {
        let r = send(
            &w.app,
            &svc,
            &Method::POST,
            uri,
            &outcome("search-api"),
            None,
        )
        .await
        .unwrap();
        let exact = uri == "/api/v1/policies/search-api/outcomes";
        let ok = if exact {
            r.status == StatusCode::FORBIDDEN
        } else {
            let c = classify(&r, "/api/v1/policies/search-api/outcomes");
            c.refused() || c == Class::ToCanonical
        };
        if !ok || w.marks.found_in(&r).is_some() {
            problems.push(format!("{uri}: {} {}", r.status, cut(&r.body, 100)));
        }
    }
    let after = metrics_of(&w, "search-api").await;
    if after != before {
        problems.push(format!(
            "search-api's metrics moved: {before:?} → {after:?}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_service_token_cannot_ask_decisions_for_another_policy() {
    let w = world(false).await;
    let svc =
        Who::Bearer(server::testing::token(&w.auth, "svc", Role::Service, &["payments-*"]).await);
    let mut problems = Vec::new();
    let own = send(
        &w.app,
        &svc,
        &Method::GET,
        "/api/v1/policies/payments-api/decision?tenant=acme",
        "",
        None,
    )
    .await
    .unwrap();
    assert_eq!(own.status, StatusCode::OK, "the control: {}", own.body);
    let before = metrics_of(&w, "search-api").await;
    let names = [
        "search-api",
        "search%2Dapi",
        "search%2dapi",
        "%73earch-api",
        "%73%65%61%72%63%68%2D%61%70%69",
    ];
    for name in names {
        for (method, uri, body) in [
            (
                Method::GET,
                format!("/api/v1/policies/{name}/decision?tenant={}", w.marks.tenant),
                String::new(),
            ),
            (
                Method::POST,
                format!("/api/v1/policies/{name}/decisions"),
                format!(r#"{{"tenants":["acme","{}"]}}"#, w.marks.tenant),
            ),
            (
                Method::GET,
                format!("/api/v1/policies/{name}/decision/?tenant=acme"),
                String::new(),
            ),
        ] {
            let r = send(&w.app, &svc, &method, &uri, &body, None)
                .await
                .unwrap();
            let leaked = w.marks.versions["search-api"].0.as_str();
            let canary = w.marks.versions["search-api"].1.as_str();
            let exact = name == "search-api" && !uri.contains("decision/");
            let c = classify(&r, "-");
            let ok = if exact {
                r.status == StatusCode::FORBIDDEN
            } else {
                c.refused() || matches!(c, Class::Elsewhere(_))
            };
            if !ok || r.body.contains(leaked) || r.body.contains(canary) {
                problems.push(format!(
                    "{method} {uri}: {} {}",
                    r.status,
                    cut(&r.body, 100)
                ));
            }
        }
    }
    let after = metrics_of(&w, "search-api").await;
    if after != before {
        problems.push(format!(
            "search-api's decision counts moved: {before:?} → {after:?}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_policy_name_does_not_match_another_pattern() {
    let w = world(false).await;
    let mut problems = Vec::new();
    // (grant, spelling of the name, the policy it decodes to, whether the grant covers that
    // policy): a spelling is refused or acts on what it decodes to, and only if that is granted.
    let cases: &[(&[&str], &str, &str, bool)] = &[
        (&["payments-*"], "search%2Dapi", "search-api", false),
        (&["payments-*"], "search%2dapi", "search-api", false),
        (&["payments-*"], "%73earch-api", "search-api", false),
        (
            &["payments-*"],
            "payments-api%2F..%2Fsearch-api",
            "search-api",
            false,
        ),
        // Grants that match the encoded spelling only, before decoding.
        (&["payments%2D*"], "payments%2Dapi", "payments-api", false),
        (&["payments%2d*"], "payments%2dapi", "payments-api", false),
        (&["*%2Dapi"], "search%2Dapi", "search-api", false),
        (&["payments%2Dapi"], "payments%2Dapi", "payments-api", false),
        // A grant that matches after decoding: acting on payments-api is fine, nothing else.
        (&["payments-api"], "payments%2Dapi", "payments-api", true),
    ];
    for (grant, name, decoded, covered) in cases {
        let who = operator(&w, grant).await;
        let token =
            Who::Bearer(server::testing::token(&w.auth, "op-bot", Role::Operator, grant).await);
        for (who, method, path) in [
            (
                &who,
                Method::POST,
                format!("/policies/{name}/actions/share"),
            ),
            (&who, Method::PUT, format!("/api/v1/policies/{name}/share")),
            (
                &token,
                Method::PUT,
                format!("/api/v1/policies/{name}/share"),
            ),
            (
                &token,
                Method::POST,
                format!("/api/v1/policies/{name}/rollback"),
            ),
        ] {
            let before = fixture_state(&*w.store).await;
            let rev = revision_of(&w, decoded).await.unwrap();
            let body = if method == Method::PUT {
                r#"{"share":"7","reason":"r"}"#.to_string()
            } else if path.starts_with("/api/") {
                r#"{"reason":"r"}"#.to_string()
            } else {
                action_form(rev)
            };
            let r = send(&w.app, who, &method, &path, &body, Some(rev))
                .await
                .unwrap();
            let after = fixture_state(&*w.store).await;
            let touched: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
            let only_decoded = touched
                .iter()
                .all(|s| s.starts_with(&format!("{decoded} ")));
            let class = classify(&r, "-");
            // A form handler's own refusal (303 back with `?error=`) writes nothing: fine.
            let handler_error = r.status == StatusCode::SEE_OTHER && r.location.contains("error=");
            let bad = if *covered {
                !only_decoded
            } else {
                !touched.is_empty() || (class == Class::Allowed && !handler_error)
            };
            if bad {
                problems.push(format!(
                    "grant {grant:?} {method} {path}: {} {} {}; changed {touched:?}",
                    r.status,
                    class.short(),
                    r.location
                ));
            }
            if !touched.is_empty() {
                w.restore().await;
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The harness itself: a write is seen and undone, and the writing bodies would write.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_sees_a_write_and_undoes_it() {
    let w = world(false).await;
    let baseline = fixture_state(&*w.store).await;
    let ada = Caller::make(&w.auth, "admin").await;
    let row = Row {
        method: Method::POST,
        route: "/policies/{name}/actions/{action}".into(),
        path: "/policies/payments-api/actions/delete".into(),
        query: String::new(),
    };
    let (r, class, _) = attempt(&w, &ada, &row, None, true).await.unwrap();
    assert_eq!((r.status, class), (StatusCode::SEE_OTHER, Class::Allowed));
    assert_ne!(
        fixture_state(&*w.store).await,
        baseline,
        "the delete is seen"
    );
    w.restore().await;
    assert_eq!(fixture_state(&*w.store).await, baseline, "and undone");
    let back = send(
        &w.app,
        &Who::Bearer(w.admin_token.clone()),
        &Method::GET,
        "/api/v1/policies/payments-api",
        "",
        None,
    )
    .await
    .unwrap();
    assert!(back.body.contains(&w.marks.versions["payments-api"].0));
    // Each marker is visible to an admin (so its absence elsewhere means something).
    let admin = Who::Bearer(w.admin_token.clone());
    for (uri, mark) in [
        ("/api/v1/tokens", &w.marks.token),
        ("/api/v1/policies/search-api", &w.marks.tenant),
        (
            "/api/v1/policies/search-api",
            &w.marks.versions["search-api"].1,
        ),
    ] {
        let r = send(&w.app, &admin, &Method::GET, uri, "", None)
            .await
            .unwrap();
        assert!(r.body.contains(mark.as_str()), "{uri}: {}", r.body);
    }
}

/// Each writing row's body, sent as an admin with the current revision: the writes the matrix
/// relies on (a leaked one would show as a side effect) really write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_bodies_would_write_for_a_caller_allowed_to() {
    let w = world(false).await;
    let ada = Caller::make(&w.auth, "admin").await;
    let mut wrote = Vec::new();
    let mut not = Vec::new();
    for row in rows() {
        if row.method == Method::GET || row.route.starts_with("/demo") || row.route == "/signout" {
            continue;
        }
        let before = fixture_state(&*w.store).await;
        let (r, _, uri) = attempt(&w, &ada, &row, None, true).await.unwrap();
        let changed = fixture_state(&*w.store).await != before;
        let line = format!(
            "{} {uri} → {} {}",
            row.method,
            r.status.as_u16(),
            cut(&r.location, 50)
        );
        if changed {
            wrote.push(line);
            w.restore().await;
        } else {
            not.push(line);
        }
    }
    eprintln!("writes the store:\n  {}", wrote.join("\n  "));
    eprintln!(
        "does not (reads, other state, or refused for its own reasons):\n  {}",
        not.join("\n  ")
    );
    for must in [
        "POST /policies?",
        "POST /policies/payments-api/actions/share",
        "POST /policies/payments-api/actions/delete",
        "POST /policies/payments-api/actions/pin",
        "POST /policies/payments-api/actions/promote",
        "POST /policies/search-api/actions/rollback",
        "POST /api/v1/policies ",
        "PUT /api/v1/policies/search-api/share",
        "DELETE /api/v1/policies/search-api ",
        "PUT /api/v1/policies/payments-api/overrides/acme",
        "POST /api/v1/policies/payments-api/promote",
    ] {
        let must = must.trim_end_matches('?');
        assert!(
            wrote.iter().any(|l| l.starts_with(must)),
            "{must}: the matrix's body for it writes nothing"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Browser sessions: the Origin and CSRF checks in disguise

/// A write as an admin's browser session with the given extra headers; whether the store
/// changed (the change is undone).
async fn admin_write(
    w: &World,
    cookie: &str,
    headers: &[(&str, String)],
    mode: Mode,
) -> (StatusCode, Option<String>, bool) {
    let before = fixture_state(&*w.store).await;
    let rev = revision_of(w, "payments-api").await.unwrap();
    let (uri, method, body, content) = match mode {
        Mode::Form => (
            "/policies/payments-api/actions/share",
            Method::POST,
            action_form(rev),
            "application/x-www-form-urlencoded",
        ),
        Mode::Json => (
            "/api/v1/policies/payments-api/share",
            Method::PUT,
            r#"{"share":"9","reason":"r"}"#.to_string(),
            "application/json",
        ),
        // What a foreign page can send without a preflight: POST with a text/plain body.
        Mode::Plain => (
            "/api/v1/policies/payments-api/rollback",
            Method::POST,
            r#"{"reason":"r"}"#.to_string(),
            "text/plain",
        ),
    };
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, cookie)
        .header(header::IF_MATCH, format!("\"{rev}\""))
        .header(header::CONTENT_TYPE, content);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = w
        .app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let denied = res
        .headers()
        .get(DENIED_HEADER)
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let status = res.status();
    let changed = fixture_state(&*w.store).await != before;
    if changed {
        w.restore().await;
    }
    (status, denied, changed)
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Form,
    Json,
    Plain,
}

const MODES: [Mode; 3] = [Mode::Form, Mode::Json, Mode::Plain];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_writes_are_refused_in_every_disguise() {
    let w = world(false).await;
    let (cookie, csrf) = server::testing::session(&w.auth, "ada", Role::Admin, &[]).await;
    let (_, viewer_csrf) = server::testing::session(&w.auth, "vera", Role::Viewer, &[]).await;
    let viewer_token = server::testing::token(&w.auth, "view-bot", Role::Viewer, &[]).await;
    let service_token =
        server::testing::token(&w.auth, "svc", Role::Service, &["payments-*"]).await;
    // The control: same origin with the session's own token writes.
    let ok = [
        ("origin", "http://localhost".to_string()),
        ("sec-fetch-site", "same-origin".to_string()),
        ("x-csrf-token", csrf.clone()),
    ];
    for mode in MODES {
        let (status, denied, changed) = admin_write(&w, &cookie, &ok, mode).await;
        assert!(
            changed,
            "the control writes ({mode:?}): {status} {denied:?}"
        );
    }
    let evil = || {
        vec![
            ("origin", "https://evil.example".to_string()),
            ("sec-fetch-site", "cross-site".to_string()),
        ]
    };
    let with = |mut h: Vec<(&'static str, String)>, k: &'static str, v: String| {
        h.push((k, v));
        h
    };
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("foreign origin, no token", evil()),
        (
            "foreign origin, the session's own token",
            with(evil(), "x-csrf-token", csrf.clone()),
        ),
        (
            "Origin: null",
            vec![("origin", "null".into()), ("x-csrf-token", csrf.clone())],
        ),
        (
            "a look-alike Origin",
            vec![
                ("origin", "http://localhost.evil.example".into()),
                ("x-csrf-token", csrf.clone()),
            ],
        ),
        (
            "another port",
            vec![
                ("origin", "http://localhost:8666".into()),
                ("x-csrf-token", csrf.clone()),
            ],
        ),
        (
            "no Origin, cross-site fetch",
            vec![
                ("sec-fetch-site", "cross-site".into()),
                ("x-csrf-token", csrf.clone()),
            ],
        ),
        (
            "same-site (a sibling subdomain)",
            vec![
                ("origin", "http://localhost".into()),
                ("sec-fetch-site", "same-site".into()),
                ("x-csrf-token", csrf.clone()),
            ],
        ),
        (
            "another session's CSRF token",
            vec![
                ("origin", "http://localhost".into()),
                ("sec-fetch-site", "same-origin".into()),
                ("x-csrf-token", viewer_csrf.clone()),
            ],
        ),
        (
            "an invalid bearer token beside the cookie",
            with(evil(), "authorization", "Bearer nope".into()),
        ),
        (
            "an empty bearer beside the cookie",
            with(evil(), "authorization", "Bearer ".into()),
        ),
        (
            "Basic credentials beside the cookie",
            with(evil(), "authorization", "Basic YTpi".into()),
        ),
        (
            "a viewer's token beside the cookie",
            with(evil(), "authorization", format!("Bearer {viewer_token}")),
        ),
        (
            "a service token beside the cookie",
            with(evil(), "authorization", format!("Bearer {service_token}")),
        ),
    ];
    let mut problems = Vec::new();
    for (what, headers) in &cases {
        for mode in MODES {
            let (status, denied, changed) = admin_write(&w, &cookie, headers, mode).await;
            if changed || denied.is_none() {
                problems.push(format!(
                    "{what} ({mode:?}): {status} denied={denied:?} wrote={changed}"
                ));
            }
        }
    }
    // The token may also come in the form: another session's is no better there.
    let rev = revision_of(&w, "payments-api").await.unwrap();
    let req = Request::post("/policies/payments-api/actions/share")
        .header(header::HOST, "localhost")
        .header(header::ORIGIN, "http://localhost")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "{}&csrf={viewer_csrf}",
            action_form(rev)
        )))
        .unwrap();
    let r = w.app.clone().oneshot(req).await.unwrap();
    if revision_of(&w, "payments-api").await != Some(rev)
        || r.headers().get(DENIED_HEADER).is_none()
    {
        problems.push(format!(
            "another session's token in the form: {}",
            r.status()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The demo service is open to anybody: it must not let anonymous traffic into a real
/// policy's numbers (a plan's verdict reads them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_demo_traffic_cannot_steer_a_real_policy() {
    let w = world(true).await;
    let before = metrics_of(&w, "search-api").await;
    let mut problems = Vec::new();
    for uri in [
        "/demo/search-api?canary_error_rate=1",
        "/demo/search-api/orders/7?canary_error_rate=1",
        "/demo/search%2Dapi?canary_error_rate=1",
        "/demo/demo-x/../search-api?canary_error_rate=1",
    ] {
        for method in [Method::GET, Method::POST] {
            for tenant in ["acme", w.marks.tenant.as_str()] {
                let req = Request::builder()
                    .method(method.clone())
                    .uri(uri)
                    .header(header::HOST, "localhost")
                    .header("x-tenant-id", tenant)
                    .body(Body::empty())
                    .unwrap();
                let res = w.app.clone().oneshot(req).await.unwrap();
                let status = res.status();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8_lossy(&body);
                if w.marks.all().iter().any(|m| body.contains(m)) {
                    problems.push(format!(
                        "{method} {uri}: {status} shows a planted version: {body}"
                    ));
                }
            }
        }
    }
    let after = metrics_of(&w, "search-api").await;
    if after != before {
        problems.push(format!(
            "search-api's numbers moved: {before:?} → {after:?}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Identity headers that a proxy in front would set (IAP's, and the usual forwarded-user ones)
/// prove nothing when they come from the caller: IAP is off here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_from_the_caller_are_not_trusted() {
    let w = world(false).await;
    let forged: &[(&str, &str)] = &[
        (
            "x-goog-iap-jwt-assertion",
            "eyJhbGciOiJub25lIn0.eyJlbWFpbCI6ImFkYUBleGFtcGxlLmNvbSJ9.",
        ),
        (
            "x-goog-authenticated-user-email",
            "accounts.google.com:ada@example.com",
        ),
        ("x-goog-authenticated-user-id", "accounts.google.com:1"),
        ("x-forwarded-user", "ada"),
        ("x-forwarded-email", "ada@example.com"),
        ("x-remote-user", "ada"),
        ("remote-user", "ada"),
        ("x-auth-request-user", "ada"),
        ("x-actor", "ada"),
    ];
    let mut problems = Vec::new();
    for (method, uri, body) in [
        (Method::GET, "/api/v1/policies", ""),
        (Method::GET, "/policies/search-api", ""),
        (
            Method::PUT,
            "/api/v1/policies/search-api/share",
            r#"{"share":"9","reason":"r"}"#,
        ),
        (Method::POST, "/api/v1/policies/search-api/rollback", ""),
    ] {
        let before = fixture_state(&*w.store).await;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, "http://localhost")
            .header("sec-fetch-site", "same-origin")
            .header(header::IF_MATCH, "\"2\"")
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in forged {
            req = req.header(*k, *v);
        }
        let r = w
            .app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let denied = r.headers().get(DENIED_HEADER).is_some();
        let text = r.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&text);
        let leaked = w.marks.all().iter().any(|m| text.contains(m));
        let changed = fixture_state(&*w.store).await != before;
        if !denied || leaked || changed {
            problems.push(format!(
                "{method} {uri}: {status} denied={denied} leaked={leaked} wrote={changed}"
            ));
        }
        if changed {
            w.restore().await;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The matrix against a planted hole: a layer in front that, for a trailing-slash spelling,
/// strips the slash and sends the request on with an admin's session. The matrix must report
/// the escalation, the leaked markers and the write (and undo it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_catches_a_planted_bypass() {
    let mut w = world(false).await;
    let (cookie, csrf) = server::testing::session(&w.auth, "ada", Role::Admin, &[]).await;
    let hole = move |mut req: axum::extract::Request, next: axum::middleware::Next| {
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        async move {
            let path = req.uri().path().to_string();
            if path.len() > 1 && path.ends_with('/') {
                let q = req
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                *req.uri_mut() = format!("{}{q}", path.trim_end_matches('/'))
                    .parse()
                    .unwrap();
                let h = req.headers_mut();
                h.insert(header::COOKIE, cookie.parse().unwrap());
                h.insert("x-csrf-token", csrf.parse().unwrap());
                h.insert(header::ORIGIN, "http://localhost".parse().unwrap());
                h.insert("sec-fetch-site", "same-origin".parse().unwrap());
            }
            next.run(req).await
        }
    };
    // In front of the product's router (so its routing sees the rewritten request).
    w.app = Router::new()
        .fallback_service(w.app.clone())
        .layer(axum::middleware::from_fn(hole));
    let rows: Vec<Row> = rows()
        .into_iter()
        .filter(|r| {
            (r.method == Method::GET && r.route == "/policies/{name}")
                || (r.method == Method::PUT && r.route == "/api/v1/policies/{name}/share")
        })
        .collect();
    let nobody = Caller::make(&w.auth, "nobody").await;
    let mut tally = Tally::default();
    let baseline = fixture_state(&*w.store).await;
    run_caller(&w, &nobody, &rows, &mut tally, true).await;
    let found = |check: &str| {
        tally
            .failures
            .iter()
            .filter(|f| f.check == check && f.variant == "trailing-slash")
            .count()
    };
    assert_eq!(
        (found("escalation"), found("marker"), found("side-effect")),
        (4, 4, 2),
        "{}",
        tally.report()
    );
    assert!(
        tally
            .failures
            .iter()
            .all(|f| f.variant == "trailing-slash" || f.variant == "double-slash@end"),
        "only the planted hole: {}",
        tally.report()
    );
    assert_eq!(
        fixture_state(&*w.store).await,
        baseline,
        "the write was undone"
    );
}
