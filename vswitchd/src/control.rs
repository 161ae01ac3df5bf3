//! The control socket: newline-delimited JSON requests (vswitch-proto), one response each.
//! A bad request gets an error answer and the connection stays usable; nothing a client
//! sends can stop the daemon.

use crate::node::Node;
use crate::Args;
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};
use vswitch_proto::{decode_request, encode_response, ProtoError, MAX_MESSAGE_LEN};

/// How long a client may take to send one request line before it is cut off.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the control socket until SIGTERM or SIGINT, then shuts the node down.
pub async fn serve(args: &Args, node: Arc<Node>) -> Result<()> {
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--socket: cannot create {}", dir.display()))?;
    }
    let listener = UnixListener::bind(&args.socket)
        .with_context(|| format!("--socket: cannot bind {}", args.socket.display()))?;
    std::fs::set_permissions(&args.socket, std::fs::Permissions::from_mode(0o660))?;
    if let Some(group) = &args.socket_group {
        let gid = nix::unistd::Group::from_name(group)?
            .with_context(|| format!("--socket-group: no group named {group}"))?
            .gid;
        nix::unistd::chown(&args.socket, None, Some(gid))?;
    }
    info!(socket = %args.socket.display(), "control socket ready");
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, node.clone()));
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

async fn connection(stream: UnixStream, node: Arc<Node>) {
    let (rd, mut wr) = stream.into_split();
    // `take` bounds how much one line may buffer; it is re-armed for each request.
    let mut reader = BufReader::new(rd.take(MAX_MESSAGE_LEN as u64 + 1));
    let mut line = Vec::new();
    loop {
        line.clear();
        reader.get_mut().set_limit(MAX_MESSAGE_LEN as u64 + 1);
        let n = match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line))
            .await
        {
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
                Ok(req) => node.handle(req).await,
                Err(e) => e.to_response(),
            }
        };
        if wr
            .write_all(encode_response(&resp).as_bytes())
            .await
            .is_err()
        {
            return;
        }
        if too_long {
            // The rest of an oversized line cannot be re-synchronised: close.
            return;
        }
    }
}
