//! A tower layer that routes each request by tenant: it reads the tenant and the policy, asks
//! the [`Splitter`] snapshot (no store round trip), puts the [`Decision`] into the request's
//! extensions for the handler, marks the response (`X-Apx-Canary`, `X-Apx-Canary-Version`) and
//! reports the outcome to a [`Recorder`]. It acts only when the request asks for the `latest`
//! version (or names none); an explicit version passes through untouched.
//!
//! A routed request runs inside a `canary` tracing span with `canary.policy`, `canary.status`
//! (`canary` or `stable`) and `canary.version`, so every log line of the handler carries them.

use crate::cohort::Who;
use crate::config::PolicyConfig;
use crate::decision::Decision;
use crate::names::LATEST;
use crate::snapshot::Splitter;
use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub const CANARY_HEADER: &str = "x-apx-canary";
pub const CANARY_VERSION_HEADER: &str = "x-apx-canary-version";

/// Sets `X-Apx-Canary: true|false` and, on canary, `X-Apx-Canary-Version` (the layer's
/// responses and the JSON decision API mark the same way).
pub fn mark_response(headers: &mut http::HeaderMap, decision: &Decision) {
    headers.insert(
        HeaderName::from_static(CANARY_HEADER),
        HeaderValue::from_static(if decision.is_canary { "true" } else { "false" }),
    );
    if decision.is_canary {
        if let Ok(v) = HeaderValue::from_str(decision.version.as_str()) {
            headers.insert(HeaderName::from_static(CANARY_VERSION_HEADER), v);
        }
    }
}

/// Where the layer finds the policy of a request.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// Always this policy.
    Fixed(String),
    /// The value of this header.
    Header(HeaderName),
    /// This segment of the path, counted from 0 after the leading `/`
    /// (`/policies/{name}/…` is segment 1).
    PathSegment(usize),
}

/// Receives one outcome per routed request (for traffic recording).
pub trait Recorder: Send + Sync + 'static {
    fn record(
        &self,
        policy: &str,
        who: Who<'_>,
        decision: &Decision,
        status: u16,
        latency: Duration,
    );
}

/// The layer's settings. `splitter: None` makes it a pass-through (no decider configured).
#[derive(Clone)]
pub struct CanaryLayer {
    splitter: Option<Splitter>,
    tenant_header: HeaderName,
    version_header: HeaderName,
    policy: PolicySource,
    recorder: Option<Arc<dyn Recorder>>,
}

impl CanaryLayer {
    /// Tenant from `X-Tenant-ID`, requested version from `X-Api-Version`, the given policy source.
    pub fn new(splitter: Option<Splitter>, policy: PolicySource) -> CanaryLayer {
        CanaryLayer {
            splitter,
            tenant_header: HeaderName::from_static("x-tenant-id"),
            version_header: HeaderName::from_static("x-api-version"),
            policy,
            recorder: None,
        }
    }

    pub fn tenant_header(mut self, name: HeaderName) -> Self {
        self.tenant_header = name;
        self
    }

    pub fn version_header(mut self, name: HeaderName) -> Self {
        self.version_header = name;
        self
    }

    pub fn recorder(mut self, recorder: Arc<dyn Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }
}

impl<S> tower_layer::Layer<S> for CanaryLayer {
    type Service = CanaryService<S>;
    fn layer(&self, inner: S) -> CanaryService<S> {
        CanaryService {
            inner,
            config: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CanaryService<S> {
    inner: S,
    config: CanaryLayer,
}

impl CanaryLayer {
    fn policy_of<'a, B>(&'a self, req: &'a Request<B>) -> Option<&'a str> {
        match &self.policy {
            PolicySource::Fixed(p) => Some(p.as_str()),
            PolicySource::Header(h) => req.headers().get(h)?.to_str().ok(),
            PolicySource::PathSegment(i) => req
                .uri()
                .path()
                .trim_start_matches('/')
                .split('/')
                .nth(*i)
                .filter(|s| !s.is_empty()),
        }
    }
}

/// The routed policy: its config from the snapshot (no copy), or the name asked for.
enum RoutedPolicy {
    Known(Arc<PolicyConfig>),
    Unknown(String),
}

impl RoutedPolicy {
    fn name(&self) -> &str {
        match self {
            RoutedPolicy::Known(c) => c.policy_name.as_str(),
            RoutedPolicy::Unknown(n) => n,
        }
    }
}

impl<S, B, RB> tower_service::Service<Request<B>> for CanaryService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = CanaryFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let c = &self.config;
        let wants_latest = req
            .headers()
            .get(&c.version_header)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(LATEST.as_bytes()));
        let routed = match (&c.splitter, wants_latest) {
            (Some(splitter), true) => c.policy_of(&req).map(|policy| {
                let tenant = req
                    .headers()
                    .get(&c.tenant_header)
                    .and_then(|v| v.to_str().ok());
                let (config, decision) = splitter.route(policy, tenant);
                let cohort = config
                    .as_deref()
                    .and_then(|config| Who::of(config, tenant, &decision).cohort);
                let policy = match config {
                    Some(config) => RoutedPolicy::Known(config),
                    None => RoutedPolicy::Unknown(policy.to_string()),
                };
                // A header value's clone shares its bytes: no allocation per request.
                let tenant = req.headers().get(&c.tenant_header).cloned();
                Routed {
                    policy,
                    decision,
                    tenant,
                    cohort,
                }
            }),
            _ => None,
        };
        if let Some(r) = &routed {
            req.extensions_mut().insert(r.decision.clone());
        }
        let span = match &routed {
            Some(Routed {
                policy, decision, ..
            }) => tracing::info_span!(
                "canary",
                canary.policy = %policy.name(),
                canary.status = if decision.is_canary { "canary" } else { "stable" },
                canary.version = %decision.version,
            ),
            None => tracing::Span::none(),
        };
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        CanaryFuture {
            inner,
            span,
            routed,
            recorder: c.recorder.clone(),
            started: Instant::now(),
        }
    }
}

/// The status recorded for a request the inner service failed (`Err`: a transport error, a
/// refused connection): a failure, like a 5xx, so a canary failing that way does not look
/// better than one that answers 500.
pub const FAILED_STATUS: u16 = 502;
/// The status recorded for a request dropped before it finished (a timeout outside the layer,
/// a client gone): counted as a failure too, on either version alike.
pub const CANCELLED_STATUS: u16 = 504;

/// What the layer decided for a request, kept until its outcome is recorded.
struct Routed {
    policy: RoutedPolicy,
    decision: Decision,
    tenant: Option<http::HeaderValue>,
    cohort: Option<u16>,
}

pin_project! {
    pub struct CanaryFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        routed: Option<Routed>,
        recorder: Option<Arc<dyn Recorder>>,
        started: Instant,
    }

    impl<F> PinnedDrop for CanaryFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Still routed here: the request never finished.
            let this = this.project();
            record(this.routed.take(), this.recorder, CANCELLED_STATUS, this.started);
        }
    }
}

fn record(
    routed: Option<Routed>,
    recorder: &Option<Arc<dyn Recorder>>,
    status: u16,
    started: &Instant,
) {
    if let (Some(r), Some(recorder)) = (routed, recorder) {
        let who = Who {
            tenant: r.tenant.as_ref().and_then(|t| t.to_str().ok()),
            cohort: r.cohort,
        };
        recorder.record(r.policy.name(), who, &r.decision, status, started.elapsed());
    }
}

impl<F, RB, E> Future for CanaryFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                record(
                    this.routed.take(),
                    this.recorder,
                    FAILED_STATUS,
                    this.started,
                );
                return Poll::Ready(Err(e));
            }
            Poll::Ready(Ok(r)) => r,
        };
        if let Some(routed) = this.routed.take() {
            mark_response(response.headers_mut(), &routed.decision);
            let status = response.status().as_u16();
            record(Some(routed), this.recorder, status, this.started);
        }
        Poll::Ready(Ok(response))
    }
}
