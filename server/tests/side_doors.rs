//! The smaller side doors of issue #16, each as a test that failed before its fix: Host names
//! outside the allowed list, the `__Host-` session cookie, multipart writes without a CSRF
//! token, a deleted account's tokens, the demo service on real policies, uploads by token
//! callers, and the caps on event streams.

use app::access::Role;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use server::auth::{records, Auth, DENIED_HEADER};
use splitter::store::embedded::EmbeddedStore;
use splitter::store::Store;
use splitter::{Actor, NewPolicy, Operation, PolicyName, Version};
use std::sync::Arc;
use tower::ServiceExt;

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

struct Fixture {
    app: Router,
    auth: Arc<Auth>,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

async fn fixture(demo: bool, configure: impl FnOnce(&mut Auth)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap());
    create(&*store, "payments-api").await;
    create(&*store, "demo-payment-api").await;
    let mut auth = Auth::new(store.clone());
    configure(&mut auth);
    let (app, auth) =
        server::testing::router_with(store.clone(), server::testing::quiet("t"), demo, auth).await;
    Fixture {
        app,
        auth,
        store,
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    denied: Option<String>,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let headers = res.headers().clone();
    let denied = headers
        .get(DENIED_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = res.status();
    let body =
        String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).to_string();
    Reply {
        status,
        denied,
        headers,
        body,
    }
}

fn get(uri: &str) -> axum::http::request::Builder {
    Request::get(uri).header(header::HOST, "localhost")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_name_is_refused_before_anything_runs() {
    let f = fixture(false, |a| {
        a.allowed_hosts = Some(vec!["127.0.0.1:3000".into(), "localhost:3000".into()]);
    })
    .await;
    let at = |host: &'static str| {
        Request::get("/healthz")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    };
    for host in ["rebound.example:3000", "localhost", "127.0.0.1:3001"] {
        let r = send(&f.app, at(host)).await;
        assert_eq!(
            (r.status, r.denied.as_deref()),
            (StatusCode::MISDIRECTED_REQUEST, Some("host")),
            "{host}"
        );
    }
    for host in ["localhost:3000", "LOCALHOST:3000", "127.0.0.1:3000"] {
        assert_eq!(
            send(&f.app, at(host)).await.status,
            StatusCode::OK,
            "{host}"
        );
    }
}

#[test]
fn the_default_allowed_hosts_follow_the_listening_address() {
    let loopback = "127.0.0.1:3000".parse().unwrap();
    assert_eq!(
        server::auth::allowed_hosts(loopback, &[]).unwrap(),
        Some(vec!["127.0.0.1:3000".to_string(), "localhost:3000".into()])
    );
    let any = "0.0.0.0:8080".parse().unwrap();
    assert_eq!(server::auth::allowed_hosts(any, &[]).unwrap(), None);
    assert_eq!(
        server::auth::allowed_hosts(any, &["Canary.Example.com".into()]).unwrap(),
        Some(vec!["canary.example.com".to_string()])
    );
    assert_eq!(
        server::auth::allowed_hosts(loopback, &["*".into()]).unwrap(),
        None
    );
    assert!(server::auth::allowed_hosts(any, &["a/b".into()]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_secure_cookies_only_the_host_prefixed_session_cookie_counts() {
    let f = fixture(false, |a| a.secure_cookies = true).await;
    let (plain, _) = server::testing::session(&f.auth, "vera", Role::Viewer, &[]).await;
    let id = plain.split_once('=').unwrap().1.to_string();
    let page = |cookie: String| {
        get("/api/v1/policies")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    let r = send(&f.app, page(format!("apx_session={id}"))).await;
    assert_eq!(r.denied.as_deref(), Some("unauthenticated"), "{}", r.body);
    let r = send(&f.app, page(format!("__Host-apx_session={id}"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Signing out clears the prefixed cookie, Secure.
    let (cookie, csrf) = server::testing::session(&f.auth, "vera", Role::Viewer, &[]).await;
    let id = cookie.split_once('=').unwrap().1;
    let out = Request::post("/signout")
        .header(header::HOST, "localhost")
        .header(header::ORIGIN, "http://localhost")
        .header(header::COOKIE, format!("__Host-apx_session={id}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    let r = send(&f.app, out).await;
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.starts_with("__Host-apx_session=;")
            && set.contains("; Secure")
            && set.contains("Path=/"),
        "{set}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_write_outside_the_upload_needs_the_csrf_token() {
    let f = fixture(false, |_| {}).await;
    let (cookie, csrf) =
        server::testing::session(&f.auth, "otto", Role::Operator, &["payments-*"]).await;
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"share\"\r\n\r\n40\r\n\
--{boundary}\r\nContent-Disposition: form-data; name=\"revision\"\r\n\r\n1\r\n\
--{boundary}\r\nContent-Disposition: form-data; name=\"confirm\"\r\n\r\nyes\r\n--{boundary}--\r\n"
    );
    let post = |with_token: bool| {
        let mut r = Request::post("/policies/payments-api/actions/share")
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, "http://localhost")
            .header(header::COOKIE, cookie.clone())
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            );
        if with_token {
            r = r.header("x-csrf-token", csrf.clone());
        }
        r.body(Body::from(body.clone())).unwrap()
    };
    let r = send(&f.app, post(false)).await;
    assert_eq!(
        (r.status, r.denied.as_deref()),
        (StatusCode::FORBIDDEN, Some("csrf")),
        "{}",
        r.body
    );
    let name = PolicyName::new("payments-api").unwrap();
    let after = splitter::store::PolicyStore::get(&*f.store, &name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.revision, 1, "nothing was written");
    // With the header the guard lets it through (the handler then reads its form as it does).
    assert_eq!(send(&f.app, post(true)).await.denied, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_accounts_tokens_stop_working() {
    let f = fixture(false, |a| a.cache_secs = 0).await;
    let account = records::Account {
        name: "alice".into(),
        role: Role::Admin,
        policies: vec![],
        password_hash: server::auth::credentials::hash_password("correct horse battery"),
        created_at: 0,
        created_by: "test".into(),
    };
    records::create_account(&*f.store, &account).await.unwrap();
    let (_, token) = records::create_token(
        &*f.store,
        "ci",
        Role::Admin,
        vec![],
        "alice (password)",
        server::auth::now(),
    )
    .await
    .unwrap();
    let (_, other) = records::create_token(
        &*f.store,
        "other",
        Role::Viewer,
        vec![],
        "bob (password)",
        server::auth::now(),
    )
    .await
    .unwrap();
    let list = |t: &str| {
        get("/api/v1/policies")
            .header(header::AUTHORIZATION, format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&f.app, list(&token)).await.status, StatusCode::OK);
    let said = server::auth::cli::delete_user(&*f.store, "alice")
        .await
        .unwrap();
    assert_eq!(
        said,
        "account 'alice' deleted; 0 session(s) ended, 1 token(s) it created revoked"
    );
    let r = send(&f.app, list(&token)).await;
    assert_eq!(r.denied.as_deref(), Some("unauthenticated"), "{}", r.body);
    assert_eq!(
        send(&f.app, list(&other)).await.status,
        StatusCode::OK,
        "another creator's token is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_service_routes_and_records_only_demo_policies() {
    let f = fixture(true, |_| {}).await;
    let demo = |uri: &str| {
        get(uri)
            .header("x-tenant-id", "acme")
            .body(Body::empty())
            .unwrap()
    };
    let r = send(&f.app, demo("/demo/payments-api")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = send(&f.app, demo("/demo/payments-api/orders/7")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(
        send(&f.app, demo("/demo/demo-payment-api")).await.status,
        StatusCode::OK
    );
    let metrics = send(&f.app, get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        !metrics
            .body
            .contains("apx_canary_requests_total{policy=\"payments-api\""),
        "a real policy got demo traffic"
    );
    assert!(metrics
        .body
        .contains("apx_canary_requests_total{policy=\"demo-payment-api\""));
}

/// A multipart upload of `text` to the simulator, as a bearer caller.
fn upload(token: &str, text: &str) -> Request<Body> {
    let boundary = "QqQ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\n\
Content-Type: text/csv\r\n\r\n{text}\r\n--{boundary}--\r\n"
    );
    Request::post("/policies/payments-api/simulate/upload")
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_by_a_token_belongs_to_that_token() {
    let f = fixture(false, |_| {}).await;
    let alice = server::testing::token(&f.auth, "alice-ci", Role::Viewer, &[]).await;
    let bob = server::testing::token(&f.auth, "bob-ci", Role::Viewer, &[]).await;
    let r = send(&f.app, upload(&alice, "tenant-marker-1\ntenant-marker-2")).await;
    let location = r.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.contains("upload="), "{location}");
    let page = |t: &str| {
        get(&location)
            .header(header::AUTHORIZATION, format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    let mine = send(&f.app, page(&alice)).await;
    assert!(mine.body.contains("tenant-marker-2"), "{}", mine.body);
    let theirs = send(&f.app, page(&bob)).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(
        !theirs.body.contains("tenant-marker-2"),
        "another token read alice's upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_per_caller() {
    let f = fixture(false, |_| {}).await;
    let (cookie, _) = server::testing::session(&f.auth, "vera", Role::Viewer, &[]).await;
    let stream = || {
        get("/api/v1/changes")
            .header(header::COOKIE, cookie.clone())
            .body(Body::empty())
            .unwrap()
    };
    let mut open = Vec::new();
    for _ in 0..16 {
        let res = f.app.clone().oneshot(stream()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        open.push(res);
    }
    let refused = f.app.clone().oneshot(stream()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    // Another caller still gets one; closing a stream frees its slot.
    let (other, _) = server::testing::session(&f.auth, "otto", Role::Viewer, &[]).await;
    let res = f
        .app
        .clone()
        .oneshot(
            get("/api/v1/changes")
                .header(header::COOKIE, other)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(open.pop());
    let again = f.app.clone().oneshot(stream()).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_form_larger_than_its_limit_is_refused_unread() {
    let f = fixture(false, |_| {}).await;
    let post = |name: String| {
        Request::post("/signin")
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, "http://localhost")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("name={name}&password=x")))
            .unwrap()
    };
    let r = send(&f.app, post("a".repeat(server::SIGN_IN_MAX_BYTES))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    let r = send(&f.app, post("alice".into())).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}
