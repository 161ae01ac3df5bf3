//! Service load balancing at the client's node (kube-proxy's semantics): new connections to
//! a VIP, packets of tracked connections in both directions, and rejects.
//!
//! - Original direction (client pod -> VIP:port, routed): DNAT to the connection's endpoint
//!   (plus SNAT to the gateway on hairpin), then routed as usual: a local pod (MACs
//!   rewritten, TTL decremented) or a peer (VXLAN, PMTU checked on the packet *before* the
//!   rewrite, so that the ICMP error quotes what the client sent).
//! - Reply direction (endpoint -> client, from a pod or from the tunnel): reverse NAT (source
//!   back to VIP:port, destination back to the client), delivered to the client's port. A
//!   reply the endpoint switched at L2 (same subnet) keeps its MACs and TTL; a routed one is
//!   rewritten as routing does.
//! - No ready endpoint: a TCP segment is answered with a RST from VIP:port, a UDP datagram
//!   with ICMP port unreachable from the VIP; both count [`DropReason::ServiceNoEndpoints`].

use crate::conntrack::Conn;
use crate::counters::DropReason;
use crate::ct_state::State;
use crate::icmp;
use crate::nat::{self, L4Info, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::service::L4Proto;
use crate::switch::forward_l3;
use crate::tables::{PeerEntry, PortEntry};
use crate::types::Mac;
use crate::wire::{self, Ipv4Info, ETH_LEN, PROTO_TCP, PROTO_UDP};
use crate::{Datapath, PacketBuf, Tables, Verdict};
use std::net::Ipv4Addr;

/// ICMP code "port unreachable".
const CODE_PORT_UNREACH: u8 = 3;

/// Where a packet came from.
#[derive(Clone, Copy)]
pub(crate) enum Ingress<'a> {
    /// A local pod's port; `routed` when it was sent to the router MAC.
    Port(&'a PortEntry, bool),
    /// The tunnel (always routed).
    Tunnel,
}

/// The next hop towards an endpoint.
enum Hop<'a> {
    Local(&'a PortEntry),
    Peer(&'a PeerEntry),
}

impl Datapath {
    /// True when `dst` is service traffic: inside the service CIDR, or a VIP of the table.
    pub(crate) fn is_service_ip(&self, tables: &Tables, dst: Ipv4Addr) -> bool {
        self.config.service_cidr.is_some_and(|c| c.contains(dst)) || tables.services().is_vip(dst)
    }

    /// Packets of tracked connections. `None` when the packet belongs to none (it then goes
    /// through the usual path).
    pub(crate) fn conntrack_packet(
        &self,
        tables: &Tables,
        from: Ingress<'_>,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
        now_ms: u64,
    ) -> Option<Result<Verdict, DropReason>> {
        if self.ct.len() == 0 || !matches!(ip.proto, PROTO_TCP | PROTO_UDP) {
            return None;
        }
        let l4 = L4Info::parse(pkt.frame(), ip)?;
        let (reply, conn) = self.ct.lookup(&l4.tuple(ip), now_ms)?;
        if reply {
            self.ct.seen(&conn, true, l4.flags, now_ms);
            return Some(self.nat_reply(tables, from, &conn, pkt, ip, &l4));
        }
        let Ingress::Port(port, true) = from else {
            return None; // to a VIP but not routed by us: not ours to translate
        };
        let syn = l4.flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN;
        if l4.proto == L4Proto::Tcp && syn && conn.state() == State::Close {
            // The client reuses the tuple of a closed connection: a new connection.
            self.ct.remove(&conn);
            return None;
        }
        self.ct.seen(&conn, false, l4.flags, now_ms);
        if ip.ttl <= 1 {
            return Some(self.ttl_exceeded(port, pkt, ip));
        }
        let hop = self.endpoint_hop(tables, conn.reply.src);
        Some(self.nat_orig(port, hop, &conn, pkt, ip, &l4))
    }

    /// A routed packet from `port` to a service address that no tracked connection owns.
    /// The caller has checked the TTL.
    pub(crate) fn service_from_port(
        &self,
        tables: &Tables,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
        now_ms: u64,
    ) -> Result<Verdict, DropReason> {
        let services = tables.services();
        if !services.is_vip(ip.dst) && Some(ip.dst) != self.config.dns_ip {
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
        let Some(ep) = self.lb.choose(svc, &t, now_ms) else {
            return self.reject_no_endpoints(port, pkt, ip, &l4);
        };
        let hop = self.endpoint_hop(tables, *ep.ip());
        if matches!(hop, Some(Hop::Peer(_))) && self.too_big_for_tunnel(pkt, ip) {
            return self.reject_too_big(port, pkt, ip);
        }
        let hairpin = matches!(hop, Some(Hop::Local(p)) if p.id == port.id);
        let snat = hairpin.then_some(self.config.gateway);
        let conn = self.ct.create(t, ep, snat, l4.flags, now_ms)?;
        self.nat_orig(port, hop, &conn, pkt, ip, &l4)
    }

    /// The next hop towards endpoint address `ep`.
    fn endpoint_hop<'t>(&self, tables: &'t Tables, ep: Ipv4Addr) -> Option<Hop<'t>> {
        if let Some(p) = tables.port_by_ip(ep) {
            return Some(Hop::Local(p));
        }
        if self.config.pod_cidr.contains(ep) {
            return None;
        }
        tables.peer_for_ip(ep).map(Hop::Peer)
    }

    /// Translates an original-direction packet of `conn` and sends it towards the endpoint.
    fn nat_orig(
        &self,
        port: &PortEntry,
        hop: Option<Hop<'_>>,
        conn: &Conn,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
        l4: &L4Info,
    ) -> Result<Verdict, DropReason> {
        let r = &conn.reply;
        let to = nat::tuple(r.proto, r.dst, r.dport, r.src, r.sport);
        match hop {
            Some(Hop::Local(to_port)) => {
                nat::rewrite_pkt(pkt, ip, l4, &to)?;
                forward_l3(pkt, ip, self.config.router_mac, to_port.mac);
                Ok(self.to_port(to_port, pkt))
            }
            Some(Hop::Peer(peer)) => {
                if self.too_big_for_tunnel(pkt, ip) {
                    return self.reject_too_big(port, pkt, ip);
                }
                nat::rewrite_pkt(pkt, ip, l4, &to)?;
                self.to_peer(port, peer, pkt, ip)
            }
            None => Err(DropReason::NoRoute),
        }
    }

    /// Translates a reply-direction packet of `conn` back to VIP -> client and delivers it
    /// to the client's port.
    fn nat_reply(
        &self,
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
                Ingress::Port(port, _) => self.ttl_exceeded(port, pkt, ip),
                Ingress::Tunnel => Err(DropReason::TtlExceeded),
            };
        }
        let to = nat::tuple(o.proto, o.dst, o.dport, o.src, o.sport);
        nat::rewrite_pkt(pkt, ip, l4, &to)?;
        if routed {
            forward_l3(pkt, ip, self.config.router_mac, client.mac);
        } else {
            wire::put(pkt.frame_mut(), wire::ETH_DST, &client.mac.0);
        }
        Ok(self.to_port(client, pkt))
    }

    fn ttl_exceeded(
        &self,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
    ) -> Result<Verdict, DropReason> {
        let (reason, ty) = (DropReason::TtlExceeded, icmp::ICMP_TIME_EXCEEDED);
        self.reject(port, pkt, ip, reason, ty, 0, 0)
    }

    fn reject_too_big(
        &self,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
    ) -> Result<Verdict, DropReason> {
        let mtu = u32::from(self.config.pod_mtu);
        let (reason, ty, code) = (
            DropReason::TooBig,
            icmp::ICMP_DEST_UNREACH,
            icmp::CODE_FRAG_NEEDED,
        );
        self.reject(port, pkt, ip, reason, ty, code, mtu)
    }

    /// Answers a packet to a service port without endpoints: RST for TCP (none to a RST),
    /// ICMP port unreachable from the VIP for UDP.
    fn reject_no_endpoints(
        &self,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
        l4: &L4Info,
    ) -> Result<Verdict, DropReason> {
        let reason = DropReason::ServiceNoEndpoints;
        match l4.proto {
            L4Proto::Udp => {
                let (ty, code) = (icmp::ICMP_DEST_UNREACH, CODE_PORT_UNREACH);
                self.reject_from(port, pkt, ip, ip.dst, reason, ty, code, 0)
            }
            L4Proto::Tcp if l4.flags & TCP_RST != 0 => Err(reason),
            L4Proto::Tcp => {
                tcp_reset(pkt, ip, l4, self.config.router_mac);
                self.counters.count_drop(reason);
                port.counters.rx_drop();
                Ok(self.to_port(port, pkt))
            }
        }
    }
}

/// Rewrites the TCP segment in `pkt` into the RST its destination answers when nothing
/// listens (RFC 793, "reset generation"): from its destination back to its source; with
/// ACK in the segment, `seq = SEG.ACK` and RST alone; else `seq = 0`, RST|ACK and
/// `ack = SEG.SEQ + SEG.LEN` (SYN and FIN counting one each). No options, window 0.
pub(crate) fn tcp_reset(pkt: &mut PacketBuf, ip: &Ipv4Info, l4: &L4Info, src_mac: Mac) {
    let f = pkt.frame();
    let dst_mac = wire::mac_at(f, wire::ETH_SRC);
    let seg_seq = wire::be32(f, l4.off + 4);
    let seg_ack = wire::be32(f, l4.off + 8);
    let ctl = u32::from(l4.flags & TCP_SYN != 0) + u32::from(l4.flags & TCP_FIN != 0);
    let seg_len = (l4.payload_len(ip) as u32).wrapping_add(ctl);
    let (seq, ack, flags) = if l4.flags & TCP_ACK != 0 {
        (seg_ack, 0, TCP_RST)
    } else {
        (0, seg_seq.wrapping_add(seg_len), TCP_RST | TCP_ACK)
    };
    const TCP_LEN: usize = 20;
    let total = 20 + TCP_LEN;
    pkt.set_len(ETH_LEN + total); // every TCP frame has at least this much
    pkt.vnet = Default::default();
    let f = pkt.frame_mut();
    wire::set_eth_addrs(f, src_mac, dst_mac);
    wire::put16(f, wire::ETH_TYPE, wire::ETHERTYPE_IPV4);
    icmp::write_ipv4(f, ETH_LEN, 0, total, 0, PROTO_TCP, ip.dst, ip.src);
    let mut h = [0u8; TCP_LEN];
    h[0..2].copy_from_slice(&l4.dport.to_be_bytes());
    h[2..4].copy_from_slice(&l4.sport.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ack.to_be_bytes());
    h[12] = (TCP_LEN as u8 / 4) << 4;
    h[13] = flags;
    let sum = wire::pseudo_header_sum(ip.dst, ip.src, PROTO_TCP, TCP_LEN);
    let c = !wire::csum_fold(wire::csum_add(sum, &h));
    h[16..18].copy_from_slice(&c.to_be_bytes());
    wire::put(f, ETH_LEN + 20, &h);
}
