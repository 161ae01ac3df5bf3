//! Looking inside the switch without touching it: `trace` (a synthetic packet through the
//! live tables), `conntrack list|flush` and `log-level`. The request values and their
//! answers; the checks are in `validate/inspect.rs`.

use serde::{Deserialize, Serialize};

fn default_namespace() -> String {
    "default".to_string()
}

/// `trace POD --dst IP[:PORT] [--proto tcp|udp|icmp] [--src IP] [--src-mac MAC]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSpec {
    /// The pod whose port the packet comes from.
    pub pod: String,
    /// The pod's namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The destination, `IP[:PORT]` (a port for tcp and udp).
    pub dst: String,
    /// `tcp`, `udp` or `icmp` (default: tcp with a port, icmp without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// A forged IPv4 source (default: the pod's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// A forged source MAC (default: the pod's MAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<String>,
}

/// One stage's decision in a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceStepInfo {
    /// The pipeline stage (`port_ingress`, `conntrack`, `route`, `services`, ...).
    pub stage: String,
    /// The decision, one line.
    pub text: String,
    /// The decision as data (`decision` names its kind).
    pub data: serde_json::Value,
}

/// The answer to `trace`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceReport {
    /// The pod.
    pub pod: String,
    /// Its namespace.
    pub namespace: String,
    /// The synthetic packet, e.g. `tcp 198.18.1.2:45000 -> 198.19.96.20:80`.
    pub packet: String,
    /// The stages met, in order.
    pub steps: Vec<TraceStepInfo>,
    /// `forward`, `tunnel`, `reject`, `answer`, `dns_forward` or `drop`.
    pub verdict: String,
    /// Where it goes (a port, a peer) or why it is dropped, one line.
    pub verdict_text: String,
    /// The drop reason when dropped or rejected, as `stats` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
}

/// Which connections `conntrack list|flush` is about (`NS/NAME`, or `NAME` in `default`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackQuery {
    /// Only connections to this Service's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only connections from or to this pod (client or endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// One tracked connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnEntry {
    /// `tcp` or `udp`.
    pub proto: String,
    /// The client, `IP:PORT`.
    pub client: String,
    /// The Service port it sent to, `VIP:PORT`.
    pub vip: String,
    /// The endpoint chosen, `IP:PORT`.
    pub endpoint: String,
    /// Where the endpoint answers (differs from `client` with SNAT).
    pub reply_to: String,
    /// The connection's state (`established`, `syn_sent`, `udp_replied`, ...).
    pub state: String,
    /// Traffic went both ways.
    pub assured: bool,
    /// Seconds left before it expires unless refreshed.
    pub ttl_s: u64,
    /// The Service, `NS/NAME`, when one has that port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}
