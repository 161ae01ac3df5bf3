//! `import_conntrack`, what vswitchd runs on the conntrack file a previous process saved (a
//! file that may be corrupted or hand-edited), on arbitrary input:
//! `[now_ms: 8 bytes LE][age_ms: 8 bytes LE][JSON of a CtSnapshot]`, each into a fresh node
//! (common.rs: the services and pods the records name). Bytes that are no snapshot are
//! rejected by serde; records that are, whatever their values, go to the import.
//!
//! Nothing may panic. Every record is installed or counted once as skipped; no more
//! connections than conntrack's bound are installed; what the node exports afterwards has
//! at most what was installed, and imports whole into another fresh node (an export is
//! always a valid snapshot); and packets then still pass through the node without a panic
//! (a client's next segment of a restored connection and the endpoint's answer).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use vswitch_datapath::*;

fuzz_target!(|data: &[u8]| {
    let Some((now_ms, rest)) = common::take_u64(data) else {
        return;
    };
    let Some((age_ms, json)) = common::take_u64(rest) else {
        return;
    };
    let Ok(snap) = serde_json::from_slice::<CtSnapshot>(json) else {
        return;
    };
    let dp = common::datapath();
    let got = dp.import_conntrack(&snap, age_ms, now_ms);
    assert_eq!(
        got.conns + got.affinities + got.skipped(),
        snap.conns.len() + snap.affinities.len(),
        "every record installed or skipped once: {got:?}"
    );
    assert!(got.conns <= dp.config().ct_max, "over the bound: {got:?}");

    let export = dp.export_conntrack(now_ms);
    assert!(
        export.conns.len() <= got.conns,
        "exported more than was imported"
    );
    assert!(export.affinities.len() <= got.affinities);
    let again = common::datapath();
    let back = again.import_conntrack(&export, 0, now_ms);
    assert_eq!(
        back.skipped(),
        0,
        "an export does not import whole: {back:?} of {export:?}"
    );
    assert_eq!(back.conns, export.conns.len());
    assert_eq!(back.affinities, export.affinities.len());

    // Traffic over what was restored: the client's next packet and the endpoint's answer.
    let tables = dp.tables();
    for r in export.conns.iter().take(4) {
        let (client, endpoint) = (r.client, r.endpoint);
        let segs = [
            (client, r.service, Mac::from_ipv4(*client.ip())),
            (endpoint, r.reply_to, Mac::from_ipv4(*endpoint.ip())),
        ];
        for (src, dst, mac) in segs {
            let frame = common::l4_frame(r.proto, mac, src, dst);
            let Some(port) = common::port_of(*src.ip()) else {
                continue;
            };
            let mut pkt = PacketBuf::from_frame(&frame);
            let _ = dp.from_port(&tables, port, &mut pkt, now_ms);
        }
    }
});
