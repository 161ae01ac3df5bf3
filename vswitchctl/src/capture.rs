//! `vswitchctl capture`: the one streaming command. It sends one `capture` request, then
//! reads the daemon's records (`vswitch_proto::capture`) until the summary record and
//! writes them as pcap (`-w FILE`, `-w -` for stdout) with the `pcap-file` crate, or prints
//! one summary line per frame. The summary (frames, bytes, lost, why it ended) goes to
//! stderr; the exit code is 0 when the capture ran to its end.
//!
//! The pcap file: classic pcap (2.4), little-endian, microsecond timestamps, link type
//! Ethernet, snaplen 262144 (frames are never cut: a port's TSO/GRO super-frame is one
//! record of up to 64 KiB). Classic pcap has no direction field: summary lines show it
//! (`in`: into the switch, from the pod or from the tunnel; `out`: to the pod or into the
//! tunnel).

use crate::Failure;
use clap::Args;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use vswitch_proto::capture::{
    CaptureEnd, CaptureSpec, CapturedFrame, Record, DEFAULT_CAPTURE_COUNT, DEFAULT_CAPTURE_SECONDS,
    MAX_CAPTURE_SECONDS,
};
use vswitch_proto::client;
use vswitch_proto::validate::{self, Invalid};
use vswitch_proto::{Request, Response};

/// The snaplen written in the pcap header (tcpdump's default): above every frame we send.
pub(crate) const SNAPLEN: u32 = 262_144;

#[derive(Debug, Args)]
pub(crate) struct CaptureArgs {
    /// Capture the tunnel's VXLAN datagrams (with synthesized outer Ethernet/IPv4/UDP
    /// headers) instead of a pod's port
    #[arg(long)]
    pub(crate) tunnel: bool,
    /// The pod's namespace
    #[arg(long, default_value = "default")]
    pub(crate) namespace: String,
    /// Stop after this many frames
    #[arg(short = 'c', long = "count", value_name = "N", default_value_t = DEFAULT_CAPTURE_COUNT)]
    pub(crate) count: u64,
    /// Stop after this many seconds [max: 600]
    #[arg(long, value_name = "S", default_value_t = DEFAULT_CAPTURE_SECONDS)]
    pub(crate) duration: u64,
    /// Write pcap to FILE, or to stdout with `-`, instead of summary lines
    #[arg(short = 'w', value_name = "FILE|-")]
    pub(crate) write: Option<String>,
    /// PORT (the pod's name; not with --tunnel), then the filter: `host IP`, `port N`,
    /// `tcp|udp|icmp|arp`, joined by `and`
    #[arg(value_name = "PORT | FILTER")]
    pub(crate) args: Vec<String>,
}

/// The request, after the same checks the daemon runs (exit 2 before connecting).
pub(crate) fn request(a: &CaptureArgs) -> Result<Request, Invalid> {
    let (port, filter) = match (a.tunnel, a.args.split_first()) {
        (true, _) => (None, a.args.as_slice()),
        (false, Some((port, rest))) => (Some(port.clone()), rest),
        (false, None) => (None, &[][..]),
    };
    let spec = CaptureSpec {
        port,
        namespace: a.namespace.clone(),
        tunnel: a.tunnel,
        count: a.count,
        duration_s: a.duration,
        filter: filter.join(" "),
    };
    validate::capture_spec(&spec)?;
    Ok(Request::Capture(spec))
}

/// Runs a capture against the daemon at `socket`; everything goes out as it comes.
pub(crate) fn run(a: &CaptureArgs, socket: &Path, timeout: Duration) -> Result<(), Failure> {
    let req = request(a).map_err(Failure::Invalid)?;
    let out: Option<Box<dyn Write>> = match a.write.as_deref() {
        None => None,
        // Streamed: a reader at the other end of `-w -` sees each frame as it comes.
        Some("-") => Some(Box::new(Unbuffered(std::io::stdout().lock()))),
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Failure::Usage(format!("-w: cannot create {path}: {e}")))?,
        ))),
    };
    // The daemon ends every capture within its duration: wait that long, and a step more.
    let idle = Duration::from_secs(a.duration.min(MAX_CAPTURE_SECONDS)) + timeout;
    let (resp, stream) = client::capture(socket, &req, timeout, idle).map_err(Failure::Client)?;
    let (start, mut stream) = match (resp, stream) {
        (Response::CaptureStarted(s), Some(st)) => (s, st),
        (Response::Error(e), _) => return Err(Failure::Daemon(e)),
        (other, _) => {
            return Err(Failure::Other(anyhow::anyhow!(
                "unexpected answer from vswitchd: {}",
                vswitch_proto::encode_response(&other).trim_end()
            )))
        }
    };
    let mut sink = match out {
        Some(w) => Sink::Pcap(pcap_writer(w).map_err(Failure::Other)?),
        None => Sink::Lines(std::io::stdout().lock()),
    };
    eprintln!("capturing on {}", start.target);
    let end = loop {
        match stream.next_record().map_err(Failure::Client)? {
            Record::Frame(f) => sink.frame(&f, a.tunnel).map_err(Failure::Other)?,
            Record::End(end) => break end,
        }
    };
    sink.finish().map_err(Failure::Other)?;
    eprintln!("{}", end_line(&end));
    Ok(())
}

/// The summary line for stderr.
pub(crate) fn end_line(e: &CaptureEnd) -> String {
    let reason = serde_json::to_value(e.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    format!(
        "{} packets captured ({} bytes), {} lost to a full queue; ended: {reason}",
        e.packets, e.bytes, e.lost
    )
}

/// A pcap writer with our header.
pub(crate) fn pcap_writer<W: Write>(w: W) -> anyhow::Result<PcapWriter<W>> {
    let header = PcapHeader {
        snaplen: SNAPLEN,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
        ..PcapHeader::default()
    };
    Ok(PcapWriter::with_header(w, header)?)
}

/// Writes one frame record as a pcap packet.
pub(crate) fn write_packet<W: Write>(
    w: &mut PcapWriter<W>,
    f: &CapturedFrame,
) -> anyhow::Result<()> {
    let ts = Duration::from_nanos(f.ts_ns);
    let orig_len = f
        .orig_len
        .max(u32::try_from(f.data.len()).unwrap_or(u32::MAX));
    w.write_packet(&PcapPacket::new(ts, orig_len, &f.data))?;
    Ok(())
}

/// A writer that flushes every write (pcap to stdout, for a reader downstream).
struct Unbuffered<W: Write>(W);

impl<W: Write> Write for Unbuffered<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.0.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

enum Sink {
    Pcap(PcapWriter<Box<dyn Write>>),
    Lines(std::io::StdoutLock<'static>),
}

impl Sink {
    fn frame(&mut self, f: &CapturedFrame, tunnel: bool) -> anyhow::Result<()> {
        match self {
            Sink::Pcap(w) => write_packet(w, f)?,
            Sink::Lines(out) => writeln!(out, "{}", crate::capture_line::line(f, tunnel))?,
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Pcap(w) => w.into_writer().flush()?,
            Sink::Lines(mut out) => out.flush()?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::parse;
    use crate::Command;
    use pcap_file::pcap::PcapReader;
    use vswitch_proto::capture::Direction;

    fn req(args: &[&str]) -> Result<Request, Invalid> {
        match parse(args).command {
            Command::Capture(a) => request(&a),
            other => panic!("{other:?}"),
        }
    }

    fn spec(args: &[&str]) -> CaptureSpec {
        match req(args).unwrap() {
            Request::Capture(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn capture_arguments_become_a_checked_request() {
        let s = spec(&["capture", "web", "-c", "5", "tcp", "and", "port", "80"]);
        assert_eq!(s.port.as_deref(), Some("web"));
        assert_eq!((s.count, s.duration_s), (5, DEFAULT_CAPTURE_SECONDS));
        assert_eq!(s.filter, "tcp and port 80");
        assert!(!s.tunnel);
        let s = spec(&["capture", "--tunnel", "--duration", "3", "udp"]);
        assert_eq!((s.port, s.tunnel, s.filter.as_str()), (None, true, "udp"));
        let s = spec(&[
            "capture", "web", "-w", "f.pcap", "tcp", "-c", "2", "and", "port", "80",
        ]);
        assert_eq!((s.filter.as_str(), s.count), ("tcp and port 80", 2));
        let s = spec(&["capture", "web", "--namespace", "team-a", "-w", "-"]);
        assert_eq!((s.namespace.as_str(), s.filter.as_str()), ("team-a", ""));
        for (args, field) in [
            (&["capture"][..], "port"),
            (&["capture", "web", "tcp", "or", "udp"], "filter"),
            (&["capture", "web", "bogus"], "filter"),
            (&["capture", "--tunnel", "port", "x"], "filter"),
            (&["capture", "web", "-c", "0"], "count"),
            (&["capture", "web", "--duration", "601"], "duration_s"),
            (&["capture", "Web"], "port"),
        ] {
            assert_eq!(req(args).unwrap_err().field, field, "{args:?}");
        }
    }

    #[test]
    fn records_become_pcap_that_reads_back() {
        let frames = [
            CapturedFrame {
                dir: Direction::In,
                ts_ns: 1_700_000_000_123_456_789,
                orig_len: 60,
                data: (0..60).collect(),
            },
            CapturedFrame {
                dir: Direction::Out,
                ts_ns: 1_700_000_001_000_000_000,
                orig_len: 65_549,
                data: vec![7; 65_549], // a TSO super-frame, whole
            },
        ];
        let mut w = pcap_writer(Vec::new()).unwrap();
        for f in &frames {
            write_packet(&mut w, f).unwrap();
        }
        let bytes = w.into_writer();
        assert_eq!(
            &bytes[..4],
            &[0xd4, 0xc3, 0xb2, 0xa1],
            "little-endian, microseconds"
        );
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().datalink, DataLink::ETHERNET);
        assert_eq!(r.header().snaplen, SNAPLEN);
        for f in &frames {
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!(p.timestamp, Duration::from_nanos(f.ts_ns / 1000 * 1000));
            assert_eq!(p.orig_len, f.orig_len);
            assert_eq!(&p.data[..], &f.data[..]);
        }
        assert!(r.next_packet().is_none());
    }

    #[test]
    fn the_end_line_says_what_happened() {
        let e = CaptureEnd {
            packets: 3,
            bytes: 180,
            lost: 1,
            reason: vswitch_proto::capture::EndReason::Count,
        };
        assert_eq!(
            end_line(&e),
            "3 packets captured (180 bytes), 1 lost to a full queue; ended: count"
        );
    }
}
