//! A running plan's verdict, from the traffic this replica holds in memory (server only): what
//! the plan controller acts on and the policy page shows.

use super::state::AppState;
use splitter::analysis::{judge, sum_versions, Verdict};
use splitter::plans::Status;
use splitter::PolicyConfig;

/// The verdict on the plan's current step's minutes (`None`: no active plan, no canary, or
/// the store is unreachable — then the traffic in memory may be stale, which pauses a plan and
/// never passes it).
pub fn verdict(state: &AppState, config: &PolicyConfig, now: jiff::Timestamp) -> Option<Verdict> {
    let plan = config.plan.as_ref()?;
    let (Status::Running { since, .. } | Status::Paused { since, .. }) = &plan.status else {
        return None;
    };
    if state.outage().is_some() {
        return None;
    }
    let canary = config.canary_version.as_ref()?;
    let (from, to) = (
        splitter::traffic::minute_of(*since),
        splitter::traffic::minute_of(now),
    );
    let minutes = state
        .traffic
        .policy(config.policy_name.as_str(), from, to)
        .minutes;
    let (c, s) = sum_versions(&minutes, canary.as_str(), config.stable_version.as_str());
    Some(judge(&c, &s, &plan.guards, plan.looks()))
}
