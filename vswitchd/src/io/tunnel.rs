//! Sending into the tunnel: a plain frame goes out as one datagram; a GSO super-frame (or a
//! frame with a partial checksum) is first made wire-ready by the datapath
//! (`segment_for_tunnel`) and then leaves in ONE `sendmsg` with UDP GSO (`UDP_SEGMENT`),
//! falling back to one `sendto` per datagram where the kernel refuses UDP GSO.

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn};
use std::io::IoSlice;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use vswitch_datapath::{Datapath, DropReason, PacketBuf};

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
        if !(buf.vnet.is_gso() || buf.vnet.needs_csum()) {
            if sock.send_to(buf.frame(), dst).is_err() {
                dp.count_drop(DropReason::TxError);
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
            let seg = stride as u16;
            let addr = SockaddrIn::from(dst);
            let iov = [IoSlice::new(&self.scratch)];
            let cmsg = [ControlMessage::UdpGsoSegments(&seg)];
            match sendmsg(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&addr)) {
                Ok(_) => return,
                Err(nix::errno::Errno::EIO)
                | Err(nix::errno::Errno::EINVAL)
                | Err(nix::errno::Errno::ENOPROTOOPT)
                | Err(nix::errno::Errno::EOPNOTSUPP) => {
                    tracing::info!("UDP GSO refused by the kernel; sending datagrams one by one");
                    self.no_gso = true;
                }
                Err(_) => {
                    dp.count_drop(DropReason::TxError);
                    return;
                }
            }
        }
        for chunk in self.scratch.chunks(stride) {
            if sock.send_to(chunk, dst).is_err() {
                dp.count_drop(DropReason::TxError);
            }
        }
    }
}

