//! The cluster through a real etcd: three vswitchd nodes started with `--datastore` and no
//! `--pod-cidr` and no `peer add` lease their subnets the flannel way, find each other through
//! the leases and carry pod traffic both ways; `node list` shows them; the keys in etcd have
//! flannel's exact JSON; a restarted daemon gets its subnet back; a lease value that does not
//! parse is counted and skipped; a killed daemon turns NotReady within `--node-ttl` while its
//! peer stays (fail-static); with etcd gone, a restarted daemon starts on its saved subnet
//! with its peers. The cluster's objects: the tutorial's Service applied once reaches every
//! node, its selector finds pods on every node (a pod added later too), `port list
//! --all-nodes` lists them all, a killed node's pods leave the endpoints, bad values are
//! counted and skipped; a kernel-only node set up from the leases as flanneld sets itself up
//! exchanges traffic with the vswitchd nodes both ways. One test function: the scenarios share one cluster.

use serde_json::Value;
use std::time::{Duration, Instant};
use vswitch_e2e::etcd::Etcd;
use vswitch_e2e::flannel::{kernel_node, kernel_vtep_mac, leases_from_etcd};
use vswitch_e2e::{
    assert_ping, assert_wget_nginx, exec_in, wait_for, Node, NodeOpts, OutputExt, Testbed,
};

const CLUSTER_CIDR: &str = "198.18.0.0/16";
const SERVICE_YAML: &str = include_str!("../../../examples/service.yaml");
const PREFIX: &str = "/coreos.com/network";
/// `--node-ttl` of the nodes (short: the NotReady check waits for it).
const NODE_TTL: u64 = 3;

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("not a JSON array: {other}"),
    }
}

/// The names of `node`'s peers from the datastore, sorted.
fn datastore_peers(node: &Node) -> Vec<String> {
    let mut v: Vec<String> = node
        .peers()
        .iter()
        .filter(|p| p["source"] == "datastore")
        .filter_map(|p| p["node"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn wait_peers(node: &Node, want: &[&str]) {
    wait_for(
        &format!("{}'s datastore peers {want:?}", node.name),
        Duration::from_secs(10),
        || {
            let got = datastore_peers(node);
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
}

#[test]
fn nodes_find_each_other_through_etcd() {
    let Some(tb) = Testbed::new("nodes_find_each_other_through_etcd") else {
        return;
    };
    let etcd = Etcd::start(&tb);
    let opts = NodeOpts::default()
        .datastore(&etcd.datastore_url(), CLUSTER_CIDR)
        .arg("--node-ttl")
        .arg(&NODE_TTL.to_string());
    let n1 = tb.add_node(1, opts.clone());
    let n2 = tb.add_node(2, opts.clone());
    let n3 = tb.add_node(3, opts);
    // The lowest free subnets in start order; the cluster CIDR's first one is skipped.
    assert_eq!(
        [&n1.pod_cidr, &n2.pod_cidr, &n3.pod_cidr],
        ["198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24"]
    );
    wait_peers(&n1, &["198.18.2.0-24", "198.18.3.0-24"]);
    wait_peers(&n2, &["198.18.1.0-24", "198.18.3.0-24"]);
    wait_peers(&n3, &["198.18.1.0-24", "198.18.2.0-24"]);

    // Pod traffic both ways across nodes, with no `peer add` anywhere.
    let nginx = tb.add_pod(&n1, "nginx-server", &[("app", "nginx")]);
    let busybox = tb.add_pod(&n2, "busybox-client", &[]);
    let third = tb.add_pod(&n3, "busybox-third", &[]);
    let _web = tb.start_nginx(&nginx);
    assert_wget_nginx(&busybox, nginx.ip);
    assert_ping(&nginx, busybox.ip);
    assert_ping(&third, busybox.ip);

    // `node list` on one node: three Ready nodes with their subnets.
    let nodes = array(n2.ctl_json(&["node", "list"]));
    let got: Vec<(String, String, String, String)> = nodes
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("subnet"), s("underlay"), s("status"))
        })
        .collect();
    let want: Vec<(String, String, String, String)> = (1..=3)
        .map(|i| {
            (
                format!("node{i}"),
                format!("198.18.{i}.0/24"),
                format!("198.19.0.{i}"),
                "Ready".to_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "node list: {nodes:?}");
    let table = n2.ctl_ok(&["node", "list"]);
    assert!(
        table.starts_with("NAME   SUBNET         UNDERLAY    VTEP-MAC           STATUS  AGE\n"),
        "{table}"
    );

    // The cluster's objects: the tutorial's Service applied once, on node 1, reaches every
    // node; its selector finds the nginx pods of two nodes; a pod added later on a third
    // node with the label joins on every node; `port list --all-nodes` shows every pod.
    let nginx3 = tb.add_pod(&n3, "nginx-third", &[("app", "nginx")]);
    let _web3 = tb.start_nginx(&nginx3);
    let file = tb.dir().join("service.yaml");
    std::fs::write(&file, SERVICE_YAML).expect("writing service.yaml");
    let out = n1.ctl_ok(&["apply", "-f", file.to_str().expect("UTF-8")]);
    assert_eq!(out, "service/nginx-service created\n");
    let vip = n1.service("nginx-service")["vip"]
        .as_str()
        .unwrap()
        .to_string();
    let wait_endpoints = |want: &[std::net::Ipv4Addr]| {
        let mut want: Vec<String> = want.iter().map(ToString::to_string).collect();
        want.sort();
        for n in [&n1, &n2, &n3] {
            wait_for(
                &format!("{}'s endpoints of nginx-service", n.name),
                Duration::from_secs(10),
                || {
                    let mut got = n.endpoints("nginx-service");
                    got.sort();
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!("{got:?}"))
                    }
                },
            );
            assert_eq!(n.service("nginx-service")["vip"], vip.as_str());
        }
    };
    wait_endpoints(&[nginx.ip, nginx3.ip]);
    // Pod IP wget the other way too (node 1 to node 3; node 2 to node 1 is above).
    assert_wget_nginx(&nginx, nginx3.ip);
    for pod in [&nginx, &busybox, &third] {
        let page = pod.wget("http://nginx-service/");
        assert!(
            page.status.success() && page.stdout_str().contains("Welcome to nginx"),
            "wget nginx-service from {}: {}",
            pod.name,
            page.describe()
        );
    }
    let late = tb.add_pod(&n2, "nginx-late", &[("app", "nginx")]);
    let _web_late = tb.start_nginx(&late);
    wait_endpoints(&[nginx.ip, nginx3.ip, late.ip]);
    let mut all: Vec<(String, String)> = array(n3.ctl_json(&["port", "list", "--all-nodes"]))
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("node"))
        })
        .collect();
    all.sort();
    let want: Vec<(String, String)> = [
        ("busybox-client", "node2"),
        ("busybox-third", "node3"),
        ("nginx-late", "node2"),
        ("nginx-server", "node1"),
        ("nginx-third", "node3"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(all, want);
    // Bad values under the prefix are counted (once each) and skipped; nothing else changes.
    let skipped0 = n1.show()["datastore"]["skipped"].as_u64().unwrap_or(0);
    for (key, value) in [
        ("vswitch/services/default/junk", "{not json"),
        ("vswitch/pods/node9/default/x", r#"{"name":"y"}"#),
    ] {
        let out = etcd.ctl(&["put", &format!("{PREFIX}/{key}"), value]);
        assert!(out.status.success(), "etcdctl put: {out:?}");
    }
    wait_for(
        "n1 counting the bad values",
        Duration::from_secs(10),
        || {
            let skipped = n1.show()["datastore"]["skipped"].as_u64().unwrap_or(0);
            if skipped == skipped0 + 2 {
                Ok(())
            } else {
                Err(format!("skipped {skipped}"))
            }
        },
    );
    for key in [
        "vswitch/services/default/junk",
        "vswitch/pods/node9/default/x",
    ] {
        etcd.ctl(&["del", &format!("{PREFIX}/{key}")]);
    }
    assert_eq!(n1.endpoints("nginx-service").len(), 3);

    // The keys in etcd, exactly as flannel writes them.
    let kvs = etcd.get_prefix(&format!("{PREFIX}/"));
    let get = |k: &str| {
        kvs.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} missing from etcd: {kvs:?}"))
    };
    assert_eq!(
        get(&format!("{PREFIX}/config")),
        r#"{"Network":"198.18.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":4789}}"#
    );
    for n in [&n1, &n2, &n3] {
        let mac = n.show()["vtep_mac"].as_str().unwrap().to_string();
        assert_eq!(
            get(&format!("{PREFIX}/subnets/198.18.{}.0-24", n.n)),
            format!(
                r#"{{"PublicIP":"198.19.0.{}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac}"}}}}"#,
                n.n
            )
        );
        let rec: Value = serde_json::from_str(&get(&format!("{PREFIX}/vswitch/nodes/{}", n.name)))
            .expect("a node record is JSON");
        assert_eq!(rec["subnet"], n.pod_cidr);
        assert_eq!(rec["vtep_mac"], mac.as_str());
    }
    let ds = &n1.show()["datastore"];
    assert_eq!(ds["connected"], true, "{ds}");
    assert!(ds["revision"].as_i64().unwrap_or(0) > 0, "{ds}");
    assert!(ds["last_sync"].as_u64().is_some(), "{ds}");
    let skipped_before = ds["skipped"].as_u64().unwrap_or(0);

    // A lease value that does not parse: counted and skipped, nothing else changes.
    let out = etcd.ctl(&[
        "put",
        &format!("{PREFIX}/subnets/198.18.9.0-24"),
        "{not json",
    ]);
    assert!(out.status.success(), "etcdctl put: {out:?}");
    wait_for("n1 counting the bad lease", Duration::from_secs(10), || {
        let skipped = n1.show()["datastore"]["skipped"].as_u64().unwrap_or(0);
        if skipped == skipped_before + 1 {
            Ok(())
        } else {
            Err(format!("skipped {skipped}"))
        }
    });
    assert_eq!(datastore_peers(&n1), ["198.18.2.0-24", "198.18.3.0-24"]);

    // `peer add` by hand still works beside the datastore (a node outside it), and the
    // datastore's sync leaves the manual peer alone.
    n1.ctl_ok(&[
        "peer",
        "add",
        "outside",
        "--underlay",
        "198.19.0.200",
        "--pod-cidr",
        "198.18.200.0/24",
    ]);
    let manual = |n: &Node| {
        n.peers()
            .iter()
            .any(|p| p["node"] == "outside" && p["source"] == "manual")
    };
    assert!(manual(&n1), "{:?}", n1.peers());

    // A fourth node refuses to start, naming the flag, when it asks for a subnet another
    // node holds or when its flags disagree with the cluster's config.
    let n4 = tb.add_node(4, NodeOpts::no_daemon());
    let vswitchd = tb.bin("vswitchd").display().to_string();
    for (extra, want) in [
        (
            &["--pod-cidr", "198.18.1.0/24"][..],
            "--pod-cidr: 198.18.1.0/24 is leased by 198.19.0.1",
        ),
        (&["--vni", "2"][..], "Backend.VNI is 1, --vni is 2"),
    ] {
        let opts = extra.iter().fold(
            NodeOpts::default().datastore(&etcd.datastore_url(), CLUSTER_CIDR),
            |o, a| o.arg(a),
        );
        let args = n4.vswitchd_args(&opts);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = exec_in(&n4.netns, Duration::from_secs(15), &vswitchd, &args);
        assert!(
            !out.status.success() && out.stderr_str().contains(want),
            "vswitchd {extra:?} should refuse to start with `{want}`: {}",
            out.describe()
        );
    }

    // A restarted daemon gets its subnet back; its pod keeps its address and path.
    tb.restart_daemon(&n3);
    assert_eq!(n3.show()["pod_cidr"], "198.18.3.0/24");
    wait_peers(&n3, &["198.18.1.0-24", "198.18.2.0-24"]);
    assert_wget_nginx(&third, nginx.ip);

    // A killed daemon: NotReady within --node-ttl (plus etcd's expiry check), and its peer
    // stays on the other nodes (its subnet lease lives 24 h; fail-static).
    tb.kill_daemon(&n3);
    let killed = Instant::now();
    wait_for(
        "node 3 NotReady in n1's node list",
        Duration::from_secs(NODE_TTL + 5),
        || {
            let nodes = array(n1.ctl_json(&["node", "list"]));
            let n3 = nodes.iter().find(|n| n["subnet"] == "198.18.3.0/24");
            match n3 {
                Some(n) if n["status"] == "NotReady" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    eprintln!("node 3 NotReady {:?} after SIGKILL", killed.elapsed());
    // Its pod left the Service's endpoints everywhere; the Service answers from the others.
    for n in [&n1, &n2] {
        wait_for(
            &format!("{}: node 3's pod out of nginx-service", n.name),
            Duration::from_secs(5),
            || {
                let got = n.endpoints("nginx-service");
                if got.contains(&nginx3.ip.to_string()) || got.len() != 2 {
                    Err(format!("{got:?}"))
                } else {
                    Ok(())
                }
            },
        );
    }
    let page = busybox.wget("http://nginx-service/");
    assert!(
        page.status.success(),
        "wget nginx-service: {}",
        page.describe()
    );
    assert_eq!(datastore_peers(&n1), ["198.18.2.0-24", "198.18.3.0-24"]);
    assert_eq!(datastore_peers(&n2), ["198.18.1.0-24", "198.18.3.0-24"]);
    assert!(manual(&n1), "{:?}", n1.peers());
    assert_ping(&busybox, nginx.ip);
    // Started again: Ready with the same subnet, and its pod back in the endpoints.
    tb.start_daemon(&n3);
    assert_eq!(n3.show()["pod_cidr"], "198.18.3.0/24");
    wait_endpoints(&[nginx.ip, nginx3.ip, late.ip]);
    let nodes = array(n1.ctl_json(&["node", "list"]));
    assert!(
        nodes.iter().all(|n| n["status"] == "Ready"),
        "node list: {nodes:?}"
    );
    // `delete -f` on another node removes it everywhere; applied again from there it is
    // back, with the VIP it had (the lowest free one again).
    let file = file.to_str().expect("UTF-8");
    assert_eq!(
        n2.ctl_ok(&["delete", "-f", file]),
        "service \"nginx-service\" deleted\n"
    );
    for n in [&n1, &n2, &n3] {
        wait_for(
            &format!("nginx-service gone from {}", n.name),
            Duration::from_secs(10),
            || match n.services().iter().any(|s| s["name"] == "nginx-service") {
                false => Ok(()),
                true => Err("still listed".to_string()),
            },
        );
    }
    assert_eq!(
        n2.ctl_ok(&["apply", "-f", file]),
        "service/nginx-service created\n"
    );
    wait_endpoints(&[nginx.ip, nginx3.ip, late.ip]);

    // A kernel-only node configured from the datastore as flanneld configures it (its
    // lease written, every other lease read), and the vswitchd nodes peer with it. Node 4
    // (no daemon: it refused to start above) is that node.
    let lease = format!(
        r#"{{"PublicIP":"198.19.0.4","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{}"}}}}"#,
        kernel_vtep_mac(4)
    );
    let out = etcd.ctl(&["put", &format!("{PREFIX}/subnets/198.18.4.0-24"), &lease]);
    assert!(out.status.success(), "etcdctl put: {out:?}");
    let peers = leases_from_etcd(&etcd, PREFIX, "198.18.4.0-24");
    assert_eq!(peers.len(), 3, "{peers:?}");
    let kpod = kernel_node(&tb, &n4, &peers);
    let all4 = ["198.18.2.0-24", "198.18.3.0-24", "198.18.4.0-24"];
    wait_peers(&n1, &all4);
    assert_wget_nginx(&kpod, nginx.ip);
    assert_ping(&busybox, kpod.ip);
    assert_ping(&third, kpod.ip);

    // etcd gone: the nodes keep forwarding, and a restarted daemon starts on the subnet and
    // the peers saved in its state directory (fail-static).
    etcd.kill();
    wait_for("n1 noticing etcd is gone", Duration::from_secs(15), || {
        let ds = &n1.show()["datastore"];
        match ds["connected"].as_bool() {
            Some(false) => Ok(()),
            _ => Err(ds.to_string()),
        }
    });
    assert_eq!(datastore_peers(&n1), all4);
    assert_ping(&nginx, busybox.ip);
    tb.restart_daemon(&n2);
    assert_eq!(n2.show()["pod_cidr"], "198.18.2.0/24");
    assert_eq!(
        datastore_peers(&n2),
        ["198.18.1.0-24", "198.18.3.0-24", "198.18.4.0-24"]
    );
    assert_wget_nginx(&busybox, nginx.ip);
    // The datastore's Service too, with the endpoints it had.
    assert_eq!(n2.service("nginx-service")["vip"], vip.as_str());
    let page = busybox.wget("http://nginx-service/");
    assert!(
        page.status.success(),
        "wget nginx-service: {}",
        page.describe()
    );
}
