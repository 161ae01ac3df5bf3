//! Every drop reason is counted somewhere: for each reason, an input that provokes it, and
//! its counter (plus the ingress link's `rx_dropped`) must rise. The `match` is exhaustive,
//! so a new reason does not compile until it has a case here.

use crate::common;

use common::golden::*;
use common::svc::*;
use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use vswitch_datapath::buf::{VNET_F_NEEDS_CSUM, VNET_GSO_UDP_L4};
use vswitch_datapath::*;

enum Input {
    Port(PortId, Vec<u8>, VnetHdr),
    Tunnel(SocketAddrV4, Vec<u8>),
    /// Sent from pod A with this vnet header, then `segment_for_tunnel`.
    Segment(Vec<u8>, VnetHdr),
    /// Counted by the shell through `count_drop`.
    Shell,
    /// From pod A on a node with services (see `svc_node`), at most `ct_max` connections
    /// (and at most `ct_pod_max` per pod).
    Service(usize, usize, Vec<u8>),
    /// From pod A twice, on a node whose ARP and broadcast limits are 1/s with bursts of 1:
    /// the first one uses the budget up (and is counted as what it is), the second is the
    /// drop.
    Limited(Vec<u8>),
}

/// An mDNS datagram from pod A to its multicast group.
fn mdns() -> Vec<u8> {
    let group = Ipv4Addr::new(224, 0, 0, 251);
    udp_frame(
        mac_a(),
        Mac([1, 0, 0x5e, 0, 0, 0xfb]),
        IP_A,
        group,
        1,
        true,
        b"m",
    )
}

fn vx(inner: &[u8]) -> Vec<u8> {
    [&[8, 0, 0, 0, 0, 0, 1, 0][..], inner].concat()
}

fn provoke(r: DropReason) -> Input {
    use DropReason::*;
    let d = VnetHdr::default();
    let (a, rt, pm, vm) = (mac_a(), router(), peer_vtep_mac(), vtep_mac());
    let udp = |src, dst, ttl| udp_frame(a, rt, src, dst, ttl, true, b"payload");
    match r {
        Malformed => Input::Port(A, vec![0; 13], d),
        BadVnetHdr => Input::Port(A, udp(IP_A, IP_B, 64), VnetHdr { gso_type: 9, ..d }),
        UnknownEthertype => {
            let mut f = udp(IP_A, IP_B, 64);
            f[12..14].copy_from_slice(&[0x81, 0x00]); // VLAN tag
            Input::Port(A, f, d)
        }
        Ipv6 => {
            let mut f = udp(IP_A, IP_B, 64);
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            Input::Port(A, f, d)
        }
        SpoofedMac => Input::Port(B, udp(IP_A, IP_B, 64), d),
        SpoofedIp => Input::Port(A, udp(IP_B, IP_A, 64), d),
        SpoofedArp => Input::Port(
            A,
            arp_frame(a, Mac::BROADCAST, 1, a, IP_B, Mac([0; 6]), GW),
            d,
        ),
        ArpIgnored => Input::Port(A, arp_frame(a, rt, 2, a, IP_A, rt, GW), d),
        Multicast => Input::Port(A, mdns(), d),
        ArpRateLimited => Input::Limited(arp_frame(a, Mac::BROADCAST, 1, a, IP_A, Mac([0; 6]), GW)),
        BroadcastRateLimited => Input::Limited(mdns()),
        UnknownDestMac => Input::Port(
            A,
            udp_frame(a, Mac([2, 0, 0, 0, 0, 9]), IP_A, IP_B, 64, true, b"x"),
            d,
        ),
        Hairpin => Input::Port(A, udp_frame(a, a, IP_A, IP_B, 64, true, b"x"), d),
        NoRoute => Input::Port(A, udp(IP_A, Ipv4Addr::new(198, 18, 7, 7), 64), d),
        TtlExceeded => Input::Port(A, udp(IP_A, IP_B, 1), d),
        LocalUnsupported => Input::Port(A, udp(IP_A, GW, 64), d),
        UnknownPort => Input::Port(PortId::new(99), SYN_A_TO_B.to_vec(), d),
        TooBig => Input::Port(A, udp_frame(a, rt, IP_A, IP_R, 64, true, &[0; 1500]), d),
        TunnelMalformed => Input::Tunnel(peer_src(), vec![0; 30]),
        TunnelUnknownVni => {
            let mut f = FLANNEL_SYNACK_TO_B.to_vec();
            f[6] = 42;
            Input::Tunnel(peer_src(), f)
        }
        TunnelUnknownPeer => Input::Tunnel(
            SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 77), 4789),
            FLANNEL_SYNACK_TO_B.to_vec(),
        ),
        TunnelNotOurs => Input::Tunnel(
            peer_src(),
            vx(&udp_frame(
                pm,
                vm,
                IP_R,
                Ipv4Addr::new(198, 18, 2, 6),
                64,
                true,
                b"x",
            )),
        ),
        TunnelSpoofedSource => Input::Tunnel(
            peer_src(),
            vx(&udp_frame(pm, vm, IP_A, IP_B, 64, true, b"x")),
        ),
        TxError | DnsUpstreamFailed | DnsForwardLimited | DnsUpstreamUnmatched => Input::Shell,
        GsoUnsupported => Input::Segment(
            tcp_frame(a, rt, IP_A, IP_R, &[0; 3000]),
            VnetHdr {
                flags: VNET_F_NEEDS_CSUM,
                gso_type: VNET_GSO_UDP_L4,
                hdr_len: 42,
                gso_size: 1000,
                csum_start: 34,
                csum_offset: 16,
            },
        ),
        ServiceNoEndpoints => Input::Service(
            1,
            1,
            udp_dgram(a, rt, sa(IP_A, 5000), sa(VIP2, 53), b"q", 64),
        ),
        ServiceUnknownPort => Input::Service(
            1,
            1,
            udp_dgram(a, rt, sa(IP_A, 5000), sa(VIP, 81), b"q", 64),
        ),
        ConntrackFull => Input::Service(
            0,
            1,
            udp_dgram(a, rt, sa(IP_A, 5000), sa(VIP, 80), b"q", 64),
        ),
        ConntrackPodLimit => Input::Service(
            1,
            0,
            udp_dgram(a, rt, sa(IP_A, 5000), sa(VIP, 80), b"q", 64),
        ),
        DnsMalformed => Input::Service(
            1,
            1,
            udp_dgram(a, rt, sa(IP_A, 5000), sa(DNS_IP, 53), b"q", 64),
        ),
        DnsRefused => {
            let q = [
                &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0][..],
                b"\x07example\x03com\x00\x00\x01\x00\x01",
            ]
            .concat();
            Input::Service(
                1,
                1,
                udp_dgram(a, rt, sa(IP_A, 5000), sa(DNS_IP, 53), &q, 64),
            )
        }
    }
}

/// Answered in place (ICMP error, TCP RST, DNS error) although counted as a drop.
fn answered(r: DropReason) -> bool {
    use DropReason::*;
    matches!(r, TooBig | TtlExceeded | ServiceNoEndpoints | DnsRefused)
}

#[test]
fn every_drop_reason_is_counted() {
    for &r in DropReason::ALL {
        let input = provoke(r);
        let n = match &input {
            Input::Service(ct_max, ct_pod_max, _) => {
                let mut cfg = svc_config(*ct_max);
                cfg.ct_pod_max = *ct_pod_max;
                let n = node_with(cfg);
                n.set_services(
                    vec![
                        svc(VIP, 80, L4Proto::Udp, &[sa(IP_B, 8080)], None),
                        svc(VIP2, 53, L4Proto::Udp, &[], None),
                    ],
                    vec![],
                );
                n
            }
            Input::Limited(_) => {
                let mut cfg = config();
                cfg.arp_limit = RateLimit {
                    per_sec: 1,
                    burst: 1,
                };
                cfg.broadcast_limit = cfg.arp_limit;
                node_with(cfg)
            }
            _ => node(),
        };
        if let Input::Limited(f) = &input {
            let (v, _) = n.port(A, f, VnetHdr::default());
            assert_ne!(
                v,
                Verdict::Drop(r),
                "{r:?}: the first one is within the limit"
            );
        }
        let before = n.drops(r);
        let link_drops =
            |n: &Node| get(&n.a.rx_dropped) + get(&n.b.rx_dropped) + get(&n.peer.rx_dropped);
        let links_before = link_drops(&n);
        let total = |n: &Node| -> u64 { n.dp.counters().snapshot().iter().map(|(_, c)| c).sum() };
        let total_before = total(&n);
        let input = match input {
            Input::Service(_, _, f) | Input::Limited(f) => Input::Port(A, f, VnetHdr::default()),
            i => i,
        };
        // The direction the drop is counted in.
        let dir = match &input {
            Input::Port(..) | Input::Shell => Direction::FromPod,
            Input::Tunnel(..) => Direction::FromTunnel,
            Input::Segment(..) => Direction::Egress,
            Input::Service(..) | Input::Limited(_) => unreachable!("turned into Port above"),
        };
        let dir_before = n.dp.counters().drops_in(r, dir);
        match input {
            Input::Port(p, f, vnet) => {
                let (v, _) = n.port(p, &f, vnet);
                if answered(r) {
                    assert_eq!(v, Verdict::ToPort(p), "{r:?} answered");
                } else {
                    assert_eq!(v, Verdict::Drop(r), "{r:?}");
                }
                let expect_link = u64::from(r != DropReason::UnknownPort);
                assert_eq!(
                    link_drops(&n) - links_before,
                    expect_link,
                    "{r:?} rx_dropped"
                );
            }
            Input::Tunnel(src, dgram) => {
                let (v, _) = n.tunnel(src, &dgram);
                assert_eq!(v, Verdict::Drop(r), "{r:?}");
                let expect_link = u64::from(r != DropReason::TunnelUnknownPeer);
                assert_eq!(link_drops(&n), expect_link, "{r:?} rx_dropped");
            }
            Input::Segment(f, vnet) => {
                let (v, pkt) = n.port(A, &f, vnet);
                assert!(matches!(v, Verdict::ToTunnel { .. }), "{r:?}");
                let mut out = Vec::new();
                assert_eq!(n.dp.segment_for_tunnel(&pkt, &mut out), Err(r));
            }
            Input::Shell => n.dp.count_drop(r, Direction::FromPod),
            Input::Service(..) | Input::Limited(_) => unreachable!("turned into Port above"),
        }
        assert_eq!(n.drops(r), before + 1, "{r:?} ({}) counted once", r.name());
        assert_eq!(
            n.dp.counters().drops_in(r, dir),
            dir_before + 1,
            "{r:?} counted as {}",
            dir.name()
        );
        assert_eq!(
            total(&n) - total_before,
            1,
            "{r:?}: no other reason counted"
        );
    }
}

#[test]
fn counter_names_are_unique_snake_case() {
    let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
    assert!(names.iter().all(|n| n
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
    names.sort();
    names.dedup();
    assert_eq!(names.len(), DropReason::ALL.len());
}
