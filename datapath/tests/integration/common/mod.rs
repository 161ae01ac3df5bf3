//! Test fixtures: a node owning 198.18.1.0/24 with pods A (.2) and B (.3) and one peer
//! (node 2: 198.18.2.0/24 behind underlay 198.19.0.2), plus frame builders.
#![allow(dead_code)]

pub mod golden;
pub mod svc;

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, PacketBuilder, SlicedPacket, TcpHeader, TcpOptionElement,
};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use vswitch_datapath::buf::{VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4};
use vswitch_datapath::*;

pub const A: PortId = PortId::new(1);
pub const B: PortId = PortId::new(2);
pub const PEER: PeerId = PeerId::new(7);
pub const MTU: u16 = 1450;
pub const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
pub const GW: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const VTEP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 0);
/// A pod on the peer node.
pub const IP_R: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 5);
/// The peer's underlay address.
pub const UNDERLAY: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

/// The prefix `a/len` (the datapath parses no text; tests build values directly).
pub fn cidr(a: [u8; 4], len: u8) -> Ipv4Cidr {
    Ipv4Cidr::new(Ipv4Addr::from(a), len).expect("prefix length at most 32")
}

pub fn mac_a() -> Mac {
    Mac::from_ipv4(IP_A)
}
pub fn mac_b() -> Mac {
    Mac::from_ipv4(IP_B)
}
pub fn router() -> Mac {
    Mac::from_ipv4(GW)
}
pub fn vtep_mac() -> Mac {
    Mac::from_ipv4(VTEP)
}
pub fn peer_vtep_mac() -> Mac {
    Mac::from_ipv4(Ipv4Addr::new(198, 18, 2, 0))
}
pub fn peer_src() -> SocketAddrV4 {
    SocketAddrV4::new(UNDERLAY, 4789)
}

pub struct Node {
    pub dp: Datapath,
    pub a: Arc<LinkCounters>,
    pub b: Arc<LinkCounters>,
    pub peer: Arc<LinkCounters>,
}

pub fn config() -> NodeConfig {
    NodeConfig::for_subnet(cidr([198, 18, 1, 0], 24), MTU)
}

pub fn node() -> Node {
    node_with(config())
}

/// [`node`] with another configuration (rate limits, for instance).
pub fn node_with(cfg: NodeConfig) -> Node {
    let n = Node {
        dp: Datapath::new(cfg),
        a: Arc::default(),
        b: Arc::default(),
        peer: Arc::default(),
    };
    let ports = vec![
        PortEntry {
            id: A,
            mac: mac_a(),
            ip: IP_A,
            counters: n.a.clone(),
        },
        PortEntry {
            id: B,
            mac: mac_b(),
            ip: IP_B,
            counters: n.b.clone(),
        },
    ];
    let peers = vec![PeerEntry {
        id: PEER,
        underlay: UNDERLAY,
        pod_cidr: cidr([198, 18, 2, 0], 24),
        vtep_mac: peer_vtep_mac(),
        counters: n.peer.clone(),
    }];
    n.dp.install(Tables::new(ports, peers));
    n
}

impl Node {
    /// Runs `frame` (with `vnet`) through `from_port`.
    pub fn port(&self, in_port: PortId, frame: &[u8], vnet: VnetHdr) -> (Verdict, PacketBuf) {
        self.port_at(in_port, frame, vnet, 0)
    }

    /// Runs a UDP payload (VXLAN header + inner frame) through `from_tunnel`.
    pub fn tunnel(&self, src: SocketAddrV4, dgram: &[u8]) -> (Verdict, PacketBuf) {
        let mut pkt = PacketBuf::new();
        pkt.udp_read_region()[..dgram.len()].copy_from_slice(dgram);
        pkt.set_udp_read_len(dgram.len());
        let t = self.dp.tables();
        let v = self.dp.from_tunnel(&t, src, &mut pkt, 0);
        (v, pkt)
    }

    pub fn drops(&self, r: DropReason) -> u64 {
        self.dp.counters().drops(r)
    }
}

pub fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Relaxed)
}

/// An IPv4 header with explicit DF and identification.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, df: bool, id: u16) -> IpHeaders {
    let mut h = Ipv4Header::new(0, ttl, IpNumber(0), src.octets(), dst.octets()).unwrap();
    h.dont_fragment = df;
    h.identification = id;
    IpHeaders::Ipv4(h, Default::default())
}

/// Ethernet + IPv4 + UDP frame.
#[allow(clippy::too_many_arguments)]
pub fn udp_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    df: bool,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ip(ipv4(src, dst, ttl, df, 0x4242))
        .udp(5353, 7);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

/// Ethernet + IPv4 + TCP (ACK|PSH) frame.
pub fn tcp_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ip(ipv4(src, dst, 64, true, 0x1000))
        .tcp(40000, 80, 1000, 64240)
        .ack(77)
        .psh();
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

/// Ethernet + ARP frame (Ethernet/IPv4 hardware and protocol types).
pub fn arp_frame(
    eth_src: Mac,
    eth_dst: Mac,
    op: u16,
    sha: Mac,
    spa: Ipv4Addr,
    tha: Mac,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst.0);
    f.extend_from_slice(&eth_src.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha.0);
    f.extend_from_slice(&tpa.octets());
    f
}

/// Asserts that the IPv4 header checksum and the L4 (TCP/UDP/ICMP) checksum of an Ethernet
/// frame verify.
pub fn assert_checksums(frame: &[u8]) {
    let p = SlicedPacket::from_ethernet(frame).expect("parses");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header();
    assert_eq!(
        h.header_checksum(),
        h.to_header().calc_header_checksum(),
        "ip checksum"
    );
    match &p.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => {
            let c = t.calc_checksum_ipv4(h.source(), h.destination()).unwrap();
            assert_eq!(t.checksum(), c, "tcp checksum");
        }
        Some(etherparse::TransportSlice::Udp(u)) => {
            let c = u
                .to_header()
                .calc_checksum_ipv4(&h.to_header(), u.payload())
                .unwrap();
            assert_eq!(u.checksum(), c, "udp checksum");
        }
        Some(etherparse::TransportSlice::Icmpv4(i)) => {
            let c = i.header().icmp_type.calc_checksum(i.payload());
            assert_eq!(i.checksum(), c, "icmp checksum");
        }
        _ => {}
    }
}

/// The port id of pod R (198.18.2.5) on node 2.
pub const R: PortId = PortId::new(1);
/// Node 1's underlay address.
pub const UNDERLAY1: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

/// Node 2 (198.18.2.0/24) with pod R, whose only peer is node 1: the other end of the tunnel.
/// Its `a` counters are R's, `peer` those of node 1.
pub fn node2() -> Node {
    let n = Node {
        dp: Datapath::new(NodeConfig::for_subnet(cidr([198, 18, 2, 0], 24), MTU)),
        a: Arc::default(),
        b: Arc::default(),
        peer: Arc::default(),
    };
    let ports = vec![PortEntry {
        id: R,
        mac: Mac::from_ipv4(IP_R),
        ip: IP_R,
        counters: n.a.clone(),
    }];
    let peers = vec![PeerEntry {
        id: PeerId::new(1),
        underlay: UNDERLAY1,
        pod_cidr: cidr([198, 18, 1, 0], 24),
        vtep_mac: vtep_mac(),
        counters: n.peer.clone(),
    }];
    n.dp.install(Tables::new(ports, peers));
    n
}

/// `frame` with its TTL lowered by `by` and the IP checksum recomputed (the expected result
/// of `by` router hops).
pub fn ip_after_hops(ip_packet: &[u8], by: u8) -> Vec<u8> {
    let mut p = ip_packet.to_vec();
    p[8] -= by;
    p[10] = 0;
    p[11] = 0;
    let hlen = usize::from(p[0] & 0xf) * 4;
    let mut s: u32 = p[..hlen]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    p[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    p
}

/// The folded (not complemented) pseudo-header sum a kernel leaves in a partial checksum.
pub fn pseudo(frame: &[u8], l4_len: usize, proto: u8) -> [u8; 2] {
    let mut s: u32 = frame[26..34]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    s += u32::from(proto) + l4_len as u32;
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    (s as u16).to_be_bytes()
}

/// A TCPv4 super-frame from pod A to pod R (node 2), as a TAP with TSO hands it over:
/// timestamps option, partial checksum.
pub fn tso_frame(payload: &[u8], flags: u8, id: u16, seq: u32) -> Vec<u8> {
    let mut tcp = TcpHeader::new(40000, 80, seq, 64240);
    tcp.ack = true;
    tcp.acknowledgment_number = 9;
    tcp.set_options(&[
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(7, 8),
    ])
    .unwrap();
    let b = PacketBuilder::ethernet2(mac_a().0, router().0)
        .ip(ipv4(IP_A, IP_R, 64, true, id))
        .tcp_header(tcp);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v[47] |= flags;
    let p = pseudo(&v, v.len() - 34, 6);
    v[50..52].copy_from_slice(&p);
    v
}

pub fn tso_vnet(mss: u16) -> VnetHdr {
    VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        gso_type: VNET_GSO_TCPV4,
        hdr_len: 66,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
    }
}
