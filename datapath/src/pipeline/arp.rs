//! Stage [`Stage::Arp`](super::Stage::Arp): the switch answers ARP requests from its own tables and never floods.
//!
//! A request for the gateway or the node's VTEP address is answered with the router MAC, a
//! request for a local pod's address with that pod's MAC. The request's buffer is rewritten
//! in place into the reply (42 bytes, padding dropped) and goes back out of the ingress port.

use crate::counters::DropReason;
use crate::state::tables::{PortEntry, Tables};
use crate::types::Mac;
use crate::wire::buf::PacketBuf;
use crate::wire::{self, ETH_LEN};
use crate::{Datapath, Verdict};
use etherparse::{ArpHardwareId, ArpPacketSlice, EtherType};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
const ARP_LEN: usize = 28;
/// Offsets inside an Ethernet/IPv4 ARP packet.
const OP: usize = 6;
const SHA: usize = 8;
const SPA: usize = 14;
const THA: usize = 18;
const TPA: usize = 24;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

pub(super) fn arp_from_port(
    dp: &Datapath,
    tables: &Tables,
    port: &PortEntry,
    pkt: &mut PacketBuf,
) -> Result<Verdict, DropReason> {
    let body = pkt.frame().get(ETH_LEN..).unwrap_or_default();
    let arp = ArpPacketSlice::from_slice(body).map_err(|_| DropReason::Malformed)?;
    if arp.hw_addr_type() != ArpHardwareId::ETHERNET
        || arp.proto_addr_type() != EtherType::IPV4
        || arp.hw_addr_size() != 6
        || arp.proto_addr_size() != 4
    {
        return Err(DropReason::ArpIgnored);
    }
    // Lengths checked: 8 + 2 * 6 + 2 * 4 = 28 bytes are present.
    let a = arp.slice();
    let sender_mac = wire::mac_at(a, SHA);
    let sender_ip = wire::ipv4_at(a, SPA);
    let target_ip = wire::ipv4_at(a, TPA);
    if sender_mac == port.mac && sender_ip.is_unspecified() {
        // An RFC 5227 probe: nobody else owns the pod's address here, stay silent.
        return Err(DropReason::ArpIgnored);
    }
    if sender_mac != port.mac || sender_ip != port.ip {
        return Err(DropReason::SpoofedArp);
    }
    if wire::be16(a, OP) != OP_REQUEST || target_ip == port.ip {
        return Err(DropReason::ArpIgnored);
    }
    let answer = arp_answer(dp, tables, target_ip).ok_or(DropReason::ArpIgnored)?;

    pkt.set_len(ETH_LEN + ARP_LEN);
    pkt.vnet = Default::default();
    let f = pkt.frame_mut();
    wire::set_eth_addrs(f, answer, port.mac);
    let a = ETH_LEN;
    wire::put16(f, a + OP, OP_REPLY);
    wire::put(f, a + SHA, &answer.0);
    wire::put(f, a + SPA, &target_ip.octets());
    wire::put(f, a + THA, &port.mac.0);
    wire::put(f, a + TPA, &port.ip.octets());
    Ok(dp.to_port(port, pkt))
}

/// The MAC that answers for `ip` on this node, if any.
fn arp_answer(dp: &Datapath, tables: &Tables, ip: Ipv4Addr) -> Option<Mac> {
    if ip == dp.config.gateway || ip == dp.config.vtep_ip {
        return Some(dp.config.router_mac);
    }
    tables.port_by_ip(ip).map(|p| p.mac)
}
