//! The store on etcd v3 (`--store etcd://HOST:PORT[,HOST:PORT...]`, or `etcds://` with
//! TLS, see `etcd_tls`), through the `etcd-client` crate. Same semantics as
//! `SledStore`; several sectl processes may share one etcd.
//!
//! Key layout, all under a prefix (default `/sectl/`, or the URL's path):
//! - `o/<Kind>/<name>`    the object, JSON (stored without its resourceVersion)
//! - `d/<Kind>/<name>/<uid>` a tombstone: the last state of a deleted object (one per
//!   deletion: a uid is deleted once), kept until the history is compacted
//! - `e/<seq, u64 BE>`    the event log
//! - `b/<name>`           blobs
//! - `s/<key>`            controller state (the simulated world by entity, bookkeeping)
//! - `m/counters`         `{"eseq":M}`: the newest event seq; every write rewrites it
//! - `m/objects`          rewritten by every write that changes an object: its
//!   mod_revision is the store's resourceVersion
//! - `m/compacted`        the revision the history was compacted to (16 hex digits)
//! - `m/commit`           present only while a staged write is being applied (below)
//! - `x/<id>/<i, 8 digits>` the pieces of a staged write; `xl/<id>` its writer's
//!   liveness (bound to the writer's etcd lease)
//!
//! **resourceVersion is etcd's revision**, as in Kubernetes: an object's is the
//! mod_revision of its key (set when it is read; the stored JSON carries none), a
//! deletion's that of its tombstone, a list's (and `resource_version()`) the
//! mod_revision of `m/objects` at the revision read. Objects written by one Txn share
//! its revision. A watch from R reads, at one revision, the objects and tombstones whose
//! mod_revision is above R (etcd's `min_mod_revision` filter): each object once, in its
//! newest state, ADDED when its key was created after R (create_revision), else
//! MODIFIED; each deletion after R once. So a watcher sees the same folded changes as on
//! sled, from the current state, not from etcd's MVCC history. History is compacted
//! kube-apiserver's way: every `SECTL_ETCD_COMPACTION_INTERVAL` seconds (default 300,
//! 0: never) a process compacts etcd to the resourceVersion it saw one interval before
//! (the first to move `m/compacted` does it) and drops older tombstones. A watch from
//! before `m/compacted` is `Expired` (410 Gone, relist); a list continued at a
//! resourceVersion etcd has compacted is `SnapshotGone` (410 too). A continued list reads
//! at the first page's revision, so its pages are one consistent snapshot.
//!
//! **Concurrency.** Every write is an etcd Txn that compares `m/counters`'s
//! mod_revision with the one its reads were based on and checks that no staged write is
//! in progress; a failed compare re-reads and recomputes (optimistic concurrency across
//! processes; inside one process a mutex keeps writers from colliding). A stale
//! resourceVersion in an update is a `Conflict`, found against the object as read.
//!
//! **Atomic writes beyond etcd's limits** (128 operations, 1.5 MiB per request): a
//! write that fits is one Txn. A larger one is staged: its operations are written in
//! pieces to `x/<id>/..` (invisible to readers), then one small Txn (the compare
//! above) creates `m/commit`: from then on the write is committed. The pieces are
//! then applied to their keys in Txns guarded by `m/commit` still naming this write, and
//! a last Txn removes `m/commit` and the pieces and writes `m/counters` (and
//! `m/objects`). Pieces are
//! staged, and applied, several requests at a time (a write names each key once, so
//! their order does not matter); the writer applies them from memory. A reader reads
//! every key at one etcd revision: the newest where `m/commit` is absent, or, while a
//! write is being applied, the revision that created `m/commit` (the state before it).
//! So a reader sees all of a write or none of it. When the writer dies mid-way (its
//! `xl/<id>` goes with its lease), the next reader or writer applies the rest from the
//! pieces (idempotent puts) and finishes it. Pieces of a write that died before its
//! `m/commit` are never applied and are removed after a while. The objects of a staged
//! write get the revisions of the Txns that apply them, all between the marker's and
//! the last Txn's (which moves `m/objects`). Readers read at the marker's revision
//! while it is applied and a list's resourceVersion is never inside that window, so no
//! reader sees part of a write; a watch resumed from one of its objects' revisions (a
//! stream that broke after that event) gets the write's objects with higher ones.
//!
//! The trait is synchronous and etcd-client is async: the store owns a small tokio
//! runtime of its own and each call waits on a channel for its future, so it never
//! calls `block_on` inside another runtime.

use super::etcd_tls::{EtcdTls, PLAIN_SCHEME, TLS_SCHEME};
use super::sled_store::SledStore as Shared;
use super::{
    ApplyOutcome, Batch, Committed, Event, Page, RawPage, Result, StatusWrite, Store, StoreError, WatchEvent, WatchType,
};
use crate::api::{Kind, Resource};
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How often the history is compacted (`SECTL_ETCD_COMPACTION_INTERVAL`, seconds),
/// as kube-apiserver's `--etcd-compaction-interval`.
const COMPACTION_INTERVAL: Duration = Duration::from_secs(300);
/// How many events the event log keeps.
const MAX_EVENTS: u64 = 10_000;
/// Operations in one Txn, below etcd's default `--max-txn-ops` (128).
const TXN_OPS: usize = 120;
/// Bytes in one Txn, below etcd's default `--max-request-bytes` (1.5 MiB).
const TXN_BYTES: usize = 1024 * 1024;
/// Bytes of keys and values in one staged piece (one put). The encoding adds up to 9
/// bytes per operation: even a piece of 20-byte keys with 1-byte values (45% more)
/// stays near 1.1 MiB, below etcd's 1.5 MiB request limit.
const PIECE_BYTES: usize = 768 * 1024;
/// Requests of one staged write in flight at once (pieces staged, Txns applying them).
const IN_FLIGHT: usize = 8;
/// Single-key reads in flight at once (objects a watch or a batch names).
const READS_IN_FLIGHT: usize = 32;
/// Keys read per range request.
const PAGE: i64 = 500;
/// The lease of this process (liveness of its staged writes, leadership).
const LEASE_TTL: i64 = 10;
/// Staged pieces whose write never committed are removed after this long.
const ORPHAN_AGE: Duration = Duration::from_secs(600);
/// How long a request that could not connect is tried on other members.
const CONNECT_RETRY: Duration = Duration::from_secs(10);
/// How long a writer waits for another process's staged write to finish.
const WAIT_FOR_COMMIT: Duration = Duration::from_secs(60);

/// Where and how to reach etcd: parsed from `etcd://[user@]HOST:PORT[,HOST:PORT...][/prefix]`
/// (`etcds://` for TLS).
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdConfig {
    /// `host:port` of each member.
    pub endpoints: Vec<String>,
    /// Key prefix, ending with `/`.
    pub prefix: String,
    /// User name (the password comes from `SECTL_ETCD_PASSWORD`, never the command line).
    pub user: Option<String>,
    /// `etcds://`: TLS to every member.
    pub tls: bool,
}

impl EtcdConfig {
    /// Parses `etcd://[user@]HOST:PORT[,HOST:PORT...][/prefix]` or the same with `etcds://`.
    pub fn parse(url: &str) -> std::result::Result<EtcdConfig, String> {
        let (rest, tls) = match (url.strip_prefix(PLAIN_SCHEME), url.strip_prefix(TLS_SCHEME)) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err(unknown_scheme(url)),
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(format!("{url}: query parameters are not supported"));
        }
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (user, hosts) = match hosts.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() && !u.contains(':') => (Some(u.to_string()), h),
            Some(_) => {
                return Err(format!(
                    "{url}: give only a user name before @; the password is read from SECTL_ETCD_PASSWORD"
                ))
            }
            None => (None, hosts),
        };
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            let ok = h.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(format!("{url}: endpoint {h:?} is not HOST:PORT"));
            }
            endpoints.push(h.to_string());
        }
        let path = path.trim_matches('/');
        if path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("{url}: the key prefix may not contain spaces or control characters"));
        }
        let prefix = if path.is_empty() { "/sectl/".to_string() } else { format!("/{path}/") };
        Ok(EtcdConfig { endpoints, prefix, user, tls })
    }
}

/// What a URL of another scheme is told (`https://` is etcdctl's way to say TLS).
fn unknown_scheme(url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("etcd+https://") {
        format!("{url}: for TLS to etcd write etcds://HOST:PORT[,HOST:PORT...] (with --etcd-cafile)")
    } else {
        format!("{url}: expected etcd://[user@]HOST:PORT[,HOST:PORT...][/prefix] (etcds:// for TLS)")
    }
}

fn be(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {err}"))
}

/// `m/counters`. (Stores of earlier versions also held `rv` here: ignored.)
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
struct Counters {
    eseq: u64,
}

/// The marker of a staged write being applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    id: String,
    pieces: usize,
    counters: Counters,
    /// Whether the write changes objects (its last Txn then rewrites `m/objects`).
    #[serde(default)]
    objects: bool,
}

/// The `m/` keys as of one revision.
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    counters: Counters,
    /// `m/counters`'s mod_revision (what a write compares).
    cmod: i64,
    /// `m/objects`'s mod_revision: the store's resourceVersion.
    objects: u64,
    /// The revision the history was compacted to (0: never).
    compacted: u64,
}

/// A revision to read at, with the `m/` keys as of it when the same request read them.
struct Snap {
    rev: i64,
    meta: Option<Meta>,
}

/// One key read from etcd, with its revisions.
struct Entry {
    key: String,
    value: Vec<u8>,
    modr: i64,
    creater: i64,
}

/// One operation: key (without the prefix) and value, or None to delete.
type Op = (String, Option<Vec<u8>>);

/// A value read and its key's mod_revision.
type Versioned = (Vec<u8>, i64);

/// A write being built: the snapshot it reads and what it will write.
struct Tx {
    rev: i64,
    c: Counters,
    ops: Vec<Op>,
    /// Whether an object (or tombstone) is written: `m/objects` moves with it.
    objects: bool,
}

impl Tx {
    fn put(&mut self, key: String, v: Vec<u8>) {
        self.ops.push((key, Some(v)));
    }
    fn del(&mut self, key: String) {
        self.ops.push((key, None));
    }
}

/// The revisions a committed write was given: one for a single Txn, one per key for a
/// staged write (the Txn that applied it).
#[derive(Debug, Default)]
struct Revs {
    one: i64,
    keys: std::collections::HashMap<String, i64>,
    /// The new `m/objects` revision, when the write changed objects.
    objects: Option<i64>,
}

impl Revs {
    /// Sets the resourceVersion of an object written under `key` (an object's key, or a
    /// deletion's tombstone).
    fn stamp(&self, key: &str, obj: &mut Resource) {
        let rev = self.keys.get(key).copied().unwrap_or(self.one);
        if rev > 0 {
            obj.meta_mut().resource_version = Some(rev.to_string());
        }
    }
}

/// Sets an object's resourceVersion from its key's mod_revision.
fn with_rev(mut obj: Resource, rev: i64) -> Resource {
    obj.meta_mut().resource_version = Some(rev.to_string());
    obj
}

fn decode_obj(kind: Kind, name: &str, v: &[u8], rev: i64) -> Result<Resource> {
    Resource::from_json(v)
        .map(|o| with_rev(o, rev))
        .map_err(|e| StoreError::Backend(format!("corrupt object {kind}/{name}: {e}")))
}

fn obj_key(kind: Kind, name: &str) -> String {
    format!("o/{}/{}", kind.as_str(), name)
}

/// A deletion's tombstone: one key per deleted object (its uid).
fn tomb_key(obj: &Resource) -> String {
    format!("d/{}/{}/{}", obj.kind().as_str(), obj.name(), obj.meta().uid.as_deref().unwrap_or("-"))
}

/// Fixed-width hex: the order of the text is the order of the numbers (`m/compacted`).
fn hex16(n: u64) -> String {
    format!("{n:016x}")
}

fn event_key(seq: u64) -> String {
    format!("e/{seq:016x}")
}

/// Encodes a piece of a staged write (length-prefixed, no escaping).
fn encode_piece(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in ops {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
    out
}

fn decode_piece(mut b: &[u8]) -> Result<Vec<Op>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if b.len() < n {
            return Err(be("a staged piece is truncated"));
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Ok(h)
    }
    fn len(b: &mut &[u8]) -> Result<usize> {
        let h = take(b, 4)?;
        Ok(u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
    }
    let mut ops = Vec::new();
    while !b.is_empty() {
        let n = len(&mut b)?;
        let k = String::from_utf8(take(&mut b, n)?.to_vec()).map_err(be)?;
        let v = match take(&mut b, 1)?[0] {
            0 => None,
            _ => {
                let n = len(&mut b)?;
                Some(take(&mut b, n)?.to_vec())
            }
        };
        ops.push((k, v));
    }
    Ok(ops)
}

/// Consecutive runs of `ops` of at most `max_ops` operations and about `max_bytes`
/// bytes of keys and values (an operation larger than that is a run of its own).
fn runs(ops: &[Op], max_ops: usize, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, (k, v)) in ops.iter().enumerate() {
        let n = k.len() + v.as_ref().map_or(0, |v| v.len());
        if i > start && (i - start >= max_ops || size + n >= max_bytes) {
            out.push(start..i);
            (start, size) = (i, 0);
        }
        size += n;
    }
    if start < ops.len() {
        out.push(start..ops.len());
    }
    out
}

/// Keeps the last operation per key (etcd refuses a Txn naming a key twice).
fn dedupe(ops: Vec<Op>) -> Vec<Op> {
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    for (k, v) in ops {
        match at.get(&k) {
            Some(&i) => out[i].1 = v,
            None => {
                at.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    out
}

/// The async side: the client and the prefix (cheap to clone into a future).
#[derive(Clone)]
pub(super) struct Etcd {
    pub(super) client: Client,
    prefix: String,
    lease: Arc<AtomicI64>,
    /// The leader lease every write must still hold (0: none; see `etcd_leader`).
    pub(super) fence: Arc<AtomicI64>,
}

impl Etcd {
    pub(super) fn key(&self, k: &str) -> Vec<u8> {
        format!("{}{k}", self.prefix).into_bytes()
    }

    fn strip(&self, k: &[u8]) -> String {
        String::from_utf8_lossy(&k[self.prefix.len().min(k.len())..]).into_owned()
    }

    fn op(&self, (k, v): &Op) -> TxnOp {
        match v {
            Some(v) => TxnOp::put(self.key(k), v.clone(), None),
            None => TxnOp::delete(self.key(k), None),
        }
    }

    async fn get(&self, key: &str, rev: i64) -> Result<Option<Versioned>> {
        let opts = if rev > 0 { Some(GetOptions::new().with_revision(rev)) } else { None };
        let r = self.client.kv_client().get(self.key(key), opts).await.map_err(be)?;
        Ok(r.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    /// Keys in `[start, end)` (relative), at `rev`, at most `limit` (0: all), paged.
    async fn range(&self, start: &str, end: &str, rev: i64, limit: usize) -> Result<Vec<(String, Vec<u8>)>> {
        let mut from = self.key(start);
        let end = self.key(end);
        let mut out = Vec::new();
        loop {
            let want = if limit == 0 { PAGE } else { PAGE.min((limit - out.len()) as i64) };
            let opts = GetOptions::new().with_range(end.clone()).with_revision(rev).with_limit(want);
            let r = self.client.kv_client().get(from.clone(), Some(opts)).await.map_err(be)?;
            for kv in r.kvs() {
                out.push((self.strip(kv.key()), kv.value().to_vec()));
            }
            let last = r.kvs().last().map(|kv| kv.key().to_vec());
            match last {
                Some(mut k) if r.more() && (limit == 0 || out.len() < limit) => {
                    k.push(0);
                    from = k;
                }
                _ => return Ok(out),
            }
        }
    }

    /// Keys in `[start, end)` with their revisions, at `rev`, whose mod_revision is at
    /// least `min_mod` (0: all), paged.
    async fn range_kv(&self, start: &str, end: &str, rev: i64, min_mod: i64) -> Result<Vec<Entry>> {
        let mut from = self.key(start);
        let end = self.key(end);
        let mut out = Vec::new();
        loop {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_revision(rev)
                .with_limit(PAGE)
                .with_min_mod_revision(min_mod);
            let r = self.client.kv_client().get(from.clone(), Some(opts)).await.map_err(be)?;
            for kv in r.kvs() {
                out.push(Entry {
                    key: self.strip(kv.key()),
                    value: kv.value().to_vec(),
                    modr: kv.mod_revision(),
                    creater: kv.create_revision(),
                });
            }
            match r.kvs().last().map(|kv| kv.key().to_vec()) {
                Some(mut k) if r.more() => {
                    k.push(0);
                    from = k;
                }
                _ => return Ok(out),
            }
        }
    }

    /// The `m/` keys at `rev` (0: the newest) and that revision, in one range:
    /// `m/commit`, `m/compacted`, `m/counters`, `m/objects` are neighbours.
    async fn meta(&self, rev: i64) -> Result<(i64, Option<(Vec<u8>, i64)>, Meta)> {
        let start = self.key("m/commit");
        let mut end = self.key("m/objects");
        end.push(0);
        let mut opts = GetOptions::new().with_range(end);
        if rev > 0 {
            opts = opts.with_revision(rev);
        }
        let r = self.client.kv_client().get(start.clone(), Some(opts)).await.map_err(be)?;
        let at = r.header().map(|h| h.revision()).ok_or_else(|| be("response without a header"))?;
        let (mut marker, mut meta) = (None, Meta::default());
        for kv in r.kvs() {
            match self.strip(kv.key()).as_str() {
                "m/commit" => marker = Some((kv.value().to_vec(), kv.mod_revision())),
                "m/counters" => {
                    (meta.counters, meta.cmod) = (serde_json::from_slice(kv.value()).map_err(be)?, kv.mod_revision())
                }
                "m/objects" => meta.objects = kv.mod_revision() as u64,
                "m/compacted" => {
                    let text = String::from_utf8_lossy(kv.value()).into_owned();
                    meta.compacted =
                        u64::from_str_radix(&text, 16).map_err(|_| be(format!("m/compacted holds {text:?}")))?;
                }
                _ => {}
            }
        }
        Ok((at, marker, meta))
    }

    /// The revision a reader reads at: the newest with no staged write in progress, or
    /// the one before a staged write whose writer is alive; a dead writer's write is
    /// finished first. `writer`: wait for a live writer instead (writes need the newest).
    async fn snapshot(&self, writer: bool) -> Result<Snap> {
        let start = Instant::now();
        loop {
            let (rev, marker, meta) = self.meta(0).await?;
            let Some((raw, marker_rev)) = marker else {
                return Ok(Snap { rev, meta: Some(meta) });
            };
            let marker: Marker = serde_json::from_slice(&raw).map_err(be)?;
            let alive = self.get(&format!("xl/{}", marker.id), 0).await?.is_some();
            if alive && !writer {
                return Ok(Snap { rev: marker_rev, meta: None });
            }
            if alive {
                if start.elapsed() > WAIT_FOR_COMMIT {
                    return Err(be(format!("another process's staged write {} is still being applied", marker.id)));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            self.finish_staged(&raw, &marker).await?;
        }
    }

    /// Finishes a committed staged write another process left: reads its pieces and
    /// applies them (`apply_staged`).
    async fn finish_staged(&self, raw_marker: &[u8], m: &Marker) -> Result<()> {
        let mut pieces = Vec::with_capacity(m.pieces);
        for i in 0..m.pieces {
            let Some((bytes, _)) = self.get(&format!("x/{}/{i:08}", m.id), 0).await? else {
                // Finished by another process meanwhile (which removed the pieces).
                return Ok(());
            };
            pieces.push(decode_piece(&bytes)?);
        }
        self.apply_staged(raw_marker, m, &pieces, false).await.map(|_| ())
    }

    /// Applies the operations of a committed staged write to their keys, `IN_FLIGHT`
    /// Txns at a time (the keys of a write are distinct, so the order does not
    /// matter), each guarded by `m/commit` still holding this write's marker; then one
    /// Txn removes the marker and the pieces and writes `m/counters` (and `m/objects`).
    /// Returns the revision each key was written at, or None when a guard failed:
    /// another process finished the write meanwhile.
    async fn apply_staged(&self, raw_marker: &[u8], m: &Marker, pieces: &[Vec<Op>], own: bool) -> Result<Option<Revs>> {
        let guard = Compare::value(self.key("m/commit"), CompareOp::Equal, raw_marker.to_vec());
        let mut txns = Vec::new();
        for p in pieces {
            for r in runs(p, TXN_OPS, TXN_BYTES) {
                let ops: Vec<TxnOp> = p[r.clone()].iter().map(|o| self.op(o)).collect();
                let keys: Vec<String> = p[r].iter().map(|(k, _)| k.clone()).collect();
                txns.push((Txn::new().when([guard.clone()]).and_then(ops), keys));
            }
        }
        let kv = self.client.kv_client();
        let sends = stream::iter(txns.into_iter().enumerate()).map(move |(i, (txn, keys))| {
            if own {
                test_hooks::before_piece(i);
            }
            let mut kv = kv.clone();
            async move {
                let r = kv.txn(txn).await.map_err(be)?;
                let rev = r.header().map_or(0, |h| h.revision());
                Ok::<_, StoreError>(r.succeeded().then(|| keys.into_iter().map(|k| (k, rev)).collect::<Vec<_>>()))
            }
        });
        let applied: Vec<Option<Vec<(String, i64)>>> = sends.buffer_unordered(IN_FLIGHT).try_collect().await?;
        if applied.contains(&None) {
            return Ok(None);
        }
        let counters = serde_json::to_vec(&m.counters).map_err(be)?;
        let mut last = vec![
            TxnOp::delete(self.key("m/commit"), None),
            TxnOp::put(self.key("m/counters"), counters, None),
            TxnOp::delete(self.key(&format!("x/{}/", m.id)), Some(DeleteOptions::new().with_prefix())),
            TxnOp::delete(self.key(&format!("xl/{}", m.id)), None),
        ];
        if m.objects {
            last.push(TxnOp::put(self.key("m/objects"), Vec::new(), None));
        }
        let txn = Txn::new().when([guard]).and_then(last);
        let r = self.client.kv_client().txn(txn).instrument(crate::timing!("etcd.remove_marker")).await.map_err(be)?;
        if !r.succeeded() {
            return Ok(None);
        }
        let rev = r.header().map_or(0, |h| h.revision());
        let keys = applied.into_iter().flatten().flatten().collect();
        Ok(Some(Revs { one: 0, keys, objects: m.objects.then_some(rev) }))
    }

    /// Writes `ops` and the counters (and `m/objects` when `objects`) if nothing changed
    /// since `cmod`; None on a conflict (the caller reads again), else the revisions
    /// the write was given.
    async fn commit(&self, cmod: i64, c: Counters, objects: bool, ops: Vec<Op>) -> Result<Option<Revs>> {
        let ops = dedupe(ops);
        let counters = serde_json::to_vec(&c).map_err(be)?;
        let bytes: usize = ops.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len())).sum();
        let mut when = vec![
            Compare::mod_revision(self.key("m/counters"), CompareOp::Equal, cmod),
            Compare::version(self.key("m/commit"), CompareOp::Equal, 0),
        ];
        let fence = self.fence.load(Ordering::SeqCst);
        if fence != 0 {
            when.push(Compare::lease(self.key(super::etcd_leader::LEADER_KEY), CompareOp::Equal, fence));
        }
        if ops.len() < TXN_OPS && bytes < TXN_BYTES {
            let mut all: Vec<TxnOp> = ops.iter().map(|o| self.op(o)).collect();
            all.push(TxnOp::put(self.key("m/counters"), counters, None));
            if objects {
                all.push(TxnOp::put(self.key("m/objects"), Vec::new(), None));
            }
            let txn = Txn::new().when(when).and_then(all);
            let r = self.client.kv_client().txn(txn).await.map_err(be)?;
            let rev = r.header().map_or(0, |h| h.revision());
            return Ok(r.succeeded().then(|| Revs {
                one: rev,
                keys: Default::default(),
                objects: objects.then_some(rev),
            }));
        }
        self.commit_staged(when, c, objects, ops).await
    }

    /// A write larger than one Txn: its operations go in pieces of up to `PIECE_BYTES`
    /// to `x/<id>/..` (`IN_FLIGHT` puts at a time, with `xl/<id>` on this process's
    /// lease), then the marker Txn commits it, then `apply_staged` applies the pieces
    /// from memory (never read back).
    async fn commit_staged(
        &self,
        when: Vec<Compare>,
        c: Counters,
        objects: bool,
        ops: Vec<Op>,
    ) -> Result<Option<Revs>> {
        let id = format!("{:013}-{}", now_ms(), uuid::Uuid::new_v4().simple());
        let lease = self.lease.load(Ordering::SeqCst);
        let mut pieces = Vec::new();
        let mut rest = ops;
        for r in runs(&rest, usize::MAX, PIECE_BYTES).into_iter().rev() {
            pieces.push(rest.split_off(r.start));
        }
        pieces.reverse();
        let mut kv = self.client.kv_client();
        let alive = kv.put(self.key(&format!("xl/{id}")), b"1".to_vec(), Some(PutOptions::new().with_lease(lease)));
        let puts: Vec<(Vec<u8>, Vec<u8>)> =
            pieces.iter().enumerate().map(|(i, p)| (self.key(&format!("x/{id}/{i:08}")), encode_piece(p))).collect();
        let client = self.client.kv_client();
        let staged = stream::iter(puts)
            .map(move |(key, bytes)| {
                let mut kv = client.clone();
                async move { kv.put(key, bytes, None).await.map(|_| ()).map_err(be) }
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<()>>();
        futures_util::future::try_join(async { alive.await.map_err(be) }, staged)
            .instrument(crate::timing!("etcd.stage_pieces"))
            .await?;
        let marker = Marker { id: id.clone(), pieces: pieces.len(), counters: c, objects };
        let raw = serde_json::to_vec(&marker).map_err(be)?;
        let txn = Txn::new().when(when).and_then([TxnOp::put(self.key("m/commit"), raw.clone(), None)]);
        let committed = self
            .client
            .kv_client()
            .txn(txn)
            .instrument(crate::timing!("etcd.commit_marker"))
            .await
            .map_err(be)?
            .succeeded();
        if !committed {
            let mut kv = self.client.kv_client();
            kv.delete(self.key(&format!("x/{id}/")), Some(DeleteOptions::new().with_prefix())).await.map_err(be)?;
            kv.delete(self.key(&format!("xl/{id}")), None).await.map_err(be)?;
            return Ok(None);
        }
        let own =
            self.apply_staged(&raw, &marker, &pieces, true).instrument(crate::timing!("etcd.apply_pieces")).await?;
        match own {
            Some(revs) => Ok(Some(revs)),
            // Another process finished it: read back the revisions its Txns gave.
            None => self.revisions_of(pieces.iter().flatten().map(|(k, _)| k.clone()).collect()).await.map(Some),
        }
    }

    /// The mod_revision of each key (deleted keys: the current revision), and that of
    /// `m/objects`: what a committed write that another process finished was given.
    async fn revisions_of(&self, keys: Vec<String>) -> Result<Revs> {
        let (at, _, meta) = self.meta(0).await?;
        let reads = keys.into_iter().map(|k| {
            let e = self.clone();
            async move {
                let rev = e.get(&k, at).await?.map_or(at, |(_, r)| r);
                Ok::<_, StoreError>((k, rev))
            }
        });
        let keys = stream::iter(reads).buffered(READS_IN_FLIGHT).try_collect().await?;
        Ok(Revs { one: 0, keys, objects: Some(meta.objects as i64) })
    }

    /// Removes pieces of staged writes that never committed (their writer died).
    async fn remove_orphans(&self) -> Result<()> {
        let current = self.get("m/commit", 0).await?.map(|(v, _)| serde_json::from_slice::<Marker>(&v));
        let current = match current {
            Some(Ok(m)) => Some(m.id),
            _ => None,
        };
        let opts = GetOptions::new().with_prefix().with_keys_only();
        let r = self.client.kv_client().get(self.key("x/"), Some(opts)).await.map_err(be)?;
        let mut ids = std::collections::BTreeSet::new();
        for kv in r.kvs() {
            let k = self.strip(kv.key());
            if let Some(id) = k.strip_prefix("x/").and_then(|r| r.split('/').next()) {
                ids.insert(id.to_string());
            }
        }
        for id in ids {
            let born = id.split('-').next().and_then(|t| t.parse::<u128>().ok()).unwrap_or(0);
            let old = now_ms().saturating_sub(born) > ORPHAN_AGE.as_millis();
            if Some(&id) != current.as_ref() && old && self.get(&format!("xl/{id}"), 0).await?.is_none() {
                let opts = DeleteOptions::new().with_prefix();
                self.client.kv_client().delete(self.key(&format!("x/{id}/")), Some(opts)).await.map_err(be)?;
            }
        }
        Ok(())
    }
}

/// Whether an error says the request never reached etcd (so trying again is safe).
fn not_sent(message: &str) -> bool {
    message.contains("tcp connect error")
        || message.contains("Connection refused")
        || message.contains("error trying to connect")
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// Test-only fault hook: `SECTL_TEST_ETCD_DIE_AT_PIECE=N` ends the process (exit 86,
/// no cleanup, as a kill would) once a staged write is committed and N of the Txns
/// applying it were sent (up to `IN_FLIGHT` of them maybe not done yet): the crash
/// tests stop a writer in the middle with it.
mod test_hooks {
    /// Called before Txn `i` applying this process's own staged write is sent.
    pub fn before_piece(i: usize) {
        let at = std::env::var("SECTL_TEST_ETCD_DIE_AT_PIECE").ok().and_then(|v| v.parse::<usize>().ok());
        if at == Some(i) {
            eprintln!("SECTL_TEST_ETCD_DIE_AT_PIECE={i}: exiting in the middle of a staged write");
            std::process::exit(86);
        }
    }
}

/// The etcd-backed store.
pub struct EtcdStore {
    rt: Option<tokio::runtime::Runtime>,
    pub(super) e: Etcd,
    writer: Mutex<()>,
    notify: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        let lease = self.e.lease.load(Ordering::SeqCst);
        let mut client = self.e.client.clone();
        // Give the lease back (the keys bound to it go at once), without waiting long.
        let _ = self.block(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(lease)).await;
        });
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl EtcdStore {
    /// Connects to etcd (`etcd://...`, without TLS files), takes a lease, and finishes
    /// any staged write a dead process left.
    pub fn open(url: &str) -> Result<EtcdStore> {
        Self::open_with(url, &EtcdTls::default())
    }

    /// `open` with TLS files (`etcds://...`, see `etcd_tls`).
    pub fn open_with(url: &str, tls: &EtcdTls) -> Result<EtcdStore> {
        let cfg = EtcdConfig::parse(url).map_err(StoreError::Invalid)?;
        tls.check_flags(url).map_err(StoreError::Invalid)?;
        let interval = compaction_interval()?;
        let (rt, client, lease) = super::etcd_connect::connect(&cfg, tls, LEASE_TTL)?;
        let e = Etcd {
            client,
            prefix: cfg.prefix.clone(),
            lease: Arc::new(AtomicI64::new(lease)),
            fence: Arc::new(AtomicI64::new(0)),
        };
        let (notify, _) = tokio::sync::watch::channel(0);
        let store = EtcdStore { rt: Some(rt), e, writer: Mutex::new(()), notify: Arc::new(notify) };
        let e = store.e.clone();
        store.block(async move {
            e.snapshot(false).await?;
            e.upgrade_layout().await?;
            e.remove_orphans().await
        })??;
        store.spawn_background(interval);
        let rv = store.resource_version_now()?;
        store.notify.send_replace(rv);
        Ok(store)
    }

    /// The lease keep-alive, the watch of `m/objects` (other processes' writes) and,
    /// every `interval`, the compaction of the history.
    fn spawn_background(&self, interval: Option<Duration>) {
        let rt = self.rt.as_ref().expect("runtime");
        let e = self.e.clone();
        rt.spawn(async move {
            loop {
                let id = e.lease.load(Ordering::SeqCst);
                let mut client = e.client.clone();
                if let Ok((mut keeper, mut stream)) = client.lease_keep_alive(id).await {
                    loop {
                        if keeper.keep_alive().await.is_err() {
                            break;
                        }
                        match stream.message().await {
                            Ok(Some(r)) if r.ttl() > 0 => {}
                            Ok(Some(_)) => {
                                // Expired (the process stalled): take a new one.
                                if let Ok(r) = client.lease_grant(LEASE_TTL, None).await {
                                    e.lease.store(r.id(), Ordering::SeqCst);
                                }
                                break;
                            }
                            _ => break,
                        }
                        tokio::time::sleep(Duration::from_secs((LEASE_TTL / 3) as u64)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let e = self.e.clone();
        let notify = self.notify.clone();
        rt.spawn(async move {
            loop {
                let mut client = e.client.clone();
                if let Ok((_w, mut stream)) = client.watch(e.key("m/objects"), None).await {
                    while let Ok(Some(r)) = stream.message().await {
                        for kv in r.events().iter().filter_map(|ev| ev.kv()) {
                            notify_newer(&notify, kv.mod_revision() as u64);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        if let Some(every) = interval {
            let e = self.e.clone();
            rt.spawn(async move {
                // What the store's resourceVersion was one interval ago: compacted to next.
                let mut seen: Option<u64> = None;
                loop {
                    tokio::time::sleep(every).await;
                    match e.compact_step(seen).await {
                        Ok(now) => seen = Some(now),
                        Err(err) => tracing::warn!(error = %err, "etcd: compacting the history failed; trying again"),
                    }
                }
            });
        }
    }

    /// Runs a future on the store's runtime and waits for it (from any thread,
    /// including a worker of another runtime).
    pub(super) fn block<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let rt = self.rt.as_ref().ok_or_else(|| be("the store is closed"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| be("the etcd runtime stopped"))
    }

    /// Runs `f` on the store's runtime; a request that could not even connect (a
    /// member of the cluster is down: nothing was sent) is tried again, on another
    /// member, for up to `CONNECT_RETRY`.
    fn run<T: Send + 'static, F: Future<Output = Result<T>> + Send + 'static>(
        &self,
        f: impl Fn(Etcd) -> F,
    ) -> Result<T> {
        let start = Instant::now();
        loop {
            match self.block(f(self.e.clone()))? {
                Err(StoreError::Backend(m)) if not_sent(&m) && start.elapsed() < CONNECT_RETRY => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                r => return r,
            }
        }
    }

    fn read_snapshot(&self) -> Result<i64> {
        Ok(self.read_snap()?.rev)
    }

    fn read_snap(&self) -> Result<Snap> {
        crate::timing!("etcd.read_snapshot").in_scope(|| self.run(|e| async move { e.snapshot(false).await }))
    }

    /// A snapshot's revision and the `m/` keys at it.
    fn read_snapshot_meta(&self) -> Result<(i64, Meta)> {
        let snap = self.read_snap()?;
        Ok((snap.rev, self.snap_meta(&snap)?))
    }

    /// The `m/` keys at a snapshot (read with it, or now at its revision).
    fn snap_meta(&self, snap: &Snap) -> Result<Meta> {
        match snap.meta {
            Some(m) => Ok(m),
            None => {
                let rev = snap.rev;
                Ok(self.run(move |e| async move { e.meta(rev).await })?.2)
            }
        }
    }

    fn resource_version_now(&self) -> Result<u64> {
        Ok(self.read_snapshot_meta()?.1.objects)
    }

    fn raw(&self, key: String, rev: i64) -> Result<Option<Versioned>> {
        let _t = crate::timing!("etcd.get").entered();
        self.run(move |e| {
            let key = key.clone();
            async move { e.get(&key, rev).await }
        })
    }

    /// The values (and mod_revisions) of `keys` at `rev` (None: absent),
    /// `READS_IN_FLIGHT` requests at a time.
    fn raw_many(&self, keys: Vec<String>, rev: i64) -> Result<Vec<Option<Versioned>>> {
        if keys.len() < 2 {
            return keys.into_iter().map(|k| self.raw(k, rev)).collect();
        }
        let _t = crate::timing!("etcd.get_many").entered();
        self.run(move |e| {
            let keys = keys.clone();
            async move {
                let reads = keys.into_iter().map(|k| {
                    let e = e.clone();
                    async move { e.get(&k, rev).await }
                });
                stream::iter(reads).buffered(READS_IN_FLIGHT).try_collect().await
            }
        })
    }

    fn range(&self, start: String, end: String, rev: i64, limit: usize) -> Result<Vec<(String, Vec<u8>)>> {
        let _t = crate::timing!("etcd.range").entered();
        self.run(move |e| {
            let (start, end) = (start.clone(), end.clone());
            async move { e.range(&start, &end, rev, limit).await }
        })
    }

    fn prefix_range(&self, prefix: &str, rev: i64) -> Result<Vec<(String, Vec<u8>)>> {
        self.range(prefix.to_string(), prefix_end(prefix), rev, 0)
    }

    /// The keys under `prefix` at `rev` changed at or after `min_mod` (0: all), with
    /// their revisions.
    fn prefix_entries(&self, prefix: &str, rev: i64, min_mod: i64) -> Result<Vec<Entry>> {
        let _t = crate::timing!("etcd.range").entered();
        let (start, end) = (prefix.to_string(), prefix_end(prefix));
        self.run(move |e| {
            let (start, end) = (start.clone(), end.clone());
            async move { e.range_kv(&start, &end, rev, min_mod).await }
        })
    }

    fn read(&self, kind: Kind, name: &str, rev: i64) -> Result<Option<Resource>> {
        match self.raw(obj_key(kind, name), rev)? {
            None => Ok(None),
            Some((v, modr)) => decode_obj(kind, name, &v, modr).map(Some),
        }
    }

    /// Runs a write: `f` reads at the transaction's snapshot and stages operations;
    /// committed when nothing changed meanwhile, else read and computed again. Returns
    /// what `f` returned and the revisions the write was given (none when nothing was
    /// written), with which the caller stamps the objects it returns.
    fn transact<T>(&self, mut f: impl FnMut(&Self, &mut Tx) -> Result<T>) -> Result<(T, Revs)> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..50 {
            let snap =
                crate::timing!("etcd.snapshot").in_scope(|| self.run(|e| async move { e.snapshot(true).await }))?;
            let rev = snap.rev;
            let meta = crate::timing!("etcd.counters").in_scope(|| self.snap_meta(&snap))?;
            let c = meta.counters;
            let mut tx = Tx { rev, c, ops: Vec::new(), objects: false };
            let out = crate::timing!("etcd.stage").in_scope(|| f(self, &mut tx))?;
            if tx.ops.is_empty() && tx.c == c {
                return Ok((out, Revs::default()));
            }
            let (counters, objects, ops) = (tx.c, tx.objects, std::mem::take(&mut tx.ops));
            let fence = self.e.fence.load(Ordering::SeqCst);
            let cmod = meta.cmod;
            let committed = crate::timing!("etcd.commit").in_scope(|| {
                self.run(move |e| {
                    let ops = ops.clone();
                    async move { e.commit(cmod, counters, objects, ops).await }
                })
            })?;
            if let Some(revs) = committed {
                if let Some(r) = revs.objects {
                    notify_newer(&self.notify, r as u64);
                }
                return Ok((out, revs));
            }
            if fence != 0 && !self.still_leads(fence)? {
                return Err(be("this replica no longer leads (its leader lease is gone); nothing was written"));
            }
        }
        Err(be("gave up after 50 conflicting writes from other processes"))
    }

    /// Adds one change: the object, or its removal and its tombstone. The stored JSON
    /// carries no resourceVersion (the key's mod_revision is it); returns the key
    /// whose revision will be the change's resourceVersion.
    fn stage(&self, tx: &mut Tx, t: WatchType, obj: &mut Resource) -> Result<String> {
        obj.meta_mut().resource_version = None;
        let bytes = super::encode_change(t, obj)?;
        let key = obj_key(obj.kind(), obj.name());
        tx.objects = true;
        if t == WatchType::Deleted {
            let tomb = tomb_key(obj);
            tx.del(key);
            tx.put(tomb.clone(), bytes);
            Ok(tomb)
        } else {
            tx.put(key.clone(), bytes);
            Ok(key)
        }
    }

    fn add_event(tx: &mut Tx, mut ev: Event) -> Result<Event> {
        tx.c.eseq += 1;
        ev.seq = tx.c.eseq;
        tx.put(event_key(ev.seq), serde_json::to_vec(&ev).map_err(be)?);
        if ev.seq > MAX_EVENTS {
            tx.del(event_key(ev.seq - MAX_EVENTS));
        }
        Ok(ev)
    }

    fn scan(&self, kind: Kind, rev: i64, rv: u64) -> Result<super::Listing> {
        let prefix = format!("o/{}/", kind.as_str());
        let mut out = super::Listing::default();
        for en in self.prefix_entries(&prefix, rev, 0)? {
            let name = &en.key[prefix.len()..];
            match Resource::from_json(&en.value) {
                Ok(r) => out.items.push(with_rev(r, en.modr)),
                Err(error) => out.bad.push(super::BadObject { kind, name: name.to_string(), error }),
            }
        }
        out.rv = out.items.iter().map(|r| r.meta().rv()).max().unwrap_or(0).max(rv);
        Ok(out)
    }

    fn check_across(&self, objs: &[Resource], rev: i64) -> Result<()> {
        let servers: Vec<Resource> = objs.iter().filter(|r| r.kind() == Kind::SEServer).cloned().collect();
        if servers.is_empty() {
            return Ok(());
        }
        let existing = self.scan(Kind::SEServer, rev, 0)?.items;
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

    /// Objects of the kinds in `objs`, by key, with their mod_revisions, at the
    /// snapshot: one range per kind instead of one request per object for large applies.
    fn prefetch(&self, objs: &[Resource], rev: i64) -> Result<Option<std::collections::HashMap<String, Versioned>>> {
        if objs.len() < 16 {
            return Ok(None);
        }
        let kinds: std::collections::BTreeSet<&str> = objs.iter().map(|o| o.kind().as_str()).collect();
        let mut map = std::collections::HashMap::new();
        for k in kinds {
            map.extend(
                self.prefix_entries(&format!("o/{k}/"), rev, 0)?.into_iter().map(|en| (en.key, (en.value, en.modr))),
            );
        }
        Ok(Some(map))
    }

    /// Stages a controller batch; returns what it committed and, per status written,
    /// the key whose revision stamps it.
    fn stage_batch(&self, tx: &mut Tx, b: &Batch) -> Result<(Committed, Vec<Option<String>>)> {
        // Read at the snapshot the commit compares `m/counters` against: a writer that
        // changed the key since makes the commit fail and this check run again.
        // Everything the batch reads, in one go: the expected state, then the objects.
        let mut keys: Vec<String> = b.expect.iter().map(|(key, _)| format!("s/{key}")).collect();
        keys.extend(b.statuses.iter().map(|st| obj_key(st.kind(), st.name())));
        let mut read = self.raw_many(keys, tx.rev)?.into_iter();
        for ((key, want), have) in b.expect.iter().zip(read.by_ref()) {
            if have.as_ref().map(|(v, _)| v.as_slice()) != want.as_deref() {
                return Err(StoreError::StateChanged { key: key.clone() });
            }
        }
        let mut done = Committed::default();
        let mut stamps = Vec::new();
        for (st, raw) in b.statuses.iter().zip(read) {
            let Some((v, modr)) = raw else {
                done.statuses.push(StatusWrite::Gone);
                stamps.push(None);
                continue;
            };
            let mut current = decode_obj(st.kind(), st.name(), &v, modr)?;
            let retried = st.meta().resource_version.is_some() && st.meta().rv() != current.meta().rv();
            if current.status_eq(st) {
                done.statuses.push(StatusWrite::Unchanged(current));
                stamps.push(None);
                continue;
            }
            current.take_status_from(st);
            stamps.push(Some(self.stage(tx, WatchType::Modified, &mut current)?));
            done.statuses.push(StatusWrite::Written { object: current, retried });
        }
        for ev in &b.events {
            done.events.push(Self::add_event(tx, ev.clone())?);
        }
        for (k, v) in &b.state {
            match v {
                Some(bytes) => tx.put(format!("s/{k}"), bytes.clone()),
                None => tx.del(format!("s/{k}")),
            }
        }
        Ok((done, stamps))
    }

    /// Deletes an object whose stored form cannot be decoded: its last state as far as
    /// it can be salvaged (Ok), or the reason it cannot (Err; its tombstone is then
    /// empty and no watcher is told).
    fn remove_unreadable(
        &self,
        tx: &mut Tx,
        kind: Kind,
        name: &str,
    ) -> Result<(std::result::Result<Resource, String>, Option<String>)> {
        let raw = self.raw(obj_key(kind, name), tx.rev)?.map(|(v, _)| v).unwrap_or_default();
        let salvaged =
            serde_json::from_slice::<serde_json::Value>(&raw).map_err(|e| e.to_string()).and_then(|mut v| {
                if let Some(m) = v.as_object_mut() {
                    m.remove("status");
                }
                Resource::from_json(&serde_json::to_vec(&v).map_err(|e| e.to_string())?)
            });
        match salvaged {
            Ok(mut last) => {
                let key = self.stage(tx, WatchType::Deleted, &mut last)?;
                Ok((Ok(last), Some(key)))
            }
            Err(e) => {
                tx.objects = true;
                tx.del(obj_key(kind, name));
                tx.put(format!("d/{}/{name}/-unreadable-{}", kind.as_str(), uuid::Uuid::new_v4().simple()), Vec::new());
                Ok((Err(e), None))
            }
        }
    }

    /// Compacts the history now to the store's current resourceVersion (tests; the
    /// background task compacts to what it saw one interval before).
    pub fn compact_now(&self) -> Result<u64> {
        let to = self.resource_version_now()?;
        self.run(move |e| async move { e.compact_to(to).await })?;
        Ok(to)
    }
}

/// Wakes subscribers when `rev` is newer than what they were told.
fn notify_newer(notify: &tokio::sync::watch::Sender<u64>, rev: u64) {
    notify.send_if_modified(|v| {
        let newer = rev > *v;
        if newer {
            *v = rev;
        }
        newer
    });
}

/// `SECTL_ETCD_COMPACTION_INTERVAL` (seconds; 0: never compact), default 300.
fn compaction_interval() -> Result<Option<Duration>> {
    match std::env::var("SECTL_ETCD_COMPACTION_INTERVAL") {
        Err(_) => Ok(Some(COMPACTION_INTERVAL)),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(Duration::from_secs(n))),
            Err(_) => Err(StoreError::Invalid(format!(
                "SECTL_ETCD_COMPACTION_INTERVAL={v:?}: expected a number of seconds (0: never compact)"
            ))),
        },
    }
}

impl Etcd {
    /// Brings a store of an earlier layout to this one: its own history records
    /// (`h/`) go (the watch reads the objects' revisions now), `m/compacted` is
    /// created, and `m/objects` is written when objects exist without it.
    async fn upgrade_layout(&self) -> Result<()> {
        let mut kv = self.client.kv_client();
        let old = kv.get(self.key("h/"), Some(GetOptions::new().with_prefix().with_count_only())).await.map_err(be)?;
        if old.count() > 0 {
            kv.delete(self.key("h/"), Some(DeleteOptions::new().with_prefix())).await.map_err(be)?;
        }
        let absent = |k: &str| Compare::version(self.key(k), CompareOp::Equal, 0);
        let txn =
            Txn::new().when([absent("m/compacted")]).and_then([TxnOp::put(self.key("m/compacted"), hex16(0), None)]);
        kv.txn(txn).await.map_err(be)?;
        let objs = kv.get(self.key("o/"), Some(GetOptions::new().with_prefix().with_count_only())).await.map_err(be)?;
        if objs.count() > 0 {
            let txn =
                Txn::new().when([absent("m/objects")]).and_then([TxnOp::put(self.key("m/objects"), Vec::new(), None)]);
            kv.txn(txn).await.map_err(be)?;
        }
        Ok(())
    }

    /// One round of the background compaction: compacts to `seen` (the resourceVersion
    /// of one interval before) and returns the current one for the next round.
    async fn compact_step(&self, seen: Option<u64>) -> Result<u64> {
        if let Some(to) = seen {
            self.compact_to(to).await?;
        }
        Ok(self.meta(0).await?.2.objects)
    }

    /// Moves `m/compacted` to `to` (only forward: among several processes the first
    /// does it), drops the tombstones up to it and compacts etcd there.
    async fn compact_to(&self, to: u64) -> Result<()> {
        if to == 0 {
            return Ok(());
        }
        let mut kv = self.client.kv_client();
        let forward = Compare::value(self.key("m/compacted"), CompareOp::Less, hex16(to));
        let txn = Txn::new().when([forward]).and_then([TxnOp::put(self.key("m/compacted"), hex16(to), None)]);
        if !kv.txn(txn).await.map_err(be)?.succeeded() {
            return Ok(());
        }
        // A watch may start at `to` at the oldest, and reports what changed after it.
        let old = GetOptions::new().with_prefix().with_keys_only().with_max_mod_revision(to as i64);
        let tombs = kv.get(self.key("d/"), Some(old)).await.map_err(be)?;
        let keys: Vec<Vec<u8>> = tombs.kvs().iter().map(|kv| kv.key().to_vec()).collect();
        for chunk in keys.chunks(TXN_OPS) {
            let ops: Vec<TxnOp> = chunk.iter().map(|k| TxnOp::delete(k.clone(), None)).collect();
            kv.txn(Txn::new().and_then(ops)).await.map_err(be)?;
        }
        match kv.compact(to as i64, None).await {
            Ok(_) => Ok(()),
            // Compacted further already (another process, or etcd's own auto-compaction).
            Err(e) if e.to_string().contains("compacted") => Ok(()),
            Err(e) => Err(be(e)),
        }
    }
}

/// The smallest key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0x7f {
            b.push(last + 1);
            return String::from_utf8(b).unwrap_or_default();
        }
    }
    String::new()
}

impl Store for EtcdStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>> {
        let rev = self.read_snapshot()?;
        self.read(kind, name, rev)
    }

    fn list_report(&self, kind: Kind) -> Result<super::Listing> {
        let (rev, meta) = self.read_snapshot_meta()?;
        self.scan(kind, rev, meta.objects)
    }

    fn create(&self, obj: Resource) -> Result<Resource> {
        let ((mut o, key), revs) = self.transact(|s, tx| {
            s.check_across(std::slice::from_ref(&obj), tx.rev)?;
            if s.raw(obj_key(obj.kind(), obj.name()), tx.rev)?.is_some() {
                return Err(StoreError::AlreadyExists { kind: obj.kind(), name: obj.name().to_string() });
            }
            let mut o = Shared::fresh(obj.clone());
            let key = s.stage(tx, WatchType::Added, &mut o)?;
            Ok((o, key))
        })?;
        revs.stamp(&key, &mut o);
        Ok(o)
    }

    fn update(&self, obj: Resource) -> Result<Resource> {
        let ((mut current, key), revs) = self.transact(|s, tx| {
            s.check_across(std::slice::from_ref(&obj), tx.rev)?;
            let mut current = s
                .read(obj.kind(), obj.name(), tx.rev)?
                .ok_or_else(|| StoreError::NotFound { kind: obj.kind(), name: obj.name().to_string() })?;
            Shared::check_rv(&obj, &current)?;
            let key = match Shared::merge_spec(&mut current, &obj) {
                true => Some(s.stage(tx, WatchType::Modified, &mut current)?),
                false => None,
            };
            Ok((current, key))
        })?;
        if let Some(key) = key {
            revs.stamp(&key, &mut current);
        }
        Ok(current)
    }

    fn update_status(&self, obj: Resource) -> Result<Resource> {
        let ((mut current, key), revs) = self.transact(|s, tx| {
            let mut current = s
                .read(obj.kind(), obj.name(), tx.rev)?
                .ok_or_else(|| StoreError::NotFound { kind: obj.kind(), name: obj.name().to_string() })?;
            Shared::check_rv(&obj, &current)?;
            let key = match current.status_eq(&obj) {
                true => None,
                false => {
                    current.take_status_from(&obj);
                    Some(s.stage(tx, WatchType::Modified, &mut current)?)
                }
            };
            Ok((current, key))
        })?;
        if let Some(key) = key {
            revs.stamp(&key, &mut current);
        }
        Ok(current)
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<Resource> {
        let ((gone, key), revs) = self.transact(|s, tx| match s.read(kind, name, tx.rev) {
            Ok(found) => {
                let mut current = found.ok_or_else(|| StoreError::NotFound { kind, name: name.to_string() })?;
                let key = s.stage(tx, WatchType::Deleted, &mut current)?;
                Ok((Ok(current), Some(key)))
            }
            Err(_) => s.remove_unreadable(tx, kind, name),
        })?;
        let mut gone = gone.map_err(|e| {
            StoreError::Backend(format!("{kind}/{name} was removed; its stored form could not be read ({e})"))
        })?;
        if let Some(key) = key {
            revs.stamp(&key, &mut gone);
        }
        Ok(gone)
    }

    fn apply(&self, objs: Vec<Resource>, dry_run: bool) -> Result<Vec<(ApplyOutcome, Resource)>> {
        let (out, revs) = self.transact(|s, tx| {
            s.check_across(&objs, tx.rev)?;
            let pre = s.prefetch(&objs, tx.rev)?;
            let mut out = Vec::with_capacity(objs.len());
            let mut seen = std::collections::HashSet::new();
            for obj in &objs {
                if !seen.insert((obj.kind(), obj.name().to_string())) {
                    return Err(StoreError::Invalid(format!("{} is given twice", obj.key())));
                }
                let key = obj_key(obj.kind(), obj.name());
                let raw = match &pre {
                    Some(map) => map.get(&key).cloned(),
                    None => s.raw(key, tx.rev)?,
                };
                let current = match raw {
                    None => None,
                    Some((v, modr)) => Some(decode_obj(obj.kind(), obj.name(), &v, modr)?),
                };
                match current {
                    None => {
                        let mut o = Shared::fresh(obj.clone());
                        let key = s.stage(tx, WatchType::Added, &mut o)?;
                        out.push((ApplyOutcome::Created, o, Some(key)));
                    }
                    Some(mut current) => {
                        Shared::check_rv(obj, &current)?;
                        let was = current.meta().resource_version.clone();
                        if Shared::merge_spec(&mut current, obj) {
                            let key = s.stage(tx, WatchType::Modified, &mut current)?;
                            if dry_run {
                                // Not written: it keeps the resourceVersion it has.
                                current.meta_mut().resource_version = was;
                            }
                            out.push((ApplyOutcome::Configured, current, Some(key)));
                        } else {
                            out.push((ApplyOutcome::Unchanged, current, None));
                        }
                    }
                }
            }
            if dry_run {
                tx.ops.clear();
                tx.objects = false;
                tx.c = s.snap_meta(&Snap { rev: tx.rev, meta: None })?.counters;
            }
            Ok(out)
        })?;
        Ok(out
            .into_iter()
            .map(|(outcome, mut o, key)| {
                if let (Some(key), false) = (key, dry_run) {
                    revs.stamp(&key, &mut o);
                }
                (outcome, o)
            })
            .collect())
    }

    fn watch_from(&self, rv: u64) -> Result<Vec<WatchEvent>> {
        let (rev, meta) = self.read_snapshot_meta()?;
        if rv < meta.compacted {
            return Err(StoreError::Expired { requested: rv, oldest: meta.compacted });
        }
        if rv >= meta.objects {
            return Ok(Vec::new());
        }
        let from = (rv + 1) as i64;
        let mut out: Vec<(i64, String, WatchEvent)> = Vec::new();
        for en in self.prefix_entries("d/", rev, from)? {
            // The removal of an object that could not be read: its last readable state
            // was reported before (if ever).
            if en.value.is_empty() {
                continue;
            }
            let object =
                Resource::from_json(&en.value).map_err(|e| be(format!("tombstone {} cannot be read: {e}", en.key)))?;
            let ev = WatchEvent { type_: WatchType::Deleted, rv: en.modr as u64, object: with_rev(object, en.modr) };
            out.push((en.modr, en.key, ev));
        }
        for en in self.prefix_entries("o/", rev, from)? {
            // One that cannot be read is left out (as a list reports it apart).
            let Ok(object) = Resource::from_json(&en.value) else { continue };
            let type_ = if en.creater > rv as i64 { WatchType::Added } else { WatchType::Modified };
            out.push((en.modr, en.key, WatchEvent { type_, rv: en.modr as u64, object: with_rev(object, en.modr) }));
        }
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(out.into_iter().map(|(_, _, ev)| ev).collect())
    }

    fn resource_version(&self) -> u64 {
        match self.resource_version_now() {
            Ok(rv) => rv,
            Err(e) => {
                tracing::warn!(error = %e, "etcd: resourceVersion unavailable; using the last one seen");
                *self.notify.borrow()
            }
        }
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn record_event(&self, ev: Event) -> Result<Event> {
        Ok(self.transact(|_, tx| Self::add_event(tx, ev.clone()))?.0)
    }

    fn events(&self) -> Result<Vec<Event>> {
        let rev = self.read_snapshot()?;
        self.prefix_range("e/", rev)?.iter().map(|(_, v)| serde_json::from_slice(v).map_err(be)).collect()
    }

    fn ack_events(&self) -> Result<usize> {
        Ok(self
            .transact(|s, tx| {
                let mut n = 0;
                for (k, v) in s.prefix_range("e/", tx.rev)? {
                    let mut ev: Event = serde_json::from_slice(&v).map_err(be)?;
                    if !ev.acknowledged {
                        ev.acknowledged = true;
                        n += 1;
                        tx.put(k, serde_json::to_vec(&ev).map_err(be)?);
                    }
                }
                Ok(n)
            })?
            .0)
    }

    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let rev = self.read_snapshot()?;
        Ok(self.raw(format!("b/{name}"), rev)?.map(|(v, _)| v))
    }

    fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.transact(|_, tx| {
            tx.put(format!("b/{name}"), bytes.to_vec());
            Ok(())
        })
        .map(|_| ())
    }

    fn commit_batch(&self, b: Batch) -> Result<Committed> {
        let ((mut done, stamps), revs) = self.transact(|s, tx| s.stage_batch(tx, &b))?;
        for (st, key) in done.statuses.iter_mut().zip(stamps) {
            if let (StatusWrite::Written { object, .. }, Some(key)) = (st, key) {
                revs.stamp(&key, object);
            }
        }
        Ok(done)
    }

    fn read_state(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let rev = self.read_snapshot()?;
        let p = format!("s/{prefix}");
        Ok(self.prefix_range(&p, rev)?.into_iter().map(|(k, v)| (k[2..].to_string(), v)).collect())
    }

    fn sync(&self) -> Result<()> {
        // etcd has made every write durable (on a quorum) before the Txn returned.
        Ok(())
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

    /// A continued list (`at`) reads at the first page's revision: etcd keeps it until
    /// the history is compacted past it (then `SnapshotGone`, 410).
    fn list_page_json(&self, kind: Kind, after: Option<&str>, limit: usize, at: Option<u64>) -> Result<RawPage> {
        let (now, meta) = self.read_snapshot_meta()?;
        let (rev, rv) = match at {
            None => (now, meta.objects),
            Some(at) if at > meta.objects => {
                return Err(StoreError::Invalid(format!(
                    "resourceVersion {at} is newer than the store's ({})",
                    meta.objects
                )))
            }
            Some(at) if at < meta.compacted || at == 0 => {
                let reason = format!("the history was compacted up to resourceVersion {}", meta.compacted);
                return Err(StoreError::SnapshotGone { at, reason });
            }
            Some(at) => (at as i64, at),
        };
        let prefix = format!("o/{}/", kind.as_str());
        let start = match after {
            Some(a) => format!("{}\0", obj_key(kind, a)),
            None => prefix.clone(),
        };
        let end = prefix_end(&prefix);
        let want = limit.saturating_add(1);
        let found = self.run(move |e| {
            let (start, end) = (start.clone(), end.clone());
            async move { e.range_limited(&start, &end, rev, want).await }
        });
        let mut found = match found {
            Err(StoreError::Backend(m)) if m.contains("compacted") => {
                return Err(StoreError::SnapshotGone { at: rv, reason: format!("etcd compacted its history ({m})") })
            }
            r => r?,
        };
        let more = found.len() > limit;
        found.truncate(limit);
        let mut items = Vec::with_capacity(found.len());
        for en in found {
            let name = en.key[prefix.len()..].to_string();
            // The stored JSON has no resourceVersion: the key's revision is put in.
            let json = match Resource::from_json(&en.value) {
                Ok(o) => with_rev(o, en.modr).to_json(),
                Err(e) => return Err(StoreError::Backend(format!("corrupt object {}/{name}: {e}", kind.as_str()))),
            };
            items.push((name, json));
        }
        Ok(RawPage { items, rv, more })
    }
}

impl Etcd {
    /// At most `limit` keys of `[start, end)` at `rev`, with their revisions.
    async fn range_limited(&self, start: &str, end: &str, rev: i64, limit: usize) -> Result<Vec<Entry>> {
        let opts = GetOptions::new().with_range(self.key(end)).with_revision(rev).with_limit(limit as i64);
        let r = self.client.kv_client().get(self.key(start), Some(opts)).await.map_err(be)?;
        Ok(r.kvs()
            .iter()
            .map(|kv| Entry {
                key: self.strip(kv.key()),
                value: kv.value().to_vec(),
                modr: kv.mod_revision(),
                creater: kv.create_revision(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_are_refused_clearly() {
        let c = EtcdConfig::parse("etcd://127.0.0.1:2379,10.0.0.2:2379").unwrap();
        assert_eq!(c.endpoints, vec!["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(c.prefix, "/sectl/");
        assert_eq!(c.user, None);
        let c = EtcdConfig::parse("etcd://ops@h:1/site-a").unwrap();
        assert_eq!((c.user.as_deref(), c.prefix.as_str(), c.tls), (Some("ops"), "/site-a/", false));
        let c = EtcdConfig::parse("etcds://ops@h:1,h2:2/site-a").unwrap();
        assert_eq!(
            (c.endpoints.len(), c.user.as_deref(), c.prefix.as_str(), c.tls),
            (2, Some("ops"), "/site-a/", true)
        );
        for (bad, says) in [
            ("http://h:1", "expected etcd://"),
            ("https://h:1", "etcds://"),
            ("etcd+https://h:1", "etcds://"),
            ("etcd://h", "not HOST:PORT"),
            ("etcd://h:99999", "not HOST:PORT"),
            ("etcd://u:pw@h:1", "SECTL_ETCD_PASSWORD"),
            ("etcd://h:1?x=1", "query"),
        ] {
            let e = EtcdConfig::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn pieces_round_trip_and_refuse_truncation() {
        let ops: Vec<Op> = vec![("o/VMDefinition/a".into(), Some(b"{}".to_vec())), ("h/1".into(), None)];
        let enc = encode_piece(&ops);
        assert_eq!(decode_piece(&enc).unwrap(), ops);
        assert!(decode_piece(&enc[..enc.len() - 1]).is_err());
    }

    #[test]
    fn dedupe_keeps_the_last_operation_per_key() {
        let ops: Vec<Op> = vec![("a".into(), Some(vec![1])), ("b".into(), None), ("a".into(), None)];
        assert_eq!(dedupe(ops), vec![("a".to_string(), None), ("b".to_string(), None)]);
    }

    #[test]
    fn runs_respect_the_operation_and_byte_limits() {
        let op = |n: usize| -> Op { ("k".into(), Some(vec![0; n])) };
        let ops: Vec<Op> = vec![op(9), op(9), op(9), op(30), op(1), op(1), op(1)];
        // At most 2 operations and about 20 bytes each; the 31-byte one goes alone.
        assert_eq!(runs(&ops, 2, 21), vec![0..2, 2..3, 3..4, 4..6, 6..7]);
        assert_eq!(runs(&ops, usize::MAX, 1000), vec![0..7]);
        assert!(runs(&[], 2, 10).is_empty());
    }

    #[test]
    fn prefix_end_is_just_past_the_prefix() {
        assert_eq!(prefix_end("o/VM/"), "o/VM0");
        // m/compacted compares as text: the order of the text is that of the numbers.
        assert!(hex16(9) < hex16(10) && hex16(255) < hex16(256) && hex16(0) < hex16(u64::MAX));
    }
}
