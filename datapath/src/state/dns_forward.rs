//! The upstream DNS forwarder's protocol state machine (`vswitchd --dns-upstream`), sans-IO in
//! quinn-proto's shape: the shell owns the socket and the clock, and feeds this machine what
//! it reads ([`DnsForwarder::handle`] for a query a pod sent, [`DnsForwarder::handle_upstream`]
//! for a datagram from the upstream) and the time ([`DnsForwarder::handle_timeout`] when
//! [`DnsForwarder::poll_timeout`] says); it takes out what to send
//! ([`DnsForwarder::poll_transmit`]).
//!
//! Contract:
//! - Each forwarded query gets a fresh 16-bit id that no pending query uses (the pod's id is
//!   restored on the response), so that queries of different pods cannot collide. The ids
//!   are unpredictable: SipHash-1-3 of a counter under a 128-bit key the shell takes from the
//!   OS's random source ([`DnsForwarder::new`]), a keyed PRF; seeing earlier ids tells an
//!   off-path host nothing about the next one.
//! - Queries leave from a pool of sockets ([`SOCKETS`] per forwarder, each bound by the
//!   shell to a port the kernel picks at random): each query goes out of one drawn under the
//!   key ([`Dest::Upstream`] names it), and a socket that has carried
//!   [`QUERIES_PER_SOCKET`] queries is retired: it takes no new ones, and once its last
//!   pending query ends (answered, expired, failed) the shell is told to close it and open
//!   a fresh one on a new random port ([`DnsForwarder::poll_reopen`]). An off-path spoofer
//!   must guess the source port as well as the id. (When every socket is retiring at once,
//!   a query goes out of a retiring one rather than be dropped.)
//! - A response is taken only when its id is pending *and* its question section (name, type,
//!   class; the name compared without regard to ASCII case) is the query's *and* it came
//!   in on the socket the query left from *and* from the address and port the query was
//!   sent to ([`DnsForwarder::handle_upstream`] is given both): a spoofer must guess the
//!   id and the port, and know the name. Anything else from the upstream sockets is
//!   dropped and counted ([`DnsForwarder::take_unmatched`]).
//! - The table of pending queries is bounded ([`MAX_PENDING`]), and so is each pod's share
//!   of it ([`MAX_PENDING_PER_POD`]) and each pod's rate of forwarded queries
//!   ([`MAX_QUERIES_PER_POD_PER_SEC`]): one pod asking for names whose servers never answer
//!   cannot block forwarding for the others. A query over a limit is dropped; one still
//!   unanswered after [`TIMEOUT_MS`] too (the pod's resolver retries). The table is swept for
//!   expired queries at most every [`SWEEP_MS`], on any call that brings the time.
//! - Responses that match no pending query (late, duplicated, shorter than a DNS header, not
//!   a response, another question, another socket or source) are ignored, counted as
//!   unmatched, and never panic. A response is returned with the pod's port and
//!   address ([`Dest::Pod`]); the shell turns it into the pod's frame with
//!   [`crate::Datapath::dns_upstream_reply`], which counts its own failures.
//! - Failures of the forwarder (malformed query, full table, expiry, a send the shell reports
//!   failed with [`DnsForwarder::transmit_failed`]) are counted here and handed to the shell
//!   by [`DnsForwarder::take_failed`], to count as [`crate::DropReason::DnsUpstreamFailed`];
//!   queries over a pod's share or rate by [`DnsForwarder::take_limited`], to count as
//!   [`crate::DropReason::DnsForwardLimited`].
//! - No heap allocation per query once warm: the pending table is allocated up front, and
//!   datagrams waiting in [`DnsForwarder::poll_transmit`]'s queue share one buffer (at most
//!   [`MAX_QUEUED`] of them).

use crate::state::tables::PortId;
use crate::wire::dns::dns_query_payload;
use siphasher::sip::SipHasher13;
use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::net::SocketAddrV4;

/// Most queries waiting for the upstream at once.
pub const MAX_PENDING: usize = 4096;
/// Most queries of one pod waiting for the upstream at once (a sixteenth of the table).
pub const MAX_PENDING_PER_POD: usize = MAX_PENDING / 16;
/// Most queries one pod may have forwarded per second (a fixed one-second window).
pub const MAX_QUERIES_PER_POD_PER_SEC: u32 = 500;
/// How long a forwarded query waits for its response, in milliseconds.
pub const TIMEOUT_MS: u64 = 5000;
/// How often, at most, the pending table is swept for expired queries (milliseconds).
pub const SWEEP_MS: u64 = 250;
/// Most datagrams waiting in [`DnsForwarder::poll_transmit`]'s queue; more are dropped (the
/// shell drains the queue after each call).
pub const MAX_QUEUED: usize = 64;
/// Sockets in a forwarder's pool (each one file descriptor in the shell).
pub const SOCKETS: usize = 32;
/// Queries a socket carries before it is retired and replaced by one on a new port.
pub const QUERIES_PER_SOCKET: u32 = 64;
/// Length of a DNS header (the id is its first two bytes, QR the top bit of the third).
const DNS_HDR: usize = 12;

/// A query sent upstream, waiting for its response.
#[derive(Debug, Clone, Copy)]
struct Pending {
    port: PortId,
    client: SocketAddrV4,
    /// The pod's own query id.
    id: u16,
    /// The keyed hash of the query's question section.
    question: u64,
    /// The socket of the pool it left from.
    socket: usize,
    /// Where it was sent.
    upstream: SocketAddrV4,
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
        /// The socket of the pool to send it from (`0..SOCKETS`).
        socket: usize,
        /// The upstream resolver's address and port.
        addr: SocketAddrV4,
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
    /// The pod has [`MAX_PENDING_PER_POD`] queries waiting.
    PodShareFull,
    /// The pod forwarded [`MAX_QUERIES_PER_POD_PER_SEC`] queries in this second.
    PodRateLimited,
}

/// What the forwarder keeps per pod: its queries pending, and its rate window.
#[derive(Debug, Clone, Copy, Default)]
struct PodUse {
    pending: usize,
    window_start_ms: u64,
    in_window: u32,
}

/// A datagram in the transmit queue: its destination and its bytes in `out`.
#[derive(Debug, Clone, Copy)]
struct Queued {
    dest: Dest,
    start: usize,
    len: usize,
}

/// Where a datagram from the upstream came in: the pool's socket and the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The socket of the pool that received it.
    pub socket: usize,
    /// Its source address and port.
    pub addr: SocketAddrV4,
}

/// One socket of the pool, as the machine sees it.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Queries sent from it since it was (re)opened.
    uses: u32,
    /// Its queries still pending.
    pending: usize,
    /// It carried its [`QUERIES_PER_SOCKET`]: no new queries, reopened once idle.
    retiring: bool,
}

/// The forwarder to the upstream resolver of one engine.
#[derive(Debug)]
pub struct DnsForwarder {
    /// The upstream resolver.
    upstream: SocketAddrV4,
    /// The socket pool.
    slots: Vec<Slot>,
    /// Sockets the shell must close and open afresh (each at most once in the queue).
    reopen: VecDeque<usize>,
    /// Datagrams from the upstream sockets that answered nothing pending.
    unmatched: u64,
    pending: HashMap<u16, Pending>,
    /// Per pod: its share of `pending` and its rate window (entries go when both are idle).
    pods: HashMap<PortId, PodUse>,
    /// The key of the id draw and of the question hashes.
    key: [u8; 16],
    /// Ids drawn so far (the PRF's input).
    draws: u64,
    next_sweep_ms: u64,
    /// No pending query expires before this (a lower bound, exact after a sweep).
    earliest_ms: u64,
    queue: VecDeque<Queued>,
    /// The bytes of the queued datagrams, cleared when the queue is empty.
    out: Vec<u8>,
    failed: u64,
    limited: u64,
}

impl DnsForwarder {
    /// A forwarder to `upstream` with a pool of [`SOCKETS`] sockets and no pending query,
    /// whose ids and sockets are drawn under `key` (the shell gives random bytes; tests
    /// choose them).
    pub fn new(key: [u8; 16], upstream: SocketAddrV4) -> DnsForwarder {
        DnsForwarder::with_sockets(key, upstream, SOCKETS)
    }

    /// Like [`DnsForwarder::new`], with a pool of `sockets` sockets (at least one).
    pub fn with_sockets(key: [u8; 16], upstream: SocketAddrV4, sockets: usize) -> DnsForwarder {
        DnsForwarder {
            upstream,
            slots: vec![Slot::default(); sockets.max(1)],
            reopen: VecDeque::new(),
            unmatched: 0,
            pending: HashMap::with_capacity(MAX_PENDING),
            pods: HashMap::new(),
            key,
            draws: 0,
            next_sweep_ms: 0,
            earliest_ms: u64::MAX,
            queue: VecDeque::with_capacity(MAX_QUEUED),
            out: Vec::new(),
            failed: 0,
            limited: 0,
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

    /// Queries dropped since the last call because their pod was over its share of the
    /// table or its rate; the shell adds them to [`crate::DropReason::DnsForwardLimited`].
    pub fn take_limited(&mut self) -> u64 {
        std::mem::take(&mut self.limited)
    }

    /// Datagrams from the upstream sockets since the last call that answered no pending
    /// query (wrong id, question, socket or source; late, duplicated, not a response); the
    /// shell adds them to [`crate::DropReason::DnsUpstreamUnmatched`].
    pub fn take_unmatched(&mut self) -> u64 {
        std::mem::take(&mut self.unmatched)
    }

    /// The number of sockets in the pool.
    pub fn sockets(&self) -> usize {
        self.slots.len()
    }

    /// A socket the shell must now close and replace with a fresh one on a new random port
    /// (it carried its [`QUERIES_PER_SOCKET`] and has nothing pending). The shell drains
    /// these after every call, before it sends anything [`DnsForwarder::poll_transmit`]
    /// gives.
    pub fn poll_reopen(&mut self) -> Option<usize> {
        self.reopen.pop_front()
    }

    /// The socket the pending query with upstream id `id` left from.
    pub fn socket_of(&self, id: u16) -> Option<usize> {
        self.pending.get(&id).map(|p| p.socket)
    }

    /// Queries of pod `port` waiting for the upstream.
    pub fn pending_of(&self, port: PortId) -> usize {
        self.pods.get(&port).map_or(0, |u| u.pending)
    }

    /// The `n`-th id of the key's sequence: the top 16 bits of SipHash-1-3(key, n).
    pub fn id_draw(key: &[u8; 16], n: u64) -> u16 {
        let mut h = SipHasher13::new_with_key(key);
        h.write_u64(n);
        let [a, b, ..] = h.finish().to_be_bytes();
        u16::from_be_bytes([a, b])
    }

    /// The socket for the next query: drawn under the key among those not retiring (any,
    /// when all are).
    fn pick_socket(&mut self) -> usize {
        let n = self.slots.len();
        let draw = Self::id_draw(&self.key, self.draws | 1 << 63);
        let start = usize::from(draw) % n;
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.slots.get(i).is_some_and(|s| !s.retiring))
            .unwrap_or(start)
    }

    /// A query on socket `socket` has ended: a retiring socket left idle is handed to the
    /// shell to reopen.
    fn socket_query_ended(slots: &mut [Slot], reopen: &mut VecDeque<usize>, socket: usize) {
        if let Some(s) = slots.get_mut(socket) {
            s.pending = s.pending.saturating_sub(1);
            if s.retiring && s.pending == 0 {
                *s = Slot::default();
                reopen.push_back(socket);
            }
        }
    }

    /// A fresh id no pending query uses (the table never holds all 65536).
    fn fresh_id(&mut self) -> u16 {
        loop {
            let id = Self::id_draw(&self.key, self.draws);
            self.draws = self.draws.wrapping_add(1);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// The keyed hash of the question section of DNS message `msg` (QNAME lowercased,
    /// QTYPE, QCLASS of the first question); `None` when the message has none.
    fn question_hash(&self, msg: &[u8]) -> Option<u64> {
        let count = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
        if count == 0 {
            return None;
        }
        let mut h = SipHasher13::new_with_key(&self.key);
        let mut at = DNS_HDR;
        loop {
            let len_byte = *msg.get(at)?;
            let len = usize::from(len_byte);
            if len == 0 {
                break;
            }
            if len > 63 {
                return None; // a compression pointer or a reserved label type
            }
            let label = msg.get(at + 1..at + 1 + len)?;
            h.write_u8(len_byte);
            for c in label {
                h.write_u8(c.to_ascii_lowercase());
            }
            at += 1 + len;
        }
        h.write(msg.get(at..at + 5)?); // the root label, QTYPE, QCLASS
        Some(h.finish())
    }

    /// Admits one more query of pod `port` at `now_ms` against its share and its rate.
    fn admit_pod(&mut self, port: PortId, now_ms: u64) -> Result<(), Rejected> {
        if self.pods.len() >= MAX_PENDING && !self.pods.contains_key(&port) {
            // Bounded however many pods come and go between sweeps.
            self.pods
                .retain(|_, u| u.pending > 0 || now_ms.saturating_sub(u.window_start_ms) < 1000);
        }
        let u = self.pods.entry(port).or_default();
        if u.pending >= MAX_PENDING_PER_POD {
            return Err(Rejected::PodShareFull);
        }
        if now_ms.saturating_sub(u.window_start_ms) >= 1000 || u.in_window == 0 {
            u.window_start_ms = now_ms;
            u.in_window = 0;
        }
        if u.in_window >= MAX_QUERIES_PER_POD_PER_SEC {
            return Err(Rejected::PodRateLimited);
        }
        u.in_window += 1;
        Ok(())
    }

    /// A pending query of pod `port` has ended (answered, expired, failed).
    fn pod_query_ended(pods: &mut HashMap<PortId, PodUse>, port: PortId) {
        if let Some(u) = pods.get_mut(&port) {
            u.pending = u.pending.saturating_sub(1);
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
        match result {
            Ok(()) => {}
            Err(Rejected::PodShareFull | Rejected::PodRateLimited) => self.limited += 1,
            Err(_) => self.failed += 1,
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
        let question = self.question_hash(q).ok_or(Rejected::Malformed)?;
        if self.pending.len() >= MAX_PENDING {
            return Err(Rejected::TableFull);
        }
        if self.queue.len() >= MAX_QUEUED {
            return Err(Rejected::QueueFull);
        }
        self.admit_pod(port, now_ms)?;
        let id = self.fresh_id();
        let socket = self.pick_socket();
        let upstream = self.upstream;
        let dest = Dest::Upstream {
            id,
            socket,
            addr: upstream,
        };
        if !self.enqueue(dest, q, id) {
            return Err(Rejected::QueueFull);
        }
        if let Some(s) = self.slots.get_mut(socket) {
            s.uses += 1;
            s.pending += 1;
            s.retiring |= s.uses >= QUERIES_PER_SOCKET;
        }
        if let Some(u) = self.pods.get_mut(&port) {
            u.pending += 1;
        }
        let deadline_ms = now_ms.saturating_add(TIMEOUT_MS);
        self.earliest_ms = self.earliest_ms.min(deadline_ms);
        self.pending.insert(
            id,
            Pending {
                port,
                client,
                id: orig,
                question,
                socket,
                upstream,
                deadline_ms,
            },
        );
        Ok(())
    }

    /// A datagram from the upstream, received on the pool's socket `from.socket` from
    /// `from.addr`. A response to a pending query (its id, its question, the socket it left
    /// from, the address it went to) ends it and is queued for the pod, with the pod's id
    /// (true); anything else is ignored and counted as unmatched (false). Sweeps expired
    /// queries first when due, so a response after its query's deadline may be ignored.
    pub fn handle_upstream(&mut self, now_ms: u64, from: Source, datagram: &[u8]) -> bool {
        self.handle_timeout(now_ms);
        let taken = self.answer(from, datagram);
        if !taken {
            self.unmatched += 1;
        }
        taken
    }

    fn answer(&mut self, from: Source, datagram: &[u8]) -> bool {
        let id = match datagram {
            [a, b, flags, ..] if datagram.len() >= DNS_HDR && flags & 0x80 != 0 => {
                u16::from_be_bytes([*a, *b])
            }
            _ => return false,
        };
        let Some(p) = self.pending.get(&id).copied() else {
            return false;
        };
        if p.socket != from.socket || p.upstream != from.addr {
            return false;
        }
        if self.question_hash(datagram) != Some(p.question) {
            return false;
        }
        self.pending.remove(&id);
        Self::pod_query_ended(&mut self.pods, p.port);
        Self::socket_query_ended(&mut self.slots, &mut self.reopen, p.socket);
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
        if let Some(p) = self.pending.remove(&id) {
            Self::pod_query_ended(&mut self.pods, p.port);
            Self::socket_query_ended(&mut self.slots, &mut self.reopen, p.socket);
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
        let pods = &mut self.pods;
        let (slots, reopen) = (&mut self.slots, &mut self.reopen);
        self.pending.retain(|_, p| {
            let keep = p.deadline_ms > now_ms;
            if keep {
                earliest = earliest.min(p.deadline_ms);
            } else {
                Self::pod_query_ended(pods, p.port);
                Self::socket_query_ended(slots, reopen, p.socket);
            }
            keep
        });
        // Pods with nothing pending and a window long past are forgotten.
        self.pods
            .retain(|_, u| u.pending > 0 || now_ms.saturating_sub(u.window_start_ms) < 1000);
        self.earliest_ms = earliest;
        let expired = before - self.pending.len();
        self.failed += expired as u64;
        expired
    }
}
