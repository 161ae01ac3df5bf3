//! Sending into the tunnel: a plain frame goes out as one datagram; a GSO super-frame (or a
//! frame with a partial checksum, or one to fragment) is first made wire-ready by the datapath
//! (`segment_for_tunnel`) and then leaves in ONE `sendmsg` with UDP GSO (`UDP_SEGMENT`),
//! falling back to one `sendto` per datagram where the kernel refuses UDP GSO.

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn};
use std::io::IoSlice;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use vswitch_datapath::{Datapath, DropReason, PacketBuf};

/// Most payload bytes one UDP GSO send may carry (64 KiB less the UDP and IP headers).
const MAX_GSO_BYTES: usize = 65535 - 8 - 60;
/// Most segments one UDP GSO send may carry (the kernel's UDP_MAX_SEGMENTS).
const MAX_GSO_SEGMENTS: usize = 64;

/// Reusable state for tunnel transmission (the segmentation scratch buffer).
#[derive(Default)]
pub struct TunnelTx {
    scratch: Vec<u8>,
    /// Set once the kernel refused UDP GSO; then datagrams go out one by one.
    no_gso: bool,
}

impl TunnelTx {
    /// Sends the buffer's frame (VXLAN header + inner frame) to `dst`.
    pub fn send(&mut self, dp: &Datapath, sock: &UdpSocket, buf: &PacketBuf, dst: SocketAddrV4) {
        if !dp.needs_segmentation(buf) {
            if let Err(e) = sock.send_to(buf.frame(), dst) {
                dp.count_drop(DropReason::TxError);
                tracing::debug!(%dst, len = buf.len(), vnet = ?buf.vnet, "tunnel send failed: {e}");
            }
            return;
        }
        let (stride, count) = match dp.segment_for_tunnel(buf, &mut self.scratch) {
            Ok(v) => v,
            Err(_) => return, // counted by the datapath
        };
        if count == 0 || stride == 0 {
            return;
        }
        if count > 1 && !self.no_gso {
            // One UDP GSO send carries at most 64 segments and 64 KiB of payload; a
            // segmented 64 KiB super-frame, headers added, needs two.
            let per_send = (MAX_GSO_BYTES / stride).clamp(1, MAX_GSO_SEGMENTS);
            let seg = stride as u16;
            let addr = SockaddrIn::from(dst);
            let mut sent = 0;
            for group in self.scratch.chunks(stride * per_send) {
                let iov = [IoSlice::new(group)];
                let cmsg = [ControlMessage::UdpGsoSegments(&seg)];
                match sendmsg(
                    sock.as_raw_fd(),
                    &iov,
                    &cmsg,
                    MsgFlags::empty(),
                    Some(&addr),
                ) {
                    Ok(_) => sent += group.len(),
                    Err(nix::errno::Errno::EIO)
                    | Err(nix::errno::Errno::ENOPROTOOPT)
                    | Err(nix::errno::Errno::EOPNOTSUPP) => {
                        tracing::info!(
                            "UDP GSO refused by the kernel; sending datagrams one by one"
                        );
                        self.no_gso = true;
                        break;
                    }
                    Err(e) => {
                        dp.count_drop(DropReason::TxError);
                        tracing::debug!(%dst, len = group.len(), stride, "tunnel GSO send failed: {e}");
                    }
                }
            }
            if !self.no_gso {
                return;
            }
            // Fall through for what is left after the refusal.
            for chunk in self.scratch[sent..].chunks(stride) {
                if sock.send_to(chunk, dst).is_err() {
                    dp.count_drop(DropReason::TxError);
                }
            }
            return;
        }
        for chunk in self.scratch.chunks(stride) {
            if sock.send_to(chunk, dst).is_err() {
                dp.count_drop(DropReason::TxError);
            }
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
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from a live local of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::info!(
                "UDP GRO is not available: {}; receiving datagrams one by one",
                std::io::Error::last_os_error()
            );
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
