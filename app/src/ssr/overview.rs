//! The overview's data on the server: filtering, sorting and paging the policies, and summing
//! their observed traffic.

use crate::model::{ObservedShare, OverviewPage, OverviewQuery, OverviewRow, PAGE_SIZE};
use splitter::PolicyConfig;
use std::sync::Arc;

impl OverviewRow {
    pub fn of(c: &PolicyConfig) -> OverviewRow {
        OverviewRow {
            name: c.policy_name.to_string(),
            stable: c.stable_version.to_string(),
            canary: c.canary_version.as_ref().map(|v| v.to_string()),
            share: c.canary_basis_points,
            effective: c.effective_share(),
            state: c.state(),
            plan: plan_cell(c),
            updated_secs: c.updated_at.as_second(),
            updated_when: crate::model::when(c.updated_at),
            updated_by: c.updated_by.to_string(),
        }
    }
}

/// A running or paused plan's current step, for the overview (`—` without an active plan).
pub fn plan_cell(c: &splitter::PolicyConfig) -> String {
    use splitter::plans::Status;
    let Some(plan) = c.plan.as_ref() else {
        return "—".into();
    };
    let of = plan.steps.len();
    match &plan.status {
        Status::Running { step, .. } => {
            format!("step {} of {of} ({})", step + 1, plan.steps[*step].share)
        }
        Status::Paused { step, .. } => format!("paused at step {} of {of}", step + 1),
        Status::Ended { .. } => "—".into(),
    }
}

impl ObservedShare {
    /// Per policy on the page: all requests in the window and those of its current canary
    /// version, from the traffic cache's totals (policy → version → traffic).
    pub fn from_totals(
        rows: &[OverviewRow],
        totals: &std::collections::BTreeMap<
            String,
            std::collections::BTreeMap<String, splitter::traffic::VersionTraffic>,
        >,
    ) -> std::collections::BTreeMap<String, ObservedShare> {
        let mut out: std::collections::BTreeMap<String, ObservedShare> = Default::default();
        for c in rows {
            let Some(versions) = totals.get(c.name.as_str()) else {
                continue;
            };
            let canary = c.canary.as_deref();
            let o = out.entry(c.name.clone()).or_default();
            for (v, t) in versions {
                o.requests += t.requests;
                if Some(v.as_str()) == canary {
                    o.canary += t.requests;
                }
            }
        }
        out
    }
}

impl OverviewQuery {
    /// Filters, sorts and pages `all` (shared: nothing is copied but the page's rows).
    pub fn apply(&self, mut all: Vec<Arc<PolicyConfig>>) -> OverviewPage {
        let total = all.len();
        let needle = self.q.trim().to_lowercase();
        all.retain(|c| {
            (needle.is_empty() || c.policy_name.as_str().contains(&needle))
                && (self.state.is_empty() || c.state().key() == self.state)
        });
        match self.sort.as_str() {
            "share" => all.sort_by(|a, b| {
                b.canary_basis_points
                    .cmp(&a.canary_basis_points)
                    .then_with(|| a.policy_name.cmp(&b.policy_name))
            }),
            "updated" => all.sort_by_key(|c| std::cmp::Reverse(c.updated_at)),
            _ => all.sort_unstable_by(|a, b| a.policy_name.cmp(&b.policy_name)),
        }
        let matching = all.len();
        let pages = matching.div_ceil(PAGE_SIZE).max(1);
        let page = self.page.clamp(1, pages);
        let rows = all
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(|c| OverviewRow::of(&c))
            .collect();
        OverviewPage {
            rows,
            total,
            matching,
            page,
            pages,
            traffic: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(n: usize) -> Vec<Arc<PolicyConfig>> {
        (0..n)
            .map(|i| {
                let mut c = PolicyConfig::new(
                    splitter::PolicyName::new(format!("policy-{i:04}")).unwrap(),
                    splitter::Version::new("v1").unwrap(),
                    (i % 2 == 0).then(|| splitter::Version::new("v2").unwrap()),
                    splitter::BasisPoints::ZERO,
                    splitter::Actor::new("t").unwrap(),
                    jiff::Timestamp::from_second(i as i64).unwrap(),
                );
                if i % 2 == 0 {
                    c.canary_basis_points =
                        splitter::BasisPoints::new((i % 100) as u32 * 100).unwrap();
                }
                Arc::new(c)
            })
            .collect()
    }

    #[test]
    fn overview_filters_sorts_and_pages() {
        let all = policies(1000);
        let q = OverviewQuery {
            page: 3,
            ..Default::default()
        };
        let p = q.apply(all.clone());
        assert_eq!(
            (p.matching, p.pages, p.page, p.rows.len()),
            (1000, 20, 3, PAGE_SIZE)
        );
        assert_eq!(p.rows[0].name, "policy-0100");
        let ramping = OverviewQuery {
            state: "ramping".into(),
            sort: "share".into(),
            ..Default::default()
        };
        let p = ramping.apply(all.clone());
        assert!(p
            .rows
            .iter()
            .all(|c| c.state == splitter::RolloutState::Ramping));
        assert!(p.rows.windows(2).all(|w| w[0].share >= w[1].share));
        let named = OverviewQuery {
            q: "POLICY-099".into(),
            sort: "updated".into(),
            page: 99,
            ..Default::default()
        };
        let p = named.apply(all);
        assert_eq!((p.matching, p.page), (10, 1));
        assert_eq!(p.rows[0].name, "policy-0999", "newest change first");
    }
}
