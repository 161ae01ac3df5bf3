//! `vswitch-cni`: the CNI plugin of vswitch (CNI spec 1.1.0; also speaks 0.4.0 and 1.0.0). It
//! is a thin client of the node's `vswitchd`: every attachment, address and piece of state
//! lives in the daemon; the plugin translates one CNI invocation into one control request.
//!
//! Contract (docs/cni.md has the operator's version):
//! - Input as the spec says: `CNI_COMMAND` (ADD, DEL, CHECK, STATUS, VERSION, GC),
//!   `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS` (`K8S_POD_NAME` and
//!   `K8S_POD_NAMESPACE` are used, other keys ignored), and the network configuration on stdin:
//!   `cniVersion`, `name`, `type`, plus `socket` (default [`vswitch_proto::DEFAULT_SOCKET`]),
//!   `timeoutSeconds` (default 10) and `dns` (copied into ADD's result). Unknown fields are
//!   ignored; an `ipam` section is refused (code 2): vswitchd allocates addresses.
//! - ADD returns the same result when asked twice for the same (container id, interface):
//!   vswitchd keys attachments by them. DEL is idempotent: an unknown attachment or a missing
//!   netns is success. CHECK asks vswitchd to inspect the pod's interface and compares the
//!   answer with `prevResult`. STATUS succeeds when vswitchd answers. GC removes every CNI
//!   attachment not in `cni.dev/valid-attachments`.
//! - Output: ADD prints the result in the configuration's `cniVersion`; VERSION prints the
//!   supported versions; the other commands print nothing on success. A failure prints the
//!   spec's error object (`cniVersion`, `code`, `msg`, `details`) on stdout and exits 1. Codes:
//!   the spec's 1-7, 11 (vswitchd unreachable or slow: retry), 50 (STATUS: not available),
//!   and this plugin's 100 (addresses exhausted), 101 (CHECK found drift), 102 (vswitchd
//!   rejected the request; `details` names the field).
//! - It never hangs: one call to vswitchd per invocation, done or abandoned within
//!   `timeoutSeconds`. Nothing is written to stderr or to disk.

mod config;
mod daemon;
mod error;
mod plugin;
mod result;

use std::io::{Read, Write};
use std::process::ExitCode;

/// The largest network configuration read from stdin.
const MAX_STDIN: u64 = 4 << 20;

fn read_stdin() -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().take(MAX_STDIN + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(std::io::Error::other(format!(
            "the network configuration is larger than {MAX_STDIN} bytes"
        )));
    }
    Ok(buf)
}

fn main() -> ExitCode {
    let outcome = plugin::run(
        |k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()),
        read_stdin(),
        |conf| daemon::Socket::new(&conf.socket, conf.timeout),
    );
    if !outcome.stdout.is_empty() {
        let mut out = std::io::stdout().lock();
        // Nothing useful can be done if stdout is gone: the exit status still tells.
        let _ = writeln!(out, "{}", outcome.stdout).and_then(|()| out.flush());
    }
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
