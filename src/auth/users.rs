//! Accounts: a name, a role and, for operators, individual rights on named BS2000
//! systems (VMs) and server units. Scope is always the whole management cluster
//! (s2.1: "Limitation to one SE Server is not possible").
//!
//! Each user has a token of 32 random bytes (hex), shown once when it is made; the
//! store keeps only its SHA-256. Users live in the store's state entries
//! (`users/<name>`, written with `commit_batch` together with their audit record), so
//! every backend keeps them. `admin` is made at first start from the token in the
//! data directory's `token` file (today's token, so existing clients keep working).

use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The user every first start creates.
pub const ADMIN: &str = "admin";
/// State key prefix of users.
pub const PREFIX: &str = "users/";

/// The three roles of SE Manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, including servers, clusters and users.
    Administrator,
    /// BS2000 administrator: all BS2000 systems (VMs) and their migrations.
    #[value(name = "bs2000-admin")]
    #[serde(rename = "bs2000-admin")]
    Bs2000Admin,
    /// Individual rights on named systems and server units.
    Operator,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Administrator => "administrator",
            Role::Bs2000Admin => "bs2000-admin",
            Role::Operator => "operator",
        })
    }
}

/// A user as stored (the token only as its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Systems (VMDefinition names) an operator has rights on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub systems: Vec<String>,
    /// Server units an operator has rights on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_units: Vec<String>,
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
    /// When it was made (RFC 3339).
    pub created: String,
}

impl User {
    /// The user without the token hash, for lists.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "role": self.role, "systems": self.systems,
            "serverUnits": self.server_units, "created": self.created,
        })
    }

    /// The local administrator of embedded mode (no token: the data directory's
    /// permissions are the boundary).
    pub fn local_admin() -> User {
        User {
            name: ADMIN.into(),
            role: Role::Administrator,
            systems: vec![],
            server_units: vec![],
            token_sha256: String::new(),
            created: String::new(),
        }
    }
}

/// What can go wrong with users.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No such user.
    #[error("user {0:?} not found")]
    NotFound(String),
    /// The name is taken.
    #[error("user {0:?} already exists")]
    Exists(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new token: 32 random bytes from the system's generator, hex.
pub fn new_token() -> String {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut b).expect("the system random generator failed");
    hex(&b)
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a user name: 1 to 63 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "user name {name:?}: expected 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        )))
    }
}

/// Checks the rights given with a role: only operators carry individual rights.
pub fn check_rights(role: Role, systems: &[String], sus: &[String]) -> Result<(), UserError> {
    if role != Role::Operator && (!systems.is_empty() || !sus.is_empty()) {
        return Err(UserError::Invalid(format!(
            "--systems and --server-units are for operators; a {role} has rights on all systems"
        )));
    }
    for s in systems.iter().chain(sus) {
        let ok = !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(UserError::Invalid(format!("right {s:?}: expected a system or server unit name")));
        }
    }
    Ok(())
}

/// All users, by name. An entry that cannot be read is an error naming it.
pub fn list(store: &dyn Store) -> Result<Vec<User>, UserError> {
    store
        .read_state(PREFIX)?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| UserError::Store(StoreError::Backend(format!("stored user {k} cannot be read: {e}"))))
        })
        .collect()
}

/// One user.
pub fn get(store: &dyn Store, name: &str) -> Result<Option<User>, UserError> {
    Ok(list(store)?.into_iter().find(|u| u.name == name))
}

/// The user a token belongs to (hashes compared in constant time).
pub fn by_token(store: &dyn Store, token: &str) -> Result<Option<User>, UserError> {
    let h = hash_token(token);
    Ok(list(store)?.into_iter().find(|u| same(u.token_sha256.as_bytes(), h.as_bytes())))
}

/// The state write that stores `u`.
pub fn put(u: &User) -> (String, Option<Vec<u8>>) {
    (format!("{PREFIX}{}", u.name), Some(serde_json::to_vec(u).expect("a user serialises")))
}

/// The state write that removes user `name`.
pub fn remove(name: &str) -> (String, Option<Vec<u8>>) {
    (format!("{PREFIX}{name}"), None)
}

/// A new user record and its token (not yet stored).
pub fn make(name: &str, role: Role, systems: Vec<String>, sus: Vec<String>) -> Result<(User, String), UserError> {
    check_name(name)?;
    check_rights(role, &systems, &sus)?;
    let token = new_token();
    let u = User {
        name: name.into(),
        role,
        systems,
        server_units: sus,
        token_sha256: hash_token(&token),
        created: crate::store::now_rfc3339(),
    };
    Ok((u, token))
}

/// Makes `admin` from `token` when there is no `admin` yet (first start). When `admin`
/// exists with another token, the token file is stale: said once in the log.
pub fn ensure_admin(store: &dyn Store, token: &str) -> Result<(), UserError> {
    let _g = super::audit::lock();
    ensure_admin_locked(store, token)
}

fn ensure_admin_locked(store: &dyn Store, token: &str) -> Result<(), UserError> {
    match get(store, ADMIN)? {
        Some(u) if u.token_sha256 != hash_token(token) => {
            tracing::warn!("the token file does not hold admin's current token (rotated through the API?)");
            Ok(())
        }
        Some(_) => Ok(()),
        None => {
            let u = User {
                name: ADMIN.into(),
                role: Role::Administrator,
                systems: vec![],
                server_units: vec![],
                token_sha256: hash_token(token),
                created: crate::store::now_rfc3339(),
            };
            // Absent when written: replicas starting together make one admin, not two
            // (the loser finds the winner's on its next try).
            let (key, bytes) = put(&u);
            let expect = vec![(key.clone(), None)];
            let b = crate::store::Batch { state: vec![(key, bytes)], durable: true, expect, ..Default::default() };
            match store.commit_batch(b) {
                Err(StoreError::StateChanged { .. }) => ensure_admin_locked(store, token),
                r => r.map(|_| ()).map_err(UserError::from),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }

    #[test]
    fn names_and_rights_checked() {
        assert!(check_name("bob").is_ok());
        assert!(check_name("Bob").is_err() && check_name("").is_err() && check_name("-x").is_err());
        assert!(check_rights(Role::Administrator, &["vm1".into()], &[]).is_err());
        assert!(check_rights(Role::Operator, &["vm1".into()], &["SU1".into()]).is_ok());
        assert!(check_rights(Role::Operator, &["a b".into()], &[]).is_err());
    }

    #[test]
    fn roles_spelled_as_the_api_says() {
        assert_eq!(serde_json::to_value(Role::Bs2000Admin).unwrap(), "bs2000-admin");
        assert_eq!(Role::Bs2000Admin.to_string(), "bs2000-admin");
    }
}
