//! The receiver: recvmmsg batches with a receive timeout, a large socket buffer, and the
//! bookkeeping of `stats`.

use crate::sender::MAX_BATCH;
use crate::stats::{LatencySummary, RxStats, StreamReport};
use crate::{mib_delta, now_ns, secs_to_ns, udp_mib, Error, Result, StopReason, WIRE_EXTRA};
use nix::errno::Errno;
use nix::sys::socket::{
    getsockopt, recvmmsg, setsockopt, sockopt, MsgFlags, MultiHeaders, SockaddrStorage,
};
use serde::Serialize;
use std::io::IoSliceMut;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Bytes copied out of each datagram: the header and some. With MSG_TRUNC the kernel still
/// reports the full length, so large frames cost no copy here.
const SLOT: usize = 64;
/// Socket receive buffer asked for (SO_RCVBUFFORCE as root, else SO_RCVBUF up to rmem_max).
pub const RCVBUF: usize = 64 << 20;
/// Longest a single receive call blocks: the stop conditions are checked at least this often.
const POLL: Duration = Duration::from_millis(20);

/// When to stop receiving.
#[derive(Debug, Clone)]
pub struct RecvConfig {
    /// Address to bind.
    pub bind: SocketAddrV4,
    /// Seconds to receive at most.
    pub duration_secs: f64,
    /// Seconds without a datagram, once one arrived, that end the run.
    pub idle_secs: f64,
    /// Stop after this many valid datagrams.
    pub expect: Option<u64>,
    /// Datagrams per recvmmsg, `1..=MAX_BATCH`.
    pub batch: usize,
}

impl RecvConfig {
    /// Defaults of the command line for `bind`.
    pub fn new(bind: SocketAddrV4) -> Self {
        RecvConfig {
            bind,
            duration_secs: 15.0,
            idle_secs: 2.0,
            expect: None,
            batch: 256,
        }
    }
}

/// What a receiver saw.
#[derive(Debug, Clone, Serialize)]
pub struct RecvReport {
    /// Bound address, `IP:PORT`.
    pub bind: String,
    /// Datagrams with a valid header, duplicates included.
    pub received: u64,
    /// Sum of the streams' `lost` (sequence gaps; tail losses are invisible).
    pub lost: u64,
    /// Sum of the streams' `reordered`.
    pub reordered: u64,
    /// Sum of the streams' `duplicates`.
    pub duplicates: u64,
    /// Datagrams too short or without the magic.
    pub malformed: u64,
    /// Per-stream counters.
    pub streams: Vec<StreamReport>,
    /// Frame bytes received (UDP payload + 42 per datagram).
    pub frame_bytes: u64,
    /// Seconds from the start of the run to its end.
    pub elapsed_s: f64,
    /// Seconds from the first batch read to the last.
    pub first_to_last_s: f64,
    /// Datagrams per second between the first and the last arrival.
    pub delivered_pps: f64,
    /// Frame bits per second over the same interval, Mbit/s.
    pub delivered_mbps: f64,
    /// Ethernet line bits per second (+24 B per frame: FCS, preamble, IFG), Mbit/s.
    pub delivered_mbps_wire: f64,
    /// One-way latency (send timestamp to the read), microseconds; `null` without packets.
    pub latency_us: Option<LatencySummary>,
    /// Why the run ended: `expect`, `idle` or `duration`.
    pub stopped_by: StopReason,
    /// The socket's receive buffer as the kernel reports it.
    pub rcvbuf_bytes: usize,
    /// Change of the UDP `RcvbufErrors` counter of the receiver's network namespace during
    /// the run: datagrams dropped because a socket queue was full (the receiver was the
    /// bottleneck, not the path).
    pub kernel_rcvbuf_errors: Option<u64>,
}

/// A bound receiver: senders may start once this exists.
#[derive(Debug)]
pub struct Receiver {
    sock: UdpSocket,
    cfg: RecvConfig,
}

impl Receiver {
    /// Checks the configuration, binds the socket and enlarges its receive buffer.
    pub fn bind(cfg: RecvConfig) -> Result<Receiver> {
        if !(1..=MAX_BATCH).contains(&cfg.batch) {
            return Err(Error::Config(format!(
                "batch {} is outside 1..={MAX_BATCH}",
                cfg.batch
            )));
        }
        for (name, v) in [("duration", cfg.duration_secs), ("idle", cfg.idle_secs)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Config(format!("{name} must be a positive number")));
            }
        }
        let sock = UdpSocket::bind(cfg.bind).map_err(|e| Error::io("bind", e))?;
        if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
            // Not root: the kernel caps SO_RCVBUF at net.core.rmem_max.
            setsockopt(&sock, sockopt::RcvBuf, &RCVBUF)
                .map_err(|e| Error::io("setsockopt(SO_RCVBUF)", e))?;
        }
        let poll = POLL.min(Duration::from_secs_f64(cfg.idle_secs).max(Duration::from_millis(1)));
        sock.set_read_timeout(Some(poll))
            .map_err(|e| Error::io("setsockopt(SO_RCVTIMEO)", e))?;
        Ok(Receiver { sock, cfg })
    }

    /// The bound address (the port, when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.sock
            .local_addr()
            .map_err(|e| Error::io("getsockname", e))
    }

    /// Receives until `expect` datagrams, `idle` after the last one, or `duration`.
    pub fn run(self) -> Result<RecvReport> {
        let cfg = &self.cfg;
        let fd = self.sock.as_raw_fd();
        let mut bufs = vec![0u8; cfg.batch * SLOT];
        let mut mmsg = MultiHeaders::<SockaddrStorage>::preallocate(cfg.batch, None);
        // Block for the first datagram (up to the receive timeout), take the queued rest
        // without blocking; report full lengths of datagrams longer than a slot.
        let flags = MsgFlags::MSG_WAITFORONE | MsgFlags::MSG_TRUNC;
        let mut stats = RxStats::default();
        let idle_ns = secs_to_ns(cfg.idle_secs);

        let mib_before = udp_mib("RcvbufErrors");
        let start = now_ns();
        let deadline = start.saturating_add(secs_to_ns(cfg.duration_secs));
        let stopped_by = loop {
            // One small vector per batch (its slices borrow `bufs` for this call only).
            let mut iovs: Vec<[IoSliceMut; 1]> = bufs
                .chunks_exact_mut(SLOT)
                .map(|s| [IoSliceMut::new(s)])
                .collect();
            match recvmmsg(fd, &mut mmsg, iovs.iter_mut(), flags, None) {
                Ok(msgs) => {
                    let now = now_ns();
                    for m in msgs {
                        let data = m.iovs().next().unwrap_or(&[]);
                        stats.record(data, m.bytes, now);
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => return Err(Error::io("recvmmsg", e)),
            }
            let now = now_ns();
            if cfg.expect.is_some_and(|n| stats.received >= n) {
                break StopReason::Expect;
            }
            if stats.received > 0 && now.saturating_sub(stats.last_ns) >= idle_ns {
                break StopReason::Idle;
            }
            if now >= deadline {
                break StopReason::Duration;
            }
        };
        let elapsed_s = now_ns().saturating_sub(start) as f64 / 1e9;
        let streams = stats.streams();
        let first_to_last_s = stats
            .first
            .map_or(0.0, |(t0, _)| (stats.last_ns - t0) as f64 / 1e9);
        let delivered_pps = stats.delivered_pps();
        let mean_frame = if stats.received > 0 {
            stats.frame_bytes as f64 / stats.received as f64
        } else {
            0.0
        };
        Ok(RecvReport {
            bind: self
                .local_addr()
                .map_or(cfg.bind.to_string(), |a| a.to_string()),
            received: stats.received,
            lost: streams.iter().map(|s| s.lost).sum(),
            reordered: streams.iter().map(|s| s.reordered).sum(),
            duplicates: streams.iter().map(|s| s.duplicates).sum(),
            malformed: stats.malformed,
            streams,
            frame_bytes: stats.frame_bytes,
            elapsed_s,
            first_to_last_s,
            delivered_pps,
            delivered_mbps: delivered_pps * mean_frame * 8.0 / 1e6,
            delivered_mbps_wire: delivered_pps * (mean_frame + WIRE_EXTRA as f64) * 8.0 / 1e6,
            latency_us: stats.latency.summary_us(),
            stopped_by,
            rcvbuf_bytes: getsockopt(&self.sock, sockopt::RcvBuf).unwrap_or(0),
            kernel_rcvbuf_errors: mib_delta(mib_before, udp_mib("RcvbufErrors")),
        })
    }
}

impl std::fmt::Display for RecvReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "received {} datagrams on {} in {:.3} s (stopped by {:?}); lost {} reordered {} duplicates {} malformed {}",
            self.received, self.bind, self.elapsed_s, self.stopped_by, self.lost,
            self.reordered, self.duplicates, self.malformed
        )?;
        writeln!(
            f,
            "delivered {:.0} pps over {:.3} s, {:.1} Mbit/s of frames, {:.1} Mbit/s on the wire",
            self.delivered_pps, self.first_to_last_s, self.delivered_mbps, self.delivered_mbps_wire
        )?;
        for s in &self.streams {
            writeln!(
                f,
                "  stream {:#010x}: received {} max_seq {} lost {} reordered {} duplicates {}",
                s.stream_id,
                s.received,
                s.max_seq.map_or("-".into(), |m| m.to_string()),
                s.lost,
                s.reordered,
                s.duplicates
            )?;
        }
        match &self.latency_us {
            Some(l) => writeln!(
                f,
                "latency us: min {:.1} p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} mean {:.1}",
                l.min, l.p50, l.p99, l.p999, l.max, l.mean
            )?,
            None => writeln!(f, "latency: no samples")?,
        }
        write!(f, "socket rcvbuf {} bytes", self.rcvbuf_bytes)?;
        match self.kernel_rcvbuf_errors {
            Some(d) => write!(f, "; kernel UDP RcvbufErrors +{d}"),
            None => Ok(()),
        }
    }
}
