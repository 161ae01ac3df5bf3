//! Sending into the tunnel: plain frames are queued and leave together in one `sendmmsg` at
//! the end of the engine's batch; a GSO super-frame (or a frame with a partial checksum, or
//! one to fragment) is first made wire-ready by the datapath (`segment_for_tunnel`) and then
//! leaves in ONE `sendmsg` with UDP GSO (`UDP_SEGMENT`). Where the kernel refuses UDP GSO
//! (EIO, ENOPROTOOPT, EOPNOTSUPP) it is switched off and datagrams go out in `sendmmsg`
//! batches; EMSGSIZE sends that one group datagram by datagram and keeps GSO on.

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use vswitch_datapath::{Datapath, Direction, DropReason, PacketBuf};

/// Most payload bytes one UDP GSO send may carry (64 KiB less the UDP and IP headers).
const MAX_GSO_BYTES: usize = 65535 - 8 - 60;
/// Most segments one UDP GSO send may carry (the kernel's UDP_MAX_SEGMENTS).
const MAX_GSO_SEGMENTS: usize = 64;
/// Most datagrams queued for one `sendmmsg`.
pub const SEND_BATCH: usize = 64;

/// The socket side of [`TunnelTx`]: a seam so that the fallbacks can be tested against a
/// socket that refuses what a kernel may refuse.
pub trait Wire {
    /// One UDP GSO send of `data`, cut by the kernel into `seg`-byte datagrams.
    fn send_gso(&self, data: &[u8], seg: u16, dst: SocketAddrV4) -> io::Result<()>;
    /// Sends `msgs` in order with as few calls as possible (`sendmmsg`); returns how many
    /// left before the first failure, and that failure if one stopped it.
    fn send_batch(&self, msgs: &[(&[u8], SocketAddrV4)]) -> (usize, Option<io::Error>);
}

impl Wire for UdpSocket {
    fn send_gso(&self, data: &[u8], seg: u16, dst: SocketAddrV4) -> io::Result<()> {
        let iov = [IoSlice::new(data)];
        let cmsg = [ControlMessage::UdpGsoSegments(&seg)];
        let addr = SockaddrIn::from(dst);
        sendmsg(
            self.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::empty(),
            Some(&addr),
        )
        .map(|_| ())
        .map_err(io::Error::from)
    }

    fn send_batch(&self, msgs: &[(&[u8], SocketAddrV4)]) -> (usize, Option<io::Error>) {
        // Hand-written over libc: nix's sendmmsg wants owned per-message control-message
        // vectors and allocates per call; this is the hot path of small datagrams.
        let n = msgs.len().min(SEND_BATCH);
        // Only the `n` entries used are initialised: zeroing all 64 per call showed up as
        // memset in the profile of small batches.
        let mut addrs = [const { MaybeUninit::<libc::sockaddr_in>::uninit() }; SEND_BATCH];
        let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; SEND_BATCH];
        let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; SEND_BATCH];
        for (i, (data, dst)) in msgs[..n].iter().enumerate() {
            // SAFETY: all-zero is a valid value of these plain C structs.
            let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_port = dst.port().to_be();
            addr.sin_addr.s_addr = u32::from(*dst.ip()).to_be();
            let addr = addrs[i].write(addr);
            let iov = iovs[i].write(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
            // SAFETY: as above.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            hdrs[i].write(h);
        }
        let hdrs = hdrs.as_mut_ptr().cast::<libc::mmsghdr>();
        let mut sent = 0;
        while sent < n {
            // SAFETY: entries `sent..n` of `hdrs` were initialised above and point at live
            // locals (`addrs`, `iovs`) and at the caller's slices, which outlive the call;
            // the kernel only reads them (and writes `msg_len`).
            let rc =
                unsafe { libc::sendmmsg(self.as_raw_fd(), hdrs.add(sent), (n - sent) as u32, 0) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return (sent, Some(e));
            }
            sent += rc as usize;
        }
        (sent, None)
    }
}

/// Reusable state for tunnel transmission: the segmentation scratch buffer and the queue of
/// plain datagrams waiting for one `sendmmsg`.
#[derive(Default)]
pub struct TunnelTx {
    scratch: Vec<u8>,
    /// Set once the kernel refused UDP GSO; then datagrams go out in `sendmmsg` batches.
    no_gso: bool,
    /// Queued datagrams, back to back, with their (end offset, destination). Copying a
    /// datagram here costs less than the `sendto` per datagram it saves: the engine's buffer
    /// goes back to its pool at once and one syscall carries up to [`SEND_BATCH`] datagrams.
    queue: Vec<u8>,
    queued: Vec<(usize, SocketAddrV4)>,
}

impl TunnelTx {
    /// Sends the buffer's frame (VXLAN header + inner frame) to `dst`. A frame that needs no
    /// segmentation is queued; the engine calls [`TunnelTx::flush`] at the end of each batch
    /// (and a full queue flushes itself). Order is kept: a segmented send flushes first.
    #[cfg(test)]
    pub fn send(&mut self, dp: &Datapath, sock: &impl Wire, buf: &PacketBuf, dst: SocketAddrV4) {
        self.send_tapped(dp, sock, buf, dst, |_| {});
    }

    /// [`TunnelTx::send`], showing `tap` every datagram as it will go on the wire (a
    /// segmented super-frame as its datagrams): the capture tap.
    pub fn send_tapped(
        &mut self,
        dp: &Datapath,
        sock: &impl Wire,
        buf: &PacketBuf,
        dst: SocketAddrV4,
        mut tap: impl FnMut(&[u8]),
    ) {
        if !dp.needs_segmentation(buf) {
            tap(buf.frame());
            self.queue.extend_from_slice(buf.frame());
            self.queued.push((self.queue.len(), dst));
            if self.queued.len() >= SEND_BATCH {
                self.flush(dp, sock);
            }
            return;
        }
        self.flush(dp, sock);
        let (stride, count) = match dp.segment_for_tunnel(buf, &mut self.scratch) {
            Ok(v) => v,
            Err(_) => return, // counted by the datapath
        };
        if count == 0 || stride == 0 {
            return;
        }
        for d in self.scratch.chunks(stride) {
            tap(d);
        }
        let mut sent = 0;
        if count > 1 && !self.no_gso {
            // One UDP GSO send carries at most 64 segments and 64 KiB of payload; a
            // segmented 64 KiB super-frame, headers added, needs two.
            let per_send = (MAX_GSO_BYTES / stride).clamp(1, MAX_GSO_SEGMENTS);
            for group in self.scratch.chunks(stride * per_send) {
                match sock.send_gso(group, stride as u16, dst) {
                    Ok(()) => {}
                    Err(e) if gso_refused(&e) => {
                        tracing::info!(
                            "UDP GSO refused by the kernel ({e}); sending datagrams in batches"
                        );
                        self.no_gso = true;
                        break;
                    }
                    // Too big for this one send (a route MTU below the segment, or a
                    // kernel with a smaller segment limit): this group goes out datagram by
                    // datagram; GSO stays on for the next.
                    Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                        let msgs: Vec<_> = group.chunks(stride).map(|c| (c, dst)).collect();
                        send_all(dp, sock, &msgs);
                    }
                    Err(e) => {
                        dp.count_drop(DropReason::TxError, Direction::Egress);
                        tracing::debug!(%dst, len = group.len(), stride, "tunnel GSO send failed: {e}");
                    }
                }
                sent += group.len();
            }
            if !self.no_gso {
                return;
            }
        }
        let msgs: Vec<_> = self.scratch[sent..]
            .chunks(stride)
            .map(|c| (c, dst))
            .collect();
        send_all(dp, sock, &msgs);
    }

    /// Sends every queued datagram (in order, `sendmmsg` batches).
    pub fn flush(&mut self, dp: &Datapath, sock: &impl Wire) {
        if self.queued.is_empty() {
            return;
        }
        let mut msgs: [(&[u8], SocketAddrV4); SEND_BATCH] =
            [(&[], SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0)); SEND_BATCH];
        let mut start = 0;
        for chunk in self.queued.chunks(SEND_BATCH) {
            for (i, &(end, dst)) in chunk.iter().enumerate() {
                msgs[i] = (&self.queue[start..end], dst);
                start = end;
            }
            send_all(dp, sock, &msgs[..chunk.len()]);
        }
        self.queue.clear();
        self.queued.clear();
    }

    /// Datagrams waiting for [`TunnelTx::flush`].
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queued.len()
    }
}

/// What a kernel without UDP GSO (or with it disabled for the route) answers.
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO) | Some(libc::ENOPROTOOPT) | Some(libc::EOPNOTSUPP)
    )
}

/// Sends `msgs` in order; a datagram the kernel refuses is counted as `tx_error` and skipped.
fn send_all(dp: &Datapath, sock: &impl Wire, mut msgs: &[(&[u8], SocketAddrV4)]) {
    while !msgs.is_empty() {
        let (n, err) = sock.send_batch(msgs);
        msgs = &msgs[n.min(msgs.len())..];
        if let Some(e) = err {
            if let Some((d, dst)) = msgs.first() {
                dp.count_drop(DropReason::TxError, Direction::Egress);
                tracing::debug!(%dst, len = d.len(), "tunnel send failed: {e}");
                msgs = &msgs[1..];
            }
        } else if n == 0 {
            break; // a sink that takes nothing and names no error: do not spin
        }
    }
}

/// Receiving from the tunnel with UDP GRO: one `recvmsg` may return many datagrams of one
/// outer flow back to back (the kernel says the segment size in a control message); they are
/// handed out one by one, each copied into the caller's buffer, so the datapath sees the
/// same datagrams as without GRO.
pub struct TunnelRx {
    stash: PacketBuf,
    src: SocketAddrV4,
    /// Segment size of the stashed receive, and where the next datagram starts.
    seg: usize,
    off: usize,
    len: usize,
}

impl Default for TunnelRx {
    fn default() -> Self {
        TunnelRx {
            stash: PacketBuf::new(),
            src: SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
            seg: 0,
            off: 0,
            len: 0,
        }
    }
}

impl TunnelRx {
    /// Turns UDP GRO on for `sock` (a kernel without it just keeps sending datagrams singly).
    pub fn enable_gro(sock: &UdpSocket) {
        use nix::sys::socket::{setsockopt, sockopt};
        if let Err(e) = setsockopt(sock, sockopt::UdpGroSegment, &true) {
            tracing::info!("UDP GRO is not available: {e}; receiving datagrams one by one");
        }
    }

    /// True while datagrams of an earlier coalesced receive are waiting.
    pub fn pending(&self) -> bool {
        self.off < self.len
    }

    /// Puts the next datagram into `buf` (its UDP region) and returns its source; `None`
    /// when nothing more is waiting on the socket.
    pub fn next(&mut self, sock: &UdpSocket, buf: &mut PacketBuf) -> Option<SocketAddrV4> {
        if !self.pending() {
            let (src, len, seg) = recv_coalesced(sock, &mut self.stash)?;
            self.src = src;
            self.len = len;
            self.seg = if seg == 0 { len } else { seg };
            self.off = 0;
        }
        let end = (self.off + self.seg).min(self.len);
        let dgram = &self.stash.frame()[self.off..end];
        let region = buf.udp_read_region();
        let n = dgram.len().min(region.len());
        region[..n].copy_from_slice(&dgram[..n]);
        buf.set_udp_read_len(n);
        self.off = end;
        Some(self.src)
    }
}

/// One `recvmsg` without blocking into `stash`'s UDP region: (source, bytes, GRO segment
/// size or 0). (std's `recv_from` takes no flags and returns no control messages.)
fn recv_coalesced(sock: &UdpSocket, stash: &mut PacketBuf) -> Option<(SocketAddrV4, usize, usize)> {
    loop {
        let region = stash.udp_read_region();
        let mut iov = libc::iovec {
            iov_base: region.as_mut_ptr().cast(),
            iov_len: region.len(),
        };
        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut cbuf = [0u64; 8];
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: `msg` points at live locals (`addr`, `iov`, `cbuf`) and at `region`, a
        // live writable slice, with the sizes given; nothing else is written.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
        let n = n as usize;
        stash.set_udp_read_len(n);
        if i32::from(addr.sin_family) != libc::AF_INET {
            continue;
        }
        let mut seg = 0usize;
        // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled in, within
        // `msg.msg_controllen`; the UDP_GRO payload is an int.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    seg = usize::try_from(v).unwrap_or(0);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let src = SocketAddrV4::new(
            u32::from_be(addr.sin_addr.s_addr).into(),
            u16::from_be(addr.sin_port),
        );
        return Some((src, n, seg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::net::Ipv4Addr;

    /// A socket that refuses UDP GSO with `gso_err` (None: accepts it and cuts the datagrams
    /// as the kernel would) and fails the `fail_nth` datagram sent singly; it records what
    /// would reach the wire.
    #[derive(Default)]
    struct FakeWire {
        gso_err: Option<i32>,
        fail_nth: Option<usize>,
        wire: RefCell<Vec<Vec<u8>>>,
        gso_calls: RefCell<usize>,
        batch_calls: RefCell<usize>,
        singles: RefCell<usize>,
    }

    impl Wire for FakeWire {
        fn send_gso(&self, data: &[u8], seg: u16, _: SocketAddrV4) -> io::Result<()> {
            *self.gso_calls.borrow_mut() += 1;
            if let Some(e) = self.gso_err {
                return Err(io::Error::from_raw_os_error(e));
            }
            for d in data.chunks(usize::from(seg)) {
                self.wire.borrow_mut().push(d.to_vec());
            }
            Ok(())
        }

        fn send_batch(&self, msgs: &[(&[u8], SocketAddrV4)]) -> (usize, Option<io::Error>) {
            *self.batch_calls.borrow_mut() += 1;
            for (i, (d, _)) in msgs.iter().enumerate() {
                let nth = *self.singles.borrow();
                *self.singles.borrow_mut() += 1;
                if self.fail_nth == Some(nth) {
                    return (i, Some(io::Error::from_raw_os_error(libc::ENOBUFS)));
                }
                self.wire.borrow_mut().push(d.to_vec());
            }
            (msgs.len(), None)
        }
    }

    fn datapath() -> Datapath {
        let cidr = crate::checked::cidr("cidr", "198.18.1.0/24").unwrap();
        Datapath::new(vswitch_datapath::NodeConfig::for_subnet(cidr, 1450))
    }

    /// VXLAN header + Ethernet + IPv4 (DF clear) + UDP with `payload` bytes of payload.
    fn tunnel_frame(payload: usize, id: u16) -> PacketBuf {
        let mut f = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let total = (20 + 8 + payload) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&id.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 64, 17, 0, 0, 198, 18, 1, 10, 198, 18, 2, 10]);
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89]);
        f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend((0..payload).map(|i| i as u8));
        PacketBuf::from_frame(&f)
    }

    fn dst() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 2), 4789)
    }

    /// The datagrams the datapath makes of `buf` (what must reach the wire, whatever path).
    fn expected(dp: &Datapath, buf: &PacketBuf) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let (stride, _) = dp.segment_for_tunnel(buf, &mut out).unwrap();
        out.chunks(stride).map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn plain_frames_are_queued_and_leave_in_one_batch_in_order() {
        let dp = datapath();
        let wire = FakeWire::default();
        let mut tx = TunnelTx::default();
        let frames: Vec<_> = (0..10).map(|i| tunnel_frame(100 + i, i as u16)).collect();
        for f in &frames {
            assert!(!dp.needs_segmentation(f));
            tx.send(&dp, &wire, f, dst());
        }
        assert!(
            wire.wire.borrow().is_empty(),
            "nothing leaves before the flush"
        );
        assert_eq!(tx.queued(), 10);
        tx.flush(&dp, &wire);
        assert_eq!(*wire.batch_calls.borrow(), 1);
        let want: Vec<Vec<u8>> = frames.iter().map(|f| f.frame().to_vec()).collect();
        assert_eq!(*wire.wire.borrow(), want);
        assert_eq!(tx.queued(), 0);
    }

    #[test]
    fn a_full_queue_flushes_itself() {
        let dp = datapath();
        let wire = FakeWire::default();
        let mut tx = TunnelTx::default();
        for i in 0..SEND_BATCH + 3 {
            tx.send(&dp, &wire, &tunnel_frame(64, i as u16), dst());
        }
        assert_eq!(wire.wire.borrow().len(), SEND_BATCH);
        assert_eq!(tx.queued(), 3);
    }

    #[test]
    fn gso_send_keeps_order_behind_queued_frames() {
        let dp = datapath();
        let wire = FakeWire::default();
        let mut tx = TunnelTx::default();
        let small = tunnel_frame(64, 1);
        let big = tunnel_frame(4000, 2);
        assert!(dp.needs_segmentation(&big));
        tx.send(&dp, &wire, &small, dst());
        tx.send(&dp, &wire, &big, dst());
        let mut want = vec![small.frame().to_vec()];
        want.extend(expected(&dp, &big));
        assert!(want.len() >= 4);
        assert_eq!(*wire.wire.borrow(), want);
        assert_eq!(*wire.gso_calls.borrow(), 1);
    }

    #[test]
    fn refused_gso_falls_back_to_batches_for_good() {
        for errno in [libc::EIO, libc::ENOPROTOOPT, libc::EOPNOTSUPP] {
            let dp = datapath();
            let wire = FakeWire {
                gso_err: Some(errno),
                ..Default::default()
            };
            let mut tx = TunnelTx::default();
            let big = tunnel_frame(4000, 7);
            tx.send(&dp, &wire, &big, dst());
            tx.send(&dp, &wire, &big, dst());
            let mut want = expected(&dp, &big);
            want.extend(expected(&dp, &big));
            assert_eq!(*wire.wire.borrow(), want, "errno {errno}");
            assert_eq!(
                *wire.gso_calls.borrow(),
                1,
                "GSO is not retried after a refusal"
            );
            assert_eq!(dp.counters().drops(DropReason::TxError), 0);
        }
    }

    #[test]
    fn emsgsize_sends_that_group_singly_and_keeps_gso() {
        let dp = datapath();
        let wire = FakeWire {
            gso_err: Some(libc::EMSGSIZE),
            ..Default::default()
        };
        let mut tx = TunnelTx::default();
        let big = tunnel_frame(4000, 9);
        tx.send(&dp, &wire, &big, dst());
        tx.send(&dp, &wire, &big, dst());
        let mut want = expected(&dp, &big);
        want.extend(expected(&dp, &big));
        assert_eq!(*wire.wire.borrow(), want);
        assert_eq!(
            *wire.gso_calls.borrow(),
            2,
            "GSO is tried again for the next frame"
        );
        assert_eq!(dp.counters().drops(DropReason::TxError), 0);
    }

    #[test]
    fn a_failed_datagram_is_counted_and_the_rest_go_out() {
        let dp = datapath();
        let wire = FakeWire {
            fail_nth: Some(2),
            ..Default::default()
        };
        let mut tx = TunnelTx::default();
        let frames: Vec<_> = (0..5).map(|i| tunnel_frame(80, i)).collect();
        for f in &frames {
            tx.send(&dp, &wire, f, dst());
        }
        tx.flush(&dp, &wire);
        let want: Vec<Vec<u8>> = frames
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, f)| f.frame().to_vec())
            .collect();
        assert_eq!(*wire.wire.borrow(), want);
        assert_eq!(dp.counters().drops(DropReason::TxError), 1);
    }

    /// The real socket path over loopback: a batch and a GSO send arrive as the datagrams
    /// the datapath made, in order.
    #[test]
    fn loopback_socket_delivers_batches_and_gso_sends() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let std::net::SocketAddr::V4(to) = rx.local_addr().unwrap() else {
            unreachable!()
        };
        let tx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dp = datapath();
        let mut tx = TunnelTx::default();
        let small: Vec<_> = (0..3).map(|i| tunnel_frame(50 + i, i as u16)).collect();
        let big = tunnel_frame(4000, 3);
        let mut want: Vec<Vec<u8>> = small.iter().map(|f| f.frame().to_vec()).collect();
        want.extend(expected(&dp, &big));
        for f in &small {
            tx.send(&dp, &tx_sock, f, to);
        }
        tx.send(&dp, &tx_sock, &big, to);
        tx.flush(&dp, &tx_sock);
        let mut got = Vec::new();
        let mut b = vec![0u8; 65536];
        while got.len() < want.len() {
            let n = rx.recv(&mut b).expect("datagram within 2 s");
            got.push(b[..n].to_vec());
        }
        assert_eq!(got, want);
        assert_eq!(dp.counters().drops(DropReason::TxError), 0);
    }
}
