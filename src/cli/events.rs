//! `sectl events` (the event log, `events ack`) and `sectl sim` (faults, repairs, the
//! clock). Event times are on the simulated clock; object metadata (creation) is real
//! time; where both appear they are labelled, and `sim clock` prints both.

use super::{output, parse_kind, Context, Format, UsageError};
use crate::manifest;
use crate::store::Event;
use serde_json::json;
use std::process::ExitCode;

/// Examples for `events --help`.
pub const EVENTS_EXAMPLES: &str = "Examples:
  # The newest 50 events (times are simulated)
  sectl events

  # One object's events, only warnings, only unacknowledged
  sectl events vm/vm12prod
  sectl events --warnings --unacked --component Cluster

  # Acknowledge all
  sectl events ack

  # For scripts
  sectl events -o json";

/// Examples for `sim --help`.
pub const SIM_EXAMPLES: &str = "Examples:
  # Power a unit off and on again (prints the manual's event chain)
  sectl sim power off abgwhite
  sectl sim power on abgwhite

  # Let 90 simulated seconds pass
  sectl sim advance 90s

  # Both clocks: real and simulated
  sectl sim clock";

/// `events` arguments.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// KIND/NAME to show only that object's events, or `ack`.
    pub target: Option<String>,
    /// Only events of this component (e.g. Cluster, M2000).
    #[arg(long)]
    pub component: Option<String>,
    /// Only Warning events.
    #[arg(long)]
    pub warnings: bool,
    /// Only events not yet acknowledged.
    #[arg(long)]
    pub unacked: bool,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Unacknowledged events per priority (the dashboard's count) instead of the list.
    #[arg(long, conflicts_with_all = ["target", "component", "warnings", "unacked"])]
    pub summary: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// `sim` arguments.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// E.g. `power off abgwhite`, `advance 90s`, `clock`.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = false)]
    pub args: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

fn print_doc(v: &serde_json::Value, f: Format) -> anyhow::Result<()> {
    match f {
        Format::Yaml => super::get::emit(&manifest::to_yaml(v)),
        _ => super::get::emit(&(serde_json::to_string_pretty(v)? + "\n")),
    }
}

/// `sectl events`.
pub fn events(ctx: &mut Context, a: &EventsArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.store()?;
    if a.summary {
        let v = crate::auth::summary::unacknowledged(&store.events()?);
        match a.output {
            Format::Table => {
                let mut text = String::from("PRIORITY  UNACKNOWLEDGED\n");
                for (p, n) in v["unacknowledged"].as_object().into_iter().flatten() {
                    text.push_str(&format!("{p:<9} {n}\n"));
                }
                text.push_str(&format!("{:<9} {}\n", "total", v["total"]));
                super::get::emit(&text)?;
            }
            f => print_doc(&v, f)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.target.as_deref() == Some("ack") {
        let n = store.ack_events()?;
        match a.output {
            Format::Table => println!("{n} event(s) acknowledged"),
            f => print_doc(&json!({"acknowledged": n}), f)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let object = match a.target.as_deref() {
        None => None,
        Some(t) => {
            let (k, n) = t
                .split_once('/')
                .ok_or_else(|| UsageError("give KIND/NAME, e.g. vm/vm12prod, or `ack`".to_string()))?;
            Some(format!("{}/{}", parse_kind(k)?.as_str(), n))
        }
    };
    let mut evs = store.events()?;
    evs.retain(|e| {
        object.as_ref().is_none_or(|o| &e.object == o)
            && a.component.as_deref().is_none_or(|c| e.component.eq_ignore_ascii_case(c))
            && (!a.warnings || e.type_ == crate::store::EventType::Warning)
            && (!a.unacked || !e.acknowledged)
    });
    evs.reverse();
    evs.truncate(a.limit);
    match a.output {
        Format::Json => super::get::emit(&(serde_json::to_string_pretty(&evs)? + "\n"))?,
        Format::Yaml => super::get::emit(&manifest::to_yaml(&evs))?,
        Format::Table => {
            if evs.is_empty() {
                eprintln!("No events.");
            } else {
                super::get::emit(&output::events_table(&evs))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn real_now() -> String {
    crate::store::now_rfc3339()
}

/// `sectl sim clock`: both clocks.
fn clock(ctx: &mut Context, f: Format) -> anyhow::Result<ExitCode> {
    let doc = if let Some(c) = ctx.remote()? {
        let v = c.call_any("GET", &format!("{}/clock", crate::client::PREFIX), None)?;
        json!({"realTime": real_now(), "simulatedMs": v["simulatedMs"], "timeScale": v["timeScale"]})
    } else {
        let c = ctx.controller()?;
        let clock = c.clock();
        json!({"realTime": real_now(), "simulatedTime": clock.rfc3339(), "simulatedMs": clock.now_ms})
    };
    match f {
        Format::Table => {
            println!(
                "real time       {}   (object metadata: creationTimestamp, AGE)",
                doc["realTime"].as_str().unwrap_or("")
            );
            match doc["simulatedTime"].as_str() {
                Some(t) => println!("simulated time  {t}   (status times, events, console lines)"),
                None => println!(
                    "simulated time  {} ms since the world began, {}x real time   (status times, events)",
                    doc["simulatedMs"], doc["timeScale"]
                ),
            }
        }
        f => print_doc(&doc, f)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `sectl sim`.
pub fn sim(ctx: &mut Context, a: &SimArgs) -> anyhow::Result<ExitCode> {
    if a.args.len() == 1 && a.args[0] == "clock" {
        return clock(ctx, a.output);
    }
    if a.args == ["clock", "reset"] {
        return super::sim_clock_reset(ctx);
    }
    let fault = match crate::sim::Fault::parse(&a.args) {
        Ok(f) => f,
        Err(usage) => return Err(UsageError(format!("{usage} | clock | clock reset")).into()),
    };
    let before = ctx.store()?.events()?.last().map(|e| e.seq).unwrap_or(0);
    let now = if let Some(client) = ctx.remote()? {
        match client.sim(&a.args) {
            Ok(v) => v["simulatedTime"].as_str().unwrap_or("").to_string(),
            // The world's refusal, worded as in embedded mode.
            Err(crate::store::StoreError::Invalid(e)) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        let mut c = ctx.controller()?;
        let applied = c.apply_fault(&fault).map_err(|e| e.to_string());
        if let Some(super::Backend::Embedded { store, .. }) = ctx.backend.as_ref() {
            let (result, reason) = match &applied {
                Ok(_) => (crate::auth::Outcome::Ok, "ok".to_string()),
                Err(e) => (crate::auth::Outcome::Invalid, crate::auth::short(e)),
            };
            let t = crate::auth::Target::other(&a.args.join(" "));
            crate::auth::Actor::local().record(store.as_ref(), crate::auth::Verb::Sim, &[t], result, &reason)?;
        }
        if let Err(e) = applied {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
        if ctx.reconcile {
            c.run_until_quiet()?;
        }
        c.clock().rfc3339()
    };
    let evs: Vec<Event> = ctx.store()?.events()?.into_iter().filter(|e| e.seq > before).collect();
    match a.output {
        Format::Table => {
            let mut text = format!("simulated time {now}\n");
            for e in evs {
                text.push_str(&format!(
                    "{} {:<8} {:<9} {}: {}\n",
                    e.time, e.priority, e.component, e.object, e.message
                ));
            }
            super::get::emit(&text)?;
        }
        f => print_doc(&json!({"simulatedTime": now, "events": evs}), f)?,
    }
    Ok(ExitCode::SUCCESS)
}
