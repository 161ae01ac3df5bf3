//! Looking inside the switch: `trace` (a synthetic packet through the live tables, run by
//! the datapath's `trace_from_port`, which changes nothing), `conntrack list|flush` (names
//! turned into the datapath's filter here) and `log-level`.

use super::state::{invalid, not_found, reject, Reject};
use super::{Inner, Node};
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use vswitch_datapath::{
    ConnFilter, ConnInfo, L4Proto, Mac, PeerId, PortId, Probe, ProbeProto, Step, Trace, TraceStep,
    Verdict,
};
use vswitch_proto::inspect::{ConnEntry, ConntrackQuery, TraceReport, TraceSpec, TraceStepInfo};
use vswitch_proto::validate::{self, TraceProto};
use vswitch_proto::{PortKey, Response, ServiceKey};

/// The source port of a traced TCP or UDP packet (an ephemeral port, as a client's).
const TRACE_SPORT: u16 = 40999;

impl Node {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.io.epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `trace`.
    pub(super) fn trace(&self, inner: &Inner, spec: TraceSpec) -> Result<Response, Reject> {
        let target = validate::trace_spec(&spec).map_err(invalid)?;
        let key = PortKey {
            name: spec.pod.clone(),
            namespace: spec.namespace.clone(),
        };
        let port = inner.ports.get(&key).ok_or_else(|| {
            not_found(
                "pod",
                format!("no pod `{}` in namespace `{}`", key.name, key.namespace),
            )
        })?;
        let id = port
            .id
            .ok_or_else(|| reject("pod", format!("pod `{}` is detached", key.name)))?;
        let cfg = self.datapath.config();
        let tables = self.datapath.tables();
        // The pod's view: a destination on its own link (a local pod inside its prefix) is
        // switched to that pod's MAC, everything else goes to the gateway's (router) MAC.
        let on_link = validate::Ipv4Net::new(port.rec.ip, port.rec.prefix_len)
            .is_ok_and(|n| n.contains(&target.dst));
        let dst_mac = match inner.ports.values().find(|p| p.rec.ip == target.dst) {
            Some(p) if on_link && p.id.is_some() => p.mac,
            _ => cfg.router_mac,
        };
        let probe = Probe {
            src_mac: target.src_mac.map_or(port.mac, Mac),
            dst_mac,
            src: target.src.unwrap_or(port.rec.ip),
            dst: target.dst,
            proto: match target.proto {
                TraceProto::Tcp => ProbeProto::Tcp,
                TraceProto::Udp => ProbeProto::Udp,
                TraceProto::Icmp => ProbeProto::Icmp,
            },
            sport: TRACE_SPORT,
            dport: target.dport,
            ttl: 64,
        };
        let t =
            self.datapath
                .trace_from_port(&tables, id, &probe, self.args.underlay, self.now_ms());
        let names = Names {
            ports: inner
                .ports
                .values()
                .filter_map(|p| Some((p.id?, format!("{}/{}", p.rec.namespace, p.rec.name))))
                .collect(),
            peers: inner
                .peers
                .values()
                .map(|p| (p.id, p.rec.node.clone()))
                .collect(),
        };
        Ok(Response::Trace(report(&spec, &probe, &t, &names)))
    }

    /// `conntrack list`.
    pub(super) fn conntrack_list(
        &self,
        inner: &Inner,
        q: ConntrackQuery,
    ) -> Result<Response, Reject> {
        let filter = conn_filter(inner, &q)?;
        let names = service_names(inner);
        let list = self.datapath.conntrack_list(&filter, self.now_ms());
        Ok(Response::Conntrack(
            list.iter().map(|c| conn_entry(c, &names)).collect(),
        ))
    }

    /// `conntrack flush`.
    pub(super) fn conntrack_flush(
        &self,
        inner: &Inner,
        q: ConntrackQuery,
    ) -> Result<Response, Reject> {
        let filter = conn_filter(inner, &q)?;
        let removed = self.datapath.conntrack_flush(&filter, self.now_ms());
        tracing::info!(removed, service = ?q.service, pod = ?q.pod, "conntrack flush");
        Ok(Response::ConntrackFlushed { removed })
    }
}

fn proto_of(s: &str) -> L4Proto {
    if s == "udp" {
        L4Proto::Udp
    } else {
        L4Proto::Tcp
    }
}

fn proto_name(p: L4Proto) -> &'static str {
    match p {
        L4Proto::Tcp => "tcp",
        L4Proto::Udp => "udp",
    }
}

/// The datapath filter of a query: a Service's ports, a pod's address.
fn conn_filter(inner: &Inner, q: &ConntrackQuery) -> Result<ConnFilter, Reject> {
    let mut f = ConnFilter::default();
    if let Some(s) = &q.service {
        let (namespace, name) = validate::namespaced("service", s).map_err(invalid)?;
        let key = ServiceKey { name, namespace };
        let svc = inner
            .services
            .get(&key)
            .ok_or_else(|| not_found("service", format!("no service `{s}`")))?;
        f.services = Some(
            svc.ports
                .iter()
                .map(|p| (svc.vip, p.port, proto_of(&p.protocol)))
                .collect(),
        );
    }
    if let Some(p) = &q.pod {
        let (namespace, name) = validate::namespaced("pod", p).map_err(invalid)?;
        let key = PortKey { name, namespace };
        let port = inner
            .ports
            .get(&key)
            .ok_or_else(|| not_found("pod", format!("no pod `{p}` on this node")))?;
        f.pod = Some(port.rec.ip);
    }
    Ok(f)
}

/// `NS/NAME` of each Service port.
fn service_names(inner: &Inner) -> BTreeMap<(SocketAddrV4, &'static str), String> {
    let mut m = BTreeMap::new();
    for s in inner.services.values() {
        for p in &s.ports {
            let proto = proto_name(proto_of(&p.protocol));
            m.insert(
                (SocketAddrV4::new(s.vip, p.port), proto),
                format!("{}/{}", s.namespace, s.name),
            );
        }
    }
    m
}

fn conn_entry(c: &ConnInfo, names: &BTreeMap<(SocketAddrV4, &'static str), String>) -> ConnEntry {
    let proto = proto_name(c.proto);
    ConnEntry {
        proto: proto.to_string(),
        client: c.client.to_string(),
        vip: c.service.to_string(),
        endpoint: c.endpoint.to_string(),
        reply_to: c.reply_to.to_string(),
        state: c.state.name().to_string(),
        assured: c.assured,
        ttl_s: c.ttl_ms / 1000,
        service: names.get(&(c.service, proto)).cloned(),
    }
}

/// The names of the datapath's port and peer ids, for a trace's lines.
struct Names {
    ports: BTreeMap<PortId, String>,
    peers: BTreeMap<PeerId, String>,
}

impl Names {
    fn port(&self, id: PortId) -> String {
        self.ports
            .get(&id)
            .map_or_else(|| format!("port {}", id.get()), |n| format!("pod {n}"))
    }

    fn peer(&self, id: PeerId) -> String {
        self.peers
            .get(&id)
            .map_or_else(|| format!("peer {}", id.get()), |n| format!("peer {n}"))
    }
}

/// One step: its line with the ports and peers named, and its data with their names added
/// (`pod`, `peer_node`).
fn step_info(s: &TraceStep, names: &Names) -> TraceStepInfo {
    let stage = serde_json::to_value(s.stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut text = s.step.to_string();
    let mut data = serde_json::to_value(&s.step).unwrap_or_default();
    match s.step {
        Step::Deliver { port, .. } => {
            text = text.replacen(&format!("port {}", port.get()), &names.port(port), 1);
            if let Some(n) = names.ports.get(&port) {
                data["pod"] = n.clone().into();
            }
        }
        Step::Encap { peer, .. } => {
            text = text.replacen(&format!("peer {}", peer.get()), &names.peer(peer), 1);
            if let Some(n) = names.peers.get(&peer) {
                data["peer_node"] = n.clone().into();
            }
        }
        _ => {}
    }
    TraceStepInfo { stage, text, data }
}

/// The answer of a trace: its steps as lines and data, and the verdict.
fn report(spec: &TraceSpec, p: &Probe, t: &Trace, names: &Names) -> TraceReport {
    let packet = match p.proto {
        ProbeProto::Tcp => format!("tcp {}:{} -> {}:{} [SYN]", p.src, p.sport, p.dst, p.dport),
        ProbeProto::Udp => format!("udp {}:{} -> {}:{}", p.src, p.sport, p.dst, p.dport),
        ProbeProto::Icmp => format!("icmp {} -> {} echo request", p.src, p.dst),
    };
    let steps = t.steps.iter().map(|s| step_info(s, names)).collect();
    // A reject is a drop the switch answers: the last drop step names it.
    let rejected = t.steps.iter().rev().find_map(|s| match s.step {
        Step::Drop { reason } => Some(reason),
        _ => None,
    });
    let (verdict, text, reason) = match (t.verdict, rejected) {
        (Some(Verdict::Drop(r)), _) => ("drop", format!("dropped: {}", r.name()), Some(r)),
        (Some(Verdict::ToPort(_)), Some(r)) => (
            "reject",
            format!("rejected: {} (answered to the pod)", r.name()),
            Some(r),
        ),
        (Some(Verdict::ToPort(id)), None) => {
            let answered = t
                .steps
                .iter()
                .any(|s| matches!(s.step, Step::Answer { .. }));
            if answered {
                ("answer", "answered by the switch".to_string(), None)
            } else {
                ("forward", format!("to {}", names.port(id)), None)
            }
        }
        (Some(Verdict::ToTunnel { peer, dst }), _) => {
            ("tunnel", format!("to peer {} at {dst}", peer.get()), None)
        }
        (Some(Verdict::DnsForward { .. }), _) => (
            "dns_forward",
            "to the upstream DNS resolver".to_string(),
            None,
        ),
        (None, _) => ("drop", "no verdict".to_string(), None),
    };
    TraceReport {
        pod: spec.pod.clone(),
        namespace: spec.namespace.clone(),
        packet,
        steps,
        verdict: verdict.to_string(),
        verdict_text: text,
        drop_reason: reason.map(|r| r.name().to_string()),
    }
}
