//! Services (ClusterIP, kube-proxy semantics): `service add`, `service del`, `service list`,
//! the service and DNS tables built from them for every snapshot, and the pods' resolver
//! files.
//!
//! - A Service is a VIP inside the service CIDR with one or more ports. Its endpoints are the
//!   explicit ones (`--endpoint IP[:PORT]`, pods on this node or on a known peer) plus the
//!   local pods whose labels match its selector. An endpoint is *ready* (used) when it is a
//!   Running local pod, or lies in a peer's subnet. The datapath DNATs to ready endpoints only
//!   and rejects connections when there are none.
//! - Endpoints are recomputed whenever a snapshot is installed (any port, peer or service
//!   change). When a UDP endpoint leaves a service, its UDP conntrack entries are flushed, as
//!   kube-proxy does, so that datagrams fail over at once; TCP connections to endpoints that
//!   remain are untouched (the datapath keeps conntrack across table swaps).
//! - `service add` never replaces: an existing (namespace, name) is an `exists` error.
//! - Pods attached by `port add` with a netns NAME get `/etc/netns/NAME/resolv.conf` pointing
//!   at the cluster DNS, with the Kubernetes search path; the file starts with
//!   [`RESOLV_MARKER`] and only files with the marker are ever rewritten or removed.

use super::{exists, not_found, reject, save_failed, Inner, Node, Reject};
use crate::state::{write_atomic, EndpointRecord, ServicePortRecord, ServiceRecord};
use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use tracing::{info, warn};
use vswitch_datapath::{DnsEntry, L4Proto, ServiceEntry};
use vswitch_proto::validate;
use vswitch_proto::{Response, ServiceInfo, ServiceKey, ServicePortInfo, ServiceSpec};

/// First line of every resolv.conf the daemon writes; files without it are not ours.
pub const RESOLV_MARKER: &str = "# written by vswitchd";
/// Where `ip netns exec` takes a namespace's /etc overrides from.
const ETC_NETNS_DIR: &str = "/etc/netns";
/// Where named network namespaces live (both spellings).
const NETNS_DIRS: [&str; 2] = ["/var/run/netns", "/run/netns"];

/// A UDP backend as installed: (VIP, service port, endpoint).
pub(super) type UdpBackend = (Ipv4Addr, u16, SocketAddrV4);

/// A Service name: an RFC 1035 label (what Kubernetes requires, since it is a DNS name).
fn service_name(s: &str) -> Result<(), String> {
    validate::service_name("name", s).map_err(|e| e.message)
}

/// A DNS label: 1-63 characters of `a-z 0-9 -`, alphanumeric at both ends.
fn dns_label(s: &str) -> Result<(), String> {
    validate::dns_label("namespace", s).map_err(|e| e.message)
}

/// Parses `[NAME:]PORT[:TARGETPORT][/tcp|/udp]`: the target port defaults to the port, the
/// protocol to tcp. `A:B` is PORT:TARGETPORT when A is a number, else NAME:PORT.
pub fn parse_port(spec: &str) -> Result<ServicePortRecord, String> {
    let p = validate::service_port(spec).map_err(|e| e.message)?;
    Ok(ServicePortRecord {
        name: p.name,
        port: p.port,
        target_port: p.target_port,
        protocol: p.protocol.as_str().to_string(),
    })
}

/// Parses `IP[:PORT]`.
pub fn parse_endpoint(s: &str) -> Result<EndpointRecord, String> {
    let e = validate::endpoint(s).map_err(|e| e.message)?;
    Ok(EndpointRecord {
        ip: e.ip,
        port: e.port,
    })
}

/// Parses `client-ip[:SECONDS]` (also Kubernetes' `ClientIP`); `none` means no affinity.
pub fn parse_affinity(s: &str) -> Result<Option<u32>, String> {
    validate::affinity(s).map_err(|e| e.message)
}

/// The DNS names of a Service, most specific first.
pub fn dns_names(name: &str, namespace: &str, domain: &str) -> Vec<String> {
    let mut v = vec![
        format!("{name}.{namespace}.svc.{domain}"),
        format!("{name}.{namespace}"),
    ];
    if namespace == "default" {
        v.push(name.to_string());
    }
    v
}

/// The resolver settings of a pod in Kubernetes namespace `namespace`: the cluster DNS and
/// the Kubernetes search path (what kubelet writes).
pub fn pod_dns(dns_ip: Ipv4Addr, namespace: &str, domain: &str) -> vswitch_proto::PodDns {
    vswitch_proto::PodDns {
        nameservers: vec![dns_ip.to_string()],
        search: vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.to_string(),
        ],
        options: vec!["ndots:5".into()],
    }
}

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

fn l4(protocol: &str) -> L4Proto {
    if protocol == "udp" {
        L4Proto::Udp
    } else {
        L4Proto::Tcp
    }
}

impl Node {
    /// The service CIDR and DNS address (always configured by `main`).
    fn service_net(&self) -> (vswitch_datapath::Ipv4Cidr, Ipv4Addr) {
        let cfg = self.datapath.config();
        (
            cfg.service_cidr.expect("main sets --service-cidr"),
            cfg.dns_ip.expect("main sets --dns-ip"),
        )
    }

    /// Checks a VIP against the service CIDR, the DNS address and the other services.
    fn check_vip(&self, inner: &Inner, vip: Ipv4Addr, key: &ServiceKey) -> Result<(), Reject> {
        let (cidr, dns) = self.service_net();
        if !cidr.contains(vip) {
            return Err(reject(
                "vip",
                format!("{vip} is outside the service CIDR {cidr}"),
            ));
        }
        if vip == cidr.network() || vip == cidr.broadcast() {
            return Err(reject(
                "vip",
                format!("{vip} is the network or broadcast address of {cidr}"),
            ));
        }
        if vip == dns {
            return Err(reject("vip", format!("{vip} is the cluster DNS address")));
        }
        if let Some(other) = inner
            .services
            .values()
            .find(|s| s.vip == vip && (&s.namespace, &s.name) != (&key.namespace, &key.name))
        {
            return Err(exists(
                "vip",
                format!(
                    "{vip} is already the VIP of service {}/{}",
                    other.namespace, other.name
                ),
            ));
        }
        Ok(())
    }

    /// True when an explicit endpoint address lies in this node's or a known peer's subnet.
    fn endpoint_known(&self, inner: &Inner, ip: Ipv4Addr) -> bool {
        let own = self.datapath.config().pod_cidr;
        let host = ip != own.network() && ip != own.broadcast();
        (own.contains(ip) && host) || inner.peers.values().any(|p| p.cidr.contains(ip))
    }

    /// The endpoints of `svc` in use now: ready explicit ones, then the Running local pods
    /// its selector matches (a pod already listed explicitly with no fixed port is not
    /// repeated). Sorted, without duplicates.
    fn ready_endpoints(&self, inner: &Inner, svc: &ServiceRecord) -> Vec<EndpointRecord> {
        let own = self.datapath.config().pod_cidr;
        let running_local = |ip: Ipv4Addr| {
            inner
                .ports
                .values()
                .any(|p| p.rec.ip == ip && p.id.is_some())
        };
        let mut eps: BTreeSet<EndpointRecord> = svc
            .endpoints
            .iter()
            .filter(|e| {
                if own.contains(e.ip) {
                    running_local(e.ip)
                } else {
                    inner.peers.values().any(|p| p.cidr.contains(e.ip))
                }
            })
            .copied()
            .collect();
        if !svc.selector.is_empty() {
            for p in inner.ports.values() {
                let matches = svc
                    .selector
                    .iter()
                    .all(|(k, v)| p.rec.labels.get(k) == Some(v));
                if matches && p.id.is_some() {
                    eps.insert(EndpointRecord {
                        ip: p.rec.ip,
                        port: None,
                    });
                }
            }
        }
        eps.into_iter().collect()
    }

    fn service_info(&self, inner: &Inner, svc: &ServiceRecord) -> ServiceInfo {
        let domain = &self.datapath.config().cluster_domain;
        ServiceInfo {
            name: svc.name.clone(),
            namespace: svc.namespace.clone(),
            vip: svc.vip.to_string(),
            ports: svc
                .ports
                .iter()
                .map(|p| ServicePortInfo {
                    name: p.name.clone(),
                    port: p.port,
                    target_port: p.target_port,
                    protocol: p.protocol.clone(),
                })
                .collect(),
            selector: svc.selector.clone(),
            endpoints: self
                .ready_endpoints(inner, svc)
                .into_iter()
                .map(|e| match e.port {
                    Some(p) => format!("{}:{p}", e.ip),
                    None => e.ip.to_string(),
                })
                .collect(),
            affinity_seconds: svc.affinity_seconds,
            dns_names: dns_names(&svc.name, &svc.namespace, domain),
        }
    }

    /// The datapath's service and DNS tables for the current state, and the UDP backends
    /// they contain.
    pub(super) fn service_tables(
        &self,
        inner: &Inner,
    ) -> (Vec<ServiceEntry>, Vec<DnsEntry>, BTreeSet<UdpBackend>) {
        let mut entries = Vec::new();
        let mut dns = Vec::new();
        let mut udp = BTreeSet::new();
        for svc in inner.services.values() {
            let eps = self.ready_endpoints(inner, svc);
            for p in &svc.ports {
                let mut endpoints: Vec<SocketAddrV4> = eps
                    .iter()
                    .map(|e| SocketAddrV4::new(e.ip, e.port.unwrap_or(p.target_port)))
                    .collect();
                endpoints.sort();
                endpoints.dedup();
                if p.protocol == "udp" {
                    udp.extend(endpoints.iter().map(|e| (svc.vip, p.port, *e)));
                }
                entries.push(ServiceEntry {
                    vip: svc.vip,
                    port: p.port,
                    proto: l4(&p.protocol),
                    endpoints,
                    affinity_ms: svc.affinity_seconds.map(|s| u64::from(s) * 1000),
                });
            }
            dns.push(DnsEntry {
                name: svc.name.clone(),
                namespace: svc.namespace.clone(),
                vip: svc.vip,
            });
        }
        (entries, dns, udp)
    }

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

    /// Validates a `service add` into the record to store.
    fn service_record(&self, inner: &Inner, spec: ServiceSpec) -> Result<ServiceRecord, Reject> {
        service_name(&spec.name).map_err(|e| reject("name", e))?;
        dns_label(&spec.namespace).map_err(|e| reject("namespace", e))?;
        let key = ServiceKey {
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
        };
        if inner.services.contains_key(&key) {
            return Err(exists(
                "name",
                format!(
                    "service {}/{} already exists (delete it first to change it)",
                    key.namespace, key.name
                ),
            ));
        }
        let vip = validate::ipv4("vip", &spec.vip).map_err(|e| reject(e.field, e.message))?;
        self.check_vip(inner, vip, &key)?;
        if spec.ports.is_empty() {
            return Err(reject("port", "a service needs at least one --port"));
        }
        let mut ports: Vec<ServicePortRecord> = Vec::new();
        for s in &spec.ports {
            let p = parse_port(s).map_err(|e| reject("port", e))?;
            if ports
                .iter()
                .any(|q| q.port == p.port && q.protocol == p.protocol)
            {
                return Err(reject(
                    "port",
                    format!("port {}/{} is given twice", p.port, p.protocol),
                ));
            }
            if !p.name.is_empty() && ports.iter().any(|q| q.name == p.name) {
                return Err(reject(
                    "port",
                    format!("port name `{}` is given twice", p.name),
                ));
            }
            ports.push(p);
        }
        if spec.selector.is_empty() && spec.endpoints.is_empty() {
            return Err(reject(
                "selector",
                "a service needs a --selector or at least one --endpoint",
            ));
        }
        for (k, v) in &spec.selector {
            validate::label("selector", k, v).map_err(|e| reject(e.field, e.message))?;
        }
        let mut endpoints = BTreeSet::new();
        for s in &spec.endpoints {
            let e = parse_endpoint(s).map_err(|e| reject("endpoint", e))?;
            if !self.endpoint_known(inner, e.ip) {
                return Err(reject(
                    "endpoint",
                    format!(
                        "{} is neither in this node's subnet {} nor in a known peer's subnet",
                        e.ip,
                        self.datapath.config().pod_cidr
                    ),
                ));
            }
            if e.port.is_some() && ports.iter().any(|p| p.port != ports[0].port) {
                return Err(reject(
                    "endpoint",
                    format!(
                        "`{s}` fixes the endpoint port, which is ambiguous for a service with \
                         several port numbers: give the endpoint without a port and set each \
                         --port's TARGETPORT"
                    ),
                ));
            }
            endpoints.insert(e);
        }
        let affinity_seconds = match &spec.affinity {
            Some(a) => parse_affinity(a).map_err(|e| reject("affinity", e))?,
            None => None,
        };
        Ok(ServiceRecord {
            name: spec.name,
            namespace: spec.namespace,
            vip,
            ports,
            selector: spec.selector,
            endpoints: endpoints.into_iter().collect(),
            affinity_seconds,
        })
    }

    pub(super) fn service_add(
        &self,
        inner: &mut Inner,
        spec: ServiceSpec,
    ) -> Result<Response, Reject> {
        let rec = self.service_record(inner, spec)?;
        let key = ServiceKey {
            name: rec.name.clone(),
            namespace: rec.namespace.clone(),
        };
        inner.services.insert(key.clone(), rec);
        if let Err(e) = self.persist(inner) {
            inner.services.remove(&key);
            return Err(save_failed(e));
        }
        self.install(inner);
        let svc = &inner.services[&key];
        let info = self.service_info(inner, svc);
        info!(service = %key.name, namespace = %key.namespace, vip = %svc.vip,
              endpoints = ?info.endpoints, "service added");
        Ok(Response::Service(info))
    }

    pub(super) fn service_del(
        &self,
        inner: &mut Inner,
        key: ServiceKey,
    ) -> Result<Response, Reject> {
        let Some(rec) = inner.services.remove(&key) else {
            return Err(not_found(
                "name",
                format!("service {}/{} does not exist", key.namespace, key.name),
            ));
        };
        if let Err(e) = self.persist(inner) {
            inner.services.insert(key, rec);
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
                .map(|s| self.service_info(inner, s))
                .collect(),
        )
    }

    /// Re-validates persisted services on startup; those that no longer fit (another
    /// service CIDR or DNS address) are dropped with a warning.
    pub(super) fn recover_services(&self, inner: &mut Inner, recs: Vec<ServiceRecord>) {
        for rec in recs {
            let key = ServiceKey {
                name: rec.name.clone(),
                namespace: rec.namespace.clone(),
            };
            if inner.services.contains_key(&key) {
                warn!(service = %key.name, namespace = %key.namespace, "dropping a duplicate persisted service");
                continue;
            }
            if let Err(r) = self.check_vip(inner, rec.vip, &key) {
                warn!(service = %key.name, namespace = %key.namespace, "dropping persisted service: vip: {}", r.msg);
                continue;
            }
            inner.services.insert(key, rec);
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

    fn port(name: &str, port: u16, target: u16, proto: &str) -> ServicePortRecord {
        ServicePortRecord {
            name: name.into(),
            port,
            target_port: target,
            protocol: proto.into(),
        }
    }

    // The accepted and refused specs, endpoints, affinities and names are listed in
    // vswitch-proto's validate tests (the implementation these wrappers call).
    #[test]
    fn wrappers_give_records_and_proto_messages() {
        assert_eq!(parse_port("80").unwrap(), port("", 80, 80, "tcp"));
        assert_eq!(parse_port("53/UDP").unwrap(), port("", 53, 53, "udp"));
        assert_eq!(
            parse_port("dns-udp:53:5353/udp").unwrap(),
            port("dns-udp", 53, 5353, "udp")
        );
        assert_eq!(
            parse_port("80/sctp").unwrap_err(),
            validate::service_port("80/sctp").unwrap_err().message
        );
        assert_eq!(
            parse_endpoint("198.18.1.5:8080").unwrap(),
            EndpointRecord {
                ip: "198.18.1.5".parse().unwrap(),
                port: Some(8080)
            }
        );
        assert!(parse_endpoint("198.18.1.5:0").is_err());
        assert_eq!(parse_affinity("client-ip").unwrap(), Some(10800));
        assert_eq!(parse_affinity("none").unwrap(), None);
        assert!(parse_affinity("client-ip:86401").is_err());
        assert!(service_name("nginx-service").is_ok());
        assert!(service_name("1nginx").is_err());
        assert!(dns_label("kube-system").is_ok());
        assert!(dns_label("Default").is_err());
    }

    #[test]
    fn dns_names_and_resolver() {
        assert_eq!(
            dns_names("nginx-service", "default", "cluster.local"),
            [
                "nginx-service.default.svc.cluster.local",
                "nginx-service.default",
                "nginx-service"
            ]
        );
        assert_eq!(dns_names("db", "prod", "k8s.example").len(), 2);
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
