//! The embedded store keeps acknowledged changes across a close and reopen.

mod support;

use splitter::store::embedded::EmbeddedStore;
use splitter::store::PolicyStore;
use splitter::{Actor, BasisPoints, NewPolicy, Operation, PolicyName, Request, Version};

#[tokio::test]
async fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/canary.redb");
    let name = PolicyName::new("payment-api").unwrap();
    let written = {
        let store = EmbeddedStore::open(&path).unwrap();
        let create = Request {
            policy: name.clone(),
            expected_revision: None,
            operation: Operation::Create(NewPolicy {
                stable_version: Version::new("v1").unwrap(),
                canary_version: Some(Version::new("v2").unwrap()),
                share: BasisPoints::parse("0.01").unwrap(),
                salt: Some("custom".into()),
            }),
            actor: Actor::new("alice").unwrap(),
            reason: "first".into(),
        };
        store.execute(&create).await.unwrap().unwrap()
    };
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.get(&name).await.unwrap().unwrap(), written);
    assert_eq!(store.events(&name, 10).await.unwrap()[0].reason, "first");
}

#[test]
fn unopenable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = EmbeddedStore::open(file.join("canary.redb"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot create directory"), "{err}");
}
