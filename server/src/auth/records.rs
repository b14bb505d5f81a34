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

/// What deleting an account ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub sessions: usize,
    /// Tokens the account had created: revoked with it, so that a departed admin's automation
    /// does not outlive the account.
    pub tokens: usize,
}

/// Deletes an account, ends every session it has (on every replica: the sessions are in the
/// store) and revokes the tokens it created. `None` if there is no such account.
pub async fn delete_account(
    store: &dyn AccessStore,
    name: &str,
    now: i64,
) -> Result<Option<Deleted>, Error> {
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
    let creator = Principal {
        name: name.to_string(),
        role: Role::Viewer,
        policies: vec![],
        via: SignIn::Password,
    }
    .actor();
    let mut revoked = 0;
    for (key, mut t) in tokens(store).await? {
        if t.created_by == creator && t.revoked_at.is_none() {
            t.revoked_at = Some(now);
            put(store, AccessKind::Token, &key, &t, false).await?;
            revoked += 1;
        }
    }
    Ok(Some(Deleted {
        sessions: ended,
        tokens: revoked,
    }))
}

/// Failed sign-ins per account, shared by every replica: in each fixed window (the limiter's
/// length, counted from the Unix epoch) an account has `limit` failure slots, records
/// `{window}-{slot}-{account}` written create-only. An attempt takes a slot before its password
/// is checked and gives it back only when the password was right, so however many replicas
/// race, at most `limit` passwords are checked per account and window. (Across a window's end
/// an attacker gets at most twice the limit in a short time; each replica's own sliding window
/// still applies.)
pub fn failure_window(now: i64, window_secs: i64) -> i64 {
    now.div_euclid(window_secs.max(1))
}

fn failure_key(window: i64, slot: usize, account: &str) -> String {
    format!("{window}-{slot}-{account}")
}

/// Takes one of `account`'s `limit` failure slots in `window`, trying `start` first and then
/// the others in turn (one create-only write each): `Ok(Some(slot))`, or `Ok(None)` when all
/// are taken (the account is locked until the window ends).
pub async fn reserve_failure_slot(
    store: &dyn AccessStore,
    account: &str,
    window: i64,
    limit: usize,
    start: usize,
    now: i64,
) -> Result<Option<usize>, Error> {
    let json = format!("{{\"at\":{now}}}");
    for i in 0..limit {
        let slot = (start + i) % limit;
        let key = failure_key(window, slot, account);
        match store
            .put_record(AccessKind::SignInFailure, &key, &json, true)
            .await
        {
            Ok(()) => return Ok(Some(slot)),
            Err(Error::RecordExists(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Gives a failure slot back (the password was right, or was never checked).
pub async fn release_failure_slot(
    store: &dyn AccessStore,
    account: &str,
    window: i64,
    slot: usize,
) -> Result<(), Error> {
    store
        .delete_record(
            AccessKind::SignInFailure,
            &failure_key(window, slot, account),
        )
        .await
}

/// Deletes the failure slots of windows that ended before the previous one (the previous one
/// is kept for replicas whose clock is a little behind); returns how many.
pub async fn sweep_failures(store: &dyn AccessStore, window: i64) -> Result<usize, Error> {
    let mut deleted = 0;
    for (key, _) in store.list_records(AccessKind::SignInFailure).await? {
        let old = key
            .split('-')
            .next()
            .and_then(|w| w.parse::<i64>().ok())
            .is_none_or(|w| w < window - 1);
        if old {
            store.delete_record(AccessKind::SignInFailure, &key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The one-time setup link. Each printed link is a record `setup-<digest of its token>`
/// (kind `Secret`, so every replica knows it) with its expiry. A link works while it has not
/// expired, no account exists and nobody has claimed the setup: the one post that writes the
/// create-only claim `setup-claimed` first creates the admin, on whichever replica; the others
/// are refused. The claim stays after the admin is created (a later setup goes through
/// `apx-canary user add --admin`); it is removed only when creating the admin failed.
#[derive(Debug, Serialize, Deserialize)]
struct SetupLink {
    expires: i64,
}

const SETUP_CLAIM: &str = "setup-claimed";
const SETUP_PREFIX: &str = "setup-";

fn setup_key(token: &str) -> String {
    format!("{SETUP_PREFIX}{}", digest(token))
}

/// A new setup link's token, valid for `valid_secs`, when no account exists and no setup was
/// claimed; `None` otherwise.
pub async fn create_setup_link(
    store: &dyn AccessStore,
    now: i64,
    valid_secs: i64,
) -> Result<Option<String>, Error> {
    if has_accounts(store).await? {
        return Ok(None);
    }
    if store
        .get_record(AccessKind::Secret, SETUP_CLAIM)
        .await?
        .is_some()
    {
        tracing::warn!(
            "no account exists, but the setup link was used before (the accounts were deleted, \
             or creating the admin failed half-way): create an admin with \
             `apx-canary user add --admin NAME`"
        );
        return Ok(None);
    }
    let token = random_secret();
    let link = SetupLink {
        expires: now + valid_secs,
    };
    put(store, AccessKind::Secret, &setup_key(&token), &link, true).await?;
    Ok(Some(token))
}

/// Whether `token` is a live setup link's: printed, not expired, not claimed, and no account
/// exists yet. (One read for a wrong token; three for the right one.)
pub async fn setup_link_live(
    store: &dyn AccessStore,
    token: &str,
    now: i64,
) -> Result<bool, Error> {
    if token.is_empty() || token.len() > 100 {
        return Ok(false);
    }
    let Some(link) = get::<SetupLink>(store, AccessKind::Secret, &setup_key(token)).await? else {
        return Ok(false);
    };
    Ok(now < link.expires
        && store
            .get_record(AccessKind::Secret, SETUP_CLAIM)
            .await?
            .is_none()
        && !has_accounts(store).await?)
}

/// Claims the setup (create-only): true for exactly one caller, on every replica together.
pub async fn claim_setup(store: &dyn AccessStore, now: i64) -> Result<bool, Error> {
    match store
        .put_record(
            AccessKind::Secret,
            SETUP_CLAIM,
            &format!("{{\"at\":{now}}}"),
            true,
        )
        .await
    {
        Ok(()) => Ok(true),
        Err(Error::RecordExists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the claim back: creating the admin failed, the link may be tried again.
pub async fn unclaim_setup(store: &dyn AccessStore) -> Result<(), Error> {
    store.delete_record(AccessKind::Secret, SETUP_CLAIM).await
}

/// After the admin is created: deletes every printed link's record.
pub async fn forget_setup_links(store: &dyn AccessStore) -> Result<(), Error> {
    for (key, _) in store.list_records(AccessKind::Secret).await? {
        if key.starts_with(SETUP_PREFIX) && key != SETUP_CLAIM {
            store.delete_record(AccessKind::Secret, &key).await?;
        }
    }
    Ok(())
}
