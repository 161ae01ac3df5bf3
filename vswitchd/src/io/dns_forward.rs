//! Forwarding to the upstream resolver (`--dns-upstream`): the socket shell around the
//! datapath's sans-IO [`vswitch_datapath::dns_forward`] state machine (id rewrite, pending
//! table, matching responses, timeouts, limits: see its contract). The queries the cluster
//! DNS does not serve ([`Verdict::DnsForward`]) go out of one non-blocking UDP socket in the
//! node's network namespace, connected to the upstream; its responses come back to the pods.
//!
//! - This shell owns only the socket, the reads and writes, and the clock (the engine's,
//!   passed in as `now_ms`); it keys the id draw with random bytes from the OS per forwarder.
//! - Every failure the state machine counts, and a failed send, counts
//!   [`DropReason::DnsUpstreamFailed`]; a query over its pod's share or rate counts
//!   [`DropReason::DnsForwardLimited`]. The connected socket only takes datagrams from the
//!   upstream's address.
//! - The reply frame is built by the datapath ([`Datapath::dns_upstream_reply`]); the engine
//!   writes it to the pod's TAP like any `ToPort`. Work per wakeup is bounded by the engine
//!   ([`DNS_BATCH`] responses).

use anyhow::{Context, Result};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use vswitch_datapath::dns_forward::{self, Dest};
use vswitch_datapath::{Datapath, Direction, DropReason, PacketBuf, PortId, Tables, Verdict};

/// Most upstream datagrams taken per wakeup.
pub const DNS_BATCH: usize = 64;
/// Largest UDP payload.
const MAX_DGRAM: usize = 65535 - 28;

/// What one receive from the upstream socket gave.
pub enum Recv {
    /// A response for a pod: carry the verdict out (the frame is in the buffer).
    Reply(Verdict),
    /// A datagram that answers nothing pending (ignored).
    Ignored,
    /// Nothing more is waiting.
    Empty,
}

/// The upstream forwarder of one engine: the socket, and the state machine.
pub struct DnsForwarder {
    sock: UdpSocket,
    upstream: SocketAddrV4,
    state: dns_forward::DnsForwarder,
    /// The latest time the engine gave (receives come without one).
    now_ms: u64,
    /// Receive buffer.
    scratch: Vec<u8>,
}

impl DnsForwarder {
    /// A non-blocking socket connected to `upstream`, in the current network namespace.
    pub fn new(upstream: SocketAddrV4) -> Result<DnsForwarder> {
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
            .context("--dns-upstream: cannot open a UDP socket")?;
        sock.connect(upstream)
            .with_context(|| format!("--dns-upstream: cannot reach {upstream}"))?;
        sock.set_nonblocking(true)?;
        let mut key = [0; 16];
        getrandom::fill(&mut key).context("--dns-upstream: no random bytes from the OS")?;
        Ok(DnsForwarder {
            sock,
            upstream,
            state: dns_forward::DnsForwarder::new(key),
            now_ms: 0,
            scratch: vec![0; MAX_DGRAM],
        })
    }

    /// The socket to watch for responses.
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// True while queries wait for the upstream (the io_uring engine then keeps a timer).
    pub fn has_pending(&self) -> bool {
        self.state.has_pending()
    }

    /// Moves the state machine's failures and limited queries to the datapath's counters.
    fn count_failed(&mut self, dp: &Datapath) {
        for _ in 0..self.state.take_failed() {
            dp.count_drop(DropReason::DnsUpstreamFailed, Direction::FromPod);
        }
        for _ in 0..self.state.take_limited() {
            dp.count_drop(DropReason::DnsForwardLimited, Direction::FromPod);
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
        while let Some(t) = self.state.poll_transmit() {
            let Dest::Upstream { id } = t.dest else {
                continue; // Responses only come out of `recv`, which drains them.
            };
            if let Err(e) = self.sock.send(t.payload) {
                self.state.transmit_failed(id);
                tracing::debug!(upstream = %self.upstream, "DNS upstream send failed: {e}");
            }
        }
        self.count_failed(dp);
    }

    /// Takes one datagram from the upstream; a response to a pending query becomes the
    /// pod's datagram in `pkt`.
    pub fn recv(&mut self, dp: &Datapath, tables: &Tables, pkt: &mut PacketBuf) -> Recv {
        let n = match self.sock.recv(&mut self.scratch) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Recv::Empty,
            Err(e) => {
                // ICMP errors (port unreachable) surface once as ECONNREFUSED: the query
                // stays pending until it times out.
                tracing::debug!(upstream = %self.upstream, "DNS upstream receive: {e}");
                return Recv::Ignored;
            }
        };
        let datagram = self.scratch.get(..n).unwrap_or_default();
        let answered = self.state.handle_upstream(self.now_ms, datagram);
        let mut verdict = None;
        while let Some(t) = self.state.poll_transmit() {
            if let Dest::Pod { port, client } = t.dest {
                verdict = Some(dp.dns_upstream_reply(tables, port, client, t.payload, pkt));
            }
        }
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
    use vswitch_datapath::dns_forward::{MAX_PENDING, MAX_PENDING_PER_POD, SWEEP_MS, TIMEOUT_MS};
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
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        upstream
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let up = match upstream.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
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
}
