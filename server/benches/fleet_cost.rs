//! What a fleet costs on Firestore: documents read, written and deleted per hour, and the daily
//! bill at list prices, for a simulated fleet of R replicas recording traffic for P policies
//! while D dashboards look at it.
//!
//! `cargo bench -p server --bench fleet_cost` (figures in BENCHMARKS.md).
//!
//! Everything that touches the store is the product's own code: each replica is a real
//! [`app_state`] (snapshot follower, traffic recorder and flusher, traffic reader), and page
//! views call the pages' real server functions. Time is tokio's paused clock, so an hour of
//! fleet time runs in seconds. The store is [`CostStore`], which bills like Firestore: a read
//! per document returned (at least one per query or get) and per changed document sent to each
//! listening replica, a write per document written, a delete per document its TTL policy will
//! delete. Traffic documents are kept without their content (only their number costs), so a
//! fleet of 50 replicas fits in memory. Startup (each replica reads the last 25 h once) is not
//! counted: the first 2 minutes are warm-up.
//!
//! The model of a fleet-hour:
//! - every replica serves every policy every 5 s (all policies active on all replicas);
//! - one operator change per minute, fleet-wide (a share step on one policy);
//! - each dashboard keeps one policy page open, hydrated: its traffic section refreshes every
//!   10 s, and the page re-reads after every change; and once a minute it loads the overview
//!   and a policy page (server-rendered). Dashboard d is served by replica d mod R.

#[path = "support/cost_store.rs"]
mod cost_store;

use cost_store::{CostStore, Counts};
use leptos::prelude::*;
use leptos::reactive::computed::ScopedFuture;
use splitter::ops::{NewPolicy, Operation, Request};
use splitter::store::PolicyStore;
use splitter::{Actor, BasisPoints, PolicyName, Version};
use std::sync::Arc;
use std::time::Duration;

/// Fleet minutes simulated per run (the first 2 are warm-up and not counted).
const MINUTES: u64 = 12;
const WARM_UP: u64 = 2;

/// List prices in dollars per document.
const READ: f64 = 0.06 / 100_000.0;
const WRITE: f64 = 0.18 / 100_000.0;
const DELETE: f64 = 0.02 / 100_000.0;

fn main() {
    // Test runners list targets with `--list`: this is a report, not a test (the cost tests
    // are in `tests/cost.rs`).
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let fleets = [(2, 50, 1), (10, 1_000, 5), (50, 5_000, 20)];
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!("| replicas | policies | dashboards | reads/h | writes/h | deletes/h | $/day |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (r, p, d) in fleets {
        if only.as_ref().is_some_and(|o| *o != format!("{r}x{p}x{d}")) {
            continue;
        }
        let per_hour = simulate(r, p, d);
        let day = 24.0
            * (per_hour.reads as f64 * READ
                + per_hour.writes as f64 * WRITE
                + per_hour.deletes as f64 * DELETE);
        println!(
            "| {r} | {p} | {d} | {} | {} | {} | {day:.2} |",
            per_hour.reads, per_hour.writes, per_hour.deletes
        );
    }
}

/// Documents per hour of fleet time, from a run of [`MINUTES`] minutes.
fn simulate(replicas: usize, policies: usize, dashboards: usize) -> Counts {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(CostStore::new());
        let names = create_policies(&*store, policies).await;
        let mut states = Vec::new();
        for i in 0..replicas {
            let settings = server::TrafficSettings {
                replica: format!("r{i}"),
                ..Default::default()
            };
            states.push(
                server::app_state(store.clone(), store.clone(), settings)
                    .await
                    .unwrap(),
            );
        }
        // Dashboards are spread over the replicas, as a load balancer would.
        let owners: Vec<Owner> = states
            .iter()
            .map(|state| {
                let owner = Owner::new();
                owner.with(|| provide_context(state.clone()));
                owner
            })
            .collect();
        let mut before = Counts::default();
        let start_minute = splitter::traffic::minute_of(jiff::Timestamp::now());
        for second in (0..MINUTES * 60).step_by(5) {
            if second == WARM_UP * 60 {
                before = store.counts();
            }
            // Simulated minutes (the recorder keys traffic by the minute it is given).
            let minute = start_minute + (second / 60) as i64;
            for state in &states {
                for (i, name) in names.iter().enumerate() {
                    let v = if name.len() % 2 == 0 { "v1" } else { "v2" };
                    // Each request from another tenant: every one adds a cohort and a
                    // heavy-hitter entry to its policy's minute (the documents' worst case).
                    let tenant = format!("tenant-{}", (second as usize / 5 * 7_919 + i) % 10_000);
                    let cohort = splitter::cohort::cohort_of(splitter::bucket(name, &tenant).get());
                    let who = splitter::cohort::Who {
                        tenant: Some(&tenant),
                        cohort: Some(cohort),
                    };
                    state.recorder.record_outcome(
                        minute,
                        name,
                        v,
                        who,
                        200,
                        Duration::from_millis(3),
                        splitter::traffic::Via::Layer,
                    );
                }
            }
            if second % 60 == 30 {
                step_one_policy(&*store, &names[(second / 60) as usize % names.len()]).await;
            }
            for d in 0..dashboards {
                let owner = &owners[d % owners.len()];
                let open = &names[d % names.len()];
                let changed = second % 60 == 30;
                if second % 10 == 0 || changed {
                    views(owner, ViewKind::Traffic, open).await;
                }
                if changed {
                    views(owner, ViewKind::Policy, open).await;
                }
                if second % 60 == (d as u64 * 7) % 60 {
                    views(owner, ViewKind::Overview, open).await;
                    views(owner, ViewKind::Policy, &names[(d * 13 + 1) % names.len()]).await;
                    views(owner, ViewKind::Traffic, &names[(d * 13 + 1) % names.len()]).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let counted = store.counts().since(&before);
        let scale = 60.0 / (MINUTES - WARM_UP) as f64;
        counted.scaled(scale)
    })
}

enum ViewKind {
    Overview,
    Policy,
    Traffic,
}

/// One page's server-function call, as the page makes it.
async fn views(owner: &Owner, kind: ViewKind, policy: &str) {
    let policy = policy.to_string();
    let run = owner.with(|| {
        ScopedFuture::new(async move {
            match kind {
                ViewKind::Overview => app::server_fns::list_policies(Default::default())
                    .await
                    .map(|_| ()),
                ViewKind::Policy => app::server_fns::get_policy(policy).await.map(|_| ()),
                ViewKind::Traffic => app::server_fns::policy_traffic(policy, String::new())
                    .await
                    .map(|_| ()),
            }
        })
    });
    run.await.expect("a page view");
}

async fn create_policies(store: &dyn PolicyStore, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("policy-{i:05}");
        store
            .execute(&Request {
                policy: PolicyName::new(&name).unwrap(),
                expected_revision: None,
                operation: Operation::Create(NewPolicy {
                    stable_version: Version::new("v1").unwrap(),
                    canary_version: Some(Version::new("v2").unwrap()),
                    share: BasisPoints::parse("10").unwrap(),
                    salt: None,
                }),
                actor: Actor::new("fleet-sim").unwrap(),
                reason: "fleet cost simulation".into(),
            })
            .await
            .unwrap();
        names.push(name);
    }
    names
}

/// An operator's share step on `name`.
async fn step_one_policy(store: &dyn PolicyStore, name: &str) {
    let name = PolicyName::new(name).unwrap();
    let current = store.get(&name).await.unwrap().unwrap();
    let share = if current.canary_basis_points.get() == 1000 {
        "25"
    } else {
        "10"
    };
    store
        .execute(&Request {
            policy: name,
            expected_revision: Some(current.revision),
            operation: Operation::SetShare {
                share: BasisPoints::parse(share).unwrap(),
            },
            actor: Actor::new("fleet-sim").unwrap(),
            reason: "a rollout step".into(),
        })
        .await
        .unwrap();
}
