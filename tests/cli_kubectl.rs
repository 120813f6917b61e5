//! The CLI a kubectl user expects (issue 11), end to end on the real binary with a
//! fresh store per test: kubectl's ways of naming objects, selectors, output forms,
//! explain, edit (with EDITOR set to a script), label/annotate/patch, completion
//! (parsed by bash), dry runs, wait in embedded mode, apply warnings and outcomes,
//! script forms of the report verbs, and a closed pipe.

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;
use tempfile::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn path(rel: &str) -> String {
    root().join(rel).display().to_string()
}

struct Site {
    dir: TempDir,
}

impl Site {
    fn new() -> Site {
        Site { dir: tempfile::tempdir().expect("tempdir") }
    }

    /// A fresh store with the example site applied.
    fn applied() -> Site {
        let s = Site::new();
        s.ok(&["apply", "-f", &path("manifests")]);
        s
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sectl"));
        c.env_remove("SECTL_DATA_DIR")
            .env_remove("SECTL_SERVER")
            .env_remove("SECTL_EDITOR")
            .env("RUST_BACKTRACE", "0")
            .current_dir(self.dir.path())
            .arg("--data-dir")
            .arg(self.dir.path().join("store"))
            .args(args);
        c
    }

    /// Runs, expects exit `code`; returns (stdout, stderr).
    fn run(&self, code: i32, args: &[&str]) -> (String, String) {
        let out = self.cmd(args).output().expect("runs");
        let (so, se) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert_eq!(out.status.code(), Some(code), "sectl {args:?}: want exit {code}\nstdout:\n{so}\nstderr:\n{se}");
        assert!(!se.contains("panicked"), "sectl {args:?} panicked:\n{se}");
        (so, se)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(0, args).0
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("sectl {args:?}: not JSON ({e}):\n{text}"))
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }

    /// An executable shell script.
    fn script(&self, name: &str, body: &str) -> String {
        let p = self.write(name, &format!("#!/bin/sh\nset -e\n{body}\n"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn kubectl_ways_of_naming_objects() {
    let s = Site::applied();
    let all_vms = names(&s.json(&["get", "vm", "-o", "json"]));
    assert!(all_vms.len() > 5);
    for kind in ["vms", "vmdefinitions", "vmdefinitions.sectl.io", "VMDefinition", "vmdefinition.v1alpha1.sectl.io"] {
        assert_eq!(names(&s.json(&["get", kind, "-o", "json"])), all_vms, "get {kind}");
    }
    // Several names, KIND/NAME, mixed kinds.
    assert_eq!(names(&s.json(&["get", "vm", "vm12prod", "app01", "-o", "json"])), ["vm12prod", "app01"]);
    let one = s.json(&["get", "vm/vm12prod", "-o", "json"]);
    assert_eq!(one["metadata"]["name"], "vm12prod", "one name prints the object itself");
    assert_eq!(
        lines(&s.ok(&["get", "vm/vm12prod", "suc/su390", "-o", "name"])),
        ["vmdefinition/vm12prod", "sucluster/su390"]
    );
    // get all: every kind, names qualified as kubectl does.
    let all = s.ok(&["get", "all"]);
    for q in ["seserver/se701", "managementcluster/mc-augsburg", "sucluster/su390", "vmdefinition/vm12prod"] {
        assert!(all.contains(q), "get all lacks {q}:\n{all}");
    }
    // A missing name: the others print, exit 1, the missing one named.
    let (out, err) = s.run(1, &["get", "vm", "vm12prod", "nosuchvm"]);
    assert!(out.contains("vm12prod") && err.contains("nosuchvm"), "{out}\n{err}");
    // Mis-typed forms are refused clearly.
    let (_, err) = s.run(1, &["get", "vm,lm", "vm12prod"]);
    assert!(err.contains("KIND/NAME"), "{err}");
}

#[test]
fn selectors_pick_by_label_and_field() {
    let s = Site::applied();
    s.ok(&["label", "vm", "vm12prod", "app01", "tier=db"]);
    s.ok(&["label", "vm/app02", "tier=web"]);
    assert_eq!(
        lines(&s.ok(&["get", "vm", "-l", "tier=db", "-o", "name"])),
        ["vmdefinition/app01", "vmdefinition/vm12prod"]
    );
    assert_eq!(
        lines(&s.ok(&["get", "vm", "--selector", "tier in (db,web),tier!=db", "-o", "name"])),
        ["vmdefinition/app02"]
    );
    let without = names(&s.json(&["get", "vm", "-l", "!tier", "-o", "json"]));
    assert!(!without.contains(&"app01".to_string()) && without.len() > 3, "{without:?}");
    // Field selector against what JSON says.
    let all = s.json(&["get", "vm", "-o", "json"]);
    let running: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"]["state"] == "RUNNING")
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!running.is_empty());
    assert_eq!(names(&s.json(&["get", "vm", "--field-selector", "status.state=RUNNING", "-o", "json"])), running);
    // A field the kind does not have is refused, not an empty answer.
    let (_, err) = s.run(1, &["get", "vm", "--field-selector", "status.stat=RUNNING"]);
    assert!(err.contains("stat"), "{err}");
    // Names and selectors do not mix; a bad selector is a usage error.
    s.run(1, &["get", "vm", "vm12prod", "-l", "tier=db"]);
    s.run(2, &["get", "vm", "-l", "tier in db"]);
    // delete and wait take selectors too.
    s.ok(&["wait", "vm", "-l", "tier=db", "--for=condition=Ready"]);
    assert_eq!(lines(&s.ok(&["delete", "vm", "-l", "tier=web"])), ["vmdefinition/app02 deleted"]);
    s.run(2, &["delete", "vm"]);
    assert!(s.json(&["get", "vm", "-l", "tier=web", "-o", "json"])["items"].as_array().unwrap().is_empty());
}

#[test]
fn output_forms_sorting_and_headers() {
    let s = Site::applied();
    let all = s.json(&["get", "vm", "-o", "json"]);
    let items = all["items"].as_array().unwrap();
    // -o name
    let want: Vec<String> =
        items.iter().map(|o| format!("vmdefinition/{}", o["metadata"]["name"].as_str().unwrap())).collect();
    assert_eq!(lines(&s.ok(&["get", "vm", "-o", "name"])), want);
    // jsonpath, with range and a literal
    let jp = s.ok(&["get", "vm", "-o", "jsonpath={range .items[*]}{.metadata.name}:{.spec.memoryMiB}{\"\\n\"}{end}"]);
    let want: Vec<String> = items
        .iter()
        .map(|o| format!("{}:{}", o["metadata"]["name"].as_str().unwrap(), o["spec"]["memoryMiB"]))
        .collect();
    assert_eq!(lines(&jp), want);
    assert_eq!(s.ok(&["get", "vm", "vm12prod", "-o", "jsonpath={.spec.vmName}"]), "VM12PROD");
    // --sort-by numbers numerically; --no-headers; custom columns
    let sorted = s.ok(&[
        "get",
        "vm",
        "--sort-by=.spec.memoryMiB",
        "--no-headers",
        "-o",
        "custom-columns=N:.metadata.name,M:.spec.memoryMiB",
    ]);
    let mems: Vec<u64> = sorted.lines().map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(mems.len(), items.len());
    assert!(mems.windows(2).all(|w| w[0] <= w[1]), "{sorted}");
    let table = s.ok(&["get", "vm", "--no-headers"]);
    assert!(!table.contains("NAME"), "{table}");
    assert_eq!(table.lines().count(), items.len());
    let cc = s.ok(&["get", "vm", "vm12prod", "-o", "custom-columns=NAME:.metadata.name,NOPE:.spec.nothing"]);
    assert_eq!(lines(&cc)[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "NOPE"]);
    assert!(lines(&cc)[1].contains("<none>"), "{cc}");
    // Wrong forms: usage errors that list what is accepted.
    let (_, err) = s.run(2, &["get", "vm", "-o", "xml"]);
    assert!(err.contains("custom-columns"), "{err}");
    s.run(2, &["get", "vm", "-o", "jsonpath={.items["]);
    s.run(2, &["get", "vm", "-o", "custom-columns=NAME"]);
}

#[test]
fn explain_reads_the_schemas() {
    let s = Site::new();
    let lm = s.ok(&["explain", "lm"]);
    assert!(lm.contains("KIND:     LiveMigration") && lm.contains("spec") && lm.contains("-required-"), "{lm}");
    let phase = s.ok(&["explain", "livemigration.status.phase"]);
    for v in ["Completed", "Rejected", "Possible"] {
        assert!(phase.contains(v), "{phase}");
    }
    let devices = s.ok(&["explain", "vm.spec.devices"]);
    assert!(devices.contains("mn") && devices.contains("usage"), "{devices}");
    let (_, err) = s.run(1, &["explain", "vm.spec.nope"]);
    assert!(err.contains("nope"), "{err}");
    assert!(!s.dir.path().join("store").exists(), "explain needs no store");
}

#[test]
fn edit_with_an_editor_script() {
    let s = Site::applied();
    let mem = |s: &Site| s.json(&["get", "vm", "vm12prod", "-o", "json"])["spec"]["memoryMiB"].clone();
    let rv = |s: &Site| s.json(&["get", "vm", "vm12prod", "-o", "json"])["metadata"]["resourceVersion"].clone();
    // A change is validated and written.
    let ed = s.script("ed-change", "sed -i 's/^  memoryMiB: .*/  memoryMiB: 3072/' \"$1\"");
    let out = s.cmd(&["edit", "vm", "vm12prod"]).env("EDITOR", &ed).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "vmdefinition/vm12prod edited");
    assert_eq!(mem(&s), 3072);
    // Unchanged, emptied, or an editor that fails: nothing written.
    let before = rv(&s);
    for (editor, code, msg) in [
        ("true", 0, "Edit cancelled"),
        ("sh -c ': > \"$0\"'", 0, "Edit cancelled"),
        ("false", 1, "nothing was written"),
    ] {
        let out = s.cmd(&["edit", "vm/vm12prod"]).env("EDITOR", editor).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "EDITOR={editor}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(msg),
            "EDITOR={editor}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(rv(&s), before, "EDITOR={editor} wrote");
    }
    // Invalid: re-opened with the error on top; the second round fixes it.
    let log = s.dir.path().join("rounds");
    let ed = s.script(
        "ed-fix",
        &format!(
            "echo round >> {log}\nif grep -q '^# \\* .*memoryMiB' \"$1\"; then sed -i 's/^  memoryMiB: .*/  memoryMiB: 1024/' \"$1\"; \
             else sed -i 's/^  memoryMiB: .*/  memoryMiB: -5/' \"$1\"; fi",
            log = log.display()
        ),
    );
    let out = s.cmd(&["edit", "vm", "vm12prod"]).env("EDITOR", &ed).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2, "reopened once");
    assert_eq!(mem(&s), 1024);
    // Still invalid after the reopen: stops, keeps the edit, writes nothing.
    let ed = s.script("ed-bad", "sed -i 's/^  memoryMiB: .*/  memoryMiB: -5/' \"$1\"");
    let before = rv(&s);
    let out = s.cmd(&["edit", "vm", "vm12prod"]).env("EDITOR", &ed).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kept in"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rv(&s), before);
    // Renaming is refused (reopened, then given up the same way).
    let ed = s.script("ed-rename", "sed -i 's/^  name: vm12prod/  name: other/' \"$1\"");
    let out = s.cmd(&["edit", "vm", "vm12prod"]).env("EDITOR", &ed).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    s.run(1, &["get", "vm", "other"]);
}

#[test]
fn label_annotate_and_patch() {
    let s = Site::applied();
    let get = |s: &Site| s.json(&["get", "vm", "vm12prod", "-o", "json"]);
    assert_eq!(s.ok(&["label", "vm", "vm12prod", "team=erp"]).trim(), "vmdefinition/vm12prod labeled");
    let (_, err) = s.run(1, &["label", "vm", "vm12prod", "team=db"]);
    assert!(err.contains("--overwrite"), "{err}");
    s.ok(&["label", "vm", "vm12prod", "team=db", "--overwrite"]);
    assert_eq!(get(&s)["metadata"]["labels"]["team"], "db");
    s.ok(&["label", "vm", "vm12prod", "team-"]);
    assert!(get(&s)["metadata"]["labels"].get("team").is_none());
    s.ok(&["annotate", "vm/vm12prod", "owner=team erp"]);
    assert_eq!(get(&s)["metadata"]["annotations"]["owner"], "team erp");
    // merge and json patches; the result is validated.
    assert_eq!(
        s.ok(&["patch", "vm", "vm12prod", "-p", r#"{"spec":{"memoryMiB":4096}}"#]).trim(),
        "vmdefinition/vm12prod patched"
    );
    assert_eq!(get(&s)["spec"]["memoryMiB"], 4096);
    s.ok(&[
        "patch",
        "vm",
        "vm12prod",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/memoryMiB","value":2048}]"#,
    ]);
    assert_eq!(get(&s)["spec"]["memoryMiB"], 2048);
    assert!(s.ok(&["patch", "vm", "vm12prod", "-p", r#"{"spec":{"memoryMiB":2048}}"#]).contains("(no change)"));
    let rv = get(&s)["metadata"]["resourceVersion"].clone();
    let (_, err) = s.run(1, &["patch", "vm", "vm12prod", "-p", r#"{"spec":{"memoryMiB":-5}}"#]);
    assert!(err.contains("memoryMiB"), "{err}");
    let (_, err) = s.run(1, &["patch", "vm", "vm12prod", "-p", r#"{"status":{"state":"DOWN"}}"#]);
    assert!(err.contains("status"), "{err}");
    s.run(1, &["patch", "vm", "vm12prod", "--type", "json", "-p", r#"[{"op":"remove","path":"/spec/nope"}]"#]);
    s.run(2, &["patch", "vm", "vm12prod", "--type", "strategic", "-p", "{}"]);
    s.run(1, &["patch", "vm", "vm12prod", "-p", "not: [json"]);
    // Dry runs write nothing.
    s.ok(&["patch", "vm", "vm12prod", "-p", r#"{"spec":{"memoryMiB":1024}}"#, "--dry-run=server"]);
    s.ok(&["label", "vm", "vm12prod", "x=y", "--dry-run"]);
    assert_eq!(get(&s)["metadata"]["resourceVersion"], rv, "a refused or dry-run change wrote");
}

#[test]
fn completion_scripts_parse() {
    let s = Site::new();
    let bash = s.ok(&["completion", "bash"]);
    assert!(bash.contains("sectl") && bash.contains("explain"), "bash script names the verbs");
    let f = s.write("sectl.bash", &bash);
    let out = std::process::Command::new("bash")
        .args(["-n", &f])
        .output()
        .expect("bash must be installed to check the completion script (apt-get install bash)");
    assert!(out.status.success(), "bash -n: {}", String::from_utf8_lossy(&out.stderr));
    // A bash that loads it offers the verbs.
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("source {f}; COMP_WORDS=(sectl ex); COMP_CWORD=1; _sectl sectl ex sectl; echo ${{COMPREPLY[@]}}"),
        ])
        .output()
        .expect("bash");
    assert!(String::from_utf8_lossy(&out.stdout).contains("explain"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(s.ok(&["completion", "zsh"]).contains("#compdef sectl"));
    assert!(s.ok(&["completion", "fish"]).contains("complete -c sectl"));
    s.run(2, &["completion", "tcsh"]);
    assert!(s.ok(&["version"]).contains(env!("CARGO_PKG_VERSION")));
    assert_eq!(s.json(&["version", "-o", "json"])["clientVersion"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn dry_run_client_and_server_write_nothing() {
    let s = Site::new();
    let out = s.ok(&["apply", "-f", &path("manifests"), "--dry-run=server"]);
    assert!(out.contains("created (server dry run)"), "{out}");
    let out = s.ok(&["apply", "-f", &path("manifests"), "--dry-run=client"]);
    assert!(out.contains("created (dry run)"), "{out}");
    let out = s.ok(&["apply", "-f", &path("manifests"), "--dry-run"]);
    assert!(out.contains("(dry run)"), "{out}");
    s.run(2, &["apply", "-f", &path("manifests"), "--dry-run=bogus"]);
    assert!(s.json(&["get", "vm", "-o", "json"])["items"].as_array().unwrap().is_empty());
    s.ok(&["apply", "-f", &path("manifests")]);
    assert!(s.ok(&["apply", "-f", &path("manifests"), "--dry-run=client"]).contains("unchanged (dry run)"));
    assert!(s.ok(&["delete", "vm", "vm12prod", "--dry-run=client"]).contains("deleted (dry run)"));
    s.ok(&["get", "vm", "vm12prod"]);
}

fn sim_ms(s: &Site) -> u64 {
    s.json(&["sim", "clock", "-o", "json"])["simulatedMs"].as_u64().expect("simulatedMs")
}

#[test]
fn wait_in_embedded_mode_keeps_the_clock_and_answers_at_once() {
    let s = Site::applied();
    let t0 = sim_ms(&s);
    // Nothing is due: waiting for what has not happened fails at once, clock unmoved.
    let (_, err) = s.run(1, &["wait", "vm/vm12prod", "--for=state=DOWN", "--timeout", "10m"]);
    assert!(err.contains("state is RUNNING"), "{err}");
    assert_eq!(sim_ms(&s), t0, "wait moved the simulated clock");
    // Unknown phase or state: usage error listing the valid ones.
    let (_, err) = s.run(2, &["wait", "lm/x", "--for=phase=Complete"]);
    assert!(err.contains("Completed") && err.contains("Rejected"), "{err}");
    let (_, err) = s.run(2, &["wait", "vm/vm12prod", "--for=state=RUNING"]);
    assert!(err.contains("RUNNING"), "{err}");
    s.ok(&["apply", "-f", &path("examples/live-migration.yaml")]);
    s.ok(&["wait", "lm/lm-vm12", "--for=phase=Completed"]);
    s.ok(&["wait", "lm/lm-vm12", "--for=jsonpath={.status.phase}=Completed"]);
    let bad = s.write(
        "again.yaml",
        "apiVersion: sectl.io/v1alpha1\nkind: LiveMigration\nmetadata: {name: back-again}\nspec: {vm: nosuchvm, targetServerUnit: ABGSE501}\n",
    );
    let (_, err) = s.run(0, &["apply", "-f", &bad]);
    assert!(err.contains("Warning:") && err.contains("nosuchvm"), "{err}");
    // Its VM does not exist yet, so it waits (Pending); nothing is due to change that.
    assert_eq!(s.ok(&["get", "lm", "back-again", "-o", "jsonpath={.status.phase}"]), "Pending");
    let (_, err) = s.run(1, &["wait", "lm/back-again", "--for=phase=Completed"]);
    assert!(err.contains("phase is Pending") && err.contains("will not change"), "{err}");
    // --for=delete
    s.ok(&["delete", "lm", "back-again"]);
    s.ok(&["wait", "lm/back-again", "--for=delete"]);
    let (_, err) = s.run(1, &["wait", "lm/back-again", "--for=phase=Completed"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn rejected_migration_fails_wait_at_once() {
    let s = Site::applied();
    // The VM is on ABGSE501: a migration to it is rejected and says so on apply.
    let lm = s.write(
        "same.yaml",
        "apiVersion: sectl.io/v1alpha1\nkind: LiveMigration\nmetadata: {name: same-su}\nspec: {vm: vm12prod, targetServerUnit: ABGSE501}\n",
    );
    let (out, err) = s.run(0, &["apply", "-f", &lm]);
    assert!(err.contains("Warning:") && err.contains("already on ABGSE501"), "{err}");
    assert!(out.starts_with("livemigration/same-su created: Rejected"), "{out}");
    let t0 = sim_ms(&s);
    let (_, err) = s.run(1, &["wait", "lm/same-su", "--for=phase=Completed", "--timeout=10m"]);
    assert!(err.contains("phase is Rejected") && err.contains("final for generation 1"), "{err}");
    assert_eq!(sim_ms(&s), t0);
}

#[test]
fn apply_and_validate_warn_about_references_and_print_outcomes() {
    let s = Site::applied();
    let vm = s.write(
        "vm999.yaml",
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: lost}\nspec: {vmName: LOST, serverUnit: ABGSE999, memoryMiB: 512}\n",
    );
    let (out, err) = s.run(0, &["apply", "-f", &vm]);
    assert_eq!(out.trim(), "vmdefinition/lost created");
    assert!(err.contains("Warning: vmdefinition/lost: spec.serverUnit ABGSE999 is not a server unit"), "{err}");
    // Re-applying unchanged does not warn again.
    let (_, err) = s.run(0, &["apply", "-f", &vm]);
    assert!(!err.contains("Warning"), "{err}");
    // validate: with the whole site it warns; alone it cannot know.
    let (out, err) = s.run(0, &["validate", "-f", &path("manifests"), "-f", &vm]);
    assert!(out.contains("valid") && err.contains("ABGSE999"), "{err}");
    let (_, err) = s.run(0, &["validate", "-f", &vm]);
    assert!(!err.contains("Warning"), "{err}");
    let (_, err) = s.run(0, &["validate", "-f", &path("manifests")]);
    assert!(!err.contains("Warning"), "the example site has dangling references:\n{err}");
    // Outcomes on their line (embedded mode).
    let out = s.ok(&["apply", "-f", &path("examples/check-migration.yaml")]);
    assert!(out.contains("created: Possible (VMS2460)"), "{out}");
}

#[test]
fn report_verbs_have_script_forms_and_clocks_are_labelled() {
    let s = Site::applied();
    s.ok(&["apply", "-f", &path("examples/live-migration.yaml")]);
    let d = s.json(&["describe", "lm", "lm-vm12", "-o", "json"]);
    assert_eq!(d["object"]["metadata"]["name"], "lm-vm12");
    assert!(d["events"].as_array().is_some());
    let y = s.ok(&["describe", "vm/vm12prod", "-o", "yaml"]);
    assert!(y.contains("object:") && y.contains("events:"), "{y}");
    let e = s.json(&["events", "-o", "json", "--limit", "3"]);
    assert_eq!(e.as_array().unwrap().len(), 3);
    assert!(s.ok(&["events", "-o", "yaml", "--limit", "1"]).contains("seq:"));
    assert!(s.json(&["events", "ack", "-o", "json"])["acknowledged"].as_u64().is_some());
    let sim = s.json(&["sim", "advance", "1s", "-o", "json"]);
    assert!(sim["simulatedTime"].as_str().is_some() && sim["events"].is_array(), "{sim}");
    let clock = s.ok(&["sim", "clock"]);
    assert!(clock.contains("real time") && clock.contains("simulated time"), "{clock}");
    let c = s.json(&["sim", "clock", "-o", "json"]);
    assert!(c["realTime"].is_string() && c["simulatedTime"].is_string());
    s.run(2, &["sim", "clock", "-o", "xml"]);
    s.run(2, &["events", "-o", "wide"]);
    let table = s.ok(&["events", "--limit", "1"]);
    assert!(table.contains("SIMULATED"), "events table labels its clock:\n{table}");
}

#[test]
fn every_verb_help_has_examples() {
    let s = Site::new();
    let help = s.ok(&["--help"]);
    let verbs: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .collect();
    assert!(verbs.len() >= 15, "{verbs:?}");
    for v in verbs {
        let h = s.ok(&[v, "--help"]);
        assert!(h.contains("Examples:\n  # "), "sectl {v} --help has no examples:\n{h}");
    }
    for v in ["validate", "schema", "explain", "completion", "version"] {
        let h = s.ok(&[v, "--help"]);
        assert!(!h.contains("--server") && !h.contains("--data-dir"), "sectl {v} needs no store:\n{h}");
    }
    assert!(s.ok(&["get", "--help"]).contains("--server"));
    let diff = s.ok(&["diff", "--help"]);
    assert!(diff.contains("2 invalid input"), "{diff}");
    // Real flags, so clap suggests the right one.
    let (_, err) = s.run(2, &["get", "vm", "--selectr", "a=b"]);
    assert!(err.contains("--selector"), "{err}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let s = Site::applied();
    for cmd in ["sim advance 1s", "get vm", "events", "completion bash"] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} --data-dir {} {cmd} | head -1",
                env!("CARGO_BIN_EXE_sectl"),
                s.dir.path().join("store").display()
            ))
            .output()
            .expect("sh");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "sectl {cmd} | head -1: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    }
}

#[test]
fn logs_have_no_colour_when_stderr_is_not_a_terminal() {
    let s = Site::new();
    let out = s.cmd(&["get", "vm"]).env("RUST_LOG", "trace").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TRACE"), "no log lines to look at:\n{err}");
    assert!(!err.contains('\u{1b}'), "ANSI codes in a file:\n{err}");
}

#[test]
fn describe_reads_like_kubectl_describe() {
    let s = Site::applied();
    s.ok(&["apply", "-f", &path("examples/live-migration.yaml")]);
    let d = s.ok(&["describe", "lm", "lm-vm12"]);
    assert!(d.lines().count() < 80, "describe lm is {} lines:\n{d}", d.lines().count());
    for want in [
        "Created:",
        "(real time)",
        "Status (simulated clock):",
        "phase:",
        "monjv:",
        "Rounds:\n  ROUND",
        "VMS2450",
        "VMS2451",
        "DEVICES A000-A0FF ASSIGNED",
        "(256)",
        "all with --show-all",
        "Events (simulated clock",
    ] {
        assert!(d.contains(want), "describe lacks {want:?}:\n{d}");
    }
    assert!(!d.contains("''"), "doubled quotes:\n{d}");
    let all = s.ok(&["describe", "lm", "lm-vm12", "--show-all"]);
    let lm = s.json(&["get", "lm", "lm-vm12", "-o", "json"]);
    let msgs = lm["status"]["messages"].as_array().unwrap();
    for m in msgs {
        assert!(all.contains(m.as_str().unwrap()), "--show-all lacks {m}");
    }
}

#[test]
fn reference_is_generated_and_fresh() {
    let want = sectl::cli::reference_markdown();
    let file = root().join("docs/reference.md");
    if std::env::var("SECTL_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &want).unwrap();
    }
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(have == want, "docs/reference.md is stale: run `SECTL_BLESS=1 cargo test --test cli_kubectl reference`");
    for must in [
        "### sectl get",
        "### LiveMigration",
        "`status.phase`",
        "`spec.memoryMiB`",
        "## Exit status",
        "--field-selector",
    ] {
        assert!(want.contains(must), "reference lacks {must}");
    }
}
