//! Counters: every drop has a reason, and every reason a counter. Lock-free (relaxed atomics).

use crate::ratelimit::RateBucket;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// Why a frame was dropped. `name()` is what `vswitchctl stats` prints.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// The reason's stable snake_case name.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header, or a header that does not parse.
    Malformed => "malformed",
    /// The vnet header is missing or inconsistent with the frame.
    BadVnetHdr => "bad_vnet_hdr",
    /// An ethertype the switch does not carry (neither IPv4 nor ARP).
    UnknownEthertype => "unknown_ethertype",
    /// IPv6 (not supported yet).
    Ipv6 => "ipv6_unsupported",
    /// A pod sent from a MAC that is not its own.
    SpoofedMac => "spoofed_mac",
    /// A pod sent from an IPv4 address that is not its own.
    SpoofedIp => "spoofed_ip",
    /// An ARP packet whose sender fields are not the pod's own.
    SpoofedArp => "spoofed_arp",
    /// An ARP packet that is not a request we answer (replies, gratuitous, unknown target).
    ArpIgnored => "arp_ignored",
    /// Broadcast or multicast that is not ARP: the switch does not flood.
    Multicast => "multicast",
    /// An ARP packet over the port's ARP rate limit ([`crate::NodeConfig::arp_limit`]).
    ArpRateLimited => "arp_rate_limited",
    /// A broadcast or multicast frame (other than ARP) over the port's limit for them
    /// ([`crate::NodeConfig::broadcast_limit`]).
    BroadcastRateLimited => "broadcast_rate_limited",
    /// Unicast to a MAC that is neither a local pod nor the router.
    UnknownDestMac => "unknown_dest_mac",
    /// A frame addressed back to the port it came from.
    Hairpin => "hairpin",
    /// No route to the destination IP.
    NoRoute => "no_route",
    /// TTL ran out.
    TtlExceeded => "ttl_exceeded",
    /// Addressed to the switch itself but not something it answers.
    LocalUnsupported => "local_unsupported",
    /// Arrived on a port the tables do not know (a port being removed).
    UnknownPort => "unknown_port",
    /// Too big for the tunnel and not fragmentable (answered with ICMP where possible).
    TooBig => "too_big",
    /// A VXLAN packet that is not well-formed.
    TunnelMalformed => "tunnel_malformed",
    /// A VXLAN packet with a VNI that is not ours.
    TunnelUnknownVni => "tunnel_unknown_vni",
    /// A VXLAN packet from an address that is not a peer's underlay.
    TunnelUnknownPeer => "tunnel_unknown_peer",
    /// A tunnel packet whose inner destination is not on this node (split horizon).
    TunnelNotOurs => "tunnel_not_ours",
    /// A tunnel packet whose inner source address is not in the sending peer's pod subnet
    /// (a spoofed peer claiming a local pod, the gateway, the DNS IP, a VIP or another
    /// node's pod).
    TunnelSpoofedSource => "tunnel_spoofed_source",
    /// The I/O shell could not write the frame (device down, queue full).
    TxError => "tx_error",
    /// A GSO super-frame of a kind the switch cannot segment for the tunnel yet (UDP/USO,
    /// TCPv6).
    GsoUnsupported => "gso_unsupported",
    /// A connection to a service port without ready endpoints (answered with a TCP RST or
    /// an ICMP port unreachable from the VIP).
    ServiceNoEndpoints => "service_no_endpoints",
    /// A packet to a service VIP (or the DNS address) that no service port takes: an unknown
    /// port or protocol, ICMP, a non-first fragment. (An address of the service range that
    /// is no VIP counts as `no_route`.)
    ServiceUnknownPort => "service_unknown_port",
    /// A new service connection while conntrack is full of established connections.
    ConntrackFull => "conntrack_full",
    /// A new service connection from a pod that holds its share of the conntrack table
    /// (`--conntrack-max-per-pod`).
    ConntrackPodLimit => "conntrack_pod_limit",
    /// A packet to the cluster DNS address that is not a DNS query the switch can parse.
    DnsMalformed => "dns_malformed",
    /// A DNS query the switch does not serve (outside the cluster domain); it is answered
    /// REFUSED, and counted here because it was not served.
    DnsRefused => "dns_refused",
    /// A query forwarded to the upstream resolver (`vswitchd --dns-upstream`) that got no
    /// answer to the pod: no response in time, the table of pending queries full, the send
    /// failing, or the pod gone when the response came. Counted by the shell (through
    /// [`crate::Datapath::count_drop`]) or by [`crate::Datapath::dns_upstream_reply`].
    DnsUpstreamFailed => "dns_upstream_failed",
    /// A query for the upstream resolver dropped because its pod had its share of the
    /// forwarder's pending table waiting, or forwarded its most queries this second.
    DnsForwardLimited => "dns_forward_limited",
    /// A datagram on the DNS forwarder's upstream sockets that answers no pending query:
    /// a wrong id, question, socket or source address (a spoofing attempt), or a late or
    /// duplicated answer. Counted by the shell.
    DnsUpstreamUnmatched => "dns_upstream_unmatched",
}

/// Where a dropped frame was going through the switch: the drop counters are kept per
/// reason and direction (one counter each; counting a drop is still one relaxed add).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    /// A frame a pod sent (read from its TAP), or its DNS query on the way to the upstream
    /// resolver, dropped before it left the switch.
    FromPod,
    /// A datagram received from the tunnel, dropped before it left the switch.
    FromTunnel,
    /// A frame the pipeline forwarded (or an upstream DNS answer for a pod), lost on the way
    /// out: segmenting it for the tunnel, or writing it to a TAP or the tunnel socket.
    Egress,
}

impl Direction {
    /// Every direction, in counter order.
    pub const ALL: &'static [Direction] =
        &[Direction::FromPod, Direction::FromTunnel, Direction::Egress];

    /// The direction's stable snake_case name (a metrics label value).
    pub fn name(self) -> &'static str {
        match self {
            Direction::FromPod => "from_pod",
            Direction::FromTunnel => "from_tunnel",
            Direction::Egress => "egress",
        }
    }
}

/// Node-wide drop counters, one per reason and direction.
pub struct Counters {
    drops: Vec<AtomicU64>,
}

impl Default for Counters {
    fn default() -> Self {
        let n = DropReason::ALL.len() * Direction::ALL.len();
        Counters {
            drops: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The slot of `(reason, dir)`.
fn slot(reason: DropReason, dir: Direction) -> usize {
    reason as usize * Direction::ALL.len() + dir as usize
}

impl Counters {
    /// Counts one drop of a frame going `dir`.
    #[allow(clippy::indexing_slicing)] // one slot per reason and direction: sized by ALL
    pub fn count_drop(&self, reason: DropReason, dir: Direction) {
        self.drops[slot(reason, dir)].fetch_add(1, Relaxed);
    }

    /// The drop count for `reason`, all directions.
    pub fn drops(&self, reason: DropReason) -> u64 {
        Direction::ALL
            .iter()
            .map(|d| self.drops_in(reason, *d))
            .sum()
    }

    /// The drop count for `reason` in direction `dir`.
    #[allow(clippy::indexing_slicing)] // one slot per reason and direction: sized by ALL
    pub fn drops_in(&self, reason: DropReason, dir: Direction) -> u64 {
        self.drops[slot(reason, dir)].load(Relaxed)
    }

    /// Every reason's name with its count (all directions).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.drops(*r)))
            .collect()
    }

    /// Every reason's and direction's names with their count.
    pub fn snapshot_by_direction(&self) -> Vec<(&'static str, &'static str, u64)> {
        DropReason::ALL
            .iter()
            .flat_map(|r| {
                Direction::ALL
                    .iter()
                    .map(move |d| (r.name(), d.name(), self.drops_in(*r, *d)))
            })
            .collect()
    }
}

/// Traffic counters of one port or peer ("rx" is from the pod/peer into the switch), and a
/// port's rate-limit buckets ([`crate::ratelimit`]): both are per link and outlive table
/// snapshots.
#[derive(Default, Debug)]
pub struct LinkCounters {
    /// Frames received.
    pub rx_packets: AtomicU64,
    /// Bytes received.
    pub rx_bytes: AtomicU64,
    /// Frames sent.
    pub tx_packets: AtomicU64,
    /// Bytes sent.
    pub tx_bytes: AtomicU64,
    /// Received frames that were dropped.
    pub rx_dropped: AtomicU64,
    /// The port's ARP budget.
    pub(crate) arp_bucket: RateBucket,
    /// The port's budget of broadcast/multicast frames other than ARP.
    pub(crate) broadcast_bucket: RateBucket,
}

impl LinkCounters {
    /// Counts a received frame of `bytes`.
    pub fn rx(&self, bytes: usize) {
        self.rx_packets.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts a sent frame of `bytes`.
    pub fn tx(&self, bytes: usize) {
        self.tx_packets.fetch_add(1, Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts a received frame that was dropped.
    pub fn rx_drop(&self) {
        self.rx_dropped.fetch_add(1, Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}
