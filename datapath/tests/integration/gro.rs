//! `gro_append`: merging a flow's segments back into a TSO super-frame. Segmenting for the
//! tunnel and merging for the pod are inverses.

use crate::common;

use common::*;
use proptest::prelude::*;
use vswitch_datapath::buf::{VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4};
use vswitch_datapath::vxlan::VXLAN_HDR_LEN;
use vswitch_datapath::*;

const PSH: u8 = 0x08;

/// Splits a TSO super-frame as the tunnel does and returns the inner frames (VXLAN header
/// removed), each a plain frame with complete checksums.
fn segments(frame: &[u8], mss: u16) -> Vec<Vec<u8>> {
    let n = node();
    let (v, pkt) = n.port(A, frame, tso_vnet(mss));
    assert!(matches!(v, Verdict::ToTunnel { .. }), "{v:?}");
    let mut out = Vec::new();
    let (stride, count) = n.dp.segment_for_tunnel(&pkt, &mut out).unwrap();
    let segs: Vec<Vec<u8>> = out
        .chunks(stride)
        .map(|d| d[VXLAN_HDR_LEN..].to_vec())
        .collect();
    assert_eq!(segs.len(), count);
    segs
}

/// Merges `segs` in order through the engines' GRO hold (all to one port, as tunnel frames
/// of one flow are); returns the buffers that would be written to the pod.
fn merge(segs: &[Vec<u8>]) -> Vec<PacketBuf> {
    const POD: PortId = PortId::new(1);
    let mut written = Vec::new();
    let mut hold = GroHold::new();
    for s in segs {
        match hold.push(&mut gro_hold::Owned, POD, PacketBuf::from_frame(s)) {
            GroStep::Merged(_) | GroStep::Held => {}
            GroStep::Flush(port, h) => {
                assert_eq!(port, POD);
                written.push(h);
            }
        }
    }
    written.extend(hold.take().map(|(_, h)| h));
    written
}

/// The TCP payload and first sequence number of a plain or merged frame (checksum completed
/// and verified on the way).
fn payload_of(mut b: PacketBuf) -> (u32, Vec<u8>) {
    complete_checksum(&mut b).unwrap();
    let f = b.frame();
    assert_checksums(f);
    let thl = usize::from(f[46] >> 4) * 4;
    let seq = u32::from_be_bytes([f[38], f[39], f[40], f[41]]);
    (seq, f[34 + thl..].to_vec())
}

#[test]
fn segments_merge_back_into_one_super_frame() {
    let payload: Vec<u8> = (0..1398u32 * 40).map(|i| (i * 7 % 251) as u8).collect();
    let frame = tso_frame(&payload, PSH, 0x1234, 5000);
    let segs = segments(&frame, 1398);
    assert_eq!(segs.len(), 40);
    let out = merge(&segs);
    assert_eq!(out.len(), 1, "all segments merged");
    let m = &out[0];
    assert_eq!(m.vnet.gso_type, VNET_GSO_TCPV4);
    assert_eq!(m.vnet.flags, VNET_F_NEEDS_CSUM);
    assert_eq!(m.vnet.gso_size, 1398);
    assert_eq!((m.vnet.csum_start, m.vnet.csum_offset), (34, 16));
    assert_eq!(usize::from(m.vnet.hdr_len), 14 + 20 + 32);
    assert_eq!(
        m.frame()[47] & PSH,
        PSH,
        "PSH of the last segment carried over"
    );
    let (seq, data) = payload_of(out.into_iter().next().unwrap());
    assert_eq!(seq, 5000);
    assert_eq!(data, payload);
}

#[test]
fn a_gap_or_another_flow_is_not_merged() {
    let payload = vec![9u8; 1398 * 4];
    let segs = segments(&tso_frame(&payload, 0, 1, 100), 1398);
    // Drop the second segment: a sequence gap.
    let gap = vec![segs[0].clone(), segs[2].clone(), segs[3].clone()];
    assert_eq!(merge(&gap).len(), 2);
    // A corrupted segment is not merged (the pod's kernel will drop it).
    let mut bad = segs.clone();
    let last = bad[1].len() - 1;
    bad[1][last] ^= 0xff;
    let out = merge(&bad);
    assert_eq!(out.len(), 3, "segment 1 stands alone, 2 and 3 merge");
    // A different port pair is another flow.
    let mut other = segs.clone();
    other[1][35] ^= 1; // source port low byte
    assert!(merge(&other).len() >= 2);
    // A plain frame never merges into a frame that carries PSH.
    let pushed = segments(&tso_frame(&vec![1u8; 1398], PSH, 1, 1), 1398);
    let next = segments(&tso_frame(&vec![2u8; 1398], 0, 2, 1 + 1398), 1398);
    assert_eq!(merge(&[pushed[0].clone(), next[0].clone()]).len(), 2);
}

#[test]
fn the_hold_flushes_on_another_port_and_merges_by_pool_index() {
    let segs = segments(&tso_frame(&vec![3u8; 1398 * 3], 0, 1, 100), 1398);
    let mut pool: Vec<PacketBuf> = segs.iter().map(|s| PacketBuf::from_frame(s)).collect();
    let pool = pool.as_mut_slice();
    let mut hold = GroHold::<u32>::new();
    let (p1, p2) = (PortId::new(1), PortId::new(2));
    assert_eq!(hold.push(pool, p1, 0), GroStep::Held);
    // The next segment of the flow, but for another port: the held frame goes out first.
    assert_eq!(hold.push(pool, p2, 1), GroStep::Flush(p1, 0));
    // The third segment follows the second: merged, its buffer is free again.
    assert_eq!(hold.push(pool, p2, 2), GroStep::Merged(2));
    // A buffer is never merged into itself.
    assert_eq!(hold.push(pool, p2, 1), GroStep::Flush(p2, 1));
    assert_eq!(hold.take(), Some((p2, 1)));
    assert_eq!(hold.take(), None);
    assert_eq!(
        pool[1].vnet.gso_type, VNET_GSO_TCPV4,
        "2 and 3 merged in buffer 1"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// GSO split then GRO merge is the identity on the byte stream, for any payload size and
    /// MSS, and every frame handed to the pod has correct checksums.
    #[test]
    fn split_then_merge_is_identity(len in 1usize..60_000, mss in 536u16..=1398, seq in any::<u32>()) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
        let frame = tso_frame(&payload, 0, 7, seq);
        let segs = segments(&frame, mss);
        let out = merge(&segs);
        prop_assert_eq!(out.len(), 1);
        let (s, data) = payload_of(out.into_iter().next().unwrap());
        prop_assert_eq!(s, seq);
        prop_assert_eq!(data, payload);
    }
}
