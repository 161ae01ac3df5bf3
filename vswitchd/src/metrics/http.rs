//! The metrics endpoint: a tiny HTTP/1.1 responder over a std `TcpListener` on its own
//! thread. hyper and axum are in the dependency tree (through etcd-client's gRPC stack,
//! tonic), but serving with them means an async server on the control plane's
//! single-threaded runtime, sharing its one thread with the control requests and the etcd
//! client; a scrape is one short request, so a blocking loop of a few dozen lines on its own
//! thread is simpler and keeps the HTTP work off that runtime (a scrape still takes the
//! node's lock for a moment, to read the names and counters).
//!
//! Contract: `GET /metrics` (a query string is ignored) answers 200 with the Prometheus text
//! format; `HEAD /metrics` the same headers; any other path 404, any other method 405, a
//! request that does not parse 400. One connection at a time, one request per connection
//! (`Connection: close`); a request head over 8 KiB is refused, and a client that does not
//! send its head or read the answer within 5 s is dropped, so one bad client delays the next
//! scrape by at most that.

use super::Metrics;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;
use tracing::debug;

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `metrics` on `listener` on a new thread, for the daemon's lifetime.
pub fn spawn(listener: TcpListener, metrics: Metrics) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = answer(s, &metrics) {
                            debug!("metrics connection: {e}");
                        }
                    }
                    Err(e) => debug!("metrics accept: {e}"),
                }
            }
        })
        .map(drop)
}

/// Reads one request from `s` and answers it.
fn answer(mut s: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let head = read_head(&mut s)?;
    let (status, body) = match route(head.as_deref()) {
        Route::Metrics { head_only } => match metrics.render() {
            Ok(text) => (
                "200 OK",
                if head_only {
                    Body::Head(text.len())
                } else {
                    Body::Text(text)
                },
            ),
            Err(_) => (
                "500 Internal Server Error",
                Body::Text("encoding failed\n".into()),
            ),
        },
        Route::Status(status) => (status, Body::Text(format!("{status}\n"))),
    };
    let (len, text) = match &body {
        Body::Head(n) => (*n, ""),
        Body::Text(t) => (t.len(), t.as_str()),
    };
    let ctype = if status.starts_with("200") {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )?;
    s.write_all(text.as_bytes())?;
    s.flush()
}

enum Body {
    /// A HEAD answer: the length the body would have.
    Head(usize),
    Text(String),
}

/// What a request asks for.
#[derive(Debug, PartialEq)]
enum Route {
    Metrics { head_only: bool },
    Status(&'static str),
}

/// Routes a request head (`None`: too long or not UTF-8).
fn route(head: Option<&str>) -> Route {
    let Some(line) = head.and_then(|h| h.lines().next()) else {
        return Route::Status("400 Bad Request");
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::Status("400 Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Status("400 Bad Request");
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics { head_only: false },
        ("HEAD", "/metrics") => Route::Metrics { head_only: true },
        (_, "/metrics") => Route::Status("405 Method Not Allowed"),
        _ => Route::Status("404 Not Found"),
    }
}

/// Reads up to the end of the request head (an empty line); `None` when it is longer than
/// [`MAX_HEAD`] or not UTF-8.
fn read_head(s: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
    Ok(String::from_utf8(buf).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_only_metrics() {
        let r = |s: &str| route(Some(s));
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            r("GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            r("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(
            r("POST /metrics HTTP/1.1\r\n\r\n"),
            Route::Status("405 Method Not Allowed")
        );
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::Status("404 Not Found"));
        assert_eq!(r("GET /metrics\r\n\r\n"), Route::Status("400 Bad Request"));
        assert_eq!(
            r("GET /metrics SPDY/3\r\n\r\n"),
            Route::Status("400 Bad Request")
        );
        assert_eq!(route(None), Route::Status("400 Bad Request"));
        assert_eq!(r(""), Route::Status("400 Bad Request"));
    }
}
