//! The upstream DNS forwarder's protocol state machine (`vswitchd --dns-upstream`), sans-IO in
//! quinn-proto's shape: the shell owns the socket and the clock, and feeds this machine what
//! it reads ([`DnsForwarder::handle`] for a query a pod sent, [`DnsForwarder::handle_upstream`]
//! for a datagram from the upstream) and the time ([`DnsForwarder::handle_timeout`] when
//! [`DnsForwarder::poll_timeout`] says); it takes out what to send
//! ([`DnsForwarder::poll_transmit`]).
//!
//! Contract:
//! - Each forwarded query gets a fresh random 16-bit id that no pending query uses (the pod's
//!   id is restored on the response), so that queries of different pods cannot collide and an
//!   off-path guess of the id is as hard as against the pod itself. The ids come from an
//!   xorshift64* generator seeded by the shell ([`DnsForwarder::new`]).
//! - The table of pending queries is bounded ([`MAX_PENDING`]); a query finding it full is
//!   dropped, and so is one still unanswered after [`TIMEOUT_MS`] (the pod's resolver
//!   retries). The table is swept for expired queries at most every [`SWEEP_MS`], on any call
//!   that brings the time.
//! - Responses that match no pending query (late, duplicated, shorter than a DNS header, not
//!   a response) are ignored and never panic. A response is returned with the pod's port and
//!   address ([`Dest::Pod`]); the shell turns it into the pod's frame with
//!   [`crate::Datapath::dns_upstream_reply`], which counts its own failures.
//! - Failures of the forwarder (malformed query, full table, expiry, a send the shell reports
//!   failed with [`DnsForwarder::transmit_failed`]) are counted here and handed to the shell
//!   by [`DnsForwarder::take_failed`], to count as [`crate::DropReason::DnsUpstreamFailed`].
//! - No heap allocation per query once warm: the pending table is allocated up front, and
//!   datagrams waiting in [`DnsForwarder::poll_transmit`]'s queue share one buffer (at most
//!   [`MAX_QUEUED`] of them).

use crate::state::tables::PortId;
use crate::wire::dns::dns_query_payload;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;

/// Most queries waiting for the upstream at once.
pub const MAX_PENDING: usize = 4096;
/// How long a forwarded query waits for its response, in milliseconds.
pub const TIMEOUT_MS: u64 = 5000;
/// How often, at most, the pending table is swept for expired queries (milliseconds).
pub const SWEEP_MS: u64 = 250;
/// Most datagrams waiting in [`DnsForwarder::poll_transmit`]'s queue; more are dropped (the
/// shell drains the queue after each call).
pub const MAX_QUEUED: usize = 64;
/// Length of a DNS header (the id is its first two bytes, QR the top bit of the third).
const DNS_HDR: usize = 12;

/// A query sent upstream, waiting for its response.
#[derive(Debug, Clone, Copy)]
struct Pending {
    port: PortId,
    client: SocketAddrV4,
    /// The pod's own query id.
    id: u16,
    /// When it expires, on the shell's clock.
    deadline_ms: u64,
}

/// Where a datagram from [`DnsForwarder::poll_transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// To the upstream resolver: a pod's query under the forwarder's id `id` (report a failed
    /// send with [`DnsForwarder::transmit_failed`]).
    Upstream {
        /// The id the query carries upstream.
        id: u16,
    },
    /// The upstream's response, with the pod's id restored, for pod `port` at `client`.
    Pod {
        /// The pod's port.
        port: PortId,
        /// The pod's address and UDP source port.
        client: SocketAddrV4,
    },
}

/// One datagram to send, borrowed from the forwarder until its next call.
#[derive(Debug, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Where it goes.
    pub dest: Dest,
    /// The DNS message (the UDP payload).
    pub payload: &'a [u8],
}

/// Why [`DnsForwarder::handle`] did not forward a query (already counted as failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The frame holds no DNS query datagram of at least a header.
    Malformed,
    /// [`MAX_PENDING`] queries are waiting.
    TableFull,
    /// [`MAX_QUEUED`] datagrams wait for the shell.
    QueueFull,
}

/// A datagram in the transmit queue: its destination and its bytes in `out`.
#[derive(Debug, Clone, Copy)]
struct Queued {
    dest: Dest,
    start: usize,
    len: usize,
}

/// The forwarder to the upstream resolver of one engine.
#[derive(Debug)]
pub struct DnsForwarder {
    pending: HashMap<u16, Pending>,
    /// xorshift64* state, never zero.
    rng: u64,
    next_sweep_ms: u64,
    /// No pending query expires before this (a lower bound, exact after a sweep).
    earliest_ms: u64,
    queue: VecDeque<Queued>,
    /// The bytes of the queued datagrams, cleared when the queue is empty.
    out: Vec<u8>,
    failed: u64,
}

impl DnsForwarder {
    /// A forwarder with no pending query; `seed` starts the id generator (the shell gives a
    /// random one; zero is allowed).
    pub fn new(seed: u64) -> DnsForwarder {
        DnsForwarder {
            pending: HashMap::with_capacity(MAX_PENDING),
            rng: seed | 1,
            next_sweep_ms: 0,
            earliest_ms: u64::MAX,
            queue: VecDeque::with_capacity(MAX_QUEUED),
            out: Vec::new(),
            failed: 0,
        }
    }

    /// Number of queries waiting for the upstream.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// True while queries wait for the upstream.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Failures counted since the last call (malformed queries, full table or queue,
    /// expired queries, failed sends); the shell adds them to
    /// [`crate::DropReason::DnsUpstreamFailed`].
    pub fn take_failed(&mut self) -> u64 {
        std::mem::take(&mut self.failed)
    }

    /// A random id no pending query uses (xorshift64*; the table never holds all 65536).
    fn fresh_id(&mut self) -> u16 {
        loop {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let [a, b, ..] = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes();
            let id = u16::from_be_bytes([a, b]);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Queues `payload` for `dest`, with the DNS id replaced by `id`. False when the queue
    /// is full.
    fn enqueue(&mut self, dest: Dest, payload: &[u8], id: u16) -> bool {
        if self.queue.len() >= MAX_QUEUED {
            return false;
        }
        if self.queue.is_empty() {
            self.out.clear();
        }
        let start = self.out.len();
        self.out.extend_from_slice(&id.to_be_bytes());
        self.out
            .extend_from_slice(payload.get(2..).unwrap_or_default());
        self.queue.push_back(Queued {
            dest,
            start,
            len: self.out.len() - start,
        });
        true
    }

    /// A query from pod `port` at `client`: `frame` is the frame of a
    /// [`crate::Verdict::DnsForward`]. Sweeps expired queries when due, then queues the query
    /// for the upstream under a fresh id.
    pub fn handle(
        &mut self,
        now_ms: u64,
        port: PortId,
        client: SocketAddrV4,
        frame: &[u8],
    ) -> Result<(), Rejected> {
        self.handle_timeout(now_ms);
        let result = self.forward(now_ms, port, client, frame);
        if result.is_err() {
            self.failed += 1;
        }
        result
    }

    fn forward(
        &mut self,
        now_ms: u64,
        port: PortId,
        client: SocketAddrV4,
        frame: &[u8],
    ) -> Result<(), Rejected> {
        let q = dns_query_payload(frame)
            .filter(|q| q.len() >= DNS_HDR)
            .ok_or(Rejected::Malformed)?;
        let orig = match q {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => return Err(Rejected::Malformed),
        };
        if self.pending.len() >= MAX_PENDING {
            return Err(Rejected::TableFull);
        }
        let id = self.fresh_id();
        if !self.enqueue(Dest::Upstream { id }, q, id) {
            return Err(Rejected::QueueFull);
        }
        let deadline_ms = now_ms.saturating_add(TIMEOUT_MS);
        self.earliest_ms = self.earliest_ms.min(deadline_ms);
        self.pending.insert(
            id,
            Pending {
                port,
                client,
                id: orig,
                deadline_ms,
            },
        );
        Ok(())
    }

    /// A datagram from the upstream. A response to a pending query ends it and is queued for
    /// the pod, with the pod's id (true); anything else is ignored (false). Sweeps expired
    /// queries first when due, so a response after its query's deadline may be ignored.
    pub fn handle_upstream(&mut self, now_ms: u64, datagram: &[u8]) -> bool {
        self.handle_timeout(now_ms);
        let id = match datagram {
            [a, b, flags, ..] if datagram.len() >= DNS_HDR && flags & 0x80 != 0 => {
                u16::from_be_bytes([*a, *b])
            }
            _ => return false,
        };
        let Some(p) = self.pending.remove(&id) else {
            return false;
        };
        let dest = Dest::Pod {
            port: p.port,
            client: p.client,
        };
        if !self.enqueue(dest, datagram, p.id) {
            self.failed += 1;
        }
        true
    }

    /// The shell could not send the query with id `id` upstream: it is no longer pending,
    /// and counts as failed.
    pub fn transmit_failed(&mut self, id: u16) {
        if self.pending.remove(&id).is_some() {
            self.failed += 1;
        }
    }

    /// The next datagram to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let Some(q) = self.queue.pop_front() else {
            self.out.clear();
            return None;
        };
        let payload = self.out.get(q.start..q.start + q.len).unwrap_or_default();
        Some(Transmit {
            dest: q.dest,
            payload,
        })
    }

    /// When [`DnsForwarder::handle_timeout`] next has something to do; `None` while no query
    /// waits.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.has_pending()
            .then(|| self.next_sweep_ms.max(self.earliest_ms))
    }

    /// Drops (and counts as failed) the queries whose time is up; sweeps the table at most
    /// every [`SWEEP_MS`] and only once a deadline has passed, so it is cheap to call on
    /// every wakeup. Returns how many expired.
    pub fn handle_timeout(&mut self, now_ms: u64) -> usize {
        if now_ms < self.next_sweep_ms || now_ms < self.earliest_ms {
            return 0;
        }
        self.next_sweep_ms = now_ms.saturating_add(SWEEP_MS);
        let before = self.pending.len();
        let mut earliest = u64::MAX;
        self.pending.retain(|_, p| {
            let keep = p.deadline_ms > now_ms;
            if keep {
                earliest = earliest.min(p.deadline_ms);
            }
            keep
        });
        self.earliest_ms = earliest;
        let expired = before - self.pending.len();
        self.failed += expired as u64;
        expired
    }
}
