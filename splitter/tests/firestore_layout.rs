//! The Firestore document layout: compatible with the original design's documents.

mod support;

use firestore::FirestoreInstant;
use serde::{Deserialize, Serialize};
use splitter::store::firestore::{FirestoreStore, CONFIGS};
use splitter::store::PolicyStore;
use splitter::{Actor, BasisPoints, Operation, PolicyName, Request};
use std::time::Duration;

/// A document as the original Go design wrote it: no basis points, salt, overrides or revision.
#[derive(Serialize, Deserialize)]
struct LegacyDoc {
    policy_name: String,
    stable_version: String,
    canary_version: String,
    canary_percentage: i64,
    #[serde(with = "firestore::serialize_as_timestamp")]
    created_at: FirestoreInstant,
    #[serde(with = "firestore::serialize_as_timestamp")]
    updated_at: FirestoreInstant,
    created_by: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_legacy_documents_and_keeps_writing_canary_percentage() {
    support::shared_emulator();
    let store =
        FirestoreStore::connect(&support::unique_project("legacy"), Duration::from_secs(10))
            .await
            .unwrap();
    let now = FirestoreInstant::now();
    let legacy = LegacyDoc {
        policy_name: "payment-api".into(),
        stable_version: "v1".into(),
        canary_version: "v2".into(),
        canary_percentage: 10,
        created_at: now,
        updated_at: now,
        created_by: "go-service".into(),
    };
    let _: LegacyDoc = store
        .db()
        .fluent()
        .insert()
        .into(CONFIGS)
        .document_id("payment-api")
        .object(&legacy)
        .execute()
        .await
        .unwrap();

    let c = store
        .get(&PolicyName::new("payment-api").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.canary_basis_points.get(),
        1000,
        "basis points = percentage × 100"
    );
    assert_eq!(c.salt, "payment-api");
    assert_eq!(c.revision, 0);
    assert_eq!(c.canary_version.as_ref().unwrap().as_str(), "v2");
    assert_eq!(c.created_by.as_str(), "go-service");

    // A change based on revision 0 upgrades the document and keeps `canary_percentage` for
    // older readers (rounded down: 12.5% -> 12).
    let request = Request {
        policy: c.policy_name.clone(),
        expected_revision: Some(0),
        operation: Operation::SetShare {
            share: BasisPoints::parse("12.5").unwrap(),
        },
        actor: Actor::new("alice").unwrap(),
        reason: "ramp".into(),
    };
    store.execute(&request).await.unwrap();
    let raw: LegacyDoc = store
        .db()
        .fluent()
        .select()
        .by_id_in(CONFIGS)
        .obj()
        .one("payment-api")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.canary_percentage, 12);
    assert_eq!(raw.canary_version, "v2");
    let c = store.get(&c.policy_name).await.unwrap().unwrap();
    assert_eq!(c.canary_basis_points.get(), 1250);
    assert_eq!(c.revision, 1);
}

/// A traffic document as Firestore holds it: `expire_at` (a timestamp, for the TTL policy) 25 h
/// after its minute, and `stored_at` set by Firestore to the commit time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_documents_carry_their_expiry_and_commit_time() {
    use splitter::store::firestore::TRAFFIC;
    use splitter::store::TrafficStore;
    use splitter::traffic::ReplicaMinute;

    #[derive(Deserialize)]
    struct Raw {
        #[serde(with = "firestore::serialize_as_timestamp")]
        expire_at: FirestoreInstant,
        #[serde(with = "firestore::serialize_as_timestamp")]
        stored_at: FirestoreInstant,
        policies: String,
        detail: Option<String>,
    }
    support::shared_emulator();
    let store = FirestoreStore::connect(&support::unique_project("ttl"), Duration::from_secs(10))
        .await
        .unwrap();
    let minute = splitter::traffic::minute_of(jiff::Timestamp::now());
    let doc = ReplicaMinute {
        minute,
        replica: "r1".into(),
        shard: 0,
        shards: 1,
        seq: 1,
        written_at: minute * 60,
        policies: [(
            "pay".to_string(),
            [("v1.2".to_string(), Default::default())].into(),
        )]
        .into(),
        detail: [("pay".to_string(), {
            let mut c = splitter::cohort::Counts::default();
            c.record(503, Duration::from_millis(12));
            splitter::cohort::Detail {
                cohorts: [("v1.2".to_string(), [(42u16, c.clone())].into())].into(),
                heavy: vec![splitter::cohort::Heavy {
                    tenant: "acme".into(),
                    version: "v1.2".into(),
                    counts: c,
                }],
            }
        })]
        .into(),
    };
    let before = FirestoreInstant::now();
    store.put_traffic(std::slice::from_ref(&doc)).await.unwrap();
    let raw: Raw = store
        .db()
        .fluent()
        .select()
        .by_id_in(TRAFFIC)
        .obj()
        .one(&doc.key())
        .await
        .unwrap()
        .expect("the document is there");
    assert_eq!(raw.expire_at.as_second(), (minute + 1 + 25 * 60) * 60);
    assert!(
        raw.stored_at >= before - jiff::SignedDuration::from_secs(5),
        "{}",
        raw.stored_at
    );
    assert!(
        raw.policies.contains("\"v1.2\""),
        "versions with dots are kept as JSON text"
    );
    let detail = raw.detail.expect("the detail by tenant is its own field");
    assert!(
        detail.contains("\"42\":[1,1,") && detail.contains("\"acme\""),
        "cohorts and heavy tenants as compact JSON text: {detail}"
    );
    let read = store.traffic_since(0).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].stored_at, raw.stored_at.as_microsecond() as i64);
    assert_eq!(read[0].doc, doc);
}
