//! `GET /metrics` in the Prometheus text format: decisions and served traffic per policy and
//! version, the configured canary share per policy, store calls, snapshot age and the traffic
//! recorder's backlog and losses.

use app::ssr::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use splitter::store::instrumented::OpStats;
use splitter::traffic::{VersionTraffic, LATENCY_BOUNDS_US};
use splitter::PolicyConfig;
use std::fmt::{Display, Write};

/// A label value with `\`, `"` and newlines escaped.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `policy="…",version="…"`.
fn pv(policy: &str, version: &str) -> String {
    format!("policy=\"{}\",version=\"{}\"", esc(policy), esc(version))
}

/// A family: name, help, and the value of its sample for each `T`.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// The exposition being written.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// `name{labels} value`, or `name value` without labels.
    fn sample(&mut self, name: &str, labels: &str, value: impl Display) {
        let _ = if labels.is_empty() {
            writeln!(self.0, "{name} {value}")
        } else {
            writeln!(self.0, "{name}{{{labels}}} {value}")
        };
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }
}

/// The whole exposition: one named step per group of families.
pub fn render(state: &AppState) -> String {
    let mut out = Exposition(String::with_capacity(16 * 1024));
    decisions(&mut out, state);
    served(&mut out, state);
    configured(&mut out, state);
    snapshot(&mut out, state);
    store(&mut out, state);
    recorder(&mut out, state);
    out.0
}

fn decisions(out: &mut Exposition, state: &AppState) {
    let name = "apx_canary_decisions_total";
    out.family(
        name,
        "counter",
        "Routing decisions handed out, by policy, version and who asked (layer or api).",
    );
    for ((policy, version, via), n) in state.recorder.decisions() {
        out.sample(name, &format!("{},via=\"{via}\"", pv(&policy, &version)), n);
    }
}

/// Requests, errors and the latency histogram per policy and version.
fn served(out: &mut Exposition, state: &AppState) {
    let totals = state.recorder.totals();
    let counters: [Family<VersionTraffic, u64>; 2] = [
        (
            "apx_canary_requests_total",
            "Requests served, by policy and version (through the layer or reported outcomes).",
            |t| t.requests,
        ),
        (
            "apx_canary_errors_total",
            "Requests answered with a 5xx status, by policy and version.",
            |t| t.errors,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        for ((policy, version), t) in &totals {
            out.sample(name, &pv(policy, version), value(t));
        }
    }
    out.family(
        "apx_canary_request_duration_seconds",
        "histogram",
        "Time to serve a request, by policy and version.",
    );
    for ((policy, version), t) in &totals {
        histogram(out, &pv(policy, version), t);
    }
}

fn histogram(out: &mut Exposition, labels: &str, t: &VersionTraffic) {
    let bucket = "apx_canary_request_duration_seconds_bucket";
    let mut cumulative = 0u64;
    for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
        cumulative += t.latency.get(i).copied().unwrap_or(0);
        out.sample(
            bucket,
            &format!("{labels},le=\"{}\"", *bound as f64 / 1e6),
            cumulative,
        );
    }
    out.sample(bucket, &format!("{labels},le=\"+Inf\""), t.requests);
    out.sample(
        "apx_canary_request_duration_seconds_sum",
        labels,
        t.latency_sum_us as f64 / 1e6,
    );
    out.sample(
        "apx_canary_request_duration_seconds_count",
        labels,
        t.requests,
    );
}

/// The configured share and revision per policy, from the routing snapshot.
fn configured(out: &mut Exposition, state: &AppState) {
    let policies = state.splitter.policies();
    let mut names: Vec<&String> = policies.keys().collect();
    names.sort();
    let gauges: [Family<PolicyConfig, f64>; 2] = [
        (
            "apx_canary_configured_share_ratio",
            "The configured canary share per policy (0-1; 0.125 is 12.5 %).",
            |c| c.effective_share().fraction(),
        ),
        (
            "apx_canary_policy_revision",
            "The configured revision per policy.",
            |c| c.revision as f64,
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        for policy in &names {
            let labels = format!("policy=\"{}\"", esc(policy));
            out.sample(name, &labels, value(&policies[*policy]));
        }
    }
}

fn snapshot(out: &mut Exposition, state: &AppState) {
    let health = state.splitter.health();
    out.single(
        "apx_canary_snapshot_age_seconds",
        "gauge",
        "How old the routing snapshot may be: time since the store last answered (the change feed keeps the snapshot current while it does).",
        state.snapshot_age().as_secs_f64(),
    );
    out.single(
        "apx_canary_snapshot_refresh_failing",
        "gauge",
        "1 while the last refresh of the routing snapshot failed.",
        u8::from(health.last_error.is_some()),
    );
}

fn store(out: &mut Exposition, state: &AppState) {
    let ops = state.store_metrics.snapshot();
    let store_families: [Family<OpStats, String>; 3] = [
        (
            "apx_canary_store_calls_total",
            "Store calls by operation.",
            |s| s.calls.to_string(),
        ),
        (
            "apx_canary_store_errors_total",
            "Failed store calls by operation.",
            |s| s.errors.to_string(),
        ),
        (
            "apx_canary_store_seconds_total",
            "Time spent in store calls by operation (divide by calls for the mean latency).",
            |s| s.seconds.to_string(),
        ),
    ];
    for (name, help, value) in store_families {
        out.family(name, "counter", help);
        for (op, s) in &ops {
            out.sample(name, &format!("op=\"{op}\""), value(s));
        }
    }
    let docs = state.store_metrics.documents();
    let name = "apx_canary_store_documents_total";
    out.family(
        name,
        "counter",
        "Store documents read, written and deleted, as Firestore bills them (a query is at least one read).",
    );
    for (kind, n) in [
        ("read", docs.read),
        ("written", docs.written),
        ("deleted", docs.deleted),
    ] {
        out.sample(name, &format!("kind=\"{kind}\""), n);
    }
    out.single(
        "apx_canary_store_unreachable",
        "gauge",
        "1 while calls to the store fail because it cannot be reached.",
        u8::from(state.outage().is_some()),
    );
}

fn recorder(out: &mut Exposition, state: &AppState) {
    let r = state.recorder.stats();
    let families: [(&str, &str, &str, u64); 5] = [
        (
            "apx_canary_recorder_unflushed_requests",
            "gauge",
            "Recorded requests not yet written to the store (the recorder's backlog).",
            r.unflushed_requests,
        ),
        (
            "apx_canary_recorder_unflushed_minutes",
            "gauge",
            "Policy-minutes with data not yet written to the store.",
            r.unflushed_minutes as u64,
        ),
        (
            "apx_canary_recorder_lost_requests_total",
            "counter",
            "Recorded requests dropped unwritten to keep memory bounded during a store outage.",
            r.lost_requests,
        ),
        (
            "apx_canary_recorder_flush_failures_total",
            "counter",
            "Failed traffic flushes.",
            r.flush_failures,
        ),
        (
            "apx_canary_recorder_flushed_writes_total",
            "counter",
            "Traffic documents written by successful flushes.",
            r.flushed_writes,
        ),
    ];
    for (name, kind, help, value) in families {
        out.single(name, kind, help, value);
    }
}

/// `GET /metrics`: open, or with `APX_METRICS_TOKEN` set, only with that bearer token.
pub async fn metrics(
    State(state): State<AppState>,
    State(auth): State<std::sync::Arc<crate::auth::Auth>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Some(expected) = &auth.metrics_token {
        let given = crate::auth::bearer(&headers).unwrap_or("");
        if !crate::auth::credentials::same_secret(given, expected) {
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <APX_METRICS_TOKEN>\n",
            )
                .into_response();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state),
    )
        .into_response()
}
