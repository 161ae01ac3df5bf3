//! Calls to vswitchd, each bounded by one deadline, with failures sorted by what the runtime
//! should do about them (retry later, or not).

use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use vswitch_proto::client::{self, ClientError};
use vswitch_proto::{Request, Response};

/// Why a call got no answer (the daemon's own refusals are [`Response::Error`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Nothing listens on the socket (absent, or connection refused): vswitchd is down or
    /// restarting.
    Unreachable(String),
    /// No answer within the timeout.
    Timeout(String),
    /// The connection broke before the answer (vswitchd stopping mid-request).
    Interrupted(String),
    /// Anything else (permission denied, an undecodable answer): waiting will not help.
    Failed(String),
}

impl CallError {
    /// The sentence describing the failure.
    pub fn message(&self) -> &str {
        match self {
            CallError::Unreachable(m)
            | CallError::Timeout(m)
            | CallError::Interrupted(m)
            | CallError::Failed(m) => m,
        }
    }

    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, CallError::Failed(_))
    }
}

/// Something that answers control requests: vswitchd's socket, or a fake in unit tests.
pub trait Daemon {
    /// Sends one request and waits for its answer.
    fn call(&self, req: &Request) -> Result<Response, CallError>;
}

impl<F: Fn(&Request) -> Result<Response, CallError>> Daemon for F {
    fn call(&self, req: &Request) -> Result<Response, CallError> {
        self(req)
    }
}

/// vswitchd's control socket. Each call, from connect to the last byte of the answer, takes at
/// most `timeout`: [`client::call`] bounds each read and write, and the whole call runs on a
/// helper thread that is abandoned when the deadline passes (a connect to a daemon that has
/// stopped accepting would otherwise block without limit).
pub struct Socket {
    path: PathBuf,
    timeout: Duration,
}

impl Socket {
    /// The socket at `path`, with `timeout` per call.
    pub fn new(path: &Path, timeout: Duration) -> Socket {
        Socket {
            path: path.to_path_buf(),
            timeout,
        }
    }
}

impl Daemon for Socket {
    fn call(&self, req: &Request) -> Result<Response, CallError> {
        let (tx, rx) = mpsc::channel();
        let (path, req, timeout) = (self.path.clone(), req.clone(), self.timeout);
        thread::Builder::new()
            .name("vswitchd-call".into())
            .spawn(move || {
                let _ = tx.send(client::call(&path, &req, timeout));
            })
            .map_err(|e| CallError::Failed(format!("cannot start a thread: {e}")))?;
        let shown = self.path.display();
        match rx.recv_timeout(self.timeout) {
            Ok(answer) => answer.map_err(|e| classify(e, &self.path, self.timeout)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(CallError::Timeout(format!(
                "vswitchd at {shown} did not answer within {:.1} s",
                self.timeout.as_secs_f64()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CallError::Failed(format!(
                "the call to vswitchd at {shown} failed unexpectedly"
            ))),
        }
    }
}

fn classify(e: ClientError, path: &Path, timeout: Duration) -> CallError {
    let msg = e.to_string();
    match &e {
        ClientError::Connect { source, .. } => match source.kind() {
            IoKind::NotFound | IoKind::ConnectionRefused => CallError::Unreachable(msg),
            _ => CallError::Failed(msg),
        },
        ClientError::Io(io) => match io.kind() {
            IoKind::WouldBlock | IoKind::TimedOut => CallError::Timeout(format!(
                "vswitchd at {} did not answer within {:.1} s",
                path.display(),
                timeout.as_secs_f64()
            )),
            IoKind::ConnectionReset
            | IoKind::ConnectionAborted
            | IoKind::BrokenPipe
            | IoKind::UnexpectedEof => CallError::Interrupted(msg),
            _ => CallError::Failed(msg),
        },
        ClientError::Closed => CallError::Interrupted(msg),
        ClientError::Decode(_) | ClientError::Record(_) => CallError::Failed(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    /// A temp dir for one test's socket, removed on drop (panics included).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "vswitch-cni-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn absent_socket_is_unreachable() {
        let dir = TempDir::new();
        let s = Socket::new(&dir.0.join("nope.sock"), Duration::from_secs(2));
        let e = s.call(&Request::NodeShow).unwrap_err();
        assert!(matches!(e, CallError::Unreachable(_)), "{e:?}");
        assert!(e.is_transient());
        assert!(e.message().contains("is vswitchd running?"), "{e:?}");
    }

    #[test]
    fn socket_without_listener_is_unreachable() {
        let dir = TempDir::new();
        let path = dir.0.join("stale.sock");
        drop(UnixListener::bind(&path).unwrap()); // the file stays, nobody listens
        let e = Socket::new(&path, Duration::from_secs(2))
            .call(&Request::NodeShow)
            .unwrap_err();
        assert!(matches!(e, CallError::Unreachable(_)), "{e:?}");
    }

    #[test]
    fn a_silent_daemon_times_out_in_time() {
        let dir = TempDir::new();
        let path = dir.0.join("silent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // Accepts, reads, never answers; the connection is held until the test ends.
        let server = thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            let _ = BufReader::new(&conn).read_line(&mut line);
            thread::sleep(Duration::from_millis(1500));
            line
        });
        let start = Instant::now();
        let e = Socket::new(&path, Duration::from_millis(300))
            .call(&Request::NodeShow)
            .unwrap_err();
        assert!(matches!(e, CallError::Timeout(_)), "{e:?}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert!(server.join().unwrap().contains("node_show"));
    }

    #[test]
    fn hanging_up_is_interrupted_and_garbage_failed() {
        let dir = TempDir::new();
        let path = dir.0.join("rude.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || {
            // First connection: read the request, close without answering.
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            let _ = BufReader::new(&conn).read_line(&mut line);
            drop(conn);
            // Second: answer garbage.
            let (mut conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            let _ = BufReader::new(&conn).read_line(&mut line);
            let _ = conn.write_all(b"{\"what\": 1}\n");
        });
        let s = Socket::new(&path, Duration::from_secs(2));
        let e = s.call(&Request::NodeShow).unwrap_err();
        assert!(matches!(e, CallError::Interrupted(_)), "{e:?}");
        let e = s.call(&Request::NodeShow).unwrap_err();
        assert!(matches!(e, CallError::Failed(_)), "{e:?}");
        assert!(!e.is_transient());
        server.join().unwrap();
    }

    #[test]
    fn an_answer_comes_back() {
        let dir = TempDir::new();
        let path = dir.0.join("ok.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            let req = vswitch_proto::decode_request(line.as_bytes()).unwrap();
            conn.write_all(vswitch_proto::encode_response(&Response::Done).as_bytes())
                .unwrap();
            req
        });
        let r = Socket::new(&path, Duration::from_secs(2)).call(&Request::PortList);
        assert_eq!(r, Ok(Response::Done));
        assert_eq!(server.join().unwrap(), Request::PortList);
    }
}
