//! The host stack's cluster DNS (stage [`Stage::HostStack`](super::Stage::HostStack)): UDP queries from pods to `dns_ip:53` are answered by the switch in place
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
//!   sends the message ([`crate::dns_query_payload`]) to the upstream resolver and turns its
//!   response into the pod's datagram with [`Datapath::dns_upstream_reply`]
//!   ([`crate::dns_reply_frame`]). Otherwise REFUSED, counted as [`DropReason::DnsRefused`] (not
//!   served).
//! - Not a DNS query (does not parse, or is a response): dropped, [`DropReason::DnsMalformed`].
//!   A query that parses with other than one question: FORMERR, counted the same way. An
//!   opcode other than QUERY: NOTIMP, counted as [`DropReason::DnsRefused`].
//! - Answers fit 512 bytes, or the client's EDNS payload size; a bigger one is truncated (TC).
//!
//! The host-stack path allocates (hickory's messages); the forwarding path is untouched.
//! Deciding to forward parses the query (allocates); building the reply does not.

use super::trace::{Live, Mode, Step};
use super::Stage;
use crate::counters::{Direction, DropReason};
use crate::state::tables::{PortEntry, PortId, Tables};
use crate::wire::buf::PacketBuf;
use crate::wire::dns::{dns_reply_frame, UDP_HDR};
use crate::wire::{self, Ipv4Info};
use crate::{Datapath, Verdict};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddrV4};

/// TTL of the answers, in seconds.
const TTL: u32 = 5;
/// The classic UDP message limit.
const UDP_LIMIT: usize = 512;
/// The EDNS payload size the switch advertises (and the most it sends).
const EDNS_PAYLOAD: u16 = 1232;

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

/// Answers the DNS query in `pkt` (checked with [`crate::wire::dns::is_query`]) in place: the reply goes
/// from `dns_ip:53` and the router MAC back to the pod, `ToPort(port)`. A name the
/// switch does not serve becomes [`Verdict::DnsForward`] when forwarding is on (the frame
/// untouched).
pub(super) fn dns_from_port<M: Mode>(
    dp: &Datapath,
    m: &mut M,
    tables: &Tables,
    port: &PortEntry,
    pkt: &mut PacketBuf,
    ip: &Ipv4Info,
) -> Result<Verdict, DropReason> {
    m.enter(Stage::HostStack);
    let f = pkt.frame();
    let l4 = ip.l4_off();
    let udp_len = usize::from(wire::be16(f, l4 + 4)?);
    if udp_len < UDP_HDR || udp_len > ip.total_len - ip.hlen {
        return Err(DropReason::DnsMalformed);
    }
    let query = f
        .get(l4 + UDP_HDR..l4 + udp_len)
        .ok_or(DropReason::DnsMalformed)?;
    let client = SocketAddrV4::new(ip.src, wire::be16(f, l4)?);
    let (answer, counted) = match dns_answer(dp, tables, query)? {
        Outcome::Answer(answer, counted) => (answer, counted),
        Outcome::Forward => {
            m.note(|| Step::DnsForward);
            return Ok(Verdict::DnsForward {
                port: port.id,
                client,
            });
        }
    };
    let server = dp.config.dns_ip.unwrap_or(ip.dst);
    let router = dp.config.router_mac;
    if !dns_reply_frame(pkt, router, port.mac, server, client, &answer) {
        return Err(DropReason::DnsMalformed);
    }
    if let Some(reason) = counted {
        dp.count_reject(m, port, reason);
    }
    m.note(|| Step::Answer {
        what: "cluster DNS answer",
    });
    Ok(dp.to_port(m, port, pkt))
}

/// [`Datapath::dns_upstream_reply`].
pub(super) fn dns_upstream_reply(
    dp: &Datapath,
    tables: &Tables,
    port: PortId,
    client: SocketAddrV4,
    response: &[u8],
    pkt: &mut PacketBuf,
) -> Verdict {
    let reason = DropReason::DnsUpstreamFailed;
    let (Some(to), Some(server)) = (
        tables.port(port).filter(|p| p.ip == *client.ip()),
        dp.config.dns_ip,
    ) else {
        dp.counters.count_drop(reason, Direction::Egress);
        return Verdict::Drop(reason);
    };
    let router = dp.config.router_mac;
    if response.len() < 12 || !dns_reply_frame(pkt, router, to.mac, server, client, response) {
        pkt.reset();
        dp.counters.count_drop(reason, Direction::Egress);
        return Verdict::Drop(reason);
    }
    dp.to_port(&mut Live, to, pkt)
}

/// The answer to the DNS message `q`, and the reason to count when it is a refusal or
/// an error. `Err` when `q` is not a query.
/// `Outcome::Forward` instead of REFUSED for a name the switch does not serve when
/// forwarding is on.
fn dns_answer(dp: &Datapath, tables: &Tables, q: &[u8]) -> Result<Outcome, DropReason> {
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
    } else if let [question] = req.queries.as_slice() {
        resp.add_query(question.clone());
        let resolved = if question.query_class() == DNSClass::IN {
            resolve(dp, tables, question.name())
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
            Resolved::Refused if dp.config.dns_forward => return Ok(Outcome::Forward),
            Resolved::Refused => {
                resp.metadata.response_code = ResponseCode::Refused;
                counted = Some(DropReason::DnsRefused);
            }
        }
    } else {
        resp.metadata.response_code = ResponseCode::FormErr;
        counted = Some(DropReason::DnsMalformed);
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
fn resolve(dp: &Datapath, tables: &Tables, name: &Name) -> Resolved {
    let labels: Vec<String> = name
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let domain: Vec<String> = dp
        .config
        .cluster_domain
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let svc = tables.services();
    let found = |vip: Option<Ipv4Addr>| vip.map_or(Resolved::NxDomain, Resolved::Vip);
    let in_domain = labels.strip_suffix(domain.as_slice());
    if let Some(rest) = in_domain.filter(|_| !domain.is_empty()) {
        return match rest {
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
