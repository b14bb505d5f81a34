//! Caps on what a caller can hold open: server-sent-event streams and simulator uploads in
//! progress. Each has a total and a per-caller cap; a request beyond the total gets 503 (the
//! server is full), beyond the caller's own cap 429 (close another first), both with
//! `Retry-After` and a sentence saying which.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A cap on things held open at once, in total and per caller.
pub struct Caps {
    what: &'static str,
    total: usize,
    per_caller: usize,
    held: Mutex<(usize, HashMap<String, usize>)>,
}

/// One held slot; released when dropped (the stream ends, the upload is read).
pub struct Slot {
    caps: Arc<Caps>,
    caller: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.caps.held.lock().unwrap();
        held.0 -= 1;
        if let Some(n) = held.1.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                held.1.remove(&self.caller);
            }
        }
    }
}

impl Caps {
    pub fn new(what: &'static str, total: usize, per_caller: usize) -> Arc<Caps> {
        Arc::new(Caps {
            what,
            total,
            per_caller,
            held: Mutex::new((0, HashMap::new())),
        })
    }

    /// A slot for `caller` (a digest or name; at most `total` distinct callers are kept), or
    /// the response that refuses it.
    pub fn take(self: &Arc<Caps>, caller: &str) -> Result<Slot, Box<Response>> {
        let mut held = self.held.lock().unwrap();
        if held.0 >= self.total {
            return Err(self.refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server holds its maximum of {} {} open; try again shortly",
                    self.total, self.what
                ),
            ));
        }
        let mine = held.1.get(caller).copied().unwrap_or(0);
        if mine >= self.per_caller {
            return Err(self.refusal(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "you already hold {mine} {} open (at most {} each): close one first",
                    self.what, self.per_caller
                ),
            ));
        }
        held.0 += 1;
        *held.1.entry(caller.to_string()).or_default() += 1;
        Ok(Slot {
            caps: self.clone(),
            caller: caller.to_string(),
        })
    }

    /// Slots held now, in total.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap().0
    }

    fn refusal(&self, status: StatusCode, message: String) -> Box<Response> {
        let mut r = (status, format!("{message}\n")).into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        Box::new(r)
    }
}

/// Whose slots these are: the session's (or token's) key, else the principal's name.
pub fn caller_key(caller: &app::access::Caller) -> String {
    caller
        .session_key
        .clone()
        .or_else(|| {
            caller
                .principal
                .as_ref()
                .map(|p| format!("name:{}", p.name))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_caller_and_in_total_and_free_on_drop() {
        let caps = Caps::new("streams", 3, 2);
        let a1 = caps.take("a").unwrap();
        let _a2 = caps.take("a").unwrap();
        assert_eq!(
            caps.take("a").err().unwrap().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let _b1 = caps.take("b").unwrap();
        assert_eq!(
            caps.take("c").err().unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        drop(a1);
        assert_eq!(caps.held(), 2);
        assert!(caps.take("c").is_ok(), "a slot freed on drop");
        assert_eq!(caps.held(), 2, "and the temporary slot too");
    }
}
