//! The crate's one error type. Every message is a sentence an operator can act on.

use crate::config::PolicyConfig;

/// Everything that can go wrong in the splitter, from a bad input to a store outage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value given by a person or a file does not follow the rules; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },

    /// The operation is valid input but not allowed in the policy's current state.
    #[error("{0}")]
    NotAllowed(String),

    /// The change would leave the policy exactly as it is.
    #[error("nothing to change: {0}")]
    NoChange(String),

    #[error("policy '{0}' does not exist")]
    NotFound(String),

    #[error("policy '{0}' already exists")]
    AlreadyExists(String),

    /// An access record (an account, a token) with this key exists already.
    #[error("'{0}' already exists")]
    RecordExists(String),

    /// Optimistic concurrency: the write was based on a revision that is no longer current.
    #[error("{}", conflict_message(policy, *expected, current.as_deref()))]
    Conflict {
        policy: String,
        /// The revision the writer based its change on (`None`: it expected no policy).
        expected: Option<u64>,
        /// What the store holds now (`None`: the policy was deleted meanwhile).
        current: Option<Box<PolicyConfig>>,
    },

    /// The store could not be reached or failed; nothing was written.
    #[error("the {store} store is unavailable ({detail}); nothing was written, try again")]
    Unavailable { store: &'static str, detail: String },

    /// The store holds data this version cannot read.
    #[error("the {store} store holds unreadable data for '{key}': {detail}")]
    Corrupt {
        store: &'static str,
        key: String,
        detail: String,
    },
}

fn conflict_message(policy: &str, expected: Option<u64>, current: Option<&PolicyConfig>) -> String {
    let based_on = match expected {
        Some(rev) => format!("your change was based on revision {rev}"),
        None => "you expected it not to exist".to_string(),
    };
    match current {
        Some(c) => format!(
            "policy '{policy}' was changed by {} at {} (now revision {}; {based_on}); nothing was written: reload it and decide again",
            c.updated_by, c.updated_at, c.revision
        ),
        None => format!(
            "policy '{policy}' was deleted meanwhile ({based_on}); nothing was written"
        ),
    }
}

impl Error {
    /// A bad value in `field`, with a message that says what is wrong and what would do.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
