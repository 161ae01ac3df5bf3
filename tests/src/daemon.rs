//! A node's `vswitchd` run by the test itself (nodes added with `NodeOpts::no_daemon`), so
//! that it can be stopped with SIGTERM or killed with SIGKILL and started again: the
//! restart and crash-safety tests. The testbed still removes it (it is one of its background
//! processes) and prints its log when a test fails.

use crate::cmd::kill_pid;
use crate::{Bg, Node, NodeOpts, Testbed};
use std::fs;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a daemon may take from its start until it answers `node show`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a daemon may take to exit after SIGTERM (or SIGKILL).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Wall-clock seconds (comparable with `date +%s.%N` inside the pods).
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// How a daemon is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: the daemon detaches its ports and exits 0.
    Term,
    /// SIGKILL: a crash.
    Kill,
}

/// A node's `vswitchd`, run by the test (a background process of the testbed) so that it can be
/// killed and started again.
pub struct Daemon<'a> {
    tb: &'a Testbed,
    node: Node,
    argv: Vec<String>,
    bg: Option<Bg>,
    starts: u32,
}

impl<'a> Daemon<'a> {
    /// The daemon of `node` (added with `NodeOpts::no_daemon()`), not started yet: the
    /// arguments the testbed would give it with default options, the suite's
    /// datapath/offload choice included.
    pub fn new(tb: &'a Testbed, node: &Node) -> Daemon<'a> {
        Daemon::with_opts(tb, node, &NodeOpts::default())
    }

    /// Like [`Daemon::new`], with the datapath, offloads, MTU and extra arguments of `opts`
    /// ([`Node::vswitchd_args`]).
    pub fn with_opts(tb: &'a Testbed, node: &Node, opts: &NodeOpts) -> Daemon<'a> {
        Daemon {
            tb,
            node: node.clone(),
            argv: node.vswitchd_args(opts),
            bg: None,
            starts: 0,
        }
    }

    /// Starts the daemon and waits until it answers `node show`; returns when it did (wall
    /// clock). Panics, with its log, when it exits or does not answer in time.
    pub fn start(&mut self) -> f64 {
        assert!(self.bg.is_none(), "{}: daemon already runs", self.node.name);
        self.starts += 1;
        let bin = self.tb.bin("vswitchd").display().to_string();
        let args: Vec<&str> = self.argv.iter().map(String::as_str).collect();
        let label = format!("vswitchd-{}-{}", self.node.name, self.starts);
        let bg = self.tb.spawn_in(&self.node.netns, &label, &bin, &args);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // The socket is bound once the state is recovered (every port re-attached).
            if UnixStream::connect(&self.node.socket).is_ok() {
                let out = self.node.ctl(&["--timeout", "2", "node", "show"]);
                if out.status.success() {
                    let t = now();
                    self.bg = Some(bg);
                    return t;
                }
            }
            assert!(
                bg.is_running(),
                "vswitchd of {} exited during startup; its output:\n{}",
                self.node.name,
                bg.output()
            );
            assert!(
                Instant::now() < deadline,
                "vswitchd of {} did not answer within {READY_TIMEOUT:?}; its output:\n{}",
                self.node.name,
                bg.output()
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// What the running daemon has logged so far.
    pub fn output(&self) -> String {
        self.bg.as_ref().map(Bg::output).unwrap_or_default()
    }

    /// The daemon's pid, checked to be a running `vswitchd` (not the `ip netns exec` before
    /// its exec, not a recycled pid).
    pub fn pid(&self) -> libc::pid_t {
        let bg = self.bg.as_ref().expect("daemon runs");
        let comm = fs::read_to_string(format!("/proc/{}/comm", bg.pid)).unwrap_or_default();
        assert_eq!(
            comm.trim(),
            "vswitchd",
            "pid {} of {}'s daemon is not vswitchd",
            bg.pid,
            self.node.name
        );
        bg.pid as libc::pid_t
    }

    /// Stops the daemon; returns when the signal was sent (wall clock). After SIGTERM the
    /// daemon must exit within [`EXIT_TIMEOUT`] having logged its clean stop.
    pub fn stop(&mut self, how: Stop) -> f64 {
        let pid = self.pid();
        let t = now();
        kill_pid(
            pid,
            match how {
                Stop::Term => libc::SIGTERM,
                Stop::Kill => libc::SIGKILL,
            },
        );
        let bg = self.bg.take().expect("daemon runs");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while bg.is_running() {
            assert!(
                Instant::now() < deadline,
                "vswitchd of {} still runs {EXIT_TIMEOUT:?} after {how:?}; its output:\n{}",
                self.node.name,
                bg.output()
            );
            thread::sleep(Duration::from_millis(2));
        }
        if how == Stop::Term {
            let out = bg.output();
            assert!(
                out.contains("vswitchd stopped"),
                "vswitchd of {} did not stop cleanly on SIGTERM; its output:\n{out}",
                self.node.name
            );
        }
        t
    }
}

/// A node without a testbed-run daemon, and its daemon run by the test, started.
pub fn node_with_daemon<'a>(tb: &'a Testbed, n: u8, opts: NodeOpts) -> (Node, Daemon<'a>) {
    let opts = NodeOpts {
        start_daemon: false,
        ..opts
    };
    let node = tb.add_node(n, opts.clone());
    let mut d = Daemon::with_opts(tb, &node, &opts);
    d.start();
    (node, d)
}
