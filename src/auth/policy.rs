//! Who may do what: one function, `decide(user, verb, target)`, answers allow or the
//! missing right. The manual's rules (s3.2): everybody reads; only administrators
//! define servers, management clusters and SU clusters and activate or deactivate SU
//! clusters; a live migration is allowed to administrators, BS2000 administrators and
//! operators whose individual rights cover the VM and both the source and the target
//! SU. Where the manual is silent, SE Manager's split is followed (the README's role
//! table): BS2000 systems (VM definitions, migrations, recoveries) are the BS2000
//! administrator's and, for their own systems and units, the operator's; the
//! hardware, statuses, the simulated world, users and GitOps prunes are the
//! administrator's; everybody may acknowledge events; the audit log is read by
//! administrators and BS2000 administrators.

use super::users::{Role, User};
use crate::api::{Kind, Resource};
use crate::store::Store;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// get, list, watch.
    Read,
    /// POST of one object.
    Create,
    /// PUT of one object.
    Update,
    /// PATCH of one object.
    Patch,
    /// DELETE (one or a collection).
    Delete,
    /// The batch apply (CLI, GitOps, `/apply`).
    Apply,
    /// A write of `/status`.
    Status,
    /// Acknowledge events.
    Ack,
    /// A `sim` change of the simulated world.
    Sim,
    /// Confirm a held GitOps prune.
    Prune,
    /// Add, delete, rotate, list users.
    Users,
    /// Read the audit log.
    Audit,
}

impl Verb {
    /// The verb as the audit log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Read => "read",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Apply => "apply",
            Verb::Status => "status",
            Verb::Ack => "ack",
            Verb::Sim => "sim",
            Verb::Prune => "prune",
            Verb::Users => "user",
            Verb::Audit => "audit",
        }
    }

    /// All verbs (for the role matrix).
    pub const ALL: [Verb; 12] = [
        Verb::Read,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::Apply,
        Verb::Status,
        Verb::Ack,
        Verb::Sim,
        Verb::Prune,
        Verb::Users,
        Verb::Audit,
    ];
}

/// What a request acts on, with what authorization needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Kind (None for the non-object verbs: ack, sim, prune, users, audit).
    pub kind: Option<Kind>,
    /// Name (`-` when none).
    pub name: String,
    /// The BS2000 system (VMDefinition name) it concerns.
    pub system: Option<String>,
    /// The system's VM name (spec.vmName), which a right may name instead.
    pub vm_name: Option<String>,
    /// Server units it touches (for a migration: source and target).
    pub server_units: Vec<String>,
}

impl Target {
    /// A target that is no object (events, the world, users, ...).
    pub fn other(name: &str) -> Target {
        Target { kind: None, name: name.into(), system: None, vm_name: None, server_units: vec![] }
    }

    /// The kind as the audit log writes it.
    pub fn kind_str(&self, verb: Verb) -> String {
        match (self.kind, verb) {
            (Some(k), _) => k.as_str().to_string(),
            (None, Verb::Ack) => "Events".into(),
            (None, Verb::Sim) => "World".into(),
            (None, Verb::Prune) => "Sources".into(),
            (None, Verb::Users) => "User".into(),
            (None, Verb::Audit) => "AuditLog".into(),
            (None, _) => "-".into(),
        }
    }

    /// `kind/name` for messages.
    pub fn object(&self, verb: Verb) -> String {
        format!("{}/{}", self.kind_str(verb), self.name)
    }
}

/// Why a request is refused: the right that is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user {user:?} ({role}) may not {verb} {object}: missing {missing}")]
pub struct Denied {
    /// Who asked.
    pub user: String,
    /// Their role.
    pub role: Role,
    /// The verb.
    pub verb: &'static str,
    /// `Kind/name`.
    pub object: String,
    /// The right that is missing.
    pub missing: String,
}

/// Whether the kind is a BS2000 system's (operators may act on it with rights).
fn systems_kind(k: Kind) -> bool {
    matches!(k, Kind::VMDefinition | Kind::LiveMigration | Kind::VMRecovery)
}

/// The decision: Ok, or the missing right.
pub fn decide(user: &User, verb: Verb, t: &Target) -> Result<(), Denied> {
    let missing = check(user, verb, t);
    missing.map_or(Ok(()), |m| {
        Err(Denied {
            user: user.name.clone(),
            role: user.role,
            verb: verb.as_str(),
            object: t.object(verb),
            missing: m,
        })
    })
}

/// The missing right, if any.
fn check(user: &User, verb: Verb, t: &Target) -> Option<String> {
    let admin = || (user.role != Role::Administrator).then(|| "role administrator".to_string());
    match verb {
        Verb::Read | Verb::Ack => None,
        Verb::Audit => (user.role == Role::Operator).then(|| "role administrator or bs2000-admin".into()),
        Verb::Sim | Verb::Prune | Verb::Users | Verb::Status => admin(),
        Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::Apply => match t.kind {
            Some(k) if systems_kind(k) => match user.role {
                Role::Administrator | Role::Bs2000Admin => None,
                Role::Operator => operator(user, t),
            },
            _ => admin(),
        },
    }
}

/// An operator needs a right on the system and on every server unit touched.
fn operator(user: &User, t: &Target) -> Option<String> {
    let Some(sys) = &t.system else {
        return Some("a right on the system (the request names none)".into());
    };
    if !user.systems.iter().any(|s| s == sys || t.vm_name.as_ref() == Some(s)) {
        return Some(format!("right on system {sys}"));
    }
    if t.server_units.is_empty() {
        return Some(format!("right on the server units of {sys} (they cannot be resolved)"));
    }
    t.server_units
        .iter()
        .find(|su| !user.server_units.iter().any(|s| s == *su))
        .map(|su| format!("right on server unit {su}"))
}

/// The target of a write of `obj`: its system and the server units it touches, from
/// the object and what is stored (a VM's current SU; a migration's source is where
/// the VM is now, its target the given SU or the other SU of the VM's SU cluster).
pub fn target_of(store: &dyn Store, obj: &Resource) -> Target {
    target_with(&Reads::Each(store), obj)
}

/// The targets of many writes at once (an apply of a large file): the VM definitions and
/// SU clusters are listed once instead of read once per object (on etcd, 10,000 reads
/// were two round trips each). Same answers as `target_of` on each object.
pub fn targets_of(store: &dyn Store, objs: &[Resource]) -> Vec<Target> {
    if objs.len() < 16 {
        return objs.iter().map(|o| target_of(store, o)).collect();
    }
    let listed = match (store.list(Kind::VMDefinition), store.list(Kind::SUCluster)) {
        (Ok((vms, _)), Ok((clusters, _))) => {
            let vms = vms.into_iter().map(|v| (v.name().to_string(), v)).collect();
            Reads::Listed { vms, clusters }
        }
        _ => Reads::Each(store),
    };
    objs.iter().map(|o| target_with(&listed, o)).collect()
}

/// Where `target_with` reads stored objects: the store, per read, or one listing.
enum Reads<'a> {
    Each(&'a dyn Store),
    Listed { vms: std::collections::HashMap<String, Resource>, clusters: Vec<Resource> },
}

impl Reads<'_> {
    fn vm(&self, name: &str) -> Option<Resource> {
        match self {
            Reads::Each(store) => store.get(Kind::VMDefinition, name).ok().flatten(),
            Reads::Listed { vms, .. } => vms.get(name).cloned(),
        }
    }

    fn clusters(&self) -> Option<Vec<Resource>> {
        match self {
            Reads::Each(store) => store.list(Kind::SUCluster).ok().map(|(c, _)| c),
            Reads::Listed { clusters, .. } => Some(clusters.clone()),
        }
    }
}

fn target_with(store: &Reads, obj: &Resource) -> Target {
    let kind = obj.kind();
    let name = obj.name().to_string();
    let mut t = Target { kind: Some(kind), name: name.clone(), system: None, vm_name: None, server_units: vec![] };
    let add = |su: Option<String>, t: &mut Target| {
        if let Some(su) = su.filter(|s| !s.is_empty()) {
            if !t.server_units.contains(&su) {
                t.server_units.push(su);
            }
        }
    };
    match obj {
        Resource::VMDefinition(v) => {
            t.system = Some(name.clone());
            t.vm_name = Some(v.spec.vm_name.to_string());
            add(Some(v.spec.server_unit.to_string()), &mut t);
            add(v.status.server_unit.clone(), &mut t);
            if let Some(Resource::VMDefinition(cur)) = store.vm(&name) {
                add(Some(cur.spec.server_unit.to_string()), &mut t);
                add(cur.status.server_unit.clone(), &mut t);
            }
        }
        Resource::LiveMigration(lm) => {
            let vm = lm.spec.vm.to_string();
            t.system = Some(vm.clone());
            t.vm_name = vm_name_of(store, &vm);
            let source = current_su(store, &vm);
            let target = lm
                .spec
                .target_server_unit
                .as_ref()
                .map(|s| s.to_string())
                .or_else(|| source.as_deref().and_then(|src| partner_su(store, src)));
            add(source, &mut t);
            add(target, &mut t);
        }
        Resource::VMRecovery(r) => {
            let vm = r.spec.vm.to_string();
            t.system = Some(vm.clone());
            t.vm_name = vm_name_of(store, &vm);
            add(current_su(store, &vm), &mut t);
            add(Some(r.spec.target_server_unit.to_string()), &mut t);
        }
        Resource::SUCluster(c) => {
            for su in &c.spec.server_units {
                add(Some(su.to_string()), &mut t);
            }
        }
        _ => {}
    }
    t
}

/// Where a VM definition is now (its status, else its spec), if it exists.
fn current_su(store: &Reads, vm: &str) -> Option<String> {
    match store.vm(vm) {
        Some(Resource::VMDefinition(v)) => {
            v.status.server_unit.clone().or_else(|| Some(v.spec.server_unit.to_string()))
        }
        _ => None,
    }
}

/// A VM definition's VM name, if it exists.
fn vm_name_of(store: &Reads, vm: &str) -> Option<String> {
    match store.vm(vm) {
        Some(Resource::VMDefinition(v)) => Some(v.spec.vm_name.to_string()),
        _ => None,
    }
}

/// The other SU of the SU cluster that holds `su`.
fn partner_su(store: &Reads, su: &str) -> Option<String> {
    let clusters = store.clusters()?;
    clusters.iter().find_map(|c| match c {
        Resource::SUCluster(c) if c.spec.server_units.iter().any(|s| s.as_str() == su) => {
            c.spec.server_units.iter().map(|s| s.to_string()).find(|s| s != su)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, systems: &[&str], sus: &[&str]) -> User {
        User {
            name: "u".into(),
            role,
            systems: systems.iter().map(|s| s.to_string()).collect(),
            server_units: sus.iter().map(|s| s.to_string()).collect(),
            token_sha256: String::new(),
            created: String::new(),
        }
    }

    fn target(kind: Option<Kind>) -> Target {
        let (system, sus) = match kind {
            Some(k) if systems_kind(k) => (Some("vm1".to_string()), vec!["SU1".to_string(), "SU2".to_string()]),
            _ => (None, vec![]),
        };
        Target { kind, name: "x".into(), system, vm_name: None, server_units: sus }
    }

    /// The expected answer for each role, verb and kind, written out as the README's table.
    fn expected(role: Role, verb: Verb, kind: Option<Kind>) -> bool {
        use Role::*;
        match verb {
            Verb::Read | Verb::Ack => true,
            Verb::Audit => role != Operator,
            Verb::Sim | Verb::Prune | Verb::Users | Verb::Status => role == Administrator,
            _ => match kind {
                Some(Kind::VMDefinition | Kind::LiveMigration | Kind::VMRecovery) => true,
                _ => role == Administrator,
            },
        }
    }

    #[test]
    fn role_matrix() {
        // The operator here has rights on vm1 and both SUs.
        let full_operator = user(Role::Operator, &["vm1"], &["SU1", "SU2"]);
        let roles = [user(Role::Administrator, &[], &[]), user(Role::Bs2000Admin, &[], &[]), full_operator];
        let mut kinds: Vec<Option<Kind>> = Kind::ALL.iter().copied().map(Some).collect();
        kinds.push(None);
        let mut checked = 0;
        for u in &roles {
            for verb in Verb::ALL {
                for kind in &kinds {
                    let got = decide(u, verb, &target(*kind)).is_ok();
                    assert_eq!(got, expected(u.role, verb, *kind), "{} {} {:?}", u.role, verb.as_str(), kind);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * Verb::ALL.len() * (Kind::ALL.len() + 1));
    }

    #[test]
    fn operator_with_the_source_su_only_may_not_migrate() {
        let op = user(Role::Operator, &["vm1"], &["SU1"]);
        let lm = Target {
            kind: Some(Kind::LiveMigration),
            name: "lm1".into(),
            system: Some("vm1".into()),
            vm_name: Some("VM1".into()),
            server_units: vec!["SU1".into(), "SU2".into()],
        };
        let d = decide(&op, Verb::Create, &lm).unwrap_err();
        assert_eq!(d.missing, "right on server unit SU2");
        assert!(d.to_string().contains("may not create LiveMigration/lm1"), "{d}");
        // The right may name the VM name instead of the object name.
        assert!(decide(&user(Role::Operator, &["VM1"], &["SU1", "SU2"]), Verb::Create, &lm).is_ok());
        // Another system: refused, naming it.
        let other = user(Role::Operator, &["vm2"], &["SU1", "SU2"]);
        assert_eq!(decide(&other, Verb::Apply, &lm).unwrap_err().missing, "right on system vm1");
        // Unresolvable units: refused for operators, never allowed by default.
        let unknown = Target { server_units: vec![], ..lm.clone() };
        assert!(decide(&user(Role::Operator, &["vm1"], &["SU1", "SU2"]), Verb::Create, &unknown).is_err());
        assert!(decide(&user(Role::Bs2000Admin, &[], &[]), Verb::Create, &unknown).is_ok());
    }

    #[test]
    fn targets_of_many_from_one_listing_equal_target_of_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SledStore::open(dir.path()).unwrap();
        let yaml = |i: usize, su: &str| {
            format!("---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: vm{i}}}\nspec: {{vmName: V{i}, serverUnit: {su}, memoryMiB: 1024}}\n")
        };
        let decode = |text: String| -> Vec<Resource> {
            crate::manifest::decode("t.yaml", text.as_bytes()).unwrap().into_iter().map(|d| d.resource).collect()
        };
        let cluster = "---\napiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {name: c}\nspec: {serverUnits: [SU1, SU2]}\n";
        // Stored: 10 VMs on SU1 and the cluster; applied: the same VMs moved to SU3,
        // 10 new ones, and migrations of stored, new and unknown VMs.
        let stored: String = (0..10).map(|i| yaml(i, "SU1")).collect::<String>() + cluster;
        store.apply(decode(stored), false).unwrap();
        let mut text: String = (0..20).map(|i| yaml(i, "SU3")).collect();
        for (i, vm) in ["vm1", "vm15", "nothing"].iter().enumerate() {
            text += &format!("---\napiVersion: sectl.io/v1alpha1\nkind: LiveMigration\nmetadata: {{name: m{i}}}\nspec: {{vm: {vm}}}\n");
        }
        let objs = decode(text);
        let each: Vec<Target> = objs.iter().map(|o| target_of(&store, o)).collect();
        assert_eq!(targets_of(&store, &objs), each);
        assert_eq!(each[1].server_units, vec!["SU3", "SU1"], "the stored SU counts too");
        assert_eq!(each[20].server_units, vec!["SU1", "SU2"], "a migration's partner SU from the cluster");
    }
}
