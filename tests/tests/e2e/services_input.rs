//! Bad Service input end to end: `service add` with wrong VIPs, ports, selectors and
//! endpoints (and raw protocol requests) is refused naming the field and changes nothing;
//! `vswitchd` refuses service flags that break the address plan.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use vswitch_e2e::checks::assert_service_rejected;
use vswitch_e2e::{Node, NodeOpts, OutputExt, Testbed};

/// The cluster DNS address (design.md section 6; vswitchd's default `--dns-ip`).
const DNS_IP: &str = "198.19.96.10";

/// Sends one raw request line to the daemon and returns its parsed answer.
fn raw_request(node: &Node, line: &str) -> Value {
    let mut sock = UnixStream::connect(&node.socket).expect("connecting to the control socket");
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(sock)
        .read_line(&mut reply)
        .expect("reading the answer");
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {reply}"))
}

// ----- (g) bad input ----------------------------------------------------------------------------

#[test]
fn bad_service_input_is_rejected_and_changes_nothing() {
    let Some(tb) = Testbed::new("bad_service_input_is_rejected_and_changes_nothing") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    // A peer (no daemon needed): its subnet is a place endpoints may be.
    node.ctl_ok(&[
        "peer",
        "add",
        "node2",
        "--underlay",
        "198.19.0.2",
        "--pod-cidr",
        "198.18.2.0/24",
    ]);
    let _nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    node.ctl_ok(&[
        "service",
        "add",
        "nginx-service",
        "--vip",
        "198.19.96.20",
        "--port",
        "80/tcp",
        "--selector",
        "app=nginx",
    ]);
    let add = |name: &'static str, vip: &'static str, rest: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["service", "add", name, "--vip", vip];
        v.extend(rest);
        v
    };
    let sel = ["--port", "80", "--selector", "app=nginx"];

    // VIPs: outside the service CIDR, malformed, the DNS address, another service's.
    assert_service_rejected(&node, &add("s1", "198.19.0.50", &sel), "vip");
    assert_service_rejected(&node, &add("s1", "198.18.1.20", &sel), "vip");
    assert_service_rejected(&node, &add("s1", "nginx", &sel), "vip");
    assert_service_rejected(&node, &add("s1", DNS_IP, &sel), "vip");
    assert_service_rejected(&node, &add("s1", "198.19.96.20", &sel), "vip");
    // A duplicate name.
    assert_service_rejected(&node, &add("nginx-service", "198.19.96.21", &sel), "name");
    // Malformed port specs (caught by vswitchctl, or by the daemon).
    for bad in ["80/sctp", "http", "0", "70000", "80:", "1:2:3", "Http:80"] {
        assert_service_rejected(
            &node,
            &add(
                "s1",
                "198.19.96.21",
                &["--port", bad, "--selector", "app=nginx"],
            ),
            "port",
        );
    }
    assert_service_rejected(
        &node,
        &add(
            "s1",
            "198.19.96.21",
            &["--port", "80", "--port", "80/tcp", "--selector", "a=b"],
        ),
        "port",
    );
    // Endpoints outside every known subnet, or the node's network address.
    for bad in ["198.18.3.5", "198.19.96.99", "198.18.1.0"] {
        assert_service_rejected(
            &node,
            &add("s1", "198.19.96.21", &["--port", "80", "--endpoint", bad]),
            "endpoint",
        );
    }
    assert_service_rejected(
        &node,
        &add(
            "s1",
            "198.19.96.21",
            &["--port", "80", "--endpoint", "198.18.2"],
        ),
        "endpoint",
    );
    // Neither selector nor endpoints; a bad affinity; a bad name.
    assert_service_rejected(
        &node,
        &add("s1", "198.19.96.21", &["--port", "80"]),
        "selector",
    );
    assert_service_rejected(
        &node,
        &add(
            "s1",
            "198.19.96.21",
            &[
                "--port",
                "80",
                "--selector",
                "app=nginx",
                "--affinity",
                "client-ip:100000",
            ],
        ),
        "affinity",
    );
    assert_service_rejected(
        &node,
        &add(
            "s1",
            "198.19.96.21",
            &[
                "--port",
                "80",
                "--selector",
                "app=nginx",
                "--affinity",
                "cookie",
            ],
        ),
        "affinity",
    );
    assert_service_rejected(&node, &add("S_1", "198.19.96.21", &sel), "name");
    // A peer whose subnet overlaps the service CIDR.
    let out = node.ctl(&[
        "peer",
        "add",
        "node9",
        "--underlay",
        "198.19.0.9",
        "--pod-cidr",
        "198.19.96.0/24",
    ]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr_str().starts_with("error: pod_cidr: "),
        "{}",
        out.describe()
    );
    // Deleting what is not there.
    assert_service_rejected(&node, &["service", "del", "nope"], "name");
    assert_service_rejected(
        &node,
        &["service", "del", "nginx-service", "--namespace", "other"],
        "name",
    );

    // The daemon checks by itself too (a client that skips vswitchctl's checks).
    let before = node.services();
    for (spec, field) in [
        (
            r#""vip":"198.19.96.21","ports":["80/sctp"],"selector":{"app":"nginx"}"#,
            "port",
        ),
        (
            r#""vip":"198.19.96.21","ports":[],"selector":{"app":"nginx"}"#,
            "port",
        ),
        (
            r#""vip":"198.19.96.21","ports":["80"],"endpoints":["198.18.1.5:0"]"#,
            "endpoint",
        ),
        (r#""vip":"198.19.96.21","ports":["80"]"#, "selector"),
        (
            r#""vip":"198.18.1.20","ports":["80"],"selector":{"app":"nginx"}"#,
            "vip",
        ),
    ] {
        let reply = raw_request(
            &node,
            &format!(r#"{{"version":1,"op":"service_add","name":"s1",{spec}}}"#),
        );
        assert_eq!(reply["result"], "error", "{spec}: {reply}");
        assert_eq!(reply["data"]["field"], field, "{spec}: {reply}");
    }
    let reply = raw_request(
        &node,
        r#"{"version":1,"op":"service_add","name":"nginx-service","vip":"198.19.96.21","ports":["80"],"selector":{"app":"x"}}"#,
    );
    assert_eq!(reply["data"]["kind"], "exists", "{reply}");
    let reply = raw_request(&node, r#"{"version":1,"op":"service_del","name":"nope"}"#);
    assert_eq!(reply["data"]["kind"], "not_found", "{reply}");
    assert_eq!(node.services(), before);

    // What is valid is accepted: an endpoint in the peer's subnet with a fixed port.
    node.ctl_ok(&add(
        "s1",
        "198.19.96.21",
        &["--port", "80", "--endpoint", "198.18.2.5:8080"],
    ));
    assert_eq!(node.endpoints("s1"), vec!["198.18.2.5:8080".to_string()]);
    node.ctl_ok(&["service", "del", "s1"]);
    assert_eq!(node.services(), before);
}

/// vswitchd refuses service flags that break the address plan, before touching anything.
#[test]
fn vswitchd_checks_its_service_flags() {
    let Some(tb) = Testbed::new("vswitchd_checks_its_service_flags") else {
        return;
    };
    let vswitchd = tb.bin("vswitchd");
    let state = tb.dir().join("state");
    let sock = tb.dir().join("sock");
    for (flags, what) in [
        (&["--service-cidr", "198.18.0.0/16"][..], "--service-cidr"),
        (&["--service-cidr", "198.19.96.1/20"][..], "--service-cidr"),
        (&["--dns-ip", "198.19.0.10"][..], "--dns-ip"),
        (&["--dns-ip", "198.19.96.0"][..], "--dns-ip"),
        (&["--cluster-domain", "bad_domain"][..], "--cluster-domain"),
        (&["--conntrack-max", "0"][..], "--conntrack-max"),
    ] {
        let mut cmd = std::process::Command::new(&vswitchd);
        cmd.args([
            "--node",
            "node1",
            "--pod-cidr",
            "198.18.1.0/24",
            "--state-dir",
        ])
        .arg(&state)
        .arg("--socket")
        .arg(&sock)
        .args(flags);
        let out = vswitch_e2e::run_with_timeout(&mut cmd, Duration::from_secs(10)).unwrap();
        assert!(
            !out.status.success(),
            "{flags:?} accepted: {}",
            out.describe()
        );
        assert!(
            out.stderr_str().contains(what),
            "{flags:?}: {}",
            out.describe()
        );
    }
}
