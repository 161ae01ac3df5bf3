//! vswitch's cluster objects in etcd, beside flannel's keys under the same prefix: the keys,
//! the routing of a watched key to its kind, the decoding of the values, and the writes
//! that publish a node's own pods. Pure: no etcd calls here.
//!
//! | key | value |
//! | --- | --- |
//! | `P/vswitch/nodes/NODE` | the node's liveness record (under a `--node-ttl` lease): Ready while it exists |
//! | `P/vswitch/pods/NODE/NAMESPACE/NAME` | a pod, published by its node ([`PodRecord`]) |
//! | `P/vswitch/services/NAMESPACE/NAME` | a Service as `apply` checked it, with its VIP ([`ServiceSpec`]) |
//! | `P/vswitch/namespaces/NAME` | a Namespace with its labels ([`NamespaceRecord`]) |
//!
//! A value that does not decode, or whose key and value disagree, is skipped with a reason
//! (the caller logs and counts it); it never stops the others.

use super::flannel;
use crate::node::cluster::{Decoded, PodKey, PodRecord};
use crate::state::NamespaceRecord;
use std::collections::BTreeMap;
use vswitch_proto::ServiceSpec;

/// The directory of the pods' records.
pub fn pods_dir(prefix: &str) -> String {
    format!("{prefix}/vswitch/pods/")
}

/// The directory of the Services.
pub fn services_dir(prefix: &str) -> String {
    format!("{prefix}/vswitch/services/")
}

/// The directory of the Namespaces.
pub fn namespaces_dir(prefix: &str) -> String {
    format!("{prefix}/vswitch/namespaces/")
}

/// A pod's key.
pub fn pod_key(prefix: &str, k: &PodKey) -> String {
    format!("{}{}/{}/{}", pods_dir(prefix), k.node, k.namespace, k.name)
}

/// A Service's key.
pub fn service_key(prefix: &str, namespace: &str, name: &str) -> String {
    format!("{}{namespace}/{name}", services_dir(prefix))
}

/// A Namespace's key.
pub fn namespace_key(prefix: &str, name: &str) -> String {
    format!("{}{name}", namespaces_dir(prefix))
}

/// What a key under the prefix holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A flannel subnet lease.
    Lease,
    /// A node's liveness record.
    Node,
    Pod,
    Service,
    Namespace,
}

/// The kind of `key` and its name after the kind's directory; `None` for the keys the
/// watch does not follow (flannel's config, anything unknown).
pub fn route<'a>(prefix: &str, key: &'a str) -> Option<(Kind, &'a str)> {
    let dirs = [
        (Kind::Lease, flannel::subnets_dir(prefix)),
        (Kind::Node, flannel::nodes_dir(prefix)),
        (Kind::Pod, pods_dir(prefix)),
        (Kind::Service, services_dir(prefix)),
        (Kind::Namespace, namespaces_dir(prefix)),
    ];
    dirs.into_iter().find_map(|(kind, dir)| {
        key.strip_prefix(dir.as_str())
            .filter(|name| !name.is_empty())
            .map(|name| (kind, name))
    })
}

/// Everything the watch follows, by kind: names (after the kind's directory) to values.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Objects {
    pub leases: BTreeMap<String, Vec<u8>>,
    pub nodes: BTreeMap<String, Vec<u8>>,
    pub pods: BTreeMap<String, Vec<u8>>,
    pub services: BTreeMap<String, Vec<u8>>,
    pub namespaces: BTreeMap<String, Vec<u8>>,
}

impl Objects {
    /// The map of `kind`.
    pub fn of(&mut self, kind: Kind) -> &mut BTreeMap<String, Vec<u8>> {
        match kind {
            Kind::Lease => &mut self.leases,
            Kind::Node => &mut self.nodes,
            Kind::Pod => &mut self.pods,
            Kind::Service => &mut self.services,
            Kind::Namespace => &mut self.namespaces,
        }
    }

    /// Decodes the pods, Ready nodes, Services and Namespaces; what does not decode, or
    /// sits under a key that is not its own, is skipped with the reason.
    pub fn decode(&self) -> Decoded {
        let mut d = Decoded {
            ready: self.nodes.keys().cloned().collect(),
            ..Decoded::default()
        };
        for (name, v) in &self.pods {
            match serde_json::from_slice::<PodRecord>(v) {
                Ok(p) if *name == format!("{}/{}/{}", p.node, p.namespace, p.name) => {
                    d.pods.push(p)
                }
                Ok(_) => d.skip("pod", name, "the key does not name the record".into()),
                Err(e) => d.skip("pod", name, e.to_string()),
            }
        }
        for (name, v) in &self.services {
            match serde_json::from_slice::<ServiceSpec>(v) {
                Ok(s) if *name == format!("{}/{}", s.namespace, s.name) => d.services.push(s),
                Ok(_) => d.skip("service", name, "the key does not name the record".into()),
                Err(e) => d.skip("service", name, e.to_string()),
            }
        }
        for (name, v) in &self.namespaces {
            match serde_json::from_slice::<NamespaceRecord>(v) {
                Ok(n) if *name == n.name => d.namespaces.push(n),
                Ok(_) => d.skip("namespace", name, "the key does not name the record".into()),
                Err(e) => d.skip("namespace", name, e.to_string()),
            }
        }
        d
    }

    /// The writes that make this node's published pods (`node`'s records in `self.pods`)
    /// equal to `own`: (key, value) to put and keys to delete.
    pub fn pod_writes(
        &self,
        prefix: &str,
        node: &str,
        own: &BTreeMap<PodKey, PodRecord>,
    ) -> (Vec<(String, String)>, Vec<String>) {
        let mut puts = Vec::new();
        let mut wanted = std::collections::BTreeSet::new();
        for (k, rec) in own {
            let name = format!("{}/{}/{}", k.node, k.namespace, k.name);
            let value = serde_json::to_string(rec).expect("a pod record serializes");
            if self.pods.get(&name).map(Vec::as_slice) != Some(value.as_bytes()) {
                puts.push((pod_key(prefix, k), value));
            }
            wanted.insert(name);
        }
        let mine = format!("{node}/");
        let deletes = self
            .pods
            .keys()
            .filter(|n| n.starts_with(&mine) && !wanted.contains(*n))
            .map(|n| format!("{}{n}", pods_dir(prefix)))
            .collect();
        (puts, deletes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_proto::PortStatus;

    const P: &str = "/coreos.com/network";

    fn pod(node: &str, name: &str) -> PodRecord {
        PodRecord {
            name: name.into(),
            namespace: "default".into(),
            node: node.into(),
            ip: "198.18.2.2".parse().unwrap(),
            mac: "0a:58:c6:12:02:02".into(),
            labels: BTreeMap::new(),
            status: PortStatus::Running,
        }
    }

    #[test]
    fn keys_route_to_their_kind() {
        fn r(k: &str) -> Option<(Kind, &str)> {
            route(P, k)
        }
        assert_eq!(
            r("/coreos.com/network/subnets/198.18.1.0-24"),
            Some((Kind::Lease, "198.18.1.0-24"))
        );
        assert_eq!(
            r("/coreos.com/network/vswitch/nodes/n1"),
            Some((Kind::Node, "n1"))
        );
        let k = pod_key(P, &pod("n1", "web").key());
        assert_eq!(k, "/coreos.com/network/vswitch/pods/n1/default/web");
        assert_eq!(r(&k), Some((Kind::Pod, "n1/default/web")));
        let k = service_key(P, "default", "nginx-service");
        assert_eq!(r(&k), Some((Kind::Service, "default/nginx-service")));
        assert_eq!(
            r(&namespace_key(P, "team-a")),
            Some((Kind::Namespace, "team-a"))
        );
        assert_eq!(r("/coreos.com/network/config"), None);
        assert_eq!(r("/coreos.com/network/vswitch/pods/"), None);
        assert_eq!(r("/elsewhere/vswitch/pods/n1/default/web"), None);
    }

    #[test]
    fn values_that_do_not_decode_or_sit_elsewhere_are_skipped() {
        let mut o = Objects::default();
        let good = serde_json::to_vec(&pod("n2", "web")).unwrap();
        o.pods.insert("n2/default/web".into(), good.clone());
        o.pods.insert("n2/default/moved".into(), good);
        o.pods
            .insert("n2/default/junk".into(), b"{not json".to_vec());
        o.services
            .insert("default/s".into(), br#"{"name":"s"}"#.to_vec());
        o.namespaces
            .insert("a".into(), br#"{"name":"a","labels":{}}"#.to_vec());
        o.nodes.insert("n2".into(), b"{}".to_vec());
        let d = o.decode();
        assert_eq!(d.pods, [pod("n2", "web")]);
        assert_eq!(d.namespaces.len(), 1);
        assert!(d.services.is_empty());
        assert_eq!(d.ready.iter().collect::<Vec<_>>(), ["n2"]);
        let what: Vec<&str> = d.skipped.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(
            what,
            [
                "pod n2/default/junk",
                "pod n2/default/moved",
                "service default/s"
            ]
        );
    }

    #[test]
    fn a_node_publishes_what_changed_and_removes_what_is_gone() {
        let mut o = Objects::default();
        let own: BTreeMap<PodKey, PodRecord> = [pod("n1", "a"), pod("n1", "b")]
            .into_iter()
            .map(|p| (p.key(), p))
            .collect();
        let (puts, dels) = o.pod_writes(P, "n1", &own);
        assert_eq!(puts.len(), 2);
        assert!(dels.is_empty());
        for (k, v) in puts {
            let (_, name) = route(P, &k).unwrap();
            o.pods.insert(name.to_string(), v.into_bytes());
        }
        assert_eq!(o.pod_writes(P, "n1", &own), (vec![], vec![]), "published");
        // Another node's pod is never ours to delete; our gone pod is.
        o.pods.insert(
            "n2/default/x".into(),
            serde_json::to_vec(&pod("n2", "x")).unwrap(),
        );
        let own: BTreeMap<PodKey, PodRecord> =
            [pod("n1", "a")].into_iter().map(|p| (p.key(), p)).collect();
        assert_eq!(
            o.pod_writes(P, "n1", &own),
            (vec![], vec![format!("{P}/vswitch/pods/n1/default/b")])
        );
    }
}
