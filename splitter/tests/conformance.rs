//! One conformance suite, run against every store: the embedded redb store and Firestore (the
//! real emulator started by `./dev test`).

mod support;

use splitter::cohort::{cohort_of, Who};
use splitter::snapshot::Splitter;
use splitter::store::access::{AccessKind, AccessStore};
use splitter::store::embedded::EmbeddedStore;
use splitter::store::firestore::FirestoreStore;
use splitter::store::{PolicyStore, Store, TrafficStore};
use splitter::{
    Actor, BasisPoints, Error, NewPolicy, Operation, Pin, PolicyConfig, PolicyName, Request,
    RolloutState, TenantId, Version,
};
use std::sync::Arc;
use std::time::Duration;

pub struct Harness {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn embedded(_test: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("canary.redb")).unwrap();
    Harness {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn firestore(test: &str) -> Harness {
    support::shared_emulator();
    let store = FirestoreStore::connect(&support::unique_project(test), Duration::from_secs(10))
        .await
        .expect("connect to the Firestore emulator");
    Harness { store, _dir: None }
}

fn name(s: &str) -> PolicyName {
    PolicyName::new(s).unwrap()
}

fn v(s: &str) -> Version {
    Version::new(s).unwrap()
}

fn req(policy: &str, rev: Option<u64>, op: Operation, actor: &str, reason: &str) -> Request {
    Request {
        policy: name(policy),
        expected_revision: rev,
        operation: op,
        actor: Actor::new(actor).unwrap(),
        reason: reason.into(),
    }
}

fn create_op(stable: &str, canary: Option<&str>) -> Operation {
    Operation::Create(NewPolicy {
        stable_version: v(stable),
        canary_version: canary.map(v),
        share: BasisPoints::ZERO,
        salt: None,
    })
}

async fn exec(store: &dyn PolicyStore, r: Request) -> PolicyConfig {
    store
        .execute(&r)
        .await
        .unwrap()
        .expect("a config after a non-delete change")
}

mod suite {
    use super::*;

    pub async fn create_get_list(store: &dyn PolicyStore) {
        assert!(store.list().await.unwrap().is_empty());
        let c = exec(
            store,
            req("payment-api", None, create_op("v1", None), "alice", "new"),
        )
        .await;
        assert_eq!(c.revision, 1);
        assert_eq!(c.salt, "payment-api");
        assert_eq!(c.state(), RolloutState::NoCanary);
        exec(
            store,
            req("billing", None, create_op("v7", Some("v8")), "bob", ""),
        )
        .await;
        let got = store.get(&name("payment-api")).await.unwrap().unwrap();
        assert_eq!(
            got, c,
            "what is read equals what was written, timestamps included"
        );
        let names: Vec<String> = store
            .list()
            .await
            .unwrap()
            .iter()
            .map(|c| c.policy_name.to_string())
            .collect();
        assert_eq!(names, ["billing", "payment-api"]);
        assert!(store.get(&name("nope")).await.unwrap().is_none());
        let again = store
            .execute(&req(
                "payment-api",
                None,
                create_op("v1", None),
                "alice",
                "",
            ))
            .await;
        assert!(matches!(again, Err(Error::AlreadyExists(_))), "{again:?}");
    }

    pub async fn lifecycle_with_audit_trail(store: &dyn PolicyStore) {
        let c = exec(
            store,
            req(
                "checkout",
                None,
                create_op("v1", None),
                "alice",
                "new policy",
            ),
        )
        .await;
        let c = exec(
            store,
            req(
                "checkout",
                Some(c.revision),
                Operation::SetCanaryVersion { version: v("v2") },
                "alice",
                "start v2",
            ),
        )
        .await;
        assert_eq!(c.state(), RolloutState::Staged);
        let c = exec(
            store,
            req(
                "checkout",
                Some(c.revision),
                Operation::SetShare {
                    share: BasisPoints::parse("12.5").unwrap(),
                },
                "bob",
                "ramp",
            ),
        )
        .await;
        assert_eq!(c.canary_basis_points.get(), 1250);
        assert_eq!(c.state(), RolloutState::Ramping);
        assert_eq!(c.updated_by.as_str(), "bob");
        let c = exec(
            store,
            req(
                "checkout",
                Some(c.revision),
                Operation::Rollback,
                "carol",
                "errors up",
            ),
        )
        .await;
        assert_eq!(c.state(), RolloutState::RolledBack);
        assert_eq!(
            c.canary_version,
            Some(v("v2")),
            "rollback keeps the canary version"
        );
        let promote = store
            .execute(&req(
                "checkout",
                Some(c.revision),
                Operation::Promote,
                "carol",
                "",
            ))
            .await;
        assert!(
            matches!(promote, Err(Error::NotAllowed(_))),
            "no promotion of a rolled-back canary: {promote:?}"
        );
        let c = exec(
            store,
            req(
                "checkout",
                Some(c.revision),
                Operation::SetShare {
                    share: BasisPoints::FULL,
                },
                "bob",
                "fixed",
            ),
        )
        .await;
        assert_eq!(c.state(), RolloutState::AtFull);
        let c = exec(
            store,
            req(
                "checkout",
                Some(c.revision),
                Operation::Promote,
                "bob",
                "all good",
            ),
        )
        .await;
        assert_eq!(c.stable_version, v("v2"));
        assert_eq!(c.canary_version, None);
        assert_eq!(c.canary_basis_points, BasisPoints::ZERO);
        assert_eq!(c.revision, 6);

        let events = store.events(&name("checkout"), 100).await.unwrap();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "promote",
                "set_share",
                "rollback",
                "set_share",
                "set_canary_version",
                "create"
            ]
        );
        let revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [6, 5, 4, 3, 2, 1]);
        let rollback = &events[2];
        assert_eq!(rollback.actor.as_str(), "carol");
        assert_eq!(rollback.reason, "errors up");
        assert_eq!(
            rollback.before.as_ref().unwrap().canary_basis_points.get(),
            1250
        );
        assert_eq!(
            rollback.after.as_ref().unwrap().canary_basis_points.get(),
            0
        );
        assert!(events[5].before.is_none());
        assert_eq!(store.events(&name("checkout"), 2).await.unwrap().len(), 2);
        assert_eq!(store.get(&name("checkout")).await.unwrap().unwrap(), c);
    }

    pub async fn stale_revision_is_a_conflict_naming_who(store: &dyn PolicyStore) {
        let c = exec(
            store,
            req("search-api", None, create_op("v1", Some("v2")), "alice", ""),
        )
        .await;
        exec(
            store,
            req(
                "search-api",
                Some(c.revision),
                Operation::SetShare {
                    share: BasisPoints::new(500).unwrap(),
                },
                "bob",
                "",
            ),
        )
        .await;
        let stale = store
            .execute(&req(
                "search-api",
                Some(c.revision),
                Operation::SetShare {
                    share: BasisPoints::new(9000).unwrap(),
                },
                "alice",
                "",
            ))
            .await
            .unwrap_err();
        let message = stale.to_string();
        assert!(matches!(stale, Error::Conflict { .. }), "{stale:?}");
        assert!(
            message.contains("changed by bob")
                && message.contains("revision 2")
                && message.contains("revision 1"),
            "{message}"
        );
        let now = store.get(&name("search-api")).await.unwrap().unwrap();
        assert_eq!(
            now.canary_basis_points.get(),
            500,
            "the stale write changed nothing"
        );
        assert_eq!(
            store.events(&name("search-api"), 10).await.unwrap().len(),
            2
        );
    }

    pub async fn racing_commits_one_wins(store: &dyn PolicyStore) {
        let c = exec(
            store,
            req("race", None, create_op("v1", Some("v2")), "alice", ""),
        )
        .await;
        // Both planned against revision 1; the store must refuse the second at commit time.
        let a = splitter::ops::plan(
            Some(&c),
            &req(
                "race",
                Some(1),
                Operation::SetShare {
                    share: BasisPoints::new(100).unwrap(),
                },
                "a",
                "",
            ),
            jiff::Timestamp::now(),
        )
        .unwrap();
        let b = splitter::ops::plan(
            Some(&c),
            &req(
                "race",
                Some(1),
                Operation::SetShare {
                    share: BasisPoints::new(200).unwrap(),
                },
                "b",
                "",
            ),
            jiff::Timestamp::now(),
        )
        .unwrap();
        store.commit(&a).await.unwrap();
        let err = store.commit(&b).await.unwrap_err();
        assert!(err.to_string().contains("changed by a"), "{err}");
        assert_eq!(
            store
                .get(&name("race"))
                .await
                .unwrap()
                .unwrap()
                .canary_basis_points
                .get(),
            100
        );
        assert_eq!(store.events(&name("race"), 10).await.unwrap().len(), 2);
    }

    pub async fn delete_needs_current_revision(store: &dyn PolicyStore) {
        let c = exec(store, req("gone", None, create_op("v1", None), "alice", "")).await;
        let stale = store
            .execute(&req(
                "gone",
                Some(c.revision + 1),
                Operation::Delete,
                "alice",
                "",
            ))
            .await;
        assert!(matches!(stale, Err(Error::Conflict { .. })), "{stale:?}");
        let after = store
            .execute(&req(
                "gone",
                Some(c.revision),
                Operation::Delete,
                "alice",
                "retired",
            ))
            .await
            .unwrap();
        assert!(after.is_none());
        assert!(store.get(&name("gone")).await.unwrap().is_none());
        let events = store.events(&name("gone"), 10).await.unwrap();
        assert_eq!(events[0].action, "delete");
        assert_eq!(events[0].reason, "retired");
        assert!(events[0].after.is_none());
        let missing = store
            .execute(&req("gone", Some(1), Operation::Rollback, "alice", ""))
            .await;
        assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
        // A writer that still holds the deleted revision gets a conflict, not a resurrection.
        let plan = splitter::ops::plan(
            Some(&c),
            &req(
                "gone",
                Some(1),
                Operation::SetCanaryVersion { version: v("v2") },
                "bob",
                "",
            ),
            jiff::Timestamp::now(),
        )
        .unwrap();
        let err = store.commit(&plan).await.unwrap_err();
        assert!(err.to_string().contains("deleted meanwhile"), "{err}");
        assert!(store.get(&name("gone")).await.unwrap().is_none());
    }

    pub async fn overrides_round_trip(store: &dyn PolicyStore) {
        let c = exec(
            store,
            req("pins", None, create_op("v1", Some("v2")), "alice", ""),
        )
        .await;
        let c = exec(
            store,
            req(
                "pins",
                Some(c.revision),
                Operation::Pin {
                    tenant: TenantId::new("über gmbh, inc.").unwrap(),
                    pin: Pin::Canary,
                },
                "alice",
                "",
            ),
        )
        .await;
        let c = exec(
            store,
            req(
                "pins",
                Some(c.revision),
                Operation::Pin {
                    tenant: TenantId::new("acme").unwrap(),
                    pin: Pin::Stable,
                },
                "alice",
                "",
            ),
        )
        .await;
        let got = store.get(&name("pins")).await.unwrap().unwrap();
        assert_eq!(got.overrides.len(), 2);
        assert_eq!(got.overrides.get("über gmbh, inc."), Some(&Pin::Canary));
        let c = exec(
            store,
            req(
                "pins",
                Some(c.revision),
                Operation::Unpin {
                    tenant: TenantId::new("acme").unwrap(),
                },
                "alice",
                "",
            ),
        )
        .await;
        assert_eq!(store.get(&name("pins")).await.unwrap().unwrap(), c);
        let split = Splitter::from_configs(store.list().await.unwrap());
        let d = split.select_version("pins", Some("über gmbh, inc."));
        assert!(d.is_canary && d.version == v("v2"), "{d:?}");
    }

    /// 50 writers, each pinning its own tenant, retrying on conflict: no update is lost.
    pub async fn fifty_concurrent_writers(store: Arc<dyn PolicyStore>) {
        exec(
            &*store,
            req("hot", None, create_op("v1", Some("v2")), "setup", ""),
        )
        .await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let tenant = TenantId::new(format!("tenant-{i}")).unwrap();
                let mut conflicts = 0u32;
                loop {
                    let cur = store.get(&name("hot")).await.unwrap().unwrap();
                    let r = req(
                        "hot",
                        Some(cur.revision),
                        Operation::Pin {
                            tenant: tenant.clone(),
                            pin: Pin::Canary,
                        },
                        &format!("writer-{i}"),
                        "",
                    );
                    match store.execute(&r).await {
                        Ok(_) => return conflicts,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("writer {i}: {e}"),
                    }
                    assert!(conflicts < 500, "writer {i} starved");
                }
            }));
        }
        let mut conflicts = 0;
        for t in tasks {
            conflicts += t.await.unwrap();
        }
        let end = store.get(&name("hot")).await.unwrap().unwrap();
        assert_eq!(end.overrides.len(), 50, "every acknowledged pin is there");
        assert_eq!(end.revision, 51);
        let events = store.events(&name("hot"), 1000).await.unwrap();
        assert_eq!(events.len(), 51);
        let mut revs: Vec<u64> = events.iter().map(|e| e.revision).collect();
        revs.sort();
        assert_eq!(
            revs,
            (1..=51).collect::<Vec<_>>(),
            "one event per revision, none twice"
        );
        assert!(
            conflicts > 0,
            "the writers did race (else this test proves nothing)"
        );
    }

    /// The snapshot follows the store without a request-time read.
    pub async fn snapshot_follows_changes(store: Arc<dyn PolicyStore>) {
        let c = exec(
            &*store,
            req("follow", None, create_op("v1", Some("v2")), "alice", ""),
        )
        .await;
        let split = Splitter::follow(store.clone(), Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(!split.select_version("follow", Some("tenant-1")).is_canary);
        exec(
            &*store,
            req(
                "follow",
                Some(c.revision),
                Operation::SetShare {
                    share: BasisPoints::FULL,
                },
                "alice",
                "",
            ),
        )
        .await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !split.select_version("follow", Some("tenant-1")).is_canary {
            assert!(
                std::time::Instant::now() < deadline,
                "the snapshot did not follow the change within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(split.health().age < Duration::from_secs(10));
        assert!(split.health().last_error.is_none());
        assert_eq!(
            split.select_version("nope", Some("t")).version.as_str(),
            "latest"
        );
    }

    /// The change feed carries each committed config and each delete, so a follower applies
    /// them without reading the collection; the snapshot drops a deleted policy.
    pub async fn feed_carries_changes_and_deletes(store: Arc<dyn PolicyStore>) {
        use splitter::store::PolicyChange;
        let mut feed = store.feed();
        let split = Splitter::follow(store.clone(), Duration::from_secs(3600))
            .await
            .unwrap();
        let c = exec(
            &*store,
            req("fed", None, create_op("v1", Some("v2")), "alice", ""),
        )
        .await;
        // The Firestore listener may also send the initial state: wait for ours. (The emulator
        // resets its listener after changes: a delete may then come as "read everything again",
        // which the snapshot obeys as well.)
        async fn next(
            feed: &mut tokio::sync::broadcast::Receiver<PolicyChange>,
            put: bool,
        ) -> PolicyChange {
            let wait = Duration::from_secs(10);
            loop {
                let change = tokio::time::timeout(wait, feed.recv())
                    .await
                    .expect("the change within 10 s")
                    .unwrap();
                match &change {
                    PolicyChange::Put(p) if put && p.policy_name.as_str() == "fed" => {
                        return change
                    }
                    PolicyChange::Removed(n) if !put && n == "fed" => return change,
                    PolicyChange::Resync if !put => return change,
                    _ => continue,
                }
            }
        }
        assert_eq!(
            next(&mut feed, true).await,
            PolicyChange::Put(Arc::new(c.clone()))
        );
        let delete = req("fed", Some(c.revision), Operation::Delete, "alice", "");
        assert_eq!(store.execute(&delete).await.unwrap(), None);
        let removed = next(&mut feed, false).await;
        assert!(
            matches!(&removed, PolicyChange::Removed(n) if n == "fed")
                || removed == PolicyChange::Resync,
            "{removed:?}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while split.policy("fed").is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the snapshot kept a deleted policy"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn rules_write_nothing(store: &dyn PolicyStore) {
        let c = exec(
            store,
            req("rules", None, create_op("v1", None), "alice", ""),
        )
        .await;
        for op in [
            Operation::SetShare {
                share: BasisPoints::new(100).unwrap(),
            },
            Operation::Promote,
            Operation::Rollback,
            Operation::SetCanaryVersion { version: v("v1") },
        ] {
            let e = store
                .execute(&req("rules", Some(c.revision), op.clone(), "alice", ""))
                .await
                .unwrap_err();
            assert!(
                matches!(e, Error::NotAllowed(_) | Error::Invalid { .. }),
                "{op:?}: {e:?}"
            );
        }
        let missing_rev = store
            .execute(&req("rules", None, Operation::Rollback, "alice", ""))
            .await
            .unwrap_err();
        assert!(
            missing_rev.to_string().contains("revision"),
            "{missing_rev}"
        );
        assert_eq!(store.get(&name("rules")).await.unwrap().unwrap(), c);
        assert_eq!(store.events(&name("rules"), 10).await.unwrap().len(), 1);
    }

    /// Traffic documents: replaced (not merged) per key; read back by position, each write
    /// once (but for the documents of the newest write, which `since` = its position returns
    /// again); pruned (or left to the store's TTL).
    pub async fn traffic_round_trip(store: &dyn TrafficStore) {
        use splitter::traffic::{ReplicaMinute, VersionTraffic};
        let doc = |minute: i64, replica: &str, seq: u64, policies: &[(&str, u64)]| {
            let traffic = |requests: u64| {
                let mut t = VersionTraffic::default();
                for i in 0..requests {
                    t.record(
                        if i % 10 == 0 { 503 } else { 200 },
                        Duration::from_millis(i),
                    );
                }
                t
            };
            ReplicaMinute {
                minute,
                replica: replica.into(),
                shard: 0,
                shards: 1,
                seq,
                written_at: minute * 60 + 30,
                policies: policies
                    .iter()
                    .map(|(p, n)| {
                        let versions = [
                            ("v1.2+b".to_string(), traffic(*n)),
                            ("v2".to_string(), traffic(*n)),
                        ];
                        (p.to_string(), versions.into())
                    })
                    .collect(),
                detail: Default::default(),
            }
        };
        let base = 29_000_000;
        let first = [
            doc(base, "r1", 1, &[("pay", 5), ("search", 2)]),
            doc(base, "r2", 1, &[("pay", 7)]),
            doc(base + 1, "r1", 1, &[("pay", 3)]),
        ];
        store.put_traffic(&first).await.unwrap();
        let mut got = store.traffic_since(0).await.unwrap();
        got.sort_by_key(|s| s.doc.key());
        assert_eq!(got.iter().map(|s| s.doc.clone()).collect::<Vec<_>>(), first);
        let p1 = got[0].stored_at;
        assert!(
            p1 > 0 && got.iter().all(|s| s.stored_at == p1),
            "one write, one position"
        );

        // A later write of the same key replaces it, at a later position.
        let replaced = doc(base, "r1", 2, &[("pay", 6), ("search", 2)]);
        store
            .put_traffic(std::slice::from_ref(&replaced))
            .await
            .unwrap();
        let newer = store.traffic_since(p1 + 1).await.unwrap();
        assert_eq!(newer.len(), 1);
        assert_eq!(newer[0].doc, replaced);
        assert!(newer[0].stored_at > p1);
        assert!(store
            .traffic_since(newer[0].stored_at + 1)
            .await
            .unwrap()
            .is_empty());
        let all = store.traffic_since(0).await.unwrap();
        assert_eq!(all.len(), 3, "replaced, not added");
        let pay: u64 = all
            .iter()
            .filter(|s| s.doc.minute == base)
            .map(|s| s.doc.policies["pay"]["v2"].requests)
            .sum();
        assert_eq!(pay, 6 + 7);

        // The embedded store deletes old minutes; Firestore leaves them to its TTL policy.
        let pruned = store.prune_traffic(base + 1).await.unwrap();
        assert!(pruned == 2 || pruned == 0, "{pruned}");
        let left = store.traffic_since(0).await.unwrap();
        assert_eq!(left.len(), 3 - pruned);
        if pruned == 2 {
            assert!(left.iter().all(|s| s.doc.minute > base));
        }
    }

    /// The recorder's totals reach the store intact, summed over two replicas, one document
    /// per replica and minute whatever the number of policies.
    pub async fn recorder_flushes_to_store(store: &dyn TrafficStore) {
        use splitter::recorder::TrafficRecorder;
        use splitter::traffic::minute_of;
        use splitter::traffic_cache::TrafficCache;
        let split = Splitter::from_configs([
            support::config("flush-api", Some("v2"), 5000),
            support::config("other-api", Some("v2"), 0),
        ]);
        let now = minute_of(jiff::Timestamp::now());
        let replicas = [
            TrafficRecorder::new("a", 100),
            TrafficRecorder::new("b", 100),
        ];
        let (mut canary, mut stable, mut errors) = (0u64, 0u64, 0u64);
        // Who a decision was for: the tenant, and its cohort when its bucket decided.
        let who = |d: &splitter::Decision, tenant: &'static str| Who {
            tenant: Some(tenant),
            cohort: match d.reason {
                splitter::Reason::Bucket { bucket, .. } => Some(cohort_of(bucket.get())),
                _ => None,
            },
        };
        let tenants: Vec<&'static str> = (0..400)
            .map(|i| &*Box::leak(format!("t-{i}").into_boxed_str()))
            .collect();
        for (i, tenant) in tenants.iter().enumerate() {
            let d = split.select_version("flush-api", Some(tenant));
            let status = if d.is_canary && i % 4 == 0 { 500 } else { 200 };
            if d.is_canary {
                canary += 1;
                errors += u64::from(status == 500);
            } else {
                stable += 1;
            }
            let w = who(&d, tenant);
            replicas[i % 2].record_at(now, "flush-api", w, &d, status, Duration::from_micros(300));
            let other = split.select_version("other-api", Some(tenant));
            let w = who(&other, tenant);
            replicas[i % 2].record_at(now, "other-api", w, &other, 200, Duration::from_micros(300));
        }
        // Unknown policies are not recorded.
        let unknown = split.select_version("nope", Some("t-1"));
        replicas[0].record_at(
            now,
            "nope",
            Who::default(),
            &unknown,
            200,
            Duration::from_millis(1),
        );
        for r in &replicas {
            assert_eq!(r.stats().unflushed_requests, 400);
            assert_eq!(
                r.flush(store, now).await.unwrap().len(),
                1,
                "two policies, one document"
            );
            assert_eq!(r.stats().unflushed_requests, 0);
            // Nothing new: nothing written.
            assert!(r.flush(store, now).await.unwrap().is_empty());
        }
        let cache = TrafficCache::new();
        cache.refresh(store, jiff::Timestamp::now()).await.unwrap();
        let stored = cache.policy("flush-api", now, now);
        let minute = &stored.minutes[&now];
        assert_eq!(minute["v2"].requests, canary);
        assert_eq!(minute["v2"].errors, errors);
        assert_eq!(minute["v1"].requests, stable);
        assert_eq!(canary + stable, 400);
        assert!(canary > 150 && stable > 150, "{canary} / {stable}");
        assert_eq!(cache.totals(now, now)["other-api"]["v1"].requests, 400);
        assert!(!cache.totals(now, now).contains_key("nope"));
        // By tenant, through the store and back: cohorts add up to the versions' totals, and
        // each replica's busiest tenants come back with their counts.
        let detail = &cache.detail("flush-api", now, now)[&now];
        let sum = |v: &str| {
            detail.cohorts[v]
                .values()
                .map(|c| (c.requests, c.errors))
                .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1))
        };
        assert_eq!(sum("v2"), (canary, errors));
        assert_eq!(sum("v1").0, stable);
        assert!(
            detail.cohorts["v2"].keys().all(|c| *c < 500),
            "50 % of buckets are cohorts 0–499"
        );
        assert_eq!(detail.heavy.len(), 2 * splitter::cohort::HEAVY_WRITTEN);
        assert!(detail
            .heavy
            .iter()
            .all(|h| h.counts.requests == 1 && h.tenant.starts_with("t-")));
        // More traffic in the same minute: the replica rewrites its whole total, and a reader
        // reads only that one document again.
        let d = split.select_version("flush-api", Some("t-0"));
        replicas[0].record_at(
            now,
            "flush-api",
            Who::default(),
            &d,
            200,
            Duration::from_micros(300),
        );
        replicas[0].flush(store, now).await.unwrap();
        let read = cache.refresh(store, jiff::Timestamp::now()).await.unwrap();
        assert!(
            read <= 3,
            "read {read} documents; the newest write is 1 (and the previous write's at most 2)"
        );
        let again = cache.policy("flush-api", now, now);
        let total: u64 = again.minutes[&now].values().map(|t| t.requests).sum();
        assert_eq!(total, 401);
    }

    /// Accounts, sessions and tokens: create-only refuses a taken key and writes nothing,
    /// put replaces, kinds do not mix, delete is idempotent, list is sorted by key.
    pub async fn access_records(store: &dyn AccessStore) {
        let (a, s, t) = (AccessKind::Account, AccessKind::Session, AccessKind::Token);
        assert_eq!(store.get_record(a, "alice").await.unwrap(), None);
        store
            .put_record(a, "alice", r#"{"v":1}"#, true)
            .await
            .unwrap();
        let again = store.put_record(a, "alice", r#"{"v":2}"#, true).await;
        assert!(
            matches!(again, Err(Error::RecordExists(ref k)) if k == "alice"),
            "{again:?}"
        );
        assert_eq!(
            store.get_record(a, "alice").await.unwrap().as_deref(),
            Some(r#"{"v":1}"#)
        );
        store
            .put_record(a, "alice", r#"{"v":3}"#, false)
            .await
            .unwrap();
        assert_eq!(
            store.get_record(a, "alice").await.unwrap().as_deref(),
            Some(r#"{"v":3}"#)
        );
        store.put_record(a, "ann", "{}", true).await.unwrap();
        store
            .put_record(s, "ab12", r#"{"s":1}"#, true)
            .await
            .unwrap();
        store
            .put_record(t, "alice", r#"{"t":1}"#, true)
            .await
            .unwrap();
        let keys = |v: Vec<(String, String)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(store.list_records(a).await.unwrap()), ["alice", "ann"]);
        assert_eq!(keys(store.list_records(s).await.unwrap()), ["ab12"]);
        assert_eq!(
            store.list_records(t).await.unwrap(),
            [("alice".to_string(), r#"{"t":1}"#.to_string())]
        );
        store.delete_record(s, "ab12").await.unwrap();
        store.delete_record(s, "ab12").await.unwrap();
        assert_eq!(store.get_record(s, "ab12").await.unwrap(), None);
        assert_eq!(
            store.get_record(a, "alice").await.unwrap().as_deref(),
            Some(r#"{"v":3}"#)
        );
        // Sign-in failure slots: create-only, a collection of their own.
        let f = AccessKind::SignInFailure;
        store.put_record(f, "7-0-alice", "{}", true).await.unwrap();
        let taken = store.put_record(f, "7-0-alice", "{}", true).await;
        assert!(matches!(taken, Err(Error::RecordExists(_))), "{taken:?}");
        assert_eq!(keys(store.list_records(f).await.unwrap()), ["7-0-alice"]);
        assert_eq!(keys(store.list_records(a).await.unwrap()), ["alice", "ann"]);
        let mut names: Vec<_> = AccessKind::ALL.iter().map(|k| k.collection()).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            AccessKind::ALL.len(),
            "one collection per kind"
        );
    }
}
macro_rules! conformance {
    ($store:ident) => {
        mod $store {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn create_get_list() {
                let h = super::$store("create_get_list").await;
                suite::create_get_list(&*h.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lifecycle_with_audit_trail() {
                let h = super::$store("lifecycle").await;
                suite::lifecycle_with_audit_trail(&*h.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stale_revision_is_a_conflict_naming_who() {
                let h = super::$store("stale").await;
                suite::stale_revision_is_a_conflict_naming_who(&*h.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_commits_one_wins() {
                let h = super::$store("race").await;
                suite::racing_commits_one_wins(&*h.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delete_needs_current_revision() {
                let h = super::$store("delete").await;
                suite::delete_needs_current_revision(&*h.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn overrides_round_trip() {
                let h = super::$store("overrides").await;
                suite::overrides_round_trip(&*h.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fifty_concurrent_writers() {
                let h = super::$store("fifty").await;
                suite::fifty_concurrent_writers(h.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn snapshot_follows_changes() {
                let h = super::$store("follow").await;
                suite::snapshot_follows_changes(h.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn feed_carries_changes_and_deletes() {
                let h = super::$store("feed").await;
                suite::feed_carries_changes_and_deletes(h.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rules_write_nothing() {
                let h = super::$store("rules").await;
                suite::rules_write_nothing(&*h.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn traffic_round_trip() {
                let h = super::$store("traffic").await;
                suite::traffic_round_trip(&*h.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn access_records() {
                let h = super::$store("access").await;
                suite::access_records(&*h.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn recorder_flushes_to_store() {
                let h = super::$store("recorder").await;
                suite::recorder_flushes_to_store(&*h.store).await;
            }
        }
    };
}

conformance!(embedded);
conformance!(firestore);
