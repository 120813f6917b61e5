//! User changes (add, delete, rotate), each authorized and written in one store batch
//! with its audit record, under the audit lock (so a name is checked and taken
//! atomically within the process that holds the store). Across processes sharing an
//! etcd (`serve` replicas), each change reads the audit head first, checks the users,
//! and commits only if the head has not moved (`audit::Tx`); otherwise it checks again.
//! So a name is taken once, and the last administrator is never deleted by two
//! replicas at once. The embedded CLI and the HTTP API both call these.

use super::audit::{self, Outcome};
use super::users::{self, Role, User, UserError, ADMIN};
use super::{Actor, AuthError, Target, Verb};
use crate::store::Store;

/// What a user change can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// Refused (recorded).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Not found, taken, bad input, store (recorded as invalid/conflict).
    #[error(transparent)]
    User(#[from] UserError),
}

fn target(name: &str) -> Target {
    Target::other(name)
}

/// Records a failed change and returns the error.
fn failed(store: &dyn Store, who: &Actor, verb: &str, name: &str, e: UserError) -> ManageError {
    let result = match e {
        UserError::Exists(_) => Outcome::Conflict,
        _ => Outcome::Invalid,
    };
    let mut d = who.draft(Verb::Users, &target(name), result, super::short(&e.to_string()));
    d.verb = verb.into();
    match audit::append_locked(store, vec![d], vec![], audit::DEFAULT_RETENTION) {
        Ok(_) => e.into(),
        Err(se) => UserError::Store(se).into(),
    }
}

fn commit(
    store: &dyn Store,
    tx: audit::Tx,
    who: &Actor,
    verb: &str,
    name: &str,
    reason: String,
    write: (String, Option<Vec<u8>>),
) -> Result<(), UserError> {
    let mut d = who.draft(Verb::Users, &target(name), Outcome::Ok, reason);
    d.verb = verb.into();
    audit::append_after(store, tx, vec![d], vec![write], audit::DEFAULT_RETENTION)?;
    Ok(())
}

/// Runs a change again while another process moved the audit head first.
fn retrying<T>(f: impl FnMut() -> Result<T, ManageError>) -> Result<T, ManageError> {
    audit::retrying(f, |e| matches!(e, ManageError::User(UserError::Store(se)) if audit::changed_first(se)))
}

fn begin(store: &dyn Store) -> Result<audit::Tx, ManageError> {
    Ok(audit::Tx::begin(store).map_err(UserError::Store)?)
}

fn authorize(store: &dyn Store, who: &Actor, name: &str) -> Result<(), ManageError> {
    who.authorize(store, Verb::Users, &[target(name)])?;
    Ok(())
}

/// `user add`: the new user and its token (shown once; only its hash is stored).
pub fn add(
    store: &dyn Store,
    who: &Actor,
    name: &str,
    role: Role,
    systems: Vec<String>,
    sus: Vec<String>,
) -> Result<(User, String), ManageError> {
    authorize(store, who, name)?;
    let _g = audit::lock();
    retrying(|| {
        let tx = begin(store)?;
        let made = users::make(name, role, systems.clone(), sus.clone()).and_then(|m| match users::get(store, name)? {
            Some(_) => Err(UserError::Exists(name.into())),
            None => Ok(m),
        });
        let (u, token) = made.map_err(|e| failed(store, who, "user-add", name, e))?;
        commit(store, tx, who, "user-add", name, format!("role {}", u.role), users::put(&u))?;
        Ok((u, token))
    })
}

/// `user delete`: never the last administrator.
pub fn delete(store: &dyn Store, who: &Actor, name: &str) -> Result<User, ManageError> {
    authorize(store, who, name)?;
    let _g = audit::lock();
    retrying(|| delete_once(store, who, name))
}

fn delete_once(store: &dyn Store, who: &Actor, name: &str) -> Result<User, ManageError> {
    let tx = begin(store)?;
    let found = (|| {
        let all = users::list(store)?;
        let u = all.iter().find(|u| u.name == name).cloned().ok_or_else(|| UserError::NotFound(name.into()))?;
        let admins = all.iter().filter(|x| x.role == Role::Administrator).count();
        if u.role == Role::Administrator && admins == 1 {
            return Err(UserError::Invalid(format!("{name} is the last administrator; add another one first")));
        }
        Ok(u)
    })();
    let u = found.map_err(|e| failed(store, who, "user-delete", name, e))?;
    commit(store, tx, who, "user-delete", name, "deleted".into(), users::remove(name))?;
    Ok(u)
}

/// `user rotate`: a new token; the old one stops working at once.
pub fn rotate(store: &dyn Store, who: &Actor, name: &str) -> Result<(User, String), ManageError> {
    authorize(store, who, name)?;
    let _g = audit::lock();
    retrying(|| {
        let tx = begin(store)?;
        let found = users::get(store, name).and_then(|u| u.ok_or_else(|| UserError::NotFound(name.into())));
        let mut u = found.map_err(|e| failed(store, who, "user-rotate", name, e))?;
        let token = users::new_token();
        u.token_sha256 = users::hash_token(&token);
        commit(store, tx, who, "user-rotate", name, "token rotated".into(), users::put(&u))?;
        Ok((u, token))
    })
}

/// Whether `name` is the user whose token lives in the data directory's files.
pub fn is_file_admin(name: &str) -> bool {
    name == ADMIN
}
