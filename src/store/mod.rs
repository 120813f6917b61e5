//! The object store, following the Kubernetes API conventions: uid, a resourceVersion
//! from one global counter, generation bumped only by spec changes, optimistic
//! concurrency, a separate status path, watch from a resourceVersion over a bounded
//! history, and an event log.
//!
//! Callers use the `Store` trait only; `SledStore` is the embedded implementation. An
//! etcd-backed one can be added beside it without touching callers.

mod sled_store;

pub use sled_store::SledStore;

use crate::api::{Kind, Resource};
use serde::{Deserialize, Serialize};

/// What can go wrong in the store.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// No such object.
    #[error("{kind} {name} not found")]
    NotFound {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
    },
    /// Create of an object that exists.
    #[error("{kind} {name} already exists")]
    AlreadyExists {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
    },
    /// The caller's resourceVersion is stale.
    #[error("conflict: {kind} {name} has resourceVersion {actual}, the request was based on {expected}; read it again and retry")]
    Conflict {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
        /// What the caller sent.
        expected: u64,
        /// What the store has.
        actual: u64,
    },
    /// The watch history no longer reaches back to the requested resourceVersion.
    #[error("expired: resourceVersion {requested} is older than the watch history (oldest {oldest}); list again and watch from the list's resourceVersion")]
    Expired {
        /// What was asked for.
        requested: u64,
        /// Oldest resourceVersion a watch may start from.
        oldest: u64,
    },
    /// The request is not valid.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The storage engine failed.
    #[error("store: {0}")]
    Backend(String),
    /// A running server refused the request (its message as given).
    #[error("{0}")]
    Remote(String),
    /// A paged list taken at resourceVersion `at` can no longer be continued as one
    /// consistent snapshot (an object still to come changed, or the history is gone).
    #[error(
        "the list taken at resourceVersion {at} can no longer be continued: {reason}; list again without `continue`"
    )]
    SnapshotGone {
        /// The list's resourceVersion.
        at: u64,
        /// What changed.
        reason: String,
    },
}

/// Result of store calls.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WatchType {
    /// The object was created.
    Added,
    /// The object changed (spec, metadata or status).
    Modified,
    /// The object was deleted; the event carries its last state.
    Deleted,
}

/// One change of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// What happened.
    pub type_: WatchType,
    /// The resourceVersion of the change.
    pub rv: u64,
    /// The object after the change (its last state for Deleted).
    pub object: Resource,
}

/// What an apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    /// It did not exist.
    Created,
    /// It existed and its spec, labels or annotations changed.
    Configured,
    /// Nothing to do.
    Unchanged,
}

impl std::fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        })
    }
}

/// Normal or Warning, as in Kubernetes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// Informational.
    Normal,
    /// Something needs attention.
    Warning,
}

/// An entry of the event log (s2.3.3 of the manual).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Sequence number, increasing.
    pub seq: u64,
    /// When it happened (RFC 3339, simulated clock).
    pub time: String,
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub type_: EventType,
    /// Priority as the SE Manager shows it: INFO, NOTICE, WARNING, ERROR, CRITICAL.
    pub priority: String,
    /// Component that reports it: Cluster, M2000, Sys-Mgmt, VM2000, X2000, LM, ...
    pub component: String,
    /// The object, as "Kind/name", or a unit.
    pub object: String,
    /// Stable CamelCase reason.
    pub reason: String,
    /// For people.
    pub message: String,
    /// Acknowledged with `sectl events ack`.
    #[serde(default)]
    pub acknowledged: bool,
}

/// One page of a list (`Store::list_page`).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Objects, sorted by name.
    pub items: Vec<Resource>,
    /// The resourceVersion of the snapshot the page belongs to.
    pub rv: u64,
    /// Objects after the last item remain.
    pub more: bool,
}

/// One page of a list as each object's stored JSON (`Store::list_page_json`): what a
/// streamed list sends without decoding and encoding every object again.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPage {
    /// (name, the object as JSON), sorted by name.
    pub items: Vec<(String, Vec<u8>)>,
    /// The resourceVersion of the snapshot the page belongs to.
    pub rv: u64,
    /// Objects after the last item remain.
    pub more: bool,
}

/// The store's interface. Writes of what users own (create, update, delete, apply,
/// ack, blobs) are durable when the call returns; status writes and event records are
/// atomic and become durable within half a second or with the next durable write.
pub trait Store: Send + Sync {
    /// One object.
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>>;
    /// All objects of a kind, sorted by name, and the resourceVersion of the list.
    fn list(&self, kind: Kind) -> Result<(Vec<Resource>, u64)>;
    /// Creates an object; sets uid, resourceVersion, generation 1, creationTimestamp,
    /// and an empty status.
    fn create(&self, obj: Resource) -> Result<Resource>;
    /// Updates spec, labels and annotations (never status). A set
    /// `metadata.resourceVersion` must match the stored one (else Conflict). Generation
    /// moves only when the spec changes; an update that changes nothing writes nothing.
    fn update(&self, obj: Resource) -> Result<Resource>;
    /// Writes the status only (never spec). A set resourceVersion must match. A status
    /// equal to the stored one writes nothing, so controllers do not wake themselves.
    fn update_status(&self, obj: Resource) -> Result<Resource>;
    /// Deletes an object; returns its last state.
    fn delete(&self, kind: Kind, name: &str) -> Result<Resource>;
    /// Creates or updates all objects atomically (one batch, flushed), or none. With
    /// `dry_run`, computes the outcomes and writes nothing.
    fn apply(&self, objs: Vec<Resource>, dry_run: bool) -> Result<Vec<(ApplyOutcome, Resource)>>;
    /// Changes after `rv`, oldest first; `Expired` when the history does not reach back.
    fn watch_from(&self, rv: u64) -> Result<Vec<WatchEvent>>;
    /// The newest resourceVersion.
    fn resource_version(&self) -> u64;
    /// A receiver that sees the newest resourceVersion after every commit.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Appends to the event log (seq is assigned).
    fn record_event(&self, ev: Event) -> Result<Event>;
    /// The event log, oldest first.
    fn events(&self) -> Result<Vec<Event>>;
    /// Marks all events acknowledged; returns how many were newly acknowledged.
    fn ack_events(&self) -> Result<usize>;
    /// Reads a named blob (used for the simulated world).
    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Writes a named blob durably.
    fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<()>;

    /// Up to `limit` objects of `kind` whose names sort after `after`, by name, for
    /// paged and streamed lists. `at == None` reads the page at the newest
    /// resourceVersion (returned in `Page::rv`); `at == Some(rv)` continues a list
    /// taken at `rv` and fails with `SnapshotGone` when an object that would be on this
    /// or a later page changed after `rv`, or the history no longer reaches back.
    /// This default reads the whole list; stores override it with a bounded scan.
    fn list_page(&self, kind: Kind, after: Option<&str>, limit: usize, at: Option<u64>) -> Result<Page> {
        let (all, now) = self.list(kind)?;
        let rv = match at {
            None => now,
            Some(at) => {
                let changes =
                    self.watch_from(at).map_err(|e| StoreError::SnapshotGone { at, reason: e.to_string() })?;
                if let Some(c) =
                    changes.iter().find(|c| c.object.kind() == kind && after.is_none_or(|a| c.object.name() > a))
                {
                    let reason = format!("{} changed at resourceVersion {}", c.object.key(), c.rv);
                    return Err(StoreError::SnapshotGone { at, reason });
                }
                at
            }
        };
        let mut rest = all.into_iter().filter(|o| after.is_none_or(|a| o.name() > a));
        let items: Vec<Resource> = rest.by_ref().take(limit).collect();
        Ok(Page { items, rv, more: rest.next().is_some() })
    }

    /// `list_page` with each object as JSON (the same bytes the API would send for
    /// it). This default encodes the typed page; stores override it with their stored
    /// bytes.
    fn list_page_json(&self, kind: Kind, after: Option<&str>, limit: usize, at: Option<u64>) -> Result<RawPage> {
        let p = self.list_page(kind, after, limit, at)?;
        let items = p.items.iter().map(|o| (o.name().to_string(), o.to_json())).collect();
        Ok(RawPage { items, rv: p.rv, more: p.more })
    }
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
