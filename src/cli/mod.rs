//! The command line: the verbs, parsed with clap, one file per verb group (`apply.rs`:
//! apply, delete, diff, validate; `get.rs`; `describe.rs`; `edit.rs`; `patch.rs`:
//! label, annotate, patch; `wait.rs`; `explain.rs`; `events.rs`: events, sim;
//! `complete.rs`: completion, version). Shared pieces: `targets.rs` (which objects),
//! `select.rs` (selectors), `format.rs` and `jsonpath.rs` (`-o`), `output.rs` (tables),
//! `warn.rs` (references that do not resolve), `reference.rs` (docs/reference.md). Exit status: 0 success, 1 rejected or
//! invalid, 2 usage error.

mod apply;
mod attach;
mod backend;
mod complete;
pub mod crds;
mod describe;
mod describe_text;
mod diff;
mod edit;
mod events;
mod explain;
mod format;
mod get;
mod jsonpath;
mod live;
pub mod output;
mod patch;
mod plot;
mod reference;
mod select;
mod targets;
mod users;
mod wait;
mod warn;

pub use backend::Backend;
pub use reference::markdown as reference_markdown;

use crate::api::{schema, Kind, Resource};
use crate::controller::Controller;
use crate::manifest::{self, ManifestError};
use anyhow::{anyhow, Context as _};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Declarative reconciliation controller for BS2000 SE Server clusters.
#[derive(Parser, Debug)]
#[command(name = "sectl", version, about, propagate_version = true)]
pub struct Cli {
    /// Folder of the embedded store.
    #[arg(long, global = true, env = "SECTL_DATA_DIR", default_value = "./.sectl")]
    pub data_dir: PathBuf,
    /// Where objects are stored: `sled` (the embedded store in --data-dir) or
    /// `etcd://[user@]HOST:PORT[,HOST:PORT...][/prefix]` (password from
    /// SECTL_ETCD_PASSWORD); `etcds://...` for TLS to etcd (with --etcd-cafile).
    #[arg(long, global = true, env = "SECTL_STORE", default_value = "sled")]
    pub store: String,
    /// With --store etcds://: the CA certificate (PEM) that signed the etcd members'
    /// certificates (kube-apiserver's --etcd-cafile, etcdctl's --cacert).
    #[arg(long, global = true, env = "SECTL_ETCD_CAFILE", value_name = "FILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// With --store etcds:// on an etcd with --client-cert-auth: this client's
    /// certificate (PEM; etcdctl's --cert). Needs --etcd-keyfile.
    #[arg(long, global = true, env = "SECTL_ETCD_CERTFILE", value_name = "FILE")]
    pub etcd_certfile: Option<PathBuf>,
    /// The private key (PEM) of --etcd-certfile (etcdctl's --key).
    #[arg(long, global = true, env = "SECTL_ETCD_KEYFILE", value_name = "FILE")]
    pub etcd_keyfile: Option<PathBuf>,
    /// URL of a running `sectl serve` to talk to instead of the embedded store.
    #[arg(long, global = true, env = "SECTL_SERVER")]
    pub server: Option<String>,
    /// Also trust this CA certificate (PEM) for an https --server (the data dir's
    /// ca.crt is always trusted); may be given more than once.
    #[arg(long, global = true, env = "SECTL_CERTIFICATE_AUTHORITY")]
    pub certificate_authority: Vec<PathBuf>,
    /// Do not run the reconcilers after a change (embedded mode).
    #[arg(long, global = true)]
    pub no_reconcile: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Formats of the verbs that print a report rather than objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `--dry-run` as kubectl takes it (a bare `--dry-run` means client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// Write.
    None,
    /// Check locally (decode, validate, compare with what is stored); write nothing.
    Client,
    /// Let the store (embedded) or the server decide every outcome; write nothing.
    Server,
}

/// A usage error found after parsing (exit 2, like clap's own).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or update the objects in files, folders or stdin (-); all or nothing.
    #[command(after_help = apply::APPLY_EXAMPLES)]
    Apply(apply::ApplyArgs),
    /// List objects of one or more kinds, or show some by name.
    #[command(after_help = get::EXAMPLES)]
    Get(get::GetArgs),
    /// Spec, status, conditions and recent events of objects, for people.
    #[command(after_help = describe::EXAMPLES)]
    Describe(describe::DescribeArgs),
    /// Delete objects by kind and name, by selector, or those named in files.
    #[command(after_help = apply::DELETE_EXAMPLES)]
    Delete(apply::DeleteArgs),
    /// Show what an apply would change.
    ///
    /// Exit status: 0 no change, 1 changes, 2 invalid input (as `kubectl diff`, since
    /// 1 already means "changes").
    #[command(after_help = apply::DIFF_EXAMPLES)]
    Diff(apply::DiffArgs),
    /// Check manifests offline against the schemas and rules; no store needed.
    #[command(after_help = apply::VALIDATE_EXAMPLES)]
    Validate(apply::ValidateArgs),
    /// Write the JSON Schema of each kind to DIR/<kind>.json.
    #[command(after_help = "Examples:\n  # Refresh the schemas editors use\n  sectl schema --out schemas")]
    Schema {
        /// Output folder.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Print a CustomResourceDefinition (apiextensions.k8s.io/v1) per kind, as YAML.
    #[command(after_help = crds::EXAMPLES)]
    Crds,
    /// Documentation of a kind or one of its fields, from the schemas.
    #[command(after_help = explain::EXAMPLES)]
    Explain(explain::ExplainArgs),
    /// Edit an object in $EDITOR; it is validated and written when saved changed.
    #[command(after_help = edit::EXAMPLES)]
    Edit(edit::EditArgs),
    /// Add, change or remove labels (KEY=VALUE, KEY-).
    #[command(after_help = patch::LABEL_EXAMPLES)]
    Label(patch::MetaArgs),
    /// Add, change or remove annotations (KEY=VALUE, KEY-).
    #[command(after_help = patch::ANNOTATE_EXAMPLES)]
    Annotate(patch::MetaArgs),
    /// Change objects with a JSON merge patch or a JSON patch.
    #[command(after_help = patch::PATCH_EXAMPLES)]
    Patch(patch::PatchArgs),
    /// Run the controller: REST API, reconcilers, optional watch-folder GitOps.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve {
        /// Address to listen on (loopback by default; port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: String,
        /// Apply every manifest under this folder, at start and on every change.
        #[arg(long)]
        watch: Option<PathBuf>,
        /// Delete objects whose manifest was removed from the folder (only those).
        #[arg(long, requires = "watch")]
        prune: bool,
        /// How long an object must be in no file before --prune deletes it.
        #[arg(long, requires = "watch", default_value = "5s")]
        prune_grace: String,
        /// Largest share of the folder's objects one sync may prune (e.g. 50% or
        /// 0.5); more is held until `sectl sources prune --confirm`.
        #[arg(long, requires = "watch", default_value = "50%")]
        prune_max_share: String,
        /// How long a changed file must stay unchanged before it is read as complete.
        #[arg(long, requires = "watch", default_value = "1s")]
        settle: String,
        /// Read symbolic links whose target is a regular file inside the folder
        /// (other links are never read).
        #[arg(long, requires = "watch")]
        follow_links_inside: bool,
        /// Full resync period (e.g. 60s).
        #[arg(long, default_value = "60s")]
        resync: String,
        /// Simulated seconds per real second (1 = real time: a 64 GiB migration over
        /// 1 Gbit/s takes about 9 minutes to watch), from 0 (the clock moves only with
        /// `sim advance`) to 10000.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// Reconciles at once. Only 1: reconciles run one after another (each holds the
        /// simulated world's lock throughout), so a larger value is refused rather than
        /// accepted and ignored.
        #[arg(long, default_value_t = 1, value_parser = one_at_a_time)]
        concurrency: usize,
        /// Serve with this certificate chain (PEM) instead of one issued by the data
        /// dir's own CA; needs --tls-key.
        #[arg(long, requires = "tls_key", conflicts_with = "insecure_http")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP (loopback addresses only: the token would cross the
        /// network in clear).
        #[arg(long)]
        insecure_http: bool,
        /// The user GitOps applies the watched folder as (its rights limit the folder).
        #[arg(long = "as", requires = "watch", default_value = crate::auth::users::ADMIN)]
        as_user: String,
        /// Connections at once; when full, the oldest connection that has not sent a
        /// request yet is closed to make room. Lowered to fit the open-file limit.
        #[arg(long, default_value_t = crate::server::listener::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// With --store etcd://: how long a leader that stopped renewing keeps the
        /// lead before another replica takes over (default 5s).
        #[arg(long)]
        lease_ttl: Option<String>,
        /// With --store etcd://: this replica's name in the election (default: the
        /// --listen address; port 0 adds the process id).
        #[arg(long)]
        replica_id: Option<String>,
    },
    /// The watched folder of `sectl serve --watch` (needs --server): `sources prune`
    /// shows a held prune, `sources prune --confirm` carries it out.
    #[command(after_help = SOURCES_EXAMPLES)]
    Sources {
        /// What to do.
        #[command(subcommand)]
        action: SourcesAction,
    },
    /// Block until objects meet a condition, state, phase or JSONPath value, or are deleted.
    #[command(after_help = wait::EXAMPLES)]
    Wait(wait::WaitArgs),
    /// Change the simulated world: faults, repairs, the clock.
    ///
    /// power off|on UNIT, link down|up MGMT-CLUSTER, disk fail|repair DISK,
    /// bcam stop|fail|start SU, rewas stop|start SU, dirty VM MIB_PER_S,
    /// wait|resume VM, ioconfig start|end SU, shutdown initiate|cancel SU,
    /// device fail|repair SU MN, resmon warning|clear UNIT, maintenance on|off SU, sysdisk fail|repair SU,
    /// advance DURATION (the clock
    /// runs at most 1000 years past its start), clock,
    /// clock reset (bring back a clock saved past that end by an older sectl).
    #[command(after_help = events::SIM_EXAMPLES)]
    Sim(events::SimArgs),
    /// Verify the store: every status agrees with the simulated world, the books
    /// balance, no event twice; exit 0 clean, 1 with the problems listed. Reads the
    /// embedded store (stop a `serve` that holds it first).
    #[command(
        after_help = "Examples:\n  # After a crash, or any time: does the store agree with itself?\n  sectl check\n  sectl --data-dir /var/lib/sectl check"
    )]
    Check,
    /// The event log, newest first; `sectl events ack` acknowledges all.
    #[command(after_help = events::EVENTS_EXAMPLES)]
    Events(events::EventsArgs),
    /// Users and their roles: add, list, delete, rotate (administrators only).
    #[command(after_help = users::USER_EXAMPLES)]
    User {
        /// What to do.
        #[command(subcommand)]
        action: users::UserAction,
    },
    /// The user the token (or, embedded, the data directory) stands for.
    #[command(
        after_help = "Examples:\n  # Who am I to the server (the token of SECTL_TOKEN or the data dir)?\n  sectl --server https://127.0.0.1:7443 whoami\n  sectl whoami -o json"
    )]
    Whoami {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// The audit log: who did what, on which object and SUs, with what result;
    /// `audit verify` checks its hash chain.
    #[command(after_help = users::AUDIT_EXAMPLES)]
    Audit(users::AuditArgs),
    /// Pictures as SVG (the dashboard's): the topology, a live migration's rounds.
    #[command(after_help = plot::EXAMPLES)]
    Plot(plot::PlotArgs),
    /// Shell completion script for bash, zsh or fish.
    #[command(after_help = complete::EXAMPLES)]
    Completion(complete::CompletionArgs),
    /// The version of sectl.
    #[command(after_help = "Examples:\n  # For people, and for scripts\n  sectl version\n  sectl version -o json")]
    Version(complete::VersionArgs),
}

const SOURCES_EXAMPLES: &str = "Examples:
  # What a held prune would delete
  sectl --server https://127.0.0.1:7443 sources prune

  # Delete it (the objects still in no file of the folder)
  sectl --server https://127.0.0.1:7443 sources prune --confirm";

const SERVE_EXAMPLES: &str = "Examples:
  # Serve the embedded store, apply ./site on every change, delete what is removed
  sectl serve --listen 127.0.0.1:7443 --watch ./site --prune

  # Ten simulated seconds per real second
  sectl serve --time-scale 10";

/// Verbs that need no store: the store flags are hidden from their help.
const STORELESS: [&str; 5] = ["validate", "schema", "explain", "completion", "version"];
const STORE_FLAGS: [&str; 8] = [
    "data_dir",
    "store",
    "server",
    "no_reconcile",
    "certificate_authority",
    "etcd_cafile",
    "etcd_certfile",
    "etcd_keyfile",
];

/// The clap command: `Cli` with the store flags hidden from the verbs that need no store.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let flags: Vec<clap::Arg> =
        cmd.get_arguments().filter(|a| STORE_FLAGS.contains(&a.get_id().as_str())).cloned().collect();
    for verb in STORELESS {
        let flags = flags.clone();
        cmd = cmd.mut_subcommand(verb, move |mut sc| {
            for f in flags {
                sc = sc.arg(f.global(false).hide(true));
            }
            sc
        });
    }
    cmd
}

/// Parses the command line. The store flags are global (kubectl's habit: set them in
/// an alias or the environment); the verbs that need no store do not list them and do
/// not open a store.
fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Actions of `sectl sources`.
#[derive(Subcommand, Debug)]
pub enum SourcesAction {
    /// Show the prune held for confirmation; with --confirm, carry it out.
    Prune {
        /// Delete the held objects (those still in no file of the folder).
        #[arg(long)]
        confirm: bool,
    },
}

/// Runs the command line; returns the exit status.
pub fn main() -> ExitCode {
    let cli = parse();
    let serve = matches!(cli.command, Command::Serve { .. });
    if !serve {
        // A closed stdout (`sectl get vm | head -1`) ends the verb quietly, as it ends
        // Unix tools; the server keeps Rust's default (EPIPE as an error).
        // SAFETY: setting a signal disposition to its default, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Logs go to stderr; RUST_LOG overrides (serve logs at info, other verbs warn).
    // Colour only on a terminal.
    let default = if serve { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        // Only the `timing!` spans exist; they show only when RUST_LOG enables them.
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .try_init();
    match run(cli) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// What verbs need: the back end, opened on first use.
pub struct Context {
    data_dir: PathBuf,
    store: String,
    etcd_tls: crate::store::EtcdTls,
    server: Option<String>,
    ca: Vec<PathBuf>,
    reconcile: bool,
    backend: Option<Backend>,
}

impl Context {
    fn store(&mut self) -> anyhow::Result<&Backend> {
        if self.backend.is_none() {
            self.backend = Some(match &self.server {
                Some(url) => Backend::Remote(crate::client::Client::new(url, &self.data_dir, &self.ca)?),
                None => attach::open(&self.store, &self.etcd_tls, &self.data_dir, &self.ca, self.reconcile)?,
            });
        }
        Ok(self.backend.as_ref().expect("just opened"))
    }

    /// The --store value.
    pub fn store_spec(&self) -> &str {
        &self.store
    }

    /// The --etcd-cafile, --etcd-certfile and --etcd-keyfile values.
    pub fn etcd_tls(&self) -> &crate::store::EtcdTls {
        &self.etcd_tls
    }

    fn controller(&mut self) -> anyhow::Result<Controller> {
        self.store()?.controller()
    }

    fn settle(&mut self) -> anyhow::Result<()> {
        self.store()?.settle()
    }

    fn remote(&mut self) -> anyhow::Result<Option<&crate::client::Client>> {
        Ok(self.store()?.remote())
    }
}

impl Cli {
    /// The TLS flags for etcd, checked against --store (a usage error when they do
    /// not fit it: TLS flags with a plain or no etcd store, a certificate without its
    /// key). The verbs that need no store (`STORELESS`) check nothing, as for --store.
    pub fn etcd_tls(&self) -> anyhow::Result<crate::store::EtcdTls> {
        let tls = crate::store::EtcdTls {
            cafile: self.etcd_cafile.clone(),
            certfile: self.etcd_certfile.clone(),
            keyfile: self.etcd_keyfile.clone(),
        };
        let storeless = matches!(
            self.command,
            Command::Validate(_)
                | Command::Schema { .. }
                | Command::Explain(_)
                | Command::Completion(_)
                | Command::Version(_)
        );
        if !storeless {
            tls.check_flags(&self.store).map_err(|e| anyhow::Error::new(UsageError(e)))?;
        }
        Ok(tls)
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut ctx = Context {
        data_dir: cli.data_dir.clone(),
        store: cli.store.clone(),
        etcd_tls: cli.etcd_tls()?,
        server: cli.server.clone(),
        ca: cli.certificate_authority.clone(),
        reconcile: !cli.no_reconcile,
        backend: None,
    };
    // Verbs that may record events: an embedded run delivers alarms once at its end.
    let records_events = matches!(
        cli.command,
        Command::Apply(_)
            | Command::Delete(_)
            | Command::Sim(_)
            | Command::Edit(_)
            | Command::Patch(_)
            | Command::Label(_)
            | Command::Annotate(_)
    );
    let result = run_command(&mut ctx, cli);
    if records_events {
        if let Some(Backend::Embedded { store, reconcile: true }) = &ctx.backend {
            crate::alarm::deliver_once(store.clone());
        }
    }
    result
}

fn run_command(ctx: &mut Context, cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Apply(a) => apply::apply(ctx, &a),
        Command::Get(a) => get::run(ctx, &a),
        Command::Serve {
            listen,
            watch,
            prune,
            prune_grace,
            prune_max_share,
            settle,
            follow_links_inside,
            resync,
            time_scale,
            concurrency,
            tls_cert,
            tls_key,
            insecure_http,
            max_connections,
            lease_ttl,
            replica_id,
            as_user,
        } => {
            if !crate::store::is_etcd(&cli.store) && (lease_ttl.is_some() || replica_id.is_some()) {
                anyhow::bail!("--lease-ttl and --replica-id are for replicas on --store etcd://...; with --store {} one `serve` runs alone", cli.store);
            }
            let lease_ttl = crate::sim::parse_duration(lease_ttl.as_deref().unwrap_or("5s"))
                .map(std::time::Duration::from_millis)
                .map_err(|e| anyhow!("--lease-ttl: {e}"))?;
            if lease_ttl < std::time::Duration::from_secs(1) || lease_ttl.subsec_millis() != 0 {
                anyhow::bail!("--lease-ttl: a whole number of seconds, at least 1s (etcd leases count in seconds)");
            }
            let time_scale =
                crate::sim::clock::check_time_scale(time_scale).map_err(|e| anyhow!("--time-scale: {e}"))?;
            let resync = crate::sim::parse_duration(&resync).map_err(|e| anyhow!("--resync: {e}"))?;
            let ms = |flag: &str, v: &str| {
                crate::sim::parse_duration(v).map(std::time::Duration::from_millis).map_err(|e| anyhow!("{flag}: {e}"))
            };
            let gitops = crate::server::gitops::Options {
                prune,
                policy: crate::server::gitops::PrunePolicy {
                    grace: ms("--prune-grace", &prune_grace)?,
                    max_share: crate::server::gitops::parse_share(&prune_max_share)
                        .map_err(|e| anyhow!("--prune-max-share: {e}"))?,
                },
                settle: ms("--settle", &settle)?,
                follow_links_inside,
            };
            crate::server::serve(
                &cli.data_dir,
                crate::server::ServeOptions {
                    store: cli.store.clone(),
                    etcd_tls: ctx.etcd_tls().clone(),
                    listen,
                    watch,
                    gitops,
                    resync: std::time::Duration::from_millis(resync),
                    time_scale,
                    concurrency,
                    tls: tls_cert.zip(tls_key),
                    insecure_http,
                    max_connections,
                    lease_ttl,
                    replica_id,
                    as_user,
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe(a) => describe::run(ctx, &a),
        Command::Delete(a) => apply::delete(ctx, &a),
        Command::Diff(a) => apply::diff(ctx, &a),
        Command::Validate(a) => apply::validate(&a),
        Command::Check => check(ctx),
        Command::Schema { out } => {
            for p in schema::write_all(&out).with_context(|| format!("writing schemas to {}", out.display()))? {
                println!("wrote {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sources { action: SourcesAction::Prune { confirm } } => live::sources_prune(ctx, confirm),
        Command::Crds => crds::run(),
        Command::Explain(a) => explain::run(&a),
        Command::Edit(a) => edit::run(ctx, &a),
        Command::Label(a) => patch::meta(ctx, &a, patch::MetaField::Labels),
        Command::Annotate(a) => patch::meta(ctx, &a, patch::MetaField::Annotations),
        Command::Patch(a) => patch::run(ctx, &a),
        Command::Wait(a) => wait::run(ctx, &a),
        Command::Sim(a) => events::sim(ctx, &a),
        Command::Events(a) => events::events(ctx, &a),
        Command::User { action } => users::user(ctx, &action),
        Command::Whoami { output } => users::whoami(ctx, output),
        Command::Audit(a) => users::audit(ctx, &a),
        Command::Plot(a) => plot::run(ctx, &a),
        Command::Completion(a) => complete::completion(&a),
        Command::Version(a) => complete::version(&a),
    }
}

/// Parses a kind as kubectl users type it: VMDefinition, vmdefinition, vmdefinitions,
/// vm, vms, vmdefinitions.sectl.io.
/// `serve --concurrency`: only 1 is accepted (see its help). An earlier version took
/// larger values and ran the reconciles one after another all the same; a command line
/// that asked for more gets this error instead of a promise that is not kept.
fn one_at_a_time(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(1) => Ok(1),
        Ok(n) => Err(format!(
            "{n} reconciles at once is not supported: reconciles run one after another (each holds the simulated \
             world's lock), so only 1 is accepted; drop the option"
        )),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}

pub fn parse_kind(s: &str) -> anyhow::Result<Kind> {
    let bare = s.strip_suffix(".sectl.io").map(|b| b.strip_suffix(".v1alpha1").unwrap_or(b)).unwrap_or(s);
    let plural_short = bare.strip_suffix('s').and_then(Kind::parse);
    Kind::parse(bare).or(plural_short).ok_or_else(|| {
        let names: Vec<String> = Kind::ALL.iter().map(|k| format!("{} ({})", k.short_names()[1], k.as_str())).collect();
        anyhow!("unknown kind {s:?}; expected one of: {}", names.join(", "))
    })
}

fn print_errors(errors: &[ManifestError]) {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!("{} error(s); nothing was written", errors.len());
}

/// Reads and checks manifests, also against `existing`. On error, prints all problems.
fn load(files: &[String], existing: &[Resource]) -> Option<Vec<manifest::Document>> {
    let (docs, mut errors) = manifest::read_inputs(files);
    // Cross-document checks run on what did decode, so all errors come at once.
    errors.extend(manifest::check_documents(&docs, existing));
    if !errors.is_empty() {
        print_errors(&errors);
        return None;
    }
    Some(docs)
}

fn all_objects(store: &Backend, kind: Kind) -> anyhow::Result<Vec<Resource>> {
    Ok(store.list(kind)?.0)
}

fn check(ctx: &mut Context) -> anyhow::Result<ExitCode> {
    if ctx.server.is_some() {
        anyhow::bail!("`sectl check` reads the embedded store directly; run it without --server on the data dir (a running `sectl serve` holds it: stop it first)");
    }
    let store = match ctx.store()? {
        Backend::Embedded { store, .. } => store,
        Backend::Remote(c) => anyhow::bail!(
            "`sectl check` reads the embedded store directly, and the running `sectl serve` at {} holds it: stop the server first",
            c.url()
        ),
    };
    let problems = crate::check::check(store.as_ref())?;
    if problems.is_empty() {
        println!("ok: every status agrees with the simulated world, the books balance, no event twice");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        println!("{p}");
    }
    eprintln!("error: {} problem(s) found", problems.len());
    Ok(ExitCode::from(1))
}

/// `sectl sim clock reset`: brings back a simulated clock saved past the end of
/// simulated time (see `sim::clock`), in embedded mode only (a server cannot have
/// started with such a clock).
fn sim_clock_reset(ctx: &mut Context) -> anyhow::Result<ExitCode> {
    let store = match ctx.store()? {
        Backend::Embedded { store, .. } => store.clone(),
        Backend::Remote(c) => {
            eprintln!(
                "error: `sim clock reset` works on the data directory, and it goes to the server at {}: stop the server and run it without --server",
                c.url()
            );
            return Ok(ExitCode::from(1));
        }
    };
    let mut w = crate::sim::World::load_unchecked(store.as_ref()).map_err(|e| anyhow!("{e}"))?;
    if w.clock.check().is_ok() {
        println!("the simulated clock is fine ({}); nothing to reset", w.clock.rfc3339());
        return Ok(ExitCode::SUCCESS);
    }
    let (before, after) = w.reset_clock();
    w.save(store.as_ref()).map_err(|e| anyhow!("{e}"))?;
    let t = crate::auth::Target::other("clock reset");
    crate::auth::Actor::local().record(store.as_ref(), crate::auth::Verb::Sim, &[t], crate::auth::Outcome::Ok, "ok")?;
    println!(
        "simulated clock reset from {} ms to {} ms past its start: simulated time {}",
        before.now_ms,
        after.now_ms,
        after.rfc3339()
    );
    Ok(ExitCode::SUCCESS)
}
