//! DNS datagram framing (RFC 1035 over UDP/IPv4): recognising a query to port 53, finding
//! its message, and building the reply datagram around a message. The DNS message format
//! itself is hickory-proto's, used by the pipeline's cluster DNS.

use crate::types::Mac;
use crate::wire::buf::PacketBuf;
use crate::wire::{self, icmp, ip, Ipv4Info, OutOfRange, ETH_LEN, PROTO_UDP};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Length of the UDP header.
pub const UDP_HDR: usize = crate::wire::l4::UDP_LEN;

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// True when the packet is an unfragmented UDP datagram to port 53 with a complete header.
pub fn is_query(f: &[u8], ip: &Ipv4Info) -> bool {
    ip.proto == PROTO_UDP
        && !ip.is_fragment()
        && ip.total_len >= ip.hlen + UDP_HDR
        && wire::be16(f, ip.l4_off() + 2) == Ok(DNS_PORT)
}

/// The DNS message of a query frame (Ethernet, IPv4 without fragmentation, UDP to port 53):
/// what the shell sends upstream for a [`crate::Verdict::DnsForward`]. `None` when the frame is not
/// such a datagram or its UDP length does not fit.
pub fn dns_query_payload(frame: &[u8]) -> Option<&[u8]> {
    let ip = Ipv4Info::parse(frame, ETH_LEN)?;
    if !is_query(frame, &ip) {
        return None;
    }
    let l4 = ip.l4_off();
    let udp_len = usize::from(wire::be16(frame, l4 + 4).ok()?);
    if udp_len < UDP_HDR || udp_len > ip.total_len - ip.hlen {
        return None;
    }
    frame.get(l4 + UDP_HDR..l4 + udp_len)
}

/// Builds in `pkt` (replacing its frame) the datagram carrying the DNS message `payload`
/// from the cluster DNS to a pod: Ethernet `router_mac` -> `pod_mac`, IPv4 `server` ->
/// `client` (TTL 64, no fragmentation), UDP 53 -> `client`'s port, IPv4 and UDP checksums
/// complete, vnet header [`VnetHdr::default`](crate::VnetHdr). False (and `pkt` unusable)
/// when the datagram would exceed 65535 bytes.
pub fn dns_reply_frame(
    pkt: &mut PacketBuf,
    router_mac: Mac,
    pod_mac: Mac,
    server: Ipv4Addr,
    client: SocketAddrV4,
    payload: &[u8],
) -> bool {
    let udp_len = UDP_HDR + payload.len();
    let total = ip::MIN_LEN + udp_len;
    if total > usize::from(u16::MAX) {
        return false;
    }
    pkt.reset();
    if !pkt.set_len(ETH_LEN + total) {
        return false;
    }
    let f = pkt.frame_mut();
    let write = |f: &mut [u8]| -> Result<(), OutOfRange> {
        wire::set_eth_addrs(f, router_mac, pod_mac)?;
        wire::put16(f, wire::ETH_TYPE, wire::ETHERTYPE_IPV4)?;
        icmp::write_ipv4(f, ETH_LEN, 0, total, 0, PROTO_UDP, server, *client.ip())?;
        let u = ETH_LEN + ip::MIN_LEN;
        wire::put16(f, u, DNS_PORT)?;
        wire::put16(f, u + 2, client.port())?;
        wire::put16(f, u + 4, wire::len16(udp_len)?)?;
        wire::put16(f, u + 6, 0)?;
        wire::put(f, u + UDP_HDR, payload)?;
        let sum = wire::pseudo_header_sum(server, *client.ip(), PROTO_UDP, udp_len);
        let udp = f.get(u..).ok_or(OutOfRange {
            off: u,
            len: udp_len,
        })?;
        let mut c = !wire::csum_fold(wire::csum_add(sum, udp));
        if c == 0 {
            c = 0xffff;
        }
        wire::put16(f, u + 6, c)
    };
    write(f).is_ok()
}
