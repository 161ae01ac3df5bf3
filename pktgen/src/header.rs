//! The 22-byte header at the start of every datagram (layout in the crate documentation).
//!
//! Encoding writes into a `[u8; HEADER_LEN]`, decoding checks the length and the magic first:
//! neither can panic.

/// The first two bytes of every header: "VP".
pub const MAGIC: u16 = 0x5650;
/// Length of the header in bytes.
pub const HEADER_LEN: usize = 22;
/// Ethernet (14) + IPv4 without options (20) + UDP (8): frame bytes around the UDP payload.
pub const FRAME_OVERHEAD: usize = 42;
/// The smallest frame that carries a header: 64 bytes.
pub const MIN_FRAME: usize = FRAME_OVERHEAD + HEADER_LEN;
/// The largest frame the generator builds (a jumbo frame).
pub const MAX_FRAME: usize = 9000;

const STREAM: std::ops::Range<usize> = 2..6;
const SEQ: std::ops::Range<usize> = 6..14;
const TIMESTAMP: std::ops::Range<usize> = 14..22;

/// The header of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Identifies one sender run; sequence numbers are per stream.
    pub stream_id: u32,
    /// 0, 1, 2, ... in send order.
    pub seq: u64,
    /// CLOCK_MONOTONIC at send time, nanoseconds.
    pub timestamp_ns: u64,
}

/// Why a datagram is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the header.
    #[error("datagram of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Short(usize),
    /// The first two bytes are not the magic.
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
}

impl Header {
    /// Writes the header.
    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out[..2].copy_from_slice(&MAGIC.to_be_bytes());
        out[STREAM].copy_from_slice(&self.stream_id.to_be_bytes());
        out[SEQ].copy_from_slice(&self.seq.to_be_bytes());
        out[TIMESTAMP].copy_from_slice(&self.timestamp_ns.to_be_bytes());
    }

    /// Reads the header at the start of `buf` (trailing bytes are the payload's padding).
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        let h: &[u8; HEADER_LEN] = buf.first_chunk().ok_or(DecodeError::Short(buf.len()))?;
        let magic = u16::from_be_bytes([h[0], h[1]]);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        Ok(Header {
            stream_id: u32::from_be_bytes(field(h, STREAM)),
            seq: u64::from_be_bytes(field(h, SEQ)),
            timestamp_ns: u64::from_be_bytes(field(h, TIMESTAMP)),
        })
    }
}

/// Copies a fixed-size field; the ranges above are constant and inside the header.
fn field<const N: usize>(h: &[u8; HEADER_LEN], range: std::ops::Range<usize>) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[range]);
    out
}

/// UDP payload length of a frame of `frame_size` bytes, when it can carry a header.
pub fn payload_len(frame_size: usize) -> Option<usize> {
    (MIN_FRAME..=MAX_FRAME)
        .contains(&frame_size)
        .then(|| frame_size - FRAME_OVERHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as it leaves the sender: stream 0x01020304, seq 5, sent at 1.000000007 s.
    const GOLDEN: [u8; HEADER_LEN] = [
        0x56, 0x50, // magic "VP"
        0x01, 0x02, 0x03, 0x04, // stream id
        0, 0, 0, 0, 0, 0, 0, 5, // seq
        0, 0, 0, 0, 0x3b, 0x9a, 0xca, 0x07, // 1_000_000_007 ns
    ];

    #[test]
    fn encode_matches_golden_bytes() {
        let mut out = [0u8; HEADER_LEN];
        Header {
            stream_id: 0x0102_0304,
            seq: 5,
            timestamp_ns: 1_000_000_007,
        }
        .encode(&mut out);
        assert_eq!(out, GOLDEN);
    }

    #[test]
    fn decode_golden_field_by_field() {
        let mut datagram = GOLDEN.to_vec();
        datagram.extend_from_slice(&[0; 20]); // padding is ignored
        let h = Header::decode(&datagram).unwrap();
        assert_eq!(h.stream_id, 0x0102_0304);
        assert_eq!(h.seq, 5);
        assert_eq!(h.timestamp_ns, 1_000_000_007);
    }

    #[test]
    fn round_trip_extremes() {
        for h in [
            Header {
                stream_id: 0,
                seq: 0,
                timestamp_ns: 0,
            },
            Header {
                stream_id: u32::MAX,
                seq: u64::MAX,
                timestamp_ns: u64::MAX,
            },
        ] {
            let mut out = [0u8; HEADER_LEN];
            h.encode(&mut out);
            assert_eq!(Header::decode(&out), Ok(h));
        }
    }

    #[test]
    fn decode_rejects_short_and_foreign_datagrams() {
        assert_eq!(Header::decode(&[]), Err(DecodeError::Short(0)));
        assert_eq!(
            Header::decode(&GOLDEN[..HEADER_LEN - 1]),
            Err(DecodeError::Short(HEADER_LEN - 1))
        );
        let mut foreign = GOLDEN;
        foreign[0] = 0x45;
        assert_eq!(Header::decode(&foreign), Err(DecodeError::BadMagic(0x4550)));
    }

    #[test]
    fn payload_len_bounds() {
        assert_eq!(payload_len(63), None);
        assert_eq!(payload_len(64), Some(22));
        assert_eq!(payload_len(1400), Some(1358));
        assert_eq!(payload_len(9000), Some(8958));
        assert_eq!(payload_len(9001), None);
    }
}
