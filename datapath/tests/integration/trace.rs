//! `vswitchctl trace`: a synthetic packet through the same stages as a real frame, each
//! stage's decision recorded, and nothing live touched (counters, rate-limit tokens,
//! conntrack, affinities). Also the conntrack listing and flush behind `vswitchctl
//! conntrack`.

use crate::common;

use common::svc::*;
use common::*;
use std::net::Ipv4Addr;
use vswitch_datapath::*;

fn probe(dst: Ipv4Addr, proto: ProbeProto, dport: u16) -> Probe {
    Probe {
        src_mac: mac_a(),
        dst_mac: router(),
        src: IP_A,
        dst,
        proto,
        sport: 45000,
        dport,
        ttl: 64,
    }
}

fn trace(n: &Node, p: &Probe) -> Trace {
    let t = n.dp.tables();
    n.dp.trace_from_port(&t, A, p, Some(Ipv4Addr::new(198, 19, 0, 1)), 1000)
}

/// Every counter the node keeps: drops by reason and the links' counters.
fn all_counters(n: &Node) -> Vec<u64> {
    let mut v: Vec<u64> = n.dp.counters().snapshot().iter().map(|(_, c)| *c).collect();
    for l in [&n.a, &n.b, &n.peer] {
        v.extend([
            get(&l.rx_packets),
            get(&l.rx_bytes),
            get(&l.tx_packets),
            get(&l.tx_bytes),
            get(&l.rx_dropped),
        ]);
    }
    v
}

fn stages(t: &Trace) -> Vec<Stage> {
    let mut v: Vec<Stage> = t.steps.iter().map(|s| s.stage).collect();
    v.dedup();
    v
}

#[test]
fn to_a_local_pod_every_stage_in_order_and_nothing_counted() {
    let n = node();
    let before = all_counters(&n);
    let t = trace(&n, &probe(IP_B, ProbeProto::Tcp, 80));
    assert_eq!(t.verdict, Some(Verdict::ToPort(B)));
    assert_eq!(
        stages(&t),
        [
            Stage::PortIngress,
            Stage::Conntrack,
            Stage::Route,
            Stage::Deliver
        ]
    );
    assert_eq!(
        t.step_of(Stage::PortIngress),
        Some(&Step::SpoofGuard {
            mac: mac_a(),
            src: Some(IP_A)
        })
    );
    assert_eq!(t.step_of(Stage::Conntrack), Some(&Step::NotTracked));
    assert_eq!(
        t.step_of(Stage::Route),
        Some(&Step::Route {
            to: "local",
            dst: IP_B
        })
    );
    assert_eq!(
        t.step_of(Stage::Deliver),
        Some(&Step::Deliver {
            port: B,
            mac: mac_b()
        })
    );
    assert_eq!(all_counters(&n), before);
}

#[test]
fn a_forged_source_mac_or_ip_is_the_spoof_guards_drop() {
    let n = node();
    let before = all_counters(&n);
    let mut p = probe(IP_B, ProbeProto::Icmp, 0);
    p.src_mac = Mac([0x0a, 0x58, 1, 2, 3, 4]);
    let t = trace(&n, &p);
    assert_eq!(t.dropped(), Some(DropReason::SpoofedMac));
    assert_eq!(t.steps.len(), 1);
    assert_eq!(t.steps[0].stage, Stage::PortIngress);
    let mut p = probe(IP_B, ProbeProto::Icmp, 0);
    p.src = Ipv4Addr::new(198, 18, 1, 99);
    let t = trace(&n, &p);
    assert_eq!(t.dropped(), Some(DropReason::SpoofedIp));
    assert_eq!(
        t.steps.last().map(|s| (s.stage, s.step.to_string())),
        Some((Stage::PortIngress, "drop: spoofed_ip".to_string()))
    );
    assert_eq!(all_counters(&n), before, "no drop counted, no rx");
}

#[test]
fn to_a_remote_pod_names_the_peer_and_the_outer_header() {
    let n = node();
    let before = all_counters(&n);
    let t = trace(&n, &probe(IP_R, ProbeProto::Udp, 53));
    assert!(matches!(
        t.verdict,
        Some(Verdict::ToTunnel { peer: PEER, .. })
    ));
    assert_eq!(
        t.step_of(Stage::TunnelEgress),
        Some(&Step::Encap {
            peer: PEER,
            outer_src: Some(Ipv4Addr::new(198, 19, 0, 1)),
            outer_dst: UNDERLAY,
            udp_src: 4789,
            udp_dst: 4789,
            vni: 1,
            inner_src_mac: vtep_mac(),
            inner_dst_mac: peer_vtep_mac(),
        })
    );
    let line = t.step_of(Stage::TunnelEgress).unwrap().to_string();
    assert!(
        line.contains("198.19.0.1:4789 -> 198.19.0.2:4789 vni 1"),
        "{line}"
    );
    assert_eq!(all_counters(&n), before);
}

#[test]
fn to_a_service_names_the_endpoint_the_live_path_then_picks_and_creates_nothing() {
    let eps = [sa(IP_B, 8080), sa(IP_R, 8080), sa(IP_R2, 8080)];
    let n = svc_node(
        16,
        vec![svc(VIP, 80, L4Proto::Tcp, &eps, Some(10_000))],
        vec![],
    );
    let before = all_counters(&n);
    let p = probe(VIP, ProbeProto::Tcp, 80);
    let t = trace(&n, &p);
    let Some(Step::Service {
        endpoint,
        endpoints: 3,
        affinity: false,
        ..
    }) = t.step_of(Stage::Services).cloned()
    else {
        panic!("{t:?}")
    };
    assert!(t.steps.iter().any(|s| s.step
        == Step::Dnat {
            from: sa(VIP, 80),
            to: endpoint,
            snat: None
        }));
    // Tracing again gives the same answer: the spread's counter did not move.
    assert_eq!(trace(&n, &p).steps, t.steps);
    assert_eq!(n.dp.conntrack_len(), 0);
    assert!(n.dp.export_conntrack(1000).affinities.is_empty());
    assert_eq!(all_counters(&n), before);
    // The live path picks what the trace said.
    let (v, pkt) = n.port_at(A, p.frame().frame(), VnetHdr::default(), 1000);
    assert_ne!(v, Verdict::Drop(DropReason::ServiceNoEndpoints));
    let to = if *endpoint.ip() == IP_B {
        addrs(pkt.frame()).1
    } else {
        addrs(inner(&pkt)).1
    };
    assert_eq!(to, endpoint);
    assert_eq!(n.dp.conntrack_len(), 1);
    // Now pinned: the trace says so, and sees the connection as tracked.
    let t = trace(&n, &p);
    assert!(matches!(
        t.step_of(Stage::Conntrack),
        Some(Step::Tracked { reply: false, .. })
    ));
    let mut other = p;
    other.sport = 45001;
    let t = trace(&n, &other);
    assert!(matches!(
        t.step_of(Stage::Services),
        Some(Step::Service { affinity: true, endpoint: e, .. }) if *e == endpoint
    ));
    assert_eq!(n.dp.conntrack_len(), 1);
}

#[test]
fn a_service_without_endpoints_is_rejected_and_not_counted() {
    let n = svc_node(16, vec![svc(VIP, 80, L4Proto::Tcp, &[], None)], vec![]);
    let before = all_counters(&n);
    let t = trace(&n, &probe(VIP, ProbeProto::Tcp, 80));
    assert_eq!(
        t.verdict,
        Some(Verdict::ToPort(A)),
        "the RST goes back to the pod"
    );
    let svc_steps: Vec<&Step> = t
        .steps
        .iter()
        .filter(|s| s.stage == Stage::Services)
        .map(|s| &s.step)
        .collect();
    assert_eq!(
        svc_steps,
        [
            &Step::Drop {
                reason: DropReason::ServiceNoEndpoints
            },
            &Step::Answer { what: "tcp rst" },
            &Step::Deliver {
                port: A,
                mac: mac_a()
            }
        ]
    );
    assert_eq!(all_counters(&n), before);
}

#[test]
fn the_host_stack_and_ttl_stages() {
    let n = node();
    let before = all_counters(&n);
    let t = trace(&n, &probe(GW, ProbeProto::Icmp, 0));
    assert_eq!(t.verdict, Some(Verdict::ToPort(A)));
    assert_eq!(
        t.step_of(Stage::HostStack),
        Some(&Step::Answer {
            what: "icmp echo reply"
        })
    );
    let mut p = probe(IP_B, ProbeProto::Udp, 9);
    p.ttl = 1;
    let t = trace(&n, &p);
    assert!(t.steps.iter().any(|s| s.step
        == Step::Drop {
            reason: DropReason::TtlExceeded
        }));
    let t = trace(&n, &probe(Ipv4Addr::new(10, 9, 9, 9), ProbeProto::Udp, 9));
    assert_eq!(t.dropped(), Some(DropReason::NoRoute));
    assert_eq!(t.steps.last().map(|s| s.stage), Some(Stage::Route));
    assert_eq!(all_counters(&n), before);
}

#[test]
fn the_rate_limit_is_looked_at_but_no_token_is_taken() {
    let mut cfg = config();
    cfg.broadcast_limit = RateLimit {
        per_sec: 1,
        burst: 1,
    };
    let n = node_with(cfg);
    let mut p = probe(IP_B, ProbeProto::Udp, 9);
    p.dst_mac = Mac::BROADCAST;
    for _ in 0..3 {
        let t = trace(&n, &p);
        assert!(t.steps.iter().any(|s| s.step
            == Step::RateLimit {
                bucket: "broadcast",
                limit: "1/s burst 1".into(),
                within: true
            }));
        assert_eq!(t.dropped(), Some(DropReason::Multicast));
    }
    // The one token is still there for a real frame; after it, the trace shows the limit.
    let frame = p.frame().frame().to_vec();
    let (v, _) = n.port_at(A, &frame, VnetHdr::default(), 1000);
    assert_eq!(v, Verdict::Drop(DropReason::Multicast));
    let t = trace(&n, &p);
    assert_eq!(t.dropped(), Some(DropReason::BroadcastRateLimited));
    assert_eq!(n.drops(DropReason::BroadcastRateLimited), 0);
}

#[test]
fn conntrack_list_filters_and_flush() {
    let eps = [sa(IP_B, 8080)];
    let n = svc_node(
        16,
        vec![
            svc(VIP, 80, L4Proto::Tcp, &eps, None),
            svc(VIP2, 53, L4Proto::Udp, &[sa(IP_R, 53)], None),
        ],
        vec![],
    );
    let mut p = probe(VIP, ProbeProto::Tcp, 80);
    for sport in [40000, 40001] {
        p.sport = sport;
        n.port_at(A, p.frame().frame(), VnetHdr::default(), 0);
    }
    let mut u = probe(VIP2, ProbeProto::Udp, 53);
    u.sport = 5353;
    n.port_at(A, u.frame().frame(), VnetHdr::default(), 0);
    assert_eq!(n.dp.conntrack_len(), 3);

    let all = n.dp.conntrack_list(&ConnFilter::default(), 1000);
    assert_eq!(all.len(), 3);
    let c = &all[0];
    assert_eq!(
        (c.proto, c.client, c.service, c.endpoint, c.reply_to, c.state),
        (
            L4Proto::Tcp,
            sa(IP_A, 40000),
            sa(VIP, 80),
            sa(IP_B, 8080),
            sa(IP_A, 40000),
            ConnState::SynSent
        )
    );
    assert_eq!(c.ttl_ms, 29_000, "30 s for a SYN, 1 s later");
    let web = ConnFilter {
        services: Some(vec![(VIP, 80, L4Proto::Tcp)]),
        pod: None,
    };
    assert_eq!(n.dp.conntrack_list(&web, 1000).len(), 2);
    let by_endpoint = ConnFilter {
        services: None,
        pod: Some(IP_R),
    };
    let l = n.dp.conntrack_list(&by_endpoint, 1000);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].service, sa(VIP2, 53));
    let by_client = ConnFilter {
        services: None,
        pod: Some(IP_A),
    };
    assert_eq!(n.dp.conntrack_list(&by_client, 1000).len(), 3);
    let none = ConnFilter {
        services: Some(vec![]),
        pod: None,
    };
    assert!(n.dp.conntrack_list(&none, 1000).is_empty());
    assert_eq!(n.dp.conntrack_flush(&none, 1000), 0);

    assert_eq!(n.dp.conntrack_flush(&web, 1000), 2);
    assert_eq!(n.dp.conntrack_len(), 1);
    assert_eq!(n.dp.conntrack_flush(&ConnFilter::default(), 1000), 1);
    assert_eq!(n.dp.conntrack_len(), 0);
}

#[test]
fn switched_hairpinned_and_reply_traces() {
    let n = svc_node(
        16,
        vec![svc(VIP, 80, L4Proto::Tcp, &[sa(IP_A, 8080)], None)],
        vec![],
    );
    let before = all_counters(&n);
    // To B's MAC: the L2 switch.
    let mut p = probe(IP_B, ProbeProto::Udp, 9);
    p.dst_mac = mac_b();
    let t = trace(&n, &p);
    assert_eq!(t.verdict, Some(Verdict::ToPort(B)));
    assert_eq!(
        t.step_of(Stage::Switch),
        Some(&Step::Deliver {
            port: B,
            mac: mac_b()
        })
    );
    assert!(t.steps.iter().any(|s| s.step
        == Step::Admitted {
            dst_mac: mac_b(),
            routed: false
        }));
    // A to a Service whose one endpoint is A itself: DNAT and SNAT to the gateway.
    let t = trace(&n, &probe(VIP, ProbeProto::Tcp, 80));
    let Some(Step::Dnat { from, to, snat }) = t
        .steps
        .iter()
        .map(|s| &s.step)
        .find(|s| matches!(s, Step::Dnat { .. }))
    else {
        panic!("{t:?}")
    };
    assert_eq!((*from, *to, *snat), (sa(VIP, 80), sa(IP_A, 8080), Some(GW)));
    assert_eq!(t.verdict, Some(Verdict::ToPort(A)));
    assert_eq!(all_counters(&n), before);

    // A live connection A -> VIP -> B, then B's reply traced: the reverse NAT.
    n.set_services(
        vec![svc(VIP, 80, L4Proto::Tcp, &[sa(IP_B, 8080)], None)],
        vec![],
    );
    let mut syn = probe(VIP, ProbeProto::Tcp, 80);
    syn.sport = 41000;
    n.port_at(A, syn.frame().frame(), VnetHdr::default(), 0);
    let before = all_counters(&n);
    let reply = Probe {
        src_mac: mac_b(),
        dst_mac: mac_a(),
        src: IP_B,
        dst: IP_A,
        proto: ProbeProto::Tcp,
        sport: 8080,
        dport: 41000,
        ttl: 64,
    };
    let t = n.dp.trace_from_port(&n.dp.tables(), B, &reply, None, 1000);
    assert!(
        matches!(
            t.step_of(Stage::Conntrack),
            Some(Step::Tracked { reply: true, state, .. }) if state == "syn_sent"
        ),
        "{t:?}"
    );
    assert!(t.steps.iter().any(|s| s.step
        == Step::ReverseNat {
            src: sa(VIP, 80),
            dst: sa(IP_A, 41000)
        }));
    assert_eq!(t.verdict, Some(Verdict::ToPort(A)));
    let ct = n.dp.conntrack_list(&ConnFilter::default(), 1000);
    assert_eq!(
        ct[0].state,
        ConnState::SynSent,
        "the reply was not accounted"
    );
    assert_eq!(all_counters(&n), before);
}
