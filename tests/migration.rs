//! Issue 4, library level: VM definitions placed with real accounting, live migration
//! (preconditions, phases, pre-copy model, faults and roll-back) and recovery of VM
//! definitions, driven through the store and the controller on the simulated world.
//! Every test checks the books after every step: `World::audit()` is empty and on
//! every SU free + used + monitor memory == the SU's memory.

mod common;

use common::world::*;
use proptest::prelude::*;
use sectl::api::{ConditionStatus, Kind, LiveMigrationStatus, LmPhase, RecoveryPhase, SuType, VmState};
use sectl::controller::{Controller, Options};
use sectl::sim::migration::{gbps_to_mibps, plan, POST_TREATMENT_MS, SETUP_MS, SUSPEND_OVERHEAD_MS};
use sectl::store::{SledStore, Store};
use serde_json::{json, Value};
use std::sync::Arc;

// ---------------------------------------------------------------------------------
// Placement with real accounting

#[test]
fn site_comes_up_normal() {
    let e = Env::new(&site390());
    let r = e.store.get(Kind::SUCluster, "su390").unwrap().unwrap();
    let st = r.status_json();
    assert_eq!(st["state"], "NORMAL", "{st:#}");
    let w = e.world();
    assert_eq!(w.free_memory("ABGSE501"), 32768 - 1024);
    assert_eq!(w.free_memory("ABGSE701"), 65536 - 2048);
}

#[test]
fn placement_fixed_index_any_memory_and_defined_only() {
    let mut e = Env::new(&site390());
    let free0 = e.world().free_memory("ABGSE501");
    e.apply(&vm12prod("ABGSE501", json!({})));
    let st = e.vm("vm12prod");
    assert_eq!(st.state, Some(VmState::Running));
    assert_eq!(st.server_unit.as_deref(), Some("ABGSE501"));
    assert_eq!(st.vm_index, Some(12));
    assert_eq!(cond(&st.conditions, "Placed").status, ConditionStatus::True);
    assert_eq!(cond(&st.conditions, "Ready").status, ConditionStatus::True);
    let w = e.world();
    assert_eq!(w.free_memory("ABGSE501"), free0 - 2048);
    assert_eq!(holders(&w, "ABGSE501", "4683"), vec![("vm12prod".into(), sectl::api::DeviceUsage::Exclusive)]);

    // The fixed index 12 is taken: not placed, and the condition says why.
    e.apply(&vm("idx12", "OTHER12", "ABGSE501", json!({"vmIndex": 12, "state": "INIT_ONLY", "memoryMiB": 1024})));
    let st = e.vm("idx12");
    assert_eq!(st.state, None);
    assert_eq!(st.server_unit, None);
    let placed = cond(&st.conditions, "Placed");
    assert_eq!((placed.status, placed.reason.as_str()), (ConditionStatus::False, "VmIndexInUse"));
    assert!(placed.message.contains("VM index 12"), "{placed:?}");
    assert_eq!(cond(&st.conditions, "Ready").status, ConditionStatus::False);
    assert!(!e.world().vms.contains_key("idx12"));

    // *ANY takes the lowest free index (1 is the monitor).
    e.apply(&vm("any1", "ANY1", "ABGSE501", json!({"vmIndex": "*ANY", "state": "RUNNING", "memoryMiB": 1024})));
    e.apply(&vm("any2", "ANY2", "ABGSE501", json!({"state": "INIT_ONLY", "memoryMiB": 1024})));
    assert_eq!(e.vm("any1").vm_index, Some(2));
    assert_eq!(e.vm("any2").vm_index, Some(3));
    assert_eq!(e.vm("any2").state, Some(VmState::InitOnly));
    assert_eq!(e.world().free_memory("ABGSE501"), free0 - 2048 - 2048);

    // More memory than is free: not placed.
    e.apply(&vm("huge", "HUGE", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 40000})));
    let placed = cond(&e.vm("huge").conditions, "Placed").clone();
    assert_eq!((placed.status, placed.reason.as_str()), (ConditionStatus::False, "InsufficientMemory"));
    assert!(placed.message.contains("40000"), "{placed:?}");

    // DEFINED_ONLY needs no resources: placed, but holds no memory, index or device.
    e.apply(&vm(
        "defonly",
        "DEFONLY",
        "ABGSE501",
        json!({"state": "DEFINED_ONLY", "memoryMiB": 40000, "vmIndex": 12, "devices": [{"mn": "4683"}]}),
    ));
    let st = e.vm("defonly");
    assert_eq!(st.state, Some(VmState::DefinedOnly));
    assert_eq!(st.server_unit.as_deref(), Some("ABGSE501"));
    assert_eq!(st.vm_index, None);
    let w = e.world();
    assert_eq!(w.free_memory("ABGSE501"), free0 - 4096);
    assert_eq!(holders(&w, "ABGSE501", "4683").len(), 1);
    assert!(w.vms["defonly"].index.is_none());
}

#[test]
fn placement_pool_group_name_and_definition_limit() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({})));

    // CPU pool and VM group missing: both reasons in one condition.
    e.apply(&vm(
        "nopool",
        "NOPOOL",
        "ABGSE501",
        json!({"state": "RUNNING", "memoryMiB": 512, "cpuPool": "NOSUCH", "vmGroup": "NOGRP"}),
    ));
    let placed = cond(&e.vm("nopool").conditions, "Placed").clone();
    assert_eq!(placed.status, ConditionStatus::False);
    assert_eq!(placed.reason, "CpuPoolMissing");
    assert!(placed.message.contains("CPU pool NOSUCH") && placed.message.contains("VM group NOGRP"), "{placed:?}");

    // Existing pool and group: fine.
    e.apply(&vm(
        "inpool",
        "INPOOL",
        "ABGSE501",
        json!({"state": "RUNNING", "memoryMiB": 512, "cpuPool": "POOLDB", "vmGroup": "PRODGRP"}),
    ));
    assert_eq!(e.vm("inpool").state, Some(VmState::Running));

    // The VM name is unique per SU.
    e.apply(&vm("dupname", "VM12PROD", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 512})));
    let placed = cond(&e.vm("dupname").conditions, "Placed").clone();
    assert_eq!((placed.status, placed.reason.as_str()), (ConditionStatus::False, "VmNameInUse"));
    // ... but it may be used on the other SU.
    e.apply(&vm("dupname", "VM12PROD", "ABGSE701", json!({"state": "DEFINED_ONLY", "memoryMiB": 512})));
    assert_eq!(e.vm("dupname").server_unit.as_deref(), Some("ABGSE701"));

    // The definition limit counts definitions, also DEFINED_ONLY ones.
    e.apply(&se501("", "      maxVmDefinitions: 3\n"));
    e.apply(&vm("third", "THIRD", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 512})));
    assert_eq!(e.vm("third").server_unit.as_deref(), Some("ABGSE501"));
    e.apply(&vm("fourth", "FOURTH", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 512})));
    let placed = cond(&e.vm("fourth").conditions, "Placed").clone();
    assert_eq!((placed.status, placed.reason.as_str()), (ConditionStatus::False, "VmDefinitionLimitReached"));
    assert!(placed.message.contains("limit is 3"), "{placed:?}");
    // A definition leaves: the waiting one is placed without anyone touching it.
    e.delete(Kind::VMDefinition, "third");
    e.settle();
    assert_eq!(e.vm("fourth").server_unit.as_deref(), Some("ABGSE501"));
    assert_eq!(cond(&e.vm("fourth").conditions, "Placed").status, ConditionStatus::True);
}

#[test]
fn devices_exclusive_or_shared_never_exclusive_to_two() {
    use sectl::api::DeviceUsage::{Exclusive, Shared};
    let mut e = Env::new(&site390());
    let small = |devs: Value| json!({"state": "RUNNING", "memoryMiB": 256, "devices": devs});
    e.apply(&vm("x1", "X1", "ABGSE501", small(json!([{"mn": "4683", "usage": "exclusive"}]))));
    e.apply(&vm("x2", "X2", "ABGSE501", small(json!([{"mn": "4683", "usage": "shared"}]))));
    e.apply(&vm("x3", "X3", "ABGSE501", small(json!([{"mn": "4683", "usage": "exclusive"}]))));
    for n in ["x2", "x3"] {
        let p = cond(&e.vm(n).conditions, "Placed").clone();
        assert_eq!((p.status, p.reason.as_str()), (ConditionStatus::False, "DeviceAssignedExclusively"), "{n}");
        assert!(p.message.contains("VMS2437") && p.message.contains("4683"), "{p:?}");
    }
    // Shared by two, then exclusive wanted by a third: refused.
    e.apply(&vm("s1", "S1", "ABGSE501", small(json!([{"mn": "4690", "usage": "shared"}]))));
    e.apply(&vm("s2", "S2", "ABGSE501", small(json!([{"mn": "4690", "usage": "shared"}]))));
    e.apply(&vm("s3", "S3", "ABGSE501", small(json!([{"mn": "4690", "usage": "exclusive"}]))));
    let w = e.world();
    assert_eq!(holders(&w, "ABGSE501", "4683"), vec![("x1".into(), Exclusive)]);
    assert_eq!(holders(&w, "ABGSE501", "4690"), vec![("s1".into(), Shared), ("s2".into(), Shared)]);
    let p = cond(&e.vm("s3").conditions, "Placed").clone();
    assert_eq!(p.reason, "DeviceAssignedExclusively");
    assert!(p.message.contains("VMS2437"), "{p:?}");
    // A device that is not generated on the SU.
    e.apply(&vm("n1", "N1", "ABGSE501", small(json!([{"mn": "7777"}]))));
    assert_eq!(cond(&e.vm("n1").conditions, "Placed").reason, "DeviceNotGenerated");
    // A range is held device by device.
    e.apply(&vm("r1", "R1", "ABGSE501", small(json!([{"mn": "A000-A00F", "usage": "exclusive"}]))));
    let w = e.world();
    for i in 0..16 {
        assert_eq!(holders(&w, "ABGSE501", &format!("A00{i:X}")), vec![("r1".into(), Exclusive)]);
    }
    assert!(holders(&w, "ABGSE501", "A010").is_empty());
    // A DEFINED_ONLY definition may list a taken device; activating it waits.
    e.apply(&vm(
        "x4",
        "X4",
        "ABGSE501",
        json!({"state": "DEFINED_ONLY", "memoryMiB": 256, "devices": [{"mn": "4683", "usage": "exclusive"}]}),
    ));
    assert_eq!(e.vm("x4").state, Some(VmState::DefinedOnly));
    e.apply(&vm("x4", "X4", "ABGSE501", small(json!([{"mn": "4683", "usage": "exclusive"}]))));
    let st = e.vm("x4");
    assert_eq!(st.state, Some(VmState::DefinedOnly));
    assert_eq!(cond(&st.conditions, "Ready").reason, "DeviceAssignedExclusively");
    // x1, x2 and x3 leave; x4 gets the device as soon as it is free.
    for n in ["x2", "x3", "x1"] {
        e.delete(Kind::VMDefinition, n);
    }
    e.settle();
    let st = e.vm("x4");
    assert_eq!(st.state, Some(VmState::Running));
    assert_eq!(holders(&e.world(), "ABGSE501", "4683"), vec![("x4".into(), Exclusive)]);
}

#[test]
fn states_defined_only_keeps_definition_and_delete_removes_it() {
    let mut e = Env::new(&site390());
    let free0 = e.world().free_memory("ABGSE501");
    let spec = |state: &str| json!({"state": state, "memoryMiB": 4096, "vmIndex": 7, "devices": [{"mn": "4683"}, {"mn": "4690", "usage": "shared"}]});
    e.apply(&vm("st1", "ST1", "ABGSE501", spec("INIT_ONLY")));
    let st = e.vm("st1");
    assert_eq!((st.state, st.vm_index), (Some(VmState::InitOnly), Some(7)));
    assert!(st.migration_history.is_empty(), "no IPL yet");
    assert_eq!(e.world().free_memory("ABGSE501"), free0 - 4096);

    e.apply(&vm("st1", "ST1", "ABGSE501", spec("RUNNING")));
    let st = e.vm("st1");
    assert_eq!(st.state, Some(VmState::Running));
    assert_eq!(st.migration_history.len(), 1, "the IPL line");
    assert_eq!(st.migration_history[0].configuration, "390SU- 500");

    e.apply(&vm("st1", "ST1", "ABGSE501", spec("DOWN")));
    let st = e.vm("st1");
    assert_eq!((st.state, st.vm_index), (Some(VmState::Down), Some(7)));
    assert_eq!(e.world().free_memory("ABGSE501"), free0 - 4096, "a DOWN VM keeps its resources");

    // DEFINED_ONLY = DELETE-VM: resources go, the definition stays.
    let seq = e.last_seq();
    e.apply(&vm("st1", "ST1", "ABGSE501", spec("DEFINED_ONLY")));
    let st = e.vm("st1");
    assert_eq!((st.state, st.vm_index), (Some(VmState::DefinedOnly), None));
    assert_eq!(st.server_unit.as_deref(), Some("ABGSE501"));
    let w = e.world();
    assert!(w.vms.contains_key("st1"));
    assert_eq!(w.free_memory("ABGSE501"), free0);
    assert!(holders(&w, "ABGSE501", "4683").is_empty() && holders(&w, "ABGSE501", "4690").is_empty());
    assert!(e.events_since(seq).iter().any(|ev| ev.reason == "VmDeleted" && ev.message.contains("definition kept")));

    // Activated again, with its fixed index.
    e.apply(&vm("st1", "ST1", "ABGSE501", spec("RUNNING")));
    assert_eq!(e.vm("st1").vm_index, Some(7));

    // Deleting the object deletes the definition and frees everything.
    let seq = e.last_seq();
    e.delete(Kind::VMDefinition, "st1");
    e.settle();
    let w = e.world();
    assert!(!w.vms.contains_key("st1"));
    assert_eq!(w.free_memory("ABGSE501"), free0);
    assert!(holders(&w, "ABGSE501", "4683").is_empty());
    assert!(e.events_since(seq).iter().any(|ev| ev.reason == "VmDefinitionDeleted"));
    // The same definition can be created again at once.
    e.apply(&vm("st1b", "ST1", "ABGSE501", spec("RUNNING")));
    assert_eq!(e.vm("st1b").vm_index, Some(7));
}

#[test]
fn unplaced_definition_is_placed_as_soon_as_it_can_be() {
    let mut e = Env::new(&site390());
    // 31 GiB are free on ABGSE501.
    e.apply(&vm("big1", "BIG1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 20000})));
    e.apply(&vm("big2", "BIG2", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 20000})));
    let p = cond(&e.vm("big2").conditions, "Placed").clone();
    assert_eq!((p.status, p.reason.as_str()), (ConditionStatus::False, "InsufficientMemory"));
    assert_eq!(cond(&e.vm("big2").conditions, "Ready").reason, "NotPlaced");
    // Time alone changes nothing.
    e.sim("advance 10m");
    assert_eq!(e.vm("big2").state, None);

    // big1 is deactivated: big2 is placed without being touched.
    e.apply(&vm("big1", "BIG1", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 20000})));
    let st = e.vm("big2");
    assert_eq!(st.state, Some(VmState::Running));
    assert_eq!(cond(&st.conditions, "Placed").status, ConditionStatus::True);
    assert_eq!(cond(&st.conditions, "Ready").status, ConditionStatus::True);

    // big1 wants to run again: placed but not activated, with the reason.
    e.apply(&vm("big1", "BIG1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 20000})));
    let st = e.vm("big1");
    assert_eq!(st.state, Some(VmState::DefinedOnly));
    let r = cond(&st.conditions, "Ready");
    assert_eq!((r.status, r.reason.as_str()), (ConditionStatus::False, "InsufficientMemory"));
    // big2 shrinks: big1 starts.
    e.apply(&vm("big2", "BIG2", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 8000})));
    assert_eq!(e.vm("big1").state, Some(VmState::Running));
    assert_eq!(e.world().used_memory("ABGSE501"), 28000);

    // An SU that is powered off places nothing; powered on, it does.
    e.sim("power off ABGSE701");
    e.apply(&vm("on701", "ON701", "ABGSE701", json!({"state": "RUNNING", "memoryMiB": 1024})));
    assert_eq!(cond(&e.vm("on701").conditions, "Placed").reason, "ServerUnitPoweredOff");
    e.sim("power on ABGSE701");
    assert_eq!(e.vm("on701").state, Some(VmState::Running));
}

#[test]
fn persistent_definitions_survive_power_cycle_others_are_lost() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({})));
    e.apply(&vm(
        "temp",
        "TEMP",
        "ABGSE501",
        json!({"persistent": false, "state": "RUNNING", "memoryMiB": 1024, "devices": [{"mn": "4690", "usage": "shared"}]}),
    ));
    e.apply(&vm("dormant", "DORMANT", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 1024})));
    e.apply(&vm("initonly", "INITONLY", "ABGSE501", json!({"state": "INIT_ONLY", "memoryMiB": 1024})));
    let seq = e.last_seq();

    e.sim("power off ABGSE501");
    let w = e.world();
    assert!(!w.vms.contains_key("temp"), "the non-persistent definition is gone");
    assert_eq!(w.vms["vm12prod"].state, VmState::DefinedOnly);
    assert!(w.vms["vm12prod"].index.is_none());
    assert!(holders(&w, "ABGSE501", "4683").is_empty() && holders(&w, "ABGSE501", "4690").is_empty());
    assert_eq!(w.used_memory("ABGSE501"), 0);
    let st = e.vm("temp");
    assert_eq!((st.state, st.server_unit.as_deref()), (None, None));
    assert_eq!(cond(&st.conditions, "Placed").reason, "DefinitionLost");
    let st = e.vm("vm12prod");
    assert_eq!(st.state, Some(VmState::DefinedOnly));
    assert_eq!(cond(&st.conditions, "Ready").reason, "ServerUnitPoweredOff");
    assert!(e.events_since(seq).iter().any(|ev| ev.reason == "DefinitionLost" && ev.object == "VMDefinition/temp"));

    e.sim("power on ABGSE501");
    let st = e.vm("vm12prod");
    assert_eq!((st.state, st.vm_index), (Some(VmState::Running), Some(12)), "RUNNING persistent VMs come back");
    assert_eq!(e.vm("initonly").state, Some(VmState::InitOnly));
    assert_eq!(e.vm("dormant").state, Some(VmState::DefinedOnly));
    let w = e.world();
    assert!(!w.vms.contains_key("temp"), "a lost definition stays lost");
    assert_eq!(holders(&w, "ABGSE501", "4683").len(), 1);
    assert_eq!(w.used_memory("ABGSE501"), 2048 + 1024);
    // A changed spec creates it anew.
    e.apply(&vm(
        "temp",
        "TEMP",
        "ABGSE501",
        json!({"persistent": false, "state": "RUNNING", "memoryMiB": 2048, "devices": [{"mn": "4690", "usage": "shared"}]}),
    ));
    assert_eq!(e.vm("temp").state, Some(VmState::Running));
}

#[test]
fn bcam_stopped_holds_definition_changes_until_it_is_back() {
    let mut e = Env::new(&site390());
    e.apply(&vm("b1", "B1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024})));
    let seq = e.last_seq();
    e.sim("bcam stop ABGSE501");
    assert!(e.events_since(seq).iter().any(|ev| ev.message.contains("VMS2331")), "/BCEND: {:#?}", e.events_since(seq));
    // A change waits, with a condition citing VMS2332 (and VMS2331: ended on purpose).
    e.apply(&vm("b1", "B1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 2048})));
    let st = e.vm("b1");
    let c = cond(&st.conditions, "DefinitionSynced");
    assert_eq!((c.status, c.reason.as_str()), (ConditionStatus::False, "Vms2332"));
    assert!(c.message.contains("VMS2332") && c.message.contains("VMS2331"), "{c:?}");
    assert_eq!(e.world().vms["b1"].memory_mib, 1024, "not carried out yet");
    // A new definition waits too.
    e.apply(&vm("b2", "B2", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024})));
    let p = cond(&e.vm("b2").conditions, "Placed").clone();
    assert_eq!((p.status, p.reason.as_str()), (ConditionStatus::False, "Vms2332"));
    assert!(!e.world().vms.contains_key("b2"));
    // Time alone changes nothing.
    e.sim("advance 5m");
    assert_eq!(e.world().vms["b1"].memory_mib, 1024);
    // The other SU is not affected.
    e.apply(&vm("b3", "B3", "ABGSE701", json!({"state": "RUNNING", "memoryMiB": 1024})));
    assert_eq!(e.vm("b3").state, Some(VmState::Running));

    let seq = e.last_seq();
    e.sim("bcam start ABGSE501");
    let w = e.world();
    assert_eq!(w.vms["b1"].memory_mib, 2048, "carried out when BCAM is back");
    assert_eq!(w.used_memory("ABGSE501"), 2048 + 1024);
    assert!(!has_cond(&e.vm("b1").conditions, "DefinitionSynced"));
    assert_eq!(e.vm("b2").state, Some(VmState::Running));
    let evs = e.events_since(seq);
    let n2330 = evs.iter().filter(|ev| ev.reason == "Vms2330" && ev.message.contains("VMS2330")).count();
    assert_eq!(n2330, 1, "{evs:#?}");

    // BCAM failing (not /BCEND): VMS2332 without VMS2331.
    e.sim("bcam fail ABGSE501");
    e.apply(&vm("b1", "B1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1536})));
    let c = cond(&e.vm("b1").conditions, "DefinitionSynced").clone();
    assert!(c.message.contains("VMS2332") && !c.message.contains("VMS2331"), "{c:?}");
    e.sim("bcam start ABGSE501");
    assert_eq!(e.world().vms["b1"].memory_mib, 1536);
}

#[test]
fn bcam_back_writes_a_held_new_definition_with_vms2330() {
    let mut e = Env::new(&site390());
    e.sim("bcam stop ABGSE501");
    e.apply(&vm("b2", "B2", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024})));
    assert!(!e.world().vms.contains_key("b2"));
    let seq = e.last_seq();
    e.sim("bcam start ABGSE501");
    assert_eq!(e.vm("b2").state, Some(VmState::Running));
    let evs = e.events_since(seq);
    assert!(evs.iter().any(|ev| ev.reason == "Vms2330"), "{evs:#?}");
    assert!(e.world().held_definitions.is_empty());
}

// ---------------------------------------------------------------------------------
// Live migration: preconditions

#[test]
fn manual_check_vm_migration_vms2437_then_vms2460() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE701", json!({})));
    // On the target SU device 4683 is assigned exclusively to another VM.
    e.apply(&vm(
        "vm20test",
        "VM20TEST",
        "ABGSE501",
        json!({"state": "RUNNING", "memoryMiB": 1024, "devices": [{"mn": "4683", "usage": "exclusive"}, {"mn": "4690"}]}),
    ));
    e.apply(&lm("check-vm12", "vm12prod", "ABGSE501", json!({"checkOnly": true})));
    let st = e.lm("check-vm12");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert_eq!(st.conflicts.len(), 1, "{:#?}", st.conflicts);
    let c = &st.conflicts[0];
    assert_eq!(c.code.as_deref(), Some("VMS2437"));
    assert_eq!(c.reason, "DeviceAssignedExclusively");
    assert!(c.message.contains("'4683'") && c.message.contains("vm20test"), "{c:?}");
    assert_eq!(
        st.messages,
        vec![
            "VMS2404 LIVE MIGRATION OF VM (12,VM12PROD) REJECTED BY THE TARGET SU 'ABGSE501'. REASON: VMS2437,4683"
                .to_string(),
            "VMS2461 LIVE MIGRATION OF VM (12,VM12PROD) TO TARGET SU 'ABGSE501' NOT POSSIBLE".to_string(),
        ]
    );
    assert_eq!(st.monjv, None, "a check has no MONJV");
    assert_eq!(cond(&st.conditions, "Possible").status, ConditionStatus::False);
    let w = e.world();
    assert!(w.migrations.is_empty());
    assert_eq!(w.used_memory("ABGSE501"), 1024, "a check reserves nothing");

    // Remove the inconsistency: the check turns positive by itself.
    e.apply(&vm(
        "vm20test",
        "VM20TEST",
        "ABGSE501",
        json!({"state": "RUNNING", "memoryMiB": 1024, "devices": [{"mn": "4690"}]}),
    ));
    let st = e.lm("check-vm12");
    assert_eq!(st.phase, LmPhase::Possible);
    assert!(st.conflicts.is_empty());
    assert_eq!(
        st.messages,
        vec!["VMS2460 LIVE MIGRATION OF VM (12,VM12PROD) TO TARGET SU 'ABGSE501' POSSIBLE".to_string()]
    );
    assert_eq!(cond(&st.conditions, "Possible").status, ConditionStatus::True);
    // ... and never moves anything.
    let v = e.vm("vm12prod");
    assert_eq!(
        (v.server_unit.as_deref(), v.state, v.live_migration_count),
        (Some("ABGSE701"), Some(VmState::Running), 0)
    );
    assert!(e.world().migrations.is_empty());
    assert_eq!(e.world().used_memory("ABGSE501"), 1024);
}

#[test]
fn all_unmet_preconditions_are_reported_together() {
    let extra501 = r#"
        - {mn: "4700", type: disk, hostConnector: "01", unitId: "20"}
        - {mn: "8000", type: disk, hostConnector: "0A", unitId: "00"}"#;
    let extra701 = r#"
        - {mn: "4700", type: disk, hostConnector: "02", unitId: "20"}"#;
    let mut e = Env::new(&site390());
    e.apply(&format!("{}---\n{}", se701(extra701, "      maxVmDefinitions: 1\n"), se501(extra501, "")));
    e.apply(&vm(
        "vmx",
        "VMX",
        "ABGSE501",
        json!({"vmIndex": 12, "state": "RUNNING", "memoryMiB": 2048, "cpuPool": "POOL501", "vmGroup": "GRP501",
               "devices": [{"mn": "4683"}, {"mn": "4700"}, {"mn": "8000"}]}),
    ));
    assert_eq!(e.vm("vmx").state, Some(VmState::Running));
    // On the target: the same VM name and index, 4683 exclusively, almost all memory,
    // and with it the definition limit (1) reached.
    e.apply(&vm(
        "blocker",
        "VMX",
        "ABGSE701",
        json!({"vmIndex": 12, "state": "RUNNING", "memoryMiB": 62000, "devices": [{"mn": "4683"}]}),
    ));
    e.sim("rewas stop ABGSE701");
    e.apply("apiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {name: su390}\nspec: {serverUnits: [ABGSE701, ABGSE501], active: false}\n");
    let seq = e.last_seq();
    e.apply(&lm("lm-x", "vmx", "ABGSE701", json!({})));
    let st = e.lm("lm-x");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert_eq!(st.monjv.as_deref(), Some("$AF"));
    let mut got = reasons(&st);
    got.sort();
    let mut want = vec![
        "SuClusterInactive",
        "VmNameInUse",
        "VmDefinitionLimitReached",
        "InsufficientMemory",
        "VmIndexInUse",
        "CpuPoolMissing",
        "VmGroupMissing",
        "DeviceAssignedExclusively",
        "DeviceNotGenerated",
        "DeviceNotCompatible",
        "RewasNotActive",
    ];
    want.sort();
    assert_eq!(got, want, "{:#?}", st.conflicts);
    for c in &st.conflicts {
        assert!(!c.message.is_empty(), "{c:?}");
        assert!(c.reason.chars().next().is_some_and(|ch| ch.is_ascii_uppercase()), "CamelCase: {c:?}");
    }
    let excl = st.conflicts.iter().find(|c| c.reason == "DeviceAssignedExclusively").unwrap();
    assert_eq!(excl.code.as_deref(), Some("VMS2437"));
    assert!(st.messages[0].starts_with("VMS2404 LIVE MIGRATION OF VM (12,VMX) REJECTED BY THE TARGET SU 'ABGSE701'"));
    // Message codes, not CamelCase names (issue 12, item 11): VMS2437 is the manual's,
    // SEC2422 (memory) sectl's; the source-side conflict (inactive cluster) is not the
    // target's, so it is reported in SEC2405.
    assert!(st.messages[0].contains("VMS2437,4683") && st.messages[0].contains("SEC2422"), "{:?}", st.messages);
    assert!(!st.messages[0].contains("InsufficientMemory") && !st.messages[0].contains("SEC2414"), "{:?}", st.messages);
    assert!(st.messages[1].starts_with("SEC2405") && st.messages[1].contains("SEC2414"), "{:?}", st.messages);
    assert!(st.messages[2].starts_with("VMS2461"), "{:?}", st.messages);
    assert_eq!(cond(&st.conditions, "Completed").reason, "Rejected");
    assert!(e.events_since(seq).iter().any(|ev| ev.reason == "LiveMigrationRejected"));
    // Nothing moved, nothing reserved.
    let w = e.world();
    assert!(w.migrations.is_empty());
    assert_eq!(w.vms["vmx"].su, "ABGSE501");
    assert_eq!(w.used_memory("ABGSE701"), 62000);
    assert_eq!(holders(&w, "ABGSE701", "4683").len(), 1);

    // Everything repaired: a check says possible.
    e.sim("rewas start ABGSE701");
    e.apply("apiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {name: su390}\nspec: {serverUnits: [ABGSE701, ABGSE501], active: true}\n");
    e.delete(Kind::VMDefinition, "blocker");
    e.settle();
    e.apply(&vm(
        "vmx",
        "VMX",
        "ABGSE501",
        json!({"vmIndex": 12, "state": "RUNNING", "memoryMiB": 2048, "cpuPool": "POOLDB", "vmGroup": "PRODGRP",
               "devices": [{"mn": "4683"}]}),
    ));
    e.apply(&lm("check-x", "vmx", "ABGSE701", json!({"checkOnly": true})));
    let st = e.lm("check-x");
    assert_eq!(st.phase, LmPhase::Possible, "{:#?}", st.conflicts);
    // The rejected migration stays rejected (a one-shot request).
    assert_eq!(e.lm("lm-x").phase, LmPhase::Rejected);
}

#[test]
fn preconditions_cluster_architecture_mode_power_and_management_cluster() {
    // An SU x86 and an SU /390 are not in one SU cluster and differ in architecture.
    let mut e = Env::new(&format!("{}---\n{}", site390(), site_x86(1, "VM2000")));
    e.apply(&vm("onx", "ONX", "SEX1", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.apply(&lm("lm-cross", "onx", "ABGSE701", json!({"checkOnly": true})));
    let st = e.lm("lm-cross");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert!(has_reason(&st, "NotSameSuCluster") && has_reason(&st, "ArchitectureMismatch"), "{:#?}", st.conflicts);

    // Target omitted: the other SU of the SU cluster. Target powered off.
    e.sim("power off SEX2");
    e.apply(&lm("lm-off", "onx", "", json!({"checkOnly": true})));
    let st = e.lm("lm-off");
    assert_eq!(st.target_server_unit.as_deref(), Some("SEX2"));
    assert!(has_reason(&st, "ServerUnitPoweredOff"), "{:#?}", st.conflicts);
    e.sim("power on SEX2");
    assert_eq!(e.lm("lm-off").phase, LmPhase::Possible, "{:#?}", e.lm("lm-off").conflicts);
    // Source powered off.
    e.sim("power off SEX1");
    let st = e.lm("lm-off");
    assert!(has_reason(&st, "SourceUnavailable"), "{:#?}", st.conflicts);
    e.sim("power on SEX1");
    assert_eq!(e.lm("lm-off").phase, LmPhase::Possible);
}

#[test]
fn preconditions_operation_mode_and_native() {
    // VM2000 on SEX1, Native on SEX2.
    let site = site_x86(1, "VM2000");
    let idx = site.rfind("operationMode: VM2000").unwrap();
    let site = format!("{}operationMode: Native{}", &site[..idx], &site[idx + "operationMode: VM2000".len()..]);
    let mut e = Env::new(&site);
    e.apply(&vm("v1", "V1", "SEX1", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.apply(&lm("chk", "v1", "SEX2", json!({"checkOnly": true})));
    assert!(has_reason(&e.lm("chk"), "OperationModeMismatch"), "{:#?}", e.lm("chk").conflicts);

    // Both Native: the target must not have a BS2000 already.
    let mut e = Env::new(&site_x86(1, "Native"));
    e.apply(&vm("n1", "N1", "SEX1", json!({"state": "RUNNING", "memoryMiB": 4096, "devices": [{"mn": "9000"}]})));
    e.apply(&vm("n2", "N2", "SEX2", json!({"state": "RUNNING", "memoryMiB": 4096})));
    e.apply(&lm("chk", "n1", "SEX2", json!({"checkOnly": true})));
    assert_eq!(reasons(&e.lm("chk")), vec!["NativeServerUnitOccupied"], "{:#?}", e.lm("chk").conflicts);
    e.delete(Kind::VMDefinition, "n2");
    e.settle();
    assert_eq!(e.lm("chk").phase, LmPhase::Possible);
    e.apply(&lm("lm-n1", "n1", "SEX2", json!({})));
    assert_eq!(e.lm("lm-n1").phase, LmPhase::Completed);
    assert_eq!(e.vm("n1").server_unit.as_deref(), Some("SEX2"));
}

#[test]
fn preconditions_management_cluster_needed_across_servers() {
    let site = site_x86(1, "VM2000");
    let start = site.find("kind: ManagementCluster").unwrap();
    let start = site[..start].rfind("---").unwrap();
    let end = site[start + 3..].find("---").unwrap() + start + 3;
    let site = format!("{}{}", &site[..start], &site[end..]);
    assert!(!site.contains("ManagementCluster"));
    let mut e = Env::new(&site);
    e.apply(&vm("v1", "V1", "SEX1", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.apply(&lm("lm-v1", "v1", "SEX2", json!({})));
    let st = e.lm("lm-v1");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert!(has_reason(&st, "NoManagementCluster"), "{:#?}", st.conflicts);
    assert_eq!(e.vm("v1").server_unit.as_deref(), Some("SEX1"));
}

#[test]
fn preconditions_io_change_shutdown_and_monitor_vm() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({})));
    // No `sim` verb starts a dynamic I/O configuration change or a VM2000 shutdown:
    // set them in the saved world.
    e.edit_world(|w| {
        w.su_mut("ABGSE701").unwrap().io_change_running = true;
        w.su_mut("ABGSE501").unwrap().shutdown_initiated = true;
    });
    e.apply(&lm("chk", "vm12prod", "ABGSE701", json!({"checkOnly": true})));
    let mut r = reasons(&e.lm("chk"));
    r.sort();
    assert_eq!(r, vec!["IoConfigurationChangeRunning", "Vm2000ShutdownInitiated"]);
    e.edit_world(|w| {
        w.su_mut("ABGSE701").unwrap().io_change_running = false;
        w.su_mut("ABGSE501").unwrap().shutdown_initiated = false;
    });
    e.delete(Kind::LiveMigration, "chk");
    e.apply(&lm("chk2", "vm12prod", "ABGSE701", json!({"checkOnly": true})));
    assert_eq!(e.lm("chk2").phase, LmPhase::Possible);
    // The monitor VM (index 1) cannot migrate.
    e.apply(&vm("anyvm", "ANYVM", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 512})));
    e.edit_world(|w| w.vms.get_mut("anyvm").unwrap().index = Some(1));
    e.apply(&lm("chk3", "anyvm", "ABGSE701", json!({"checkOnly": true})));
    assert!(has_reason(&e.lm("chk3"), "MonitorVm"), "{:#?}", e.lm("chk3").conflicts);
}

#[test]
fn a_migration_survives_a_controller_restart() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({})));
    e.put(&lm("lm-vm12", "vm12prod", "ABGSE701", json!({})));
    e.run_for(SETUP_MS + 500);
    assert_eq!(e.lm("lm-vm12").phase, LmPhase::Copying);
    e.restart();
    e.settle();
    let st = e.lm("lm-vm12");
    assert_eq!(st.phase, LmPhase::Completed);
    assert_eq!(st.monjv.as_deref(), Some("$T"));
    assert_eq!(e.vm("vm12prod").server_unit.as_deref(), Some("ABGSE701"));
    assert!(e.world().migrations.is_empty());
}

// ---------------------------------------------------------------------------------
// Definition migration

#[test]
fn manual_migrate_vm_definition_osd11tst_vms2320_and_vm12prod_vms4015() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE701", json!({})));
    let osd = vm("osd11tst", "OSD11TST", "ABGSE701", json!({"state": "DEFINED_ONLY", "memoryMiB": 512}));
    e.apply(&osd);
    let seq = e.last_seq();
    e.apply(&lm("lm-osd11tst", "osd11tst", "ABGSE501", json!({"definitionOnly": true})));
    let st = e.lm("lm-osd11tst");
    assert_eq!(st.phase, LmPhase::Completed);
    assert_eq!(st.monjv.as_deref(), Some("$T"));
    assert_eq!(st.messages, vec!["VMS2320 DEFINITION OF VM OSD11TST MIGRATED TO TARGET SU 'ABGSE501'".to_string()]);
    assert!(st.rounds.is_empty());
    let v = e.vm("osd11tst");
    assert_eq!((v.server_unit.as_deref(), v.state), (Some("ABGSE501"), Some(VmState::DefinedOnly)));
    assert_eq!(v.live_migration_count, 0, "moving a definition is no live migration");
    assert_eq!(cond(&v.conditions, "Placement").reason, "MovedBySectl");
    assert!(e.events_since(seq).iter().any(|ev| ev.reason == "DefinitionMigrated"));
    let w = e.world();
    assert_eq!(w.vms["osd11tst"].su, "ABGSE501");
    assert_eq!(w.used_memory("ABGSE501"), 0);
    // Applying the manifest again does not move it back.
    e.apply(&osd);
    assert_eq!(e.vm("osd11tst").server_unit.as_deref(), Some("ABGSE501"));
    // A DEFINED_ONLY definition is moved this way also without definitionOnly.
    e.apply(&lm("lm-osd-back", "osd11tst", "ABGSE701", json!({})));
    assert!(e.lm("lm-osd-back").messages[0].starts_with("VMS2320"));
    assert_eq!(e.vm("osd11tst").server_unit.as_deref(), Some("ABGSE701"));

    // An initialised VM: refused.
    e.apply(&lm("lm-vm12-def", "vm12prod", "ABGSE501", json!({"definitionOnly": true})));
    let st = e.lm("lm-vm12-def");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert_eq!(st.conflicts.len(), 1);
    assert_eq!(st.conflicts[0].code.as_deref(), Some("VMS4015"));
    assert_eq!(
        st.messages,
        vec!["VMS4015 VIRTUAL MACHINE (12,VM12PROD) ALREADY INITIALIZED. /MIGRATE-VM-DEFINITION REJECTED".to_string()]
    );
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state), (Some("ABGSE701"), Some(VmState::Running)));
    assert!(e.world().migrations.is_empty());

    // The moved definition is activated where it is now.
    e.apply(&lm("lm-osd-again", "osd11tst", "ABGSE501", json!({"definitionOnly": true})));
    e.apply(&vm("osd11tst", "OSD11TST", "ABGSE701", json!({"state": "RUNNING", "memoryMiB": 512})));
    let v = e.vm("osd11tst");
    assert_eq!((v.server_unit.as_deref(), v.state), (Some("ABGSE501"), Some(VmState::Running)));
    assert_eq!(e.world().used_memory("ABGSE501"), 512);
}

// ---------------------------------------------------------------------------------
// Live migration: phases, messages, records

/// Steps a migration in 100 ms slices until it ends; returns the phases seen, in order.
fn step_through(e: &mut Env, name: &str, mut each: impl FnMut(&Env, &LiveMigrationStatus)) -> Vec<LmPhase> {
    let mut phases: Vec<LmPhase> = Vec::new();
    for _ in 0..100_000 {
        let st = e.lm(name);
        each(e, &st);
        if phases.last() != Some(&st.phase) {
            phases.push(st.phase);
        }
        if matches!(st.phase, LmPhase::Completed | LmPhase::Aborted | LmPhase::Rejected) {
            return phases;
        }
        e.run_for(100);
    }
    panic!("migration {name} did not end: {phases:?}");
}

#[test]
fn lm_390_phases_messages_events_records_and_devices() {
    use sectl::api::DeviceUsage::Exclusive;
    let mut e = Env::new(&site390());
    let devs = json!([{"mn": "4683"}, {"mn": "FAA4"}, {"mn": "FAA5"}, {"mn": "5A20"}]);
    e.apply(&vm12prod("ABGSE501", json!({"devices": devs})));
    let seq = e.last_seq();
    let t0 = e.now();
    e.put(&lm("lm-vm12", "vm12prod", "ABGSE701", json!({})));
    e.run_for(0);

    // Phase 1: reserved on the target, the VM still runs on the source.
    let st = e.lm("lm-vm12");
    assert_eq!(st.phase, LmPhase::Setup);
    assert_eq!(st.monjv.as_deref(), Some("$R"));
    assert_eq!(
        (st.source_server_unit.as_deref(), st.target_server_unit.as_deref()),
        (Some("ABGSE501"), Some("ABGSE701"))
    );
    let v = e.vm("vm12prod");
    assert_eq!(v.substates, vec!["MIGRATING".to_string()]);
    assert_eq!((v.state, v.server_unit.as_deref()), (Some(VmState::Running), Some("ABGSE501")));
    let w = e.world();
    assert_eq!(w.used_memory("ABGSE701"), 2048, "memory reserved on the target");
    assert_eq!(w.used_memory("ABGSE501"), 2048);
    assert_eq!(holders(&w, "ABGSE701", "4683"), vec![("vm12prod".into(), Exclusive)]);
    assert_eq!(holders(&w, "ABGSE501", "4683"), vec![("vm12prod".into(), Exclusive)]);
    assert_eq!(holders(&w, "ABGSE701", "FAA4").len(), 1, "PAV aliases are re-attached on the target");
    assert!(holders(&w, "ABGSE701", "5A20").is_empty(), "the tape is not attached on the target");
    for id in ["VMS2450", "VMS2430", "VMS3050", "VMS4005", "ETMDR01", "/DETACH-DEVICE 5A20", "/DETACH-DEVICE FAA4"] {
        pos(&st.messages, id);
    }

    let mut rate_seen = None;
    let mut on_target_while_migrating = false;
    let phases = step_through(&mut e, "lm-vm12", |e, st| {
        if st.phase == LmPhase::Copying {
            rate_seen = st.progress.as_ref().map(|p| p.rate_mi_bps);
        }
        if st.phase == LmPhase::PostTreatment {
            let v = e.vm("vm12prod");
            on_target_while_migrating |=
                v.server_unit.as_deref() == Some("ABGSE701") && v.substates.contains(&"MIGRATING".to_string());
        }
    });
    assert_eq!(
        phases,
        vec![LmPhase::Setup, LmPhase::Copying, LmPhase::Suspended, LmPhase::PostTreatment, LmPhase::Completed]
    );
    assert_eq!(rate_seen, Some(800.0), "/390: the monitors' CPU caps the copy rate");
    assert!(on_target_while_migrating);

    let st = e.lm("lm-vm12");
    assert_eq!(st.monjv.as_deref(), Some("$TW"), "the tape stays detached: a warning");
    assert_eq!(cond(&st.conditions, "Completed").reason, "Migrated");
    let order = ["VMS2450", "VMS2430", "VMS3050", "VMS4005", "VMS2452", "VMS2432", "VMS4009", "VMS4024", "VMS2451"];
    let at: Vec<usize> = order.iter().map(|id| pos(&st.messages, id)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "order of {order:?}: {at:?}\n{:#?}", st.messages);
    pos(&st.messages, "VMS2431");
    pos(&st.messages, "ETMDR03");
    assert!(!st.messages.iter().any(|m| m.contains("HAL033")), "no x86 messages on /390");
    // Timing on the virtual clock: setup + rounds + suspension + post-treatment.
    // s4.4: one pre-copy round converges, then the last storage transfer (I/O stopped)
    // sends what it left; the suspension copies what that one left.
    assert_eq!(st.rounds.len(), 2, "2 GiB at 40 MiB/s converge after one round: {:?}", st.rounds);
    assert_eq!(st.rounds[0].sent_mi_b, 2048.0);
    assert!(st.rounds[1].last && st.rounds[1].sent_mi_b == st.rounds[0].dirty_mi_b, "{:?}", st.rounds);
    let copy: u64 = st.rounds.iter().map(|r| r.duration_ms).sum();
    let downtime = st.downtime_ms.expect("downtime");
    assert!(downtime <= 2000, "{downtime}");
    let duration = st.duration_ms.expect("duration");
    assert_eq!(duration, SETUP_MS + copy + downtime + POST_TREATMENT_MS);
    assert!(e.now() - t0 >= duration);

    // Paused, created, deleted.
    let evs = e.events_since(seq);
    let vm_evs: Vec<&str> = evs
        .iter()
        .filter(|ev| ev.object == "VMDefinition/vm12prod")
        .filter(|ev| ["VmPaused", "VmCreated", "VmDeleted", "VmDeactivated"].contains(&ev.reason.as_str()))
        .map(|ev| ev.reason.as_str())
        .collect();
    assert_eq!(vm_evs, vec!["VmPaused", "VmCreated", "VmDeleted"]);
    assert!(evs.iter().any(|ev| ev.reason == "LiveMigrationStarted"));
    assert!(evs.iter().any(|ev| ev.reason == "LiveMigrationCompleted"));

    // The VM and its records.
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state, v.vm_index), (Some("ABGSE701"), Some(VmState::Running), Some(12)));
    assert!(v.substates.is_empty(), "{:?}", v.substates);
    assert_eq!(v.live_migration_count, 1);
    let h: Vec<(&str, &str, u32)> =
        v.migration_history.iter().map(|r| (r.server_unit.as_str(), r.configuration.as_str(), r.vm_index)).collect();
    assert_eq!(h, vec![("ABGSE501", "390SU- 500", 12), ("ABGSE701", "390SU- 700", 12)]);
    let si = v.system_information.clone().expect("system information after a migration");
    assert!(si.note.as_deref().unwrap_or("").starts_with("NSI6231"));
    assert_eq!(
        (si.configuration.as_str(), si.ipl_configuration.as_str(), si.current_configuration.as_str()),
        ("390SU- 500", "390SU- 500", "390SU- 700")
    );
    assert_eq!(v.detached_devices, vec!["5A20".to_string()]);
    assert_eq!(cond(&v.conditions, "Placement").reason, "MovedBySectl");
    let w = e.world();
    assert_eq!(w.used_memory("ABGSE501"), 0, "the source's resources are released");
    assert_eq!(w.used_memory("ABGSE701"), 2048);
    for mn in ["4683", "FAA4", "FAA5", "5A20"] {
        assert!(holders(&w, "ABGSE501", mn).is_empty(), "{mn} still held on the source");
    }
    for mn in ["4683", "FAA4", "FAA5"] {
        assert_eq!(holders(&w, "ABGSE701", mn).len(), 1, "{mn} on the target");
    }
    assert!(holders(&w, "ABGSE701", "5A20").is_empty());
    assert!(w.migrations.is_empty());

    // MIGHOST=CURRENT shows the current host.
    e.apply(&vm12prod("ABGSE501", json!({"devices": devs, "mighost": "CURRENT"})));
    let v = e.vm("vm12prod");
    let si = v.system_information.expect("system information");
    assert!(si.note.as_deref().unwrap_or("").starts_with("NSI6232"));
    assert_eq!(si.configuration, "390SU- 700");
    assert_eq!(v.server_unit.as_deref(), Some("ABGSE701"), "a spec change does not move it back");

    // Back to the source: the tape stays detached, the PAV aliases come along.
    e.apply(&lm("lm-back", "vm12prod", "ABGSE501", json!({})));
    let st = e.lm("lm-back");
    assert_eq!(st.phase, LmPhase::Completed);
    let v = e.vm("vm12prod");
    assert_eq!(v.server_unit.as_deref(), Some("ABGSE501"));
    assert_eq!(v.live_migration_count, 2);
    assert_eq!(v.detached_devices, vec!["5A20".to_string()]);
    let w = e.world();
    assert!(holders(&w, "ABGSE501", "5A20").is_empty());
    assert_eq!(holders(&w, "ABGSE501", "FAA5").len(), 1);
    assert_eq!(w.used_memory("ABGSE701"), 0);
}

#[test]
fn lm_x86_messages_events_and_detached_local_disk_and_tape() {
    let mut e = Env::new(&site_x86(1, "VM2000"));
    e.apply(&vm(
        "x1",
        "X1PROD",
        "SEX1",
        json!({"state": "RUNNING", "memoryMiB": 1024, "workload": {"dirtyRateMiBps": 10},
               "devices": [{"mn": "9000-9003"}, {"mn": "9100"}, {"mn": "9F00"}]}),
    ));
    let seq = e.last_seq();
    e.apply(&lm("lm-x1", "x1", "SEX2", json!({})));
    let st = e.lm("lm-x1");
    assert_eq!(st.phase, LmPhase::Completed, "{:#?}", st.conflicts);
    assert_eq!(st.monjv.as_deref(), Some("$TW"));
    for id in ["VMS2450", "HAL0331", "HAL0332", "VMS4009", "VMS2451"] {
        pos(&st.messages, id);
    }
    assert!(pos(&st.messages, "HAL0331") < pos(&st.messages, "HAL0332"));
    for id in ["VMS2430", "VMS2452", "VMS2432", "VMS4024"] {
        assert!(!st.messages.iter().any(|m| m.contains(id)), "{id} is /390 only: {:#?}", st.messages);
    }
    let vm_evs: Vec<String> = e
        .events_since(seq)
        .into_iter()
        .filter(|ev| ev.object == "VMDefinition/x1")
        .filter(|ev| ["VmPaused", "VmCreated", "VmDeleted", "VmDeactivated"].contains(&ev.reason.as_str()))
        .map(|ev| ev.reason)
        .collect();
    assert_eq!(vm_evs, vec!["VmPaused", "VmCreated", "VmDeactivated", "VmDeleted"], "x86 adds deactivated");
    let v = e.vm("x1");
    assert_eq!(v.server_unit.as_deref(), Some("SEX2"));
    assert_eq!(v.detached_devices, vec!["9100".to_string(), "9F00".to_string()]);
    assert!(v.substates.is_empty(), "no DIFF on x86: {:?}", v.substates);
    let w = e.world();
    assert_eq!(holders(&w, "SEX2", "9002").len(), 1);
    assert!(holders(&w, "SEX1", "9002").is_empty() && holders(&w, "SEX1", "9100").is_empty());
    assert!(holders(&w, "SEX2", "9F00").is_empty());

    // The target is power-cycled: the persistent VM comes back without the local disk
    // of SEX1 (not generated here); the tape is attached again at the new activation.
    e.sim("power off SEX2");
    e.sim("power on SEX2");
    let v = e.vm("x1");
    assert_eq!((v.server_unit.as_deref(), v.state), (Some("SEX2"), Some(VmState::Running)), "{v:#?}");
    assert_eq!(v.detached_devices, vec!["9100".to_string()]);
    assert_eq!(holders(&e.world(), "SEX2", "9F00").len(), 1);

    // Back to SEX1: the local disk stays detached until the VM is activated anew.
    e.apply(&lm("lm-back", "x1", "SEX1", json!({})));
    assert_eq!(e.lm("lm-back").phase, LmPhase::Completed, "{:#?}", e.lm("lm-back").conflicts);
    let v = e.vm("x1");
    assert_eq!(v.server_unit.as_deref(), Some("SEX1"));
    assert_eq!(v.detached_devices, vec!["9100".to_string(), "9F00".to_string()]);
    assert!(holders(&e.world(), "SEX1", "9100").is_empty());
    let spec = |state: &str| {
        json!({"state": state, "memoryMiB": 1024, "workload": {"dirtyRateMiBps": 10},
               "devices": [{"mn": "9000-9003"}, {"mn": "9100"}, {"mn": "9F00"}]})
    };
    e.apply(&vm("x1", "X1PROD", "SEX1", spec("DEFINED_ONLY")));
    e.apply(&vm("x1", "X1PROD", "SEX1", spec("RUNNING")));
    let v = e.vm("x1");
    assert_eq!(v.state, Some(VmState::Running));
    assert!(v.detached_devices.is_empty(), "{:?}", v.detached_devices);
    assert_eq!(holders(&e.world(), "SEX1", "9100").len(), 1);
}

#[test]
fn surplus_vcpus_detached_on_a_smaller_pool_and_reattached_on_the_way_back() {
    let mut e = Env::new(&site390());
    // *STDPOOL has 6 CPUs on ABGSE701, 2 on ABGSE501.
    e.apply(&vm("cpu4", "CPU4", "ABGSE701", json!({"state": "RUNNING", "memoryMiB": 1024, "cpus": 4})));
    e.apply(&lm("lm-there", "cpu4", "ABGSE501", json!({})));
    let st = e.lm("lm-there");
    assert_eq!(st.phase, LmPhase::Completed);
    assert_eq!(st.monjv.as_deref(), Some("$TW"));
    assert!(st.messages.iter().any(|m| m.contains("surplus")), "{:#?}", st.messages);
    assert_eq!(e.vm("cpu4").detached_cpus, 2);
    e.apply(&lm("lm-back", "cpu4", "ABGSE701", json!({})));
    let st = e.lm("lm-back");
    assert_eq!(st.phase, LmPhase::Completed);
    assert_eq!(st.monjv.as_deref(), Some("$T"));
    assert!(st.messages.iter().any(|m| m.contains("/ATTACH-DEVICE of 2 CPU")), "{:#?}", st.messages);
    assert_eq!(e.vm("cpu4").detached_cpus, 0);
}

#[test]
fn differing_io_configurations_give_substate_diff_on_390() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({})));
    // Identical I/O configurations: no DIFF.
    e.apply(&lm("lm-1", "vm12prod", "ABGSE701", json!({})));
    assert_eq!(e.lm("lm-1").monjv.as_deref(), Some("$T"));
    assert!(e.vm("vm12prod").substates.is_empty());
    e.apply(&lm("lm-2", "vm12prod", "ABGSE501", json!({})));
    // Additional devices generated on the target SU: DIFF there.
    e.apply(&se701("\n        - {mn: \"8000-800F\", type: disk, hostConnector: \"0A\", unitId: \"00\"}", ""));
    e.apply(&lm("lm-3", "vm12prod", "ABGSE701", json!({})));
    let st = e.lm("lm-3");
    assert_eq!(st.phase, LmPhase::Completed);
    assert_eq!(st.monjv.as_deref(), Some("$TW"));
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.substates.clone()), (Some("ABGSE701"), vec!["DIFF".to_string()]));
    // Back on the SU it was loaded on: DIFF is gone.
    e.apply(&lm("lm-4", "vm12prod", "ABGSE501", json!({})));
    let v = e.vm("vm12prod");
    assert_eq!(v.server_unit.as_deref(), Some("ABGSE501"));
    assert!(v.substates.is_empty(), "{:?}", v.substates);
    // Migrated again and then reactivated on the target (DELETE-VM, ACTIVATE): gone too.
    e.apply(&lm("lm-5", "vm12prod", "ABGSE701", json!({})));
    assert_eq!(e.vm("vm12prod").substates, vec!["DIFF".to_string()]);
    e.apply(&vm12prod("ABGSE501", json!({"state": "DEFINED_ONLY"})));
    e.apply(&vm12prod("ABGSE501", json!({"state": "RUNNING"})));
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state), (Some("ABGSE701"), Some(VmState::Running)));
    assert!(v.substates.is_empty(), "{:?}", v.substates);
}

#[test]
fn manual_vm12prod_migrated_three_times() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({})));
    let ipl_time = e.vm("vm12prod").migration_history[0].time.clone();
    // There, back (the same object name, deleted and created again), and there again.
    e.apply(&lm("lm-vm12", "vm12prod", "ABGSE701", json!({})));
    assert_eq!(e.lm("lm-vm12").phase, LmPhase::Completed);
    e.delete(Kind::LiveMigration, "lm-vm12");
    e.settle();
    assert_eq!(e.vm("vm12prod").server_unit.as_deref(), Some("ABGSE701"), "deleting a finished LM moves nothing");
    e.sim("advance 1h");
    e.apply(&lm("lm-vm12", "vm12prod", "ABGSE501", json!({})));
    assert_eq!(e.lm("lm-vm12").phase, LmPhase::Completed);
    e.sim("advance 1h");
    e.apply(&lm("lm-vm12-again", "vm12prod", "", json!({})));
    let st = e.lm("lm-vm12-again");
    assert_eq!(st.phase, LmPhase::Completed);
    assert_eq!(st.target_server_unit.as_deref(), Some("ABGSE701"));

    let v = e.vm("vm12prod");
    assert_eq!(v.live_migration_count, 3);
    assert_eq!(v.server_unit.as_deref(), Some("ABGSE701"));
    let h: Vec<(&str, &str, u32)> =
        v.migration_history.iter().map(|r| (r.server_unit.as_str(), r.configuration.as_str(), r.vm_index)).collect();
    assert_eq!(
        h,
        vec![
            ("ABGSE501", "390SU- 500", 12),
            ("ABGSE701", "390SU- 700", 12),
            ("ABGSE501", "390SU- 500", 12),
            ("ABGSE701", "390SU- 700", 12),
        ]
    );
    assert_eq!(v.migration_history[0].time, ipl_time, "the first line is the IPL");
    let times: Vec<&str> = v.migration_history.iter().map(|r| r.time.as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let si = v.system_information.expect("system information");
    assert_eq!((si.configuration.as_str(), si.current_configuration.as_str()), ("390SU- 500", "390SU- 700"));
    let w = e.world();
    assert_eq!(w.used_memory("ABGSE501"), 0);
    assert_eq!(w.used_memory("ABGSE701"), 2048);
}

// ---------------------------------------------------------------------------------
// The pre-copy model

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-9)
}

#[test]
fn rounds_follow_the_model_over_a_1_gbit_isl_e_between_two_x86() {
    let mut e = Env::new(&site_x86(1, "VM2000"));
    let (memory, dirty) = (8192.0, 20.0);
    e.apply(&vm(
        "big",
        "BIG",
        "SEX1",
        json!({"state": "RUNNING", "memoryMiB": 8192, "workload": {"dirtyRateMiBps": dirty}}),
    ));
    let t0 = e.now();
    e.apply(&lm("lm-big", "big", "SEX2", json!({})));
    let st = e.lm("lm-big");
    assert_eq!(st.phase, LmPhase::Completed);
    let rate = gbps_to_mibps(1.0);
    let r = &st.rounds;
    assert!(r.len() >= 3, "8 GiB at 20 MiB/s over 1 Gbit/s take a few rounds: {r:#?}");
    assert_eq!(r[0].sent_mi_b, memory, "round 0 sends all memory");
    for (i, x) in r.iter().enumerate() {
        assert_eq!(x.round, i as u32);
        assert!(x.sent_mi_b <= memory && x.dirty_mi_b <= memory, "never more than memory: {x:?}");
        // Sending takes sent / bandwidth; the workload dirties meanwhile.
        assert!(close(x.duration_ms as f64, x.sent_mi_b / rate * 1000.0, 0.01), "{x:?}");
        assert!(close(x.dirty_mi_b, x.sent_mi_b * dirty / rate, 0.01), "{x:?}");
    }
    for w in r.windows(2) {
        // The next round sends what was dirtied meanwhile: sent × dirty rate / rate.
        assert_eq!(w[1].sent_mi_b, w[0].dirty_mi_b);
        assert!(close(w[1].sent_mi_b, w[0].sent_mi_b * dirty / rate, 0.01), "{w:?}");
        assert!(w[1].sent_mi_b < w[0].sent_mi_b);
    }
    // Total ≈ volume / bandwidth (plus the fixed parts of setup, suspend, post-treatment).
    let rest = r.last().unwrap().dirty_mi_b;
    let volume: f64 = r.iter().map(|x| x.sent_mi_b).sum::<f64>() + rest;
    let fixed = (SETUP_MS + SUSPEND_OVERHEAD_MS + POST_TREATMENT_MS) as f64;
    let duration = st.duration_ms.expect("duration") as f64;
    assert!(close(duration - fixed, volume / rate * 1000.0, 0.005), "{duration} vs {volume} MiB at {rate} MiB/s");
    assert!(close(st.downtime_ms.unwrap() as f64, rest / rate * 1000.0 + SUSPEND_OVERHEAD_MS as f64, 0.01));
    assert!(st.downtime_ms.unwrap() <= 2000);
    assert!(e.now() - t0 >= st.duration_ms.unwrap());
    // The controller's step by step run agrees with the model worked out in advance.
    let (planned, downtime, total) = plan(SuType::X86, memory, dirty, rate, 2000).expect("x86 completes");
    assert_eq!(planned.len(), r.len());
    for (p, x) in planned.iter().zip(r) {
        assert!(close(x.sent_mi_b, p.sent_mi_b, 1e-9) && x.duration_ms == p.duration_ms, "{p:?} vs {x:?}");
    }
    assert_eq!(st.downtime_ms, Some(downtime));
    assert_eq!(st.duration_ms, Some(total));
}

#[test]
fn the_390_monitor_cpu_caps_a_10_gbit_migration() {
    let memory = 8192.0;
    let spec = json!({"state": "RUNNING", "memoryMiB": 8192});
    let full = gbps_to_mibps(10.0);
    // SU /390 over a 10 Gbit/s ISL-E: the monitors copy about 800 MiB/s.
    let mut e = Env::new(&site390());
    e.apply(&vm("big", "BIG", "ABGSE501", spec.clone()));
    e.put(&lm("lm-big", "big", "ABGSE701", json!({})));
    e.run_for(SETUP_MS + 10);
    let p = e.lm("lm-big").progress.expect("copying");
    assert_eq!(p.rate_mi_bps, sectl::sim::migration::MONITOR_COPY_MIBPS);
    assert!(p.rate_mi_bps < full);
    e.settle();
    let st390 = e.lm("lm-big");
    assert_eq!(st390.phase, LmPhase::Completed);
    assert!(close(st390.rounds[0].duration_ms as f64, memory / 800.0 * 1000.0, 0.01), "{:?}", st390.rounds);

    // The same VM between two SU x86 over 10 Gbit/s gets the whole link.
    let mut e = Env::new(&site_x86(10, "VM2000"));
    e.apply(&vm("big", "BIG", "SEX1", spec));
    e.put(&lm("lm-big", "big", "SEX2", json!({})));
    e.run_for(SETUP_MS + 10);
    assert!(close(e.lm("lm-big").progress.expect("copying").rate_mi_bps, full, 1e-9));
    e.settle();
    let st86 = e.lm("lm-big");
    assert!(close(st86.rounds[0].duration_ms as f64, memory / full * 1000.0, 0.01), "{:?}", st86.rounds);
    assert!(st390.duration_ms.unwrap() as f64 > st86.duration_ms.unwrap() as f64 * 1.3);
}

#[test]
fn non_converging_390_aborts_with_vms2425_x86_completes_with_longer_suspension() {
    let mut e = Env::new(&site390());
    // Dirtied faster than the 800 MiB/s the monitors copy.
    e.apply(&vm12prod("ABGSE501", json!({"memoryMiB": 4096, "workload": {"dirtyRateMiBps": 900}})));
    let seq = e.last_seq();
    e.apply(&lm("lm-vm12", "vm12prod", "ABGSE701", json!({})));
    let st = e.lm("lm-vm12");
    assert_eq!(st.phase, LmPhase::Aborted);
    assert_eq!(st.monjv.as_deref(), Some("$AE"));
    let m = &st.messages[pos(&st.messages, "VMS2425")];
    assert!(m.contains("CHANGING MEMORY PAGES CANNOT BE TRANSFERRED IN TIME"), "{m}");
    assert!(st.rounds.iter().all(|r| r.sent_mi_b <= 4096.0 && r.dirty_mi_b <= 4096.0), "{:?}", st.rounds);
    assert!(!st.messages.iter().any(|m| m.contains("VMS2452")), "never suspended");
    assert!(e.events_since(seq).iter().any(|ev| ev.reason == "LiveMigrationAborted"));
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state), (Some("ABGSE501"), Some(VmState::Running)));
    assert!(v.substates.is_empty());
    assert_eq!(v.live_migration_count, 0);
    let w = e.world();
    assert_eq!(w.used_memory("ABGSE701"), 0);
    assert!(holders(&w, "ABGSE701", "4683").is_empty());
    assert_eq!(holders(&w, "ABGSE501", "4683").len(), 1);
    assert!(w.migrations.is_empty());

    // SU x86: the migration always completes, with a longer suspension.
    let mut e = Env::new(&site_x86(1, "VM2000"));
    e.apply(&vm(
        "hot",
        "HOT",
        "SEX1",
        json!({"state": "RUNNING", "memoryMiB": 1024, "workload": {"dirtyRateMiBps": 500}}),
    ));
    e.apply(&lm("lm-hot", "hot", "SEX2", json!({})));
    let st = e.lm("lm-hot");
    assert_eq!(st.phase, LmPhase::Completed);
    assert_eq!(st.monjv.as_deref(), Some("$TW"));
    assert_eq!(st.rounds[0].dirty_mi_b, 1024.0, "what is dirtied is never more than the memory");
    assert!(st.rounds.iter().all(|r| r.sent_mi_b <= 1024.0));
    assert!(st.downtime_ms.unwrap() > 2000, "{:?}", st.downtime_ms);
    assert_eq!(e.vm("hot").server_unit.as_deref(), Some("SEX2"));
}

// ---------------------------------------------------------------------------------
// Faults during a migration, cancelling, concurrency

/// A /390 migration of VM12PROD (4683, FAA4 and a tape) stopped in pre-copy.
fn env_copying() -> Env {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({"devices": [{"mn": "4683"}, {"mn": "FAA4"}, {"mn": "5A20"}]})));
    e.put(&lm("lm-vm12", "vm12prod", "ABGSE701", json!({})));
    e.run_for(SETUP_MS + 1000);
    assert_eq!(e.lm("lm-vm12").phase, LmPhase::Copying);
    assert_eq!(e.world().used_memory("ABGSE701"), 2048);
    e
}

/// The VM runs on ABGSE501 as before; ABGSE701 holds nothing for it.
fn rolled_back(e: &Env) {
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state), (Some("ABGSE501"), Some(VmState::Running)));
    assert!(v.substates.is_empty(), "{:?}", v.substates);
    assert!(v.detached_devices.is_empty(), "the tape is attached again: {:?}", v.detached_devices);
    let w = e.world();
    assert!(w.migrations.is_empty(), "{:?}", w.migrations);
    assert_eq!(w.used_memory("ABGSE701"), 0);
    assert_eq!(w.used_memory("ABGSE501"), 2048);
    for mn in ["4683", "FAA4", "5A20"] {
        assert!(holders(&w, "ABGSE701", mn).is_empty(), "{mn} still held on the target");
        assert_eq!(holders(&w, "ABGSE501", mn).len(), 1, "{mn} on the source");
    }
}

fn aborted(e: &Env, why: &str) {
    let st = e.lm("lm-vm12");
    assert_eq!(st.phase, LmPhase::Aborted, "{why}");
    assert_eq!(st.monjv.as_deref(), Some("$AE"), "{why}");
    assert!(st.progress.is_none());
    let c = cond(&st.conditions, "Completed");
    assert!(c.status == ConditionStatus::False && c.reason == "Aborted" && c.message.contains(why), "{c:?}");
    assert!(st.messages.iter().any(|m| m.contains("ABORTED") && m.contains("REVERSED")), "{:#?}", st.messages);
}

#[test]
fn target_su_powered_off_during_the_migration_rolls_back() {
    let mut e = env_copying();
    e.sim("power off ABGSE701");
    aborted(&e, "target SU ABGSE701");
    rolled_back(&e);
    e.sim("power on ABGSE701");
    assert_eq!(e.lm("lm-vm12").phase, LmPhase::Aborted, "an aborted migration is not retried");
    rolled_back(&e);
}

#[test]
fn isl_e_down_during_the_migration_rolls_back() {
    let mut e = env_copying();
    e.sim("link down mc");
    aborted(&e, "ISL-E");
    rolled_back(&e);
    e.sim("link up mc");
    rolled_back(&e);
}

#[test]
fn deleting_a_running_live_migration_cancels_it() {
    let mut e = env_copying();
    let seq = e.last_seq();
    e.delete(Kind::LiveMigration, "lm-vm12");
    e.settle();
    rolled_back(&e);
    assert!(e.events_since(seq).iter().any(|ev| ev.reason == "LiveMigrationAborted"));
    // A new one works.
    e.apply(&lm("lm-vm12", "vm12prod", "ABGSE701", json!({})));
    assert_eq!(e.lm("lm-vm12").phase, LmPhase::Completed);
    assert_eq!(e.vm("vm12prod").server_unit.as_deref(), Some("ABGSE701"));
}

#[test]
fn deleting_the_vm_during_the_migration_frees_both_sus() {
    let mut e = env_copying();
    e.delete(Kind::VMDefinition, "vm12prod");
    e.settle();
    let st = e.lm("lm-vm12");
    assert_eq!(st.phase, LmPhase::Aborted, "{st:#?}");
    assert_eq!(st.monjv.as_deref(), Some("$AE"));
    let w = e.world();
    assert!(w.migrations.is_empty() && w.vms.is_empty());
    assert_eq!((w.used_memory("ABGSE501"), w.used_memory("ABGSE701")), (0, 0));
}

#[test]
fn faults_after_the_resume_do_not_undo_the_migration() {
    for fault in ["link down mc", "power off ABGSE501", "delete"] {
        let mut e = env_copying();
        for _ in 0..1000 {
            if e.lm("lm-vm12").phase == LmPhase::PostTreatment {
                break;
            }
            e.run_for(10);
        }
        assert_eq!(e.lm("lm-vm12").phase, LmPhase::PostTreatment);
        if fault == "delete" {
            e.delete(Kind::LiveMigration, "lm-vm12");
            e.settle();
        } else {
            e.sim(fault);
            let st = e.lm("lm-vm12");
            assert_eq!(st.phase, LmPhase::Completed, "{fault}: {st:#?}");
        }
        let v = e.vm("vm12prod");
        assert_eq!((v.server_unit.as_deref(), v.state), (Some("ABGSE701"), Some(VmState::Running)), "{fault}");
        let w = e.world();
        assert!(w.migrations.is_empty());
        assert_eq!(holders(&w, "ABGSE701", "4683").len(), 1, "{fault}");
        assert!(holders(&w, "ABGSE501", "4683").is_empty(), "{fault}");
        assert_eq!(w.used_memory("ABGSE501"), 0, "{fault}");
    }
}

#[test]
fn one_outgoing_migration_per_source_su_incoming_may_overlap_and_bandwidth_is_shared() {
    let mut e = Env::new(&site_x86(1, "VM2000"));
    let small = json!({"state": "RUNNING", "memoryMiB": 1024});
    e.apply(&vm("va", "VA", "SEX1", small.clone()));
    e.apply(&vm("vb", "VB", "SEX1", small.clone()));
    e.apply(&vm("vc", "VC", "SEX2", small));
    // SEX1 -> SEX2 and SEX2 -> SEX1 at once: each SU is source of one and target of
    // the other; both copy over the one ISL-E.
    e.put(&format!("{}\n---\n{}", lm("lm-a", "va", "SEX2", json!({})), lm("lm-c", "vc", "SEX1", json!({}))));
    e.run_for(0);
    assert_eq!(e.lm("lm-a").phase, LmPhase::Setup);
    assert_eq!(e.lm("lm-c").phase, LmPhase::Setup);
    // A second migration leaving SEX1 waits for its turn (VM2000 would reject it; the
    // object queues, MONJV $S); a second one of the same VM is rejected.
    e.put(&format!("{}\n---\n{}", lm("lm-b", "vb", "SEX2", json!({})), lm("lm-a2", "va", "SEX2", json!({}))));
    e.run_for(0);
    let b = e.lm("lm-b");
    assert_eq!(b.phase, LmPhase::Pending, "{b:#?}");
    assert_eq!(b.monjv.as_deref(), Some("$S"));
    assert!(b.conditions.iter().any(|c| c.reason == "Queued"), "{b:#?}");
    assert_eq!(reasons(&e.lm("lm-a2")), vec!["AlreadyMigrating"]);
    e.run_for(SETUP_MS + 10);
    let half = gbps_to_mibps(1.0) / 2.0;
    for n in ["lm-a", "lm-c"] {
        let p = e.lm(n).progress.unwrap_or_else(|| panic!("{n} copying"));
        assert!(close(p.rate_mi_bps, half, 1e-9), "{n}: {p:?}");
    }
    let w = e.world();
    assert_eq!(w.used_memory("SEX2"), 2048, "vc plus the reservation for va");
    e.settle();
    for n in ["lm-a", "lm-c"] {
        let st = e.lm(n);
        assert_eq!(st.phase, LmPhase::Completed);
        assert!(close(st.rounds[0].duration_ms as f64, 1024.0 / half * 1000.0, 0.01), "{n}: {:?}", st.rounds);
    }
    assert_eq!(e.vm("va").server_unit.as_deref(), Some("SEX2"));
    assert_eq!(e.vm("vc").server_unit.as_deref(), Some("SEX1"));
    let b = e.lm("lm-b");
    assert_eq!(b.phase, LmPhase::Completed, "the queued migration ran when the source was free: {b:#?}");
    assert_eq!(e.vm("vb").server_unit.as_deref(), Some("SEX2"));
    // Alone on the link, the whole bandwidth.
    e.apply(&lm("lm-b2", "vb", "SEX1", json!({})));
    let st = e.lm("lm-b2");
    assert_eq!(st.phase, LmPhase::Completed);
    assert!(close(st.rounds[0].duration_ms as f64, 1024.0 / (2.0 * half) * 1000.0, 0.01), "{:?}", st.rounds);
}

// ---------------------------------------------------------------------------------
// Recovery of VM definitions (RECOVER-VM-DEFINITION)

#[test]
fn recovery_only_when_the_remote_su_is_silent_long_enough() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE701", json!({})));
    // The remote SU is alive.
    e.apply(&rec("rec-1", "vm12prod", "ABGSE501", json!({})));
    let st = e.rec("rec-1");
    assert_eq!(st.phase, RecoveryPhase::Rejected);
    assert_eq!(st.conflicts.iter().map(|c| c.reason.as_str()).collect::<Vec<_>>(), vec!["RemoteSuAlive"]);
    assert_eq!(e.vm("vm12prod").server_unit.as_deref(), Some("ABGSE701"));

    // Powered off only 30 s ago: the default of 60 s has not passed.
    e.sim("power off ABGSE701");
    e.sim("advance 30s");
    e.apply(&rec("rec-2", "vm12prod", "ABGSE501", json!({})));
    assert_eq!(e.rec("rec-2").conflicts[0].reason, "RemoteSuAlive");
    // 90 s: more than 60 s, but less than a custom 120 s.
    e.sim("advance 60s");
    e.apply(&rec("rec-3", "vm12prod", "ABGSE501", json!({"aliveTimeoutS": 120})));
    assert_eq!(e.rec("rec-3").conflicts[0].reason, "RemoteSuAlive");
    assert_eq!(e.rec("rec-2").phase, RecoveryPhase::Rejected, "a rejected recovery is not retried by itself");

    // Not the same SU cluster.
    let mut e2 = Env::new(&format!("{}---\n{}", site390(), site_x86(1, "VM2000")));
    e2.apply(&vm12prod("ABGSE701", json!({})));
    e2.sim("power off ABGSE701");
    e2.sim("advance 90s");
    e2.apply(&rec("rec-x", "vm12prod", "SEX1", json!({})));
    let r: Vec<String> = e2.rec("rec-x").conflicts.iter().map(|c| c.reason.clone()).collect();
    assert!(r.contains(&"NotSameSuCluster".to_string()), "{r:?}");

    // The VM name used locally, and the local limit reached.
    e.apply(&se501("", "      maxVmDefinitions: 1\n"));
    e.apply(&vm("local", "VM12PROD", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 512})));
    e.apply(&rec("rec-4", "vm12prod", "ABGSE501", json!({})));
    let mut r: Vec<String> = e.rec("rec-4").conflicts.iter().map(|c| c.reason.clone()).collect();
    r.sort();
    assert_eq!(r, vec!["VmDefinitionLimitReached", "VmNameInUse"]);
    assert_eq!(e.world().vms["vm12prod"].su, "ABGSE701");

    // All conditions met.
    e.delete(Kind::VMDefinition, "local");
    e.settle();
    e.apply(&rec("rec-5", "vm12prod", "ABGSE501", json!({})));
    let st = e.rec("rec-5");
    assert_eq!(st.phase, RecoveryPhase::Completed, "{:#?}", st.conflicts);
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state), (Some("ABGSE501"), Some(VmState::DefinedOnly)));
}

#[test]
fn recovery_of_a_non_persistent_definition_finds_nothing() {
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE701", json!({"persistent": false})));
    e.sim("power off ABGSE701");
    e.sim("advance 90s");
    e.apply(&rec("rec-vm12", "vm12prod", "ABGSE501", json!({})));
    let st = e.rec("rec-vm12");
    assert_eq!(st.phase, RecoveryPhase::Rejected);
    assert_eq!(st.conflicts[0].reason, "DefinitionNotPersistent");
}

#[test]
fn manual_recovery_with_the_mirror_disks_b000_b0ff() {
    use sectl::api::DeviceUsage::{Exclusive, Shared};
    let mut e = Env::new(&site390());
    let a_disks = json!({"devices": [{"mn": "A000-A0FF", "usage": "exclusive"}]});
    e.apply(&vm12prod("ABGSE701", a_disks.clone()));
    assert_eq!(holders(&e.world(), "ABGSE701", "A0FF"), vec![("vm12prod".into(), Exclusive)]);
    // Another system on the local SU shares the mirror disks.
    e.apply(&vm(
        "other",
        "OTHER",
        "ABGSE501",
        json!({"state": "RUNNING", "memoryMiB": 1024, "devices": [{"mn": "B008-B0FF", "usage": "shared"}]}),
    ));

    // Outage of ABGSE701 (the whole site).
    e.sim("power off ABGSE701");
    e.sim("advance 90s");
    let seq = e.last_seq();
    e.apply(&rec("rec-vm12", "vm12prod", "ABGSE501", json!({})));
    let st = e.rec("rec-vm12");
    assert_eq!(st.phase, RecoveryPhase::Completed, "{:#?}", st.conflicts);
    assert!(st.messages.iter().any(|m| m.contains("RECOVER-VM-DEFINITION VM-NAME=VM12PROD,SERVER-UNIT-NAME=ABGSE701")));
    assert!(e.events_since(seq).iter().any(|ev| ev.reason == "DefinitionRecovered"));
    // DEFINED_ONLY on the local SU: it allocates nothing.
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state, v.vm_index), (Some("ABGSE501"), Some(VmState::DefinedOnly), None));
    assert_eq!(cond(&v.conditions, "Ready").reason, "Recovered");
    let w = e.world();
    assert_eq!(w.used_memory("ABGSE501"), 1024);
    assert!(holders(&w, "ABGSE501", "A000").is_empty());
    // It stays so while nobody changes it.
    e.sim("advance 10m");
    assert_eq!(e.vm("vm12prod").state, Some(VmState::DefinedOnly));

    // MODIFY-VM-DEFINITION: A000-A0FF -> B000-B007 exclusive + B008-B0FF shared;
    // ACTIVATE-VM-DEFINITION and START-VM: state RUNNING (already asked for).
    let b_disks =
        json!({"devices": [{"mn": "B000-B007", "usage": "exclusive"}, {"mn": "B008-B0FF", "usage": "shared"}]});
    e.apply(&vm12prod("ABGSE701", b_disks));
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state, v.vm_index), (Some("ABGSE501"), Some(VmState::Running), Some(12)));
    assert_eq!(cond(&v.conditions, "Ready").status, ConditionStatus::True);
    let w = e.world();
    for i in 0..8 {
        assert_eq!(holders(&w, "ABGSE501", &format!("B00{i}")), vec![("vm12prod".into(), Exclusive)]);
    }
    assert_eq!(holders(&w, "ABGSE501", "B008"), vec![("other".into(), Shared), ("vm12prod".into(), Shared)]);
    assert_eq!(holders(&w, "ABGSE501", "B0FF").len(), 2);
    assert!(holders(&w, "ABGSE501", "A000").is_empty() && holders(&w, "ABGSE701", "A000").is_empty());
    assert_eq!(w.used_memory("ABGSE501"), 1024 + 2048);
    // Exclusive stays exclusive.
    e.apply(&vm(
        "late",
        "LATE",
        "ABGSE501",
        json!({"state": "RUNNING", "memoryMiB": 256, "devices": [{"mn": "B003"}]}),
    ));
    assert_eq!(cond(&e.vm("late").conditions, "Placed").reason, "DeviceAssignedExclusively");

    // The failed SU comes back: the system is not started twice.
    e.sim("power on ABGSE701");
    let w = e.world();
    assert_eq!(w.vms["vm12prod"].su, "ABGSE501");
    assert_eq!(w.used_memory("ABGSE701"), 0);
    assert_eq!(e.vm("vm12prod").state, Some(VmState::Running));
}

// ---------------------------------------------------------------------------------
// Any fault at any moment

#[derive(Debug, Clone)]
enum Hit {
    TargetOff,
    SourceOff,
    LinkDown,
    LmDeleted,
    VmDeleted,
    Dirty(f64),
}

fn hit() -> impl Strategy<Value = Hit> {
    prop_oneof![
        Just(Hit::TargetOff),
        Just(Hit::SourceOff),
        Just(Hit::LinkDown),
        Just(Hit::LmDeleted),
        Just(Hit::VmDeleted),
        prop::sample::select(vec![0.0, 100.0, 2000.0]).prop_map(Hit::Dirty),
    ]
}

/// When the phases of the 2 GiB migration of `fault_at` end (simulated ms after its
/// start): setup, pre-copy, suspension, all.
fn phase_ends(x86: bool) -> [u64; 4] {
    let rate = if x86 { gbps_to_mibps(1.0) } else { 800.0 };
    let arch = if x86 { SuType::X86 } else { SuType::S390 };
    let (rounds, downtime, total) = plan(arch, 2048.0, 40.0, rate, 2000).expect("converges");
    let copy_end = SETUP_MS + rounds.iter().map(|r| r.duration_ms).sum::<u64>();
    [SETUP_MS, copy_end, copy_end + downtime, total]
}

/// One migration of a 2 GiB VM, hit by `hit` `at_ms` after it started, then repaired;
/// afterwards the VM is on exactly one SU (or gone, when it was deleted or not
/// persistent on an SU that went down) and the books balance. Returns the phase the
/// fault hit.
fn fault_at(x86: bool, persistent: bool, hit: Hit, at_ms: u64) -> LmPhase {
    let (site, src, tgt, mc, devs) = if x86 {
        (site_x86(1, "VM2000"), "SEX1", "SEX2", "mcx", json!([{"mn": "9000-9003"}, {"mn": "9100"}, {"mn": "9F00"}]))
    } else {
        (site390(), "ABGSE501", "ABGSE701", "mc", json!([{"mn": "4683"}, {"mn": "FAA4"}, {"mn": "5A20"}]))
    };
    let mut e = Env::new(&site);
    e.apply(&vm(
        "v",
        "VPROP",
        src,
        json!({"state": "RUNNING", "memoryMiB": 2048, "persistent": persistent, "devices": devs,
               "workload": {"dirtyRateMiBps": 40}}),
    ));
    e.put(&lm("lm", "v", tgt, json!({})));
    e.run_for(at_ms);
    let phase_hit = e.lm("lm").phase;
    let su_of_vm_at_hit = e.world().vms.get("v").map(|v| v.su.clone());
    match &hit {
        Hit::TargetOff => e.sim_only(&format!("power off {tgt}")),
        Hit::SourceOff => e.sim_only(&format!("power off {src}")),
        Hit::LinkDown => e.sim_only(&format!("link down {mc}")),
        Hit::LmDeleted => e.delete(Kind::LiveMigration, "lm"),
        Hit::VmDeleted => e.delete(Kind::VMDefinition, "v"),
        Hit::Dirty(r) => e.sim_only(&format!("dirty v {r}")),
    }
    e.settle();
    // Repair.
    e.sim(&format!("power on {src}"));
    e.sim(&format!("power on {tgt}"));
    e.sim(&format!("link up {mc}"));

    let w = e.world();
    assert!(w.migrations.is_empty(), "{:#?}", w.migrations);
    let lm_st = e.store.get(Kind::LiveMigration, "lm").unwrap().map(|r| e.lm(r.name()));
    if let Some(st) = &lm_st {
        assert!(matches!(st.phase, LmPhase::Completed | LmPhase::Aborted), "{st:#?}");
    }
    match w.vms.get("v") {
        Some(v) => {
            assert!(v.su == src || v.su == tgt, "{v:?}");
            let other = if v.su == src { tgt } else { src };
            let st = e.vm("v");
            assert_eq!(st.server_unit.as_deref(), Some(v.su.as_str()));
            assert_eq!(st.state, Some(VmState::Running), "{st:#?}");
            assert!(!st.substates.contains(&"MIGRATING".to_string()));
            assert_eq!(w.used_memory(&v.su), 2048);
            assert_eq!(w.used_memory(other), 0);
            let held_other = w.su(other).unwrap().devices.values().any(|d| d.holders.contains_key("v"));
            assert!(!held_other, "devices held on {other}");
            // One migration at most; a restart (IPL) after a power cycle starts the
            // count again.
            assert!(st.live_migration_count <= u32::from(v.su == tgt), "{st:#?}");
            if let Some(st) = &lm_st {
                let want = if st.phase == LmPhase::Completed { tgt } else { src };
                assert_eq!(v.su, want, "{st:#?}");
            }
            // The world is usable again: the VM migrates to the other SU.
            e.sim("dirty v 40");
            e.apply(&lm("lm-after", "v", other, json!({})));
            let st = e.lm("lm-after");
            assert_eq!(st.phase, LmPhase::Completed, "{st:#?}");
            assert_eq!(e.world().vms["v"].su, other);
        }
        None => {
            let lost = matches!(hit, Hit::VmDeleted)
                || (!persistent
                    && match (&hit, su_of_vm_at_hit.as_deref()) {
                        (Hit::TargetOff, Some(s)) => s == tgt || e.lm("lm").phase == LmPhase::Completed,
                        (Hit::SourceOff, Some(s)) => s == src,
                        _ => false,
                    });
            assert!(lost, "the VM vanished after {hit:?}");
            for su in [src, tgt] {
                assert_eq!(w.used_memory(su), 0);
                assert!(!w.su(su).unwrap().devices.values().any(|d| d.holders.contains_key("v")));
            }
        }
    }
    e.books();
    phase_hit
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_fault_at_any_moment_leaves_one_vm_and_balanced_books(
        x86 in any::<bool>(),
        persistent in prop::bool::weighted(0.75),
        hit in hit(),
        permille in 0u64..1100,
    ) {
        let total = phase_ends(x86)[3];
        fault_at(x86, persistent, hit, total * permille / 1000);
    }
}

/// What the proptest may miss: every fault in every phase and just after the end.
#[test]
fn every_fault_in_every_phase() {
    for x86 in [false, true] {
        let [setup, copy, suspend, total] = phase_ends(x86);
        let moments = [
            (setup / 2, LmPhase::Setup),
            ((setup + copy) / 2, LmPhase::Copying),
            (copy + 1, LmPhase::Suspended),
            (suspend + 1, LmPhase::PostTreatment),
            (total + 1000, LmPhase::Completed),
        ];
        for (at, phase) in moments {
            for hit in
                [Hit::TargetOff, Hit::SourceOff, Hit::LinkDown, Hit::LmDeleted, Hit::VmDeleted, Hit::Dirty(2000.0)]
            {
                assert_eq!(fault_at(x86, true, hit.clone(), at), phase, "x86 {x86}, {hit:?} at {at} ms");
            }
        }
    }
}

/// A folder applied in one go (servers, clusters, VM and its migration together) works
/// whatever order the reconciles run in: a migration waits (Pending) for its VM and SU
/// cluster instead of being rejected.
#[test]
fn migration_applied_together_with_its_site_waits_then_completes() {
    let text = r#"
apiVersion: sectl.io/v1alpha1
kind: LiveMigration
metadata: {name: lm}
spec: {vm: big}
---
apiVersion: sectl.io/v1alpha1
kind: VMDefinition
metadata: {name: big}
spec: {vmName: BIG, serverUnit: SX1, state: RUNNING, memoryMiB: 2048, workload: {dirtyRateMiBps: 10}}
---
apiVersion: sectl.io/v1alpha1
kind: SUCluster
metadata: {name: suc}
spec: {serverUnits: [SX1, SX2]}
---
apiVersion: sectl.io/v1alpha1
kind: ManagementCluster
metadata: {name: mc}
spec: {servers: [s1, s2], islE: {bandwidthGbps: 1}, configDisks: [{name: d1}]}
---
apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: s1}
spec: {model: SE310, version: V6.3, managementUnits: [{name: mu1}], serverUnits: [{name: SX1, type: x86, cpus: 8, memoryMiB: 65536}]}
---
apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: s2}
spec: {model: SE310, version: V6.3, managementUnits: [{name: mu2}], serverUnits: [{name: SX2, type: x86, cpus: 8, memoryMiB: 65536}]}
"#;
    for concurrency in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let objs: Vec<_> =
            sectl::manifest::decode("f.yaml", text.as_bytes()).unwrap().into_iter().map(|d| d.resource).collect();
        store.apply(objs, false).unwrap();
        let dynstore: Arc<dyn Store> = store.clone();
        let mut c = Controller::new(dynstore, Options { concurrency, ..Default::default() }).unwrap();
        c.run_until_quiet().unwrap();
        let lm = store.get(Kind::LiveMigration, "lm").unwrap().unwrap();
        let l = lm.as_typed::<sectl::api::LiveMigrationSpec>().unwrap();
        assert_eq!(l.status.phase, LmPhase::Completed, "concurrency {concurrency}: {:#?}", l.status);
        assert!(c.world().audit().is_empty());
    }
}

/// A VM the simulation puts in WAIT cannot be migrated (status WAIT is a conflict); once
/// it resumes, the same check says Possible and the VM is RUNNING again.
#[test]
fn a_vm_in_wait_cannot_be_migrated_until_it_resumes() {
    let mut e = Env::new(&site_x86(1, "VM2000"));
    e.apply(&vm("va", "VA", "SEX1", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.sim("wait va");
    assert_eq!(e.vm("va").state, Some(VmState::Wait));
    e.apply(&lm("chk", "va", "SEX2", json!({"checkOnly": true})));
    let st = e.lm("chk");
    assert_eq!(st.phase, LmPhase::Rejected, "{st:#?}");
    assert!(reasons(&st).contains(&"VmStateWait".to_string()), "{st:#?}");
    // A VM in WAIT stays there whatever its spec says.
    e.apply(&vm("va", "VA", "SEX1", json!({"state": "RUNNING", "memoryMiB": 1024})));
    assert_eq!(e.vm("va").state, Some(VmState::Wait));
    e.sim("resume va");
    assert_eq!(e.vm("va").state, Some(VmState::Running));
    assert_eq!(e.lm("chk").phase, LmPhase::Possible);
    assert!(e.world().audit().is_empty());
}
