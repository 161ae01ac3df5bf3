//! Local checks run before anything is sent, so an obviously malformed argument fails fast
//! (exit code 2) without touching the daemon. The daemon validates again and stays the
//! authority; these checks only look at the shape of a value, never at node state.
//!
//! Every error names the request field it is about, with the proto field names (`ip`, `mac`,
//! `labels`, `underlay`, `pod_cidr`, `vtep_mac`, `vip`, `port`, `selector`, `endpoint`,
//! `affinity`), as the daemon's errors do.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// A malformed argument: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The request field (proto name).
    pub field: &'static str,
    /// What was wrong, in a sentence.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

fn invalid(field: &'static str, message: String) -> Invalid {
    Invalid { field, message }
}

/// `ADDR/PLEN` with an IPv4 address and a prefix length of at most 32.
pub fn ip_with_prefix(field: &'static str, s: &str) -> Result<(), Invalid> {
    let bad = |why: &str| invalid(field, format!("malformed address `{s}`: {why}"));
    let (addr, plen) = s
        .split_once('/')
        .ok_or_else(|| bad("expected ADDR/PLEN like 198.18.1.5/24"))?;
    addr.parse::<Ipv4Addr>()
        .map_err(|_| bad("not an IPv4 address"))?;
    match plen.parse::<u8>() {
        Ok(n) if n <= 32 => Ok(()),
        _ => Err(bad("prefix length must be a number from 0 to 32")),
    }
}

/// A network `A.B.C.D/N` (the same shape as [`ip_with_prefix`]; the daemon checks host bits).
pub fn cidr(field: &'static str, s: &str) -> Result<(), Invalid> {
    ip_with_prefix(field, s)
        .map_err(|_| invalid(field, format!("malformed CIDR `{s}`: expected A.B.C.D/N")))
}

/// A plain IPv4 address.
pub fn ipv4(field: &'static str, s: &str) -> Result<(), Invalid> {
    s.parse::<Ipv4Addr>()
        .map(|_| ())
        .map_err(|_| invalid(field, format!("malformed IPv4 address `{s}`")))
}

/// A MAC address: six two-digit hex pairs separated by `:`.
pub fn mac(field: &'static str, s: &str) -> Result<(), Invalid> {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("malformed MAC address `{s}`: expected six hex pairs like 0a:58:c6:12:01:02"),
        ))
    }
}

/// `K=V` labels (V may be empty, K may not); a key given twice is an error.
pub fn labels(items: &[String]) -> Result<BTreeMap<String, String>, Invalid> {
    key_values("labels", "label", items)
}

/// `K=V` selector terms, shaped like labels.
pub fn selector(items: &[String]) -> Result<BTreeMap<String, String>, Invalid> {
    key_values("selector", "selector", items)
}

fn key_values(
    field: &'static str,
    what: &str,
    items: &[String],
) -> Result<BTreeMap<String, String>, Invalid> {
    let mut map = BTreeMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| {
                invalid(
                    field,
                    format!("malformed {what} `{item}`: expected KEY=VALUE with a non-empty KEY"),
                )
            })?;
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(invalid(field, format!("{what} key `{k}` given twice")));
        }
    }
    Ok(map)
}

fn number_1_65535(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok_and(|p| p != 0)
}

/// A Service port spec `[NAME:]PORT[:TARGETPORT][/tcp|/udp]` (`A:B` is PORT:TARGETPORT when
/// A is a number, else NAME:PORT). The daemon parses it again and checks the name's rules.
pub fn service_port(s: &str) -> Result<(), Invalid> {
    let bad = |why: &str| {
        invalid(
            "port",
            format!("malformed port spec `{s}`: {why} (expected [NAME:]PORT[:TARGETPORT][/tcp|/udp], e.g. 80/tcp or http:80:8080)"),
        )
    };
    let body = match s.split_once('/') {
        Some((b, p)) if p.eq_ignore_ascii_case("tcp") || p.eq_ignore_ascii_case("udp") => b,
        Some((_, p)) => return Err(bad(&format!("protocol `{p}` is not tcp or udp"))),
        None => s,
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (name, nums): (Option<&str>, &[&str]) = match parts.as_slice() {
        [_] => (None, &parts[..]),
        [a, _] if number_1_65535(a) || a.bytes().all(|b| b.is_ascii_digit()) => (None, &parts[..]),
        [n, _] => (Some(*n), &parts[1..]),
        [n, _, _] => (Some(*n), &parts[1..]),
        _ => return Err(bad("too many `:`")),
    };
    if name.is_some_and(|n| n.is_empty()) {
        return Err(bad("empty port name"));
    }
    if let Some(n) = nums.iter().find(|n| !number_1_65535(n)) {
        return Err(bad(&format!("`{n}` is not a port number (1-65535)")));
    }
    Ok(())
}

/// A Service endpoint `IP[:PORT]`.
pub fn endpoint(s: &str) -> Result<(), Invalid> {
    let (ip, port) = match s.split_once(':') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let ok = ip.parse::<Ipv4Addr>().is_ok() && port.is_none_or(number_1_65535);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "endpoint",
            format!(
                "malformed endpoint `{s}`: expected IP[:PORT] like 198.18.1.5 or 198.18.1.5:8080"
            ),
        ))
    }
}

/// Session affinity `client-ip[:SECONDS]` (or `none`); the daemon checks the range.
pub fn affinity(s: &str) -> Result<(), Invalid> {
    let (kind, secs) = match s.split_once(':') {
        Some((k, v)) => (k, Some(v)),
        None => (s, None),
    };
    let kind = kind.to_ascii_lowercase().replace('-', "");
    let ok = match (kind.as_str(), secs) {
        ("clientip", None) | ("none", None) => true,
        ("clientip", Some(v)) => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "affinity",
            format!("malformed affinity `{s}`: expected client-ip[:SECONDS] or none"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_with_prefix_accepts_and_rejects() {
        assert!(ip_with_prefix("ip", "198.18.1.5/24").is_ok());
        assert!(ip_with_prefix("ip", "10.0.0.1/32").is_ok());
        assert!(ip_with_prefix("ip", "0.0.0.0/0").is_ok());
        for bad in [
            "198.18.1.5",
            "198.18.1.5/33",
            "198.18.1/24",
            "198.18.1.5/x",
            "/24",
            "",
            "fe80::1/64",
        ] {
            let err = ip_with_prefix("ip", bad).unwrap_err();
            assert_eq!(err.field, "ip", "{bad}");
            assert!(err.to_string().starts_with("ip: "), "{err}");
            assert!(err.message.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn cidr_names_its_field() {
        assert!(cidr("pod_cidr", "198.18.2.0/24").is_ok());
        let err = cidr("pod_cidr", "198.18.2.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "pod_cidr: malformed CIDR `198.18.2.0`: expected A.B.C.D/N"
        );
        assert_eq!(
            cidr("pod_cidr", "1.2.3.4/40").unwrap_err().field,
            "pod_cidr"
        );
    }

    #[test]
    fn ipv4_names_its_field() {
        assert!(ipv4("underlay", "192.168.56.12").is_ok());
        let err = ipv4("underlay", "node2").unwrap_err();
        assert_eq!(err.to_string(), "underlay: malformed IPv4 address `node2`");
        assert!(ipv4("underlay", "10.0.0.1/24").is_err());
    }

    #[test]
    fn mac_accepts_and_rejects() {
        assert!(mac("mac", "0a:58:c6:12:01:02").is_ok());
        assert!(mac("mac", "AA:BB:CC:DD:EE:FF").is_ok());
        for bad in [
            "zz:58:c6:12:01:02",
            "0a:58:c6:12:01",
            "0a:58:c6:12:01:02:03",
            "0a-58-c6-12-01-02",
            "a:58:c6:12:01:02",
            "0a:58:c6:12:01:002",
            "",
        ] {
            let err = mac("vtep_mac", bad).unwrap_err();
            assert_eq!(err.field, "vtep_mac", "{bad}");
            assert!(
                err.to_string().starts_with("vtep_mac: malformed MAC"),
                "{err}"
            );
        }
    }

    #[test]
    fn labels_parse_and_name_the_field() {
        let got = labels(&["app=nginx".into(), "tier=".into(), "a=b=c".into()]).unwrap();
        let want: BTreeMap<String, String> = [("app", "nginx"), ("tier", ""), ("a", "b=c")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert!(labels(&[]).unwrap().is_empty());

        for bad in ["app", "=nginx", ""] {
            let err = labels(&[bad.to_string()]).unwrap_err();
            assert_eq!(err.field, "labels", "{bad}");
            assert!(
                err.to_string().starts_with("labels: malformed label"),
                "{err}"
            );
        }
        let err = labels(&["app=a".into(), "app=b".into()]).unwrap_err();
        assert_eq!(err.to_string(), "labels: label key `app` given twice");
    }

    #[test]
    fn selector_names_its_field() {
        assert_eq!(selector(&["app=nginx".into()]).unwrap()["app"], "nginx");
        let err = selector(&["app".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "selector: malformed selector `app`: expected KEY=VALUE with a non-empty KEY"
        );
    }

    #[test]
    fn service_ports() {
        for good in [
            "80",
            "80/tcp",
            "53/UDP",
            "80:8080",
            "http:80",
            "http:80:8080/tcp",
            "dns:53/udp",
        ] {
            assert!(service_port(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "0",
            "65536",
            "80/sctp",
            "/tcp",
            "http",
            ":80",
            "80:0",
            "a:b:c:d",
            "http:x",
            "80:8080:9090x",
            "80/",
            "http:80:",
        ] {
            let err = service_port(bad).unwrap_err();
            assert_eq!(err.field, "port", "{bad}");
            assert!(err.message.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn endpoints_and_affinity() {
        assert!(endpoint("198.18.1.5").is_ok());
        assert!(endpoint("198.18.1.5:8080").is_ok());
        for bad in [
            "198.18.1",
            "198.18.1.5:",
            "198.18.1.5:0",
            "x:80",
            "198.18.1.5:70000",
        ] {
            assert_eq!(endpoint(bad).unwrap_err().field, "endpoint", "{bad}");
        }
        for good in ["client-ip", "ClientIP", "client-ip:60", "none"] {
            assert!(affinity(good).is_ok(), "{good}");
        }
        for bad in ["cookie", "client-ip:", "client-ip:x", "none:5", ""] {
            assert_eq!(affinity(bad).unwrap_err().field, "affinity", "{bad}");
        }
    }
}
