//! Names: Kubernetes object names, node names, interface names, labels, DNS labels and
//! names (domains), Service names, CNI container ids, and the `K=V` lists the CLI takes labels and selectors as.

use super::Invalid;
use std::collections::BTreeMap;

/// A Kubernetes-style name (pod, namespace): 1-253 characters of `a-z 0-9 - .`, starting and
/// ending with an alphanumeric character.
pub fn k8s_name(field: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > 253 {
        return Err(Invalid::new(
            field,
            format!("`{s}` must be 1-253 characters long"),
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !s.chars().all(ok_char) {
        return Err(Invalid::new(
            field,
            format!("`{s}` may contain only lowercase letters, digits, '-' and '.'"),
        ));
    }
    if !s.starts_with(alnum) || !s.ends_with(alnum) {
        return Err(Invalid::new(
            field,
            format!("`{s}` must start and end with a lowercase letter or digit"),
        ));
    }
    Ok(())
}

/// The longest name [`k8s_name`] accepts.
pub const MAX_K8S_NAME_LEN: usize = 253;

/// Hex digits of the suffix [`runtime_port_name`] appends.
const RUNTIME_SUFFIX_LEN: usize = 8;

/// The port name (a valid [`k8s_name`]) a container runtime's name maps to: what the daemon
/// names a CNI attachment after (`K8S_POD_NAME`, `K8S_POD_NAMESPACE`, or the container id).
/// Kubernetes passes DNS-1123 names; podman, nerdctl and containerd's tools pass names with
/// capitals and underscores (`dazzling_chatterjee`, `Web_1`) and the CNI spec allows any
/// container id of `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. The mapping is
///
/// - the identity for a valid [`k8s_name`] (nothing changes for Kubernetes);
/// - otherwise lowercase, every character other than `a-z 0-9 - .` replaced by `-`, the ends
///   trimmed to alphanumerics, cut to fit, then `-` and [`RUNTIME_SUFFIX_LEN`] hex digits of
///   a hash (64-bit FNV-1a) of the original name: `Web_1` -> `web-1-xxxxxxxx`, `web_1` ->
///   `web-1-yyyyyyyy`, two containers, two ports.
///
/// Pure and fixed: the same name gives the same port name in every process and release (the
/// hash is spelled out here, not the standard library's, which may change). Never panics.
pub fn runtime_port_name(s: &str) -> String {
    if k8s_name("name", s).is_ok() {
        return s.to_string();
    }
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut base = mapped.trim_matches(|c: char| !alnum(c)).to_string();
    // ASCII only by now: byte lengths are character counts.
    base.truncate(MAX_K8S_NAME_LEN - RUNTIME_SUFFIX_LEN - 1);
    let base = base.trim_end_matches(|c: char| !alnum(c));
    let hash = fnv1a64(s.as_bytes());
    let suffix = format!("{hash:016x}");
    let suffix = &suffix[..RUNTIME_SUFFIX_LEN];
    if base.is_empty() {
        suffix.to_string()
    } else {
        format!("{base}-{suffix}")
    }
}

/// 64-bit FNV-1a (fixed constants: the result is stable across processes and releases).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A node name follows the same rules as a pod name.
pub fn node_name(field: &'static str, s: &str) -> Result<(), Invalid> {
    k8s_name(field, s)
}

/// An interface name (the CNI spec's rule, which Linux enforces): 1-15 bytes, not `.` or
/// `..`, no '/', ':', whitespace or control characters; and no '%', which the kernel takes
/// as a pattern (`eth%d`) and replaces with a name of its choosing.
pub fn ifname(field: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > 15 {
        return Err(Invalid::new(
            field,
            format!("`{s}` must be 1-15 characters long"),
        ));
    }
    if s.chars()
        .any(|c| c == '/' || c == ':' || c == '%' || c.is_whitespace() || c.is_control())
        || s == "."
        || s == ".."
    {
        return Err(Invalid::new(
            field,
            format!(
                "`{s}` is not a valid interface name (not `.` or `..`, no '/', ':', '%' or whitespace)"
            ),
        ));
    }
    Ok(())
}

/// A label key (optionally `prefix/`-qualified) and value, as Kubernetes accepts them.
pub fn label(field: &'static str, k: &str, v: &str) -> Result<(), Invalid> {
    let name = k.rsplit('/').next().unwrap_or(k);
    let ok = |s: &str, allow_empty: bool| {
        (allow_empty || !s.is_empty())
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && (s.is_empty()
                || (s.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && s.ends_with(|c: char| c.is_ascii_alphanumeric())))
    };
    if !ok(name, false) || k.len() > 253 + 1 + 63 {
        return Err(Invalid::new(
            field,
            format!("label key `{k}` is not a valid Kubernetes label key"),
        ));
    }
    if !ok(v, true) {
        return Err(Invalid::new(
            field,
            format!("label value `{v}` (of `{k}`) is not a valid Kubernetes label value"),
        ));
    }
    Ok(())
}

/// A DNS label (RFC 1123, what a namespace must be): 1-63 characters of `a-z 0-9 -`,
/// alphanumeric at both ends.
pub fn dns_label(field: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > 63 {
        return Err(Invalid::new(
            field,
            format!("`{s}` must be 1-63 characters long"),
        ));
    }
    if !is_dns_label(s) {
        return Err(Invalid::new(
            field,
            format!(
                "`{s}` must be a DNS label: lowercase letters, digits and '-', \
                 starting and ending with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// The longest [`dns_name`]: room is left for `SVC.NS.svc.` (two 63-character labels) in
/// front of a cluster domain.
pub const MAX_DNS_NAME_LEN: usize = 100;

/// A DNS name such as a cluster domain (`cluster.local`): dot-separated [`dns_label`]s, at
/// most [`MAX_DNS_NAME_LEN`] characters. Case and one trailing dot are forgiven: the name
/// is returned lowercased, without the dot.
pub fn dns_name(field: &'static str, s: &str) -> Result<String, Invalid> {
    let d = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if d.is_empty() || d.len() > MAX_DNS_NAME_LEN {
        return Err(Invalid::new(
            field,
            format!("`{s}` must be 1-{MAX_DNS_NAME_LEN} characters long"),
        ));
    }
    if !d.split('.').all(is_dns_label) {
        return Err(Invalid::new(
            field,
            format!("`{s}` is not a DNS domain (labels of a-z, 0-9 and '-')"),
        ));
    }
    Ok(d)
}

/// RFC 1123's label rule, the one [`dns_label`] and [`dns_name`] share.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Service name: an RFC 1035 label (what Kubernetes requires, since it is a DNS name), a
/// [`dns_label`] that starts with a letter.
pub fn service_name(field: &'static str, s: &str) -> Result<(), Invalid> {
    dns_label(field, s)?;
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Invalid::new(
            field,
            format!("`{s}` must start with a lowercase letter"),
        ));
    }
    Ok(())
}

/// A CNI container id (the spec's rule): an alphanumeric character, then alphanumerics, `_`,
/// `.` or `-`.
pub fn container_id(field: &'static str, s: &str) -> Result<(), Invalid> {
    let ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!(
                "`{s}` must start with a letter or digit and contain only letters, digits, \
                 '_', '.' and '-'"
            ),
        ))
    }
}

/// `K=V` labels (V may be empty, K may not) into a map; a key given twice is an error. The
/// field is `labels`; the daemon checks each pair with [`label`].
pub fn labels(items: &[String]) -> Result<BTreeMap<String, String>, Invalid> {
    key_values("labels", "label", items)
}

/// `K=V` selector terms, shaped like [`labels`]; the field is `selector`.
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
                Invalid::new(
                    field,
                    format!("malformed {what} `{item}`: expected KEY=VALUE with a non-empty KEY"),
                )
            })?;
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Invalid::new(field, format!("{what} key `{k}` given twice")));
        }
    }
    Ok(map)
}
