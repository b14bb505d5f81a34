//! What the access store holds, and the operations on it: accounts (argon2id hashes), sessions
//! (idle and absolute expiry, a CSRF token each) and API tokens (hashed, revocable). Stored in
//! the configured store, so every replica sees a sign-out or a revocation.

use super::credentials::{digest, random_secret};
use app::access::{Principal, Role, SignIn};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use splitter::store::access::{AccessKind, AccessStore};
use splitter::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    #[serde(default)]
    pub policies: Vec<String>,
    pub created_at: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub principal: Principal,
    /// The synchronizer token every state change from this session must carry.
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id (the first characters of the token's digest): names it in lists and URLs.
    pub id: String,
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub policies: Vec<String>,
    pub created_at: i64,
    pub created_by: String,
    #[serde(default)]
    pub last_used_at: Option<i64>,
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

/// Account names: 1–64 of `a-z 0-9 . _ @ -`, not starting with `.` (a Firestore document id
/// and readable in the audit trail).
pub fn check_name(what: &'static str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            format!(
                "'{}': use 1–64 lowercase letters, digits, '.', '_', '@' or '-'",
                name.escape_debug()
            ),
        ))
    }
}

/// Policy patterns as typed (`payments-*, search-api`): comma- or space-separated.
pub fn parse_patterns(text: &str) -> Result<Vec<String>, Error> {
    let patterns: Vec<String> = text
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    for p in &patterns {
        let ok = p.len() <= 100
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.*".contains(c));
        if !ok {
            return Err(Error::invalid(
                "policies",
                format!(
                    "'{}' is not a policy-name pattern (e.g. payments-*)",
                    p.escape_debug()
                ),
            ));
        }
    }
    Ok(patterns)
}

async fn get<T: DeserializeOwned>(
    store: &dyn AccessStore,
    kind: AccessKind,
    key: &str,
) -> Result<Option<T>, Error> {
    match store.get_record(kind, key).await? {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                store: "access",
                key: key.to_string(),
                detail: e.to_string(),
            }),
    }
}

async fn put<T: Serialize>(
    store: &dyn AccessStore,
    kind: AccessKind,
    key: &str,
    value: &T,
    create_only: bool,
) -> Result<(), Error> {
    let json = serde_json::to_string(value).expect("access records serialise");
    store.put_record(kind, key, &json, create_only).await
}

pub async fn account(store: &dyn AccessStore, name: &str) -> Result<Option<Account>, Error> {
    get(store, AccessKind::Account, name).await
}

pub async fn create_account(store: &dyn AccessStore, account: &Account) -> Result<(), Error> {
    check_name("account name", &account.name)?;
    put(store, AccessKind::Account, &account.name, account, true).await
}

pub async fn has_accounts(store: &dyn AccessStore) -> Result<bool, Error> {
    Ok(!store.list_records(AccessKind::Account).await?.is_empty())
}

/// Starts a session for `principal`; returns the session id for the cookie (stored as a digest).
pub async fn start_session(
    store: &dyn AccessStore,
    principal: Principal,
    now: i64,
) -> Result<String, Error> {
    let id = random_secret();
    let record = SessionRecord {
        principal,
        csrf: random_secret(),
        created_at: now,
        last_seen: now,
    };
    put(store, AccessKind::Session, &digest(&id), &record, true).await?;
    Ok(id)
}

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Signed out after this long without a request (seconds).
    pub idle: i64,
    /// Signed out this long after signing in, whatever happens (seconds).
    pub absolute: i64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: 30 * 60,
            absolute: 12 * 3600,
        }
    }
}

/// The live session for a cookie value, or `None` (unknown, expired — then deleted). A session
/// seen again more than a minute after its last recorded use has `last_seen` moved forward
/// (one write per session per minute at most).
pub async fn session(
    store: &dyn AccessStore,
    id: &str,
    limits: SessionLimits,
    now: i64,
) -> Result<Option<SessionRecord>, Error> {
    let key = digest(id);
    let Some(mut s) = get::<SessionRecord>(store, AccessKind::Session, &key).await? else {
        return Ok(None);
    };
    if now - s.last_seen > limits.idle || now - s.created_at > limits.absolute {
        store.delete_record(AccessKind::Session, &key).await?;
        return Ok(None);
    }
    if now - s.last_seen > 60 {
        s.last_seen = now;
        put(store, AccessKind::Session, &key, &s, false).await?;
    }
    Ok(Some(s))
}

pub async fn end_session(store: &dyn AccessStore, id: &str) -> Result<(), Error> {
    store.delete_record(AccessKind::Session, &digest(id)).await
}

/// Creates a token; returns its record and the secret, which is shown once and never stored.
pub async fn create_token(
    store: &dyn AccessStore,
    name: &str,
    role: Role,
    policies: Vec<String>,
    created_by: &str,
    now: i64,
) -> Result<(TokenRecord, String), Error> {
    check_name("token name", name)?;
    let secret = format!("apxc_{}", random_secret());
    let key = digest(&secret);
    let record = TokenRecord {
        id: key[..16].to_string(),
        name: name.to_string(),
        role,
        policies,
        created_at: now,
        created_by: created_by.to_string(),
        last_used_at: None,
        revoked_at: None,
    };
    put(store, AccessKind::Token, &key, &record, true).await?;
    Ok((record, secret))
}

/// The principal a bearer token stands for, if it is known and not revoked. Its last use is
/// recorded at most once a minute.
pub async fn token_principal(
    store: &dyn AccessStore,
    secret: &str,
    now: i64,
) -> Result<Option<Principal>, Error> {
    let key = digest(secret);
    let Some(mut t) = get::<TokenRecord>(store, AccessKind::Token, &key).await? else {
        return Ok(None);
    };
    if t.revoked_at.is_some() {
        return Ok(None);
    }
    if t.last_used_at.is_none_or(|at| now - at > 60) {
        t.last_used_at = Some(now);
        put(store, AccessKind::Token, &key, &t, false).await?;
    }
    Ok(Some(Principal {
        name: t.name,
        role: t.role,
        policies: t.policies,
        via: SignIn::Token,
    }))
}

/// Every token (revoked ones too), newest first, with its storage key.
pub async fn tokens(store: &dyn AccessStore) -> Result<Vec<(String, TokenRecord)>, Error> {
    let mut out = Vec::new();
    for (key, json) in store.list_records(AccessKind::Token).await? {
        let t: TokenRecord = serde_json::from_str(&json).map_err(|e| Error::Corrupt {
            store: "access",
            key: key.clone(),
            detail: e.to_string(),
        })?;
        out.push((key, t));
    }
    out.sort_by_key(|(_, t)| std::cmp::Reverse(t.created_at));
    Ok(out)
}

/// Revokes the token with public id `id`; returns its storage key (the digest of the secret),
/// or `None` if there is no such token.
pub async fn revoke_token(
    store: &dyn AccessStore,
    id: &str,
    now: i64,
) -> Result<Option<String>, Error> {
    for (key, mut t) in tokens(store).await? {
        if t.id == id {
            if t.revoked_at.is_none() {
                t.revoked_at = Some(now);
                put(store, AccessKind::Token, &key, &t, false).await?;
            }
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// A random secret shared by every replica of this store, created by whichever asks first.
pub async fn shared_secret(store: &dyn AccessStore, name: &str) -> Result<String, Error> {
    if let Some(s) = store.get_record(AccessKind::Secret, name).await? {
        return Ok(s);
    }
    match store
        .put_record(AccessKind::Secret, name, &random_secret(), true)
        .await
    {
        Ok(()) | Err(Error::RecordExists(_)) => store
            .get_record(AccessKind::Secret, name)
            .await?
            .ok_or_else(|| Error::Unavailable {
                store: "access",
                detail: format!("the shared secret '{name}' vanished"),
            }),
        Err(e) => Err(e),
    }
}

/// Every account, by name.
pub async fn accounts(store: &dyn AccessStore) -> Result<Vec<Account>, Error> {
    store
        .list_records(AccessKind::Account)
        .await?
        .into_iter()
        .map(|(key, json)| {
            serde_json::from_str(&json).map_err(|e| Error::Corrupt {
                store: "access",
                key,
                detail: e.to_string(),
            })
        })
        .collect()
}

/// Deletes an account and ends every session it has (on every replica: the sessions are in
/// the store). Returns how many sessions ended, or `None` if there is no such account.
pub async fn delete_account(store: &dyn AccessStore, name: &str) -> Result<Option<usize>, Error> {
    if account(store, name).await?.is_none() {
        return Ok(None);
    }
    store.delete_record(AccessKind::Account, name).await?;
    let mut ended = 0;
    for (key, json) in store.list_records(AccessKind::Session).await? {
        let Ok(s) = serde_json::from_str::<SessionRecord>(&json) else {
            continue;
        };
        if s.principal.via == SignIn::Password && s.principal.name == name {
            store.delete_record(AccessKind::Session, &key).await?;
            ended += 1;
        }
    }
    Ok(Some(ended))
}
