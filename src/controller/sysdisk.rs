//! The network connection of an SU /390's monitor system to its system disk, where
//! VM2000 keeps the VM definitions ("VM definitions", seed 004): "When BCAM is active in
//! the monitor system but the network connection to the system disk is (temporarily)
//! faulty, VM2000 commands which concern VM definitions may possibly be executed with a
//! warning or rejected with a corresponding message. After warning VMS2306 or VMS2308,
//! VM2000 attempts periodically to subsequently update the VM definition."
//!
//! Decisions where the manual is silent: `sim sysdisk fail|repair SU` makes the
//! connection faulty or repairs it. A command that changes an existing definition is
//! executed with VMS2306, one that creates a definition with VMS2308; commands that move
//! a definition to or from the system disk of another SU (MIGRATE-VM-DEFINITION,
//! RECOVER-VM-DEFINITION) are rejected (SEC2307). VM2000 retries every `RETRY_MS` from
//! the warning on; the first attempt after the repair writes the definition (event
//! `DefinitionWritten`). While the connection stays faulty nothing is scheduled, so the
//! simulated clock is not driven by attempts that cannot succeed.

use super::Cx;
use crate::api::{remove_condition, set_condition, ConditionStatus, SuType, VMDefinitionStatus};
use crate::store::EventType;

/// How often VM2000 attempts to update a definition on the system disk (simulated ms).
pub const RETRY_MS: u64 = 60_000;

/// What the definition command on `su` was.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// No command concerning the definition.
    None,
    /// A definition was created (VMS2308 when it cannot be written).
    Created,
    /// An existing definition was changed (VMS2306).
    Changed,
}

/// Whether the monitor of SU /390 `su` cannot reach its system disk.
pub fn faulty(cx: &Cx, su: &str) -> bool {
    cx.world.su(su).is_some_and(|s| s.su_type == SuType::S390 && s.sysdisk_faulty)
}

/// After `command` was carried out for definition `name` (VM `vm_name`) on `su`: the
/// warning when the system disk cannot be reached, the `DefinitionSynced` condition
/// while the update is pending, and the attempt that writes it. Returns when to run
/// again (the next attempt after a repair), in simulated ms from now.
pub fn after_command(
    cx: &mut Cx,
    (name, vm_name, su): (&str, &str, &str),
    command: Command,
    gen: u64,
    st: &mut VMDefinitionStatus,
) -> Option<u64> {
    let now_ms = cx.world.clock.now_ms;
    let now = cx.now();
    let is_faulty = faulty(cx, su);
    let server = cx.world.unit(su).map(|u| format!("SEServer/{}", u.server)).unwrap_or_default();
    // Read first: a change through `su_mut` marks the whole unit to be written.
    let s = cx.world.su(su)?;
    if is_faulty && command != Command::None && !s.unsynced.contains_key(name) {
        cx.world.su_mut(su)?.unsynced.insert(name.to_string(), now_ms);
        cx.world.touch();
        let (id, what) = if command == Command::Created { ("VMS2308", "created") } else { ("VMS2306", "changed") };
        cx.event(EventType::Warning, "WARNING", "VM2000", server.clone(), id,
            format!("{id} VM definition {vm_name} {what} on {su}; the network connection to the system disk is faulty: it is not yet updated there, VM2000 attempts it periodically"));
    }
    let since = cx.world.su(su)?.unsynced.get(name).copied()?;
    if is_faulty {
        set_condition(&mut st.conditions, "DefinitionSynced", ConditionStatus::False, "SystemDiskUnreachable",
            &format!("the network connection of {su} to the system disk is faulty: the command was executed with a warning (VMS2306/VMS2308); VM2000 attempts every {} s to update the definition there", RETRY_MS / 1000),
            Some(gen), &now);
        return None;
    }
    let attempt = since + RETRY_MS * (now_ms.saturating_sub(since).div_ceil(RETRY_MS)).max(1);
    if now_ms < attempt {
        return Some(attempt - now_ms);
    }
    cx.world.su_mut(su)?.unsynced.remove(name);
    cx.world.touch();
    remove_condition(&mut st.conditions, "DefinitionSynced");
    cx.event(
        EventType::Normal,
        "INFO",
        "VM2000",
        server,
        "DefinitionWritten",
        format!("VM definition {vm_name} updated on the system disk of {su} (periodic attempt after VMS2306/VMS2308)"),
    );
    None
}
