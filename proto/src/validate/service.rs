//! A Service's values: port specs `[NAME:]PORT[:TARGETPORT][/tcp|/udp]`, endpoints
//! `IP[:PORT]` and session affinity `client-ip[:SECONDS]` / `none`. The fields are always
//! `port`, `endpoint` and `affinity`.

use super::Invalid;
use std::fmt;
use std::net::Ipv4Addr;

/// ClientIP affinity timeout when `client-ip` gives none (Kubernetes' default: 3 hours).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;
/// Longest ClientIP affinity timeout (Kubernetes' limit: one day).
pub const MAX_AFFINITY_SECONDS: u32 = 86400;

/// The transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `"tcp"` or `"udp"`, as the daemon stores and prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed Service port spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name; empty when the spec gives none.
    pub name: String,
    /// The port on the VIP.
    pub port: u16,
    /// The port on the endpoints (defaults to `port`).
    pub target_port: u16,
    /// The protocol (defaults to TCP).
    pub protocol: Protocol,
}

/// A parsed Service endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The port, when the endpoint fixes one (else each port's target port).
    pub port: Option<u16>,
}

/// A port number 1-65535, digits only.
fn port_number(s: &str, what: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} `{s}` is not a number"));
    }
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{what} `{s}` is out of range (1-65535)"))
}

/// A port name (IANA service name, as Kubernetes checks it): 1-15 characters of
/// `a-z 0-9 -`, at least one letter, no leading, trailing or double '-'.
fn port_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "port name `{s}` must be 1-15 lowercase letters, digits and '-' with at least one letter"
        ))
    }
}

/// Parses `[NAME:]PORT[:TARGETPORT][/tcp|/udp]`: the target port defaults to the port, the
/// protocol to tcp (either case). `A:B` is PORT:TARGETPORT when A is a number, else NAME:PORT.
pub fn service_port(spec: &str) -> Result<ServicePort, Invalid> {
    let bad = |m: String| Invalid::new("port", m);
    let syntax = || {
        bad(format!(
            "`{spec}` is not a port spec: expected [NAME:]PORT[:TARGETPORT][/tcp|/udp], e.g. 80/tcp or http:80:8080"
        ))
    };
    let (body, protocol) = match spec.split_once('/') {
        Some((b, p)) if p.eq_ignore_ascii_case("tcp") => (b, Protocol::Tcp),
        Some((b, p)) if p.eq_ignore_ascii_case("udp") => (b, Protocol::Udp),
        Some((_, p)) => {
            return Err(bad(format!(
                "`{spec}`: protocol `{p}` is not supported (tcp or udp)"
            )))
        }
        None => (spec, Protocol::Tcp),
    };
    if body.is_empty() {
        return Err(syntax());
    }
    let parts: Vec<&str> = body.split(':').collect();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (name, port, target) = match parts.as_slice() {
        [p] => (None, *p, None),
        [a, b] if numeric(a) => (None, *a, Some(*b)),
        [n, p] => (Some(*n), *p, None),
        [n, p, t] => (Some(*n), *p, Some(*t)),
        _ => return Err(syntax()),
    };
    let in_spec = |e: String| bad(format!("`{spec}`: {e}"));
    if let Some(name) = name {
        port_name(name).map_err(in_spec)?;
    }
    let port = port_number(port, "port").map_err(in_spec)?;
    let target_port = match target {
        Some(t) => port_number(t, "target port").map_err(in_spec)?,
        None => port,
    };
    Ok(ServicePort {
        name: name.unwrap_or_default().to_string(),
        port,
        target_port,
        protocol,
    })
}

/// Parses a Service endpoint `IP[:PORT]`.
pub fn endpoint(s: &str) -> Result<Endpoint, Invalid> {
    let (ip, port) = match s.split_once(':') {
        Some((ip, p)) => (
            ip,
            Some(port_number(p, "endpoint port").map_err(|e| Invalid::new("endpoint", e))?),
        ),
        None => (s, None),
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| {
        Invalid::new(
            "endpoint",
            format!("`{s}` is not IP[:PORT] with an IPv4 address"),
        )
    })?;
    Ok(Endpoint { ip, port })
}

/// Parses `client-ip[:SECONDS]` (also Kubernetes' `ClientIP`) into the affinity timeout
/// ([`DEFAULT_AFFINITY_SECONDS`] when none is given, at most [`MAX_AFFINITY_SECONDS`]);
/// `none` means no affinity.
pub fn affinity(s: &str) -> Result<Option<u32>, Invalid> {
    let (kind, secs) = match s.split_once(':') {
        Some((k, v)) => (k, Some(v)),
        None => (s, None),
    };
    match kind.to_ascii_lowercase().replace('-', "").as_str() {
        "clientip" => {}
        "none" if secs.is_none() => return Ok(None),
        _ => {
            return Err(Invalid::new(
                "affinity",
                format!("`{s}` is not an affinity: expected client-ip[:SECONDS] or none"),
            ))
        }
    }
    let secs = match secs {
        None => DEFAULT_AFFINITY_SECONDS,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_AFFINITY_SECONDS).contains(n))
            .ok_or_else(|| {
                Invalid::new(
                    "affinity",
                    format!("affinity timeout `{v}` must be 1-{MAX_AFFINITY_SECONDS} seconds"),
                )
            })?,
    };
    Ok(Some(secs))
}
