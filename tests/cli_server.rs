//! The CLI against a running `sectl serve` (issue 11): errors stay typed end to end
//! (a stale write is the CLI's conflict, an unknown path is not "not found"), the
//! server decides a `--dry-run=server`, `get -w` says so and fails when the server
//! stops, `get sources` keeps its table narrow, and the serve log carries no ANSI
//! codes nor Rust debug syntax when stderr is a file.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Server {
    child: Child,
    url: String,
    data: PathBuf,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `sectl serve` on a free port with stderr (the log) written to a file.
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let data = dir.join("store");
        let log = dir.join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sectl"))
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("SECTL_SERVER")
            .env_remove("SECTL_DATA_DIR")
            .env_remove("SECTL_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn sectl serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("first line");
        let url = first.trim().strip_prefix("sectl serve: listening on ").expect("address line").to_string();
        Server { child, url, data, log }
    }

    fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sectl"));
        c.env_remove("SECTL_SERVER").env_remove("SECTL_DATA_DIR").env_remove("SECTL_TOKEN");
        c.arg("--data-dir").arg(&self.data).arg("--server").arg(&self.url).args(args);
        c
    }

    fn run(&self, code: i32, args: &[&str]) -> (String, String) {
        let out = self.cli(args).output().expect("runs");
        let (so, se) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert_eq!(out.status.code(), Some(code), "sectl {args:?}: want exit {code}\nstdout:\n{so}\nstderr:\n{se}");
        (so, se)
    }
}

#[test]
fn errors_stay_typed_with_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.run(0, &["apply", "-f", &root().join("manifests").display().to_string()]);
    // A write based on a stale resourceVersion: the CLI's conflict handling runs.
    let out = s.run(0, &["get", "vm", "vm12prod", "-o", "json"]).0;
    let mut vm: Value = serde_json::from_str(&out).unwrap();
    vm["metadata"]["resourceVersion"] = Value::String("1".into());
    vm["spec"]["memoryMiB"] = 1024.into();
    let f = dir.path().join("stale.json");
    std::fs::write(&f, vm.to_string()).unwrap();
    let (_, err) = s.run(1, &["apply", "-f", &f.display().to_string()]);
    assert!(err.contains("conflict:") && err.contains("nothing was written"), "{err}");
    // Missing objects are "not found"; an unknown path is an error of its own.
    let (_, err) = s.run(1, &["get", "vm", "nosuchvm"]);
    assert!(err.contains("not found"), "{err}");
    let wrong = format!("{}/elsewhere", s.url);
    let out = Command::new(env!("CARGO_BIN_EXE_sectl"))
        .arg("--data-dir")
        .arg(&s.data)
        .args(["--server", &wrong, "get", "vm", "vm12prod"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("no such path") && !err.contains("not found"), "{err}");
    // The server decides a server-side dry run and writes nothing.
    let (_, err) = s.run(1, &["delete", "vm", "vm12prod", "--dry-run=server"]);
    assert!(err.contains("no dry run for delete"), "{err}");
    let (out, _) = s.run(0, &["delete", "vm", "vm12prod", "--dry-run=client"]);
    assert!(out.contains("deleted (dry run)"), "{out}");
    let (out, _) = s.run(0, &["patch", "vm", "vm12prod", "-p", r#"{"spec":{"memoryMiB":1024}}"#, "--dry-run=server"]);
    assert!(out.contains("patched (server dry run)"), "{out}");
    let mem = s.run(0, &["get", "vm", "vm12prod", "-o", "jsonpath={.spec.memoryMiB}"]).0;
    assert_eq!(mem, "2048");
    // The log is plain text in a file.
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("serving"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI codes in the log file:\n{log}");
    assert!(!log.contains("Some("), "Rust debug syntax in the log:\n{log}");
}

#[test]
fn get_watch_fails_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    // The watch starts on an empty list; the rows that come later line up with the header.
    let mut w = s.cli(&["get", "vm", "-w"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = w.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut lines = vec![rx.recv_timeout(Duration::from_secs(20)).expect("the header")];
    s.run(0, &["apply", "-f", &root().join("manifests").display().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines.iter().filter(|l| l.contains("vm12prod")).count() == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        lines.push(rx.recv_timeout(left).unwrap_or_else(|_| panic!("no row for vm12prod: {lines:#?}")));
    }
    // SIGTERM: the server drains and ends open watches.
    let _ = Command::new("kill").arg("-TERM").arg(s.child.id().to_string()).status();
    let _ = s.child.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = w.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "get -w did not end when the server stopped");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(w.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("watch ended"), "{err}");
    lines.extend(rx.try_iter());
    let header = &lines[0];
    let col = header.find("VM-NAME").expect("VM-NAME column");
    let rows: Vec<&String> = lines.iter().skip(1).filter(|l| !l.starts_with(' ')).collect();
    assert!(!rows.is_empty(), "{lines:#?}");
    for r in rows {
        assert!(r[..col].ends_with(' ') && !r[col..].starts_with(' '), "row not under the header:\n{header}\n{r}");
    }
}

#[test]
fn sources_table_truncates_long_messages() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let long_name = "x".repeat(200);
    std::fs::write(
        site.join("bad.yaml"),
        format!("apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {long_name}}}\nspec: {{}}\n"),
    )
    .unwrap();
    let s = Server::start(dir.path(), &["--watch", &site.display().to_string(), "--settle", "200ms"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let json = loop {
        let out = s.run(0, &["get", "sources", "-o", "json"]).0;
        let v: Value = serde_json::from_str(&out).unwrap();
        // Until the file has settled it is InProgress; then Invalid with the long error.
        if v["items"].as_array().is_some_and(|a| !a.is_empty() && a[0]["state"] != "InProgress") {
            break v;
        }
        assert!(Instant::now() < deadline, "no source state: {out}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let full = json["items"][0]["message"].as_str().unwrap().to_string();
    assert!(full.len() > 100, "{full}");
    let table = s.run(0, &["get", "sources"]).0;
    assert!(table.lines().all(|l| l.len() < 200), "table too wide:\n{table}");
    assert!(table.contains("..."), "{table}");
    let wide = s.run(0, &["get", "sources", "-o", "wide"]).0;
    assert!(wide.contains(&full.replace('\n', " ")), "wide lacks the full message:\n{wide}");
    s.run(1, &["get", "sources", "-o", "name"]);
}

/// `serve --concurrency` more than 1 is refused at start (reconciles run one after
/// another; the value would be ignored), 1 and the default are accepted.
#[test]
fn serve_refuses_a_concurrency_it_would_not_keep() {
    let tmp = tempfile::tempdir().unwrap();
    for (value, wanted) in
        [("4", "4 reconciles at once is not supported"), ("0", "0 reconciles"), ("x", "not a number")]
    {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sectl"))
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http", "--concurrency", value])
            .env_remove("SECTL_SERVER")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--concurrency {value}: {err}");
        assert!(err.contains("--concurrency") && err.contains(wanted), "{err}");
        assert!(out.stdout.is_empty(), "it started listening");
        assert!(!tmp.path().join("data").exists(), "a refused command line made the data folder");
    }
}
