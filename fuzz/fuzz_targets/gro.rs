//! `gro_append`, the receive-side merge both engines run before a TAP write, on arbitrary
//! frames. Input: up to 16 records `[len: u16 LE][frame]` (`len` cut to what is left); the
//! first frame is held, each next one is offered to it, as the engines do with the frames
//! of one burst headed to one port.
//!
//! Nothing may panic. A refused frame changes nothing (held frame and vnet header as they
//! were). A merged one leaves a TSO super-frame: a TCPv4 GSO vnet header with a partial
//! checksum at the TCP checksum field, an IP total length that is the frame's length, the
//! offered frame's TCP payload at the end, and a TCP checksum that verifies once the partial
//! checksum is completed (`complete_checksum`, what the pod's kernel does).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch_datapath::buf::{VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4};
use vswitch_datapath::*;

const MAX_FRAMES: usize = 16;
const ETH: usize = 14;

/// The records of an input.
fn frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while out.len() < MAX_FRAMES {
        let Some((len, rest)) = data.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
        let (frame, rest) = rest.split_at(len);
        out.push(frame);
        data = rest;
    }
    out
}

fn be16(f: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([f[at], f[at + 1]]))
}

/// The one's complement sum of `bytes` (odd length padded with a zero byte).
fn sum(acc: u32, bytes: &[u8]) -> u32 {
    let mut acc = u64::from(acc);
    for c in bytes.chunks(2) {
        let hi = u64::from(c[0]) << 8;
        acc += hi | c.get(1).map_or(0, |&b| u64::from(b));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// True when the TCP checksum of the TCP/IPv4 frame `f` (20-byte IP header) verifies.
fn tcp_checksum_ok(f: &[u8]) -> bool {
    let ip_len = be16(f, ETH + 2);
    let l4 = &f[ETH + 20..ETH + ip_len];
    let mut acc = sum(0, &f[ETH + 12..ETH + 20]);
    acc = sum(acc, &[0, 6]);
    acc = sum(acc, &((ip_len - 20) as u16).to_be_bytes());
    sum(acc, l4) == 0xffff
}

fuzz_target!(|data: &[u8]| {
    let frames = frames(data);
    let Some((first, rest)) = frames.split_first() else {
        return;
    };
    let mut held = PacketBuf::from_frame(first);
    for next in rest {
        let next = PacketBuf::from_frame(next);
        let (before, before_vnet) = (held.frame().to_vec(), held.vnet);
        if !gro_append(&mut held, &next) {
            assert_eq!(
                held.frame(),
                &before[..],
                "a refused merge changed the frame"
            );
            assert_eq!(
                held.vnet, before_vnet,
                "a refused merge changed the vnet header"
            );
            continue;
        }
        let f = held.frame();
        let v = held.vnet;
        assert_eq!(v.gso_type, VNET_GSO_TCPV4);
        assert_eq!(v.flags, VNET_F_NEEDS_CSUM);
        assert!(v.gso_size > 0);
        assert_eq!(usize::from(v.csum_start), ETH + 20);
        assert_eq!(v.csum_offset, 16);
        assert_eq!(ETH + be16(f, ETH + 2), f.len(), "IP total length");
        // The offered segment's payload is the super-frame's tail.
        let n = next.frame();
        let hdr_end = usize::from(v.hdr_len);
        let payload = &n[hdr_end..ETH + be16(n, ETH + 2)];
        assert!(payload.len() <= usize::from(v.gso_size));
        assert!(f.ends_with(payload), "the payload appended");
        assert_eq!(
            f.len(),
            before.len().min(ETH + be16(&before, ETH + 2)) + payload.len()
        );
        let mut done = PacketBuf::from_frame(f);
        done.vnet = v;
        assert_eq!(complete_checksum(&mut done), Ok(()));
        assert!(tcp_checksum_ok(done.frame()), "the completed TCP checksum");
    }
});
