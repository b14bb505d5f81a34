//! What the server shares with every page and server function (server only).

use super::events::EventCache;
use splitter::recorder::TrafficRecorder;
use splitter::snapshot::Splitter;
use splitter::store::instrumented::StoreMetrics;
use splitter::store::{PolicyStore, TrafficStore};
use splitter::traffic_cache::TrafficCache;
use splitter::{AuditEvent, Error, PolicyConfig, Request};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The store the dashboard runs on, and what this replica holds of it in memory: pages read
/// configs from the snapshot and traffic from the traffic cache, never from the store; only
/// audit events come from the store, once per revision.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn PolicyStore>,
    pub traffic_store: Arc<dyn TrafficStore>,
    pub splitter: Splitter,
    /// The fleet's recorded traffic of the last 25 h.
    pub traffic: Arc<TrafficCache>,
    pub events: Arc<EventCache>,
    /// For people: `embedded (data/canary.redb)` or `firestore (project …)`.
    pub store_label: String,
    /// Files uploaded to the simulator without JavaScript.
    pub uploads: Arc<Uploads>,
    /// This replica's traffic, flushed to the store every few seconds.
    pub recorder: Arc<TrafficRecorder>,
    /// Calls, failures and time of every store operation (for `/metrics`).
    pub store_metrics: Arc<StoreMetrics>,
    /// Traffic sections built in the last second, served again while nothing changed.
    pub traffic_pages: Arc<crate::ssr::traffic_pages::TrafficPages>,
    /// Plans' verdicts, computed once per change of the traffic in memory.
    pub verdicts: Arc<crate::ssr::plans::Verdicts>,
}

/// The store is unreachable: since when, and how old the snapshot pages and routing use is.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    pub since: jiff::Timestamp,
    pub snapshot_age_secs: u64,
}

impl Outage {
    /// What the banner, the disabled controls and refused writes say.
    pub fn describe(&self, store: &str) -> String {
        format!(
            "The store ({store}) has been unreachable since {} UTC. Pages show a snapshot {} s old \
             and the traffic read before; changes are disabled until the store is back. \
             Routing continues from the snapshot.",
            self.since.strftime("%Y-%m-%d %H:%M:%S"),
            self.snapshot_age_secs
        )
    }
}

impl AppState {
    /// Whether the store is unreachable now (as the last call to it found).
    pub fn outage(&self) -> Option<Outage> {
        let health = self.store_metrics.health();
        let since = health.down_since?;
        let age_from = health.last_ok.unwrap_or(since);
        let snapshot_age_secs = jiff::Timestamp::now()
            .duration_since(age_from)
            .as_secs()
            .max(0) as u64;
        Some(Outage {
            since,
            snapshot_age_secs,
        })
    }

    /// How old the routing snapshot may be: the change feed keeps it current while the store
    /// answers, so this is the time since the store last answered (or since the snapshot last
    /// applied a change or a full read, if that is sooner).
    pub fn snapshot_age(&self) -> std::time::Duration {
        let applied = self.splitter.health().age;
        let answered = self.store_metrics.health().last_ok.map(|t| {
            let secs = jiff::Timestamp::now()
                .duration_since(t)
                .as_secs_f64()
                .max(0.0);
            std::time::Duration::from_secs_f64(secs)
        });
        answered.map_or(applied, |a| a.min(applied))
    }

    /// The store's kind for people: `firestore`, `embedded`.
    pub fn store_kind(&self) -> &str {
        self.store_label.split(' ').next().unwrap_or("store")
    }

    /// The config of `name`, from the snapshot.
    pub fn config(&self, name: &str) -> Option<PolicyConfig> {
        self.splitter.policy(name).map(|c| (*c).clone())
    }

    /// Every config, from the snapshot, shared (no copy of each config).
    pub fn shared_configs(&self) -> Vec<Arc<PolicyConfig>> {
        self.splitter.policies().values().cloned().collect()
    }

    /// Every config, from the snapshot.
    pub fn configs(&self) -> Vec<PolicyConfig> {
        self.splitter
            .policies()
            .values()
            .map(|c| (**c).clone())
            .collect()
    }

    /// `config`'s newest audit events (newest first, at most [`super::events::KEEP`]): from the
    /// store when the policy changed since they were last read, else from memory; during an
    /// outage, whatever memory holds.
    pub async fn events(&self, config: &PolicyConfig) -> splitter::Result<Arc<Vec<AuditEvent>>> {
        let read_store = self.outage().is_none();
        match self.events.latest(&*self.store, config, read_store).await {
            Err(Error::Unavailable { .. }) => self.events.latest(&*self.store, config, false).await,
            other => other,
        }
    }

    /// Runs a change: refused at once while the store is known to be unreachable; on success
    /// the snapshot holds the new config before this returns (a page read next shows it).
    /// A store failure is logged with its detail and answered with what an operator can do.
    pub async fn execute(&self, request: &Request) -> splitter::Result<Option<PolicyConfig>> {
        let store = self.store_kind().to_string();
        let refused = |detail: String| Error::Unavailable {
            store: if store == "firestore" {
                "firestore"
            } else {
                "embedded"
            },
            detail,
        };
        if let Some(outage) = self.outage() {
            return Err(refused(outage.describe(&store)));
        }
        match self.store.execute(request).await {
            Ok(after) => {
                match &after {
                    Some(c) => self.splitter.put(Arc::new(c.clone())),
                    None => self.splitter.remove(request.policy.as_str()),
                }
                Ok(after)
            }
            Err(Error::Unavailable { detail, .. }) => {
                tracing::warn!(error = %detail, policy = %request.policy, "a change failed: the store is unreachable");
                Err(refused("it did not answer".into()))
            }
            Err(e) => Err(e),
        }
    }
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
