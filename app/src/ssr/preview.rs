//! The simulator's request preview (server only): the last hour's traffic by cohort and busiest
//! tenants, from memory (never the store), through [`splitter::preview::preview`], written as
//! sentences and rendered here to markup. The page inserts that markup as it is: the preview
//! costs its WASM a server-function call and one `inner_html`, no view code of its own.

use super::state::AppState;
use leptos::prelude::*;
use splitter::preview::{self, PREVIEW_MINUTES, RANGE_PERCENTILES};
use splitter::traffic::minute_of;
use splitter::{BasisPoints, PolicyConfig};

/// What the simulator's "Requests" section says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreviewText {
    /// "At 20%, the canary would get about 31.2% of requests (range 25.0%–38.1%), …", or why
    /// there is nothing to estimate from.
    pub summary: String,
    /// "Tenants that move to canary include:", or that none of the busiest moves (empty
    /// without traffic).
    pub movers_lead: String,
    /// Heaviest first: the tenant, and its share of requests and requests per minute.
    pub movers: Vec<(String, String)>,
    /// What the figures rest on and leave out.
    pub note: String,
}

impl PreviewText {
    /// The section's markup (the text escaped by Leptos).
    pub fn html(&self) -> String {
        let p = self.clone();
        view! {
            <section class="card" data-test="request-preview">
                <h2>"Requests"</h2>
                <p data-test="request-share">{p.summary}</p>
                <p>{p.movers_lead}</p>
                <ul data-test="movers">{p.movers.into_iter().map(|(t, what)| {
                    let cell = t.clone();
                    view! { <li data-tenant=t><strong>{cell}</strong>{format!(" ({what})")}</li> }
                }).collect_view()}</ul>
                <p class="note">{p.note}</p>
            </section>
        }
        .to_html()
    }
}

/// The preview of `share` (empty: today's share) for the policy `name`, from the last
/// [`PREVIEW_MINUTES`] complete minutes before `now`. `None`: no such policy, or a share that
/// does not parse (the page says why).
pub fn request_preview(
    state: &AppState,
    name: &str,
    share: &str,
    now: jiff::Timestamp,
) -> Option<PreviewText> {
    let config = state.config(name)?;
    let proposed = if share.trim().is_empty() {
        config.canary_basis_points
    } else {
        BasisPoints::parse(share).ok()?
    };
    let to = minute_of(now) - 1;
    let details = state.traffic.detail(name, to - PREVIEW_MINUTES + 1, to);
    Some(describe(
        preview::preview(&details, &config, proposed).as_ref(),
        &config,
        proposed,
    ))
}

/// The sentences of a preview (`None`: no recorded traffic with tenants).
pub fn describe(
    p: Option<&preview::RequestPreview>,
    config: &PolicyConfig,
    proposed: BasisPoints,
) -> PreviewText {
    let Some(p) = p else {
        return PreviewText {
            summary: format!(
                "No traffic with tenants recorded in the last {PREVIEW_MINUTES} minutes: \
                 nothing to estimate requests from."
            ),
            ..PreviewText::default()
        };
    };
    if config.canary_version.is_none() {
        return PreviewText {
            summary: "The policy has no canary version: at any share, every request goes to \
                      stable."
                .into(),
            ..PreviewText::default()
        };
    }
    let direction = if proposed > config.canary_basis_points {
        "to canary"
    } else {
        "back to stable"
    };
    PreviewText {
        summary: summary(p, config.canary_basis_points),
        movers_lead: if p.movers.is_empty() {
            "None of the busiest tenants moves.".into()
        } else {
            format!("Tenants that move {direction} include:")
        },
        movers: p
            .movers
            .iter()
            .map(|m| {
                let what = format!(
                    "{} of requests, ~{} requests/min",
                    pct(m.fraction),
                    per_minute(m.per_minute)
                );
                (m.tenant.clone(), what)
            })
            .collect(),
        note: note(p),
    }
}

/// "At 20%, the canary would get about …", and today's figure when the share changes.
fn summary(p: &preview::RequestPreview, today: BasisPoints) -> String {
    let c = p.canary;
    let (low, high) = (pct(c.low), pct(c.high));
    let range = if low == high {
        format!("{low} in every minute")
    } else {
        format!("range {low}–{high}")
    };
    let mut s = format!(
        "At {}, the canary would get about {} of requests ({range}), ~{} requests/min, based on \
         the last {} (of {PREVIEW_MINUTES}) with traffic, {} requests.",
        p.proposed,
        pct(c.fraction),
        per_minute(p.canary_per_minute),
        plural(p.minutes as u64, "minute"),
        p.requests
    );
    if p.proposed != today {
        s.push_str(&format!(" Today, at {today}: about {}.", pct(p.now)));
    }
    s
}

/// What the figures rest on and leave out.
fn note(p: &preview::RequestPreview) -> String {
    let (lo, hi) = RANGE_PERCENTILES;
    let mut note = format!(
        "From the requests by cohort (0.1 % of tenants) and each replica's busiest tenants; the \
         range spans the {:.0}th to {:.0}th percentile of single minutes. A busy tenant is counted \
         in the minutes it was among the busiest, so its figures are lower bounds.",
        lo * 100.0,
        hi * 100.0
    );
    if p.more_movers > 0 {
        note.push_str(&format!(
            " {} more of the busiest tenants move.",
            p.more_movers
        ));
    }
    if p.pinned_requests > 0 {
        note.push_str(&format!(
            " Pinned busy tenants ({} of requests) count where their pin sends them.",
            pct(p.pinned_requests as f64 / p.requests as f64)
        ));
    }
    if p.pinned_left_out > 0 {
        note.push_str(&format!(
            " Pinned tenants not among the busiest ({}) are left out.",
            p.pinned_left_out
        ));
    }
    note
}

/// `0.312` → `31.2%`; below 1 %, two decimals.
fn pct(x: f64) -> String {
    let v = x * 100.0;
    if v > 0.0 && v < 1.0 {
        format!("{v:.2}%")
    } else {
        format!("{v:.1}%")
    }
}

fn per_minute(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitter::preview::{Mover, RequestShare};
    use splitter::{Actor, PolicyName, Version};

    fn config(bp: u16) -> PolicyConfig {
        PolicyConfig::new(
            PolicyName::new("payment-api").unwrap(),
            Version::new("v1").unwrap(),
            Some(Version::new("v2").unwrap()),
            BasisPoints::new(bp.into()).unwrap(),
            Actor::new("t").unwrap(),
            jiff::Timestamp::UNIX_EPOCH,
        )
    }

    #[test]
    fn says_how_much_traffic_and_who_moves() {
        let p = preview::RequestPreview {
            proposed: BasisPoints::new(2000).unwrap(),
            canary: RequestShare {
                fraction: 0.312,
                low: 0.25,
                high: 0.381,
            },
            now: 0.071,
            canary_per_minute: 412.4,
            minutes: 42,
            requests: 55_500,
            pinned_requests: 0,
            pinned_left_out: 1,
            movers: vec![Mover {
                tenant: "tenant-1".into(),
                to_canary: true,
                requests: 5_000,
                per_minute: 119.0,
                fraction: 0.09,
            }],
            more_movers: 0,
        };
        let v = describe(Some(&p), &config(500), BasisPoints::new(2000).unwrap());
        assert_eq!(
            v.summary,
            "At 20%, the canary would get about 31.2% of requests (range 25.0%–38.1%), ~412 \
             requests/min, based on the last 42 minutes (of 60) with traffic, 55500 requests. \
             Today, at 5%: about 7.1%."
        );
        assert_eq!(v.movers_lead, "Tenants that move to canary include:");
        assert_eq!(
            v.movers,
            [(
                "tenant-1".to_string(),
                "9.0% of requests, ~119 requests/min".to_string()
            )]
        );
        assert!(v.note.contains("10th to 90th percentile"), "{}", v.note);
        assert!(v.note.contains("busiest (1) are left out"), "{}", v.note);
    }

    #[test]
    fn the_markup_escapes_what_tenants_are_called() {
        let text = PreviewText {
            summary: "At 5%, …".into(),
            movers_lead: "Tenants that move to canary include:".into(),
            movers: vec![("<b>&co\"".into(), "9.0% of requests".into())],
            note: String::new(),
        };
        let html = text.html();
        assert!(html.contains("data-test=\"request-preview\""), "{html}");
        assert!(
            html.contains("data-tenant=\"&lt;b&gt;&amp;co&quot;\""),
            "{html}"
        );
        assert!(
            html.contains("<strong>&lt;b&gt;&amp;co\"</strong> (9.0% of requests)</li>"),
            "{html}"
        );
        assert!(!html.contains("<b>"), "{html}");
    }

    #[test]
    fn says_when_there_is_nothing_to_estimate_from() {
        let v = describe(None, &config(500), BasisPoints::new(2000).unwrap());
        assert!(
            v.summary.starts_with("No traffic with tenants"),
            "{}",
            v.summary
        );
        assert!(v.movers.is_empty() && v.movers_lead.is_empty());
    }
}
