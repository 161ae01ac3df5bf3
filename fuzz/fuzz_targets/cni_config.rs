//! One CNI invocation of `vswitch-cni` with fuzzed input, through `vswitch_cni::plugin::run`
//! (the binary's whole logic) against a fake vswitchd.
//!
//! Input: `ENV \0 STDIN`. `ENV` is `KEY=VALUE` lines: the `CNI_*` variables (`CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`, ...) and `FUZZ_*` lines that
//! shape the fake daemon's answer (`FUZZ_ANSWER` = port, done, node, error, unreachable,
//! timeout, interrupted, failed; `FUZZ_KIND`, `FUZZ_FIELD`, `FUZZ_IP`, `FUZZ_PREFIX`,
//! `FUZZ_GATEWAY`, `FUZZ_MAC`). `STDIN` is the network configuration JSON. Without a NUL byte
//! the whole input is the configuration of an ADD.
//!
//! Checks: nothing panics; a failure prints one JSON error object with a `code` and a `msg`;
//! a success prints nothing or one JSON object; at most one request reaches the daemon.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use vswitch_cni::daemon::CallError;
use vswitch_proto::{ErrorKind, NodeInfo, PortInfo, PortStatus, Request, Response};

const DEFAULT_ENV: &str = "CNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_NETNS=/run/netns/p1\n\
CNI_IFNAME=eth0\nCNI_ARGS=K8S_POD_NAME=nginx;K8S_POD_NAMESPACE=default\n";

fuzz_target!(|data: &[u8]| {
    let (env, stdin) = match data.iter().position(|b| *b == 0) {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => (DEFAULT_ENV.to_string(), data),
    };
    let vars: HashMap<String, String> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let calls = Cell::new(0u32);
    let outcome = vswitch_cni::plugin::run(
        |k| vars.get(k).cloned(),
        Ok(stdin.to_vec()),
        |_conf| {
            |req: &Request| {
                calls.set(calls.get() + 1);
                answer(&vars, req)
            }
        },
    );
    assert!(calls.get() <= 1, "{} calls to the daemon", calls.get());
    if outcome.success {
        if !outcome.stdout.is_empty() {
            let v: serde_json::Value =
                serde_json::from_str(&outcome.stdout).expect("a success prints JSON");
            assert!(v.is_object(), "{v}");
        }
    } else {
        let v: serde_json::Value =
            serde_json::from_str(&outcome.stdout).expect("a failure prints a JSON error");
        assert!(v["code"].is_u64(), "{v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(v["cniVersion"].is_string(), "{v}");
    }
});

/// The fake daemon's answer, shaped by the `FUZZ_*` lines.
fn answer(vars: &HashMap<String, String>, req: &Request) -> Result<Response, CallError> {
    let var = |k: &str, default: &str| vars.get(k).cloned().unwrap_or_else(|| default.into());
    let why = "fuzzed".to_string();
    Ok(match var("FUZZ_ANSWER", "port").as_str() {
        "unreachable" => return Err(CallError::Unreachable(why)),
        "timeout" => return Err(CallError::Timeout(why)),
        "interrupted" => return Err(CallError::Interrupted(why)),
        "failed" => return Err(CallError::Failed(why)),
        "done" => Response::Done,
        "node" => Response::Node(node()),
        "error" => {
            let kind = match var("FUZZ_KIND", "invalid").as_str() {
                "not_found" => ErrorKind::NotFound,
                "exists" => ErrorKind::Exists,
                "exhausted" => ErrorKind::Exhausted,
                "unavailable" => ErrorKind::Unavailable,
                "other" => ErrorKind::Other,
                _ => ErrorKind::Invalid,
            };
            let field = vars.get("FUZZ_FIELD").map(String::as_str);
            Response::error(kind, field, "refused by the fuzzer")
        }
        _ => match req {
            Request::CniAdd(a) | Request::CniCheck(a) => Response::Port(PortInfo {
                name: a.pod_name.clone().unwrap_or_else(|| "pod".into()),
                namespace: a.pod_namespace.clone().unwrap_or_else(|| "default".into()),
                ip: var("FUZZ_IP", "198.18.1.7"),
                prefix_len: var("FUZZ_PREFIX", "24").parse().unwrap_or(24),
                mac: var("FUZZ_MAC", "0a:58:c6:12:01:07"),
                node: "node1".into(),
                status: PortStatus::Running,
                netns: a.netns.clone(),
                ifname: a.ifname.clone(),
                gateway: var("FUZZ_GATEWAY", "198.18.1.1"),
                mtu: 1450,
                labels: BTreeMap::new(),
                container_id: Some(a.container_id.clone()),
                runtime_name: None,
                runtime_namespace: None,
                dns: None,
            }),
            Request::NodeShow => Response::Node(node()),
            _ => Response::Done,
        },
    })
}

fn node() -> NodeInfo {
    NodeInfo {
        node: "node1".into(),
        pod_cidr: "198.18.1.0/24".into(),
        gateway: "198.18.1.1".into(),
        router_mac: "0a:58:c6:12:01:01".into(),
        vtep_ip: "198.18.1.0".into(),
        vtep_mac: "0a:58:c6:12:01:00".into(),
        underlay: Some("198.19.0.1".into()),
        vxlan_port: 4789,
        vni: 1,
        pod_mtu: 1450,
        datapath: "epoll".into(),
        ports: 1,
        peers: 0,
        version: "0.1.0".into(),
        service_cidr: "198.19.96.0/20".into(),
        dns_ip: "198.19.96.10".into(),
        cluster_domain: "cluster.local".into(),
        datastore: None,
    }
}
