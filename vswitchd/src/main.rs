//! vswitchd: the vswitch node daemon, the I/O shell around `vswitch-datapath`.
//!
//! Contract:
//! - Forwarding decisions are made by `vswitch_datapath::Datapath`; this crate only moves
//!   bytes between file descriptors (pod TAPs, the tunnel socket) and the core, programs pod
//!   network namespaces, serves the control socket and persists state.
//! - The product's `unsafe` lives in this crate (the e2e harness in `tests/` has one block
//!   more), each block with a `// SAFETY:` comment; nix's safe wrappers where nix has one.
//! - A control request either succeeds completely or changes nothing (validation first,
//!   side effects after, rollback on a late failure). The persisted state is written
//!   crash-safe (write, fsync, rename) before a request is acknowledged.
//! - The daemon never exits because of a request or a packet; SIGTERM/SIGINT stop it
//!   cleanly (pods' TAPs are closed, the conntrack table saved, the socket file removed).

#![deny(clippy::undocumented_unsafe_blocks)]

mod capture;
mod checked;
mod control;
mod ct_file;
mod datastore;
mod flows;
mod io;
mod logging;
mod metrics;
mod node;
mod podnet;
mod state;
mod tap;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;
use vswitch_datapath::{Datapath, NodeConfig, RateLimit};

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
    /// This node's pod subnet, e.g. 198.18.1.0/24. Required without --datastore; with it,
    /// optional: the subnet to lease (refused when another node holds it).
    #[arg(long = "pod-cidr")]
    pub pod_cidr: Option<String>,
    /// The cluster datastore, etcd://HOST:PORT[,HOST:PORT...] (etcd v3 API): the node leases
    /// its subnet there (flannel's keys) and peers with every other node's lease.
    #[arg(long)]
    pub datastore: Option<String>,
    /// The cluster's pod network, e.g. 198.18.0.0/16 (required with --datastore); each node
    /// leases a subnet of it.
    #[arg(long = "cluster-cidr")]
    pub cluster_cidr: Option<String>,
    /// The datastore's key prefix (flannel's by default, so flanneld nodes share it).
    #[arg(long = "datastore-prefix", default_value = "/coreos.com/network")]
    pub datastore_prefix: String,
    /// CA certificate (PEM) checking etcd's server certificate (TLS).
    #[arg(long = "etcd-cafile")]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for etcd (TLS; with --etcd-keyfile).
    #[arg(long = "etcd-certfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// Client key (PEM) for etcd (TLS; with --etcd-certfile).
    #[arg(long = "etcd-keyfile")]
    pub etcd_keyfile: Option<PathBuf>,
    /// Seconds this node's liveness record outlives its daemon (2-86400); `node list` shows
    /// a node NotReady once it is gone.
    #[arg(long = "node-ttl", default_value_t = 20)]
    pub node_ttl: u64,
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
    /// Most of those one pod may hold (its share); its new connections beyond it are
    /// dropped (`conntrack_pod_limit`), the other pods' are not. Default: a sixteenth of
    /// --conntrack-max (at least 1).
    #[arg(long = "conntrack-max-per-pod")]
    pub conntrack_max_per_pod: Option<usize>,
    /// Upstream resolver, `IP[:PORT]` (default port 53), that DNS queries for names outside
    /// the cluster are forwarded to (from the node's network namespace); without it they are
    /// answered REFUSED.
    #[arg(long = "dns-upstream", value_parser = dns_upstream)]
    pub dns_upstream: Option<std::net::SocketAddrV4>,
    /// How long, in microseconds, the I/O engine keeps polling after its last packet before
    /// it sleeps (0-1000000). Longer polls answer a quiet flow's next packet without a
    /// wakeup (lower latency) at the cost of a busy core while it lasts; 0 never polls.
    #[arg(long = "poll-us", default_value_t = io::DEFAULT_POLL_US)]
    pub poll_us: u64,
    /// I/O worker threads (1-64). Each pod's TAP gets one queue per worker and the tunnel
    /// one socket per worker (SO_REUSEPORT); the kernel spreads flows over them by hash.
    /// Give the switch as many workers as cores you can spare for it.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// io_uring engine: multishot TAP reads from a provided-buffer ring where the kernel
    /// has them (6.7+); off: one-shot reads (as on older kernels).
    #[arg(long = "uring-multishot", value_enum, default_value_t = OnOff::On)]
    pub uring_multishot: OnOff,
    /// io_uring engine: register the buffer pool with the ring (READ_FIXED/WRITE_FIXED).
    #[arg(long = "uring-registered-buffers", value_enum, default_value_t = OnOff::On)]
    pub uring_registered_buffers: OnOff,
    /// Seconds a control client may take to send a whole request line, or to read its
    /// answer, before the daemon closes its connection (1-3600).
    #[arg(long = "client-timeout", default_value_t = 30)]
    pub client_timeout: u64,
    /// Most control connections served at once (1-65536); one more is answered with an
    /// error (`too many control connections`) and closed. Each may buffer a 1 MiB request.
    /// At startup the open-file limit's soft value is raised to its hard one.
    #[arg(long = "max-clients", default_value_t = control::DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,
    /// Per-pod limit of ARP packets, PPS[/BURST] (BURST defaults to 2 x PPS; 0 = no limit).
    /// Beyond it ARP is dropped (`arp_rate_limited`).
    #[arg(long = "arp-limit", value_parser = rate_limit, default_value = "100/200")]
    pub arp_limit: RateLimit,
    /// Per-pod limit of broadcast and multicast frames other than ARP, PPS[/BURST] (0 = no
    /// limit). Beyond it they are dropped as `broadcast_rate_limited` (within it too, as
    /// `multicast`: the switch does not flood), before any other work is spent on them.
    #[arg(long = "broadcast-limit", value_parser = rate_limit, default_value = "100/200")]
    pub broadcast_limit: RateLimit,
    /// Serve Prometheus metrics (`GET /metrics`) on IP:PORT, e.g. 127.0.0.1:9419; off
    /// without it. Only a loopback address unless --metrics-allow-remote is given.
    #[arg(long = "metrics-addr")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Let --metrics-addr be a non-loopback address (the endpoint has no authentication:
    /// anyone who reaches it reads the node's pods, peers and traffic).
    #[arg(long = "metrics-allow-remote")]
    pub metrics_allow_remote: bool,
    /// Log format on stderr: `text`, or `json` (one object per line). The filter is
    /// `VSWITCH_LOG` (default `info`); `vswitchctl log-level` changes it at run time.
    #[arg(long = "log-format", value_enum, default_value_t = logging::LogFormat::Text)]
    pub log_format: logging::LogFormat,
    /// Flow events (`vswitchctl observe`: new connections, drops with their reason,
    /// connection ends) kept in the daemon's ring; 0 turns the flow log off.
    #[arg(long = "flow-log-size", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub flow_log_size: u32,
}

/// Parses a rate limit flag, `PPS[/BURST]`.
fn rate_limit(s: &str) -> Result<RateLimit, String> {
    checked::rate_limit("rate_limit", s).map_err(|e| e.message)
}

/// Parses `--dns-upstream IP[:PORT]` (default port 53).
fn dns_upstream(s: &str) -> Result<std::net::SocketAddrV4, String> {
    vswitch_proto::validate::socket_addr_v4("dns_upstream", s, 53).map_err(|e| e.message)
}

/// `--metrics-addr`, checked: a loopback address unless `--metrics-allow-remote`.
fn metrics_addr(args: &Args) -> Result<Option<std::net::SocketAddr>> {
    let Some(addr) = args.metrics_addr else {
        if args.metrics_allow_remote {
            bail!("--metrics-allow-remote: only meaningful with --metrics-addr");
        }
        return Ok(None);
    };
    if !addr.ip().is_loopback() && !args.metrics_allow_remote {
        bail!(
            "--metrics-addr: {} is not a loopback address; the metrics endpoint has no \
             authentication, give --metrics-allow-remote to serve it there",
            addr.ip()
        );
    }
    Ok(Some(addr))
}

/// The project's service range (design.md section 6).
const DEFAULT_SERVICE_CIDR: &str = "198.19.96.0/20";

/// Checks a cluster domain: dot-separated DNS labels (lowercase letters, digits, '-');
/// returned lowercased, without a trailing dot.
fn cluster_domain(s: &str) -> Result<String> {
    vswitch_proto::validate::dns_name("cluster_domain", s)
        .map_err(|e| anyhow::anyhow!("--cluster-domain: {}", e.message))
}

/// `--pod-cidr`, when given.
fn pod_cidr_flag(args: &Args) -> Result<Option<vswitch_datapath::Ipv4Cidr>> {
    let Some(s) = &args.pod_cidr else {
        return Ok(None);
    };
    checked::cidr("pod_cidr", s)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--pod-cidr: {}", e.message))
}

/// The datastore's settings from the flags (checked), `None` without `--datastore`.
fn datastore_settings(args: &Args) -> Result<Option<datastore::Settings>> {
    use vswitch_proto::validate;
    let Some(url) = &args.datastore else {
        for (flag, given) in [
            ("--cluster-cidr", args.cluster_cidr.is_some()),
            ("--etcd-cafile", args.etcd_cafile.is_some()),
            ("--etcd-certfile", args.etcd_certfile.is_some()),
            ("--etcd-keyfile", args.etcd_keyfile.is_some()),
        ] {
            if given {
                bail!("{flag}: only meaningful with --datastore");
            }
        }
        return Ok(None);
    };
    let endpoints = validate::datastore_url("datastore", url)
        .map_err(|e| anyhow::anyhow!("--datastore: {}", e.message))?;
    let prefix = validate::datastore_prefix("datastore_prefix", &args.datastore_prefix)
        .map_err(|e| anyhow::anyhow!("--datastore-prefix: {}", e.message))?;
    let cc = args.cluster_cidr.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "--cluster-cidr: required with --datastore (the cluster's pod network, e.g. 198.18.0.0/16)"
        )
    })?;
    let cidr = checked::cidr("cluster_cidr", cc)
        .map_err(|e| anyhow::anyhow!("--cluster-cidr: {}", e.message))?;
    if cidr.prefix_len() > 28 {
        bail!("--cluster-cidr: {cidr} is too small for a cluster (at most /28)");
    }
    let svc = checked::cidr("service_cidr", &args.service_cidr)
        .map_err(|e| anyhow::anyhow!("--service-cidr: {}", e.message))?;
    if svc.overlaps(&cidr) {
        bail!("--service-cidr: {svc} overlaps the cluster CIDR {cidr}");
    }
    let underlay = args.underlay.ok_or_else(|| {
        anyhow::anyhow!("--underlay: required with --datastore (the node's PublicIP in its lease)")
    })?;
    if !(2..=86400).contains(&args.node_ttl) {
        bail!("--node-ttl: {} is out of range (2-86400)", args.node_ttl);
    }
    if args.etcd_certfile.is_some() != args.etcd_keyfile.is_some() {
        bail!("--etcd-certfile: --etcd-certfile and --etcd-keyfile go together");
    }
    let tls =
        (args.etcd_cafile.is_some() || args.etcd_certfile.is_some()).then(|| datastore::TlsFiles {
            ca: args.etcd_cafile.clone(),
            cert: args.etcd_certfile.clone(),
            key: args.etcd_keyfile.clone(),
        });
    Ok(Some(datastore::Settings {
        endpoints,
        prefix,
        tls,
        node_ttl: args.node_ttl,
        net: datastore::flannel::Network {
            cidr,
            subnet_len: datastore::flannel::default_subnet_len(cidr),
            vni: args.vni,
            port: args.vxlan_port,
        },
        node: args.node.clone(),
        underlay,
    }))
}

/// The node's configuration with `--pod-cidr` (tests; the daemon uses [`node_config_for`]).
#[cfg(test)]
fn node_config(args: &Args) -> Result<NodeConfig> {
    let cidr = pod_cidr_flag(args)?
        .ok_or_else(|| anyhow::anyhow!("--pod-cidr: required without --datastore"))?;
    node_config_for(args, cidr)
}

/// The node's configuration for pod subnet `cidr`; checks every flag but the datastore's.
fn node_config_for(args: &Args, cidr: vswitch_datapath::Ipv4Cidr) -> Result<NodeConfig> {
    if cidr.prefix_len() > 30 {
        bail!("--pod-cidr: {cidr} is too small for a node subnet (at most /30)");
    }
    if !(576 + 50..=65535).contains(&args.mtu) {
        bail!("--mtu: {} is out of range (626-65535)", args.mtu);
    }
    if args.vni == 0 || args.vni >= 1 << 24 {
        bail!("--vni: {} is out of range (1-16777215)", args.vni);
    }
    vswitch_proto::validate::node_name("node", &args.node)
        .map_err(|e| anyhow::anyhow!("--node: {}", e.message))?;
    let svc = checked::cidr("service_cidr", &args.service_cidr)
        .map_err(|e| anyhow::anyhow!("--service-cidr: {}", e.message))?;
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
    if !(1..=3600).contains(&args.client_timeout) {
        bail!(
            "--client-timeout: {} is out of range (1-3600)",
            args.client_timeout
        );
    }
    if !(1..=65536).contains(&args.max_clients) {
        bail!(
            "--max-clients: {} is out of range (1-65536)",
            args.max_clients
        );
    }
    if !(1..=64).contains(&args.workers) {
        bail!("--workers: {} is out of range (1-64)", args.workers);
    }
    if args.poll_us > 1_000_000 {
        bail!("--poll-us: {} is out of range (0-1000000)", args.poll_us);
    }
    if !(1..=1 << 24).contains(&args.conntrack_max) {
        bail!(
            "--conntrack-max: {} is out of range (1-16777216)",
            args.conntrack_max
        );
    }
    let ct_pod_max = args
        .conntrack_max_per_pod
        .unwrap_or((args.conntrack_max / 16).max(1));
    if !(1..=args.conntrack_max).contains(&ct_pod_max) {
        bail!(
            "--conntrack-max-per-pod: {ct_pod_max} is out of range (1-{}, the --conntrack-max)",
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
    cfg.ct_pod_max = ct_pod_max;
    cfg.dns_forward = args.dns_upstream.is_some();
    cfg.arp_limit = args.arp_limit;
    cfg.broadcast_limit = args.broadcast_limit;
    getrandom::fill(&mut cfg.secret)
        .context("no random bytes from the OS for the node's secret")?;
    Ok(cfg)
}

/// Raises the soft open-file limit (RLIMIT_NOFILE) to the hard one and logs both: TAP queues,
/// control connections (`--max-clients`), state files and sockets all take descriptors, and
/// the soft default (often 1024) is far below what a busy node holds. Warns when the limit
/// leaves little room beyond `max_clients` connections. Best effort: a failure is logged.
fn raise_nofile_limit(max_clients: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("getrlimit(RLIMIT_NOFILE): {e}");
            return;
        }
    };
    let mut now = soft;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => now = hard,
            Err(e) => tracing::warn!("raising RLIMIT_NOFILE from {soft} to {hard}: {e}"),
        }
    }
    info!(
        was = soft,
        soft = now,
        hard,
        "open-file limit (RLIMIT_NOFILE)"
    );
    // The daemon's own descriptors (engine, tunnel, TAP queues) come on top of the clients'.
    if now < max_clients as u64 + 256 {
        tracing::warn!(
            nofile = now,
            max_clients,
            "the open-file limit leaves little room beyond --max-clients connections"
        );
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    logging::init(args.log_format);
    let ds_settings = datastore_settings(&args)?;
    let wanted = pod_cidr_flag(&args)?;
    // Every flag is checked before etcd is touched (a stand-in subnet with a datastore).
    let stand_in = match (&ds_settings, wanted) {
        (_, Some(c)) => c,
        (Some(s), None) => vswitch_datapath::Ipv4Cidr::new(s.net.cidr.network(), s.net.subnet_len)
            .expect("a subnet length of at most 30"),
        (None, None) => bail!(
            "--pod-cidr: required without --datastore (this node's pod subnet, e.g. 198.18.1.0/24)"
        ),
    };
    node_config_for(&args, stand_in)?;
    let metrics_at = metrics_addr(&args)?;
    raise_nofile_limit(args.max_clients);
    let socket_gid = control::socket_gid(args.socket_group.as_deref())?;
    let store = state::Store::open(&args.state_dir, &args.socket)?;
    // Bound before anything starts, so a taken port stops the daemon with the flag named.
    let metrics_listener = metrics_at
        .map(|a| {
            std::net::TcpListener::bind(a)
                .with_context(|| format!("--metrics-addr: cannot listen on {a}"))
        })
        .transpose()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the control-plane runtime")?;
    let (cidr, ds) = match ds_settings {
        None => (stand_in, None),
        Some(s) => {
            // The subnet saved in the state directory (fail-static: used when etcd is down).
            let saved = checked::cidr("pod_cidr", &store.load()?.pod_cidr).ok();
            let ds = rt.block_on(datastore::acquire(s, wanted, saved))?;
            (ds.subnet(), Some(Arc::new(ds)))
        }
    };
    let cfg = node_config_for(&args, cidr)?;
    let cfg_pod_cidr = cfg.pod_cidr;
    let mut datapath = Datapath::new(cfg);
    if args.flow_log_size > 0 {
        datapath = datapath.with_flow_log(vswitch_datapath::FlowLog::new(flows::QUEUE_LEN));
    }
    let datapath = Arc::new(datapath);
    let batches = metrics::EngineBatches::default();
    let io = io::start(
        datapath.clone(),
        &io::EngineOpts {
            kind: args.datapath,
            underlay: args.underlay,
            vxlan_port: args.vxlan_port,
            dns_upstream: args.dns_upstream,
            spin: std::time::Duration::from_micros(args.poll_us),
            workers: args.workers,
            uring_multishot: args.uring_multishot == OnOff::On,
            uring_registered_buffers: args.uring_registered_buffers == OnOff::On,
            batches: batches.clone(),
        },
    )?;
    info!(
        node = %args.node, pod_cidr = %cfg_pod_cidr, datapath = io.kind(),
        service_cidr = %args.service_cidr, dns_ip = ?datapath.config().dns_ip,
        dns_upstream = ?args.dns_upstream, poll_us = args.poll_us, workers = args.workers,
        arp_limit = %args.arp_limit, broadcast_limit = %args.broadcast_limit,
        "vswitchd {} starting", env!("CARGO_PKG_VERSION")
    );
    let ck = Arc::new(ct_file::Checkpointer::new(
        store.dir().to_path_buf(),
        datapath.clone(),
        io.epoch(),
    ));
    let result = rt.block_on(async {
        let lost = io.take_lost().expect("taken once");
        let epoch = io.epoch();
        let node = node::Node::recover(
            args.clone(),
            datapath.clone(),
            io,
            store,
            ck.clone(),
            ds.clone(),
        )
        .await?;
        let flow_log = tokio::spawn(flows::run(node.clone(), datapath, epoch));
        let expiry = tokio::spawn(ct_file::run(ck));
        let watch = tokio::spawn(node.clone().watch_lost(lost));
        let sync = ds.map(|ds| tokio::spawn(ds.run(node.clone())));
        if let Some(listener) = metrics_listener {
            let addr = listener.local_addr()?;
            let n = node.clone();
            let m = metrics::Metrics::new(
                move || n.metrics_snapshot_blocking(),
                node.control_latency(),
                &batches,
            );
            metrics::http::spawn(listener, m).context("starting the metrics thread")?;
            info!(%addr, "metrics served on http://{addr}/metrics");
        }
        let served = control::serve(&args, socket_gid, node).await;
        expiry.abort();
        watch.abort();
        flow_log.abort();
        if let Some(sync) = sync {
            sync.abort();
        }
        served
    });
    info!("vswitchd stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = ["vswitchd", "--node", "n1", "--pod-cidr", "198.18.1.0/24"];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn rate_limit_flags_default_parse_and_name_the_flag_on_error() {
        let cfg = node_config(&parse(&[]).unwrap()).unwrap();
        assert_eq!(cfg.arp_limit, RateLimit::ARP_DEFAULT);
        assert_eq!(cfg.broadcast_limit, RateLimit::BROADCAST_DEFAULT);
        let a = parse(&["--arp-limit", "10/20", "--broadcast-limit", "0"]).unwrap();
        let cfg = node_config(&a).unwrap();
        assert_eq!(
            cfg.arp_limit,
            RateLimit {
                per_sec: 10,
                burst: 20
            }
        );
        assert_eq!(cfg.broadcast_limit, RateLimit::UNLIMITED);
        for (flag, bad) in [
            ("--arp-limit", "lots"),
            ("--arp-limit", "10/0"),
            ("--broadcast-limit", "5/x"),
            ("--broadcast-limit", "9999999"),
        ] {
            let e = parse(&[flag, bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{flag} {bad}");
            let msg = e.to_string();
            assert!(
                msg.contains(flag) && msg.contains(bad),
                "{flag} {bad}: {msg}"
            );
        }
    }

    #[test]
    fn datastore_flags_are_checked_and_name_the_flag() {
        let ds = |extra: &[&str]| {
            let base = ["vswitchd", "--node", "n1", "--underlay", "198.19.0.1"];
            let a = Args::try_parse_from(base.iter().chain(extra)).unwrap();
            datastore_settings(&a).map(|s| s.map(|s| (s.endpoints, s.net, s.prefix, s.node_ttl)))
        };
        assert!(ds(&[]).unwrap().is_none());
        let url = ["--datastore", "etcd://198.19.0.254:2379"];
        let (eps, net, prefix, ttl) =
            ds(&[&url[..], &["--cluster-cidr", "198.18.0.0/16"]].concat())
                .unwrap()
                .unwrap();
        assert_eq!(eps, ["198.19.0.254:2379"]);
        assert_eq!((net.subnet_len, net.vni, net.port), (24, 1, 4789));
        assert_eq!((prefix.as_str(), ttl), ("/coreos.com/network", 20));
        for (extra, flag) in [
            (&url[..], "--cluster-cidr: required with --datastore"),
            (
                &[
                    "--datastore",
                    "http://x:1",
                    "--cluster-cidr",
                    "198.18.0.0/16",
                ][..],
                "--datastore: ",
            ),
            (
                &["--cluster-cidr", "198.18.0.0/16"][..],
                "--cluster-cidr: only meaningful",
            ),
            (
                &[
                    "--datastore",
                    "etcd://h:1",
                    "--cluster-cidr",
                    "198.18.0.0/16",
                    "--node-ttl",
                    "1",
                ][..],
                "--node-ttl: 1 is out of range",
            ),
            (
                &[
                    "--datastore",
                    "etcd://h:1",
                    "--cluster-cidr",
                    "198.19.96.0/19",
                ][..],
                "--service-cidr: 198.19.96.0/20 overlaps the cluster CIDR",
            ),
            (
                &[
                    "--datastore",
                    "etcd://h:1",
                    "--cluster-cidr",
                    "198.18.0.0/16",
                    "--datastore-prefix",
                    "x",
                ][..],
                "--datastore-prefix: ",
            ),
            (
                &[
                    "--datastore",
                    "etcd://h:1",
                    "--cluster-cidr",
                    "198.18.0.0/16",
                    "--etcd-certfile",
                    "/c",
                ][..],
                "--etcd-certfile: ",
            ),
        ] {
            let e = ds(extra).unwrap_err().to_string();
            assert!(e.starts_with(flag), "{extra:?}: {e}");
        }
        // Without --underlay: the lease's PublicIP is missing.
        let a = Args::try_parse_from(
            [
                "vswitchd",
                "--node",
                "n1",
                "--cluster-cidr",
                "198.18.0.0/16",
            ]
            .iter()
            .chain(&url),
        )
        .unwrap();
        let e = datastore_settings(&a).unwrap_err().to_string();
        assert!(
            e.starts_with("--underlay: required with --datastore"),
            "{e}"
        );
        // Without --datastore, --pod-cidr stays required.
        let a = Args::try_parse_from(["vswitchd", "--node", "n1"]).unwrap();
        assert_eq!(pod_cidr_flag(&a).unwrap(), None);
        assert!(node_config(&a)
            .unwrap_err()
            .to_string()
            .starts_with("--pod-cidr: required"));
    }

    #[test]
    fn max_clients_defaults_to_128_and_is_checked() {
        assert_eq!(parse(&[]).unwrap().max_clients, 128);
        assert!(node_config(&parse(&["--max-clients", "1"]).unwrap()).is_ok());
        assert!(node_config(&parse(&["--max-clients", "65536"]).unwrap()).is_ok());
        for bad in ["0", "65537"] {
            let e = node_config(&parse(&["--max-clients", bad]).unwrap()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("--max-clients: {bad} is out of range (1-65536)")
            );
        }
    }

    #[test]
    fn dns_flags_are_checked_by_proto_and_name_the_flag() {
        let a = parse(&[
            "--cluster-domain",
            "Example.Test.",
            "--dns-upstream",
            "198.18.0.53",
        ]);
        let a = a.unwrap();
        assert_eq!(node_config(&a).unwrap().cluster_domain, "example.test");
        assert_eq!(a.dns_upstream.unwrap().to_string(), "198.18.0.53:53");
        let e = node_config(&parse(&["--cluster-domain", "bad_domain"]).unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--cluster-domain: `bad_domain` is not a DNS domain (labels of a-z, 0-9 and '-')"
        );
        for bad in ["x", "0.0.0.0", "198.18.0.53:0"] {
            let e = parse(&["--dns-upstream", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            let msg = e.to_string();
            assert!(
                msg.contains("--dns-upstream") && msg.contains(bad),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn metrics_flags_are_off_by_default_and_loopback_unless_remote_is_allowed() {
        assert_eq!(metrics_addr(&parse(&[]).unwrap()).unwrap(), None);
        let a = parse(&["--metrics-addr", "127.0.0.1:9419"]).unwrap();
        assert_eq!(
            metrics_addr(&a).unwrap().unwrap().to_string(),
            "127.0.0.1:9419"
        );
        assert!(metrics_addr(&parse(&["--metrics-addr", "[::1]:9419"]).unwrap()).is_ok());
        for addr in ["198.19.0.1:9419", "0.0.0.0:9419"] {
            let e = metrics_addr(&parse(&["--metrics-addr", addr]).unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("--metrics-addr: ") && e.contains("--metrics-allow-remote"),
                "{e}"
            );
            let a = parse(&["--metrics-addr", addr, "--metrics-allow-remote"]).unwrap();
            assert_eq!(metrics_addr(&a).unwrap().unwrap().to_string(), addr);
        }
        let e = metrics_addr(&parse(&["--metrics-allow-remote"]).unwrap()).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("--metrics-allow-remote: only meaningful"));
        let e = parse(&["--metrics-addr", "localhost"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--metrics-addr"), "{e}");
    }
}
