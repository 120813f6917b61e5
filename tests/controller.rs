//! The controller (issue 3) at library level: SEServer, ManagementCluster and
//! SUCluster reconcilers on the simulated world, the event chain of the manual's
//! s2.3.3, the reconciler runtime (dedup, bounded concurrency, skipped writes,
//! conditions, relist after an expired watch history, conflicts, wake-ups), and a
//! property test: after any sequence of faults and repairs the clusters' status
//! depends only on the resulting world.

use proptest::prelude::*;
use sectl::api::{
    ClusterState, Condition, ConditionStatus, Kind, KindSpec, ManagementClusterSpec, Object, Resource, SEServerSpec,
    SUClusterSpec,
};
use sectl::controller::runtime::{Backoff, Scheduler};
use sectl::controller::{Controller, Options};
use sectl::sim::Fault;
use sectl::store::{ApplyOutcome, Event, SledStore, Store, StoreError, WatchEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------------
// The site and helpers
// ---------------------------------------------------------------------------------

const SE701: &str = r#"apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: se701}
spec:
  model: SE700
  location: Augsburg
  version: V6.3
  managementUnits: [{name: abgwhite}, {name: abgblack}]
  serverUnits:
    - {name: ABGSE701, type: "390", cpus: 8, memoryMiB: 65536}
    - {name: ABGSE70X1, type: x86, cpus: 16, memoryMiB: 131072}
    - {name: ABGSE70X2, type: x86, cpus: 16, memoryMiB: 131072}
"#;

const SE501: &str = r#"apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: se501}
spec:
  model: SE500
  location: Augsburg
  version: V6.3
  managementUnits: [{name: abggreen}, {name: abgblue}]
  serverUnits:
    - {name: ABGSE501, type: "390", cpus: 4, memoryMiB: 32768}
"#;

const MC: &str = r#"apiVersion: sectl.io/v1alpha1
kind: ManagementCluster
metadata: {name: mc}
spec:
  servers: [se701, se501]
  islE: {bandwidthGbps: 10, rttMs: 1}
  configDisks: [{name: crd-a}, {name: crd-b}]
"#;

const SU390: &str = r#"apiVersion: sectl.io/v1alpha1
kind: SUCluster
metadata: {name: su390}
spec: {serverUnits: [ABGSE701, ABGSE501], active: true}
"#;

const SUX86: &str = r#"apiVersion: sectl.io/v1alpha1
kind: SUCluster
metadata: {name: sux86}
spec: {serverUnits: [ABGSE70X1, ABGSE70X2], active: true}
"#;

/// Two servers with two MUs each, the Management Cluster, an SU /390 cluster across
/// the servers and an SU x86 cluster inside se701 (its CRD is the cluster's).
fn site() -> String {
    [SE701, SE501, MC, SU390, SUX86].join("---\n")
}

const MUS: [&str; 4] = ["abgwhite", "abgblack", "abggreen", "abgblue"];

/// A store on a temporary folder with a controller on it.
struct Site {
    dir: tempfile::TempDir,
    store: Arc<SledStore>,
    ctl: Controller,
}

fn decode(yaml: &str) -> Vec<Resource> {
    sectl::manifest::decode("test.yaml", yaml.as_bytes())
        .unwrap_or_else(|e| panic!("test YAML does not decode: {e:?}\n{yaml}"))
        .into_iter()
        .map(|d| d.resource)
        .collect()
}

fn args(cmd: &str) -> Vec<String> {
    cmd.split_whitespace().map(String::from).collect()
}

impl Site {
    fn empty(opts: Options) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(dir.path()).expect("open store"));
        Site::on(dir, store, opts)
    }

    fn on(dir: tempfile::TempDir, store: Arc<SledStore>, opts: Options) -> Site {
        let ctl = Controller::new(store.clone() as Arc<dyn Store>, opts).expect("controller");
        Site { dir, store, ctl }
    }

    fn new(yaml: &str) -> Site {
        Site::with(yaml, Options::default())
    }

    fn with(yaml: &str, opts: Options) -> Site {
        let mut s = Site::empty(opts);
        s.apply(yaml);
        s
    }

    /// Writes the objects (no reconcile).
    fn write(&self, yaml: &str) -> Vec<(ApplyOutcome, Resource)> {
        self.store.apply(decode(yaml), false).expect("apply")
    }

    /// Writes the objects and runs the controller until quiet.
    fn apply(&mut self, yaml: &str) {
        self.write(yaml);
        self.settle();
    }

    fn delete(&mut self, kind: Kind, name: &str) {
        self.store.delete(kind, name).expect("delete");
        self.settle();
    }

    fn settle(&mut self) {
        self.ctl.run_until_quiet().expect("run_until_quiet");
    }

    /// `sectl sim ...` without settling.
    fn fault(&mut self, cmd: &str) {
        let f = Fault::parse(&args(cmd)).unwrap_or_else(|e| panic!("{cmd}: {e}"));
        self.ctl.apply_fault(&f).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }

    /// `sectl sim ...` and settle.
    fn sim(&mut self, cmd: &str) {
        self.fault(cmd);
        self.settle();
    }

    fn typed<S: KindSpec + 'static>(&self, name: &str) -> Object<S, S::Status> {
        let r = self.store.get(S::KIND, name).expect("get").unwrap_or_else(|| panic!("{} {name} missing", S::KIND));
        r.as_typed::<S>().expect("typed").clone()
    }

    fn mc(&self, name: &str) -> Object<ManagementClusterSpec, sectl::api::ManagementClusterStatus> {
        self.typed::<ManagementClusterSpec>(name)
    }

    fn suc(&self, name: &str) -> Object<SUClusterSpec, sectl::api::SUClusterStatus> {
        self.typed::<SUClusterSpec>(name)
    }

    fn se(&self, name: &str) -> Object<SEServerSpec, sectl::api::SEServerStatus> {
        self.typed::<SEServerSpec>(name)
    }

    fn mc_state(&self, name: &str) -> ClusterState {
        self.mc(name).status.state.unwrap_or_else(|| panic!("mc {name} has no state"))
    }

    fn suc_state(&self, name: &str) -> ClusterState {
        self.suc(name).status.state.unwrap_or_else(|| panic!("suc {name} has no state"))
    }

    fn events(&self) -> Vec<Event> {
        self.store.events().expect("events")
    }

    fn last_seq(&self) -> u64 {
        self.events().last().map(|e| e.seq).unwrap_or(0)
    }

    fn events_since(&self, seq: u64) -> Vec<Event> {
        self.events().into_iter().filter(|e| e.seq > seq).collect()
    }

    /// Every object's status as JSON, by "Kind/name".
    fn statuses(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        for k in Kind::ALL {
            for r in self.store.list(*k).expect("list").0 {
                out.insert(r.key(), r.status_json());
            }
        }
        out
    }
}

fn cond<'a>(conds: &'a [Condition], t: &str) -> &'a Condition {
    conds.iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("no condition {t} in {conds:#?}"))
}

fn has_cond(conds: &[Condition], t: &str) -> bool {
    conds.iter().any(|c| c.type_ == t)
}

fn assert_cond(conds: &[Condition], t: &str, status: ConditionStatus, reason: &str) {
    let c = cond(conds, t);
    assert_eq!((c.status, c.reason.as_str()), (status, reason), "condition {t}: {c:#?}");
}

fn reasons_mention(reasons: &[String], needle: &str) -> bool {
    reasons.iter().any(|r| r.contains(needle))
}

// ---------------------------------------------------------------------------------
// SEServer
// ---------------------------------------------------------------------------------

#[test]
fn server_units_are_powered_on_at_creation_and_reported() {
    let mut s = Site::new(&site());
    let se = s.se("se701");
    let units: Vec<(&str, &str, &str, &str)> = se
        .status
        .units
        .iter()
        .map(|u| (u.name.as_str(), u.unit_type.as_str(), u.power.as_str(), u.state.as_str()))
        .collect();
    assert_eq!(
        units,
        vec![
            ("abgwhite", "MU", "ON", "RUNNING"),
            ("abgblack", "MU", "ON", "RUNNING"),
            ("ABGSE701", "SU", "ON", "RUNNING"),
            ("ABGSE70X1", "SU", "ON", "RUNNING"),
            ("ABGSE70X2", "SU", "ON", "RUNNING"),
        ]
    );
    assert_cond(&se.status.conditions, "Ready", ConditionStatus::True, "AllUnitsOn");
    assert_eq!(se.status.observed_generation, se.metadata.generation);
    assert_eq!(cond(&se.status.conditions, "Ready").observed_generation, se.metadata.generation);
    let w = s.ctl.world();
    for u in ["abgwhite", "abgblack", "ABGSE701", "ABGSE70X1", "ABGSE70X2", "abggreen", "abgblue", "ABGSE501"] {
        assert!(w.powered(u), "{u} powered on at creation");
    }

    let before = s.last_seq();
    s.sim("power off ABGSE701");
    let se = s.se("se701");
    let u = se.status.units.iter().find(|u| u.name == "ABGSE701").expect("unit");
    assert_eq!((u.power.as_str(), u.state.as_str()), ("OFF", "DOWN"));
    assert_cond(&se.status.conditions, "Ready", ConditionStatus::False, "UnitsPoweredOff");
    assert!(cond(&se.status.conditions, "Ready").message.contains("ABGSE701"));
    let evs = s.events_since(before);
    assert!(
        evs.iter().any(|e| e.component == "Sys-Mgmt"
            && e.object == "SEServer/se701"
            && e.reason == "UnitDeactivated"
            && e.message.contains("ABGSE701")),
        "{evs:#?}"
    );

    s.sim("power on ABGSE701");
    let se = s.se("se701");
    let u = se.status.units.iter().find(|u| u.name == "ABGSE701").expect("unit");
    assert_eq!((u.power.as_str(), u.state.as_str()), ("ON", "RUNNING"));
    assert_cond(&se.status.conditions, "Ready", ConditionStatus::True, "AllUnitsOn");
}

#[test]
fn a_fault_on_an_unknown_unit_is_refused() {
    let mut s = Site::new(&site());
    let f = Fault::parse(&args("power off nosuchmu")).expect("parses");
    let e = s.ctl.apply_fault(&f).expect_err("unknown unit");
    assert!(e.to_string().contains("nosuchmu"), "{e}");
    assert!(Fault::parse(&args("power sideways abgwhite")).is_err());
    assert!(s.ctl.apply_fault(&Fault::parse(&args("disk fail nodisk")).unwrap()).is_err());
    assert!(s.ctl.apply_fault(&Fault::parse(&args("link down nomc")).unwrap()).is_err());
}

// ---------------------------------------------------------------------------------
// ManagementCluster
// ---------------------------------------------------------------------------------

#[test]
fn management_cluster_prerequisites_met_gives_normal() {
    let s = Site::new(&site());
    let mc = s.mc("mc");
    let c = &mc.status.conditions;
    assert_cond(c, "Prerequisites", ConditionStatus::True, "Met");
    assert_cond(c, "IslE", ConditionStatus::True, "Up");
    assert_cond(c, "ConfigDisks", ConditionStatus::True, "Ok");
    assert_cond(c, "ClusterManager", ConditionStatus::True, "Active");
    assert_cond(c, "Ready", ConditionStatus::True, "FunctionsAvailable");
    assert_cond(c, "Redundant", ConditionStatus::True, "FullRedundancy");
    assert_cond(c, "GlobalObjectsUnambiguous", ConditionStatus::True, "Unambiguous");
    assert!(!has_cond(c, "Inhomogeneous"));
    assert_eq!(mc.status.state, Some(ClusterState::Normal));
    assert!(mc.status.reasons.is_empty(), "{:?}", mc.status.reasons);
    assert_eq!(mc.status.observed_generation, mc.metadata.generation);
    for c in c {
        assert_eq!(c.observed_generation, mc.metadata.generation, "{c:?}");
        assert!(c.last_transition_time.is_some(), "{c:?}");
    }
    // Every MU of both servers, with power, disks and heartbeat.
    let mus: Vec<(&str, &str, &str, &str, &str)> = mc
        .status
        .management_units
        .iter()
        .map(|m| (m.name.as_str(), m.server.as_str(), m.power.as_str(), m.config_disks.as_str(), m.heartbeat.as_str()))
        .collect();
    assert_eq!(
        mus,
        vec![
            ("abgwhite", "se701", "ON", "OK", "OK"),
            ("abgblack", "se701", "ON", "OK", "OK"),
            ("abggreen", "se501", "ON", "OK", "OK"),
            ("abgblue", "se501", "ON", "OK", "OK"),
        ]
    );
}

#[test]
fn management_cluster_needs_exactly_two_servers() {
    for servers in ["[se701]", "[se701, se501, se300]", "[se701, se701]"] {
        let yaml = format!(
            "apiVersion: sectl.io/v1alpha1\nkind: ManagementCluster\nmetadata: {{name: mc}}\nspec:\n  servers: {servers}\n"
        );
        let errs = sectl::manifest::decode("mc.yaml", yaml.as_bytes()).expect_err(servers);
        assert!(errs.iter().any(|e| e.to_string().contains("servers")), "{servers}: {errs:?}");
    }
}

#[test]
fn missing_isl_e_and_config_disks_are_conditions_and_errors() {
    let bare = r#"apiVersion: sectl.io/v1alpha1
kind: ManagementCluster
metadata: {name: mc}
spec: {servers: [se701, se501]}
"#;
    let s = Site::new(&[SE701, SE501, bare].join("---\n"));
    let mc = s.mc("mc");
    let c = &mc.status.conditions;
    assert_cond(c, "Prerequisites", ConditionStatus::False, "Missing");
    assert!(cond(c, "Prerequisites").message.contains("no ISL-E"));
    assert!(cond(c, "Prerequisites").message.contains("no external configuration disk"));
    assert_cond(c, "IslE", ConditionStatus::False, "NoIslE");
    assert_cond(c, "ConfigDisks", ConditionStatus::False, "NoExternalDisk");
    assert_cond(c, "Ready", ConditionStatus::False, "FunctionsLost");
    assert_eq!(mc.status.state, Some(ClusterState::Error));
    assert!(reasons_mention(&mc.status.reasons, "ISL-E"), "{:?}", mc.status.reasons);
    assert!(reasons_mention(&mc.status.reasons, "configuration disk"), "{:?}", mc.status.reasons);
    // Still: one Cluster Manager on a powered MU.
    assert!(mc.status.cluster_manager.as_deref().is_some_and(|m| MUS.contains(&m)));
}

#[test]
fn a_server_that_does_not_exist_fails_the_prerequisites() {
    let mut s = Site::new(&[SE701, MC].join("---\n"));
    let mc = s.mc("mc");
    assert_cond(&mc.status.conditions, "Prerequisites", ConditionStatus::False, "ServerNotFound");
    assert!(cond(&mc.status.conditions, "Prerequisites").message.contains("se501"));
    assert_eq!(mc.status.state, Some(ClusterState::Error));
    // The server appears: the cluster is woken and recovers.
    s.apply(SE501);
    let mc = s.mc("mc");
    assert_cond(&mc.status.conditions, "Prerequisites", ConditionStatus::True, "Met");
    assert_eq!(mc.status.state, Some(ClusterState::Normal));
}

#[test]
fn a_server_in_two_management_clusters_is_refused_on_the_later_one() {
    let mut s = Site::new(&site());
    let second = r#"apiVersion: sectl.io/v1alpha1
kind: ManagementCluster
metadata: {name: amc-later}
spec:
  servers: [se701, se501]
  islE: {bandwidthGbps: 10}
  configDisks: [{name: crd-x}]
"#;
    s.apply(second);
    let later = s.mc("amc-later");
    assert_cond(&later.status.conditions, "Prerequisites", ConditionStatus::False, "ServerInAnotherCluster");
    assert!(cond(&later.status.conditions, "Prerequisites").message.contains("management cluster mc"));
    assert_eq!(later.status.state, Some(ClusterState::Error));
    let first = s.mc("mc");
    assert_cond(&first.status.conditions, "Prerequisites", ConditionStatus::True, "Met");
    assert_eq!(first.status.state, Some(ClusterState::Normal));
}

#[test]
fn cluster_manager_runs_on_one_powered_mu_and_moves_when_it_fails() {
    let mut s = Site::new(&site());
    let cm = s.mc("mc").status.cluster_manager.expect("a Cluster Manager");
    assert!(MUS.contains(&cm.as_str()));
    assert_eq!(s.ctl.world().cluster_managers.get("mc"), Some(&cm));
    assert_cond(&s.mc("mc").status.conditions, "ClusterManager", ConditionStatus::True, "Active");

    // Its MU fails: another powered MU takes the role.
    let before = s.last_seq();
    s.sim(&format!("power off {cm}"));
    let mc = s.mc("mc");
    let moved = mc.status.cluster_manager.clone().expect("still a Cluster Manager");
    assert_ne!(moved, cm);
    assert!(s.ctl.world().powered(&moved));
    assert_eq!(s.ctl.world().cluster_managers.get("mc"), Some(&moved));
    assert!(cond(&mc.status.conditions, "ClusterManager").message.contains(&moved));
    let evs = s.events_since(before);
    assert!(
        evs.iter().any(|e| e.reason == "ClusterManagerMoved" && e.message.contains(&cm) && e.message.contains(&moved)),
        "{evs:#?}"
    );
    let off = mc.status.management_units.iter().find(|m| m.name == cm).expect("listed");
    assert_eq!((off.power.as_str(), off.heartbeat.as_str()), ("OFF", "NO_ANSWER"));

    // The old MU comes back: the Cluster Manager stays where it is.
    s.sim(&format!("power on {cm}"));
    assert_eq!(s.mc("mc").status.cluster_manager.as_deref(), Some(moved.as_str()));
    assert_eq!(s.mc_state("mc"), ClusterState::Normal);

    // All MUs off: none; ERROR. One back: it is the Cluster Manager.
    for m in MUS {
        s.sim(&format!("power off {m}"));
        let mc = s.mc("mc");
        match &mc.status.cluster_manager {
            Some(c) => assert!(s.ctl.world().powered(c), "{c} is the CM but off"),
            None => assert!(MUS.iter().all(|m| !s.ctl.world().powered(m))),
        }
    }
    let mc = s.mc("mc");
    assert_eq!(mc.status.cluster_manager, None);
    assert!(!s.ctl.world().cluster_managers.contains_key("mc"));
    assert_cond(&mc.status.conditions, "ClusterManager", ConditionStatus::False, "NoMu");
    assert_eq!(mc.status.state, Some(ClusterState::Error));
    s.sim("power on abgblue");
    assert_eq!(s.mc("mc").status.cluster_manager.as_deref(), Some("abgblue"));
    assert_eq!(s.mc_state("mc"), ClusterState::Warning);
}

#[test]
fn management_cluster_state_has_a_reason_per_cause() {
    let mut s = Site::new(&site());

    // An MU off: WARNING (redundancy lost), the heartbeat misses it.
    s.sim("power off abgblack");
    let mc = s.mc("mc");
    assert_eq!(mc.status.state, Some(ClusterState::Warning));
    assert_eq!(mc.status.reasons.len(), 1, "{:?}", mc.status.reasons);
    assert!(mc.status.reasons[0].contains("abgblack") && mc.status.reasons[0].contains("heartbeat"));
    assert_cond(&mc.status.conditions, "Ready", ConditionStatus::True, "FunctionsAvailable");
    assert_cond(&mc.status.conditions, "Redundant", ConditionStatus::False, "RedundancyLost");

    // One of the two CRD disks fails as well: still WARNING, two reasons.
    s.sim("disk fail crd-a");
    let mc = s.mc("mc");
    assert_eq!(mc.status.state, Some(ClusterState::Warning));
    assert_eq!(mc.status.reasons.len(), 2, "{:?}", mc.status.reasons);
    assert!(reasons_mention(&mc.status.reasons, "crd-a"));
    assert_cond(&mc.status.conditions, "ConfigDisks", ConditionStatus::False, "DiskFailed");
    assert!(mc.status.management_units.iter().all(|m| m.config_disks == "DEGRADED"));

    // No CRD disk left: ERROR.
    s.sim("disk fail crd-b");
    let mc = s.mc("mc");
    assert_eq!(mc.status.state, Some(ClusterState::Error));
    assert_cond(&mc.status.conditions, "ConfigDisks", ConditionStatus::False, "AllDisksFailed");
    assert_cond(&mc.status.conditions, "Ready", ConditionStatus::False, "FunctionsLost");
    assert!(reasons_mention(&mc.status.reasons, "CRD lost"));
    assert!(reasons_mention(&mc.status.reasons, "abgblack"), "the MU cause stays listed");

    s.sim("disk repair crd-a");
    s.sim("disk repair crd-b");
    s.sim("power on abgblack");
    assert_eq!(s.mc_state("mc"), ClusterState::Normal);
    assert!(s.mc("mc").status.reasons.is_empty());

    // ISL-E down: ERROR; the MUs of the other server no longer answer the heartbeat.
    s.sim("link down mc");
    let mc = s.mc("mc");
    assert_eq!(mc.status.state, Some(ClusterState::Error));
    assert_cond(&mc.status.conditions, "IslE", ConditionStatus::False, "Down");
    assert!(reasons_mention(&mc.status.reasons, "ISL-E down"));
    let cm = mc.status.cluster_manager.clone().expect("cm");
    let cm_server = mc.status.management_units.iter().find(|m| m.name == cm).expect("cm listed").server.clone();
    for m in &mc.status.management_units {
        let expect = if m.server == cm_server { "OK" } else { "NO_ANSWER" };
        assert_eq!(m.heartbeat, expect, "{m:?} (CM on {cm_server})");
    }
    s.sim("link up mc");
    let mc = s.mc("mc");
    assert_eq!(mc.status.state, Some(ClusterState::Normal));
    assert_cond(&mc.status.conditions, "IslE", ConditionStatus::True, "Up");
    assert!(mc.status.management_units.iter().all(|m| m.heartbeat == "OK"));
}

#[test]
fn a_single_config_disk_lost_is_an_error() {
    let one_disk = MC.replace("configDisks: [{name: crd-a}, {name: crd-b}]", "configDisks: [{name: crd-a}]");
    let mut s = Site::new(&[SE701, SE501, &one_disk].join("---\n"));
    assert_eq!(s.mc_state("mc"), ClusterState::Normal);
    s.sim("disk fail crd-a");
    assert_eq!(s.mc_state("mc"), ClusterState::Error);
    assert_cond(&s.mc("mc").status.conditions, "ConfigDisks", ConditionStatus::False, "AllDisksFailed");
}

#[test]
fn an_isl_e_outside_the_recommendations_is_noted() {
    let slow = MC.replace("islE: {bandwidthGbps: 10, rttMs: 1}", "islE: {bandwidthGbps: 0.5, rttMs: 7, lengthKm: 20}");
    let s = Site::new(&[SE701, SE501, &slow].join("---\n"));
    let mc = s.mc("mc");
    assert_cond(&mc.status.conditions, "IslERecommended", ConditionStatus::False, "OutsideRecommendation");
    let m = &cond(&mc.status.conditions, "IslERecommended").message;
    assert!(m.contains("1 Gbit/s") && m.contains("5 ms") && m.contains("15 km"), "{m}");
    assert_eq!(mc.status.state, Some(ClusterState::Normal), "recommendations are not enforced");
}

#[test]
fn an_inhomogeneous_cluster_names_the_restrictions() {
    let v62 = SE501.replace("version: V6.3", "version: V6.2");
    let mut s = Site::new(&[SE701, &v62, MC].join("---\n"));
    let mc = s.mc("mc");
    assert_cond(&mc.status.conditions, "Inhomogeneous", ConditionStatus::True, "MixedVersions");
    let m = &cond(&mc.status.conditions, "Inhomogeneous").message;
    for needle in ["se701 V6.3", "se501 V6.2", "NOT_MONITORED", "IORSF", "SVP console", "shadow terminal", "hot fix"] {
        assert!(m.contains(needle), "{needle:?} not in {m}");
    }
    assert_eq!(mc.status.state, Some(ClusterState::Normal), "an inhomogeneous cluster works");
    // Upgraded: the condition goes.
    s.apply(SE501);
    assert!(!has_cond(&s.mc("mc").status.conditions, "Inhomogeneous"));
}

#[test]
fn conflicting_global_objects_are_reported_not_resolved() {
    let with_globals = |server: &str, role: &str, address: &str| {
        let base = if server == "se701" { SE701 } else { SE501 };
        format!(
            "{base}  globalObjects:\n    accounts:\n      - {{name: admin, role: {role}}}\n      - {{name: only{server}, role: operator}}\n    alarmReceivers:\n      - {{name: ops, type: mail, address: {address}}}\n    fcSwitches:\n      - {{name: fcsw, monitored: true}}\n"
        )
    };
    let a = with_globals("se701", "administrator", "ops@example.com");
    let b = with_globals("se501", "operator", "other@example.com");
    let mut s = Site::new(&[a.as_str(), b.as_str(), MC].join("---\n"));
    let mc = s.mc("mc");
    assert_cond(&mc.status.conditions, "GlobalObjectsUnambiguous", ConditionStatus::False, "Conflicts");
    let m = cond(&mc.status.conditions, "GlobalObjectsUnambiguous").message.clone();
    assert!(m.contains("account admin") && m.contains("role"), "{m}");
    assert!(m.contains("alarm receiver ops"), "{m}");
    assert!(!m.contains("fcsw"), "identical objects are no conflict: {m}");
    assert!(!m.contains("onlyse"), "objects on one server only are no conflict: {m}");
    assert_eq!(mc.status.state, Some(ClusterState::Warning));
    assert!(reasons_mention(&mc.status.reasons, "conflicting global objects"));
    let evs = s.events();
    let conflicts: Vec<&Event> = evs.iter().filter(|e| e.reason == "GlobalObjectConflict").collect();
    assert_eq!(conflicts.len(), 1, "logged once: {evs:#?}");
    assert_eq!(conflicts[0].object, "ManagementCluster/mc");
    // Not silently resolved: both servers keep their own settings.
    let role = |n: &str| format!("{:?}", s.se(n).spec.global_objects.accounts[0].role);
    assert_eq!(role("se701"), "Administrator");
    assert_eq!(role("se501"), "Operator");

    // Made identical: unambiguous, NORMAL.
    s.apply(&with_globals("se501", "administrator", "ops@example.com"));
    let mc = s.mc("mc");
    assert_cond(&mc.status.conditions, "GlobalObjectsUnambiguous", ConditionStatus::True, "Unambiguous");
    assert_eq!(mc.status.state, Some(ClusterState::Normal));
}

// ---------------------------------------------------------------------------------
// SUCluster
// ---------------------------------------------------------------------------------

#[test]
fn su_clusters_are_normal_and_the_390_one_lists_the_mus() {
    let s = Site::new(&site());
    let su = s.suc("su390");
    assert_eq!(su.status.state, Some(ClusterState::Normal));
    assert_eq!(su.status.su_type.as_deref(), Some("/390"));
    assert!(su.status.reasons.is_empty(), "{:?}", su.status.reasons);
    assert_cond(&su.status.conditions, "Prerequisites", ConditionStatus::True, "Met");
    assert_cond(&su.status.conditions, "Ready", ConditionStatus::True, "LiveMigrationPossible");
    assert_eq!(su.status.observed_generation, su.metadata.generation);
    let mus: Vec<(&str, &str)> =
        su.status.management_units.iter().map(|u| (u.name.as_str(), u.power.as_str())).collect();
    assert_eq!(mus, vec![("abgwhite", "ON"), ("abgblack", "ON"), ("abggreen", "ON"), ("abgblue", "ON")]);

    let x = s.suc("sux86");
    assert_eq!(x.status.state, Some(ClusterState::Normal));
    assert_eq!(x.status.su_type.as_deref(), Some("x86"));
    assert!(x.status.management_units.is_empty(), "only SU /390 clusters list the MUs");
}

#[test]
fn an_su_off_is_error_an_mu_off_is_warning_inactive_wins() {
    let mut s = Site::new(&site());
    s.sim("power off ABGSE501");
    let su = s.suc("su390");
    assert_eq!(su.status.state, Some(ClusterState::Error));
    assert!(reasons_mention(&su.status.reasons, "SU ABGSE501 is powered off"), "{:?}", su.status.reasons);
    assert_cond(&su.status.conditions, "Ready", ConditionStatus::False, "FunctionsLost");
    assert_eq!(s.suc_state("sux86"), ClusterState::Normal, "the x86 cluster is not concerned");
    s.sim("power on ABGSE501");
    assert_eq!(s.suc_state("su390"), ClusterState::Normal);

    s.sim("power off abggreen");
    let su = s.suc("su390");
    assert_eq!(su.status.state, Some(ClusterState::Warning));
    assert!(reasons_mention(&su.status.reasons, "MU abggreen"), "{:?}", su.status.reasons);
    let green = su.status.management_units.iter().find(|u| u.name == "abggreen").expect("listed");
    assert_eq!(green.power, "OFF");
    assert_eq!(s.suc_state("sux86"), ClusterState::Normal, "abggreen is not an MU of se701");
    s.sim("power off abgwhite");
    // Manual s3.3: "In case of SU /390, the MUs and their resources are also important
    // for the cluster functionality" -- an SU x86 cluster does not depend on the MUs
    // (issue 12, item 5; this test expected WARNING before).
    assert_eq!(s.suc_state("sux86"), ClusterState::Normal, "an MU of its server is off: no matter for SU x86");

    // Deactivated: INACTIVE whatever else holds.
    s.apply(&SUX86.replace("active: true", "active: false"));
    let x = s.suc("sux86");
    assert_eq!(x.status.state, Some(ClusterState::Inactive));
    assert_cond(&x.status.conditions, "Ready", ConditionStatus::False, "Deactivated");
    assert_eq!(x.status.observed_generation, Some(2));
    let evs = s.events();
    let e = evs.iter().rev().find(|e| e.object == "SUCluster/sux86").expect("event");
    assert_eq!(
        (e.reason.as_str(), e.priority.as_str(), e.component.as_str()),
        ("SUClusterInactive", "NOTICE", "Cluster")
    );
    s.sim("power off ABGSE70X1");
    assert_eq!(s.suc_state("sux86"), ClusterState::Inactive);
    s.apply(SUX86);
    assert_eq!(s.suc_state("sux86"), ClusterState::Error);
}

#[test]
fn an_su_390_without_a_running_mu_in_its_server_is_not_operable() {
    // Manual, glossary "Redundant SKP functionality": an SU /390 is only operable if at
    // least one MU of its server is running.
    let mut s = Site::new(&site());
    s.sim("power off abggreen");
    assert_eq!(s.suc_state("su390"), ClusterState::Warning);
    s.sim("power off abgblue");
    let su = s.suc("su390");
    assert_eq!(su.status.state, Some(ClusterState::Error), "{:?}", su.status.reasons);
    assert!(reasons_mention(&su.status.reasons, "ABGSE501"), "{:?}", su.status.reasons);
    // The Management Cluster keeps its functions on se701's MUs.
    assert_eq!(s.mc_state("mc"), ClusterState::Warning);
    s.sim("power on abgblue");
    assert_eq!(s.suc_state("su390"), ClusterState::Warning);
}

#[test]
fn an_su_belongs_to_one_su_cluster_only_the_later_claim_is_refused() {
    let mut s = Site::new(&[SE701, SE501, MC].join("---\n"));
    let first = "apiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {name: zz-first}\nspec: {serverUnits: [ABGSE701, ABGSE501]}\n";
    // Named to sort first, created second (within the same second, most likely).
    let later = "apiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {name: aa-later}\nspec: {serverUnits: [ABGSE501, ABGSE701]}\n";
    s.apply(first);
    assert_eq!(s.suc_state("zz-first"), ClusterState::Normal);
    s.apply(later);
    let l = s.suc("aa-later");
    assert_eq!(l.status.state, Some(ClusterState::Error));
    assert_cond(&l.status.conditions, "Prerequisites", ConditionStatus::False, "ServerUnitInAnotherCluster");
    let m = &cond(&l.status.conditions, "Prerequisites").message;
    assert!(m.contains("SU ABGSE501 already belongs to SU cluster zz-first"), "{m}");
    assert!(m.contains("SU ABGSE701 already belongs to SU cluster zz-first"), "{m}");
    let f = s.suc("zz-first");
    assert_eq!(f.status.state, Some(ClusterState::Normal), "the first claim keeps its SUs: {:?}", f.status.reasons);
    assert_cond(&f.status.conditions, "Prerequisites", ConditionStatus::True, "Met");

    // A later reconcile of everything changes nothing.
    s.sim("power on abgwhite");
    assert_eq!(s.suc_state("zz-first"), ClusterState::Normal);
    assert_eq!(s.suc_state("aa-later"), ClusterState::Error);

    // The first cluster goes: the later one is woken and gets the SUs.
    s.delete(Kind::SUCluster, "zz-first");
    let l = s.suc("aa-later");
    assert_eq!(l.status.state, Some(ClusterState::Normal), "{:?}", l.status.reasons);
    assert_cond(&l.status.conditions, "Prerequisites", ConditionStatus::True, "Met");
}

#[test]
fn two_claims_in_one_apply_give_the_su_to_exactly_one() {
    let mut s = Site::new(&[SE701, SE501, MC].join("---\n"));
    let two = "apiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {name: c-one}\nspec: {serverUnits: [ABGSE701, ABGSE501]}\n---\napiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {name: c-two}\nspec: {serverUnits: [ABGSE701, ABGSE501]}\n";
    s.apply(two);
    let states = [s.suc_state("c-one"), s.suc_state("c-two")];
    assert_eq!(
        states.iter().filter(|x| **x == ClusterState::Normal).count(),
        1,
        "exactly one keeps the SUs: {states:?}"
    );
    assert_eq!(states.iter().filter(|x| **x == ClusterState::Error).count(), 1);
}

#[test]
fn across_two_servers_an_su_cluster_needs_a_management_cluster() {
    let mut s = Site::new(&[SE701, SE501, SU390].join("---\n"));
    let su = s.suc("su390");
    assert_eq!(su.status.state, Some(ClusterState::Error));
    assert_cond(&su.status.conditions, "Prerequisites", ConditionStatus::False, "NoManagementCluster");
    // The Management Cluster appears: the SU cluster is woken and becomes NORMAL.
    s.apply(MC);
    assert_eq!(s.suc_state("su390"), ClusterState::Normal);
    // A Management Cluster in ERROR takes the SU cluster's functions with it.
    s.sim("link down mc");
    let su = s.suc("su390");
    assert_eq!(su.status.state, Some(ClusterState::Error));
    assert!(reasons_mention(&su.status.reasons, "management cluster mc is in ERROR"), "{:?}", su.status.reasons);
    s.sim("link up mc");
    // One lost CRD disk of the Management Cluster is lost redundancy for it too.
    s.sim("disk fail crd-b");
    let su = s.suc("su390");
    assert_eq!(su.status.state, Some(ClusterState::Warning));
    assert!(reasons_mention(&su.status.reasons, "crd-b"), "{:?}", su.status.reasons);
    s.sim("disk repair crd-b");
    // Deleted again: ERROR again.
    s.delete(Kind::ManagementCluster, "mc");
    assert_cond(&s.suc("su390").status.conditions, "Prerequisites", ConditionStatus::False, "NoManagementCluster");
}

const SE300: &str = r#"apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: se300}
spec:
  model: SE300
  version: V6.3
  managementUnits: [{name: mu300}]
  serverUnits:
    - {name: S3901, type: "390", cpus: 2, memoryMiB: 8192}
    - {name: S3902, type: "390", cpus: 2, memoryMiB: 8192}
    - {name: X861, type: x86, cpus: 4, memoryMiB: 16384}
    - {name: X862, type: x86, cpus: 4, memoryMiB: 16384}
    - {name: X863, type: x86, cpus: 4, memoryMiB: 16384, operationMode: Native}
"#;

fn su_cluster(name: &str, a: &str, b: &str) -> String {
    format!("apiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {{name: {name}}}\nspec: {{serverUnits: [{a}, {b}]}}\n")
}

#[test]
fn inside_one_server_only_su_x86_with_the_crd() {
    let clusters = [su_cluster("x86", "X861", "X862"), su_cluster("s390", "S3901", "S3902")].join("---\n");
    let mut s = Site::new(&[SE300, &clusters].join("---\n"));
    let x = s.suc("x86");
    assert_eq!(x.status.state, Some(ClusterState::Error));
    assert_cond(&x.status.conditions, "Prerequisites", ConditionStatus::False, "NoCrd");
    let z = s.suc("s390");
    assert_eq!(z.status.state, Some(ClusterState::Error));
    assert_cond(&z.status.conditions, "Prerequisites", ConditionStatus::False, "SameServer390");

    // The server gets its external configuration disks: the x86 cluster works.
    let with_disks = format!("{SE300}  configDisks: [{{name: d300a}}, {{name: d300b}}]\n");
    s.apply(&with_disks);
    let x = s.suc("x86");
    assert_eq!(x.status.state, Some(ClusterState::Normal), "{:?}", x.status.reasons);
    assert_cond(&x.status.conditions, "Prerequisites", ConditionStatus::True, "Met");
    assert_eq!(s.suc_state("s390"), ClusterState::Error, "SU /390 never inside one server");

    s.sim("disk fail d300a");
    let x = s.suc("x86");
    assert_eq!(x.status.state, Some(ClusterState::Warning));
    assert!(reasons_mention(&x.status.reasons, "configuration disk"), "{:?}", x.status.reasons);
    s.sim("disk fail d300b");
    let x = s.suc("x86");
    assert_eq!(x.status.state, Some(ClusterState::Error));
    assert!(reasons_mention(&x.status.reasons, "CRD lost"), "{:?}", x.status.reasons);
    s.sim("disk repair d300a");
    s.sim("disk repair d300b");
    assert_eq!(s.suc_state("x86"), ClusterState::Normal);
}

#[test]
fn su_cluster_prerequisites_unknown_su_and_type_mismatch() {
    let clusters = [su_cluster("mixed", "S3901", "X861"), su_cluster("ghost", "X862", "NOSUCH")].join("---\n");
    let with_disks = format!("{SE300}  configDisks: [{{name: d300a}}]\n");
    let mut s = Site::new(&[with_disks.as_str(), &clusters].join("---\n"));
    let m = s.suc("mixed");
    assert_eq!(m.status.state, Some(ClusterState::Error));
    assert_cond(&m.status.conditions, "Prerequisites", ConditionStatus::False, "TypeMismatch");
    let g = s.suc("ghost");
    assert_eq!(g.status.state, Some(ClusterState::Error));
    assert_cond(&g.status.conditions, "Prerequisites", ConditionStatus::False, "ServerUnitNotFound");
    assert!(cond(&g.status.conditions, "Prerequisites").message.contains("NOSUCH"));

    // The SU appears in the server: the SEServer change wakes the SU cluster.
    let grown = with_disks.replace(
        "    - {name: X863,",
        "    - {name: NOSUCH, type: x86, cpus: 4, memoryMiB: 16384}\n    - {name: X863,",
    );
    s.apply(&grown);
    let g = s.suc("ghost");
    assert_eq!(g.status.state, Some(ClusterState::Normal), "{:?}", g.status.reasons);
}

// ---------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------

/// Position of the first event matching `f`, or a panic listing the events.
fn position(evs: &[Event], what: &str, f: impl Fn(&Event) -> bool) -> usize {
    evs.iter().position(f).unwrap_or_else(|| panic!("no event {what} in {evs:#?}"))
}

#[test]
fn powering_off_an_mu_logs_the_manuals_chain_in_order() {
    let mut s = Site::new(&site());
    let before = s.last_seq();
    s.sim("power off abgwhite");
    let evs = s.events_since(before);
    let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq increases: {seqs:?}");

    let deactivated = position(&evs, "MU deactivated (M2000)", |e| {
        e.component == "M2000" && e.reason == "UnitDeactivated" && e.message.contains("abgwhite")
    });
    let heartbeat = position(&evs, "heartbeat lost (Cluster, WARNING)", |e| {
        e.component == "Cluster"
            && e.priority == "WARNING"
            && e.reason == "HeartbeatLost"
            && e.object == "ManagementCluster/mc"
            && e.message.contains("abgwhite")
    });
    let mc = position(&evs, "management cluster WARNING (Cluster, WARNING)", |e| {
        e.component == "Cluster"
            && e.priority == "WARNING"
            && e.object == "ManagementCluster/mc"
            && e.reason == "ManagementClusterWarning"
    });
    let su = position(&evs, "SU /390 cluster WARNING (Cluster, WARNING)", |e| {
        e.component == "Cluster"
            && e.priority == "WARNING"
            && e.object == "SUCluster/su390"
            && e.reason == "SUClusterWarning"
            && e.message.contains("SU /390 cluster")
    });
    assert!(
        deactivated < heartbeat && heartbeat < mc && mc < su,
        "order: {deactivated} {heartbeat} {mc} {su}\n{evs:#?}"
    );
    assert!(evs[mc].message.contains("NORMAL -> WARNING"), "{}", evs[mc].message);
    assert!(evs[su].message.contains("NORMAL -> WARNING"), "{}", evs[su].message);
    for e in &evs {
        assert!(!e.priority.is_empty() && !e.component.is_empty() && !e.object.is_empty() && !e.message.is_empty());
        assert!(!e.acknowledged);
    }
    // The same chain with concurrency: still in that order.
    let mut c = Site::with(&site(), Options { concurrency: 4, ..Default::default() });
    let before = c.last_seq();
    c.sim("power off abgwhite");
    let evs = c.events_since(before);
    let order: Vec<usize> = [
        position(&evs, "M2000", |e| e.reason == "UnitDeactivated"),
        position(&evs, "heartbeat", |e| e.reason == "HeartbeatLost"),
        position(&evs, "mc", |e| e.reason == "ManagementClusterWarning"),
        position(&evs, "su390", |e| e.object == "SUCluster/su390" && e.reason == "SUClusterWarning"),
    ]
    .to_vec();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{evs:#?}");
}

#[test]
fn each_status_change_writes_one_event_and_a_repeat_writes_none() {
    let mut s = Site::new(&site());
    // Creation: each cluster's first state is logged once.
    let evs = s.events();
    for key in ["ManagementCluster/mc", "SUCluster/su390", "SUCluster/sux86"] {
        let n = evs.iter().filter(|e| e.object == key && e.component == "Cluster").count();
        assert_eq!(n, 1, "{key}: {evs:#?}");
    }
    s.sim("power off ABGSE701");
    let before = s.last_seq();
    // Nothing changes: nothing is logged.
    s.sim("power off ABGSE701");
    s.sim("advance 10m");
    assert_eq!(s.events_since(before), vec![], "a repeat logs nothing");
    s.sim("power on ABGSE701");
    let evs = s.events_since(before);
    assert!(evs.iter().any(|e| e.reason == "UnitActivated" && e.priority == "INFO"), "{evs:#?}");
    let su: Vec<&Event> = evs.iter().filter(|e| e.object == "SUCluster/su390").collect();
    assert_eq!(su.len(), 1, "{su:#?}");
    assert_eq!(su[0].reason, "SUClusterNormal");
    assert!(su[0].message.contains("ERROR -> NORMAL"), "{}", su[0].message);
    // Events carry simulated time.
    assert!(evs.iter().all(|e| e.time == s.ctl.world().clock.rfc3339()));
}

#[test]
fn events_can_be_acknowledged_all_at_once() {
    let mut s = Site::new(&site());
    s.sim("power off abgblack");
    let n = s.events().len();
    assert!(n > 0);
    assert_eq!(s.store.ack_events().expect("ack"), n);
    assert!(s.events().iter().all(|e| e.acknowledged));
    assert_eq!(s.store.ack_events().expect("ack"), 0);
    s.sim("power on abgblack");
    let evs = s.events();
    assert!(evs.iter().filter(|e| !e.acknowledged).count() > 0);
    assert_eq!(evs.iter().filter(|e| e.acknowledged).count(), n);
}

// ---------------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------------

#[test]
fn a_settled_world_does_no_status_writes() {
    let mut s = Site::new(&site());
    let st = s.ctl.stats.clone();
    assert!(st.status_writes > 0);
    s.settle();
    assert_eq!(s.ctl.stats.reconciles, st.reconciles, "nothing was due");
    assert_eq!(s.ctl.stats.status_writes, st.status_writes);

    // Everything woken, nothing changed: every write is skipped.
    let rv = s.store.resource_version();
    s.sim("power on abgwhite");
    assert!(s.ctl.stats.reconciles > st.reconciles);
    assert_eq!(s.ctl.stats.status_writes, st.status_writes, "no status changed");
    assert!(s.ctl.stats.skipped_writes > st.skipped_writes);
    assert_eq!(s.store.resource_version(), rv, "nothing written to the store");

    // A new controller on the same store resumes: zero writes.
    let dir = s.dir;
    let store = s.store;
    drop(s.ctl);
    let mut again = Site::on(dir, store, Options::default());
    again.settle();
    assert_eq!(again.ctl.stats.status_writes, 0);
    assert_eq!(again.ctl.stats.errors, 0);
}

#[test]
fn last_transition_time_moves_only_when_the_status_changes() {
    let mut s = Site::new(&site());
    let mc0 = s.mc("mc");
    let ltt = |o: &Object<ManagementClusterSpec, sectl::api::ManagementClusterStatus>, t: &str| {
        cond(&o.status.conditions, t).last_transition_time.clone().expect("set")
    };
    s.sim("advance 1h");
    s.sim("power on abgwhite"); // wakes everything, changes nothing
    let mc1 = s.mc("mc");
    assert_eq!(mc1.status, mc0.status, "nothing changed");

    // The ISL-E goes down: IslE and Ready change now, ConfigDisks keeps its time.
    s.sim("link down mc");
    let now = s.ctl.world().clock.rfc3339();
    let mc2 = s.mc("mc");
    assert_ne!(now, ltt(&mc0, "IslE"));
    assert_eq!(ltt(&mc2, "IslE"), now);
    assert_eq!(ltt(&mc2, "Ready"), now);
    assert_eq!(ltt(&mc2, "ConfigDisks"), ltt(&mc0, "ConfigDisks"));
    assert_eq!(ltt(&mc2, "Prerequisites"), ltt(&mc0, "Prerequisites"));

    // A condition whose reason and message change but not its status keeps its time.
    s.sim("advance 5m");
    s.sim("disk fail crd-a");
    let t_fail = ltt(&s.mc("mc"), "ConfigDisks");
    s.sim("advance 5m");
    s.sim("disk fail crd-b");
    let mc3 = s.mc("mc");
    assert_cond(&mc3.status.conditions, "ConfigDisks", ConditionStatus::False, "AllDisksFailed");
    assert_eq!(ltt(&mc3, "ConfigDisks"), t_fail);
    assert_eq!(ltt(&mc3, "IslE"), now, "IslE did not change again");
}

#[test]
fn observed_generation_follows_the_spec() {
    let mut s = Site::new(&site());
    assert_eq!(s.mc("mc").status.observed_generation, Some(1));
    s.apply(&MC.replace("bandwidthGbps: 10", "bandwidthGbps: 1"));
    let mc = s.mc("mc");
    assert_eq!(mc.metadata.generation, Some(2));
    assert_eq!(mc.status.observed_generation, Some(2));
    assert!(mc.status.conditions.iter().all(|c| c.observed_generation == Some(2)), "{:#?}", mc.status.conditions);
    assert!(cond(&mc.status.conditions, "IslE").message.contains("1 Gbit/s"));
    // Labels are no spec change: generation and observedGeneration stay.
    let labelled = MC.replace("metadata: {name: mc}", "metadata: {name: mc, labels: {site: augsburg}}");
    s.apply(&labelled.replace("bandwidthGbps: 10", "bandwidthGbps: 1"));
    let mc = s.mc("mc");
    assert_eq!((mc.metadata.generation, mc.status.observed_generation), (Some(2), Some(2)));
}

#[test]
fn related_objects_wake_each_other() {
    // Created in dependency-reverse order, in separate steps: each arrival wakes those
    // that depend on it.
    let mut s = Site::new(&[SU390, SUX86].join("---\n"));
    assert_cond(&s.suc("su390").status.conditions, "Prerequisites", ConditionStatus::False, "ServerUnitNotFound");
    s.apply(SE701);
    // sux86 now has its SUs, but no CRD (se701 has no disks and no cluster yet).
    assert_cond(&s.suc("sux86").status.conditions, "Prerequisites", ConditionStatus::False, "NoCrd");
    s.apply(SE501);
    assert_cond(&s.suc("su390").status.conditions, "Prerequisites", ConditionStatus::False, "NoManagementCluster");
    s.apply(MC);
    assert_eq!(s.suc_state("su390"), ClusterState::Normal);
    assert_eq!(s.suc_state("sux86"), ClusterState::Normal, "the cluster's CRD serves se701's SU x86");
    assert_eq!(s.mc_state("mc"), ClusterState::Normal);
}

#[test]
fn the_world_survives_a_restart_of_the_controller() {
    let mut s = Site::new(&site());
    s.sim("power off abgblack");
    s.sim("disk fail crd-a");
    let statuses = s.statuses();
    let world = s.ctl.world();
    let (dir, store) = (s.dir, s.store);
    drop(s.ctl);
    let mut again = Site::on(dir, store, Options::default());
    assert_eq!(again.ctl.world(), world);
    // Changes made while no controller ran are picked up.
    again.write(&SUX86.replace("active: true", "active: false"));
    again.settle();
    assert_eq!(again.suc_state("sux86"), ClusterState::Inactive);
    let mut now = again.statuses();
    now.remove("SUCluster/sux86");
    let mut then = statuses;
    then.remove("SUCluster/sux86");
    assert_eq!(now, then);
}

#[test]
fn an_expired_watch_history_makes_the_controller_list_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open_with_history(dir.path(), 4).expect("open"));
    let mut s = Site::on(dir, store, Options::default());
    s.apply(&site());
    assert_eq!(s.suc_state("sux86"), ClusterState::Normal);

    // More changes than the history keeps, while the controller does not look.
    s.write(&SUX86.replace("active: true", "active: false"));
    for i in 0..6 {
        s.write(&SE501.replace("location: Augsburg", &format!("location: Augsburg {i}")));
    }
    s.write(&SU390.replace("active: true", "active: false"));
    let rv = s.store.resource_version();
    assert!(matches!(s.store.watch_from(rv - 8), Err(StoreError::Expired { .. })));
    s.settle();
    assert_eq!(s.suc_state("sux86"), ClusterState::Inactive);
    assert_eq!(s.suc_state("su390"), ClusterState::Inactive);
    assert_eq!(s.ctl.stats.errors, 0);

    // The same when the controller starts after the history moved on.
    s.write(SUX86);
    for i in 0..6 {
        s.write(&SE501.replace("location: Augsburg", &format!("location: Augsburg {}", i + 10)));
    }
    let (dir, store) = (s.dir, s.store);
    drop(s.ctl);
    let mut again = Site::on(dir, store, Options::default());
    again.settle();
    assert_eq!(again.suc_state("sux86"), ClusterState::Normal);
    assert_eq!(again.suc_state("su390"), ClusterState::Inactive);
}

/// A larger site: `n` pairs of servers, each pair with a Management Cluster, an SU
/// /390 cluster across it and an SU x86 cluster inside its first server.
fn big_site(n: usize) -> String {
    let mut docs = Vec::new();
    for i in 0..n {
        for side in ["a", "b"] {
            let x86 = if side == "a" {
                format!(
                    "    - {{name: X{i}A1, type: x86, cpus: 4, memoryMiB: 8192}}\n    - {{name: X{i}A2, type: x86, cpus: 4, memoryMiB: 8192}}\n"
                )
            } else {
                String::new()
            };
            let disks = if side == "a" { format!("  configDisks: [{{name: d{i}a}}]\n") } else { String::new() };
            let up = side.to_uppercase();
            docs.push(format!(
                "apiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: s{i}{side}}}\nspec:\n  model: SE700\n  version: V6.3\n  managementUnits: [{{name: mu{i}{side}1}}, {{name: mu{i}{side}2}}]\n  serverUnits:\n    - {{name: SU{i}{up}, type: \"390\", cpus: 4, memoryMiB: 8192}}\n{x86}{disks}"
            ));
        }
        docs.push(format!(
            "apiVersion: sectl.io/v1alpha1\nkind: ManagementCluster\nmetadata: {{name: mc{i}}}\nspec:\n  servers: [s{i}a, s{i}b]\n  islE: {{bandwidthGbps: 10}}\n  configDisks: [{{name: crd{i}1}}, {{name: crd{i}2}}]\n"
        ));
        docs.push(su_cluster(&format!("c{i}"), &format!("SU{i}A"), &format!("SU{i}B")));
        docs.push(su_cluster(&format!("x{i}"), &format!("X{i}A1"), &format!("X{i}A2")));
    }
    docs.join("---\n")
}

/// Status JSON without the times (two worlds' clocks start at different wall times).
fn timeless(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(cs) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for c in cs {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastTransitionTime");
            }
        }
    }
    v
}

#[test]
fn concurrency_is_bounded_and_gives_the_same_result_as_one_at_a_time() {
    let yaml = big_site(6);
    let faults = [
        "power off mu0a1",
        "power off SU1B",
        "link down mc2",
        "disk fail crd31",
        "disk fail d4a",
        "power off mu5b1",
        "power off mu5b2",
        "power off X0A2",
    ];
    let run = |concurrency: usize| {
        let mut s = Site::with(&yaml, Options { concurrency, ..Default::default() });
        for f in faults {
            s.sim(f);
        }
        // Spec changes too: a server gains external disks, a cluster is deactivated.
        s.apply(
            &big_site(6)
                .split("---\n")
                .find(|d| d.contains("name: s1b}"))
                .unwrap()
                .replace("memoryMiB: 8192}\n", "memoryMiB: 8192}\n  configDisks: [{name: extra1b}]\n"),
        );
        s.apply(&su_cluster("x3", "X3A1", "X3A2").replace("]}", "], active: false}"));
        let statuses: BTreeMap<String, serde_json::Value> =
            s.statuses().into_iter().map(|(k, v)| (k, timeless(v))).collect();
        // What was logged, as a multiset (the order within a batch may differ).
        let mut events: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for e in s.events() {
            *events.entry((e.object, e.reason, e.message)).or_default() += 1;
        }
        (statuses, s.ctl.stats.clone(), s.ctl.world().cluster_managers.clone(), events)
    };
    let (one, st1, cm1, ev1) = run(1);
    let (four, st4, cm4, ev4) = run(4);
    assert_eq!(ev1, ev4, "the same events with concurrency 1 and 4");
    // No transient outages while the objects appear: every cluster starts NORMAL.
    for (object, reason, message) in ev1.keys() {
        assert_ne!(reason, "HeartbeatRestored", "{object}: {message}");
        if reason.contains("Cluster") && !reason.ends_with("Moved") && !message.contains("->") {
            assert!(reason.ends_with("Normal"), "{object} started {reason}: {message}");
        }
    }
    assert_eq!(st1.max_parallel, 1);
    assert!(st4.max_parallel > 1 && st4.max_parallel <= 4, "max_parallel {}", st4.max_parallel);
    assert_eq!(st1.errors + st4.errors, 0);
    assert_eq!(cm1, cm4);
    assert_eq!(one.len(), 6 * 5);
    for (k, v) in &one {
        assert_eq!(Some(v), four.get(k), "{k} differs between concurrency 1 and 4");
    }
    // Spot checks that the faults did something.
    assert_eq!(one["SUCluster/c1"]["state"], "ERROR");
    assert_eq!(one["ManagementCluster/mc2"]["state"], "ERROR");
    assert_eq!(one["ManagementCluster/mc3"]["state"], "WARNING");
    assert_eq!(one["SUCluster/x4"]["state"], "WARNING", "one of its CRD disks failed");
    assert_eq!(one["SUCluster/c5"]["state"], "ERROR", "no MU left in s5b: its SU /390 cannot be operated");
    assert_eq!(one["SUCluster/x3"]["state"], "INACTIVE");
    assert_eq!(one["SUCluster/x0"]["state"], "ERROR");
    assert_eq!(one["SUCluster/x2"]["state"], "NORMAL");
    // A fault on something that does not exist is refused.
    let mut s = Site::with(&big_site(1), Options { concurrency: 4, ..Default::default() });
    assert!(s.ctl.apply_fault(&Fault::parse(&args("disk fail crd3")).unwrap()).is_err());
    s.settle();
}

#[test]
fn scheduler_keeps_one_entry_per_object_and_backoff_grows() {
    let k = |n: &str| (Kind::SUCluster, n.to_string());
    let mut s = Scheduler::default();
    for t in [30, 10, 20, 10] {
        s.schedule(k("a"), t);
    }
    s.schedule(k("b"), 15);
    assert_eq!(s.len(), 2, "one entry per object");
    assert_eq!(s.items(), vec![(10, k("a")), (15, k("b"))], "the earliest time wins");
    let busy: BTreeSet<_> = [k("a")].into_iter().collect();
    assert_eq!(s.pop_due(100, &busy), Some(k("b")), "a busy object is not handed out twice");
    assert_eq!(s.pop_due(100, &busy), None);
    assert_eq!(s.pop_due(100, &BTreeSet::new()), Some(k("a")));
    assert!(s.is_empty());

    let mut b = Backoff::default();
    let delays: Vec<u64> = (0..4).map(|_| b.fail(&k("a"))).collect();
    assert_eq!(delays, vec![1000, 2000, 4000, 8000]);
    assert_eq!(b.failures(&k("a")), 4);
    assert_eq!(b.fail(&k("b")), 1000, "per object");
    b.succeed(&k("a"));
    assert_eq!(b.fail(&k("a")), 1000, "reset by a success");
    for _ in 0..40 {
        b.fail(&k("c"));
    }
    assert_eq!(b.fail(&k("c")), 300_000, "capped at 5 min");
}

/// A store that lets a test act just before a status write of one object (another
/// writer changing the object meanwhile), or fail writes.
struct Interfering {
    inner: Arc<SledStore>,
    before_status: Mutex<Option<(String, Hook)>>,
}

/// What to do to the store, once.
type Hook = Box<dyn FnOnce(&SledStore) + Send>;

impl Interfering {
    fn run_hook(&self, obj: &Resource) {
        let hook = {
            let mut h = self.before_status.lock().unwrap();
            if h.as_ref().is_some_and(|(k, _)| *k == obj.key()) {
                h.take()
            } else {
                None
            }
        };
        if let Some((_, f)) = hook {
            f(&self.inner);
        }
    }
}

impl Store for Interfering {
    fn get(&self, kind: Kind, name: &str) -> sectl::store::Result<Option<Resource>> {
        self.inner.get(kind, name)
    }
    fn list_report(&self, kind: Kind) -> sectl::store::Result<sectl::store::Listing> {
        self.inner.list_report(kind)
    }
    fn create(&self, obj: Resource) -> sectl::store::Result<Resource> {
        self.inner.create(obj)
    }
    fn update(&self, obj: Resource) -> sectl::store::Result<Resource> {
        self.inner.update(obj)
    }
    fn update_status(&self, obj: Resource) -> sectl::store::Result<Resource> {
        self.run_hook(&obj);
        self.inner.update_status(obj)
    }
    fn commit_batch(&self, b: sectl::store::Batch) -> sectl::store::Result<sectl::store::Committed> {
        for s in &b.statuses {
            self.run_hook(s);
        }
        self.inner.commit_batch(b)
    }
    fn read_state(&self, prefix: &str) -> sectl::store::Result<Vec<(String, Vec<u8>)>> {
        self.inner.read_state(prefix)
    }
    fn sync(&self) -> sectl::store::Result<()> {
        self.inner.sync()
    }
    fn delete(&self, kind: Kind, name: &str) -> sectl::store::Result<Resource> {
        self.inner.delete(kind, name)
    }
    fn apply(&self, objs: Vec<Resource>, dry_run: bool) -> sectl::store::Result<Vec<(ApplyOutcome, Resource)>> {
        self.inner.apply(objs, dry_run)
    }
    fn watch_from(&self, rv: u64) -> sectl::store::Result<Vec<WatchEvent>> {
        self.inner.watch_from(rv)
    }
    fn resource_version(&self) -> u64 {
        self.inner.resource_version()
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }
    fn record_event(&self, ev: Event) -> sectl::store::Result<Event> {
        self.inner.record_event(ev)
    }
    fn events(&self) -> sectl::store::Result<Vec<Event>> {
        self.inner.events()
    }
    fn ack_events(&self) -> sectl::store::Result<usize> {
        self.inner.ack_events()
    }
    fn get_blob(&self, name: &str) -> sectl::store::Result<Option<Vec<u8>>> {
        self.inner.get_blob(name)
    }
    fn put_blob(&self, name: &str, bytes: &[u8]) -> sectl::store::Result<()> {
        self.inner.put_blob(name, bytes)
    }
}

#[test]
fn a_spec_change_racing_a_status_write_is_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = Arc::new(SledStore::open(dir.path()).expect("open"));
    let store = Arc::new(Interfering { inner: inner.clone(), before_status: Mutex::new(None) });
    let mut ctl = Controller::new(store.clone() as Arc<dyn Store>, Options::default()).expect("controller");
    inner.apply(decode(&site()), false).expect("apply");
    ctl.run_until_quiet().expect("settle");

    // While the controller reconciles the disk failure, someone changes the cluster's
    // spec: the status write meets a newer resourceVersion.
    *store.before_status.lock().unwrap() = Some((
        "ManagementCluster/mc".to_string(),
        Box::new(|s: &SledStore| {
            s.apply(decode(&MC.replace("bandwidthGbps: 10", "bandwidthGbps: 1")), false).expect("concurrent apply");
        }),
    ));
    let before = inner.events().unwrap().len();
    ctl.apply_fault(&Fault::parse(&args("disk fail crd-a")).unwrap()).expect("fault");
    ctl.run_until_quiet().expect("a conflict on a status write must not stop the controller");
    assert!(store.before_status.lock().unwrap().is_none(), "the hook ran");

    let r = inner.get(Kind::ManagementCluster, "mc").unwrap().unwrap();
    let mc = r.as_typed::<ManagementClusterSpec>().unwrap();
    assert_eq!(mc.metadata.generation, Some(2));
    assert_eq!(mc.status.observed_generation, Some(2), "the new spec was reconciled");
    assert_eq!(mc.status.state, Some(ClusterState::Warning));
    assert!(cond(&mc.status.conditions, "IslE").message.contains("1 Gbit/s"));
    let evs: Vec<Event> = inner.events().unwrap().into_iter().skip(before).collect();
    let warnings = evs.iter().filter(|e| e.reason == "ManagementClusterWarning").count();
    assert_eq!(warnings, 1, "the state change is logged once: {evs:#?}");
}

// ---------------------------------------------------------------------------------
// Property: the status depends on the resulting world only
// ---------------------------------------------------------------------------------

const UNITS: [&str; 8] =
    ["abgwhite", "abgblack", "abggreen", "abgblue", "ABGSE701", "ABGSE501", "ABGSE70X1", "ABGSE70X2"];
const DISKS: [&str; 2] = ["crd-a", "crd-b"];

#[derive(Debug, Clone, Copy)]
enum F {
    Power(usize, bool),
    Link(bool),
    Disk(usize, bool),
}

impl F {
    fn cmd(self) -> String {
        match self {
            F::Power(u, on) => format!("power {} {}", if on { "on" } else { "off" }, UNITS[u]),
            F::Link(up) => format!("link {} mc", if up { "up" } else { "down" }),
            F::Disk(d, ok) => format!("disk {} {}", if ok { "repair" } else { "fail" }, DISKS[d]),
        }
    }
}

fn fault() -> impl Strategy<Value = F> {
    prop_oneof![
        4 => (0..UNITS.len(), any::<bool>()).prop_map(|(u, on)| F::Power(u, on)),
        1 => any::<bool>().prop_map(F::Link),
        2 => (0..DISKS.len(), any::<bool>()).prop_map(|(d, ok)| F::Disk(d, ok)),
    ]
}

/// The hardware state a sequence leaves.
#[derive(Debug, Clone, Default, PartialEq)]
struct Hw {
    off: BTreeSet<&'static str>,
    link_down: bool,
    failed: BTreeSet<&'static str>,
}

impl Hw {
    fn after(faults: &[F]) -> Hw {
        let mut w = Hw::default();
        for f in faults {
            match *f {
                F::Power(u, true) => {
                    w.off.remove(UNITS[u]);
                }
                F::Power(u, false) => {
                    w.off.insert(UNITS[u]);
                }
                F::Link(up) => w.link_down = !up,
                F::Disk(d, true) => {
                    w.failed.remove(DISKS[d]);
                }
                F::Disk(d, false) => {
                    w.failed.insert(DISKS[d]);
                }
            }
        }
        w
    }

    /// The faults that lead from a fresh site to this state directly.
    fn direct(&self) -> Vec<String> {
        let mut v: Vec<String> = self.off.iter().map(|u| format!("power off {u}")).collect();
        v.extend(self.failed.iter().map(|d| format!("disk fail {d}")));
        if self.link_down {
            v.push("link down mc".into());
        }
        v
    }

    fn on(&self, u: &str) -> bool {
        !self.off.contains(u)
    }

    /// The states the manual's rules give.
    fn expected(&self) -> (ClusterState, ClusterState, ClusterState) {
        use ClusterState::*;
        let mus_on = MUS.iter().filter(|m| self.on(m)).count();
        let mc = if self.link_down || self.failed.len() == 2 || mus_on == 0 {
            Error
        } else if mus_on < 4 || self.failed.len() == 1 {
            Warning
        } else {
            Normal
        };
        let se701_mu = self.on("abgwhite") || self.on("abgblack");
        let se501_mu = self.on("abggreen") || self.on("abgblue");
        let su390 = if mc == Error || !self.on("ABGSE701") || !self.on("ABGSE501") || !se701_mu || !se501_mu {
            Error
        } else if mc == Warning {
            Warning
        } else {
            Normal
        };
        let sux86 = if !self.on("ABGSE70X1") || !self.on("ABGSE70X2") || self.failed.len() == 2 {
            Error
        } else if self.failed.len() == 1 {
            // s3.3: only "In case of SU /390, the MUs ... are also important for the
            // cluster functionality"; an MU off does not concern an SU x86 cluster.
            Warning
        } else {
            Normal
        };
        (mc, su390, sux86)
    }
}

/// Reasons as a set, without what depends on where the Cluster Manager happens to run
/// (with the ISL-E down, the MUs of the other server are "not reachable").
fn reason_set(reasons: &[String]) -> BTreeSet<String> {
    reasons.iter().flat_map(|r| r.split("; ")).filter(|p| !p.contains("not reachable")).map(String::from).collect()
}

#[derive(Debug, PartialEq)]
struct Seen {
    states: (ClusterState, ClusterState, ClusterState),
    reasons: [BTreeSet<String>; 3],
    units: BTreeMap<String, String>,
}

fn seen(s: &Site) -> Seen {
    let (mc, a, b) = (s.mc("mc"), s.suc("su390"), s.suc("sux86"));
    let mut units = BTreeMap::new();
    for se in ["se701", "se501"] {
        for u in s.se(se).status.units {
            units.insert(u.name, format!("{} {}", u.power, u.state));
        }
    }
    Seen {
        states: (mc.status.state.unwrap(), a.status.state.unwrap(), b.status.state.unwrap()),
        reasons: [reason_set(&mc.status.reasons), reason_set(&a.status.reasons), reason_set(&b.status.reasons)],
        units,
    }
}

/// Checks the Cluster Manager against the world; returns it.
fn check_cluster_manager(s: &Site, hw: &Hw) -> Result<Option<String>, TestCaseError> {
    let mc = s.mc("mc");
    let w = s.ctl.world();
    prop_assert_eq!(w.cluster_managers.get("mc"), mc.status.cluster_manager.as_ref());
    match &mc.status.cluster_manager {
        Some(cm) => {
            prop_assert!(MUS.contains(&cm.as_str()), "CM {} is no MU", cm);
            prop_assert!(hw.on(cm) && w.powered(cm), "CM {} is not powered", cm);
        }
        None => prop_assert!(MUS.iter().all(|m| !hw.on(m)), "no CM although an MU is powered"),
    }
    // With the ISL-E down exactly the powered MUs of the other server miss the heartbeat.
    let cm_server = mc
        .status
        .cluster_manager
        .as_ref()
        .and_then(|c| mc.status.management_units.iter().find(|m| &m.name == c))
        .map(|m| m.server.clone());
    for m in &mc.status.management_units {
        let answers = hw.on(&m.name) && (!hw.link_down || Some(&m.server) == cm_server.as_ref());
        prop_assert_eq!(&m.heartbeat, if answers { "OK" } else { "NO_ANSWER" }, "{:?}", m);
    }
    Ok(mc.status.cluster_manager)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn cluster_status_depends_only_on_the_resulting_world(faults in prop::collection::vec(fault(), 0..=12)) {
        // Step by step, settling after each fault.
        let mut a = Site::new(&site());
        let mut cm = a.mc("mc").status.cluster_manager.clone();
        for (i, f) in faults.iter().enumerate() {
            a.sim(&f.cmd());
            let hw = Hw::after(&faults[..=i]);
            let now = check_cluster_manager(&a, &hw)?;
            // The Cluster Manager stays where it is while its MU is powered.
            if let Some(old) = &cm {
                if hw.on(old) {
                    prop_assert_eq!(now.as_ref(), Some(old), "the CM moved although {} is up", old);
                }
            }
            cm = now;
            let got = seen(&a);
            prop_assert_eq!(got.states, hw.expected(), "after {:?}: {:#?}", &faults[..=i], got);
        }
        let hw = Hw::after(&faults);

        // The same world reached directly, every fault at once, four reconciles at a time.
        let mut b = Site::with(&site(), Options { concurrency: 4, ..Default::default() });
        for f in hw.direct() {
            b.fault(&f);
        }
        b.settle();
        check_cluster_manager(&b, &hw)?;
        let (sa, sb) = (seen(&a), seen(&b));
        prop_assert_eq!(&sa, &sb, "same world {:?}, different status", hw);
        prop_assert_eq!(sa.states, hw.expected());

        // Settled means settled: a second run writes nothing.
        let writes = a.ctl.stats.status_writes;
        a.settle();
        prop_assert_eq!(a.ctl.stats.status_writes, writes);
    }
}
