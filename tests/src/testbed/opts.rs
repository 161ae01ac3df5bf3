//! How a node is set up ([`NodeOpts`]), and the suite-wide defaults a test process takes from
//! its environment: which datapath and whether TAP offloads run, for every node whose options
//! leave them unset (the `make e2e-matrix` combinations).
//!
//! | variable | values | default when unset |
//! |---|---|---|
//! | `VSWITCH_E2E_DATAPATH` | `auto`, `uring`, `epoll` | vswitchd's own (`auto`: io_uring where it can) |
//! | `VSWITCH_E2E_OFFLOAD` | `on`, `off` | vswitchd's own (`on`) |
//!
//! A test that pins a datapath ([`NodeOpts::datapath`]) or offloads ([`NodeOpts::offload`])
//! keeps its choice, and so does one passing `--datapath`/`--offload` through
//! [`NodeOpts::arg`].

use std::io::Write;
use std::sync::{Once, OnceLock};

/// The environment variable naming the datapath of nodes that do not pin one.
pub const DATAPATH_ENV: &str = "VSWITCH_E2E_DATAPATH";
/// The environment variable saying whether nodes that do not pin it run TAP offloads.
pub const OFFLOAD_ENV: &str = "VSWITCH_E2E_OFFLOAD";
/// What `--datapath` takes.
const DATAPATHS: [&str; 3] = ["auto", "uring", "epoll"];

/// How a node is set up by [`Testbed::add_node`](super::Testbed::add_node).
#[derive(Debug, Clone)]
pub struct NodeOpts {
    /// `--datapath` (`auto`, `uring`, `epoll`); `None` takes `VSWITCH_E2E_DATAPATH`, else the
    /// daemon's default.
    pub datapath: Option<String>,
    /// `--offload on|off`; `None` takes `VSWITCH_E2E_OFFLOAD`, else the daemon's default.
    pub offload: Option<bool>,
    /// Connect the node to the shared underlay bridge (198.19.0.N/24) and pass `--underlay`.
    pub underlay: bool,
    /// Underlay MTU (veth MTU and `--mtu`); `None` leaves 1500.
    pub mtu: Option<u32>,
    /// Start `vswitchd` in the node (false: namespace and underlay only).
    pub start_daemon: bool,
    /// More `vswitchd` arguments.
    pub extra_args: Vec<String>,
    /// The daemon leases its subnet from a datastore: no `--pod-cidr`; the node's
    /// `pod_cidr` and `gateway` are read from `node show` once it runs.
    pub leased_subnet: bool,
}

impl Default for NodeOpts {
    fn default() -> Self {
        NodeOpts {
            datapath: None,
            offload: None,
            underlay: true,
            mtu: None,
            start_daemon: true,
            extra_args: Vec::new(),
            leased_subnet: false,
        }
    }
}

impl NodeOpts {
    /// A node running `vswitchd --datapath KIND`, whatever `VSWITCH_E2E_DATAPATH` says.
    pub fn datapath(kind: &str) -> Self {
        NodeOpts {
            datapath: Some(kind.to_string()),
            ..Self::default()
        }
    }

    /// A node without a daemon: its namespace and underlay only.
    pub fn no_daemon() -> Self {
        NodeOpts {
            start_daemon: false,
            ..Self::default()
        }
    }

    /// With TAP offloads on or off (`--offload`), whatever `VSWITCH_E2E_OFFLOAD` says.
    pub fn offload(mut self, on: bool) -> Self {
        self.offload = Some(on);
        self
    }

    /// Without the underlay (no `--underlay`: a node that cannot reach peers).
    pub fn without_underlay(mut self) -> Self {
        self.underlay = false;
        self
    }

    /// With this underlay MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// A node of the cluster in datastore `url` (`--datastore URL --cluster-cidr CIDR`,
    /// no `--pod-cidr`: the daemon leases its subnet).
    pub fn datastore(mut self, url: &str, cluster_cidr: &str) -> Self {
        self.extra_args.extend([
            "--datastore".to_string(),
            url.to_string(),
            "--cluster-cidr".to_string(),
            cluster_cidr.to_string(),
        ]);
        self.leased_subnet = true;
        self
    }

    /// With one more `vswitchd` argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// The `--datapath` and `--offload` arguments of this node's daemon: what the options
    /// pin, else what the environment says, else none (the daemon's defaults). Nothing for a
    /// flag the extra arguments already carry. [`Testbed::add_node`](super::Testbed::add_node)
    /// passes them; a test starting a `vswitchd` of its own can too. Panics on a bad value in
    /// the environment.
    pub fn engine_args(&self) -> Vec<String> {
        self.engine_args_with(SuiteDefaults::get())
    }

    fn engine_args_with(&self, env: &SuiteDefaults) -> Vec<String> {
        let mut args = Vec::new();
        if !self.has_extra("--datapath") {
            if let Some(dp) = self.datapath.as_ref().or(env.datapath.as_ref()) {
                args.extend(["--datapath".to_string(), dp.clone()]);
            }
        }
        if !self.has_extra("--offload") {
            if let Some(on) = self.offload.or(env.offload) {
                args.extend(["--offload".to_string(), on_off(on).to_string()]);
            }
        }
        args
    }

    /// True when the extra arguments set `flag` (`--flag V` or `--flag=V`).
    fn has_extra(&self, flag: &str) -> bool {
        self.extra_args.iter().any(|a| {
            a == flag
                || a.strip_prefix(flag)
                    .is_some_and(|rest| rest.starts_with('='))
        })
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// The datapath and offloads a test process gives nodes that do not pin them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SuiteDefaults {
    /// From `VSWITCH_E2E_DATAPATH`; `None`: the daemon's default.
    datapath: Option<String>,
    /// From `VSWITCH_E2E_OFFLOAD`; `None`: the daemon's default.
    offload: Option<bool>,
}

impl SuiteDefaults {
    /// Read once per process; panics on a value the daemon would not take (a typo must not
    /// quietly run the default combination).
    fn get() -> &'static SuiteDefaults {
        static DEFAULTS: OnceLock<SuiteDefaults> = OnceLock::new();
        DEFAULTS.get_or_init(|| {
            Self::parse(
                std::env::var(DATAPATH_ENV).ok().as_deref(),
                std::env::var(OFFLOAD_ENV).ok().as_deref(),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        })
    }

    fn parse(datapath: Option<&str>, offload: Option<&str>) -> Result<SuiteDefaults, String> {
        let datapath = match datapath.map(str::trim).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) if DATAPATHS.contains(&v) => Some(v.to_string()),
            Some(v) => {
                return Err(format!(
                    "{DATAPATH_ENV}={v}: expected one of {}",
                    DATAPATHS.join(", ")
                ))
            }
        };
        let offload = match offload.map(str::trim).filter(|v| !v.is_empty()) {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(v) => return Err(format!("{OFFLOAD_ENV}={v}: expected on or off")),
        };
        Ok(SuiteDefaults { datapath, offload })
    }

    /// The one line telling which combination this test process runs.
    fn banner(&self) -> String {
        let datapath = match &self.datapath {
            Some(dp) => format!("{dp} ({DATAPATH_ENV})"),
            None => "auto (vswitchd's default)".to_string(),
        };
        let offload = match self.offload {
            Some(on) => format!("{} ({OFFLOAD_ENV})", on_off(on)),
            None => "on (vswitchd's default)".to_string(),
        };
        format!(
            "vswitch-e2e: nodes run datapath {datapath}, offload {offload}; \
             tests that pin either keep theirs"
        )
    }

    /// Prints [`SuiteDefaults::banner`] once per process, past the test harness's capture
    /// (like the SKIPPED lines). Panics on a bad value in the environment.
    pub(super) fn announce() {
        static ONCE: Once = Once::new();
        let defaults = Self::get();
        ONCE.call_once(|| {
            let _ = writeln!(std::io::stderr(), "{}", defaults.banner());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_parse_and_typos_fail() {
        assert_eq!(
            SuiteDefaults::parse(None, Some("")),
            Ok(SuiteDefaults {
                datapath: None,
                offload: None
            })
        );
        assert_eq!(
            SuiteDefaults::parse(Some("epoll"), Some("off")),
            Ok(SuiteDefaults {
                datapath: Some("epoll".into()),
                offload: Some(false)
            })
        );
        assert!(SuiteDefaults::parse(Some("io_uring"), None)
            .unwrap_err()
            .contains(DATAPATH_ENV));
        assert!(SuiteDefaults::parse(None, Some("no"))
            .unwrap_err()
            .contains(OFFLOAD_ENV));
    }

    #[test]
    fn pinned_options_and_extra_flags_win() {
        let pinned = NodeOpts::datapath("uring").offload(false);
        assert_eq!(
            pinned.engine_args(),
            ["--datapath", "uring", "--offload", "off"]
        );
        let by_arg = NodeOpts::default()
            .arg("--datapath=epoll")
            .arg("--offload")
            .arg("on");
        assert!(by_arg.engine_args().is_empty());
        let env = SuiteDefaults::parse(Some("epoll"), Some("off")).unwrap();
        assert_eq!(
            NodeOpts::default().engine_args_with(&env),
            ["--datapath", "epoll", "--offload", "off"]
        );
        assert_eq!(
            NodeOpts::datapath("uring").engine_args_with(&env),
            ["--datapath", "uring", "--offload", "off"]
        );
        assert_eq!(
            NodeOpts::default().offload(true).engine_args_with(&env),
            ["--datapath", "epoll", "--offload", "on"]
        );
        let unset = SuiteDefaults::parse(None, None).unwrap();
        assert!(NodeOpts::default().engine_args_with(&unset).is_empty());
        assert!(by_arg.has_extra("--datapath") && by_arg.has_extra("--offload"));
        assert!(!NodeOpts::default()
            .arg("--datapath-x")
            .has_extra("--datapath"));
    }
}
