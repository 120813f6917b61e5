//! ManagementCluster reconciler (manual s1, s2): checks the prerequisites (two
//! servers, ISL-E, external configuration disks), elects the Cluster Manager on one
//! powered MU and moves it when that MU fails, runs the network heartbeat to every MU,
//! and computes NORMAL / WARNING / ERROR with a reason for each cause. It also reports
//! an inhomogeneous cluster (s2.5) and conflicting global objects (s2.1).

use super::runtime::Action;
use super::{Cx, Outcome};
use crate::api::{
    remove_condition, set_condition, ClusterState, ConditionStatus, ManagementClusterSpec, ManagementClusterStatus,
    MuStatus, Object, SEServerSpec,
};
use crate::sim::{Disk, Link, World};
use crate::store::EventType;

/// Restrictions of an inhomogeneous cluster (manual s2.5), in short.
pub const INHOMOGENEOUS_RESTRICTIONS: &str = "V6.2 MUs show units in WARNING and NOT_MONITORED AUs as UNKNOWN and \
miscount them on the dashboard; V6.3 audit entry types show as internal values on V6.2; alarm receivers from V6.2 \
count as component ANY (duplicates possible); IORSF functions only on V6.3 MUs, call the IORSF list update on a \
V6.3 MU; do not set SU /390 names of V6.2 servers from V6.3; SVP console and shadow terminal only from an MU of \
the same server; hot fixes in the format of the MU's own version";

/// One MU as the heartbeat sees it.
struct MuView {
    name: String,
    server: String,
    on: bool,
    answers: bool,
}

/// Elects the Cluster Manager: keeps the current one while its MU is powered, else
/// takes the first powered MU (servers in spec order, MUs in spec order).
fn elect(w: &mut World, mc: &str, mus: &[MuView]) -> Option<String> {
    let current = w.cluster_managers.get(mc).cloned();
    if let Some(c) = &current {
        if mus.iter().any(|m| &m.name == c && m.on) {
            return current;
        }
    }
    let next = mus.iter().find(|m| m.on).map(|m| m.name.clone());
    match &next {
        Some(n) => {
            w.cluster_managers.insert(mc.to_string(), n.clone());
        }
        None => {
            w.cluster_managers.remove(mc);
        }
    }
    if next != current {
        w.touch();
    }
    next
}

/// Conflicting global objects of two servers: same name, different settings.
fn global_conflicts(a: (&str, &SEServerSpec), b: (&str, &SEServerSpec)) -> Vec<String> {
    let mut out = Vec::new();
    let (ga, gb) = (&a.1.global_objects, &b.1.global_objects);
    for x in &ga.accounts {
        if let Some(y) = gb.accounts.iter().find(|y| y.name == x.name) {
            let mut diffs = Vec::new();
            if x.role != y.role {
                diffs.push("role");
            }
            if x.password_digest != y.password_digest {
                diffs.push("password");
            }
            if x.ldap != y.ldap {
                diffs.push("LDAP/local");
            }
            if x.description != y.description {
                diffs.push("description");
            }
            if x.systems != y.systems {
                diffs.push("individual rights");
            }
            if !diffs.is_empty() {
                out.push(format!("account {} differs between {} and {} ({})", x.name, a.0, b.0, diffs.join(", ")));
            }
        }
    }
    for x in &ga.alarm_receivers {
        if let Some(y) = gb.alarm_receivers.iter().find(|y| y.name == x.name) {
            if x != y {
                out.push(format!("alarm receiver {} differs between {} and {}", x.name, a.0, b.0));
            }
        }
    }
    for x in &ga.fc_switches {
        if let Some(y) = gb.fc_switches.iter().find(|y| y.name == x.name) {
            if x != y {
                out.push(format!("FC switch {} differs between {} and {}", x.name, a.0, b.0));
            }
        }
    }
    for x in &ga.applications {
        if let Some(y) = gb.applications.iter().find(|y| y.name == x.name) {
            if x != y {
                out.push(format!("application {} differs between {} and {}", x.name, a.0, b.0));
            }
        }
    }
    out
}

fn cond(st: &mut ManagementClusterStatus, t: &str, ok: bool, reason: &str, msg: &str, gen: Option<u64>, now: &str) {
    let s = if ok { ConditionStatus::True } else { ConditionStatus::False };
    set_condition(&mut st.conditions, t, s, reason, msg, gen, now);
}

/// Whether every unit of a server exists in the world. Until then the server has not
/// been reconciled: clusters over it wait (its status write wakes them) rather than
/// report its units as powered off and elect a Cluster Manager among the others.
pub fn units_present(w: &World, spec: &SEServerSpec) -> bool {
    spec.management_units
        .iter()
        .map(|m| m.name.as_str())
        .chain(spec.server_units.iter().map(|u| u.name.as_str()))
        .all(|u| w.unit(u).is_some())
}

/// No status yet: wait to be woken.
pub fn not_yet() -> Outcome {
    Outcome { status: None, action: Action::Await }
}

/// The refusal of server `server` to a cluster because cluster `owner` has it.
fn claimed(server: &str, owner: &str) -> String {
    format!("{server} already belongs to management cluster {owner}")
}

/// Whether cluster `c` holds server `server`: its status reflects its current spec and
/// does not refuse it the server.
fn holds(c: &Object<ManagementClusterSpec, ManagementClusterStatus>, server: &str) -> bool {
    super::holds_member(
        c.spec.servers.iter().any(|s| s.as_str() == server),
        c.status.observed_generation,
        c.metadata.generation,
        &c.status.conditions,
        &claimed(server, ""),
    )
}

/// Reconciles one ManagementCluster.
pub fn reconcile(cx: &mut Cx, o: &Object<ManagementClusterSpec, ManagementClusterStatus>) -> anyhow::Result<Outcome> {
    let name = o.name().to_string();
    let key = format!("ManagementCluster/{name}");
    let gen = o.metadata.generation;
    let now = cx.now();
    let prev = o.status.clone();
    let mut st = o.status.clone();
    st.observed_generation = gen;
    let mut errors: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();

    // Prerequisite: the two servers exist, and are in no other (older) cluster.
    let servers: Vec<(String, Option<SEServerSpec>)> = o
        .spec
        .servers
        .iter()
        .map(|s| (s.to_string(), cx.cache.get_typed::<SEServerSpec>(s.as_str()).map(|x| x.spec.clone())))
        .collect();
    if servers.iter().filter_map(|(_, s)| s.as_ref()).any(|s| !units_present(cx.world, s)) {
        return Ok(not_yet());
    }
    let missing: Vec<&str> = servers.iter().filter(|(_, s)| s.is_none()).map(|(n, _)| n.as_str()).collect();
    // A server belongs to one management cluster: the cluster that holds it keeps it;
    // of two new claims the older wins (creation timestamps have whole seconds only).
    let mut taken = Vec::new();
    for other in cx.cache.typed::<ManagementClusterSpec>() {
        if other.name() == name {
            continue;
        }
        for s in &o.spec.servers {
            if !other.spec.servers.contains(s) {
                continue;
            }
            let theirs = match (holds(other, s.as_str()), holds(o, s.as_str())) {
                (true, false) => true,
                (false, true) => false,
                _ => older(other, o),
            };
            if theirs {
                taken.push(claimed(s.as_str(), other.name()));
            }
        }
    }
    if !missing.is_empty() {
        // Claims of another cluster are named too: `holds` reads them from here.
        let m = std::iter::once(format!("SEServer {} not found", missing.join(", ")))
            .chain(taken.iter().cloned())
            .collect::<Vec<_>>()
            .join("; ");
        cond(&mut st, "Prerequisites", false, "ServerNotFound", &m, gen, &now);
        errors.push(m);
    } else if !taken.is_empty() {
        let m = taken.join("; ");
        cond(&mut st, "Prerequisites", false, "ServerInAnotherCluster", &m, gen, &now);
        errors.push(m);
    }

    // ISL-E.
    let link_up = match &o.spec.isl_e {
        None => {
            let m = "no ISL-E between the servers: the Net Units are not linked";
            cond(&mut st, "IslE", false, "NoIslE", m, gen, &now);
            errors.push(m.to_string());
            if cx.world.links.remove(&name).is_some() {
                cx.world.touch();
            }
            false
        }
        Some(isl) => {
            if !cx.world.links.contains_key(&name) {
                cx.world.links.insert(name.clone(), Link { bandwidth_gbps: isl.bandwidth_gbps, up: true });
                cx.world.touch();
            }
            let l = cx.world.links.get_mut(&name).expect("just ensured");
            if l.bandwidth_gbps != isl.bandwidth_gbps {
                l.bandwidth_gbps = isl.bandwidth_gbps;
                cx.world.touch();
            }
            let up = cx.world.links[&name].up;
            if up {
                cond(&mut st, "IslE", true, "Up", &format!("ISL-E up, {} Gbit/s", isl.bandwidth_gbps), gen, &now);
            } else {
                let m = "ISL-E down: the servers cannot reach each other";
                cond(&mut st, "IslE", false, "Down", m, gen, &now);
                errors.push(m.to_string());
            }
            // s1.2: recommendations the cluster software does not enforce.
            let mut rec = Vec::new();
            if isl.bandwidth_gbps < 1.0 {
                rec.push(format!("bandwidth {} Gbit/s is below the recommended 1 Gbit/s", isl.bandwidth_gbps));
            }
            if isl.rtt_ms >= 5.0 {
                rec.push(format!("round-trip time {} ms is not below the recommended 5 ms", isl.rtt_ms));
            }
            if let Some(km) = isl.length_km.filter(|km| *km > 15.0) {
                rec.push(format!("distance {km} km exceeds the recommended 15 km"));
            }
            if rec.is_empty() {
                remove_condition(&mut st.conditions, "IslERecommended");
            } else {
                cond(&mut st, "IslERecommended", false, "OutsideRecommendation", &rec.join("; "), gen, &now);
            }
            up
        }
    };

    // External configuration disks and the CRD.
    let owner = key.clone();
    for d in &o.spec.config_disks {
        if !cx.world.disks.contains_key(d.name.as_str()) {
            cx.world.disks.insert(d.name.to_string(), Disk { ok: true, owner: owner.clone() });
            cx.world.touch();
        }
    }
    let failed: Vec<String> = o
        .spec
        .config_disks
        .iter()
        .filter(|d| !cx.world.disks.get(d.name.as_str()).is_some_and(|x| x.ok))
        .map(|d| d.name.to_string())
        .collect();
    let disks_ok = o.spec.config_disks.len() - failed.len();
    if o.spec.config_disks.is_empty() {
        let m = "no external configuration disk: no CRD reachable from all MUs";
        cond(&mut st, "ConfigDisks", false, "NoExternalDisk", m, gen, &now);
        errors.push(m.to_string());
    } else if disks_ok == 0 {
        let m = format!("all external configuration disks failed ({}): CRD lost", failed.join(", "));
        cond(&mut st, "ConfigDisks", false, "AllDisksFailed", &m, gen, &now);
        errors.push(m);
    } else if !failed.is_empty() {
        let m = format!("external configuration disk {} failed: redundancy lost", failed.join(", "));
        cond(&mut st, "ConfigDisks", false, "DiskFailed", &m, gen, &now);
        warnings.push(m);
    } else {
        let m = format!("{} external configuration disk(s) OK", disks_ok);
        cond(&mut st, "ConfigDisks", true, "Ok", &m, gen, &now);
    }

    // MUs, Cluster Manager, network heartbeat.
    let mut mus: Vec<MuView> = Vec::new();
    for (sname, spec) in &servers {
        if let Some(spec) = spec {
            for m in &spec.management_units {
                mus.push(MuView {
                    name: m.name.to_string(),
                    server: sname.clone(),
                    on: cx.world.powered(m.name.as_str()),
                    answers: false,
                });
            }
        }
    }
    let cm = elect(cx.world, &name, &mus);
    let cm_server = cm.as_ref().and_then(|c| mus.iter().find(|m| &m.name == c)).map(|m| m.server.clone());
    for m in mus.iter_mut() {
        m.answers = m.on && (Some(&m.server) == cm_server.as_ref() || link_up);
    }
    if cm != prev.cluster_manager {
        if let (Some(old), Some(new)) = (&prev.cluster_manager, &cm) {
            cx.event(
                EventType::Normal,
                "NOTICE",
                "Cluster",
                key.clone(),
                "ClusterManagerMoved",
                format!("Cluster Manager moved from MU {old} to MU {new}"),
            );
        }
    }
    match &cm {
        Some(c) => {
            cond(&mut st, "ClusterManager", true, "Active", &format!("Cluster Manager active on MU {c}"), gen, &now)
        }
        None => {
            let m = "no MU powered: no Cluster Manager";
            cond(&mut st, "ClusterManager", false, "NoMu", m, gen, &now);
            errors.push(m.to_string());
        }
    }
    let mut hb_units: Vec<MuStatus> = Vec::new();
    for m in &mus {
        let was_answering = prev.units_heartbeat(&m.name);
        if !m.answers {
            let why = if m.on { "not reachable" } else { "powered off" };
            warnings.push(format!("MU {} does not answer the heartbeat ({why}): redundancy lost", m.name));
            if was_answering != Some(false) && cm.is_some() {
                cx.event(
                    EventType::Warning,
                    "WARNING",
                    "Cluster",
                    key.clone(),
                    "HeartbeatLost",
                    format!("MU {} of {} does not answer the heartbeat queries", m.name, m.server),
                );
            }
        } else if was_answering == Some(false) {
            cx.event(
                EventType::Normal,
                "INFO",
                "Cluster",
                key.clone(),
                "HeartbeatRestored",
                format!("MU {} of {} answers the heartbeat queries again", m.name, m.server),
            );
        }
        hb_units.push(MuStatus {
            name: m.name.clone(),
            server: m.server.clone(),
            power: if m.on { "ON" } else { "OFF" }.into(),
            config_disks: if o.spec.config_disks.is_empty() {
                "NONE"
            } else if disks_ok == o.spec.config_disks.len() {
                "OK"
            } else if disks_ok > 0 {
                "DEGRADED"
            } else {
                "FAILED"
            }
            .into(),
            heartbeat: if m.answers { "OK" } else { "NO_ANSWER" }.into(),
        });
    }
    st.management_units = hb_units;
    if missing.is_empty() && taken.is_empty() {
        let mut lacking = Vec::new();
        if o.spec.isl_e.is_none() {
            lacking.push("no ISL-E");
        }
        if o.spec.config_disks.is_empty() {
            lacking.push("no external configuration disk");
        }
        if lacking.is_empty() {
            cond(
                &mut st,
                "Prerequisites",
                true,
                "Met",
                "two servers, ISL-E and a CRD with external configuration disks",
                gen,
                &now,
            );
        } else {
            cond(&mut st, "Prerequisites", false, "Missing", &lacking.join(", "), gen, &now);
        }
    }

    // Inhomogeneous cluster (s2.5).
    let versions: Vec<String> =
        servers.iter().filter_map(|(n, s)| s.as_ref().map(|s| format!("{n} {}", s.version))).collect();
    let distinct: std::collections::BTreeSet<_> =
        servers.iter().filter_map(|(_, s)| s.as_ref().map(|s| s.version)).collect();
    if distinct.len() > 1 {
        let m = format!(
            "inhomogeneous management cluster ({}); restrictions: {INHOMOGENEOUS_RESTRICTIONS}",
            versions.join(", ")
        );
        cond(&mut st, "Inhomogeneous", true, "MixedVersions", &m, gen, &now);
    } else {
        remove_condition(&mut st.conditions, "Inhomogeneous");
    }

    // Global objects (s2.1).
    if let [(na, Some(a)), (nb, Some(b))] = servers.as_slice() {
        let conflicts = global_conflicts((na, a), (nb, b));
        if conflicts.is_empty() {
            cond(&mut st, "GlobalObjectsUnambiguous", true, "Unambiguous", "no conflicting global objects", gen, &now);
        } else {
            let m = conflicts.join("; ");
            let was = prev.conditions.iter().find(|c| c.type_ == "GlobalObjectsUnambiguous").map(|c| c.message.clone());
            if was.as_deref() != Some(m.as_str()) {
                cx.event(
                    EventType::Warning,
                    "WARNING",
                    "Cluster",
                    key.clone(),
                    "GlobalObjectConflict",
                    format!("conflicting global objects, not resolved: {m}"),
                );
            }
            cond(&mut st, "GlobalObjectsUnambiguous", false, "Conflicts", &m, gen, &now);
            warnings.push(format!("conflicting global objects: {m}"));
        }
    }

    let state = if !errors.is_empty() {
        ClusterState::Error
    } else if !warnings.is_empty() {
        ClusterState::Warning
    } else {
        ClusterState::Normal
    };
    st.state = Some(state);
    st.cluster_manager = cm;
    st.reasons = errors.iter().chain(warnings.iter()).cloned().collect();
    let redundant = warnings.is_empty() && errors.is_empty();
    let summary = st.reasons.join("; ");
    cond(
        &mut st,
        "Ready",
        state != ClusterState::Error,
        if state == ClusterState::Error { "FunctionsLost" } else { "FunctionsAvailable" },
        &summary,
        gen,
        &now,
    );
    cond(&mut st, "Redundant", redundant, if redundant { "FullRedundancy" } else { "RedundancyLost" }, "", gen, &now);
    if prev.state != Some(state) {
        let (t, p) = match state {
            ClusterState::Normal => (EventType::Normal, "INFO"),
            ClusterState::Warning => (EventType::Warning, "WARNING"),
            _ => (EventType::Warning, "ERROR"),
        };
        let from = prev.state.map(|s| format!("{s} -> ")).unwrap_or_default();
        let why = if st.reasons.is_empty() {
            "all functions available, full redundancy".to_string()
        } else {
            st.reasons.join("; ")
        };
        cx.event(
            t,
            p,
            "Cluster",
            key,
            &format!("ManagementCluster{}", camel(state)),
            format!("management cluster {name}: {from}{state}: {why}"),
        );
    }
    let mut r = o.clone();
    r.status = st;
    Ok(Outcome::status(r.into_resource()))
}

/// "Normal", "Warning", ... for reasons.
pub fn camel(s: ClusterState) -> &'static str {
    match s {
        ClusterState::Normal => "Normal",
        ClusterState::Warning => "Warning",
        ClusterState::Error => "Error",
        ClusterState::Inactive => "Inactive",
    }
}

/// Whether `a` was created before `b` (then name order), to settle competing claims.
pub fn older<S, T, U, V>(a: &Object<S, T>, b: &Object<U, V>) -> bool {
    let ka = (a.metadata.creation_timestamp.clone(), a.metadata.name.to_string());
    let kb = (b.metadata.creation_timestamp.clone(), b.metadata.name.to_string());
    ka < kb
}

impl ManagementClusterStatus {
    /// Whether the MU answered the heartbeat at the last reconcile (None: not known).
    fn units_heartbeat(&self, mu: &str) -> Option<bool> {
        self.management_units.iter().find(|u| u.name == mu).map(|u| u.heartbeat == "OK")
    }
}

/// A deleted cluster's link, disks and Cluster Manager leave the world.
pub fn cleanup(cx: &mut Cx, o: &Object<ManagementClusterSpec, ManagementClusterStatus>) {
    let name = o.name().to_string();
    let owner = format!("ManagementCluster/{name}");
    cx.world.links.remove(&name);
    cx.world.cluster_managers.remove(&name);
    cx.world.disks.retain(|_, d| d.owner != owner);
    cx.world.touch();
}
