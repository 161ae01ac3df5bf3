//! The cluster DNS: UDP queries from pods to `dns_ip:53` are answered by the switch in place
//! (the DNS wire format is hickory-proto's), from the service names of the current tables.
//!
//! - `A` queries for `SVC.NS.svc.DOMAIN`, `SVC.NS.svc`, `SVC.NS` and bare `SVC` (the service
//!   of that name in namespace `default`, else the only one of that name) answer the VIP,
//!   TTL 5 s, authoritative. Names are case-insensitive (the question is echoed as asked);
//!   a trailing dot is optional. `ANY` answers like `A`; other types of a known name get
//!   NOERROR without answers.
//! - Other names under the cluster domain: NXDOMAIN.
//! - Everything else: when forwarding is on ([`crate::NodeConfig::dns_forward`], `vswitchd
//!   --dns-upstream`), [`Verdict::DnsForward`] with the query frame untouched: the shell
//!   sends the message ([`dns_query_payload`]) to the upstream resolver and turns its
//!   response into the pod's datagram with [`Datapath::dns_upstream_reply`]
//!   ([`dns_reply_frame`]). Otherwise REFUSED, counted as [`DropReason::DnsRefused`] (not
//!   served).
//! - Not a DNS query (does not parse, or is a response): dropped, [`DropReason::DnsMalformed`].
//!   A query that parses with other than one question: FORMERR, counted the same way. An
//!   opcode other than QUERY: NOTIMP, counted as [`DropReason::DnsRefused`].
//! - Answers fit 512 bytes, or the client's EDNS payload size; a bigger one is truncated (TC).
//!
//! The host-stack path allocates (hickory's messages); the forwarding path is untouched.
//! Deciding to forward parses the query (allocates); building the reply does not.

use crate::counters::DropReason;
use crate::icmp;
use crate::tables::PortEntry;
use crate::types::Mac;
use crate::wire::{self, Ipv4Info, ETH_LEN, PROTO_UDP};
use crate::{Datapath, PacketBuf, PortId, Tables, Verdict};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The DNS port.
pub(crate) const DNS_PORT: u16 = 53;
/// TTL of the answers, in seconds.
const TTL: u32 = 5;
/// The classic UDP message limit.
const UDP_LIMIT: usize = 512;
/// The EDNS payload size the switch advertises (and the most it sends).
const EDNS_PAYLOAD: u16 = 1232;
const UDP_HDR: usize = 8;

/// True when the packet is an unfragmented UDP datagram to port 53 with a complete header.
pub(crate) fn is_query(f: &[u8], ip: &Ipv4Info) -> bool {
    ip.proto == PROTO_UDP
        && !ip.is_fragment()
        && ip.total_len >= ip.hlen + UDP_HDR
        && wire::be16(f, ip.l4_off() + 2) == DNS_PORT
}

/// What a name resolves to.
#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    Vip(Ipv4Addr),
    NxDomain,
    Refused,
}

/// What the switch does with a query.
enum Outcome {
    /// Answer with this message; count the reason when there is one.
    Answer(Vec<u8>, Option<DropReason>),
    /// Hand it to the shell's upstream forwarder.
    Forward,
}

/// The DNS message of a query frame (Ethernet, IPv4 without fragmentation, UDP to port 53):
/// what the shell sends upstream for a [`Verdict::DnsForward`]. `None` when the frame is not
/// such a datagram or its UDP length does not fit.
pub fn dns_query_payload(frame: &[u8]) -> Option<&[u8]> {
    let ip = Ipv4Info::parse(frame, ETH_LEN)?;
    if !is_query(frame, &ip) {
        return None;
    }
    let l4 = ip.l4_off();
    let udp_len = usize::from(wire::be16(frame, l4 + 4));
    if udp_len < UDP_HDR || udp_len > ip.total_len - ip.hlen {
        return None;
    }
    frame.get(l4 + UDP_HDR..l4 + udp_len)
}

/// Builds in `pkt` (replacing its frame) the datagram carrying the DNS message `payload`
/// from the cluster DNS to a pod: Ethernet `router_mac` -> `pod_mac`, IPv4 `server` ->
/// `client` (TTL 64, no fragmentation), UDP 53 -> `client`'s port, IPv4 and UDP checksums
/// complete, vnet header [`VnetHdr::default`](crate::VnetHdr). False (and `pkt` unusable)
/// when the datagram would exceed 65535 bytes.
pub fn dns_reply_frame(
    pkt: &mut PacketBuf,
    router_mac: Mac,
    pod_mac: Mac,
    server: Ipv4Addr,
    client: SocketAddrV4,
    payload: &[u8],
) -> bool {
    let udp_len = UDP_HDR + payload.len();
    let total = 20 + udp_len;
    if total > usize::from(u16::MAX) {
        return false;
    }
    pkt.reset();
    if !pkt.set_len(ETH_LEN + total) {
        return false;
    }
    let f = pkt.frame_mut();
    wire::set_eth_addrs(f, router_mac, pod_mac);
    wire::put16(f, wire::ETH_TYPE, wire::ETHERTYPE_IPV4);
    icmp::write_ipv4(f, ETH_LEN, 0, total, 0, PROTO_UDP, server, *client.ip());
    let u = ETH_LEN + 20;
    wire::put16(f, u, DNS_PORT);
    wire::put16(f, u + 2, client.port());
    wire::put16(f, u + 4, udp_len as u16);
    wire::put16(f, u + 6, 0);
    wire::put(f, u + UDP_HDR, payload);
    let sum = wire::pseudo_header_sum(server, *client.ip(), PROTO_UDP, udp_len);
    let mut c = !wire::csum_fold(wire::csum_add(sum, f.get(u..).unwrap_or_default()));
    if c == 0 {
        c = 0xffff;
    }
    wire::put16(f, u + 6, c);
    true
}

impl Datapath {
    /// Answers the DNS query in `pkt` (checked with [`is_query`]) in place: the reply goes
    /// from `dns_ip:53` and the router MAC back to the pod, `ToPort(port)`. A name the
    /// switch does not serve becomes [`Verdict::DnsForward`] when forwarding is on (the frame
    /// untouched).
    pub(crate) fn dns_from_port(
        &self,
        tables: &Tables,
        port: &PortEntry,
        pkt: &mut PacketBuf,
        ip: &Ipv4Info,
    ) -> Result<Verdict, DropReason> {
        let f = pkt.frame();
        let l4 = ip.l4_off();
        let udp_len = usize::from(wire::be16(f, l4 + 4));
        if udp_len < UDP_HDR || udp_len > ip.total_len - ip.hlen {
            return Err(DropReason::DnsMalformed);
        }
        let query = f
            .get(l4 + UDP_HDR..l4 + udp_len)
            .ok_or(DropReason::DnsMalformed)?;
        let client = SocketAddrV4::new(ip.src, wire::be16(f, l4));
        let (answer, counted) = match self.dns_answer(tables, query)? {
            Outcome::Answer(answer, counted) => (answer, counted),
            Outcome::Forward => {
                return Ok(Verdict::DnsForward {
                    port: port.id,
                    client,
                })
            }
        };
        let server = self.config.dns_ip.unwrap_or(ip.dst);
        let router = self.config.router_mac;
        if !dns_reply_frame(pkt, router, port.mac, server, client, &answer) {
            return Err(DropReason::DnsMalformed);
        }
        if let Some(reason) = counted {
            self.counters.count_drop(reason);
            port.counters.rx_drop();
        }
        Ok(self.to_port(port, pkt))
    }

    /// Turns the upstream resolver's `response` (its id already restored to the pod's) to a
    /// query that [`Verdict::DnsForward`] handed out into the datagram for the pod, in `pkt`
    /// (see [`dns_reply_frame`]): `ToPort(port)`, counted as `tx` on the port. When the port
    /// is gone (or now has another address), the response is shorter than a DNS header or
    /// too big, or the node has no DNS address: dropped, counted as
    /// [`DropReason::DnsUpstreamFailed`].
    pub fn dns_upstream_reply(
        &self,
        tables: &Tables,
        port: PortId,
        client: SocketAddrV4,
        response: &[u8],
        pkt: &mut PacketBuf,
    ) -> Verdict {
        let reason = DropReason::DnsUpstreamFailed;
        let (Some(to), Some(server)) = (
            tables.port(port).filter(|p| p.ip == *client.ip()),
            self.config.dns_ip,
        ) else {
            self.counters.count_drop(reason);
            return Verdict::Drop(reason);
        };
        let router = self.config.router_mac;
        if response.len() < 12 || !dns_reply_frame(pkt, router, to.mac, server, client, response) {
            pkt.reset();
            self.counters.count_drop(reason);
            return Verdict::Drop(reason);
        }
        self.to_port(to, pkt)
    }

    /// The answer to the DNS message `q`, and the reason to count when it is a refusal or
    /// an error. `Err` when `q` is not a query.
    /// `Outcome::Forward` instead of REFUSED for a name the switch does not serve when
    /// forwarding is on.
    fn dns_answer(&self, tables: &Tables, q: &[u8]) -> Result<Outcome, DropReason> {
        let req = Message::from_vec(q).map_err(|_| DropReason::DnsMalformed)?;
        if req.metadata.message_type != MessageType::Query {
            return Err(DropReason::DnsMalformed);
        }
        let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.checking_disabled = req.metadata.checking_disabled;
        let mut limit = UDP_LIMIT;
        if let Some(e) = &req.edns {
            limit = usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD));
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            resp.set_edns(edns);
        }
        let mut counted = None;
        if req.metadata.op_code != OpCode::Query {
            resp.metadata.response_code = ResponseCode::NotImp;
            counted = Some(DropReason::DnsRefused);
        } else if req.queries.len() != 1 {
            resp.metadata.response_code = ResponseCode::FormErr;
            counted = Some(DropReason::DnsMalformed);
        } else {
            let question = &req.queries[0];
            resp.add_query(question.clone());
            let resolved = if question.query_class() == DNSClass::IN {
                self.resolve(tables, question.name())
            } else {
                Resolved::Refused
            };
            match resolved {
                Resolved::Vip(vip) => {
                    resp.metadata.authoritative = true;
                    if matches!(question.query_type(), RecordType::A | RecordType::ANY) {
                        let name = question.name().clone();
                        resp.add_answer(Record::from_rdata(name, TTL, RData::A(A(vip))));
                    }
                }
                Resolved::NxDomain => {
                    resp.metadata.authoritative = true;
                    resp.metadata.response_code = ResponseCode::NXDomain;
                }
                Resolved::Refused if self.config.dns_forward => return Ok(Outcome::Forward),
                Resolved::Refused => {
                    resp.metadata.response_code = ResponseCode::Refused;
                    counted = Some(DropReason::DnsRefused);
                }
            }
        }
        let mut bytes = resp.to_vec().map_err(|_| DropReason::DnsMalformed)?;
        if bytes.len() > limit {
            bytes = resp
                .truncate()
                .to_vec()
                .map_err(|_| DropReason::DnsMalformed)?;
        }
        Ok(Outcome::Answer(bytes, counted))
    }

    /// Resolves `name` against the service names of `tables`.
    fn resolve(&self, tables: &Tables, name: &Name) -> Resolved {
        let labels: Vec<String> = name
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        let domain: Vec<String> = self
            .config
            .cluster_domain
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let svc = tables.services();
        let found = |vip: Option<Ipv4Addr>| vip.map_or(Resolved::NxDomain, Resolved::Vip);
        if !domain.is_empty() && labels.ends_with(&domain) {
            return match &labels[..labels.len() - domain.len()] {
                [name, ns, s] if s == "svc" => found(svc.lookup(name, ns)),
                _ => Resolved::NxDomain,
            };
        }
        let vip = match labels.as_slice() {
            [name] => svc.lookup_bare(name),
            [name, ns] => svc.lookup(name, ns),
            [name, ns, s] if s == "svc" => svc.lookup(name, ns),
            _ => None,
        };
        vip.map_or(Resolved::Refused, Resolved::Vip)
    }
}
