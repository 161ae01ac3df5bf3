//! Restarts under load: an iperf3 TCP transfer between pods on two nodes and a wget loop
//! through a Service VIP run while each node's daemon is restarted, first gracefully
//! (SIGTERM), later killed (SIGKILL).
//!
//! - The TCP connection must survive: the pods' TAPs are persistent and re-attached, and in
//!   `service_tcp_connection_survives_restarts`, where iperf3 connects through a Service VIP
//!   (DNAT on the client's node), the client node's daemon restores its conntrack table
//!   (`conntrack.json`: saved on SIGTERM, checkpointed for SIGKILL: every second for a
//!   small table like this one, rate-limited by size for large ones).
//! - No wget may fail outside the downtime windows.
//! - The stalls are printed (not asserted: timing on a loaded 2-core VM is noise).
//!
//! The tests run their daemons themselves ([`vswitch_e2e::daemon`]) to be able to SIGKILL
//! them and start them again. Crash safety of the state and the single-instance lock are in
//! `crash_safety.rs`.

use serde_json::Value;
use std::fmt::Write as _;
use std::thread;
use std::time::Duration;
use vswitch_e2e::daemon::{node_with_daemon, now, Stop};
use vswitch_e2e::traffic::iperf_intervals;
use vswitch_e2e::{NodeOpts, OutputExt, Pod, Testbed};

// ----- restart under load -----------------------------------------------------------------------

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
    /// How many conntrack entries the new daemon restored (from its log).
    restored: Option<usize>,
    /// The rest of that log line: what was skipped and why.
    restore_detail: String,
}

/// The number in the daemon's log line `conntrack: restored N connections`.
fn restored(log: &str) -> Option<usize> {
    let (_, rest) = log.rsplit_once("conntrack: restored ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The skip counts of that log line (`invalid=.. stale=.. ...`), for the report.
fn restore_detail(log: &str) -> String {
    log.rsplit_once("conntrack: restored ")
        .and_then(|(_, rest)| rest.lines().next())
        .and_then(|l| l.split_once("invalid="))
        .map_or_else(String::new, |(_, d)| format!("invalid={d}"))
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
    web.wait_listening(5201);

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
                restored: restored(&d.output()),
                restore_detail: restore_detail(&d.output()),
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
            "  {} {:?}: signal at {:.3}, answering again after {:.0} ms, {:?} conntrack \
             entries restored ({})",
            r.node,
            r.how,
            r.signal - t0,
            (r.ready - r.signal) * 1000.0,
            r.restored,
            r.restore_detail
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
    // Not iperf.describe(): the JSON of 220 intervals would push iperf3's own error (at its
    // end) out of a CI log's excerpt.
    assert!(
        iperf.status.success() && json.get("error").is_none(),
        "iperf3 (the TCP connection across the restarts) failed: exit {:?}, error {}, last \
         interval ending at {:?} s; stderr: {}\n{report}",
        iperf.code(),
        json.get("error").unwrap_or(&Value::Null),
        intervals.last().map(|i| i.1),
        iperf.stderr_str().trim_end()
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
    // The client node's daemon carried iperf3's two connections (control and data) through
    // the VIP across both restarts: from its graceful save and from its last checkpoint.
    if via_service {
        for r in restarts.iter().filter(|r| r.node == "node2") {
            assert!(
                r.restored.is_some_and(|n| n >= 2),
                "{} {:?}: restored {:?} conntrack entries, expected iperf3's 2 at least\n{report}",
                r.node,
                r.how,
                r.restored
            );
        }
    }
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

/// The same through a Service VIP: the DNAT happens in the client node's daemon, whose
/// conntrack must survive its restarts (saved on SIGTERM, checkpointed every second for
/// SIGKILL, restored before the pods' TAPs are served). Without it the connection is reset at
/// the first restart: the server (iperf3 -R) sends, its packets reach the client untranslated
/// (from the endpoint's address instead of the VIP) and the client answers them with a RST.
#[test]
fn service_tcp_connection_survives_restarts() {
    let Some(tb) = Testbed::new("service_tcp_connection_survives_restarts") else {
        return;
    };
    restarts_under_load(&tb, NodeOpts::default(), true);
}
