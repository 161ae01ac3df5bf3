//! A real etcd (Debian's etcd-server) for the datastore tests, run by the test in the
//! testbed's hub namespace at 198.19.0.254 (design.md section 6: the datastore's address on
//! the underlay). Its member name carries the test's prefix, its data directory lives in the
//! testbed's temp dir; it is a background process of the testbed, so it is killed and its
//! data removed when the test ends, on failure and panic too.

use crate::cmd::OutputExt;
use crate::testbed::{exec_in, ip_ok, which, Bg, Testbed};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

/// The etcd member's address on the underlay.
pub const ETCD_ADDR: &str = "198.19.0.254";
/// How long etcd may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One etcd member, serving clients at `http://198.19.0.254:2379`.
pub struct Etcd {
    hub: String,
    /// The client URL.
    pub url: String,
    /// The server process (killed on drop).
    pub bg: Bg,
}

impl Etcd {
    /// Starts etcd in the hub (adding 198.19.0.254/24 to the hub's bridge) and waits until
    /// it is healthy. Panics, with its output, when it is not within 20 s.
    pub fn start(tb: &Testbed) -> Etcd {
        if which("etcd").is_none() || which("etcdctl").is_none() {
            panic!("etcd or etcdctl is not installed: run `make deps` (etcd-server, etcd-client)");
        }
        let hub = tb.hub();
        let br = format!("{}br", tb.prefix());
        ip_ok(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{ETCD_ADDR}/24"),
            "dev",
            &br,
        ]);
        let name = format!("{}-etcd", tb.prefix());
        let data = tb.dir().join("etcd-data");
        let client = format!("http://{ETCD_ADDR}:2379");
        let cluster = format!("{name}=http://{ETCD_ADDR}:2380");
        let args = member_args(&name, &data, ETCD_ADDR, &cluster, &name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bg = tb.spawn_in(&hub, "etcd", "etcd", &args);
        let etcd = Etcd {
            hub,
            url: client,
            bg,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = etcd.ctl(&["endpoint", "health"]);
            if out.status.success() {
                return etcd;
            }
            assert!(
                etcd.bg.is_running(),
                "etcd exited during startup; its output:\n{}",
                etcd.bg.output()
            );
            assert!(
                Instant::now() < deadline,
                "etcd was not healthy within {READY_TIMEOUT:?}: {}\nits output:\n{}",
                out.describe(),
                etcd.bg.output()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills etcd (the datastore goes away; its data stays until the testbed is removed).
    pub fn kill(self) {
        drop(self.bg);
    }

    /// `etcd://198.19.0.254:2379`, what `vswitchd --datastore` takes.
    pub fn datastore_url(&self) -> String {
        format!("etcd://{ETCD_ADDR}:2379")
    }

    /// Runs `etcdctl --endpoints URL ARGS` in the hub (within 10 s).
    pub fn ctl(&self, args: &[&str]) -> Output {
        let endpoints = format!("--endpoints={}", self.url);
        let mut all = vec![endpoints.as_str(), "--command-timeout=5s"];
        all.extend(args);
        exec_in(&self.hub, Duration::from_secs(10), "etcdctl", &all)
    }

    /// The keys and values under `prefix` (`etcdctl get --prefix`), in key order.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.ctl(&["get", "--prefix", prefix]);
        assert!(out.status.success(), "etcdctl get: {}", out.describe());
        let text = out.stdout_str();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string()))
            .collect()
    }
}

/// The command line of an etcd member `name` at `addr` (clients on :2379, peers on :2380)
/// with its data in `data`, in the cluster `initial` (`NAME=PEER-URL,...`) named `token`.
pub(crate) fn member_args(
    name: &str,
    data: &std::path::Path,
    addr: &str,
    initial: &str,
    token: &str,
) -> Vec<String> {
    let client = format!("http://{addr}:2379");
    let peer = format!("http://{addr}:2380");
    [
        "--name",
        name,
        "--data-dir",
        &data.display().to_string(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        initial,
        "--initial-cluster-token",
        token,
        "--initial-cluster-state",
        "new",
        "--logger",
        "zap",
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
