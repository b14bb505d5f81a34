//! Rollout plans: an ordered list of steps (a share and a hold), what happens at the end, the
//! guards the canary must stay within, and where the plan stands. A plan is stored with its
//! policy (so it is audited, revision-checked and survives restarts); it moves only through
//! operations ([`crate::ops::Operation`]). [`next_move`] is the controller's decision, a pure
//! function of the plan, a verdict and the time.

use crate::analysis::{Guards, Outcome, Verdict};
use crate::error::{Error, Result};
use crate::share::BasisPoints;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Steps a plan may have.
pub const MAX_STEPS: usize = 20;
/// The shortest hold (short enough to demo and test).
pub const MIN_HOLD_SECS: u32 = 30;
/// The longest hold: a week.
pub const MAX_HOLD_SECS: u32 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub share: BasisPoints,
    pub hold_secs: u32,
}

/// What a plan does after its last step's hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtEnd {
    /// Promote the canary to stable.
    Promote,
    /// Stay at the last step until a person promotes.
    Wait,
}

/// Where a plan stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    /// At `step` (0-based) since `since` (when its share was set or the plan resumed);
    /// `entered`: when the step's share was set (the analysis's baseline ends there; absent in
    /// plans stored before it existed, then `since`).
    Running {
        step: usize,
        since: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entered: Option<Timestamp>,
    },
    /// Stopped at `step` until someone resumes it.
    Paused {
        step: usize,
        since: Timestamp,
        why: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entered: Option<Timestamp>,
    },
    /// Over: promoted, holding at the end for a person, rolled back, aborted, or stopped by a
    /// manual change.
    Ended { at: Timestamp, how: String },
}

/// A policy's rollout plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub at_end: AtEnd,
    #[serde(default)]
    pub guards: Guards,
    pub status: Status,
}

/// The original recipe: 5 % for 15 min, 10 % for 30 min, 50 % for 1 h, 100 % for 2 h, then
/// promote. `scale` shortens every hold (1.0: as written; 1/30: 30 s, 1 min, 2 min, 4 min).
pub fn preset(scale: f64) -> Vec<Step> {
    [
        (500, 15 * 60),
        (1_000, 30 * 60),
        (5_000, 60 * 60),
        (10_000, 120 * 60),
    ]
    .into_iter()
    .map(|(bp, secs)| Step {
        share: BasisPoints::new(bp).expect("a valid share"),
        hold_secs: ((f64::from(secs) * scale).round() as u32).max(MIN_HOLD_SECS),
    })
    .collect()
}

/// Checks steps: 1 to [`MAX_STEPS`], shares above 0 % and rising, holds within bounds.
pub fn validate(steps: &[Step]) -> Result<()> {
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(Error::invalid(
            "steps",
            format!(
                "a plan has 1 to {MAX_STEPS} steps; this one has {}",
                steps.len()
            ),
        ));
    }
    let mut previous = BasisPoints::ZERO;
    for (i, s) in steps.iter().enumerate() {
        let n = i + 1;
        if s.share <= previous {
            return Err(Error::invalid(
                "steps",
                format!(
                    "step {n}'s share {} must be above the step before ({previous})",
                    s.share
                ),
            ));
        }
        if !(MIN_HOLD_SECS..=MAX_HOLD_SECS).contains(&s.hold_secs) {
            return Err(Error::invalid(
                "steps",
                format!(
                    "step {n}'s hold of {} s is outside {MIN_HOLD_SECS} s to 7 days",
                    s.hold_secs
                ),
            ));
        }
        previous = s.share;
    }
    Ok(())
}

impl Plan {
    /// Whether the plan still acts (running or paused).
    pub fn active(&self) -> bool {
        !matches!(self.status, Status::Ended { .. })
    }

    /// The current step (0-based) and when its share was set, while the plan is active.
    pub fn step_entered(&self) -> Option<(usize, Timestamp)> {
        match &self.status {
            Status::Running {
                step,
                since,
                entered,
            }
            | Status::Paused {
                step,
                since,
                entered,
                ..
            } => Some((*step, entered.unwrap_or(*since))),
            Status::Ended { .. } => None,
        }
    }
}

/// The step (0-based) at which a tenant in `bucket` (0–9 999) joins the canary, and how long after the
/// plan's start that step begins at the earliest (each earlier step's hold; a step can take
/// longer while its verdict waits for traffic). `None`: a step never reaches it.
pub fn joins_at(steps: &[Step], bucket: u16) -> Option<(usize, u64)> {
    let step = steps.iter().position(|s| bucket < s.share.get())?;
    let after: u64 = steps[..step].iter().map(|s| u64::from(s.hold_secs)).sum();
    Some((step, after))
}

/// What the controller should do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Move {
    /// Go to the next step (or finish), saying why.
    Advance(String),
    /// Roll back: the canary failed its guards.
    RollBack(String),
    /// Stop and wait for a person.
    Pause(String),
}

/// The controller's decision for a running plan at `now`, given the verdict on the current
/// step's minutes (`None`: the traffic could not be read). Pure: no clock, no I/O.
pub fn next_move(plan: &Plan, verdict: Option<&Verdict>, now: Timestamp) -> Option<Move> {
    let Status::Running { step, since, .. } = &plan.status else {
        return None;
    };
    let hold = i64::from(plan.steps.get(*step)?.hold_secs);
    let elapsed = now.as_second() - since.as_second();
    // The analysis reads complete minutes: a short hold waits at least two more for them.
    let patience = (2 * hold).max(hold + PATIENCE_SECS);
    let Some(v) = verdict else {
        return (elapsed > patience)
            .then(|| Move::Pause("traffic could not be read for twice the step's hold".into()));
    };
    let at_full = plan.steps[*step].share == BasisPoints::FULL;
    match v.outcome {
        Outcome::Fail => Some(Move::RollBack(v.reason.clone())),
        Outcome::Untrusted => Some(Move::Pause(v.reason.clone())),
        // At 100 % the hold decides unless the canary fails (or its data cannot be trusted).
        _ if at_full && elapsed >= hold => {
            Some(Move::Advance("held at 100% for the step's time".into()))
        }
        Outcome::Pass if elapsed >= hold => Some(Move::Advance(v.reason.clone())),
        Outcome::Inconclusive | Outcome::NoData if elapsed > patience => Some(Move::Pause(
            format!("still no verdict after twice the step's hold: {}", v.reason),
        )),
        _ => None,
    }
}

/// The least a step waits past its hold for a verdict before it pauses (seconds).
pub const PATIENCE_SECS: i64 = 120;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Side;

    fn plan(step: usize, since: i64) -> Plan {
        Plan {
            steps: preset(1.0 / 30.0),
            at_end: AtEnd::Promote,
            guards: Guards::default(),
            status: Status::Running {
                step,
                since: Timestamp::from_second(since).unwrap(),
                entered: None,
            },
        }
    }

    fn verdict(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            canary: Side::default(),
            stable: Side::default(),
            reason: format!("{outcome:?}"),
            comparison: None,
            hurt: Vec::new(),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn the_preset_is_the_original_recipe_and_scales_down_to_30_s() {
        let full = preset(1.0);
        let holds: Vec<u32> = full.iter().map(|s| s.hold_secs / 60).collect();
        let shares: Vec<String> = full.iter().map(|s| s.share.to_string()).collect();
        assert_eq!(holds, [15, 30, 60, 120]);
        assert_eq!(shares, ["5%", "10%", "50%", "100%"]);
        assert_eq!(preset(1.0 / 30.0)[0].hold_secs, 30);
        validate(&full).unwrap();
    }

    #[test]
    fn a_tenant_joins_at_the_first_step_whose_share_covers_its_bucket() {
        let steps = preset(1.0);
        let at = |b: u16| joins_at(&steps, b);
        assert_eq!(at(0), Some((0, 0)));
        assert_eq!(at(499), Some((0, 0)));
        assert_eq!(at(500), Some((1, 15 * 60)));
        assert_eq!(at(4_999), Some((2, 45 * 60)));
        assert_eq!(at(9_999), Some((3, 105 * 60)));
        assert_eq!(joins_at(&steps[..2], 5_000), None);
    }

    #[test]
    fn bad_steps_are_refused_with_the_step_named() {
        let mut steps = preset(1.0);
        steps[2].share = BasisPoints::new(800).unwrap();
        assert!(validate(&steps)
            .unwrap_err()
            .to_string()
            .contains("step 3's share"));
        let mut short = preset(1.0);
        short[0].hold_secs = 5;
        assert!(validate(&short)
            .unwrap_err()
            .to_string()
            .contains("step 1's hold"));
        assert!(validate(&[]).is_err());
    }

    #[test]
    fn a_step_advances_after_its_hold_only_on_a_pass() {
        let p = plan(0, 1_000);
        assert_eq!(
            next_move(&p, Some(&verdict(Outcome::Pass)), at(1_010)),
            None,
            "hold not over"
        );
        assert!(matches!(
            next_move(&p, Some(&verdict(Outcome::Pass)), at(1_030)),
            Some(Move::Advance(_))
        ));
        assert_eq!(
            next_move(&p, Some(&verdict(Outcome::Inconclusive)), at(1_030)),
            None,
            "waits"
        );
        assert!(matches!(
            next_move(&p, Some(&verdict(Outcome::Fail)), at(1_001)),
            Some(Move::RollBack(_))
        ));
    }

    #[test]
    fn no_verdict_for_twice_the_hold_pauses_never_passes() {
        let p = plan(0, 1_000);
        // A 30-s hold waits 2 minutes past it for complete minutes.
        assert_eq!(
            next_move(&p, Some(&verdict(Outcome::NoData)), at(1_150)),
            None
        );
        assert!(matches!(
            next_move(&p, Some(&verdict(Outcome::NoData)), at(1_151)),
            Some(Move::Pause(_))
        ));
        assert!(matches!(
            next_move(&p, None, at(1_151)),
            Some(Move::Pause(_))
        ));
        assert_eq!(next_move(&p, None, at(1_149)), None);
        assert!(matches!(
            next_move(&p, Some(&verdict(Outcome::Untrusted)), at(1_001)),
            Some(Move::Pause(_))
        ));
    }

    #[test]
    fn at_full_share_the_hold_alone_decides_unless_the_canary_fails() {
        let p = plan(3, 1_000);
        let hold = i64::from(p.steps[3].hold_secs);
        assert!(matches!(
            next_move(&p, Some(&verdict(Outcome::Inconclusive)), at(1_000 + hold)),
            Some(Move::Advance(_))
        ));
        assert!(matches!(
            next_move(&p, Some(&verdict(Outcome::Fail)), at(1_001)),
            Some(Move::RollBack(_))
        ));
    }
}
