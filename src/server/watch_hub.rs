//! One reader of the store's watch history for all of `serve`'s watch streams.
//!
//! A task follows the store's `subscribe()` signal and, after each commit, reads the
//! new history once (`Store::watch_from` from its cursor, on a blocking thread) and
//! publishes it as one `Batch` on a tokio broadcast channel: the events decoded once,
//! shared (`Arc`), each object encoded to JSON at most once. Watch streams take the
//! batches that continue where they are; one that starts behind the hub, lags beyond
//! the channel's capacity or finds itself inside a batch reads its own way there with
//! `watch_from` (see `watch.rs`), which also gives the same 410 as before when the
//! history is gone.
//!
//! With nobody listening the hub decodes nothing: it only moves its cursor. It is
//! started by the first watch and ends with the server (`stop`), which ends every
//! stream still open.

use crate::api::Resource;
use crate::store::{Store, StoreError, WatchEvent};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// Batches a stream may fall behind before it must read its own way back.
pub const CAPACITY: usize = 256;
/// How long the hub waits before reading again after the store failed.
const RETRY: Duration = Duration::from_millis(500);

/// One change, decoded once for every stream.
pub struct HubEvent {
    /// The change.
    pub ev: WatchEvent,
    /// The object as JSON, encoded by the first stream that sends it.
    json: OnceLock<String>,
}

impl HubEvent {
    /// Wraps a change (its JSON is encoded when first needed).
    pub fn new(ev: WatchEvent) -> HubEvent {
        HubEvent { ev, json: OnceLock::new() }
    }

    /// The object as the JSON a watch line carries.
    pub fn object_json(&self) -> &str {
        self.json.get_or_init(|| encode(&self.ev.object))
    }
}

/// The object as JSON, exactly as `serde_json::json!` embeds it in a watch line.
pub fn encode(o: &Resource) -> String {
    serde_json::to_value(o).map(|v| v.to_string()).unwrap_or_else(|_| "null".into())
}

/// What the history held after `from`, up to and including `to`.
pub struct Batch {
    /// The resourceVersion this batch continues from.
    pub from: u64,
    /// The resourceVersion it reaches.
    pub to: u64,
    /// The changes, oldest first (as `watch_from(from)` gave them).
    pub events: Vec<HubEvent>,
    /// The store failed: streams end with an ERROR line carrying this (as before).
    pub error: Option<StoreError>,
}

/// A slot in `AppState` for the hub, started by the first watch.
pub type Slot = Arc<tokio::sync::OnceCell<Arc<WatchHub>>>;

/// The shared reader.
pub struct WatchHub {
    /// The channel (None once the hub ended) and the hub's cursor, changed together.
    inner: Mutex<Inner>,
}

struct Inner {
    tx: Option<broadcast::Sender<Arc<Batch>>>,
    cursor: u64,
}

/// A stream's place on the hub: batches after `at` arrive on `rx`.
pub struct Joined {
    /// The batches.
    pub rx: broadcast::Receiver<Arc<Batch>>,
    /// The first batch `rx` gets continues from here.
    pub at: u64,
}

impl WatchHub {
    /// The server's hub, started on first use.
    pub async fn get(
        slot: &Slot,
        store: &Arc<dyn Store>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Arc<WatchHub>, StoreError> {
        slot.get_or_try_init(|| Self::start(store.clone(), stop.clone())).await.cloned()
    }

    async fn start(
        store: Arc<dyn Store>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Arc<WatchHub>, StoreError> {
        // Subscribed before the cursor is read: no commit after it goes unnoticed.
        let changes = store.subscribe();
        let s = store.clone();
        let cursor = tokio::task::spawn_blocking(move || s.resource_version())
            .await
            .map_err(|e| StoreError::Backend(format!("reading the resourceVersion: {e}")))?;
        let (tx, _) = broadcast::channel(CAPACITY);
        let hub = Arc::new(WatchHub { inner: Mutex::new(Inner { tx: Some(tx), cursor }) });
        tokio::spawn(follow(hub.clone(), store, changes, stop));
        Ok(hub)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new stream's receiver and where its batches start; None once the hub ended.
    pub fn join(&self) -> Option<Joined> {
        let g = self.lock();
        g.tx.as_ref().map(|tx| Joined { rx: tx.subscribe(), at: g.cursor })
    }

    /// Publishes a batch and moves the cursor to its end, in one step for `join`.
    fn publish(&self, batch: Batch) {
        let mut g = self.lock();
        g.cursor = g.cursor.max(batch.to);
        if let Some(tx) = &g.tx {
            // No receivers is no error: nobody is watching.
            let _ = tx.send(Arc::new(batch));
        }
    }

    /// Moves the cursor when nobody listens (no batch is built); false when someone does.
    fn skip_to(&self, rv: u64) -> bool {
        let mut g = self.lock();
        if g.tx.as_ref().is_some_and(|tx| tx.receiver_count() > 0) {
            return false;
        }
        g.cursor = g.cursor.max(rv);
        true
    }

    fn cursor(&self) -> u64 {
        self.lock().cursor
    }

    /// Ends the hub: open streams see the channel closed.
    fn close(&self) {
        self.lock().tx = None;
    }
}

/// Closes the hub however `follow` ends (a panic included).
struct CloseOnDrop(Arc<WatchHub>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The hub's task: after each commit, one read for everybody.
async fn follow(
    hub: Arc<WatchHub>,
    store: Arc<dyn Store>,
    mut changes: tokio::sync::watch::Receiver<u64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let hub = CloseOnDrop(hub);
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            r = stop.changed() => if r.is_err() { return } else { continue },
        }
        loop {
            match read(&hub.0, &store).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "watch: reading the store's history failed; open watches end");
                    let at = hub.0.cursor();
                    hub.0.publish(Batch { from: at, to: at, events: Vec::new(), error: Some(e) });
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}

/// Reads what is new since the cursor and publishes it (or only moves the cursor
/// when nobody listens).
async fn read(hub: &Arc<WatchHub>, store: &Arc<dyn Store>) -> Result<(), StoreError> {
    let from = hub.cursor();
    let (h, s) = (hub.clone(), store.clone());
    let read = tokio::task::spawn_blocking(move || -> Result<Option<(u64, Vec<WatchEvent>)>, StoreError> {
        // Every record up to `now` is in what watch_from returns (it reads after).
        let now = s.resource_version();
        if h.skip_to(now) {
            return Ok(None);
        }
        let events = s.watch_from(from)?;
        let to = events.last().map_or(now, |e| e.rv.max(now)).max(from);
        Ok(Some((to, events)))
    });
    let Some((to, events)) = read.await.map_err(|e| StoreError::Backend(format!("reading the history: {e}")))?? else {
        return Ok(());
    };
    if to > from {
        let events = events.into_iter().map(HubEvent::new).collect();
        hub.publish(Batch { from, to, events, error: None });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_encoded_as_a_watch_line_embeds_it() {
        let yaml = "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: a, labels: {b: c, a: d}}\nspec:\n  vmName: VM1\n  serverUnit: ABGSE501\n  memoryMiB: 512\n";
        let o = crate::manifest::decode("t.yaml", yaml.as_bytes()).expect("decodes").remove(0).resource;
        let line = serde_json::json!({"type": "ADDED", "object": o}).to_string();
        assert_eq!(line, format!("{{\"type\":\"ADDED\",\"object\":{}}}", encode(&o)));
    }
}
