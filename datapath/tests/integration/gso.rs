//! `segment_for_tunnel`: software TSO, partial checksum completion, fragmentation.

use crate::common;

use common::*;
use etherparse::{Ipv4HeaderSlice, SlicedPacket};
use proptest::prelude::*;
use vswitch_datapath::buf::{
    VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4,
};
use vswitch_datapath::*;

const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

/// Sends `frame` from pod A; it must go into the tunnel. Returns `(stride, count, out)`.
fn through_tunnel(n: &Node, frame: &[u8], vnet: VnetHdr) -> (usize, usize, Vec<u8>) {
    let (v, pkt) = n.port(A, frame, vnet);
    assert!(matches!(v, Verdict::ToTunnel { .. }), "{v:?}");
    assert!(n.dp.needs_segmentation(&pkt));
    let mut out = vec![0xAA; 3]; // cleared by the call
    let (stride, count) = n.dp.segment_for_tunnel(&pkt, &mut out).unwrap();
    assert!(count >= 1 && stride > 0);
    assert!(out.len() > (count - 1) * stride && out.len() <= count * stride);
    (stride, count, out)
}

fn datagrams(out: &[u8], stride: usize) -> Vec<&[u8]> {
    out.chunks(stride).collect()
}

fn check_tso(payload: &[u8], mss: u16, flags: u8, id: u16, seq: u32) {
    let n = node();
    let f = tso_frame(payload, flags, id, seq);
    let (stride, count, out) = through_tunnel(&n, &f, tso_vnet(mss));
    let mss = usize::from(mss);
    assert_eq!(count, payload.len().div_ceil(mss).max(1));
    let mut joined = Vec::new();
    for (i, d) in datagrams(&out, stride).into_iter().enumerate() {
        assert_eq!(&d[..8], &[8, 0, 0, 0, 0, 0, 1, 0]);
        let inner = &d[8..];
        assert_checksums(inner);
        let p = SlicedPacket::from_ethernet(inner).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header();
        assert_eq!(usize::from(h.total_len()), inner.len() - 14);
        assert!(usize::from(h.total_len()) <= 20 + 32 + mss);
        assert_eq!(h.identification(), id.wrapping_add(i as u16));
        assert_eq!(h.ttl(), 63);
        let Some(etherparse::TransportSlice::Tcp(t)) = &p.transport else {
            panic!()
        };
        assert_eq!(t.sequence_number(), seq.wrapping_add((i * mss) as u32));
        assert_eq!(t.options(), &f[54..66]);
        let last = i + 1 == count;
        assert_eq!(t.fin(), last && flags & FIN != 0, "fin on segment {i}");
        assert_eq!(t.psh(), last && flags & PSH != 0, "psh on segment {i}");
        assert_eq!(t.cwr(), i == 0 && flags & CWR != 0, "cwr on segment {i}");
        assert!(t.ack());
        joined.extend_from_slice(t.payload());
    }
    assert_eq!(joined, payload);
}

#[test]
fn tso_64k_super_frame() {
    let payload: Vec<u8> = (0..65483u32).map(|i| (i * 7) as u8).collect();
    check_tso(&payload, 1398, PSH | FIN | CWR, 0xfffe, u32::MAX - 1000);
}

#[test]
fn tso_single_segment_and_empty() {
    check_tso(&[1, 2, 3], 1398, PSH, 1, 1);
    check_tso(&[], 1398, FIN, 1, 1);
}

#[test]
fn tso_with_ecn_flag() {
    let n = node();
    let f = tso_frame(&[3u8; 5000], CWR, 5, 5);
    let vnet = VnetHdr {
        gso_type: VNET_GSO_TCPV4 | VNET_GSO_ECN,
        ..tso_vnet(1000)
    };
    let (_, count, _) = through_tunnel(&n, &f, vnet);
    assert_eq!(count, 5);
}

#[test]
fn partial_udp_checksum_is_completed() {
    let n = node();
    let mut f = udp_frame(mac_a(), router(), IP_A, IP_R, 64, false, b"hello, tunnel");
    let full = f.clone();
    let p = pseudo(&f, f.len() - 34, 17);
    f[40..42].copy_from_slice(&p);
    let vnet = VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..Default::default()
    };
    let (stride, count, out) = through_tunnel(&n, &f, vnet);
    assert_eq!((stride, count), (out.len(), 1));
    assert_checksums(&out[8..]);
    assert_eq!(&out[8 + 34..], &full[34..]);
}

/// Reassembles the fragments' IP payloads, checking each fragment's header.
fn reassemble(out: &[u8], stride: usize, mtu: usize) -> Vec<u8> {
    let mut data = Vec::new();
    let frags = datagrams(out, stride);
    for (i, d) in frags.iter().enumerate() {
        let ip = Ipv4HeaderSlice::from_slice(&d[22..]).unwrap();
        assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
        assert!(usize::from(ip.total_len()) <= mtu);
        assert_eq!(usize::from(ip.total_len()), d.len() - 22);
        assert_eq!(ip.more_fragments(), i + 1 < frags.len());
        assert!(!ip.dont_fragment());
        assert_eq!(usize::from(ip.fragments_offset().value()) * 8, data.len());
        data.extend_from_slice(&d[42..]);
    }
    data
}

#[test]
fn oversized_without_df_is_fragmented() {
    let n = node();
    let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
    let mut f = udp_frame(mac_a(), router(), IP_A, IP_R, 64, false, &payload);
    let full = f.clone();
    // With a partial checksum too: it must be completed in the first fragment.
    let p = pseudo(&f, f.len() - 34, 17);
    f[40..42].copy_from_slice(&p);
    for (frame, vnet) in [
        (&full, VnetHdr::default()),
        (
            &f,
            VnetHdr {
                flags: VNET_F_NEEDS_CSUM,
                csum_start: 34,
                csum_offset: 6,
                ..Default::default()
            },
        ),
    ] {
        let (stride, count, out) = through_tunnel(&n, frame, vnet);
        assert_eq!(count, 3);
        assert_eq!(stride, 8 + 14 + 20 + 1424);
        assert_eq!(reassemble(&out, stride, usize::from(MTU)), &full[34..]);
    }
}

#[test]
fn packet_of_exactly_mtu_is_not_segmented_one_byte_more_is() {
    let n = node();
    for (len, want) in [
        (usize::from(MTU) - 28, false),
        (usize::from(MTU) - 27, true),
    ] {
        let f = udp_frame(mac_a(), router(), IP_A, IP_R, 64, false, &vec![7u8; len]);
        let (v, pkt) = n.port(A, &f, VnetHdr::default());
        assert!(matches!(v, Verdict::ToTunnel { .. }), "{v:?}");
        assert_eq!(n.dp.needs_segmentation(&pkt), want, "payload {len}");
    }
}

#[test]
fn unsupported_and_inconsistent_gso_is_an_error() {
    let n = node();
    let f = tso_frame(&[0u8; 3000], 0, 1, 1);
    for (gso_type, reason) in [
        (VNET_GSO_UDP_L4, DropReason::GsoUnsupported),
        (VNET_GSO_TCPV6, DropReason::GsoUnsupported),
    ] {
        let (v, pkt) = n.port(
            A,
            &f,
            VnetHdr {
                gso_type,
                ..tso_vnet(1000)
            },
        );
        assert!(matches!(v, Verdict::ToTunnel { .. }));
        let mut out = Vec::new();
        assert_eq!(n.dp.segment_for_tunnel(&pkt, &mut out), Err(reason));
        assert!(out.is_empty());
    }
    assert_eq!(n.drops(DropReason::GsoUnsupported), 2);

    let u = udp_frame(mac_a(), router(), IP_A, IP_R, 64, true, &[0u8; 3000]);
    let (_, pkt) = n.port(A, &u, tso_vnet(1000));
    let mut out = Vec::new();
    assert_eq!(
        n.dp.segment_for_tunnel(&pkt, &mut out),
        Err(DropReason::BadVnetHdr)
    );

    let garbage = PacketBuf::from_frame(&[0x08, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3]);
    assert_eq!(
        n.dp.segment_for_tunnel(&garbage, &mut out),
        Err(DropReason::Malformed)
    );
}

#[test]
fn complete_checksum_in_place() {
    let mut f = udp_frame(mac_a(), mac_b(), IP_A, IP_B, 64, true, b"abc");
    let full = f.clone();
    let p = pseudo(&f, f.len() - 34, 17);
    f[40..42].copy_from_slice(&p);
    let mut pkt = PacketBuf::from_frame(&f);
    pkt.vnet = VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..Default::default()
    };
    complete_checksum(&mut pkt).unwrap();
    assert_eq!(pkt.frame(), &full[..]);
    assert!(!pkt.vnet.needs_csum());
    pkt.vnet.flags = VNET_F_NEEDS_CSUM;
    pkt.vnet.csum_start = 60;
    assert_eq!(complete_checksum(&mut pkt), Err(DropReason::BadVnetHdr));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tso_segments_reassemble(len in 0usize..20000, mss in 88u16..=1398,
                               flags in prop::sample::select(vec![0, FIN, PSH, CWR, FIN | PSH | CWR]),
                               id in any::<u16>(), seq in any::<u32>()) {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        check_tso(&payload, mss, flags, id, seq);
    }

    #[test]
    // IPv4 total length = 28 + len must exceed MTU (1450) so the packet needs fragmenting.
    fn fragments_reassemble(len in (usize::from(MTU) - 27)..9000, csum in any::<bool>()) {
        let n = node();
        let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let full = udp_frame(mac_a(), router(), IP_A, IP_R, 64, false, &payload);
        let mut f = full.clone();
        let mut vnet = VnetHdr::default();
        if csum {
            let p = pseudo(&f, f.len() - 34, 17);
            f[40..42].copy_from_slice(&p);
            vnet = VnetHdr { flags: VNET_F_NEEDS_CSUM, csum_start: 34, csum_offset: 6, ..vnet };
        }
        let (stride, _, out) = through_tunnel(&n, &f, vnet);
        prop_assert_eq!(reassemble(&out, stride, usize::from(MTU)), &full[34..]);
    }
}
