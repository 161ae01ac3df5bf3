//! `vswitchctl capture` end to end (issue 14): two meshed nodes, nginx on node 1, a busybox
//! client on node 2. Three captures run at once while the client fetches the page across
//! the nodes: the tunnel of node 2 (`--tunnel -w FILE`), the client's port (`-w FILE`), and
//! nginx's port on node 1 as summary lines with a filter. tshark reads the files back: the
//! tunnel file dissects as VXLAN around the TCP handshake and the HTTP GET; the port file
//! holds the same handshake and GET, without VXLAN. A capture whose client is killed ends in
//! the daemon at once. Then the refusals: a bad filter word (exit 2, naming `filter` and the
//! word) and an unknown port (exit 1, naming `port`).
//!
//! The capture tap lives in the engine core both engines share, so this runs once, in the
//! workspace run (see E2E_MATRIX_SKIP in the Makefile).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};
use vswitch_e2e::{checks, Bg, Node, NodeOpts, OutputExt, Testbed};

/// How long each capture runs (it must cover the fetch; the test waits for it to end).
const CAPTURE_SECS: &str = "4";

/// Starts `vswitchctl capture ARGS` (for [`CAPTURE_SECS`] unless ARGS says `--duration`) in
/// the background inside `node`'s namespace and waits
/// until the daemon has accepted it (the CLI says `capturing on ...` on stderr).
fn start_capture(tb: &Testbed, node: &Node, label: &str, args: &[&str]) -> Bg {
    let bin = tb.bin("vswitchctl");
    let socket = node.socket.to_str().expect("a UTF-8 socket path");
    let mut all = vec!["--socket", socket, "capture"];
    if !args.contains(&"--duration") {
        all.extend(["--duration", CAPTURE_SECS]);
    }
    all.extend_from_slice(args);
    let bg = tb.spawn_in(&node.netns, label, bin.to_str().expect("UTF-8"), &all);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bg.output().contains("capturing on") {
        assert!(
            bg.is_running() && Instant::now() < deadline,
            "capture {label} did not start: {}",
            bg.output()
        );
        thread::sleep(Duration::from_millis(20));
    }
    bg
}

/// Waits for a capture to end by itself (its duration or count) and returns its output.
fn wait_capture(bg: &Bg) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while bg.is_running() {
        assert!(
            Instant::now() < deadline,
            "capture did not end: {}",
            bg.output()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let out = bg.output();
    assert!(out.contains("packets captured"), "no summary: {out}");
    assert!(out.contains(", 0 lost"), "frames lost: {out}");
    out
}

/// `tshark -r FILE -T fields` of the protocol stack, TCP flags and HTTP method: one line per
/// frame.
fn tshark(file: &Path) -> Vec<String> {
    let file = file.to_str().expect("UTF-8");
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r", file, "-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "frame.protocols",
            "-e",
            "tcp.flags",
            "-e",
            "http.request.method",
        ])
        .output()
        .expect("running tshark (install it: make deps)");
    assert!(out.status.success(), "tshark -r {file}: {}", out.describe());
    out.stdout_str().lines().map(str::to_string).collect()
}

/// Asserts the frames hold a SYN, a SYN-ACK and an HTTP GET, all (`vxlan`) or none inside
/// VXLAN.
fn assert_handshake_and_get(frames: &[String], vxlan: bool, what: &str) {
    let all = frames.join("\n");
    let has = |flags: &str| {
        frames.iter().any(|f| {
            let cols: Vec<&str> = f.split('|').collect();
            cols.len() >= 2 && cols[0].contains(":tcp") && cols[1] == flags
        })
    };
    assert!(has("0x0002"), "{what}: no SYN in\n{all}");
    assert!(has("0x0012"), "{what}: no SYN-ACK in\n{all}");
    assert!(
        frames
            .iter()
            .any(|f| f.contains(":http") && f.ends_with("|GET")),
        "{what}: no HTTP GET in\n{all}"
    );
    for f in frames {
        assert_eq!(f.contains(":vxlan:"), vxlan, "{what}: {f}\n{all}");
    }
}

#[test]
fn capture_the_tunnel_and_a_port_as_pcap() {
    let Some(tb) = Testbed::new("capture_the_tunnel_and_a_port_as_pcap") else {
        return;
    };
    let (n1, n2) = tb.two_nodes(NodeOpts::default());
    let nginx = tb.add_pod(&n1, "nginx", &[("app", "nginx")]);
    let client = tb.add_pod(&n2, "busybox", &[]);
    let _server = tb.start_nginx(&nginx);
    let tunnel_file = tb.dir().join("tunnel.pcap");
    let port_file = tb.dir().join("port.pcap");

    let tunnel = start_capture(
        &tb,
        &n2,
        "capture-tunnel",
        &[
            "--tunnel",
            "-c",
            "1000",
            "-w",
            tunnel_file.to_str().unwrap(),
        ],
    );
    let port = start_capture(
        &tb,
        &n2,
        "capture-port",
        &["busybox", "-w", port_file.to_str().unwrap(), "tcp"],
    );
    let ip = nginx.ip.to_string();
    let lines = start_capture(
        &tb,
        &n1,
        "capture-lines",
        &[
            "nginx", "-c", "2", "host", &ip, "and", "tcp", "and", "port", "80",
        ],
    );
    checks::assert_wget_nginx(&client, nginx.ip);

    // Summary lines, filtered and bounded by -c: the SYN to nginx's pod (out of the
    // switch) and its SYN-ACK (into the switch).
    let text = wait_capture(&lines);
    let syn = format!("out {}.", client.ip);
    assert!(text.contains(&syn) && text.contains(": TCP [S],"), "{text}");
    assert!(text.contains(&format!("in  {ip}.80 > ")), "{text}");
    assert!(text.contains(": TCP [S.],"), "{text}");
    assert!(text.contains("ended: count"), "{text}");

    wait_capture(&tunnel);
    let frames = tshark(&tunnel_file);
    assert_handshake_and_get(&frames, true, "tunnel");
    wait_capture(&port);
    let frames = tshark(&port_file);
    assert_handshake_and_get(&frames, false, "port");

    // A client that goes away ends its capture in the daemon at once.
    let gone = start_capture(&tb, &n2, "capture-gone", &["--tunnel", "--duration", "60"]);
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !n2.log().contains("capture ended: the client went away") {
        assert!(
            Instant::now() < deadline,
            "the daemon kept the capture:\n{}",
            n2.log()
        );
        thread::sleep(Duration::from_millis(50));
    }

    // Refusals name the field: a bad filter word (before connecting, exit 2), a port this
    // node does not have (the daemon's answer, exit 1).
    let bad = n2.ctl(&["capture", "busybox", "tcp", "and", "bogus"]);
    assert_eq!(bad.status.code(), Some(2), "{}", bad.describe());
    let err = bad.stderr_str();
    assert!(
        err.starts_with("error: filter: ") && err.contains("`bogus`"),
        "{err}"
    );
    let bad = n2.ctl(&["capture", "nosuch", "--duration", "1"]);
    assert_eq!(bad.status.code(), Some(1), "{}", bad.describe());
    let err = bad.stderr_str();
    assert!(
        err.starts_with("error: port: ") && err.contains("nosuch"),
        "{err}"
    );
    let bad = n2.ctl(&["capture", "--tunnel", "busybox"]);
    assert_eq!(bad.status.code(), Some(2), "{}", bad.describe());
    assert!(
        bad.stderr_str().starts_with("error: filter: "),
        "{}",
        bad.describe()
    );
}
