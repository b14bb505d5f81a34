//! A Firestore outage: routing continues from the last snapshot, its age is visible, writes
//! fail with a clear error, and nothing acknowledged is lost. Runs its own emulator, which it
//! stops on purpose.

mod support;

use splitter::snapshot::Splitter;
use splitter::store::firestore::FirestoreStore;
use splitter::store::PolicyStore;
use splitter::{Actor, BasisPoints, Error, NewPolicy, Operation, PolicyName, Request, Version};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_survives_a_store_outage() {
    let mut emulator = support::Emulator::start();
    // This test binary has this one test, so pointing this process at its own emulator is safe.
    std::env::set_var("FIRESTORE_EMULATOR_HOST", &emulator.host);
    let store = FirestoreStore::connect("outage", Duration::from_secs(2))
        .await
        .unwrap();
    let request = Request {
        policy: PolicyName::new("payment-api").unwrap(),
        expected_revision: None,
        operation: Operation::Create(NewPolicy {
            stable_version: Version::new("v1").unwrap(),
            canary_version: Some(Version::new("v2").unwrap()),
            share: BasisPoints::FULL,
            salt: None,
        }),
        actor: Actor::new("alice").unwrap(),
        reason: String::new(),
    };
    store.execute(&request).await.unwrap();
    let split = Splitter::follow(store.clone(), Duration::from_millis(200))
        .await
        .unwrap();
    assert!(
        split
            .select_version("payment-api", Some("tenant-1"))
            .is_canary
    );

    emulator.stop();
    // Refreshes now fail; decisions keep coming from the last snapshot.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while split.health().last_error.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no refresh error seen after the emulator stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The snapshot's age keeps growing during the outage (polled, not slept on).
    let age_then = split.health().age;
    while split.health().age <= age_then {
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot's age stopped growing during the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = split.health();
    assert_eq!(health.policies, 1);
    for i in 0..100 {
        let d = split.select_version("payment-api", Some(&format!("tenant-{i}")));
        assert!(d.is_canary && d.version.as_str() == "v2", "{d:?}");
    }

    // A write during the outage is refused, not acknowledged.
    let write = Request {
        expected_revision: Some(1),
        operation: Operation::Rollback,
        ..request.clone()
    };
    let err = store.execute(&write).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing was written"), "{err}");
}
