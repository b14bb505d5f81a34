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

/// The last few simulator uploads, in memory, so that a JS-free upload can redirect to a
/// simulator URL (`?upload=<id>`). Bounded: the oldest go first.
#[derive(Default)]
pub struct Uploads {
    entries: Mutex<VecDeque<(String, Arc<String>)>>,
}

impl Uploads {
    pub const KEEP: usize = 32;
    /// Largest upload accepted: ample for 100 000+ tenant ids.
    pub const MAX_BYTES: usize = 32 * 1024 * 1024;

    pub fn put(&self, text: String) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!("{nanos:x}{:x}", text.len());
        let mut entries = self.entries.lock().unwrap();
        if entries.len() == Self::KEEP {
            entries.pop_front();
        }
        entries.push_back((id.clone(), Arc::new(text)));
        id
    }

    pub fn get(&self, id: &str) -> Option<Arc<String>> {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, v)| v.clone())
    }
}
