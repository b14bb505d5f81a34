//! A demo service behind the routing layer, so that the load generator (and anyone trying the
//! dashboard) can send traffic that shows up per version: `ANY /demo/{policy}[/…]` with
//! `X-Tenant-ID`. Query parameters make canary misbehave on purpose:
//! `canary_error_rate` (0–1, share of canary requests answered 503), `error_rate` (0–1, share
//! of requests of *either* version answered 503: a tenant that fails whatever it is served),
//! `latency_ms` and `canary_latency_ms` (mean handler time, 0–5000, jittered ±50 %).

use crate::ServerState;
use app::ssr::state::AppState;
use axum::extract::{Extension, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use splitter::layer::{CanaryLayer, PolicySource};
use splitter::Decision;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub fn routes(app: &AppState) -> Router<ServerState> {
    service(app).with_state(())
}

/// The demo service behind the routing layer and this server's recorder, without the server's
/// state: the HTTP routes above and the built-in demo traffic ([`crate::demo_traffic`]) use it.
pub fn service(app: &AppState) -> Router {
    let layer = CanaryLayer::new(Some(app.splitter.clone()), PolicySource::PathSegment(1))
        .recorder(app.recorder.clone());
    Router::new()
        .route("/demo/{policy}", any(serve))
        .route("/demo/{policy}/{*rest}", any(serve))
        .layer(layer)
        // Outside the routing layer: a request for any other policy is not routed or recorded.
        .layer(axum::middleware::from_fn(only_demo_policies))
}

/// The prefix of the policies the demo service serves (the seeded ones, and any an admin names
/// so to try the service): anonymous demo traffic cannot reach, and so cannot steer, a real
/// policy's rollout.
pub const DEMO_PREFIX: &str = "demo-";

/// Refuses (404) a request whose policy segment is not a demo policy. It reads the segment the
/// routing layer reads (`PathSegment(1)`); paths are canonical by then ([`crate::paths`]).
async fn only_demo_policies(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let policy = req.uri().path().split('/').nth(2).unwrap_or_default();
    if policy.starts_with(DEMO_PREFIX) {
        return next.run(req).await;
    }
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": format!("the demo service serves only policies named {DEMO_PREFIX}…, not '{}'", policy.escape_debug()),
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoQuery {
    canary_error_rate: Option<f64>,
    error_rate: Option<f64>,
    latency_ms: Option<u64>,
    canary_latency_ms: Option<u64>,
}

/// splitmix64's output for `n`: consecutive inputs give well-spread, unrelated outputs.
pub fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) that differs per request (splitmix64 over a counter).
fn next_uniform() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let z = splitmix64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (z >> 11) as f64 / (1u64 << 53) as f64
}

async fn serve(
    decision: Option<Extension<Decision>>,
    query: Result<Query<DemoQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": e.body_text() })),
            )
                .into_response()
        }
    };
    let (rate, both) = (
        q.canary_error_rate.unwrap_or(0.0),
        q.error_rate.unwrap_or(0.0),
    );
    for (field, r) in [("canary_error_rate", rate), ("error_rate", both)] {
        if !(0.0..=1.0).contains(&r) {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": format!("{field}: {r} must be between 0 and 1") })),
            )
                .into_response();
        }
    }
    for (field, ms) in [
        ("latency_ms", q.latency_ms),
        ("canary_latency_ms", q.canary_latency_ms),
    ] {
        if ms.is_some_and(|ms| ms > 5_000) {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": format!("{field}: {} is more than 5000", ms.unwrap_or(0)) })),
            )
                .into_response();
        }
    }
    let Some(Extension(d)) = decision else {
        return Json(json!({ "routed": false })).into_response();
    };
    let mean = if d.is_canary {
        q.canary_latency_ms.or(q.latency_ms)
    } else {
        q.latency_ms
    };
    if let Some(ms) = mean.filter(|&ms| ms > 0) {
        let ms = ms as f64 * (0.5 + next_uniform());
        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    }
    let body =
        json!({ "routed": true, "version": d.version, "canary": d.is_canary, "reason": d.reason });
    if (d.is_canary && next_uniform() < rate) || next_uniform() < both {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(body).into_response()
}
