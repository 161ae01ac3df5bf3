//! A small blocking client: connect, send one request, read one response, with timeouts.
//! Used by `vswitchctl` and `vswitch-cni`, which must never hang their caller.

use crate::{decode_response, encode_request, Request, Response, MAX_MESSAGE_LEN};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Why a call to the daemon failed (the daemon's own errors come back as [`Response::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to vswitchd at {path}: {source} (is vswitchd running?)")]
    Connect {
        /// The socket path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading or writing failed (including timeouts).
    #[error("talking to vswitchd: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon closed the connection without answering.
    #[error("vswitchd closed the connection without answering")]
    Closed,
    /// The answer could not be decoded.
    #[error("undecodable answer from vswitchd: {0}")]
    Decode(#[from] crate::ProtoError),
    /// A capture record could not be decoded.
    #[error("undecodable capture stream from vswitchd: {0}")]
    Record(#[from] crate::capture::RecordError),
}

/// Sends `req` to the daemon at `socket` and waits at most `timeout` for each step.
pub fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let stream = match send(socket, req, timeout)? {
        Sent::Stream(s) => s,
        Sent::Refused(resp) => return Ok(*resp),
    };
    let mut reader = BufReader::new(stream.take(MAX_MESSAGE_LEN as u64));
    read_response(&mut reader)
}

/// What became of a request sent.
enum Sent {
    /// It was sent; its answer is to be read from the stream.
    Stream(UnixStream),
    /// The daemon answered before reading it, and closed (too many connections).
    Refused(Box<Response>),
}

/// Connects and sends `req`, with `timeout` on every later read and write.
fn send(socket: &Path, req: &Request, timeout: Duration) -> Result<Sent, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    if let Err(e) = stream.write_all(encode_request(req).as_bytes()) {
        // A daemon refusing the connection (its `--max-clients`) answers with an error line
        // and closes without reading: that answer says more than the broken pipe.
        if matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ) {
            let mut reader = BufReader::new((&stream).take(MAX_MESSAGE_LEN as u64));
            if let Ok(resp @ Response::Error(_)) = read_response(&mut reader) {
                return Ok(Sent::Refused(Box::new(resp)));
            }
        }
        return Err(e.into());
    }
    Ok(Sent::Stream(stream))
}

/// Reads one response line (at most [`MAX_MESSAGE_LEN`] bytes).
fn read_response(reader: &mut impl BufRead) -> Result<Response, ClientError> {
    let mut line = Vec::new();
    reader
        .take(MAX_MESSAGE_LEN as u64)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(ClientError::Closed);
    }
    Ok(decode_response(&line)?)
}

/// An accepted capture: the records the daemon streams (see [`crate::capture`]).
pub struct CaptureStream {
    reader: BufReader<UnixStream>,
}

impl CaptureStream {
    /// The next record; [`crate::capture::Record::End`] is the last one.
    pub fn next_record(&mut self) -> Result<crate::capture::Record, ClientError> {
        let mut len = [0u8; 4];
        self.reader.read_exact(&mut len).map_err(closed_on_eof)?;
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 || n > crate::capture::MAX_RECORD_LEN {
            return Err(crate::capture::RecordError::Length(n).into());
        }
        let mut body = vec![0u8; n];
        self.reader.read_exact(&mut body).map_err(closed_on_eof)?;
        Ok(crate::capture::decode_body(&body)?)
    }
}

fn closed_on_eof(e: std::io::Error) -> ClientError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ClientError::Closed
    } else {
        ClientError::Io(e)
    }
}

/// Starts a capture: sends `req` (a [`Request::Capture`]) and reads the daemon's answer.
/// With [`Response::CaptureStarted`] the stream of records comes with it; any other answer
/// (an error) comes alone. Reads wait at most `timeout` for the answer, then `idle` between
/// records (the daemon ends every capture within its duration).
pub fn capture(
    socket: &Path,
    req: &Request,
    timeout: Duration,
    idle: Duration,
) -> Result<(Response, Option<CaptureStream>), ClientError> {
    let stream = match send(socket, req, timeout)? {
        Sent::Stream(s) => s,
        Sent::Refused(resp) => return Ok((*resp, None)),
    };
    let mut reader = BufReader::new(stream);
    let resp = read_response(&mut reader)?;
    if !matches!(resp, Response::CaptureStarted(_)) {
        return Ok((resp, None));
    }
    reader.get_ref().set_read_timeout(Some(idle))?;
    Ok((resp, Some(CaptureStream { reader })))
}

/// The lines of a followed `observe` after its answer (see [`crate::observe`]).
pub struct FollowStream {
    reader: BufReader<UnixStream>,
}

/// A line of a followed `observe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowItem {
    /// A new flow event.
    Flow(Box<crate::observe::FlowRecord>),
    /// Events skipped because this client did not keep up.
    Lost(u64),
}

impl FollowStream {
    /// The next line; waits as long as it takes (the daemon sends only new events).
    pub fn next_item(&mut self) -> Result<FollowItem, ClientError> {
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_MESSAGE_LEN as u64)
            .read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(ClientError::Closed);
        }
        if let Ok(note) = serde_json::from_slice::<crate::observe::FollowNote>(&line) {
            return Ok(FollowItem::Lost(note.lost));
        }
        serde_json::from_slice(&line)
            .map(|r| FollowItem::Flow(Box::new(r)))
            .map_err(|e| crate::ProtoError::Malformed(e.to_string()).into())
    }
}

/// Sends an `observe` request (a [`Request::Observe`]) and reads its answer within
/// `timeout`; with `follow` and a [`Response::Flows`] answer, the stream of new events comes
/// with it (read without a timeout).
pub fn observe(
    socket: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<(Response, Option<FollowStream>), ClientError> {
    let follow = matches!(req, Request::Observe(s) if s.follow);
    let stream = match send(socket, req, timeout)? {
        Sent::Stream(s) => s,
        Sent::Refused(resp) => return Ok((*resp, None)),
    };
    let mut reader = BufReader::new(stream);
    let resp = read_response(&mut reader)?;
    if !follow || !matches!(resp, Response::Flows(_)) {
        return Ok((resp, None));
    }
    reader.get_ref().set_read_timeout(None)?;
    Ok((resp, Some(FollowStream { reader })))
}
