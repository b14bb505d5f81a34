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
    /// Any signed-in person or token (who am I).
    Anyone,
    Read,
    Decide,
    Report,
    /// Operators whose grant covers the policy named in the path.
    Operate,
    /// What the form's action needs ([`PolicyAction::need`]); an unknown action has no rule.
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
    ("GET", "/api/v1/session", Access::Anyone, false),
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

/// The table's name for a matched route.
fn table_route(route: &str) -> &str {
    if route.starts_with("/api/") && !route.starts_with("/api/v1/") {
        SERVER_FN
    } else {
        route
    }
}

/// What the guard knows of a request: its method, axum's matched route (`None` for the
/// fallback, which serves static files and the not-found page), the route's path parameters
/// **as the handler reads them** (axum's percent-decoded captures: the same values `Path`
/// extracts), and whether the path names a built file.
pub struct Target<'a> {
    pub method: &'a Method,
    pub route: Option<&'a str>,
    pub params: &'a dyn Params,
    pub static_file: bool,
}

/// A route's path parameters by name.
pub trait Params: Sync {
    fn param(&self, name: &str) -> Option<&str>;
}

/// axum's decoded captures: what the handler's `Path` reads.
impl Params for axum::extract::RawPathParams {
    fn param(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// No parameters (the fallback).
impl Params for () {
    fn param(&self, _: &str) -> Option<&str> {
        None
    }
}

impl Params for Vec<(&str, &str)> {
    fn param(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl Target<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.param(name)
    }
}

/// The rule for a request; `None`: no rule, refuse.
pub fn rule(t: &Target) -> Option<Rule> {
    let Some(route) = t.route else {
        // The fallback: built files for anybody; anything else renders the app (its not-found
        // page), which only signed-in readers see.
        let need = if t.static_file {
            Need::Nobody
        } else {
            Need::Read
        };
        return matches!(*t.method, Method::GET | Method::HEAD).then_some(Rule {
            need,
            changes_state: false,
        });
    };
    let route = table_route(route);
    // HEAD is GET without the body.
    let method = if *t.method == Method::HEAD {
        "GET"
    } else {
        t.method.as_str()
    };
    let (_, _, access, changes_state) = RULES
        .iter()
        .find(|(m, r, _, _)| *r == route && (*m == "ANY" || *m == method))?;
    // Per-policy needs name the policy the handler will act on; a route without it has no rule.
    let policy = || t.param("name").or(t.param("policy")).map(str::to_string);
    let need = match access {
        Access::Open => Need::Nobody,
        Access::Anyone => Need::Principal,
        Access::Read => Need::Read,
        Access::Admin => Need::Admin,
        Access::Decide => Need::Decide { policy: policy()? },
        Access::Report => Need::Report { policy: policy()? },
        Access::Operate => Need::Operate { policy: policy()? },
        // Deny by default: an action the forms do not know has no rule.
        Access::Action => PolicyAction::from_segment(t.param("action")?)?.need(&policy()?),
    };
    Some(Rule {
        need,
        changes_state: *changes_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(m: Method, route: &str, params: &[(&str, &str)]) -> Option<Need> {
        let t = Target {
            method: &m,
            route: Some(route),
            params: &params.to_vec(),
            static_file: false,
        };
        rule(&t).map(|r| r.need)
    }

    #[test]
    fn rules_read_the_policy_and_action_from_the_decoded_parameters() {
        assert_eq!(
            need(
                Method::PUT,
                "/api/v1/policies/{name}/share",
                &[("name", "pay")]
            ),
            Some(Need::Operate {
                policy: "pay".into()
            })
        );
        let action = "/policies/{name}/actions/{action}";
        assert_eq!(
            need(
                Method::POST,
                action,
                &[("name", "pay"), ("action", "delete")]
            ),
            Some(Need::Admin)
        );
        assert_eq!(
            need(
                Method::POST,
                action,
                &[("name", "pay"), ("action", "promote")]
            ),
            Some(Need::Operate {
                policy: "pay".into()
            })
        );
        assert_eq!(
            need(
                Method::POST,
                "/api/v1/policies/{name}/outcomes",
                &[("name", "search-api")]
            ),
            Some(Need::Report {
                policy: "search-api".into()
            })
        );
        assert_eq!(
            need(Method::POST, "/api/get_policy123", &[]),
            Some(Need::Read)
        );
        assert_eq!(
            need(Method::PATCH, "/api/v1/policies/{name}", &[("name", "x")]),
            None
        );
        // An unknown action, and a per-policy route whose parameter is missing, have no rule.
        assert_eq!(
            need(
                Method::POST,
                action,
                &[("name", "pay"), ("action", "DELETE")]
            ),
            None
        );
        assert_eq!(
            need(Method::PUT, "/api/v1/policies/{name}/share", &[]),
            None
        );
    }

    #[test]
    fn the_fallback_serves_files_to_anybody_and_the_app_to_readers() {
        let t = |method: &Method, static_file| {
            rule(&Target {
                method,
                route: None,
                params: &(),
                static_file,
            })
            .map(|r| r.need)
        };
        assert_eq!(t(&Method::GET, true), Some(Need::Nobody));
        assert_eq!(t(&Method::HEAD, false), Some(Need::Read));
        assert_eq!(t(&Method::POST, true), None);
    }
}
