//! The object store, following the Kubernetes API conventions: uid, a resourceVersion
//! from one global counter, generation bumped only by spec changes, optimistic
//! concurrency, a separate status path, watch from a resourceVersion over a bounded
//! history, and an event log.
//!
//! Callers use the `Store` trait only; `SledStore` is the embedded implementation. An
//! etcd-backed one can be added beside it without touching callers.
//!
//! The controller writes everything one reconcile did (statuses, events, and the
//! entities of the simulated world it changed) as one `Batch`: all of it or none of it
//! is there after a crash. A batch is a list of independent puts and deletes, so a
//! backend with a request cap (etcd: 128 operations, 1.5 MiB) can stage it in pieces
//! and make it visible with one small commit.

mod data_dir;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_connect;
#[cfg(feature = "etcd")]
mod etcd_leader;
mod etcd_tls;
mod finite;
mod sled_store;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdStore};
#[cfg(feature = "etcd")]
pub use etcd_leader::{LeaderInfo, Leadership};
pub use etcd_tls::{is_etcd, EtcdTls, TlsFiles};
pub use finite::{check as check_finite, encode as encode_finite, NonFinite};
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
    /// The object, encoded, is larger than one stored object may be.
    #[error(
        "{kind} {name} is {size} bytes encoded; one stored object may be at most {limit} bytes (1.5 MiB, as in etcd)"
    )]
    TooLarge {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
        /// Encoded size in bytes.
        size: usize,
        /// The limit, `MAX_OBJECT_BYTES`.
        limit: usize,
    },
    /// A batch's `expect`ed state key holds something else (another writer came first).
    #[error(
        "conflict: state key {key} changed since it was read (another writer came first); read it again and retry"
    )]
    StateChanged {
        /// The key.
        key: String,
    },
    /// The storage engine failed.
    #[error("store: {0}")]
    Backend(String),
    /// Another process (a running `sectl serve`, or another verb) holds the store's
    /// lock on its data directory.
    #[error("store: the store in {} is in use by another sectl process (a running `sectl serve`?); use --server to talk to it", dir.display())]
    InUse {
        /// The data directory.
        dir: std::path::PathBuf,
    },
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

/// Largest encoded object the store keeps: 1.5 MiB, etcd's default request limit, so
/// that every object also fits an etcd-backed store.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// Checks one object's encoded size at the write boundary (every store calls it for
/// each object it writes).
pub fn check_object_size(kind: Kind, name: &str, size: usize) -> Result<()> {
    if size > MAX_OBJECT_BYTES {
        return Err(StoreError::TooLarge { kind, name: name.to_string(), size, limit: MAX_OBJECT_BYTES });
    }
    Ok(())
}

/// The stored form of one change, as every store writes it: a removal as it is; any
/// other change checked for non-finite numbers (while encoding) and for its size.
pub(crate) fn encode_change(t: WatchType, obj: &Resource) -> Result<Vec<u8>> {
    if t == WatchType::Deleted {
        return Ok(obj.to_json());
    }
    let bytes = encode_finite(obj).map_err(|e| StoreError::Invalid(format!("{}: {e}", obj.key())))?;
    check_object_size(obj.kind(), obj.name(), bytes.len())?;
    Ok(bytes)
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

/// Controller state entries to write: key and value, or None to delete the key.
pub type StateWrites = Vec<(String, Option<Vec<u8>>)>;

/// What one reconcile (or fault, or clock tick) changed, written atomically.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Statuses to write, as `update_status` does, except that a stale resourceVersion
    /// is no conflict: the status is what the controller observed in the world, so it
    /// goes onto the newest object and `StatusWrite::Written::retried` says so.
    pub statuses: Vec<Resource>,
    /// Events to append (their `seq` is assigned).
    pub events: Vec<Event>,
    /// Controller state (the simulated world by entity, the controller's bookkeeping):
    /// key -> `Some(bytes)` to write, `None` to delete. Keys are the caller's.
    pub state: StateWrites,
    /// Flush before returning (otherwise durable within half a second or with the
    /// next durable write; either all of the batch or none of it survives a crash).
    pub durable: bool,
    /// State keys that must hold exactly these bytes (`None`: be absent) when the batch
    /// commits, else nothing is written and the batch fails with
    /// `StoreError::StateChanged` (compare-and-swap across processes sharing an etcd:
    /// the audit log's head, a user's record). Read, decide, then commit expecting what
    /// was read; on `StateChanged` read again.
    pub expect: StateWrites,
}

impl Batch {
    /// True when the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.events.is_empty() && self.state.is_empty()
    }
}

/// What became of one status in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusWrite {
    /// Written; `retried` when the object had changed since the status was computed.
    Written {
        /// The object as stored now.
        object: Resource,
        /// The object's resourceVersion was newer than the status's.
        retried: bool,
    },
    /// Equal to the stored status: nothing written.
    Unchanged(Resource),
    /// The object no longer exists.
    Gone,
}

/// What a committed batch wrote.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// One entry per status of the batch, in order.
    pub statuses: Vec<StatusWrite>,
    /// The events with their sequence numbers.
    pub events: Vec<Event>,
}

/// A stored object that cannot be decoded, reported by name instead of failing a list.
#[derive(Debug, Clone, PartialEq)]
pub struct BadObject {
    /// Kind.
    pub kind: Kind,
    /// Name (from the key).
    pub name: String,
    /// Why it cannot be read.
    pub error: String,
}

impl std::fmt::Display for BadObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} cannot be read ({}); `sectl delete {} {}` removes it",
            self.kind,
            self.name,
            self.error,
            self.kind.as_str().to_lowercase(),
            self.name
        )
    }
}

/// A list with the objects that could not be decoded named apart.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The readable objects, sorted by name.
    pub items: Vec<Resource>,
    /// The unreadable ones.
    pub bad: Vec<BadObject>,
    /// The resourceVersion of the list.
    pub rv: u64,
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
/// ack, blobs) are durable when the call returns; status writes, event records and
/// controller batches are atomic and become durable within half a second, with the
/// next durable write, or before any read (`get`, `list`, `events`, `watch_from`)
/// returns them: nothing a reader saw is taken back by a crash.
pub trait Store: Send + Sync {
    /// One object.
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>>;
    /// All readable objects of a kind, sorted by name, and the resourceVersion of the
    /// list. An object that cannot be decoded is left out (and logged); `list_report`
    /// names it.
    fn list(&self, kind: Kind) -> Result<(Vec<Resource>, u64)> {
        let l = self.list_report(kind)?;
        for b in &l.bad {
            tracing::warn!(object = %format!("{}/{}", b.kind, b.name), error = %b.error, "stored object cannot be read");
        }
        Ok((l.items, l.rv))
    }
    /// All objects of a kind: the readable ones, and the unreadable ones by name. One
    /// bad object never fails the whole list.
    fn list_report(&self, kind: Kind) -> Result<Listing>;
    /// Creates an object; sets uid, resourceVersion, generation 1, creationTimestamp,
    /// and an empty status.
    fn create(&self, obj: Resource) -> Result<Resource>;
    /// Updates spec, labels and annotations (never status), and `managedFields` when
    /// the object carries them (absent: the stored ones stay). A set
    /// `metadata.resourceVersion` must match the stored one (else Conflict). Generation
    /// moves only when the spec changes; an update that changes nothing writes nothing.
    fn update(&self, obj: Resource) -> Result<Resource>;
    /// Writes the status only (never spec), and `managedFields` when the object carries
    /// them. A set resourceVersion must match. A status (and managedFields) equal to
    /// the stored one writes nothing, so controllers do not wake themselves.
    fn update_status(&self, obj: Resource) -> Result<Resource>;
    /// Deletes an object; returns its last state.
    fn delete(&self, kind: Kind, name: &str) -> Result<Resource>;
    /// Creates or updates all objects atomically (one batch, flushed), or none. With
    /// `dry_run`, computes the outcomes and writes nothing.
    fn apply(&self, objs: Vec<Resource>, dry_run: bool) -> Result<Vec<(ApplyOutcome, Resource)>>;
    /// Changes after `rv`, oldest first; `Expired` when the history does not reach back.
    /// What it returns is durable (reads never serve what a crash could take back).
    fn watch_from(&self, rv: u64) -> Result<Vec<WatchEvent>>;
    /// Like `watch_from`, but may include controller writes not yet durable: for the
    /// controller itself, which wrote them (it must not wait for a flush per step).
    fn changes_since(&self, rv: u64) -> Result<Vec<WatchEvent>> {
        self.watch_from(rv)
    }
    /// The newest resourceVersion.
    fn resource_version(&self) -> u64;
    /// A receiver that sees the newest resourceVersion after every commit.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Appends to the event log (seq is assigned).
    fn record_event(&self, ev: Event) -> Result<Event>;
    /// The event log, oldest first.
    fn events(&self) -> Result<Vec<Event>>;
    /// Up to `limit` events with a sequence number above `seq`, oldest first (the
    /// alarm outbox reads after each receiver's cursor). What it returns is durable.
    /// This default reads the whole log; stores override it with a range scan.
    fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.events()?.into_iter().filter(|e| e.seq > seq).take(limit).collect())
    }
    /// The sequence number of the newest event in the log (0 when it is empty).
    fn last_event_seq(&self) -> Result<u64> {
        Ok(self.events()?.last().map(|e| e.seq).unwrap_or(0))
    }
    /// Marks all events acknowledged; returns how many were newly acknowledged.
    fn ack_events(&self) -> Result<usize>;
    /// Reads a named blob (the simulated world of stores written before it was kept
    /// by entity, the shutdown mark).
    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Writes a named blob durably.
    fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Writes a batch atomically: all of it or nothing, also across a crash. Statuses
    /// of objects that are gone are skipped (`StatusWrite::Gone`); any other failure
    /// writes nothing. Numbers must be finite (else `Invalid`).
    fn commit_batch(&self, batch: Batch) -> Result<Committed>;
    /// The controller state entries whose key starts with `prefix`, sorted by key.
    fn read_state(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;
    /// Makes every committed write durable.
    fn sync(&self) -> Result<()>;

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

/// Opens the store `--store` names: `sled` (the embedded store in `data_dir`) or
/// `etcd://[user@]HOST:PORT[,HOST:PORT...][/prefix]`. Anything else is refused.
pub fn open(spec: &str, data_dir: &std::path::Path) -> Result<std::sync::Arc<dyn Store>> {
    open_with(spec, data_dir, &EtcdTls::default())
}

/// `open` with the TLS files for etcd (`etcds://`); TLS files with any other store
/// are refused (see `EtcdTls::check_flags`).
pub fn open_with(spec: &str, data_dir: &std::path::Path, tls: &EtcdTls) -> Result<std::sync::Arc<dyn Store>> {
    tls.check_flags(spec).map_err(StoreError::Invalid)?;
    if spec == "sled" {
        return Ok(std::sync::Arc::new(SledStore::open(data_dir)?));
    }
    #[cfg(feature = "etcd")]
    if spec.contains("://") {
        return Ok(std::sync::Arc::new(EtcdStore::open_with(spec, tls)?));
    }
    #[cfg(not(feature = "etcd"))]
    if is_etcd(spec) {
        return Err(StoreError::Invalid(NO_ETCD.to_string()));
    }
    Err(invalid_spec(spec))
}

/// The data directory of a store kept elsewhere (etcd): `serve` keeps its token and
/// TLS files there; created 0700 when new, as for sled.
pub fn prepare_data_dir(dir: &std::path::Path) -> Result<()> {
    data_dir::prepare(dir)
}

/// What a build without the `etcd` feature says to `--store etcd://...`.
pub const NO_ETCD: &str = "--store etcd://: this sectl was built without etcd support; \
build it with `cargo build --release --features etcd` (needs protoc: apt install protobuf-compiler)";

fn invalid_spec(spec: &str) -> StoreError {
    StoreError::Invalid(format!(
        "--store {spec:?}: expected `sled` or `etcd://HOST:PORT[,HOST:PORT...]` (`etcds://` for TLS)"
    ))
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
