//! What the pages and pictures show: the objects of a site as JSON values, read once
//! per render. The UI reads the same status fields scripts read (`shared/API.md`), so
//! the dashboard can never show something the API does not report.
//!
//! `Site` is filled from lists of `Resource`s, so `serve` (from its store) and the CLI
//! (`sectl plot`, through its backend: embedded store or `--server`) draw alike.

use crate::api::{Kind, Resource};
use crate::store::Event;
use serde_json::Value;

/// The objects of a site (only the kinds a view asked for are filled).
#[derive(Debug, Default, Clone)]
pub struct Site {
    /// SEServers.
    pub servers: Vec<Value>,
    /// ManagementClusters.
    pub mcs: Vec<Value>,
    /// SUClusters.
    pub sucs: Vec<Value>,
    /// VMDefinitions.
    pub vms: Vec<Value>,
    /// LiveMigrations.
    pub lms: Vec<Value>,
    /// The event log.
    pub events: Vec<Event>,
}

/// A migration still moving (arrows, "in flight" lists).
pub fn in_flight(lm: &Value) -> bool {
    matches!(text(lm, "/status/phase"), "Setup" | "Copying" | "Suspended" | "PostTreatment")
}

/// The string at a JSON pointer, or "".
pub fn text<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The array at a JSON pointer, or empty.
pub fn items<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The name of an object.
pub fn name(v: &Value) -> &str {
    text(v, "/metadata/name")
}

impl Site {
    /// Fills the kinds asked for with `list`, and the events when `events` is Some.
    pub fn load<E>(
        kinds: &[Kind],
        mut list: impl FnMut(Kind) -> Result<Vec<Resource>, E>,
        events: Option<Vec<Event>>,
    ) -> Result<Site, E> {
        let mut site = Site { events: events.unwrap_or_default(), ..Site::default() };
        for &k in kinds {
            let vals: Vec<Value> = list(k)?.iter().filter_map(|r| serde_json::to_value(r).ok()).collect();
            match k {
                Kind::SEServer => site.servers = vals,
                Kind::ManagementCluster => site.mcs = vals,
                Kind::SUCluster => site.sucs = vals,
                Kind::VMDefinition => site.vms = vals,
                Kind::LiveMigration => site.lms = vals,
                _ => {}
            }
        }
        Ok(site)
    }

    /// A unit's (MU, SU, HNC) status line from its SEServer: (power, state).
    pub fn unit(&self, unit: &str) -> (&str, &str) {
        self.servers
            .iter()
            .flat_map(|s| items(s, "/status/units"))
            .find(|u| text(u, "/name") == unit)
            .map(|u| (text(u, "/power"), text(u, "/state")))
            .unwrap_or(("", ""))
    }

    /// Unacknowledged events per priority, most severe first (all five priorities).
    pub fn unacknowledged(&self) -> Vec<(&'static str, usize)> {
        PRIORITIES
            .iter()
            .map(|p| (*p, self.events.iter().filter(|e| !e.acknowledged && e.priority == *p).count()))
            .collect()
    }
}

/// Event priorities as the SE Manager shows them, most severe first.
pub const PRIORITIES: [&str; 5] = ["CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO"];
