//! Live migrations in the simulated world: the state a running migration keeps, and
//! the pre-copy model (s4.4): round 0 sends all memory; each next round sends what the
//! workload dirtied meanwhile (never more than the VM's memory); copying stops when the
//! rest fits the downtime target. On SU /390 a copy that does not converge within its
//! budget aborts (VMS2425); on x86 it always completes, with a longer suspension.

use super::vm::Reservation;
use crate::api::{CopyRound, LmPhase, SuType};
use serde::{Deserialize, Serialize};

/// Fixed simulated time of phase 1 (checks, reservations, VM created on the target).
pub const SETUP_MS: u64 = 1_000;
/// Fixed simulated time of phase 4 (resources released on the source).
pub const POST_TREATMENT_MS: u64 = 1_000;
/// Suspend, register copy and resume, on top of copying the rest of the memory.
pub const SUSPEND_OVERHEAD_MS: u64 = 500;
/// What one real CPU of a /390 monitor system can copy, MiB/s. The monitor needs about
/// 1 CPU on the source and 1.4 on the target (s4.8).
pub const MONITOR_COPY_MIBPS: f64 = 800.0;
/// Most pre-copy rounds before giving up (/390) or suspending anyway (x86).
pub const MAX_ROUNDS: u32 = 30;
/// Default downtime target.
pub const DEFAULT_DOWNTIME_TARGET_MS: u64 = 2_000;

/// Gbit/s to MiB/s.
pub fn gbps_to_mibps(gbps: f64) -> f64 {
    gbps * 1e9 / 8.0 / 1_048_576.0
}

/// The link a migration copies over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LinkRef {
    /// The ISL-E of a management cluster (SUs in two servers).
    IslE(String),
    /// The Net Unit of one server (SUs in the same server).
    NetUnit(String),
}

/// A running (or just ended) migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimMigration {
    /// VMDefinition object name.
    pub vm: String,
    /// Source SU.
    pub source: String,
    /// Target SU.
    pub target: String,
    /// The VM index on the source.
    #[serde(default)]
    pub source_index: Option<u32>,
    /// Architecture of both SUs.
    pub su_type: SuType,
    /// The link used.
    pub link: LinkRef,
    /// Link bandwidth (Gbit/s) at the start.
    pub link_gbps: f64,
    /// Current phase.
    pub phase: LmPhase,
    /// Simulated start.
    pub started_ms: u64,
    /// When the current step ends.
    pub next_at_ms: u64,
    /// What the target holds for it.
    pub reservation: Option<Reservation>,
    /// VM memory (MiB).
    pub memory_mib: f64,
    /// MiB being sent in the current round.
    pub sending_mib: f64,
    /// Copy rate of the current round (MiB/s).
    pub rate_mibps: f64,
    /// Finished rounds.
    pub rounds: Vec<CopyRound>,
    /// Rest copied while suspended (MiB).
    pub rest_mib: f64,
    /// Downtime target.
    pub downtime_target_ms: u64,
    /// /390: give up after this long in pre-copy.
    pub budget_ms: u64,
    /// Downtime, once known.
    pub downtime_ms: Option<u64>,
    /// Console lines so far.
    pub messages: Vec<String>,
    /// Warnings (make MONJV $TW).
    pub warnings: Vec<String>,
    /// The round in flight is the last storage transfer (I/O stopped, s4.4).
    #[serde(default)]
    pub last_transfer: bool,
    /// The BS2000 system was loaded (RUNNING) when the migration started: only then
    /// are there guest console lines, a suspension and resume of BS2000, and a new
    /// LIVE-MIG-COUNT and history line.
    #[serde(default = "yes")]
    pub loaded: bool,
    /// Native BS2000 (SU x86): no VM2000 monitor, so no VMS lines and no VM index.
    #[serde(default)]
    pub native: bool,
    /// Why it was rolled back, once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
}

fn yes() -> bool {
    true
}

/// One pre-copy round: how long sending `mib` takes at `rate` MiB/s, and how much the
/// workload dirties meanwhile (at most the VM's memory).
pub fn round(mib: f64, rate_mibps: f64, dirty_mibps: f64, memory_mib: f64) -> (u64, f64) {
    let secs = mib / rate_mibps.max(0.001);
    let dirty = (dirty_mibps.max(0.0) * secs).min(memory_mib);
    ((secs * 1000.0).ceil() as u64, dirty)
}

/// What follows a round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Another round sending this much.
    Round(f64),
    /// Suspend and copy the rest.
    Suspend(f64),
    /// /390: the dirtied pages cannot be transferred in time (VMS2425).
    Abort,
}

/// Decides after a round that sent `sent` and left `dirty`.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    su_type: SuType,
    rounds_done: u32,
    sent: f64,
    dirty: f64,
    rate_mibps: f64,
    downtime_target_ms: u64,
    elapsed_ms: u64,
    budget_ms: u64,
) -> Next {
    let rest_ms = dirty / rate_mibps.max(0.001) * 1000.0;
    if rest_ms + SUSPEND_OVERHEAD_MS as f64 <= downtime_target_ms as f64 || dirty <= 0.0 {
        return Next::Suspend(dirty);
    }
    let converging = dirty < sent * 0.9;
    let out_of_time = rounds_done >= MAX_ROUNDS || elapsed_ms >= budget_ms;
    if converging && !out_of_time {
        return Next::Round(dirty);
    }
    match su_type {
        SuType::S390 => Next::Abort,
        SuType::X86 => Next::Suspend(dirty),
    }
}

/// The last storage transfer (s4.4: "At the very end of Phase 2, a last storage
/// transfer is carried out"): it sends what the previous round left, with the I/O
/// system stopped. The workload keeps dirtying pages at its rate meanwhile (the manual
/// says stopped I/O diminishes the changes further but gives no figure, so sectl does
/// not reduce the rate); what it dirties is copied while suspended.
pub fn last_transfer(round_no: u32, rest_mib: f64, rate_mibps: f64, dirty_mibps: f64, memory_mib: f64) -> CopyRound {
    let (ms, dirty) = round(rest_mib, rate_mibps, dirty_mibps, memory_mib);
    CopyRound { round: round_no, sent_mi_b: rest_mib, dirty_mi_b: dirty, duration_ms: ms, last: true }
}

/// The suspension: copying `rest_mib` plus suspend, register copy and resume.
pub fn suspension_ms(rest_mib: f64, rate_mibps: f64) -> u64 {
    (rest_mib / rate_mibps.max(0.001) * 1000.0).ceil() as u64 + SUSPEND_OVERHEAD_MS
}

/// The /390 time budget for pre-copy: ten times a plain copy of the memory, at least a
/// minute.
pub fn default_budget_ms(memory_mib: f64, rate_mibps: f64) -> u64 {
    ((memory_mib / rate_mibps.max(0.001)) * 10_000.0).max(60_000.0) as u64
}

/// A whole migration worked out in advance for a fixed rate: rounds, downtime and
/// duration, or None when a /390 migration would abort. The controller runs the same
/// steps one at a time (where the rate may change between rounds); this is for
/// planning tables and tests.
pub fn plan(
    su_type: SuType,
    memory_mib: f64,
    dirty_mibps: f64,
    rate_mibps: f64,
    downtime_target_ms: u64,
) -> Option<(Vec<CopyRound>, u64, u64)> {
    let budget = default_budget_ms(memory_mib, rate_mibps);
    let mut rounds = Vec::new();
    let mut elapsed = SETUP_MS;
    let mut sending = memory_mib;
    loop {
        let (ms, dirty) = round(sending, rate_mibps, dirty_mibps, memory_mib);
        elapsed += ms;
        rounds.push(CopyRound {
            round: rounds.len() as u32,
            sent_mi_b: sending,
            dirty_mi_b: dirty,
            duration_ms: ms,
            last: false,
        });
        match decide(
            su_type,
            rounds.len() as u32,
            sending,
            dirty,
            rate_mibps,
            downtime_target_ms,
            elapsed - SETUP_MS,
            budget,
        ) {
            Next::Round(n) => sending = n,
            Next::Suspend(rest) => {
                let last = last_transfer(rounds.len() as u32, rest, rate_mibps, dirty_mibps, memory_mib);
                elapsed += last.duration_ms;
                let downtime = suspension_ms(last.dirty_mi_b, rate_mibps);
                rounds.push(last);
                return Some((rounds, downtime, elapsed + downtime + POST_TREATMENT_MS));
            }
            Next::Abort => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_shrink_by_dirty_over_bandwidth() {
        let rate = gbps_to_mibps(1.0);
        let (rounds, downtime, total) = plan(SuType::S390, 8192.0, 20.0, rate, 2000).unwrap();
        assert!(rounds.len() >= 2);
        for w in rounds.windows(2) {
            let expect = w[0].sent_mi_b * 20.0 / rate;
            assert!((w[1].sent_mi_b - expect).abs() / expect < 0.01, "{w:?}");
        }
        assert!(downtime <= 2000);
        let plain = 8192.0 / rate * 1000.0;
        assert!((total as f64) > plain && (total as f64) < plain * 1.3, "{total} vs {plain}");
    }

    #[test]
    fn x86_always_completes_390_aborts() {
        let rate = gbps_to_mibps(1.0);
        assert!(plan(SuType::S390, 8192.0, 200.0, rate, 2000).is_none());
        let (_, downtime, _) = plan(SuType::X86, 8192.0, 200.0, rate, 2000).unwrap();
        assert!(downtime > 2000, "longer suspension: {downtime}");
    }
}
