//! `vswitch-cni`: the CNI plugin of vswitch (CNI spec 1.1.0; also speaks 0.4.0 and 1.0.0). It
//! is a thin client of the node's `vswitchd`: every attachment, address and piece of state
//! lives in the daemon; the plugin translates one CNI invocation into one control request.
//!
//! Contract (docs/cni.md has the operator's version):
//! - Input as the spec says: `CNI_COMMAND` (ADD, DEL, CHECK, STATUS, VERSION, GC),
//!   `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS` (`K8S_POD_NAME` and
//!   `K8S_POD_NAMESPACE` are used, other keys ignored; any name is passed on as given:
//!   vswitchd maps one that is not a Kubernetes name, such as podman's `dazzling_chatterjee`,
//!   to a port name and keeps the original, `validate::runtime_port_name`), and the network
//!   configuration on stdin:
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

//!
//! The library holds all of it ([`plugin::run`] is one invocation with the environment, stdin
//! and the daemon passed in); the binary in `main.rs` wires it to the process. The fuzz target
//! `cni_config` drives [`plugin::run`] with a fake daemon.

#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod error;
pub mod plugin;
pub mod result;
