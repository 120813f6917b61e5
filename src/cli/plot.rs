//! `sectl plot`: the dashboard's pictures as SVG files, drawn by the same code
//! (`ui::svg`): `plot topology` (servers, units, VMs, clusters, migrations in flight)
//! and `plot lm NAME` (a live migration's pre-copy rounds). Reads the embedded store or
//! the server (`--server`); `-o FILE` is written whole (a temporary file renamed into
//! place) so a failed run never leaves half a picture; without `-o` the SVG goes to
//! standard output.

use super::{Context, UsageError};
use crate::api::Kind;
use crate::ui::site::Site;
use anyhow::Context as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Examples for `plot --help`.
pub const EXAMPLES: &str = "Examples:
  # The site as a picture
  sectl plot topology -o site.svg

  # A live migration's pre-copy rounds (MiB sent and dirtied per round)
  sectl plot lm lm-vm12 -o lm.svg";

/// `plot` arguments.
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// What to draw.
    #[command(subcommand)]
    pub what: PlotWhat,
}

/// The pictures.
#[derive(clap::Subcommand, Debug)]
pub enum PlotWhat {
    /// Servers, MUs, SUs, ISL-E, SU clusters, the VMs on each SU, migrations in flight.
    Topology {
        /// Write the SVG to this file (default: standard output).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// A live migration's pre-copy rounds: MiB sent and dirty per round, the suspension.
    Lm {
        /// The LiveMigration's name.
        name: String,
        /// Write the SVG to this file (default: standard output).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
}

/// Runs `plot`.
pub fn run(ctx: &mut Context, a: &PlotArgs) -> anyhow::Result<ExitCode> {
    let backend = ctx.store()?;
    let (svg, out) = match &a.what {
        PlotWhat::Topology { output } => {
            let site = Site::load(&crate::ui::topology::KINDS, |k| backend.list(k).map(|(v, _)| v), None)?;
            (crate::ui::svg::topology(&site), output)
        }
        PlotWhat::Lm { name, output } => {
            crate::api::ObjectName::new(name).map_err(|e| UsageError(format!("plot lm {name:?}: {e}")))?;
            let Some(lm) = backend.get(Kind::LiveMigration, name)? else {
                eprintln!("error: livemigration {name:?} not found");
                return Ok(ExitCode::from(1));
            };
            (crate::ui::svg::lm_chart(&serde_json::to_value(&lm)?), output)
        }
    };
    let doc = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{svg}\n");
    match out {
        Some(p) => write_whole(p, doc.as_bytes())?,
        None => std::io::stdout().write_all(doc.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file whole: a temporary file beside it, synced, renamed into place.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file = path.file_name().with_context(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", file.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
