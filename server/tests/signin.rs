//! Sign-in that cannot be turned against its users: bounded limiter memory, atomic
//! check-and-count under parallel bursts, password checks off the async workers, per-account
//! counts shared by replicas (real Firestore emulator), no open redirect, a setup link that
//! works exactly once, and `X-Forwarded-For` believed only from a trusted proxy.

use app::access::Role;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use server::auth::limiter::{Cidr, Limiter};
use server::auth::pages::safe_next;
use server::auth::records::{self, Account};
use server::auth::{credentials, Auth};
use splitter::store::access::{AccessKind, AccessStore};
use splitter::store::embedded::EmbeddedStore;
use splitter::store::Store;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    location: String,
    cookie: Option<String>,
}

impl Reply {
    fn wrong(&self) -> bool {
        self.location.contains("Wrong%20account%20or%20password")
    }
    fn too_many(&self) -> bool {
        self.location.contains("Too%20many%20failed%20sign-ins")
    }
    fn signed_in(&self) -> bool {
        self.cookie.is_some()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let (status, location, cookie) = {
        let header = |n: header::HeaderName| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header(header::LOCATION).unwrap_or_default();
        (res.status(), location, header(header::SET_COOKIE))
    };
    let _ = res.into_body().collect().await;
    Reply {
        status,
        location,
        cookie,
    }
}

fn form(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "localhost")
        .header(header::ORIGIN, "http://localhost")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn enc(s: &str) -> String {
    app::routes::overview::urlencode(s)
}

/// A sign-in form post, from `peer` (a TCP peer address, as `axum::serve` records it) with
/// the `X-Forwarded-For` lines given.
fn sign_in_req(
    name: &str,
    password: &str,
    next: &str,
    peer: Option<SocketAddr>,
    xff: &[&str],
) -> Request<Body> {
    let mut req = form(
        "/signin",
        &format!(
            "name={}&password={}&next={}",
            enc(name),
            enc(password),
            enc(next)
        ),
    );
    for line in xff {
        req.headers_mut()
            .append("x-forwarded-for", line.parse().unwrap());
    }
    if let Some(peer) = peer {
        req.extensions_mut().insert(ConnectInfo(peer));
    }
    req
}

async fn sign_in(app: &Router, name: &str, password: &str) -> Reply {
    send(app, sign_in_req(name, password, "/", None, &[])).await
}

async fn add_account(store: &dyn AccessStore, name: &str, password: &str) {
    records::create_account(
        store,
        &Account {
            name: name.into(),
            password_hash: credentials::hash_password(password),
            role: Role::Operator,
            policies: vec![],
            created_at: 0,
            created_by: "test".into(),
        },
    )
    .await
    .unwrap();
}

async fn embedded(
    auth: impl FnOnce(&Arc<dyn Store>) -> Auth,
) -> (Router, Arc<Auth>, Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap());
    let auth = auth(&store);
    let (app, auth) =
        server::testing::router_with(store.clone(), server::testing::quiet("t"), false, auth).await;
    (app, auth, store, dir)
}

fn peer(ip: [u8; 4]) -> Option<SocketAddr> {
    Some(SocketAddr::from((ip, 40_000)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_memory_stays_bounded_under_10000_blocked_sign_ins_with_long_names() {
    let (app, auth, store, _dir) = embedded(|s| {
        let mut a = Auth::new(s.clone());
        a.limiter = Limiter::with_capacity(900, 5, 20, 1000);
        a
    })
    .await;
    add_account(&*store, "victim", "correct horse battery").await;
    // The victim's account is locked (5 wrong passwords from one address).
    for _ in 0..5 {
        assert!(send(
            &app,
            sign_in_req("victim", "wrong", "/", peer([1, 1, 1, 1]), &[])
        )
        .await
        .wrong());
    }
    assert!(auth
        .limiter
        .check(Some("victim"), "2.2.2.2", records_now())
        .is_err());
    // One address, 10 000 sign-ins with names of 10 000 characters: blocked after 20.
    let long = |i: usize| format!("{i}{}", "x".repeat(10_000));
    for i in 0..10_000 {
        let r = send(
            &app,
            sign_in_req(&long(i), "pw", "/", peer([6, 6, 6, 6]), &[]),
        )
        .await;
        assert!(r.wrong() || r.too_many(), "{}", r.location);
        assert!(i < 20 || r.too_many(), "blocked from the 21st on");
    }
    assert!(
        auth.limiter.len() <= 3,
        "refused attempts store nothing: {}",
        auth.limiter.len()
    );
    // 10 000 addresses, one failure each: the map stays within its capacity (1000 here) by
    // dropping entries that are not locked, and the victim's lockout survives.
    for i in 0..10_000u32 {
        let ip = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let r = send(
            &app,
            sign_in_req(&long(i as usize), "pw", "/", peer(ip), &[]),
        )
        .await;
        assert!(r.wrong(), "{}", r.location);
        assert!(auth.limiter.len() <= 1000, "{}", auth.limiter.len());
    }
    assert!(auth.limiter.len() <= 1000);
    assert!(
        auth.limiter
            .check(Some("victim"), "3.3.3.3", records_now())
            .is_err(),
        "a flood never lifts a lockout"
    );
    let r = send(
        &app,
        sign_in_req(
            "victim",
            "correct horse battery",
            "/",
            peer([4, 4, 4, 4]),
            &[],
        ),
    )
    .await;
    assert!(r.too_many() && !r.signed_in(), "{}", r.location);
    assert!(
        auth.limiter.check(None, "6.6.6.6", records_now()).is_err(),
        "the flooding address stays blocked"
    );
}

fn records_now() -> i64 {
    server::auth::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_50_parallel_wrong_passwords_checks_at_most_5_and_refuses_all() {
    let (app, auth, store, _dir) = embedded(|s| Auth::new(s.clone())).await;
    add_account(&*store, "alice", "correct horse battery").await;
    let before = auth.hasher.verifications.load(Ordering::SeqCst);
    let burst: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { sign_in(&app, "alice", &format!("wrong guess {i}")).await })
        })
        .collect();
    let mut refused = 0;
    for t in burst {
        let r = t.await.unwrap();
        assert!(!r.signed_in());
        assert!(r.wrong() || r.too_many(), "{}", r.location);
        refused += 1;
    }
    assert_eq!(refused, 50);
    let checked = auth.hasher.verifications.load(Ordering::SeqCst) - before;
    assert!(checked <= 5, "{checked} passwords checked for a limit of 5");
    let locked = sign_in(&app, "alice", "correct horse battery").await;
    assert!(
        locked.too_many() && !locked.signed_in(),
        "{}",
        locked.location
    );
    assert_eq!(
        auth.hasher.verifications.load(Ordering::SeqCst) - before,
        checked,
        "a locked account's password is not even checked"
    );
    let slots = store.list_records(AccessKind::SignInFailure).await.unwrap();
    assert_eq!(slots.len(), 5, "the store counts the 5 failures: {slots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_stay_fast_while_20_sign_ins_run() {
    let (app, auth, store, _dir) = embedded(|s| Auth::new(s.clone())).await;
    for i in 0..20 {
        add_account(&*store, &format!("user{i}"), "correct horse battery").await;
    }
    let healthz = || {
        let app = app.clone();
        async move {
            let start = Instant::now();
            let r = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
            assert_eq!(r.status, StatusCode::OK);
            start.elapsed()
        }
    };
    let mut baseline = Duration::ZERO;
    for _ in 0..5 {
        baseline = baseline.max(healthz().await);
    }
    // 20 accounts from 20 addresses: no limit applies, every password is checked.
    let sign_ins: Vec<_> = (0..20u8)
        .map(|i| {
            let app = app.clone();
            let req = sign_in_req(
                &format!("user{i}"),
                "correct horse battery",
                "/",
                peer([7, 7, 7, i]),
                &[],
            );
            tokio::spawn(async move { send(&app, req).await })
        })
        .collect();
    let (mut worst, mut during_hashing) = (Duration::ZERO, 0);
    while sign_ins.iter().any(|t| !t.is_finished()) {
        let hashing = auth.hasher.verifications.load(Ordering::SeqCst);
        worst = worst.max(healthz().await);
        if hashing > 0 && hashing < 20 {
            during_hashing += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in sign_ins {
        let r = t.await.unwrap();
        assert!(r.signed_in(), "right passwords all sign in: {}", r.location);
    }
    assert_eq!(auth.hasher.verifications.load(Ordering::SeqCst), 20);
    let peak = auth.hasher.peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "{peak} argon2id checks ran at once (bound: 2)");
    assert!(
        during_hashing > 0,
        "/healthz answered while passwords were being checked"
    );
    assert!(
        worst < baseline + Duration::from_secs(1),
        "/healthz took {worst:?} during the sign-ins (baseline {baseline:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_firestore_share_the_accounts_failure_count() {
    let project = format!("signin-shared-{}", std::process::id());
    let a: Arc<dyn Store> = server::testing::firestore(&project).await;
    let b: Arc<dyn Store> = server::testing::firestore(&project).await;
    // A long window, so that the test never straddles the store's fixed windows.
    let auth = |s: Arc<dyn Store>| {
        let mut auth = Auth::new(s);
        auth.limiter = Limiter::new(30 * 86_400, 5, 20);
        auth
    };
    let (sa, sb) = (a, b);
    let (app_a, _) = server::testing::router_with(
        sa.clone(),
        server::testing::quiet("a"),
        false,
        auth(sa.clone()),
    )
    .await;
    let (app_b, _) = server::testing::router_with(
        sb.clone(),
        server::testing::quiet("b"),
        false,
        auth(sb.clone()),
    )
    .await;
    add_account(&*sa, "alice", "correct horse battery").await;
    add_account(&*sa, "bob", "correct horse battery").await;
    // A right password gives its slot back.
    assert!(sign_in(&app_b, "alice", "correct horse battery")
        .await
        .signed_in());
    assert_eq!(
        sa.list_records(AccessKind::SignInFailure)
            .await
            .unwrap()
            .len(),
        0
    );
    for _ in 0..3 {
        assert!(sign_in(&app_a, "alice", "wrong").await.wrong());
    }
    for _ in 0..2 {
        assert!(sign_in(&app_b, "alice", "wrong").await.wrong());
    }
    // Each replica saw fewer than 5 failures itself; together they saw 5.
    let on_b = sign_in(&app_b, "alice", "correct horse battery").await;
    assert!(on_b.too_many() && !on_b.signed_in(), "{}", on_b.location);
    let on_a = sign_in(&app_a, "alice", "correct horse battery").await;
    assert!(on_a.too_many() && !on_a.signed_in(), "{}", on_a.location);
    assert!(
        sign_in(&app_b, "bob", "correct horse battery")
            .await
            .signed_in(),
        "other accounts are fine"
    );
    let slots = sb.list_records(AccessKind::SignInFailure).await.unwrap();
    assert_eq!(slots.len(), 5, "{slots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_is_followed_only_to_a_path_on_this_site() {
    for evil in [
        "/\t/evil.example",
        "/\\evil",
        "/\n/evil",
        "https://evil",
        "//evil",
        " //evil",
        "/\r\n/evil",
        "\\/evil",
        "javascript:alert(1)",
        "",
    ] {
        assert_eq!(safe_next(evil), "/", "{evil:?}");
    }
    assert_eq!(safe_next("/ok?x=1"), "/ok?x=1");
    assert_eq!(
        safe_next("/policies/payments-api"),
        "/policies/payments-api"
    );
    assert_eq!(safe_next("/a\\b"), "/a/b", "as a browser reads it");
    let (app, _auth, store, _dir) = embedded(|s| Auth::new(s.clone())).await;
    add_account(&*store, "alice", "correct horse battery").await;
    // `next=/%09/evil.example` as a browser sends it: the form decodes it to "/\t/evil.example".
    let req = form(
        "/signin",
        "name=alice&password=correct+horse+battery&next=/%09/evil.example",
    );
    let r = send(&app, req).await;
    assert!(r.signed_in());
    assert_eq!(r.location, "/");
    let r = send(
        &app,
        sign_in_req("alice", "correct horse battery", "/ok?x=1", None, &[]),
    )
    .await;
    assert_eq!(r.location, "/ok?x=1");
    let r = send(&app, sign_in_req("alice", "wrong", "/\n/evil", None, &[])).await;
    assert!(
        r.wrong() && r.location.ends_with("&next=%2F"),
        "{}",
        r.location
    );
}

async fn setup_post(app: &Router, token: &str, name: &str) -> Reply {
    let body =
        format!("token={token}&name={name}&password=long+enough+pw&password2=long+enough+pw");
    send(app, form("/setup", &body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_setup_posts_create_exactly_one_admin() {
    let (app, auth, store, _dir) = embedded(|s| Auth::new(s.clone())).await;
    let token = auth.setup_token(15).await.unwrap().expect("no account yet");
    let posts: Vec<_> = ["root", "mallory"]
        .into_iter()
        .map(|name| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move { setup_post(&app, &token, name).await })
        })
        .collect();
    let mut made = 0;
    for p in posts {
        let r = p.await.unwrap();
        if r.signed_in() {
            made += 1;
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.location);
        }
    }
    assert_eq!(made, 1);
    assert_eq!(records::accounts(&*store).await.unwrap().len(), 1);
    assert_eq!(auth.setup_token(15).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_link_works_on_every_replica_once_and_dies_when_an_account_exists() {
    let project = format!("signin-setup-{}", std::process::id());
    let a: Arc<dyn Store> = server::testing::firestore(&project).await;
    let b: Arc<dyn Store> = server::testing::firestore(&project).await;
    let (app_a, auth_a) = server::testing::router_with(
        a.clone(),
        server::testing::quiet("a"),
        false,
        Auth::new(a.clone()),
    )
    .await;
    let (app_b, _) = server::testing::router_with(
        b.clone(),
        server::testing::quiet("b"),
        false,
        Auth::new(b.clone()),
    )
    .await;
    let token = auth_a
        .setup_token(15)
        .await
        .unwrap()
        .expect("no account yet");
    let page = send(
        &app_b,
        Request::get(format!("/setup?token={token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "printed by a, valid on b");
    let (ra, rb) = tokio::join!(
        setup_post(&app_a, &token, "root"),
        setup_post(&app_b, &token, "mallory")
    );
    assert_eq!(
        [ra.signed_in(), rb.signed_in()]
            .iter()
            .filter(|&&x| x)
            .count(),
        1,
        "a: {} {}, b: {} {}",
        ra.status,
        ra.location,
        rb.status,
        rb.location
    );
    assert_eq!(records::accounts(&*a).await.unwrap().len(), 1);
    let again = setup_post(&app_b, &token, "eve").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    // A link printed while no account existed dies when one is made another way.
    let project = format!("signin-setup-cli-{}", std::process::id());
    let c: Arc<dyn Store> = server::testing::firestore(&project).await;
    let (app_c, auth_c) = server::testing::router_with(
        c.clone(),
        server::testing::quiet("c"),
        false,
        Auth::new(c.clone()),
    )
    .await;
    let token = auth_c
        .setup_token(15)
        .await
        .unwrap()
        .expect("no account yet");
    add_account(&*c, "admin", "correct horse battery").await;
    let page = send(
        &app_c,
        Request::get(format!("/setup?token={token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(
        setup_post(&app_c, &token, "late").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(records::accounts(&*c).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_believed_only_from_a_trusted_peer() {
    let (app, auth, _store, _dir) = embedded(|s| {
        let mut a = Auth::new(s.clone());
        a.trusted_proxies = vec!["10.0.0.0/8".parse::<Cidr>().unwrap()];
        a
    })
    .await;
    // Invalid names: counted against the address only, no password check.
    let fail = |peer: Option<SocketAddr>, xff: &'static [&'static str]| {
        let app = app.clone();
        async move { send(&app, sign_in_req("Not A Name!", "pw", "/", peer, xff)).await }
    };
    // From an untrusted peer the header is ignored: 20 failures block the peer, whatever it says.
    for _ in 0..20 {
        assert!(fail(peer([8, 8, 8, 8]), &["1.2.3.4"]).await.wrong());
    }
    assert!(fail(peer([8, 8, 8, 8]), &["5.6.7.8"]).await.too_many());
    let now = server::auth::now();
    assert!(
        auth.limiter.check(None, "1.2.3.4", now).is_ok(),
        "the header was not believed"
    );
    // Through a trusted proxy: the client it names is counted, not the proxy.
    for _ in 0..20 {
        assert!(fail(peer([10, 0, 0, 1]), &["1.2.3.4"]).await.wrong());
    }
    assert!(fail(peer([10, 0, 0, 1]), &["1.2.3.4"]).await.too_many());
    assert!(auth.limiter.check(None, "1.2.3.4", now).is_err());
    assert!(
        auth.limiter.check(None, "10.0.0.1", now).is_ok(),
        "the proxy is not blocked"
    );
    assert!(
        fail(peer([10, 0, 0, 2]), &["9.9.9.9"]).await.wrong(),
        "other clients behind it are fine"
    );
    // A client cannot escape by prepending: the right-most untrusted address counts.
    assert!(fail(peer([10, 0, 0, 1]), &["9.9.9.9, 1.2.3.4"])
        .await
        .too_many());
    assert!(fail(peer([10, 0, 0, 1]), &["9.9.9.9, 1.2.3.4", "10.3.3.3"])
        .await
        .too_many());
}
