//! VXLAN (RFC 7348): the 8-byte header, and the length a frame puts on the wire for the
//! tunnel's path MTU check. Encapsulation itself (which peer, which MACs, the PMTU answer)
//! is the pipeline's tunnel stage; the outer UDP/IP headers are the shell's socket's business.

use super::buf::PacketBuf;
use super::l4::TCP_DOFF;
use super::{bytes_at, put, Ipv4Info, OutOfRange, PROTO_TCP};
use crate::counters::DropReason;

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
        let [flags, _, _, _, v0, v1, v2, _] =
            bytes_at::<VXLAN_HDR_LEN>(b, 0).map_err(|_| DropReason::TunnelMalformed)?;
        if flags & VXLAN_FLAG_I == 0 {
            return Err(DropReason::TunnelMalformed);
        }
        Ok(VxlanHdr {
            vni: u32::from_be_bytes([0, v0, v1, v2]),
        })
    }

    /// The header's 8 bytes.
    pub fn to_bytes(&self) -> [u8; VXLAN_HDR_LEN] {
        let [_, v0, v1, v2] = (self.vni & 0x00ff_ffff).to_be_bytes();
        [VXLAN_FLAG_I, 0, 0, 0, v0, v1, v2, 0]
    }

    /// Writes the header into the first 8 bytes of `b`; [`OutOfRange`] (nothing written)
    /// when `b` is shorter.
    pub fn write(&self, b: &mut [u8]) -> Result<(), OutOfRange> {
        put(b, 0, &self.to_bytes())
    }
}

/// The largest IPv4 packet the frame puts on the wire: its own length, or for a GSO
/// super-frame the length of one segment (headers plus `gso_size`), as the kernel checks
/// GSO packets against the path MTU (`skb_gso_validate_network_len`).
pub fn wire_ip_len(pkt: &PacketBuf, ip: &Ipv4Info) -> usize {
    if !pkt.vnet.is_gso() {
        return ip.total_len;
    }
    let f = pkt.frame();
    let l4 = ip.l4_off();
    let l4_hdr = match ip.proto {
        PROTO_TCP => f.get(l4 + TCP_DOFF).map_or(20, |b| usize::from(b >> 4) * 4),
        _ => 8,
    };
    ip.hlen + l4_hdr + usize::from(pkt.vnet.gso_size)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // tests may panic
mod tests {
    use super::*;

    /// RFC 7348 header for VNI 0x123456.
    const GOLDEN: [u8; 8] = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0];

    #[test]
    fn golden_header_round_trips() {
        let mut b = [0xffu8; 8];
        VxlanHdr { vni: 0x123456 }.write(&mut b).unwrap();
        assert_eq!(
            VxlanHdr { vni: 0x123456 }.write(&mut b[..7]),
            Err(OutOfRange { off: 0, len: 8 })
        );
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
