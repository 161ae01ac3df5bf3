//! vswitch-datapath: the sans-IO forwarding core of vswitch.
//!
//! Contract:
//! - Decisions only. This crate performs no I/O: no sockets, no file descriptors, no clock
//!   reads, no threads, no logging per packet. Time, when needed, comes in as an argument.
//! - Every frame handed in ends in a [`Verdict`]: sent to a port, sent into the tunnel,
//!   handed to the shell's DNS forwarder, or dropped with a [`DropReason`] that has been
//!   counted. No input panics (fuzzed).
//! - Frames are rewritten in place inside their [`PacketBuf`]; replies the switch makes itself
//!   (ARP, ICMP, DNS answers, the TCP RST of a service without endpoints) reuse the buffer of
//!   the request and go back out of the ingress port.
//! - Services (ClusterIP) are load balanced at the client's node with kube-proxy's semantics:
//!   DNAT to one ready endpoint, connection tracking for the replies, ClientIP affinity,
//!   reject without endpoints, masquerade on hairpin. Conntrack is the one piece of mutable
//!   shared state: a bounded concurrent map ([`NodeConfig::ct_max`]), expired by
//!   [`Datapath::expire`] and lazily on lookup; it survives table swaps, and a restart of
//!   the shell through [`Datapath::export_conntrack`] / [`Datapath::import_conntrack`].
//! - Tables are immutable snapshots ([`Tables`]) swapped atomically by the control plane
//!   ([`Datapath::install`]); the data path reads them without locks.
//! - Nothing received from the tunnel is ever forwarded back into the tunnel (split horizon);
//!   the only tunnel-to-tunnel traffic is the switch's own answer (an ICMP echo reply) to the
//!   peer that asked.
//! - A pod may only send from its own MAC and IPv4 address.
//! - A pod's ARP and broadcast/multicast frames are rate limited per port
//!   ([`NodeConfig::arp_limit`], [`NodeConfig::broadcast_limit`], [`ratelimit`]).
//! - Counting is done here, not in the shell: `rx` on the ingress port or peer for every frame,
//!   the [`DropReason`] and the ingress link's `rx_drop` for every drop, `tx` on the port a
//!   `ToPort` goes to and on the peer a `ToTunnel` goes to (inner frame length).
//! - No per-packet heap allocation on the forwarding path: [`Datapath::from_port`] and
//!   [`Datapath::from_tunnel`] work in the buffer; [`Datapath::segment_for_tunnel`] writes
//!   into a `Vec` the caller keeps and reuses. A new service connection allocates its
//!   conntrack entry; DNS answers (the host stack, not forwarding) allocate.
//!
//! Module map: `switch` (port ingress, L2), `ratelimit` (per-port token buckets), `arp`,
//! `route` (L3), `icmp` (echo replies and errors), `vxlan` (header, encapsulation, PMTU), `tunnel` (tunnel ingress), `gso` (TSO,
//! checksum completion), `gro` (merging tunnel segments for a pod), `frag` (IPv4
//! fragmentation), `wire` (offsets, checksums), `service` (service table, endpoint choice,
//! affinity), `lb` (service traffic: NAT paths, rejects), `nat` (rewrites, incremental
//! checksums), `conntrack` (the table), `ct_state` (states, timeouts), `ct_persist` (saving and restoring
//! the table), `dns` (the cluster DNS), `dns_forward` (the upstream DNS forwarder's state
//! machine; the shell keeps only its socket and clock).

#![forbid(unsafe_code)]

pub mod buf;
pub mod counters;
pub mod dns_forward;
pub mod ratelimit;
pub mod tables;
pub mod types;
pub mod vxlan;

mod arp;
mod conntrack;
mod ct_persist;
mod ct_state;
mod dns;
mod frag;
mod gro;
mod gso;
mod icmp;
mod lb;
mod nat;
mod route;
mod service;
mod switch;
mod tunnel;
mod wire;

pub use buf::{PacketBuf, VnetHdr, HEADROOM, VNET_HDR_LEN};
pub use counters::{Counters, DropReason, LinkCounters};
pub use ct_persist::{AffinityRecord, ConnRecord, CtImport, CtSnapshot};
pub use ct_state::State as ConnState;
pub use dns::{dns_query_payload, dns_reply_frame};
pub use dns_forward::DnsForwarder;
pub use gro::gro_append;
pub use gso::complete_checksum;
pub use ratelimit::RateLimit;
pub use service::{DnsEntry, L4Proto, ServiceEntry};
pub use tables::{PeerEntry, PeerId, PortEntry, PortId, Tables};
pub use types::{Ipv4Cidr, Mac, NodeConfig};
pub use vxlan::{VxlanHdr, VXLAN_HDR_LEN};

use arc_swap::ArcSwap;
use conntrack::Conntrack;
use service::Balancer;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the buffer's vnet header and frame ([`PacketBuf::tap_write_region`]) to this
    /// port's TAP. Replies made by the switch come back as `ToPort(ingress)`.
    ToPort(PortId),
    /// Send the buffer's frame (VXLAN header + inner Ethernet frame) as a UDP datagram to
    /// `dst`. When [`Datapath::needs_segmentation`] says so (GSO, partial checksum, or an
    /// inner packet over `pod_mtu` without DF), the shell first turns it into wire-ready
    /// datagrams with [`Datapath::segment_for_tunnel`].
    ToTunnel {
        /// The peer it goes to.
        peer: PeerId,
        /// The peer's underlay address and VXLAN port.
        dst: SocketAddrV4,
    },
    /// A DNS query from pod `port` (at `client`) for a name the cluster DNS does not serve,
    /// to be forwarded to the upstream resolver ([`NodeConfig::dns_forward`]). The query frame
    /// is left untouched in the buffer ([`dns_query_payload`] finds the DNS message); the
    /// response comes back through [`Datapath::dns_upstream_reply`]. Counted only as `rx`
    /// on the port (neither a drop nor a `tx`).
    DnsForward {
        /// The pod's port.
        port: PortId,
        /// The pod's address and UDP source port (where the answer goes).
        client: SocketAddrV4,
    },
    /// Dropped; the reason has already been counted.
    Drop(DropReason),
}

/// The forwarding core of one node.
pub struct Datapath {
    config: NodeConfig,
    tables: ArcSwap<Tables>,
    counters: Counters,
    ct: Conntrack,
    lb: Balancer,
}

impl Datapath {
    /// A datapath with empty tables.
    pub fn new(config: NodeConfig) -> Datapath {
        Datapath {
            ct: Conntrack::new(config.ct_max),
            lb: Balancer::new(config.ct_max),
            config,
            tables: ArcSwap::from_pointee(Tables::default()),
            counters: Counters::default(),
        }
    }

    /// The node configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Node-wide drop counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Replaces the tables atomically. Frames being processed finish with the old snapshot.
    pub fn install(&self, tables: Tables) {
        self.tables.store(Arc::new(tables));
    }

    /// The current snapshot. Load once per batch and pass it to the `from_*` calls.
    pub fn tables(&self) -> arc_swap::Guard<Arc<Tables>> {
        self.tables.load()
    }

    /// Number of tracked (service NAT) connections.
    pub fn conntrack_len(&self) -> usize {
        self.ct.len()
    }

    /// Tracked connections (not yet established, or UDP never answered) evicted so far to
    /// make room for new ones in a full table: what a SYN flood against a Service costs
    /// other clients' half-open connections.
    pub fn conntrack_evicted(&self) -> u64 {
        self.ct.evicted()
    }

    /// Removes conntrack entries whose endpoint is `ep` (all protocols when `proto` is
    /// None) and the ClientIP affinities pinned to it; returns the number of connections
    /// removed. Called when an endpoint leaves a service (kube-proxy flushes UDP entries).
    pub fn flush_endpoint(&self, ep: Ipv4Addr, proto: Option<L4Proto>) -> usize {
        self.lb.flush_endpoint(ep, proto);
        self.ct.flush_endpoint(ep, proto)
    }

    /// Expires idle conntrack and affinity entries; the shell calls it about once a second
    /// with its monotonic clock (the same one it passes to `from_port`/`from_tunnel`).
    pub fn expire(&self, now_ms: u64) {
        self.ct.expire(now_ms);
        self.lb.expire(now_ms);
    }

    /// Counts a drop that the I/O shell decided (for example a failed write).
    pub fn count_drop(&self, reason: DropReason) {
        self.counters.count_drop(reason);
    }
}
