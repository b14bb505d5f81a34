//! Audit events per policy, cached by revision: a page view reads the store only when the
//! policy changed since the last view, and then only the events it has not seen (each change
//! appends exactly one event and bumps the revision by one).

use splitter::store::PolicyStore;
use splitter::{AuditEvent, PolicyConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The most events a page shows (the traffic charts' annotations); the policy page lists 50.
pub const KEEP: usize = 500;
/// Policies whose events are cached; beyond that the cache starts over.
const MAX_POLICIES: usize = 10_000;

#[derive(Default)]
pub struct EventCache {
    entries: Mutex<HashMap<String, Cached>>,
    /// One store read at a time per policy: the views of a policy that just changed (its page
    /// and its traffic section, many viewers) read the store once, not once each.
    reading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Clone)]
struct Cached {
    revision: u64,
    /// Newest first, at most [`KEEP`].
    events: Arc<Vec<AuditEvent>>,
}

impl EventCache {
    /// The newest events of `config`'s policy as of its revision (newest first, at most
    /// [`KEEP`]). `read_store` false (the store is known to be down): whatever is cached, even
    /// for an older revision, without waiting for the store.
    pub async fn latest(
        &self,
        store: &dyn PolicyStore,
        config: &PolicyConfig,
        read_store: bool,
    ) -> splitter::Result<Arc<Vec<AuditEvent>>> {
        let name = config.policy_name.as_str();
        if let Some(hit) = self.cached(config, read_store) {
            return Ok(hit);
        }
        let gate = self.gate(name);
        let _reading = gate.lock().await;
        // Another view may have read it while this one waited.
        if let Some(hit) = self.cached(config, read_store) {
            return Ok(hit);
        }
        let cached = self.entries.lock().unwrap().get(name).cloned();
        let events = match cached.filter(|c| c.revision < config.revision) {
            Some(c) => self.catch_up(store, config, c).await?,
            None => store.events(&config.policy_name, KEEP).await?,
        };
        let events = Arc::new(events);
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= MAX_POLICIES {
            entries.clear();
        }
        let revision = config.revision;
        entries.insert(
            name.to_string(),
            Cached {
                revision,
                events: events.clone(),
            },
        );
        Ok(events)
    }

    /// What memory holds for `config` as of its revision (any revision when the store is not to
    /// be read); `None`: the store must be read.
    fn cached(&self, config: &PolicyConfig, read_store: bool) -> Option<Arc<Vec<AuditEvent>>> {
        let entries = self.entries.lock().unwrap();
        match entries.get(config.policy_name.as_str()) {
            Some(c) if c.revision == config.revision || !read_store => Some(c.events.clone()),
            None if !read_store => Some(Arc::default()),
            _ => None,
        }
    }

    fn gate(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut reading = self.reading.lock().unwrap();
        if reading.len() >= MAX_POLICIES {
            reading.clear();
        }
        reading.entry(name.to_string()).or_default().clone()
    }

    /// Reads only the events after `cached.revision`; if they are not exactly the missing
    /// revisions (a delete and re-create, clocks out of step), reads the newest [`KEEP`].
    async fn catch_up(
        &self,
        store: &dyn PolicyStore,
        config: &PolicyConfig,
        cached: Cached,
    ) -> splitter::Result<Vec<AuditEvent>> {
        let missing = (config.revision - cached.revision) as usize;
        if missing <= KEEP {
            let new = store.events(&config.policy_name, missing).await?;
            if follows(&new, cached.revision, config.revision) {
                let mut all = new;
                all.extend(cached.events.iter().cloned());
                all.truncate(KEEP);
                return Ok(all);
            }
        }
        store.events(&config.policy_name, KEEP).await
    }
}

/// Whether `new` (newest first) is exactly revisions `after + 1 ..= to`.
pub fn follows(new: &[AuditEvent], after: u64, to: u64) -> bool {
    new.len() as u64 == to - after
        && new
            .iter()
            .zip((after + 1..=to).rev())
            .all(|(e, r)| e.revision == r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: u64) -> AuditEvent {
        let config = splitter::PolicyConfig::new(
            splitter::PolicyName::new("p").unwrap(),
            splitter::Version::new("v1").unwrap(),
            None,
            splitter::BasisPoints::ZERO,
            splitter::Actor::new("a").unwrap(),
            jiff::Timestamp::UNIX_EPOCH,
        );
        AuditEvent {
            id: format!("p.{revision}"),
            policy_name: config.policy_name.clone(),
            action: "set_share".into(),
            before: None,
            after: Some(config),
            actor: splitter::Actor::new("a").unwrap(),
            reason: String::new(),
            time: jiff::Timestamp::UNIX_EPOCH,
            revision,
        }
    }

    #[test]
    fn only_exactly_the_missing_revisions_follow() {
        assert!(follows(&[event(7), event(6)], 5, 7));
        assert!(follows(&[], 5, 5));
        assert!(!follows(&[event(7)], 5, 7), "one missing");
        assert!(!follows(&[event(6), event(7)], 5, 7), "oldest first");
        assert!(
            !follows(&[event(2), event(1)], 5, 7),
            "a re-created policy's"
        );
    }
}
