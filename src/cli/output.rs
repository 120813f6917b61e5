//! Tables for people: `get` columns per kind, the event log, plain tables; the
//! helpers `describe.rs` uses to lay out one object.

use crate::api::{Kind, Resource};
use crate::store::Event;
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

/// A plain table of strings (custom columns, sources).
pub fn simple_table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = plain_table(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    finish(t)
}

pub fn plain_table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header);
    for c in t.column_iter_mut() {
        c.set_padding((0, 3));
        c.set_cell_alignment(CellAlignment::Left);
    }
    t
}

pub fn finish(mut t: Table) -> String {
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

pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

fn mib(n: u64) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}Gi", n / 1024)
    } else {
        format!("{n}Mi")
    }
}

pub fn ms(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x < 10_000 => format!("{x}ms"),
        Some(x) => format!("{:.1}s", x as f64 / 1000.0),
    }
}

/// The table of `objs` (all of `kind`); `qualify` writes names as `kind/name`, as
/// kubectl does when several kinds are listed.
pub fn table(kind: Kind, objs: &[Resource], wide: bool, qualify: bool) -> String {
    let (header, rows) = cells(kind, objs, wide, qualify);
    simple_table(&header, rows)
}

/// The column names of `kind`'s table (with `-o wide`: more of them); the API's
/// Table form uses the same.
pub fn header(kind: Kind, wide: bool) -> Vec<&'static str> {
    cells(kind, &[], wide, false).0
}

/// The cells of one object's row.
pub fn row(r: &Resource, wide: bool) -> Vec<String> {
    cells(r.kind(), std::slice::from_ref(r), wide, false).1.pop().unwrap_or_default()
}

/// The header and the cells of `table`.
pub fn cells(kind: Kind, objs: &[Resource], wide: bool, qualify: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header: Vec<&str> = match (kind, wide) {
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
        (Kind::AlarmReceiver, false) => {
            vec!["NAME", "TYPE", "TARGET", "COMPONENTS", "MIN-WEIGHT", "SENT", "FAILED", "AGE"]
        }
        (Kind::AlarmReceiver, true) => vec![
            "NAME",
            "TYPE",
            "TARGET",
            "COMPONENTS",
            "MIN-WEIGHT",
            "SENT",
            "FAILED",
            "PENDING",
            "DELIVERED-SEQ",
            "LAST-ERROR",
            "AGE",
        ],
    };
    let mut rows = Vec::new();
    for r in objs {
        let age = age(r.meta().creation_timestamp.as_deref());
        let row: Vec<String> = match r {
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
                    row.push(if o.status.units.is_empty() {
                        "-".into()
                    } else {
                        format!("{on}/{}", o.status.units.len())
                    });
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
            Resource::AlarmReceiver(o) => {
                let (s, st) = (&o.spec, &o.status);
                let comps: Vec<&str> = s.filter.components.iter().map(|c| c.as_str()).collect();
                let mut row = vec![
                    o.name().to_string(),
                    crate::alarm::target_type(s).to_string(),
                    crate::alarm::target_text(s),
                    comps.join(","),
                    s.filter.min_weight.as_str().to_string(),
                    st.sent.to_string(),
                    st.failed.to_string(),
                ];
                if wide {
                    row.push(st.pending.to_string());
                    row.push(st.delivered_seq.to_string());
                    row.push(st.last_error.clone().unwrap_or_else(|| "-".into()));
                }
                row.push(age);
                row
            }
        };
        let mut row = row;
        if qualify {
            row[0] = format!("{}/{}", kind.lower(), row[0]);
        }
        rows.push(row);
    }
    (header, rows)
}

/// Rows of a table whose later rows arrive one by one (`get -w`): each column is as
/// wide as the widest cell seen so far, at least 12, so the first rows line up with
/// the header even when the list started empty.
pub struct Aligned {
    widths: Vec<usize>,
}

impl Aligned {
    /// Widths from the header and the first rows.
    pub fn new(header: &[&str], rows: &[Vec<String>]) -> Aligned {
        let mut widths: Vec<usize> = header.iter().map(|h| h.len().max(12)).collect();
        for r in rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        Aligned { widths }
    }

    /// One line, cells padded to the widths (3 spaces between columns).
    pub fn line<S: AsRef<str>>(&self, cells: &[S]) -> String {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let c = c.as_ref();
            if i + 1 < cells.len() {
                let w = self.widths.get(i).copied().unwrap_or(0);
                out.push_str(&format!("{c:<w$}   "));
            } else {
                out.push_str(c);
            }
        }
        out
    }
}

/// The event log as a table.
pub fn events_table(evs: &[Event]) -> String {
    let mut t = plain_table(vec![
        "SEQ",
        "SIMULATED-TIME",
        "TYPE",
        "PRIORITY",
        "COMPONENT",
        "OBJECT",
        "REASON",
        "MESSAGE",
        "ACK",
    ]);
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
