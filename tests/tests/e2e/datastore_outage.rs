//! The datastore failing under the cluster: a three-member etcd, two vswitchd nodes with the
//! tutorial's Service applied once. One member killed: nothing changes, and a pod added
//! then joins the Service everywhere. Every member killed: pod-to-pod and Service traffic go
//! on (fail-static), and a pod added on a node reaches that node's pods. etcd back: the
//! nodes reconnect, and the pod added during the outage is published and joins the Service
//! on the other node too.

use std::time::Duration;
use vswitch_e2e::etcd_cluster::EtcdCluster;
use vswitch_e2e::{assert_ping, wait_for, Node, NodeOpts, OutputExt, Pod, Testbed};

const SERVICE_YAML: &str = include_str!("../../../examples/service.yaml");

/// Waits until `node`'s endpoints of nginx-service are `want`.
fn wait_endpoints(node: &Node, want: &[&Pod]) {
    let mut want: Vec<String> = want.iter().map(|p| p.ip.to_string()).collect();
    want.sort();
    wait_for(
        &format!("{}'s endpoints of nginx-service", node.name),
        Duration::from_secs(15),
        || {
            let got = node.endpoints("nginx-service");
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
}

fn connected(node: &Node) -> Option<bool> {
    node.show()["datastore"]["connected"].as_bool()
}

fn wget_service(pod: &Pod) {
    let page = pod.wget("http://nginx-service/");
    assert!(
        page.status.success() && page.stdout_str().contains("Welcome to nginx"),
        "wget nginx-service from {}: {}",
        pod.name,
        page.describe()
    );
}

#[test]
fn the_cluster_outlives_its_datastore() {
    let Some(tb) = Testbed::new("the_cluster_outlives_its_datastore") else {
        return;
    };
    let mut etcd = EtcdCluster::start(&tb, 3);
    let opts = NodeOpts::default()
        .datastore(&etcd.datastore_url(), "198.18.0.0/16")
        .arg("--node-ttl")
        .arg("10");
    let n1 = tb.add_node(1, opts.clone());
    let n2 = tb.add_node(2, opts);
    let nginx = tb.add_pod(&n1, "nginx-server", &[("app", "nginx")]);
    let busybox = tb.add_pod(&n2, "busybox-client", &[]);
    let _web = tb.start_nginx(&nginx);
    let file = tb.dir().join("service.yaml");
    std::fs::write(&file, SERVICE_YAML).expect("writing service.yaml");
    n1.ctl_ok(&["apply", "-f", file.to_str().expect("UTF-8")]);
    wait_endpoints(&n2, &[&nginx]);
    wget_service(&busybox);

    // One member of three gone: the cluster has its quorum, nothing changes, and a new pod
    // joins the Service on both nodes.
    etcd.kill(0);
    let second = tb.add_pod(&n1, "nginx-second", &[("app", "nginx")]);
    let _web2 = tb.start_nginx(&second);
    wait_endpoints(&n2, &[&nginx, &second]);
    wait_endpoints(&n1, &[&nginx, &second]);
    wget_service(&busybox);

    // Every member gone: the nodes notice, forwarding goes on, Services keep their
    // endpoints, and a pod added now reaches its node's pods.
    etcd.kill(1);
    etcd.kill(2);
    for n in [&n1, &n2] {
        wait_for(
            &format!("{} noticing etcd is gone", n.name),
            Duration::from_secs(20),
            || match connected(n) {
                Some(false) => Ok(()),
                other => Err(format!("connected {other:?}")),
            },
        );
    }
    wget_service(&busybox);
    assert_ping(&busybox, nginx.ip);
    assert_eq!(n2.endpoints("nginx-service").len(), 2);
    let during = tb.add_pod(&n2, "nginx-outage", &[("app", "nginx")]);
    let _web3 = tb.start_nginx(&during);
    assert_ping(&during, busybox.ip);

    // etcd back: both nodes reconnect; the pod added during the outage is published and
    // joins the Service on node 1 too.
    for i in 0..3 {
        etcd.restart(i);
    }
    etcd.wait_healthy();
    for n in [&n1, &n2] {
        wait_for(
            &format!("{} reconnecting", n.name),
            Duration::from_secs(30),
            || match connected(n) {
                Some(true) => Ok(()),
                other => Err(format!("connected {other:?}")),
            },
        );
    }
    wait_endpoints(&n1, &[&nginx, &second, &during]);
    wait_endpoints(&n2, &[&nginx, &second, &during]);
    assert_ping(&nginx, during.ip);
    let nodes = n1.ctl_json(&["node", "list"]);
    let ready = nodes
        .as_array()
        .map_or(0, |a| a.iter().filter(|n| n["status"] == "Ready").count());
    assert_eq!(ready, 2, "node list: {nodes}");
}
