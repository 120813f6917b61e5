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
        let mut c = Controller::new(store, Options { concurrency: opts.concurrency, ..Default::default() })?;
        let sim_ms = Arc::new(std::sync::atomic::AtomicU64::new(c.now_ms()));
        let sm = sim_ms.clone();
        let handle =
            std::thread::Builder::new().name("controller".into()).spawn(move || run(&mut c, rx, s2, opts, sm))?;
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

fn run(
    c: &mut Controller,
    rx: mpsc::Receiver<Cmd>,
    stop: Arc<AtomicBool>,
    opts: EngineOptions,
    sim_ms: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<()> {
    let mut last = Instant::now();
    let mut carry = 0.0f64;
    let mut last_save = Instant::now();
    let mut last_resync = Instant::now();
    loop {
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
        if last_save.elapsed() >= Duration::from_millis(200) {
            if let Err(e) = c.save_world() {
                tracing::error!(error = %format!("{e:#}"), "saving the simulated world failed");
            }
            last_save = Instant::now();
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
