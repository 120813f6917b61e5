//! `sectl serve`: the long-running controller. Owns the store, runs the reconcilers
//! on a thread (`engine`), serves the REST API (`api`) over HTTPS (`tls`, `listener`)
//! on loopback by default behind a bearer token, and optionally applies a watched
//! folder (`gitops`). Plain HTTP only with `--insecure-http`, and only on loopback.
//! SIGTERM or Ctrl-C shuts down gracefully: no new requests, the reconcile batch in
//! hand finishes, the world (with any migration in flight) is saved and the store
//! flushed.

pub mod access;
pub mod aggregated;
pub mod api;
pub mod discovery;
pub mod engine;
pub mod field_managers;
pub mod gitops;
pub mod kubeconfig;
pub mod listener;
pub mod openapi;
pub mod paging;
pub mod patch;
pub mod selector;
pub mod ssa;
pub mod status;
pub mod table;
pub mod timeout;
pub mod tls;
pub mod watch;
pub mod write;

use crate::client::TOKEN_FILE;
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of `sectl serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `--store`: `sled` or `etcd://...` (see `store::open`).
    pub store: String,
    /// Address to listen on (port 0 picks a free one; the address is printed).
    pub listen: String,
    /// Folder to apply and watch.
    pub watch: Option<PathBuf>,
    /// GitOps settings (prune, grace, share, settle, links).
    pub gitops: gitops::Options,
    /// Full resync period (GitOps and reconcilers).
    pub resync: Duration,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Reconciles at once.
    pub concurrency: usize,
    /// Certificate chain and key (PEM) to serve with instead of the data dir's own CA.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve plain HTTP (refused on a non-loopback address).
    pub insecure_http: bool,
    /// Connections at once (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// etcd: the leader lease's TTL.
    pub lease_ttl: Duration,
    /// etcd: this replica's id in the election (None: the listen address).
    pub replica_id: Option<String>,
    /// The user GitOps applies as.
    pub as_user: String,
}

/// The listen address resolved; refuses plain HTTP off loopback and warns when the
/// API is reachable from other machines.
fn check_listen(listen: &str, insecure_http: bool) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs as _;
    let addrs: Vec<std::net::SocketAddr> =
        listen.to_socket_addrs().map_err(|e| anyhow::anyhow!("--listen {listen}: {e}"))?.collect();
    let open = addrs.iter().any(|a| !a.ip().is_loopback());
    if open && insecure_http {
        anyhow::bail!(
            "--insecure-http is refused on {listen}, which is not a loopback address: the bearer token would cross the network in clear; serve HTTPS (the default) or listen on 127.0.0.1"
        );
    }
    if open {
        tracing::warn!(%listen, "listening on a non-loopback address: the API is reachable from other machines (HTTPS, bearer token required)");
    }
    Ok(())
}

/// The TLS acceptor: the given certificate, or one issued from the data dir's CA.
fn tls_acceptor(data_dir: &Path, opts: &ServeOptions) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    if opts.insecure_http {
        return Ok(None);
    }
    let (cert, key) = match &opts.tls {
        Some((c, k)) => (c.clone(), k.clone()),
        None => {
            let host = opts.listen.rsplit_once(':').map(|(h, _)| h).unwrap_or(&opts.listen);
            tls::issue_server_cert(data_dir, host)?
        }
    };
    let cfg = tls::server_config(&cert, &key)?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))))
}

/// Makes the token file readable by its owner only (mode 0600), whoever created it.
fn restrict(p: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p)?.permissions().mode() & 0o777;
        if mode != 0o600 {
            tracing::warn!(file = %p.display(), "token file had mode {mode:o}; set to 600");
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = p;
    Ok(())
}

/// Reads the token, creating it (mode 0600) at first start.
pub fn load_or_create_token(data_dir: &Path) -> anyhow::Result<String> {
    let p = data_dir.join(TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&p) {
        if !t.trim().is_empty() {
            restrict(&p)?;
            return Ok(t.trim().to_string());
        }
    }
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(&p)?;
    // The mode above applies only when the file is new (an empty one may exist).
    restrict(&p)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// Writes admin's new token where admin's token lives: the token file (replaced
/// atomically, 0600) and, when there is one, the kubeconfig.
pub fn write_admin_token(data_dir: &Path, token: &str) -> anyhow::Result<()> {
    let p = data_dir.join(TOKEN_FILE);
    let tmp = data_dir.join(format!(".{TOKEN_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p)?;
    kubeconfig::set_token(data_dir, token)
}

/// Reads (or creates) the admin token and makes user `admin` from it at first start.
pub fn admin_token(data_dir: &Path, store: &dyn Store) -> anyhow::Result<String> {
    let token = load_or_create_token(data_dir)?;
    crate::auth::users::ensure_admin(store, &token)?;
    Ok(token)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// With `--store etcd://`: waits until this replica leads (see `store::etcd_leader`),
/// records it (component Cluster), and returns the store, fenced on the leadership. A
/// leader that loses its lease exits at once (code 3): it writes nothing more, and a
/// supervisor starts it again as a standby.
#[cfg(not(feature = "etcd"))]
fn lead_on_etcd(_: &ServeOptions) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!("{}", crate::store::NO_ETCD)
}

/// See the other `lead_on_etcd`.
#[cfg(feature = "etcd")]
fn lead_on_etcd(opts: &ServeOptions) -> anyhow::Result<Arc<dyn Store>> {
    let store = crate::store::EtcdStore::open(&opts.store).map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = match &opts.replica_id {
        Some(id) => id.clone(),
        None if opts.listen.ends_with(":0") => format!("{}#{}", opts.listen, std::process::id()),
        None => opts.listen.clone(),
    };
    eprintln!("replica {id}: waiting to lead (controller, clock, GitOps) on {}", opts.store);
    let lost_id = id.clone();
    let lead = store
        .campaign(&id, opts.lease_ttl, move |why| {
            tracing::error!(replica = %lost_id, "lost the leadership: {why}; exiting");
            eprintln!("error: replica {lost_id} lost the leadership ({why}); exiting");
            std::process::exit(3);
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("replica {id} leads since {}", lead.info.since);
    store
        .record_event(crate::store::Event {
            seq: 0,
            time: crate::store::now_rfc3339(),
            type_: crate::store::EventType::Normal,
            priority: "NOTICE".into(),
            component: "Cluster".into(),
            object: format!("replica/{id}"),
            reason: "LeaderElected".into(),
            message: format!("replica {id} leads (controller, simulated clock, GitOps)"),
            acknowledged: false,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Arc::new(store))
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn serve(data_dir: &Path, opts: ServeOptions) -> anyhow::Result<()> {
    check_listen(&opts.listen, opts.insecure_http)?;
    let store = if opts.store.starts_with("etcd://") {
        crate::store::prepare_data_dir(data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        lead_on_etcd(&opts)?
    } else {
        crate::store::open(&opts.store, data_dir).map_err(|e| anyhow::anyhow!("{e}"))?
    };
    // A kubeconfig left by an earlier run names a server that is gone (see `kubeconfig`).
    kubeconfig::remove(data_dir);
    let token = admin_token(data_dir, store.as_ref())?;
    let acceptor = tls_acceptor(data_dir, &opts)?;
    let nofile = listener::raise_nofile();
    let limits = listener::Limits {
        max_connections: listener::fit_connections(opts.max_connections, nofile),
        handshake_timeout: listener::DEFAULT_TIMEOUT,
        header_timeout: listener::DEFAULT_TIMEOUT,
    };
    let dyn_store: Arc<dyn Store> = store.clone();
    let engine = engine::Engine::start(
        dyn_store.clone(),
        engine::EngineOptions { time_scale: opts.time_scale, concurrency: opts.concurrency, resync: opts.resync },
    )?;
    // Alarm delivery (traps, mails) on its own thread, after the event log's cursors.
    let alarms = crate::alarm::Delivery::start(dyn_store.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let ready = Arc::new(AtomicBool::new(true));
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
        let addr = listener.local_addr()?;
        // Fires when shutdown begins: ends watch streams (graceful shutdown waits for
        // open connections, and a watch never ends by itself) and the GitOps loop.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let mut sources = gitops::Sources::default();
        let mut gitops_task = None;
        if let Some(dir) = &opts.watch {
            let user = crate::auth::users::get(dyn_store.as_ref(), &opts.as_user)?
                .ok_or_else(|| anyhow::anyhow!("--as {}: no such user (add it with `sectl user add`)", opts.as_user))?;
            let actor = crate::auth::Actor { user, source: crate::auth::Source::Gitops };
            let g = gitops::GitOps::new(dir.clone(), opts.gitops.clone(), dyn_store.clone()).acting_as(actor);
            sources = g.sources.clone();
            let run = gitops::run(g, opts.resync, stop_rx.clone());
            gitops_task = Some(tokio::spawn(async move {
                // Said when it happens, not only at shutdown.
                if let Err(e) = run.await {
                    tracing::error!("GitOps stopped: {e:#}; the folder is no longer synced");
                }
            }));
        }
        let state = api::AppState {
            store: dyn_store.clone(),
            engine: Arc::new(Mutex::new(engine.tx.clone())),
            token: Arc::new(token),
            data_dir: Some(data_dir.to_path_buf()),
            sources,
            ready: ready.clone(),
            sim_ms: engine.sim_ms.clone(),
            time_scale: opts.time_scale,
            stop: stop_rx.clone(),
            ui: Arc::new(crate::ui::Sessions::new(acceptor.is_some())),
        };
        crate::ui::vm_table::follow(&state);
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        // The data folder's own CA when sectl issued the certificate; with --tls-cert
        // the client trusts what the system trusts.
        let ca = match (&opts.tls, acceptor.is_some()) {
            (None, true) => Some(std::fs::read(data_dir.join(tls::CA_CERT))?),
            _ => None,
        };
        kubeconfig::write(data_dir, &kubeconfig::url(scheme, addr), ca.as_deref(), &state.token)?;
        println!("sectl serve: listening on {scheme}://{addr}");
        let watch = opts.watch.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into());
        tracing::info!(%addr, %watch, time_scale = opts.time_scale, max_connections = limits.max_connections, "serving");
        let ready2 = ready.clone();
        let stop_tx2 = stop_tx.clone();
        let died = engine.died.clone();
        tokio::spawn(async move {
            // A dead controller loop ends the server too (with its error, below).
            tokio::select! {
                _ = shutdown_signal() => {},
                _ = died.notified() => {},
            }
            ready2.store(false, std::sync::atomic::Ordering::SeqCst);
            stop_tx2.send_replace(true);
            tracing::info!("shutting down: no new requests");
        });
        listener::run(listener, acceptor, api::router(state), limits, stop_rx.clone(), Duration::from_secs(30)).await;
        stop_tx.send_replace(true);
        if let Some(t) = gitops_task {
            let _ = t.await;
        }
        anyhow::Ok(())
    });
    // No longer listening: the CLI must not be sent here any more.
    kubeconfig::remove(data_dir);
    // Let running reconciles finish, then store the clock and flush the store. A loop
    // that died makes the exit status non-zero.
    let stopped = engine.shutdown().map_err(|e| anyhow::anyhow!("the controller died: {e:#}"));
    alarms.shutdown();
    stopped?;
    drop(dyn_store);
    let _ = store.put_blob("shutdown", crate::store::now_rfc3339().as_bytes());
    tracing::info!("stopped");
    result
}
