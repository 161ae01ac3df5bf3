//! Services in the pure node state: a `service add` validated against the state, the
//! endpoints computed from the explicit ones and the selector, the service and DNS tables
//! built for every snapshot, and applying or undoing a `service add`/`service del`.
//!
//! - A Service is a VIP inside the service CIDR with one or more ports. Its endpoints are the
//!   explicit ones (`--endpoint IP[:PORT]`, pods on this node or on a known peer) plus the
//!   local pods whose labels match its selector. An endpoint is *ready* (used) when it is a
//!   Running local pod, or lies in a peer's subnet. The datapath DNATs to ready endpoints only
//!   and rejects connections when there are none.
//! - `service add` never replaces: an existing (namespace, name) is an `exists` error
//!   (`apply` does replace: `state/apply.rs`). A Service given no VIP gets a free one
//!   ([`NodeState::allocate_vip`]).
//! - The effects (the pods' resolver files, the UDP conntrack flush, the requests' plumbing)
//!   are `node/services.rs`'.

use super::{exists, not_found, reject, NodeState, Reject, Undo};
use crate::state::{EndpointRecord, ServicePortRecord, ServiceRecord};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use vswitch_datapath::{DnsEntry, Ipv4Cidr, L4Proto, ServiceEntry};
use vswitch_proto::validate;
use vswitch_proto::{PodDns, ServiceInfo, ServiceKey, ServicePortInfo, ServiceSpec};

/// A UDP backend as installed: (VIP, service port, endpoint).
pub(in crate::node) type UdpBackend = (Ipv4Addr, u16, SocketAddrV4);

/// The service and DNS tables of a state, and the UDP backends they contain.
pub(in crate::node) type ServiceTables = (Vec<ServiceEntry>, Vec<DnsEntry>, BTreeSet<UdpBackend>);

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
pub fn pod_dns(dns_ip: Ipv4Addr, namespace: &str, domain: &str) -> PodDns {
    PodDns {
        nameservers: vec![dns_ip.to_string()],
        search: vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.to_string(),
        ],
        options: vec!["ndots:5".into()],
    }
}

fn l4(protocol: &str) -> L4Proto {
    if protocol == "udp" {
        L4Proto::Udp
    } else {
        L4Proto::Tcp
    }
}

fn key_of(rec: &ServiceRecord) -> ServiceKey {
    ServiceKey {
        name: rec.name.clone(),
        namespace: rec.namespace.clone(),
    }
}

impl NodeState {
    /// The service CIDR and DNS address (always configured by `main`).
    fn service_net(&self) -> (Ipv4Cidr, Ipv4Addr) {
        (
            self.cfg.service_cidr.expect("main sets --service-cidr"),
            self.cfg.dns_ip.expect("main sets --dns-ip"),
        )
    }

    /// Checks a VIP against the service CIDR, the DNS address and the other services.
    fn check_vip(&self, vip: Ipv4Addr, key: &ServiceKey) -> Result<(), Reject> {
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
        if let Some(other) = self
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
    fn endpoint_known(&self, ip: Ipv4Addr) -> bool {
        let own = self.cfg.pod_cidr;
        let host = ip != own.network() && ip != own.broadcast();
        (own.contains(ip) && host) || self.peers.values().any(|p| p.cidr.contains(ip))
    }

    /// The endpoints of `svc` in use now: ready explicit ones, then the Running local pods
    /// and the other nodes' pods ([`NodeState::cluster_matches`]) its selector matches (a pod already listed explicitly with no fixed port is not
    /// repeated). Sorted, without duplicates.
    pub fn ready_endpoints(&self, svc: &ServiceRecord) -> Vec<EndpointRecord> {
        let own = self.cfg.pod_cidr;
        let running_local = |ip: Ipv4Addr| {
            self.ports
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
                    self.peers.values().any(|p| p.cidr.contains(e.ip))
                }
            })
            .copied()
            .collect();
        if !svc.selector.is_empty() {
            for p in self.ports.values() {
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
            eps.extend(
                self.cluster_matches(&svc.selector)
                    .into_iter()
                    .map(|ip| EndpointRecord { ip, port: None }),
            );
        }
        eps.into_iter().collect()
    }

    /// What `service list` and `service add` show of `svc`.
    pub fn service_info(&self, svc: &ServiceRecord) -> ServiceInfo {
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
                .ready_endpoints(svc)
                .into_iter()
                .map(|e| match e.port {
                    Some(p) => format!("{}:{p}", e.ip),
                    None => e.ip.to_string(),
                })
                .collect(),
            affinity_seconds: svc.affinity_seconds,
            dns_names: dns_names(&svc.name, &svc.namespace, &self.cfg.cluster_domain),
        }
    }

    /// The datapath's service and DNS tables for the current state, and the UDP backends
    /// they contain.
    pub fn service_tables(&self) -> ServiceTables {
        let mut entries = Vec::new();
        let mut dns = Vec::new();
        let mut udp = BTreeSet::new();
        for svc in self.services.values() {
            let eps = self.ready_endpoints(svc);
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

    /// The name checks of a Service: its key.
    pub(super) fn service_key(spec: &ServiceSpec) -> Result<ServiceKey, Reject> {
        service_name(&spec.name).map_err(|e| reject("name", e))?;
        dns_label(&spec.namespace).map_err(|e| reject("namespace", e))?;
        Ok(ServiceKey {
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
        })
    }

    /// A VIP asked for: an IPv4 address that [`NodeState::check_vip`] accepts for `key`.
    pub(super) fn given_vip(&self, s: &str, key: &ServiceKey) -> Result<Ipv4Addr, Reject> {
        let vip = validate::ipv4("vip", s).map_err(|e| reject(e.field, e.message))?;
        self.check_vip(vip, key)?;
        Ok(vip)
    }

    /// A free VIP of the service CIDR: not its network or broadcast address, not the DNS
    /// address, not another service's. Like Kubernetes (KEP-3070) it looks above the lower
    /// band first (the first min(max(16, size/16), 256) addresses), which is left for VIPs
    /// given explicitly, and falls back to the band when the rest is used up.
    pub(super) fn allocate_vip(&self) -> Result<Ipv4Addr, Reject> {
        let (cidr, dns) = self.service_net();
        let first = u32::from(cidr.network()).saturating_add(1);
        let last = u32::from(cidr.broadcast()).saturating_sub(1);
        let size = last.saturating_sub(first) + 1;
        let band = (size / 16).clamp(16, 256).min(size.saturating_sub(1));
        let used: BTreeSet<Ipv4Addr> = self.services.values().map(|s| s.vip).collect();
        (first + band..=last)
            .chain(first..first + band)
            .map(Ipv4Addr::from)
            .find(|ip| *ip != dns && !used.contains(ip))
            .ok_or_else(|| Reject {
                kind: vswitch_proto::ErrorKind::Exhausted,
                field: Some("vip"),
                msg: format!("no free VIP left in the service CIDR {cidr}"),
            })
    }

    /// Validates a `service add` into the record to store; without a VIP, one is allocated.
    pub fn check_service(&self, spec: ServiceSpec) -> Result<ServiceRecord, Reject> {
        let key = Self::service_key(&spec)?;
        if self.services.contains_key(&key) {
            return Err(exists(
                "name",
                format!(
                    "service {}/{} already exists (delete it first to change it)",
                    key.namespace, key.name
                ),
            ));
        }
        let vip = match &spec.vip {
            Some(s) => self.given_vip(s, &key)?,
            None => self.allocate_vip()?,
        };
        self.service_record(spec, vip)
    }

    /// The checks of a Service but its name and VIP (ports, selector, endpoints, affinity):
    /// the record to store, with `vip`.
    pub(super) fn service_record(
        &self,
        spec: ServiceSpec,
        vip: Ipv4Addr,
    ) -> Result<ServiceRecord, Reject> {
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
            if !self.endpoint_known(e.ip) {
                return Err(reject(
                    "endpoint",
                    format!(
                        "{} is neither in this node's subnet {} nor in a known peer's subnet",
                        e.ip, self.cfg.pod_cidr
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
            from_datastore: self.datastore,
        })
    }

    /// Adds a checked service ([`NodeState::check_service`]); its key and how to undo it.
    pub fn add_service(&mut self, rec: ServiceRecord) -> (ServiceKey, Undo) {
        let key = key_of(&rec);
        self.services.insert(key.clone(), rec);
        (key.clone(), Undo::ServiceAdded { key })
    }

    /// Removes service `key`.
    pub fn remove_service(&mut self, key: &ServiceKey) -> Result<Undo, Reject> {
        match self.services.remove(key) {
            Some(rec) => Ok(Undo::ServiceRemoved { rec }),
            None => Err(not_found(
                "name",
                format!("service {}/{} does not exist", key.namespace, key.name),
            )),
        }
    }

    /// Re-validates persisted services on startup and keeps those that still fit; those
    /// that do not (a duplicate, another service CIDR or DNS address) are returned with
    /// the reason, for the caller to warn about.
    pub fn recover_services(&mut self, recs: Vec<ServiceRecord>) -> Vec<(ServiceKey, String)> {
        let mut dropped = Vec::new();
        for rec in recs {
            let key = key_of(&rec);
            if self.services.contains_key(&key) {
                dropped.push((key, "a duplicate persisted service".to_string()));
                continue;
            }
            if let Err(r) = self.check_vip(rec.vip, &key) {
                dropped.push((key, format!("vip: {}", r.msg)));
                continue;
            }
            self.services.insert(key, rec);
        }
        dropped
    }
}

#[cfg(test)]
mod tests;
