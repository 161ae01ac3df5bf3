//! Saving and restoring the service NAT state across a restart of the shell: the conntrack
//! table, the ClientIP affinities and the SNAT port cursor, as plain serde records
//! ([`CtSnapshot`]). The shell writes them to disk; this module only converts.
//!
//! - Times are relative: a record holds the lifetime left at the `now_ms` of the export, and
//!   the import adds it to its own `now_ms` (minus how long the snapshot lay on disk), since
//!   the shell's clock starts again at zero with every process.
//! - The import trusts nothing: every record is checked (protocol and state agree, addresses
//!   are unicast, the reply tuple is one the datapath could have made, the lifetime is within
//!   the state's timeout) and then checked against the installed tables (the client is a
//!   local pod, the service port exists and still has that endpoint). A bad record is
//!   skipped and counted in [`CtImport`]; the table's bound is respected (assured
//!   connections first, then the longest-lived) and nothing is evicted.

use crate::state::balancer::Balancer;
use crate::state::conntrack::{Conntrack, RestoreSkip};
use crate::state::ct_state::State;
use crate::state::service::ServiceKey;
use crate::state::tables::Tables;
use crate::types::NodeConfig;
use crate::wire::l4::{L4Proto, Tuple};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};

/// One tracked connection, as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnRecord {
    /// The protocol.
    pub proto: L4Proto,
    /// The client pod's address and port (the original source).
    pub client: SocketAddrV4,
    /// The service's VIP and port (the original destination); the endpoint itself for a
    /// direct connection (a pod to an endpoint's address, tracked so that no VIP
    /// connection shares its tuple).
    pub service: SocketAddrV4,
    /// The endpoint the connection is translated to.
    pub endpoint: SocketAddrV4,
    /// Where the endpoint answers: the client's address, or the gateway on hairpin, with
    /// the client's port or one from the SNAT range.
    pub reply_to: SocketAddrV4,
    /// The connection's state.
    pub state: State,
    /// Carried traffic both ways (never evicted).
    pub assured: bool,
    /// Lifetime left at the export, ms.
    pub expires_in_ms: u64,
}

/// One ClientIP affinity, as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinityRecord {
    /// The client pod's address.
    pub client: Ipv4Addr,
    /// The service port's protocol.
    pub proto: L4Proto,
    /// The service's VIP and port.
    pub service: SocketAddrV4,
    /// The endpoint the client is pinned to.
    pub endpoint: SocketAddrV4,
    /// Lifetime left at the export, ms.
    pub expires_in_ms: u64,
}

/// The service NAT state of a datapath.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtSnapshot {
    /// The live connections.
    pub conns: Vec<ConnRecord>,
    /// The live affinities.
    pub affinities: Vec<AffinityRecord>,
    /// The SNAT port allocator's cursor.
    pub snat_cursor: u32,
}

/// What an import did with the records it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtImport {
    /// Connections installed.
    pub conns: usize,
    /// Affinities installed.
    pub affinities: usize,
    /// Records that make no sense (corrupted or hand-edited), skipped.
    pub invalid: usize,
    /// Records whose client, service port or endpoint no longer exists, skipped.
    pub stale: usize,
    /// Records whose lifetime ran out while the snapshot lay on disk, skipped.
    pub expired: usize,
    /// Records clashing with a connection or affinity already installed, skipped.
    pub duplicate: usize,
    /// Records over the table's bound, skipped.
    pub over_limit: usize,
}

impl CtImport {
    /// Records skipped, for whatever reason.
    pub fn skipped(&self) -> usize {
        self.invalid + self.stale + self.expired + self.duplicate + self.over_limit
    }
}

/// Why a record is not installed.
enum Skip {
    Invalid,
    Stale,
    Expired,
}

/// A unicast host address: not 0.0.0.0, broadcast, multicast or loopback.
fn unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

/// The service NAT state of a datapath and the configuration its records are checked
/// against: what an export reads and an import writes.
pub(crate) struct NatState<'a> {
    pub(crate) config: &'a NodeConfig,
    pub(crate) ct: &'a Conntrack,
    pub(crate) lb: &'a Balancer,
}

impl NatState<'_> {
    /// A counter that moves whenever the service NAT state changes in a way worth saving
    /// (a connection created, removed or changing state, a new affinity). Lifetime refreshes
    /// do not move it.
    pub(crate) fn generation(&self) -> u64 {
        self.ct.generation().wrapping_add(self.lb.generation())
    }

    /// The live service NAT state at `now_ms` (lifetimes relative to it).
    pub(crate) fn export(&self, now_ms: u64) -> CtSnapshot {
        let conns = self
            .ct
            .live(now_ms)
            .into_iter()
            .map(|c| ConnRecord {
                proto: c.orig.proto,
                client: SocketAddrV4::new(c.orig.src, c.orig.sport),
                service: SocketAddrV4::new(c.orig.dst, c.orig.dport),
                endpoint: SocketAddrV4::new(c.reply.src, c.reply.sport),
                reply_to: SocketAddrV4::new(c.reply.dst, c.reply.dport),
                state: c.state(),
                assured: c.assured(),
                expires_in_ms: c.expires_ms().saturating_sub(now_ms),
            })
            .filter(|r| r.expires_in_ms > 0)
            .collect();
        let affinities = self
            .lb
            .pins(now_ms)
            .into_iter()
            .map(|((client, (vip, port, proto)), (ep, exp))| AffinityRecord {
                client,
                proto,
                service: SocketAddrV4::new(vip, port),
                endpoint: ep,
                expires_in_ms: exp.saturating_sub(now_ms),
            })
            .collect();
        CtSnapshot {
            conns,
            affinities,
            snat_cursor: self.ct.snat_cursor(),
        }
    }

    /// Installs the records of `snap`, taken `age_ms` ago, at `now_ms`, checked against
    /// `tables`. Bad, stale, expired, duplicate and surplus records are skipped and counted;
    /// nothing already in the table is evicted.
    pub(crate) fn import(
        &self,
        tables: &Tables,
        snap: &CtSnapshot,
        age_ms: u64,
        now_ms: u64,
    ) -> CtImport {
        let mut out = CtImport::default();
        let count = |out: &mut CtImport, skip: Skip| match skip {
            Skip::Invalid => out.invalid += 1,
            Skip::Stale => out.stale += 1,
            Skip::Expired => out.expired += 1,
        };
        // The ones that matter most first, should the bound be smaller than the snapshot.
        let mut order: Vec<&ConnRecord> = snap.conns.iter().collect();
        order.sort_by_key(|r| (!r.assured, u64::MAX - r.expires_in_ms));
        for r in order {
            match self.check_conn(tables, r, age_ms) {
                Ok((orig, reply, left)) => {
                    let exp = now_ms.saturating_add(left);
                    match self
                        .ct
                        .restore(orig, reply, r.state, r.assured, exp, now_ms)
                    {
                        Ok(()) => out.conns += 1,
                        Err(RestoreSkip::Duplicate) => out.duplicate += 1,
                        Err(RestoreSkip::Full) => out.over_limit += 1,
                    }
                }
                Err(skip) => count(&mut out, skip),
            }
        }
        let mut order: Vec<&AffinityRecord> = snap.affinities.iter().collect();
        order.sort_by_key(|r| u64::MAX - r.expires_in_ms);
        for r in order {
            match self.check_pin(tables, r, age_ms) {
                Ok((key, ep, left)) => {
                    match self.lb.restore((key, (ep, now_ms.saturating_add(left)))) {
                        Ok(()) => out.affinities += 1,
                        Err(RestoreSkip::Duplicate) => out.duplicate += 1,
                        Err(RestoreSkip::Full) => out.over_limit += 1,
                    }
                }
                Err(skip) => count(&mut out, skip),
            }
        }
        self.ct.set_snat_cursor(snap.snat_cursor);
        out
    }

    /// Checks a connection record: its tuples and the lifetime left after `age_ms`.
    fn check_conn(
        &self,
        tables: &Tables,
        r: &ConnRecord,
        age_ms: u64,
    ) -> Result<(Tuple, Tuple, u64), Skip> {
        let cfg = &self.config;
        let addrs = [r.client, r.service, r.endpoint, r.reply_to];
        let hairpin = *r.reply_to.ip() == cfg.gateway && *r.endpoint.ip() == *r.client.ip();
        let reply_ok = if *r.reply_to.ip() == *r.client.ip() {
            r.reply_to.port() == r.client.port() || Conntrack::is_snat_port(r.reply_to.port())
        } else {
            hairpin && Conntrack::is_snat_port(r.reply_to.port())
        };
        let valid = r.state.proto() == r.proto
            && r.state.assured_in().is_none_or(|a| a == r.assured)
            && (1..=r.state.timeout_ms()).contains(&r.expires_in_ms)
            && addrs.iter().all(|a| unicast(*a.ip()))
            && r.service.port() != 0
            && r.endpoint.port() != 0
            && cfg.pod_cidr.contains(*r.client.ip())
            && reply_ok;
        if !valid {
            return Err(Skip::Invalid);
        }
        if r.service == r.endpoint {
            // A direct connection (no VIP): its destination must still be an endpoint.
            let client_here = tables.port_by_ip(*r.client.ip()).is_some();
            if !client_here || !tables.services().is_endpoint(r.endpoint, r.proto) {
                return Err(Skip::Stale);
            }
        } else {
            self.check_service(tables, r.proto, r.client, r.service, r.endpoint)?;
        }
        let left = r.expires_in_ms.saturating_sub(age_ms);
        if left == 0 {
            return Err(Skip::Expired);
        }
        let orig = Tuple {
            proto: r.proto,
            src: *r.client.ip(),
            sport: r.client.port(),
            dst: *r.service.ip(),
            dport: r.service.port(),
        };
        let reply = Tuple {
            proto: r.proto,
            src: *r.endpoint.ip(),
            sport: r.endpoint.port(),
            dst: *r.reply_to.ip(),
            dport: r.reply_to.port(),
        };
        Ok((orig, reply, left))
    }

    /// Checks an affinity record: the pin and the lifetime left after `age_ms`.
    fn check_pin(
        &self,
        tables: &Tables,
        r: &AffinityRecord,
        age_ms: u64,
    ) -> Result<(PinKey, SocketAddrV4, u64), Skip> {
        let valid = unicast(r.client)
            && unicast(*r.service.ip())
            && unicast(*r.endpoint.ip())
            && r.expires_in_ms > 0
            && r.service.port() != 0
            && r.endpoint.port() != 0
            && self.config.pod_cidr.contains(r.client);
        if !valid {
            return Err(Skip::Invalid);
        }
        let client = SocketAddrV4::new(r.client, 0);
        let svc = self.check_service(tables, r.proto, client, r.service, r.endpoint)?;
        // The service's affinity may have been shortened or removed meanwhile.
        let Some(timeout) = svc else {
            return Err(Skip::Stale);
        };
        let left = r.expires_in_ms.min(timeout).saturating_sub(age_ms);
        if left == 0 {
            return Err(Skip::Expired);
        }
        let key = (r.client, (*r.service.ip(), r.service.port(), r.proto));
        Ok((key, r.endpoint, left))
    }

    /// Checks that `client` is a local pod and the service port exists with `endpoint`;
    /// returns the port's affinity timeout.
    fn check_service(
        &self,
        tables: &Tables,
        proto: L4Proto,
        client: SocketAddrV4,
        service: SocketAddrV4,
        endpoint: SocketAddrV4,
    ) -> Result<Option<u64>, Skip> {
        if tables.port_by_ip(*client.ip()).is_none() {
            return Err(Skip::Stale);
        }
        match tables
            .services()
            .port(&(*service.ip(), service.port(), proto))
        {
            Some(s) if s.endpoints.contains(&endpoint) => Ok(s.affinity_ms),
            _ => Err(Skip::Stale),
        }
    }
}

/// An affinity's key: (client, service port).
type PinKey = (Ipv4Addr, ServiceKey);
