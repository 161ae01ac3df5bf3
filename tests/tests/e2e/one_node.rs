//! One-node acceptance: the tutorial's two pods on one node (both datapaths), anti-spoofing,
//! bad input on the control interface, and address allocations surviving a daemon restart.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use vswitch_e2e::checks::assert_port_rejected;
use vswitch_e2e::{assert_ping, ip_ok, ipv4_addrs, NodeOpts, OutputExt, Pod, Testbed};

/// The pod MTU for a 1500-byte underlay (VXLAN overhead 50).
const POD_MTU: u64 = 1450;

/// Asserts `pod`'s eth0 is configured as the switch promised: its address in the node's /24,
/// `default via <gateway>`, MTU 1450, and the MAC `port list` reports.
fn assert_pod_interface(pod: &Pod) {
    let gw = pod.node.gateway.to_string();
    let (addrs, inet) = ipv4_addrs(&pod.netns, "eth0");
    assert_eq!(
        inet.len(),
        1,
        "{}: expected one IPv4 address: {addrs}",
        pod.name
    );
    assert_eq!(
        inet[0]["local"],
        pod.ip.to_string(),
        "{}: {addrs}",
        pod.name
    );
    assert_eq!(inet[0]["prefixlen"], 24, "{}: {addrs}", pod.name);

    let routes = pod.ip_json(&["route", "show", "default"]);
    let routes = routes.as_array().expect("routes");
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == gw && r["dev"] == "eth0"),
        "{}: no `default via {gw} dev eth0`: {routes:?}",
        pod.name
    );

    let link = pod.ip_json(&["link", "show", "dev", "eth0"]);
    assert_eq!(link[0]["mtu"], POD_MTU, "{}: MTU: {link}", pod.name);
    assert_eq!(link[0]["address"], pod.mac, "{}: MAC: {link}", pod.name);
    assert!(
        link[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "UP")),
        "{}: eth0 is not up: {link}",
        pod.name
    );
}

/// The tutorial, on one node: nginx-server (app=nginx) and busybox-client.
fn two_pods_on_one_node(test: &str, datapath: &str) {
    let Some(tb) = Testbed::new(test) else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::datapath(datapath));
    let show = node.show();
    assert_eq!(show["datapath"], datapath, "node show: {show}");
    assert_eq!(show["pod_cidr"], "198.18.1.0/24");
    assert_eq!(show["gateway"], "198.18.1.1");
    assert_eq!(show["pod_mtu"], POD_MTU);

    let nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let client = tb.add_pod(&node, "busybox-client", &[]);
    let _server = tb.start_nginx(&nginx);

    // `kubectl get pods -o wide`: both pods, their IPs, the node, Running.
    let ports = node.ports();
    assert_eq!(ports.len(), 2, "{ports:?}");
    for (pod, labels) in [
        (&nginx, serde_json::json!({"app": "nginx"})),
        (&client, serde_json::json!({})),
    ] {
        let p = ports
            .iter()
            .find(|p| p["name"] == pod.name.as_str())
            .unwrap_or_else(|| panic!("{} missing from port list: {ports:?}", pod.name));
        assert_eq!(p["ip"], pod.ip.to_string());
        assert_eq!(p["prefix_len"], 24);
        assert_eq!(p["node"], "node1");
        assert_eq!(p["status"], "Running");
        assert_eq!(p["namespace"], "default");
        assert_eq!(p["gateway"], "198.18.1.1");
        assert_eq!(p["mtu"], POD_MTU);
        assert_eq!(p["ifname"], "eth0");
        assert_eq!(p["labels"], labels);
        let in_subnet = pod.ip.octets()[..3] == [198, 18, 1] && pod.ip.octets()[3] > 1;
        assert!(
            in_subnet,
            "{} got {} outside 198.18.1.0/24",
            pod.name, pod.ip
        );
    }
    assert_ne!(nginx.ip, client.ip);
    // The table form has the kubectl-like header.
    let table = node.ctl_ok(&["port", "list"]);
    for col in ["NAME", "NAMESPACE", "IP", "MAC", "NODE", "STATUS"] {
        assert!(table.contains(col), "port list lacks {col}:\n{table}");
    }

    assert_pod_interface(&nginx);
    assert_pod_interface(&client);

    // `wget -qO- <nginx pod IP>` from busybox prints the nginx page.
    let out = client.wget(&format!("http://{}/", nginx.ip));
    assert!(
        out.status.success() && out.stdout_str().contains("Welcome to nginx"),
        "wget from busybox-client to nginx-server ({}): {}",
        nginx.ip,
        out.describe()
    );

    assert_ping(&client, nginx.ip);
    assert_ping(&nginx, client.ip);
    assert_ping(&client, node.gateway);
    assert_ping(&nginx, node.gateway);

    // The traffic is visible in the per-port counters.
    let stats = node.stats();
    for name in ["nginx-server", "busybox-client"] {
        let p = stats["ports"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("stats has no port {name}: {stats}"));
        assert!(p["rx_packets"].as_u64().unwrap_or(0) > 0, "{name}: {p}");
        assert!(p["tx_packets"].as_u64().unwrap_or(0) > 0, "{name}: {p}");
    }
}

#[test]
fn two_pods_on_one_node_uring() {
    two_pods_on_one_node("two_pods_on_one_node_uring", "uring");
}

#[test]
fn two_pods_on_one_node_epoll() {
    two_pods_on_one_node("two_pods_on_one_node_epoll", "epoll");
}

/// A pod may send only from its own IP and MAC: forged frames are dropped and counted.
#[test]
fn forged_source_ip_and_mac_are_dropped() {
    let Some(tb) = Testbed::new("forged_source_ip_and_mac_are_dropped") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    let nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let client = tb.add_pod(&node, "busybox-client", &[]);
    // Honest traffic works first, so a failure below is the switch's doing.
    assert_ping(&client, nginx.ip);

    // Pin the neighbour entry: the forged packets go out without a (forged) ARP first.
    let nginx_ip = nginx.ip.to_string();
    ip_ok(&[
        "-n",
        &client.netns,
        "neigh",
        "replace",
        &nginx_ip,
        "lladdr",
        &nginx.mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);

    // Forged source IP: a second address on eth0 that the switch never gave out.
    let ip_before = node.drops("spoofed_ip");
    ip_ok(&[
        "-n",
        &client.netns,
        "addr",
        "add",
        "198.18.1.200/24",
        "dev",
        "eth0",
    ]);
    let out = client.exec(
        "busybox",
        &[
            "ping",
            "-I",
            "198.18.1.200",
            "-c",
            "3",
            "-W",
            "1",
            &nginx_ip,
        ],
    );
    assert!(
        !out.status.success(),
        "ping from the forged 198.18.1.200 got through: {}",
        out.describe()
    );
    let ip_after = node.drops("spoofed_ip");
    assert!(
        ip_after > ip_before,
        "drops.spoofed_ip did not rise ({ip_before} -> {ip_after})"
    );
    ip_ok(&[
        "-n",
        &client.netns,
        "addr",
        "del",
        "198.18.1.200/24",
        "dev",
        "eth0",
    ]);
    assert_ping(&client, nginx.ip); // the honest address still works

    // Forged source MAC.
    let mac_before = node.drops("spoofed_mac");
    set_mac(&client, "0a:58:de:ad:be:ef");
    let out = client.exec("busybox", &["ping", "-c", "3", "-W", "1", &nginx_ip]);
    assert!(
        !out.status.success(),
        "ping from the forged MAC got through: {}",
        out.describe()
    );
    let mac_after = node.drops("spoofed_mac");
    assert!(
        mac_after > mac_before,
        "drops.spoofed_mac did not rise ({mac_before} -> {mac_after})"
    );
}

/// Changes eth0's MAC in `pod`; if the TAP refuses a live change, takes the link down and up
/// again and restores the default route the kernel dropped meanwhile.
fn set_mac(pod: &Pod, mac: &str) {
    let ns = pod.netns.as_str();
    let live = vswitch_e2e::ip(&["-n", ns, "link", "set", "eth0", "address", mac]);
    if !live.status.success() {
        ip_ok(&["-n", ns, "link", "set", "eth0", "down"]);
        ip_ok(&["-n", ns, "link", "set", "eth0", "address", mac]);
        ip_ok(&["-n", ns, "link", "set", "eth0", "up"]);
        let gw = pod.node.gateway.to_string();
        ip_ok(&[
            "-n", ns, "route", "replace", "default", "via", &gw, "dev", "eth0",
        ]);
    }
    let link = pod.ip_json(&["link", "show", "dev", "eth0"]);
    assert_eq!(link[0]["address"], mac, "{link}");
}

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let Some(tb) = Testbed::new("bad_input_is_rejected_and_changes_nothing") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    let nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let spare = tb.create_netns(&tb.pod_netns_name("spare"));
    let missing = tb.pod_netns_name("nonexistent");

    // A name that is taken.
    assert_port_rejected(
        &node,
        &["port", "add", &nginx.name, "--netns", &spare],
        "name",
    );
    // An address outside the node's subnet.
    assert_port_rejected(
        &node,
        &[
            "port",
            "add",
            "x1",
            "--netns",
            &spare,
            "--ip",
            "198.18.9.5/24",
        ],
        "ip",
    );
    // The pod's own address, the gateway: both taken.
    let taken = format!("{}/24", nginx.ip);
    assert_port_rejected(
        &node,
        &["port", "add", "x2", "--netns", &spare, "--ip", &taken],
        "ip",
    );
    assert_port_rejected(
        &node,
        &[
            "port",
            "add",
            "x3",
            "--netns",
            &spare,
            "--ip",
            "198.18.1.1/24",
        ],
        "ip",
    );
    // A netns that does not exist.
    assert_port_rejected(&node, &["port", "add", "x4", "--netns", &missing], "netns");
    // A malformed MAC.
    assert_port_rejected(
        &node,
        &[
            "port",
            "add",
            "x5",
            "--netns",
            &spare,
            "--mac",
            "zz:zz:zz:zz:zz:zz",
        ],
        "mac",
    );
    // The spare netns got no interface from the failed attempts.
    let links = vswitch_e2e::ip_ok(&["-n", &spare, "-o", "link", "show"]);
    assert_eq!(
        links.lines().count(),
        1,
        "only lo expected in {spare}:\n{links}"
    );

    // A garbage line on the control socket gets a JSON error line; the daemon keeps serving.
    let mut sock = UnixStream::connect(&node.socket).expect("connecting to the control socket");
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    sock.write_all(b"this is not json {{{\n").unwrap();
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("reading the daemon's answer to garbage");
    let reply: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the reply to garbage is not JSON ({e}): {line:?}"));
    assert!(line.contains("error"), "reply to garbage: {reply}");
    // The same connection still answers a valid request.
    sock.write_all(b"{\"version\":1,\"op\":\"node_show\"}\n")
        .unwrap();
    line.clear();
    reader.read_line(&mut line).expect("reading node_show");
    assert!(line.contains("node1"), "node_show after garbage: {line:?}");
    drop(reader);
    drop(sock);

    let show = node.show();
    assert_eq!(show["node"], "node1");
    assert_eq!(node.ports().len(), 1);
}

#[test]
fn allocations_survive_a_daemon_restart() {
    let Some(tb) = Testbed::new("allocations_survive_a_daemon_restart") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    let nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let client = tb.add_pod(&node, "busybox-client", &[]);
    let before = node.ports();

    tb.restart_daemon(&node);

    let after = node.ports();
    for pod in [&nginx, &client] {
        let p = after
            .iter()
            .find(|p| p["name"] == pod.name.as_str())
            .unwrap_or_else(|| panic!("{} lost across the restart: {after:?}", pod.name));
        assert_eq!(p["ip"], pod.ip.to_string(), "{} changed address", pod.name);
        assert_eq!(p["mac"], pod.mac.as_str(), "{} changed MAC", pod.name);
        assert_eq!(
            p["labels"],
            before.iter().find(|b| b["name"] == p["name"]).unwrap()["labels"]
        );
    }
    // A pod added after the restart gets a fresh address, not one of the recovered ones.
    let third = tb.add_pod(&node, "third", &[]);
    assert!(
        third.ip != nginx.ip && third.ip != client.ip,
        "{} reused",
        third.ip
    );
    // And the recovered pods still talk.
    assert_pod_interface(&client);
    assert_ping(&client, nginx.ip);
    assert_ping(&client, node.gateway);
}
