//! Readers of `/proc` for the tests that watch a daemon's resources: its pid, its memory and
//! thread counts (`/proc/PID/status`), its descriptors, and the CPU time of its engine
//! threads. Each panics, naming the file, when what it reads is not there.

use crate::testbed::ip_ok;
use std::fs;

/// The number after `field` (`VmRSS:`, `Threads:`, ...) in `/proc/PID/status` (KiB for the
/// memory fields).
pub fn status_field(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {field}"))
}

/// How many descriptors `pid` has open (`/proc/PID/fd`).
pub fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("daemon fds")
        .count()
}

/// The pid of the `vswitchd` running in network namespace `netns` (`ip netns pids`).
pub fn vswitchd_pid_in(netns: &str) -> u32 {
    let out = ip_ok(&["netns", "pids", netns]);
    out.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "vswitchd")
        })
        .unwrap_or_else(|| panic!("no vswitchd in {netns}"))
}

/// The threads of `pid` whose name starts with `vswitch-` (the engines' packet threads:
/// `vswitch-uring*`, `vswitch-epoll*`), as (name, `/proc/PID/task/TID` path).
fn engine_threads(pid: u32) -> Vec<(String, std::path::PathBuf)> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("daemon's tasks");
    tasks
        .flatten()
        .filter_map(|t| {
            let path = t.path();
            let comm = fs::read_to_string(path.join("comm")).unwrap_or_default();
            let comm = comm.trim().to_string();
            comm.starts_with("vswitch-").then_some((comm, path))
        })
        .collect()
}

/// CPU time (user + system) of the daemon's first packet thread (`vswitch-uring`/
/// `vswitch-epoll`), in clock ticks.
pub fn engine_cpu_ticks(pid: u32) -> u64 {
    let Some((_, task)) = engine_threads(pid).into_iter().next() else {
        panic!("vswitchd {pid} has no vswitch-* engine thread");
    };
    let stat = fs::read_to_string(task.join("stat")).expect("task stat");
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f[11].parse().expect("utime");
    let stime: u64 = f[12].parse().expect("stime");
    utime + stime
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`; 100 when it cannot say).
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(100)
        .max(1)
}

/// CPU time in ns (`/proc/PID/task/TID/schedstat`, first field) of each I/O worker thread
/// (`vswitch-uring*`, `vswitch-epoll*`) of `pid`, by thread name, sorted.
pub fn worker_cpu_ns(pid: u32) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = engine_threads(pid)
        .into_iter()
        .filter(|(comm, _)| comm.starts_with("vswitch-uring") || comm.starts_with("vswitch-epoll"))
        .map(|(comm, path)| {
            let stat = fs::read_to_string(path.join("schedstat")).unwrap_or_default();
            let ns = stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (comm, ns)
        })
        .collect();
    out.sort();
    out
}
