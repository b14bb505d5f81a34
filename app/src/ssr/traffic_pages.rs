//! Built traffic sections, kept briefly: building one (numbers, four SVG charts) costs far more
//! than serving it, and during an incident many people watch the same policy. A kept section is
//! served again only while everything it was built from is unchanged: the traffic cache's
//! generation, the policy's revision (its trail), the window, and the clock's second.

use crate::traffic::{TrafficPage, Window};
use std::collections::HashMap;
use std::sync::Mutex;

/// Everything a built section depends on besides the policy and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    pub generation: u64,
    pub revision: u64,
    pub second: i64,
}

/// Keeps at most [`TrafficPages::MAX`] sections (then starts over).
#[derive(Default)]
pub struct TrafficPages {
    entries: Mutex<HashMap<(String, Window), (Inputs, TrafficPage)>>,
}

impl TrafficPages {
    pub const MAX: usize = 64;

    /// The section of `policy` over `window` built from `inputs`: kept, or built now by `build`
    /// and kept.
    pub fn get_or_build(
        &self,
        policy: &str,
        window: Window,
        inputs: Inputs,
        build: impl FnOnce() -> TrafficPage,
    ) -> TrafficPage {
        let key = (policy.to_string(), window);
        if let Some((kept, page)) = self.entries.lock().unwrap().get(&key) {
            if *kept == inputs {
                return page.clone();
            }
        }
        let page = build();
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= Self::MAX && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (inputs, page.clone()));
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(requests: u64) -> TrafficPage {
        TrafficPage {
            window: Window::M15,
            from_minute: 0,
            to_minute: 14,
            requests,
            observed_share: None,
            configured_share: 0.0,
            versions: vec![],
            charts: vec![],
            unflushed_requests: 0,
            lost_requests: 0,
            recorder_error: None,
        }
    }

    #[test]
    fn a_kept_section_is_served_only_while_its_inputs_are_unchanged() {
        let pages = TrafficPages::default();
        let at = Inputs {
            generation: 1,
            revision: 3,
            second: 100,
        };
        let mut builds = 0;
        let mut get = |inputs: Inputs, requests: u64| {
            pages.get_or_build("p", Window::M15, inputs, || {
                builds += 1;
                page(requests)
            })
        };
        assert_eq!(get(at, 1).requests, 1);
        assert_eq!(get(at, 2).requests, 1, "same inputs: the kept section");
        for changed in [
            Inputs {
                generation: 2,
                ..at
            },
            Inputs { revision: 4, ..at },
            Inputs { second: 101, ..at },
        ] {
            assert_eq!(get(changed, 7).requests, 7, "{changed:?}: built again");
        }
        assert_eq!(builds, 4);
        let other = pages.get_or_build("q", Window::M15, at, || page(9));
        assert_eq!(other.requests, 9, "another policy has its own");
    }

    #[test]
    fn it_stays_bounded() {
        let pages = TrafficPages::default();
        let at = Inputs {
            generation: 0,
            revision: 0,
            second: 0,
        };
        for i in 0..(TrafficPages::MAX * 3) {
            pages.get_or_build(&format!("p{i}"), Window::H1, at, || page(0));
        }
        assert!(pages.entries.lock().unwrap().len() <= TrafficPages::MAX);
    }
}
