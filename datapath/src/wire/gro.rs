//! Receive-side merging (GRO) for frames headed to a pod: consecutive TCP segments of one flow
//! that came out of the tunnel one MTU-sized datagram at a time are merged into one TSO
//! super-frame, so the pod's kernel takes one 64 KiB write instead of forty-odd small ones.
//!
//! The rules follow the kernel's `tcp_gro_receive`: same addresses, ports, ACK number,
//! header lengths and options; consecutive sequence numbers; only ACK (and PSH on the last
//! segment) set; every segment but the last exactly `gso_size` long. Each segment's TCP
//! checksum is verified before it is merged (a zero outer UDP checksum protects nothing),
//! because the merged frame is handed to the pod with a partial checksum it will not verify.

use crate::wire::buf::{PacketBuf, VnetHdr, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4};
use crate::wire::l4::{
    TCP_ACK as ACK, TCP_ACK_NO, TCP_CSUM, TCP_DOFF, TCP_FLAGS, TCP_MIN_LEN, TCP_PSH as PSH, TCP_SEQ,
};
use crate::wire::{self, ip, OutOfRange, ETHERTYPE_IPV4, ETH_LEN, PROTO_TCP};

/// Largest IPv4 packet a merged frame may become.
const MAX_MERGED_IP_LEN: usize = 65535;
/// [`TCP_CSUM`] as the vnet header's `csum_offset`.
#[allow(clippy::cast_possible_truncation)] // 16
const TCP_CSUM_U16: u16 = TCP_CSUM as u16;

/// The parts of a TCP/IPv4 frame that decide whether two segments merge.
struct Seg {
    tcp: usize,
    hdr_end: usize,
    ip_len: usize,
    seq: u32,
    flags: u8,
}

/// Parses a plain (no IP options, not fragmented) TCP/IPv4 frame with a payload.
fn parse(f: &[u8]) -> Option<Seg> {
    if f.len() < ETH_LEN + ip::MIN_LEN + TCP_MIN_LEN
        || wire::be16(f, wire::ETH_TYPE).ok()? != ETHERTYPE_IPV4
    {
        return None;
    }
    let ipo = ETH_LEN;
    if wire::u8_at(f, ipo).ok()? != 0x45 || wire::u8_at(f, ipo + ip::PROTO).ok()? != PROTO_TCP {
        return None;
    }
    if wire::be16(f, ipo + ip::FRAG).ok()? & (ip::MF | ip::OFFSET_MASK) != 0 {
        return None;
    }
    let ip_len = usize::from(wire::be16(f, ipo + ip::TOTAL_LEN).ok()?);
    if ip_len > f.len() - ETH_LEN {
        return None;
    }
    let tcp = ipo + ip::MIN_LEN;
    let thl = usize::from(wire::u8_at(f, tcp + TCP_DOFF).ok()? >> 4) * 4;
    let hdr_end = tcp + thl;
    if thl < TCP_MIN_LEN || hdr_end >= ETH_LEN + ip_len {
        return None; // bad header, or no payload
    }
    Some(Seg {
        tcp,
        hdr_end,
        ip_len,
        seq: wire::be32(f, tcp + TCP_SEQ).ok()?,
        flags: wire::u8_at(f, tcp + TCP_FLAGS).ok()?,
    })
}

/// True when the TCP checksum of the plain segment `f` is correct.
fn tcp_csum_ok(f: &[u8], s: &Seg) -> bool {
    let (Ok(src), Ok(dst)) = (
        wire::ipv4_at(f, ETH_LEN + ip::SRC),
        wire::ipv4_at(f, ETH_LEN + ip::DST),
    ) else {
        return false;
    };
    let l4_len = s.ip_len - ip::MIN_LEN;
    let Some(l4) = f.get(s.tcp..s.tcp + l4_len) else {
        return false;
    };
    let acc = wire::pseudo_header_sum(src, dst, PROTO_TCP, l4_len);
    wire::csum_fold(wire::csum_add(acc, l4)) == 0xffff
}

/// True when `h[a..a + len]` and `n[b..b + len]` both exist and are equal.
fn same_bytes(h: &[u8], a: usize, n: &[u8], b: usize, len: usize) -> bool {
    match (h.get(a..a + len), n.get(b..b + len)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Appends `next`'s TCP payload to `held` when `next` is the next segment of `held`'s flow,
/// turning `held` into (or growing) a TSO super-frame with a partial checksum. Returns false,
/// changing nothing, when they do not merge; the caller then sends `held` on its way.
///
/// Both frames are Ethernet frames as the datapath hands them to a port (`held` may already
/// be a super-frame this function made; `next` must be a plain frame).
pub fn gro_append(held: &mut PacketBuf, next: &PacketBuf) -> bool {
    if next.vnet != VnetHdr::default() {
        return false;
    }
    let merged = held.vnet.gso_type == VNET_GSO_TCPV4;
    if !merged && held.vnet != VnetHdr::default() {
        return false;
    }
    let (h, n) = (held.frame(), next.frame());
    let (Some(hs), Some(ns)) = (parse(h), parse(n)) else {
        return false;
    };
    // Same L2/L3/L4 identity: MACs, TOS, TTL, addresses, ports, ACK, window-independent
    // header bytes and options (header lengths equal).
    let opts = hs.hdr_end.saturating_sub(hs.tcp + TCP_MIN_LEN);
    let same = hs.hdr_end == ns.hdr_end
        && same_bytes(h, 0, n, 0, 12)
        && same_bytes(h, ETH_LEN + 1, n, ETH_LEN + 1, 1)
        && same_bytes(h, ETH_LEN + ip::TTL, n, ETH_LEN + ip::TTL, 1)
        && same_bytes(h, ETH_LEN + ip::SRC, n, ETH_LEN + ip::SRC, 8)
        && same_bytes(h, hs.tcp, n, ns.tcp, 4)
        && same_bytes(h, hs.tcp + TCP_ACK_NO, n, ns.tcp + TCP_ACK_NO, 4)
        && same_bytes(h, hs.tcp + TCP_MIN_LEN, n, ns.tcp + TCP_MIN_LEN, opts);
    if !same || hs.flags & !PSH != ACK || ns.flags & !PSH != ACK || hs.flags & PSH != 0 {
        return false;
    }
    let hdr_len = hs.hdr_end - ETH_LEN; // IP + TCP headers
    let held_payload = hs.ip_len - hdr_len;
    let next_payload = ns.ip_len - hdr_len;
    let mss = if merged {
        usize::from(held.vnet.gso_size)
    } else {
        held_payload
    };
    // Every length below is under 64 KiB: the IP total lengths are u16 fields, and the
    // merged one is checked against MAX_MERGED_IP_LEN.
    let (Ok(held_payload32), Ok(mss16), Ok(hdr_len16), Ok(tcp16)) = (
        u32::try_from(held_payload),
        u16::try_from(mss),
        u16::try_from(ETH_LEN + hdr_len),
        u16::try_from(hs.tcp),
    ) else {
        return false;
    };
    if !held_payload.is_multiple_of(mss)
        || next_payload > mss
        || hs.seq.wrapping_add(held_payload32) != ns.seq
        || hs.ip_len + next_payload > MAX_MERGED_IP_LEN
    {
        return false;
    }
    if !tcp_csum_ok(n, &ns) || (!merged && !tcp_csum_ok(h, &hs)) {
        return false;
    }
    let Some(payload) = n.get(ns.hdr_end..ETH_LEN + ns.ip_len) else {
        return false;
    };
    // Merge: append the payload, fix the IP length and checksum, carry PSH over, and leave
    // the pseudo-header sum in the TCP checksum field (a partial checksum).
    let old_len = held.len();
    let end = ETH_LEN + hs.ip_len;
    if end != old_len && !held.set_len(end) {
        return false;
    }
    if !held.set_len(end + next_payload) {
        held.set_len(old_len);
        return false;
    }
    let new_ip_len = hs.ip_len + next_payload;
    let f = held.frame_mut();
    let write = |f: &mut [u8]| -> Result<(), OutOfRange> {
        wire::put(f, end, payload)?;
        wire::put16(f, ETH_LEN + ip::TOTAL_LEN, wire::len16(new_ip_len)?)?;
        wire::ipv4_fix_checksum(f, ETH_LEN, ip::MIN_LEN)?;
        let flags = wire::u8_at(f, hs.tcp + TCP_FLAGS)?;
        wire::put8(f, hs.tcp + TCP_FLAGS, flags | (ns.flags & PSH))?;
        let src = wire::ipv4_at(f, ETH_LEN + ip::SRC)?;
        let dst = wire::ipv4_at(f, ETH_LEN + ip::DST)?;
        let l4_len = new_ip_len - ip::MIN_LEN;
        let pseudo = wire::csum_fold(wire::pseudo_header_sum(src, dst, PROTO_TCP, l4_len));
        wire::put16(f, hs.tcp + TCP_CSUM, pseudo)
    };
    if write(f).is_err() {
        // Not reached: every offset was checked above. Should it be, `held` keeps its
        // length but not its bytes; it is no longer a valid frame of the flow.
        held.set_len(old_len);
        return false;
    }
    held.vnet = VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        gso_type: VNET_GSO_TCPV4,
        hdr_len: hdr_len16,
        gso_size: mss16,
        csum_start: tcp16,
        csum_offset: TCP_CSUM_U16,
    };
    true
}
