//! The controller through the real binary (embedded mode): `sectl sim` prints what the
//! change set off (the manual's event chain of s2.3.3), `sectl wait` runs the
//! reconcilers until a state, condition or phase holds, and `sectl events` lists the
//! log newest first with filters and acknowledges it.

mod common;

use common::sectl_in;
use predicates::prelude::*;
use serde_json::Value;
use std::path::PathBuf;

const SITE: &str = r#"apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: se701}
spec:
  model: SE700
  version: V6.3
  managementUnits: [{name: abgwhite}, {name: abgblack}]
  serverUnits:
    - {name: ABGSE701, type: "390", cpus: 8, memoryMiB: 65536}
---
apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: se501}
spec:
  model: SE500
  version: V6.3
  managementUnits: [{name: abggreen}, {name: abgblue}]
  serverUnits:
    - {name: ABGSE501, type: "390", cpus: 4, memoryMiB: 32768}
---
apiVersion: sectl.io/v1alpha1
kind: ManagementCluster
metadata: {name: mc}
spec:
  servers: [se701, se501]
  islE: {bandwidthGbps: 10, rttMs: 1}
  configDisks: [{name: crd-a}, {name: crd-b}]
---
apiVersion: sectl.io/v1alpha1
kind: SUCluster
metadata: {name: su390}
spec: {serverUnits: [ABGSE701, ABGSE501], active: true}
"#;

/// A data folder with the site applied (and reconciled).
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("site.yaml");
        std::fs::write(&file, SITE).expect("write site");
        let s = Site { dir };
        s.ok(&["apply", "-f", file.to_str().unwrap()]);
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, args: &[&str]) -> assert_cmd::Command {
        let mut c = sectl_in(&self.data());
        c.args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).assert().success().get_output().stdout.clone();
        String::from_utf8(out).expect("utf-8")
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
    }

    fn events(&self, extra: &[&str]) -> Vec<Value> {
        let mut a = vec!["events", "-o", "json", "--limit", "1000"];
        a.extend_from_slice(extra);
        self.json(&a).as_array().expect("array").clone()
    }

    fn state(&self, kind: &str, name: &str) -> String {
        self.json(&["get", kind, name, "-o", "json"])["status"]["state"].as_str().unwrap_or("").to_string()
    }
}

fn line_of(lines: &[&str], what: &str, f: impl Fn(&str) -> bool) -> usize {
    lines.iter().position(|l| f(l)).unwrap_or_else(|| panic!("no line {what} in:\n{}", lines.join("\n")))
}

#[test]
fn sim_power_off_of_an_mu_prints_the_manuals_event_chain() {
    let s = Site::new();
    assert_eq!(s.state("mc", "mc"), "NORMAL");
    assert_eq!(s.state("suc", "su390"), "NORMAL");
    let out = s.ok(&["sim", "power", "off", "abgwhite"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("simulated time "), "{out}");
    let deactivated = line_of(&lines, "MU deactivated (M2000)", |l| {
        l.contains("M2000") && l.contains("abgwhite") && l.contains("deactivated")
    });
    let heartbeat = line_of(&lines, "heartbeat (Cluster, WARNING)", |l| {
        l.contains("WARNING") && l.contains("Cluster") && l.contains("abgwhite") && l.contains("heartbeat")
    });
    let mc = line_of(&lines, "management cluster WARNING", |l| {
        l.contains("WARNING") && l.contains("ManagementCluster/mc:") && l.contains("NORMAL -> WARNING")
    });
    let su = line_of(&lines, "SU /390 cluster WARNING", |l| {
        l.contains("WARNING")
            && l.contains("SUCluster/su390:")
            && l.contains("SU /390 cluster")
            && l.contains("NORMAL -> WARNING")
    });
    assert!(deactivated < heartbeat && heartbeat < mc && mc < su, "{out}");
    assert_eq!(s.state("mc", "mc"), "WARNING");
    assert_eq!(s.state("suc", "su390"), "WARNING");

    // The Cluster Manager runs on a powered MU.
    let mc = s.json(&["get", "mc", "mc", "-o", "json"]);
    let cm = mc["status"]["clusterManager"].as_str().expect("a Cluster Manager").to_string();
    assert_ne!(cm, "abgwhite");
    let se = s.json(&["get", "se", "se701", "-o", "json"]);
    let white = se["status"]["units"].as_array().unwrap().iter().find(|u| u["name"] == "abgwhite").unwrap().clone();
    assert_eq!((white["power"].as_str(), white["state"].as_str()), (Some("OFF"), Some("DOWN")));

    // Back on: the log says so, the clusters are NORMAL again.
    let out = s.ok(&["sim", "power", "on", "abgwhite"]);
    assert!(out.contains("powered on"), "{out}");
    assert!(out.contains("WARNING -> NORMAL"), "{out}");
    assert_eq!(s.state("suc", "su390"), "NORMAL");
}

#[test]
fn sim_refuses_unknown_units_and_bad_usage() {
    let s = Site::new();
    s.cmd(&["sim", "power", "off", "nosuchmu"]).assert().code(1).stderr(predicate::str::contains("nosuchmu"));
    s.cmd(&["sim", "power", "sideways", "abgwhite"]).assert().code(2).stderr(predicate::str::contains("usage"));
    s.cmd(&["sim", "disk", "fail", "nodisk"]).assert().code(1).stderr(predicate::str::contains("nodisk"));
    // Faults and repairs of the link and the disks show in the state.
    s.ok(&["sim", "link", "down", "mc"]);
    assert_eq!(s.state("mc", "mc"), "ERROR");
    assert_eq!(s.state("suc", "su390"), "ERROR");
    s.ok(&["sim", "link", "up", "mc"]);
    s.ok(&["sim", "disk", "fail", "crd-a"]);
    assert_eq!(s.state("mc", "mc"), "WARNING");
    s.ok(&["sim", "disk", "repair", "crd-a"]);
    assert_eq!(s.state("mc", "mc"), "NORMAL");
}

#[test]
fn wait_runs_the_reconcilers_until_the_state_holds() {
    let s = Site::new();
    // The fault only: nothing reconciled yet.
    let out = s.ok(&["--no-reconcile", "sim", "power", "off", "abggreen"]);
    assert!(!out.contains("SUCluster/su390"), "{out}");
    assert_eq!(s.state("suc", "su390"), "NORMAL");

    s.cmd(&["wait", "suc/su390", "--for=state=WARNING"])
        .assert()
        .success()
        .stdout(predicate::str::contains("sucluster/su390 condition met"));
    assert_eq!(s.state("suc", "su390"), "WARNING");
    assert_eq!(s.state("mc", "mc"), "WARNING");
    s.cmd(&["wait", "mc/mc", "--for=condition=Ready"]).assert().success();
    s.cmd(&["wait", "managementcluster/mc", "--for=condition=Redundant=False"]).assert().success();
    s.cmd(&["wait", "se/se501", "--for=condition=Ready=False"]).assert().success();

    // What will not happen: a clear non-zero exit, not a hang.
    s.cmd(&["wait", "suc/su390", "--for=state=ERROR", "--timeout", "30s"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("state is WARNING"));
    s.cmd(&["wait", "suc/su390", "--for=phase=Completed", "--timeout", "5s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has no status.phase"));
    s.cmd(&["wait", "suc/nosuch", "--for=state=NORMAL", "--timeout", "5s"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not found"));
    s.cmd(&["wait", "suc/su390", "--for=bogus"]).assert().failure();
    s.cmd(&["wait", "su390", "--for=state=NORMAL"]).assert().failure();
}

#[test]
fn events_are_listed_newest_first_filtered_and_acknowledged() {
    let s = Site::new();
    s.ok(&["sim", "power", "off", "abgblue"]);
    s.ok(&["sim", "disk", "fail", "crd-b"]);
    let all = s.events(&[]);
    assert!(all.len() >= 6, "{all:#?}");
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");
    for e in &all {
        for f in ["time", "type", "priority", "component", "object", "reason", "message"] {
            assert!(e[f].as_str().is_some_and(|v| !v.is_empty()), "{f} in {e}");
        }
        assert_eq!(e["acknowledged"], false);
    }
    assert_eq!(all[0]["reason"], "ConfigDiskFailed", "the newest first");

    let mc = s.events(&["mc/mc"]);
    assert!(!mc.is_empty() && mc.iter().all(|e| e["object"] == "ManagementCluster/mc"), "{mc:#?}");
    let m2000 = s.events(&["--component", "m2000"]);
    assert!(!m2000.is_empty() && m2000.iter().all(|e| e["component"] == "M2000"), "{m2000:#?}");
    let warnings = s.events(&["--warnings"]);
    assert!(!warnings.is_empty() && warnings.iter().all(|e| e["type"] == "Warning"), "{warnings:#?}");
    let two = s.json(&["events", "-o", "json", "--limit", "2"]);
    assert_eq!(two.as_array().unwrap().as_slice(), &all[..2]);
    let table = s.ok(&["events"]);
    assert!(
        table.contains("SEQ") && table.contains("PRIORITY") && table.contains("COMPONENT") && table.contains("ACK")
    );

    // Acknowledged all at once.
    s.cmd(&["events", "ack"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("{} event(s) acknowledged", all.len())));
    assert!(s.events(&[]).iter().all(|e| e["acknowledged"] == true));
    s.cmd(&["events", "--unacked"]).assert().success().stderr(predicate::str::contains("No events."));
    s.cmd(&["events", "ack"]).assert().success().stdout(predicate::str::contains("0 event(s) acknowledged"));
    // New events are not acknowledged.
    s.ok(&["sim", "power", "on", "abgblue"]);
    let fresh = s.events(&["--unacked"]);
    assert!(!fresh.is_empty());
    assert!(fresh.iter().all(|e| e["seq"].as_u64().unwrap() > seqs[0]));
    assert_eq!(s.events(&[]).len(), all.len() + fresh.len());
}

#[test]
fn describe_shows_an_objects_conditions_and_events() {
    let s = Site::new();
    s.ok(&["sim", "power", "off", "abgwhite"]);
    let out = s.ok(&["describe", "suc", "su390"]);
    assert!(out.contains("WARNING"), "{out}");
    assert!(out.contains("Ready"), "{out}");
    assert!(out.contains("NORMAL -> WARNING"), "{out}");
}
