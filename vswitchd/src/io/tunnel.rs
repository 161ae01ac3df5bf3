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

/// Receives one datagram without blocking into the buffer's UDP region; `None` when the
/// socket has nothing more. (std's `recv_from` takes no flags, and the socket stays in
/// blocking mode for sends, hence the direct call.)
pub fn recv(sock: &UdpSocket, buf: &mut PacketBuf) -> Option<SocketAddrV4> {
    loop {
        let region = buf.udp_read_region();
        // SAFETY: an all-zero sockaddr_in is a valid value of that plain C struct.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut alen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `region` is a live, writable slice of `region.len()` bytes; `addr` and
        // `alen` are live locals of the sizes passed; the call writes nothing else.
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                region.as_mut_ptr().cast(),
                region.len(),
                libc::MSG_DONTWAIT,
                (&mut addr as *mut libc::sockaddr_in).cast(),
                &mut alen,
            )
        };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
        buf.set_udp_read_len(n as usize);
        if i32::from(addr.sin_family) != libc::AF_INET {
            continue;
        }
        return Some(SocketAddrV4::new(
            u32::from_be(addr.sin_addr.s_addr).into(),
            u16::from_be(addr.sin_port),
        ));
    }
}
