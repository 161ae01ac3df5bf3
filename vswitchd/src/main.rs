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

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// The cluster's service CIDR: Service VIPs and the DNS address lie inside it.
    #[arg(long = "service-cidr", default_value = DEFAULT_SERVICE_CIDR)]
    pub service_cidr: String,
    /// The cluster DNS address answered by the switch [default: the service CIDR's .10].
    #[arg(long = "dns-ip")]
    pub dns_ip: Option<std::net::Ipv4Addr>,
    /// The cluster domain of Service DNS names (`SVC.NS.svc.DOMAIN`).
    #[arg(long = "cluster-domain", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Most connections tracked at once (Service NAT); new ones beyond it are dropped.
    #[arg(long = "conntrack-max", default_value_t = 65536)]
    pub conntrack_max: usize,
    /// Upstream resolver, IP[:PORT] (default port 53), that DNS queries for names outside
    /// the cluster are forwarded to (from the node's network namespace); without it they are
    /// answered REFUSED.
    #[arg(long = "dns-upstream", value_parser = dns_upstream)]
    pub dns_upstream: Option<std::net::SocketAddrV4>,
}

/// Parses `--dns-upstream IP[:PORT]`.
fn dns_upstream(s: &str) -> Result<std::net::SocketAddrV4, String> {
    let addr = match s.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => std::net::SocketAddrV4::new(ip, 53),
        Err(_) => s.parse::<std::net::SocketAddrV4>().map_err(|_| {
            format!("`{s}` is not IP[:PORT] (an IPv4 address, e.g. 198.18.0.53:53)")
        })?,
    };
    if addr.ip().is_unspecified() || addr.ip().is_broadcast() || addr.ip().is_multicast() {
        return Err(format!("`{s}`: {} is not a unicast address", addr.ip()));
    }
    if addr.port() == 0 {
        return Err(format!("`{s}`: port 0"));
    }
    Ok(addr)
}

/// The project's service range (design.md section 6).
const DEFAULT_SERVICE_CIDR: &str = "198.19.96.0/20";

/// Checks a cluster domain: dot-separated DNS labels (lowercase letters, digits, '-').
fn cluster_domain(s: &str) -> Result<String> {
    let d = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    // Room for `SVC.NS.svc.` in front (two 63-character labels).
    if d.is_empty() || d.len() > 100 {
        bail!("--cluster-domain: `{s}` must be 1-100 characters long");
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            bail!("--cluster-domain: `{s}` is not a DNS domain (labels of a-z, 0-9 and '-')");
        }
    }
    Ok(d)
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
    vswitch_proto::validate::node_name(&args.node).map_err(|e| anyhow::anyhow!("--node: {e}"))?;
    let svc: Ipv4Cidr = args
        .service_cidr
        .parse()
        .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?;
    if svc.prefix_len() > 30 {
        bail!("--service-cidr: {svc} is too small (at most /30)");
    }
    if svc.overlaps(&cidr) {
        bail!("--service-cidr: {svc} overlaps the pod subnet {cidr}");
    }
    let dns_ip = match args.dns_ip {
        Some(ip) => ip,
        None => svc.nth(10).ok_or_else(|| {
            anyhow::anyhow!("--service-cidr: {svc} has no .10 address for the DNS; give --dns-ip")
        })?,
    };
    if !svc.contains(dns_ip) || dns_ip == svc.network() || dns_ip == svc.broadcast() {
        bail!("--dns-ip: {dns_ip} must be a host address inside the service CIDR {svc}");
    }
    let domain = cluster_domain(&args.cluster_domain)?;
    if !(1..=1 << 24).contains(&args.conntrack_max) {
        bail!(
            "--conntrack-max: {} is out of range (1-16777216)",
            args.conntrack_max
        );
    }
    let mut cfg = NodeConfig::for_subnet(cidr, (args.mtu - 50) as u16);
    cfg.vni = args.vni;
    cfg.vxlan_port = args.vxlan_port;
    cfg.service_cidr = Some(svc);
    cfg.dns_ip = Some(dns_ip);
    cfg.cluster_domain = domain;
    cfg.ct_max = args.conntrack_max;
    cfg.dns_forward = args.dns_upstream.is_some();
    Ok(cfg)
}

/// Expires idle conntrack entries and affinities once a second, on the I/O engine's clock.
async fn expire_loop(datapath: Arc<Datapath>, epoch: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        datapath.expire(epoch.elapsed().as_millis() as u64);
    }
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
    let socket_gid = control::socket_gid(args.socket_group.as_deref())?;
    let store = state::Store::open(&args.state_dir, &args.socket)?;
    let datapath = Arc::new(Datapath::new(cfg));
    let io = io::start(
        args.datapath,
        datapath.clone(),
        args.underlay,
        args.vxlan_port,
        args.dns_upstream,
    )?;
    info!(
        node = %args.node, pod_cidr = %args.pod_cidr, datapath = io.kind(),
        service_cidr = %args.service_cidr, dns_ip = ?datapath.config().dns_ip,
        dns_upstream = ?args.dns_upstream,
        "vswitchd {} starting", env!("CARGO_PKG_VERSION")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the control-plane runtime")?;
    let epoch = io.epoch();
    let result = rt.block_on(async {
        let expiry = tokio::spawn(expire_loop(datapath.clone(), epoch));
        let node = node::Node::recover(args.clone(), datapath, io, store).await?;
        let served = control::serve(&args, socket_gid, node).await;
        expiry.abort();
        served
    });
    info!("vswitchd stopped");
    result
}
