//! The pipeline layer: the path of a frame through named stages ([`Stage`]), and the
//! [`Datapath`] that runs it. This file is the map: [`Datapath::from_port`] and
//! [`Datapath::from_tunnel`] call the stages in order, each stage in its own file deciding
//! one thing. A policy check or a trace observer hooks in between two stages here.
//!
//! ```text
//! from_port:   PortIngress ─┬─ ARP ──────────────────────────────────────────▶ ToPort(in)
//!                           └─ Conntrack ─┬─ (tracked) NAT ─────────▶ ToPort / ToTunnel
//!                                         ├─ (to a pod MAC) Switch ──────────▶ ToPort
//!                                         └─ (to the router) Route ─┬─ HostStack ▶ ToPort(in) / DnsForward
//!                                                                   ├─ TTL ≤ 1 ─▶ ICMP error, ToPort(in)
//!                                                                   ├─ Services ▶ ToPort / ToTunnel
//!                                                                   ├─ Deliver ─▶ ToPort
//!                                                                   └─ TunnelEgress ▶ ToTunnel
//! from_tunnel: TunnelIngress ─ Conntrack ─┬─ (tracked) reverse NAT ───────────▶ ToPort
//!                                         ├─ HostStack (echo) ─ TunnelEgress ─▶ ToTunnel
//!                                         └─ Deliver ─────────────────────────▶ ToPort
//! ```
//!
//! Every stage returns `Result<_, DropReason>`; an `Err` is counted once, here
//! ([`Datapath::drop_on`]). Imports go down only: the pipeline uses `state` and `wire`.

mod arp;
mod dns;
mod flow;
mod port;
mod reject;
mod route;
mod services;
mod trace;
mod tunnel;

use crate::counters::{Counters, Direction, DropReason, LinkCounters};
use crate::flow_log::{FlowLog, FlowPoint};
use crate::state::balancer::Balancer;
use crate::state::conntrack::Conntrack;
use crate::state::ct_list::{ConnFilter, ConnInfo};
use crate::state::ct_persist::{CtImport, CtSnapshot, NatState};
use crate::state::tables::{PeerEntry, PeerId, PortEntry, PortId, Tables};
use crate::types::NodeConfig;
use crate::wire::buf::PacketBuf;
use crate::wire::l4::L4Proto;
use crate::wire::{forward_l3, icmp, Ipv4Info};
use arc_swap::ArcSwap;
use port::Admitted;
use route::Route;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use trace::{Live, Mode};
pub use trace::{Probe, ProbeProto, Step, Trace, TraceStep};
use tunnel::TunnelRoute;

/// The stages of the pipeline, in the order a frame meets them (see the drawing in this
/// module's documentation). The names a policy check or a trace observer will hook on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A pod's frame: vnet header, source MAC and IP, rate limits, ethertype, IPv4 header.
    PortIngress,
    /// ARP requests answered from the tables.
    Arp,
    /// Packets of tracked service connections: NAT in both directions.
    Conntrack,
    /// L2 delivery of a frame to another pod's MAC.
    Switch,
    /// L3: a frame to the router MAC, by destination address.
    Route,
    /// The switch's own addresses: ICMP echo for the gateway and VTEP, the cluster DNS.
    HostStack,
    /// A new connection to a service: endpoint choice, DNAT, rejects.
    Services,
    /// A routed packet to a local pod: MACs rewritten, TTL decremented.
    Deliver,
    /// A datagram from a peer: VXLAN header, VNI, inner frame.
    TunnelIngress,
    /// A packet to a peer: path MTU, encapsulation.
    TunnelEgress,
}

/// Where a packet came from.
#[derive(Clone, Copy)]
pub(crate) enum Ingress<'a> {
    /// A local pod's port; `routed` when it was sent to the router MAC.
    Port(&'a PortEntry, bool),
    /// The tunnel (always routed).
    Tunnel,
}

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
    /// is left untouched in the buffer ([`crate::dns_query_payload`] finds the DNS message); the
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
    /// The flow log (`observe`), when on.
    flows: Option<FlowLog>,
}

impl Datapath {
    /// A datapath with empty tables.
    pub fn new(config: NodeConfig) -> Datapath {
        Datapath {
            ct: Conntrack::new(config.ct_max, config.ct_pod_max, config.secret),
            lb: Balancer::new(config.ct_max),
            config,
            tables: ArcSwap::from_pointee(Tables::default()),
            counters: Counters::default(),
            flows: None,
        }
    }

    /// This datapath with the flow log on: events go to `log` (see [`crate::flow_log`]).
    pub fn with_flow_log(mut self, log: FlowLog) -> Datapath {
        self.flows = Some(log);
        self
    }

    /// The flow log, when on (the shell drains it).
    pub fn flow_log(&self) -> Option<&FlowLog> {
        self.flows.as_ref()
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

    /// The tracked connections matching `filter` at `now_ms` (`vswitchctl conntrack list`).
    pub fn conntrack_list(&self, filter: &ConnFilter, now_ms: u64) -> Vec<ConnInfo> {
        crate::state::ct_list::list(&self.ct, filter, now_ms)
    }

    /// Removes the tracked connections matching `filter` (`vswitchctl conntrack flush`);
    /// returns how many. ClientIP affinities stay (as `conntrack -D` leaves them).
    pub fn conntrack_flush(&self, filter: &ConnFilter, now_ms: u64) -> usize {
        crate::state::ct_list::flush(&self.ct, filter, now_ms)
    }

    /// Expires idle conntrack and affinity entries; the shell calls it about once a second
    /// with its monotonic clock (the same one it passes to `from_port`/`from_tunnel`).
    pub fn expire(&self, now_ms: u64) {
        match &self.flows {
            None => {
                self.ct.expire(now_ms);
            }
            Some(log) => {
                self.ct
                    .expire_each(now_ms, |c| log.push(flow::conn_end(c, now_ms)));
            }
        }
        self.lb.expire(now_ms);
    }

    /// Counts a drop that the I/O shell decided (for example a failed write), of a frame
    /// going `dir`.
    pub fn count_drop(&self, reason: DropReason, dir: Direction) {
        self.counters.count_drop(reason, dir);
    }

    /// A counter that moves whenever the service NAT state changes in a way worth saving
    /// (a connection created, removed or changing state, a new affinity). Lifetime refreshes
    /// do not move it.
    pub fn conntrack_generation(&self) -> u64 {
        self.nat_state().generation()
    }

    /// The live service NAT state at `now_ms` (lifetimes relative to it).
    pub fn export_conntrack(&self, now_ms: u64) -> CtSnapshot {
        self.nat_state().export(now_ms)
    }

    /// Installs the records of `snap`, taken `age_ms` ago, at `now_ms`, against the tables
    /// installed now (install them first). Bad, stale, expired, duplicate and surplus records
    /// are skipped and counted; nothing already in the table is evicted.
    pub fn import_conntrack(&self, snap: &CtSnapshot, age_ms: u64, now_ms: u64) -> CtImport {
        self.import_conntrack_for(&self.tables(), snap, age_ms, now_ms)
    }

    /// [`Datapath::import_conntrack`] checked against `tables`, the snapshot about to be
    /// installed rather than the one installed. A restarting shell restores first and
    /// installs after: a frame that meets the tables (one from the tunnel, which is served
    /// from the start) then meets the connections too, and a Service reply never reaches
    /// its client untranslated (which the client answers with a RST).
    pub fn import_conntrack_for(
        &self,
        tables: &Tables,
        snap: &CtSnapshot,
        age_ms: u64,
        now_ms: u64,
    ) -> CtImport {
        self.nat_state().import(tables, snap, age_ms, now_ms)
    }

    fn nat_state(&self) -> NatState<'_> {
        NatState {
            config: &self.config,
            ct: &self.ct,
            lb: &self.lb,
        }
    }

    /// Decides what happens to a frame read from `in_port`'s TAP. `now_ms` is a monotonic
    /// clock in milliseconds, passed in by the shell.
    ///
    /// Counting (done here, so the shell need not): the ingress port counts `rx` for every
    /// frame; a drop counts its [`DropReason`] node-wide and `rx_drop` on the ingress port;
    /// `ToPort(p)` counts `tx` of the outgoing frame on port `p`; `ToTunnel` counts `tx` of the
    /// inner frame (without the VXLAN header) on the peer. A frame on a port the tables do not
    /// know counts only [`DropReason::UnknownPort`].
    ///
    /// The buffer's vnet header is passed through unchanged when the frame is forwarded to
    /// another pod or into the tunnel, and reset to [`VnetHdr::default`](crate::VnetHdr) when the switch
    /// answers itself (ARP, ICMP).
    pub fn from_port(
        &self,
        tables: &Tables,
        in_port: PortId,
        pkt: &mut PacketBuf,
        now_ms: u64,
    ) -> Verdict {
        let Some(port) = tables.port(in_port) else {
            self.counters
                .count_drop(DropReason::UnknownPort, Direction::FromPod);
            self.log_drop(
                FlowPoint::Port(in_port),
                pkt,
                DropReason::UnknownPort,
                now_ms,
            );
            return Verdict::Drop(DropReason::UnknownPort);
        };
        port.counters.rx(pkt.len());
        match self.port_stages(&mut Live, tables, port, pkt, now_ms) {
            Ok(v) => v,
            Err(reason) => {
                self.log_drop(FlowPoint::Port(in_port), pkt, reason, now_ms);
                self.drop_on(&port.counters, reason, Direction::FromPod)
            }
        }
    }

    /// Runs the synthetic frame of `probe` from `in_port` through the stages of
    /// [`Datapath::from_port`] (the same code, see `pipeline/trace.rs`) without changing
    /// anything: no counter, no rate-limit token, no conntrack entry, no affinity. Returns
    /// each stage's decision and the verdict the frame would get. `underlay`, when the shell
    /// knows it, is shown as the outer source address of a tunnel datagram.
    pub fn trace_from_port(
        &self,
        tables: &Tables,
        in_port: PortId,
        probe: &Probe,
        underlay: Option<Ipv4Addr>,
        now_ms: u64,
    ) -> Trace {
        let mut t = Trace::default();
        let Some(port) = tables.port(in_port) else {
            let reason = DropReason::UnknownPort;
            t.step(Stage::PortIngress, || Step::Drop { reason });
            t.verdict = Some(Verdict::Drop(reason));
            return t;
        };
        let mut pkt = probe.frame();
        let v = match self.port_stages(&mut t, tables, port, &mut pkt, now_ms) {
            Ok(v) => v,
            Err(reason) => {
                t.note(|| Step::Drop { reason });
                Verdict::Drop(reason)
            }
        };
        for s in &mut t.steps {
            if let Step::Encap { outer_src, .. } = &mut s.step {
                *outer_src = underlay;
            }
        }
        t.verdict = Some(v);
        t
    }

    /// The stages a pod's frame goes through.
    /// The stages a pod's frame goes through, live ([`Live`]) or traced ([`Trace`]).
    fn port_stages<M: Mode>(
        &self,
        m: &mut M,
        tables: &Tables,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        now_ms: u64,
    ) -> Result<Verdict, DropReason> {
        // Stage::PortIngress
        let (dst, ip) = match port::admit(self, m, port, pkt, now_ms)? {
            Admitted::Arp => return arp::arp_from_port(self, m, tables, port, pkt), // Stage::Arp
            Admitted::Ipv4 { dst, ip } => (dst, ip),
        };
        let routed = dst == self.config.router_mac;
        m.note(|| Step::Admitted {
            dst_mac: dst,
            routed,
        });
        // Stage::Conntrack
        let from = Ingress::Port(port, routed);
        if let Some(v) = services::conntrack_packet(self, m, tables, from, pkt, &ip, now_ms) {
            return v;
        }
        if M::LIVE {
            // A trace does not track (nor remap) a direct flow: it would create an entry.
            services::direct_flow(self, tables, pkt, &ip, now_ms)?;
        }
        if !routed {
            let syn = self.syn_event_if::<M>(FlowPoint::Port(port.id), pkt, &ip, now_ms);
            let v = port::switch(self, m, tables, port, pkt, dst); // Stage::Switch
            self.log_forwarded(syn, &v);
            return v;
        }
        let cfg = &self.config;
        m.enter(Stage::Route);
        let r = route::route(self, tables, port, pkt.frame(), &ip)?;
        m.note(|| Step::Route {
            to: r.name(),
            dst: ip.dst,
        });
        match r {
            // Stage::HostStack
            Route::Host => {
                m.enter(Stage::HostStack);
                icmp::echo_reply(pkt, &ip, cfg.router_mac, port.mac)?;
                m.note(|| Step::Answer {
                    what: "icmp echo reply",
                });
                Ok(self.to_port(m, port, pkt))
            }
            Route::Dns => dns::dns_from_port(self, m, tables, port, pkt, &ip),
            Route::TtlExceeded => reject::ttl_exceeded(self, m, port, pkt, &ip),
            // Stage::Services
            Route::Service => services::service_from_port(self, m, tables, port, pkt, &ip, now_ms),
            // Stage::Deliver
            Route::Local(to) => {
                let syn = self.syn_event_if::<M>(FlowPoint::Port(port.id), pkt, &ip, now_ms);
                let v = self.deliver(m, to, pkt, &ip);
                self.log_forwarded(syn, &v);
                v
            }
            // Stage::TunnelEgress
            Route::Peer(peer) => {
                let syn = self.syn_event_if::<M>(FlowPoint::Port(port.id), pkt, &ip, now_ms);
                let v = tunnel::to_peer(self, m, port, peer, pkt, &ip);
                self.log_forwarded(syn, &v);
                v
            }
        }
    }

    /// Decides what happens to a UDP datagram received on the VXLAN socket from `src`; the
    /// buffer holds the UDP payload (VXLAN header + inner frame, see
    /// [`PacketBuf::set_udp_read_len`]). `now_ms` is the shell's monotonic clock.
    ///
    /// - `src` must be a peer's underlay address ([`DropReason::TunnelUnknownPeer`]), the
    ///   VXLAN header well-formed ([`DropReason::TunnelMalformed`]) and its VNI ours
    ///   ([`DropReason::TunnelUnknownVni`]);
    /// - the inner frame must be unicast IPv4 (inner ARP is [`DropReason::ArpIgnored`]) from
    ///   an address in that peer's pod subnet ([`DropReason::TunnelSpoofedSource`]);
    /// - to a local pod: MACs rewritten (router -> pod), TTL decremented, the VXLAN header
    ///   pulled and the vnet header reset: `ToPort(pod)`;
    /// - an ICMP echo request to our gateway or VTEP address: answered back into the tunnel
    ///   to the same peer; anything else for those addresses is
    ///   [`DropReason::LocalUnsupported`];
    /// - anything else, including another peer's subnet: [`DropReason::TunnelNotOurs`]
    ///   (split horizon: never `ToTunnel` for a forwarded packet);
    /// - a reply of a tracked service connection (endpoint -> client on this node) is reverse
    ///   NATed (source back to VIP:port) first, then delivered as above.
    ///
    /// Counting: the peer counts `rx` of the inner frame length (datagram less 8 bytes) for
    /// every datagram from a known peer, and `rx_drop` with each drop; `ToPort(p)` counts `tx`
    /// on port `p`; an echo reply counts `tx` of its inner frame on the peer.
    pub fn from_tunnel(
        &self,
        tables: &Tables,
        src: SocketAddrV4,
        pkt: &mut PacketBuf,
        now_ms: u64,
    ) -> Verdict {
        let Some(peer) = tables.peer_by_underlay(*src.ip()) else {
            self.counters
                .count_drop(DropReason::TunnelUnknownPeer, Direction::FromTunnel);
            self.log_drop(
                FlowPoint::Tunnel(src),
                pkt,
                DropReason::TunnelUnknownPeer,
                now_ms,
            );
            return Verdict::Drop(DropReason::TunnelUnknownPeer);
        };
        peer.counters
            .rx(pkt.len().saturating_sub(crate::wire::vxlan::VXLAN_HDR_LEN));
        match self.tunnel_stages(tables, peer, pkt, now_ms) {
            Ok(v) => v,
            Err(reason) => {
                self.log_drop(FlowPoint::Peer(peer.id), pkt, reason, now_ms);
                self.drop_on(&peer.counters, reason, Direction::FromTunnel)
            }
        }
    }

    /// The stages a peer's datagram goes through.
    fn tunnel_stages(
        &self,
        tables: &Tables,
        peer: &PeerEntry,
        pkt: &mut PacketBuf,
        now_ms: u64,
    ) -> Result<Verdict, DropReason> {
        // Stage::TunnelIngress
        let ip = tunnel::decap(self, peer, pkt)?;
        // Stage::Conntrack
        let from = Ingress::Tunnel;
        if let Some(v) = services::conntrack_packet(self, &mut Live, tables, from, pkt, &ip, now_ms)
        {
            return v;
        }
        match tunnel::route(self, tables, pkt.frame(), &ip)? {
            // Stage::HostStack, then Stage::TunnelEgress back to the peer
            TunnelRoute::Host => {
                icmp::echo_reply(pkt, &ip, self.config.vtep_mac, peer.vtep_mac)?;
                tunnel::encap_to(self, &mut Live, peer, pkt)
            }
            // Stage::Deliver
            TunnelRoute::Local(to) => {
                let syn = self.syn_event(FlowPoint::Peer(peer.id), pkt, &ip, now_ms);
                let v = self.deliver(&mut Live, to, pkt, &ip);
                self.log_forwarded(syn, &v);
                v
            }
        }
    }

    /// Turns the upstream resolver's `response` (its id already restored to the pod's) to a
    /// query that [`Verdict::DnsForward`] handed out into the datagram for the pod, in `pkt`
    /// (see [`crate::dns_reply_frame`]): `ToPort(port)`, counted as `tx` on the port. When the port
    /// is gone (or now has another address), the response is shorter than a DNS header or
    /// too big, or the node has no DNS address: dropped, counted as
    /// [`DropReason::DnsUpstreamFailed`].
    pub fn dns_upstream_reply(
        &self,
        tables: &Tables,
        port: PortId,
        client: SocketAddrV4,
        response: &[u8],
        pkt: &mut PacketBuf,
    ) -> Verdict {
        dns::dns_upstream_reply(self, tables, port, client, response, pkt)
    }

    /// True when a `ToTunnel` buffer cannot be sent as one datagram as it is: a GSO
    /// super-frame, a partial checksum, or an inner IPv4 packet longer than `pod_mtu` (which
    /// [`Datapath::from_port`] only lets through without DF). The shell then calls
    /// [`Datapath::segment_for_tunnel`].
    pub fn needs_segmentation(&self, pkt: &PacketBuf) -> bool {
        tunnel::needs_segmentation(self, pkt)
    }

    /// Turns a `ToTunnel` buffer (VXLAN header + inner frame, vnet offsets relative to the
    /// inner frame) into wire-ready UDP payloads written back to back into `out` (cleared
    /// first): each is VXLAN header + inner Ethernet + IPv4 + L4 header + payload chunk, with
    /// every checksum complete. Returns `(stride, count)`: every datagram is exactly `stride`
    /// bytes except possibly the last (a single datagram has `stride` = its length).
    ///
    /// - TCPv4 GSO: segmented as the kernel does: `gso_size` payload bytes per segment,
    ///   sequence number advanced, IP id incremented per segment, FIN/PSH only on the last
    ///   segment, CWR only on the first, IP and TCP checksums computed in full.
    /// - No GSO: one datagram, its partial checksum (NEEDS_CSUM) completed; if the inner IPv4
    ///   packet exceeds `pod_mtu` and DF is clear, IPv4 fragments of at most `pod_mtu`
    ///   bytes instead (each with a copy of the full IP header, options included).
    ///
    /// Errors (already counted node-wide; the shell must not count them again):
    /// [`DropReason::GsoUnsupported`] for UDP/USO/TCPv6 GSO, [`DropReason::BadVnetHdr`] when
    /// the vnet header does not match the frame, [`DropReason::Malformed`] when the buffer
    /// is not a VXLAN-encapsulated IPv4 frame. `out` is then empty.
    pub fn segment_for_tunnel(
        &self,
        pkt: &PacketBuf,
        out: &mut Vec<u8>,
    ) -> Result<(usize, usize), DropReason> {
        tunnel::segment_for_tunnel(self, pkt, out)
    }

    /// A routed packet to a local pod: MACs rewritten (router -> pod), TTL decremented.
    fn deliver<M: Mode>(
        &self,
        m: &mut M,
        to: &PortEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
    ) -> Result<Verdict, DropReason> {
        m.enter(Stage::Deliver);
        forward_l3(pkt, ip, self.config.router_mac, to.mac)?;
        Ok(self.to_port(m, to, pkt))
    }

    /// Counts a drop of a frame received on `link`, going `dir`, and returns its verdict.
    pub(crate) fn drop_on(
        &self,
        link: &LinkCounters,
        reason: DropReason,
        dir: Direction,
    ) -> Verdict {
        self.counters.count_drop(reason, dir);
        link.rx_drop();
        Verdict::Drop(reason)
    }

    /// Counts the frame as sent on `to` (live) and returns `ToPort(to)`.
    pub(crate) fn to_port<M: Mode>(&self, m: &mut M, to: &PortEntry, pkt: &PacketBuf) -> Verdict {
        if M::LIVE {
            to.counters.tx(pkt.len());
        }
        m.note(|| Step::Deliver {
            port: to.id,
            mac: to.mac,
        });
        Verdict::ToPort(to.id)
    }

    /// Counts a drop from `port` that the switch answers (an ICMP error, a RST), live.
    pub(crate) fn count_reject<M: Mode>(&self, m: &mut M, port: &PortEntry, reason: DropReason) {
        if M::LIVE {
            self.counters.count_drop(reason, Direction::FromPod);
            port.counters.rx_drop();
        }
        m.note(|| Step::Drop { reason });
    }
}
