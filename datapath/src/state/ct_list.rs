//! The connection table as an operator sees it (`vswitchctl conntrack list|flush`): one
//! [`ConnInfo`] per tracked connection and a [`ConnFilter`] over them (a Service's
//! addresses, a pod's address). Names are the control plane's business: it turns
//! `--service NS/NAME` into the Service's VIP ports and `--pod NS/NAME` into the pod's
//! address before it asks.

use crate::state::conntrack::{Conn, Conntrack};
use crate::state::ct_state::State;
use crate::wire::l4::L4Proto;
use std::net::{Ipv4Addr, SocketAddrV4};

/// One tracked connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// TCP or UDP.
    pub proto: L4Proto,
    /// The client, as it sent (source of the original direction).
    pub client: SocketAddrV4,
    /// The Service port it sent to, `VIP:PORT`.
    pub service: SocketAddrV4,
    /// The endpoint chosen (source of the reply direction).
    pub endpoint: SocketAddrV4,
    /// Where the endpoint answers (the client, or the SNAT address and port on hairpin).
    pub reply_to: SocketAddrV4,
    /// The connection's state.
    pub state: State,
    /// True once traffic went both ways (never evicted).
    pub assured: bool,
    /// Milliseconds left before it expires, unless a packet refreshes it.
    pub ttl_ms: u64,
}

impl ConnInfo {
    pub(crate) fn of(c: &Conn, now_ms: u64) -> ConnInfo {
        let (o, r) = (&c.orig, &c.reply);
        ConnInfo {
            proto: o.proto,
            client: SocketAddrV4::new(o.src, o.sport),
            service: SocketAddrV4::new(o.dst, o.dport),
            endpoint: SocketAddrV4::new(r.src, r.sport),
            reply_to: SocketAddrV4::new(r.dst, r.dport),
            state: c.state(),
            assured: c.assured(),
            ttl_ms: c.expires_ms().saturating_sub(now_ms),
        }
    }
}

/// Which connections a list or a flush is about. Empty fields match everything; given
/// fields must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnFilter {
    /// Service ports (`VIP`, port, protocol): the connection's original destination is one
    /// of them. `Some(empty)` matches nothing (a Service without ports).
    pub services: Option<Vec<(Ipv4Addr, u16, L4Proto)>>,
    /// A pod's address: the connection's client or its endpoint.
    pub pod: Option<Ipv4Addr>,
}

impl ConnFilter {
    /// True when `c` matches.
    pub fn matches(&self, c: &ConnInfo) -> bool {
        let svc = self.services.as_ref().is_none_or(|s| {
            s.iter().any(|&(vip, port, proto)| {
                c.service == SocketAddrV4::new(vip, port) && c.proto == proto
            })
        });
        let pod = self
            .pod
            .is_none_or(|p| *c.client.ip() == p || *c.endpoint.ip() == p);
        svc && pod
    }
}

/// The live connections matching `f`, oldest expiry first then by client.
pub(crate) fn list(ct: &Conntrack, f: &ConnFilter, now_ms: u64) -> Vec<ConnInfo> {
    let mut v: Vec<ConnInfo> = ct
        .live(now_ms)
        .iter()
        .map(|c| ConnInfo::of(c, now_ms))
        .filter(|c| f.matches(c))
        .collect();
    v.sort_by_key(|c| (c.service, c.client, c.proto == L4Proto::Udp));
    v
}

/// Removes the connections matching `f`; returns how many.
pub(crate) fn flush(ct: &Conntrack, f: &ConnFilter, now_ms: u64) -> usize {
    ct.remove_matching(|c| f.matches(&ConnInfo::of(c, now_ms)))
}
