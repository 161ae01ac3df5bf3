//! Arbitrary frames from a pod's TAP: `from_port`, then `segment_for_tunnel` when the
//! verdict is `ToTunnel` and the buffer needs it. Nothing may panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use vswitch_datapath::*;

fuzz_target!(|data: &[u8]| {
    let Some((sel, _, _)) = common::split(data) else {
        return;
    };
    let dp = common::datapath();
    let mut pkt = PacketBuf::new();
    // The TAP read: vnet header + frame, exactly as the shell does it.
    let tap = &data[1..];
    let region = pkt.tap_read_region();
    let n = tap.len().min(region.len());
    region[..n].copy_from_slice(&tap[..n]);
    if !pkt.set_tap_read_len(n) {
        return;
    }
    let in_port = u32::from(sel % 3) + 1; // 1 = A, 2 = B, 3 = unknown
    let tables = dp.tables();
    let v = dp.from_port(&tables, in_port, &mut pkt, 0);
    match v {
        Verdict::ToPort(p) => {
            assert!(p == 1 || p == 2);
            assert!(pkt.tap_write_region().len() >= VNET_HDR_LEN + 14);
        }
        Verdict::ToTunnel { .. } => {
            common::check_to_tunnel(dp, &v, &pkt);
            if dp.needs_segmentation(&pkt) {
                let mut out = Vec::new();
                common::segment_and_check(dp, &pkt, &mut out);
            }
        }
        Verdict::DnsForward { .. } => panic!("DNS forwarding is off on this node"),
        Verdict::Drop(_) => {}
    }
});
