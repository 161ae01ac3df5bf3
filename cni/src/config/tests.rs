//! Tests of the environment and configuration parsing: codes and the fields errors name.

use super::*;
use crate::error::{CniError, Code};
use crate::result::Dns;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use vswitch_proto::CniKey;

fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Env::from_lookup(|k| map.get(k).cloned())
}

const ADD_ENV: [(&str, &str); 5] = [
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "abc123"),
    ("CNI_NETNS", "/var/run/netns/p1"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_PATH", "/opt/cni/bin"),
];

#[test]
fn versions() {
    for (s, v) in [
        ("0.4.0", CniVersion::V0_4_0),
        ("1.0.0", CniVersion::V1_0_0),
        ("1.1.0", CniVersion::V1_1_0),
    ] {
        assert_eq!(CniVersion::parse(s), Some(v));
        assert_eq!(v.as_str(), s);
    }
    for s in ["0.3.1", "0.1.0", "1.2.0", "", "1.1"] {
        assert_eq!(CniVersion::parse(s), None, "{s}");
    }
    assert!(CniVersion::V0_4_0 < CniVersion::V1_1_0);
    assert_eq!(Command::Status.since(), CniVersion::V1_1_0);
    assert_eq!(Command::Gc.since(), CniVersion::V1_1_0);
    assert_eq!(Command::Check.since(), CniVersion::V0_4_0);
}

#[test]
fn add_env() {
    let e = env(&ADD_ENV).unwrap();
    assert_eq!(e.command, Command::Add);
    assert_eq!(
        e.target,
        Some(Target {
            container_id: "abc123".into(),
            ifname: "eth0".into(),
            netns: Some("/var/run/netns/p1".into()),
        })
    );
    assert_eq!(e.args, "");
}

#[test]
fn every_command_parses() {
    for (s, c) in [
        ("ADD", Command::Add),
        ("DEL", Command::Del),
        ("CHECK", Command::Check),
        ("STATUS", Command::Status),
        ("VERSION", Command::Version),
        ("GC", Command::Gc),
    ] {
        let mut vars = ADD_ENV.to_vec();
        vars[0] = ("CNI_COMMAND", s);
        assert_eq!(env(&vars).unwrap().command, c);
    }
    // STATUS, VERSION and GC need nothing but the command.
    for s in ["STATUS", "VERSION", "GC"] {
        let e = env(&[("CNI_COMMAND", s)]).unwrap();
        assert_eq!(e.target, None);
    }
}

#[test]
fn missing_command_is_code_4() {
    let e = env(&[]).unwrap_err();
    assert_eq!(e.code, Code::InvalidEnv);
    assert_eq!(e.details, "CNI_COMMAND");
    let e = env(&[("CNI_COMMAND", "")]).unwrap_err();
    assert_eq!(e.code, Code::InvalidEnv);
    let e = env(&[("CNI_COMMAND", "add")]).unwrap_err();
    assert_eq!(e.code, Code::InvalidEnv);
    assert!(e.msg.contains("`add`"), "{}", e.msg);
}

#[test]
fn missing_netns_on_add_is_code_4_naming_it() {
    let vars: Vec<_> = ADD_ENV
        .iter()
        .copied()
        .filter(|(k, _)| *k != "CNI_NETNS")
        .collect();
    let e = env(&vars).unwrap_err();
    assert_eq!(e.code, Code::InvalidEnv);
    assert_eq!(e.details, "CNI_NETNS");
    assert!(e.msg.contains("CNI_NETNS"), "{}", e.msg);
    // Empty counts as missing.
    let mut vars = ADD_ENV.to_vec();
    vars[2] = ("CNI_NETNS", "");
    assert_eq!(env(&vars).unwrap_err().details, "CNI_NETNS");
}

#[test]
fn all_missing_variables_are_named() {
    let e = env(&[("CNI_COMMAND", "CHECK")]).unwrap_err();
    assert_eq!(e.code, Code::InvalidEnv);
    assert_eq!(e.details, "CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME");
}

#[test]
fn del_does_not_need_netns() {
    let e = env(&[
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "abc"),
        ("CNI_IFNAME", "eth0"),
    ])
    .unwrap();
    assert_eq!(e.target.unwrap().netns, None);
    let e = env(&[("CNI_COMMAND", "DEL"), ("CNI_IFNAME", "eth0")]).unwrap_err();
    assert_eq!(e.details, "CNI_CONTAINERID");
}

#[test]
fn bad_container_id_and_ifname_are_code_4() {
    for id in ["-abc", "a b", "a/b", "_x"] {
        let mut vars = ADD_ENV.to_vec();
        vars[1] = ("CNI_CONTAINERID", id);
        let e = env(&vars).unwrap_err();
        assert_eq!(
            (e.code, e.details.as_str()),
            (Code::InvalidEnv, "CNI_CONTAINERID"),
            "{id}"
        );
    }
    for name in [".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
        let mut vars = ADD_ENV.to_vec();
        vars[3] = ("CNI_IFNAME", name);
        let e = env(&vars).unwrap_err();
        assert_eq!(
            (e.code, e.details.as_str()),
            (Code::InvalidEnv, "CNI_IFNAME"),
            "{name}"
        );
    }
    let mut vars = ADD_ENV.to_vec();
    vars[1] = ("CNI_CONTAINERID", "A1.b_c-d");
    vars[3] = ("CNI_IFNAME", "net1");
    assert!(env(&vars).is_ok());
}

#[test]
fn cni_args() {
    let a = CniArgs::parse(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=nginx-7d9;\
         K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1-2-3;",
    )
    .unwrap();
    assert_eq!(a.pod_name.as_deref(), Some("nginx-7d9"));
    assert_eq!(a.pod_namespace.as_deref(), Some("web"));
    assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    assert_eq!(CniArgs::parse("FOO=bar").unwrap(), CniArgs::default());
    assert_eq!(CniArgs::parse("K8S_POD_NAME=").unwrap().pod_name, None);
    // A value may itself contain '='.
    assert_eq!(
        CniArgs::parse("K8S_POD_NAME=a=b")
            .unwrap()
            .pod_name
            .as_deref(),
        Some("a=b")
    );
    let e = CniArgs::parse("K8S_POD_NAME=x;garbage").unwrap_err();
    assert_eq!(e.code, Code::Decode);
    assert_eq!(e.details, "CNI_ARGS");
}

fn conf(json: &str) -> Result<NetConf, CniError> {
    NetConf::parse(json.as_bytes())
}

#[test]
fn minimal_config_gets_defaults_in_every_version() {
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        let c = conf(&format!(
            r#"{{"cniVersion":"{v}","name":"k8s-pod-network","type":"vswitch"}}"#
        ))
        .unwrap();
        assert_eq!(c.cni_version.as_str(), v);
        assert_eq!(c.name, "k8s-pod-network");
        assert_eq!(c.plugin_type, "vswitch");
        assert_eq!(c.socket, PathBuf::from(vswitch_proto::DEFAULT_SOCKET));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.dns, Dns::default());
        assert_eq!(c.prev_result, None);
        assert_eq!(c.valid_attachments, None);
    }
}

#[test]
fn every_field() {
    let c = conf(
        r#"{
            "cniVersion": "1.1.0",
            "name": "pods",
            "type": "vswitch-cni",
            "socket": "/tmp/x/vswitchd.sock",
            "timeoutSeconds": 2.5,
            "dns": {"nameservers": ["198.19.96.10"], "domain": "cluster.local",
                    "search": ["default.svc.cluster.local"], "options": ["ndots:5"]},
            "prevResult": {"cniVersion": "1.1.0",
                           "interfaces": [{"name": "eth0", "mac": "02:00:c6:12:01:02",
                                           "sandbox": "/var/run/netns/p"}],
                           "ips": [{"address": "198.18.1.2/24", "gateway": "198.18.1.1",
                                    "interface": 0}]},
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"},
                                          {"containerID": "c2", "ifname": "net1"}],
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": []},
            "args": {"cni": {"labels": []}},
            "disableCheck": false,
            "somethingNew": {"x": 1}
        }"#,
    )
    .unwrap();
    assert_eq!(c.plugin_type, "vswitch-cni");
    assert_eq!(c.socket, PathBuf::from("/tmp/x/vswitchd.sock"));
    assert_eq!(c.timeout, Duration::from_millis(2500));
    assert_eq!(
        c.dns,
        Dns {
            nameservers: vec!["198.19.96.10".into()],
            domain: Some("cluster.local".into()),
            search: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }
    );
    assert_eq!(
        c.prev_result,
        Some(PrevResult {
            addresses: vec!["198.18.1.2/24".into()],
            interfaces: vec![("eth0".into(), Some("02:00:c6:12:01:02".into()))],
        })
    );
    assert_eq!(
        c.valid_attachments,
        Some(vec![
            CniKey {
                container_id: "c1".into(),
                ifname: "eth0".into()
            },
            CniKey {
                container_id: "c2".into(),
                ifname: "net1".into()
            },
        ])
    );
}

#[test]
fn integer_timeout_and_old_attachments_key() {
    let c = conf(
        r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch","timeoutSeconds":3,
            "cni.dev/attachments":[]}"#,
    )
    .unwrap();
    assert_eq!(c.timeout, Duration::from_secs(3));
    assert_eq!(c.valid_attachments, Some(vec![]));
}

#[test]
fn malformed_json_is_code_6() {
    for bad in [
        "",
        "{",
        "not json",
        r#"{"cniVersion":"1.1.0",}"#,
        "[1,2]",
        "\"x\"",
    ] {
        let e = conf(bad).unwrap_err();
        assert_eq!(e.code, Code::Decode, "{bad:?}");
    }
}

#[test]
fn version_problems_are_code_1() {
    for bad in [
        r#"{"name":"n","type":"vswitch"}"#,
        r#"{"cniVersion":"0.3.1","name":"n","type":"vswitch"}"#,
        r#"{"cniVersion":"2.0.0","name":"n","type":"vswitch"}"#,
    ] {
        let e = conf(bad).unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion, "{bad}");
        assert_eq!(e.details, "cniVersion");
        assert!(e.msg.contains("0.4.0, 1.0.0, 1.1.0"), "{}", e.msg);
    }
}

#[test]
fn invalid_fields_are_code_7_naming_them() {
    for (bad, field) in [
        (
            r#"{"cniVersion":1,"name":"n","type":"vswitch"}"#,
            "cniVersion",
        ),
        (r#"{"cniVersion":"1.0.0","type":"vswitch"}"#, "name"),
        (
            r#"{"cniVersion":"1.0.0","name":"","type":"vswitch"}"#,
            "name",
        ),
        (r#"{"cniVersion":"1.0.0","name":"n"}"#, "type"),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","socket":7}"#,
            "socket",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","socket":""}"#,
            "socket",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","timeoutSeconds":0}"#,
            "timeoutSeconds",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","timeoutSeconds":-1}"#,
            "timeoutSeconds",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","timeoutSeconds":"5"}"#,
            "timeoutSeconds",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","timeoutSeconds":100000}"#,
            "timeoutSeconds",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","dns":[]}"#,
            "dns",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","dns":{"nameservers":"x"}}"#,
            "dns.nameservers",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch","cni.dev/valid-attachments":{}}"#,
            "cni.dev/valid-attachments",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch","cni.dev/valid-attachments":[{"containerID":"c"}]}"#,
            "cni.dev/valid-attachments",
        ),
    ] {
        let e = conf(bad).unwrap_err();
        assert_eq!(
            (e.code, e.details.as_str()),
            (Code::InvalidConfig, field),
            "{bad}: {e}"
        );
    }
}

#[test]
fn an_ipam_section_is_code_2() {
    let e = conf(
        r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch",
            "ipam":{"type":"host-local","subnet":"198.18.1.0/24"}}"#,
    )
    .unwrap_err();
    assert_eq!(e.code, Code::UnsupportedField);
    assert_eq!(e.details, "ipam");
    assert!(e.msg.contains("host-local"), "{}", e.msg);
    // An empty one is harmless.
    assert!(conf(r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","ipam":{}}"#).is_ok());
}

#[test]
fn unreadable_prev_result_is_not_compared() {
    let c = conf(r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","prevResult":"x"}"#).unwrap();
    assert_eq!(c.prev_result, None);
    let c = conf(
        r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","prevResult":{"ips":[{"x":1}]}}"#,
    )
    .unwrap();
    assert_eq!(c.prev_result, Some(PrevResult::default()));
}

#[test]
fn reply_version_is_lenient() {
    assert_eq!(
        reply_version(br#"{"cniVersion":"0.4.0"}"#),
        CniVersion::V0_4_0
    );
    assert_eq!(
        reply_version(br#"{"cniVersion":"0.3.1"}"#),
        CniVersion::LATEST
    );
    assert_eq!(reply_version(b"garbage"), CniVersion::LATEST);
    assert_eq!(reply_version(b""), CniVersion::LATEST);
}
