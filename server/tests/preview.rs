//! The simulator's request preview, in-process: tenants' requests go through the real recorder
//! (`record_outcome` with each tenant's `Who`), are flushed to the store and read back into the
//! traffic cache; the simulator page (server-rendered from `?share=`) and its server function
//! then say how much of the traffic the canary would get and which busy tenant moves.

use app::access::Role;
use axum::body::Body;
use axum::http::{header, Request};
use http_body_util::BodyExt;
use splitter::cohort::Who;
use splitter::store::embedded::EmbeddedStore;
use splitter::store::Store;
use splitter::traffic::{minute_of, Via};
use splitter::{Actor, BasisPoints, NewPolicy, Operation, Pin, PolicyName, TenantId, Version};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const POLICY: &str = "checkout-api";

fn request(revision: Option<u64>, operation: Operation) -> splitter::Request {
    splitter::Request {
        policy: PolicyName::new(POLICY).unwrap(),
        expected_revision: revision,
        operation,
        actor: Actor::new("alice").unwrap(),
        reason: "test".into(),
    }
}

/// The first `tenant-N` whose bucket under `salt` is in `range`.
fn tenant_in(salt: &str, range: std::ops::Range<u16>, not: &[&str]) -> String {
    (1..)
        .map(|i| format!("tenant-{i}"))
        .find(|t| range.contains(&splitter::bucket(salt, t).get()) && !not.contains(&t.as_str()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_previews_requests_and_the_busy_tenants_that_move() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap());
    let state = server::app_state(
        store.clone(),
        store.clone(),
        server::testing::quiet("preview"),
    )
    .await
    .unwrap();
    let new = NewPolicy {
        stable_version: Version::new("v1").unwrap(),
        canary_version: Some(Version::new("v2").unwrap()),
        share: BasisPoints::new(500).unwrap(),
        salt: None,
    };
    let c = state
        .execute(&request(None, Operation::Create(new)))
        .await
        .unwrap()
        .unwrap();
    // Two busy tenants on stable at 5 % whose buckets are below 50 %: one pinned to stable.
    let big = tenant_in(&c.salt, 1_000..4_000, &[]);
    let pinned = tenant_in(&c.salt, 1_000..4_000, &[&big]);
    let pin = Operation::Pin {
        tenant: TenantId::new(&pinned).unwrap(),
        pin: Pin::Stable,
    };
    let c = state
        .execute(&request(Some(c.revision), pin))
        .await
        .unwrap()
        .unwrap();
    // Three complete minutes: 300 requests a minute from `big`, 100 from `pinned`, and one
    // each from 600 light tenants.
    let now = jiff::Timestamp::now();
    let this_minute = minute_of(now);
    let light: Vec<String> = (0..600).map(|i| format!("light-{i}")).collect();
    let mut per_minute: Vec<&str> = vec![big.as_str(); 300];
    per_minute.extend(std::iter::repeat_n(pinned.as_str(), 100));
    per_minute.extend(light.iter().map(String::as_str));
    for minute in this_minute - 3..this_minute {
        for tenant in &per_minute {
            let decision = splitter::decide(Some(&c), Some(tenant));
            state.recorder.record_outcome(
                minute,
                POLICY,
                decision.version.as_str(),
                Who::of(&c, Some(tenant), &decision),
                200,
                Duration::from_millis(5),
                Via::Layer,
            );
        }
    }
    state
        .recorder
        .flush(&*state.traffic_store, this_minute)
        .await
        .unwrap();
    state
        .traffic
        .refresh(&*state.traffic_store, jiff::Timestamp::now())
        .await
        .unwrap();

    // 50 % is a cohort boundary: the estimate is exact. The canary gets `big` and the light
    // tenants below bucket 5 000; `pinned` stays on stable.
    let below = |t: &&String| splitter::bucket(&c.salt, t).get() < 5_000;
    let expected = (300 + light.iter().filter(below).count()) as f64 / 1_000.0;
    let preview = app::ssr::preview::request_preview(&state, POLICY, "50", now).unwrap();
    let about = format!("about {:.1}% of requests", expected * 100.0);
    assert!(
        preview.summary.starts_with("At 50%, the canary would get ")
            && preview.summary.contains(&about),
        "{about}: {}",
        preview.summary
    );
    assert!(
        preview
            .summary
            .contains("based on the last 3 minutes (of 60) with traffic, 3000 requests"),
        "{}",
        preview.summary
    );
    assert_eq!(preview.movers_lead, "Tenants that move to canary include:");
    assert_eq!(
        preview.movers[0],
        (big.clone(), "30.0% of requests, ~300 requests/min".into())
    );
    assert!(
        preview.movers.iter().all(|(t, _)| *t != pinned),
        "a pinned tenant does not follow the share: {:?}",
        preview.movers
    );

    // The page, without JavaScript: rendered from the GET form's `share`.
    let (router, auth) = {
        let auth = Arc::new(server::auth::Auth::new(store.clone()));
        let leptos = leptos::config::LeptosOptions::builder()
            .output_name("apx-canary")
            .site_root("target/site")
            .build();
        (
            server::router(leptos, state.clone(), auth.clone(), false),
            auth,
        )
    };
    let token = server::testing::token(&auth, "viewer", Role::Viewer, &[]).await;
    let get = Request::get(format!("/policies/{POLICY}/simulate?share=50"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(get).await.unwrap();
    assert_eq!(res.status(), 200);
    let page =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(page.contains("data-test=\"request-preview\""), "{page}");
    assert!(page.contains(&about), "the page shows {about}");
    assert!(page.contains(&format!("data-tenant=\"{big}\"")));

    // Once hydrated, the page asks its server function as the share changes.
    let path = leptos::server_fn::axum::server_fn_paths()
        .map(|(p, _)| p)
        .find(|p| p.starts_with("/api/request_preview"))
        .unwrap()
        .to_string();
    let post = Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("name={POLICY}&share=50")))
        .unwrap();
    let res = router.clone().oneshot(post).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let answer: Option<String> = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer, Some(preview.html()));

    // Today's share: nobody moves; a share that does not parse: no preview (the page says why).
    let today = app::ssr::preview::request_preview(&state, POLICY, "", now).unwrap();
    assert!(
        today.summary.starts_with("At 5%, the canary"),
        "{}",
        today.summary
    );
    assert_eq!(today.movers_lead, "None of the busiest tenants moves.");
    assert_eq!(
        app::ssr::preview::request_preview(&state, POLICY, "half", now),
        None
    );
    assert_eq!(
        app::ssr::preview::request_preview(&state, "nope", "50", now),
        None
    );
}
