//! `capture`: the control socket's one streaming request (the stream's format is
//! `vswitch_proto::capture`).
//!
//! Contract: the request is checked (`validate::capture_spec`, then the port must exist and
//! be attached, or the node must have a tunnel) before anything is tapped; a refusal is one
//! error line naming the field, as for every request. An accepted capture answers
//! `CaptureStarted`, then streams frame records until `count` frames, `duration_s` seconds
//! or `MAX_CAPTURE_BYTES` bytes, or until its port goes away, and ends with the summary
//! record (frames lost to the bounded queue included); then the connection is closed. When
//! the client goes away (its end closed, or a write that fails or does not complete within
//! `--client-timeout`) the capture is dropped at once and the engines stop copying.

use crate::io::capture::{Capture, Target};
use crate::node::Node;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info};
use vswitch_datapath::capture::{Filter, Term};
use vswitch_datapath::PortId;
use vswitch_proto::capture::{
    encode_frame, encode_record, CaptureEnd, CaptureSpec, CaptureStart, EndReason, Record,
    LINKTYPE_ETHERNET, MAX_CAPTURED_FRAME, MAX_CAPTURE_BYTES,
};
use vswitch_proto::validate::{self, FilterProto, FilterTerm};
use vswitch_proto::{encode_response, ErrorKind, PortKey, Response};

/// Bytes of records gathered before one write to the client.
const WRITE_CHUNK: usize = 256 << 10;

/// The datapath's filter for the parsed terms.
fn filter(terms: &[FilterTerm]) -> Filter {
    Filter::new(
        terms
            .iter()
            .map(|t| match *t {
                FilterTerm::Host(ip) => Term::Host(ip),
                FilterTerm::Port(p) => Term::Port(p),
                FilterTerm::Proto(FilterProto::Tcp) => Term::Tcp,
                FilterTerm::Proto(FilterProto::Udp) => Term::Udp,
                FilterTerm::Proto(FilterProto::Icmp) => Term::Icmp,
                FilterTerm::Proto(FilterProto::Arp) => Term::Arp,
            })
            .collect(),
    )
}

/// What a checked capture request asks for.
struct Checked {
    target: Target,
    /// For people: `port NS/NAME` or `tunnel ADDR`.
    what: String,
    /// The captured port, to notice its removal.
    port: Option<(PortKey, PortId)>,
    filter: Filter,
}

/// Checks a capture request: its shape, then what it names.
async fn check(node: &Node, spec: &CaptureSpec) -> Result<Checked, Response> {
    let invalid =
        |e: validate::Invalid| Response::error(ErrorKind::Invalid, Some(e.field), e.message);
    let filter = filter(&validate::capture_spec(spec).map_err(invalid)?);
    match &spec.port {
        Some(name) => {
            let key = PortKey {
                name: name.clone(),
                namespace: spec.namespace.clone(),
            };
            let what = format!("port {}/{}", key.namespace, key.name);
            let id = node.running_port(&key).await.ok_or_else(|| {
                Response::error(
                    ErrorKind::NotFound,
                    Some("port"),
                    format!("{what} does not exist or is not attached"),
                )
            })?;
            Ok(Checked {
                target: Target::Port(id),
                what,
                port: Some((key, id)),
                filter,
            })
        }
        None => {
            let addr = node.io().tunnel_addr().ok_or_else(|| {
                Response::error(
                    ErrorKind::NotFound,
                    Some("tunnel"),
                    "this node has no tunnel (it runs without --underlay)",
                )
            })?;
            Ok(Checked {
                target: Target::Tunnel,
                what: format!("tunnel {addr}"),
                port: None,
                filter,
            })
        }
    }
}

/// Writes `bytes` within `timeout`; `false` when the client is gone or too slow.
async fn send<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8], timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, wr.write_all(bytes)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            debug!("capture: client gone: {e}");
            false
        }
        Err(_) => {
            debug!("capture: the client does not read its stream");
            false
        }
    }
}

/// Serves one capture request on its connection (`rd`: the rest of what the client sends,
/// read only to notice that it went away).
pub async fn serve<R, W>(node: &Node, spec: CaptureSpec, rd: &mut R, wr: &mut W, timeout: Duration)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let c = match check(node, &spec).await {
        Ok(c) => c,
        Err(resp) => {
            send(wr, encode_response(&resp).as_bytes(), timeout).await;
            return;
        }
    };
    let mut cap = node.io().capture().start(c.target, c.filter);
    info!(target = %c.what, filter = %spec.filter, "capture started");
    let start = Response::CaptureStarted(CaptureStart {
        target: c.what.clone(),
        link_type: LINKTYPE_ETHERNET,
        snaplen: MAX_CAPTURED_FRAME as u32,
    });
    let end = if send(wr, encode_response(&start).as_bytes(), timeout).await {
        stream(node, &spec, &mut cap, c.port, rd, wr, timeout).await
    } else {
        None
    };
    let lost = cap.lost();
    drop(cap); // the engines stop copying at their next batch
    let Some(end) = end else {
        info!(target = %c.what, lost, "capture ended: the client went away");
        return;
    };
    info!(target = %c.what, packets = end.packets, lost, reason = ?end.reason, "capture ended");
    let mut out = Vec::new();
    encode_record(&mut out, &Record::End(CaptureEnd { lost, ..end }));
    send(wr, &out, timeout).await;
}

/// Streams frames until the capture ends (its summary, `lost` not yet filled in) or the
/// client goes away (`None`).
async fn stream<R, W>(
    node: &Node,
    spec: &CaptureSpec,
    cap: &mut Capture,
    port: Option<(PortKey, PortId)>,
    rd: &mut R,
    wr: &mut W,
    timeout: Duration,
) -> Option<CaptureEnd>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(spec.duration_s);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut out = Vec::new();
    let mut scratch = [0u8; 512];
    let done = |packets: u64, bytes: u64| {
        if packets >= spec.count {
            Some(EndReason::Count)
        } else if bytes >= MAX_CAPTURE_BYTES {
            Some(EndReason::Bytes)
        } else {
            None
        }
    };
    let reason = loop {
        tokio::select! {
            got = cap.recv() => {
                // The capture holds its own sender: `None` cannot happen while it runs.
                let Some(mut c) = got else { break EndReason::Duration };
                out.clear();
                loop {
                    let len = u32::try_from(c.data.len()).unwrap_or(u32::MAX);
                    encode_frame(&mut out, c.dir, c.ts_ns, len, &c.data);
                    packets += 1;
                    bytes += u64::from(len);
                    if done(packets, bytes).is_some() || out.len() >= WRITE_CHUNK {
                        break;
                    }
                    match cap.try_recv() {
                        Some(next) => c = next,
                        None => break,
                    }
                }
                if !send(wr, &out, timeout).await {
                    return None;
                }
                if let Some(r) = done(packets, bytes) {
                    break r;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break EndReason::Duration,
            r = rd.read(&mut scratch) => match r {
                Ok(0) | Err(_) => {
                    debug!("capture: the client closed its end");
                    return None;
                }
                Ok(_) => {} // nothing is expected from the client: ignored
            },
            _ = tick.tick(), if port.is_some() => {
                if let Some((key, id)) = &port {
                    if node.running_port(key).await != Some(*id) {
                        break EndReason::PortGone;
                    }
                }
            }
        }
    };
    Some(CaptureEnd {
        packets,
        bytes,
        lost: 0,
        reason,
    })
}
