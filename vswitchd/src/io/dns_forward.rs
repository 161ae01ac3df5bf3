//! Forwarding to the upstream resolver (`--dns-upstream`): the socket shell around the
//! datapath's sans-IO [`vswitch_datapath::dns_forward`] state machine (id rewrite, pending
//! table, matching responses, socket choice and rotation, timeouts, limits: see its
//! contract). The queries the cluster DNS does not serve ([`Verdict::DnsForward`]) go out of
//! a pool of [`dns_forward::SOCKETS`] non-blocking UDP sockets in the node's network
//! namespace, each bound to an ephemeral port the kernel picks at random and connected to
//! the upstream; the machine says which socket each query takes and when a socket is to be
//! replaced by one on a new port ([`dns_forward::DnsForwarder::poll_reopen`]).
//!
//! - This shell owns only the sockets, the reads and writes, and the clock (the engine's,
//!   passed in as `now_ms`); it keys the id and socket draws with random bytes from the OS
//!   per forwarder.
//! - The engine watches one descriptor ([`DnsForwarder::poll_fd`]): an epoll instance
//!   holding the pool's sockets, readable while any of them is.
//! - Every failure the state machine counts, and a failed send, counts
//!   [`DropReason::DnsUpstreamFailed`]; a query over its pod's share or rate counts
//!   [`DropReason::DnsForwardLimited`]; a datagram that answers nothing pending (wrong id,
//!   question, socket or sender) [`DropReason::DnsUpstreamUnmatched`]. The connected
//!   sockets only take datagrams from the upstream's address, and the machine checks the
//!   sender again.
//! - The reply frame is built by the datapath ([`Datapath::dns_upstream_reply`]); the engine
//!   writes it to the pod's TAP like any `ToPort`. Work per wakeup is bounded by the engine
//!   ([`DNS_BATCH`] responses).

use anyhow::{Context, Result};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use vswitch_datapath::dns_forward::{self, Dest, Source};
use vswitch_datapath::{Datapath, Direction, DropReason, PacketBuf, PortId, Tables, Verdict};

/// Most upstream datagrams taken per wakeup.
pub const DNS_BATCH: usize = 64;
/// Largest UDP payload.
const MAX_DGRAM: usize = 65535 - 28;

/// What one receive from the upstream sockets gave.
pub enum Recv {
    /// A response for a pod: carry the verdict out (the frame is in the buffer).
    Reply(Verdict),
    /// A datagram that answers nothing pending (ignored).
    Ignored,
    /// Nothing more is waiting.
    Empty,
}

/// The upstream forwarder of one engine: the socket pool, and the state machine.
pub struct DnsForwarder {
    /// The pool: socket `i` is registered in `epoll` with token `i`.
    socks: Vec<UdpSocket>,
    epoll: Epoll,
    events: Vec<EpollEvent>,
    /// Sockets the last poll of `epoll` found readable, not yet drained.
    ready: Vec<usize>,
    upstream: SocketAddrV4,
    state: dns_forward::DnsForwarder,
    /// The latest time the engine gave (receives come without one).
    now_ms: u64,
    /// Receive buffer.
    scratch: Vec<u8>,
}

/// A non-blocking UDP socket on a port the kernel picks at random, connected to `upstream`.
fn open_socket(upstream: SocketAddrV4) -> Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
        .context("--dns-upstream: cannot open a UDP socket")?;
    sock.connect(upstream)
        .with_context(|| format!("--dns-upstream: cannot reach {upstream}"))?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

impl DnsForwarder {
    /// A pool of non-blocking sockets connected to `upstream`, in the current network
    /// namespace.
    pub fn new(upstream: SocketAddrV4) -> Result<DnsForwarder> {
        let mut key = [0; 16];
        getrandom::fill(&mut key).context("--dns-upstream: no random bytes from the OS")?;
        let state = dns_forward::DnsForwarder::new(key, upstream);
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
        let mut socks = Vec::with_capacity(state.sockets());
        for i in 0..state.sockets() {
            let sock = open_socket(upstream)?;
            epoll.add(sock.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
            socks.push(sock);
        }
        Ok(DnsForwarder {
            events: vec![EpollEvent::empty(); socks.len()],
            socks,
            epoll,
            ready: Vec::new(),
            upstream,
            state,
            now_ms: 0,
            scratch: vec![0; MAX_DGRAM],
        })
    }

    /// The descriptor to watch for responses: readable while any socket of the pool is.
    pub fn poll_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }

    /// True while queries wait for the upstream (the io_uring engine then keeps a timer).
    pub fn has_pending(&self) -> bool {
        self.state.has_pending()
    }

    /// The local ports of the pool's sockets.
    #[cfg(test)]
    fn local_ports(&self) -> Vec<u16> {
        (self.socks.iter())
            .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
            .collect()
    }

    /// Replaces the sockets the state machine retired with fresh ones on new random ports.
    /// A socket that cannot be replaced (out of descriptors) is kept: it still works, on
    /// its old port.
    fn reopen(&mut self) {
        while let Some(i) = self.state.poll_reopen() {
            let Some(old) = self.socks.get_mut(i) else {
                continue;
            };
            match open_socket(self.upstream) {
                Ok(sock) => {
                    let _ = self.epoll.delete(old.as_fd());
                    if let Err(e) = (self.epoll)
                        .add(sock.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                    {
                        tracing::warn!("DNS upstream: cannot watch a new socket: {e}");
                        let _ = (self.epoll)
                            .add(old.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64));
                        continue;
                    }
                    *old = sock;
                }
                Err(e) => tracing::warn!("DNS upstream: socket {i} kept on its port: {e:#}"),
            }
        }
    }

    /// Moves the state machine's counts to the datapath's counters.
    fn count_failed(&mut self, dp: &Datapath) {
        for _ in 0..self.state.take_failed() {
            dp.count_drop(DropReason::DnsUpstreamFailed, Direction::FromPod);
        }
        for _ in 0..self.state.take_limited() {
            dp.count_drop(DropReason::DnsForwardLimited, Direction::FromPod);
        }
        for _ in 0..self.state.take_unmatched() {
            dp.count_drop(DropReason::DnsUpstreamUnmatched, Direction::Egress);
        }
    }

    /// Sends the query in `frame` (a [`Verdict::DnsForward`] for `port`/`client`) upstream.
    pub fn forward(
        &mut self,
        dp: &Datapath,
        port: PortId,
        client: SocketAddrV4,
        frame: &[u8],
        now_ms: u64,
    ) {
        self.now_ms = self.now_ms.max(now_ms);
        if let Err(why) = self.state.handle(now_ms, port, client, frame) {
            tracing::debug!(%client, "DNS upstream: query dropped ({why:?})");
        }
        self.reopen();
        while let Some(t) = self.state.poll_transmit() {
            let Dest::Upstream { id, socket, .. } = t.dest else {
                continue; // Responses only come out of `recv`, which drains them.
            };
            let sent = match self.socks.get(socket) {
                Some(sock) => sock.send(t.payload),
                None => Err(ErrorKind::NotFound.into()),
            };
            if let Err(e) = sent {
                self.state.transmit_failed(id);
                tracing::debug!(upstream = %self.upstream, "DNS upstream send failed: {e}");
            }
        }
        self.reopen();
        self.count_failed(dp);
    }

    /// Takes one datagram from the upstream sockets; a response to a pending query becomes
    /// the pod's datagram in `pkt`.
    pub fn recv(&mut self, dp: &Datapath, tables: &Tables, pkt: &mut PacketBuf) -> Recv {
        let (n, from) = loop {
            let Some(&i) = self.ready.last() else {
                let n = match self.epoll.wait(&mut self.events, EpollTimeout::ZERO) {
                    Ok(n) => n,
                    Err(_) => return Recv::Empty,
                };
                if n == 0 {
                    return Recv::Empty;
                }
                let events = self.events.get(..n).unwrap_or_default();
                self.ready.extend(events.iter().map(|e| e.data() as usize));
                continue;
            };
            let Some(sock) = self.socks.get(i) else {
                self.ready.pop();
                continue;
            };
            match sock.recv_from(&mut self.scratch) {
                Ok((n, SocketAddr::V4(a))) => break (n, Source { socket: i, addr: a }),
                Ok(_) => return Recv::Ignored,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.ready.pop();
                }
                Err(e) => {
                    // ICMP errors (port unreachable) surface once as ECONNREFUSED: the
                    // query stays pending until it times out.
                    tracing::debug!(upstream = %self.upstream, "DNS upstream receive: {e}");
                    return Recv::Ignored;
                }
            }
        };
        let datagram = self.scratch.get(..n).unwrap_or_default();
        let answered = self.state.handle_upstream(self.now_ms, from, datagram);
        let mut verdict = None;
        while let Some(t) = self.state.poll_transmit() {
            if let Dest::Pod { port, client } = t.dest {
                verdict = Some(dp.dns_upstream_reply(tables, port, client, t.payload, pkt));
            }
        }
        self.reopen();
        self.count_failed(dp);
        match verdict {
            Some(v) if answered => Recv::Reply(v),
            _ => Recv::Ignored,
        }
    }

    /// Drops (and counts) the queries whose time is up; sweeps at most every
    /// [`dns_forward::SWEEP_MS`], so it is cheap to call on every wakeup.
    pub fn expire(&mut self, dp: &Datapath, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let expired = self.state.handle_timeout(now_ms);
        self.reopen();
        self.count_failed(dp);
        if expired > 0 {
            tracing::debug!(
                upstream = %self.upstream,
                expired,
                "DNS upstream: queries timed out"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_datapath::dns_forward::{
        MAX_PENDING, MAX_PENDING_PER_POD, QUERIES_PER_SOCKET, SOCKETS, SWEEP_MS, TIMEOUT_MS,
    };
    use vswitch_datapath::{Mac, NodeConfig, PortEntry};

    const PORT: PortId = PortId::new(1);

    const POD: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
    const DNS: Ipv4Addr = Ipv4Addr::new(198, 19, 96, 10);

    fn datapath() -> Datapath {
        let mut cfg =
            NodeConfig::for_subnet(crate::checked::cidr("cidr", "198.18.1.0/24").unwrap(), 1450);
        cfg.service_cidr = Some(crate::checked::cidr("cidr", "198.19.96.0/20").unwrap());
        cfg.dns_ip = Some(DNS);
        cfg.dns_forward = true;
        let dp = Datapath::new(cfg);
        let port = PortEntry {
            id: PORT,
            mac: Mac::from_ipv4(POD),
            ip: POD,
            counters: Default::default(),
        };
        dp.install(Tables::new(vec![port], vec![]));
        dp
    }

    /// A loopback socket standing for the upstream resolver (reads time out after 2 s), and
    /// its address.
    fn upstream() -> (UdpSocket, SocketAddrV4) {
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        upstream
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let up = match upstream.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        (upstream, up)
    }

    /// Ethernet + IPv4 + UDP from the pod (port 4000) to the DNS address around `q`.
    fn frame(q: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((28 + q.len()) as u16).to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&POD.octets());
        f[30..34].copy_from_slice(&DNS.octets());
        f[34..36].copy_from_slice(&4000u16.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        f[38..40].copy_from_slice(&((8 + q.len()) as u16).to_be_bytes());
        f.extend_from_slice(q);
        f
    }

    #[test]
    fn ids_are_rewritten_restored_and_unanswered_queries_expire() {
        let (upstream, up) = upstream();
        let dp = datapath();
        let mut fwd = DnsForwarder::new(up).unwrap();
        let client = SocketAddrV4::new(POD, 4000);
        let q = [0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        fwd.forward(&dp, PORT, client, &frame(&q), 0);
        fwd.forward(&dp, PORT, client, &frame(&q), 0);
        let mut got = [0u8; 512];
        let (n, from) = upstream.recv_from(&mut got).unwrap();
        assert_eq!(&got[2..n], &q[2..]);
        let (n2, _) = upstream.recv_from(&mut got[256..]).unwrap();
        assert_eq!(n2, n);
        assert_ne!(got[..2], got[256..258], "fresh ids");
        // Answer the first.
        let mut resp = got[..n].to_vec();
        resp[2] |= 0x80;
        upstream.send_to(&resp, from).unwrap();
        let mut pkt = PacketBuf::new();
        let tables = dp.tables();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let v = loop {
            match fwd.recv(&dp, &tables, &mut pkt) {
                Recv::Reply(v) => break v,
                Recv::Ignored => {}
                Recv::Empty => assert!(std::time::Instant::now() < deadline, "no reply"),
            }
        };
        assert_eq!(v, Verdict::ToPort(PORT));
        let f = pkt.frame();
        assert_eq!(&f[42..44], &[0xab, 0xcd], "the pod's id");
        assert_eq!(&f[36..38], &4000u16.to_be_bytes());
        // The same response again matches nothing.
        upstream.send_to(&resp, from).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(matches!(fwd.recv(&dp, &tables, &mut pkt), Recv::Ignored));
        assert!(matches!(fwd.recv(&dp, &tables, &mut pkt), Recv::Empty));
        // The second expires.
        assert!(fwd.has_pending());
        fwd.expire(&dp, TIMEOUT_MS - 1);
        assert!(fwd.has_pending());
        fwd.expire(&dp, TIMEOUT_MS + SWEEP_MS);
        assert!(!fwd.has_pending());
        assert_eq!(dp.counters().drops(DropReason::DnsUpstreamFailed), 1);
    }

    /// One pod holds at most its share of the pending table; the queries over it are
    /// counted as limited, not as upstream failures.
    #[test]
    fn one_pods_share_of_the_pending_table_is_bounded() {
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        let up = match upstream.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let dp = datapath();
        let mut fwd = DnsForwarder::new(up).unwrap();
        let client = SocketAddrV4::new(POD, 4000);
        let q = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        for _ in 0..MAX_PENDING + 10 {
            fwd.forward(&dp, PORT, client, &frame(&q), 1);
        }
        assert_eq!(fwd.state.pending_len(), MAX_PENDING_PER_POD);
        assert_eq!(
            dp.counters().drops(DropReason::DnsForwardLimited),
            (MAX_PENDING + 10 - MAX_PENDING_PER_POD) as u64
        );
        assert_eq!(dp.counters().drops(DropReason::DnsUpstreamFailed), 0);
    }

    /// Queries leave from many source ports, and a socket that carried its share is replaced
    /// by one on a new port: after a few thousand queries the pool's ports have changed.
    #[test]
    fn queries_leave_from_many_ports_and_the_ports_rotate() {
        let (upstream, up) = upstream();
        let dp = datapath();
        let tables = dp.tables();
        let mut fwd = DnsForwarder::new(up).unwrap();
        let first: std::collections::HashSet<u16> = fwd.local_ports().into_iter().collect();
        assert_eq!(first.len(), SOCKETS, "one port per socket");
        let client = SocketAddrV4::new(POD, 4000);
        let q = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        let mut seen = std::collections::HashSet::new();
        let mut pkt = PacketBuf::new();
        let total = SOCKETS * QUERIES_PER_SOCKET as usize + 200;
        for i in 0..total {
            let now = (i as u64 / 400) * 1000; // under the pod's rate
            fwd.forward(&dp, PORT, client, &frame(&q), now);
            let mut got = [0u8; 512];
            let (n, from) = upstream.recv_from(&mut got).unwrap();
            seen.insert(from.port());
            got[2] |= 0x80;
            upstream.send_to(&got[..n], from).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                match fwd.recv(&dp, &tables, &mut pkt) {
                    Recv::Reply(v) => break assert_eq!(v, Verdict::ToPort(PORT)),
                    Recv::Ignored => panic!("a genuine answer was ignored"),
                    Recv::Empty => assert!(std::time::Instant::now() < deadline, "no reply"),
                }
            }
        }
        let now: std::collections::HashSet<u16> = fwd.local_ports().into_iter().collect();
        assert_eq!(now.len(), SOCKETS);
        assert!(
            now.intersection(&first).count() < SOCKETS / 2,
            "the pool's ports did not rotate: {first:?} -> {now:?}"
        );
        assert!(seen.len() > SOCKETS, "{} source ports", seen.len());
        assert_eq!(dp.counters().drops(DropReason::DnsUpstreamUnmatched), 0);
        assert_eq!(dp.counters().drops(DropReason::DnsUpstreamFailed), 0);
    }

    /// An answer with the right id and question from another port of the upstream's host
    /// never reaches the state machine (connected sockets), and one with the right id from
    /// the upstream but another question is dropped and counted.
    #[test]
    fn spoofed_answers_are_dropped_and_counted() {
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        upstream
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let spoofer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let up = match upstream.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let dp = datapath();
        let tables = dp.tables();
        let mut fwd = DnsForwarder::new(up).unwrap();
        let client = SocketAddrV4::new(POD, 4000);
        // Question: "a" A IN.
        let q = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        fwd.forward(&dp, PORT, client, &frame(&q), 0);
        let mut got = [0u8; 512];
        let (n, from) = upstream.recv_from(&mut got).unwrap();
        let mut genuine = got[..n].to_vec();
        genuine[2] |= 0x80;
        let mut wrong_q = genuine.clone();
        wrong_q[13] = b'b';
        spoofer.send_to(&genuine, from).unwrap();
        upstream.send_to(&wrong_q, from).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut pkt = PacketBuf::new();
        loop {
            match fwd.recv(&dp, &tables, &mut pkt) {
                Recv::Reply(_) => panic!("a spoofed answer was delivered"),
                Recv::Ignored => {}
                Recv::Empty => break,
            }
        }
        assert_eq!(dp.counters().drops(DropReason::DnsUpstreamUnmatched), 1);
        assert!(fwd.has_pending());
        upstream.send_to(&genuine, from).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match fwd.recv(&dp, &tables, &mut pkt) {
                Recv::Reply(v) => break assert_eq!(v, Verdict::ToPort(PORT)),
                Recv::Ignored => panic!("the genuine answer was ignored"),
                Recv::Empty => assert!(std::time::Instant::now() < deadline, "no reply"),
            }
        }
    }
}
