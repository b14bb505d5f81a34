//! How operations move a policy's rollout plan: the plan operations themselves, and what a
//! person's manual change does to a running plan (it ends it: a person's decision wins).

use crate::config::PolicyConfig;
use crate::error::{Error, Result};
use crate::names::Actor;
use crate::ops::Operation;
use crate::plans::{validate, Plan, Status};
use crate::share::BasisPoints;
use jiff::Timestamp;

pub(crate) fn is_plan_op(op: &Operation) -> bool {
    matches!(
        op,
        Operation::StartPlan { .. }
            | Operation::PausePlan { .. }
            | Operation::ResumePlan
            | Operation::AdvancePlan { .. }
            | Operation::AbortPlan { .. }
    )
}

/// Applies a plan operation to `c`, enforcing the plan's rules.
pub(crate) fn apply(c: &mut PolicyConfig, op: &Operation, now: Timestamp) -> Result<()> {
    match op {
        Operation::StartPlan { steps, at_end } => {
            validate(steps)?;
            if c.plan.as_ref().is_some_and(Plan::active) {
                return Err(Error::NotAllowed(
                    "a plan is already running: abort it first".into(),
                ));
            }
            if c.canary_version.is_none() {
                return Err(Error::NotAllowed(
                    "there is no canary version: start a canary before a plan".into(),
                ));
            }
            c.canary_basis_points = steps[0].share;
            c.rolled_back = false;
            c.plan = Some(Plan {
                steps: steps.clone(),
                at_end: *at_end,
                guards: Default::default(),
                status: Status::Running {
                    step: 0,
                    since: now,
                    entered: Some(now),
                },
            });
        }
        Operation::PausePlan { why } => {
            let plan = active(c)?;
            let Some((step, entered)) = plan.step_entered() else {
                unreachable!("active plans run or pause");
            };
            if matches!(plan.status, Status::Paused { .. }) {
                return Err(Error::NoChange("the plan is already paused".into()));
            }
            plan.status = Status::Paused {
                step,
                since: now,
                why: why.clone(),
                entered: Some(entered),
            };
        }
        Operation::ResumePlan => {
            let plan = active(c)?;
            let Some((step, entered)) = plan.step_entered() else {
                unreachable!("active plans run or pause");
            };
            if matches!(plan.status, Status::Running { .. }) {
                return Err(Error::NoChange("the plan is running".into()));
            }
            plan.status = Status::Running {
                step,
                since: now,
                entered: Some(entered),
            };
        }
        Operation::AdvancePlan { why } => advance(c, why, now)?,
        Operation::AbortPlan { why } => {
            active(c)?;
            c.canary_basis_points = BasisPoints::ZERO;
            c.rolled_back = true;
            end(c, format!("rolled back: {why}"), now);
        }
        _ => unreachable!("only plan operations come here"),
    }
    Ok(())
}

fn active(c: &mut PolicyConfig) -> Result<&mut Plan> {
    c.plan
        .as_mut()
        .filter(|p| p.active())
        .ok_or_else(|| Error::NotAllowed("no plan is running on this policy".into()))
}

fn end(c: &mut PolicyConfig, how: String, now: Timestamp) {
    if let Some(plan) = c.plan.as_mut() {
        plan.status = Status::Ended { at: now, how };
    }
}

/// The next step, or the plan's end: promote, or hold at the last step for a person.
fn advance(c: &mut PolicyConfig, why: &str, now: Timestamp) -> Result<()> {
    let plan = active(c)?;
    let (Status::Running { step, .. } | Status::Paused { step, .. }) = plan.status else {
        unreachable!("active plans run or pause");
    };
    if let Some(next) = plan.steps.get(step + 1).copied() {
        plan.status = Status::Running {
            step: step + 1,
            since: now,
            entered: Some(now),
        };
        c.canary_basis_points = next.share;
        return Ok(());
    }
    match plan.at_end {
        crate::plans::AtEnd::Promote => {
            let canary = c.canary_version.take().expect("a plan runs with a canary");
            c.stable_version = canary;
            c.canary_basis_points = BasisPoints::ZERO;
            end(c, format!("promoted: {why}"), now);
        }
        crate::plans::AtEnd::Wait => end(
            c,
            format!("completed, holding for a person to promote: {why}"),
            now,
        ),
    }
    Ok(())
}

/// A person's change to the rollout (share, canary, promote, rollback, salt) ends a running or
/// paused plan, saying so: the controller never overrides a person.
pub(crate) fn manual_change(c: &mut PolicyConfig, op: &Operation, actor: &Actor, now: Timestamp) {
    let moves_rollout = !matches!(op, Operation::Pin { .. } | Operation::Unpin { .. });
    if moves_rollout && c.plan.as_ref().is_some_and(Plan::active) {
        end(
            c,
            format!("stopped by a manual {} by {actor}", op.action()),
            now,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::{plan as change_of, NewPolicy, Operation, Request};
    use crate::plans::{preset, AtEnd, Status};
    use crate::{Actor, BasisPoints, PolicyConfig, PolicyName, Version};
    use jiff::Timestamp;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn run(
        c: Option<&PolicyConfig>,
        op: Operation,
        who: &str,
        t: i64,
    ) -> crate::Result<PolicyConfig> {
        let request = Request {
            policy: PolicyName::new("p").unwrap(),
            expected_revision: c.map(|c| c.revision),
            operation: op,
            actor: Actor::new(who).unwrap(),
            reason: String::new(),
        };
        Ok(change_of(c, &request, at(t))?.after.expect("not a delete"))
    }

    fn staged() -> PolicyConfig {
        let new = NewPolicy {
            stable_version: Version::new("v1").unwrap(),
            canary_version: Some(Version::new("v2").unwrap()),
            share: BasisPoints::ZERO,
            salt: None,
        };
        run(None, Operation::Create(new), "alice", 0).unwrap()
    }

    fn start(at_end: AtEnd) -> Operation {
        Operation::StartPlan {
            steps: preset(1.0),
            at_end,
        }
    }

    #[test]
    fn a_plan_walks_its_steps_and_promotes_at_the_end() {
        let mut c = run(Some(&staged()), start(AtEnd::Promote), "alice", 1).unwrap();
        assert_eq!(c.canary_basis_points.to_string(), "5%");
        for (t, share) in [(10, "10%"), (20, "50%"), (30, "100%")] {
            c = run(
                Some(&c),
                Operation::AdvancePlan {
                    why: "passed".into(),
                },
                "plan of p",
                t,
            )
            .unwrap();
            assert_eq!(c.canary_basis_points.to_string(), share);
        }
        c = run(
            Some(&c),
            Operation::AdvancePlan { why: "held".into() },
            "plan of p",
            40,
        )
        .unwrap();
        assert_eq!(
            (c.stable_version.as_str(), c.canary_version.is_none()),
            ("v2", true)
        );
        let status = &c.plan.as_ref().unwrap().status;
        assert_eq!(
            status,
            &Status::Ended {
                at: at(40),
                how: "promoted: held".into()
            }
        );
        let again = run(
            Some(&c),
            Operation::AdvancePlan { why: "x".into() },
            "plan of p",
            50,
        );
        assert!(again
            .unwrap_err()
            .to_string()
            .contains("no plan is running"));
    }

    #[test]
    fn a_plan_that_waits_holds_at_the_last_step() {
        let mut c = run(
            Some(&staged()),
            Operation::StartPlan {
                steps: preset(1.0)[3..].to_vec(),
                at_end: AtEnd::Wait,
            },
            "alice",
            1,
        )
        .unwrap();
        c = run(
            Some(&c),
            Operation::AdvancePlan { why: "held".into() },
            "plan of p",
            9,
        )
        .unwrap();
        assert_eq!(c.canary_basis_points, BasisPoints::FULL);
        assert!(!c.plan.unwrap().active());
    }

    #[test]
    fn pause_resume_and_abort() {
        let c = run(Some(&staged()), start(AtEnd::Promote), "alice", 1).unwrap();
        let paused = run(
            Some(&c),
            Operation::PausePlan {
                why: "lunch".into(),
            },
            "bob",
            5,
        )
        .unwrap();
        assert!(matches!(
            paused.plan.as_ref().unwrap().status,
            Status::Paused { step: 0, .. }
        ));
        let resumed = run(Some(&paused), Operation::ResumePlan, "bob", 9).unwrap();
        assert_eq!(
            resumed.plan.as_ref().unwrap().status,
            Status::Running {
                step: 0,
                since: at(9),
                entered: Some(at(1)),
            },
            "resuming keeps when the step's share was set (the analysis's baseline)"
        );
        let aborted = run(
            Some(&resumed),
            Operation::AbortPlan { why: "5xx".into() },
            "plan of p",
            12,
        )
        .unwrap();
        assert_eq!(
            (aborted.canary_basis_points, aborted.rolled_back),
            (BasisPoints::ZERO, true)
        );
        assert!(!aborted.plan.unwrap().active());
    }

    #[test]
    fn a_manual_change_ends_a_running_plan_and_a_pin_does_not() {
        let c = run(Some(&staged()), start(AtEnd::Promote), "alice", 1).unwrap();
        let pinned = run(
            Some(&c),
            Operation::Pin {
                tenant: crate::TenantId::new("t").unwrap(),
                pin: crate::Pin::Canary,
            },
            "bob",
            2,
        )
        .unwrap();
        assert!(pinned.plan.as_ref().unwrap().active());
        let manual = run(
            Some(&pinned),
            Operation::SetShare {
                share: BasisPoints::new(2_500).unwrap(),
            },
            "bob",
            3,
        )
        .unwrap();
        let status = &manual.plan.unwrap().status;
        assert_eq!(
            status,
            &Status::Ended {
                at: at(3),
                how: "stopped by a manual set_share by bob".into()
            }
        );
    }

    #[test]
    fn a_plan_needs_a_canary_and_no_other_plan() {
        let running = run(Some(&staged()), start(AtEnd::Promote), "alice", 1).unwrap();
        let twice = run(Some(&running), start(AtEnd::Promote), "alice", 2);
        assert!(twice.unwrap_err().to_string().contains("already running"));
        let new = NewPolicy {
            stable_version: Version::new("v1").unwrap(),
            canary_version: None,
            share: BasisPoints::ZERO,
            salt: None,
        };
        let bare = run(None, Operation::Create(new), "alice", 0).unwrap();
        assert!(run(Some(&bare), start(AtEnd::Promote), "alice", 1)
            .unwrap_err()
            .to_string()
            .contains("no canary version"));
    }
}
