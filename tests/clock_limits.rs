//! The simulated clock's limits, end to end: `sim advance` past the end of simulated
//! time (1000 years) or by a duration too long to count is refused with exit 1 and
//! nothing saved, also through `serve` (422); `--time-scale` out of range is refused at
//! start; a store whose clock was saved past the end (by an older sectl) opens with a
//! clear message, and `sectl sim clock reset` brings it back.

mod common;

use common::{sectl_in, SITE};
use sectl::store::{SledStore, Store};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A data dir with the good site applied.
fn site() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("site.yaml");
    std::fs::write(&file, SITE).unwrap();
    let out = sectl_in(&tmp.path().join("data")).args(["apply", "-f"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmp
}

/// Runs sectl on `data`: exit code, stdout, stderr.
fn run(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = sectl_in(data).args(args).timeout(Duration::from_secs(60)).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The saved world's clock, as JSON.
fn saved_clock(data: &Path) -> serde_json::Value {
    let store = SledStore::open(data).unwrap();
    let meta = store.read_state("w/meta").unwrap().pop().expect("a saved world");
    serde_json::from_slice::<serde_json::Value>(&meta.1).unwrap()["clock"].clone()
}

#[test]
fn advancing_past_the_end_of_simulated_time_is_refused() {
    let tmp = site();
    let data = tmp.path().join("data");
    let before = saved_clock(&data);
    let events = run(&data, &["events", "-o", "json", "--limit", "100000"]).1;
    for d in ["8000y", "99999999999999d", "99999999999999999999999999d", "1001y"] {
        let (code, _, err) = run(&data, &["sim", "advance", d]);
        assert_eq!(code, 1, "sim advance {d}: {err}");
        assert!(err.contains("cannot advance the clock") && err.contains("at most 1000 years"), "{d}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(saved_clock(&data), before, "sim advance {d} saved a clock");
    }
    assert_eq!(run(&data, &["events", "-o", "json", "--limit", "100000"]).1, events, "events were logged");
    // Later commands work, and an advance within the limit still moves the clock.
    let (code, out, err) = run(&data, &["sim", "advance", "90s"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("simulated time "), "{out}");
    assert_eq!(saved_clock(&data)["now_ms"].as_u64().unwrap(), before["now_ms"].as_u64().unwrap() + 90_000);
    assert_eq!(run(&data, &["get", "vm"]).0, 0);
}

#[test]
fn a_clock_saved_past_the_end_opens_with_a_way_out() {
    let tmp = site();
    let data = tmp.path().join("data");
    let sane = saved_clock(&data)["now_ms"].as_u64().unwrap();
    // What an older sectl saved after `sim advance 8000y` (its world's meta entry).
    {
        let store = SledStore::open(&data).unwrap();
        let (key, bytes) = store.read_state("w/meta").unwrap().pop().expect("a saved world");
        let mut w: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        w["clock"]["now_ms"] = serde_json::json!(8000u64 * 36_525 * 864_000);
        let state = vec![(key, Some(serde_json::to_vec(&w).unwrap()))];
        store.commit_batch(sectl::store::Batch { state, durable: true, ..Default::default() }).unwrap();
    }
    for args in [&["sim", "advance", "1s"][..], &["apply", "-f", "-"][..]] {
        let (code, _, err) = run(&data, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("beyond the end of simulated time") && err.contains("sectl sim clock reset"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, out, err) = run(&data, &["sim", "clock", "reset"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("simulated clock reset from 252460800000000 ms to"), "{out}");
    let now = saved_clock(&data)["now_ms"].as_u64().unwrap();
    assert!(now >= sane && now < 365 * 86_400_000, "reset to {now} (was {sane} before the bad save)");
    let (code, _, err) = run(&data, &["sim", "advance", "1m"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(&data, &["sim", "clock", "reset"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to reset"), "{out}");
}

/// A running `sectl serve` on `data`: the child, its URL and token.
fn serve(data: &Path, extra: &[&str]) -> (std::process::Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sectl"))
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http"])
        .args(extra)
        .env_remove("SECTL_SERVER")
        .env_remove("SECTL_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sectl serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first.trim().rsplit(' ').next().unwrap_or_default().to_string();
    assert!(url.contains("127.0.0.1:"), "first line {first:?}");
    let token = std::fs::read_to_string(data.join("token")).unwrap().trim().to_string();
    (child, url, token)
}

#[test]
fn serve_refuses_huge_advances_and_stays_alive() {
    let tmp = site();
    let data = tmp.path().join("data");
    let (mut child, url, token) = serve(&data, &[]);
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let sim = |d: &str| {
        let body = serde_json::json!({"args": ["advance", d]}).to_string();
        match agent
            .post(&format!("{url}/apis/sectl.io/v1alpha1/sim"))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            .send_string(&body)
        {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
            Err(e) => panic!("POST sim: {e}"),
        }
    };
    for d in ["99999999999999d", "8000y"] {
        let (code, body) = sim(d);
        assert_eq!(code, 422, "{d}: {body}");
        assert!(body.contains("at most 1000 years"), "{body}");
    }
    // The controller is still there: a small advance is answered.
    let (code, body) = sim("1s");
    assert_eq!(code, 200, "{body}");
    assert!(agent.get(&format!("{url}/healthz")).call().is_ok());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn out_of_range_time_scales_are_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    for scale in ["1e12", "NaN", "-1", "inf"] {
        let out = Command::new(env!("CARGO_BIN_EXE_sectl"))
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0", &format!("--time-scale={scale}")])
            .env_remove("SECTL_SERVER")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "--time-scale {scale}: {err}");
        assert!(err.contains("--time-scale: must be a number from 0"), "{err}");
        assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "it started listening");
    }
}
