//! The ICMP errors the router sends back to a pod about a frame it does not forward (time
//! exceeded, fragmentation needed, port unreachable): the drop is counted, and the frame's
//! buffer becomes the error, `ToPort` of the pod that sent it. Used by the route, services
//! and tunnel egress stages.

use super::trace::{Mode, Step};
use crate::counters::DropReason;
use crate::state::tables::PortEntry;
use crate::wire::buf::PacketBuf;
use crate::wire::{icmp, Ipv4Info};
use crate::{Datapath, Verdict};
use std::net::Ipv4Addr;

/// Counts `reason` as a drop of a frame from `port`, then turns the frame into an ICMP
/// error from the gateway back to the pod when one may be sent (`ToPort(port)`), else
/// just drops it.
#[allow(clippy::too_many_arguments)]
pub(super) fn reject<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    port: &PortEntry,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    reason: DropReason,
    ty: u8,
    code: u8,
    rest: u32,
) -> Result<Verdict, DropReason> {
    let gw = dp.config.gateway;
    reject_from(dp, m, port, pkt, ip, gw, reason, ty, code, rest)
}

/// [`reject`] with the ICMP error sent from `src` (a VIP, for instance).
#[allow(clippy::too_many_arguments)]
pub(super) fn reject_from<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    port: &PortEntry,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    src: Ipv4Addr,
    reason: DropReason,
    ty: u8,
    code: u8,
    rest: u32,
) -> Result<Verdict, DropReason> {
    let cfg = &dp.config;
    if !icmp::icmp_error(pkt, ip, cfg.router_mac, src, ty, code, rest) {
        return Err(reason);
    }
    dp.count_reject(m, port, reason);
    m.note(|| Step::Answer { what: "icmp error" });
    Ok(dp.to_port(m, port, pkt))
}

/// Answers a packet whose TTL ran out with ICMP time exceeded.
pub(super) fn ttl_exceeded<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    port: &PortEntry,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
) -> Result<Verdict, DropReason> {
    let (reason, ty) = (DropReason::TtlExceeded, icmp::ICMP_TIME_EXCEEDED);
    reject(dp, m, port, pkt, ip, reason, ty, 0, 0)
}

/// Answers a packet too big for the tunnel (DF set) with ICMP fragmentation needed
/// (next-hop MTU `pod_mtu`).
pub(super) fn too_big<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    port: &PortEntry,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
) -> Result<Verdict, DropReason> {
    let mtu = u32::from(dp.config.pod_mtu);
    let (reason, ty, code) = (
        DropReason::TooBig,
        icmp::ICMP_DEST_UNREACH,
        icmp::CODE_FRAG_NEEDED,
    );
    reject(dp, m, port, pkt, ip, reason, ty, code, mtu)
}
