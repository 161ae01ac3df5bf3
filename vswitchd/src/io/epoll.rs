//! The epoll back end: level-triggered readiness, then up to [`BATCH`] non-blocking reads
//! per ready port, each frame carried out by the [`Core`] at once (TAP writes never block;
//! datagrams for the tunnel are queued and sent with one `sendmmsg` per round). The
//! fallback where io_uring is unavailable; it needs no `unsafe` of its own.

use super::core::{self, Backend, Core, Port, Wait, Written};
use super::{EngineCtx, PortFds, BATCH};
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::os::fd::{AsFd, BorrowedFd};
use vswitch_datapath::PortId;

const TOKEN_WAKE: u64 = 0;
const TOKEN_TUNNEL: u64 = 1;
const TOKEN_DNS: u64 = 2;
const TOKEN_PORT_BASE: u64 = 16;

/// Buffers in the pool: one being read into, one in the GRO hold, and spares. Every other
/// operation is done before the next read.
const POOL: usize = 8;

/// The epoll back end (see the module docs).
struct EpollBackend {
    epoll: Epoll,
    events: Vec<EpollEvent>,
    /// How many of `events` the last wait filled.
    ready: usize,
}

/// Runs the engine until [`super::Command::Shutdown`].
pub fn run(ctx: EngineCtx) -> Result<()> {
    let core: Core<()> = Core::new(ctx, POOL);
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
    epoll.add(
        core.wake.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_WAKE),
    )?;
    if let Some(sock) = &core.tunnel {
        epoll.add(
            sock.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_TUNNEL),
        )?;
    }
    if let Some(fwd) = &core.dns {
        epoll.add(
            fwd.poll_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_DNS),
        )?;
    }
    let be = EpollBackend {
        epoll,
        events: vec![EpollEvent::empty(); 64],
        ready: 0,
    };
    core::run(core, be)
}

impl Backend for EpollBackend {
    type Port = ();

    fn add_port(&mut self, id: PortId, fds: &PortFds) -> Result<()> {
        let _ = super::set_nonblocking(fds.write.as_fd(), true);
        if let Some(fd) = &fds.read {
            let _ = super::set_nonblocking(fd.as_fd(), true);
            let token = TOKEN_PORT_BASE + u64::from(id.get());
            self.epoll
                .add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))?;
        }
        Ok(())
    }

    fn del_port(&mut self, _id: PortId, port: Port<()>) {
        if let Some(fd) = port.fds.read {
            let _ = self.epoll.delete(fd.as_fd());
        }
    }

    fn write_tap(&mut self, fd: BorrowedFd<'_>, _b: u32, frame: &[u8], _dst: PortId) -> Written {
        Written::Done(nix::unistd::write(fd, frame).is_ok())
    }

    fn prepare(&mut self, _core: &mut Core<()>) {}

    fn wait(&mut self, wait: Wait) -> Result<usize> {
        let timeout = match wait {
            Wait::Poll => EpollTimeout::ZERO,
            Wait::Sleep => EpollTimeout::from(1000u16),
        };
        self.ready = match self.epoll.wait(&mut self.events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e).context("epoll_wait"),
        };
        Ok(self.ready)
    }

    fn dispatch(&mut self, core: &mut Core<()>) -> Result<bool> {
        for i in 0..self.ready {
            let ev = self.events[i];
            match ev.data() {
                TOKEN_WAKE => {
                    let mut b = [0u8; 8];
                    let _ = nix::unistd::read(core.wake.as_fd(), &mut b);
                    if !core.commands(self)? {
                        return Ok(false);
                    }
                }
                TOKEN_TUNNEL => core.drain_tunnel(self),
                TOKEN_DNS => core.drain_dns(self),
                token => self.read_port(core, PortId::new((token - TOKEN_PORT_BASE) as u32), ev),
            }
        }
        Ok(true)
    }

    fn teardown(&mut self, _core: &mut Core<()>) {}
}

impl EpollBackend {
    /// Reads up to [`BATCH`] frames from ready port `id` and hands them to the core.
    fn read_port(&mut self, core: &mut Core<()>, id: PortId, ev: EpollEvent) {
        let Some(fd) = core.ports.get(&id).and_then(|p| p.fds.read.clone()) else {
            return;
        };
        // A dead TAP polls EPOLLERR (level-triggered: at every wait) and its reads fail: the
        // read below reports the errno, and the port goes at once.
        let mut lost = None;
        for _ in 0..BATCH {
            let Some(b) = core.free.pop() else { break };
            let n = match nix::unistd::read(fd.as_fd(), core.bufs[b as usize].tap_read_region()) {
                Ok(n) => n,
                Err(e) => {
                    core.free.push(b);
                    if matches!(e, Errno::EAGAIN | Errno::EINTR) {
                        if ev
                            .events()
                            .intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
                        {
                            lost = Some(format!("poll reports {:?}", ev.events()));
                        }
                    } else if super::is_port_lost(e as i32) {
                        lost = Some(format!("read: {e}"));
                    }
                    break;
                }
            };
            core.tap_frame(self, id, b, n);
        }
        if let Some(why) = lost {
            core.port_lost(self, id, &why);
        }
    }
}
