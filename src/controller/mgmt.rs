//! ManagementCluster reconciler (manual s1, s2): checks the prerequisites (two
//! servers, ISL-E, external configuration disks), elects the Cluster Manager on one
//! powered MU and moves it when that MU fails, runs the network heartbeat to every MU,
//! and computes NORMAL / WARNING / ERROR with a reason for each cause. It also reports
//! an inhomogeneous cluster (s2.5) and conflicting global objects (s2.1).

use super::runtime::Action;
use super::{Cx, Outcome};
use crate::api::{
    remove_condition, set_condition, ClusterState, CmResource, ConditionStatus, IslE, ManagementClusterSpec,
    ManagementClusterStatus, MuStatus, Object, SEServerSpec, SoftwareVersion,
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

/// One reconcile of a ManagementCluster: the status being built and the causes of a
/// state other than NORMAL found so far (errors: functions lost; warnings: redundancy
/// lost), in the order they are found.
struct Pass<'o> {
    o: &'o Object<ManagementClusterSpec, ManagementClusterStatus>,
    name: String,
    key: String,
    gen: Option<u64>,
    now: String,
    st: ManagementClusterStatus,
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// The cluster's servers by name, with their spec when the object exists.
type Servers = Vec<(String, Option<SEServerSpec>)>;

/// The external configuration disks: how many are declared and how many work.
#[derive(Clone, Copy)]
struct Disks {
    declared: usize,
    ok: usize,
}

impl Disks {
    /// As the SE Manager shows them per MU: OK, DEGRADED, FAILED or NONE.
    fn summary(self) -> &'static str {
        match (self.declared, self.ok) {
            (0, _) => "NONE",
            (d, o) if o == d => "OK",
            (_, 0) => "FAILED",
            _ => "DEGRADED",
        }
    }
}

/// Reconciles one ManagementCluster.
pub fn reconcile(cx: &mut Cx, o: &Object<ManagementClusterSpec, ManagementClusterStatus>) -> anyhow::Result<Outcome> {
    let servers = member_servers(cx, o);
    if servers.iter().filter_map(|(_, s)| s.as_ref()).any(|s| !units_present(cx.world, s)) {
        return Ok(not_yet());
    }
    let mut p = Pass::new(cx, o);
    let members_ok = p.membership(cx, &servers);
    let link_up = p.isl_e(cx);
    let disks = p.config_disks(cx);
    let mus = mu_views(cx, &servers);
    let cm = p.cluster_manager(cx, &mus);
    p.heartbeats(cx, mus, cm.as_deref(), link_up, disks);
    if members_ok {
        p.prerequisites();
    }
    p.inhomogeneous(&servers);
    p.global_objects(cx, &servers);
    p.cluster_manager_resources(cx, &servers, cm.as_deref(), link_up, disks);
    Ok(p.conclude(cx, cm))
}

/// The two servers of the cluster, with their specs as cached.
fn member_servers(cx: &Cx, o: &Object<ManagementClusterSpec, ManagementClusterStatus>) -> Servers {
    o.spec
        .servers
        .iter()
        .map(|s| (s.to_string(), cx.cache.get_typed::<SEServerSpec>(s.as_str()).map(|x| x.spec.clone())))
        .collect()
}

/// Every MU of the servers, powered or not (the heartbeat fills in `answers`).
fn mu_views(cx: &Cx, servers: &Servers) -> Vec<MuView> {
    let mut mus = Vec::new();
    for (sname, spec) in servers {
        for m in spec.iter().flat_map(|s| &s.management_units) {
            mus.push(MuView {
                name: m.name.to_string(),
                server: sname.clone(),
                on: cx.world.powered(m.name.as_str()),
                answers: false,
            });
        }
    }
    mus
}

impl<'o> Pass<'o> {
    fn new(cx: &Cx, o: &'o Object<ManagementClusterSpec, ManagementClusterStatus>) -> Self {
        let name = o.name().to_string();
        let mut st = o.status.clone();
        st.observed_generation = o.metadata.generation;
        Pass {
            o,
            key: format!("ManagementCluster/{name}"),
            name,
            gen: o.metadata.generation,
            now: cx.now(),
            st,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn prev(&self) -> &'o ManagementClusterStatus {
        &self.o.status
    }

    fn cond(&mut self, t: &str, ok: bool, reason: &str, msg: &str) {
        cond(&mut self.st, t, ok, reason, msg, self.gen, &self.now);
    }

    /// Condition `t` False, and `msg` a cause of ERROR.
    fn error(&mut self, t: &str, reason: &str, msg: String) {
        self.cond(t, false, reason, &msg);
        self.errors.push(msg);
    }

    /// Prerequisite: the two servers exist, and are in no other (older) cluster.
    /// Returns whether both hold.
    fn membership(&mut self, cx: &Cx, servers: &Servers) -> bool {
        let missing: Vec<&str> = servers.iter().filter(|(_, s)| s.is_none()).map(|(n, _)| n.as_str()).collect();
        let taken = self.claims_of_others(cx);
        if !missing.is_empty() {
            // Claims of another cluster are named too: `holds` reads them from here.
            let m = std::iter::once(format!("SEServer {} not found", missing.join(", ")))
                .chain(taken.iter().cloned())
                .collect::<Vec<_>>()
                .join("; ");
            self.error("Prerequisites", "ServerNotFound", m);
        } else if !taken.is_empty() {
            self.error("Prerequisites", "ServerInAnotherCluster", taken.join("; "));
        }
        missing.is_empty() && taken.is_empty()
    }

    /// A server belongs to one management cluster: the cluster that holds it keeps it;
    /// of two new claims the older wins (creation timestamps have whole seconds only).
    /// Returns the refusals of this cluster's servers.
    fn claims_of_others(&self, cx: &Cx) -> Vec<String> {
        let o = self.o;
        let mut taken = Vec::new();
        for other in cx.cache.typed::<ManagementClusterSpec>().filter(|c| c.name() != self.name) {
            for s in o.spec.servers.iter().filter(|s| other.spec.servers.contains(s)) {
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
        taken
    }

    /// The ISL-E in the world as the spec declares it. Returns whether it is up.
    fn isl_e(&mut self, cx: &mut Cx) -> bool {
        let Some(isl) = &self.o.spec.isl_e else {
            self.error("IslE", "NoIslE", "no ISL-E between the servers: the Net Units are not linked".into());
            if cx.world.links.remove(&self.name).is_some() {
                cx.world.touch();
            }
            return false;
        };
        let up = ensure_link(cx.world, &self.name, isl.bandwidth_gbps);
        if up {
            self.cond("IslE", true, "Up", &format!("ISL-E up, {} Gbit/s", isl.bandwidth_gbps));
        } else {
            self.error("IslE", "Down", "ISL-E down: the servers cannot reach each other".into());
        }
        self.isl_recommendations(isl);
        up
    }

    /// s1.2: recommendations the cluster software does not enforce.
    fn isl_recommendations(&mut self, isl: &IslE) {
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
            remove_condition(&mut self.st.conditions, "IslERecommended");
        } else {
            self.cond("IslERecommended", false, "OutsideRecommendation", &rec.join("; "));
        }
    }

    /// External configuration disks and the CRD.
    fn config_disks(&mut self, cx: &mut Cx) -> Disks {
        let spec = &self.o.spec;
        for d in &spec.config_disks {
            if !cx.world.disks.contains_key(d.name.as_str()) {
                cx.world.disks.insert(d.name.to_string(), Disk { ok: true, owner: self.key.clone() });
                cx.world.touch();
            }
        }
        let failed: Vec<String> = spec
            .config_disks
            .iter()
            .filter(|d| !cx.world.disks.get(d.name.as_str()).is_some_and(|x| x.ok))
            .map(|d| d.name.to_string())
            .collect();
        let disks = Disks { declared: spec.config_disks.len(), ok: spec.config_disks.len() - failed.len() };
        if disks.declared == 0 {
            let m = "no external configuration disk: no CRD reachable from all MUs";
            self.error("ConfigDisks", "NoExternalDisk", m.into());
        } else if disks.ok == 0 {
            let m = format!("all external configuration disks failed ({}): CRD lost", failed.join(", "));
            self.error("ConfigDisks", "AllDisksFailed", m);
        } else if !failed.is_empty() {
            let m = format!("external configuration disk {} failed: redundancy lost", failed.join(", "));
            self.cond("ConfigDisks", false, "DiskFailed", &m);
            self.warnings.push(m);
        } else {
            self.cond("ConfigDisks", true, "Ok", &format!("{} external configuration disk(s) OK", disks.ok));
        }
        disks
    }

    /// Elects the Cluster Manager, announces a move, sets its condition.
    fn cluster_manager(&mut self, cx: &mut Cx, mus: &[MuView]) -> Option<String> {
        let cm = elect(cx.world, &self.name, mus);
        if let (Some(old), Some(new)) = (&self.prev().cluster_manager, &cm) {
            if old != new {
                let msg = format!("Cluster Manager moved from MU {old} to MU {new}");
                cx.event(EventType::Normal, "NOTICE", "Cluster", self.key.clone(), "ClusterManagerMoved", msg);
            }
        }
        match &cm {
            Some(c) => self.cond("ClusterManager", true, "Active", &format!("Cluster Manager active on MU {c}")),
            None => self.error("ClusterManager", "NoMu", "no MU powered: no Cluster Manager".into()),
        }
        cm
    }

    /// The network heartbeat to every MU: the Cluster Manager reaches the MUs of its
    /// own server, and those of the other over the ISL-E. Events when an MU stops or
    /// starts answering; the MU table of the status.
    fn heartbeats(&mut self, cx: &mut Cx, mut mus: Vec<MuView>, cm: Option<&str>, link_up: bool, disks: Disks) {
        let cm_server = cm.and_then(|c| mus.iter().find(|m| m.name == c)).map(|m| m.server.clone());
        for m in mus.iter_mut() {
            m.answers = m.on && (Some(&m.server) == cm_server.as_ref() || link_up);
        }
        let mut rows: Vec<MuStatus> = Vec::new();
        for m in &mus {
            self.heartbeat_event(cx, m, cm.is_some());
            rows.push(MuStatus {
                name: m.name.clone(),
                server: m.server.clone(),
                power: if m.on { "ON" } else { "OFF" }.into(),
                config_disks: disks.summary().into(),
                heartbeat: if m.answers { "OK" } else { "NO_ANSWER" }.into(),
            });
        }
        self.st.management_units = rows;
    }

    /// One MU's heartbeat: a warning while it does not answer, an event on each change.
    fn heartbeat_event(&mut self, cx: &mut Cx, m: &MuView, have_cm: bool) {
        let was_answering = self.prev().units_heartbeat(&m.name);
        if !m.answers {
            let why = if m.on { "not reachable" } else { "powered off" };
            self.warnings.push(format!("MU {} does not answer the heartbeat ({why}): redundancy lost", m.name));
            if was_answering != Some(false) && have_cm {
                let msg = format!("MU {} of {} does not answer the heartbeat queries", m.name, m.server);
                cx.event(EventType::Warning, "WARNING", "Cluster", self.key.clone(), "HeartbeatLost", msg);
            }
        } else if was_answering == Some(false) {
            let msg = format!("MU {} of {} answers the heartbeat queries again", m.name, m.server);
            cx.event(EventType::Normal, "INFO", "Cluster", self.key.clone(), "HeartbeatRestored", msg);
        }
    }

    /// The Prerequisites condition once both servers are members: ISL-E and disks.
    fn prerequisites(&mut self) {
        let mut lacking = Vec::new();
        if self.o.spec.isl_e.is_none() {
            lacking.push("no ISL-E");
        }
        if self.o.spec.config_disks.is_empty() {
            lacking.push("no external configuration disk");
        }
        if lacking.is_empty() {
            self.cond("Prerequisites", true, "Met", "two servers, ISL-E and a CRD with external configuration disks");
        } else {
            self.cond("Prerequisites", false, "Missing", &lacking.join(", "));
        }
    }

    /// Inhomogeneous cluster (s2.5).
    fn inhomogeneous(&mut self, servers: &Servers) {
        let versions: Vec<String> =
            servers.iter().filter_map(|(n, s)| s.as_ref().map(|s| format!("{n} {}", s.version))).collect();
        let distinct: std::collections::BTreeSet<_> =
            servers.iter().filter_map(|(_, s)| s.as_ref().map(|s| s.version)).collect();
        if distinct.len() > 1 {
            let m = format!(
                "inhomogeneous management cluster ({}); restrictions: {INHOMOGENEOUS_RESTRICTIONS}",
                versions.join(", ")
            );
            self.cond("Inhomogeneous", true, "MixedVersions", &m);
        } else {
            remove_condition(&mut self.st.conditions, "Inhomogeneous");
        }
    }

    /// Global objects (s2.1): conflicts are reported (once per change), never resolved.
    fn global_objects(&mut self, cx: &mut Cx, servers: &Servers) {
        let [(na, Some(a)), (nb, Some(b))] = servers.as_slice() else { return };
        let conflicts = global_conflicts((na, a), (nb, b));
        if conflicts.is_empty() {
            self.cond("GlobalObjectsUnambiguous", true, "Unambiguous", "no conflicting global objects");
            return;
        }
        let m = conflicts.join("; ");
        let was =
            self.prev().conditions.iter().find(|c| c.type_ == "GlobalObjectsUnambiguous").map(|c| c.message.as_str());
        if was != Some(m.as_str()) {
            let msg = format!("conflicting global objects, not resolved: {m}");
            cx.event(EventType::Warning, "WARNING", "Cluster", self.key.clone(), "GlobalObjectConflict", msg);
        }
        self.cond("GlobalObjectsUnambiguous", false, "Conflicts", &m);
        self.warnings.push(format!("conflicting global objects: {m}"));
    }

    /// The Cluster Manager's internal resources (s2.2: "the status of the internal
    /// resources of the Cluster Manager") and condition `ClusterManagerResources`. They
    /// show the Cluster Manager's view of causes counted elsewhere (disks, ISL-E), and
    /// what running on a V6.2 MU takes away (s2.5): "Since the resource monitor is not
    /// called there will be no status WARNING", and "the so-called global data are
    /// enquired on that MU ... some data introduced in V6.3 will not be available".
    fn cluster_manager_resources(&mut self, cx: &Cx, servers: &Servers, cm: Option<&str>, link_up: bool, disks: Disks) {
        let Some(cm) = cm else {
            self.st.cluster_manager_resources.clear();
            self.cond("ClusterManagerResources", false, "NoClusterManager", "no Cluster Manager");
            return;
        };
        let rows = cm_resources(cm_version(cx, servers, cm), self.o.spec.isl_e.is_some(), link_up, disks);
        let restricted: Vec<String> = rows
            .iter()
            .filter(|r| !matches!(r.state.as_str(), "OK" | "COMPLETE"))
            .map(|r| format!("{} {}: {}", r.name, r.state, r.detail))
            .collect();
        self.st.cluster_manager_resources = rows;
        if restricted.is_empty() {
            self.cond("ClusterManagerResources", true, "Ok", &format!("all internal resources of MU {cm} OK"));
        } else {
            self.cond("ClusterManagerResources", false, "Restricted", &restricted.join("; "));
        }
    }

    /// State, reasons, Ready and Redundant, and an event when the state changed.
    fn conclude(mut self, cx: &mut Cx, cm: Option<String>) -> Outcome {
        let state = if !self.errors.is_empty() {
            ClusterState::Error
        } else if !self.warnings.is_empty() {
            ClusterState::Warning
        } else {
            ClusterState::Normal
        };
        self.st.state = Some(state);
        self.st.cluster_manager = cm;
        self.st.reasons = self.errors.iter().chain(self.warnings.iter()).cloned().collect();
        let redundant = self.warnings.is_empty() && self.errors.is_empty();
        let summary = self.st.reasons.join("; ");
        let lost = state == ClusterState::Error;
        self.cond("Ready", !lost, if lost { "FunctionsLost" } else { "FunctionsAvailable" }, &summary);
        self.cond("Redundant", redundant, if redundant { "FullRedundancy" } else { "RedundancyLost" }, "");
        if self.prev().state != Some(state) {
            self.state_event(cx, state);
        }
        let mut r = self.o.clone();
        r.status = self.st;
        Outcome::status(r.into_resource())
    }

    /// "management cluster NAME: WAS -> NOW: why".
    fn state_event(&self, cx: &mut Cx, state: ClusterState) {
        let (t, p) = match state {
            ClusterState::Normal => (EventType::Normal, "INFO"),
            ClusterState::Warning => (EventType::Warning, "WARNING"),
            _ => (EventType::Warning, "ERROR"),
        };
        let from = self.prev().state.map(|s| format!("{s} -> ")).unwrap_or_default();
        let why = if self.st.reasons.is_empty() {
            "all functions available, full redundancy".to_string()
        } else {
            self.st.reasons.join("; ")
        };
        let msg = format!("management cluster {}: {from}{state}: {why}", self.name);
        cx.event(t, p, "Cluster", self.key.clone(), &format!("ManagementCluster{}", camel(state)), msg);
    }
}

/// The software version of the server whose MU `cm` is.
fn cm_version(cx: &Cx, servers: &Servers, cm: &str) -> Option<SoftwareVersion> {
    let server = cx.world.unit(cm).map(|u| u.server.clone())?;
    servers.iter().find(|(n, _)| *n == server).and_then(|(_, s)| s.as_ref()).map(|s| s.version)
}

/// The rows of `clusterManagerResources`.
fn cm_resources(version: Option<SoftwareVersion>, has_isl: bool, link_up: bool, disks: Disks) -> Vec<CmResource> {
    let row = |name: &str, state: &str, detail: &str| CmResource {
        name: name.into(),
        state: state.into(),
        detail: detail.into(),
    };
    let crd = match disks.summary() {
        "OK" => "",
        "DEGRADED" => "an external configuration disk failed: the CRD is not mirrored",
        "FAILED" => "all external configuration disks failed: the CRD is lost",
        _ => "no external configuration disk",
    };
    let v62 = version == Some(SoftwareVersion::V62);
    vec![
        row("CRD", disks.summary(), crd),
        match (has_isl, link_up) {
            (false, _) => row("MCNPR", "NONE", "no ISL-E: the other server's units are not reachable"),
            (true, false) => row("MCNPR", "FAILED", "ISL-E down: the other server's units are not reachable"),
            (true, true) => row("MCNPR", "OK", ""),
        },
        if v62 {
            row("ResMon", "NOT_CALLED", "the Cluster Manager runs on a V6.2 MU: no unit status WARNING (s2.5)")
        } else {
            row("ResMon", "OK", "")
        },
        if v62 {
            row("GlobalData", "RESTRICTED", "enquired on a V6.2 MU: data introduced in V6.3 are not available (s2.5)")
        } else {
            row("GlobalData", "COMPLETE", "")
        },
    ]
}

/// Makes the world's link of cluster `name` exist with `gbps`; returns whether it is up.
fn ensure_link(w: &mut World, name: &str, gbps: f64) -> bool {
    if !w.links.contains_key(name) {
        w.links.insert(name.to_string(), Link { bandwidth_gbps: gbps, up: true });
        w.touch();
    }
    let l = w.links.get_mut(name).expect("just ensured");
    let up = l.up;
    if l.bandwidth_gbps != gbps {
        l.bandwidth_gbps = gbps;
        w.touch();
    }
    up
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
