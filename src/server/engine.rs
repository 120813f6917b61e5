//! The controller loop of `sectl serve`: one thread that owns the `Controller`, moves
//! the simulated clock with real time (times `--time-scale`), runs what falls due,
//! resyncs every object on a period, carries out `sim` requests, saves the world, and
//! on shutdown finishes the batch in hand and saves everything (a migration in flight
//! included, so the next start resumes it).

use crate::controller::{Controller, Options};
use crate::sim::Fault;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
}

impl Engine {
    /// Starts the thread.
    pub fn start(store: Arc<dyn Store>, opts: EngineOptions) -> anyhow::Result<Engine> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let mut c = Controller::new(store.clone(), Options { concurrency: opts.concurrency, ..Default::default() })?;
        let sim_ms = Arc::new(std::sync::atomic::AtomicU64::new(c.now_ms()));
        let sm = sim_ms.clone();
        let handle = std::thread::Builder::new()
            .name("controller".into())
            .spawn(move || run(&mut c, store.as_ref(), rx, s2, opts, sm))?;
        Ok(Engine { tx, sim_ms, stop, handle: Some(handle) })
    }

    /// Asks the loop to stop after the batch in hand and waits for it.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take() {
            Some(h) => h.join().map_err(|_| anyhow::anyhow!("controller thread panicked"))?,
            None => Ok(()),
        }
    }
}

/// While reconciles keep changing the world, it is saved at most this often. A save
/// serialises the whole world (about 0.6 KB per VM definition: 6 MB at 10,000) and
/// writes it as one value; the store holds on to the copies it replaced for a while,
/// so saving every 200 ms during a burst kept some 90 MB of old copies alive.
const SAVE_BUSY: Duration = Duration::from_secs(2);
/// Once the reconciles have caught up, changes are saved this soon.
const SAVE_QUIET: Duration = Duration::from_millis(200);
/// A world in which only the clock moved is saved this often (a restart after a crash
/// resumes the clock from there; a shutdown always saves).
const SAVE_CLOCK: Duration = Duration::from_secs(10);
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
    let mut last_resync = Instant::now();
    let mut last_trim = Instant::now();
    // What the last save covered: reconciles run and the store's version.
    let mut saved_at = (c.stats.reconciles, store.resource_version());
    loop {
        let reconciles_before = c.stats.reconciles;
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Cmd::Fault(f, reply) => {
                    let r = c.apply_fault(&f).map(|_| c.world().clock.rfc3339()).map_err(|e| format!("{e:#}"));
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
        if let Err(e) = c.run_due() {
            tracing::error!(error = %format!("{e:#}"), "controller step failed");
        }
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
        let now_at = (c.stats.reconciles, store.resource_version());
        let every = match (now_at != saved_at, busy) {
            (true, true) => SAVE_BUSY,
            (true, false) => SAVE_QUIET,
            (false, _) => SAVE_CLOCK,
        };
        if last_save.elapsed() >= every {
            if let Err(e) = c.save_world() {
                tracing::error!(error = %format!("{e:#}"), "saving the simulated world failed");
            }
            last_save = Instant::now();
            saved_at = now_at;
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
