//! Every write an operator can make, as one typed list, and the one parser from untyped input
//! (a form post or a JSON body) to the [`Operation`] a store executes. The policy page renders
//! its forms from [`PolicyAction`]; `server`'s form handler and JSON API both parse through
//! [`PolicyAction::operation`] and [`NewPolicyInput::parse`], so a rule added here holds for
//! both, and a new action cannot be forgotten in one of them.

use splitter::{
    BasisPoints, Error, NewPolicy, Operation, Pin, PolicyConfig, PolicyName, TenantId, Version,
};

/// A change to an existing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Start (or, at 0%, replace) the canary version.
    SetCanary,
    SetShare,
    Promote,
    Rollback,
    Pin,
    Unpin,
    Delete,
}

/// The untyped fields an action may take, as given (a form sends empty strings for fields it
/// lacks; the JSON API fills what its body and path carry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionInput {
    /// The canary version (`SetCanary`).
    pub version: String,
    /// `12.5`, `12.5%` or `1250bp` (`SetShare`).
    pub share: String,
    /// The tenant to pin or unpin.
    pub tenant: String,
    /// `canary` or `stable` (`Pin`).
    pub pin: String,
}

impl PolicyAction {
    pub const ALL: [PolicyAction; 7] = [
        PolicyAction::SetCanary,
        PolicyAction::SetShare,
        PolicyAction::Promote,
        PolicyAction::Rollback,
        PolicyAction::Pin,
        PolicyAction::Unpin,
        PolicyAction::Delete,
    ];

    /// The last segment of the form's path: `/policies/{name}/actions/{segment}`.
    pub fn segment(self) -> &'static str {
        match self {
            PolicyAction::SetCanary => "canary",
            PolicyAction::SetShare => "share",
            PolicyAction::Promote => "promote",
            PolicyAction::Rollback => "rollback",
            PolicyAction::Pin => "pin",
            PolicyAction::Unpin => "unpin",
            PolicyAction::Delete => "delete",
        }
    }

    pub fn from_segment(segment: &str) -> Option<PolicyAction> {
        Self::ALL.into_iter().find(|a| a.segment() == segment)
    }

    /// Where the page's form for this action posts.
    pub fn form_path(self, policy: &str) -> String {
        format!("/policies/{policy}/actions/{}", self.segment())
    }

    /// What a principal needs to take this action on `policy`: deleting a policy is an admin's
    /// job, everything else an operator's whose grant covers the policy. The server's guard
    /// and the page read this same rule.
    pub fn need(self, policy: &str) -> crate::access::Need {
        match self {
            PolicyAction::Delete => crate::access::Need::Admin,
            _ => crate::access::Need::Operate {
                policy: policy.to_string(),
            },
        }
    }

    /// Whether the change moves real tenants between versions (or stops routing a policy):
    /// such changes need an explicit confirmation in the browser.
    pub fn moves_traffic(self) -> bool {
        matches!(
            self,
            PolicyAction::SetShare
                | PolicyAction::Promote
                | PolicyAction::Rollback
                | PolicyAction::Delete
        )
    }

    /// The confirmation an operator ticks, for actions that move traffic.
    pub fn confirmation(self) -> Option<&'static str> {
        match self {
            PolicyAction::SetShare => Some("I confirm this moves real tenants between versions"),
            PolicyAction::Promote => Some("I confirm: promote to stable for all tenants"),
            PolicyAction::Rollback => Some("I confirm: roll back to 0%"),
            PolicyAction::Delete => Some("I confirm: delete this policy"),
            PolicyAction::SetCanary | PolicyAction::Pin | PolicyAction::Unpin => None,
        }
    }

    /// The one parser: the operation `input` asks for, or an error naming the field at fault.
    /// Versions, shares and pin targets are trimmed; a tenant to pin is trimmed (a pasted id
    /// often carries a stray space), a tenant to unpin is taken exactly as stored.
    pub fn operation(self, input: &ActionInput) -> Result<Operation, Error> {
        Ok(match self {
            PolicyAction::SetCanary => Operation::SetCanaryVersion {
                version: Version::new(input.version.trim())?,
            },
            PolicyAction::SetShare => Operation::SetShare {
                share: BasisPoints::parse(input.share.trim())?,
            },
            PolicyAction::Promote => Operation::Promote,
            PolicyAction::Rollback => Operation::Rollback,
            PolicyAction::Pin => Operation::Pin {
                tenant: TenantId::new(input.tenant.trim())?,
                pin: input.pin.parse::<Pin>()?,
            },
            PolicyAction::Unpin => Operation::Unpin {
                tenant: TenantId::new(&input.tenant)?,
            },
            PolicyAction::Delete => Operation::Delete,
        })
    }

    /// What the page tells the operator after `operation` was written (`after`: the policy as
    /// it is now; `None` once deleted).
    pub fn success(
        self,
        policy: &str,
        operation: &Operation,
        after: Option<&PolicyConfig>,
    ) -> String {
        let Some(c) = after else {
            return format!("Policy '{policy}' was deleted.");
        };
        let canary = c.canary_version.as_ref().map_or("", |v| v.as_str());
        let rev = c.revision;
        match (self, operation) {
            (PolicyAction::SetShare, _) => {
                format!(
                    "Canary share set to {} (revision {rev}).",
                    c.canary_basis_points
                )
            }
            (PolicyAction::SetCanary, _) => {
                format!("Canary version set to {canary} (revision {rev}).")
            }
            (PolicyAction::Promote, _) => format!(
                "Promoted: {} is now stable (revision {rev}).",
                c.stable_version
            ),
            (PolicyAction::Rollback, _) => {
                format!("Rolled back to 0%; canary {canary} kept (revision {rev}).")
            }
            (PolicyAction::Pin, Operation::Pin { tenant, pin }) => {
                format!("Pinned {tenant} to {pin} (revision {rev}).")
            }
            (PolicyAction::Unpin, Operation::Unpin { tenant }) => {
                format!("Unpinned {tenant} (revision {rev}).")
            }
            _ => format!("Saved (revision {rev})."),
        }
    }
}

/// A new policy's fields, untyped, as the create form and `POST /api/v1/policies` give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewPolicyInput {
    pub name: String,
    pub stable_version: String,
    /// Empty: no canary yet.
    pub canary_version: String,
    /// Empty: 0%.
    pub share: String,
    /// Empty: the policy name.
    pub salt: String,
}

impl NewPolicyInput {
    /// The one parser for creating a policy (every field trimmed).
    pub fn parse(&self) -> Result<(PolicyName, NewPolicy), Error> {
        let optional = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let name = PolicyName::new(self.name.trim())?;
        let new = NewPolicy {
            stable_version: Version::new(self.stable_version.trim())?,
            canary_version: optional(&self.canary_version)
                .map(Version::new)
                .transpose()?,
            share: match optional(&self.share) {
                None => BasisPoints::ZERO,
                Some(s) => BasisPoints::parse(&s)?,
            },
            salt: optional(&self.salt),
        };
        Ok((name, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(f: impl FnOnce(&mut ActionInput)) -> ActionInput {
        let mut i = ActionInput::default();
        f(&mut i);
        i
    }

    #[test]
    fn segments_round_trip_and_are_distinct() {
        for a in PolicyAction::ALL {
            assert_eq!(PolicyAction::from_segment(a.segment()), Some(a));
            assert_eq!(a.moves_traffic(), a.confirmation().is_some());
        }
        assert_eq!(PolicyAction::from_segment("set_share"), None);
        assert_eq!(
            PolicyAction::Promote.form_path("pay"),
            "/policies/pay/actions/promote"
        );
    }

    #[test]
    fn the_parser_builds_each_operation_and_names_the_bad_field() {
        let share = PolicyAction::SetShare.operation(&input(|i| i.share = " 12.5% ".into()));
        assert_eq!(
            share.unwrap(),
            Operation::SetShare {
                share: BasisPoints::new(1250).unwrap()
            }
        );
        let field = |r: Result<Operation, Error>| match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        assert_eq!(
            field(PolicyAction::SetShare.operation(&input(|i| i.share = "150".into()))),
            "share"
        );
        assert_eq!(
            field(PolicyAction::SetCanary.operation(&ActionInput::default())),
            "version"
        );
        assert_eq!(
            field(PolicyAction::Pin.operation(&input(|i| {
                i.tenant = "acme".into();
                i.pin = "both".into();
            }))),
            "pin"
        );
        let pin = PolicyAction::Pin.operation(&input(|i| {
            i.tenant = " acme ".into();
            i.pin = "canary".into();
        }));
        assert_eq!(
            pin.unwrap(),
            Operation::Pin {
                tenant: TenantId::new("acme").unwrap(),
                pin: Pin::Canary
            }
        );
        let unpin = PolicyAction::Unpin.operation(&input(|i| i.tenant = " acme ".into()));
        assert_eq!(
            unpin.unwrap(),
            Operation::Unpin {
                tenant: TenantId::new(" acme ").unwrap()
            }
        );
        assert_eq!(
            PolicyAction::Delete
                .operation(&ActionInput::default())
                .unwrap(),
            Operation::Delete
        );
    }

    #[test]
    fn a_new_policy_is_parsed_once_for_both_paths() {
        let (name, new) = NewPolicyInput {
            name: " orders ".into(),
            stable_version: "v1".into(),
            canary_version: " ".into(),
            share: "".into(),
            salt: "".into(),
        }
        .parse()
        .unwrap();
        assert_eq!(name.as_str(), "orders");
        assert_eq!(new.canary_version, None);
        assert_eq!(new.share, BasisPoints::ZERO);
        assert_eq!(new.salt, None);
        let bad = NewPolicyInput {
            name: "Bad Name".into(),
            ..Default::default()
        }
        .parse();
        assert!(matches!(
            bad,
            Err(Error::Invalid {
                field: "policy name",
                ..
            })
        ));
    }
}
