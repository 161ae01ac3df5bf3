//! Forwarding tables: immutable snapshots, built by the control plane and swapped in
//! atomically. The data path reads them through an `arc_swap` guard and never locks.

use crate::counters::LinkCounters;
use crate::state::service::{DnsEntry, ServiceEntry, ServiceTable};
use crate::types::{Ipv4Cidr, Mac};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Declares a `u32` identifier newtype: zero cost (`repr(transparent)`), serialized as the bare
/// number (`serde(transparent)`), printed as the bare number, and not interchangeable with any
/// other identifier.
macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[repr(transparent)]
        #[serde(transparent)]
        pub struct $name(u32);

        impl $name {
            /// The identifier with this number.
            pub const fn new(n: u32) -> $name {
                $name(n)
            }

            /// The identifier's number.
            pub const fn get(self) -> u32 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_newtype!(
    /// A port's identifier, chosen by the I/O shell (its slot in the shell's port array).
    PortId
);
id_newtype!(
    /// A peer's identifier, chosen by the control plane.
    PeerId
);

/// A local pod's port.
#[derive(Clone, Debug)]
pub struct PortEntry {
    /// The shell's identifier for the port.
    pub id: PortId,
    /// The pod's MAC (the only source MAC it may use).
    pub mac: Mac,
    /// The pod's address (the only source IPv4 it may use).
    pub ip: Ipv4Addr,
    /// Counters, shared across snapshots.
    pub counters: Arc<LinkCounters>,
}

/// A peer node reached through the tunnel.
#[derive(Clone, Debug)]
pub struct PeerEntry {
    /// The control plane's identifier for the peer.
    pub id: PeerId,
    /// The peer's underlay address (outer destination, and the only outer source accepted).
    pub underlay: Ipv4Addr,
    /// The peer's pod subnet.
    pub pod_cidr: Ipv4Cidr,
    /// The peer's VTEP MAC (inner destination MAC of frames sent to it).
    pub vtep_mac: Mac,
    /// Counters, shared across snapshots.
    pub counters: Arc<LinkCounters>,
}

/// One immutable snapshot of the forwarding tables.
#[derive(Default, Debug)]
pub struct Tables {
    ports: HashMap<PortId, PortEntry>,
    by_mac: HashMap<Mac, PortId>,
    by_ip: HashMap<Ipv4Addr, PortId>,
    peers: Vec<PeerEntry>,
    peer_by_underlay: HashMap<Ipv4Addr, usize>,
    services: ServiceTable,
}

impl Tables {
    /// Builds a snapshot and its indexes.
    pub fn new(ports: Vec<PortEntry>, peers: Vec<PeerEntry>) -> Tables {
        let mut t = Tables::default();
        for p in ports {
            t.by_mac.insert(p.mac, p.id);
            t.by_ip.insert(p.ip, p.id);
            t.ports.insert(p.id, p);
        }
        for (i, p) in peers.iter().enumerate() {
            t.peer_by_underlay.insert(p.underlay, i);
        }
        t.peers = peers;
        t
    }

    /// The same snapshot with a service table (service ports with their endpoints, and the
    /// DNS names of services) and its indexes. Replaces any services set before.
    pub fn with_services(mut self, services: Vec<ServiceEntry>, dns: Vec<DnsEntry>) -> Tables {
        self.services = ServiceTable::new(services, dns);
        self
    }

    /// The service part of the snapshot.
    pub(crate) fn services(&self) -> &ServiceTable {
        &self.services
    }

    /// The port with this id.
    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(&id)
    }

    /// The local port owning `mac`.
    pub fn port_by_mac(&self, mac: Mac) -> Option<&PortEntry> {
        self.by_mac.get(&mac).and_then(|id| self.ports.get(id))
    }

    /// The local port owning `ip`.
    pub fn port_by_ip(&self, ip: Ipv4Addr) -> Option<&PortEntry> {
        self.by_ip.get(&ip).and_then(|id| self.ports.get(id))
    }

    /// The peer whose pod subnet contains `ip`.
    pub fn peer_for_ip(&self, ip: Ipv4Addr) -> Option<&PeerEntry> {
        self.peers.iter().find(|p| p.pod_cidr.contains(ip))
    }

    /// The peer whose underlay address is `ip`.
    pub fn peer_by_underlay(&self, ip: Ipv4Addr) -> Option<&PeerEntry> {
        self.peer_by_underlay
            .get(&ip)
            .and_then(|i| self.peers.get(*i))
    }

    /// All ports.
    pub fn ports(&self) -> impl Iterator<Item = &PortEntry> {
        self.ports.values()
    }

    /// All peers.
    pub fn peers(&self) -> &[PeerEntry] {
        &self.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cost_nothing_and_keep_their_number_on_the_wire_and_in_logs() {
        assert_eq!(std::mem::size_of::<PortId>(), std::mem::size_of::<u32>());
        assert_eq!(std::mem::size_of::<Option<PeerId>>(), 8);
        assert_eq!(serde_json::to_string(&PortId::new(7)).unwrap(), "7");
        assert_eq!(
            serde_json::from_str::<PeerId>("42").unwrap(),
            PeerId::new(42)
        );
        assert!(serde_json::from_str::<PortId>("\"7\"").is_err());
        assert_eq!(PortId::new(3).to_string(), "3");
        assert_eq!(PeerId::new(u32::MAX).get(), u32::MAX);
        assert!(PortId::new(1) < PortId::new(2));
    }
}
