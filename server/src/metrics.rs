//! `GET /metrics` in the Prometheus text format: decisions and served traffic per policy and
//! version, the configured canary share per policy, store calls, snapshot age and the traffic
//! recorder's backlog and losses.

use app::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use splitter::traffic::LATENCY_BOUNDS_US;
use std::fmt::Write;

/// A label value with `\`, `"` and newlines escaped.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(state: &AppState) -> String {
    let mut out = String::with_capacity(16 * 1024);

    family(
        &mut out,
        "apx_canary_decisions_total",
        "counter",
        "Routing decisions handed out, by policy, version and who asked (layer or api).",
    );
    for ((policy, version, via), n) in state.recorder.decisions() {
        let _ = writeln!(
            out,
            "apx_canary_decisions_total{{policy=\"{}\",version=\"{}\",via=\"{via}\"}} {n}",
            esc(&policy),
            esc(&version)
        );
    }

    let totals = state.recorder.totals();
    family(
        &mut out,
        "apx_canary_requests_total",
        "counter",
        "Requests served, by policy and version (through the layer or reported outcomes).",
    );
    for ((policy, version), t) in &totals {
        let _ = writeln!(
            out,
            "apx_canary_requests_total{{policy=\"{}\",version=\"{}\"}} {}",
            esc(policy),
            esc(version),
            t.requests
        );
    }
    family(
        &mut out,
        "apx_canary_errors_total",
        "counter",
        "Requests answered with a 5xx status, by policy and version.",
    );
    for ((policy, version), t) in &totals {
        let _ = writeln!(
            out,
            "apx_canary_errors_total{{policy=\"{}\",version=\"{}\"}} {}",
            esc(policy),
            esc(version),
            t.errors
        );
    }
    family(
        &mut out,
        "apx_canary_request_duration_seconds",
        "histogram",
        "Time to serve a request, by policy and version.",
    );
    for ((policy, version), t) in &totals {
        let labels = format!("policy=\"{}\",version=\"{}\"", esc(policy), esc(version));
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += t.latency.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "apx_canary_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        let _ = writeln!(
            out,
            "apx_canary_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            t.requests
        );
        let _ = writeln!(
            out,
            "apx_canary_request_duration_seconds_sum{{{labels}}} {}",
            t.latency_sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "apx_canary_request_duration_seconds_count{{{labels}}} {}",
            t.requests
        );
    }

    let policies = state.splitter.policies();
    let mut names: Vec<&String> = policies.keys().collect();
    names.sort();
    family(
        &mut out,
        "apx_canary_configured_share_ratio",
        "gauge",
        "The configured canary share per policy (0-1; 0.125 is 12.5 %).",
    );
    for name in &names {
        let c = &policies[*name];
        let share = if c.canary_version.is_some() {
            c.canary_basis_points.fraction()
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "apx_canary_configured_share_ratio{{policy=\"{}\"}} {share}",
            esc(name)
        );
    }
    family(
        &mut out,
        "apx_canary_policy_revision",
        "gauge",
        "The configured revision per policy.",
    );
    for name in &names {
        let _ = writeln!(
            out,
            "apx_canary_policy_revision{{policy=\"{}\"}} {}",
            esc(name),
            policies[*name].revision
        );
    }

    let health = state.splitter.health();
    family(
        &mut out,
        "apx_canary_snapshot_age_seconds",
        "gauge",
        "Time since the routing snapshot last matched the store.",
    );
    let _ = writeln!(
        out,
        "apx_canary_snapshot_age_seconds {}",
        health.age.as_secs_f64()
    );
    family(
        &mut out,
        "apx_canary_snapshot_refresh_failing",
        "gauge",
        "1 while the last refresh of the routing snapshot failed.",
    );
    let _ = writeln!(
        out,
        "apx_canary_snapshot_refresh_failing {}",
        u8::from(health.last_error.is_some())
    );

    let ops = state.store_metrics.snapshot();
    family(
        &mut out,
        "apx_canary_store_calls_total",
        "counter",
        "Store calls by operation.",
    );
    for (op, s) in &ops {
        let _ = writeln!(
            out,
            "apx_canary_store_calls_total{{op=\"{op}\"}} {}",
            s.calls
        );
    }
    family(
        &mut out,
        "apx_canary_store_errors_total",
        "counter",
        "Failed store calls by operation.",
    );
    for (op, s) in &ops {
        let _ = writeln!(
            out,
            "apx_canary_store_errors_total{{op=\"{op}\"}} {}",
            s.errors
        );
    }
    family(
        &mut out,
        "apx_canary_store_seconds_total",
        "counter",
        "Time spent in store calls by operation (divide by calls for the mean latency).",
    );
    for (op, s) in &ops {
        let _ = writeln!(
            out,
            "apx_canary_store_seconds_total{{op=\"{op}\"}} {}",
            s.seconds
        );
    }

    let r = state.recorder.stats();
    family(
        &mut out,
        "apx_canary_recorder_unflushed_requests",
        "gauge",
        "Recorded requests not yet written to the store (the recorder's backlog).",
    );
    let _ = writeln!(
        out,
        "apx_canary_recorder_unflushed_requests {}",
        r.unflushed_requests
    );
    family(
        &mut out,
        "apx_canary_recorder_unflushed_minutes",
        "gauge",
        "Policy-minutes with data not yet written to the store.",
    );
    let _ = writeln!(
        out,
        "apx_canary_recorder_unflushed_minutes {}",
        r.unflushed_minutes
    );
    family(
        &mut out,
        "apx_canary_recorder_lost_requests_total",
        "counter",
        "Recorded requests dropped unwritten to keep memory bounded during a store outage.",
    );
    let _ = writeln!(
        out,
        "apx_canary_recorder_lost_requests_total {}",
        r.lost_requests
    );
    family(
        &mut out,
        "apx_canary_recorder_flush_failures_total",
        "counter",
        "Failed traffic flushes.",
    );
    let _ = writeln!(
        out,
        "apx_canary_recorder_flush_failures_total {}",
        r.flush_failures
    );
    family(
        &mut out,
        "apx_canary_recorder_flushed_writes_total",
        "counter",
        "Traffic documents written by successful flushes.",
    );
    let _ = writeln!(
        out,
        "apx_canary_recorder_flushed_writes_total {}",
        r.flushed_writes
    );
    out
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
