//! Saving and restoring the service NAT state (`export_conntrack` / `import_conntrack`): a
//! restored datapath translates every connection exactly as the one it was saved from
//! (established and half-open, local and remote endpoints, hairpin SNAT, affinities), its
//! lifetimes go on from where they were, and bad records are skipped and counted.

use crate::common;

use common::svc::*;
use common::*;
use proptest::prelude::*;
use std::net::SocketAddrV4;
use vswitch_datapath::*;

fn d() -> VnetHdr {
    VnetHdr::default()
}

const S: u64 = 1000;
const VXLAN: [u8; 8] = [8, 0, 0, 0, 0, 0, 1, 0];

/// VIP -> local endpoint B, VIP2 -> remote endpoint R, for TCP port 80 and UDP port 53.
fn services() -> Vec<ServiceEntry> {
    vec![
        svc(VIP, 80, L4Proto::Tcp, &[sa(IP_B, 8080)], None),
        svc(VIP2, 80, L4Proto::Tcp, &[sa(IP_R, 8080)], None),
        svc(VIP, 53, L4Proto::Udp, &[sa(IP_B, 5353)], None),
        svc(VIP2, 53, L4Proto::Udp, &[sa(IP_R, 5353)], None),
    ]
}

fn node_with(ct_max: usize) -> Node {
    svc_node(ct_max, services(), vec![])
}

/// One connection of the property test: from A's port `sport`, to a local or remote
/// endpoint, TCP or UDP, driven `steps` packets into its life.
#[derive(Clone, Debug)]
struct Conn {
    sport: u16,
    remote: bool,
    tcp: bool,
    steps: u8,
}

impl Conn {
    fn vip(&self) -> SocketAddrV4 {
        let ip = if self.remote { VIP2 } else { VIP };
        sa(ip, if self.tcp { 80 } else { 53 })
    }

    fn endpoint(&self) -> SocketAddrV4 {
        let ip = if self.remote { IP_R } else { IP_B };
        sa(ip, if self.tcp { 8080 } else { 5353 })
    }

    /// A packet from the client; returns the verdict and the frame that went out.
    fn client(&self, n: &Node, flags: u8, body: &[u8], now: u64) -> (Verdict, Vec<u8>) {
        let (c, v) = (sa(IP_A, self.sport), self.vip());
        let f = if self.tcp {
            tcp_seg(mac_a(), router(), c, v, flags, 100, 200, body)
        } else {
            udp_dgram(mac_a(), router(), c, v, body, 64)
        };
        let (verdict, pkt) = n.port_at(A, &f, d(), now);
        (verdict, pkt.frame().to_vec())
    }

    /// A packet from the endpoint to the client's address and `dport` (the reply tuple's).
    fn reply(&self, n: &Node, dport: u16, flags: u8, body: &[u8], now: u64) -> (Verdict, Vec<u8>) {
        let (e, c) = (self.endpoint(), sa(IP_A, dport));
        let f = if self.tcp {
            tcp_seg(vtep_mac(), peer_vtep_mac(), e, c, flags, 300, 101, body)
        } else {
            udp_dgram(vtep_mac(), peer_vtep_mac(), e, c, body, 64)
        };
        let (verdict, pkt) = if self.remote {
            n.tunnel_at(peer_src(), &[&VXLAN[..], &f].concat(), now)
        } else {
            let mut f = f;
            f[..12].copy_from_slice(&[mac_a().0, mac_b().0].concat());
            n.port_at(B, &f, d(), now)
        };
        (verdict, pkt.frame().to_vec())
    }

    /// Drives the connection `steps` packets into its life: TCP SYN, SYN-ACK, ACK, FIN
    /// (or, from step 5 on, a mid-stream pickup); UDP a request, then an answer.
    fn drive(&self, n: &Node, now: u64) {
        let out = |v: (Verdict, Vec<u8>)| assert!(!matches!(v.0, Verdict::Drop(_)), "{:?}", v.0);
        if !self.tcp {
            out(self.client(n, 0, b"q", now));
            if self.steps > 0 {
                out(self.reply(n, self.sport, 0, b"a", now));
            }
            return;
        }
        if self.steps >= 5 {
            out(self.client(n, ACK, b"mid", now));
            return;
        }
        let seq = [
            (false, SYN),
            (true, SYN | ACK),
            (false, ACK),
            (false, FIN | ACK),
        ];
        for &(reply, flags) in seq.iter().take(usize::from(self.steps) + 1) {
            if reply {
                out(self.reply(n, self.sport, flags, b"", now));
            } else {
                out(self.client(n, flags, b"", now));
            }
        }
    }
}

fn sorted(mut s: CtSnapshot) -> CtSnapshot {
    s.conns.sort_by_key(|c| (c.client, c.service));
    s.affinities.sort_by_key(|a| (a.client, a.service));
    s
}

fn conn_strategy() -> impl Strategy<Value = Vec<Conn>> {
    proptest::collection::btree_map(1000u16..1100, (any::<bool>(), any::<bool>(), 0u8..6), 1..8)
        .prop_map(|m| {
            m.into_iter()
                .map(|(sport, (remote, tcp, steps))| Conn {
                    sport,
                    remote,
                    tcp,
                    steps,
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Export, import into a fresh datapath (a restarted shell, its clock at another value):
    /// the snapshot is the same, and every packet of every connection, both ways, is
    /// translated to the same bytes as by the datapath it was saved from.
    #[test]
    fn restored_table_translates_the_same(conns in conn_strategy(), t1 in 0u64..5000, t2 in 0u64..5000) {
        let old = node_with(64);
        for c in &conns {
            c.drive(&old, t1);
        }
        let snap = old.dp.export_conntrack(t1);
        prop_assert_eq!(snap.conns.len(), conns.len());
        let json = serde_json::to_string(&snap).unwrap();
        let back: CtSnapshot = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &snap);
        let new = node_with(64);
        let r = new.dp.import_conntrack(&back, 0, t2);
        prop_assert_eq!(r, CtImport { conns: conns.len(), ..Default::default() });
        prop_assert_eq!(sorted(new.dp.export_conntrack(t2)), sorted(snap.clone()));
        for c in &conns {
            let rec = snap.conns.iter().find(|r| r.client.port() == c.sport).unwrap();
            let dport = rec.reply_to.port();
            let (a, b) = (c.reply(&old, dport, ACK, b"data", t1 + 1), c.reply(&new, dport, ACK, b"data", t2 + 1));
            prop_assert_eq!(a, b, "reply of {:?}", c);
            let (a, b) = (c.client(&old, ACK, b"more", t1 + 2), c.client(&new, ACK, b"more", t2 + 2));
            prop_assert_eq!(a, b, "client packet of {:?}", c);
        }
        prop_assert_eq!(
            sorted(new.dp.export_conntrack(t2 + 2)),
            sorted(old.dp.export_conntrack(t1 + 2)),
            "the same states after the same packets"
        );
    }
}

/// A restarting shell restores against the tables it is about to install, then installs
/// them: the first frame to meet the tables (a reply from the tunnel, served from the
/// start) meets its connection too and reaches the client from the VIP. Restored against
/// the empty tables installed at that moment, the same record would be stale.
#[test]
fn restored_before_the_tables_are_installed() {
    let old = node_with(16);
    let c = Conn {
        sport: 1000,
        remote: true,
        tcp: true,
        steps: 2,
    };
    c.drive(&old, 0);
    let snap = old.dp.export_conntrack(0);
    let fresh = || Node {
        dp: Datapath::new(svc_config(16)),
        a: Default::default(),
        b: Default::default(),
        peer: Default::default(),
    };
    let new = fresh();
    let r = new.dp.import_conntrack(&snap, 0, 0);
    assert_eq!(
        (r.conns, r.stale),
        (0, 1),
        "against the empty tables: {r:?}"
    );
    let new = fresh();
    let tables = new.tables_with(services(), vec![]);
    let r = new.dp.import_conntrack_for(&tables, &snap, 0, 0);
    assert_eq!(
        r,
        CtImport {
            conns: 1,
            ..Default::default()
        }
    );
    new.dp.install(tables);
    let (v, out) = c.reply(&new, 1000, ACK, b"data", 1);
    assert!(matches!(v, Verdict::ToPort(A)), "{v:?}");
    assert_eq!(
        out[26..30],
        c.vip().ip().octets(),
        "the reply comes from the VIP"
    );
}

#[test]
fn lifetimes_go_on_from_where_they_were() {
    let old = node_with(16);
    let syn = Conn {
        sport: 1,
        remote: false,
        tcp: true,
        steps: 0,
    };
    syn.drive(&old, 0); // SYN sent: 30 s
    let snap = old.dp.export_conntrack(28 * S);
    assert_eq!(snap.conns[0].expires_in_ms, 2 * S);
    assert_eq!(snap.conns[0].state, ConnState::SynSent);
    // Restored at 500 ms on the new clock: 2 s left.
    let new = node_with(16);
    assert_eq!(new.dp.import_conntrack(&snap, 0, 500).conns, 1);
    new.dp.expire(2499);
    assert_eq!(new.dp.conntrack_len(), 1);
    new.dp.expire(2500);
    assert_eq!(new.dp.conntrack_len(), 0, "expired 2 s after the import");
    // A snapshot that lay on disk for 1.5 s has 0.5 s left; one that lay 2 s has none.
    let new = node_with(16);
    assert_eq!(new.dp.import_conntrack(&snap, 1500, 0).conns, 1);
    new.dp.expire(499);
    assert_eq!(new.dp.conntrack_len(), 1);
    new.dp.expire(500);
    assert_eq!(new.dp.conntrack_len(), 0);
    let r = node_with(16).dp.import_conntrack(&snap, 2 * S, 0);
    assert_eq!((r.conns, r.expired), (0, 1));
}

/// A node whose one Service (VIP:80, ClientIP affinity) has A itself as its only endpoint:
/// hairpin, SNAT to the gateway.
fn hairpin_node() -> Node {
    svc_node(
        16,
        vec![svc(VIP, 80, L4Proto::Tcp, &[sa(IP_A, 8080)], Some(60 * S))],
        vec![],
    )
}

#[test]
fn hairpin_snat_and_affinity_survive() {
    let old = hairpin_node();
    let (v, f) = Conn {
        sport: 7,
        remote: false,
        tcp: true,
        steps: 0,
    }
    .client(&old, SYN, b"", 0);
    assert!(matches!(v, Verdict::ToPort(_)), "{v:?}");
    let (src, dst, _) = addrs(&f);
    assert_eq!((*src.ip(), dst), (GW, sa(IP_A, 8080)));
    let snap = old.dp.export_conntrack(10);
    assert_eq!(snap.affinities.len(), 1);
    assert_eq!(snap.affinities[0].endpoint, dst);
    assert_eq!(snap.conns[0].reply_to, src);
    let new = hairpin_node();
    let r = new.dp.import_conntrack(&snap, 0, 0);
    assert_eq!((r.conns, r.affinities, r.skipped()), (1, 1, 0));
    // A new connection from A goes to the pinned endpoint, on the old and the new one alike.
    for n in [&old, &new] {
        let f = tcp_seg(mac_a(), router(), sa(IP_A, 8), sa(VIP, 80), SYN, 1, 0, b"");
        let (_, pkt) = n.port_at(A, &f, d(), 20);
        assert_eq!(addrs(pkt.frame()).1, dst);
    }
    // The endpoint's answer to the (possibly SNATed) reply tuple is translated back.
    let f = tcp_seg(mac_a(), router(), dst, src, SYN | ACK, 5, 2, b"");
    let (a, b) = (old.port_at(A, &f, d(), 30), new.port_at(A, &f, d(), 30));
    assert_eq!(a.0, Verdict::ToPort(A));
    assert_eq!((a.0, a.1.frame()), (b.0, b.1.frame()));
    assert_eq!(addrs(b.1.frame()).0, sa(VIP, 80));
}

/// The shell's clock is a number the snapshot does not choose: at its very end an import
/// saturates the lifetimes instead of overflowing (found by the `ct_import` fuzz target).
#[test]
fn import_at_the_end_of_the_clock_saturates() {
    let old = hairpin_node();
    Conn {
        sport: 7,
        remote: false,
        tcp: true,
        steps: 0,
    }
    .client(&old, SYN, b"", 0);
    let snap = old.dp.export_conntrack(10);
    assert_eq!((snap.conns.len(), snap.affinities.len()), (1, 1));
    let new = hairpin_node();
    let r = new.dp.import_conntrack(&snap, 0, u64::MAX - 1);
    assert_eq!((r.conns, r.affinities, r.skipped()), (1, 1, 0));
    let back = new.dp.export_conntrack(u64::MAX - 1);
    assert_eq!(back.affinities[0].expires_in_ms, 1);
}

/// A valid record: A:1 -> VIP:80 -> B:8080, established.
fn good(sport: u16) -> ConnRecord {
    ConnRecord {
        proto: L4Proto::Tcp,
        client: sa(IP_A, sport),
        service: sa(VIP, 80),
        endpoint: sa(IP_B, 8080),
        reply_to: sa(IP_A, sport),
        state: ConnState::Established,
        assured: true,
        expires_in_ms: 1000 * S,
    }
}

#[test]
fn bad_records_are_skipped_and_counted() {
    let mut bad = Vec::new();
    let mut edit = |f: &dyn Fn(&mut ConnRecord)| {
        let mut r = good(100 + bad.len() as u16);
        f(&mut r);
        bad.push(r);
    };
    edit(&|r| r.state = ConnState::UdpReplied); // a UDP state for TCP
    edit(&|r| r.assured = false); // established but not assured
    edit(&|r| {
        r.state = ConnState::SynSent;
        r.assured = true
    });
    edit(&|r| r.expires_in_ms = 0);
    edit(&|r| r.expires_in_ms = 25 * 3600 * S); // longer than the state's timeout
    edit(&|r| r.endpoint = sa("224.0.0.1".parse().unwrap(), 8080));
    edit(&|r| r.client = sa("0.0.0.0".parse().unwrap(), 1));
    edit(&|r| r.client = sa("198.18.9.2".parse().unwrap(), 1)); // not this node's subnet
    edit(&|r| r.reply_to = sa(IP_B, 1)); // a reply tuple the datapath never makes
    edit(&|r| r.reply_to = sa(IP_A, 999)); // another port, not from the SNAT range
    edit(&|r| r.reply_to = sa(GW, 40000)); // SNAT to the gateway without hairpin
    edit(&|r| r.service = sa(VIP, 0));
    let invalid = bad.len();
    let mut stale = Vec::new();
    let mut edit = |f: &dyn Fn(&mut ConnRecord)| {
        let mut r = good(200 + stale.len() as u16);
        f(&mut r);
        stale.push(r);
    };
    edit(&|r| r.service = sa(VIP, 81)); // no such service port
    edit(&|r| r.endpoint = sa(IP_R, 8080)); // not (or no longer) an endpoint
    edit(&|r| {
        r.proto = L4Proto::Udp;
        r.state = ConnState::UdpReplied;
        r.expires_in_ms = 100 * S;
    }); // UDP VIP:80 does not exist
    edit(&|r| {
        r.client = sa("198.18.1.77".parse().unwrap(), 1);
        r.reply_to = r.client
    }); // no such pod
    let n_stale = stale.len();
    let mut conns = vec![good(1), good(1), good(2)]; // a duplicate
    conns.extend(bad);
    conns.extend(stale);
    let snap = CtSnapshot {
        conns,
        affinities: vec![AffinityRecord {
            client: IP_A,
            proto: L4Proto::Tcp,
            service: sa(VIP, 80),
            endpoint: sa(IP_B, 8080),
            expires_in_ms: S,
        }], // the service has no affinity
        snat_cursor: u32::MAX,
    };
    let n = node_with(16);
    let r = n.dp.import_conntrack(&snap, 0, 0);
    assert_eq!(
        r,
        CtImport {
            conns: 2,
            invalid,
            stale: n_stale + 1,
            duplicate: 1,
            ..Default::default()
        }
    );
    assert_eq!(n.dp.conntrack_len(), 2);
    // What was installed works.
    let f = tcp_seg(
        mac_b(),
        mac_a(),
        sa(IP_B, 8080),
        sa(IP_A, 2),
        ACK,
        1,
        1,
        b"",
    );
    let (v, pkt) = n.port_at(B, &f, d(), 1);
    assert_eq!(v, Verdict::ToPort(A));
    assert_eq!(addrs(pkt.frame()).0, sa(VIP, 80));
}

#[test]
fn the_bound_keeps_assured_connections_first() {
    let mut half = good(1);
    half.state = ConnState::SynSent;
    half.assured = false;
    half.expires_in_ms = 30 * S;
    let snap = CtSnapshot {
        conns: vec![half, good(2), good(3)],
        ..Default::default()
    };
    let n = node_with(2);
    let r = n.dp.import_conntrack(&snap, 0, 0);
    assert_eq!((r.conns, r.over_limit), (2, 1));
    let kept = n.dp.export_conntrack(0);
    assert!(kept.conns.iter().all(|c| c.assured), "{kept:?}");
    // A full table refuses new connections rather than evicting a restored one.
    let f = tcp_seg(mac_a(), router(), sa(IP_A, 9), sa(VIP, 80), SYN, 1, 0, b"");
    assert_eq!(
        n.port_at(A, &f, d(), 0).0,
        Verdict::Drop(DropReason::ConntrackFull)
    );
}

#[test]
fn the_generation_moves_with_changes_only() {
    let n = node_with(16);
    let g0 = n.dp.conntrack_generation();
    let c = Conn {
        sport: 5,
        remote: false,
        tcp: true,
        steps: 2,
    };
    c.drive(&n, 0);
    let g1 = n.dp.conntrack_generation();
    assert!(g1 > g0);
    c.client(&n, ACK, b"x", 1); // no transition: only the lifetime is refreshed
    assert_eq!(n.dp.conntrack_generation(), g1);
    n.dp.expire(25 * 3600 * S);
    assert!(n.dp.conntrack_generation() > g1, "expiry is a change");
}
