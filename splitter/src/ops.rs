//! Operations on a policy and the audit trail: pure functions from (current config, request) to
//! the change a store must commit atomically. Stores never decide; they compare and swap.

use crate::config::{Pin, PolicyConfig, MAX_OVERRIDES};
use crate::error::{Error, Result};
use crate::names::{validate_reason, validate_salt, Actor, PolicyName, TenantId, Version};
use crate::share::BasisPoints;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What a new policy starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPolicy {
    pub stable_version: Version,
    #[serde(default)]
    pub canary_version: Option<Version>,
    #[serde(default)]
    pub share: BasisPoints,
    /// Defaults to the policy name.
    #[serde(default)]
    pub salt: Option<String>,
}

/// One change to one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Operation {
    Create(NewPolicy),
    /// Start (or replace, at 0%) the canary version.
    SetCanaryVersion {
        version: Version,
    },
    SetShare {
        share: BasisPoints,
    },
    /// stable := canary; canary cleared; share 0.
    Promote,
    /// Share to 0; the canary version is kept so the rollout can resume.
    Rollback,
    Pin {
        tenant: TenantId,
        pin: Pin,
    },
    Unpin {
        tenant: TenantId,
    },
    /// Reshuffles which tenants are on canary; only at 0% or 100% so nobody moves.
    SetSalt {
        salt: String,
    },
    Delete,
    /// Starts a rollout plan at its first step (needs a canary version and no active plan).
    StartPlan {
        steps: Vec<crate::plans::Step>,
        at_end: crate::plans::AtEnd,
    },
    /// Stops a running plan where it is until someone resumes it.
    PausePlan {
        why: String,
    },
    /// Resumes a paused plan; the step's hold starts again.
    ResumePlan,
    /// Goes to the plan's next step (or, after the last, promotes or holds for a person).
    AdvancePlan {
        why: String,
    },
    /// Ends the plan and rolls the canary back.
    AbortPlan {
        why: String,
    },
}

impl Operation {
    /// The action name recorded in the audit trail.
    pub fn action(&self) -> &'static str {
        match self {
            Operation::Create(_) => "create",
            Operation::SetCanaryVersion { .. } => "set_canary_version",
            Operation::SetShare { .. } => "set_share",
            Operation::Promote => "promote",
            Operation::Rollback => "rollback",
            Operation::Pin { .. } => "pin",
            Operation::Unpin { .. } => "unpin",
            Operation::SetSalt { .. } => "set_salt",
            Operation::Delete => "delete",
            Operation::StartPlan { .. } => "start_plan",
            Operation::PausePlan { .. } => "pause_plan",
            Operation::ResumePlan => "resume_plan",
            Operation::AdvancePlan { .. } => "advance_plan",
            Operation::AbortPlan { .. } => "abort_plan",
        }
    }
}

/// A request to change a policy, as an operator or an API client states it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub policy: PolicyName,
    /// The revision the change is based on. Required for every operation but `Create`.
    pub expected_revision: Option<u64>,
    pub operation: Operation,
    pub actor: Actor,
    pub reason: String,
}

/// One entry of the audit trail, written in the same transaction as the change it records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique and sortable within a policy: `<policy>.<micros since epoch>.<revision>`.
    pub id: String,
    pub policy_name: PolicyName,
    pub action: String,
    pub before: Option<PolicyConfig>,
    pub after: Option<PolicyConfig>,
    pub actor: Actor,
    pub reason: String,
    pub time: Timestamp,
    /// The policy's revision after the change (for a delete: the deleted revision + 1).
    pub revision: u64,
}

/// What a store must commit atomically: if the policy's current revision equals `expected`
/// (`None`: the policy must not exist), write `after` (`None`: delete) and append `event`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub policy: PolicyName,
    pub expected: Option<u64>,
    pub after: Option<PolicyConfig>,
    pub event: AuditEvent,
}

/// Validates `request` against `current` (what the store holds now) and returns the change to
/// commit. A stale `expected_revision` fails with [`Error::Conflict`].
pub fn plan(current: Option<&PolicyConfig>, request: &Request, now: Timestamp) -> Result<Change> {
    validate_reason(&request.reason)?;
    // Stores keep microseconds (Firestore does); so does every config, whatever the store.
    let now = Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now);
    let name = &request.policy;
    let after = match (&request.operation, current) {
        (Operation::Create(new), None) => Some(create(name, new, &request.actor, now)?),
        (Operation::Create(_), Some(_)) => return Err(Error::AlreadyExists(name.to_string())),
        (_, None) => return Err(Error::NotFound(name.to_string())),
        (op, Some(cur)) => {
            let Some(expected) = request.expected_revision else {
                return Err(Error::invalid(
                    "revision",
                    "every change must state the revision it is based on (reload the policy)",
                ));
            };
            if expected != cur.revision {
                return Err(Error::Conflict {
                    policy: name.to_string(),
                    expected: Some(expected),
                    current: Some(Box::new(cur.clone())),
                });
            }
            match op {
                Operation::Delete => None,
                op => {
                    let mut next = cur.clone();
                    if crate::plan_ops::is_plan_op(op) {
                        crate::plan_ops::apply(&mut next, op, now)?;
                    } else {
                        change(&mut next, op)?;
                        crate::plan_ops::manual_change(&mut next, op, &request.actor, now);
                    }
                    next.revision = cur.revision + 1;
                    next.updated_at = now;
                    next.updated_by = request.actor.clone();
                    Some(next)
                }
            }
        }
    };
    let revision = current.map_or(1, |c| c.revision + 1);
    let event = AuditEvent {
        id: format!("{}.{:017}.{}", name, now.as_microsecond().max(0), revision),
        policy_name: name.clone(),
        action: request.operation.action().to_string(),
        before: current.cloned(),
        after: after.clone(),
        actor: request.actor.clone(),
        reason: request.reason.clone(),
        time: now,
        revision,
    };
    Ok(Change {
        policy: name.clone(),
        expected: current.map(|c| c.revision),
        after,
        event,
    })
}

fn create(
    name: &PolicyName,
    new: &NewPolicy,
    actor: &Actor,
    now: Timestamp,
) -> Result<PolicyConfig> {
    let salt = new.salt.clone().unwrap_or_else(|| name.to_string());
    validate_salt(&salt)?;
    if new.canary_version.as_ref() == Some(&new.stable_version) {
        return Err(Error::invalid(
            "canary version",
            format!("'{}' is already the stable version", new.stable_version),
        ));
    }
    if new.share > BasisPoints::ZERO && new.canary_version.is_none() {
        return Err(Error::invalid(
            "share",
            "a share above 0% needs a canary version",
        ));
    }
    let mut config = PolicyConfig::new(
        name.clone(),
        new.stable_version.clone(),
        new.canary_version.clone(),
        new.share,
        actor.clone(),
        now,
    );
    config.salt = salt;
    Ok(config)
}

/// Applies one non-create, non-delete operation to `c`, enforcing the state rules.
fn change(c: &mut PolicyConfig, op: &Operation) -> Result<()> {
    let share = c.canary_basis_points;
    match op {
        Operation::SetCanaryVersion { version } => {
            if *version == c.stable_version {
                return Err(Error::invalid(
                    "canary version",
                    format!("'{version}' is already the stable version"),
                ));
            }
            if c.canary_version.as_ref() == Some(version) {
                return Err(Error::NoChange(format!(
                    "'{version}' is already the canary version"
                )));
            }
            if share > BasisPoints::ZERO {
                return Err(Error::NotAllowed(format!(
                    "the canary {} serves {share} of tenants: roll it back to 0% or promote it before replacing it",
                    c.canary_version.as_ref().map_or("", |v| v.as_str())
                )));
            }
            c.canary_version = Some(version.clone());
            c.rolled_back = false;
        }
        Operation::SetShare { share: to } => {
            if c.canary_version.is_none() {
                return Err(Error::NotAllowed(
                    "there is no canary version: start a canary before setting a share".into(),
                ));
            }
            if *to == share {
                return Err(Error::NoChange(format!("the share is already {share}")));
            }
            c.canary_basis_points = *to;
            // Setting any share is a decision about the rollout, so the rollback mark goes;
            // 0% after a rollback stays a rollback.
            c.rolled_back = c.rolled_back && to.get() == 0;
        }
        Operation::Promote => {
            let Some(canary) = c.canary_version.take() else {
                return Err(Error::NotAllowed(
                    "there is no canary version to promote".into(),
                ));
            };
            if c.rolled_back {
                c.canary_version = Some(canary);
                return Err(Error::NotAllowed(
                    "the canary was rolled back: set a share to resume it before promoting".into(),
                ));
            }
            c.stable_version = canary;
            c.canary_basis_points = BasisPoints::ZERO;
            c.rolled_back = false;
        }
        Operation::Rollback => {
            if c.canary_version.is_none() {
                return Err(Error::NotAllowed("there is no canary to roll back".into()));
            }
            if share == BasisPoints::ZERO && c.rolled_back {
                return Err(Error::NoChange("the canary is already rolled back".into()));
            }
            c.canary_basis_points = BasisPoints::ZERO;
            c.rolled_back = true;
        }
        Operation::Pin { tenant, pin } => {
            if c.overrides.get(tenant) == Some(pin) {
                return Err(Error::NoChange(format!(
                    "tenant '{tenant}' is already pinned to {pin}"
                )));
            }
            if !c.overrides.contains_key(tenant) && c.overrides.len() >= MAX_OVERRIDES {
                return Err(Error::NotAllowed(format!(
                    "a policy can pin at most {MAX_OVERRIDES} tenants; unpin some first"
                )));
            }
            c.overrides.insert(tenant.clone(), *pin);
        }
        Operation::Unpin { tenant } => {
            if c.overrides.remove(tenant).is_none() {
                return Err(Error::NoChange(format!("tenant '{tenant}' is not pinned")));
            }
        }
        Operation::SetSalt { salt } => {
            validate_salt(salt)?;
            if *salt == c.salt {
                return Err(Error::NoChange("the salt is already that".into()));
            }
            if c.canary_version.is_some() && share > BasisPoints::ZERO && share < BasisPoints::FULL
            {
                return Err(Error::NotAllowed(format!(
                    "changing the salt at {share} would move tenants between stable and canary: set the share to 0% or 100% first"
                )));
            }
            c.salt = salt.clone();
        }
        Operation::Create(_) | Operation::Delete => unreachable!("handled by plan"),
        _ => unreachable!("plan operations are applied by plan_ops"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn request(rev: Option<u64>, operation: Operation) -> Request {
        Request {
            policy: PolicyName::new("p").unwrap(),
            expected_revision: rev,
            operation,
            actor: Actor::new("alice").unwrap(),
            reason: String::new(),
        }
    }

    fn created(canary: Option<&str>, share: u32) -> PolicyConfig {
        let op = Operation::Create(NewPolicy {
            stable_version: Version::new("v1").unwrap(),
            canary_version: canary.map(|c| Version::new(c).unwrap()),
            share: BasisPoints::new(share).unwrap(),
            salt: None,
        });
        plan(None, &request(None, op), now())
            .unwrap()
            .after
            .unwrap()
    }

    fn apply(c: &PolicyConfig, op: Operation) -> Result<PolicyConfig> {
        Ok(plan(Some(c), &request(Some(c.revision), op), now())?
            .after
            .unwrap())
    }

    #[test]
    fn create_rules() {
        let c = created(Some("v2"), 500);
        assert_eq!((c.revision, c.salt.as_str()), (1, "p"));
        let op = |canary: Option<&str>, share| {
            Operation::Create(NewPolicy {
                stable_version: Version::new("v1").unwrap(),
                canary_version: canary.map(|c| Version::new(c).unwrap()),
                share: BasisPoints::new(share).unwrap(),
                salt: None,
            })
        };
        let e = plan(None, &request(None, op(None, 100)), now()).unwrap_err();
        assert!(e.to_string().contains("needs a canary version"), "{e}");
        let e = plan(None, &request(None, op(Some("v1"), 0)), now()).unwrap_err();
        assert!(e.to_string().contains("already the stable version"), "{e}");
    }

    #[test]
    fn canary_version_cannot_be_swapped_under_traffic() {
        let c = created(Some("v2"), 500);
        let e = apply(
            &c,
            Operation::SetCanaryVersion {
                version: Version::new("v3").unwrap(),
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::NotAllowed(_)), "{e}");
        let c = apply(&c, Operation::Rollback).unwrap();
        let c = apply(
            &c,
            Operation::SetCanaryVersion {
                version: Version::new("v3").unwrap(),
            },
        )
        .unwrap();
        assert!(!c.rolled_back, "a new canary version starts fresh");
    }

    #[test]
    fn salt_changes_only_when_nobody_would_move() {
        let c = created(Some("v2"), 500);
        let e = apply(&c, Operation::SetSalt { salt: "new".into() }).unwrap_err();
        assert!(e.to_string().contains("would move tenants"), "{e}");
        let c0 = created(Some("v2"), 0);
        assert_eq!(
            apply(&c0, Operation::SetSalt { salt: "new".into() })
                .unwrap()
                .salt,
            "new"
        );
        let c100 = created(Some("v2"), 10_000);
        assert_eq!(
            apply(&c100, Operation::SetSalt { salt: "new".into() })
                .unwrap()
                .salt,
            "new"
        );
    }

    #[test]
    fn no_op_changes_are_refused() {
        let c = created(Some("v2"), 500);
        for op in [
            Operation::SetShare {
                share: BasisPoints::new(500).unwrap(),
            },
            Operation::SetCanaryVersion {
                version: Version::new("v2").unwrap(),
            },
            Operation::Unpin {
                tenant: TenantId::new("nobody").unwrap(),
            },
        ] {
            assert!(
                matches!(apply(&c, op.clone()), Err(Error::NoChange(_))),
                "{op:?}"
            );
        }
    }

    #[test]
    fn events_describe_the_change() {
        let c = created(Some("v2"), 500);
        let change = plan(Some(&c), &request(Some(1), Operation::Promote), now()).unwrap();
        assert_eq!(change.expected, Some(1));
        assert_eq!(change.event.action, "promote");
        assert_eq!(change.event.revision, 2);
        assert_eq!(change.event.before.as_ref(), Some(&c));
        let after = change.after.unwrap();
        assert_eq!(
            (
                after.stable_version.as_str(),
                after.canary_version.is_none()
            ),
            ("v2", true)
        );
        let too_long = Request {
            reason: "x".repeat(1001),
            ..request(Some(1), Operation::Rollback)
        };
        assert!(plan(Some(&c), &too_long, now())
            .unwrap_err()
            .to_string()
            .starts_with("reason:"));
    }

    #[test]
    fn pins_are_bounded() {
        let mut c = created(Some("v2"), 0);
        for i in 0..MAX_OVERRIDES {
            c.overrides
                .insert(TenantId::new(format!("t{i}")).unwrap(), Pin::Canary);
        }
        let e = apply(
            &c,
            Operation::Pin {
                tenant: TenantId::new("one-more").unwrap(),
                pin: Pin::Stable,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("at most 1000"), "{e}");
    }
}
