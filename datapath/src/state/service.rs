//! Services (ClusterIP): the service table of a snapshot: service ports by (VIP, port,
//! protocol), the VIPs, and the DNS names. The choice of an endpoint is
//! [`crate::state::balancer`]'s.

use crate::wire::l4::L4Proto;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};

/// One port of a service: what the control plane installs.
#[derive(Clone, Debug)]
pub struct ServiceEntry {
    /// The service's virtual IP.
    pub vip: Ipv4Addr,
    /// The service port.
    pub port: u16,
    /// The port's protocol.
    pub proto: L4Proto,
    /// Ready endpoints (pod address, target port). Empty = reject.
    pub endpoints: Vec<SocketAddrV4>,
    /// ClientIP affinity timeout in ms, when set.
    pub affinity_ms: Option<u64>,
}

/// A DNS name of a service: `name.namespace.svc.<cluster domain>` resolves to `vip`.
#[derive(Clone, Debug)]
pub struct DnsEntry {
    /// The service name.
    pub name: String,
    /// The service's namespace.
    pub namespace: String,
    /// The service's virtual IP.
    pub vip: Ipv4Addr,
}

/// A service port's identity: (VIP, port, protocol).
pub(crate) type ServiceKey = (Ipv4Addr, u16, L4Proto);

/// The service and DNS part of a [`crate::Tables`] snapshot.
#[derive(Default, Debug)]
pub(crate) struct ServiceTable {
    ports: HashMap<ServiceKey, ServiceEntry>,
    vips: HashSet<Ipv4Addr>,
    /// The endpoints of all services, as (address, port, protocol): direct connections to
    /// them are tracked so that no VIP connection shares their tuple (see
    /// [`crate::state::conntrack`]).
    endpoints: HashSet<ServiceKey>,
    /// (name, namespace), lowercase -> VIP.
    names: HashMap<(String, String), Ipv4Addr>,
    /// Bare name, lowercase -> VIP: the service in "default", else the only one of that name.
    bare: HashMap<String, Ipv4Addr>,
}

impl ServiceTable {
    pub(crate) fn new(services: Vec<ServiceEntry>, dns: Vec<DnsEntry>) -> ServiceTable {
        let mut t = ServiceTable::default();
        for s in services {
            t.vips.insert(s.vip);
            (t.endpoints).extend(s.endpoints.iter().map(|e| (*e.ip(), e.port(), s.proto)));
            t.ports.insert((s.vip, s.port, s.proto), s);
        }
        let mut by_name: HashMap<String, Vec<(String, Ipv4Addr)>> = HashMap::new();
        for d in dns {
            let (name, ns) = (
                d.name.to_ascii_lowercase(),
                d.namespace.to_ascii_lowercase(),
            );
            t.names.insert((name.clone(), ns.clone()), d.vip);
            by_name.entry(name).or_default().push((ns, d.vip));
        }
        for (name, all) in by_name {
            let pick = match all.iter().find(|(ns, _)| ns == "default") {
                Some((_, vip)) => Some(*vip),
                None if all.len() == 1 => all.first().map(|(_, vip)| *vip),
                None => None,
            };
            if let Some(vip) = pick {
                t.bare.insert(name, vip);
            }
        }
        t
    }

    /// The service port `key`.
    pub(crate) fn port(&self, key: &ServiceKey) -> Option<&ServiceEntry> {
        self.ports.get(key)
    }

    /// True when `ip` is the VIP of some service.
    pub(crate) fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.contains(&ip)
    }

    /// True when `ep` is, for `proto`, a ready endpoint of some service.
    pub(crate) fn is_endpoint(&self, ep: SocketAddrV4, proto: L4Proto) -> bool {
        !self.endpoints.is_empty() && self.endpoints.contains(&(*ep.ip(), ep.port(), proto))
    }

    /// The VIP of service `name` in `namespace` (both lowercase).
    pub(crate) fn lookup(&self, name: &str, namespace: &str) -> Option<Ipv4Addr> {
        self.names
            .get(&(name.to_string(), namespace.to_string()))
            .copied()
    }

    /// The VIP a bare (single-label, lowercase) name resolves to.
    pub(crate) fn lookup_bare(&self, name: &str) -> Option<Ipv4Addr> {
        self.bare.get(name).copied()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // tests may panic
mod tests {
    use super::*;

    fn dns(name: &str, ns: &str, last: u8) -> DnsEntry {
        DnsEntry {
            name: name.into(),
            namespace: ns.into(),
            vip: Ipv4Addr::new(198, 19, 96, last),
        }
    }

    #[test]
    fn bare_names_prefer_default_then_the_only_one() {
        let t = ServiceTable::new(
            vec![],
            vec![
                dns("web", "prod", 1),
                dns("web", "default", 2),
                dns("api", "prod", 3),
                dns("db", "a", 4),
                dns("db", "b", 5),
                dns("Mixed", "NS", 6),
            ],
        );
        assert_eq!(t.lookup_bare("web"), Some(Ipv4Addr::new(198, 19, 96, 2)));
        assert_eq!(t.lookup_bare("api"), Some(Ipv4Addr::new(198, 19, 96, 3)));
        assert_eq!(t.lookup_bare("db"), None);
        assert_eq!(t.lookup("web", "prod"), Some(Ipv4Addr::new(198, 19, 96, 1)));
        assert_eq!(t.lookup("mixed", "ns"), Some(Ipv4Addr::new(198, 19, 96, 6)));
        assert_eq!(t.lookup("web", "nope"), None);
    }
}
