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
//!
//! The code is split along what it deals with:
//!
//! | module | what |
//! |---|---|
//! | this one | [`Testbed`]: creation, namespaces, the underlay, nodes and their daemons, pods |
//! | `opts` | [`NodeOpts`] and the suite-wide datapath/offload defaults from the environment |
//! | `handles` | [`Node`] and [`Pod`]: `vswitchctl`, commands and probes inside pods |
//! | `servers` | background processes ([`Bg`], nginx) and stopping processes |
//! | `cleanup` | removal on drop and the sweep of dead test processes' testbeds |
//! | `host` | `ip`, named netns, the binaries, the kernel probe, small helpers |

mod cleanup;
mod handles;
mod host;
mod opts;
mod servers;

pub use handles::{Node, Pod};
pub use host::{
    exec_in, ip, ip_json, ip_ok, ipv4_addrs, list_netns, netns_exists, tail, which, workspace_root,
};
pub use opts::{NodeOpts, DATAPATH_ENV, OFFLOAD_ENV};
pub use servers::Bg;

use crate::cmd::OutputExt;
use cleanup::{claim_prefix, sweep_stale};
use host::{bin_dir, probe_kernel, warn_if_stale, ETC_NETNS_DIR};
use opts::SuiteDefaults;
use servers::{die_with_parent, terminate, BgProc};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long a daemon may take to answer `node show` after it was started.
const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a daemon may take to exit after SIGTERM before it gets SIGKILL.
const DAEMON_STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 200;

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
}

/// A per-test testbed. Dropping it removes everything it created.
pub struct Testbed {
    sh: Arc<Shared>,
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
        if !nix::unistd::geteuid().is_root() {
            panic!(
                "{test}: the end-to-end tests create network namespaces and must run as root \
                 (run `make test` as root)"
            );
        }
        if which("ip").is_none() {
            panic!("{test}: `ip` (iproute2) is not installed: run `make deps`");
        }
        SuiteDefaults::announce();
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

    /// The underlay hub's netns (its bridge `<prefix>br` joins the nodes' underlays),
    /// created when needed.
    pub fn hub(&self) -> String {
        self.ensure_hub()
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
            let mut argv = vec![self.sh.bin("vswitchd").display().to_string()];
            argv.extend(node.vswitchd_args(&opts));
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
            if opts.leased_subnet {
                node.refresh_subnet();
            }
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

    /// The pid of `node`'s running daemon (`ip netns exec` execs it, so the child is it).
    pub fn daemon_pid(&self, node: &Node) -> u32 {
        let mut res = self.sh.res();
        let child = res
            .daemons
            .get_mut(&node.n)
            .and_then(|d| d.child.as_mut())
            .unwrap_or_else(|| panic!("node{} daemon is not running", node.n));
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "node{} daemon exited",
            node.n
        );
        child.id()
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

    /// Kills the daemon of `node` with SIGKILL (a crash) and waits until it is gone; start it
    /// again with [`Testbed::start_daemon`].
    pub fn kill_daemon(&self, node: &Node) {
        let child = {
            let mut res = self.sh.res();
            res.daemons.get_mut(&node.n).and_then(|d| d.child.take())
        };
        let Some(mut child) = child else {
            panic!("node{} daemon is not running", node.n);
        };
        // `ip netns exec` execs the daemon: the child is vswitchd itself.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sets `flag VALUE` in the arguments the daemon of `node` is started with from now on
    /// (replacing the value when the flag is there, appending both otherwise). Takes effect
    /// at the next [`Testbed::start_daemon`].
    pub fn set_daemon_arg(&self, node: &Node, flag: &str, value: &str) {
        let mut res = self.sh.res();
        let d = res
            .daemons
            .get_mut(&node.n)
            .unwrap_or_else(|| panic!("node{} has no daemon", node.n));
        match d.argv.iter().position(|a| a == flag) {
            Some(i) if i + 1 < d.argv.len() => d.argv[i + 1] = value.to_string(),
            _ => d.argv.extend([flag.to_string(), value.to_string()]),
        }
    }

    /// SIGTERM the daemon of `node`, then start it again with the same socket and state dir.
    pub fn restart_daemon(&self, node: &Node) {
        self.stop_daemon(node);
        self.start_daemon(node);
    }

    /// Nodes 1 and 2 with `opts`, each a peer of the other ([`Testbed::mesh`]).
    pub fn two_nodes(&self, opts: NodeOpts) -> (Node, Node) {
        let n1 = self.add_node(1, opts.clone());
        let n2 = self.add_node(2, opts);
        self.mesh(&[&n1, &n2]);
        (n1, n2)
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
}
