//! The embedded store on sled. One tree, keys by prefix:
//! - `o/<Kind>/<name>`  the object, JSON
//! - `h/<rv, u64 BE>`   the watch history: one compact record per change; the changes
//!   of one write as one block under its last rv (`HistoryBlock`)
//! - `e/<seq, u64 BE>`  the event log
//! - `b/<name>`         blobs (the world of older stores, the shutdown mark)
//! - `s/<key>`          controller state: the simulated world by entity, bookkeeping
//! - `m/rv`, `m/eseq`   counters
//! - `m/rvres`, `m/eseqres` the highest resourceVersion / event seq that may have been
//!   handed out (reserved durably, a block at a time)
//!
//! Every write is one sled batch (atomic) under one writer lock, so the global
//! resourceVersion counter, the object and its history record always move together: a
//! crash leaves either all of a write or none of it. User writes are flushed before
//! they return; controller batches within half a second. A version handed out by a
//! batch that a crash then lost is never handed out again: the counters restart past
//! the durable reservation, and a watch from inside the lost range is `Expired`.
//!
//! The statuses the controller wrote last are also kept decoded (`Recent`, bounded):
//! the controller's next read of them (its watch of its own writes, its next status
//! write of the same object) takes them from there instead of decoding the JSON again.
//! Trade-off: a few MiB of memory and a clone per status write, for about one JSON
//! decode less per reconcile.

use super::{
    ApplyOutcome, Batch, Committed, Event, Page, RawPage, Result, StatusWrite, Store, StoreError, WatchEvent, WatchType,
};
use crate::api::{Kind, Resource};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

/// How many changes the watch history keeps.
pub const DEFAULT_HISTORY: u64 = 10_000;
/// How many events the event log keeps.
const MAX_EVENTS: u64 = 10_000;
/// How many resourceVersions (and event seqs) one durable reservation covers.
const RESERVE_BLOCK: u64 = 1_000;

/// The sled-backed store.
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    writer: Mutex<Counters>,
    /// See `Recent`; locked only while `writer` is held.
    recent: Mutex<Recent>,
    history: u64,
    notify: tokio::sync::watch::Sender<u64>,
    /// Committed writes not yet flushed: a read flushes first.
    unflushed: std::sync::atomic::AtomicBool,
    /// resourceVersions that a crash may have taken back (after the last durable one,
    /// up to the reservation): a watch from inside must relist.
    lost: (u64, u64),
    /// The data directory's lock (see `data_dir`); declared last so that it is
    /// released after sled is dropped.
    _lock: super::data_dir::DirLock,
}

/// How many decoded objects `Recent` keeps.
const RECENT_CAP: usize = 4096;

/// Objects as this process last wrote them (status writes of controller batches),
/// decoded, by object key. Touched only under the writer lock, after it; an entry is
/// always what the tree holds for that key: entries are taken in only after their
/// batch was applied, and every other write of an object key drops the entry.
#[derive(Default)]
struct Recent {
    map: std::collections::HashMap<Vec<u8>, Resource>,
    order: std::collections::VecDeque<Vec<u8>>,
    /// What the batch being built will write (None: the key is dropped).
    staged: Vec<(Vec<u8>, Option<Resource>)>,
}

impl Recent {
    fn take_staged(&mut self) {
        for (k, v) in std::mem::take(&mut self.staged) {
            match v {
                Some(r) => {
                    if self.map.insert(k.clone(), r).is_none() {
                        self.order.push_back(k);
                    }
                }
                None => {
                    self.map.remove(&k);
                }
            }
        }
        while self.map.len() > RECENT_CAP {
            match self.order.pop_front() {
                Some(k) => {
                    self.map.remove(&k);
                }
                None => break,
            }
        }
    }
}

#[derive(Clone)]
struct Counters {
    rv: u64,
    eseq: u64,
    /// Reserved durably: no rv / seq up to these is handed out twice.
    rv_res: u64,
    eseq_res: u64,
    /// The batch being built raised a reservation: it must be flushed.
    reserve: bool,
}

impl Counters {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        if self.rv > self.rv_res {
            self.rv_res = self.rv + RESERVE_BLOCK;
            self.reserve = true;
        }
        self.rv
    }

    fn next_eseq(&mut self) -> u64 {
        self.eseq += 1;
        if self.eseq > self.eseq_res {
            self.eseq_res = self.eseq + RESERVE_BLOCK;
            self.reserve = true;
        }
        self.eseq
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct HistoryRecord {
    pub(super) t: WatchType,
    pub(super) k: String,
    pub(super) n: String,
    /// The last state, for deletions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) o: Option<Box<serde_json::value::RawValue>>,
    /// The removal of an object that could not be decoded (no `o`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) u: bool,
}

/// The history records of one write with more than one change, stored as entries of
/// at most `HISTORY_BLOCK_RECORDS` records, each under the key of its last
/// resourceVersion: `f` is the first one, and the records have the versions `f`,
/// `f + 1`, ... in order. Fewer entries than changes save key writes (and trims) in an
/// apply and in a controller group. Trade-off: a watch resumed inside a block decodes
/// the whole block, and a block is trimmed only when its last record leaves the window.
#[derive(Serialize, Deserialize)]
struct HistoryBlock {
    f: u64,
    r: Vec<HistoryRecord>,
}

/// At most this many records in one history entry. sled keeps values inside its
/// nodes, and a node splits at 16 entries whatever their size: one entry for a whole
/// apply (10,000 records, about 15 MB) made the node holding it that large, and every
/// split or consolidation of that node rewrote it (as a separate blob file, past 128
/// KiB). 16 records (20-30 KiB) bound both that and what a resumed watch decodes;
/// measured (callgrind, converge of 2,000 VMs): 1, 4, 16 and unbounded records per
/// block gave the loop 524 M, 497 M, 489 M and 498 M instructions.
const HISTORY_BLOCK_RECORDS: usize = 16;

/// What a stored block's value starts with (a single record starts with `{"t":`).
const BLOCK_PREFIX: &[u8] = b"{\"f\":";

/// Decodes one history entry (`h/<rv>`): a single record at `rv`, or a block ending
/// there. A damaged entry (undecodable, or a block whose versions do not end at its
/// key) is an error naming it, never a panic.
fn decode_history(key: &[u8], value: &[u8]) -> Result<Vec<(u64, HistoryRecord)>> {
    let at = key.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()).ok_or_else(|| be("bad history key"))?;
    let at = u64::from_be_bytes(at);
    let damaged = |why: String| be(format!("history entry {at} is damaged: {why}"));
    if !value.starts_with(BLOCK_PREFIX) {
        return Ok(vec![(at, serde_json::from_slice(value).map_err(|e| damaged(e.to_string()))?)]);
    }
    let block: HistoryBlock = serde_json::from_slice(value).map_err(|e| damaged(e.to_string()))?;
    let n = block.r.len() as u64;
    if n == 0 || block.f.checked_add(n - 1) != Some(at) {
        return Err(damaged(format!("a block of {n} records from {} does not end at {at}", block.f)));
    }
    Ok((block.f..=at).zip(block.r).collect())
}

/// A write being built: the sled batch, and the history records of its changes, which
/// `commit_with` stores as one entry (see `HistoryBlock`).
#[derive(Default)]
struct Write {
    kv: sled::Batch,
    history: Vec<(u64, HistoryRecord)>,
}

impl Write {
    fn insert(&mut self, key: impl Into<sled::IVec>, value: impl Into<sled::IVec>) {
        self.kv.insert(key, value);
    }

    fn remove(&mut self, key: impl Into<sled::IVec>) {
        self.kv.remove(key);
    }
}

/// Turns history records (resourceVersion, record), oldest first, into watch events;
/// shared by both backends. A record is reported with the object as `read` finds it now,
/// and only if the object still has that record's resourceVersion (a later change is
/// reported by its own record). A key whose ADDED was coalesced into a later change has
/// that change reported as ADDED, so a watcher never sees MODIFIED for an object it never
/// saw added.
pub(super) fn fold_history(
    records: impl IntoIterator<Item = Result<(u64, HistoryRecord)>>,
    mut read: impl FnMut(Kind, &str) -> Option<Resource>,
) -> Result<Vec<WatchEvent>> {
    let mut out = Vec::new();
    let mut pending_added = std::collections::HashSet::new();
    for item in records {
        let (at, rec) = item?;
        let kind = Kind::from_manifest(&rec.k).ok_or_else(|| be(format!("unknown kind {}", rec.k)))?;
        let key = (kind, rec.n.clone());
        match rec.t {
            WatchType::Deleted => {
                pending_added.remove(&key);
                match rec.o.map(|raw| Resource::from_json(raw.get().as_bytes())) {
                    Some(Ok(object)) => out.push(WatchEvent { type_: WatchType::Deleted, rv: at, object }),
                    // The removal of an object that could not be read: its last readable
                    // state was reported before (if ever).
                    _ if rec.u => {}
                    _ => return Err(be("deletion record without a readable object")),
                }
            }
            t => match read(kind, &rec.n) {
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

impl Drop for SledStore {
    /// A clean close gives back the unused part of the reservations, so the next open
    /// continues right after the last version handed out.
    fn drop(&mut self) {
        let c = self.lock().clone();
        if c.rv_res > c.rv || c.eseq_res > c.eseq {
            let mut batch = sled::Batch::default();
            batch.insert(b"m/rvres".to_vec(), c.rv.to_be_bytes().to_vec());
            batch.insert(b"m/eseqres".to_vec(), c.eseq.to_be_bytes().to_vec());
            if self.tree.apply_batch(batch).is_ok() {
                let _ = self.db.flush();
            }
        }
    }
}

/// Removes history records too old to serve a watch (after a restart past a
/// reservation, the record-by-record trimming skips some).
fn trim_history(tree: &sled::Tree, rv: u64, history: u64) -> Result<()> {
    let mut batch = sled::Batch::default();
    for item in tree.range(hist_key(0)..hist_key(rv.saturating_sub(history) + 1)) {
        batch.remove(item.map_err(be)?.0);
    }
    tree.apply_batch(batch).map_err(be)
}

impl SledStore {
    /// Opens (or creates) the store in `dir` (a new folder is created 0700; an
    /// existing one keeps its mode, see `data_dir`).
    pub fn open(dir: &Path) -> Result<SledStore> {
        Self::open_with_history(dir, DEFAULT_HISTORY)
    }

    /// Opens with a given watch-history length (tests use a short one).
    pub fn open_with_history(dir: &Path, history: u64) -> Result<SledStore> {
        super::data_dir::prepare(dir)?;
        let lock = super::data_dir::lock(dir)?;
        let config =
            sled::Config::new().path(dir.join("db")).cache_capacity(32 * 1024 * 1024).mode(sled::Mode::HighThroughput);
        let db = super::data_dir::retry_while_locked(dir, std::time::Duration::from_secs(5), || config.open())?;
        let tree = db.open_tree("sectl").map_err(be)?;
        let durable_rv = read_counter(&tree, b"m/rv")?;
        // Versions up to the reservation may have been served before a crash took
        // them back: start after it.
        let rv = durable_rv.max(read_counter(&tree, b"m/rvres")?);
        let eseq = read_counter(&tree, b"m/eseq")?.max(read_counter(&tree, b"m/eseqres")?);
        let (notify, _) = tokio::sync::watch::channel(rv);
        let c = Counters { rv, eseq, rv_res: rv, eseq_res: eseq, reserve: false };
        trim_history(&tree, rv, history.max(1))?;
        Ok(SledStore {
            db,
            tree,
            writer: Mutex::new(c),
            recent: Mutex::new(Recent::default()),
            history: history.max(1),
            notify,
            unflushed: Default::default(),
            lost: (durable_rv, rv),
            _lock: lock,
        })
    }

    /// Flushes everything committed; the caller holds the writer lock, so no batch
    /// is half-applied meanwhile and the flag is cleared only once all is on disk.
    fn flush_locked(&self) -> Result<()> {
        self.db.flush().map_err(be)?;
        self.unflushed.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// After a read, before it returns: makes what it may have seen durable.
    fn settle(&self) -> Result<()> {
        if self.unflushed.load(std::sync::atomic::Ordering::SeqCst) {
            let _c = self.lock();
            if self.unflushed.load(std::sync::atomic::Ordering::SeqCst) {
                self.flush_locked()?;
            }
        }
        Ok(())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads an object; the caller holds the writer lock (so `Recent` is current).
    fn read(&self, kind: Kind, name: &str) -> Result<Option<Resource>> {
        if let Some(r) = self.recent().map.get(&obj_key(kind, name)) {
            return Ok(Some(r.clone()));
        }
        self.read_stored(kind, name)
    }

    /// Reads an object from the tree (without the writer lock).
    fn read_stored(&self, kind: Kind, name: &str) -> Result<Option<Resource>> {
        match self.tree.get(obj_key(kind, name)).map_err(be)? {
            None => Ok(None),
            Some(v) => Resource::from_json(&v)
                .map(Some)
                .map_err(|e| StoreError::Backend(format!("corrupt object {kind}/{name}: {e}"))),
        }
    }

    /// Adds one change to `batch`: the object (or its removal) and its history record.
    fn stage(&self, batch: &mut Write, c: &mut Counters, t: WatchType, obj: &mut Resource) -> Result<()> {
        let rv = c.next_rv();
        obj.meta_mut().resource_version = Some(rv.to_string());
        // A change that is refused hands its resourceVersion back.
        let bytes = super::encode_change(t, obj).inspect_err(|_| c.rv -= 1)?;
        let key = obj_key(obj.kind(), obj.name());
        let rec = HistoryRecord {
            u: false,
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
        self.recent().staged.push((key.clone(), None));
        if t == WatchType::Deleted {
            batch.remove(key);
        } else {
            batch.insert(key, bytes);
        }
        batch.history.push((rv, rec));
        Ok(())
    }

    /// Puts the write's history records into its batch (blocks of at most
    /// `HISTORY_BLOCK_RECORDS`; one entry each if their versions are not consecutive,
    /// which no write makes) and removes the entries wholly older than the window that
    /// ends at `rv`.
    fn write_history(&self, w: &mut Write, rv: u64) -> Result<()> {
        let records = std::mem::take(&mut w.history);
        let consecutive = records.windows(2).all(|p| p[1].0 == p[0].0 + 1);
        if records.len() > 1 && consecutive {
            let mut records = records.into_iter().peekable();
            while let Some(&(f, _)) = records.peek() {
                let r: Vec<_> = records.by_ref().take(HISTORY_BLOCK_RECORDS).map(|(_, r)| r).collect();
                let last = f + r.len() as u64 - 1;
                w.kv.insert(hist_key(last), serde_json::to_vec(&HistoryBlock { f, r }).map_err(be)?);
            }
        } else {
            for (at, rec) in records {
                w.kv.insert(hist_key(at), serde_json::to_vec(&rec).map_err(be)?);
            }
        }
        if rv > self.history {
            for item in self.tree.range(hist_key(0)..=hist_key(rv - self.history)) {
                w.kv.remove(item.map_err(be)?.0);
            }
        }
        Ok(())
    }

    /// The history records after `rv` up to `current`, oldest first.
    fn history_after(&self, rv: u64, current: u64) -> impl Iterator<Item = Result<(u64, HistoryRecord)>> + '_ {
        self.tree
            .range(hist_key(rv.saturating_add(1))..=hist_key(current))
            .flat_map(|item| match item.map_err(be).and_then(|(k, v)| decode_history(&k, &v)) {
                Ok(records) => records.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
            .filter(move |r| r.as_ref().map_or(true, |(at, _)| *at > rv))
    }

    /// Applies a batch atomically; with `durable`, flushes before returning.
    fn commit_with(&self, mut batch: Write, c: &mut Counters, durable: bool) -> Result<()> {
        self.write_history(&mut batch, c.rv)?;
        let mut batch = batch.kv;
        batch.insert(b"m/rv".to_vec(), c.rv.to_be_bytes().to_vec());
        batch.insert(b"m/eseq".to_vec(), c.eseq.to_be_bytes().to_vec());
        let reserve = std::mem::take(&mut c.reserve);
        if reserve {
            batch.insert(b"m/rvres".to_vec(), c.rv_res.to_be_bytes().to_vec());
            batch.insert(b"m/eseqres".to_vec(), c.eseq_res.to_be_bytes().to_vec());
        }
        // Set before the batch becomes visible: a reader that sees it flushes.
        self.unflushed.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = self.tree.apply_batch(batch) {
            c.reserve = reserve;
            self.recent().staged.clear();
            return Err(be(e));
        }
        self.recent().take_staged();
        // A raised reservation is durable before any version under it is visible.
        if durable || reserve {
            self.flush_locked()?;
        }
        self.notify.send_replace(c.rv);
        Ok(())
    }

    /// Applies a batch atomically and flushes it (user writes, blobs).
    fn commit(&self, batch: Write, c: &mut Counters) -> Result<()> {
        self.commit_with(batch, c, true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        let c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // What an earlier write staged and did not commit is not written.
        self.recent().staged.clear();
        c
    }

    /// The objects of a kind, readable and not (no lock taken).
    fn scan(&self, kind: Kind, rv: u64) -> Result<super::Listing> {
        let prefix = format!("o/{}/", kind.as_str());
        let mut out = super::Listing::default();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item.map_err(be)?;
            match Resource::from_json(&v) {
                Ok(r) => out.items.push(r),
                Err(error) => out.bad.push(super::BadObject {
                    kind,
                    name: String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    error,
                }),
            }
        }
        out.rv = out.items.iter().map(|r| r.meta().rv()).max().unwrap_or(0).max(rv);
        Ok(out)
    }

    /// Checks across objects (unit names unique across servers) against the stored
    /// servers; called under the writer lock, so two writes cannot both pass.
    fn check_across(&self, objs: &[Resource]) -> Result<()> {
        let servers: Vec<Resource> = objs.iter().filter(|r| r.kind() == Kind::SEServer).cloned().collect();
        if servers.is_empty() {
            return Ok(());
        }
        let existing = self.scan(Kind::SEServer, 0)?.items;
        let problems = crate::api::validate::check_set(&servers, &existing);
        if problems.is_empty() {
            return Ok(());
        }
        let msgs: Vec<String> = problems
            .iter()
            .map(|p| format!("{} {}: {}: {}", servers[p.index].kind(), servers[p.index].name(), p.path, p.message))
            .collect();
        Err(StoreError::Invalid(msgs.join("\n")))
    }

    /// Removes an object whose stored form cannot be decoded. When it decodes without
    /// its status (the controller's, recomputed anyway), that is its last state;
    /// otherwise the removal is recorded without one and reported as an error that
    /// says the object is gone.
    fn remove_unreadable(&self, c: &mut Counters, kind: Kind, name: &str) -> Result<Resource> {
        let raw = self.tree.get(obj_key(kind, name)).map_err(be)?.unwrap_or_default();
        let salvaged =
            serde_json::from_slice::<serde_json::Value>(&raw).map_err(|e| e.to_string()).and_then(|mut v| {
                if let Some(m) = v.as_object_mut() {
                    m.remove("status");
                }
                Resource::from_json(&serde_json::to_vec(&v).map_err(|e| e.to_string())?)
            });
        let mut batch = Write::default();
        match salvaged {
            Ok(mut last) => {
                self.stage(&mut batch, c, WatchType::Deleted, &mut last)?;
                self.commit(batch, c)?;
                Ok(last)
            }
            Err(e) => {
                let rv = c.next_rv();
                let rec = HistoryRecord {
                    t: WatchType::Deleted,
                    k: kind.as_str().to_string(),
                    n: name.to_string(),
                    o: None,
                    u: true,
                };
                batch.remove(obj_key(kind, name));
                self.recent().staged.push((obj_key(kind, name), None));
                batch.history.push((rv, rec));
                self.commit(batch, c)?;
                Err(StoreError::Backend(format!("{kind}/{name} was removed; its stored form could not be read ({e})")))
            }
        }
    }

    /// Stages a controller batch; returns what it will have written.
    fn stage_batch(&self, c: &mut Counters, b: Batch) -> Result<(Write, Committed)> {
        for (key, want) in &b.expect {
            let have = self.tree.get(format!("s/{key}").as_bytes()).map_err(be)?;
            if have.as_deref() != want.as_deref() {
                return Err(StoreError::StateChanged { key: key.clone() });
            }
        }
        let mut batch = Write::default();
        let mut done = Committed::default();
        for st in b.statuses {
            let Some(mut current) = self.read(st.kind(), st.name())? else {
                done.statuses.push(StatusWrite::Gone);
                continue;
            };
            let retried = st.meta().resource_version.is_some() && st.meta().rv() != current.meta().rv();
            if current.status_eq(&st) {
                done.statuses.push(StatusWrite::Unchanged(current));
                continue;
            }
            current.take_status_from(&st);
            self.stage(&mut batch, c, WatchType::Modified, &mut current)?;
            self.recent().staged.push((obj_key(current.kind(), current.name()), Some(current.clone())));
            done.statuses.push(StatusWrite::Written { object: current, retried });
        }
        for mut ev in b.events {
            ev.seq = c.next_eseq();
            batch.insert(event_key(ev.seq), serde_json::to_vec(&ev).map_err(be)?);
            if ev.seq > MAX_EVENTS {
                batch.remove(event_key(ev.seq - MAX_EVENTS));
            }
            done.events.push(ev);
        }
        for (k, v) in b.state {
            let key = format!("s/{k}").into_bytes();
            match v {
                Some(bytes) => batch.insert(key, bytes),
                None => batch.remove(key),
            }
        }
        Ok((batch, done))
    }

    pub(super) fn check_rv(obj: &Resource, current: &Resource) -> Result<()> {
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

    pub(super) fn fresh(obj: Resource) -> Resource {
        Self::fresh_at(obj, &super::now_rfc3339())
    }

    /// `fresh` with the creation time given (one apply stamps all its new objects with
    /// the time it started, formatted once).
    pub(super) fn fresh_at(mut obj: Resource, now: &str) -> Resource {
        let m = obj.meta_mut();
        m.uid = Some(uuid::Uuid::new_v4().to_string());
        m.generation = Some(1);
        m.creation_timestamp = Some(now.to_string());
        obj.clear_status();
        obj
    }

    /// Merges the user-owned parts of `obj` into `current`; returns whether anything
    /// changed.
    pub(super) fn merge_spec(current: &mut Resource, obj: &Resource) -> bool {
        let spec_changed = !current.spec_eq(obj);
        let fields_changed = Self::take_managed_fields(current, obj);
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
        spec_changed || meta_changed || fields_changed
    }

    /// Takes `obj`'s managedFields when it carries any (absent: the stored ones stay);
    /// returns whether they changed.
    fn take_managed_fields(current: &mut Resource, obj: &Resource) -> bool {
        let Some(given) = &obj.meta().managed_fields else { return false };
        if given.as_slice() == current.meta().managed_fields.as_deref().unwrap_or(&[]) {
            return false;
        }
        current.meta_mut().managed_fields = Some(given.clone());
        true
    }
}

impl Store for SledStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>> {
        let r = self.read_stored(kind, name);
        self.settle()?;
        r
    }

    fn list_report(&self, kind: Kind) -> Result<super::Listing> {
        // Take the rv first: the list is at least as new as it.
        let rv = self.lock().rv;
        let l = self.scan(kind, rv);
        self.settle()?;
        l
    }

    fn create(&self, obj: Resource) -> Result<Resource> {
        let mut c = self.lock();
        self.check_across(std::slice::from_ref(&obj))?;
        if self.read(obj.kind(), obj.name())?.is_some() {
            return Err(StoreError::AlreadyExists { kind: obj.kind(), name: obj.name().to_string() });
        }
        let mut obj = Self::fresh(obj);
        let mut batch = Write::default();
        self.stage(&mut batch, &mut c, WatchType::Added, &mut obj)?;
        self.commit(batch, &mut c)?;
        Ok(obj)
    }

    fn update(&self, obj: Resource) -> Result<Resource> {
        let mut c = self.lock();
        self.check_across(std::slice::from_ref(&obj))?;
        let mut current = self
            .read(obj.kind(), obj.name())?
            .ok_or_else(|| StoreError::NotFound { kind: obj.kind(), name: obj.name().to_string() })?;
        Self::check_rv(&obj, &current)?;
        if !Self::merge_spec(&mut current, &obj) {
            return Ok(current);
        }
        let mut batch = Write::default();
        self.stage(&mut batch, &mut c, WatchType::Modified, &mut current)?;
        self.commit(batch, &mut c)?;
        Ok(current)
    }

    fn update_status(&self, obj: Resource) -> Result<Resource> {
        let mut c = self.lock();
        let mut current = self
            .read(obj.kind(), obj.name())?
            .ok_or_else(|| StoreError::NotFound { kind: obj.kind(), name: obj.name().to_string() })?;
        Self::check_rv(&obj, &current)?;
        let fields_changed = Self::take_managed_fields(&mut current, &obj);
        if current.status_eq(&obj) && !fields_changed {
            return Ok(current);
        }
        current.take_status_from(&obj);
        let mut batch = Write::default();
        self.stage(&mut batch, &mut c, WatchType::Modified, &mut current)?;
        // Status is the controller's and is recomputed from the world: it is made
        // durable by sled's periodic flush (500 ms) or the next durable write.
        self.commit_with(batch, &mut c, false)?;
        Ok(current)
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<Resource> {
        let mut c = self.lock();
        let mut current = match self.read(kind, name) {
            Ok(found) => found.ok_or_else(|| StoreError::NotFound { kind, name: name.to_string() })?,
            // One that cannot be decoded can still be removed.
            Err(_) => return self.remove_unreadable(&mut c, kind, name),
        };
        let mut batch = Write::default();
        self.stage(&mut batch, &mut c, WatchType::Deleted, &mut current)?;
        self.commit(batch, &mut c)?;
        Ok(current)
    }

    fn apply(&self, objs: Vec<Resource>, dry_run: bool) -> Result<Vec<(ApplyOutcome, Resource)>> {
        let mut c = self.lock();
        // Checks across objects see the store as it is while nothing else writes.
        self.check_across(&objs)?;
        let start = c.clone();
        let now = super::now_rfc3339();
        let mut batch = Write::default();
        let mut out = Vec::with_capacity(objs.len());
        let mut seen = std::collections::HashSet::with_capacity(objs.len());
        for obj in objs {
            if !seen.insert((obj.kind(), obj.name().to_string())) {
                *c = start.clone();
                return Err(StoreError::Invalid(format!("{} is given twice", obj.key())));
            }
            let staged = match self.read(obj.kind(), obj.name()) {
                Err(e) => Err(e),
                Ok(None) => {
                    let mut o = Self::fresh_at(obj, &now);
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
                    *c = start.clone();
                    return Err(e);
                }
            }
        }
        if dry_run {
            *c = start.clone();
            return Ok(out);
        }
        if c.rv != start.rv {
            if let Err(e) = self.commit(batch, &mut c) {
                *c = start.clone();
                return Err(e);
            }
        }
        Ok(out)
    }

    fn watch_from(&self, rv: u64) -> Result<Vec<WatchEvent>> {
        let evs = self.changes_since(rv);
        self.settle()?;
        evs
    }

    fn changes_since(&self, rv: u64) -> Result<Vec<WatchEvent>> {
        // Hold the writer lock for the scan: history and objects are then one
        // snapshot, so no write can land between a record and the object it names.
        let guard = self.lock();
        let current = guard.rv;
        let oldest = current.saturating_sub(self.history);
        if rv < oldest {
            return Err(StoreError::Expired { requested: rv, oldest });
        }
        if rv > self.lost.0 && rv < self.lost.1 {
            // Handed out before a crash that took it back: start again from a list.
            return Err(StoreError::Expired { requested: rv, oldest: self.lost.1 });
        }
        if rv >= current {
            return Ok(Vec::new());
        }
        fold_history(self.history_after(rv, current), |kind, name| self.read(kind, name).unwrap_or(None))
    }

    fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn record_event(&self, mut ev: Event) -> Result<Event> {
        let mut c = self.lock();
        ev.seq = c.next_eseq();
        let mut batch = Write::default();
        batch.insert(event_key(ev.seq), serde_json::to_vec(&ev).map_err(be)?);
        if ev.seq > MAX_EVENTS {
            batch.remove(event_key(ev.seq - MAX_EVENTS));
        }
        if let Err(e) = self.commit_with(batch, &mut c, false) {
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
        self.settle()?;
        Ok(out)
    }

    fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        for item in self.tree.range(event_key(seq.saturating_add(1))..event_key(u64::MAX)).take(limit) {
            let (k, v) = item.map_err(be)?;
            if !k.starts_with(b"e/") {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(be)?);
        }
        self.settle()?;
        Ok(out)
    }

    fn last_event_seq(&self) -> Result<u64> {
        let last = match self.tree.scan_prefix(b"e/").next_back() {
            Some(item) => serde_json::from_slice::<Event>(&item.map_err(be)?.1).map_err(be)?.seq,
            None => 0,
        };
        self.settle()?;
        Ok(last)
    }

    fn ack_events(&self) -> Result<usize> {
        let mut c = self.lock();
        let mut batch = Write::default();
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
            self.commit(batch, &mut c)?;
        }
        Ok(n)
    }

    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(format!("b/{name}")).map_err(be)?.map(|v| v.to_vec()))
    }

    fn commit_batch(&self, b: Batch) -> Result<Committed> {
        let mut c = self.lock();
        let start = c.clone();
        let durable = b.durable;
        let others = !b.events.is_empty() || !b.state.is_empty();
        // (`expect` is checked under the writer lock, in `stage_batch`.)
        let staged = self.stage_batch(&mut c, b).and_then(|(batch, done)| {
            let statuses = done.statuses.iter().any(|s| matches!(s, StatusWrite::Written { .. }));
            if !others && !statuses {
                return Ok(done);
            }
            self.commit_with(batch, &mut c, durable).map(|_| done)
        });
        if staged.is_err() {
            *c = start;
        }
        staged
    }

    fn read_state(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(format!("s/{prefix}").as_bytes()) {
            let (k, v) = item.map_err(be)?;
            out.push((String::from_utf8_lossy(&k[2..]).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    fn sync(&self) -> Result<()> {
        let _c = self.lock();
        self.flush_locked()
    }

    fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut c = self.lock();
        let mut batch = Write::default();
        batch.insert(format!("b/{name}").into_bytes(), bytes.to_vec());
        self.commit(batch, &mut c)
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
        for item in self.history_after(at, current) {
            let (changed_at, rec) = item?;
            if rec.k == kind.as_str() && after.is_none_or(|a| rec.n.as_str() > a) {
                let reason = format!("{kind}/{} changed at resourceVersion {changed_at}", rec.n);
                return Err(StoreError::SnapshotGone { at, reason });
            }
        }
        Ok(())
    }
}
