//! Where accounts, sessions and API tokens live: a small store of JSON records by kind and
//! key, implemented by both stores so that signing out or revoking a token on one replica
//! reaches every replica that shares the store. The records' meaning (roles, expiry, hashes)
//! belongs to the server; a store only keeps them.

use crate::error::Result;

/// What an access record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessKind {
    Account,
    Session,
    Token,
    /// Keys every replica must share (e.g. the one that derives CSRF tokens behind a proxy).
    Secret,
    /// Failed sign-ins, one create-only record per failure slot, so that replicas share the
    /// per-account count without losing any to races.
    SignInFailure,
}

impl AccessKind {
    pub const ALL: [AccessKind; 5] = [
        AccessKind::Account,
        AccessKind::Session,
        AccessKind::Token,
        AccessKind::Secret,
        AccessKind::SignInFailure,
    ];

    /// The Firestore collection (and the embedded table's first key part).
    pub fn collection(self) -> &'static str {
        match self {
            AccessKind::Account => "canary_accounts",
            AccessKind::Session => "canary_sessions",
            AccessKind::Token => "canary_tokens",
            AccessKind::Secret => "canary_secrets",
            AccessKind::SignInFailure => "canary_signin_failures",
        }
    }
}

/// A store of access records. Keys are account names or hex digests (valid Firestore document
/// ids); values are JSON text.
#[async_trait::async_trait]
pub trait AccessStore: Send + Sync + 'static {
    async fn get_record(&self, kind: AccessKind, key: &str) -> Result<Option<String>>;

    /// Writes the record. With `create_only`, fails with [`crate::Error::RecordExists`] (and
    /// writes nothing) if the key is taken.
    async fn put_record(
        &self,
        kind: AccessKind,
        key: &str,
        json: &str,
        create_only: bool,
    ) -> Result<()>;

    /// Deletes the record; deleting a missing record is not an error.
    async fn delete_record(&self, kind: AccessKind, key: &str) -> Result<()>;

    /// Every record of `kind` as (key, JSON), sorted by key.
    async fn list_records(&self, kind: AccessKind) -> Result<Vec<(String, String)>>;
}
