//! Demo policies for an empty embedded store, clearly labelled as such.

use splitter::store::PolicyStore;
use splitter::{Actor, BasisPoints, NewPolicy, Operation, PolicyName, Request, Version};

/// Creates a few `demo-…` policies when the store has none. Returns how many were created.
pub async fn seed_if_empty(store: &dyn PolicyStore) -> Result<usize, splitter::Error> {
    if !store.list().await?.is_empty() {
        return Ok(0);
    }
    let demos = [
        ("demo-payment-api", "v1", Some("v2"), "12.5"),
        ("demo-search-api", "2024.06", Some("2024.07"), "50"),
        ("demo-checkout", "v7", None, "0"),
    ];
    let actor = Actor::new("demo-seed")?;
    for (name, stable, canary, share) in demos {
        store
            .execute(&Request {
                policy: PolicyName::new(name)?,
                expected_revision: None,
                operation: Operation::Create(NewPolicy {
                    stable_version: Version::new(stable)?,
                    canary_version: canary.map(Version::new).transpose()?,
                    share: BasisPoints::parse(share)?,
                    salt: None,
                }),
                actor: actor.clone(),
                reason: "demo policy created on first start (safe to delete)".into(),
            })
            .await?;
    }
    Ok(demos.len())
}
