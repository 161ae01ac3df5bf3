//! vswitch-e2e: end-to-end tests of vswitch in network namespaces, and their testbed harness.
//!
//! A [`Testbed`] builds nodes (network namespaces running `vswitchd`, joined by an underlay
//! bridge) and pods (network namespaces holding the TAP `eth0` the daemon created), runs
//! commands in them with deadlines, and removes everything when dropped, on panic too. The
//! rules it enforces are design.md section 6: per-test name prefixes, the RFC 2544 address
//! plan only, bounded commands.
//!
//! ```no_run
//! use vswitch_e2e::{NodeOpts, Testbed};
//! let Some(tb) = Testbed::new("example") else { return };
//! let node = tb.add_node(1, NodeOpts::default());
//! let pod = tb.add_pod(&node, "busybox-client", &[]);
//! assert!(pod.ping(node.gateway).status.success());
//! ```
//!
//! Beside the testbed, what several tests share lives here, once: [`checks`] (ping, nginx
//! fetch, a rejected `vswitchctl` command changing nothing), [`traffic`] (the checked TCP
//! transfer, iperf3 intervals), [`procfs`] (a daemon's pid, memory, descriptors and engine
//! CPU time), [`etcd`] (a real etcd in the hub for the datastore tests) and [`daemon`] (a
//! daemon the test stops and starts itself; its command line is
//! [`Node::vswitchd_args`], the same as the testbed's daemons). Every `unsafe` block in this
//! crate carries a `// SAFETY:` comment (`clippy::undocumented_unsafe_blocks` is denied in
//! Cargo.toml); nix's safe wrappers are used where nix has one.
//!
//! Environment: `VSWITCH_BIN_DIR` (where `vswitchd`/`vswitchctl` are; default
//! `<workspace>/target/release`), `VSWITCH_E2E_LOGS=1` (print daemon logs even when the test
//! passes), `VSWITCH_E2E_KEEP_DIR=1` (keep the temp dir), `VSWITCH_E2E_NO_SKIP=1` (fail
//! instead of skipping on a missing kernel feature).
//!
//! The datapath/offload combination (the `make e2e-matrix` runs): `VSWITCH_E2E_DATAPATH`
//! (`auto`, `uring`, `epoll`) and `VSWITCH_E2E_OFFLOAD` (`on`, `off`) are what nodes run whose
//! [`NodeOpts`] do not pin a datapath or offloads; unset, vswitchd's defaults (`auto`, which
//! is io_uring where the kernel allows it, and offloads on). Each test process prints the
//! combination it runs once, uncaptured.

pub mod checks;
pub mod cmd;
pub mod daemon;
pub mod etcd;
pub mod etcd_cluster;
pub mod flannel;
pub mod procfs;
pub mod testbed;
pub mod traffic;

pub use checks::{assert_ping, assert_wget_nginx, wait_for};
pub use cmd::{run_with_timeout, OutputExt};
pub use testbed::{
    exec_in, ip, ip_json, ip_ok, ipv4_addrs, list_netns, netns_exists, Bg, Node, NodeOpts, Pod,
    Skip, Testbed, DATAPATH_ENV, OFFLOAD_ENV,
};
