//! ICMP made by the switch itself: echo replies for the gateway and VTEP addresses, and
//! errors (fragmentation needed, time exceeded) about frames it cannot forward. Both are
//! written in place into the buffer of the packet they answer.

use crate::counters::DropReason;
use crate::types::Mac;
use crate::wire::buf::PacketBuf;
use crate::wire::{self, ip, Ipv4Info, OutOfRange, ETH_LEN, PROTO_ICMP};
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
    wire::set_eth_addrs(f, src_mac, dst_mac)?;
    let tos = wire::u8_at(f, ip.off + 1)?;
    let id = wire::be16(f, ip.off + ip::ID)?;
    write_ipv4(f, ip.off, tos, new_total, id, PROTO_ICMP, ip.dst, ip.src)?;
    wire::put8(f, new_l4, ICMP_ECHO_REPLY)?;
    fix_icmp_checksum(f, new_l4, icmp_len)?;
    Ok(())
}

/// Rewrites `pkt` (an IPv4 frame the router could not forward) into an ICMP error from
/// `src_ip` back to its sender: type `ty`, code `code`, the 32-bit `rest` field (next-hop MTU
/// for "fragmentation needed"), then the original IP header and the first 8 bytes of its
/// payload. Ethernet source is `src_mac`, destination the original source MAC.
///
/// Returns false, leaving the buffer unchanged, when RFC 1122 forbids an error about this
/// packet: it is itself an ICMP error, a later fragment, or from an unspecified or group
/// address. Also false (the buffer then unusable, the frame to be dropped) should a write
/// fall outside the frame, which the length checks here rule out.
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
    let Ok(dst_mac) = wire::mac_at(f, wire::ETH_SRC) else {
        return false;
    };
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
    let write = |f: &mut [u8]| -> Result<(), OutOfRange> {
        wire::set_eth_addrs(f, src_mac, dst_mac)?;
        wire::put16(f, wire::ETH_TYPE, wire::ETHERTYPE_IPV4)?;
        let total = new_len - ETH_LEN;
        write_ipv4(f, ETH_LEN, 0, total, 0, PROTO_ICMP, src_ip, ip.src)?;
        wire::put(f, icmp_off, &[ty, code, 0, 0])?;
        wire::put32(f, icmp_off + 4, rest)?;
        fix_icmp_checksum(f, icmp_off, ICMP_HDR + quoted)
    };
    write(f).is_ok()
}

/// Writes a 20-byte IPv4 header (no options, no fragmentation, TTL 64) at `off`.
/// [`OutOfRange`] when `total_len` exceeds 65535 or the header does not fit in `f`.
#[allow(clippy::too_many_arguments)]
pub fn write_ipv4(
    f: &mut [u8],
    off: usize,
    tos: u8,
    total_len: usize,
    id: u16,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Result<(), OutOfRange> {
    let [l0, l1] = wire::len16(total_len)?.to_be_bytes();
    let [i0, i1] = id.to_be_bytes();
    let [s0, s1, s2, s3] = src.octets();
    let [d0, d1, d2, d3] = dst.octets();
    let mut h: [u8; ip::MIN_LEN] = [
        0x45,
        tos,
        l0,
        l1,
        i0,
        i1,
        0,
        0,
        DEFAULT_TTL,
        proto,
        0,
        0,
        s0,
        s1,
        s2,
        s3,
        d0,
        d1,
        d2,
        d3,
    ];
    let c = wire::checksum(&h);
    wire::put16(&mut h, ip::CSUM, c)?;
    wire::put(f, off, &h)
}

/// Recomputes the checksum of the ICMP message at `f[off..off + len]`.
fn fix_icmp_checksum(f: &mut [u8], off: usize, len: usize) -> Result<(), OutOfRange> {
    wire::put16(f, off + 2, 0)?;
    let end = off.checked_add(len).ok_or(OutOfRange { off, len })?;
    let c = wire::checksum(f.get(off..end).ok_or(OutOfRange { off, len })?);
    wire::put16(f, off + 2, c)
}
