//! Issue 12, "the simulation tells the truth": one test per rule of the manual
//! ("Cluster Solutions for SE Server", `shared/seeds/000_*`; "VM definitions",
//! `shared/seeds/004_*`) that sectl used to get wrong, each quoting the manual's
//! sentence or example; the console transcripts of s4.6.1 (/390) and s4.6.2 (x86) in
//! order; and the scenario "site outage with storage loss" (s5).

mod common;

use common::world::*;
use sectl::api::{ClusterState, ConditionStatus, Kind, LmPhase, RecoveryPhase, SUClusterSpec, VmState};
use sectl::store::Store;
use serde_json::json;

/// The message IDs of console lines ("UNIT: ID text"), SEC lines (sectl's) left out.
fn ids(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| m.split_once(": ").map(|(_, rest)| rest.split(' ').next().unwrap_or("").to_string()))
        .filter(|id| !id.starts_with("SEC"))
        .collect()
}

/// Console lines without sectl's own SEC lines.
fn manual_lines(messages: &[String]) -> Vec<String> {
    messages.iter().filter(|m| !m.split(": ").nth(1).unwrap_or("").starts_with("SEC")).cloned().collect()
}

/// The SU /390 site with the SU models of the manual's example (s4.5: "390SU- 500-10B",
/// "390SU- 700-70") and the device CS of s4.6.1 on both SUs.
fn site390_models() -> String {
    let cs = "\n        - {mn: \"CS\", type: other, hostConnector: \"0C\", unitId: \"00\"}";
    let mut s = site390();
    s = s.replacen(&se701("", ""), &se701(cs, "      model: SU700-70\n"), 1);
    s.replacen(
        &se501("", "      maxVmDefinitions: 30\n"),
        &se501(cs, "      maxVmDefinitions: 30\n      model: SU500-10B\n"),
        1,
    )
}

fn suc_state(e: &Env, name: &str) -> (Option<ClusterState>, Vec<String>) {
    let r = e.store.get(Kind::SUCluster, name).expect("get").expect("exists");
    let o = r.as_typed::<SUClusterSpec>().expect("typed");
    (o.status.state, o.status.reasons.clone())
}

// ---------------------------------------------------------------------------------
// Item 1: the console transcripts

#[test]
fn s4_6_1_console_transcript_390_in_order() {
    let mut e = Env::new(&site390_models());
    // VM12PROD as in s4.6.1: loaded on the SU700 (ETMDR03 "INITIAL CONFIGURATION WAS
    // '390SU- 700-70'"), now on ABGSE501, migrated back to ABGSE701; devices CS, FAA4,
    // FAA5 (FAA5 shared: "VMS4005 DEVICE 'FAA5' ASSIGNED ... (TYPE=SD)"); BCAM lines
    // L#MANLO1 and the VLAN lines L1#DANPU, L1#MANPU, L1#MCNPR.
    let spec = json!({"devices": [{"mn": "CS"}, {"mn": "FAA4"}, {"mn": "FAA5", "usage": "shared"}],
        "bcamLines": [{"name": "L#MANLO1"}, {"name": "L1#DANPU", "vlan": true},
                      {"name": "L1#MANPU", "vlan": true}, {"name": "L1#MCNPR", "vlan": true}]});
    e.apply(&vm12prod("ABGSE701", spec));
    e.apply(&lm("lm-out", "vm12prod", "ABGSE501", json!({})));
    assert_eq!(e.lm("lm-out").phase, LmPhase::Completed);
    e.apply(&lm("lm-vm12", "vm12prod", "ABGSE701", json!({})));
    let st = e.lm("lm-vm12");
    assert_eq!(st.phase, LmPhase::Completed, "{:#?}", st.conflicts);
    // s4.6.1 numbers the lines 1-15 "in chronological sequence of appearance".
    let want = [
        "ABGSE501: VMS2450 LIVE MIGRATION OF VM (12,VM12PROD) TO TARGET SU 'ABGSE701' STARTED", // 1
        "VM12PROD: ETMDR01 DYNAMIC RECONFIGURATION WITH FUNCTION 'MIGRATE' STARTED",            // 2
        "VM12PROD: MCS1002 GLOBAL MSCF CONFIGURATION PARAMETER 'RECOVERY-START' CHANGED FROM '*AUTOMATIC' TO 'LOCKED'", // 3
        "ABGSE701: VMS2430 LIVE MIGRATION OF VM (12,VM12PROD) FROM SOURCE SU 'ABGSE501' STARTED", // 4
        "ABGSE701: VMS3050 VIRTUAL MACHINE (12,VM12PROD) CREATED",                                 // 5
        "ABGSE701: VMS4005 DEVICE 'CS' ASSIGNED TO VIRTUAL MACHINE (12,VM12PROD)",                 // 6
        "ABGSE701: VMS4005 DEVICE 'FAA4' ASSIGNED TO VIRTUAL MACHINE (12,VM12PROD)",
        "ABGSE701: VMS4005 DEVICE 'FAA5' ASSIGNED TO VIRTUAL MACHINE (12,VM12PROD) (TYPE=SD)",
        "ABGSE501: VMS2452 VM (12,VM12PROD) SUSPENDED AT LIVE MIGRATION TO TARGET SU 'ABGSE701'", // 7
        "VM12PROD: ETMDR03 LIVE MIGRATION FROM SOURCE CONFIGURATION '390SU- 500-10B' TO TARGET CONFIGURATION '390SU- 700-70' FINISHED. INITIAL CONFIGURATION WAS '390SU- 700-70'", // 8
        "ABGSE701: VMS2432 VM (12,VM12PROD) RESUMED AT LIVE MIGRATION FROM SOURCE SU 'ABGSE501'", // 9
        "VM12PROD: BCA07DC LINE \"L#MANLO1\" active",                                              // 10
        "VM12PROD: BCA05EC VLAN-LINE \"L1#DANPU\" active",
        "VM12PROD: BCA05EC VLAN-LINE \"L1#MANPU\" active",
        "VM12PROD: BCA05EC VLAN-LINE \"L1#MCNPR\" active",
        "VM12PROD: MCS1002 GLOBAL MSCF CONFIGURATION PARAMETER 'RECOVERY-START' CHANGED FROM 'LOCKED' TO '*AUTOMATIC'", // 11
        "ABGSE701: VMS2431 LIVE MIGRATION OF VM (12,VM12PROD) FROM SOURCE SU 'ABGSE501' COMPLETED", // 12
        "ABGSE501: VMS4009 DEVICE 'CS' REMOVED FROM VIRTUAL MACHINE (12,VM12PROD)",                // 13
        "ABGSE501: VMS4009 DEVICE 'FAA4' REMOVED FROM VIRTUAL MACHINE (12,VM12PROD)",
        "ABGSE501: VMS4009 DEVICE 'FAA5' REMOVED FROM VIRTUAL MACHINE (12,VM12PROD)",
        "ABGSE501: VMS4024 VIRTUAL MACHINE (12,VM12PROD) TERMINATED",                              // 14
        "ABGSE501: VMS2451 LIVE MIGRATION OF VM (12,VM12PROD) TO TARGET SU 'ABGSE701' COMPLETED",  // 15
    ];
    assert_eq!(manual_lines(&st.messages), want, "{:#?}", st.messages);
    // s4.5: "00000000 2019-12-06 10:07:02 390SU- 500-10B 12" -- configurations carry
    // the model suffix.
    let v = e.vm("vm12prod");
    let conf: Vec<&str> = v.migration_history.iter().map(|h| h.configuration.as_str()).collect();
    assert_eq!(conf, vec!["390SU- 700-70", "390SU- 500-10B", "390SU- 700-70"]);
    assert_eq!(v.live_migration_count, 2);
}

#[test]
fn s4_6_2_console_transcript_x86_in_order() {
    let site = site_x86(10, "VM2000")
        .replace("SEX1", "ABGSE30A")
        .replace("SEX2", "ABGSE30B")
        .replace("9000-900F", "CC40-CC4F")
        .replace("{mn: \"9100\", type: localDisk", "{mn: \"FAAE\", type: disk")
        .replace("{mn: \"9200\", type: localDisk", "{mn: \"FAAE\", type: disk")
        .replace("{mn: \"9F00\", type: tape", "{mn: \"FAAF\", type: disk");
    let mut e = Env::new(&site);
    e.apply(&vm(
        "vm03prod",
        "VM03PROD",
        "ABGSE30A",
        json!({"vmIndex": 3, "state": "RUNNING", "memoryMiB": 1024,
               "devices": [{"mn": "CC44"}, {"mn": "CC45"}, {"mn": "FAAE"}, {"mn": "FAAF"}]}),
    ));
    e.apply(&lm("lm-vm03", "vm03prod", "ABGSE30B", json!({})));
    let st = e.lm("lm-vm03");
    assert_eq!(st.phase, LmPhase::Completed, "{:#?}", st.conflicts);
    // s4.6.2: source VMS2450 ... VMS4009 (BY SYSADM), VMS6021, VMS2451; target VMS6020,
    // VMS4005 (BY SYSADM), VMS2050 READY; "no message VMS2452 ... Instead, the message
    // HAL0331"; "no message VMS2432 ... Instead, the message HAL0332"; the guest's
    // messages "are for SU x86 analogous to the ones for SU /390".
    let want = [
        "ABGSE30A: VMS2450 LIVE MIGRATION OF VM (3,VM03PROD) TO TARGET SU 'ABGSE30B' STARTED",
        "VM03PROD: ETMDR01 DYNAMIC RECONFIGURATION WITH FUNCTION 'MIGRATE' STARTED",
        "VM03PROD: MCS1002 GLOBAL MSCF CONFIGURATION PARAMETER 'RECOVERY-START' CHANGED FROM '*AUTOMATIC' TO 'LOCKED'",
        "ABGSE30B: VMS6020 VIRTUAL MACHINE (3,VM03PROD) CREATED BY SYSTEM ADMINISTRATION",
        "ABGSE30B: VMS4005 DEVICE 'CC44' ASSIGNED TO VIRTUAL MACHINE (3,VM03PROD) (BY SYSADM)",
        "ABGSE30B: VMS4005 DEVICE 'CC45' ASSIGNED TO VIRTUAL MACHINE (3,VM03PROD) (BY SYSADM)",
        "ABGSE30B: VMS4005 DEVICE 'FAAE' ASSIGNED TO VIRTUAL MACHINE (3,VM03PROD) (BY SYSADM)",
        "ABGSE30B: VMS4005 DEVICE 'FAAF' ASSIGNED TO VIRTUAL MACHINE (3,VM03PROD) (BY SYSADM)",
        "ABGSE30A: HAL0331 BS2000 SUSPEND",
        "ABGSE30B: HAL0332 BS2000 RESUME, CONTINUING",
        "VM03PROD: ETMDR03 LIVE MIGRATION FROM SOURCE CONFIGURATION 'X86SU- 710' TO TARGET CONFIGURATION 'X86SU- 310' FINISHED. INITIAL CONFIGURATION WAS 'X86SU- 710'",
        "VM03PROD: MCS1002 GLOBAL MSCF CONFIGURATION PARAMETER 'RECOVERY-START' CHANGED FROM 'LOCKED' TO '*AUTOMATIC'",
        "ABGSE30A: VMS4009 DEVICE 'CC44' REMOVED FROM VIRTUAL MACHINE (3,VM03PROD) (BY SYSADM)",
        "ABGSE30A: VMS4009 DEVICE 'CC45' REMOVED FROM VIRTUAL MACHINE (3,VM03PROD) (BY SYSADM)",
        "ABGSE30A: VMS4009 DEVICE 'FAAE' REMOVED FROM VIRTUAL MACHINE (3,VM03PROD) (BY SYSADM)",
        "ABGSE30A: VMS4009 DEVICE 'FAAF' REMOVED FROM VIRTUAL MACHINE (3,VM03PROD) (BY SYSADM)",
        "ABGSE30A: VMS6021 VIRTUAL MACHINE (3,VM03PROD) TERMINATED BY SYSTEM ADMINISTRATION",
        "ABGSE30A: VMS2451 LIVE MIGRATION OF VM (3,VM03PROD) TO TARGET SU 'ABGSE30B' COMPLETED",
        "ABGSE30B: VMS2050 GUEST SYSTEM ON VM (3,VM03PROD) READY",
    ];
    assert_eq!(manual_lines(&st.messages), want, "{:#?}", st.messages);
}

// ---------------------------------------------------------------------------------
// Items 2 and 3: DIFF

/// ABGSE701 has D00F generated in addition: the I/O configurations differ.
fn site_diff() -> String {
    let d00f = "\n        - {mn: \"D00F\", type: disk, hostConnector: \"0D\", unitId: \"0F\"}";
    site390().replacen(&se701("", ""), &se701(d00f, ""), 1)
}

#[test]
fn diff_vm_gets_no_device_generated_only_on_the_target() {
    // s4.8: "As long as a VM has the sub-status DIFF, ... devices that were not
    // generated on the source SU cannot be assigned to it on the target SU."
    let mut e = Env::new(&site_diff());
    e.apply(&vm12prod("ABGSE501", json!({})));
    e.apply(&lm("lm-1", "vm12prod", "ABGSE701", json!({})));
    assert_eq!(e.vm("vm12prod").substates, vec!["DIFF".to_string()]);
    e.apply(&vm12prod("ABGSE501", json!({"devices": [{"mn": "4683"}, {"mn": "D00F"}]})));
    let v = e.vm("vm12prod");
    let ready = cond(&v.conditions, "Ready");
    assert_eq!((ready.status, ready.reason.as_str()), (ConditionStatus::False, "DiffDeviceNotOnSource"), "{ready:?}");
    assert!(holders(&e.world(), "ABGSE701", "D00F").is_empty());
    // A device the source generated too is assignable.
    e.apply(&vm12prod("ABGSE501", json!({"devices": [{"mn": "4683"}, {"mn": "4690"}]})));
    assert_eq!(holders(&e.world(), "ABGSE701", "4690").len(), 1);
    assert_eq!(cond(&e.vm("vm12prod").conditions, "Ready").status, ConditionStatus::True);
}

#[test]
fn diff_lasts_through_a_restart_until_migrated_back() {
    // s4.8: "The sub-status DIFF keeps the VM until it's either migrated to the source
    // SU or it is reactivated on the target SU (new activation is done with the
    // commands /DELETE-VM and /ACTIVATE-VM-DEFINITION ...)".
    let mut e = Env::new(&site_diff());
    e.apply(&vm12prod("ABGSE501", json!({})));
    e.apply(&lm("lm-1", "vm12prod", "ABGSE701", json!({})));
    e.apply(&vm12prod("ABGSE501", json!({"state": "DOWN"})));
    e.apply(&vm12prod("ABGSE501", json!({"state": "RUNNING"})));
    let v = e.vm("vm12prod");
    assert_eq!(v.state, Some(VmState::Running));
    assert_eq!(v.substates, vec!["DIFF".to_string()], "a DOWN -> RUNNING restart keeps DIFF");
    e.apply(&lm("lm-2", "vm12prod", "ABGSE501", json!({})));
    assert!(e.vm("vm12prod").substates.is_empty(), "migrated back to the source: DIFF ends");
}

// ---------------------------------------------------------------------------------
// Items 4, 5, 6: operation modes, MUs, Native on SU /390

#[test]
fn su_cluster_of_native_and_vm2000_says_lm_is_impossible() {
    // Glossary, "BS2000 Operation Mode": the modes "affect the cluster status of SU
    // Clusters insofar as Live Migration is only possible between SUs with the same
    // BS2000 operation modes"; "Cluster Status": "In the state ERROR the cluster
    // functions are not fulfilled (for example LM is not possible)".
    let site = site_x86(10, "VM2000").replacen("operationMode: VM2000", "operationMode: Native", 1);
    let mut e = Env::new(&site);
    let (state, reasons) = suc_state(&e, "sux86");
    assert_eq!(state, Some(ClusterState::Error), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("LM is not possible")), "{reasons:?}");
    e.apply(&vm("x2", "X2", "SEX2", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.apply(&lm("lm-x2", "x2", "SEX1", json!({})));
    let st = e.lm("lm-x2");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert!(has_reason(&st, "OperationModeMismatch"), "{:#?}", st.conflicts);
}

#[test]
fn an_mu_off_concerns_su_390_clusters_not_su_x86_clusters() {
    // s3.3: "In case of SU /390, the MUs and their resources are also important for the
    // cluster functionality"; s2.3.3: after an MU power-off "The status of the SU /390
    // Cluster also changes itself to WARNING".
    let mut x = Env::new(&site_x86(10, "VM2000"));
    x.sim("power off mux1");
    assert_eq!(suc_state(&x, "sux86").0, Some(ClusterState::Normal), "{:?}", suc_state(&x, "sux86").1);
    let mut s = Env::new(&site390());
    s.sim("power off abgwhite");
    let (state, reasons) = suc_state(&s, "su390");
    assert_eq!(state, Some(ClusterState::Error), "the only MU of se701 is off: no SKP ({reasons:?})");
    let site =
        site390().replace("managementUnits: [{name: abgwhite}]", "managementUnits: [{name: abgwhite}, {name: abgred}]");
    let mut s = Env::new(&site);
    s.sim("power off abgred");
    let (state, reasons) = suc_state(&s, "su390");
    assert_eq!(state, Some(ClusterState::Warning), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("MU abgred")), "{reasons:?}");
}

#[test]
fn native_bs2000_on_an_su_390_is_allowed_but_not_migrated() {
    // Glossary, "SU /390": "A /390-based Server Unit (SU /390) makes using BS2000
    // systems (Native BS2000 or VM2000) possible"; s4.1: "LM of native BS2000 is only
    // possible for SU x86".
    let site = site390().replace("operationMode: VM2000", "operationMode: Native").replace(
        "      type: \"390\"\n      cpus: 4",
        "      type: \"390\"\n      operationMode: Native\n      cpus: 4",
    );
    let docs = sectl::manifest::decode("site.yaml", site.as_bytes()).expect("decodes");
    for d in &docs {
        assert!(sectl::api::validate::check_object(&d.resource).is_empty(), "{:?}", d.resource.name());
    }
    let mut e = Env::new(&site);
    let (state, reasons) = suc_state(&e, "su390");
    assert_eq!(state, Some(ClusterState::Error), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("Native BS2000") && r.contains("LM is not possible")), "{reasons:?}");
    e.apply(&vm("n1", "NATIVE1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 4096})));
    let v = e.vm("n1");
    assert_eq!((v.state, v.vm_index), (Some(VmState::Running), None), "Native BS2000 has no VM index");
    e.apply(&lm("lm-n1", "n1", "ABGSE701", json!({})));
    let st = e.lm("lm-n1");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert!(has_reason(&st, "NativeOn390"), "{:#?}", st.conflicts);
}

// ---------------------------------------------------------------------------------
// Item 7: RECOVER-VM-DEFINITION needs VM2000

#[test]
fn recovery_exists_only_in_su_clusters_with_vm2000() {
    // s5: "The command /RECOVER-VM-DEFINITION is available in any SU Cluster (SU /390
    // and SU x86) with VM2000."
    let mut e = Env::new(&site_x86(10, "Native"));
    e.apply(&vm("n1", "NATIVE1", "SEX1", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.sim("power off SEX1");
    e.sim("advance 120s");
    e.apply(&rec("rec-n1", "n1", "SEX2", json!({})));
    let st = e.rec("rec-n1");
    assert_eq!(st.phase, RecoveryPhase::Rejected);
    assert!(st.conflicts.iter().any(|c| c.reason == "NoVm2000"), "{:#?}", st.conflicts);
    assert_eq!(e.world().vms["n1"].su, "SEX1");
}

// ---------------------------------------------------------------------------------
// Item 8: BCAM ended on an SU /390

#[test]
fn bcam_down_rejects_definition_commands_and_runs_the_others() {
    // "VM definitions": "all VM2000 commands which directly concern the VM definitions
    // (e.g. /ACTIVATE-VM-DEFINITION or /SHOW-VM-DEFINITION) ... are rejected with
    // message VMS2332. All other VM2000 commands are executed. The contingent changes
    // in the VM definitions are saved by the VM2000 hypervisor and later (before
    // message VMS2330 is issued) transferred to the system disk."
    let mut e = Env::new(&site390());
    e.apply(&vm("i1", "I1", "ABGSE501", json!({"state": "INIT_ONLY", "memoryMiB": 1024})));
    e.apply(&vm("d1", "D1", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 1024})));
    e.sim("bcam stop ABGSE501");
    // START-VM is executed.
    e.apply(&vm("i1", "I1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024})));
    let v = e.vm("i1");
    assert_eq!(v.state, Some(VmState::Running));
    assert_eq!(cond(&v.conditions, "DefinitionSynced").reason, "SavedByHypervisor");
    // MIGRATE-VM-DEFINITION is rejected with VMS2332.
    e.apply(&lm("lm-d1", "d1", "ABGSE701", json!({"definitionOnly": true})));
    let st = e.lm("lm-d1");
    assert_eq!(st.phase, LmPhase::Rejected);
    let c = st.conflicts.iter().find(|c| c.reason == "BcamNotActive").expect("VMS2332");
    assert_eq!(c.code.as_deref(), Some("VMS2332"));
    assert_eq!(e.world().vms["d1"].su, "ABGSE501");
    // RECOVER-VM-DEFINITION on an SU whose BCAM is down: rejected with VMS2332.
    e.apply(&vm("r1", "R1", "ABGSE701", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.sim("power off ABGSE701");
    e.sim("advance 120s");
    e.apply(&rec("rec-r1", "r1", "ABGSE501", json!({})));
    let st = e.rec("rec-r1");
    assert_eq!(st.phase, RecoveryPhase::Rejected);
    assert!(st.conflicts.iter().any(|c| c.code.as_deref() == Some("VMS2332")), "{:#?}", st.conflicts);
    // BCAM back: VMS2330 once, filed under the SU's server, not under a VM.
    let seq = e.last_seq();
    e.sim("bcam start ABGSE501");
    let evs = e.events_since(seq);
    let v2330: Vec<_> = evs.iter().filter(|ev| ev.reason == "Vms2330").collect();
    assert_eq!(v2330.len(), 1, "{evs:#?}");
    assert_eq!(v2330[0].object, "SEServer/se501");
    assert!(!has_cond(&e.vm("i1").conditions, "DefinitionSynced"));
}

// ---------------------------------------------------------------------------------
// Item 9: DELETE-VM of a non-persistent definition

#[test]
fn delete_vm_removes_a_non_persistent_definition_keeps_a_persistent_one() {
    // "VM definitions": "A persistent VM definition is not deleted by /DELETE-VM"
    // (so a non-persistent one is).
    let mut e = Env::new(&site390());
    e.apply(&vm("p", "P", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.apply(&vm("np", "NP", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024, "persistent": false})));
    e.apply(&vm("p", "P", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 1024})));
    e.apply(&vm("np", "NP", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 1024, "persistent": false})));
    assert_eq!(e.vm("p").state, Some(VmState::DefinedOnly));
    assert!(e.world().vms.contains_key("p"));
    let np = e.vm("np");
    assert!(!e.world().vms.contains_key("np"), "the non-persistent definition is deleted");
    assert_eq!(np.state, None);
    assert_eq!(cond(&np.conditions, "Placed").reason, "DeletedNotPersistent");
    e.sim("advance 1m");
    assert!(!e.world().vms.contains_key("np"), "not created again by itself");
    // A changed spec creates it again.
    e.apply(&vm("np", "NP", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024, "persistent": false})));
    assert_eq!(e.vm("np").state, Some(VmState::Running));
}

// ---------------------------------------------------------------------------------
// Item 10: a system that is not loaded

#[test]
fn migrating_a_system_that_is_not_loaded() {
    // s4.6.1 ties ETMDR01/ETMDR03 and MCS1002 to "the system VM12PROD" (the guest),
    // VMS2452/VMS2432 to "The guest system was stopped ... started on the target SU";
    // s4.5: LIVE-MIG-COUNT shows "how often this system has been migrated". A VM in
    // INIT_ONLY or DOWN has no BS2000 loaded.
    for state in ["INIT_ONLY", "DOWN"] {
        let mut e = Env::new(&site390());
        e.apply(&vm12prod("ABGSE501", json!({"state": state})));
        let seq = e.last_seq();
        e.apply(&lm("lm-1", "vm12prod", "ABGSE701", json!({})));
        let st = e.lm("lm-1");
        assert_eq!(st.phase, LmPhase::Completed, "{state}: {:#?}", st.conflicts);
        let got = ids(&st.messages);
        for id in ["ETMDR01", "ETMDR03", "MCS1002", "VMS2452", "VMS2432", "BCA07DC"] {
            assert!(!got.iter().any(|g| g == id), "{state}: {id} in {:#?}", st.messages);
        }
        for id in ["VMS2450", "VMS2430", "VMS3050", "VMS4005", "VMS2431", "VMS4009", "VMS4024", "VMS2451"] {
            assert!(got.iter().any(|g| g == id), "{state}: no {id} in {:#?}", st.messages);
        }
        let v = e.vm("vm12prod");
        assert_eq!((v.server_unit.as_deref(), v.live_migration_count), (Some("ABGSE701"), 0), "{state}");
        assert!(v.migration_history.is_empty(), "{state}: {:?}", v.migration_history);
        assert!(!e.events_since(seq).iter().any(|ev| ev.reason == "VmPaused"), "{state}");
    }
}

// ---------------------------------------------------------------------------------
// Item 11: VMS2404, VMS2437, Native without index

#[test]
fn vms2404_lists_only_the_targets_conflicts_as_message_codes() {
    // s4.3: "% VMS2404 LIVE MIGRATION OF VM (12,VM12PROD) REJECTED BY THE TARGET SU
    // 'ABGSE501'. REASON: VMS2437,4683" and "% VMS2437 DEVICE '(&00)' NOT ASSIGNABLE TO
    // VIRTUAL MACHINE ON THE TARGET SU".
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE701", json!({})));
    e.apply(&vm(
        "blocker",
        "BLOCK",
        "ABGSE501",
        json!({"state": "RUNNING", "memoryMiB": 512,
        "devices": [{"mn": "4683"}]}),
    ));
    e.sim("wait VM12PROD");
    e.apply(&lm("chk", "vm12prod", "ABGSE501", json!({"checkOnly": true})));
    let st = e.lm("chk");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert_eq!(
        st.messages,
        vec![
            "VMS2404 LIVE MIGRATION OF VM (12,VM12PROD) REJECTED BY THE TARGET SU 'ABGSE501'. REASON: VMS2437,4683",
            "SEC2405 LIVE MIGRATION OF VM (12,VM12PROD) REJECTED BY THE SOURCE SU 'ABGSE701'. REASON: SEC2421",
            "VMS2461 LIVE MIGRATION OF VM (12,VM12PROD) TO TARGET SU 'ABGSE501' NOT POSSIBLE",
        ]
    );
    let c = st.conflicts.iter().find(|c| c.reason == "DeviceAssignedExclusively").expect("VMS2437");
    assert!(c.message.starts_with("VMS2437 DEVICE '4683' NOT ASSIGNABLE TO VIRTUAL MACHINE ON THE TARGET SU"), "{c:?}");
    assert!(st.conflicts.iter().all(|c| c.code.is_some()), "every conflict has a code: {:#?}", st.conflicts);
}

#[test]
fn native_x86_migration_has_no_vm_index_and_no_vms_lines() {
    // s4.2: "LM of Native BS2000 (only SU x86)"; VMS messages are VM2000's (s4.6.2: "The
    // LM is executed by X2000 on SU x86. In operation mode VM2000 other message numbers
    // are issued"), and a VM index exists only under VM2000.
    let mut e = Env::new(&site_x86(10, "Native"));
    e.apply(&vm("n1", "NATIVE1", "SEX1", json!({"state": "RUNNING", "memoryMiB": 1024})));
    assert_eq!(e.vm("n1").vm_index, None);
    e.apply(&lm("lm-n1", "n1", "SEX2", json!({})));
    let st = e.lm("lm-n1");
    assert_eq!(st.phase, LmPhase::Completed, "{:#?}", st.conflicts);
    assert!(!ids(&st.messages).iter().any(|id| id.starts_with("VMS")), "{:#?}", st.messages);
    assert!(st.messages.iter().any(|m| m.contains("HAL0331")) && st.messages.iter().any(|m| m.contains("ETMDR03")));
    assert_eq!(e.vm("n1").vm_index, None);
    assert!(e.vm("n1").migration_history.iter().all(|h| h.vm_index == 0));
}

// ---------------------------------------------------------------------------------
// Item 12: the last storage transfer

#[test]
fn the_last_storage_transfer_is_its_own_round_before_the_suspension() {
    // s4.4: "At the end of phase 2, the I/O system is stopped for the BS2000 system under
    // migration ... At the very end of Phase 2, a last storage transfer is carried out."
    // Phase 3: "the system is stopped on the source SU and the possibly not transferred
    // storage sites and current register content are copied".
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({"memoryMiB": 4096, "workload": {"dirtyRateMiBps": 100}})));
    e.apply(&lm("lm-1", "vm12prod", "ABGSE701", json!({})));
    let st = e.lm("lm-1");
    assert_eq!(st.phase, LmPhase::Completed);
    let (last, before) = st.rounds.split_last().expect("rounds");
    assert!(last.last && before.iter().all(|r| !r.last), "{:#?}", st.rounds);
    assert_eq!(last.sent_mi_b, before.last().expect("a pre-copy round").dirty_mi_b);
    let rate = last.sent_mi_b / (last.duration_ms as f64 / 1000.0);
    let expect = sectl::sim::migration::suspension_ms(last.dirty_mi_b, rate);
    let got = st.downtime_ms.expect("downtime");
    assert!(got.abs_diff(expect) <= 2, "the suspension copies what the last transfer left: {got} vs {expect}");
    let io = st.messages.iter().position(|m| m.contains("SEC2010")).expect("I/O stopped");
    assert!(io < st.messages.iter().position(|m| m.contains("VMS2452")).expect("suspended"));
}

// ---------------------------------------------------------------------------------
// The decision kept: a second migration from a busy source SU is queued

#[test]
fn a_second_migration_from_a_busy_source_waits_with_monjv_s() {
    // s4.8: "Only one LM can be started on a source SU. Every further start is rejected
    // as long as the LM is running." sectl queues the second request instead (MONJV
    // $S, "Task accepted for migration", s4.3) and starts it when the source is free,
    // so VM2000 never sees two at once.
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({})));
    e.apply(&vm("b1", "B1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.put(&lm("lm-1", "vm12prod", "ABGSE701", json!({})));
    e.run_for(0);
    e.put(&lm("lm-2", "b1", "ABGSE701", json!({})));
    e.run_for(0);
    let st = e.lm("lm-2");
    assert_eq!((st.phase, st.monjv.as_deref()), (LmPhase::Pending, Some("$S")));
    assert_eq!(cond(&st.conditions, "Completed").reason, "Queued");
    e.settle();
    assert_eq!(e.lm("lm-2").phase, LmPhase::Completed);
    assert_eq!(e.lm("lm-1").phase, LmPhase::Completed);
}

// ---------------------------------------------------------------------------------
// Scenario (s5): site outage with storage loss

#[test]
fn scenario_site_outage_with_storage_loss() {
    use sectl::api::DeviceUsage::{Exclusive, Shared};
    // s5, "Possible scenario": "if not only the SE Server but also the storage system
    // with the source disks is damaged ... (total outage of a site). The system manager
    // activates the mirror disks from the other SE Server ... and changes the MNs of the
    // disk devices in the VM definition", then "/ACTIVATE-VM-DEFINITION" and "/START-VM".
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({"devices": [{"mn": "A000-A0FF", "usage": "exclusive"}]})));
    assert_eq!(holders(&e.world(), "ABGSE501", "A000"), vec![("vm12prod".into(), Exclusive)]);

    // The whole of se501 goes down: its MU and its SU.
    let seq = e.last_seq();
    e.sim_only("power off abgblack");
    e.sim_only("power off ABGSE501");
    e.settle();
    let evs = e.events_since(seq);
    let at = |component: &str, reason: &str| {
        evs.iter()
            .position(|ev| ev.component == component && ev.reason == reason)
            .unwrap_or_else(|| panic!("no {component} {reason} in {evs:#?}"))
    };
    // s2.3.3: the MU "reports itself as deactivated (component M2000)"; it "does not
    // answer to heartbeat queries" (WARNING, Cluster); the Management Cluster turns
    // WARNING (loss of redundancy); the SU /390 cluster is concerned too. Glossary,
    // "Power Status": "If an SU is turned off, then the function LM is not fulfilled
    // for the SU Cluster and the cluster status is ERROR."
    let mu_off = at("M2000", "UnitDeactivated");
    let hb = at("Cluster", "HeartbeatLost");
    let mc = at("Cluster", "ManagementClusterWarning");
    let su = at("Cluster", "SUClusterError");
    assert!(mu_off < hb && hb < mc, "{evs:#?}");
    assert!(at("Sys-Mgmt", "UnitDeactivated") < su, "{evs:#?}");
    assert!(evs[hb].message.contains("abgblack") && evs[hb].priority == "WARNING");
    assert!(evs[su].message.contains("SU ABGSE501 is powered off"), "{}", evs[su].message);
    assert_eq!(suc_state(&e, "su390").0, Some(ClusterState::Error));

    // s5: only when the remote monitor "has not written any alive message on the CRD in
    // the intended time".
    e.apply(&rec("rec-1", "vm12prod", "ABGSE701", json!({})));
    let st = e.rec("rec-1");
    assert_eq!(st.phase, RecoveryPhase::Rejected);
    assert!(st.conflicts.iter().any(|c| c.reason == "RemoteSuAlive"), "{:#?}", st.conflicts);
    // ... and not while BCAM is down in the local monitor ("VM definitions": commands
    // that directly concern VM definitions are rejected with VMS2332).
    e.sim("advance 90s");
    e.sim("bcam fail ABGSE701");
    e.apply(&rec("rec-2", "vm12prod", "ABGSE701", json!({})));
    let st = e.rec("rec-2");
    assert_eq!(st.phase, RecoveryPhase::Rejected);
    assert_eq!(st.conflicts.len(), 1, "{:#?}", st.conflicts);
    assert_eq!(st.conflicts[0].code.as_deref(), Some("VMS2332"));
    e.sim("bcam start ABGSE701");
    e.apply(&rec("rec-3", "vm12prod", "ABGSE701", json!({})));
    let st = e.rec("rec-3");
    assert_eq!(st.phase, RecoveryPhase::Completed, "{:#?}", st.conflicts);
    // "After performing the command /RECOVER-VM-DEFINITION the VM definition is in state
    // DEFINED_ONLY and the VM is not initialized, so it doesn't allocate any resources."
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state, v.vm_index), (Some("ABGSE701"), Some(VmState::DefinedOnly), None));
    assert_eq!(e.world().used_memory("ABGSE701"), 0);

    // /MODIFY-VM-DEFINITION ... *REMOVE(A000-A0FF), *ADD(B000-B007, *EXCLUSIVE),
    // *ADD(B008-B0FF, *SHARED); /ACTIVATE-VM-DEFINITION; /START-VM IPL-UNIT=B000.
    let b_disks =
        json!({"devices": [{"mn": "B000-B007", "usage": "exclusive"}, {"mn": "B008-B0FF", "usage": "shared"}]});
    e.apply(&vm12prod("ABGSE501", b_disks));
    let v = e.vm("vm12prod");
    assert_eq!((v.server_unit.as_deref(), v.state, v.vm_index), (Some("ABGSE701"), Some(VmState::Running), Some(12)));
    let w = e.world();
    for i in 0..8 {
        assert_eq!(holders(&w, "ABGSE701", &format!("B00{i}")), vec![("vm12prod".into(), Exclusive)]);
    }
    for mn in ["B008", "B080", "B0FF"] {
        assert_eq!(holders(&w, "ABGSE701", mn), vec![("vm12prod".into(), Shared)], "{mn}");
    }
    assert!(holders(&w, "ABGSE701", "A000").is_empty() && holders(&w, "ABGSE501", "A000").is_empty());
    assert_eq!(v.migration_history.first().map(|h| h.server_unit.as_str()), Some("ABGSE701"), "loaded anew here");
}

// ---------------------------------------------------------------------------------
// Missing behaviours: VM2000 commands and their preconditions

#[test]
fn io_configuration_change_and_vm2000_shutdown_as_sim_verbs() {
    // s4.8: "The LM is rejected when a dynamic I/O configuration change is running";
    // "The command /START-CONFIGURATION-UPDATE is rejected during the LM"; "The LM will
    // be rejected if VM2000 shutdown has been initiated before (command /SHUTDOWN-VM
    // VM-ID=*VM2000)"; "As long as a VM has the sub-status DIFF, it's excluded from the
    // dynamic I/O configuration change".
    let mut e = Env::new(&site_diff());
    e.apply(&vm12prod("ABGSE501", json!({})));
    e.sim("ioconfig start ABGSE701");
    e.apply(&lm("chk-1", "vm12prod", "ABGSE701", json!({"checkOnly": true})));
    assert!(has_reason(&e.lm("chk-1"), "IoConfigurationChangeRunning"), "{:#?}", e.lm("chk-1").conflicts);
    e.sim("ioconfig end ABGSE701");
    e.sim("shutdown initiate ABGSE501");
    e.apply(&lm("chk-2", "vm12prod", "ABGSE701", json!({"checkOnly": true})));
    assert!(has_reason(&e.lm("chk-2"), "Vm2000ShutdownInitiated"), "{:#?}", e.lm("chk-2").conflicts);
    e.sim("shutdown cancel ABGSE501");
    // During a migration the change is refused.
    e.put(&lm("lm-1", "vm12prod", "ABGSE701", json!({})));
    e.run_for(0);
    let f = sectl::sim::Fault::parse(&["ioconfig".into(), "start".into(), "ABGSE701".into()]).expect("parses");
    let err = e.ctl.apply_fault(&f).expect_err("refused during the LM");
    assert!(err.to_string().contains("rejected"), "{err}");
    e.settle();
    assert_eq!(e.lm("lm-1").phase, LmPhase::Completed);
    // A DIFF VM is excluded from the change.
    assert_eq!(e.vm("vm12prod").substates, vec!["DIFF".to_string()]);
    let seq = e.last_seq();
    e.sim("ioconfig start ABGSE701");
    let evs = e.events_since(seq);
    assert!(evs.iter().any(|ev| ev.message.contains("excluded (substate DIFF): VM12PROD")), "{evs:#?}");
    // An SU that does not exist is refused.
    let f = sectl::sim::Fault::parse(&["shutdown".into(), "initiate".into(), "NOSUCH".into()]).expect("parses");
    assert!(e.ctl.apply_fault(&f).is_err());
}

// ---------------------------------------------------------------------------------
// Missing behaviours: what an SE server lacks for redundancy

fn se_conditions(e: &Env, name: &str) -> Vec<sectl::api::Condition> {
    let r = e.store.get(Kind::SEServer, name).expect("get").expect("exists");
    r.as_typed::<sectl::api::SEServerSpec>().expect("typed").status.conditions.clone()
}

#[test]
fn servers_report_what_redundancy_lacks() {
    // s2.1: "there are still two MUs in a SE500/SE700 required for the redundant SKP
    // functionality"; s1.3: external configuration disks for "MU redundancy for SE /390
    // -> mandatory"; s4.8: "The main memory size of the monitor system should be at
    // least 512 MB."
    let site = site390()
        .replace("managementUnits: [{name: abgwhite}]", "managementUnits: [{name: abgwhite}, {name: abgred}]")
        .replace("monitorMemoryMiB: 1024", "monitorMemoryMiB: 256");
    let mut e = Env::new(&site);
    let c = cond(&se_conditions(&e, "se501"), "Recommendations").clone();
    assert_eq!(c.status, ConditionStatus::False);
    assert!(c.message.contains("SE500 with one MU") && c.message.contains("SU ABGSE501 has 256 MiB"), "{c:?}");
    let c = cond(&se_conditions(&e, "se701"), "Recommendations").clone();
    assert_eq!(c.status, ConditionStatus::True, "two MUs, disks of the management cluster, 2 GiB monitor: {c:?}");
    // Without the management cluster's disks se701's two MUs lack them.
    e.apply(&site.replace("configDisks: [{name: crd-a}, {name: crd-b}]", "configDisks: []"));
    let c = cond(&se_conditions(&e, "se701"), "Recommendations").clone();
    assert!(c.status == ConditionStatus::False && c.message.contains("MU redundancy for SE /390"), "{c:?}");
}

#[test]
fn su_cluster_status_has_a_table_of_its_sus() {
    // s3.3: "The second field contains a table with the SUs and its values that are
    // relevant for the cluster functionality."
    let mut e = Env::new(&site390());
    e.sim("rewas stop ABGSE701");
    e.sim("power off ABGSE501");
    let r = e.store.get(Kind::SUCluster, "su390").expect("get").expect("exists");
    let t = r.as_typed::<SUClusterSpec>().expect("typed").status.server_units.clone();
    let rows: Vec<String> = t
        .iter()
        .map(|u| format!("{} {} {} {} {} {:?}", u.name, u.server, u.su_type, u.operation_mode, u.power, u.rewas))
        .collect();
    assert_eq!(rows, vec!["ABGSE701 se701 /390 VM2000 ON Some(false)", "ABGSE501 se501 /390 VM2000 OFF Some(true)"]);
}

#[test]
fn auto_ipl_decides_whether_a_persistent_vm_restarts_after_a_reboot() {
    // "VM definitions": "A persistent VM definition is also available to a Server Unit
    // after a reboot. With its help a persistent VM is set up again and restarted
    // immediately when the corresponding specifications are provided in the AUTO-IPL
    // parameter."
    let mut e = Env::new(&site390());
    e.apply(&vm("auto", "AUTO", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.apply(&vm("manual", "MANUAL", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024, "autoIpl": false})));
    e.sim("power off ABGSE501");
    e.sim("power on ABGSE501");
    assert_eq!(e.vm("auto").state, Some(VmState::Running));
    let v = e.vm("manual");
    assert_eq!(v.state, Some(VmState::DefinedOnly), "the definition is there, the VM is not restarted");
    assert_eq!(cond(&v.conditions, "Ready").reason, "NoAutoIpl");
    assert_eq!(e.world().used_memory("ABGSE501"), 1024);
    // The operator starts it (a spec change): ACTIVATE-VM-DEFINITION, START-VM.
    e.apply(&vm("manual", "MANUAL", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024, "autoIpl": true})));
    assert_eq!(e.vm("manual").state, Some(VmState::Running));
}

#[test]
fn native_bs2000_owns_every_device_of_its_su() {
    // s4.8: "In the case of native BS2000, all devices are assigned to the BS2000. In
    // case of unidentical generation of BS2000 devices, an LM is only possible on one
    // side only or not at all, depending on the situation."
    let extra = "        - {mn: \"9300\", type: disk, hostConnector: \"03\", unitId: \"00\"}\n";
    let site = site_x86(10, "Native").replacen(
        "        - {mn: \"9F00\", type: tape, hostConnector: \"05\", unitId: \"00\"}\n",
        &format!("        - {{mn: \"9F00\", type: tape, hostConnector: \"05\", unitId: \"00\"}}\n{extra}"),
        1,
    );
    assert!(site.contains("9300"));
    let mut e = Env::new(&site);
    e.apply(&vm("n1", "NATIVE1", "SEX1", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.apply(&lm("chk-1", "n1", "SEX2", json!({"checkOnly": true})));
    let st = e.lm("chk-1");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert!(st.messages[0].contains("SEC2433,9300"), "{:#?}", st.messages);
    // The other way round every device of SEX2 exists identically on SEX1: possible.
    e.apply(&vm("n2", "NATIVE2", "SEX2", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.delete(Kind::VMDefinition, "n1");
    e.settle();
    e.apply(&lm("chk-2", "n2", "SEX1", json!({"checkOnly": true})));
    assert_eq!(e.lm("chk-2").phase, LmPhase::Possible, "{:#?}", e.lm("chk-2").conflicts);
}

#[test]
fn x86_warns_about_unassigned_devices_generated_differently() {
    // s4.8, SU x86: "The BS2000 devices that are not assigned to the BS2000 VM under
    // migration should also be generated identically on SU x86 ... Otherwise, warnings
    // will appear also for unassigned devices with different generation during LM and
    // those devices cannot be assigned on the target SU of the migrated BS2000-VM at all."
    let tape = "        - {mn: \"9F00\", type: tape, hostConnector: \"05\", unitId: \"00\"}\n";
    let site = site_x86(10, "VM2000")
        .replacen(tape, &format!("{tape}        - {{mn: \"9400\", type: disk, hostConnector: \"06\", unitId: \"00\"}}\n"), 1)
        .replacen(
            &format!("{tape}---\napiVersion: sectl.io/v1alpha1\nkind: ManagementCluster"),
            &format!("{tape}        - {{mn: \"9400\", type: disk, hostConnector: \"04\", unitId: \"00\"}}\n---\napiVersion: sectl.io/v1alpha1\nkind: ManagementCluster"),
            1,
        );
    assert_eq!(site.matches("\"9400\"").count(), 2, "{site}");
    let mut e = Env::new(&site);
    let spec = |devs: serde_json::Value| json!({"state": "RUNNING", "memoryMiB": 1024, "devices": devs});
    e.apply(&vm("x1", "X1", "SEX1", spec(json!([{"mn": "9000-9003"}]))));
    e.apply(&lm("lm-1", "x1", "SEX2", json!({})));
    let st = e.lm("lm-1");
    assert_eq!((st.phase, st.monjv.as_deref()), (LmPhase::Completed, Some("$TW")), "{:#?}", st.conflicts);
    assert!(st.messages.iter().any(|m| m.contains("SEC2440 DEVICES 9400 GENERATED DIFFERENTLY")), "{:#?}", st.messages);
    e.apply(&vm("x1", "X1", "SEX1", spec(json!([{"mn": "9000-9003"}, {"mn": "9400"}]))));
    let v = e.vm("x1");
    assert_eq!(cond(&v.conditions, "Ready").reason, "DeviceGeneratedDifferently");
    assert!(holders(&e.world(), "SEX2", "9400").is_empty());
}

#[test]
fn a_disk_not_operable_on_the_target_aborts_a_390_migration() {
    // s4.7, "Aborting an already running LM": "The attached disks in the guest system
    // are not in operable state on the target SU (SU /390)"; "all already finished
    // action are reversed".
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({})));
    e.put(&lm("lm-1", "vm12prod", "ABGSE701", json!({})));
    e.run_for(0);
    assert_eq!(e.lm("lm-1").phase, LmPhase::Setup);
    e.sim("device fail ABGSE701 4683");
    let st = e.lm("lm-1");
    assert_eq!((st.phase, st.monjv.as_deref()), (LmPhase::Aborted, Some("$AE")));
    assert!(cond(&st.conditions, "Completed").message.contains("disk 4683 is not in an operable state"), "{st:#?}");
    let w = e.world();
    assert_eq!(w.vms["vm12prod"].su, "ABGSE501");
    assert!(holders(&w, "ABGSE701", "4683").is_empty());
    // Repaired: a new attempt completes.
    e.sim("device repair ABGSE701 4683");
    e.apply(&lm("lm-2", "vm12prod", "ABGSE701", json!({})));
    assert_eq!(e.lm("lm-2").phase, LmPhase::Completed);
}

#[test]
fn the_vms_monjv_shows_migr_out_then_terminated() {
    // s4.8: "If the VM that needs to be migrated is monitored with a MONJV (defined
    // during /CREATE-VM or /ACTIVATE-VM-DEFINITION), then on the source SU at the start
    // of the migration the string MIGR-OUT is written at the distance 87 - 94 of the
    // MONJV. If the migration is successful, than the monitoring state is set to $T (VM
    // terminated)."
    let mut e = Env::new(&site390());
    e.apply(&vm12prod("ABGSE501", json!({"monjv": "JV.VM.VM12PROD"})));
    let j = e.vm("vm12prod").monjv.expect("monitored");
    assert_eq!((j.name.as_str(), j.state.as_str(), j.migration.as_deref()), ("JV.VM.VM12PROD", "$R", None));
    e.put(&lm("lm-1", "vm12prod", "ABGSE701", json!({})));
    e.run_for(0);
    let j = e.vm("vm12prod").monjv.expect("monitored");
    assert_eq!((j.state.as_str(), j.migration.as_deref()), ("$R", Some("MIGR-OUT")));
    e.settle();
    assert_eq!(e.lm("lm-1").phase, LmPhase::Completed);
    let j = e.vm("vm12prod").monjv.expect("monitored");
    assert_eq!((j.state.as_str(), j.migration.as_deref()), ("$T", None));
    // Not monitored: no MONJV.
    e.apply(&vm("plain", "PLAIN", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 512})));
    assert!(e.vm("plain").monjv.is_none());
    let bad = vm("badjv", "BADJV", "ABGSE501", json!({"memoryMiB": 512, "monjv": "jv lower"}));
    let errs = sectl::manifest::decode("t.yaml", bad.as_bytes()).expect_err("a bad MONJV name is refused");
    assert!(errs.iter().any(|e| e.path == "spec.monjv"), "{errs:?}");
}

// ---------------------------------------------------------------------------------
// Missing behaviours: ResMon and an inhomogeneous (V6.2/V6.3) management cluster

#[test]
fn resmon_warning_and_a_cluster_manager_on_a_v6_2_mu() {
    // s2.5: "If the resource monitor (ResMon) detects a resource problem the system
    // status for this unit is set to WARNING." "In case that the Cluster Manager runs on
    // a V6.2 MU ... System status WARNING for units: Since the resource monitor is not
    // called there will be no status WARNING. The event 'State of unit '<hostname>'
    // changed from '<oldstate>' to 'WARNING'' will not be created."
    let site =
        site390().replace("managementUnits: [{name: abgwhite}]", "managementUnits: [{name: abgwhite}, {name: abgred}]");
    let site = {
        // se501 runs V6.2.
        let i = site.find("metadata: {name: se501}").expect("se501");
        let (a, b) = site.split_at(i);
        format!("{a}{}", b.replacen("version: V6.3", "version: V6.2", 1))
    };
    let mut e = Env::new(&site);
    let unit_state = |e: &Env, server: &str, unit: &str| {
        let r = e.store.get(Kind::SEServer, server).expect("get").expect("exists");
        let o = r.as_typed::<sectl::api::SEServerSpec>().expect("typed").clone();
        o.status.units.iter().find(|u| u.name == unit).map(|u| u.state.clone()).expect("listed")
    };
    let cm = |e: &Env| e.world().cluster_managers.get("mc").cloned().unwrap_or_default();
    let seq = e.last_seq();
    e.sim("resmon warning ABGSE701");
    assert_eq!(e.world().unit(&cm(&e)).map(|u| u.server.clone()).as_deref(), Some("se701"), "CM on a V6.3 MU");
    assert_eq!(unit_state(&e, "se701", "ABGSE701"), "WARNING");
    let evs = e.events_since(seq);
    assert!(
        evs.iter().any(|ev| ev.message == "State of unit 'ABGSE701' changed from 'RUNNING' to 'WARNING'"),
        "{evs:#?}"
    );
    // The Cluster Manager moves to the V6.2 MU: no ResMon, no WARNING, no event.
    e.sim("power off abgwhite");
    e.sim("power off abgred");
    assert_eq!(e.world().unit(&cm(&e)).map(|u| u.server.clone()).as_deref(), Some("se501"), "CM on abgblack");
    let seq = e.last_seq();
    e.sim("resmon warning ABGSE501");
    assert_eq!(unit_state(&e, "se501", "ABGSE501"), "RUNNING");
    assert!(!e
        .events_since(seq)
        .iter()
        .any(|ev| ev.reason == "UnitStateChanged" && ev.message.contains("to 'WARNING'")));
    // Back on a V6.3 MU: the problem shows.
    e.sim("power on abgwhite");
    e.sim("power off abgblack");
    assert_eq!(e.world().unit(&cm(&e)).map(|u| u.server.clone()).as_deref(), Some("se701"));
    assert_eq!(unit_state(&e, "se701", "ABGSE701"), "WARNING");
}

// ---------------------------------------------------------------------------------
// Missing behaviours: maintenance mode, NOT_MONITORED, the Cluster Manager's resources

fn unit_state(e: &Env, server: &str, unit: &str) -> String {
    let r = e.store.get(Kind::SEServer, server).expect("get").expect("exists");
    let o = r.as_typed::<sectl::api::SEServerSpec>().expect("typed").clone();
    o.status.units.iter().find(|u| u.name == unit).map(|u| u.state.clone()).expect("listed")
}

fn mc_status(e: &Env, name: &str) -> sectl::api::ManagementClusterStatus {
    let r = e.store.get(Kind::ManagementCluster, name).expect("get").expect("exists");
    r.as_typed::<sectl::api::ManagementClusterSpec>().expect("typed").status.clone()
}

/// The site of `resmon_warning_and_a_cluster_manager_on_a_v6_2_mu`: se701 (V6.3, MUs
/// abgwhite and abgred) and se501 (V6.2, MU abgblack), with `extra` added to se501's
/// spec.
fn site_v62(extra: &str) -> String {
    let site =
        site390().replace("managementUnits: [{name: abgwhite}]", "managementUnits: [{name: abgwhite}, {name: abgred}]");
    let i = site.find("metadata: {name: se501}").expect("se501");
    let (a, b) = site.split_at(i);
    let b = b.replacen("version: V6.3", &format!("version: V6.2\n{extra}"), 1);
    format!("{a}{b}")
}

#[test]
fn s3_maintenance_mode_of_an_su_x86_turns_its_cluster_to_error() {
    // s3, Cluster Status: "It depends on: on the states of the involved units (for
    // example normal operation or maintenance mode for an SU x86)" ... "In the state
    // ERROR the cluster functions are not fulfilled (for example LM is not possible)."
    let mut e = Env::new(&site_x86(10, "VM2000"));
    e.apply(&vm("x1", "X1", "SEX1", json!({"state": "RUNNING", "memoryMiB": 1024})));
    assert_eq!(suc_state(&e, "sux86").0, Some(ClusterState::Normal));
    let seq = e.last_seq();
    e.sim("maintenance on SEX2");
    assert_eq!(unit_state(&e, "sex2", "SEX2"), "MAINTENANCE");
    let (state, why) = suc_state(&e, "sux86");
    assert_eq!(state, Some(ClusterState::Error));
    assert!(why.iter().any(|r| r == "SU SEX2 is in maintenance mode: LM is not possible"), "{why:?}");
    let evs = e.events_since(seq);
    assert!(evs.iter().any(|ev| ev.reason == "MaintenanceModeOn"), "{evs:#?}");
    assert!(evs.iter().any(|ev| ev.reason == "SUClusterError" && ev.message.contains("maintenance mode")), "{evs:#?}");
    // A live migration to it is rejected, naming the maintenance mode.
    e.apply(&lm("to-maint", "x1", "SEX2", json!({})));
    let st = e.lm("to-maint");
    assert_eq!(st.phase, LmPhase::Rejected, "{st:?}");
    assert!(has_reason(&st, "ServerUnitInMaintenance"), "{:?}", reasons(&st));
    // Back to normal operation: NORMAL, and the migration goes.
    e.sim("maintenance off SEX2");
    assert_eq!(unit_state(&e, "sex2", "SEX2"), "RUNNING");
    assert_eq!(suc_state(&e, "sux86").0, Some(ClusterState::Normal));
    e.apply(&lm("after", "x1", "SEX2", json!({})));
    assert_eq!(e.lm("after").phase, LmPhase::Completed);
}

#[test]
fn maintenance_mode_is_for_su_x86_only() {
    let mut e = Env::new(&site390());
    let err = e.try_sim("maintenance on ABGSE701").expect_err("refused on SU /390");
    assert!(err.contains("maintenance mode exists for SU x86 only"), "{err}");
}

#[test]
fn s2_5_an_au_registered_for_hw_monitoring_only_is_not_monitored() {
    // s2.5: "If an AU has been registered only for HW monitoring its system status is
    // NOT_MONITORED." "In case that the V6.3 MUs are powered off and the enquire
    // processes run on the V6.2 MUs ... System NOT_MONITORED for units: This system
    // status is not known in V6.2. Instead status UNCONFIGURED will be displayed."
    let aus = "  applicationUnits: [{name: au-hw, hwMonitoringOnly: true}, {name: au-full}]";
    let mut e = Env::new(&site_v62(aus));
    assert_eq!(unit_state(&e, "se501", "au-hw"), "NOT_MONITORED");
    assert_eq!(unit_state(&e, "se501", "au-full"), "RUNNING");
    e.sim("power off abgwhite");
    assert_eq!(unit_state(&e, "se501", "au-hw"), "NOT_MONITORED", "a V6.3 MU still runs");
    e.sim("power off abgred");
    assert_eq!(unit_state(&e, "se501", "au-hw"), "UNCONFIGURED");
    assert_eq!(unit_state(&e, "se501", "au-full"), "RUNNING");
    e.sim("power on abgred");
    assert_eq!(unit_state(&e, "se501", "au-hw"), "NOT_MONITORED");
}

#[test]
fn s2_2_the_cluster_manager_and_the_status_of_its_internal_resources() {
    // s2.2: "Cluster Manager: name of the Management Unit which acts as -> Cluster
    // Manager currently in the Management Cluster, and the status of the internal
    // resources of the Cluster Manager." s2.5: "In case that the Cluster Manager runs
    // on a V6.2 MU the so-called global data are enquired on that MU ... Since the
    // resource monitor is not called there will be no status WARNING."
    let mut e = Env::new(&site_v62(""));
    let res = |e: &Env| -> Vec<(String, String)> {
        mc_status(e, "mc").cluster_manager_resources.iter().map(|r| (r.name.clone(), r.state.clone())).collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    assert_eq!(mc_status(&e, "mc").cluster_manager.as_deref(), Some("abgwhite"));
    assert_eq!(res(&e), pairs(&[("CRD", "OK"), ("MCNPR", "OK"), ("ResMon", "OK"), ("GlobalData", "COMPLETE")]));
    assert_eq!(cond(&mc_status(&e, "mc").conditions, "ClusterManagerResources").status, ConditionStatus::True);
    e.sim("disk fail crd-a");
    e.sim("link down mc");
    assert_eq!(
        res(&e),
        pairs(&[("CRD", "DEGRADED"), ("MCNPR", "FAILED"), ("ResMon", "OK"), ("GlobalData", "COMPLETE")])
    );
    let c = cond(&mc_status(&e, "mc").conditions, "ClusterManagerResources").clone();
    assert_eq!((c.status, c.reason.as_str()), (ConditionStatus::False, "Restricted"));
    assert!(c.message.contains("MCNPR FAILED"), "{}", c.message);
    e.sim("disk repair crd-a");
    e.sim("link up mc");
    // The Cluster Manager moves to the V6.2 MU abgblack.
    e.sim("power off abgwhite");
    e.sim("power off abgred");
    assert_eq!(mc_status(&e, "mc").cluster_manager.as_deref(), Some("abgblack"));
    assert_eq!(
        res(&e),
        pairs(&[("CRD", "OK"), ("MCNPR", "OK"), ("ResMon", "NOT_CALLED"), ("GlobalData", "RESTRICTED")])
    );
}

#[test]
fn vms2306_vms2308_executed_with_a_warning_then_updated_periodically() {
    // "VM definitions": "When BCAM is active in the monitor system but the network
    // connection to the system disk is (temporarily) faulty, VM2000 commands which
    // concern VM definitions may possibly be executed with a warning or rejected with a
    // corresponding message. After warning VMS2306 or VMS2308, VM2000 attempts
    // periodically to subsequently update the VM definition."
    let mut e = Env::new(&site390());
    e.apply(&vm("c1", "C1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024})));
    e.apply(&vm("d1", "D1", "ABGSE501", json!({"state": "DEFINED_ONLY", "memoryMiB": 1024})));
    e.sim("sysdisk fail ABGSE501");
    let seq = e.last_seq();
    let t0 = e.now();
    // CREATE-VM-DEFINITION: executed, with VMS2308.
    e.apply(&vm("n1", "N1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 1024})));
    assert_eq!(e.vm("n1").state, Some(VmState::Running));
    // A changed definition (MODIFY-VM-ATTRIBUTES): executed, with VMS2306.
    e.apply(&vm("c1", "C1", "ABGSE501", json!({"state": "RUNNING", "memoryMiB": 2048})));
    assert_eq!(e.world().vms["c1"].memory_mib, 2048);
    let evs = e.events_since(seq);
    let ids: Vec<&str> = evs.iter().map(|ev| ev.reason.as_str()).collect();
    assert!(ids.contains(&"VMS2308") && ids.contains(&"VMS2306"), "{evs:#?}");
    for v in ["n1", "c1"] {
        assert_eq!(cond(&e.vm(v).conditions, "DefinitionSynced").reason, "SystemDiskUnreachable");
    }
    // MIGRATE-VM-DEFINITION moves a definition between system disks: rejected.
    e.apply(&lm("lm-d1", "d1", "ABGSE701", json!({"definitionOnly": true})));
    let st = e.lm("lm-d1");
    assert_eq!(st.phase, LmPhase::Rejected);
    assert!(has_reason(&st, "SystemDiskUnreachable"), "{:?}", reasons(&st));
    // While the connection stays faulty the attempts fail: nothing is written.
    let seq = e.last_seq();
    e.sim("advance 150s");
    assert!(!e.events_since(seq).iter().any(|ev| ev.reason == "DefinitionWritten"));
    // Repaired: the next periodic attempt (every 60 s from the warning) writes both.
    e.sim("sysdisk repair ABGSE501");
    let evs = e.events_since(seq);
    let written: Vec<_> = evs.iter().filter(|ev| ev.reason == "DefinitionWritten").collect();
    assert_eq!(written.len(), 2, "{evs:#?}");
    assert_eq!(e.now() - t0, 180_000, "the attempt after 150 s is the one at 180 s");
    for v in ["n1", "c1"] {
        assert!(!has_cond(&e.vm(v).conditions, "DefinitionSynced"));
    }
    assert!(e.world().su("ABGSE501").expect("su").unsynced.is_empty());
}
