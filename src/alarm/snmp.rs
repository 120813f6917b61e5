//! SNMPv2c traps (RFC 3416 SNMPv2-Trap-PDU in an RFC 1901 community message), encoded
//! with `rasn-snmp` (BER), sent over UDP.
//!
//! sectl's OID tree lives under IANA's example enterprise number 32473 (RFC 5612,
//! reserved for documentation) until sectl has a registered one:
//!
//! ```text
//! 1.3.6.1.4.1.32473.1            sectl (snmpTrapEnterprise.0)
//! 1.3.6.1.4.1.32473.1.0.1        sectlEventNotification (snmpTrapOID.0)
//! 1.3.6.1.4.1.32473.1.2.1.0      sectlEventSeq        Counter64     event sequence number
//! 1.3.6.1.4.1.32473.1.2.2.0      sectlEventPriority   OCTET STRING  INFO .. CRITICAL
//! 1.3.6.1.4.1.32473.1.2.3.0      sectlEventComponent  OCTET STRING  Cluster, M2000, ...
//! 1.3.6.1.4.1.32473.1.2.4.0      sectlEventObject     OCTET STRING  Kind/name or unit
//! 1.3.6.1.4.1.32473.1.2.5.0      sectlEventMessage    OCTET STRING  text for people
//! 1.3.6.1.4.1.32473.1.2.6.0      sectlEventReason     OCTET STRING  CamelCase reason
//! 1.3.6.1.4.1.32473.1.2.7.0      sectlEventTime       OCTET STRING  RFC 3339 (simulated clock)
//! ```
//!
//! A trap is unacknowledged. On a connected UDP socket Linux reports an ICMP "port
//! unreachable" from the receiver's host as ECONNREFUSED, so after each trap we wait
//! `ICMP_WAIT` for one: a receiver whose port is closed counts as a failure and the
//! trap is retried. A receiver that is silently gone (no ICMP) cannot be told apart
//! from one that received the trap: that is SNMP trap semantics.

use crate::api::SnmpTarget;
use crate::store::Event;
use rasn::types::{ObjectIdentifier, OctetString};
use rasn_smi::v1::TimeTicks as Ticks;
use rasn_smi::v2::{Counter64, ObjectSyntax};
use rasn_snmp::v2::{Pdu, Pdus, Trap, VarBind, VarBindValue};
use rasn_snmp::v2c::Message;
use std::net::UdpSocket;
use std::time::Duration;

/// sectl's enterprise OID.
pub const ENTERPRISE: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1];
/// How long to wait for an ICMP refusal after a trap.
const ICMP_WAIT: Duration = Duration::from_millis(10);

const SYS_UP_TIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
const SNMP_TRAP_OID: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
const SNMP_TRAP_ENTERPRISE: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 3, 0];

/// Why a trap was not sent.
#[derive(Debug, thiserror::Error)]
pub enum TrapError {
    /// BER encoding failed.
    #[error("encoding the trap: {0}")]
    Encode(String),
    /// The host did not resolve, or the socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn oid(arcs: &[u32]) -> ObjectIdentifier {
    ObjectIdentifier::new_unchecked(arcs.to_vec().into())
}

/// The OID of one of sectl's event objects (`1.3.6.1.4.1.32473.1.2.N.0`).
pub fn event_object(n: u32) -> Vec<u32> {
    let mut v = ENTERPRISE.to_vec();
    v.extend([2, n, 0]);
    v
}

fn bind(arcs: &[u32], value: impl Into<ObjectSyntax>) -> VarBind {
    VarBind { name: oid(arcs), value: VarBindValue::Value(value.into()) }
}

fn text(s: &str) -> OctetString {
    OctetString::from(s.as_bytes().to_vec())
}

/// The trap for one event, BER-encoded.
pub fn encode(community: &str, ev: &Event, uptime_centis: u32, request_id: i32) -> Result<Vec<u8>, TrapError> {
    let mut notification = ENTERPRISE.to_vec();
    notification.extend([0, 1]);
    let variable_bindings = vec![
        bind(SYS_UP_TIME, Ticks(uptime_centis)),
        bind(SNMP_TRAP_OID, oid(&notification)),
        bind(&event_object(1), Counter64(ev.seq)),
        bind(&event_object(2), text(&ev.priority)),
        bind(&event_object(3), text(&ev.component)),
        bind(&event_object(4), text(&ev.object)),
        bind(&event_object(5), text(&ev.message)),
        bind(&event_object(6), text(&ev.reason)),
        bind(&event_object(7), text(&ev.time)),
        bind(SNMP_TRAP_ENTERPRISE, oid(ENTERPRISE)),
    ];
    let pdu = Pdu { request_id, error_status: 0, error_index: 0, variable_bindings };
    let msg = Message { version: 1.into(), community: text(community), data: Pdus::Trap(Trap(pdu)) };
    rasn::ber::encode(&msg).map_err(|e| TrapError::Encode(e.to_string()))
}

/// Sends one trap and waits briefly for an ICMP refusal.
pub fn send(t: &SnmpTarget, bytes: &[u8]) -> Result<(), TrapError> {
    let to = (t.host.as_str(), t.port.get());
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&to)?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} has no address", t.host)))?;
    let bind_to = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = UdpSocket::bind(bind_to)?;
    sock.connect(addr)?;
    sock.send(bytes)?;
    sock.set_read_timeout(Some(ICMP_WAIT))?;
    let mut buf = [0u8; 64];
    match sock.recv(&mut buf) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(()),
        Err(e) => Err(TrapError::Io(std::io::Error::new(e.kind(), format!("trap to {addr}: {e}")))),
        // A trap gets no answer; whatever came back is not ours to read.
        Ok(_) => Ok(()),
    }
}
