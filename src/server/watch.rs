//! Watch, as Kubernetes clients expect it (`?watch=true`): JSON lines
//! `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`.
//!
//! * No `resourceVersion`, or `0`: ADDED for every object selected now, then the
//!   changes after that list. A number N: the changes after N (410 when the history
//!   no longer reaches back, before the stream starts or as an ERROR line in it).
//! * `labelSelector`/`fieldSelector` filter the stream. An object that stops matching
//!   is sent as DELETED and one that starts matching as ADDED (when the stream began
//!   with the current state, so it knows what the client has), as Kubernetes does.
//! * `timeoutSeconds` ends the stream; `allowWatchBookmarks=true` sends a BOOKMARK
//!   carrying the current resourceVersion every `BOOKMARK_EVERY`.
//!
//! A task per watch writes lines into a small bounded channel (back-pressure on a slow
//! client) and ends when the client goes away, the server stops or time is up. The
//! changes come from the one reader all streams share (`watch_hub`); a stream reads
//! the history itself only to reach the hub's place (it started behind or ahead of
//! it, or lagged). A BOOKMARK carries the resourceVersion up to which every change
//! has been sent.

use super::selector::Selector;
use super::status;
use super::watch_hub::{Batch, Joined};
use crate::api::{Kind, Resource, API_VERSION};
use crate::store::{Store, WatchEvent, WatchType};
use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// How often an idle watch that allows bookmarks gets one.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(3);

/// What a watch request asked for.
pub struct Params {
    /// Where to start: None (or Some(0)) is "the current state first".
    pub from: Option<u64>,
    /// End the stream after this long.
    pub timeout: Option<Duration>,
    /// Send BOOKMARK events.
    pub bookmarks: bool,
    /// Which objects.
    pub selector: Selector,
}

fn line(type_: &str, object: &impl serde::Serialize) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": type_, "object": object})))
}

fn bookmark(kind: Kind, rv: u64) -> Bytes {
    line(
        "BOOKMARK",
        &json!({"kind": kind.as_str(), "apiVersion": API_VERSION, "metadata": {"resourceVersion": rv.to_string()}}),
    )
}

/// Streams the watch from where `start` put it on the hub.
pub fn respond(
    store: Arc<dyn Store>,
    kind: Kind,
    p: Params,
    start: Start,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(run(store, kind, p, start, tx, stop));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    Response::builder().header("Content-Type", "application/json").body(Body::from_stream(body)).expect("response")
}

/// Where a stream starts: its place on the hub, and, for a watch from a given
/// resourceVersion, the request's own `watch_from` of it (read after joining, which
/// also refused a version too old before the stream began).
pub struct Start {
    /// The hub's batches after `joined.at`.
    pub joined: Joined,
    /// `watch_from(resourceVersion)`, when one was given.
    pub read: Option<Vec<WatchEvent>>,
}

/// Which event, if any, the client gets for a change, given what it was sent before.
/// `known`: the stream began with the current state, so `sent` is all it has.
fn event_for(
    sel: &Selector,
    sent: &mut HashSet<String>,
    known: bool,
    t: WatchType,
    obj: &Resource,
) -> Option<&'static str> {
    let name = obj.name().to_string();
    let now = sel.matches(obj);
    let was = sent.contains(&name);
    match t {
        WatchType::Deleted => {
            sent.remove(&name);
            (was || (now && !known)).then_some("DELETED")
        }
        WatchType::Added | WatchType::Modified if now => {
            sent.insert(name);
            Some(match t {
                WatchType::Added => "ADDED",
                _ if known && !was => "ADDED",
                _ => "MODIFIED",
            })
        }
        _ => {
            sent.remove(&name);
            was.then_some("DELETED")
        }
    }
}

/// One stream's state: what it has sent, and up to which resourceVersion.
struct Stream {
    store: Arc<dyn Store>,
    kind: Kind,
    selector: Selector,
    known: bool,
    sent: HashSet<String>,
    /// Every change up to here has been sent.
    rv: u64,
    /// Objects whose ADDED a read of its own folded into a change after where it
    /// stopped: the batch that brings the change reports it as ADDED, as one
    /// `watch_from` over both would have.
    added: HashSet<String>,
    tx: mpsc::Sender<Bytes>,
}

impl Stream {
    /// Sends one change if the client gets it; false when the client is gone.
    async fn send(&mut self, t: WatchType, obj: &Resource, json: Option<&str>) -> bool {
        let t = match t {
            WatchType::Modified if self.added.remove(obj.name()) => WatchType::Added,
            t => {
                self.added.remove(obj.name());
                t
            }
        };
        let Some(name) = event_for(&self.selector, &mut self.sent, self.known, t, obj) else {
            return true;
        };
        let bytes = match json {
            Some(j) => Bytes::from(format!("{{\"type\":\"{name}\",\"object\":{j}}}\n")),
            None => line(name, obj),
        };
        self.tx.send(bytes).await.is_ok()
    }

    /// Sends what a read of its own (`watch_from(self.rv)`) found, up to `upto`; the
    /// rest comes with the hub's batches.
    async fn take_read(&mut self, evs: Vec<WatchEvent>, upto: u64) -> bool {
        let kind = self.kind;
        for ev in evs.iter().filter(|e| e.object.kind() == kind) {
            if ev.rv <= upto {
                if !self.send(ev.type_, &ev.object, None).await {
                    return false;
                }
            } else if ev.type_ == WatchType::Added {
                self.added.insert(ev.object.name().to_string());
            }
        }
        self.rv = self.rv.max(upto);
        true
    }

    /// Reads its own way from `self.rv` to `upto` (410 as an ERROR line when the
    /// history no longer reaches back); false when the stream ends.
    async fn catch_up(&mut self, upto: u64) -> bool {
        let (store, from) = (self.store.clone(), self.rv);
        match tokio::task::spawn_blocking(move || store.watch_from(from)).await {
            Ok(Ok(evs)) => self.take_read(evs, upto).await,
            Ok(Err(e)) => self.error(&e.to_string()).await,
            Err(e) => self.error(&format!("reading the history: {e}")).await,
        }
    }

    /// Sends the ERROR line (as 410 Expired, as always); the stream ends.
    async fn error(&mut self, message: &str) -> bool {
        let _ = self.tx.send(line("ERROR", &status::body(410, "Expired", message))).await;
        false
    }

    /// Takes one batch of the hub; false when the stream ends.
    async fn take_batch(&mut self, b: &Batch) -> bool {
        if let Some(e) = &b.error {
            return self.error(&e.to_string()).await;
        }
        if b.to <= self.rv {
            return true;
        }
        if b.from != self.rv {
            // Started ahead of the hub, or lagged behind: read its own way to the end.
            return self.catch_up(b.to).await;
        }
        let kind = self.kind;
        for he in b.events.iter().filter(|e| e.ev.object.kind() == kind) {
            if !self.send(he.ev.type_, &he.ev.object, Some(he.object_json())).await {
                return false;
            }
        }
        self.rv = b.to;
        true
    }
}

async fn run(
    store: Arc<dyn Store>,
    kind: Kind,
    p: Params,
    start: Start,
    tx: mpsc::Sender<Bytes>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let deadline = p.timeout.map(|t| tokio::time::Instant::now() + t);
    // Bookmarks on a fixed beat, whatever other kinds' changes wake the loop.
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    let Start { joined: Joined { mut rx, at }, read } = start;
    let known = matches!(p.from, None | Some(0));
    let mut st = Stream {
        store: store.clone(),
        kind,
        selector: p.selector,
        known,
        sent: HashSet::new(),
        rv: 0,
        added: HashSet::new(),
        tx: tx.clone(),
    };
    match p.from {
        Some(rv) if rv > 0 => {
            st.rv = rv;
            if !st.take_read(read.unwrap_or_default(), at.max(rv)).await {
                return;
            }
        }
        _ => {
            let s = store.clone();
            let Ok(Ok((objs, list_rv))) = tokio::task::spawn_blocking(move || s.list(kind)).await else {
                return;
            };
            for o in objs.iter().filter(|o| st.selector.matches(o)) {
                st.sent.insert(o.name().to_string());
                if tx.send(line("ADDED", o)).await.is_err() {
                    return;
                }
            }
            st.rv = list_rv;
        }
    }
    loop {
        if *stop.borrow() {
            return;
        }
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rx.recv() => match r {
                Ok(b) => if !st.take_batch(&b).await { return },
                // The next batch starts after this stream's place: it reads its own way.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
            _ = timeout => return,
            _ = tx.closed() => return,
            _ = beat.tick(), if p.bookmarks => {
                if tx.send(bookmark(kind, st.rv)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads `timeoutSeconds`.
pub fn parse_timeout(v: Option<&str>) -> Result<Option<Duration>, String> {
    match v {
        None => Ok(None),
        Some(t) => match t.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(Duration::from_secs(n))),
            Err(_) => Err(format!("timeoutSeconds {t:?} is not a whole number of seconds")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::watch_hub::HubEvent;
    use super::*;

    fn vm(name: &str, env: &str) -> Resource {
        let yaml = format!("apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {name}, labels: {{env: {env}}}}}\nspec:\n  vmName: VM1\n  serverUnit: ABGSE501\n  memoryMiB: 512\n");
        crate::manifest::decode("t.yaml", yaml.as_bytes()).expect("decodes").remove(0).resource
    }

    #[test]
    fn objects_entering_and_leaving_a_selector() {
        let sel = Selector::parse(Some("env=prod"), None).expect("parses");
        let mut sent = HashSet::new();
        assert_eq!(event_for(&sel, &mut sent, true, WatchType::Modified, &vm("a", "test")), None);
        assert_eq!(event_for(&sel, &mut sent, true, WatchType::Modified, &vm("a", "prod")), Some("ADDED"));
        assert_eq!(event_for(&sel, &mut sent, true, WatchType::Modified, &vm("a", "prod")), Some("MODIFIED"));
        assert_eq!(event_for(&sel, &mut sent, true, WatchType::Modified, &vm("a", "test")), Some("DELETED"));
        assert_eq!(event_for(&sel, &mut sent, true, WatchType::Deleted, &vm("a", "test")), None);
        // From a given version the client's state is unknown: a match is MODIFIED.
        let mut sent = HashSet::new();
        assert_eq!(event_for(&sel, &mut sent, false, WatchType::Modified, &vm("b", "prod")), Some("MODIFIED"));
        assert_eq!(event_for(&sel, &mut sent, false, WatchType::Deleted, &vm("c", "prod")), Some("DELETED"));
    }

    fn open(history: u64) -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = crate::store::SledStore::open_with_history(&dir.path().join("d"), history).expect("opens");
        (dir, Arc::new(store))
    }

    fn stream(store: &Arc<dyn Store>, rv: u64) -> (Stream, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(100);
        let selector = Selector::parse(None, None).expect("parses");
        let (sent, added) = (HashSet::new(), HashSet::new());
        (Stream { store: store.clone(), kind: Kind::VMDefinition, selector, known: false, sent, rv, added, tx }, rx)
    }

    /// (type, name) of the lines sent so far.
    fn lines(rx: &mut mpsc::Receiver<Bytes>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            let v: serde_json::Value = serde_json::from_slice(&b).expect("json line");
            let name = v["object"]["metadata"]["name"].as_str().unwrap_or("").to_string();
            out.push((v["type"].as_str().expect("type").to_string(), name));
        }
        out
    }

    /// What the hub would publish after `from`, read now.
    fn batch(store: &Arc<dyn Store>, from: u64) -> Batch {
        let events = store.watch_from(from).expect("history").into_iter().map(HubEvent::new).collect();
        Batch { from, to: store.resource_version(), events, error: None }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(t, n)| (t.to_string(), n.to_string())).collect()
    }

    #[tokio::test]
    async fn an_addition_folded_into_a_later_change_is_still_sent_as_added() {
        let (_d, store) = open(100);
        let r0 = store.resource_version();
        let a = store.create(vm("x", "test")).expect("create").meta().rv();
        store.update(vm("x", "prod")).expect("update");
        // The stream's own read stops at `a`, where the hub's batch continues.
        let (mut st, mut rx) = stream(&store, r0);
        assert!(st.take_read(store.watch_from(r0).expect("history"), a).await);
        assert!(st.take_batch(&batch(&store, a)).await);
        let b = store.resource_version();
        store.update(vm("x", "test")).expect("update");
        assert!(st.take_batch(&batch(&store, b)).await);
        // As one watch_from(r0) over both would have said.
        assert_eq!(lines(&mut rx), pairs(&[("ADDED", "x"), ("MODIFIED", "x")]));
        assert_eq!(st.rv, store.resource_version());
    }

    #[tokio::test]
    async fn a_batch_that_does_not_continue_the_stream_is_read_again_from_its_place() {
        let (_d, store) = open(100);
        let r0 = store.resource_version();
        let r1 = store.create(vm("x", "test")).expect("create").meta().rv();
        store.create(vm("y", "test")).expect("create");
        store.create(vm("z", "test")).expect("create");
        let (mut st, mut rx) = stream(&store, r1);
        let b = batch(&store, r0);
        assert!(st.take_batch(&b).await);
        assert_eq!(lines(&mut rx), pairs(&[("ADDED", "y"), ("ADDED", "z")]));
        // Already sent: nothing again.
        assert!(st.take_batch(&b).await);
        assert!(lines(&mut rx).is_empty());
    }

    #[tokio::test]
    async fn reading_its_own_way_past_the_history_ends_with_a_410_error_line() {
        let (_d, store) = open(2);
        let r1 = store.create(vm("x", "test")).expect("create").meta().rv();
        for n in ["a", "b", "c", "d"] {
            store.create(vm(n, "test")).expect("create");
        }
        let (mut st, mut rx) = stream(&store, r1);
        assert!(!st.take_batch(&batch(&store, r1 + 2)).await, "the stream ends");
        let b = rx.try_recv().expect("a line");
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["type"], "ERROR");
        assert_eq!(v["object"]["code"], 410, "{v}");
    }

    async fn next_lines(rx: &mut mpsc::Receiver<Bytes>, n: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            let b = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("in time").expect("open");
            let v: serde_json::Value = serde_json::from_slice(&b).expect("json line");
            let name = v["object"]["metadata"]["name"].as_str().unwrap_or("").to_string();
            out.push((v["type"].as_str().expect("type").to_string(), name));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_from_a_version_and_from_a_list_follow_the_shared_reader() {
        let (_d, store) = open(100);
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let slot = super::super::watch_hub::Slot::default();
        let ra = store.create(vm("a", "test")).expect("create").meta().rv();
        store.create(vm("b", "test")).expect("create");
        let hub = super::super::watch_hub::WatchHub::get(&slot, &store, &stop).await.expect("hub");
        let params =
            |from| Params { from, timeout: None, bookmarks: false, selector: Selector::parse(None, None).unwrap() };
        let mut rxs = Vec::new();
        for from in [Some(ra), None] {
            let joined = hub.join().expect("open");
            let read = from.map(|rv| store.watch_from(rv).expect("history"));
            let (tx, rx) = mpsc::channel(100);
            tokio::spawn(run(
                store.clone(),
                Kind::VMDefinition,
                params(from),
                Start { joined, read },
                tx,
                stop.clone(),
            ));
            rxs.push(rx);
        }
        let listed = next_lines(&mut rxs[1], 2).await;
        assert_eq!(listed, pairs(&[("ADDED", "a"), ("ADDED", "b")]));
        store.create(vm("c", "test")).expect("create");
        store.update(vm("a", "prod")).expect("update");
        let from_version = next_lines(&mut rxs[0], 3).await;
        assert_eq!(from_version, pairs(&[("ADDED", "b"), ("ADDED", "c"), ("MODIFIED", "a")]));
        assert_eq!(next_lines(&mut rxs[1], 2).await, pairs(&[("ADDED", "c"), ("MODIFIED", "a")]));
    }
}
