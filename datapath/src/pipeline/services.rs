//! Stage [`Stage::Conntrack`](super::Stage::Conntrack) (packets of tracked connections, in
//! both directions) and stage [`Stage::Services`](super::Stage::Services) (new connections
//! to a VIP, and rejects): service load balancing at the client's node, with kube-proxy's
//! semantics. The state they use is [`crate::state::conntrack`] (the connections) and
//! [`crate::state::service`] (the service table) and [`crate::state::balancer`] (the
//! endpoint choice).
//!
//! - Original direction (client pod -> VIP:port, routed): DNAT to the connection's endpoint
//!   (plus SNAT to the gateway on hairpin), then routed as usual: a local pod (MACs
//!   rewritten, TTL decremented) or a peer (VXLAN, PMTU checked on the packet *before* the
//!   rewrite, so that the ICMP error quotes what the client sent).
//! - Reply direction (endpoint -> client, from a pod or from the tunnel): reverse NAT (source
//!   back to VIP:port, destination back to the client), delivered to the client's port. A
//!   reply the endpoint switched at L2 (same subnet) keeps its MACs and TTL; a routed one is
//!   rewritten as routing does.
//! - Direct connections to an endpoint (a local pod to a service endpoint's address and
//!   port, not through a VIP; switched or routed) are tracked too ([`direct_flow`]), so that
//!   a VIP connection and a direct one from the same client port never share a 4-tuple at
//!   the endpoint (see [`crate::state::conntrack`]): their packets go the usual way, only
//!   with the source port rewritten when the direct connection had to take another one.
//! - No ready endpoint: a TCP segment is answered with a RST from VIP:port, a UDP datagram
//!   with ICMP port unreachable from the VIP; both count [`DropReason::ServiceNoEndpoints`].

use super::trace::{Mode, Step};
use super::{reject, tunnel, Ingress, Stage};
use crate::counters::DropReason;
use crate::state::conntrack::Conn;
use crate::state::ct_state::State;
use crate::state::tables::{PeerEntry, PortEntry, Tables};
use crate::wire::buf::PacketBuf;
use crate::wire::l4::{tcp_reset, L4Info, L4Proto, TCP_ACK, TCP_RST, TCP_SYN};
use crate::wire::{self, forward_l3, icmp, nat, Ipv4Info, PROTO_TCP, PROTO_UDP};
use crate::{Datapath, Verdict};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// ICMP code "port unreachable".
const CODE_PORT_UNREACH: u8 = 3;

/// The next hop towards an endpoint.
enum Hop<'a> {
    Local(&'a PortEntry),
    Peer(&'a PeerEntry),
}

/// Packets of tracked connections. `None` when the packet belongs to none (it then goes
/// through the usual path).
pub(super) fn conntrack_packet<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    tables: &Tables,
    from: Ingress<'_>,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    now_ms: u64,
) -> Option<Result<Verdict, DropReason>> {
    m.enter(Stage::Conntrack);
    let Some((l4, reply, conn)) = tracked::<M>(dp, pkt, ip, now_ms) else {
        m.note(|| Step::NotTracked);
        return None;
    };
    m.note(|| Step::Tracked {
        reply,
        original: tuple_str(&conn.orig),
        reply_tuple: tuple_str(&conn.reply),
        state: conn.state().name().to_string(),
    });
    if reply {
        if M::LIVE {
            dp.ct.seen(&conn, true, l4.flags, now_ms);
        }
        return Some(nat_reply(dp, m, tables, from, &conn, pkt, ip, &l4));
    }
    if conn.is_direct() {
        return direct_orig(dp, from, conn, pkt, ip, &l4, now_ms);
    }
    let Ingress::Port(port, true) = from else {
        return None; // to a VIP but not routed by us: not ours to translate
    };
    let syn = l4.flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN;
    if l4.proto == L4Proto::Tcp && syn && conn.state() == State::Close {
        // The client reuses the tuple of a closed connection: a new connection.
        if M::LIVE {
            dp.ct.remove(&conn);
        }
        m.note(|| Step::NotTracked);
        return None;
    }
    if M::LIVE {
        dp.ct.seen(&conn, false, l4.flags, now_ms);
    }
    if ip.ttl <= 1 {
        return Some(reject::ttl_exceeded(dp, m, port, pkt, ip));
    }
    let hop = endpoint_hop(dp, tables, conn.reply.src);
    Some(nat_orig(dp, m, port, hop, &conn, pkt, ip, &l4))
}

/// The tracked connection of a TCP/UDP packet, if any, and whether the packet is a reply.
/// A trace only looks ([`Conntrack::peek`](crate::state::conntrack::Conntrack::peek)).
#[inline(always)]
fn tracked<M: Mode>(
    dp: &Datapath,
    pkt: &PacketBuf,
    ip: &Ipv4Info,
    now_ms: u64,
) -> Option<(L4Info, bool, std::sync::Arc<Conn>)> {
    if dp.ct.len() == 0 || !matches!(ip.proto, PROTO_TCP | PROTO_UDP) {
        return None;
    }
    let l4 = L4Info::parse(pkt.frame(), ip)?;
    let t = l4.tuple(ip);
    let (reply, conn) = if M::LIVE {
        dp.ct.lookup(&t, now_ms)?
    } else {
        dp.ct.peek(&t, now_ms)?
    };
    Some((l4, reply, conn))
}

/// `PROTO SRC:PORT -> DST:PORT`, for a trace.
fn tuple_str(t: &crate::wire::l4::Tuple) -> String {
    format!(
        "{:?} {}:{} -> {}:{}",
        t.proto, t.src, t.sport, t.dst, t.dport
    )
    .to_lowercase()
}

/// An original-direction packet of direct connection `conn`: accounted, its source port
/// rewritten when the connection has another one, then on its usual way (`None`), or the
/// rewrite's error.
fn direct_orig(
    dp: &Datapath,
    from: Ingress<'_>,
    conn: Arc<Conn>,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    l4: &L4Info,
    now_ms: u64,
) -> Option<Result<Verdict, DropReason>> {
    if !matches!(from, Ingress::Port(..)) {
        return None; // a direct connection's client is a local pod
    }
    let syn = l4.flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN;
    if l4.proto == L4Proto::Tcp && syn && conn.state() == State::Close {
        dp.ct.remove(&conn); // the tuple reused: a new connection, tracked afresh
        return None;
    }
    dp.ct.seen(&conn, false, l4.flags, now_ms);
    let r = &conn.reply;
    if r.dport == l4.sport {
        return None;
    }
    let to = nat::tuple(r.proto, r.dst, r.dport, r.src, r.sport);
    nat::rewrite_pkt(pkt, ip, l4, &to).err().map(Err)
}

/// A packet from local pod `port` that no tracked connection owns, on its way to be
/// switched or routed: when it opens a connection (a TCP SYN, any UDP datagram) to a
/// service endpoint's address and port, the connection is tracked as a direct one, and
/// its source port rewritten if a VIP connection holds its tuple at the endpoint. A pod
/// over half its share of the conntrack table (or a full table) keeps its direct flows
/// untracked: never a drop, and the rest of its share stays for its VIP connections.
pub(super) fn direct_flow(
    dp: &Datapath,
    tables: &Tables,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    now_ms: u64,
) -> Result<(), DropReason> {
    if !matches!(ip.proto, PROTO_TCP | PROTO_UDP) || ip.src == ip.dst {
        return Ok(());
    }
    let Some(l4) = L4Info::parse(pkt.frame(), ip) else {
        return Ok(());
    };
    if l4.proto == L4Proto::Tcp && l4.flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
        return Ok(());
    }
    let ep = std::net::SocketAddrV4::new(ip.dst, l4.dport);
    if !tables.services().is_endpoint(ep, l4.proto) {
        return Ok(());
    }
    let (held, share) = dp.ct.client_share(ip.src);
    if held >= share / 2 {
        return Ok(());
    }
    let Ok(conn) = dp.ct.create(l4.tuple(ip), ep, None, l4.flags, now_ms) else {
        return Ok(());
    };
    let r = &conn.reply;
    if !conn.is_direct() || r.dport == l4.sport {
        return Ok(());
    }
    let to = nat::tuple(r.proto, r.dst, r.dport, r.src, r.sport);
    nat::rewrite_pkt(pkt, ip, &l4, &to)
}

/// A routed packet from `port` to a service address that no tracked connection owns.
/// The caller has checked the TTL.
pub(super) fn service_from_port<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    tables: &Tables,
    port: &PortEntry,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    now_ms: u64,
) -> Result<Verdict, DropReason> {
    m.enter(Stage::Services);
    let services = tables.services();
    if !services.is_vip(ip.dst) && Some(ip.dst) != dp.config.dns_ip {
        return Err(DropReason::NoRoute);
    }
    let Some(l4) = L4Info::parse(pkt.frame(), ip) else {
        let ported = matches!(ip.proto, PROTO_TCP | PROTO_UDP) && !ip.is_later_fragment();
        return Err(if ported {
            DropReason::Malformed
        } else {
            DropReason::ServiceUnknownPort
        });
    };
    let Some(svc) = services.port(&(ip.dst, l4.dport, l4.proto)) else {
        return Err(DropReason::ServiceUnknownPort);
    };
    let t = l4.tuple(ip);
    let chosen = if M::LIVE {
        dp.lb.choose(svc, &t, now_ms)
    } else {
        let peeked = dp.lb.peek(svc, &t, now_ms);
        if let Some((endpoint, affinity)) = peeked {
            m.note(|| Step::Service {
                vip: std::net::SocketAddrV4::new(svc.vip, svc.port),
                proto: proto_name(svc.proto),
                endpoint,
                endpoints: svc.endpoints.len(),
                affinity,
            });
        }
        peeked.map(|(ep, _)| ep)
    };
    let Some(ep) = chosen else {
        return reject_no_endpoints(dp, m, port, pkt, ip, &l4);
    };
    let hop = endpoint_hop(dp, tables, *ep.ip());
    if matches!(hop, Some(Hop::Peer(_))) && tunnel::too_big_for_tunnel(dp, pkt, ip) {
        return reject::too_big(dp, m, port, pkt, ip);
    }
    let hairpin = matches!(hop, Some(Hop::Local(p)) if p.id == port.id);
    let snat = hairpin.then_some(dp.config.gateway);
    let conn = if M::LIVE {
        let conn = dp.ct.create(t, ep, snat, l4.flags, now_ms)?;
        dp.log_new_conn(port.id, &conn, l4.flags, now_ms);
        conn
    } else {
        dp.ct.probe(t, ep, snat, l4.flags, now_ms)?
    };
    nat_orig(dp, m, port, hop, &conn, pkt, ip, &l4)
}

/// `tcp` or `udp`.
fn proto_name(p: L4Proto) -> &'static str {
    match p {
        L4Proto::Tcp => "tcp",
        L4Proto::Udp => "udp",
    }
}

/// The next hop towards endpoint address `ep`.
fn endpoint_hop<'t>(dp: &Datapath, tables: &'t Tables, ep: Ipv4Addr) -> Option<Hop<'t>> {
    if let Some(p) = tables.port_by_ip(ep) {
        return Some(Hop::Local(p));
    }
    if dp.config.pod_cidr.contains(ep) {
        return None;
    }
    tables.peer_for_ip(ep).map(Hop::Peer)
}

/// Translates an original-direction packet of `conn` and sends it towards the endpoint.
#[allow(clippy::too_many_arguments)]
fn nat_orig<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    port: &PortEntry,
    hop: Option<Hop<'_>>,
    conn: &Conn,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    l4: &L4Info,
) -> Result<Verdict, DropReason> {
    let r = &conn.reply;
    let to = nat::tuple(r.proto, r.dst, r.dport, r.src, r.sport);
    m.note(|| Step::Dnat {
        from: std::net::SocketAddrV4::new(ip.dst, l4.dport),
        to: std::net::SocketAddrV4::new(r.src, r.sport),
        snat: (r.dst != conn.orig.src).then_some(r.dst),
    });
    match hop {
        Some(Hop::Local(to_port)) => {
            nat::rewrite_pkt(pkt, ip, l4, &to)?;
            m.enter(Stage::Deliver);
            forward_l3(pkt, ip, dp.config.router_mac, to_port.mac)?;
            Ok(dp.to_port(m, to_port, pkt))
        }
        Some(Hop::Peer(peer)) => {
            if tunnel::too_big_for_tunnel(dp, pkt, ip) {
                return reject::too_big(dp, m, port, pkt, ip);
            }
            nat::rewrite_pkt(pkt, ip, l4, &to)?;
            tunnel::to_peer(dp, m, port, peer, pkt, ip)
        }
        None => Err(DropReason::NoRoute),
    }
}

/// Translates a reply-direction packet of `conn` back to VIP -> client and delivers it
/// to the client's port.
#[allow(clippy::too_many_arguments)]
fn nat_reply<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    tables: &Tables,
    from: Ingress<'_>,
    conn: &Conn,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    l4: &L4Info,
) -> Result<Verdict, DropReason> {
    let o = &conn.orig;
    let Some(client) = tables.port_by_ip(o.src) else {
        return Err(match from {
            Ingress::Tunnel => DropReason::TunnelNotOurs,
            Ingress::Port(..) => DropReason::NoRoute,
        });
    };
    let routed = !matches!(from, Ingress::Port(_, false));
    if routed && ip.ttl <= 1 {
        return match from {
            Ingress::Port(port, _) => reject::ttl_exceeded(dp, m, port, pkt, ip),
            Ingress::Tunnel => Err(DropReason::TtlExceeded),
        };
    }
    let to = nat::tuple(o.proto, o.dst, o.dport, o.src, o.sport);
    m.note(|| Step::ReverseNat {
        src: std::net::SocketAddrV4::new(o.dst, o.dport),
        dst: std::net::SocketAddrV4::new(o.src, o.sport),
    });
    nat::rewrite_pkt(pkt, ip, l4, &to)?;
    if routed {
        forward_l3(pkt, ip, dp.config.router_mac, client.mac)?;
    } else {
        wire::put(pkt.frame_mut(), wire::ETH_DST, &client.mac.0)?;
    }
    Ok(dp.to_port(m, client, pkt))
}

/// Answers a packet to a service port without endpoints: RST for TCP (none to a RST),
/// ICMP port unreachable from the VIP for UDP.
fn reject_no_endpoints<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    port: &PortEntry,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    l4: &L4Info,
) -> Result<Verdict, DropReason> {
    let reason = DropReason::ServiceNoEndpoints;
    match l4.proto {
        L4Proto::Udp => {
            let (ty, code) = (icmp::ICMP_DEST_UNREACH, CODE_PORT_UNREACH);
            reject::reject_from(dp, m, port, pkt, ip, ip.dst, reason, ty, code, 0)
        }
        L4Proto::Tcp if l4.flags & TCP_RST != 0 => Err(reason),
        L4Proto::Tcp => {
            tcp_reset(pkt, ip, l4, dp.config.router_mac)?;
            dp.count_reject(m, port, reason);
            m.note(|| Step::Answer { what: "tcp rst" });
            Ok(dp.to_port(m, port, pkt))
        }
    }
}
