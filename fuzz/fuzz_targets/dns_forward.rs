//! The upstream DNS forwarder's state machine (`dns_forward::DnsForwarder`) driven by the
//! input, with a fresh forwarder per input: `[key: 16 bytes]` then operations, each
//! `[op][arg]`:
//! - op % 4 == 0: a pod query; `arg` bytes follow as the DNS message (from pod A, port 1).
//! - op % 4 == 1: an upstream datagram; `arg` bytes follow; when op bit 2 is set, its first two
//!   bytes are replaced by the id of the latest query sent upstream (a plausible answer).
//! - op % 4 == 2: the clock advances by `arg` * 64 ms, then `handle_timeout`.
//! - op % 4 == 3: the latest query's send fails (`transmit_failed`).
//!
//! Nothing may panic; queries go upstream under their new id with the rest untouched; answers
//! go back to the pod that asked with its id; the table stays within `MAX_PENDING`, the
//! queue drains, and `poll_timeout` never lies in the past of a sweep that had work to do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddrV4};
use vswitch_datapath::dns_forward::{Dest, Source, MAX_PENDING, SOCKETS};
use vswitch_datapath::{DnsForwarder, PortId};

const PORT: PortId = PortId::new(1);
/// The upstream resolver.
const UP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 53), 53);

const POD: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(198, 19, 96, 10);

/// Ethernet + IPv4 + UDP (checksums 0) from the pod (port 5353) to the DNS address.
fn frame(payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&POD.octets());
    f.extend_from_slice(&DNS.octets());
    f.extend_from_slice(&5353u16.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((key, mut ops)) = data.split_first_chunk::<16>() else {
        return;
    };
    let client = SocketAddrV4::new(POD, 5353);
    let mut f = DnsForwarder::new(*key, UP);
    let mut last_socket = 0;
    let mut now = 0u64;
    let mut last_id = None;
    let mut last_query = Vec::new();
    while let [op, arg, rest @ ..] = ops {
        // Queries and datagrams take `arg` bytes; the other operations none.
        let n = if op % 4 < 2 {
            usize::from(*arg).min(rest.len())
        } else {
            0
        };
        let (bytes, rest) = rest.split_at(n);
        ops = rest;
        match op % 4 {
            0 => {
                let ok = f.handle(now, PORT, client, &frame(bytes)).is_ok();
                assert!(!ok || bytes.len() >= 12, "a query of {} bytes", bytes.len());
                last_query = bytes.to_vec();
            }
            1 => {
                let mut d = bytes.to_vec();
                if op & 4 != 0 && d.len() >= 2 {
                    if let Some(id) = last_id {
                        d[..2].copy_from_slice(&u16::to_be_bytes(id));
                    }
                }
                let from = Source {
                    socket: last_socket,
                    addr: UP,
                };
                let took = f.handle_upstream(now, from, &d);
                assert!(!took || (d.len() >= 12 && d[2] & 0x80 != 0));
                if took {
                    let t = f.poll_transmit().expect("the answer is queued");
                    assert_eq!(t.dest, Dest::Pod { port: PORT, client });
                    assert_eq!(&t.payload[2..], &d[2..]);
                }
            }
            2 => {
                now += u64::from(*arg) * 64;
                let due = f.poll_timeout();
                let expired = f.handle_timeout(now);
                assert!(expired == 0 || due.is_some_and(|t| t <= now));
            }
            _ => {
                if let Some(id) = last_id.take() {
                    f.transmit_failed(id);
                }
            }
        }
        while let Some(t) = f.poll_transmit() {
            match t.dest {
                Dest::Upstream { id, socket, addr } => {
                    assert_eq!(addr, UP);
                    assert!(socket < SOCKETS);
                    last_socket = socket;
                    assert_eq!(&t.payload[..2], &id.to_be_bytes());
                    assert_eq!(&t.payload[2..], &last_query[2..]);
                    last_id = Some(id);
                }
                Dest::Pod { .. } => panic!("answers come out right after handle_upstream"),
            }
        }
        assert!(f.pending_len() <= MAX_PENDING);
        let _ = f.take_failed();
        let _ = f.take_limited();
        let _ = f.take_unmatched();
        while f.poll_reopen().is_some() {}
    }
});
