//! The controller loop of `sectl serve`: one thread that owns the `Controller`, moves
//! the simulated clock with real time (times `--time-scale`), runs what falls due,
//! resyncs every object on a period, carries out `sim` requests, and on shutdown
//! finishes the batch in hand. Every reconcile stores its own effects (see
//! `controller`); the loop only makes them durable soon (`SYNC_EVERY`) and stores the
//! clock when nothing else did (`SAVE_CLOCK`).
//!
//! If the loop dies (an error it cannot go on from, or a panic), `alive()` turns false:
//! `/healthz` and `/readyz` fail and `serve` stops with a non-zero exit.

use crate::controller::{Controller, Options};
use crate::sim::Fault;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// False once the controller loop of this process has died.
static ALIVE: AtomicBool = AtomicBool::new(true);

/// Whether the controller loop of this process is alive (for /healthz, /readyz).
pub fn alive() -> bool {
    ALIVE.load(Ordering::SeqCst)
}

/// A request to the controller thread.
pub enum Cmd {
    /// Apply a fault or repair; reply with the simulated time after it, or an error.
    Fault(Fault, mpsc::Sender<Result<String, String>>),
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Reconciles at once.
    pub concurrency: usize,
    /// Every object is reconciled again this often (real time).
    pub resync: Duration,
}

/// The running controller thread.
pub struct Engine {
    /// Sends requests.
    pub tx: mpsc::Sender<Cmd>,
    /// The simulated time (ms), as of the loop's last turn.
    pub sim_ms: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    /// Fires when the loop dies.
    pub died: Arc<tokio::sync::Notify>,
}

impl Engine {
    /// Starts the thread.
    pub fn start(store: Arc<dyn Store>, opts: EngineOptions) -> anyhow::Result<Engine> {
        Self::start_publishing(store, opts, Arc::default())
    }

    /// Starts the thread, publishing the simulated time in `sim_ms` (an API that began
    /// serving before this replica led shows the clock from then on).
    pub fn start_publishing(
        store: Arc<dyn Store>,
        opts: EngineOptions,
        sim_ms: Arc<std::sync::atomic::AtomicU64>,
    ) -> anyhow::Result<Engine> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let mut c = Controller::new(store.clone(), Options { concurrency: opts.concurrency, ..Default::default() })?;
        sim_ms.store(c.now_ms(), Ordering::SeqCst);
        let sm = sim_ms.clone();
        let died = Arc::new(tokio::sync::Notify::new());
        let d2 = died.clone();
        let handle = std::thread::Builder::new().name("controller".into()).spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(&mut c, store.as_ref(), rx, s2, opts, sm)
            }))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(anyhow::anyhow!("the controller loop panicked: {msg}"))
            });
            if let Err(e) = &r {
                ALIVE.store(false, Ordering::SeqCst);
                tracing::error!(error = %format!("{e:#}"), "the controller loop died; the server stops");
                d2.notify_one();
            }
            r
        })?;
        Ok(Engine { tx, sim_ms, stop, handle: Some(handle), died })
    }

    /// Asks the loop to stop after the batch in hand and waits for it; its error if
    /// it died.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take() {
            Some(h) => h.join().map_err(|_| anyhow::anyhow!("controller thread panicked"))?,
            None => Ok(()),
        }
    }
}

/// Committed batches are made durable (flushed) at most this often: what the API
/// serves of the controller's work is on disk a moment later.
const SYNC_EVERY: Duration = Duration::from_millis(50);
/// A clock that moved while nothing else was stored is stored this often (a restart
/// after a crash resumes the clock from there; it never goes back behind an event,
/// since every batch carries the clock).
const SAVE_CLOCK: Duration = Duration::from_secs(1);
/// Freed heap is handed back to the operating system at most this often.
const TRIM_EVERY: Duration = Duration::from_secs(2);

/// Returns freed heap pages to the operating system. A burst of reconciles or a large
/// list response frees a lot of memory that glibc's allocator otherwise keeps (spread
/// over its per-thread arenas) for the life of the process.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim only releases free memory of the allocator; it has no
        // preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}

fn run(
    c: &mut Controller,
    store: &dyn Store,
    rx: mpsc::Receiver<Cmd>,
    stop: Arc<AtomicBool>,
    opts: EngineOptions,
    sim_ms: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<()> {
    let mut last = Instant::now();
    let mut carry = 0.0f64;
    let mut last_save = Instant::now();
    let mut last_sync = Instant::now();
    let mut last_resync = Instant::now();
    let mut last_trim = Instant::now();
    let mut synced = c.batches();
    loop {
        if super::super::controller::effects::engine_should_panic() {
            panic!("test fault hook: the engine loop panics");
        }
        let reconciles_before = c.stats.reconciles;
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Cmd::Fault(f, reply) => {
                    let r = c.apply_fault(&f).map(|_| c.clock().rfc3339()).map_err(|e| format!("{e:#}"));
                    let _ = reply.send(r);
                }
            }
        }
        let dt = last.elapsed();
        last = Instant::now();
        carry += dt.as_secs_f64() * 1000.0 * opts.time_scale;
        let whole = carry.floor();
        carry -= whole;
        c.advance_clock(whole as u64);
        sim_ms.store(c.now_ms(), Ordering::SeqCst);
        // Errors of single objects are handled inside (backoff); what comes out here
        // is the store failing.
        c.run_due()?;
        if last_resync.elapsed() >= opts.resync {
            tracing::info!("periodic resync of all objects");
            c.wake_all();
            last_resync = Instant::now();
        }
        if stop.load(Ordering::SeqCst) {
            c.save_world()?;
            tracing::info!("controller stopped; world saved");
            return Ok(());
        }
        let busy = c.stats.reconciles != reconciles_before;
        if last_save.elapsed() >= SAVE_CLOCK {
            c.store_clock()?;
            last_save = Instant::now();
        }
        if c.batches() != synced && last_sync.elapsed() >= SYNC_EVERY {
            store.sync().map_err(|e| anyhow::anyhow!("{e}"))?;
            synced = c.batches();
            last_sync = Instant::now();
        }
        if !busy && last_trim.elapsed() >= TRIM_EVERY {
            trim_heap();
            last_trim = Instant::now();
        }
        // Sleep until the next item falls due (in real time), at most 20 ms so that
        // store changes and requests are picked up quickly.
        let wait = match c.next_due() {
            Some(t) if opts.time_scale > 0.0 => {
                let sim_ms = t.saturating_sub(c.now_ms()) as f64;
                Duration::from_secs_f64((sim_ms / opts.time_scale / 1000.0).min(0.02))
            }
            _ => Duration::from_millis(20),
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}
