//! Address and port rewriting for service NAT, with incremental checksum updates
//! (RFC 1624) of the IPv4 header and of the TCP/UDP checksum.
//!
//! Two kinds of L4 checksum field:
//! - complete (the usual case): it covers the pseudo-header (addresses) and the L4 header
//!   (ports), so both changes enter the update. A UDP checksum of 0 means "none" and stays 0;
//!   a UDP result of 0 is sent as 0xffff (RFC 768).
//! - partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, TSO super-frames from a TAP): the field holds the
//!   folded, non-complemented pseudo-header sum, and whoever completes it sums the L4 bytes
//!   from `csum_start` on. Address changes enter that seed; port changes do not (the ports
//!   are summed at completion).

use crate::counters::DropReason;
use crate::wire::buf::{PacketBuf, VnetHdr};
use crate::wire::l4::{L4Info, L4Proto, Tuple};
use crate::wire::{self, ip, Ipv4Info};
use std::net::Ipv4Addr;

/// Adds the 16-bit words of `old` (complemented) and `new` to an unfolded sum: the RFC 1624
/// difference of a 32-bit field.
fn diff32(acc: u64, old: u32, new: u32) -> u64 {
    acc + u64::from(!(old >> 16) & 0xffff)
        + u64::from(!old & 0xffff)
        + u64::from(new >> 16)
        + u64::from(new & 0xffff)
}

/// Adds the difference of a 16-bit field to an unfolded sum.
fn diff16(acc: u64, old: u16, new: u16) -> u64 {
    acc + u64::from(!old) + u64::from(new)
}

/// Rewrites the source and destination of the packet to `to` (only the fields that differ),
/// updating the IP header checksum and the L4 checksum incrementally. `vnet` tells whether
/// the L4 checksum is partial; a partial checksum must sit at the L4 header's checksum field
/// ([`DropReason::BadVnetHdr`] otherwise, before anything is written).
pub(crate) fn rewrite(
    f: &mut [u8],
    vnet: &VnetHdr,
    ip: &Ipv4Info,
    l4: &L4Info,
    to: &Tuple,
) -> Result<(), DropReason> {
    let partial = vnet.needs_csum();
    if partial
        && (usize::from(vnet.csum_start) != l4.off
            || usize::from(vnet.csum_offset) != l4.csum_rel())
    {
        return Err(DropReason::BadVnetHdr);
    }
    let (old_src, old_dst) = (u32::from(ip.src), u32::from(ip.dst));
    let (new_src, new_dst) = (u32::from(to.src), u32::from(to.dst));
    // Differences of the address words (pseudo-header and IP header alike).
    let addr = diff32(diff32(0, old_src, new_src), old_dst, new_dst);
    let ports = diff16(diff16(0, l4.sport, to.sport), l4.dport, to.dport);

    let ip_csum = wire::be16(f, ip.off + ip::CSUM)?;
    let at = l4.csum_at();
    let c = wire::be16(f, at)?;
    wire::put16(
        f,
        ip.off + ip::CSUM,
        !wire::csum_fold(u64::from(!ip_csum) + addr),
    )?;
    wire::put32(f, ip.off + ip::SRC, new_src)?;
    wire::put32(f, ip.off + ip::DST, new_dst)?;

    let c = if partial {
        // The seed is a plain (non-complemented) sum: add the address difference only.
        wire::csum_fold(u64::from(c) + addr)
    } else if l4.proto == L4Proto::Udp && c == 0 {
        0 // no checksum
    } else {
        let n = !wire::csum_fold(u64::from(!c) + addr + ports);
        if n == 0 && l4.proto == L4Proto::Udp {
            0xffff
        } else {
            n
        }
    };
    wire::put16(f, at, c)?;
    wire::put16(f, l4.off, to.sport)?;
    wire::put16(f, l4.off + 2, to.dport)?;
    Ok(())
}

/// [`rewrite`] of the frame in `pkt`, with its vnet header.
pub(crate) fn rewrite_pkt(
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    l4: &L4Info,
    to: &Tuple,
) -> Result<(), DropReason> {
    let vnet = pkt.vnet;
    rewrite(pkt.frame_mut(), &vnet, ip, l4, to)
}

/// The tuple `src:sport -> dst:dport`.
pub(crate) fn tuple(proto: L4Proto, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Tuple {
    Tuple {
        proto,
        src,
        sport,
        dst,
        dport,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // tests may panic
mod tests {
    use super::*;
    use crate::wire::buf::{VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4};
    use crate::wire::l4::TCP_ACK;
    use crate::wire::{ETH_LEN, PROTO_TCP, PROTO_UDP};
    use proptest::prelude::*;

    /// Builds Ethernet + IPv4 + TCP/UDP with complete checksums.
    fn frame(proto: u8, src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
        let l4h = if proto == PROTO_TCP { 20 } else { 8 };
        let total = 20 + l4h + payload.len();
        let mut f = vec![0u8; ETH_LEN + total];
        f[12] = 8;
        let h = &mut f[ETH_LEN..];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        let c = wire::checksum(&h[..20]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let l4 = &mut h[20..];
        l4[0..2].copy_from_slice(&sp.to_be_bytes());
        l4[2..4].copy_from_slice(&dp.to_be_bytes());
        if proto == PROTO_TCP {
            l4[12] = 0x50;
            l4[13] = TCP_ACK;
        } else {
            l4[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        l4[l4h..].copy_from_slice(payload);
        full_l4(&mut f);
        f
    }

    fn info(f: &[u8]) -> (Ipv4Info, L4Info) {
        let ip = Ipv4Info::parse(f, ETH_LEN).unwrap();
        let l4 = L4Info::parse(f, &ip).unwrap();
        (ip, l4)
    }

    /// Recomputes the L4 checksum in full.
    fn full_l4(f: &mut [u8]) -> u16 {
        let (ip, l4) = info(f);
        let at = l4.csum_at();
        wire::put16(f, at, 0).unwrap();
        let s = wire::pseudo_header_sum(ip.src, ip.dst, ip.proto, ip.total_len - ip.hlen);
        let mut c = !wire::csum_fold(wire::csum_add(s, &f[l4.off..ip.end()]));
        if c == 0 && l4.proto == L4Proto::Udp {
            c = 0xffff;
        }
        wire::put16(f, at, c).unwrap();
        c
    }

    fn verify(f: &[u8]) {
        let (ip, l4) = info(f);
        assert_eq!(wire::checksum(&f[ip.off..ip.off + ip.hlen]), 0, "ip");
        let s = wire::pseudo_header_sum(ip.src, ip.dst, ip.proto, ip.total_len - ip.hlen);
        let s = wire::csum_add(s, &f[l4.off..ip.end()]);
        assert_eq!(wire::csum_fold(s), 0xffff, "l4");
    }

    fn to() -> Tuple {
        tuple(
            L4Proto::Tcp,
            Ipv4Addr::new(198, 18, 1, 1),
            33000,
            Ipv4Addr::new(198, 18, 2, 7),
            8080,
        )
    }

    #[test]
    fn tcp_rewrite_matches_full_recompute() {
        let mut f = frame(
            PROTO_TCP,
            [198, 18, 1, 2],
            [198, 19, 96, 20],
            40000,
            80,
            b"hello",
        );
        let (ip, l4) = info(&f);
        rewrite(&mut f, &VnetHdr::default(), &ip, &l4, &to()).unwrap();
        verify(&f);
        let inc = wire::be16(&f, l4.csum_at()).unwrap();
        assert_eq!(inc, full_l4(&mut f));
        let (ip2, l42) = info(&f);
        assert_eq!(l42.tuple(&ip2), to());
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut f = frame(
            PROTO_UDP,
            [198, 18, 1, 2],
            [198, 19, 96, 20],
            40000,
            53,
            b"q",
        );
        let (ip, l4) = info(&f);
        wire::put16(&mut f, l4.csum_at(), 0).unwrap();
        let to = Tuple {
            proto: L4Proto::Udp,
            ..to()
        };
        rewrite(&mut f, &VnetHdr::default(), &ip, &l4, &to).unwrap();
        assert_eq!(wire::be16(&f, l4.csum_at()).unwrap(), 0);
        assert_eq!(wire::checksum(&f[ETH_LEN..ETH_LEN + 20]), 0);
    }

    #[test]
    fn partial_checksum_in_wrong_place_is_refused() {
        let mut f = frame(
            PROTO_TCP,
            [198, 18, 1, 2],
            [198, 19, 96, 20],
            40000,
            80,
            b"x",
        );
        let (ip, l4) = info(&f);
        let v = VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..Default::default()
        };
        let before = f.clone();
        assert_eq!(
            rewrite(&mut f, &v, &ip, &l4, &to()),
            Err(DropReason::BadVnetHdr)
        );
        assert_eq!(f, before);
    }

    /// Puts the partial (pseudo-header seed) checksum into a TCP/UDP frame, as a TAP does.
    fn make_partial(f: &mut [u8]) -> VnetHdr {
        let (ip, l4) = info(f);
        let s = wire::pseudo_header_sum(ip.src, ip.dst, ip.proto, ip.total_len - ip.hlen);
        wire::put16(f, l4.csum_at(), wire::csum_fold(s)).unwrap();
        VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            gso_type: if l4.proto == L4Proto::Tcp {
                VNET_GSO_TCPV4
            } else {
                0
            },
            hdr_len: 54,
            gso_size: 1000,
            csum_start: l4.off as u16,
            csum_offset: l4.csum_rel() as u16,
        }
    }

    proptest! {
        #[test]
        fn rewrite_then_inverse_restores_the_packet(
            tcp in any::<bool>(),
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sp in any::<u16>(), dp in any::<u16>(),
            nsrc in any::<u32>(), ndst in any::<u32>(), nsp in any::<u16>(), ndp in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let mut f = frame(proto, src, dst, sp, dp, &payload);
            let orig = f.clone();
            let (ip, l4) = info(&f);
            let back = l4.tuple(&ip);
            let to = Tuple { proto: l4.proto, src: nsrc.into(), sport: nsp, dst: ndst.into(), dport: ndp };
            rewrite(&mut f, &VnetHdr::default(), &ip, &l4, &to).unwrap();
            verify(&f);
            let inc = wire::be16(&f, l4.csum_at()).unwrap();
            let mut g = f.clone();
            prop_assert_eq!(inc, full_l4(&mut g));
            let (ip2, l42) = info(&f);
            prop_assert_eq!(l42.tuple(&ip2), to);
            rewrite(&mut f, &VnetHdr::default(), &ip2, &l42, &back).unwrap();
            prop_assert_eq!(f, orig);
        }

        #[test]
        fn partial_rewrite_then_completion_equals_full_recompute(
            tcp in any::<bool>(),
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sp in any::<u16>(), dp in any::<u16>(),
            nsrc in any::<u32>(), ndst in any::<u32>(), nsp in any::<u16>(), ndp in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let mut f = frame(proto, src, dst, sp, dp, &payload);
            let vnet = make_partial(&mut f);
            let (ip, l4) = info(&f);
            let to = Tuple { proto: l4.proto, src: nsrc.into(), sport: nsp, dst: ndst.into(), dport: ndp };
            rewrite(&mut f, &vnet, &ip, &l4, &to).unwrap();
            // The seed is what a TAP would have written for the new addresses...
            let mut seeded = f.clone();
            make_partial(&mut seeded);
            prop_assert_eq!(&seeded, &f);
            // ...and completing it gives the full checksum.
            let mut pkt = crate::wire::buf::PacketBuf::from_frame(&f);
            pkt.vnet = vnet;
            crate::wire::gso::complete_checksum(&mut pkt).unwrap();
            verify(pkt.frame());
            let mut g = f.clone();
            prop_assert_eq!(wire::be16(pkt.frame(), l4.csum_at()).unwrap(), full_l4(&mut g));
        }
    }
}
