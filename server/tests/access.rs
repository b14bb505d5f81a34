//! Access end to end, in-process: the role × route matrix (every rule in
//! `server::auth::rules::RULES` has a row, and every cell is checked), CSRF and Origin refusals
//! that write nothing, sign-in with its rate limit, the one-time setup link, sessions and
//! token revocation across two replicas on one Firestore project, expiry, security headers,
//! and the audit trail naming the authenticated principal.

use app::access::{Principal, Role, SignIn};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use server::auth::records::{self, Account, SessionLimits};
use server::auth::{credentials, rules, Auth, DENIED_HEADER};
use splitter::store::embedded::EmbeddedStore;
use splitter::store::firestore::FirestoreStore;
use splitter::store::{PolicyStore, Store};
use splitter::{Actor, NewPolicy, Operation, PolicyName, Version};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Who calls: nobody, a session per role (cookie + CSRF token), or a service token.
#[derive(Clone)]
enum As {
    Nobody,
    Session { cookie: String, csrf: String },
    Bearer(String),
}

struct Reply {
    status: StatusCode,
    denied: Option<String>,
    location: String,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(app: &Router, who: &As, method: &str, uri: &str, body: &str) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "localhost")
        .header(header::ORIGIN, "http://localhost");
    let content = if body.starts_with('{') {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    req = req.header(header::CONTENT_TYPE, content);
    match who {
        As::Nobody => {}
        As::Session { cookie, csrf } => {
            req = req
                .header(header::COOKIE, cookie)
                .header("x-csrf-token", csrf);
        }
        As::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
    }
    if matches!(method, "PUT" | "POST" | "DELETE") && uri.starts_with("/api/v1/policies/") {
        req = req.header(header::IF_MATCH, "\"1\"");
    }
    send(app, req.body(Body::from(body.to_string())).unwrap()).await
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let headers = res.headers().clone();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, denied, location) = (res.status(), h(DENIED_HEADER), h("location"));
    // A server-sent-event stream never ends: its headers say enough.
    let streaming = h("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
    let body = if streaming {
        String::new()
    } else {
        String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).to_string()
    };
    Reply {
        status,
        denied,
        location: location.unwrap_or_default(),
        headers,
        body,
    }
}

async fn create(store: &dyn Store, name: &str) {
    store
        .execute(&splitter::Request {
            policy: PolicyName::new(name).unwrap(),
            expected_revision: None,
            operation: Operation::Create(NewPolicy {
                stable_version: Version::new("v1").unwrap(),
                canary_version: Some(Version::new("v2").unwrap()),
                share: splitter::BasisPoints::new(500).unwrap(),
                salt: None,
            }),
            actor: Actor::new("setup").unwrap(),
            reason: String::new(),
        })
        .await
        .unwrap();
}

async fn embedded_app(demo: bool) -> (Router, Arc<Auth>, Arc<EmbeddedStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap());
    create(&*store, "payments-api").await;
    create(&*store, "search-api").await;
    let (app, auth) = server::testing::router(store.clone(), Default::default(), demo).await;
    (app, auth, store, dir)
}

async fn session(auth: &Auth, name: &str, role: Role, policies: &[&str]) -> As {
    let (cookie, csrf) = server::testing::session(auth, name, role, policies).await;
    As::Session { cookie, csrf }
}

/// One row: method, URI, body, and the expected cell for
/// [nobody, viewer, operator limited to `payments-*`, admin, service token]:
/// `A` the guard lets it through, `U` unauthenticated, `F` forbidden.
const MATRIX: &[(&str, &str, &str, &str)] = &[
    ("GET", "/healthz", "", "AAAAA"),
    ("GET", "/metrics", "", "AAAAA"),
    ("GET", "/signin", "", "AAAAA"),
    ("POST", "/signin", "name=x&password=y", "AAAAA"),
    ("GET", "/setup", "", "AAAAA"),
    ("POST", "/setup", "token=x", "AAAAA"),
    ("GET", "/demo/payments-api", "", "AAAAA"),
    ("POST", "/demo/payments-api/orders/7", "", "AAAAA"),
    ("GET", "/", "", "UAAAF"),
    ("GET", "/policies/new", "", "UAAAF"),
    ("GET", "/policies/payments-api", "", "UAAAF"),
    ("GET", "/policies/payments-api/simulate", "", "UAAAF"),
    ("POST", "SERVER_FN", "name=payments-api", "UAAAF"),
    ("GET", "/admin/tokens", "", "UFFAF"),
    ("POST", "/admin/tokens", "name=t1&role=viewer", "UFFAF"),
    ("POST", "/admin/tokens/0000/revoke", "", "UFFAF"),
    (
        "POST",
        "/policies",
        "name=new1&stable_version=v1&reason=r",
        "UFFAF",
    ),
    (
        "POST",
        "/policies/payments-api/actions/share",
        "revision=1&reason=r&confirm=yes&share=6",
        "UFAAF",
    ),
    (
        "POST",
        "/policies/search-api/actions/share",
        "revision=1&reason=r&confirm=yes&share=6",
        "UFFAF",
    ),
    (
        "POST",
        "/policies/payments-api/actions/delete",
        "revision=9&reason=r&confirm=yes",
        "UFFAF",
    ),
    (
        "POST",
        "/policies/payments-api/simulate/upload",
        "",
        "UAAAF",
    ),
    ("GET", "/api/v1/session", "", "UAAAA"),
    ("GET", "/api/v1/tokens", "", "UFFAF"),
    (
        "POST",
        "/api/v1/tokens",
        r#"{"name":"t2","role":"viewer"}"#,
        "UFFAF",
    ),
    ("DELETE", "/api/v1/tokens/0000", "", "UFFAF"),
    ("GET", "/api/v1/policies", "", "UAAAF"),
    (
        "POST",
        "/api/v1/policies",
        r#"{"name":"new2","stable_version":"v1"}"#,
        "UFFAF",
    ),
    ("GET", "/api/v1/policies/payments-api", "", "UAAAF"),
    ("DELETE", "/api/v1/policies/search-api", "", "UFFAF"),
    ("GET", "/api/v1/policies/payments-api/events", "", "UAAAF"),
    (
        "PUT",
        "/api/v1/policies/payments-api/share",
        r#"{"share":"7"}"#,
        "UFAAF",
    ),
    (
        "PUT",
        "/api/v1/policies/search-api/share",
        r#"{"share":"7"}"#,
        "UFFAF",
    ),
    (
        "PUT",
        "/api/v1/policies/payments-api/canary",
        r#"{"version":"v3"}"#,
        "UFAAF",
    ),
    ("POST", "/api/v1/policies/payments-api/promote", "", "UFAAF"),
    ("POST", "/api/v1/policies/search-api/rollback", "", "UFFAF"),
    (
        "POST",
        "/api/v1/policies/payments-api/rollback",
        "",
        "UFAAF",
    ),
    (
        "POST",
        "/api/v1/policies/payments-api/plan",
        r#"{"steps":"fast","at_end":"promote"}"#,
        "UFAAF",
    ),
    (
        "POST",
        "/api/v1/policies/search-api/plan",
        r#"{"steps":"fast","at_end":"promote"}"#,
        "UFFAF",
    ),
    (
        "POST",
        "/api/v1/policies/payments-api/plan/pause",
        "",
        "UFAAF",
    ),
    (
        "POST",
        "/api/v1/policies/payments-api/plan/resume",
        "",
        "UFAAF",
    ),
    (
        "POST",
        "/api/v1/policies/payments-api/plan/skip",
        "",
        "UFAAF",
    ),
    (
        "POST",
        "/api/v1/policies/search-api/plan/abort",
        "",
        "UFFAF",
    ),
    (
        "POST",
        "/api/v1/policies/payments-api/plan/abort",
        "",
        "UFAAF",
    ),
    (
        "PUT",
        "/api/v1/policies/payments-api/overrides/acme",
        r#"{"pin":"canary"}"#,
        "UFAAF",
    ),
    (
        "DELETE",
        "/api/v1/policies/payments-api/overrides/acme",
        "",
        "UFAAF",
    ),
    (
        "GET",
        "/api/v1/policies/payments-api/decision?tenant=acme",
        "",
        "UAAAA",
    ),
    (
        "POST",
        "/api/v1/policies/payments-api/decisions",
        r#"{"tenants":["a"]}"#,
        "UAAAA",
    ),
    (
        "POST",
        "/api/v1/policies/payments-api/outcomes",
        r#"{"outcomes":[]}"#,
        "UFAAA",
    ),
    ("GET", "/api/v1/changes", "", "UAAAF"),
    // Last: it ends the sessions.
    ("POST", "/signout", "", "UAAAF"),
];

/// The concrete URI of a server function (`/api/<fn><hash>`).
fn server_fn_uri(name: &str) -> String {
    leptos::server_fn::axum::server_fn_paths()
        .map(|(p, _)| p)
        .find(|p| p.starts_with(name))
        .unwrap_or_else(|| panic!("no server function under {name}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_by_route_matrix() {
    // Every rule has a row (a new route with a rule but no row fails here).
    for (method, route, _, _) in rules::RULES {
        let covered = MATRIX.iter().any(|(m, uri, _, _)| {
            let uri = match *uri {
                "SERVER_FN" => rules::SERVER_FN,
                u => u,
            };
            (*m == *method || *method == "ANY") && route_matches(route, uri)
        });
        assert!(
            covered,
            "{method} {route} has no row in the role × route matrix"
        );
    }
    let (app, auth, _store, _dir) = embedded_app(true).await;
    let callers = [
        As::Nobody,
        session(&auth, "vera", Role::Viewer, &[]).await,
        session(&auth, "otto", Role::Operator, &["payments-*"]).await,
        session(&auth, "ada", Role::Admin, &[]).await,
        As::Bearer(server::testing::token(&auth, "svc", Role::Service, &[]).await),
    ];
    let mut failures = Vec::new();
    for (method, uri, body, expected) in MATRIX {
        let uri = match *uri {
            "SERVER_FN" => server_fn_uri("/api/get_policy"),
            u => u.to_string(),
        };
        for (who, want) in callers.iter().zip(expected.chars()) {
            let r = call(&app, who, method, &uri, body).await;
            let got = match r.denied.as_deref() {
                None => 'A',
                Some("unauthenticated") => 'U',
                Some("forbidden") => 'F',
                Some(other) => panic!("{method} {uri}: refused for '{other}': {}", r.body),
            };
            if got != want {
                failures.push(format!(
                    "{method} {uri} as caller #{}: expected {want}, got {got} ({} {})",
                    callers.iter().position(|c| std::ptr::eq(c, who)).unwrap(),
                    r.status,
                    r.body.chars().take(120).collect::<String>()
                ));
            }
            if got == 'U' && *method == "GET" && !uri.starts_with("/api/") {
                assert!(
                    r.location.starts_with("/signin?next="),
                    "{uri}: {}",
                    r.location
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Whether a concrete URI matches an axum route pattern (`{x}` one segment, `{*x}` the rest).
fn route_matches(route: &str, uri: &str) -> bool {
    if route == uri {
        return true;
    }
    let path = uri.split('?').next().unwrap_or(uri);
    let (r, p): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), path.split('/').collect());
    if r.last().is_some_and(|s| s.starts_with("{*")) {
        return p.len() >= r.len()
            && r[..r.len() - 1]
                .iter()
                .zip(&p)
                .all(|(a, b)| a.starts_with('{') || a == b);
    }
    r.len() == p.len() && r.iter().zip(&p).all(|(a, b)| a.starts_with('{') || a == b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_writes_without_a_valid_csrf_token_or_origin_are_refused_and_write_nothing() {
    let (app, auth, store, _dir) = embedded_app(false).await;
    let (cookie, csrf) =
        server::testing::session(&auth, "otto", Role::Operator, &["payments-*"]).await;
    let uri = "/policies/payments-api/actions/share";
    let post = |body: String, origin: Option<&'static str>, site: Option<&'static str>| {
        let mut req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie.clone())
            .header(header::HOST, "localhost");
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        req.body(Body::from(body)).unwrap()
    };
    let fields = "revision=1&reason=r&confirm=yes&share=20";
    let cases = [
        (
            "missing token",
            post(fields.to_string(), Some("http://localhost"), None),
        ),
        (
            "wrong token",
            post(
                format!("{fields}&csrf=not-the-token"),
                Some("http://localhost"),
                None,
            ),
        ),
        (
            "foreign Origin",
            post(
                format!("{fields}&csrf={csrf}"),
                Some("https://evil.example"),
                None,
            ),
        ),
        (
            "cross-site fetch",
            post(
                format!("{fields}&csrf={csrf}"),
                Some("http://localhost"),
                Some("cross-site"),
            ),
        ),
        (
            "no Origin at all",
            post(format!("{fields}&csrf={csrf}"), None, None),
        ),
    ];
    for (what, req) in cases {
        let r = send(&app, req).await;
        assert_eq!(
            (r.status, r.denied.as_deref()),
            (StatusCode::FORBIDDEN, Some("csrf")),
            "{what}: {}",
            r.body
        );
    }
    let name = PolicyName::new("payments-api").unwrap();
    assert_eq!(
        store.get(&name).await.unwrap().unwrap().revision,
        1,
        "nothing was written"
    );
    let ok = send(
        &app,
        post(
            format!("{fields}&csrf={csrf}"),
            Some("http://localhost"),
            Some("same-origin"),
        ),
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let after = store.get(&name).await.unwrap().unwrap();
    assert_eq!((after.revision, after.canary_basis_points.get()), (2, 2000));
    assert_eq!(
        after.updated_by.as_str(),
        "otto (password)",
        "the principal, not a typed name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_records_the_principal_and_ignores_x_actor() {
    let (app, auth, store, _dir) = embedded_app(false).await;
    let token = server::testing::token(&auth, "deploy-bot", Role::Operator, &[]).await;
    let req = Request::put("/api/v1/policies/search-api/share")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::IF_MATCH, "\"1\"")
        .header("x-actor", "mallory")
        .body(Body::from(r#"{"share":"9","reason":"ramp"}"#))
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let events = store
        .events(&PolicyName::new("search-api").unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(events[0].actor.as_str(), "deploy-bot (token)");
    let bad = call(
        &app,
        &As::Bearer(token),
        "PUT",
        "/api/v1/policies/search-api/share",
        "{}",
    )
    .await;
    assert!(
        bad.body.contains("\"code\":\"bad_body\""),
        "every 4xx has a code: {}",
        bad.body
    );
}

async fn add_account(store: &dyn Store, name: &str, password: &str, role: Role) {
    records::create_account(
        store,
        &Account {
            name: name.into(),
            password_hash: credentials::hash_password(password),
            role,
            policies: vec![],
            created_at: 0,
            created_by: "test".into(),
        },
    )
    .await
    .unwrap();
}

async fn sign_in(app: &Router, name: &str, password: &str) -> Reply {
    let req = Request::post("/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "localhost")
        .header(header::ORIGIN, "http://localhost")
        .body(Body::from(format!(
            "name={name}&password={password}&next=/policies/payments-api"
        )))
        .unwrap();
    send(app, req).await
}

fn cookie_of(r: &Reply) -> String {
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    set.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_per_account_with_a_message_saying_when_to_retry() {
    let (app, _auth, store, _dir) = embedded_app(false).await;
    add_account(&*store, "alice", "correct horse battery", Role::Operator).await;
    let ok = sign_in(&app, "alice", "correct+horse+battery").await;
    assert_eq!(ok.location, "/policies/payments-api");
    let _ = cookie_of(&ok);
    for _ in 0..5 {
        let r = sign_in(&app, "alice", "wrong").await;
        assert!(
            r.location.contains("Wrong%20account%20or%20password"),
            "{}",
            r.location
        );
    }
    let locked = sign_in(&app, "alice", "correct+horse+battery").await;
    assert!(
        locked.location.contains("Too%20many%20failed%20sign-ins")
            && locked.location.contains("Try%20again%20in%2015%20minute"),
        "{}",
        locked.location
    );
    assert!(locked.headers.get(header::SET_COOKIE).is_none());
    let unknown = sign_in(&app, "nobody", "whatever").await;
    assert!(unknown.location.contains("Wrong%20account%20or%20password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_link_creates_the_first_admin_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap());
    let (app, auth) = server::testing::router(store.clone(), Default::default(), false).await;
    let token = auth.setup_token(15).await.unwrap().expect("no account yet");
    let wrong = call(&app, &As::Nobody, "GET", "/setup?token=guess", "").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let page = call(
        &app,
        &As::Nobody,
        "GET",
        &format!("/setup?token={token}"),
        "",
    )
    .await;
    assert!(
        page.body.contains("Create the first admin"),
        "{}",
        page.body
    );
    let body = format!("token={token}&name=root&password=long+enough+pw&password2=long+enough+pw");
    let made = call(&app, &As::Nobody, "POST", "/setup", &body).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let cookie = cookie_of(&made);
    let me = send(
        &app,
        Request::get("/api/v1/session")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(me.body.contains("\"name\":\"root\"") && me.body.contains("\"role\":\"admin\""));
    let again = call(&app, &As::Nobody, "POST", "/setup", &body).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "the link works once");
    assert_eq!(
        auth.setup_token(15).await.unwrap(),
        None,
        "an account exists now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_security_headers() {
    let (app, auth, _store, _dir) = embedded_app(false).await;
    let viewer = session(&auth, "vera", Role::Viewer, &[]).await;
    let r = call(&app, &viewer, "GET", "/policies/payments-api", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let csp = r.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self' 'nonce-"));
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(
        r.body.contains(&format!("nonce=\"{nonce}\"")),
        "inline scripts carry the nonce"
    );
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert!(
        r.body.contains("read-only: viewer"),
        "the page says why controls are absent"
    );
    assert!(
        !r.body.contains("actions/promote"),
        "no write controls for a viewer"
    );
}

async fn firestore_pair(test: &str) -> (Router, Router, Arc<dyn Store>) {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "FIRESTORE_EMULATOR_HOST is not set: run the tests with `./dev test`, which starts the emulator"
    );
    let project = format!("access-{test}-{}", std::process::id());
    let connect = || FirestoreStore::connect(&project, Duration::from_secs(10));
    let a: Arc<dyn Store> = connect().await.unwrap();
    create(&*a, "payments-api").await;
    let b: Arc<dyn Store> = connect().await.unwrap();
    // Reads trust a looked-up session or token for CACHE_SECS here (10 s by default).
    let auth = |store: &Arc<dyn Store>| {
        let mut auth = Auth::new(store.clone());
        auth.cache_secs = CACHE_SECS;
        auth
    };
    let (app_a, _) =
        server::testing::router_with(a.clone(), Default::default(), false, auth(&a)).await;
    let (app_b, _) =
        server::testing::router_with(b.clone(), Default::default(), false, auth(&b)).await;
    (app_a, app_b, a)
}

const CACHE_SECS: i64 = 2;

/// Polls until `check` holds, for at most the cache time and a margin.
async fn within_cache_time(mut check: impl AsyncFnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(CACHE_SECS as u64 + 10);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {CACHE_SECS} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_on_one_replica_signs_out_on_all() {
    let (a, b, store) = firestore_pair("signout").await;
    add_account(&*store, "alice", "correct horse battery", Role::Operator).await;
    let cookie = cookie_of(&sign_in(&a, "alice", "correct+horse+battery").await);
    let page = || {
        Request::get("/policies/payments-api")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&b, page()).await.status,
        StatusCode::OK,
        "the session works on replica b"
    );
    let me = send(
        &a,
        Request::get("/api/v1/session")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let csrf = serde_json::from_str::<serde_json::Value>(&me.body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let out = send(
        &a,
        Request::post("/signout")
            .header(header::COOKIE, &cookie)
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, "http://localhost")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap(),
    )
    .await;
    assert!(out.location.starts_with("/signin"), "{}", out.location);
    // A write from replica b with the ended session is refused at once …
    let write = send(
        &b,
        Request::post("/policies/payments-api/actions/share")
            .header(header::COOKIE, &cookie)
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, "http://localhost")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "revision=1&reason=r&confirm=yes&share=9&csrf={csrf}"
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(
        write.denied.as_deref(),
        Some("unauthenticated"),
        "{}",
        write.body
    );
    // … and its reads end within the cache time.
    within_cache_time(
        async || send(&b, page()).await.denied.as_deref() == Some("unauthenticated"),
        "replica b signs the session out",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_working_on_every_replica() {
    let (a, b, store) = firestore_pair("revoke").await;
    let auth = Auth::new(store.clone());
    let token = server::testing::token(&auth, "ci", Role::Service, &[]).await;
    let admin = server::testing::token(&auth, "root", Role::Admin, &[]).await;
    let decide = "/api/v1/policies/payments-api/decision?tenant=acme";
    for app in [&a, &b] {
        let r = call(app, &As::Bearer(token.clone()), "GET", decide, "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let list = call(&a, &As::Bearer(admin.clone()), "GET", "/api/v1/tokens", "").await;
    let tokens: Vec<serde_json::Value> = serde_json::from_str(&list.body).unwrap();
    let ci = tokens.iter().find(|t| t["name"] == "ci").unwrap();
    assert!(!list.body.contains(&token), "listing never shows a secret");
    let id = ci["id"].as_str().unwrap();
    let revoked = call(
        &a,
        &As::Bearer(admin),
        "DELETE",
        &format!("/api/v1/tokens/{id}"),
        "",
    )
    .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    let service = As::Bearer(token.clone());
    let r = call(&a, &service, "GET", decide, "").await;
    assert_eq!(
        r.denied.as_deref(),
        Some("unauthenticated"),
        "replica a, at once: {}",
        r.body
    );
    let outcomes = "/api/v1/policies/payments-api/outcomes";
    let r = call(&b, &service, "POST", outcomes, r#"{"outcomes":[]}"#).await;
    assert_eq!(
        r.denied.as_deref(),
        Some("unauthenticated"),
        "a write on replica b, at once"
    );
    within_cache_time(
        async || {
            call(&b, &service, "GET", decide, "")
                .await
                .denied
                .as_deref()
                == Some("unauthenticated")
        },
        "replica b refuses the revoked token",
    )
    .await;
}

/// Expiry on both stores, with the clock passed in (no waiting).
async fn sessions_expire(store: &dyn Store) {
    let limits = SessionLimits {
        idle: 600,
        absolute: 3600,
    };
    let p = Principal {
        name: "alice".into(),
        role: Role::Viewer,
        policies: vec![],
        via: SignIn::Password,
    };
    let id = records::start_session(store, p.clone(), 1000)
        .await
        .unwrap();
    assert!(records::session(store, &id, limits, 1500)
        .await
        .unwrap()
        .is_some());
    assert!(
        records::session(store, &id, limits, 2000)
            .await
            .unwrap()
            .is_some(),
        "kept alive"
    );
    assert!(
        records::session(store, &id, limits, 2601)
            .await
            .unwrap()
            .is_none(),
        "idle"
    );
    assert!(
        records::session(store, &id, limits, 2000)
            .await
            .unwrap()
            .is_none(),
        "and deleted"
    );
    let id = records::start_session(store, p, 1000).await.unwrap();
    for t in (1300..4600).step_by(300) {
        let live = records::session(store, &id, limits, t)
            .await
            .unwrap()
            .is_some();
        assert_eq!(live, t - 1000 <= 3600, "at {t}: absolute limit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_when_idle_and_at_their_absolute_limit() {
    let dir = tempfile::tempdir().unwrap();
    sessions_expire(&EmbeddedStore::open(dir.path().join("c.redb")).unwrap()).await;
    let (_, _, store) = firestore_pair("expiry").await;
    sessions_expire(&*store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_ends_its_sessions() {
    let (app, _auth, store, _dir) = embedded_app(false).await;
    add_account(&*store, "alice", "correct horse battery", Role::Operator).await;
    add_account(&*store, "bob", "correct horse battery", Role::Viewer).await;
    let alice = cookie_of(&sign_in(&app, "alice", "correct+horse+battery").await);
    let bob = cookie_of(&sign_in(&app, "bob", "correct+horse+battery").await);
    let listed = server::auth::cli::list_users(&*store).await.unwrap();
    assert!(
        listed.starts_with("alice\toperator\tall policies") && listed.contains("bob\tviewer"),
        "{listed}"
    );
    let said = server::auth::cli::delete_user(&*store, "alice")
        .await
        .unwrap();
    assert_eq!(
        said,
        "account 'alice' deleted; 1 session(s) ended, 0 token(s) it created revoked"
    );
    assert!(server::auth::cli::delete_user(&*store, "alice")
        .await
        .is_err());
    let write = |cookie: &str| {
        Request::post("/signout")
            .header(header::COOKIE, cookie)
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, "http://localhost")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("csrf=x"))
            .unwrap()
    };
    // Writes check the store at once: alice's session is gone, bob's is not.
    assert_eq!(
        send(&app, write(&alice)).await.denied.as_deref(),
        Some("unauthenticated")
    );
    assert_eq!(
        send(&app, write(&bob)).await.denied.as_deref(),
        Some("csrf")
    );
    let again = sign_in(&app, "alice", "correct+horse+battery").await;
    assert!(
        again.location.contains("Wrong%20account"),
        "{}",
        again.location
    );
}
