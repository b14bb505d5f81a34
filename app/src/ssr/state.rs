//! What the server shares with every page and server function (server only).

use splitter::snapshot::Splitter;
use splitter::store::instrumented::StoreMetrics;
use splitter::store::ConfigStore;
use splitter::traffic::TrafficRecorder;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The store the dashboard runs on, and the snapshot that follows it.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ConfigStore>,
    pub splitter: Splitter,
    /// For people: `embedded (data/canary.redb)` or `firestore (project …)`.
    pub store_label: String,
    /// Files uploaded to the simulator without JavaScript.
    pub uploads: Arc<Uploads>,
    /// This replica's traffic, flushed to the store every few seconds.
    pub recorder: Arc<TrafficRecorder>,
    /// Calls, failures and time of every store operation (for `/metrics`).
    pub store_metrics: Arc<StoreMetrics>,
}

/// Simulator uploads made without JavaScript, in memory, so that an upload can redirect to a
/// simulator URL (`?upload=<id>`). Ids are random (128 bits) and each upload is readable only
/// by the session that made it; uploads expire after [`Uploads::TTL_SECS`], and all of them
/// together never hold more than [`Uploads::MAX_TOTAL`] bytes (the oldest go first).
#[derive(Default)]
pub struct Uploads {
    entries: Mutex<VecDeque<Upload>>,
}

struct Upload {
    id: String,
    owner: String,
    at: i64,
    text: Arc<String>,
}

impl Uploads {
    /// Largest upload accepted: ample for 100 000+ tenant ids.
    pub const MAX_BYTES: usize = 32 * 1024 * 1024;
    /// All uploads together.
    pub const MAX_TOTAL: usize = 96 * 1024 * 1024;
    pub const TTL_SECS: i64 = 30 * 60;

    /// Keeps `text` for `owner`; returns its id.
    pub fn put(&self, owner: &str, text: String, now: i64) -> String {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).expect("the operating system's random number generator");
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut entries = self.entries.lock().unwrap();
        entries.retain(|u| now - u.at < Self::TTL_SECS);
        let mut total: usize = entries.iter().map(|u| u.text.len()).sum();
        while total + text.len() > Self::MAX_TOTAL {
            match entries.pop_front() {
                Some(old) => total -= old.text.len(),
                None => break,
            }
        }
        entries.push_back(Upload {
            id: id.clone(),
            owner: owner.to_string(),
            at: now,
            text: Arc::new(text),
        });
        id
    }

    /// The upload `id` if `owner` made it and it has not expired.
    pub fn get(&self, owner: &str, id: &str, now: i64) -> Option<Arc<String>> {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .find(|u| u.id == id && u.owner == owner && now - u.at < Self::TTL_SECS)
            .map(|u| u.text.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_belong_to_their_session_expire_and_stay_bounded() {
        let u = Uploads::default();
        let id = u.put("alice", "t-1\n".into(), 0);
        assert_eq!(id.len(), 32);
        assert!(u.get("alice", &id, 10).is_some());
        assert!(
            u.get("bob", &id, 10).is_none(),
            "another session cannot read it"
        );
        assert!(u.get("alice", &id, Uploads::TTL_SECS).is_none(), "expired");
        let big = "x".repeat(Uploads::MAX_BYTES);
        let first = u.put("a", big.clone(), 0);
        u.put("a", big.clone(), 0);
        u.put("a", big.clone(), 0);
        assert!(u.get("a", &first, 1).is_some());
        u.put("a", big, 0);
        assert!(
            u.get("a", &first, 1).is_none(),
            "the oldest went to stay within the bound"
        );
    }
}
