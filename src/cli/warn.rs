//! Warnings for references that do not resolve, printed as kubectl prints server
//! warnings (`Warning: ...` on stderr) by `apply` and `validate`. They are warnings,
//! not errors: order does not matter in sectl (a VM may be applied before its server),
//! but an object that names an SU, VM, cluster member, CPU pool, VM group or device
//! that nothing defines will not work until something does.
//!
//! `apply` checks the applied objects against the store plus the applied objects.
//! `validate` has no store: it checks against the files given, and only references to
//! kinds those files contain (so `validate -f manifests/` checks the whole site while
//! `validate -f examples/live-migration.yaml` alone does not warn about its VM).

use crate::api::{Kind, Resource, SEServerSpec};
use std::collections::HashMap;

/// What the references can resolve against (indexed once: a 10,000-VM apply looked
/// every reference up by scanning every object).
pub struct Site<'a> {
    /// The objects by kind and name.
    objs: HashMap<(Kind, &'a str), &'a Resource>,
    /// The servers' specs.
    servers: Vec<&'a SEServerSpec>,
    /// Kinds whose absence means "does not exist" (all for apply).
    known: Vec<Kind>,
}

impl<'a> Site<'a> {
    /// Everything stored and applied (every kind is known).
    pub fn full(stored: &'a [Resource], applied: &'a [Resource]) -> Site<'a> {
        // The applied objects replace the stored ones of the same key.
        let keys: std::collections::HashSet<(Kind, &str)> = applied.iter().map(|a| (a.kind(), a.name())).collect();
        let kept = stored.iter().filter(move |s| !keys.contains(&(s.kind(), s.name())));
        Site::of(applied.iter().chain(kept), Kind::ALL.to_vec())
    }

    /// Only the given objects; references to kinds not among them are not checked.
    pub fn partial(objs: &'a [Resource]) -> Site<'a> {
        let mut known: Vec<Kind> = objs.iter().map(|o| o.kind()).collect();
        known.dedup();
        Site::of(objs.iter(), known)
    }

    /// The objects (the first of each key by name; every server's units count).
    fn of(objs: impl Iterator<Item = &'a Resource>, known: Vec<Kind>) -> Site<'a> {
        let mut by_key: HashMap<(Kind, &'a str), &'a Resource> = HashMap::new();
        let mut servers = Vec::new();
        for o in objs {
            by_key.entry((o.kind(), o.name())).or_insert(o);
            servers.extend(o.as_typed::<SEServerSpec>().map(|s| &s.spec));
        }
        Site { objs: by_key, servers, known }
    }

    fn su(&self, name: &str) -> Option<&crate::api::ServerUnitSpec> {
        self.servers.iter().flat_map(|s| s.server_units.iter()).find(|u| u.name.as_str().eq_ignore_ascii_case(name))
    }

    fn exists(&self, kind: Kind, name: &str) -> bool {
        self.objs.contains_key(&(kind, name))
    }

    fn knows(&self, kind: Kind) -> bool {
        self.known.contains(&kind)
    }
}

fn su_warning(site: &Site, who: &str, field: &str, su: &str) -> Option<String> {
    (site.knows(Kind::SEServer) && site.su(su).is_none())
        .then(|| format!("{who}: {field} {su} is not a server unit of any SEServer"))
}

fn vm_warnings(site: &Site, who: &str, spec: &crate::api::VMDefinitionSpec) -> Vec<String> {
    let su_name = spec.server_unit.as_str();
    if let Some(w) = su_warning(site, who, "spec.serverUnit", su_name) {
        return vec![w];
    }
    let Some(su) = site.su(su_name) else { return vec![] };
    let mut out = Vec::new();
    let pool = spec.cpu_pool.as_str();
    if pool != "*STDPOOL" && !su.cpu_pools.iter().any(|p| p.name.as_str() == pool) {
        out.push(format!("{who}: spec.cpuPool {pool} is not a CPU pool of {su_name}"));
    }
    if let Some(g) = &spec.vm_group {
        if !su.vm_groups.iter().any(|x| x.name.as_str() == g.as_str()) {
            out.push(format!("{who}: spec.vmGroup {g} is not a VM group of {su_name}"));
        }
    }
    let configured: std::collections::BTreeSet<String> = su.devices.iter().flat_map(|d| d.mn.expand()).collect();
    for (i, d) in spec.devices.iter().enumerate() {
        let missing: Vec<String> = d.mn.expand().into_iter().filter(|m| !configured.contains(m)).collect();
        if !missing.is_empty() {
            let shown = if missing.len() > 3 { format!("{} of them", missing.len()) } else { missing.join(", ") };
            out.push(format!(
                "{who}: spec.devices[{i}] {}: device {shown} is not configured on {su_name}",
                d.mn.as_str()
            ));
        }
    }
    out
}

/// The VM's current SU (status, else spec), when the VM is known.
fn vm_su(site: &Site, vm: &str) -> Option<String> {
    let o = site.objs.get(&(Kind::VMDefinition, vm))?.as_typed::<crate::api::VMDefinitionSpec>()?;
    Some(o.status.server_unit.clone().unwrap_or_else(|| o.spec.server_unit.to_string()))
}

/// Warnings for `r`'s references in `site`.
pub fn references(r: &Resource, site: &Site) -> Vec<String> {
    let who = format!("{}/{}", r.kind().lower(), r.name());
    let mut out = Vec::new();
    let vm_missing = |vm: &str| {
        (site.knows(Kind::VMDefinition) && !site.exists(Kind::VMDefinition, vm))
            .then(|| format!("{who}: spec.vm {vm} is not a VMDefinition"))
    };
    match r {
        Resource::VMDefinition(o) => out.extend(vm_warnings(site, &who, &o.spec)),
        Resource::LiveMigration(o) => {
            out.extend(vm_missing(o.spec.vm.as_str()));
            if let Some(t) = &o.spec.target_server_unit {
                out.extend(su_warning(site, &who, "spec.targetServerUnit", t.as_str()));
                if let Some(cur) = vm_su(site, o.spec.vm.as_str()) {
                    if cur.eq_ignore_ascii_case(t.as_str()) && o.status.phase == crate::api::LmPhase::Pending {
                        out.push(format!("{who}: VM {} is already on {t}", o.spec.vm));
                    }
                }
            }
        }
        Resource::VMRecovery(o) => {
            out.extend(vm_missing(o.spec.vm.as_str()));
            out.extend(su_warning(site, &who, "spec.targetServerUnit", o.spec.target_server_unit.as_str()));
        }
        Resource::SUCluster(o) => {
            for (i, u) in o.spec.server_units.iter().enumerate() {
                out.extend(su_warning(site, &who, &format!("spec.serverUnits[{i}]"), u.as_str()));
            }
        }
        Resource::ManagementCluster(o) => {
            for (i, s) in o.spec.servers.iter().enumerate() {
                if site.knows(Kind::SEServer) && !site.exists(Kind::SEServer, s.as_str()) {
                    out.push(format!("{who}: spec.servers[{i}] {s} is not an SEServer"));
                }
            }
        }
        Resource::SEServer(_) | Resource::AlarmReceiver(_) => {}
    }
    out
}

/// Prints each warning as kubectl does.
pub fn print(warnings: &[String]) {
    for w in warnings {
        eprintln!("Warning: {w}");
    }
}
