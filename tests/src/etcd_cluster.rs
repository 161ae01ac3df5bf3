//! A real etcd cluster of several members (Debian's etcd-server) for the datastore's
//! failure tests, run in the testbed's hub namespace at 198.19.0.254 and down from there
//! (design.md section 6). Members can be killed and started again on their data
//! directories (they rejoin the cluster); every member is a background process of the
//! testbed, killed when the test ends, on failure and panic too.

use crate::cmd::OutputExt;
use crate::testbed::{exec_in, ip_ok, which, Bg, Testbed};
use std::path::PathBuf;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

/// How long the cluster may take to be healthy after a start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

struct Member {
    name: String,
    addr: String,
    data: PathBuf,
    bg: Option<Bg>,
}

/// An etcd cluster; member `i` serves clients at `http://198.19.0.(254-i):2379`.
pub struct EtcdCluster<'a> {
    tb: &'a Testbed,
    hub: String,
    members: Vec<Member>,
    initial: String,
}

impl<'a> EtcdCluster<'a> {
    /// Starts `n` members (adding their addresses to the hub's bridge) and waits until every
    /// one is healthy.
    pub fn start(tb: &'a Testbed, n: usize) -> EtcdCluster<'a> {
        if which("etcd").is_none() || which("etcdctl").is_none() {
            panic!("etcd or etcdctl is not installed: run `make deps` (etcd-server, etcd-client)");
        }
        let hub = tb.hub();
        let br = format!("{}br", tb.prefix());
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let addr = format!("198.19.0.{}", 254 - i);
                ip_ok(&["-n", &hub, "addr", "add", &format!("{addr}/24"), "dev", &br]);
                Member {
                    name: format!("{}-etcd{i}", tb.prefix()),
                    data: tb.dir().join(format!("etcd{i}-data")),
                    addr,
                    bg: None,
                }
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://{}:2380", m.name, m.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            tb,
            hub,
            members,
            initial,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_healthy();
        c
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let token = format!("{}-etcd", self.tb.prefix());
        let args = crate::etcd::member_args(&m.name, &m.data, &m.addr, &self.initial, &token);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bg = self
            .tb
            .spawn_in(&self.hub, &format!("etcd{i}"), "etcd", &args);
        self.members[i].bg = Some(bg);
    }

    /// `etcd://A:2379,B:2379,...`, what `vswitchd --datastore` takes.
    pub fn datastore_url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}:2379", m.addr))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Kills member `i` (SIGKILL; its data stays).
    pub fn kill(&mut self, i: usize) {
        drop(self.members[i].bg.take());
    }

    /// Starts member `i` again on its data directory and waits until the cluster is healthy.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Waits until every running member answers healthy.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = self.ctl(&["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd was not healthy within {READY_TIMEOUT:?}: {}\n{}",
                out.describe(),
                self.output()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The members' output, for failure messages.
    fn output(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| {
                m.bg.as_ref()
                    .map(|b| format!("--- {} ---\n{}", m.name, b.output()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs `etcdctl ARGS` in the hub against the running members (within 10 s).
    pub fn ctl(&self, args: &[&str]) -> Output {
        let endpoints: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.bg.is_some())
            .map(|m| format!("http://{}:2379", m.addr))
            .collect();
        let endpoints = format!("--endpoints={}", endpoints.join(","));
        let mut all = vec![endpoints.as_str(), "--command-timeout=5s"];
        all.extend(args);
        exec_in(&self.hub, Duration::from_secs(10), "etcdctl", &all)
    }
}
