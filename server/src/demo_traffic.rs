//! Built-in demo traffic: on the embedded store's demo policies only (never on Firestore, off
//! with `--no-demo-traffic`), a steady stream of requests from many tenants goes through the demo
//! service behind the real routing layer and recorder, in process, so the first pages a new user
//! opens show moving charts. `demo-payment-api`'s canary is slightly worse than its stable
//! version (3 % of its requests fail, and it is about 30 % slower); the others behave alike.

use app::ssr::state::AppState;
use axum::body::Body;
use axum::http::Request;
use std::time::Duration;
use tower::ServiceExt;

/// Ticks per second (requests are spread over them).
const TICKS: u32 = 10;

/// Distinct tenants (`demo-tenant-0` …).
const TENANTS: u64 = 5_000;

/// The demo policies that get traffic, their requests per second, and how the demo service
/// answers each (the query it reads: mean latencies, the canary's error rate).
pub const PROFILES: [(&str, u32, &str); 3] = [
    (
        "demo-payment-api",
        40,
        "latency_ms=40&canary_latency_ms=52&canary_error_rate=0.03",
    ),
    ("demo-search-api", 20, "latency_ms=25"),
    ("demo-checkout", 10, "latency_ms=30"),
];

/// Requests per second over all demo policies.
pub fn per_second() -> u32 {
    PROFILES.iter().map(|(_, rate, _)| rate).sum()
}

/// Whether this server runs the demo traffic: only on the embedded store, only where the demo
/// policies are seeded, and not when turned off.
pub fn enabled(firestore: bool, no_demo: bool, no_demo_traffic: bool) -> bool {
    !firestore && !no_demo && !no_demo_traffic
}

/// The tenant of the `n`-th demo request: spread evenly over [`TENANTS`] (splitmix64).
pub fn tenant(n: u64) -> String {
    format!("demo-tenant-{}", crate::demo::splitmix64(n) % TENANTS)
}

/// Sends each demo policy that exists its [`PROFILES`] rate, until the task is aborted. A
/// policy the user deleted gets no traffic.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    let service = crate::demo::service(&app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / TICKS);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            for (policy, rate, query) in PROFILES {
                if app.splitter.policy(policy).is_none() {
                    continue;
                }
                for _ in 0..rate / TICKS {
                    n += 1;
                    let request = Request::get(format!("/demo/{policy}?{query}"))
                        .header("x-tenant-id", tenant(n))
                        .body(Body::empty());
                    let Ok(request) = request else { continue };
                    // Each request on its own task: the demo service takes its time.
                    tokio::spawn(service.clone().oneshot(request));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_embedded_demo_store_gets_demo_traffic() {
        assert!(enabled(false, false, false));
        assert!(!enabled(true, false, false), "never on Firestore");
        assert!(
            !enabled(false, true, false),
            "no demo policies, no demo traffic"
        );
        assert!(!enabled(false, false, true), "turned off");
    }

    #[test]
    fn tenants_spread_over_many_names() {
        let names: std::collections::BTreeSet<String> = (0..2_000).map(tenant).collect();
        assert!(names.len() > 1_500, "{} distinct of 2000", names.len());
    }
}
