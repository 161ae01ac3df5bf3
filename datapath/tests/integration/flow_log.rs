//! The flow log (`observe`) through the public API: one event per new connection (a service
//! connection with its VIP and endpoint, a direct TCP flow's SYN), per drop (rate-limited,
//! the rest counted) and per connection end; none per packet of an established flow.

use crate::common;

use common::svc::*;
use common::*;
use vswitch_datapath::*;

fn d() -> VnetHdr {
    VnetHdr::default()
}

/// Node 1 with the flow log on and VIP:80 -> B:8080.
fn logged() -> Node {
    let mut n = svc_node(16, vec![], vec![]);
    n.dp = Datapath::new(svc_config(16)).with_flow_log(FlowLog::new(1024));
    n.set_services(
        vec![svc(VIP, 80, L4Proto::Tcp, &[sa(IP_B, 8080)], None)],
        vec![],
    );
    n
}

fn events(n: &Node) -> Vec<FlowEvent> {
    let log = n.dp.flow_log().expect("the flow log is on");
    std::iter::from_fn(|| log.pop()).collect()
}

fn a_to_vip(n: &Node, flags: u8, now: u64) -> Verdict {
    let f = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40000),
        sa(VIP, 80),
        flags,
        1,
        1,
        b"",
    );
    n.port_at(A, &f, d(), now).0
}

fn b_to_a(n: &Node, flags: u8, now: u64) -> Verdict {
    let f = tcp_seg(
        mac_b(),
        mac_a(),
        sa(IP_B, 8080),
        sa(IP_A, 40000),
        flags,
        1,
        1,
        b"",
    );
    n.port_at(B, &f, d(), now).0
}

#[test]
fn a_service_connection_is_one_event_with_its_service_and_endpoint_then_its_end() {
    let n = logged();
    assert_eq!(a_to_vip(&n, SYN, 10), Verdict::ToPort(B));
    assert_eq!(b_to_a(&n, SYN | ACK, 11), Verdict::ToPort(A));
    for t in 12..20 {
        assert_eq!(a_to_vip(&n, ACK, t), Verdict::ToPort(B));
        b_to_a(&n, ACK, t);
    }
    let evs = events(&n);
    assert_eq!(
        evs.len(),
        1,
        "one event for the connection, none per packet: {evs:?}"
    );
    let e = evs[0];
    assert_eq!(e.kind, FlowKind::New);
    assert_eq!(e.now_ms, 10);
    assert_eq!(e.from, FlowPoint::Port(A));
    assert_eq!(e.proto, Some(6));
    assert_eq!((e.src, e.sport, e.dst, e.dport), (IP_A, 40000, VIP, 80));
    assert_eq!(e.tcp_flags, SYN);
    assert_eq!(e.service, Some(sa(VIP, 80)));
    assert_eq!(e.endpoint, Some(sa(IP_B, 8080)));
    // Closed by a RST, then removed by the expiry: its end, closed.
    a_to_vip(&n, RST | ACK, 30);
    n.dp.expire(1_000_000);
    let evs = events(&n);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].kind, FlowKind::End { closed: true });
    assert_eq!(evs[0].service, Some(sa(VIP, 80)));
    assert_eq!(evs[0].endpoint, Some(sa(IP_B, 8080)));
    assert_eq!(evs[0].now_ms, 1_000_000);
}

#[test]
fn an_idle_connection_ends_by_timeout() {
    let n = logged();
    a_to_vip(&n, SYN, 0);
    b_to_a(&n, SYN | ACK, 0);
    a_to_vip(&n, ACK, 0);
    events(&n);
    n.dp.expire(1000);
    assert!(events(&n).is_empty(), "still alive");
    n.dp.expire(u64::MAX / 2);
    let evs = events(&n);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, FlowKind::End { closed: false });
}

#[test]
fn a_direct_tcp_flow_is_logged_at_its_syn_only() {
    let n = logged();
    let seg = |flags| {
        tcp_seg(
            mac_a(),
            router(),
            sa(IP_A, 1234),
            sa(IP_B, 80),
            flags,
            1,
            1,
            b"x",
        )
    };
    assert_eq!(n.port_at(A, &seg(SYN), d(), 5).0, Verdict::ToPort(B));
    for flags in [ACK, PSH | ACK, FIN | ACK] {
        assert_eq!(n.port_at(A, &seg(flags), d(), 6).0, Verdict::ToPort(B));
    }
    // The answer's SYN-ACK is no new flow either.
    let back = tcp_seg(
        mac_b(),
        router(),
        sa(IP_B, 80),
        sa(IP_A, 1234),
        SYN | ACK,
        1,
        1,
        b"",
    );
    assert_eq!(n.port_at(B, &back, d(), 7).0, Verdict::ToPort(A));
    // Nor is UDP (no connection to report without a Service).
    let u = udp_frame(mac_a(), router(), IP_A, IP_B, 64, true, b"q");
    n.port_at(A, &u, d(), 8);
    let evs = events(&n);
    assert_eq!(evs.len(), 1, "{evs:?}");
    let e = evs[0];
    assert_eq!(e.kind, FlowKind::New);
    assert_eq!((e.from, e.to), (FlowPoint::Port(A), FlowPoint::Port(B)));
    assert_eq!((e.src, e.sport, e.dst, e.dport), (IP_A, 1234, IP_B, 80));
    assert_eq!(e.service, None);
}

#[test]
fn a_forged_source_is_a_drop_event_with_its_reason_and_addresses() {
    let n = logged();
    let forged = std::net::Ipv4Addr::new(10, 66, 6, 6);
    let f = tcp_seg(
        mac_a(),
        router(),
        sa(forged, 999),
        sa(IP_B, 80),
        SYN,
        1,
        1,
        b"",
    );
    assert_eq!(
        n.port_at(A, &f, d(), 42).0,
        Verdict::Drop(DropReason::SpoofedIp)
    );
    let evs = events(&n);
    assert_eq!(evs.len(), 1);
    let e = evs[0];
    assert_eq!(e.kind, FlowKind::Drop(DropReason::SpoofedIp));
    assert_eq!(e.from, FlowPoint::Port(A));
    assert_eq!((e.src, e.dst, e.dport), (forged, IP_B, 80));
    assert_eq!(e.suppressed, 0);
}

#[test]
fn a_drop_flood_logs_a_bounded_number_and_counts_the_rest() {
    let n = logged();
    let forged = std::net::Ipv4Addr::new(10, 66, 6, 6);
    let f = tcp_seg(
        mac_a(),
        router(),
        sa(forged, 999),
        sa(IP_B, 80),
        SYN,
        1,
        1,
        b"",
    );
    for _ in 0..10_000 {
        n.port_at(A, &f, d(), 0);
    }
    let log = n.dp.flow_log().unwrap();
    let logged = events(&n).len() as u64;
    assert_eq!(logged, u64::from(flow_log::DROP_EVENTS_BURST));
    assert_eq!(log.suppressed_total(), 10_000 - logged);
    assert_eq!(
        n.drops(DropReason::SpoofedIp),
        10_000,
        "every drop still counted"
    );
    // A second later: logged again, carrying the count of those not logged.
    n.port_at(A, &f, d(), 1000);
    assert_eq!(events(&n)[0].suppressed, 10_000 - logged);
}

#[test]
fn a_tunnel_datagram_from_a_stranger_is_a_drop_event() {
    let n = logged();
    let stranger = sa(std::net::Ipv4Addr::new(192, 0, 2, 99), 4789);
    let (v, _) = n.tunnel_at(stranger, &[0u8; 60], 3);
    assert_eq!(v, Verdict::Drop(DropReason::TunnelUnknownPeer));
    let evs = events(&n);
    assert_eq!(evs[0].kind, FlowKind::Drop(DropReason::TunnelUnknownPeer));
    assert_eq!(evs[0].from, FlowPoint::Tunnel(stranger));
}

#[test]
fn without_the_log_nothing_is_kept() {
    let n = svc_node(16, vec![], vec![]);
    assert!(n.dp.flow_log().is_none());
}
