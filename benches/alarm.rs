//! Benchmark of alarm delivery, run with `cargo bench --bench alarm`: the time from
//! an event being committed to the store until its trap is in the log of a real
//! `snmptrapd` on loopback. The delivery thread is the one `sectl serve` runs
//! (`alarm::Delivery`) on a sled store in a temporary folder; one SNMP receiver
//! (component ANY, weight ANY). 200 events, one at a time: each is recorded, then
//! the trap log is polled (every 0.2 ms) until the trap with its sequence number is
//! there. Prints p50, p99 and max. Needs `snmptrapd` (Debian package).

#[allow(dead_code)] // the mail server is the tests'
#[path = "../tests/common/receivers.rs"]
mod receivers;

use sectl::api::Resource;
use sectl::store::{Event, EventType, SledStore, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENTS: usize = 200;

fn main() {
    let trapd = receivers::Trapd::start(receivers::free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
    let doc = serde_json::json!({"apiVersion": "sectl.io/v1alpha1", "kind": "AlarmReceiver", "metadata": {"name": "station"},
        "spec": {"snmp": {"host": "127.0.0.1", "port": trapd.port, "community": "public"}}});
    store.create(Resource::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap()).unwrap();
    let delivery = sectl::alarm::Delivery::start(store.clone()).unwrap();
    // Let the delivery thread see the receiver (its cursor starts at the newest event).
    let deadline = Instant::now() + receivers::LIMIT;
    while store.read_state(sectl::alarm::CURSOR_PREFIX).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the delivery thread never saw the receiver");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut lat = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let t0 = Instant::now();
        let ev = store
            .record_event(Event {
                seq: 0,
                time: "2026-01-01T00:00:00Z".into(),
                type_: EventType::Warning,
                priority: "WARNING".into(),
                component: "Cluster".into(),
                object: "ManagementCluster/mc".into(),
                reason: "Bench".into(),
                message: format!("event {i}"),
                acknowledged: false,
            })
            .unwrap();
        let want = format!("Counter64: {}", ev.seq);
        let deadline = t0 + receivers::LIMIT;
        loop {
            let traps = trapd.traps();
            if traps.iter().any(|t| receivers::varbind(t, ".1.3.6.1.4.1.32473.1.2.1.0") == Some(want.as_str())) {
                break;
            }
            assert!(Instant::now() < deadline, "trap for event {} never arrived", ev.seq);
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t0.elapsed());
    }
    delivery.shutdown();
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!("alarm: event committed -> trap logged by snmptrapd, {EVENTS} events, one at a time");
    println!("  p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms", ms(p(0.50)), ms(p(0.99)), ms(*lat.last().unwrap()));
}
