//! The routing layer keeps the original middleware's behaviours.

mod support;

use http::{Request, Response};
use splitter::cohort::Who;
use splitter::layer::{CanaryLayer, PolicySource, Recorder};
use splitter::snapshot::Splitter;
use splitter::Decision;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Layer, ServiceExt};

/// A handler that answers with the decision it found in the request, or `none`.
async fn handler(req: Request<()>) -> Result<Response<String>, Infallible> {
    let body = match req.extensions().get::<Decision>() {
        Some(d) => format!("{}:{}", d.version, d.is_canary),
        None => "none".to_string(),
    };
    Ok(Response::new(body))
}

fn splitter_at(bp: u16) -> Splitter {
    Splitter::from_configs([support::config("payment-api", Some("v2"), bp)])
}

async fn call(layer: CanaryLayer, req: Request<()>) -> Response<String> {
    layer
        .layer(tower::service_fn(handler))
        .oneshot(req)
        .await
        .unwrap()
}

fn req(tenant: Option<&str>) -> Request<()> {
    let mut b = Request::builder().uri("/policies/payment-api/charge");
    if let Some(t) = tenant {
        b = b.header("X-Tenant-ID", t);
    }
    b.body(()).unwrap()
}

fn header(r: &Response<String>, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn stable_and_canary_tenants() {
    // Buckets under salt payment-api: tenant-124 = 1123, tenant-123 = 3729.
    let layer = CanaryLayer::new(
        Some(splitter_at(2000)),
        PolicySource::Fixed("payment-api".into()),
    );
    let canary = call(layer.clone(), req(Some("tenant-124"))).await;
    assert_eq!(canary.body(), "v2:true");
    assert_eq!(header(&canary, "x-apx-canary").as_deref(), Some("true"));
    assert_eq!(
        header(&canary, "x-apx-canary-version").as_deref(),
        Some("v2")
    );
    let stable = call(layer.clone(), req(Some("tenant-123"))).await;
    assert_eq!(stable.body(), "v1:false");
    assert_eq!(header(&stable, "x-apx-canary").as_deref(), Some("false"));
    assert_eq!(header(&stable, "x-apx-canary-version"), None);
    let anonymous = call(layer, req(None)).await;
    assert_eq!(anonymous.body(), "v1:false", "no tenant is never canary");
}

#[tokio::test]
async fn no_decider_passes_through() {
    let layer = CanaryLayer::new(None, PolicySource::Fixed("payment-api".into()));
    let r = call(layer, req(Some("tenant-124"))).await;
    assert_eq!(r.body(), "none");
    assert_eq!(header(&r, "x-apx-canary"), None);
}

#[tokio::test]
async fn explicit_version_is_left_alone() {
    let layer = CanaryLayer::new(
        Some(splitter_at(10_000)),
        PolicySource::Fixed("payment-api".into()),
    );
    let mut pinned = req(Some("tenant-124"));
    pinned
        .headers_mut()
        .insert("x-api-version", "v1".parse().unwrap());
    let r = call(layer.clone(), pinned).await;
    assert_eq!(r.body(), "none");
    assert_eq!(header(&r, "x-apx-canary"), None);
    let mut latest = req(Some("tenant-124"));
    latest
        .headers_mut()
        .insert("x-api-version", "LATEST".parse().unwrap());
    assert_eq!(call(layer, latest).await.body(), "v2:true");
}

#[tokio::test]
async fn sticky_over_many_requests_and_policy_from_path_or_header() {
    let by_path = CanaryLayer::new(Some(splitter_at(5000)), PolicySource::PathSegment(1));
    let by_header = CanaryLayer::new(
        Some(splitter_at(5000)),
        PolicySource::Header("x-policy".parse().unwrap()),
    );
    for i in 0..50 {
        let tenant = format!("tenant-{i}");
        let first = call(by_path.clone(), req(Some(&tenant))).await.into_body();
        for _ in 0..20 {
            assert_eq!(
                call(by_path.clone(), req(Some(&tenant))).await.into_body(),
                first,
                "{tenant} is sticky"
            );
        }
        let mut r = req(Some(&tenant));
        r.headers_mut()
            .insert("x-policy", "payment-api".parse().unwrap());
        assert_eq!(call(by_header.clone(), r).await.into_body(), first);
    }
    // An unknown policy resolves to `latest`, as the original design did.
    let other = CanaryLayer::new(Some(splitter_at(5000)), PolicySource::Fixed("nope".into()));
    assert_eq!(call(other, req(Some("t"))).await.body(), "latest:false");
}

#[derive(Default)]
struct Collect(Mutex<Vec<(String, String, u16)>>);

impl Recorder for Collect {
    fn record(&self, policy: &str, _who: Who<'_>, d: &Decision, status: u16, _latency: Duration) {
        self.0
            .lock()
            .unwrap()
            .push((policy.to_string(), d.version.to_string(), status));
    }
}

#[tokio::test]
async fn outcomes_are_recorded() {
    let rec = Arc::new(Collect::default());
    let layer = CanaryLayer::new(
        Some(splitter_at(2000)),
        PolicySource::Fixed("payment-api".into()),
    )
    .recorder(rec.clone());
    call(layer.clone(), req(Some("tenant-124"))).await;
    call(layer, req(Some("tenant-123"))).await;
    assert_eq!(
        *rec.0.lock().unwrap(),
        [
            ("payment-api".into(), "v2".into(), 200),
            ("payment-api".into(), "v1".into(), 200)
        ]
    );
}

/// Captures the fields of every span opened, as `name=value` strings.
struct SpanFields(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut Vec<String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push(format!("{}={}", field.name(), value));
    }
}

impl tracing::Subscriber for SpanFields {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = vec![format!("span={}", span.metadata().name())];
        span.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(fields.join(" "));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn routed_requests_run_in_a_span_with_status_and_version() {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(SpanFields(spans.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let layer = CanaryLayer::new(
        Some(splitter_at(2000)),
        PolicySource::Fixed("payment-api".into()),
    );
    runtime.block_on(async {
        call(layer.clone(), req(Some("tenant-124"))).await;
        call(layer.clone(), req(Some("tenant-123"))).await;
        let mut explicit = req(Some("tenant-124"));
        explicit
            .headers_mut()
            .insert("x-api-version", "v1".parse().unwrap());
        call(layer, explicit).await;
    });
    let spans = spans.lock().unwrap().clone();
    assert_eq!(
        spans,
        vec![
            "span=canary canary.policy=payment-api canary.status=canary canary.version=v2",
            "span=canary canary.policy=payment-api canary.status=stable canary.version=v1",
        ],
        "one span per routed request; none for an explicit version"
    );
}

/// A service whose request fails (`Err`), or never finishes.
async fn failing(_: Request<()>) -> Result<Response<String>, &'static str> {
    Err("connection refused")
}

#[tokio::test]
async fn failed_and_cancelled_requests_are_recorded_as_failures() {
    let rec = Arc::new(Collect::default());
    let layer = CanaryLayer::new(
        Some(splitter_at(2000)),
        PolicySource::Fixed("payment-api".into()),
    )
    .recorder(rec.clone());
    let err = layer
        .layer(tower::service_fn(failing))
        .oneshot(req(Some("tenant-124")))
        .await;
    assert!(err.is_err());
    // A request dropped before it finishes (a timeout around the layer, a client gone).
    let never = tower::service_fn(|_: Request<()>| {
        std::future::pending::<Result<Response<String>, Infallible>>()
    });
    let mut svc = layer.layer(never);
    let mut fut = Box::pin(tower::Service::call(&mut svc, req(Some("tenant-123"))));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending(), "it never finishes");
    drop(fut);
    assert_eq!(
        *rec.0.lock().unwrap(),
        [
            (
                "payment-api".into(),
                "v2".into(),
                splitter::layer::FAILED_STATUS
            ),
            (
                "payment-api".into(),
                "v1".into(),
                splitter::layer::CANCELLED_STATUS
            ),
        ]
    );
}
