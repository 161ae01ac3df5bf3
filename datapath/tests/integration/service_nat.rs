//! Service NAT byte by byte: checksums of TSO super-frames with partial checksums, UDP
//! with and without a checksum, and the property that DNAT then reverse NAT of the reply
//! gives back the client's addresses with every checksum valid.

use crate::common;

use common::svc::*;
use common::*;
use etherparse::{SlicedPacket, TransportSlice};
use proptest::prelude::*;
use vswitch_datapath::*;

fn d() -> VnetHdr {
    VnetHdr::default()
}

fn web(eps: &[std::net::SocketAddrV4]) -> Vec<ServiceEntry> {
    vec![svc(VIP, 80, L4Proto::Tcp, eps, None)]
}

#[test]
fn tso_super_frame_with_partial_checksum_is_natted() {
    let payload: Vec<u8> = (0..6000u32).map(|i| i as u8).collect();
    for ep in [sa(IP_B, 8080), sa(IP_R, 8080)] {
        let n = svc_node(16, web(&[ep]), vec![]);
        // tso_frame is A:40000 -> R:80; aim it at the VIP with a fresh pseudo-header seed.
        let mut f = tso_frame(&payload, 0, 7, 1);
        f[30..34].copy_from_slice(&VIP.octets());
        let c = ip_after_hops(&f[14..34], 0);
        f[14..34].copy_from_slice(&c);
        let p = pseudo(&f, f.len() - 34, 6);
        f[50..52].copy_from_slice(&p);
        let (v, mut pkt) = n.port(A, &f, tso_vnet(1398));
        match v {
            Verdict::ToPort(to) => {
                assert_eq!(to, B);
                assert_eq!(
                    pkt.vnet,
                    tso_vnet(1398),
                    "the vnet header goes on unchanged"
                );
                // The partial seed is that of the new addresses: completing gives the full sum.
                assert_eq!(pkt.frame()[50..52], pseudo(pkt.frame(), f.len() - 34, 6));
                complete_checksum(&mut pkt).unwrap();
                assert_checksums(pkt.frame());
                assert_eq!(addrs(pkt.frame()).1, ep);
            }
            Verdict::ToTunnel { .. } => {
                let mut out = Vec::new();
                let (stride, count) = n.dp.segment_for_tunnel(&pkt, &mut out).unwrap();
                assert_eq!(count, 5);
                for seg in out.chunks(stride) {
                    assert_checksums(&seg[8..]);
                    assert_eq!(addrs(&seg[8..]).0, sa(IP_A, 40000));
                    assert_eq!(addrs(&seg[8..]).1, ep);
                }
            }
            Verdict::Drop(r) => panic!("{r:?}"),
            Verdict::DnsForward { .. } => panic!("{v:?}"),
        }
    }
}

#[test]
fn udp_service_with_and_without_checksum() {
    let n = svc_node(
        16,
        vec![svc(VIP, 53, L4Proto::Udp, &[sa(IP_B, 5353)], None)],
        vec![],
    );
    let q = udp_dgram(mac_a(), router(), sa(IP_A, 3333), sa(VIP, 53), b"query", 64);
    let (v, pkt) = n.port(A, &q, d());
    assert_eq!(v, Verdict::ToPort(B));
    assert_checksums(pkt.frame());
    assert_eq!(addrs(pkt.frame()), (sa(IP_A, 3333), sa(IP_B, 5353), 0));
    let mut q0 = q.clone();
    q0[40..42].copy_from_slice(&[0, 0]); // no checksum
    let (v, pkt) = n.port(A, &q0, d());
    assert_eq!(v, Verdict::ToPort(B));
    assert_eq!(&pkt.frame()[40..42], &[0, 0]);
    let ans = udp_dgram(
        mac_b(),
        mac_a(),
        sa(IP_B, 5353),
        sa(IP_A, 3333),
        b"answer",
        64,
    );
    let (v, pkt) = n.port(B, &ans, d());
    assert_eq!(v, Verdict::ToPort(A));
    assert_checksums(pkt.frame());
    assert_eq!(addrs(pkt.frame()), (sa(VIP, 53), sa(IP_A, 3333), 0));
}

proptest! {
    /// DNAT then reverse NAT on the reply gives back the client's view; checksums verify.
    #[test]
    fn nat_round_trip(tcp in any::<bool>(), sport in 1u16.., vport in 1u16.., tport in 1u16..,
                      local in any::<bool>(), payload in proptest::collection::vec(any::<u8>(), 0..200)) {
        let proto = if tcp { L4Proto::Tcp } else { L4Proto::Udp };
        let ep_ip = if local { IP_B } else { IP_R };
        let n = svc_node(16, vec![svc(VIP, vport, proto, &[sa(ep_ip, tport)], None)], vec![]);
        let (c, v) = (sa(IP_A, sport), sa(VIP, vport));
        let req = if tcp {
            tcp_seg(mac_a(), router(), c, v, SYN, 1, 0, &payload)
        } else {
            udp_dgram(mac_a(), router(), c, v, &payload, 64)
        };
        let (verdict, pkt) = n.port(A, &req, d());
        let out = match verdict {
            Verdict::ToPort(B) => pkt.frame().to_vec(),
            Verdict::ToTunnel { .. } => inner(&pkt).to_vec(),
            other => panic!("{other:?}"),
        };
        assert_checksums(&out);
        prop_assert_eq!(addrs(&out).0, c);
        prop_assert_eq!(addrs(&out).1, sa(ep_ip, tport));
        prop_assert_eq!(&out[out.len() - payload.len()..], &payload[..]);
        let e = sa(ep_ip, tport);
        let reply = if tcp {
            tcp_seg(vtep_mac(), peer_vtep_mac(), e, c, SYN | ACK, 5, 2, &payload)
        } else {
            udp_dgram(vtep_mac(), peer_vtep_mac(), e, c, &payload, 64)
        };
        let (verdict, pkt) = if local {
            let mut r = reply.clone();
            r[..12].copy_from_slice(&[mac_a().0, mac_b().0].concat());
            n.port(B, &r, d())
        } else {
            n.tunnel(peer_src(), &[&[8, 0, 0, 0, 0, 0, 1, 0][..], &reply].concat())
        };
        prop_assert_eq!(verdict, Verdict::ToPort(A));
        assert_checksums(pkt.frame());
        let (s, dst, _) = addrs(pkt.frame());
        prop_assert_eq!((s, dst), (v, c));
        let p = SlicedPacket::from_ethernet(pkt.frame()).unwrap();
        let body = match p.transport {
            Some(TransportSlice::Tcp(t)) => t.payload().to_vec(),
            Some(TransportSlice::Udp(u)) => u.payload().to_vec(),
            _ => unreachable!(),
        };
        prop_assert_eq!(body, payload);
    }
}
