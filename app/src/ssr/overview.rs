//! The overview's data on the server: filtering, sorting and paging the policies, and summing
//! their observed traffic.

use crate::model::{ObservedShare, OverviewPage, OverviewQuery, PAGE_SIZE};
use splitter::PolicyConfig;

impl ObservedShare {
    /// Per policy on the page: all requests in the window and those of its current canary
    /// version, from the traffic cache's totals (policy → version → traffic).
    pub fn from_totals(
        rows: &[PolicyConfig],
        totals: &std::collections::BTreeMap<
            String,
            std::collections::BTreeMap<String, splitter::traffic::VersionTraffic>,
        >,
    ) -> std::collections::BTreeMap<String, ObservedShare> {
        let mut out: std::collections::BTreeMap<String, ObservedShare> = Default::default();
        for c in rows {
            let Some(versions) = totals.get(c.policy_name.as_str()) else {
                continue;
            };
            let canary = c.canary_version.as_ref().map(|v| v.as_str());
            let o = out.entry(c.policy_name.to_string()).or_default();
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
    /// Filters, sorts and pages `all`.
    pub fn apply(&self, mut all: Vec<PolicyConfig>) -> OverviewPage {
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
            _ => all.sort_by(|a, b| a.policy_name.cmp(&b.policy_name)),
        }
        let matching = all.len();
        let pages = matching.div_ceil(PAGE_SIZE).max(1);
        let page = self.page.clamp(1, pages);
        let rows = all
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
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

    fn policies(n: usize) -> Vec<PolicyConfig> {
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
                c
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
        assert_eq!(p.rows[0].policy_name.as_str(), "policy-0100");
        let ramping = OverviewQuery {
            state: "ramping".into(),
            sort: "share".into(),
            ..Default::default()
        };
        let p = ramping.apply(all.clone());
        assert!(p
            .rows
            .iter()
            .all(|c| c.state() == splitter::RolloutState::Ramping));
        assert!(p
            .rows
            .windows(2)
            .all(|w| w[0].canary_basis_points >= w[1].canary_basis_points));
        let named = OverviewQuery {
            q: "POLICY-099".into(),
            sort: "updated".into(),
            page: 99,
            ..Default::default()
        };
        let p = named.apply(all);
        assert_eq!((p.matching, p.page), (10, 1));
        assert_eq!(
            p.rows[0].policy_name.as_str(),
            "policy-0999",
            "newest change first"
        );
    }
}
