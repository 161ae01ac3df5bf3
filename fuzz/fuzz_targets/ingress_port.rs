//! Arbitrary frames from a pod's TAP (a sequence of them, at times from the input, on a
//! fresh node: see common.rs): `from_port`, then `segment_for_tunnel` when the verdict is
//! `ToTunnel` and the buffer needs it. Nothing may panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use vswitch_datapath::*;

fuzz_target!(|data: &[u8]| {
    let Some(input) = common::Input::new(data) else {
        return;
    };
    let dp = common::datapath();
    for p in input {
        let mut pkt = PacketBuf::new();
        // The TAP read: vnet header + frame, exactly as the shell does it.
        let region = pkt.tap_read_region();
        let n = p.tap.len().min(region.len());
        region[..n].copy_from_slice(&p.tap[..n]);
        if !pkt.set_tap_read_len(n) {
            continue;
        }
        let in_port = PortId::new(u32::from(p.sel % 3) + 1); // 1 = A, 2 = B, 3 = unknown
        let tables = dp.tables();
        let v = dp.from_port(&tables, in_port, &mut pkt, p.now_ms);
        match v {
            Verdict::ToPort(port) => {
                assert!(port == common::A || port == common::B);
                assert!(pkt.tap_write_region().len() >= VNET_HDR_LEN + 14);
            }
            Verdict::ToTunnel { .. } => {
                common::check_to_tunnel(&dp, &v, &pkt);
                if dp.needs_segmentation(&pkt) {
                    let mut out = Vec::new();
                    common::segment_and_check(&dp, &pkt, &mut out);
                }
            }
            Verdict::DnsForward { .. } => panic!("DNS forwarding is off on this node"),
            Verdict::Drop(_) => {}
        }
    }
});
