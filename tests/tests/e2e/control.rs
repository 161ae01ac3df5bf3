//! The control socket's limits, end to end on one node (issue 7): the socket's mode, owner and
//! `--socket-group`; 100 concurrent clients; a half-sent request that neither blocks others
//! nor stays open past the daemon's read timeout (`--client-timeout`, 5 s here, in
//! vswitchd/src/control.rs); a request over the size limit (1 MiB, `MAX_MESSAGE_LEN`); unknown
//! fields (ignored, as proto's contract says), unknown and too-new versions, unknown ops,
//! missing fields and binary garbage, each with a clear answer. Afterwards the daemon still
//! serves and its state is what it was. `one_node.rs` (`bad_input_is_rejected_and_changes_
//! nothing`) covers bad field values through `vswitchctl` and a text garbage line.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use vswitch_e2e::{run_with_timeout, Node, NodeOpts, OutputExt, Testbed};
use vswitch_proto::MAX_MESSAGE_LEN;

/// Concurrent clients, each with its own connections.
const CLIENTS: usize = 100;
/// The daemon closes a connection that completes no request line within this (`--client-timeout`).
const DAEMON_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// A raw connection to the control socket, speaking JSON lines.
struct Conn {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    fn open(node: &Node) -> Conn {
        let s = UnixStream::connect(&node.socket).expect("connecting to the control socket");
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("writing a request");
    }

    /// Reads one answer line; `None` when the daemon closed the connection (a close with
    /// bytes of ours still unread reads as a reset on a Unix socket, after what it sent).
    fn answer(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = match self.reader.read_line(&mut line) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset && line.is_empty() => 0,
            Err(e) => panic!("reading an answer (none in {ANSWER_TIMEOUT:?}?): {e}"),
        };
        if n == 0 {
            return None;
        }
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("an answer that is not JSON ({e}): {line:?}")),
        )
    }

    /// Sends one request line and returns its answer.
    fn ask(&mut self, req: &Value) -> Value {
        self.send(format!("{req}\n").as_bytes());
        self.answer()
            .expect("the daemon closed instead of answering")
    }

    /// Sends raw bytes and returns the answer.
    fn ask_raw(&mut self, bytes: &[u8]) -> Value {
        self.send(bytes);
        self.answer()
            .expect("the daemon closed instead of answering")
    }
}

/// Asserts `v` is an `invalid` error naming `field` whose message contains each of `words`.
fn assert_invalid(v: &Value, field: Option<&str>, words: &[&str], what: &str) {
    assert_eq!(v["result"], "error", "{what}: {v}");
    assert_eq!(v["data"]["kind"], "invalid", "{what}: {v}");
    assert_eq!(v["data"]["field"].as_str(), field, "{what}: {v}");
    let msg = v["data"]["message"].as_str().unwrap_or_default();
    for w in words {
        assert!(msg.contains(w), "{what}: the message should say `{w}`: {v}");
    }
}

/// A group other than root's, for `--socket-group` (Debian always has `daemon`).
fn some_group() -> (String, u32) {
    let groups = std::fs::read_to_string("/etc/group").expect("reading /etc/group");
    let parse = |l: &str| {
        let f: Vec<&str> = l.split(':').collect();
        Some((f.first()?.to_string(), f.get(2)?.parse::<u32>().ok()?))
    };
    let all: Vec<(String, u32)> = groups.lines().filter_map(parse).collect();
    all.iter()
        .find(|(n, _)| n == "daemon")
        .or_else(|| all.iter().find(|(_, gid)| *gid != 0))
        .cloned()
        .expect("a group other than root in /etc/group")
}

/// What a client of the 100 does: on one connection node_show, peer_add (its own peer),
/// peer_list, port_list, peer_del; on a second one stats. Returns what went wrong.
fn client(node: &Node, i: usize, ports_before: &Value) -> Result<(), String> {
    let mut c = Conn::open(node);
    let peer = format!("c{i}");
    let check = |ok: bool, what: &str, v: &Value| {
        if ok {
            Ok(())
        } else {
            Err(format!("client {i}: {what}: {v}"))
        }
    };
    let v = c.ask(&json!({"version": 1, "op": "node_show"}));
    check(v["data"]["node"] == "node1", "node_show", &v)?;
    let v = c.ask(&json!({"version": 1, "op": "peer_add", "node": peer,
        "underlay": format!("198.19.0.{}", 101 + i),
        "pod_cidr": format!("198.18.{}.0/24", 101 + i)}));
    check(
        v["result"] == "peer" && v["data"]["node"] == peer.as_str(),
        "peer_add",
        &v,
    )?;
    let v = c.ask(&json!({"version": 1, "op": "peer_list"}));
    let listed = v["data"]
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p["node"] == peer.as_str()));
    check(listed, "peer_list without its own peer", &v)?;
    let v = c.ask(&json!({"version": 1, "op": "port_list"}));
    check(&v["data"] == ports_before, "port_list changed", &v)?;
    let v = c.ask(&json!({"version": 1, "op": "peer_del", "node": peer}));
    check(v["result"] == "done", "peer_del", &v)?;
    let mut c2 = Conn::open(node);
    let v = c2.ask(&json!({"version": 1, "op": "stats"}));
    check(v["result"] == "stats", "stats", &v)?;
    Ok(())
}

#[test]
fn control_socket_limits() {
    let Some(tb) = Testbed::new("control_socket_limits") else {
        return;
    };
    let (group, gid) = some_group();
    let node = tb.add_node(
        1,
        NodeOpts::default()
            .arg("--socket-group")
            .arg(&group)
            .arg("--client-timeout")
            .arg(&DAEMON_READ_TIMEOUT.as_secs().to_string()),
    );
    let pod = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let mut first = Conn::open(&node);
    let ports_before = first.ask(&json!({"version": 1, "op": "port_list"}))["data"].clone();
    assert_eq!(
        ports_before.as_array().map(Vec::len),
        Some(1),
        "{ports_before}"
    );

    // The socket: a socket file, mode 0660, owned by root and the configured group.
    let meta = std::fs::metadata(&node.socket).expect("the control socket exists");
    assert!(meta.file_type().is_socket(), "{:?}", meta.file_type());
    assert_eq!(
        meta.mode() & 0o7777,
        0o660,
        "mode {:o}",
        meta.mode() & 0o7777
    );
    assert_eq!(meta.uid(), 0, "owner");
    assert_eq!(meta.gid(), gid, "group (--socket-group {group})");

    // A half-sent request (no newline), held open from here to the end of the test.
    let mut half = Conn::open(&node);
    half.send(br#"{"version":1,"op":"node_sh"#);
    let half_opened = Instant::now();

    // 100 concurrent clients, all answered correctly while the half-sent one waits.
    let start = Arc::new(Barrier::new(CLIENTS));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (node, start, ports) = (node.clone(), start.clone(), ports_before.clone());
            thread::spawn(move || {
                start.wait();
                client(&node, i, &ports)
            })
        })
        .collect();
    let t = Instant::now();
    let failures: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().expect("a client thread panicked").err())
        .collect();
    println!("{CLIENTS} concurrent clients served in {:?}", t.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let mut c = Conn::open(&node);
    // Versions: too new, far too new (beyond u32), missing, not a number.
    let v = c.ask(&json!({"version": 2, "op": "node_show"}));
    assert_invalid(&v, Some("version"), &["version 2", "speaks 1"], "version 2");
    let v = c.ask(&json!({"version": 4_294_967_296u64, "op": "node_show"}));
    assert_invalid(&v, Some("version"), &["speaks 1"], "version 2^32");
    for req in [
        json!({"op": "node_show"}),
        json!({"version": "1", "op": "node_show"}),
    ] {
        let v = c.ask(&req);
        assert_invalid(&v, Some("version"), &["speaks 1"], &req.to_string());
    }
    // Ops and fields: unknown op, no op, a missing field.
    let v = c.ask(&json!({"version": 1, "op": "fly_away"}));
    assert_invalid(&v, Some("op"), &["fly_away", "node_show"], "unknown op");
    let v = c.ask(&json!({"version": 1}));
    assert_invalid(&v, Some("op"), &[], "no op");
    let v = c.ask(&json!({"version": 1, "op": "port_add", "name": "x"}));
    assert_invalid(&v, Some("netns"), &["missing"], "port_add without netns");
    // Unknown fields are ignored (forward compatibility): the request is served.
    let v = c.ask(&json!({"version": 1, "op": "port_list", "colour": "blue"}));
    assert_eq!(v["data"], ports_before, "unknown field on port_list: {v}");
    let v = c.ask(&json!({"version": 1, "op": "peer_del", "node": "c1", "force": true}));
    assert_invalid_kind(&v, "not_found", "node", "peer_del of a deleted peer");
    // Binary garbage and JSON that is not an object: errors, the connection stays usable.
    let v = c.ask_raw(b"\x00\xff\xfe{{\x01garbage\x80\n");
    assert_invalid(&v, None, &["malformed"], "binary garbage");
    let v = c.ask_raw(b"[1,2,3]\n");
    assert_invalid(&v, None, &["one JSON object"], "a JSON array");
    // Blank lines get no answer; pipelined requests get their answers in order.
    let v = c.ask_raw(
        b"\n  \r\n{\"version\":1,\"op\":\"node_show\"}\n{\"version\":1,\"op\":\"peer_list\"}\n",
    );
    assert_eq!(v["result"], "node", "first of two pipelined requests: {v}");
    let v = c.answer().expect("the second pipelined answer");
    assert_eq!(
        v["data"],
        json!([]),
        "peer_list after the clients left: {v}"
    );

    // A request of exactly the limit (newline included) is served.
    let mut at_limit = br#"{"version":1,"op":"node_show","pad":""#.to_vec();
    at_limit.resize(MAX_MESSAGE_LEN - 3, b'x');
    at_limit.extend_from_slice(b"\"}\n");
    assert_eq!(at_limit.len(), MAX_MESSAGE_LEN);
    let mut big = Conn::open(&node);
    let v = big.ask_raw(&at_limit);
    assert_eq!(
        v["result"], "node",
        "a request of exactly {MAX_MESSAGE_LEN} bytes: {v}"
    );

    // One byte more: an error naming the limit, then the daemon closes the connection.
    let mut over = at_limit.clone();
    over.insert(over.len() - 3, b'x');
    let writer = big.writer.try_clone().unwrap();
    let sender = thread::spawn(move || {
        // The daemon stops reading at the limit and closes: a failed write is expected.
        let _ = (&writer).write_all(&over);
    });
    let v = big.answer().expect("an answer to the oversized request");
    assert_invalid(
        &v,
        None,
        &[&MAX_MESSAGE_LEN.to_string()],
        "oversized request",
    );
    assert!(
        big.answer().is_none(),
        "the connection stays open after an oversized request"
    );
    sender.join().unwrap();

    // Half a request, then the client's end of the stream: an error, then the close.
    let mut eof = Conn::open(&node);
    eof.send(br#"{"version":1,"op":"port_li"#);
    eof.writer.shutdown(std::net::Shutdown::Write).unwrap();
    let v = eof
        .answer()
        .expect("an answer to half a request at end of stream");
    assert_invalid(&v, None, &["malformed"], "half a request, then EOF");
    assert!(eof.answer().is_none(), "open after the client's EOF");

    // The half-sent request of the start: never answered, closed by the daemon's read
    // timeout (bounded wait: the timeout plus a margin).
    half.writer
        .set_read_timeout(Some(DAEMON_READ_TIMEOUT + Duration::from_secs(15)))
        .unwrap();
    let mut rest = Vec::new();
    match half.reader.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty(),
            "a half-sent request got an answer: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!(
                "the half-sent connection is still open {:?} after it was opened",
                half_opened.elapsed()
            )
        }
        Err(e) => panic!("reading the half-sent connection: {e}"),
    }
    println!(
        "the half-sent connection was closed by the daemon {:?} after it was opened \
         (read timeout {DAEMON_READ_TIMEOUT:?})",
        half_opened.elapsed()
    );

    // The first connection, idle since its one request, was closed by the same timeout.
    assert!(first.answer().is_none(), "an idle connection stayed open");

    // Still serving, nothing changed: the same port list, no peer left, the pod attached.
    let v = Conn::open(&node).ask(&json!({"version": 1, "op": "port_list"}));
    assert_eq!(v["data"], ports_before, "{v}");
    assert_eq!(node.ports(), ports_before.as_array().unwrap().clone());
    assert!(node.peers().is_empty(), "{:?}", node.peers());
    assert_eq!(node.show()["node"], "node1");
    assert!(
        pod.ping(node.gateway).status.success(),
        "the pod lost its gateway"
    );
}

/// Asserts `v` is an error of `kind` naming `field`.
fn assert_invalid_kind(v: &Value, kind: &str, field: &str, what: &str) {
    assert_eq!(v["result"], "error", "{what}: {v}");
    assert_eq!(v["data"]["kind"], kind, "{what}: {v}");
    assert_eq!(v["data"]["field"], field, "{what}: {v}");
}

/// A `--socket-group` that does not exist stops vswitchd at startup with an error naming the
/// flag, before it binds the socket.
#[test]
fn unknown_socket_group_is_refused_at_startup() {
    let Some(tb) = Testbed::new("unknown_socket_group_is_refused_at_startup") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::no_daemon());
    let socket = tb.dir().join("refused.sock");
    let group = format!("{}-no-such-group", tb.prefix());
    let out = run_with_timeout(
        Command::new("ip")
            .args(["netns", "exec", &node.netns])
            .arg(tb.bin("vswitchd"))
            .args(["--node", "node1", "--pod-cidr", "198.18.1.0/24", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(tb.dir().join("refused-state"))
            .args(["--datapath", "epoll", "--socket-group", &group]),
        Duration::from_secs(20),
    )
    .expect("running vswitchd");
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let stderr = out.stderr_str();
    assert!(
        stderr.contains("--socket-group") && stderr.contains(&group),
        "the error should name --socket-group and the group: {stderr}"
    );
    assert!(
        !socket.exists(),
        "a socket was left at {}",
        socket.display()
    );
}
