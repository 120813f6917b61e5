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
//! client) and ends when the client goes away, the server stops or time is up.

use super::selector::Selector;
use super::status;
use crate::api::{Kind, Resource, API_VERSION};
use crate::store::{Store, WatchType};
use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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

/// Streams the watch; the caller has checked that a given version is not too old.
pub fn respond(store: Arc<dyn Store>, kind: Kind, p: Params, stop: tokio::sync::watch::Receiver<bool>) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(run(store, kind, p, tx, stop));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    Response::builder().header("Content-Type", "application/json").body(Body::from_stream(body)).expect("response")
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

async fn run(
    store: Arc<dyn Store>,
    kind: Kind,
    p: Params,
    tx: mpsc::Sender<Bytes>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let deadline = p.timeout.map(|t| tokio::time::Instant::now() + t);
    // Bookmarks on a fixed beat, whatever other kinds' changes wake the loop.
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    let mut sent = HashSet::new();
    let mut changes = store.subscribe();
    let known = matches!(p.from, None | Some(0));
    let mut rv = match p.from {
        Some(rv) if rv > 0 => rv,
        _ => {
            let s = store.clone();
            let Ok(Ok((objs, at))) = tokio::task::spawn_blocking(move || s.list(kind)).await else {
                return;
            };
            for o in objs.iter().filter(|o| p.selector.matches(o)) {
                sent.insert(o.name().to_string());
                if tx.send(line("ADDED", o)).await.is_err() {
                    return;
                }
            }
            at
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        match store.watch_from(rv) {
            Err(e) => {
                let _ = tx.send(line("ERROR", &status::body(410, "Expired", &e.to_string()))).await;
                return;
            }
            Ok(evs) => {
                for ev in evs.iter().filter(|e| e.object.kind() == kind) {
                    if let Some(t) = event_for(&p.selector, &mut sent, known, ev.type_, &ev.object) {
                        if tx.send(line(t, &ev.object)).await.is_err() {
                            return;
                        }
                    }
                }
                if let Some(last) = evs.last() {
                    rv = last.rv;
                }
            }
        }
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = changes.changed() => if r.is_err() { return; },
            _ = stop.changed() => return,
            _ = timeout => return,
            _ = tx.closed() => return,
            _ = beat.tick(), if p.bookmarks => {
                if tx.send(bookmark(kind, rv.max(store.resource_version()))).await.is_err() {
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
}
