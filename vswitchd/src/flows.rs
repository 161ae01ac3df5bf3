//! The flow log's shell (`observe`): the bounded ring of flow events the daemon keeps, the
//! task that drains the datapath's queue into it, and the `observe` request on the control
//! socket (`proto::observe` has the protocol).
//!
//! The datapath emits `FlowEvent`s (ports, peers and addresses by number, a monotonic time)
//! into its bounded queue; every 100 ms `run` takes them, names the pods, services and
//! peers from the node's state (one lock per drain that found events), stamps the wall-clock
//! time, and pushes the records into the ring (`--flow-log-size`, oldest out first) and to
//! the followers (a broadcast channel: a follower that falls behind is told how many it
//! lost, and never slows the drain).

use crate::node::Node;
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tracing::debug;
use vswitch_datapath::{Datapath, FlowEvent, FlowKind, FlowPoint};
use vswitch_proto::observe::{
    self, FlowEndpoint, FlowRecord, FlowService, FlowsReport, FollowNote, ObserveSpec, Verdict,
};
use vswitch_proto::{encode_response, ErrorKind, Response};

/// The datapath's queue between two drains (events).
pub const QUEUE_LEN: usize = 16_384;
/// How often the queue is drained.
const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// Events a follower may fall behind by before it is told it lost some.
const FOLLOW_BACKLOG: usize = 4096;
/// Events answered when the request does not say.
const DEFAULT_LAST: usize = 20;

/// The ring of the latest flow records.
pub struct FlowRing {
    capacity: usize,
    inner: Mutex<Ring>,
    tx: broadcast::Sender<Arc<FlowRecord>>,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Arc<FlowRecord>>,
    total: u64,
}

impl FlowRing {
    /// A ring of `capacity` records (0: the flow log is off).
    pub fn new(capacity: usize) -> FlowRing {
        FlowRing {
            capacity,
            inner: Mutex::new(Ring::default()),
            tx: broadcast::channel(FOLLOW_BACKLOG).0,
        }
    }

    /// Adds records, oldest first, and hands them to the followers.
    fn push(&self, recs: Vec<FlowRecord>) {
        if self.capacity == 0 {
            return;
        }
        let mut ring = self.inner.lock().expect("flow ring lock");
        for r in recs {
            let r = Arc::new(r);
            ring.total += 1;
            if ring.events.len() == self.capacity {
                ring.events.pop_front();
            }
            ring.events.push_back(r.clone());
            let _ = self.tx.send(r); // no follower: fine
        }
    }

    /// The last `n` records that pass `f`, oldest first, and the number seen in all.
    fn last(&self, n: usize, f: &observe::Filter) -> (Vec<FlowRecord>, u64) {
        let ring = self.inner.lock().expect("flow ring lock");
        let mut out: Vec<FlowRecord> = ring
            .events
            .iter()
            .rev()
            .filter(|r| f.matches(r))
            .take(n)
            .map(|r| (**r).clone())
            .collect();
        out.reverse();
        (out, ring.total)
    }
}

/// What names the numbers of a flow event: built from the node's state per drain.
#[derive(Default)]
pub struct Names {
    /// This node's name.
    pub node: String,
    /// Local ports by id: (namespace, name).
    pub ports: std::collections::HashMap<vswitch_datapath::PortId, (String, String)>,
    /// Pods by address, local and (with a datastore) remote.
    pub pods: std::collections::HashMap<Ipv4Addr, observe::FlowPod>,
    /// Peers by id: the node name.
    pub peers: std::collections::HashMap<vswitch_datapath::PeerId, String>,
    /// Services by (VIP, port): `NAMESPACE/NAME`.
    pub services: std::collections::HashMap<(Ipv4Addr, u16), String>,
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => n.to_string(),
    }
}

/// The record of `ev`, which happened `wall_ms` (ms since the Unix epoch).
pub fn record(ev: &FlowEvent, wall_ms: u64, names: &Names) -> FlowRecord {
    let (verdict, drop_reason, end_reason) = match ev.kind {
        FlowKind::New => (Verdict::Forwarded, None, None),
        FlowKind::Drop(r) => (Verdict::Dropped, Some(r.name().to_string()), None),
        FlowKind::End { closed } => (
            Verdict::Ended,
            None,
            Some(if closed { "closed" } else { "timeout" }.to_string()),
        ),
    };
    let ip = ev.proto.is_some();
    let ported = matches!(ev.proto, Some(6 | 17));
    let end = |addr: Ipv4Addr, port: u16| FlowEndpoint {
        ip: ip.then(|| addr.to_string()),
        port: ported.then_some(port),
        pod: ip.then(|| names.pods.get(&addr).cloned()).flatten(),
    };
    let mut source = end(ev.src, ev.sport);
    if source.pod.is_none() {
        // A frame dropped before its source was checked still came from this port's pod.
        if let FlowPoint::Port(p) = ev.from {
            source.pod = names.ports.get(&p).map(|(ns, n)| observe::FlowPod {
                namespace: ns.clone(),
                name: n.clone(),
                node: names.node.clone(),
            });
        }
    }
    let peer_name = |p: FlowPoint| match p {
        FlowPoint::Peer(id) => names.peers.get(&id).cloned(),
        FlowPoint::Tunnel(a) => Some(format!("unknown {a}")),
        _ => None,
    };
    let direction = match ev.from {
        FlowPoint::Port(_) => Some("pod".to_string()),
        FlowPoint::Peer(_) | FlowPoint::Tunnel(_) => Some("tunnel".to_string()),
        FlowPoint::None => None,
    };
    let service = match (ev.service, ev.endpoint) {
        (Some(vip), Some(ep)) => Some(FlowService {
            name: names.services.get(&(*vip.ip(), vip.port())).cloned(),
            vip: vip.to_string(),
            endpoint: ep.to_string(),
            endpoint_pod: names.pods.get(ep.ip()).cloned(),
        }),
        _ => None,
    };
    FlowRecord {
        time: observe::rfc3339_ms(wall_ms),
        time_ms: wall_ms,
        node: names.node.clone(),
        verdict,
        drop_reason,
        end_reason,
        direction,
        peer: peer_name(ev.from).or_else(|| peer_name(ev.to)),
        protocol: ev.proto.map(proto_name),
        source,
        destination: end(ev.dst, ev.dport),
        tcp_flags: (ev.proto == Some(6) && ev.tcp_flags != 0)
            .then(|| observe::tcp_flags_text(ev.tcp_flags)),
        service,
        suppressed: ev.suppressed,
    }
}

fn wall_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Drains the datapath's flow queue into the node's ring until aborted. `epoch` is the I/O
/// engine's clock (the `now_ms` of the events).
pub async fn run(node: Arc<Node>, datapath: Arc<Datapath>, epoch: Instant) {
    let Some(log) = datapath.flow_log() else {
        return;
    };
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events = Vec::new();
    loop {
        tick.tick().await;
        while let Some(ev) = log.pop() {
            events.push(ev);
            if events.len() >= QUEUE_LEN {
                break;
            }
        }
        if events.is_empty() {
            continue;
        }
        let names = node.flow_names().await;
        let (mono, wall) = (epoch.elapsed().as_millis() as u64, wall_now_ms());
        let recs = events
            .drain(..)
            .map(|ev| {
                let at = wall.saturating_sub(mono.saturating_sub(ev.now_ms));
                record(&ev, at, &names)
            })
            .collect();
        node.flows().push(recs);
    }
}

/// Writes `bytes` within `timeout`; `false` when the client is gone or too slow.
async fn send<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8], timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, wr.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Serves one `observe` request on its connection: the answer, then with `follow` the new
/// events until the client closes its end (`rd`: read only to notice that). `false` when
/// the connection must be closed.
pub async fn serve<R, W>(
    node: &Node,
    datapath: &Datapath,
    spec: ObserveSpec,
    rd: &mut R,
    wr: &mut W,
    timeout: Duration,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let filter = match observe::check(&spec) {
        Ok(f) => f,
        Err(e) => {
            let resp = Response::error(ErrorKind::Invalid, Some(e.field), e.message);
            return send(wr, encode_response(&resp).as_bytes(), timeout).await;
        }
    };
    let ring = node.flows();
    // Subscribed before the snapshot: nothing falls between the answer and the stream
    // (an event may come twice, never not at all).
    let mut rx = spec.follow.then(|| ring.tx.subscribe());
    let (flows, total) = ring.last(spec.last.unwrap_or(DEFAULT_LAST), &filter);
    let log = datapath.flow_log();
    let report = FlowsReport {
        flows,
        capacity: ring.capacity,
        total,
        suppressed: log.map_or(0, |l| l.suppressed_total()),
        lost: log.map_or(0, |l| l.lost()),
    };
    if !send(
        wr,
        encode_response(&Response::Flows(report)).as_bytes(),
        timeout,
    )
    .await
    {
        return false;
    }
    let Some(rx) = rx.as_mut() else {
        return true;
    };
    let mut scratch = [0u8; 512];
    loop {
        let line = tokio::select! {
            got = rx.recv() => match got {
                Ok(r) if filter.matches(&r) => serde_json::to_string(&*r).expect("serializes"),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    serde_json::to_string(&FollowNote { lost: n }).expect("serializes")
                }
                Err(broadcast::error::RecvError::Closed) => return false,
            },
            r = rd.read(&mut scratch) => match r {
                Ok(0) | Err(_) => {
                    debug!("observe: the client closed its end");
                    return false;
                }
                Ok(_) => continue, // nothing is expected from the client: ignored
            },
        };
        if !send(wr, format!("{line}\n").as_bytes(), timeout).await {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;
    use vswitch_datapath::{DropReason, PortId};

    fn names() -> Names {
        let mut n = Names {
            node: "n1".into(),
            ..Names::default()
        };
        let pod = |name: &str| observe::FlowPod {
            namespace: "default".into(),
            name: name.into(),
            node: "n1".into(),
        };
        n.pods.insert(Ipv4Addr::new(10, 0, 0, 2), pod("client"));
        n.pods.insert(Ipv4Addr::new(10, 0, 0, 3), pod("web"));
        n.ports
            .insert(PortId::new(1), ("default".into(), "client".into()));
        n.services
            .insert((Ipv4Addr::new(10, 96, 0, 10), 80), "default/web".into());
        n
    }

    #[test]
    fn a_service_connection_names_its_service_and_endpoint() {
        let ev = FlowEvent {
            proto: Some(6),
            src: Ipv4Addr::new(10, 0, 0, 2),
            sport: 40000,
            dst: Ipv4Addr::new(10, 96, 0, 10),
            dport: 80,
            tcp_flags: 0x02,
            service: Some(SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 80)),
            endpoint: Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), 8080)),
            ..FlowEvent::new(5, FlowKind::New, FlowPoint::Port(PortId::new(1)))
        };
        let r = record(&ev, 1_700_000_000_000, &names());
        assert_eq!(r.verdict, Verdict::Forwarded);
        assert_eq!(r.source.pod.as_ref().unwrap().name, "client");
        assert_eq!(r.tcp_flags.as_deref(), Some("SYN"));
        let s = r.service.unwrap();
        assert_eq!(s.name.as_deref(), Some("default/web"));
        assert_eq!(s.endpoint, "10.0.0.3:8080");
        assert_eq!(s.endpoint_pod.unwrap().name, "web");
    }

    #[test]
    fn a_drop_keeps_its_reason_and_its_port() {
        let ev = FlowEvent {
            proto: Some(17),
            src: Ipv4Addr::new(6, 6, 6, 6),
            ..FlowEvent::new(
                5,
                FlowKind::Drop(DropReason::SpoofedIp),
                FlowPoint::Port(PortId::new(1)),
            )
        };
        let r = record(&ev, 0, &names());
        assert_eq!(r.verdict, Verdict::Dropped);
        assert_eq!(r.drop_reason.as_deref(), Some(DropReason::SpoofedIp.name()));
        assert_eq!(r.source.pod.unwrap().name, "client", "named by its port");
    }

    #[test]
    fn the_ring_keeps_the_latest_and_filters() {
        let ring = FlowRing::new(3);
        let n = names();
        let mk = |i: u64, kind| record(&FlowEvent::new(i, kind, FlowPoint::None), i, &n);
        ring.push(
            (0..5)
                .map(|i| {
                    let kind = if i % 2 == 0 {
                        FlowKind::New
                    } else {
                        FlowKind::Drop(DropReason::Malformed)
                    };
                    mk(i, kind)
                })
                .collect(),
        );
        let all = observe::Filter::default();
        let (got, total) = ring.last(10, &all);
        assert_eq!(total, 5);
        assert_eq!(
            got.iter().map(|r| r.time_ms).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        let drops = observe::Filter {
            verdict: Some(Verdict::Dropped),
            ..Default::default()
        };
        assert_eq!(ring.last(10, &drops).0.len(), 1);
        assert_eq!(ring.last(1, &all).0[0].time_ms, 4);
    }
}
