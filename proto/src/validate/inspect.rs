//! The checks of `trace` and `conntrack` requests.

use super::{ipv4, k8s_name, mac, Invalid};
use crate::inspect::TraceSpec;
use std::net::Ipv4Addr;

/// The transport of a traced packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceProto {
    /// A TCP SYN.
    Tcp,
    /// A UDP datagram.
    Udp,
    /// An ICMP echo request.
    Icmp,
}

/// A checked [`TraceSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceTarget {
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port (0 for ICMP).
    pub dport: u16,
    /// Transport.
    pub proto: TraceProto,
    /// Forged source address.
    pub src: Option<Ipv4Addr>,
    /// Forged source MAC.
    pub src_mac: Option<[u8; 6]>,
}

/// Checks a trace request: pod and namespace names, `dst` as `IP[:PORT]`, the protocol
/// (`tcp`/`udp` need a port, `icmp` takes none; default tcp with a port, icmp without),
/// a forged source address or MAC.
pub fn trace_spec(s: &TraceSpec) -> Result<TraceTarget, Invalid> {
    k8s_name("pod", &s.pod)?;
    k8s_name("namespace", &s.namespace)?;
    let (dst, dport) = match s.dst.split_once(':') {
        None => (ipv4("dst", &s.dst)?, None),
        Some((ip, port)) => {
            let ip = ipv4("dst", ip)?;
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    Invalid::new(
                        "dst",
                        format!("`{}`: `{port}` is not a port (1-65535)", s.dst),
                    )
                })?;
            (ip, Some(port))
        }
    };
    if dst.is_unspecified() || dst.is_broadcast() || dst.is_multicast() {
        return Err(Invalid::new(
            "dst",
            format!("`{}`: {dst} is not a unicast address", s.dst),
        ));
    }
    let proto = match (s.proto.as_deref(), dport) {
        (None, Some(_)) | (Some("tcp"), _) => TraceProto::Tcp,
        (None, None) | (Some("icmp"), _) => TraceProto::Icmp,
        (Some("udp"), _) => TraceProto::Udp,
        (Some(p), _) => {
            return Err(Invalid::new(
                "proto",
                format!("`{p}` is not tcp, udp or icmp"),
            ))
        }
    };
    let dport = match (proto, dport) {
        (TraceProto::Icmp, Some(p)) => {
            return Err(Invalid::new(
                "dst",
                format!("`{}`: icmp has no port (:{p})", s.dst),
            ))
        }
        (TraceProto::Icmp, None) => 0,
        (_, Some(p)) => p,
        (_, None) => {
            return Err(Invalid::new(
                "dst",
                format!("`{}`: tcp and udp need a port (IP:PORT)", s.dst),
            ))
        }
    };
    let src = s.src.as_deref().map(|v| ipv4("src", v)).transpose()?;
    let src_mac = s
        .src_mac
        .as_deref()
        .map(|v| mac("src_mac", v))
        .transpose()?;
    Ok(TraceTarget {
        dst,
        dport,
        proto,
        src,
        src_mac,
    })
}

/// `NS/NAME`, or `NAME` in the `default` namespace: a pod or Service of a `conntrack`
/// filter.
pub fn namespaced(field: &'static str, s: &str) -> Result<(String, String), Invalid> {
    let (ns, name) = s.split_once('/').unwrap_or(("default", s));
    k8s_name(field, ns)?;
    k8s_name(field, name)?;
    Ok((ns.to_string(), name.to_string()))
}

/// The levels of a log filter.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The shape of a log filter directive list (`LEVEL` or `TARGET=LEVEL`, comma-separated):
/// a bare word must be a level (tracing would take `loud` for a target to trace), and a
/// `TARGET=LEVEL`'s level one of [`LOG_LEVELS`]. The daemon also parses it with tracing's
/// `EnvFilter`, the authority on the rest of the syntax.
pub fn log_filter(s: &str) -> Result<(), Invalid> {
    let bad = |why: String| Invalid::new("level", format!("`{s}` is not a log filter: {why}"));
    if s.trim().is_empty() {
        return Err(bad(
            "empty; give a level (error, warn, info, debug, trace)".into()
        ));
    }
    for d in s.split(',') {
        let d = d.trim();
        let level = match d.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            Some(_) => return Err(bad(format!("`{d}` has no target before `=`"))),
            None => d,
        };
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(bad(format!(
                "`{level}` is not a level (off, error, warn, info, debug, trace)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dst: &str, proto: Option<&str>) -> TraceSpec {
        TraceSpec {
            pod: "a".into(),
            namespace: "default".into(),
            dst: dst.into(),
            proto: proto.map(str::to_string),
            src: None,
            src_mac: None,
        }
    }

    #[test]
    fn trace_defaults_and_errors() {
        let t = trace_spec(&spec("10.0.0.1:80", None)).unwrap();
        assert_eq!((t.proto, t.dport), (TraceProto::Tcp, 80));
        let t = trace_spec(&spec("10.0.0.1", None)).unwrap();
        assert_eq!((t.proto, t.dport), (TraceProto::Icmp, 0));
        let t = trace_spec(&spec("10.0.0.1:53", Some("udp"))).unwrap();
        assert_eq!(t.proto, TraceProto::Udp);
        let e = trace_spec(&spec("10.0.0.1", Some("udp"))).unwrap_err();
        assert_eq!(e.field, "dst");
        assert!(e.message.contains("need a port"), "{e}");
        let e = trace_spec(&spec("10.0.0.1:80", Some("icmp"))).unwrap_err();
        assert!(e.message.contains("icmp has no port"), "{e}");
        assert_eq!(
            trace_spec(&spec("10.0.0.1:80", Some("sctp")))
                .unwrap_err()
                .field,
            "proto"
        );
        assert_eq!(
            trace_spec(&spec("10.0.0:80", None)).unwrap_err().field,
            "dst"
        );
        assert_eq!(
            trace_spec(&spec("10.0.0.1:0", None)).unwrap_err().field,
            "dst"
        );
        assert_eq!(
            trace_spec(&spec("255.255.255.255", None))
                .unwrap_err()
                .field,
            "dst"
        );
        let mut s = spec("10.0.0.1", None);
        s.src_mac = Some("zz".into());
        assert_eq!(trace_spec(&s).unwrap_err().field, "src_mac");
        s.src_mac = Some("0a:58:01:02:03:04".into());
        s.src = Some("10.1.1.1".into());
        let t = trace_spec(&s).unwrap();
        assert_eq!(t.src_mac, Some([0x0a, 0x58, 1, 2, 3, 4]));
        assert_eq!(t.src, Some(Ipv4Addr::new(10, 1, 1, 1)));
    }

    #[test]
    fn log_filters() {
        for ok in [
            "debug",
            "INFO",
            "info,vswitchd::node=debug",
            "vswitchd=trace,warn",
        ] {
            log_filter(ok).unwrap();
        }
        for bad in ["", "loud", "info,vswitchd=loud", "=debug", "info,"] {
            let e = log_filter(bad).unwrap_err();
            assert_eq!(e.field, "level");
            assert!(e.message.starts_with(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn namespaced_names() {
        assert_eq!(
            namespaced("service", "web").unwrap(),
            ("default".into(), "web".into())
        );
        assert_eq!(
            namespaced("pod", "prod/db").unwrap(),
            ("prod".into(), "db".into())
        );
        assert_eq!(namespaced("pod", "a/B").unwrap_err().field, "pod");
        assert_eq!(namespaced("pod", "a/b/c").unwrap_err().field, "pod");
    }
}
