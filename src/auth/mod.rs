//! Accounts, roles and the audit log (s2.1, s2.3.1-2.3.2, s3.2 of the manual):
//! `users` (accounts, tokens stored as SHA-256 only), `policy` (the one function that
//! decides who may do what), `audit` (the hash-chained log of every mutating and
//! every refused request), `summary` (unacknowledged events per priority).
//!
//! Every source of writes (embedded CLI, HTTP, GitOps) acts as an `Actor`: it asks
//! `Actor::authorize` before a write (a refusal is recorded and returned) and
//! `Actor::record` after it (before answering). Embedded mode acts as the local
//! administrator `admin`: whoever can open the data directory owns the store anyway,
//! so its permissions are the boundary.

pub mod audit;
pub mod manage;
pub mod policy;
pub mod summary;
pub mod users;

pub use audit::{Draft, Outcome, Source};
pub use policy::{decide, target_of, targets_of, Denied, Target, Verb};
pub use users::{Role, User};

use crate::store::{Store, StoreError};

/// A refusal or a failure to record one.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The user lacks a right.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The store failed (the audit record could not be written).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who makes a request, and through what.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// The user.
    pub user: User,
    /// Where the request came from.
    pub source: Source,
}

impl Actor {
    /// The local administrator of embedded mode.
    pub fn local() -> Actor {
        Actor { user: User::local_admin(), source: Source::Cli }
    }

    /// An audit record of this actor.
    pub fn draft(&self, verb: Verb, t: &Target, result: Outcome, reason: impl Into<String>) -> Draft {
        Draft {
            user: self.user.name.clone(),
            source: self.source,
            verb: verb.as_str().into(),
            kind: t.kind_str(verb),
            name: t.name.clone(),
            server_units: t.server_units.clone(),
            result,
            reason: reason.into(),
        }
    }

    /// Decides every target; when any is refused, records a `denied` record per
    /// refused target (durably) and returns the first refusal.
    pub fn authorize(&self, store: &dyn Store, verb: Verb, targets: &[Target]) -> Result<(), AuthError> {
        let refused: Vec<(Denied, &Target)> =
            targets.iter().filter_map(|t| decide(&self.user, verb, t).err().map(|d| (d, t))).collect();
        let Some((first, _)) = refused.first().cloned() else { return Ok(()) };
        let drafts = refused
            .iter()
            .map(|(d, t)| self.draft(verb, t, Outcome::Denied, format!("missing {}", d.missing)))
            .collect();
        audit::append(store, drafts)?;
        Err(first.into())
    }

    /// Records the result of a request on every target, durably.
    pub fn record(
        &self,
        store: &dyn Store,
        verb: Verb,
        targets: &[Target],
        result: Outcome,
        reason: &str,
    ) -> Result<(), StoreError> {
        audit::append(store, targets.iter().map(|t| self.draft(verb, t, result, reason)).collect())?;
        Ok(())
    }

    /// Records a store call's result on its targets: ok with `ok_reason`, or the
    /// error's outcome and message.
    pub fn finish<T>(
        &self,
        store: &dyn Store,
        verb: Verb,
        targets: &[Target],
        r: Result<T, StoreError>,
        ok_reason: impl FnOnce(&T) -> String,
    ) -> Result<T, StoreError> {
        match r {
            Ok(v) => {
                self.record(store, verb, targets, Outcome::Ok, &ok_reason(&v))?;
                Ok(v)
            }
            Err(e) => {
                self.record(store, verb, targets, Outcome::of(&e), &short(&e.to_string()))?;
                Err(e)
            }
        }
    }
}

/// A reason cut to 200 characters (the log keeps short reasons).
pub fn short(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    match first.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &first[..i]),
        None => first.to_string(),
    }
}
