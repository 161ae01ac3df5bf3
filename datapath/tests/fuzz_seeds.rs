//! Writes the fuzz seed corpus (fuzz/corpus/<target>/) from the golden frames. Ignored by
//! default; regenerate with
//! `cargo test -p vswitch-datapath --test fuzz_seeds -- --ignored`.
//!
//! Input layout of both targets: `[selector][virtio-net header, 10 bytes LE][bytes...]`;
//! `ingress_port`: selector % 3 picks port 1 (A), 2 (B) or 3 (unknown), bytes = frame;
//! `ingress_tunnel`: selector bit 0 picks the peer (0) or a stranger (1), bytes = UDP payload.

mod common;

use common::golden::*;
use common::*;
use std::path::PathBuf;
use vswitch_datapath::buf::{VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4};
use vswitch_datapath::*;

fn seed(target: &str, name: &str, sel: u8, vnet: VnetHdr, bytes: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let mut v = vec![sel];
    let mut h = [0u8; VNET_HDR_LEN];
    vnet.write(&mut h);
    v.extend_from_slice(&h);
    v.extend_from_slice(bytes);
    std::fs::write(dir.join(name), v).unwrap();
}

#[test]
#[ignore = "writes files into fuzz/corpus; run explicitly"]
fn write_fuzz_seeds() {
    let d = VnetHdr::default();
    let tso = VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        gso_type: VNET_GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1000,
        csum_start: 34,
        csum_offset: 16,
    };
    let p = "ingress_port";
    seed(p, "arp_req_gw", 0, d, &ARP_REQ_GW);
    seed(p, "echo_req_gw", 0, d, &ECHO_REQ_GW);
    seed(p, "echo_req_gw_opts", 0, d, &ECHO_REQ_GW_OPTS);
    seed(p, "syn_a_to_b", 0, d, &SYN_A_TO_B);
    seed(p, "syn_a_to_r", 0, d, &SYN_A_TO_R);
    let big = tcp_frame(mac_a(), router(), IP_A, IP_R, &[0x42; 4000]);
    seed(p, "tso_a_to_r", 0, tso, &big);
    let nodf = udp_frame(mac_a(), router(), IP_A, IP_R, 64, false, &[7; 3000]);
    seed(p, "udp_nodf_big_a_to_r", 0, d, &nodf);
    let ttl1 = udp_frame(mac_a(), router(), IP_A, IP_B, 1, true, b"ttl");
    seed(p, "udp_ttl1_a_to_b", 0, d, &ttl1);
    let l2 = tcp_frame(mac_b(), mac_a(), IP_B, IP_A, b"l2");
    seed(p, "tcp_l2_b_to_a", 1, d, &l2);

    let t = "ingress_tunnel";
    seed(t, "flannel_synack_to_b", 0, d, &FLANNEL_SYNACK_TO_B);
    seed(t, "vxlan_syn_a_to_r_tso", 0, tso, &SYN_A_TO_R_VXLAN);
    let mut echo = ECHO_REQ_GW.to_vec();
    echo[0..6].copy_from_slice(&vtep_mac().0);
    echo[6..12].copy_from_slice(&peer_vtep_mac().0);
    echo[26..30].copy_from_slice(&IP_R.octets());
    let echo = [
        &[8, 0, 0, 0, 0, 0, 1, 0][..],
        &echo[..14],
        &ip_after_hops(&echo[14..], 0),
    ]
    .concat();
    seed(t, "echo_from_peer_to_gw", 0, d, &echo);
    let mut big = vec![8, 0, 0, 0, 0, 0, 1, 0];
    big.extend_from_slice(&tcp_frame(
        vtep_mac(),
        peer_vtep_mac(),
        IP_A,
        IP_R,
        &[9; 5000],
    ));
    seed(t, "vxlan_tso_5000", 0, tso, &big);
    seed(t, "stranger", 1, d, &FLANNEL_SYNACK_TO_B);
}
