//! SUCluster reconciler (manual s3): two SUs of one type; an SU in one SU cluster only
//! (the cluster that holds it keeps it); across two servers a ManagementCluster over
//! exactly those servers; inside one server SU x86 only, with a CRD. `active: false`
//! gives INACTIVE, an SU off ERROR (also an SU /390 whose server has no MU running), an
//! MU off WARNING for SU /390 only; SUs in different BS2000 operation modes (or Native
//! on /390) ERROR, since no LM is possible. For SU /390 the status lists the MUs.

use super::mgmt::{camel, not_yet, older, units_present};
use super::server::unit_view;
use super::{Cx, Outcome};
use crate::api::{
    set_condition, ClusterServerUnit, ClusterState, ConditionStatus, ManagementClusterSpec, Object, OperationMode,
    SEServerSpec, SUClusterSpec, SUClusterStatus, ServerUnitSpec, SuType,
};
use crate::controller::runtime::Cache;
use crate::sim::UnitKind;
use crate::store::EventType;

/// The SEServer (name, spec) that has SU `su`.
pub fn server_of<'a>(cache: &'a Cache, su: &str) -> Option<(&'a str, &'a SEServerSpec)> {
    cache
        .typed::<SEServerSpec>()
        .find(|s| s.spec.server_units.iter().any(|u| u.name == su))
        .map(|s| (s.name(), &s.spec))
}

/// The ManagementCluster over exactly servers `a` and `b`.
pub fn mgmt_cluster_of<'a>(
    cache: &'a Cache,
    a: &str,
    b: &str,
) -> Option<&'a Object<ManagementClusterSpec, crate::api::ManagementClusterStatus>> {
    cache
        .typed::<ManagementClusterSpec>()
        .find(|m| m.spec.servers.iter().any(|s| s.as_str() == a) && m.spec.servers.iter().any(|s| s.as_str() == b))
}

/// The refusal of SU `su` to a cluster because cluster `owner` has it.
fn claimed(su: &str, owner: &str) -> String {
    format!("SU {su} already belongs to SU cluster {owner}")
}

/// Whether cluster `c` holds SU `su`: its status reflects its current spec and does not
/// refuse it the SU.
fn holds(c: &Object<SUClusterSpec, SUClusterStatus>, su: &str) -> bool {
    super::holds_member(
        c.spec.server_units.iter().any(|s| s.as_str() == su),
        c.status.observed_generation,
        c.metadata.generation,
        &c.status.conditions,
        &claimed(su, ""),
    )
}

/// What the checks of one SU cluster found.
#[derive(Default)]
struct Findings {
    errors: Vec<String>,
    warnings: Vec<String>,
    prereq: Vec<(String, &'static str)>,
}

/// The SUs of a cluster with their servers (None: no server has the SU).
type Members<'a> = Vec<(&'a str, Option<(&'a str, &'a SEServerSpec)>)>;

/// Reconciles one SUCluster.
pub fn reconcile(cx: &mut Cx, o: &Object<SUClusterSpec, SUClusterStatus>) -> anyhow::Result<Outcome> {
    let now = cx.now();
    let gen = o.metadata.generation;
    let prev = o.status.clone();
    let mut st = o.status.clone();
    st.observed_generation = gen;
    let mut f = Findings::default();
    let members: Members = o.spec.server_units.iter().map(|s| (s.as_str(), server_of(cx.cache, s.as_str()))).collect();
    if members.iter().filter_map(|(_, m)| *m).any(|(_, s)| !units_present(cx.world, s)) {
        return Ok(not_yet());
    }
    let specs: Vec<Option<&ServerUnitSpec>> =
        members.iter().map(|(su, m)| m.and_then(|(_, s)| s.server_units.iter().find(|u| u.name == *su))).collect();
    for (su, m) in &members {
        if m.is_none() {
            f.prereq.push((format!("SU {su} is not a unit of any SEServer"), "ServerUnitNotFound"));
        }
    }
    st.su_type = specs.iter().flatten().next().map(|u| u.su_type.to_string());
    let is_390 = specs.iter().flatten().any(|u| u.su_type == SuType::S390);
    type_and_mode(&specs, &mut f);
    claims(cx, o, &mut f);
    if !placement(cx, &members, is_390, &mut f) {
        return Ok(not_yet());
    }
    for (m, _) in &f.prereq {
        f.errors.push(m.clone());
    }
    match f.prereq.first() {
        None => set_condition(&mut st.conditions, "Prerequisites", ConditionStatus::True, "Met", "", gen, &now),
        Some((_, reason)) => {
            let all: Vec<&str> = f.prereq.iter().map(|(m, _)| m.as_str()).collect();
            set_condition(
                &mut st.conditions,
                "Prerequisites",
                ConditionStatus::False,
                reason,
                &all.join("; "),
                gen,
                &now,
            )
        }
    };
    st.management_units = power(cx, &members, is_390, &mut f);
    st.server_units = table(cx, &members, &specs);
    publish(cx, o, prev, st, f, &now)
}

/// Both SUs of one type (s3); LM only between SUs with the same BS2000 operation mode,
/// Native only on x86 (glossary "BS2000 Operation Mode": the modes "affect the cluster
/// status of SU Clusters insofar as Live Migration is only possible between SUs with
/// the same BS2000 operation modes"; "In the state ERROR the cluster functions are not
/// fulfilled (for example LM is not possible)").
fn type_and_mode(specs: &[Option<&ServerUnitSpec>], f: &mut Findings) {
    let [Some(a), Some(b)] = specs else { return };
    if a.su_type != b.su_type {
        f.prereq.push((
            format!(
                "SU {} is {} but SU {} is {}: both SUs must be of the same type",
                a.name, a.su_type, b.name, b.su_type
            ),
            "TypeMismatch",
        ));
        return;
    }
    if a.operation_mode != b.operation_mode {
        f.errors.push(format!(
            "SU {} runs {:?} but SU {} runs {:?}: live migration is only possible between SUs with the same BS2000 operation mode (LM is not possible)",
            a.name, a.operation_mode, b.name, b.operation_mode
        ));
    } else if a.su_type == SuType::S390 && a.operation_mode == OperationMode::Native {
        f.errors.push(
            "both SUs /390 run Native BS2000: live migration of Native BS2000 is only possible on SU x86 (LM is not possible)"
                .to_string(),
        );
    }
}

/// An SU belongs to one SU cluster only: the cluster that holds it keeps it; of two
/// new claims the older wins. (Creation timestamps have whole seconds, so "older"
/// alone would let a later cluster with a smaller name take the SU away.)
fn claims(cx: &Cx, o: &Object<SUClusterSpec, SUClusterStatus>, f: &mut Findings) {
    for other in cx.cache.typed::<SUClusterSpec>() {
        if other.name() == o.name() {
            continue;
        }
        for su in o.spec.server_units.iter().map(|s| s.as_str()) {
            if !other.spec.server_units.iter().any(|s| s.as_str() == su) {
                continue;
            }
            let theirs = match (holds(other, su), holds(o, su)) {
                (true, false) => true,
                (false, true) => false,
                _ => older(other, o),
            };
            if theirs {
                f.prereq.push((claimed(su, other.name()), "ServerUnitInAnotherCluster"));
            }
        }
    }
}

/// Across two servers a Management Cluster; inside one server SU x86 only, with a
/// CRD. False when an object it depends on has not been reconciled yet.
fn placement(cx: &Cx, members: &Members, is_390: bool, f: &mut Findings) -> bool {
    let [(_, Some((sa, _))), (_, Some((sb, spec_b)))] = members.as_slice() else { return true };
    if sa != sb {
        match mgmt_cluster_of(cx.cache, sa, sb) {
            None => f.prereq.push((
                format!("the SUs are in two servers ({sa}, {sb}) but no ManagementCluster joins them"),
                "NoManagementCluster",
            )),
            // Not reconciled yet: wait for its status (its write wakes this one).
            Some(mc) if mc.status.state.is_none() => return false,
            Some(mc) => match mc.status.state {
                Some(ClusterState::Error) => f.errors.push(format!(
                    "management cluster {} is in ERROR: {}",
                    mc.name(),
                    mc.status.reasons.join("; ")
                )),
                Some(ClusterState::Warning) => {
                    // MU outages are counted in `power` (for SU /390 only); other lost
                    // redundancy shows here.
                    for r in mc.status.reasons.iter().filter(|r| !r.starts_with("MU ")) {
                        f.warnings.push(format!("management cluster {}: {r}", mc.name()));
                    }
                }
                _ => {}
            },
        }
        return true;
    }
    if is_390 {
        f.prereq.push((
            format!("both SUs are in server {sa}: an SU cluster inside one server is possible for SU x86 only"),
            "SameServer390",
        ));
    }
    // Inside one server the CRD comes from the server's external disks, or from a
    // management cluster the server belongs to.
    let own = spec_b.config_disks.iter().map(|d| d.name.to_string());
    let via_mc = cx
        .cache
        .typed::<ManagementClusterSpec>()
        .filter(|m| m.spec.servers.iter().any(|s| s.as_str() == *sa))
        .flat_map(|m| m.spec.config_disks.iter().map(|d| d.name.to_string()));
    let all: Vec<String> = own.chain(via_mc).collect();
    if all.iter().any(|d| !cx.world.disks.contains_key(d.as_str())) {
        // Declared by an object not reconciled yet: wait (its status write wakes this
        // cluster) rather than count the disk as failed.
        return false;
    }
    let ok = all.iter().filter(|d| cx.world.disks.get(d.as_str()).is_some_and(|x| x.ok)).count();
    if all.is_empty() {
        f.prereq
            .push((format!("server {sa} has no external configuration disk: an SU cluster needs the CRD"), "NoCrd"));
    } else if ok == 0 {
        f.errors.push(format!("all external configuration disks of server {sa} failed: CRD lost"));
    } else if ok < all.len() {
        f.warnings.push("an external configuration disk failed: redundancy lost".to_string());
    }
    true
}

/// Power of the SUs, and for SU /390 of the MUs of their servers (s3.3: "In case of
/// SU /390, the MUs and their resources are also important for the cluster
/// functionality"; s2.3.3: an MU powered off turns the SU /390 cluster to WARNING). An
/// SU x86 cluster does not depend on the MUs. Returns the MU lines for SU /390.
fn power(cx: &Cx, members: &Members, is_390: bool, f: &mut Findings) -> Vec<crate::api::UnitStatus> {
    for (su, _) in members {
        if cx.world.unit(su).is_some() && !cx.world.powered(su) {
            f.errors.push(format!("SU {su} is powered off"));
        } else if cx.world.unit(su).is_some_and(|u| u.maintenance) {
            f.errors.push(format!("SU {su} is in maintenance mode: LM is not possible"));
        }
    }
    if !is_390 {
        return Vec::new();
    }
    let mut servers: Vec<(&str, &SEServerSpec)> = Vec::new();
    for (_, m) in members {
        if let Some((n, s)) = m {
            if !servers.iter().any(|(x, _)| x == n) {
                servers.push((n, s));
            }
        }
    }
    let mut mu_status = Vec::new();
    for (_, spec) in &servers {
        for m in &spec.management_units {
            let u = unit_view(cx, m.name.as_str(), UnitKind::MU);
            if u.power != "ON" {
                f.warnings.push(format!("MU {} is powered off: redundancy lost", m.name));
            }
            mu_status.push(u);
        }
    }
    // Glossary "Redundant SKP functionality": an SU /390 is only operable while at
    // least one MU of its own server runs.
    for (su, m) in members {
        let Some((sname, spec)) = m else { continue };
        let known: Vec<&str> =
            spec.management_units.iter().map(|m| m.name.as_str()).filter(|m| cx.world.unit(m).is_some()).collect();
        if !known.is_empty() && known.iter().all(|m| !cx.world.powered(m)) {
            f.errors.push(format!("SU {su} cannot be operated: no MU of server {sname} is running (SKP)"));
        }
    }
    mu_status
}

/// The per-SU table of the cluster's main window (s3.3).
fn table(cx: &Cx, members: &Members, specs: &[Option<&ServerUnitSpec>]) -> Vec<ClusterServerUnit> {
    members
        .iter()
        .zip(specs)
        .filter_map(|((su, m), spec)| {
            let (server, _) = (*m)?;
            let spec = (*spec)?;
            let u = unit_view(cx, su, UnitKind::SU);
            let rewas = cx.world.su(su).filter(|s| s.su_type == SuType::S390).map(|s| s.rewas_up);
            Some(ClusterServerUnit {
                name: su.to_string(),
                server: server.to_string(),
                su_type: spec.su_type.to_string(),
                operation_mode: format!("{:?}", spec.operation_mode),
                power: u.power,
                state: u.state,
                rewas,
            })
        })
        .collect()
}

/// The state from the findings, the Ready condition, and an event when it changed.
fn publish(
    cx: &mut Cx,
    o: &Object<SUClusterSpec, SUClusterStatus>,
    prev: SUClusterStatus,
    mut st: SUClusterStatus,
    f: Findings,
    now: &str,
) -> anyhow::Result<Outcome> {
    let name = o.name();
    let state = if !o.spec.active {
        ClusterState::Inactive
    } else if !f.errors.is_empty() {
        ClusterState::Error
    } else if !f.warnings.is_empty() {
        ClusterState::Warning
    } else {
        ClusterState::Normal
    };
    st.state = Some(state);
    st.reasons = f.errors.iter().chain(f.warnings.iter()).cloned().collect();
    let (cs, reason) = match state {
        ClusterState::Normal | ClusterState::Warning => (ConditionStatus::True, "LiveMigrationPossible"),
        ClusterState::Inactive => (ConditionStatus::False, "Deactivated"),
        _ => (ConditionStatus::False, "FunctionsLost"),
    };
    set_condition(&mut st.conditions, "Ready", cs, reason, &st.reasons.join("; "), o.metadata.generation, now);
    if prev.state != Some(state) {
        let (t, p) = match state {
            ClusterState::Normal => (EventType::Normal, "INFO"),
            ClusterState::Inactive => (EventType::Normal, "NOTICE"),
            ClusterState::Warning => (EventType::Warning, "WARNING"),
            ClusterState::Error => (EventType::Warning, "ERROR"),
        };
        let from = prev.state.map(|s| format!("{s} -> ")).unwrap_or_default();
        let why = match state {
            ClusterState::Inactive => "deactivated: no live migration".to_string(),
            _ if st.reasons.is_empty() => "all functions available".to_string(),
            _ => st.reasons.join("; "),
        };
        let kind = st.su_type.clone().map(|t| format!("SU {t} cluster")).unwrap_or_else(|| "SU cluster".into());
        cx.event(
            t,
            p,
            "Cluster",
            format!("SUCluster/{name}"),
            &format!("SUCluster{}", camel(state)),
            format!("{kind} {name}: {from}{state}: {why}"),
        );
    }
    let mut r = o.clone();
    r.status = st;
    Ok(Outcome::status(r.into_resource()))
}
