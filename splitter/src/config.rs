//! The policy config model: what a store holds for one policy.

use crate::names::{Actor, PolicyName, TenantId, Version};
use crate::share::BasisPoints;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// At most this many pinned tenants per policy (keeps one Firestore document well under 1 MiB).
pub const MAX_OVERRIDES: usize = 1_000;

/// Where a pinned tenant goes, whatever its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pin {
    Canary,
    Stable,
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pin::Canary => "canary",
            Pin::Stable => "stable",
        })
    }
}

impl std::str::FromStr for Pin {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Pin> {
        match s.trim() {
            "canary" => Ok(Pin::Canary),
            "stable" => Ok(Pin::Stable),
            other => Err(crate::Error::invalid(
                "pin",
                format!(
                    "'{}' is neither 'canary' nor 'stable'",
                    other.escape_debug()
                ),
            )),
        }
    }
}

/// One policy's rollout configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    pub policy_name: PolicyName,
    pub stable_version: Version,
    pub canary_version: Option<Version>,
    pub canary_basis_points: BasisPoints,
    /// Bucketing salt; defaults to the policy name. Changing it reshuffles the policy's tenants.
    pub salt: String,
    pub overrides: BTreeMap<TenantId, Pin>,
    /// Set by a rollback, cleared when the canary resumes or is replaced.
    pub rolled_back: bool,
    /// Starts at 1 on creation and grows by one with every change.
    pub revision: u64,
    pub created_at: Timestamp,
    pub created_by: Actor,
    pub updated_at: Timestamp,
    pub updated_by: Actor,
}

/// Where a policy stands in its rollout, derived from its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// No canary version configured: everybody is on stable.
    NoCanary,
    /// A canary version is set but receives no share yet.
    Staged,
    /// Some but not all tenants are on canary.
    Ramping,
    /// Everybody (but tenants pinned to stable) is on canary; promote to finish.
    AtFull,
    /// The canary was rolled back to 0%; its version is kept so it can resume.
    RolledBack,
}

impl RolloutState {
    pub fn label(self) -> &'static str {
        match self {
            RolloutState::NoCanary => "no canary",
            RolloutState::Staged => "staged",
            RolloutState::Ramping => "ramping",
            RolloutState::AtFull => "at 100%",
            RolloutState::RolledBack => "rolled back",
        }
    }
}

impl PolicyConfig {
    /// A new policy at revision 1, salted with its own name, no pins.
    pub fn new(
        name: PolicyName,
        stable: Version,
        canary: Option<Version>,
        share: BasisPoints,
        actor: Actor,
        now: Timestamp,
    ) -> PolicyConfig {
        PolicyConfig {
            salt: name.to_string(),
            policy_name: name,
            stable_version: stable,
            canary_version: canary,
            canary_basis_points: share,
            overrides: BTreeMap::new(),
            rolled_back: false,
            revision: 1,
            created_at: now,
            created_by: actor.clone(),
            updated_at: now,
            updated_by: actor,
        }
    }

    pub fn state(&self) -> RolloutState {
        match (&self.canary_version, self.canary_basis_points.get()) {
            (None, _) => RolloutState::NoCanary,
            (Some(_), 0) if self.rolled_back => RolloutState::RolledBack,
            (Some(_), 0) => RolloutState::Staged,
            (Some(_), 10_000) => RolloutState::AtFull,
            (Some(_), _) => RolloutState::Ramping,
        }
    }
}
