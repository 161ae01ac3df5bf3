//! The pipeline's observer: how `vswitchctl trace` runs a synthetic packet through the SAME
//! stage functions as a real frame without touching the live state.
//!
//! Every stage function is generic over a [`Mode`]. The live path runs with [`Live`]:
//! `LIVE` is `true` and [`Mode::step`] is an empty `#[inline(always)]` function whose
//! argument is a closure, so the monomorphized fast path neither builds a [`Step`] nor
//! tests anything at run time (every `if M::LIVE` is a constant). A trace runs with
//! [`Trace`]: `LIVE` is `false`, so the stages
//!
//! - count nothing (no `rx`/`tx`/`rx_drop`, no drop counter),
//! - take no rate-limit token (the bucket is only looked at: [`crate::ratelimit::RateBucket::would_admit`]),
//! - create, refresh and remove no conntrack entry (lookups do not even remove an expired
//!   one), and pin no ClientIP affinity (the balancer's choice is only looked at),
//!
//! and record each decision as a [`TraceStep`]. The synthetic frame ([`Probe::frame`]) is
//! rewritten in the trace's own buffer like a real one (DNAT, encapsulation), which is how
//! the steps see the addresses the packet would leave with.

use super::Stage;
use crate::counters::DropReason;
use crate::state::tables::{PeerId, PortId};
use crate::types::Mac;
use crate::wire::buf::PacketBuf;
use crate::Verdict;
use serde::{Serialize, Serializer};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// How a pass through the pipeline treats the live state. Implemented by [`Live`] (the
/// forwarding path) and [`Trace`] (`vswitchctl trace`).
pub(crate) trait Mode {
    /// True on the forwarding path: counters move, tokens are taken, connections and
    /// affinities are created. False for a trace: the state is only looked at.
    const LIVE: bool;
    /// The frame enters `stage`: later decisions and a drop are the stage's.
    fn enter(&mut self, stage: Stage);
    /// Records the decision `step` of the current stage (built only when traced).
    fn note(&mut self, step: impl FnOnce() -> Step);
    /// [`Mode::enter`] then [`Mode::note`].
    #[inline(always)]
    fn step(&mut self, stage: Stage, step: impl FnOnce() -> Step) {
        self.enter(stage);
        self.note(step);
    }
}

/// The forwarding path: records nothing, compiles to nothing.
pub(crate) struct Live;

impl Mode for Live {
    const LIVE: bool = true;
    #[inline(always)]
    fn enter(&mut self, _stage: Stage) {}
    #[inline(always)]
    fn note(&mut self, _step: impl FnOnce() -> Step) {}
}

/// A trace: the decisions of every stage, in order, and the final verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The stages met, in order, with their decisions.
    pub steps: Vec<TraceStep>,
    /// What the live path would do with the frame (nothing was counted).
    pub verdict: Option<Verdict>,
    stage: Stage,
}

impl Default for Trace {
    fn default() -> Trace {
        Trace {
            steps: Vec::new(),
            verdict: None,
            stage: Stage::PortIngress,
        }
    }
}

impl Mode for Trace {
    const LIVE: bool = false;
    fn enter(&mut self, stage: Stage) {
        self.stage = stage;
    }
    fn note(&mut self, step: impl FnOnce() -> Step) {
        self.steps.push(TraceStep {
            stage: self.stage,
            step: step(),
        });
    }
}

impl Trace {
    /// The drop reason of the verdict, if the frame would be dropped.
    pub fn dropped(&self) -> Option<DropReason> {
        match self.verdict {
            Some(Verdict::Drop(r)) => Some(r),
            _ => None,
        }
    }

    /// The first step of `stage`, if the frame met it.
    pub fn step_of(&self, stage: Stage) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.stage == stage)
            .map(|s| &s.step)
    }
}

/// One decision of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    /// The stage.
    pub stage: Stage,
    /// What it decided.
    pub step: Step,
}

fn mac_str<S: Serializer>(m: &Mac, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(m)
}

fn reason_str<S: Serializer>(r: &DropReason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.name())
}

/// The decision of a stage, as data (`-o json`) and as a line ([`fmt::Display`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Step {
    /// The spoof guard let the frame through: its source MAC (and IPv4 source) are the
    /// port's.
    SpoofGuard {
        /// The frame's source MAC.
        #[serde(serialize_with = "mac_str")]
        mac: Mac,
        /// The IPv4 source (None for ARP).
        src: Option<Ipv4Addr>,
    },
    /// A per-port rate limit was looked at (no token taken).
    RateLimit {
        /// `arp` or `broadcast`.
        bucket: &'static str,
        /// The limit, e.g. `100/s burst 200`.
        limit: String,
        /// Whether the frame is within it.
        within: bool,
    },
    /// The frame was admitted to the IPv4 pipeline.
    Admitted {
        /// The destination MAC.
        #[serde(serialize_with = "mac_str")]
        dst_mac: Mac,
        /// Whether it was sent to the router MAC (routed) or to a pod's MAC (switched).
        routed: bool,
    },
    /// An ARP request answered from the tables.
    ArpAnswer {
        /// The address asked for.
        target: Ipv4Addr,
        /// The MAC answered.
        #[serde(serialize_with = "mac_str")]
        mac: Mac,
    },
    /// No tracked connection owns the packet.
    NotTracked,
    /// A tracked service connection owns the packet.
    Tracked {
        /// True for the reply direction (endpoint -> client).
        reply: bool,
        /// The client's side, as the client sent it.
        original: String,
        /// The endpoint's side, as the endpoint answers.
        reply_tuple: String,
        /// The connection's state.
        state: String,
    },
    /// The routing decision.
    Route {
        /// `host`, `dns`, `ttl_exceeded`, `service`, `local` or `peer`.
        to: &'static str,
        /// The destination address.
        dst: Ipv4Addr,
    },
    /// The service port and the endpoint the balancer would choose.
    Service {
        /// The service port, `VIP:PORT`.
        vip: SocketAddrV4,
        /// `tcp` or `udp`.
        proto: &'static str,
        /// The endpoint it would pick.
        endpoint: SocketAddrV4,
        /// The number of ready endpoints.
        endpoints: usize,
        /// True when a live ClientIP affinity pinned the choice.
        affinity: bool,
    },
    /// The destination NAT (and the source NAT on hairpin).
    Dnat {
        /// Destination before, `VIP:PORT`.
        from: SocketAddrV4,
        /// Destination after, the endpoint.
        to: SocketAddrV4,
        /// Source after, when it is rewritten too (hairpin: the gateway).
        snat: Option<Ipv4Addr>,
    },
    /// The reverse NAT of a reply.
    ReverseNat {
        /// Source after (the VIP:PORT).
        src: SocketAddrV4,
        /// Destination after (the client).
        dst: SocketAddrV4,
    },
    /// Encapsulation towards a peer: the outer header the datagram would have.
    Encap {
        /// The peer.
        peer: PeerId,
        /// Outer source address (the node's underlay address, when known).
        outer_src: Option<Ipv4Addr>,
        /// Outer destination address (the peer's underlay address).
        outer_dst: Ipv4Addr,
        /// Outer UDP source port.
        udp_src: u16,
        /// Outer UDP destination port.
        udp_dst: u16,
        /// VXLAN network identifier.
        vni: u32,
        /// Inner source MAC (our VTEP).
        #[serde(serialize_with = "mac_str")]
        inner_src_mac: Mac,
        /// Inner destination MAC (the peer's VTEP).
        #[serde(serialize_with = "mac_str")]
        inner_dst_mac: Mac,
    },
    /// Delivered to a local port.
    Deliver {
        /// The port.
        port: PortId,
        /// Its MAC.
        #[serde(serialize_with = "mac_str")]
        mac: Mac,
    },
    /// The switch answers the pod itself (ICMP echo reply, DNS answer, ICMP error, RST).
    Answer {
        /// What the answer is.
        what: &'static str,
    },
    /// Handed to the upstream DNS forwarder.
    DnsForward,
    /// Dropped (or rejected, when an answer goes back to the pod), with the reason.
    Drop {
        /// The reason, as `stats` names it.
        #[serde(serialize_with = "reason_str")]
        reason: DropReason,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::SpoofGuard { mac, src: Some(ip) } => {
                write!(f, "spoof guard: source {mac} {ip} is the port's")
            }
            Step::SpoofGuard { mac, src: None } => {
                write!(f, "spoof guard: source {mac} is the port's")
            }
            Step::RateLimit {
                bucket,
                limit,
                within,
            } => {
                let w = if *within { "within" } else { "over" };
                write!(f, "rate limit: {w} the {bucket} limit ({limit})")
            }
            Step::Admitted { dst_mac, routed } => {
                let how = if *routed { "routed" } else { "switched" };
                write!(f, "admitted: to {dst_mac} ({how})")
            }
            Step::ArpAnswer { target, mac } => write!(f, "arp: {target} is at {mac}"),
            Step::NotTracked => f.write_str("no tracked connection"),
            Step::Tracked {
                reply,
                original,
                reply_tuple,
                state,
            } => {
                let dir = if *reply { "reply" } else { "original" };
                write!(f, "tracked ({dir}): {original} <-> {reply_tuple} {state}")
            }
            Step::Route { to, dst } => write!(f, "route: {dst} -> {to}"),
            Step::Service {
                vip,
                proto,
                endpoint,
                endpoints,
                affinity,
            } => {
                let how = if *affinity {
                    "ClientIP affinity"
                } else {
                    "spread"
                };
                write!(
                    f,
                    "service {vip}/{proto}: endpoint {endpoint} ({how}, {endpoints} ready)"
                )
            }
            Step::Dnat { from, to, snat } => {
                write!(f, "dnat: {from} -> {to}")?;
                if let Some(s) = snat {
                    write!(f, ", snat: source -> {s} (hairpin)")?;
                }
                Ok(())
            }
            Step::ReverseNat { src, dst } => write!(f, "reverse nat: {src} -> {dst}"),
            Step::Encap {
                peer,
                outer_src,
                outer_dst,
                udp_src,
                udp_dst,
                vni,
                inner_src_mac,
                inner_dst_mac,
            } => {
                let src = outer_src.map_or_else(|| "-".to_string(), |s| s.to_string());
                write!(
                    f,
                    "vxlan to peer {}: outer {src}:{udp_src} -> {outer_dst}:{udp_dst} vni {vni}, \
                     inner {inner_src_mac} -> {inner_dst_mac}",
                    peer.get()
                )
            }
            Step::Deliver { port, mac } => write!(f, "deliver to port {} ({mac})", port.get()),
            Step::Answer { what } => write!(f, "answered by the switch: {what}"),
            Step::DnsForward => f.write_str("to the upstream DNS forwarder"),
            Step::Drop { reason } => write!(f, "drop: {}", reason.name()),
        }
    }
}

/// The transport of a synthetic packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeProto {
    /// A TCP SYN.
    Tcp,
    /// A UDP datagram.
    Udp,
    /// An ICMP echo request.
    Icmp,
}

/// A synthetic packet from a pod, for [`crate::Datapath::trace_from_port`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Source MAC (the port's unless forged).
    pub src_mac: Mac,
    /// Destination MAC (the router MAC to be routed, a pod's MAC to be switched).
    pub dst_mac: Mac,
    /// Source address (the port's unless forged).
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Transport.
    pub proto: ProbeProto,
    /// Source port (TCP/UDP).
    pub sport: u16,
    /// Destination port (TCP/UDP; ignored for ICMP).
    pub dport: u16,
    /// IPv4 TTL.
    pub ttl: u8,
}

impl Probe {
    /// The frame: Ethernet, IPv4 (DF set, as Linux sends), and a TCP SYN, a UDP datagram
    /// with 8 zero bytes, or an ICMP echo request with id 1, sequence 1.
    pub fn frame(&self) -> PacketBuf {
        let b = etherparse::PacketBuilder::ethernet2(self.src_mac.0, self.dst_mac.0).ip(
            etherparse::IpHeaders::Ipv4(
                {
                    let mut h = etherparse::Ipv4Header::new(
                        0,
                        self.ttl,
                        etherparse::IpNumber::TCP,
                        self.src.octets(),
                        self.dst.octets(),
                    )
                    .unwrap_or_default();
                    h.dont_fragment = true;
                    h
                },
                Default::default(),
            ),
        );
        let payload = [0u8; 8];
        let mut out = Vec::with_capacity(128);
        let r = match self.proto {
            ProbeProto::Tcp => b
                .tcp(self.sport, self.dport, 1, 64240)
                .syn()
                .write(&mut out, &[]),
            ProbeProto::Udp => b.udp(self.sport, self.dport).write(&mut out, &payload),
            ProbeProto::Icmp => b.icmpv4_echo_request(1, 1).write(&mut out, &payload),
        };
        if r.is_err() {
            out.clear();
        }
        PacketBuf::from_frame(&out)
    }
}
