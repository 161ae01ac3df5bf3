//! `observe`: the daemon's flow log (see `vswitch_datapath::flow_log`), in the spirit of
//! Hubble's flow records.
//!
//! [`crate::Request::Observe`] is answered by one [`crate::Response::Flows`] line: the last
//! `last` events of the ring that match the filter, oldest first. With `follow` the
//! connection stays open after it and carries one [`FlowRecord`] JSON line per new matching
//! event, until the client closes its end; a line `{"lost":N}` ([`FollowNote`]) tells that
//! N events were skipped because the client did not keep up.

use serde::{Deserialize, Serialize};

/// Most events one `observe` answer carries.
pub const MAX_LAST: usize = 100_000;

/// Which events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A new connection, forwarded.
    Forwarded,
    /// A dropped frame.
    Dropped,
    /// A tracked connection removed (closed, or idle past its timeout).
    Ended,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Forwarded => "FORWARDED",
            Verdict::Dropped => "DROPPED",
            Verdict::Ended => "ENDED",
        })
    }
}

/// What `observe` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserveSpec {
    /// How many of the latest matching events to answer with (default 20; 0 with `follow`
    /// for new events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<usize>,
    /// Keep the connection open and stream new events.
    #[serde(default)]
    pub follow: bool,
    /// Only events of this verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Only events from or to this pod, `NAMESPACE/NAME` (or `NAME` in `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Only events from or to this IPv4 address (also a Service's VIP or an endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// A pod, as a flow names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowPod {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The node it runs on.
    pub node: String,
}

/// One end of a flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowEndpoint {
    /// The IPv4 address (absent when the frame was not IPv4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The port (TCP, UDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The pod with that address, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<FlowPod>,
}

/// A Service a flow went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowService {
    /// `NAMESPACE/NAME`, when the VIP is still a known Service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `VIP:PORT`.
    pub vip: String,
    /// The endpoint chosen, `IP:PORT`.
    pub endpoint: String,
    /// The endpoint's pod, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_pod: Option<FlowPod>,
}

/// One flow event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Wall-clock time, RFC 3339 with milliseconds, UTC.
    pub time: String,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The node that saw it.
    pub node: String,
    /// Forwarded (a new connection), dropped or ended.
    pub verdict: Verdict,
    /// A drop's reason, as `stats` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    /// An end's cause: `closed` (FIN or RST seen) or `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Where the frame came from: `pod`, `tunnel` (a peer's) or absent (a connection's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// The peer node it came from or went to (tunnel), or the tunnel's unknown sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// `tcp`, `udp`, `icmp`, another protocol's number, or absent (not IPv4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The source.
    pub source: FlowEndpoint,
    /// The destination (a Service's VIP for a service connection).
    pub destination: FlowEndpoint,
    /// TCP flags, e.g. `SYN`, `SYN,ACK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// The Service, for a service connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<FlowService>,
    /// Drop events the rate limit suppressed just before this one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suppressed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The answer to `observe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowsReport {
    /// The matching events, oldest first.
    pub flows: Vec<FlowRecord>,
    /// The ring's size (`vswitchd --flow-log-size`); 0 when the flow log is off.
    pub capacity: usize,
    /// Events seen since the daemon started.
    pub total: u64,
    /// Drop events suppressed by the rate limit since the daemon started.
    pub suppressed: u64,
    /// Events lost before reaching the ring (the datapath's queue was full).
    pub lost: u64,
}

/// A line of a followed stream that is not a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowNote {
    /// Events skipped because the client did not keep up.
    pub lost: u64,
}

/// TCP flags as Hubble prints them: `SYN`, `SYN,ACK`, ...
pub fn tcp_flags_text(flags: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x01, "FIN"),
        (0x02, "SYN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// An [`ObserveSpec`]'s filter, checked ([`check`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this verdict.
    pub verdict: Option<Verdict>,
    /// Only flows from or to this pod (namespace, name).
    pub pod: Option<(String, String)>,
    /// Only flows from or to this address.
    pub ip: Option<std::net::Ipv4Addr>,
}

impl Filter {
    /// True when `r` passes the filter. A pod or address matches the source, the
    /// destination, and a service connection's endpoint.
    pub fn matches(&self, r: &FlowRecord) -> bool {
        if self.verdict.is_some_and(|v| v != r.verdict) {
            return false;
        }
        let svc = r.service.as_ref();
        if let Some((ns, name)) = &self.pod {
            let is = |p: Option<&FlowPod>| p.is_some_and(|p| &p.namespace == ns && &p.name == name);
            if !(is(r.source.pod.as_ref())
                || is(r.destination.pod.as_ref())
                || is(svc.and_then(|s| s.endpoint_pod.as_ref())))
            {
                return false;
            }
        }
        if let Some(ip) = self.ip {
            let ip = ip.to_string();
            let host = |a: &str| a.split(':').next() == Some(ip.as_str());
            if !(r.source.ip.as_deref() == Some(&ip)
                || r.destination.ip.as_deref() == Some(&ip)
                || svc.is_some_and(|s| host(&s.endpoint) || host(&s.vip)))
            {
                return false;
            }
        }
        true
    }
}

/// Checks an `observe` request: `last` at most [`MAX_LAST`], `pod` a `[NAMESPACE/]NAME` of
/// Kubernetes names, `ip` an IPv4 address. Errors name the field.
pub fn check(spec: &ObserveSpec) -> Result<Filter, crate::validate::Invalid> {
    use crate::validate::{self, Invalid};
    if spec.last.is_some_and(|n| n > MAX_LAST) {
        return Err(Invalid {
            field: "last",
            message: format!("at most {MAX_LAST} events"),
        });
    }
    let pod = match &spec.pod {
        None => None,
        Some(p) => {
            let (ns, name) = p.split_once('/').unwrap_or(("default", p.as_str()));
            validate::k8s_name("pod", ns)?;
            validate::k8s_name("pod", name)?;
            Some((ns.to_string(), name.to_string()))
        }
    };
    let ip = spec
        .ip
        .as_deref()
        .map(|s| validate::ipv4("ip", s))
        .transpose()?;
    Ok(Filter {
        verdict: spec.verdict,
        pod,
        ip,
    })
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_flags_print_as_people_read_them() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(tcp_flags_text(0x12), "SYN,ACK");
        assert_eq!(tcp_flags_text(0), "");
    }

    #[test]
    fn the_request_round_trips() {
        let req = crate::Request::Observe(ObserveSpec {
            last: Some(5),
            follow: true,
            verdict: Some(Verdict::Dropped),
            pod: Some("default/a".into()),
            ip: None,
        });
        let line = crate::encode_request(&req);
        assert!(line.contains(r#""op":"observe""#), "{line}");
        assert!(line.contains(r#""verdict":"dropped""#), "{line}");
        assert_eq!(crate::decode_request(line.as_bytes()).unwrap(), req);
    }
}
