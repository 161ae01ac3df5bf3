//! The io_uring engine: one read in flight per TAP, writes submitted from the buffer the
//! frame was read into (no copy), many completions handled and many submissions made per
//! `io_uring_enter`. The tunnel socket is watched with a poll operation and drained with
//! non-blocking receives; so is the upstream DNS socket (`--dns-upstream`), with a timeout
//! operation armed while forwarded queries wait, to expire them.
//!
//! Buffer ownership: a pool buffer is either free, owned by one in-flight operation (its
//! index is in that operation's `user_data`), or being processed; it returns to the free
//! list only when its operation's completion has been reaped, so the kernel never writes
//! into a buffer we reuse.

use super::buf_ring::BufRing;
use super::dns_forward::{DnsForwarder, Recv, DNS_BATCH};
use super::{Command, EngineCtx, PortFds, TUNNEL_BATCH};
use anyhow::{Context, Result};
use io_uring::{opcode, squeue, types, IoUring, Probe};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;
use vswitch_datapath::{gro_append, DropReason, PacketBuf, PortId, Tables, Verdict};

const RING_ENTRIES: u32 = 1024;
/// Buffers in the pool (each [`vswitch_datapath::buf::BUF_CAPACITY`] bytes).
const POOL: usize = 512;
/// Reads armed together per TAP. More than one lets a busy port hand over several frames
/// per `io_uring_enter`. Reads armed together complete in order (inline at submission, then
/// from the file's wait queue in FIFO order); a new group is armed only when the previous
/// one has completed (see `arm_reads`), so frames keep their order.
const READS_PER_PORT: usize = 4;

const OP_TAP_READ: u64 = 1;
const OP_TAP_WRITE: u64 = 2;
const OP_WAKE: u64 = 3;
const OP_POLL_TUNNEL: u64 = 4;
const OP_CANCEL: u64 = 5;
const OP_POLL_DNS: u64 = 6;
const OP_DNS_TIMER: u64 = 7;
/// A multishot read on a TAP: its completions name the provided buffer they filled.
const OP_TAP_READ_MS: u64 = 8;

/// Buffer group id of the provided-buffer ring multishot TAP reads pick from.
const TAP_BGID: u16 = 1;
/// Slots of that ring (a power of two, at least the buffers it may hold).
const RING_SLOTS: u16 = 512;
/// Buffers kept in the provided ring at most; the rest of the pool stays in the free list
/// for the tunnel, DNS and frames in flight.
const RING_TARGET: usize = 256;

fn ud(op: u64, buf: u32, port: PortId) -> u64 {
    (op << 56) | ((u64::from(buf) & 0xff_ffff) << 32) | u64::from(port)
}

fn ud_parts(ud: u64) -> (u64, u32, PortId) {
    (ud >> 56, ((ud >> 32) & 0xff_ffff) as u32, ud as u32)
}

/// Checks that io_uring can be set up and supports every operation this engine uses.
pub fn probe() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring probe failed: {e}"))?;
    for (code, name) in [
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::Timeout::CODE, "TIMEOUT"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("the kernel lacks IORING_OP_{name}"));
        }
    }
    Ok(())
}

struct PortState {
    fds: PortFds,
    /// `user_data` of the reads in flight, oldest first.
    reads: Vec<u64>,
}

struct Engine {
    ctx: EngineCtx,
    ring: IoUring,
    /// Multishot TAP reads from a provided-buffer ring, where the kernel has them (6.7+);
    /// declared after `ring` so that it is dropped after the ring.
    ms: Option<Multishot>,
    bufs: Vec<PacketBuf>,
    free: Vec<u32>,
    ports: HashMap<PortId, PortState>,
    wake_val: Box<u64>,
    tunnel: super::tunnel::TunnelTx,
    tunnel_rx: super::tunnel::TunnelRx,
    dns: Option<DnsForwarder>,
    /// The period of the DNS expiry timer (boxed: the kernel reads it while armed).
    dns_timer: Box<types::Timespec>,
    dns_timer_armed: bool,
    /// The table snapshot and the clock for the completions being handled: loaded once per
    /// batch, not per frame.
    batch_tables: Arc<Tables>,
    batch_now: u64,
    /// Each pool buffer's registered region `(start address, length)`, when the pool is
    /// registered with the ring (`IORING_REGISTER_BUFFERS`): TAP reads and writes then use
    /// `READ_FIXED`/`WRITE_FIXED` with the buffer's index, and the kernel skips mapping the
    /// user memory per operation. Empty when registration failed (plain READ/WRITE then).
    fixed: Vec<(usize, usize)>,
}

/// The provided-buffer ring of multishot TAP reads and how many pool buffers it holds.
struct Multishot {
    ring: BufRing,
    held: usize,
}

/// Runs the engine until [`Command::Shutdown`].
pub fn run(mut ctx: EngineCtx) -> Result<()> {
    // One thread submits, and completions are reaped only when it asks for them: the
    // kernel then neither interrupts the engine to post completions nor runs that work on
    // other threads (6.1+). Older kernels get a plain ring.
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .or_else(|e| {
            tracing::info!("io_uring: DEFER_TASKRUN unavailable ({e}); using a plain ring");
            IoUring::new(RING_ENTRIES)
        })
        .context("io_uring_setup")?;
    let dns = ctx.dns.take();
    let mut e = Engine {
        ctx,
        ring,
        ms: None,
        bufs: (0..POOL).map(|_| PacketBuf::new()).collect(),
        free: (0..POOL as u32).rev().collect(),
        ports: HashMap::new(),
        wake_val: Box::new(0),
        tunnel: Default::default(),
        tunnel_rx: Default::default(),
        dns,
        dns_timer: Box::new(types::Timespec::new().sec(1)),
        dns_timer_armed: false,
        batch_tables: Arc::default(),
        batch_now: 0,
        fixed: Vec::new(),
    };
    e.register_pool();
    e.setup_multishot();
    if let Some(sock) = e.ctx.tunnel.as_ref().filter(|_| e.ctx.tunnel_gro) {
        super::tunnel::TunnelRx::enable_gro(sock);
    }
    e.arm_wake();
    e.arm_tunnel_poll();
    e.arm_dns_poll();
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(RING_ENTRIES as usize);
    let mut last_work = Instant::now();
    let spin = e.ctx.spin;
    let zero = types::Timespec::new();
    let spin_args = types::SubmitArgs::new().timespec(&zero);
    loop {
        e.arm_reads();
        e.dns_expiry();
        // Right after traffic, poll for a short while before sleeping: a request's answer
        // usually follows within microseconds, and a sleep/wakeup pair costs more than that.
        if last_work.elapsed() < spin {
            loop {
                // An enter with GETEVENTS and no waiting runs pending task work, which is
                // what turns a ready TAP or socket into a completion.
                let _ = e.ring.submitter().submit_with_args(1, &spin_args);
                if !e.ring.completion().is_empty() || last_work.elapsed() >= spin {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        match e.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => continue,
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {}
            Err(err) => return Err(err).context("io_uring_enter"),
        }
        cqes.clear();
        cqes.extend(
            e.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        if !cqes.is_empty() {
            last_work = Instant::now();
        }
        e.batch_tables = Arc::clone(&e.ctx.datapath.tables());
        e.batch_now = e.ctx.now_ms();
        for &(user_data, res, flags) in &cqes {
            if !e.complete(user_data, res, flags)? {
                e.teardown();
                return Ok(());
            }
        }
        // Datagrams for the tunnel queued by this batch leave in one `sendmmsg`.
        if let Some(sock) = &e.ctx.tunnel {
            e.tunnel.flush(&e.ctx.datapath, sock);
        }
    }
}

impl Engine {
    /// Cancels every operation in flight and reaps them, so that no TAP or socket outlives
    /// the engine inside the ring's asynchronous teardown (a restarted daemon must be able to
    /// bind the tunnel port and recreate the pods' interfaces at once).
    fn teardown(&mut self) {
        let _ = self.ring.submit();
        let timeout = types::Timespec::new().sec(1);
        if let Err(e) = self
            .ring
            .submitter()
            .register_sync_cancel(Some(timeout), types::CancelBuilder::any())
        {
            tracing::debug!("io_uring sync cancel: {e}");
        }
        self.ring.completion().for_each(drop);
        if let Some(ms) = &self.ms {
            ms.ring.unregister(&self.ring);
        }
        if !self.fixed.is_empty() {
            let _ = self.ring.submitter().unregister_buffers();
            self.fixed.clear();
        }
        self.ports.clear();
    }

    /// Switches TAP reads to multishot reads from a provided-buffer ring when the kernel
    /// has both (`--uring-multishot off` keeps one-shot reads).
    fn setup_multishot(&mut self) {
        if !self.ctx.uring_multishot {
            tracing::info!("io_uring: multishot TAP reads off (--uring-multishot off)");
            return;
        }
        let mut probe = Probe::new();
        if self.ring.submitter().register_probe(&mut probe).is_err()
            || !probe.is_supported(opcode::ReadMulti::CODE)
        {
            tracing::info!("io_uring: no READ_MULTISHOT (Linux 6.7+); one-shot TAP reads");
            return;
        }
        match BufRing::new(&self.ring, RING_SLOTS, TAP_BGID) {
            Ok(ring) => {
                tracing::info!("io_uring: multishot TAP reads from a provided-buffer ring");
                self.ms = Some(Multishot { ring, held: 0 });
            }
            Err(e) => tracing::info!("io_uring: no provided-buffer ring ({e}); one-shot reads"),
        }
    }

    /// Hands free pool buffers to the provided ring until it holds [`RING_TARGET`].
    fn top_up_ring(&mut self) {
        let Some(ms) = &mut self.ms else { return };
        let mut added = false;
        while ms.held < RING_TARGET && self.free.len() > 64 {
            let Some(b) = self.free.pop() else { break };
            let region = self.bufs[b as usize].tap_read_region();
            ms.ring
                .push(region.as_mut_ptr(), region.len() as u32, b as u16);
            ms.held += 1;
            added = true;
        }
        if added {
            ms.ring.publish();
        }
    }

    /// Registers every pool buffer's I/O region with the ring (see [`Engine::fixed`]).
    /// `--uring-registered-buffers off` skips it.
    fn register_pool(&mut self) {
        if !self.ctx.uring_registered_buffers {
            tracing::info!("io_uring: registered buffers off (--uring-registered-buffers off)");
            return;
        }
        let iovecs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| {
                let r = b.io_region();
                libc::iovec {
                    iov_base: r.as_mut_ptr().cast(),
                    iov_len: r.len(),
                }
            })
            .collect();
        // SAFETY: every iovec points into a pool buffer's boxed storage, which is never
        // moved or freed while the ring lives: the pool is a Vec that is never resized, and
        // `ring` is declared before `bufs` in `Engine`, so it is dropped (and the buffers
        // unregistered) first; `teardown` unregisters them explicitly too.
        match unsafe { self.ring.submitter().register_buffers(&iovecs) } {
            Ok(()) => {
                self.fixed = iovecs
                    .iter()
                    .map(|v| (v.iov_base as usize, v.iov_len))
                    .collect();
            }
            Err(e) => tracing::info!("io_uring: buffers not registered ({e}); plain reads"),
        }
    }

    /// The fixed-buffer index of pool buffer `b` if `region` lies inside its registered
    /// region.
    fn fixed_index(&self, b: u32, ptr: *const u8, n: usize) -> Option<u16> {
        let &(start, len) = self.fixed.get(b as usize)?;
        let p = ptr as usize;
        (p >= start && p + n <= start + len).then_some(b as u16)
    }

    /// Queues `entry`, flushing the submission queue first when it is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every entry we build points into memory that stays valid until its
            // completion is reaped: pool buffers (boxed, never freed while in flight),
            // `wake_val` or `dns_timer` (boxed, live as long as the engine, whose teardown
            // cancels and reaps everything) or nothing at all.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            let _ = self.ring.submit();
        }
    }

    fn arm_wake(&mut self) {
        let ptr = (&mut *self.wake_val as *mut u64).cast::<u8>();
        let fd = self.ctx.wake.as_raw_fd();
        let entry = opcode::Read::new(types::Fd(fd), ptr, 8)
            .build()
            .user_data(ud(OP_WAKE, 0, 0));
        self.push(&entry);
    }

    fn arm_tunnel_poll(&mut self) {
        if let Some(sock) = &self.ctx.tunnel {
            let entry = opcode::PollAdd::new(types::Fd(sock.as_raw_fd()), libc::POLLIN as u32)
                .build()
                .user_data(ud(OP_POLL_TUNNEL, 0, 0));
            self.push(&entry);
        }
    }

    fn arm_dns_poll(&mut self) {
        if let Some(fwd) = &self.dns {
            let fd = fwd.socket().as_raw_fd();
            let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .build()
                .user_data(ud(OP_POLL_DNS, 0, 0));
            self.push(&entry);
        }
    }

    /// Expires forwarded DNS queries, and keeps a timer armed while some wait so that they
    /// expire without other traffic.
    fn dns_expiry(&mut self) {
        let now = self.ctx.now_ms();
        let Some(fwd) = &mut self.dns else { return };
        fwd.expire(&self.ctx.datapath, now);
        if fwd.has_pending() && !self.dns_timer_armed {
            let entry = opcode::Timeout::new(&*self.dns_timer as *const types::Timespec)
                .build()
                .user_data(ud(OP_DNS_TIMER, 0, 0));
            self.dns_timer_armed = true;
            self.push(&entry);
        }
    }

    /// Takes up to [`DNS_BATCH`] datagrams from the upstream DNS socket; responses go to
    /// the pods' TAPs.
    fn drain_dns(&mut self) {
        let dp = self.ctx.datapath.clone();
        let tables = dp.tables();
        for _ in 0..DNS_BATCH {
            let Some(b) = self.free.pop() else { break };
            let Some(fwd) = &mut self.dns else {
                self.free.push(b);
                break;
            };
            match fwd.recv(&dp, &tables, &mut self.bufs[b as usize]) {
                Recv::Reply(v) => self.carry_out(b, v),
                Recv::Ignored => self.free.push(b),
                Recv::Empty => {
                    self.free.push(b);
                    break;
                }
            }
        }
    }

    /// Arms [`READS_PER_PORT`] reads on every port that has none in flight, as far as
    /// buffers last. Only a port with no read pending gets new ones: a read armed while an
    /// older one waits for data could run inline and take a newer frame first.
    fn arm_reads(&mut self) {
        if self.ms.is_some() {
            self.arm_multishot_reads();
            return;
        }
        // Every read region is a registered one when the pool is registered.
        let fixed = !self.fixed.is_empty();
        for (id, port) in self.ports.iter_mut() {
            let Some(fd) = port.fds.read.as_ref().map(|f| f.as_raw_fd()) else {
                continue; // this worker only writes to the port
            };
            if !port.reads.is_empty() {
                continue;
            }
            while port.reads.len() < READS_PER_PORT {
                let Some(b) = self.free.pop() else { return };
                let region = self.bufs[b as usize].tap_read_region();
                let (ptr, len) = (region.as_mut_ptr(), region.len() as u32);
                let user_data = ud(OP_TAP_READ, b, *id);
                port.reads.push(user_data);
                let entry = if fixed {
                    opcode::ReadFixed::new(types::Fd(fd), ptr, len, b as u16).build()
                } else {
                    opcode::Read::new(types::Fd(fd), ptr, len).build()
                }
                .user_data(user_data);
                // SAFETY: as in `push`: the pool buffer stays allocated and unused until
                // this read's completion is reaped.
                while unsafe { self.ring.submission().push(&entry) }.is_err() {
                    let _ = self.ring.submit();
                }
            }
        }
    }

    /// Keeps one multishot read armed on every port this worker reads, once the provided
    /// ring has buffers (a read ends with ENOBUFS when the ring runs dry, and is re-armed
    /// here after the top-up). Completions come in the order the frames were read.
    fn arm_multishot_reads(&mut self) {
        self.top_up_ring();
        let Some(ms) = &self.ms else { return };
        if ms.held == 0 {
            return;
        }
        let bgid = ms.ring.bgid();
        let mut entries = Vec::new();
        for (id, port) in self.ports.iter_mut() {
            let Some(fd) = port.fds.read.as_ref().map(|f| f.as_raw_fd()) else {
                continue;
            };
            if !port.reads.is_empty() {
                continue;
            }
            let user_data = ud(OP_TAP_READ_MS, 0, *id);
            port.reads.push(user_data);
            entries.push(
                opcode::ReadMulti::new(types::Fd(fd), 0, bgid)
                    .build()
                    .user_data(user_data),
            );
        }
        for entry in entries {
            // Multishot reads point at no memory of ours: the kernel picks ring buffers.
            self.push(&entry);
        }
    }

    /// A completion of a multishot TAP read: the buffer it filled (if any) is ours again.
    fn complete_multishot(&mut self, user_data: u64, res: i32, flags: u32, port: PortId) {
        let more = io_uring::cqueue::more(flags);
        let live = match self.ports.get_mut(&port) {
            Some(p) => match p.reads.iter().position(|u| *u == user_data) {
                Some(i) => {
                    if !more {
                        p.reads.remove(i); // ended (ENOBUFS, cancel, error): re-armed later
                    }
                    true
                }
                None => false,
            },
            None => false,
        };
        // A multishot read ends on ENOBUFS (the ring ran dry: re-armed later) or a cancel;
        // any other error means the TAP is gone (see `is_port_lost`).
        if live && !more && res < 0 && res != -libc::ENOBUFS && super::is_port_lost(-res) {
            if let Some(b) = io_uring::cqueue::buffer_select(flags) {
                if let Some(ms) = &mut self.ms {
                    ms.held = ms.held.saturating_sub(1);
                }
                if (b as usize) < self.bufs.len() {
                    self.free.push(u32::from(b));
                }
            }
            self.port_lost(port, -res);
            return;
        }
        let Some(bid) = io_uring::cqueue::buffer_select(flags) else {
            return; // no buffer consumed
        };
        if let Some(ms) = &mut self.ms {
            ms.held = ms.held.saturating_sub(1);
        }
        let b = u32::from(bid);
        if b as usize >= self.bufs.len() {
            return; // not one of ours: cannot happen, never index out of range
        }
        if !live || res <= 0 {
            self.free.push(b);
            return;
        }
        let buf = &mut self.bufs[b as usize];
        if !buf.set_tap_read_len(res as usize) {
            self.ctx.datapath.count_drop(DropReason::BadVnetHdr);
            self.free.push(b);
            return;
        }
        let dp = &self.ctx.datapath;
        let v = dp.from_port(&self.batch_tables, port, buf, self.batch_now);
        self.carry_out(b, v);
    }

    /// Handles one completion; false means shut down.
    fn complete(&mut self, user_data: u64, res: i32, flags: u32) -> Result<bool> {
        let (op, b, port) = ud_parts(user_data);
        match op {
            OP_TAP_READ_MS => self.complete_multishot(user_data, res, flags, port),
            OP_TAP_READ => {
                let live = match self.ports.get_mut(&port) {
                    Some(p) => match p.reads.iter().position(|u| *u == user_data) {
                        Some(i) => {
                            p.reads.remove(i);
                            true
                        }
                        None => false,
                    },
                    None => false,
                };
                if !live || res <= 0 {
                    self.free.push(b);
                    if live && res < 0 && super::is_port_lost(-res) {
                        self.port_lost(port, -res);
                    }
                    return Ok(true);
                }
                let buf = &mut self.bufs[b as usize];
                if !buf.set_tap_read_len(res as usize) {
                    self.ctx.datapath.count_drop(DropReason::BadVnetHdr);
                    self.free.push(b);
                    return Ok(true);
                }
                let dp = &self.ctx.datapath;
                let v = dp.from_port(&self.batch_tables, port, buf, self.batch_now);
                self.carry_out(b, v);
            }
            OP_TAP_WRITE => {
                self.free.push(b);
                if res < 0 {
                    self.ctx.datapath.count_drop(DropReason::TxError);
                    tracing::debug!(port, errno = -res, "TAP write failed");
                }
            }
            OP_WAKE => {
                while let Ok(cmd) = self.ctx.rx.try_recv() {
                    if !self.command(cmd) {
                        return Ok(false);
                    }
                }
                self.arm_wake();
            }
            OP_POLL_TUNNEL => {
                self.drain_tunnel();
                self.arm_tunnel_poll();
            }
            OP_POLL_DNS => {
                self.drain_dns();
                self.arm_dns_poll();
            }
            OP_DNS_TIMER => self.dns_timer_armed = false, // expiry runs every loop

            _ => {} // OP_CANCEL and anything unexpected: nothing owned.
        }
        Ok(true)
    }

    fn command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::AddPort(id, fds, ack) => {
                // Blocking mode: io_uring then waits for readiness itself instead of
                // completing reads with EAGAIN.
                if let Some(fd) = &fds.read {
                    let _ = super::set_nonblocking(fd.as_raw_fd(), false);
                }
                self.ports.insert(
                    id,
                    PortState {
                        fds,
                        reads: Vec::with_capacity(READS_PER_PORT),
                    },
                );
                let _ = ack.send(());
            }
            Command::DelPort(id, ack) => {
                self.remove_port(id);
                let _ = ack.send(());
            }
            Command::Shutdown => return false,
        }
        true
    }

    /// Stops serving port `id`: its reads in flight are cancelled (their completions find
    /// no port and free their buffers) and its fd is closed.
    fn remove_port(&mut self, id: PortId) {
        if let Some(p) = self.ports.remove(&id) {
            for read in p.reads {
                let entry = opcode::AsyncCancel::new(read)
                    .build()
                    .user_data(ud(OP_CANCEL, 0, id));
                self.push(&entry);
            }
            let _ = self.ring.submit();
            // Dropping the fd here is safe: an operation in flight holds its own
            // reference to the file, and port ids are never reused.
        }
    }

    /// A read of port `id` failed with `errno`, which says its TAP is gone: the port is no
    /// longer served (re-arming would fail again at once, a spin) and the control plane is
    /// told.
    fn port_lost(&mut self, id: PortId, errno: i32) {
        tracing::debug!(
            port = id,
            errno,
            "TAP lost: read: {}",
            std::io::Error::from_raw_os_error(errno)
        );
        self.remove_port(id);
        let _ = self.ctx.lost.send(id);
    }

    /// Carries out a verdict for pool buffer `b`, which it consumes.
    fn carry_out(&mut self, b: u32, v: Verdict) {
        match v {
            Verdict::ToPort(dst) => {
                let Some(fd) = self.ports.get(&dst).map(|p| p.fds.write.as_raw_fd()) else {
                    self.ctx.datapath.count_drop(DropReason::TxError);
                    self.free.push(b);
                    return;
                };
                let region = self.bufs[b as usize].tap_write_region();
                let (ptr, len) = (region.as_ptr(), region.len() as u32);
                let entry = match self.fixed_index(b, ptr, len as usize) {
                    Some(i) => opcode::WriteFixed::new(types::Fd(fd), ptr, len, i).build(),
                    None => opcode::Write::new(types::Fd(fd), ptr, len).build(),
                }
                .user_data(ud(OP_TAP_WRITE, b, dst));
                self.push(&entry);
            }
            Verdict::ToTunnel { dst, .. } => {
                match &self.ctx.tunnel {
                    Some(sock) => {
                        self.tunnel
                            .send(&self.ctx.datapath, sock, &self.bufs[b as usize], dst)
                    }
                    None => self.ctx.datapath.count_drop(DropReason::TxError),
                }
                self.free.push(b);
            }
            Verdict::DnsForward { port, client } => {
                let now = self.ctx.now_ms();
                match &mut self.dns {
                    Some(fwd) => {
                        let frame = self.bufs[b as usize].frame();
                        fwd.forward(&self.ctx.datapath, port, client, frame, now);
                    }
                    None => self.ctx.datapath.count_drop(DropReason::DnsUpstreamFailed),
                }
                self.free.push(b);
            }
            Verdict::Drop(_) => self.free.push(b),
        }
    }

    /// Receives up to [`TUNNEL_BATCH`] datagrams from the tunnel socket. Frames for pods are
    /// held back one step so that consecutive segments of a flow merge (GRO) into one
    /// super-frame before the TAP write.
    fn drain_tunnel(&mut self) {
        let dp = self.ctx.datapath.clone();
        let tables = dp.tables();
        let now = self.ctx.now_ms();
        let mut held: Option<(u32, PortId)> = None;
        let mut i = 0;
        while i < TUNNEL_BATCH || self.tunnel_rx.pending() {
            i += 1;
            let Some(b) = self.free.pop() else { break };
            let Some(sock) = &self.ctx.tunnel else {
                self.free.push(b);
                break;
            };
            let Some(src) = self.tunnel_rx.next(sock, &mut self.bufs[b as usize]) else {
                self.free.push(b);
                break;
            };
            let v = dp.from_tunnel(&tables, src, &mut self.bufs[b as usize], now);
            let Verdict::ToPort(p) = v else {
                self.carry_out(b, v);
                continue;
            };
            if let Some((hb, hp)) = held {
                if hp == p {
                    let (held_buf, next) = two_mut(&mut self.bufs, hb, b);
                    if gro_append(held_buf, next) {
                        self.free.push(b);
                        continue;
                    }
                }
                self.carry_out(hb, Verdict::ToPort(hp));
            }
            held = Some((b, p));
        }
        if let Some((hb, hp)) = held {
            self.carry_out(hb, Verdict::ToPort(hp));
        }
    }
}

/// Two distinct elements of `v`, both mutable.
fn two_mut(v: &mut [PacketBuf], a: u32, b: u32) -> (&mut PacketBuf, &mut PacketBuf) {
    let (a, b) = (a as usize, b as usize);
    assert_ne!(a, b, "a pool buffer is never held twice");
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}
