//! Ingress from pods: classification, anti-spoofing and L2 switching; ARP, the local host
//! stack and L3 routing are in their own modules.
//!
//! Order of the checks (the first failing one names the drop):
//! unknown port, frame too short, bad vnet header, spoofed source MAC, the port's rate limits
//! ([`crate::ratelimit`]: ARP, and group-addressed frames other than ARP), ethertype (ARP goes
//! to [`crate::arp`]; IPv6, VLAN and others are dropped), IPv4 header validity, spoofed source
//! IP, group destination MAC, a tracked service connection ([`crate::lb`]: NATed), router
//! MAC (routed), a local pod's MAC (switched), otherwise unknown destination.

use crate::buf::{
    VnetHdr, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP, VNET_GSO_UDP_L4,
};
use crate::counters::{DropReason, LinkCounters};
use crate::lb::Ingress;
use crate::tables::PortEntry;
use crate::types::Mac;
use crate::wire::{self, Ipv4Info, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_LEN};
use crate::{Datapath, PacketBuf, PortId, Tables, Verdict};
use etherparse::Ethernet2HeaderSlice;

impl Datapath {
    /// Decides what happens to a frame read from `in_port`'s TAP. `now_ms` is a monotonic
    /// clock in milliseconds, passed in by the shell.
    ///
    /// Counting (done here, so the shell need not): the ingress port counts `rx` for every
    /// frame; a drop counts its [`DropReason`] node-wide and `rx_drop` on the ingress port;
    /// `ToPort(p)` counts `tx` of the outgoing frame on port `p`; `ToTunnel` counts `tx` of the
    /// inner frame (without the VXLAN header) on the peer. A frame on a port the tables do not
    /// know counts only [`DropReason::UnknownPort`].
    ///
    /// The buffer's vnet header is passed through unchanged when the frame is forwarded to
    /// another pod or into the tunnel, and reset to [`VnetHdr::default`] when the switch
    /// answers itself (ARP, ICMP).
    pub fn from_port(
        &self,
        tables: &Tables,
        in_port: PortId,
        pkt: &mut PacketBuf,
        now_ms: u64,
    ) -> Verdict {
        let Some(port) = tables.port(in_port) else {
            self.counters.count_drop(DropReason::UnknownPort);
            return Verdict::Drop(DropReason::UnknownPort);
        };
        port.counters.rx(pkt.len());
        match self.port_ingress(tables, port, pkt, now_ms) {
            Ok(v) => v,
            Err(reason) => self.drop_on(&port.counters, reason),
        }
    }

    fn port_ingress(
        &self,
        tables: &Tables,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        now_ms: u64,
    ) -> Result<Verdict, DropReason> {
        let frame = pkt.frame();
        let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| DropReason::Malformed)?;
        check_vnet(&pkt.vnet, frame.len())?;
        if Mac(eth.source()) != port.mac {
            return Err(DropReason::SpoofedMac);
        }
        let dst = Mac(eth.destination());
        let ethertype = eth.ether_type().0;
        let limits = &port.counters;
        if ethertype == ETHERTYPE_ARP {
            if !limits.arp_bucket.admit(self.config.arp_limit, now_ms) {
                return Err(DropReason::ArpRateLimited);
            }
        } else if dst.is_multicast()
            && !limits
                .broadcast_bucket
                .admit(self.config.broadcast_limit, now_ms)
        {
            return Err(DropReason::BroadcastRateLimited);
        }
        match ethertype {
            ETHERTYPE_IPV4 => {}
            ETHERTYPE_ARP => return self.arp_from_port(tables, port, pkt),
            ETHERTYPE_IPV6 => return Err(DropReason::Ipv6),
            _ => return Err(DropReason::UnknownEthertype),
        }
        let ip = Ipv4Info::parse(frame, ETH_LEN).ok_or(DropReason::Malformed)?;
        if ip.src != port.ip {
            return Err(DropReason::SpoofedIp);
        }
        if dst.is_multicast() {
            return Err(DropReason::Multicast);
        }
        let routed = dst == self.config.router_mac;
        let from = Ingress::Port(port, routed);
        if let Some(v) = self.conntrack_packet(tables, from, pkt, &ip, now_ms) {
            return v;
        }
        if routed {
            return self.route_from_port(tables, port, pkt, &ip, now_ms);
        }
        match tables.port_by_mac(dst) {
            Some(to) if to.id == port.id => Err(DropReason::Hairpin),
            Some(to) => Ok(self.to_port(to, pkt)),
            None => Err(DropReason::UnknownDestMac),
        }
    }

    /// Counts a drop of a frame received on `link` and returns its verdict.
    pub(crate) fn drop_on(&self, link: &LinkCounters, reason: DropReason) -> Verdict {
        self.counters.count_drop(reason);
        link.rx_drop();
        Verdict::Drop(reason)
    }

    /// Counts the frame as sent on `to` and returns `ToPort(to)`.
    pub(crate) fn to_port(&self, to: &PortEntry, pkt: &PacketBuf) -> Verdict {
        to.counters.tx(pkt.len());
        Verdict::ToPort(to.id)
    }
}

/// Checks that the vnet header is one a TAP can take back: a known GSO type with a non-zero
/// segment size, and a partial checksum that lies inside the frame.
fn check_vnet(v: &VnetHdr, frame_len: usize) -> Result<(), DropReason> {
    if v.needs_csum() && usize::from(v.csum_start) + usize::from(v.csum_offset) + 2 > frame_len {
        return Err(DropReason::BadVnetHdr);
    }
    let gso = v.gso_type & !crate::buf::VNET_GSO_ECN;
    match gso {
        VNET_GSO_NONE => Ok(()),
        VNET_GSO_TCPV4 | VNET_GSO_UDP | VNET_GSO_TCPV6 | VNET_GSO_UDP_L4 if v.gso_size > 0 => {
            Ok(())
        }
        _ => Err(DropReason::BadVnetHdr),
    }
}

/// Turns a routed IPv4 frame into one leaving the router: trims Ethernet padding, sets the
/// MACs and decrements the TTL (incremental checksum). The caller has checked TTL > 1.
pub(crate) fn forward_l3(pkt: &mut PacketBuf, ip: &Ipv4Info, src: Mac, dst: Mac) {
    if ip.end() < pkt.len() {
        pkt.set_len(ip.end());
    }
    let f = pkt.frame_mut();
    wire::set_eth_addrs(f, src, dst);
    wire::ipv4_dec_ttl(f, ip.off);
}
