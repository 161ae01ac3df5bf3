//! The epoll engine: level-triggered readiness, then up to [`BATCH`] non-blocking reads per
//! ready port, each frame carried out at once (TAP writes never block) except datagrams for
//! the tunnel, which are queued and sent with one `sendmmsg` per round. The fallback where
//! io_uring is unavailable; it needs no `unsafe` of its own.

use super::dns_forward::{DnsForwarder, Recv, DNS_BATCH};
use super::{Command, EngineCtx, PortFds, BATCH, TUNNEL_BATCH};
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use vswitch_datapath::{gro_append, DropReason, PacketBuf, PortId, Verdict};

const TOKEN_WAKE: u64 = 0;
const TOKEN_TUNNEL: u64 = 1;
const TOKEN_DNS: u64 = 2;
const TOKEN_PORT_BASE: u64 = 16;

/// Runs the engine until [`Command::Shutdown`].
pub fn run(mut ctx: EngineCtx) -> Result<()> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
    epoll.add(
        ctx.wake.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_WAKE),
    )?;
    if let Some(sock) = &ctx.tunnel {
        epoll.add(
            sock.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_TUNNEL),
        )?;
    }
    let mut dns = ctx.dns.take();
    if let Some(fwd) = &dns {
        epoll.add(
            fwd.socket().as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_DNS),
        )?;
    }
    let mut ports: HashMap<PortId, PortFds> = HashMap::new();
    let mut events = vec![EpollEvent::empty(); 64];
    let mut buf = PacketBuf::new();
    let mut gro_buf = PacketBuf::new();
    let mut tunnel = super::tunnel::TunnelTx::default();
    let mut rx = super::tunnel::TunnelRx::default();
    if let Some(sock) = ctx.tunnel.as_ref().filter(|_| ctx.tunnel_gro) {
        super::tunnel::TunnelRx::enable_gro(sock);
    }
    let mut last_work = std::time::Instant::now();
    let spin = ctx.spin;
    loop {
        // Right after traffic, poll without sleeping for a short while (`--poll-us`).
        let timeout = if last_work.elapsed() < spin {
            EpollTimeout::ZERO
        } else {
            EpollTimeout::from(1000u16)
        };
        let n = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("epoll_wait"),
        };
        if n > 0 {
            last_work = std::time::Instant::now();
        }
        if let Some(fwd) = &mut dns {
            fwd.expire(&ctx.datapath, ctx.now_ms());
        }
        for ev in &events[..n] {
            match ev.data() {
                TOKEN_WAKE => {
                    let mut b = [0u8; 8];
                    let _ = nix::unistd::read(ctx.wake.as_fd(), &mut b);
                    while let Ok(cmd) = ctx.rx.try_recv() {
                        match cmd {
                            Command::AddPort(id, fds, ack) => {
                                let _ = super::set_nonblocking(fds.write.as_raw_fd(), true);
                                if let Some(fd) = &fds.read {
                                    let _ = super::set_nonblocking(fd.as_raw_fd(), true);
                                    let token = TOKEN_PORT_BASE + u64::from(id);
                                    let ev = EpollEvent::new(EpollFlags::EPOLLIN, token);
                                    epoll.add(fd.as_fd(), ev)?;
                                }
                                ports.insert(id, fds);
                                let _ = ack.send(());
                            }
                            Command::DelPort(id, ack) => {
                                if let Some(fd) = ports.remove(&id).and_then(|p| p.read) {
                                    let _ = epoll.delete(fd.as_fd());
                                }
                                let _ = ack.send(());
                            }
                            Command::Shutdown => return Ok(()),
                        }
                    }
                }
                TOKEN_TUNNEL => {
                    let Some(sock) = &ctx.tunnel else { continue };
                    let tables = ctx.datapath.tables();
                    let now = ctx.now_ms();
                    // Frames for pods are held back one step so that consecutive segments
                    // of a flow merge into one super-frame (GRO) before the TAP write.
                    let mut held: Option<PortId> = None;
                    let mut i = 0;
                    while i < TUNNEL_BATCH || rx.pending() {
                        i += 1;
                        let Some(src) = rx.next(sock, &mut buf) else {
                            break;
                        };
                        let v = ctx.datapath.from_tunnel(&tables, src, &mut buf, now);
                        if let Verdict::ToPort(p) = v {
                            if held == Some(p) && gro_append(&mut gro_buf, &buf) {
                                continue;
                            }
                            if let Some(h) = held.take() {
                                carry_out(
                                    &ctx,
                                    &ports,
                                    &mut gro_buf,
                                    Verdict::ToPort(h),
                                    &mut tunnel,
                                    None,
                                );
                            }
                            std::mem::swap(&mut buf, &mut gro_buf);
                            held = Some(p);
                            continue;
                        }
                        carry_out(&ctx, &ports, &mut buf, v, &mut tunnel, dns.as_mut());
                    }
                    if let Some(h) = held {
                        let v = Verdict::ToPort(h);
                        carry_out(&ctx, &ports, &mut gro_buf, v, &mut tunnel, None);
                    }
                }
                TOKEN_DNS => {
                    let Some(fwd) = &mut dns else { continue };
                    let tables = ctx.datapath.tables();
                    for _ in 0..DNS_BATCH {
                        match fwd.recv(&ctx.datapath, &tables, &mut buf) {
                            Recv::Reply(v) => {
                                carry_out(&ctx, &ports, &mut buf, v, &mut tunnel, None);
                            }
                            Recv::Ignored => {}
                            Recv::Empty => break,
                        }
                    }
                }
                token => {
                    let id = (token - TOKEN_PORT_BASE) as PortId;
                    let Some(fd) = ports.get(&id).and_then(|p| p.read.clone()) else {
                        continue;
                    };
                    let tables = ctx.datapath.tables();
                    let now = ctx.now_ms();
                    // A dead TAP polls EPOLLERR (level-triggered: at every wait) and its reads
                    // fail: the read below reports the errno, and the port goes at once.
                    let mut lost = None;
                    for _ in 0..BATCH {
                        let n = match nix::unistd::read(fd.as_fd(), buf.tap_read_region()) {
                            Ok(n) => n,
                            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {
                                if ev
                                    .events()
                                    .intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
                                {
                                    lost = Some(format!("poll reports {:?}", ev.events()));
                                }
                                break;
                            }
                            Err(e) => {
                                if super::is_port_lost(e as i32) {
                                    lost = Some(format!("read: {e}"));
                                }
                                break;
                            }
                        };
                        if !buf.set_tap_read_len(n) {
                            ctx.datapath.count_drop(DropReason::BadVnetHdr);
                            continue;
                        }
                        let v = ctx.datapath.from_port(&tables, id, &mut buf, now);
                        carry_out(&ctx, &ports, &mut buf, v, &mut tunnel, dns.as_mut());
                    }
                    if let Some(why) = lost {
                        if let Some(fd) = ports.remove(&id).and_then(|p| p.read) {
                            let _ = epoll.delete(fd.as_fd());
                        }
                        tracing::debug!(port = id, "TAP lost: {why}");
                        let _ = ctx.lost.send(id);
                    }
                }
            }
        }
        // Datagrams for the tunnel queued during this round leave in one `sendmmsg`.
        if let Some(sock) = &ctx.tunnel {
            tunnel.flush(&ctx.datapath, sock);
        }
    }
}

/// Carries out one verdict with blocking-free writes.
fn carry_out(
    ctx: &EngineCtx,
    ports: &HashMap<PortId, PortFds>,
    buf: &mut PacketBuf,
    v: Verdict,
    tunnel: &mut super::tunnel::TunnelTx,
    dns: Option<&mut DnsForwarder>,
) {
    match v {
        Verdict::ToPort(dst) => {
            let ok = ports
                .get(&dst)
                .map(|p| nix::unistd::write(p.write.as_fd(), buf.tap_write_region()).is_ok())
                .unwrap_or(false);
            if !ok {
                ctx.datapath.count_drop(DropReason::TxError);
            }
        }
        Verdict::ToTunnel { dst, .. } => match &ctx.tunnel {
            Some(sock) => tunnel.send(&ctx.datapath, sock, buf, dst),
            None => ctx.datapath.count_drop(DropReason::TxError),
        },
        Verdict::DnsForward { port, client } => match dns {
            Some(fwd) => fwd.forward(&ctx.datapath, port, client, buf.frame(), ctx.now_ms()),
            None => ctx.datapath.count_drop(DropReason::DnsUpstreamFailed),
        },
        Verdict::Drop(_) => {}
    }
}
