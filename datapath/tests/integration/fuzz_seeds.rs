//! Writes the fuzz seed corpus (fuzz/corpus/<target>/) from the golden frames. Ignored by
//! default; regenerate with
//! `cargo test -p vswitch-datapath --test integration -- fuzz_seeds --ignored`.
//!
//! Input layout of `ingress_port` and `ingress_tunnel` (fuzz/fuzz_targets/common.rs):
//! `[now_ms: 8 bytes LE]`, then packets `[dt_ms: u16 LE][len: u16 LE][selector][virtio-net
//! header, 10 bytes LE][bytes...]`; `ingress_port`: selector % 3 picks port 1 (A), 2 (B) or
//! 3 (unknown), bytes = frame; `ingress_tunnel`: selector bit 0 picks the peer (0) or a
//! stranger (1), bytes = UDP payload. `dns`: `[now_ms: 8 bytes LE][DNS query]`. `gro`:
//! frames `[len: u16 LE][frame]`. `ct_import`: `[now_ms: 8 B LE][age_ms: 8 B LE][JSON]`.

use crate::common;

use common::golden::*;
use common::*;
use std::path::PathBuf;
use vswitch_datapath::buf::{VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4};
use vswitch_datapath::*;

/// The seed directory of `target`, created.
fn corpus(target: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A seed of packets `(dt_ms, selector, vnet header, bytes)`, the clock starting at 1 s.
fn seed_seq(target: &str, name: &str, packets: &[(u16, u8, VnetHdr, &[u8])]) {
    let mut v = 1000u64.to_le_bytes().to_vec();
    for &(dt, sel, vnet, bytes) in packets {
        let mut h = [0u8; VNET_HDR_LEN];
        vnet.write(&mut h);
        let len = u16::try_from(1 + VNET_HDR_LEN + bytes.len()).expect("a seed packet fits");
        v.extend_from_slice(&dt.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v.push(sel);
        v.extend_from_slice(&h);
        v.extend_from_slice(bytes);
    }
    std::fs::write(corpus(target).join(name), v).unwrap();
}

/// A seed of one packet.
fn seed(target: &str, name: &str, sel: u8, vnet: VnetHdr, bytes: &[u8]) {
    seed_seq(target, name, &[(0, sel, vnet, bytes)]);
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
    // A whole service connection: SYN, the endpoint's SYN-ACK, the client's ACK, the
    // client's FIN a minute later.
    let ack = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40000),
        sa(VIP, 80),
        ACK,
        2,
        10,
        b"",
    );
    let fin = tcp_seg(
        mac_a(),
        router(),
        sa(IP_A, 40000),
        sa(VIP, 80),
        FIN | ACK,
        2,
        10,
        b"",
    );
    seed_seq(
        p,
        "svc_handshake_then_fin",
        &[
            (0, 0, d, &vip_syn),
            (5, 1, d, &reply),
            (5, 0, d, &ack),
            (60_000, 0, d, &fin),
        ],
    );
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
    let dir = corpus("dns");
    let q = |file: &str, name: &str, ty: RecordType, edns: bool| {
        let mut m = Message::new(0x4d2, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
        }
        let seed = [&1000u64.to_le_bytes()[..], &m.to_vec().unwrap()].concat();
        std::fs::write(dir.join(file), seed).unwrap();
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

/// Seeds of the `gro` target: segments of one flow from B to A (what comes out of the
/// tunnel or a pod headed to A), consecutive or not.
#[test]
#[ignore = "writes files into fuzz/corpus; run explicitly"]
fn write_gro_fuzz_seeds() {
    use common::svc::*;
    let dir = corpus("gro");
    let seg = |flags, seq, len: usize| {
        let payload = vec![0x5a; len];
        tcp_seg(
            mac_b(),
            mac_a(),
            sa(IP_B, 8080),
            sa(IP_A, 40000),
            flags,
            seq,
            1,
            &payload,
        )
    };
    let write = |name: &str, frames: &[Vec<u8>]| {
        let mut v = Vec::new();
        for f in frames {
            v.extend_from_slice(&u16::try_from(f.len()).unwrap().to_le_bytes());
            v.extend_from_slice(f);
        }
        std::fs::write(dir.join(name), v).unwrap();
    };
    // The mergeable seeds do merge (so the fuzzer starts inside the merge path).
    let mut held = PacketBuf::from_frame(&seg(ACK, 1, 1000));
    assert!(gro_append(
        &mut held,
        &PacketBuf::from_frame(&seg(ACK, 1001, 1000))
    ));
    assert!(!gro_append(
        &mut held,
        &PacketBuf::from_frame(&seg(ACK, 3001, 1000))
    ));
    write(
        "three_full",
        &[
            seg(ACK, 1, 1000),
            seg(ACK, 1001, 1000),
            seg(ACK, 2001, 1000),
        ],
    );
    write(
        "short_last_psh",
        &[
            seg(ACK, 1, 1000),
            seg(ACK, 1001, 1000),
            seg(ACK | PSH, 2001, 300),
        ],
    );
    write("gap", &[seg(ACK, 1, 1000), seg(ACK, 2001, 1000)]);
    write("syn_first", &[seg(SYN, 1, 0), seg(ACK, 2, 1000)]);
    let other = tcp_seg(
        mac_b(),
        mac_a(),
        sa(IP_B, 8081),
        sa(IP_A, 40000),
        ACK,
        1001,
        1,
        &[1; 1000],
    );
    write("other_flow", &[seg(ACK, 1, 1000), other]);
    let mut bad = seg(ACK, 1001, 1000);
    bad[60] ^= 0xff;
    write("bad_checksum", &[seg(ACK, 1, 1000), bad]);
}

/// Seeds of the `ct_import` target: what a node with the fuzz node's services (see
/// fuzz/fuzz_targets/common.rs) exports after a few connections, and broken variants of it.
#[test]
#[ignore = "writes files into fuzz/corpus; run explicitly"]
fn write_ct_import_fuzz_seeds() {
    use common::svc::*;
    use serde_json::{json, Value};
    let n = svc_node(
        64,
        vec![
            svc(
                VIP,
                80,
                L4Proto::Tcp,
                &[sa(IP_B, 8080), sa(IP_R, 8080)],
                None,
            ),
            svc(VIP, 53, L4Proto::Udp, &[sa(IP_A, 5353)], Some(60_000)),
            svc(VIP2, 80, L4Proto::Tcp, &[], None),
        ],
        vec![],
    );
    let d = VnetHdr::default();
    let now = 1000;
    for sport in [40000, 40001, 40002] {
        let syn = tcp_seg(
            mac_a(),
            router(),
            sa(IP_A, sport),
            sa(VIP, 80),
            SYN,
            1,
            0,
            b"",
        );
        n.port_at(A, &syn, d, now);
    }
    let q = udp_dgram(mac_a(), router(), sa(IP_A, 999), sa(VIP, 53), b"x", 64);
    n.port_at(A, &q, d, now);
    let q = udp_dgram(mac_b(), router(), sa(IP_B, 998), sa(VIP, 53), b"y", 64);
    n.port_at(B, &q, d, now);
    let snap = n.dp.export_conntrack(now);
    assert!(
        snap.conns.len() == 5 && !snap.affinities.is_empty(),
        "{snap:?}"
    );
    let dir = corpus("ct_import");
    let write = |name: &str, now_ms: u64, age_ms: u64, v: &Value| {
        let seed = [
            &now_ms.to_le_bytes()[..],
            &age_ms.to_le_bytes()[..],
            &serde_json::to_vec_pretty(v).unwrap(),
        ]
        .concat();
        std::fs::write(dir.join(name), seed).unwrap();
    };
    let good = serde_json::to_value(&snap).unwrap();
    write("export", 5000, 100, &good);
    write("expired", 5000, 10_000_000, &good);
    let empty = json!({"conns": [], "affinities": [], "snat_cursor": 0});
    write("empty", 0, 0, &empty);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let udp = |v: &mut Value| {
        let conns = v["conns"].as_array_mut().unwrap();
        let c = conns.iter_mut().find(|c| c["proto"] == "udp").unwrap();
        c["state"] = json!("established");
    };
    write("udp_established", 5000, 0, &edit(&udp));
    let lo = |v: &mut Value| v["conns"][0]["client"] = json!("127.0.0.1:40000");
    write("loopback_client", 5000, 0, &edit(&lo));
    let other = |v: &mut Value| v["conns"][1]["reply_to"] = json!("198.18.1.9:1");
    write("reply_to_other", 5000, 0, &edit(&other));
    let forever = |v: &mut Value| v["conns"][0]["expires_in_ms"] = json!(u64::MAX);
    write("forever", 5000, 0, &edit(&forever));
    let gone = |v: &mut Value| v["affinities"][0]["endpoint"] = json!("198.18.1.3:5353");
    write("gone_endpoint", 5000, 0, &edit(&gone));
    let dup = |v: &mut Value| {
        let c = v["conns"][0].clone();
        v["conns"].as_array_mut().unwrap().push(c);
    };
    write("duplicate", 5000, 0, &edit(&dup));
}
