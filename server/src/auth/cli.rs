//! `apx-canary user add` and `apx-canary token add`: the first admin without a browser, and
//! tokens for automation.

use super::records::{self, Account};
use super::{credentials, now};
use app::access::Role;
use splitter::store::access::AccessStore;

fn role(text: &str, allow_service: bool) -> Result<Role, String> {
    match Role::from_key(text) {
        Some(Role::Service) if !allow_service => {
            Err("--role service is for tokens only: use `apx-canary token add`".into())
        }
        Some(r) => Ok(r),
        None => Err(format!(
            "--role '{text}': choose viewer, operator, admin{}",
            if allow_service { " or service" } else { "" }
        )),
    }
}

pub async fn add_user(
    store: &dyn AccessStore,
    name: &str,
    role_text: &str,
    policies: &str,
    password: &str,
) -> Result<(), String> {
    let role = role(role_text, false)?;
    credentials::check_password_rules(password)?;
    let account = Account {
        name: name.trim().to_lowercase(),
        password_hash: credentials::hash_password(password),
        role,
        policies: records::parse_patterns(policies).map_err(|e| e.to_string())?,
        created_at: now(),
        created_by: "command line".into(),
    };
    records::create_account(store, &account)
        .await
        .map_err(|e| e.to_string())
}

pub async fn add_token(
    store: &dyn AccessStore,
    name: &str,
    role_text: &str,
    policies: &str,
) -> Result<String, String> {
    let role = role(role_text, true)?;
    let policies = records::parse_patterns(policies).map_err(|e| e.to_string())?;
    let (_, secret) = records::create_token(store, name, role, policies, "command line", now())
        .await
        .map_err(|e| e.to_string())?;
    Ok(secret)
}

/// `apx-canary user list`: one line per account.
pub async fn list_users(store: &dyn AccessStore) -> Result<String, String> {
    let mut out = String::new();
    for a in records::accounts(store).await.map_err(|e| e.to_string())? {
        let policies = if a.policies.is_empty() {
            "all policies".to_string()
        } else {
            a.policies.join(", ")
        };
        out += &format!(
            "{}\t{}\t{}\tcreated by {}\n",
            a.name, a.role, policies, a.created_by
        );
    }
    Ok(out)
}

/// `apx-canary user delete NAME`: the account goes, and so do its sessions and its tokens.
pub async fn delete_user(store: &dyn AccessStore, name: &str) -> Result<String, String> {
    match records::delete_account(store, name, crate::auth::now())
        .await
        .map_err(|e| e.to_string())?
    {
        Some(d) => Ok(format!(
            "account '{name}' deleted; {} session(s) ended, {} token(s) it created revoked",
            d.sessions, d.tokens
        )),
        None => Err(format!("there is no account '{name}'")),
    }
}
