//! IAP mode with tokens signed here by a locally generated P-256 key: a valid assertion signs
//! the user in with the mapped role; an expired, wrong-audience, wrong-issuer, unknown-key or
//! unsigned one is refused, and so is the plain e-mail header on its own. A proxy user's writes
//! need its CSRF token like any browser's.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use server::auth::iap::{Iap, ASSERTION_HEADER, GOOGLE_ISSUER};
use server::auth::{Auth, DENIED_HEADER};
use splitter::store::embedded::EmbeddedStore;
use std::sync::Arc;
use tower::ServiceExt;

const AUDIENCE: &str = "/projects/123/global/backendServices/456";

struct Signer {
    key: EncodingKey,
    jwks: String,
}

fn signer(kid: &str) -> Signer {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = format!(
        r#"{{"keys":[{{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"{kid}","x":"{}","y":"{}"}}]}}"#,
        b64(&point[1..33]),
        b64(&point[33..65])
    );
    Signer {
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwks,
    }
}

fn assertion(
    s: &Signer,
    kid: &str,
    email: &str,
    aud: &str,
    iss: &str,
    iat: i64,
    exp: i64,
) -> String {
    let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(kid.into());
    let claims = serde_json::json!({ "email": email, "aud": aud, "iss": iss, "iat": iat, "exp": exp, "sub": "accounts.google.com:1" });
    encode(&h, &claims, &s.key).unwrap()
}

async fn app(jwks: &str) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("c.redb")).unwrap());
    let mut auth = Auth::new(store.clone());
    let roles = [
        "operator=olga@example.com".to_string(),
        "viewer=@example.com".to_string(),
    ];
    auth.enable_iap(Iap::new(AUDIENCE, jwks, &roles).unwrap())
        .await
        .unwrap();
    let (router, _) = server::testing::router_with(store, Default::default(), false, auth).await;
    (router, dir)
}

async fn get(
    app: &Router,
    assertion: Option<&str>,
    extra: Option<(&str, &str)>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get("/api/v1/session");
    if let Some(a) = assertion {
        req = req.header(ASSERTION_HEADER, a);
    }
    if let Some((k, v)) = extra {
        req = req.header(k, v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let denied = res
        .headers()
        .get(DENIED_HEADER)
        .map(|v| v.to_str().unwrap().to_string());
    let body =
        String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).to_string();
    (status, denied, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_are_verified_before_anyone_is_signed_in() {
    let s = signer("k1");
    let (app, _dir) = app(&s.jwks).await;
    let now = jiff::Timestamp::now().as_second();
    let good =
        |email: &str| assertion(&s, "k1", email, AUDIENCE, GOOGLE_ISSUER, now - 5, now + 600);

    let (status, _, body) = get(&app, Some(&good("olga@example.com")), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("\"name\":\"olga@example.com\"")
            && body.contains("\"role\":\"operator\"")
            && body.contains("\"via\":\"iap\""),
        "{body}"
    );
    let (_, _, body) = get(&app, Some(&good("vic@example.com")), None).await;
    assert!(
        body.contains("\"role\":\"viewer\""),
        "the domain mapping: {body}"
    );
    let (status, denied, body) = get(&app, Some(&good("eve@elsewhere.org")), None).await;
    assert_eq!(
        (status, denied.as_deref()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{body}"
    );
    assert!(body.contains("has no role here"), "{body}");

    let other = signer("k1");
    let refused = [
        (
            "expired",
            assertion(
                &s,
                "k1",
                "olga@example.com",
                AUDIENCE,
                GOOGLE_ISSUER,
                now - 7200,
                now - 3600,
            ),
        ),
        (
            "wrong audience",
            assertion(
                &s,
                "k1",
                "olga@example.com",
                "/projects/999/x",
                GOOGLE_ISSUER,
                now,
                now + 600,
            ),
        ),
        (
            "wrong issuer",
            assertion(
                &s,
                "k1",
                "olga@example.com",
                AUDIENCE,
                "https://evil.example",
                now,
                now + 600,
            ),
        ),
        (
            "issued in the future",
            assertion(
                &s,
                "k1",
                "olga@example.com",
                AUDIENCE,
                GOOGLE_ISSUER,
                now + 3600,
                now + 7200,
            ),
        ),
        (
            "unknown key",
            assertion(
                &s,
                "k2",
                "olga@example.com",
                AUDIENCE,
                GOOGLE_ISSUER,
                now,
                now + 600,
            ),
        ),
        (
            "another key under the same kid",
            assertion(
                &other,
                "k1",
                "olga@example.com",
                AUDIENCE,
                GOOGLE_ISSUER,
                now,
                now + 600,
            ),
        ),
        ("unsigned", {
            let b64 = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t);
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","kid":"k1"}"#),
                b64(&format!(
                    r#"{{"email":"olga@example.com","aud":"{AUDIENCE}","iss":"{GOOGLE_ISSUER}","iat":{now},"exp":{}}}"#,
                    now + 600
                ))
            )
        }),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, a) in refused {
        let (status, denied, body) = get(&app, Some(&a), None).await;
        assert_eq!(
            (status, denied.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
            "{what}: {body}"
        );
    }
    let (status, _, _) = get(
        &app,
        None,
        Some((
            "x-goog-authenticated-user-email",
            "accounts.google.com:olga@example.com",
        )),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the plain e-mail header alone signs nobody in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_users_writes_need_its_csrf_token() {
    let s = signer("k1");
    let (app, _dir) = app(&s.jwks).await;
    let now = jiff::Timestamp::now().as_second();
    let a = assertion(
        &s,
        "k1",
        "olga@example.com",
        AUDIENCE,
        GOOGLE_ISSUER,
        now,
        now + 600,
    );
    let (_, _, body) = get(&app, Some(&a), None).await;
    let csrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let post = |csrf: &str| {
        Request::post("/policies/demo-payment-api/actions/share")
            .header(ASSERTION_HEADER, &a)
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, "http://localhost")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "revision=1&reason=r&confirm=yes&share=20&csrf={csrf}"
            )))
            .unwrap()
    };
    let forged = app.clone().oneshot(post("forged")).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let ok = app.clone().oneshot(post(&csrf)).await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let location = ok.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert!(
        location.contains("notice=Canary%20share%20set%20to%2020%25"),
        "{location}"
    );
}
