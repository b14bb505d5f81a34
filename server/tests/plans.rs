//! Rollout plans run by the controller, end to end on both stores, on a fake clock (each tick
//! is given its time) and traffic put into the replica's traffic cache: a healthy canary walks
//! the preset to promotion, a failing one is rolled back with its numbers in the history, two
//! replicas land exactly one move per step, and a person's rollback mid-hold stops the plan.

use splitter::cohort::{self, Counts, Detail, Heavy};
use splitter::plans::{preset, AtEnd, Move, Status};
use splitter::store::embedded::EmbeddedStore;
use splitter::store::Store;
use splitter::traffic::{minute_of, ReplicaMinute, VersionTraffic};
use splitter::{Actor, BasisPoints, NewPolicy, Operation, PolicyName, Request, Version};
use std::sync::Arc;
use std::time::Duration;

async fn replica(store: Arc<dyn Store>) -> app::ssr::state::AppState {
    // The test drives the controller and the traffic itself.
    let settings = server::testing::quiet("plans");
    server::app_state(store.clone(), store, settings)
        .await
        .unwrap()
}

fn request(name: &str, revision: Option<u64>, operation: Operation) -> Request {
    Request {
        policy: PolicyName::new(name).unwrap(),
        expected_revision: revision,
        operation,
        actor: Actor::new("alice").unwrap(),
        reason: "test".into(),
    }
}

/// A staged policy (canary v2 at 0 %) running the preset with 30-s-scale holds.
async fn start(state: &app::ssr::state::AppState, name: &str) {
    let new = NewPolicy {
        stable_version: Version::new("v1").unwrap(),
        canary_version: Some(Version::new("v2").unwrap()),
        share: BasisPoints::ZERO,
        salt: None,
    };
    let c = state
        .execute(&request(name, None, Operation::Create(new)))
        .await
        .unwrap()
        .unwrap();
    let plan = Operation::StartPlan {
        steps: preset(1.0 / 30.0),
        at_end: AtEnd::Promote,
    };
    state
        .execute(&request(name, Some(c.revision), plan))
        .await
        .unwrap();
}

/// Traffic by cohort, as the replicas would have recorded it around the current step: the 30
/// baseline minutes before the step's share was set with every tenant on stable, and the
/// step's minutes (`minutes` of them) at its share, the canary failing at `canary_error_rate`.
/// Every cohort sends 5 requests a minute (5 000 in all); stable fails 0.2 %. Written again at
/// each step (a newer flush of the same minutes replaces the older one).
fn traffic(state: &app::ssr::state::AppState, name: &str, canary_error_rate: f64, minutes: i64) {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let c = state.config(name).unwrap();
    let (_, entered) = c.plan.as_ref().unwrap().step_entered().unwrap();
    let share = c.canary_basis_points.get();
    let first = minute_of(entered);
    let docs = (first - 30..first + minutes).map(|minute| {
        let (mut v1, mut v2) = (VersionTraffic::default(), VersionTraffic::default());
        let mut detail = Detail::default();
        for k in 0..cohort::COHORTS {
            let on_canary = minute >= first && cohort::buckets_of(k).1 <= share;
            // `rate` of requests fail: the first `5 × rate` of each cohort's five if that is
            // one or more, else one request in 1/rate, spread over cohorts and minutes.
            let fails = |i: u64| {
                let rate = if on_canary { canary_error_rate } else { 0.002 };
                if rate * 5.0 >= 1.0 {
                    (i as f64) < rate * 5.0
                } else {
                    (i64::from(k) * 5 + i as i64 + minute).rem_euclid((1.0 / rate) as i64) == 0
                }
            };
            let mut counts = Counts::default();
            for i in 0..5u64 {
                let status = if fails(i) { 503 } else { 200 };
                counts.record(status, Duration::from_millis(20));
                let t = if on_canary { &mut v2 } else { &mut v1 };
                t.record(status, Duration::from_millis(20));
            }
            let version = if on_canary { "v2" } else { "v1" };
            if k == 0 {
                // Cohort 0's traffic is one tenant's, among each minute's heaviest.
                detail.heavy.push(Heavy {
                    tenant: "acme".into(),
                    version: version.into(),
                    counts: counts.clone(),
                });
            }
            detail
                .cohorts
                .entry(version.to_string())
                .or_default()
                .insert(k, counts);
        }
        ReplicaMinute {
            minute,
            replica: format!("load-{name}"),
            shard: 0,
            shards: 1,
            seq,
            written_at: minute * 60 + 59,
            policies: [(
                name.to_string(),
                [("v1".to_string(), v1), ("v2".to_string(), v2)].into(),
            )]
            .into(),
            detail: [(name.to_string(), detail)].into(),
        }
    });
    state.traffic.apply(docs);
}

/// A time when the current step's hold is over and its first minutes are complete.
fn hold_over(state: &app::ssr::state::AppState, name: &str) -> jiff::Timestamp {
    let c = state.config(name).unwrap();
    let plan = c.plan.unwrap();
    let Status::Running { step, since, .. } = plan.status else {
        panic!("not running: {:?}", plan.status)
    };
    let hold = since + jiff::SignedDuration::from_secs(i64::from(plan.steps[step].hold_secs) + 1);
    let complete = jiff::Timestamp::from_second((minute_of(since) + 2) * 60 + 10).unwrap();
    hold.max(complete)
}

async fn a_healthy_canary_is_promoted(store: Arc<dyn Store>) {
    let state = replica(store).await;
    start(&state, "healthy").await;
    let mut shares = vec![state
        .config("healthy")
        .unwrap()
        .canary_basis_points
        .to_string()];
    for _ in 0..4 {
        traffic(&state, "healthy", 0.002, 10);
        let moves = server::controller::tick(&state, hold_over(&state, "healthy")).await;
        assert!(
            matches!(moves.as_slice(), [(_, Move::Advance(_))]),
            "{moves:?}"
        );
        shares.push(
            state
                .config("healthy")
                .unwrap()
                .canary_basis_points
                .to_string(),
        );
    }
    assert_eq!(shares, ["5%", "10%", "50%", "100%", "0%"]);
    let c = state.config("healthy").unwrap();
    assert_eq!(c.stable_version.as_str(), "v2", "promoted");
    assert!(
        matches!(&c.plan.unwrap().status, Status::Ended { how, .. } if how.starts_with("promoted"))
    );
    let events = state
        .events(&state.config("healthy").unwrap())
        .await
        .unwrap();
    assert_eq!(events[0].actor.as_str(), "plan of healthy");
    assert!(
        events[3].reason.contains("moved tenants: 5xx"),
        "the verdict's numbers: {}",
        events[3].reason
    );
}

async fn a_failing_canary_is_rolled_back_with_its_numbers(store: Arc<dyn Store>) {
    let state = replica(store).await;
    start(&state, "failing").await;
    traffic(&state, "failing", 0.2, 5);
    // On the first complete minute.
    let moves = server::controller::tick(&state, hold_over(&state, "failing")).await;
    assert!(
        matches!(moves.as_slice(), [(_, Move::RollBack(_))]),
        "{moves:?}"
    );
    let c = state.config("failing").unwrap();
    assert_eq!(
        (c.canary_basis_points, c.rolled_back),
        (BasisPoints::ZERO, true)
    );
    let events = state.events(&c).await.unwrap();
    assert_eq!(events[0].action, "abort_plan");
    assert!(
        events[0]
            .reason
            .starts_with("rolled back automatically: 5xx rate: the moved tenants went from 0.")
            && events[0]
                .reason
                .contains("% before the step to 20.00% on the canary (100 5xx in 500 requests)"),
        "{}",
        events[0].reason
    );
}

async fn two_replicas_land_one_move(store: Arc<dyn Store>) {
    let (a, b) = (replica(store.clone()).await, replica(store).await);
    start(&a, "shared").await;
    // b learns of the plan through the store's change feed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.config("shared").and_then(|c| c.plan).is_none() {
        assert!(std::time::Instant::now() < deadline, "b never saw the plan");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    traffic(&a, "shared", 0.002, 10);
    traffic(&b, "shared", 0.002, 10);
    let at = hold_over(&a, "shared");
    let (ma, mb) = tokio::join!(
        server::controller::tick(&a, at),
        server::controller::tick(&b, at)
    );
    assert_eq!(
        ma.len() + mb.len(),
        1,
        "exactly one move lands: {ma:?} {mb:?}"
    );
    let events = a
        .store
        .events(&PolicyName::new("shared").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(
        events.iter().filter(|e| e.action == "advance_plan").count(),
        1
    );

    // a is gone (it judges no more): b carries the plan on from the stored state.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(
        b.config("shared").and_then(|c| c.plan).map(|p| p.status),
        Some(Status::Running { step: 1, .. })
    ) {
        assert!(std::time::Instant::now() < deadline, "b never saw step 2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    traffic(&b, "shared", 0.002, 10);
    let moves = server::controller::tick(&b, hold_over(&b, "shared")).await;
    assert!(
        matches!(moves.as_slice(), [(_, Move::Advance(_))]),
        "{moves:?}"
    );
    assert_eq!(
        b.config("shared").unwrap().canary_basis_points.to_string(),
        "50%"
    );
}

async fn a_person_stops_the_plan(store: Arc<dyn Store>) {
    let state = replica(store).await;
    start(&state, "manual").await;
    traffic(&state, "manual", 0.002, 10);
    let c = state.config("manual").unwrap();
    state
        .execute(&request("manual", Some(c.revision), Operation::Rollback))
        .await
        .unwrap();
    let moves = server::controller::tick(&state, hold_over_or_later(&state)).await;
    assert!(moves.is_empty(), "{moves:?}");
    let c = state.config("manual").unwrap();
    assert!(
        matches!(&c.plan.unwrap().status, Status::Ended { how, .. } if how == "stopped by a manual rollback by alice")
    );
    assert_eq!(c.canary_basis_points, BasisPoints::ZERO);
}

fn hold_over_or_later(_: &app::ssr::state::AppState) -> jiff::Timestamp {
    jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)
}

fn embedded() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        Arc::new(EmbeddedStore::open(dir.path().join("canary.redb")).unwrap()),
        dir,
    )
}

async fn firestore(test: &str) -> Arc<dyn Store> {
    // Project ids are short and plain: the scenario's initials and the process.
    let initials: String = test.split('_').filter_map(|w| w.chars().next()).collect();
    server::testing::firestore(&format!("plans-{initials}-{}", std::process::id())).await
}

macro_rules! on_both_stores {
    ($($scenario:ident),*) => {
        mod embedded_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let (store, _dir) = super::embedded();
                super::$scenario(store).await;
            })*
        }
        mod firestore_emulator {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                super::$scenario(super::firestore(stringify!($scenario)).await).await;
            })*
        }
    };
}

on_both_stores!(
    a_healthy_canary_is_promoted,
    a_failing_canary_is_rolled_back_with_its_numbers,
    two_replicas_land_one_move,
    a_person_stops_the_plan
);

/// Notices: the move lands at once even with a dead webhook; a refusing webhook gets the
/// notice again (backoff) until it takes it; the JSON has a Slack `text` and the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_hear_of_a_rollback_and_never_block_it() {
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicU32, Ordering};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let attempts = Arc::new(AtomicU32::new(0));
    let receiver = {
        let attempts = attempts.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let (attempts, tx) = (attempts.clone(), tx.clone());
                async move {
                    // The first attempt is refused: the sender must retry.
                    if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    tx.send(body).unwrap();
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    let dead = "http://127.0.0.1:9/nobody-listens".to_string();
    let urls = server::webhooks::parse_urls(&[dead, url]).unwrap();
    let hooks = server::webhooks::Webhooks::start(urls, Duration::from_millis(20));

    let (store, _dir) = embedded();
    let state = replica(store).await;
    start(&state, "hooked").await;
    traffic(&state, "hooked", 0.2, 5);
    let moves = server::controller::run_once(&state, hold_over(&state, "hooked"), &hooks).await;
    assert!(
        matches!(moves.as_slice(), [(_, Move::RollBack(_))]),
        "{moves:?}"
    );
    assert!(
        state.config("hooked").unwrap().rolled_back,
        "landed without waiting for any webhook"
    );

    let notice = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notice["event"], "rolled_back");
    assert_eq!(notice["policy"], "hooked");
    assert_eq!(notice["share"], "0%");
    let text = notice["text"].as_str().unwrap();
    assert!(
        text.starts_with("APX Canary: hooked's canary was rolled back by its plan: 5xx rate: the moved tenants went from"),
        "{text}"
    );
    assert!(
        text.contains("most affected: acme ("),
        "who is hurt: {text}"
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "refused once, then taken"
    );
    assert!(server::webhooks::parse_urls(&["ftp://x".into()])
        .unwrap_err()
        .contains("not http or https"));
}
