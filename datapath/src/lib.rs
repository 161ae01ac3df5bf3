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
//! Layers, smoltcp-style; imports only go down (checked by `tests/layers.rs`):
//!
//! ```text
//!   pipeline/  the stages a frame goes through, and the Datapath that runs them
//!      │         mod.rs (the stage sequence: from_port, from_tunnel), port (ingress, L2),
//!      │         arp, route (L3, ICMP errors), services (conntrack'd NAT, new service
//!      │         connections, rejects), tunnel (VXLAN in and out), dns (the cluster DNS)
//!      ▼
//!   state/     what is remembered between frames: tables (snapshots), service (the service
//!      │         table), balancer (endpoint choice, ClientIP affinities), conntrack,
//!      │         ct_state (TCP/UDP states, timeouts), ct_persist (export/import),
//!      │         gro_hold (a tunnel frame held one step for GRO), dns_forward (the upstream
//!      │         DNS forwarder's state machine; the shell keeps its socket and clock)
//!      ▼
//!   wire/      stateless views and encodings: offsets, checked reads and writes, checksums,
//!      │         Ipv4Info, l4 (L4Proto, Tuple, TCP flags, L4Info, RST), buf (PacketBuf,
//!      │         VnetHdr), vxlan, icmp, dns framing, nat (rewrites), gso, frag, gro
//!      ▼
//!   values     types (Mac, Ipv4Cidr, NodeConfig), ratelimit (RateLimit, the GCRA bucket),
//!              counters (DropReason, Counters, LinkCounters): no imports from the layers
//! ```
//!
//! Beside `pipeline/` at the top, [`capture`] (a root file, so it may use every layer) holds
//! what packet capture needs that is pure: the capture filter and the synthesized outer
//! headers of a captured tunnel datagram.

#![forbid(unsafe_code)]
// Packets never panic: no unchecked indexing, no silently truncating casts (the few
// justified exceptions are allowed where they are, with the reason).
#![deny(clippy::indexing_slicing, clippy::cast_possible_truncation)]

pub mod capture;
pub mod counters;
pub mod flow_log;
pub mod ratelimit;
pub mod types;

mod pipeline;
mod state;
mod wire;

pub use counters::{Counters, Direction, DropReason, LinkCounters};
pub use flow_log::{FlowEvent, FlowKind, FlowLog, FlowPoint};
pub use pipeline::{Datapath, Probe, ProbeProto, Stage, Step, Trace, TraceStep, Verdict};
pub use ratelimit::RateLimit;
pub use state::ct_list::{ConnFilter, ConnInfo};
pub use state::ct_persist::{AffinityRecord, ConnRecord, CtImport, CtSnapshot};
pub use state::ct_state::State as ConnState;
pub use state::dns_forward::{self, DnsForwarder};
pub use state::gro_hold::{self, GroFrames, GroHold, Step as GroStep};
pub use state::service::{DnsEntry, ServiceEntry};
pub use state::tables::{self, PeerEntry, PeerId, PortEntry, PortId, Tables};
pub use types::{Ipv4Cidr, Mac, NodeConfig};
pub use wire::buf::{self, PacketBuf, VnetHdr, HEADROOM, VNET_HDR_LEN};
pub use wire::dns::{dns_query_payload, dns_reply_frame};
pub use wire::gro::gro_append;
pub use wire::gso::complete_checksum;
pub use wire::l4::L4Proto;
pub use wire::vxlan::{self, VxlanHdr, VXLAN_HDR_LEN};
pub use wire::OutOfRange;
