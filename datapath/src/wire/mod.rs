//! Wire helpers shared by the forwarding modules: field offsets, checked reads and writes,
//! Internet checksums (RFC 1071) and their incremental update (RFC 1624), and a validated
//! view of an IPv4 header.
//!
//! Contract (smoltcp's): parsing goes through etherparse slices or through the checked views
//! ([`Ipv4Info::parse`], [`l4::L4Info::parse`], ...), which check every length once. The
//! readers and writers below take offsets derived from such a view and still check them:
//! out of range is an [`OutOfRange`] error (a [`DropReason::Malformed`] once it reaches a
//! verdict), never a silent 0, a silent non-write, or a panic. `clippy::indexing_slicing`
//! and `clippy::cast_possible_truncation` are denied in this layer; the few justified
//! exceptions say why where they are allowed.
//!
//! The wire layer holds no state and imports nothing from `state` or `pipeline`.

#![deny(clippy::indexing_slicing, clippy::cast_possible_truncation)]

pub mod arp;
pub mod buf;
pub mod dns;
pub mod frag;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod l4;
pub mod nat;
pub mod vxlan;

use crate::counters::DropReason;
use crate::types::Mac;
use buf::PacketBuf;
use etherparse::Ipv4HeaderSlice;
use std::net::Ipv4Addr;

/// Length of an Ethernet II header.
pub const ETH_LEN: usize = 14;
/// Offset of the destination MAC.
pub const ETH_DST: usize = 0;
/// Offset of the source MAC.
pub const ETH_SRC: usize = 6;
/// Offset of the ethertype.
pub const ETH_TYPE: usize = 12;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Offsets inside an IPv4 header.
pub mod ip {
    /// Total length.
    pub const TOTAL_LEN: usize = 2;
    /// Identification.
    pub const ID: usize = 4;
    /// Flags and fragment offset.
    pub const FRAG: usize = 6;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTO: usize = 9;
    /// Header checksum.
    pub const CSUM: usize = 10;
    /// Source address.
    pub const SRC: usize = 12;
    /// Destination address.
    pub const DST: usize = 16;
    /// Length of a header without options.
    pub const MIN_LEN: usize = 20;
    /// Don't Fragment flag (in the 16-bit flags/offset word).
    pub const DF: u16 = 0x4000;
    /// More Fragments flag.
    pub const MF: u16 = 0x2000;
    /// Fragment offset mask (units of 8 bytes).
    pub const OFFSET_MASK: u16 = 0x1fff;
}

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// A read or write outside the buffer. Every offset the datapath uses comes from a header
/// parsed (and length-checked) before, so this is a logic error of the caller: it is
/// reported, as [`DropReason::Malformed`] when it reaches a verdict, instead of being
/// ignored (a read of 0, a write of nothing) or panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    /// Where the access started.
    pub off: usize,
    /// How many bytes it needed.
    pub len: usize,
}

impl From<OutOfRange> for DropReason {
    fn from(_: OutOfRange) -> DropReason {
        DropReason::Malformed
    }
}

/// The range `off..off + len`, or [`OutOfRange`] when it does not lie inside `b_len` bytes
/// (or overflows).
fn range(b_len: usize, off: usize, len: usize) -> Result<std::ops::Range<usize>, OutOfRange> {
    match off.checked_add(len) {
        Some(end) if end <= b_len => Ok(off..end),
        _ => Err(OutOfRange { off, len }),
    }
}

/// The `N` bytes at `off`.
pub fn bytes_at<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], OutOfRange> {
    let r = range(b.len(), off, N)?;
    b.get(r)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(OutOfRange { off, len: N })
}

/// The byte at `off`.
pub fn u8_at(b: &[u8], off: usize) -> Result<u8, OutOfRange> {
    b.get(off).copied().ok_or(OutOfRange { off, len: 1 })
}

/// Reads a big-endian u16 at `off`.
pub fn be16(b: &[u8], off: usize) -> Result<u16, OutOfRange> {
    bytes_at(b, off).map(u16::from_be_bytes)
}

/// Reads a big-endian u32 at `off`.
pub fn be32(b: &[u8], off: usize) -> Result<u32, OutOfRange> {
    bytes_at(b, off).map(u32::from_be_bytes)
}

/// Reads a MAC at `off`.
pub fn mac_at(b: &[u8], off: usize) -> Result<Mac, OutOfRange> {
    bytes_at(b, off).map(Mac)
}

/// Reads an IPv4 address at `off`.
pub fn ipv4_at(b: &[u8], off: usize) -> Result<Ipv4Addr, OutOfRange> {
    be32(b, off).map(Ipv4Addr::from)
}

/// Writes `src` at `off`; nothing is written when it does not fit.
pub fn put(b: &mut [u8], off: usize, src: &[u8]) -> Result<(), OutOfRange> {
    let r = range(b.len(), off, src.len())?;
    let d = b.get_mut(r).ok_or(OutOfRange {
        off,
        len: src.len(),
    })?;
    d.copy_from_slice(src);
    Ok(())
}

/// Writes the byte `v` at `off`.
pub fn put8(b: &mut [u8], off: usize, v: u8) -> Result<(), OutOfRange> {
    put(b, off, &[v])
}

/// Writes a big-endian u16 at `off`.
pub fn put16(b: &mut [u8], off: usize, v: u16) -> Result<(), OutOfRange> {
    put(b, off, &v.to_be_bytes())
}

/// Writes a big-endian u32 at `off`.
pub fn put32(b: &mut [u8], off: usize, v: u32) -> Result<(), OutOfRange> {
    put(b, off, &v.to_be_bytes())
}

/// A length as the u16 of a header field (IPv4 total length, UDP length, vnet offsets), or
/// [`OutOfRange`] when it does not fit in 16 bits.
pub fn len16(len: usize) -> Result<u16, OutOfRange> {
    u16::try_from(len).map_err(|_| OutOfRange { off: 0, len })
}

/// Sums `data` as big-endian 16-bit words (odd tail padded with zero) onto `acc`, unfolded.
pub fn csum_add(mut acc: u64, data: &[u8]) -> u64 {
    // Eight bytes at a time as two big-endian 32-bit words: the one's complement sum of
    // 32-bit words folds to the same 16-bit sum as the sum of 16-bit words (RFC 1071 §2),
    // and a u64 cannot overflow before 2^32 additions. With 16-bit words, `tcp_csum_ok` was
    // 17.7 % of the receiving daemon's samples in a cross-node iperf3 profile; with this,
    // 7.5 % (perf record, same setup, both on a loaded machine).
    let (chunks, rest) = data.as_chunks::<8>();
    for c in chunks {
        let w = u64::from_be_bytes(*c);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let (words, tail) = rest.as_chunks::<2>();
    for c in words {
        acc += u64::from(u16::from_be_bytes(*c));
    }
    if let [last] = tail {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum into 16 bits (not complemented).
pub fn csum_fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    #[allow(clippy::cast_possible_truncation)] // the loop left at most 16 bits
    let folded = acc as u16;
    folded
}

/// The Internet checksum of `data` (RFC 1071): the complement of the folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !csum_fold(csum_add(0, data))
}

/// The unfolded sum of the TCP/UDP pseudo-header for IPv4.
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: usize) -> u64 {
    let acc = csum_add(0, &src.octets());
    let acc = csum_add(acc, &dst.octets());
    acc + u64::from(proto) + (l4_len as u64 & 0xffff) + ((l4_len as u64) >> 16)
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered data changed from
/// `old` to `new`: `HC' = ~(~HC + ~m + m')`.
pub fn csum_update16(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!hc) + u64::from(!old) + u64::from(new);
    !csum_fold(acc)
}

/// Recomputes the header checksum of the IPv4 header at `b[off..off + hlen]` in place.
pub fn ipv4_fix_checksum(b: &mut [u8], off: usize, hlen: usize) -> Result<(), OutOfRange> {
    let r = range(b.len(), off, hlen)?;
    put16(b, off + ip::CSUM, 0)?;
    let c = checksum(b.get(r).ok_or(OutOfRange { off, len: hlen })?);
    put16(b, off + ip::CSUM, c)
}

/// Decrements the TTL of the IPv4 header at `off` and updates its checksum incrementally.
/// The caller has checked that the TTL is above 1.
pub fn ipv4_dec_ttl(b: &mut [u8], off: usize) -> Result<(), OutOfRange> {
    let old = be16(b, off + ip::TTL)?;
    let new = old.wrapping_sub(0x0100);
    let hc = be16(b, off + ip::CSUM)?;
    put16(b, off + ip::TTL, new)?;
    put16(b, off + ip::CSUM, csum_update16(hc, old, new))
}

/// Writes the Ethernet source and destination MACs of the frame in `b`.
pub fn set_eth_addrs(b: &mut [u8], src: Mac, dst: Mac) -> Result<(), OutOfRange> {
    put(b, ETH_DST, &dst.0)?;
    put(b, ETH_SRC, &src.0)
}

/// The fields of a validated IPv4 header inside a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    /// Offset of the header in the frame.
    pub off: usize,
    /// Header length in bytes (`ihl * 4`).
    pub hlen: usize,
    /// Total length of the IP packet.
    pub total_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Protocol number.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// The 16-bit flags and fragment offset word.
    pub frag: u16,
}

impl Ipv4Info {
    /// Parses and validates the IPv4 header at `frame[off..]`: version 4, `ihl >= 5`, the
    /// header fits, and `ihl * 4 <= total length <= bytes available`. The header checksum is
    /// not verified (the receiving host does that).
    pub fn parse(frame: &[u8], off: usize) -> Option<Ipv4Info> {
        let rest = frame.get(off..)?;
        let h = Ipv4HeaderSlice::from_slice(rest).ok()?;
        let hlen = usize::from(h.ihl()) * 4;
        let total_len = usize::from(h.total_len());
        if total_len < hlen || total_len > rest.len() {
            return None;
        }
        Some(Ipv4Info {
            off,
            hlen,
            total_len,
            ttl: h.ttl(),
            proto: h.protocol().0,
            src: h.source_addr(),
            dst: h.destination_addr(),
            frag: be16(rest, ip::FRAG).ok()?,
        })
    }

    /// True when the Don't Fragment flag is set.
    pub fn df(&self) -> bool {
        self.frag & ip::DF != 0
    }

    /// True when this is a fragment (More Fragments set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.frag & (ip::MF | ip::OFFSET_MASK) != 0
    }

    /// True when this is a fragment other than the first one.
    pub fn is_later_fragment(&self) -> bool {
        self.frag & ip::OFFSET_MASK != 0
    }

    /// Offset of the L4 header in the frame.
    pub fn l4_off(&self) -> usize {
        self.off + self.hlen
    }

    /// Offset one past the IP packet's last byte in the frame.
    pub fn end(&self) -> usize {
        self.off + self.total_len
    }
}

/// Turns a routed IPv4 frame into one leaving the router: trims Ethernet padding, sets the
/// MACs and decrements the TTL (incremental checksum). The caller has checked TTL > 1.
pub fn forward_l3(
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
    src: Mac,
    dst: Mac,
) -> Result<(), OutOfRange> {
    if ip.end() < pkt.len() {
        pkt.set_len(ip.end());
    }
    let f = pkt.frame_mut();
    set_eth_addrs(f, src, dst)?;
    ipv4_dec_ttl(f, ip.off)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // tests may panic
mod tests {
    use super::*;

    /// An IPv4 header: 198.18.1.2 -> 198.18.2.3, TTL 64, UDP, id 0, DF, checksum 0xab50.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xab, 0x50, 198, 18, 1, 2, 198,
        18, 2, 3,
    ];

    /// The plain RFC 1071 sum over 16-bit words, the reference for [`csum_add`].
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            acc += u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0));
        }
        csum_fold(acc)
    }

    proptest::proptest! {
        #[test]
        fn wide_sum_equals_word_sum(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            proptest::prop_assert_eq!(csum_fold(csum_add(0, &data)), reference_sum(&data));
        }
    }

    #[test]
    fn checksum_of_known_header_verifies() {
        let mut h = HDR;
        assert_eq!(checksum(&h), 0);
        ipv4_fix_checksum(&mut h, 0, 20).unwrap();
        assert_eq!(be16(&h, ip::CSUM).unwrap(), 0xab50);
    }

    #[test]
    fn ttl_decrement_matches_full_recompute() {
        let mut h = HDR;
        ipv4_dec_ttl(&mut h, 0).unwrap();
        assert_eq!(h[ip::TTL], 63);
        let inc = be16(&h, ip::CSUM).unwrap();
        ipv4_fix_checksum(&mut h, 0, 20).unwrap();
        assert_eq!(inc, be16(&h, ip::CSUM).unwrap());
        assert_eq!(inc, 0xac50);
    }

    #[test]
    fn parse_rejects_bad_lengths() {
        let mut f = vec![0u8; 14];
        f.extend_from_slice(&HDR);
        // total length 0x73 > available.
        assert_eq!(Ipv4Info::parse(&f, 14), None);
        f[14 + 3] = 20;
        let i = Ipv4Info::parse(&f, 14).unwrap();
        assert_eq!((i.hlen, i.total_len, i.ttl, i.proto), (20, 20, 64, 17));
        assert!(i.df() && !i.is_fragment());
        f[14 + 3] = 19; // shorter than the header
        assert_eq!(Ipv4Info::parse(&f, 14), None);
        f[14 + 3] = 20;
        f[14] = 0x44; // ihl 4
        assert_eq!(Ipv4Info::parse(&f, 14), None);
        f[14] = 0x65; // version 6
        assert_eq!(Ipv4Info::parse(&f, 14), None);
        assert_eq!(Ipv4Info::parse(&f, 100), None);
    }

    #[test]
    fn out_of_range_is_an_error_not_a_zero_or_a_silent_non_write() {
        let mut b = [1u8, 2, 3];
        assert_eq!(be16(&b, 1), Ok(0x0203));
        assert_eq!(be16(&b, 2), Err(OutOfRange { off: 2, len: 2 }));
        assert_eq!(be32(&b, 0), Err(OutOfRange { off: 0, len: 4 }));
        assert_eq!(mac_at(&b, 0), Err(OutOfRange { off: 0, len: 6 }));
        assert_eq!(
            ipv4_at(&b, usize::MAX),
            Err(OutOfRange {
                off: usize::MAX,
                len: 4
            })
        );
        assert_eq!(u8_at(&b, 3), Err(OutOfRange { off: 3, len: 1 }));
        assert_eq!(put16(&mut b, 2, 0xffff), Err(OutOfRange { off: 2, len: 2 }));
        assert_eq!(
            put32(&mut b, usize::MAX - 1, 0),
            Err(OutOfRange {
                off: usize::MAX - 1,
                len: 4
            })
        );
        assert_eq!(b, [1, 2, 3], "a refused write writes nothing");
        assert_eq!(put8(&mut b, 2, 9), Ok(()));
        assert_eq!(b, [1, 2, 9]);
        let mut h = HDR;
        assert!(ipv4_fix_checksum(&mut h, 4, 20).is_err());
        assert_eq!(h, HDR, "nothing written when the header does not fit");
        assert!(ipv4_dec_ttl(&mut h[..9], 0).is_err());
        assert_eq!(len16(65535), Ok(65535));
        assert_eq!(len16(65536), Err(OutOfRange { off: 0, len: 65536 }));
        assert_eq!(
            DropReason::from(OutOfRange { off: 0, len: 1 }),
            DropReason::Malformed
        );
    }

    #[test]
    fn odd_length_sum_pads_with_zero() {
        assert_eq!(csum_add(0, &[0x01]), 0x0100);
        assert_eq!(csum_fold(0x1_fffe), 0xffff);
    }

    proptest::proptest! {
        #[test]
        fn incremental_update_equals_full_recompute(
            mut h in proptest::collection::vec(proptest::num::u8::ANY, 20),
            word in 0usize..10, new in proptest::num::u16::ANY,
        ) {
            if word == 5 { return Ok(()); } // the checksum word itself
            h[10] = 0; h[11] = 0;
            let c = checksum(&h);
            put16(&mut h, 10, c).unwrap();
            let old = be16(&h, word * 2).unwrap();
            put16(&mut h, word * 2, new).unwrap();
            let inc = csum_update16(c, old, new);
            put16(&mut h, 10, inc).unwrap();
            // Both results verify; they are equal up to the +0/-0 ambiguity of one's complement.
            proptest::prop_assert_eq!(csum_fold(csum_add(0, &h)), 0xffff);
            put16(&mut h, 10, 0).unwrap();
            let full = checksum(&h);
            proptest::prop_assert!(inc == full || (inc ^ full) == 0xffff && (inc == 0 || full == 0));
        }
    }
}
