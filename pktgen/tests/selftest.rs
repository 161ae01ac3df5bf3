//! Sender and receiver on 127.0.0.1 in threads, through the library (no root needed).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::thread;
use vswitch_pktgen::{Header, Receiver, RecvConfig, SendConfig, Sender, StopReason, HEADER_LEN};

fn receiver(expect: Option<u64>, idle_secs: f64) -> (Receiver, SocketAddrV4) {
    let cfg = RecvConfig {
        duration_secs: 20.0,
        idle_secs,
        expect,
        ..RecvConfig::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
    };
    let rx = Receiver::bind(cfg).unwrap();
    let SocketAddr::V4(addr) = rx.local_addr().unwrap() else {
        panic!("bound to IPv4")
    };
    (rx, addr)
}

#[test]
fn ten_thousand_packets_over_loopback_without_loss() {
    let (rx, addr) = receiver(Some(10_000), 2.0);
    let rx = thread::spawn(move || rx.run().unwrap());
    // Paced so that a receiver without SO_RCVBUFFORCE (not root: rmem_max, a few hundred
    // datagrams) keeps up on a busy machine: 20 k/s, 0.5 s.
    let cfg = SendConfig {
        size: 200,
        count: 10_000,
        duration_secs: 10.0,
        rate_pps: 20_000,
        batch: 16,
        stream_id: Some(42),
        ..SendConfig::new(addr)
    };
    let tx = Sender::new(cfg).unwrap().run().unwrap();
    let rx = rx.join().unwrap();

    assert_eq!(tx.sent, 10_000);
    assert_eq!(tx.stopped_by, StopReason::Count);
    assert_eq!((tx.frame_size, tx.payload_size), (200, 158));
    // Paced: 10_000 packets at 20_000/s take about 0.5 s, never much less.
    assert!(tx.elapsed_s > 0.45, "elapsed {}", tx.elapsed_s);
    assert!(tx.offered_pps < 21_000.0, "offered {}", tx.offered_pps);

    assert_eq!(rx.stopped_by, StopReason::Expect);
    assert_eq!(rx.received, 10_000);
    assert_eq!(
        (rx.lost, rx.reordered, rx.duplicates, rx.malformed),
        (0, 0, 0, 0)
    );
    assert_eq!(rx.streams.len(), 1);
    assert_eq!(rx.streams[0].stream_id, 42);
    assert_eq!(rx.streams[0].max_seq, Some(9_999));
    assert_eq!(rx.frame_bytes, 10_000 * 200);
    assert!(rx.delivered_pps > 10_000.0 && rx.delivered_pps < 30_000.0);
    let lat = rx.latency_us.as_ref().expect("latency samples");
    assert_eq!(lat.samples, 10_000);
    assert!(lat.min <= lat.p50 && lat.p50 <= lat.p99 && lat.p99 <= lat.p999);
    assert!(lat.p999 <= lat.max && lat.max < 1e6);

    // The report is one JSON object with the documented fields.
    let json = serde_json::to_value(&rx).unwrap();
    assert_eq!(json["stopped_by"], "expect");
    assert_eq!(json["streams"][0]["lost"], 0);
    assert!(json["latency_us"]["p99"].is_number());
}

#[test]
fn receiver_counts_gaps_reorders_duplicates_and_junk() {
    let (rx, addr) = receiver(None, 0.3);
    let rx = thread::spawn(move || rx.run().unwrap());
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in [0u64, 1, 3, 2, 2, 6, 5] {
        let mut d = [0u8; 100];
        let h = Header {
            stream_id: 7,
            seq,
            timestamp_ns: vswitch_pktgen::now_ns(),
        };
        h.encode(d.first_chunk_mut::<HEADER_LEN>().unwrap());
        tx.send_to(&d, addr).unwrap();
    }
    tx.send_to(b"not a pktgen datagram", addr).unwrap();
    tx.send_to(&[], addr).unwrap();
    let r = rx.join().unwrap();

    assert_eq!(r.stopped_by, StopReason::Idle);
    assert_eq!((r.received, r.malformed), (7, 2));
    assert_eq!((r.lost, r.reordered, r.duplicates), (1, 2, 1)); // 4; 2 and 5; 2
    assert_eq!(r.frame_bytes, 7 * 142);
    assert_eq!(r.streams[0].max_seq, Some(6));
}

#[test]
fn both_ends_stop_by_themselves() {
    // Nothing arrives: the receiver ends at its duration.
    let cfg = RecvConfig {
        duration_secs: 0.2,
        ..RecvConfig::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
    };
    let r = Receiver::bind(cfg).unwrap().run().unwrap();
    assert_eq!((r.received, r.stopped_by), (0, StopReason::Duration));
    assert!(r.latency_us.is_none() && r.elapsed_s < 1.0);

    // Nobody listens and the count is out of reach: the sender ends at its duration, the
    // refused datagrams (ICMP port unreachable) counted as errors, not fatal.
    let (rx, addr) = receiver(None, 1.0);
    drop(rx);
    let cfg = SendConfig {
        count: u64::MAX,
        duration_secs: 0.2,
        rate_pps: 1_000,
        ..SendConfig::new(addr)
    };
    let t = Sender::new(cfg).unwrap().run().unwrap();
    assert_eq!(t.stopped_by, StopReason::Duration);
    assert!(t.elapsed_s < 1.0);
    assert!(t.sent > 0 && t.sent <= 300, "sent {}", t.sent);
}
