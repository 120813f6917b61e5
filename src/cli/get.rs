//! `sectl get`: list or show objects of one or more kinds, in any `-o` form, with
//! selectors, `--sort-by` and `--no-headers`; `-w` streams changes from a server.

use super::format::{self, ListOptions, Output, FORMATS};
use super::jsonpath::Expr;
use super::targets::{self, Selectors};
use super::{live, Context};
use std::io::Write as _;
use std::process::ExitCode;

/// Examples for `--help`.
pub const EXAMPLES: &str = "Examples:
  # All VM definitions, with more columns
  sectl get vm -o wide

  # Two VMs by name, and objects of different kinds
  sectl get vm vm12prod vm13test
  sectl get vm/vm12prod lm/lm-vm12

  # Everything
  sectl get all

  # Only what a selector picks, sorted, without the header
  sectl get vm -l app=db --sort-by=.spec.memoryMiB --no-headers
  sectl get lm --field-selector status.phase=Completed

  # Script forms
  sectl get vm -o name
  sectl get lm lm-vm12 -o jsonpath='{.status.phase}'
  sectl get vm -o custom-columns=NAME:.metadata.name,SU:.status.serverUnit

  # Stream changes from a server
  sectl --server https://127.0.0.1:7443 get lm -w";

/// `get` arguments.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// KIND [NAME...], KIND/NAME..., KIND,KIND or `all`; KIND is the kind, its plural,
    /// its short name or KIND.sectl.io (vm, vms, vmdefinitions.sectl.io, lm, suc, mc,
    /// se, rec). `get sources` lists the files of a GitOps server.
    #[arg(required = true, value_name = "RESOURCE")]
    pub resources: Vec<String>,
    /// Output format: table, wide, json, yaml, name, jsonpath=TEMPLATE or
    /// custom-columns=HEADER:PATH[,...].
    #[arg(short, long, default_value = "table", value_name = "FORMAT")]
    pub output: Output,
    #[command(flatten)]
    pub selectors: Selectors,
    /// Sort the list by a JSONPath, e.g. --sort-by=.metadata.creationTimestamp.
    #[arg(long, value_name = "JSONPATH")]
    pub sort_by: Option<String>,
    /// Leave out the header line of tables.
    #[arg(long)]
    pub no_headers: bool,
    /// Keep metadata.managedFields in json/yaml output (hidden by default, as in kubectl)
    #[arg(long)]
    pub show_managed_fields: bool,
    /// Stream changes (needs --server).
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// Writes `text` to stdout; a closed pipe (`| head -1`) ends quietly.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => Ok(r?),
    }
}

/// `sectl get`.
pub fn run(ctx: &mut Context, a: &GetArgs) -> anyhow::Result<ExitCode> {
    if matches!(a.resources[0].as_str(), "sources" | "source") {
        if a.resources.len() > 1 {
            anyhow::bail!("`get sources` takes no names");
        }
        return live::sources(ctx, &a.output);
    }
    if matches!(a.resources[0].as_str(), "leader" | "leaders") {
        return leader(ctx, a);
    }
    let req = targets::parse(&a.resources)?;
    let sort_by = a.sort_by.as_deref().map(Expr::parse).transpose().map_err(|e| anyhow::anyhow!("--sort-by: {e}"))?;
    if a.watch {
        if req.0.len() != 1 || !req.0[0].1.is_empty() || a.selectors.selector.is_some() {
            anyhow::bail!("get -w watches one whole kind, e.g. `get lm -w`");
        }
        if !matches!(a.output, Output::Table | Output::Wide | Output::Json | Output::Yaml) {
            anyhow::bail!("get -w prints table, wide, json or yaml; not {}", FORMATS);
        }
        return live::watch(ctx, req.0[0].0, &a.output);
    }
    let store = ctx.store()?;
    let mut found = targets::resolve(store, &req, &a.selectors)?;
    if !a.show_managed_fields {
        for (_, objs) in &mut found.groups {
            objs.iter_mut().for_each(|o| o.meta_mut().managed_fields = None);
        }
    }
    if let Some(by) = &sort_by {
        for (_, objs) in &mut found.groups {
            format::sort(objs, by);
        }
    }
    for (k, n) in &found.missing {
        eprintln!("error: {k} {n} not found");
    }
    // Stored objects that cannot be read are named, not hidden (and not fatal).
    let mut bad = Vec::new();
    for (kind, names) in &req.0 {
        if names.is_empty() {
            bad.extend(store.unreadable(*kind)?);
        }
    }
    let single = req.0.len() == 1 && req.0[0].1.len() == 1;
    let opts = ListOptions { no_headers: a.no_headers };
    if found.objects().next().is_none() && !a.output.is_document() {
        if found.missing.is_empty() && bad.is_empty() {
            let what = match req.0.as_slice() {
                [(k, _)] => k.plural().to_string(),
                _ => "resources".to_string(),
            };
            eprintln!("No {what} found.");
        }
    } else if !(single && found.objects().next().is_none()) {
        emit(&format::render(&found.groups, &a.output, &opts, single))?;
    }
    for b in &bad {
        eprintln!("error: {b}");
    }
    Ok(if found.missing.is_empty() && bad.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The leader record on etcd, if a replica leads.
#[cfg(feature = "etcd")]
fn current_leader(spec: &str, tls: &crate::store::EtcdTls) -> anyhow::Result<Option<crate::store::LeaderInfo>> {
    let store = crate::store::EtcdStore::open_with(spec, tls).map_err(|e| anyhow::anyhow!("{e}"))?;
    store.leader().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Without the `etcd` feature there is no leader to ask about.
#[cfg(not(feature = "etcd"))]
fn current_leader(_: &str, _: &crate::store::EtcdTls) -> anyhow::Result<Option<Leader>> {
    anyhow::bail!("{}", crate::store::NO_ETCD)
}

/// Stands in for `LeaderInfo` in a build without etcd (never built).
#[cfg(not(feature = "etcd"))]
#[derive(serde::Serialize)]
struct Leader {
    holder: String,
    since: String,
}

/// `sectl get leader`: who runs the controller among the `serve` replicas on etcd.
fn leader(ctx: &mut Context, a: &GetArgs) -> anyhow::Result<ExitCode> {
    if a.resources.len() > 1 {
        anyhow::bail!("`get leader` takes no names");
    }
    let spec = ctx.store_spec();
    if !crate::store::is_etcd(spec) {
        anyhow::bail!("`get leader` needs --store etcd://HOST:PORT (with sled one `serve` runs the controller)");
    }
    let Some(l) = current_leader(spec, ctx.etcd_tls())? else {
        eprintln!("no replica leads now");
        return Ok(ExitCode::from(1));
    };
    match a.output {
        Output::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&l)?))?,
        Output::Yaml => emit(&format!("holder: {}\nsince: {}\n", l.holder, l.since))?,
        Output::Table | Output::Wide => emit(&format!("HOLDER\tSINCE\n{}\t{}\n", l.holder, l.since))?,
        _ => anyhow::bail!("`get leader` prints table, json or yaml"),
    }
    Ok(ExitCode::SUCCESS)
}
