//! Cross-node acceptance: two vswitchd nodes joined by the VXLAN tunnel (the tutorial's
//! nginx/busybox fetch by pod IP, ping, a 100 MB transfer checked end to end), interop with a
//! node configured as flannel's vxlan backend configures the kernel, path MTU discovery,
//! and peer removal.

use std::path::Path;
use std::time::Duration;
use vswitch_e2e::traffic::transfer;
use vswitch_e2e::{assert_ping, assert_wget_nginx, ip_ok, Node, NodeOpts, OutputExt, Pod, Testbed};

/// Two nodes with their daemons, each knowing the other as a peer (`peer add` without
/// `--vtep-mac`: the daemon derives a vswitchd peer's VTEP MAC).
fn two_nodes(tb: &Testbed, opts: NodeOpts) -> (Node, Node) {
    let n1 = tb.add_node(1, opts.clone());
    let n2 = tb.add_node(2, opts);
    n1.add_peer_derived_mac(&n2);
    n2.add_peer_derived_mac(&n1);
    (n1, n2)
}

fn pods_across_nodes(tb: &Testbed, datapath: &str) {
    let (n1, n2) = two_nodes(tb, NodeOpts::datapath(datapath));
    let nginx = tb.add_pod(&n1, "nginx-server", &[("app", "nginx")]);
    let busybox = tb.add_pod(&n2, "busybox-client", &[]);
    let _web = tb.start_nginx(&nginx);
    assert_wget_nginx(&busybox, nginx.ip);
    assert_ping(&busybox, nginx.ip);
    assert_ping(&nginx, busybox.ip);
    // The peer's gateway and VTEP address answer too (the switch's own ICMP).
    assert_ping(&busybox, n1.gateway);
    let peers = n2.ctl_json(&["peer", "list", "-o", "json"]);
    assert!(
        peers[0]["tx_packets"].as_u64().unwrap_or(0) > 0
            && peers[0]["rx_packets"].as_u64().unwrap_or(0) > 0,
        "peer counters did not move: {peers}"
    );
}

#[test]
fn pods_across_nodes_uring() {
    let Some(tb) = Testbed::new("pods_across_nodes_uring") else {
        return;
    };
    pods_across_nodes(&tb, "uring");
}

#[test]
fn pods_across_nodes_epoll() {
    let Some(tb) = Testbed::new("pods_across_nodes_epoll") else {
        return;
    };
    pods_across_nodes(&tb, "epoll");
}

#[test]
fn hundred_megabytes_arrive_intact() {
    let Some(tb) = Testbed::new("hundred_megabytes_arrive_intact") else {
        return;
    };
    let (n1, n2) = two_nodes(&tb, NodeOpts::default());
    let a = tb.add_pod(&n1, "sink", &[]);
    let b = tb.add_pod(&n2, "source", &[]);
    transfer(&tb, &b, &a, 100 << 20);
}

/// Node 2 runs no vswitchd: only the kernel, set up as flannel's vxlan backend sets it up
/// (a vxlan device with the node's .0/32, a bridge as the pods' gateway, an onlink route to
/// the peer subnet via the peer's .0, a permanent neighbour and an fdb entry for it).
fn flannel_kernel_node(
    tb: &Testbed,
    node: &Node,
    peer: &Node,
    peer_vtep_mac: &str,
) -> (Pod, String) {
    let ns = node.netns.as_str();
    let ul = node.underlay_if.clone().expect("underlay");
    let local = node.underlay.expect("underlay").to_string();
    let vx_mac = "0a:58:c6:12:02:fe";
    let run = |args: &[&str]| {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        ip_ok(&all);
    };
    run(&[
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "1",
        "local",
        &local,
        "dev",
        &ul,
        "dstport",
        "4789",
        "nolearning",
    ]);
    run(&[
        "link",
        "set",
        "flannel.1",
        "address",
        vx_mac,
        "mtu",
        "1450",
        "up",
    ]);
    run(&["addr", "add", "198.18.2.0/32", "dev", "flannel.1"]);
    run(&["link", "add", "cni0", "type", "bridge"]);
    run(&["addr", "add", "198.18.2.1/24", "dev", "cni0"]);
    run(&["link", "set", "cni0", "mtu", "1450", "up"]);
    let peer_vtep = peer.pod_cidr.trim_end_matches("/24").to_string(); // 198.18.1.0
    run(&[
        "route",
        "add",
        &peer.pod_cidr,
        "via",
        &peer_vtep,
        "dev",
        "flannel.1",
        "onlink",
    ]);
    run(&[
        "neigh",
        "add",
        &peer_vtep,
        "lladdr",
        peer_vtep_mac,
        "dev",
        "flannel.1",
        "nud",
        "permanent",
    ]);
    let bridge = vswitch_e2e::exec_in(
        ns,
        Duration::from_secs(10),
        "bridge",
        &[
            "fdb",
            "append",
            peer_vtep_mac,
            "dev",
            "flannel.1",
            "dst",
            &peer.underlay.expect("underlay").to_string(),
        ],
    );
    assert!(bridge.status.success(), "bridge fdb: {}", bridge.describe());
    // Over veth, the kernel hands a checksum-offloaded (CHECKSUM_PARTIAL) packet to the next
    // namespace without computing the inner TCP checksum; a physical NIC without tunnel
    // offloads would compute it before the wire. A userspace receiver sees the bytes, so
    // make the kernel node's underlay behave like such a NIC.
    let ethtool = vswitch_e2e::exec_in(
        ns,
        Duration::from_secs(10),
        "ethtool",
        &["-K", &ul, "tx", "off"],
    );
    assert!(ethtool.status.success(), "ethtool: {}", ethtool.describe());
    let fwd = vswitch_e2e::exec_in(
        ns,
        Duration::from_secs(10),
        "sysctl",
        &["-qw", "net.ipv4.ip_forward=1"],
    );
    assert!(fwd.status.success(), "sysctl: {}", fwd.describe());
    // The pod: a veth into the bridge.
    let pod_ns = tb.create_netns(&tb.pod_netns_name("kpod"));
    let host_if = format!("{}kp", tb.prefix());
    ip_ok(&[
        "link", "add", &host_if, "netns", ns, "type", "veth", "peer", "name", "eth0", "netns",
        &pod_ns,
    ]);
    run(&[
        "link", "set", &host_if, "master", "cni0", "mtu", "1450", "up",
    ]);
    ip_ok(&["-n", &pod_ns, "link", "set", "lo", "up"]);
    ip_ok(&["-n", &pod_ns, "link", "set", "eth0", "mtu", "1450", "up"]);
    ip_ok(&["-n", &pod_ns, "addr", "add", "198.18.2.5/24", "dev", "eth0"]);
    ip_ok(&[
        "-n",
        &pod_ns,
        "route",
        "add",
        "default",
        "via",
        "198.18.2.1",
    ]);
    (
        Pod::external(tb, "kpod", &pod_ns, "198.18.2.5".parse().unwrap(), node),
        vx_mac.to_string(),
    )
}

#[test]
fn interop_with_flannel_kernel_node() {
    let Some(tb) = Testbed::new("interop_with_flannel_kernel_node") else {
        return;
    };
    let n1 = tb.add_node(1, NodeOpts::default());
    let n2 = tb.add_node(2, NodeOpts::no_daemon());
    let vtep_mac = n1.show()["vtep_mac"]
        .as_str()
        .expect("vtep_mac")
        .to_string();
    let (kpod, kmac) = flannel_kernel_node(&tb, &n2, &n1, &vtep_mac);
    let ul = n2.underlay.expect("underlay").to_string();
    n1.ctl_ok(&[
        "peer",
        "add",
        "node2",
        "--underlay",
        &ul,
        "--pod-cidr",
        &n2.pod_cidr,
        "--vtep-mac",
        &kmac,
    ]);
    let nginx = tb.add_pod(&n1, "nginx-server", &[("app", "nginx")]);
    let busybox = tb.add_pod(&n1, "busybox-client", &[]);
    let _web = tb.start_nginx(&nginx);
    // kernel node -> vswitchd node
    assert_ping(&kpod, nginx.ip);
    assert_wget_nginx(&kpod, nginx.ip);
    // vswitchd node -> kernel node
    let _kweb = tb.start_nginx(&kpod);
    assert_ping(&busybox, kpod.ip);
    assert_wget_nginx(&busybox, kpod.ip);
    transfer(&tb, &busybox, &kpod, 20 << 20);
    transfer(&tb, &kpod, &nginx, 20 << 20);
}

#[test]
fn path_mtu_discovery_across_the_tunnel() {
    let Some(tb) = Testbed::new("path_mtu_discovery_across_the_tunnel") else {
        return;
    };
    let (n1, n2) = two_nodes(&tb, NodeOpts::default());
    let a = tb.add_pod(&n1, "big-sink", &[]);
    let b = tb.add_pod(&n2, "big-source", &[]);
    // The pod believes its link carries 9000 bytes; the tunnel carries 1450.
    ip_ok(&["-n", &b.netns, "link", "set", "eth0", "mtu", "9000"]);
    let target = a.ip.to_string();
    let out = b.exec(
        "ping",
        &["-M", "do", "-s", "2000", "-c", "2", "-W", "2", &target],
    );
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        text.contains("mtu = 1450") || text.contains("mtu=1450"),
        "no frag-needed with MTU 1450 reached the pod: {}",
        out.describe()
    );
    assert!(n2.drops("too_big") > 0, "too_big was not counted");
    // TCP learns the path MTU and the transfer completes.
    transfer(&tb, &b, &a, 20 << 20);
}

#[test]
fn removed_peer_gets_no_traffic() {
    let Some(tb) = Testbed::new("removed_peer_gets_no_traffic") else {
        return;
    };
    let (n1, n2) = two_nodes(&tb, NodeOpts::default());
    let a = tb.add_pod(&n1, "far", &[]);
    let b = tb.add_pod(&n2, "near", &[]);
    assert_ping(&b, a.ip);
    n2.ctl_ok(&["peer", "del", "node1"]);
    let no_route = n2.drops("no_route");
    let sent_before = udp_out_datagrams(&n2);
    let out = b.exec(
        "busybox",
        &["ping", "-c", "3", "-W", "1", &a.ip.to_string()],
    );
    assert!(!out.status.success(), "ping still works after peer del");
    assert!(
        n2.drops("no_route") >= no_route + 3,
        "no_route did not count the pings"
    );
    assert_eq!(
        udp_out_datagrams(&n2),
        sent_before,
        "node 2 still sent datagrams into the tunnel"
    );
    assert!(
        n2.ctl_json(&["peer", "list", "-o", "json"])
            .as_array()
            .is_some_and(|p| p.is_empty()),
        "peer list is not empty"
    );
}

/// `OutDatagrams` of the node's UDP stack (the tunnel socket is its only UDP sender).
fn udp_out_datagrams(node: &Node) -> u64 {
    let snmp = node.exec("cat", &["/proc/net/snmp"]).stdout_str();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutDatagrams")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no Udp OutDatagrams in {}",
                Path::new("/proc/net/snmp").display()
            )
        })
}
