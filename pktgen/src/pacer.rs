//! Rate pacing as a token bucket over time passed in by the caller (nothing here reads a clock).
//!
//! Packet `k` (from 0) is due at `origin + k / rate`. `available(now)` says how many packets
//! may leave now; `consume(now, n)` records that `n` left. A sender that fell behind (a stall,
//! a preemption) may catch up by at most `burst` packets: older credit is forgiven, so the
//! long-run rate never exceeds `rate`.

const NS_PER_SEC: u128 = 1_000_000_000;

/// A token bucket of `rate` packets per second holding at most `burst` packets of credit.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: u64,
    burst: u64,
    origin_ns: u64,
    consumed: u64,
}

impl Pacer {
    /// A pacer whose first packet is due at `now_ns`. `rate` and `burst` are at least 1.
    pub fn new(rate_pps: u64, burst: u64, now_ns: u64) -> Self {
        Pacer {
            rate: rate_pps.max(1),
            burst: burst.max(1),
            origin_ns: now_ns,
            consumed: 0,
        }
    }

    /// Packets due by `now_ns` since the origin (the one at the origin included).
    fn earned(&self, now_ns: u64) -> u64 {
        let elapsed = u128::from(now_ns.saturating_sub(self.origin_ns));
        let due = elapsed * u128::from(self.rate) / NS_PER_SEC + 1;
        u64::try_from(due).unwrap_or(u64::MAX)
    }

    /// How many packets may be sent at `now_ns` (at most `burst`).
    pub fn available(&self, now_ns: u64) -> u64 {
        self.earned(now_ns)
            .saturating_sub(self.consumed)
            .min(self.burst)
    }

    /// Records that `n` packets were sent at `now_ns`; credit beyond `burst` is forgiven first.
    pub fn consume(&mut self, now_ns: u64, n: u64) {
        let floor = self.earned(now_ns).saturating_sub(self.burst);
        self.consumed = self.consumed.max(floor).saturating_add(n);
    }

    /// When the next packet is due (may be in the past when credit is available).
    pub fn next_due_ns(&self) -> u64 {
        let offset = (u128::from(self.consumed) * NS_PER_SEC).div_ceil(u128::from(self.rate));
        self.origin_ns
            .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a pacer like the sender does, with a fake clock advancing `step_ns` per
    /// iteration, sending up to `batch` per iteration; returns the packets sent in
    /// `[start, start + window_ns)`.
    fn run(rate: u64, burst: u64, batch: u64, step_ns: u64, window_ns: u64) -> u64 {
        let start = 5_000_000_000; // an arbitrary CLOCK_MONOTONIC value
        let mut p = Pacer::new(rate, burst, start);
        let mut sent = 0;
        let mut now = start;
        while now < start + window_ns {
            let n = p.available(now).min(batch);
            if n > 0 {
                p.consume(now, n);
                sent += n;
            }
            now += step_ns;
        }
        sent
    }

    #[test]
    fn sends_exactly_rate_per_second() {
        assert_eq!(run(1_000, 64, 64, 1_000, 1_000_000_000), 1_000);
        assert_eq!(run(1_000_000, 64, 64, 1_000, 1_000_000_000), 1_000_000);
        // Coarse 50 us ticks: 50 packets per tick, and every packet due by the last tick
        // (999.95 ms) has left: 999_950 + the one at the origin.
        assert_eq!(run(1_000_000, 64, 64, 50_000, 1_000_000_000), 999_951);
        // Ticks coarser than the batch: the rate is capped by batch per tick, never exceeded.
        assert_eq!(
            run(1_000_000, 64, 64, 100_000, 1_000_000_000),
            1 + 9_999 * 64
        );
        // 3 pps over 2 s: packets at 0, 1/3, 2/3, 1, 4/3, 5/3.
        assert_eq!(run(3, 1, 1, 1_000_000, 2_000_000_000), 6);
    }

    #[test]
    fn a_stall_catches_up_by_burst_at_most() {
        let mut p = Pacer::new(1_000, 10, 0);
        assert_eq!(p.available(0), 1);
        p.consume(0, 1);
        assert_eq!(p.available(0), 0);
        // 1 s asleep: 1000 packets due, but only `burst` may leave at once.
        let later = 1_000_000_000;
        assert_eq!(p.available(later), 10);
        p.consume(later, 10);
        assert_eq!(p.available(later), 0);
        // The forgiven credit is gone: the next packet is due 1 ms later.
        assert_eq!(p.next_due_ns(), later + 1_000_000);
        assert_eq!(p.available(later + 999_999), 0);
        assert_eq!(p.available(later + 1_000_000), 1);
    }

    #[test]
    fn next_due_is_the_first_instant_with_credit() {
        let mut p = Pacer::new(3, 8, 100);
        assert_eq!(p.next_due_ns(), 100);
        p.consume(100, 1);
        let due = p.next_due_ns();
        assert_eq!(due, 100 + 333_333_334); // ceil(1e9 / 3)
        assert_eq!(p.available(due - 1), 0);
        assert_eq!(p.available(due), 1);
    }

    #[test]
    fn time_before_origin_and_huge_values_do_not_panic() {
        let p = Pacer::new(u64::MAX, u64::MAX, u64::MAX / 2);
        assert_eq!(p.available(0), 1);
        assert!(p.available(u64::MAX) > 0);
        let mut q = Pacer::new(0, 0, 0); // clamped to 1 pps, burst 1
        q.consume(0, 1);
        assert_eq!(q.next_due_ns(), 1_000_000_000);
    }
}
