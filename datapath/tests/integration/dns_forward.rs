//! DNS forwarding (`vswitchd --dns-upstream`): names the cluster DNS does not serve become
//! `Verdict::DnsForward` with the query untouched; the upstream's response becomes the pod's
//! datagram (`dns_upstream_reply`, `dns_reply_frame`). The forwarder's state machine
//! (`dns_forward::DnsForwarder`): id rewrite, matching, expiry, limits, garbage from upstream.

use crate::common;

use common::svc::*;
use common::*;
use etherparse::{IpHeaders, IpNumber, Ipv4Header, PacketBuilder};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;
use std::collections::HashSet;
use std::net::SocketAddrV4;
use std::sync::Arc;
use vswitch_datapath::buf::VNET_F_NEEDS_CSUM;
use vswitch_datapath::dns_forward::{
    Dest, Rejected, Source, Transmit, MAX_PENDING, MAX_PENDING_PER_POD,
    MAX_QUERIES_PER_POD_PER_SEC, MAX_QUEUED, QUERIES_PER_SOCKET, SWEEP_MS, TIMEOUT_MS,
};
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
        n.dp.dns_upstream_reply(&t, PortId::new(99), sa(IP_A, 1), &resp, &mut pkt),
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

// ---- The forwarder's state machine ----

const SEED: [u8; 16] = [0x5e, 0xed, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The upstream datagrams queued in `f`, as (id, payload).
fn upstream_out(f: &mut DnsForwarder) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = f.poll_transmit() {
        let Dest::Upstream { id, addr, .. } = t.dest else {
            panic!("{t:?}")
        };
        assert_eq!(&t.payload[..2], &id.to_be_bytes(), "the id on the wire");
        assert_eq!(addr, UP, "to the upstream");
        out.push((id, t.payload.to_vec()));
    }
    out
}

/// The upstream resolver of the forwarder's tests.
const UP: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(192, 0, 2, 53), 53);

/// `d` from the upstream, on the socket its id's query left from (socket 0 when its id is
/// not pending).
fn up(f: &mut DnsForwarder, now: u64, d: &[u8]) -> bool {
    let id = (d.len() >= 2).then(|| u16::from_be_bytes([d[0], d[1]]));
    let socket = id.and_then(|id| f.socket_of(id)).unwrap_or(0);
    f.handle_upstream(now, Source { socket, addr: UP }, d)
}

/// `q` turned into a response (QR set).
fn answered(q: &[u8]) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80;
    r.extend_from_slice(b"answer");
    r
}

/// The first ids drawn under `key`: the top 16 bits of SipHash-1-3(key, n), computed here
/// from the siphasher crate directly.
fn reference_ids(key: [u8; 16], n: usize) -> Vec<u16> {
    use std::hash::Hasher;
    (0..n as u64)
        .map(|i| {
            let mut h = siphasher::sip::SipHasher13::new_with_key(&key);
            h.write_u64(i);
            (h.finish() >> 48) as u16
        })
        .collect()
}

#[test]
fn forwarder_rewrites_the_id_and_restores_it_on_the_answer() {
    let n = fwd_node(true);
    let q = query("example.test", RecordType::A);
    let mut f = DnsForwarder::new(SEED, UP);
    assert_eq!(f.poll_transmit(), None);
    assert_eq!(f.handle(0, A, sa(IP_A, 40000), &query_frame(&q)), Ok(()));
    assert_eq!(f.handle(0, A, sa(IP_A, 40000), &query_frame(&q)), Ok(()));
    let out = upstream_out(&mut f);
    assert_eq!(out.len(), 2);
    for (_, p) in &out {
        assert_eq!(&p[2..], &q[2..], "the rest of the query untouched");
    }
    assert_ne!(out[0].0, out[1].0, "fresh ids");
    assert_eq!(
        vec![out[0].0, out[1].0],
        reference_ids(SEED, 2),
        "the keyed draw"
    );
    assert_eq!(
        reference_ids(SEED, 2),
        vec![
            DnsForwarder::id_draw(&SEED, 0),
            DnsForwarder::id_draw(&SEED, 1)
        ]
    );
    assert_ne!(
        reference_ids(SEED, 8),
        reference_ids([1; 16], 8),
        "another key"
    );
    assert_eq!(f.pending_len(), 2);
    // The upstream answers the second one.
    let r = answered(&out[1].1);
    assert!(up(&mut f, 1, &r));
    let t = f.poll_transmit().expect("the answer");
    let want = [&[0x42, 0x42][..], &r[2..]].concat();
    assert_eq!(
        t,
        Transmit {
            dest: Dest::Pod {
                port: A,
                client: sa(IP_A, 40000)
            },
            payload: &want[..],
        }
    );
    // ... which becomes the pod's datagram.
    let mut pkt = PacketBuf::new();
    let v =
        n.dp.dns_upstream_reply(&n.dp.tables(), A, sa(IP_A, 40000), t.payload, &mut pkt);
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(&pkt.frame()[42..], &want[..]);
    assert_eq!(f.poll_transmit(), None);
    assert_eq!(f.pending_len(), 1);
    assert_eq!(f.take_failed(), 0);
}

#[test]
fn forwarder_answers_go_back_to_the_pod_that_asked() {
    let mut f = DnsForwarder::new([7; 16], UP);
    let q = query("example.test", RecordType::A);
    let from_b = udp_dgram(mac_b(), router(), sa(IP_B, 5353), sa(DNS_IP, 53), &q, 64);
    f.handle(0, A, sa(IP_A, 40000), &query_frame(&q)).unwrap();
    f.handle(0, B, sa(IP_B, 5353), &from_b).unwrap();
    let out = upstream_out(&mut f);
    // Same pod id (0x4242) from both: answered in the other order.
    for ((id, p), want) in out
        .iter()
        .rev()
        .zip([(B, sa(IP_B, 5353)), (A, sa(IP_A, 40000))])
    {
        assert!(up(&mut f, 0, &answered(p)), "{id}");
        let t = f.poll_transmit().unwrap();
        assert_eq!(
            t.dest,
            Dest::Pod {
                port: want.0,
                client: want.1
            }
        );
        assert_eq!(&t.payload[..2], &[0x42, 0x42]);
    }
    assert!(!f.has_pending());
}

#[test]
fn forwarder_ignores_what_answers_nothing_pending() {
    let mut f = DnsForwarder::new(SEED, UP);
    let q = query("example.test", RecordType::A);
    f.handle(0, A, sa(IP_A, 40000), &query_frame(&q)).unwrap();
    let (id, sent) = upstream_out(&mut f).pop().unwrap();
    // The query itself echoed back (QR clear) is not a response, and ends nothing.
    assert!(!up(&mut f, 0, &sent));
    // Another id.
    let mut other = answered(&sent);
    other[..2].copy_from_slice(&id.wrapping_add(1).to_be_bytes());
    assert!(!up(&mut f, 0, &other));
    // Shorter than a header, even with the right id and QR.
    let r = answered(&sent);
    for len in 0..12 {
        assert!(!up(&mut f, 0, &r[..len]), "{len} bytes");
    }
    assert_eq!(f.poll_transmit(), None);
    assert_eq!(f.pending_len(), 1);
    // The real answer, then the same again (duplicated or late).
    assert!(up(&mut f, 0, &r));
    assert!(f.poll_transmit().is_some());
    assert!(!up(&mut f, 0, &r));
    assert_eq!(f.poll_transmit(), None);
    assert_eq!(f.take_failed(), 0, "ignored, not failures");
}

#[test]
fn forwarder_rejects_frames_that_hold_no_query() {
    let mut f = DnsForwarder::new(SEED, UP);
    let q = query("example.test", RecordType::A);
    let bad = [
        Vec::new(),
        query_frame(&q)[..30].to_vec(),
        query_frame(&q[..11]),
        udp_dgram(mac_a(), router(), sa(IP_A, 1), sa(DNS_IP, 54), &q, 64),
    ];
    for frame in &bad {
        assert_eq!(f.handle(0, A, sa(IP_A, 1), frame), Err(Rejected::Malformed));
    }
    assert_eq!(f.poll_transmit(), None);
    assert!(!f.has_pending());
    assert_eq!(f.take_failed(), 4);
    assert_eq!(f.take_failed(), 0, "taken once");
}

#[test]
fn forwarder_expires_unanswered_queries() {
    let mut f = DnsForwarder::new(SEED, UP);
    let q = query("example.test", RecordType::A);
    assert_eq!(f.poll_timeout(), None);
    f.handle(1000, A, sa(IP_A, 40000), &query_frame(&q))
        .unwrap();
    f.handle(1100, A, sa(IP_A, 40000), &query_frame(&q))
        .unwrap();
    let out = upstream_out(&mut f);
    assert_eq!(f.poll_timeout(), Some(1000 + TIMEOUT_MS));
    assert_eq!(f.handle_timeout(1000 + TIMEOUT_MS - 1), 0);
    assert_eq!(f.pending_len(), 2);
    assert_eq!(f.handle_timeout(1000 + TIMEOUT_MS), 1);
    assert_eq!(f.take_failed(), 1);
    // The sweep runs at most every SWEEP_MS.
    assert_eq!(f.poll_timeout(), Some(1000 + TIMEOUT_MS + SWEEP_MS));
    assert_eq!(f.handle_timeout(1100 + TIMEOUT_MS), 0, "swept 100 ms ago");
    assert_eq!(f.poll_timeout(), Some(1000 + TIMEOUT_MS + SWEEP_MS));
    // The answer of the expired query comes late: ignored.
    assert!(!up(&mut f, 1000 + TIMEOUT_MS + 1, &answered(&out[0].1)));
    assert_eq!(f.handle_timeout(1000 + TIMEOUT_MS + SWEEP_MS), 1);
    assert_eq!(f.take_failed(), 1);
    assert_eq!(f.poll_timeout(), None);
    assert!(!f.has_pending());
    // A late answer whose query expired but was not swept yet is ignored once it is.
    f.handle(20_000, A, sa(IP_A, 40000), &query_frame(&q))
        .unwrap();
    let (_, sent) = upstream_out(&mut f).pop().unwrap();
    assert!(!up(&mut f, 20_000 + TIMEOUT_MS, &answered(&sent)));
    assert_eq!(f.take_failed(), 1);
}

/// Pod number `i / 200` of many, each asking at most 200 times: under a pod's share and rate.
fn many(i: usize) -> (PortId, SocketAddrV4) {
    let k = u32::try_from(i / 200).unwrap();
    (PortId::new(100 + k), sa(IP_A, (i % 200) as u16 + 1))
}

/// One pod asking for names nobody answers fills only its share of the table, and the
/// others still get their queries through; a pod's rate is bounded per second.
#[test]
fn one_pod_gets_only_its_share_and_its_rate() {
    let mut f = DnsForwarder::new(SEED, UP);
    let frame = query_frame(&query("never.answers.test", RecordType::A));
    for _ in 0..MAX_PENDING_PER_POD {
        f.handle(0, A, sa(IP_A, 1), &frame).unwrap();
        upstream_out(&mut f);
    }
    assert_eq!(
        f.handle(0, A, sa(IP_A, 1), &frame),
        Err(Rejected::PodShareFull)
    );
    assert_eq!(f.pending_of(A), MAX_PENDING_PER_POD);
    assert_eq!((f.take_limited(), f.take_failed()), (1, 0));
    // Another pod is not affected.
    assert_eq!(f.handle(0, B, sa(IP_B, 1), &frame), Ok(()));
    upstream_out(&mut f);
    // Expiry gives A its share back.
    f.handle_timeout(TIMEOUT_MS + 1);
    assert_eq!(f.pending_of(A), 0);
    assert_eq!(f.take_failed(), MAX_PENDING_PER_POD as u64 + 1);
    // The rate: a pod whose queries are answered at once still forwards at most
    // MAX_QUERIES_PER_POD_PER_SEC a second.
    let t0 = 2 * TIMEOUT_MS;
    let q = query("example.test", RecordType::A);
    let mut sent = 0;
    for _ in 0..MAX_QUERIES_PER_POD_PER_SEC + 5 {
        if f.handle(t0, A, sa(IP_A, 1), &query_frame(&q)).is_ok() {
            sent += 1;
        }
        for (_, p) in upstream_out(&mut f) {
            assert!(up(&mut f, t0, &answered(&p)));
            f.poll_transmit().unwrap();
        }
    }
    assert_eq!(sent, MAX_QUERIES_PER_POD_PER_SEC);
    assert_eq!(f.take_limited(), 5);
    assert_eq!(
        f.handle(t0 + 999, A, sa(IP_A, 1), &query_frame(&q)),
        Err(Rejected::PodRateLimited)
    );
    assert_eq!(
        f.handle(t0 + 1000, A, sa(IP_A, 1), &query_frame(&q)),
        Ok(())
    );
}

/// A response must carry the pending id and the query's question (the name in any ASCII
/// case): a spoofer who guessed the id but not the name, type or class is ignored.
#[test]
fn answers_must_match_the_question_too() {
    let mut f = DnsForwarder::new(SEED, UP);
    let q = query("Example.Test", RecordType::A);
    f.handle(0, A, sa(IP_A, 1), &query_frame(&q)).unwrap();
    let (id, sent) = upstream_out(&mut f).pop().unwrap();
    let forged = |name: &str, ty: RecordType| {
        let mut r = answered(&query(name, ty));
        r[..2].copy_from_slice(&id.to_be_bytes());
        r
    };
    for r in [
        forged("example.tesu", RecordType::A),
        forged("example.test", RecordType::AAAA),
        forged("www.example.test", RecordType::A),
    ] {
        assert!(!up(&mut f, 0, &r));
    }
    // No question at all.
    let mut bare = answered(&sent);
    bare.truncate(12);
    bare[4..6].copy_from_slice(&[0, 0]);
    assert!(!up(&mut f, 0, &bare));
    assert_eq!(f.pending_len(), 1);
    // The name in another case (a 0x20-style echo) matches.
    assert!(up(&mut f, 0, &forged("EXAMPLE.test", RecordType::A)));
    assert_eq!(f.pending_len(), 0);
}

#[test]
fn forwarder_table_and_queue_are_bounded() {
    let mut f = DnsForwarder::new(SEED, UP);
    let q = query("example.test", RecordType::A);
    let frame = query_frame(&q);
    // The transmit queue: the shell drains it after each call.
    for _ in 0..MAX_QUEUED {
        f.handle(0, A, sa(IP_A, 1), &frame).unwrap();
    }
    assert_eq!(
        f.handle(0, A, sa(IP_A, 1), &frame),
        Err(Rejected::QueueFull)
    );
    assert_eq!(
        f.pending_len(),
        MAX_QUEUED,
        "the dropped one is not pending"
    );
    let mut ids: HashSet<u16> = upstream_out(&mut f).into_iter().map(|t| t.0).collect();
    // The pending table, filled by many pods (each under its share and rate).
    let mut i = 0;
    while f.pending_len() < MAX_PENDING {
        let (port, client) = many(i);
        i += 1;
        f.handle(0, port, client, &frame).unwrap();
        ids.extend(upstream_out(&mut f).into_iter().map(|t| t.0));
    }
    assert_eq!(ids.len(), MAX_PENDING, "no id used twice while pending");
    for _ in 0..10 {
        assert_eq!(
            f.handle(1, B, sa(IP_B, 1), &frame),
            Err(Rejected::TableFull)
        );
    }
    assert_eq!(f.poll_transmit(), None);
    assert_eq!(f.take_failed(), 11);
    // Answers free room.
    let id = *ids.iter().next().unwrap();
    let mut r = answered(&q);
    r[..2].copy_from_slice(&id.to_be_bytes());
    assert!(up(&mut f, 2, &r));
    assert!(f.poll_transmit().is_some());
    assert_eq!(f.handle(3, A, sa(IP_A, 1), &frame), Ok(()));
    // A query whose send failed is no longer pending and counts once.
    let (id, _) = upstream_out(&mut f).pop().unwrap();
    f.transmit_failed(id);
    f.transmit_failed(id);
    assert_eq!(f.pending_len(), MAX_PENDING - 1);
    assert_eq!(f.take_failed(), 1);
    // Expiry frees the whole table.
    assert_eq!(f.handle_timeout(TIMEOUT_MS + 3), MAX_PENDING - 1);
    assert_eq!(f.take_failed(), (MAX_PENDING - 1) as u64);
    assert_eq!(f.handle(TIMEOUT_MS + 3, A, sa(IP_A, 1), &frame), Ok(()));
}

proptest! {
    /// Whatever the upstream sends, and whenever: no panic, and only a response carrying a
    /// pending id and its question (with QR, at least a header) is taken, once.
    #[test]
    fn forwarder_survives_garbage_from_upstream(
        dgrams in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..40), any::<bool>(), 0u64..12_000),
            1..40,
        ),
    ) {
        let mut f = DnsForwarder::new(SEED, UP);
        let q = query("example.test", RecordType::A);
        for _ in 0..8 {
            f.handle(0, A, sa(IP_A, 1), &query_frame(&q)).unwrap();
        }
        let ids: Vec<u16> = upstream_out(&mut f).into_iter().map(|t| t.0).collect();
        let mut now = 0;
        let mut taken = HashSet::new();
        for (i, (mut d, use_id, dt)) in dgrams.into_iter().enumerate() {
            now += dt;
            if use_id {
                // A genuine answer to a pending id (its question), with garbage after it.
                let mut r = answered(&q);
                r[..2].copy_from_slice(&ids[i % ids.len()].to_be_bytes());
                r.extend_from_slice(&d);
                d = r;
            }
            let id = (d.len() >= 2).then(|| u16::from_be_bytes([d[0], d[1]]));
            let live = id.filter(|id| ids.contains(id) && !taken.contains(id));
            let response = d.len() >= 12 && d[2] & 0x80 != 0;
            let before = f.pending_len();
            let took = up(&mut f, now, &d);
            prop_assert!(f.pending_len() <= before);
            if took {
                prop_assert!(response && live.is_some() && use_id);
                taken.insert(live.unwrap());
            } else if use_id && live.is_some() {
                prop_assert!(now >= TIMEOUT_MS, "a live answer was ignored");
            }
            if took {
                let t = f.poll_transmit().unwrap();
                prop_assert_eq!(&t.payload[..2], &[0x42, 0x42]);
                prop_assert_eq!(&t.payload[2..], &d[2..]);
            }
            prop_assert_eq!(f.poll_transmit(), None);
            let _ = f.poll_timeout();
        }
    }
}

/// The socket and destination of each upstream datagram queued in `f`, as (id, socket,
/// payload).
fn upstream_sockets(f: &mut DnsForwarder) -> Vec<(u16, usize, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = f.poll_transmit() {
        let Dest::Upstream { id, socket, addr } = t.dest else {
            panic!("{t:?}")
        };
        assert_eq!(addr, UP);
        out.push((id, socket, t.payload.to_vec()));
    }
    out
}

/// An answer must come in on the socket its query left from and from the address and port
/// the query went to: the right id and question on another socket, or from another
/// address or port, is not taken, and counted as unmatched.
#[test]
fn answers_must_come_from_the_upstream_on_the_querys_socket() {
    let mut f = DnsForwarder::new(SEED, UP);
    let q = query("example.test", RecordType::A);
    f.handle(0, A, sa(IP_A, 1), &query_frame(&q)).unwrap();
    let (_, socket, sent) = upstream_sockets(&mut f).pop().unwrap();
    let r = answered(&sent);
    let other_socket = (socket + 1) % f.sockets();
    let wrong = [
        Source {
            socket: other_socket,
            addr: UP,
        },
        Source {
            socket,
            addr: SocketAddrV4::new(*UP.ip(), 5353),
        },
        Source {
            socket,
            addr: SocketAddrV4::new(std::net::Ipv4Addr::new(192, 0, 2, 54), 53),
        },
    ];
    for from in wrong {
        assert!(!f.handle_upstream(0, from, &r), "{from:?}");
    }
    // Another id, and another question, from the right place.
    let mut other_id = r.clone();
    other_id[0] ^= 0x80;
    assert!(!f.handle_upstream(0, Source { socket, addr: UP }, &other_id));
    let mut other_q = answered(&query("example.tesu", RecordType::A));
    other_q[..2].copy_from_slice(&r[..2]);
    assert!(!f.handle_upstream(0, Source { socket, addr: UP }, &other_q));
    assert_eq!(f.poll_transmit(), None);
    assert_eq!(f.take_unmatched(), 5);
    assert_eq!(f.pending_len(), 1);
    assert!(f.handle_upstream(0, Source { socket, addr: UP }, &r));
    assert!(f.poll_transmit().is_some());
    assert_eq!(f.take_unmatched(), 0);
    // The same answer again: unmatched.
    assert!(!f.handle_upstream(0, Source { socket, addr: UP }, &r));
    assert_eq!(f.take_unmatched(), 1);
}

/// Consecutive queries get ids that are not a sequence and leave from sockets spread over
/// the pool.
#[test]
fn ids_are_not_sequential_and_sockets_are_spread() {
    let mut f = DnsForwarder::new(SEED, UP);
    let q = query("example.test", RecordType::A);
    let mut sent = Vec::new();
    for i in 0..128 {
        let (port, client) = many(i);
        f.handle(0, port, client, &query_frame(&q)).unwrap();
        sent.extend(upstream_sockets(&mut f));
    }
    let ids: Vec<u16> = sent.iter().map(|s| s.0).collect();
    let steps = ids
        .windows(2)
        .filter(|w| w[1].wrapping_sub(w[0]) <= 2)
        .count();
    assert!(steps < 3, "sequential ids: {ids:?}");
    let sockets: HashSet<usize> = sent.iter().map(|s| s.1).collect();
    assert!(
        sockets.len() >= f.sockets() * 3 / 4,
        "{} of {} sockets used",
        sockets.len(),
        f.sockets()
    );
    let socket_seq: Vec<usize> = sent.iter().map(|s| s.1).collect();
    let mut g = DnsForwarder::new([9; 16], UP);
    let mut other = Vec::new();
    for i in 0..128 {
        let (port, client) = many(i);
        g.handle(0, port, client, &query_frame(&q)).unwrap();
        other.extend(upstream_sockets(&mut g).into_iter().map(|s| s.1));
    }
    assert_ne!(socket_seq, other, "another key, another socket sequence");
}

/// A socket that carried its queries is retired: it takes no new query while another
/// socket can, and once its last query ends the shell is told to reopen it, once.
#[test]
fn sockets_are_retired_and_reopened_once_idle() {
    let mut f = DnsForwarder::with_sockets(SEED, UP, 2);
    let q = query("example.test", RecordType::A);
    let mut sent = Vec::new();
    let on = |sent: &Vec<(u16, usize, Vec<u8>)>, s: usize| sent.iter().filter(|x| x.1 == s).count();
    let mut i = 0;
    let per = QUERIES_PER_SOCKET as usize;
    while on(&sent, 0) < per && on(&sent, 1) < per {
        let (port, client) = many(i);
        i += 1;
        f.handle(0, port, client, &query_frame(&q)).unwrap();
        sent.extend(upstream_sockets(&mut f));
    }
    let full = if on(&sent, 0) == per { 0 } else { 1 };
    let before = on(&sent, 1 - full);
    assert!(before < per);
    // Until the other one retires too, everything goes to the other one.
    let more = per - before;
    for _ in 0..more {
        let (port, client) = many(i);
        i += 1;
        f.handle(0, port, client, &query_frame(&q)).unwrap();
        sent.extend(upstream_sockets(&mut f));
    }
    assert_eq!(on(&sent, full), per, "no more on a retired socket");
    assert_eq!(on(&sent, 1 - full), per);
    assert_eq!(f.poll_reopen(), None, "its queries are still pending");
    let mut answers: Vec<_> = sent.iter().filter(|x| x.1 == full).collect();
    let last = answers.pop().unwrap();
    for (_, s, p) in answers {
        assert!(f.handle_upstream(
            1,
            Source {
                socket: *s,
                addr: UP
            },
            &answered(p)
        ));
        assert!(f.poll_transmit().is_some());
        assert_eq!(f.poll_reopen(), None);
    }
    assert!(f.handle_upstream(
        1,
        Source {
            socket: last.1,
            addr: UP
        },
        &answered(&last.2)
    ));
    assert!(f.poll_transmit().is_some());
    assert_eq!(f.poll_reopen(), Some(full));
    assert_eq!(f.poll_reopen(), None);
    // The reopened socket takes queries again (the other one is retired now).
    let mut used = HashSet::new();
    for i in i..i + 40 {
        let (port, client) = many(i);
        f.handle(1, port, client, &query_frame(&q)).unwrap();
        used.extend(upstream_sockets(&mut f).into_iter().map(|s| s.1));
    }
    assert_eq!(used, HashSet::from([full]));
    // Expiry ends queries too: the other socket, retired, is reopened when its queries
    // expire.
    f.handle_timeout(1 + TIMEOUT_MS);
    let mut reopened: Vec<usize> = std::iter::from_fn(|| f.poll_reopen()).collect();
    reopened.sort();
    assert!(reopened.contains(&(1 - full)), "{reopened:?}");
}
