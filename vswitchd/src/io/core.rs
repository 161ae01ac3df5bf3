//! The engine core: the forwarding loop both engines run, written once.
//!
//! The core owns everything an engine thread keeps besides its kernel interface: the buffer
//! pool and its free list, the ports this worker serves, the tunnel's transmit queue and
//! receive state, the GRO hold ([`GroHold`]), the DNS forwarder, the command channel and the
//! spin-then-sleep policy (`--poll-us`). It carries out every verdict ([`Core::carry_out`]),
//! drains the tunnel and DNS sockets, handles frames read from a TAP, applies the control
//! plane's commands and reports lost ports. A [`Backend`] ([`super::uring`],
//! [`super::epoll`]) only waits for readiness or completions, submits reads and TAP writes,
//! and hands what completed to the core. The core is generic over the back end: no dynamic
//! dispatch and no allocation per frame.
//!
//! Buffer ownership: a pool buffer is either free (its index is in `free`), held by the GRO
//! hold, or owned by the back end (a read or a write in flight, named by its index); it goes
//! back to the free list when the core has carried its frame out, or when the back end says
//! its operation completed.

use super::capture::{CaptureHub, Session, Sessions, Target};
use super::dns_forward::{DnsForwarder, Recv, DNS_BATCH};
use super::tunnel::{TunnelRx, TunnelTx};
use super::{Command, EngineCtx, PortFds, TUNNEL_BATCH};
use anyhow::Result;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch_datapath::{
    Datapath, Direction, DropReason, GroHold, GroStep, PacketBuf, PortId, Tables, Verdict,
};
use vswitch_proto::capture::Direction as Cap;

/// A port this worker serves: its TAP queues and the back end's state for it.
pub struct Port<X> {
    pub fds: PortFds,
    pub extra: X,
}

/// What became of a TAP write the core asked for.
pub enum Written {
    /// Done at once (`true`: the frame went out); the buffer is free again.
    Done(bool),
    /// Submitted; the back end frees the buffer (and counts a failure) when it completes.
    InFlight,
}

/// How the back end is to wait for work.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Right after traffic: look for work without sleeping.
    Poll,
    /// Sleep until there is work (or a timeout of the back end's choosing).
    Sleep,
}

/// A kernel interface an engine runs on: readiness (epoll) or completions (io_uring).
pub trait Backend: Sized {
    /// What the back end keeps per port (e.g. the reads in flight).
    type Port;

    /// Starts serving a new port's TAP (e.g. registers its read queue).
    fn add_port(&mut self, id: PortId, fds: &PortFds) -> Result<Self::Port>;
    /// Lets go of a port the core no longer serves (its fds close when the last user drops
    /// them).
    fn del_port(&mut self, id: PortId, port: Port<Self::Port>);
    /// Writes `frame`, which lives in pool buffer `b`, to the TAP queue `fd` of port `dst`.
    fn write_tap(&mut self, fd: BorrowedFd<'_>, b: u32, frame: &[u8], dst: PortId) -> Written;
    /// Before every wait: arms what needs arming (reads, timers).
    fn prepare(&mut self, core: &mut Core<Self::Port>);
    /// Waits as told; returns how many events or completions it gathered.
    fn wait(&mut self, wait: Wait) -> Result<usize>;
    /// Handles what the last wait gathered; `false` means shut down.
    fn dispatch(&mut self, core: &mut Core<Self::Port>) -> Result<bool>;
    /// On shutdown: lets go of everything in flight.
    fn teardown(&mut self, core: &mut Core<Self::Port>);
}

/// The engine state both back ends share (see the module docs).
pub struct Core<X> {
    pub datapath: Arc<Datapath>,
    rx: Receiver<Command>,
    pub wake: Arc<OwnedFd>,
    /// The tunnel socket, when the node has an underlay address.
    pub tunnel: Option<UdpSocket>,
    pub dns: Option<DnsForwarder>,
    epoch: Instant,
    spin: Duration,
    lost: tokio::sync::mpsc::UnboundedSender<PortId>,
    /// The buffer pool: never resized, so a buffer's memory stays where the kernel may have
    /// been told it is (registered buffers, provided-buffer rings).
    pub bufs: Box<[PacketBuf]>,
    pub free: Vec<u32>,
    pub ports: HashMap<PortId, Port<X>>,
    tunnel_tx: TunnelTx,
    tunnel_rx: TunnelRx,
    hold: GroHold<u32>,
    /// The table snapshot and the clock for the batch being handled: loaded once per
    /// batch, not per frame.
    pub batch_tables: Arc<Tables>,
    pub batch_now: u64,
    /// The running captures, shared with the control plane ([`super::capture`]).
    capture: Arc<CaptureHub>,
    /// The captures running for the batch being handled: `None` (no capture) costs one
    /// relaxed load per batch and one test per tapped frame.
    batch_capture: Option<Sessions>,
    /// The tunnel socket's own address (the outer source of what it sends, in captures).
    tunnel_local: SocketAddrV4,
    /// Frames handed to the datapath in the batch being handled.
    batch_frames: u32,
    /// The batch sizes (`vswitch_engine_batch_frames`).
    batches: prometheus_client::metrics::histogram::Histogram,
}

/// Shows a port's frame to the captures of that port.
fn tap_port(caps: &[Arc<Session>], id: PortId, dir: Cap, frame: &[u8]) {
    for s in caps.iter().filter(|s| s.target == Target::Port(id)) {
        s.port_frame(dir, frame);
    }
}

/// Shows a tunnel datagram to the captures of the tunnel.
fn tap_tunnel(
    caps: &[Arc<Session>],
    dir: Cap,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) {
    for s in caps.iter().filter(|s| s.target == Target::Tunnel) {
        s.tunnel_datagram(dir, src, dst, payload);
    }
}

impl<X> Core<X> {
    /// The core of one engine thread, with a pool of `pool` buffers.
    pub fn new(ctx: EngineCtx, pool: usize) -> Core<X> {
        if let Some(sock) = ctx.tunnel.as_ref().filter(|_| ctx.tunnel_gro) {
            TunnelRx::enable_gro(sock);
        }
        let pool = u32::try_from(pool).unwrap_or(u32::MAX);
        let tunnel_local = match ctx.tunnel.as_ref().and_then(|s| s.local_addr().ok()) {
            Some(std::net::SocketAddr::V4(a)) => a,
            _ => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        };
        Core {
            datapath: ctx.datapath,
            rx: ctx.rx,
            wake: ctx.wake,
            tunnel: ctx.tunnel,
            dns: ctx.dns,
            epoch: ctx.epoch,
            spin: ctx.spin,
            lost: ctx.lost,
            bufs: (0..pool).map(|_| PacketBuf::new()).collect(),
            free: (0..pool).rev().collect(),
            ports: HashMap::new(),
            tunnel_tx: TunnelTx::default(),
            tunnel_rx: TunnelRx::default(),
            hold: GroHold::new(),
            batch_tables: Arc::default(),
            batch_now: 0,
            capture: ctx.capture,
            batch_capture: None,
            tunnel_local,
            batch_frames: 0,
            batches: ctx.batches,
        }
    }

    /// Milliseconds since the engine started: the datapath's clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Loads the table snapshot and the clock for a new batch.
    fn begin_batch(&mut self) {
        self.batch_tables = Arc::clone(&self.datapath.tables());
        self.batch_now = self.now_ms();
        self.batch_capture = self.capture.sessions();
    }

    /// Applies every command waiting on the channel; `false` means shut down.
    pub fn commands<B: Backend<Port = X>>(&mut self, be: &mut B) -> Result<bool> {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::AddPort(id, fds, ack) => {
                    let extra = be.add_port(id, &fds)?;
                    self.ports.insert(id, Port { fds, extra });
                    let _ = ack.send(());
                }
                Command::DelPort(id, ack) => {
                    if let Some(p) = self.ports.remove(&id) {
                        be.del_port(id, p);
                    }
                    let _ = ack.send(());
                }
                Command::Shutdown => return Ok(false),
            }
        }
        Ok(true)
    }

    /// A read of port `id` failed in a way that says its TAP is gone (see
    /// [`super::is_port_lost`]): the port is no longer served (reading again would fail at
    /// once, a spin) and the control plane is told.
    pub fn port_lost<B: Backend<Port = X>>(&mut self, be: &mut B, id: PortId, why: &str) {
        if let Some(p) = self.ports.remove(&id) {
            be.del_port(id, p);
        }
        tracing::debug!(port = id.get(), "TAP lost: {why}");
        let _ = self.lost.send(id);
    }

    /// A frame of `len` bytes (virtio-net header included) read from port `id`'s TAP into
    /// pool buffer `b`: asks the datapath and carries the verdict out.
    pub fn tap_frame<B: Backend<Port = X>>(&mut self, be: &mut B, id: PortId, b: u32, len: usize) {
        let buf = &mut self.bufs[b as usize];
        if !buf.set_tap_read_len(len) {
            self.datapath
                .count_drop(DropReason::BadVnetHdr, Direction::FromPod);
            self.free.push(b);
            return;
        }
        if let Some(caps) = &self.batch_capture {
            tap_port(caps, id, Cap::In, buf.frame());
        }
        let v = self
            .datapath
            .from_port(&self.batch_tables, id, buf, self.batch_now);
        self.batch_frames += 1;
        self.carry_out(be, b, v);
    }

    /// Carries out verdict `v` for the frame in pool buffer `b`, which it consumes.
    pub fn carry_out<B: Backend<Port = X>>(&mut self, be: &mut B, b: u32, v: Verdict) {
        match v {
            Verdict::ToPort(dst) => {
                let Some(port) = self.ports.get(&dst) else {
                    self.datapath
                        .count_drop(DropReason::TxError, Direction::Egress);
                    self.free.push(b);
                    return;
                };
                if let Some(caps) = &self.batch_capture {
                    tap_port(caps, dst, Cap::Out, self.bufs[b as usize].frame());
                }
                let frame = self.bufs[b as usize].tap_write_region();
                match be.write_tap(port.fds.write.as_fd(), b, frame, dst) {
                    Written::InFlight => {}
                    Written::Done(ok) => {
                        if !ok {
                            self.datapath
                                .count_drop(DropReason::TxError, Direction::Egress);
                        }
                        self.free.push(b);
                    }
                }
            }
            Verdict::ToTunnel { dst, .. } => {
                match &self.tunnel {
                    Some(sock) => {
                        let buf = &self.bufs[b as usize];
                        let (caps, local) = (self.batch_capture.as_deref(), self.tunnel_local);
                        (self.tunnel_tx).send_tapped(&self.datapath, sock, buf, dst, |d| {
                            if let Some(caps) = caps {
                                tap_tunnel(caps, Cap::Out, local, dst, d);
                            }
                        });
                    }
                    None => self
                        .datapath
                        .count_drop(DropReason::TxError, Direction::Egress),
                }
                self.free.push(b);
            }
            Verdict::DnsForward { port, client } => {
                let now = self.now_ms();
                match &mut self.dns {
                    Some(fwd) => {
                        let frame = self.bufs[b as usize].frame();
                        fwd.forward(&self.datapath, port, client, frame, now);
                    }
                    None => self
                        .datapath
                        .count_drop(DropReason::DnsUpstreamFailed, Direction::FromPod),
                }
                self.free.push(b);
            }
            Verdict::Drop(_) => self.free.push(b),
        }
    }

    /// Receives up to [`TUNNEL_BATCH`] datagrams from the tunnel socket (more while a UDP
    /// GRO receive is being split). Frames for pods go through the GRO hold, so that
    /// consecutive segments of a flow merge into one super-frame before the TAP write.
    pub fn drain_tunnel<B: Backend<Port = X>>(&mut self, be: &mut B) {
        let mut i = 0;
        while i < TUNNEL_BATCH || self.tunnel_rx.pending() {
            i += 1;
            let Some(sock) = &self.tunnel else { break };
            let Some(b) = self.free.pop() else { break };
            let buf = &mut self.bufs[b as usize];
            let Some(src) = self.tunnel_rx.next(sock, buf) else {
                self.free.push(b);
                break;
            };
            if let Some(caps) = &self.batch_capture {
                tap_tunnel(caps, Cap::In, src, self.tunnel_local, buf.frame());
            }
            let v = (self.datapath).from_tunnel(&self.batch_tables, src, buf, self.batch_now);
            self.batch_frames += 1;
            let Verdict::ToPort(p) = v else {
                self.carry_out(be, b, v);
                continue;
            };
            match self.hold.push(&mut *self.bufs, p, b) {
                GroStep::Merged(b) => self.free.push(b),
                GroStep::Held => {}
                GroStep::Flush(hp, hb) => self.carry_out(be, hb, Verdict::ToPort(hp)),
            }
        }
        if let Some((hp, hb)) = self.hold.take() {
            self.carry_out(be, hb, Verdict::ToPort(hp));
        }
    }

    /// Takes up to [`DNS_BATCH`] datagrams from the upstream DNS socket; responses go to
    /// the pods' TAPs.
    pub fn drain_dns<B: Backend<Port = X>>(&mut self, be: &mut B) {
        for _ in 0..DNS_BATCH {
            let Some(fwd) = &mut self.dns else { break };
            let Some(b) = self.free.pop() else { break };
            let buf = &mut self.bufs[b as usize];
            match fwd.recv(&self.datapath, &self.batch_tables, buf) {
                Recv::Reply(v) => self.carry_out(be, b, v),
                Recv::Ignored => self.free.push(b),
                Recv::Empty => {
                    self.free.push(b);
                    break;
                }
            }
        }
    }
}

/// An engine: a back end and the core. The back end is declared first, so that it (the
/// kernel's side: a ring that may point into the pool) goes before the pool does.
struct Engine<B: Backend> {
    be: B,
    core: Core<B::Port>,
}

/// Runs an engine until [`Command::Shutdown`]: per round, expire forwarded DNS queries, let
/// the back end arm what it needs, wait (polling without sleep for `--poll-us` after the
/// last work, then sleeping), handle what came with one table snapshot, and send the
/// datagrams for the tunnel queued in the round with one `sendmmsg`.
pub fn run<B: Backend>(core: Core<B::Port>, be: B) -> Result<()> {
    let mut e = Engine { be, core };
    let mut last_work = Instant::now();
    loop {
        let now = e.core.now_ms();
        if let Some(fwd) = &mut e.core.dns {
            fwd.expire(&e.core.datapath, now);
        }
        e.be.prepare(&mut e.core);
        let wait = if last_work.elapsed() < e.core.spin {
            Wait::Poll
        } else {
            Wait::Sleep
        };
        let n = e.be.wait(wait)?;
        if n > 0 {
            last_work = Instant::now();
            e.core.begin_batch();
        } else if wait == Wait::Poll {
            std::hint::spin_loop();
        }
        if !e.be.dispatch(&mut e.core)? {
            e.be.teardown(&mut e.core);
            return Ok(());
        }
        if let Some(sock) = &e.core.tunnel {
            e.core.tunnel_tx.flush(&e.core.datapath, sock);
        }
        if e.core.batch_frames > 0 {
            e.core.batches.observe(f64::from(e.core.batch_frames));
            e.core.batch_frames = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The core against a recording back end: no TAPs, sockets or root needed.

    use super::*;
    use std::cell::Cell;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::rc::Rc;
    use std::sync::mpsc::{self, Sender};
    use vswitch_datapath::{NodeConfig, PeerId};

    const P1: PortId = PortId::new(1);
    const P3: PortId = PortId::new(3);
    const P7: PortId = PortId::new(7);

    /// Records what the core asks of it; TAP writes complete as `write` says.
    #[derive(Default)]
    struct Fake {
        added: Vec<PortId>,
        removed: Vec<PortId>,
        writes: Vec<(PortId, u32)>,
        /// `None`: writes stay in flight; `Some(ok)`: done at once.
        write: Option<bool>,
        torn_down: Rc<Cell<bool>>,
    }

    impl Backend for Fake {
        type Port = ();
        fn add_port(&mut self, id: PortId, _fds: &PortFds) -> Result<()> {
            self.added.push(id);
            Ok(())
        }
        fn del_port(&mut self, id: PortId, _port: Port<()>) {
            self.removed.push(id);
        }
        fn write_tap(&mut self, _fd: BorrowedFd<'_>, b: u32, _f: &[u8], dst: PortId) -> Written {
            self.writes.push((dst, b));
            match self.write {
                Some(ok) => Written::Done(ok),
                None => Written::InFlight,
            }
        }
        fn prepare(&mut self, _core: &mut Core<()>) {}
        fn wait(&mut self, _wait: Wait) -> Result<usize> {
            Ok(1)
        }
        fn dispatch(&mut self, core: &mut Core<()>) -> Result<bool> {
            core.commands(self)
        }
        fn teardown(&mut self, _core: &mut Core<()>) {
            self.torn_down.set(true);
        }
    }

    type LostRx = tokio::sync::mpsc::UnboundedReceiver<PortId>;

    fn core(pool: usize) -> (Core<()>, Sender<Command>, LostRx) {
        let (tx, rx) = mpsc::channel();
        let (lost, lost_rx) = tokio::sync::mpsc::unbounded_channel();
        let cidr = crate::checked::cidr("cidr", "198.18.1.0/24").unwrap();
        let ctx = EngineCtx {
            datapath: Arc::new(Datapath::new(NodeConfig::for_subnet(cidr, 1450))),
            rx,
            wake: Arc::new(super::super::eventfd().unwrap()),
            tunnel: None,
            dns: None,
            epoch: Instant::now(),
            spin: Duration::ZERO,
            tunnel_gro: false,
            uring_multishot: false,
            uring_registered_buffers: false,
            lost,
            capture: Arc::default(),
            batches: crate::metrics::EngineBatches::default().worker(0),
        };
        (Core::new(ctx, pool), tx, lost_rx)
    }

    fn fds() -> PortFds {
        let fd = Arc::new(super::super::eventfd().unwrap());
        PortFds {
            read: Some(Arc::clone(&fd)),
            write: fd,
        }
    }

    fn add(tx: &Sender<Command>, id: PortId) -> mpsc::Receiver<()> {
        let (ack, done) = mpsc::channel();
        tx.send(Command::AddPort(id, fds(), ack)).unwrap();
        done
    }

    fn drops(c: &Core<()>, r: DropReason) -> u64 {
        c.datapath.counters().drops(r)
    }

    #[test]
    fn commands_add_and_remove_ports_and_are_acknowledged() {
        let (mut c, tx, _lost) = core(4);
        let mut be = Fake::default();
        let ack = add(&tx, P7);
        assert!(c.commands(&mut be).unwrap());
        assert!(ack.try_recv().is_ok(), "AddPort acknowledged");
        assert_eq!(be.added, [P7]);
        assert!(c.ports.contains_key(&P7));
        let (ack, done) = mpsc::channel();
        tx.send(Command::DelPort(P7, ack)).unwrap();
        assert!(c.commands(&mut be).unwrap());
        assert!(done.try_recv().is_ok(), "DelPort acknowledged");
        assert_eq!(be.removed, [P7]);
        assert!(c.ports.is_empty());
        tx.send(Command::Shutdown).unwrap();
        assert!(!c.commands(&mut be).unwrap(), "Shutdown stops the engine");
    }

    #[test]
    fn every_verdict_gives_its_buffer_back_or_to_the_back_end() {
        let (mut c, tx, _lost) = core(4);
        let mut be = Fake::default();
        let _ack = add(&tx, P1);
        c.commands(&mut be).unwrap();
        let dst = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 4789);
        let client = SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 2), 5353);
        let take = |c: &mut Core<()>| c.free.pop().unwrap();

        // To a port this worker does not serve: a failed write, buffer free again.
        let b = take(&mut c);
        c.carry_out(&mut be, b, Verdict::ToPort(PortId::new(9)));
        assert_eq!(drops(&c, DropReason::TxError), 1);
        assert!(be.writes.is_empty());
        // A write that fails at once is counted; one that succeeds is not.
        be.write = Some(false);
        let b = take(&mut c);
        c.carry_out(&mut be, b, Verdict::ToPort(P1));
        assert_eq!(drops(&c, DropReason::TxError), 2);
        be.write = Some(true);
        let b = take(&mut c);
        c.carry_out(&mut be, b, Verdict::ToPort(P1));
        assert_eq!(drops(&c, DropReason::TxError), 2);
        assert_eq!(be.writes.iter().map(|w| w.0).collect::<Vec<_>>(), [P1, P1]);
        assert_eq!(c.free.len(), 4, "done writes free their buffer");
        // A write in flight keeps its buffer until the back end's completion.
        be.write = None;
        let b = take(&mut c);
        c.carry_out(&mut be, b, Verdict::ToPort(P1));
        assert_eq!(c.free.len(), 3);
        assert!(!c.free.contains(&b));
        // No tunnel socket, no forwarder: counted, freed.
        let b = take(&mut c);
        c.carry_out(
            &mut be,
            b,
            Verdict::ToTunnel {
                peer: PeerId::new(0),
                dst,
            },
        );
        assert_eq!(drops(&c, DropReason::TxError), 3);
        let b = take(&mut c);
        c.carry_out(&mut be, b, Verdict::DnsForward { port: P1, client });
        assert_eq!(drops(&c, DropReason::DnsUpstreamFailed), 1);
        let b = take(&mut c);
        c.carry_out(&mut be, b, Verdict::Drop(DropReason::BadVnetHdr));
        assert_eq!(c.free.len(), 3);
    }

    #[test]
    fn a_lost_port_is_dropped_and_reported() {
        let (mut c, tx, mut lost) = core(2);
        let mut be = Fake::default();
        let _ack = add(&tx, P3);
        c.commands(&mut be).unwrap();
        c.port_lost(&mut be, P3, "read: EBADFD");
        assert_eq!(be.removed, [P3]);
        assert!(c.ports.is_empty());
        assert_eq!(lost.try_recv().ok(), Some(P3));
    }

    #[test]
    fn a_short_tap_read_is_counted_and_freed() {
        let (mut c, _tx, _lost) = core(2);
        let mut be = Fake::default();
        let b = c.free.pop().unwrap();
        c.tap_frame(&mut be, P1, b, 3); // shorter than a virtio-net header
        assert_eq!(drops(&c, DropReason::BadVnetHdr), 1);
        assert_eq!(c.free.len(), 2);
    }

    #[test]
    fn the_loop_ends_on_shutdown_and_tears_the_back_end_down() {
        let (c, tx, _lost) = core(2);
        let torn_down = Rc::new(Cell::new(false));
        let be = Fake {
            torn_down: Rc::clone(&torn_down),
            ..Fake::default()
        };
        tx.send(Command::Shutdown).unwrap();
        run(c, be).unwrap();
        assert!(torn_down.get());
    }
}
