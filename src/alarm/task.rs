//! The delivery thread of `sectl serve`: a pass over the outbox whenever the store
//! changed (a commit wakes it at once), when a receiver's back-off ends, and at least
//! every second. Sending blocks (UDP, SMTP with a timeout), so it has its own thread
//! and never holds up the controller or the API. It stops after the pass in hand.

use super::Outbox;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest sleep between passes.
const IDLE: Duration = Duration::from_secs(1);
/// The shortest time between two passes woken by store commits: a pass reads the
/// event log durably (a flush when something is unflushed), and under a burst of
/// controller commits it must not flush after every one of them.
const MIN_GAP: Duration = Duration::from_millis(20);
/// The sleep after the store failed.
const AFTER_ERROR: Duration = Duration::from_secs(1);

/// The running delivery thread.
pub struct Delivery {
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Delivery {
    /// Starts the thread.
    pub fn start(store: Arc<dyn Store>) -> anyhow::Result<Delivery> {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (s2, w2) = (stop.clone(), wake.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        let handle = std::thread::Builder::new().name("alarms".into()).spawn(move || {
            let mut changes = store.subscribe();
            let mut outbox = Outbox::new(store);
            while !s2.load(Ordering::SeqCst) {
                let began = Instant::now();
                changes.mark_unchanged();
                let wait = match outbox.pass() {
                    Ok(p) => p.retry_at.map_or(IDLE, |t| t.saturating_duration_since(Instant::now()).min(IDLE)),
                    Err(e) => {
                        tracing::error!(error = %e, "alarm delivery: the store failed; trying again");
                        AFTER_ERROR
                    }
                };
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                rt.block_on(async {
                    tokio::select! {
                        _ = changes.changed() => {
                            tokio::time::sleep(MIN_GAP.saturating_sub(began.elapsed())).await;
                        },
                        _ = w2.notified() => {},
                        _ = tokio::time::sleep(wait) => {},
                    }
                });
            }
        })?;
        Ok(Delivery { stop, wake, handle: Some(handle) })
    }

    /// Stops after the pass in hand and waits for the thread.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One pass for an embedded verb: each receiver is tried once (no waiting for
/// back-off); what fails stays in the outbox. Store errors are reported as warnings:
/// the verb itself succeeded.
pub fn deliver_once(store: Arc<dyn Store>) {
    let mut outbox = Outbox::new(store);
    outbox.eager = true;
    match outbox.pass() {
        Ok(p) if p.failed > 0 => {
            tracing::warn!(
                sent = p.sent,
                failed = p.failed,
                "some alarms were not delivered; they are sent by the next run or by `sectl serve`"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "alarm delivery failed; the events stay in the outbox"),
    }
}
