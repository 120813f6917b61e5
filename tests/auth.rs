//! Users, roles and the audit log end to end (issue 13): a refused request is 403
//! `kind: Status` naming user, verb, object and missing right (and the CLI exits 1);
//! an operator with rights on the source SU only may not migrate; every mutating and
//! every refused request (embedded CLI, HTTP, GitOps, sim) is recorded exactly once;
//! `audit verify` names an edited and a deleted record; a user's token is stored only
//! as its hash.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifests() -> String {
    root().join("manifests").display().to_string()
}

/// A `sectl serve` on a free loopback port (plain HTTP), killed on drop.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sectl(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sectl"));
    c.env_remove("SECTL_SERVER").env_remove("SECTL_DATA_DIR").env_remove("SECTL_TOKEN").env_remove("RUST_LOG");
    c.arg("--data-dir").arg(data);
    c
}

fn run(c: &mut Command, code: i32) -> (String, String) {
    let out = c.output().expect("runs");
    let (so, se) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert_eq!(out.status.code(), Some(code), "{c:?}: want exit {code}\nstdout:\n{so}\nstderr:\n{se}");
    (so, se)
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Server {
        let mut child = sectl(data)
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http", "--time-scale", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.with_extension("log")).expect("log"))
            .spawn()
            .expect("spawn sectl serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("first line");
        let url = first.trim().strip_prefix("sectl serve: listening on ").expect("address line").to_string();
        Server { child, url, data: data.to_path_buf() }
    }

    /// The CLI against the server, as the user of `token` (None: the admin token file).
    fn cli(&self, token: Option<&str>, args: &[&str]) -> Command {
        let mut c = sectl(&self.data);
        c.arg("--server").arg(&self.url).args(args);
        if let Some(t) = token {
            c.env("SECTL_TOKEN", t);
        }
        c
    }

    fn run(&self, token: Option<&str>, code: i32, args: &[&str]) -> (String, String) {
        run(&mut self.cli(token, args), code)
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("token")).expect("token file").trim().to_string()
    }

    /// A raw request: (status, body as JSON).
    fn http(&self, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let req = ureq::request(method, &format!("{}{path}", self.url))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/yaml");
        let r = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
        };
        let (code, resp) = match r {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(c, r)) => (c, r),
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let text = resp.into_string().unwrap_or_default();
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn audit(&self) -> Vec<Value> {
        let (so, _) = self.run(None, 0, &["audit", "-o", "json"]);
        let v: Value = serde_json::from_str(&so).expect("json");
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

const LM: &str = "apiVersion: sectl.io/v1alpha1
kind: LiveMigration
metadata: {name: lm-t1}
spec: {vm: abgtest1, checkOnly: true}
";

const SERVER: &str = "apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: extra}
spec:
  model: SE700
  version: V6.3
  managementUnits: [{name: extramu}]
  serverUnits: [{name: EXTRASU, type: '390', model: SU700-70, cpus: 2, memoryMiB: 8192, monitorMemoryMiB: 1024}]
";

fn vm(name: &str, vm_name: &str) -> String {
    format!(
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {name}}}\nspec: {{vmName: {vm_name}, serverUnit: ABGSE701, vmIndex: '*ANY', state: DEFINED_ONLY, memoryMiB: 512, cpus: 1}}\n"
    )
}

#[test]
fn refusals_are_403_naming_user_verb_object_and_right() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("store");
    run(sectl(&data).args(["apply", "-f", &manifests()]), 0);
    let s = Server::start(&data, &[]);
    // abgtest1 is on ABGSE701; its SU cluster's other SU is ABGSE501.
    let (src_only, _) = s.run(
        None,
        0,
        &["user", "add", "op1", "--role", "operator", "--systems", "abgtest1", "--server-units", "ABGSE701"],
    );
    let src_only = src_only.trim().to_string();
    let (both, _) = s.run(
        None,
        0,
        &["user", "add", "op2", "--role", "operator", "--systems", "abgtest1", "--server-units", "ABGSE701,ABGSE501"],
    );
    let (bs2, _) = s.run(None, 0, &["user", "add", "bs2", "--role", "bs2000-admin", "-o", "json"]);
    let bs2: Value = serde_json::from_str(&bs2).expect("json");
    assert_eq!((bs2["name"].as_str(), bs2["role"].as_str()), (Some("bs2"), Some("bs2000-admin")));
    let bs2 = bs2["token"].as_str().expect("token").to_string();
    let lm = write(tmp.path(), "lm.yaml", LM);
    let lm = lm.to_str().expect("utf-8");

    // The operator with the source SU only: refused, CLI exit 1, the Status says why.
    let (_, err) = s.run(Some(&src_only), 1, &["apply", "-f", lm]);
    assert!(err.contains("user \"op1\"") && err.contains("LiveMigration/lm-t1"), "{err}");
    assert!(err.contains("missing right on server unit ABGSE501") && err.contains("403"), "{err}");
    let (code, st) = s.http(&src_only, "POST", "/apis/sectl.io/v1alpha1/livemigrations", Some(LM));
    assert_eq!(code, 403, "{st}");
    assert_eq!((st["kind"].as_str(), st["reason"].as_str()), (Some("Status"), Some("Forbidden")));
    let msg = st["message"].as_str().expect("message");
    assert!(msg.contains("op1") && msg.contains("create") && msg.contains("LiveMigration/lm-t1"), "{msg}");
    assert!(msg.contains("right on server unit ABGSE501"), "{msg}");
    // Rights on both SUs: allowed.
    s.run(Some(both.trim()), 0, &["apply", "-f", lm]);
    // Everyone reads.
    s.run(Some(&src_only), 0, &["get", "vm"]);
    // Only administrators define servers; a BS2000 administrator may not.
    let (code, st) = s.http(&bs2, "POST", "/apis/sectl.io/v1alpha1/seservers", Some(SERVER));
    assert_eq!(code, 403, "{st}");
    assert!(st["message"].as_str().unwrap_or("").contains("missing role administrator"), "{st}");
    // ... nor add users, nor change the simulated world; but may read the audit log.
    s.run(Some(&bs2), 1, &["user", "add", "x", "--role", "operator"]);
    s.run(Some(&bs2), 1, &["sim", "advance", "1s"]);
    s.run(Some(&bs2), 0, &["audit"]);
    s.run(Some(&src_only), 1, &["audit"]);
    // whoami names the token's user.
    let (who, _) = s.run(Some(&bs2), 0, &["whoami", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&who).expect("json")["name"], "bs2");
    // A rotated token replaces the old one at once.
    let (new, _) = s.run(None, 0, &["user", "rotate", "bs2"]);
    s.run(Some(&bs2), 1, &["whoami"]);
    s.run(Some(new.trim()), 0, &["whoami"]);
    // A deleted user's token stops working.
    s.run(None, 0, &["user", "delete", "op1"]);
    let (_, err) = s.run(Some(&src_only), 1, &["get", "vm"]);
    assert!(err.contains("401"), "{err}");
    // The last administrator cannot be deleted.
    s.run(None, 1, &["user", "delete", "admin"]);
}

#[test]
fn every_mutating_and_refused_request_is_recorded_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("store");
    let folder = tmp.path().join("site");
    std::fs::create_dir(&folder).expect("folder");
    let mut expected = 0;
    // Embedded: one user add, the site (one record per object).
    run(sectl(&data).args(["user", "add", "gops", "--role", "bs2000-admin"]), 0);
    expected += 1;
    let (out, _) = run(sectl(&data).args(["--no-reconcile", "apply", "-f", &manifests()]), 0);
    expected += out.lines().filter(|l| l.contains(" created")).count();
    assert!(expected > 10, "{out}");
    // GitOps as a BS2000 administrator, resyncing every second (no record twice).
    write(&folder, "vm.yaml", &vm("gitvm1", "GITVM1"));
    let s = Server::start(
        &data,
        &["--watch", folder.to_str().expect("utf-8"), "--as", "gops", "--resync", "1s", "--settle", "200ms"],
    );
    expected += 1; // gitvm1 created by GitOps
    let wait_for = |n: usize| {
        let t0 = Instant::now();
        loop {
            let got = s.audit().len();
            if got >= n || t0.elapsed() > Duration::from_secs(30) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(wait_for(expected), expected);
    // A server in the folder: the BS2000 administrator may not; refused once.
    write(&folder, "server.yaml", SERVER);
    expected += 1;
    assert_eq!(wait_for(expected), expected);
    let admin = s.admin_token();
    let p = "/apis/sectl.io/v1alpha1";
    // HTTP: ok, conflict, invalid (unknown object), invalid (bad body), sim, ack.
    assert_eq!(s.http(&admin, "POST", &format!("{p}/vmdefinitions"), Some(&vm("httpvm", "HTTPVM"))).0, 201);
    assert_eq!(s.http(&admin, "POST", &format!("{p}/vmdefinitions"), Some(&vm("httpvm", "HTTPVM"))).0, 409);
    assert_eq!(s.http(&admin, "DELETE", &format!("{p}/vmdefinitions/nosuch"), None).0, 404);
    assert_eq!(s.http(&admin, "POST", &format!("{p}/apply"), Some("kind: [")).0, 422);
    s.run(None, 0, &["sim", "advance", "1s"]);
    s.run(None, 0, &["events", "ack"]);
    expected += 6;
    // An operator: refused; a user add over HTTP.
    let (op, _) = s.run(None, 0, &["user", "add", "op", "--role", "operator"]);
    s.run(Some(op.trim()), 1, &["delete", "vm", "httpvm"]);
    expected += 2;
    // Reads are not recorded.
    s.run(None, 0, &["get", "vm"]);
    s.run(Some(op.trim()), 0, &["events", "--summary"]);
    // Several resyncs later, nothing more.
    std::thread::sleep(Duration::from_millis(2500));
    let recs = s.audit();
    assert_eq!(recs.len(), expected, "{}", serde_json::to_string_pretty(&recs).unwrap_or_default());
    let count = |f: &dyn Fn(&Value) -> bool| recs.iter().filter(|r| f(r)).count();
    assert_eq!(count(&|r| r["source"] == "gitops" && r["result"] == "ok"), 1);
    assert_eq!(count(&|r| r["source"] == "gitops" && r["result"] == "denied" && r["kind"] == "SEServer"), 1);
    assert_eq!(count(&|r| r["result"] == "conflict" && r["source"] == "http"), 1);
    assert_eq!(count(&|r| r["result"] == "invalid" && r["source"] == "http"), 2);
    assert_eq!(count(&|r| r["verb"] == "sim" && r["name"] == "advance 1s"), 1);
    assert_eq!(count(&|r| r["user"] == "op" && r["result"] == "denied"), 1);
    // The records name the SUs touched.
    assert!(recs.iter().any(|r| r["name"] == "httpvm" && r["serverUnits"][0] == "ABGSE701"));
    // Filters.
    let (so, _) = s.run(None, 0, &["audit", "--user", "op", "--since", "1h", "-o", "json"]);
    let v: Value = serde_json::from_str(&so).expect("json");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");
    s.run(None, 0, &["audit", "verify"]);
}

/// Rewrites the `nth` stored audit record (or removes it) in a stopped store.
fn tamper(data: &Path, nth: usize, edit: Option<&dyn Fn(&str) -> String>) {
    use sectl::store::{Batch, SledStore, Store};
    let store = SledStore::open(data).expect("store");
    let recs = store.read_state("audit/r/").expect("records");
    let (key, bytes) = recs[nth - 1].clone();
    let value = edit.map(|f| f(&String::from_utf8(bytes).expect("utf-8")).into_bytes());
    store.commit_batch(Batch { state: vec![(key, value)], durable: true, ..Default::default() }).expect("write");
}

#[test]
fn audit_verify_names_an_edited_and_a_deleted_record() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (case, edit) in [
        ("edited", Some(&(|s: &str| s.replace("\"admin\"", "\"nobody\"")) as &dyn Fn(&str) -> String)),
        ("deleted", None),
    ] {
        let data = tmp.path().join(case);
        run(sectl(&data).args(["--no-reconcile", "apply", "-f", &manifests()]), 0);
        let (ok, _) = run(sectl(&data).args(["audit", "verify"]), 0);
        assert!(ok.contains("intact"), "{ok}");
        tamper(&data, 3, edit);
        let (_, err) = run(sectl(&data).args(["audit", "verify"]), 1);
        assert!(err.contains("record 3"), "{case}: {err}");
        assert!(err.contains(if edit.is_some() { "edited" } else { "missing" }), "{case}: {err}");
        let (so, _) = run(sectl(&data).args(["audit", "verify", "-o", "json"]), 1);
        let v: Value = serde_json::from_str(&so).expect("json");
        assert_eq!(v["broken"]["seq"], 3, "{v}");
    }
}

#[test]
fn a_token_is_stored_only_as_its_hash() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("store");
    let (token, _) = run(
        sectl(&data).args(["user", "add", "bob", "--role", "operator", "--systems", "vm1", "--server-units", "SU1"]),
        0,
    );
    let token = token.trim().to_string();
    assert_eq!(token.len(), 64, "the token alone on stdout: {token:?}");
    let (list, _) = run(sectl(&data).args(["user", "list", "-o", "json"]), 0);
    assert!(list.contains("\"bob\"") && !list.contains(&token), "{list}");
    let hash = sectl::auth::users::hash_token(&token);
    let (mut token_seen, mut hash_seen) = (false, false);
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).expect("file");
            let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            token_seen |= has(&token);
            hash_seen |= has(&hash);
        }
    }
    assert!(!token_seen, "the token is in the data directory");
    assert!(hash_seen, "the hash is not in the data directory: the search would not have found the token either");
    // The token works against a server (the hash is what it is checked against).
    let s = Server::start(&data, &[]);
    let (who, _) = s.run(Some(&token), 0, &["whoami"]);
    assert!(who.starts_with("bob (operator)"), "{who}");
}
