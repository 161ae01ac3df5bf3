//! DNS forwarding end to end (`vswitchd --dns-upstream`): a pod's query for a name outside
//! the cluster reaches a small upstream resolver running in the node's network namespace
//! (127.0.0.1:5353) and its answer comes back to the pod from the cluster DNS address;
//! cluster names are still answered by the switch; an unanswered query is counted
//! (`dns_upstream_failed`); without the flag such names are REFUSED. Queries leave from
//! many source ports, and a forged answer (the right id, another question) is not
//! delivered (`dns_upstream_unmatched`).

use std::time::{Duration, Instant};
use vswitch_e2e::{Bg, Node, NodeOpts, OutputExt, Pod, Testbed};

/// Where the test's upstream resolver listens, inside the node's netns.
const UPSTREAM: &str = "127.0.0.1:5353";
/// The address the upstream gives `example.test`.
const EXAMPLE_IP: &str = "198.18.200.7";
/// A service VIP (inside the default service CIDR).
const VIP: &str = "198.19.96.20";

/// The address the upstream gives `spoof.test`.
const SPOOF_GENUINE_IP: &str = "198.18.200.8";
/// The address a forged answer gives.
const FORGED_IP: &str = "198.18.200.66";

/// The upstream resolver: `example.test` A -> 198.18.200.7 (other types: no data), every
/// other name NXDOMAIN. Prints `ready` once bound and `query NAME TYPE SOURCE-PORT` per
/// query. For `spoof.test` it first sends a forged answer, the query's id with another
/// question (`example.test` A -> 198.18.200.66), then the genuine one (-> 198.18.200.8).
const RESOLVER: &str = r#"
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 5353))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(4096)
    if len(q) < 12:
        continue
    qid, flags, qdcount = struct.unpack("!HHH", q[:6])
    if flags & 0x8000 or qdcount != 1:
        continue
    i, labels = 12, []
    while i < len(q) and q[i] != 0:
        n = q[i]
        labels.append(q[i + 1:i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    i += 1
    if i + 4 > len(q):
        continue
    qtype = struct.unpack("!H", q[i:i + 2])[0]
    question = q[12:i + 4]
    name = ".".join(labels)
    print("query", name, qtype, peer[1], flush=True)
    rflags = 0x8080 | (flags & 0x0100)
    answer = b""
    if name == "spoof.test" and qtype == 1:
        fq = b"\x07example\x04test\x00" + struct.pack("!HH", 1, 1)
        fa = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton("198.18.200.66")
        s.sendto(struct.pack("!HHHHHH", qid, rflags, 1, 1, 0, 0) + fq + fa, peer)
        time.sleep(0.05)
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton("198.18.200.8")
    elif name == "example.test":
        if qtype == 1:
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton("198.18.200.7")
    else:
        rflags |= 3
    header = struct.pack("!HHHHHH", qid, rflags, 1, 1 if answer else 0, 0, 0)
    s.sendto(header + question + answer, peer)
"#;

/// Starts the resolver in `node`'s netns and waits until it listens.
fn start_resolver(tb: &Testbed, node: &Node) -> Bg {
    let bg = tb.spawn_in(
        &node.netns,
        &format!("upstream-dns-n{}", node.n),
        "python3",
        &["-u", "-c", RESOLVER],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bg.output().contains("ready") {
        assert!(
            bg.is_running() && Instant::now() < deadline,
            "the upstream resolver did not start: {}",
            bg.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    bg
}

/// `busybox nslookup -type=a NAME` from the pod (one try of 2 s per server and name).
fn nslookup(pod: &Pod, name: &str) -> std::process::Output {
    pod.exec_timeout(
        Duration::from_secs(15),
        "busybox",
        &["nslookup", "-type=a", "-timeout=2", "-retry=1", name],
    )
}

/// A node forwarding to the upstream in its netns, with `opts` as the base.
fn forwarding_node(tb: &Testbed, n: u8, opts: NodeOpts) -> Node {
    tb.add_node(
        n,
        opts.without_underlay().arg("--dns-upstream").arg(UPSTREAM),
    )
}

/// What every forwarding node must do, whichever engine it runs.
fn check_forwarding(tb: &Testbed, node: &Node) {
    let resolver = start_resolver(tb, node);
    let pod = tb.add_pod(node, &format!("busybox-client-{}", node.n), &[]);
    node.ctl_ok(&[
        "service",
        "add",
        "nginx-service",
        "--vip",
        VIP,
        "--port",
        "80/tcp",
        "--selector",
        "app=nginx",
    ]);

    // An outside name: answered by the upstream, through the switch.
    let out = nslookup(&pod, "example.test");
    assert!(
        out.status.success() && out.stdout_str().contains(EXAMPLE_IP),
        "example.test did not resolve to {EXAMPLE_IP} through the upstream: {}\nupstream: {}",
        out.describe(),
        resolver.output()
    );
    assert!(
        resolver.output().contains("query example.test 1"),
        "the upstream saw no query: {}",
        resolver.output()
    );
    // The upstream's NXDOMAIN reaches the pod as such.
    let out = nslookup(&pod, "no-such-name.test");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stdout_str().contains("NXDOMAIN") || out.stderr_str().contains("NXDOMAIN"),
        "no NXDOMAIN for no-such-name.test: {}",
        out.describe()
    );
    // A cluster name is still answered by the switch, and never goes upstream.
    let out = nslookup(&pod, "nginx-service.default.svc.cluster.local");
    assert!(
        out.status.success() && out.stdout_str().contains(VIP),
        "nginx-service did not resolve to {VIP}: {}",
        out.describe()
    );
    assert!(
        !resolver.output().contains("nginx-service"),
        "a cluster name went upstream: {}",
        resolver.output()
    );
    assert_eq!(node.drops("dns_refused"), 0);
    assert_eq!(node.drops("dns_upstream_failed"), 0);

    // Without the upstream, the query times out in the forwarder and is counted, without
    // any other traffic to wake the engine.
    drop(resolver);
    let out = pod.exec_timeout(
        Duration::from_secs(10),
        "busybox",
        &[
            "nslookup",
            "-type=a",
            "-timeout=1",
            "-retry=1",
            "example.test",
        ],
    );
    assert!(!out.status.success(), "{}", out.describe());
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.drops("dns_upstream_failed") == 0 {
        assert!(
            Instant::now() < deadline,
            "an unanswered forwarded query was not counted as dns_upstream_failed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn outside_names_are_forwarded_to_the_upstream() {
    let Some(tb) = Testbed::new("dns_upstream_forwards") else {
        return;
    };
    let node = forwarding_node(&tb, 1, NodeOpts::default());
    check_forwarding(&tb, &node);
}

#[test]
fn outside_names_are_forwarded_by_the_epoll_engine() {
    let Some(tb) = Testbed::new("dns_upstream_forwards_epoll") else {
        return;
    };
    let node = forwarding_node(&tb, 1, NodeOpts::datapath("epoll"));
    check_forwarding(&tb, &node);
}

/// The source ports of the queries the resolver saw for names ending in `suffix`.
fn source_ports(resolver: &Bg, suffix: &str) -> std::collections::HashSet<u16> {
    resolver
        .output()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("query")).then_some(())?;
            let name = w.next()?;
            let _ty = w.next()?;
            let port = w.next()?.parse().ok()?;
            name.ends_with(suffix).then_some(port)
        })
        .collect()
}

/// Forwarded queries leave from many source ports (a pool of sockets on random ports, not
/// one per worker), and an answer with the query's id but another question is not
/// delivered: the pod gets the genuine answer, and the forgery is counted.
#[test]
fn queries_leave_from_many_ports_and_forged_answers_are_dropped() {
    let Some(tb) = Testbed::new("dns_upstream_ports") else {
        return;
    };
    let node = forwarding_node(&tb, 1, NodeOpts::default());
    let resolver = start_resolver(&tb, &node);
    let pod = tb.add_pod(&node, "busybox-client", &[]);
    for i in 0..12 {
        let _ = nslookup(&pod, &format!("n{i}.ports.test"));
    }
    let ports = source_ports(&resolver, ".ports.test");
    assert!(
        ports.len() >= 4,
        "12 queries left from {} source port(s) {ports:?}: {}",
        ports.len(),
        resolver.output()
    );
    let out = nslookup(&pod, "spoof.test");
    assert!(
        out.status.success() && out.stdout_str().contains(SPOOF_GENUINE_IP),
        "spoof.test did not resolve to the genuine {SPOOF_GENUINE_IP}: {}\nupstream: {}",
        out.describe(),
        resolver.output()
    );
    assert!(
        !out.stdout_str().contains(FORGED_IP),
        "the forged answer was delivered: {}",
        out.describe()
    );
    assert!(
        node.drops("dns_upstream_unmatched") >= 1,
        "the forged answer was not counted"
    );
}

#[test]
fn without_an_upstream_outside_names_are_refused() {
    let Some(tb) = Testbed::new("dns_upstream_none") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default().without_underlay());
    // A resolver listening in the node changes nothing: the daemon was not told about it.
    let resolver = start_resolver(&tb, &node);
    let pod = tb.add_pod(&node, "busybox-client", &[]);
    let out = nslookup(&pod, "example.test");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        !out.stdout_str().contains(EXAMPLE_IP),
        "example.test resolved without --dns-upstream: {}",
        out.describe()
    );
    assert!(
        out.stdout_str().contains("REFUSED") || out.stderr_str().contains("REFUSED"),
        "example.test was not REFUSED: {}",
        out.describe()
    );
    assert!(node.drops("dns_refused") >= 1);
    assert!(
        !resolver.output().contains("query"),
        "the upstream was asked: {}",
        resolver.output()
    );
}
