//! The CNI verbs (ADD, DEL, CHECK, GC) on top of the port operations. An attachment is
//! keyed by (container id, interface name); the port is named after the Kubernetes pod
//! when the runtime passes K8S_POD_NAME, else after the container id.

use super::state::check_cni_attach;
use super::{not_found, reject, save_failed, Inner, Node, Reject};
use crate::podnet;
use std::collections::BTreeSet;
use tracing::info;
use vswitch_proto::{CniAttach, CniKey, PortSpec, Response};

impl Node {
    pub(super) async fn cni_add(
        &self,
        inner: &mut Inner,
        a: CniAttach,
    ) -> Result<Response, Reject> {
        check_cni_attach(&a)?;
        if let Some(key) = inner.find_cni(&a.container_id, &a.ifname) {
            // The same container asking again gets the same attachment.
            let attached = inner.ports[&key].id.is_some();
            if !attached {
                let netns = podnet::resolve_netns(&a.netns)
                    .map_err(|e| reject("netns", format!("{e:#}")))?;
                let mut rec = inner.ports[&key].rec.clone();
                rec.netns = netns.display().to_string();
                let mac = inner.ports[&key].mac;
                let (id, fd) = self
                    .attach(inner, &rec, mac)
                    .await
                    .map_err(|e| reject("netns", format!("cannot attach the pod: {e:#}")))?;
                // The namespace it is attached in now, for `lost.rs` to watch.
                let netns_id = super::lost::netns_identity(&rec.netns);
                let undo = inner
                    .attach_port(&key, rec, id, netns_id)
                    .expect("found above");
                if let Err(e) = self.persist(inner) {
                    inner.rollback(undo);
                    // Not persistent yet: closing its only fd removes the TAP.
                    drop(fd);
                    return Err(save_failed(e));
                }
                self.serve(id, fd);
                self.install(inner);
            }
            return Ok(Response::Port(self.port_info(&inner.ports[&key])));
        }
        let name = match &a.pod_name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => {
                let short: String = a.container_id.chars().take(12).collect();
                format!("cni-{}", short.to_ascii_lowercase())
            }
        };
        let namespace = a
            .pod_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let spec = PortSpec {
            name,
            namespace,
            netns: a.netns,
            ip: None,
            mac: None,
            ifname: a.ifname,
            labels: Default::default(),
        };
        self.port_add(inner, spec, Some(a.container_id)).await
    }

    pub(super) async fn cni_del(&self, inner: &mut Inner, k: CniKey) -> Result<Response, Reject> {
        match inner.find_cni(&k.container_id, &k.ifname) {
            Some(key) => self.port_del(inner, key).await,
            None => Ok(Response::Done), // DEL is idempotent.
        }
    }

    pub(super) async fn cni_check(&self, inner: &Inner, a: CniAttach) -> Result<Response, Reject> {
        let Some(key) = inner.find_cni(&a.container_id, &a.ifname) else {
            return Err(not_found(
                "container_id",
                format!(
                    "no attachment for container {} interface {}",
                    a.container_id, a.ifname
                ),
            ));
        };
        let port = &inner.ports[&key];
        if port.id.is_none() {
            return Err(Reject::other(format!(
                "port {}/{} is not attached",
                key.namespace, key.name
            )));
        }
        let want = self.pod_if_config(&port.rec, port.mac);
        let (netns, ifname) = (want.netns.clone(), want.ifname.clone());
        let state = tokio::task::spawn_blocking(move || podnet::inspect_pod(&netns, &ifname))
            .await
            .map_err(|e| Reject::other(format!("inspect task failed: {e}")))?
            .map_err(|e| Reject::other(format!("{e:#}")))?;
        state
            .check(&want)
            .map_err(|e| Reject::other(format!("{e:#}")))?;
        Ok(Response::Port(self.port_info(port)))
    }

    pub(super) async fn cni_gc(
        &self,
        inner: &mut Inner,
        valid: Vec<CniKey>,
    ) -> Result<Response, Reject> {
        let keep: BTreeSet<(String, String)> = valid
            .into_iter()
            .map(|k| (k.container_id, k.ifname))
            .collect();
        for key in inner.stale_cni(&keep) {
            info!(port = %key.name, namespace = %key.namespace, "CNI GC: removing stale attachment");
            self.port_del(inner, key).await?;
        }
        Ok(Response::Done)
    }
}
