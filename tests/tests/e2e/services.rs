//! Services (ClusterIP) end to end: the tutorial's `nginx-service` reached by VIP and by name
//! across nodes, load balancing over endpoints on two nodes, ClientIP affinity, fast reject
//! without endpoints, hairpin, a UDP service failing over when its endpoint goes, services
//! and surviving a daemon restart. Bad input: `services_input.rs`.
//!
//! How the testbed programs Services. There is no cluster datastore yet, so every node knows
//! only what it is told, and a Service lives in each node's daemon separately. DNAT happens
//! at the *client's* node, and a node's `--selector` can only match that node's own pods. So
//! [`add_service_everywhere`] does what a controller watching the cluster would do: on every
//! node it adds the Service with the same VIP and ports, `--selector` for the node's own pods,
//! and `--endpoint IP` for each matching pod on another node. The server's node needs no
//! state for a connection DNATed elsewhere: the reply goes back to the client's pod IP, and
//! the client's node reverses the NAT.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vswitch_e2e::{Node, NodeOpts, OutputExt, Pod, Testbed};

/// The cluster DNS address (design.md section 6; vswitchd's default `--dns-ip`).
const DNS_IP: &str = "198.19.96.10";
/// First line of the resolv.conf files the daemon writes.
const RESOLV_MARKER: &str = "# written by vswitchd";

// ----- helpers ---------------------------------------------------------------------------------

/// `service add NAME --vip VIP --port P... --selector K=V` on every node in `nodes`, plus
/// `--endpoint IP` for each pod of `pods` (the pods the selector matches, cluster-wide) that
/// lives on another node; `extra` goes to every `service add`. See the module comment.
pub(crate) fn add_service_everywhere(
    nodes: &[&Node],
    pods: &[&Pod],
    name: &str,
    vip: &str,
    ports: &[&str],
    selector: &str,
    extra: &[&str],
) {
    for node in nodes {
        let remote: Vec<String> = pods
            .iter()
            .filter(|p| p.node.n != node.n)
            .map(|p| p.ip.to_string())
            .collect();
        let mut args = vec!["service", "add", name, "--vip", vip, "--selector", selector];
        for p in ports {
            args.extend(["--port", p]);
        }
        for ip in &remote {
            args.extend(["--endpoint", ip.as_str()]);
        }
        args.extend(extra);
        node.ctl_ok(&args);
    }
}

pub(crate) fn sorted_ips(pods: &[&Pod]) -> Vec<String> {
    let mut v: Vec<String> = pods.iter().map(|p| p.ip.to_string()).collect();
    v.sort();
    v
}

/// Asserts `wget -qO- URL` from `pod` prints the nginx page; returns the page.
pub(crate) fn fetch(pod: &Pod, url: &str) -> String {
    let out = pod.wget(url);
    assert!(
        out.status.success() && out.stdout_str().contains("Welcome to nginx"),
        "wget {url} from {} ({}, {}): {}",
        pod.name,
        pod.ip,
        pod.node.name,
        out.describe()
    );
    out.stdout_str()
}

/// Fetches `url` `n` times from `pod` in one shell loop; returns how many answers each nginx
/// pod gave (its page names it) and the number of failed fetches.
fn fetch_many(pod: &Pod, url: &str, n: usize) -> (BTreeMap<String, usize>, usize) {
    let script = format!(
        "for i in $(busybox seq {n}); do busybox wget -q -O- {url} || echo FETCH-FAILED; done"
    );
    let out = pod.exec_timeout(Duration::from_secs(60), "busybox", &["sh", "-c", &script]);
    assert!(
        out.status.success(),
        "{n} fetches of {url} from {}: {}",
        pod.name,
        out.describe()
    );
    let text = out.stdout_str();
    let mut by_pod = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("<p>Served by pod ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            *by_pod.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    let failed = text.matches("FETCH-FAILED").count();
    (by_pod, failed)
}

/// The resolv.conf `ip netns exec` shows the pod.
fn resolv_conf_path(pod_netns: &str) -> std::path::PathBuf {
    Path::new("/etc/netns").join(pod_netns).join("resolv.conf")
}

/// Runs `f` on a new thread that has joined network namespace `netns` (a name under
/// /var/run/netns); sockets it creates stay in that namespace for their whole life, whichever
/// thread uses them later.
fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = Path::new("/var/run/netns").join(netns);
    let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::thread::spawn(move || {
        // setns(2) changes only this thread's network namespace, and this thread ends after `f`.
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns: {e}"));
        f()
    })
    .join()
    .expect("thread in netns panicked")
}

/// A UDP echo server in a pod: answers each datagram with `<pod name>: <datagram>`.
struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    fn start(pod: &Pod, port: u16) -> UdpEcho {
        let sock = in_netns(&pod.netns, move || {
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).expect("bind echo")
        });
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let name = pod.name.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let mut reply = format!("{name}: ").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        UdpEcho {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP client socket in `pod` (one source port for its whole life, like a DNS client).
fn udp_client(pod: &Pod) -> UdpSocket {
    let sock = in_netns(&pod.netns, || {
        UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).expect("bind client")
    });
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock
}

/// Sends `msg` to `dst` and waits (retrying the send every 0.5 s, at most `within`) for the
/// reply; returns (reply text, who sent it).
fn udp_ask(
    sock: &UdpSocket,
    dst: SocketAddrV4,
    msg: &str,
    within: Duration,
) -> (String, SocketAddr) {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 2048];
    loop {
        sock.send_to(msg.as_bytes(), dst).expect("send_to");
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => return (String::from_utf8_lossy(&buf[..n]).into_owned(), from),
            Err(e) if Instant::now() >= deadline => {
                panic!("no UDP answer from {dst} to {msg:?} within {within:?}: {e}")
            }
            Err(_) => {}
        }
    }
}

// ----- (a) the tutorial: by VIP and by name, across nodes -----------------------------------

fn service_by_vip_and_name_across_nodes(test: &str, datapath: &str) {
    let Some(tb) = Testbed::new(test) else {
        return;
    };
    let n1 = tb.add_node(1, NodeOpts::datapath(datapath));
    let n2 = tb.add_node(2, NodeOpts::datapath(datapath));
    tb.mesh(&[&n1, &n2]);
    let show = n2.show();
    assert_eq!(show["service_cidr"], "198.19.96.0/20", "node show: {show}");
    assert_eq!(show["dns_ip"], DNS_IP, "node show: {show}");
    assert_eq!(show["cluster_domain"], "cluster.local", "node show: {show}");

    let nginx = tb.add_pod(&n1, "nginx-server", &[("app", "nginx")]);
    let client = tb.add_pod(&n2, "busybox-client", &[]);
    let _server = tb.start_nginx(&nginx);

    add_service_everywhere(
        &[&n1, &n2],
        &[&nginx],
        "nginx-service",
        "198.19.96.20",
        &["80/tcp"],
        "app=nginx",
        &[],
    );
    // Node 1 selects its own pod; node 2 was given it as an explicit endpoint.
    let want = vec![nginx.ip.to_string()];
    assert_eq!(n1.endpoints("nginx-service"), want);
    assert_eq!(n2.endpoints("nginx-service"), want);
    let s = n2.service("nginx-service");
    assert_eq!(s["vip"], "198.19.96.20");
    assert_eq!(
        s["ports"],
        serde_json::json!([{"name": "", "port": 80, "target_port": 80, "protocol": "tcp"}])
    );
    assert_eq!(
        s["dns_names"],
        serde_json::json!([
            "nginx-service.default.svc.cluster.local",
            "nginx-service.default",
            "nginx-service"
        ])
    );
    let table = n2.ctl_ok(&["service", "list"]);
    for col in [
        "NAME",
        "NAMESPACE",
        "VIP",
        "PORTS",
        "ENDPOINTS",
        "80/TCP",
        "198.19.96.20",
    ] {
        assert!(table.contains(col), "service list lacks {col}:\n{table}");
    }

    // The daemon pointed the pod's resolver at the cluster DNS.
    let resolv = fs::read_to_string(resolv_conf_path(&client.netns))
        .expect("vswitchd wrote no resolv.conf for busybox-client");
    assert_eq!(
        resolv,
        format!(
            "{RESOLV_MARKER}\nnameserver {DNS_IP}\n\
             search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        )
    );

    // `wget -qO- 198.19.96.20` and `wget -qO- nginx-service` from busybox on node 2.
    fetch(&client, "http://198.19.96.20/");
    let page = fetch(&client, "http://nginx-service/");
    assert!(page.contains("Served by pod nginx-server"), "{page}");
    fetch(&client, "http://nginx-service.default/");
    fetch(&client, "http://nginx-service.default.svc.cluster.local/");
    // The client on node 2 does not see the pod's address: the reply came from the VIP (the
    // connection works only if the reverse NAT is right), and nginx saw the client's own IP.
    let log = fs::read_to_string(tb.dir().join("nginx-nginx-server/access.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with(&format!("{} ", client.ip))),
        "nginx did not see busybox-client's address {}:\n{log}",
        client.ip
    );
    // An unknown name does not resolve (the switch answers NXDOMAIN, no hang).
    let out = client.wget("http://no-such-service/");
    assert!(
        !out.status.success(),
        "no-such-service resolved: {}",
        out.describe()
    );

    // port del removes the resolv.conf the daemon wrote, and only one it wrote.
    let extra = tb.add_pod(&n2, "extra", &[]);
    assert!(resolv_conf_path(&extra.netns).exists());
    n2.ctl_ok(&["port", "del", "extra"]);
    assert!(
        !resolv_conf_path(&extra.netns).exists(),
        "port del left {}",
        resolv_conf_path(&extra.netns).display()
    );
    let own_ns = tb.create_netns(&tb.pod_netns_name("own-resolv"));
    tb.set_resolv_conf_netns(&own_ns, "nameserver 198.19.96.99\n");
    n2.ctl_ok(&["port", "add", "own-resolv", "--netns", &own_ns]);
    assert_eq!(
        fs::read_to_string(resolv_conf_path(&own_ns)).unwrap(),
        "nameserver 198.19.96.99\n",
        "vswitchd overwrote a resolv.conf it had not written"
    );
    n2.ctl_ok(&["port", "del", "own-resolv"]);
    assert!(
        resolv_conf_path(&own_ns).exists(),
        "vswitchd removed a resolv.conf it had not written"
    );
}

#[test]
fn service_by_vip_and_name_across_nodes_uring() {
    service_by_vip_and_name_across_nodes("service_by_vip_and_name_across_nodes_uring", "uring");
}

#[test]
fn service_by_vip_and_name_across_nodes_epoll() {
    service_by_vip_and_name_across_nodes("service_by_vip_and_name_across_nodes_epoll", "epoll");
}

// ----- (b) load balancing and (c) affinity over endpoints on two nodes ----------------------

/// Three nginx pods (two on node 1, one on node 2) behind one selector, and a client on node 2.
fn three_endpoints(tb: &Testbed) -> (Node, Node, Vec<Pod>, Pod, Vec<vswitch_e2e::Bg>) {
    let (n1, n2) = tb.two_nodes(NodeOpts::default());
    let web = [("app", "web")];
    let pods = vec![
        tb.add_pod(&n1, "web-a", &web),
        tb.add_pod(&n1, "web-b", &web),
        tb.add_pod(&n2, "web-c", &web),
    ];
    let servers = pods.iter().map(|p| tb.start_nginx(p)).collect();
    let client = tb.add_pod(&n2, "busybox-client", &[]);
    (n1, n2, pods, client, servers)
}

#[test]
fn service_balances_over_endpoints_on_two_nodes() {
    let Some(tb) = Testbed::new("service_balances_over_endpoints_on_two_nodes") else {
        return;
    };
    let (n1, n2, pods, client, _servers) = three_endpoints(&tb);
    let refs: Vec<&Pod> = pods.iter().collect();
    add_service_everywhere(
        &[&n1, &n2],
        &refs,
        "web",
        "198.19.96.30",
        &["80"],
        "app=web",
        &[],
    );
    assert_eq!(n2.endpoints("web"), sorted_ips(&refs));
    assert_eq!(n1.endpoints("web"), sorted_ips(&refs));

    let (by_pod, failed) = fetch_many(&client, "http://198.19.96.30/", 60);
    assert_eq!(failed, 0, "failed fetches; answers by pod: {by_pod:?}");
    assert_eq!(by_pod.values().sum::<usize>(), 60, "{by_pod:?}");
    for p in &pods {
        assert!(
            by_pod.get(&p.name).copied().unwrap_or(0) > 0,
            "endpoint {} ({}) got none of 60 requests: {by_pod:?}",
            p.name,
            p.node.name
        );
    }
    // And by name, from node 1's client side too (a pod on node 1, no service traffic local).
    let (by_pod, failed) = fetch_many(&pods[0], "http://web/", 30);
    assert_eq!(failed, 0, "{by_pod:?}");
    assert!(
        by_pod.len() >= 2,
        "30 requests from web-a all went to one pod: {by_pod:?}"
    );
}

#[test]
fn service_client_ip_affinity_pins_a_client() {
    let Some(tb) = Testbed::new("service_client_ip_affinity_pins_a_client") else {
        return;
    };
    let (n1, n2, pods, client, _servers) = three_endpoints(&tb);
    let refs: Vec<&Pod> = pods.iter().collect();
    add_service_everywhere(
        &[&n1, &n2],
        &refs,
        "web-sticky",
        "198.19.96.31",
        &["80"],
        "app=web",
        &["--affinity", "client-ip"],
    );
    let s = n2.service("web-sticky");
    assert_eq!(s["affinity_seconds"], 10800, "{s}");
    let wide = n2.ctl_ok(&["-o", "wide", "service", "list"]);
    assert!(wide.contains("ClientIP"), "{wide}");

    let (by_pod, failed) = fetch_many(&client, "http://198.19.96.31/", 10);
    assert_eq!(failed, 0, "{by_pod:?}");
    assert_eq!(
        by_pod.len(),
        1,
        "10 requests of one client spread over {by_pod:?}"
    );
    assert_eq!(by_pod.values().sum::<usize>(), 10, "{by_pod:?}");
    // Another client is pinned too (possibly elsewhere).
    let other = tb.add_pod(&n1, "other-client", &[]);
    let (by_pod, failed) = fetch_many(&other, "http://web-sticky/", 10);
    assert_eq!(failed, 0, "{by_pod:?}");
    assert_eq!(
        by_pod.len(),
        1,
        "10 requests of other-client spread over {by_pod:?}"
    );
}

// ----- (d) no endpoints: reject fast --------------------------------------------------------

#[test]
fn service_without_endpoints_refuses_fast() {
    let Some(tb) = Testbed::new("service_without_endpoints_refuses_fast") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    let client = tb.add_pod(&node, "busybox-client", &[]);
    node.ctl_ok(&[
        "service",
        "add",
        "empty",
        "--vip",
        "198.19.96.40",
        "--port",
        "80",
        "--selector",
        "app=nothing",
    ]);
    assert!(node.endpoints("empty").is_empty());
    let table = node.ctl_ok(&["service", "list"]);
    assert!(table.contains("<none>"), "{table}");

    for url in ["http://198.19.96.40/", "http://empty/"] {
        let start = Instant::now();
        let out = client.exec_timeout(
            Duration::from_secs(10),
            "busybox",
            &["wget", "-q", "-O-", url],
        );
        let took = start.elapsed();
        eprintln!("wget {url} refused after {took:?}");
        assert!(
            !out.status.success(),
            "wget {url} succeeded: {}",
            out.describe()
        );
        assert!(
            out.stderr_str().contains("refused"),
            "wget {url}: expected `Connection refused`: {}",
            out.describe()
        );
        // A behaviour bound (reject, not drop), not a benchmark: a dropped SYN would hang
        // for the TCP retransmission timeout (1 s and more).
        assert!(took < Duration::from_secs(1), "wget {url} took {took:?}");
    }
}

// ----- (e) hairpin ----------------------------------------------------------------------------

#[test]
fn service_hairpin_reaches_itself() {
    let Some(tb) = Testbed::new("service_hairpin_reaches_itself") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    let nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let _server = tb.start_nginx(&nginx);
    node.ctl_ok(&[
        "service",
        "add",
        "nginx-service",
        "--vip",
        "198.19.96.20",
        "--port",
        "80",
        "--selector",
        "app=nginx",
    ]);
    assert_eq!(node.endpoints("nginx-service"), vec![nginx.ip.to_string()]);
    // The pod is the only endpoint: its own connection comes back to it, masqueraded so that
    // its reply goes through the switch (and gets un-NATed) instead of straight to itself.
    fetch(&nginx, "http://198.19.96.20/");
    fetch(&nginx, "http://nginx-service/");
    // A second local client still sees its own address at nginx (no masquerade off hairpin).
    let client = tb.add_pod(&node, "busybox-client", &[]);
    fetch(&client, "http://198.19.96.20/");
    let log = fs::read_to_string(tb.dir().join("nginx-nginx-server/access.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with(&format!("{} ", client.ip))),
        "nginx did not see busybox-client's own address {}:\n{log}",
        client.ip
    );
}

/// Two TCP connections from one client port: one straight to nginx's pod address, one to
/// the VIP (DNAT to the same pod and port). `SO_REUSEADDR` lets both sockets bind the port.
/// Prints `direct ...` and `vip ...` with the first bytes of each answer.
const SAME_PORT_CLIENT: &str = r#"
import socket, sys
ep, vip = sys.argv[1], sys.argv[2]
def conn(dst):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 41000))
    s.settimeout(4)
    s.connect((dst, 80))
    return s
d = conn(ep)
v = conn(vip)
for s, name in ((d, "direct"), (v, "vip")):
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    print(name, s.recv(12).decode(), flush=True)
"#;

/// A direct connection and a VIP connection from the same client port to the same endpoint:
/// without a remapped source port they would share a 4-tuple at nginx (the second SYN meets
/// an established connection, and the direct connection's replies would be taken for the
/// VIP's). Both must work.
#[test]
fn a_direct_and_a_vip_connection_from_one_client_port_both_work() {
    let Some(tb) = Testbed::new("service_same_client_port") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    let nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let _server = tb.start_nginx(&nginx);
    node.ctl_ok(&[
        "service",
        "add",
        "nginx-service",
        "--vip",
        "198.19.96.20",
        "--port",
        "80",
        "--selector",
        "app=nginx",
    ]);
    let client = tb.add_pod(&node, "busybox-client", &[]);
    let ep = nginx.ip.to_string();
    let out = client.exec_timeout(
        Duration::from_secs(20),
        "python3",
        &["-c", SAME_PORT_CLIENT, &ep, "198.19.96.20"],
    );
    assert!(
        out.status.success()
            && out.stdout_str().contains("direct HTTP/1.1 200")
            && out.stdout_str().contains("vip HTTP/1.1 200"),
        "{}",
        out.describe()
    );
}

#[test]
fn udp_service_works_and_fails_over() {
    let Some(tb) = Testbed::new("udp_service_works_and_fails_over") else {
        return;
    };
    let (n1, n2) = tb.two_nodes(NodeOpts::default());
    let echo = [("app", "udp-echo")];
    let a = tb.add_pod(&n1, "echo-a", &echo);
    let b = tb.add_pod(&n1, "echo-b", &echo);
    let c = tb.add_pod(&n2, "echo-c", &echo);
    let _servers = [a.clone(), b.clone(), c.clone()].map(|p| UdpEcho::start(&p, 5353));
    let client = tb.add_pod(&n1, "busybox-client", &[]);
    // Port 53 on the VIP, 5353 on the pods: a target port, as kube-dns does it.
    n1.ctl_ok(&[
        "service",
        "add",
        "echo",
        "--vip",
        "198.19.96.53",
        "--port",
        "dns:53:5353/udp",
        "--selector",
        "app=udp-echo",
    ]);
    assert_eq!(n1.endpoints("echo"), sorted_ips(&[&a, &b]));
    let vip = SocketAddrV4::new(Ipv4Addr::new(198, 19, 96, 53), 53);
    let sock = udp_client(&client);

    let (reply, from) = udp_ask(&sock, vip, "one", Duration::from_secs(3));
    assert_eq!(
        from,
        SocketAddr::V4(vip),
        "the reply must come from the VIP"
    );
    let first = reply.split(':').next().unwrap_or_default().to_string();
    assert!(
        reply == format!("{first}: one") && (first == a.name || first == b.name),
        "unexpected reply {reply:?}"
    );
    // The same flow stays on its endpoint (conntrack).
    for i in 0..3 {
        let (reply, _) = udp_ask(&sock, vip, &format!("again{i}"), Duration::from_secs(3));
        assert!(
            reply.starts_with(&format!("{first}: ")),
            "flow moved: {reply:?}"
        );
    }
    // Its endpoint goes away: the flow's conntrack entry is flushed and the same socket's
    // next datagram reaches the remaining endpoint at once, not after a UDP timeout.
    let (gone, left) = if first == a.name { (&a, &b) } else { (&b, &a) };
    n1.ctl_ok(&["port", "del", &gone.name]);
    assert_eq!(n1.endpoints("echo"), vec![left.ip.to_string()]);
    let start = Instant::now();
    let (reply, from) = udp_ask(&sock, vip, "after", Duration::from_secs(3));
    assert_eq!(
        reply,
        format!("{}: after", left.name),
        "after port del of {}",
        gone.name
    );
    assert_eq!(from, SocketAddr::V4(vip));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "failover took {:?}",
        start.elapsed()
    );

    // Across nodes with explicit endpoints: the client's node (node 2 here) holds the NAT.
    let client2 = tb.add_pod(&n2, "client2", &[]);
    let left_ep = format!("{}", left.ip);
    n2.ctl_ok(&[
        "service",
        "add",
        "echo",
        "--vip",
        "198.19.96.53",
        "--port",
        "dns:53:5353/udp",
        "--endpoint",
        &left_ep,
    ]);
    let sock2 = udp_client(&client2);
    let (reply, from) = udp_ask(&sock2, vip, "x", Duration::from_secs(3));
    assert_eq!(reply, format!("{}: x", left.name));
    assert_eq!(from, SocketAddr::V4(vip));
    // Replace the service with the local echo-c (del, then add): the flow fails over.
    n2.ctl_ok(&["service", "del", "echo"]);
    n2.ctl_ok(&[
        "service",
        "add",
        "echo",
        "--vip",
        "198.19.96.53",
        "--port",
        "dns:53:5353/udp",
        "--selector",
        "app=udp-echo",
    ]);
    assert_eq!(n2.endpoints("echo"), vec![c.ip.to_string()]);
    let (reply, _) = udp_ask(&sock2, vip, "y", Duration::from_secs(3));
    assert_eq!(reply, format!("{}: y", c.name));
}

// ----- persistence ------------------------------------------------------------------------------

#[test]
fn services_survive_a_daemon_restart() {
    let Some(tb) = Testbed::new("services_survive_a_daemon_restart") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    let nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let client = tb.add_pod(&node, "busybox-client", &[]);
    let _server = tb.start_nginx(&nginx);
    node.ctl_ok(&[
        "service",
        "add",
        "nginx-service",
        "--vip",
        "198.19.96.20",
        "--port",
        "http:80",
        "--selector",
        "app=nginx",
        "--affinity",
        "client-ip:600",
    ]);
    let before = node.services();
    let state = fs::read_to_string(node.state_dir.join("state.json")).unwrap();
    assert!(
        state.contains("nginx-service"),
        "state.json lacks the service:\n{state}"
    );

    tb.restart_daemon(&node);

    assert_eq!(
        node.services(),
        before,
        "services changed across the restart"
    );
    fetch(&client, "http://nginx-service/");
    node.ctl_ok(&["service", "del", "nginx-service"]);
    assert!(node.services().is_empty());
    tb.restart_daemon(&node);
    assert!(node.services().is_empty(), "a deleted service came back");
}

// ----- trace, conntrack, log level (issue 14, acceptance 3) ---------------------------------
