//! VXLAN: encapsulation towards peers, decapsulation, split horizon, flannel interop, PMTU.

use crate::common;

use common::golden::*;
use common::*;
use etherparse::{Ipv4HeaderSlice, SlicedPacket};
use proptest::prelude::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use vswitch_datapath::*;

fn to_peer() -> Verdict {
    Verdict::ToTunnel {
        peer: PEER,
        dst: SocketAddrV4::new(UNDERLAY, 4789),
    }
}

#[test]
fn routed_to_peer_golden_vxlan() {
    let n = node();
    let (v, pkt) = n.port(A, &SYN_A_TO_R, VnetHdr::default());
    assert_eq!(v, to_peer());
    assert_eq!(pkt.frame(), &SYN_A_TO_R_VXLAN[..]);
    let f = pkt.frame();
    assert_eq!(&f[..8], &[0x08, 0, 0, 0, 0, 0, 1, 0], "VXLAN header, VNI 1");
    assert_eq!(&f[8..14], &peer_vtep_mac().0, "inner dst = peer VTEP MAC");
    assert_eq!(&f[14..20], &vtep_mac().0, "inner src = our VTEP MAC");
    assert_checksums(&f[8..]);
    assert_eq!(Ipv4HeaderSlice::from_slice(&f[22..]).unwrap().ttl(), 63);
    assert_eq!((get(&n.peer.tx_packets), get(&n.peer.tx_bytes)), (1, 74));
    assert_eq!(get(&n.a.rx_packets), 1);
    assert!(!n.dp.needs_segmentation(&pkt));
}

#[test]
fn flannel_style_inbound_is_delivered_golden() {
    let n = node();
    let (v, pkt) = n.tunnel(peer_src(), &FLANNEL_SYNACK_TO_B);
    assert_eq!(v, Verdict::ToPort(B));
    assert_eq!(pkt.frame(), &FLANNEL_SYNACK_TO_B_OUT[..]);
    assert_eq!(pkt.vnet, VnetHdr::default());
    assert_checksums(pkt.frame());
    let inner_len = FLANNEL_SYNACK_TO_B.len() - 8;
    assert_eq!(get(&n.peer.rx_bytes), inner_len as u64);
    assert_eq!(
        (get(&n.b.tx_packets), get(&n.b.tx_bytes)),
        (1, inner_len as u64)
    );

    // The inner destination MAC may also be the router MAC (or anything unicast).
    let mut d = FLANNEL_SYNACK_TO_B;
    d[8..14].copy_from_slice(&router().0);
    assert_eq!(n.tunnel(peer_src(), &d).0, Verdict::ToPort(B));
}

#[test]
fn tunnel_admission_drops() {
    let n = node();
    let stranger = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 9), 4789);
    assert_eq!(
        n.tunnel(stranger, &FLANNEL_SYNACK_TO_B).0,
        Verdict::Drop(DropReason::TunnelUnknownPeer)
    );
    let mut d = FLANNEL_SYNACK_TO_B;
    d[6] = 2; // VNI 2
    assert_eq!(
        n.tunnel(peer_src(), &d).0,
        Verdict::Drop(DropReason::TunnelUnknownVni)
    );
    d[6] = 1;
    d[0] = 0; // I flag clear
    assert_eq!(
        n.tunnel(peer_src(), &d).0,
        Verdict::Drop(DropReason::TunnelMalformed)
    );
    assert_eq!(
        n.tunnel(peer_src(), &[8, 0, 0]).0,
        Verdict::Drop(DropReason::TunnelMalformed)
    );
    assert_eq!(
        n.tunnel(peer_src(), &FLANNEL_SYNACK_TO_B[..20]).0,
        Verdict::Drop(DropReason::Malformed)
    );
    assert_eq!(
        get(&n.peer.rx_dropped),
        4,
        "drops from a known peer count on it"
    );
    assert_eq!(n.drops(DropReason::TunnelUnknownPeer), 1);
}

fn vxlan(inner: &[u8]) -> Vec<u8> {
    let mut d = vec![8, 0, 0, 0, 0, 0, 1, 0];
    d.extend_from_slice(inner);
    d
}

#[test]
fn split_horizon_and_inner_classification() {
    let n = node();
    let pm = peer_vtep_mac();
    let vm = vtep_mac();
    let cases = [
        // To the peer's own subnet: would go back into the tunnel.
        (
            udp_frame(pm, vm, IP_R, Ipv4Addr::new(198, 18, 2, 9), 64, true, b"x"),
            DropReason::TunnelNotOurs,
        ),
        // Anywhere else.
        (
            udp_frame(pm, vm, IP_R, Ipv4Addr::new(198, 18, 9, 9), 64, true, b"x"),
            DropReason::TunnelNotOurs,
        ),
        // Unused address of our subnet.
        (
            udp_frame(pm, vm, IP_R, Ipv4Addr::new(198, 18, 1, 99), 64, true, b"x"),
            DropReason::TunnelNotOurs,
        ),
        (
            udp_frame(pm, vm, IP_R, IP_B, 1, true, b"x"),
            DropReason::TtlExceeded,
        ),
        (
            udp_frame(pm, vm, IP_R, GW, 64, true, b"x"),
            DropReason::LocalUnsupported,
        ),
        (
            udp_frame(pm, Mac::BROADCAST, IP_R, IP_B, 64, true, b"x"),
            DropReason::Multicast,
        ),
        (
            arp_frame(pm, Mac::BROADCAST, 1, pm, IP_R, Mac([0; 6]), IP_B),
            DropReason::ArpIgnored,
        ),
    ];
    for (i, (inner, reason)) in cases.iter().enumerate() {
        assert_eq!(
            n.tunnel(peer_src(), &vxlan(inner)).0,
            Verdict::Drop(*reason),
            "case {i}"
        );
    }
    let mut v6 = udp_frame(pm, vm, IP_R, IP_B, 64, true, b"x");
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(
        n.tunnel(peer_src(), &vxlan(&v6)).0,
        Verdict::Drop(DropReason::Ipv6)
    );
    v6[12..14].copy_from_slice(&[0x88, 0xcc]);
    assert_eq!(
        n.tunnel(peer_src(), &vxlan(&v6)).0,
        Verdict::Drop(DropReason::UnknownEthertype)
    );
}

/// A host that forges a peer's underlay address speaks only for that peer's pod subnet: an
/// inner source of ours (a pod, the gateway, the VTEP), a VIP, the DNS IP or another node's
/// subnet is dropped before conntrack, counted on the peer and node-wide.
#[test]
fn inner_sources_outside_the_peers_subnet_are_spoofed() {
    let n = node();
    let (pm, vm) = (peer_vtep_mac(), vtep_mac());
    let forged = [
        IP_A,
        GW,
        VTEP,
        Ipv4Addr::new(198, 19, 96, 10),
        Ipv4Addr::new(198, 19, 96, 1),
        Ipv4Addr::new(198, 18, 3, 5),
        Ipv4Addr::new(203, 0, 113, 1),
    ];
    for (i, src) in forged.iter().enumerate() {
        let inner = udp_frame(pm, vm, *src, IP_B, 64, true, b"x");
        assert_eq!(
            n.tunnel(peer_src(), &vxlan(&inner)).0,
            Verdict::Drop(DropReason::TunnelSpoofedSource),
            "case {i}: {src}"
        );
    }
    assert_eq!(get(&n.peer.rx_dropped), forged.len() as u64);
    assert_eq!(
        n.dp.counters().drops(DropReason::TunnelSpoofedSource),
        forged.len() as u64
    );
    // The peer's own subnet, its VTEP address (.0) included, still gets through.
    for src in [IP_R, Ipv4Addr::new(198, 18, 2, 0)] {
        let inner = udp_frame(pm, vm, src, IP_B, 64, true, b"x");
        assert_eq!(n.tunnel(peer_src(), &vxlan(&inner)).0, Verdict::ToPort(B));
    }
}

#[test]
fn echo_from_tunnel_to_our_vtep_is_answered_into_the_tunnel() {
    let n = node();
    // A flannel node pings our .0 from its own .0.
    let mut e = common::golden::ECHO_REQ_GW.to_vec();
    e[0..6].copy_from_slice(&vtep_mac().0);
    e[6..12].copy_from_slice(&peer_vtep_mac().0);
    let peer0 = Ipv4Addr::new(198, 18, 2, 0);
    e[26..30].copy_from_slice(&peer0.octets());
    e[30..34].copy_from_slice(&VTEP.octets());
    let e = [&e[..14], &ip_after_hops(&e[14..], 0)].concat();
    let (v, pkt) = n.tunnel(peer_src(), &vxlan(&e));
    assert_eq!(v, to_peer());
    let f = pkt.frame();
    assert_eq!(&f[..8], &[8, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(&f[8..14], &peer_vtep_mac().0);
    assert_eq!(&f[14..20], &vtep_mac().0);
    let ip = Ipv4HeaderSlice::from_slice(&f[22..]).unwrap();
    assert_eq!((ip.source_addr(), ip.destination_addr()), (VTEP, peer0));
    assert_eq!(f[42], 0, "echo reply");
    assert_checksums(&f[8..]);
    assert_eq!(get(&n.peer.tx_packets), 1);
}

#[test]
fn pmtu_frag_needed_is_answered() {
    let n = node();
    let payload = vec![0x5a; usize::from(MTU) - 28 + 1]; // IP total length = MTU + 1
    let f = udp_frame(mac_a(), router(), IP_A, IP_R, 64, true, &payload);
    let (v, pkt) = n.port(A, &f, VnetHdr::default());
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(n.drops(DropReason::TooBig), 1);
    assert_eq!(get(&n.a.rx_dropped), 1);
    assert_eq!(get(&n.peer.tx_packets), 0);
    let r = pkt.frame();
    assert_eq!(r.len(), 14 + 20 + 8 + 28);
    assert_eq!(&r[0..6], &mac_a().0);
    assert_eq!(&r[6..12], &router().0);
    let ip = Ipv4HeaderSlice::from_slice(&r[14..]).unwrap();
    assert_eq!(
        (ip.source_addr(), ip.destination_addr(), ip.ttl()),
        (GW, IP_A, 64)
    );
    assert_eq!(usize::from(ip.total_len()), r.len() - 14);
    assert_eq!(&r[34..36], &[3, 4], "type 3 code 4");
    assert_eq!(
        &r[38..42],
        &[0, 0, (MTU >> 8) as u8, MTU as u8],
        "next-hop MTU"
    );
    assert_eq!(&r[42..70], &f[14..42], "original header + 8 bytes");
    assert_checksums(r);
    let p = SlicedPacket::from_ethernet(r).unwrap();
    assert!(matches!(
        p.transport,
        Some(etherparse::TransportSlice::Icmpv4(_))
    ));

    // Exactly MTU bytes go through.
    let f = udp_frame(mac_a(), router(), IP_A, IP_R, 64, true, &payload[1..]);
    assert_eq!(n.port(A, &f, VnetHdr::default()).0, to_peer());
}

#[test]
fn two_nodes_ping_pong() {
    // Pod A on node 1 sends to pod R on node 2, through both datapaths.
    let n1 = node();
    let n2 = node2();
    let f = tcp_frame(mac_a(), router(), IP_A, IP_R, b"GET / HTTP/1.1\r\n\r\n");
    let (v, pkt) = n1.port(A, &f, VnetHdr::default());
    assert_eq!(v, to_peer());
    let (v, out) = n2.tunnel(SocketAddrV4::new(UNDERLAY1, 4789), pkt.frame());
    assert_eq!(v, Verdict::ToPort(R));
    assert_eq!(&out.frame()[..6], &Mac::from_ipv4(IP_R).0);
    assert_eq!(&out.frame()[14..], &ip_after_hops(&f[14..], 2)[..]);
    assert_eq!(get(&n2.a.tx_packets), 1);
}

proptest! {
    /// Encapsulation then decapsulation is the identity on the inner IP packet (but for the
    /// two router hops' TTL), for any UDP/TCP payload and any source pod port.
    #[test]
    fn encap_decap_identity(payload in proptest::collection::vec(any::<u8>(), 0..1400),
                            tcp in any::<bool>(), ttl in 3u8..=255) {
        let n1 = node();
        let n2 = node2();
        let mut f = if tcp {
            tcp_frame(mac_a(), router(), IP_A, IP_R, &payload)
        } else {
            udp_frame(mac_a(), router(), IP_A, IP_R, 64, true, &payload)
        };
        f = [&f[..14], &ip_after_hops(&f[14..], 64 - ttl.min(64))].concat();
        let (v, pkt) = n1.port(A, &f, VnetHdr::default());
        prop_assert_eq!(v, to_peer());
        let (v, out) = n2.tunnel(SocketAddrV4::new(UNDERLAY1, 4789), pkt.frame());
        prop_assert_eq!(v, Verdict::ToPort(R));
        prop_assert_eq!(&out.frame()[14..], &ip_after_hops(&f[14..], 2)[..]);
    }

    /// Split horizon: whatever arrives from the tunnel never goes back into it, except the
    /// switch's own echo replies.
    #[test]
    fn nothing_forwarded_from_the_tunnel_goes_back(
        dst in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..200),
        echo in any::<bool>(),
    ) {
        let n = node();
        let dst = Ipv4Addr::from(dst);
        let mut inner = udp_frame(peer_vtep_mac(), vtep_mac(), IP_R, dst, 64, true, &body);
        if echo {
            inner[23] = 1; // protocol ICMP; the first byte of "UDP" is the type
            inner[34] = 8;
            inner[35] = 0;
        }
        let (v, _) = n.tunnel(peer_src(), &vxlan(&inner));
        if let Verdict::ToTunnel { .. } = v {
            prop_assert!(echo && (dst == GW || dst == VTEP));
        }
    }
}

/// A TSO super-frame whose segments would exceed the tunnel (the pod's MTU was raised) is
/// answered with frag-needed like a plain DF packet, so TCP lowers its MSS.
#[test]
fn pmtu_applies_to_gso_segment_size() {
    let n = node();
    let mss = usize::from(MTU) - 40 + 100; // segments 100 bytes over the tunnel's MTU
    let payload = vec![0x33; mss * 3];
    let f = tcp_frame(mac_a(), router(), IP_A, IP_R, &payload);
    let vnet = VnetHdr {
        flags: buf::VNET_F_NEEDS_CSUM,
        gso_type: buf::VNET_GSO_TCPV4,
        hdr_len: 54,
        gso_size: mss as u16,
        csum_start: 34,
        csum_offset: 16,
    };
    let (v, pkt) = n.port(A, &f, vnet);
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(n.drops(DropReason::TooBig), 1);
    assert_eq!(get(&n.peer.tx_packets), 0);
    let r = pkt.frame();
    assert_eq!(&r[34..36], &[3, 4], "type 3 code 4");
    assert_eq!(&r[38..42], &[0, 0, (MTU >> 8) as u8, MTU as u8]);
    assert_eq!(pkt.vnet, VnetHdr::default(), "the reply is a plain frame");
    assert_checksums(r);

    // Segments that fit go into the tunnel.
    let ok_mss = usize::from(MTU) - 40;
    let f = tcp_frame(mac_a(), router(), IP_A, IP_R, &vec![0x44; ok_mss * 3]);
    let vnet = VnetHdr {
        gso_size: ok_mss as u16,
        ..vnet
    };
    let (v, _) = n.port(A, &f, vnet);
    assert!(matches!(v, Verdict::ToTunnel { .. }), "{v:?}");
}
