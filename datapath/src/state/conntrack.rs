//! Connection tracking for service NAT: a bounded concurrent map from the 5-tuples of both
//! directions of a connection to the connection, with TCP-state-aware timeouts.
//!
//! - A connection is keyed twice: by its original tuple (client -> VIP, as the client sends)
//!   and by its reply tuple (endpoint -> client, or -> the SNAT address on hairpin, as the
//!   endpoint answers). One lookup per packet tells the direction.
//! - Every packet moves its connection's state ([`crate::state::ct_state`]) and refreshes the
//!   timeout of the state it is in.
//! - Expiry: [`Conntrack::expire`] (the shell's periodic call) removes idle connections; a
//!   lookup that finds an expired one removes it and reports a miss.
//! - Bounded: at most `max` connections, and at most `pod_max` of them per client (the pod
//!   that opened them: the original source); a client at its share gets its new
//!   connections refused ([`DropReason::ConntrackPodLimit`]) and the others are untouched.
//!   When the table is full, a new connection evicts an expired or not yet *assured* one
//!   (TCP not established, UDP never answered), the oldest first, found in O(1) amortised
//!   from a queue of the connections in creation order (each enters it once and leaves it
//!   once; one still unassured is moved to the back when the queue is long); assured
//!   connections are never evicted, so a table full of them refuses new connections
//!   ([`DropReason::ConntrackFull`]).
//! - Reply tuples are unique: when the natural one is taken (hairpin, or one client port
//!   reaching the same endpoint through two VIPs, or through a VIP and directly), the source
//!   port is rewritten to one from a per-datapath allocator (SNAT), as netfilter's NAT does.
//! - *Direct* connections (a local pod to a service endpoint's address and port, not through
//!   a VIP) are tracked too, as connections whose endpoint is their own destination
//!   ([`Conn::is_direct`]), so that the two kinds never share a tuple at the endpoint: a
//!   VIP connection created while a direct one holds `endpoint -> client:port` gets another
//!   source port, and a direct connection opened while a VIP connection holds that tuple
//!   gets its source port rewritten (both ways) instead. Direct flows to addresses that are
//!   no endpoint are not tracked (they cannot meet a VIP connection), nor are direct TCP
//!   connections that began before their destination became an endpoint, nor a pod's
//!   direct ones beyond half its share of the table (see `pipeline/services.rs`).
//! - A generation counter moves with every change worth saving (a connection created or
//!   removed, a state transition), so that the shell checkpoints the table only when it
//!   changed ([`crate::state::ct_persist`]).

use crate::counters::DropReason;
use crate::state::ct_state::State;
use crate::wire::l4::{L4Proto, Tuple};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use siphasher::sip::SipHasher13;
use std::collections::VecDeque;
use std::hash::Hasher;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed,
};
use std::sync::{Arc, Mutex, Weak};

/// One tracked connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Client -> VIP, as the client sends it.
    pub orig: Tuple,
    /// Endpoint -> client (or the SNAT address), as the endpoint answers.
    pub reply: Tuple,
    state: AtomicU8,
    assured: AtomicBool,
    expires_ms: AtomicU64,
    /// Set once, when the connection leaves the table.
    removed: AtomicBool,
}

impl Conn {
    fn new(orig: Tuple, reply: Tuple, state: State, assured: bool, expires_ms: u64) -> Conn {
        Conn {
            orig,
            reply,
            state: AtomicU8::new(state as u8),
            assured: AtomicBool::new(assured),
            expires_ms: AtomicU64::new(expires_ms),
            removed: AtomicBool::new(false),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Relaxed))
    }

    /// True when traffic went both ways.
    pub(crate) fn assured(&self) -> bool {
        self.assured.load(Relaxed)
    }

    /// When it expires, on the datapath's clock.
    pub(crate) fn expires_ms(&self) -> u64 {
        self.expires_ms.load(Relaxed)
    }

    /// True for a direct connection: its endpoint is its own destination, no VIP.
    pub(crate) fn is_direct(&self) -> bool {
        self.orig.dst == self.reply.src && self.orig.dport == self.reply.sport
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.load(Relaxed) <= now_ms
    }

    /// Accounts a packet in direction `reply` with TCP `flags` seen at `now_ms`: state
    /// transition and timeout refresh. Returns the previous and the new state.
    fn seen(&self, reply: bool, flags: u8, now_ms: u64) -> (State, State) {
        let prev = self.state.fetch_update(Relaxed, Relaxed, |s| {
            Some(State::from_u8(s).next(reply, flags) as u8)
        });
        let prev = State::from_u8(prev.unwrap_or_else(|s| s));
        let s = prev.next(reply, flags);
        if s.assures() {
            self.assured.store(true, Relaxed);
        }
        self.expires_ms
            .store(now_ms.saturating_add(s.timeout_ms()), Relaxed);
        (prev, s)
    }
}

/// Why [`Conntrack::restore`] did not install a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestoreSkip {
    /// One of its tuples is taken by a live connection.
    Duplicate,
    /// The table is full.
    Full,
}

/// A map value: the connection and which of its directions the key is.
#[derive(Clone, Debug)]
struct CtRef {
    reply: bool,
    conn: Arc<Conn>,
}

/// Queue entries tidied per new connection (see [`Conntrack::enqueue`]).
const QUEUE_STEPS: usize = 4;
/// When no unassured connection is left to evict, how many map entries are scanned for an
/// expired (assured) one, and how often at most (ms of the datapath's clock): the shell's
/// periodic [`Conntrack::expire`] removes those anyway; this only spares a new connection
/// the wait for it.
const EXPIRED_SCAN: usize = 4096;
const EXPIRED_SCAN_EVERY_MS: u64 = 100;
/// How many SNAT ports are tried for a unique reply tuple.
const PORT_TRIES: usize = 64;
/// SNAT source ports: 32768..=60999 (Linux's default ephemeral range). The n-th port the
/// allocator hands out is a keyed hash (SipHash-1-3 under the node's secret) of n, so an
/// off-path host cannot predict the next one from those it saw (a sequential cursor let a
/// forged "endpoint reply" guess the hairpin reply tuple); a port that clashes is simply
/// followed by the next draw.
const SNAT_PORT_MIN: u32 = 32768;
const SNAT_PORT_COUNT: u32 = 61000 - 32768;

/// The connection table.
pub(crate) struct Conntrack {
    map: DashMap<Tuple, CtRef>,
    conns: AtomicUsize,
    max: usize,
    /// Connections per client address, and the most one client may hold.
    per_client: DashMap<Ipv4Addr, usize>,
    pod_max: usize,
    /// Eviction candidates in creation order (see the module docs). A lock taken once per
    /// new connection and per eviction, never per packet of a known connection.
    queue: Mutex<VecDeque<Weak<Conn>>>,
    /// When the last scan for an expired connection ran (see [`EXPIRED_SCAN`]).
    last_scan_ms: AtomicU64,
    next_port: AtomicU32,
    /// The key of the SNAT port draw.
    key: [u8; 16],
    /// Moves with every creation, removal and state transition.
    generation: AtomicU64,
    /// Live (unexpired, unassured) connections evicted to make room.
    evicted: AtomicU64,
}

impl Conntrack {
    /// A table of at most `max` connections, `pod_max` per client, whose SNAT ports are
    /// drawn under `key`.
    pub(crate) fn new(max: usize, pod_max: usize, key: [u8; 16]) -> Conntrack {
        Conntrack {
            map: DashMap::new(),
            conns: AtomicUsize::new(0),
            max,
            per_client: DashMap::new(),
            pod_max,
            queue: Mutex::new(VecDeque::new()),
            last_scan_ms: AtomicU64::new(0),
            next_port: AtomicU32::new(0),
            key,
            generation: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// A counter that moves whenever a connection is created or removed or changes state.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Relaxed);
    }

    /// Accounts a packet of `conn` (see [`Conn::seen`]); returns the new state.
    pub(crate) fn seen(&self, conn: &Conn, reply: bool, flags: u8, now_ms: u64) -> State {
        let (prev, s) = conn.seen(reply, flags, now_ms);
        if prev != s {
            self.changed();
        }
        s
    }

    /// The SNAT port allocator's cursor.
    pub(crate) fn snat_cursor(&self) -> u32 {
        self.next_port.load(Relaxed) % SNAT_PORT_COUNT
    }

    /// Moves the SNAT port allocator's cursor (restoring a saved table).
    pub(crate) fn set_snat_cursor(&self, cursor: u32) {
        self.next_port.store(cursor % SNAT_PORT_COUNT, Relaxed);
    }

    /// True when `port` is one the SNAT allocator hands out.
    pub(crate) fn is_snat_port(port: u16) -> bool {
        (SNAT_PORT_MIN..SNAT_PORT_MIN + SNAT_PORT_COUNT).contains(&u32::from(port))
    }

    /// The live connections (each once), for a snapshot.
    pub(crate) fn live(&self, now_ms: u64) -> Vec<Arc<Conn>> {
        self.map
            .iter()
            .filter(|r| !r.reply && !r.conn.expired(now_ms))
            .map(|r| r.conn.clone())
            .collect()
    }

    /// Installs a connection restored from a snapshot (validated by the caller), unless one
    /// of its tuples is taken or the table is full. Never evicts.
    pub(crate) fn restore(
        &self,
        orig: Tuple,
        reply: Tuple,
        state: State,
        assured: bool,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), RestoreSkip> {
        // Clears expired holders of either tuple.
        if self.lookup(&orig, now_ms).is_some() || self.lookup(&reply, now_ms).is_some() {
            return Err(RestoreSkip::Duplicate);
        }
        let max = self.max;
        if self
            .conns
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_err()
        {
            return Err(RestoreSkip::Full);
        }
        if !self.take_client_slot(orig.src) {
            self.conns.fetch_sub(1, Relaxed);
            return Err(RestoreSkip::Full);
        }
        let conn = Arc::new(Conn::new(orig, reply, state, assured, expires_ms));
        let r = CtRef {
            reply: true,
            conn: conn.clone(),
        };
        if let Entry::Vacant(v) = self.map.entry(reply) {
            v.insert(r);
            if let Entry::Vacant(v) = self.map.entry(orig) {
                v.insert(CtRef {
                    reply: false,
                    conn: conn.clone(),
                });
                self.enqueue(&conn);
                self.changed();
                return Ok(());
            }
            self.map
                .remove_if(&reply, |_, r| Arc::ptr_eq(&r.conn, &conn));
        }
        self.conns.fetch_sub(1, Relaxed);
        self.give_client_slot(orig.src);
        Err(RestoreSkip::Duplicate)
    }

    /// Connections of client `client`, and the most it may hold.
    pub(crate) fn client_share(&self, client: Ipv4Addr) -> (usize, usize) {
        let n = self.per_client.get(&client).map_or(0, |n| *n);
        (n, self.pod_max)
    }

    /// Number of connections.
    pub(crate) fn len(&self) -> usize {
        self.conns.load(Relaxed)
    }

    /// Live connections evicted so far to make room for new ones (expired ones removed on
    /// the way are not counted).
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }

    /// The live connection a packet with tuple `t` belongs to, and whether the packet goes
    /// in the reply direction. An expired connection found on the way is removed.
    pub(crate) fn lookup(&self, t: &Tuple, now_ms: u64) -> Option<(bool, Arc<Conn>)> {
        if self.len() == 0 {
            return None;
        }
        let r = self.map.get(t).map(|r| r.value().clone())?;
        if r.conn.expired(now_ms) {
            self.remove(&r.conn);
            return None;
        }
        Some((r.reply, r.conn))
    }

    /// [`Conntrack::lookup`] without side effects (`vswitchctl trace`): an expired
    /// connection is not removed, only not found.
    pub(crate) fn peek(&self, t: &Tuple, now_ms: u64) -> Option<(bool, Arc<Conn>)> {
        if self.len() == 0 {
            return None;
        }
        let r = self.map.get(t).map(|r| r.value().clone())?;
        (!r.conn.expired(now_ms)).then_some((r.reply, r.conn))
    }

    /// The connection [`Conntrack::create`] would make, without making it (`vswitchctl
    /// trace`): nothing is inserted, no slot or SNAT port is taken (the port shown is the
    /// allocator's next draw). Errors as `create` would fail now: the client is at its
    /// share ([`DropReason::ConntrackPodLimit`]).
    pub(crate) fn probe(
        &self,
        orig: Tuple,
        ep: SocketAddrV4,
        snat: Option<Ipv4Addr>,
        flags: u8,
        now_ms: u64,
    ) -> Result<Arc<Conn>, DropReason> {
        if self
            .per_client
            .get(&orig.src)
            .is_some_and(|n| *n >= self.pod_max)
        {
            return Err(DropReason::ConntrackPodLimit);
        }
        let state = State::initial(orig.proto, flags);
        let mut reply = initial_reply(&orig, ep, snat);
        if snat.is_some() || self.map.contains_key(&reply) {
            reply.dport = self.draw_port(self.next_port.load(Relaxed) % SNAT_PORT_COUNT);
        }
        let expires_ms = now_ms.saturating_add(state.timeout_ms());
        Ok(Arc::new(Conn::new(
            orig,
            reply,
            state,
            state.assures(),
            expires_ms,
        )))
    }

    /// Creates the connection of a packet with tuple `orig` (and TCP `flags`) to endpoint
    /// `ep`. With `snat`, the source becomes that address with an allocated port; without,
    /// the source stays unless the reply tuple is taken. When another packet created the
    /// same connection meanwhile, returns that one.
    pub(crate) fn create(
        &self,
        orig: Tuple,
        ep: SocketAddrV4,
        snat: Option<Ipv4Addr>,
        flags: u8,
        now_ms: u64,
    ) -> Result<Arc<Conn>, DropReason> {
        if !self.take_client_slot(orig.src) {
            return Err(DropReason::ConntrackPodLimit);
        }
        if !self.reserve(now_ms) {
            self.give_client_slot(orig.src);
            return Err(DropReason::ConntrackFull);
        }
        let state = State::initial(orig.proto, flags);
        let mut reply = initial_reply(&orig, ep, snat);
        let mut conn = None;
        for i in 0..=PORT_TRIES {
            if snat.is_some() || i > 0 {
                reply.dport = self.alloc_port();
            }
            let _ = self.lookup(&reply, now_ms); // clears an expired holder
            let expires_ms = now_ms.saturating_add(state.timeout_ms());
            let c = Arc::new(Conn::new(orig, reply, state, state.assures(), expires_ms));
            if let Entry::Vacant(v) = self.map.entry(reply) {
                v.insert(CtRef {
                    reply: true,
                    conn: c.clone(),
                });
                conn = Some(c);
                break;
            }
        }
        let Some(conn) = conn else {
            self.conns.fetch_sub(1, Relaxed);
            self.give_client_slot(orig.src);
            return Err(DropReason::ConntrackFull);
        };
        let existing = match self.map.entry(orig) {
            Entry::Vacant(v) => {
                v.insert(CtRef {
                    reply: false,
                    conn: conn.clone(),
                });
                None
            }
            Entry::Occupied(o) => Some(o.get().conn.clone()),
        };
        match existing {
            None => {
                self.enqueue(&conn);
                self.changed();
                Ok(conn)
            }
            Some(other) => {
                self.map
                    .remove_if(&conn.reply, |_, r| Arc::ptr_eq(&r.conn, &conn));
                self.conns.fetch_sub(1, Relaxed);
                self.give_client_slot(orig.src);
                Ok(other)
            }
        }
    }

    /// Removes connection `c` (both keys). True when this call removed it.
    pub(crate) fn remove(&self, c: &Arc<Conn>) -> bool {
        let removed = self
            .map
            .remove_if(&c.orig, |_, r| Arc::ptr_eq(&r.conn, c))
            .is_some();
        if removed {
            c.removed.store(true, Relaxed);
            self.conns.fetch_sub(1, Relaxed);
            self.give_client_slot(c.orig.src);
            self.changed();
        }
        self.map.remove_if(&c.reply, |_, r| Arc::ptr_eq(&r.conn, c));
        removed
    }

    /// Takes a slot for a new connection, evicting one when the table is full.
    fn reserve(&self, now_ms: u64) -> bool {
        for _ in 0..2 {
            let max = self.max;
            if self
                .conns
                .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
                .is_ok()
            {
                return true;
            }
            if !self.evict_one(now_ms) {
                return false;
            }
        }
        false
    }

    /// Takes one of `client`'s [`Conntrack::pod_max`] slots; false when it has none left.
    fn take_client_slot(&self, client: Ipv4Addr) -> bool {
        let mut n = self.per_client.entry(client).or_insert(0);
        if *n >= self.pod_max {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives one of `client`'s slots back (its entry goes with its last connection).
    fn give_client_slot(&self, client: Ipv4Addr) {
        if let Entry::Occupied(mut o) = self.per_client.entry(client) {
            *o.get_mut() = o.get().saturating_sub(1);
            if *o.get() == 0 {
                o.remove();
            }
        }
    }

    /// Connections `client` holds.
    #[cfg(test)]
    pub(crate) fn client_len(&self, client: Ipv4Addr) -> usize {
        self.per_client.get(&client).map_or(0, |n| *n)
    }

    /// Queues a new connection as an eviction candidate, unless it is assured already, and
    /// tidies the queue's head (dead or assured entries leave; a live unassured one moves
    /// to the back once the queue is longer than the table), so the queue stays within
    /// about twice the table.
    fn enqueue(&self, c: &Arc<Conn>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if !c.assured() {
            q.push_back(Arc::downgrade(c));
        }
        for _ in 0..QUEUE_STEPS {
            let Some(w) = q.pop_front() else { break };
            match w.upgrade() {
                Some(h) if !h.removed.load(Relaxed) && !h.assured() => {
                    q.push_front(w);
                    if q.len() <= self.max {
                        break;
                    }
                    if let Some(w) = q.pop_front() {
                        q.push_back(w);
                    }
                }
                _ => {}
            }
        }
    }

    /// Evicts the oldest connection that is expired or not assured, from the queue's head;
    /// when the queue has none, an expired one found by a bounded scan (at most every
    /// [`EXPIRED_SCAN_EVERY_MS`]). False when there is none (every connection is assured
    /// and live).
    fn evict_one(&self, now_ms: u64) -> bool {
        loop {
            let victim = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let Some(w) = q.pop_front() else {
                    drop(q);
                    return self.evict_expired(now_ms);
                };
                w.upgrade()
            };
            let Some(c) = victim else { continue };
            if c.removed.load(Relaxed) {
                continue;
            }
            if !c.expired(now_ms) && c.assured() {
                continue; // assured for good: never a candidate again
            }
            let live = !c.expired(now_ms);
            if self.remove(&c) && live {
                self.evicted.fetch_add(1, Relaxed);
            }
            return true;
        }
    }

    /// Removes an expired connection found among the first [`EXPIRED_SCAN`] entries, if the
    /// last such scan is [`EXPIRED_SCAN_EVERY_MS`] old.
    fn evict_expired(&self, now_ms: u64) -> bool {
        let last = self.last_scan_ms.load(Relaxed);
        if now_ms < last.saturating_add(EXPIRED_SCAN_EVERY_MS)
            || self
                .last_scan_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_err()
        {
            return false;
        }
        let victim = self
            .map
            .iter()
            .take(EXPIRED_SCAN)
            .find(|r| r.conn.expired(now_ms))
            .map(|r| r.conn.clone());
        victim.is_some_and(|c| {
            self.remove(&c);
            true
        })
    }

    fn alloc_port(&self) -> u16 {
        let n = self.next_port.fetch_add(1, Relaxed) % SNAT_PORT_COUNT;
        self.draw_port(n)
    }

    /// The SNAT port of draw `n`.
    fn draw_port(&self, n: u32) -> u16 {
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write_u32(n);
        let draw = h.finish() % u64::from(SNAT_PORT_COUNT);
        #[allow(clippy::cast_possible_truncation)] // below SNAT_PORT_MIN + SNAT_PORT_COUNT = 61000
        let port = (u64::from(SNAT_PORT_MIN) + draw) as u16;
        port
    }

    /// Removes every connection for which `pred` holds; returns how many.
    fn remove_where(&self, pred: impl Fn(&Conn) -> bool) -> usize {
        // Both halves are looked at, so a half left over by a race still goes.
        let victims: Vec<Arc<Conn>> = self
            .map
            .iter()
            .filter(|r| pred(&r.conn))
            .map(|r| r.conn.clone())
            .collect();
        victims.iter().filter(|c| self.remove(c)).count()
    }

    /// Removes every connection for which `pred` holds (`vswitchctl conntrack flush`);
    /// returns how many.
    pub(crate) fn remove_matching(&self, pred: impl Fn(&Conn) -> bool) -> usize {
        self.remove_where(pred)
    }

    /// Removes the connections whose endpoint is `ep` (of protocol `proto`, or all).
    pub(crate) fn flush_endpoint(&self, ep: Ipv4Addr, proto: Option<L4Proto>) -> usize {
        self.remove_where(|c| c.reply.src == ep && proto.is_none_or(|p| c.orig.proto == p))
    }

    /// Removes the connections idle past their timeout.
    pub(crate) fn expire(&self, now_ms: u64) -> usize {
        self.remove_where(|c| c.expired(now_ms))
    }

    /// [`Conntrack::expire`], calling `on` with each connection it removed (the flow log's
    /// connection ends).
    pub(crate) fn expire_each(&self, now_ms: u64, mut on: impl FnMut(&Conn)) -> usize {
        let victims: Vec<Arc<Conn>> = self
            .map
            .iter()
            .filter(|r| r.conn.expired(now_ms))
            .map(|r| r.conn.clone())
            .collect();
        let mut n = 0;
        for c in &victims {
            if self.remove(c) {
                on(c);
                n += 1;
            }
        }
        n
    }
}

/// The reply tuple of a new connection from `orig` to endpoint `ep` before any port is
/// remapped: from the endpoint, to `snat` (hairpin) or the client, at the client's port.
fn initial_reply(orig: &Tuple, ep: SocketAddrV4, snat: Option<Ipv4Addr>) -> Tuple {
    Tuple {
        proto: orig.proto,
        src: *ep.ip(),
        sport: ep.port(),
        dst: snat.unwrap_or(orig.src),
        dport: orig.sport,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // tests may panic
mod tests {
    use super::*;
    use crate::wire::l4::{TCP_ACK, TCP_SYN};

    const SA: u8 = TCP_SYN | TCP_ACK;

    fn t(sport: u16) -> Tuple {
        Tuple {
            proto: L4Proto::Tcp,
            src: Ipv4Addr::new(198, 18, 1, 2),
            sport,
            dst: Ipv4Addr::new(198, 19, 96, 20),
            dport: 80,
        }
    }

    fn ep() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 3), 8080)
    }

    #[test]
    fn both_directions_find_the_connection() {
        let ct = Conntrack::new(8, 8, [0; 16]);
        let c = ct.create(t(1), ep(), None, TCP_SYN, 0).unwrap();
        assert_eq!(c.reply.dst, t(1).src);
        assert_eq!(c.reply.dport, 1);
        let (reply, found) = ct.lookup(&t(1), 1).unwrap();
        assert!(!reply && Arc::ptr_eq(&found, &c));
        let (reply, found) = ct.lookup(&c.reply, 1).unwrap();
        assert!(reply && Arc::ptr_eq(&found, &c));
        // Creating it again (a race) returns the first one.
        let again = ct.create(t(1), ep(), None, TCP_SYN, 0).unwrap();
        assert!(Arc::ptr_eq(&again, &c));
        assert_eq!((ct.len(), ct.map.len()), (1, 2));
        assert!(ct.remove(&c));
        assert!(!ct.remove(&c));
        assert_eq!((ct.len(), ct.map.len()), (0, 0));
    }

    #[test]
    fn reply_tuple_clashes_get_a_snat_port() {
        let ct = Conntrack::new(8, 8, [0; 16]);
        let a = ct.create(t(1), ep(), None, TCP_SYN, 0).unwrap();
        // Same client port, another VIP, same endpoint: the natural reply tuple is taken.
        let mut other = t(1);
        other.dst = Ipv4Addr::new(198, 19, 96, 21);
        let b = ct.create(other, ep(), None, TCP_SYN, 0).unwrap();
        assert_eq!(b.reply.dst, a.reply.dst, "the client's address is kept");
        assert_ne!(b.reply.dport, a.reply.dport);
        assert!((32768..61000).contains(&b.reply.dport));
        // Hairpin: SNAT to the given address, always with an allocated port.
        let gw = Ipv4Addr::new(198, 18, 1, 1);
        let h = ct.create(t(2), ep(), Some(gw), TCP_SYN, 0).unwrap();
        assert_eq!(h.reply.dst, gw);
        assert_ne!(h.reply.dport, 2);
        assert_eq!(ct.len(), 3);
    }

    /// Hairpin SNAT ports are drawn under the key: not a run of consecutive ports, and
    /// another key gives other ports.
    #[test]
    fn snat_ports_are_not_sequential_and_follow_the_key() {
        let gw = Ipv4Addr::new(198, 18, 1, 1);
        let ports = |key: [u8; 16]| -> Vec<u16> {
            let ct = Conntrack::new(64, 64, key);
            (1..=32)
                .map(|p| {
                    ct.create(t(p), ep(), Some(gw), TCP_SYN, 0)
                        .unwrap()
                        .reply
                        .dport
                })
                .collect()
        };
        let a = ports([0; 16]);
        assert!(a.iter().all(|p| Conntrack::is_snat_port(*p)));
        let steps_of_one = a
            .windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count();
        assert!(steps_of_one < 3, "sequential: {a:?}");
        assert_eq!(a, ports([0; 16]), "the same key draws the same ports");
        let b = ports([7; 16]);
        assert!(
            a.iter().zip(&b).filter(|(x, y)| x == y).count() < 3,
            "{a:?} {b:?}"
        );
    }

    #[test]
    fn a_full_table_evicts_unassured_connections_and_counts_them() {
        let ct = Conntrack::new(4, usize::MAX, [0; 16]);
        let est = ct.create(t(1), ep(), None, TCP_SYN, 0).unwrap();
        est.seen(true, SA, 0);
        est.seen(false, TCP_ACK, 0);
        for p in 2..100 {
            ct.create(t(p), ep(), None, TCP_SYN, 0).unwrap();
        }
        assert_eq!(ct.len(), 4);
        assert_eq!(ct.evicted(), 95, "every SYN past the 4th evicted one");
        assert!(ct.lookup(&t(1), 1).is_some(), "the established one stays");
        // Expired connections make room without counting as evictions.
        ct.create(t(100), ep(), None, TCP_SYN, 31_000).unwrap();
        assert_eq!(ct.evicted(), 95);
    }

    /// Client `c`'s tuple number `n`.
    fn from(c: u8, n: u16) -> Tuple {
        Tuple {
            src: Ipv4Addr::new(198, 18, 1, c),
            ..t(n)
        }
    }

    fn assure(c: &Conn) {
        c.seen(true, SA, 0);
        c.seen(false, TCP_ACK, 0);
    }

    /// A pod at its share gets its new connections refused; the others are untouched, and
    /// a closed connection gives its slot back.
    #[test]
    fn each_pod_holds_at_most_its_share() {
        let ct = Conntrack::new(100, 3, [0; 16]);
        let a: Vec<_> = (1..=3)
            .map(|n| ct.create(from(2, n), ep(), None, TCP_SYN, 0).unwrap())
            .collect();
        for c in &a {
            assure(c);
        }
        assert_eq!(
            ct.create(from(2, 4), ep(), None, TCP_SYN, 0).unwrap_err(),
            DropReason::ConntrackPodLimit
        );
        assert_eq!(ct.client_len(Ipv4Addr::new(198, 18, 1, 2)), 3);
        for n in 1..=3 {
            ct.create(from(5, n), ep(), None, TCP_SYN, 0).unwrap();
        }
        assert!(ct.remove(&a[0]));
        ct.create(from(2, 4), ep(), None, TCP_SYN, 0).unwrap();
        assert_eq!(ct.len(), 6);
        // A client whose last connection goes leaves no entry behind.
        ct.expire(u64::MAX);
        assert_eq!((ct.len(), ct.per_client.len()), (0, 0));
    }

    /// A full table finds the evictable connection wherever it is, without scanning: 5,000
    /// assured connections of many pods and one half-open one created last.
    #[test]
    fn eviction_finds_the_one_candidate_behind_thousands_of_assured() {
        let n = 5000;
        let ct = Conntrack::new(n, 64, [0; 16]);
        for i in 0..n - 1 {
            let c = u8::try_from(2 + i / 64).unwrap();
            let conn = ct.create(from(c, (i % 64) as u16 + 1), ep(), None, TCP_SYN, 0);
            assure(&conn.unwrap());
        }
        let half_open = ct.create(from(250, 1), ep(), None, TCP_SYN, 0).unwrap();
        assert_eq!(ct.len(), n);
        let newer = ct.create(from(251, 1), ep(), None, TCP_SYN, 0).unwrap();
        assert!(
            half_open.removed.load(Relaxed),
            "the half-open one was evicted"
        );
        assert!(!newer.removed.load(Relaxed));
        assert_eq!((ct.len(), ct.evicted()), (n, 1));
        // The queue holds only what can still be evicted (the assured ones left it).
        assert!(ct.queue.lock().unwrap().len() <= 2);
        // Now only assured connections but `newer`: it goes, then nothing can.
        ct.create(from(252, 1), ep(), None, TCP_SYN, 0).unwrap();
        assure(&ct.lookup(&from(252, 1), 0).unwrap().1);
        assert_eq!(
            ct.create(from(253, 1), ep(), None, TCP_SYN, 0).unwrap_err(),
            DropReason::ConntrackFull
        );
    }

    /// The eviction queue stays bounded when connections come and go without the table
    /// ever filling, and when a few never get assured.
    #[test]
    fn the_eviction_queue_stays_bounded() {
        let ct = Conntrack::new(64, 64, [0; 16]);
        let keep: Vec<_> = (1..=8)
            .map(|n| ct.create(from(2, n), ep(), None, TCP_SYN, 0).unwrap())
            .collect();
        for i in 0..10_000u32 {
            let c = ct
                .create(from(3, (i % 60_000) as u16 + 1), ep(), None, TCP_SYN, 0)
                .unwrap();
            assert!(ct.remove(&c));
        }
        assert!(
            ct.queue.lock().unwrap().len() <= 2 * 64,
            "grew without bound"
        );
        assert!(keep.iter().all(|c| !c.removed.load(Relaxed)));
    }

    #[test]
    fn expire_and_flush_count_connections() {
        let ct = Conntrack::new(8, 8, [0; 16]);
        let c = ct.create(t(1), ep(), None, TCP_SYN, 0).unwrap();
        ct.create(t(2), ep(), None, TCP_SYN, 0).unwrap();
        let g = ct.generation();
        assert_eq!(ct.seen(&c, true, SA, 0), State::SynRecv);
        assert_eq!(ct.seen(&c, true, SA, 0), State::SynRecv);
        assert_eq!(ct.generation(), g + 1, "a transition, then none");
        ct.seen(&c, false, TCP_ACK, 0);
        assert!(c.assured());
        assert_eq!(ct.expire(30_000), 1);
        assert_eq!(ct.len(), 1);
        assert_eq!(ct.flush_endpoint(*ep().ip(), Some(L4Proto::Udp)), 0);
        assert_eq!(ct.flush_endpoint(*ep().ip(), Some(L4Proto::Tcp)), 1);
        assert_eq!((ct.len(), ct.map.len()), (0, 0));
    }
}
