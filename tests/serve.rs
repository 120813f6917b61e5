//! Issue 5, end to end: a real `sectl serve` (the binary, on 127.0.0.1:0, in a
//! temporary data folder) driven over HTTP and through the CLI with `--server`: the
//! REST API (CRUD, optimistic concurrency, JSON errors, watch with resume and 410),
//! the bearer token, health, `get -w` and `wait`, watch-folder GitOps (apply, edit,
//! invalid files, editor saves, prune, drift, migrated VMs, 200 files at once), and
//! SIGTERM in the middle of a live migration followed by a restart that finishes it.
//!
//! Every wait is bounded (`LIMIT`); every server and CLI child is killed on drop.

mod common;

use common::SITE;
use sectl::sim::World;
use sectl::store::{SledStore, Store};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any wait in this file may take.
const LIMIT: Duration = Duration::from_secs(20);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);
/// API prefix.
const API: &str = "/apis/sectl.io/v1alpha1";

// ---------------------------------------------------------------------------------
// Helpers

/// Polls `f` until it returns Some, at most `LIMIT`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {LIMIT:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// A child process, killed (and reaped) on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of `r`, delivered on a channel by a thread.
fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Receives from `rx` until `done` holds for what was received, at most `LIMIT`.
fn recv_until<T: std::fmt::Debug>(rx: &mpsc::Receiver<T>, what: &str, mut done: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let deadline = Instant::now() + LIMIT;
    let mut got = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => got.push(v),
            Err(e) => panic!("waiting for {what}: {e}; received so far: {got:#?}"),
        }
    }
    got
}

/// The resourceVersion of an object as JSON.
fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {obj}"))
}

/// A VMDefinition as YAML (DEFINED_ONLY unless `state` says otherwise).
fn vm_yaml(name: &str, vm_name: &str, memory: u64, state: &str) -> String {
    format!(
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {name}}}\nspec:\n  vmName: {vm_name}\n  serverUnit: ABGSE501\n  state: {state}\n  memoryMiB: {memory}\n"
    )
}

/// The same as JSON.
fn vm_json(name: &str, vm_name: &str, memory: u64) -> Value {
    json!({"apiVersion": "sectl.io/v1alpha1", "kind": "VMDefinition", "metadata": {"name": name},
        "spec": {"vmName": vm_name, "serverUnit": "ABGSE501", "state": "DEFINED_ONLY", "memoryMiB": memory}})
}

/// A LiveMigration of vm12prod to ABGSE701.
const LM: &str = r#"apiVersion: sectl.io/v1alpha1
kind: LiveMigration
metadata: {name: lm-vm12}
spec: {vm: vm12prod, targetServerUnit: ABGSE701}
"#;

/// Sends SIGTERM to a process.
fn sigterm(pid: u32) {
    let st = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("run kill");
    assert!(st.success(), "kill -TERM {pid} failed");
}

/// A running `sectl serve`.
struct Server {
    proc: Guard,
    url: String,
    data: PathBuf,
    token: String,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
    /// Keeps the stdout pipe read (the server prints one line, but never block it).
    _stdout: mpsc::Receiver<String>,
}

/// An agent that trusts the CA in `data` (for https URLs) with these timeouts.
fn agent_for(url: &str, data: &Path) -> ureq::AgentBuilder {
    let b = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5));
    if url.starts_with("https://") {
        let cfg = sectl::server::tls::client_config(data, &[]).expect("trust the data dir's CA");
        return b.tls_config(Arc::new(cfg));
    }
    b
}

impl Server {
    /// Starts `sectl --data-dir DATA serve --listen 127.0.0.1:0 EXTRA...` and reads the
    /// address from the first line of stdout.
    fn start(data: &Path, extra: &[&str]) -> Server {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_sectl")), data, extra)
    }

    /// The same under an open-file limit of `nofile` (soft and hard, via `sh -c ulimit`).
    fn start_limited(data: &Path, nofile: u32, extra: &[&str]) -> Server {
        let mut c = Command::new("sh");
        c.args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_sectl")]);
        Self::start_with(c, data, extra)
    }

    fn start_with(mut cmd: Command, data: &Path, extra: &[&str]) -> Server {
        let mut child = cmd
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("SECTL_SERVER")
            .env_remove("SECTL_DATA_DIR")
            .env_remove("SECTL_TOKEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sectl serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let proc = Guard(child);
        let log = Arc::new(Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = log2.lock().unwrap_or_else(|p| p.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let out = lines_of(stdout);
        let first = out.recv_timeout(LIMIT).unwrap_or_else(|e| {
            panic!("sectl serve printed no first line ({e}); log:\n{}", log.lock().unwrap_or_else(|p| p.into_inner()))
        });
        let url = first
            .strip_prefix("sectl serve: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        let plain = extra.contains(&"--insecure-http");
        let scheme = if plain { "http" } else { "https" };
        assert!(url.starts_with(&format!("{scheme}://127.0.0.1:")), "{url}");
        assert!(!url.ends_with(":0"), "the real port is printed: {url}");
        let token = std::fs::read_to_string(data.join("token")).expect("token file").trim().to_string();
        let agent = agent_for(&url, data).timeout(LIMIT).build();
        Server { proc, url, data: data.to_path_buf(), token, log, agent, _stdout: out }
    }

    /// The server's log so far.
    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A raw request: status and body text.
    fn req(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
        self.req_auth(method, path, token.map(|t| format!("Bearer {t}")).as_deref(), body)
    }

    /// A raw request with this Authorization header (if any).
    fn req_auth(&self, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> (u16, String) {
        let mut r = self.agent.request(method, &format!("{}{path}", self.url));
        if let Some(a) = auth {
            r = r.set("Authorization", a);
        }
        let res = match body {
            Some(b) => r.set("Content-Type", "application/json").send_string(b),
            None => r.call(),
        };
        match res {
            Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    /// An API request with the token, `path` below the API prefix; the body as JSON.
    fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let b = body.map(|b| b.to_string());
        let (code, text) = self.req(method, &format!("{API}{path}"), Some(&self.token), b.as_deref());
        let v =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path} ({code}): not JSON ({e}): {text}"));
        (code, v)
    }

    /// One object, or None on 404.
    fn obj(&self, plural: &str, name: &str) -> Option<Value> {
        match self.api("GET", &format!("/{plural}/{name}"), None) {
            (200, v) => Some(v),
            (404, _) => None,
            (code, v) => panic!("GET {plural}/{name}: {code} {v}"),
        }
    }

    /// All objects of a kind.
    fn list(&self, plural: &str) -> Vec<Value> {
        let (code, v) = self.api("GET", &format!("/{plural}"), None);
        assert_eq!(code, 200, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Names of all objects of a kind.
    fn names(&self, plural: &str) -> Vec<String> {
        self.list(plural).iter().map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string()).collect()
    }

    /// The event log.
    fn events(&self) -> Vec<Value> {
        let (code, v) = self.api("GET", "/events", None);
        assert_eq!(code, 200, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Events with this reason.
    fn events_with(&self, reason: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["reason"] == reason).collect()
    }

    /// GitOps sources.
    fn sources(&self) -> Vec<Value> {
        let (code, v) = self.api("GET", "/sources", None);
        assert_eq!(code, 200, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Opens a watch of `plural` from `rv`: the events as they come, or the refusal.
    fn watch(&self, plural: &str, rv: u64) -> Result<mpsc::Receiver<Value>, (u16, Value)> {
        // No overall timeout (the body is a stream); a read gives up after LIMIT.
        let agent = agent_for(&self.url, &self.data).timeout_read(LIMIT).build();
        let url = format!("{}{API}/{plural}?watch=1&resourceVersion={rv}", self.url);
        match agent.get(&url).set("Authorization", &format!("Bearer {}", self.token)).call() {
            Ok(resp) => {
                let lines = lines_of(resp.into_reader());
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || {
                    while let Ok(l) = lines.recv() {
                        if l.trim().is_empty() {
                            continue;
                        }
                        let v: Value =
                            serde_json::from_str(&l).unwrap_or_else(|e| panic!("watch line not JSON: {e}: {l}"));
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                });
                Ok(rx)
            }
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                Err((code, serde_json::from_str(&text).unwrap_or(Value::String(text))))
            }
            Err(e) => panic!("watch {plural}: {e}"),
        }
    }

    /// The CLI talking to this server (token from the data folder).
    fn cli(&self) -> assert_cmd::Command {
        let mut c = common::sectl_in(&self.data);
        c.env_remove("SECTL_TOKEN").arg("--server").arg(&self.url).timeout(LIMIT);
        c
    }

    /// Runs the CLI; must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli().args(args).assert().success().get_output().stdout.clone();
        String::from_utf8(out).expect("utf-8")
    }

    /// Runs the CLI; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cli().args(args).output().expect("run sectl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn stop(&mut self) -> ExitStatus {
        sigterm(self.proc.0.id());
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(st) = self.proc.0.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() >= deadline {
                panic!("sectl serve did not stop within {LIMIT:?} of SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A temporary folder with `data/` (the store) and `watch/` (GitOps) in it.
struct Dirs {
    tmp: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let d = Dirs { tmp: tempfile::tempdir().expect("tempdir") };
        std::fs::create_dir_all(d.watch()).expect("watch dir");
        d
    }
    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }
    fn watch(&self) -> PathBuf {
        self.tmp.path().join("watch")
    }
    fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    /// Writes `text` to `name` in the watched folder.
    fn put(&self, name: &str, text: &str) {
        std::fs::write(self.watch().join(name), text).expect("write manifest");
    }
}

fn spec_memory(o: &Value) -> u64 {
    o["spec"]["memoryMiB"].as_u64().unwrap_or_else(|| panic!("no spec.memoryMiB in {o}"))
}

fn source_of(o: &Value) -> Option<String> {
    o["metadata"]["annotations"]["sectl.io/source"].as_str().map(String::from)
}

// ---------------------------------------------------------------------------------
// REST API, token, health

#[test]
fn http_crud_conflicts_errors_and_token() {
    let d = Dirs::new();
    let s = Server::start(&d.data(), &[]);

    // Health and readiness need no token.
    assert_eq!(s.req("GET", "/healthz", None, None), (200, "ok".to_string()));
    assert_eq!(s.req("GET", "/readyz", None, None).0, 200);

    // The token was generated at first start, with mode 0600.
    assert!(s.token.len() >= 32, "token too short: {:?}", s.token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.data().join("token")).expect("token").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "token file mode is {mode:o}");
    }

    // Without the token, or with a wrong one: 401 as JSON, and nothing is written.
    let body = vm_json("web1", "WEB1", 1024).to_string();
    let wrong = format!("{}x", s.token);
    for tok in [None, Some(""), Some("wrong"), Some(wrong.as_str())] {
        for (method, path, b) in [
            ("GET", format!("{API}/vmdefinitions"), None),
            ("POST", format!("{API}/vmdefinitions"), Some(body.as_str())),
        ] {
            let (code, text) = s.req(method, &path, tok, b);
            assert_eq!(code, 401, "{method} {path} with {tok:?}: {text}");
            let v: Value = serde_json::from_str(&text).expect("401 body is JSON");
            assert_eq!(v["code"], 401);
            assert_eq!(v["reason"], "Unauthorized");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    assert!(s.obj("vmdefinitions", "web1").is_none(), "an unauthorised create must write nothing");
    let (code, list) = s.api("GET", "/vmdefinitions", None);
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "VMDefinitionList");
    assert_eq!(list["items"], json!([]));

    // Create: 201 with the store's metadata; again: 409 AlreadyExists.
    let (code, created) = s.api("POST", "/vmdefinitions", Some(&vm_json("web1", "WEB1", 1024)));
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let rv1 = rv(&created);
    let (code, err) = s.api("POST", "/vmdefinitions", Some(&vm_json("web1", "WEB1", 1024)));
    assert_eq!((code, err["code"].clone(), err["reason"].clone()), (409, json!(409), json!("AlreadyExists")), "{err}");

    // Get and list.
    let got = s.obj("vmdefinitions", "web1").expect("web1");
    assert_eq!(got["kind"], "VMDefinition");
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
    let (_, list) = s.api("GET", "/vmdefinitions", None);
    assert_eq!(list["items"].as_array().map(|a| a.len()), Some(1));
    let list_rv: u64 = list["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).expect("list rv");
    assert!(list_rv >= rv1);

    // Update with the current resourceVersion (the controller may write status in
    // between: then re-read and try again).
    let updated = eventually("an update with a fresh resourceVersion", || {
        let mut cur = s.obj("vmdefinitions", "web1").expect("web1");
        cur["spec"]["memoryMiB"] = json!(2048);
        match s.api("PUT", "/vmdefinitions/web1", Some(&cur)) {
            (200, v) => Some(v),
            (409, v) => {
                assert_eq!(v["reason"], "Conflict", "{v}");
                None
            }
            (code, v) => panic!("PUT: {code} {v}"),
        }
    });
    assert_eq!(spec_memory(&updated), 2048);
    assert_eq!(updated["metadata"]["generation"], 2);
    assert!(rv(&updated) > rv1);

    // Update with a stale resourceVersion: 409 Conflict, nothing changes.
    let mut stale = created.clone();
    stale["spec"]["memoryMiB"] = json!(4096);
    let (code, err) = s.api("PUT", "/vmdefinitions/web1", Some(&stale));
    assert_eq!(code, 409, "{err}");
    assert_eq!(err["code"], 409);
    assert_eq!(err["reason"], "Conflict");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(spec_memory(&s.obj("vmdefinitions", "web1").expect("web1")), 2048);

    // Other errors, all JSON.
    let (code, err) = s.api("PUT", "/vmdefinitions/other", Some(&updated));
    assert_eq!((code, err["reason"].as_str()), (400, Some("BadRequest")), "{err}");
    let mut bad = vm_json("web3", "WEB3", 512);
    bad["spec"]["colour"] = json!("blue");
    let (code, err) = s.api("POST", "/vmdefinitions", Some(&bad));
    assert_eq!((code, err["reason"].as_str()), (422, Some("Invalid")), "{err}");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("colour")), "{err}");
    assert!(s.obj("vmdefinitions", "web3").is_none());
    let (code, err) = s.api("GET", "/vmdefinitions/nosuch", None);
    assert_eq!((code, err["code"].clone(), err["reason"].clone()), (404, json!(404), json!("NotFound")), "{err}");
    let (code, err) = s.api("GET", "/gadgets", None);
    assert_eq!((code, err["reason"].as_str()), (404, Some("NotFound")), "{err}");
    let (code, err) = s.api("GET", "/vmdefinitions/a/b/c", None);
    assert_eq!((code, err["code"].clone()), (404, json!(404)), "{err}");
    // PATCH is served, but plain JSON is not a patch type: 415, naming the ones that are.
    let (code, err) = s.api("PATCH", "/vmdefinitions/web1", Some(&updated));
    assert_eq!((code, err["reason"].as_str()), (415, Some("UnsupportedMediaType")), "{err}");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("merge-patch+json")), "{err}");
    let (code, err) = s.api("GET", "/vmdefinitions?watch=1&resourceVersion=abc", None);
    assert_eq!((code, err["reason"].as_str()), (400, Some("BadRequest")), "{err}");
    let (code, text) = s.req("POST", &format!("{API}/sim"), Some(&s.token), Some("not json"));
    let err: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("sim error not JSON ({e}): {text}"));
    assert_eq!((code, err["reason"].as_str()), (400, Some("BadRequest")), "{err}");
    let (code, err) = s.api("POST", "/sim", Some(&json!({"args": ["power", "off", "NOSUCH"]})));
    assert_eq!((code, err["reason"].as_str()), (422, Some("Invalid")), "{err}");

    // Apply: dry run writes nothing; then created, then unchanged.
    let batch = json!({"items": [vm_json("web2", "WEB2", 512)]});
    let (code, v) = s.api("POST", "/apply?dryRun=true", Some(&batch));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["items"][0]["outcome"], "created");
    assert!(s.obj("vmdefinitions", "web2").is_none(), "dry run wrote");
    let (_, v) = s.api("POST", "/apply", Some(&batch));
    assert_eq!(v["items"][0]["outcome"], "created", "{v}");
    let (_, v) = s.api("POST", "/apply", Some(&batch));
    assert_eq!(v["items"][0]["outcome"], "unchanged", "{v}");

    // Delete: the object, then 404; a delete without the token is refused.
    let (code, text) = s.req("DELETE", &format!("{API}/vmdefinitions/web2"), Some("wrong"), None);
    assert_eq!(code, 401, "{text}");
    assert!(s.obj("vmdefinitions", "web2").is_some());
    let (code, v) = s.api("DELETE", "/vmdefinitions/web1", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["name"], "web1");
    assert!(s.obj("vmdefinitions", "web1").is_none());
    let (code, err) = s.api("DELETE", "/vmdefinitions/web1", None);
    assert_eq!((code, err["reason"].as_str()), (404, Some("NotFound")), "{err}");
}

#[cfg(unix)]
#[test]
fn token_file_is_kept_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("token").permissions().mode() & 0o777;
    // An empty, world-readable token file left behind: the new token is still private.
    let d = Dirs::new();
    std::fs::create_dir_all(d.data()).expect("data");
    let tok = d.data().join("token");
    std::fs::write(&tok, "").expect("write");
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut s = Server::start(&d.data(), &[]);
    assert!(!s.token.is_empty());
    assert_eq!(mode(&tok), 0o600);
    assert_eq!(s.api("GET", "/seservers", None).0, 200);
    let first = s.token.clone();
    assert!(s.stop().success());
    drop(s);
    // A token made readable by others is reused (clients keep working) but made private.
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let s = Server::start(&d.data(), &[]);
    assert_eq!(s.token, first);
    assert_eq!(mode(&tok), 0o600);
    assert_eq!(s.api("GET", "/seservers", None).0, 200);
}

// ---------------------------------------------------------------------------------
// Watch

/// Events' resourceVersions are all above `from` and strictly increasing.
fn assert_in_order(evs: &[Value], from: u64) {
    let mut last = from;
    for e in evs {
        let r = rv(&e["object"]);
        assert!(r > last, "event at {r} after {last} (watch from {from}): {evs:#?}");
        last = r;
    }
}

fn ev_is(e: &Value, t: &str, name: &str) -> bool {
    e["type"] == t && e["object"]["metadata"]["name"] == name
}

#[test]
fn watch_streams_and_resumes_from_a_resource_version() {
    let d = Dirs::new();
    let s = Server::start(&d.data(), &[]);
    let create = |n: &str, vm: &str| {
        let (code, v) = s.api("POST", "/vmdefinitions", Some(&vm_json(n, vm, 512)));
        assert_eq!(code, 201, "{v}");
        v
    };
    let a = create("wa", "WA");
    let from = rv(&a);
    create("wb", "WB");
    create("wc", "WC");

    // From wa's resourceVersion: wb and wc are added (wa is not), in order.
    let rx = s.watch("vmdefinitions", from).expect("watch");
    let evs = recv_until(&rx, "ADDED wb and wc", |evs| {
        evs.iter().any(|e| ev_is(e, "ADDED", "wb")) && evs.iter().any(|e| ev_is(e, "ADDED", "wc"))
    });
    assert_in_order(&evs, from);
    assert!(!evs.iter().any(|e| ev_is(e, "ADDED", "wa")), "wa was added before {from}: {evs:#?}");
    for n in ["wb", "wc"] {
        let first = evs.iter().find(|e| e["object"]["metadata"]["name"] == n).expect("seen");
        assert_eq!(first["type"], "ADDED", "first event of {n}: {first}");
    }
    let seen = rv(&evs.last().expect("events")["object"]);
    drop(rx);

    // Changes while nobody watches, then resume from the last event seen.
    let (code, _) = s.api("DELETE", "/vmdefinitions/wb", None);
    assert_eq!(code, 200);
    create("wd", "WD");
    let rx = s.watch("vmdefinitions", seen).expect("resume");
    let evs = recv_until(&rx, "DELETED wb and ADDED wd", |evs| {
        evs.iter().any(|e| ev_is(e, "DELETED", "wb")) && evs.iter().any(|e| ev_is(e, "ADDED", "wd"))
    });
    assert_in_order(&evs, seen);
    let del = evs.iter().position(|e| ev_is(e, "DELETED", "wb")).expect("deleted");
    let add = evs.iter().position(|e| e["object"]["metadata"]["name"] == "wd").expect("wd");
    assert!(del < add, "wb was deleted before wd was created: {evs:#?}");
    assert!(!evs.iter().any(|e| ev_is(e, "ADDED", "wc")), "wc was added before {seen}: {evs:#?}");

    // The stream stays open: a new change arrives live; other kinds are not streamed.
    let before = rv(&evs.last().expect("events")["object"]);
    let (code, _) = s.api("POST", "/livemigrations", Some(&serde_json::to_value(common::one(LM)).expect("lm")));
    assert_eq!(code, 201);
    create("we", "WE");
    let more = recv_until(&rx, "ADDED we", |evs| evs.iter().any(|e| ev_is(e, "ADDED", "we")));
    assert_in_order(&more, before);
    assert!(more.iter().all(|e| e["object"]["kind"] == "VMDefinition"), "{more:#?}");
}

#[test]
fn watch_from_a_version_older_than_the_history_is_410() {
    let d = Dirs::new();
    // A store with more writes than the watch history keeps (10,000): status writes of
    // one object, through the library, before the server starts.
    {
        let store = SledStore::open(&d.data()).expect("open store");
        let mut o = store.create(common::vm("filler", 512)).expect("create");
        for i in 0..10_050u32 {
            o.set_status_json(json!({"liveMigrationCount": i + 1})).expect("status");
            o = store.update_status(o).expect("update_status");
        }
        assert!(store.resource_version() > 10_050);
    }
    let s = Server::start(&d.data(), &[]);
    // (0 is not a version but "the current state first", as in Kubernetes.)
    for old in [1, 40] {
        let (code, err) = s.watch("vmdefinitions", old).map(|_| ()).expect_err("an expired watch is refused");
        assert_eq!(code, 410, "from {old}: {err}");
        assert_eq!(err["code"], 410, "{err}");
        assert_eq!(err["reason"], "Expired", "{err}");
        assert!(err["message"].as_str().is_some_and(|m| m.contains("list again")), "{err}");
    }
    let (_, list) = s.api("GET", "/vmdefinitions", None);
    let now: u64 = list["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).expect("rv");
    // A recent version is still served: the newest change of `filler` after it.
    let rx = s.watch("vmdefinitions", now - 5).expect("a recent version is served");
    let evs = recv_until(&rx, "filler", |evs| !evs.is_empty());
    assert_eq!(evs[0]["object"]["metadata"]["name"], "filler");
    assert_in_order(&evs, now - 5);
}

// ---------------------------------------------------------------------------------
// The CLI with --server

#[test]
fn cli_verbs_with_server() {
    let d = Dirs::new();
    let s = Server::start(&d.data(), &["--time-scale", "100"]);
    let site = d.file("site.yaml");
    std::fs::write(&site, SITE).expect("write site");
    let lm = d.file("lm.yaml");
    std::fs::write(&lm, LM).expect("write lm");

    // apply returns at once (the server reconciles); wait blocks until it holds.
    let out = s.ok(&["apply", "-f", site.to_str().expect("utf-8")]);
    for k in ["seserver/se701 created", "sucluster/su390 created", "vmdefinition/vm12prod created"] {
        assert!(out.contains(k), "{out}");
    }
    let out = s.ok(&["wait", "vm/vm12prod", "--for=state=RUNNING", "--timeout", "20s"]);
    assert!(out.contains("condition met"), "{out}");
    s.ok(&["wait", "suc/su390", "--for=state=NORMAL", "--timeout", "20s"]);
    let v: Value = serde_json::from_str(&s.ok(&["get", "vm", "vm12prod", "-o", "json"])).expect("json");
    assert_eq!(v["status"]["serverUnit"], "ABGSE501");
    let v: Value = serde_json::from_str(&s.ok(&["get", "se", "-o", "json"])).expect("json");
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().map(|a| a.len()), Some(2));
    assert!(s.ok(&["get", "vm"]).contains("vm12prod"));

    // get -w streams: the table, then a row per change. Run it, read, kill it.
    let mut w = Command::new(env!("CARGO_BIN_EXE_sectl"));
    w.arg("--data-dir")
        .arg(&s.data)
        .args(["--server", &s.url, "get", "lm", "-w"])
        .env_remove("SECTL_TOKEN")
        .env_remove("SECTL_SERVER")
        .env_remove("SECTL_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = w.spawn().expect("spawn get -w");
    let lines = lines_of(child.stdout.take().expect("stdout"));
    let _watcher = Guard(child);
    let head = recv_until(&lines, "the table header", |l| !l.is_empty());
    assert!(head[0].starts_with("NAME"), "{head:?}");

    let out = s.ok(&["apply", "-f", lm.to_str().expect("utf-8")]);
    assert!(out.contains("livemigration/lm-vm12 created"), "{out}");
    let out = s.ok(&["wait", "lm/lm-vm12", "--for=phase=Completed", "--timeout", "20s"]);
    assert!(out.contains("lm/lm-vm12 condition met") || out.contains("livemigration/lm-vm12 condition met"), "{out}");
    let streamed = recv_until(&lines, "a Completed row for lm-vm12", |l| {
        l.iter().any(|x| x.contains("lm-vm12") && x.contains("Completed"))
    });
    assert!(streamed.iter().any(|l| l.starts_with("lm-vm12")), "{streamed:#?}");
    drop(_watcher);

    let v: Value = serde_json::from_str(&s.ok(&["get", "vm", "vm12prod", "-o", "json"])).expect("json");
    assert_eq!(v["status"]["serverUnit"], "ABGSE701", "{v}");
    assert_eq!(v["status"]["liveMigrationCount"], 1, "{v}");

    // events: the log, filtered by object.
    let evs: Value = serde_json::from_str(&s.ok(&["events", "vm/vm12prod", "-o", "json"])).expect("json");
    let evs = evs.as_array().expect("array");
    assert!(!evs.is_empty());
    assert!(evs.iter().all(|e| e["object"] == "VMDefinition/vm12prod"), "{evs:#?}");
    let all: Value = serde_json::from_str(&s.ok(&["events", "-o", "json", "--limit", "1000"])).expect("json");
    assert!(all.as_array().expect("array").iter().any(|e| e["object"] == "LiveMigration/lm-vm12"), "{all:#}");
    assert!(s.ok(&["events", "ack"]).contains("acknowledged"));
    assert!(s.events().iter().all(|e| e["acknowledged"] == true));
    assert!(s.ok(&["describe", "vm", "vm12prod"]).contains("vm12prod"));

    // sim: carried out by the server's controller.
    let clock = |s: &Server| s.api("GET", "/clock", None).1["simulatedMs"].as_u64().expect("clock");
    let t0 = clock(&s);
    let out = s.ok(&["sim", "advance", "1h"]);
    assert!(out.contains("simulated time"), "{out}");
    eventually("the server's clock an hour ahead", || (clock(&s) >= t0 + 3_600_000).then_some(()));

    // --time-scale 100: about 100 simulated seconds per real second.
    assert_eq!(s.api("GET", "/clock", None).1["timeScale"], 100.0);
    let (t1, real) = (clock(&s), Instant::now());
    std::thread::sleep(Duration::from_millis(500));
    let (sim, real) = (clock(&s) - t1, real.elapsed().as_millis() as u64);
    assert!(sim >= real * 50 && sim <= real * 150 + 1_000, "{sim} simulated ms in {real} real ms at scale 100");
    assert_eq!(s.run(&["sim", "bogus"]).0, 2, "usage error");
    let (code, _, err) = s.run(&["sim", "power", "off", "NOSUCHUNIT"]);
    assert_eq!(code, 1, "{err}");

    // wait gives up after its timeout (real time with a server).
    let t = Instant::now();
    let (code, _, err) = s.run(&["wait", "vm/vm12prod", "--for=condition=NoSuchCondition", "--timeout", "1s"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("timed out"), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(900), "wait returned before its timeout");

    // A stale resourceVersion in a manifest: refused, nothing written.
    let cur: Value = serde_json::from_str(&s.ok(&["get", "vm", "vm12prod", "-o", "json"])).expect("json");
    let mut spec = cur["spec"].clone();
    spec["memoryMiB"] = json!(1024);
    let stale = d.file("stale.yaml");
    let doc = json!({"apiVersion": "sectl.io/v1alpha1", "kind": "VMDefinition",
        "metadata": {"name": "vm12prod", "resourceVersion": "1"}, "spec": spec});
    std::fs::write(&stale, doc.to_string()).expect("write");
    let (code, _, err) = s.run(&["apply", "-f", stale.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("409") || err.contains("onflict"), "{err}");
    assert_eq!(spec_memory(&s.obj("vmdefinitions", "vm12prod").expect("vm")), 2048);

    // diff and a dry run against the server's objects.
    let lm_path = lm.to_str().expect("utf-8");
    assert_eq!(s.run(&["diff", "-f", lm_path]).0, 0, "no change");
    let other = d.file("other.yaml");
    std::fs::write(&other, LM.replace("ABGSE701", "ABGSE501")).expect("write");
    let other = other.to_str().expect("utf-8");
    let (code, out, _) = s.run(&["diff", "-f", other]);
    assert_eq!(code, 1, "a change: {out}");
    assert!(s.ok(&["apply", "-f", other, "--dry-run"]).contains("(dry run)"));
    let v = s.obj("livemigrations", "lm-vm12").expect("lm");
    assert_eq!(v["spec"]["targetServerUnit"], "ABGSE701", "a dry run wrote");

    // delete, by name and from files.
    assert!(s.ok(&["delete", "-f", lm_path]).contains("livemigration/lm-vm12 deleted"));
    let (code, _, err) = s.run(&["get", "lm", "lm-vm12"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = s.run(&["delete", "lm", "lm-vm12"]);
    assert_eq!(code, 1, "{err}");
    s.ok(&["delete", "lm", "lm-vm12", "--ignore-not-found"]);

    // The token: from SECTL_TOKEN with another data folder; without it, refused.
    let elsewhere = d.file("elsewhere");
    let cli = |token: Option<&str>| {
        let mut c = common::sectl_in(&elsewhere);
        c.env_remove("SECTL_TOKEN").args(["--server", &s.url, "get", "se"]).timeout(LIMIT);
        c.arg("--certificate-authority").arg(s.data.join("ca.crt"));
        if let Some(t) = token {
            c.env("SECTL_TOKEN", t);
        }
        c.output().expect("run")
    };
    let out = cli(Some(&s.token));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("se701"));
    let out = cli(None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(Some("not-the-token"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------------
// GitOps

const BAD: &str = "apiVersion: sectl.io/v1alpha1
kind: VMDefinition
metadata: {name: vm-bad-ok}
spec: {vmName: VMBADOK, serverUnit: ABGSE501, state: DEFINED_ONLY, memoryMiB: 512}
---
apiVersion: sectl.io/v1alpha1
kind: VMDefinition
metadata: {name: vm-bad}
spec:
  vmName: VMBAD
  serverUnit: ABGSE501
  memoryMiB: 512
  colour: blue
";

#[test]
fn gitops_applies_edits_reports_bad_files_and_keeps_objects_without_prune() {
    let d = Dirs::new();
    d.put("site.yaml", SITE);
    d.put("a.yaml", &vm_yaml("vm-a", "VMA", 1024, "DEFINED_ONLY"));
    let watch = d.watch();
    let s = Server::start(&d.data(), &["--watch", watch.to_str().expect("utf-8"), "--time-scale", "100"]);

    // Everything in the folder at start is applied, each object naming its file.
    let a = eventually("vm-a from the folder", || s.obj("vmdefinitions", "vm-a"));
    assert_eq!(source_of(&a).as_deref(), Some("a.yaml"));
    assert!(s.obj("seservers", "se701").is_some());

    // A new file.
    d.put("b.yaml", &vm_yaml("vm-b", "VMB", 1024, "DEFINED_ONLY"));
    let b = eventually("vm-b from a new file", || s.obj("vmdefinitions", "vm-b"));
    assert_eq!(source_of(&b).as_deref(), Some("b.yaml"));

    // An edit.
    d.put("a.yaml", &vm_yaml("vm-a", "VMA", 2048, "DEFINED_ONLY"));
    eventually("vm-a edited", || s.obj("vmdefinitions", "vm-a").filter(|o| spec_memory(o) == 2048));

    // A bad file applies nothing and is reported; a good file dropped with it applies.
    d.put("bad.yaml", BAD);
    d.put("c.yaml", &vm_yaml("vm-c", "VMC", 512, "DEFINED_ONLY"));
    eventually("vm-c beside a bad file", || s.obj("vmdefinitions", "vm-c"));
    let bad = eventually("bad.yaml reported Invalid", || {
        s.sources().into_iter().find(|x| x["file"] == "bad.yaml" && x["state"] == "Invalid")
    });
    let msg = bad["message"].as_str().expect("message");
    assert!(msg.contains("bad.yaml:13:"), "file:line in {msg}");
    assert!(msg.contains("colour"), "{msg}");
    assert!(s.obj("vmdefinitions", "vm-bad-ok").is_none(), "nothing of a bad file is applied");
    assert!(s.obj("vmdefinitions", "vm-bad").is_none());
    let ev = eventually("a SourceInvalid event", || {
        s.events_with("SourceInvalid")
            .into_iter()
            .find(|e| e["object"].as_str().is_some_and(|o| o.contains("bad.yaml")))
    });
    assert_eq!(ev["type"], "Warning", "{ev}");
    eventually("the log names bad.yaml", || s.log().contains("bad.yaml").then_some(()));
    // `sectl get sources` shows it, with file:line.
    // (`/sources` is published at the end of the sync that applied vm-c: wait for it.)
    let out = eventually("c.yaml Applied in `get sources`", || {
        let out = s.ok(&["get", "sources"]);
        out.lines().any(|l| l.contains("c.yaml") && l.contains("Applied")).then_some(out)
    });
    let row = out.lines().find(|l| l.contains("bad.yaml") && l.contains("Invalid")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("bad.yaml:"), "{row}");
    // Fixing it applies it.
    d.put("bad.yaml", &BAD.replace("  colour: blue\n", ""));
    eventually("vm-bad once fixed", || s.obj("vmdefinitions", "vm-bad"));
    assert!(s.obj("vmdefinitions", "vm-bad-ok").is_some());

    // Editor saves: a temporary file (a dot-name in the folder, or in another folder),
    // then renamed over the manifest.
    let tmp = d.watch().join(".a.yaml.swp");
    std::fs::write(&tmp, vm_yaml("vm-a", "VMA", 3072, "DEFINED_ONLY")).expect("write");
    std::fs::rename(&tmp, d.watch().join("a.yaml")).expect("rename");
    eventually("vm-a saved by rename", || s.obj("vmdefinitions", "vm-a").filter(|o| spec_memory(o) == 3072));
    let outside = d.file("b.yaml.new");
    std::fs::write(&outside, vm_yaml("vm-b", "VMB", 4096, "DEFINED_ONLY")).expect("write");
    std::fs::rename(&outside, d.watch().join("b.yaml")).expect("rename");
    eventually("vm-b saved by rename", || s.obj("vmdefinitions", "vm-b").filter(|o| spec_memory(o) == 4096));
    assert!(
        !s.sources().iter().any(|x| x["file"].as_str().is_some_and(|f| f.starts_with('.'))),
        "dot-files are not manifests"
    );

    // Removing a file without --prune leaves its objects.
    std::fs::remove_file(d.watch().join("b.yaml")).expect("remove");
    eventually("b.yaml gone from the sources", || (!s.sources().iter().any(|x| x["file"] == "b.yaml")).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.obj("vmdefinitions", "vm-b").is_some(), "without --prune nothing is deleted");
    assert!(s.events_with("Pruned").is_empty());
}

#[test]
fn gitops_prune_drift_and_migrated_vms() {
    let d = Dirs::new();
    d.put("site.yaml", SITE);
    d.put(
        "extra.yaml",
        &format!(
            "{}---\n{}",
            vm_yaml("vm-x", "VMX", 1024, "DEFINED_ONLY"),
            vm_yaml("vm-y", "VMY", 1024, "DEFINED_ONLY")
        ),
    );
    let watch = d.watch();
    let s = Server::start(
        &d.data(),
        &["--watch", watch.to_str().expect("utf-8"), "--prune", "--resync", "1s", "--time-scale", "100"],
    );
    eventually("vm-x from the folder", || s.obj("vmdefinitions", "vm-x"));
    s.ok(&["wait", "vm/vm12prod", "--for=state=RUNNING", "--timeout", "20s"]);

    // An object applied by hand.
    let hand = d.file("hand.yaml");
    std::fs::write(&hand, vm_yaml("vm-hand", "VMHAND", 512, "DEFINED_ONLY")).expect("write");
    assert!(s.ok(&["apply", "-f", hand.to_str().expect("utf-8")]).contains("vmdefinition/vm-hand created"));

    // A hand change of an object from the folder is set back and reported.
    let drift = d.file("drift.yaml");
    std::fs::write(&drift, vm_yaml("vm-x", "VMX", 4096, "DEFINED_ONLY")).expect("write");
    assert!(s.ok(&["apply", "-f", drift.to_str().expect("utf-8")]).contains("vmdefinition/vm-x configured"));
    let x =
        eventually("vm-x set back to its file", || s.obj("vmdefinitions", "vm-x").filter(|o| spec_memory(o) == 1024));
    assert_eq!(source_of(&x).as_deref(), Some("extra.yaml"));
    let ev = eventually("a DriftCorrected event", || {
        s.events_with("DriftCorrected").into_iter().find(|e| e["object"] == "VMDefinition/vm-x")
    });
    assert!(ev["message"].as_str().is_some_and(|m| m.contains("vm-x")), "{ev}");

    // An object of the folder deleted by hand comes back, and that is reported too.
    assert!(s.ok(&["delete", "vm", "vm-y"]).contains("deleted"));
    let y = eventually("vm-y created again", || s.obj("vmdefinitions", "vm-y"));
    assert_eq!(source_of(&y).as_deref(), Some("extra.yaml"));
    eventually("a DriftCorrected event for vm-y", || {
        s.events_with("DriftCorrected").into_iter().find(|e| e["object"] == "VMDefinition/vm-y")
    });

    // A VM moved by a live migration is not moved back by the next sync.
    let lm = d.file("lm.yaml");
    std::fs::write(&lm, LM).expect("write");
    s.ok(&["apply", "-f", lm.to_str().expect("utf-8")]);
    s.ok(&["wait", "lm/lm-vm12", "--for=phase=Completed", "--timeout", "20s"]);
    let v = s.obj("vmdefinitions", "vm12prod").expect("vm");
    assert_eq!(v["status"]["serverUnit"], "ABGSE701");
    // Two syncs after it: one on a change, one periodic.
    d.put("z.yaml", &vm_yaml("vm-z", "VMZ", 512, "DEFINED_ONLY"));
    eventually("vm-z (a sync after the migration)", || s.obj("vmdefinitions", "vm-z"));
    let synced = s.sources().iter().find(|x| x["file"] == "site.yaml").expect("site")["lastSync"].clone();
    eventually("a periodic resync", || {
        s.sources().iter().find(|x| x["file"] == "site.yaml").filter(|x| x["lastSync"] != synced).map(|_| ())
    });
    let v = s.obj("vmdefinitions", "vm12prod").expect("vm");
    assert_eq!(v["status"]["serverUnit"], "ABGSE701", "moved back: {v}");
    assert_eq!(v["spec"]["serverUnit"], "ABGSE501", "the spec stays as in the file");
    assert_eq!(v["metadata"]["generation"], 1, "the spec was never rewritten: {v}");
    let drifted: Vec<Value> = s.events_with("DriftCorrected");
    assert!(
        drifted.iter().all(|e| e["object"] == "VMDefinition/vm-x" || e["object"] == "VMDefinition/vm-y"),
        "status or a migration reported as drift: {drifted:#?}"
    );

    // Removing a file with --prune deletes its objects, and only those.
    std::fs::remove_file(d.watch().join("extra.yaml")).expect("remove");
    eventually("vm-x and vm-y pruned", || {
        let names = s.names("vmdefinitions");
        (!names.iter().any(|n| n == "vm-x" || n == "vm-y")).then_some(())
    });
    assert!(s.obj("vmdefinitions", "vm-hand").is_some(), "a hand-applied object is never pruned");
    assert!(s.obj("livemigrations", "lm-vm12").is_some(), "a hand-applied object is never pruned");
    assert!(s.obj("vmdefinitions", "vm12prod").is_some());
    assert!(s.obj("vmdefinitions", "vm-z").is_some());
    assert_eq!(s.list("seservers").len(), 2);
    let pruned: Vec<String> =
        s.events_with("Pruned").iter().map(|e| e["object"].as_str().unwrap_or("").to_string()).collect();
    assert!(pruned.contains(&"VMDefinition/vm-x".to_string()), "{pruned:?}");
    assert!(pruned.iter().all(|o| o == "VMDefinition/vm-x" || o == "VMDefinition/vm-y"), "{pruned:?}");

    // The whole folder vanishing (unmounted, moved away) is not "every file removed":
    // nothing is pruned, and it is reported.
    let vms = s.names("vmdefinitions");
    std::fs::remove_dir_all(d.watch()).expect("remove the folder");
    eventually("the unreadable folder reported in the log", || {
        s.log().contains("cannot read the watched folder").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.names("vmdefinitions"), vms, "objects pruned because the folder is gone");
    assert_eq!(s.list("seservers").len(), 2);
}

#[test]
fn gitops_file_with_a_resource_version_does_not_block_the_others() {
    // A manifest exported with `get -o yaml` keeps metadata.resourceVersion; in the
    // folder it must neither fail the sync of every other file nor stay unapplied.
    let d = Dirs::new();
    let watch = d.watch();
    let s = Server::start(&d.data(), &["--watch", watch.to_str().expect("utf-8"), "--resync", "1s"]);
    let exported =
        vm_yaml("vm-e", "VME", 512, "DEFINED_ONLY").replace("{name: vm-e}", "{name: vm-e, resourceVersion: '1'}");
    // Some write first, so that vm-e's resourceVersion is not the one in the file.
    let (code, _) = s.api("POST", "/vmdefinitions", Some(&vm_json("vm-first", "VMFIRST", 512)));
    assert_eq!(code, 201);
    d.put("exported.yaml", &exported);
    let e = eventually("vm-e", || s.obj("vmdefinitions", "vm-e"));
    assert!(rv(&e) > 1);
    d.put("good.yaml", &vm_yaml("vm-g", "VMG", 512, "DEFINED_ONLY"));
    eventually("vm-g beside an exported manifest", || s.obj("vmdefinitions", "vm-g"));
    d.put("exported.yaml", &exported.replace("memoryMiB: 512", "memoryMiB: 1024"));
    eventually("the exported manifest's edit applied", || {
        s.obj("vmdefinitions", "vm-e").filter(|o| spec_memory(o) == 1024)
    });
    // `/sources` is published at the end of the sync that applied the edit: until then
    // it shows the sync before (the file InProgress), so wait for it.
    let src = eventually("every file Applied", || {
        let src = s.sources();
        src.iter().all(|x| x["state"] == "Applied").then_some(src)
    });
    assert_eq!(src.len(), 2, "{src:#?}");
}

#[test]
fn gitops_applies_200_files_dropped_at_once() {
    let d = Dirs::new();
    let watch = d.watch();
    let s = Server::start(&d.data(), &["--watch", watch.to_str().expect("utf-8")]);
    for i in 0..200 {
        d.put(&format!("vm-{i:03}.yaml"), &vm_yaml(&format!("vm-{i:03}"), &format!("V{i:03}"), 256, "DEFINED_ONLY"));
    }
    eventually("all 200 objects", || (s.list("vmdefinitions").len() == 200).then_some(()));
    let sources = eventually("200 applied sources", || {
        let src = s.sources();
        (src.len() == 200 && src.iter().all(|x| x["state"] == "Applied")).then_some(src)
    });
    assert_eq!(sources[7]["objects"], json!(["VMDefinition/vm-007"]));
    for o in s.list("vmdefinitions") {
        let name = o["metadata"]["name"].as_str().expect("name").to_string();
        assert_eq!(source_of(&o), Some(format!("{name}.yaml")));
    }
}

// ---------------------------------------------------------------------------------
// SIGTERM and restart in the middle of a live migration

/// The books: nothing the audit finds, and vm12prod on exactly one SU.
fn check_world(data: &Path, expect_su: Option<&str>) -> World {
    let store = SledStore::open(data).expect("open store after stop");
    let w = World::load(&store).expect("load world");
    let bad = w.audit();
    assert!(bad.is_empty(), "audit: {bad:#?}");
    let vms: Vec<_> = w.vms.iter().filter(|(_, v)| v.vm_name == "VM12PROD").collect();
    assert_eq!(vms.len(), 1, "VM12PROD once in the world: {vms:#?}");
    let (name, vm) = vms[0];
    assert_eq!(name, "vm12prod");
    if let Some(su) = expect_su {
        assert_eq!(vm.su, su, "VM12PROD is on the wrong SU");
    }
    assert!(w.su(&vm.su).is_some(), "on an existing SU");
    w
}

#[cfg(unix)]
#[test]
fn sigterm_mid_migration_persists_it_and_the_next_start_resumes_it() {
    let d = Dirs::new();
    // 16 GiB over a 1 Gbit/s ISL-E: round 0 alone takes over two simulated minutes.
    let site = SITE.replace("bandwidthGbps: 10", "bandwidthGbps: 1").replace("memoryMiB: 2048", "memoryMiB: 16384");
    assert_ne!(site, SITE);
    let mut s = Server::start(&d.data(), &["--time-scale", "1"]);
    let token = s.token.clone();
    let site_file = d.file("site.yaml");
    std::fs::write(&site_file, &site).expect("write");
    s.ok(&["apply", "-f", site_file.to_str().expect("utf-8")]);
    s.ok(&["wait", "vm/vm12prod", "--for=state=RUNNING", "--timeout", "20s"]);
    let lm = d.file("lm.yaml");
    std::fs::write(&lm, LM).expect("write");
    s.ok(&["apply", "-f", lm.to_str().expect("utf-8")]);
    s.ok(&["wait", "lm/lm-vm12", "--for=phase=Copying", "--timeout", "20s"]);

    // A watch is open while the server stops: it must not hold the shutdown up.
    let rx = s.watch("livemigrations", rv(&s.obj("livemigrations", "lm-vm12").expect("lm"))).expect("watch");
    let st = s.stop();
    assert!(st.success(), "exit status {st:?}; log:\n{}", s.log());
    eventually("the log says the world was saved", || s.log().contains("world saved").then_some(()));
    drop(rx);

    // The migration in flight was persisted: its object and the world agree.
    {
        let w = check_world(&d.data(), Some("ABGSE501"));
        let m = w.migrations.get("lm-vm12").expect("the migration in the saved world");
        assert_eq!(format!("{:?}", m.phase), "Copying");
        let store = SledStore::open(&d.data()).expect("open");
        let o = store.get(sectl::api::Kind::LiveMigration, "lm-vm12").expect("get").expect("lm");
        assert_eq!(o.status_json()["phase"], "Copying");
    }

    // The next start (faster clock) resumes it to the end.
    let mut s = Server::start(&d.data(), &["--time-scale", "1000"]);
    assert_eq!(s.token, token, "the token is generated only at first start");
    let phase = eventually("the migration to end", || {
        let o = s.obj("livemigrations", "lm-vm12").expect("lm");
        let p = o["status"]["phase"].as_str().unwrap_or("").to_string();
        (p == "Completed" || p == "Aborted").then_some(p)
    });
    let expect = if phase == "Completed" { "ABGSE701" } else { "ABGSE501" };
    let vm = s.obj("vmdefinitions", "vm12prod").expect("vm");
    assert_eq!(vm["status"]["serverUnit"], expect, "{vm}");
    let o = s.obj("livemigrations", "lm-vm12").expect("lm");
    assert_eq!(phase, "Completed", "the resumed migration should complete: {o}");
    // Resumed, not started again: one start message, one round 0 of all 16 GiB.
    let msgs: Vec<&str> =
        o["status"]["messages"].as_array().expect("messages").iter().filter_map(|m| m.as_str()).collect();
    assert_eq!(msgs.iter().filter(|m| m.contains("VMS2450")).count(), 1, "{msgs:#?}");
    let rounds = o["status"]["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.iter().filter(|r| r["round"] == 0).count(), 1, "{rounds:#?}");
    assert_eq!(rounds[0]["sentMiB"].as_f64(), Some(16384.0));
    assert_eq!(vm["status"]["liveMigrationCount"], 1, "{vm}");
    let st = s.stop();
    assert!(st.success(), "exit status {st:?}");
    let w = check_world(&d.data(), Some(expect));
    assert!(w.migrations.get("lm-vm12").is_none_or(|m| format!("{:?}", m.phase) == phase), "{:?}", w.migrations);
}

#[cfg(unix)]
#[test]
fn sigterm_at_any_point_of_migrations_never_loses_or_doubles_the_vm() {
    let d = Dirs::new();
    let site = SITE.replace("bandwidthGbps: 10", "bandwidthGbps: 1").replace("memoryMiB: 2048", "memoryMiB: 16384");
    // About 0.2 s of real time per migration: stops land in different phases.
    let args = ["--time-scale", "1000"];
    let mut s = Server::start(&d.data(), &args);
    let items: Vec<Value> =
        common::all(&site).iter().map(|r| serde_json::to_value(r).expect("json")).collect::<Vec<_>>();
    let (code, v) = s.api("POST", "/apply", Some(&json!({ "items": items })));
    assert_eq!(code, 200, "{v}");
    eventually("vm12prod RUNNING", || {
        s.obj("vmdefinitions", "vm12prod").filter(|o| o["status"]["state"] == "RUNNING").map(|_| ())
    });
    let mut su = "ABGSE501".to_string();
    let mut stopped_in = Vec::new();
    for (i, delay_ms) in [0u64, 60, 150, 180, 210, 240, 400].into_iter().enumerate() {
        let target = if su == "ABGSE501" { "ABGSE701" } else { "ABGSE501" };
        let name = format!("lm-{i}");
        let lm = json!({"apiVersion": "sectl.io/v1alpha1", "kind": "LiveMigration", "metadata": {"name": name},
            "spec": {"vm": "vm12prod", "targetServerUnit": target}});
        let (code, v) = s.api("POST", "/livemigrations", Some(&lm));
        assert_eq!(code, 201, "{v}");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let st = s.stop();
        assert!(st.success(), "exit status {st:?}");
        drop(s);
        let w = check_world(&d.data(), None);
        let store = SledStore::open(&d.data()).expect("open");
        let o = store.get(sectl::api::Kind::LiveMigration, &name).expect("get").expect("lm");
        stopped_in.push(format!(
            "{name}: {} / world {:?}",
            o.status_json()["phase"],
            w.migrations.get(&name).map(|m| m.phase)
        ));
        drop(store);

        s = Server::start(&d.data(), &args);
        let (phase, o) = eventually(&format!("{name} to end"), || {
            let o = s.obj("livemigrations", &name).expect("lm");
            let p = o["status"]["phase"].as_str().unwrap_or("").to_string();
            matches!(p.as_str(), "Completed" | "Aborted" | "Rejected").then_some((p, o))
        });
        let now = if phase == "Completed" { target.to_string() } else { su.clone() };
        eventually(&format!("vm12prod RUNNING on {now} after {name} ({phase}: {o})"), || {
            s.obj("vmdefinitions", "vm12prod")
                .filter(|v| v["status"]["serverUnit"] == now.as_str() && v["status"]["state"] == "RUNNING")
                .filter(|v| v["status"]["substates"].as_array().is_none_or(|a| a.is_empty()))
                .map(|_| ())
        });
        su = now;
    }
    let st = s.stop();
    assert!(st.success());
    check_world(&d.data(), Some(&su));
    eprintln!("stopped in: {stopped_in:#?}");
}

// ---------------------------------------------------------------------------------
// GitOps safety (issue 8): absence is not deletion, prune grace and hold, only
// regular files inside the folder are read, a busy folder is still synced.

/// Every object of every kind as KIND/name -> uid.
fn uids(s: &Server) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for plural in ["seservers", "managementclusters", "suclusters", "vmdefinitions", "livemigrations"] {
        for o in s.list(plural) {
            let name = o["metadata"]["name"].as_str().expect("name").to_string();
            let uid = o["metadata"]["uid"].as_str().expect("uid").to_string();
            out.insert(format!("{plural}/{name}"), uid);
        }
    }
    out
}

/// Asserts that every object of `before` is there with the same uid, and no other.
/// A uid that changed never changes back, so looking again a few times only rules
/// out a torn list (the store's list is not a snapshot while status writes land).
fn assert_uids_unchanged(s: &Server, before: &std::collections::BTreeMap<String, String>, what: &str) {
    let mut last = Default::default();
    for _ in 0..5 {
        last = uids(s);
        if last == *before {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("uids changed ({what}): before {before:#?}\nafter {last:#?}\npruned {:#?}", s.events_with("Pruned"));
}

/// `n` VMDefinitions named `{prefix}-NN` with the given memory, as one multi-document file.
fn vms_file(prefix: &str, vm_prefix: &str, n: usize, memory: u64) -> Vec<String> {
    (0..n)
        .map(|i| vm_yaml(&format!("{prefix}-{i:02}"), &format!("{vm_prefix}{i:02}"), memory, "DEFINED_ONLY"))
        .collect()
}

/// The `/sources` line of `file`.
fn source_line(s: &Server, file: &str) -> Option<Value> {
    s.sources().into_iter().find(|x| x["file"] == file)
}

/// The whole GET /sources body.
fn sources_body(s: &Server) -> Value {
    let (code, v) = s.api("GET", "/sources", None);
    assert_eq!(code, 200, "{v}");
    v
}

/// No object was pruned: no event, no log line.
fn assert_nothing_pruned(s: &Server) {
    assert!(s.events_with("Pruned").is_empty(), "pruned: {:#?}", s.events_with("Pruned"));
    assert!(!s.log().contains("in no file of the folder any more"), "a prune in the log:\n{}", s.log());
}

#[test]
fn gitops_truncate_pause_rewrite_keeps_every_uid_and_prunes_nothing() {
    let d = Dirs::new();
    d.put("site.yaml", SITE);
    let vms = vms_file("vm-t", "VMT", 6, 512).join("---\n");
    d.put("vms.yaml", &vms);
    let watch = d.watch();
    // A grace shorter than the longest pause: only the revision in force can keep the
    // objects through it.
    let s = Server::start(
        &d.data(),
        &["--watch", watch.to_str().expect("utf-8"), "--prune", "--prune-grace", "1s", "--settle", "500ms"],
    );
    // The baseline: every object of both files (the site's five and the six VMs).
    let before = eventually("all 11 objects", || Some(uids(&s)).filter(|u| u.len() == 11));
    let revision = source_line(&s, "vms.yaml").expect("line")["revision"].clone();
    assert_eq!(revision.as_str().map(str::len), Some(16), "{revision}");
    for pause in [Duration::from_millis(200), Duration::from_secs(1), Duration::from_secs(3)] {
        // What `(sleep P; cat copy.yaml) > vms.yaml` does: truncate, pause, write.
        let mut f = std::fs::File::create(d.watch().join("vms.yaml")).expect("truncate");
        std::thread::sleep(pause);
        if pause >= Duration::from_secs(1) {
            // The empty file is reported, with the revision in force kept.
            let line = source_line(&s, "vms.yaml").expect("line");
            assert!(line["state"] == "Empty" || line["state"] == "InProgress", "{line}");
            assert_eq!(line["revision"], revision, "{line}");
            assert_eq!(line["objects"].as_array().map(Vec::len), Some(6), "{line}");
        }
        use std::io::Write;
        f.write_all(vms.as_bytes()).expect("rewrite");
        drop(f);
        eventually("vms.yaml applied again", || {
            source_line(&s, "vms.yaml").filter(|l| l["state"] == "Applied" && l["revision"] == revision)
        });
        // Longer than the grace and the settle time, then look again.
        std::thread::sleep(Duration::from_millis(1500));
        assert_uids_unchanged(&s, &before, &format!("after a pause of {pause:?}"));
        assert_nothing_pruned(&s);
    }
}

#[test]
fn gitops_a_file_written_in_two_halves_never_applies_a_half() {
    let d = Dirs::new();
    d.put("site.yaml", SITE);
    const N: usize = 40;
    d.put("vms.yaml", &vms_file("vm-h", "VMH", N, 256).join("---\n"));
    let watch = d.watch();
    let s = Server::start(
        &d.data(),
        &["--watch", watch.to_str().expect("utf-8"), "--prune", "--prune-grace", "1s", "--settle", "500ms"],
    );
    // The baseline: every object of both files (the site's five and the VMs).
    let before = eventually("all objects", || Some(uids(&s)).filter(|u| u.len() == 5 + N));
    // A poller: at every moment the folder's VMs are all there, with one memory size.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen_bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let poller = {
        let (stop, seen_bad) = (stop.clone(), seen_bad.clone());
        let (url, token, agent) = (format!("{}{API}/vmdefinitions", s.url), s.token.clone(), s.agent.clone());
        // What is wrong with the folder's VMs in one list, if anything.
        let check = move || -> Option<String> {
            let list: Value = agent
                .get(&url)
                .set("Authorization", &format!("Bearer {token}"))
                .call()
                .expect("list")
                .into_string()
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .expect("a JSON list");
            let vms: Vec<Value> = list["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| o["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("vm-h-")))
                .collect();
            let sizes: std::collections::BTreeSet<u64> = vms.iter().map(spec_memory).collect();
            (vms.len() != N || sizes.len() != 1).then(|| format!("{} VMs, sizes {sizes:?}", vms.len()))
        };
        std::thread::spawn(move || {
            let mut polls = 0;
            let mut torn = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(bad) = check() {
                    // The store's list is not a snapshot: one taken while an apply's
                    // batch lands can mix old and new objects for a moment. A half
                    // applied by GitOps stays until the next sync; a torn list is
                    // gone at once. So a state counts only when a second look agrees.
                    std::thread::sleep(Duration::from_millis(5));
                    match check() {
                        Some(again) => seen_bad.lock().expect("lock").push(format!("{bad}, then {again}")),
                        None => torn += 1,
                    }
                }
                polls += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            eprintln!("{polls} polls, {torn} torn lists seen once");
            polls
        })
    };
    for t in 0..15u64 {
        let memory = 512 + t * 64;
        let docs = vms_file("vm-h", "VMH", N, memory);
        // Cut at a document boundary: the first half alone is valid YAML (the worst case).
        let (first, second) = (docs[..N / 2].join("---\n"), format!("---\n{}", docs[N / 2..].join("---\n")));
        let pause = Duration::from_millis((t * 97) % 400);
        let mut f = std::fs::File::create(d.watch().join("vms.yaml")).expect("truncate");
        use std::io::Write;
        f.write_all(first.as_bytes()).expect("first half");
        f.flush().expect("flush");
        std::thread::sleep(pause);
        f.write_all(second.as_bytes()).expect("second half");
        drop(f);
        eventually("the whole file applied", || {
            let vms = s.list("vmdefinitions");
            let n = vms
                .iter()
                .filter(|o| {
                    o["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("vm-h-")) && spec_memory(o) == memory
                })
                .count();
            (n == N).then_some(())
        });
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let polls = poller.join().expect("poller");
    assert!(polls > 50, "the poller looked only {polls} times");
    let bad = seen_bad.lock().expect("lock").clone();
    assert!(bad.is_empty(), "a half was applied ({} of {polls} polls): {:?}", bad.len(), &bad[..bad.len().min(5)]);
    assert_uids_unchanged(&s, &before, "two-half writes");
    assert_nothing_pruned(&s);
}

#[test]
fn gitops_deleting_a_file_prunes_after_the_grace() {
    let d = Dirs::new();
    d.put("site.yaml", SITE);
    d.put("extra.yaml", &vm_yaml("vm-e", "VME", 512, "DEFINED_ONLY"));
    let watch = d.watch();
    let s = Server::start(
        &d.data(),
        &["--watch", watch.to_str().expect("utf-8"), "--prune", "--prune-grace", "3s", "--settle", "200ms"],
    );
    eventually("vm-e", || s.obj("vmdefinitions", "vm-e"));
    std::fs::remove_file(d.watch().join("extra.yaml")).expect("rm");
    let removed = Instant::now();
    // In its grace: still there, and reported as pending.
    let prune = eventually("a pending prune", || {
        let p = sources_body(&s)["prune"].clone();
        (p["state"] == "Pending").then_some(p)
    });
    // Nothing is held: a confirmation is refused and says what is pending.
    let (code, v) = s.api("POST", "/sources/prune", None);
    assert_eq!(code, 409, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("1 objects are in their --prune-grace")), "{v}");
    assert_eq!(prune["objects"], json!(["VMDefinition/vm-e"]), "{prune}");
    let out = s.ok(&["get", "sources"]);
    assert!(out.lines().any(|l| l.contains("(prune)") && l.contains("PrunePending")), "{out}");
    let json: Value = serde_json::from_str(&s.ok(&["get", "sources", "-o", "json"])).expect("get sources -o json");
    assert!(json["items"].as_array().is_some_and(|i| i.iter().any(|x| x["file"] == "site.yaml")), "{json}");
    assert!(json["prune"]["state"] == "Pending" || json["prune"]["state"] == "None", "{json}");
    let (code, _, err) = s.run(&["get", "sources", "site.yaml"]);
    assert_eq!(code, 1, "a NAME is refused: {err}");
    assert!(s.obj("vmdefinitions", "vm-e").is_some(), "pruned within the grace");
    eventually("vm-e pruned", || s.obj("vmdefinitions", "vm-e").is_none().then_some(()));
    let took = removed.elapsed();
    assert!(took >= Duration::from_secs(3), "pruned after {took:?}, before the 3 s grace");
    eprintln!("pruned {took:?} after the file was removed (--prune-grace 3s)");
    let ev = eventually("a Pruned event", || s.events_with("Pruned").into_iter().next());
    assert_eq!(ev["object"], "VMDefinition/vm-e", "{ev}");
    assert_eq!(s.list("seservers").len(), 2, "only the removed file's object is pruned");
    assert!(s.obj("vmdefinitions", "vm12prod").is_some());
    eventually("no prune left", || (sources_body(&s)["prune"]["state"] == "None").then_some(()));
}

#[test]
fn gitops_emptying_the_folder_holds_the_prune_until_confirmed() {
    let d = Dirs::new();
    d.put("site.yaml", SITE);
    for i in 0..3 {
        d.put(&format!("vm{i}.yaml"), &vm_yaml(&format!("vm-{i}"), &format!("VM{i}"), 512, "DEFINED_ONLY"));
    }
    let watch = d.watch();
    let s = Server::start(
        &d.data(),
        &["--watch", watch.to_str().expect("utf-8"), "--prune", "--prune-grace", "500ms", "--settle", "200ms"],
    );
    let before = eventually("all 8 objects", || Some(uids(&s)).filter(|u| u.len() == 8));
    // Nothing held: a confirmation is refused.
    let (code, v) = s.api("POST", "/sources/prune", None);
    assert_eq!(code, 409, "{v}");
    for f in ["site.yaml", "vm0.yaml", "vm1.yaml", "vm2.yaml"] {
        std::fs::remove_file(d.watch().join(f)).expect("rm");
    }
    let ev = eventually("a PruneHeld event", || s.events_with("PruneHeld").into_iter().next());
    assert_eq!(ev["type"], "Warning", "{ev}");
    assert!(ev["message"].as_str().is_some_and(|m| m.contains("--confirm")), "{ev}");
    // Well past the grace: nothing deleted, and `get sources` says why.
    std::thread::sleep(Duration::from_millis(2000));
    assert_uids_unchanged(&s, &before, "deleted without a confirmation");
    assert_nothing_pruned(&s);
    let prune = sources_body(&s)["prune"].clone();
    assert_eq!(prune["state"], "Held", "{prune}");
    assert_eq!(prune["objects"].as_array().map(Vec::len), Some(before.len()), "{prune}");
    let out = s.ok(&["get", "sources"]);
    assert!(out.lines().any(|l| l.contains("(prune)") && l.contains("PruneHeld")), "{out}");
    // Without --confirm: shown, nothing deleted.
    let out = s.ok(&["sources", "prune"]);
    assert!(out.contains("VMDefinition/vm-1") && out.contains("--confirm"), "{out}");
    assert_uids_unchanged(&s, &before, "`sources prune` without --confirm");
    // A file put back meanwhile keeps its object through the confirmation.
    d.put("vm0.yaml", &vm_yaml("vm-0", "VM0", 512, "DEFINED_ONLY"));
    eventually("vm0.yaml applied", || source_line(&s, "vm0.yaml").filter(|l| l["state"] == "Applied"));
    let out = s.ok(&["sources", "prune", "--confirm"]);
    assert!(out.contains(&format!("{} objects pruned", before.len() - 1)), "{out}");
    assert_eq!(s.names("vmdefinitions"), vec!["vm-0".to_string()]);
    assert!(s.list("seservers").is_empty());
    assert_eq!(s.events_with("Pruned").len(), before.len() - 1);
    let (code, v) = s.api("POST", "/sources/prune", None);
    assert_eq!(code, 409, "nothing held any more: {v}");
    let (code, v) = s.api("POST", "/sources/prune?force=1", None);
    assert_eq!(code, 400, "an unknown query is refused: {v}");
}

#[test]
fn gitops_confirming_a_prune_needs_prune_and_a_watched_folder() {
    let d = Dirs::new();
    let s = Server::start(&d.data(), &[]);
    let (code, v) = s.api("POST", "/sources/prune", None);
    assert_eq!(code, 404, "{v}");
    drop(s);
    let d = Dirs::new();
    let watch = d.watch();
    let s = Server::start(&d.data(), &["--watch", watch.to_str().expect("utf-8")]);
    let (code, v) = s.api("POST", "/sources/prune", None);
    assert_eq!(code, 409, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("--prune")), "{v}");
    let (code, _, err) = s.run(&["sources", "prune", "--confirm"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--prune"), "{err}");
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status (Linux)");
    st.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[cfg(unix)]
#[test]
fn gitops_reads_no_link_fifo_or_device_and_stays_alive() {
    use std::os::unix::fs::symlink;
    let d = Dirs::new();
    d.put("site.yaml", SITE);
    // A secret outside the folder, shaped like /etc/passwd.
    let secret = d.file("secret.yaml");
    std::fs::write(&secret, "root:x:0:0:TOPSECRET4711:/root:/bin/bash\n").expect("secret");
    symlink(&secret, d.watch().join("passwd.yaml")).expect("link");
    symlink("/dev/zero", d.watch().join("zero.yaml")).expect("link");
    let fifo = d.watch().join("pipe.yaml");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo (install coreutils)");
    assert!(st.success());
    symlink(&fifo, d.watch().join("pipe-link.yaml")).expect("link");
    let watch = d.watch();
    let mut s = Server::start(&d.data(), &["--watch", watch.to_str().expect("utf-8"), "--settle", "200ms"]);
    eventually("the site", || s.obj("vmdefinitions", "vm12prod"));
    // A file written after them is applied.
    let t = Instant::now();
    d.put("later.yaml", &vm_yaml("vm-later", "VMLATER", 512, "DEFINED_ONLY"));
    eventually("a later file beside a FIFO", || s.obj("vmdefinitions", "vm-later"));
    eprintln!("later file applied {:?} after it was written (FIFO, links present)", t.elapsed());
    let src = s.sources();
    for f in ["passwd.yaml", "zero.yaml", "pipe.yaml", "pipe-link.yaml"] {
        let line = src.iter().find(|x| x["file"] == f).unwrap_or_else(|| panic!("{f} not reported: {src:#?}"));
        assert_eq!(line["state"], "Skipped", "{line}");
    }
    let pipe = src.iter().find(|x| x["file"] == "pipe.yaml").expect("pipe");
    assert!(pipe["message"].as_str().is_some_and(|m| m.contains("FIFO")), "{pipe}");
    let ev = eventually("a SourceSkipped event", || {
        s.events_with("SourceSkipped").into_iter().find(|e| e["object"] == "Source/passwd.yaml")
    });
    assert!(ev["message"].as_str().is_some_and(|m| m.contains("symbolic link")), "{ev}");
    // The secret is nowhere.
    let everything = format!("{}\n{}\n{}", sources_body(&s), json!(s.events()), s.log());
    assert!(!everything.contains("TOPSECRET4711"), "the linked file's content leaked");
    let rss = peak_rss_kib(s.proc.0.id());
    eprintln!("peak RSS of the server with a /dev/zero link: {} MiB", rss / 1024);
    assert!(rss < 512 * 1024, "peak RSS {rss} KiB: a device was read");
    // SIGTERM still ends it.
    let t = Instant::now();
    let st = s.stop();
    assert!(st.success(), "{st:?}");
    eprintln!("stopped {:?} after SIGTERM with a FIFO in the folder", t.elapsed());
}

#[cfg(unix)]
#[test]
fn gitops_follow_links_inside_reads_only_links_to_files_inside() {
    use std::os::unix::fs::symlink;
    let d = Dirs::new();
    d.put("site.yaml", SITE);
    std::fs::create_dir_all(d.watch().join(".shared")).expect("mkdir");
    d.put(".shared/vm.yaml", &vm_yaml("vm-linked", "VMLINKED", 512, "DEFINED_ONLY"));
    symlink(d.watch().join(".shared/vm.yaml"), d.watch().join("vm.yaml")).expect("link");
    let outside = d.file("outside.yaml");
    std::fs::write(&outside, vm_yaml("vm-outside", "VMOUT", 512, "DEFINED_ONLY")).expect("write");
    symlink(&outside, d.watch().join("out.yaml")).expect("link");
    symlink("/dev/zero", d.watch().join("zero.yaml")).expect("link");
    let watch = d.watch();
    let s = Server::start(&d.data(), &["--watch", watch.to_str().expect("utf-8"), "--follow-links-inside"]);
    let o = eventually("the linked file inside", || s.obj("vmdefinitions", "vm-linked"));
    assert_eq!(source_of(&o).as_deref(), Some("vm.yaml"));
    let src = eventually("the first sync published", || {
        let src = s.sources();
        src.iter().any(|x| x["file"] == "vm.yaml" && x["state"] == "Applied").then_some(src)
    });
    for f in ["out.yaml", "zero.yaml"] {
        let line = src.iter().find(|x| x["file"] == f).unwrap_or_else(|| panic!("{f}: {src:#?}"));
        assert_eq!(line["state"], "Skipped", "{line}");
        assert!(line["message"].as_str().is_some_and(|m| m.contains("outside")), "{line}");
    }
    assert!(s.obj("vmdefinitions", "vm-outside").is_none(), "a link outside was followed");
}

#[test]
fn gitops_messages_quote_only_an_excerpt_of_a_file() {
    let d = Dirs::new();
    let watch = d.watch();
    let s = Server::start(&d.data(), &["--watch", watch.to_str().expect("utf-8"), "--settle", "200ms"]);
    let long = "Z".repeat(20_000);
    d.put(
        "long.yaml",
        &format!("apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: x}}\nspec: {long}\n"),
    );
    let many: Vec<String> = (0..50).map(|i| format!("key{i}: [unclosed\n---\n")).collect();
    d.put("many.yaml", &many.concat());
    for f in ["long.yaml", "many.yaml"] {
        let line = eventually("reported invalid", || source_line(&s, f).filter(|l| l["state"] == "Invalid"));
        let msg = line["message"].as_str().expect("message");
        assert!(msg.len() <= 11 * 260, "{f}: a message of {} bytes", msg.len());
        assert!(msg.lines().count() <= 11, "{f}: {} lines", msg.lines().count());
    }
    for e in s.events_with("SourceInvalid") {
        let m = e["message"].as_str().expect("message");
        assert!(m.len() <= 11 * 260 + 100, "an event of {} bytes", m.len());
    }
    assert!(!s.log().contains(&"Z".repeat(300)), "the log quotes the file at length");
}

#[test]
fn gitops_syncs_a_folder_that_keeps_changing() {
    let d = Dirs::new();
    let watch = d.watch();
    let s = Server::start(&d.data(), &["--watch", watch.to_str().expect("utf-8"), "--settle", "200ms"]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Something in the folder changes every 20 ms, for ever.
    let noise = {
        let (stop, p) = (stop.clone(), d.watch().join("noise.txt"));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::fs::write(&p, i.to_string()).expect("noise");
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    d.put("a.yaml", &vm_yaml("vm-busy", "VMBUSY", 512, "DEFINED_ONLY"));
    eventually("a file in a busy folder", || s.obj("vmdefinitions", "vm-busy"));
    eprintln!("applied {:?} after it was written, in a folder changing every 20 ms", t.elapsed());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    noise.join().expect("noise thread");
}

#[test]
fn a_named_endless_file_is_refused_at_the_cap() {
    let d = Dirs::new();
    let out = common::sectl_in(&d.data()).args(["validate", "-f", "/dev/zero"]).timeout(LIMIT).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/zero") && err.contains("more than 16777216 bytes"), "{err}");
}

// ---------------------------------------------------------------------------------
// Issue 8: the HTTP boundary (TLS, tokens, limits, paging, slow and idle clients)

/// The CLI with `--data-dir DATA --server URL` and whatever else is given.
fn cli_at(data: &Path, url: &str) -> assert_cmd::Command {
    let mut c = common::sectl_in(data);
    c.env_remove("SECTL_TOKEN").env_remove("SECTL_CERTIFICATE_AUTHORITY").arg("--server").arg(url).timeout(LIMIT);
    c
}

#[test]
fn https_by_default_with_its_own_ca_and_any_case_bearer() {
    let d = Dirs::new();
    let s = Server::start(&d.data(), &[]);
    assert!(s.url.starts_with("https://"), "{}", s.url);
    #[cfg(unix)]
    for f in ["ca.key", "server.key", "token"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.data().join(f)).expect(f).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }
    // RFC 7235: the scheme is case-insensitive; other schemes are refused.
    let path = format!("{API}/vmdefinitions");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (code, text) = s.req_auth("GET", &path, Some(&format!("{scheme} {}", s.token)), None);
        assert_eq!(code, 200, "{scheme}: {text}");
    }
    let (code, _) = s.req_auth("GET", &path, Some(&format!("bearer   {}", s.token)), None);
    assert_eq!(code, 200, "more than one space after the scheme");
    for bad in [format!("Basic {}", s.token), format!("Bearer{}", s.token), s.token.clone()] {
        assert_eq!(s.req_auth("GET", &path, Some(&bad), None).0, 401, "{bad}");
    }
    // Plain HTTP to the TLS port gets no answer from the API.
    let plain = s.url.replacen("https://", "http://", 1);
    let r = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build().get(&format!("{plain}/healthz")).call();
    assert!(!matches!(r, Ok(ref resp) if resp.status() == 200), "plain http answered: {r:?}");

    // The CLI trusts the data dir's CA.
    let out = cli_at(&d.data(), &s.url).args(["get", "vm"]).assert().success().get_output().stderr.clone();
    assert!(String::from_utf8_lossy(&out).contains("No vmdefinitions found"), "{}", String::from_utf8_lossy(&out));
    // Another data dir has another CA: refused, naming the certificate problem.
    let other = d.file("other");
    let o2 = Server::start(&other, &[]);
    drop(o2);
    let out = cli_at(&other, &s.url).env("SECTL_TOKEN", &s.token).args(["get", "vm"]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a server signed by another CA was trusted");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // ... unless its CA is named with --certificate-authority.
    let ca = d.data().join("ca.crt");
    cli_at(&other, &s.url)
        .env("SECTL_TOKEN", &s.token)
        .arg("--certificate-authority")
        .arg(&ca)
        .args(["get", "vm"])
        .assert()
        .success();
    // No CA at all: a clear error.
    let empty = d.file("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = cli_at(&empty, &s.url).env("SECTL_TOKEN", &s.token).args(["get", "vm"]).output().expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--certificate-authority"), "{out:?}");
}

#[test]
fn insecure_http_only_on_loopback_and_open_listening_warns() {
    let d = Dirs::new();
    let out = common::sectl_in(&d.data())
        .args(["serve", "--insecure-http", "--listen", "0.0.0.0:0"])
        .timeout(LIMIT)
        .output()
        .expect("run serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--insecure-http is refused on 0.0.0.0:0"), "{err}");

    let s = Server::start(&d.data(), &["--insecure-http"]);
    assert!(s.url.starts_with("http://"), "{}", s.url);
    assert_eq!(s.req("GET", "/healthz", None, None), (200, "ok".to_string()));
    assert_eq!(s.api("GET", "/vmdefinitions", None).0, 200);
    drop(s);

    // HTTPS on all addresses is served, with a warning (probed on loopback only).
    let mut c = Command::new(env!("CARGO_BIN_EXE_sectl"));
    c.arg("--data-dir").arg(d.file("open2")).args(["serve", "--listen", "0.0.0.0:0"]);
    let mut child = c
        .env_remove("SECTL_SERVER")
        .env_remove("SECTL_DATA_DIR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = lines_of(child.stderr.take().expect("stderr"));
    let out = lines_of(child.stdout.take().expect("stdout"));
    let _g = Guard(child);
    let first = out.recv_timeout(LIMIT).expect("first line");
    assert!(first.starts_with("sectl serve: listening on https://0.0.0.0:"), "{first}");
    recv_until(&err, "the non-loopback warning", |l| l.iter().any(|x| x.contains("non-loopback address")));
}

#[test]
fn serving_a_given_certificate_and_key() {
    let d = Dirs::new();
    let pki = d.file("pki");
    std::fs::create_dir_all(&pki).expect("mkdir");
    let (cert, key) = sectl::server::tls::issue_server_cert(&pki, "127.0.0.1").expect("issue");
    let (c, k) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    // The server's data dir gets no CA of its own: the agent must trust pki's.
    let mut child = common::sectl()
        .arg("--data-dir")
        .arg(d.data())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", c, "--tls-key", k])
        .env_remove("SECTL_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let out = lines_of(child.stdout.take().expect("stdout"));
    let _g = Guard(child);
    let first = out.recv_timeout(LIMIT).expect("first line");
    let url = first.strip_prefix("sectl serve: listening on ").expect("address").to_string();
    assert!(!d.data().join("ca.crt").exists(), "a CA was made although --tls-cert was given");
    let token = std::fs::read_to_string(d.data().join("token")).expect("token");
    cli_at(&d.data(), &url)
        .env("SECTL_TOKEN", token.trim())
        .arg("--certificate-authority")
        .arg(pki.join("ca.crt"))
        .args(["get", "se"])
        .assert()
        .success();
    // --tls-cert without --tls-key is a usage error.
    common::sectl_in(&d.file("x")).args(["serve", "--tls-cert", c]).assert().failure();
}

/// Applies `n` VMs named vm000..; returns their names.
fn apply_vms(s: &Server, n: usize) -> Vec<String> {
    let items: Vec<Value> = (0..n).map(|i| vm_json(&format!("vm{i:03}"), &format!("V{i:03}"), 64)).collect();
    let (code, v) = s.api("POST", "/apply", Some(&json!({ "items": items })));
    assert_eq!(code, 200, "{v}");
    (0..n).map(|i| format!("vm{i:03}")).collect()
}

/// Pages through the VMs with `limit`; Err(410 body) when a continue expires.
fn pages(s: &Server, limit: usize) -> Result<(Vec<String>, Vec<String>), Value> {
    let (mut names, mut rvs) = (Vec::new(), Vec::new());
    let mut cont: Option<String> = None;
    loop {
        let q = match &cont {
            Some(c) => format!("/vmdefinitions?limit={limit}&continue={c}"),
            None => format!("/vmdefinitions?limit={limit}"),
        };
        let (code, v) = s.api("GET", &q, None);
        if code == 410 {
            return Err(v);
        }
        assert_eq!(code, 200, "{v}");
        let items = v["items"].as_array().expect("items");
        assert!(items.len() <= limit);
        names.extend(items.iter().map(|o| o["metadata"]["name"].as_str().expect("name").to_string()));
        rvs.push(v["metadata"]["resourceVersion"].as_str().expect("rv").to_string());
        match v["metadata"]["continue"].as_str() {
            Some(c) => cont = Some(c.to_string()),
            None => return Ok((names, rvs)),
        }
    }
}

#[test]
fn lists_page_with_limit_and_continue_and_refuse_what_they_do_not_know() {
    let d = Dirs::new();
    let s = Server::start(&d.data(), &[]);
    let want = apply_vms(&s, 25);
    // The controller may still write statuses: a page sequence that ran into a change
    // is 410 and is simply taken again (what a client does).
    let (names, rvs) = eventually("a consistent paged list", || pages(&s, 10).ok());
    assert_eq!(names, want, "all objects, once each, in name order");
    assert_eq!(rvs.len(), 3);
    assert!(rvs.iter().all(|r| r == &rvs[0]), "every page is the snapshot of the first: {rvs:?}");
    // The unpaged (streamed) list has the same objects.
    let streamed: Vec<String> =
        s.list("vmdefinitions").iter().map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(streamed, want);

    // A change to an object still to come expires the token: 410, as JSON.
    let token = eventually("a first page", || {
        let (code, v) = s.api("GET", "/vmdefinitions?limit=10", None);
        assert_eq!(code, 200, "{v}");
        v["metadata"]["continue"].as_str().map(str::to_string)
    });
    let mut later = s.obj("vmdefinitions", "vm020").expect("vm020");
    later["metadata"]["labels"] = json!({"touched": "yes"});
    later["metadata"].as_object_mut().expect("meta").remove("resourceVersion");
    let (code, v) = s.api("PUT", "/vmdefinitions/vm020", Some(&later));
    assert_eq!(code, 200, "{v}");
    let (code, err) = s.api("GET", &format!("/vmdefinitions?limit=10&continue={token}"), None);
    assert_eq!((code, err["reason"].as_str()), (410, Some("Expired")), "{err}");
    // (The controller may have written a status meanwhile: then that object is named.)
    assert!(err["message"].as_str().is_some_and(|m| m.contains("changed at resourceVersion")), "{err}");

    // Never ignore what is not supported: unknown parameters and bad values are 400.
    for (q, needle) in [
        ("/vmdefinitions?labelSelector=a%20b%3Dc", "labelSelector"),
        ("/vmdefinitions?fieldSelector=spec.memoryMiB%3D1", "not supported"),
        ("/vmdefinitions?watch=1&sendInitialEvents=true", "sendInitialEvents"),
        ("/vmdefinitions?resourceVersionMatch=Exact&resourceVersion=1", "Exact"),
        ("/vmdefinitions?timeout=soon", "timeout"),
        ("/vmdefinitions?limit=ten", "limit"),
        ("/vmdefinitions?limit=5&continue=garbage", "continue token"),
        ("/vmdefinitions?watch=1&limit=5", "limit"),
        ("/vmdefinitions?watch=maybe", "watch"),
        ("/vmdefinitions/vm001?pretty=true", "pretty"),
        ("/events?since=1", "since"),
    ] {
        let (code, err) = s.api("GET", q, None);
        assert_eq!((code, err["reason"].as_str()), (400, Some("BadRequest")), "{q}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| m.contains(needle)), "{q}: {err}");
    }
    let se_token = {
        let (_, v) = s.api("GET", "/vmdefinitions?limit=1", None);
        v["metadata"]["continue"].as_str().expect("continue").to_string()
    };
    let (code, err) = s.api("GET", &format!("/seservers?limit=1&continue={se_token}"), None);
    assert_eq!(code, 400, "a VM list's token on the server list: {err}");
    let (code, err) = s.api("POST", "/apply?dryRun=yes", Some(&json!({"items": []})));
    assert_eq!(code, 400, "{err}");
    let (code, err) = s.api("POST", "/apply?force=true", Some(&json!({"items": []})));
    assert!(code == 400 && err["message"].as_str().is_some_and(|m| m.contains("force")), "{err}");
}

#[test]
fn bodies_up_to_the_manifest_limit_pass_and_a_larger_one_is_413_json() {
    let d = Dirs::new();
    let s = Server::start(&d.data(), &[]);
    // 2.4 MB (above axum's 2 MB default) in a dry-run apply: accepted.
    let big = "x".repeat(200_000);
    let items: Vec<Value> = (0..12)
        .map(|i| {
            let mut v = vm_json(&format!("big{i:02}"), &format!("BIG{i:02}"), 64);
            v["metadata"]["annotations"] = json!({ "note": big });
            v
        })
        .collect();
    let body = json!({ "items": items }).to_string();
    assert!(body.len() > 2_400_000, "{}", body.len());
    let (code, text) = s.req("POST", &format!("{API}/apply?dryRun=true"), Some(&s.token), Some(&body));
    assert_eq!(code, 200, "{}", &text[..text.len().min(300)]);
    // Over 16 MiB: 413 as JSON, naming the limit.
    let huge = format!("{{\"items\": [], \"pad\": \"{}\"}}", "y".repeat(17 * 1024 * 1024));
    let (code, text) = s.req("POST", &format!("{API}/apply?dryRun=true"), Some(&s.token), Some(&huge));
    assert_eq!(code, 413, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("413 is not JSON ({e}): {text}"));
    assert_eq!((v["code"].as_u64(), v["reason"].as_str()), (Some(413), Some("RequestEntityTooLarge")), "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("16 MiB")), "{v}");
}

/// Raises this process's open-file limit for the client side of an attack.
fn raise_own_nofile(need: u64) {
    let got = rlimit::increase_nofile_limit(need).expect("raise RLIMIT_NOFILE");
    assert!(got >= need, "need {need} open files for this test, the hard limit allows {got} (ulimit -Hn)");
}

/// Answers `/healthz` on a fresh connection, `n` times over `span`. The server must
/// answer every probe (an attacker may not lock people out); how fast is a figure of
/// `cargo bench --bench serve` (p50 and max under the same attacks, in the README), not
/// a timed assertion here: a debug build on a loaded 2-core machine is no measure. The
/// probe's own timeout (10 s) only bounds the wait.
fn healthz_keeps_answering(s: &Server, n: u32, span: Duration) {
    for i in 0..n {
        let agent = agent_for(&s.url, &s.data).timeout(Duration::from_secs(10)).build();
        let t = Instant::now();
        let r = agent.get(&format!("{}/healthz", s.url)).call();
        let took = t.elapsed();
        match r {
            Ok(resp) if resp.status() == 200 => {}
            other => panic!("probe {i}: /healthz did not answer ({took:?}): {other:?}\nlog:\n{}", s.log()),
        }
        if took > Duration::from_secs(1) {
            eprintln!("probe {i}: /healthz answered in {took:?} (debug build, loaded machine)");
        }
        std::thread::sleep(span / n);
    }
}

/// Whether the server has closed `c` (reads EOF or a reset within 50 ms).
fn closed(c: &mut std::net::TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let mut b = [0u8; 64];
    match c.read(&mut b) {
        Ok(0) => true,
        Ok(_) => closed(c),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn healthz_answers_while_idle_connections_outnumber_the_file_handles() {
    // The server may open 400 files; 1,000 idle connections once took them all
    // (`accept error: Too many open files`) and /healthz stopped answering.
    raise_own_nofile(2_000);
    let d = Dirs::new();
    let s = Server::start_limited(&d.data(), 400, &[]);
    let addr = s.url.trim_start_matches("https://").to_string();
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..1_000 {
        // While the server makes room its accept queue may be full: an attacker's
        // connect can then time out, which is not the server's failure.
        match std::net::TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(2)) {
            Ok(c) => idle.push(c),
            Err(_) => refused += 1,
        }
    }
    assert!(idle.len() > 300, "only {} connections opened ({refused} timed out): no attack", idle.len());
    healthz_keeps_answering(&s, 10, Duration::from_secs(3));
    // The server made room by closing the oldest idle connections.
    let shut = idle.iter_mut().take(200).map(closed).filter(|&x| x).count();
    assert!(shut > 0, "no idle connection was closed to make room");
    assert!(!s.log().contains("Too many open files"), "{}", s.log());
}

#[test]
fn slow_clients_are_cut_off_after_the_handshake_timeout() {
    // 300 clients that send one byte a second and never finish a TLS handshake (or,
    // on plain HTTP, a request head) are closed after 10 s; /healthz answers meanwhile.
    raise_own_nofile(1_000);
    let d = Dirs::new();
    let tls = Server::start_limited(&d.data(), 400, &[]);
    let plain = Server::start_limited(&d.file("plain"), 400, &["--insecure-http"]);
    let mut slow = Vec::new();
    for (s, first) in
        [(&tls, &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..]), (&plain, &b"GET /healthz HTTP/1.1\r\nX: "[..])]
    {
        let addr = s.url.split_once("://").expect("url").1.to_string();
        for _ in 0..150 {
            let c = std::net::TcpStream::connect(&addr).expect("connect");
            slow.push((c, first, 0usize));
        }
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(13) {
        for (c, bytes, at) in slow.iter_mut() {
            use std::io::Write as _;
            let b = [bytes.get(*at).copied().unwrap_or(b'a')];
            let _ = c.write(&b);
            *at += 1;
        }
        healthz_keeps_answering(&tls, 1, Duration::from_millis(500));
        healthz_keeps_answering(&plain, 1, Duration::from_millis(500));
    }
    // Each connection's 10 s start when the server accepts it; with more clients than
    // the connection limit some wait in the accept queue first, so allow a bounded
    // while longer, still trickling bytes, before requiring that all are closed.
    let mut open = slow.iter_mut().map(|(c, _, _)| closed(c)).filter(|&x| !x).count();
    while open > 0 && start.elapsed() < Duration::from_secs(40) {
        for (c, bytes, at) in slow.iter_mut() {
            use std::io::Write as _;
            let _ = c.write(&[bytes.get(*at).copied().unwrap_or(b'a')]);
            *at += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
        open = slow.iter_mut().map(|(c, _, _)| closed(c)).filter(|&x| !x).count();
    }
    assert_eq!(open, 0, "slow connections still open after {:?}", start.elapsed());
}

#[cfg(unix)]
#[test]
fn a_fifo_or_device_in_a_named_folder_is_an_error_not_a_hang() {
    let d = Dirs::new();
    d.put("vm.yaml", &vm_yaml("vm-a", "VMA", 512, "DEFINED_ONLY"));
    let st = Command::new("mkfifo").arg(d.watch().join("pipe.yaml")).status().expect("mkfifo (install coreutils)");
    assert!(st.success());
    std::os::unix::fs::symlink("/dev/zero", d.watch().join("zero.yaml")).expect("link");
    let t = Instant::now();
    let out = common::sectl_in(&d.data()).args(["validate", "-f"]).arg(d.watch()).timeout(LIMIT).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pipe.yaml: is not a regular file but a FIFO"), "{err}");
    assert!(err.contains("zero.yaml: is not a regular file but a character device"), "{err}");
    assert!(t.elapsed() < LIMIT, "took {:?}", t.elapsed());
}
