//! The CNI verbs (ADD, DEL, CHECK, GC) on top of the port operations. An attachment is
//! keyed by (container id, interface name); the port is named after the Kubernetes pod
//! when the runtime passes K8S_POD_NAME, else after the container id. Runtimes other than
//! the kubelet pass names that are not Kubernetes names (podman: the container's name,
//! `dazzling_chatterjee`; `Web_1`): those are mapped to one
//! ([`validate::runtime_port_name`]: stable, and `Web_1` and `web_1` stay two ports) and the
//! runtime's name is kept in the record (`runtime_name`, shown by `port list -o wide`).

use super::state::check_cni_attach;
use super::{not_found, reject, save_failed, Inner, Node, Reject};
use crate::podnet;
use std::collections::BTreeSet;
use tracing::info;
use vswitch_proto::{validate, CniAttach, CniKey, PortSpec, Response};

/// The port's name and namespace for a CNI ADD, with what the runtime passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RuntimeNames {
    pub port_name: String,
    pub port_namespace: String,
    /// `K8S_POD_NAME` when the port's name is a mapping of it.
    pub runtime_name: Option<String>,
    /// `K8S_POD_NAMESPACE` when the port's namespace is a mapping of it.
    pub runtime_namespace: Option<String>,
}

impl RuntimeNames {
    /// The names for attachment `a`: `K8S_POD_NAME` (else `cni-` and the container id: its
    /// first 12 digits for a hex id, as docker shows them, else all of it) and
    /// `K8S_POD_NAMESPACE` (else `default`), each mapped to a Kubernetes name (itself when
    /// it is one).
    pub fn of(a: &CniAttach) -> RuntimeNames {
        let given_name = a.pod_name.clone().filter(|n| !n.is_empty());
        let port_name = match &given_name {
            Some(n) => validate::runtime_port_name(n),
            None => {
                let id = &a.container_id;
                let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
                if id.len() >= 12 && id.bytes().all(hex) {
                    format!("cni-{}", &id[..12])
                } else {
                    validate::runtime_port_name(&format!("cni-{id}"))
                }
            }
        };
        let given_ns = a
            .pod_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let port_namespace = validate::runtime_port_name(&given_ns);
        RuntimeNames {
            runtime_name: given_name.filter(|n| *n != port_name),
            runtime_namespace: Some(given_ns).filter(|n| *n != port_namespace),
            port_name,
            port_namespace,
        }
    }

    /// The runtime's names to record (those that differ from the port's).
    pub fn given(&self) -> (Option<String>, Option<String>) {
        (self.runtime_name.clone(), self.runtime_namespace.clone())
    }
}

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
        let names = RuntimeNames::of(&a);
        let spec = PortSpec {
            name: names.port_name.clone(),
            namespace: names.port_namespace.clone(),
            netns: a.netns,
            ip: None,
            mac: None,
            ifname: a.ifname,
            labels: Default::default(),
        };
        self.port_add(inner, spec, Some(a.container_id), names.given())
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(id: &str, pod: Option<&str>, ns: Option<&str>) -> CniAttach {
        CniAttach {
            container_id: id.into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/p".into(),
            pod_name: pod.map(Into::into),
            pod_namespace: ns.map(Into::into),
        }
    }

    fn names(a: &CniAttach) -> (String, String, Option<String>, Option<String>) {
        let n = RuntimeNames::of(a);
        (
            n.port_name,
            n.port_namespace,
            n.runtime_name,
            n.runtime_namespace,
        )
    }

    const HEX64: &str = "4f1bf1b0f7ad4b6dd2f5c2c8a0e96ae2b3bb0aa3f6f5d0f05b5a3f0d7e4c1a90";

    #[test]
    fn the_kubelet_s_names_are_the_port_s() {
        assert_eq!(
            names(&attach(HEX64, Some("web-1"), Some("team-a"))),
            ("web-1".into(), "team-a".into(), None, None)
        );
        // No K8S_POD_*: `cni-` and the id's first 12 hex digits, namespace `default`.
        assert_eq!(
            names(&attach(HEX64, None, None)),
            ("cni-4f1bf1b0f7ad".into(), "default".into(), None, None)
        );
        assert_eq!(
            names(&attach("c1", Some(""), Some(""))),
            ("cni-c1".into(), "default".into(), None, None)
        );
    }

    #[test]
    fn podman_and_containerd_names_are_mapped_and_kept() {
        // podman's CNI backend: K8S_POD_NAME is the container's name.
        let (name, ns, given, given_ns) = names(&attach(HEX64, Some("dazzling_chatterjee"), None));
        assert_eq!(name, "dazzling-chatterjee-02feebd9");
        assert_eq!(ns, "default");
        assert_eq!(given.as_deref(), Some("dazzling_chatterjee"));
        assert_eq!(given_ns, None);
        // Two containers whose names differ in case only: two ports.
        let a = names(&attach("c1", Some("Web_1"), None));
        let b = names(&attach("c2", Some("web_1"), None));
        assert_ne!(a.0, b.0);
        assert_eq!(a.2.as_deref(), Some("Web_1"));
        assert_eq!(b.2.as_deref(), Some("web_1"));
        // A namespace that is not a Kubernetes name (containerd's namespaces may be).
        let (_, ns, _, given_ns) = names(&attach("c1", Some("web"), Some("Team_A")));
        assert!(validate::k8s_name("namespace", &ns).is_ok(), "{ns}");
        assert_eq!(given_ns.as_deref(), Some("Team_A"));
        // Container ids the CNI spec allows but that are not names (`ctr run ... My_App`),
        // and ids sharing their first 12 characters: distinct, valid, stable.
        let ids = [
            "My_App",
            "my_app",
            "my-container-1",
            "my-container-2",
            "ABCDEF0123456789",
        ];
        let ports: Vec<String> = ids
            .iter()
            .map(|i| names(&attach(i, None, None)).0)
            .collect();
        for (i, p) in ids.iter().zip(&ports) {
            assert!(validate::k8s_name("name", p).is_ok(), "{i} -> {p}");
            assert_eq!(*p, names(&attach(i, None, None)).0, "{i}: not stable");
        }
        let distinct: BTreeSet<&String> = ports.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ports:?}");
        assert_eq!(ports[2], "cni-my-container-1");
    }
}
