//! Restarts: what a restart or crash of `vswitchd` does to the pods and to the state.
//!
//! - Restart under load: an iperf3 TCP transfer between pods on two nodes and a wget loop
//!   through a Service VIP run while each node's daemon is restarted, first gracefully
//!   (SIGTERM), later killed (SIGKILL). The TCP connection must survive (the pods' TAPs are
//!   persistent and re-attached), no wget may fail outside the downtime windows, and the
//!   stalls are printed (not asserted: timing on a loaded 2-core VM is noise).
//! - Crash safety: SIGKILL at random points of a burst of `port add` / `service add`;
//!   every acknowledged change must be there after the restart, state.json must parse, and an
//!   unacknowledged change may be there or not, but leaves nothing behind.
//! - A second daemon on the same state directory or socket is refused, and the first serves on.
//!
//! Known gap (an ignored test, `service_tcp_connection_survives_restarts`): a long-lived TCP
//! connection through a Service VIP does not survive a restart of the client node's daemon,
//! whose conntrack is in memory only; new Service connections work as soon as it is back.
//!
//! The tests run their daemons themselves (nodes are added without one, `NodeOpts::no_daemon`)
//! to be able to SIGKILL them and start them again; the testbed still removes them (they are
//! its background processes) and prints their logs when a test fails.
//!
//! `VSWITCH_E2E_SEED=N` replays the random kill points of the crash-safety test.

use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vswitch_e2e::cmd::{kill_pid, run_with_timeout};
use vswitch_e2e::{
    exec_in, Bg, Node, NodeOpts, OutputExt, Pod, Testbed, DATAPATH_ENV, OFFLOAD_ENV,
};

/// How long a daemon may take from its start until it answers `node show`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a daemon may take to exit after SIGTERM (or SIGKILL).
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

// ----- helpers ---------------------------------------------------------------------------------

/// Wall-clock seconds (comparable with `date +%s.%N` inside the pods).
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// How a daemon is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: the daemon detaches its ports and exits 0.
    Term,
    /// SIGKILL: a crash.
    Kill,
}

/// A node's `vswitchd`, run by the test (a background process of the testbed) so that it can be
/// killed and started again.
struct Daemon<'a> {
    tb: &'a Testbed,
    node: Node,
    argv: Vec<String>,
    bg: Option<Bg>,
    starts: u32,
}

impl<'a> Daemon<'a> {
    /// The daemon of `node` (added with `NodeOpts::no_daemon()`), not started yet: the
    /// arguments the testbed would give it, the suite's datapath/offload choice included.
    fn new(tb: &'a Testbed, node: &Node) -> Daemon<'a> {
        let mut argv = vec![
            "--node".to_string(),
            node.name.clone(),
            "--pod-cidr".into(),
            node.pod_cidr.clone(),
            "--socket".into(),
            node.socket.display().to_string(),
            "--state-dir".into(),
            node.state_dir.display().to_string(),
        ];
        if let Some(ul) = node.underlay {
            argv.extend(["--underlay".into(), ul.to_string()]);
        }
        for (var, flag) in [(DATAPATH_ENV, "--datapath"), (OFFLOAD_ENV, "--offload")] {
            if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
                argv.extend([flag.to_string(), v.trim().to_string()]);
            }
        }
        Daemon {
            tb,
            node: node.clone(),
            argv,
            bg: None,
            starts: 0,
        }
    }

    /// Starts the daemon and waits until it answers `node show`; returns when it did (wall
    /// clock). Panics, with its log, when it exits or does not answer in time.
    fn start(&mut self) -> f64 {
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

    /// The daemon's pid, checked to be a running `vswitchd` (not the `ip netns exec` before
    /// its exec, not a recycled pid).
    fn pid(&self) -> libc::pid_t {
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
    fn stop(&mut self, how: Stop) -> f64 {
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
fn node_with_daemon<'a>(tb: &'a Testbed, n: u8, opts: NodeOpts) -> (Node, Daemon<'a>) {
    let node = tb.add_node(
        n,
        NodeOpts {
            start_daemon: false,
            ..opts
        },
    );
    let mut d = Daemon::new(tb, &node);
    d.start();
    (node, d)
}

/// Waits until something listens on TCP `port` in `pod`.
fn wait_listening(pod: &Pod, port: u16) {
    let needle = format!(":{port:04X} ");
    for _ in 0..200 {
        // iperf3 listens on a dual-stack socket: look at tcp6 too.
        let tcp = pod
            .exec("cat", &["/proc/net/tcp", "/proc/net/tcp6"])
            .stdout_str();
        if tcp
            .lines()
            .any(|l| l.contains(&needle) && l.contains(" 0A "))
        {
            return;
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on port {port} in {}", pod.name);
}

/// A small xorshift generator: enough to pick kill points, and replayable from its seed
/// (the second field).
struct Rng(u64, u64);

impl Rng {
    /// Seeded from `VSWITCH_E2E_SEED`, else from /dev/urandom; prints the seed.
    fn from_env(test: &str) -> Rng {
        let seed = std::env::var("VSWITCH_E2E_SEED")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or_else(|| {
                let mut b = [0u8; 8];
                fs::File::open("/dev/urandom")
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
                    .expect("reading /dev/urandom");
                u64::from_ne_bytes(b)
            });
        println!("{test}: seed {seed} (VSWITCH_E2E_SEED={seed} replays it)");
        Rng(seed | 1, seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ----- 1. restart under load -------------------------------------------------------------------

/// The Service VIP the wget loop fetches through.
const VIP: &str = "198.19.96.30";
/// The Service VIP iperf3 connects through in [`service_tcp_connection_survives_restarts`].
const IPERF_VIP: &str = "198.19.96.31";
/// How long iperf3 sends, seconds.
const IPERF_SECONDS: u32 = 22;
/// iperf3's reporting interval, seconds: the resolution of the stall measurement.
const IPERF_INTERVAL: f64 = 0.1;

/// Fetches `URL` with busybox wget every 100 ms for `SECONDS` s; prints one line per attempt:
/// `START END ok|fail` (wall-clock seconds). Each attempt is bounded by `timeout 5` (room for
/// two SYN retransmissions on a loaded machine).
const WGET_LOOP: &str = r#"
url=$1; secs=$2
end=$(( $(date +%s) + secs ))
while [ "$(date +%s)" -lt "$end" ]; do
  s=$(date +%s.%N)
  if timeout 5 busybox wget -q -O- "$url" 2>/dev/null | grep -q 'Welcome to nginx'; then
    r=ok
  else
    r=fail
  fi
  echo "$s $(date +%s.%N) $r"
  sleep 0.1
done
"#;

/// One restart of one node's daemon, as it happened.
#[derive(Debug, Clone)]
struct Restart {
    node: String,
    how: Stop,
    /// When the signal was sent.
    signal: f64,
    /// When the new daemon answered `node show`.
    ready: f64,
}

/// One wget attempt of the loop.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    start: f64,
    end: f64,
    ok: bool,
}

fn parse_attempts(text: &str) -> Vec<Attempt> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let start = f.next()?.parse().ok()?;
            let end = f.next()?.parse().ok()?;
            let ok = match f.next()? {
                "ok" => true,
                "fail" => false,
                _ => return None,
            };
            Some(Attempt { start, end, ok })
        })
        .collect()
}

/// iperf3 `-J` intervals as (start, end, bytes), seconds relative to the test start.
fn iperf_intervals(json: &Value) -> Vec<(f64, f64, u64)> {
    json["intervals"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|i| {
                    let s = &i["sum"];
                    Some((
                        s["start"].as_f64()?,
                        s["end"].as_f64()?,
                        s["bytes"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs of consecutive intervals that received at most `max` bytes: (start, end), relative
/// seconds.
fn starved_runs(intervals: &[(f64, f64, u64)], max: u64) -> Vec<(f64, f64)> {
    let mut runs = Vec::new();
    let mut cur: Option<(f64, f64)> = None;
    for &(s, e, bytes) in intervals {
        if bytes <= max {
            cur = Some(cur.map_or((s, e), |(cs, _)| (cs, e)));
        } else if let Some(r) = cur.take() {
            runs.push(r);
        }
    }
    runs.extend(cur);
    runs
}

/// The longest of `runs` that starts from the interval holding `from` on and before `to`
/// (wall clock; the runs are relative to `t0`), in seconds.
fn longest_run(runs: &[(f64, f64)], t0: f64, from: f64, to: f64) -> f64 {
    runs.iter()
        .filter(|(s, _)| (from - IPERF_INTERVAL..to - IPERF_INTERVAL).contains(&(t0 + s)))
        .map(|(s, e)| e - s)
        .fold(0.0, f64::max)
}

/// Runs the restart plan under load; iperf3 connects to the server pod's address, or with
/// `via_service` to a Service VIP (DNAT on the client's node, conntrack in its daemon).
fn restarts_under_load(tb: &Testbed, opts: NodeOpts, via_service: bool) {
    let (n1, mut d1) = node_with_daemon(tb, 1, opts.clone());
    let (n2, mut d2) = node_with_daemon(tb, 2, opts);
    tb.mesh(&[&n1, &n2]);
    let web = tb.add_pod(&n1, "web", &[("app", "web")]);
    let client = tb.add_pod(&n2, "client", &[]);
    let _nginx = tb.start_nginx(&web);
    // The Service lives on the client's node (DNAT happens there); its endpoint is remote.
    let web_ip = web.ip.to_string();
    n2.ctl_ok(&[
        "service",
        "add",
        "web",
        "--vip",
        VIP,
        "--port",
        "http:80",
        "--endpoint",
        &web_ip,
    ]);
    n2.ctl_ok(&[
        "service",
        "add",
        "iperf",
        "--vip",
        IPERF_VIP,
        "--port",
        "5201",
        "--endpoint",
        &web_ip,
    ]);
    let iperf_dst = if via_service { IPERF_VIP } else { &web_ip };
    let url = format!("http://{VIP}/");
    let out = client.wget(&url);
    assert!(
        out.status.success() && out.stdout_str().contains("Welcome to nginx"),
        "wget {url} before any restart: {}",
        out.describe()
    );
    let ifindex = |pod: &Pod| pod.ip_json(&["link", "show", "eth0"])[0]["ifindex"].clone();
    let ifindexes = [ifindex(&web), ifindex(&client)];
    let _server = web.spawn("iperf3-server", "iperf3", &["-s", "-1", "-p", "5201"]);
    wait_listening(&web, 5201);

    let secs = IPERF_SECONDS.to_string();
    let interval = IPERF_INTERVAL.to_string();
    let loop_secs = (IPERF_SECONDS - 1).to_string();
    let bound = Duration::from_secs(u64::from(IPERF_SECONDS) + 25);
    let (iperf, wgets, restarts, t0) = thread::scope(|s| {
        // iperf3 -R: the server (web, node 1) sends, the client (node 2) receives and reports
        // what arrived per interval: the sender's socket buffer cannot hide a stall.
        let t0 = now();
        let iperf = s.spawn(|| {
            client.exec_timeout(
                bound,
                "iperf3",
                &[
                    "-c",
                    iperf_dst,
                    "-p",
                    "5201",
                    "-R",
                    "-t",
                    &secs,
                    "-i",
                    &interval,
                    "-J",
                    "--connect-timeout",
                    "3000",
                ],
            )
        });
        let wgets = s
            .spawn(|| client.exec_timeout(bound, "sh", &["-c", WGET_LOOP, "sh", &url, &loop_secs]));
        let mut restarts = Vec::new();
        let plan: [(f64, &str, Stop); 4] = [
            (3.0, "node2", Stop::Term),
            (6.5, "node1", Stop::Term),
            (10.0, "node2", Stop::Kill),
            (14.0, "node1", Stop::Kill),
        ];
        for (at, which, how) in plan {
            let wait = t0 + at - now();
            if wait > 0.0 {
                thread::sleep(Duration::from_secs_f64(wait));
            }
            let d = if which == "node1" { &mut d1 } else { &mut d2 };
            let signal = d.stop(how);
            let ready = d.start();
            restarts.push(Restart {
                node: which.to_string(),
                how,
                signal,
                ready,
            });
        }
        let iperf = iperf.join().expect("iperf3 thread");
        let wgets = wgets.join().expect("wget thread");
        (iperf, wgets, restarts, t0)
    });

    // ----- what happened -----
    let mut report = String::new();
    let _ = writeln!(report, "restarts (seconds since the load started):");
    for r in &restarts {
        let _ = writeln!(
            report,
            "  {} {:?}: signal at {:.3}, answering again after {:.0} ms",
            r.node,
            r.how,
            r.signal - t0,
            (r.ready - r.signal) * 1000.0
        );
    }
    let json: Value = serde_json::from_slice(&iperf.stdout).unwrap_or(Value::Null);
    let intervals = iperf_intervals(&json);
    let runs = starved_runs(&intervals, 0);
    // Nearly empty intervals too (a stall rarely starts and ends on an interval boundary).
    let mut sorted: Vec<u64> = intervals.iter().map(|i| i.2).collect();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let low = starved_runs(&intervals, median / 10);
    let _ = writeln!(
        report,
        "iperf3: {} intervals of {IPERF_INTERVAL} s (median {:.0} Mbit/s), runs with 0 bytes \
         received: {}",
        intervals.len(),
        median as f64 * 8.0 / IPERF_INTERVAL / 1e6,
        runs.iter()
            .map(|(s, e)| format!("{s:.1}-{e:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let attempts = parse_attempts(&wgets.stdout_str());
    let during = |a: &Attempt| {
        restarts
            .iter()
            .any(|r| a.end >= r.signal && a.start <= r.ready)
    };
    let _ = writeln!(
        report,
        "stalls per restart: iperf3 = longest run of intervals with 0 bytes (< 10% of the \
         median); wget = longest attempt overlapping the downtime (a SYN lost in the downtime \
         is sent again after 1 s)"
    );
    let mut longest = 0.0f64;
    for (i, r) in restarts.iter().enumerate() {
        let next = restarts.get(i + 1).map_or(f64::MAX, |n| n.signal);
        let stall = longest_run(&runs, t0, r.signal, next);
        let starved = longest_run(&low, t0, r.signal, next);
        longest = longest.max(stall);
        let overlapping: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| a.end >= r.signal && a.start <= r.ready)
            .collect();
        let failed = overlapping.iter().filter(|a| !a.ok).count();
        let slowest = overlapping
            .iter()
            .map(|a| a.end - a.start)
            .fold(0.0, f64::max);
        let _ = writeln!(
            report,
            "  {} {:?}: downtime {:.0} ms; iperf3 stall {:.0} ms ({:.0} ms); wget {:.0} ms, \
             {failed} of {} failed",
            r.node,
            r.how,
            (r.ready - r.signal) * 1000.0,
            stall * 1000.0,
            starved * 1000.0,
            slowest * 1000.0,
            overlapping.len()
        );
    }
    let _ = writeln!(
        report,
        "longest iperf3 stall: {:.0} ms (resolution {:.0} ms); wget attempts: {} ({} ok)",
        longest * 1000.0,
        IPERF_INTERVAL * 1000.0,
        attempts.len(),
        attempts.iter().filter(|a| a.ok).count()
    );
    if let Some(end) = json.get("end") {
        let _ = writeln!(
            report,
            "iperf3 end: received {} bytes, sender retransmits {}",
            end["sum_received"]["bytes"], end["sum_sent"]["retransmits"]
        );
    }
    // Past the test harness's capture: the numbers are the point of the test even when it
    // passes.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());

    // ----- assertions -----
    assert!(
        iperf.status.success() && json.get("error").is_none(),
        "iperf3 (the TCP connection across the restarts) failed: {}\n{report}",
        iperf.describe()
    );
    let last_ready = restarts.iter().map(|r| r.ready).fold(0.0, f64::max);
    let after: u64 = intervals
        .iter()
        .filter(|(s, _, _)| t0 + s > last_ready)
        .map(|(_, _, b)| b)
        .sum();
    assert!(
        after > 1 << 20,
        "iperf3 received only {after} bytes after the last restart\n{report}"
    );
    assert!(
        intervals
            .last()
            .is_some_and(|(_, e, _)| *e >= f64::from(IPERF_SECONDS) - 0.5),
        "iperf3 did not run its {IPERF_SECONDS} s\n{report}"
    );
    assert!(
        attempts.len() >= 40,
        "the wget loop made only {} attempts: {}\n{report}",
        attempts.len(),
        wgets.describe()
    );
    let bad: Vec<String> = attempts
        .iter()
        .filter(|a| !a.ok && !during(a))
        .map(|a| format!("{:.3}-{:.3}", a.start - t0, a.end - t0))
        .collect();
    assert!(
        bad.is_empty(),
        "wget through the VIP failed outside the restarts' downtime at {bad:?} s\n{report}"
    );
    // The pods kept their interfaces all along (the same TAP, not a new one), and both
    // daemons serve them.
    for ((node, pod), before) in [(&n1, &web), (&n2, &client)].into_iter().zip(ifindexes) {
        let p = node
            .port(&pod.name)
            .unwrap_or_else(|| panic!("{} lost", pod.name));
        assert_eq!(p["status"], "Running", "{p}");
        assert_eq!(p["ip"], pod.ip.to_string(), "{p}");
        assert_eq!(
            ifindex(pod),
            before,
            "{}'s eth0 was replaced by another interface",
            pod.name
        );
    }
    drop((d1, d2));
}

#[test]
fn tcp_and_service_survive_restarts_under_load() {
    let Some(tb) = Testbed::new("tcp_and_service_survive_restarts_under_load") else {
        return;
    };
    restarts_under_load(&tb, NodeOpts::default(), false);
}

/// The same through a Service VIP. Fails today: the connection stalls at the first restart of
/// the client node's daemon and is reset (iperf3: "unable to send control message: Broken
/// pipe"), because the DNAT conntrack lives only in the daemon's memory. The restarted daemon
/// has no entry for the connection; a packet from the client would re-create it (mid-stream
/// pickup: with the client sending, `iperf3` without `-R`, the connection survives), but here
/// the server sends, its packets reach the client un-translated (from the endpoint's address
/// instead of the VIP) and the client answers them with a RST.
#[test]
#[ignore = "Service (DNAT) connections do not survive a restart of the client node's daemon \
            yet: conntrack is not carried across restarts"]
fn service_tcp_connection_survives_restarts() {
    let Some(tb) = Testbed::new("service_tcp_connection_survives_restarts") else {
        return;
    };
    restarts_under_load(&tb, NodeOpts::default(), true);
}

// ----- 2. crash safety -------------------------------------------------------------------------

/// Ports and services of the burst.
const BURST_PORTS: usize = 40;
const BURST_SERVICES: usize = 20;

/// One command of the burst.
#[derive(Debug, Clone)]
enum Change {
    /// `port add NAME --netns NETNS`.
    Port { name: String, netns: String },
    /// `service add NAME --vip VIP --port 80 --selector app=NAME`.
    Service { name: String, vip: String },
}

impl Change {
    fn args(&self) -> Vec<String> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Change::Port { name, netns } => {
                v(&["-o", "json", "port", "add", name, "--netns", netns])
            }
            Change::Service { name, vip } => v(&[
                "-o",
                "json",
                "service",
                "add",
                name,
                "--vip",
                vip,
                "--port",
                "http:80",
                "--selector",
                &format!("app={name}"),
            ]),
        }
    }

    fn name(&self) -> &str {
        match self {
            Change::Port { name, .. } | Change::Service { name, .. } => name,
        }
    }
}

/// What became of a command.
#[derive(Debug, Clone)]
enum Outcome {
    /// Exit 0; the JSON it printed.
    Acked(Value),
    /// Failed (the daemon was killed before or while it answered).
    Unacked(String),
}

/// Runs `changes[from..]` one after the other against `node`, bumping `done` after each
/// acknowledged one; stops at the first failure. Returns the outcomes.
fn burst(node: &Node, changes: &[Change], from: usize, done: &AtomicUsize) -> Vec<Outcome> {
    let mut out = Vec::new();
    for c in &changes[from..] {
        let args = c.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = node.ctl(&args);
        if o.status.success() {
            let v = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|e| panic!("`vswitchctl {}` printed no JSON: {e}", args.join(" ")));
            out.push(Outcome::Acked(v));
            done.fetch_add(1, Ordering::SeqCst);
        } else {
            out.push(Outcome::Unacked(o.describe()));
            break;
        }
    }
    out
}

/// The interfaces in `netns` other than `lo`.
fn links_in(netns: &str) -> Vec<String> {
    let out = vswitch_e2e::ip(&["-n", netns, "-o", "link", "show"]);
    out.stdout_str()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n != "lo")
        .collect()
}

/// Reads and parses state.json: it must be whole JSON at any moment.
fn read_state(dir: &Path) -> Value {
    let path = dir.join("state.json");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse ({e}):\n{text}", path.display()))
}

fn names(v: &Value, what: &str) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not an array: {v}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn crash_mid_burst_keeps_every_acknowledged_change() {
    let Some(tb) = Testbed::new("crash_mid_burst_keeps_every_acknowledged_change") else {
        return;
    };
    let mut rng = Rng::from_env("crash_mid_burst_keeps_every_acknowledged_change");
    let (node, mut d) = node_with_daemon(&tb, 1, NodeOpts::default().without_underlay());
    // Two port adds, then a service add, ... (fresh network namespaces made beforehand).
    let mut changes = Vec::new();
    let (mut p, mut s) = (0, 0);
    while p < BURST_PORTS || s < BURST_SERVICES {
        for _ in 0..2 {
            if p < BURST_PORTS {
                let name = format!("p{p}");
                let netns = tb.create_netns(&tb.pod_netns_name(&name));
                changes.push(Change::Port { name, netns });
                p += 1;
            }
        }
        if s < BURST_SERVICES {
            changes.push(Change::Service {
                name: format!("s{s}"),
                vip: format!("198.19.96.{}", 40 + s),
            });
            s += 1;
        }
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; changes.len()];
    let mut next = 0;
    let mut kills = 0;
    let mut report = format!("VSWITCH_E2E_SEED={} replays this run\n", rng.1);
    while next < changes.len() {
        let remaining = changes.len() - next;
        // Kill after a random number of further acknowledgements (at most 3 crashes; the last
        // round runs to the end), plus up to 30 ms: mostly while a request is in flight.
        let kill_after = (kills < 3 && remaining > 4)
            .then(|| rng.range(1, (remaining - 2).min(25) as u64) as usize);
        let delay = Duration::from_micros(rng.range(0, 30_000));
        let done = AtomicUsize::new(0);
        let round = thread::scope(|sc| {
            let h = sc.spawn(|| burst(&node, &changes, next, &done));
            if let Some(k) = kill_after {
                let deadline = Instant::now() + Duration::from_secs(60);
                while done.load(Ordering::SeqCst) < k && !h.is_finished() {
                    assert!(Instant::now() < deadline, "the burst stalled");
                    thread::sleep(Duration::from_millis(1));
                }
                thread::sleep(delay);
                d.stop(Stop::Kill);
            }
            h.join().expect("burst thread")
        });
        let acked = round
            .iter()
            .filter(|o| matches!(o, Outcome::Acked(_)))
            .count();
        let _ = writeln!(
            report,
            "round from #{next}: kill after {kill_after:?} acks + {delay:?}: {acked} acked"
        );
        let in_flight = next + acked;
        for (i, o) in round.into_iter().enumerate() {
            outcomes[next + i] = Some(o);
        }
        if kill_after.is_none() {
            assert_eq!(
                in_flight,
                changes.len(),
                "without a crash every command must succeed: {:?}\n{report}",
                outcomes[in_flight]
            );
            break;
        }
        kills += 1;
        // Right after the crash: state.json is whole, and holds every acknowledged change.
        let tmp = node.state_dir.join("state.json.tmp");
        let _ = writeln!(
            report,
            "  after the kill: state.json.tmp {}",
            if tmp.exists() { "left over" } else { "absent" }
        );
        let st = read_state(&node.state_dir);
        let (st_ports, st_svcs) = (
            names(&st["ports"], "ports"),
            names(&st["services"], "services"),
        );
        d.start();
        assert!(
            !tmp.exists(),
            "state.json.tmp still there after the restart\n{report}"
        );
        let ports = node.ports();
        let svcs = node.ctl_json(&["service", "list"]);
        let (l_ports, l_svcs) = (
            names(&Value::Array(ports.clone()), "port list"),
            names(&svcs, "service list"),
        );
        assert_eq!(
            (&l_ports, &l_svcs),
            (&st_ports, &st_svcs),
            "the restarted daemon does not list what state.json holds\n{report}"
        );
        for (c, o) in changes.iter().zip(&outcomes).take(in_flight) {
            let Some(Outcome::Acked(ack)) = o else {
                continue;
            };
            match c {
                Change::Port { name, .. } => {
                    let p = ports
                        .iter()
                        .find(|p| p["name"] == name.as_str())
                        .unwrap_or_else(|| {
                            panic!("acknowledged port {name} lost in the crash\n{report}")
                        });
                    for f in ["ip", "mac", "netns"] {
                        assert_eq!(p[f], ack[f], "port {name}: {f} changed\n{report}");
                    }
                    assert_eq!(p["status"], "Running", "port {name}: {p}\n{report}");
                }
                Change::Service { name, vip } => {
                    let s = svcs
                        .as_array()
                        .and_then(|a| a.iter().find(|s| s["name"] == name.as_str()))
                        .unwrap_or_else(|| {
                            panic!("acknowledged service {name} lost in the crash\n{report}")
                        });
                    assert_eq!(s["vip"], vip.as_str(), "service {name}\n{report}");
                }
            }
        }
        if in_flight == changes.len() {
            // The burst ended before the kill landed.
            break;
        }
        // The command the crash interrupted: there or not, but whole either way, and when it
        // is not there it left nothing behind and can simply be retried.
        let c = &changes[in_flight];
        let present = match c {
            Change::Port { .. } => l_ports.contains(c.name()),
            Change::Service { .. } => l_svcs.contains(c.name()),
        };
        let error = match &outcomes[in_flight] {
            Some(Outcome::Unacked(e)) => e.lines().last().unwrap_or_default().to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            report,
            "  interrupted #{in_flight} ({}): {} ({error})",
            c.name(),
            if present { "applied" } else { "not applied" }
        );
        if let Change::Port { name, netns } = c {
            let links = links_in(netns);
            if present {
                let p = ports.iter().find(|p| p["name"] == name.as_str()).unwrap();
                assert_eq!(p["status"], "Running", "port {name}: {p}\n{report}");
                assert_eq!(links, ["eth0"], "{netns}\n{report}");
            } else {
                assert!(
                    links.is_empty(),
                    "the unacknowledged `port add {name}` left {links:?} in {netns}\n{report}"
                );
            }
        }
        if present {
            next = in_flight + 1;
        } else {
            next = in_flight;
        }
        outcomes[in_flight] = None;
    }
    eprintln!("crash_mid_burst: {kills} crashes\n{report}");
    assert!(kills >= 1, "no crash happened\n{report}");

    // In the end everything is there once, every pod is attached and reaches its gateway.
    let ports = node.ports();
    let svcs = node.ctl_json(&["service", "list"]);
    assert_eq!(ports.len(), BURST_PORTS, "{ports:?}");
    assert_eq!(
        svcs.as_array().map(Vec::len),
        Some(BURST_SERVICES),
        "{svcs}"
    );
    let ips: BTreeSet<&str> = ports.iter().filter_map(|p| p["ip"].as_str()).collect();
    assert_eq!(ips.len(), BURST_PORTS, "duplicate addresses: {ports:?}");
    let gw = node.gateway.to_string();
    for p in &ports {
        assert_eq!(p["status"], "Running", "{p}");
        let netns = p["netns"].as_str().unwrap_or_default();
        let netns = netns.rsplit('/').next().unwrap_or(netns);
        let out = exec_in(
            netns,
            Duration::from_secs(5),
            "busybox",
            &["ping", "-c", "1", "-W", "2", &gw],
        );
        assert!(
            out.status.success(),
            "pod {} cannot reach its gateway: {}",
            p["name"],
            out.describe()
        );
    }
    let st = read_state(&node.state_dir);
    assert_eq!(names(&st["ports"], "ports").len(), BURST_PORTS);
    assert_eq!(names(&st["services"], "services").len(), BURST_SERVICES);
    drop(d);
}

// ----- 3. a second daemon is refused -----------------------------------------------------------

#[test]
fn second_daemon_is_refused_and_the_first_serves_on() {
    let Some(tb) = Testbed::new("second_daemon_is_refused_and_the_first_serves_on") else {
        return;
    };
    let (node, d) = node_with_daemon(&tb, 1, NodeOpts::default().without_underlay());
    let pod = tb.add_pod(&node, "pod", &[]);
    let state_before = fs::read(node.state_dir.join("state.json")).expect("state.json");
    let other_dir: PathBuf = tb.dir().join("other");
    let other_state = other_dir.join("state");
    let other_sock = other_dir.join("vswitchd.sock");
    let (sock, state) = (
        node.socket.display().to_string(),
        node.state_dir.display().to_string(),
    );
    let (osock, ostate) = (
        other_sock.display().to_string(),
        other_state.display().to_string(),
    );
    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "the same state dir",
            &osock,
            &state,
            "another vswitchd is running with state directory",
        ),
        (
            "the same socket",
            &sock,
            &ostate,
            "another vswitchd is serving on",
        ),
        ("both", &sock, &state, "another vswitchd"),
    ];
    let bin = tb.bin("vswitchd");
    for (what, sock_arg, state_arg, want) in cases {
        let start = Instant::now();
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &node.netns])
            .arg(&bin)
            .args(["--node", "node1", "--pod-cidr", &node.pod_cidr])
            .args(["--socket", sock_arg, "--state-dir", state_arg]);
        let out = run_with_timeout(&mut cmd, Duration::from_secs(10)).expect("running vswitchd");
        let err = out.stderr_str();
        assert!(
            !out.status.success() && out.code().is_some(),
            "a second vswitchd on {what} was not refused: {}",
            out.describe()
        );
        assert!(
            err.contains(want),
            "a second vswitchd on {what}: the message lacks `{want}`: {}",
            out.describe()
        );
        // Named after what collides, with the path.
        assert!(
            err.contains(sock_arg) && want.contains("serving")
                || err.contains(state_arg) && want.contains("state directory")
                || want == "another vswitchd",
            "a second vswitchd on {what}: the message does not name the path: {err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "refusing took {:?}",
            start.elapsed()
        );
        eprintln!(
            "second vswitchd on {what}: {}",
            err.lines().find(|l| l.contains(want)).unwrap_or_default()
        );
        // The first one serves on: its socket, its state, its pod.
        assert!(
            node.socket.exists(),
            "the refused daemon removed the first one's socket"
        );
        assert_eq!(node.show()["node"], "node1");
        assert_eq!(
            fs::read(node.state_dir.join("state.json")).expect("state.json"),
            state_before,
            "the refused daemon changed state.json"
        );
    }
    let ports = node.ports();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["status"], "Running");
    assert!(
        pod.ping(node.gateway).status.success(),
        "the pod lost its switch"
    );
    // And it still takes changes.
    let _second = tb.add_pod(&node, "pod2", &[]);
    assert_eq!(node.ports().len(), 2);
    drop(d);
}
