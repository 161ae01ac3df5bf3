//! Packet capture over the control socket: the request, the stream's header, and the
//! binary records that follow it.
//!
//! Contract of the stream (the one exception to "one request, one response line"):
//! - The client sends [`crate::Request::Capture`]. The daemon answers one JSON line: either
//!   [`crate::Response::Error`] (nothing more follows) or
//!   [`crate::Response::CaptureStarted`]; after the latter the connection carries only
//!   records, each a 4-byte big-endian length then that many bytes of body, until one
//!   [`Record::End`], after which the daemon closes the connection.
//! - A body starts with a tag byte: [`TAG_FRAME`] (direction byte, wall-clock timestamp in
//!   nanoseconds since the Unix epoch as a big-endian u64, the frame's length on the wire as
//!   a big-endian u32, then the captured bytes: a whole Ethernet frame) or [`TAG_END`]
//!   (the [`CaptureEnd`] summary as JSON).
//! - A body is at most [`MAX_RECORD_LEN`] bytes; a longer length is a protocol error.
//! - The client ends a capture early by closing its end: the daemon notices, stops copying
//!   frames and forgets the capture.
//!
//! Encoding and decoding here are pure (no I/O): [`encode_record`] appends to a `Vec`,
//! [`decode_record`] reads from a byte slice and says how much it consumed.

use serde::{Deserialize, Serialize};

/// Default of `-c`: frames captured before the capture ends.
pub const DEFAULT_CAPTURE_COUNT: u64 = 1000;
/// Most frames one capture may ask for.
pub const MAX_CAPTURE_COUNT: u64 = 1_000_000;
/// Default of `--duration` (seconds).
pub const DEFAULT_CAPTURE_SECONDS: u64 = 10;
/// Longest capture (seconds): the hard maximum of `--duration`.
pub const MAX_CAPTURE_SECONDS: u64 = 600;
/// Most frame bytes one capture copies; the capture ends when it is reached.
pub const MAX_CAPTURE_BYTES: u64 = 256 << 20;
/// Largest frame a capture record carries (a 64 KiB IP packet, its Ethernet header, and
/// for the tunnel the synthesized outer headers).
pub const MAX_CAPTURED_FRAME: usize = 65535 + 14 + 64;
/// Largest record body.
pub const MAX_RECORD_LEN: usize = 1 + 1 + 8 + 4 + MAX_CAPTURED_FRAME;
/// Tag of a frame record.
pub const TAG_FRAME: u8 = 1;
/// Tag of the end record.
pub const TAG_END: u8 = 2;
/// The link type of every capture: Ethernet (LINKTYPE_ETHERNET).
pub const LINKTYPE_ETHERNET: u32 = 1;

fn default_namespace() -> String {
    "default".to_string()
}

fn default_count() -> u64 {
    DEFAULT_CAPTURE_COUNT
}

fn default_seconds() -> u64 {
    DEFAULT_CAPTURE_SECONDS
}

/// What `capture` asks for: a pod's port or the tunnel, a filter and the bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSpec {
    /// The pod whose port to capture; absent with `tunnel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The pod's namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Capture the tunnel socket's datagrams instead of a port.
    #[serde(default)]
    pub tunnel: bool,
    /// Stop after this many frames.
    #[serde(default = "default_count")]
    pub count: u64,
    /// Stop after this many seconds.
    #[serde(default = "default_seconds")]
    pub duration_s: u64,
    /// `host IP`, `port N`, `tcp|udp|icmp|arp`, joined by `and`; empty: every frame.
    #[serde(default)]
    pub filter: String,
}

/// The header line of an accepted capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStart {
    /// What is captured, for people: `port default/web` or `tunnel 198.19.0.1:4789`.
    pub target: String,
    /// The pcap link type of the frames ([`LINKTYPE_ETHERNET`]).
    pub link_type: u32,
    /// The largest frame a record may carry.
    pub snaplen: u32,
}

/// Which way a captured frame went, seen from the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Into the switch: read from the pod's TAP, or received from the tunnel.
    In,
    /// Out of the switch: written to the pod's TAP, or sent into the tunnel.
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `-c` frames were captured.
    Count,
    /// `--duration` passed.
    Duration,
    /// [`MAX_CAPTURE_BYTES`] were copied.
    Bytes,
    /// The captured port was removed (or detached).
    PortGone,
}

/// The summary that ends a capture stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureEnd {
    /// Frames sent to the client.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames that matched but did not fit the daemon's bounded queue (lost to the capture,
    /// not to the pod: forwarding never waits for a capture).
    pub lost: u64,
    /// Why it ended.
    pub reason: EndReason,
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Which way it went.
    pub dir: Direction,
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Its length on the wire (equal to `data.len()`: frames are not truncated).
    pub orig_len: u32,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

/// A record of the capture stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A frame.
    Frame(CapturedFrame),
    /// The end of the stream.
    End(CaptureEnd),
}

/// Appends a frame record (length prefix included) to `out`, without building a
/// [`CapturedFrame`] first. `data` longer than [`MAX_CAPTURED_FRAME`] is cut there.
pub fn encode_frame(out: &mut Vec<u8>, dir: Direction, ts_ns: u64, orig_len: u32, data: &[u8]) {
    let data = data.get(..MAX_CAPTURED_FRAME).unwrap_or(data);
    let body_len = 1 + 1 + 8 + 4 + data.len();
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.push(TAG_FRAME);
    out.push(match dir {
        Direction::In => 0,
        Direction::Out => 1,
    });
    out.extend_from_slice(&ts_ns.to_be_bytes());
    out.extend_from_slice(&orig_len.to_be_bytes());
    out.extend_from_slice(data);
}

/// Appends `r` (length prefix included) to `out`.
pub fn encode_record(out: &mut Vec<u8>, r: &Record) {
    match r {
        Record::Frame(f) => encode_frame(out, f.dir, f.ts_ns, f.orig_len, &f.data),
        Record::End(e) => {
            let json = serde_json::to_vec(e).expect("the summary always serializes");
            out.extend_from_slice(&((json.len() + 1) as u32).to_be_bytes());
            out.push(TAG_END);
            out.extend_from_slice(&json);
        }
    }
}

/// What is wrong with a capture stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The length prefix is over [`MAX_RECORD_LEN`] or zero.
    #[error("capture record of {0} bytes (at most {MAX_RECORD_LEN})")]
    Length(usize),
    /// The body does not parse.
    #[error("malformed capture record: {0}")]
    Malformed(String),
}

/// Decodes the record at the start of `buf`: `Ok(None)` when `buf` does not hold a whole
/// record yet, else the record and the bytes it took.
pub fn decode_record(buf: &[u8]) -> Result<Option<(Record, usize)>, RecordError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(RecordError::Length(len));
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, 4 + len)))
}

/// Decodes a record body (without its length prefix).
pub fn decode_body(body: &[u8]) -> Result<Record, RecordError> {
    let bad = |m: &str| RecordError::Malformed(m.to_string());
    match body.first() {
        Some(&TAG_FRAME) => {
            let head = body
                .get(..14)
                .ok_or_else(|| bad("frame record too short"))?;
            let dir = match head[1] {
                0 => Direction::In,
                1 => Direction::Out,
                d => return Err(RecordError::Malformed(format!("direction {d}"))),
            };
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&head[2..10]);
            let mut ol = [0u8; 4];
            ol.copy_from_slice(&head[10..14]);
            Ok(Record::Frame(CapturedFrame {
                dir,
                ts_ns: u64::from_be_bytes(ts),
                orig_len: u32::from_be_bytes(ol),
                data: body.get(14..).unwrap_or_default().to_vec(),
            }))
        }
        Some(&TAG_END) => {
            let e = serde_json::from_slice(body.get(1..).unwrap_or_default())
                .map_err(|e| RecordError::Malformed(format!("end record: {e}")))?;
            Ok(Record::End(e))
        }
        Some(t) => Err(RecordError::Malformed(format!("unknown tag {t}"))),
        None => Err(bad("empty record")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_back_to_back_and_in_pieces() {
        let frame = Record::Frame(CapturedFrame {
            dir: Direction::Out,
            ts_ns: 1_700_000_000_123_456_789,
            orig_len: 5,
            data: vec![1, 2, 3, 4, 5],
        });
        let end = Record::End(CaptureEnd {
            packets: 1,
            bytes: 5,
            lost: 2,
            reason: EndReason::Count,
        });
        let mut buf = Vec::new();
        encode_record(&mut buf, &frame);
        assert_eq!(buf.len(), 4 + 14 + 5);
        assert_eq!(&buf[..6], &[0, 0, 0, 19, TAG_FRAME, 1]);
        encode_record(&mut buf, &end);
        for cut in 0..23 {
            assert_eq!(decode_record(&buf[..cut]), Ok(None), "cut at {cut}");
        }
        let (r, n) = decode_record(&buf).unwrap().unwrap();
        assert_eq!((r, n), (frame, 23));
        let (r, m) = decode_record(&buf[n..]).unwrap().unwrap();
        assert_eq!(r, end);
        assert_eq!(n + m, buf.len());
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(decode_record(&[0, 0, 0, 0]), Err(RecordError::Length(0)));
        assert!(matches!(
            decode_record(&[0xff, 0, 0, 0]),
            Err(RecordError::Length(_))
        ));
        for body in [
            &[9u8][..],
            &[TAG_FRAME, 0, 1],
            &[TAG_FRAME, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[TAG_END, b'{'],
        ] {
            let mut b = (body.len() as u32).to_be_bytes().to_vec();
            b.extend_from_slice(body);
            assert!(
                matches!(decode_record(&b), Err(RecordError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn spec_defaults_fill_in_on_the_wire() {
        let s: CaptureSpec = serde_json::from_str(r#"{"tunnel":true}"#).unwrap();
        assert_eq!(s.count, DEFAULT_CAPTURE_COUNT);
        assert_eq!(s.duration_s, DEFAULT_CAPTURE_SECONDS);
        assert_eq!(s.namespace, "default");
        assert_eq!(s.filter, "");
        assert_eq!(s.port, None);
    }
}
