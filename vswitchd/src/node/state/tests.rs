//! The node state without root: allocation, validation, rollback and the table snapshot.

use super::*;

const NETNS: &str = "/var/run/netns/test";

/// A node `node1` owning `cidr`, underlay 198.18.255.1, service CIDR 198.19.0.0/16.
fn state(cidr: &str) -> NodeState {
    let mut cfg = NodeConfig::for_subnet(crate::checked::cidr("cidr", cidr).unwrap(), 1450);
    cfg.service_cidr = Some(crate::checked::cidr("cidr", "198.19.0.0/16").unwrap());
    NodeState::new(
        cfg,
        "node1".into(),
        Some("198.18.255.1".parse().unwrap()),
        None,
    )
}

fn spec(name: &str, ip: Option<&str>) -> PortSpec {
    PortSpec {
        name: name.into(),
        namespace: "default".into(),
        netns: NETNS.into(),
        ip: ip.map(str::to_string),
        mac: None,
        // One interface per port, so that ports do not collide on (netns, ifname).
        ifname: format!("eth-{name}"),
        labels: BTreeMap::new(),
    }
}

/// Validates and adds a port as `port_add` does; its address.
fn add(st: &mut NodeState, spec: PortSpec) -> Result<Ipv4Addr, Reject> {
    let key = st.check_port_spec(&spec)?;
    let new = st.plan_port(spec, NETNS.into(), None)?;
    let id = PortId::new(st.alloc_id());
    let _ = st.add_port(new, id, None);
    Ok(st.ports[&key].rec.ip)
}

fn key(name: &str) -> PortKey {
    PortKey {
        name: name.into(),
        namespace: "default".into(),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn peer_spec(node: &str, underlay: &str, cidr: &str) -> PeerSpec {
    PeerSpec {
        node: node.into(),
        underlay: underlay.into(),
        pod_cidr: cidr.into(),
        vtep_mac: None,
    }
}

fn add_peer(st: &mut NodeState, spec: PeerSpec) -> Result<(), Reject> {
    let rec = st.check_peer(&spec)?;
    let peer = st.peer_from_record(rec)?;
    let _ = st.set_peer(peer);
    Ok(())
}

/// A rejection's kind, field and message.
type Why = (ErrorKind, Option<&'static str>, String);

/// The rejection's (kind, field, message).
fn why(r: Reject) -> Why {
    (r.kind, r.field, r.msg)
}

#[test]
fn allocation_goes_round_robin_and_reuses_a_freed_address_last() {
    let mut st = state("198.18.1.0/29");
    // .0 network, .1 gateway, .7 broadcast: .2 to .6 are handed out.
    assert_eq!(add(&mut st, spec("a", None)).unwrap(), ip("198.18.1.2"));
    assert_eq!(add(&mut st, spec("b", None)).unwrap(), ip("198.18.1.3"));
    let _ = st.remove_port(&key("a")).unwrap();
    // .2 is free again, but the cursor is at .3.
    assert_eq!(add(&mut st, spec("c", None)).unwrap(), ip("198.18.1.4"));
    // A given address does not move the cursor.
    assert_eq!(
        add(&mut st, spec("d", Some("198.18.1.6/29"))).unwrap(),
        ip("198.18.1.6")
    );
    assert_eq!(add(&mut st, spec("e", None)).unwrap(), ip("198.18.1.5"));
    // Past the end (.6 taken), the allocator wraps around to the freed .2.
    assert_eq!(add(&mut st, spec("f", None)).unwrap(), ip("198.18.1.2"));
    assert_eq!(st.persisted().last_allocated, Some(ip("198.18.1.2")));
}

#[test]
fn allocation_resumes_from_the_persisted_cursor() {
    let mut cfg =
        NodeConfig::for_subnet(crate::checked::cidr("cidr", "198.18.1.0/24").unwrap(), 1450);
    cfg.service_cidr = None;
    let mut st = NodeState::new(cfg, "node1".into(), None, Some(ip("198.18.1.9")));
    assert_eq!(add(&mut st, spec("a", None)).unwrap(), ip("198.18.1.10"));
}

#[test]
fn an_exhausted_subnet_is_refused_naming_the_ip() {
    let mut st = state("198.18.1.0/29");
    for n in ["a", "b", "c", "d", "e"] {
        add(&mut st, spec(n, None)).unwrap();
    }
    let before = st.persisted();
    let r = add(&mut st, spec("f", None)).unwrap_err();
    assert_eq!(
        why(r),
        (
            ErrorKind::Exhausted,
            Some("ip"),
            "no free address left in 198.18.1.0/29".to_string()
        )
    );
    assert_eq!(st.persisted(), before, "a refused request changes nothing");
    // Freeing one makes it the next one handed out.
    let _ = st.remove_port(&key("c")).unwrap();
    assert_eq!(add(&mut st, spec("f", None)).unwrap(), ip("198.18.1.4"));
}

#[test]
fn port_requests_are_refused_naming_the_field() {
    let mut st = state("198.18.1.0/24");
    add(&mut st, spec("a", Some("198.18.1.5/24"))).unwrap();
    let invalid = |field: &'static str, msg: &str| (ErrorKind::Invalid, Some(field), msg.into());
    let cases: Vec<(PortSpec, Why)> = vec![
        (
            spec("a", None),
            (
                ErrorKind::Exists,
                Some("name"),
                "port default/a already exists".into(),
            ),
        ),
        (
            spec("b", Some("198.18.1.5")),
            invalid("ip", "`198.18.1.5` must be ADDR/PLEN, e.g. 198.18.1.5/24"),
        ),
        (
            spec("b", Some("198.18.1.x/24")),
            invalid("ip", "`198.18.1.x` is not an IPv4 address"),
        ),
        (
            spec("b", Some("198.18.1.6/33")),
            invalid("ip", "`33` is not a prefix length (0-32)"),
        ),
        (
            spec("b", Some("198.18.1.6/16")),
            invalid(
                "ip",
                "prefix length /16 differs from the node subnet 198.18.1.0/24",
            ),
        ),
        (
            spec("b", Some("198.18.2.6/24")),
            invalid(
                "ip",
                "198.18.2.6 is outside this node's subnet 198.18.1.0/24",
            ),
        ),
        (
            spec("b", Some("198.18.1.1/24")),
            invalid(
                "ip",
                "198.18.1.1 is reserved (network, gateway or broadcast address)",
            ),
        ),
        (
            spec("b", Some("198.18.1.255/24")),
            invalid(
                "ip",
                "198.18.1.255 is reserved (network, gateway or broadcast address)",
            ),
        ),
        (
            spec("b", Some("198.18.1.5/24")),
            invalid("ip", "198.18.1.5 is already used by port default/a"),
        ),
        (
            PortSpec {
                ifname: "eth-a".into(),
                ..spec("b", None)
            },
            invalid(
                "netns",
                &format!("eth-a in {NETNS} already belongs to port default/a"),
            ),
        ),
        (
            PortSpec {
                mac: Some("0a:58:c6:12:01:05".into()),
                ..spec("b", None)
            },
            invalid("mac", "0a:58:c6:12:01:05 is already in use on this node"),
        ),
    ];
    let before = st.persisted();
    for (spec, want) in cases {
        let what = format!("{spec:?}");
        let got = add(&mut st, spec).expect_err(&what);
        assert_eq!(why(got), want, "{what}");
    }
    assert_eq!(st.persisted(), before, "refused requests change nothing");
    // The router MAC (from the gateway) is never a pod's.
    let router = Mac::from_ipv4(ip("198.18.1.1")).to_string();
    let r = add(
        &mut st,
        PortSpec {
            mac: Some(router.clone()),
            ..spec("b", None)
        },
    )
    .unwrap_err();
    assert_eq!(r.field, Some("mac"), "{r:?}");
    assert_eq!(r.msg, format!("{router} is already in use on this node"));
    // Names and labels are checked before anything else, each naming its field.
    for (spec, field) in [
        (spec("Bad_Name", None), "name"),
        (
            PortSpec {
                namespace: String::new(),
                ..spec("b", None)
            },
            "namespace",
        ),
        (
            PortSpec {
                ifname: "an-interface-name-too-long".into(),
                ..spec("b", None)
            },
            "ifname",
        ),
        (
            PortSpec {
                labels: [("bad key!".to_string(), "v".to_string())].into(),
                ..spec("b", None)
            },
            "label",
        ),
    ] {
        let r = st.check_port_spec(&spec).unwrap_err();
        assert_eq!(
            (r.kind, r.field),
            (ErrorKind::Invalid, Some(field)),
            "{r:?}"
        );
    }
}

#[test]
fn peer_requests_are_refused_naming_the_field() {
    let mut st = state("198.18.1.0/24");
    add_peer(&mut st, peer_spec("node2", "198.18.255.2", "198.18.2.0/24")).unwrap();
    let cases = [
        (
            peer_spec("node1", "198.18.255.3", "198.18.3.0/24"),
            "node",
            "a node cannot be its own peer",
        ),
        (
            peer_spec("node3", "nowhere", "198.18.3.0/24"),
            "underlay",
            "`nowhere` is not an IPv4 address",
        ),
        (
            peer_spec("node3", "198.18.255.1", "198.18.3.0/24"),
            "underlay",
            "198.18.255.1 is this node's own underlay",
        ),
        (
            peer_spec("node3", "198.18.255.3", "198.18.1.128/25"),
            "pod_cidr",
            "198.18.1.128/25 overlaps this node's subnet 198.18.1.0/24",
        ),
        (
            peer_spec("node3", "198.18.255.3", "198.19.1.0/24"),
            "pod_cidr",
            "198.19.1.0/24 overlaps the service CIDR 198.19.0.0/16",
        ),
        (
            peer_spec("node3", "198.18.255.3", "198.18.2.0/25"),
            "pod_cidr",
            "198.18.2.0/25 overlaps 198.18.2.0/24 of peer node2",
        ),
        (
            peer_spec("node3", "198.18.255.2", "198.18.3.0/24"),
            "underlay",
            "198.18.255.2 is already peer node2's underlay",
        ),
    ];
    let before = st.persisted();
    for (spec, field, msg) in cases {
        let r = st.check_peer(&spec).unwrap_err();
        assert_eq!(
            why(r),
            (ErrorKind::Invalid, Some(field), msg.to_string()),
            "{spec:?}"
        );
    }
    assert_eq!(st.persisted(), before);
    // The same peer again is a replacement, not an overlap with itself.
    add_peer(&mut st, peer_spec("node2", "198.18.255.4", "198.18.2.0/24")).unwrap();
    assert_eq!(st.peers["node2"].rec.underlay, ip("198.18.255.4"));
    let r = st.remove_peer("node9").err().expect("refused");
    assert_eq!(
        why(r),
        (
            ErrorKind::NotFound,
            Some("node"),
            "peer node9 does not exist".to_string()
        )
    );
}

#[test]
fn rollback_leaves_the_state_as_it_was() {
    let mut st = state("198.18.1.0/24");
    add(&mut st, spec("a", None)).unwrap();
    add_peer(&mut st, peer_spec("node2", "198.18.255.2", "198.18.2.0/24")).unwrap();
    let before = st.persisted();

    // An added port, with the cursor it moved.
    let new = st.plan_port(spec("b", None), NETNS.into(), None).unwrap();
    let id = PortId::new(st.alloc_id());
    let undo = st.add_port(new, id, None);
    assert_ne!(st.persisted(), before);
    let removed = st.rollback(undo).expect("the added port comes back");
    assert_eq!(removed.rec.name, "b");
    assert_eq!(st.persisted(), before);
    // The cursor went back too: the same address is handed out again.
    assert_eq!(add(&mut st, spec("b", None)).unwrap(), ip("198.18.1.3"));
    let _ = st.remove_port(&key("b")).unwrap();
    let before = st.persisted();

    // A removed port, with its counters and attachment.
    let counters = st.ports[&key("a")].counters.clone();
    let undo = st.remove_port(&key("a")).unwrap();
    assert_eq!(undo.removed_port().unwrap().rec.name, "a");
    assert!(st.ports.is_empty());
    assert!(st.rollback(undo).is_none());
    assert_eq!(st.persisted(), before);
    assert!(Arc::ptr_eq(&st.ports[&key("a")].counters, &counters));
    assert_eq!(st.ports[&key("a")].status, PortStatus::Running);
    let r = st.remove_port(&key("zz")).err().expect("refused");
    assert_eq!(
        why(r),
        (
            ErrorKind::NotFound,
            Some("name"),
            "port default/zz does not exist".to_string()
        )
    );

    // A replaced peer comes back whole; a new one goes.
    let old_id = st.peers["node2"].id;
    let rec = st
        .check_peer(&peer_spec("node2", "198.18.255.9", "198.18.9.0/24"))
        .unwrap();
    let peer = st.peer_from_record(rec).unwrap();
    let undo = st.set_peer(peer);
    assert_eq!(st.peers["node2"].rec.underlay, ip("198.18.255.9"));
    let _ = st.rollback(undo);
    assert_eq!(st.persisted(), before);
    assert_eq!(st.peers["node2"].id, old_id);
    let rec = st
        .check_peer(&peer_spec("node3", "198.18.255.3", "198.18.3.0/24"))
        .unwrap();
    let peer = st.peer_from_record(rec).unwrap();
    let undo = st.set_peer(peer);
    let _ = st.rollback(undo);
    assert_eq!(st.persisted(), before);
    let undo = st.remove_peer("node2").unwrap();
    assert!(st.peers.is_empty());
    let _ = st.rollback(undo);
    assert_eq!(st.persisted(), before);
    assert_eq!(st.peers["node2"].id, old_id);

    // A re-attached port goes back to detached, with its old record.
    let mut rec = st.ports[&key("a")].rec.clone();
    rec.name = "c".into();
    rec.ip = ip("198.18.1.20");
    rec.mac = "0a:58:c6:12:01:14".into();
    rec.ifname = "eth-c".into();
    st.ports.insert(key("c"), Port::detached(rec));
    let before = st.persisted();
    let mut rec = st.ports[&key("c")].rec.clone();
    rec.netns = "/var/run/netns/elsewhere".into();
    let id = PortId::new(st.alloc_id());
    let undo = st.attach_port(&key("c"), rec, id, Some((7, 42))).unwrap();
    assert_eq!(st.ports[&key("c")].status, PortStatus::Running);
    // The namespace it was attached in is watched from now on (`lost.rs`).
    assert_eq!(st.ports[&key("c")].netns_id, Some((7, 42)));
    let _ = st.rollback(undo);
    assert_eq!(st.persisted(), before);
    let c = &st.ports[&key("c")];
    assert_eq!(
        (c.id, c.status, c.netns_id),
        (None, PortStatus::Detached, None)
    );
    assert!(st
        .attach_port(&key("zz"), c.rec.clone(), PortId::new(99), None)
        .is_none());
}

#[test]
fn the_snapshot_holds_the_attached_ports_and_every_peer() {
    let mut st = state("198.18.1.0/24");
    add(&mut st, spec("a", None)).unwrap();
    add(&mut st, spec("b", None)).unwrap();
    add_peer(&mut st, peer_spec("node2", "198.18.255.2", "198.18.2.0/24")).unwrap();
    // A port that could not be re-attached is not in the tables.
    let mut rec = st.ports[&key("a")].rec.clone();
    rec.name = "c".into();
    rec.ip = ip("198.18.1.20");
    rec.mac = "0a:58:c6:12:01:14".into();
    rec.ifname = "eth-c".into();
    st.ports.insert(key("c"), Port::detached(rec));

    let t = st.tables(Vec::new(), Vec::new());
    let mut ports: Vec<(PortId, Ipv4Addr, Mac)> = t.ports().map(|p| (p.id, p.ip, p.mac)).collect();
    ports.sort();
    let want: Vec<(PortId, Ipv4Addr, Mac)> = [("a", "198.18.1.2"), ("b", "198.18.1.3")]
        .iter()
        .map(|(n, a)| {
            let p = &st.ports[&key(n)];
            (p.id.unwrap(), ip(a), Mac::from_ipv4(ip(a)))
        })
        .collect();
    assert_eq!(ports, want);
    // The counters are the ports' own, shared with the snapshot.
    for e in t.ports() {
        let p = st.ports.values().find(|p| p.id == Some(e.id)).unwrap();
        assert!(Arc::ptr_eq(&p.counters, &e.counters));
    }
    let peers = t.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].underlay, ip("198.18.255.2"));
    assert_eq!(
        peers[0].pod_cidr,
        crate::checked::cidr("cidr", "198.18.2.0/24").unwrap()
    );
    assert_eq!(peers[0].vtep_mac, Mac::from_ipv4(ip("198.18.2.0")));
    assert_eq!(peers[0].id, st.peers["node2"].id);
    // Ports and peers share one id space.
    assert!(ports.iter().all(|(id, _, _)| id.get() != peers[0].id.get()));
}

#[test]
fn cni_attachments_are_found_and_collected() {
    let mut st = state("198.18.1.0/24");
    for (name, cid) in [("a", Some("c1")), ("b", Some("c2")), ("op", None)] {
        let s = spec(name, None);
        st.check_port_spec(&s).unwrap();
        let new = st
            .plan_port(s, NETNS.into(), cid.map(str::to_string))
            .unwrap();
        let id = PortId::new(st.alloc_id());
        let _ = st.add_port(new, id, None);
    }
    assert_eq!(st.find_cni("c1", "eth-a"), Some(key("a")));
    assert_eq!(st.find_cni("c1", "eth-b"), None);
    let b_id = st.ports[&key("b")].id.unwrap();
    assert_eq!(st.port_by_id(b_id), Some(key("b")));
    assert_eq!(st.port_by_id(PortId::new(999)), None);
    let keep: BTreeSet<(String, String)> = [("c1".to_string(), "eth-a".to_string())].into();
    // The operator's port is not the runtime's to collect.
    assert_eq!(st.stale_cni(&keep), vec![key("b")]);
}

#[test]
fn a_cni_add_needs_a_container_id_and_an_interface_of_the_plugin_s_shape() {
    let attach = |id: &str, ifname: &str| CniAttach {
        container_id: id.into(),
        ifname: ifname.into(),
        netns: NETNS.into(),
        pod_name: None,
        pod_namespace: None,
    };
    for id in ["c1", "0123abcdef", "k8s_POD.x-1"] {
        assert_eq!(check_cni_attach(&attach(id, "eth0")), Ok(()), "{id}");
    }
    assert_eq!(
        why(check_cni_attach(&attach("", "eth0")).unwrap_err()),
        (
            ErrorKind::Invalid,
            Some("container_id"),
            "CNI_CONTAINERID is empty".to_string()
        )
    );
    for bad in ["-c1", "c/1", "../x", "c 1", "c1\n"] {
        let want = validate::container_id("container_id", bad).unwrap_err();
        assert_eq!(
            why(check_cni_attach(&attach(bad, "eth0")).unwrap_err()),
            (ErrorKind::Invalid, Some("container_id"), want.message),
            "{bad:?}"
        );
    }
    let want = validate::ifname("ifname", "a/b").unwrap_err();
    assert_eq!(
        why(check_cni_attach(&attach("c1", "a/b")).unwrap_err()),
        (ErrorKind::Invalid, Some("ifname"), want.message)
    );
}

#[test]
fn datastore_peers_are_persisted_with_their_source() {
    let mut st = state("198.18.1.0/24");
    add_peer(&mut st, peer_spec("node2", "198.18.255.2", "198.18.2.0/24")).unwrap();
    let mut rec = st
        .check_peer(&peer_spec("198.18.3.0-24", "198.18.255.3", "198.18.3.0/24"))
        .unwrap();
    rec.source = PeerSource::Datastore;
    let peer = st.peer_from_record(rec).unwrap();
    let _ = st.set_peer(peer);
    assert_eq!(st.tables(vec![], vec![]).peers().len(), 2);
    let saved: Vec<(String, PeerSource)> = st
        .persisted()
        .peers
        .into_iter()
        .map(|p| (p.node, p.source))
        .collect();
    assert_eq!(
        saved,
        [
            ("198.18.3.0-24".to_string(), PeerSource::Datastore),
            ("node2".to_string(), PeerSource::Manual)
        ]
    );
    // A manual peer's record is written as before (no `source`), and read back as manual.
    let json = serde_json::to_value(&st.peers["node2"].rec).unwrap();
    assert_eq!(json.get("source"), None);
    let json = serde_json::to_value(&st.peers["198.18.3.0-24"].rec).unwrap();
    assert_eq!(json["source"], "datastore");
    // The datastore's diff compares peers as specs: the derived VTEP MAC is filled in.
    let spec = st.peers["198.18.3.0-24"].spec();
    assert_eq!(spec.vtep_mac.as_deref(), Some("0a:58:c6:12:03:00"));
    assert_eq!(spec.pod_cidr, "198.18.3.0/24");
}
