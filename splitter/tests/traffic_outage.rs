//! The traffic recorder through a Firestore outage: recording never waits or fails, a failed
//! flush keeps the counts, the backlog is visible, and the next flush after the outage writes
//! everything. Runs its own emulator, which it stops and restarts on purpose.

mod support;

use splitter::cohort::Who;
use splitter::recorder::TrafficRecorder;
use splitter::snapshot::Splitter;
use splitter::store::firestore::FirestoreStore;
use splitter::traffic::minute_of;
use splitter::traffic_cache::TrafficCache;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_store_outage() {
    let mut emulator = support::Emulator::start();
    // This test binary has this one test, so pointing this process at its own emulator is safe.
    std::env::set_var("FIRESTORE_EMULATOR_HOST", &emulator.host);
    let store = FirestoreStore::connect("traffic-outage", Duration::from_secs(2))
        .await
        .unwrap();
    let split = Splitter::from_configs([support::config("pay", Some("v2"), 1000)]);
    let recorder = TrafficRecorder::new("replica-1", 1000);
    let now = minute_of(jiff::Timestamp::now());
    let record = |n: usize| {
        for i in 0..n {
            let d = split.select_version("pay", Some(&format!("t-{i}")));
            recorder.record_at(
                now,
                "pay",
                Who::default(),
                &d,
                200,
                Duration::from_millis(2),
            );
        }
    };
    record(100);
    assert_eq!(recorder.flush(&*store, now).await.unwrap().len(), 1);

    // Recording is synchronous and never touches the store, so it goes on while the store is
    // down (its signature has no await); what matters is that nothing recorded is lost.
    emulator.stop();
    record(250);
    let err = recorder.flush(&*store, now).await.unwrap_err();
    assert!(err.to_string().contains("unavailable"), "{err}");
    let stats = recorder.stats();
    assert_eq!(stats.unflushed_requests, 250);
    assert_eq!(stats.unflushed_minutes, 1);
    assert_eq!(stats.flush_failures, 1);
    assert_eq!(stats.lost_requests, 0);
    assert!(stats.last_error.is_some());

    // The emulator comes back empty (it keeps data in memory only): the next flush rewrites the
    // replica's whole total for the minute, so all 350 requests are there.
    let _emulator = support::Emulator::start_on(emulator.port());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match recorder.flush(&*store, now).await {
            Ok(docs) => {
                assert_eq!(docs.len(), 1);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "flush still failing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = recorder.stats();
    assert_eq!((stats.unflushed_requests, stats.lost_requests), (0, 0));
    assert_eq!(stats.last_error, None);
    let cache = TrafficCache::new();
    cache
        .refresh(&*store, jiff::Timestamp::now())
        .await
        .unwrap();
    let stored = cache.policy("pay", now, now);
    let total: u64 = stored.minutes[&now].values().map(|t| t.requests).sum();
    assert_eq!(total, 350);
}

#[test]
fn a_full_backlog_drops_the_oldest_minutes_and_counts_them() {
    let split = Splitter::from_configs([support::config("pay", Some("v2"), 1000)]);
    let recorder = TrafficRecorder::new("r", 3);
    let d = split.select_version("pay", Some("t-1"));
    for minute in 0..5 {
        for _ in 0..=minute {
            recorder.record_at(
                100 + minute,
                "pay",
                Who::default(),
                &d,
                200,
                Duration::from_millis(1),
            );
        }
    }
    // Minutes 100 (1 request) and 101 (2 requests) were dropped to stay at 3 minutes.
    let stats = recorder.stats();
    assert_eq!(stats.pending_minutes, 3);
    assert_eq!(stats.lost_requests, 3);
    assert_eq!(stats.unflushed_requests, 3 + 4 + 5);
}
