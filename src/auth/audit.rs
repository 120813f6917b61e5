//! The audit log (s2.3.2: "who has performed which action on which unit with what
//! success"), tamper-evident: each record carries the SHA-256 of the one before, so
//! an edited, inserted or deleted record breaks the chain and `verify` names it.
//!
//! Storage: state entries `audit/r/<seq, 20 digits>` (one per record) and `audit/head`
//! (next seq, first kept seq, hash of the newest record, hash of the last trimmed
//! one), written with `commit_batch` so every backend keeps them.
//!
//! Durability decision: a record is committed durably (`Batch::durable`) after the
//! write it describes succeeded and before the request is answered; a request is
//! acknowledged only after its record is on disk, so an acknowledged write is never
//! missing from the log. A crash between the write and its record can leave a write
//! that nobody was told succeeded without a record; the reverse (a record of a
//! write that did not happen) cannot occur. Records that carry their own change (user
//! add, delete, rotate) are in the same batch as it. Refusals are recorded before the
//! refusal is answered.
//!
//! Retention: the newest `DEFAULT_RETENTION` records are kept (older ones are removed
//! in the batch that appends new ones); the head keeps the hash of the newest removed
//! record, so the chain still verifies from the oldest kept one.
//!
//! All appends of a process go through one lock (`lock`), which also serialises
//! user changes (check, then write).

use crate::store::{Batch, StateWrites, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{Mutex, MutexGuard};

/// Records kept by default (about 30 MB at 300 bytes each).
pub const DEFAULT_RETENTION: u64 = 100_000;
const RECORDS: &str = "audit/r/";
const HEAD: &str = "audit/head";

static APPEND: Mutex<()> = Mutex::new(());

/// The process-wide lock of audit appends and user changes.
pub fn lock() -> MutexGuard<'static, ()> {
    APPEND.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Carried out.
    Ok,
    /// Refused: the user lacks a right.
    Denied,
    /// Refused: bad input, unknown object.
    Invalid,
    /// Refused: conflicting with the stored state.
    Conflict,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Conflict => "conflict",
        })
    }
}

impl Outcome {
    /// The outcome a store error stands for.
    pub fn of(e: &StoreError) -> Outcome {
        match e {
            StoreError::Conflict { .. } | StoreError::AlreadyExists { .. } | StoreError::SnapshotGone { .. } => {
                Outcome::Conflict
            }
            _ => Outcome::Invalid,
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The CLI on the embedded store.
    Cli,
    /// The REST API.
    Http,
    /// The watched folder of `serve --watch`.
    Gitops,
}

/// A record before it is chained.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// Who.
    pub user: String,
    /// From where.
    pub source: Source,
    /// What (create, update, patch, delete, apply, status, ack, sim, prune, user-add, ...).
    pub verb: String,
    /// Kind (or World, Events, User, Sources).
    pub kind: String,
    /// Object name (`-` when none).
    pub name: String,
    /// Server units it touched.
    pub server_units: Vec<String>,
    /// Result.
    pub result: Outcome,
    /// Short reason.
    pub reason: String,
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When (RFC 3339, wall clock, milliseconds).
    pub time: String,
    /// Who.
    pub user: String,
    /// From where.
    pub source: Source,
    /// What.
    pub verb: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Server units touched.
    #[serde(default)]
    pub server_units: Vec<String>,
    /// Result.
    pub result: Outcome,
    /// Short reason.
    pub reason: String,
    /// Hash of the record before (empty for the first record ever).
    pub prev: String,
    /// SHA-256 of `prev` and this record (with `hash` empty), hex.
    pub hash: String,
}

impl Record {
    /// The hash this record should carry.
    pub fn digest(&self) -> String {
        let mut r = self.clone();
        r.hash.clear();
        let mut h = Sha256::new();
        h.update(self.prev.as_bytes());
        h.update(serde_json::to_vec(&r).expect("a record serialises"));
        super::users::hex(&h.finalize())
    }
}

/// The chain's head.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    /// Seq of the next record.
    next: u64,
    /// Seq of the oldest kept record.
    first: u64,
    /// Hash of the newest record.
    last_hash: String,
    /// Hash of the newest removed record (what the oldest kept one's `prev` is).
    anchor: String,
}

fn key(seq: u64) -> String {
    format!("{RECORDS}{seq:020}")
}

fn bad(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("audit log: {what}"))
}

/// How often an append is tried again when another writer moved the head first (a
/// replica sharing the etcd; in one process `lock()` serialises appends).
const TRIES: usize = 200;

/// The chain's head as read, to append after it: the append commits only if the head
/// is still what was read (`Batch::expect`), so two processes sharing a store never
/// write the same seq or fork the chain. Read it *before* the state a decision rests on
/// (a user change checks the users after `begin`): whoever changes that state also
/// moves the head, so a decision on stale state fails to commit and is made again.
pub struct Tx {
    head: Head,
    raw: Option<Vec<u8>>,
}

impl Tx {
    /// Reads the head.
    pub fn begin(store: &dyn Store) -> Result<Tx, StoreError> {
        let raw = store.read_state(HEAD)?.into_iter().find(|(k, _)| k == HEAD).map(|(_, v)| v);
        let head = match &raw {
            Some(v) => serde_json::from_slice(v).map_err(|e| bad(format!("head cannot be read: {e}")))?,
            None => Head { next: 1, first: 1, ..Default::default() },
        };
        Ok(Tx { head, raw })
    }
}

/// Whether `e` says another writer came first (read again and retry).
pub fn changed_first(e: &StoreError) -> bool {
    matches!(e, StoreError::StateChanged { .. })
}

/// Runs `f` until it does not fail with another writer coming first (`is_changed`), at
/// most `TRIES` times, with a short growing pause between tries.
pub fn retrying<T, E>(mut f: impl FnMut() -> Result<T, E>, is_changed: impl Fn(&E) -> bool) -> Result<T, E> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if is_changed(&e) && tries + 1 < TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(tries.min(20) as u64));
            }
            r => return r,
        }
    }
}

/// Appends records (and `extra` state writes, atomically with them), durably, after
/// the head read now. The caller holds `lock()`. Fails with `StateChanged` when another
/// process appended in between (`append` retries; see `Tx`).
pub fn append_locked(
    store: &dyn Store,
    drafts: Vec<Draft>,
    extra: StateWrites,
    retention: u64,
) -> Result<Vec<Record>, StoreError> {
    append_after(store, Tx::begin(store)?, drafts, extra, retention)
}

/// Appends after the head `tx` read (see `append_locked`).
pub fn append_after(
    store: &dyn Store,
    tx: Tx,
    drafts: Vec<Draft>,
    extra: StateWrites,
    retention: u64,
) -> Result<Vec<Record>, StoreError> {
    let Tx { head: mut h, raw } = tx;
    let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let mut state = extra;
    let mut out = Vec::with_capacity(drafts.len());
    for d in drafts {
        let mut r = Record {
            seq: h.next,
            time: time.clone(),
            user: d.user,
            source: d.source,
            verb: d.verb,
            kind: d.kind,
            name: d.name,
            server_units: d.server_units,
            result: d.result,
            reason: d.reason,
            prev: h.last_hash.clone(),
            hash: String::new(),
        };
        r.hash = r.digest();
        h.last_hash = r.hash.clone();
        h.next += 1;
        state.push((key(r.seq), Some(serde_json::to_vec(&r).expect("a record serialises"))));
        out.push(r);
    }
    trim(store, &mut h, &mut state, retention.max(1))?;
    state.push((HEAD.to_string(), Some(serde_json::to_vec(&h).expect("a head serialises"))));
    let expect = vec![(HEAD.to_string(), raw)];
    store.commit_batch(Batch { state, durable: true, expect, ..Default::default() })?;
    Ok(out)
}

/// Removes the oldest records beyond `retention`, remembering the newest removed hash.
fn trim(store: &dyn Store, h: &mut Head, state: &mut StateWrites, retention: u64) -> Result<(), StoreError> {
    let kept = h.next - h.first;
    if kept <= retention {
        return Ok(());
    }
    let new_first = h.next - retention;
    let last_removed = new_first - 1;
    // The anchor is the hash of the last removed record: in this batch or stored.
    let mut anchor = None;
    for (k, v) in state.iter() {
        if *k == key(last_removed) {
            anchor = v.as_ref().and_then(|v| serde_json::from_slice::<Record>(v).ok()).map(|r| r.hash);
        }
    }
    if anchor.is_none() {
        let stored = store.read_state(&key(last_removed))?;
        anchor = stored.first().and_then(|(_, v)| serde_json::from_slice::<Record>(v).ok()).map(|r| r.hash);
    }
    h.anchor = anchor.ok_or_else(|| bad(format!("record {last_removed} to trim cannot be read")))?;
    let fresh: std::collections::HashSet<String> = (h.first.max(new_first)..h.next).map(key).collect();
    state.retain(|(k, _)| !k.starts_with(RECORDS) || fresh.contains(k));
    for seq in h.first..new_first {
        state.push((key(seq), None));
    }
    h.first = new_first;
    Ok(())
}

/// Appends records durably with the default retention.
pub fn append(store: &dyn Store, drafts: Vec<Draft>) -> Result<Vec<Record>, StoreError> {
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let _g = lock();
    retrying(|| append_locked(store, drafts.clone(), Vec::new(), DEFAULT_RETENTION), changed_first)
}

/// All kept records, oldest first. A record that cannot be read is an error.
pub fn records(store: &dyn Store) -> Result<Vec<Record>, StoreError> {
    store
        .read_state(RECORDS)?
        .into_iter()
        .map(|(k, v)| serde_json::from_slice(&v).map_err(|e| bad(format!("{k} cannot be read: {e}"))))
        .collect()
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Records checked.
    pub checked: u64,
    /// The first broken record and why, or None when intact.
    pub broken: Option<Broken>,
}

/// The first place the chain breaks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Broken {
    /// The seq of the record that is wrong or missing.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// Checks the chain from the oldest kept record to the head.
pub fn verify(store: &dyn Store) -> Result<Verdict, StoreError> {
    let h = Tx::begin(store)?.head;
    let mut prev_hash = h.anchor.clone();
    let mut expect = h.first;
    let mut checked = 0;
    let broken = |checked, seq, reason: String| Ok(Verdict { checked, broken: Some(Broken { seq, reason }) });
    for (k, v) in store.read_state(RECORDS)? {
        let at: u64 = k[RECORDS.len()..].parse().unwrap_or(0);
        let r: Record = match serde_json::from_slice(&v) {
            Ok(r) => r,
            Err(e) => return broken(checked, at, format!("record {at} cannot be read ({e}): edited")),
        };
        if at != expect {
            let reason = if at > expect {
                format!("record {expect} is missing (deleted); the next kept is {at}")
            } else {
                format!("record {at} is older than the oldest kept ({expect}): inserted")
            };
            return broken(checked, expect.min(at), reason);
        }
        if r.seq != at {
            return broken(checked, at, format!("record {at} says it is record {}: edited", r.seq));
        }
        if r.prev != prev_hash {
            return broken(checked, at, format!("record {at} does not carry the hash of record {}: edited", at - 1));
        }
        if r.digest() != r.hash {
            return broken(checked, at, format!("record {at} does not match its hash: edited"));
        }
        prev_hash = r.hash;
        expect += 1;
        checked += 1;
    }
    if expect != h.next {
        return broken(checked, expect, format!("records {expect} to {} are missing (deleted)", h.next - 1));
    }
    if prev_hash != h.last_hash {
        return broken(checked, h.next.saturating_sub(1), "the newest record does not match the head: edited".into());
    }
    Ok(Verdict { checked, broken: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    fn draft(n: usize) -> Draft {
        Draft {
            user: "bob".into(),
            source: Source::Http,
            verb: "create".into(),
            kind: "VMDefinition".into(),
            name: format!("vm{n}"),
            server_units: vec!["SU1".into()],
            result: Outcome::Ok,
            reason: "created".into(),
        }
    }

    fn raw(store: &dyn Store, seq: u64) -> Vec<u8> {
        store.read_state(&key(seq)).unwrap().remove(0).1
    }

    #[test]
    fn chain_verifies_and_names_an_edited_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        append(&s, (0..5).map(draft).collect()).unwrap();
        let v = verify(&s).unwrap();
        assert_eq!((v.checked, v.broken), (5, None));
        let edited = String::from_utf8(raw(&s, 3)).unwrap().replace("\"bob\"", "\"eve\"");
        s.commit_batch(Batch { state: vec![(key(3), Some(edited.into_bytes()))], ..Default::default() }).unwrap();
        let b = verify(&s).unwrap().broken.unwrap();
        assert_eq!(b.seq, 3, "{b:?}");
        assert!(b.reason.contains("edited"), "{b:?}");
    }

    #[test]
    fn deleted_records_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        append(&s, (0..5).map(draft).collect()).unwrap();
        s.commit_batch(Batch { state: vec![(key(2), None)], ..Default::default() }).unwrap();
        let b = verify(&s).unwrap().broken.unwrap();
        assert_eq!(b.seq, 2, "{b:?}");
        assert!(b.reason.contains("missing"), "{b:?}");
        // The newest one deleted: the head still knows it.
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        append(&s, (0..5).map(draft).collect()).unwrap();
        s.commit_batch(Batch { state: vec![(key(5), None)], ..Default::default() }).unwrap();
        assert_eq!(verify(&s).unwrap().broken.unwrap().seq, 5);
    }

    #[test]
    fn retention_trims_and_the_chain_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        for i in 0..4 {
            let _g = lock();
            append_locked(&s, (0..3).map(|n| draft(i * 3 + n)).collect(), vec![], 5).unwrap();
        }
        let rs = records(&s).unwrap();
        assert_eq!(rs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![8, 9, 10, 11, 12]);
        assert_eq!(verify(&s).unwrap(), Verdict { checked: 5, broken: None });
        // Removing the oldest kept record is seen too.
        s.commit_batch(Batch { state: vec![(key(8), None)], ..Default::default() }).unwrap();
        assert_eq!(verify(&s).unwrap().broken.unwrap().seq, 8);
    }
}
