//! vswitchd: the vswitch node daemon, the I/O shell around `vswitch-datapath`.
//!
//! Contract:
//! - Forwarding decisions are made by `vswitch_datapath::Datapath`; this crate only moves
//!   bytes between file descriptors (pod TAPs, the tunnel socket) and the core, programs pod
//!   network namespaces, serves the control socket and persists state.
//! - All `unsafe` of the project lives in this crate, each block with a `// SAFETY:` comment.
//! - A control request either succeeds completely or changes nothing (validation first,
//!   side effects after, rollback on a late failure). The persisted state is written
//!   crash-safe (write, fsync, rename) before a request is acknowledged.
//! - The daemon never exits because of a request or a packet; SIGTERM/SIGINT stop it
//!   cleanly (pods' TAPs are closed, the socket file removed).

#![warn(clippy::undocumented_unsafe_blocks)]

mod control;
mod io;
mod node;
mod podnet;
mod state;
mod tap;
mod validate;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;
use vswitch_datapath::{Datapath, Ipv4Cidr, NodeConfig};

/// Which packet I/O engine to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatapathKind {
    /// io_uring when the kernel and seccomp allow it, otherwise epoll.
    Auto,
    /// io_uring (fails to start when unavailable).
    Uring,
    /// epoll with non-blocking reads and writes.
    Epoll,
}

/// Whether pod TAPs negotiate checksum and segmentation offloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Command-line arguments (design.md section 5).
#[derive(Parser, Debug, Clone)]
#[command(name = "vswitchd", version, about = "vswitch node daemon")]
pub struct Args {
    /// This node's name.
    #[arg(long)]
    pub node: String,
    /// This node's pod subnet, e.g. 198.18.1.0/24.
    #[arg(long = "pod-cidr")]
    pub pod_cidr: String,
    /// Underlay IPv4 address the tunnel socket binds to (enables cross-node traffic).
    #[arg(long)]
    pub underlay: Option<std::net::Ipv4Addr>,
    /// VXLAN UDP port.
    #[arg(long = "vxlan-port", default_value_t = 4789)]
    pub vxlan_port: u16,
    /// VXLAN network identifier (24 bits).
    #[arg(long, default_value_t = 1)]
    pub vni: u32,
    /// Underlay MTU; pods get this minus 50 (the VXLAN overhead).
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// Control socket path.
    #[arg(long, default_value = vswitch_proto::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Group owning the control socket (mode 0660); root's group when absent.
    #[arg(long = "socket-group")]
    pub socket_group: Option<String>,
    /// Directory of the persistent state.
    #[arg(long = "state-dir", default_value = "/var/lib/vswitch")]
    pub state_dir: PathBuf,
    /// Packet I/O engine.
    #[arg(long, value_enum, default_value_t = DatapathKind::Auto)]
    pub datapath: DatapathKind,
    /// TAP offloads (checksum, TSO).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub offload: OnOff,
}

fn node_config(args: &Args) -> Result<NodeConfig> {
    let cidr: Ipv4Cidr = args
        .pod_cidr
        .parse()
        .map_err(|e| anyhow::anyhow!("--pod-cidr: {e}"))?;
    if cidr.prefix_len() > 30 {
        bail!("--pod-cidr: {cidr} is too small for a node subnet (at most /30)");
    }
    if !(576 + 50..=65535).contains(&args.mtu) {
        bail!("--mtu: {} is out of range (626-65535)", args.mtu);
    }
    if args.vni == 0 || args.vni >= 1 << 24 {
        bail!("--vni: {} is out of range (1-16777215)", args.vni);
    }
    validate::node_name(&args.node).map_err(|e| anyhow::anyhow!("--node: {e}"))?;
    let mut cfg = NodeConfig::for_subnet(cidr, (args.mtu - 50) as u16);
    cfg.vni = args.vni;
    cfg.vxlan_port = args.vxlan_port;
    Ok(cfg)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VSWITCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let cfg = node_config(&args)?;
    let store = state::Store::open(&args.state_dir, &args.socket)?;
    let datapath = Arc::new(Datapath::new(cfg));
    let io = io::start(args.datapath, datapath.clone(), args.underlay, args.vxlan_port)?;
    info!(
        node = %args.node, pod_cidr = %args.pod_cidr, datapath = io.kind(),
        "vswitchd {} starting", env!("CARGO_PKG_VERSION")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the control-plane runtime")?;
    let result = rt.block_on(async {
        let node = node::Node::recover(args.clone(), datapath, io, store).await?;
        control::serve(&args, node).await
    });
    info!("vswitchd stopped");
    result
}
