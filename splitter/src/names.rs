//! Validated names: policies, tenants, versions, salts and actors.

use crate::error::{Error, Result};
use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

fn control_char(s: &str) -> Option<usize> {
    s.chars().position(char::is_control)
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $validate:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($inner);

        impl $name {
            /// Validates `value`; the error says which rule it breaks.
            pub fn new(value: impl AsRef<str>) -> Result<Self> {
                let value = value.as_ref();
                $validate(value)?;
                Ok($name(<$inner>::from(value)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $name::new(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// A policy name: 1–100 characters of `a-z 0-9 - _ .`, starting with a letter or digit.
    /// Such a name is a valid Firestore document id and needs no escaping in a URL path.
    PolicyName, String, validate_policy_name
);
string_newtype!(
    /// A tenant id: 1–256 bytes of UTF-8 without control characters.
    TenantId, String, validate_tenant_id
);
string_newtype!(
    /// A version label such as `v2` or `2024.06.1+build7`: 1–128 characters of
    /// `A-Z a-z 0-9 . _ - + :`. `latest` is reserved: it asks the splitter to decide.
    Version, Arc<str>, validate_version
);
string_newtype!(
    /// Who made a change: 1–256 bytes without control characters (an e-mail or a service name).
    Actor, String, validate_actor
);

/// The version a policy without config resolves to, and the one callers send to ask for a decision.
pub const LATEST: &str = "latest";

impl Version {
    /// The shared `latest` label (not a valid configured version).
    pub fn latest() -> Version {
        Version(Arc::from(LATEST))
    }
}

fn validate_policy_name(s: &str) -> Result<()> {
    let bad = |m: String| Err(Error::invalid("policy name", m));
    if s.is_empty() {
        return bad("is empty".into());
    }
    if s.len() > 100 {
        return bad(format!(
            "is {} characters long; at most 100 are allowed",
            s.len()
        ));
    }
    if !s.as_bytes()[0].is_ascii_lowercase() && !s.as_bytes()[0].is_ascii_digit() {
        return bad(format!(
            "'{}' must start with a lowercase letter or a digit",
            s.escape_debug()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return bad(format!(
            "'{}' contains '{}': use lowercase letters, digits, '-', '_' and '.'",
            s.escape_debug(),
            c.escape_debug()
        ));
    }
    Ok(())
}

/// Whether `s` follows the tenant rules, without allocating (the request path uses this).
pub fn tenant_is_valid(s: &str) -> bool {
    // Printable ASCII is the common case and needs no char decoding.
    !s.is_empty()
        && s.len() <= 256
        && (s.bytes().all(|b| (0x20..0x7f).contains(&b)) || control_char(s).is_none())
}

fn validate_tenant_id(s: &str) -> Result<()> {
    let bad = |m: String| Err(Error::invalid("tenant id", m));
    if s.is_empty() {
        return bad("is empty".into());
    }
    if s.len() > 256 {
        return bad(format!(
            "is {} bytes long; at most 256 are allowed",
            s.len()
        ));
    }
    if let Some(i) = control_char(s) {
        return bad(format!(
            "'{}' contains a control character at position {}",
            s.escape_debug(),
            i + 1
        ));
    }
    Ok(())
}

fn validate_version(s: &str) -> Result<()> {
    let bad = |m: String| Err(Error::invalid("version", m));
    if s.is_empty() {
        return bad("is empty".into());
    }
    if s.len() > 128 {
        return bad(format!(
            "is {} characters long; at most 128 are allowed",
            s.len()
        ));
    }
    if s == LATEST {
        return bad("'latest' is reserved (it asks the splitter to choose); name the version itself, e.g. v2".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | ':')))
    {
        return bad(format!(
            "'{}' contains '{}': use letters, digits, '.', '_', '-', '+' and ':'",
            s.escape_debug(),
            c.escape_debug()
        ));
    }
    Ok(())
}

fn validate_actor(s: &str) -> Result<()> {
    let bad = |m: String| Err(Error::invalid("actor", m));
    if s.trim().is_empty() {
        return bad("is empty: say who makes the change".into());
    }
    if s.len() > 256 {
        return bad(format!(
            "is {} bytes long; at most 256 are allowed",
            s.len()
        ));
    }
    if control_char(s).is_some() {
        return bad(format!(
            "'{}' contains a control character",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// Validates a salt: 1–256 bytes without control characters.
pub fn validate_salt(s: &str) -> Result<()> {
    let bad = |m: String| Err(Error::invalid("salt", m));
    if s.is_empty() {
        return bad("is empty".into());
    }
    if s.len() > 256 {
        return bad(format!(
            "is {} bytes long; at most 256 are allowed",
            s.len()
        ));
    }
    if control_char(s).is_some() {
        return bad(format!(
            "'{}' contains a control character",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// Validates a change reason: at most 1000 characters, no control characters but newlines.
pub fn validate_reason(s: &str) -> Result<()> {
    if s.chars().count() > 1000 {
        return Err(Error::invalid("reason", "is longer than 1000 characters"));
    }
    if s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid("reason", "contains a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        for ok in ["payment-api", "a", "v2.search_api", "0day"] {
            PolicyName::new(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("Payment", "start with"),
            ("pay/ment", "contains '/'"),
            ("..", "start with"),
            ("__x__", "start with"),
            ("pay ment", "contains ' '"),
            ("pay%20", "contains '%'"),
            ("ünicode", "start with"),
        ] {
            let e = PolicyName::new(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(PolicyName::new("a".repeat(101)).is_err());
        PolicyName::new("a".repeat(100)).unwrap();
    }

    #[test]
    fn tenant_ids() {
        TenantId::new("über gmbh, inc.").unwrap();
        TenantId::new("x".repeat(256)).unwrap();
        assert!(TenantId::new("x".repeat(257))
            .unwrap_err()
            .to_string()
            .contains("257 bytes"));
        assert!(TenantId::new("").is_err());
        assert!(TenantId::new("a\tb")
            .unwrap_err()
            .to_string()
            .contains("control character at position 2"));
        assert!(TenantId::new("a\u{7f}").is_err());
    }

    #[test]
    fn versions() {
        Version::new("v2").unwrap();
        Version::new("2024.06.1+build7").unwrap();
        assert!(Version::new("latest")
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        assert!(Version::new("v 2").is_err());
        assert!(Version::new("").is_err());
    }
}
