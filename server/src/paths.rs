//! One spelling per path. Before anything else runs (the guard checks it first), a request whose path is not in its
//! canonical form — an empty segment (`//`, a trailing `/`), a dot segment (`.`, `..`), a
//! percent-encoded letter, digit or `-._~`, lower-case hex in an escape — is redirected there
//! (GET and HEAD) or refused (every other method). So the guard, the router and every handler
//! read the same path, and no alternative spelling of a route reaches a different code path
//! (axum's router and Leptos's would otherwise disagree on `/policies/x/`).

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a path has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCanonical {
    /// It has one, and it is this.
    Use(String),
    /// A `%` not followed by two hex digits, or a `..` above the root.
    Malformed(&'static str),
}

/// `Ok(())` when `path` is canonical, else its canonical form or why there is none. Without
/// allocating for the common case (no escape in the path).
pub fn check(path: &str) -> Result<(), NotCanonical> {
    let plain = path.starts_with('/')
        && !path.contains('%')
        && (path == "/"
            || path[1..]
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."));
    if plain {
        return Ok(());
    }
    let canonical = canonical(path)?;
    if canonical == path {
        Ok(())
    } else {
        Err(NotCanonical::Use(canonical))
    }
}

/// The canonical form of `path` (RFC 3986 section 6.2.2 normalisation, plus: no empty
/// segments).
pub fn canonical(path: &str) -> Result<String, NotCanonical> {
    if !path.starts_with('/') {
        return Err(NotCanonical::Malformed("a path starts with '/'"));
    }
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/').skip(1) {
        let segment = normalise_escapes(raw)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(NotCanonical::Malformed("'..' above the root"));
                }
            }
            _ => segments.push(segment),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// A segment with escapes of unreserved characters decoded and the others in upper-case hex.
fn normalise_escapes(segment: &str) -> Result<String, NotCanonical> {
    if !segment.contains('%') {
        return Ok(segment.to_string());
    }
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let byte = rest
            .get(at + 1..at + 3)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(NotCanonical::Malformed(
                "a '%' in the path is not followed by two hex digits",
            ))?;
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The answer to a request whose path is not canonical: GET and HEAD get a permanent redirect
/// to the canonical path (query kept), other methods a 400 naming it. Both carry
/// `x-apx-denied: not_canonical`. The guard sends it before anything else runs.
pub fn refusal(method: &Method, uri: &axum::http::Uri, why: NotCanonical) -> Response {
    let denied = |status: StatusCode, message: String| {
        let mut r = (status, format!("{message}\n")).into_response();
        r.headers_mut().insert(
            crate::auth::DENIED_HEADER,
            HeaderValue::from_static("not_canonical"),
        );
        r
    };
    match why {
        NotCanonical::Use(to) if matches!(*method, Method::GET | Method::HEAD) => {
            let location = match uri.query() {
                Some(q) => format!("{to}?{q}"),
                None => to,
            };
            let mut r = denied(
                StatusCode::PERMANENT_REDIRECT,
                format!("this page is at {location}"),
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        NotCanonical::Use(to) => denied(
            StatusCode::BAD_REQUEST,
            format!("the path is not in its canonical form: send this request to {to}; nothing was changed"),
        ),
        NotCanonical::Malformed(why) => denied(
            StatusCode::BAD_REQUEST,
            format!("the path cannot be read: {why}; nothing was changed"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn use_(p: &str) -> Result<(), NotCanonical> {
        Err(NotCanonical::Use(p.into()))
    }

    #[test]
    fn canonical_paths_pass() {
        for p in [
            "/",
            "/policies/payments-api",
            "/api/v1/policies/x/overrides/a%2Fb",
            "/api/v1/policies/x/overrides/%20",
            "/pkg/apx-canary.abc.wasm",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn other_spellings_have_one_canonical_form() {
        assert_eq!(check("/policies/x/"), use_("/policies/x"));
        assert_eq!(check("//policies//x"), use_("/policies/x"));
        assert_eq!(check("//evil.example"), use_("/evil.example"));
        assert_eq!(check("/policies/./x"), use_("/policies/x"));
        assert_eq!(check("/policies/y/../x"), use_("/policies/x"));
        assert_eq!(check("/policies/%2e%2E/x"), use_("/x"));
        assert_eq!(
            check("/policies/p/actions/%64elete"),
            use_("/policies/p/actions/delete")
        );
        assert_eq!(check("/policies/foo%62"), use_("/policies/foob"));
        assert_eq!(check("/policies/a%2Db"), use_("/policies/a-b"));
        assert_eq!(check("/t/a%2fb"), use_("/t/a%2Fb"));
        assert_eq!(check("/t/%7e"), use_("/t/~"));
    }

    #[test]
    fn unreadable_paths_are_refused() {
        assert!(matches!(check("/a/%zz"), Err(NotCanonical::Malformed(_))));
        assert!(matches!(check("/a/%4"), Err(NotCanonical::Malformed(_))));
        assert!(matches!(check("/.."), Err(NotCanonical::Malformed(_))));
        assert!(matches!(
            check("/%2e%2e/x"),
            Err(NotCanonical::Malformed(_))
        ));
        assert!(matches!(check("*"), Err(NotCanonical::Malformed(_))));
    }
}
