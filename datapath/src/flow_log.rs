//! The flow log: events per connection and per drop, never per packet of an established
//! flow, for `vswitchctl observe` (Hubble's flow records in spirit).
//!
//! The datapath emits [`FlowEvent`]s into a bounded lock-free queue ([`FlowLog`], a
//! `crossbeam_queue::ArrayQueue` shared by the workers); the shell drains it with
//! [`FlowLog::pop`] into its own ring and names the pods, services and peers. What is emitted:
//!
//! - [`FlowKind::New`]: a new service connection (the conntrack entry just created, with its
//!   VIP:port and endpoint), and the first segment (a SYN without ACK) of a direct TCP flow
//!   forwarded from a pod to a pod (switched or routed) or into the tunnel, or from the
//!   tunnel to a pod. Checking for the SYN reads one byte of a TCP packet's header, and only
//!   while the log is on; UDP flows without a service have no connection to report.
//! - [`FlowKind::Drop`]: a dropped frame with its reason, at most [`DROP_EVENTS_PER_SEC`]
//!   per second (bursts of [`DROP_EVENTS_BURST`]): over that a drop costs the bucket's
//!   atomic load and one add, and the next logged drop carries how many were
//!   [`suppressed`](FlowEvent::suppressed) before it.
//! - [`FlowKind::End`]: a service connection removed by the periodic expiry
//!   ([`crate::Datapath::expire`]): closed (both FINs or a RST were seen) or idle.
//!
//! Nothing here reads a clock: every event carries the `now_ms` the shell passed in. A full
//! queue never blocks a worker: the event is counted in [`FlowLog::lost`].

use crate::counters::DropReason;
use crate::ratelimit::{RateBucket, RateLimit};
use crate::state::tables::{PeerId, PortId};
use crossbeam_queue::ArrayQueue;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Drop events logged per second at most (the rest are counted as suppressed).
pub const DROP_EVENTS_PER_SEC: u32 = 1000;
/// Drop events logged back to back after a quiet period.
pub const DROP_EVENTS_BURST: u32 = 200;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// A new connection (forwarded).
    New,
    /// A dropped frame, and why.
    Drop(DropReason),
    /// A tracked connection ended: `closed` when both FINs or a RST were seen, else it
    /// went idle until its timeout.
    End {
        /// Closed by the endpoints rather than timed out.
        closed: bool,
    },
}

/// Where a frame came in (or, for a connection end, nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowPoint {
    /// A pod's port.
    Port(PortId),
    /// A peer, through the tunnel.
    Peer(PeerId),
    /// The tunnel socket, from an address that is no peer.
    Tunnel(SocketAddrV4),
    /// Not tied to one frame (a connection's end).
    None,
}

/// One flow event. Addresses are those of the packet as it arrived (a service connection's
/// destination is its VIP; the endpoint is in `endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEvent {
    /// The shell's monotonic clock when it happened, ms.
    pub now_ms: u64,
    /// New, drop or end.
    pub kind: FlowKind,
    /// Where the frame came in.
    pub from: FlowPoint,
    /// Where it went, for a forwarded frame.
    pub to: FlowPoint,
    /// The IP protocol number; `None` when the frame is no IPv4 packet (an ARP request, a
    /// runt, ...), and then the addresses are unspecified.
    pub proto: Option<u8>,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port (0 without one).
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port (0 without one).
    pub dport: u16,
    /// TCP flags (0 for others).
    pub tcp_flags: u8,
    /// The service (VIP and port) of a service connection.
    pub service: Option<SocketAddrV4>,
    /// The endpoint a service connection goes to.
    pub endpoint: Option<SocketAddrV4>,
    /// Drop events suppressed by the rate limit since the last one logged.
    pub suppressed: u64,
}

impl FlowEvent {
    /// An event of `kind` at `now_ms` with no packet fields yet.
    pub fn new(now_ms: u64, kind: FlowKind, from: FlowPoint) -> FlowEvent {
        FlowEvent {
            now_ms,
            kind,
            from,
            to: FlowPoint::None,
            proto: None,
            src: Ipv4Addr::UNSPECIFIED,
            sport: 0,
            dst: Ipv4Addr::UNSPECIFIED,
            dport: 0,
            tcp_flags: 0,
            service: None,
            endpoint: None,
            suppressed: 0,
        }
    }

    /// Fills in the IPv4/L4 fields from an Ethernet frame, as far as it parses (nothing
    /// for a frame that is not IPv4). Only called for the events that are logged.
    pub(crate) fn with_frame(mut self, frame: &[u8]) -> FlowEvent {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};
        let Ok(p) = SlicedPacket::from_ethernet(frame) else {
            // The IP header may be fine while a later header is cut short.
            return self.with_ipv4_only(frame);
        };
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            return self;
        };
        let h = ip.header();
        self.proto = Some(h.protocol().0);
        self.src = h.source_addr();
        self.dst = h.destination_addr();
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => {
                self.sport = t.source_port();
                self.dport = t.destination_port();
                self.tcp_flags = t.slice().get(13).copied().unwrap_or(0);
            }
            Some(TransportSlice::Udp(u)) => {
                self.sport = u.source_port();
                self.dport = u.destination_port();
            }
            _ => {}
        }
        self
    }

    fn with_ipv4_only(mut self, frame: &[u8]) -> FlowEvent {
        let ip = frame
            .get(12..14)
            .filter(|t| t == &[0x08, 0x00])
            .and_then(|_| frame.get(14..))
            .and_then(|rest| etherparse::Ipv4HeaderSlice::from_slice(rest).ok());
        if let Some(h) = ip {
            self.proto = Some(h.protocol().0);
            self.src = h.source_addr();
            self.dst = h.destination_addr();
        }
        self
    }
}

/// The bounded queue between the datapath and the shell, with the drop events' rate limit.
pub struct FlowLog {
    queue: ArrayQueue<FlowEvent>,
    drop_limit: RateLimit,
    drop_bucket: RateBucket,
    /// `suppressed_total` when the last drop event was kept.
    suppressed_mark: AtomicU64,
    suppressed_total: AtomicU64,
    lost: AtomicU64,
}

impl std::fmt::Debug for FlowLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowLog")
            .field("capacity", &self.queue.capacity())
            .field("len", &self.queue.len())
            .finish()
    }
}

impl FlowLog {
    /// A queue of `capacity` events (at least 1), with the default drop event limit.
    pub fn new(capacity: usize) -> FlowLog {
        FlowLog::with_drop_limit(
            capacity,
            RateLimit {
                per_sec: DROP_EVENTS_PER_SEC,
                burst: DROP_EVENTS_BURST,
            },
        )
    }

    /// A queue of `capacity` events logging drops at most at `drop_limit`.
    pub fn with_drop_limit(capacity: usize, drop_limit: RateLimit) -> FlowLog {
        FlowLog {
            queue: ArrayQueue::new(capacity.max(1)),
            drop_limit,
            drop_bucket: RateBucket::default(),
            suppressed_mark: AtomicU64::new(0),
            suppressed_total: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// The oldest event not yet taken.
    pub fn pop(&self) -> Option<FlowEvent> {
        self.queue.pop()
    }

    /// Events lost because the queue was full (the shell did not drain it in time).
    pub fn lost(&self) -> u64 {
        self.lost.load(Relaxed)
    }

    /// Drop events suppressed by the rate limit so far.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total.load(Relaxed)
    }

    pub(crate) fn push(&self, ev: FlowEvent) {
        if self.queue.push(ev).is_err() {
            self.lost.fetch_add(1, Relaxed);
        }
    }

    /// Logs a drop at `now_ms` unless over the rate limit; `build` makes the event (it is
    /// called only when logged, so a suppressed drop parses nothing).
    pub(crate) fn drop_event(&self, now_ms: u64, build: impl FnOnce() -> FlowEvent) {
        if !self.drop_bucket.admit(self.drop_limit, now_ms) {
            // One add per suppressed drop (a flood's whole cost after the bucket's test).
            self.suppressed_total.fetch_add(1, Relaxed);
            return;
        }
        let mut ev = build();
        let total = self.suppressed_total.load(Relaxed);
        let mark = self.suppressed_mark.swap(total, Relaxed);
        ev.suppressed = total.saturating_sub(mark);
        self.push(ev);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn a_drop_flood_is_rate_limited_and_counted() {
        let log = FlowLog::with_drop_limit(
            100,
            RateLimit {
                per_sec: 10,
                burst: 5,
            },
        );
        let ev = || FlowEvent::new(0, FlowKind::Drop(DropReason::Malformed), FlowPoint::None);
        for _ in 0..50 {
            log.drop_event(0, ev);
        }
        let mut got = Vec::new();
        while let Some(e) = log.pop() {
            got.push(e);
        }
        assert_eq!(got.len(), 5, "the burst");
        assert!(got.iter().all(|e| e.suppressed == 0));
        assert_eq!(log.suppressed_total(), 45);
        // A second later the next logged drop carries the count of those suppressed.
        log.drop_event(1000, ev);
        assert_eq!(log.pop().unwrap().suppressed, 45);
    }

    #[test]
    fn a_full_queue_counts_what_it_loses() {
        let log = FlowLog::new(2);
        for i in 0..5 {
            log.push(FlowEvent::new(i, FlowKind::New, FlowPoint::None));
        }
        assert_eq!(log.lost(), 3);
        assert_eq!(log.pop().unwrap().now_ms, 0, "oldest first");
    }

    #[test]
    fn frames_give_their_addresses_ports_and_flags() {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x02;
        let e = FlowEvent::new(7, FlowKind::New, FlowPoint::None).with_frame(&f);
        assert_eq!(e.proto, Some(6));
        assert_eq!((e.src, e.sport), (Ipv4Addr::new(10, 0, 0, 1), 1234));
        assert_eq!((e.dst, e.dport), (Ipv4Addr::new(10, 0, 0, 2), 80));
        assert_eq!(e.tcp_flags, 0x02);
        // Cut inside the TCP header: the IP fields still come through.
        let e = FlowEvent::new(7, FlowKind::New, FlowPoint::None).with_frame(&f[..40]);
        assert_eq!(e.proto, Some(6));
        assert_eq!(e.src, Ipv4Addr::new(10, 0, 0, 1));
        // Not IPv4.
        let e = FlowEvent::new(7, FlowKind::New, FlowPoint::None).with_frame(&[0u8; 60]);
        assert_eq!(e.proto, None);
    }
}
