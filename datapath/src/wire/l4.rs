//! The transport layer as the datapath sees it: the protocol of a service port or
//! connection ([`L4Proto`]), the 5-tuple ([`Tuple`]), the TCP flag bits and header offsets
//! (defined once here), and a checked view of a TCP/UDP header ([`L4Info`]).

use super as wire;
use super::buf::PacketBuf;
use super::{be16, icmp, ip, Ipv4Info, OutOfRange, ETH_LEN, PROTO_TCP, PROTO_UDP};
use crate::types::Mac;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// A transport protocol a service port carries (`tcp`, `udp` in saved conntrack tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A 5-tuple as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// TCP or UDP.
    pub proto: L4Proto,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port.
    pub dport: u16,
}

/// TCP flag FIN (byte 13 of the TCP header).
pub const TCP_FIN: u8 = 0x01;
/// TCP flag SYN.
pub const TCP_SYN: u8 = 0x02;
/// TCP flag RST.
pub const TCP_RST: u8 = 0x04;
/// TCP flag PSH.
pub const TCP_PSH: u8 = 0x08;
/// TCP flag ACK.
pub const TCP_ACK: u8 = 0x10;
/// TCP flag CWR.
pub const TCP_CWR: u8 = 0x80;

/// Offset of the sequence number inside a TCP header.
pub const TCP_SEQ: usize = 4;
/// Offset of the acknowledgment number inside a TCP header.
pub const TCP_ACK_NO: usize = 8;
/// Offset of the data offset (high nibble) inside a TCP header.
pub const TCP_DOFF: usize = 12;
/// Offset of the flags byte inside a TCP header.
pub const TCP_FLAGS: usize = 13;
/// Offset of the checksum inside a TCP header.
pub const TCP_CSUM: usize = 16;
/// Length of a TCP header without options.
pub const TCP_MIN_LEN: usize = 20;
/// Offset of the checksum inside a UDP header.
pub const UDP_CSUM: usize = 6;
/// Length of a UDP header.
pub const UDP_LEN: usize = 8;

/// The transport header of a TCP or UDP packet, validated to lie inside the IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4Info {
    /// TCP or UDP.
    pub proto: L4Proto,
    /// Offset of the L4 header in the frame.
    pub off: usize,
    /// Length of the L4 header (TCP data offset, or 8).
    pub hlen: usize,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// TCP flags (0 for UDP).
    pub flags: u8,
}

impl L4Info {
    /// Parses the TCP or UDP header of the IPv4 packet `ip` in `f`. `None` for other
    /// protocols, later fragments, and headers that do not fit.
    pub fn parse(f: &[u8], ip: &Ipv4Info) -> Option<L4Info> {
        if ip.is_later_fragment() {
            return None;
        }
        let off = ip.l4_off();
        let avail = ip.end().checked_sub(off)?;
        let (proto, hlen, flags) = match ip.proto {
            PROTO_TCP => {
                let doff = usize::from(*f.get(off + TCP_DOFF)? >> 4) * 4;
                let flags = *f.get(off + TCP_FLAGS)?;
                (L4Proto::Tcp, doff, flags)
            }
            PROTO_UDP => (L4Proto::Udp, UDP_LEN, 0),
            _ => return None,
        };
        if hlen < UDP_LEN || (proto == L4Proto::Tcp && hlen < TCP_MIN_LEN) || hlen > avail {
            return None;
        }
        Some(L4Info {
            proto,
            off,
            hlen,
            sport: be16(f, off).ok()?,
            dport: be16(f, off + 2).ok()?,
            flags,
        })
    }

    /// The packet's 5-tuple.
    pub fn tuple(&self, ip: &Ipv4Info) -> Tuple {
        Tuple {
            proto: self.proto,
            src: ip.src,
            sport: self.sport,
            dst: ip.dst,
            dport: self.dport,
        }
    }

    /// Offset of the checksum field in the frame.
    pub fn csum_at(&self) -> usize {
        self.off + self.csum_rel()
    }

    /// Offset of the checksum field inside the L4 header.
    pub fn csum_rel(&self) -> usize {
        match self.proto {
            L4Proto::Tcp => TCP_CSUM,
            L4Proto::Udp => UDP_CSUM,
        }
    }

    /// Length of the L4 payload.
    pub fn payload_len(&self, ip: &Ipv4Info) -> usize {
        ip.end().saturating_sub(self.off + self.hlen)
    }
}

/// Rewrites the TCP segment in `pkt` into the RST its destination answers when nothing
/// listens (RFC 793, "reset generation"): from its destination back to its source; with
/// ACK in the segment, `seq = SEG.ACK` and RST alone; else `seq = 0`, RST|ACK and
/// `ack = SEG.SEQ + SEG.LEN` (SYN and FIN counting one each). No options, window 0.
pub fn tcp_reset(
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    l4: &L4Info,
    src_mac: Mac,
) -> Result<(), OutOfRange> {
    let f = pkt.frame();
    let dst_mac = wire::mac_at(f, wire::ETH_SRC)?;
    let seg_seq = wire::be32(f, l4.off + TCP_SEQ)?;
    let seg_ack = wire::be32(f, l4.off + TCP_ACK_NO)?;
    let ctl = u32::from(l4.flags & TCP_SYN != 0) + u32::from(l4.flags & TCP_FIN != 0);
    let seg_len = u32::from(wire::len16(l4.payload_len(ip))?).wrapping_add(ctl);
    let (seq, ack, flags) = if l4.flags & TCP_ACK != 0 {
        (seg_ack, 0, TCP_RST)
    } else {
        (0, seg_seq.wrapping_add(seg_len), TCP_RST | TCP_ACK)
    };
    let total = ip::MIN_LEN + TCP_MIN_LEN;
    pkt.set_len(ETH_LEN + total); // every TCP frame has at least this much
    pkt.vnet = Default::default();
    let f = pkt.frame_mut();
    wire::set_eth_addrs(f, src_mac, dst_mac)?;
    wire::put16(f, wire::ETH_TYPE, wire::ETHERTYPE_IPV4)?;
    icmp::write_ipv4(f, ETH_LEN, 0, total, 0, PROTO_TCP, ip.dst, ip.src)?;
    let mut h = [0u8; TCP_MIN_LEN];
    wire::put16(&mut h, 0, l4.dport)?;
    wire::put16(&mut h, 2, l4.sport)?;
    wire::put32(&mut h, TCP_SEQ, seq)?;
    wire::put32(&mut h, TCP_ACK_NO, ack)?;
    wire::put8(&mut h, TCP_DOFF, 5 << 4)?; // 5 words, no options
    wire::put8(&mut h, TCP_FLAGS, flags)?;
    let sum = wire::pseudo_header_sum(ip.dst, ip.src, PROTO_TCP, TCP_MIN_LEN);
    let c = !wire::csum_fold(wire::csum_add(sum, &h));
    wire::put16(&mut h, TCP_CSUM, c)?;
    wire::put(f, ETH_LEN + ip::MIN_LEN, &h)
}
