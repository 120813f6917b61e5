//! The command line: verbs of `shared/API.md` parsed with clap, each in its own
//! function. Exit status: 0 success, 1 rejected or invalid, 2 usage error.

mod backend;
mod diff;
mod live;
mod output;

pub use backend::Backend;

use crate::api::{schema, Kind, Resource};
use crate::controller::Controller;
use crate::manifest::{self, ManifestError};
use crate::store::{SledStore, StoreError};
use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Declarative reconciliation controller for BS2000 SE Server clusters.
#[derive(Parser, Debug)]
#[command(name = "sectl", version, about, propagate_version = true)]
pub struct Cli {
    /// Folder of the embedded store.
    #[arg(long, global = true, env = "SECTL_DATA_DIR", default_value = "./.sectl")]
    pub data_dir: PathBuf,
    /// URL of a running `sectl serve` to talk to instead of the embedded store.
    #[arg(long, global = true, env = "SECTL_SERVER")]
    pub server: Option<String>,
    /// Do not run the reconcilers after a change (embedded mode).
    #[arg(long, global = true)]
    pub no_reconcile: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Columns for people.
    Table,
    /// More columns.
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or update the objects in files, folders or stdin (-); all or nothing.
    Apply {
        /// Files, folders (recursively, *.yaml/*.yml) or - for stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        /// Validate and show what would happen; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Wait for the objects to converge (with --server).
        #[arg(long)]
        wait: bool,
        /// Print the resulting objects.
        #[arg(short, long, value_enum)]
        output: Option<Format>,
    },
    /// List objects of a kind, or show one.
    Get {
        /// Kind: e.g. vm, vmdefinitions, VMDefinition, lm, suc, mc, se, rec.
        kind: String,
        /// Name of one object.
        name: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Stream changes (needs --server).
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Spec, status, conditions and recent events of one object, for people.
    Describe {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// Delete objects by kind and name, or those named in files.
    Delete {
        /// Kind (with NAME).
        kind: Option<String>,
        /// Name.
        name: Option<String>,
        /// Files or folders whose objects to delete.
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        /// Succeed when an object does not exist.
        #[arg(long)]
        ignore_not_found: bool,
    },
    /// Show what an apply would change; exit 0 no change, 1 changes.
    Diff {
        /// Files, folders or -.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
    /// Check manifests offline against the schemas and rules; no store needed.
    Validate {
        /// Files, folders or -.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
    /// Write the JSON Schema of each kind to DIR/<kind>.json.
    Schema {
        /// Output folder.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Run the controller: REST API, reconcilers, optional watch-folder GitOps.
    Serve {
        /// Address to listen on (loopback by default; port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: String,
        /// Apply every manifest under this folder, at start and on every change.
        #[arg(long)]
        watch: Option<PathBuf>,
        /// Delete objects whose manifest was removed from the folder (only those).
        #[arg(long)]
        prune: bool,
        /// Full resync period (e.g. 60s).
        #[arg(long, default_value = "60s")]
        resync: String,
        /// Simulated seconds per real second (1 = real time: a 64 GiB migration over
        /// 1 Gbit/s takes about 9 minutes to watch).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// Reconciles at once (distinct objects).
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Block until an object meets a condition, state or phase.
    Wait {
        /// KIND/NAME, e.g. lm/lm-vm12.
        target: String,
        /// condition=TYPE[=True|False|Unknown], state=VALUE or phase=VALUE.
        #[arg(long = "for")]
        for_: String,
        /// Give up after this long (e.g. 30s, 5m). Embedded mode: simulated time.
        #[arg(long, default_value = "5m")]
        timeout: String,
    },
    /// Change the simulated world: faults, repairs, the clock.
    ///
    /// power off|on UNIT, link down|up MGMT-CLUSTER, disk fail|repair DISK,
    /// bcam stop|fail|start SU, rewas stop|start SU, dirty VM MIB_PER_S,
    /// wait|resume VM, ioconfig start|end SU, shutdown initiate|cancel SU,
    /// device fail|repair SU MN, resmon warning|clear UNIT, advance DURATION.
    Sim {
        /// E.g. `power off abgwhite`, `advance 90s`.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// The event log, newest first; `sectl events ack` acknowledges all.
    Events {
        /// KIND/NAME to show only that object's events, or `ack`.
        target: Option<String>,
        /// Only events of this component (e.g. Cluster, M2000).
        #[arg(long)]
        component: Option<String>,
        /// Only Warning events.
        #[arg(long)]
        warnings: bool,
        /// Only events not yet acknowledged.
        #[arg(long)]
        unacked: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Output format (table or json).
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

/// Runs the command line; returns the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG overrides (serve logs at info, other verbs warn).
    let default = if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// What verbs need: the back end, opened on first use.
pub struct Context {
    data_dir: PathBuf,
    server: Option<String>,
    reconcile: bool,
    backend: Option<Backend>,
}

impl Context {
    fn store(&mut self) -> anyhow::Result<&Backend> {
        if self.backend.is_none() {
            self.backend = Some(match &self.server {
                Some(url) => Backend::Remote(crate::client::Client::new(url, &self.data_dir)?),
                None => Backend::Embedded {
                    store: Arc::new(SledStore::open(&self.data_dir).map_err(|e| anyhow!("{e}"))?),
                    reconcile: self.reconcile,
                },
            });
        }
        Ok(self.backend.as_ref().expect("just opened"))
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

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut ctx = Context {
        data_dir: cli.data_dir.clone(),
        server: cli.server.clone(),
        reconcile: !cli.no_reconcile,
        backend: None,
    };
    match cli.command {
        Command::Apply { files, dry_run, wait, output } => apply(&mut ctx, &files, dry_run, wait, output),
        Command::Get { kind, name, output, watch } => {
            if kind == "sources" || kind == "source" {
                return live::sources(&mut ctx);
            }
            if watch {
                return live::watch(&mut ctx, &kind, output);
            }
            get(&mut ctx, &kind, name.as_deref(), output)
        }
        Command::Serve { listen, watch, prune, resync, time_scale, concurrency } => {
            let resync = crate::sim::parse_duration(&resync).map_err(|e| anyhow!("--resync: {e}"))?;
            crate::server::serve(
                &cli.data_dir,
                crate::server::ServeOptions {
                    listen,
                    watch,
                    prune,
                    resync: std::time::Duration::from_millis(resync),
                    time_scale,
                    concurrency,
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe { kind, name } => describe(&mut ctx, &kind, &name),
        Command::Delete { kind, name, files, ignore_not_found } => {
            delete(&mut ctx, kind, name, &files, ignore_not_found)
        }
        Command::Diff { files } => diff(&mut ctx, &files),
        Command::Validate { files } => validate(&files),
        Command::Schema { out } => {
            for p in schema::write_all(&out).with_context(|| format!("writing schemas to {}", out.display()))? {
                println!("wrote {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Wait { target, for_, timeout } => wait(&mut ctx, &target, &for_, &timeout),
        Command::Sim { args } => sim(&mut ctx, &args),
        Command::Events { target, component, warnings, unacked, limit, output } => {
            events(&mut ctx, target.as_deref(), component.as_deref(), warnings, unacked, limit, output)
        }
    }
}

fn parse_kind(s: &str) -> anyhow::Result<Kind> {
    Kind::parse(s).ok_or_else(|| {
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
    Ok(store.list(kind).map_err(|e| anyhow!("{e}"))?.0)
}

fn apply(
    ctx: &mut Context,
    files: &[String],
    dry_run: bool,
    wait: bool,
    output: Option<Format>,
) -> anyhow::Result<ExitCode> {
    // Decode first: a file with errors never opens (or locks) the store.
    let (docs, mut errors) = manifest::read_inputs(files);
    if !errors.is_empty() {
        errors.extend(manifest::check_documents(&docs, &[]));
        print_errors(&errors);
        return Ok(ExitCode::from(1));
    }
    let store = ctx.store()?;
    let servers = all_objects(store, Kind::SEServer)?;
    let errors = manifest::check_documents(&docs, &servers);
    if !errors.is_empty() {
        print_errors(&errors);
        return Ok(ExitCode::from(1));
    }
    let objs: Vec<Resource> = docs.into_iter().map(|d| d.resource).collect();
    let results = match store.apply(objs, dry_run) {
        Ok(r) => r,
        Err(e @ StoreError::Conflict { .. }) => {
            eprintln!("error: {e}");
            eprintln!("nothing was written");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(anyhow!("{e}")),
    };
    if !dry_run {
        ctx.settle()?;
    }
    let store = ctx.store()?;
    if wait && !dry_run && store.remote().is_some() {
        // With a server: block until the controller has observed every object's
        // generation, and every live migration or recovery has ended.
        for (_, r) in &results {
            let code = live::wait_remote(store, r.kind(), r.name(), 300_000, "converged", converged)?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
        }
    }
    match output {
        Some(f @ (Format::Json | Format::Yaml)) => {
            // Show the objects as they are now, status included.
            let mut objs = Vec::new();
            for (_, r) in results {
                objs.push(store.get(r.kind(), r.name()).map_err(|e| anyhow!("{e}"))?.unwrap_or(r));
            }
            output::print_objects(&objs, f, objs.len() == 1);
        }
        _ => {
            let suffix = if dry_run { " (dry run)" } else { "" };
            for (outcome, r) in &results {
                println!("{}/{} {}{}", r.kind().as_str().to_lowercase(), r.name(), outcome, suffix);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn get(ctx: &mut Context, kind: &str, name: Option<&str>, format: Format) -> anyhow::Result<ExitCode> {
    let kind = parse_kind(kind)?;
    let store = ctx.store()?;
    let objs = match name {
        Some(n) => match store.get(kind, n).map_err(|e| anyhow!("{e}"))? {
            Some(o) => vec![o],
            None => {
                eprintln!("error: {kind} {n} not found");
                return Ok(ExitCode::from(1));
            }
        },
        None => all_objects(store, kind)?,
    };
    match format {
        Format::Json | Format::Yaml => output::print_objects(&objs, format, name.is_some()),
        Format::Table | Format::Wide => {
            if objs.is_empty() {
                eprintln!("No {} found.", kind.plural());
            } else {
                print!("{}", output::table(kind, &objs, format == Format::Wide));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(ctx: &mut Context, kind: &str, name: &str) -> anyhow::Result<ExitCode> {
    let kind = parse_kind(kind)?;
    let store = ctx.store()?;
    let Some(obj) = store.get(kind, name).map_err(|e| anyhow!("{e}"))? else {
        eprintln!("error: {kind} {name} not found");
        return Ok(ExitCode::from(1));
    };
    let key = obj.key();
    let events: Vec<_> = store.events().map_err(|e| anyhow!("{e}"))?.into_iter().filter(|e| e.object == key).collect();
    print!("{}", output::describe(&obj, &events));
    Ok(ExitCode::SUCCESS)
}

fn delete(
    ctx: &mut Context,
    kind: Option<String>,
    name: Option<String>,
    files: &[String],
    ignore_not_found: bool,
) -> anyhow::Result<ExitCode> {
    let targets: Vec<(Kind, String)> = match (kind, name, files.is_empty()) {
        (Some(k), Some(n), true) => vec![(parse_kind(&k)?, n)],
        (None, None, false) => {
            let Some(docs) = load(files, &[]) else { return Ok(ExitCode::from(1)) };
            docs.iter().map(|d| (d.resource.kind(), d.resource.name().to_string())).collect()
        }
        _ => bail!("give either KIND NAME or -f PATH"),
    };
    let store = ctx.store()?;
    let mut failed = false;
    for (k, n) in targets {
        match store.delete(k, &n) {
            Ok(_) => println!("{}/{} deleted", k.as_str().to_lowercase(), n),
            Err(StoreError::NotFound { .. }) if ignore_not_found => {}
            Err(e @ StoreError::NotFound { .. }) => {
                eprintln!("error: {e}");
                failed = true;
            }
            Err(e) => return Err(anyhow!("{e}")),
        }
    }
    ctx.settle()?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn diff(ctx: &mut Context, files: &[String]) -> anyhow::Result<ExitCode> {
    let (docs, mut errors) = manifest::read_inputs(files);
    if !errors.is_empty() {
        errors.extend(manifest::check_documents(&docs, &[]));
        print_errors(&errors);
        return Ok(ExitCode::from(2));
    }
    let store = ctx.store()?;
    let servers = all_objects(store, Kind::SEServer)?;
    let errors = manifest::check_documents(&docs, &servers);
    if !errors.is_empty() {
        print_errors(&errors);
        return Ok(ExitCode::from(2));
    }
    let mut changed = false;
    for d in &docs {
        let current = store.get(d.resource.kind(), d.resource.name()).map_err(|e| anyhow!("{e}"))?;
        if let Some(text) = diff::object_diff(current.as_ref(), &d.resource) {
            changed = true;
            print!("{text}");
        }
    }
    Ok(if changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn validate(files: &[String]) -> anyhow::Result<ExitCode> {
    let Some(docs) = load(files, &[]) else { return Ok(ExitCode::from(1)) };
    let nfiles: std::collections::BTreeSet<&str> = docs.iter().map(|d| d.source.file.as_str()).collect();
    println!("{} object(s) in {} file(s) valid", docs.len(), nfiles.len());
    Ok(ExitCode::SUCCESS)
}

fn events(
    ctx: &mut Context,
    target: Option<&str>,
    component: Option<&str>,
    warnings: bool,
    unacked: bool,
    limit: usize,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let store = ctx.store()?;
    if target == Some("ack") {
        let n = store.ack_events().map_err(|e| anyhow!("{e}"))?;
        println!("{n} event(s) acknowledged");
        return Ok(ExitCode::SUCCESS);
    }
    let object = match target {
        None => None,
        Some(t) => {
            let (k, n) = t.split_once('/').ok_or_else(|| anyhow!("give KIND/NAME, e.g. vm/vm12prod, or `ack`"))?;
            Some(format!("{}/{}", parse_kind(k)?.as_str(), n))
        }
    };
    let mut evs = store.events().map_err(|e| anyhow!("{e}"))?;
    evs.retain(|e| {
        object.as_ref().is_none_or(|o| &e.object == o)
            && component.is_none_or(|c| e.component.eq_ignore_ascii_case(c))
            && (!warnings || e.type_ == crate::store::EventType::Warning)
            && (!unacked || !e.acknowledged)
    });
    evs.reverse();
    evs.truncate(limit);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&evs)?),
        Format::Yaml => print!("{}", manifest::to_yaml(&evs)),
        _ => {
            if evs.is_empty() {
                eprintln!("No events.");
            } else {
                print!("{}", output::events_table(&evs));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Parsed `--for`.
#[derive(Debug, Clone, PartialEq)]
enum WaitFor {
    Condition(String, String),
    Field(&'static str, String),
}

fn parse_wait_for(s: &str) -> anyhow::Result<WaitFor> {
    if let Some(rest) = s.strip_prefix("condition=") {
        let (t, v) = rest.split_once('=').unwrap_or((rest, "True"));
        if t.is_empty() {
            bail!("--for=condition=TYPE needs a condition type, e.g. condition=Ready");
        }
        return Ok(WaitFor::Condition(t.to_string(), v.to_string()));
    }
    if let Some(v) = s.strip_prefix("state=") {
        return Ok(WaitFor::Field("state", v.to_string()));
    }
    if let Some(v) = s.strip_prefix("phase=") {
        return Ok(WaitFor::Field("phase", v.to_string()));
    }
    bail!("--for must be condition=TYPE[=STATUS], state=VALUE or phase=VALUE, got {s:?}")
}

/// Whether the controller has caught up with `obj`: its status reflects the current
/// generation, and a migration or recovery has ended.
fn converged(obj: &Resource) -> Result<(), String> {
    let st = obj.status_json();
    let gen = obj.meta().generation.unwrap_or(1);
    if st["observedGeneration"].as_u64().unwrap_or(0) < gen {
        return Err(format!("generation {gen} not observed yet"));
    }
    match (obj.kind(), st["phase"].as_str()) {
        (Kind::LiveMigration, Some("Pending" | "Checking" | "Setup" | "Copying" | "Suspended" | "PostTreatment")) => {
            Err(format!("phase {}", st["phase"]))
        }
        (Kind::VMRecovery, Some("Pending")) => Err("phase Pending".into()),
        _ => Ok(()),
    }
}

/// Whether `obj` meets `w`; otherwise what it shows instead.
fn check_wait(obj: &Resource, w: &WaitFor) -> Result<(), String> {
    let status = obj.status_json();
    match w {
        WaitFor::Condition(t, v) => {
            let c = status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == t.as_str()));
            match c {
                Some(c) if c["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(v)) => Ok(()),
                Some(c) => Err(format!("condition {t} is {} ({}: {})", c["status"], c["reason"], c["message"])),
                None => Err(format!("no condition {t} yet")),
            }
        }
        WaitFor::Field(f, v) => match status[*f].as_str() {
            Some(x) if x.eq_ignore_ascii_case(v) => Ok(()),
            Some(x) => Err(format!("{f} is {x}")),
            None => Err(format!("no {f} yet")),
        },
    }
}

fn wait(ctx: &mut Context, target: &str, for_: &str, timeout: &str) -> anyhow::Result<ExitCode> {
    let (k, name) = target.split_once('/').ok_or_else(|| anyhow!("give KIND/NAME, e.g. lm/lm-vm12"))?;
    let kind = parse_kind(k)?;
    let cond = parse_wait_for(for_)?;
    let timeout_ms = crate::sim::parse_duration(timeout).map_err(|e| anyhow!("--timeout: {e}"))?;
    if ctx.remote()?.is_some() {
        // With a server: watch it (real time) until the condition holds or time is up.
        let store = ctx.store()?;
        return live::wait_remote(store, kind, name, timeout_ms, for_, |o| check_wait(o, &cond));
    }
    // Embedded mode: the reconcilers run here, on simulated time, until the object
    // meets the condition, the world is quiet, or the timeout (simulated) passes.
    let mut c = ctx.controller()?;
    let deadline = c.now_ms() + timeout_ms;
    loop {
        let obj = ctx.store()?.get(kind, name).map_err(|e| anyhow!("{e}"))?;
        let verdict = match &obj {
            None => Err(format!("{kind} {name} not found")),
            Some(o) => check_wait(o, &cond),
        };
        match verdict {
            Ok(()) => {
                println!("{}/{} condition met ({for_})", kind.as_str().to_lowercase(), name);
                return Ok(ExitCode::SUCCESS);
            }
            Err(why) => {
                if !ctx.reconcile || c.now_ms() >= deadline {
                    eprintln!("error: timed out waiting for {}/{}: {why}", kind.as_str().to_lowercase(), name);
                    return Ok(ExitCode::from(1));
                }
                let before = (c.now_ms(), c.stats.reconciles);
                // One step of simulated time at most 1 s, so progress is seen.
                c.run_until(Some((c.now_ms() + 1000).min(deadline)))?;
                if (c.now_ms(), c.stats.reconciles) == before && c.pending() == 0 {
                    eprintln!(
                        "error: {}/{}: {why}; the world is quiet, so this will not change",
                        kind.as_str().to_lowercase(),
                        name
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
}

fn sim(ctx: &mut Context, args: &[String]) -> anyhow::Result<ExitCode> {
    let fault = match crate::sim::Fault::parse(args) {
        Ok(f) => f,
        Err(usage) => {
            eprintln!("error: {usage}");
            return Ok(ExitCode::from(2));
        }
    };
    let before = ctx.store()?.events().map_err(|e| anyhow!("{e}"))?.last().map(|e| e.seq).unwrap_or(0);
    let now = if let Some(client) = ctx.remote()? {
        match client.sim(args) {
            Ok(v) => v["simulatedTime"].as_str().unwrap_or("").to_string(),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        let _ = &fault;
        let mut c = ctx.controller()?;
        if let Err(e) = c.apply_fault(&fault) {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
        if ctx.reconcile {
            c.run_until_quiet()?;
        }
        c.world().clock.rfc3339()
    };
    let evs: Vec<_> =
        ctx.store()?.events().map_err(|e| anyhow!("{e}"))?.into_iter().filter(|e| e.seq > before).collect();
    println!("simulated time {now}");
    for e in evs {
        println!("{} {:<8} {:<9} {}: {}", e.time, e.priority, e.component, e.object, e.message);
    }
    Ok(ExitCode::SUCCESS)
}
