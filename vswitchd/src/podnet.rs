//! Pod attachment: create and configure a pod's TAP inside the pod's network namespace.
//!
//! Every operation runs in a dedicated, short-lived std thread that `setns(2)`s into the pod
//! (`CLONE_NEWNET` is per-thread, so the daemon's other threads stay where they are) and
//! builds its own tokio `current_thread` runtime, so the rtnetlink socket is opened inside the
//! pod's namespace. The calling thread blocks until that thread is done: from async code, call
//! these functions through `tokio::task::spawn_blocking`.
//!
//! Everything is done with ioctls and rtnetlink; nothing shells out to `ip`.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use nix::sched::CloneFlags;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::tap::{Tap, TapOptions};

/// What to create inside the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIfConfig {
    /// Network namespace file (see [`resolve_netns`]).
    pub netns: PathBuf,
    /// Interface name inside the pod, usually `eth0`.
    pub ifname: String,
    pub mac: [u8; 6],
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    /// Negotiate TAP offloads (CSUM/TSO/USO); the vnet header is always on.
    pub offload: bool,
    /// TAP queues to open (one per I/O worker); more than 1 makes the TAP multi-queue.
    pub queues: usize,
}

/// A pod TAP's queues (one fd each); the first is the one the TAP was created with.
pub type Queues = Vec<OwnedFd>;

/// What [`inspect_pod`] found in the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIfState {
    pub ifname: String,
    /// False when the interface does not exist; the other fields are then empty.
    pub exists: bool,
    pub ifindex: u32,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// IPv4 addresses on the interface, with prefix length.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// Gateway of the main-table IPv4 default route through this interface, if any.
    pub default_gateway: Option<Ipv4Addr>,
}

impl PodIfState {
    /// Compares with what [`attach_pod`] would have configured (CNI CHECK); the error lists
    /// every mismatch.
    pub fn check(&self, cfg: &PodIfConfig) -> anyhow::Result<()> {
        let (ifname, ns) = (&cfg.ifname, cfg.netns.display());
        if !self.exists {
            bail!("interface {ifname} does not exist in netns {ns}");
        }
        let mut bad = Vec::new();
        if self.mac != Some(cfg.mac) {
            let mac = self.mac.map_or_else(|| "missing".to_string(), fmt_mac);
            bad.push(format!("mac is {mac}"));
        }
        if self.mtu != cfg.mtu {
            bad.push(format!("mtu is {}", self.mtu));
        }
        if !self.up {
            bad.push("link is down".to_string());
        }
        if !self.addrs.contains(&(cfg.addr, cfg.prefix_len)) {
            let addrs: Vec<String> = self.addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect();
            bad.push(if addrs.is_empty() {
                "no IPv4 address".to_string()
            } else {
                format!("addresses are {}", addrs.join(", "))
            });
        }
        if self.default_gateway != Some(cfg.gateway) {
            bad.push(match self.default_gateway {
                Some(gw) => format!("default route via {gw}"),
                None => "no default route".to_string(),
            });
        }
        if !bad.is_empty() {
            let (mac, mtu, gw) = (fmt_mac(cfg.mac), cfg.mtu, cfg.gateway);
            let want = format!("{mac} mtu {mtu} {}/{} via {gw}", cfg.addr, cfg.prefix_len);
            bail!("{ifname} in netns {ns}: {} (want {want})", bad.join("; "));
        }
        Ok(())
    }
}

/// Resolves NETNS as the CLI takes it: a bare name means `/var/run/netns/NAME`; otherwise only
/// `/var/run/netns/NAME`, `/run/netns/NAME` or `/proc/PID/ns/net` (the shape rule is
/// [`vswitch_proto::validate::netns`]; anything else is refused before it is looked at). Errors
/// if it does not exist or is not a network namespace; opening it never blocks
/// ([`open_netns`]).
pub fn resolve_netns(spec: &str) -> anyhow::Result<PathBuf> {
    let r = vswitch_proto::validate::netns("netns", spec).map_err(|e| anyhow!(e.message))?;
    let path = PathBuf::from(&r.path);
    open_netns_file(&path, r.proc)?;
    Ok(path)
}

/// Creates `cfg.ifname` as a TAP inside `cfg.netns` and configures it (MAC, MTU, `lo` up,
/// IPv4 address, link up, default route, IPv6 off). Returns the TAP fd (usable from any
/// namespace) and the interface index in the pod. The TAP is not persistent yet: it goes
/// with its fd, so that a daemon dying before the port is saved leaves nothing in the pod.
/// Once the port is saved, [`crate::tap::set_persist`] makes it outlive the daemon (see
/// [`reattach_pod`]); it is then removed by [`detach_pod`] or with its namespace.
/// On any failure the TAP is destroyed again. Fails if the interface exists already.
pub fn attach_pod(cfg: &PodIfConfig) -> anyhow::Result<(Queues, u32)> {
    attach(cfg, false)
}

/// Like [`attach_pod`], but an existing TAP of that name (left by an earlier run of the
/// daemon) is taken over and its configuration completed instead of refused: the pod keeps
/// its interface across a daemon restart. The TAP is persistent at once (its port is saved).
pub fn reattach_pod(cfg: &PodIfConfig) -> anyhow::Result<(Queues, u32)> {
    attach(cfg, true)
}

fn attach(cfg: &PodIfConfig, take_over: bool) -> anyhow::Result<(Queues, u32)> {
    if cfg.prefix_len == 0 || cfg.prefix_len > 32 {
        bail!("invalid prefix length /{} for {}", cfg.prefix_len, cfg.addr);
    }
    if cfg.mac[0] & 1 != 0 || cfg.mac == [0; 6] {
        let mac = fmt_mac(cfg.mac);
        bail!("invalid pod MAC {mac}: must be non-zero unicast");
    }
    let ns = open_netns(&cfg.netns)?;
    let cfg = cfg.clone();
    in_netns(ns, "attach", move |h| async move {
        let (ifname, ns) = (&cfg.ifname, cfg.netns.display());
        let ctx = format!("{ifname} in netns {ns}");
        let existed = get_link(&h, ifname).await?.is_some();
        if existed && !take_over {
            bail!("interface {ifname} already exists in netns {ns}");
        }
        let mut opts = TapOptions {
            ifname: cfg.ifname.clone(),
            vnet_hdr: true,
            offload: cfg.offload,
            nonblocking: true,
            multi_queue: cfg.queues > 1,
        };
        // A previous daemon's descriptor may take a moment to be released (EBUSY).
        let mut tries = 0;
        let tap = loop {
            match Tap::create(&opts) {
                Ok(t) => break t,
                Err(e) if existed && tries < 20 && is_busy(&e) => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                // Made by a daemon run with another --workers: single- and multi-queue TAPs
                // do not mix (EINVAL). Take it over as it is; the pod keeps its interface.
                Err(e) if existed && tries < 20 && is_errno(&e, libc::EINVAL) => {
                    tries += 1;
                    opts.multi_queue = !opts.multi_queue;
                    tracing::info!(ifname = %cfg.ifname, multi_queue = opts.multi_queue,
                        "existing TAP has the other queue mode; taking it over as it is");
                }
                Err(e) => return Err(e.context(format!("creating TAP {ctx}"))),
            }
        };
        let mut queues = Vec::new();
        if opts.multi_queue {
            for _ in 1..cfg.queues {
                match Tap::create(&opts) {
                    Ok(q) => queues.push(q.into_fd()),
                    Err(e) => {
                        // Fewer queues only means fewer workers read this pod's frames.
                        tracing::warn!(ifname = %cfg.ifname, "extra TAP queue: {e:#}");
                        break;
                    }
                }
            }
        }
        let configured = configure(&h, &tap, &cfg, existed).await;
        let result = configured.and_then(|ifindex| {
            if take_over {
                tap.set_persist(true)?;
            }
            Ok(ifindex)
        });
        match result {
            Ok(ifindex) => {
                tracing::info!(ifname = %cfg.ifname, ifindex, netns = %cfg.netns.display(),
                    offloads = %crate::tap::offload_names(tap.offloads()),
                    queues = queues.len() + 1, reattached = existed, "pod attached");
                queues.insert(0, tap.into_fd());
                Ok((queues, ifindex))
            }
            // Dropping the only fd of a non-persistent TAP unregisters it.
            Err(e) => {
                let _ = tap.set_persist(false);
                drop(tap);
                Err(e.context(format!("configuring {ctx} (TAP removed)")))
            }
        }
    })
}

fn is_busy(e: &anyhow::Error) -> bool {
    is_errno(e, libc::EBUSY)
}

fn is_errno(e: &anyhow::Error, errno: i32) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(errno)
    })
}

/// Removes the pod's interface if it still exists. A missing netns or link is success.
pub fn detach_pod(netns: &Path, ifname: &str) -> anyhow::Result<()> {
    let ns = match open_netns(netns) {
        Ok(f) => f,
        Err(e) if is_errno(&e, libc::ENOENT) => {
            tracing::debug!(netns = %netns.display(), "detach: netns already gone");
            return Ok(());
        }
        Err(e) if e.is::<NotNetns>() => {
            // E.g. the placeholder file `ip netns del` left after unmounting: the namespace
            // is gone.
            tracing::warn!(netns = %netns.display(), "detach: {e:#}; treating as already gone");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let ifname = ifname.to_string();
    in_netns(ns, "detach", move |h| async move {
        let Some(link) = get_link(&h, &ifname).await? else {
            return Ok(());
        };
        match h.link().del(link.header.index).execute().await {
            Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(()),
            r => r.with_context(|| format!("deleting {ifname}")),
        }
    })
}

/// Reads back what is configured on `ifname` in `netns` (for CNI CHECK).
pub fn inspect_pod(netns: &Path, ifname: &str) -> anyhow::Result<PodIfState> {
    let ns = open_netns(netns)?;
    let ifname = ifname.to_string();
    in_netns(ns, "inspect", move |h| async move {
        let ifname2 = ifname.clone();
        let mut st = PodIfState {
            ifname: ifname2,
            ..Default::default()
        };
        let Some(link) = get_link(&h, &ifname).await? else {
            return Ok(st);
        };
        st.exists = true;
        st.ifindex = link.header.index;
        st.up = link.header.flags.contains(LinkFlags::Up);
        for attr in &link.attributes {
            match attr {
                LinkAttribute::Mtu(m) => st.mtu = *m,
                LinkAttribute::Address(a) => st.mac = a.as_slice().try_into().ok(),
                _ => {}
            }
        }
        let req = h.address().get().set_link_index_filter(st.ifindex);
        let mut addrs = req.execute();
        while let Some(msg) = addrs.try_next().await.context("RTM_GETADDR")? {
            let (mut local, mut address) = (None, None);
            for attr in &msg.attributes {
                match attr {
                    AddressAttribute::Local(IpAddr::V4(a)) => local = Some(*a),
                    AddressAttribute::Address(IpAddr::V4(a)) => address = Some(*a),
                    _ => {}
                }
            }
            if let Some(a) = local.or(address) {
                st.addrs.push((a, msg.header.prefix_len));
            }
        }
        let req = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build());
        let mut routes = req.execute();
        while let Some(r) = routes.try_next().await.context("RTM_GETROUTE")? {
            // Main table (254) fits the header byte; RTA_TABLE only matters for ids > 255.
            let hd = &r.header;
            if hd.table != RouteHeader::RT_TABLE_MAIN || hd.destination_prefix_length != 0 {
                continue;
            }
            let (mut oif, mut gw) = (None, None);
            for attr in &r.attributes {
                match attr {
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some(*g),
                    _ => {}
                }
            }
            if oif == Some(st.ifindex) && gw.is_some() {
                st.default_gateway = gw;
            }
        }
        Ok(st)
    })
}

/// Sets MAC/MTU, disables IPv6, brings `lo` up, adds the address, brings the link up and
/// adds the default route. Returns the ifindex.
/// Configures the pod's interface; with `existing`, what is already in place (an address or
/// route left from before) is accepted.
async fn configure(
    h: &Handle,
    tap: &Tap,
    cfg: &PodIfConfig,
    existing: bool,
) -> anyhow::Result<u32> {
    let tolerate = |r: Result<(), rtnetlink::Error>| match r {
        Err(e) if existing && nl_errno(&e) == Some(libc::EEXIST) => Ok(()),
        r => r,
    };
    let name = tap.name();
    let index = get_link(h, name)
        .await?
        .ok_or_else(|| anyhow!("TAP {name} vanished right after creation"))?
        .header
        .index;
    let link = LinkUnspec::new_with_index(index);
    set_link(h, link.address(cfg.mac.to_vec()).mtu(cfg.mtu).build())
        .await
        .with_context(|| format!("setting MAC {} and MTU {}", fmt_mac(cfg.mac), cfg.mtu))?;
    // Before the link goes up, so the pod never sends router solicitations or MLD reports.
    disable_ipv6(h, name).await;
    set_link(h, LinkUnspec::new_with_name("lo").up().build())
        .await
        .context("bringing lo up")?;
    tolerate(
        h.address()
            .add(index, IpAddr::V4(cfg.addr), cfg.prefix_len)
            .execute()
            .await,
    )
    .with_context(|| format!("adding address {}/{}", cfg.addr, cfg.prefix_len))?;
    set_link(h, LinkUnspec::new_with_index(index).up().build())
        .await
        .context("setting link up")?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(cfg.gateway)
        .output_interface(index)
        .build();
    tolerate(h.route().add(route).execute().await)
        .with_context(|| format!("adding default route via {}", cfg.gateway))?;
    Ok(index)
}

/// Writes `net.ipv6.conf.<ifname>.disable_ipv6 = 1`. Net sysctls resolve against the
/// opening thread's network namespace, not the mount's; that is double-checked here by
/// comparing `/proc/sys/net/ipv6/conf/` with the links netlink sees, so a write can never
/// land on a same-named interface of the daemon's namespace. Best effort: failures are logged.
async fn disable_ipv6(h: &Handle, ifname: &str) {
    let conf = Path::new("/proc/sys/net/ipv6/conf");
    let Ok(dir) = std::fs::read_dir(conf) else {
        tracing::debug!("no {} (IPv6 disabled in the kernel?)", conf.display());
        return;
    };
    let mut sysctl_links: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "all" && n != "default")
        .collect();
    let mut nl_links: Vec<String> = match h.link().get().execute().try_collect::<Vec<_>>().await {
        Ok(links) => links.iter().filter_map(link_name).collect(),
        Err(e) => {
            tracing::warn!("not disabling IPv6 on {ifname}: link dump failed: {e}");
            return;
        }
    };
    sysctl_links.sort();
    nl_links.sort();
    if sysctl_links != nl_links {
        tracing::warn!(
            ?sysctl_links,
            ?nl_links,
            "not disabling IPv6 on {ifname}: /proc/sys/net does not reflect the pod netns"
        );
        return;
    }
    let path = conf.join(ifname).join("disable_ipv6");
    match std::fs::write(&path, "1") {
        Ok(()) => tracing::debug!("IPv6 disabled on {ifname}"),
        Err(e) => tracing::warn!("writing {}: {e}", path.display()),
    }
}

/// The link called `name` in the handle's namespace, `None` if there is none.
async fn get_link(h: &Handle, name: &str) -> anyhow::Result<Option<LinkMessage>> {
    let mut req = h.link().get().match_name(name.to_string()).execute();
    match req.try_next().await {
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(None),
        r => r.with_context(|| format!("looking up link {name}")),
    }
}

/// `ip link set` (RTM_NEWLINK without NLM_F_CREATE).
async fn set_link(h: &Handle, msg: LinkMessage) -> Result<(), rtnetlink::Error> {
    h.link().change(msg).execute().await
}

fn link_name(l: &LinkMessage) -> Option<String> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// Positive errno of a netlink error reply.
fn nl_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// Opens a network namespace file a port record names: it must have the shape
/// [`resolve_netns`] accepts (records from an older daemon may not), then as
/// [`open_netns_file`].
fn open_netns(path: &Path) -> anyhow::Result<File> {
    let s = path.to_str().unwrap_or_default();
    let r = vswitch_proto::validate::netns("netns", s).map_err(|e| anyhow!(e.message))?;
    open_netns_file(Path::new(&r.path), r.proc)
}

/// The file is there but is no network namespace.
#[derive(Debug)]
struct NotNetns(String, &'static str);

impl std::fmt::Display for NotNetns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a network namespace ({})", self.0, self.1)
    }
}

impl std::error::Error for NotNetns {}

/// Opens `path` read-only, non-blocking (a FIFO's open would wait for a writer, with the
/// control plane waiting behind it), close-on-exec, and without following a symlink in its
/// last component unless `follow` (`/proc/PID/ns/net` is a kernel symlink), then checks it
/// is a network namespace before anything else is done with it.
fn open_netns_file(path: &Path, follow: bool) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let shown = path.display().to_string();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => anyhow!(e).context(format!(
                "network namespace {shown} not found: it does not exist"
            )),
            Some(libc::ELOOP) => NotNetns(shown.clone(), "a symbolic link").into(),
            Some(libc::ENXIO) => NotNetns(shown.clone(), "a socket").into(),
            _ => anyhow!(e).context(format!("opening network namespace {shown}")),
        })?;
    check_netns_file(&file, path)?;
    Ok(file)
}

/// Errors unless `file` is a namespace file (on nsfs) of type network.
fn check_netns_file(file: &File, path: &Path) -> anyhow::Result<()> {
    let shown = path.display().to_string();
    let fs = nix::sys::statfs::fstatfs(file).with_context(|| format!("statfs {shown}"))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(NotNetns(shown, "not on nsfs").into());
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns the CLONE_NEW* type of the
    // namespace the fd refers to; `file` is open for the duration of the call.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if kind < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("NS_GET_NSTYPE on {shown}"));
    }
    if kind != libc::CLONE_NEWNET {
        return Err(NotNetns(shown, "a namespace of another type").into());
    }
    Ok(())
}

/// Runs `f` with an rtnetlink handle on a fresh thread that has joined `ns`. The thread (and
/// its netns membership, netlink socket and runtime) ends with the call.
fn in_netns<T, F, Fut>(ns: File, what: &'static str, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let thread = std::thread::Builder::new()
        .name(format!("podnet-{what}"))
        .spawn(move || -> anyhow::Result<T> {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).context("setns(CLONE_NEWNET)")?;
            drop(ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building netlink runtime")?;
            rt.block_on(async move {
                let (conn, handle, _) = rtnetlink::new_connection().context("netlink socket")?;
                let conn = tokio::spawn(conn);
                let r = f(handle).await;
                conn.abort();
                r
            })
        })
        .context("spawning netns thread")?;
    thread
        .join()
        .map_err(|_| anyhow!("podnet {what} thread panicked"))?
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A scratch directory under the target's temp dir, removed at the end.
    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn scratch(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("vswitchd-podnet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    #[test]
    fn a_fifo_a_file_or_a_symlink_is_refused_at_once_and_a_real_netns_is_taken() {
        let d = scratch("open");
        let fifo = d.0.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let file = d.0.join("file");
        std::fs::write(&file, "x").unwrap();
        let link = d.0.join("link");
        std::os::unix::fs::symlink("/proc/self/ns/net", &link).unwrap();
        let t = Instant::now();
        for (path, why) in [
            (&fifo, "not on nsfs"),
            (&file, "not on nsfs"),
            (&link, "a symbolic link"),
        ] {
            // Opened as a path under /run/netns would be (no symlink followed).
            let e = open_netns_file(path, false).unwrap_err();
            assert!(e.is::<NotNetns>(), "{}: {e:#}", path.display());
            assert!(format!("{e:#}").contains(why), "{}: {e:#}", path.display());
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let e = open_netns_file(&d.0.join("none"), false).unwrap_err();
        assert!(is_errno(&e, libc::ENOENT), "{e:#}");
        assert!(format!("{e:#}").contains("not found"), "{e:#}");
        // /proc/PID/ns/net is the kernel's symlink: followed, and it is a network namespace.
        let me = format!("/proc/{}/ns/net", std::process::id());
        open_netns_file(Path::new(&me), true).unwrap();
        open_netns(Path::new(&me)).unwrap();
        // Another namespace type is refused.
        let e = open_netns_file(Path::new("/proc/self/ns/uts"), true).unwrap_err();
        assert!(format!("{e:#}").contains("another type"), "{e:#}");
        // Records of other shapes (an older daemon's) are refused before they are opened.
        let e = open_netns(&fifo).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a network namespace reference"),
            "{e:#}"
        );
        assert!(!e.is::<NotNetns>());
    }

    #[test]
    fn resolve_refuses_other_shapes_without_looking() {
        for bad in [
            "/etc/shadow",
            "/etc/no-such-file",
            "/dev/zero",
            "/proc/self/ns/net",
            "..",
        ] {
            let e = resolve_netns(bad).unwrap_err().to_string();
            assert!(
                e.contains("not a network namespace reference"),
                "{bad}: {e}"
            );
            assert!(
                !e.contains("not found") && !e.contains("nsfs"),
                "{bad}: {e}"
            );
        }
        let e = resolve_netns("vswitchd-unit-no-such-netns").unwrap_err();
        assert!(
            format!("{e:#}").contains("/var/run/netns/vswitchd-unit-no-such-netns"),
            "{e:#}"
        );
    }
}
