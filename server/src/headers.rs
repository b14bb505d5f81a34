//! Security headers on every response: a Content-Security-Policy with a per-request nonce for
//! the page's inline hydration scripts (the nonce reaches Leptos through the request's
//! extensions), no framing (the promote button must not be clickjackable), no MIME sniffing,
//! and a strict referrer policy.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// This request's CSP nonce.
#[derive(Clone)]
pub struct CspNonce(pub String);

/// The policy: scripts only from this site or with the nonce (WebAssembly allowed), styles from
/// this site (inline style attributes are allowed: the split bars use them), data: images, no
/// plugins, no framing, forms only to this site.
pub fn policy(nonce: &str) -> String {
    let reload = LIVE_RELOAD.get().map_or(String::new(), |r| format!(" {r}"));
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'{reload}; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

static LIVE_RELOAD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Under `cargo leptos watch` (`./dev watch`, which sets `LEPTOS_WATCH`) the page connects to
/// its reload socket: the policy allows that address, and only then.
pub fn allow_live_reload(options: &leptos::config::LeptosOptions) {
    if std::env::var("LEPTOS_WATCH").is_ok() {
        let _ = LIVE_RELOAD.set(format!(
            "ws://{}:{}",
            options.site_addr.ip(),
            options.reload_port
        ));
    }
}

pub async fn secure(mut req: Request, next: Next) -> Response {
    let nonce = crate::auth::credentials::random_secret();
    req.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&policy(&nonce)) {
        h.insert("content-security-policy", v);
    }
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    res
}

/// Whether `path` names a built file whose name carries a content hash
/// (`/pkg/apx-canary.29Gu4SfLZexm1xOAiDSN1g.wasm`): such a file never changes.
pub fn is_hashed_asset(path: &str) -> bool {
    let Some(file) = path.strip_prefix("/pkg/") else {
        return false;
    };
    let parts: Vec<&str> = file.split('.').collect();
    parts.len() >= 3
        && parts[1..parts.len() - 1].iter().any(|p| {
            p.len() == 22
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Caching of the built files: hashed names are cached for a year without revalidation
/// (`immutable`); any other file under `/pkg` is revalidated on each use (`no-cache`, answered
/// `304` by its `Last-Modified`).
pub async fn cache_static(req: Request, next: Next) -> Response {
    // Decided before the request moves on; other paths pass untouched.
    let path = req.uri().path();
    let hashed = path.starts_with("/pkg/").then(|| is_hashed_asset(path));
    let mut res = next.run(req).await;
    let Some(hashed) = hashed else {
        return res;
    };
    if !(res.status().is_success() || res.status() == 304) {
        return res;
    }
    let value = if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let h = res.headers_mut();
    h.insert("cache-control", HeaderValue::from_static(value));
    // The same path is sent as brotli, gzip or raw: caches on the way must keep them apart.
    h.insert("vary", HeaderValue::from_static("accept-encoding"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_connect_only_to_this_site_outside_the_watch_loop() {
        assert!(
            policy("n").contains("connect-src 'self';"),
            "{}",
            policy("n")
        );
    }

    #[test]
    fn hashed_names_are_told_apart() {
        for hashed in [
            "/pkg/apx-canary.29Gu4SfLZexm1xOAiDSN1g.wasm",
            "/pkg/apx-canary.-ualnuIjHnByolgC1AJmGw.js",
            "/pkg/__wasm_split.KNCg7SbW7MgLLuyAc89O7A.js",
            "/pkg/chunk_4.o6q-3-wGWXeQu-flr3iSmQ.wasm",
        ] {
            assert!(is_hashed_asset(hashed), "{hashed}");
        }
        for plain in [
            "/pkg/apx-canary.wasm",
            "/pkg/apx-canary.css",
            "/favicon.svg",
            "/pkg/a.b.c",
            "/policies/apx-canary.29Gu4SfLZexm1xOAiDSN1g.wasm",
        ] {
            assert!(!is_hashed_asset(plain), "{plain}");
        }
    }
}
