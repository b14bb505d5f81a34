//! The policy page's rollout plan: its steps with the current one, the time left in its hold,
//! the live verdict with its numbers, and pause / resume / skip / abort; or, without an active
//! plan, the form that starts one (and how the last one ended).

use crate::access::Caller;
use crate::actions::PolicyAction;
use crate::components::{ChangeFields, ReadOnly};
use crate::model::when;
use crate::model::{TextTable, VerdictView};
use leptos::prelude::*;
use splitter::plans::{AtEnd, Plan, Status};
use splitter::PolicyConfig;

/// The plan section for `c`; `who` decides which controls render.
pub fn plan_section(c: &PolicyConfig, verdict: Option<VerdictView>, who: &Caller) -> impl IntoView {
    let name = c.policy_name.to_string();
    let can = who.cannot(&PolicyAction::StartPlan.need(&name));
    let csrf = who.csrf.clone().unwrap_or_default();
    let body = match (c.plan.as_ref().filter(|p| p.active()), can) {
        (Some(plan), None) => {
            view! { {timeline(plan)} <LiveVerdict name=name.clone() first=verdict/> {plan_controls(c, plan, csrf)} }
                .into_any()
        }
        (Some(plan), Some(reason)) => {
            view! { {timeline(plan)} <LiveVerdict name=name.clone() first=verdict/> <ReadOnly reason/> }.into_any()
        }
        (None, None) if c.canary_version.is_some() => {
            view! { {last_plan(c.plan.as_ref())} {start_form(c, csrf)} }.into_any()
        }
        (None, None) => {
            view! { {last_plan(c.plan.as_ref())} <p>"Start a canary version to run a plan."</p> }
                .into_any()
        }
        (None, Some(reason)) => {
            view! { {last_plan(c.plan.as_ref())} <ReadOnly reason/> }.into_any()
        }
    };
    view! {
        <section class="plan" data-test="plan" aria-labelledby="plan-title">
            <h2 id="plan-title">"Rollout plan"</h2>
            {body}
        </section>
    }
}

fn hold_text(secs: u32) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The steps, the current one marked, with when its hold ends (or why it is paused).
fn timeline(plan: &Plan) -> impl IntoView {
    let (current, state) = match &plan.status {
        Status::Running { step, since, .. } => {
            let hold = plan.steps[*step].hold_secs;
            let ends = *since + jiff::SignedDuration::from_secs(i64::from(hold));
            (
                *step,
                format!(
                    "running; step {} holds until {} (if its verdict passes)",
                    step + 1,
                    when(ends)
                ),
            )
        }
        Status::Paused { step, why, .. } => (*step, format!("paused at step {}: {why}", step + 1)),
        Status::Ended { how, .. } => (usize::MAX, format!("ended: {how}")),
    };
    let end = match plan.at_end {
        AtEnd::Promote => "then promote",
        AtEnd::Wait => "then wait for a person to promote",
    };
    view! {
        <p data-test="plan-state">{state}</p>
        <ol class="plan-steps">
            {plan.steps.iter().enumerate().map(|(i, s)| {
                let class = match i.cmp(&current) {
                    std::cmp::Ordering::Less => "done",
                    std::cmp::Ordering::Equal => "current",
                    std::cmp::Ordering::Greater => "next",
                };
                let aria = (i == current).then_some("step");
                view! {
                    <li class=class aria-current=aria data-test=format!("plan-step-{}", i + 1)>
                        {format!("{} for {}", s.share, hold_text(s.hold_secs))}
                    </li>
                }
            }).collect_view()}
            <li class="end">{end}</li>
        </ol>
    }
}

/// The verdict, as the page was rendered with it; once hydrated, read again every 5 s (its own
/// small request: the rest of the page, and any half-filled form, stays as it is).
#[component]
fn LiveVerdict(name: String, first: Option<VerdictView>) -> impl IntoView {
    let tick = RwSignal::new(0u64);
    #[cfg(feature = "hydrate")]
    {
        let every = std::time::Duration::from_secs(5);
        if let Ok(handle) = set_interval_with_handle(move || tick.update(|t| *t += 1), every) {
            on_cleanup(move || handle.clear());
        }
    }
    let fresh = RwSignal::new(None::<Option<VerdictView>>);
    Effect::new(move |_| {
        if tick.get() == 0 {
            return;
        }
        let name = name.clone();
        leptos::task::spawn_local(async move {
            if let Ok(v) = crate::server_fns::plan_verdict(name).await {
                fresh.try_set(Some(v));
            }
        });
    });
    move || verdict_view(fresh.get().unwrap_or_else(|| first.clone()))
}

fn verdict_view(verdict: Option<VerdictView>) -> impl IntoView {
    let Some(v) = verdict else {
        return view! { <p class="verdict" data-test="verdict">"Verdict: none (the store is unreachable or there is no canary)."</p> }.into_any();
    };
    view! {
        <div class="verdict" data-test="verdict" data-outcome=v.outcome>
            <p><strong>{format!("Verdict on this step: {}", v.label)}</strong></p>
            <p data-test="verdict-reason">{v.reason}</p>
            {v.tables.into_iter().map(text_table).collect_view()}
        </div>
    }
    .into_any()
}

fn text_table(t: TextTable) -> impl IntoView {
    view! {
        <table data-test=t.test>
            <caption>{t.caption}</caption>
            <thead><tr>{t.head.into_iter().map(|h| view! { <th scope="col">{h}</th> }).collect_view()}</tr></thead>
            <tbody>
                {t.rows.into_iter().map(|row| {
                    let mut cells = row.into_iter();
                    let first = cells.next().unwrap_or_default();
                    view! { <tr><th scope="row">{first}</th>{cells.map(|c| view! { <td>{c}</td> }).collect_view()}</tr> }
                }).collect_view()}
            </tbody>
        </table>
    }
}

fn plan_controls(c: &PolicyConfig, plan: &Plan, csrf: String) -> impl IntoView {
    let name = c.policy_name.to_string();
    let rev = c.revision;
    let paused = matches!(plan.status, Status::Paused { .. });
    let toggle = if paused {
        PolicyAction::ResumePlan
    } else {
        PolicyAction::PausePlan
    };
    let form = move |action: PolicyAction,
                     id: &'static str,
                     label: &'static str,
                     class: &'static str,
                     csrf: String| {
        view! {
            <form method="post" action=action.form_path(&name) class="card">
                <ChangeFields revision=rev action id csrf/>
                <button type="submit" class=class>{label}</button>
            </form>
        }
    };
    view! {
        <div class="plan-controls">
            {form(toggle, "plan-toggle", if paused { "Resume plan" } else { "Pause plan" }, "", csrf.clone())}
            {form(PolicyAction::SkipStep, "plan-skip", "Skip to the next step", "", csrf.clone())}
            {form(PolicyAction::AbortPlan, "plan-abort", "Abort plan (roll back)", "danger", csrf)}
        </div>
    }
}

fn last_plan(plan: Option<&Plan>) -> impl IntoView {
    plan.and_then(|p| match &p.status {
        Status::Ended { at, how } => Some(view! { <p data-test="plan-ended">{format!("The last plan ended {}: {how}", when(*at))}</p> }),
        _ => None,
    })
}

fn start_form(c: &PolicyConfig, csrf: String) -> impl IntoView {
    view! {
        <form method="post" action=PolicyAction::StartPlan.form_path(c.policy_name.as_str()) class="card">
            <h3>"Start a plan"</h3>
            <label for="plan-steps">"Steps: original (5% 15m, 10% 30m, 50% 1h, 100% 2h), fast (30s, 1m, 2m, 4m), or one per line like 5% 15m"</label>
            <textarea id="plan-steps" name="steps" rows="4" maxlength="2000">"original"</textarea>
            <label for="plan-end">"After the last step"</label>
            <select id="plan-end" name="at_end">
                <option value="promote">"promote automatically"</option>
                <option value="wait">"wait for a person to promote"</option>
            </select>
            <p>"Each step holds its share for its time and advances only when the canary's errors and latency pass against stable's over the same minutes; a failing canary is rolled back at once."</p>
            <ChangeFields revision=c.revision action=PolicyAction::StartPlan id="plan" csrf/>
            <button type="submit" class="primary">"Start plan"</button>
        </form>
    }
}
