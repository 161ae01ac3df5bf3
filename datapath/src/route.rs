//! L3: frames a pod sends to the router MAC, routed by IPv4 destination.
//!
//! - the gateway or the VTEP address: the local host stack (ICMP echo only);
//! - the cluster DNS address, UDP port 53: answered by the switch ([`crate::dns`]);
//! - TTL 1 or less: dropped, answered with ICMP time exceeded;
//! - a service address (service CIDR or a VIP): load balanced ([`crate::lb`]);
//! - a local pod: MACs rewritten (router -> pod), TTL decremented;
//! - another node's pod subnet: into the tunnel ([`crate::vxlan`]);
//! - anything else (including unused addresses of our own subnet): no route.

use crate::counters::DropReason;
use crate::icmp;
use crate::switch::forward_l3;
use crate::tables::PortEntry;
use crate::wire::Ipv4Info;
use crate::{Datapath, PacketBuf, Tables, Verdict};
use std::net::Ipv4Addr;

impl Datapath {
    pub(crate) fn route_from_port(
        &self,
        tables: &Tables,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
        now_ms: u64,
    ) -> Result<Verdict, DropReason> {
        let cfg = &self.config;
        if ip.dst == cfg.gateway || ip.dst == cfg.vtep_ip {
            if !icmp::is_echo_request(pkt.frame(), ip) {
                return Err(DropReason::LocalUnsupported);
            }
            let requester = port.mac;
            icmp::echo_reply(pkt, ip, cfg.router_mac, requester)?;
            return Ok(self.to_port(port, pkt));
        }
        if Some(ip.dst) == cfg.dns_ip && crate::dns::is_query(pkt.frame(), ip) {
            return self.dns_from_port(tables, port, pkt, ip);
        }
        if ip.ttl <= 1 {
            return self.reject(
                port,
                pkt,
                ip,
                DropReason::TtlExceeded,
                icmp::ICMP_TIME_EXCEEDED,
                0,
                0,
            );
        }
        if self.is_service_ip(tables, ip.dst) {
            return self.service_from_port(tables, port, pkt, ip, now_ms);
        }
        if let Some(to) = tables.port_by_ip(ip.dst) {
            if to.id == port.id {
                return Err(DropReason::Hairpin);
            }
            forward_l3(pkt, ip, cfg.router_mac, to.mac);
            return Ok(self.to_port(to, pkt));
        }
        if cfg.pod_cidr.contains(ip.dst) {
            return Err(DropReason::NoRoute);
        }
        match tables.peer_for_ip(ip.dst) {
            Some(peer) => self.to_peer(port, peer, pkt, ip),
            None => Err(DropReason::NoRoute),
        }
    }

    /// Counts `reason` as a drop of a frame from `port`, then turns the frame into an ICMP
    /// error from the gateway back to the pod when one may be sent (`ToPort(port)`), else
    /// just drops it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reject(
        &self,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
        reason: DropReason,
        ty: u8,
        code: u8,
        rest: u32,
    ) -> Result<Verdict, DropReason> {
        let gw = self.config.gateway;
        self.reject_from(port, pkt, ip, gw, reason, ty, code, rest)
    }

    /// [`Datapath::reject`] with the ICMP error sent from `src` (a VIP, for instance).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reject_from(
        &self,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
        src: Ipv4Addr,
        reason: DropReason,
        ty: u8,
        code: u8,
        rest: u32,
    ) -> Result<Verdict, DropReason> {
        let cfg = &self.config;
        if !icmp::icmp_error(pkt, ip, cfg.router_mac, src, ty, code, rest) {
            return Err(reason);
        }
        self.counters.count_drop(reason);
        port.counters.rx_drop();
        Ok(self.to_port(port, pkt))
    }
}
