//! `vswitchd --workers N`: every pod's TAP is multi-queue with one queue per worker, the
//! tunnel has one `SO_REUSEPORT` socket per worker, and the kernel spreads flows over them.
//! Shown on two nodes with both engines: the TAP has N queues, many parallel TCP flows
//! (same node and across the tunnel) complete and are carried by every worker thread (each
//! used a share of the CPU time), and a restart with another worker count takes the pods' TAPs over as
//! they are (single- and multi-queue TAPs do not mix) without losing them.

use std::time::Duration;
use vswitch_e2e::procfs::{vswitchd_pid_in, worker_cpu_ns};
use vswitch_e2e::{NodeOpts, OutputExt, Pod, Testbed};

/// Parallel TCP flows per iperf3 run: with 16 flows hashed over 2 queues, the chance that
/// one worker gets none is 2 in 65536.
const FLOWS: &str = "16";

/// `numqueues N` of the pod's eth0 as iproute2 reports a tun device.
fn numqueues(pod: &Pod) -> Option<u32> {
    let d = pod.exec_ok("ip", &["-d", "link", "show", "eth0"]);
    let mut words = d.split_whitespace();
    while let Some(w) = words.next() {
        if w == "numqueues" {
            return words.next().and_then(|n| n.parse().ok());
        }
    }
    None
}

/// iperf3 with [`FLOWS`] parallel flows from `client` to `server`, 64 MB in all; asserts
/// it completed.
fn iperf(server: &Pod, client: &Pod) {
    let _srv = server.spawn("iperf3", "iperf3", &["-s", "-1", "-p", "5201"]);
    let ip = server.ip.to_string();
    let mut last = None;
    for _ in 0..50 {
        let out = client.exec_timeout(
            Duration::from_secs(60),
            "iperf3",
            &["-c", &ip, "-p", "5201", "-P", FLOWS, "-n", "64M", "-J"],
        );
        if out.status.success() {
            return;
        }
        // The server may not listen yet.
        last = Some(out.describe());
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("iperf3 {} -> {} failed: {last:?}", client.name, server.name);
}

fn wget_ok(from: &Pod, to: &Pod) {
    let url = format!("http://{}/", to.ip);
    let out = from.wget(&url);
    assert!(
        out.status.success() && out.stdout_str().contains("nginx"),
        "{}",
        out.describe()
    );
}

fn workers_carry_flows(test: &str, datapath: &str) {
    let Some(tb) = Testbed::new(test) else { return };
    let opts = NodeOpts::datapath(datapath).arg("--workers").arg("2");
    let n1 = tb.add_node(1, opts.clone());
    let n2 = tb.add_node(2, opts);
    tb.mesh(&[&n1, &n2]);
    let a = tb.add_pod(&n1, "a", &[("app", "nginx")]);
    let b = tb.add_pod(&n1, "b", &[]);
    let c = tb.add_pod(&n2, "c", &[]);
    for p in [&a, &b, &c] {
        assert_eq!(
            numqueues(p),
            Some(2),
            "{}'s eth0 should have 2 queues",
            p.name
        );
    }
    let _web = tb.start_nginx(&a);
    wget_ok(&b, &a);
    wget_ok(&c, &a);

    let (p1, p2) = (vswitchd_pid_in(&n1.netns), vswitchd_pid_in(&n2.netns));
    let (before1, before2) = (worker_cpu_ns(p1), worker_cpu_ns(p2));
    assert_eq!(before1.len(), 2, "node1 worker threads: {before1:?}");
    iperf(&a, &b); // same node
    iperf(&a, &c); // across the tunnel, both directions of 16 flows each
    iperf(&c, &a);
    for (pid, before, node) in [(p1, before1, &n1), (p2, before2, &n2)] {
        let after = worker_cpu_ns(pid);
        let used: Vec<u64> = before
            .iter()
            .zip(&after)
            .map(|((_, t0), (_, t1))| t1 - t0)
            .collect();
        let total: u64 = used.iter().sum();
        println!("{} worker CPU ns used: {used:?} ({after:?})", node.name);
        // An idle worker only wakes once a second (a few µs); one carrying a share of 16
        // flows works for milliseconds. 5 % of the total is far from both.
        for ((name, _), u) in after.iter().zip(&used) {
            assert!(
                *u * 20 >= total,
                "{}: worker {name} carried (almost) nothing: {used:?} ns",
                node.name
            );
        }
    }

    // Back to one worker: the multi-queue TAPs are taken over as they are.
    tb.stop_daemon(&n1);
    tb.set_daemon_arg(&n1, "--workers", "1");
    tb.start_daemon(&n1);
    assert_eq!(
        n1.ports().len(),
        2,
        "ports after the restart: {:?}",
        n1.ports()
    );
    wget_ok(&b, &a);
    wget_ok(&c, &a);
    iperf(&a, &b);
    let log = n1.log();
    assert!(
        !log.contains("cannot re-attach"),
        "a pod lost its TAP across the restart:\n{log}"
    );
}

#[test]
fn two_workers_carry_flows_uring() {
    workers_carry_flows("two_workers_carry_flows_uring", "uring");
}

#[test]
fn two_workers_carry_flows_epoll() {
    workers_carry_flows("two_workers_carry_flows_epoll", "epoll");
}

/// A daemon started with one worker, whose TAPs are single-queue, restarted with two: the
/// TAPs are taken over single-queue (the second worker only writes to them) and work.
#[test]
fn single_queue_taps_are_taken_over_by_two_workers() {
    let Some(tb) = Testbed::new("single_queue_taps_are_taken_over_by_two_workers") else {
        return;
    };
    let n1 = tb.add_node(1, NodeOpts::default().arg("--workers").arg("1"));
    let a = tb.add_pod(&n1, "a", &[]);
    let b = tb.add_pod(&n1, "b", &[]);
    assert_eq!(
        numqueues(&a),
        None,
        "a single-queue TAP reports no numqueues"
    );
    let _web = tb.start_nginx(&a);
    wget_ok(&b, &a);
    tb.stop_daemon(&n1);
    tb.set_daemon_arg(&n1, "--workers", "2");
    tb.start_daemon(&n1);
    assert_eq!(n1.ports().len(), 2);
    wget_ok(&b, &a);
    iperf(&a, &b);
    // New pods get two queues.
    let c = tb.add_pod(&n1, "c", &[]);
    assert_eq!(numqueues(&c), Some(2));
    wget_ok(&c, &a);
}

/// The io_uring engine's older-kernel paths, forced by flags: one-shot TAP reads (no
/// multishot, no provided-buffer ring) and no registered buffers, with one and two workers.
#[test]
fn uring_one_shot_reads_and_plain_buffers_still_work() {
    let Some(tb) = Testbed::new("uring_one_shot_reads_and_plain_buffers_still_work") else {
        return;
    };
    for (n, workers) in [(1u8, "1"), (2, "2")] {
        let node = tb.add_node(
            n,
            NodeOpts::datapath("uring")
                .without_underlay()
                .arg("--uring-multishot")
                .arg("off")
                .arg("--uring-registered-buffers")
                .arg("off")
                .arg("--workers")
                .arg(workers),
        );
        let a = tb.add_pod(&node, &format!("a{n}"), &[]);
        let b = tb.add_pod(&node, &format!("b{n}"), &[]);
        let _web = tb.start_nginx(&a);
        wget_ok(&b, &a);
        iperf(&a, &b);
        let log = node.log();
        assert!(
            log.contains("multishot TAP reads off") && log.contains("registered buffers off"),
            "the daemon did not take the one-shot path:\n{log}"
        );
    }
}
