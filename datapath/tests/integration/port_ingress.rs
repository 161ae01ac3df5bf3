//! `from_port`: golden frames in, golden frames out, field by field; counters.

use crate::common;

use common::golden::*;
use common::*;
use etherparse::{Ethernet2HeaderSlice, Icmpv4Type, Ipv4HeaderSlice, SlicedPacket};
use vswitch_datapath::buf::{VNET_F_DATA_VALID, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4};
use vswitch_datapath::*;

fn gso_vnet() -> VnetHdr {
    VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        gso_type: VNET_GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1398,
        csum_start: 34,
        csum_offset: 16,
    }
}

#[test]
fn arp_request_for_gateway_is_answered_in_place() {
    let n = node();
    let vnet = VnetHdr {
        flags: VNET_F_DATA_VALID,
        ..Default::default()
    };
    let (v, mut pkt) = n.port(A, &ARP_REQ_GW, vnet);
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(pkt.frame(), &ARP_REP_GW[..]);
    assert_eq!(pkt.vnet, VnetHdr::default());
    // Field by field, through etherparse.
    let eth = Ethernet2HeaderSlice::from_slice(pkt.frame()).unwrap();
    assert_eq!(eth.destination(), mac_a().0);
    assert_eq!(eth.source(), router().0);
    let arp = etherparse::ArpPacketSlice::from_slice(&pkt.frame()[14..]).unwrap();
    assert_eq!(arp.operation(), etherparse::ArpOperation::REPLY);
    assert_eq!(arp.sender_hw_addr(), router().0);
    assert_eq!(arp.sender_protocol_addr(), GW.octets());
    assert_eq!(arp.target_hw_addr(), mac_a().0);
    assert_eq!(arp.target_protocol_addr(), IP_A.octets());
    // The TAP write region is vnet header + reply.
    assert_eq!(pkt.tap_write_region().len(), VNET_HDR_LEN + 42);
    assert_eq!((get(&n.a.rx_packets), get(&n.a.rx_bytes)), (1, 60));
    assert_eq!((get(&n.a.tx_packets), get(&n.a.tx_bytes)), (1, 42));
    assert_eq!(get(&n.a.rx_dropped), 0);
}

#[test]
fn arp_for_vtep_pod_and_unicast_requests() {
    let n = node();
    let z = Mac([0; 6]);
    for (target, eth_dst, answer) in [
        (VTEP, Mac::BROADCAST, router()),
        (IP_B, Mac::BROADCAST, mac_b()),
        (IP_B, mac_b(), mac_b()), // unicast refresh
        (GW, router(), router()),
    ] {
        let f = arp_frame(mac_a(), eth_dst, 1, mac_a(), IP_A, z, target);
        let (v, pkt) = n.port(A, &f, VnetHdr::default());
        assert_eq!(v, Verdict::ToPort(A), "target {target}");
        let r = pkt.frame();
        assert_eq!(r.len(), 42);
        assert_eq!(&r[0..6], &mac_a().0);
        assert_eq!(&r[6..12], &answer.0);
        assert_eq!(&r[20..22], &[0, 2]);
        assert_eq!(&r[22..28], &answer.0);
        assert_eq!(&r[28..32], &target.octets());
        assert_eq!(&r[32..38], &mac_a().0);
        assert_eq!(&r[38..42], &IP_A.octets());
    }
}

#[test]
fn arp_that_is_not_a_request_we_answer_is_ignored() {
    let n = node();
    let z = Mac([0; 6]);
    let bc = Mac::BROADCAST;
    let unknown = std::net::Ipv4Addr::new(198, 18, 1, 99);
    let mut wrong_hw = arp_frame(mac_a(), bc, 1, mac_a(), IP_A, z, GW);
    wrong_hw[15] = 6; // IEEE 802
    let cases = [
        arp_frame(mac_a(), router(), 2, mac_a(), IP_A, router(), GW), // reply
        arp_frame(mac_a(), bc, 1, mac_a(), IP_A, z, IP_A),            // gratuitous
        arp_frame(mac_a(), bc, 1, mac_a(), IP_A, z, unknown),         // unknown target
        arp_frame(mac_a(), bc, 1, mac_a(), "0.0.0.0".parse().unwrap(), z, IP_A), // probe
        wrong_hw,
    ];
    for (i, f) in cases.iter().enumerate() {
        let (v, _) = n.port(A, f, VnetHdr::default());
        assert_eq!(v, Verdict::Drop(DropReason::ArpIgnored), "case {i}");
    }
    assert_eq!(n.drops(DropReason::ArpIgnored), cases.len() as u64);
    assert_eq!(get(&n.a.rx_dropped), cases.len() as u64);
    assert_eq!(get(&n.a.tx_packets), 0);
}

#[test]
fn arp_with_foreign_sender_is_spoofed() {
    let n = node();
    let z = Mac([0; 6]);
    let bc = Mac::BROADCAST;
    for f in [
        arp_frame(mac_a(), bc, 1, mac_b(), IP_A, z, GW), // sender MAC of B
        arp_frame(mac_a(), bc, 1, mac_a(), IP_B, z, GW), // sender IP of B
        arp_frame(mac_a(), bc, 2, mac_a(), IP_B, z, GW), // spoofed reply
    ] {
        let (v, _) = n.port(A, &f, VnetHdr::default());
        assert_eq!(v, Verdict::Drop(DropReason::SpoofedArp));
    }
    assert_eq!(n.drops(DropReason::SpoofedArp), 3);
    // Truncated ARP is malformed.
    let f = arp_frame(mac_a(), bc, 1, mac_a(), IP_A, z, GW);
    let (v, _) = n.port(A, &f[..40], VnetHdr::default());
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
}

#[test]
fn echo_to_gateway_is_answered_golden() {
    let n = node();
    let (v, pkt) = n.port(A, &ECHO_REQ_GW, VnetHdr::default());
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(pkt.frame(), &ECHO_REP_GW[..]);
    assert_checksums(pkt.frame());
    let p = SlicedPacket::from_ethernet(pkt.frame()).unwrap();
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = p.transport else {
        panic!("icmp")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id: 1, seq: 1 })
    );
    assert_eq!(get(&n.a.tx_packets), 1);
}

#[test]
fn echo_with_ip_options_is_answered_without_them() {
    let n = node();
    let (v, pkt) = n.port(A, &ECHO_REQ_GW_OPTS, VnetHdr::default());
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(pkt.frame(), &ECHO_REP_GW[..]);
}

#[test]
fn echo_to_vtep_address_and_padding() {
    let n = node();
    let mut f = ECHO_REQ_GW.to_vec();
    // Retarget to the VTEP address: dst .1 -> .0 changes the IP checksum by +1.
    f[33] = 0;
    let c = u16::from_be_bytes([f[24], f[25]]) + 1;
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&[0xee; 6]); // trailing garbage after the IP packet
    let (v, pkt) = n.port(A, &f, VnetHdr::default());
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(pkt.len(), 98);
    let ip = Ipv4HeaderSlice::from_slice(&pkt.frame()[14..]).unwrap();
    assert_eq!(ip.source_addr(), VTEP);
    assert_eq!(ip.destination_addr(), IP_A);
    assert_checksums(pkt.frame());
}

#[test]
fn non_echo_to_gateway_is_local_unsupported() {
    let n = node();
    let f = udp_frame(mac_a(), router(), IP_A, GW, 64, true, b"dns?");
    let (v, _) = n.port(A, &f, VnetHdr::default());
    assert_eq!(v, Verdict::Drop(DropReason::LocalUnsupported));
    assert_eq!(n.drops(DropReason::LocalUnsupported), 1);
    assert_eq!(get(&n.a.rx_dropped), 1);
}

#[test]
fn tcp_syn_routed_pod_to_pod_golden() {
    let n = node();
    let (v, pkt) = n.port(A, &SYN_A_TO_B, VnetHdr::default());
    assert_eq!(v, Verdict::ToPort(B));
    assert_eq!(pkt.frame(), &SYN_A_TO_B_OUT[..]);
    let ip = Ipv4HeaderSlice::from_slice(&pkt.frame()[14..]).unwrap();
    assert_eq!(ip.ttl(), 63);
    assert_checksums(pkt.frame());
    assert_eq!((get(&n.a.rx_packets), get(&n.a.tx_packets)), (1, 0));
    assert_eq!((get(&n.b.tx_packets), get(&n.b.tx_bytes)), (1, 74));
}

#[test]
fn routed_gso_frame_keeps_vnet_header_and_trims_padding() {
    let n = node();
    let f = tcp_frame(mac_a(), router(), IP_A, IP_B, &[7u8; 4000]);
    let (v, pkt) = n.port(A, &f, gso_vnet());
    assert_eq!(v, Verdict::ToPort(B));
    assert_eq!(pkt.vnet, gso_vnet());
    assert_eq!(&pkt.frame()[0..6], &mac_b().0);
    assert_eq!(&pkt.frame()[6..12], &router().0);

    let mut small = udp_frame(mac_a(), router(), IP_A, IP_B, 64, true, b"hi");
    let ip_end = small.len();
    small.resize(60, 0);
    let (v, pkt) = n.port(A, &small, VnetHdr::default());
    assert_eq!(v, Verdict::ToPort(B));
    assert_eq!(pkt.len(), ip_end);
    assert_checksums(pkt.frame());
}

#[test]
fn l2_switching_is_unchanged_and_keeps_vnet() {
    let n = node();
    let f = tcp_frame(mac_a(), mac_b(), IP_A, IP_B, &[1u8; 3000]);
    let (v, pkt) = n.port(A, &f, gso_vnet());
    assert_eq!(v, Verdict::ToPort(B));
    assert_eq!(pkt.frame(), &f[..]);
    assert_eq!(pkt.vnet, gso_vnet());
    assert_eq!(get(&n.b.tx_bytes), f.len() as u64);
}

#[test]
fn ttl_expiry_answers_time_exceeded() {
    let n = node();
    let f = udp_frame(mac_a(), router(), IP_A, IP_B, 1, true, &[9u8; 100]);
    let (v, pkt) = n.port(A, &f, VnetHdr::default());
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(n.drops(DropReason::TtlExceeded), 1);
    assert_eq!(get(&n.a.rx_dropped), 1);
    let r = pkt.frame();
    assert_eq!(r.len(), 14 + 20 + 8 + 20 + 8);
    assert_eq!(&r[0..6], &mac_a().0);
    assert_eq!(&r[6..12], &router().0);
    let ip = Ipv4HeaderSlice::from_slice(&r[14..]).unwrap();
    assert_eq!((ip.source_addr(), ip.destination_addr()), (GW, IP_A));
    assert_eq!(&r[34..36], &[11, 0]);
    assert_eq!(
        &r[42..70],
        &f[14..42],
        "quotes the original header + 8 bytes"
    );
    assert_checksums(r);

    // TTL 1 to the gateway itself is still answered (traceroute's last hop).
    let mut e = ECHO_REQ_GW.to_vec();
    e[22] = 1;
    let (v, _) = n.port(A, &e, VnetHdr::default());
    assert_eq!(v, Verdict::ToPort(A));
}

#[test]
fn no_icmp_error_about_icmp_errors() {
    let n = node();
    let mut f = ECHO_REQ_GW.to_vec();
    f[30..34].copy_from_slice(&IP_B.octets()); // to pod B, checksum not re-verified by us
    f[22] = 1; // TTL 1
    f[34] = 3; // ICMP destination unreachable
    let (v, _) = n.port(A, &f, VnetHdr::default());
    assert_eq!(v, Verdict::Drop(DropReason::TtlExceeded));
}

#[test]
fn bad_vnet_headers_are_dropped() {
    let n = node();
    let f = tcp_frame(mac_a(), mac_b(), IP_A, IP_B, &[1u8; 100]);
    let bad = [
        VnetHdr {
            gso_size: 0,
            ..gso_vnet()
        },
        VnetHdr {
            gso_type: 2,
            ..gso_vnet()
        },
        VnetHdr {
            csum_start: 200,
            ..gso_vnet()
        },
    ];
    for h in bad {
        let (v, _) = n.port(A, &f, h);
        assert_eq!(v, Verdict::Drop(DropReason::BadVnetHdr), "{h:?}");
    }
}
