//! What the flow log (`crate::flows`) needs from the node: its ring, the datapath, and the
//! names of the numbers in a flow event (ports, pods by address, peers, Services).

use super::Node;
use crate::flows::{FlowRing, Names};
use vswitch_datapath::Datapath;
use vswitch_proto::observe::FlowPod;

impl Node {
    /// The flow log's ring.
    pub fn flows(&self) -> &FlowRing {
        &self.flows
    }

    /// The datapath (the flow log's counters).
    pub fn datapath(&self) -> &Datapath {
        &self.datapath
    }

    /// The names of the node's ports, pods, peers and Services now (one lock).
    pub async fn flow_names(&self) -> Names {
        let inner = self.inner.lock().await;
        let node = self.args.node.clone();
        let mut names = Names {
            node: node.clone(),
            ..Names::default()
        };
        for pod in inner.cluster_pods.values() {
            names.pods.insert(
                pod.ip,
                FlowPod {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    node: pod.node.clone(),
                },
            );
        }
        for p in inner.ports.values() {
            let (ns, name) = (p.rec.namespace.clone(), p.rec.name.clone());
            if let Some(id) = p.id {
                names.ports.insert(id, (ns.clone(), name.clone()));
            }
            names.pods.insert(
                p.rec.ip,
                FlowPod {
                    namespace: ns,
                    name,
                    node: node.clone(),
                },
            );
        }
        for peer in inner.peers.values() {
            names.peers.insert(peer.id, peer.rec.node.clone());
        }
        for svc in inner.services.values() {
            for port in &svc.ports {
                names.services.insert(
                    (svc.vip, port.port),
                    format!("{}/{}", svc.namespace, svc.name),
                );
            }
        }
        names
    }
}
