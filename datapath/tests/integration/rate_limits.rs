//! Per-port rate limits of ARP and of broadcast/multicast frames, through `from_port`:
//! requests within the limit are answered, a storm is cut to the rate and counted, one
//! port's storm leaves another port's budget alone, and the budget refills with time.

use crate::common;

use common::golden::*;
use common::*;
use std::net::Ipv4Addr;
use vswitch_datapath::*;

fn limited(per_sec: u32, burst: u32) -> Node {
    let mut cfg = config();
    cfg.arp_limit = RateLimit { per_sec, burst };
    cfg.broadcast_limit = RateLimit { per_sec, burst };
    node_with(cfg)
}

fn arp_req(port: PortId) -> Vec<u8> {
    let (mac, ip) = if port == A {
        (mac_a(), IP_A)
    } else {
        (mac_b(), IP_B)
    };
    arp_frame(mac, Mac::BROADCAST, 1, mac, ip, Mac([0; 6]), GW)
}

fn bcast(port: PortId) -> Vec<u8> {
    let (mac, ip) = if port == A {
        (mac_a(), IP_A)
    } else {
        (mac_b(), IP_B)
    };
    let to = Ipv4Addr::new(198, 18, 1, 255);
    udp_frame(mac, Mac::BROADCAST, ip, to, 64, true, b"storm")
}

/// Sends `frame` `n` times from `port`, `per_ms` per millisecond from `start_ms`; returns
/// how many were not rate limited.
fn storm(n: &Node, port: PortId, frame: &[u8], start_ms: u64, count: u64, per_ms: u64) -> u64 {
    (0..count)
        .filter(|i| {
            let (v, _) = n.port_at(port, frame, VnetHdr::default(), start_ms + i / per_ms);
            !matches!(
                v,
                Verdict::Drop(DropReason::ArpRateLimited | DropReason::BroadcastRateLimited)
            )
        })
        .count() as u64
}

#[test]
fn defaults_answer_a_normal_pods_arp() {
    let n = node();
    assert_eq!(config().arp_limit, RateLimit::ARP_DEFAULT);
    // A pod resolving the gateway and a few neighbours a few times a second for a minute.
    for t in 0..600u64 {
        let (v, pkt) = n.port_at(A, &ARP_REQ_GW, VnetHdr::default(), t * 100);
        assert_eq!(v, Verdict::ToPort(A), "request {t}");
        assert_eq!(pkt.frame(), &ARP_REP_GW[..]);
    }
    assert_eq!(n.drops(DropReason::ArpRateLimited), 0);
}

#[test]
fn an_arp_storm_is_cut_to_the_rate_and_counted() {
    let n = limited(100, 200);
    // 10 000 requests a second for 5 s.
    let passed = storm(&n, A, &arp_req(A), 0, 50_000, 10);
    assert!((690..=701).contains(&passed), "passed {passed}");
    assert_eq!(n.drops(DropReason::ArpRateLimited), 50_000 - passed);
    assert_eq!(get(&n.a.rx_dropped), 50_000 - passed);
    // What passed was answered.
    assert_eq!(get(&n.a.tx_packets), passed);
}

#[test]
fn a_broadcast_storm_is_cut_to_the_rate_and_counted() {
    let n = limited(100, 200);
    let passed = storm(&n, A, &bcast(A), 0, 50_000, 10);
    assert!((690..=701).contains(&passed), "passed {passed}");
    assert_eq!(n.drops(DropReason::BroadcastRateLimited), 50_000 - passed);
    // Within the limit, group-addressed IPv4 is still not flooded: counted as multicast.
    assert_eq!(n.drops(DropReason::Multicast), passed);
    // ARP has its own budget: the broadcast storm did not use it up.
    let (v, _) = n.port_at(A, &arp_req(A), VnetHdr::default(), 4999);
    assert_eq!(v, Verdict::ToPort(A));
}

#[test]
fn budgets_are_per_port() {
    let n = limited(100, 200);
    let a_arp = storm(&n, A, &arp_req(A), 0, 20_000, 20);
    let a_bcast = storm(&n, A, &bcast(A), 0, 20_000, 20);
    assert!(
        a_arp < 300 && a_bcast < 300,
        "A: {a_arp} ARP, {a_bcast} broadcasts"
    );
    // B, at the same moment, still has its whole burst of each.
    assert_eq!(storm(&n, B, &arp_req(B), 999, 200, 200), 200);
    assert_eq!(storm(&n, B, &bcast(B), 999, 200, 200), 200);
    assert_eq!(
        get(&n.b.rx_dropped),
        200,
        "B's broadcasts: multicast drops only"
    );
    assert_eq!(n.drops(DropReason::Multicast), a_bcast + 200);
    assert_eq!(
        n.drops(DropReason::ArpRateLimited) + n.drops(DropReason::BroadcastRateLimited),
        40_000 - a_arp - a_bcast,
        "only A was limited"
    );
}

#[test]
fn the_budget_refills_with_time() {
    let n = limited(10, 5);
    assert_eq!(storm(&n, A, &arp_req(A), 0, 100, 100), 5, "the burst");
    assert_eq!(storm(&n, A, &arp_req(A), 0, 100, 100), 0, "then nothing");
    assert_eq!(
        storm(&n, A, &arp_req(A), 100, 10, 10),
        1,
        "one more after 100 ms"
    );
    assert_eq!(
        storm(&n, A, &arp_req(A), 60_000, 100, 100),
        5,
        "full again, no fuller"
    );
    // A table swap (a port added elsewhere) keeps the port's state: its budget is in the
    // port's counters, which the control plane carries from snapshot to snapshot.
    n.dp.install(Tables::new(
        vec![PortEntry {
            id: A,
            mac: mac_a(),
            ip: IP_A,
            counters: n.a.clone(),
        }],
        vec![],
    ));
    assert_eq!(storm(&n, A, &arp_req(A), 60_000, 10, 10), 0, "still spent");
}
