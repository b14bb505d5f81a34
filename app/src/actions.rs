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
    /// Start a rollout plan (the first step's share is set at once).
    StartPlan,
    PausePlan,
    ResumePlan,
    /// Go to the plan's next step now (a person's decision, without waiting for the hold).
    SkipStep,
    /// End the plan and roll the canary back.
    AbortPlan,
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
    /// A plan's steps: `original`, `fast`, or lines like `5% 15m` (`StartPlan`).
    pub steps: String,
    /// `promote` or `wait` (`StartPlan`; empty: promote).
    pub at_end: String,
}

impl PolicyAction {
    pub const ALL: [PolicyAction; 12] = [
        PolicyAction::SetCanary,
        PolicyAction::SetShare,
        PolicyAction::Promote,
        PolicyAction::Rollback,
        PolicyAction::Pin,
        PolicyAction::Unpin,
        PolicyAction::Delete,
        PolicyAction::StartPlan,
        PolicyAction::PausePlan,
        PolicyAction::ResumePlan,
        PolicyAction::SkipStep,
        PolicyAction::AbortPlan,
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
            PolicyAction::StartPlan => "plan",
            PolicyAction::PausePlan => "plan-pause",
            PolicyAction::ResumePlan => "plan-resume",
            PolicyAction::SkipStep => "plan-skip",
            PolicyAction::AbortPlan => "plan-abort",
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
                | PolicyAction::StartPlan
                | PolicyAction::SkipStep
                | PolicyAction::AbortPlan
        )
    }

    /// The confirmation an operator ticks, for actions that move traffic.
    pub fn confirmation(self) -> Option<&'static str> {
        match self {
            PolicyAction::SetShare => Some("I confirm this moves real tenants between versions"),
            PolicyAction::Promote => Some("I confirm: promote to stable for all tenants"),
            PolicyAction::Rollback => Some("I confirm: roll back to 0%"),
            PolicyAction::Delete => Some("I confirm: delete this policy"),
            PolicyAction::StartPlan => {
                Some("I confirm: the first step's share applies now, and the plan moves tenants by itself")
            }
            PolicyAction::SkipStep => Some("I confirm: go to the next step now (more tenants on canary)"),
            PolicyAction::AbortPlan => Some("I confirm: end the plan and roll back to 0%"),
            PolicyAction::SetCanary
            | PolicyAction::Pin
            | PolicyAction::Unpin
            | PolicyAction::PausePlan
            | PolicyAction::ResumePlan => None,
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
            PolicyAction::StartPlan => Operation::StartPlan {
                steps: parse_steps(&input.steps)?,
                at_end: match input.at_end.trim() {
                    "" | "promote" => splitter::plans::AtEnd::Promote,
                    "wait" => splitter::plans::AtEnd::Wait,
                    other => {
                        let why = format!("'{}': choose promote or wait", other.escape_debug());
                        return Err(Error::invalid("at end", why));
                    }
                },
            },
            PolicyAction::PausePlan => Operation::PausePlan {
                why: "paused by a person".into(),
            },
            PolicyAction::ResumePlan => Operation::ResumePlan,
            PolicyAction::SkipStep => Operation::AdvancePlan {
                why: "skipped to by a person".into(),
            },
            PolicyAction::AbortPlan => Operation::AbortPlan {
                why: "aborted by a person".into(),
            },
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
            (PolicyAction::StartPlan, _) => format!(
                "Plan started at {} (revision {rev}).",
                c.canary_basis_points
            ),
            (PolicyAction::PausePlan, _) => format!("Plan paused (revision {rev})."),
            (PolicyAction::ResumePlan, _) => {
                format!("Plan resumed; the step's hold starts again (revision {rev}).")
            }
            (PolicyAction::SkipStep, _) => format!(
                "Next step: canary at {} (revision {rev}).",
                c.canary_basis_points
            ),
            (PolicyAction::AbortPlan, _) => {
                format!("Plan ended; rolled back to 0% (revision {rev}).")
            }
            _ => format!("Saved (revision {rev})."),
        }
    }
}

/// A plan's steps from text: `original` (5% 15m, 10% 30m, 50% 1h, 100% 2h), `fast` (the
/// same with 30-s-scale holds: 30s, 1m, 2m, 4m), or one step per line or comma, a share then a
/// hold: `5% 15m`, `12.5 90s`, `100% 2h`.
pub fn parse_steps(text: &str) -> Result<Vec<splitter::plans::Step>, Error> {
    let steps = match text.trim() {
        "" | "original" => splitter::plans::preset(1.0),
        "fast" => splitter::plans::preset(1.0 / 30.0),
        list => list
            .split([',', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, line)| parse_step(i + 1, line))
            .collect::<Result<_, _>>()?,
    };
    splitter::plans::validate(&steps)?;
    Ok(steps)
}

fn parse_step(n: usize, line: &str) -> Result<splitter::plans::Step, Error> {
    let bad = |why: String| {
        Error::invalid(
            "steps",
            format!("step {n} ('{}'): {why}", line.escape_debug()),
        )
    };
    let mut words = line.split_whitespace();
    let (Some(share), Some(hold), None) = (words.next(), words.next(), words.next()) else {
        return Err(bad("give a share and a hold, like 5% 15m".into()));
    };
    let share = BasisPoints::parse(share).map_err(|e| bad(e.to_string()))?;
    let (number, unit) = hold.split_at(
        hold.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(hold.len()),
    );
    let seconds = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        _ => return Err(bad(format!("the hold '{hold}' needs a unit: s, m or h"))),
    };
    let hold_secs = number
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(seconds))
        .ok_or_else(|| bad(format!("the hold '{hold}' is not a whole number of {unit}")))?;
    Ok(splitter::plans::Step { share, hold_secs })
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

    #[test]
    fn plan_steps_parse_from_presets_and_lines_and_name_the_bad_step() {
        let original = parse_steps("original").unwrap();
        assert_eq!(original, splitter::plans::preset(1.0));
        assert_eq!(parse_steps("").unwrap(), original);
        assert_eq!(parse_steps("fast").unwrap()[0].hold_secs, 30);
        let typed = parse_steps("5% 90s, 12.5 2m\n100% 1h").unwrap();
        let got: Vec<(String, u32)> = typed
            .iter()
            .map(|s| (s.share.to_string(), s.hold_secs))
            .collect();
        assert_eq!(
            got,
            [
                ("5%".into(), 90),
                ("12.5%".into(), 120),
                ("100%".into(), 3600)
            ]
        );
        let no_unit = parse_steps("5% 15").unwrap_err().to_string();
        assert!(
            no_unit.contains("step 1") && no_unit.contains("needs a unit"),
            "{no_unit}"
        );
        let falling = parse_steps("50% 1m, 10% 1m").unwrap_err().to_string();
        assert!(falling.contains("step 2's share"), "{falling}");
        let input = ActionInput {
            steps: "fast".into(),
            at_end: "later".into(),
            ..Default::default()
        };
        let at_end = PolicyAction::StartPlan
            .operation(&input)
            .unwrap_err()
            .to_string();
        assert!(at_end.contains("choose promote or wait"), "{at_end}");
    }

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
