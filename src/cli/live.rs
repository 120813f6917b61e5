//! Live views with a server: `get KIND -w` streams changes as table rows, `wait`
//! blocks until a condition holds, showing a progress bar for a running live
//! migration (phase, round, MiB sent of the round, dirty rate, expected downtime) on a
//! terminal and plain lines otherwise; `get sources` shows the GitOps files.

use super::{output, parse_kind, Backend, Context, Format};
use crate::api::{LiveMigrationSpec, LmPhase, Resource};
use anyhow::anyhow;
use comfy_table::{presets, Table};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `get sources`: one line per file (state, objects and revision in force), then the
/// state of pruning when objects are in no file any more.
pub fn sources(ctx: &mut Context, format: Format) -> anyhow::Result<ExitCode> {
    let Some(c) = ctx.remote()? else {
        anyhow::bail!("sources are the files of a `sectl serve --watch DIR`; give --server URL");
    };
    let v = c.call_any("GET", &format!("{}/sources", crate::client::PREFIX), None)?;
    match format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(ExitCode::SUCCESS);
        }
        Format::Yaml => {
            print!("{}", crate::manifest::to_yaml(&v));
            return Ok(ExitCode::SUCCESS);
        }
        Format::Table | Format::Wide => {}
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(vec!["FILE", "STATE", "OBJECTS", "REVISION", "LAST-SYNC", "MESSAGE"]);
    for s in v["items"].as_array().cloned().unwrap_or_default() {
        t.add_row(vec![
            s["file"].as_str().unwrap_or("").to_string(),
            s["state"].as_str().unwrap_or("").to_string(),
            s["objects"].as_array().map(|a| a.len()).unwrap_or(0).to_string(),
            s["revision"].as_str().filter(|r| !r.is_empty()).unwrap_or("-").to_string(),
            s["lastSync"].as_str().unwrap_or("").to_string(),
            s["message"].as_str().unwrap_or("").lines().next().unwrap_or("").to_string(),
        ]);
    }
    let p = &v["prune"];
    let state = p["state"].as_str().unwrap_or("None");
    if state != "None" {
        let n = p["objects"].as_array().map(|a| a.len()).unwrap_or(0);
        t.add_row(vec![
            "(prune)".to_string(),
            format!("Prune{state}"),
            n.to_string(),
            "-".into(),
            String::new(),
            p["message"].as_str().unwrap_or("").to_string(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// `sources prune [--confirm]`: shows the held prune, or carries it out.
pub fn sources_prune(ctx: &mut Context, confirm: bool) -> anyhow::Result<ExitCode> {
    let Some(c) = ctx.remote()? else {
        anyhow::bail!("sources are the files of a `sectl serve --watch DIR`; give --server URL");
    };
    if confirm {
        let v = c.call_any("POST", &format!("{}/sources/prune", crate::client::PREFIX), None)?;
        let pruned = v["pruned"].as_array().cloned().unwrap_or_default();
        for o in &pruned {
            println!("{} pruned", o.as_str().unwrap_or("").to_lowercase());
        }
        println!("{} objects pruned", pruned.len());
        return Ok(ExitCode::SUCCESS);
    }
    let v = c.call_any("GET", &format!("{}/sources", crate::client::PREFIX), None)?;
    let p = &v["prune"];
    let state = p["state"].as_str().unwrap_or("None");
    for o in p["objects"].as_array().cloned().unwrap_or_default() {
        println!("{}", o.as_str().unwrap_or(""));
    }
    match state {
        "Held" => {
            println!("{}", p["message"].as_str().unwrap_or(""));
            println!("nothing deleted; `sectl sources prune --confirm` deletes the objects above");
        }
        "None" => println!("no prune is held: every object of the folder is in a file"),
        _ => println!("no prune is held ({state}): {}", p["message"].as_str().unwrap_or("")),
    }
    Ok(ExitCode::SUCCESS)
}

/// The server's simulated clock: (simulated ms, time scale), read now.
fn server_clock(b: &Backend) -> Option<(u64, f64, Instant)> {
    let c = b.remote()?;
    let v = c.call_any("GET", &format!("{}/clock", crate::client::PREFIX), None).ok()?;
    Some((v["simulatedMs"].as_u64()?, v["timeScale"].as_f64()?, Instant::now()))
}

/// One line describing a migration's progress; `sim_now` estimates the server's
/// simulated time, to show how far into the round it is.
pub fn lm_progress(r: &Resource, sim_now: Option<u64>) -> (String, Option<(u64, u64)>) {
    let Some(o) = r.as_typed::<LiveMigrationSpec>() else { return (String::new(), None) };
    let st = &o.status;
    match (&st.progress, st.phase) {
        (Some(p), LmPhase::Copying) => {
            let frac = sim_now
                .map(|n| {
                    (n.saturating_sub(p.round_start_ms) as f64 / p.round_duration_ms.max(1) as f64).clamp(0.0, 1.0)
                })
                .unwrap_or(0.0);
            let sent = p.sending_mi_b * frac;
            (
                format!(
                    "{} Copying round {}: {:.0}/{:.0} MiB at {:.0} MiB/s, dirty {:.0} MiB/s, expected downtime {} ms",
                    o.name(),
                    p.round,
                    sent,
                    p.sending_mi_b,
                    p.rate_mi_bps,
                    p.dirty_rate_mi_bps,
                    p.expected_downtime_ms
                ),
                Some((sent as u64, p.sending_mi_b.max(1.0) as u64)),
            )
        }
        _ => (
            format!(
                "{} {}{}{}",
                o.name(),
                st.phase,
                st.monjv.as_ref().map(|m| format!(" MONJV {m}")).unwrap_or_default(),
                st.downtime_ms.map(|d| format!(", downtime {d} ms")).unwrap_or_default()
            ),
            None,
        ),
    }
}

/// `wait` against a server: polls until `check` passes or `timeout_ms` (real) passes.
pub fn wait_remote(
    b: &Backend,
    kind: crate::api::Kind,
    name: &str,
    timeout_ms: u64,
    for_: &str,
    check: impl Fn(&Resource) -> Result<(), String>,
) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let pb = ProgressBar::new(1);
        pb.set_style(ProgressStyle::with_template("{bar:30} {msg}").expect("template"));
        pb
    });
    let clock = server_clock(b);
    let mut last_line = String::new();
    loop {
        let obj = b.get(kind, name).map_err(|e| anyhow!("{e}"))?;
        let verdict = match &obj {
            None => Err(format!("{kind} {name} not found")),
            Some(o) => check(o),
        };
        if let Some(o) = &obj {
            let sim_now = clock.map(|(ms, scale, at)| ms + (at.elapsed().as_secs_f64() * scale * 1000.0) as u64);
            let (line, pos) = lm_progress(o, sim_now);
            if !line.is_empty() {
                match &bar {
                    Some(pb) => {
                        if let Some((p, len)) = pos {
                            pb.set_length(len);
                            pb.set_position(p);
                        }
                        pb.set_message(line);
                    }
                    None if line != last_line => {
                        eprintln!("{line}");
                        last_line = line;
                    }
                    None => {}
                }
            }
        }
        match verdict {
            Ok(()) => {
                if let Some(pb) = &bar {
                    pb.finish_and_clear();
                }
                println!("{}/{name} condition met ({for_})", kind.as_str().to_lowercase());
                return Ok(ExitCode::SUCCESS);
            }
            Err(why) if Instant::now() >= deadline => {
                if let Some(pb) = &bar {
                    pb.finish_and_clear();
                }
                eprintln!("error: timed out waiting for {}/{name}: {why}", kind.as_str().to_lowercase());
                return Ok(ExitCode::from(1));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `get KIND -w`: the list, then one row per change.
pub fn watch(ctx: &mut Context, kind: &str, format: Format) -> anyhow::Result<ExitCode> {
    let kind = parse_kind(kind)?;
    let b = ctx.store()?;
    let Some(c) = b.remote() else {
        anyhow::bail!("get -w streams changes from a running `sectl serve`; give --server URL");
    };
    let (objs, rv) = b.list(kind).map_err(|e| anyhow!("{e}"))?;
    let wide = format == Format::Wide;
    let table = output::table(kind, &objs, wide);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or("").to_string();
    println!("{header}");
    for l in lines {
        println!("{l}");
    }
    let clock = server_clock(b);
    c.watch(kind, rv, |ev| {
        let Ok(obj) = Resource::from_json(ev.object.to_string().as_bytes()) else { return true };
        match format {
            Format::Json => println!("{}", serde_json::json!({"type": ev.type_, "object": ev.object})),
            Format::Yaml => {
                print!("---\n{}", crate::manifest::to_yaml(&serde_json::json!({"type": ev.type_, "object": ev.object})))
            }
            _ => {
                let t = output::table(kind, std::slice::from_ref(&obj), wide);
                for l in t.lines().skip(1) {
                    let suffix = if ev.type_ == "DELETED" { "   (deleted)" } else { "" };
                    println!("{l}{suffix}");
                }
                let sim_now = clock.map(|(ms, scale, at)| ms + (at.elapsed().as_secs_f64() * scale * 1000.0) as u64);
                let (line, _) = lm_progress(&obj, sim_now);
                if !line.is_empty() && matches!(ev.type_.as_str(), "ADDED" | "MODIFIED") {
                    println!("  {line}");
                }
            }
        }
        true
    })?;
    Ok(ExitCode::SUCCESS)
}
