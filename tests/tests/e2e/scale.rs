//! 250 ports on one node (Kubernetes' default is 110 pods per node; 250 is common): every
//! pod reaches its gateway, and the last one a pod on another node through the tunnel,
//! while the first pod floods a neighbour, in each engine and io_uring read mode: io_uring
//! with multishot reads from the shared provided-buffer ring, io_uring with one-shot reads
//! (`--uring-multishot off`, the path of kernels before 6.7), and epoll. The same pods serve
//! the three runs: the daemon is restarted with the next mode, and its TAPs persist.
//!
//! What failed before: with one-shot reads every idle port pinned 4 of the worker's 512 pool
//! buffers, so the ports attached after about the 112th never got a read, and the tunnel
//! found no buffer for the replies (vswitchd/src/io/uring.rs, `reads_per_port`).

use std::time::Duration;
use vswitch_e2e::{NodeOpts, OutputExt, Pod, Testbed};

const PODS: usize = 250;

#[test]
fn two_hundred_fifty_ports_carry_traffic_in_every_engine() {
    let Some(tb) = Testbed::new("two_hundred_fifty_ports") else {
        return;
    };
    let n1 = tb.add_node(1, NodeOpts::datapath("uring"));
    let n2 = tb.add_node(2, NodeOpts::default());
    tb.mesh(&[&n1, &n2]);
    let far = tb.add_pod(&n2, "far", &[]);
    let pods: Vec<Pod> = (0..PODS)
        .map(|i| tb.add_pod(&n1, &format!("p{i}"), &[]))
        .collect();
    let pktgen = tb.bin("vswitch-pktgen").display().to_string();

    for (mode, flag, value) in [
        ("io_uring, multishot reads", "--uring-multishot", "on"),
        ("io_uring, one-shot reads", "--uring-multishot", "off"),
        ("epoll", "--datapath", "epoll"),
    ] {
        if flag == "--datapath" || mode.contains("one-shot") {
            tb.set_daemon_arg(&n1, flag, value);
            tb.restart_daemon(&n1);
        }
        // The first pod floods the second (bounded: 3 s or 3 M datagrams), so that its reads
        // take what they can of the pool (or of the shared ring) while the others ping.
        let dst = format!("{}:9", pods[1].ip);
        let args = [
            "send",
            "--dst",
            &dst,
            "--count",
            "3000000",
            "--duration",
            "3",
        ];
        let flood = pods[0].spawn("flood", &pktgen, &args);
        let failed = ping_all(&pods[1..], &n1.gateway.to_string());
        let tunnel = pods[PODS - 1].ping(far.ip);
        drop(flood);
        if !failed.is_empty() || !tunnel.status.success() {
            tb.dump_logs();
        }
        assert!(
            failed.is_empty(),
            "{mode}: {} of {} pods could not reach their gateway: {}",
            failed.len(),
            PODS - 1,
            failed.join(" ")
        );
        assert!(
            tunnel.status.success(),
            "{mode}: pod {} could not reach {} on node 2: {}",
            pods[PODS - 1].name,
            far.ip,
            tunnel.describe()
        );
        println!("{mode}: all {PODS} ports carried traffic");
    }
}

/// Pings `dst` once from every pod, 50 at a time (one shell per batch, pings in parallel);
/// returns the names of the pods that got no answer within 3 tries of 1 s.
fn ping_all(pods: &[Pod], dst: &str) -> Vec<String> {
    let mut failed = Vec::new();
    for batch in pods.chunks(50) {
        let script: String = batch
            .iter()
            .map(|p| {
                format!(
                    "(ip netns exec {ns} ping -q -c 1 -W 1 {dst} >/dev/null 2>&1 || \
                     ip netns exec {ns} ping -q -c 2 -W 1 {dst} >/dev/null 2>&1 || \
                     echo {name}) &\n",
                    ns = p.netns,
                    name = p.name
                )
            })
            .chain(std::iter::once("wait\n".to_string()))
            .collect();
        let out = vswitch_e2e::run_with_timeout(
            std::process::Command::new("sh").args(["-c", &script]),
            Duration::from_secs(30),
        )
        .expect("running the pings");
        failed.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string),
        );
    }
    failed
}
