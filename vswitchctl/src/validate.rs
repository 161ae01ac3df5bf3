//! Local checks run before anything is sent, so an obviously malformed argument fails fast
//! (exit code 2) without touching the daemon. The daemon validates again and stays the
//! authority; these checks only look at the shape of a value, never at node state.
//!
//! Every error names the request field it is about, with the proto field names (`ip`, `mac`,
//! `labels`, `underlay`, `pod_cidr`, `vtep_mac`), as the daemon's errors do.

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
    let mut map = BTreeMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| {
                invalid(
                    "labels",
                    format!("malformed label `{item}`: expected KEY=VALUE with a non-empty KEY"),
                )
            })?;
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(invalid("labels", format!("label key `{k}` given twice")));
        }
    }
    Ok(map)
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
}
