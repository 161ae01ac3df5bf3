//! Cross-node acceptance: two vswitchd nodes joined by the VXLAN tunnel (the tutorial's
//! nginx/busybox fetch by pod IP, ping, a 100 MB transfer checked end to end), interop with a
//! node configured as flannel's vxlan backend configures the kernel, path MTU discovery,
//! and peer removal.

use std::path::Path;
use std::time::Duration;
use vswitch_e2e::flannel::{kernel_node, kernel_vtep_mac, FlannelPeer};
use vswitch_e2e::traffic::transfer;
use vswitch_e2e::{assert_ping, assert_wget_nginx, ip_ok, Node, NodeOpts, OutputExt, Testbed};

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
    // The flow log names the direct TCP flow on both nodes: leaving node 2 for its peer, and
    // arriving at node 1 from the tunnel (one event each, at the SYN).
    let flow = |node: &Node, direction: &str, peer: &str| {
        vswitch_e2e::wait_for(
            "the cross-node flow in observe",
            Duration::from_secs(5),
            || {
                let ip = nginx.ip.to_string();
                let recs = node.ctl_json(&["observe", "--verdict", "forwarded", "--ip", &ip]);
                let found = recs.as_array().into_iter().flatten().any(|r| {
                    r["direction"] == direction
                        && r["peer"] == peer
                        && r["protocol"] == "tcp"
                        && r["tcp_flags"] == "SYN"
                        && r["source"]["ip"] == busybox.ip.to_string().as_str()
                        && r["destination"]["port"] == 80
                });
                if found {
                    Ok(())
                } else {
                    Err(recs.to_string())
                }
            },
        )
    };
    flow(&n2, "pod", &n1.name);
    flow(&n1, "tunnel", &n2.name);
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
    let kpod = kernel_node(
        &tb,
        &n2,
        &[FlannelPeer {
            subnet: n1.pod_cidr.clone(),
            public_ip: n1.underlay.expect("underlay").to_string(),
            vtep_mac,
        }],
    );
    let kmac = kernel_vtep_mac(n2.n);
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
