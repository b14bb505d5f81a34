//! Behind Google's Identity-Aware Proxy: every request carries `x-goog-iap-jwt-assertion`, an
//! ES256 JWT signed by Google. It is verified here — signature against the configured JWK set
//! (by `kid`), issuer, audience, expiry and issue time with a small skew — and never replaced by
//! the plain e-mail header IAP also sends. Roles come from a mapping of e-mails and domains.
//!
//! The JWK set comes from a file or a URL ([`JwksSource`]; Google's by default) and is held
//! behind a lock so it can be replaced while requests are verified: on a schedule
//! ([`Iap::spawn_refresher`]) and when an assertion names a `kid` the set does not have (at most
//! once per [`UNKNOWN_KID_REFRESH_SECS`], so a flood of made-up kids cannot hammer the source).
//! A refresh that fails — source unreachable, not JSON, no usable key — keeps the last good set
//! and logs a warning.

use app::access::{Principal, Role, SignIn};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub const ASSERTION_HEADER: &str = "x-goog-iap-jwt-assertion";
pub const GOOGLE_ISSUER: &str = "https://cloud.google.com/iap";
/// Where Google publishes the keys IAP signs with.
pub const GOOGLE_JWKS_URL: &str = "https://www.gstatic.com/iap/verify/public_key-jwk";
/// Clock skew tolerated on `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 30;
/// The scheduled refresh's default period, in seconds.
pub const DEFAULT_REFRESH_SECS: u64 = 3600;
/// At most one refresh for an unknown `kid` within this many seconds.
pub const UNKNOWN_KID_REFRESH_SECS: u64 = 30;
/// How long a fetch of the key set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest key set read (Google's is about 1 KB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where the JWK set is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(reqwest::Url),
}

impl JwksSource {
    /// `--iap-jwks PATH`, else `--iap-jwks-url URL` (http or https), else Google's URL.
    pub fn from_flags(file: Option<PathBuf>, url: Option<&str>) -> Result<JwksSource, String> {
        if let Some(path) = file {
            return Ok(JwksSource::File(path));
        }
        let raw = url.unwrap_or(GOOGLE_JWKS_URL).trim();
        let url = reqwest::Url::parse(raw)
            .map_err(|e| format!("--iap-jwks-url '{raw}': not a URL ({e})"))?;
        match url.scheme() {
            "http" | "https" => Ok(JwksSource::Url(url)),
            other => Err(format!(
                "--iap-jwks-url '{raw}': scheme '{other}' is not http or https"
            )),
        }
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "file {}", p.display()),
            JwksSource::Url(u) => write!(f, "{u}"),
        }
    }
}

type Keys = HashMap<String, DecodingKey>;

/// The key set and how it is refreshed; shared with the refresher task.
struct KeyRing {
    keys: RwLock<Arc<Keys>>,
    /// Bumped on every successful refresh: a request that waited on another's refresh
    /// retries with the new set instead of fetching again.
    generation: std::sync::atomic::AtomicU64,
    /// None: the set given to [`Iap::new`], never refreshed.
    source: Option<JwksSource>,
    client: reqwest::Client,
    /// When the last refresh for an unknown `kid` started.
    last_unscheduled: Mutex<Option<Instant>>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

pub struct Iap {
    audience: String,
    issuer: String,
    ring: Arc<KeyRing>,
    /// (exact e-mail, or `@domain`) → role; the exact e-mail wins.
    roles: Vec<(String, Role)>,
}

#[derive(Deserialize)]
struct Claims {
    email: String,
    iat: i64,
}

/// Why an assertion is refused; an unknown `kid` may be worth a refresh.
enum Refusal {
    UnknownKid(String),
    Other(String),
}

impl Refusal {
    fn message(self) -> String {
        match self {
            Refusal::UnknownKid(kid) => format!("signed with an unknown key '{}'", shown(&kid)),
            Refusal::Other(why) => why,
        }
    }
}

/// The ES256 keys of a JWK set's JSON. Keys that cannot verify ES256 (another curve or
/// algorithm) are skipped; a set without one usable key is refused.
pub fn parse_jwks(jwks_json: &str) -> Result<HashMap<String, DecodingKey>, String> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet =
        serde_json::from_str(jwks_json).map_err(|e| format!("not a JWK set ({e})"))?;
    let mut keys = HashMap::new();
    let mut skipped = Vec::new();
    for raw in set.keys {
        let kid = raw
            .get("kid")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        let usable = serde_json::from_value::<Jwk>(raw)
            .map_err(|e| e.to_string())
            .and_then(|jwk| {
                let p256 = matches!(
                    &jwk.algorithm,
                    AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256
                );
                let alg_ok = jwk
                    .common
                    .key_algorithm
                    .is_none_or(|a| a == KeyAlgorithm::ES256);
                if !(p256 && alg_ok) {
                    return Err("not an ES256 (P-256) key".to_string());
                }
                DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())
            });
        match usable {
            Ok(key) => {
                keys.insert(kid, key);
            }
            Err(why) => skipped.push(format!("'{kid}': {why}")),
        }
    }
    if keys.is_empty() {
        return Err(if skipped.is_empty() {
            "the set has no keys".to_string()
        } else {
            format!(
                "the set has no key that can verify ES256 ({})",
                skipped.join("; ")
            )
        });
    }
    Ok(keys)
}

/// Reads and parses the key set from `source`.
async fn load(client: &reqwest::Client, source: &JwksSource) -> Result<Keys, String> {
    let text = match source {
        JwksSource::File(path) => tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("cannot read {} ({e})", path.display()))?,
        JwksSource::Url(url) => {
            let mut res = client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| format!("cannot fetch {url} ({e})"))?;
            if !res.status().is_success() {
                return Err(format!("{url} answered {}", res.status()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = res
                .chunk()
                .await
                .map_err(|e| format!("cannot read {url} ({e})"))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_JWKS_BYTES {
                    return Err(format!("{url}: the answer is larger than 1 MB"));
                }
            }
            String::from_utf8(body).map_err(|_| format!("{url}: the answer is not UTF-8"))?
        }
    };
    parse_jwks(&text).map_err(|e| format!("{source}: {e}"))
}

fn parse_roles(roles: &[String]) -> Result<Vec<(String, Role)>, String> {
    roles
        .iter()
        .map(|m| {
            let (role, who) = m.split_once('=').ok_or_else(|| {
                format!("--iap-role '{m}': write ROLE=EMAIL or ROLE=@DOMAIN, e.g. admin=alice@example.com")
            })?;
            let role = Role::from_key(role)
                .filter(|r| *r != Role::Service)
                .ok_or_else(|| format!("--iap-role '{m}': the role is viewer, operator or admin"))?;
            Ok((who.trim().to_lowercase(), role))
        })
        .collect()
}

fn check_audience(audience: &str) -> Result<(), String> {
    if audience.trim().is_empty() {
        return Err("--iap-audience: give the audience IAP signs for (e.g. /projects/123/global/backendServices/456)".into());
    }
    Ok(())
}

impl Iap {
    /// From the JWK set's JSON (Google publishes it at [`GOOGLE_JWKS_URL`]) and `ROLE=WHO`
    /// mappings. This set is never refreshed: see [`Iap::load`].
    pub fn new(audience: &str, jwks_json: &str, roles: &[String]) -> Result<Iap, String> {
        check_audience(audience)?;
        let roles = parse_roles(roles)?;
        let keys = parse_jwks(jwks_json).map_err(|e| format!("--iap-jwks: {e}"))?;
        Ok(Iap::build(audience, keys, None, roles, http_client()))
    }

    /// Loads the first key set from `source` (an error if it cannot be had); later refreshes
    /// read the same source.
    pub async fn load(audience: &str, source: JwksSource, roles: &[String]) -> Result<Iap, String> {
        check_audience(audience)?;
        let roles = parse_roles(roles)?;
        let client = http_client();
        let keys = load(&client, &source)
            .await
            .map_err(|e| format!("IAP: the first key set cannot be loaded: {e}"))?;
        Ok(Iap::build(audience, keys, Some(source), roles, client))
    }

    fn build(
        audience: &str,
        keys: Keys,
        source: Option<JwksSource>,
        roles: Vec<(String, Role)>,
        client: reqwest::Client,
    ) -> Iap {
        Iap {
            audience: audience.to_string(),
            issuer: GOOGLE_ISSUER.to_string(),
            ring: Arc::new(KeyRing {
                keys: RwLock::new(Arc::new(keys)),
                generation: Default::default(),
                source,
                client,
                last_unscheduled: Mutex::new(None),
                refreshing: tokio::sync::Mutex::new(()),
            }),
            roles,
        }
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The `kid`s of the current key set, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.ring.current().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Refreshes the key set every `every` from its source (nothing for a set given to
    /// [`Iap::new`]). Runs until the runtime stops.
    pub fn spawn_refresher(&self, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.ring.source.as_ref()?;
        let ring = self.ring.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let _one = ring.refreshing.lock().await;
                ring.refresh("scheduled").await;
            }
        }))
    }

    /// The verified e-mail of an assertion, or why it is refused (with the current key set;
    /// see [`Iap::verify_or_refresh`]).
    pub fn verify(&self, assertion: &str, now: i64) -> Result<String, String> {
        self.check(assertion, now, &self.ring.current())
            .map_err(Refusal::message)
    }

    /// As [`Iap::verify`]; an assertion signed with a `kid` the set does not have first
    /// refreshes the set (at most once per [`UNKNOWN_KID_REFRESH_SECS`]) — Google rotates its
    /// keys, and a new one may sign before the next scheduled refresh.
    pub async fn verify_or_refresh(&self, assertion: &str, now: i64) -> Result<String, String> {
        let generation = self.ring.generation();
        let kid = match self.check(assertion, now, &self.ring.current()) {
            Err(Refusal::UnknownKid(kid)) if self.ring.source.is_some() => kid,
            other => return other.map_err(Refusal::message),
        };
        let _one = self.ring.refreshing.lock().await;
        // Another request may have refreshed the set while this one waited.
        if self.ring.generation() == generation {
            let allowed = {
                let mut last = self.ring.last_unscheduled.lock().unwrap();
                let allowed = last
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(UNKNOWN_KID_REFRESH_SECS));
                if allowed {
                    *last = Some(Instant::now());
                }
                allowed
            };
            if !allowed {
                return Err(Refusal::UnknownKid(kid).message());
            }
            self.ring
                .refresh(&format!("unknown key '{}'", shown(&kid)))
                .await;
        }
        self.check(assertion, now, &self.ring.current())
            .map_err(Refusal::message)
    }

    fn check(&self, assertion: &str, now: i64, keys: &Keys) -> Result<String, Refusal> {
        let header =
            decode_header(assertion).map_err(|e| Refusal::Other(format!("not a JWT ({e})")))?;
        if header.alg != Algorithm::ES256 {
            return Err(Refusal::Other(format!(
                "signed with {:?}, not ES256",
                header.alg
            )));
        }
        let kid = header.kid.unwrap_or_default();
        let key = keys.get(&kid).ok_or(Refusal::UnknownKid(kid))?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[&self.issuer]);
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        let claims = decode::<Claims>(assertion, key, &v)
            .map_err(|e| Refusal::Other(format!("refused ({e})")))?
            .claims;
        if claims.iat > now + LEEWAY_SECS as i64 {
            return Err(Refusal::Other("issued in the future".into()));
        }
        Ok(claims.email.to_lowercase())
    }

    /// The principal for a verified e-mail, if the mapping gives it a role.
    pub fn principal(&self, email: &str) -> Option<Principal> {
        let domain = email.rsplit_once('@').map(|(_, d)| format!("@{d}"));
        let role = self
            .roles
            .iter()
            .find(|(who, _)| who == email)
            .or_else(|| {
                self.roles
                    .iter()
                    .find(|(who, _)| Some(who) == domain.as_ref())
            })
            .map(|(_, r)| *r)?;
        Some(Principal {
            name: email.to_string(),
            role,
            policies: vec![],
            via: SignIn::Iap,
        })
    }
}

impl KeyRing {
    fn current(&self) -> Arc<Keys> {
        self.keys.read().unwrap().clone()
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Loads the set again; on failure keeps the last good one. The caller holds
    /// `refreshing`.
    async fn refresh(&self, why: &str) {
        let Some(source) = &self.source else { return };
        match load(&self.client, source).await {
            Ok(keys) => {
                let mut ids: Vec<&String> = keys.keys().collect();
                ids.sort();
                tracing::info!(%source, reason = why, keys = ?ids, "IAP key set refreshed");
                *self.keys.write().unwrap() = Arc::new(keys);
                self.generation
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            Err(e) => {
                tracing::warn!(reason = why, error = %e, "IAP key set refresh failed; keeping the last good set")
            }
        }
    }
}

/// A `kid` from a request, for messages and logs: at most 64 characters, escaped.
fn shown(kid: &str) -> String {
    let short: String = kid.chars().take(64).collect();
    short.escape_debug().to_string()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .expect("a plain HTTP client builds")
}
