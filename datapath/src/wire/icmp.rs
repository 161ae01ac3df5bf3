//! ICMP made by the switch itself: echo replies for the gateway and VTEP addresses, and
//! errors (fragmentation needed, time exceeded) about frames it cannot forward. Both are
//! written in place into the buffer of the packet they answer.

use crate::counters::DropReason;
use crate::types::Mac;
use crate::wire::buf::PacketBuf;
use crate::wire::{self, ip, Ipv4Info, ETH_LEN, PROTO_ICMP};
use std::net::Ipv4Addr;

/// ICMP echo reply.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMP destination unreachable (code 4: fragmentation needed and DF set).
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMP echo request.
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMP time exceeded (code 0: TTL exceeded in transit).
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// Code of "fragmentation needed and DF set".
pub const CODE_FRAG_NEEDED: u8 = 4;
/// TTL of packets the switch originates.
pub const DEFAULT_TTL: u8 = 64;
/// Length of an ICMP header.
const ICMP_HDR: usize = 8;

/// True when the IPv4 packet in `f` described by `ip` is an ICMP echo request we may answer
/// (not a fragment, a complete 8-byte ICMP header, type 8 code 0).
pub fn is_echo_request(f: &[u8], ip: &Ipv4Info) -> bool {
    ip.proto == PROTO_ICMP
        && !ip.is_fragment()
        && ip.total_len >= ip.hlen + ICMP_HDR
        && f.get(ip.l4_off()) == Some(&ICMP_ECHO_REQUEST)
        && f.get(ip.l4_off() + 1) == Some(&0)
}

/// Rewrites an echo request (checked with [`is_echo_request`]) into its reply: addresses
/// swapped, IP options dropped, TTL 64, type 0, both checksums recomputed, Ethernet addresses
/// `src_mac` -> `dst_mac`. The vnet header is reset.
pub fn echo_reply(
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    src_mac: Mac,
    dst_mac: Mac,
) -> Result<(), DropReason> {
    let icmp_len = ip.total_len - ip.hlen;
    let new_total = ip::MIN_LEN + icmp_len;
    let new_l4 = ip.off + ip::MIN_LEN;
    {
        let f = pkt.frame_mut();
        if f.len() < ip.end() || new_total > usize::from(u16::MAX) {
            return Err(DropReason::Malformed);
        }
        // Drop any options: move the ICMP message right behind a 20-byte header.
        f.copy_within(ip.l4_off()..ip.end(), new_l4);
    }
    pkt.set_len(ip.off + new_total);
    pkt.vnet = Default::default();
    let f = pkt.frame_mut();
    wire::set_eth_addrs(f, src_mac, dst_mac);
    let tos = f.get(ip.off + 1).copied().unwrap_or(0);
    let id = wire::be16(f, ip.off + ip::ID);
    write_ipv4(f, ip.off, tos, new_total, id, PROTO_ICMP, ip.dst, ip.src);
    if let Some(b) = f.get_mut(new_l4) {
        *b = ICMP_ECHO_REPLY;
    }
    fix_icmp_checksum(f, new_l4, icmp_len);
    Ok(())
}

/// Rewrites `pkt` (an IPv4 frame the router could not forward) into an ICMP error from
/// `src_ip` back to its sender: type `ty`, code `code`, the 32-bit `rest` field (next-hop MTU
/// for "fragmentation needed"), then the original IP header and the first 8 bytes of its
/// payload. Ethernet source is `src_mac`, destination the original source MAC.
///
/// Returns false, leaving the buffer unchanged, when RFC 1122 forbids an error about this
/// packet: it is itself an ICMP error, a later fragment, or from an unspecified or group
/// address.
pub fn icmp_error(
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    src_mac: Mac,
    src_ip: Ipv4Addr,
    ty: u8,
    code: u8,
    rest: u32,
) -> bool {
    let f = pkt.frame();
    if ip.is_later_fragment()
        || ip.src.is_unspecified()
        || ip.src.is_multicast()
        || ip.src.is_broadcast()
        || f.len() < ip.end()
    {
        return false;
    }
    if ip.proto == PROTO_ICMP {
        // Errors only about queries (echo, timestamp, ...), never about errors.
        match f.get(ip.l4_off()) {
            Some(0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) => {}
            _ => return false,
        }
    }
    let dst_mac = wire::mac_at(f, wire::ETH_SRC);
    let quoted = ip.hlen + (ip.total_len - ip.hlen).min(8);
    let icmp_off = ETH_LEN + ip::MIN_LEN;
    let quote_off = icmp_off + ICMP_HDR;
    let new_len = quote_off + quoted;
    let old_len = pkt.len();
    if !pkt.set_len(old_len.max(new_len)) {
        return false;
    }
    let f = pkt.frame_mut();
    f.copy_within(ip.off..ip.off + quoted, quote_off);
    pkt.set_len(new_len);
    pkt.vnet = Default::default();
    let f = pkt.frame_mut();
    wire::set_eth_addrs(f, src_mac, dst_mac);
    wire::put16(f, wire::ETH_TYPE, wire::ETHERTYPE_IPV4);
    write_ipv4(
        f,
        ETH_LEN,
        0,
        new_len - ETH_LEN,
        0,
        PROTO_ICMP,
        src_ip,
        ip.src,
    );
    wire::put(f, icmp_off, &[ty, code, 0, 0]);
    wire::put32(f, icmp_off + 4, rest);
    fix_icmp_checksum(f, icmp_off, ICMP_HDR + quoted);
    true
}

/// Writes a 20-byte IPv4 header (no options, no fragmentation, TTL 64) at `off`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_ipv4(
    f: &mut [u8],
    off: usize,
    tos: u8,
    total_len: usize,
    id: u16,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    let mut h = [0u8; ip::MIN_LEN];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[ip::TTL] = DEFAULT_TTL;
    h[ip::PROTO] = proto;
    h[ip::SRC..ip::SRC + 4].copy_from_slice(&src.octets());
    h[ip::DST..ip::DST + 4].copy_from_slice(&dst.octets());
    let c = wire::checksum(&h);
    h[ip::CSUM..ip::CSUM + 2].copy_from_slice(&c.to_be_bytes());
    wire::put(f, off, &h);
}

/// Recomputes the checksum of the ICMP message at `f[off..off + len]`.
fn fix_icmp_checksum(f: &mut [u8], off: usize, len: usize) {
    wire::put16(f, off + 2, 0);
    if let Some(m) = f.get(off..off + len) {
        let c = wire::checksum(m);
        wire::put16(f, off + 2, c);
    }
}
