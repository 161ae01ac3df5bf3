//! The handles tests hold on nodes and pods: `vswitchctl` on a node, commands and probes
//! (ping, wget, `ip -j`) inside a pod. Cheap to clone; the testbed owns what they name.

use super::host::{exec_in, ip_json};
use super::servers::spawn_bg;
use super::{Bg, NodeOpts, Shared, Testbed};
use crate::cmd::{self, run_with_timeout, OutputExt, DEFAULT_TIMEOUT};
use serde_json::Value;
use std::fmt::Display;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

/// A node: a network namespace running `vswitchd` (a cheap handle; clone freely).
#[derive(Clone)]
pub struct Node {
    pub(super) sh: Arc<Shared>,
    /// Node number N (subnet 198.18.N.0/24, underlay 198.19.0.N).
    pub n: u8,
    /// The node name given to `vswitchd --node` (`nodeN`).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its daemon's control socket.
    pub socket: PathBuf,
    /// Its daemon's state directory.
    pub state_dir: PathBuf,
    /// Its pod subnet, `198.18.N.0/24`.
    pub pod_cidr: String,
    /// Its pods' gateway, `198.18.N.1`.
    pub gateway: Ipv4Addr,
    /// Its underlay address, when connected.
    pub underlay: Option<Ipv4Addr>,
    /// Its underlay interface (inside the node netns), when connected.
    pub underlay_if: Option<String>,
}

/// A pod: a network namespace with the `eth0` the daemon created (a cheap handle).
#[derive(Clone)]
pub struct Pod {
    pub(super) sh: Arc<Shared>,
    /// The pod (port) name.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address, as `port list` reports it.
    pub ip: Ipv4Addr,
    /// Its MAC, as `port list` reports it.
    pub mac: String,
    /// The node it is attached to.
    pub node: Node,
}

impl Node {
    /// Runs `vswitchctl --socket S ARGS` (from the host: the socket is a file) within 20 s.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_timeout(DEFAULT_TIMEOUT, args)
    }

    pub(super) fn ctl_timeout(&self, timeout: Duration, args: &[&str]) -> Output {
        let bin = self.sh.bin("vswitchctl");
        let mut cmd = Command::new(&bin);
        cmd.arg("--socket").arg(&self.socket).args(args);
        run_with_timeout(&mut cmd, timeout)
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()))
    }

    /// Runs `vswitchctl ARGS`, panics unless it succeeds; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "`vswitchctl {}` on {} failed: {}",
            args.join(" "),
            self.name,
            out.describe()
        );
        out.stdout_str()
    }

    /// Runs `vswitchctl -o json ARGS`, panics unless it succeeds with JSON on stdout.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend(args);
        let text = self.ctl_ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "`vswitchctl {}` printed no JSON ({e}):\n{text}",
                all.join(" ")
            )
        })
    }

    /// `node show -o json`.
    pub fn show(&self) -> Value {
        self.ctl_json(&["node", "show"])
    }

    /// `port list -o json`.
    pub fn ports(&self) -> Vec<Value> {
        match self.ctl_json(&["port", "list"]) {
            Value::Array(v) => v,
            other => panic!("`port list -o json` is not an array: {other}"),
        }
    }

    /// The `port list -o json` entry named `name` (namespace `default`).
    pub fn port(&self, name: &str) -> Option<Value> {
        self.ports()
            .into_iter()
            .find(|p| p["name"] == name && p["namespace"] == "default")
    }

    /// `peer add` of `other` on this node, with `other`'s underlay, subnet and VTEP MAC (from
    /// its `node show`).
    pub fn add_peer(&self, other: &Node) {
        let show = other.show();
        let mac = show["vtep_mac"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: node show has no vtep_mac: {show}", other.name));
        self.peer_add(other, &["--vtep-mac", mac]);
    }

    /// `peer add` of `other` on this node with its underlay and subnet only: the daemon derives
    /// the VTEP MAC of a vswitchd peer from its underlay address.
    pub fn add_peer_derived_mac(&self, other: &Node) {
        self.peer_add(other, &[]);
    }

    fn peer_add(&self, other: &Node, extra: &[&str]) {
        let underlay = other
            .underlay
            .unwrap_or_else(|| panic!("{} has no underlay", other.name))
            .to_string();
        let mut args = vec![
            "peer",
            "add",
            &other.name,
            "--underlay",
            &underlay,
            "--pod-cidr",
            &other.pod_cidr,
        ];
        args.extend(extra);
        self.ctl_ok(&args);
    }

    /// `peer list -o json`.
    pub fn peers(&self) -> Vec<Value> {
        match self.ctl_json(&["peer", "list"]) {
            Value::Array(v) => v,
            other => panic!("`peer list -o json` is not an array: {other}"),
        }
    }

    /// The arguments (after the binary) of this node's `vswitchd` with `opts`: its name,
    /// subnet, socket, state dir and underlay address, then [`NodeOpts::engine_args`], the
    /// underlay MTU and `opts`' extra arguments. The one place a daemon's command line is
    /// built: the testbed's daemons and the ones tests run themselves ([`crate::daemon`]).
    pub fn vswitchd_args(&self, opts: &NodeOpts) -> Vec<String> {
        let mut argv = vec!["--node".to_string(), self.name.clone()];
        if !opts.leased_subnet {
            argv.extend(["--pod-cidr".into(), self.pod_cidr.clone()]);
        }
        argv.extend([
            "--socket".into(),
            self.socket.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
        ]);
        if let Some(addr) = self.underlay {
            argv.extend(["--underlay".into(), addr.to_string()]);
        }
        argv.extend(opts.engine_args());
        if let Some(mtu) = opts.mtu {
            argv.extend(["--mtu".into(), mtu.to_string()]);
        }
        argv.extend(opts.extra_args.iter().cloned());
        argv
    }

    /// Takes the node's `pod_cidr` and `gateway` from its daemon's `node show` (a node whose
    /// daemon leased its subnet from a datastore).
    pub fn refresh_subnet(&mut self) {
        let show = self.show();
        let cidr = show["pod_cidr"].as_str().expect("node show has pod_cidr");
        let gw = show["gateway"].as_str().and_then(|g| g.parse().ok());
        self.pod_cidr = cidr.to_string();
        self.gateway = gw.expect("node show has a gateway");
    }

    /// `service list -o json`.
    pub fn services(&self) -> Vec<Value> {
        match self.ctl_json(&["service", "list"]) {
            Value::Array(v) => v,
            other => panic!("`service list -o json` is not an array: {other}"),
        }
    }

    /// The `service list -o json` entry named `name` (namespace default).
    pub fn service(&self, name: &str) -> Value {
        self.services()
            .into_iter()
            .find(|s| s["name"] == name && s["namespace"] == "default")
            .unwrap_or_else(|| panic!("{}: no service {name} in `service list`", self.name))
    }

    /// The endpoints `service list` reports for `name`, sorted.
    pub fn endpoints(&self, name: &str) -> Vec<String> {
        let s = self.service(name);
        let mut v: Vec<String> = s["endpoints"]
            .as_array()
            .unwrap_or_else(|| panic!("no endpoints array: {s}"))
            .iter()
            .map(|e| e.as_str().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    }

    /// `stats -o json`.
    pub fn stats(&self) -> Value {
        self.ctl_json(&["stats"])
    }

    /// `stats -o json` `.drops[reason]`; panics when the reason is not reported.
    pub fn drops(&self, reason: &str) -> u64 {
        let stats = self.stats();
        stats["drops"][reason]
            .as_u64()
            .unwrap_or_else(|| panic!("`stats -o json` has no drops.{reason}: {stats}"))
    }

    /// Runs `prog args` inside the node's netns (20 s deadline).
    pub fn exec(&self, prog: &str, args: &[&str]) -> Output {
        exec_in(&self.netns, DEFAULT_TIMEOUT, prog, args)
    }

    /// The daemon's log so far (stderr and stdout, across restarts).
    pub fn log(&self) -> String {
        fs::read_to_string(self.sh.dir.join(format!("node{}.log", self.n))).unwrap_or_default()
    }
}

impl Pod {
    /// A handle on a pod namespace that `vswitchd` did not attach (for example a pod of a
    /// kernel-only node in an interop test); `node` is the node it belongs to.
    pub fn external(tb: &Testbed, name: &str, netns: &str, ip: Ipv4Addr, node: &Node) -> Pod {
        Pod {
            sh: tb.sh.clone(),
            name: name.to_string(),
            netns: netns.to_string(),
            ip,
            mac: String::new(),
            node: node.clone(),
        }
    }

    /// Runs `prog args` inside the pod (20 s deadline).
    pub fn exec(&self, prog: &str, args: &[&str]) -> Output {
        exec_in(&self.netns, DEFAULT_TIMEOUT, prog, args)
    }

    /// Runs `prog args` inside the pod with a deadline.
    pub fn exec_timeout(&self, timeout: Duration, prog: &str, args: &[&str]) -> Output {
        exec_in(&self.netns, timeout, prog, args)
    }

    /// Runs `prog args` inside the pod; panics unless it succeeds; returns stdout.
    pub fn exec_ok(&self, prog: &str, args: &[&str]) -> String {
        let out = self.exec(prog, args);
        assert!(
            out.status.success(),
            "`{}` in pod {} failed: {}",
            cmd::render(prog, args),
            self.name,
            out.describe()
        );
        out.stdout_str()
    }

    /// `busybox ping -c 3 -W 2 DST` from the pod.
    pub fn ping(&self, dst: impl Display) -> Output {
        let dst = dst.to_string();
        self.exec("busybox", &["ping", "-c", "3", "-W", "2", &dst])
    }

    /// `busybox wget -q -O- URL` from the pod, killed after 10 s (no `-T`: busybox 1.35's
    /// `wget -T` crashes).
    pub fn wget(&self, url: &str) -> Output {
        self.exec_timeout(
            Duration::from_secs(10),
            "busybox",
            &["wget", "-q", "-O-", url],
        )
    }

    /// Waits (at most 5 s) until something listens on TCP `port` in this pod, IPv4 or
    /// dual-stack (iperf3's sockets are); panics otherwise.
    pub fn wait_listening(&self, port: u16) {
        let needle = format!(":{port:04X} ");
        for _ in 0..200 {
            let tcp = self
                .exec("cat", &["/proc/net/tcp", "/proc/net/tcp6"])
                .stdout_str();
            if tcp
                .lines()
                .any(|l| l.contains(&needle) && l.contains(" 0A "))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("nothing listens on port {port} in {}", self.name);
    }

    /// `ip -n NETNS -j ARGS`, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        ip_json(&self.netns, args)
    }

    /// Runs `prog args` in the background inside the pod; killed when the guard drops.
    pub fn spawn(&self, label: &str, prog: &str, args: &[&str]) -> Bg {
        spawn_bg(&self.sh, &self.netns, label, prog, args)
    }
}
