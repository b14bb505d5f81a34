//! Evaluating one request: which version a tenant gets for a policy.

use crate::bucket::{bucket, Bucket};
use crate::config::{Pin, PolicyConfig};
use crate::names::{tenant_is_valid, Version};
use crate::share::BasisPoints;
use serde::Serialize;

/// The outcome of a routing decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub version: Version,
    pub is_canary: bool,
    pub reason: Reason,
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The policy has no config: the version is `latest`.
    NoConfig,
    /// The request named no tenant: never canary.
    NoTenant,
    /// The tenant id breaks the tenant rules (too long, control characters): never canary.
    InvalidTenant,
    /// The tenant is pinned.
    Pinned { pin: Pin },
    /// The tenant is pinned to canary but the policy has no canary version.
    PinnedWithoutCanary,
    /// The policy has no canary version.
    NoCanary,
    /// Decided by the tenant's bucket against the share: canary iff `bucket < basis_points`.
    Bucket {
        bucket: Bucket,
        basis_points: BasisPoints,
    },
}

/// Whether a tenant is on canary under `config`, given its bucket (computed once by the caller).
/// This is the one place the rules live; everything else (the snapshot, the simulator, the CLI,
/// the browser preview) calls it.
pub fn evaluate(
    config: &PolicyConfig,
    tenant: &str,
    bucket_of: impl FnOnce() -> Bucket,
) -> (bool, Reason) {
    if let Some(pin) = config.overrides.get(tenant) {
        return match (pin, &config.canary_version) {
            (Pin::Canary, None) => (false, Reason::PinnedWithoutCanary),
            (pin, _) => (*pin == Pin::Canary, Reason::Pinned { pin: *pin }),
        };
    }
    if config.canary_version.is_none() {
        return (false, Reason::NoCanary);
    }
    let b = bucket_of();
    let bp = config.canary_basis_points;
    (
        b.get() < bp.get(),
        Reason::Bucket {
            bucket: b,
            basis_points: bp,
        },
    )
}

/// The decision for `tenant` (as received, possibly absent or invalid) under `config`.
pub fn decide(config: Option<&PolicyConfig>, tenant: Option<&str>) -> Decision {
    let Some(config) = config else {
        return Decision {
            version: Version::latest(),
            is_canary: false,
            reason: Reason::NoConfig,
        };
    };
    let stable = |reason| Decision {
        version: config.stable_version.clone(),
        is_canary: false,
        reason,
    };
    let tenant = match tenant {
        None | Some("") => return stable(Reason::NoTenant),
        Some(t) if !tenant_is_valid(t) => return stable(Reason::InvalidTenant),
        Some(t) => t,
    };
    let (is_canary, reason) = evaluate(config, tenant, || bucket(&config.salt, tenant));
    match (&config.canary_version, is_canary) {
        (Some(canary), true) => Decision {
            version: canary.clone(),
            is_canary: true,
            reason,
        },
        _ => stable(reason),
    }
}
