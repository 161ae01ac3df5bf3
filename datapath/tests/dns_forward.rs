//! DNS forwarding (`vswitchd --dns-upstream`): names the cluster DNS does not serve become
//! `Verdict::DnsForward` with the query untouched; the upstream's response becomes the pod's
//! datagram (`dns_upstream_reply`, `dns_reply_frame`).

mod common;

use common::svc::*;
use common::*;
use etherparse::{IpHeaders, IpNumber, Ipv4Header, PacketBuilder};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use std::sync::Arc;
use vswitch_datapath::buf::VNET_F_NEEDS_CSUM;
use vswitch_datapath::*;

/// Node 1 with services and DNS, forwarding on or off, one service `nginx-service`.
fn fwd_node(forward: bool) -> Node {
    let mut cfg = svc_config(16);
    cfg.dns_forward = forward;
    let n = Node {
        dp: Datapath::new(cfg),
        a: Arc::default(),
        b: Arc::default(),
        peer: Arc::default(),
    };
    n.set_services(
        vec![],
        vec![DnsEntry {
            name: "nginx-service".into(),
            namespace: "default".into(),
            vip: VIP,
        }],
    );
    n
}

fn query(name: &str, ty: RecordType) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    m.to_vec().unwrap()
}

fn query_frame(q: &[u8]) -> Vec<u8> {
    udp_dgram(mac_a(), router(), sa(IP_A, 40000), sa(DNS_IP, 53), q, 64)
}

#[test]
fn outside_names_are_forwarded_with_the_frame_untouched() {
    let n = fwd_node(true);
    for name in ["example.test", "example.test.", "nope", "a.b.c.d", "."] {
        let q = query(name, RecordType::A);
        let f = query_frame(&q);
        let vnet = VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let (v, pkt) = n.port(A, &f, vnet);
        assert_eq!(
            v,
            Verdict::DnsForward {
                port: A,
                client: sa(IP_A, 40000)
            },
            "{name}"
        );
        assert_eq!(pkt.frame(), &f[..], "{name}: frame untouched");
        assert_eq!(pkt.vnet, vnet, "{name}: vnet untouched");
        assert_eq!(dns_query_payload(pkt.frame()), Some(&q[..]));
    }
    // Counted as received only: no drop, no tx.
    let total: u64 = n.dp.counters().snapshot().iter().map(|c| c.1).sum();
    assert_eq!(total, 0);
    assert_eq!(get(&n.a.rx_packets), 5);
    assert_eq!(get(&n.a.rx_dropped), 0);
    assert_eq!(get(&n.a.tx_packets), 0);
}

#[test]
fn cluster_names_are_still_answered_locally() {
    let n = fwd_node(true);
    for (name, rcode) in [
        ("nginx-service", ResponseCode::NoError),
        (
            "nginx-service.default.svc.cluster.local",
            ResponseCode::NoError,
        ),
        ("nope.default.svc.cluster.local", ResponseCode::NXDomain),
        (
            "example.test.default.svc.cluster.local",
            ResponseCode::NXDomain,
        ),
    ] {
        let (v, pkt) = n.port(
            A,
            &query_frame(&query(name, RecordType::A)),
            VnetHdr::default(),
        );
        assert_eq!(v, Verdict::ToPort(A), "{name}");
        let m = Message::from_vec(&pkt.frame()[42..]).unwrap();
        assert_eq!(m.metadata.response_code, rcode, "{name}");
    }
    // Not a query (a response to port 53) is still malformed, not forwarded.
    let mut q = query("example.test", RecordType::A);
    q[2] |= 0x80;
    let (v, _) = n.port(A, &query_frame(&q), VnetHdr::default());
    assert_eq!(v, Verdict::Drop(DropReason::DnsMalformed));
}

#[test]
fn without_forwarding_outside_names_are_refused() {
    let n = fwd_node(false);
    let (v, pkt) = n.port(
        A,
        &query_frame(&query("example.test", RecordType::A)),
        VnetHdr::default(),
    );
    assert_eq!(v, Verdict::ToPort(A));
    let m = Message::from_vec(&pkt.frame()[42..]).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(n.drops(DropReason::DnsRefused), 1);
}

/// The reply frame for a 12-byte DNS header from 198.19.96.10:53 to 198.18.1.2:40000.
const GOLDEN_REPLY: [u8; 54] = [
    // Ethernet: pod A's MAC <- router MAC, IPv4.
    0x0a, 0x58, 198, 18, 1, 2, 0x0a, 0x58, 198, 18, 1, 1, 0x08, 0x00, //
    // IPv4: 20 bytes, total 40, id 0, no flags, TTL 64, UDP, checksum, src, dst.
    0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x8d, 0x93, //
    198, 19, 96, 10, 198, 18, 1, 2, //
    // UDP: 53 -> 40000, length 20, checksum.
    0x00, 0x35, 0x9c, 0x40, 0x00, 0x14, 0xb2, 0x5b, //
    // DNS: id 0x4242, QR RD RA, NOERROR, no records.
    0x42, 0x42, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn reply_frame_golden_bytes() {
    let payload = &GOLDEN_REPLY[42..];
    let mut pkt = PacketBuf::from_frame(&[0xee; 200]);
    pkt.vnet.flags = VNET_F_NEEDS_CSUM;
    assert!(dns_reply_frame(
        &mut pkt,
        router(),
        mac_a(),
        DNS_IP,
        sa(IP_A, 40000),
        payload
    ));
    assert_eq!(pkt.frame(), &GOLDEN_REPLY[..]);
    assert_eq!(pkt.vnet, VnetHdr::default());
    assert_checksums(pkt.frame());
    // The same datagram as etherparse builds it (without DF).
    let mut ip = Ipv4Header::new(0, 64, IpNumber::UDP, DNS_IP.octets(), IP_A.octets()).unwrap();
    ip.dont_fragment = false;
    let mut want = Vec::new();
    PacketBuilder::ethernet2(router().0, mac_a().0)
        .ip(IpHeaders::Ipv4(ip, Default::default()))
        .udp(53, 40000)
        .write(&mut want, payload)
        .unwrap();
    assert_eq!(pkt.frame(), &want[..]);
}

#[test]
fn upstream_response_becomes_the_pods_datagram() {
    let n = fwd_node(true);
    let q = query("example.test", RecordType::A);
    let f = query_frame(&q);
    let (v, mut pkt) = n.port(A, &f, VnetHdr::default());
    let Verdict::DnsForward { port, client } = v else {
        panic!("{v:?}")
    };
    let mut resp = Message::new(0x4242, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = true;
    resp.metadata.recursion_available = true;
    resp.add_query(Query::query(
        Name::from_ascii("example.test.").unwrap(),
        RecordType::A,
    ));
    resp.add_answer(hickory_proto::rr::Record::from_rdata(
        Name::from_ascii("example.test.").unwrap(),
        30,
        hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A(std::net::Ipv4Addr::new(
            198, 18, 200, 7,
        ))),
    ));
    let bytes = resp.to_vec().unwrap();
    let t = n.dp.tables();
    let v = n.dp.dns_upstream_reply(&t, port, client, &bytes, &mut pkt);
    assert_eq!(v, Verdict::ToPort(A));
    let out = pkt.frame();
    assert_checksums(out);
    assert_eq!(&out[..12], &[mac_a().0, router().0].concat()[..]);
    assert_eq!(addrs(out).0, sa(DNS_IP, 53));
    assert_eq!(addrs(out).1, sa(IP_A, 40000));
    assert_eq!(&out[42..], &bytes[..]);
    assert_eq!(pkt.vnet, VnetHdr::default());
    assert_eq!(get(&n.a.tx_packets), 1);
    assert_eq!(get(&n.a.tx_bytes), out.len() as u64);
    let total: u64 = n.dp.counters().snapshot().iter().map(|c| c.1).sum();
    assert_eq!(total, 0);
}

#[test]
fn upstream_responses_that_cannot_be_delivered_are_counted() {
    let n = fwd_node(true);
    let t = n.dp.tables();
    let resp = [0x42, 0x42, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut pkt = PacketBuf::new();
    let failed = Verdict::Drop(DropReason::DnsUpstreamFailed);
    // The pod is gone.
    assert_eq!(
        n.dp.dns_upstream_reply(&t, 99, sa(IP_A, 1), &resp, &mut pkt),
        failed
    );
    // The port now has another address.
    assert_eq!(
        n.dp.dns_upstream_reply(&t, A, sa(IP_B, 1), &resp, &mut pkt),
        failed
    );
    // Shorter than a DNS header.
    assert_eq!(
        n.dp.dns_upstream_reply(&t, A, sa(IP_A, 1), &resp[..11], &mut pkt),
        failed
    );
    // Too big for one datagram.
    let big = vec![0u8; 65535 - 27];
    assert_eq!(
        n.dp.dns_upstream_reply(&t, A, sa(IP_A, 1), &big, &mut pkt),
        failed
    );
    assert_eq!(n.drops(DropReason::DnsUpstreamFailed), 4);
    assert_eq!(get(&n.a.tx_packets), 0);
    // The largest one fits.
    let max = vec![0u8; 65535 - 28];
    assert_eq!(
        n.dp.dns_upstream_reply(&t, A, sa(IP_A, 1), &max, &mut pkt),
        Verdict::ToPort(A)
    );
    assert_eq!(pkt.len(), 14 + 65535);
}

#[test]
fn query_payload_rejects_what_is_not_a_query_datagram() {
    let q = query("example.test", RecordType::A);
    let f = query_frame(&q);
    assert_eq!(dns_query_payload(&f), Some(&q[..]));
    assert_eq!(dns_query_payload(&f[..20]), None);
    let other = udp_dgram(mac_a(), router(), sa(IP_A, 40000), sa(DNS_IP, 54), &q, 64);
    assert_eq!(dns_query_payload(&other), None);
    let mut bad_len = f.clone();
    bad_len[38..40].copy_from_slice(&2000u16.to_be_bytes());
    assert_eq!(dns_query_payload(&bad_len), None);
}
