//! Unit tests of the datastore's keys, values and decisions (no etcd).

use super::*;

fn cidr(s: &str) -> Ipv4Cidr {
    crate::checked::cidr("t", s).unwrap()
}

fn net() -> Network {
    Network {
        cidr: cidr("198.18.0.0/16"),
        subnet_len: 24,
        vni: 1,
        port: 4789,
    }
}

/// A lease exactly as flanneld (v0.2x, vxlan backend) writes it, from its documentation.
const FLANNELD_LEASE: &str = r#"{"PublicIP":"198.19.0.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:52:fb:99:b1:f2"}}"#;

#[test]
fn subnet_keys_both_ways() {
    let s = cidr("198.18.1.0/24");
    assert_eq!(subnet_name(s), "198.18.1.0-24");
    assert_eq!(
        subnet_key("/coreos.com/network", s),
        "/coreos.com/network/subnets/198.18.1.0-24"
    );
    assert_eq!(parse_subnet_name("198.18.1.0-24"), Some(s));
    assert_eq!(
        parse_subnet_name("198.18.0.0-16"),
        Some(cidr("198.18.0.0/16"))
    );
    for bad in [
        "198.18.1.0/24",
        "198.18.1.5-24",
        "198.18.1.0-33",
        "198.18.1.0-",
        "-24",
        "198.18.1.0-024",
        "198.18.1.0-24-1",
        "x",
    ] {
        assert_eq!(parse_subnet_name(bad), None, "{bad}");
    }
    assert_eq!(config_key("/p"), "/p/config");
    assert_eq!(nodes_dir("/p"), "/p/vswitch/nodes/");
}

#[test]
fn lease_value_is_flannels_shape() {
    let mac = crate::checked::mac("m", "02:52:fb:99:b1:f2").unwrap();
    let v = lease_value("198.19.0.9".parse().unwrap(), 1, mac);
    assert_eq!(v, FLANNELD_LEASE);
}

#[test]
fn flanneld_lease_parses_and_becomes_a_peer() {
    let l = parse_lease("198.18.9.0-24", FLANNELD_LEASE.as_bytes()).unwrap();
    assert_eq!(l.public_ip, Ipv4Addr::new(198, 19, 0, 9));
    assert_eq!(l.vni, Some(1));
    assert_eq!(l.backend_type, "vxlan");
    let own = cidr("198.18.1.0/24");
    assert_eq!(
        classify("198.18.9.0-24", FLANNELD_LEASE.as_bytes(), own, 1),
        LeaseUse::Peer(PeerSpec {
            node: "198.18.9.0-24".into(),
            underlay: "198.19.0.9".into(),
            pod_cidr: "198.18.9.0/24".into(),
            vtep_mac: Some("02:52:fb:99:b1:f2".into()),
        })
    );
    // An older flanneld writes no VNI and no PublicIPv6: still a peer.
    let old = br#"{"PublicIP":"198.19.0.9","BackendType":"vxlan","BackendData":{"VtepMAC":"02:52:fb:99:b1:f2"}}"#;
    assert!(matches!(
        classify("198.18.9.0-24", old, own, 1),
        LeaseUse::Peer(_)
    ));
    assert_eq!(
        classify("198.18.1.0-24", FLANNELD_LEASE.as_bytes(), own, 1),
        LeaseUse::Own
    );
}

#[test]
fn bad_leases_are_skipped_with_a_reason() {
    let own = cidr("198.18.1.0/24");
    for (name, v, why) in [
        ("198.18.2.0-24", &b"{not json"[..], "bad lease JSON"),
        ("198.18.2.0-24", b"[]", "bad lease JSON"),
        ("198.18.2.0-24", br#"{"PublicIP":"x"}"#, "PublicIP"),
        ("198.18.2.0/24", FLANNELD_LEASE.as_bytes(), "A.B.C.D-LEN"),
        (
            "198.18.2.0-24",
            br#"{"PublicIP":"198.19.0.2","BackendType":"host-gw"}"#,
            "host-gw",
        ),
        (
            "198.18.2.0-24",
            br#"{"PublicIP":"198.19.0.2","BackendType":"vxlan","BackendData":{"VNI":7,"VtepMAC":"02:52:fb:99:b1:f2"}}"#,
            "VNI 7",
        ),
        (
            "198.18.2.0-24",
            br#"{"PublicIP":"198.19.0.2","BackendType":"vxlan","BackendData":{"VNI":1}}"#,
            "VtepMAC",
        ),
        (
            "198.18.2.0-24",
            br#"{"PublicIP":"198.19.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"ff:ff:ff:ff:ff:ff"}}"#,
            "VtepMAC",
        ),
        (
            "198.18.2.0-24",
            br#"{"PublicIP":"198.19.0.2","BackendType":"vxlan","BackendData":"x"}"#,
            "BackendData",
        ),
    ] {
        match classify(name, v, own, 1) {
            LeaseUse::Skip(e) => assert!(e.contains(why), "{name} {v:?}: {e}"),
            other => panic!("{name} {v:?}: {other:?}"),
        }
    }
}

#[test]
fn config_created_from_flags_and_checked_field_by_field() {
    let n = net();
    let json = serde_json::to_string(&n.config()).unwrap();
    assert_eq!(
        json,
        r#"{"Network":"198.18.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":4789}}"#
    );
    assert_eq!(n.check(json.as_bytes()), Ok(()));
    // flannel's own minimal config: defaults SubnetLen 24, VNI 1, but Port 8472.
    let e = n
        .check(br#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#)
        .unwrap_err();
    assert!(
        e.contains("Backend.Port is 8472") && e.contains("--vxlan-port"),
        "{e}"
    );
    for (cfg, field) in [
        (r#"{"Network":"198.19.0.0/16"}"#, "Network"),
        (r#"{"Network":"198.18.0.0/16","SubnetLen":26}"#, "SubnetLen"),
        (r#"{"Network":"198.18.0.0/16"}"#, "Backend.Type"),
        (
            r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","VNI":2,"Port":4789}}"#,
            "Backend.VNI",
        ),
        (r#"{"Network":"x"}"#, "Network"),
        ("{", "does not parse"),
    ] {
        let e = n.check(cfg.as_bytes()).unwrap_err();
        assert!(e.contains(field), "{cfg}: {e}");
    }
}

fn taken(entries: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<Ipv4Addr>> {
    entries
        .iter()
        .map(|(k, ip)| (k.to_string(), ip.map(|s| s.parse().unwrap())))
        .collect()
}

#[test]
fn a_new_node_gets_the_lowest_free_subnet_after_the_first() {
    let me: Ipv4Addr = "198.19.0.3".parse().unwrap();
    let n = net();
    assert_eq!(
        choose_subnet(&n, &taken(&[]), me, None, None),
        Ok(cidr("198.18.1.0/24"))
    );
    let t = taken(&[
        ("198.18.1.0-24", Some("198.19.0.1")),
        ("198.18.2.0-24", None), // a value that does not parse still holds its subnet
        ("198.18.4.0-24", Some("198.19.0.4")),
    ]);
    assert_eq!(
        choose_subnet(&n, &t, me, None, None),
        Ok(cidr("198.18.3.0/24"))
    );
}

#[test]
fn a_restarted_node_finds_its_own_subnet_again() {
    let me: Ipv4Addr = "198.19.0.3".parse().unwrap();
    let n = net();
    let t = taken(&[
        ("198.18.1.0-24", Some("198.19.0.1")),
        ("198.18.7.0-24", Some("198.19.0.3")),
    ]);
    assert_eq!(
        choose_subnet(&n, &t, me, None, None),
        Ok(cidr("198.18.7.0/24"))
    );
    // Its lease expired: the subnet saved in the state directory, when still free.
    let t = taken(&[("198.18.1.0-24", Some("198.19.0.1"))]);
    let saved = Some(cidr("198.18.7.0/24"));
    assert_eq!(
        choose_subnet(&n, &t, me, None, saved),
        Ok(cidr("198.18.7.0/24"))
    );
    // ... but not when another node took it meanwhile, nor when outside the network.
    let t = taken(&[("198.18.7.0-24", Some("198.19.0.9"))]);
    assert_eq!(
        choose_subnet(&n, &t, me, None, saved),
        Ok(cidr("198.18.1.0/24"))
    );
    let outside = Some(cidr("198.17.7.0/24"));
    assert_eq!(
        choose_subnet(&n, &t, me, None, outside),
        Ok(cidr("198.18.1.0/24"))
    );
}

#[test]
fn a_wanted_subnet_is_taken_unless_another_node_holds_it() {
    let me: Ipv4Addr = "198.19.0.3".parse().unwrap();
    let n = net();
    let w = Some(cidr("198.18.5.0/24"));
    assert_eq!(
        choose_subnet(&n, &taken(&[]), me, w, None),
        w.ok_or(NoSubnet::Full(n.cidr))
    );
    let mine = taken(&[("198.18.5.0-24", Some("198.19.0.3"))]);
    assert_eq!(
        choose_subnet(&n, &mine, me, w, None),
        Ok(cidr("198.18.5.0/24"))
    );
    let theirs = taken(&[("198.18.5.0-24", Some("198.19.0.9"))]);
    let e = choose_subnet(&n, &theirs, me, w, None).unwrap_err();
    assert_eq!(e.to_string(), "198.18.5.0/24 is leased by 198.19.0.9");
    let e = choose_subnet(&n, &taken(&[]), me, Some(cidr("198.18.5.0/25")), None).unwrap_err();
    assert!(matches!(e, NoSubnet::NotInNetwork(_)), "{e}");
}

#[test]
fn a_full_cluster_cidr_is_an_error() {
    let n = Network {
        cidr: cidr("198.18.0.0/22"),
        ..net()
    };
    let me: Ipv4Addr = "198.19.0.9".parse().unwrap();
    let t = taken(&[
        ("198.18.1.0-24", Some("198.19.0.1")),
        ("198.18.2.0-24", Some("198.19.0.2")),
    ]);
    assert_eq!(
        choose_subnet(&n, &t, me, None, None),
        Ok(cidr("198.18.3.0/24"))
    );
    let t = taken(&[
        ("198.18.1.0-24", Some("198.19.0.1")),
        ("198.18.2.0-24", Some("198.19.0.2")),
        ("198.18.3.0-24", Some("198.19.0.3")),
    ]);
    let e = choose_subnet(&n, &t, me, None, None).unwrap_err();
    assert_eq!(e, NoSubnet::Full(n.cidr));
    assert_eq!(
        e.to_string(),
        "the cluster CIDR 198.18.0.0/22 has no free subnet left"
    );
    assert_eq!(default_subnet_len(cidr("198.18.0.0/22")), 24);
    assert_eq!(default_subnet_len(cidr("198.18.0.0/26")), 28);
}

fn spec(name: &str, underlay: &str) -> PeerSpec {
    let s = parse_subnet_name(name).unwrap();
    PeerSpec {
        node: name.into(),
        underlay: underlay.into(),
        pod_cidr: s.to_string(),
        vtep_mac: Some(Mac::from_ipv4(s.network()).to_string()),
    }
}

#[test]
fn diff_of_listed_leases_against_current_peers() {
    let desired: BTreeMap<String, PeerSpec> = [
        ("198.18.2.0-24", "198.19.0.2"),
        ("198.18.3.0-24", "198.19.0.33"),
        ("198.18.5.0-24", "198.19.0.5"),
    ]
    .iter()
    .map(|(n, u)| (n.to_string(), spec(n, u)))
    .collect();
    let current: BTreeMap<String, PeerSpec> = [
        ("198.18.2.0-24", "198.19.0.2"),
        ("198.18.3.0-24", "198.19.0.3"),
        ("198.18.4.0-24", "198.19.0.4"),
    ]
    .iter()
    .map(|(n, u)| (n.to_string(), spec(n, u)))
    .collect();
    let d = diff(&desired, &current);
    assert_eq!(
        d.set,
        vec![
            spec("198.18.3.0-24", "198.19.0.33"),
            spec("198.18.5.0-24", "198.19.0.5")
        ]
    );
    assert_eq!(d.del, vec!["198.18.4.0-24".to_string()]);
    assert_eq!(diff(&desired, &desired), PeerDiff::default());
}

#[test]
fn cluster_nodes_ready_when_the_record_exists() {
    let rec = |name: &str, subnet: &str| {
        serde_json::to_vec(&NodeRecord {
            name: name.into(),
            subnet: subnet.into(),
            underlay: "198.19.0.1".into(),
            vtep_mac: "0a:58:c6:12:01:00".into(),
            start_time: 1_700_000_000,
        })
        .unwrap()
    };
    let lease = |ip: &str| {
        lease_value(
            ip.parse().unwrap(),
            1,
            crate::checked::mac("m", "0a:58:c6:12:01:00").unwrap(),
        )
        .into_bytes()
    };
    let leases = vec![
        ("198.18.1.0-24".to_string(), lease("198.19.0.1")),
        ("198.18.2.0-24".to_string(), lease("198.19.0.2")),
        ("198.18.3.0-24".to_string(), b"garbage".to_vec()),
    ];
    let nodes = cluster_nodes(&leases, &[rec("node1", "198.18.1.0/24"), b"{".to_vec()]);
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert_eq!(nodes[0].name, "198.18.2.0-24");
    assert_eq!(nodes[0].status, "NotReady");
    assert_eq!(nodes[0].underlay, "198.19.0.2");
    assert_eq!(nodes[1].name, "node1");
    assert_eq!(nodes[1].status, "Ready");
    assert_eq!(nodes[1].subnet, "198.18.1.0/24");
    assert_eq!(nodes[1].started_at, Some(1_700_000_000));
}
