//! The plan controller: in every replica, on a fixed cadence, judges each running plan's
//! current step on the traffic this replica holds in memory and advances, rolls back or pauses
//! it through the normal store operation, with the revision it judged. With several replicas
//! exactly one write lands (the others get a conflict and find the plan moved on the next
//! tick); a person's change in between ends the plan, so the controller never overwrites it.

use app::ssr::state::AppState;
use splitter::plans::{next_move, Move, Status};
use splitter::{Actor, Error, Operation, PolicyConfig, Request};
use std::time::Duration;

/// Runs [`tick`] every `every` while the state lives.
pub fn spawn(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            tick(&state, jiff::Timestamp::now()).await;
        }
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
