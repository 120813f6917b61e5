//! The embedded store, or the running `sectl serve` that holds it.
//!
//! A verb without `--server` opens the store in `--data-dir`. When another process
//! holds it (the store's lock, `store::data_dir`), the verb talks to the server that
//! `<data-dir>/kubeconfig` names instead (its URL, its CA as the only one trusted, its
//! token): the server is then the only writer, as the lock demands. The server must
//! answer and take the token (probed once); a server that does not, or a lock held
//! without a kubeconfig (another verb, or a `serve` starting or stopping), is retried
//! for `PATIENCE` (the holder may let go, or finish starting) and then an error naming
//! what was found. Never a second writer, never a silent fallback.
//!
//! Trade-off: the probe costs one round trip per verb; in exchange an unreachable or
//! wrong server is reported as such, before the verb has done half its work.

use super::Backend;
use crate::client::Client;
use crate::server::kubeconfig;
use crate::store::StoreError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a verb waits for a held store to be let go or its server to answer.
pub const PATIENCE: Duration = Duration::from_secs(3);
/// Pause between tries.
const PAUSE: Duration = Duration::from_millis(100);

/// Why the held store's server cannot be used (the last try's finding).
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The store is held, and there is no kubeconfig.
    #[error("the store in {} is in use by another sectl process, and {} names no server (not a running `sectl serve`, or one still starting or stopping); wait for it to end, or stop it", dir.display(), dir.join(kubeconfig::FILE).display())]
    NoKubeconfig {
        /// The data directory.
        dir: PathBuf,
    },
    /// The kubeconfig cannot be read.
    #[error("the store in {} is in use by another sectl process: {source}", dir.display())]
    BadKubeconfig {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        source: kubeconfig::ReadError,
    },
    /// The server named does not answer, or refuses.
    #[error("the store in {} is held by a running `sectl serve`, but the server {} names ({url}) {what}; nothing was done (a second writer on the store is never started)", dir.display(), dir.join(kubeconfig::FILE).display())]
    Server {
        /// The data directory.
        dir: PathBuf,
        /// The URL.
        url: String,
        /// What went wrong.
        what: String,
    },
    /// `--no-reconcile` asks for something a server does not do.
    #[error("--no-reconcile applies to the embedded store, but the running `sectl serve` at {url} holds the store in {} and its controller reconciles every change; stop the server first", dir.display())]
    NoReconcile {
        /// The data directory.
        dir: PathBuf,
        /// The URL.
        url: String,
    },
}

/// The back end for `data_dir` without `--server`: the embedded store, or the server
/// that holds it.
pub fn open(
    spec: &str,
    etcd_tls: &crate::store::EtcdTls,
    data_dir: &Path,
    ca: &[PathBuf],
    reconcile: bool,
) -> anyhow::Result<Backend> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let held = match crate::store::open_with(spec, data_dir, etcd_tls) {
            Ok(store) => return Ok(Backend::Embedded { store, reconcile }),
            Err(StoreError::InUse { .. }) => try_server(data_dir, ca, reconcile),
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        };
        match held {
            Ok(client) => {
                tracing::info!(server = client.url(), "the store is held by a running `sectl serve`; talking to it");
                return Ok(Backend::Remote(client));
            }
            Err(e @ (AttachError::NoReconcile { .. } | AttachError::BadKubeconfig { .. })) => return Err(e.into()),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(PAUSE),
        }
    }
}

/// The client of the server the kubeconfig names, once it answered.
fn try_server(dir: &Path, ca: &[PathBuf], reconcile: bool) -> Result<Client, AttachError> {
    let access = kubeconfig::read(dir)
        .map_err(|source| AttachError::BadKubeconfig { dir: dir.to_path_buf(), source })?
        .ok_or_else(|| AttachError::NoKubeconfig { dir: dir.to_path_buf() })?;
    let server = |what: String| AttachError::Server { dir: dir.to_path_buf(), url: access.server.clone(), what };
    let client = Client::from_kubeconfig(&access, dir, ca).map_err(|e| server(format!("cannot be used: {e:#}")))?;
    match client.probe() {
        Ok(()) if !reconcile => Err(AttachError::NoReconcile { dir: dir.to_path_buf(), url: access.server.clone() }),
        Ok(()) => Ok(client),
        Err(e) if e.code == 0 => Err(server(format!("does not answer: {}", e.message))),
        Err(e) if e.code == 401 => Err(server(format!("refuses the token in it: {}", e.message))),
        Err(e) => Err(server(format!("refused: {} ({} {})", e.message, e.code, e.reason))),
    }
}
