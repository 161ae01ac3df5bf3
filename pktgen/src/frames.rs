//! Frame builders for the attack modes ([`crate::attack`]): Ethernet, ARP, IPv4 with UDP or a
//! TCP SYN, VXLAN. Each writes a whole frame into a buffer the caller reuses; checksums are
//! computed (a bad checksum would be a different attack). And a small seeded PRNG.

use std::net::Ipv4Addr;

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// Ethertypes.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// The broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// xorshift64*: fast, seeded, good enough for garbage and port numbers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift must not start at 0).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    /// A random locally administered unicast MAC.
    pub fn mac(&mut self) -> [u8; 6] {
        let mut m = [0; 6];
        self.fill(&mut m);
        m[0] = (m[0] & 0xfc) | 0x02;
        m
    }
}

/// The Internet checksum of `data` starting from the partial sum `sum`.
pub fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Starts `buf` with an Ethernet header.
pub fn eth(buf: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    buf.clear();
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&ethertype.to_be_bytes());
}

/// An ARP request (broadcast) from `mac`/`ip` asking for `target`.
pub fn arp_request(buf: &mut Vec<u8>, mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) {
    eth(buf, BROADCAST, mac, ETHERTYPE_ARP);
    buf.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    buf.extend_from_slice(&mac);
    buf.extend_from_slice(&ip.octets());
    buf.extend_from_slice(&[0; 6]);
    buf.extend_from_slice(&target.octets());
}

/// Appends an IPv4 header (no options, DF clear, TTL 64) for `payload_len` bytes of `proto`.
fn ipv4(buf: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize, id: u16) {
    let start = buf.len();
    let total = (20 + payload_len) as u16;
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&total.to_be_bytes());
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 64, proto, 0, 0]);
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    let c = checksum(&buf[start..start + 20], 0);
    buf[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

/// The TCP/UDP pseudo-header sum.
fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for w in src.octets().chunks(2).chain(dst.octets().chunks(2)) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    s + u32::from(proto) + len as u32
}

/// The addresses of an IPv4 frame.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
}

/// A UDP datagram in an Ethernet frame.
pub fn udp(buf: &mut Vec<u8>, a: Addrs, sport: u16, dport: u16, payload: &[u8], id: u16) {
    eth(buf, a.dst_mac, a.src_mac, ETHERTYPE_IPV4);
    let len = 8 + payload.len();
    ipv4(buf, a.src, a.dst, 17, len, id);
    let start = buf.len();
    buf.extend_from_slice(&sport.to_be_bytes());
    buf.extend_from_slice(&dport.to_be_bytes());
    buf.extend_from_slice(&(len as u16).to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(payload);
    let c = match checksum(&buf[start..], pseudo(a.src, a.dst, 17, len)) {
        0 => 0xffff,
        c => c,
    };
    buf[start + 6..start + 8].copy_from_slice(&c.to_be_bytes());
}

/// A TCP SYN (with an MSS option) in an Ethernet frame.
pub fn tcp_syn(buf: &mut Vec<u8>, a: Addrs, sport: u16, dport: u16, seq: u32, id: u16) {
    eth(buf, a.dst_mac, a.src_mac, ETHERTYPE_IPV4);
    let len = 24;
    ipv4(buf, a.src, a.dst, 6, len, id);
    let start = buf.len();
    buf.extend_from_slice(&sport.to_be_bytes());
    buf.extend_from_slice(&dport.to_be_bytes());
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]); // ack
    buf.extend_from_slice(&[6 << 4, 0x02]); // data offset 6 words, SYN
    buf.extend_from_slice(&64240u16.to_be_bytes()); // window
    buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    buf.extend_from_slice(&[2, 4, 0x05, 0x8c]); // MSS 1420
    let c = checksum(&buf[start..], pseudo(a.src, a.dst, 6, len));
    buf[start + 16..start + 18].copy_from_slice(&c.to_be_bytes());
}

/// A VXLAN datagram payload: the 8-byte header with `vni`, then `inner`.
pub fn vxlan(buf: &mut Vec<u8>, vni: u32, inner: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&[0x08, 0, 0, 0]);
    buf.extend_from_slice(&(vni << 8).to_be_bytes());
    buf.extend_from_slice(inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Addrs {
        Addrs {
            src_mac: [0x0a, 0x58, 198, 18, 1, 2],
            dst_mac: [0x0a, 0x58, 198, 18, 1, 1],
            src: Ipv4Addr::new(198, 18, 1, 2),
            dst: Ipv4Addr::new(198, 19, 96, 20),
        }
    }

    #[test]
    fn syn_has_valid_checksums() {
        let mut b = Vec::new();
        tcp_syn(&mut b, addrs(), 40000, 80, 7, 1);
        assert_eq!(b.len(), 14 + 20 + 24);
        assert_eq!(checksum(&b[14..34], 0), 0, "IPv4 header checksum");
        let tcp = &b[34..];
        assert_eq!(checksum(tcp, pseudo(addrs().src, addrs().dst, 6, 24)), 0);
        assert_eq!(tcp[13], 0x02, "SYN only");
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 40000);
    }

    #[test]
    fn udp_and_arp_are_well_formed() {
        let mut b = Vec::new();
        udp(&mut b, addrs(), 5000, 53, b"hello", 9);
        assert_eq!(b.len(), 14 + 20 + 8 + 5);
        assert_eq!(checksum(&b[14..34], 0), 0);
        assert_eq!(
            checksum(&b[34..], pseudo(addrs().src, addrs().dst, 17, 13)),
            0
        );
        let (mac, ip) = (addrs().src_mac, addrs().src);
        arp_request(&mut b, mac, ip, Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(b.len(), 42);
        assert_eq!(&b[..6], &BROADCAST);
        assert_eq!(&b[12..14], &[8, 6]);
        assert_eq!(&b[28..32], &[198, 18, 1, 2]);
        assert_eq!(&b[38..42], &[198, 18, 1, 1]);
        let mut v = Vec::new();
        vxlan(&mut v, 0x123456, &b);
        assert_eq!(&v[..8], &[8, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    }

    #[test]
    fn rng_is_seeded_and_macs_are_unicast() {
        let (mut a, mut b) = (Rng::new(5), Rng::new(5));
        assert_eq!(a.next_u64(), b.next_u64());
        for _ in 0..100 {
            let m = a.mac();
            assert_eq!(m[0] & 3, 2, "{m:?}");
            let r = a.range(10, 12);
            assert!((10..=12).contains(&r));
        }
        let mut buf = [0u8; 13];
        a.fill(&mut buf);
        assert!(buf.iter().any(|&x| x != 0));
    }
}
