//! Receive-side bookkeeping, pure (datagrams and times come in as arguments): per-stream
//! sequence checks, a latency histogram and its percentiles.

use crate::header::{Header, FRAME_OVERHEAD};
use serde::Serialize;

/// Sequence numbers above this are not checked for duplicates (the bitmap would pass 32 MiB).
pub const MAX_TRACKED_SEQ: u64 = 1 << 28;

/// Sequence checks of one stream.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    received: u64,
    max_seq: Option<u64>,
    reordered: u64,
    duplicates: u64,
    /// One bit per sequence number seen, grown on demand up to `MAX_TRACKED_SEQ`.
    seen: Vec<u64>,
}

impl SeqTracker {
    /// Accounts for one datagram carrying `seq`.
    pub fn record(&mut self, seq: u64) {
        self.received += 1;
        if seq < MAX_TRACKED_SEQ {
            let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
            if word >= self.seen.len() {
                self.seen.resize((word + 1).next_power_of_two(), 0);
            }
            if self.seen[word] & bit != 0 {
                self.duplicates += 1;
                return;
            }
            self.seen[word] |= bit;
        }
        match self.max_seq {
            Some(max) if seq < max => self.reordered += 1,
            _ => self.max_seq = Some(seq),
        }
    }

    /// The stream's counters.
    pub fn report(&self, stream_id: u32) -> StreamReport {
        let unique = self.received - self.duplicates;
        let span = self.max_seq.map_or(0, |m| m.saturating_add(1));
        StreamReport {
            stream_id,
            received: self.received,
            max_seq: self.max_seq,
            lost: span.saturating_sub(unique),
            reordered: self.reordered,
            duplicates: self.duplicates,
        }
    }
}

/// Counters of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// The stream's id from the header.
    pub stream_id: u32,
    /// Datagrams received, duplicates included.
    pub received: u64,
    /// Highest sequence number seen.
    pub max_seq: Option<u64>,
    /// Sequence numbers below `max_seq` never seen: `max_seq + 1 - (received - duplicates)`.
    /// Losses after the last received packet are invisible here (compare with the sender).
    pub lost: u64,
    /// Datagrams that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Datagrams whose sequence number was already seen.
    pub duplicates: u64,
}

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS; // 128 linear sub-buckets per power of two: error < 0.8 %
const EXACT: u64 = 2 * SUB; // values below 256 have a bucket each
const BUCKETS: usize = (EXACT + (63 - SUB_BITS as u64) * SUB) as usize;

/// A log-linear histogram of nanosecond values: exact below 256, relative error below 1/128
/// above; constant memory (58 KiB) whatever the number of samples.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    samples: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            samples: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS; // >= 1
    let top = v >> shift; // in [SUB, 2 * SUB)
    (EXACT + u64::from(shift - 1) * SUB + (top - SUB)) as usize
}

/// The highest value that lands in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let shift = (i - EXACT) / SUB + 1;
    let top = (i - EXACT) % SUB + SUB;
    (top << shift) + ((1u64 << shift) - 1)
}

impl Histogram {
    /// Adds one sample.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.samples += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Number of samples.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The nearest-rank `q` quantile (0 < q <= 1): the smallest bucket bound with at least
    /// `ceil(q * samples)` samples at or below it, clamped to the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.samples == 0 {
            return None;
        }
        let rank = ((q * self.samples as f64).ceil() as u64).clamp(1, self.samples);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_high(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Percentiles in microseconds, `None` without samples.
    pub fn summary_us(&self) -> Option<LatencySummary> {
        if self.samples == 0 {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Some(LatencySummary {
            samples: self.samples,
            min: us(self.min),
            mean: self.sum as f64 / self.samples as f64 / 1e3,
            p50: us(self.quantile(0.5)?),
            p99: us(self.quantile(0.99)?),
            p999: us(self.quantile(0.999)?),
            max: us(self.max),
        })
    }
}

/// One-way latency percentiles, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Packets measured.
    pub samples: u64,
    /// Smallest latency.
    pub min: f64,
    /// Mean latency.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest latency.
    pub max: f64,
}

/// Everything a receiver counts.
#[derive(Debug, Default)]
pub struct RxStats {
    /// Datagrams with a valid header.
    pub received: u64,
    /// Datagrams too short or without the magic.
    pub malformed: u64,
    /// Frame bytes (UDP payload + 42) of valid datagrams.
    pub frame_bytes: u64,
    /// CLOCK_MONOTONIC of the first batch with a valid datagram, and how many it held.
    pub first: Option<(u64, u64)>,
    /// CLOCK_MONOTONIC of the last batch with a valid datagram.
    pub last_ns: u64,
    /// One-way latency, nanoseconds.
    pub latency: Histogram,
    streams: Vec<(u32, SeqTracker)>,
}

impl RxStats {
    /// Accounts for one datagram: `data` holds at least its first bytes, `len` is its full
    /// UDP payload length, `now_ns` the time it was read.
    pub fn record(&mut self, data: &[u8], len: usize, now_ns: u64) {
        let Ok(h) = Header::decode(data) else {
            self.malformed += 1;
            return;
        };
        self.received += 1;
        self.frame_bytes += (len + FRAME_OVERHEAD) as u64;
        match &mut self.first {
            Some((t, n)) if *t == now_ns => *n += 1,
            Some(_) => {}
            None => self.first = Some((now_ns, 1)),
        }
        self.last_ns = now_ns;
        self.latency.record(now_ns.saturating_sub(h.timestamp_ns));
        // Streams are few (usually one): a linear scan beats hashing.
        match self.streams.iter_mut().find(|(id, _)| *id == h.stream_id) {
            Some((_, t)) => t.record(h.seq),
            None => {
                let mut t = SeqTracker::default();
                t.record(h.seq);
                self.streams.push((h.stream_id, t));
            }
        }
    }

    /// Per-stream counters, in order of first appearance.
    pub fn streams(&self) -> Vec<StreamReport> {
        self.streams.iter().map(|(id, t)| t.report(*id)).collect()
    }

    /// Packets per second from the first arrival to the last: the packets read after the
    /// first batch over the time between the two batches (0 when they are the same).
    pub fn delivered_pps(&self) -> f64 {
        match self.first {
            Some((t0, n0)) if self.last_ns > t0 => {
                (self.received - n0) as f64 * 1e9 / (self.last_ns - t0) as f64
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::HEADER_LEN;

    #[test]
    fn seq_tracker_counts_gaps_reorders_and_duplicates() {
        let mut t = SeqTracker::default();
        for seq in [0, 1, 3, 2, 2, 6, 5, 0] {
            t.record(seq);
        }
        let r = t.report(7);
        assert_eq!(r.received, 8);
        assert_eq!(r.max_seq, Some(6));
        assert_eq!(r.duplicates, 2); // 2 and 0 again
        assert_eq!(r.reordered, 2); // 2 after 3, 5 after 6
        assert_eq!(r.lost, 1); // 4
        assert_eq!(SeqTracker::default().report(1).lost, 0);
    }

    #[test]
    fn seq_tracker_beyond_the_bitmap_still_counts() {
        let mut t = SeqTracker::default();
        t.record(MAX_TRACKED_SEQ + 5);
        t.record(MAX_TRACKED_SEQ + 5); // beyond the bitmap: not detectable as a duplicate
        let r = t.report(1);
        assert_eq!((r.received, r.duplicates), (2, 0));
        assert!(t.seen.is_empty());
    }

    #[test]
    fn buckets_are_contiguous_and_tight() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(255), 255);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for i in 0..BUCKETS - 1 {
            let high = bucket_high(i);
            assert_eq!(bucket_of(high), i, "high end of bucket {i}");
            assert_eq!(bucket_of(high + 1), i + 1, "next bucket after {i}");
        }
        assert_eq!(bucket_high(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn percentiles_are_nearest_rank_within_one_percent() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert!(h.summary_us().is_none());
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, exact) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q).unwrap() as f64;
            assert!(
                got >= exact && got <= exact * 1.008,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), Some(100_000));
        let s = h.summary_us().unwrap();
        assert_eq!((s.samples, s.min, s.max), (100_000, 0.001, 100.0));
        assert!((s.mean - 50.0005).abs() < 1e-9);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in [10, 20, 30, 40, 250] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(30));
        assert_eq!(h.quantile(0.8), Some(40));
        assert_eq!(h.quantile(0.81), Some(250));
    }

    fn datagram(stream_id: u32, seq: u64, timestamp_ns: u64) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        Header {
            stream_id,
            seq,
            timestamp_ns,
        }
        .encode(&mut b);
        b
    }

    #[test]
    fn rx_stats_separates_streams_and_counts_malformed() {
        let mut s = RxStats::default();
        s.record(&datagram(1, 0, 1_000), 22, 11_000);
        s.record(&datagram(2, 0, 1_000), 1358, 11_000);
        s.record(&datagram(1, 2, 2_000), 22, 1_000_011_000);
        s.record(b"GET / HTTP/1.1\r\n", 16, 1_000_011_000);
        s.record(&[], 0, 1_000_011_000);
        assert_eq!((s.received, s.malformed), (3, 2));
        assert_eq!(s.frame_bytes, 64 + 1400 + 64);
        let streams = s.streams();
        assert_eq!(streams.len(), 2);
        assert_eq!((streams[0].stream_id, streams[0].lost), (1, 1));
        assert_eq!((streams[1].stream_id, streams[1].lost), (2, 0));
        // Two packets in the first batch, one more 1 s later.
        assert_eq!(s.delivered_pps(), 1.0);
        assert_eq!(s.latency.quantile(1.0), Some(1_000_009_000));
    }
}
