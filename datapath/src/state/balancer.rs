//! Endpoint choice for new service connections: ClientIP affinity (bounded, expiring pins
//! of a client to an endpoint per service port), else an even spread.

use crate::state::conntrack::RestoreSkip;
use crate::state::service::{ServiceEntry, ServiceKey};
use crate::wire::l4::{L4Proto, Tuple};
use dashmap::DashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Endpoint choice for new connections: ClientIP affinity, else an even spread. Shared by
/// the data path's workers (concurrent map, atomic counter).
pub(crate) struct Balancer {
    /// (client, service port) -> (endpoint, expiry in ms).
    affinity: DashMap<(Ipv4Addr, ServiceKey), (SocketAddrV4, u64)>,
    counter: AtomicU64,
    max: usize,
    /// Moves with every new pin (not with refreshes).
    generation: AtomicU64,
}

/// A ClientIP affinity: (client, service port) -> (endpoint, expiry in ms).
pub(crate) type Pin = ((Ipv4Addr, ServiceKey), (SocketAddrV4, u64));

impl Balancer {
    /// A balancer keeping at most `max` affinities.
    pub(crate) fn new(max: usize) -> Balancer {
        Balancer {
            affinity: DashMap::new(),
            counter: AtomicU64::new(0),
            max,
            generation: AtomicU64::new(0),
        }
    }

    /// The endpoint for a new connection `t` to `svc` (which has endpoints). With ClientIP
    /// affinity, the client's live pinned endpoint if it is still ready (the pin's timeout
    /// is refreshed), else a spread choice that becomes the pin.
    pub(crate) fn choose(
        &self,
        svc: &ServiceEntry,
        t: &Tuple,
        now_ms: u64,
    ) -> Option<SocketAddrV4> {
        let Some(ms) = svc.affinity_ms else {
            return self.spread(&svc.endpoints, t);
        };
        let key = (t.src, (svc.vip, svc.port, svc.proto));
        let expires = now_ms.saturating_add(ms);
        if let Some(mut pin) = self.affinity.get_mut(&key) {
            if pin.1 > now_ms && svc.endpoints.contains(&pin.0) {
                pin.1 = expires;
                return Some(pin.0);
            }
        }
        let ep = self.spread(&svc.endpoints, t)?;
        if self.affinity.len() < self.max || self.affinity.contains_key(&key) {
            self.affinity.insert(key, (ep, expires));
            self.generation.fetch_add(1, Relaxed);
        }
        Some(ep)
    }

    /// The endpoint [`Balancer::choose`] would pick now, and whether a live affinity pins
    /// it, without pinning, refreshing or moving the spread's counter (`vswitchctl trace`).
    pub(crate) fn peek(
        &self,
        svc: &ServiceEntry,
        t: &Tuple,
        now_ms: u64,
    ) -> Option<(SocketAddrV4, bool)> {
        if svc.affinity_ms.is_some() {
            let key = (t.src, (svc.vip, svc.port, svc.proto));
            if let Some(pin) = self.affinity.get(&key) {
                if pin.1 > now_ms && svc.endpoints.contains(&pin.0) {
                    return Some((pin.0, true));
                }
            }
        }
        self.spread_at(&svc.endpoints, t, self.counter.load(Relaxed))
            .map(|ep| (ep, false))
    }

    /// One of `eps`: a cheap hash of the tuple mixed with a per-datapath counter, so that
    /// connections spread evenly whatever their ports.
    fn spread(&self, eps: &[SocketAddrV4], t: &Tuple) -> Option<SocketAddrV4> {
        if eps.is_empty() {
            return None;
        }
        let n = self.counter.fetch_add(1, Relaxed);
        self.spread_at(eps, t, n)
    }

    /// The spread's choice for counter value `n`.
    fn spread_at(&self, eps: &[SocketAddrV4], t: &Tuple, n: u64) -> Option<SocketAddrV4> {
        if eps.is_empty() {
            return None;
        }
        let h = (u64::from(u32::from(t.src)) << 32 | u64::from(u32::from(t.dst)))
            ^ (u64::from(t.sport) << 16 | u64::from(t.dport))
            ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let i = usize::try_from(mix(h) % eps.len() as u64).ok()?; // below eps.len()
        eps.get(i).copied()
    }

    /// A counter that moves with every new pin.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// The live pins, for a snapshot.
    pub(crate) fn pins(&self, now_ms: u64) -> Vec<Pin> {
        self.affinity
            .iter()
            .filter(|p| p.value().1 > now_ms)
            .map(|p| (*p.key(), *p.value()))
            .collect()
    }

    /// Installs a pin restored from a snapshot (validated by the caller) unless the client
    /// has one for that service port already or the bound is reached.
    pub(crate) fn restore(&self, pin: Pin) -> Result<(), RestoreSkip> {
        if self.affinity.len() >= self.max {
            return Err(RestoreSkip::Full);
        }
        match self.affinity.entry(pin.0) {
            dashmap::mapref::entry::Entry::Occupied(_) => Err(RestoreSkip::Duplicate),
            dashmap::mapref::entry::Entry::Vacant(v) => {
                v.insert(pin.1);
                self.generation.fetch_add(1, Relaxed);
                Ok(())
            }
        }
    }

    /// Number of affinities.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.affinity.len()
    }

    /// Removes the affinities pinned to `ep` (for service ports of `proto`, or all).
    pub(crate) fn flush_endpoint(&self, ep: Ipv4Addr, proto: Option<L4Proto>) {
        self.affinity
            .retain(|(_, (_, _, p)), (e, _)| !(*e.ip() == ep && proto.is_none_or(|x| x == *p)));
    }

    /// Removes expired affinities.
    pub(crate) fn expire(&self, now_ms: u64) {
        self.affinity.retain(|_, (_, exp)| *exp > now_ms);
    }
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // tests may panic
mod tests {
    use super::*;

    fn svc(eps: usize, affinity_ms: Option<u64>) -> ServiceEntry {
        ServiceEntry {
            vip: Ipv4Addr::new(198, 19, 96, 20),
            port: 80,
            proto: L4Proto::Tcp,
            endpoints: (0..eps)
                .map(|i| SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 10 + i as u8), 8080))
                .collect(),
            affinity_ms,
        }
    }

    fn tuple(client: u8, sport: u16) -> Tuple {
        Tuple {
            proto: L4Proto::Tcp,
            src: Ipv4Addr::new(198, 18, 1, client),
            sport,
            dst: Ipv4Addr::new(198, 19, 96, 20),
            dport: 80,
        }
    }

    #[test]
    fn spread_is_even_even_for_one_tuple() {
        let b = Balancer::new(100);
        let s = svc(3, None);
        assert_eq!(b.choose(&svc(0, None), &tuple(2, 1), 0), None);
        let mut hits = [0usize; 3];
        for i in 0..3000 {
            let ep = b.choose(&s, &tuple(2, 7), i).unwrap();
            hits[s.endpoints.iter().position(|e| *e == ep).unwrap()] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
        assert_eq!(b.len(), 0, "no affinity, no pins");
    }

    #[test]
    fn affinity_is_per_client_and_bounded() {
        let b = Balancer::new(2);
        let s = svc(4, Some(1000));
        let first = b.choose(&s, &tuple(2, 1), 0).unwrap();
        for sport in 2..50 {
            assert_eq!(b.choose(&s, &tuple(2, sport), 10), Some(first));
        }
        b.choose(&s, &tuple(3, 1), 0).unwrap();
        b.choose(&s, &tuple(4, 1), 0).unwrap(); // over the bound: not pinned
        assert_eq!(b.len(), 2);
        b.flush_endpoint(*first.ip(), Some(L4Proto::Udp));
        assert_eq!(b.len(), 2, "another protocol");
        b.expire(1005);
        assert_eq!(b.len(), 1, "client 2 was refreshed at 10 ms");
        b.flush_endpoint(*first.ip(), None);
        assert_eq!(b.len(), 0);
    }
}
