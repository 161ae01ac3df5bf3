//! Making tunnel-bound buffers wire-ready: TCPv4 segmentation (TSO in software), completion
//! of partial checksums, and IPv4 fragmentation for oversized packets without DF.
//!
//! A `ToTunnel` buffer holds the VXLAN header and the inner frame; its vnet header (offsets
//! relative to the inner frame) may say GSO and/or NEEDS_CSUM, and its inner IP packet may
//! exceed `pod_mtu` when DF is clear. [`crate::Datapath::segment_for_tunnel`] writes the datagrams
//! to send, back to back and all of one `stride` except the last, so the shell can hand them
//! to one `sendmsg` with `UDP_SEGMENT = stride`. The shell must respect the kernel's limit on
//! segments per send (`UDP_MAX_SEGMENTS`, 64 or 128 depending on the kernel) by splitting
//! `out` at stride boundaries when `count` is larger.

use crate::counters::DropReason;
use crate::wire::buf::{PacketBuf, VnetHdr, VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4};
use crate::wire::frag;
use crate::wire::l4::{
    TCP_CSUM, TCP_CWR, TCP_DOFF, TCP_FIN, TCP_FLAGS, TCP_MIN_LEN, TCP_PSH, TCP_SEQ,
};
use crate::wire::vxlan::{VxlanHdr, VXLAN_HDR_LEN};
use crate::wire::{self, ip, Ipv4Info, ETHERTYPE_IPV4, ETH_LEN, PROTO_TCP, PROTO_UDP};

/// Completes a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) of the Ethernet frame in
/// `pkt` in place and clears the flag; offsets are relative to the frame start. Does nothing
/// when the flag is clear. Errors: [`DropReason::BadVnetHdr`] when the checksum field lies
/// outside the IP packet.
pub fn complete_checksum(pkt: &mut PacketBuf) -> Result<(), DropReason> {
    if !pkt.vnet.needs_csum() {
        return Ok(());
    }
    let (at, c) = partial_csum(pkt.frame(), &pkt.vnet)?;
    wire::put16(pkt.frame_mut(), at, c)?;
    pkt.vnet.flags &= !crate::wire::buf::VNET_F_NEEDS_CSUM;
    Ok(())
}

/// [`crate::Datapath::segment_for_tunnel`] with the node's `mtu`: the datagrams of the
/// `ToTunnel` buffer `d` (with vnet header `vnet`) into `out`.
pub fn segment(
    mtu: u16,
    d: &[u8],
    vnet: &VnetHdr,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), DropReason> {
    VxlanHdr::parse(d).map_err(|_| DropReason::Malformed)?;
    let inner = d.get(VXLAN_HDR_LEN..).unwrap_or_default();
    if wire::be16(inner, wire::ETH_TYPE) != Ok(ETHERTYPE_IPV4) || inner.len() < ETH_LEN {
        return Err(DropReason::Malformed);
    }
    let ip = Ipv4Info::parse(inner, ETH_LEN).ok_or(DropReason::Malformed)?;
    match vnet.gso_type & !VNET_GSO_ECN {
        VNET_GSO_NONE => {}
        VNET_GSO_TCPV4 => return tso(d, &ip, vnet, out),
        _ => return Err(DropReason::GsoUnsupported),
    }
    let csum = if vnet.needs_csum() {
        Some(partial_csum(inner, vnet)?)
    } else {
        None
    };
    let end = VXLAN_HDR_LEN + ip.end();
    let fragmented = ip.total_len > usize::from(mtu) && !ip.df();
    let (stride, count) = if fragmented {
        frag::fragment(mtu, d, &ip, out)?
    } else {
        out.extend_from_slice(d.get(..end).unwrap_or_default());
        (out.len(), 1)
    };
    if let Some((at, c)) = csum {
        // Patch the completed checksum wherever its bytes landed.
        let at = VXLAN_HDR_LEN + at;
        for (i, b) in c.to_be_bytes().into_iter().enumerate() {
            let o = if fragmented {
                frag::frag_index(&ip, stride, at + i)
            } else {
                Some(at + i)
            };
            if let Some(slot) = o.and_then(|o| out.get_mut(o)) {
                *slot = b;
            }
        }
    }
    Ok((stride, count))
}

/// The completed value of a partial checksum of the Ethernet frame `f` and where it goes:
/// the one's complement sum from `csum_start` to the end of the IP packet (the field holds
/// the pseudo-header sum), complemented.
fn partial_csum(f: &[u8], vnet: &VnetHdr) -> Result<(usize, u16), DropReason> {
    let ip = Ipv4Info::parse(f, ETH_LEN).ok_or(DropReason::Malformed)?;
    let start = usize::from(vnet.csum_start);
    let at = start + usize::from(vnet.csum_offset);
    if start < ip.l4_off() || at + 2 > ip.end() {
        return Err(DropReason::BadVnetHdr);
    }
    let covered = f.get(start..ip.end()).ok_or(DropReason::BadVnetHdr)?;
    let mut c = !wire::csum_fold(wire::csum_add(0, covered));
    if c == 0 && ip.proto == PROTO_UDP {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    Ok((at, c))
}

/// Software TSO of a TCPv4 super-frame `d` (VXLAN + inner frame).
fn tso(
    d: &[u8],
    ip: &Ipv4Info,
    vnet: &VnetHdr,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), DropReason> {
    if ip.proto != PROTO_TCP || ip.is_fragment() || vnet.gso_size == 0 {
        return Err(DropReason::BadVnetHdr);
    }
    let inner = d.get(VXLAN_HDR_LEN..).unwrap_or_default();
    let l4 = ip.l4_off();
    let doff = usize::from(inner.get(l4 + TCP_DOFF).copied().unwrap_or(0) >> 4) * 4;
    if doff < TCP_MIN_LEN || l4 + doff > ip.end() {
        return Err(DropReason::Malformed);
    }
    let hdrs = VXLAN_HDR_LEN + l4 + doff; // bytes copied into every segment
    let payload = d
        .get(hdrs..VXLAN_HDR_LEN + ip.end())
        .ok_or(DropReason::Malformed)?;
    let mss = usize::from(vnet.gso_size);
    let count = payload.len().div_ceil(mss).max(1);
    let stride = if count == 1 {
        hdrs + payload.len()
    } else {
        hdrs + mss
    };
    out.reserve(hdrs * count + payload.len());

    let ip_off = VXLAN_HDR_LEN + ip.off;
    let tcp_off = VXLAN_HDR_LEN + l4;
    let mut seq = wire::be32(d, tcp_off + TCP_SEQ)?;
    let mut id = wire::be16(d, ip_off + ip::ID)?;
    let flags0 = wire::u8_at(d, tcp_off + TCP_FLAGS)?;
    let head = d.get(..hdrs).ok_or(DropReason::Malformed)?;
    let mss32 = u32::from(vnet.gso_size);
    for i in 0..count {
        let chunk = payload
            .get(i * mss..((i + 1) * mss).min(payload.len()))
            .unwrap_or_default();
        let start = out.len();
        out.extend_from_slice(head);
        out.extend_from_slice(chunk);
        let seg = out.get_mut(start..).ok_or(DropReason::Malformed)?;
        let tcp_len = doff + chunk.len();
        wire::put16(seg, ip_off + ip::TOTAL_LEN, wire::len16(ip.hlen + tcp_len)?)?;
        wire::put16(seg, ip_off + ip::ID, id)?;
        wire::ipv4_fix_checksum(seg, ip_off, ip.hlen)?;
        wire::put32(seg, tcp_off + TCP_SEQ, seq)?;
        id = id.wrapping_add(1);
        seq = seq.wrapping_add(mss32);
        let mut flags = flags0;
        if i + 1 < count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        wire::put8(seg, tcp_off + TCP_FLAGS, flags)?;
        wire::put16(seg, tcp_off + TCP_CSUM, 0)?;
        let sum = wire::pseudo_header_sum(ip.src, ip.dst, PROTO_TCP, tcp_len);
        let sum = wire::csum_add(sum, seg.get(tcp_off..).ok_or(DropReason::Malformed)?);
        wire::put16(seg, tcp_off + TCP_CSUM, !wire::csum_fold(sum))?;
    }
    Ok((stride, count))
}
