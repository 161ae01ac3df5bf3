//! Services at the client's node: DNAT to local and remote endpoints, reverse NAT of the
//! replies, rejects, hairpin, PMTU and TTL, spread and affinity (NAT checksums in detail:
//! service_nat.rs).

use crate::common;

use common::svc::*;
use common::*;
use etherparse::{Ipv4HeaderSlice, PacketBuilder};
use std::collections::HashMap;
use std::net::SocketAddrV4;
use vswitch_datapath::*;

fn d() -> VnetHdr {
    VnetHdr::default()
}

fn web(eps: &[SocketAddrV4]) -> Vec<ServiceEntry> {
    vec![svc(VIP, 80, L4Proto::Tcp, eps, None)]
}

/// Client A's SYN from `sport` to VIP:80.
fn syn(sport: u16) -> Vec<u8> {
    tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, sport),
        sa(VIP, 80),
        SYN,
        1000,
        0,
        b"",
    )
}

#[test]
fn syn_to_vip_is_dnated_to_a_local_endpoint_and_the_reply_reverse_nated() {
    let n = svc_node(16, web(&[sa(IP_B, 8080)]), vec![]);
    let (v, pkt) = n.port(A, &syn(40000), d());
    assert_eq!(v, Verdict::ToPort(B));
    // Exactly what B must get: router -> B MACs, TTL 63, destination rewritten.
    let want = tcp_seg_ttl(
        router(),
        mac_b(),
        sa(IP_A, 40000),
        sa(IP_B, 8080),
        SYN,
        1000,
        0,
        b"",
        63,
    );
    assert_eq!(pkt.frame(), &want[..]);
    assert_eq!(n.dp.conntrack_len(), 1);

    // B answers at L2 (A is on its subnet): only the source is rewritten, MACs and TTL kept.
    let synack = tcp_seg(
        mac_b(),
        mac_a(),
        sa(IP_B, 8080),
        sa(IP_A, 40000),
        SYN | ACK,
        5000,
        1001,
        b"",
    );
    let (v, pkt) = n.port(B, &synack, d());
    assert_eq!(v, Verdict::ToPort(A));
    let want = tcp_seg(
        mac_b(),
        mac_a(),
        sa(VIP, 80),
        sa(IP_A, 40000),
        SYN | ACK,
        5000,
        1001,
        b"",
    );
    assert_eq!(pkt.frame(), &want[..]);

    // The same reply routed (to the router MAC): MACs rewritten, TTL decremented.
    let routed = tcp_seg(
        mac_b(),
        router(),
        sa(IP_B, 8080),
        sa(IP_A, 40000),
        ACK,
        5001,
        1001,
        b"hi",
    );
    let (v, pkt) = n.port(B, &routed, d());
    assert_eq!(v, Verdict::ToPort(A));
    let want = tcp_seg_ttl(
        router(),
        mac_a(),
        sa(VIP, 80),
        sa(IP_A, 40000),
        ACK,
        5001,
        1001,
        b"hi",
        63,
    );
    assert_eq!(pkt.frame(), &want[..]);
    assert_eq!(get(&n.a.tx_packets), 2);
    assert_eq!(get(&n.b.tx_packets), 1);
}

#[test]
fn remote_endpoint_round_trip_through_the_tunnel() {
    let n1 = svc_node(16, web(&[sa(IP_R, 8080)]), vec![]);
    let n2 = node2();
    let data = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40001),
        sa(VIP, 80),
        ACK | PSH,
        7,
        9,
        b"GET /",
    );
    let (v, pkt) = n1.port(A, &syn(40001), d());
    assert!(matches!(v, Verdict::ToTunnel { peer: PEER, .. }), "{v:?}");
    assert_checksums(inner(&pkt));
    assert_eq!(addrs(inner(&pkt)).1, sa(IP_R, 8080));
    // Node 2 delivers it to R unchanged apart from routing.
    let (v, pkt) = n2.tunnel(sa(UNDERLAY1, 4789), pkt.frame());
    assert_eq!(v, Verdict::ToPort(R));
    assert_eq!(addrs(pkt.frame()), (sa(IP_A, 40001), sa(IP_R, 8080), SYN));

    // R's SYN-ACK goes back through node 2 and is reverse-NATed on node 1.
    let r_mac = Mac::from_ipv4(IP_R);
    let n2_router = Mac::from_ipv4(std::net::Ipv4Addr::new(198, 18, 2, 1));
    let synack = tcp_seg(
        r_mac,
        n2_router,
        sa(IP_R, 8080),
        sa(IP_A, 40001),
        SYN | ACK,
        1,
        1001,
        b"",
    );
    let (v, pkt) = n2.port(R, &synack, d());
    assert!(matches!(v, Verdict::ToTunnel { .. }), "{v:?}");
    let (v, pkt) = n1.tunnel(peer_src(), pkt.frame());
    assert_eq!(v, Verdict::ToPort(A));
    assert_checksums(pkt.frame());
    assert_eq!(
        addrs(pkt.frame()),
        (sa(VIP, 80), sa(IP_A, 40001), SYN | ACK)
    );
    assert_eq!(&pkt.frame()[..12], &[mac_a().0, router().0].concat()[..]);

    // Established data keeps going to R.
    let (v, pkt) = n1.port(A, &data, d());
    assert!(matches!(v, Verdict::ToTunnel { .. }));
    assert_eq!(addrs(inner(&pkt)).1, sa(IP_R, 8080));
    assert_eq!(n1.dp.conntrack_len(), 1);
}

#[test]
fn new_connections_spread_over_all_endpoints() {
    let eps = [sa(IP_B, 8080), sa(IP_R, 8080), sa(IP_R2, 8080)];
    let n = svc_node(1000, web(&eps), vec![]);
    let mut hits: HashMap<SocketAddrV4, usize> = HashMap::new();
    for i in 0..60 {
        let (v, pkt) = n.port(A, &syn(30000 + i), d());
        *hits.entry(dst_of(&v, &pkt)).or_default() += 1;
    }
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.values().all(|&c| c >= 5), "{hits:?}");
    assert_eq!(n.dp.conntrack_len(), 60);
    // A retransmitted SYN stays with its connection.
    let (v, pkt) = n.port(A, &syn(30007), d());
    let first = dst_of(&v, &pkt);
    for _ in 0..5 {
        let (v, pkt) = n.port(A, &syn(30007), d());
        assert_eq!(dst_of(&v, &pkt), first);
    }
}

#[test]
fn client_ip_affinity_pins_refreshes_and_expires() {
    let eps = [sa(IP_B, 8080), sa(IP_R, 8080), sa(IP_R2, 8080)];
    let services = vec![svc(VIP, 80, L4Proto::Tcp, &eps, Some(10_000))];
    let n = svc_node(1000, services, vec![]);
    let at = |sport, now| {
        let (v, pkt) = n.port_at(A, &syn(sport), d(), now);
        dst_of(&v, &pkt)
    };
    let pinned = at(20000, 0);
    for i in 1..20 {
        assert_eq!(
            at(20000 + i, u64::from(i) * 900),
            pinned,
            "new connections refresh the pin"
        );
    }
    // Idle past the timeout (last refresh at 17.1 s): the pin expires.
    n.dp.expire(27_200);
    let others: std::collections::HashSet<_> =
        (0..30).map(|i| at(21000 + i, 28_000 + i as u64)).collect();
    assert!(others.len() == 1, "a new pin again: {others:?}");
    // A pin to an endpoint that left the service is not used.
    let now_pinned = *others.iter().next().unwrap();
    let rest: Vec<_> = eps.iter().copied().filter(|e| *e != now_pinned).collect();
    n.set_services(
        vec![svc(VIP, 80, L4Proto::Tcp, &rest, Some(10_000))],
        vec![],
    );
    let next = at(22000, 29_000);
    assert_ne!(next, now_pinned);
    assert!(rest.contains(&next));
}

#[test]
fn no_endpoints_tcp_is_answered_with_rst() {
    let n = svc_node(16, web(&[]), vec![]);
    let (v, pkt) = n.port(A, &syn(40000), d());
    assert_eq!(v, Verdict::ToPort(A));
    // RFC 793: no ACK in the SYN, so seq 0, ack = SEG.SEQ + 1, RST|ACK, from VIP:80.
    let b = PacketBuilder::ethernet2(router().0, mac_a().0)
        .ipv4(VIP.octets(), IP_A.octets(), 64)
        .tcp(80, 40000, 0, 0)
        .rst()
        .ack(1001);
    let mut want = Vec::new();
    b.write(&mut want, &[]).unwrap();
    want[18..20].copy_from_slice(&[0, 0]); // id 0, no DF
    want[20..22].copy_from_slice(&[0, 0]);
    let c = ip_after_hops(&want[14..34], 0);
    want[14..34].copy_from_slice(&c);
    assert_eq!(pkt.frame(), &want[..]);
    assert_checksums(pkt.frame());
    assert_eq!(pkt.vnet, VnetHdr::default());
    assert_eq!(n.drops(DropReason::ServiceNoEndpoints), 1);
    assert_eq!(get(&n.a.rx_dropped), 1);
    assert_eq!(n.dp.conntrack_len(), 0);

    // A segment with ACK: seq = SEG.ACK, RST alone. FIN counts one.
    let seg = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40000),
        sa(VIP, 80),
        ACK | FIN,
        50,
        777,
        b"abc",
    );
    let (v, pkt) = n.port(A, &seg, d());
    assert_eq!(v, Verdict::ToPort(A));
    let f = pkt.frame();
    assert_eq!(addrs(f), (sa(VIP, 80), sa(IP_A, 40000), RST));
    assert_eq!(&f[38..42], &777u32.to_be_bytes());
    assert_eq!(&f[42..46], &[0; 4]);
    let seg = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40000),
        sa(VIP, 80),
        FIN,
        50,
        0,
        b"abc",
    );
    let (_, pkt) = n.port(A, &seg, d());
    assert_eq!(&pkt.frame()[42..46], &54u32.to_be_bytes(), "3 bytes + FIN");
    // Never a RST to a RST.
    let rst = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40000),
        sa(VIP, 80),
        RST,
        50,
        0,
        b"",
    );
    let (v, _) = n.port(A, &rst, d());
    assert_eq!(v, Verdict::Drop(DropReason::ServiceNoEndpoints));
    assert_eq!(n.drops(DropReason::ServiceNoEndpoints), 4);
}

#[test]
fn no_endpoints_udp_is_answered_with_port_unreachable() {
    let n = svc_node(16, vec![svc(VIP, 53, L4Proto::Udp, &[], None)], vec![]);
    let q = udp_dgram(
        mac_a(),
        router(),
        sa(IP_A, 3333),
        sa(VIP, 53),
        b"0123456789",
        64,
    );
    let (v, pkt) = n.port(A, &q, d());
    assert_eq!(v, Verdict::ToPort(A));
    let f = pkt.frame();
    assert_checksums(f);
    let ip = Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
    assert_eq!(
        (ip.source_addr(), ip.destination_addr(), ip.protocol().0),
        (VIP, IP_A, 1)
    );
    assert_eq!(
        &f[34..36],
        &[3, 3],
        "destination unreachable, port unreachable"
    );
    assert_eq!(&f[38..42], &[0; 4]);
    assert_eq!(
        &f[42..],
        &q[14..14 + 28],
        "the original IP header and 8 bytes"
    );
    assert_eq!(n.drops(DropReason::ServiceNoEndpoints), 1);
}

#[test]
fn hairpin_is_masqueraded_to_the_gateway() {
    let n = svc_node(16, web(&[sa(IP_A, 8080)]), vec![]);
    let mut snat_ports = Vec::new();
    for sport in [40000, 40001] {
        let (v, pkt) = n.port(A, &syn(sport), d());
        assert_eq!(v, Verdict::ToPort(A));
        assert_checksums(pkt.frame());
        let (src, dst, _) = addrs(pkt.frame());
        assert_eq!(*src.ip(), GW);
        assert_eq!(dst, sa(IP_A, 8080));
        assert_eq!(&pkt.frame()[..12], &[mac_a().0, router().0].concat()[..]);
        snat_ports.push(src.port());

        // A (as the endpoint) answers the gateway; A (as the client) gets it from the VIP.
        let synack = tcp_seg(
            mac_a(),
            router(),
            sa(IP_A, 8080),
            src,
            SYN | ACK,
            9,
            1001,
            b"",
        );
        let (v, pkt) = n.port(A, &synack, d());
        assert_eq!(v, Verdict::ToPort(A));
        assert_checksums(pkt.frame());
        assert_eq!(
            addrs(pkt.frame()),
            (sa(VIP, 80), sa(IP_A, sport), SYN | ACK)
        );
    }
    assert_ne!(snat_ports[0], snat_ports[1]);
    assert_eq!(n.drops(DropReason::Hairpin), 0);
}

#[test]
fn icmp_unknown_ports_and_unused_service_addresses() {
    let n = svc_node(16, web(&[sa(IP_B, 8080)]), vec![]);
    let mut ping = common::golden::ECHO_REQ_GW.to_vec();
    ping[30..34].copy_from_slice(&VIP.octets());
    let (v, _) = n.port(A, &ping, d());
    assert_eq!(v, Verdict::Drop(DropReason::ServiceUnknownPort));
    let other = tcp_seg(mac_a(), router(), sa(IP_A, 4), sa(VIP, 443), SYN, 0, 0, b"");
    assert_eq!(
        n.port(A, &other, d()).0,
        Verdict::Drop(DropReason::ServiceUnknownPort)
    );
    let udp = udp_dgram(mac_a(), router(), sa(IP_A, 4), sa(VIP, 80), b"", 64);
    assert_eq!(
        n.port(A, &udp, d()).0,
        Verdict::Drop(DropReason::ServiceUnknownPort)
    );
    let unused = tcp_seg(mac_a(), router(), sa(IP_A, 4), sa(VIP2, 80), SYN, 0, 0, b"");
    assert_eq!(
        n.port(A, &unused, d()).0,
        Verdict::Drop(DropReason::NoRoute)
    );
    assert_eq!(n.dp.conntrack_len(), 0);
}

#[test]
fn too_big_for_the_tunnel_quotes_the_vip() {
    let n = svc_node(16, web(&[sa(IP_R, 8080)]), vec![]);
    let (_, _) = n.port(A, &syn(40000), d());
    let big = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40000),
        sa(VIP, 80),
        ACK,
        1,
        1,
        &[0; 1500],
    );
    let (v, pkt) = n.port(A, &big, d());
    assert_eq!(v, Verdict::ToPort(A));
    let f = pkt.frame();
    assert_eq!(&f[34..36], &[3, 4], "fragmentation needed");
    assert_eq!(
        &f[42 + 16..42 + 20],
        &VIP.octets(),
        "the quoted header is the client's"
    );
    assert_eq!(n.drops(DropReason::TooBig), 1);
}

#[test]
fn ttl_one_to_a_vip_is_time_exceeded() {
    let n = svc_node(16, web(&[sa(IP_B, 8080)]), vec![]);
    let f = tcp_seg_ttl(
        mac_a(),
        router(),
        sa(IP_A, 1),
        sa(VIP, 80),
        SYN,
        0,
        0,
        b"",
        1,
    );
    let (v, pkt) = n.port(A, &f, d());
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(pkt.frame()[34], 11);
    assert_eq!(n.drops(DropReason::TtlExceeded), 1);
}

// ---- Service NAT source ports: a VIP connection and a direct one never share a tuple ----

/// A's segment from `from` to `to`, switched at L2 (B is on A's subnet) when `to` is B,
/// routed when it is a VIP.
fn seg_a(from: u16, to: SocketAddrV4, flags: u8, payload: &[u8]) -> Vec<u8> {
    let dst_mac = if *to.ip() == IP_B { mac_b() } else { router() };
    tcp_seg(
        mac_a(),
        dst_mac,
        sa(IP_A, from),
        to,
        flags,
        1000,
        0,
        payload,
    )
}

/// B's segment from 8080 to A's port `to`, switched at L2.
fn seg_b(to: u16, flags: u8) -> Vec<u8> {
    tcp_seg(
        mac_b(),
        mac_a(),
        sa(IP_B, 8080),
        sa(IP_A, to),
        flags,
        5000,
        1001,
        b"",
    )
}

/// A direct connection A:40000 -> B:8080 (B an endpoint of VIP:80), then a VIP connection
/// from the same port to the same endpoint: the VIP one gets another source port (B sees
/// two distinct 4-tuples), and the replies of each go back translated as their own.
#[test]
fn a_vip_connection_does_not_take_a_direct_connections_tuple() {
    let n = svc_node(64, web(&[sa(IP_B, 8080)]), vec![]);
    let direct = seg_a(40000, sa(IP_B, 8080), SYN, b"");
    let (v, pkt) = n.port(A, &direct, d());
    assert_eq!(v, Verdict::ToPort(B));
    assert_eq!(
        pkt.frame(),
        &direct[..],
        "a direct connection's frame is untouched"
    );
    let (v, pkt) = n.port(A, &seg_a(40000, sa(VIP, 80), SYN, b""), d());
    assert_eq!(v, Verdict::ToPort(B));
    let (src, dst, _) = addrs(pkt.frame());
    assert_eq!(dst, sa(IP_B, 8080));
    assert_eq!(*src.ip(), IP_A, "the client's address is kept");
    assert_ne!(
        src.port(),
        40000,
        "the tuple at the endpoint is taken by the direct one"
    );
    let remapped = src.port();
    // B answers the VIP connection on the remapped port: A sees the VIP and its own port.
    let (v, pkt) = n.port(B, &seg_b(remapped, SYN | ACK), d());
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(
        addrs(pkt.frame()),
        (sa(VIP, 80), sa(IP_A, 40000), SYN | ACK)
    );
    // B answers the direct connection: A sees B, not the VIP.
    let (v, pkt) = n.port(B, &seg_b(40000, SYN | ACK), d());
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(pkt.frame(), &seg_b(40000, SYN | ACK)[..]);
    // Later segments of each keep their translation.
    let (_, pkt) = n.port(A, &seg_a(40000, sa(VIP, 80), ACK, b"v"), d());
    assert_eq!(addrs(pkt.frame()).0, sa(IP_A, remapped));
    let ack = seg_a(40000, sa(IP_B, 8080), ACK, b"d");
    let (_, pkt) = n.port(A, &ack, d());
    assert_eq!(pkt.frame(), &ack[..]);
    assert_eq!(n.dp.conntrack_len(), 2);
}

/// The other order: a VIP connection from A:40001, then a direct connection from the same
/// port to the same endpoint. The VIP one holds the tuple at the endpoint, so the direct
/// one's source port is rewritten, both ways, for its whole life; the VIP connection's
/// replies are not mistaken for it.
#[test]
fn a_direct_connection_does_not_take_a_vip_connections_tuple() {
    let n = svc_node(64, web(&[sa(IP_B, 8080)]), vec![]);
    let (_, pkt) = n.port(A, &seg_a(40001, sa(VIP, 80), SYN, b""), d());
    assert_eq!(
        addrs(pkt.frame()).0,
        sa(IP_A, 40001),
        "the client port is kept"
    );
    let (v, pkt) = n.port(A, &seg_a(40001, sa(IP_B, 8080), SYN, b""), d());
    assert_eq!(v, Verdict::ToPort(B));
    let (src, dst, _) = addrs(pkt.frame());
    assert_eq!((*src.ip(), dst), (IP_A, sa(IP_B, 8080)));
    assert_ne!(src.port(), 40001);
    let remapped = src.port();
    // A checksum-valid frame after the rewrite.
    let want = seg_a(remapped, sa(IP_B, 8080), SYN, b"");
    assert_eq!(pkt.frame(), &want[..]);
    // B's replies: to the remapped port -> the direct connection, back on A's port.
    let (v, pkt) = n.port(B, &seg_b(remapped, SYN | ACK), d());
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(pkt.frame(), &seg_b(40001, SYN | ACK)[..]);
    // ... to A's own port -> the VIP connection, from the VIP.
    let (_, pkt) = n.port(B, &seg_b(40001, SYN | ACK), d());
    assert_eq!(addrs(pkt.frame()).0, sa(VIP, 80));
    // A's next direct segment is rewritten again.
    let (_, pkt) = n.port(A, &seg_a(40001, sa(IP_B, 8080), ACK, b"x"), d());
    assert_eq!(pkt.frame(), &seg_a(remapped, sa(IP_B, 8080), ACK, b"x")[..]);
}

/// Two VIPs with the same endpoint, one client port: the second connection gets another
/// source port, and each reply comes back from its own VIP.
#[test]
fn two_vips_to_one_endpoint_from_one_client_port() {
    let services = vec![
        svc(VIP, 80, L4Proto::Tcp, &[sa(IP_B, 8080)], None),
        svc(VIP2, 80, L4Proto::Tcp, &[sa(IP_B, 8080)], None),
    ];
    let n = svc_node(64, services, vec![]);
    let (_, p1) = n.port(A, &seg_a(40002, sa(VIP, 80), SYN, b""), d());
    let (_, p2) = n.port(A, &seg_a(40002, sa(VIP2, 80), SYN, b""), d());
    let (s1, s2) = (addrs(p1.frame()).0, addrs(p2.frame()).0);
    assert_eq!(s1, sa(IP_A, 40002));
    assert_eq!(*s2.ip(), IP_A);
    assert_ne!(s2.port(), 40002);
    let (_, r1) = n.port(B, &seg_b(40002, SYN | ACK), d());
    let (_, r2) = n.port(B, &seg_b(s2.port(), SYN | ACK), d());
    assert_eq!(addrs(r1.frame()).0, sa(VIP, 80));
    assert_eq!(addrs(r2.frame()).0, sa(VIP2, 80));
    assert_eq!(addrs(r2.frame()).1, sa(IP_A, 40002));
}

/// The remapped entries survive a save and restore (`ct_persist`): after the import, both
/// connections translate as before.
#[test]
fn remapped_source_ports_survive_a_restart() {
    let n = svc_node(64, web(&[sa(IP_B, 8080)]), vec![]);
    n.port(A, &seg_a(40003, sa(VIP, 80), SYN, b""), d());
    let (_, pkt) = n.port(A, &seg_a(40003, sa(IP_B, 8080), SYN, b""), d());
    let remapped = addrs(pkt.frame()).0.port();
    assert_ne!(remapped, 40003);
    let snap = n.dp.export_conntrack(1);
    assert_eq!(snap.conns.len(), 2);
    let json = serde_json::to_string(&snap).unwrap();
    let back: CtSnapshot = serde_json::from_str(&json).unwrap();

    let m = svc_node(64, web(&[sa(IP_B, 8080)]), vec![]);
    let r = m.dp.import_conntrack(&back, 0, 1);
    assert_eq!(r.conns, 2, "{r:?}");
    let (_, pkt) = m.port(A, &seg_a(40003, sa(IP_B, 8080), ACK, b"x"), d());
    assert_eq!(pkt.frame(), &seg_a(remapped, sa(IP_B, 8080), ACK, b"x")[..]);
    let (_, pkt) = m.port(B, &seg_b(remapped, ACK), d());
    assert_eq!(pkt.frame(), &seg_b(40003, ACK)[..]);
    let (_, pkt) = m.port(B, &seg_b(40003, ACK), d());
    assert_eq!(addrs(pkt.frame()).0, sa(VIP, 80));
    // Without the endpoint, the direct record is stale.
    let o = svc_node(64, web(&[sa(IP_R, 8080)]), vec![]);
    let r = o.dp.import_conntrack(&back, 0, 1);
    assert_eq!((r.conns, r.stale), (0, 2), "{r:?}");
}
