//! ARP for Ethernet/IPv4 (RFC 826): a checked view of a packet, and the reply written in
//! place into the request's buffer.

use crate::counters::DropReason;
use crate::types::Mac;
use crate::wire::buf::PacketBuf;
use crate::wire::{self, OutOfRange, ETH_LEN};
use etherparse::{ArpHardwareId, ArpPacketSlice, EtherType};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;
/// Offsets inside an Ethernet/IPv4 ARP packet.
const OP: usize = 6;
const SHA: usize = 8;
const SPA: usize = 14;
const THA: usize = 18;
const TPA: usize = 24;
/// ARP operation "request".
pub const OP_REQUEST: u16 = 1;
/// ARP operation "reply".
pub const OP_REPLY: u16 = 2;

/// The fields of an Ethernet/IPv4 ARP packet the switch looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    /// The operation ([`OP_REQUEST`], [`OP_REPLY`], ...).
    pub op: u16,
    /// Sender hardware address.
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    /// Parses the ARP packet of the Ethernet frame `frame`. Errors:
    /// [`DropReason::Malformed`] when it does not parse, [`DropReason::ArpIgnored`] when it
    /// is not Ethernet/IPv4.
    pub fn parse(frame: &[u8]) -> Result<ArpPacket, DropReason> {
        let body = frame.get(ETH_LEN..).unwrap_or_default();
        let arp = ArpPacketSlice::from_slice(body).map_err(|_| DropReason::Malformed)?;
        if arp.hw_addr_type() != ArpHardwareId::ETHERNET
            || arp.proto_addr_type() != EtherType::IPV4
            || arp.hw_addr_size() != 6
            || arp.proto_addr_size() != 4
        {
            return Err(DropReason::ArpIgnored);
        }
        // etherparse checked the lengths: 8 + 2 * 6 + 2 * 4 = 28 bytes are present.
        let a = arp.slice();
        Ok(ArpPacket {
            op: wire::be16(a, OP)?,
            sender_mac: wire::mac_at(a, SHA)?,
            sender_ip: wire::ipv4_at(a, SPA)?,
            target_ip: wire::ipv4_at(a, TPA)?,
        })
    }
}

/// Rewrites the ARP request in `pkt` into the reply "`ip` is at `mac`" to `to_mac`/`to_ip`:
/// 42 bytes (padding dropped), Ethernet `mac` -> `to_mac`, vnet header reset.
pub fn write_reply(
    pkt: &mut PacketBuf,
    mac: Mac,
    ip: Ipv4Addr,
    to_mac: Mac,
    to_ip: Ipv4Addr,
) -> Result<(), OutOfRange> {
    pkt.set_len(ETH_LEN + ARP_LEN);
    pkt.vnet = Default::default();
    let f = pkt.frame_mut();
    wire::set_eth_addrs(f, mac, to_mac)?;
    let a = ETH_LEN;
    wire::put16(f, a + OP, OP_REPLY)?;
    wire::put(f, a + SHA, &mac.0)?;
    wire::put(f, a + SPA, &ip.octets())?;
    wire::put(f, a + THA, &to_mac.0)?;
    wire::put(f, a + TPA, &to_ip.octets())
}
