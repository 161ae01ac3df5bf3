//! Stage [`Stage::Route`](super::Stage::Route), L3: frames a pod sends to the router MAC,
//! routed by IPv4 destination ([`Route`]).
//!
//! - the gateway or the VTEP address: the local host stack (ICMP echo only);
//! - the cluster DNS address, UDP port 53: answered by the switch (`pipeline/dns.rs`);
//! - TTL 1 or less: dropped, answered with ICMP time exceeded;
//! - a service address (service CIDR or a VIP): load balanced (`pipeline/services.rs`);
//! - a local pod: MACs rewritten (router -> pod), TTL decremented;
//! - another node's pod subnet: into the tunnel (`pipeline/tunnel.rs`);
//! - anything else (including unused addresses of our own subnet): no route.

use crate::counters::DropReason;
use crate::state::tables::{PeerEntry, PortEntry, Tables};
use crate::wire::{dns, icmp, Ipv4Info};
use crate::Datapath;
use std::net::Ipv4Addr;

/// Where a routed packet from a pod goes, in the order the checks are made.
pub(super) enum Route<'t> {
    /// The gateway or the VTEP address: an ICMP echo request for the host stack.
    Host,
    /// A query to the cluster DNS address, UDP port 53: the host stack's DNS.
    Dns,
    /// TTL 1 or less: answered with ICMP time exceeded.
    TtlExceeded,
    /// A service address (service CIDR or a VIP): the services stage.
    Service,
    /// A local pod.
    Local(&'t PortEntry),
    /// Another node's pod subnet: into the tunnel.
    Peer(&'t PeerEntry),
}

impl Route<'_> {
    /// The route's name in a trace.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Route::Host => "host",
            Route::Dns => "dns",
            Route::TtlExceeded => "ttl_exceeded",
            Route::Service => "service",
            Route::Local(_) => "local",
            Route::Peer(_) => "peer",
        }
    }
}

/// The route of the IPv4 packet `ip` (in `frame`) that `port` sent to the router MAC.
/// Errors: anything else for the gateway or VTEP address is
/// [`DropReason::LocalUnsupported`]; back to the sender, [`DropReason::Hairpin`]; an unused
/// address of our subnet or no peer's subnet, [`DropReason::NoRoute`].
pub(super) fn route<'t>(
    dp: &Datapath,
    tables: &'t Tables,
    port: &PortEntry,
    frame: &[u8],
    ip: &Ipv4Info,
) -> Result<Route<'t>, DropReason> {
    let cfg = &dp.config;
    if ip.dst == cfg.gateway || ip.dst == cfg.vtep_ip {
        if !icmp::is_echo_request(frame, ip) {
            return Err(DropReason::LocalUnsupported);
        }
        return Ok(Route::Host);
    }
    if Some(ip.dst) == cfg.dns_ip && dns::is_query(frame, ip) {
        return Ok(Route::Dns);
    }
    if ip.ttl <= 1 {
        return Ok(Route::TtlExceeded);
    }
    if is_service_ip(dp, tables, ip.dst) {
        return Ok(Route::Service);
    }
    if let Some(to) = tables.port_by_ip(ip.dst) {
        if to.id == port.id {
            return Err(DropReason::Hairpin);
        }
        return Ok(Route::Local(to));
    }
    if cfg.pod_cidr.contains(ip.dst) {
        return Err(DropReason::NoRoute);
    }
    tables
        .peer_for_ip(ip.dst)
        .map(Route::Peer)
        .ok_or(DropReason::NoRoute)
}

/// True when `dst` is service traffic: inside the service CIDR, or a VIP of the table.
fn is_service_ip(dp: &Datapath, tables: &Tables, dst: Ipv4Addr) -> bool {
    dp.config.service_cidr.is_some_and(|c| c.contains(dst)) || tables.services().is_vip(dst)
}
