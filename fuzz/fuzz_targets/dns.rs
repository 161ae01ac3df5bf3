//! Input: `[now_ms: 8 bytes LE][payload]`, each input on fresh nodes (no state from the
//! inputs before). Arbitrary bytes as the UDP payload of a query from pod A (port 1) to the
//! cluster DNS (198.19.96.10:53) through `from_port`. Nothing may panic; the datagram is
//! either answered in place (a DNS response to the same id, from dns_ip:53, within the UDP
//! size limit) or dropped as `DnsMalformed`. The same query on a node forwarding to an
//! upstream resolver is answered or dropped the same way, or handed to the forwarder with
//! the frame untouched; a forwarded query's (fuzzed) response makes a well-formed datagram
//! for the pod.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch_datapath::*;

const POD: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(198, 19, 96, 10);

/// A fresh node per input (see the module comment); `dns_forward` sends names outside the
/// cluster to the upstream resolver.
fn datapath(dns_forward: bool) -> Datapath {
    let mut cfg = NodeConfig::for_subnet(common::cidr([198, 18, 1, 0], 24), 1450);
    cfg.service_cidr = Some(common::cidr([198, 19, 96, 0], 20));
    cfg.dns_ip = Some(DNS);
    cfg.dns_forward = dns_forward;
    let dp = Datapath::new(cfg);
    let ports = vec![PortEntry {
        id: common::A,
        mac: Mac::from_ipv4(POD),
        ip: POD,
        counters: Arc::default(),
    }];
    let dns = |name: &str, namespace: &str, last| DnsEntry {
        name: name.into(),
        namespace: namespace.into(),
        vip: Ipv4Addr::new(198, 19, 96, last),
    };
    let tables = Tables::new(ports, vec![]).with_services(
        vec![],
        vec![
            dns("nginx-service", "default", 20),
            dns("api", "prod", 21),
            dns("dup", "a", 22),
            dns("dup", "b", 23),
        ],
    );
    dp.install(tables);
    dp
}

/// Ethernet + IPv4 + UDP (checksum 0) from the pod to the DNS address around `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&Mac::from_ipv4(Ipv4Addr::new(198, 18, 1, 1)).0);
    f.extend_from_slice(&Mac::from_ipv4(POD).0);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&POD.octets());
    f.extend_from_slice(&DNS.octets());
    common::fix_ip_checksum(&mut f);
    f.extend_from_slice(&5353u16.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fuzz_target!(|input: &[u8]| {
    let Some((head, data)) = input.split_first_chunk::<8>() else {
        return;
    };
    let now_ms = u64::from_le_bytes(*head);
    if data.len() > 65535 - 28 {
        return;
    }
    let query = frame(data);
    let dp = datapath(false);
    let mut pkt = PacketBuf::from_frame(&query);
    let tables = dp.tables();
    let v = dp.from_port(&tables, common::A, &mut pkt, now_ms);
    check(v, &pkt, data, false);

    let dp = datapath(true);
    let mut pkt = PacketBuf::from_frame(&query);
    let tables = dp.tables();
    let v = dp.from_port(&tables, common::A, &mut pkt, now_ms);
    check(v, &pkt, data, true);
    if let Verdict::DnsForward { port, client } = v {
        assert_eq!(pkt.frame(), &query[..], "the query frame untouched");
        assert_eq!(dns_query_payload(pkt.frame()), Some(data));
        // The fuzzed bytes as the upstream's response.
        let v = dp.dns_upstream_reply(&tables, port, client, data, &mut pkt);
        match v {
            Verdict::ToPort(common::A) => {
                let f = pkt.frame();
                assert_eq!(&f[42..], data);
                assert_eq!(&f[36..38], &5353u16.to_be_bytes());
            }
            Verdict::Drop(r) => {
                assert_eq!(r, DropReason::DnsUpstreamFailed);
                assert!(data.len() < 12);
            }
            v => panic!("unexpected {v:?}"),
        }
    }
});

fn check(v: Verdict, pkt: &PacketBuf, data: &[u8], forwarding: bool) {
    match v {
        Verdict::ToPort(p) => {
            assert_eq!(p, common::A);
            let f = pkt.frame();
            assert!(f.len() >= 14 + 28 + 12, "a DNS header at least");
            assert_eq!(&f[26..30], &DNS.octets(), "from the DNS address");
            assert_eq!(&f[34..36], &53u16.to_be_bytes());
            assert_eq!(&f[36..38], &5353u16.to_be_bytes());
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            assert_eq!(total + 14, f.len());
            let msg = &f[42..];
            assert!(msg.len() <= 1232, "within the advertised UDP size");
            assert_eq!(&msg[..2], &data[..2], "the query's id");
            assert!(msg[2] & 0x80 != 0, "a response");
        }
        Verdict::Drop(r) => assert_eq!(r, DropReason::DnsMalformed),
        Verdict::ToTunnel { .. } => panic!("a DNS query never goes into the tunnel"),
        Verdict::DnsForward { port, client } => {
            assert!(forwarding, "forwarded although forwarding is off");
            assert_eq!(port, common::A);
            assert_eq!(client, std::net::SocketAddrV4::new(POD, 5353));
        }
    }
}
