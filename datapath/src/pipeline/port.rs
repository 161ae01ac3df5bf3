//! Stage [`Stage::PortIngress`](super::Stage::PortIngress): what a pod may send at all, and
//! stage [`Stage::Switch`](super::Stage::Switch): L2 delivery to another pod of the node.
//!
//! Order of the checks (the first failing one names the drop): frame too short, bad vnet
//! header, spoofed source MAC, the port's rate limits ([`crate::ratelimit`]: ARP, and
//! group-addressed frames other than ARP), ethertype (ARP goes to the ARP stage; IPv6, VLAN
//! and others are dropped), IPv4 header validity, spoofed source IP, group destination MAC.

use super::trace::{Mode, Step};
use super::Stage;
use crate::counters::DropReason;
use crate::ratelimit::{RateBucket, RateLimit};
use crate::state::tables::{PortEntry, Tables};
use crate::types::Mac;
use crate::wire::buf::{
    PacketBuf, VnetHdr, VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP,
    VNET_GSO_UDP_L4,
};
use crate::wire::{Ipv4Info, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_LEN};
use crate::{Datapath, Verdict};
use etherparse::Ethernet2HeaderSlice;

/// A frame the port ingress stage let through.
pub(super) enum Admitted {
    /// An ARP packet (within the port's ARP rate limit).
    Arp,
    /// A unicast IPv4 packet from the pod's own addresses, to `dst`.
    Ipv4 {
        /// The destination MAC.
        dst: Mac,
        /// The validated IPv4 header.
        ip: Ipv4Info,
    },
}

/// Checks a frame from `port`: parse, vnet header, source MAC, rate limits, ethertype, IPv4
/// header and source IP, group destination.
pub(super) fn admit<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    port: &PortEntry,
    pkt: &PacketBuf,
    now_ms: u64,
) -> Result<Admitted, DropReason> {
    m.enter(Stage::PortIngress);
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
        m.note(|| Step::SpoofGuard {
            mac: port.mac,
            src: None,
        });
        if !take(m, "arp", &limits.arp_bucket, dp.config.arp_limit, now_ms) {
            return Err(DropReason::ArpRateLimited);
        }
    } else if dst.is_multicast() {
        let (b, l) = (&limits.broadcast_bucket, dp.config.broadcast_limit);
        if !take(m, "broadcast", b, l, now_ms) {
            return Err(DropReason::BroadcastRateLimited);
        }
    }
    match ethertype {
        ETHERTYPE_IPV4 => {}
        ETHERTYPE_ARP => return Ok(Admitted::Arp),
        ETHERTYPE_IPV6 => return Err(DropReason::Ipv6),
        _ => return Err(DropReason::UnknownEthertype),
    }
    let ip = Ipv4Info::parse(frame, ETH_LEN).ok_or(DropReason::Malformed)?;
    if ip.src != port.ip {
        return Err(DropReason::SpoofedIp);
    }
    m.note(|| Step::SpoofGuard {
        mac: port.mac,
        src: Some(ip.src),
    });
    if dst.is_multicast() {
        return Err(DropReason::Multicast);
    }
    Ok(Admitted::Ipv4 { dst, ip })
}

/// Takes a token of `bucket` under `limit` (live), or only looks whether one is there
/// (traced).
#[inline(always)]
fn take<M: Mode>(
    m: &mut M,
    name: &'static str,
    bucket: &RateBucket,
    limit: RateLimit,
    now_ms: u64,
) -> bool {
    let ok = if M::LIVE {
        bucket.admit(limit, now_ms)
    } else {
        bucket.would_admit(limit, now_ms)
    };
    m.note(|| Step::RateLimit {
        bucket: name,
        limit: limit.to_string(),
        within: ok,
    });
    ok
}

/// L2: a frame to a local pod's MAC goes to that pod unchanged; to the sender's own MAC it
/// is a hairpin, to any other MAC an unknown destination.
pub(super) fn switch<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    tables: &Tables,
    port: &PortEntry,
    pkt: &PacketBuf,
    dst: Mac,
) -> Result<Verdict, DropReason> {
    m.enter(Stage::Switch);
    match tables.port_by_mac(dst) {
        Some(to) if to.id == port.id => Err(DropReason::Hairpin),
        Some(to) => Ok(dp.to_port(m, to, pkt)),
        None => Err(DropReason::UnknownDestMac),
    }
}

/// Checks that the vnet header is one a TAP can take back: a known GSO type with a non-zero
/// segment size, and a partial checksum that lies inside the frame.
fn check_vnet(v: &VnetHdr, frame_len: usize) -> Result<(), DropReason> {
    if v.needs_csum() && usize::from(v.csum_start) + usize::from(v.csum_offset) + 2 > frame_len {
        return Err(DropReason::BadVnetHdr);
    }
    let gso = v.gso_type & !VNET_GSO_ECN;
    match gso {
        VNET_GSO_NONE => Ok(()),
        VNET_GSO_TCPV4 | VNET_GSO_UDP | VNET_GSO_TCPV6 | VNET_GSO_UDP_L4 if v.gso_size > 0 => {
            Ok(())
        }
        _ => Err(DropReason::BadVnetHdr),
    }
}
