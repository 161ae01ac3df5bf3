//! End-to-end tests of the CNI plugin `vswitch-cni`, run exactly as a container runtime runs
//! it: `CNI_*` environment variables, the network configuration on stdin, the result (or the
//! error object) read from stdout. The pods are network namespaces of the testbed; what the
//! plugin reports is checked against what is really there (`ip -n NS -j ...`).

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use vswitch_e2e::cmd::kill_pid;
use vswitch_e2e::{exec_in, ip_json, ip_ok, ipv4_addrs, Bg, NodeOpts, OutputExt, Testbed};

/// The pod MTU for a 1500-byte underlay (VXLAN overhead 50).
const POD_MTU: u64 = 1450;
/// How long one plugin invocation may take before the test kills it (the plugin's own
/// deadline is `timeoutSeconds`, 10 s unless the test's configuration says otherwise).
const PLUGIN_DEADLINE: Duration = Duration::from_secs(40);

/// What one plugin invocation did.
#[derive(Debug)]
struct Ran {
    /// Exit code (`None`: killed).
    status: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "exit {:?} after {:.2} s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.took.as_secs_f64(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("plugin stdout is not JSON ({e}): {}", self.describe()))
    }

    /// Asserts success with JSON on stdout, which is returned.
    fn ok_json(&self) -> Value {
        assert_eq!(self.status, Some(0), "plugin failed: {}", self.describe());
        self.json()
    }

    /// Asserts success with nothing on stdout.
    fn ok_empty(&self) {
        assert_eq!(self.status, Some(0), "plugin failed: {}", self.describe());
        assert!(
            self.stdout.trim().is_empty(),
            "expected no output: {}",
            self.describe()
        );
    }

    /// Asserts a CNI error with `code` (non-zero exit, the spec's error object on stdout) and
    /// returns the object.
    fn err(&self, code: u64) -> Value {
        assert!(
            matches!(self.status, Some(c) if c != 0),
            "expected CNI error {code}: {}",
            self.describe()
        );
        let v = self.json();
        assert_eq!(v["code"], code, "wrong CNI error code: {}", self.describe());
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "error without msg: {v}"
        );
        assert!(v["cniVersion"].is_string(), "error without cniVersion: {v}");
        v
    }
}

/// The plugin binary and the daemon socket it is configured for.
#[derive(Clone)]
struct Plugin {
    bin: PathBuf,
    socket: PathBuf,
}

/// One container's attachment parameters.
struct Container {
    id: String,
    /// `CNI_NETNS` (a path, as runtimes pass it).
    netns_path: String,
    /// The netns name (for `ip -n`).
    netns: String,
    /// `K8S_POD_NAME`, when the runtime passes one.
    pod: Option<String>,
}

impl Container {
    fn new(tb: &Testbed, id: &str, pod: Option<&str>) -> Container {
        let netns = tb.create_netns(&tb.pod_netns_name(id));
        Container {
            id: id.to_string(),
            netns_path: format!("/var/run/netns/{netns}"),
            netns,
            pod: pod.map(str::to_string),
        }
    }

    fn env(&self, command: &str) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", self.id.clone()),
            ("CNI_NETNS", self.netns_path.clone()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", "/opt/cni/bin".to_string()),
        ];
        if let Some(pod) = &self.pod {
            vars.push((
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};\
                     K8S_POD_INFRA_CONTAINER_ID={}",
                    self.id
                ),
            ));
        }
        vars
    }
}

impl Plugin {
    fn new(tb: &Testbed, socket: &Path) -> Plugin {
        Plugin {
            bin: tb.bin("vswitch-cni"),
            socket: socket.to_path_buf(),
        }
    }

    /// The network configuration in `version`, with `extra` fields merged in.
    fn conf(&self, version: &str, extra: Value) -> String {
        let mut c = json!({
            "cniVersion": version,
            "name": "vswitch-e2e",
            "type": "vswitch",
            "socket": self.socket.display().to_string(),
        });
        if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
            c.extend(extra);
        }
        c.to_string()
    }

    /// Runs the plugin as a runtime does: a clean environment with `vars`, `stdin` piped in.
    fn run(&self, vars: &[(&str, String)], stdin: &str) -> Ran {
        let start = Instant::now();
        let mut child = Command::new(&self.bin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()));
        let pid = child.id() as i32;
        if let Some(mut input) = child.stdin.take() {
            // The plugin may fail before reading (e.g. a bad environment): ignore EPIPE.
            let _ = input.write_all(stdin.as_bytes());
        }
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(PLUGIN_DEADLINE) {
            Ok(Ok(out)) => Ran {
                status: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                took: start.elapsed(),
            },
            Ok(Err(e)) => panic!("waiting for the plugin: {e}"),
            Err(_) => {
                kill_pid(pid, libc::SIGKILL);
                panic!(
                    "vswitch-cni hung for {PLUGIN_DEADLINE:?} (it must never hang): {:?}",
                    vars
                );
            }
        }
    }

    fn cmd(&self, c: &Container, command: &str, conf: &str) -> Ran {
        self.run(&c.env(command), conf)
    }
}

/// `ping -c1 -W2 DST` from `netns`.
fn ping_ok(netns: &str, dst: &str) -> Result<(), String> {
    let out = exec_in(netns, Duration::from_secs(5), "ping", &["-c1", "-W2", dst]);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ping {dst} from {netns}: {}", out.describe()))
    }
}

/// The address (without prefix) of an ADD result.
fn result_ip(result: &Value) -> Ipv4Addr {
    let addr = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("result without ips[0].address: {result}"));
    addr.split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("bad address {addr} in {result}"))
}

/// Checks that what ADD reported is what the pod really has: interface, MAC, MTU, address and
/// default route.
fn assert_result_is_real(c: &Container, result: &Value, gateway: &str) {
    let iface = &result["interfaces"][0];
    assert_eq!(iface["name"], "eth0", "{result}");
    assert_eq!(iface["sandbox"], c.netns_path.as_str(), "{result}");
    let ip_cfg = &result["ips"][0];
    assert_eq!(ip_cfg["gateway"], gateway, "{result}");
    assert_eq!(ip_cfg["interface"], 0, "{result}");
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": gateway}]),
        "{result}"
    );
    let (addr, plen) = ip_cfg["address"]
        .as_str()
        .and_then(|a| a.split_once('/'))
        .unwrap_or_else(|| panic!("ips[0].address is not IP/PLEN: {result}"));

    let link = ip_json(&c.netns, &["link", "show", "dev", "eth0"]);
    assert_eq!(link[0]["address"], iface["mac"], "MAC: {link} vs {result}");
    assert_eq!(link[0]["mtu"], POD_MTU, "MTU: {link}");
    if let Some(mtu) = iface.get("mtu") {
        assert_eq!(*mtu, link[0]["mtu"], "result MTU vs link: {result} {link}");
    }
    assert!(
        link[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "UP")),
        "eth0 is not up: {link}"
    );

    let (addrs, inet) = ipv4_addrs(&c.netns, "eth0");
    assert_eq!(inet.len(), 1, "expected one IPv4 address: {addrs}");
    assert_eq!(inet[0]["local"], addr, "{addrs}");
    assert_eq!(inet[0]["prefixlen"].to_string(), plen, "{addrs}");

    let routes = ip_json(&c.netns, &["route", "show", "default"]);
    assert!(
        routes.as_array().is_some_and(|r| r
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == gateway && r["dev"] == "eth0")),
        "no `default via {gateway} dev eth0` in {}: {routes}",
        c.netns
    );
}

/// The `port list -o json` entry with container id `id`.
fn port_of(node: &vswitch_e2e::Node, id: &str) -> Option<Value> {
    node.ports().into_iter().find(|p| p["container_id"] == id)
}

/// (1) ADD's result is really there; ADD twice gives the same result; (2) CHECK passes, then
/// fails once the address is flushed by hand; (3) DEL twice succeeds, also without the netns.
#[test]
fn cni_add_check_del() {
    let Some(tb) = Testbed::new("cni_add_check_del") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default().without_underlay());
    let plugin = Plugin::new(&tb, &node.socket);
    let conf = plugin.conf("1.1.0", json!({}));
    let gw = node.gateway.to_string();

    // (1) ADD.
    let c = Container::new(&tb, "c0ffee01", Some("web-1"));
    let added = plugin.cmd(&c, "ADD", &conf);
    let result = added.ok_json();
    assert_eq!(result["cniVersion"], "1.1.0", "{result}");
    assert_eq!(result["interfaces"][0]["mtu"], POD_MTU, "{result}");
    assert!(
        result["ips"][0].get("version").is_none(),
        "1.x has no ips[].version: {result}"
    );
    assert_eq!(
        result["dns"],
        json!({
            "nameservers": ["198.19.96.10"],
            "search": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
            "options": ["ndots:5"]
        }),
        "the cluster DNS and the pod namespace's search path: {result}"
    );
    assert_result_is_real(&c, &result, &gw);
    ping_ok(&c.netns, &gw).unwrap();
    // The port is named after the pod and records the container.
    let port = port_of(&node, &c.id).unwrap_or_else(|| panic!("no port for {}", c.id));
    assert_eq!(port["name"], "web-1", "{port}");
    assert_eq!(port["namespace"], "default", "{port}");
    assert_eq!(port["ip"], result_ip(&result).to_string(), "{port}");

    // The same container asking again gets the same attachment.
    let again = plugin.cmd(&c, "ADD", &conf);
    assert_eq!(again.ok_json(), result, "second ADD differs");
    assert_eq!(node.ports().len(), 1);

    // (2) CHECK, as a runtime sends it: with the ADD result as prevResult.
    let check_conf = plugin.conf("1.1.0", json!({ "prevResult": result }));
    plugin.cmd(&c, "CHECK", &check_conf).ok_empty();
    ip_ok(&["-n", &c.netns, "addr", "flush", "dev", "eth0"]);
    let v = plugin.cmd(&c, "CHECK", &check_conf).err(101);
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains("interface check failed"),
        "{v}"
    );

    // (3) DEL twice: both succeed, nothing remains.
    plugin.cmd(&c, "DEL", &check_conf).ok_empty();
    assert!(port_of(&node, &c.id).is_none(), "port survived DEL");
    let links = ip_json(&c.netns, &["link", "show"]);
    assert!(
        !links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ifname"] == "eth0"),
        "eth0 survived DEL: {links}"
    );
    plugin.cmd(&c, "DEL", &conf).ok_empty();
    // CHECK after DEL: the container is unknown (code 3).
    plugin.cmd(&c, "CHECK", &check_conf).err(3);

    // Without K8S_POD_NAME, in CNI 0.4.0; then DEL after the netns is gone, without CNI_NETNS.
    let c2 = Container::new(&tb, "ab12cd34ef56ab78", None);
    let r2 = plugin
        .cmd(&c2, "ADD", &plugin.conf("0.4.0", json!({})))
        .ok_json();
    assert_eq!(r2["cniVersion"], "0.4.0", "{r2}");
    assert_eq!(r2["ips"][0]["version"], "4", "{r2}");
    assert!(r2["interfaces"][0].get("mtu").is_none(), "{r2}");
    assert_result_is_real(&c2, &r2, &gw);
    let port = port_of(&node, &c2.id).unwrap_or_else(|| panic!("no port for {}", c2.id));
    assert_eq!(port["name"], "cni-ab12cd34ef56", "{port}");
    ip_ok(&["netns", "del", &c2.netns]);
    let no_netns: Vec<_> = c2
        .env("DEL")
        .into_iter()
        .filter(|(k, _)| *k != "CNI_NETNS")
        .collect();
    plugin
        .run(&no_netns, &plugin.conf("0.4.0", json!({})))
        .ok_empty();
    plugin.cmd(&c2, "DEL", &conf).ok_empty();
    assert!(node.ports().is_empty(), "{:?}", node.ports());
}

/// Ids as containerd and podman make them: 64 hex digits.
const HEX_ID_PODMAN: &str = "4f1bf1b0f7ad4b6dd2f5c2c8a0e96ae2b3bb0aa3f6f5d0f05b5a3f0d7e4c1a90";
const HEX_ID_CTR: &str = "9e2c5d07a1b34f6e8d90c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6";
const HEX_ID_WEB_UPPER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const HEX_ID_WEB_LOWER: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// A container's environment as podman's CNI backend sets it: `K8S_POD_NAME` is the
/// container's name, and no other Kubernetes argument.
fn podman_env(c: &Container, name: &str, command: &str) -> Vec<(&'static str, String)> {
    let mut vars = c.env(command);
    vars.retain(|(k, _)| *k != "CNI_ARGS");
    vars.push(("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAME={name}")));
    vars
}

/// (8) Runtimes other than the kubelet: podman passes the container's name (capitals,
/// underscores) as `K8S_POD_NAME`, containerd's tools a 64-hex id and no name. Each one is
/// served (ADD, CHECK, DEL), named by a valid port name shown in `port list`, with the
/// runtime's name kept (`-o wide`, JSON); `Web_1` and `web_1` are two containers, with the
/// same names again after a daemon restart.
#[test]
fn cni_runtime_names_podman_and_containerd() {
    let Some(tb) = Testbed::new("cni_runtime_names_podman_and_containerd") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default().without_underlay());
    let plugin = Plugin::new(&tb, &node.socket);
    let conf = plugin.conf("1.0.0", json!({}));
    let gw = node.gateway.to_string();

    // podman run --network vswitch-e2e --name dazzling_chatterjee ...
    let c = Container::new(&tb, HEX_ID_PODMAN, None);
    let name = "dazzling_chatterjee";
    let result = plugin.run(&podman_env(&c, name, "ADD"), &conf).ok_json();
    assert_result_is_real(&c, &result, &gw);
    ping_ok(&c.netns, &gw).unwrap();
    let port = port_of(&node, &c.id).unwrap_or_else(|| panic!("no port for {}", c.id));
    let port_name = port["name"].as_str().unwrap().to_string();
    assert_eq!(port_name, "dazzling-chatterjee-02feebd9", "{port}");
    assert_eq!(port["runtime_name"], name, "{port}");
    assert_eq!(port["namespace"], "default", "{port}");
    assert!(port.get("runtime_namespace").is_none(), "{port}");
    let table = node.ctl_ok(&["port", "list"]);
    assert!(table.contains(&port_name), "{table}");
    let wide = node.ctl_ok(&["-o", "wide", "port", "list"]);
    assert!(
        wide.contains("RUNTIME-NAME") && wide.contains(name),
        "{wide}"
    );
    let again = plugin.run(&podman_env(&c, name, "ADD"), &conf).ok_json();
    assert_eq!(again, result, "second ADD differs");
    let check_conf = plugin.conf("1.0.0", json!({ "prevResult": result }));
    plugin
        .run(&podman_env(&c, name, "CHECK"), &check_conf)
        .ok_empty();
    plugin.run(&podman_env(&c, name, "DEL"), &conf).ok_empty();
    assert!(port_of(&node, &c.id).is_none(), "port survived DEL");
    plugin.run(&podman_env(&c, name, "DEL"), &conf).ok_empty();

    // ctr run --cni ...: a 64-hex id, no name.
    let c = Container::new(&tb, HEX_ID_CTR, None);
    let result = plugin.cmd(&c, "ADD", &conf).ok_json();
    assert_result_is_real(&c, &result, &gw);
    let port = port_of(&node, &c.id).unwrap_or_else(|| panic!("no port for {}", c.id));
    assert_eq!(port["name"], format!("cni-{}", &HEX_ID_CTR[..12]), "{port}");
    assert!(port.get("runtime_name").is_none(), "{port}");
    let check_conf = plugin.conf("1.0.0", json!({ "prevResult": result }));
    plugin.cmd(&c, "CHECK", &check_conf).ok_empty();
    plugin.cmd(&c, "DEL", &conf).ok_empty();
    assert!(port_of(&node, &c.id).is_none(), "port survived DEL");

    // Web_1 and web_1: two containers, two ports, two addresses that reach each other.
    let upper = Container::new(&tb, HEX_ID_WEB_UPPER, None);
    let lower = Container::new(&tb, HEX_ID_WEB_LOWER, None);
    let r_upper = plugin
        .run(&podman_env(&upper, "Web_1", "ADD"), &conf)
        .ok_json();
    let r_lower = plugin
        .run(&podman_env(&lower, "web_1", "ADD"), &conf)
        .ok_json();
    assert_ne!(result_ip(&r_upper), result_ip(&r_lower));
    ping_ok(&upper.netns, &result_ip(&r_lower).to_string()).unwrap();
    ping_ok(&lower.netns, &result_ip(&r_upper).to_string()).unwrap();
    let names = |node: &vswitch_e2e::Node| {
        let p_upper = port_of(node, &upper.id).expect("Web_1's port");
        let p_lower = port_of(node, &lower.id).expect("web_1's port");
        assert_eq!(p_upper["runtime_name"], "Web_1", "{p_upper}");
        assert_eq!(p_lower["runtime_name"], "web_1", "{p_lower}");
        (p_upper["name"].clone(), p_lower["name"].clone())
    };
    let before = names(&node);
    assert_ne!(before.0, before.1, "Web_1 and web_1 share a port name");
    let wide = node.ctl_ok(&["-o", "wide", "port", "list"]);
    assert!(
        wide.contains(" Web_1 ") && wide.contains(" web_1 "),
        "{wide}"
    );

    // Stable: the same names, addresses and results after a restart.
    tb.restart_daemon(&node);
    assert_eq!(names(&node), before, "names changed across a restart");
    let after = plugin
        .run(&podman_env(&upper, "Web_1", "ADD"), &conf)
        .ok_json();
    assert_eq!(after, r_upper, "ADD after restart differs");
    ping_ok(&upper.netns, &result_ip(&r_lower).to_string()).unwrap();
    for (c, n, r) in [(&upper, "Web_1", &r_upper), (&lower, "web_1", &r_lower)] {
        let check_conf = plugin.conf("1.0.0", json!({ "prevResult": r }));
        plugin
            .run(&podman_env(c, n, "CHECK"), &check_conf)
            .ok_empty();
        plugin.run(&podman_env(c, n, "DEL"), &conf).ok_empty();
    }
    assert!(node.ports().is_empty(), "{:?}", node.ports());
}

/// (4) 50 containers attached in parallel get 50 distinct working addresses.
#[test]
fn cni_fifty_parallel_adds() {
    const N: usize = 50;
    let Some(tb) = Testbed::new("cni_fifty_parallel_adds") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default().without_underlay());
    let plugin = Plugin::new(&tb, &node.socket);
    // The daemon serializes ADDs; give the 50th one room on a slow machine.
    let conf = plugin.conf("1.1.0", json!({"timeoutSeconds": 30}));
    let gw = node.gateway.to_string();
    let containers: Vec<Container> = (0..N)
        .map(|i| Container::new(&tb, &format!("par{i:02}"), Some(&format!("pod-{i:02}"))))
        .collect();

    let start = Instant::now();
    let results: Vec<Result<(Ipv4Addr, Duration), String>> = thread::scope(|s| {
        let handles: Vec<_> = containers
            .iter()
            .map(|c| {
                let (plugin, conf, gw) = (plugin.clone(), conf.clone(), gw.clone());
                s.spawn(move || {
                    let ran = plugin.cmd(c, "ADD", &conf);
                    if ran.status != Some(0) {
                        return Err(format!("ADD {}: {}", c.id, ran.describe()));
                    }
                    let ip = result_ip(&ran.json());
                    ping_ok(&c.netns, &gw)?;
                    Ok((ip, ran.took))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {N} failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let ips: BTreeSet<Ipv4Addr> = results.iter().flatten().map(|(ip, _)| *ip).collect();
    assert_eq!(ips.len(), N, "addresses are not distinct: {ips:?}");
    for ip in &ips {
        let o = ip.octets();
        assert!(
            o[..3] == [198, 18, 1] && o[3] > 1 && o[3] < 255,
            "{ip} outside the node's pod range"
        );
    }
    let slowest = results
        .iter()
        .flatten()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{N} parallel ADDs + pings in {:.2} s (slowest ADD {:.2} s)",
        elapsed.as_secs_f64(),
        slowest.as_secs_f64()
    );
    assert_eq!(node.ports().len(), N);

    // And 50 parallel DELs leave nothing behind.
    let dels: Vec<Ran> = thread::scope(|s| {
        let handles: Vec<_> = containers
            .iter()
            .map(|c| {
                let (plugin, conf) = (plugin.clone(), conf.clone());
                s.spawn(move || plugin.cmd(c, "DEL", &conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for d in &dels {
        d.ok_empty();
    }
    assert!(node.ports().is_empty(), "{:?}", node.ports());
}

/// (5) After a daemon restart with the same state dir, ADD of a known container returns the
/// same address (and the pod still works); a new container gets another one.
#[test]
fn cni_add_survives_daemon_restart() {
    let Some(tb) = Testbed::new("cni_add_survives_daemon_restart") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default().without_underlay());
    let plugin = Plugin::new(&tb, &node.socket);
    let conf = plugin.conf("1.1.0", json!({}));
    let gw = node.gateway.to_string();
    let c = Container::new(&tb, "restart01", Some("stateful-0"));
    let before = plugin.cmd(&c, "ADD", &conf).ok_json();

    tb.restart_daemon(&node);

    let after = plugin.cmd(&c, "ADD", &conf).ok_json();
    assert_eq!(after, before, "ADD after restart differs");
    assert_result_is_real(&c, &after, &gw);
    ping_ok(&c.netns, &gw).unwrap();
    let check_conf = plugin.conf("1.1.0", json!({ "prevResult": after }));
    plugin.cmd(&c, "CHECK", &check_conf).ok_empty();

    let c2 = Container::new(&tb, "restart02", Some("stateful-1"));
    let other = plugin.cmd(&c2, "ADD", &conf).ok_json();
    assert_ne!(result_ip(&other), result_ip(&before));
    ping_ok(&c2.netns, &result_ip(&before).to_string()).unwrap();
}

/// (6) STATUS is 0 with the daemon up and 50 with it stopped; ADD and DEL then ask the
/// runtime to try again later (11) rather than pretending.
#[test]
fn cni_status_follows_the_daemon() {
    let Some(tb) = Testbed::new("cni_status_follows_the_daemon") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default().without_underlay());
    let plugin = Plugin::new(&tb, &node.socket);
    let conf = plugin.conf("1.1.0", json!({"timeoutSeconds": 3}));
    let status = [("CNI_COMMAND", "STATUS".to_string())];
    plugin.run(&status, &conf).ok_empty();

    let c = Container::new(&tb, "status01", Some("status-0"));
    plugin.cmd(&c, "ADD", &conf).ok_json();
    tb.stop_daemon(&node);

    let ran = plugin.run(&status, &conf);
    let v = ran.err(50);
    assert_eq!(v["cniVersion"], "1.1.0");
    assert!(ran.took < Duration::from_secs(5), "{}", ran.describe());
    plugin.cmd(&c, "ADD", &conf).err(11);
    plugin.cmd(&c, "DEL", &conf).err(11);

    // Back up: the DEL the runtime retries now succeeds.
    tb.start_daemon(&node);
    plugin.run(&status, &conf).ok_empty();
    plugin.cmd(&c, "DEL", &conf).ok_empty();
    assert!(node.ports().is_empty());
}

/// (7) Two pods attached by the plugin talk to each other: busybox fetches nginx's page.
#[test]
fn cni_two_pods_talk() {
    let Some(tb) = Testbed::new("cni_two_pods_talk") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default().without_underlay());
    let plugin = Plugin::new(&tb, &node.socket);
    let conf = plugin.conf("1.0.0", json!({}));
    let server = Container::new(&tb, "nginx01", Some("nginx-server"));
    let client = Container::new(&tb, "busybox01", Some("busybox-client"));
    let server_ip = result_ip(&plugin.cmd(&server, "ADD", &conf).ok_json());
    let client_ip = result_ip(&plugin.cmd(&client, "ADD", &conf).ok_json());
    assert_ne!(server_ip, client_ip);
    let _nginx = tb.start_nginx_in(&server.netns, "nginx-server");

    let out = exec_in(
        &client.netns,
        Duration::from_secs(10),
        "busybox",
        &["wget", "-q", "-O-", &format!("http://{server_ip}/")],
    );
    assert!(
        out.status.success() && out.stdout_str().contains("Welcome to nginx"),
        "wget from busybox-client ({client_ip}) to nginx-server ({server_ip}): {}",
        out.describe()
    );
    ping_ok(&server.netns, &client_ip.to_string()).unwrap();
}

/// Starts a `vswitchd` with a /29 pod CIDR (5 usable addresses) in `netns`; waits until the
/// plugin's STATUS succeeds.
fn start_small_daemon(tb: &Testbed, netns: &str, plugin: &Plugin) -> Bg {
    let vswitchd = tb.bin("vswitchd").display().to_string();
    let state = tb.dir().join("small-state").display().to_string();
    let socket = plugin.socket.display().to_string();
    let bg = tb.spawn_in(
        netns,
        "vswitchd-small",
        &vswitchd,
        &[
            "--node",
            "node7",
            "--pod-cidr",
            "198.18.7.0/29",
            "--socket",
            &socket,
            "--state-dir",
            &state,
        ],
    );
    let status = [("CNI_COMMAND", "STATUS".to_string())];
    let conf = plugin.conf("1.1.0", json!({"timeoutSeconds": 2}));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ran = plugin.run(&status, &conf);
        if ran.status == Some(0) {
            return bg;
        }
        assert!(
            bg.is_running() && Instant::now() < deadline,
            "vswitchd with 198.18.7.0/29 did not come up: {}\n{}",
            ran.describe(),
            bg.output()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// (8) Bad input gets the spec's codes: missing CNI_NETNS (4), unsupported cniVersion (1),
/// malformed JSON (6); an exhausted subnet is 100. GC keeps only the listed attachments.
#[test]
fn cni_bad_input_and_exhaustion() {
    let Some(tb) = Testbed::new("cni_bad_input_and_exhaustion") else {
        return;
    };
    let node = tb.add_node(7, NodeOpts::no_daemon().without_underlay());
    let plugin = Plugin::new(&tb, &tb.dir().join("small.sock"));
    let daemon = start_small_daemon(&tb, &node.netns, &plugin);
    let conf = plugin.conf("1.1.0", json!({}));
    let c = Container::new(&tb, "bad01", Some("bad-0"));

    let mut no_netns = c.env("ADD");
    no_netns.retain(|(k, _)| *k != "CNI_NETNS");
    let v = plugin.run(&no_netns, &conf).err(4);
    assert!(v["msg"].as_str().unwrap().contains("CNI_NETNS"), "{v}");
    plugin.run(&[], &conf).err(4); // no CNI_COMMAND at all
    let v = plugin
        .cmd(&c, "ADD", &plugin.conf("0.3.1", json!({})))
        .err(1);
    assert!(v["msg"].as_str().unwrap().contains("0.3.1"), "{v}");
    plugin
        .cmd(&c, "ADD", "{\"cniVersion\": \"1.1.0\", \"name\": ")
        .err(6);
    plugin.cmd(&c, "ADD", "").err(6);
    let version = plugin
        .run(&[("CNI_COMMAND", "VERSION".to_string())], &conf)
        .ok_json();
    assert_eq!(
        version,
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    );
    // None of that attached anything.
    let ctl = |args: &[&str]| {
        let mut all = vec!["--socket", plugin.socket.to_str().unwrap(), "-o", "json"];
        all.extend(args);
        let out = vswitch_e2e::run_with_timeout(
            Command::new(tb.bin("vswitchctl")).args(&all),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(out.status.success(), "vswitchctl: {}", out.describe());
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(ctl(&["port", "list"]), json!([]));

    // 198.18.7.0/29: .2-.6 are the 5 pod addresses; the 6th ADD finds none.
    let cs: Vec<Container> = (0..6)
        .map(|i| Container::new(&tb, &format!("full{i}"), Some(&format!("full-{i}"))))
        .collect();
    let mut ips = BTreeSet::new();
    for c in &cs[..5] {
        ips.insert(result_ip(&plugin.cmd(c, "ADD", &conf).ok_json()));
    }
    let want: BTreeSet<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(198, 18, 7, i)).collect();
    assert_eq!(ips, want);
    let v = plugin.cmd(&cs[5], "ADD", &conf).err(100);
    assert_eq!(v["details"], "ip", "{v}");
    assert_eq!(
        ctl(&["port", "list"]).as_array().map(Vec::len),
        Some(5),
        "the failed ADD left something behind"
    );

    // GC keeps the two listed attachments and removes the other three; then there is room.
    let valid: Vec<Value> = cs[..2]
        .iter()
        .map(|c| json!({"containerID": c.id, "ifname": "eth0"}))
        .collect();
    let gc_conf = plugin.conf("1.1.0", json!({ "cni.dev/valid-attachments": valid }));
    plugin
        .run(&[("CNI_COMMAND", "GC".to_string())], &gc_conf)
        .ok_empty();
    let left: BTreeSet<String> = ctl(&["port", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["container_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(left, cs[..2].iter().map(|c| c.id.clone()).collect());
    for c in &cs[2..5] {
        let links = ip_json(&c.netns, &["link", "show"]);
        assert!(
            !links
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["ifname"] == "eth0"),
            "GC left eth0 in {}: {links}",
            c.netns
        );
    }
    let r = plugin.cmd(&cs[5], "ADD", &conf).ok_json();
    assert!(want.contains(&result_ip(&r)), "{r}");
    ping_ok(&cs[5].netns, "198.18.7.1").unwrap();

    // A daemon that accepts connections but never answers (stopped): the plugin gives up
    // within timeoutSeconds, STATUS with 50, ADD with 11.
    let _resume = Stopped::new(daemon.pid as i32);
    let quick = plugin.conf("1.1.0", json!({"timeoutSeconds": 1}));
    let ran = plugin.run(&[("CNI_COMMAND", "STATUS".to_string())], &quick);
    ran.err(50);
    assert!(ran.took < Duration::from_secs(3), "{}", ran.describe());
    let ran = plugin.cmd(&cs[0], "ADD", &quick);
    ran.err(11);
    assert!(ran.took < Duration::from_secs(3), "{}", ran.describe());
}

/// Stops a process (SIGSTOP) until dropped (SIGCONT), panics included.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Stopped {
        kill_pid(pid, libc::SIGSTOP);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        kill_pid(self.0, libc::SIGCONT);
    }
}
