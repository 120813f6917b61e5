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
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// What the references can resolve against: the objects by kind and name, and each
/// SU's configured devices once computed (a site of 10,000 VMs asks for them 10,000
/// times).
pub struct Site<'a> {
    by_key: HashMap<(Kind, &'a str), &'a Resource>,
    /// The servers among the objects (every SU lookup walks them, not all objects).
    servers: Vec<&'a SEServerSpec>,
    /// Kinds whose absence means "does not exist" (all for apply).
    known: Vec<Kind>,
    devices: RefCell<HashMap<String, Rc<BTreeSet<String>>>>,
}

impl<'a> Site<'a> {
    fn new(objs: Vec<&'a Resource>, known: Vec<Kind>) -> Site<'a> {
        let mut by_key = HashMap::with_capacity(objs.len());
        for o in &objs {
            by_key.entry((o.kind(), o.name())).or_insert(*o);
        }
        let servers = objs.iter().filter_map(|o| o.as_typed::<SEServerSpec>()).map(|o| &o.spec).collect();
        Site { by_key, servers, known, devices: RefCell::default() }
    }

    /// Everything stored and applied (every kind is known).
    pub fn full(stored: &'a [Resource], applied: impl IntoIterator<Item = &'a Resource>) -> Site<'a> {
        let mut objs: Vec<&Resource> = applied.into_iter().collect();
        let given: std::collections::HashSet<(Kind, &str)> = objs.iter().map(|a| (a.kind(), a.name())).collect();
        objs.extend(stored.iter().filter(|s| !given.contains(&(s.kind(), s.name()))));
        Site::new(objs, Kind::ALL.to_vec())
    }

    /// Only the given objects; references to kinds not among them are not checked.
    pub fn partial(objs: &'a [Resource]) -> Site<'a> {
        let mut known: Vec<Kind> = objs.iter().map(|o| o.kind()).collect();
        known.dedup();
        Site::new(objs.iter().collect(), known)
    }

    /// The MNs configured on SU `name` (as `su` finds it), computed once.
    fn configured(&self, name: &str, su: &crate::api::ServerUnitSpec) -> Rc<BTreeSet<String>> {
        let mut cache = self.devices.borrow_mut();
        cache
            .entry(name.to_ascii_uppercase())
            .or_insert_with(|| Rc::new(su.devices.iter().flat_map(|d| d.mn.expand()).collect()))
            .clone()
    }

    fn servers(&self) -> impl Iterator<Item = &SEServerSpec> {
        self.servers.iter().copied()
    }

    fn su(&self, name: &str) -> Option<&crate::api::ServerUnitSpec> {
        self.servers().flat_map(|s| s.server_units.iter()).find(|u| u.name.as_str().eq_ignore_ascii_case(name))
    }

    fn exists(&self, kind: Kind, name: &str) -> bool {
        self.by_key.contains_key(&(kind, name))
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
    let configured = site.configured(su_name, su);
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
    let o = site.by_key.get(&(Kind::VMDefinition, vm))?.as_typed::<crate::api::VMDefinitionSpec>()?;
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
