//! A node that runs no vswitchd, only the kernel, set up as flannel's vxlan backend sets it
//! up: a vxlan device `flannel.1` holding the node's `.0/32`, a bridge `cni0` as the pods'
//! gateway, and per peer an onlink route to its subnet via its `.0`, a permanent neighbour
//! and an fdb entry. [`kernel_node`] takes the peers as given (by hand, or read from the
//! datastore's leases as flanneld reads them: [`leases_from_etcd`]).

use crate::etcd::Etcd;
use crate::{exec_in, ip_ok, Node, OutputExt, Pod, Testbed};
use std::time::Duration;

/// A peer as flannel's kernel setup needs it.
#[derive(Debug, Clone)]
pub struct FlannelPeer {
    /// Its subnet, `A.B.C.0/24`.
    pub subnet: String,
    /// Its underlay address (the lease's PublicIP).
    pub public_ip: String,
    /// Its VTEP MAC (the lease's BackendData.VtepMAC).
    pub vtep_mac: String,
}

/// The VTEP MAC of the kernel node with subnet `198.18.N.0/24`.
pub fn kernel_vtep_mac(n: u8) -> String {
    format!("0a:58:c6:12:{n:02x}:fe")
}

/// Every lease under `prefix` but `own` (a subnet key name, `A.B.C.D-LEN`), as flanneld
/// reads them: the subnet from the key, PublicIP and VtepMAC from the value.
pub fn leases_from_etcd(etcd: &Etcd, prefix: &str, own: &str) -> Vec<FlannelPeer> {
    let dir = format!("{prefix}/subnets/");
    etcd.get_prefix(&dir)
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(&dir)?.to_string();
            if name == own {
                return None;
            }
            let v: serde_json::Value = serde_json::from_str(&v).ok()?;
            Some(FlannelPeer {
                subnet: name.replace('-', "/"),
                public_ip: v["PublicIP"].as_str()?.to_string(),
                vtep_mac: v["BackendData"]["VtepMAC"].as_str()?.to_string(),
            })
        })
        .collect()
}

/// Sets up `node` (started with `NodeOpts::no_daemon()`) as a flannel kernel node owning
/// `198.18.N.0/24` with `peers`, and a pod `kpod` at `198.18.N.5` behind its bridge.
pub fn kernel_node(tb: &Testbed, node: &Node, peers: &[FlannelPeer]) -> Pod {
    let ns = node.netns.as_str();
    let n = node.n;
    let ul = node.underlay_if.clone().expect("underlay");
    let local = node.underlay.expect("underlay").to_string();
    let vx_mac = kernel_vtep_mac(n);
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
        &vx_mac,
        "mtu",
        "1450",
        "up",
    ]);
    run(&[
        "addr",
        "add",
        &format!("198.18.{n}.0/32"),
        "dev",
        "flannel.1",
    ]);
    run(&["link", "add", "cni0", "type", "bridge"]);
    run(&["addr", "add", &format!("198.18.{n}.1/24"), "dev", "cni0"]);
    run(&["link", "set", "cni0", "mtu", "1450", "up"]);
    for p in peers {
        let vtep = p.subnet.split('/').next().expect("A.B.C.D/LEN").to_string();
        run(&[
            "route",
            "add",
            &p.subnet,
            "via",
            &vtep,
            "dev",
            "flannel.1",
            "onlink",
        ]);
        run(&[
            "neigh",
            "add",
            &vtep,
            "lladdr",
            &p.vtep_mac,
            "dev",
            "flannel.1",
            "nud",
            "permanent",
        ]);
        let bridge = exec_in(
            ns,
            Duration::from_secs(10),
            "bridge",
            &[
                "fdb",
                "append",
                &p.vtep_mac,
                "dev",
                "flannel.1",
                "dst",
                &p.public_ip,
            ],
        );
        assert!(bridge.status.success(), "bridge fdb: {}", bridge.describe());
    }
    // Over veth, the kernel hands a checksum-offloaded (CHECKSUM_PARTIAL) packet to the next
    // namespace without computing the inner TCP checksum; a physical NIC without tunnel
    // offloads would compute it before the wire. A userspace receiver sees the bytes, so
    // make the kernel node's underlay behave like such a NIC.
    let ethtool = exec_in(
        ns,
        Duration::from_secs(10),
        "ethtool",
        &["-K", &ul, "tx", "off"],
    );
    assert!(ethtool.status.success(), "ethtool: {}", ethtool.describe());
    let fwd = exec_in(
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
    let addr = format!("198.18.{n}.5");
    ip_ok(&["-n", &pod_ns, "link", "set", "lo", "up"]);
    ip_ok(&["-n", &pod_ns, "link", "set", "eth0", "mtu", "1450", "up"]);
    ip_ok(&[
        "-n",
        &pod_ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "eth0",
    ]);
    ip_ok(&[
        "-n",
        &pod_ns,
        "route",
        "add",
        "default",
        "via",
        &format!("198.18.{n}.1"),
    ]);
    Pod::external(tb, "kpod", &pod_ns, addr.parse().expect("an address"), node)
}
