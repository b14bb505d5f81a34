//! Property tests of decoding what people and stores hand us: any share text, any stored
//! Firestore document and any stored JSON config decode to a value or to an error that names
//! what is wrong — never a panic. Bounded: 512 cases each.

use proptest::prelude::*;
use splitter::store::firestore::PolicyDoc;
use splitter::{BasisPoints, Error, PolicyConfig};
use std::collections::BTreeMap;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[0-9.%bp -]{0,12}",
        Just(String::new()),
        Just("latest".to_string()),
        Just("\u{0}\u{7}".to_string()),
        "[a-z]{300}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_share_text_parses_or_names_the_share(text in any_text()) {
        match BasisPoints::parse(&text) {
            Ok(bp) => prop_assert!(bp.get() <= 10_000),
            Err(Error::Invalid { field, message }) => {
                prop_assert_eq!(field, "share");
                prop_assert!(!message.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn any_stored_firestore_document_decodes_or_is_reported_corrupt(
        name in any_text(), stable in any_text(), canary in proptest::option::of(any_text()),
        percentage in any::<i64>(), bp in proptest::option::of(any::<i64>()),
        salt in proptest::option::of(any_text()), revision in proptest::option::of(any::<i64>()),
        overrides in proptest::option::of(proptest::collection::btree_map(any_text(), any_text(), 0..4)),
        created_by in any_text(), updated_by in proptest::option::of(any_text()),
        plan in proptest::option::of(any_text()),
    ) {
        let now = jiff::Timestamp::from_second(0).unwrap();
        let doc = PolicyDoc {
            policy_name: name.clone(), stable_version: stable, canary_version: canary,
            canary_percentage: percentage, canary_basis_points: bp, salt,
            overrides: overrides.map(|o| o.into_iter().collect::<BTreeMap<_, _>>()),
            rolled_back: None, revision, created_at: now, updated_at: now, created_by, updated_by,
            plan,
        };
        match doc.into_config() {
            Ok(c) => prop_assert!(c.canary_basis_points.get() <= 10_000),
            Err(Error::Corrupt { store, key, detail }) => {
                prop_assert_eq!(store, "firestore");
                prop_assert_eq!(key, name);
                prop_assert!(detail.contains(':'), "the detail names the field: {}", detail);
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn any_stored_json_config_decodes_or_fails_cleanly(json in prop_oneof![
        ".{0,200}",
        Just(r#"{"policy_name":"Bad Name"}"#.to_string()),
        Just(r#"{"policy_name":"p","stable_version":"latest","canary_version":null,"canary_basis_points":10001}"#.to_string()),
    ]) {
        // The embedded store's decode: serde with the validated newtypes; an error is returned,
        // never a panic.
        let _ = serde_json::from_str::<PolicyConfig>(&json);
    }
}
