//! The node both targets run against: 198.18.1.0/24 with pods A (port 1, .2) and B (port 2,
//! .3), one peer (node 2, 198.18.2.0/24 behind 198.19.0.2). Port 3 is unknown. Services
//! (198.19.96.0/20, DNS at .10): 198.19.96.20:80/tcp -> B:8080 and 198.18.2.5:8080,
//! 198.19.96.20:53/udp -> A:5353 (hairpin for A), 198.19.96.21:80/tcp without endpoints;
//! conntrack holds at most 64 connections, so eviction is exercised too.
//!
//! Input layout for both targets: `[selector][virtio-net header, 10 bytes LE][bytes...]`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, OnceLock};
use vswitch_datapath::*;

pub const PEER_UNDERLAY: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

pub fn datapath() -> &'static Datapath {
    static DP: OnceLock<Datapath> = OnceLock::new();
    DP.get_or_init(|| {
        let mut cfg = NodeConfig::for_subnet("198.18.1.0/24".parse().unwrap(), 1450);
        cfg.service_cidr = Some("198.19.96.0/20".parse().unwrap());
        cfg.dns_ip = Some(Ipv4Addr::new(198, 19, 96, 10));
        cfg.ct_max = 64;
        let dp = Datapath::new(cfg);
        let port = |id, ip: Ipv4Addr| PortEntry {
            id,
            mac: Mac::from_ipv4(ip),
            ip,
            counters: Arc::default(),
        };
        let ports = vec![
            port(1, Ipv4Addr::new(198, 18, 1, 2)),
            port(2, Ipv4Addr::new(198, 18, 1, 3)),
        ];
        let peers = vec![PeerEntry {
            id: 7,
            underlay: PEER_UNDERLAY,
            pod_cidr: "198.18.2.0/24".parse().unwrap(),
            vtep_mac: Mac::from_ipv4(Ipv4Addr::new(198, 18, 2, 0)),
            counters: Arc::default(),
        }];
        let vip = Ipv4Addr::new(198, 19, 96, 20);
        let ep = |a, b, c, d, port| SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port);
        let svc = |vip, port, proto, endpoints| ServiceEntry {
            vip,
            port,
            proto,
            endpoints,
            affinity_ms: None,
        };
        let services = vec![
            svc(
                vip,
                80,
                L4Proto::Tcp,
                vec![ep(198, 18, 1, 3, 8080), ep(198, 18, 2, 5, 8080)],
            ),
            svc(vip, 53, L4Proto::Udp, vec![ep(198, 18, 1, 2, 5353)]),
            svc(Ipv4Addr::new(198, 19, 96, 21), 80, L4Proto::Tcp, vec![]),
        ];
        let dns = vec![DnsEntry {
            name: "web".into(),
            namespace: "default".into(),
            vip,
        }];
        dp.install(Tables::new(ports, peers).with_services(services, dns));
        dp
    })
}

/// Splits an input into (selector, vnet header, rest).
pub fn split(data: &[u8]) -> Option<(u8, VnetHdr, &[u8])> {
    let (&sel, rest) = data.split_first()?;
    let vnet = VnetHdr::parse(rest)?;
    Some((sel, vnet, &rest[VNET_HDR_LEN..]))
}

/// Checks what `segment_for_tunnel` promises about its output.
pub fn segment_and_check(dp: &Datapath, pkt: &PacketBuf, out: &mut Vec<u8>) {
    if let Ok((stride, count)) = dp.segment_for_tunnel(pkt, out) {
        assert!(stride > 0 && count > 0);
        assert!(out.len() > (count - 1) * stride, "short output");
        assert!(out.len() <= count * stride, "long output");
        for d in out.chunks(stride) {
            assert!(
                VxlanHdr::parse(d).is_ok(),
                "every datagram starts with VXLAN"
            );
        }
    } else {
        assert!(out.is_empty());
    }
}

/// A ToTunnel verdict's buffer must start with our VXLAN header and go to the peer.
pub fn check_to_tunnel(dp: &Datapath, v: &Verdict, pkt: &PacketBuf) {
    if let Verdict::ToTunnel { peer, dst } = v {
        assert_eq!(*peer, 7);
        assert_eq!(*dst, SocketAddrV4::new(PEER_UNDERLAY, 4789));
        assert_eq!(
            VxlanHdr::parse(pkt.frame()),
            Ok(VxlanHdr {
                vni: dp.config().vni
            })
        );
    }
}
