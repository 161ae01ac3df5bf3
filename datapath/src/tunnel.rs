//! Ingress from the tunnel: VXLAN decapsulation, delivery to local pods, and split horizon.
//!
//! Nothing received from the tunnel goes back into it, except the switch's own answer (an
//! ICMP echo reply to a peer that pinged our gateway or VTEP address).
//!
//! Interop with flannel's vxlan backend: a Linux node sends inner frames from its own VTEP
//! MAC to ours. Peers are authenticated by their underlay address and the VNI; the inner
//! destination MAC is only required to be unicast, so a peer with a stale view of our VTEP
//! MAC still gets through.

use crate::counters::DropReason;
use crate::icmp;
use crate::lb::Ingress;
use crate::switch::forward_l3;
use crate::tables::PeerEntry;
use crate::types::Mac;
use crate::vxlan::{VxlanHdr, VXLAN_HDR_LEN};
use crate::wire::{Ipv4Info, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_LEN};
use crate::{Datapath, PacketBuf, Tables, Verdict};
use etherparse::Ethernet2HeaderSlice;
use std::net::SocketAddrV4;

impl Datapath {
    /// Decides what happens to a UDP datagram received on the VXLAN socket from `src`; the
    /// buffer holds the UDP payload (VXLAN header + inner frame, see
    /// [`PacketBuf::set_udp_read_len`]). `now_ms` is the shell's monotonic clock.
    ///
    /// - `src` must be a peer's underlay address ([`DropReason::TunnelUnknownPeer`]), the
    ///   VXLAN header well-formed ([`DropReason::TunnelMalformed`]) and its VNI ours
    ///   ([`DropReason::TunnelUnknownVni`]);
    /// - the inner frame must be unicast IPv4 (inner ARP is [`DropReason::ArpIgnored`]);
    /// - to a local pod: MACs rewritten (router -> pod), TTL decremented, the VXLAN header
    ///   pulled and the vnet header reset: `ToPort(pod)`;
    /// - an ICMP echo request to our gateway or VTEP address: answered back into the tunnel
    ///   to the same peer; anything else for those addresses is
    ///   [`DropReason::LocalUnsupported`];
    /// - anything else, including another peer's subnet: [`DropReason::TunnelNotOurs`]
    ///   (split horizon: never `ToTunnel` for a forwarded packet);
    /// - a reply of a tracked service connection (endpoint -> client on this node) is reverse
    ///   NATed (source back to VIP:port) first, then delivered as above.
    ///
    /// Counting: the peer counts `rx` of the inner frame length (datagram less 8 bytes) for
    /// every datagram from a known peer, and `rx_drop` with each drop; `ToPort(p)` counts `tx`
    /// on port `p`; an echo reply counts `tx` of its inner frame on the peer.
    pub fn from_tunnel(
        &self,
        tables: &Tables,
        src: SocketAddrV4,
        pkt: &mut PacketBuf,
        now_ms: u64,
    ) -> Verdict {
        let Some(peer) = tables.peer_by_underlay(*src.ip()) else {
            self.counters.count_drop(DropReason::TunnelUnknownPeer);
            return Verdict::Drop(DropReason::TunnelUnknownPeer);
        };
        peer.counters.rx(pkt.len().saturating_sub(VXLAN_HDR_LEN));
        match self.tunnel_ingress(tables, peer, pkt, now_ms) {
            Ok(v) => v,
            Err(reason) => self.drop_on(&peer.counters, reason),
        }
    }

    fn tunnel_ingress(
        &self,
        tables: &Tables,
        peer: &PeerEntry,
        pkt: &mut PacketBuf,
        now_ms: u64,
    ) -> Result<Verdict, DropReason> {
        let vx = VxlanHdr::parse(pkt.frame())?;
        if vx.vni != self.config.vni {
            return Err(DropReason::TunnelUnknownVni);
        }
        pkt.pull_front(VXLAN_HDR_LEN);
        pkt.vnet = Default::default();
        let frame = pkt.frame();
        let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| DropReason::Malformed)?;
        match eth.ether_type().0 {
            ETHERTYPE_IPV4 => {}
            ETHERTYPE_ARP => return Err(DropReason::ArpIgnored),
            ETHERTYPE_IPV6 => return Err(DropReason::Ipv6),
            _ => return Err(DropReason::UnknownEthertype),
        }
        if Mac(eth.destination()).is_multicast() {
            return Err(DropReason::Multicast);
        }
        let ip = Ipv4Info::parse(frame, ETH_LEN).ok_or(DropReason::Malformed)?;
        if let Some(v) = self.conntrack_packet(tables, Ingress::Tunnel, pkt, &ip, now_ms) {
            return v;
        }
        let frame = pkt.frame();
        let cfg = &self.config;
        if ip.dst == cfg.gateway || ip.dst == cfg.vtep_ip {
            if !icmp::is_echo_request(frame, &ip) {
                return Err(DropReason::LocalUnsupported);
            }
            icmp::echo_reply(pkt, &ip, cfg.vtep_mac, peer.vtep_mac)?;
            return self.encap_to(peer, pkt);
        }
        let Some(to) = tables.port_by_ip(ip.dst) else {
            return Err(DropReason::TunnelNotOurs);
        };
        if ip.ttl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        forward_l3(pkt, &ip, cfg.router_mac, to.mac);
        Ok(self.to_port(to, pkt))
    }
}
