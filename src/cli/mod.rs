//! The command line: verbs of `shared/API.md` parsed with clap, each in its own
//! function. Exit status: 0 success, 1 rejected or invalid, 2 usage error.

mod diff;
mod output;

use crate::api::{schema, Kind, Resource};
use crate::manifest::{self, ManifestError};
use crate::store::{SledStore, Store, StoreError};
use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

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
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// What verbs need: the store, opened on first use.
pub struct Context {
    cli_data_dir: PathBuf,
    store: Option<SledStore>,
}

impl Context {
    fn store(&mut self) -> anyhow::Result<&SledStore> {
        if self.store.is_none() {
            self.store = Some(SledStore::open(&self.cli_data_dir).map_err(|e| anyhow!("{e}"))?);
        }
        Ok(self.store.as_ref().expect("just opened"))
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.server.is_some() {
        bail!("--server: talking to a running `sectl serve` is not available in this build yet; leave --server/SECTL_SERVER unset to use the embedded store");
    }
    let mut ctx = Context { cli_data_dir: cli.data_dir.clone(), store: None };
    match cli.command {
        Command::Apply { files, dry_run, wait: _, output } => apply(&mut ctx, &files, dry_run, output),
        Command::Get { kind, name, output, watch } => {
            if watch {
                bail!("get -w streams changes from a running `sectl serve`; give --server URL");
            }
            get(&mut ctx, &kind, name.as_deref(), output)
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
    if errors.is_empty() {
        errors = manifest::check_documents(&docs, existing);
    }
    if !errors.is_empty() {
        print_errors(&errors);
        return None;
    }
    Some(docs)
}

fn all_objects(store: &dyn Store, kind: Kind) -> anyhow::Result<Vec<Resource>> {
    Ok(store.list(kind).map_err(|e| anyhow!("{e}"))?.0)
}

fn apply(ctx: &mut Context, files: &[String], dry_run: bool, output: Option<Format>) -> anyhow::Result<ExitCode> {
    // Decode first: a file with errors never opens (or locks) the store.
    let (docs, errors) = manifest::read_inputs(files);
    if !errors.is_empty() {
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
    match output {
        Some(f @ (Format::Json | Format::Yaml)) => {
            let objs: Vec<Resource> = results.into_iter().map(|(_, r)| r).collect();
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
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn diff(ctx: &mut Context, files: &[String]) -> anyhow::Result<ExitCode> {
    let (docs, errors) = manifest::read_inputs(files);
    if !errors.is_empty() {
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
