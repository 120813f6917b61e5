//! The accept loop of `sectl serve`: TLS (or plain HTTP on loopback), HTTP/1.1 by
//! hyper, and the limits that keep slow or idle clients from starving the others.
//!
//! * At most `max_connections` connections at once (a semaphore). The default is
//!   lowered to fit the open-file limit, which is first raised to its hard maximum.
//! * A connection that has not yet sent its first complete request is *pending*. It
//!   must finish its TLS handshake within `handshake_timeout`, and its request head
//!   within `header_timeout` (hyper's header read timeout, which also ends a
//!   keep-alive connection idle that long). When every slot is taken, the oldest
//!   pending connection is closed to make room: clients that are not sending
//!   anything cannot lock out one that is (e.g. `/healthz`). When none is pending,
//!   accepting waits for a slot (back-off), and new clients wait in the kernel's queue.
//! * An accept error (e.g. out of file handles) backs off 10 ms doubling to 1 s
//!   instead of spinning, and is logged at most once a second.
//!
//! Trade-off: evicting the oldest pending connection can close a real client that is
//! slow to send its first request while the server is full; it then reconnects.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tower::ServiceExt as _;

/// Connection limits and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections at once.
    pub max_connections: usize,
    /// Time for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for a request head, and the longest keep-alive idle time.
    pub header_timeout: Duration,
}

/// Default connections at once (lowered to fit the open-file limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default TLS handshake and request-head timeouts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// File handles kept free for the store, the watched folder and the logs.
const RESERVED_FILES: u64 = 256;

/// Raises the soft open-file limit to the hard one; returns the soft limit now.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
        }
    }
}

/// `wanted` connections, or fewer when the open-file limit `nofile` is lower.
pub fn fit_connections(wanted: usize, nofile: u64) -> usize {
    let room = nofile.saturating_sub(RESERVED_FILES).max(16);
    wanted.min(usize::try_from(room).unwrap_or(usize::MAX)).max(1)
}

/// Pending connections (no complete request yet), oldest first, each with the
/// sender that closes it.
#[derive(Default)]
struct Pending {
    next: AtomicU64,
    map: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
}

impl Pending {
    fn add(&self, tx: oneshot::Sender<()>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, tx);
        id
    }
    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
    /// Closes the oldest pending connection; false when there is none.
    fn evict_oldest(&self) -> bool {
        let oldest = self.lock().pop_first();
        match oldest {
            Some((_, tx)) => {
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }
    fn evict_all(&self) {
        let all = std::mem::take(&mut *self.lock());
        for (_, tx) in all {
            let _ = tx.send(());
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, oneshot::Sender<()>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serves `router` on `listener` until `stop` becomes true, then lets open requests
/// finish (at most `drain` long).
pub async fn run(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: Limits,
    mut stop: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let pending = Arc::new(Pending::default());
    let mut backoff = Duration::from_millis(10);
    let mut last_warn: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, _peer) = match accepted {
            Ok(c) => {
                backoff = Duration::from_millis(10);
                c
            }
            Err(e) => {
                if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, retry_in = ?backoff, "accept failed; backing off");
                    last_warn = Some(Instant::now());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: make room by closing the oldest connection that has sent no
                // request yet; with none, wait for a slot.
                pending.evict_oldest();
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let (tls, router, pending, stop) = (tls.clone(), router.clone(), pending.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (evict_tx, evict_rx) = oneshot::channel();
            let id = pending.add(evict_tx);
            let work = async {
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => serve_conn(stream, router, limits, &pending, id, stop).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                    None => serve_conn(tcp, router, limits, &pending, id, stop).await,
                }
            };
            tokio::select! {
                _ = work => {},
                // A dropped sender (the connection sent a request) is no eviction.
                Ok(()) = evict_rx => tracing::debug!("closed a pending connection to make room"),
            }
            pending.remove(id);
        });
    }
    drop(listener);
    pending.evict_all();
    // Wait (bounded) until every connection has given its slot back.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("connections still open after {drain:?}; stopping anyway");
    }
}

/// One connection: HTTP/1.1 with the header timeout, gracefully closed on `stop`.
async fn serve_conn<S>(
    io: S,
    router: Router,
    limits: Limits,
    pending: &Arc<Pending>,
    id: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let p = pending.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        // A complete request head arrived: the connection is no longer pending.
        p.remove(id);
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r { tracing::debug!(error = %e, "connection ended"); }
            return;
        }
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_fits_the_open_file_limit() {
        assert_eq!(fit_connections(4096, 1_048_576), 4096);
        assert_eq!(fit_connections(4096, 1024), 768);
        assert_eq!(fit_connections(4096, 100), 16);
    }

    #[test]
    fn eviction_takes_the_oldest_pending_connection() {
        let p = Pending::default();
        let (a, mut ra) = oneshot::channel();
        let (b, mut rb) = oneshot::channel();
        let ida = p.add(a);
        p.add(b);
        assert!(p.evict_oldest());
        assert!(ra.try_recv().is_ok(), "the oldest is closed");
        assert!(rb.try_recv().is_err(), "the newer one stays");
        p.remove(ida);
        assert!(p.evict_oldest());
        assert!(!p.evict_oldest(), "none left");
    }
}
