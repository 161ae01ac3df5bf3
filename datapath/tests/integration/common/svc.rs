//! Service fixtures: node 1 with the service range 198.19.96.0/20, the cluster DNS at
//! 198.19.96.10, and builders for TCP/UDP frames between socket addresses.
#![allow(dead_code)]

use super::*;
use etherparse::{PacketBuilder, TcpHeader, TransportSlice};

pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 96, 10);
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 96, 20);
pub const VIP2: Ipv4Addr = Ipv4Addr::new(198, 19, 96, 21);
/// A second pod on node 2.
pub const IP_R2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 6);

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

pub fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

/// Node 1's configuration with services and DNS, and at most `ct_max` connections.
pub fn svc_config(ct_max: usize) -> NodeConfig {
    let mut c = config();
    c.service_cidr = Some(cidr([198, 19, 96, 0], 20));
    c.dns_ip = Some(DNS_IP);
    c.ct_max = ct_max;
    c
}

/// Node 1 (pods A, B, peer node 2) with `services` installed.
pub fn svc_node(ct_max: usize, services: Vec<ServiceEntry>, dns: Vec<DnsEntry>) -> Node {
    let n = Node {
        dp: Datapath::new(svc_config(ct_max)),
        a: Arc::default(),
        b: Arc::default(),
        peer: Arc::default(),
    };
    n.set_services(services, dns);
    n
}

/// A service port.
pub fn svc(
    vip: Ipv4Addr,
    port: u16,
    proto: L4Proto,
    eps: &[SocketAddrV4],
    affinity_ms: Option<u64>,
) -> ServiceEntry {
    ServiceEntry {
        vip,
        port,
        proto,
        endpoints: eps.to_vec(),
        affinity_ms,
    }
}

impl Node {
    /// Installs the usual ports and peer with `services`.
    pub fn set_services(&self, services: Vec<ServiceEntry>, dns: Vec<DnsEntry>) {
        self.dp.install(self.tables_with(services, dns));
    }

    /// The usual ports and peer with `services`, as a snapshot not installed.
    pub fn tables_with(&self, services: Vec<ServiceEntry>, dns: Vec<DnsEntry>) -> Tables {
        let port = |id, ip, counters: &Arc<LinkCounters>| PortEntry {
            id,
            mac: Mac::from_ipv4(ip),
            ip,
            counters: counters.clone(),
        };
        let ports = vec![port(A, IP_A, &self.a), port(B, IP_B, &self.b)];
        let peers = vec![PeerEntry {
            id: PEER,
            underlay: UNDERLAY,
            pod_cidr: cidr([198, 18, 2, 0], 24),
            vtep_mac: peer_vtep_mac(),
            counters: self.peer.clone(),
        }];
        Tables::new(ports, peers).with_services(services, dns)
    }

    /// `from_port` at time `now`.
    pub fn port_at(
        &self,
        in_port: PortId,
        frame: &[u8],
        vnet: VnetHdr,
        now: u64,
    ) -> (Verdict, PacketBuf) {
        let mut pkt = PacketBuf::from_frame(frame);
        pkt.vnet = vnet;
        let t = self.dp.tables();
        let v = self.dp.from_port(&t, in_port, &mut pkt, now);
        (v, pkt)
    }

    /// `from_tunnel` at time `now`.
    pub fn tunnel_at(&self, src: SocketAddrV4, dgram: &[u8], now: u64) -> (Verdict, PacketBuf) {
        let mut pkt = PacketBuf::new();
        pkt.udp_read_region()[..dgram.len()].copy_from_slice(dgram);
        pkt.set_udp_read_len(dgram.len());
        let t = self.dp.tables();
        let v = self.dp.from_tunnel(&t, src, &mut pkt, now);
        (v, pkt)
    }
}

/// Ethernet + IPv4 (TTL `ttl`, DF, id 0x1234) + TCP segment with `flags`, window 64240.
#[allow(clippy::too_many_arguments)]
pub fn tcp_seg(
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    tcp_seg_ttl(src_mac, dst_mac, src, dst, flags, seq, ack, payload, 64)
}

#[allow(clippy::too_many_arguments)]
pub fn tcp_seg_ttl(
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
    ttl: u8,
) -> Vec<u8> {
    let mut tcp = TcpHeader::new(src.port(), dst.port(), seq, 64240);
    tcp.acknowledgment_number = ack;
    tcp.fin = flags & FIN != 0;
    tcp.syn = flags & SYN != 0;
    tcp.rst = flags & RST != 0;
    tcp.psh = flags & PSH != 0;
    tcp.ack = flags & ACK != 0;
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ip(ipv4(*src.ip(), *dst.ip(), ttl, true, 0x1234))
        .tcp_header(tcp);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// Ethernet + IPv4 (TTL `ttl`, DF, id 0x4242) + UDP datagram.
pub fn udp_dgram(
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    ttl: u8,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ip(ipv4(*src.ip(), *dst.ip(), ttl, true, 0x4242))
        .udp(src.port(), dst.port());
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// The addresses of a TCP or UDP frame: (source, destination, TCP flags).
pub fn addrs(frame: &[u8]) -> (SocketAddrV4, SocketAddrV4, u8) {
    let p = SlicedPacket::from_ethernet(frame).expect("parses");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header();
    let (s, d) = (h.source_addr(), h.destination_addr());
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let flags = frame[ETH_LEN_T + usize::from(h.ihl()) * 4 + 13];
            (sa(s, t.source_port()), sa(d, t.destination_port()), flags)
        }
        Some(TransportSlice::Udp(u)) => (sa(s, u.source_port()), sa(d, u.destination_port()), 0),
        _ => panic!("not tcp/udp"),
    }
}

const ETH_LEN_T: usize = 14;

/// The inner frame of a `ToTunnel` buffer.
pub fn inner(pkt: &PacketBuf) -> &[u8] {
    &pkt.frame()[8..]
}

/// Where a forwarded packet went: its destination (from the frame) and the verdict.
pub fn dst_of(v: &Verdict, pkt: &PacketBuf) -> SocketAddrV4 {
    match v {
        Verdict::ToPort(_) => addrs(pkt.frame()).1,
        Verdict::ToTunnel { .. } => addrs(inner(pkt)).1,
        Verdict::Drop(r) => panic!("dropped: {r:?}"),
        Verdict::DnsForward { .. } => panic!("handed to the DNS forwarder: {v:?}"),
    }
}
