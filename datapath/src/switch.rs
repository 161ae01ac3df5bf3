//! Ingress from pods: classification, anti-spoofing, ARP, ICMP, L2 switching and L3 routing.

use crate::{Datapath, PacketBuf, PortId, Tables, Verdict};

impl Datapath {
    /// Decides what happens to a frame read from `in_port`'s TAP. `now_ms` is a monotonic
    /// clock in milliseconds, passed in by the shell.
    pub fn from_port(
        &self,
        tables: &Tables,
        in_port: PortId,
        pkt: &mut PacketBuf,
        now_ms: u64,
    ) -> Verdict {
        let _ = (tables, in_port, pkt, now_ms);
        todo!("implemented by the datapath work")
    }
}
