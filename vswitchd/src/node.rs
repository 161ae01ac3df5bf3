//! The control plane of one node: ports, peers, services, namespaces, address allocation and the tables
//! it installs into the datapath. Every request validates first and changes state only when
//! everything it needs has succeeded; the persisted state is saved before the answer.
//!
//! Split in two: the pure state (`node/state.rs`, [`state::NodeState`]: validation,
//! allocation, applying a change and undoing it, building the table snapshot; unit-tested
//! without root) and the effects (`node/effects.rs`: the pods' TAPs, saving the state,
//! installing the snapshot). This file holds the requests on top of both, under the tokio
//! lock that serialises them. A request goes: validate against the state, create what the
//! pod needs, apply the change, save; when the save fails, the change is rolled back (and
//! what was created undone) and the answer is an error.

use crate::io::IoHandle;
use crate::podnet;
use crate::state::Store;
use crate::Args;
use anyhow::Result;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::Mutex;
use tracing::{info, warn};
use vswitch_datapath::Datapath;
use vswitch_proto::{
    ClusterNode, ConntrackStats, NodeInfo, PeerInfo, PeerSource, PeerSpec, PortInfo, PortKey,
    PortSpec, PortStats, PortStatus, Request, Response, StatsReport,
};

mod apply;
pub mod cluster;
mod cni;
mod effects;
mod flows;
mod inspect;
mod lost;
mod metrics;
mod services;
mod state;

use state::{not_found, reject, save_failed, NodeState, Peer, Port, Reject};

/// The state under the node's lock (the services module knows it by this name).
type Inner = NodeState;

/// One node's control plane.
pub struct Node {
    args: Args,
    datapath: Arc<Datapath>,
    io: IoHandle,
    /// The state directory (saved under the lock of `inner`).
    store: Store,
    /// The conntrack file (restored at recovery, saved on shutdown).
    ck: Arc<crate::ct_file::Checkpointer>,
    inner: Mutex<Inner>,
    /// Ports removed because their TAP died under us (`lost.rs`).
    ports_lost: std::sync::atomic::AtomicU64,
    /// The cluster datastore, when the node runs with one (`--datastore`).
    datastore: Option<Arc<crate::datastore::Datastore>>,
    /// Notified whenever the state is saved: the datastore task publishes the node's pods
    /// again (it writes only what changed).
    pub pods_changed: tokio::sync::Notify,
    /// Unix time (seconds) the daemon started.
    started: u64,
    /// The control requests' latency (observed by `control.rs`, exported by `metrics`).
    latency: crate::metrics::ControlLatency,
    /// The flow log's ring (`observe`).
    flows: crate::flows::FlowRing,
}

impl Node {
    /// Loads the persisted state, re-attaches the ports whose namespaces still exist (a
    /// port whose namespace is gone was deleted while the daemon was down: it is removed as
    /// a lost port, `lost.rs`) and restores the conntrack table.
    pub async fn recover(
        args: Args,
        datapath: Arc<Datapath>,
        io: IoHandle,
        store: Store,
        ck: Arc<crate::ct_file::Checkpointer>,
        datastore: Option<Arc<crate::datastore::Datastore>>,
    ) -> Result<Arc<Node>> {
        let st = store.load()?;
        let args_flow_log_size = args.flow_log_size as usize;
        let cfg = datapath.config();
        if !st.pod_cidr.is_empty() && st.pod_cidr != cfg.pod_cidr.to_string() {
            anyhow::bail!(
                "--pod-cidr: {} differs from {} recorded in the state directory; \
                 remove the state directory to change a node's subnet",
                cfg.pod_cidr,
                st.pod_cidr
            );
        }
        let mut state = NodeState::new(
            cfg.clone(),
            args.node.clone(),
            args.underlay,
            st.last_allocated,
        );
        state.datastore = datastore.is_some();
        let node = Arc::new(Node {
            args,
            datapath,
            io,
            store,
            ck,
            inner: Mutex::new(state),
            ports_lost: Default::default(),
            datastore,
            pods_changed: tokio::sync::Notify::new(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            latency: Default::default(),
            flows: crate::flows::FlowRing::new(args_flow_log_size),
        });
        {
            let mut inner = node.inner.lock().await;
            let mut taps = Vec::new();
            // The namespaces of ports found lost (their resolv.conf goes with them).
            let mut lost_netns = Vec::new();
            for rec in st.peers {
                match inner.peer_from_record(rec.clone()) {
                    Ok(peer) => {
                        inner.peers.insert(rec.node.clone(), peer);
                    }
                    Err(r) => warn!(peer = %rec.node, "dropping persisted peer: {}", r.msg),
                }
            }
            for rec in st.ports {
                let mut port = Port::detached(rec);
                let key = port.key();
                match node.reattach(&mut inner, &port.rec, port.mac).await {
                    Ok((id, fd)) => {
                        taps.push((id, fd));
                        port.id = Some(id);
                        port.status = PortStatus::Running;
                        port.netns_id = lost::netns_identity(&port.rec.netns);
                        if port.rec.container_id.is_none() {
                            // Keeps the pod's resolver in line with --dns-ip/--cluster-domain.
                            node.write_pod_resolver(&port.rec.netns, &port.rec.namespace, true);
                        }
                        info!(port = %key.name, ip = %port.rec.ip, "re-attached");
                    }
                    Err(e) if lost::netns_missing(&port.rec.netns) => {
                        // Deleted while the daemon was down: it will never come back (a
                        // runtime that recreates the pod makes a new namespace and ADDs again).
                        node.ports_lost.fetch_add(1, Relaxed);
                        warn!(
                            port = %key.name, namespace = %key.namespace, ip = %port.rec.ip,
                            netns = %port.rec.netns,
                            "port lost: its network namespace was deleted while the daemon \
                             was down; removed ({e:#})"
                        );
                        lost_netns.push(port.rec.netns.clone());
                        continue;
                    }
                    Err(e) => {
                        port.status = PortStatus::Detached;
                        warn!(port = %key.name, "cannot re-attach: {e:#}");
                    }
                }
                inner.ports.insert(key, port);
            }
            for netns in lost_netns {
                if !inner.ports.values().any(|p| p.rec.netns == netns) {
                    node.remove_pod_resolver(&netns);
                }
            }
            node.recover_services(&mut inner, st.services);
            for (name, why) in inner.recover_namespaces(st.namespaces) {
                warn!(namespace = %name, "dropping persisted namespace: {why}");
            }
            // The conntrack table first, against the tables about to be installed (stale
            // entries are dropped), then the tables: the tunnel is served already, and a
            // reply of a Service connection that met its client's port before its
            // connection would reach the client untranslated (and be answered with a RST).
            let (services, dns, _) = inner.service_tables();
            let tables = inner.tables(services, dns);
            let ck = node.ck.clone();
            tokio::task::spawn_blocking(move || ck.restore(&tables))
                .await
                .map_err(|e| anyhow::anyhow!("conntrack restore task failed: {e}"))?;
            node.install(&mut inner);
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

    /// The control requests' latency histograms.
    pub fn control_latency(&self) -> &crate::metrics::ControlLatency {
        &self.latency
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Response {
        // These wait for etcd: not under the lock.
        match req {
            Request::NodeList => {
                return self.node_list().await.unwrap_or_else(Reject::into_response);
            }
            Request::Apply { objects } if self.datastore.is_some() => {
                return self.apply_cluster(objects).await;
            }
            Request::Delete { objects } if self.datastore.is_some() => {
                return self.delete_cluster(objects).await;
            }
            // The process's log filter: no node state.
            Request::LogLevel { level } => {
                return match crate::logging::set_level(&level) {
                    Ok(previous) => {
                        tracing::info!(%level, %previous, "log filter changed");
                        Response::LogLevel { level, previous }
                    }
                    Err(msg) => {
                        Response::error(vswitch_proto::ErrorKind::Invalid, Some("level"), msg)
                    }
                };
            }
            _ => {}
        }
        let mut inner = self.inner.lock().await;
        let result = match req {
            Request::NodeShow => Ok(Response::Node(self.node_info(&inner))),
            Request::PortAdd(spec) => {
                self.port_add(&mut inner, spec, None, Default::default())
                    .await
            }
            Request::PortDel(key) => self.port_del(&mut inner, key).await,
            Request::CniAdd(a) => self.cni_add(&mut inner, a).await,
            Request::CniDel(k) => self.cni_del(&mut inner, k).await,
            Request::CniCheck(a) => self.cni_check(&inner, a).await,
            Request::CniGc { valid } => self.cni_gc(&mut inner, valid).await,
            Request::PortList => Ok(Response::Ports(
                inner.ports.values().map(|p| self.port_info(p)).collect(),
            )),
            Request::PortListAll => Ok(Response::Ports(self.port_list_all(&inner))),
            Request::PeerAdd(spec) => self.peer_set(&mut inner, spec, PeerSource::Manual),
            Request::PeerDel { node } => self.peer_del(&mut inner, &node),
            Request::PeerList => Ok(Response::Peers(
                inner.peers.values().map(peer_info).collect(),
            )),
            Request::Stats { port, namespace } => self.stats(&inner, port, namespace),
            Request::ServiceAdd(spec) => self.service_add(&mut inner, spec),
            Request::ServiceDel(key) => self.service_del(&mut inner, key),
            Request::ServiceList => Ok(self.service_list(&inner)),
            Request::Apply { objects } => Ok(self.apply(&mut inner, objects)),
            Request::Delete { objects } => self.delete(&mut inner, objects),
            Request::NamespaceList => Ok(Response::Namespaces(inner.namespace_infos())),
            Request::Trace(spec) => self.trace(&inner, spec),
            Request::ConntrackList(q) => self.conntrack_list(&inner, q),
            Request::ConntrackFlush(q) => self.conntrack_flush(&inner, q),
            // Answered above, without the lock.
            Request::LogLevel { .. } => {
                Err(Reject::other("log-level is answered without the lock"))
            }
            // Answered above, without the lock.
            Request::NodeList => Err(Reject::other("node list is answered without the lock")),
            // A stream, not one answer: served by the control server (`capture.rs`).
            Request::Capture(_) => Err(Reject::other("capture is served as a stream")),
            Request::Observe(_) => Err(Reject::other("observe is served by the control server")),
        };
        result.unwrap_or_else(Reject::into_response)
    }

    /// The I/O engines (for captures: their tap and the tunnel's address).
    pub fn io(&self) -> &IoHandle {
        &self.io
    }

    /// The engine's id of a running port, `None` when there is no such port or its TAP is
    /// detached.
    pub async fn running_port(&self, key: &PortKey) -> Option<vswitch_datapath::PortId> {
        self.inner.lock().await.ports.get(key).and_then(|p| p.id)
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
            datastore: self.datastore.as_ref().map(|d| d.status()),
        }
    }

    /// `node list`: the cluster's nodes from the datastore, or this node alone without one.
    async fn node_list(&self) -> Result<Response, Reject> {
        let Some(ds) = &self.datastore else {
            let cfg = self.datapath.config();
            return Ok(Response::Nodes(vec![ClusterNode {
                name: self.args.node.clone(),
                subnet: cfg.pod_cidr.to_string(),
                underlay: self
                    .args
                    .underlay
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                vtep_mac: cfg.vtep_mac.to_string(),
                status: "Ready".into(),
                started_at: Some(self.started),
            }]));
        };
        ds.node_list()
            .await
            .map(Response::Nodes)
            .map_err(|e| Reject {
                kind: vswitch_proto::ErrorKind::Unavailable,
                field: None,
                msg: format!("reading the datastore: {e:#}"),
            })
    }

    /// Brings the peers from the datastore in line with `desired` (by name): adds or
    /// replaces what differs, removes the datastore peers not in it, through the same
    /// checks and steps as `peer add` and `peer del`. Manual peers are left alone; a lease
    /// that conflicts with one (or with this node) is refused: returned with the reason.
    pub async fn sync_datastore_peers(
        &self,
        desired: &std::collections::BTreeMap<String, PeerSpec>,
    ) -> Vec<(PeerSpec, String)> {
        let mut inner = self.inner.lock().await;
        let current = inner
            .peers
            .values()
            .filter(|p| p.rec.source == PeerSource::Datastore)
            .map(|p| (p.rec.node.clone(), p.spec()))
            .collect();
        let diff = crate::datastore::flannel::diff(desired, &current);
        let mut refused = Vec::new();
        for name in diff.del {
            if let Err(r) = self.peer_del(&mut inner, &name) {
                warn!(peer = %name, "removing a datastore peer: {}", r.msg);
            }
        }
        for spec in diff.set {
            if inner
                .peers
                .get(&spec.node)
                .is_some_and(|p| p.rec.source == PeerSource::Manual)
            {
                refused.push((spec, "a manual peer has this name".to_string()));
                continue;
            }
            if let Err(r) = self.peer_set(&mut inner, spec.clone(), PeerSource::Datastore) {
                let msg = match r.field {
                    Some(f) => format!("{f}: {}", r.msg),
                    None => r.msg,
                };
                refused.push((spec, msg));
            }
        }
        refused
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
            status: p.status,
            netns: p.rec.netns.clone(),
            ifname: p.rec.ifname.clone(),
            gateway: cfg.gateway.to_string(),
            mtu: u32::from(cfg.pod_mtu),
            labels: p.rec.labels.clone(),
            container_id: p.rec.container_id.clone(),
            runtime_name: p.rec.runtime_name.clone(),
            runtime_namespace: p.rec.runtime_namespace.clone(),
            dns: cfg
                .dns_ip
                .map(|ip| state::pod_dns(ip, &p.rec.namespace, &cfg.cluster_domain)),
        }
    }

    async fn port_add(
        &self,
        inner: &mut Inner,
        spec: PortSpec,
        container_id: Option<String>,
        (runtime_name, runtime_namespace): (Option<String>, Option<String>),
    ) -> Result<Response, Reject> {
        let key = inner.check_port_spec(&spec)?;
        let netns_given = spec.netns.clone();
        let netns =
            podnet::resolve_netns(&spec.netns).map_err(|e| reject("netns", format!("{e:#}")))?;
        let netns = netns.display().to_string();
        let mut new = inner.plan_port(spec, netns.clone(), container_id.clone())?;
        new.rec.runtime_name = runtime_name;
        new.rec.runtime_namespace = runtime_namespace;
        let (id, fd) = self
            .attach(inner, &new.rec, new.mac)
            .await
            .map_err(|e| reject("netns", format!("cannot attach the pod: {e:#}")))?;
        let netns_id = lost::netns_identity(&netns);
        let undo = inner.add_port(new, id, netns_id);
        if let Err(e) = self.persist(inner) {
            // Roll back: the request is not acknowledged, so nothing may remain.
            let port = inner.rollback(undo).expect("just added");
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
        let undo = inner.remove_port(&key)?;
        if let Err(e) = self.persist(inner) {
            inner.rollback(undo);
            return Err(save_failed(e));
        }
        let port = undo.removed_port().expect("a removed port");
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

    /// Adds or replaces a peer: `peer add` (a manual peer) and a lease from the datastore.
    fn peer_set(
        &self,
        inner: &mut Inner,
        spec: PeerSpec,
        source: PeerSource,
    ) -> Result<Response, Reject> {
        let mut rec = inner.check_peer(&spec)?;
        rec.source = source;
        let (underlay, cidr) = (rec.underlay, rec.pod_cidr.clone());
        let peer = inner.peer_from_record(rec)?;
        let undo = inner.set_peer(peer);
        if let Err(e) = self.persist(inner) {
            inner.rollback(undo);
            return Err(save_failed(e));
        }
        self.install(inner);
        info!(peer = %spec.node, %underlay, pod_cidr = %cidr, source = source.as_str(), "peer added");
        Ok(Response::Peer(peer_info(&inner.peers[&spec.node])))
    }

    fn peer_del(&self, inner: &mut Inner, node: &str) -> Result<Response, Reject> {
        let undo = inner.remove_peer(node)?;
        if let Err(e) = self.persist(inner) {
            inner.rollback(undo);
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
        source: p.rec.source,
    }
}
