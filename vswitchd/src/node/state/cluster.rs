//! The cluster's objects in the pure node state: the other nodes' pods (each node publishes
//! its own under `<prefix>/vswitch/pods/NODE/NAMESPACE/NAME`), which nodes are Ready (their
//! liveness record exists), and the Services and Namespaces that `apply` on any node stored
//! in the datastore. The I/O around it (watching etcd, publishing, writing) is
//! `datastore/` and `node/cluster.rs`.
//!
//! - Values from etcd are untrusted: each is checked like a request (a Service as `apply`
//!   checks it, its VIP against this node's service CIDR, DNS address and other Services; a
//!   pod's name, labels and address); one that fails is skipped with its reason (the caller
//!   logs and counts it) and nothing else changes.
//! - A datastore Service never replaces a node-local one of the same name (`service add`
//!   on this node); it is skipped with that reason.
//! - Service selectors match the other nodes' Running pods too, but only on Ready nodes
//!   and inside a known peer's subnet: a node whose liveness record expired takes its pods
//!   out of every Service's endpoints, and comes back with them when it renews it.
//! - Like the node-local selector, a selector matches pods of every namespace (not only
//!   the Service's own, as Kubernetes does): the tutorial's pods and Services share one.

use super::{NodeState, Reject};
use crate::state::NamespaceRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use vswitch_proto::{validate, PortStatus, ServiceKey, ServiceSpec};

/// A pod's place in the cluster: its node, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodKey {
    pub node: String,
    pub namespace: String,
    pub name: String,
}

/// A pod as its node publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub name: String,
    pub namespace: String,
    pub node: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub status: PortStatus,
}

impl PodRecord {
    pub fn key(&self) -> PodKey {
        PodKey {
            node: self.node.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// A value skipped, and why: (what, reason).
pub type Skipped = Vec<(String, String)>;

impl NodeState {
    /// This node's pods, as it publishes them.
    pub fn own_pods(&self) -> BTreeMap<PodKey, PodRecord> {
        self.ports
            .values()
            .map(|p| PodRecord {
                name: p.rec.name.clone(),
                namespace: p.rec.namespace.clone(),
                node: self.node.clone(),
                ip: p.rec.ip,
                mac: p.mac.to_string(),
                labels: p.rec.labels.clone(),
                status: p.status,
            })
            .map(|r| (r.key(), r))
            .collect()
    }

    /// Checks a pod record of another node.
    fn check_pod(&self, p: &PodRecord) -> Result<(), String> {
        validate::k8s_name("name", &p.name).map_err(|e| e.message)?;
        validate::dns_label("namespace", &p.namespace).map_err(|e| e.message)?;
        validate::node_name("node", &p.node).map_err(|e| e.message)?;
        for (k, v) in &p.labels {
            validate::label("labels", k, v).map_err(|e| e.message)?;
        }
        let own = self.cfg.pod_cidr;
        if own.contains(p.ip) {
            return Err(format!("{} lies in this node's subnet {own}", p.ip));
        }
        if p.ip.is_unspecified() || p.ip.is_broadcast() || p.ip.is_multicast() {
            return Err(format!("{} is not a pod address", p.ip));
        }
        Ok(())
    }

    /// Replaces the other nodes' pods and the set of Ready nodes with what the datastore
    /// holds. This node's own records are ignored. Returns whether anything changed, and
    /// the records skipped.
    pub fn set_cluster_pods(
        &mut self,
        pods: Vec<PodRecord>,
        ready: BTreeSet<String>,
    ) -> (bool, Skipped) {
        let mut skipped = Vec::new();
        let mut next = BTreeMap::new();
        for p in pods.into_iter().filter(|p| p.node != self.node) {
            match self.check_pod(&p) {
                Ok(()) => {
                    next.insert(p.key(), p);
                }
                Err(why) => {
                    skipped.push((format!("pod {}/{} on {}", p.namespace, p.name, p.node), why))
                }
            }
        }
        let changed = next != self.cluster_pods || ready != self.ready_nodes;
        self.cluster_pods = next;
        self.ready_nodes = ready;
        (changed, skipped)
    }

    /// The endpoints a selector finds among the other nodes' pods: Running, on a Ready
    /// node, inside a known peer's subnet.
    pub(super) fn cluster_matches(&self, selector: &BTreeMap<String, String>) -> Vec<Ipv4Addr> {
        if selector.is_empty() {
            return Vec::new();
        }
        self.cluster_pods
            .values()
            .filter(|p| {
                p.status == PortStatus::Running
                    && self.ready_nodes.contains(&p.node)
                    && self.peers.values().any(|q| q.cidr.contains(p.ip))
                    && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .map(|p| p.ip)
            .collect()
    }

    /// Brings the datastore's Services in line with `specs` (decoded from etcd, each with
    /// its VIP): those gone are removed, the others checked and installed. Returns whether
    /// anything changed, and the specs skipped.
    pub fn sync_cluster_services(&mut self, specs: Vec<ServiceSpec>) -> (bool, Skipped) {
        let mut skipped = Vec::new();
        let before = self.services.clone();
        let wanted: BTreeSet<ServiceKey> = specs
            .iter()
            .map(|s| ServiceKey {
                name: s.name.clone(),
                namespace: s.namespace.clone(),
            })
            .collect();
        self.services
            .retain(|k, s| !s.from_datastore || wanted.contains(k));
        for spec in specs {
            let what = format!("service {}/{}", spec.namespace, spec.name);
            match self.cluster_service(spec) {
                Ok((key, rec)) => {
                    self.services.insert(key, rec);
                }
                Err(r) => {
                    let field = r.field.map_or(String::new(), |f| format!("{f}: "));
                    skipped.push((what, format!("{field}{}", r.msg)));
                }
            }
        }
        (self.services != before, skipped)
    }

    /// Checks one datastore Service against the state.
    fn cluster_service(
        &mut self,
        spec: ServiceSpec,
    ) -> Result<(ServiceKey, crate::state::ServiceRecord), Reject> {
        let key = Self::service_key(&spec)?;
        if let Some(local) = self.services.get(&key) {
            if !local.from_datastore {
                return Err(Reject::other(
                    "a node-local service of that name exists (service add); it is kept",
                ));
            }
        }
        let vip = match &spec.vip {
            Some(s) => self.given_vip(s, &key)?,
            None => return Err(super::reject("vip", "a datastore service has no VIP")),
        };
        let mut rec = self.service_record(spec, vip)?;
        rec.from_datastore = true;
        Ok((key, rec))
    }

    /// Brings the datastore's namespaces in line with `recs`; returns whether anything
    /// changed, and the records skipped.
    pub fn sync_cluster_namespaces(&mut self, recs: Vec<NamespaceRecord>) -> (bool, Skipped) {
        let mut skipped = Vec::new();
        let before = self.namespaces.clone();
        let wanted: BTreeSet<&str> = recs.iter().map(|r| r.name.as_str()).collect();
        self.namespaces
            .retain(|k, n| !n.from_datastore || wanted.contains(k.as_str()));
        for mut rec in recs {
            let what = format!("namespace {}", rec.name);
            let checked = validate::dns_label("name", &rec.name).and_then(|()| {
                rec.labels
                    .iter()
                    .try_for_each(|(k, v)| validate::label("labels", k, v))
            });
            if let Err(e) = checked {
                skipped.push((what, format!("{}: {}", e.field, e.message)));
                continue;
            }
            if self
                .namespaces
                .get(&rec.name)
                .is_some_and(|n| !n.from_datastore)
            {
                skipped.push((what, "a node-local namespace of that name exists".into()));
                continue;
            }
            rec.labels
                .insert(super::apply::NAME_LABEL.to_string(), rec.name.clone());
            rec.from_datastore = true;
            self.namespaces.insert(rec.name.clone(), rec);
        }
        (self.namespaces != before, skipped)
    }
}

#[cfg(test)]
mod tests;
