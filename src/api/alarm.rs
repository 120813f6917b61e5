//! AlarmReceiver (manual s2.3.4): who is told about which events, by SNMPv2c trap or
//! by mail. A receiver is global in the management cluster (s2.1: "Alarm Management
//! with mail configuration, mail recipient and trap recipient" is global data), so the
//! kind has no reference to a server or cluster.
//!
//! The filter is the SE Manager's: a list of components (or ANY) and a minimum weight
//! (or ANY). Delivery itself is in `crate::alarm`; the status is written only there.

use super::checked::{Community, HostName, MailAddress, Port};
use super::{Condition, SoftwareVersion};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired alarm receiver: exactly one of `snmp` and `mail`, and a filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlarmReceiverSpec {
    /// Send SNMPv2c traps to this management station.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp: Option<SnmpTarget>,
    /// Send mails through this SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailTarget>,
    /// Which events: components and minimum weight (default: ANY and ANY).
    #[serde(default)]
    pub filter: AlarmFilter,
    /// The SE Manager version of the MU the receiver was created on (or restored from
    /// by CSR); default V6.3. A V6.2 receiver knows no components (manual s2.5): it acts
    /// as component ANY, so its `filter.components` must be [ANY].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<SoftwareVersion>,
}

/// An SNMP trap receiver (SNMPv2c).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnmpTarget {
    /// Host name or IP address of the management station.
    pub host: HostName,
    /// UDP port of its trap receiver (default 162).
    #[serde(default = "snmp_port")]
    pub port: Port,
    /// The SNMPv2c community sent with each trap.
    pub community: Community,
}

fn snmp_port() -> Port {
    Port(162)
}

/// A mail receiver: an SMTP server (plain SMTP, no authentication) and addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailTarget {
    /// The SMTP server's host name or IP address.
    pub smtp_host: HostName,
    /// Its port (default 25).
    #[serde(default = "smtp_port")]
    pub smtp_port: Port,
    /// Sender address.
    pub from: MailAddress,
    /// Recipients (at least one).
    #[schemars(length(min = 1, max = 100))]
    pub to: Vec<MailAddress>,
}

fn smtp_port() -> Port {
    Port(25)
}

/// Which events a receiver gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlarmFilter {
    /// Components whose events are sent; [ANY] for all (default).
    #[serde(default = "any_component")]
    #[schemars(length(min = 1, max = 16))]
    pub components: Vec<Component>,
    /// Only events of at least this weight; ANY for all (default).
    #[serde(default)]
    pub min_weight: Weight,
}

impl Default for AlarmFilter {
    fn default() -> Self {
        AlarmFilter { components: any_component(), min_weight: Weight::Any }
    }
}

fn any_component() -> Vec<Component> {
    vec![Component::Any]
}

/// A component that reports events, as the SE Manager names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Component {
    /// Every component.
    #[serde(rename = "ANY")]
    Any,
    /// The Management Unit's operating system (MU up/down).
    M2000,
    /// The Cluster Manager (management and SU clusters).
    Cluster,
    /// System management of the SUs (live migration steps, BS2000 systems).
    #[serde(rename = "Sys-Mgmt")]
    SysMgmt,
    /// VM2000 (VMs, SUs /390).
    VM2000,
    /// X2000 (SU x86).
    X2000,
    /// The Net Unit and its links.
    Net,
    /// Live migration.
    #[serde(rename = "LM")]
    Lm,
    /// sectl's watched folder.
    GitOps,
    /// sectl's controller itself (a reconcile that failed).
    Controller,
}

impl Component {
    /// The name as events carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Any => "ANY",
            Component::M2000 => "M2000",
            Component::Cluster => "Cluster",
            Component::SysMgmt => "Sys-Mgmt",
            Component::VM2000 => "VM2000",
            Component::X2000 => "X2000",
            Component::Net => "Net",
            Component::Lm => "LM",
            Component::GitOps => "GitOps",
            Component::Controller => "Controller",
        }
    }
}

/// Weight (priority) of an event, lowest first; ANY admits every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Weight {
    /// Every event.
    #[default]
    Any,
    /// Informational.
    Info,
    /// Worth noting.
    Notice,
    /// Needs attention.
    Warning,
    /// A function failed.
    Error,
    /// A function is lost.
    Critical,
}

impl Weight {
    /// The weight of an event's priority, None when the priority is none of these.
    pub fn of_priority(p: &str) -> Option<Weight> {
        match p {
            "INFO" => Some(Weight::Info),
            "NOTICE" => Some(Weight::Notice),
            "WARNING" => Some(Weight::Warning),
            "ERROR" => Some(Weight::Error),
            "CRITICAL" => Some(Weight::Critical),
            _ => None,
        }
    }

    /// The name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Weight::Any => "ANY",
            Weight::Info => "INFO",
            Weight::Notice => "NOTICE",
            Weight::Warning => "WARNING",
            Weight::Error => "ERROR",
            Weight::Critical => "CRITICAL",
        }
    }
}

/// What delivery observed. Written only by the delivery task (`crate::alarm`), with
/// the receiver's cursor in the same store batch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlarmReceiverStatus {
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Events delivered (traps sent, mails accepted by the SMTP server).
    #[serde(default)]
    pub sent: u64,
    /// Attempts that failed (each retry counts).
    #[serde(default)]
    pub failed: u64,
    /// The last failure, kept until the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Sequence number of the last event delivered (or passed by the filter).
    #[serde(default)]
    pub delivered_seq: u64,
    /// Events waiting for this receiver (matching or not, after `deliveredSeq`).
    #[serde(default)]
    pub pending: u64,
    /// When the last trap or mail was sent (RFC 3339, real time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_time: Option<String>,
}
