//! The access rule of every route, as one table ([`RULES`]): what it needs (a [`Need`] checked
//! by [`app::access::authorize`]) and whether it changes state (then a browser session must
//! also pass the Origin and CSRF checks). A route without a rule is refused, so a new route is
//! unusable until it has one; `server/tests/access.rs` holds the role × route matrix and fails
//! when a rule has no row there.

use app::access::Need;
use app::actions::PolicyAction;
use axum::http::Method;

/// What a route needs, before the request's path fills in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anybody: sign-in, health, the demo service, static files.
    Open,
    Read,
    Decide,
    Report,
    /// Operators whose grant covers the policy named in the path.
    Operate,
    /// What the form's action needs ([`PolicyAction::need`]).
    Action,
    Admin,
}

/// A route's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub need: Need,
    /// A write: Origin- and CSRF-checked for cookie sessions.
    pub changes_state: bool,
}

/// Every route: (method, axum route, access, changes state). Server functions are all the
/// routes under `/api/` outside `/api/v1/` (`SERVER_FN`): they only read.
pub const RULES: &[(&str, &str, Access, bool)] = &[
    ("GET", "/healthz", Access::Open, false),
    ("GET", "/metrics", Access::Open, false),
    ("GET", "/signin", Access::Open, false),
    ("POST", "/signin", Access::Open, true),
    ("GET", "/setup", Access::Open, false),
    ("POST", "/setup", Access::Open, true),
    ("POST", "/signout", Access::Read, true),
    ("ANY", "/demo/{policy}", Access::Open, false),
    ("ANY", "/demo/{policy}/{*rest}", Access::Open, false),
    ("GET", "/", Access::Read, false),
    ("GET", "/policies/new", Access::Read, false),
    ("GET", "/policies/{name}", Access::Read, false),
    ("GET", "/policies/{name}/simulate", Access::Read, false),
    ("POST", SERVER_FN, Access::Read, false),
    ("GET", "/admin/tokens", Access::Admin, false),
    ("POST", "/admin/tokens", Access::Admin, true),
    ("POST", "/admin/tokens/{id}/revoke", Access::Admin, true),
    ("POST", "/policies", Access::Admin, true),
    (
        "POST",
        "/policies/{name}/actions/{action}",
        Access::Action,
        true,
    ),
    (
        "POST",
        "/policies/{name}/simulate/upload",
        Access::Read,
        true,
    ),
    ("GET", "/api/v1/session", Access::Decide, false),
    ("GET", "/api/v1/tokens", Access::Admin, false),
    ("POST", "/api/v1/tokens", Access::Admin, true),
    ("DELETE", "/api/v1/tokens/{id}", Access::Admin, true),
    ("GET", "/api/v1/policies", Access::Read, false),
    ("POST", "/api/v1/policies", Access::Admin, true),
    ("GET", "/api/v1/policies/{name}", Access::Read, false),
    ("DELETE", "/api/v1/policies/{name}", Access::Admin, true),
    ("GET", "/api/v1/policies/{name}/events", Access::Read, false),
    (
        "PUT",
        "/api/v1/policies/{name}/share",
        Access::Operate,
        true,
    ),
    (
        "PUT",
        "/api/v1/policies/{name}/canary",
        Access::Operate,
        true,
    ),
    (
        "POST",
        "/api/v1/policies/{name}/promote",
        Access::Operate,
        true,
    ),
    (
        "POST",
        "/api/v1/policies/{name}/rollback",
        Access::Operate,
        true,
    ),
    (
        "POST",
        "/api/v1/policies/{name}/plan",
        Access::Operate,
        true,
    ),
    (
        "POST",
        "/api/v1/policies/{name}/plan/pause",
        Access::Operate,
        true,
    ),
    (
        "POST",
        "/api/v1/policies/{name}/plan/resume",
        Access::Operate,
        true,
    ),
    (
        "POST",
        "/api/v1/policies/{name}/plan/skip",
        Access::Operate,
        true,
    ),
    (
        "POST",
        "/api/v1/policies/{name}/plan/abort",
        Access::Operate,
        true,
    ),
    (
        "PUT",
        "/api/v1/policies/{name}/overrides/{tenant}",
        Access::Operate,
        true,
    ),
    (
        "DELETE",
        "/api/v1/policies/{name}/overrides/{tenant}",
        Access::Operate,
        true,
    ),
    (
        "GET",
        "/api/v1/policies/{name}/decision",
        Access::Decide,
        false,
    ),
    // A batch of decisions only reads; POST carries its body.
    (
        "POST",
        "/api/v1/policies/{name}/decisions",
        Access::Decide,
        false,
    ),
    (
        "POST",
        "/api/v1/policies/{name}/outcomes",
        Access::Report,
        true,
    ),
    ("GET", "/api/v1/changes", Access::Read, false),
];

/// Stands for every server function's route.
pub const SERVER_FN: &str = "/api/{server_fn}";

/// The `i`-th path segment of `path` (0 is the first after `/`).
fn segment(path: &str, i: usize) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .nth(i)
        .unwrap_or_default()
}

/// The table's name for a matched route.
fn table_route(route: &str) -> &str {
    if route.starts_with("/api/") && !route.starts_with("/api/v1/") {
        SERVER_FN
    } else {
        route
    }
}

/// The rule for a request to `route` (axum's matched path; `None` for the fallback, which
/// serves static files and the not-found page) at `path`; `None`: no rule, refuse.
pub fn rule(method: &Method, route: Option<&str>, path: &str) -> Option<Rule> {
    let Some(route) = route else {
        return matches!(*method, Method::GET | Method::HEAD).then_some(Rule {
            need: Need::Nobody,
            changes_state: false,
        });
    };
    let route = table_route(route);
    // HEAD is GET without the body.
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let (_, _, access, changes_state) = RULES
        .iter()
        .find(|(m, r, _, _)| *r == route && (*m == "ANY" || *m == method))?;
    let policy = || {
        let i = if route.starts_with("/api/v1/") { 3 } else { 1 };
        segment(path, i).to_string()
    };
    let need = match access {
        Access::Open => Need::Nobody,
        Access::Read => Need::Read,
        Access::Decide => Need::Decide,
        Access::Report => Need::Report,
        Access::Admin => Need::Admin,
        Access::Operate => Need::Operate { policy: policy() },
        // An unknown action is refused by its handler; until then it needs what operating does.
        Access::Action => PolicyAction::from_segment(segment(path, 3))
            .map_or(Need::Operate { policy: policy() }, |a| a.need(&policy())),
    };
    Some(Rule {
        need,
        changes_state: *changes_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_the_policy_and_action_from_the_path() {
        let r = |m: Method, route: &str, path: &str| rule(&m, Some(route), path).map(|r| r.need);
        assert_eq!(
            r(
                Method::PUT,
                "/api/v1/policies/{name}/share",
                "/api/v1/policies/pay/share"
            ),
            Some(Need::Operate {
                policy: "pay".into()
            })
        );
        assert_eq!(
            r(
                Method::POST,
                "/policies/{name}/actions/{action}",
                "/policies/pay/actions/delete"
            ),
            Some(Need::Admin)
        );
        assert_eq!(
            r(
                Method::POST,
                "/policies/{name}/actions/{action}",
                "/policies/pay/actions/promote"
            ),
            Some(Need::Operate {
                policy: "pay".into()
            })
        );
        assert_eq!(
            r(Method::POST, "/api/get_policy123", "/api/get_policy123"),
            Some(Need::Read)
        );
        assert_eq!(
            r(
                Method::PATCH,
                "/api/v1/policies/{name}",
                "/api/v1/policies/x"
            ),
            None
        );
        assert_eq!(rule(&Method::POST, None, "/nowhere"), None);
    }
}
