//! The control socket: newline-delimited JSON requests (vswitch-proto), one response each.
//! A bad request gets an error answer and the connection stays usable; nothing a client
//! sends can stop the daemon. Each connection is its own task, so a slow or stuck client
//! delays no one else; a line over `MAX_MESSAGE_LEN` is answered with an error naming the
//! limit and the connection is closed; a connection that does not complete a request line
//! (idle, or half-sent) or does not read its answer within `--client-timeout` (30 s by
//! default) is closed. `capture` is the one streaming request: its connection carries the
//! capture's records and then closes (`capture.rs`).
//!
//! Limits: at most `--max-clients` connections (128 by default) are served at once, since
//! each may buffer up to `MAX_MESSAGE_LEN`; one more is answered with one error line
//! (`unavailable`, naming the limit) and closed, and the others go on. When the process is
//! out of file descriptors (EMFILE/ENFILE), the accept loop pauses [`ACCEPT_BACKOFF`] between
//! tries instead of spinning, and logs once per such episode. The socket is never reachable
//! with a mode wider than 0660 ([`bind_socket`]).

use crate::node::Node;
use crate::Args;
use anyhow::{Context, Result};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};
use vswitch_proto::{
    decode_request, encode_response, ErrorBody, ErrorKind, ProtoError, Request, Response,
    MAX_MESSAGE_LEN,
};

/// The default of `--max-clients`.
pub const DEFAULT_MAX_CLIENTS: usize = 128;

/// How long the accept loop pauses when the process is out of file descriptors.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The group `--socket-group` names, looked up at startup, before anything else is set up,
/// so that a wrong name stops the daemon with an error naming the flag.
pub fn socket_gid(group: Option<&str>) -> Result<Option<nix::unistd::Gid>> {
    let Some(group) = group else {
        return Ok(None);
    };
    let found = nix::unistd::Group::from_name(group)
        .with_context(|| format!("--socket-group: looking up group {group}"))?
        .with_context(|| format!("--socket-group: no group named {group}"))?;
    Ok(Some(found.gid))
}

/// Binds the control socket at `path`, mode 0660, owned by root and `gid` (root's group
/// without one), so that nobody else can ever connect to it, not even in the moment after
/// `bind(2)` (which creates the file with mode 0777 minus the umask).
///
/// The socket is bound in a private directory (mode 0700, root's, next to `path`: the same
/// file system), given its mode and group there, then renamed into place: it appears at
/// `path` complete, and `rename(2)` replaces a stale socket file atomically. The
/// alternative, a umask around `bind`, is process-wide: by the time the control socket is
/// bound the I/O workers, the metrics thread and the state writer run, and any file or
/// directory they created meanwhile would get the socket's umask.
pub fn bind_socket(
    path: &Path,
    gid: Option<nix::unistd::Gid>,
) -> Result<std::os::unix::net::UnixListener> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("--socket: {} names no file", path.display()))?;
    let private = dir.join(format!(".{}.bind", name.to_string_lossy()));
    // Left by a daemon that died between bind and rename.
    match std::fs::symlink_metadata(&private) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&private)?,
        Ok(_) => std::fs::remove_file(&private)?,
        Err(_) => {}
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("--socket: cannot create {}", private.display()))?;
    let tmp = private.join("s");
    let bound = (|| -> Result<std::os::unix::net::UnixListener> {
        let listener = std::os::unix::net::UnixListener::bind(&tmp)
            .with_context(|| format!("--socket: cannot bind {}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))?;
        if gid.is_some() {
            nix::unistd::chown(&tmp, None, gid).context("--socket-group: chown")?;
        }
        std::fs::rename(&tmp, path)
            .with_context(|| format!("--socket: cannot move the socket to {}", path.display()))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// Serves the control socket (mode 0660, owned by root and `gid` or root's group) until
/// SIGTERM or SIGINT, then shuts the node down.
pub async fn serve(args: &Args, gid: Option<nix::unistd::Gid>, node: Arc<Node>) -> Result<()> {
    // How long a client may take to send one request line (also: to start one, on an idle
    // connection) or to take its answer, before the connection is closed.
    let timeout = Duration::from_secs(args.client_timeout);
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--socket: cannot create {}", dir.display()))?;
    }
    let listener = bind_socket(&args.socket, gid)?;
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    let slots = Arc::new(Semaphore::new(args.max_clients));
    info!(socket = %args.socket.display(), max_clients = args.max_clients, "control socket ready");
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Out of file descriptors since (the episode's start, for one log line each).
    let mut starved: Option<Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(since) = starved.take() {
                        info!("control socket: accepting again after {:?} out of file descriptors",
                            since.elapsed());
                    }
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let node = node.clone();
                            tokio::spawn(async move {
                                connection(stream, node, timeout).await;
                                drop(slot);
                            });
                        }
                        Err(_) => refuse(stream, args.max_clients),
                    }
                }
                Err(e) if is_fd_exhaustion(&e) => {
                    if starved.is_none() {
                        starved = Some(Instant::now());
                        warn!("accept on control socket: {e}; retrying every {ACCEPT_BACKOFF:?} \
                            (raise the open-file limit, or lower --max-clients)");
                    }
                    // The pending connection stays queued and the socket readable: without a
                    // pause this loop would spin.
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                        _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                    }
                }
                Err(e) => warn!("accept on control socket: {e}"),
            },
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
        }
    }
    node.shutdown().await;
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}

/// Whether an accept failed for want of file descriptors or the memory for one.
fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Answers a connection over `--max-clients` with one error line and closes it. The write
/// does not wait: a fresh connection's send buffer takes the short line (if it does not, the
/// client only sees the close).
fn refuse(stream: UnixStream, max: usize) {
    debug!("control connection refused: {max} connections are open (--max-clients)");
    let answer = encode_response(&Response::Error(ErrorBody {
        kind: ErrorKind::Unavailable,
        field: None,
        message: format!(
            "too many control connections: {max} are open (vswitchd --max-clients); try again"
        ),
    }));
    let _ = stream.try_write(answer.as_bytes());
}

/// The `op` tag of a request line (the label of its latency).
#[derive(serde::Deserialize)]
struct OpTag {
    op: String,
}

async fn connection(stream: UnixStream, node: Arc<Node>, timeout: Duration) {
    let (rd, mut wr) = stream.into_split();
    // `take` bounds how much one line may buffer; it is re-armed for each request.
    let mut reader = BufReader::new(rd.take(MAX_MESSAGE_LEN as u64 + 1));
    let mut line = Vec::new();
    loop {
        line.clear();
        reader.get_mut().set_limit(MAX_MESSAGE_LEN as u64 + 1);
        let n = match tokio::time::timeout(timeout, reader.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                debug!("control connection: {e}");
                return;
            }
            Err(_) => {
                debug!("control connection: idle or half-sent request timed out");
                return;
            }
        };
        if n == 0 {
            return;
        }
        let too_long =
            line.len() > MAX_MESSAGE_LEN || !line.ends_with(b"\n") && n > MAX_MESSAGE_LEN;
        let resp = if too_long {
            ProtoError::TooLong.to_response()
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            match decode_request(&line) {
                Ok(Request::Capture(spec)) => {
                    // A stream: the connection ends with it.
                    reader.get_mut().set_limit(u64::MAX);
                    crate::capture::serve(&node, spec, &mut reader, &mut wr, timeout).await;
                    return;
                }
                Ok(Request::Observe(spec)) => {
                    let follow = spec.follow;
                    reader.get_mut().set_limit(u64::MAX);
                    let dp = node.datapath();
                    let open =
                        crate::flows::serve(&node, dp, spec, &mut reader, &mut wr, timeout).await;
                    if follow || !open {
                        return; // a followed stream ends with its connection
                    }
                    continue;
                }
                Ok(req) => {
                    let started = Instant::now();
                    let resp = node.handle(req).await;
                    // The request decoded, so its `op` is one of the protocol's.
                    if let Ok(OpTag { op }) = serde_json::from_slice(&line) {
                        node.control_latency().observe(&op, started.elapsed());
                    }
                    resp
                }
                Err(e) => e.to_response(),
            }
        };
        let answer = encode_response(&resp);
        match tokio::time::timeout(timeout, wr.write_all(answer.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!("control connection: {e}");
                return;
            }
            Err(_) => {
                debug!("control connection: the client does not read its answers");
                return;
            }
        }
        if too_long {
            // The rest of an oversized line cannot be re-synchronised: close.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// The socket appears at its path complete, with mode 0660: the directory sees it moved
    /// in, never created there and then changed (as `bind` then `chmod` would show: an
    /// IN_CREATE and an IN_ATTRIB of that name, with the wider mode in between). A stale
    /// socket file is replaced and no private directory is left.
    #[test]
    fn the_socket_is_never_there_with_a_wider_mode() {
        let dir = std::env::temp_dir().join(format!("vswitchd-bind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vswitchd.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // stale
        std::fs::create_dir(dir.join(".vswitchd.sock.bind")).unwrap(); // a crash's leftover
        let ino = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
        ino.add_watch(&dir, AddWatchFlags::IN_ALL_EVENTS).unwrap();
        let listener = bind_socket(&path, None).unwrap();
        let events = ino.read_events().unwrap();
        let on_socket: Vec<AddWatchFlags> = events
            .iter()
            .filter(|e| e.name.as_deref() == Some(std::ffi::OsStr::new("vswitchd.sock")))
            .map(|e| e.mask)
            .collect();
        assert_eq!(on_socket, [AddWatchFlags::IN_MOVED_TO], "{events:?}");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o660, "{:o}", meta.mode());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["vswitchd.sock"], "{left:?}");
        // It is the listener's socket: a client connects through the path.
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        listener.accept().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
