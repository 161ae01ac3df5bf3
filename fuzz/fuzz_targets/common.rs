//! The node the datapath targets run against: 198.18.1.0/24 with pods A (port 1, .2) and B
//! (port 2, .3), one peer (node 2, 198.18.2.0/24 behind 198.19.0.2). Port 3 is unknown.
//! Services (198.19.96.0/20, DNS at .10): 198.19.96.20:80/tcp -> B:8080 and 198.18.2.5:8080,
//! 198.19.96.20:53/udp -> A:5353 (hairpin for A; ClientIP affinity, 60 s),
//! 198.19.96.21:80/tcp without endpoints;
//! conntrack holds at most 64 connections, so eviction is exercised too.
//!
//! Every input gets a fresh node ([`datapath`]): nothing an input leaves in conntrack, the
//! balancer or the counters reaches the next one, so a crash replays from its input alone.
//! Time is part of the input: [`Input`] reads `now_ms` from the first 8 bytes
//! (little-endian), then up to [`MAX_PACKETS`] packets, each
//! `[dt_ms: u16 LE][len: u16 LE][selector][virtio-net header, 10 bytes LE][bytes...]`
//! (`len` counts what follows it, cut to what is left; each packet is handled at the
//! previous one's time plus `dt_ms`), so a connection's packets, its timeouts and
//! conntrack's eviction are all in reach of one input.

// Each target uses a part of it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use vswitch_datapath::*;

pub const PEER_UNDERLAY: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
/// Pod A's port.
pub const A: PortId = PortId::new(1);
/// Pod B's port.
pub const B: PortId = PortId::new(2);
/// The peer (node 2).
pub const PEER: PeerId = PeerId::new(7);

/// How many packets one input drives at most.
pub const MAX_PACKETS: usize = 8;

/// The prefix `a/len` (the datapath parses no text; values are built directly).
pub fn cidr(a: [u8; 4], len: u8) -> Ipv4Cidr {
    Ipv4Cidr::new(Ipv4Addr::from(a), len).expect("prefix length at most 32")
}

/// A fresh node with the tables above installed.
pub fn datapath() -> Datapath {
    let mut cfg = NodeConfig::for_subnet(cidr([198, 18, 1, 0], 24), 1450);
    cfg.service_cidr = Some(cidr([198, 19, 96, 0], 20));
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
        port(A, Ipv4Addr::new(198, 18, 1, 2)),
        port(B, Ipv4Addr::new(198, 18, 1, 3)),
    ];
    let peers = vec![PeerEntry {
        id: PEER,
        underlay: PEER_UNDERLAY,
        pod_cidr: cidr([198, 18, 2, 0], 24),
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
        ServiceEntry {
            affinity_ms: Some(60_000),
            ..svc(vip, 53, L4Proto::Udp, vec![ep(198, 18, 1, 2, 5353)])
        },
        svc(Ipv4Addr::new(198, 19, 96, 21), 80, L4Proto::Tcp, vec![]),
    ];
    let dns = vec![DnsEntry {
        name: "web".into(),
        namespace: "default".into(),
        vip,
    }];
    dp.install(Tables::new(ports, peers).with_services(services, dns));
    dp
}

/// Reads a little-endian `u64` from the first 8 bytes of `data`, and the rest.
pub fn take_u64(data: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = data.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}

/// One packet of an input: when it is handled, its selector, vnet header and bytes.
pub struct Packet<'a> {
    pub now_ms: u64,
    pub sel: u8,
    pub vnet: VnetHdr,
    /// The vnet header and what follows it (a TAP read's bytes).
    pub tap: &'a [u8],
    /// What follows the vnet header.
    pub bytes: &'a [u8],
}

/// The packets of an input (see the module comment).
pub struct Input<'a> {
    now_ms: u64,
    rest: &'a [u8],
    left: usize,
}

impl<'a> Input<'a> {
    /// `None` when the input is shorter than its clock.
    pub fn new(data: &'a [u8]) -> Option<Self> {
        let (now_ms, rest) = take_u64(data)?;
        Some(Input {
            now_ms,
            rest,
            left: MAX_PACKETS,
        })
    }
}

impl<'a> Iterator for Input<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        self.left = self.left.checked_sub(1)?;
        let (hdr, rest) = self.rest.split_first_chunk::<4>()?;
        let dt = u64::from(u16::from_le_bytes([hdr[0], hdr[1]]));
        let len = usize::from(u16::from_le_bytes([hdr[2], hdr[3]])).min(rest.len());
        let (body, rest) = rest.split_at(len);
        self.rest = rest;
        self.now_ms = self.now_ms.saturating_add(dt);
        let (&sel, tap) = body.split_first()?;
        let vnet = VnetHdr::parse(tap)?;
        Some(Packet {
            now_ms: self.now_ms,
            sel,
            vnet,
            tap,
            bytes: &tap[VNET_HDR_LEN..],
        })
    }
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
        assert_eq!(*peer, PEER);
        assert_eq!(*dst, SocketAddrV4::new(PEER_UNDERLAY, 4789));
        assert_eq!(
            VxlanHdr::parse(pkt.frame()),
            Ok(VxlanHdr {
                vni: dp.config().vni
            })
        );
    }
}

/// The port of the local pod with address `ip` (A: 1, B: 2).

pub fn port_of(ip: Ipv4Addr) -> Option<PortId> {
    match ip.octets() {
        [198, 18, 1, 2] => Some(A),
        [198, 18, 1, 3] => Some(B),
        _ => None,
    }
}

/// An Ethernet + IPv4 (valid header checksum) frame from `src_mac` to the gateway carrying
/// a TCP ACK (checksum 0) or an empty UDP datagram from `src` to `dst`.

pub fn l4_frame(proto: L4Proto, src_mac: Mac, src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let (ip_proto, l4_len) = match proto {
        L4Proto::Tcp => (6u8, 20usize),
        L4Proto::Udp => (17, 8),
    };
    let total = (20 + l4_len) as u16;
    let mut f = Vec::with_capacity(14 + usize::from(total));
    f.extend_from_slice(&Mac::from_ipv4(Ipv4Addr::new(198, 18, 1, 1)).0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, ip_proto, 0, 0]);
    f.extend_from_slice(&src.ip().octets());
    f.extend_from_slice(&dst.ip().octets());
    fix_ip_checksum(&mut f);
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    match proto {
        // seq 1, ack 1, data offset 5, ACK, window 64240, checksum 0.
        L4Proto::Tcp => {
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xfa, 0xf0, 0, 0, 0, 0])
        }
        L4Proto::Udp => f.extend_from_slice(&[0, 8, 0, 0]),
    }
    f
}

/// Sets the header checksum of the 20-byte IPv4 header of the Ethernet frame `f`.
pub fn fix_ip_checksum(f: &mut [u8]) {
    f[24..26].fill(0);
    let mut s: u32 = f[14..34]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    f[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
}
