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
    // Services (the fuzz node has them, see fuzz/fuzz_targets/common.rs).
    use common::svc::*;
    let vip_syn = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40000),
        sa(VIP, 80),
        SYN,
        1,
        0,
        b"",
    );
    seed(p, "svc_syn_a_to_vip", 0, d, &vip_syn);
    let no_eps = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40000),
        sa(VIP2, 80),
        SYN,
        1,
        0,
        b"",
    );
    seed(p, "svc_syn_no_endpoints", 0, d, &no_eps);
    let hairpin = udp_dgram(mac_a(), router(), sa(IP_A, 999), sa(VIP, 53), b"x", 64);
    seed(p, "svc_udp_hairpin", 0, d, &hairpin);
    let reply = tcp_seg(
        mac_b(),
        mac_a(),
        sa(IP_B, 8080),
        sa(IP_A, 40000),
        SYN | ACK,
        9,
        2,
        b"",
    );
    seed(p, "svc_synack_b_to_a", 1, d, &reply);
    let mut big = tso_frame(&[0x42; 4000], 0, 7, 1);
    big[30..34].copy_from_slice(&VIP.octets());
    seed(p, "svc_tso_a_to_vip", 0, tso, &big);
    let q = [
        &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0][..],
        b"\x03web\x00\x00\x01\x00\x01",
    ]
    .concat();
    let dns = udp_dgram(mac_a(), router(), sa(IP_A, 5353), sa(DNS_IP, 53), &q, 64);
    seed(p, "dns_query_web", 0, d, &dns);

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
    let mut r_reply = vec![8, 0, 0, 0, 0, 0, 1, 0];
    r_reply.extend_from_slice(&common::svc::tcp_seg(
        peer_vtep_mac(),
        vtep_mac(),
        common::svc::sa(IP_R, 8080),
        common::svc::sa(IP_A, 40000),
        common::svc::SYN | common::svc::ACK,
        9,
        2,
        b"",
    ));
    seed(t, "svc_synack_r_to_a", 0, d, &r_reply);
}

/// Seeds of the `dns` target: raw DNS queries (the UDP payload).
#[test]
#[ignore = "writes files into fuzz/corpus; run explicitly"]
fn write_dns_fuzz_seeds() {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dns");
    std::fs::create_dir_all(&dir).unwrap();
    let q = |file: &str, name: &str, ty: RecordType, edns: bool| {
        let mut m = Message::new(0x4d2, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
        }
        std::fs::write(dir.join(file), m.to_vec().unwrap()).unwrap();
    };
    q(
        "a_fqdn_edns",
        "nginx-service.default.svc.cluster.local.",
        RecordType::A,
        true,
    );
    q("a_bare", "nginx-service", RecordType::A, false);
    q("a_ns", "API.prod", RecordType::A, false);
    q("aaaa", "nginx-service.default.svc", RecordType::AAAA, false);
    q(
        "nxdomain",
        "nope.default.svc.cluster.local",
        RecordType::A,
        false,
    );
    q("refused", "example.com", RecordType::A, true);
    q("ambiguous", "dup", RecordType::ANY, false);
}
