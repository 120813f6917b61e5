//! SUCluster reconciler (manual s3): two SUs of one type; an SU in one SU cluster only
//! (the cluster that holds it keeps it); across two servers a ManagementCluster over
//! exactly those servers; inside one server SU x86 only, with a CRD. `active: false`
//! gives INACTIVE, an SU off ERROR (also an SU /390 whose server has no MU running), an
//! MU off WARNING. For SU /390 the status lists the MUs.

use super::mgmt::{camel, not_yet, older, units_present};
use super::server::unit_status;
use super::{Cx, Outcome};
use crate::api::{
    set_condition, ClusterState, ConditionStatus, ManagementClusterSpec, Object, SEServerSpec, SUClusterSpec,
    SUClusterStatus, SuType,
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

/// Reconciles one SUCluster.
pub fn reconcile(cx: &mut Cx, o: &Object<SUClusterSpec, SUClusterStatus>) -> anyhow::Result<Outcome> {
    let name = o.name().to_string();
    let key = format!("SUCluster/{name}");
    let gen = o.metadata.generation;
    let now = cx.now();
    let prev = o.status.clone();
    let mut st = o.status.clone();
    st.observed_generation = gen;
    let mut errors: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut prereq: Vec<(String, &str)> = Vec::new();

    let sus: Vec<&str> = o.spec.server_units.iter().map(|s| s.as_str()).collect();
    let found: Vec<Option<(&str, &SEServerSpec)>> = sus.iter().map(|s| server_of(cx.cache, s)).collect();
    if found.iter().flatten().any(|(_, s)| !units_present(cx.world, s)) {
        return Ok(not_yet());
    }
    for (su, f) in sus.iter().zip(&found) {
        if f.is_none() {
            prereq.push((format!("SU {su} is not a unit of any SEServer"), "ServerUnitNotFound"));
        }
    }
    let types: Vec<Option<SuType>> = sus
        .iter()
        .zip(&found)
        .map(|(su, f)| f.and_then(|(_, s)| s.server_units.iter().find(|u| u.name == *su)).map(|u| u.su_type))
        .collect();
    st.su_type = types.iter().flatten().next().map(|t| t.to_string());
    if let [Some(a), Some(b)] = types.as_slice() {
        if a != b {
            prereq.push((
                format!("SU {} is {a} but SU {} is {b}: both SUs must be of the same type", sus[0], sus[1]),
                "TypeMismatch",
            ));
        }
    }
    // An SU belongs to one SU cluster only: the cluster that holds it keeps it; of two
    // new claims the older wins. (Creation timestamps have whole seconds, so "older"
    // alone would let a later cluster with a smaller name take the SU away.)
    for other in cx.cache.typed::<SUClusterSpec>() {
        if other.name() == name {
            continue;
        }
        for su in &sus {
            if !other.spec.server_units.iter().any(|s| s == su) {
                continue;
            }
            let theirs = match (holds(other, su), holds(o, su)) {
                (true, false) => true,
                (false, true) => false,
                _ => older(other, o),
            };
            if theirs {
                prereq.push((claimed(su, other.name()), "ServerUnitInAnotherCluster"));
            }
        }
    }
    let mut servers: Vec<&str> = found.iter().flatten().map(|(n, _)| *n).collect();
    servers.dedup();
    if let [Some((sa, _)), Some((sb, spec_b))] = found.as_slice() {
        if sa != sb {
            match mgmt_cluster_of(cx.cache, sa, sb) {
                None => prereq.push((
                    format!("the SUs are in two servers ({sa}, {sb}) but no ManagementCluster joins them"),
                    "NoManagementCluster",
                )),
                // Not reconciled yet: wait for its status (its write wakes this one).
                Some(mc) if mc.status.state.is_none() => return Ok(not_yet()),
                Some(mc) => match mc.status.state {
                    Some(ClusterState::Error) => errors.push(format!(
                        "management cluster {} is in ERROR: {}",
                        mc.name(),
                        mc.status.reasons.join("; ")
                    )),
                    Some(ClusterState::Warning) => {
                        // MU outages are counted below; other lost redundancy shows here.
                        for r in mc.status.reasons.iter().filter(|r| !r.starts_with("MU ")) {
                            warnings.push(format!("management cluster {}: {r}", mc.name()));
                        }
                    }
                    _ => {}
                },
            }
        } else {
            if types.iter().flatten().any(|t| *t == SuType::S390) {
                prereq.push((
                    format!("both SUs are in server {sa}: an SU cluster inside one server is possible for SU x86 only"),
                    "SameServer390",
                ));
            }
            // Inside one server the CRD comes from the server's external disks, or from
            // a management cluster the server belongs to.
            let own: Vec<&str> = spec_b.config_disks.iter().map(|d| d.name.as_str()).collect();
            let via_mc: Vec<String> = cx
                .cache
                .typed::<ManagementClusterSpec>()
                .filter(|m| m.spec.servers.iter().any(|s| s.as_str() == *sa))
                .flat_map(|m| m.spec.config_disks.iter().map(|d| d.name.to_string()))
                .collect();
            let all: Vec<String> = own.iter().map(|s| s.to_string()).chain(via_mc).collect();
            if all.iter().any(|d| !cx.world.disks.contains_key(d.as_str())) {
                // Declared by an object not reconciled yet: wait (its status write
                // wakes this cluster) rather than count the disk as failed.
                return Ok(not_yet());
            }
            let ok = all.iter().filter(|d| cx.world.disks.get(d.as_str()).is_some_and(|x| x.ok)).count();
            if all.is_empty() {
                prereq.push((
                    format!("server {sa} has no external configuration disk: an SU cluster needs the CRD"),
                    "NoCrd",
                ));
            } else if ok == 0 {
                errors.push(format!("all external configuration disks of server {sa} failed: CRD lost"));
            } else if ok < all.len() {
                warnings.push("an external configuration disk failed: redundancy lost".to_string());
            }
        }
    }
    for (m, _) in &prereq {
        errors.push(m.clone());
    }
    match prereq.first() {
        None => set_condition(&mut st.conditions, "Prerequisites", ConditionStatus::True, "Met", "", gen, &now),
        Some((m, reason)) => {
            let all: Vec<&str> = prereq.iter().map(|(m, _)| m.as_str()).collect();
            let _ = m;
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

    // Power of the SUs and of the MUs of the servers involved.
    for su in &sus {
        if cx.world.unit(su).is_some() && !cx.world.powered(su) {
            errors.push(format!("SU {su} is powered off"));
        }
    }
    let mut mus = Vec::new();
    for (sname, spec) in found.iter().flatten() {
        if mus.iter().any(|(s, _): &(String, _)| s == sname) {
            continue;
        }
        mus.push((sname.to_string(), spec.management_units.iter().map(|m| m.name.to_string()).collect::<Vec<_>>()));
    }
    let mut mu_status = Vec::new();
    for (_, names) in &mus {
        for m in names {
            let u = unit_status(cx.world, m, UnitKind::MU);
            if u.power != "ON" {
                warnings.push(format!("MU {m} is powered off: redundancy lost"));
            }
            mu_status.push(u);
        }
    }
    // Manual, glossary "Redundant SKP functionality": an SU /390 is only operable while
    // at least one MU of its own server runs.
    for (su, f) in sus.iter().zip(&found) {
        let Some((sname, spec)) = f else { continue };
        let is_390 = spec.server_units.iter().any(|u| u.name == *su && u.su_type == SuType::S390);
        let known: Vec<&str> =
            spec.management_units.iter().map(|m| m.name.as_str()).filter(|m| cx.world.unit(m).is_some()).collect();
        if is_390 && !known.is_empty() && known.iter().all(|m| !cx.world.powered(m)) {
            errors.push(format!("SU {su} cannot be operated: no MU of server {sname} is running (SKP)"));
        }
    }
    st.management_units = if types.iter().flatten().any(|t| *t == SuType::S390) { mu_status } else { Vec::new() };

    let state = if !o.spec.active {
        ClusterState::Inactive
    } else if !errors.is_empty() {
        ClusterState::Error
    } else if !warnings.is_empty() {
        ClusterState::Warning
    } else {
        ClusterState::Normal
    };
    st.state = Some(state);
    st.reasons = errors.iter().chain(warnings.iter()).cloned().collect();
    let (cs, reason) = match state {
        ClusterState::Normal | ClusterState::Warning => (ConditionStatus::True, "LiveMigrationPossible"),
        ClusterState::Inactive => (ConditionStatus::False, "Deactivated"),
        _ => (ConditionStatus::False, "FunctionsLost"),
    };
    set_condition(&mut st.conditions, "Ready", cs, reason, &st.reasons.join("; "), gen, &now);
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
            key,
            &format!("SUCluster{}", camel(state)),
            format!("{kind} {name}: {from}{state}: {why}"),
        );
    }
    let mut r = o.clone();
    r.status = st;
    Ok(Outcome::status(r.into_resource()))
}
