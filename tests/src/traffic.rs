//! Traffic the tests generate and read back: a TCP transfer checked end to end (a Python
//! sink and source printing `<bytes> <sha256>`), and the per-interval throughput of an
//! `iperf3 -J` run.

use crate::cmd::OutputExt;
use crate::{Pod, Testbed};
use serde_json::Value;
use std::fs;
use std::time::Duration;

/// A TCP sink that prints `<bytes> <sha256>` of what it received, and a source that sends
/// `<n>` bytes of seeded pseudo-random data, spread over at least `<secs>` seconds when
/// given, and prints the same line for what it sent:
/// `transfer.py sink PORT`, `transfer.py source PORT HOST BYTES [SECS]`.
pub const TRANSFER_PY: &str = r#"
import hashlib, random, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
h, n = hashlib.sha256(), 0
if mode == "sink":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(1); s.settimeout(60)
    c, _ = s.accept(); c.settimeout(60)
    while True:
        b = c.recv(1 << 16)
        if not b: break
        h.update(b); n += len(b)
else:
    host, total = sys.argv[3], int(sys.argv[4])
    secs = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    rnd = random.Random(7)
    c = socket.create_connection((host, port), timeout=30)
    t0 = time.monotonic()
    while n < total:
        b = rnd.randbytes(min(1 << 16, total - n))
        c.sendall(b); h.update(b); n += len(b)
        ahead = t0 + secs * n / total - time.monotonic()
        if ahead > 0: time.sleep(ahead)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()
print(n, h.hexdigest(), flush=True)
"#;

/// The path of [`TRANSFER_PY`] in the testbed's temp dir, written there on first use.
pub fn transfer_script(tb: &Testbed) -> String {
    let script = tb.dir().join("transfer.py");
    if !script.exists() {
        fs::write(&script, TRANSFER_PY).expect("writing transfer.py");
    }
    script.display().to_string()
}

/// The line a transfer sink printed (`<bytes> <sha256>`), waiting up to 10 s for it; empty
/// when it printed nothing.
pub fn sink_line(sink: &crate::Bg) -> String {
    let mut got = String::new();
    for _ in 0..100 {
        got = sink.output().trim().to_string();
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    got
}

/// Sends `bytes` from `src` to `dst` over TCP (port 9000) and asserts both ends saw the same
/// data.
pub fn transfer(tb: &Testbed, src: &Pod, dst: &Pod, bytes: usize) {
    let script = transfer_script(tb);
    let sink = dst.spawn("sink", "python3", &[&script, "sink", "9000"]);
    dst.wait_listening(9000);
    let dst_ip = dst.ip.to_string();
    let out = src.exec_timeout(
        Duration::from_secs(120),
        "python3",
        &[&script, "source", "9000", &dst_ip, &bytes.to_string()],
    );
    assert!(out.status.success(), "source failed: {}", out.describe());
    let sent = out.stdout_str().trim().to_string();
    let got = sink_line(&sink);
    assert_eq!(got, sent, "received data differs from the data sent");
    assert!(sent.starts_with(&format!("{bytes} ")), "{sent}");
}

/// iperf3 `-J` intervals of the reporting side: (start, end, bytes), seconds relative to the
/// run's start.
pub fn iperf_intervals(json: &Value) -> Vec<(f64, f64, u64)> {
    json["intervals"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|i| {
                    let s = &i["sum"];
                    Some((
                        s["start"].as_f64()?,
                        s["end"].as_f64()?,
                        s["bytes"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::iperf_intervals;
    use serde_json::json;

    #[test]
    fn iperf_intervals_skip_incomplete_ones() {
        let j = json!({"intervals": [
            {"sum": {"start": 0.0, "end": 0.1, "bytes": 10}},
            {"sum": {"start": 0.1, "end": 0.2}},
            {"sum": {"start": 0.2, "end": 0.3, "bytes": 0}},
        ]});
        assert_eq!(iperf_intervals(&j), vec![(0.0, 0.1, 10), (0.2, 0.3, 0)]);
        assert!(iperf_intervals(&json!({})).is_empty());
    }
}
