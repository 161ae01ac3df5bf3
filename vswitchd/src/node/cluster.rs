//! The cluster's objects, the effects: what the datastore's watch hands the node (the other
//! nodes' pods, the Ready nodes, the datastore's Services and Namespaces: checked by the
//! pure state, `state/cluster.rs`, then saved and installed), what the node publishes (its
//! own pods), and `apply`/`delete` on a node with a datastore.
//!
//! - With a datastore, `apply -f` stores Services and Namespaces in etcd, not on the node:
//!   the objects are checked against this node's state exactly as a node-local `apply`
//!   checks them (all or nothing, VIPs allocated) without changing it, then written in one
//!   etcd transaction; every node, this one included, installs them from its watch. The
//!   answer waits (bounded) until this node's watch has seen the write, so that a `service
//!   list` right after shows it.
//! - `delete -f` deletes the datastore's objects in one transaction; a node-local object of
//!   that name (`service add` here) is deleted here as without a datastore.
//! - Nothing here waits for etcd under the node's lock.

use super::state::Reject;
use super::{Inner, Node};
use crate::state::NamespaceRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::info;
use vswitch_proto::{
    Action, ErrorKind, Object, ObjectKey, ObjectResult, PortInfo, Response, ServiceKey, ServiceSpec,
};

pub use super::state::cluster::{PodKey, PodRecord};

/// How long `apply`/`delete` wait for their write to come back through the watch.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// The datastore's objects, decoded (`datastore/objects.rs`), for [`Node::sync_cluster`].
#[derive(Debug, Default)]
pub struct Decoded {
    pub pods: Vec<PodRecord>,
    /// The nodes whose liveness record exists.
    pub ready: BTreeSet<String>,
    pub services: Vec<ServiceSpec>,
    pub namespaces: Vec<NamespaceRecord>,
    /// What did not decode: (what, why).
    pub skipped: Vec<(String, String)>,
}

impl Decoded {
    pub fn skip(&mut self, kind: &str, name: &str, why: String) {
        self.skipped.push((format!("{kind} {name}"), why));
    }
}

impl Node {
    /// Brings the node in line with the datastore's objects; saved and installed when
    /// anything changed. Returns what was skipped (undecodable or refused), with why.
    pub async fn sync_cluster(&self, d: Decoded) -> Vec<(String, String)> {
        let mut skipped = d.skipped;
        let mut inner = self.inner.lock().await;
        let (pods, s1) = inner.set_cluster_pods(d.pods, d.ready);
        let (services, s2) = inner.sync_cluster_services(d.services);
        let (namespaces, s3) = inner.sync_cluster_namespaces(d.namespaces);
        skipped.extend(s1.into_iter().chain(s2).chain(s3));
        if pods || services || namespaces {
            if let Err(e) = self.persist(&inner) {
                tracing::warn!("datastore sync: saving the state: {e:#}");
            }
            self.install(&mut inner);
            info!(
                pods = inner.cluster_pods.len(),
                ready = inner.ready_nodes.len(),
                services = inner.services.len(),
                "datastore: cluster objects synced"
            );
        }
        skipped
    }

    /// This node's pods as it publishes them.
    pub async fn own_pods(&self) -> BTreeMap<PodKey, PodRecord> {
        self.inner.lock().await.own_pods()
    }

    /// `port list --all-nodes`: this node's ports, then the other nodes' pods.
    pub(super) fn port_list_all(&self, inner: &Inner) -> Vec<PortInfo> {
        let mut out: Vec<PortInfo> = inner.ports.values().map(|p| self.port_info(p)).collect();
        out.extend(inner.cluster_pods.values().map(|p| {
            PortInfo {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                ip: p.ip.to_string(),
                prefix_len: inner
                    .peers
                    .values()
                    .find(|q| q.cidr.contains(p.ip))
                    .map_or(32, |q| q.cidr.prefix_len()),
                mac: p.mac.clone(),
                node: p.node.clone(),
                status: p.status,
                netns: String::new(),
                ifname: String::new(),
                gateway: String::new(),
                mtu: 0,
                labels: p.labels.clone(),
                container_id: None,
                runtime_name: None,
                runtime_namespace: None,
                dns: None,
            }
        }));
        out
    }

    /// `apply` with a datastore (see the module docs).
    pub(super) async fn apply_cluster(&self, objects: Vec<Object>) -> Response {
        let Some(ds) = self.datastore.clone() else {
            return Reject::other("no datastore").into_response();
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prefix = ds.prefix().to_string();
        let (results, puts) = {
            let mut inner = self.inner.lock().await;
            let (results, undos) = match inner.apply_objects(objects.clone(), now) {
                Ok(done) => done,
                Err(e) => return e.into_response(),
            };
            // The records as checked (VIPs allocated), read before the state is put back.
            let mut puts = Vec::new();
            for (obj, r) in objects.into_iter().zip(&results) {
                if !matches!(r.action, Action::Created | Action::Configured) {
                    continue;
                }
                match obj {
                    Object::Service(mut spec) => {
                        let key = ServiceKey {
                            name: spec.name.clone(),
                            namespace: spec.namespace.clone(),
                        };
                        spec.vip = inner.services.get(&key).map(|s| s.vip.to_string());
                        puts.push((
                            crate::datastore::objects::service_key(
                                &prefix,
                                &spec.namespace,
                                &spec.name,
                            ),
                            serde_json::to_string(&spec).expect("a spec serializes"),
                        ));
                    }
                    Object::Namespace(spec) => {
                        if let Some(rec) = inner.namespaces.get(&spec.name) {
                            puts.push((
                                crate::datastore::objects::namespace_key(&prefix, &spec.name),
                                serde_json::to_string(rec).expect("a record serializes"),
                            ));
                        }
                    }
                }
            }
            inner.rollback_all(undos);
            (results, puts)
        };
        if let Err(r) = self.write_and_wait(&ds, puts, Vec::new()).await {
            return r.into_response();
        }
        super::apply::log("apply", &results);
        Response::Objects(results)
    }

    /// `delete` with a datastore (see the module docs).
    pub(super) async fn delete_cluster(&self, keys: Vec<ObjectKey>) -> Response {
        let Some(ds) = self.datastore.clone() else {
            return Reject::other("no datastore").into_response();
        };
        let prefix = ds.prefix().to_string();
        let mut results = Vec::new();
        let mut deletes = Vec::new();
        let mut local = Vec::new();
        {
            let inner = self.inner.lock().await;
            for key in keys {
                let (in_ds, etcd_key) = match &key {
                    ObjectKey::Service(k) => (
                        inner.services.get(k).map(|s| s.from_datastore),
                        crate::datastore::objects::service_key(&prefix, &k.namespace, &k.name),
                    ),
                    ObjectKey::Namespace { name } => (
                        inner.namespaces.get(name).map(|n| n.from_datastore),
                        crate::datastore::objects::namespace_key(&prefix, name),
                    ),
                };
                match in_ds {
                    Some(true) => {
                        deletes.push(etcd_key);
                        results.push(ObjectResult {
                            object: key,
                            action: Action::Deleted,
                        });
                    }
                    Some(false) => local.push(key),
                    None => results.push(ObjectResult {
                        object: key,
                        action: Action::NotFound,
                    }),
                }
            }
        }
        if let Err(r) = self.write_and_wait(&ds, Vec::new(), deletes).await {
            return r.into_response();
        }
        super::apply::log("delete", &results);
        if !local.is_empty() {
            let mut inner = self.inner.lock().await;
            match self.delete(&mut inner, local) {
                Ok(Response::Objects(more)) => results.extend(more),
                Ok(other) => return other,
                Err(r) => return r.into_response(),
            }
        }
        Response::Objects(results)
    }

    /// Writes to etcd in one transaction and waits until this node's watch has seen it.
    async fn write_and_wait(
        &self,
        ds: &crate::datastore::Datastore,
        puts: Vec<(String, String)>,
        deletes: Vec<String>,
    ) -> Result<(), Reject> {
        if puts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        let rev = ds.write(puts, deletes).await.map_err(|e| Reject {
            kind: ErrorKind::Other,
            field: None,
            msg: format!("the datastore: {e:#}; nothing was applied"),
        })?;
        if !ds.wait_revision(rev, ECHO_TIMEOUT).await {
            tracing::warn!(
                revision = rev,
                "datastore: written, but the watch did not bring it back within {ECHO_TIMEOUT:?}"
            );
        }
        Ok(())
    }
}
