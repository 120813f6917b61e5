//! End-to-end tests of the `sectl` binary on the example site in `manifests/` (and the
//! one-shot requests in `examples/`), each with its own fresh `--data-dir`.
//!
//! The controller may or may not run after `apply` (embedded mode reconciles until the
//! world is quiet; `--no-reconcile` skips that). Assertions here hold either way: they
//! never assume an empty or a particular status, and the tests that need the store
//! exactly as written use `--no-reconcile`.

use assert_cmd::Command;
use sectl::api::Kind;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifests() -> String {
    root().join("manifests").display().to_string()
}

fn examples() -> String {
    root().join("examples").display().to_string()
}

/// (kind, name) of every object in the files under `path`, as sectl decodes them.
fn objects_in(path: &str) -> Vec<(Kind, String)> {
    let (docs, errors) = sectl::manifest::read_inputs(&[path.to_string()]);
    assert!(errors.is_empty(), "{path}: {errors:?}");
    docs.iter().map(|d| (d.resource.kind(), d.resource.name().to_string())).collect()
}

fn names_of(kind: Kind, path: &str) -> BTreeSet<String> {
    objects_in(path).into_iter().filter(|(k, _)| *k == kind).map(|(_, n)| n).collect()
}

/// A fresh store for one test.
struct Site {
    dir: TempDir,
}

impl Site {
    fn new() -> Site {
        Site { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// `sectl --data-dir <fresh> ARGS`, run in a scratch folder, without the
    /// environment's SECTL_* settings.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sectl"));
        c.env_remove("SECTL_DATA_DIR")
            .env_remove("SECTL_SERVER")
            .env("RUST_BACKTRACE", "0")
            .current_dir(self.dir.path())
            .timeout(Duration::from_secs(300))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args);
        c
    }

    /// Runs and expects exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("runs");
        assert!(
            out.status.success(),
            "sectl {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Runs and expects exit `code`; returns (stdout, stderr).
    fn fails(&self, code: i32, args: &[&str]) -> (String, String) {
        let out = self.cmd(args).output().expect("runs");
        let (so, se) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert_eq!(out.status.code(), Some(code), "sectl {args:?}: want exit {code}\nstdout:\n{so}\nstderr:\n{se}");
        (so, se)
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("sectl {args:?}: not JSON ({e}):\n{text}"))
    }

    /// `get KIND -o json` items.
    fn items(&self, kind: &str) -> Vec<Value> {
        let v = self.json(&["get", kind, "-o", "json"]);
        assert_eq!(v["apiVersion"], "v1", "{v}");
        assert_eq!(v["kind"], "List", "{v}");
        v["items"].as_array().unwrap_or_else(|| panic!("items is not an array: {v}")).clone()
    }

    /// Applies the site; returns stdout.
    fn apply_site(&self, extra: &[&str]) -> String {
        let m = manifests();
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["apply", "-f", &m]);
        self.ok(&args)
    }

    /// Store metadata of every object of every kind: key -> (uid, resourceVersion, generation).
    fn metadata(&self) -> BTreeMap<String, (Value, Value, Value)> {
        let mut out = BTreeMap::new();
        for k in Kind::ALL {
            for o in self.items(k.plural()) {
                let m = &o["metadata"];
                out.insert(
                    format!("{}/{}", k.as_str(), m["name"].as_str().unwrap()),
                    (m["uid"].clone(), m["resourceVersion"].clone(), m["generation"].clone()),
                );
            }
        }
        out
    }
}

/// Copies a folder tree (for editing manifests in a test).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn apply_creates_every_object_and_reapply_changes_nothing() {
    let site = Site::new();
    let objs = objects_in(&manifests());
    let out = site.apply_site(&["--no-reconcile"]);
    for (k, n) in &objs {
        let line = format!("{}/{} created", k.as_str().to_lowercase(), n);
        assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
    }
    assert_eq!(out.lines().count(), objs.len(), "one line per object:\n{out}");

    let before = site.metadata();
    assert_eq!(before.len(), objs.len());
    for (key, (uid, rv, generation)) in &before {
        assert!(uid.is_string(), "{key}: no uid");
        assert!(rv.is_string(), "{key}: no resourceVersion");
        assert_eq!(generation, &Value::from(1), "{key}: a new object has generation 1");
    }

    let again = site.apply_site(&["--no-reconcile"]);
    assert_eq!(again.lines().count(), objs.len(), "{again}");
    for l in again.lines() {
        assert!(l.ends_with(" unchanged"), "re-apply changed something: {l:?}\n{again}");
    }
    assert_eq!(site.metadata(), before, "re-applying the same manifests must not write anything");
}

#[test]
fn apply_with_reconcile_then_reapply_is_unchanged() {
    // With the controller running after apply (the default): the site is accepted, and
    // re-applying it reports every object unchanged and moves no generation.
    let site = Site::new();
    let out = site.apply_site(&[]);
    let objs = objects_in(&manifests());
    assert_eq!(lines_with(&out, " created").len(), objs.len(), "{out}");
    let before = site.metadata();
    let again = site.apply_site(&[]);
    for l in again.lines() {
        assert!(l.ends_with(" unchanged"), "re-apply changed something: {l:?}\n{again}");
    }
    let after = site.metadata();
    assert_eq!(after.len(), before.len());
    for (key, (uid, _, generation)) in &before {
        let (uid2, _, gen2) = &after[key];
        assert_eq!((uid, generation), (uid2, gen2), "{key}: uid/generation moved on an unchanged re-apply");
    }
    // And the store is still in sync with the files.
    site.ok(&["diff", "-f", &manifests()]);
}

#[test]
fn get_vm_table_has_the_documented_columns() {
    let site = Site::new();
    site.apply_site(&["--no-reconcile"]);
    let out = site.ok(&["get", "vm"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "VM-NAME", "SU", "STATE", "MEMORY", "LM-COUNT", "AGE"], "{out}");
    let vms = names_of(Kind::VMDefinition, &manifests());
    let rows: BTreeSet<String> = lines.map(|l| l.split_whitespace().next().unwrap_or_default().to_string()).collect();
    assert_eq!(rows, vms, "one row per VMDefinition:\n{out}");
    let row = lines_with(&out, "vm12prod")[0].split_whitespace().collect::<Vec<_>>();
    assert_eq!(row[1], "VM12PROD", "{out}");
    assert!(row[2].contains("ABGSE501"), "vm12prod is on ABGSE501: {row:?}");
    assert_eq!(row[4], "2Gi", "{row:?}");
    assert_eq!(row[5], "0", "no live migration yet: {row:?}");

    // Kind spellings of API.md all work.
    for k in ["vm", "vmdefinition", "vmdefinitions", "VMDefinition", "se", "seservers", "mc", "suc"] {
        site.ok(&["get", k]);
    }
    let wide = site.ok(&["get", "vm", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("INDEX"), "{wide}");
    for k in ["se", "mc", "suc"] {
        assert!(site.ok(&["get", k, "-o", "wide"]).lines().count() > 1);
    }
}

#[test]
fn get_json_lists_and_single_objects() {
    let site = Site::new();
    site.apply_site(&["--no-reconcile"]);
    for k in [Kind::SEServer, Kind::ManagementCluster, Kind::SUCluster, Kind::VMDefinition] {
        let items = site.items(k.short_names()[1]);
        let want = names_of(k, &manifests());
        let have: BTreeSet<String> =
            items.iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(have, want, "{k}");
        for o in &items {
            assert_eq!(o["apiVersion"], "sectl.io/v1alpha1");
            assert_eq!(o["kind"], k.as_str());
        }
    }
    assert!(site.items("lm").is_empty(), "applying manifests/ must not create live migrations");
    assert!(site.items("rec").is_empty(), "applying manifests/ must not create recoveries");

    // One object as JSON is the object itself.
    let vm = site.json(&["get", "vm", "vm12prod", "-o", "json"]);
    assert_eq!(vm["kind"], "VMDefinition");
    assert_eq!(vm["spec"]["vmName"], "VM12PROD");

    // And as YAML.
    let text = site.ok(&["get", "vm", "vm12prod", "-o", "yaml"]);
    let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"));
    assert_eq!(y["apiVersion"].as_str(), Some("sectl.io/v1alpha1"), "{text}");
    assert_eq!(y["kind"].as_str(), Some("VMDefinition"), "{text}");
    assert_eq!(y["metadata"]["name"].as_str(), Some("vm12prod"), "{text}");
    assert!(y["metadata"]["uid"].as_str().is_some(), "{text}");
    assert_eq!(y["spec"]["vmName"].as_str(), Some("VM12PROD"), "{text}");
    assert_eq!(y["spec"]["serverUnit"].as_str(), Some("ABGSE501"), "{text}");
    assert_eq!(y["spec"]["vmIndex"].as_u64(), Some(12), "{text}");
    assert_eq!(y["spec"]["memoryMiB"].as_u64(), Some(2048), "{text}");
    let mns: Vec<&str> = y["spec"]["devices"].as_sequence().unwrap().iter().filter_map(|d| d["mn"].as_str()).collect();
    assert!(mns.contains(&"4683") && mns.contains(&"A000-A0FF"), "{text}");

    // `get -o yaml` output is itself a manifest sectl accepts (status is ignored).
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vm12prod.yaml");
    std::fs::write(&f, &text).unwrap();
    site.ok(&["diff", "-f", f.to_str().unwrap()]);

    let (_, err) = site.fails(1, &["get", "vm", "nosuchvm"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn describe_shows_spec_status_conditions_and_events() {
    let site = Site::new();
    site.apply_site(&[]);
    let out = site.ok(&["describe", "vm", "vm12prod"]);
    for want in [
        "vm12prod",
        "VMDefinition",
        "Spec:",
        "VM12PROD",
        "ABGSE501",
        "4683",
        "Status (simulated clock):",
        "Conditions:",
        "Events (simulated clock",
    ] {
        assert!(out.contains(want), "describe lacks {want:?}:\n{out}");
    }
    let out = site.ok(&["describe", "se", "se701"]);
    for want in ["se701", "SE700", "ABGSE701", "ABGSE70X1", "abgwhite"] {
        assert!(out.contains(want), "describe se lacks {want:?}:\n{out}");
    }
    assert!(site.ok(&["describe", "mc", "mc-augsburg"]).contains("crd-a"));
    assert!(site.ok(&["describe", "suc", "su390"]).contains("ABGSE501"));
    let (_, err) = site.fails(1, &["describe", "vm", "nosuchvm"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn diff_shows_what_an_apply_would_change() {
    let site = Site::new();
    let (out, _) = site.fails(1, &["diff", "-f", &manifests()]);
    assert!(out.contains("vmdefinition/vm12prod") && out.contains("+"), "a new site is all additions:\n{out}");

    site.apply_site(&[]);
    let out = site.ok(&["diff", "-f", &manifests()]);
    assert!(!out.contains("vm12prod"), "no change expected after apply:\n{out}");

    // Edit a copy: VM12PROD gets 3 GiB instead of 2.
    let copy = site.dir.path().join("edited");
    copy_tree(&root().join("manifests"), &copy);
    let f = copy.join("vms").join("abgse501.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    let at = text.find("name: vm12prod").expect("vm12prod in vms/abgse501.yaml");
    let rel = text[at..].find("memoryMiB: 2048").expect("vm12prod has memoryMiB: 2048");
    let edited = format!("{}memoryMiB: 3072{}", &text[..at + rel], &text[at + rel + "memoryMiB: 2048".len()..]);
    std::fs::write(&f, edited).unwrap();

    let (out, _) = site.fails(1, &["diff", "-f", copy.to_str().unwrap()]);
    assert!(out.contains("vmdefinition/vm12prod"), "{out}");
    let minus = out.lines().any(|l| l.starts_with('-') && l.contains("memoryMiB: 2048"));
    let plus = out.lines().any(|l| l.starts_with('+') && l.contains("memoryMiB: 3072"));
    assert!(minus && plus, "the changed line is shown:\n{out}");
    for other in ["dbprod01", "se701", "su390", "mc-augsburg"] {
        assert!(!out.contains(other), "only vm12prod changed, but {other} is shown:\n{out}");
    }
    // diff writes nothing.
    let vm = site.json(&["get", "vm", "vm12prod", "-o", "json"]);
    assert_eq!(vm["spec"]["memoryMiB"], 2048);

    // Applying the edit configures exactly that object and bumps its generation.
    let out = site.ok(&["--no-reconcile", "apply", "-f", copy.to_str().unwrap()]);
    assert_eq!(lines_with(&out, " configured"), ["vmdefinition/vm12prod configured"], "{out}");
    let vm = site.json(&["get", "vm", "vm12prod", "-o", "json"]);
    assert_eq!(vm["spec"]["memoryMiB"], 3072);
    assert_eq!(vm["metadata"]["generation"], 2);
}

#[test]
fn delete_by_name_and_by_file() {
    let site = Site::new();
    site.apply_site(&[]);
    let out = site.ok(&["delete", "vm", "vm12prod"]);
    assert!(out.contains("vm12prod deleted"), "{out}");
    let (_, err) = site.fails(1, &["get", "vm", "vm12prod"]);
    assert!(err.contains("not found"), "{err}");
    site.fails(1, &["delete", "vm", "vm12prod"]);
    site.ok(&["delete", "vm", "vm12prod", "--ignore-not-found"]);

    // delete -f: the VMs of one file, then the rest of the site.
    let f = root().join("manifests").join("vms").join("x86.yaml");
    let out = site.ok(&["delete", "-f", f.to_str().unwrap()]);
    for n in names_of(Kind::VMDefinition, f.to_str().unwrap()) {
        assert!(out.contains(&format!("vmdefinition/{n} deleted")), "{out}");
    }
    site.ok(&["delete", "-f", &manifests(), "--ignore-not-found"]);
    for k in Kind::ALL {
        assert!(site.items(k.plural()).is_empty(), "{k} left after delete -f manifests/");
    }
}

#[test]
fn a_bad_file_writes_nothing() {
    let site = Site::new();
    let copy = site.dir.path().join("broken");
    copy_tree(&root().join("manifests"), &copy);
    std::fs::write(
        copy.join("vms").join("zz-broken.yaml"),
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: broken}\nspec:\n  vmName: BROKEN\n  serverUnit: ABGSE501\n  memoryMiB: lots\n",
    )
    .unwrap();
    let (_, err) = site.fails(1, &["apply", "-f", copy.to_str().unwrap()]);
    assert!(
        err.contains("zz-broken.yaml:7:") && err.contains("spec.memoryMiB"),
        "error names file, line and field:\n{err}"
    );
    for k in Kind::ALL {
        assert!(site.items(k.plural()).is_empty(), "{k} written although a file was invalid");
    }
}

#[test]
fn validate_needs_no_store() {
    let site = Site::new();
    let out = site.ok(&["validate", "-f", &manifests(), "-f", &examples()]);
    let n = objects_in(&manifests()).len() + objects_in(&examples()).len();
    assert!(out.contains(&format!("{n} object(s)")), "{out}");
    assert!(!site.data_dir().exists(), "validate created the store");
    assert!(!site.dir.path().join(".sectl").exists(), "validate created ./.sectl");

    // Also without any --data-dir at all, from a read-only place.
    let mut c = Command::new(env!("CARGO_BIN_EXE_sectl"));
    c.env_remove("SECTL_DATA_DIR").env_remove("SECTL_SERVER").current_dir(site.dir.path());
    c.args(["validate", "-f", &manifests()]).assert().success();
    assert!(!site.dir.path().join(".sectl").exists(), "validate created ./.sectl");

    // Errors: file, line, column, field; exit 1.
    let bad = site.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {name: x}\nspec: {serverUnits: [A, A]}\n",
    )
    .unwrap();
    let (_, err) = site.fails(1, &["validate", "-f", bad.to_str().unwrap()]);
    assert!(err.contains("bad.yaml:4:") && err.contains("serverUnits"), "{err}");
}

#[test]
fn dry_run_of_the_examples_writes_nothing() {
    let site = Site::new();
    site.apply_site(&[]);
    let out = site.ok(&["apply", "--dry-run", "-f", &examples()]);
    for (k, n) in objects_in(&examples()) {
        let line = format!("{}/{} created (dry run)", k.as_str().to_lowercase(), n);
        assert!(out.lines().any(|l| l == line), "missing {line:?}:\n{out}");
    }
    assert!(site.items("lm").is_empty());
    assert!(site.items("rec").is_empty());
}

#[test]
fn schema_out_writes_the_committed_schemas() {
    let site = Site::new();
    let out = site.dir.path().join("schemas-out");
    site.ok(&["schema", "--out", out.to_str().unwrap()]);
    let list = |d: &Path| -> BTreeSet<String> {
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };
    let committed = root().join("schemas");
    assert_eq!(list(&out), list(&committed));
    for f in list(&out) {
        let a = std::fs::read_to_string(out.join(&f)).unwrap();
        let b = std::fs::read_to_string(committed.join(&f)).unwrap();
        assert!(a == b, "schemas/{f} is stale: run `cargo run -- schema --out schemas`");
    }
    assert!(!site.data_dir().exists(), "schema created the store");
}

#[test]
fn events_work_on_an_empty_log() {
    let site = Site::new();
    site.ok(&["events"]);
    let v = site.json(&["events", "-o", "json"]);
    assert_eq!(v, Value::Array(vec![]), "a fresh store has no events");
    site.ok(&["events", "vm/vm12prod"]);
    let out = site.ok(&["events", "ack"]);
    assert!(out.contains('0'), "{out}");
    let (_, err) = site.fails(1, &["events", "frobnicator/x"]);
    assert!(err.contains("unknown kind"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let site = Site::new();
    for args in [
        &["get", "vm", "--bogus-flag"][..],
        &[],
        &["frobnicate"],
        &["apply"],
        &["get"],
        &["get", "vm", "-o", "xml"],
        &["describe"],
    ] {
        let (_, err) = site.fails(2, args);
        assert!(!err.is_empty(), "sectl {args:?}: no message");
    }
}

#[test]
fn unknown_kind_exits_1_with_a_clear_message() {
    let site = Site::new();
    for args in [
        &["get", "frobnicator"][..],
        &["get", "frobnicator", "x"],
        &["describe", "frobnicator", "x"],
        &["delete", "frobnicator", "x"],
    ] {
        let (_, err) = site.fails(1, args);
        assert!(err.contains("unknown kind") && err.contains("frobnicator"), "sectl {args:?}: {err}");
        assert!(err.contains("vm") && err.contains("VMDefinition"), "the message lists the kinds: {err}");
    }
}

/// Issue 12: maintenance mode and the Cluster Manager's resources as `sim`, `get` and
/// `describe` show them.
#[test]
fn maintenance_mode_and_cluster_manager_resources_on_the_command_line() {
    let site = Site::new();
    site.apply_site(&[]);
    let out = site.ok(&["sim", "maintenance", "on", "ABGSE70X2"]);
    assert!(out.contains("SU ABGSE70X2 switched to maintenance mode"), "{out}");
    assert!(out.contains("SUCluster/sux86: SU x86 cluster sux86: NORMAL -> ERROR"), "{out}");
    let out = site.ok(&["get", "suc", "sux86", "-o", "wide"]);
    assert!(out.contains("ERROR") && out.contains("SU ABGSE70X2 is in maintenance mode: LM is not possible"), "{out}");
    let out = site.ok(&["describe", "se", "se701"]);
    assert!(out.contains("MAINTENANCE"), "{out}");
    let (_, err) = site.fails(1, &["sim", "maintenance", "on", "ABGSE701"]);
    assert!(err.contains("maintenance mode exists for SU x86 only"), "{err}");
    site.ok(&["sim", "link", "down", "mc-augsburg"]);
    let out = site.ok(&["describe", "mc", "mc-augsburg"]);
    for want in ["clusterManagerResources:", "MCNPR", "FAILED", "ClusterManagerResources", "Restricted"] {
        assert!(out.contains(want), "describe mc lacks {want:?}:\n{out}");
    }
}
