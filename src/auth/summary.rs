//! The dashboard count (s2.3.3): unacknowledged events per priority. Events are
//! acknowledged in total only (the manual: "cannot be acknowledged individually");
//! this is what SE Manager's dashboard tile shows.

use crate::store::Event;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The priorities in the order SE Manager shows them.
pub const PRIORITIES: [&str; 5] = ["CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO"];

/// Unacknowledged events per priority (every known priority present, 0 when none;
/// an unknown priority is counted under its own name) and the total.
pub fn unacknowledged(events: &[Event]) -> Value {
    let mut by: BTreeMap<String, u64> = PRIORITIES.iter().map(|p| (p.to_string(), 0)).collect();
    let mut total = 0;
    for e in events.iter().filter(|e| !e.acknowledged) {
        *by.entry(e.priority.clone()).or_default() += 1;
        total += 1;
    }
    let mut ordered = serde_json::Map::new();
    for p in PRIORITIES {
        ordered.insert(p.into(), json!(by.remove(p).unwrap_or(0)));
    }
    for (p, n) in by {
        ordered.insert(p, json!(n));
    }
    json!({"unacknowledged": ordered, "total": total})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventType;

    fn ev(priority: &str, acknowledged: bool) -> Event {
        Event {
            seq: 0,
            time: String::new(),
            type_: EventType::Normal,
            priority: priority.into(),
            component: "Cluster".into(),
            object: "x".into(),
            reason: "R".into(),
            message: "m".into(),
            acknowledged,
        }
    }

    #[test]
    fn counts_only_unacknowledged() {
        let v = unacknowledged(&[ev("ERROR", false), ev("ERROR", false), ev("INFO", true), ev("WARNING", false)]);
        assert_eq!(v["unacknowledged"]["ERROR"], 2);
        assert_eq!(v["unacknowledged"]["INFO"], 0);
        assert_eq!(v["unacknowledged"]["WARNING"], 1);
        assert_eq!(v["total"], 3);
    }
}
