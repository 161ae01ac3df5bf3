//! The node's state, pure: no tokio, no namespaces, no files. It validates a request against
//! the state, allocates addresses and ids, applies a change and says how to undo it, and builds
//! the datapath's table snapshot. The effects around it (TAPs, persistence, installing the
//! snapshot) live in `node.rs`; a request goes: validate here, create what the pod needs,
//! apply here ([`Undo`] back), save; when the save fails, [`NodeState::rollback`] and the
//! state is as before the request. The services' part (validation, endpoints, the service
//! and DNS tables) is `state/services.rs`; `apply`/`delete` of Kubernetes objects and the
//! namespace store are `state/apply.rs`.
//!
//! Error answers ([`Reject`]) carry the request field they blame; their messages are part of
//! the contract (the CLI prints them, the tests match them).

use crate::checked;
use crate::state::{NamespaceRecord, PeerRecord, PersistedState, PortRecord, ServiceRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch_datapath::{
    Ipv4Cidr, LinkCounters, Mac, NodeConfig, PeerEntry, PeerId, PortEntry, PortId, Tables,
};
use vswitch_proto::{
    validate, CniAttach, ErrorKind, PeerSource, PeerSpec, PortKey, PortSpec, PortStatus, Response,
};

mod apply;
pub(super) mod cluster;
mod services;

pub(super) use services::{pod_dns, UdpBackend};

/// An error answer to a request: what kind of error, the request field it names (when it
/// is one field's fault) and the message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reject {
    pub kind: ErrorKind,
    pub field: Option<&'static str>,
    pub msg: String,
}

impl Reject {
    /// An error that is no one field's fault.
    pub fn other(msg: impl Into<String>) -> Reject {
        Reject {
            kind: ErrorKind::Other,
            field: None,
            msg: msg.into(),
        }
    }

    /// The error answer on the wire.
    pub fn into_response(self) -> Response {
        Response::error(self.kind, self.field, self.msg)
    }
}

/// The request's `field` is wrong.
pub(super) fn reject(field: &'static str, msg: impl Into<String>) -> Reject {
    Reject {
        kind: ErrorKind::Invalid,
        field: Some(field),
        msg: msg.into(),
    }
}

/// A value that failed its shape check ([`validate`] names the field).
pub(super) fn invalid(e: validate::Invalid) -> Reject {
    reject(e.field, e.message)
}

/// What `field` names does not exist.
pub(super) fn not_found(field: &'static str, msg: impl Into<String>) -> Reject {
    Reject {
        kind: ErrorKind::NotFound,
        field: Some(field),
        msg: msg.into(),
    }
}

/// What `field` names exists already.
pub(super) fn exists(field: &'static str, msg: impl Into<String>) -> Reject {
    Reject {
        kind: ErrorKind::Exists,
        field: Some(field),
        msg: msg.into(),
    }
}

/// Saving the state failed; the change was rolled back.
pub(super) fn save_failed(e: anyhow::Error) -> Reject {
    Reject {
        kind: ErrorKind::Unavailable,
        field: None,
        msg: format!("saving state failed, nothing changed: {e:#}"),
    }
}

/// The checks of a CNI ADD before the state is looked at: the container id and the
/// interface name have the shapes the CNI plugin checks too (a request may come from
/// another client).
pub(super) fn check_cni_attach(a: &CniAttach) -> Result<(), Reject> {
    if a.container_id.is_empty() {
        return Err(reject("container_id", "CNI_CONTAINERID is empty"));
    }
    validate::container_id("container_id", &a.container_id).map_err(invalid)?;
    validate::ifname("ifname", &a.ifname).map_err(invalid)
}

/// A port of this node.
pub(super) struct Port {
    pub rec: PortRecord,
    pub mac: Mac,
    /// The datapath port id while the TAP is attached.
    pub id: Option<PortId>,
    pub status: PortStatus,
    pub counters: Arc<LinkCounters>,
    /// The identity of the pod's netns when its TAP was attached (`lost.rs` watches it).
    pub netns_id: Option<super::lost::NetnsId>,
}

impl Port {
    /// A persisted port, not attached (yet).
    pub fn detached(rec: PortRecord) -> Port {
        let mac = checked::mac("mac", &rec.mac).unwrap_or(Mac::from_ipv4(rec.ip));
        Port {
            rec,
            mac,
            id: None,
            status: PortStatus::Detached,
            counters: Arc::default(),
            netns_id: None,
        }
    }

    /// The port's key.
    pub fn key(&self) -> PortKey {
        PortKey {
            name: self.rec.name.clone(),
            namespace: self.rec.namespace.clone(),
        }
    }
}

/// A peer node.
pub(super) struct Peer {
    pub rec: PeerRecord,
    pub id: PeerId,
    pub cidr: Ipv4Cidr,
    pub mac: Mac,
    pub counters: Arc<LinkCounters>,
}

impl Peer {
    /// The peer as a `peer add` would give it (what the datastore's diff compares).
    pub fn spec(&self) -> PeerSpec {
        PeerSpec {
            node: self.rec.node.clone(),
            underlay: self.rec.underlay.to_string(),
            pod_cidr: self.rec.pod_cidr.clone(),
            vtep_mac: Some(self.rec.vtep_mac.clone()),
        }
    }
}

/// A `port add` that passed validation: what to create and record.
pub(super) struct NewPort {
    pub key: PortKey,
    pub rec: PortRecord,
    pub mac: Mac,
    /// The address was allocated (not given): the allocator's cursor moves to it.
    pub allocated: bool,
}

/// How to undo one applied change ([`NodeState::rollback`]). Ids are not given back: they
/// are never reused.
#[must_use = "a change is undone with NodeState::rollback when it cannot be saved"]
pub(super) enum Undo {
    /// A port was added (and the allocator's cursor was this before).
    PortAdded {
        key: PortKey,
        last_allocated: Option<Ipv4Addr>,
    },
    /// A port was removed.
    PortRemoved { port: Port },
    /// A detached port was attached; this was its record and netns identity before.
    PortAttached {
        key: PortKey,
        rec: PortRecord,
        netns_id: Option<super::lost::NetnsId>,
    },
    /// Peer `node` was added, or replaced `old`.
    PeerSet { node: String, old: Option<Peer> },
    /// A peer was removed.
    PeerRemoved { peer: Peer },
    /// Service `key` was added.
    ServiceAdded { key: vswitch_proto::ServiceKey },
    /// A service was removed, or replaced (by `apply`): this was it.
    ServiceRemoved { rec: ServiceRecord },
    /// Namespace `name` was added, or replaced `old`.
    NamespaceSet {
        name: String,
        old: Option<NamespaceRecord>,
    },
    /// A namespace was removed.
    NamespaceRemoved { rec: NamespaceRecord },
}

impl Undo {
    /// The port a [`Undo::PortRemoved`] holds.
    pub fn removed_port(&self) -> Option<&Port> {
        match self {
            Undo::PortRemoved { port } => Some(port),
            _ => None,
        }
    }
}

/// Everything the control plane knows about the node, with the node's own configuration.
pub(super) struct NodeState {
    cfg: NodeConfig,
    /// This node's name (`--node`).
    node: String,
    /// This node's underlay address (`--underlay`).
    underlay: Option<Ipv4Addr>,
    pub ports: BTreeMap<PortKey, Port>,
    pub peers: BTreeMap<String, Peer>,
    pub services: BTreeMap<vswitch_proto::ServiceKey, ServiceRecord>,
    /// Namespaces stored by `apply`, by name.
    pub namespaces: BTreeMap<String, NamespaceRecord>,
    /// The UDP service backends of the installed snapshot (to flush those that leave).
    pub udp_backends: BTreeSet<UdpBackend>,
    /// The node runs with a datastore: what `apply` makes is the cluster's
    /// (`from_datastore`), written to etcd rather than kept here (`state/cluster.rs`).
    pub datastore: bool,
    /// The other nodes' pods, from the datastore (`state/cluster.rs`).
    pub cluster_pods: BTreeMap<cluster::PodKey, cluster::PodRecord>,
    /// The nodes whose liveness record exists in the datastore.
    pub ready_nodes: BTreeSet<String>,
    next_id: u32,
    last_allocated: Option<Ipv4Addr>,
}

impl NodeState {
    /// An empty state for a node; `last_allocated` is the allocator's persisted cursor.
    pub fn new(
        cfg: NodeConfig,
        node: String,
        underlay: Option<Ipv4Addr>,
        last_allocated: Option<Ipv4Addr>,
    ) -> NodeState {
        NodeState {
            cfg,
            node,
            underlay,
            ports: BTreeMap::new(),
            peers: BTreeMap::new(),
            services: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            udp_backends: BTreeSet::new(),
            datastore: false,
            cluster_pods: BTreeMap::new(),
            ready_nodes: BTreeSet::new(),
            next_id: 1,
            last_allocated,
        }
    }

    /// A new port or peer id (ids are never reused).
    pub fn alloc_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// What is persisted of the state.
    pub fn persisted(&self) -> PersistedState {
        PersistedState {
            version: 0,
            pod_cidr: self.cfg.pod_cidr.to_string(),
            ports: self.ports.values().map(|p| p.rec.clone()).collect(),
            peers: self.peers.values().map(|p| p.rec.clone()).collect(),
            last_allocated: self.last_allocated,
            services: self.services.values().cloned().collect(),
            namespaces: self.namespaces.values().cloned().collect(),
        }
    }

    /// The first checks of a `port add`, before its netns is looked at: the names, the
    /// labels, and that the port does not exist.
    pub fn check_port_spec(&self, spec: &PortSpec) -> Result<PortKey, Reject> {
        validate::k8s_name("name", &spec.name).map_err(invalid)?;
        validate::k8s_name("namespace", &spec.namespace).map_err(invalid)?;
        validate::ifname("ifname", &spec.ifname).map_err(invalid)?;
        for (k, v) in &spec.labels {
            validate::label("label", k, v).map_err(invalid)?;
        }
        let key = PortKey {
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
        };
        if self.ports.contains_key(&key) {
            return Err(exists(
                "name",
                format!("port {}/{} already exists", key.namespace, key.name),
            ));
        }
        Ok(key)
    }

    /// The rest of a `port add` (after [`NodeState::check_port_spec`]), with its netns
    /// resolved: the interface is free, the address is valid and free (or allocated), the
    /// MAC is free.
    pub fn plan_port(
        &self,
        spec: PortSpec,
        netns: String,
        container_id: Option<String>,
    ) -> Result<NewPort, Reject> {
        if let Some(other) = self
            .ports
            .values()
            .find(|p| p.rec.netns == netns && p.rec.ifname == spec.ifname)
        {
            return Err(reject(
                "netns",
                format!(
                    "{} in {netns} already belongs to port {}/{}",
                    spec.ifname, other.rec.namespace, other.rec.name
                ),
            ));
        }
        let (ip, prefix_len) = match &spec.ip {
            Some(s) => self.parse_pod_ip(s)?,
            None => (self.allocate()?, self.cfg.pod_cidr.prefix_len()),
        };
        let mac = match &spec.mac {
            Some(s) => checked::mac("mac", s).map_err(invalid)?,
            None => Mac::from_ipv4(ip),
        };
        if mac == self.cfg.router_mac
            || mac == self.cfg.vtep_mac
            || self.ports.values().any(|p| p.mac == mac)
        {
            return Err(reject(
                "mac",
                format!("{mac} is already in use on this node"),
            ));
        }
        Ok(NewPort {
            key: PortKey {
                name: spec.name.clone(),
                namespace: spec.namespace.clone(),
            },
            rec: PortRecord {
                name: spec.name,
                namespace: spec.namespace,
                netns,
                ifname: spec.ifname,
                ip,
                prefix_len,
                mac: mac.to_string(),
                labels: spec.labels,
                container_id,
                runtime_name: None,
                runtime_namespace: None,
            },
            mac,
            allocated: spec.ip.is_none(),
        })
    }

    fn parse_pod_ip(&self, s: &str) -> Result<(Ipv4Addr, u8), Reject> {
        let cfg = &self.cfg;
        let net = validate::ip_with_prefix("ip", s).map_err(invalid)?;
        let (ip, plen) = (net.addr(), net.prefix_len());
        if plen != cfg.pod_cidr.prefix_len() {
            return Err(reject(
                "ip",
                format!(
                    "prefix length /{plen} differs from the node subnet {}",
                    cfg.pod_cidr
                ),
            ));
        }
        if !cfg.pod_cidr.contains(ip) {
            return Err(reject(
                "ip",
                format!("{ip} is outside this node's subnet {}", cfg.pod_cidr),
            ));
        }
        if ip == cfg.pod_cidr.network() || ip == cfg.gateway || ip == cfg.pod_cidr.broadcast() {
            return Err(reject(
                "ip",
                format!("{ip} is reserved (network, gateway or broadcast address)"),
            ));
        }
        if let Some(p) = self.ports.values().find(|p| p.rec.ip == ip) {
            return Err(reject(
                "ip",
                format!(
                    "{ip} is already used by port {}/{}",
                    p.rec.namespace, p.rec.name
                ),
            ));
        }
        Ok((ip, plen))
    }

    /// The next free address after the last one handed out (round-robin, like host-local
    /// IPAM, so a freed address is not reused at once).
    pub fn allocate(&self) -> Result<Ipv4Addr, Reject> {
        let cidr = self.cfg.pod_cidr;
        let first = u32::from(cidr.network()) + 2;
        let last = u32::from(cidr.broadcast()) - 1;
        let start = self
            .last_allocated
            .map(u32::from)
            .filter(|a| (first..=last).contains(a))
            .map(|a| if a == last { first } else { a + 1 })
            .unwrap_or(first);
        let size = last.saturating_sub(first) + 1;
        (0..size)
            .map(|i| Ipv4Addr::from(first + (start - first + i) % size))
            .find(|ip| !self.ports.values().any(|p| p.rec.ip == *ip))
            .ok_or_else(|| Reject {
                kind: ErrorKind::Exhausted,
                field: Some("ip"),
                msg: format!("no free address left in {cidr}"),
            })
    }

    /// Adds a planned port, attached as port `id`; moves the allocator's cursor when its
    /// address was allocated.
    pub fn add_port(
        &mut self,
        new: NewPort,
        id: PortId,
        netns_id: Option<super::lost::NetnsId>,
    ) -> Undo {
        let last_allocated = self.last_allocated;
        if new.allocated {
            self.last_allocated = Some(new.rec.ip);
        }
        let port = Port {
            rec: new.rec,
            mac: new.mac,
            id: Some(id),
            status: PortStatus::Running,
            counters: Arc::default(),
            netns_id,
        };
        self.ports.insert(new.key.clone(), port);
        Undo::PortAdded {
            key: new.key,
            last_allocated,
        }
    }

    /// Removes port `key`.
    pub fn remove_port(&mut self, key: &PortKey) -> Result<Undo, Reject> {
        match self.ports.remove(key) {
            Some(port) => Ok(Undo::PortRemoved { port }),
            None => Err(not_found(
                "name",
                format!("port {}/{} does not exist", key.namespace, key.name),
            )),
        }
    }

    /// Marks detached port `key` attached as port `id`, with its record now `rec` (the
    /// netns may have changed) and `netns_id` the identity of the namespace it was attached
    /// in (what `lost.rs` watches).
    pub fn attach_port(
        &mut self,
        key: &PortKey,
        rec: PortRecord,
        id: PortId,
        netns_id: Option<super::lost::NetnsId>,
    ) -> Option<Undo> {
        let port = self.ports.get_mut(key)?;
        let old = std::mem::replace(&mut port.rec, rec);
        let old_netns_id = std::mem::replace(&mut port.netns_id, netns_id);
        port.id = Some(id);
        port.status = PortStatus::Running;
        Some(Undo::PortAttached {
            key: key.clone(),
            rec: old,
            netns_id: old_netns_id,
        })
    }

    /// The checks of a `peer add`: the record to store.
    pub fn check_peer(&self, spec: &PeerSpec) -> Result<PeerRecord, Reject> {
        let cfg = &self.cfg;
        validate::node_name("node", &spec.node).map_err(invalid)?;
        if spec.node == self.node {
            return Err(reject("node", "a node cannot be its own peer"));
        }
        let underlay = validate::ipv4("underlay", &spec.underlay).map_err(invalid)?;
        if Some(underlay) == self.underlay {
            return Err(reject(
                "underlay",
                format!("{underlay} is this node's own underlay"),
            ));
        }
        let cidr = checked::cidr("pod_cidr", &spec.pod_cidr).map_err(invalid)?;
        if cidr.overlaps(&cfg.pod_cidr) {
            return Err(reject(
                "pod_cidr",
                format!("{cidr} overlaps this node's subnet {}", cfg.pod_cidr),
            ));
        }
        if let Some(svc) = cfg.service_cidr.filter(|s| s.overlaps(&cidr)) {
            return Err(reject(
                "pod_cidr",
                format!("{cidr} overlaps the service CIDR {svc}"),
            ));
        }
        for p in self.peers.values().filter(|p| p.rec.node != spec.node) {
            if p.cidr.overlaps(&cidr) {
                return Err(reject(
                    "pod_cidr",
                    format!("{cidr} overlaps {} of peer {}", p.cidr, p.rec.node),
                ));
            }
            if p.rec.underlay == underlay {
                return Err(reject(
                    "underlay",
                    format!("{underlay} is already peer {}'s underlay", p.rec.node),
                ));
            }
        }
        let vtep_mac = match &spec.vtep_mac {
            Some(s) => checked::mac("vtep_mac", s).map_err(invalid)?,
            None => Mac::from_ipv4(cidr.network()),
        };
        Ok(PeerRecord {
            node: spec.node.clone(),
            underlay,
            pod_cidr: cidr.to_string(),
            vtep_mac: vtep_mac.to_string(),
            source: PeerSource::Manual,
        })
    }

    /// A peer from its record, with a new id.
    pub fn peer_from_record(&mut self, rec: PeerRecord) -> Result<Peer, Reject> {
        let cidr = checked::cidr("pod_cidr", &rec.pod_cidr).map_err(invalid)?;
        let mac = checked::mac("vtep_mac", &rec.vtep_mac).map_err(invalid)?;
        Ok(Peer {
            rec,
            id: PeerId::new(self.alloc_id()),
            cidr,
            mac,
            counters: Arc::default(),
        })
    }

    /// Adds `peer`, or replaces the peer of the same name (keeping its counters).
    pub fn set_peer(&mut self, mut peer: Peer) -> Undo {
        let node = peer.rec.node.clone();
        let old = self.peers.remove(&node);
        if let Some(old) = &old {
            // Replacing a peer keeps its counters.
            peer.counters = old.counters.clone();
        }
        self.peers.insert(node.clone(), peer);
        Undo::PeerSet { node, old }
    }

    /// Removes peer `node`.
    pub fn remove_peer(&mut self, node: &str) -> Result<Undo, Reject> {
        match self.peers.remove(node) {
            Some(peer) => Ok(Undo::PeerRemoved { peer }),
            None => Err(not_found("node", format!("peer {node} does not exist"))),
        }
    }

    /// Undoes a change; the state is as before it. Returns the port an undone
    /// [`Undo::PortAdded`] removes (its TAP is the caller's to remove).
    pub fn rollback(&mut self, undo: Undo) -> Option<Port> {
        match undo {
            Undo::PortAdded {
                key,
                last_allocated,
            } => {
                self.last_allocated = last_allocated;
                self.ports.remove(&key)
            }
            Undo::PortRemoved { port } => {
                self.ports.insert(port.key(), port);
                None
            }
            Undo::PortAttached { key, rec, netns_id } => {
                if let Some(port) = self.ports.get_mut(&key) {
                    port.rec = rec;
                    port.netns_id = netns_id;
                    port.id = None;
                    port.status = PortStatus::Detached;
                }
                None
            }
            Undo::PeerSet { node, old } => {
                self.peers.remove(&node);
                if let Some(old) = old {
                    self.peers.insert(node, old);
                }
                None
            }
            Undo::PeerRemoved { peer } => {
                self.peers.insert(peer.rec.node.clone(), peer);
                None
            }
            Undo::ServiceAdded { key } => {
                self.services.remove(&key);
                None
            }
            Undo::ServiceRemoved { rec } => {
                let key = vswitch_proto::ServiceKey {
                    name: rec.name.clone(),
                    namespace: rec.namespace.clone(),
                };
                self.services.insert(key, rec);
                None
            }
            Undo::NamespaceSet { name, old } => {
                self.namespaces.remove(&name);
                if let Some(old) = old {
                    self.namespaces.insert(name, old);
                }
                None
            }
            Undo::NamespaceRemoved { rec } => {
                self.namespaces.insert(rec.name.clone(), rec);
                None
            }
        }
    }

    /// Undoes several changes, the last one first.
    pub fn rollback_all(&mut self, undos: Vec<Undo>) {
        for undo in undos.into_iter().rev() {
            let _ = self.rollback(undo);
        }
    }

    /// The port of CNI attachment (container id, interface).
    pub fn find_cni(&self, container_id: &str, ifname: &str) -> Option<PortKey> {
        self.ports
            .iter()
            .find(|(_, p)| {
                p.rec.container_id.as_deref() == Some(container_id) && p.rec.ifname == ifname
            })
            .map(|(k, _)| k.clone())
    }

    /// The CNI attachments not in `keep` (container id, interface); ports added by an
    /// operator are not the runtime's to collect.
    pub fn stale_cni(&self, keep: &BTreeSet<(String, String)>) -> Vec<PortKey> {
        self.ports
            .iter()
            .filter(|(_, p)| match &p.rec.container_id {
                Some(c) => !keep.contains(&(c.clone(), p.rec.ifname.clone())),
                None => false,
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The port attached as `id`.
    pub fn port_by_id(&self, id: PortId) -> Option<PortKey> {
        self.ports
            .iter()
            .find(|(_, p)| p.id == Some(id))
            .map(|(k, _)| k.clone())
    }

    /// The table snapshot of the state: the attached ports, the peers, and the given
    /// service and DNS tables ([`NodeState::service_tables`]).
    pub fn tables(
        &self,
        services: Vec<vswitch_datapath::ServiceEntry>,
        dns: Vec<vswitch_datapath::DnsEntry>,
    ) -> Tables {
        let ports = self
            .ports
            .values()
            .filter_map(|p| {
                p.id.map(|id| PortEntry {
                    id,
                    mac: p.mac,
                    ip: p.rec.ip,
                    counters: p.counters.clone(),
                })
            })
            .collect();
        let peers = self
            .peers
            .values()
            .map(|p| PeerEntry {
                id: p.id,
                underlay: p.rec.underlay,
                pod_cidr: p.cidr,
                vtep_mac: p.mac,
                counters: p.counters.clone(),
            })
            .collect();
        Tables::new(ports, peers).with_services(services, dns)
    }
}

#[cfg(test)]
mod tests;
