//! Addresses: IPv4 addresses, addresses with a prefix length, CIDRs (network addresses),
//! unicast socket addresses (`IP[:PORT]`) and unicast MAC addresses. Prefixes are [`ipnet::Ipv4Net`] values.

use super::Invalid;
use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, SocketAddrV4};

/// A plain IPv4 address (dotted quad, nothing else).
pub fn ipv4(field: &'static str, s: &str) -> Result<Ipv4Addr, Invalid> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| Invalid::new(field, format!("`{s}` is not an IPv4 address")))
}

/// A unicast IPv4 socket address `IP[:PORT]` (a server to talk to, e.g. an upstream DNS
/// resolver); `default_port` when no port is given. The unspecified, broadcast and multicast
/// addresses and port 0 are refused.
pub fn socket_addr_v4(
    field: &'static str,
    s: &str,
    default_port: u16,
) -> Result<SocketAddrV4, Invalid> {
    let addr = match s.parse::<Ipv4Addr>() {
        Ok(ip) => SocketAddrV4::new(ip, default_port),
        Err(_) => s.parse::<SocketAddrV4>().map_err(|_| {
            Invalid::new(
                field,
                format!("`{s}` is not IP[:PORT] (an IPv4 address, e.g. 198.18.0.53:53)"),
            )
        })?,
    };
    let ip = addr.ip();
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(Invalid::new(
            field,
            format!("`{s}`: {ip} is not a unicast address"),
        ));
    }
    if addr.port() == 0 {
        return Err(Invalid::new(field, format!("`{s}`: port 0")));
    }
    Ok(addr)
}

/// `ADDR/PLEN`: an IPv4 address with a prefix length of at most 32. Host bits are kept (this
/// is an interface address, e.g. a pod's `198.18.1.5/24`).
pub fn ip_with_prefix(field: &'static str, s: &str) -> Result<Ipv4Net, Invalid> {
    let (a, l) = s.split_once('/').ok_or_else(|| {
        Invalid::new(
            field,
            format!("`{s}` must be ADDR/PLEN, e.g. 198.18.1.5/24"),
        )
    })?;
    let addr = ipv4(field, a)?;
    let len = prefix_len(field, l)?;
    Ipv4Net::new(addr, len).map_err(|_| bad_prefix_len(field, l))
}

/// A network `A.B.C.D/N`: like [`ip_with_prefix`], and the address must be the network
/// address (no host bits set).
pub fn cidr(field: &'static str, s: &str) -> Result<Ipv4Net, Invalid> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| Invalid::new(field, format!("`{s}` is not a CIDR (expected A.B.C.D/N)")))?;
    let addr = ipv4(field, a)?;
    let len = prefix_len(field, l)?;
    let net = Ipv4Net::new(addr, len).map_err(|_| bad_prefix_len(field, l))?;
    let network = net.trunc();
    if network.addr() != addr {
        return Err(Invalid::new(
            field,
            format!("`{s}` has host bits set (did you mean {network}?)"),
        ));
    }
    Ok(network)
}

fn prefix_len(field: &'static str, l: &str) -> Result<u8, Invalid> {
    l.parse::<u8>()
        .ok()
        .filter(|n| *n <= 32)
        .ok_or_else(|| bad_prefix_len(field, l))
}

fn bad_prefix_len(field: &'static str, l: &str) -> Invalid {
    Invalid::new(field, format!("`{l}` is not a prefix length (0-32)"))
}

/// A unicast MAC address: six two-digit hex pairs separated by `:` (or `-`), neither a group
/// (multicast or broadcast) address nor all zeros.
pub fn mac(field: &'static str, s: &str) -> Result<[u8; 6], Invalid> {
    let malformed = || {
        Invalid::new(
            field,
            format!("malformed MAC address `{s}`: expected six hex pairs like 0a:58:c6:12:01:02"),
        )
    };
    let mut m = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in &mut m {
        let p = parts.next().ok_or_else(malformed)?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        *byte = u8::from_str_radix(p, 16).map_err(|_| malformed())?;
    }
    if parts.next().is_some() {
        return Err(malformed());
    }
    if m[0] & 1 != 0 {
        return Err(Invalid::new(
            field,
            format!("`{s}` is a multicast address; a port needs a unicast MAC"),
        ));
    }
    if m == [0; 6] {
        return Err(Invalid::new(field, format!("`{s}` is the all-zero MAC")));
    }
    Ok(m)
}
