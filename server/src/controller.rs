//! The plan controller: in every replica, on a fixed cadence, judges each running plan's
//! current step on the traffic this replica holds in memory and advances, rolls back or pauses
//! it through the normal store operation, with the revision it judged. With several replicas
//! exactly one write lands (the others get a conflict and find the plan moved on the next
//! tick); a person's change in between ends the plan, so the controller never overwrites it.

use crate::webhooks::{Notice, Webhooks};
use app::ssr::state::AppState;
use splitter::plans::{next_move, Move, Status};
use splitter::{Actor, Error, Operation, PolicyConfig, Request};
use std::time::Duration;

/// Runs [`run_once`] every `every` while the state lives.
pub fn spawn(state: AppState, every: Duration, hooks: Webhooks) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            // Each pass in its own task: should one ever panic, the next pass still runs.
            let (state, hooks) = (state.clone(), hooks.clone());
            let pass =
                tokio::spawn(async move { run_once(&state, jiff::Timestamp::now(), &hooks).await });
            if let Err(e) = pass.await {
                tracing::error!(error = %e, "a plan controller pass failed; the next one runs as usual");
            }
        }
    })
}

/// One [`tick`], then a notice for every move that landed here (so each transition is
/// announced once, by the replica whose write won).
pub async fn run_once(
    state: &AppState,
    now: jiff::Timestamp,
    hooks: &Webhooks,
) -> Vec<(String, Move)> {
    let landed = tick(state, now).await;
    for (policy, decided) in &landed {
        if let Some(notice) = notice(state, policy, decided) {
            hooks.notify(notice);
        }
    }
    landed
}

/// What to announce about `decided` on `policy`, from the config it left behind.
fn notice(state: &AppState, policy: &str, decided: &Move) -> Option<Notice> {
    let c = state.config(policy)?;
    let ended = c.plan.as_ref().is_some_and(|p| !p.active());
    let (event, reason) = match decided {
        Move::Advance(why) if ended && c.canary_version.is_none() => ("promoted", why),
        Move::Advance(why) => ("advanced", why),
        Move::RollBack(why) => ("rolled_back", why),
        Move::Pause(why) => ("paused", why),
    };
    let text = match event {
        "promoted" => format!(
            "APX Canary: {policy} promoted {} to stable by its plan.",
            c.stable_version
        ),
        "advanced" if ended => format!(
            "APX Canary: {policy}'s plan completed at {}; waiting for a person to promote.",
            c.canary_basis_points
        ),
        "advanced" => format!(
            "APX Canary: {policy}'s plan advanced to {}.",
            c.canary_basis_points
        ),
        "rolled_back" => {
            format!("APX Canary: {policy}'s canary was rolled back by its plan: {reason}")
        }
        _ => format!("APX Canary: {policy}'s plan paused: {reason}"),
    };
    Some(Notice {
        text,
        policy: policy.to_string(),
        event,
        share: c.canary_basis_points.to_string(),
        revision: c.revision,
        reason: reason.clone(),
    })
}

/// One pass over every running plan at `now`; returns the moves that landed.
pub async fn tick(state: &AppState, now: jiff::Timestamp) -> Vec<(String, Move)> {
    let mut landed = Vec::new();
    for config in state.splitter.policies().values() {
        let Some(plan) = config
            .plan
            .as_ref()
            .filter(|p| matches!(p.status, Status::Running { .. }))
        else {
            continue;
        };
        let verdict = app::ssr::plans::verdict(state, config, now);
        let Some(decided) = next_move(plan, verdict.as_ref(), now) else {
            continue;
        };
        match apply(state, config, &decided).await {
            Ok(()) => landed.push((config.policy_name.to_string(), decided)),
            // Another replica, or a person, moved first: the next tick sees what they did.
            Err(Error::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(policy = %config.policy_name, error = %e, "the plan controller could not write its move")
            }
        }
    }
    landed
}

async fn apply(state: &AppState, config: &PolicyConfig, decided: &Move) -> splitter::Result<()> {
    let (operation, reason) = match decided {
        Move::Advance(why) => (
            Operation::AdvancePlan { why: short(why) },
            format!("step passed: {why}"),
        ),
        Move::RollBack(why) => (
            Operation::AbortPlan { why: short(why) },
            format!("rolled back automatically: {why}"),
        ),
        Move::Pause(why) => (
            Operation::PausePlan { why: short(why) },
            format!("paused: {why}"),
        ),
    };
    let request = Request {
        policy: config.policy_name.clone(),
        expected_revision: Some(config.revision),
        operation,
        actor: Actor::new(format!("plan of {}", config.policy_name))?,
        reason: short(&reason),
    };
    state.execute(&request).await.map(|_| ())
}

/// Keeps a verdict's words within what the audit trail takes.
fn short(text: &str) -> String {
    text.chars().take(900).collect()
}
