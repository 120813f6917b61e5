//! The GitOps loop: sync at start, after file events, when a file settles or a prune
//! grace ends, every `resync`, and serve prune confirmations from the API.
//!
//! File events come from `notify-debouncer-full`, which emits each event `DEBOUNCE`
//! after it happened (a trailing debounce that waits for quiet would never fire on a
//! folder that keeps changing; this one does, so a busy folder is still synced at
//! least every `DEBOUNCE` + a tick). Its handler only sets a signal on a channel of
//! capacity one: a full channel already means "sync soon", and every sync reads the
//! whole folder, so no event is lost by dropping the extra ones and memory stays
//! bounded. An event flagged `need_rescan` (the OS dropped events) or a watcher error
//! makes the next sync a full rescan: the per-file judgement caches are forgotten and
//! every file is decoded again.

use super::GitOps;
use notify::Watcher;
use notify_debouncer_full::{DebounceEventResult, NoCache};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events are delivered this long after they happened.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// True when the debouncer's batch asks for a full rescan.
fn needs_rescan(res: &DebounceEventResult) -> bool {
    match res {
        Ok(evs) => evs.iter().any(|e| e.need_rescan()),
        Err(_) => true,
    }
}

/// Runs one sync off the async threads, returning the engine and when to wake. A
/// panic in a sync is a defect: the loop ends with an error (logged by the caller)
/// rather than carry on with a half-updated engine.
async fn sync(g: GitOps, full: bool) -> anyhow::Result<(GitOps, Option<Instant>)> {
    tokio::task::spawn_blocking(move || {
        let mut g = g;
        if full {
            g.forget_judgements();
        }
        let r = g.sync();
        (g, r.next_wake)
    })
    .await
    .map_err(|e| anyhow::anyhow!("a GitOps sync failed: {e}"))
}

/// Starts the debounced watcher; None (logged and reported) when the OS refuses,
/// e.g. the inotify watch limit is reached: the folder is then synced on the
/// `--resync` period and when files settle, never silently not at all.
fn start_watcher(
    g: &GitOps,
    tx: tokio::sync::mpsc::Sender<()>,
    rescan: Arc<AtomicBool>,
) -> Option<notify_debouncer_full::Debouncer<notify::RecommendedWatcher, NoCache>> {
    let started = notify_debouncer_full::new_debouncer_opt::<_, notify::RecommendedWatcher, NoCache>(
        DEBOUNCE,
        None,
        move |res: DebounceEventResult| {
            if needs_rescan(&res) {
                rescan.store(true, Ordering::SeqCst);
            }
            // Full: a sync is already due.
            let _ = tx.try_send(());
        },
        NoCache,
        notify::Config::default(),
    )
    .and_then(|mut d| d.watcher().watch(g.dir(), notify::RecursiveMode::Recursive).map(|_| d));
    match started {
        Ok(d) => Some(d),
        Err(e) => {
            let msg = format!(
                "cannot watch {} for changes: {e}; the folder is synced every --resync period only",
                g.dir().display()
            );
            tracing::error!("{msg}");
            g.report_warning("SourceNotWatched", msg);
            None
        }
    }
}

/// Runs the watch loop until `stop` fires.
pub async fn run(
    mut gitops: GitOps,
    resync: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let dir = gitops.dir().to_path_buf();
    std::fs::create_dir_all(&dir)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let rescan = Arc::new(AtomicBool::new(false));
    let debouncer = start_watcher(&gitops, tx, rescan.clone());
    let mut confirms = gitops.confirm_rx.take().ok_or_else(|| anyhow::anyhow!("the GitOps loop runs once"))?;
    let (g, mut wake) = sync(gitops, false).await?;
    gitops = g;
    let mut next_resync = Instant::now() + resync;
    loop {
        let until = wake.map_or(next_resync, |w| w.min(next_resync));
        let full;
        tokio::select! {
            Some(()) = rx.recv() => {
                full = rescan.swap(false, Ordering::SeqCst);
                if full {
                    tracing::warn!(dir = %dir.display(), "file events were lost; full rescan of the folder");
                }
            }
            _ = tokio::time::sleep_until(until.into()) => {
                full = false;
                if Instant::now() >= next_resync {
                    next_resync = Instant::now() + resync;
                }
            }
            req = confirms.recv() => {
                let Some(answer) = req else { break };
                let r = tokio::task::spawn_blocking(move || {
                    let mut g = gitops;
                    let r = g.confirm_prune();
                    (g, r)
                })
                .await;
                let (g, r) = r.map_err(|e| anyhow::anyhow!("a GitOps prune confirmation failed: {e}"))?;
                gitops = g;
                let _ = answer.send(r);
                continue;
            }
            _ = stop.changed() => break,
        }
        let (g, w) = sync(gitops, full).await?;
        gitops = g;
        wake = w;
    }
    if let Some(d) = debouncer {
        d.stop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify_debouncer_full::DebouncedEvent;

    #[test]
    fn a_watcher_that_cannot_start_is_reported_not_ignored() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store: Arc<dyn crate::store::Store> =
            Arc::new(crate::store::SledStore::open(&tmp.path().join("data")).expect("store"));
        // The OS refuses to watch a folder that does not exist.
        let g = GitOps::new(tmp.path().join("missing"), super::super::Options::default(), store.clone());
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        assert!(start_watcher(&g, tx, Arc::new(AtomicBool::new(false))).is_none());
        let evs = store.events().expect("events");
        assert!(evs.iter().any(|e| e.reason == "SourceNotWatched" && e.message.contains("--resync")), "{evs:?}");
        // A folder that exists is watched.
        std::fs::create_dir_all(tmp.path().join("w")).expect("mkdir");
        let g = GitOps::new(tmp.path().join("w"), super::super::Options::default(), store);
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        assert!(start_watcher(&g, tx, Arc::new(AtomicBool::new(false))).is_some());
    }

    #[test]
    fn a_rescan_flag_or_an_error_asks_for_a_full_rescan() {
        let plain = notify::Event::new(notify::EventKind::Any);
        let flagged = notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(!needs_rescan(&Ok(vec![DebouncedEvent::from(plain.clone())])));
        assert!(needs_rescan(&Ok(vec![DebouncedEvent::from(plain), DebouncedEvent::from(flagged)])));
        assert!(needs_rescan(&Err(vec![notify::Error::generic("queue overflow")])));
    }
}
