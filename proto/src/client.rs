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
}

/// Sends `req` to the daemon at `socket` and waits at most `timeout` for each step.
pub fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(encode_request(req).as_bytes())?;
    let mut reader = BufReader::new(stream.take(MAX_MESSAGE_LEN as u64));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(ClientError::Closed);
    }
    Ok(decode_response(&line)?)
}
