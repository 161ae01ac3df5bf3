//! One summary line per captured frame, tcpdump-like: time (UTC), direction, addresses
//! and ports, protocol, TCP flags, length. Never panics: a frame too short for a field is
//! summarised as far as it goes.

use vswitch_proto::capture::CapturedFrame;

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn ip(b: &[u8], off: usize) -> Option<std::net::Ipv4Addr> {
    let o: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    Some(o.into())
}

/// `HH:MM:SS.micros DIR SUMMARY, length N`; `tunnel`: the frame is an outer
/// Ethernet/IPv4/UDP header around a VXLAN datagram, summarised with its inner frame.
pub(crate) fn line(f: &CapturedFrame, tunnel: bool) -> String {
    let secs = f.ts_ns / 1_000_000_000;
    let micros = f.ts_ns % 1_000_000_000 / 1000;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let what = if tunnel {
        vxlan(&f.data)
    } else {
        ether(&f.data)
    };
    format!(
        "{h:02}:{m:02}:{s:02}.{micros:06} {:<3} {what}, length {}",
        f.dir.as_str(),
        f.orig_len
    )
}

/// An outer frame carrying VXLAN: `S:P > D:P VXLAN vni N: INNER`.
fn vxlan(b: &[u8]) -> String {
    let outer = ether(b);
    let l4 = 14 + usize::from(b.get(14).map_or(5, |v| v & 0x0f)) * 4;
    let Some(vni) = b.get(l4 + 8 + 4..l4 + 8 + 7) else {
        return outer;
    };
    let vni = u32::from_be_bytes([0, vni[0], vni[1], vni[2]]);
    let inner = b.get(l4 + 16..).unwrap_or_default();
    format!("{outer} VXLAN vni {vni}: {}", ether(inner))
}

/// An Ethernet frame.
fn ether(b: &[u8]) -> String {
    match be16(b, 12) {
        Some(0x0800) => ipv4(b),
        Some(0x0806) => arp(b),
        Some(t) => format!("ethertype 0x{t:04x}"),
        None => "truncated Ethernet frame".into(),
    }
}

fn arp(b: &[u8]) -> String {
    match (be16(b, 14 + 6), ip(b, 14 + 14), ip(b, 14 + 24)) {
        (Some(1), Some(s), Some(t)) => format!("ARP who-has {t} tell {s}"),
        (Some(2), Some(s), Some(_)) => {
            let mac = b.get(22..28).map_or(String::new(), |m| {
                m.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            });
            format!("ARP reply {s} is-at {mac}")
        }
        _ => "ARP".into(),
    }
}

fn ipv4(b: &[u8]) -> String {
    let (Some(vihl), Some(&proto), Some(s), Some(d)) =
        (b.get(14), b.get(14 + 9), ip(b, 14 + 12), ip(b, 14 + 16))
    else {
        return "truncated IPv4".into();
    };
    let l4 = 14 + usize::from(vihl & 0x0f) * 4;
    let later_fragment = be16(b, 14 + 6).is_some_and(|f| f & 0x1fff != 0);
    let ports = match (be16(b, l4), be16(b, l4 + 2)) {
        (Some(sp), Some(dp)) if !later_fragment => Some((sp, dp)),
        _ => None,
    };
    match (proto, ports) {
        (6, Some((sp, dp))) => {
            let flags = b.get(l4 + 13).copied().unwrap_or(0);
            let mut f = String::new();
            for (bit, c) in [
                (0x02, 'S'),
                (0x01, 'F'),
                (0x08, 'P'),
                (0x04, 'R'),
                (0x20, 'U'),
            ] {
                if flags & bit != 0 {
                    f.push(c);
                }
            }
            if flags & 0x10 != 0 {
                f.push('.');
            }
            format!("{s}.{sp} > {d}.{dp}: TCP [{f}]")
        }
        (17, Some((sp, dp))) => format!("{s}.{sp} > {d}.{dp}: UDP"),
        (1, _) => {
            let t = b.get(l4).copied();
            let c = b.get(l4 + 1).copied();
            match (t, c) {
                (Some(0), _) => format!("{s} > {d}: ICMP echo reply"),
                (Some(8), _) => format!("{s} > {d}: ICMP echo request"),
                (Some(t), Some(c)) => format!("{s} > {d}: ICMP type {t} code {c}"),
                _ => format!("{s} > {d}: ICMP"),
            }
        }
        (p, _) => format!("{s} > {d}: IP proto {p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_proto::capture::Direction;

    fn tcp_syn() -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[26..30].copy_from_slice(&[198, 18, 2, 2]);
        f[30..34].copy_from_slice(&[198, 18, 1, 2]);
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[34 + 13] = 0x12; // SYN-ACK
        f
    }

    fn frame(data: Vec<u8>) -> CapturedFrame {
        CapturedFrame {
            dir: Direction::In,
            ts_ns: 3_723_000_042_000, // 01:02:03.000042
            orig_len: data.len() as u32,
            data,
        }
    }

    #[test]
    fn lines_summarise_ports_and_tunnels() {
        assert_eq!(
            line(&frame(tcp_syn()), false),
            "01:02:03.000042 in  198.18.2.2.40000 > 198.18.1.2.80: TCP [S.], length 54"
        );
        let mut outer = Vec::new();
        let mut payload = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        payload.extend_from_slice(&tcp_syn());
        outer.extend_from_slice(&[0; 12]);
        outer.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
        outer.extend_from_slice(&[
            198, 19, 0, 2, 198, 19, 0, 1, 0x12, 0xb5, 0x12, 0xb5, 0, 0, 0, 0,
        ]);
        outer.extend_from_slice(&payload);
        let l = line(&frame(outer), true);
        assert!(
            l.contains("198.19.0.2.4789 > 198.19.0.1.4789: UDP VXLAN vni 1: 198.18.2.2.40000 > 198.18.1.2.80: TCP [S.]"),
            "{l}"
        );
    }

    #[test]
    fn truncated_frames_never_panic() {
        let full = tcp_syn();
        for n in 0..full.len() {
            let _ = line(&frame(full[..n].to_vec()), false);
            let _ = line(&frame(full[..n].to_vec()), true);
        }
        assert!(line(&frame(vec![]), false).contains("truncated"));
    }
}
