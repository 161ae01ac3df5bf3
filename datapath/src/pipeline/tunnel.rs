//! The tunnel: stage [`Stage::TunnelIngress`](super::Stage::TunnelIngress) (VXLAN
//! decapsulation, split horizon) and stage [`Stage::TunnelEgress`](super::Stage::TunnelEgress)
//! (path MTU, encapsulation towards a peer; segmentation for the wire is
//! [`crate::wire::gso`]'s).
//!
//! Inner frames follow flannel's vxlan backend: inner source MAC is our VTEP MAC, inner
//! destination the peer's VTEP MAC. The 8-byte header is pushed in place into the buffer's
//! headroom; the outer UDP/IP headers are the shell's socket's business.
//!
//! Path MTU: the tunnel carries inner IP packets of up to `pod_mtu` bytes. A bigger non-GSO
//! packet with DF set is answered with ICMP "fragmentation needed" (next-hop MTU =
//! `pod_mtu`) and counted as [`DropReason::TooBig`]; without DF it goes into the tunnel
//! whole and [`Datapath::segment_for_tunnel`] fragments it (see `wire/frag.rs`).
//!
//! Nothing received from the tunnel goes back into it, except the switch's own answer (an
//! ICMP echo reply to a peer that pinged our gateway or VTEP address).
//!
//! Interop with flannel's vxlan backend: a Linux node sends inner frames from its own VTEP
//! MAC to ours. Peers are authenticated by their underlay address and the VNI; the inner
//! destination MAC is only required to be unicast, so a peer with a stale view of our VTEP
//! MAC still gets through.
//!
//! Anti-spoofing: a peer speaks only for its own pod subnet. An inner IPv4 source outside
//! it (one of our pods, our gateway, the DNS IP, a VIP, another node's pod) is dropped as
//! [`DropReason::TunnelSpoofedSource`] before connection tracking sees the packet, so a
//! host that can forge a peer's underlay address can neither reach a pod as someone else
//! nor have forged "endpoint replies" reverse-translated. A flannel node's own traffic
//! leaves from its VTEP address, the `.0` of its subnet, which is inside it.

use super::trace::{Mode, Step};
use super::{reject, Stage};
use crate::counters::{Direction, DropReason};
use crate::state::tables::{PeerEntry, PortEntry, Tables};
use crate::types::Mac;
use crate::wire::buf::PacketBuf;
use crate::wire::gso;
use crate::wire::ip;
use crate::wire::vxlan::{wire_ip_len, VxlanHdr, VXLAN_HDR_LEN};
use crate::wire::{
    self, forward_l3, icmp, Ipv4Info, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_LEN,
};
use crate::{Datapath, Verdict};
use etherparse::Ethernet2HeaderSlice;
use std::net::SocketAddrV4;

/// Where a packet from the tunnel goes, once decapsulated.
pub(super) enum TunnelRoute<'t> {
    /// An ICMP echo request to our gateway or VTEP address: answered to the peer.
    Host,
    /// A local pod.
    Local(&'t PortEntry),
}

/// Stage [`Stage::TunnelIngress`](super::Stage::TunnelIngress): checks the VXLAN header
/// and the VNI, pulls the header, resets the vnet header, and checks that the inner frame is
/// unicast IPv4 with a valid header from an address in `peer`'s pod subnet.
pub(super) fn decap(
    dp: &Datapath,
    peer: &PeerEntry,
    pkt: &mut PacketBuf,
) -> Result<Ipv4Info, DropReason> {
    let vx = VxlanHdr::parse(pkt.frame())?;
    if vx.vni != dp.config.vni {
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
    if !peer.pod_cidr.contains(ip.src) {
        return Err(DropReason::TunnelSpoofedSource);
    }
    Ok(ip)
}

/// Where the decapsulated packet `ip` (in `frame`) goes. Split horizon: only to the host
/// stack or a local pod. Errors: anything but an echo request for our gateway or VTEP
/// address is [`DropReason::LocalUnsupported`]; not a local pod's address,
/// [`DropReason::TunnelNotOurs`]; TTL 1 or less, [`DropReason::TtlExceeded`].
pub(super) fn route<'t>(
    dp: &Datapath,
    tables: &'t Tables,
    frame: &[u8],
    ip: &Ipv4Info,
) -> Result<TunnelRoute<'t>, DropReason> {
    let cfg = &dp.config;
    if ip.dst == cfg.gateway || ip.dst == cfg.vtep_ip {
        if !icmp::is_echo_request(frame, ip) {
            return Err(DropReason::LocalUnsupported);
        }
        return Ok(TunnelRoute::Host);
    }
    let Some(to) = tables.port_by_ip(ip.dst) else {
        return Err(DropReason::TunnelNotOurs);
    };
    if ip.ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    Ok(TunnelRoute::Local(to))
}

/// True when the packet must not go into the tunnel as it is: bigger than `pod_mtu` (per
/// segment for GSO) with DF set.
pub(super) fn too_big_for_tunnel(dp: &Datapath, pkt: &PacketBuf, ip: &Ipv4Info) -> bool {
    wire_ip_len(pkt, ip) > usize::from(dp.config.pod_mtu) && ip.df()
}

/// Routes a pod's IPv4 packet to a peer node: PMTU check, inner MACs rewritten to
/// (our VTEP -> peer VTEP), TTL decremented, VXLAN header pushed.
pub(super) fn to_peer<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    port: &PortEntry,
    peer: &PeerEntry,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
) -> Result<Verdict, DropReason> {
    m.enter(Stage::TunnelEgress);
    if too_big_for_tunnel(dp, pkt, ip) {
        return reject::too_big(dp, m, port, pkt, ip);
    }
    forward_l3(pkt, ip, dp.config.vtep_mac, peer.vtep_mac)?;
    encap_to(dp, m, peer, pkt)
}

/// Pushes the VXLAN header in front of the inner frame, counts the inner frame as sent to
/// `peer` and returns `ToTunnel`.
pub(super) fn encap_to<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    peer: &PeerEntry,
    pkt: &mut PacketBuf,
) -> Result<Verdict, DropReason> {
    let inner = pkt.len();
    let h = pkt.push_front(VXLAN_HDR_LEN).ok_or(DropReason::Malformed)?;
    VxlanHdr { vni: dp.config.vni }.write(h)?;
    if M::LIVE {
        peer.counters.tx(inner);
    }
    m.note(|| Step::Encap {
        peer: peer.id,
        outer_src: None,
        outer_dst: peer.underlay,
        udp_src: dp.config.vxlan_port,
        udp_dst: dp.config.vxlan_port,
        vni: dp.config.vni,
        inner_src_mac: dp.config.vtep_mac,
        inner_dst_mac: peer.vtep_mac,
    });
    Ok(Verdict::ToTunnel {
        peer: peer.id,
        dst: SocketAddrV4::new(peer.underlay, dp.config.vxlan_port),
    })
}

/// [`Datapath::needs_segmentation`].
pub(super) fn needs_segmentation(dp: &Datapath, pkt: &PacketBuf) -> bool {
    if pkt.vnet.is_gso() || pkt.vnet.needs_csum() {
        return true;
    }
    let inner = pkt.frame().get(VXLAN_HDR_LEN..).unwrap_or_default();
    // A frame too short for these fields is not one to segment (segment_for_tunnel would
    // refuse it as malformed anyway).
    let total = wire::be16(inner, ETH_LEN + ip::TOTAL_LEN).map_or(0, usize::from);
    wire::be16(inner, wire::ETH_TYPE) == Ok(ETHERTYPE_IPV4)
        && total > usize::from(dp.config.pod_mtu)
}

/// [`Datapath::segment_for_tunnel`].
pub(super) fn segment_for_tunnel(
    dp: &Datapath,
    pkt: &PacketBuf,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), DropReason> {
    out.clear();
    let r = gso::segment(dp.config.pod_mtu, pkt.frame(), &pkt.vnet, out);
    if let Err(reason) = r {
        out.clear();
        dp.counters.count_drop(reason, Direction::Egress);
    }
    r
}
