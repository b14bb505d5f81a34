//! Notifications of what plans did (a step advanced, the canary promoted, the plan paused or
//! rolled back): a JSON POST to each configured URL, with a Slack-compatible `text` field.
//! Sent from a background task, retried with backoff (5 attempts); a failing or slow webhook
//! never blocks or fails a plan, and a full queue drops notices (counted), never waits.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// One notice, as POSTed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// For Slack and people: one line that says it all.
    pub text: String,
    pub policy: String,
    /// `advanced`, `promoted`, `paused` or `rolled_back`.
    pub event: &'static str,
    /// The canary share after the move.
    pub share: String,
    pub revision: u64,
    /// The verdict or cause, with its numbers.
    pub reason: String,
}

/// Where notices go; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    queue: Option<mpsc::Sender<Notice>>,
    dropped: Arc<AtomicU64>,
}

/// Attempts per notice and URL.
pub const ATTEMPTS: u32 = 5;
/// Notices waiting to be sent before new ones are dropped.
const QUEUE: usize = 1_000;

impl Webhooks {
    /// No webhooks: notices go nowhere.
    pub fn none() -> Webhooks {
        Webhooks {
            queue: None,
            dropped: Arc::default(),
        }
    }

    /// Starts the sender for `urls` (each must be http or https); `backoff` is the first
    /// retry's delay, doubled for each next one.
    pub fn start(urls: Vec<reqwest::Url>, backoff: Duration) -> Webhooks {
        if urls.is_empty() {
            return Webhooks::none();
        }
        let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a plain HTTP client builds");
        tokio::spawn(async move {
            while let Some(notice) = rx.recv().await {
                for url in &urls {
                    let (client, url, notice) = (client.clone(), url.clone(), notice.clone());
                    tokio::spawn(async move { deliver(&client, &url, &notice, backoff).await });
                }
            }
        });
        Webhooks {
            queue: Some(tx),
            dropped: Arc::default(),
        }
    }

    /// Queues `notice` for every URL, without waiting.
    pub fn notify(&self, notice: Notice) {
        if let Some(queue) = &self.queue {
            if queue.try_send(notice).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("webhook queue full: a plan notice was dropped");
            }
        }
    }

    /// Notices dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// POSTs `notice` to `url` until it answers 2xx, at most [`ATTEMPTS`] times.
async fn deliver(client: &reqwest::Client, url: &reqwest::Url, notice: &Notice, backoff: Duration) {
    let body = serde_json::to_vec(notice).expect("notices serialise");
    let mut delay = backoff;
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(url.clone())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            // The URL may carry a secret (Slack's do): log its host only.
            Ok(r) => {
                tracing::warn!(host = url.host_str().unwrap_or(""), status = %r.status(), attempt, "webhook refused a notice")
            }
            Err(e) => {
                tracing::warn!(host = url.host_str().unwrap_or(""), error = %e.without_url(), attempt, "webhook unreachable")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}

/// Parses webhook URLs (http or https only), naming the bad one.
pub fn parse_urls(raw: &[String]) -> Result<Vec<reqwest::Url>, String> {
    raw.iter()
        .map(|u| {
            let url =
                reqwest::Url::parse(u.trim()).map_err(|e| format!("--webhook: not a URL ({e})"))?;
            match url.scheme() {
                "http" | "https" => Ok(url),
                other => Err(format!("--webhook: scheme '{other}' is not http or https")),
            }
        })
        .collect()
}
