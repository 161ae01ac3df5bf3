//! The cluster DNS: queries to 198.19.96.10:53 are answered in place; answers are checked
//! with hickory-proto.

use crate::common;

use common::svc::*;
use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use vswitch_datapath::buf::VNET_F_NEEDS_CSUM;
use vswitch_datapath::*;

/// `dig nginx-service.default.svc.cluster.local` as sent: id 0xbeef, RD and AD set, one
/// question (A, IN) and an EDNS OPT record (payload 1232, no options).
const GOLDEN_QUERY: [u8; 68] = [
    0xbe, 0xef, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
    13, b'n', b'g', b'i', b'n', b'x', b'-', b's', b'e', b'r', b'v', b'i', b'c', b'e', //
    7, b'd', b'e', b'f', b'a', b'u', b'l', b't', 3, b's', b'v', b'c', //
    7, b'c', b'l', b'u', b's', b't', b'e', b'r', 5, b'l', b'o', b'c', b'a', b'l', 0, //
    0x00, 0x01, 0x00, 0x01, //
    0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

const NGINX: std::net::Ipv4Addr = VIP;
const API: std::net::Ipv4Addr = VIP2;
const DUP_A: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 19, 96, 30);
const DUP_B: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 19, 96, 31);

fn dns_node() -> Node {
    let e = |name: &str, namespace: &str, vip| DnsEntry {
        name: name.into(),
        namespace: namespace.into(),
        vip,
    };
    svc_node(
        16,
        vec![],
        vec![
            e("nginx-service", "default", NGINX),
            e("api", "prod", API),
            e("dup", "a", DUP_A),
            e("dup", "b", DUP_B),
        ],
    )
}

/// Sends the DNS message `q` from A:5353 and returns the verdict and the answer frame.
fn send(n: &Node, q: &[u8], vnet: VnetHdr) -> (Verdict, PacketBuf) {
    let f = udp_dgram(mac_a(), router(), sa(IP_A, 5353), sa(DNS_IP, 53), q, 64);
    n.port(A, &f, vnet)
}

/// Checks the frame around an answer and decodes it.
fn answer(v: Verdict, pkt: &PacketBuf) -> Message {
    assert_eq!(v, Verdict::ToPort(A));
    let f = pkt.frame();
    assert_checksums(f);
    assert_eq!(&f[..12], &[mac_a().0, router().0].concat()[..]);
    assert_eq!(addrs(f).0, sa(DNS_IP, 53));
    assert_eq!(addrs(f).1, sa(IP_A, 5353));
    assert_eq!(pkt.vnet, VnetHdr::default());
    let udp_len = usize::from(u16::from_be_bytes([f[38], f[39]]));
    assert_eq!(udp_len, f.len() - 34);
    Message::from_vec(&f[42..]).expect("a DNS message")
}

fn query(name: &str, ty: RecordType) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    m.to_vec().unwrap()
}

fn ask(n: &Node, name: &str, ty: RecordType) -> Message {
    let (v, pkt) = send(n, &query(name, ty), VnetHdr::default());
    let m = answer(v, &pkt);
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.queries.len(), 1);
    let trim = |s: String| s.trim_end_matches('.').to_string();
    let want = trim(Name::from_ascii(name).unwrap().to_ascii());
    assert_eq!(
        trim(m.queries[0].name().to_ascii()),
        want,
        "the question, as asked"
    );
    m
}

fn a_of(m: &Message) -> Vec<std::net::Ipv4Addr> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0,
            other => panic!("not an A record: {other:?}"),
        })
        .collect()
}

#[test]
fn golden_query_gets_an_authoritative_a_answer() {
    let n = dns_node();
    let (v, pkt) = send(&n, &GOLDEN_QUERY, VnetHdr::default());
    let m = answer(v, &pkt);
    assert_eq!(m.metadata.id, 0xbeef);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.metadata.authoritative && m.metadata.recursion_desired);
    assert!(!m.metadata.truncation);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(m.queries[0].query_type(), RecordType::A);
    assert_eq!(m.queries[0].query_class(), DNSClass::IN);
    assert_eq!(m.answers.len(), 1);
    let r = &m.answers[0];
    assert_eq!(r.ttl, 5);
    assert_eq!(
        r.name.to_ascii(),
        "nginx-service.default.svc.cluster.local."
    );
    assert_eq!(a_of(&m), vec![NGINX]);
    assert!(m.edns.is_some(), "EDNS in, EDNS out");
    assert_eq!(
        n.dp.counters().snapshot().iter().map(|c| c.1).sum::<u64>(),
        0
    );
    assert_eq!(get(&n.a.tx_packets), 1);
}

#[test]
fn every_name_form_resolves() {
    let n = dns_node();
    for name in [
        "nginx-service.default.svc.cluster.local",
        "nginx-service.default.svc.cluster.local.",
        "nginx-service.default.svc",
        "nginx-service.default",
        "nginx-service",
        "nginx-service.",
    ] {
        let m = ask(&n, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(a_of(&m), vec![NGINX], "{name}");
    }
    // Bare: the only service of that name, in whatever namespace.
    assert_eq!(a_of(&ask(&n, "api", RecordType::A)), vec![API]);
    assert_eq!(a_of(&ask(&n, "api.prod", RecordType::A)), vec![API]);
    assert_eq!(
        a_of(&ask(&n, "dup.b.svc.cluster.local", RecordType::A)),
        vec![DUP_B]
    );
    // Bare and ambiguous (two namespaces, none "default"): not ours to answer.
    let m = ask(&n, "dup", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn names_are_case_insensitive_and_the_question_is_echoed() {
    let n = dns_node();
    let m = ask(
        &n,
        "NGINX-Service.Default.SVC.Cluster.Local.",
        RecordType::A,
    );
    assert_eq!(a_of(&m), vec![NGINX]);
    assert_eq!(
        m.queries[0].name().to_ascii(),
        "NGINX-Service.Default.SVC.Cluster.Local."
    );
    assert_eq!(a_of(&ask(&n, "Api.PROD", RecordType::A)), vec![API]);
}

#[test]
fn unknown_names_in_the_cluster_domain_are_nxdomain() {
    let n = dns_node();
    for name in [
        "nope.default.svc.cluster.local",
        "api.default.svc.cluster.local",
        "nginx-service.default.cluster.local",
        "x.y.z.svc.cluster.local",
        "cluster.local",
        // What a search path makes of an outside name first.
        "example.com.default.svc.cluster.local",
    ] {
        let m = ask(&n, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty());
    }
    assert_eq!(n.drops(DropReason::DnsRefused), 0);
}

#[test]
fn outside_names_are_refused_and_counted() {
    let n = dns_node();
    for name in ["example.com", "nope", "a.b.c.d", "nope.default.svc", "."] {
        let m = ask(&n, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(m.answers.is_empty());
    }
    assert_eq!(n.drops(DropReason::DnsRefused), 5);
    assert_eq!(get(&n.a.rx_dropped), 5);
}

#[test]
fn other_types_of_known_names_are_no_data() {
    let n = dns_node();
    for ty in [
        RecordType::AAAA,
        RecordType::MX,
        RecordType::TXT,
        RecordType::SRV,
    ] {
        let m = ask(&n, "nginx-service.default.svc.cluster.local", ty);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{ty:?}");
        assert!(m.answers.is_empty(), "{ty:?}");
    }
    assert_eq!(
        a_of(&ask(&n, "nginx-service", RecordType::ANY)),
        vec![NGINX]
    );
}

#[test]
fn malformed_queries_are_dropped_or_formerr() {
    let n = dns_node();
    for junk in [&b""[..], b"\x12", &GOLDEN_QUERY[..20], &[0xff; 40]] {
        let (v, _) = send(&n, junk, VnetHdr::default());
        assert_eq!(v, Verdict::Drop(DropReason::DnsMalformed), "{junk:?}");
    }
    // A response is not a query.
    let mut resp = GOLDEN_QUERY;
    resp[2] |= 0x80;
    assert_eq!(
        send(&n, &resp, VnetHdr::default()).0,
        Verdict::Drop(DropReason::DnsMalformed)
    );
    assert_eq!(n.drops(DropReason::DnsMalformed), 5);
    // Two questions: FORMERR, counted.
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii("a").unwrap(), RecordType::A));
    m.add_query(Query::query(Name::from_ascii("b").unwrap(), RecordType::A));
    let (v, pkt) = send(&n, &m.to_vec().unwrap(), VnetHdr::default());
    let r = answer(v, &pkt);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(n.drops(DropReason::DnsMalformed), 6);
    // A UDP length that lies.
    let mut f = udp_dgram(
        mac_a(),
        router(),
        sa(IP_A, 5353),
        sa(DNS_IP, 53),
        &GOLDEN_QUERY,
        64,
    );
    f[38..40].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(
        n.port(A, &f, VnetHdr::default()).0,
        Verdict::Drop(DropReason::DnsMalformed)
    );
}

#[test]
fn a_partial_checksum_query_gets_a_complete_answer() {
    let n = dns_node();
    let vnet = VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..Default::default()
    };
    let mut f = udp_dgram(
        mac_a(),
        router(),
        sa(IP_A, 5353),
        sa(DNS_IP, 53),
        &GOLDEN_QUERY,
        64,
    );
    let p = pseudo(&f, f.len() - 34, 17);
    f[40..42].copy_from_slice(&p);
    let (v, pkt) = n.port(A, &f, vnet);
    assert_eq!(a_of(&answer(v, &pkt)), vec![NGINX]);
}

#[test]
fn other_traffic_to_the_dns_address_is_not_answered() {
    let n = dns_node();
    let syn = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 4000),
        sa(DNS_IP, 53),
        SYN,
        1,
        0,
        b"",
    );
    assert_eq!(
        n.port(A, &syn, VnetHdr::default()).0,
        Verdict::Drop(DropReason::ServiceUnknownPort)
    );
    let other = udp_dgram(mac_a(), router(), sa(IP_A, 4000), sa(DNS_IP, 54), b"x", 64);
    assert_eq!(
        n.port(A, &other, VnetHdr::default()).0,
        Verdict::Drop(DropReason::ServiceUnknownPort)
    );
}

#[test]
fn the_cluster_domain_is_configurable() {
    let mut cfg = svc_config(16);
    cfg.cluster_domain = "Corp.Example.".into();
    let n = Node {
        dp: Datapath::new(cfg),
        a: Default::default(),
        b: Default::default(),
        peer: Default::default(),
    };
    n.set_services(
        vec![],
        vec![DnsEntry {
            name: "web".into(),
            namespace: "default".into(),
            vip: VIP,
        }],
    );
    assert_eq!(
        a_of(&ask(&n, "web.default.svc.corp.example", RecordType::A)),
        vec![VIP]
    );
    let m = ask(&n, "web.default.svc.cluster.local", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = ask(&n, "nope.corp.example", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}
