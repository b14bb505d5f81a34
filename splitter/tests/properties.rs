//! Property tests of the bucketing and decision rules.

mod support;

use proptest::prelude::*;
use splitter::{bucket, decide, BasisPoints, Pin, Simulator, TenantId};

fn tenant() -> impl Strategy<Value = String> {
    // Any valid tenant id: no control characters, 1..=64 chars.
    "[^\\p{Cc}]{1,64}"
}

proptest! {
    #[test]
    fn bucket_is_in_range_and_sticky(salt in "[a-z:-]{1,20}", t in tenant()) {
        let b = bucket(&salt, &t).get();
        prop_assert!(b < 10_000);
        prop_assert_eq!(bucket(&salt, &t).get(), b);
    }

    /// Raising the share never moves a canary tenant back to stable.
    #[test]
    fn monotonic_ramp(t in tenant(), a in 0u32..=10_000, b in 0u32..=10_000) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut c = support::config("ramp", Some("v2"), 0);
        c.canary_basis_points = BasisPoints::new(lo).unwrap();
        let at_lo = decide(Some(&c), Some(&t)).is_canary;
        c.canary_basis_points = BasisPoints::new(hi).unwrap();
        let at_hi = decide(Some(&c), Some(&t)).is_canary;
        prop_assert!(!at_lo || at_hi);
    }

    #[test]
    fn zero_is_nobody_full_is_everybody(t in tenant()) {
        let c0 = support::config("edges", Some("v2"), 0);
        let c100 = support::config("edges", Some("v2"), 10_000);
        prop_assert!(!decide(Some(&c0), Some(&t)).is_canary);
        let d = decide(Some(&c100), Some(&t));
        prop_assert!(d.is_canary);
        prop_assert_eq!(d.version.as_str(), "v2");
    }

    #[test]
    fn overrides_win(t in tenant(), bp in 0u16..=10_000, pin_canary in any::<bool>()) {
        let mut c = support::config("pins", Some("v2"), bp);
        let pin = if pin_canary { Pin::Canary } else { Pin::Stable };
        c.overrides.insert(TenantId::new(&t).unwrap(), pin);
        prop_assert_eq!(decide(Some(&c), Some(&t)).is_canary, pin_canary);
        // Without a canary version, a canary pin yields stable.
        c.canary_version = None;
        let d = decide(Some(&c), Some(&t));
        prop_assert!(!d.is_canary);
        prop_assert_eq!(d.version.as_str(), "v1");
    }

    #[test]
    fn share_format_parse_round_trip(bp in 0u32..=10_000) {
        let share = BasisPoints::new(bp).unwrap();
        prop_assert_eq!(BasisPoints::parse(&share.to_string()).unwrap(), share);
        prop_assert_eq!(BasisPoints::parse(&format!("{bp}bp")).unwrap(), share);
        let plain = share.to_string().trim_end_matches('%').to_string();
        prop_assert_eq!(BasisPoints::parse(&plain).unwrap(), share);
    }

    #[test]
    fn share_parse_never_panics(s in "\\PC{0,12}") {
        let _ = BasisPoints::parse(&s);
    }

    /// The simulator's answers equal `decide` for both the current and the proposed share.
    #[test]
    fn simulator_equals_decide(ts in proptest::collection::vec(tenant(), 1..50), now in 0u16..=10_000, next in 0u16..=10_000) {
        let c = support::config("sim", Some("v2"), now);
        let sim = Simulator::new(&c, BasisPoints::new(next.into()).unwrap());
        let mut proposed = c.clone();
        proposed.canary_basis_points = BasisPoints::new(next.into()).unwrap();
        for row in sim.rows(&ts) {
            prop_assert_eq!(row.canary_now, decide(Some(&c), Some(row.tenant)).is_canary);
            prop_assert_eq!(row.canary_proposed, decide(Some(&proposed), Some(row.tenant)).is_canary);
        }
    }
}

#[test]
fn no_tenant_and_no_config() {
    let c = support::config("p", Some("v2"), 10_000);
    assert!(!decide(Some(&c), None).is_canary);
    assert!(!decide(Some(&c), Some("")).is_canary);
    assert!(
        !decide(Some(&c), Some("bad\u{0}tenant")).is_canary,
        "an invalid tenant id never gets canary"
    );
    let d = decide(None, Some("t"));
    assert_eq!((d.version.as_str(), d.is_canary), ("latest", false));
}
