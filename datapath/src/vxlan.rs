//! VXLAN (RFC 7348): the header, and encapsulation of routed frames towards a peer.
//!
//! Inner frames follow flannel's vxlan backend: inner source MAC is our VTEP MAC, inner
//! destination the peer's VTEP MAC. The 8-byte header is pushed in place into the buffer's
//! headroom; the outer UDP/IP headers are the shell's socket's business.
//!
//! Path MTU: the tunnel carries inner IP packets of up to `pod_mtu` bytes. A bigger non-GSO
//! packet with DF set is answered with ICMP "fragmentation needed" (next-hop MTU =
//! `pod_mtu`) and counted as [`DropReason::TooBig`]; without DF it goes into the tunnel
//! whole and [`Datapath::segment_for_tunnel`] fragments it (see `frag.rs`).

use crate::counters::DropReason;
use crate::icmp;
use crate::switch::forward_l3;
use crate::tables::{PeerEntry, PortEntry};
use crate::wire::{self, Ipv4Info};
use crate::{Datapath, PacketBuf, Verdict};
use std::net::SocketAddrV4;

/// Length of the VXLAN header.
pub const VXLAN_HDR_LEN: usize = 8;
/// The "I" flag: the VNI field is valid. The only flag RFC 7348 defines.
pub const VXLAN_FLAG_I: u8 = 0x08;

/// A VXLAN header: flags (I set), 24 reserved bits, the 24-bit VNI, 8 reserved bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanHdr {
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
}

impl VxlanHdr {
    /// Parses the header at the start of `b`. Reserved bits are ignored, as RFC 7348 asks of
    /// receivers. Errors: [`DropReason::TunnelMalformed`] when `b` is shorter than 8 bytes or
    /// the I flag is clear.
    pub fn parse(b: &[u8]) -> Result<VxlanHdr, DropReason> {
        match b.get(..VXLAN_HDR_LEN) {
            Some(h) if h[0] & VXLAN_FLAG_I != 0 => Ok(VxlanHdr {
                vni: wire::be32(h, 4) >> 8,
            }),
            _ => Err(DropReason::TunnelMalformed),
        }
    }

    /// Writes the header into the first 8 bytes of `b` (nothing when `b` is shorter).
    pub fn write(&self, b: &mut [u8]) {
        wire::put(b, 0, &[VXLAN_FLAG_I, 0, 0, 0]);
        wire::put32(b, 4, (self.vni & 0x00ff_ffff) << 8);
    }
}

/// The largest IPv4 packet the frame puts on the wire: its own length, or for a GSO
/// super-frame the length of one segment (headers plus `gso_size`), as the kernel checks
/// GSO packets against the path MTU (`skb_gso_validate_network_len`).
fn wire_ip_len(pkt: &PacketBuf, ip: &Ipv4Info) -> usize {
    if !pkt.vnet.is_gso() {
        return ip.total_len;
    }
    let f = pkt.frame();
    let l4 = ip.l4_off();
    let l4_hdr = match ip.proto {
        crate::wire::PROTO_TCP => f.get(l4 + 12).map_or(20, |b| usize::from(b >> 4) * 4),
        _ => 8,
    };
    ip.hlen + l4_hdr + usize::from(pkt.vnet.gso_size)
}

impl Datapath {
    /// True when the packet must not go into the tunnel as it is: bigger than `pod_mtu` (per
    /// segment for GSO) with DF set.
    pub(crate) fn too_big_for_tunnel(&self, pkt: &PacketBuf, ip: &Ipv4Info) -> bool {
        wire_ip_len(pkt, ip) > usize::from(self.config.pod_mtu) && ip.df()
    }

    /// Routes a pod's IPv4 packet to a peer node: PMTU check, inner MACs rewritten to
    /// (our VTEP -> peer VTEP), TTL decremented, VXLAN header pushed.
    pub(crate) fn to_peer(
        &self,
        port: &PortEntry,
        peer: &PeerEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
    ) -> Result<Verdict, DropReason> {
        let mtu = self.config.pod_mtu;
        if self.too_big_for_tunnel(pkt, ip) {
            return self.reject(
                port,
                pkt,
                ip,
                DropReason::TooBig,
                icmp::ICMP_DEST_UNREACH,
                icmp::CODE_FRAG_NEEDED,
                u32::from(mtu),
            );
        }
        forward_l3(pkt, ip, self.config.vtep_mac, peer.vtep_mac);
        self.encap_to(peer, pkt)
    }

    /// Pushes the VXLAN header in front of the inner frame, counts the inner frame as sent to
    /// `peer` and returns `ToTunnel`.
    pub(crate) fn encap_to(
        &self,
        peer: &PeerEntry,
        pkt: &mut PacketBuf,
    ) -> Result<Verdict, DropReason> {
        let inner = pkt.len();
        let h = pkt.push_front(VXLAN_HDR_LEN).ok_or(DropReason::Malformed)?;
        VxlanHdr {
            vni: self.config.vni,
        }
        .write(h);
        peer.counters.tx(inner);
        Ok(Verdict::ToTunnel {
            peer: peer.id,
            dst: SocketAddrV4::new(peer.underlay, self.config.vxlan_port),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7348 header for VNI 0x123456.
    const GOLDEN: [u8; 8] = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0];

    #[test]
    fn golden_header_round_trips() {
        let mut b = [0xffu8; 8];
        VxlanHdr { vni: 0x123456 }.write(&mut b);
        assert_eq!(b, GOLDEN);
        assert_eq!(VxlanHdr::parse(&GOLDEN), Ok(VxlanHdr { vni: 0x123456 }));
    }

    #[test]
    fn parse_rejects_short_and_flagless() {
        assert_eq!(
            VxlanHdr::parse(&GOLDEN[..7]),
            Err(DropReason::TunnelMalformed)
        );
        let mut b = GOLDEN;
        b[0] = 0;
        assert_eq!(VxlanHdr::parse(&b), Err(DropReason::TunnelMalformed));
        b[0] = 0xff; // reserved flag bits are ignored
        assert!(VxlanHdr::parse(&b).is_ok());
    }
}
