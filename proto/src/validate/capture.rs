//! Capture requests: the filter language and the bounds.
//!
//! The filter is a deliberately small subset of tcpdump's: terms joined by `and`, each one of
//! `host IP` (source or destination), `port N` (TCP or UDP source or destination), `tcp`,
//! `udp`, `icmp`, `arp`. An empty filter matches every frame. Errors name the word that is
//! wrong, in backticks.

use super::{k8s_name, Invalid};
use crate::capture::{CaptureSpec, MAX_CAPTURE_COUNT, MAX_CAPTURE_SECONDS};
use std::net::Ipv4Addr;

/// Most terms one filter may have.
pub const MAX_FILTER_TERMS: usize = 16;

/// A protocol a filter term names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterProto {
    /// IPv4 TCP.
    Tcp,
    /// IPv4 UDP.
    Udp,
    /// IPv4 ICMP.
    Icmp,
    /// ARP.
    Arp,
}

/// One term of a capture filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterTerm {
    /// `host IP`: the source or destination address (IPv4, or ARP's sender or target).
    Host(Ipv4Addr),
    /// `port N`: the TCP or UDP source or destination port.
    Port(u16),
    /// `tcp`, `udp`, `icmp`, `arp`.
    Proto(FilterProto),
}

const EXPECTED: &str = "expected host IP, port N, tcp, udp, icmp or arp";

/// Parses a capture filter (field `filter`) into its terms, all of which must match.
pub fn capture_filter(s: &str) -> Result<Vec<FilterTerm>, Invalid> {
    let err = |m: String| Invalid::new("filter", m);
    let mut words = s.split_whitespace();
    let mut terms = Vec::new();
    while let Some(w) = words.next() {
        if !terms.is_empty() {
            if w != "and" {
                return Err(err(format!(
                    "`{w}`: terms are joined by `and` (the only operator)"
                )));
            }
            let Some(next) = words.next() else {
                return Err(err("`and` at the end needs a term after it".into()));
            };
            terms.push(term(next, &mut words)?);
        } else {
            terms.push(term(w, &mut words)?);
        }
        if terms.len() > MAX_FILTER_TERMS {
            return Err(err(format!("more than {MAX_FILTER_TERMS} terms")));
        }
    }
    Ok(terms)
}

fn term<'a>(w: &'a str, rest: &mut impl Iterator<Item = &'a str>) -> Result<FilterTerm, Invalid> {
    let err = |m: String| Invalid::new("filter", m);
    Ok(match w {
        "tcp" => FilterTerm::Proto(FilterProto::Tcp),
        "udp" => FilterTerm::Proto(FilterProto::Udp),
        "icmp" => FilterTerm::Proto(FilterProto::Icmp),
        "arp" => FilterTerm::Proto(FilterProto::Arp),
        "host" => {
            let a = rest
                .next()
                .ok_or_else(|| err("`host` needs an IPv4 address after it".into()))?;
            let ip = a
                .parse::<Ipv4Addr>()
                .map_err(|_| err(format!("`host {a}`: `{a}` is not an IPv4 address")))?;
            FilterTerm::Host(ip)
        }
        "port" => {
            let a = rest
                .next()
                .ok_or_else(|| err("`port` needs a port number after it".into()))?;
            match a.parse::<u16>() {
                Ok(p) if p > 0 => FilterTerm::Port(p),
                _ => return Err(err(format!("`port {a}`: `{a}` is not a port (1-65535)"))),
            }
        }
        "and" => return Err(err("`and` needs a term before it".into())),
        other => return Err(err(format!("unknown word `{other}` ({EXPECTED})"))),
    })
}

/// Checks a whole capture request: exactly one of `port` and `tunnel`, the pod's name and
/// namespace, the bounds, and the filter (whose terms it returns).
pub fn capture_spec(spec: &CaptureSpec) -> Result<Vec<FilterTerm>, Invalid> {
    match (&spec.port, spec.tunnel) {
        (Some(_), true) => {
            return Err(Invalid::new(
                "tunnel",
                "capture a port or the tunnel, not both",
            ))
        }
        (None, false) => {
            return Err(Invalid::new(
                "port",
                "name a port to capture (or capture the tunnel)",
            ))
        }
        (Some(p), false) => {
            k8s_name("port", p)?;
            k8s_name("namespace", &spec.namespace)?;
        }
        (None, true) => {}
    }
    if !(1..=MAX_CAPTURE_COUNT).contains(&spec.count) {
        return Err(Invalid::new(
            "count",
            format!("{} is not within 1-{MAX_CAPTURE_COUNT}", spec.count),
        ));
    }
    if !(1..=MAX_CAPTURE_SECONDS).contains(&spec.duration_s) {
        return Err(Invalid::new(
            "duration_s",
            format!(
                "{} seconds is not within 1-{MAX_CAPTURE_SECONDS}",
                spec.duration_s
            ),
        ));
    }
    capture_filter(&spec.filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FilterProto::*;
    use FilterTerm::*;

    #[test]
    fn filters_parse() {
        assert_eq!(capture_filter("").unwrap(), []);
        assert_eq!(capture_filter("  ").unwrap(), []);
        assert_eq!(capture_filter("tcp").unwrap(), [Proto(Tcp)]);
        assert_eq!(
            capture_filter("host 198.18.1.2 and tcp and port 80").unwrap(),
            [Host(Ipv4Addr::new(198, 18, 1, 2)), Proto(Tcp), Port(80)]
        );
        assert_eq!(
            capture_filter("udp and\tport 53 and icmp and arp").unwrap(),
            [Proto(Udp), Port(53), Proto(Icmp), Proto(Arp)]
        );
    }

    #[test]
    fn filter_errors_name_the_word() {
        for (bad, word) in [
            ("tcpp", "`tcpp`"),
            ("host", "`host`"),
            ("host 1.2.3", "`1.2.3`"),
            ("host ::1", "`::1`"),
            ("port", "`port`"),
            ("port 0", "`0`"),
            ("port 65536", "`65536`"),
            ("port http", "`http`"),
            ("tcp udp", "`udp`"),
            ("tcp or udp", "`or`"),
            ("tcp and", "`and`"),
            ("and tcp", "`and`"),
            ("not tcp", "`not`"),
            ("TCP", "`TCP`"),
        ] {
            let e = capture_filter(bad).unwrap_err();
            assert_eq!(e.field, "filter", "{bad}");
            assert!(e.message.contains(word), "{bad}: {e}");
        }
        let many = vec!["tcp"; MAX_FILTER_TERMS + 1].join(" and ");
        assert!(capture_filter(&many).is_err());
        let max = vec!["tcp"; MAX_FILTER_TERMS].join(" and ");
        assert_eq!(capture_filter(&max).unwrap().len(), MAX_FILTER_TERMS);
    }

    fn spec() -> CaptureSpec {
        CaptureSpec {
            port: Some("web".into()),
            namespace: "default".into(),
            tunnel: false,
            count: 10,
            duration_s: 5,
            filter: "tcp".into(),
        }
    }

    #[test]
    fn specs_are_checked_field_by_field() {
        assert_eq!(capture_spec(&spec()).unwrap(), [Proto(Tcp)]);
        let tunnel = CaptureSpec {
            port: None,
            tunnel: true,
            ..spec()
        };
        assert!(capture_spec(&tunnel).is_ok());
        let field = |s: CaptureSpec| capture_spec(&s).unwrap_err().field;
        assert_eq!(
            field(CaptureSpec {
                tunnel: true,
                ..spec()
            }),
            "tunnel"
        );
        assert_eq!(
            field(CaptureSpec {
                port: None,
                ..spec()
            }),
            "port"
        );
        assert_eq!(
            field(CaptureSpec {
                port: Some("Web".into()),
                ..spec()
            }),
            "port"
        );
        assert_eq!(
            field(CaptureSpec {
                namespace: "".into(),
                ..spec()
            }),
            "namespace"
        );
        assert_eq!(field(CaptureSpec { count: 0, ..spec() }), "count");
        assert_eq!(
            field(CaptureSpec {
                count: MAX_CAPTURE_COUNT + 1,
                ..spec()
            }),
            "count"
        );
        assert_eq!(
            field(CaptureSpec {
                duration_s: 0,
                ..spec()
            }),
            "duration_s"
        );
        assert_eq!(
            field(CaptureSpec {
                duration_s: MAX_CAPTURE_SECONDS + 1,
                ..spec()
            }),
            "duration_s"
        );
        assert_eq!(
            field(CaptureSpec {
                filter: "bogus".into(),
                ..spec()
            }),
            "filter"
        );
    }
}
