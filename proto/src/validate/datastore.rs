//! The datastore's flags: `--datastore etcd://HOST:PORT[,HOST:PORT...]` (the etcd v3 API's
//! client endpoints) and `--datastore-prefix` (an etcd key prefix such as flannel's
//! `/coreos.com/network`). Pure shape checks, like the rest of `validate`: no lookup, no I/O.

use super::Invalid;

/// The scheme `--datastore` takes.
pub const ETCD_SCHEME: &str = "etcd://";

/// `etcd://HOST:PORT[,HOST:PORT...]`: the endpoints as `HOST:PORT` strings, in order. A HOST
/// is an IPv4 address or a DNS name; the port is 1-65535 and must be given.
pub fn datastore_url(field: &'static str, s: &str) -> Result<Vec<String>, Invalid> {
    let rest = s.strip_prefix(ETCD_SCHEME).ok_or_else(|| {
        Invalid::new(
            field,
            format!("`{s}` must be etcd://HOST:PORT[,HOST:PORT...], e.g. etcd://198.19.0.254:2379"),
        )
    })?;
    if rest.is_empty() {
        return Err(Invalid::new(field, format!("`{s}` names no endpoint")));
    }
    rest.split(',').map(|ep| endpoint(field, s, ep)).collect()
}

fn endpoint(field: &'static str, whole: &str, ep: &str) -> Result<String, Invalid> {
    let (host, port) = ep.rsplit_once(':').ok_or_else(|| {
        Invalid::new(
            field,
            format!("`{whole}`: endpoint `{ep}` must be HOST:PORT"),
        )
    })?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0) && !port.starts_with('+');
    if !port_ok {
        return Err(Invalid::new(
            field,
            format!("`{whole}`: `{port}` is not a port (1-65535)"),
        ));
    }
    let host_ok = host.parse::<std::net::Ipv4Addr>().is_ok()
        || super::dns_name(field, host).is_ok_and(|h| h == host);
    if host.is_empty() || !host_ok {
        return Err(Invalid::new(
            field,
            format!("`{whole}`: `{host}` is not an IPv4 address or a host name"),
        ));
    }
    Ok(format!("{host}:{port}"))
}

/// An etcd key prefix: starts with `/`, does not end with one (unless it is `/` alone, which
/// is refused too: the cluster's keys need a home), at most 256 bytes of printable ASCII
/// without spaces. Returned as given.
pub fn datastore_prefix(field: &'static str, s: &str) -> Result<String, Invalid> {
    if !s.starts_with('/') || s.len() < 2 || s.ends_with('/') || s.len() > 256 {
        return Err(Invalid::new(
            field,
            format!("`{s}` must start with '/', not end with one, and be 2-256 characters long, e.g. /coreos.com/network"),
        ));
    }
    if !s.chars().all(|c| c.is_ascii_graphic()) || s.contains("//") {
        return Err(Invalid::new(
            field,
            format!("`{s}` may contain only printable ASCII without spaces or empty segments"),
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_urls_parse_to_endpoints() {
        assert_eq!(
            datastore_url("datastore", "etcd://198.19.0.254:2379").unwrap(),
            vec!["198.19.0.254:2379"]
        );
        assert_eq!(
            datastore_url("datastore", "etcd://etcd-1.example:2379,198.19.0.253:2379").unwrap(),
            vec!["etcd-1.example:2379", "198.19.0.253:2379"]
        );
    }

    #[test]
    fn bad_datastore_urls_name_the_field_and_value() {
        for bad in [
            "198.19.0.254:2379",
            "http://198.19.0.254:2379",
            "etcd://",
            "etcd://198.19.0.254",
            "etcd://198.19.0.254:0",
            "etcd://198.19.0.254:99999",
            "etcd://198.19.0.254:+1",
            "etcd://:2379",
            "etcd://bad host:2379",
            "etcd://198.19.0.254:2379,",
        ] {
            let e = datastore_url("datastore", bad).unwrap_err();
            assert_eq!(e.field, "datastore", "{bad}");
            assert!(e.message.contains(bad), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            datastore_prefix("datastore_prefix", "/coreos.com/network").unwrap(),
            "/coreos.com/network"
        );
        for bad in ["", "/", "coreos.com/network", "/a/", "/a b", "/a//b", "/é"] {
            let e = datastore_prefix("datastore_prefix", bad).unwrap_err();
            assert_eq!(e.field, "datastore_prefix", "{bad}");
        }
    }
}
