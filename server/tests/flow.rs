//! The server end to end in-process (real router, real stores): pages render from the store,
//! forms change it (and refuse bad input), the JSON API mirrors it with ETag / If-Match.
//! Every scenario runs on the embedded store and on the Firestore emulator.

use app::access::Role;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use splitter::store::embedded::EmbeddedStore;
use splitter::store::firestore::FirestoreStore;
use splitter::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The router, and an admin to call it as: a browser session (cookie + CSRF token, for the
/// forms) and a bearer token (for the API and page reads).
struct App {
    router: Router,
    cookie: String,
    csrf: String,
    token: String,
}

async fn router(store: Arc<dyn Store>) -> App {
    let (router, auth) = server::testing::router(store, Default::default(), false).await;
    let (cookie, csrf) = server::testing::session(&auth, "alice", Role::Admin, &[]).await;
    let token = server::testing::token(&auth, "robot", Role::Admin, &[]).await;
    App {
        router,
        cookie,
        csrf,
        token,
    }
}

struct Reply {
    status: StatusCode,
    location: String,
    etag: String,
    body: String,
}

async fn send(app: &App, req: Request<Body>) -> Reply {
    let res = app.router.clone().oneshot(req).await.unwrap();
    let h = |n| {
        res.headers()
            .get(n)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (status, location, etag) = (res.status(), h(header::LOCATION), h(header::ETAG));
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply {
        status,
        location,
        etag,
        body,
    }
}

async fn get(app: &App, uri: &str) -> Reply {
    let req = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {}", app.token));
    send(app, req.body(Body::empty()).unwrap()).await
}

/// A page read in the admin's browser session (cookie).
async fn browse(app: &App, uri: &str) -> Reply {
    let req = Request::get(uri).header(header::COOKIE, &app.cookie);
    send(app, req.body(Body::empty()).unwrap()).await
}

/// A form post from the admin's browser session on our own page (CSRF token and Origin).
async fn form(app: &App, uri: &str, body: &str) -> Reply {
    send(
        app,
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &app.cookie)
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, "http://localhost")
            .body(Body::from(format!("{body}&csrf={}", app.csrf)))
            .unwrap(),
    )
    .await
}

async fn json(app: &App, method: &str, uri: &str, if_match: Option<&str>, body: &str) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token));
    if let Some(m) = if_match {
        req = req.header(header::IF_MATCH, m);
    }
    send(app, req.body(Body::from(body.to_string())).unwrap()).await
}

fn decoded(location: &str) -> String {
    let mut out = Vec::new();
    let b = location.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&location[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn embedded() -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap());
    (router(store).await, dir)
}

async fn firestore(test: &str) -> App {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "FIRESTORE_EMULATOR_HOST is not set: run the tests with `./dev test`, which starts the emulator"
    );
    let project = format!("flow-{}-{}", test.replace('_', "-"), std::process::id());
    let store = FirestoreStore::connect(&project, Duration::from_secs(10))
        .await
        .unwrap();
    router(store).await
}

/// Each scenario starts from the seeded demo policies, on a fresh embedded store and on a
/// fresh Firestore emulator project, as its own test (one failure hides no other).
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (app, _dir) = super::embedded().await;
                    super::$name(app).await;
                }
            )*
        }
        mod firestore_emulator {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::firestore(stringify!($name)).await).await;
                }
            )*
        }
    };
}

on_both_stores!(
    overview_lists_and_filters_the_policies,
    a_bad_or_unconfirmed_share_is_refused_and_nothing_is_written,
    a_share_set_in_the_form_is_stored_and_a_stale_form_is_refused,
    the_api_needs_if_match_and_names_conflicts_and_bad_fields,
    forms_and_api_parse_the_same_input_alike,
    roll_back_then_promote_through_the_forms,
    a_policy_is_created_through_the_form_once,
    the_simulator_agrees_with_the_splitter,
    delete_needs_the_confirmation,
);

async fn etag(app: &App, policy: &str) -> String {
    get(app, &format!("/api/v1/policies/{policy}")).await.etag
}

async fn overview_lists_and_filters_the_policies(app: App) {
    // The overview lists the (demo) policies from the store, with exact shares.
    let page = get(&app, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("demo-payment-api") && page.body.contains("12.5%"),
        "{}",
        page.body
    );
    assert!(page.body.contains("3 of 3 policies"));
    let filtered = get(&app, "/?q=search&state=ramping").await;
    assert!(filtered.body.contains("1 of 3 policies") && filtered.body.contains("demo-search-api"));
    let health = get(&app, "/healthz").await;
    assert!(health.body.contains("\"status\":\"ok\""));
}

async fn a_bad_or_unconfirmed_share_is_refused_and_nothing_is_written(app: App) {
    for bad in ["150", "abc", "-1"] {
        let r = form(
            &app,
            "/policies/demo-payment-api/actions/share",
            &format!("revision=1&reason=r&confirm=yes&share={bad}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let msg = decoded(&r.location);
        assert!(
            msg.contains("?error=share: ") && msg.contains("Nothing was changed"),
            "{msg}"
        );
    }
    let unconfirmed = form(
        &app,
        "/policies/demo-payment-api/actions/share",
        "revision=1&reason=r&share=20",
    )
    .await;
    assert!(decoded(&unconfirmed.location).contains("Tick the confirmation box"));
    let unknown = form(
        &app,
        "/policies/demo-payment-api/actions/set_share",
        "revision=1&reason=r&confirm=yes&share=20",
    )
    .await;
    // An action no form posts has no access rule: the guard refuses it before any handler.
    assert_eq!(unknown.status, StatusCode::FORBIDDEN, "{}", unknown.body);
    assert!(unknown.body.contains("no access rule"), "{}", unknown.body);
    assert_eq!(
        etag(&app, "demo-payment-api").await,
        "\"1\"",
        "nothing was written by the refused forms"
    );
}

async fn a_share_set_in_the_form_is_stored_and_a_stale_form_is_refused(app: App) {
    let ok = form(
        &app,
        "/policies/demo-payment-api/actions/share",
        "revision=1&reason=ramp&confirm=yes&share=20",
    )
    .await;
    assert!(
        decoded(&ok.location).contains("notice=Canary share set to 20%"),
        "{}",
        ok.location
    );
    let api = get(&app, "/api/v1/policies/demo-payment-api").await;
    assert_eq!(api.etag, "\"2\"");
    assert!(
        api.body.contains("\"canary_basis_points\":2000"),
        "{}",
        api.body
    );

    // A second operator still looking at revision 1 is refused, told who changed it.
    let stale = form(
        &app,
        "/policies/demo-payment-api/actions/share",
        "revision=1&reason=x&confirm=yes&step=50",
    )
    .await;
    let msg = decoded(&stale.location);
    assert!(
        msg.contains("error=")
            && msg.contains("changed by alice")
            && msg.contains("nothing was written"),
        "{msg}"
    );
    let page = get(&app, &stale.location.replace("http://localhost", "")).await;
    assert!(
        page.body.contains("changed by alice"),
        "the page shows the refusal"
    );

    // The policy page shows the new share and the history with the reason.
    let page = get(&app, "/policies/demo-payment-api").await;
    assert!(
        page.body.contains("20%")
            && page.body.contains("share 12.5% → 20%")
            && page.body.contains("ramp")
    );
}

async fn the_api_needs_if_match_and_names_conflicts_and_bad_fields(app: App) {
    let share = "/api/v1/policies/demo-payment-api/share";
    let r = json(&app, "PUT", share, None, r#"{"share":"30%"}"#).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED);
    let r = json(&app, "PUT", share, Some("\"1\""), r#"{"share":15}"#).await;
    assert_eq!(
        (r.status, r.etag.as_str()),
        (StatusCode::OK, "\"2\""),
        "{}",
        r.body
    );
    let r = json(&app, "PUT", share, Some("\"1\""), r#"{"share":"30%"}"#).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body.contains("\"current\"") && r.body.contains("\"revision\":2"),
        "{}",
        r.body
    );
    let r = json(&app, "PUT", share, Some("\"2\""), r#"{"share":"12.345"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("\"field\":\"share\""), "{}", r.body);
    let r = json(&app, "PUT", share, Some("\"2\""), r#"{"share":true}"#).await;
    assert!(r.body.contains("\"field\":\"share\""), "{}", r.body);
    let r = json(
        &app,
        "PUT",
        share,
        Some("\"2\""),
        r#"{"share":"5","version":"v3"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("unknown field `version`"), "{}", r.body);
    let r = json(
        &app,
        "PUT",
        share,
        Some("\"2\""),
        r#"{"reason":"no share"}"#,
    )
    .await;
    assert!(r.body.contains("missing field `share`"), "{}", r.body);
    assert_eq!(
        etag(&app, "demo-payment-api").await,
        "\"2\"",
        "nothing else was written"
    );
}

/// The same bad input gets the same answer through a form and through the API: one parser.
async fn forms_and_api_parse_the_same_input_alike(app: App) {
    let cases = [
        ("share", "share=12.345", "share", r#"{"share":"12.345"}"#),
        (
            "canary",
            "version=latest",
            "canary",
            r#"{"version":"latest"}"#,
        ),
        (
            "pin",
            "tenant=acme&pin=both",
            "overrides/acme",
            r#"{"pin":"both"}"#,
        ),
    ];
    for (action, fields, path, body) in cases {
        let f = form(
            &app,
            &format!("/policies/demo-checkout/actions/{action}"),
            &format!("revision=1&reason=r&confirm=yes&{fields}"),
        )
        .await;
        let form_error = decoded(&f.location);
        let api = json(
            &app,
            "PUT",
            &format!("/api/v1/policies/demo-checkout/{path}"),
            Some("\"1\""),
            body,
        )
        .await;
        assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", api.body);
        let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        let api_error = v["error"].as_str().unwrap();
        assert!(
            form_error.contains(&format!("error={api_error}")),
            "{action}: form said {form_error}, API said {api_error}"
        );
    }
    // A pin typed with a stray space pins the trimmed id through either path.
    let f = form(
        &app,
        "/policies/demo-checkout/actions/pin",
        "revision=1&reason=r&tenant=+acme+&pin=stable",
    )
    .await;
    assert!(
        decoded(&f.location).contains("Pinned acme to stable"),
        "{}",
        f.location
    );
    let r = json(
        &app,
        "PUT",
        "/api/v1/policies/demo-checkout/overrides/%20beta%20",
        Some("\"2\""),
        r#"{"pin":"stable"}"#,
    )
    .await;
    assert!(
        r.body
            .contains("\"overrides\":{\"acme\":\"stable\",\"beta\":\"stable\"}"),
        "{}",
        r.body
    );
}

async fn roll_back_then_promote_through_the_forms(app: App) {
    let r = form(
        &app,
        "/policies/demo-payment-api/actions/rollback",
        "revision=1&reason=errors&confirm=yes",
    )
    .await;
    assert!(
        decoded(&r.location).contains("Rolled back to 0%"),
        "{}",
        r.location
    );
    let r = form(
        &app,
        "/policies/demo-payment-api/actions/promote",
        "revision=2&reason=x&confirm=yes",
    )
    .await;
    assert!(
        decoded(&r.location).contains("rolled back"),
        "{}",
        r.location
    );
    let r = json(
        &app,
        "POST",
        "/api/v1/policies/demo-payment-api/promote",
        Some("\"2\""),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = form(
        &app,
        "/policies/demo-payment-api/actions/share",
        "revision=2&reason=fixed&confirm=yes&step=100",
    )
    .await;
    assert!(decoded(&r.location).contains("notice="), "{}", r.location);
    let r = form(
        &app,
        "/policies/demo-payment-api/actions/promote",
        "revision=3&reason=done&confirm=yes",
    )
    .await;
    assert!(
        decoded(&r.location).contains("Promoted: v2 is now stable"),
        "{}",
        r.location
    );
}

async fn a_policy_is_created_through_the_form_once(app: App) {
    let r = form(
        &app,
        "/policies",
        "name=orders&stable_version=v1&canary_version=v2&share=0.5&reason=new",
    )
    .await;
    assert_eq!(
        r.location,
        "/policies/orders?notice=Policy%20%27orders%27%20created."
    );
    let r = form(&app, "/policies", "name=orders&stable_version=v1").await;
    assert!(
        decoded(&r.location).contains("already exists"),
        "{}",
        r.location
    );
    let r = form(&app, "/policies", "name=Bad%20Name&stable_version=v1").await;
    assert!(
        decoded(&r.location).starts_with("/policies/new?error=Policy name:"),
        "{}",
        r.location
    );
    let r = json(
        &app,
        "POST",
        "/api/v1/policies",
        None,
        r#"{"name":"Bad Name","stable_version":"v1"}"#,
    )
    .await;
    assert!(r.body.contains("\"field\":\"policy name\""), "{}", r.body);
}

async fn the_simulator_agrees_with_the_splitter(app: App) {
    let tenants: Vec<String> = (0..300).map(|i| format!("tenant-{i}")).collect();
    let uri = format!(
        "/policies/demo-payment-api/simulate?share=37.5&tenants={}",
        tenants.join("%0A")
    );
    let page = get(&app, &uri).await;
    assert!(
        page.body.contains("data-test=\"tenants\">300<"),
        "{}",
        &page.body[..page.body.len().min(2000)]
    );
    let stored = get(&app, "/api/v1/policies/demo-payment-api").await;
    let mut config: splitter::PolicyConfig = serde_json::from_str(&stored.body).unwrap();
    config.canary_basis_points = splitter::BasisPoints::parse("37.5").unwrap();
    for t in &tenants {
        let expected = if splitter::decide(Some(&config), Some(t)).is_canary {
            "canary"
        } else {
            "stable"
        };
        assert!(
            page.body
                .contains(&format!("data-tenant=\"{t}\" data-proposed=\"{expected}\"")),
            "{t} should be {expected}"
        );
    }
}

async fn delete_needs_the_confirmation(app: App) {
    let r = form(
        &app,
        "/policies/demo-checkout/actions/delete",
        "revision=1&reason=oops",
    )
    .await;
    assert!(decoded(&r.location).contains("Tick the confirmation box"));
    assert_eq!(etag(&app, "demo-checkout").await, "\"1\"");
    let r = form(
        &app,
        "/policies/demo-checkout/actions/delete",
        "revision=1&reason=oops&confirm=yes",
    )
    .await;
    assert!(
        decoded(&r.location).contains("was deleted"),
        "{}",
        r.location
    );
    assert_eq!(
        get(&app, "/api/v1/policies/demo-checkout").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn upload(app: &App, body: Vec<u8>) -> Reply {
    let boundary = "XBOUNDARYX";
    let mut payload = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"share\"\r\n\r\n5\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.txt\"\r\nContent-Type: text/plain\r\n\r\n", app.csrf).into_bytes();
    payload.extend(body);
    payload.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    send(
        app,
        Request::post("/policies/demo-payment-api/simulate/upload")
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header(header::COOKIE, &app.cookie)
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, "http://localhost")
            .body(Body::from(payload))
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(Arc::new(
        EmbeddedStore::open(dir.path().join("canary.redb")).unwrap(),
    ))
    .await;
    let ok = upload(&app, b"tenant-1\ntenant-2\n".to_vec()).await;
    assert!(ok.location.contains("share=5&upload="), "{}", ok.location);
    let shown = browse(&app, &ok.location).await;
    assert!(
        shown.body.contains("data-test=\"tenants\">2<"),
        "the uploaded ids are simulated"
    );
    let other = get(&app, &ok.location).await;
    assert!(
        !other.body.contains("data-test=\"tenants\">2<"),
        "another principal cannot read the upload"
    );
    let too_big = upload(&app, vec![b'a'; 33 * 1024 * 1024]).await;
    assert!(
        decoded(&too_big.location).contains("larger than 32 MB"),
        "{}",
        too_big.location
    );
    let binary = upload(&app, vec![0xff, 0xfe, 0x00]).await;
    assert!(
        decoded(&binary.location).contains("not UTF-8"),
        "{}",
        binary.location
    );
    let empty = upload(&app, Vec::new()).await;
    assert!(
        decoded(&empty.location).contains("non-empty file"),
        "{}",
        empty.location
    );
}
