//! LiveMigration (MIGRATE-VM / CHECK-VM-MIGRATION / MIGRATE-VM-DEFINITION) and
//! VMRecovery (RECOVER-VM-DEFINITION).

use super::checked::{self, ObjectName, UnitName};
use super::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired live migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiveMigrationSpec {
    /// The VMDefinition (by object name) whose system moves.
    pub vm: ObjectName,
    /// The target SU; optional when the SU cluster has exactly one other SU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_server_unit: Option<UnitName>,
    /// true = CHECK-VM-MIGRATION: check the preconditions, never move.
    #[serde(default)]
    pub check_only: bool,
    /// true = MIGRATE-VM-DEFINITION: move only the definition of a VM that is not
    /// initialised (DEFINED_ONLY); an initialised VM is refused (VMS4015). A
    /// DEFINED_ONLY VM's definition is moved this way even when false.
    #[serde(default)]
    pub definition_only: bool,
    /// The longest suspension aimed for, in ms: pre-copy stops when the rest of the
    /// memory can be sent within it (default 2000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "checked::downtime_target_ms::de_opt"
    )]
    #[schemars(schema_with = "checked::downtime_target_ms::schema_opt")]
    pub downtime_target_ms: Option<u64>,
    /// SU /390: how long pre-copy may take before the migration is aborted with
    /// VMS2425 (default: ten times a plain copy of the memory, at least 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "checked::time_budget_s::de_opt")]
    #[schemars(schema_with = "checked::time_budget_s::schema_opt")]
    pub time_budget_s: Option<u64>,
}

/// Phase of a live migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum LmPhase {
    /// Accepted, not yet looked at.
    #[default]
    Pending,
    /// Preconditions being checked.
    Checking,
    /// checkOnly: the migration is possible (VMS2460).
    Possible,
    /// Preconditions not met (VMS2461 / VMS2404); see conflicts.
    Rejected,
    /// Phase 1: resources reserved on the target.
    Setup,
    /// Phase 2: pre-copy of main memory.
    Copying,
    /// Phase 3: suspended on the source, rest copied, resumed on the target.
    Suspended,
    /// Phase 4: resources released on the source.
    PostTreatment,
    /// Done.
    Completed,
    /// Failed or cancelled and rolled back; the VM runs on the source.
    Aborted,
}

impl std::fmt::Display for LmPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// One precondition that is not met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conflict {
    /// The VMS message ID where the manual names one (e.g. VMS2437).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Stable CamelCase name of the reason.
    pub reason: String,
    /// For people.
    pub message: String,
}

/// One pre-copy round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CopyRound {
    /// Round number, from 0 (all memory).
    pub round: u32,
    /// MiB sent in this round.
    pub sent_mi_b: f64,
    /// MiB dirtied meanwhile, left at the end of the round.
    pub dirty_mi_b: f64,
    /// Simulated duration of the round.
    pub duration_ms: u64,
    /// The last storage transfer at the very end of phase 2, sent with the I/O system
    /// of the migrating BS2000 stopped (s4.4); what it leaves is copied while suspended.
    #[serde(default, skip_serializing_if = "is_false")]
    pub last: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Observed state of a live migration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiveMigrationStatus {
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the migration stands.
    #[serde(default)]
    pub phase: LmPhase,
    /// MONJV state: $S accepted, $R running, $T done, $TW done with warnings, $AE
    /// aborted by error, $AF rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monjv: Option<String>,
    /// The SU the system leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_server_unit: Option<String>,
    /// The SU the system goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_server_unit: Option<String>,
    /// Every precondition not met, all together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
    /// Pre-copy rounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<CopyRound>,
    /// How long the system was suspended (simulated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// How long the whole migration took (simulated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Console lines of both SUs, each with its message ID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    /// While copying: the round in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<CopyProgress>,
    /// Simulated start (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Simulated end (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
}

/// The pre-copy round in flight, for live views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CopyProgress {
    /// Round number.
    pub round: u32,
    /// MiB this round sends.
    pub sending_mi_b: f64,
    /// Copy rate of this round (MiB/s).
    pub rate_mi_bps: f64,
    /// How fast the workload dirties memory (MiB/s).
    pub dirty_rate_mi_bps: f64,
    /// When the round started (RFC 3339, simulated).
    pub round_start_time: String,
    /// Simulated ms since the epoch when the round started (for progress bars).
    pub round_start_ms: u64,
    /// Simulated duration of the round.
    pub round_duration_ms: u64,
    /// The suspension expected if the migration suspended after this round.
    pub expected_downtime_ms: u64,
}

/// Desired recovery of a VM definition from an unavailable SU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VMRecoverySpec {
    /// The VMDefinition (by object name) to recover.
    pub vm: ObjectName,
    /// The local SU that takes the definition over (same SU cluster).
    pub target_server_unit: UnitName,
    /// The intended time: the remote SU's monitor (or X2000) must have written no
    /// alive message to the CRD for at least this many simulated seconds.
    #[serde(default = "default_alive_timeout", deserialize_with = "checked::alive_timeout_s::de")]
    #[schemars(schema_with = "checked::alive_timeout_s::schema")]
    pub alive_timeout_s: u64,
}

fn default_alive_timeout() -> u64 {
    60
}

/// Phase of a recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum RecoveryPhase {
    /// Not yet done.
    #[default]
    Pending,
    /// The definition is DEFINED_ONLY on the target SU.
    Completed,
    /// Not allowed; see conflicts.
    Rejected,
}

impl std::fmt::Display for RecoveryPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Observed state of a recovery.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VMRecoveryStatus {
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pending, Completed or Rejected.
    #[serde(default)]
    pub phase: RecoveryPhase,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
    /// Console lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
}
