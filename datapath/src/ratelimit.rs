//! Per-port rate limits for the frames a pod can make the switch work for without bound:
//! ARP (each request is answered) and group-addressed (broadcast/multicast) frames.
//!
//! Each limit is a token bucket of `burst` frames refilled at `per_sec` frames per second,
//! kept as GCRA (the generic cell rate algorithm): one atomic "theoretical arrival time" per
//! bucket, updated with a compare-and-swap, no lock and no allocation. Time is the `now_ms`
//! the shell passes to [`crate::Datapath::from_port`]; the bucket itself works in
//! nanoseconds so that rates above 1000/s do not round to zero.
//!
//! The buckets live in the port's [`crate::LinkCounters`], which the control plane keeps
//! across table snapshots, so a port's budget is not reset by a table swap; every port has
//! its own, so one pod's storm never uses up another pod's budget.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Highest configurable rate, frames per second (the bucket's resolution is 1 ns). The flag
/// parser (`vswitch_proto::validate::rate_limit`) has the same bound.
pub const MAX_RATE: u32 = 1_000_000;
/// Highest configurable burst, frames.
pub const MAX_BURST: u32 = 1_000_000;

/// A rate limit: `per_sec` frames per second on average, `burst` back to back.
/// `per_sec == 0` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Frames per second (0: no limit).
    pub per_sec: u32,
    /// Frames accepted back to back after a quiet period (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const UNLIMITED: RateLimit = RateLimit {
        per_sec: 0,
        burst: 1,
    };

    /// The default per-port ARP limit: 100/s, bursts of 200. Pods ARP rarely (the switch
    /// answers for the gateway and every local pod, and neighbours are cached).
    pub const ARP_DEFAULT: RateLimit = RateLimit {
        per_sec: 100,
        burst: 200,
    };

    /// The default per-port limit of broadcast/multicast frames other than ARP: 100/s,
    /// bursts of 200.
    pub const BROADCAST_DEFAULT: RateLimit = RateLimit {
        per_sec: 100,
        burst: 200,
    };
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.per_sec == 0 {
            f.write_str("unlimited")
        } else {
            write!(f, "{}/s burst {}", self.per_sec, self.burst)
        }
    }
}

/// The state of one bucket: the theoretical arrival time of the next conforming frame, in
/// nanoseconds of the shell's clock. Starts full.
#[derive(Debug, Default)]
pub struct RateBucket {
    tat_ns: AtomicU64,
}

impl RateBucket {
    /// Whether [`RateBucket::admit`] would take a token at `now_ms` under `limit`, without
    /// taking it (`vswitchctl trace`).
    pub fn would_admit(&self, limit: RateLimit, now_ms: u64) -> bool {
        if limit.per_sec == 0 {
            return true;
        }
        let now = now_ms.saturating_mul(1_000_000);
        let interval = 1_000_000_000 / u64::from(limit.per_sec.min(MAX_RATE));
        let tolerance = interval * u64::from(limit.burst.clamp(1, MAX_BURST) - 1);
        self.tat_ns.load(Relaxed).max(now) - now <= tolerance
    }

    /// Takes one token at `now_ms` under `limit`; false when the bucket is empty (the frame
    /// is over the limit and must be dropped). A refused frame takes nothing.
    pub fn admit(&self, limit: RateLimit, now_ms: u64) -> bool {
        if limit.per_sec == 0 {
            return true;
        }
        let now = now_ms.saturating_mul(1_000_000);
        let interval = 1_000_000_000 / u64::from(limit.per_sec.min(MAX_RATE));
        let tolerance = interval * u64::from(limit.burst.clamp(1, MAX_BURST) - 1);
        self.tat_ns
            .fetch_update(Relaxed, Relaxed, |tat| {
                let tat = tat.max(now);
                (tat - now <= tolerance).then(|| tat.saturating_add(interval))
            })
            .is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // tests may panic
mod tests {
    use super::*;

    fn lim(per_sec: u32, burst: u32) -> RateLimit {
        RateLimit { per_sec, burst }
    }

    /// Frames admitted out of `n` sent at `per_ms` frames per millisecond from `start_ms`.
    fn storm(b: &RateBucket, l: RateLimit, start_ms: u64, n: u64, per_ms: u64) -> u64 {
        (0..n).filter(|i| b.admit(l, start_ms + i / per_ms)).count() as u64
    }

    #[test]
    fn within_the_limit_everything_passes() {
        let b = RateBucket::default();
        // 50/s against a 100/s limit, for 10 s: one frame every 20 ms.
        let ok = (0..500).filter(|i| b.admit(lim(100, 1), i * 20)).count();
        assert_eq!(ok, 500);
        // A burst of exactly `burst` after a quiet second.
        let b = RateBucket::default();
        assert_eq!(storm(&b, lim(100, 200), 1000, 200, 1000), 200);
    }

    #[test]
    fn a_storm_is_cut_to_the_rate() {
        let b = RateBucket::default();
        // 10 frames per ms (10 000/s) for 10 s against 100/s with bursts of 200: the burst
        // plus 100 per second get through.
        let ok = storm(&b, lim(100, 200), 0, 100_000, 10);
        assert!((1190..=1201).contains(&ok), "admitted {ok}");
        // Rates above 1000/s work at millisecond resolution of the clock.
        let b = RateBucket::default();
        let ok = storm(&b, lim(5000, 10), 0, 100_000, 100); // 100 000/s for 1 s
        assert!((5000..=5011).contains(&ok), "admitted {ok}");
    }

    #[test]
    fn refills_over_time() {
        let b = RateBucket::default();
        let l = lim(10, 5);
        assert_eq!(storm(&b, l, 0, 100, 100), 5, "the burst, then nothing");
        assert!(!b.admit(l, 0));
        assert!(b.admit(l, 100), "one token after 1/10 s");
        assert!(!b.admit(l, 100));
        // After a long quiet time the bucket is full again, and no fuller.
        assert_eq!(storm(&b, l, 60_000, 100, 100), 5);
    }

    #[test]
    fn buckets_are_independent_and_zero_is_unlimited() {
        let (a, b) = (RateBucket::default(), RateBucket::default());
        let l = lim(100, 10);
        assert_eq!(storm(&a, l, 0, 1000, 1000), 10);
        assert_eq!(storm(&b, l, 0, 10, 1000), 10, "b has its own budget");
        let u = RateBucket::default();
        assert_eq!(storm(&u, RateLimit::UNLIMITED, 0, 10_000, 10_000), 10_000);
    }

    // Parsing `PPS[/BURST]` is proto::validate::rate_limit's (tested there).
    #[test]
    fn display_says_the_rate_and_burst() {
        assert_eq!(lim(100, 200).to_string(), "100/s burst 200");
        assert_eq!(RateLimit::UNLIMITED.to_string(), "unlimited");
    }
}
