//! The simulated world as the library tests drive it: the manual's sites (two SUs
//! /390 in a Management Cluster, two SUs x86), objects built from JSON, and `Env`, which
//! writes objects to a store, runs the controller on the virtual clock, injects faults
//! and checks the books after every step.
#![allow(dead_code)]

use sectl::api::{
    Condition, Kind, LiveMigrationSpec, LiveMigrationStatus, VMDefinitionSpec, VMDefinitionStatus, VMRecoverySpec,
    VMRecoveryStatus,
};
use sectl::controller::{Controller, Options};
use sectl::sim::{Fault, World};
use sectl::store::{Event, SledStore, Store};
use serde_json::{json, Value};
use std::sync::Arc;

// ---------------------------------------------------------------------------------
// Sites

/// The same I/O configuration on both SUs /390 (so no DIFF unless a test adds some).
pub const DEVICES_390: &str = r#"
        - {mn: "4683", type: disk, hostConnector: "01", unitId: "00"}
        - {mn: "4690", type: disk, hostConnector: "01", unitId: "10"}
        - {mn: "A000-A0FF", type: disk, hostConnector: "02", unitId: "00"}
        - {mn: "B000-B0FF", type: disk, hostConnector: "03", unitId: "00"}
        - {mn: "FAA4", type: pavAlias, hostConnector: "09", unitId: "F0"}
        - {mn: "FAA5", type: pavAlias, hostConnector: "09", unitId: "F1"}
        - {mn: "5A20", type: tape, hostConnector: "05", unitId: "00"}"#;

/// se701 with ABGSE701 (SU700: 8 CPUs, 64 GiB, monitor 2 GiB); `extra` is appended to
/// its device list and `tail` to its unit (e.g. maxVmDefinitions).
pub fn se701(extra: &str, tail: &str) -> String {
    format!(
        r#"apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {{name: se701}}
spec:
  model: SE700
  location: Augsburg A
  version: V6.3
  managementUnits: [{{name: abgwhite}}]
  netUnit: {{speedGbps: 10}}
  serverUnits:
    - name: ABGSE701
      type: "390"
      operationMode: VM2000
      cpus: 8
      memoryMiB: 65536
      monitorMemoryMiB: 2048
      cpuPools: [{{name: "*STDPOOL", cpus: 6}}, {{name: POOLDB, cpus: 2}}]
      vmGroups: [{{name: PRODGRP}}]
{tail}      devices:{DEVICES_390}{extra}
"#
    )
}

/// se501 with ABGSE501 (SU500: 4 CPUs, 32 GiB, monitor 1 GiB, at most 30 definitions).
pub fn se501(extra: &str, tail: &str) -> String {
    format!(
        r#"apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {{name: se501}}
spec:
  model: SE500
  location: Augsburg B
  version: V6.3
  managementUnits: [{{name: abgblack}}]
  netUnit: {{speedGbps: 10}}
  serverUnits:
    - name: ABGSE501
      type: "390"
      operationMode: VM2000
      cpus: 4
      memoryMiB: 32768
      monitorMemoryMiB: 1024
      cpuPools: [{{name: "*STDPOOL", cpus: 2}}, {{name: POOLDB, cpus: 2}}, {{name: POOL501, cpus: 1}}]
      vmGroups: [{{name: PRODGRP}}, {{name: GRP501}}]
{tail}      devices:{DEVICES_390}{extra}
"#
    )
}

/// The two SUs /390 of the manual: a Management Cluster with a 10 Gbit/s ISL-E and the
/// SU cluster su390.
pub fn site390() -> String {
    format!(
        "{}---\n{}---\n{}",
        se701("", ""),
        se501("", "      maxVmDefinitions: 30\n"),
        r#"apiVersion: sectl.io/v1alpha1
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
"#
    )
}

/// Two servers with one SU x86 each (SEX1: 16 CPUs, SEX2: 8 CPUs, 64 GiB each), joined
/// by a Management Cluster whose ISL-E has `gbps` Gbit/s, and the SU cluster sux86.
/// `mode` is the operation mode of both SUs.
pub fn site_x86(gbps: u32, mode: &str) -> String {
    format!(
        r#"apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {{name: sex1}}
spec:
  model: SE710
  version: V6.3
  managementUnits: [{{name: mux1}}]
  netUnit: {{speedGbps: 10}}
  serverUnits:
    - name: SEX1
      type: x86
      operationMode: {mode}
      cpus: 16
      memoryMiB: 65536
      devices:
        - {{mn: "9000-900F", type: disk, hostConnector: "01", unitId: "00"}}
        - {{mn: "9100", type: localDisk, hostConnector: "07", unitId: "00"}}
        - {{mn: "9F00", type: tape, hostConnector: "05", unitId: "00"}}
---
apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {{name: sex2}}
spec:
  model: SE310
  version: V6.3
  managementUnits: [{{name: mux2}}]
  netUnit: {{speedGbps: 10}}
  serverUnits:
    - name: SEX2
      type: x86
      operationMode: {mode}
      cpus: 8
      memoryMiB: 65536
      devices:
        - {{mn: "9000-900F", type: disk, hostConnector: "01", unitId: "00"}}
        - {{mn: "9200", type: localDisk, hostConnector: "07", unitId: "00"}}
        - {{mn: "9F00", type: tape, hostConnector: "05", unitId: "00"}}
---
apiVersion: sectl.io/v1alpha1
kind: ManagementCluster
metadata: {{name: mcx}}
spec:
  servers: [sex1, sex2]
  islE: {{bandwidthGbps: {gbps}, rttMs: 1}}
  configDisks: [{{name: crd-x1}}, {{name: crd-x2}}]
---
apiVersion: sectl.io/v1alpha1
kind: SUCluster
metadata: {{name: sux86}}
spec: {{serverUnits: [SEX1, SEX2], active: true}}
"#
    )
}

// ---------------------------------------------------------------------------------
// Objects

pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

/// A VMDefinition (JSON is YAML) with `spec` merged over vmName and serverUnit.
pub fn vm(name: &str, vm_name: &str, su: &str, spec: Value) -> String {
    let mut s = json!({"vmName": vm_name, "serverUnit": su});
    merge(&mut s, spec);
    json!({"apiVersion": "sectl.io/v1alpha1", "kind": "VMDefinition", "metadata": {"name": name}, "spec": s})
        .to_string()
}

/// A LiveMigration of VMDefinition `vm` to `target` ("": the other SU of the SU
/// cluster), with `extra` merged into the spec.
pub fn lm(name: &str, vm: &str, target: &str, extra: Value) -> String {
    let mut s = json!({"vm": vm});
    if !target.is_empty() {
        merge(&mut s, json!({"targetServerUnit": target}));
    }
    merge(&mut s, extra);
    json!({"apiVersion": "sectl.io/v1alpha1", "kind": "LiveMigration", "metadata": {"name": name}, "spec": s})
        .to_string()
}

/// A VMRecovery of `vm` to the local SU `target`.
pub fn rec(name: &str, vm: &str, target: &str, extra: Value) -> String {
    let mut s = json!({"vm": vm, "targetServerUnit": target});
    merge(&mut s, extra);
    json!({"apiVersion": "sectl.io/v1alpha1", "kind": "VMRecovery", "metadata": {"name": name}, "spec": s}).to_string()
}

/// VM12PROD of the manual on `su`: index 12, 2 GiB, device 4683 exclusively.
pub fn vm12prod(su: &str, extra: Value) -> String {
    let mut s = json!({"vmIndex": 12, "state": "RUNNING", "memoryMiB": 2048, "cpus": 1,
        "devices": [{"mn": "4683", "usage": "exclusive"}], "workload": {"dirtyRateMiBps": 40}});
    merge(&mut s, extra);
    vm("vm12prod", "VM12PROD", su, s)
}

// ---------------------------------------------------------------------------------
// The test environment

pub struct Env {
    _dir: tempfile::TempDir,
    pub store: Arc<SledStore>,
    pub ctl: Controller,
}

impl Env {
    pub fn new(site: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(dir.path()).expect("open store"));
        let ctl = Controller::new(store.clone() as Arc<dyn Store>, Options::default()).expect("controller");
        let mut e = Env { _dir: dir, store, ctl };
        e.apply(site);
        e
    }

    /// Writes the objects of `yaml` (create or update), without reconciling.
    pub fn put(&self, yaml: &str) {
        let docs = sectl::manifest::decode("test.yaml", yaml.as_bytes())
            .unwrap_or_else(|e| panic!("test YAML does not decode: {e:?}\n{yaml}"));
        self.store.apply(docs.into_iter().map(|d| d.resource).collect(), false).expect("store apply");
    }

    /// Writes and runs the controller until the world is quiet.
    pub fn apply(&mut self, yaml: &str) {
        self.put(yaml);
        self.settle();
    }

    /// Runs until quiet and checks the books.
    pub fn settle(&mut self) {
        self.ctl.run_until_quiet().expect("run_until_quiet");
        self.books();
    }

    /// Runs everything due within the next `ms` simulated milliseconds.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.ctl.now_ms() + ms;
        self.ctl.run_until(Some(until)).expect("run_until");
        self.books();
    }

    pub fn now(&self) -> u64 {
        self.ctl.now_ms()
    }

    /// `sectl sim ARGS...` and run until quiet.
    pub fn sim(&mut self, args: &str) {
        self.sim_only(args);
        self.settle();
    }

    /// `sectl sim ARGS...` without running anything else.
    pub fn sim_only(&mut self, args: &str) {
        let a: Vec<String> = args.split_whitespace().map(String::from).collect();
        let f = Fault::parse(&a).unwrap_or_else(|e| panic!("sim {args}: {e}"));
        self.ctl.apply_fault(&f).unwrap_or_else(|e| panic!("sim {args}: {e}"));
    }

    /// `sectl sim ARGS...`: Err with the refusal, else run until quiet.
    pub fn try_sim(&mut self, args: &str) -> Result<(), String> {
        let a: Vec<String> = args.split_whitespace().map(String::from).collect();
        let f = Fault::parse(&a)?;
        self.ctl.apply_fault(&f).map_err(|e| e.to_string())?;
        self.settle();
        Ok(())
    }

    /// Changes the saved world directly (for states no `sim` verb produces) and starts
    /// a new controller on the same store, as a restart would.
    pub fn edit_world(&mut self, f: impl FnOnce(&mut World)) {
        self.ctl.save_world().expect("save world");
        let mut w = World::load(self.store.as_ref()).expect("load world");
        f(&mut w);
        w.touch();
        w.save(self.store.as_ref()).expect("save world");
        self.restart();
    }

    /// A new controller on the same store (the old one is dropped).
    pub fn restart(&mut self) {
        self.ctl.save_world().expect("save world");
        self.ctl = Controller::new(self.store.clone() as Arc<dyn Store>, Options::default()).expect("controller");
    }

    pub fn delete(&mut self, kind: Kind, name: &str) {
        self.store.delete(kind, name).unwrap_or_else(|e| panic!("delete {kind}/{name}: {e}"));
    }

    pub fn world(&self) -> World {
        self.ctl.world()
    }

    pub fn vm(&self, name: &str) -> VMDefinitionStatus {
        let r = self.store.get(Kind::VMDefinition, name).expect("get").unwrap_or_else(|| panic!("no vm {name}"));
        r.as_typed::<VMDefinitionSpec>().expect("typed").status.clone()
    }

    pub fn lm(&self, name: &str) -> LiveMigrationStatus {
        let r = self.store.get(Kind::LiveMigration, name).expect("get").unwrap_or_else(|| panic!("no lm {name}"));
        r.as_typed::<LiveMigrationSpec>().expect("typed").status.clone()
    }

    pub fn rec(&self, name: &str) -> VMRecoveryStatus {
        let r = self.store.get(Kind::VMRecovery, name).expect("get").unwrap_or_else(|| panic!("no rec {name}"));
        r.as_typed::<VMRecoverySpec>().expect("typed").status.clone()
    }

    pub fn last_seq(&self) -> u64 {
        self.store.events().expect("events").last().map(|e| e.seq).unwrap_or(0)
    }

    pub fn events_since(&self, seq: u64) -> Vec<Event> {
        self.store.events().expect("events").into_iter().filter(|e| e.seq > seq).collect()
    }

    /// The books balance: nothing the audit finds, and free + used + monitor == memory
    /// on every SU.
    pub fn books(&self) {
        books(&self.world());
    }
}

pub fn books(w: &World) {
    let bad = w.audit();
    assert!(bad.is_empty(), "audit: {bad:#?}");
    for (name, u) in &w.units {
        let Some(s) = &u.su else { continue };
        assert_eq!(
            w.free_memory(name) + w.used_memory(name) + s.monitor_mib,
            s.memory_mib,
            "memory of {name} does not balance: free {} used {} monitor {}",
            w.free_memory(name),
            w.used_memory(name),
            s.monitor_mib
        );
    }
}

pub fn cond<'a>(conds: &'a [Condition], t: &str) -> &'a Condition {
    conds.iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("no condition {t} in {conds:#?}"))
}

pub fn has_cond(conds: &[Condition], t: &str) -> bool {
    conds.iter().any(|c| c.type_ == t)
}

/// Who holds device `mn` on `su`, and how.
pub fn holders(w: &World, su: &str, mn: &str) -> Vec<(String, sectl::api::DeviceUsage)> {
    w.su(su)
        .and_then(|s| s.devices.get(mn))
        .map(|d| d.holders.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default()
}

/// Index of the first message containing `id`.
pub fn pos(msgs: &[String], id: &str) -> usize {
    msgs.iter().position(|m| m.contains(id)).unwrap_or_else(|| panic!("no {id} in {msgs:#?}"))
}

pub fn reasons(st: &LiveMigrationStatus) -> Vec<String> {
    st.conflicts.iter().map(|c| c.reason.clone()).collect()
}

pub fn has_reason(st: &LiveMigrationStatus, r: &str) -> bool {
    st.conflicts.iter().any(|c| c.reason == r)
}
