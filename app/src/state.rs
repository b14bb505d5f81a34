//! What the server shares with every page and server function (server only).

use splitter::snapshot::Splitter;
use splitter::store::ConfigStore;
use std::sync::Arc;

/// The store the dashboard runs on, and the snapshot that follows it.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ConfigStore>,
    pub splitter: Splitter,
    /// For people: `embedded (data/canary.redb)` or `firestore (project …)`.
    pub store_label: String,
}
