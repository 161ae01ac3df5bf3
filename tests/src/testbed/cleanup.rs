//! Removal: a testbed's own on drop (also when the test panics), and the testbeds of test
//! processes that died without it (swept by the next test process). Both rest on the per-test
//! prefix, claimed here by creating its temp dir with an owner file.

use super::host::{ip, list_netns, ETC_NETNS_DIR, NETNS_DIR};
use super::servers::terminate;
use super::{Testbed, DAEMON_STOP_TIMEOUT};
use crate::cmd::{self, OutputExt};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

impl Testbed {
    /// Removes everything; returns what could not be removed.
    fn cleanup(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut res = self.sh.res();
        if res.cleaned {
            return problems;
        }
        res.cleaned = true;
        // 1. Background servers.
        let bgs = std::mem::take(&mut res.bg);
        for (_, mut p) in bgs {
            if terminate(&mut p.child, Duration::from_secs(2)).is_none() {
                problems.push(format!("{} needed SIGKILL", p.label));
            }
        }
        // 2. Daemons: SIGTERM, SIGKILL after 3 s.
        for (n, d) in res.daemons.iter_mut() {
            if let Some(mut child) = d.child.take() {
                match terminate(&mut child, DAEMON_STOP_TIMEOUT) {
                    Some(s) if s.success() => {}
                    Some(s) => eprintln!("[harness] vswitchd of node{n} exited with {s}"),
                    None => eprintln!("[harness] vswitchd of node{n} needed SIGKILL"),
                }
            }
            let _ = fs::remove_file(&d.socket);
        }
        // 3. Whatever still runs inside our namespaces.
        let netns: Vec<String> = res.netns.iter().rev().cloned().collect();
        for ns in &netns {
            kill_netns_pids(ns);
        }
        // 4. The namespaces (their links go with them), newest first.
        for ns in &netns {
            let out = ip(&["netns", "del", ns]);
            if !out.status.success() && Path::new(NETNS_DIR).join(ns).exists() {
                problems.push(format!("ip netns del {ns}: {}", out.stderr_str().trim()));
            }
        }
        res.netns.clear();
        // 5. /etc/netns entries.
        for dir in res.etc_netns.drain(..) {
            if let Err(e) = fs::remove_dir_all(&dir) {
                if dir.exists() {
                    problems.push(format!("removing {}: {e}", dir.display()));
                }
            }
        }
        drop(res);
        // 6. Anything with our prefix that escaped (links in the root netns, netns).
        problems.extend(remove_by_prefix(&self.sh.prefix));
        // 7. The temp dir.
        if std::env::var_os("VSWITCH_E2E_KEEP_DIR").is_none() {
            if let Err(e) = fs::remove_dir_all(&self.sh.dir) {
                problems.push(format!("removing {}: {e}", self.sh.dir.display()));
            }
        }
        problems
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let failing = thread::panicking();
        if failing || std::env::var_os("VSWITCH_E2E_LOGS").is_some() {
            self.dump_logs();
        }
        let problems = self.cleanup();
        if !problems.is_empty() {
            let msg = format!(
                "testbed {} of {}: cleanup problems:\n  {}",
                self.sh.prefix,
                self.sh.test,
                problems.join("\n  ")
            );
            if failing {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

/// SIGKILLs every process in netns `ns` (`ip netns pids`).
fn kill_netns_pids(ns: &str) {
    let out = ip(&["netns", "pids", ns]);
    for pid in out.stdout_str().split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            cmd::kill_pid(pid, libc::SIGKILL);
        }
    }
}

/// True when `name` is one the testbed with `prefix` makes: the prefix, then `n` (node), `h`
/// (hub, hub-side veth), `u` (underlay veth), `p` (probe) or `-` (pod). Names of others that
/// merely start with the same letters (`vd1234x` for prefix `vd123`) are not ours.
fn is_ours(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['n', 'h', 'u', 'p', '-']))
}

/// Removes netns and root-netns links whose names are [`is_ours`]; returns problems.
fn remove_by_prefix(prefix: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for ns in list_netns().into_iter().filter(|n| is_ours(n, prefix)) {
        kill_netns_pids(&ns);
        let out = ip(&["netns", "del", &ns]);
        problems.push(format!(
            "netns {ns} was left over (removed: {})",
            out.status.success()
        ));
    }
    let links = ip(&["-o", "link", "show"]).stdout_str();
    for line in links.lines() {
        // "7: name@peer: <...>"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if is_ours(name, prefix) {
            let out = ip(&["link", "del", name]);
            problems.push(format!(
                "link {name} was left in the root netns (removed: {})",
                out.status.success()
            ));
        }
    }
    for entry in fs::read_dir(ETC_NETNS_DIR).into_iter().flatten().flatten() {
        if is_ours(&entry.file_name().to_string_lossy(), prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    problems
}

/// The directory holding all testbeds' temp dirs.
fn base_dir() -> PathBuf {
    std::env::temp_dir().join("vswitch-e2e")
}

/// Chooses a free prefix and claims it by creating its temp dir (atomic across processes).
pub(super) fn claim_prefix() -> (String, PathBuf) {
    let base = base_dir();
    fs::create_dir_all(&base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
    let existing = list_netns();
    for _ in 0..1000 {
        let prefix = format!("v{:04x}", random_u16());
        if existing.iter().any(|n| is_ours(n, &prefix)) {
            continue;
        }
        let dir = base.join(&prefix);
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::write(
                    dir.join("owner"),
                    owner_tag(std::process::id()).unwrap_or_default(),
                )
                .expect("writing the owner file");
                return (prefix, dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("creating {}: {e}", dir.display()),
        }
    }
    panic!(
        "no free testbed prefix in 1000 tries (stale dirs in {}?)",
        base.display()
    );
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut b).is_ok() {
            return u16::from_ne_bytes(b);
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t ^ std::process::id()) as u16
}

/// "PID STARTTIME": identifies a process even when its pid is reused later.
fn owner_tag(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3;
    // starttime is field 22.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Removes the testbeds of test processes that died without cleaning up (killed by a
/// timeout or SIGKILL): their netns, /etc/netns entries, links and temp dirs.
pub(super) fn sweep_stale() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let Ok(rd) = fs::read_dir(base_dir()) else {
            return;
        };
        for entry in rd.flatten() {
            let dir = entry.path();
            let prefix = entry.file_name().to_string_lossy().into_owned();
            let Ok(tag) = fs::read_to_string(dir.join("owner")) else {
                continue;
            };
            let alive = tag
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .and_then(owner_tag)
                .is_some_and(|now| now == tag.trim());
            if alive {
                continue;
            }
            let problems = remove_by_prefix(&prefix);
            let _ = fs::remove_dir_all(&dir);
            if !problems.is_empty() {
                // Past the test harness's capture: this concerns an earlier run.
                let _ = writeln!(
                    std::io::stderr(),
                    "[harness] swept the stale testbed {prefix} of a dead test process:\n  {}",
                    problems.join("\n  ")
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_match_the_prefix() {
        for name in [
            "v1a2b",
            "v1a2bn1",
            "v1a2bhub",
            "v1a2b-nginx",
            "v1a2bu3",
            "v1a2bprobe",
        ] {
            assert!(is_ours(name, "v1a2b"), "{name}");
        }
        for name in [
            "v1a2", "v1a2bc", "v1a2b0n1", "vd1a2b", "x1a2bn1", "v1a2bxn1",
        ] {
            assert!(!is_ours(name, "v1a2b"), "{name}");
        }
    }

    #[test]
    fn own_process_is_alive_by_its_tag() {
        let tag = owner_tag(std::process::id()).expect("own /proc/self/stat");
        assert!(tag.starts_with(&format!("{} ", std::process::id())));
    }
}
