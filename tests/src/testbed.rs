//! The testbed: nodes and pods as network namespaces, an underlay bridge, `vswitchd` daemons,
//! background servers. Everything carries a per-test prefix and is removed when the
//! [`Testbed`] is dropped, also when the test panics.
//!
//! Names, for prefix `v1a2b`:
//!
//! | what | name |
//! |---|---|
//! | node N netns | `v1a2bnN` |
//! | underlay hub netns (bridge `v1a2bbr` inside) | `v1a2bhub` |
//! | node N underlay veth (in the node) / its peer (in the hub) | `v1a2buN` / `v1a2bhN` |
//! | pod netns | `v1a2b-NAME` |
//! | temp dir (sockets, state, logs, nginx) | `/tmp/vswitch-e2e/v1a2b/` |
//!
//! Addresses follow design.md section 6: node N has pods 198.18.N.0/24 (gateway 198.18.N.1)
//! and underlay 198.19.0.N/24.

use crate::cmd::{self, run_with_timeout, OutputExt, DEFAULT_TIMEOUT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Where named network namespaces live.
const NETNS_DIR: &str = "/var/run/netns";
/// Per-netns files that `ip netns exec` bind-mounts over /etc.
const ETC_NETNS_DIR: &str = "/etc/netns";
/// How long a daemon may take to answer `node show` after it was started.
const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a daemon may take to exit after SIGTERM before it gets SIGKILL.
const DAEMON_STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 200;

/// How a node is set up by [`Testbed::add_node`].
#[derive(Debug, Clone)]
pub struct NodeOpts {
    /// `--datapath` (`auto`, `uring`, `epoll`); `None` leaves the daemon's default.
    pub datapath: Option<String>,
    /// Connect the node to the shared underlay bridge (198.19.0.N/24) and pass `--underlay`.
    pub underlay: bool,
    /// Underlay MTU (veth MTU and `--mtu`); `None` leaves 1500.
    pub mtu: Option<u32>,
    /// Start `vswitchd` in the node (false: namespace and underlay only).
    pub start_daemon: bool,
    /// More `vswitchd` arguments.
    pub extra_args: Vec<String>,
}

impl Default for NodeOpts {
    fn default() -> Self {
        NodeOpts {
            datapath: None,
            underlay: true,
            mtu: None,
            start_daemon: true,
            extra_args: Vec::new(),
        }
    }
}

impl NodeOpts {
    /// A node running `vswitchd --datapath KIND`.
    pub fn datapath(kind: &str) -> Self {
        NodeOpts {
            datapath: Some(kind.to_string()),
            ..Self::default()
        }
    }

    /// A node without a daemon: its namespace and underlay only.
    pub fn no_daemon() -> Self {
        NodeOpts {
            start_daemon: false,
            ..Self::default()
        }
    }

    /// Without the underlay (no `--underlay`: a node that cannot reach peers).
    pub fn without_underlay(mut self) -> Self {
        self.underlay = false;
        self
    }

    /// With this underlay MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// With one more `vswitchd` argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }
}

/// What the testbed must undo, guarded by [`Shared::res`].
#[derive(Default)]
struct Resources {
    /// Created network namespaces, in creation order.
    netns: Vec<String>,
    /// Directories created under /etc/netns.
    etc_netns: Vec<PathBuf>,
    /// Node daemons by node number.
    daemons: BTreeMap<u8, Daemon>,
    /// Background processes by id.
    bg: BTreeMap<u64, BgProc>,
    next_bg: u64,
    /// Logs printed when the test fails: (label, path).
    logs: Vec<(String, PathBuf)>,
    /// The hub netns, once created.
    hub: Option<String>,
    cleaned: bool,
}

struct Daemon {
    child: Option<Child>,
    /// Full command line after `ip netns exec NS`.
    argv: Vec<String>,
    netns: String,
    log: PathBuf,
    socket: PathBuf,
}

struct BgProc {
    label: String,
    child: Child,
}

struct Shared {
    test: String,
    prefix: String,
    dir: PathBuf,
    bin_dir: PathBuf,
    res: Mutex<Resources>,
}

impl Shared {
    fn res(&self) -> MutexGuard<'_, Resources> {
        // A panic while holding the lock must not stop the cleanup.
        self.res.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bin(&self, name: &str) -> PathBuf {
        let path = self.bin_dir.join(name);
        if !path.is_file() {
            panic!(
                "{name} not found at {}: run `make build` (cargo build --release --workspace) \
                 first, or point VSWITCH_BIN_DIR at the directory holding it",
                path.display()
            );
        }
        warn_if_stale(&path);
        path
    }

    fn stop_bg(&self, id: u64) {
        let proc = self.res().bg.remove(&id);
        if let Some(mut p) = proc {
            terminate(&mut p.child, Duration::from_secs(2));
        }
    }
}

/// A per-test testbed. Dropping it removes everything it created.
pub struct Testbed {
    sh: Arc<Shared>,
}

/// A node: a network namespace running `vswitchd` (a cheap handle; clone freely).
#[derive(Clone)]
pub struct Node {
    sh: Arc<Shared>,
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
    sh: Arc<Shared>,
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

/// A background process (a server): killed when dropped, or when the testbed is.
pub struct Bg {
    sh: Arc<Shared>,
    id: u64,
    /// Its pid.
    pub pid: u32,
    /// Its label (used in log file names).
    pub label: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.sh.stop_bg(self.id);
    }
}

impl Bg {
    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        let mut res = self.sh.res();
        match res.bg.get_mut(&self.id) {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Why a testbed cannot be built on this machine (a missing kernel feature).
#[derive(Debug, Clone)]
pub struct Skip(pub String);

impl Testbed {
    /// A new testbed for `test`, or `None` (after printing why, uncaptured) when this kernel
    /// lacks a feature the testbed needs. Set `VSWITCH_E2E_NO_SKIP=1` to make that a failure.
    ///
    /// Panics when not run as root or when `ip` is missing: those are not skips.
    pub fn new(test: &str) -> Option<Testbed> {
        match Self::try_new(test) {
            Ok(tb) => Some(tb),
            Err(Skip(reason)) => {
                if std::env::var_os("VSWITCH_E2E_NO_SKIP").is_some_and(|v| v != "0") {
                    panic!("{test}: {reason} (VSWITCH_E2E_NO_SKIP is set)");
                }
                // Written to the real stderr, past the test harness's capture: never silent.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: this kernel lacks a feature the testbed needs: {reason}"
                );
                None
            }
        }
    }

    /// Like [`Testbed::new`], returning the skip reason instead of printing it.
    pub fn try_new(test: &str) -> Result<Testbed, Skip> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!(
                "{test}: the end-to-end tests create network namespaces and must run as root \
                 (run `make test` as root)"
            );
        }
        if which("ip").is_none() {
            panic!("{test}: `ip` (iproute2) is not installed: run `make deps`");
        }
        sweep_stale();
        let (prefix, dir) = claim_prefix();
        let tb = Testbed {
            sh: Arc::new(Shared {
                test: test.to_string(),
                prefix,
                dir,
                bin_dir: bin_dir(),
                res: Mutex::new(Resources::default()),
            }),
        };
        probe_kernel(&tb.sh.prefix)?;
        Ok(tb)
    }

    /// The per-test name prefix (`v` and 4 hex digits).
    pub fn prefix(&self) -> &str {
        &self.sh.prefix
    }

    /// The per-test temp dir (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.sh.dir
    }

    /// Where `vswitchd` and `vswitchctl` are taken from.
    pub fn bin_dir(&self) -> &Path {
        &self.sh.bin_dir
    }

    /// Path of one of the project's binaries; panics with a hint when it was not built.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.sh.bin(name)
    }

    /// The netns name a pod called `name` gets.
    pub fn pod_netns_name(&self, name: &str) -> String {
        format!("{}-{name}", self.sh.prefix)
    }

    /// Creates network namespace `name` (which must start with the prefix) with loopback up,
    /// registered for removal.
    pub fn create_netns(&self, name: &str) -> String {
        assert!(
            name.starts_with(&self.sh.prefix),
            "netns {name} lacks the test prefix {}",
            self.sh.prefix
        );
        ip_ok(&["netns", "add", name]);
        self.sh.res().netns.push(name.to_string());
        ip_ok(&["-n", name, "link", "set", "lo", "up"]);
        name.to_string()
    }

    fn ensure_hub(&self) -> String {
        if let Some(hub) = self.sh.res().hub.clone() {
            return hub;
        }
        let hub = self.create_netns(&format!("{}hub", self.sh.prefix));
        let br = format!("{}br", self.sh.prefix);
        ip_ok(&["-n", &hub, "link", "add", &br, "type", "bridge"]);
        ip_ok(&["-n", &hub, "link", "set", &br, "up"]);
        self.sh.res().hub = Some(hub.clone());
        hub
    }

    /// Adds node `n`: netns `<prefix>n<N>`, its underlay (unless disabled) and, unless
    /// disabled, its `vswitchd`, waiting until the daemon answers.
    pub fn add_node(&self, n: u8, opts: NodeOpts) -> Node {
        assert!((1..=254).contains(&n), "node number {n} out of 1..=254");
        let p = &self.sh.prefix;
        let netns = self.create_netns(&format!("{p}n{n}"));
        let node_dir = self.sh.dir.join(format!("node{n}"));
        fs::create_dir_all(&node_dir).expect("creating the node dir");
        let mut node = Node {
            sh: self.sh.clone(),
            n,
            name: format!("node{n}"),
            netns: netns.clone(),
            socket: node_dir.join("vswitchd.sock"),
            state_dir: node_dir.join("state"),
            pod_cidr: format!("198.18.{n}.0/24"),
            gateway: Ipv4Addr::new(198, 18, n, 1),
            underlay: None,
            underlay_if: None,
        };
        if opts.underlay {
            let hub = self.ensure_hub();
            let (ul, hl, br) = (format!("{p}u{n}"), format!("{p}h{n}"), format!("{p}br"));
            ip_ok(&[
                "link", "add", &ul, "netns", &netns, "type", "veth", "peer", "name", &hl, "netns",
                &hub,
            ]);
            if let Some(mtu) = opts.mtu {
                let mtu = mtu.to_string();
                ip_ok(&["-n", &netns, "link", "set", &ul, "mtu", &mtu]);
                ip_ok(&["-n", &hub, "link", "set", &hl, "mtu", &mtu]);
            }
            ip_ok(&["-n", &hub, "link", "set", &hl, "master", &br, "up"]);
            let addr = Ipv4Addr::new(198, 19, 0, n);
            ip_ok(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &ul,
            ]);
            ip_ok(&["-n", &netns, "link", "set", &ul, "up"]);
            node.underlay = Some(addr);
            node.underlay_if = Some(ul);
        }
        if opts.start_daemon {
            let vswitchd = self.sh.bin("vswitchd");
            let mut argv = vec![
                vswitchd.display().to_string(),
                "--node".into(),
                node.name.clone(),
                "--pod-cidr".into(),
                node.pod_cidr.clone(),
                "--socket".into(),
                node.socket.display().to_string(),
                "--state-dir".into(),
                node.state_dir.display().to_string(),
            ];
            if let Some(addr) = node.underlay {
                argv.extend(["--underlay".into(), addr.to_string()]);
            }
            if let Some(dp) = &opts.datapath {
                argv.extend(["--datapath".into(), dp.clone()]);
            }
            if let Some(mtu) = opts.mtu {
                argv.extend(["--mtu".into(), mtu.to_string()]);
            }
            argv.extend(opts.extra_args.iter().cloned());
            let log = self.sh.dir.join(format!("node{n}.log"));
            {
                let mut res = self.sh.res();
                res.logs
                    .push((format!("vswitchd node{n} ({netns})"), log.clone()));
                res.daemons.insert(
                    n,
                    Daemon {
                        child: None,
                        argv,
                        netns,
                        log,
                        socket: node.socket.clone(),
                    },
                );
            }
            self.start_daemon(&node);
        }
        node
    }

    /// Starts (again) the daemon of `node` with the arguments it was first started with, and
    /// waits until it answers `node show`. Panics, with the daemon's log, when it does not.
    pub fn start_daemon(&self, node: &Node) {
        {
            let mut res = self.sh.res();
            let d = res
                .daemons
                .get_mut(&node.n)
                .unwrap_or_else(|| panic!("node{} has no daemon", node.n));
            assert!(d.child.is_none(), "node{} daemon already runs", node.n);
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&d.log)
                .expect("opening the daemon log");
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &d.netns])
                .args(&d.argv)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log fd"))
                .stderr(log);
            die_with_parent(&mut cmd);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("starting vswitchd for node{}: {e}", node.n));
            d.child = Some(child);
        }
        let deadline = Instant::now() + DAEMON_READY_TIMEOUT;
        loop {
            if let Some(status) = self.daemon_exit_status(node.n) {
                panic!(
                    "vswitchd of node{} exited during startup ({status}); its log:\n{}",
                    node.n,
                    tail(&node.log(), LOG_TAIL_LINES)
                );
            }
            let out = node.ctl_timeout(Duration::from_secs(3), &["--timeout", "2", "node", "show"]);
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "vswitchd of node{} did not answer `node show` within {:?}: {}\nits log:\n{}",
                    node.n,
                    DAEMON_READY_TIMEOUT,
                    out.describe(),
                    tail(&node.log(), LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn daemon_exit_status(&self, n: u8) -> Option<std::process::ExitStatus> {
        let mut res = self.sh.res();
        let child = res.daemons.get_mut(&n)?.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// Stops the daemon of `node` with SIGTERM and asserts it exited cleanly (status 0 within
    /// 3 s; otherwise it is killed and the test fails).
    pub fn stop_daemon(&self, node: &Node) {
        let child = {
            let mut res = self.sh.res();
            res.daemons.get_mut(&node.n).and_then(|d| d.child.take())
        };
        let Some(mut child) = child else {
            panic!("node{} daemon is not running", node.n);
        };
        let clean = terminate(&mut child, DAEMON_STOP_TIMEOUT);
        match clean {
            Some(status) if status.success() => {}
            other => panic!(
                "vswitchd of node{} did not exit cleanly on SIGTERM within {:?} ({}); its log:\n{}",
                node.n,
                DAEMON_STOP_TIMEOUT,
                match other {
                    Some(s) => s.to_string(),
                    None => "killed".into(),
                },
                tail(&node.log(), LOG_TAIL_LINES)
            ),
        }
    }

    /// SIGTERM the daemon of `node`, then start it again with the same socket and state dir.
    pub fn restart_daemon(&self, node: &Node) {
        self.stop_daemon(node);
        self.start_daemon(node);
    }

    /// Makes every node a peer of every other (`peer add` on each side).
    pub fn mesh(&self, nodes: &[&Node]) {
        for a in nodes {
            for b in nodes {
                if a.n != b.n {
                    a.add_peer(b);
                }
            }
        }
    }

    /// Attaches a pod called `name` with `labels` to `node` (`port add`, address allocated)
    /// in a new netns `<prefix>-<name>`.
    pub fn add_pod(&self, node: &Node, name: &str, labels: &[(&str, &str)]) -> Pod {
        self.add_pod_with(node, name, labels, &[])
    }

    /// Like [`Testbed::add_pod`], with more `port add` arguments (`--ip`, `--mac`, ...).
    pub fn add_pod_with(
        &self,
        node: &Node,
        name: &str,
        labels: &[(&str, &str)],
        extra: &[&str],
    ) -> Pod {
        let netns = self.create_netns(&self.pod_netns_name(name));
        let label_args: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["port", "add", name, "--netns", &netns];
        for l in &label_args {
            args.extend(["--label", l]);
        }
        args.extend(extra);
        node.ctl_ok(&args);
        let port = node
            .port(name)
            .unwrap_or_else(|| panic!("pod {name} missing from `port list` after `port add`"));
        let ip = port["ip"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("port {name} has no valid ip: {port}"));
        let mac = port["mac"].as_str().unwrap_or_default().to_string();
        Pod {
            sh: self.sh.clone(),
            name: name.to_string(),
            netns,
            ip,
            mac,
            node: node.clone(),
        }
    }

    /// Runs `prog args` in background in netns `netns`, output to a log in the temp dir; the
    /// process is killed when the returned guard (or the testbed) is dropped. Call it from the
    /// test's own thread: the process gets SIGTERM when the thread that spawned it ends.
    pub fn spawn_in(&self, netns: &str, label: &str, prog: &str, args: &[&str]) -> Bg {
        spawn_bg(&self.sh, netns, label, prog, args)
    }

    /// Starts nginx in `pod` (its own config, logs and page in the temp dir; `listen 80`,
    /// page "Welcome to nginx!") and waits until it serves from inside the pod.
    pub fn start_nginx(&self, pod: &Pod) -> Bg {
        if which("nginx").is_none() {
            panic!("nginx is not installed: run `make deps`");
        }
        let dir = self.sh.dir.join(format!("nginx-{}", pod.name));
        let html = dir.join("html");
        fs::create_dir_all(dir.join("tmp")).expect("creating the nginx dir");
        fs::create_dir_all(&html).expect("creating the nginx html dir");
        fs::write(html.join("index.html"), nginx_page(&pod.name)).expect("writing the page");
        let d = dir.display();
        let conf = format!(
            "user root;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20   access_log {d}/access.log;\n\
             \x20   client_body_temp_path {d}/tmp/body;\n\
             \x20   proxy_temp_path {d}/tmp/proxy;\n\
             \x20   default_type text/html;\n\
             \x20   server {{\n\
             \x20       listen 80;\n\
             \x20       server_name _;\n\
             \x20       root {d}/html;\n\
             \x20       index index.html;\n\
             \x20   }}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("writing nginx.conf");
        let conf_s = conf_path.display().to_string();
        let err_s = dir.join("error.log").display().to_string();
        let prefix_s = format!("{d}/");
        let bg = self.spawn_in(
            &pod.netns,
            &format!("nginx-{}", pod.name),
            "nginx",
            &[
                "-p",
                &prefix_s,
                "-e",
                &err_s,
                "-c",
                &conf_s,
                "-g",
                "daemon off;",
            ],
        );
        self.sh.res().logs.push((
            format!("nginx error.log of {}", pod.name),
            dir.join("error.log"),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = pod.exec_timeout(
                Duration::from_secs(3),
                "busybox",
                &["wget", "-q", "-O-", "http://127.0.0.1/"],
            );
            if out.status.success() && out.stdout_str().contains("Welcome to nginx") {
                return bg;
            }
            if !bg.is_running() || Instant::now() >= deadline {
                panic!(
                    "nginx in pod {} did not come up (running: {}): {}\nnginx output:\n{}\n\
                     error.log:\n{}",
                    pod.name,
                    bg.is_running(),
                    out.describe(),
                    bg.output(),
                    fs::read_to_string(&err_s).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes `/etc/netns/<pod netns>/resolv.conf` (what `ip netns exec` shows the pod as
    /// /etc/resolv.conf); removed on drop.
    pub fn set_resolv_conf(&self, pod: &Pod, text: &str) {
        self.set_resolv_conf_netns(&pod.netns, text);
    }

    /// [`Testbed::set_resolv_conf`] for any netns of this testbed.
    pub fn set_resolv_conf_netns(&self, netns: &str, text: &str) {
        assert!(netns.starts_with(&self.sh.prefix), "{netns} is not ours");
        let dir = Path::new(ETC_NETNS_DIR).join(netns);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        {
            let mut res = self.sh.res();
            if !res.etc_netns.contains(&dir) {
                res.etc_netns.push(dir.clone());
            }
        }
        fs::write(dir.join("resolv.conf"), text).expect("writing resolv.conf");
    }

    /// Prints the tail of every daemon and server log to stderr (captured by the test harness
    /// and shown for failed tests).
    pub fn dump_logs(&self) {
        let logs = self.sh.res().logs.clone();
        eprintln!(
            "===== testbed {} of {} ({}) =====",
            self.sh.prefix,
            self.sh.test,
            self.sh.dir.display()
        );
        for (label, path) in logs {
            let text = fs::read_to_string(&path).unwrap_or_else(|e| format!("<unreadable: {e}>"));
            eprintln!(
                "----- {label}: {} (last {LOG_TAIL_LINES} lines) -----\n{}",
                path.display(),
                tail(&text, LOG_TAIL_LINES)
            );
        }
    }

    /// Removes everything; returns what could not be removed.
    fn cleanup(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut res = self.sh.res();
        if res.cleaned {
            return problems;
        }
        res.cleaned = true;
        // 1. Background servers.
        let bgs = std::mem::take(&mut res.bg);
        for (_, mut p) in bgs {
            if terminate(&mut p.child, Duration::from_secs(2)).is_none() {
                problems.push(format!("{} needed SIGKILL", p.label));
            }
        }
        // 2. Daemons: SIGTERM, SIGKILL after 3 s.
        for (n, d) in res.daemons.iter_mut() {
            if let Some(mut child) = d.child.take() {
                match terminate(&mut child, DAEMON_STOP_TIMEOUT) {
                    Some(s) if s.success() => {}
                    Some(s) => eprintln!("[harness] vswitchd of node{n} exited with {s}"),
                    None => eprintln!("[harness] vswitchd of node{n} needed SIGKILL"),
                }
            }
            let _ = fs::remove_file(&d.socket);
        }
        // 3. Whatever still runs inside our namespaces.
        let netns: Vec<String> = res.netns.iter().rev().cloned().collect();
        for ns in &netns {
            kill_netns_pids(ns);
        }
        // 4. The namespaces (their links go with them), newest first.
        for ns in &netns {
            let out = ip(&["netns", "del", ns]);
            if !out.status.success() && Path::new(NETNS_DIR).join(ns).exists() {
                problems.push(format!("ip netns del {ns}: {}", out.stderr_str().trim()));
            }
        }
        res.netns.clear();
        // 5. /etc/netns entries.
        for dir in res.etc_netns.drain(..) {
            if let Err(e) = fs::remove_dir_all(&dir) {
                if dir.exists() {
                    problems.push(format!("removing {}: {e}", dir.display()));
                }
            }
        }
        drop(res);
        // 6. Anything with our prefix that escaped (links in the root netns, netns).
        problems.extend(remove_by_prefix(&self.sh.prefix));
        // 7. The temp dir.
        if std::env::var_os("VSWITCH_E2E_KEEP_DIR").is_none() {
            if let Err(e) = fs::remove_dir_all(&self.sh.dir) {
                problems.push(format!("removing {}: {e}", self.sh.dir.display()));
            }
        }
        problems
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let failing = thread::panicking();
        if failing || std::env::var_os("VSWITCH_E2E_LOGS").is_some() {
            self.dump_logs();
        }
        let problems = self.cleanup();
        if !problems.is_empty() {
            let msg = format!(
                "testbed {} of {}: cleanup problems:\n  {}",
                self.sh.prefix,
                self.sh.test,
                problems.join("\n  ")
            );
            if failing {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

impl Node {
    /// Runs `vswitchctl --socket S ARGS` (from the host: the socket is a file) within 20 s.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_timeout(DEFAULT_TIMEOUT, args)
    }

    fn ctl_timeout(&self, timeout: Duration, args: &[&str]) -> Output {
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
        let underlay = other
            .underlay
            .unwrap_or_else(|| panic!("{} has no underlay", other.name))
            .to_string();
        let show = other.show();
        let mac = show["vtep_mac"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: node show has no vtep_mac: {show}", other.name))
            .to_string();
        self.ctl_ok(&[
            "peer",
            "add",
            &other.name,
            "--underlay",
            &underlay,
            "--pod-cidr",
            &other.pod_cidr,
            "--vtep-mac",
            &mac,
        ]);
    }

    /// `peer list -o json`.
    pub fn peers(&self) -> Vec<Value> {
        match self.ctl_json(&["peer", "list"]) {
            Value::Array(v) => v,
            other => panic!("`peer list -o json` is not an array: {other}"),
        }
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

    /// `ip -n NETNS -j ARGS`, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-n", self.netns.as_str(), "-j"];
        all.extend(args);
        let out = ip(&all);
        assert!(
            out.status.success(),
            "`ip {}` failed: {}",
            all.join(" "),
            out.describe()
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("`ip {}` printed no JSON: {e}", all.join(" ")))
    }

    /// Runs `prog args` in the background inside the pod; killed when the guard drops.
    pub fn spawn(&self, label: &str, prog: &str, args: &[&str]) -> Bg {
        spawn_bg(&self.sh, &self.netns, label, prog, args)
    }
}

fn spawn_bg(sh: &Arc<Shared>, netns: &str, label: &str, prog: &str, args: &[&str]) -> Bg {
    let mut res = sh.res();
    let id = res.next_bg;
    res.next_bg += 1;
    let log = sh.dir.join(format!("bg{id}-{label}.log"));
    let file = fs::File::create(&log).expect("creating a background log");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, prog])
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup log fd"))
        .stderr(file);
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", cmd::render(prog, args)));
    let pid = child.id();
    res.bg.insert(
        id,
        BgProc {
            label: label.to_string(),
            child,
        },
    );
    res.logs.push((format!("{label} in {netns}"), log.clone()));
    Bg {
        sh: sh.clone(),
        id,
        pid,
        label: label.to_string(),
        log,
    }
}

/// Runs `prog args` in netns `netns` with a deadline.
pub fn exec_in(netns: &str, timeout: Duration, prog: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, prog]).args(args);
    run_with_timeout(&mut cmd, timeout)
        .unwrap_or_else(|e| panic!("running `{}` in {netns}: {e}", cmd::render(prog, args)))
}

/// Runs `ip ARGS` (10 s deadline).
pub fn ip(args: &[&str]) -> Output {
    run_with_timeout(Command::new("ip").args(args), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("running ip: {e}"))
}

/// Runs `ip ARGS`, panics unless it succeeds.
pub fn ip_ok(args: &[&str]) -> String {
    let out = ip(args);
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        out.describe()
    );
    out.stdout_str()
}

/// True when named netns `name` exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Names of the existing named network namespaces.
pub fn list_netns() -> Vec<String> {
    fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status when it exited by
/// itself within the grace period.
fn terminate(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    cmd::kill_pid(child.id() as libc::pid_t, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// SIGKILLs every process in netns `ns` (`ip netns pids`).
fn kill_netns_pids(ns: &str) {
    let out = ip(&["netns", "pids", ns]);
    for pid in out.stdout_str().split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            cmd::kill_pid(pid, libc::SIGKILL);
        }
    }
}

/// True when `name` is one the testbed with `prefix` makes: the prefix, then `n` (node), `h`
/// (hub, hub-side veth), `u` (underlay veth), `p` (probe) or `-` (pod). Names of others that
/// merely start with the same letters (`vd1234x` for prefix `vd123`) are not ours.
fn is_ours(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['n', 'h', 'u', 'p', '-']))
}

/// Removes netns and root-netns links whose names are [`is_ours`]; returns problems.
fn remove_by_prefix(prefix: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for ns in list_netns().into_iter().filter(|n| is_ours(n, prefix)) {
        kill_netns_pids(&ns);
        let out = ip(&["netns", "del", &ns]);
        problems.push(format!(
            "netns {ns} was left over (removed: {})",
            out.status.success()
        ));
    }
    let links = ip(&["-o", "link", "show"]).stdout_str();
    for line in links.lines() {
        // "7: name@peer: <...>"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if is_ours(name, prefix) {
            let out = ip(&["link", "del", name]);
            problems.push(format!(
                "link {name} was left in the root netns (removed: {})",
                out.status.success()
            ));
        }
    }
    for entry in fs::read_dir(ETC_NETNS_DIR).into_iter().flatten().flatten() {
        if is_ours(&entry.file_name().to_string_lossy(), prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    problems
}

/// Sets PR_SET_PDEATHSIG so that a child outliving a killed test process gets SIGTERM.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// Warns once per binary (on the real stderr, past the test harness's capture) when a source
/// file of the workspace is newer than the binary: the tests would drive an old build.
fn warn_if_stale(bin: &Path) {
    static WARNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.iter().any(|p| p == bin) {
        return;
    }
    warned.push(bin.to_path_buf());
    let Ok(built) = fs::metadata(bin).and_then(|m| m.modified()) else {
        return;
    };
    let root = workspace_root();
    // The crates each binary is built from.
    let crates: &[&str] = match bin.file_name().and_then(|n| n.to_str()) {
        Some("vswitchctl") => &["proto", "vswitchctl"],
        Some("vswitch-cni") => &["proto", "cni"],
        _ => &["proto", "datapath", "vswitchd"],
    };
    let newer = crates
        .iter()
        .filter_map(|c| newest_rs(&root.join(c).join("src")))
        .filter(|(t, _)| *t > built)
        .max_by_key(|(t, _)| *t);
    if let Some((_, file)) = newer {
        let _ = writeln!(
            std::io::stderr(),
            "WARNING: {} is older than {}: the end-to-end tests drive the old build \
             (run `make build`)",
            bin.display(),
            file.display()
        );
    }
}

/// The most recently modified `.rs` file under `dir`.
fn newest_rs(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let cand = if path.is_dir() {
            newest_rs(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        } else {
            None
        };
        if let Some(c) = cand {
            if best.as_ref().is_none_or(|b| c.0 > b.0) {
                best = Some(c);
            }
        }
    }
    best
}

/// The directory holding all testbeds' temp dirs.
fn base_dir() -> PathBuf {
    std::env::temp_dir().join("vswitch-e2e")
}

/// Where the project's binaries are: $VSWITCH_BIN_DIR, else $CARGO_TARGET_DIR/release, else
/// `<workspace>/target/release`.
fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VSWITCH_BIN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("release");
    }
    workspace_root().join("target").join("release")
}

/// The Cargo workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Chooses a free prefix and claims it by creating its temp dir (atomic across processes).
fn claim_prefix() -> (String, PathBuf) {
    let base = base_dir();
    fs::create_dir_all(&base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
    let existing = list_netns();
    for _ in 0..1000 {
        let prefix = format!("v{:04x}", random_u16());
        if existing.iter().any(|n| is_ours(n, &prefix)) {
            continue;
        }
        let dir = base.join(&prefix);
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::write(
                    dir.join("owner"),
                    owner_tag(std::process::id()).unwrap_or_default(),
                )
                .expect("writing the owner file");
                return (prefix, dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("creating {}: {e}", dir.display()),
        }
    }
    panic!(
        "no free testbed prefix in 1000 tries (stale dirs in {}?)",
        base.display()
    );
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut b).is_ok() {
            return u16::from_ne_bytes(b);
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t ^ std::process::id()) as u16
}

/// "PID STARTTIME": identifies a process even when its pid is reused later.
fn owner_tag(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3;
    // starttime is field 22.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Removes the testbeds of test processes that died without cleaning up (killed by a
/// timeout or SIGKILL): their netns, /etc/netns entries, links and temp dirs.
fn sweep_stale() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let Ok(rd) = fs::read_dir(base_dir()) else {
            return;
        };
        for entry in rd.flatten() {
            let dir = entry.path();
            let prefix = entry.file_name().to_string_lossy().into_owned();
            let Ok(tag) = fs::read_to_string(dir.join("owner")) else {
                continue;
            };
            let alive = tag
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .and_then(owner_tag)
                .is_some_and(|now| now == tag.trim());
            if alive {
                continue;
            }
            let problems = remove_by_prefix(&prefix);
            let _ = fs::remove_dir_all(&dir);
            if !problems.is_empty() {
                // Past the test harness's capture: this concerns an earlier run.
                let _ = writeln!(
                    std::io::stderr(),
                    "[harness] swept the stale testbed {prefix} of a dead test process:\n  {}",
                    problems.join("\n  ")
                );
            }
        }
    });
}

/// Checks once per process that the kernel has what the testbed uses (netns, veth, bridge,
/// TUN/TAP); the error is a skip reason.
fn probe_kernel(prefix: &str) -> Result<(), Skip> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if !Path::new("/proc/self/ns/net").exists() {
                return Err("network namespaces (CONFIG_NET_NS)".into());
            }
            if !Path::new("/dev/net/tun").exists() {
                return Err("/dev/net/tun is missing (CONFIG_TUN)".into());
            }
            let ns = format!("{prefix}probe");
            let out = ip(&["netns", "add", &ns]);
            if !out.status.success() {
                return Err(format!(
                    "`ip netns add` failed: {}",
                    out.stderr_str().trim()
                ));
            }
            let checks: [(&str, Vec<String>); 3] = [
                (
                    "veth",
                    vec![
                        "link".into(),
                        "add".into(),
                        format!("{prefix}pa"),
                        "type".into(),
                        "veth".into(),
                        "peer".into(),
                        "name".into(),
                        format!("{prefix}pb"),
                    ],
                ),
                (
                    "bridge",
                    vec![
                        "link".into(),
                        "add".into(),
                        format!("{prefix}pbr"),
                        "type".into(),
                        "bridge".into(),
                    ],
                ),
                (
                    "tap",
                    vec![
                        "tuntap".into(),
                        "add".into(),
                        "dev".into(),
                        format!("{prefix}pt"),
                        "mode".into(),
                        "tap".into(),
                    ],
                ),
            ];
            let mut result = Ok(());
            for (what, args) in checks {
                let mut all = vec!["-n", ns.as_str()];
                all.extend(args.iter().map(String::as_str));
                let out = ip(&all);
                if !out.status.success() {
                    result = Err(format!("{what} links: {}", out.stderr_str().trim()));
                    break;
                }
            }
            let _ = ip(&["netns", "del", &ns]);
            result
        })
        .clone()
        .map_err(Skip)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The full path of `prog` on $PATH.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

fn nginx_page(pod: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n\
         <h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is \
         successfully installed and working.</p>\n<p>Served by pod {pod} through vswitch.</p>\n\
         </body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_match_the_prefix() {
        for name in [
            "v1a2b",
            "v1a2bn1",
            "v1a2bhub",
            "v1a2b-nginx",
            "v1a2bu3",
            "v1a2bprobe",
        ] {
            assert!(is_ours(name, "v1a2b"), "{name}");
        }
        for name in [
            "v1a2", "v1a2bc", "v1a2b0n1", "vd1a2b", "x1a2bn1", "v1a2bxn1",
        ] {
            assert!(!is_ours(name, "v1a2b"), "{name}");
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn own_process_is_alive_by_its_tag() {
        let tag = owner_tag(std::process::id()).expect("own /proc/self/stat");
        assert!(tag.starts_with(&format!("{} ", std::process::id())));
    }
}
