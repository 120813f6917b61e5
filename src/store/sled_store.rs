//! The embedded store on sled. One tree, keys by prefix:
//! - `o/<Kind>/<name>`  the object, JSON
//! - `h/<rv, u64 BE>`   the watch history: one compact record per change
//! - `e/<seq, u64 BE>`  the event log
//! - `b/<name>`         blobs (the simulated world)
//! - `m/rv`, `m/eseq`   counters
//!
//! Every write is one sled batch (atomic) followed by a flush, under one writer lock,
//! so the global resourceVersion counter, the object and its history record always
//! move together: a crash leaves either all of a write or none of it.

use super::{ApplyOutcome, Event, Page, RawPage, Result, Store, StoreError, WatchEvent, WatchType};
use crate::api::{Kind, Resource};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

/// How many changes the watch history keeps.
pub const DEFAULT_HISTORY: u64 = 10_000;
/// How many events the event log keeps.
const MAX_EVENTS: u64 = 10_000;

/// The sled-backed store.
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    writer: Mutex<Counters>,
    history: u64,
    notify: tokio::sync::watch::Sender<u64>,
}

struct Counters {
    rv: u64,
    eseq: u64,
}

#[derive(Serialize, Deserialize)]
struct HistoryRecord {
    t: WatchType,
    k: String,
    n: String,
    /// The last state, for deletions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<Box<serde_json::value::RawValue>>,
}

fn be(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn obj_key(kind: Kind, name: &str) -> Vec<u8> {
    format!("o/{}/{}", kind.as_str(), name).into_bytes()
}

fn hist_key(rv: u64) -> Vec<u8> {
    let mut k = b"h/".to_vec();
    k.extend_from_slice(&rv.to_be_bytes());
    k
}

fn event_key(seq: u64) -> Vec<u8> {
    let mut k = b"e/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn read_counter(tree: &sled::Tree, key: &[u8]) -> Result<u64> {
    Ok(tree
        .get(key)
        .map_err(be)?
        .map(|v| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[..8]);
            u64::from_be_bytes(b)
        })
        .unwrap_or(0))
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, created with mode 0700.
    pub fn open(dir: &Path) -> Result<SledStore> {
        Self::open_with_history(dir, DEFAULT_HISTORY)
    }

    /// Opens with a given watch-history length (tests use a short one).
    pub fn open_with_history(dir: &Path, history: u64) -> Result<SledStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| StoreError::Backend(format!("cannot restrict {}: {e}", dir.display())))?;
        }
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(32 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                    StoreError::Backend(format!(
                        "the store in {} is in use by another sectl process (a running `sectl serve`?); use --server to talk to it",
                        dir.display()
                    ))
                }
                other => be(other),
            })?;
        let tree = db.open_tree("sectl").map_err(be)?;
        let rv = read_counter(&tree, b"m/rv")?;
        let eseq = read_counter(&tree, b"m/eseq")?;
        let (notify, _) = tokio::sync::watch::channel(rv);
        Ok(SledStore { db, tree, writer: Mutex::new(Counters { rv, eseq }), history: history.max(1), notify })
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Option<Resource>> {
        match self.tree.get(obj_key(kind, name)).map_err(be)? {
            None => Ok(None),
            Some(v) => Resource::from_json(&v)
                .map(Some)
                .map_err(|e| StoreError::Backend(format!("corrupt object {kind}/{name}: {e}"))),
        }
    }

    /// Adds one change to `batch`: the object (or its removal) and its history record.
    fn stage(&self, batch: &mut sled::Batch, c: &mut Counters, t: WatchType, obj: &mut Resource) -> Result<()> {
        c.rv += 1;
        let rv = c.rv;
        obj.meta_mut().resource_version = Some(rv.to_string());
        let bytes = obj.to_json();
        let key = obj_key(obj.kind(), obj.name());
        let rec = HistoryRecord {
            t,
            k: obj.kind().as_str().to_string(),
            n: obj.name().to_string(),
            o: if t == WatchType::Deleted {
                Some(
                    serde_json::value::RawValue::from_string(String::from_utf8(bytes.clone()).map_err(be)?)
                        .map_err(be)?,
                )
            } else {
                None
            },
        };
        if t == WatchType::Deleted {
            batch.remove(key);
        } else {
            batch.insert(key, bytes);
        }
        batch.insert(hist_key(rv), serde_json::to_vec(&rec).map_err(be)?);
        if rv > self.history {
            batch.remove(hist_key(rv - self.history));
        }
        Ok(())
    }

    /// Applies a batch atomically; with `durable`, flushes before returning.
    fn commit_with(&self, mut batch: sled::Batch, c: &Counters, durable: bool) -> Result<()> {
        batch.insert(b"m/rv".to_vec(), c.rv.to_be_bytes().to_vec());
        batch.insert(b"m/eseq".to_vec(), c.eseq.to_be_bytes().to_vec());
        self.tree.apply_batch(batch).map_err(be)?;
        if durable {
            self.db.flush().map_err(be)?;
        }
        self.notify.send_replace(c.rv);
        Ok(())
    }

    /// Applies a batch atomically and flushes it (user writes, blobs).
    fn commit(&self, batch: sled::Batch, c: &Counters) -> Result<()> {
        self.commit_with(batch, c, true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_rv(obj: &Resource, current: &Resource) -> Result<()> {
        let want = obj.meta().rv();
        let have = current.meta().rv();
        if obj.meta().resource_version.is_some() && want != have {
            return Err(StoreError::Conflict {
                kind: obj.kind(),
                name: obj.name().to_string(),
                expected: want,
                actual: have,
            });
        }
        Ok(())
    }

    fn fresh(mut obj: Resource) -> Resource {
        let m = obj.meta_mut();
        m.uid = Some(uuid::Uuid::new_v4().to_string());
        m.generation = Some(1);
        m.creation_timestamp = Some(super::now_rfc3339());
        obj.clear_status();
        obj
    }

    /// Merges the user-owned parts of `obj` into `current`; returns whether anything
    /// changed.
    fn merge_spec(current: &mut Resource, obj: &Resource) -> bool {
        let spec_changed = !current.spec_eq(obj);
        let meta_changed =
            current.meta().labels != obj.meta().labels || current.meta().annotations != obj.meta().annotations;
        if spec_changed {
            current.take_spec_from(obj);
            let m = current.meta_mut();
            m.generation = Some(m.generation.unwrap_or(0) + 1);
        }
        if meta_changed {
            let (l, a) = (obj.meta().labels.clone(), obj.meta().annotations.clone());
            let m = current.meta_mut();
            m.labels = l;
            m.annotations = a;
        }
        spec_changed || meta_changed
    }
}

impl Store for SledStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>> {
        self.read(kind, name)
    }

    fn list(&self, kind: Kind) -> Result<(Vec<Resource>, u64)> {
        // Take the rv first: the list is at least as new as it.
        let rv = self.lock().rv;
        let prefix = format!("o/{}/", kind.as_str());
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item.map_err(be)?;
            out.push(
                Resource::from_json(&v)
                    .map_err(|e| StoreError::Backend(format!("corrupt object {}: {e}", String::from_utf8_lossy(&k))))?,
            );
        }
        let rv = out.iter().map(|r| r.meta().rv()).max().unwrap_or(0).max(rv);
        Ok((out, rv))
    }

    fn create(&self, obj: Resource) -> Result<Resource> {
        let mut c = self.lock();
        if self.read(obj.kind(), obj.name())?.is_some() {
            return Err(StoreError::AlreadyExists { kind: obj.kind(), name: obj.name().to_string() });
        }
        let mut obj = Self::fresh(obj);
        let mut batch = sled::Batch::default();
        self.stage(&mut batch, &mut c, WatchType::Added, &mut obj)?;
        self.commit(batch, &c)?;
        Ok(obj)
    }

    fn update(&self, obj: Resource) -> Result<Resource> {
        let mut c = self.lock();
        let mut current = self
            .read(obj.kind(), obj.name())?
            .ok_or_else(|| StoreError::NotFound { kind: obj.kind(), name: obj.name().to_string() })?;
        Self::check_rv(&obj, &current)?;
        if !Self::merge_spec(&mut current, &obj) {
            return Ok(current);
        }
        let mut batch = sled::Batch::default();
        self.stage(&mut batch, &mut c, WatchType::Modified, &mut current)?;
        self.commit(batch, &c)?;
        Ok(current)
    }

    fn update_status(&self, obj: Resource) -> Result<Resource> {
        let mut c = self.lock();
        let mut current = self
            .read(obj.kind(), obj.name())?
            .ok_or_else(|| StoreError::NotFound { kind: obj.kind(), name: obj.name().to_string() })?;
        Self::check_rv(&obj, &current)?;
        if current.status_eq(&obj) {
            return Ok(current);
        }
        current.take_status_from(&obj);
        let mut batch = sled::Batch::default();
        self.stage(&mut batch, &mut c, WatchType::Modified, &mut current)?;
        // Status is the controller's and is recomputed from the world: it is made
        // durable by sled's periodic flush (500 ms) or the next durable write.
        self.commit_with(batch, &c, false)?;
        Ok(current)
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<Resource> {
        let mut c = self.lock();
        let mut current =
            self.read(kind, name)?.ok_or_else(|| StoreError::NotFound { kind, name: name.to_string() })?;
        let mut batch = sled::Batch::default();
        self.stage(&mut batch, &mut c, WatchType::Deleted, &mut current)?;
        self.commit(batch, &c)?;
        Ok(current)
    }

    fn apply(&self, objs: Vec<Resource>, dry_run: bool) -> Result<Vec<(ApplyOutcome, Resource)>> {
        let mut c = self.lock();
        let start = (c.rv, c.eseq);
        let mut batch = sled::Batch::default();
        let mut out = Vec::with_capacity(objs.len());
        let mut seen = std::collections::HashSet::new();
        for obj in objs {
            if !seen.insert((obj.kind(), obj.name().to_string())) {
                *c = Counters { rv: start.0, eseq: start.1 };
                return Err(StoreError::Invalid(format!("{} is given twice", obj.key())));
            }
            let staged = match self.read(obj.kind(), obj.name()) {
                Err(e) => Err(e),
                Ok(None) => {
                    let mut o = Self::fresh(obj);
                    self.stage(&mut batch, &mut c, WatchType::Added, &mut o).map(|_| (ApplyOutcome::Created, o))
                }
                Ok(Some(mut current)) => match Self::check_rv(&obj, &current) {
                    Err(e) => Err(e),
                    Ok(()) if Self::merge_spec(&mut current, &obj) => self
                        .stage(&mut batch, &mut c, WatchType::Modified, &mut current)
                        .map(|_| (ApplyOutcome::Configured, current)),
                    Ok(()) => Ok((ApplyOutcome::Unchanged, current)),
                },
            };
            match staged {
                Ok(x) => out.push(x),
                Err(e) => {
                    // Nothing was written: forget the counters we advanced.
                    *c = Counters { rv: start.0, eseq: start.1 };
                    return Err(e);
                }
            }
        }
        if dry_run {
            *c = Counters { rv: start.0, eseq: start.1 };
            return Ok(out);
        }
        if c.rv != start.0 {
            if let Err(e) = self.commit(batch, &c) {
                *c = Counters { rv: start.0, eseq: start.1 };
                return Err(e);
            }
        }
        Ok(out)
    }

    fn watch_from(&self, rv: u64) -> Result<Vec<WatchEvent>> {
        // Hold the writer lock for the scan: history and objects are then one
        // snapshot, so no write can land between a record and the object it names.
        let guard = self.lock();
        let current = guard.rv;
        let oldest = current.saturating_sub(self.history);
        if rv < oldest {
            return Err(StoreError::Expired { requested: rv, oldest });
        }
        if rv >= current {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // Keys whose ADDED was coalesced into a later change: that change is reported
        // as ADDED so a watcher never sees MODIFIED for an object it never saw added.
        let mut pending_added = std::collections::HashSet::new();
        for item in self.tree.range(hist_key(rv + 1)..=hist_key(current)) {
            let (k, v) = item.map_err(be)?;
            let mut b = [0u8; 8];
            b.copy_from_slice(&k[2..10]);
            let at = u64::from_be_bytes(b);
            let rec: HistoryRecord = serde_json::from_slice(&v).map_err(be)?;
            let kind = Kind::from_manifest(&rec.k).ok_or_else(|| be(format!("unknown kind {}", rec.k)))?;
            let key = (kind, rec.n.clone());
            match rec.t {
                WatchType::Deleted => {
                    pending_added.remove(&key);
                    let raw = rec.o.ok_or_else(|| be("deletion record without object"))?;
                    let object = Resource::from_json(raw.get().as_bytes()).map_err(be)?;
                    out.push(WatchEvent { type_: WatchType::Deleted, rv: at, object });
                }
                t => match self.read(kind, &rec.n)? {
                    Some(object) if object.meta().rv() == at => {
                        let type_ = if pending_added.remove(&key) { WatchType::Added } else { t };
                        out.push(WatchEvent { type_, rv: at, object });
                    }
                    // Changed again later (or deleted): the later record reports it.
                    _ => {
                        if t == WatchType::Added {
                            pending_added.insert(key);
                        }
                    }
                },
            }
        }
        Ok(out)
    }

    fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn record_event(&self, mut ev: Event) -> Result<Event> {
        let mut c = self.lock();
        c.eseq += 1;
        ev.seq = c.eseq;
        let mut batch = sled::Batch::default();
        batch.insert(event_key(ev.seq), serde_json::to_vec(&ev).map_err(be)?);
        if ev.seq > MAX_EVENTS {
            batch.remove(event_key(ev.seq - MAX_EVENTS));
        }
        if let Err(e) = self.commit_with(batch, &c, false) {
            c.eseq -= 1;
            return Err(e);
        }
        Ok(ev)
    }

    fn events(&self) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(b"e/") {
            let (_, v) = item.map_err(be)?;
            out.push(serde_json::from_slice(&v).map_err(be)?);
        }
        Ok(out)
    }

    fn ack_events(&self) -> Result<usize> {
        let c = self.lock();
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.tree.scan_prefix(b"e/") {
            let (k, v) = item.map_err(be)?;
            let mut ev: Event = serde_json::from_slice(&v).map_err(be)?;
            if !ev.acknowledged {
                ev.acknowledged = true;
                n += 1;
                batch.insert(k, serde_json::to_vec(&ev).map_err(be)?);
            }
        }
        if n > 0 {
            self.commit(batch, &c)?;
        }
        Ok(n)
    }

    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(format!("b/{name}")).map_err(be)?.map(|v| v.to_vec()))
    }

    fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let c = self.lock();
        let mut batch = sled::Batch::default();
        batch.insert(format!("b/{name}").into_bytes(), bytes.to_vec());
        self.commit(batch, &c)
    }

    fn list_page(&self, kind: Kind, after: Option<&str>, limit: usize, at: Option<u64>) -> Result<Page> {
        let raw = self.list_page_json(kind, after, limit, at)?;
        let mut items = Vec::with_capacity(raw.items.len());
        for (name, bytes) in &raw.items {
            items.push(
                Resource::from_json(bytes)
                    .map_err(|e| StoreError::Backend(format!("corrupt object {}/{name}: {e}", kind.as_str())))?,
            );
        }
        Ok(Page { items, rv: raw.rv, more: raw.more })
    }

    fn list_page_json(&self, kind: Kind, after: Option<&str>, limit: usize, at: Option<u64>) -> Result<RawPage> {
        // The keys and values are taken under the writer lock, so the page and its
        // resourceVersion are one snapshot; a page is bounded by `limit`, and sled's
        // values are shared buffers, so writers wait only for the scan itself.
        let guard = self.lock();
        let rv = match at {
            None => guard.rv,
            Some(at) => {
                self.check_unchanged_since(kind, after, at, guard.rv)?;
                at
            }
        };
        let prefix = format!("o/{}/", kind.as_str()).into_bytes();
        let start = match after {
            // The smallest key after `o/<kind>/<after>`.
            Some(a) => {
                let mut k = obj_key(kind, a);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut found = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for item in self.tree.range(start..) {
            let (k, v) = item.map_err(be)?;
            if !k.starts_with(&prefix) {
                break;
            }
            if found.len() >= limit {
                more = true;
                break;
            }
            found.push((k, v));
        }
        drop(guard);
        let items = found
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k[prefix.len()..]).into_owned(), v.to_vec()))
            .collect();
        Ok(RawPage { items, rv, more })
    }
}

impl SledStore {
    /// For a list continued at `at`: fails when the history does not reach back to
    /// `at`, or an object of `kind` named after `after` changed since (the rest of
    /// the list would not be the snapshot at `at`).
    fn check_unchanged_since(&self, kind: Kind, after: Option<&str>, at: u64, current: u64) -> Result<()> {
        if at > current {
            return Err(StoreError::Invalid(format!("resourceVersion {at} is newer than the store's ({current})")));
        }
        let oldest = current.saturating_sub(self.history);
        if at < oldest {
            let reason = format!("the history starts after resourceVersion {oldest}");
            return Err(StoreError::SnapshotGone { at, reason });
        }
        if at == current {
            return Ok(());
        }
        for item in self.tree.range(hist_key(at + 1)..=hist_key(current)) {
            let (k, v) = item.map_err(be)?;
            let rec: HistoryRecord = serde_json::from_slice(&v).map_err(be)?;
            if rec.k == kind.as_str() && after.is_none_or(|a| rec.n.as_str() > a) {
                let mut b = [0u8; 8];
                b.copy_from_slice(&k[2..10]);
                let reason = format!("{kind}/{} changed at resourceVersion {}", rec.n, u64::from_be_bytes(b));
                return Err(StoreError::SnapshotGone { at, reason });
            }
        }
        Ok(())
    }
}
