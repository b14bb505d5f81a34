//! A running plan's verdict, from the traffic this replica holds in memory (server only): what
//! the plan controller acts on and the policy page shows.

use super::state::AppState;
use crate::model::{TextTable, VerdictView};
use splitter::analysis::{judge, Comparison, Hurt, Outcome, Side, Step, Verdict};
use splitter::PolicyConfig;
use std::collections::HashMap;
use std::sync::Mutex;

/// Verdicts computed since the minutes they read last changed: the controller's ticks and every
/// open policy page ask for the same one, and it is recomputed only when the policy's revision,
/// the last complete minute, or what the cache holds for the judged minutes changes (a flush
/// of the still-filling minute does not count: the verdict reads complete minutes only).
#[derive(Default)]
pub struct Verdicts(Mutex<HashMap<String, (Key, Verdict)>>);

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    generation: u64,
    revision: u64,
    /// The last complete minute at the time of the look.
    complete: i64,
}

/// The verdict on the plan's current step (`None`: no active plan, no canary, or the store is
/// unreachable — then the traffic in memory may be stale, which pauses a plan and never passes
/// it).
pub fn verdict(state: &AppState, config: &PolicyConfig, now: jiff::Timestamp) -> Option<Verdict> {
    let plan = config.plan.as_ref()?;
    let (step, entered) = plan.step_entered()?;
    if state.outage().is_some() {
        return None;
    }
    let canary = config.canary_version.as_ref()?;
    let step = Step {
        canary: canary.as_str(),
        stable: config.stable_version.as_str(),
        share: plan.steps.get(step)?.share.get(),
        entered: entered.as_second(),
        now: now.as_second(),
        index: step,
        steps: plan.steps.len(),
    };
    let (pre, post) = step.minutes(&plan.guards);
    let key = Key {
        generation: state.traffic.generation_of(*pre.start(), *post.end()),
        revision: config.revision,
        complete: *post.end(),
    };
    let name = config.policy_name.as_str();
    if let Some((k, v)) = state.verdicts.0.lock().unwrap().get(name) {
        if *k == key {
            return Some(v.clone());
        }
    }
    let detail = state.traffic.detail(name, *pre.start(), *post.end());
    let v = judge(&detail, &step, &plan.guards);
    let mut memo = state.verdicts.0.lock().unwrap();
    memo.retain(|_, (k, _)| k.complete >= key.complete - 60);
    memo.insert(name.to_string(), (key, v.clone()));
    Some(v)
}

/// The verdict as the page shows it: the cohort comparison, each test, and who is hurt.
pub fn view_of(v: &Verdict) -> VerdictView {
    let label = match v.outcome {
        Outcome::Pass => "passing",
        Outcome::Fail => "failing: the plan rolls back",
        Outcome::Inconclusive => "inconclusive: waiting for more traffic from the moved tenants",
        Outcome::NoData => "no data yet",
        Outcome::Untrusted => "the data cannot be trusted: the plan pauses for a person",
    };
    let outcome = serde_json::to_value(v.outcome)
        .ok()
        .and_then(|o| o.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut tables = Vec::new();
    if let Some(c) = &v.comparison {
        tables.push(groups_table(c));
        if !c.tests.is_empty() {
            tables.push(tests_table(c));
        }
    }
    if !v.hurt.is_empty() {
        tables.push(hurt_table(&v.hurt));
    }
    VerdictView {
        outcome,
        label: label.into(),
        reason: v.reason.clone(),
        tables,
    }
}

fn rate(s: &Side) -> String {
    if s.requests == 0 {
        "—".into()
    } else {
        format!("{:.2}%", 100.0 * s.error_rate())
    }
}

fn ms(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| format!("{x:.1} ms"))
}

fn groups_table(c: &Comparison) -> TextTable {
    let row = |name: String, s: &Side| {
        vec![
            name,
            s.requests.to_string(),
            s.errors.to_string(),
            rate(s),
            ms(s.p95_ms),
            ms(s.p99_ms),
        ]
    };
    let (m, u) = (&c.moved, &c.unmoved);
    TextTable {
        caption: format!(
            "The same tenants before the step ({} min) and since ({} complete min)",
            c.baseline_minutes, c.step_minutes
        ),
        test: "verdict-cohorts".into(),
        head: ["Tenants", "Requests", "5xx", "5xx rate", "p95", "p99"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            row(
                format!("moved ({} cohorts), on the canary since", m.cohorts),
                &m.after,
            ),
            row("moved, on stable before".into(), &m.before),
            row(
                format!("not moved ({} cohorts), since", u.cohorts),
                &u.after,
            ),
            row("not moved, before".into(), &u.before),
        ],
    }
}

fn points(x: f64) -> String {
    format!("{:+.2}", x * 100.0)
}

fn tests_table(c: &Comparison) -> TextTable {
    let rows = c
        .tests
        .iter()
        .map(|t| {
            let share = t.metric == "request share";
            vec![
                t.metric.clone(),
                if share {
                    "—".into()
                } else {
                    format!("{:.2}%", t.before * 100.0)
                },
                if share {
                    "—".into()
                } else {
                    format!("{:.2}%", t.after * 100.0)
                },
                if share {
                    "—".into()
                } else {
                    points(t.control_change)
                },
                if share {
                    format!("{:+.1}%", t.excess * 100.0)
                } else {
                    points(t.excess)
                },
                if share {
                    format!("±{:.1}%", t.margin * 100.0)
                } else {
                    format!("≤ {:.2}", t.margin * 100.0)
                },
                format!("{:.1} of {:.1}", t.evidence, t.bar),
                (if t.failed { "fails" } else { "holds" }).into(),
            ]
        })
        .collect();
    TextTable {
        caption: "Each test: the moved tenants' change beyond the others' (points), and the \
                  evidence against the canary (ln of an always-valid likelihood ratio) next to \
                  the bar it must reach"
            .into(),
        test: "verdict-tests".into(),
        head: [
            "Test",
            "Moved before",
            "Moved since",
            "Others' change",
            "Excess",
            "Tolerated",
            "Evidence",
            "Result",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

fn hurt_table(hurt: &[Hurt]) -> TextTable {
    TextTable {
        caption: "Who is hurt: the heaviest tenants on the canary with more 5xx or slow requests \
                  than their own traffic before the step predicts"
            .into(),
        test: "verdict-hurt".into(),
        head: [
            "Tenant",
            "Requests since",
            "5xx since",
            "Excess 5xx",
            "Excess slow",
        ]
        .map(String::from)
        .to_vec(),
        rows: hurt
            .iter()
            .map(|h| {
                vec![
                    h.tenant.clone(),
                    h.requests.to_string(),
                    h.errors.to_string(),
                    format!("{:.0}", h.excess_errors),
                    format!("{:.0}", h.excess_slow),
                ]
            })
            .collect(),
    }
}
