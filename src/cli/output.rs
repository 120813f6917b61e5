//! Rendering objects for people (tables, describe) and scripts (JSON, YAML lists).

use super::Format;
use crate::api::{Kind, Resource};
use crate::manifest;
use crate::store::Event;
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use serde_json::json;

/// Prints objects as JSON or YAML: one object as itself, several as a List.
pub fn print_objects(objs: &[Resource], format: Format, single: bool) {
    let value = if single && objs.len() == 1 {
        serde_json::to_value(&objs[0]).expect("serialises")
    } else {
        json!({"apiVersion": "v1", "kind": "List", "items": objs})
    };
    match format {
        Format::Yaml => print!("{}", manifest::to_yaml(&value)),
        _ => println!("{}", serde_json::to_string_pretty(&value).expect("serialises")),
    }
}

fn plain_table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header);
    for c in t.column_iter_mut() {
        c.set_padding((0, 3));
        c.set_cell_alignment(CellAlignment::Left);
    }
    t
}

fn finish(mut t: Table) -> String {
    // The NOTHING preset leaves padding at the line ends; trim it.
    for c in t.column_iter_mut() {
        c.set_padding((0, 3));
    }
    let mut s: String = t.lines().map(|l| l.trim_end().to_string() + "\n").collect();
    if s.is_empty() {
        s.push('\n');
    }
    s
}

/// A compact age like kubectl's: 45s, 12m, 5h, 3d.
pub fn age(ts: Option<&str>) -> String {
    let Some(t) = ts.and_then(|t| humantime::parse_rfc3339(t).ok()) else { return "-".into() };
    let secs = std::time::SystemTime::now().duration_since(t).map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

fn mib(n: u64) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}Gi", n / 1024)
    } else {
        format!("{n}Mi")
    }
}

fn ms(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x < 10_000 => format!("{x}ms"),
        Some(x) => format!("{:.1}s", x as f64 / 1000.0),
    }
}

/// The column names of `kind`'s table (with `-o wide`: more of them).
pub fn header(kind: Kind, wide: bool) -> Vec<&'static str> {
    match (kind, wide) {
        (Kind::SEServer, false) => vec!["NAME", "MODEL", "VERSION", "LOCATION", "MUS", "SUS", "AGE"],
        (Kind::SEServer, true) => {
            vec!["NAME", "MODEL", "VERSION", "LOCATION", "MUS", "SUS", "UNITS-ON", "NET-GBPS", "AGE"]
        }
        (Kind::ManagementCluster, false) => vec!["NAME", "SERVERS", "STATE", "CLUSTER-MANAGER", "AGE"],
        (Kind::ManagementCluster, true) => {
            vec!["NAME", "SERVERS", "STATE", "CLUSTER-MANAGER", "ISL-E-GBPS", "DISKS", "REASONS", "AGE"]
        }
        (Kind::SUCluster, false) => vec!["NAME", "SERVER-UNITS", "TYPE", "ACTIVE", "STATE", "AGE"],
        (Kind::SUCluster, true) => vec!["NAME", "SERVER-UNITS", "TYPE", "ACTIVE", "STATE", "REASONS", "AGE"],
        (Kind::VMDefinition, false) => vec!["NAME", "VM-NAME", "SU", "STATE", "MEMORY", "LM-COUNT", "AGE"],
        (Kind::VMDefinition, true) => {
            vec![
                "NAME",
                "VM-NAME",
                "SU",
                "INDEX",
                "STATE",
                "DESIRED",
                "SUBSTATES",
                "MEMORY",
                "CPUS",
                "POOL",
                "PERSISTENT",
                "LM-COUNT",
                "AGE",
            ]
        }
        (Kind::LiveMigration, false) => vec!["NAME", "VM", "SOURCE", "TARGET", "PHASE", "MONJV", "DOWNTIME", "AGE"],
        (Kind::LiveMigration, true) => {
            vec![
                "NAME",
                "VM",
                "SOURCE",
                "TARGET",
                "CHECK-ONLY",
                "PHASE",
                "MONJV",
                "ROUNDS",
                "DOWNTIME",
                "DURATION",
                "CONFLICTS",
                "AGE",
            ]
        }
        (Kind::VMRecovery, _) => vec!["NAME", "VM", "TARGET", "PHASE", "AGE"],
    }
}

/// The cells of one object's row, in the order of `header(kind, wide)`.
pub fn row(r: &Resource, wide: bool) -> Vec<String> {
    let age = age(r.meta().creation_timestamp.as_deref());
    match r {
        Resource::SEServer(o) => {
            let s = &o.spec;
            let mut row = vec![
                o.name().to_string(),
                s.model.clone(),
                s.version.to_string(),
                if s.location.is_empty() { "-".into() } else { s.location.clone() },
                s.management_units.len().to_string(),
                s.server_units.len().to_string(),
            ];
            if wide {
                let on = o.status.units.iter().filter(|u| u.power == "ON").count();
                row.push(if o.status.units.is_empty() { "-".into() } else { format!("{on}/{}", o.status.units.len()) });
                row.push(format!("{}", s.net_unit.speed_gbps.gbps()));
            }
            row.push(age);
            row
        }
        Resource::ManagementCluster(o) => {
            let mut row = vec![
                o.name().to_string(),
                o.spec.servers.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
                opt(&o.status.state),
                opt(&o.status.cluster_manager),
            ];
            if wide {
                row.push(o.spec.isl_e.as_ref().map(|i| i.bandwidth_gbps.to_string()).unwrap_or_else(|| "-".into()));
                row.push(o.spec.config_disks.len().to_string());
                row.push(if o.status.reasons.is_empty() { "-".into() } else { o.status.reasons.join("; ") });
            }
            row.push(age);
            row
        }
        Resource::SUCluster(o) => {
            let mut row = vec![
                o.name().to_string(),
                o.spec.server_units.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
                opt(&o.status.su_type),
                o.spec.active.to_string(),
                opt(&o.status.state),
            ];
            if wide {
                row.push(if o.status.reasons.is_empty() { "-".into() } else { o.status.reasons.join("; ") });
            }
            row.push(age);
            row
        }
        Resource::VMDefinition(o) => {
            let s = &o.spec;
            let st = &o.status;
            let su = st.server_unit.clone().unwrap_or_else(|| format!("({})", s.server_unit));
            let mut row = vec![o.name().to_string(), s.vm_name.to_string(), su];
            if wide {
                row.push(st.vm_index.map(|i| i.to_string()).unwrap_or_else(|| s.vm_index.to_string()));
            }
            row.push(opt(&st.state));
            if wide {
                row.push(s.state.to_string());
                row.push(if st.substates.is_empty() { "-".into() } else { st.substates.join(",") });
            }
            row.push(mib(s.memory_mi_b.get()));
            if wide {
                row.push(s.cpus.to_string());
                row.push(s.cpu_pool.to_string());
                row.push(s.persistent.to_string());
            }
            row.push(st.live_migration_count.to_string());
            row.push(age);
            row
        }
        Resource::LiveMigration(o) => {
            let st = &o.status;
            let mut row = vec![
                o.name().to_string(),
                o.spec.vm.to_string(),
                opt(&st.source_server_unit),
                st.target_server_unit
                    .clone()
                    .or(o.spec.target_server_unit.as_ref().map(|t| t.to_string()))
                    .unwrap_or_else(|| "-".into()),
            ];
            if wide {
                row.push(o.spec.check_only.to_string());
            }
            row.push(st.phase.to_string());
            row.push(opt(&st.monjv));
            if wide {
                row.push(st.rounds.len().to_string());
            }
            row.push(ms(st.downtime_ms));
            if wide {
                row.push(ms(st.duration_ms));
                row.push(if st.conflicts.is_empty() {
                    "-".into()
                } else {
                    st.conflicts.iter().map(|c| c.reason.clone()).collect::<Vec<_>>().join(",")
                });
            }
            row.push(age);
            row
        }
        Resource::VMRecovery(o) => vec![
            o.name().to_string(),
            o.spec.vm.to_string(),
            o.spec.target_server_unit.to_string(),
            o.status.phase.to_string(),
            age,
        ],
    }
}

/// The table of `objs` (all of `kind`).
pub fn table(kind: Kind, objs: &[Resource], wide: bool) -> String {
    let mut t = plain_table(header(kind, wide));
    for r in objs {
        t.add_row(row(r, wide));
    }
    finish(t)
}

/// The event log as a table.
pub fn events_table(evs: &[Event]) -> String {
    let mut t = plain_table(vec!["SEQ", "TIME", "TYPE", "PRIORITY", "COMPONENT", "OBJECT", "REASON", "MESSAGE", "ACK"]);
    for e in evs {
        t.add_row(vec![
            e.seq.to_string(),
            e.time.clone(),
            format!("{:?}", e.type_),
            e.priority.clone(),
            e.component.clone(),
            e.object.clone(),
            e.reason.clone(),
            e.message.clone(),
            if e.acknowledged { "yes".into() } else { "no".into() },
        ]);
    }
    finish(t)
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// `sectl describe`: one object for people.
pub fn describe(r: &Resource, events: &[Event]) -> String {
    let m = r.meta();
    let mut out = String::new();
    out.push_str(&format!("Name:               {}\n", m.name));
    out.push_str(&format!("Kind:               {}\n", r.kind()));
    let kv = |map: &crate::api::StringMap| {
        if map.is_empty() {
            "<none>".to_string()
        } else {
            map.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        }
    };
    out.push_str(&format!("Labels:             {}\n", kv(&m.labels)));
    out.push_str(&format!("Annotations:        {}\n", kv(&m.annotations)));
    out.push_str(&format!("UID:                {}\n", opt(&m.uid)));
    out.push_str(&format!("Resource Version:   {}\n", opt(&m.resource_version)));
    out.push_str(&format!("Generation:         {}\n", opt(&m.generation)));
    out.push_str(&format!("Created:            {}\n", opt(&m.creation_timestamp)));
    out.push_str("Spec:\n");
    out.push_str(&indent(&manifest::to_yaml(&r.spec_json()), 2));
    let mut status = r.status_json();
    let conditions = status.as_object_mut().and_then(|o| o.remove("conditions"));
    out.push_str("Status:\n");
    if status.as_object().is_none_or(|o| o.is_empty()) {
        out.push_str("  <none yet>\n");
    } else {
        out.push_str(&indent(&manifest::to_yaml(&status), 2));
    }
    out.push_str("Conditions:\n");
    match conditions.and_then(|c| serde_json::from_value::<Vec<crate::api::Condition>>(c).ok()) {
        Some(cs) if !cs.is_empty() => {
            let mut t = plain_table(vec!["TYPE", "STATUS", "REASON", "MESSAGE", "LAST-TRANSITION"]);
            for c in cs {
                t.add_row(vec![
                    c.type_,
                    format!("{:?}", c.status),
                    c.reason,
                    c.message,
                    c.last_transition_time.unwrap_or_default(),
                ]);
            }
            out.push_str(&indent(&finish(t), 2));
        }
        _ => out.push_str("  <none>\n"),
    }
    out.push_str("Events:\n");
    if events.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let recent: Vec<Event> = events.iter().rev().take(10).rev().cloned().collect();
        let mut t = plain_table(vec!["TIME", "TYPE", "PRIORITY", "COMPONENT", "REASON", "MESSAGE"]);
        for e in recent {
            t.add_row(vec![e.time, format!("{:?}", e.type_), e.priority, e.component, e.reason, e.message]);
        }
        out.push_str(&indent(&finish(t), 2));
    }
    out
}
