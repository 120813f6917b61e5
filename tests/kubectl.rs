//! Issue 10, end to end with the real `kubectl` (it must be installed: a test fails
//! with a message saying so) against a real `sectl serve` over HTTPS, using only the
//! kubeconfig `serve` writes into its data folder.
//!
//! Every wait is bounded; the server and every watcher are killed on drop.

mod common;

use common::SITE;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The longest one kubectl call or wait may take.
const LIMIT: Duration = Duration::from_secs(30);

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `sectl serve` on 127.0.0.1:0 with SITE applied, and a private HOME for kubectl.
struct Kube {
    _server: Guard,
    _stdout: mpsc::Receiver<String>,
    tmp: tempfile::TempDir,
}

fn kubectl_path() -> PathBuf {
    let out = Command::new("sh").args(["-c", "command -v kubectl"]).output().expect("run sh");
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !p.is_empty(),
        "kubectl is not installed: install kubectl (e.g. apt-get install kubectl) to run these tests"
    );
    PathBuf::from(p)
}

impl Kube {
    fn start() -> Kube {
        kubectl_path();
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        std::fs::write(tmp.path().join("site.yaml"), SITE).expect("write site");
        common::sectl_in(&data).args(["apply", "-f"]).arg(tmp.path().join("site.yaml")).assert().success();
        let mut child = common::sectl()
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("SECTL_SERVER")
            .env_remove("SECTL_DATA_DIR")
            .env_remove("SECTL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sectl serve");
        let stdout = child.stdout.take().expect("stdout");
        let guard = Guard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let first = rx.recv_timeout(LIMIT).expect("serve prints its address");
        assert!(first.starts_with("sectl serve: listening on https://"), "{first}");
        std::fs::create_dir_all(tmp.path().join("home")).expect("home");
        Kube { _server: guard, _stdout: rx, tmp }
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_path());
        c.args(args)
            .env("KUBECONFIG", self.data().join("kubeconfig"))
            .env("HOME", self.tmp.path().join("home"))
            .env_remove("KUBE_EDITOR")
            .stdin(Stdio::null());
        c
    }

    /// Runs kubectl: (exit code, stdout, stderr), bounded by LIMIT.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(self.cmd(args))
    }

    fn run_with(&self, mut c: Command) -> (i32, String, String) {
        let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn kubectl");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = rx.recv_timeout(LIMIT).expect("kubectl finished in time").expect("kubectl output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Runs kubectl; it must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl -o json")
    }

    fn names(&self, args: &[&str]) -> Vec<String> {
        let mut a = vec!["get"];
        a.extend(args);
        a.extend(["-o", "jsonpath={.items[*].metadata.name}"]);
        self.ok(&a).split_whitespace().map(str::to_string).collect()
    }
}

/// The server's URL, from the kubeconfig it wrote.
fn server_url(k: &Kube) -> String {
    let v: Value =
        serde_json::from_slice(&std::fs::read(k.data().join("kubeconfig")).expect("kubeconfig")).expect("json");
    v["clusters"][0]["cluster"]["server"].as_str().expect("server").to_string()
}

fn vm_yaml(name: &str, labels: &str, memory: u64) -> String {
    format!(
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n  vmName: {}\n  serverUnit: ABGSE501\n  memoryMiB: {memory}\n",
        name.to_uppercase()
    )
}

#[test]
fn discovery_get_selectors_and_explain() {
    let k = Kube::start();
    let res = k.ok(&["api-resources"]);
    for (plural, short) in [
        ("seservers", "se"),
        ("managementclusters", "mc"),
        ("suclusters", "suc"),
        ("vmdefinitions", "vm"),
        ("livemigrations", "lm"),
        ("vmrecoveries", "rec"),
    ] {
        let line = res.lines().find(|l| l.starts_with(plural)).unwrap_or_else(|| panic!("{plural} in\n{res}"));
        assert!(line.split_whitespace().any(|w| w == short), "{line}");
        assert!(line.contains("false"), "cluster-scoped: {line}");
    }
    let p = k.file("more.yaml", &(vm_yaml("vm2", "app: test", 512) + "---\n" + &vm_yaml("vm3", "", 512)));
    k.ok(&["apply", "-f", p.to_str().expect("utf-8")]);
    let table = k.ok(&["get", "vm"]);
    assert!(table.starts_with("NAME"), "{table}");
    for n in ["vm12prod", "vm2", "vm3"] {
        assert!(table.contains(n), "{table}");
    }
    // The same columns as `sectl get` (a Table); -o wide adds the priority-1 ones.
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "VM-NAME", "SU", "STATE", "MEMORY", "LM-COUNT", "AGE"], "{table}");
    let row = table.lines().find(|l| l.starts_with("vm12prod")).unwrap_or("");
    assert!(row.contains("VM12PROD") && row.contains("2Gi"), "{table}");
    let wide = k.ok(&["get", "vm", "-o", "wide"]);
    assert!(wide.lines().next().is_some_and(|h| h.contains("CPUS") && h.contains("PERSISTENT")), "{wide}");
    let sectl = common::sectl()
        .arg("--server")
        .arg(server_url(&k))
        .arg("--data-dir")
        .arg(k.data())
        .args(["get", "vm"])
        .env_remove("SECTL_TOKEN")
        .output()
        .expect("sectl get");
    let sectl_out = String::from_utf8_lossy(&sectl.stdout);
    assert_eq!(sectl_out.lines().next().map(|l| l.split_whitespace().collect::<Vec<_>>()), Some(header.clone()));
    let y = k.ok(&["get", "vm", "vm12prod", "-o", "yaml"]);
    assert!(y.contains("kind: VMDefinition") && y.contains("memoryMiB: 2048"), "{y}");
    assert_eq!(k.ok(&["get", "vm", "vm12prod", "-o", "jsonpath={.spec.memoryMiB}"]), "2048");
    // Selectors select (they were ignored before: every VM came back).
    assert_eq!(k.names(&["vm", "-l", "app=prod"]), ["vm12prod"]);
    assert_eq!(k.names(&["vm", "-l", "app in (prod,test)"]), ["vm12prod", "vm2"]);
    assert_eq!(k.names(&["vm", "-l", "app!=prod"]), ["vm2", "vm3"]);
    assert_eq!(k.names(&["vm", "-l", "!app"]), ["vm3"]);
    assert_eq!(k.names(&["vm", "-l", "app"]), ["vm12prod", "vm2"]);
    assert_eq!(k.names(&["vm", "--field-selector", "metadata.name=vm3"]), ["vm3"]);
    assert_eq!(
        k.names(&["vm", "--field-selector", "metadata.name!=vm3,spec.serverUnit=ABGSE501"]),
        ["vm12prod", "vm2"]
    );
    let (code, _, err) = k.run(&["get", "vm", "--field-selector", "spec.memoryMiB=512"]);
    assert!(code != 0 && err.contains("not supported"), "an unsupported field is refused: {err}");
    // The list is typed.
    let list = k.json(&["get", "vm"]);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3), "{list}");
    let out = k.ok(&["explain", "vm.spec.devices"]);
    assert!(out.contains("KIND:") && out.contains("VMDefinition") && out.contains("devices"), "{out}");
}

#[test]
fn writes_dry_runs_patches_and_deletes() {
    let k = Kube::start();
    let f = k.file("vm2.yaml", &vm_yaml("vm2", "app: test", 512));
    let fs = f.to_str().expect("utf-8");
    // Dry runs write nothing (they created and deleted for real before).
    let out = k.ok(&["create", "--dry-run=server", "-f", fs]);
    assert!(out.contains("server dry run"), "{out}");
    let (code, _, err) = k.run(&["get", "vm", "vm2"]);
    assert!(code != 0 && err.contains("NotFound"), "{err}");
    // Client-side apply: create, then update (a merge patch), and diff between.
    assert!(k.ok(&["apply", "-f", fs]).contains("created"));
    let f = k.file("vm2.yaml", &vm_yaml("vm2", "app: test", 1024));
    let fs = f.to_str().expect("utf-8");
    let (code, diff, err) = k.run(&["diff", "-f", fs]);
    assert_eq!(code, 1, "diff finds a difference: {diff}{err}");
    assert!(diff.contains("-  memoryMiB: 512") && diff.contains("+  memoryMiB: 1024"), "{diff}");
    assert!(k.ok(&["apply", "-f", fs]).contains("configured"));
    assert_eq!(k.ok(&["get", "vm", "vm2", "-o", "jsonpath={.spec.memoryMiB}"]), "1024");
    assert_eq!(k.run(&["diff", "-f", fs]).0, 0, "nothing left to diff");
    // patch, label, annotate.
    k.ok(&["patch", "vm", "vm2", "--type", "merge", "-p", r#"{"spec":{"memoryMiB":768}}"#]);
    assert_eq!(k.ok(&["get", "vm", "vm2", "-o", "jsonpath={.spec.memoryMiB}"]), "768");
    k.ok(&["patch", "vm", "vm2", "--type", "json", "-p", r#"[{"op":"replace","path":"/spec/memoryMiB","value":640}]"#]);
    assert_eq!(k.ok(&["get", "vm", "vm2", "-o", "jsonpath={.spec.memoryMiB}"]), "640");
    let (code, _, err) = k.run(&["patch", "vm", "vm2", "--type", "merge", "-p", r#"{"spec":{"memoryMiB":-1}}"#]);
    assert!(code != 0 && err.contains("memoryMiB"), "an invalid patch is refused with its field: {err}");
    k.ok(&["label", "vm", "vm2", "tier=db"]);
    k.ok(&["annotate", "vm", "vm2", "note=hello"]);
    let o = k.json(&["get", "vm", "vm2"]);
    assert_eq!(o["metadata"]["labels"]["tier"], "db", "{o}");
    assert_eq!(o["metadata"]["annotations"]["note"], "hello", "{o}");
    // edit, with an editor that is a script.
    let editor = k.file("editor.sh", "#!/bin/sh\nsed -i 's/memoryMiB: 640/memoryMiB: 900/' \"$1\"\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut c = k.cmd(&["edit", "vm", "vm2"]);
    c.env("EDITOR", &editor);
    let (code, out, err) = k.run_with(c);
    assert_eq!(code, 0, "edit: {out}{err}");
    assert_eq!(k.ok(&["get", "vm", "vm2", "-o", "jsonpath={.spec.memoryMiB}"]), "900");
    // Deletes: a dry run leaves the object; -l deletes only what it selects.
    assert!(k.ok(&["delete", "vm", "vm2", "--dry-run=server"]).contains("server dry run"));
    assert_eq!(k.names(&["vm"]), ["vm12prod", "vm2"]);
    k.ok(&["delete", "vm", "-l", "tier=db"]);
    assert_eq!(k.names(&["vm"]), ["vm12prod"]);
    k.ok(&["apply", "-f", fs]);
    k.ok(&["delete", "vm", "vm2"]);
    assert_eq!(k.names(&["vm"]), ["vm12prod"]);
}

#[test]
fn watch_one_object_and_wait_for_its_condition() {
    let k = Kube::start();
    let f = k.file("vm2.yaml", &vm_yaml("vm2", "", 512));
    k.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    // get -w of one object streams that object only.
    let mut c = k.cmd(&["get", "vm", "vm2", "-w", "-o", "jsonpath={.metadata.name} {.spec.memoryMiB}{\"\\n\"}"]);
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn kubectl -w");
    let stdout = child.stdout.take().expect("stdout");
    let _w = Guard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    assert_eq!(rx.recv_timeout(LIMIT).expect("current state"), "vm2 512");
    k.ok(&["patch", "vm", "vm12prod", "--type", "merge", "-p", r#"{"spec":{"memoryMiB":3072}}"#]);
    k.ok(&["patch", "vm", "vm2", "--type", "merge", "-p", r#"{"spec":{"memoryMiB":700}}"#]);
    loop {
        let l = rx.recv_timeout(LIMIT).expect("the change of vm2");
        assert!(l.starts_with("vm2 "), "only vm2 is watched: {l}");
        if l == "vm2 700" {
            break;
        }
    }
    // wait --for=condition names the right object: vmbig (more memory than the SU
    // has, so never Ready) times out although vm12prod is Ready.
    let big = "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: vmbig}\nspec:\n  vmName: VMBIG\n  serverUnit: ABGSE501\n  state: RUNNING\n  memoryMiB: 60000\n";
    let f = k.file("big.yaml", big);
    k.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    let out = k.ok(&["wait", "--for=condition=Ready", "vm/vm12prod", "--timeout=20s"]);
    assert!(out.contains("vm12prod condition met"), "{out}");
    let (code, out, err) = k.run(&["wait", "--for=condition=Ready", "vm/vmbig", "--timeout=3s"]);
    assert_ne!(code, 0, "vmbig is not Ready: {out}{err}");
    assert!(!out.contains("condition met"), "{out}");
    let out = k.ok(&["wait", "--for=condition=Ready=false", "vm/vmbig", "--timeout=20s"]);
    assert!(out.contains("vmbig condition met"), "{out}");
}

#[test]
fn the_kubeconfig_is_private_and_names_the_server() {
    let k = Kube::start();
    let p: &Path = &k.data().join("kubeconfig");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(p).expect("kubeconfig").permissions().mode() & 0o777, 0o600);
    }
    let v = k.json(&["config", "view", "--raw"]);
    assert!(v["clusters"][0]["cluster"]["server"].as_str().is_some_and(|s| s.starts_with("https://127.0.0.1:")), "{v}");
    assert!(v["clusters"][0]["cluster"]["certificate-authority-data"].is_string(), "{v}");
    let token = std::fs::read_to_string(k.data().join("token")).expect("token");
    assert_eq!(v["users"][0]["user"]["token"], token.trim());
}

/// `kubectl get --raw` (and friends) for what kubectl's verbs do not reach.
#[test]
fn raw_api_watch_dry_runs_errors_and_delete_collection() {
    let k = Kube::start();
    let api = "/apis/sectl.io/v1alpha1";
    // A watch from 0 starts with the current state and ends at timeoutSeconds.
    let start = std::time::Instant::now();
    let out = k.ok(&["get", "--raw", &format!("{api}/vmdefinitions?watch=true&resourceVersion=0&timeoutSeconds=1")]);
    let evs: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("event")).collect();
    assert_eq!(evs.len(), 1, "{out}");
    assert_eq!(
        (evs[0]["type"].as_str(), evs[0]["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("vm12prod"))
    );
    assert!(start.elapsed() < Duration::from_secs(10), "timeoutSeconds ended the stream");
    // Bookmarks when asked for.
    let out = k.ok(&["get", "--raw", &format!("{api}/seservers?watch=true&allowWatchBookmarks=true&timeoutSeconds=4")]);
    assert!(out.lines().any(|l| l.contains("\"BOOKMARK\"")), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("\"ADDED\"")).count(), 2, "{out}");
    // A label selector on a watch.
    let out =
        k.ok(&["get", "--raw", &format!("{api}/vmdefinitions?watch=1&labelSelector=app%3Dnone&timeoutSeconds=1")]);
    assert!(out.trim().is_empty(), "nothing matches: {out}");
    // PUT with dryRun=All: validated, nothing written.
    let mut vm = k.json(&["get", "vm", "vm12prod"]);
    vm["spec"]["memoryMiB"] = 4096.into();
    let f = k.file("put.json", &vm.to_string());
    let out = k.ok(&[
        "replace",
        "--raw",
        &format!("{api}/vmdefinitions/vm12prod?dryRun=All"),
        "-f",
        f.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("4096"), "the would-be object: {out}");
    assert_eq!(k.ok(&["get", "vm", "vm12prod", "-o", "jsonpath={.spec.memoryMiB}"]), "2048");
    let (code, _, err) = k.run(&[
        "replace",
        "--raw",
        &format!("{api}/vmdefinitions/vm12prod?dryRun=Some"),
        "-f",
        f.to_str().expect("utf-8"),
    ]);
    assert!(code != 0 && err.contains("dryRun"), "{err}");
    // PATCH with --dry-run=server.
    let out = k.ok(&[
        "patch",
        "vm",
        "vm12prod",
        "--dry-run=server",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"memoryMiB":1024}}"#,
        "-o",
        "jsonpath={.spec.memoryMiB}",
    ]);
    assert_eq!(out, "1024");
    assert_eq!(k.ok(&["get", "vm", "vm12prod", "-o", "jsonpath={.spec.memoryMiB}"]), "2048");
    // Errors are a Status with the field path.
    let bad = k.file("bad.yaml", &vm_yaml("vmbad", "", 0).replace("memoryMiB: 0", "memoryMiB: -5"));
    let (code, _, err) = k.run(&["create", "-f", bad.to_str().expect("utf-8")]);
    assert!(code != 0 && err.contains("memoryMiB") && err.contains("vmdefinitions"), "{err}");
    // Delete-collection takes the selector (it deleted everything before).
    k.ok(&[
        "apply",
        "-f",
        k.file("two.yaml", &(vm_yaml("vm2", "app: test", 512) + "---\n" + &vm_yaml("vm3", "app: test", 512)))
            .to_str()
            .expect("utf-8"),
    ]);
    let out = k.ok(&["delete", "--raw", &format!("{api}/vmdefinitions?labelSelector=app%3Dtest")]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["kind"], "VMDefinitionList", "{v}");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(k.names(&["vm"]), ["vm12prod"]);
}

/// The managers of an object's managedFields, as (manager, operation).
fn managers(o: &Value) -> Vec<(String, String)> {
    o["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (e["manager"].as_str().unwrap_or("").to_string(), e["operation"].as_str().unwrap_or("").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn server_side_apply_owns_fields_conflicts_and_forces() {
    let k = Kube::start();
    let f = k.file("vm2.yaml", &vm_yaml("vm2", "app: test", 512));
    let fs = f.to_str().expect("utf-8");
    // Create through apply, then update through apply.
    let out = k.ok(&["apply", "--server-side", "-f", fs]);
    assert!(out.contains("serverside-applied"), "{out}");
    k.file("vm2.yaml", &vm_yaml("vm2", "app: test", 1024));
    k.ok(&["apply", "--server-side", "-f", fs]);
    assert_eq!(k.ok(&["get", "vm", "vm2", "-o", "jsonpath={.spec.memoryMiB}"]), "1024");
    let o = k.json(&["get", "vm", "vm2", "--show-managed-fields"]);
    assert_eq!(managers(&o), [("kubectl".to_string(), "Apply".to_string())], "{o}");
    let fields = &o["metadata"]["managedFields"][0];
    assert_eq!(fields["fieldsType"], "FieldsV1");
    assert_eq!(fields["apiVersion"], "sectl.io/v1alpha1");
    assert!(fields["fieldsV1"]["f:spec"]["f:memoryMiB"].is_object(), "{fields}");
    assert!(fields["fieldsV1"]["f:metadata"]["f:labels"]["f:app"].is_object(), "{fields}");
    // Hidden by default, shown with --show-managed-fields.
    assert!(!k.ok(&["get", "vm", "vm2", "-o", "yaml"]).contains("managedFields"));
    let y = k.ok(&["get", "vm", "vm2", "-o", "yaml", "--show-managed-fields"]);
    assert!(y.contains("managedFields:") && y.contains("manager: kubectl") && y.contains("f:memoryMiB"), "{y}");
    // A second manager changing a field the first owns: 409, printed by kubectl.
    let other = k.file("other.yaml", &vm_yaml("vm2", "app: test", 2048));
    let os = other.to_str().expect("utf-8");
    let (code, out, err) = k.run(&["apply", "--server-side", "--field-manager", "ops", "-f", os]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("conflict") && err.contains(r#"conflict with "kubectl""#) && err.contains(".spec.memoryMiB"),
        "{err}"
    );
    assert_eq!(k.ok(&["get", "vm", "vm2", "-o", "jsonpath={.spec.memoryMiB}"]), "1024", "nothing written");
    // The same value is shared, no conflict.
    let same = k.file("same.yaml", &vm_yaml("vm2", "app: test", 1024));
    k.ok(&["apply", "--server-side", "--field-manager", "ops", "-f", same.to_str().expect("utf-8")]);
    // --force-conflicts takes the field over.
    k.ok(&["apply", "--server-side", "--field-manager", "ops", "--force-conflicts", "-f", os]);
    assert_eq!(k.ok(&["get", "vm", "vm2", "-o", "jsonpath={.spec.memoryMiB}"]), "2048");
    let o = k.json(&["get", "vm", "vm2", "--show-managed-fields"]);
    let mf = o["metadata"]["managedFields"].as_array().expect("entries").clone();
    let owner_of_memory: Vec<&str> = mf
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"]["f:memoryMiB"].is_object())
        .map(|e| e["manager"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(owner_of_memory, ["ops"], "{o}");
    // A merge patch records an Update entry for kubectl-patch.
    k.ok(&["patch", "vm", "vm2", "--type", "merge", "-p", r#"{"spec":{"memoryMiB":768}}"#]);
    let o = k.json(&["get", "vm", "vm2", "--show-managed-fields"]);
    assert!(managers(&o).contains(&("kubectl-patch".to_string(), "Update".to_string())), "{o}");
    // Now "ops" conflicts with the patcher, named with its API version.
    let (code, _, err) = k.run(&["apply", "--server-side", "--field-manager", "ops", "-f", os]);
    assert!(code != 0 && err.contains(r#"conflict with "kubectl-patch" using sectl.io/v1alpha1"#), "{err}");
    // A server dry run of a forced apply writes nothing.
    k.ok(&["apply", "--server-side", "--field-manager", "ops", "--force-conflicts", "--dry-run=server", "-f", os]);
    assert_eq!(k.ok(&["get", "vm", "vm2", "-o", "jsonpath={.spec.memoryMiB}"]), "768");
}

#[test]
fn server_side_apply_raw_api_rules() {
    let k = Kube::start();
    let url = server_url(&k);
    let kc: Value =
        serde_json::from_slice(&std::fs::read(k.data().join("kubeconfig")).expect("kubeconfig")).expect("json");
    let token = kc["users"][0]["user"]["token"].as_str().expect("token").to_string();
    let cfg = sectl::server::tls::client_config(&k.data(), &[]).expect("trust the data dir's CA");
    let agent = ureq::AgentBuilder::new().timeout(LIMIT).tls_config(std::sync::Arc::new(cfg)).build();
    let path = format!("{url}/apis/sectl.io/v1alpha1/vmdefinitions/vm9");
    let body = vm_yaml("vm9", "", 512);
    let send = |q: &str, ct: &str, body: &str| -> (u16, Value) {
        let r = agent
            .request("PATCH", &format!("{path}{q}"))
            .set("Authorization", &format!("Bearer {}", token.trim()))
            .set("Content-Type", ct)
            .send_string(body);
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        (resp.status(), serde_json::from_str(&resp.into_string().unwrap_or_default()).unwrap_or(Value::Null))
    };
    // fieldManager is required for apply.
    let (code, v) = send("", "application/apply-patch+yaml", &body);
    assert_eq!(code, 400, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("fieldManager is required"), "{v}");
    // A server dry run of a create writes nothing.
    let (code, v) = send("?fieldManager=a&dryRun=All", "application/apply-patch+yaml", &body);
    assert_eq!(code, 201, "{v}");
    assert_eq!(send("?fieldManager=a", "application/merge-patch+json", "{}").0, 404);
    let (code, _) = send("?fieldManager=a", "application/apply-patch+yaml", &body);
    assert_eq!(code, 201);
    // Conflict: a Status with causes naming field and manager.
    let (code, v) = send("?fieldManager=b", "application/apply-patch+yaml", &vm_yaml("vm9", "", 640));
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["reason"], "Conflict");
    assert_eq!(v["message"], r#"Apply failed with 1 conflict: conflict with "a": .spec.memoryMiB"#, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], ".spec.memoryMiB", "{v}");
    assert_eq!(v["details"]["causes"][0]["reason"], "FieldManagerConflict", "{v}");
    // force is for apply only; a bad force value and nulls are refused.
    assert_eq!(send("?force=true", "application/merge-patch+json", "{}").0, 400);
    assert_eq!(send("?fieldManager=b&force=maybe", "application/apply-patch+yaml", &body).0, 400);
    let with_null = body.replace("memoryMiB: 512", "memoryMiB: null");
    let (code, v) = send("?fieldManager=a", "application/apply-patch+yaml", &with_null);
    assert!(code == 400 && v["message"].as_str().unwrap_or("").contains("spec.memoryMiB"), "{v}");
    // A field "a" stops applying (labels here) is removed: nobody else owns it.
    let labelled = vm_yaml("vm9", "tier: db", 512);
    assert_eq!(send("?fieldManager=a", "application/apply-patch+yaml", &labelled).0, 200);
    let (code, v) = send("?fieldManager=a", "application/apply-patch+yaml", &body);
    assert_eq!(code, 200, "{v}");
    assert!(v["metadata"]["labels"].get("tier").is_none(), "{v}");
    // An invalid result is refused with its field, nothing written.
    let (code, v) = send("?fieldManager=a", "application/apply-patch+yaml", &vm_yaml("vm9", "", 0));
    assert!(code == 422 && v["message"].as_str().unwrap_or("").contains("memoryMiB"), "{v}");
    // Status through apply: the manager's entry records subresource status.
    let status = "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: vm9}\nstatus: {state: WAIT}\n";
    let spath = format!("{path}/status?fieldManager=st");
    let r = agent
        .request("PATCH", &spath)
        .set("Authorization", &format!("Bearer {}", token.trim()))
        .set("Content-Type", "application/apply-patch+yaml")
        .send_string(status);
    let v: Value = match r {
        Ok(r) => serde_json::from_str(&r.into_string().expect("body")).expect("json"),
        Err(ureq::Error::Status(c, r)) => panic!("{c}: {}", r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    };
    let e = v["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == "st"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(e["subresource"], "status", "{v}");
    assert!(e["fieldsV1"]["f:status"]["f:state"].is_object(), "{v}");
    // Aggregated discovery, when asked for first (as kubectl does).
    let r = agent
        .get(&format!("{url}/apis"))
        .set("Authorization", &format!("Bearer {}", token.trim()))
        .set("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
        .call()
        .expect("aggregated discovery");
    assert_eq!(r.header("Content-Type"), Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"));
    let v: Value = serde_json::from_str(&r.into_string().expect("body")).expect("json");
    assert_eq!(v["kind"], "APIGroupDiscoveryList");
    let res = v["items"][0]["versions"][0]["resources"].as_array().expect("resources");
    assert!(res.iter().any(|r| r["resource"] == "vmdefinitions" && r["shortNames"][0] == "vm"), "{v}");
}
