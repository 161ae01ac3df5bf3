//! Small value types: MAC addresses, IPv4 prefixes, node configuration.
//!
//! Values only, no parsing: text is turned into these types by the one validation
//! implementation (`vswitch_proto::validate`, then the daemon's `checked`), so there is a
//! single place that decides what a MAC or a CIDR may look like. `Display` stays here.

use crate::ratelimit::RateLimit;
use std::fmt;
use std::net::Ipv4Addr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// True for group (multicast or broadcast) addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// A locally administered unicast MAC derived from an IPv4 address, as Kubernetes'
    /// bridge plugins derive pod MACs: `0a:58:a:b:c:d`.
    pub fn from_ipv4(ip: Ipv4Addr) -> Mac {
        let o = ip.octets();
        Mac([0x0a, 0x58, o[0], o[1], o[2], o[3]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An IPv4 prefix (network address and length), e.g. 198.18.1.0/24.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Cidr {
    /// A prefix; host bits of `addr` are cleared. `None` when `len > 32`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Ipv4Cidr> {
        if len > 32 {
            return None;
        }
        let mask = Self::mask_of(len);
        Some(Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    fn mask_of(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True when `ip` lies inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.len) == u32::from(self.addr)
    }

    /// The `n`-th address of the prefix (`nth(1)` is the gateway); `None` past the end.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.len));
        if u64::from(n) >= size {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.addr) + n))
    }

    /// The broadcast address of the prefix.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !Self::mask_of(self.len))
    }

    /// True when the two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// What the datapath knows about its own node. Fixed for the daemon's lifetime.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's pod subnet.
    pub pod_cidr: Ipv4Cidr,
    /// The pods' gateway: `.1` of the subnet, answered by the switch.
    pub gateway: Ipv4Addr,
    /// The MAC answering for the gateway.
    pub router_mac: Mac,
    /// The node's VTEP address: `.0` of the subnet (flannel's convention).
    pub vtep_ip: Ipv4Addr,
    /// The MAC used as inner source on frames sent into the tunnel.
    pub vtep_mac: Mac,
    /// MTU of the pods' interfaces (underlay MTU - 50).
    pub pod_mtu: u16,
    /// VXLAN network identifier.
    pub vni: u32,
    /// VXLAN UDP destination port.
    pub vxlan_port: u16,
    /// The service (ClusterIP) range: frames routed to an address inside it are service
    /// traffic (NATed, or dropped when no service matches).
    pub service_cidr: Option<Ipv4Cidr>,
    /// The cluster DNS address the switch answers on (UDP port 53).
    pub dns_ip: Option<Ipv4Addr>,
    /// The cluster DNS domain (`cluster.local`), without a trailing dot.
    pub cluster_domain: String,
    /// Whether the shell forwards queries for names the cluster DNS does not serve to an
    /// upstream resolver ([`crate::Verdict::DnsForward`]); when false they are answered
    /// REFUSED.
    pub dns_forward: bool,
    /// Most connections conntrack holds at once.
    pub ct_max: usize,
    /// Most connections one client pod holds in conntrack (its share of `ct_max`).
    pub ct_pod_max: usize,
    /// Per-port limit of ARP packets (requests are answered by the switch).
    pub arp_limit: RateLimit,
    /// Per-port limit of broadcast/multicast frames other than ARP.
    pub broadcast_limit: RateLimit,
    /// The key of the switch's unpredictable choices (hairpin SNAT source ports): the shell
    /// fills it from the OS's random source at startup; tests choose it.
    pub secret: [u8; 16],
}

impl NodeConfig {
    /// The configuration of a node owning `pod_cidr` with pods at `pod_mtu`: gateway `.1`,
    /// VTEP `.0`, router and VTEP MACs derived from those addresses, VNI 1, port 4789, no
    /// service CIDR nor DNS address, domain `cluster.local`, no DNS forwarding, 65536
    /// connections (4096 per pod), the default ARP and broadcast rate limits, an all-zero secret.
    pub fn for_subnet(pod_cidr: Ipv4Cidr, pod_mtu: u16) -> NodeConfig {
        let gateway = pod_cidr.nth(1).unwrap_or(pod_cidr.network());
        let vtep_ip = pod_cidr.network();
        NodeConfig {
            pod_cidr,
            gateway,
            router_mac: Mac::from_ipv4(gateway),
            vtep_ip,
            vtep_mac: Mac::from_ipv4(vtep_ip),
            pod_mtu,
            vni: 1,
            vxlan_port: 4789,
            service_cidr: None,
            dns_ip: None,
            cluster_domain: "cluster.local".to_string(),
            dns_forward: false,
            ct_max: 65536,
            ct_pod_max: 65536 / 16,
            arp_limit: RateLimit::ARP_DEFAULT,
            broadcast_limit: RateLimit::BROADCAST_DEFAULT,
            secret: [0; 16],
        }
    }
}
