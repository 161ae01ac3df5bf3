//! Unit tests and property tests of the checks: the accepted and refused values the CLI,
//! the daemon and the CNI plugin each tested before the three copies became one.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[test]
fn k8s_and_node_names() {
    assert!(k8s_name("name", "nginx-server").is_ok());
    assert!(k8s_name("name", "a.b-1").is_ok());
    assert!(node_name("node", "node-2.example").is_ok());
    for bad in ["", "Nginx", "-x", "x-", "x y", "a_b"] {
        let e = k8s_name("namespace", bad).unwrap_err();
        assert_eq!(e.field, "namespace", "{bad}");
        assert!(e.message.contains(&format!("`{bad}`")), "{e}");
    }
    assert!(k8s_name("name", &"a".repeat(253)).is_ok());
    assert!(k8s_name("name", &"a".repeat(254)).is_err());
}

/// The names and ids podman, nerdctl and containerd pass map to valid, distinct port names;
/// Kubernetes names map to themselves.
#[test]
fn runtime_names_map_to_port_names() {
    // DNS-1123 names (the kubelet's) are unchanged.
    for same in [
        "web-1",
        "nginx",
        "a.b-1",
        "cni-ab12cd34ef56",
        &"a".repeat(253),
    ] {
        assert_eq!(runtime_port_name(same), same);
    }
    // Fixed: the same name in any process and release (a restart finds the same port);
    // the suffixes are FNV-1a 64 of the original, as computed independently.
    assert_eq!(runtime_port_name("Web_1"), "web-1-24b9b594");
    assert_eq!(runtime_port_name("web_1"), "web-1-65d34e2e");
    assert_eq!(
        runtime_port_name("dazzling_chatterjee"),
        "dazzling-chatterjee-02feebd9"
    );
    let hex64 = "4f1bf1b0f7ad4b6dd2f5c2c8a0e96ae2b3bb0aa3f6f5d0f05b5a3f0d7e4c1a90";
    assert_eq!(
        runtime_port_name(hex64),
        hex64,
        "a 64-hex id is a valid name"
    );
    let names = [
        "Web_1",
        "web_1",
        "WEB_1",
        "web-1",
        "dazzling_chatterjee",
        "Dazzling_Chatterjee",
        "_",
        "-",
        "a_",
        "A",
        "a",
        "x_y.z",
        "x-y.z",
        "ctr_4F1BF1B0F7AD4B6DD2F5C2C8A0E96AE2B3BB0AA3F6F5D0F05B5A3F0D7E4C1A90",
        "nerdctl-Web_1",
        "émile",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        let m = runtime_port_name(n);
        assert!(k8s_name("name", &m).is_ok(), "{n} -> {m}");
        assert_eq!(runtime_port_name(n), m, "{n}: not stable");
        assert!(seen.insert(m.clone()), "{n} -> {m} collides");
    }
    // Long names are cut to fit, with the suffix kept.
    let long = format!("A_{}", "b".repeat(400));
    let m = runtime_port_name(&long);
    assert_eq!(m.len(), MAX_K8S_NAME_LEN, "{m}");
    assert!(k8s_name("name", &m).is_ok(), "{m}");
    assert_ne!(m, runtime_port_name(&format!("a_{}", "b".repeat(400))));
}

#[test]
fn ifnames() {
    for good in ["eth0", "net1", "a", "fifteen-chars-x"] {
        assert!(ifname("ifname", good).is_ok(), "{good}");
    }
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "a:b",
        "a b",
        "a\tb",
        // The kernel takes `%d` as a pattern and picks the name itself: the stored record
        // would not match the interface, which then leaks on delete.
        "eth%d",
        "%",
        "sixteen-chars-xx",
        "averyveryverylongname",
    ] {
        let e = ifname("CNI_IFNAME", bad).unwrap_err();
        assert_eq!(e.field, "CNI_IFNAME", "{bad:?}");
        assert!(e.message.contains(&format!("`{bad}`")), "{e}");
    }
}

#[test]
fn labels_and_dns_names() {
    assert!(label("label", "app", "nginx").is_ok());
    assert!(label("label", "app.kubernetes.io/name", "web").is_ok());
    assert!(label("label", "app", "").is_ok());
    assert!(label("label", "", "x").is_err());
    assert_eq!(
        label("selector", "app", "a b").unwrap_err().to_string(),
        "selector: label value `a b` (of `app`) is not a valid Kubernetes label value"
    );
    assert!(service_name("name", "nginx-service").is_ok());
    assert!(service_name("name", "1nginx").is_err());
    assert!(service_name("name", "a.b").is_err());
    assert!(service_name("name", &"a".repeat(64)).is_err());
    assert!(dns_label("namespace", "kube-system").is_ok());
    assert!(dns_label("namespace", "1abc").is_ok());
    assert!(dns_label("namespace", "Default").is_err());
    assert!(dns_label("namespace", "-a").is_err());
}

#[test]
fn dns_names() {
    assert_eq!(
        dns_name("cluster_domain", "cluster.local").unwrap(),
        "cluster.local"
    );
    assert_eq!(
        dns_name("cluster_domain", "Cluster.Local.").unwrap(),
        "cluster.local"
    );
    assert_eq!(dns_name("cluster_domain", "k8s").unwrap(), "k8s");
    assert!(dns_name("d", &"a".repeat(63)).is_ok());
    let long = format!("{}.{}", "a".repeat(63), "b".repeat(36));
    assert_eq!(long.len(), MAX_DNS_NAME_LEN);
    assert!(dns_name("d", &long).is_ok());
    assert_eq!(
        dns_name("cluster_domain", &format!("{long}c"))
            .unwrap_err()
            .to_string(),
        format!("cluster_domain: `{long}c` must be 1-100 characters long")
    );
    assert_eq!(
        dns_name("cluster_domain", "bad_domain")
            .unwrap_err()
            .to_string(),
        "cluster_domain: `bad_domain` is not a DNS domain (labels of a-z, 0-9 and '-')"
    );
    for bad in [
        "",
        ".",
        "a..b",
        ".a",
        "a-.b",
        "-a.b",
        "a b",
        &"a".repeat(64),
        "é.local",
    ] {
        assert_eq!(dns_name("d", bad).unwrap_err().field, "d", "{bad:?}");
    }
}

#[test]
fn socket_addresses() {
    let sa = |s| socket_addr_v4("dns_upstream", s, 53);
    assert_eq!(sa("198.18.0.53").unwrap().to_string(), "198.18.0.53:53");
    assert_eq!(
        sa("198.18.0.53:5353").unwrap().to_string(),
        "198.18.0.53:5353"
    );
    assert_eq!(
        socket_addr_v4("f", "127.0.0.1", 9).unwrap().to_string(),
        "127.0.0.1:9"
    );
    assert_eq!(
        sa("198.18.0.53:").unwrap_err().to_string(),
        "dns_upstream: `198.18.0.53:` is not IP[:PORT] (an IPv4 address, e.g. 198.18.0.53:53)"
    );
    assert_eq!(
        sa("0.0.0.0:53").unwrap_err().to_string(),
        "dns_upstream: `0.0.0.0:53`: 0.0.0.0 is not a unicast address"
    );
    assert_eq!(
        sa("198.18.0.53:0").unwrap_err().to_string(),
        "dns_upstream: `198.18.0.53:0`: port 0"
    );
    for bad in [
        "",
        "x",
        "255.255.255.255",
        "224.0.0.1:53",
        "198.18.0.53:65536",
        "[::1]:53",
    ] {
        assert_eq!(sa(bad).unwrap_err().field, "dns_upstream", "{bad:?}");
    }
}

#[test]
fn rate_limits_name_what_is_wrong() {
    let lim = |per_sec, burst| RateSpec { per_sec, burst };
    assert_eq!(rate_limit("arp_limit", "100/200"), Ok(lim(100, 200)));
    assert_eq!(rate_limit("arp_limit", "50"), Ok(lim(50, 100)));
    assert_eq!(rate_limit("arp_limit", "0"), Ok(lim(0, 1)));
    assert_eq!(
        rate_limit("arp_limit", "1000000"),
        Ok(lim(MAX_RATE, MAX_BURST))
    );
    for (bad, why) in [
        ("x", "rate `x`"),
        ("10/", "burst ``"),
        ("10/0", "at least 1"),
        ("0/5", "without a rate"),
        ("2000000", "over 1000000"),
        ("-1", "rate `-1`"),
        ("10/2000000", "burst 2000000 is over"),
    ] {
        let e = rate_limit("arp_limit", bad).unwrap_err();
        assert_eq!(e.field, "arp_limit", "{bad}");
        assert!(e.message.contains(why), "{bad}: {e}");
    }
}

#[test]
fn container_ids() {
    for good in ["abc123", "A1.b_c-d", "0"] {
        assert!(container_id("CNI_CONTAINERID", good).is_ok(), "{good}");
    }
    for bad in ["", "-abc", "a b", "a/b", "_x"] {
        let e = container_id("CNI_CONTAINERID", bad).unwrap_err();
        assert_eq!(e.field, "CNI_CONTAINERID", "{bad}");
    }
}

#[test]
fn key_value_lists() {
    let got = labels(&["app=nginx".into(), "tier=".into(), "a=b=c".into()]).unwrap();
    let want: BTreeMap<String, String> = [("app", "nginx"), ("tier", ""), ("a", "b=c")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
    assert!(labels(&[]).unwrap().is_empty());
    for bad in ["app", "=nginx", ""] {
        let err = labels(&[bad.to_string()]).unwrap_err();
        assert_eq!(err.field, "labels", "{bad}");
        assert!(
            err.to_string().starts_with("labels: malformed label"),
            "{err}"
        );
    }
    let err = labels(&["app=a".into(), "app=b".into()]).unwrap_err();
    assert_eq!(err.to_string(), "labels: label key `app` given twice");
    assert_eq!(selector(&["app=nginx".into()]).unwrap()["app"], "nginx");
    assert_eq!(
        selector(&["app".into()]).unwrap_err().to_string(),
        "selector: malformed selector `app`: expected KEY=VALUE with a non-empty KEY"
    );
}

#[test]
fn ipv4_addresses() {
    assert_eq!(
        ipv4("underlay", "192.168.56.12").unwrap(),
        Ipv4Addr::new(192, 168, 56, 12)
    );
    assert_eq!(
        ipv4("underlay", "node2").unwrap_err().to_string(),
        "underlay: `node2` is not an IPv4 address"
    );
    for bad in ["10.0.0.1/24", "", "1.2.3", "01.2.3.4", "fe80::1"] {
        assert_eq!(ipv4("vip", bad).unwrap_err().field, "vip", "{bad}");
    }
}

#[test]
fn addresses_with_prefix() {
    let n = ip_with_prefix("ip", "198.18.1.5/24").unwrap();
    assert_eq!(
        (n.addr(), n.prefix_len()),
        (Ipv4Addr::new(198, 18, 1, 5), 24)
    );
    assert!(ip_with_prefix("ip", "10.0.0.1/32").is_ok());
    assert!(ip_with_prefix("ip", "0.0.0.0/0").is_ok());
    for bad in [
        "198.18.1.5",
        "198.18.1.5/33",
        "198.18.1/24",
        "198.18.1.5/x",
        "/24",
        "",
        "fe80::1/64",
    ] {
        let err = ip_with_prefix("ip", bad).unwrap_err();
        assert_eq!(err.field, "ip", "{bad}");
        assert!(err.to_string().starts_with("ip: `"), "{err}");
    }
    assert_eq!(
        ip_with_prefix("ip", "198.18.1.5").unwrap_err().message,
        "`198.18.1.5` must be ADDR/PLEN, e.g. 198.18.1.5/24"
    );
    assert_eq!(
        ip_with_prefix("ip", "198.18.1.5/33").unwrap_err().message,
        "`33` is not a prefix length (0-32)"
    );
}

#[test]
fn cidrs() {
    let n = cidr("pod_cidr", "198.18.2.0/24").unwrap();
    assert_eq!(n.to_string(), "198.18.2.0/24");
    assert_eq!(cidr("pod_cidr", "0.0.0.0/0").unwrap().prefix_len(), 0);
    assert_eq!(
        cidr("pod_cidr", "198.18.2.0").unwrap_err().to_string(),
        "pod_cidr: `198.18.2.0` is not a CIDR (expected A.B.C.D/N)"
    );
    assert_eq!(
        cidr("pod_cidr", "198.18.2.1/24").unwrap_err().message,
        "`198.18.2.1/24` has host bits set (did you mean 198.18.2.0/24?)"
    );
    for bad in ["1.2.3.4/40", "x/24", "198.18.2.0/", "198.18.2.0/-1"] {
        assert_eq!(cidr("service_cidr", bad).unwrap_err().field, "service_cidr");
    }
}

#[test]
fn macs() {
    assert_eq!(
        mac("mac", "0a:58:c6:12:01:02").unwrap(),
        [0x0a, 0x58, 0xc6, 0x12, 0x01, 0x02]
    );
    assert_eq!(mac("mac", "AA-BB-CC-DD-EE-FE").unwrap()[5], 0xfe);
    for bad in [
        "zz:58:c6:12:01:02",
        "0a:58:c6:12:01",
        "0a:58:c6:12:01:02:03",
        "a:58:c6:12:01:02",
        "0a:58:c6:12:01:002",
        "+a:58:c6:12:01:02",
        "0a:58:c6:12:01:",
        "",
    ] {
        let err = mac("vtep_mac", bad).unwrap_err();
        assert_eq!(err.field, "vtep_mac", "{bad}");
        assert!(
            err.to_string()
                .starts_with(&format!("vtep_mac: malformed MAC address `{bad}`")),
            "{err}"
        );
    }
    assert!(mac("mac", "01:00:5e:00:00:01")
        .unwrap_err()
        .message
        .contains("multicast"));
    assert!(mac("mac", "ff:ff:ff:ff:ff:ff").is_err());
    assert!(mac("mac", "00:00:00:00:00:00")
        .unwrap_err()
        .message
        .contains("all-zero"));
}

fn sp(name: &str, port: u16, target_port: u16, protocol: Protocol) -> ServicePort {
    ServicePort {
        name: name.into(),
        port,
        target_port,
        protocol,
    }
}

#[test]
fn service_ports() {
    use Protocol::{Tcp, Udp};
    for (spec, want) in [
        ("80", sp("", 80, 80, Tcp)),
        ("80/tcp", sp("", 80, 80, Tcp)),
        ("53/UDP", sp("", 53, 53, Udp)),
        ("80:8080", sp("", 80, 8080, Tcp)),
        ("http:80", sp("http", 80, 80, Tcp)),
        ("http:80:8080/tcp", sp("http", 80, 8080, Tcp)),
        ("dns-udp:53:5353/udp", sp("dns-udp", 53, 5353, Udp)),
    ] {
        assert_eq!(service_port(spec).unwrap(), want, "{spec}");
    }
    for bad in [
        "",
        "0",
        "65536",
        "80/sctp",
        "80/",
        "/tcp",
        "http",
        "http:",
        ":80",
        "80:0",
        "80:x:90",
        "a:b:c:d",
        "HTTP:80",
        "-a:80",
        "a--b:80",
        "80:8080:9090",
        "verylongportname1:80",
        "80 ",
        "+80",
        "1:2:3",
        "http:x",
        "http:80:",
    ] {
        let err = service_port(bad).unwrap_err();
        assert_eq!(err.field, "port", "{bad}");
        assert!(err.message.contains(&format!("`{bad}`")), "{err}");
    }
}

#[test]
fn endpoints() {
    let ip = Ipv4Addr::new(198, 18, 1, 5);
    assert_eq!(endpoint("198.18.1.5").unwrap(), Endpoint { ip, port: None });
    assert_eq!(
        endpoint("198.18.1.5:8080").unwrap(),
        Endpoint {
            ip,
            port: Some(8080)
        }
    );
    for bad in [
        "x",
        "x:80",
        "198.18.1",
        "198.18.1.5:",
        "198.18.1.5:0",
        "198.18.1.5:99999",
        "198.18.1/24",
    ] {
        assert_eq!(endpoint(bad).unwrap_err().field, "endpoint", "{bad}");
    }
}

#[test]
fn affinities() {
    assert_eq!(
        affinity("client-ip").unwrap(),
        Some(DEFAULT_AFFINITY_SECONDS)
    );
    assert_eq!(affinity("ClientIP").unwrap(), Some(10800));
    assert_eq!(affinity("client-ip:60").unwrap(), Some(60));
    assert_eq!(
        affinity("client-ip:86400").unwrap(),
        Some(MAX_AFFINITY_SECONDS)
    );
    assert_eq!(affinity("none").unwrap(), None);
    for bad in [
        "client-ip:0",
        "client-ip:86401",
        "client-ip:100000",
        "client-ip:x",
        "client-ip:",
        "cookie",
        "none:5",
        "",
    ] {
        assert_eq!(affinity(bad).unwrap_err().field, "affinity", "{bad}");
    }
}

/// A name check, as the property tests run them all.
type NameCheck = fn(&'static str, &str) -> Result<(), Invalid>;

proptest! {
    /// Every container id the CNI spec allows maps to a valid port name, itself when it is
    /// one already.
    #[test]
    fn container_ids_map_to_valid_port_names(s in "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,300}") {
        let port = runtime_port_name(&s);
        prop_assert!(k8s_name("name", &port).is_ok(), "{:?} -> {:?}", s, port);
        if k8s_name("name", &s).is_ok() {
            prop_assert_eq!(&port, &s);
        } else {
            prop_assert_ne!(&port, &s);
        }
    }


    /// No check panics, and every refusal names the field it was given.
    #[test]
    fn any_string_is_checked_without_panic(s in "\\PC{0,40}") {
        let name_checks: [NameCheck; 7] =
            [k8s_name, node_name, ifname, dns_label, service_name, container_id, |f, s| label(f, s, s)];
        for check in name_checks {
            if let Err(e) = check("f", &s) {
                prop_assert_eq!(e.field, "f");
            }
        }
        let port = runtime_port_name(&s);
        prop_assert!(k8s_name("f", &port).is_ok(), "{:?} -> {:?}", s, port);
        if let Err(e) = ipv4("f", &s) { prop_assert_eq!(e.field, "f"); }
        if let Err(e) = ip_with_prefix("f", &s) { prop_assert_eq!(e.field, "f"); }
        if let Err(e) = cidr("f", &s) { prop_assert_eq!(e.field, "f"); }
        if let Err(e) = mac("f", &s) { prop_assert_eq!(e.field, "f"); }
        if let Err(e) = dns_name("f", &s) { prop_assert_eq!(e.field, "f"); }
        if let Err(e) = rate_limit("f", &s) { prop_assert_eq!(e.field, "f"); }
        if let Err(e) = socket_addr_v4("f", &s, 53) { prop_assert_eq!(e.field, "f"); }
        if let Err(e) = service_port(&s) { prop_assert_eq!(e.field, "port"); }
        if let Err(e) = endpoint(&s) { prop_assert_eq!(e.field, "endpoint"); }
        if let Err(e) = affinity(&s) { prop_assert_eq!(e.field, "affinity"); }
    }

    /// Spec-shaped strings (digits, ':', '/', letters) too; a port spec's and a name's
    /// refusals quote the whole value (what the fuzz target `control` checks).
    #[test]
    fn spec_shaped_strings_do_not_panic(s in "[0-9a-zA-Z:/.-]{0,24}") {
        let quoted = format!("`{s}`");
        if let Err(e) = service_port(&s) { prop_assert!(e.message.contains(&quoted), "{}", e); }
        for check in [k8s_name, node_name, ifname, dns_label, service_name, container_id] {
            if let Err(e) = check("f", &s) { prop_assert!(e.message.contains(&quoted), "{}", e); }
        }
        let _ = endpoint(&s);
        let _ = affinity(&s);
        let _ = cidr("f", &s);
        let _ = mac("f", &s);
        if let Err(e) = dns_name("f", &s) { prop_assert!(e.message.contains(&quoted), "{}", e); }
        if let Err(e) = socket_addr_v4("f", &s, 53) {
            prop_assert!(e.message.contains(&quoted), "{}", e);
        }
    }

    /// An address with a prefix prints back to what was parsed; its network is a CIDR.
    #[test]
    fn prefixes_round_trip(a in any::<u32>(), len in 0u8..=32) {
        let s = format!("{}/{len}", Ipv4Addr::from(a));
        let n = ip_with_prefix("ip", &s).unwrap();
        prop_assert_eq!(n.to_string(), s.clone());
        let net = n.trunc();
        prop_assert_eq!(cidr("pod_cidr", &net.to_string()).unwrap(), net);
        prop_assert_eq!(cidr("pod_cidr", &s).is_ok(), net.addr() == n.addr());
    }

    /// A unicast, non-zero MAC prints back to the bytes; any other is refused.
    #[test]
    fn macs_round_trip(m in any::<[u8; 6]>(), dash in any::<bool>()) {
        let sep = if dash { "-" } else { ":" };
        let s = m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(sep);
        let ok = m[0] & 1 == 0 && m != [0; 6];
        prop_assert_eq!(mac("mac", &s).ok(), ok.then_some(m));
        prop_assert_eq!(mac("mac", &s.to_uppercase()).ok(), ok.then_some(m));
    }

    /// A port spec built from its parts parses back to them.
    #[test]
    fn service_ports_round_trip(
        name in proptest::option::of("[a-z][a-z0-9]{0,13}"),
        port in 1u16..,
        target in proptest::option::of(1u16..),
        proto in proptest::option::of(prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)]),
    ) {
        let mut s = String::new();
        if let Some(n) = &name { s.push_str(&format!("{n}:")); }
        s.push_str(&port.to_string());
        if let Some(t) = target { s.push_str(&format!(":{t}")); }
        if let Some(p) = proto { s.push_str(&format!("/{p}")); }
        let got = service_port(&s);
        // NAME:PORT:TARGETPORT needs a name; PORT:TARGETPORT is fine without one.
        let want = ServicePort {
            name: name.clone().unwrap_or_default(),
            port,
            target_port: target.unwrap_or(port),
            protocol: proto.unwrap_or(Protocol::Tcp),
        };
        prop_assert_eq!(got.unwrap(), want);
    }

    /// An endpoint built from its parts parses back to them.
    #[test]
    fn endpoints_round_trip(a in any::<u32>(), port in proptest::option::of(1u16..)) {
        let ip = Ipv4Addr::from(a);
        let s = match port { Some(p) => format!("{ip}:{p}"), None => ip.to_string() };
        prop_assert_eq!(endpoint(&s).unwrap(), Endpoint { ip, port });
    }

    /// Every timeout in range is kept; every other number is refused.
    #[test]
    fn affinity_timeouts(n in any::<u32>()) {
        let got = affinity(&format!("client-ip:{n}"));
        if (1..=MAX_AFFINITY_SECONDS).contains(&n) {
            prop_assert_eq!(got.unwrap(), Some(n));
        } else {
            prop_assert_eq!(got.unwrap_err().field, "affinity");
        }
    }
}

#[test]
fn netns_references_by_shape() {
    let ok = |s: &str, path: &str, proc: bool| {
        let r = netns("netns", s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!((r.path.as_str(), r.proc), (path, proc), "{s}");
    };
    ok("pod1", "/var/run/netns/pod1", false);
    ok("cni-1234-abcd", "/var/run/netns/cni-1234-abcd", false);
    ok("a..b", "/var/run/netns/a..b", false);
    ok("/var/run/netns/pod1", "/var/run/netns/pod1", false);
    ok("/run/netns/cni-xyz", "/run/netns/cni-xyz", false);
    ok("/proc/1/ns/net", "/proc/1/ns/net", true);
    ok("/proc/4194304/ns/net", "/proc/4194304/ns/net", true);
    let long = "n".repeat(255);
    ok(&long, &format!("/var/run/netns/{long}"), false);
    for bad in [
        "",
        ".",
        "..",
        "a\0b",
        &"n".repeat(256),
        // Any other path, whatever it is: refused before it is looked at.
        "/etc/shadow",
        "/dev/sda",
        "/tmp/fifo",
        "relative/path",
        "./pod1",
        "/var/run/netns",
        "/var/run/netns/",
        "/var/run/netns/.",
        "/var/run/netns/..",
        "/var/run/netns/../../etc/shadow",
        "/var/run/netns/a/b",
        "/run/netns/../shadow",
        "/run/netnsx/a",
        "/var/run/netns//a",
        "//var/run/netns/a",
        "/var/run/./netns/a",
        "/proc/self/ns/net",
        "/proc/thread-self/ns/net",
        "/proc/0/ns/net",
        "/proc/01/ns/net",
        "/proc/4194305/ns/net",
        "/proc/99999999999/ns/net",
        "/proc/-1/ns/net",
        "/proc/1/ns/mnt",
        "/proc/1/ns/net/",
        "/proc/1/task/1/ns/net",
        "/proc/1/ns/../../1/ns/net",
        "/proc//ns/net",
        "/proc/1/root/etc/shadow",
    ] {
        let e = netns("netns", bad).unwrap_err();
        assert_eq!(e.field, "netns", "{bad:?}");
        assert!(e.message.contains("/proc/PID/ns/net"), "{bad:?}: {e}");
    }
    // The message is the same whether or not the path exists (it is not looked at).
    let msg = |s: &str| netns("netns", s).unwrap_err().message.replace(s, "X");
    assert_eq!(msg("/etc/shadow"), msg("/etc/no-such-file-here"));
}

proptest! {
    /// Whatever is accepted is a file in one of the netns directories or /proc/PID/ns/net,
    /// with no `.`/`..` component: the shape rule cannot be walked out of.
    #[test]
    fn netns_never_leaves_its_directories(s in "(/|/var/run/netns/|/run/netns/|/proc/)?[a-z0-9./\\-]{0,24}") {
        if let Ok(r) = netns("netns", &s) {
            let comps: Vec<&str> = r.path.split('/').collect();
            prop_assert!(!comps.iter().skip(1).any(|c| c.is_empty() || *c == "." || *c == ".."), "{}", r.path);
            let under_dir = NETNS_DIRS.iter().any(|d| {
                r.path.strip_prefix(d).and_then(|x| x.strip_prefix('/')).is_some_and(|n| !n.contains('/'))
            });
            prop_assert!(under_dir != r.proc, "{}", r.path);
            if r.proc {
                prop_assert!(r.path.starts_with("/proc/") && r.path.ends_with("/ns/net"));
            }
        }
    }
}
