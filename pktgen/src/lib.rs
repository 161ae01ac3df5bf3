//! vswitch-pktgen: a bounded UDP load generator and receiver for netns testbeds, and the
//! hostile traffic of the hostile-pod suite ([`attack`]).
//!
//! Contract:
//! - Every run is bounded by a packet count AND by a duration, and stops by itself: the sender
//!   stops at `count` packets or `duration`, whichever comes first; the receiver stops at
//!   `duration`, after `idle` without packets once some arrived, or at `expect` packets. No
//!   loop of this crate waits on a syscall without a timeout, and no wait (sleep or spin)
//!   outlasts the run's deadline.
//! - Sender and receiver share a host (different network namespaces), hence CLOCK_MONOTONIC:
//!   the sender stamps each datagram with its send time and the receiver computes one-way
//!   latency from it.
//! - Errors of a single send (ENOBUFS, ECONNREFUSED, ...) are counted, never fatal; malformed
//!   datagrams at the receiver are counted, never logged.
//! - The sender (and every attack) sends only to 198.18.0.0/15 (RFC 2544 benchmarking, the testbeds' address
//!   plan) or to loopback.
//! - Latency is measured from the timestamp taken just before a sendmmsg to the return of the
//!   recvmmsg that read the datagram: it includes the sender's own batch (a 64-datagram batch
//!   leaves over tens of microseconds) and the receiver's queue. For latency, pace the sender
//!   (`rate`) so that batches hold one datagram; for throughput, read `delivered_pps`.
//! - No `unsafe` here: the batched syscalls (sendmmsg, recvmmsg), AF_PACKET sockets and
//!   getifaddrs go through nix's safe wrappers.
//!
//! Sizes: `size` is the Ethernet frame without FCS (14 + 20 + 8 + UDP payload), the length
//! tcpdump shows on a veth or TAP. "Wire" rates add 24 bytes per frame: FCS (4), preamble and
//! SFD (8) and the minimum inter-frame gap (12), as a 1/10/100 GbE link would carry them.
//!
//! Wire format: the UDP payload starts with a 22-byte header, all fields big-endian; the rest
//! of the payload is zero.
//!
//! ```text
//! offset  len  field
//!      0    2  magic 0x5650 ("VP")
//!      2    4  stream id (one per sender run)
//!      6    8  sequence number, 0, 1, 2, ... per stream
//!     14    8  send time, CLOCK_MONOTONIC nanoseconds
//! ```
//!
//! The smallest frame is therefore 42 + 22 = 64 bytes.

#![forbid(unsafe_code)]

pub mod attack;
pub mod frames;
pub mod header;
pub mod pacer;
pub mod receiver;
pub mod sender;
pub mod stats;

pub use attack::{AttackConfig, AttackReport, Mode};
pub use header::{Header, FRAME_OVERHEAD, HEADER_LEN, MAX_FRAME, MIN_FRAME};
pub use receiver::{Receiver, RecvConfig, RecvReport};
pub use sender::{SendConfig, SendReport, Sender};

use nix::time::{clock_gettime, ClockId};

/// Bytes a frame occupies on an Ethernet link beyond `size`: FCS 4, preamble+SFD 8, IFG 12.
pub const WIRE_EXTRA: u64 = 24;

/// Errors of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A socket call failed.
    #[error("{what} failed")]
    Io {
        /// The call that failed.
        what: &'static str,
        /// The error of the call.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str, source: impl Into<std::io::Error>) -> Self {
        Error::Io {
            what,
            source: source.into(),
        }
    }
}

/// Result of the library.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The sender sent `count` packets.
    Count,
    /// The receiver received `expect` packets.
    Expect,
    /// No packet for `idle` after the first one.
    Idle,
    /// `duration` elapsed.
    Duration,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the header's timestamp.
pub fn now_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; 0 keeps the function total if it ever did.
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Seconds to nanoseconds, saturating (durations come from the command line).
pub fn secs_to_ns(secs: f64) -> u64 {
    if secs.is_nan() || secs <= 0.0 {
        0
    } else {
        (secs * 1e9).min(u64::MAX as f64) as u64
    }
}

/// A counter of the `Udp:` line of /proc/net/snmp (per network namespace), e.g.
/// `RcvbufErrors`; `None` when the file or the counter is not there.
pub fn udp_mib(name: &str) -> Option<u64> {
    parse_udp_mib(&std::fs::read_to_string("/proc/net/snmp").ok()?, name)
}

fn parse_udp_mib(snmp: &str, name: &str) -> Option<u64> {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// The difference of a counter between two readings, when both exist.
pub(crate) fn mib_delta(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
                        Udp: 1200 3 17 900 15 2 0 0 0\n\
                        UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
                        UdpLite: 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn udp_mib_parses_the_udp_line_only() {
        assert_eq!(parse_udp_mib(SNMP, "RcvbufErrors"), Some(15));
        assert_eq!(parse_udp_mib(SNMP, "SndbufErrors"), Some(2));
        assert_eq!(parse_udp_mib(SNMP, "Nope"), None);
        assert_eq!(parse_udp_mib("", "RcvbufErrors"), None);
        assert_eq!(mib_delta(Some(3), Some(10)), Some(7));
        assert_eq!(mib_delta(None, Some(10)), None);
    }

    #[test]
    fn clock_is_monotonic_and_secs_convert() {
        let a = now_ns();
        let b = now_ns();
        assert!(a > 0 && b >= a);
        assert_eq!(secs_to_ns(1.5), 1_500_000_000);
        assert_eq!(secs_to_ns(-1.0), 0);
        assert_eq!(secs_to_ns(f64::NAN), 0);
    }
}
