//! Crash safety of the persisted state, and the single-instance lock.
//!
//! - SIGKILL at random points of a burst of `port add` / `service add`: every acknowledged
//!   change must be there after the restart, state.json must parse, and an unacknowledged
//!   change may be there or not, but leaves nothing behind.
//! - A second daemon on the same state directory or socket is refused, and the first serves
//!   on.
//! - A truncated state.json (a bad disk) does not stop the daemon: it falls back to the
//!   previous good state (state.json.prev), says so in its log, and the pods carry traffic.
//!
//! The tests run their daemons themselves ([`vswitch_e2e::daemon`]) to be able to SIGKILL
//! them and start them again.
//!
//! `VSWITCH_E2E_SEED=N` replays the random kill points of the crash-safety test.

use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use vswitch_e2e::cmd::run_with_timeout;
use vswitch_e2e::daemon::{node_with_daemon, Stop};
use vswitch_e2e::{exec_in, Node, NodeOpts, OutputExt, Testbed};

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

// ----- crash safety -------------------------------------------------------------------------

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

// ----- a second daemon is refused -----------------------------------------------------------

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

/// State.json truncated while the daemon is stopped: the daemon starts from
/// state.json.prev, logs the fallback naming both files, keeps the damaged file aside, and the
/// pods (added before the last save) carry traffic again.
#[test]
fn truncated_state_falls_back_to_the_previous_state() {
    let Some(tb) = Testbed::new("truncated_state_falls_back_to_the_previous_state") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default().without_underlay());
    let a = tb.add_pod(&node, "a", &[]);
    let b = tb.add_pod(&node, "b", &[]);
    assert!(a.ping(b.ip).status.success(), "a cannot reach b before");
    // One more save after the pods': state.json.prev then holds both of them.
    node.ctl_ok(&[
        "service",
        "add",
        "last",
        "--vip",
        "198.19.96.40",
        "--port",
        "80",
        "--endpoint",
        &b.ip.to_string(),
    ]);
    let dir = node.state_dir.clone();
    let prev: Value = serde_json::from_slice(&fs::read(dir.join("state.json.prev")).unwrap())
        .expect("state.json.prev is JSON");
    assert_eq!(
        names(&prev["ports"], "ports"),
        BTreeSet::from(["a".into(), "b".into()])
    );

    tb.stop_daemon(&node);
    // A bad disk: the file cut in the middle.
    let whole = fs::read(dir.join("state.json")).unwrap();
    fs::write(dir.join("state.json"), &whole[..whole.len() / 2]).unwrap();
    tb.start_daemon(&node);

    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("falling back to the previous good state"))
        .unwrap_or_else(|| panic!("no fallback line in the log:\n{log}"));
    assert!(
        line.contains("ERROR") && line.contains("state.json ") && line.contains("state.json.prev"),
        "{line}"
    );
    assert_eq!(
        fs::read(dir.join("state.json.corrupt")).unwrap(),
        &whole[..whole.len() / 2],
        "the damaged file is not kept"
    );
    let ports = node.ports();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(ports.iter().all(|p| p["status"] == "Running"), "{ports:?}");
    assert!(
        a.ping(b.ip).status.success(),
        "a cannot reach b after the fallback"
    );
    assert!(b.ping(node.gateway).status.success(), "b lost its switch");
    // The state on disk is whole again.
    let now = read_state(&dir);
    assert_eq!(
        names(&now["ports"], "ports"),
        BTreeSet::from(["a".into(), "b".into()])
    );
    // And the node takes changes.
    let c = tb.add_pod(&node, "c", &[]);
    assert!(c.ping(a.ip).status.success(), "a new pod cannot reach a");
}
