//! Live views with a server: `get KIND -w` streams changes as table rows, `wait`
//! blocks until a condition holds, showing a progress bar for a running live
//! migration (phase, round, MiB sent of the round, dirty rate, expected downtime) on a
//! terminal and plain lines otherwise; `get sources` shows the GitOps files.

use super::format::Output;
use super::wait::Verdict;
use super::{output, Backend, Context};
use crate::api::{LiveMigrationSpec, LmPhase, Resource};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Longest message shown in the `get sources` table (full text with -o wide or json).
const MESSAGE_WIDTH: usize = 60;

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    s.chars().take(max - 3).collect::<String>() + "..."
}

/// `get sources`: one line per file (state, objects and revision in force), then the
/// state of pruning when objects are in no file any more.
pub fn sources(ctx: &mut Context, format: &Output) -> anyhow::Result<ExitCode> {
    let Some(c) = ctx.remote()? else {
        anyhow::bail!("sources are the files of a `sectl serve --watch DIR`; give --server URL");
    };
    let v = c.call_any("GET", &format!("{}/sources", crate::client::PREFIX), None)?;
    let wide = match format {
        Output::Table => false,
        Output::Wide => true,
        Output::Json => {
            return super::get::emit(&(serde_json::to_string_pretty(&v)? + "\n")).map(|_| ExitCode::SUCCESS)
        }
        Output::Yaml => return super::get::emit(&crate::manifest::to_yaml(&v)).map(|_| ExitCode::SUCCESS),
        _ => anyhow::bail!("get sources prints table, wide, json or yaml"),
    };
    let message = |msg: &str| {
        if wide {
            msg.replace('\n', " ")
        } else {
            truncate(msg.lines().next().unwrap_or(""), MESSAGE_WIDTH)
        }
    };
    let mut rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            vec![
                s["file"].as_str().unwrap_or("").to_string(),
                s["state"].as_str().unwrap_or("").to_string(),
                s["objects"].as_array().map(|a| a.len()).unwrap_or(0).to_string(),
                s["revision"].as_str().filter(|r| !r.is_empty()).unwrap_or("-").to_string(),
                s["lastSync"].as_str().unwrap_or("").to_string(),
                message(s["message"].as_str().unwrap_or("")),
            ]
        })
        .collect();
    let p = &v["prune"];
    let state = p["state"].as_str().unwrap_or("None");
    if state != "None" {
        let n = p["objects"].as_array().map(|a| a.len()).unwrap_or(0);
        rows.push(vec![
            "(prune)".to_string(),
            format!("Prune{state}"),
            n.to_string(),
            "-".into(),
            String::new(),
            message(p["message"].as_str().unwrap_or("")),
        ]);
    }
    super::get::emit(&output::simple_table(
        &["FILE", "STATE", "OBJECTS", "REVISION", "LAST-SYNC (REAL)", "MESSAGE"],
        rows,
    ))?;
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
    check: impl Fn(Option<&Resource>) -> Verdict,
) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now()
        .checked_add(Duration::from_millis(timeout_ms))
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let pb = ProgressBar::new(1);
        pb.set_style(ProgressStyle::with_template("{bar:30} {msg}").expect("template"));
        pb
    });
    let clock = server_clock(b);
    let mut last_line = String::new();
    loop {
        let obj = b.get(kind, name)?;
        let verdict = check(obj.as_ref());
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
        let clear = || {
            if let Some(pb) = &bar {
                pb.finish_and_clear();
            }
        };
        match verdict {
            Verdict::Met => {
                clear();
                println!("{}/{name} condition met ({for_})", kind.lower());
                return Ok(ExitCode::SUCCESS);
            }
            Verdict::Never(why) => {
                clear();
                eprintln!("error: {}/{name}: {why}", kind.lower());
                return Ok(ExitCode::from(1));
            }
            Verdict::NotYet(why) if Instant::now() >= deadline => {
                clear();
                eprintln!("error: timed out waiting for {}/{name}: {why}", kind.lower());
                return Ok(ExitCode::from(1));
            }
            Verdict::NotYet(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `get KIND -w`: the list, then one row per change.
pub fn watch(ctx: &mut Context, kind: crate::api::Kind, format: &Output) -> anyhow::Result<ExitCode> {
    let b = ctx.store()?;
    let Some(c) = b.remote() else {
        anyhow::bail!("get -w streams changes from a running `sectl serve`; give --server URL");
    };
    let (objs, rv) = b.list(kind)?;
    let wide = matches!(format, Output::Wide);
    let (header, rows) = output::cells(kind, &objs, wide, false);
    let aligned = output::Aligned::new(&header, &rows);
    if matches!(format, Output::Table | Output::Wide) {
        let mut text = aligned.line(&header).trim_end().to_string() + "\n";
        for r in &rows {
            text.push_str(aligned.line(r).trim_end());
            text.push('\n');
        }
        super::get::emit(&text)?;
    } else {
        for o in &objs {
            let ev = serde_json::json!({"type": "ADDED", "object": o});
            match format {
                Output::Json => println!("{ev}"),
                _ => print!("---\n{}", crate::manifest::to_yaml(&ev)),
            }
        }
    }
    let clock = server_clock(b);
    c.watch(kind, rv, |ev| {
        let Ok(obj) = Resource::from_json(ev.object.to_string().as_bytes()) else { return true };
        match format {
            Output::Json => println!("{}", serde_json::json!({"type": ev.type_, "object": ev.object})),
            Output::Yaml => {
                print!("---\n{}", crate::manifest::to_yaml(&serde_json::json!({"type": ev.type_, "object": ev.object})))
            }
            _ => {
                let (_, rows) = output::cells(kind, std::slice::from_ref(&obj), wide, false);
                for r in rows {
                    let suffix = if ev.type_ == "DELETED" { "   (deleted)" } else { "" };
                    println!("{}{suffix}", aligned.line(&r).trim_end());
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
    // The stream only ends when the server goes away.
    eprintln!("error: the watch ended: the server closed the connection");
    Ok(ExitCode::from(1))
}
