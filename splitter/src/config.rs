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
    /// The rollout plan, if one was ever started (kept after it ends, saying how it ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::plans::Plan>,
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
    /// Every state, in the order a rollout passes through them.
    pub const ALL: [RolloutState; 5] = [
        RolloutState::NoCanary,
        RolloutState::Staged,
        RolloutState::Ramping,
        RolloutState::AtFull,
        RolloutState::RolledBack,
    ];

    /// The state as URLs, CSS classes and JSON name it: `no_canary`, `ramping`, …
    pub fn key(self) -> &'static str {
        match self {
            RolloutState::NoCanary => "no_canary",
            RolloutState::Staged => "staged",
            RolloutState::Ramping => "ramping",
            RolloutState::AtFull => "at_full",
            RolloutState::RolledBack => "rolled_back",
        }
    }

    /// The state named by its [`key`](Self::key).
    pub fn from_key(key: &str) -> Option<RolloutState> {
        Self::ALL.into_iter().find(|s| s.key() == key)
    }

    /// The state as people read it: `no canary`, `at 100%`, …
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

/// What a version is to a policy: its stable, its canary, or neither any more (a version seen
/// in recorded traffic that an earlier config routed to). Ordered as pages list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionRole {
    Stable,
    Canary,
    Earlier,
}

impl VersionRole {
    pub fn key(self) -> &'static str {
        match self {
            VersionRole::Stable => "stable",
            VersionRole::Canary => "canary",
            VersionRole::Earlier => "earlier",
        }
    }
}

impl std::fmt::Display for VersionRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
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
            plan: None,
        }
    }

    /// The share of tenants the canary receives: the configured share, or 0% without a canary
    /// version (a share may be stored while no canary is set).
    pub fn effective_share(&self) -> BasisPoints {
        if self.canary_version.is_some() {
            self.canary_basis_points
        } else {
            BasisPoints::ZERO
        }
    }

    /// What `version` is to this policy now.
    pub fn role_of(&self, version: &str) -> VersionRole {
        if self.stable_version.as_str() == version {
            VersionRole::Stable
        } else if self
            .canary_version
            .as_ref()
            .is_some_and(|c| c.as_str() == version)
        {
            VersionRole::Canary
        } else {
            VersionRole::Earlier
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(canary: Option<&str>, bp: u32) -> PolicyConfig {
        PolicyConfig::new(
            PolicyName::new("pay").unwrap(),
            Version::new("v1").unwrap(),
            canary.map(|c| Version::new(c).unwrap()),
            BasisPoints::new(bp).unwrap(),
            Actor::new("t").unwrap(),
            Timestamp::from_second(0).unwrap(),
        )
    }

    #[test]
    fn state_keys_round_trip_and_match_serde() {
        for s in RolloutState::ALL {
            assert_eq!(RolloutState::from_key(s.key()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.key());
        }
        assert_eq!(RolloutState::from_key("at 100%"), None);
    }

    #[test]
    fn effective_share_is_zero_without_a_canary() {
        assert_eq!(config(None, 2500).effective_share(), BasisPoints::ZERO);
        assert_eq!(config(Some("v2"), 2500).effective_share().get(), 2500);
    }

    #[test]
    fn roles_of_versions() {
        let c = config(Some("v2"), 100);
        assert_eq!(c.role_of("v1"), VersionRole::Stable);
        assert_eq!(c.role_of("v2"), VersionRole::Canary);
        assert_eq!(c.role_of("v0"), VersionRole::Earlier);
        assert!(
            VersionRole::Stable < VersionRole::Canary && VersionRole::Canary < VersionRole::Earlier
        );
    }
}
