//! The flow log's hooks in the pipeline (see [`crate::flow_log`]): a drop, the first
//! segment of a direct TCP flow, a new service connection, a connection's end. Each costs
//! one `Option` test while the log is off.

use super::trace::Mode;
use super::Verdict;
use crate::counters::DropReason;
use crate::flow_log::{FlowEvent, FlowKind, FlowPoint};
use crate::state::conntrack::Conn;
use crate::state::ct_state::State;
use crate::state::tables::PortId;
use crate::wire::buf::PacketBuf;
use crate::wire::l4::{L4Proto, TCP_ACK, TCP_RST, TCP_SYN};
use crate::wire::vxlan::VXLAN_HDR_LEN;
use crate::wire::{Ipv4Info, PROTO_TCP};
use crate::Datapath;
use std::net::SocketAddrV4;

/// Offset of the flags byte in a TCP header.
const TCP_FLAGS_OFF: usize = 13;

fn proto_number(p: L4Proto) -> u8 {
    match p {
        L4Proto::Tcp => 6,
        L4Proto::Udp => 17,
    }
}

/// The event of a service connection `c` (its original direction: client -> VIP).
fn conn_event(c: &Conn, kind: FlowKind, from: FlowPoint, now_ms: u64) -> FlowEvent {
    let (o, r) = (&c.orig, &c.reply);
    FlowEvent {
        proto: Some(proto_number(o.proto)),
        src: o.src,
        sport: o.sport,
        dst: o.dst,
        dport: o.dport,
        service: Some(SocketAddrV4::new(o.dst, o.dport)),
        endpoint: Some(SocketAddrV4::new(r.src, r.sport)),
        ..FlowEvent::new(now_ms, kind, from)
    }
}

/// The end of connection `c`, removed by the expiry at `now_ms`.
pub(super) fn conn_end(c: &Conn, now_ms: u64) -> FlowEvent {
    let closed = c.state() == State::Close;
    conn_event(c, FlowKind::End { closed }, FlowPoint::None, now_ms)
}

impl Datapath {
    /// Logs a drop of the frame in `pkt` (read on `from`) for `reason`.
    pub(super) fn log_drop(
        &self,
        from: FlowPoint,
        pkt: &PacketBuf,
        reason: DropReason,
        now_ms: u64,
    ) {
        let Some(log) = &self.flows else { return };
        log.drop_event(now_ms, || {
            let frame = pkt.frame();
            // Before the VXLAN header is pulled (the datagram's own faults), the inner frame
            // follows it.
            let inner = match (from, reason) {
                (
                    FlowPoint::Peer(_) | FlowPoint::Tunnel(_),
                    DropReason::TunnelUnknownPeer
                    | DropReason::TunnelMalformed
                    | DropReason::TunnelUnknownVni,
                ) => frame.get(VXLAN_HDR_LEN..).unwrap_or_default(),
                _ => frame,
            };
            FlowEvent::new(now_ms, FlowKind::Drop(reason), from).with_frame(inner)
        });
    }

    /// The event of a direct TCP flow's first segment (SYN without ACK or RST) in `pkt`,
    /// read before the forwarding stage rewrites it; `None` for any other packet or with
    /// the log off.
    pub(super) fn syn_event(
        &self,
        from: FlowPoint,
        pkt: &PacketBuf,
        ip: &Ipv4Info,
        now_ms: u64,
    ) -> Option<FlowEvent> {
        self.flows.as_ref()?;
        if ip.proto != PROTO_TCP || ip.is_later_fragment() {
            return None;
        }
        let frame = pkt.frame();
        let flags = *frame.get(ip.off + ip.hlen + TCP_FLAGS_OFF)?;
        if flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
            return None;
        }
        Some(FlowEvent::new(now_ms, FlowKind::New, from).with_frame(frame))
    }

    /// [`Datapath::syn_event`] on the live path; `None` for a trace, which logs nothing.
    pub(super) fn syn_event_if<M: Mode>(
        &self,
        from: FlowPoint,
        pkt: &PacketBuf,
        ip: &Ipv4Info,
        now_ms: u64,
    ) -> Option<FlowEvent> {
        if M::LIVE {
            self.syn_event(from, pkt, ip, now_ms)
        } else {
            None
        }
    }

    /// Logs `syn` (from [`Datapath::syn_event`]) when the packet was forwarded.
    pub(super) fn log_forwarded(&self, syn: Option<FlowEvent>, v: &Result<Verdict, DropReason>) {
        let (Some(mut ev), Some(log)) = (syn, &self.flows) else {
            return;
        };
        ev.to = match v {
            Ok(Verdict::ToPort(p)) => FlowPoint::Port(*p),
            Ok(Verdict::ToTunnel { peer, .. }) => FlowPoint::Peer(*peer),
            _ => return,
        };
        log.push(ev);
    }

    /// Logs a new service connection `c` from port `from`, opened by a packet with TCP
    /// flags `flags`.
    pub(super) fn log_new_conn(&self, from: PortId, c: &Conn, flags: u8, now_ms: u64) {
        if let Some(log) = &self.flows {
            let mut ev = conn_event(c, FlowKind::New, FlowPoint::Port(from), now_ms);
            ev.tcp_flags = flags;
            log.push(ev);
        }
    }
}
