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
