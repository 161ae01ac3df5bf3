//! Stage [`Stage::Arp`](super::Stage::Arp): the switch answers ARP requests from its own
//! tables and never floods (the packet format is [`crate::wire::arp`]).
//!
//! A request for the gateway or the node's VTEP address is answered with the router MAC, a
//! request for a local pod's address with that pod's MAC. The request's buffer is rewritten
//! in place into the reply (42 bytes, padding dropped) and goes back out of the ingress port.

use super::trace::{Mode, Step};
use super::Stage;
use crate::counters::DropReason;
use crate::state::tables::{PortEntry, Tables};
use crate::types::Mac;
use crate::wire::arp::{self, ArpPacket, OP_REQUEST};
use crate::wire::buf::PacketBuf;
use crate::{Datapath, Verdict};
use std::net::Ipv4Addr;

/// Answers the ARP request in `pkt` from `port` for the gateway, the VTEP address or a
/// local pod; anything else is ignored (never flooded), a sender other than the pod is
/// spoofing.
pub(super) fn arp_from_port<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    tables: &Tables,
    port: &PortEntry,
    pkt: &mut PacketBuf,
) -> Result<Verdict, DropReason> {
    m.enter(Stage::Arp);
    let a = ArpPacket::parse(pkt.frame())?;
    if a.sender_mac == port.mac && a.sender_ip.is_unspecified() {
        // An RFC 5227 probe: nobody else owns the pod's address here, stay silent.
        return Err(DropReason::ArpIgnored);
    }
    if a.sender_mac != port.mac || a.sender_ip != port.ip {
        return Err(DropReason::SpoofedArp);
    }
    if a.op != OP_REQUEST || a.target_ip == port.ip {
        return Err(DropReason::ArpIgnored);
    }
    let answer = arp_answer(dp, tables, a.target_ip).ok_or(DropReason::ArpIgnored)?;
    arp::write_reply(pkt, answer, a.target_ip, port.mac, port.ip)?;
    m.note(|| Step::ArpAnswer {
        target: a.target_ip,
        mac: answer,
    });
    Ok(dp.to_port(m, port, pkt))
}

/// The MAC that answers for `ip` on this node, if any.
fn arp_answer(dp: &Datapath, tables: &Tables, ip: Ipv4Addr) -> Option<Mac> {
    if ip == dp.config.gateway || ip == dp.config.vtep_ip {
        return Some(dp.config.router_mac);
    }
    tables.port_by_ip(ip).map(|p| p.mac)
}
