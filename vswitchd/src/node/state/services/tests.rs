//! Services in the node state without root: a `service add` refused naming the field, the
//! endpoints (ready or not, explicit or by selector), the tables, and rollback.

use super::super::{Port, Undo};
use super::*;
use crate::state::PortRecord;
use std::collections::BTreeMap;
use vswitch_datapath::NodeConfig;
use vswitch_proto::{ErrorKind, PeerSpec, PortSpec};

const NETNS: &str = "/var/run/netns/test";

/// Node `node1` owning 198.18.1.0/24, service CIDR 198.19.96.0/20, cluster DNS 198.19.96.10,
/// with a peer `node2` owning 198.18.2.0/24.
fn state() -> NodeState {
    let mut cfg = NodeConfig::for_subnet(
        crate::checked::cidr("pod_cidr", "198.18.1.0/24").unwrap(),
        1450,
    );
    cfg.service_cidr = Some(crate::checked::cidr("service_cidr", "198.19.96.0/20").unwrap());
    cfg.dns_ip = Some(ip("198.19.96.10"));
    let mut st = NodeState::new(cfg, "node1".into(), Some(ip("198.18.255.1")), None);
    let rec = st
        .check_peer(&PeerSpec {
            node: "node2".into(),
            underlay: "198.18.255.2".into(),
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

/// Adds a Running pod `name` at `addr` with `labels`, as `port_add` does.
fn pod(st: &mut NodeState, name: &str, addr: &str, labels: &[(&str, &str)]) {
    let spec = PortSpec {
        name: name.into(),
        namespace: "default".into(),
        netns: NETNS.into(),
        ip: Some(format!("{addr}/24")),
        mac: None,
        ifname: format!("eth-{name}"),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    st.check_port_spec(&spec).unwrap();
    let new = st.plan_port(spec, NETNS.into(), None).unwrap();
    let id = vswitch_datapath::PortId::new(st.alloc_id());
    let _ = st.add_port(new, id, None);
}

/// Adds a Detached pod (persisted, not re-attached) `name` at `addr` with `labels`.
fn detached_pod(st: &mut NodeState, name: &str, addr: &str, labels: &[(&str, &str)]) {
    let rec = PortRecord {
        name: name.into(),
        namespace: "default".into(),
        netns: NETNS.into(),
        ifname: format!("eth-{name}"),
        ip: ip(addr),
        prefix_len: 24,
        mac: Mac::from_ipv4(ip(addr)).to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        container_id: None,
        runtime_name: None,
        runtime_namespace: None,
    };
    let port = Port::detached(rec);
    st.ports.insert(port.key(), port);
}

use vswitch_datapath::Mac;

fn svc(name: &str, vip: &str, ports: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        namespace: "default".into(),
        vip: Some(vip.into()),
        ports: ports.iter().map(|p| p.to_string()).collect(),
        selector: BTreeMap::new(),
        endpoints: Vec::new(),
        affinity: None,
    }
}

fn selecting(mut s: ServiceSpec, k: &str, v: &str) -> ServiceSpec {
    s.selector.insert(k.into(), v.into());
    s
}

fn to(mut s: ServiceSpec, endpoints: &[&str]) -> ServiceSpec {
    s.endpoints = endpoints.iter().map(|e| e.to_string()).collect();
    s
}

/// Validates and adds a service as `service add` does.
fn add(st: &mut NodeState, spec: ServiceSpec) -> ServiceKey {
    let rec = st.check_service(spec).unwrap();
    st.add_service(rec).0
}

/// The rejection's (kind, field, message).
fn why(r: Reject) -> (ErrorKind, Option<&'static str>, String) {
    (r.kind, r.field, r.msg)
}

fn ready(st: &NodeState, key: &ServiceKey) -> Vec<String> {
    st.service_info(&st.services[key]).endpoints
}

#[test]
fn a_service_add_is_refused_naming_the_field() {
    let mut st = state();
    pod(&mut st, "web", "198.18.1.5", &[("app", "web")]);
    add(
        &mut st,
        selecting(svc("web", "198.19.96.20", &["80"]), "app", "web"),
    );
    let good = |s: ServiceSpec| selecting(s, "app", "web");
    let invalid = ErrorKind::Invalid;
    let cases: Vec<(ServiceSpec, ErrorKind, &str, String)> = vec![
        (
            good(svc("S_1", "198.19.96.21", &["80"])),
            invalid,
            "name",
            validate::service_name("name", "S_1").unwrap_err().message,
        ),
        (
            {
                let mut s = good(svc("s1", "198.19.96.21", &["80"]));
                s.namespace = "Default".into();
                s
            },
            invalid,
            "namespace",
            validate::dns_label("namespace", "Default")
                .unwrap_err()
                .message,
        ),
        (
            good(svc("web", "198.19.96.21", &["80"])),
            ErrorKind::Exists,
            "name",
            "service default/web already exists (delete it first to change it)".into(),
        ),
        (
            good(svc("s1", "nginx", &["80"])),
            invalid,
            "vip",
            validate::ipv4("vip", "nginx").unwrap_err().message,
        ),
        (
            good(svc("s1", "198.18.1.20", &["80"])),
            invalid,
            "vip",
            "198.18.1.20 is outside the service CIDR 198.19.96.0/20".into(),
        ),
        (
            good(svc("s1", "198.19.111.255", &["80"])),
            invalid,
            "vip",
            "198.19.111.255 is the network or broadcast address of 198.19.96.0/20".into(),
        ),
        (
            good(svc("s1", "198.19.96.10", &["80"])),
            invalid,
            "vip",
            "198.19.96.10 is the cluster DNS address".into(),
        ),
        (
            good(svc("s1", "198.19.96.20", &["80"])),
            ErrorKind::Exists,
            "vip",
            "198.19.96.20 is already the VIP of service default/web".into(),
        ),
        (
            good(svc("s1", "198.19.96.21", &[])),
            invalid,
            "port",
            "a service needs at least one --port".into(),
        ),
        (
            good(svc("s1", "198.19.96.21", &["80/sctp"])),
            invalid,
            "port",
            validate::service_port("80/sctp").unwrap_err().message,
        ),
        (
            good(svc("s1", "198.19.96.21", &["80", "80:8080/tcp"])),
            invalid,
            "port",
            "port 80/tcp is given twice".into(),
        ),
        (
            good(svc("s1", "198.19.96.21", &["http:80", "http:81"])),
            invalid,
            "port",
            "port name `http` is given twice".into(),
        ),
        (
            svc("s1", "198.19.96.21", &["80"]),
            invalid,
            "selector",
            "a service needs a --selector or at least one --endpoint".into(),
        ),
        (
            selecting(svc("s1", "198.19.96.21", &["80"]), "app", "a b"),
            invalid,
            "selector",
            validate::label("selector", "app", "a b")
                .unwrap_err()
                .message,
        ),
        (
            to(svc("s1", "198.19.96.21", &["80"]), &["198.18.1.5:0"]),
            invalid,
            "endpoint",
            validate::endpoint("198.18.1.5:0").unwrap_err().message,
        ),
        (
            to(svc("s1", "198.19.96.21", &["80"]), &["198.18.3.5"]),
            invalid,
            "endpoint",
            "198.18.3.5 is neither in this node's subnet 198.18.1.0/24 nor in a known peer's \
             subnet"
                .into(),
        ),
        (
            to(svc("s1", "198.19.96.21", &["80"]), &["198.18.1.0"]),
            invalid,
            "endpoint",
            "198.18.1.0 is neither in this node's subnet 198.18.1.0/24 nor in a known peer's \
             subnet"
                .into(),
        ),
        (
            to(
                svc("s1", "198.19.96.21", &["80", "443"]),
                &["198.18.2.5:8080"],
            ),
            invalid,
            "endpoint",
            "`198.18.2.5:8080` fixes the endpoint port, which is ambiguous for a service with \
             several port numbers: give the endpoint without a port and set each --port's \
             TARGETPORT"
                .into(),
        ),
        (
            {
                let mut s = good(svc("s1", "198.19.96.21", &["80"]));
                s.affinity = Some("cookie".into());
                s
            },
            invalid,
            "affinity",
            validate::affinity("cookie").unwrap_err().message,
        ),
    ];
    let before = st.persisted();
    for (spec, kind, field, msg) in cases {
        let what = format!("{spec:?}");
        let r = st.check_service(spec).expect_err(&what);
        assert_eq!(why(r), (kind, Some(field), msg), "{what}");
    }
    assert_eq!(st.persisted(), before);
    // One port number with two protocols is two ports; a fixed endpoint port is fine then.
    let rec = st
        .check_service(to(
            svc("dns", "198.19.96.53", &["53/udp", "53/tcp"]),
            &["198.18.2.5:5353"],
        ))
        .unwrap();
    assert_eq!(rec.ports.len(), 2);
    assert_eq!(
        rec.endpoints,
        [EndpointRecord {
            ip: ip("198.18.2.5"),
            port: Some(5353)
        }]
    );
    let r = st
        .remove_service(&ServiceKey {
            name: "nope".into(),
            namespace: "default".into(),
        })
        .err()
        .expect("refused");
    assert_eq!(
        why(r),
        (
            ErrorKind::NotFound,
            Some("name"),
            "service default/nope does not exist".to_string()
        )
    );
}

#[test]
fn endpoints_are_the_ready_explicit_ones_and_the_running_selected_pods() {
    let mut st = state();
    pod(&mut st, "a", "198.18.1.5", &[("app", "web"), ("tier", "x")]);
    pod(&mut st, "b", "198.18.1.6", &[("app", "web")]);
    pod(&mut st, "other", "198.18.1.7", &[("app", "db")]);
    detached_pod(&mut st, "gone", "198.18.1.8", &[("app", "web")]);
    // By selector: Running pods with every selected label; a Detached one is not ready.
    let web = add(
        &mut st,
        selecting(svc("web", "198.19.96.20", &["80"]), "app", "web"),
    );
    assert_eq!(ready(&st, &web), ["198.18.1.5", "198.18.1.6"]);
    let x = add(
        &mut st,
        selecting(
            selecting(svc("x", "198.19.96.21", &["80"]), "app", "web"),
            "tier",
            "x",
        ),
    );
    assert_eq!(ready(&st, &x), ["198.18.1.5"]);
    // Explicit: a Running local pod and a peer's address are ready; a Detached pod, or a
    // local address without a pod, is not. A selected pod listed explicitly without a port
    // is not repeated; with a fixed port it is another endpoint.
    let ex = add(
        &mut st,
        selecting(
            to(
                svc("ex", "198.19.96.22", &["80"]),
                &[
                    "198.18.1.7",
                    "198.18.1.8",
                    "198.18.1.9",
                    "198.18.2.5",
                    "198.18.1.5",
                    "198.18.1.6:8080",
                ],
            ),
            "tier",
            "x",
        ),
    );
    assert_eq!(
        ready(&st, &ex),
        ["198.18.1.5", "198.18.1.6:8080", "198.18.1.7", "198.18.2.5"]
    );
    // The peer leaves: its endpoints are no longer ready; the record keeps them.
    let _ = st.remove_peer("node2").unwrap();
    assert_eq!(
        ready(&st, &ex),
        ["198.18.1.5", "198.18.1.6:8080", "198.18.1.7"]
    );
    assert_eq!(st.services[&ex].endpoints.len(), 6);
    // A pod leaving is no longer an endpoint.
    let _ = st
        .remove_port(&vswitch_proto::PortKey {
            name: "a".into(),
            namespace: "default".into(),
        })
        .unwrap();
    assert_eq!(ready(&st, &web), ["198.18.1.6"]);
    assert!(ready(&st, &x).is_empty());
    let info = st.service_info(&st.services[&web]);
    assert_eq!(
        info.dns_names,
        ["web.default.svc.cluster.local", "web.default", "web"]
    );
    assert_eq!(info.vip, "198.19.96.20");
}

#[test]
fn the_tables_hold_every_service_port_with_its_endpoints() {
    let mut st = state();
    pod(&mut st, "a", "198.18.1.5", &[("app", "web")]);
    pod(&mut st, "b", "198.18.1.6", &[("app", "web")]);
    let mut web = selecting(
        svc("web", "198.19.96.20", &["http:80:8080", "dns:53/udp"]),
        "app",
        "web",
    );
    web.affinity = Some("client-ip:60".into());
    add(&mut st, web);
    add(
        &mut st,
        to(
            svc("far", "198.19.96.30", &["443/udp"]),
            &["198.18.2.5:8443"],
        ),
    );
    // No ready endpoint: the port is installed empty (connections are rejected).
    add(
        &mut st,
        selecting(svc("none", "198.19.96.40", &["80"]), "app", "nobody"),
    );
    let (entries, dns, udp) = st.service_tables();
    let got: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.vip.to_string(),
                e.port,
                e.proto,
                e.endpoints
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>(),
                e.affinity_ms,
            )
        })
        .collect();
    let sa = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        [
            (
                "198.19.96.30".to_string(),
                443,
                L4Proto::Udp,
                sa(&["198.18.2.5:8443"]),
                None
            ),
            ("198.19.96.40".to_string(), 80, L4Proto::Tcp, sa(&[]), None),
            (
                "198.19.96.20".to_string(),
                80,
                L4Proto::Tcp,
                sa(&["198.18.1.5:8080", "198.18.1.6:8080"]),
                Some(60_000)
            ),
            (
                "198.19.96.20".to_string(),
                53,
                L4Proto::Udp,
                sa(&["198.18.1.5:53", "198.18.1.6:53"]),
                Some(60_000)
            ),
        ]
    );
    let names: Vec<_> = dns
        .iter()
        .map(|d| (d.name.as_str(), d.namespace.as_str(), d.vip.to_string()))
        .collect();
    assert_eq!(
        names,
        [
            ("far", "default", "198.19.96.30".to_string()),
            ("none", "default", "198.19.96.40".to_string()),
            ("web", "default", "198.19.96.20".to_string()),
        ]
    );
    let sock = |s: &str| -> SocketAddrV4 { s.parse().unwrap() };
    let want: BTreeSet<UdpBackend> = [
        (ip("198.19.96.30"), 443, sock("198.18.2.5:8443")),
        (ip("198.19.96.20"), 53, sock("198.18.1.5:53")),
        (ip("198.19.96.20"), 53, sock("198.18.1.6:53")),
    ]
    .into();
    assert_eq!(udp, want);
}

#[test]
fn rollback_of_a_service_add_or_del_leaves_the_state_as_it_was() {
    let mut st = state();
    pod(&mut st, "a", "198.18.1.5", &[("app", "web")]);
    add(
        &mut st,
        selecting(svc("web", "198.19.96.20", &["80"]), "app", "web"),
    );
    let tables = |st: &NodeState| {
        let (e, d, u) = st.service_tables();
        (format!("{e:?}"), format!("{d:?}"), u)
    };
    let before = (st.persisted(), tables(&st));

    let rec = st
        .check_service(to(svc("far", "198.19.96.30", &["443"]), &["198.18.2.5"]))
        .unwrap();
    let (key, undo) = st.add_service(rec);
    assert!(matches!(&undo, Undo::ServiceAdded { key: k } if *k == key));
    assert_ne!((st.persisted(), tables(&st)), before);
    assert!(st.rollback(undo).is_none());
    assert_eq!((st.persisted(), tables(&st)), before);
    // Its VIP and name are free again.
    add(
        &mut st,
        to(svc("far", "198.19.96.30", &["443"]), &["198.18.2.5"]),
    );
    let _ = st.remove_service(&key).unwrap();
    assert_eq!((st.persisted(), tables(&st)), before);

    let web = ServiceKey {
        name: "web".into(),
        namespace: "default".into(),
    };
    let undo = st.remove_service(&web).unwrap();
    assert!(st.services.is_empty());
    assert!(st.service_tables().0.is_empty());
    assert!(st.rollback(undo).is_none());
    assert_eq!((st.persisted(), tables(&st)), before);
}

#[test]
fn recovery_keeps_the_persisted_services_that_still_fit() {
    let mut st = state();
    let rec = |name: &str, vip: &str| ServiceRecord {
        name: name.into(),
        namespace: "default".into(),
        vip: ip(vip),
        ports: vec![parse_port("80").unwrap()],
        selector: [("app".to_string(), "web".to_string())].into(),
        endpoints: Vec::new(),
        affinity_seconds: None,
        from_datastore: false,
    };
    let dropped = st.recover_services(vec![
        rec("a", "198.19.96.20"),
        rec("a", "198.19.96.21"),
        rec("b", "198.19.96.10"),
        rec("c", "198.19.200.1"),
        rec("d", "198.19.96.20"),
        rec("e", "198.19.96.22"),
    ]);
    let names: Vec<_> = st.services.keys().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["a", "e"]);
    let dropped: Vec<_> = dropped
        .into_iter()
        .map(|(k, why)| format!("{}: {why}", k.name))
        .collect();
    assert_eq!(
        dropped,
        [
            "a: a duplicate persisted service",
            "b: vip: 198.19.96.10 is the cluster DNS address",
            "c: vip: 198.19.200.1 is outside the service CIDR 198.19.96.0/20",
            "d: vip: 198.19.96.20 is already the VIP of service default/a",
        ]
    );
}

// The accepted and refused specs, endpoints, affinities and names are listed in
// vswitch-proto's validate tests (the implementation these wrappers call).
#[test]
fn wrappers_give_records_and_proto_messages() {
    fn port(name: &str, port: u16, target: u16, proto: &str) -> ServicePortRecord {
        ServicePortRecord {
            name: name.into(),
            port,
            target_port: target,
            protocol: proto.into(),
        }
    }
    assert_eq!(parse_port("80").unwrap(), port("", 80, 80, "tcp"));
    assert_eq!(parse_port("53/UDP").unwrap(), port("", 53, 53, "udp"));
    assert_eq!(
        parse_port("dns-udp:53:5353/udp").unwrap(),
        port("dns-udp", 53, 5353, "udp")
    );
    assert_eq!(
        parse_port("80/sctp").unwrap_err(),
        validate::service_port("80/sctp").unwrap_err().message
    );
    assert_eq!(
        parse_endpoint("198.18.1.5:8080").unwrap(),
        EndpointRecord {
            ip: "198.18.1.5".parse().unwrap(),
            port: Some(8080)
        }
    );
    assert!(parse_endpoint("198.18.1.5:0").is_err());
    assert_eq!(parse_affinity("client-ip").unwrap(), Some(10800));
    assert_eq!(parse_affinity("none").unwrap(), None);
    assert!(parse_affinity("client-ip:86401").is_err());
    assert!(service_name("nginx-service").is_ok());
    assert!(service_name("1nginx").is_err());
    assert!(dns_label("kube-system").is_ok());
    assert!(dns_label("Default").is_err());
}

#[test]
fn dns_names_and_pod_dns() {
    assert_eq!(
        dns_names("nginx-service", "default", "cluster.local"),
        [
            "nginx-service.default.svc.cluster.local",
            "nginx-service.default",
            "nginx-service"
        ]
    );
    assert_eq!(dns_names("db", "prod", "k8s.example").len(), 2);
    let d = pod_dns(ip("198.19.96.10"), "prod", "cluster.local");
    assert_eq!(d.nameservers, ["198.19.96.10"]);
    assert_eq!(
        d.search,
        [
            "prod.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local"
        ]
    );
    assert_eq!(d.options, ["ndots:5"]);
}
