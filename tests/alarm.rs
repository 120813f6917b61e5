//! Issue 13, alarm management (manual s2.3.4) against real receivers: traps checked
//! at Debian's `snmptrapd`, mails read from a local `aiosmtpd`. The outbox on a store
//! in a temporary folder (filters, receivers down then up, the V6.2 note), and end to
//! end: embedded verbs deliver once at their end; `sectl serve` killed with SIGKILL
//! while a receiver is down loses nothing and sends nothing twice after a restart.

#[path = "common/receivers.rs"]
mod receivers;

use receivers::{free_tcp_port, free_udp_port, varbind, Smtpd, Trapd, LIMIT};
use sectl::alarm::Outbox;
use sectl::api::{AlarmReceiverSpec, Kind, Resource};
use sectl::store::{Event, EventType, SledStore, Store};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const E: &str = ".1.3.6.1.4.1.32473.1";

fn open() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
    (dir, s)
}

fn receiver(store: &dyn Store, name: &str, spec: Value) {
    let doc =
        json!({"apiVersion": "sectl.io/v1alpha1", "kind": "AlarmReceiver", "metadata": {"name": name}, "spec": spec});
    let r = Resource::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
    store.create(r).unwrap();
}

fn snmp(port: u16) -> Value {
    json!({"host": "127.0.0.1", "port": port, "community": "public"})
}

fn mail(port: u16) -> Value {
    json!({"smtpHost": "127.0.0.1", "smtpPort": port, "from": "sem@site.example", "to": ["ops@site.example", "oncall@site.example"]})
}

fn event(store: &dyn Store, priority: &str, component: &str, object: &str, message: &str) -> Event {
    store
        .record_event(Event {
            seq: 0,
            time: "2026-01-01T00:00:00Z".into(),
            type_: if priority == "INFO" { EventType::Normal } else { EventType::Warning },
            priority: priority.into(),
            component: component.into(),
            object: object.into(),
            reason: "TestEvent".into(),
            message: message.into(),
            acknowledged: false,
        })
        .unwrap()
}

fn status(store: &dyn Store, name: &str) -> sectl::api::AlarmReceiverStatus {
    let r = store.get(Kind::AlarmReceiver, name).unwrap().unwrap();
    r.as_typed::<AlarmReceiverSpec>().unwrap().status.clone()
}

/// An outbox that tries each receiver at every pass (no back-off wait), as an
/// embedded verb does.
fn outbox(store: &Arc<dyn Store>) -> Outbox {
    let mut o = Outbox::new(store.clone());
    o.eager = true;
    o
}

/// The event seq a mail carries (its body's `Event:` line).
fn mail_seq(m: &str) -> u64 {
    m.lines()
        .find_map(|l| l.strip_prefix("Event:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Event: line in\n{m}"))
}

#[test]
fn trap_carries_enterprise_oid_and_the_event() {
    let trapd = Trapd::start(free_udp_port());
    let (_d, store) = open();
    receiver(
        store.as_ref(),
        "station",
        json!({"snmp": snmp(trapd.port), "filter": {"components": ["ANY"], "minWeight": "ANY"}}),
    );
    let mut ob = outbox(&store);
    // Events before the receiver was first seen are not its business.
    event(store.as_ref(), "INFO", "Cluster", "ManagementCluster/mc", "before");
    ob.pass().unwrap();
    let ev = event(
        store.as_ref(),
        "WARNING",
        "Cluster",
        "ManagementCluster/mc",
        "MU abgwhite does not answer the heartbeat",
    );
    let p = ob.pass().unwrap();
    assert_eq!((p.sent, p.failed), (1, 0));
    let traps = trapd.wait_for(1);
    assert_eq!(traps.len(), 1, "{traps:?}");
    let t = &traps[0];
    assert_eq!(t[0].0, ".1.3.6.1.2.1.1.3.0", "sysUpTime.0 first: {t:?}");
    assert!(t[0].1.starts_with("Timeticks:"), "{t:?}");
    assert_eq!(varbind(t, ".1.3.6.1.6.3.1.1.4.1.0"), Some(format!("OID: {E}.0.1").as_str()), "snmpTrapOID.0");
    assert_eq!(varbind(t, &format!("{E}.2.1.0")), Some(format!("Counter64: {}", ev.seq).as_str()));
    assert_eq!(varbind(t, &format!("{E}.2.2.0")), Some("STRING: \"WARNING\""));
    assert_eq!(varbind(t, &format!("{E}.2.3.0")), Some("STRING: \"Cluster\""));
    assert_eq!(varbind(t, &format!("{E}.2.4.0")), Some("STRING: \"ManagementCluster/mc\""));
    assert_eq!(varbind(t, &format!("{E}.2.5.0")), Some("STRING: \"MU abgwhite does not answer the heartbeat\""));
    assert_eq!(varbind(t, &format!("{E}.2.6.0")), Some("STRING: \"TestEvent\""));
    assert_eq!(varbind(t, ".1.3.6.1.6.3.1.1.4.3.0"), Some(format!("OID: {E}").as_str()), "snmpTrapEnterprise.0");
    let st = status(store.as_ref(), "station");
    assert_eq!((st.sent, st.failed, st.delivered_seq, st.pending), (1, 0, ev.seq, 0));
    // Nothing new: nothing sent again.
    assert_eq!(ob.pass().unwrap().sent, 0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(trapd.traps().len(), 1);
}

#[test]
fn mail_reaches_the_smtp_server() {
    let smtpd = Smtpd::start(free_tcp_port());
    let (_d, store) = open();
    receiver(store.as_ref(), "ops", json!({"mail": mail(smtpd.port)}));
    let mut ob = outbox(&store);
    ob.pass().unwrap();
    let ev = event(store.as_ref(), "ERROR", "Sys-Mgmt", "VMDefinition/vm12prod", "live migration aborted");
    assert_eq!(ob.pass().unwrap().sent, 1);
    let mails = smtpd.wait_for(1);
    let m = &mails[0];
    assert!(m.contains("From: sem@site.example"), "{m}");
    assert!(m.contains("ops@site.example") && m.contains("oncall@site.example"), "{m}");
    assert!(m.contains("Subject: [sectl ERROR] Sys-Mgmt VMDefinition/vm12prod: TestEvent"), "{m}");
    assert!(m.contains("live migration aborted"), "{m}");
    assert_eq!(mail_seq(m), ev.seq);
    assert_eq!(status(store.as_ref(), "ops").sent, 1);
}

/// The manual's example (s2.3.4): traps for component ANY and weight ANY to a
/// management station; mails for Sys-Mgmt with weight >= WARNING.
#[test]
fn filter_by_component_and_weight_as_in_the_manual() {
    let trapd = Trapd::start(free_udp_port());
    let smtpd = Smtpd::start(free_tcp_port());
    let (_d, store) = open();
    receiver(
        store.as_ref(),
        "station",
        json!({"snmp": snmp(trapd.port), "filter": {"components": ["ANY"], "minWeight": "ANY"}}),
    );
    receiver(
        store.as_ref(),
        "sysmgmt",
        json!({"mail": mail(smtpd.port), "filter": {"components": ["Sys-Mgmt"], "minWeight": "WARNING"}}),
    );
    let mut ob = outbox(&store);
    ob.pass().unwrap();
    let wanted = event(store.as_ref(), "WARNING", "Sys-Mgmt", "VMDefinition/a", "sys-mgmt warning");
    event(store.as_ref(), "INFO", "Sys-Mgmt", "VMDefinition/b", "sys-mgmt info: too light");
    event(store.as_ref(), "ERROR", "Cluster", "SUCluster/c", "cluster error: other component");
    let critical = event(store.as_ref(), "CRITICAL", "Sys-Mgmt", "VMDefinition/d", "sys-mgmt critical");
    let p = ob.pass().unwrap();
    assert_eq!((p.sent, p.failed), (6, 0));
    assert_eq!(trapd.wait_for(4).len(), 4);
    let mails = smtpd.wait_for(2);
    std::thread::sleep(Duration::from_millis(300));
    let mails_after = smtpd.mails();
    assert_eq!(mails_after.len(), 2, "only the two matching events are mailed: {mails:?}");
    let mut seqs: Vec<u64> = mails_after.iter().map(|m| mail_seq(m)).collect();
    seqs.sort();
    assert_eq!(seqs, vec![wanted.seq, critical.seq]);
    // The filtered events still move the cursor: nothing is pending.
    let st = status(store.as_ref(), "sysmgmt");
    assert_eq!((st.sent, st.delivered_seq, st.pending), (2, critical.seq, 0));
}

#[test]
fn mail_receiver_down_then_up_delivers_everything_once() {
    let port = free_tcp_port();
    let (_d, store) = open();
    receiver(store.as_ref(), "ops", json!({"mail": mail(port)}));
    let mut ob = outbox(&store);
    ob.pass().unwrap();
    let evs: Vec<Event> =
        (0..5).map(|i| event(store.as_ref(), "WARNING", "Cluster", "SUCluster/su", &format!("e{i}"))).collect();
    // Down: nothing on the port.
    for _ in 0..3 {
        let p = ob.pass().unwrap();
        assert_eq!((p.sent, p.failed), (0, 1));
    }
    let st = status(store.as_ref(), "ops");
    assert_eq!((st.sent, st.failed, st.pending), (0, 3, 5));
    assert!(st.last_error.as_deref().is_some_and(|e| e.contains(&format!("127.0.0.1:{port}"))), "{st:?}");
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.reason.as_str(), ready.status), ("DeliveryFailing", sectl::api::ConditionStatus::False));
    // Up.
    let smtpd = Smtpd::start(port);
    let p = ob.pass().unwrap();
    assert_eq!((p.sent, p.failed), (5, 0));
    let mails = smtpd.wait_for(5);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(smtpd.mails().len(), 5);
    let seqs: Vec<u64> = mails.iter().map(|m| mail_seq(m)).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(sorted, evs.iter().map(|e| e.seq).collect::<Vec<_>>(), "each event once");
    let st = status(store.as_ref(), "ops");
    assert_eq!((st.sent, st.failed, st.pending), (5, 3, 0));
    assert_eq!(st.conditions.iter().find(|c| c.type_ == "Ready").unwrap().reason, "Delivered");
}

#[test]
fn trap_receiver_down_then_up_delivers_everything_once() {
    let port = free_udp_port();
    let (_d, store) = open();
    receiver(store.as_ref(), "station", json!({"snmp": snmp(port)}));
    let mut ob = outbox(&store);
    ob.pass().unwrap();
    let evs: Vec<Event> =
        (0..3).map(|i| event(store.as_ref(), "ERROR", "Net", "SEServer/se701", &format!("t{i}"))).collect();
    // Down: the port is closed, the ICMP refusal counts as a failure.
    let p = ob.pass().unwrap();
    assert_eq!((p.sent, p.failed), (0, 1));
    assert!(status(store.as_ref(), "station").last_error.unwrap().contains("refused"));
    let trapd = Trapd::start(port);
    assert_eq!(ob.pass().unwrap().sent, 3);
    let traps = trapd.wait_for(3);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(trapd.traps().len(), 3);
    let seqs: Vec<String> = traps.iter().map(|t| varbind(t, &format!("{E}.2.1.0")).unwrap().to_string()).collect();
    assert_eq!(seqs, evs.iter().map(|e| format!("Counter64: {}", e.seq)).collect::<Vec<_>>(), "in order, once each");
}

/// Manual s2.5: receivers created on V6.2 act as component ANY; when the Cluster
/// Manager runs on a V6.2 MU, alarms go out regardless of the components specified.
#[test]
fn v62_receivers_and_a_v62_cluster_manager_ignore_components() {
    let smtpd = Smtpd::start(free_tcp_port());
    let (_d, store) = open();
    receiver(
        store.as_ref(),
        "v63",
        json!({"mail": mail(smtpd.port), "filter": {"components": ["Sys-Mgmt"], "minWeight": "ANY"}}),
    );
    receiver(store.as_ref(), "v62", json!({"mail": mail(smtpd.port), "createdOn": "V6.2"}));
    let mut ob = outbox(&store);
    ob.pass().unwrap();
    event(store.as_ref(), "INFO", "Cluster", "SUCluster/su", "cluster event");
    assert_eq!(ob.pass().unwrap().sent, 1, "only the V6.2 receiver (component ANY) takes a Cluster event");
    smtpd.wait_for(1);
    assert_eq!(status(store.as_ref(), "v62").sent, 1);
    assert_eq!(status(store.as_ref(), "v63").sent, 0);
    // A V6.2 receiver with components is refused.
    let bad = json!({"apiVersion": "sectl.io/v1alpha1", "kind": "AlarmReceiver", "metadata": {"name": "bad"},
        "spec": {"mail": mail(smtpd.port), "createdOn": "V6.2", "filter": {"components": ["Cluster"]}}});
    let r = Resource::from_json(&serde_json::to_vec(&bad).unwrap()).unwrap();
    let problems = sectl::api::validate::check_object(&r);
    assert!(problems.iter().any(|(p, m)| p == "spec.filter.components" && m.contains("s2.5")), "{problems:?}");
}

fn sectl(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sectl"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("SECTL_SERVER")
        .env_remove("SECTL_DATA_DIR")
        .output()
        .unwrap()
}

fn ok(data: &Path, args: &[&str]) -> String {
    let o = sectl(data, args);
    assert!(o.status.success(), "sectl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn site() -> String {
    format!("{}/manifests", env!("CARGO_MANIFEST_DIR"))
}

fn write_receiver(dir: &Path, name: &str, spec: Value) -> String {
    let p = dir.join(format!("{name}.yaml"));
    let doc =
        json!({"apiVersion": "sectl.io/v1alpha1", "kind": "AlarmReceiver", "metadata": {"name": name}, "spec": spec});
    std::fs::write(&p, serde_json::to_string(&doc).unwrap()).unwrap();
    p.display().to_string()
}

/// Embedded verbs: `apply` of a receiver starts its cursor; `sim power off` records
/// events and delivers them before it returns; `get ar` shows the counts.
#[test]
fn embedded_verbs_deliver_before_they_return() {
    let trapd = Trapd::start(free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&data, &["apply", "-f", &site()]);
    let start = SledStore::open(&data).unwrap().last_event_seq().unwrap();
    ok(&data, &["apply", "-f", &write_receiver(dir.path(), "station", json!({"snmp": snmp(trapd.port)}))]);
    ok(&data, &["sim", "power", "off", "abgwhite"]);
    let store = SledStore::open(&data).unwrap();
    let st = status(&store, "station");
    let after: Vec<Event> = store.events().unwrap().into_iter().filter(|e| e.seq > start).collect();
    drop(store);
    assert!(after.len() >= 3, "MU off, heartbeat, cluster warnings: {after:?}");
    assert_eq!((st.sent, st.failed, st.delivered_seq), (after.len() as u64, 0, after.last().unwrap().seq));
    let traps = trapd.wait_for(after.len());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(trapd.traps().len(), after.len(), "no trap before the receiver existed, one per event after");
    let seqs: Vec<&str> = traps.iter().map(|t| varbind(t, &format!("{E}.2.1.0")).unwrap()).collect();
    let want: Vec<String> = after.iter().map(|e| format!("Counter64: {}", e.seq)).collect();
    assert_eq!(seqs, want);
    let table = ok(&data, &["get", "ar", "-o", "wide"]);
    assert!(table.contains("station") && table.contains(&format!("127.0.0.1:{}", trapd.port)), "{table}");
}

struct Serve(std::process::Child, String);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sectl"))
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http"])
        .env_remove("SECTL_SERVER")
        .env_remove("SECTL_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.starts_with("sectl serve: listening on"), "{line}");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Serve(child, line.trim().trim_start_matches("sectl serve: listening on ").to_string())
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get_status(data: &Path, url: &str, name: &str) -> Value {
    let out = ok(data, &["--server", url, "get", "ar", name, "-o", "json"]);
    serde_json::from_str::<Value>(&out).unwrap()["status"].clone()
}

/// `sectl serve` is killed with SIGKILL after the events were recorded and before the
/// (down) mail receiver got them; after a restart with the receiver up, every event
/// arrives exactly once.
#[test]
fn kill_9_of_serve_between_event_and_delivery_loses_nothing() {
    let port = free_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&data, &["apply", "-f", &site()]);
    ok(&data, &["apply", "-f", &write_receiver(dir.path(), "ops", json!({"mail": mail(port)}))]);
    let start = SledStore::open(&data).unwrap().last_event_seq().unwrap();
    let mut s = serve(&data);
    let url = s.1.clone();
    ok(&data, &["--server", &url, "sim", "power", "off", "abgwhite"]);
    wait_until("a failed delivery", || get_status(&data, &url, "ops")["failed"].as_u64().unwrap_or(0) >= 1);
    s.0.kill().unwrap();
    s.0.wait().unwrap();
    drop(s);
    {
        let store = SledStore::open(&data).unwrap();
        let st = status(&store, "ops");
        assert_eq!((st.sent, st.delivered_seq), (0, start), "nothing delivered before the kill: {st:?}");
        assert!(store.last_event_seq().unwrap() > start, "the power-off was recorded");
    }
    let smtpd = Smtpd::start(port);
    let s = serve(&data);
    smtpd.wait_for(1);
    // The restarted controller may record more events of the power-off; wait until
    // the sent count has stayed put for a second.
    let (mut last, mut since) = (u64::MAX, Instant::now());
    wait_until("delivery to settle", || {
        let n = get_status(&data, &s.1, "ops")["sent"].as_u64().unwrap_or(0);
        if n != last {
            (last, since) = (n, Instant::now());
        }
        since.elapsed() > Duration::from_secs(1)
    });
    drop(s);
    let want: Vec<u64> = {
        let store = SledStore::open(&data).unwrap();
        store.events().unwrap().iter().filter(|e| e.seq > start).map(|e| e.seq).collect()
    };
    assert!(want.len() >= 3, "MU off, heartbeat, cluster warnings: {want:?}");
    let mails = smtpd.mails();
    assert_eq!(mails.len(), want.len(), "{mails:?}");
    let mut got: Vec<u64> = mails.iter().map(|m| mail_seq(m)).collect();
    got.sort();
    assert_eq!(got, want, "every event exactly once");
}

#[test]
fn bad_receivers_are_refused_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("spec: {filter: {components: [ANY]}}", "give a receiver"),
        ("spec: {snmp: {host: 'no host', community: public}}", "neither an IP address nor a DNS name"),
        ("spec: {snmp: {host: h, port: 70000, community: public}}", "port must be from 1 to 65535"),
        ("spec: {snmp: {host: h, community: 'two words'}}", "printable ASCII"),
        ("spec: {mail: {smtpHost: h, from: nobody, to: [a@b.c]}}", "mail address"),
        ("spec: {snmp: {host: h, community: c}, filter: {components: [Sys-Mgmt, Bogus]}}", "unknown variant"),
        ("spec: {snmp: {host: h, community: c}, filter: {minWeight: LOUD}}", "unknown variant"),
        ("spec: {snmp: {host: h, community: c}, filter: {components: [ANY, Cluster]}}", "[ANY] alone"),
        ("spec: {snmp: {host: h, community: c}, mail: {smtpHost: h, from: a@b.c, to: [a@b.c]}}", "not both"),
    ];
    for (i, (spec, want)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("r{i}.yaml"));
        std::fs::write(
            &p,
            format!("apiVersion: sectl.io/v1alpha1\nkind: AlarmReceiver\nmetadata: {{name: r{i}}}\n{spec}\n"),
        )
        .unwrap();
        let o = sectl(&dir.path().join("data"), &["validate", "-f", &p.display().to_string()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{spec}: {err}");
        assert!(err.contains(want), "{spec}: expected {want:?} in\n{err}");
    }
}

/// Manual s2.5, end to end: with the Cluster Manager on an MU of a V6.2 server, a
/// receiver for component Net gets the Cluster and M2000 events of an MU power-off;
/// on the all-V6.3 site the same receiver gets none of them.
#[test]
fn cluster_manager_on_v62_sends_regardless_of_components() {
    let mut sent = Vec::new();
    for version in ["V6.3", "V6.2"] {
        let trapd = Trapd::start(free_udp_port());
        let dir = tempfile::tempdir().unwrap();
        let site_dir = dir.path().join("site");
        assert!(Command::new("cp").arg("-r").arg(site()).arg(&site_dir).status().unwrap().success());
        // se701 (MUs abgwhite and abgblack, the Cluster Manager's) gets `version`.
        let servers = site_dir.join("servers.yaml");
        let text = std::fs::read_to_string(&servers).unwrap();
        let mark = "version: V6.3                    # SE Server software";
        assert!(text.contains(mark));
        std::fs::write(&servers, text.replacen(mark, &format!("version: {version} #"), 1)).unwrap();
        let data = dir.path().join("data");
        ok(&data, &["apply", "-f", &site_dir.display().to_string()]);
        let spec = json!({"snmp": snmp(trapd.port), "filter": {"components": ["Net"], "minWeight": "ANY"}});
        ok(&data, &["apply", "-f", &write_receiver(dir.path(), "net", spec)]);
        ok(&data, &["sim", "power", "off", "abgwhite"]);
        let store = SledStore::open(&data).unwrap();
        let cm = sectl::alarm::cluster_manager_on_v62(&store).unwrap();
        assert_eq!(cm.is_some(), version == "V6.2", "{cm:?}");
        sent.push(status(&store, "net").sent);
        drop(store);
        trapd.wait_for(*sent.last().unwrap() as usize);
    }
    assert_eq!(sent[0], 0, "V6.3: no Net event, nothing sent");
    assert!(sent[1] >= 3, "V6.2 Cluster Manager: the Cluster and M2000 events too: {sent:?}");
}
