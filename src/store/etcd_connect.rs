//! How the etcd store connects: the client's options (timeouts, keep-alive, user and
//! password, TLS for `etcds://`), its runtime (threads that ignore SIGPIPE), the first
//! request (a lease), and why a connection failed, in words rather than a gRPC dump.

use super::etcd::EtcdConfig;
use super::etcd_tls::EtcdTls;
use super::{Result, StoreError};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::future::Future;
use std::time::Duration;

fn be(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {err}"))
}

/// Connects to the members of `cfg` and takes a lease of `lease_ttl` seconds: the
/// store's runtime, client and lease.
pub(super) fn connect(
    cfg: &EtcdConfig,
    tls: &EtcdTls,
    lease_ttl: i64,
) -> Result<(tokio::runtime::Runtime, Client, i64)> {
    let opts = connect_options(cfg, tls)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sectl-etcd")
        .on_thread_start(ignore_sigpipe)
        .enable_all()
        .build()
        .map_err(be)?;
    let endpoints = cfg.endpoints.clone();
    let connect = async move {
        let mut client = Client::connect(&endpoints, Some(opts)).await?;
        let lease = client.lease_grant(lease_ttl, None).await?.id();
        Ok::<_, etcd_client::Error>((client, lease))
    };
    match on_runtime(&rt, connect)? {
        Ok((client, lease)) => Ok((rt, client, lease)),
        Err(e) => {
            let why = why_not_connected(&rt, cfg, tls, &e);
            Err(StoreError::Backend(format!("etcd at {}: {why}", cfg.endpoints.join(","))))
        }
    }
}

/// How to connect: timeouts, keep-alive, user and password, and TLS for `etcds://`
/// (its files read and checked before anything connects).
fn connect_options(cfg: &EtcdConfig, tls: &EtcdTls) -> Result<ConnectOptions> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(15))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(3));
    if let Some(u) = &cfg.user {
        let p = std::env::var("SECTL_ETCD_PASSWORD").map_err(|_| {
            StoreError::Invalid(format!("etcd user {u} given: set its password in SECTL_ETCD_PASSWORD"))
        })?;
        opts = opts.with_user(u.clone(), p);
    }
    if let Some(files) = tls.load().map_err(StoreError::Invalid)? {
        let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(files.ca_pem));
        if let Some((cert, key)) = files.identity {
            t = t.identity(Identity::from_pem(cert, key));
        }
        opts = opts.with_tls(t);
    }
    Ok(opts)
}

/// Runs `fut` on the store's runtime (whose threads ignore SIGPIPE) and waits for it.
fn on_runtime<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| be("the etcd runtime stopped"))
}

/// Blocks SIGPIPE in the calling thread (each thread of the store's runtime): the CLI
/// restores SIGPIPE's default (a closed stdout ends a verb quietly), and a write to a
/// connection etcd has just closed (a refused TLS handshake) would otherwise kill the
/// process instead of failing with EPIPE.
fn ignore_sigpipe() {
    // SAFETY: changes only this thread's signal mask, with a set built here.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Whether an error in the chain is the peer closing the connection at once (an I/O
/// error of that kind), as etcd does to a client speaking the other protocol.
fn closed_at_once(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    e.downcast_ref::<std::io::Error>().is_some_and(|io| {
        matches!(io.kind(), K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof)
    })
}

/// Why connecting failed, in words: a TLS cause in the error (`EtcdTls::explain`), or
/// found by a TLS connection of our own (`EtcdTls::probe`); else the innermost cause,
/// with a hint when a plain connection was closed at once (etcd may want TLS).
fn why_not_connected(rt: &tokio::runtime::Runtime, cfg: &EtcdConfig, tls: &EtcdTls, e: &etcd_client::Error) -> String {
    let (message, top, chain): (String, String, &(dyn std::error::Error + 'static)) = match e {
        etcd_client::Error::GRpcStatus(s) => {
            (s.message().into(), format!("{} (gRPC status {:?})", s.message(), s.code()), s)
        }
        etcd_client::Error::TransportError(t) => (t.to_string(), t.to_string(), t),
        other => return other.to_string(),
    };
    if let Some(why) = tls.explain(chain) {
        return why;
    }
    if cfg.tls {
        for ep in &cfg.endpoints {
            let (tls, ep) = (tls.clone(), ep.clone());
            if let Ok(Some(why)) = on_runtime(rt, async move { tls.probe(&ep).await }) {
                return why;
            }
        }
    }
    let mut innermost = None;
    let mut closed = false;
    let mut cur = chain.source();
    while let Some(c) = cur {
        innermost = Some(c.to_string());
        closed |= closed_at_once(c);
        cur = c.source();
    }
    let mut why = match innermost {
        Some(i) if i != message => format!("{top}: {i}"),
        _ => top,
    };
    // The layers word it differently ("Connection reset by peer" from the OS, "connection
    // reset" from h2, "connection closed" from hyper): compared without case.
    let lower = why.to_lowercase();
    closed |=
        ["connection closed", "broken pipe", "connection reset", "handshake eof"].iter().any(|c| lower.contains(c));
    match (closed, cfg.tls) {
        (true, false) => why.push_str(" (if etcd takes clients over TLS only, write etcds://... with --etcd-cafile)"),
        (true, true) => why.push_str(" (etcd closed the connection during the TLS handshake: if it takes clients over plain TCP, write etcd://...)"),
        _ => {}
    }
    why
}

#[cfg(test)]
mod tests {
    use super::closed_at_once;
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_connection_closed_by_the_peer_is_told_by_its_kind_not_its_wording() {
        for kind in
            [ErrorKind::ConnectionReset, ErrorKind::ConnectionAborted, ErrorKind::BrokenPipe, ErrorKind::UnexpectedEof]
        {
            assert!(closed_at_once(&Error::new(kind, "worded any way")), "{kind:?}");
        }
        for kind in [ErrorKind::ConnectionRefused, ErrorKind::TimedOut, ErrorKind::PermissionDenied] {
            assert!(!closed_at_once(&Error::new(kind, "connection reset")), "{kind:?}");
        }
        assert!(!closed_at_once(&std::fmt::Error));
    }
}
