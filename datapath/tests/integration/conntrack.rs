//! Conntrack through the public API: state-aware expiry driven by `now_ms`, lazy expiry on
//! lookup, `flush_endpoint`, and the `ct_max` bound with eviction of unestablished entries.

use crate::common;

use common::svc::*;
use common::*;
use std::net::SocketAddrV4;
use vswitch_datapath::*;

fn d() -> VnetHdr {
    VnetHdr::default()
}

const S: u64 = 1000;

fn client(sport: u16) -> SocketAddrV4 {
    sa(IP_A, sport)
}

/// TCP from A to VIP:80 at `now`; returns where it went.
fn a_tcp(n: &Node, sport: u16, flags: u8, now: u64) -> Verdict {
    let f = tcp_seg(
        mac_a(),
        router(),
        client(sport),
        sa(VIP, 80),
        flags,
        1,
        1,
        b"",
    );
    n.port_at(A, &f, d(), now).0
}

/// TCP from endpoint B:8080 back to A at `now` (switched at L2); returns the source A sees.
fn b_tcp(n: &Node, sport: u16, flags: u8, now: u64) -> SocketAddrV4 {
    let f = tcp_seg(
        mac_b(),
        mac_a(),
        sa(IP_B, 8080),
        client(sport),
        flags,
        1,
        1,
        b"",
    );
    let (v, pkt) = n.port_at(B, &f, d(), now);
    assert_eq!(v, Verdict::ToPort(A));
    addrs(pkt.frame()).0
}

/// A full handshake on `sport` at `now`.
fn establish(n: &Node, sport: u16, now: u64) {
    assert_eq!(a_tcp(n, sport, SYN, now), Verdict::ToPort(B));
    assert_eq!(b_tcp(n, sport, SYN | ACK, now), sa(VIP, 80));
    assert_eq!(a_tcp(n, sport, ACK, now), Verdict::ToPort(B));
}

fn web_b(ct_max: usize) -> Node {
    svc_node(
        ct_max,
        vec![
            svc(VIP, 80, L4Proto::Tcp, &[sa(IP_B, 8080)], None),
            svc(
                VIP,
                53,
                L4Proto::Udp,
                &[sa(IP_B, 5353), sa(IP_R, 5353)],
                None,
            ),
        ],
        vec![],
    )
}

#[test]
fn tcp_timeouts_follow_the_state() {
    let n = web_b(16);
    a_tcp(&n, 1, SYN, 0); // SYN sent: 30 s
    establish(&n, 2, 0); // established: 24 h
    establish(&n, 3, 0);
    a_tcp(&n, 3, FIN | ACK, 0); // half closed: 60 s
    establish(&n, 4, 0);
    a_tcp(&n, 4, FIN | ACK, 0);
    b_tcp(&n, 4, FIN | ACK, 0); // both FINs: 10 s
    establish(&n, 5, 0);
    b_tcp(&n, 5, RST, 0); // reset: 10 s
    assert_eq!(n.dp.conntrack_len(), 5);
    n.dp.expire(9 * S);
    assert_eq!(n.dp.conntrack_len(), 5);
    n.dp.expire(10 * S);
    assert_eq!(n.dp.conntrack_len(), 3, "closed ones go after 10 s");
    n.dp.expire(30 * S);
    assert_eq!(n.dp.conntrack_len(), 2, "an unanswered SYN after 30 s");
    n.dp.expire(60 * S);
    assert_eq!(n.dp.conntrack_len(), 1, "half closed after 60 s");
    n.dp.expire(23 * 3600 * S);
    assert_eq!(n.dp.conntrack_len(), 1);
    // Traffic refreshes: a packet at 23 h keeps it until 47 h.
    assert_eq!(a_tcp(&n, 2, ACK, 23 * 3600 * S), Verdict::ToPort(B));
    n.dp.expire(46 * 3600 * S);
    assert_eq!(n.dp.conntrack_len(), 1);
    n.dp.expire(47 * 3600 * S);
    assert_eq!(n.dp.conntrack_len(), 0);
}

#[test]
fn udp_is_30_s_until_answered_then_180_s() {
    let n = svc_node(
        16,
        vec![svc(VIP, 53, L4Proto::Udp, &[sa(IP_B, 5353)], None)],
        vec![],
    );
    for sport in [1, 2] {
        let f = udp_dgram(mac_a(), router(), client(sport), sa(VIP, 53), b"q", 64);
        assert_eq!(n.port_at(A, &f, d(), 0).0, Verdict::ToPort(B));
    }
    let f = udp_dgram(mac_b(), mac_a(), sa(IP_B, 5353), client(1), b"a", 64);
    let (_, pkt) = n.port_at(B, &f, d(), 5 * S);
    assert_eq!(addrs(pkt.frame()).0, sa(VIP, 53));
    n.dp.expire(29 * S);
    assert_eq!(n.dp.conntrack_len(), 2);
    n.dp.expire(30 * S);
    assert_eq!(n.dp.conntrack_len(), 1, "unanswered UDP goes after 30 s");
    n.dp.expire(184 * S);
    assert_eq!(n.dp.conntrack_len(), 1);
    n.dp.expire(185 * S);
    assert_eq!(
        n.dp.conntrack_len(),
        0,
        "answered: 180 s after the last packet"
    );
}

#[test]
fn expired_entries_are_ignored_on_lookup_without_expire() {
    let n = web_b(16);
    establish(&n, 7, 0);
    a_tcp(&n, 7, FIN | ACK, 0);
    b_tcp(&n, 7, FIN | ACK, 0);
    // 11 s later, no expire() call: the reply no longer matches (no reverse NAT)...
    let f = tcp_seg(mac_b(), mac_a(), sa(IP_B, 8080), client(7), ACK, 1, 1, b"");
    let (v, pkt) = n.port_at(B, &f, d(), 11 * S);
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(addrs(pkt.frame()).0, sa(IP_B, 8080));
    assert_eq!(n.dp.conntrack_len(), 0, "removed when found expired");
    // ...and a new SYN on the same tuple is a new connection.
    assert_eq!(a_tcp(&n, 7, SYN, 12 * S), Verdict::ToPort(B));
    assert_eq!(n.dp.conntrack_len(), 1);
}

#[test]
fn a_syn_reopens_a_closed_tuple() {
    let n = web_b(16);
    establish(&n, 8, 0);
    b_tcp(&n, 8, RST, 0);
    assert_eq!(a_tcp(&n, 8, SYN, S), Verdict::ToPort(B));
    assert_eq!(n.dp.conntrack_len(), 1);
    n.dp.expire(20 * S);
    assert_eq!(
        n.dp.conntrack_len(),
        1,
        "a fresh SYN_SENT entry, not the closed one"
    );
}

#[test]
fn flush_endpoint_removes_its_connections_and_pins() {
    let eps = [sa(IP_B, 8080), sa(IP_R, 8080)];
    let n = svc_node(
        64,
        vec![
            svc(VIP, 80, L4Proto::Tcp, &eps, None),
            svc(VIP, 53, L4Proto::Udp, &eps, Some(60_000)),
        ],
        vec![],
    );
    let mut per_ep = std::collections::HashMap::<_, (usize, usize)>::new();
    for sport in 1..=20u16 {
        let f = tcp_seg(
            mac_a(),
            router(),
            client(sport),
            sa(VIP, 80),
            SYN,
            1,
            0,
            b"",
        );
        let (v, pkt) = n.port(A, &f, d());
        per_ep.entry(*dst_of(&v, &pkt).ip()).or_default().0 += 1;
    }
    let f = udp_dgram(mac_a(), router(), client(999), sa(VIP, 53), b"q", 64);
    let (v, pkt) = n.port(A, &f, d());
    let pinned = *dst_of(&v, &pkt).ip();
    per_ep.entry(pinned).or_default().1 += 1;
    assert_eq!(n.dp.conntrack_len(), 21);

    assert_eq!(n.dp.flush_endpoint(pinned, Some(L4Proto::Udp)), 1);
    assert_eq!(n.dp.conntrack_len(), 20, "TCP untouched");
    // The pin went too: with the endpoint gone from the service, the next datagram of the
    // same tuple goes to the other one.
    let other = if pinned == IP_B { IP_R } else { IP_B };
    n.set_services(
        vec![
            svc(VIP, 80, L4Proto::Tcp, &eps, None),
            svc(VIP, 53, L4Proto::Udp, &[sa(other, 8080)], Some(60_000)),
        ],
        vec![],
    );
    let (v, pkt) = n.port(A, &f, d());
    assert_eq!(*dst_of(&v, &pkt).ip(), other);

    let tcp_b = per_ep.get(&IP_B).map_or(0, |c| c.0);
    let udp_b = usize::from(other == IP_B);
    assert_eq!(n.dp.flush_endpoint(IP_B, None), tcp_b + udp_b);
    assert_eq!(n.dp.conntrack_len(), 21 - tcp_b - udp_b);
}

#[test]
fn a_full_table_evicts_unestablished_entries_first() {
    let n = web_b(3);
    establish(&n, 1, 0);
    establish(&n, 2, 0);
    assert_eq!(a_tcp(&n, 3, SYN, 0), Verdict::ToPort(B));
    assert_eq!(n.dp.conntrack_len(), 3);
    // Full: the SYN_SENT entry of port 3 makes room.
    establish(&n, 4, S);
    assert_eq!(n.dp.conntrack_len(), 3);
    let f = tcp_seg(
        mac_b(),
        mac_a(),
        sa(IP_B, 8080),
        client(3),
        SYN | ACK,
        1,
        1,
        b"",
    );
    let (_, pkt) = n.port_at(B, &f, d(), S);
    assert_eq!(addrs(pkt.frame()).0, sa(IP_B, 8080), "port 3 was evicted");
    // Only established entries left: new connections are refused, old ones keep working.
    assert_eq!(
        a_tcp(&n, 5, SYN, S),
        Verdict::Drop(DropReason::ConntrackFull)
    );
    assert_eq!(n.drops(DropReason::ConntrackFull), 1);
    for sport in [1, 2, 4] {
        assert_eq!(a_tcp(&n, sport, ACK, 2 * S), Verdict::ToPort(B));
        assert_eq!(b_tcp(&n, sport, ACK, 2 * S), sa(VIP, 80));
    }
    // An expired one can be replaced even when established entries are all there is.
    n.dp.expire(0);
    assert_eq!(a_tcp(&n, 6, SYN, 25 * 3600 * S), Verdict::ToPort(B));
    assert_eq!(n.dp.conntrack_len(), 3);
}

#[test]
fn unanswered_udp_is_evictable() {
    let n = svc_node(
        2,
        vec![svc(VIP, 53, L4Proto::Udp, &[sa(IP_B, 5353)], None)],
        vec![],
    );
    let q = |sport| udp_dgram(mac_a(), router(), client(sport), sa(VIP, 53), b"q", 64);
    for sport in 1..=10 {
        // Later datagrams expire later: the oldest one is evicted each time.
        let now = u64::from(sport) * S;
        assert_eq!(n.port_at(A, &q(sport), d(), now).0, Verdict::ToPort(B));
        assert!(n.dp.conntrack_len() <= 2);
    }
    // Answer both live ones: now nothing can be evicted.
    for sport in 9..=10 {
        let f = udp_dgram(mac_b(), mac_a(), sa(IP_B, 5353), client(sport), b"a", 64);
        assert_eq!(
            addrs(n.port_at(B, &f, d(), 11 * S).1.frame()).0,
            sa(VIP, 53)
        );
    }
    let full = n.port_at(A, &q(11), d(), 11 * S).0;
    assert_eq!(full, Verdict::Drop(DropReason::ConntrackFull));
}
