//! Store calls of the API handlers that write (and flush) or read the whole event
//! log, run on tokio's blocking threads so that they never hold up the async workers
//! that serve every other request and watch stream.

use crate::store::{Store, StoreError};
use std::sync::Arc;

/// Runs `f` with the store on a blocking thread (a panic there is a `Backend` error,
/// answered 500).
pub async fn run<T, F>(store: &Arc<dyn Store>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| StoreError::Backend(format!("the store call failed: {e}")))?
}
