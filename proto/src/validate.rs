//! Shape checks of the names a request carries (pod, namespace and node names, interface
//! names, labels). They look at a value only, never at node state: `vswitchd` runs them on
//! every request it decodes (it must not trust its input) and names the field in its error;
//! the fuzz target `control` runs them on whatever the decoder accepts. Each returns the
//! message of the error; the caller knows the field.

/// A Kubernetes-style name: 1-253 characters of `a-z 0-9 - .`, starting and ending with an
/// alphanumeric character.
pub fn k8s_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("`{s}` must be 1-253 characters long"));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !s.chars().all(ok_char) {
        return Err(format!(
            "`{s}` may contain only lowercase letters, digits, '-' and '.'"
        ));
    }
    if !s.starts_with(alnum) || !s.ends_with(alnum) {
        return Err(format!(
            "`{s}` must start and end with a lowercase letter or digit"
        ));
    }
    Ok(())
}

/// A node name follows the same rules as a pod name.
pub fn node_name(s: &str) -> Result<(), String> {
    k8s_name(s)
}

/// An interface name inside a pod: 1-15 bytes, no '/', ':' or whitespace.
pub fn ifname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("`{s}` must be 1-15 characters long"));
    }
    if s.chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        || s == "."
        || s == ".."
    {
        return Err(format!("`{s}` is not a valid interface name"));
    }
    Ok(())
}

/// A label key (optionally `prefix/`-qualified) and value, as Kubernetes accepts them.
pub fn label(k: &str, v: &str) -> Result<(), String> {
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
        return Err(format!(
            "label key `{k}` is not a valid Kubernetes label key"
        ));
    }
    if !ok(v, true) {
        return Err(format!(
            "label value `{v}` (of `{k}`) is not a valid Kubernetes label value"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(k8s_name("nginx-server").is_ok());
        assert!(k8s_name("a.b-1").is_ok());
        assert!(k8s_name("").is_err());
        assert!(k8s_name("Nginx").is_err());
        assert!(k8s_name("-x").is_err());
        assert!(k8s_name("x y").is_err());
    }

    #[test]
    fn ifnames() {
        assert!(ifname("eth0").is_ok());
        assert!(ifname("averyveryverylongname").is_err());
        assert!(ifname("a/b").is_err());
        assert!(ifname("").is_err());
    }

    #[test]
    fn labels() {
        assert!(label("app", "nginx").is_ok());
        assert!(label("app.kubernetes.io/name", "web").is_ok());
        assert!(label("app", "").is_ok());
        assert!(label("", "x").is_err());
        assert!(label("app", "a b").is_err());
    }
}
