//! Where the verbs send their calls: the embedded store (reconcilers run in-process
//! after a change) or a running `sectl serve` (`--server`). Embedded writes act as
//! the local administrator and are recorded in the audit log (source `cli`) before
//! the verb reports them; a server records its own.

use crate::api::{Kind, Resource};
use crate::auth::{self, Actor, Outcome, Target, Verb};
use crate::client::Client;
use crate::controller::{Controller, Options};
use crate::store::{ApplyOutcome, Event, Store, StoreError};
use std::sync::Arc;

/// The embedded store or a server.
pub enum Backend {
    /// In-process: the store --store names (sled in --data-dir, or etcd).
    Embedded {
        /// The store.
        store: Arc<dyn Store>,
        /// Run the reconcilers after a change.
        reconcile: bool,
    },
    /// A running `sectl serve`.
    Remote(Client),
}

impl Backend {
    /// Creates or updates objects atomically.
    pub fn apply(&self, objs: Vec<Resource>, dry_run: bool) -> Result<Vec<(ApplyOutcome, Resource)>, StoreError> {
        match self {
            Backend::Embedded { store, .. } if !dry_run => {
                let who = Actor::local();
                let targets: Vec<Target> =
                    crate::timing!("apply.targets").in_scope(|| auth::targets_of(store.as_ref(), &objs));
                // Always allowed (the local administrator), decided all the same.
                let _authorize = crate::timing!("apply.authorize").entered();
                who.authorize(store.as_ref(), Verb::Apply, &targets).map_err(|e| match e {
                    auth::AuthError::Store(s) => s,
                    d => StoreError::Invalid(d.to_string()),
                })?;
                drop(_authorize);
                let r = crate::timing!("apply.store").in_scope(|| store.apply(objs, false));
                match r {
                    Ok(done) => {
                        let _audit = crate::timing!("apply.audit").entered();
                        let drafts = targets
                            .iter()
                            .zip(&done)
                            .map(|(t, (o, _))| who.draft(Verb::Apply, t, Outcome::Ok, o.to_string()))
                            .collect();
                        auth::audit::append(store.as_ref(), drafts)?;
                        Ok(done)
                    }
                    Err(e) => {
                        who.record(
                            store.as_ref(),
                            Verb::Apply,
                            &targets,
                            Outcome::of(&e),
                            &auth::short(&e.to_string()),
                        )?;
                        Err(e)
                    }
                }
            }
            Backend::Embedded { store, .. } => store.apply(objs, dry_run),
            Backend::Remote(c) => c.apply(&objs, dry_run),
        }
    }

    /// One object.
    pub fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, StoreError> {
        match self {
            Backend::Embedded { store, .. } => store.get(kind, name),
            Backend::Remote(c) => c.get(kind, name),
        }
    }

    /// All objects of a kind.
    pub fn list(&self, kind: Kind) -> Result<(Vec<Resource>, u64), StoreError> {
        match self {
            Backend::Embedded { store, .. } => store.list(kind),
            Backend::Remote(c) => c.list(kind),
        }
    }

    /// Stored objects of a kind that cannot be read (embedded store; a server logs
    /// them and leaves them out of its lists).
    pub fn unreadable(&self, kind: Kind) -> Result<Vec<crate::store::BadObject>, StoreError> {
        match self {
            Backend::Embedded { store, .. } => store.list_report(kind).map(|l| l.bad),
            Backend::Remote(_) => Ok(Vec::new()),
        }
    }

    /// Deletes one object.
    pub fn delete(&self, kind: Kind, name: &str) -> Result<Resource, StoreError> {
        match self {
            Backend::Embedded { store, .. } => {
                let who = Actor::local();
                let t = match store.get(kind, name) {
                    Ok(Some(cur)) => auth::target_of(store.as_ref(), &cur),
                    _ => Target {
                        kind: Some(kind),
                        name: name.into(),
                        system: None,
                        vm_name: None,
                        server_units: vec![],
                    },
                };
                who.finish(store.as_ref(), Verb::Delete, &[t], store.delete(kind, name), |_| "deleted".into())
            }
            Backend::Remote(c) => c.delete(kind, name),
        }
    }

    /// The event log, oldest first.
    pub fn events(&self) -> Result<Vec<Event>, StoreError> {
        match self {
            Backend::Embedded { store, .. } => store.events(),
            Backend::Remote(c) => c.events(),
        }
    }

    /// Acknowledges all events.
    pub fn ack_events(&self) -> Result<usize, StoreError> {
        match self {
            Backend::Embedded { store, .. } => {
                let t = Target::other("-");
                Actor::local()
                    .finish(store.as_ref(), Verb::Ack, &[t], store.ack_events(), |n| format!("{n} acknowledged"))
            }
            Backend::Remote(c) => c.ack(),
        }
    }

    /// A controller on the embedded store.
    pub fn controller(&self) -> anyhow::Result<Controller> {
        match self {
            Backend::Embedded { store, .. } => {
                let s: Arc<dyn Store> = store.clone();
                Controller::new(s, Options::default())
            }
            Backend::Remote(_) => anyhow::bail!("the server runs the controller"),
        }
    }

    /// Embedded mode: runs the reconcilers until the world is quiet (unless
    /// --no-reconcile), so that a change has taken effect when the verb returns. With
    /// a server, the server's controller does the work and this returns at once.
    pub fn settle(&self) -> anyhow::Result<()> {
        match self {
            Backend::Embedded { reconcile: true, .. } => self.controller()?.run_until_quiet(),
            _ => Ok(()),
        }
    }

    /// The client, with a server.
    pub fn remote(&self) -> Option<&Client> {
        match self {
            Backend::Remote(c) => Some(c),
            _ => None,
        }
    }
}
