//! The cluster's objects in the node state without root: the other nodes' pods in the
//! selector's endpoints (Running, Ready, routable), datastore Services and Namespaces
//! synced, bad values skipped with a reason and nothing else changed.

use super::*;
use vswitch_datapath::NodeConfig;
use vswitch_proto::PeerSpec;

/// Node `node1` owning 198.18.1.0/24 with a datastore, service CIDR 198.19.96.0/20, DNS
/// 198.19.96.10, with a peer owning 198.18.2.0/24.
fn state() -> NodeState {
    let mut cfg = NodeConfig::for_subnet(
        crate::checked::cidr("pod_cidr", "198.18.1.0/24").unwrap(),
        1450,
    );
    cfg.service_cidr = Some(crate::checked::cidr("service_cidr", "198.19.96.0/20").unwrap());
    cfg.dns_ip = Some(ip("198.19.96.10"));
    let mut st = NodeState::new(cfg, "node1".into(), Some(ip("198.19.0.1")), None);
    st.datastore = true;
    let rec = st
        .check_peer(&PeerSpec {
            node: "198.18.2.0-24".into(),
            underlay: "198.19.0.2".into(),
            pod_cidr: "198.18.2.0/24".into(),
            vtep_mac: None,
        })
        .unwrap();
    let peer = st.peer_from_record(rec).unwrap();
    let _ = st.set_peer(peer);
    st
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn pod(node: &str, name: &str, addr: &str, app: &str) -> PodRecord {
    PodRecord {
        name: name.into(),
        namespace: "default".into(),
        node: node.into(),
        ip: ip(addr),
        mac: "0a:58:c6:12:02:02".into(),
        labels: [("app".to_string(), app.to_string())].into(),
        status: PortStatus::Running,
    }
}

fn nginx(vip: Option<&str>) -> ServiceSpec {
    ServiceSpec {
        name: "nginx-service".into(),
        namespace: "default".into(),
        vip: vip.map(str::to_string),
        ports: vec!["80:80/tcp".into()],
        selector: [("app".to_string(), "nginx".to_string())].into(),
        endpoints: vec![],
        affinity: None,
    }
}

fn ready(nodes: &[&str]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.to_string()).collect()
}

fn endpoints(st: &NodeState) -> Vec<String> {
    let key = ServiceKey {
        name: "nginx-service".into(),
        namespace: "default".into(),
    };
    st.service_info(&st.services[&key]).endpoints
}

#[test]
fn selectors_find_running_pods_of_ready_nodes_in_peer_subnets() {
    let mut st = state();
    let (changed, skipped) = st.sync_cluster_services(vec![nginx(Some("198.19.97.0"))]);
    assert!(changed && skipped.is_empty(), "{skipped:?}");
    let mut stopped = pod("node2", "old", "198.18.2.4", "nginx");
    stopped.status = PortStatus::Detached;
    let pods = vec![
        pod("node2", "web", "198.18.2.2", "nginx"),
        pod("node2", "other", "198.18.2.3", "db"),
        stopped,
        // No peer holds 198.18.3.0/24 (yet): not routable, not an endpoint.
        pod("node3", "far", "198.18.3.2", "nginx"),
        // This node's own record is its ports' business, never the datastore's.
        pod("node1", "mine", "198.18.2.9", "nginx"),
    ];
    let (changed, skipped) = st.set_cluster_pods(pods.clone(), ready(&["node1", "node2", "node3"]));
    assert!(changed && skipped.is_empty(), "{skipped:?}");
    assert_eq!(endpoints(&st), ["198.18.2.2"]);
    assert_eq!(st.cluster_pods.len(), 4);
    // node2 NotReady: its pods leave the endpoints; Ready again: they come back.
    let (changed, _) = st.set_cluster_pods(pods.clone(), ready(&["node1", "node3"]));
    assert!(changed);
    assert!(endpoints(&st).is_empty());
    assert!(st.set_cluster_pods(pods.clone(), ready(&["node2"])).0);
    assert_eq!(endpoints(&st), ["198.18.2.2"]);
    assert!(
        !st.set_cluster_pods(pods, ready(&["node2"])).0,
        "the same again"
    );
    // The tables carry the remote endpoint on the target port.
    let (entries, _, _) = st.service_tables();
    assert_eq!(entries[0].endpoints, ["198.18.2.2:80".parse().unwrap()]);
}

#[test]
fn bad_pod_records_are_skipped_with_a_reason() {
    let mut st = state();
    let mut bad_label = pod("node2", "a", "198.18.2.2", "nginx");
    bad_label.labels.insert("bad key!".into(), "x".into());
    let pods = vec![
        pod("node2", "Bad_Name", "198.18.2.3", "nginx"),
        pod("node2", "inside", "198.18.1.7", "nginx"),
        pod("node2", "zero", "0.0.0.0", "nginx"),
        bad_label,
        pod("node2", "good", "198.18.2.5", "nginx"),
    ];
    let (changed, skipped) = st.set_cluster_pods(pods, ready(&["node2"]));
    assert!(changed);
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    assert!(skipped[1].1.contains("this node's subnet"), "{skipped:?}");
    assert_eq!(st.cluster_pods.len(), 1);
}

#[test]
fn datastore_services_sync_and_never_replace_local_ones() {
    let mut st = state();
    // A node-local service (service add on this node) named like a datastore one.
    st.datastore = false;
    let mut local = nginx(Some("198.19.96.20"));
    local.name = "local".into();
    let rec = st.check_service(local.clone()).unwrap();
    let _ = st.add_service(rec);
    st.datastore = true;
    let mut clash = nginx(Some("198.19.97.1"));
    clash.name = "local".into();
    let mut same_vip = nginx(Some("198.19.96.20"));
    same_vip.name = "same-vip".into();
    let mut no_vip = nginx(None);
    no_vip.name = "no-vip".into();
    let mut no_ports = nginx(Some("198.19.97.2"));
    no_ports.name = "no-ports".into();
    no_ports.ports.clear();
    let (changed, skipped) = st.sync_cluster_services(vec![
        nginx(Some("198.19.97.0")),
        clash,
        same_vip,
        no_vip,
        no_ports,
    ]);
    assert!(changed);
    let why: Vec<&str> = skipped.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(why.len(), 4, "{skipped:?}");
    assert!(why[0].contains("node-local service"), "{why:?}");
    assert!(
        why[1].starts_with("vip: ") && why[1].contains("already the VIP"),
        "{why:?}"
    );
    assert!(why[2].starts_with("vip: "), "{why:?}");
    assert!(why[3].starts_with("port: "), "{why:?}");
    assert_eq!(st.services.len(), 2);
    assert!(
        !st.services
            .values()
            .find(|s| s.name == "local")
            .unwrap()
            .from_datastore
    );
    // The same again: nothing changes. Gone from the datastore: removed; the local one stays.
    assert!(!st.sync_cluster_services(vec![nginx(Some("198.19.97.0"))]).0);
    assert!(st.sync_cluster_services(vec![]).0);
    let names: Vec<&str> = st.services.values().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["local"]);
}

#[test]
fn datastore_namespaces_sync() {
    let mut st = state();
    let ns = |name: &str| NamespaceRecord {
        name: name.into(),
        labels: [("team".to_string(), "a".to_string())].into(),
        created_unix: 1,
        from_datastore: false,
    };
    let (changed, skipped) = st.sync_cluster_namespaces(vec![ns("team-a"), ns("Bad_Name")]);
    assert!(changed);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let a = &st.namespaces["team-a"];
    assert!(a.from_datastore);
    assert_eq!(a.labels["kubernetes.io/metadata.name"], "team-a");
    assert!(!st.sync_cluster_namespaces(vec![ns("team-a")]).0);
    assert!(st.sync_cluster_namespaces(vec![]).0);
    assert!(st.namespaces.is_empty());
}
