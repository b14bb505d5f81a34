//! `GET /metrics` in the Prometheus text format: decisions and served traffic per policy and
//! version, the configured canary share per policy, store calls, snapshot age and the traffic
//! recorder's backlog and losses.

use app::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use splitter::store::instrumented::OpStats;
use splitter::traffic::LATENCY_BOUNDS_US;
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

/// A store-operation family: name, help, and the value it takes from each operation.
type StoreFamily = (&'static str, &'static str, fn(&OpStats) -> String);

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

pub fn render(state: &AppState) -> String {
    let mut out = Exposition(String::with_capacity(16 * 1024));

    let name = "apx_canary_decisions_total";
    out.family(
        name,
        "counter",
        "Routing decisions handed out, by policy, version and who asked (layer or api).",
    );
    for ((policy, version, via), n) in state.recorder.decisions() {
        out.sample(name, &format!("{},via=\"{via}\"", pv(&policy, &version)), n);
    }

    let totals = state.recorder.totals();
    let name = "apx_canary_requests_total";
    out.family(
        name,
        "counter",
        "Requests served, by policy and version (through the layer or reported outcomes).",
    );
    for ((policy, version), t) in &totals {
        out.sample(name, &pv(policy, version), t.requests);
    }
    let name = "apx_canary_errors_total";
    out.family(
        name,
        "counter",
        "Requests answered with a 5xx status, by policy and version.",
    );
    for ((policy, version), t) in &totals {
        out.sample(name, &pv(policy, version), t.errors);
    }
    out.family(
        "apx_canary_request_duration_seconds",
        "histogram",
        "Time to serve a request, by policy and version.",
    );
    for ((policy, version), t) in &totals {
        let labels = pv(policy, version);
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
            &labels,
            t.latency_sum_us as f64 / 1e6,
        );
        out.sample(
            "apx_canary_request_duration_seconds_count",
            &labels,
            t.requests,
        );
    }

    let policies = state.splitter.policies();
    let mut names: Vec<&String> = policies.keys().collect();
    names.sort();
    let name = "apx_canary_configured_share_ratio";
    out.family(
        name,
        "gauge",
        "The configured canary share per policy (0-1; 0.125 is 12.5 %).",
    );
    for policy in &names {
        let c = &policies[*policy];
        let share = if c.canary_version.is_some() {
            c.canary_basis_points.fraction()
        } else {
            0.0
        };
        out.sample(name, &format!("policy=\"{}\"", esc(policy)), share);
    }
    let name = "apx_canary_policy_revision";
    out.family(name, "gauge", "The configured revision per policy.");
    for policy in &names {
        out.sample(
            name,
            &format!("policy=\"{}\"", esc(policy)),
            policies[*policy].revision,
        );
    }

    let health = state.splitter.health();
    out.single(
        "apx_canary_snapshot_age_seconds",
        "gauge",
        "Time since the routing snapshot last matched the store.",
        health.age.as_secs_f64(),
    );
    out.single(
        "apx_canary_snapshot_refresh_failing",
        "gauge",
        "1 while the last refresh of the routing snapshot failed.",
        u8::from(health.last_error.is_some()),
    );

    let ops = state.store_metrics.snapshot();
    let store_families: [StoreFamily; 3] = [
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

    let r = state.recorder.stats();
    out.single(
        "apx_canary_recorder_unflushed_requests",
        "gauge",
        "Recorded requests not yet written to the store (the recorder's backlog).",
        r.unflushed_requests,
    );
    out.single(
        "apx_canary_recorder_unflushed_minutes",
        "gauge",
        "Policy-minutes with data not yet written to the store.",
        r.unflushed_minutes,
    );
    out.single(
        "apx_canary_recorder_lost_requests_total",
        "counter",
        "Recorded requests dropped unwritten to keep memory bounded during a store outage.",
        r.lost_requests,
    );
    out.single(
        "apx_canary_recorder_flush_failures_total",
        "counter",
        "Failed traffic flushes.",
        r.flush_failures,
    );
    out.single(
        "apx_canary_recorder_flushed_writes_total",
        "counter",
        "Traffic documents written by successful flushes.",
        r.flushed_writes,
    );
    out.0
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state),
    )
}
