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
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
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
