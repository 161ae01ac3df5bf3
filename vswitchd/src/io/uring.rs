//! The io_uring back end: one read in flight per TAP, writes submitted from the buffer the
//! frame was read into (no copy), many completions handled and many submissions made per
//! `io_uring_enter`. The tunnel socket is watched with a poll operation and drained with
//! non-blocking receives; so is the upstream DNS socket (`--dns-upstream`), with a timeout
//! operation armed while forwarded queries wait, to expire them.
//!
//! The forwarding logic is the [`Core`]'s; this file only arms operations and hands their
//! completions to it. Buffer ownership: a pool buffer is either free, owned by one
//! in-flight operation (its index is in that operation's `user_data`), or being processed;
//! it returns to the free list only when its operation's completion has been reaped, so the
//! kernel never writes into a buffer we reuse.

use super::buf_ring::BufRing;
use super::core::{self, Backend, Core, Port, Wait, Written};
use super::{EngineCtx, PortFds};
use anyhow::{Context, Result};
use io_uring::{opcode, squeue, types, IoUring, Probe};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use vswitch_datapath::{Direction, DropReason, PortId};

const RING_ENTRIES: u32 = 1024;
/// Buffers in the pool (each [`vswitch_datapath::buf::BUF_CAPACITY`] bytes).
const POOL: usize = 512;
/// Reads armed together per TAP at most. More than one lets a busy port hand over several
/// frames per `io_uring_enter`. Reads armed together complete in order (inline at
/// submission, then from the file's wait queue in FIFO order); a new group is armed only
/// when the previous one has completed (see `arm_reads`), so frames keep their order.
const READS_PER_PORT: usize = 4;
/// Pool buffers one-shot TAP reads never take: the tunnel, the DNS socket and frames in
/// flight always find a buffer, however many ports are attached (with the whole pool
/// pinned by idle ports' reads, the tunnel would find none and its poll would spin).
const RESERVE: usize = 64;

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
/// The port field of the user data of operations that are not about a port.
const NO_PORT: PortId = PortId::new(0);

fn ud(op: u64, buf: u32, port: PortId) -> u64 {
    (op << 56) | ((u64::from(buf) & 0xff_ffff) << 32) | u64::from(port.get())
}

fn ud_parts(ud: u64) -> (u64, u32, PortId) {
    (
        ud >> 56,
        ((ud >> 32) & 0xff_ffff) as u32,
        PortId::new(ud as u32),
    )
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

/// The reads in flight on one port: their `user_data`, oldest first.
type Reads = Vec<u64>;

/// One-shot reads armed per port when this worker reads `ports` ports: [`READS_PER_PORT`]
/// while the pool (less [`RESERVE`]) has room for that many on every port, fewer as ports
/// are added, never less than one. A read waits in the kernel until its port has a frame, so
/// an idle port pins the buffers of its group: with a fixed group of 4, the pool ran out at
/// about 112 ports and the ports attached after never got a read. With this depth every
/// port keeps a read armed up to `POOL - RESERVE` (448) ports per worker.
fn reads_per_port(ports: usize) -> usize {
    ((POOL - RESERVE) / ports.max(1)).clamp(1, READS_PER_PORT)
}

/// The io_uring back end (see the module docs). The ring is declared first: it is dropped
/// before the provided-buffer ring, and (see [`core`]) before the pool it points into.
struct UringBackend {
    ring: IoUring,
    /// Multishot TAP reads from a provided-buffer ring, where the kernel has them (6.7+).
    ms: Option<Multishot>,
    wake_val: Box<u64>,
    /// The period of the DNS expiry timer (boxed: the kernel reads it while armed).
    dns_timer: Box<types::Timespec>,
    dns_timer_armed: bool,
    /// Each pool buffer's registered region `(start address, length)`, when the pool is
    /// registered with the ring (`IORING_REGISTER_BUFFERS`): TAP reads and writes then use
    /// `READ_FIXED`/`WRITE_FIXED` with the buffer's index, and the kernel skips mapping the
    /// user memory per operation. Empty when registration failed (plain READ/WRITE then).
    fixed: Vec<(usize, usize)>,
    /// The one-shot read depth ([`reads_per_port`]) of the last `arm_reads`: when it falls,
    /// the reads over the new depth are cancelled so that their buffers serve other ports.
    depth: usize,
    /// The completions the last wait reaped: `(user_data, result, flags)`.
    cqes: Vec<(u64, i32, u32)>,
    /// A zero timeout, for polling enters.
    zero: types::Timespec,
}

/// The provided-buffer ring of multishot TAP reads and how many pool buffers it holds.
struct Multishot {
    ring: BufRing,
    held: usize,
}

/// Runs the engine until [`super::Command::Shutdown`].
pub fn run(ctx: EngineCtx) -> Result<()> {
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
    let (multishot, registered) = (ctx.uring_multishot, ctx.uring_registered_buffers);
    let mut core: Core<Reads> = Core::new(ctx, POOL);
    let mut be = UringBackend {
        ring,
        ms: None,
        wake_val: Box::new(0),
        dns_timer: Box::new(types::Timespec::new().sec(1)),
        dns_timer_armed: false,
        fixed: Vec::new(),
        depth: READS_PER_PORT,
        cqes: Vec::with_capacity(RING_ENTRIES as usize),
        zero: types::Timespec::new(),
    };
    be.register_pool(&mut core, registered);
    be.setup_multishot(multishot);
    be.arm_wake(&core);
    be.arm_tunnel_poll(&core);
    be.arm_dns_poll(&core);
    core::run(core, be)
}

impl Backend for UringBackend {
    type Port = Reads;

    fn add_port(&mut self, _id: PortId, fds: &PortFds) -> Result<Reads> {
        // Blocking mode: io_uring then waits for readiness itself instead of completing
        // reads with EAGAIN.
        if let Some(fd) = &fds.read {
            let _ = super::set_nonblocking(fd.as_fd(), false);
        }
        Ok(Vec::with_capacity(READS_PER_PORT))
    }

    /// Cancels the port's reads in flight (their completions find no port and free their
    /// buffers); its fd closes when dropped here, which is safe: an operation in flight
    /// holds its own reference to the file, and port ids are never reused.
    fn del_port(&mut self, id: PortId, port: Port<Reads>) {
        for read in port.extra {
            let entry = opcode::AsyncCancel::new(read)
                .build()
                .user_data(ud(OP_CANCEL, 0, id));
            self.push(&entry);
        }
        let _ = self.ring.submit();
    }

    fn write_tap(&mut self, fd: BorrowedFd<'_>, b: u32, frame: &[u8], dst: PortId) -> Written {
        let (ptr, len) = (frame.as_ptr(), frame.len() as u32);
        let fd = types::Fd(fd.as_raw_fd());
        let entry = match self.fixed_index(b, ptr, len as usize) {
            Some(i) => opcode::WriteFixed::new(fd, ptr, len, i).build(),
            None => opcode::Write::new(fd, ptr, len).build(),
        }
        .user_data(ud(OP_TAP_WRITE, b, dst));
        self.push(&entry);
        Written::InFlight
    }

    /// Arms reads, and keeps a timer armed while forwarded DNS queries wait, so that they
    /// expire without other traffic.
    fn prepare(&mut self, core: &mut Core<Reads>) {
        self.arm_reads(core);
        if core.dns.as_ref().is_some_and(|f| f.has_pending()) && !self.dns_timer_armed {
            let entry = opcode::Timeout::new(&*self.dns_timer as *const types::Timespec)
                .build()
                .user_data(ud(OP_DNS_TIMER, 0, NO_PORT));
            self.dns_timer_armed = true;
            self.push(&entry);
        }
    }

    fn wait(&mut self, wait: Wait) -> Result<usize> {
        self.cqes.clear();
        match wait {
            // An enter with GETEVENTS and no waiting runs pending task work, which is what
            // turns a ready TAP or socket into a completion.
            Wait::Poll => {
                let args = types::SubmitArgs::new().timespec(&self.zero);
                let _ = self.ring.submitter().submit_with_args(1, &args);
            }
            Wait::Sleep => match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::EINTR) => return Ok(0),
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {}
                Err(err) => return Err(err).context("io_uring_enter"),
            },
        }
        self.cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        Ok(self.cqes.len())
    }

    fn dispatch(&mut self, core: &mut Core<Reads>) -> Result<bool> {
        for i in 0..self.cqes.len() {
            let (user_data, res, flags) = self.cqes[i];
            if !self.complete(core, user_data, res, flags)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Cancels every operation in flight and reaps them, so that no TAP or socket outlives
    /// the engine inside the ring's asynchronous teardown (a restarted daemon must be able to
    /// bind the tunnel port and recreate the pods' interfaces at once).
    fn teardown(&mut self, core: &mut Core<Reads>) {
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
        core.ports.clear();
    }
}

impl UringBackend {
    /// Switches TAP reads to multishot reads from a provided-buffer ring when the kernel
    /// has both (`--uring-multishot off` keeps one-shot reads).
    fn setup_multishot(&mut self, wanted: bool) {
        if !wanted {
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
    fn top_up_ring(&mut self, core: &mut Core<Reads>) {
        let Some(ms) = &mut self.ms else { return };
        let mut added = false;
        while ms.held < RING_TARGET && core.free.len() > 64 {
            let Some(b) = core.free.pop() else { break };
            let region = core.bufs[b as usize].tap_read_region();
            ms.ring
                .push(region.as_mut_ptr(), region.len() as u32, b as u16);
            ms.held += 1;
            added = true;
        }
        if added {
            ms.ring.publish();
        }
    }

    /// Registers every pool buffer's I/O region with the ring (see
    /// [`UringBackend::fixed`]). `--uring-registered-buffers off` skips it.
    fn register_pool(&mut self, core: &mut Core<Reads>, wanted: bool) {
        if !wanted {
            tracing::info!("io_uring: registered buffers off (--uring-registered-buffers off)");
            return;
        }
        let iovecs: Vec<libc::iovec> = core
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
        // moved or freed while the ring lives: the pool is a boxed slice that is never
        // resized, and the engine drops its back end (the ring, which unregisters the
        // buffers) before its core (see `core::Engine`); `teardown` unregisters them
        // explicitly too.
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
            // `wake_val` or `dns_timer` (boxed, live as long as the back end, whose teardown
            // cancels and reaps everything) or nothing at all.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            let _ = self.ring.submit();
        }
    }

    fn arm_wake(&mut self, core: &Core<Reads>) {
        let ptr = (&mut *self.wake_val as *mut u64).cast::<u8>();
        let fd = core.wake.as_raw_fd();
        let entry = opcode::Read::new(types::Fd(fd), ptr, 8)
            .build()
            .user_data(ud(OP_WAKE, 0, NO_PORT));
        self.push(&entry);
    }

    fn arm_tunnel_poll(&mut self, core: &Core<Reads>) {
        if let Some(sock) = &core.tunnel {
            let entry = opcode::PollAdd::new(types::Fd(sock.as_raw_fd()), libc::POLLIN as u32)
                .build()
                .user_data(ud(OP_POLL_TUNNEL, 0, NO_PORT));
            self.push(&entry);
        }
    }

    fn arm_dns_poll(&mut self, core: &Core<Reads>) {
        if let Some(fwd) = &core.dns {
            let fd = fwd.poll_fd().as_raw_fd();
            let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .build()
                .user_data(ud(OP_POLL_DNS, 0, NO_PORT));
            self.push(&entry);
        }
    }

    /// Arms [`reads_per_port`] reads on every port that has none in flight, as far as
    /// buffers last beyond [`RESERVE`]. Only a port with no read pending gets new ones: a
    /// read armed while an older one waits for data could run inline and take a newer frame
    /// first. When the depth falls (ports were added), the reads beyond it are cancelled
    /// (the newest of each group: the oldest stay armed, so frames keep their order).
    fn arm_reads(&mut self, core: &mut Core<Reads>) {
        if self.ms.is_some() {
            self.arm_multishot_reads(core);
            return;
        }
        let readers = core.ports.values().filter(|p| p.fds.read.is_some()).count();
        let depth = reads_per_port(readers);
        if depth < self.depth {
            for (id, port) in core.ports.iter() {
                for &read in port.extra.iter().skip(depth) {
                    let entry = opcode::AsyncCancel::new(read)
                        .build()
                        .user_data(ud(OP_CANCEL, 0, *id));
                    self.push(&entry);
                }
            }
        }
        self.depth = depth;
        // Every read region is a registered one when the pool is registered.
        let fixed = !self.fixed.is_empty();
        for (id, port) in core.ports.iter_mut() {
            let Some(fd) = port.fds.read.as_ref().map(|f| f.as_raw_fd()) else {
                continue; // this worker only writes to the port
            };
            if !port.extra.is_empty() {
                continue;
            }
            while port.extra.len() < depth {
                if core.free.len() <= RESERVE {
                    return;
                }
                let Some(b) = core.free.pop() else { return };
                let region = core.bufs[b as usize].tap_read_region();
                let (ptr, len) = (region.as_mut_ptr(), region.len() as u32);
                let user_data = ud(OP_TAP_READ, b, *id);
                port.extra.push(user_data);
                let entry = if fixed {
                    opcode::ReadFixed::new(types::Fd(fd), ptr, len, b as u16).build()
                } else {
                    opcode::Read::new(types::Fd(fd), ptr, len).build()
                }
                .user_data(user_data);
                self.push(&entry);
            }
        }
    }

    /// Keeps one multishot read armed on every port this worker reads, once the provided
    /// ring has buffers (a read ends with ENOBUFS when the ring runs dry, and is re-armed
    /// here after the top-up). Completions come in the order the frames were read.
    fn arm_multishot_reads(&mut self, core: &mut Core<Reads>) {
        self.top_up_ring(core);
        let Some(ms) = &self.ms else { return };
        if ms.held == 0 {
            return;
        }
        let bgid = ms.ring.bgid();
        for (id, port) in core.ports.iter_mut() {
            let Some(fd) = port.fds.read.as_ref().map(|f| f.as_raw_fd()) else {
                continue;
            };
            if !port.extra.is_empty() {
                continue;
            }
            let user_data = ud(OP_TAP_READ_MS, 0, *id);
            port.extra.push(user_data);
            let entry = opcode::ReadMulti::new(types::Fd(fd), 0, bgid)
                .build()
                .user_data(user_data);
            // Multishot reads point at no memory of ours: the kernel picks ring buffers.
            self.push(&entry);
        }
    }

    /// A completion of a multishot TAP read: the buffer it filled (if any) is ours again.
    fn complete_multishot(
        &mut self,
        core: &mut Core<Reads>,
        user_data: u64,
        res: i32,
        flags: u32,
        port: PortId,
    ) {
        let more = io_uring::cqueue::more(flags);
        let live = match core.ports.get_mut(&port) {
            Some(p) => match p.extra.iter().position(|u| *u == user_data) {
                Some(i) => {
                    if !more {
                        p.extra.remove(i); // ended (ENOBUFS, cancel, error): re-armed later
                    }
                    true
                }
                None => false,
            },
            None => false,
        };
        let bid = io_uring::cqueue::buffer_select(flags);
        if bid.is_some() {
            if let Some(ms) = &mut self.ms {
                ms.held = ms.held.saturating_sub(1);
            }
        }
        // Not one of ours (cannot happen): never index out of range.
        let b = bid
            .map(u32::from)
            .filter(|&b| (b as usize) < core.bufs.len());
        // A multishot read ends on ENOBUFS (the ring ran dry: re-armed later) or a cancel;
        // any other error means the TAP is gone (see `is_port_lost`).
        if live && !more && res < 0 && res != -libc::ENOBUFS && super::is_port_lost(-res) {
            if let Some(b) = b {
                core.free.push(b);
            }
            self.port_lost(core, port, -res);
            return;
        }
        let Some(b) = b else {
            return; // no buffer consumed
        };
        if !live || res <= 0 {
            core.free.push(b);
            return;
        }
        core.tap_frame(self, port, b, res as usize);
    }

    /// Handles one completion; false means shut down.
    fn complete(
        &mut self,
        core: &mut Core<Reads>,
        user_data: u64,
        res: i32,
        flags: u32,
    ) -> Result<bool> {
        let (op, b, port) = ud_parts(user_data);
        match op {
            OP_TAP_READ_MS => self.complete_multishot(core, user_data, res, flags, port),
            OP_TAP_READ => {
                let live = match core.ports.get_mut(&port) {
                    Some(p) => match p.extra.iter().position(|u| *u == user_data) {
                        Some(i) => {
                            p.extra.remove(i);
                            true
                        }
                        None => false,
                    },
                    None => false,
                };
                if !live || res <= 0 {
                    core.free.push(b);
                    if live && res < 0 && super::is_port_lost(-res) {
                        self.port_lost(core, port, -res);
                    }
                    return Ok(true);
                }
                core.tap_frame(self, port, b, res as usize);
            }
            OP_TAP_WRITE => {
                core.free.push(b);
                if res < 0 {
                    core.datapath
                        .count_drop(DropReason::TxError, Direction::Egress);
                    tracing::debug!(port = port.get(), errno = -res, "TAP write failed");
                }
            }
            OP_WAKE => {
                if !core.commands(self)? {
                    return Ok(false);
                }
                self.arm_wake(core);
            }
            OP_POLL_TUNNEL => {
                core.drain_tunnel(self);
                self.arm_tunnel_poll(core);
            }
            OP_POLL_DNS => {
                core.drain_dns(self);
                self.arm_dns_poll(core);
            }
            OP_DNS_TIMER => self.dns_timer_armed = false, // expiry runs every round

            _ => {} // OP_CANCEL and anything unexpected: nothing owned.
        }
        Ok(true)
    }

    /// A read of port `id` failed with `errno`, which says its TAP is gone.
    fn port_lost(&mut self, core: &mut Core<Reads>, id: PortId, errno: i32) {
        let why = format!("read: {}", std::io::Error::from_raw_os_error(errno));
        core.port_lost(self, id, &why);
    }
}

#[cfg(test)]
mod tests {
    use super::{reads_per_port, POOL, READS_PER_PORT, RESERVE};

    #[test]
    fn every_port_keeps_a_read_and_the_reserve_stays_free() {
        assert_eq!(reads_per_port(0), READS_PER_PORT);
        assert_eq!(reads_per_port(1), READS_PER_PORT);
        assert_eq!(reads_per_port(112), READS_PER_PORT);
        assert_eq!(reads_per_port(113), 3);
        assert_eq!(reads_per_port(250), 1);
        assert_eq!(reads_per_port(1000), 1);
        // Up to POOL - RESERVE ports, the reads of all ports fit beside the reserve.
        for ports in 1..=POOL - RESERVE {
            let depth = reads_per_port(ports);
            assert!(depth >= 1, "{ports} ports");
            assert!(
                ports * depth <= POOL - RESERVE,
                "{ports} ports x {depth} reads"
            );
        }
    }
}
