//! What the controller keeps besides the world, and how one step's effects become one
//! store batch. A step is a reconcile, the ingest of watch events, a fault, or a move
//! of the clock; its batch carries the world entities it changed, the status it
//! observed, the events it logged, the reconciles it left pending and the newest
//! resourceVersion it has processed. After a crash the store is therefore at a step
//! boundary: nothing of a step, or all of it.
//!
//! Keys (the store's controller state):
//! - `c/observed`                 the newest resourceVersion whose changes are handled
//! - `c/pending/<Kind>/<name>`    a reconcile due at that simulated time (ms)
//!
//! Test-only fault hooks (environment variables, read once; never set them in
//! production): `SECTL_TEST_PANIC_RECONCILE=Kind/name` makes every reconcile of that
//! object panic; `SECTL_TEST_PANIC_ENGINE=1` makes the `serve` engine loop panic on its
//! first turn; `SECTL_TEST_ABORT_AFTER_BATCHES=N` aborts the process (like kill -9)
//! right before the controller's batch N+1 is committed.

use super::runtime::Key;
use crate::api::Kind;
use crate::store::{Batch, Store, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Key of the newest processed resourceVersion.
pub const OBSERVED: &str = "c/observed";
/// Prefix of pending reconciles.
pub const PENDING: &str = "c/pending/";

/// The state key of an object's pending reconcile.
pub fn pending_key(k: &Key) -> String {
    format!("{PENDING}{}/{}", k.0.as_str(), k.1)
}

/// Adds "due at `at`" (or, with None, "not pending") for `k` to a batch.
pub fn set_pending(b: &mut Batch, k: &Key, at: Option<u64>) {
    b.state.push((pending_key(k), at.map(|t| t.to_string().into_bytes())));
}

/// Adds the newest processed resourceVersion to a batch.
pub fn set_observed(b: &mut Batch, rv: u64) {
    b.state.push((OBSERVED.to_string(), Some(rv.to_string().into_bytes())));
}

fn number(key: &str, v: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Backend(format!("controller state {key} cannot be read")))
}

/// The stored bookkeeping: the newest processed resourceVersion (None when never
/// stored) and the pending reconciles (due time, object).
pub type Bookkeeping = (Option<u64>, Vec<(u64, Key)>);

/// Reads the stored bookkeeping.
pub fn load(store: &dyn Store) -> Result<Bookkeeping, StoreError> {
    let observed = match store.read_state(OBSERVED)?.into_iter().find(|(k, _)| k == OBSERVED) {
        Some((k, v)) => Some(number(&k, &v)?),
        None => None,
    };
    let mut pending = Vec::new();
    for (k, v) in store.read_state(PENDING)? {
        let rest = &k[PENDING.len()..];
        let parsed = rest.split_once('/').and_then(|(kind, name)| Kind::from_manifest(kind).map(|kd| (kd, name)));
        match parsed {
            Some((kind, name)) => pending.push((number(&k, &v)?, (kind, name.to_string()))),
            None => return Err(StoreError::Backend(format!("controller state {k} cannot be read"))),
        }
    }
    Ok((observed, pending))
}

struct Hooks {
    panic_reconcile: Option<String>,
    panic_engine: bool,
    abort_after: Option<u64>,
}

fn hooks() -> &'static Hooks {
    static H: OnceLock<Hooks> = OnceLock::new();
    H.get_or_init(|| Hooks {
        panic_reconcile: std::env::var("SECTL_TEST_PANIC_RECONCILE").ok().filter(|s| !s.is_empty()),
        panic_engine: std::env::var("SECTL_TEST_PANIC_ENGINE").is_ok_and(|s| s == "1"),
        abort_after: std::env::var("SECTL_TEST_ABORT_AFTER_BATCHES").ok().and_then(|s| s.parse().ok()),
    })
}

/// Test-only: panics when the hook names this object.
pub fn maybe_panic_reconcile(k: &Key) {
    if let Some(target) = &hooks().panic_reconcile {
        if *target == format!("{}/{}", k.0, k.1) {
            panic!("test fault hook: reconcile of {target} panics");
        }
    }
}

/// Test-only: whether the engine loop should panic.
pub fn engine_should_panic() -> bool {
    hooks().panic_engine
}

/// Test-only: counts a batch about to be committed; aborts the process at the limit.
pub fn before_commit() {
    static N: AtomicU64 = AtomicU64::new(0);
    if let Some(limit) = hooks().abort_after {
        if N.fetch_add(1, Ordering::SeqCst) >= limit {
            std::process::abort();
        }
    }
}
