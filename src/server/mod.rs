//! `sectl serve`: the long-running controller. Owns the store, runs the reconcilers
//! on a thread (`engine`), serves the REST API (`api`) over HTTPS (`tls`, `listener`)
//! on loopback by default behind a bearer token, and optionally applies a watched
//! folder (`gitops`). Plain HTTP only with `--insecure-http`, and only on loopback.
//! SIGTERM or Ctrl-C shuts down gracefully: no new requests, the reconcile batch in
//! hand finishes, the world (with any migration in flight) is saved and the store
//! flushed.
//!
//! With `--store etcd://` several replicas run: each serves the API from the start
//! and campaigns; the one that wins takes up the leader's duties (controller, alarm
//! delivery, GitOps) in the same process, while the others refuse what only the
//! leader does (`standby_refusal`, 503 naming the leader).

pub mod access;
pub mod aggregated;
pub mod api;
mod blocking;
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
pub mod watch_hub;
pub mod write;

use crate::client::TOKEN_FILE;
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Settings of `sectl serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `--store`: `sled` or `etcd://...` (see `store::open`).
    pub store: String,
    /// `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile` (TLS to etcd).
    pub etcd_tls: crate::store::EtcdTls,
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
    // On etcd nothing else has made the data folder yet (0700 when new, as for sled).
    crate::store::prepare_data_dir(data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(&p).map_err(|e| anyhow::anyhow!("token file {}: {e}", p.display()))?;
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

/// This replica's part in the election on etcd; set once by `serve --store etcd://`
/// (unset on sled, where the one process leads).
static ELECTION: std::sync::OnceLock<Election> = std::sync::OnceLock::new();

/// Who leads, as the leader key says now: its id and API URL.
type LeaderLookup = Box<dyn Fn() -> Result<Option<(String, Option<String>)>, String> + Send + Sync>;

struct Election {
    /// This replica's id.
    id: String,
    /// True once this replica leads and its controller runs.
    leads: AtomicBool,
    leader: LeaderLookup,
}

impl Election {
    /// The leader in words, for a standby's answers.
    fn leader_text(&self) -> String {
        match (self.leader)() {
            Ok(Some((holder, _))) if holder == self.id => {
                "this replica has just won the election and is starting the controller; try again in a moment".into()
            }
            Ok(Some((holder, Some(url)))) => format!("the leader is replica {holder} at {url}"),
            Ok(Some((holder, None))) => format!("the leader is replica {holder} (it recorded no address)"),
            Ok(None) => "no replica leads at the moment (one takes over within the lease TTL)".into(),
            Err(e) => format!("the leader could not be read from etcd: {e}"),
        }
    }
}

/// `None` where this process runs the controller (sled, or the leader on etcd). On a
/// standby: why a request for `what` is not carried out here, naming the leader.
pub fn standby_refusal(what: &str) -> Option<String> {
    let e = ELECTION.get()?;
    if e.leads.load(Ordering::SeqCst) {
        return None;
    }
    Some(format!(
        "replica {} is a standby: {what} is the leader's (controller, simulated clock, GitOps); {}; send the request there",
        e.id,
        e.leader_text()
    ))
}

/// What `/readyz` says of this replica's role on etcd (None on sled): `role=leader`
/// or `role=standby` with the leader.
pub fn role() -> Option<String> {
    let e = ELECTION.get()?;
    Some(if e.leads.load(Ordering::SeqCst) {
        format!("role=leader (replica {})", e.id)
    } else {
        format!("role=standby (replica {}; {})", e.id, e.leader_text())
    })
}

/// What runs only where this process leads: the controller, alarm delivery, GitOps.
struct Leading {
    engine: engine::Engine,
    alarms: crate::alarm::Delivery,
    gitops: Option<tokio::task::JoinHandle<()>>,
}

enum Lead {
    /// A standby (etcd).
    Waiting,
    Leading(Leading),
    /// Shutdown began: nothing starts any more.
    Stopped,
}

/// The leader's duties, started at once on sled and when the election is won on etcd.
struct Duties {
    store: Arc<dyn Store>,
    engine_opts: engine::EngineOptions,
    /// Shared with the API: the controller's clock and its request channel.
    sim_ms: Arc<AtomicU64>,
    engine_tx: Arc<Mutex<mpsc::Sender<engine::Cmd>>>,
    /// The GitOps loop to run (with the resync period), built before serving so that
    /// the API's `sources` view is the loop's.
    gitops: Mutex<Option<(gitops::GitOps, Duration)>>,
    stop: tokio::sync::watch::Receiver<bool>,
    rt: tokio::runtime::Handle,
    /// Fires when the controller loop dies (the server then stops).
    died: Arc<tokio::sync::Notify>,
    lead: Mutex<Lead>,
}

impl Duties {
    /// Starts the controller, alarm delivery and GitOps; false when shutdown began first.
    fn start(&self) -> anyhow::Result<bool> {
        let mut lead = self.lead.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        if !matches!(*lead, Lead::Waiting) {
            return Ok(false);
        }
        let engine =
            engine::Engine::start_publishing(self.store.clone(), self.engine_opts.clone(), self.sim_ms.clone())?;
        *self.engine_tx.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = engine.tx.clone();
        let (died, engine_died) = (self.died.clone(), engine.died.clone());
        self.rt.spawn(async move {
            engine_died.notified().await;
            died.notify_one();
        });
        // Alarm delivery (traps, mails) on its own thread, after the event log's cursors.
        let alarms = match crate::alarm::Delivery::start(self.store.clone()) {
            Ok(a) => a,
            Err(e) => {
                let _ = engine.shutdown();
                return Err(e);
            }
        };
        let gitops = self.gitops.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.take().map(|(g, resync)| {
            let run = gitops::run(g, resync, self.stop.clone());
            self.rt.spawn(async move {
                // Said when it happens, not only at shutdown.
                if let Err(e) = run.await {
                    tracing::error!("GitOps stopped: {e:#}; the folder is no longer synced");
                }
            })
        });
        *lead = Lead::Leading(Leading { engine, alarms, gitops });
        Ok(true)
    }

    /// Ends the leader's duties (after the listener closed): GitOps, then the
    /// controller (the batch in hand finishes, the world is saved), then alarms.
    async fn stop(&self) -> anyhow::Result<()> {
        let was = std::mem::replace(&mut *self.lead.lock().map_err(|_| anyhow::anyhow!("poisoned"))?, Lead::Stopped);
        let Lead::Leading(l) = was else { return Ok(()) };
        if let Some(t) = l.gitops {
            let _ = t.await;
        }
        let stopped = tokio::task::spawn_blocking(move || {
            let r = l.engine.shutdown();
            l.alarms.shutdown();
            r
        })
        .await?;
        stopped.map_err(|e| anyhow::anyhow!("the controller died: {e:#}"))
    }
}

/// On etcd, a replica that has no token file while user admin exists already would
/// make a token no one can use: refused, saying what to copy.
fn check_token_file(data_dir: &Path, store: &dyn Store, spec: &str) -> anyhow::Result<()> {
    let file = data_dir.join(TOKEN_FILE);
    if file.exists() || crate::auth::users::get(store, crate::auth::users::ADMIN)?.is_none() {
        return Ok(());
    }
    anyhow::bail!(
        "user admin already exists on {spec} but {} does not: copy the token file of the replica that started first (mode 0600) into this replica's --data-dir, so that admin's token works against every replica",
        file.display()
    )
}

/// With `--store etcd://`: the store (not yet fenced: this replica is a standby).
#[cfg(not(feature = "etcd"))]
fn open_etcd(_: &ServeOptions) -> anyhow::Result<Candidate> {
    anyhow::bail!("{}", crate::store::NO_ETCD)
}

/// A replica on etcd: its store, which campaigns.
#[cfg(feature = "etcd")]
type Candidate = Arc<crate::store::EtcdStore>;
/// Without the feature there is no etcd replica.
#[cfg(not(feature = "etcd"))]
type Candidate = Arc<dyn Store>;

/// See the other `open_etcd`.
#[cfg(feature = "etcd")]
fn open_etcd(opts: &ServeOptions) -> anyhow::Result<Candidate> {
    let store = crate::store::EtcdStore::open_with(&opts.store, &opts.etcd_tls);
    Ok(Arc::new(store.map_err(|e| anyhow::anyhow!("{e}"))?))
}

/// This replica's id in the election.
#[cfg(feature = "etcd")]
fn replica_id(opts: &ServeOptions) -> String {
    match &opts.replica_id {
        Some(id) => id.clone(),
        None if opts.listen.ends_with(":0") => format!("{}#{}", opts.listen, std::process::id()),
        None => opts.listen.clone(),
    }
}

/// Registers this replica as a standby and campaigns on a thread: when it wins, it
/// records it (component Cluster), with its writes fenced on the leadership, and takes
/// up the leader's duties. A leader that loses its lease exits at once (code 3): it
/// writes nothing more, and a supervisor starts it again as a standby.
#[cfg(feature = "etcd")]
fn campaign(store: Candidate, opts: &ServeOptions, address: String, duties: Arc<Duties>) -> anyhow::Result<()> {
    let id = replica_id(opts);
    let ttl = opts.lease_ttl;
    let s2 = store.clone();
    let lookup: LeaderLookup =
        Box::new(move || s2.leader_record().map(|r| r.map(|r| (r.info.holder, r.address))).map_err(|e| e.to_string()));
    let _ = ELECTION.set(Election { id: id.clone(), leads: AtomicBool::new(false), leader: lookup });
    eprintln!(
        "replica {id}: serving the API as a standby; campaigning to lead (controller, clock, GitOps) on {}",
        opts.store
    );
    std::thread::Builder::new().name("campaign".into()).spawn(move || loop {
        let lost_id = id.clone();
        let won = store.campaign(&id, Some(address.clone()), ttl, move |why| {
            tracing::error!(replica = %lost_id, "lost the leadership: {why}; exiting");
            eprintln!("error: replica {lost_id} lost the leadership ({why}); exiting");
            std::process::exit(3);
        });
        let lead = match won {
            Ok(lead) => lead,
            Err(e) => {
                // Before winning (etcd out of reach past the TTL): campaign again.
                tracing::warn!(replica = %id, "campaign: {e}; trying again");
                std::thread::sleep(ttl.min(Duration::from_secs(1)));
                continue;
            }
        };
        if let Err(e) = take_over(&store, &id, &lead, &duties) {
            eprintln!("error: replica {id} leads but cannot run the controller: {e:#}; exiting");
            std::process::exit(1);
        }
        return;
    })?;
    Ok(())
}

/// The election is won: the event, then the controller, alarms and GitOps.
#[cfg(feature = "etcd")]
fn take_over(
    store: &crate::store::EtcdStore,
    id: &str,
    lead: &crate::store::Leadership,
    duties: &Duties,
) -> anyhow::Result<()> {
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
    if duties.start()? {
        if let Some(e) = ELECTION.get() {
            e.leads.store(true, Ordering::SeqCst);
        }
    }
    Ok(())
}

/// Without the feature there is no campaign (never reached: `open_etcd` refused).
#[cfg(not(feature = "etcd"))]
fn campaign(_: Candidate, _: &ServeOptions, _: String, _: Arc<Duties>) -> anyhow::Result<()> {
    anyhow::bail!("{}", crate::store::NO_ETCD)
}

/// Runs the server until SIGTERM or Ctrl-C. On sled this process leads; on etcd it
/// serves the API at once and leads when it wins the election.
pub fn serve(data_dir: &Path, opts: ServeOptions) -> anyhow::Result<()> {
    check_listen(&opts.listen, opts.insecure_http)?;
    let (store, candidate): (Arc<dyn Store>, Option<Candidate>) = if crate::store::is_etcd(&opts.store) {
        crate::store::prepare_data_dir(data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        let c = open_etcd(&opts)?;
        check_token_file(data_dir, c.as_ref(), &opts.store)?;
        (c.clone(), Some(c))
    } else {
        (crate::store::open_with(&opts.store, data_dir, &opts.etcd_tls).map_err(|e| anyhow::anyhow!("{e}"))?, None)
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
    let mut sources = gitops::Sources::default();
    let mut gitops = None;
    if let Some(dir) = &opts.watch {
        let user = crate::auth::users::get(store.as_ref(), &opts.as_user)?
            .ok_or_else(|| anyhow::anyhow!("--as {}: no such user (add it with `sectl user add`)", opts.as_user))?;
        let actor = crate::auth::Actor { user, source: crate::auth::Source::Gitops };
        let g = gitops::GitOps::new(dir.clone(), opts.gitops.clone(), store.clone()).acting_as(actor);
        sources = g.sources.clone();
        gitops = Some((g, opts.resync));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // Fires when shutdown begins: ends watch streams (graceful shutdown waits for
    // open connections, and a watch never ends by itself) and the GitOps loop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let duties = Arc::new(Duties {
        store: store.clone(),
        engine_opts: engine::EngineOptions {
            time_scale: opts.time_scale,
            concurrency: opts.concurrency,
            resync: opts.resync,
        },
        sim_ms: Arc::default(),
        // Replaced by the controller's when it starts (a standby refuses before using it).
        engine_tx: Arc::new(Mutex::new(mpsc::channel().0)),
        gitops: Mutex::new(gitops),
        stop: stop_rx.clone(),
        rt: rt.handle().clone(),
        died: Arc::new(tokio::sync::Notify::new()),
        lead: Mutex::new(Lead::Waiting),
    });
    if candidate.is_none() {
        duties.start()?;
    }
    let ready = Arc::new(AtomicBool::new(true));
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
        let addr = listener.local_addr()?;
        let state = api::AppState {
            store: store.clone(),
            engine: duties.engine_tx.clone(),
            token: Arc::new(token),
            data_dir: Some(data_dir.to_path_buf()),
            sources,
            ready: ready.clone(),
            sim_ms: duties.sim_ms.clone(),
            time_scale: opts.time_scale,
            stop: stop_rx.clone(),
            ui: Arc::new(crate::ui::Sessions::new(acceptor.is_some())),
            watch_hub: Default::default(),
        };
        crate::ui::vm_table::follow(&state);
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        // The data folder's own CA when sectl issued the certificate; with --tls-cert
        // the client trusts what the system trusts.
        let ca = match (&opts.tls, acceptor.is_some()) {
            (None, true) => Some(std::fs::read(data_dir.join(tls::CA_CERT))?),
            _ => None,
        };
        let url = kubeconfig::url(scheme, addr);
        kubeconfig::write(data_dir, &url, ca.as_deref(), &state.token)?;
        if let Some(c) = candidate {
            campaign(c, &opts, url, duties.clone())?;
        }
        println!("sectl serve: listening on {scheme}://{addr}");
        let watch = opts.watch.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into());
        tracing::info!(%addr, %watch, time_scale = opts.time_scale, max_connections = limits.max_connections, "serving");
        let ready2 = ready.clone();
        let stop_tx2 = stop_tx.clone();
        let died = duties.died.clone();
        tokio::spawn(async move {
            // A dead controller loop ends the server too (with its error, below).
            tokio::select! {
                _ = shutdown_signal() => {},
                _ = died.notified() => {},
            }
            ready2.store(false, Ordering::SeqCst);
            stop_tx2.send_replace(true);
            tracing::info!("shutting down: no new requests");
        });
        listener::run(listener, acceptor, api::router(state), limits, stop_rx.clone(), Duration::from_secs(30)).await;
        anyhow::Ok(())
    });
    stop_tx.send_replace(true);
    // No longer listening: the CLI must not be sent here any more.
    kubeconfig::remove(data_dir);
    // Let running reconciles finish, then store the clock and flush the store. A loop
    // that died makes the exit status non-zero.
    let stopped = rt.block_on(duties.stop());
    drop(duties);
    stopped?;
    result?;
    let _ = store.put_blob("shutdown", crate::store::now_rfc3339().as_bytes());
    tracing::info!("stopped");
    Ok(())
}
