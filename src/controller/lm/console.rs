//! The console lines of a live migration, worded and ordered as s4.6 of the manual
//! shows them. On SU /390 (s4.6.1) the lines numbered 1-15 are: 1 VMS2450 (source),
//! 2 ETMDR01 and 3 MCS1002 (guest), 4 VMS2430, 5 VMS3050, 6 VMS4005 (target), 7 VMS2452
//! (source), 8 ETMDR03 (guest), 9 VMS2432 (target), 10 BCA07DC/BCA05EC and 11 MCS1002
//! (guest), 12 VMS2431 (target), 13 VMS4009, 14 VMS4024, 15 VMS2451 (source). On SU x86
//! (s4.6.2) X2000 writes VMS6020/VMS6021 and "(BY SYSADM)", HAL0331/HAL0332 on the KVP
//! consoles instead of VMS2452/VMS2432, and VMS2050 when the guest is ready.
//!
//! Each line is prefixed with the console it appears on: an SU name (its monitor or
//! X2000) or the VM name (the migrating BS2000 system). Guest lines exist only for a
//! loaded system (RUNNING); Native BS2000 has no VM2000, so no VMS lines.

use crate::api::{BcamLine, DeviceUsage, SuType};
use std::collections::BTreeMap;

/// Who writes the lines of one migration.
pub struct Console<'a> {
    /// Source SU.
    pub source: &'a str,
    /// Target SU.
    pub target: &'a str,
    /// The BS2000 VM name.
    pub vm_name: &'a str,
    /// VM index on the source (None for Native).
    pub source_index: Option<u32>,
    /// VM index on the target.
    pub target_index: Option<u32>,
    /// Architecture of both SUs.
    pub su_type: SuType,
    /// Native BS2000 (no VM2000 monitor).
    pub native: bool,
    /// The BS2000 system is loaded (RUNNING).
    pub loaded: bool,
}

/// "(12,VM12PROD)", or "(-,NAME)" without an index.
pub fn vm_label(index: Option<u32>, vm_name: &str) -> String {
    match index {
        Some(i) => format!("({i},{vm_name})"),
        None => format!("(-,{vm_name})"),
    }
}

impl Console<'_> {
    fn src_label(&self) -> String {
        vm_label(self.source_index, self.vm_name)
    }

    fn tgt_label(&self) -> String {
        vm_label(self.target_index, self.vm_name)
    }

    fn x86(&self) -> bool {
        self.su_type == SuType::X86
    }

    /// Lines 1-6 (phase 1): the command, VMS2450, the guest told (ETMDR01, MCS1002
    /// LOCKED, devices it detaches), the VM set up on the target.
    pub fn setup(&self, devices: &BTreeMap<String, DeviceUsage>, detach: &BTreeMap<String, bool>) -> Vec<String> {
        let (s, t, vm) = (self.source, self.target, self.vm_name);
        let mut out = Vec::new();
        if self.native {
            out.push(format!("{s}: SEC2000 ACTION 'MIGRATE BS2000' TO TARGET SU '{t}'"));
        } else {
            let id = self.source_index.map(|i| i.to_string()).unwrap_or_else(|| vm.to_string());
            out.push(format!("{s}: SEC2000 COMMAND /MIGRATE-VM VM-ID={id},SERVER-UNIT-NAME={t}"));
            out.push(format!("{s}: VMS2450 LIVE MIGRATION OF VM {} TO TARGET SU '{t}' STARTED", self.src_label()));
        }
        if self.loaded {
            out.push(format!("{vm}: ETMDR01 DYNAMIC RECONFIGURATION WITH FUNCTION 'MIGRATE' STARTED"));
            out.push(format!(
                "{vm}: MCS1002 GLOBAL MSCF CONFIGURATION PARAMETER 'RECOVERY-START' CHANGED FROM '*AUTOMATIC' TO 'LOCKED'"
            ));
            for (mn, back) in detach {
                let what = if *back { "PAV alias, re-attached on the target" } else { "stays detached" };
                out.push(format!("{vm}: SEC2011 /DETACH-DEVICE {mn} ({what})"));
            }
        }
        if self.native {
            return out;
        }
        let label = self.tgt_label();
        if self.x86() {
            out.push(format!("{t}: VMS6020 VIRTUAL MACHINE {label} CREATED BY SYSTEM ADMINISTRATION"));
        } else {
            out.push(format!("{t}: VMS2430 LIVE MIGRATION OF VM {label} FROM SOURCE SU '{s}' STARTED"));
            out.push(format!("{t}: VMS3050 VIRTUAL MACHINE {label} CREATED"));
        }
        for (mn, usage) in devices {
            let tail = match (self.x86(), usage) {
                (true, _) => " (BY SYSADM)",
                (false, DeviceUsage::Shared) => " (TYPE=SD)",
                (false, DeviceUsage::Exclusive) => "",
            };
            out.push(format!("{t}: VMS4005 DEVICE '{mn}' ASSIGNED TO VIRTUAL MACHINE {label}{tail}"));
        }
        out
    }

    /// End of phase 2: the I/O system of the guest is stopped for the last storage
    /// transfer (s4.4).
    pub fn io_stopped(&self) -> Vec<String> {
        if !self.loaded {
            return Vec::new();
        }
        vec![format!(
            "{}: SEC2010 I/O STOPPED FOR THE LAST STORAGE TRANSFER (I/O REQUESTS NOTED, STARTED ON THE TARGET)",
            self.vm_name
        )]
    }

    /// Line 7 (phase 3): BS2000 suspended on the source.
    pub fn suspend(&self) -> Vec<String> {
        if !self.loaded {
            return Vec::new();
        }
        if self.x86() {
            vec![format!("{}: HAL0331 BS2000 SUSPEND", self.source)]
        } else if self.native {
            Vec::new()
        } else {
            vec![format!(
                "{}: VMS2452 VM {} SUSPENDED AT LIVE MIGRATION TO TARGET SU '{}'",
                self.source,
                self.src_label(),
                self.target
            )]
        }
    }

    /// Lines 8-11: resumed on the target; the guest reports the new configuration,
    /// BCAM activates its lines there, MSCF outage recognition is unlocked.
    pub fn resume(&self, from_conf: &str, to_conf: &str, ipl_conf: &str, lines: &[BcamLine]) -> Vec<String> {
        if !self.loaded {
            return Vec::new();
        }
        let (s, t, vm) = (self.source, self.target, self.vm_name);
        let mut out = Vec::new();
        if self.x86() {
            out.push(format!("{t}: HAL0332 BS2000 RESUME, CONTINUING"));
        }
        out.push(format!(
            "{vm}: ETMDR03 LIVE MIGRATION FROM SOURCE CONFIGURATION '{from_conf}' TO TARGET CONFIGURATION '{to_conf}' FINISHED. INITIAL CONFIGURATION WAS '{ipl_conf}'"
        ));
        if !self.x86() && !self.native {
            out.push(format!("{t}: VMS2432 VM {} RESUMED AT LIVE MIGRATION FROM SOURCE SU '{s}'", self.tgt_label()));
        }
        for l in lines {
            if l.vlan {
                out.push(format!("{vm}: BCA05EC VLAN-LINE \"{}\" active", l.name));
            } else {
                out.push(format!("{vm}: BCA07DC LINE \"{}\" active", l.name));
            }
        }
        out.push(format!(
            "{vm}: MCS1002 GLOBAL MSCF CONFIGURATION PARAMETER 'RECOVERY-START' CHANGED FROM 'LOCKED' TO '*AUTOMATIC'"
        ));
        out
    }

    /// Lines 12-15 (phase 4): completed on the target, the VM removed on the source;
    /// on x86 the guest is reported ready on the target (VMS2050).
    pub fn finish(&self, source_devices: &[String]) -> Vec<String> {
        let (s, t) = (self.source, self.target);
        if self.native {
            return vec![format!(
                "{s}: SEC2003 LIVE MIGRATION OF BS2000 {} TO TARGET SU '{t}' COMPLETED",
                self.vm_name
            )];
        }
        let (src, tgt) = (self.src_label(), self.tgt_label());
        let mut out = Vec::new();
        if !self.x86() {
            out.push(format!("{t}: VMS2431 LIVE MIGRATION OF VM {tgt} FROM SOURCE SU '{s}' COMPLETED"));
        }
        let sysadm = if self.x86() { " (BY SYSADM)" } else { "" };
        for mn in source_devices {
            out.push(format!("{s}: VMS4009 DEVICE '{mn}' REMOVED FROM VIRTUAL MACHINE {src}{sysadm}"));
        }
        if self.x86() {
            out.push(format!("{s}: VMS6021 VIRTUAL MACHINE {src} TERMINATED BY SYSTEM ADMINISTRATION"));
        } else {
            out.push(format!("{s}: VMS4024 VIRTUAL MACHINE {src} TERMINATED"));
        }
        out.push(format!("{s}: VMS2451 LIVE MIGRATION OF VM {src} TO TARGET SU '{t}' COMPLETED"));
        if self.x86() && self.loaded {
            out.push(format!("{t}: VMS2050 GUEST SYSTEM ON VM {tgt} READY"));
        }
        out
    }
}
