//! Plain data the pages show, shared by the server and the browser.

use serde::{Deserialize, Serialize};
use splitter::{AuditEvent, PolicyConfig};

/// One policy and its recent history, as the policy page shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyPage {
    pub config: PolicyConfig,
    pub events: Vec<AuditEvent>,
    /// The running (or paused) plan's verdict on its current step, as of this read.
    #[serde(default)]
    pub verdict: Option<VerdictView>,
}

/// A verdict as the page shows it: its outcome and words, and its numbers already formatted
/// on the server as plain tables (the browser only lays them out, so the analysis's types and
/// number formatting stay out of the page's wasm).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VerdictView {
    /// `pass`, `fail`, `inconclusive`, `no_data` or `untrusted`.
    pub outcome: String,
    /// "passing", "failing: the plan rolls back", …
    pub label: String,
    pub reason: String,
    pub tables: Vec<TextTable>,
}

/// A table of text: a caption, column headings, and rows whose first cell heads the row.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TextTable {
    pub caption: String,
    /// The `data-test` of the table.
    pub test: String,
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The answer of a live refresh of the policy page, with the name of the policy it was asked
/// for: by the time it arrives, the page may show another policy.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRefresh {
    pub name: String,
    pub page: Option<PolicyPage>,
}

impl LiveRefresh {
    /// Whether this answer replaces what the page shows now: the policy `current` at revision
    /// `shown`. Only an answer for that very policy does, and only when its revision differs
    /// (so a half-filled form survives changes elsewhere).
    pub fn replaces(&self, current: &str, shown: Option<u64>) -> bool {
        self.name == current && self.page.as_ref().map(|p| p.config.revision) != shown
    }
}

/// A human-friendly "how long ago" for a timestamp, relative to `now`.
pub fn ago(then: jiff::Timestamp, now: jiff::Timestamp) -> String {
    ago_secs(then.as_second(), now.as_second())
}

/// Seconds since the Unix epoch, now. (In the browser from `Date.now()`: jiff's clock would
/// bring its error messages into the overview's WASM.)
pub fn now_secs() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        (js_sys::Date::now() / 1000.0) as i64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// [`ago`] on seconds since the Unix epoch.
pub fn ago_secs(then: i64, now: i64) -> String {
    match now - then {
        s if s < 0 => "just now".into(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// A timestamp as operators read it: `2026-11-28 16:30:05 UTC`.
/// (Formatted by hand: jiff's strftime would add its whole formatter to the browser's WASM.)
pub fn when(t: jiff::Timestamp) -> String {
    let d = jiff::tz::Offset::UTC.to_datetime(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_formats_like_strftime() {
        for secs in [0, 59, 951_782_400, 1_795_000_000, 4_102_444_799, -86_401] {
            let t = jiff::Timestamp::from_second(secs).unwrap();
            assert_eq!(when(t), t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string());
        }
    }

    #[test]
    fn a_live_refresh_never_replaces_another_policys_page() {
        let mut config = PolicyConfig::new(
            splitter::PolicyName::new("policy-0000").unwrap(),
            splitter::Version::new("v1").unwrap(),
            None,
            splitter::BasisPoints::ZERO,
            splitter::Actor::new("t").unwrap(),
            jiff::Timestamp::from_second(0).unwrap(),
        );
        config.revision = 7;
        let answer = |name: &str| LiveRefresh {
            name: name.into(),
            page: Some(PolicyPage {
                config: config.clone(),
                events: vec![],
                verdict: None,
            }),
        };
        // Asked for policy-0000; the page moved on to policy-b, still loading (nothing shown).
        assert!(!answer("policy-0000").replaces("policy-b", None));
        assert!(!answer("policy-0000").replaces("policy-b", Some(3)));
        assert!(answer("policy-0000").replaces("policy-0000", Some(6)));
        assert!(!answer("policy-0000").replaces("policy-0000", Some(7)));
        let deleted = LiveRefresh {
            name: "policy-0000".into(),
            page: None,
        };
        assert!(deleted.replaces("policy-0000", Some(7)));
    }

    #[test]
    fn ago_reads_naturally() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| jiff::Timestamp::from_second(1_000_000 - s).unwrap();
        assert_eq!(ago(at(5), now), "5 s ago");
        assert_eq!(ago(at(120), now), "2 min ago");
        assert_eq!(ago(at(7200), now), "2 h ago");
        assert_eq!(ago(at(3 * 86_400), now), "3 d ago");
    }
}

/// The overview's filter, sort and page, as carried in its URL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverviewQuery {
    /// Part of a policy name, case-insensitive.
    pub q: String,
    /// A [`splitter::RolloutState`] in snake case, or empty for all.
    pub state: String,
    /// `name` (default), `share` (highest first) or `updated` (newest first).
    pub sort: String,
    /// 1-based page.
    pub page: usize,
}

/// Policies shown per overview page.
pub const PAGE_SIZE: usize = 50;

/// One policy as the overview lists it: only what the row shows, so the page's data stays
/// small (50 rows in the HTML) and the browser's first WASM needs no config or timestamp
/// decoding (BENCHMARKS.md, "Bundle").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverviewRow {
    pub name: String,
    pub stable: String,
    pub canary: Option<String>,
    /// The configured share.
    pub share: splitter::BasisPoints,
    /// What the canary really receives (0 without a canary version).
    pub effective: splitter::BasisPoints,
    pub state: splitter::RolloutState,
    /// The running or paused plan's step (`—` without one).
    pub plan: String,
    /// Seconds since the Unix epoch of the last change, and the same as operators read it.
    pub updated_secs: i64,
    pub updated_when: String,
    pub updated_by: String,
}

/// One page of the overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverviewPage {
    pub rows: Vec<OverviewRow>,
    /// Policies in the store.
    pub total: usize,
    /// Policies matching the filter (on all pages).
    pub matching: usize,
    pub page: usize,
    pub pages: usize,
    /// Observed traffic of the listed policies over the last [`OBSERVED_MINUTES`] minutes
    /// (filled by the server; policies without traffic are absent).
    #[serde(default)]
    pub traffic: std::collections::BTreeMap<String, ObservedShare>,
}

/// The overview's traffic window, in minutes.
pub const OBSERVED_MINUTES: i64 = 15;

/// Requests to a policy and how many of them its canary served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedShare {
    pub requests: u64,
    pub canary: u64,
}

impl ObservedShare {
    /// The canary's observed share, rounded to a basis point.
    pub fn basis_points(self) -> splitter::BasisPoints {
        let bp = if self.requests == 0 {
            0
        } else {
            ((self.canary as f64 / self.requests as f64) * 10_000.0).round() as u32
        };
        splitter::BasisPoints::new(bp.min(10_000)).unwrap_or(splitter::BasisPoints::ZERO)
    }
}

/// One line saying what an audit event changed, e.g. `share 5% → 12.5%`.
pub fn describe(e: &splitter::AuditEvent) -> String {
    let (Some(b), Some(a)) = (&e.before, &e.after) else {
        return match (&e.before, &e.after) {
            (None, Some(a)) => format!(
                "created: stable {}, canary {}, share {}",
                a.stable_version,
                a.canary_version
                    .as_ref()
                    .map_or("none".into(), |v| v.to_string()),
                a.canary_basis_points
            ),
            _ => "deleted".into(),
        };
    };
    let mut parts = Vec::new();
    if b.stable_version != a.stable_version {
        parts.push(format!(
            "stable {} → {}",
            b.stable_version, a.stable_version
        ));
    }
    if b.canary_version != a.canary_version {
        let v = |v: &Option<splitter::Version>| {
            v.as_ref().map_or("none".to_string(), |v| v.to_string())
        };
        parts.push(format!(
            "canary {} → {}",
            v(&b.canary_version),
            v(&a.canary_version)
        ));
    }
    if b.canary_basis_points != a.canary_basis_points {
        parts.push(format!(
            "share {} → {}",
            b.canary_basis_points, a.canary_basis_points
        ));
    }
    if b.salt != a.salt {
        parts.push(format!("salt {} → {}", b.salt, a.salt));
    }
    for (t, p) in &a.overrides {
        if b.overrides.get(t) != Some(p) {
            parts.push(format!("pinned {t} to {p}"));
        }
    }
    for t in b.overrides.keys() {
        if !a.overrides.contains_key(t) {
            parts.push(format!("unpinned {t}"));
        }
    }
    if parts.is_empty() {
        parts.push(e.action.replace('_', " "));
    }
    parts.join("; ")
}
