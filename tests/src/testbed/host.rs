//! The host side: `ip` and named network namespaces, the project's binaries, what the kernel
//! offers, and small text helpers. Nothing here knows a testbed's state.

use super::Skip;
use crate::cmd::{self, run_with_timeout, OutputExt};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Where named network namespaces live.
pub(super) const NETNS_DIR: &str = "/var/run/netns";
/// Per-netns files that `ip netns exec` bind-mounts over /etc.
pub(super) const ETC_NETNS_DIR: &str = "/etc/netns";

/// Runs `prog args` in netns `netns` with a deadline.
pub fn exec_in(netns: &str, timeout: Duration, prog: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, prog]).args(args);
    run_with_timeout(&mut cmd, timeout)
        .unwrap_or_else(|e| panic!("running `{}` in {netns}: {e}", cmd::render(prog, args)))
}

/// Runs `ip ARGS` (10 s deadline).
pub fn ip(args: &[&str]) -> Output {
    run_with_timeout(Command::new("ip").args(args), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("running ip: {e}"))
}

/// `ip -n NETNS -j ARGS`, parsed; panics unless it succeeds and prints JSON.
pub fn ip_json(netns: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-n", netns, "-j"];
    all.extend(args);
    let out = ip(&all);
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        all.join(" "),
        out.describe()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`ip {}` printed no JSON: {e}", all.join(" ")))
}

/// `ip -j addr show dev DEV` in `netns` (for messages) and its IPv4 (`inet`) entries.
pub fn ipv4_addrs(netns: &str, dev: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let addrs = ip_json(netns, &["addr", "show", "dev", dev]);
    let inet = addrs[0]["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .filter(|a| a["family"] == "inet")
        .cloned()
        .collect();
    (addrs, inet)
}

/// Runs `ip ARGS`, panics unless it succeeds.
pub fn ip_ok(args: &[&str]) -> String {
    let out = ip(args);
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        out.describe()
    );
    out.stdout_str()
}

/// True when named netns `name` exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Names of the existing named network namespaces.
pub fn list_netns() -> Vec<String> {
    fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks once per process that the kernel has what the testbed uses (netns, veth, bridge,
/// TUN/TAP); the error is a skip reason.
pub(super) fn probe_kernel(prefix: &str) -> Result<(), Skip> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if !Path::new("/proc/self/ns/net").exists() {
                return Err("network namespaces (CONFIG_NET_NS)".into());
            }
            if !Path::new("/dev/net/tun").exists() {
                return Err("/dev/net/tun is missing (CONFIG_TUN)".into());
            }
            let ns = format!("{prefix}probe");
            let out = ip(&["netns", "add", &ns]);
            if !out.status.success() {
                return Err(format!(
                    "`ip netns add` failed: {}",
                    out.stderr_str().trim()
                ));
            }
            let checks: [(&str, Vec<String>); 3] = [
                (
                    "veth",
                    vec![
                        "link".into(),
                        "add".into(),
                        format!("{prefix}pa"),
                        "type".into(),
                        "veth".into(),
                        "peer".into(),
                        "name".into(),
                        format!("{prefix}pb"),
                    ],
                ),
                (
                    "bridge",
                    vec![
                        "link".into(),
                        "add".into(),
                        format!("{prefix}pbr"),
                        "type".into(),
                        "bridge".into(),
                    ],
                ),
                (
                    "tap",
                    vec![
                        "tuntap".into(),
                        "add".into(),
                        "dev".into(),
                        format!("{prefix}pt"),
                        "mode".into(),
                        "tap".into(),
                    ],
                ),
            ];
            let mut result = Ok(());
            for (what, args) in checks {
                let mut all = vec!["-n", ns.as_str()];
                all.extend(args.iter().map(String::as_str));
                let out = ip(&all);
                if !out.status.success() {
                    result = Err(format!("{what} links: {}", out.stderr_str().trim()));
                    break;
                }
            }
            let _ = ip(&["netns", "del", &ns]);
            result
        })
        .clone()
        .map_err(Skip)
}

/// Warns once per binary (on the real stderr, past the test harness's capture) when a source
/// file of the workspace is newer than the binary: the tests would drive an old build.
pub(super) fn warn_if_stale(bin: &Path) {
    static WARNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.iter().any(|p| p == bin) {
        return;
    }
    warned.push(bin.to_path_buf());
    let Ok(built) = fs::metadata(bin).and_then(|m| m.modified()) else {
        return;
    };
    let root = workspace_root();
    // The crates each binary is built from.
    let crates: &[&str] = match bin.file_name().and_then(|n| n.to_str()) {
        Some("vswitchctl") => &["proto", "vswitchctl"],
        Some("vswitch-cni") => &["proto", "cni"],
        _ => &["proto", "datapath", "vswitchd"],
    };
    let newer = crates
        .iter()
        .filter_map(|c| newest_rs(&root.join(c).join("src")))
        .filter(|(t, _)| *t > built)
        .max_by_key(|(t, _)| *t);
    if let Some((_, file)) = newer {
        let _ = writeln!(
            std::io::stderr(),
            "WARNING: {} is older than {}: the end-to-end tests drive the old build \
             (run `make build`)",
            bin.display(),
            file.display()
        );
    }
}

/// The most recently modified `.rs` file under `dir`.
fn newest_rs(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let cand = if path.is_dir() {
            newest_rs(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        } else {
            None
        };
        if let Some(c) = cand {
            if best.as_ref().is_none_or(|b| c.0 > b.0) {
                best = Some(c);
            }
        }
    }
    best
}

/// Where the project's binaries are: $VSWITCH_BIN_DIR, else $CARGO_TARGET_DIR/release, else
/// `<workspace>/target/release`.
pub(super) fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VSWITCH_BIN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("release");
    }
    workspace_root().join("target").join("release")
}

/// The Cargo workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The full path of `prog` on $PATH.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
