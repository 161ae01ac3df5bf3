//! Services (ClusterIP, kube-proxy semantics), the effects: the `service add`, `service
//! del` and `service list` requests on top of the pure state (`node/state/services.rs`:
//! validation, endpoints, the service and DNS tables, apply and undo), the UDP conntrack
//! flush, and the pods' resolver files.
//!
//! - Endpoints are recomputed whenever a snapshot is installed (any port, peer or service
//!   change). When a UDP endpoint leaves a service, its UDP conntrack entries are flushed, as
//!   kube-proxy does, so that datagrams fail over at once; TCP connections to endpoints that
//!   remain are untouched (the datapath keeps conntrack across table swaps).
//! - Pods attached by `port add` with a netns NAME get `/etc/netns/NAME/resolv.conf` pointing
//!   at the cluster DNS, with the Kubernetes search path; the file starts with
//!   [`RESOLV_MARKER`] and only files with the marker are ever rewritten or removed.

use super::state::{pod_dns, UdpBackend};
use super::{save_failed, Inner, Node, Reject};
use crate::state::{write_atomic, ServiceRecord};
use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use tracing::{info, warn};
use vswitch_datapath::L4Proto;
use vswitch_proto::{Response, ServiceKey, ServiceSpec};

/// First line of every resolv.conf the daemon writes; files without it are not ours.
pub const RESOLV_MARKER: &str = "# written by vswitchd";
/// Where `ip netns exec` takes a namespace's /etc overrides from.
const ETC_NETNS_DIR: &str = "/etc/netns";
/// Where named network namespaces live (both spellings).
const NETNS_DIRS: [&str; 2] = ["/var/run/netns", "/run/netns"];

/// The resolv.conf a pod in Kubernetes namespace `namespace` gets.
pub fn resolv_conf(dns_ip: Ipv4Addr, namespace: &str, domain: &str) -> String {
    let d = pod_dns(dns_ip, namespace, domain);
    format!(
        "{RESOLV_MARKER}\nnameserver {}\nsearch {}\noptions {}\n",
        d.nameservers.join(" "),
        d.search.join(" "),
        d.options.join(" ")
    )
}

/// The netns NAME when `netns` (as given, or as resolved) names one under /var/run/netns.
pub fn netns_name(netns: &str) -> Option<String> {
    if !netns.contains('/') {
        return Some(netns.to_string()).filter(|n| !n.is_empty() && n != "." && n != "..");
    }
    let p = Path::new(netns);
    let parent = p.parent()?.to_str()?;
    let name = p.file_name()?.to_str()?;
    NETNS_DIRS
        .contains(&parent)
        .then(|| name.to_string())
        .filter(|n| n != "." && n != "..")
}

fn resolv_path(name: &str) -> PathBuf {
    Path::new(ETC_NETNS_DIR).join(name).join("resolv.conf")
}

/// True when the file at `path` starts with the marker line.
fn has_marker(path: &Path) -> bool {
    fs::read_to_string(path).is_ok_and(|t| t.lines().next() == Some(RESOLV_MARKER))
}

/// Writes `/etc/netns/NAME/resolv.conf` (atomically, readable by the pod's users) unless a
/// file without the marker is there. With `only_refresh`, only an existing file with the
/// marker is rewritten.
pub fn write_resolv_conf(name: &str, text: &str, only_refresh: bool) -> anyhow::Result<bool> {
    let path = resolv_path(name);
    let present = path.exists();
    if present && !has_marker(&path) {
        info!(path = %path.display(), "leaving a resolv.conf vswitchd did not write alone");
        return Ok(false);
    }
    if only_refresh && !present {
        return Ok(false);
    }
    if present && fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(true);
    }
    let dir = path.parent().expect("has a parent");
    fs::create_dir_all(dir)?;
    write_atomic(dir, "resolv.conf", text.as_bytes(), 0o644)?;
    Ok(true)
}

/// Removes `/etc/netns/NAME/resolv.conf` when it has the marker, and the directory when it
/// is then empty.
pub fn remove_resolv_conf(name: &str) {
    let path = resolv_path(name);
    if !has_marker(&path) {
        return;
    }
    if let Err(e) = fs::remove_file(&path) {
        warn!(path = %path.display(), "removing resolv.conf: {e}");
        return;
    }
    // Fails (and is meant to) when something else lives in the directory.
    let _ = fs::remove_dir(path.parent().expect("has a parent"));
}

impl Node {
    /// Flushes the UDP conntrack entries of endpoints that left a UDP service port.
    pub(super) fn flush_removed_udp(
        &self,
        before: &BTreeSet<UdpBackend>,
        now: &BTreeSet<UdpBackend>,
    ) {
        let gone: BTreeSet<Ipv4Addr> = before.difference(now).map(|(_, _, ep)| *ep.ip()).collect();
        for ip in gone {
            let n = self.datapath.flush_endpoint(ip, Some(L4Proto::Udp));
            info!(endpoint = %ip, flushed = n, "UDP endpoint left a service: conntrack flushed");
        }
    }

    pub(super) fn service_add(
        &self,
        inner: &mut Inner,
        spec: ServiceSpec,
    ) -> Result<Response, Reject> {
        let rec = inner.check_service(spec)?;
        let (key, undo) = inner.add_service(rec);
        if let Err(e) = self.persist(inner) {
            let _ = inner.rollback(undo);
            return Err(save_failed(e));
        }
        self.install(inner);
        let svc = &inner.services[&key];
        let info = inner.service_info(svc);
        info!(service = %key.name, namespace = %key.namespace, vip = %svc.vip,
              endpoints = ?info.endpoints, "service added");
        Ok(Response::Service(info))
    }

    pub(super) fn service_del(
        &self,
        inner: &mut Inner,
        key: ServiceKey,
    ) -> Result<Response, Reject> {
        let undo = inner.remove_service(&key)?;
        if let Err(e) = self.persist(inner) {
            let _ = inner.rollback(undo);
            return Err(save_failed(e));
        }
        self.install(inner);
        info!(service = %key.name, namespace = %key.namespace, "service deleted");
        Ok(Response::Done)
    }

    pub(super) fn service_list(&self, inner: &Inner) -> Response {
        Response::Services(
            inner
                .services
                .values()
                .map(|s| inner.service_info(s))
                .collect(),
        )
    }

    /// Re-validates persisted services on startup; those that no longer fit (another
    /// service CIDR or DNS address) are dropped with a warning.
    pub(super) fn recover_services(&self, inner: &mut Inner, recs: Vec<ServiceRecord>) {
        for (key, why) in inner.recover_services(recs) {
            warn!(service = %key.name, namespace = %key.namespace, "dropping persisted service: {why}");
        }
    }

    /// The resolv.conf of a pod in Kubernetes namespace `namespace`.
    fn pod_resolv_conf(&self, namespace: &str) -> String {
        let cfg = self.datapath.config();
        let dns = cfg.dns_ip.expect("main sets --dns-ip");
        resolv_conf(dns, namespace, &cfg.cluster_domain)
    }

    /// After `port add` with a netns NAME: points the pod's resolver at the cluster DNS.
    /// A failure is logged, not returned: the pod is attached and works by address.
    pub(super) fn write_pod_resolver(&self, netns_given: &str, namespace: &str, refresh: bool) {
        let Some(name) = netns_name(netns_given) else {
            return;
        };
        let text = self.pod_resolv_conf(namespace);
        match write_resolv_conf(&name, &text, refresh) {
            Ok(true) => info!(netns = %name, "wrote {}", resolv_path(&name).display()),
            Ok(false) => {}
            Err(e) => warn!(netns = %name, "writing {}: {e:#}", resolv_path(&name).display()),
        }
    }

    /// After `port del`: removes the resolv.conf written for the pod, if it was ours.
    pub(super) fn remove_pod_resolver(&self, netns: &str) {
        if let Some(name) = netns_name(netns) {
            remove_resolv_conf(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolver_file() {
        let text = resolv_conf("198.19.96.10".parse().unwrap(), "default", "cluster.local");
        assert_eq!(
            text,
            "# written by vswitchd\nnameserver 198.19.96.10\n\
             search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn netns_names() {
        assert_eq!(netns_name("pod1").as_deref(), Some("pod1"));
        assert_eq!(netns_name("/var/run/netns/pod1").as_deref(), Some("pod1"));
        assert_eq!(netns_name("/run/netns/pod1").as_deref(), Some("pod1"));
        assert_eq!(netns_name("/proc/42/ns/net"), None);
        assert_eq!(netns_name("/var/run/netns/.."), None);
        assert_eq!(netns_name(""), None);
    }
}
