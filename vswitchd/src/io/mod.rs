//! Packet I/O engines: move frames between pod TAPs, the tunnel socket and the datapath.
//!
//! Two engines share one contract: [`uring`] (io_uring, the default) and [`epoll`] (the
//! fallback for runtimes whose seccomp profile blocks io_uring). Each runs on its own thread,
//! owns the TAP file descriptors, and is told about ports through [`IoHandle`]
//! (a command channel plus an eventfd to wake it). Per batch the engine loads one table
//! snapshot, asks the datapath for a verdict per frame and carries it out; it never decides
//! anything about a frame itself, it only counts failed writes as `tx_error`.

mod dns_forward;
mod epoll;
mod tunnel;
mod uring;

use crate::DatapathKind;
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};
use vswitch_datapath::{Datapath, PortId};

/// Most frames one port may hand in per wakeup, so a busy port cannot starve the others.
pub const BATCH: usize = 64;
/// Default of `--poll-us`: how long an engine keeps polling after its last completion
/// before it goes to sleep. Measured on the 2-core test VM (loaded by other work), `ping -i
/// 0.01` between two pods on one node: without polling min 105 µs / avg 163 µs (uring); with
/// 50 µs of polling min 33 µs / avg 83-92 µs (epoll) and min 32-36 µs / avg 133-157 µs
/// (uring). A gap between packets longer than the poll costs a wakeup: see docs/bench.
pub const DEFAULT_POLL_US: u64 = 50;
/// Most datagrams taken from the tunnel socket per wakeup: enough for a whole segmented
/// 64 KiB super-frame, so that it can merge back into one (GRO).
pub const TUNNEL_BATCH: usize = 128;

/// Send and receive buffer size of the tunnel socket.
const SOCKET_BUFFER: usize = 8 << 20;

/// What the control plane tells an engine.
pub enum Command {
    /// Start serving a port's TAP.
    AddPort(PortId, OwnedFd, Sender<()>),
    /// Stop serving a port (its fd is closed); acknowledged once the engine let go.
    DelPort(PortId, Sender<()>),
    /// Exit the engine thread.
    Shutdown,
}

/// The control plane's handle on the running engine.
pub struct IoHandle {
    kind: &'static str,
    /// The engine's clock origin (see [`EngineCtx::now_ms`]).
    epoch: Instant,
    tx: Sender<Command>,
    wake: Arc<OwnedFd>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl IoHandle {
    /// `uring` or `epoll`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The origin of the datapath's clock: `now_ms` handed to the datapath is the time
    /// elapsed since this instant, on the engine thread and in the control plane alike.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            wake(self.wake.as_raw_fd());
        }
    }

    /// Hands a TAP to the engine and waits until it serves it.
    pub fn add_port(&self, id: PortId, fd: OwnedFd) {
        let (ack, done) = mpsc::channel();
        self.send(Command::AddPort(id, fd, ack));
        if done.recv_timeout(Duration::from_secs(5)).is_err() {
            warn!(port = id, "I/O engine did not acknowledge the new port");
        }
    }

    /// Takes a TAP away from the engine and waits until it no longer uses it.
    pub fn del_port(&self, id: PortId) {
        let (ack, done) = mpsc::channel();
        self.send(Command::DelPort(id, ack));
        if done.recv_timeout(Duration::from_secs(5)).is_err() {
            warn!(port = id, "I/O engine did not acknowledge the port removal");
        }
    }

    /// Stops the engine thread and waits for it.
    pub fn shutdown(&self) {
        self.send(Command::Shutdown);
        if let Some(t) = self.thread.lock().expect("not poisoned").take() {
            let _ = t.join();
        }
    }
}

/// Everything an engine thread owns.
pub struct EngineCtx {
    pub datapath: Arc<Datapath>,
    pub rx: Receiver<Command>,
    pub wake: Arc<OwnedFd>,
    /// The tunnel socket, when the node has an underlay address.
    pub tunnel: Option<UdpSocket>,
    /// The forwarder to the upstream resolver, with `--dns-upstream` (the engine takes it).
    pub dns: Option<dns_forward::DnsForwarder>,
    pub epoch: Instant,
    /// How long to keep polling after the last completion (`--poll-us`).
    pub spin: Duration,
}

impl EngineCtx {
    /// Milliseconds since the engine started: the datapath's clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

fn eventfd() -> Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the result is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("eventfd");
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Wakes the engine blocked on the eventfd.
fn wake(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local u64 to an eventfd, as eventfd(2) requires.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Sets or clears O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: RawFd, on: bool) -> std::io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no pointers involved.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn tunnel_socket(underlay: Ipv4Addr, port: u16) -> Result<UdpSocket> {
    // A previous instance killed a moment ago may still hold the port while the kernel
    // tears its io_uring down: retry for a few seconds before giving up.
    let addr = SocketAddrV4::new(underlay, port);
    let deadline = Instant::now() + Duration::from_secs(5);
    let sock = loop {
        match UdpSocket::bind(addr) {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("--underlay: cannot bind UDP {addr}")),
        }
    };
    // Blocking sends: a full send buffer pushes back on the engine (as a qdisc would)
    // instead of losing whole segmented super-frames. Receives pass MSG_DONTWAIT.
    sock.set_nonblocking(false)?;
    // Room for bursts of segmented super-frames; FORCE needs CAP_NET_ADMIN, else the
    // plain option (capped by net.core.[rw]mem_max) is the fallback.
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(&sock, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::SndBuf, &SOCKET_BUFFER);
    }
    if setsockopt(&sock, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    Ok(sock)
}

/// Starts the engine chosen by `kind` on its own thread; with `dns_upstream`, queries the
/// cluster DNS does not serve are forwarded there ([`dns_forward`]). After traffic the
/// engine polls for `spin` before it sleeps.
pub fn start(
    kind: DatapathKind,
    datapath: Arc<Datapath>,
    underlay: Option<Ipv4Addr>,
    vxlan_port: u16,
    dns_upstream: Option<SocketAddrV4>,
    spin: Duration,
) -> Result<IoHandle> {
    let chosen = match kind {
        DatapathKind::Epoll => "epoll",
        DatapathKind::Uring => match uring::probe() {
            Ok(()) => "uring",
            Err(e) => bail!("--datapath uring: io_uring is not usable here: {e}"),
        },
        DatapathKind::Auto => match uring::probe() {
            Ok(()) => {
                info!("datapath: io_uring (auto: the kernel supports every operation used)");
                "uring"
            }
            Err(e) => {
                info!("datapath: epoll (auto: io_uring is not usable: {e})");
                "epoll"
            }
        },
    };
    if kind != DatapathKind::Auto {
        info!("datapath: {chosen} (chosen by --datapath)");
    }
    let tunnel = underlay.map(|u| tunnel_socket(u, vxlan_port)).transpose()?;
    let dns = dns_upstream
        .map(dns_forward::DnsForwarder::new)
        .transpose()?;
    let wake_fd = Arc::new(eventfd()?);
    let (tx, rx) = mpsc::channel();
    let epoch = Instant::now();
    let ctx = EngineCtx {
        datapath,
        rx,
        wake: wake_fd.clone(),
        tunnel,
        dns,
        epoch,
        spin,
    };
    let thread = std::thread::Builder::new()
        .name(format!("vswitch-{chosen}"))
        .spawn(move || {
            let res = if chosen == "uring" {
                uring::run(ctx)
            } else {
                epoll::run(ctx)
            };
            if let Err(e) = res {
                tracing::error!("I/O engine stopped: {e:#}");
            }
        })?;
    Ok(IoHandle {
        kind: chosen,
        epoch,
        tx,
        wake: wake_fd,
        thread: std::sync::Mutex::new(Some(thread)),
    })
}
