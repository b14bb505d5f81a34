//! Property-based fuzzing of every input decoder the server has, through the real router
//! (in-process, embedded store): the change forms, the JSON write bodies and the decision API.
//! Whatever arrives: never a panic, never a 5xx; a refusal says what is wrong (a form's error
//! message, or an API `code` with the field at fault). Bounded: 300 cases each.

use app::access::Role;
use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use splitter::store::embedded::EmbeddedStore;
use std::sync::Arc;
use tower::ServiceExt;

struct Harness {
    rt: tokio::runtime::Runtime,
    app: Router,
    cookie: String,
    csrf: String,
    token: String,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, cookie, csrf, token) = rt.block_on(async {
        let store = Arc::new(EmbeddedStore::open(dir.path().join("c.redb")).unwrap());
        let (app, auth) = server::testing::router(store, Default::default(), false).await;
        let (cookie, csrf) = server::testing::session(&auth, "fuzz", Role::Admin, &[]).await;
        let token = server::testing::token(&auth, "fuzz-api", Role::Admin, &[]).await;
        (app, cookie, csrf, token)
    });
    Harness {
        rt,
        app,
        cookie,
        csrf,
        token,
        _dir: dir,
    }
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Text as people and programs send it: ordinary, numeric, empty, huge, control characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "[0-9.%bp-]{0,10}",
        Just(String::new()),
        Just("\u{0}\r\n".to_string()),
        "[a-z]{257,300}",
        Just("canary".to_string()),
        Just("v2".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        text().prop_map(serde_json::Value::String),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        any::<i64>().prop_map(|i| serde_json::json!(i)),
        any::<bool>().prop_map(serde_json::Value::Bool),
        Just(serde_json::Value::Null),
        Just(serde_json::json!([1, 2])),
        Just(serde_json::json!({ "a": 1 })),
    ]
}

async fn send(app: &Router, req: Request<Body>) -> (u16, String, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body =
        String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).to_string();
    (status, location, body)
}

fn form_body(fields: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(fields).unwrap()
}

#[test]
fn change_forms_answer_every_input_with_a_redirect_and_a_message() {
    let h = harness();
    let actions = prop::sample::select(vec![
        "canary", "share", "promote", "rollback", "pin", "unpin", "delete", "nope",
    ]);
    let keys = prop::sample::select(vec![
        "revision", "reason", "confirm", "version", "share", "step", "tenant", "pin", "extra",
    ]);
    let fields = prop::collection::vec((keys, text()), 0..8);
    runner()
        .run(&(actions, fields), |(action, mut fields)| {
            fields.push(("csrf", h.csrf.clone()));
            let req = Request::post(format!("/policies/demo-checkout/actions/{action}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, &h.cookie)
                .header(header::HOST, "localhost")
                .header(header::ORIGIN, "http://localhost")
                .body(Body::from(form_body(&fields)))
                .unwrap();
            let (status, location, body) = h.rt.block_on(send(&h.app, req));
            if action == "nope" {
                // An action no form posts has no access rule: refused before any handler.
                prop_assert_eq!(status, 403, "{}", body);
                prop_assert!(body.contains("no access rule"), "{}", body);
                return Ok(());
            }
            prop_assert_eq!(status, 303, "{} {}", location, body);
            let message = location
                .split_once("notice=")
                .or_else(|| location.split_once("error="))
                .map_or("", |(_, m)| m);
            prop_assert!(
                message.len() > 10,
                "a message says what happened: {}",
                location
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn json_writes_answer_every_body_with_a_code_and_never_a_5xx() {
    let h = harness();
    let routes = prop::sample::select(vec![
        ("PUT", "/api/v1/policies/demo-checkout/share"),
        ("PUT", "/api/v1/policies/demo-checkout/canary"),
        ("POST", "/api/v1/policies/demo-checkout/rollback"),
        ("PUT", "/api/v1/policies/demo-checkout/overrides/acme"),
        ("POST", "/api/v1/policies"),
        ("POST", "/api/v1/policies/demo-checkout/outcomes"),
        ("POST", "/api/v1/tokens"),
    ]);
    let keys = prop::sample::select(vec![
        "share",
        "version",
        "pin",
        "reason",
        "name",
        "stable_version",
        "role",
        "outcomes",
        "x",
    ]);
    let bodies = prop_oneof![
        prop::collection::btree_map(keys, json_value(), 0..5)
            .prop_map(|m| serde_json::to_string(&m).unwrap()),
        ".{0,30}",
    ];
    let if_match = prop_oneof![
        Just("\"1\"".to_string()),
        Just("W/\"x\"".to_string()),
        text()
    ];
    runner()
        .run(
            &(routes, bodies, if_match),
            |((method, uri), body, if_match)| {
                let mut req = Request::builder()
                    .method(method)
                    .uri(uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::AUTHORIZATION, format!("Bearer {}", h.token));
                if let Ok(v) = header::HeaderValue::from_str(&if_match) {
                    req = req.header(header::IF_MATCH, v);
                }
                let (status, _, text) =
                    h.rt.block_on(send(&h.app, req.body(Body::from(body.clone())).unwrap()));
                prop_assert!(
                    status < 500,
                    "{} {} {}: {} {}",
                    method,
                    uri,
                    body,
                    status,
                    text
                );
                if status >= 400 {
                    let v: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
                    prop_assert!(v["code"].is_string() && v["error"].is_string(), "{}", text);
                    if v["code"] == "invalid_field" {
                        prop_assert!(v["field"].is_string(), "{}", text);
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn the_decision_api_takes_any_tenant_without_a_5xx() {
    let h = harness();
    let tenants = prop_oneof![
        text(),
        "[^\\p{Cc}]{1,300}",
        Just("%00".to_string()),
        Just("a%20b".to_string())
    ];
    runner()
        .run(&tenants, |tenant| {
            let query = serde_urlencoded::to_string([("tenant", tenant.as_str())]).unwrap();
            let req = Request::get(format!(
                "/api/v1/policies/demo-payment-api/decision?{query}"
            ))
            .header(header::AUTHORIZATION, format!("Bearer {}", h.token))
            .body(Body::empty())
            .unwrap();
            let (status, _, body) = h.rt.block_on(send(&h.app, req));
            prop_assert!(
                status == 200 || status == 422,
                "{:?}: {} {}",
                tenant,
                status,
                body
            );
            if status == 422 {
                prop_assert!(
                    body.contains("\"field\":\"tenant") || body.contains("tenant"),
                    "{}",
                    body
                );
            }
            let batch = serde_json::json!({ "tenants": [tenant] }).to_string();
            let req = Request::post("/api/v1/policies/demo-payment-api/decisions")
                .header(header::AUTHORIZATION, format!("Bearer {}", h.token))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(batch))
                .unwrap();
            let (status, _, body) = h.rt.block_on(send(&h.app, req));
            prop_assert!(
                status == 200 || status == 422,
                "{:?}: {} {}",
                tenant,
                status,
                body
            );
            Ok(())
        })
        .unwrap();
}
