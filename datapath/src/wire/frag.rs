//! IPv4 fragmentation of inner packets too big for the tunnel (DF clear), as the kernel
//! fragments them on a device with a smaller MTU: fragments of at most `pod_mtu` bytes whose
//! data lengths are multiples of 8 (except the last), MF set on all but the last (and on the
//! last when the original was itself a non-final fragment), offsets added to the original's.
//!
//! Choice: every fragment carries a copy of the full IP header, options included, so all
//! datagrams but the last have the same length and go out in one `UDP_SEGMENT` send. RFC 791
//! would copy only options with the "copied" bit into later fragments; receivers accept the
//! extra options, and pods practically never send IP options.

use crate::counters::DropReason;
use crate::wire::vxlan::VXLAN_HDR_LEN;
use crate::wire::{self, ip, Ipv4Info};

/// Writes the fragments of the IPv4 packet inside the VXLAN datagram `d` (VXLAN header +
/// inner Ethernet frame; `ip` has offsets relative to the inner frame) into `out`, each a
/// full VXLAN datagram. Returns `(stride, count)`.
pub(crate) fn fragment(
    mtu: u16,
    d: &[u8],
    ip: &Ipv4Info,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), DropReason> {
    let max_data = usize::from(mtu).saturating_sub(ip.hlen) & !7;
    if max_data < 8 {
        return Err(DropReason::TooBig);
    }
    let hdr_end = VXLAN_HDR_LEN + ip.l4_off();
    let head = d.get(..hdr_end).ok_or(DropReason::Malformed)?;
    let payload = d
        .get(hdr_end..VXLAN_HDR_LEN + ip.end())
        .ok_or(DropReason::Malformed)?;
    let base = usize::from(ip.frag & ip::OFFSET_MASK) * 8;
    if base + payload.len() > 0xffff {
        return Err(DropReason::Malformed);
    }
    let keep = ip.frag & !(ip::OFFSET_MASK | ip::MF);
    let count = payload.len().div_ceil(max_data).max(1);
    let ip_off = VXLAN_HDR_LEN + ip.off;
    out.reserve(hdr_end * count + payload.len());
    for (i, chunk) in payload.chunks(max_data).enumerate() {
        let start = out.len();
        out.extend_from_slice(head);
        out.extend_from_slice(chunk);
        let seg = out.get_mut(start..).ok_or(DropReason::Malformed)?;
        let mf = if i + 1 < count {
            ip::MF
        } else {
            ip.frag & ip::MF
        };
        // At most 0xffff / 8: `base + payload.len()` was checked above.
        let units = wire::len16((base + i * max_data) / 8)?;
        wire::put16(
            seg,
            ip_off + ip::TOTAL_LEN,
            wire::len16(ip.hlen + chunk.len())?,
        )?;
        wire::put16(seg, ip_off + ip::FRAG, keep | mf | units)?;
        wire::ipv4_fix_checksum(seg, ip_off, ip.hlen)?;
    }
    let stride = if count == 1 {
        out.len()
    } else {
        hdr_end + max_data
    };
    Ok((stride, count))
}

/// Where byte `at` of the original datagram's L4 payload region ended up in the output of
/// [`fragment`] with this `stride`.
pub(crate) fn frag_index(ip: &Ipv4Info, stride: usize, at: usize) -> Option<usize> {
    let hdr_end = VXLAN_HDR_LEN + ip.l4_off();
    let po = at.checked_sub(hdr_end)?;
    let max_data = stride.checked_sub(hdr_end).filter(|m| *m > 0)?;
    Some((po / max_data) * stride + hdr_end + po % max_data)
}
