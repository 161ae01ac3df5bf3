//! The control socket: newline-delimited JSON requests (vswitch-proto), one response each.
//! A bad request gets an error answer and the connection stays usable; nothing a client
//! sends can stop the daemon. Each connection is its own task, so a slow or stuck client
//! delays no one else; a line over `MAX_MESSAGE_LEN` is answered with an error naming the
//! limit and the connection is closed; a connection that does not complete a request line
//! (idle, or half-sent) or does not read its answer within `--client-timeout` (30 s by
//! default) is closed. `capture` is the one streaming request: its connection carries the
//! capture's records and then closes (`capture.rs`).

use crate::node::Node;
use crate::Args;
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};
use vswitch_proto::{decode_request, encode_response, ProtoError, Request, MAX_MESSAGE_LEN};

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
    let listener = UnixListener::bind(&args.socket)
        .with_context(|| format!("--socket: cannot bind {}", args.socket.display()))?;
    std::fs::set_permissions(&args.socket, std::fs::Permissions::from_mode(0o660))?;
    if gid.is_some() {
        nix::unistd::chown(&args.socket, None, gid).context("--socket-group: chown")?;
    }
    info!(socket = %args.socket.display(), "control socket ready");
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, node.clone(), timeout));
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
