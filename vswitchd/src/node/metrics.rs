//! The node's numbers for a metrics scrape (`crate::metrics`): what `stats`, `service list`
//! and `node show` read, gathered under the node's lock into a plain [`Snapshot`].

use super::{Inner, Node};
use crate::metrics::{
    DatastoreMetrics, LinkStats, PeerMetrics, PortMetrics, ServiceMetrics, Snapshot,
};
use std::sync::atomic::Ordering::Relaxed;
use vswitch_datapath::LinkCounters;

impl Node {
    /// The numbers of one scrape. Blocks on the node's lock: call it from a plain thread,
    /// never from the control plane's runtime.
    pub fn metrics_snapshot_blocking(&self) -> Snapshot {
        let inner = self.inner.blocking_lock();
        self.metrics_snapshot(&inner)
    }

    fn metrics_snapshot(&self, inner: &Inner) -> Snapshot {
        let dp = &self.datapath;
        Snapshot {
            node: self.args.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            datapath: self.io.kind().to_string(),
            ports: inner
                .ports
                .values()
                .map(|p| PortMetrics {
                    name: p.rec.name.clone(),
                    namespace: p.rec.namespace.clone(),
                    link: link(&p.counters),
                })
                .collect(),
            peers: inner
                .peers
                .values()
                .map(|p| PeerMetrics {
                    node: p.rec.node.clone(),
                    link: link(&p.counters),
                })
                .collect(),
            drops: dp.counters().snapshot_by_direction(),
            conntrack_entries: dp.conntrack_len() as u64,
            conntrack_max: dp.config().ct_max as u64,
            conntrack_evicted: dp.conntrack_evicted(),
            services: inner
                .services
                .values()
                .map(|s| ServiceMetrics {
                    name: s.name.clone(),
                    namespace: s.namespace.clone(),
                    endpoints: inner.ready_endpoints(s).len() as u64,
                })
                .collect(),
            ports_lost: self.ports_lost.load(Relaxed),
            datastore: self.datastore.as_ref().map(|d| {
                let st = d.status();
                DatastoreMetrics {
                    connected: st.connected,
                    revision: st.revision,
                    skipped: st.skipped,
                }
            }),
        }
    }
}

fn link(c: &LinkCounters) -> LinkStats {
    LinkStats {
        rx_packets: c.rx_packets.load(Relaxed),
        rx_bytes: c.rx_bytes.load(Relaxed),
        tx_packets: c.tx_packets.load(Relaxed),
        tx_bytes: c.tx_bytes.load(Relaxed),
        rx_dropped: c.rx_dropped.load(Relaxed),
    }
}
