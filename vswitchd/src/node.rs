//! The control plane of one node: ports, peers, services, address allocation and the tables
//! it installs into the datapath. Every request validates first and changes state only when
//! everything it needs has succeeded; the persisted state is saved before the answer.

use crate::io::IoHandle;
use crate::podnet::{self, PodIfConfig};
use crate::state::{PeerRecord, PersistedState, PortRecord, ServiceRecord, Store};
use crate::{checked, tap, Args, OnOff};
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::Mutex;
use tracing::{info, warn};
use vswitch_datapath::{
    Datapath, Ipv4Cidr, LinkCounters, Mac, PeerEntry, PeerId, PortEntry, PortId, Tables,
};
use vswitch_proto::{
    validate, ConntrackStats, ErrorKind, NodeInfo, PeerInfo, PeerSpec, PortInfo, PortKey, PortSpec,
    PortStats, Request, Response, ServiceKey, StatsReport,
};

/// An error answer: (kind, field, message).
type Reject = (ErrorKind, Option<&'static str>, String);

/// The request's `field` is wrong.
fn reject(field: &'static str, msg: impl Into<String>) -> Reject {
    (ErrorKind::Invalid, Some(field), msg.into())
}

/// A value that failed its shape check ([`validate`] names the field).
fn invalid(e: validate::Invalid) -> Reject {
    reject(e.field, e.message)
}

/// What `field` names does not exist.
fn not_found(field: &'static str, msg: impl Into<String>) -> Reject {
    (ErrorKind::NotFound, Some(field), msg.into())
}

/// What `field` names exists already.
fn exists(field: &'static str, msg: impl Into<String>) -> Reject {
    (ErrorKind::Exists, Some(field), msg.into())
}

/// Saving the state failed; the change was rolled back.
fn save_failed(e: anyhow::Error) -> Reject {
    (
        ErrorKind::Unavailable,
        None,
        format!("saving state failed, nothing changed: {e:#}"),
    )
}

mod cni;
mod lost;
mod services;

struct Port {
    rec: PortRecord,
    mac: Mac,
    /// The datapath port id while the TAP is attached.
    id: Option<PortId>,
    status: String,
    counters: Arc<LinkCounters>,
    /// The identity of the pod's netns when its TAP was attached (`lost.rs` watches it).
    netns_id: Option<lost::NetnsId>,
}

struct Peer {
    rec: PeerRecord,
    id: PeerId,
    cidr: Ipv4Cidr,
    mac: Mac,
    counters: Arc<LinkCounters>,
}

struct Inner {
    ports: BTreeMap<PortKey, Port>,
    peers: BTreeMap<String, Peer>,
    services: BTreeMap<ServiceKey, ServiceRecord>,
    /// The UDP service backends of the installed snapshot (to flush those that leave).
    udp_backends: BTreeSet<services::UdpBackend>,
    next_id: u32,
    last_allocated: Option<Ipv4Addr>,
    store: Store,
}

/// One node's control plane.
pub struct Node {
    args: Args,
    datapath: Arc<Datapath>,
    io: IoHandle,
    /// The conntrack file (restored at recovery, saved on shutdown).
    ck: Arc<crate::ct_file::Checkpointer>,
    inner: Mutex<Inner>,
    /// Ports removed because their TAP died under us (`lost.rs`).
    ports_lost: std::sync::atomic::AtomicU64,
}

impl Node {
    /// Loads the persisted state, re-attaches the ports whose namespaces still exist and
    /// restores the conntrack table.
    pub async fn recover(
        args: Args,
        datapath: Arc<Datapath>,
        io: IoHandle,
        store: Store,
        ck: Arc<crate::ct_file::Checkpointer>,
    ) -> Result<Arc<Node>> {
        let st = store.load()?;
        let cfg = datapath.config();
        if !st.pod_cidr.is_empty() && st.pod_cidr != cfg.pod_cidr.to_string() {
            anyhow::bail!(
                "--pod-cidr: {} differs from {} recorded in the state directory; \
                 remove the state directory to change a node's subnet",
                cfg.pod_cidr,
                st.pod_cidr
            );
        }
        let node = Arc::new(Node {
            args,
            datapath,
            io,
            ck,
            inner: Mutex::new(Inner {
                ports: BTreeMap::new(),
                peers: BTreeMap::new(),
                services: BTreeMap::new(),
                udp_backends: BTreeSet::new(),
                next_id: 1,
                last_allocated: st.last_allocated,
                store,
            }),
            ports_lost: Default::default(),
        });
        {
            let mut inner = node.inner.lock().await;
            let mut taps = Vec::new();
            for rec in st.peers {
                match node.peer_from_record(&mut inner, rec.clone()) {
                    Ok(peer) => {
                        inner.peers.insert(rec.node.clone(), peer);
                    }
                    Err((_, _, msg)) => warn!(peer = %rec.node, "dropping persisted peer: {msg}"),
                }
            }
            for rec in st.ports {
                let key = PortKey {
                    name: rec.name.clone(),
                    namespace: rec.namespace.clone(),
                };
                let mac = checked::mac("mac", &rec.mac).unwrap_or(Mac::from_ipv4(rec.ip));
                let mut port = Port {
                    rec,
                    mac,
                    id: None,
                    status: String::new(),
                    counters: Arc::default(),
                    netns_id: None,
                };
                match node.reattach(&mut inner, &port.rec, port.mac).await {
                    Ok((id, fd)) => {
                        taps.push((id, fd));
                        port.id = Some(id);
                        port.status = "Running".into();
                        port.netns_id = lost::netns_identity(&port.rec.netns);
                        if port.rec.container_id.is_none() {
                            // Keeps the pod's resolver in line with --dns-ip/--cluster-domain.
                            node.write_pod_resolver(&port.rec.netns, &port.rec.namespace, true);
                        }
                        info!(port = %key.name, ip = %port.rec.ip, "re-attached");
                    }
                    Err(e) => {
                        port.status = "Detached".into();
                        warn!(port = %key.name, "cannot re-attach: {e:#}");
                    }
                }
                inner.ports.insert(key, port);
            }
            node.recover_services(&mut inner, st.services);
            node.install(&mut inner);
            // Against the installed tables (stale entries are dropped), before any pod frame:
            // a reply of a Service connection must not reach its client untranslated.
            let ck = node.ck.clone();
            tokio::task::spawn_blocking(move || ck.restore())
                .await
                .map_err(|e| anyhow::anyhow!("conntrack restore task failed: {e}"))?;
            // Served only now that the tables hold every port and service: a frame read
            // before (a pod's ARP request, say) would be dropped as from an unknown port, and
            // the pod would ask again only after its ARP retransmission time (1 s).
            for (id, fd) in taps {
                node.io.add_port(id, fd);
            }
            node.persist(&inner)
                .map_err(|e| anyhow::anyhow!("saving state: {e:#}"))?;
        }
        Ok(node)
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Response {
        let mut inner = self.inner.lock().await;
        let result = match req {
            Request::NodeShow => Ok(Response::Node(self.node_info(&inner))),
            Request::PortAdd(spec) => self.port_add(&mut inner, spec, None).await,
            Request::PortDel(key) => self.port_del(&mut inner, key).await,
            Request::CniAdd(a) => self.cni_add(&mut inner, a).await,
            Request::CniDel(k) => self.cni_del(&mut inner, k).await,
            Request::CniCheck(a) => self.cni_check(&inner, a).await,
            Request::CniGc { valid } => self.cni_gc(&mut inner, valid).await,
            Request::PortList => Ok(Response::Ports(
                inner.ports.values().map(|p| self.port_info(p)).collect(),
            )),
            Request::PeerAdd(spec) => self.peer_add(&mut inner, spec),
            Request::PeerDel { node } => self.peer_del(&mut inner, &node),
            Request::PeerList => Ok(Response::Peers(
                inner.peers.values().map(peer_info).collect(),
            )),
            Request::Stats { port, namespace } => self.stats(&inner, port, namespace),
            Request::ServiceAdd(spec) => self.service_add(&mut inner, spec),
            Request::ServiceDel(key) => self.service_del(&mut inner, key),
            Request::ServiceList => Ok(self.service_list(&inner)),
        };
        result.unwrap_or_else(|(kind, field, msg)| Response::error(kind, field, msg))
    }

    /// Detaches every port's TAP from the datapath and stops the I/O engine, then saves the
    /// conntrack table (on shutdown: nothing is forwarded after the snapshot).
    pub async fn shutdown(&self) {
        let inner = self.inner.lock().await;
        for p in inner.ports.values() {
            if let Some(id) = p.id {
                self.io.del_port(id);
            }
        }
        self.io.shutdown();
        let ck = self.ck.clone();
        let _ = tokio::task::spawn_blocking(move || ck.final_save()).await;
    }

    fn node_info(&self, inner: &Inner) -> NodeInfo {
        let cfg = self.datapath.config();
        NodeInfo {
            node: self.args.node.clone(),
            pod_cidr: cfg.pod_cidr.to_string(),
            gateway: cfg.gateway.to_string(),
            router_mac: cfg.router_mac.to_string(),
            vtep_ip: cfg.vtep_ip.to_string(),
            vtep_mac: cfg.vtep_mac.to_string(),
            underlay: self.args.underlay.map(|u| u.to_string()),
            vxlan_port: cfg.vxlan_port,
            vni: cfg.vni,
            pod_mtu: u32::from(cfg.pod_mtu),
            datapath: self.io.kind().to_string(),
            ports: inner.ports.len(),
            peers: inner.peers.len(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            service_cidr: cfg.service_cidr.map(|c| c.to_string()).unwrap_or_default(),
            dns_ip: cfg.dns_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            cluster_domain: cfg.cluster_domain.clone(),
        }
    }

    fn port_info(&self, p: &Port) -> PortInfo {
        let cfg = self.datapath.config();
        PortInfo {
            name: p.rec.name.clone(),
            namespace: p.rec.namespace.clone(),
            ip: p.rec.ip.to_string(),
            prefix_len: p.rec.prefix_len,
            mac: p.mac.to_string(),
            node: self.args.node.clone(),
            status: p.status.clone(),
            netns: p.rec.netns.clone(),
            ifname: p.rec.ifname.clone(),
            gateway: cfg.gateway.to_string(),
            mtu: u32::from(cfg.pod_mtu),
            labels: p.rec.labels.clone(),
            container_id: p.rec.container_id.clone(),
            dns: cfg
                .dns_ip
                .map(|ip| services::pod_dns(ip, &p.rec.namespace, &cfg.cluster_domain)),
        }
    }

    /// What the pod's interface must look like.
    fn pod_if_config(&self, rec: &PortRecord, mac: Mac) -> PodIfConfig {
        let cfg = self.datapath.config();
        PodIfConfig {
            netns: PathBuf::from(&rec.netns),
            ifname: rec.ifname.clone(),
            mac: mac.0,
            addr: rec.ip,
            prefix_len: rec.prefix_len,
            gateway: cfg.gateway,
            mtu: u32::from(cfg.pod_mtu),
            offload: self.args.offload == OnOff::On,
            queues: self.io.workers(),
        }
    }

    /// Creates the pod's TAP and allocates its port id. The TAP is not persistent yet and not
    /// served: a crash before the port is saved removes it with its fd, and dropping the fd
    /// undoes it. Once the port is saved, [`Node::serve`] takes it from there.
    async fn attach(
        &self,
        inner: &mut Inner,
        rec: &PortRecord,
        mac: Mac,
    ) -> Result<(PortId, podnet::Queues)> {
        self.create_tap(inner, rec, mac, podnet::attach_pod).await
    }

    /// Makes a TAP from [`Node::attach`] persistent, now that its port is saved (it survives
    /// a restart of the daemon from here on), and hands it to the I/O engine.
    fn serve(&self, id: PortId, fd: podnet::Queues) {
        let persist = match fd.first() {
            Some(q) => tap::set_persist(q.as_fd(), true),
            None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
        };
        if let Err(e) = persist {
            warn!(
                port = id,
                "TUNSETPERSIST: {e}; the pod loses its interface when the daemon stops"
            );
        }
        self.io.add_port(id, fd);
    }

    /// Takes over the pod's TAP when it survived a restart of the daemon (or creates it
    /// again), persistent at once (its port is saved). The caller hands it to the I/O engine.
    async fn reattach(
        &self,
        inner: &mut Inner,
        rec: &PortRecord,
        mac: Mac,
    ) -> Result<(PortId, podnet::Queues)> {
        self.create_tap(inner, rec, mac, podnet::reattach_pod).await
    }

    async fn create_tap(
        &self,
        inner: &mut Inner,
        rec: &PortRecord,
        mac: Mac,
        how: fn(&PodIfConfig) -> Result<(podnet::Queues, u32)>,
    ) -> Result<(PortId, podnet::Queues)> {
        let ifcfg = self.pod_if_config(rec, mac);
        let (fd, _ifindex) = tokio::task::spawn_blocking(move || how(&ifcfg))
            .await
            .map_err(|e| anyhow::anyhow!("attach task failed: {e}"))??;
        let id = inner.next_id;
        inner.next_id += 1;
        Ok((id, fd))
    }

    async fn port_add(
        &self,
        inner: &mut Inner,
        spec: PortSpec,
        container_id: Option<String>,
    ) -> Result<Response, Reject> {
        let cfg = self.datapath.config().clone();
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
        if inner.ports.contains_key(&key) {
            return Err(exists(
                "name",
                format!("port {}/{} already exists", key.namespace, key.name),
            ));
        }
        let netns_given = spec.netns.clone();
        let netns =
            podnet::resolve_netns(&spec.netns).map_err(|e| reject("netns", format!("{e:#}")))?;
        let netns = netns.display().to_string();
        if let Some(other) = inner
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
            Some(s) => self.parse_pod_ip(inner, s)?,
            None => (self.allocate(inner)?, cfg.pod_cidr.prefix_len()),
        };
        let mac = match &spec.mac {
            Some(s) => checked::mac("mac", s).map_err(invalid)?,
            None => Mac::from_ipv4(ip),
        };
        if mac == cfg.router_mac
            || mac == cfg.vtep_mac
            || inner.ports.values().any(|p| p.mac == mac)
        {
            return Err(reject(
                "mac",
                format!("{mac} is already in use on this node"),
            ));
        }
        let rec = PortRecord {
            name: spec.name,
            namespace: spec.namespace,
            netns,
            ifname: spec.ifname,
            ip,
            prefix_len,
            mac: mac.to_string(),
            labels: spec.labels,
            container_id: container_id.clone(),
        };
        let (id, fd) = self
            .attach(inner, &rec, mac)
            .await
            .map_err(|e| reject("netns", format!("cannot attach the pod: {e:#}")))?;
        let netns_id = lost::netns_identity(&rec.netns);
        let port = Port {
            rec,
            mac,
            id: Some(id),
            status: "Running".into(),
            counters: Arc::default(),
            netns_id,
        };
        let prev_alloc = inner.last_allocated;
        if spec.ip.is_none() {
            inner.last_allocated = Some(ip);
        }
        inner.ports.insert(key.clone(), port);
        if let Err(e) = self.persist(inner) {
            // Roll back: the request is not acknowledged, so nothing may remain.
            let port = inner.ports.remove(&key).expect("just inserted");
            inner.last_allocated = prev_alloc;
            // Not persistent yet: closing its only fd removes the TAP.
            drop(fd);
            let _ = podnet::detach_pod(port.rec.netns.as_ref(), &port.rec.ifname);
            return Err(save_failed(e));
        }
        self.serve(id, fd);
        self.install(inner);
        if container_id.is_none() {
            // CNI pods get their DNS settings from the runtime (the CNI result) instead.
            self.write_pod_resolver(&netns_given, &key.namespace, false);
        }
        let p = &inner.ports[&key];
        info!(port = %key.name, namespace = %key.namespace, ip = %p.rec.ip, mac = %p.mac, "port added");
        Ok(Response::Port(self.port_info(p)))
    }

    async fn port_del(&self, inner: &mut Inner, key: PortKey) -> Result<Response, Reject> {
        let Some(port) = inner.ports.remove(&key) else {
            return Err(not_found(
                "name",
                format!("port {}/{} does not exist", key.namespace, key.name),
            ));
        };
        if let Err(e) = self.persist(inner) {
            inner.ports.insert(key, port);
            return Err(save_failed(e));
        }
        self.install(inner);
        if let Some(id) = port.id {
            self.io.del_port(id);
        }
        let (netns, ifname) = (port.rec.netns.clone(), port.rec.ifname.clone());
        let detached =
            tokio::task::spawn_blocking(move || podnet::detach_pod(netns.as_ref(), &ifname)).await;
        if let Ok(Err(e)) = detached {
            warn!(port = %key.name, "removing the pod interface: {e:#}");
        }
        if !inner.ports.values().any(|p| p.rec.netns == port.rec.netns) {
            self.remove_pod_resolver(&port.rec.netns);
        }
        info!(port = %key.name, namespace = %key.namespace, "port deleted");
        Ok(Response::Done)
    }

    fn parse_pod_ip(&self, inner: &Inner, s: &str) -> Result<(Ipv4Addr, u8), Reject> {
        let cfg = self.datapath.config();
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
        if let Some(p) = inner.ports.values().find(|p| p.rec.ip == ip) {
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
    fn allocate(&self, inner: &Inner) -> Result<Ipv4Addr, Reject> {
        let cidr = self.datapath.config().pod_cidr;
        let first = u32::from(cidr.network()) + 2;
        let last = u32::from(cidr.broadcast()) - 1;
        let start = inner
            .last_allocated
            .map(u32::from)
            .filter(|a| (first..=last).contains(a))
            .map(|a| if a == last { first } else { a + 1 })
            .unwrap_or(first);
        let size = last.saturating_sub(first) + 1;
        (0..size)
            .map(|i| Ipv4Addr::from(first + (start - first + i) % size))
            .find(|ip| !inner.ports.values().any(|p| p.rec.ip == *ip))
            .ok_or_else(|| {
                (
                    ErrorKind::Exhausted,
                    Some("ip"),
                    format!("no free address left in {cidr}"),
                )
            })
    }

    fn peer_from_record(&self, inner: &mut Inner, rec: PeerRecord) -> Result<Peer, Reject> {
        let cidr = checked::cidr("pod_cidr", &rec.pod_cidr).map_err(invalid)?;
        let mac = checked::mac("vtep_mac", &rec.vtep_mac).map_err(invalid)?;
        let id = inner.next_id;
        inner.next_id += 1;
        Ok(Peer {
            rec,
            id,
            cidr,
            mac,
            counters: Arc::default(),
        })
    }

    fn peer_add(&self, inner: &mut Inner, spec: PeerSpec) -> Result<Response, Reject> {
        let cfg = self.datapath.config().clone();
        validate::node_name("node", &spec.node).map_err(invalid)?;
        if spec.node == self.args.node {
            return Err(reject("node", "a node cannot be its own peer"));
        }
        let underlay = validate::ipv4("underlay", &spec.underlay).map_err(invalid)?;
        if Some(underlay) == self.args.underlay {
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
        for p in inner.peers.values().filter(|p| p.rec.node != spec.node) {
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
        let rec = PeerRecord {
            node: spec.node.clone(),
            underlay,
            pod_cidr: cidr.to_string(),
            vtep_mac: vtep_mac.to_string(),
        };
        let mut peer = self.peer_from_record(inner, rec)?;
        let old = inner.peers.remove(&spec.node);
        if let Some(old) = &old {
            // Replacing a peer keeps its counters.
            peer.counters = old.counters.clone();
        }
        inner.peers.insert(spec.node.clone(), peer);
        if let Err(e) = self.persist(inner) {
            inner.peers.remove(&spec.node);
            if let Some(old) = old {
                inner.peers.insert(spec.node, old);
            }
            return Err(save_failed(e));
        }
        self.install(inner);
        info!(peer = %spec.node, %underlay, pod_cidr = %cidr, "peer added");
        Ok(Response::Peer(peer_info(&inner.peers[&spec.node])))
    }

    fn peer_del(&self, inner: &mut Inner, node: &str) -> Result<Response, Reject> {
        let Some(peer) = inner.peers.remove(node) else {
            return Err(not_found("node", format!("peer {node} does not exist")));
        };
        if let Err(e) = self.persist(inner) {
            inner.peers.insert(node.to_string(), peer);
            return Err(save_failed(e));
        }
        self.install(inner);
        info!(peer = %node, "peer deleted");
        Ok(Response::Done)
    }

    fn stats(
        &self,
        inner: &Inner,
        port: Option<String>,
        namespace: Option<String>,
    ) -> Result<Response, Reject> {
        let ns = namespace.unwrap_or_else(|| "default".into());
        if let Some(name) = &port {
            let key = PortKey {
                name: name.clone(),
                namespace: ns.clone(),
            };
            if !inner.ports.contains_key(&key) {
                return Err(not_found(
                    "port",
                    format!("port {ns}/{name} does not exist"),
                ));
            }
        }
        let ports = inner
            .ports
            .values()
            .filter(|p| {
                port.as_ref()
                    .is_none_or(|n| *n == p.rec.name && ns == p.rec.namespace)
            })
            .map(|p| PortStats {
                name: p.rec.name.clone(),
                namespace: p.rec.namespace.clone(),
                rx_packets: p.counters.rx_packets.load(Relaxed),
                rx_bytes: p.counters.rx_bytes.load(Relaxed),
                tx_packets: p.counters.tx_packets.load(Relaxed),
                tx_bytes: p.counters.tx_bytes.load(Relaxed),
                rx_dropped: p.counters.rx_dropped.load(Relaxed),
            })
            .collect();
        let drops = self
            .datapath
            .counters()
            .snapshot()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let dp = &self.datapath;
        let conntrack = ConntrackStats {
            entries: dp.conntrack_len() as u64,
            max: dp.config().ct_max as u64,
            evicted: dp.conntrack_evicted(),
        };
        Ok(Response::Stats(StatsReport {
            drops,
            ports,
            conntrack,
            ports_lost: self.ports_lost.load(Relaxed),
        }))
    }

    /// Builds and installs a new table snapshot from the current state (ports, peers, and
    /// the services with their endpoints recomputed), then flushes the UDP conntrack of
    /// endpoints that left a service.
    fn install(&self, inner: &mut Inner) {
        let ports = inner
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
        let peers = inner
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
        let (services, dns, udp) = self.service_tables(inner);
        self.datapath
            .install(Tables::new(ports, peers).with_services(services, dns));
        self.flush_removed_udp(&inner.udp_backends, &udp);
        inner.udp_backends = udp;
    }

    fn persist(&self, inner: &Inner) -> Result<()> {
        let st = PersistedState {
            version: 0,
            pod_cidr: self.datapath.config().pod_cidr.to_string(),
            ports: inner.ports.values().map(|p| p.rec.clone()).collect(),
            peers: inner.peers.values().map(|p| p.rec.clone()).collect(),
            last_allocated: inner.last_allocated,
            services: inner.services.values().cloned().collect(),
        };
        inner.store.save(&st)
    }
}

fn peer_info(p: &Peer) -> PeerInfo {
    PeerInfo {
        node: p.rec.node.clone(),
        underlay: p.rec.underlay.to_string(),
        pod_cidr: p.rec.pod_cidr.clone(),
        vtep_mac: p.rec.vtep_mac.clone(),
        tx_packets: p.counters.tx_packets.load(Relaxed),
        tx_bytes: p.counters.tx_bytes.load(Relaxed),
        rx_packets: p.counters.rx_packets.load(Relaxed),
        rx_bytes: p.counters.rx_bytes.load(Relaxed),
    }
}
