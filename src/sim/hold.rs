//! Device holders (which VMs hold a device of an SU, and how), stored as their own
//! entries of the world, `w/hold/<su>/<mn>`, apart from the SU's unit entry.
//!
//! In memory the holders stay in their device (`SimDevice::holders`), so every reader
//! is as before. A placement changes them through `hold_devices` / `release_devices`,
//! which change the device without marking its unit and mark only the (SU, MN) pairs
//! they changed here: the reconcile then writes a few small entries instead of the
//! SU with all its devices (256 in the benchmark site), walked and serialised again.
//!
//! Everything else that changes a unit marks the unit (`units.get_mut`, `su_mut`,
//! `retain` ...). Writing a unit writes it without holders, and with it every hold of
//! its devices; the stored holds it no longer has (a device or the unit gone) are
//! deleted: the book remembers which (SU, MN) entries the store has.
//!
//! Older layouts: unit entries written before this held their devices' holders. They
//! are read as they are, and such a unit is marked changed, so the next batch writes
//! it without holders together with its hold entries (atomically).

use super::{SimDevice, World};
use crate::api::DeviceUsage;
use crate::store::StateWrites;
use std::collections::{BTreeMap, BTreeSet};

/// Prefix of the hold entries.
pub const PREFIX: &str = "w/hold/";

/// Holders of one device, as stored.
pub type Holders = BTreeMap<String, DeviceUsage>;

/// Which holds changed since they were last written, and which the store has. Never
/// part of the world's equality.
#[derive(Debug, Clone, Default)]
pub struct HoldBook {
    dirty: BTreeSet<(String, String)>,
    stored: BTreeMap<String, BTreeSet<String>>,
}

impl PartialEq for HoldBook {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl HoldBook {
    /// Whether a hold changed since the last write.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Forgets which holds changed (they are as stored).
    pub fn forget_changes(&mut self) {
        self.dirty.clear();
    }

    /// Notes that the store has the hold entry of `su`/`mn` (on load).
    pub fn note_stored(&mut self, su: &str, mn: &str) {
        self.stored.entry(su.to_string()).or_default().insert(mn.to_string());
    }
}

/// The key of the hold entry of device `mn` of `su`.
pub fn key(su: &str, mn: &str) -> String {
    format!("{PREFIX}{su}/{mn}")
}

/// The SU and MN of a hold entry's name (the key after `PREFIX`); an MN has no `/`.
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('/').filter(|(su, mn)| !su.is_empty() && !mn.is_empty())
}

fn encode(h: &Holders) -> Vec<u8> {
    serde_json::to_vec(h).expect("holders serialise")
}

impl World {
    /// Takes the devices of `owner` on `su` (adds it as holder).
    pub fn hold_devices(&mut self, su: &str, owner: &str, devices: &BTreeMap<String, DeviceUsage>) {
        let (units, book) = (&mut self.units, &mut self.holds);
        let Some(devs) = units.get_mut_unmarked(su).and_then(|u| u.su.as_mut()).map(|s| &mut s.devices) else {
            return;
        };
        for (mn, u) in devices {
            if let Some(d) = devs.get_mut(mn) {
                if d.holders.insert(owner.to_string(), *u) != Some(*u) {
                    book.dirty.insert((su.to_string(), mn.clone()));
                }
            }
        }
    }

    /// Gives back every device `owner` holds on `su`.
    pub fn release_devices(&mut self, su: &str, owner: &str) {
        let (units, book) = (&mut self.units, &mut self.holds);
        let Some(devs) = units.get_mut_unmarked(su).and_then(|u| u.su.as_mut()).map(|s| &mut s.devices) else {
            return;
        };
        for (mn, d) in devs.iter_mut() {
            if d.holders.remove(owner).is_some() {
                book.dirty.insert((su.to_string(), mn.clone()));
            }
        }
    }

    /// The device `mn` of `su`, if the world has it.
    fn device(&self, su: &str, mn: &str) -> Option<&SimDevice> {
        self.su(su)?.devices.get(mn)
    }

    /// The hold entries to write: every hold of the units in `units` (just written),
    /// deleting the stored ones they no longer have, and each other changed hold.
    pub(super) fn hold_changes(&mut self, units: &BTreeSet<String>, out: &mut StateWrites) {
        for su in units {
            let now: BTreeSet<String> = match self.su(su) {
                Some(s) => s.devices.iter().filter(|(_, d)| !d.holders.is_empty()).map(|(mn, _)| mn.clone()).collect(),
                None => BTreeSet::new(),
            };
            let before = self.holds.stored.remove(su).unwrap_or_default();
            out.extend(before.difference(&now).map(|mn| (key(su, mn), None)));
            for mn in &now {
                let d = self.device(su, mn).expect("listed above");
                out.push((key(su, mn), Some(encode(&d.holders))));
            }
            if !now.is_empty() {
                self.holds.stored.insert(su.clone(), now);
            }
        }
        let dirty = std::mem::take(&mut self.holds.dirty);
        for (su, mn) in dirty {
            if units.contains(&su) {
                continue;
            }
            match self.device(&su, &mn).filter(|d| !d.holders.is_empty()) {
                Some(d) => {
                    out.push((key(&su, &mn), Some(encode(&d.holders))));
                    self.holds.note_stored(&su, &mn);
                }
                None => {
                    let set = self.holds.stored.get_mut(&su);
                    if set.is_some_and(|s| s.remove(&mn)) {
                        out.push((key(&su, &mn), None));
                        if self.holds.stored.get(&su).is_some_and(|s| s.is_empty()) {
                            self.holds.stored.remove(&su);
                        }
                    }
                }
            }
        }
    }

    /// Puts a loaded hold entry into its device; an entry for a device the world does
    /// not have is refused (the store was not written by this layout's rules).
    pub(super) fn load_hold(&mut self, su: &str, mn: &str, holders: Holders) -> Result<(), String> {
        let d = self
            .units
            .get_mut_unmarked(su)
            .and_then(|u| u.su.as_mut())
            .and_then(|s| s.devices.get_mut(mn))
            .ok_or_else(|| format!("no device {mn} on SU {su} to hold"))?;
        d.holders = holders;
        self.holds.note_stored(su, mn);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DeviceType, OperationMode, SuType};
    use crate::sim::{SuRuntime, Unit, UnitKind};
    use crate::store::{Batch, SledStore, Store};
    use DeviceUsage::{Exclusive, Shared};

    fn su_unit(name: &str, mns: &[&str]) -> Unit {
        let device = |i: usize| SimDevice {
            device_type: DeviceType::Disk,
            host_connector: "01".into(),
            unit_id: format!("{i:02X}"),
            holders: Holders::new(),
        };
        Unit {
            name: name.into(),
            server: "se".into(),
            kind: UnitKind::SU,
            power_on: true,
            power_changed_ms: 0,
            resmon_problem: false,
            maintenance: false,
            su: Some(SuRuntime {
                su_type: SuType::X86,
                mode: OperationMode::VM2000,
                model: None,
                cpus: 4,
                memory_mib: 65536,
                monitor_mib: 1024,
                max_vms: 99,
                pools: [("*STDPOOL".to_string(), 4)].into_iter().collect(),
                groups: Default::default(),
                devices: mns.iter().enumerate().map(|(i, mn)| (mn.to_string(), device(i))).collect(),
                bcam_up: true,
                bcam_ended_on_purpose: false,
                rewas_up: true,
                io_change_running: false,
                shutdown_initiated: false,
                inoperable: Default::default(),
                sysdisk_faulty: false,
                unsynced: Default::default(),
            }),
        }
    }

    /// SU1 (A000-A002) and SU2 (A000), nothing held, everything written.
    fn world() -> World {
        let mut w = World::default();
        w.units.insert("SU1".into(), su_unit("SU1", &["A000", "A001", "A002"]));
        w.units.insert("SU2".into(), su_unit("SU2", &["A000"]));
        w.take_changes().expect("finite");
        w
    }

    fn usage(list: &[(&str, DeviceUsage)]) -> Holders {
        list.iter().map(|(mn, u)| (mn.to_string(), *u)).collect()
    }

    /// The keys written, each with whether it is a put (else a delete).
    fn keys(out: &StateWrites) -> Vec<(&str, bool)> {
        let mut k: Vec<(&str, bool)> = out.iter().map(|(k, v)| (k.as_str(), v.is_some())).collect();
        k.sort();
        k
    }

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().expect("tmp");
        let s = SledStore::open(dir.path()).expect("store");
        (dir, s)
    }

    #[test]
    fn a_placement_writes_only_the_hold_entries_it_changed() {
        let mut w = world();
        w.hold_devices("SU1", "vm1", &usage(&[("A000", Exclusive), ("A001", Shared), ("FFFF", Shared)]));
        let out = w.take_changes().expect("finite");
        assert_eq!(keys(&out), vec![("w/hold/SU1/A000", true), ("w/hold/SU1/A001", true)]);
        let a000 = &out.iter().find(|(k, _)| k == "w/hold/SU1/A000").expect("written").1;
        assert_eq!(a000.as_deref(), Some(&br#"{"vm1":"exclusive"}"#[..]));
        w.hold_devices("SU1", "vm1", &usage(&[("A000", Exclusive)]));
        assert!(!w.has_changes(), "holding what is held changes nothing");
        w.hold_devices("SU1", "vm2", &usage(&[("A001", Shared)]));
        w.release_devices("SU1", "vm1");
        let out = w.take_changes().expect("finite");
        assert_eq!(keys(&out), vec![("w/hold/SU1/A000", false), ("w/hold/SU1/A001", true)]);
        w.release_devices("SU1", "vm1");
        w.hold_devices("NOPE", "vm1", &usage(&[("A000", Shared)]));
        assert!(!w.has_changes(), "nothing held, no such SU");
    }

    #[test]
    fn a_unit_written_again_writes_its_holds_and_deletes_those_it_lost() {
        let mut w = world();
        w.hold_devices("SU1", "vm1", &usage(&[("A000", Exclusive), ("A001", Shared)]));
        w.hold_devices("SU2", "vm2", &usage(&[("A000", Shared)]));
        w.take_changes().expect("finite");
        // The SU's devices change (its spec did): A001 is gone, and its holder with it.
        w.su_mut("SU1").expect("su").devices.remove("A001");
        w.hold_devices("SU1", "vm3", &usage(&[("A000", Shared)]));
        w.units.remove("SU2");
        let out = w.take_changes().expect("finite");
        assert_eq!(
            keys(&out),
            vec![
                ("w/hold/SU1/A000", true),
                ("w/hold/SU1/A001", false),
                ("w/hold/SU2/A000", false),
                ("w/unit/SU1", true),
                ("w/unit/SU2", false),
            ]
        );
        let unit = &out.iter().find(|(k, _)| k == "w/unit/SU1").expect("written").1;
        assert!(!String::from_utf8_lossy(unit.as_deref().expect("put")).contains("holders"));
        // A unit back under its old name starts with nothing held, nothing stale stored.
        w.units.insert("SU2".into(), su_unit("SU2", &["A000"]));
        assert_eq!(keys(&w.take_changes().expect("finite")), vec![("w/unit/SU2", true)]);
    }

    #[test]
    fn a_saved_world_loads_with_its_holders_and_stores_only_what_changes_next() {
        let (_dir, s) = store();
        let mut w = world();
        w.hold_devices("SU1", "vm1", &usage(&[("A000", Exclusive), ("A002", Shared)]));
        w.hold_devices("SU1", "vm2", &usage(&[("A002", Shared)]));
        w.save(&s).expect("save");
        let holds: Vec<String> = s.read_state(PREFIX).expect("read").into_iter().map(|(k, _)| k).collect();
        assert_eq!(holds, vec!["w/hold/SU1/A000".to_string(), "w/hold/SU1/A002".to_string()]);
        let mut back = World::load(&s).expect("load");
        assert_eq!(back, w);
        assert!(!back.has_changes());
        back.release_devices("SU1", "vm1");
        let out = back.take_changes().expect("finite");
        assert_eq!(keys(&out), vec![("w/hold/SU1/A000", false), ("w/hold/SU1/A002", true)]);
    }

    /// Stores written by the layout before `w/hold/`: the holders inside the unit
    /// entries (each device with `"holders"`, empty ones too), no hold entries.
    fn to_layout_before(s: &SledStore) {
        let mut state = StateWrites::new();
        for (k, _) in s.read_state(PREFIX).expect("read") {
            state.push((k, None));
        }
        for (k, bytes) in s.read_state("w/unit/").expect("read") {
            let mut unit: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            let su = k.trim_start_matches("w/unit/");
            for (mn, dev) in unit["su"]["devices"].as_object_mut().expect("devices") {
                let held = s.read_state(&key(su, mn)).expect("read").pop();
                let holders = held.map_or(serde_json::json!({}), |(_, b)| serde_json::from_slice(&b).expect("json"));
                dev.as_object_mut().expect("device").insert("holders".into(), holders);
            }
            state.push((k, Some(serde_json::to_vec(&unit).expect("json"))));
        }
        s.commit_batch(Batch { state, durable: true, ..Default::default() }).expect("write");
    }

    #[test]
    fn a_store_with_holders_inside_the_units_loads_and_is_rewritten_by_hold() {
        let (_dir, s) = store();
        let mut w = world();
        w.hold_devices("SU1", "vm1", &usage(&[("A000", Exclusive), ("A002", Shared)]));
        w.hold_devices("SU2", "vm2", &usage(&[("A000", Shared)]));
        w.save(&s).expect("save");
        to_layout_before(&s);
        assert!(s.read_state(PREFIX).expect("read").is_empty());
        let unit = s.read_state("w/unit/SU1").expect("read").pop().expect("unit").1;
        assert!(String::from_utf8_lossy(&unit).contains(r#""holders":{"vm1":"exclusive"}"#));

        let mut back = World::load(&s).expect("load");
        assert_eq!(back, w, "the holders are read from inside the units");
        assert!(back.has_changes(), "the units with holders inside are to be written again");
        // A placement before that write: written in the same batch as the units.
        back.hold_devices("SU1", "vm3", &usage(&[("A001", Shared)]));
        let state = back.take_changes().expect("finite");
        let written: Vec<(&str, bool)> = keys(&state).into_iter().filter(|(k, _)| *k != "w/meta").collect();
        assert_eq!(
            written,
            vec![
                ("w/hold/SU1/A000", true),
                ("w/hold/SU1/A001", true),
                ("w/hold/SU1/A002", true),
                ("w/hold/SU2/A000", true),
                ("w/unit/SU1", true),
                ("w/unit/SU2", true),
            ]
        );
        s.commit_batch(Batch { state, durable: true, ..Default::default() }).expect("write");
        for (k, bytes) in s.read_state("w/unit/").expect("read") {
            assert!(!String::from_utf8_lossy(&bytes).contains("holders"), "{k} is stored without holders");
        }
        let again = World::load(&s).expect("load");
        assert_eq!(again, back);
        assert!(!again.has_changes(), "nothing left to rewrite");
        assert_eq!(
            World::load(&s).expect("load").su("SU1").expect("su").devices["A001"].holders,
            usage(&[("vm3", Shared)])
        );
    }

    #[test]
    fn a_hold_entry_of_no_device_or_a_malformed_key_is_refused_by_name() {
        for (key, why) in [("w/hold/SU1/FFFF", "no device FFFF on SU SU1"), ("w/hold/SU1", "not w/hold/<su>/<mn>")] {
            let (_dir, s) = store();
            world().save(&s).expect("save");
            let state = vec![(key.to_string(), Some(br#"{"vm1":"shared"}"#.to_vec()))];
            s.commit_batch(Batch { state, durable: true, ..Default::default() }).expect("write");
            let err = World::load(&s).expect_err("refused").to_string();
            assert!(err.contains(key) && err.contains(why), "{err}");
        }
    }
}
