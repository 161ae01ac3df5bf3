//! Packet capture, the pure parts: the filter a capture applies to each frame, and the
//! outer headers a tunnel datagram is written with.
//!
//! Contract: no I/O, no allocation in [`Filter::matches`] and [`Filter::matches_tunnel`],
//! and no panic on any input (a frame too short for a field simply does not match a term
//! about it). The shell decides where frames are tapped, queues them and streams them; this
//! module only decides whether a frame is wanted and builds the bytes that represent it.

use crate::wire::{be16, ipv4_at, u8_at, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_LEN, ETH_TYPE};
use std::net::{Ipv4Addr, SocketAddrV4};

/// One term of a capture filter (see `vswitch_proto::validate::capture_filter`, which
/// parses the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    /// The IPv4 source or destination (or an ARP sender or target address).
    Host(Ipv4Addr),
    /// The TCP or UDP source or destination port (first fragments only).
    Port(u16),
    /// IPv4 TCP.
    Tcp,
    /// IPv4 UDP.
    Udp,
    /// IPv4 ICMP.
    Icmp,
    /// ARP.
    Arp,
}

/// A capture filter: every term must match; no terms match every frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    terms: Vec<Term>,
}

/// What a filter looks at in an Ethernet frame.
#[derive(Default)]
struct Fields {
    ethertype: u16,
    /// IPv4 protocol number (0 for non-IPv4).
    proto: u8,
    addrs: Option<(Ipv4Addr, Ipv4Addr)>,
    ports: Option<(u16, u16)>,
}

impl Fields {
    fn parse(f: &[u8]) -> Fields {
        let Ok(ethertype) = be16(f, ETH_TYPE) else {
            return Fields::default();
        };
        let mut out = Fields {
            ethertype,
            ..Fields::default()
        };
        match ethertype {
            ETHERTYPE_ARP => {
                // Sender and target protocol addresses of an Ethernet/IPv4 ARP packet.
                if let (Ok(s), Ok(t)) = (ipv4_at(f, ETH_LEN + 14), ipv4_at(f, ETH_LEN + 24)) {
                    out.addrs = Some((s, t));
                }
            }
            ETHERTYPE_IPV4 => {
                let (Ok(vihl), Ok(proto), Ok(frag), Ok(s), Ok(d)) = (
                    u8_at(f, ETH_LEN),
                    u8_at(f, ETH_LEN + 9),
                    be16(f, ETH_LEN + 6),
                    ipv4_at(f, ETH_LEN + 12),
                    ipv4_at(f, ETH_LEN + 16),
                ) else {
                    return out;
                };
                out.proto = proto;
                out.addrs = Some((s, d));
                let l4 = ETH_LEN + usize::from(vihl & 0x0f) * 4;
                if (proto == 6 || proto == 17) && frag & 0x1fff == 0 {
                    if let (Ok(sp), Ok(dp)) = (be16(f, l4), be16(f, l4 + 2)) {
                        out.ports = Some((sp, dp));
                    }
                }
            }
            _ => {}
        }
        out
    }
}

impl Filter {
    /// A filter of these terms.
    pub fn new(terms: Vec<Term>) -> Filter {
        Filter { terms }
    }

    /// Whether the Ethernet frame `frame` (a port's frame) is wanted.
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.matches_with(frame, None)
    }

    /// Whether a tunnel datagram is wanted: `payload` is the UDP payload (VXLAN header, then
    /// the inner Ethernet frame). The terms apply to the inner frame, but `host` also
    /// matches the outer addresses (the peer's or this node's underlay address).
    pub fn matches_tunnel(&self, outer_src: Ipv4Addr, outer_dst: Ipv4Addr, payload: &[u8]) -> bool {
        let inner = payload
            .get(crate::wire::vxlan::VXLAN_HDR_LEN..)
            .unwrap_or_default();
        self.matches_with(inner, Some((outer_src, outer_dst)))
    }

    fn matches_with(&self, frame: &[u8], outer: Option<(Ipv4Addr, Ipv4Addr)>) -> bool {
        if self.terms.is_empty() {
            return true;
        }
        let f = Fields::parse(frame);
        let is_ip = f.ethertype == ETHERTYPE_IPV4;
        self.terms.iter().all(|t| match *t {
            Term::Host(ip) => {
                let has =
                    |a: Option<(Ipv4Addr, Ipv4Addr)>| a.is_some_and(|(s, d)| s == ip || d == ip);
                has(f.addrs) || has(outer)
            }
            Term::Port(p) => f.ports.is_some_and(|(s, d)| s == p || d == p),
            Term::Tcp => is_ip && f.proto == 6,
            Term::Udp => is_ip && f.proto == 17,
            Term::Icmp => is_ip && f.proto == 1,
            Term::Arp => f.ethertype == ETHERTYPE_ARP,
        })
    }
}

/// Bytes of the outer headers [`tunnel_frame`] puts in front of a datagram: Ethernet,
/// IPv4 (no options), UDP.
pub const TUNNEL_HDRS_LEN: usize = ETH_LEN + 20 + 8;

/// The MAC a capture shows for an underlay address: `02:00` then the address (locally
/// administered; the engine never sees the underlay's real MACs).
pub fn underlay_mac(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x00, a, b, c, d]
}

/// Appends to `out` a whole Ethernet/IPv4/UDP frame carrying `payload` (a VXLAN datagram)
/// from `src` to `dst`, as it would appear on the underlay: the engine only sees UDP
/// payloads and socket addresses, so the outer headers are synthesized. The MACs are
/// [`underlay_mac`]s, the IPv4 header has TTL 64, DF set, id 0 and a correct checksum; the
/// UDP checksum is 0 ("none", valid in IPv4). A payload too long for one IPv4 packet
/// (impossible for a real datagram) is cut to fit.
pub fn tunnel_frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], out: &mut Vec<u8>) {
    let max = usize::from(u16::MAX) - 28;
    let payload = payload.get(..max).unwrap_or(payload);
    // Cannot truncate: at most 65535 after the cut above.
    #[allow(clippy::cast_possible_truncation)]
    let (ip_len, udp_len) = ((payload.len() + 28) as u16, (payload.len() + 8) as u16);
    out.reserve(TUNNEL_HDRS_LEN + payload.len());
    out.extend_from_slice(&underlay_mac(*dst.ip()));
    out.extend_from_slice(&underlay_mac(*src.ip()));
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let sum = crate::wire::checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&ip);
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);

    /// An Ethernet/IPv4 frame of protocol `proto` from A to B with ports 40000 -> 80.
    fn ipv4(proto: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = proto;
        f[26..30].copy_from_slice(&A.octets());
        f[30..34].copy_from_slice(&B.octets());
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f
    }

    fn arp() -> Vec<u8> {
        let mut f = vec![0u8; 14 + 28];
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f[28..32].copy_from_slice(&A.octets());
        f[38..42].copy_from_slice(&B.octets());
        f
    }

    fn filter(terms: &[Term]) -> Filter {
        Filter::new(terms.to_vec())
    }

    #[test]
    fn terms_match_their_fields_and_all_must_match() {
        let tcp = ipv4(6);
        assert!(filter(&[]).matches(&tcp));
        assert!(
            filter(&[]).matches(&[]),
            "no terms: everything, even garbage"
        );
        assert!(filter(&[Term::Tcp, Term::Host(A), Term::Port(80)]).matches(&tcp));
        assert!(filter(&[Term::Host(B), Term::Port(40000)]).matches(&tcp));
        assert!(!filter(&[Term::Tcp, Term::Port(81)]).matches(&tcp));
        assert!(!filter(&[Term::Udp]).matches(&tcp));
        assert!(filter(&[Term::Udp, Term::Port(80)]).matches(&ipv4(17)));
        assert!(filter(&[Term::Icmp, Term::Host(A)]).matches(&ipv4(1)));
        assert!(
            !filter(&[Term::Port(80)]).matches(&ipv4(1)),
            "ICMP has no ports"
        );
        assert!(filter(&[Term::Arp, Term::Host(B)]).matches(&arp()));
        assert!(!filter(&[Term::Arp]).matches(&tcp));
        assert!(!filter(&[Term::Tcp]).matches(&arp()));
        let mut later = ipv4(6);
        later[14 + 7] = 1; // a later fragment: no ports in it
        assert!(!filter(&[Term::Port(80)]).matches(&later));
        assert!(filter(&[Term::Host(A)]).matches(&later));
    }

    #[test]
    fn short_frames_match_nothing_but_never_panic() {
        let full = ipv4(6);
        let f = filter(&[Term::Host(A), Term::Port(80), Term::Tcp]);
        for n in 0..full.len() {
            let _ = f.matches(&full[..n]);
            let _ = f.matches_tunnel(A, B, &full[..n]);
        }
        assert!(!f.matches(&full[..14 + 20]), "no ports yet");
    }

    #[test]
    fn tunnel_filters_look_inside_and_at_the_outer_hosts() {
        let mut payload = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        payload.extend_from_slice(&ipv4(6));
        let peer = Ipv4Addr::new(198, 19, 0, 2);
        let me = Ipv4Addr::new(198, 19, 0, 1);
        assert!(filter(&[Term::Tcp, Term::Port(80)]).matches_tunnel(peer, me, &payload));
        assert!(filter(&[Term::Host(peer)]).matches_tunnel(peer, me, &payload));
        assert!(filter(&[Term::Host(A)]).matches_tunnel(peer, me, &payload));
        assert!(
            !filter(&[Term::Udp]).matches_tunnel(peer, me, &payload),
            "the inner frame"
        );
    }

    #[test]
    fn tunnel_frames_have_golden_outer_headers() {
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 2), 4789);
        let dst = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 1), 4789);
        let payload = [0x08, 0, 0, 0, 0, 0, 1, 0];
        let mut out = vec![0xee]; // appended, not overwritten
        tunnel_frame(src, dst, &payload, &mut out);
        #[rustfmt::skip]
        let want: [u8; 1 + TUNNEL_HDRS_LEN + 8] = [
            0xee,
            0x02, 0x00, 198, 19, 0, 1,   0x02, 0x00, 198, 19, 0, 2,   0x08, 0x00,
            0x45, 0x00, 0x00, 36,   0x00, 0x00, 0x40, 0x00,   64, 17, 0x00, 0x00,
            198, 19, 0, 2,   198, 19, 0, 1,
            0x12, 0xb5, 0x12, 0xb5, 0x00, 16, 0x00, 0x00,
            0x08, 0, 0, 0, 0, 0, 1, 0,
        ];
        let mut want = want.to_vec();
        let sum = crate::wire::checksum(&want[15..35]);
        want[25..27].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(out, want);
        assert_eq!(
            crate::wire::checksum(&out[15..35]),
            0,
            "the header checksum verifies"
        );
    }
}
