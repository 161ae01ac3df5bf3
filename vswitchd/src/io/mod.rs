//! Packet I/O engines: move frames between pod TAPs, the tunnel socket and the datapath.
//!
//! One engine core ([`core`]: the forwarding loop, verdicts carried out, the GRO hold, the
//! tunnel and DNS drains, commands, the spin-then-sleep policy) runs on one of two back ends:
//! [`uring`] (io_uring, the default) and [`epoll`] (the fallback for runtimes whose seccomp
//! profile blocks io_uring), which only submit operations and hand completions to the core. `--workers N` runs N engine
//! threads of the chosen kind; each reads its own queue of every pod's multi-queue TAP and
//! has its own tunnel socket (`SO_REUSEPORT`), so the kernel spreads flows over the workers
//! by hash and a flow stays on one worker (no reordering). The workers share the datapath
//! (snapshot tables, conntrack, counters). They are told about ports through [`IoHandle`]
//! (a command channel plus an eventfd to wake each). Per batch the engine loads one table
//! snapshot, asks the datapath for a verdict per frame and carries it out; it never decides
//! anything about a frame itself, it only counts failed writes as `tx_error`.
//!
//! Captures ([`capture`]) tap the core's frames: one relaxed load per batch when none runs.
//!
//! A TAP whose device was deleted under us makes every read fail at once: the engine stops
//! serving it at the first such failure and reports its id on the lost-port channel
//! ([`is_port_lost`], [`IoHandle::take_lost`]); the control plane then removes the port.

mod buf_ring;
pub mod capture;
mod core;
mod dns_forward;
mod epoll;
mod tunnel;
mod uring;

use crate::DatapathKind;
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
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

/// Whether a failed TAP read (`errno`) means the TAP is gone for good.
///
/// Measured on Linux 6.18 (tests/tests/faults.rs): when a pod's interface is deleted while we
/// hold its fd, the kernel detaches the fd from the device; from then on poll reports
/// `EPOLLERR` and every read fails with `EBADFD`, in both engines. That never clears, so
/// retrying would spin. Only "try again" errors are transient; every other read error of a
/// TAP is taken as its loss: a pod losing its port to an unknown error is recoverable (`port
/// add` again), a packet thread spinning on a dead descriptor is not. (A deleted pod
/// *namespace* is noticed elsewhere: see `node/lost.rs`.)
pub fn is_port_lost(errno: i32) -> bool {
    !matches!(errno, libc::EAGAIN | libc::EINTR | libc::ECANCELED)
}

/// A port's TAP as one worker sees it.
pub struct PortFds {
    /// The queue this worker reads, if the TAP has one for it (a TAP re-attached with fewer
    /// queues than workers leaves the last workers without).
    pub read: Option<Arc<OwnedFd>>,
    /// The queue this worker writes frames for the pod into (its own when it has one; a
    /// write is one frame and never blocks, so queues may be shared for writing).
    pub write: Arc<OwnedFd>,
}

/// What the control plane tells an engine.
pub enum Command {
    /// Start serving a port's TAP.
    AddPort(PortId, PortFds, Sender<()>),
    /// Stop serving a port (its fd is closed); acknowledged once the engine let go.
    DelPort(PortId, Sender<()>),
    /// Exit the engine thread.
    Shutdown,
}

/// One worker thread as the control plane sees it.
struct Worker {
    tx: Sender<Command>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

/// The control plane's handle on the running engine workers.
pub struct IoHandle {
    kind: &'static str,
    /// The engine's clock origin (see [`core::Core::now_ms`]).
    epoch: Instant,
    workers: std::sync::Mutex<Vec<Worker>>,
    count: usize,
    /// Ids of ports whose TAP died, as the workers found them (taken once by the control
    /// plane).
    lost: std::sync::Mutex<Option<LostRx>>,
    /// The running captures, tapped by every worker.
    capture: Arc<capture::CaptureHub>,
    /// The tunnel socket's address, when the node has an underlay.
    tunnel: Option<SocketAddrV4>,
}

/// Where the engine reports ports whose TAP died.
pub type LostRx = tokio::sync::mpsc::UnboundedReceiver<PortId>;

impl IoHandle {
    /// `uring` or `epoll`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// How many worker threads (and TAP queues per pod) there are.
    pub fn workers(&self) -> usize {
        self.count
    }

    /// The origin of the datapath's clock: `now_ms` handed to the datapath is the time
    /// elapsed since this instant, on the engine threads and in the control plane alike.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Sends `make(i)` to every worker i and waits (bounded) for each acknowledgement.
    fn broadcast(
        &self,
        what: &str,
        id: PortId,
        mut make: impl FnMut(usize, Sender<()>) -> Command,
    ) {
        let workers = self.workers.lock().expect("not poisoned");
        let mut acks = Vec::with_capacity(workers.len());
        for (i, w) in workers.iter().enumerate() {
            let (ack, done) = mpsc::channel();
            if w.tx.send(make(i, ack)).is_ok() {
                wake(w.wake.as_fd());
                acks.push((i, done));
            }
        }
        drop(workers);
        for (i, done) in acks {
            if done.recv_timeout(Duration::from_secs(5)).is_err() {
                warn!(
                    port = id.get(),
                    worker = i,
                    "I/O worker did not acknowledge the {what}"
                );
            }
        }
    }

    /// The running captures (see [`capture`]).
    pub fn capture(&self) -> &Arc<capture::CaptureHub> {
        &self.capture
    }

    /// The tunnel socket's address, when the node has an underlay.
    pub fn tunnel_addr(&self) -> Option<SocketAddrV4> {
        self.tunnel
    }

    /// The receiver of lost-port reports (`None` after the first call).
    pub fn take_lost(&self) -> Option<LostRx> {
        self.lost.lock().expect("not poisoned").take()
    }

    /// Hands a TAP's queues to the workers (queue i to worker i) and waits until they serve
    /// it. With fewer queues than workers, the workers past them only write to the TAP.
    pub fn add_port(&self, id: PortId, queues: Vec<OwnedFd>) {
        let queues: Vec<Arc<OwnedFd>> = queues.into_iter().map(Arc::new).collect();
        if queues.is_empty() {
            warn!(
                port = id.get(),
                "a port without any TAP queue was not handed to the engine"
            );
            return;
        }
        self.broadcast("new port", id, |i, ack| {
            let fds = PortFds {
                read: queues.get(i).cloned(),
                write: Arc::clone(&queues[i % queues.len()]),
            };
            Command::AddPort(id, fds, ack)
        });
    }

    /// Takes a TAP away from the workers and waits until none uses it.
    pub fn del_port(&self, id: PortId) {
        self.broadcast("port removal", id, |_, ack| Command::DelPort(id, ack));
    }

    /// Stops the worker threads and waits for them.
    pub fn shutdown(&self) {
        let mut workers = self.workers.lock().expect("not poisoned");
        for w in workers.iter() {
            if w.tx.send(Command::Shutdown).is_ok() {
                wake(w.wake.as_fd());
            }
        }
        for w in workers.iter_mut() {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
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
    /// Receive from the tunnel with UDP GRO. Off with several workers: GRO merges
    /// datagrams of one outer flow, i.e. of every inner flow from one peer, into one receive
    /// that would then go to one worker whole, mixing flows across workers.
    pub tunnel_gro: bool,
    /// See [`EngineOpts::uring_multishot`].
    pub uring_multishot: bool,
    /// See [`EngineOpts::uring_registered_buffers`].
    pub uring_registered_buffers: bool,
    /// Reports ports whose TAP died (this worker already stopped serving them).
    pub lost: tokio::sync::mpsc::UnboundedSender<PortId>,
    /// The running captures (shared by every worker and the control plane).
    pub capture: Arc<capture::CaptureHub>,
    /// This worker's batch size histogram (frames per loop with work).
    pub batches: prometheus_client::metrics::histogram::Histogram,
}

fn eventfd() -> Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let fd =
        EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).context("eventfd")?;
    Ok(OwnedFd::from(fd))
}

/// Wakes the engine blocked on the eventfd.
fn wake(fd: BorrowedFd<'_>) {
    let _ = nix::unistd::write(fd, &1u64.to_ne_bytes());
}

/// Sets or clears O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags & !OFlag::O_NONBLOCK
    };
    fcntl(fd, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// A UDP socket bound to `addr`; with `reuse_port` several may be (one per worker), and
/// the kernel spreads incoming datagrams over them by a hash of their addresses and ports.
fn bind_udp(addr: SocketAddrV4, reuse_port: bool) -> std::io::Result<UdpSocket> {
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if reuse_port {
        setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrIn::from(addr))?;
    Ok(UdpSocket::from(fd))
}

/// Steers each datagram arriving on the tunnel port to worker socket
/// `hash(inner IPv4 src, dst, L4 ports) % workers` (a classic BPF program on the
/// `SO_REUSEPORT` group; the kernel runs it with the UDP payload at offset 0: 8 bytes of
/// VXLAN header, 14 of inner Ethernet, then the inner IPv4 header, assumed without options
/// for the ports). A flow thus stays on one worker whatever the outer source port: the
/// kernel's own reuseport hash would put every datagram from one peer (a constant outer
/// 4-tuple) on the same socket. A datagram too short for the loads goes to socket 0.
/// Hand-written: no crate assembles classic BPF for SO_ATTACH_REUSEPORT_CBPF.
fn steer_by_inner_flow(sock: &UdpSocket, workers: u32) -> std::io::Result<()> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_K, BPF_LD, BPF_LDX, BPF_MEM, BPF_MOD, BPF_MUL, BPF_RET, BPF_RSH,
        BPF_ST, BPF_W, BPF_X, BPF_XOR,
    };
    const INNER_IP: u32 = 8 + 14;
    let op = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // A ^= M[0] with A saved in M[0] first is spelled: ST 0; <load A>; LDX MEM 0; XOR X.
    let prog = [
        op(BPF_LD | BPF_W | BPF_ABS, INNER_IP + 12), // A = inner source address
        op(BPF_ST, 0),
        op(BPF_LD | BPF_W | BPF_ABS, INNER_IP + 16), // A = inner destination address
        op(BPF_LDX | BPF_W | BPF_MEM, 0),
        op(BPF_ALU | BPF_XOR | BPF_X, 0),
        op(BPF_ST, 0),
        op(BPF_LD | BPF_W | BPF_ABS, INNER_IP + 20), // A = source port << 16 | dest port
        op(BPF_LDX | BPF_W | BPF_MEM, 0),
        op(BPF_ALU | BPF_XOR | BPF_X, 0),
        op(BPF_ST, 0), // fold the high half (the source port) onto the low one
        op(BPF_ALU | BPF_RSH | BPF_K, 16),
        op(BPF_LDX | BPF_W | BPF_MEM, 0),
        op(BPF_ALU | BPF_XOR | BPF_X, 0),
        // Multiplicative hashing: the product's upper half depends on every bit of the
        // lower one. (Plain folding is not enough: Linux picks connect() source ports of one
        // parity, so the low bit of the ports barely moves between a client's flows.)
        op(BPF_ALU | BPF_MUL | BPF_K, 0x9E37_79B1),
        op(BPF_ALU | BPF_RSH | BPF_K, 16),
        op(BPF_ALU | BPF_MOD | BPF_K, workers),
        op(BPF_RET | libc::BPF_A, 0),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // The kernel copies the program (`fprog.filter` points at `prog`, live across the call).
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::AttachReusePortCbpf, &fprog)?;
    Ok(())
}

fn tunnel_socket(underlay: Ipv4Addr, port: u16, reuse_port: bool) -> Result<UdpSocket> {
    // A previous instance killed a moment ago may still hold the port while the kernel
    // tears its io_uring down: retry for a few seconds before giving up.
    let addr = SocketAddrV4::new(underlay, port);
    let deadline = Instant::now() + Duration::from_secs(5);
    let sock = loop {
        match bind_udp(addr, reuse_port) {
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

/// How to run the engines.
#[derive(Debug, Clone)]
pub struct EngineOpts {
    pub kind: DatapathKind,
    pub underlay: Option<Ipv4Addr>,
    pub vxlan_port: u16,
    /// With `--dns-upstream`, queries the cluster DNS does not serve are forwarded there
    /// ([`dns_forward`]; each worker has its own pool of forwarder sockets).
    pub dns_upstream: Option<SocketAddrV4>,
    /// After traffic an engine polls this long before it sleeps (`--poll-us`).
    pub spin: Duration,
    /// Worker threads (`--workers`), at least 1.
    pub workers: usize,
    /// io_uring: multishot TAP reads where the kernel has them (`--uring-multishot`).
    pub uring_multishot: bool,
    /// io_uring: a registered buffer pool (`--uring-registered-buffers`).
    pub uring_registered_buffers: bool,
    /// The engines' batch size histograms (one per worker).
    pub batches: crate::metrics::EngineBatches,
}

/// Starts `opts.workers` engines of the kind `opts.kind` chooses, each on its own thread.
pub fn start(datapath: Arc<Datapath>, opts: &EngineOpts) -> Result<IoHandle> {
    let kind = opts.kind;
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
    let n = opts.workers.max(1);
    let epoch = Instant::now();
    let (lost_tx, lost_rx) = tokio::sync::mpsc::unbounded_channel();
    let capture = Arc::new(capture::CaptureHub::default());
    let mut workers = Vec::with_capacity(n);
    let mut tunnels = Vec::with_capacity(n);
    for _ in 0..n {
        tunnels.push(
            opts.underlay
                .map(|u| tunnel_socket(u, opts.vxlan_port, n > 1))
                .transpose()?,
        );
    }
    if let Some(Some(first)) = tunnels.first().filter(|_| n > 1) {
        match steer_by_inner_flow(first, n as u32) {
            Ok(()) => info!(
                workers = n,
                "tunnel datagrams steered to workers by inner flow"
            ),
            Err(e) => warn!(
                "SO_ATTACH_REUSEPORT_CBPF: {e}; tunnel datagrams spread by the kernel's hash \
                 of the outer addresses (one peer's traffic on one worker)"
            ),
        }
    }
    for (worker, tunnel) in tunnels.into_iter().enumerate() {
        let dns = opts
            .dns_upstream
            .map(dns_forward::DnsForwarder::new)
            .transpose()?;
        let wake_fd = Arc::new(eventfd()?);
        let (tx, rx) = mpsc::channel();
        let ctx = EngineCtx {
            datapath: datapath.clone(),
            rx,
            wake: wake_fd.clone(),
            tunnel,
            dns,
            epoch,
            spin: opts.spin,
            tunnel_gro: n == 1,
            uring_multishot: opts.uring_multishot,
            uring_registered_buffers: opts.uring_registered_buffers,
            lost: lost_tx.clone(),
            capture: Arc::clone(&capture),
            batches: opts.batches.worker(worker),
        };
        let thread = std::thread::Builder::new()
            .name(format!("vswitch-{chosen}-{worker}"))
            .spawn(move || {
                let res = if chosen == "uring" {
                    uring::run(ctx)
                } else {
                    epoll::run(ctx)
                };
                if let Err(e) = res {
                    tracing::error!(worker, "I/O engine stopped: {e:#}");
                }
            })?;
        workers.push(Worker {
            tx,
            wake: wake_fd,
            thread: Some(thread),
        });
    }
    if n > 1 {
        info!(
            workers = n,
            "{n} {chosen} workers, one TAP queue each per pod"
        );
    }
    Ok(IoHandle {
        kind: chosen,
        epoch,
        workers: std::sync::Mutex::new(workers),
        count: n,
        lost: std::sync::Mutex::new(Some(lost_rx)),
        capture,
        tunnel: opts.underlay.map(|u| SocketAddrV4::new(u, opts.vxlan_port)),
    })
}
