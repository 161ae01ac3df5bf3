//! Hostile and broken pods (issue 7, acceptance 3): each attack runs for a bounded time from
//! one pod (or, for VXLAN, from a stranger on the underlay) while two other pods keep
//! transferring; every transfer completes intact (sha256 of a 4 MiB file served by nginx),
//! the attack's drop counters rise, and the daemon's peak memory stays under a fixed bound.
//!
//! - `storms_and_garbage_do_not_disturb_other_pods`: garbage frames, an ARP storm (during which
//!   the client flushes its neighbour cache before every transfer, so its own ARP must still
//!   be answered: the budgets are per port), a broadcast storm, forged sources, and VXLAN from
//!   an underlay address that is no peer.
//! - `syn_flood_to_a_service_keeps_established_connections`: a SYN flood to a Service VIP on a
//!   node with `--conntrack-max 512` while an iperf3 connection through the same VIP is
//!   established: it survives and keeps carrying data, new connections through the VIP keep
//!   working, and the flooding pod is held to its share of the table (`conntrack_pod_limit`,
//!   a sixteenth by default): nothing of the other pods is evicted. (Eviction on a full table
//!   is the datapath's unit tests' business.)
//!
//! Attacks are unpaced (as fast as the attacker's core allows) and bounded by
//! [`ATTACK_SECS`] seconds and [`ATTACK_COUNT`] packets. The memory bound is [`MAX_HWM_KIB`]
//! of VmHWM (peak RSS) from /proc/PID/status; measured at 11-12 MiB (io_uring) and 6-7 MiB
//! (epoll) on the development machine, so the bound has a wide margin and would catch a table or queue
//! that grows with the attack.

use serde_json::Value;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};
use vswitch_e2e::procfs::status_field;
use vswitch_e2e::{Bg, Node, NodeOpts, OutputExt, Pod, Testbed};

/// Seconds each attack runs at most.
const ATTACK_SECS: &str = "3";
/// Packets each attack sends at most.
const ATTACK_COUNT: &str = "1000000";
/// The daemon's peak RSS must stay below this (KiB).
const MAX_HWM_KIB: u64 = 64 * 1024;
/// The size of the file the victims transfer.
const BLOB_BYTES: usize = 4 << 20;
/// A transfer (one wget of the blob) must finish within this.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the transfers may keep going while waiting for an attack to end.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// The defaults of `--arp-limit` and `--broadcast-limit`: 100/s, bursts of 200.
const LIMIT_RATE: f64 = 100.0;
const LIMIT_BURST: f64 = 200.0;

const VIP: &str = "198.19.96.20";

/// A node with three pods: the attacker, and a server (nginx with the blob, behind the
/// Service `web` at [`VIP`]) and its client.
struct Bed {
    tb: Testbed,
    node: Node,
    attacker: Pod,
    server: Pod,
    client: Pod,
    sha: String,
    _nginx: Bg,
}

fn bed(test: &str, opts: NodeOpts) -> Option<Bed> {
    let tb = Testbed::new(test)?;
    let node = tb.add_node(1, opts);
    let attacker = tb.add_pod(&node, "attacker", &[]);
    let server = tb.add_pod(&node, "server", &[("app", "web")]);
    let client = tb.add_pod(&node, "client", &[]);
    let nginx = tb.start_nginx(&server);
    // The blob: pseudo-random bytes next to nginx's index page.
    let html = tb.dir().join("nginx-server").join("html");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let blob: Vec<u8> = (0..BLOB_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let path = html.join("blob");
    fs::write(&path, &blob).expect("writing the blob");
    let sha = first_word(
        &node
            .exec("sha256sum", &[&path.display().to_string()])
            .stdout_str(),
    );
    node.ctl_ok(&[
        "service",
        "add",
        "web",
        "--vip",
        VIP,
        "--port",
        "http:80",
        "--port",
        "iperf:5201",
        "--selector",
        "app=web",
    ]);
    Some(Bed {
        tb,
        node,
        attacker,
        server,
        client,
        sha,
        _nginx: nginx,
    })
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or_default().to_string()
}

/// The pod counters of `name` in `stats`.
fn port_stats(stats: &Value, name: &str) -> Value {
    stats["ports"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no port {name} in stats: {stats}"))
}

fn delta(before: &Value, after: &Value, path: &[&str]) -> u64 {
    let get = |v: &Value| {
        path.iter()
            .fold(v, |v, k| &v[*k])
            .as_u64()
            .unwrap_or_else(|| panic!("stats has no {}: {v}", path.join(".")))
    };
    get(after) - get(before)
}

/// The daemon's VmRSS and VmHWM, KiB.
fn memory(tb: &Testbed, node: &Node) -> (u64, u64) {
    let pid = tb.daemon_pid(node);
    (status_field(pid, "VmRSS:"), status_field(pid, "VmHWM:"))
}

/// What one attack phase saw.
struct Phase {
    report: Value,
    transfers: u32,
    wall_s: f64,
    before: Value,
    after: Value,
}

impl Bed {
    /// One transfer of the blob from `url` into the client, checked; `pre` runs first in the
    /// same shell.
    fn transfer(&self, url: &str, pre: &str) {
        let script = format!("{pre}busybox wget -q -O- {url} | sha256sum");
        let t = Instant::now();
        let out = self
            .client
            .exec_timeout(TRANSFER_TIMEOUT, "sh", &["-c", &script]);
        assert!(
            out.status.success(),
            "transfer from {url} failed after {:?}: {}",
            t.elapsed(),
            out.describe()
        );
        let got = first_word(&out.stdout_str());
        assert_eq!(got, self.sha, "transfer from {url}: the data differ");
    }

    /// Runs `vswitch-pktgen attack ARGS` in `netns` while the client transfers the blob from
    /// `url` again and again (at least once after the attack started, and until it ended).
    fn attack(&self, netns: &str, args: &[&str], url: &str, pre: &str) -> Phase {
        let before = self.node.stats();
        let pktgen = self.tb.bin("vswitch-pktgen").display().to_string();
        let mut all = vec!["attack"];
        all.extend(args);
        all.extend(["--duration", ATTACK_SECS, "--count", ATTACK_COUNT, "--json"]);
        let t0 = Instant::now();
        let bg = self
            .tb
            .spawn_in(netns, &format!("attack-{}", args[0]), &pktgen, &all);
        let mut transfers = 0;
        loop {
            self.transfer(url, pre);
            transfers += 1;
            if !bg.is_running() {
                break;
            }
            assert!(
                t0.elapsed() < PHASE_TIMEOUT,
                "the attack {args:?} did not end within {PHASE_TIMEOUT:?}"
            );
        }
        let wall_s = t0.elapsed().as_secs_f64();
        let output = bg.output();
        let report: Value = output
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("attack {args:?} printed no JSON report:\n{output}"));
        // And once more after it, so the victims are known to be fine afterwards too.
        self.transfer(url, pre);
        let after = self.node.stats();
        assert!(
            report["sent"].as_u64().unwrap_or(0) > 0,
            "attack {args:?} sent nothing: {report}"
        );
        let (rss, hwm) = memory(&self.tb, &self.node);
        println!(
            "{:<22} sent {:>7} in {:.2} s ({:>7.0} pps, {} send errors); {} transfers of {} MiB \
             during it; phase {:.2} s; vswitchd RSS {} KiB, peak {} KiB",
            args[0],
            report["sent"],
            report["elapsed_s"].as_f64().unwrap_or(0.0),
            report["offered_pps"].as_f64().unwrap_or(0.0),
            report["send_errors"],
            transfers,
            BLOB_BYTES >> 20,
            wall_s,
            rss,
            hwm
        );
        assert!(
            hwm < MAX_HWM_KIB,
            "vswitchd peak RSS {hwm} KiB over the bound {MAX_HWM_KIB} KiB after {args:?}"
        );
        Phase {
            report,
            transfers,
            wall_s,
            before,
            after,
        }
    }
}

impl Phase {
    fn drops(&self, reason: &str) -> u64 {
        delta(&self.before, &self.after, &["drops", reason])
    }

    /// Prints the drop counters that moved.
    fn print_drops(&self) {
        let moved: Vec<String> = self.after["drops"]
            .as_object()
            .map(|m| {
                m.keys()
                    .filter(|k| self.drops(k) > 0)
                    .map(|k| format!("{k} +{}", self.drops(k)))
                    .collect()
            })
            .unwrap_or_default();
        println!("    drops: {}", moved.join(", "));
    }

    /// Checks that the frames of the attacker that the switch saw beyond those it limited
    /// (`rx_packets - limited`) stay within the limit's budget over the phase's wall time.
    fn check_limited(&self, reason: &str) {
        let limited = self.drops(reason);
        let seen = delta(
            &port_stats(&self.before, "attacker"),
            &port_stats(&self.after, "attacker"),
            &["rx_packets"],
        );
        let budget = (LIMIT_BURST + LIMIT_RATE * (self.wall_s + 1.0)) as u64;
        println!(
            "    attacker frames seen by the switch {seen}, {reason} {limited}, let through {} \
             (budget {budget})",
            seen - limited
        );
        assert!(limited > 0, "{reason} did not rise: {}", self.report);
        // A few frames of the pod's own kernel (IPv6 router solicitations, ...) may pass too.
        assert!(
            seen - limited <= budget + 50,
            "{} frames passed the {reason} limit (budget {budget})",
            seen - limited
        );
    }
}

#[test]
fn storms_and_garbage_do_not_disturb_other_pods() {
    let Some(b) = bed(
        "storms_and_garbage_do_not_disturb_other_pods",
        NodeOpts::default(),
    ) else {
        return;
    };
    let t_all = Instant::now();
    let url = format!("http://{}/blob", b.server.ip);
    b.transfer(&url, "");
    let (rss, hwm) = memory(&b.tb, &b.node);
    println!("vswitchd before the attacks: RSS {rss} KiB, peak {hwm} KiB");
    let at = b.attacker.netns.clone();

    let p = b.attack(&at, &["garbage"], &url, "");
    p.print_drops();
    assert!(p.drops("malformed") > 0, "garbage: no malformed drops");
    assert!(p.drops("spoofed_mac") > 0, "garbage: no spoofed_mac drops");

    // The client forgets its neighbours before every transfer: its ARP for the server must
    // be answered while the attacker's is being limited.
    let p = b.attack(&at, &["arp-storm"], &url, "ip neigh flush dev eth0; ");
    p.print_drops();
    p.check_limited("arp_rate_limited");
    assert!(
        p.transfers >= 2,
        "ARP storm: no transfer overlapped the attack"
    );

    let p = b.attack(&at, &["broadcast"], &url, "");
    p.print_drops();
    p.check_limited("broadcast_rate_limited");

    let server = format!("{}:0", b.server.ip);
    let p = b.attack(&at, &["forged", "--dst", &server], &url, "");
    p.print_drops();
    for reason in ["spoofed_mac", "spoofed_ip", "spoofed_arp"] {
        assert!(p.drops(reason) > 0, "forged: no {reason} drops");
    }

    // A stranger on the underlay: an address of the underlay subnet that is no peer.
    let stranger = b.tb.add_node(9, NodeOpts::no_daemon());
    let underlay = b.node.underlay.expect("node1 has an underlay");
    let dst = format!("{underlay}:4789");
    let p = b.attack(
        &stranger.netns,
        &["vxlan-from-stranger", "--dst", &dst, "--vni", "1"],
        &url,
        "",
    );
    p.print_drops();
    let unknown = p.drops("tunnel_unknown_peer");
    let sent = p.report["sent"].as_u64().unwrap_or(0);
    assert!(
        unknown > 0 && unknown <= sent,
        "tunnel_unknown_peer +{unknown} for {sent} datagrams sent"
    );
    assert_eq!(
        p.drops("tunnel_not_ours"),
        0,
        "nothing got past the peer check"
    );

    assert_eq!(b.node.ports().len(), 3, "every pod still attached");
    println!(
        "storms_and_garbage_do_not_disturb_other_pods: {:.1} s",
        t_all.elapsed().as_secs_f64()
    );
}

#[test]
fn syn_flood_to_a_service_keeps_established_connections() {
    let opts = NodeOpts::default().arg("--conntrack-max").arg("512");
    let Some(b) = bed("syn_flood_to_a_service_keeps_established_connections", opts) else {
        return;
    };
    let t_all = Instant::now();
    let vip_url = format!("http://{VIP}/blob");
    b.transfer(&vip_url, "");

    // The established connection: iperf3 through the VIP, paced, across the whole flood.
    let _iperf_server = b
        .server
        .spawn("iperf3-server", "iperf3", &["-s", "-1", "-p", "5201"]);
    b.server.wait_listening(5201);
    let iperf = {
        let client = b.client.clone();
        thread::spawn(move || {
            client.exec_timeout(
                Duration::from_secs(40),
                "iperf3",
                &["-c", VIP, "-p", "5201", "-t", "10", "-b", "20M", "-J"],
            )
        })
    };
    // Let it establish (and be assured in conntrack) before the flood.
    thread::sleep(Duration::from_secs(1));
    let est_before = b.node.stats()["conntrack"]["entries"].as_u64().unwrap_or(0);
    assert!(est_before >= 2, "iperf3's connections are not tracked");

    let dst = format!("{VIP}:80");
    let p = b.attack(
        &b.attacker.netns,
        &["syn-flood", "--dst", &dst],
        &vip_url,
        "",
    );
    p.print_drops();
    let ct = &p.after["conntrack"];
    let evicted = delta(&p.before, &p.after, &["conntrack", "evicted"]);
    println!(
        "    conntrack: {} of {} entries, +{evicted} evicted, conntrack_full +{}, \
         conntrack_pod_limit +{}; {} transfers through the VIP during the flood",
        ct["entries"],
        ct["max"],
        p.drops("conntrack_full"),
        p.drops("conntrack_pod_limit"),
        p.transfers
    );
    // The flooding pod holds at most its share (512 / 16 by default): the rest of its SYNs
    // are refused as its own, and the table never fills for the others.
    assert!(
        p.drops("conntrack_pod_limit") > 0,
        "the flood was not held to its pod's share: {ct}"
    );
    assert!(ct["entries"].as_u64().unwrap_or(u64::MAX) < 512, "{ct}");
    assert_eq!(p.drops("conntrack_full"), 0, "the table filled: {ct}");
    assert_eq!(
        evicted, 0,
        "a pod's flood evicted other pods' connections: {ct}"
    );

    let out = iperf.join().expect("iperf3 thread");
    assert!(
        out.status.success(),
        "iperf3 through the VIP failed: {}",
        out.describe()
    );
    let json: Value = serde_json::from_str(&out.stdout_str()).expect("iperf3 -J output");
    let intervals = json["intervals"].as_array().cloned().unwrap_or_default();
    let bytes: Vec<u64> = intervals
        .iter()
        .map(|i| i["sum"]["bytes"].as_u64().unwrap_or(0))
        .collect();
    println!("    iperf3 through the VIP, bytes per second: {bytes:?}");
    assert!(
        bytes.len() >= 9 && bytes.iter().rev().take(3).all(|&b| b > 0),
        "the established connection stopped carrying data: {bytes:?}"
    );
    println!(
        "syn_flood_to_a_service_keeps_established_connections: {:.1} s",
        t_all.elapsed().as_secs_f64()
    );
}
