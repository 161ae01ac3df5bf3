//! Arbitrary UDP payloads from the VXLAN socket (a sequence of them, at times from the
//! input, on a fresh node: see common.rs): `from_tunnel` (split horizon checked), and
//! `segment_for_tunnel` over the same bytes with an arbitrary vnet header (the GSO, checksum
//! and fragmentation code on hostile input). Nothing may panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddrV4};
use vswitch_datapath::*;

fuzz_target!(|data: &[u8]| {
    let Some(input) = common::Input::new(data) else {
        return;
    };
    let dp = common::datapath();
    for p in input {
        let src = if p.sel & 1 == 0 {
            SocketAddrV4::new(common::PEER_UNDERLAY, 4789)
        } else {
            SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 99), 4789)
        };

        let mut pkt = PacketBuf::new();
        let region = pkt.udp_read_region();
        let n = p.bytes.len().min(region.len());
        region[..n].copy_from_slice(&p.bytes[..n]);
        pkt.set_udp_read_len(n);
        let tables = dp.tables();
        let v = dp.from_tunnel(&tables, src, &mut pkt, p.now_ms);
        match v {
            Verdict::ToPort(port) => {
                assert!(port == common::A || port == common::B);
                assert_eq!(pkt.vnet, VnetHdr::default());
                assert!(pkt.tap_write_region().len() >= VNET_HDR_LEN + 14);
            }
            Verdict::ToTunnel { .. } => {
                // Split horizon: only the switch's own echo reply may go back.
                common::check_to_tunnel(&dp, &v, &pkt);
                let f = pkt.frame();
                assert_eq!(f.get(8 + 12..8 + 14), Some(&[0x08, 0x00][..]));
                assert_eq!(f.get(8 + 23), Some(&1), "ICMP");
                let ihl = usize::from(f[8 + 14] & 0xf) * 4;
                assert_eq!(f.get(8 + 14 + ihl), Some(&0), "echo reply");
                let cfg = dp.config();
                let src_ip = Ipv4Addr::new(f[8 + 26], f[8 + 27], f[8 + 28], f[8 + 29]);
                assert!(src_ip == cfg.gateway || src_ip == cfg.vtep_ip);
            }
            Verdict::DnsForward { .. } => panic!("nothing from the tunnel is a pod's DNS query"),
            Verdict::Drop(_) => {}
        }

        // The same bytes as a tunnel-bound buffer with the fuzzed vnet header.
        let mut raw = PacketBuf::from_frame(p.bytes);
        raw.vnet = p.vnet;
        let mut out = Vec::new();
        common::segment_and_check(&dp, &raw, &mut out);
        let _ = dp.needs_segmentation(&raw);
        let _ = complete_checksum(&mut raw);
    }
});
