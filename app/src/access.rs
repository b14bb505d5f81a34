//! Who is asking and what they may do: the principal, its role, and the one authorisation rule.
//! The server runs [`authorize`] on every request (`server/src/auth`); pages call the same
//! function only to decide which controls to render and to say why one is absent.

use serde::{Deserialize, Serialize};

/// What a principal may do, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees everything, changes nothing.
    Viewer,
    /// Also starts canaries, sets shares, promotes, rolls back and pins (on the policies its
    /// patterns allow).
    Operator,
    /// Also creates and deletes policies and manages accounts and tokens.
    Admin,
    /// API tokens for services: the decision API and outcome reports, nothing else.
    Service,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::Service];

    pub fn key(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    pub fn from_key(key: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.key() == key.trim())
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignIn {
    /// A local account's password (a session cookie).
    Password,
    /// A bearer API token.
    Token,
    /// A signed assertion from Google's Identity-Aware Proxy.
    Iap,
}

impl SignIn {
    pub fn key(self) -> &'static str {
        match self {
            SignIn::Password => "password",
            SignIn::Token => "token",
            SignIn::Iap => "iap",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The account or token name.
    pub name: String,
    pub role: Role,
    /// Policy-name patterns an operator grant is limited to (`payments-*`); empty: all.
    #[serde(default)]
    pub policies: Vec<String>,
    pub via: SignIn,
}

impl Principal {
    /// The actor recorded in the audit trail: who, and how they signed in.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.name, self.via.key())
    }

    /// Whether the grant covers `policy` (no patterns: every policy).
    pub fn covers(&self, policy: &str) -> bool {
        self.policies.is_empty() || self.policies.iter().any(|p| pattern_matches(p, policy))
    }
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the sign-in page, static files, health.
    Nobody,
    /// Any signed-in person or token (who am I).
    Principal,
    /// Any signed-in person (pages, reads).
    Read,
    /// A routing decision (decision API) for a policy: people who read, and service tokens
    /// whose patterns cover it.
    Decide { policy: String },
    /// Reporting served traffic of a policy: service tokens and operators whose patterns cover
    /// it, admins.
    Report { policy: String },
    /// Changing a policy's rollout: operators whose grant covers it, admins.
    Operate { policy: String },
    /// Creating and deleting policies, accounts and tokens.
    Admin,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Nobody signed in (401; pages redirect to the sign-in page).
    Unauthenticated,
    /// Signed in, but the role does not allow it (403); the reason is for people.
    Forbidden(String),
}

impl Denied {
    /// Its stable code (the guard's `x-apx-denied`).
    pub fn code(&self) -> &'static str {
        match self {
            Denied::Unauthenticated => "unauthenticated",
            Denied::Forbidden(_) => "forbidden",
        }
    }
}

/// The one authorisation rule.
pub fn authorize(who: Option<&Principal>, need: &Need) -> Result<(), Denied> {
    if *need == Need::Nobody {
        return Ok(());
    }
    let Some(p) = who else {
        return Err(Denied::Unauthenticated);
    };
    let refuse = |what: &str| {
        Err(Denied::Forbidden(format!(
            "{what}: you are signed in as {} ({})",
            p.name, p.role
        )))
    };
    match (need, p.role) {
        (Need::Nobody, _) => Ok(()),
        (_, Role::Admin) => Ok(()),
        (Need::Read, Role::Viewer | Role::Operator) => Ok(()),
        (Need::Read, Role::Service) => {
            refuse("service tokens may only use the decision and outcome APIs")
        }
        (Need::Principal, _) => Ok(()),
        (Need::Decide { policy }, Role::Service) if !p.covers(policy) => {
            refuse(&not_covered(p, policy))
        }
        (Need::Decide { .. }, _) => Ok(()),
        (Need::Report { policy }, Role::Service | Role::Operator) if p.covers(policy) => Ok(()),
        (Need::Report { policy }, Role::Service | Role::Operator) => {
            refuse(&not_covered(p, policy))
        }
        (Need::Report { .. }, _) => {
            refuse("reporting traffic needs a service token or the operator role")
        }
        (Need::Operate { policy }, Role::Operator) if p.covers(policy) => Ok(()),
        (Need::Operate { policy }, Role::Operator) => refuse(&not_covered(p, policy)),
        (Need::Operate { .. }, _) => refuse("changing a rollout needs the operator role"),
        (Need::Admin, _) => refuse("this needs the admin role"),
    }
}

fn not_covered(p: &Principal, policy: &str) -> String {
    format!(
        "your {} grant covers {} but not '{policy}'",
        p.role,
        p.policies.join(", ")
    )
}

/// What a page says instead of a control the principal may not use, or `None` if it may.
pub fn read_only_reason(who: Option<&Principal>, need: &Need) -> Option<String> {
    match authorize(who, need) {
        Ok(()) => None,
        Err(Denied::Unauthenticated) => Some("read-only: sign in to make changes".into()),
        Err(Denied::Forbidden(_)) => who.map(|p| match (p.role, need) {
            (Role::Operator, Need::Operate { .. }) => format!(
                "read-only: your operator grant covers {} only",
                p.policies.join(", ")
            ),
            (role, _) => format!("read-only: {role}"),
        }),
    }
}

/// A policy-name pattern: `*` matches any run of characters, everything else itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, policies: &[&str]) -> Principal {
        Principal {
            name: "p".into(),
            role,
            policies: policies.iter().map(|s| s.to_string()).collect(),
            via: SignIn::Password,
        }
    }

    #[test]
    fn patterns_match_like_globs() {
        assert!(pattern_matches("payments-*", "payments-api"));
        assert!(!pattern_matches("payments-*", "search-api"));
        assert!(pattern_matches("*-api", "search-api"));
        assert!(pattern_matches("a*b*c", "aXbYc"));
        assert!(!pattern_matches("a*b*c", "aXc"));
        assert!(!pattern_matches("ab*ba", "aba"));
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exactly"));
    }

    #[test]
    fn roles_allow_what_the_issue_says() {
        let op = |policy: &str| Need::Operate {
            policy: policy.into(),
        };
        let ok = |p: Option<&Principal>, n: &Need| authorize(p, n).is_ok();
        assert_eq!(authorize(None, &Need::Read), Err(Denied::Unauthenticated));
        assert!(ok(None, &Need::Nobody));
        let viewer = who(Role::Viewer, &[]);
        let decide = |policy: &str| Need::Decide {
            policy: policy.into(),
        };
        let report = |policy: &str| Need::Report {
            policy: policy.into(),
        };
        assert!(ok(Some(&viewer), &Need::Read) && ok(Some(&viewer), &decide("x")));
        assert!(!ok(Some(&viewer), &op("x")) && !ok(Some(&viewer), &report("x")));
        let payments = who(Role::Operator, &["payments-*"]);
        assert!(ok(Some(&payments), &op("payments-api")));
        assert!(!ok(Some(&payments), &op("search-api")));
        assert!(!ok(Some(&payments), &Need::Admin));
        let service = who(Role::Service, &[]);
        assert!(ok(Some(&service), &decide("x")) && ok(Some(&service), &report("x")));
        assert!(!ok(Some(&service), &Need::Read) && !ok(Some(&service), &op("x")));
        // Scoped tokens and operators decide and report only for the policies they cover.
        let scoped = who(Role::Service, &["payments-*"]);
        assert!(ok(Some(&scoped), &decide("payments-api")));
        assert!(!ok(Some(&scoped), &decide("search-api")));
        assert!(ok(Some(&scoped), &report("payments-api")));
        assert!(!ok(Some(&scoped), &report("search-api")));
        assert!(ok(Some(&payments), &report("payments-api")));
        assert!(!ok(Some(&payments), &report("search-api")));
        assert!(
            ok(Some(&payments), &decide("search-api")),
            "operators read everything"
        );
        assert!(ok(Some(&scoped), &Need::Principal));
        let admin = who(Role::Admin, &[]);
        assert!(ok(Some(&admin), &Need::Admin) && ok(Some(&admin), &op("anything")));
        assert_eq!(
            read_only_reason(Some(&viewer), &op("x")).as_deref(),
            Some("read-only: viewer")
        );
        assert!(read_only_reason(Some(&payments), &op("search-api"))
            .unwrap()
            .contains("payments-*"));
    }
}

/// What the server's guard learnt about a request, kept in its extensions for handlers and
/// pages: who is asking and, for a browser session, the CSRF token its forms must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub principal: Option<Principal>,
    /// The session's CSRF token (browser sessions only).
    pub csrf: Option<String>,
    /// The session's storage key (owner of its simulator uploads); never sent to a page.
    #[serde(skip)]
    pub session_key: Option<String>,
    /// Why the store cannot take changes now (it is unreachable), for the banner.
    #[serde(default)]
    pub outage: Option<String>,
}

impl Caller {
    /// Why this caller cannot do what `need` asks now (`None`: they can): the store's outage
    /// first, then their role.
    pub fn cannot(&self, need: &Need) -> Option<String> {
        self.outage
            .as_ref()
            .map(|_| "disabled: the store is unreachable (see the banner above)".to_string())
            .or_else(|| read_only_reason(self.principal.as_ref(), need))
    }
}
