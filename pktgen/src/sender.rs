//! The sender: a connected UDP socket, sendmmsg batches, optional pacing.

use crate::header::{payload_len, Header, HEADER_LEN, MAX_FRAME, MIN_FRAME};
use crate::pacer::Pacer;
use crate::{mib_delta, now_ns, secs_to_ns, udp_mib, Error, Result, StopReason, WIRE_EXTRA};
use nix::errno::Errno;
use nix::sys::socket::{
    getsockopt, sendmmsg, sockopt, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use serde::Serialize;
use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Most messages one sendmmsg/recvmmsg accepts (UIO_MAXIOV).
pub const MAX_BATCH: usize = 1024;
/// Waits shorter than this spin on the clock; longer ones sleep (minus this margin).
const SPIN_NS: u64 = 20_000;
/// A blocked send gives up after this long, so the deadline is always checked again.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);

/// What to send.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Destination.
    pub dst: SocketAddrV4,
    /// Ethernet frame size without FCS, `MIN_FRAME..=MAX_FRAME`.
    pub size: usize,
    /// Packets to send at most.
    pub count: u64,
    /// Seconds to send at most.
    pub duration_secs: f64,
    /// Packets per second; 0 sends as fast as possible.
    pub rate_pps: u64,
    /// Datagrams per sendmmsg, `1..=MAX_BATCH`.
    pub batch: usize,
    /// Stream id in the header; derived from the pid and the clock when `None`.
    pub stream_id: Option<u32>,
}

impl SendConfig {
    /// Defaults of the command line for `dst`.
    pub fn new(dst: SocketAddrV4) -> Self {
        SendConfig {
            dst,
            size: MIN_FRAME,
            count: 1_000_000,
            duration_secs: 10.0,
            rate_pps: 0,
            batch: 64,
            stream_id: None,
        }
    }
}

/// What a sender did.
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    /// Destination, `IP:PORT`.
    pub dst: String,
    /// Stream id carried in every header.
    pub stream_id: u32,
    /// Ethernet frame size without FCS.
    pub frame_size: usize,
    /// UDP payload size (`frame_size - 42`).
    pub payload_size: usize,
    /// The configured bound on packets.
    pub count: u64,
    /// The configured rate, 0 = unpaced.
    pub rate_pps: u64,
    /// Datagrams per sendmmsg.
    pub batch: usize,
    /// Datagrams the kernel accepted.
    pub sent: u64,
    /// Failed sendmmsg calls (each failed on its first datagram, which is retried).
    pub send_errors: u64,
    /// sendmmsg calls that sent part of their batch: the kernel reports an error after the
    /// first datagram only as a short count (the rest of the batch is retried).
    pub partial_batches: u64,
    /// `send_errors` by errno name, e.g. `{"ENOBUFS": 3}`.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// sendmmsg calls that sent at least one datagram.
    pub syscalls: u64,
    /// Seconds from the first send to the return of the last.
    pub elapsed_s: f64,
    /// `sent / elapsed_s`.
    pub offered_pps: f64,
    /// Frame bits per second (frame_size * 8 * pps), in Mbit/s.
    pub offered_mbps: f64,
    /// Ethernet line bits per second ((frame_size + 24) * 8 * pps: FCS, preamble, IFG).
    pub offered_mbps_wire: f64,
    /// Why the run ended: `count` or `duration`.
    pub stopped_by: StopReason,
    /// Change of the UDP `SndbufErrors` counter of the sender's network namespace during the
    /// run: datagrams accepted by the socket but dropped below it (device queue full).
    pub kernel_sndbuf_errors: Option<u64>,
}

/// A sender ready to run.
#[derive(Debug)]
pub struct Sender {
    sock: UdpSocket,
    cfg: SendConfig,
    stream_id: u32,
    payload: usize,
}

impl Sender {
    /// Checks the configuration, opens and connects the socket.
    pub fn new(cfg: SendConfig) -> Result<Sender> {
        let payload = payload_len(cfg.size).ok_or_else(|| {
            Error::Config(format!(
                "size {} is outside {MIN_FRAME}..={MAX_FRAME}",
                cfg.size
            ))
        })?;
        if !allowed_destination(*cfg.dst.ip()) {
            return Err(Error::Config(format!(
                "destination {} is outside 198.18.0.0/15 (RFC 2544 benchmarking) and 127.0.0.0/8",
                cfg.dst.ip()
            )));
        }
        if !(1..=MAX_BATCH).contains(&cfg.batch) {
            return Err(Error::Config(format!(
                "batch {} is outside 1..={MAX_BATCH}",
                cfg.batch
            )));
        }
        if !(cfg.duration_secs.is_finite() && cfg.duration_secs > 0.0) {
            return Err(Error::Config("duration must be a positive number".into()));
        }
        let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| Error::io("bind", e))?;
        sock.connect(cfg.dst).map_err(|e| Error::io("connect", e))?;
        sock.set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(|e| Error::io("setsockopt(SO_SNDTIMEO)", e))?;
        if let Ok(mtu) = getsockopt(&sock, sockopt::IpMtu) {
            let needed = cfg.size - 14;
            if needed > mtu as usize {
                return Err(Error::Config(format!(
                    "a {}-byte frame needs an IP MTU of {needed}; the route to {} has {mtu}",
                    cfg.size, cfg.dst
                )));
            }
        }
        let stream_id = cfg
            .stream_id
            .unwrap_or_else(|| std::process::id().rotate_left(16) ^ now_ns() as u32);
        Ok(Sender {
            sock,
            cfg,
            stream_id,
            payload,
        })
    }

    /// The stream id this sender puts in its headers.
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Sends until `count` datagrams are sent or `duration` has passed.
    pub fn run(self) -> Result<SendReport> {
        let cfg = &self.cfg;
        // Sleeps should end on time: 1 ns of timer slack for the calling thread instead of
        // the default 50 us (best effort).
        let _ = nix::sys::prctl::set_timerslack(1);
        let fd = self.sock.as_raw_fd();
        let mut bufs = vec![0u8; cfg.batch * self.payload];
        let mut mmsg = MultiHeaders::<SockaddrStorage>::preallocate(cfg.batch, None);
        let addrs: Vec<Option<SockaddrStorage>> = vec![None; cfg.batch]; // connected socket
        let no_cmsgs: [ControlMessage; 0] = [];
        let mut errors: Vec<(Errno, u64)> = Vec::new();
        let (mut sent, mut send_errors, mut partial_batches, mut syscalls) = (0u64, 0, 0, 0);

        let mib_before = udp_mib("SndbufErrors");
        let start = now_ns();
        let deadline = start.saturating_add(secs_to_ns(cfg.duration_secs));
        // After a stall (preemption on a busy testbed) up to 10 ms of the rate, at least a
        // batch, may catch up: the average rate holds, bursts stay short.
        let burst = (cfg.batch as u64).max(cfg.rate_pps / 100);
        let mut pacer = (cfg.rate_pps > 0).then(|| Pacer::new(cfg.rate_pps, burst, start));
        let stopped_by = loop {
            if sent >= cfg.count {
                break StopReason::Count;
            }
            let now = now_ns();
            if now >= deadline {
                break StopReason::Duration;
            }
            let mut n = (cfg.count - sent).min(cfg.batch as u64);
            if let Some(p) = &pacer {
                let allowed = p.available(now);
                if allowed == 0 {
                    wait_until(p.next_due_ns().min(deadline));
                    continue;
                }
                n = n.min(allowed);
            }
            let n = n as usize;
            for (i, pkt) in bufs.chunks_exact_mut(self.payload).take(n).enumerate() {
                if let Some(h) = pkt.first_chunk_mut::<HEADER_LEN>() {
                    Header {
                        stream_id: self.stream_id,
                        seq: sent + i as u64,
                        timestamp_ns: now,
                    }
                    .encode(h);
                }
            }
            // One small vector per batch (the slices borrow `bufs`, rewritten every batch).
            let iovs: Vec<[IoSlice; 1]> = bufs
                .chunks_exact(self.payload)
                .take(n)
                .map(|p| [IoSlice::new(p)])
                .collect();
            match sendmmsg(
                fd,
                &mut mmsg,
                &iovs,
                &addrs[..n],
                no_cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(done) => {
                    let k = done.count() as u64;
                    sent += k;
                    syscalls += 1;
                    partial_batches += u64::from(k < n as u64);
                    if let Some(p) = &mut pacer {
                        p.consume(now, k);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) if is_fatal(e) => return Err(Error::io("sendmmsg", e)),
                Err(e) => {
                    send_errors += 1;
                    match errors.iter_mut().find(|(k, _)| *k == e) {
                        Some((_, c)) => *c += 1,
                        None => errors.push((e, 1)),
                    }
                    std::thread::yield_now();
                }
            }
        };
        let elapsed_s = now_ns().saturating_sub(start) as f64 / 1e9;
        let offered_pps = if elapsed_s > 0.0 {
            sent as f64 / elapsed_s
        } else {
            0.0
        };
        Ok(SendReport {
            dst: cfg.dst.to_string(),
            stream_id: self.stream_id,
            frame_size: cfg.size,
            payload_size: self.payload,
            count: cfg.count,
            rate_pps: cfg.rate_pps,
            batch: cfg.batch,
            sent,
            send_errors,
            partial_batches,
            errors: errors
                .into_iter()
                .map(|(e, c)| (format!("{e:?}"), c))
                .collect(),
            syscalls,
            elapsed_s,
            offered_pps,
            offered_mbps: offered_pps * cfg.size as f64 * 8.0 / 1e6,
            offered_mbps_wire: offered_pps * (cfg.size as u64 + WIRE_EXTRA) as f64 * 8.0 / 1e6,
            stopped_by,
            kernel_sndbuf_errors: mib_delta(mib_before, udp_mib("SndbufErrors")),
        })
    }
}

/// Load goes only to the benchmarking range (the testbeds' whole address plan) or loopback.
pub fn allowed_destination(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback() || (a == 198 && (b & 0xfe) == 18)
}

/// Errors that would fail every retry: the run stops instead of spinning until the deadline.
fn is_fatal(e: Errno) -> bool {
    matches!(
        e,
        Errno::EBADF
            | Errno::EFAULT
            | Errno::EINVAL
            | Errno::EMSGSIZE
            | Errno::ENOTSOCK
            | Errno::ENOTCONN
            | Errno::EDESTADDRREQ
            | Errno::EAFNOSUPPORT
    )
}

/// Waits until CLOCK_MONOTONIC reaches `t_ns`: sleeps while far, spins the last `SPIN_NS`.
/// Callers bound `t_ns` by their deadline, so the spin never outlasts the run.
fn wait_until(t_ns: u64) {
    loop {
        let now = now_ns();
        if now >= t_ns {
            return;
        }
        let gap = t_ns - now;
        if gap > SPIN_NS {
            std::thread::sleep(Duration::from_nanos(gap - SPIN_NS));
        } else {
            std::hint::spin_loop();
        }
    }
}

impl std::fmt::Display for SendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sent {} datagrams, {}-byte frames, to {} in {:.3} s (stream {:#010x}, stopped by {:?}, {} sendmmsg calls)",
            self.sent, self.frame_size, self.dst, self.elapsed_s, self.stream_id,
            self.stopped_by, self.syscalls
        )?;
        writeln!(
            f,
            "offered {:.0} pps, {:.1} Mbit/s of frames, {:.1} Mbit/s on the wire (+24 B: FCS, preamble, IFG)",
            self.offered_pps, self.offered_mbps, self.offered_mbps_wire
        )?;
        write!(
            f,
            "send errors {} (partial batches {})",
            self.send_errors, self.partial_batches
        )?;
        for (name, c) in &self.errors {
            write!(f, " {name}={c}")?;
        }
        match self.kernel_sndbuf_errors {
            Some(d) => write!(f, "; kernel UDP SndbufErrors +{d}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        let bad = |f: fn(&mut SendConfig)| {
            let mut c = SendConfig::new(dst);
            f(&mut c);
            matches!(Sender::new(c), Err(Error::Config(_)))
        };
        assert!(bad(|c| c.size = 63));
        assert!(bad(|c| c.size = 9001));
        assert!(bad(|c| c.batch = 0));
        assert!(bad(|c| c.batch = MAX_BATCH + 1));
        assert!(bad(|c| c.duration_secs = 0.0));
        assert!(bad(|c| c.duration_secs = f64::INFINITY));
        assert!(!bad(|c| c.size = 9000));
        assert!(bad(|c| c.dst = "192.168.1.1:9".parse().unwrap()));
    }

    #[test]
    fn destinations_are_the_benchmarking_range_or_loopback() {
        for ok in ["198.18.1.3", "198.19.96.10", "198.19.0.2", "127.0.0.1"] {
            assert!(allowed_destination(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "198.17.255.255",
            "198.20.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.0.1",
            "8.8.8.8",
            "0.0.0.0",
            "255.255.255.255",
        ] {
            assert!(!allowed_destination(no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn wait_until_returns_on_time() {
        let t = now_ns() + 2_000_000;
        wait_until(t);
        let late = now_ns() - t;
        assert!(late < 50_000_000, "woke {late} ns late");
        wait_until(0); // in the past: returns at once
    }
}
