//! Assertions several tests share: a pod reaches an address, a pod fetches nginx's page, and a
//! `vswitchctl` command with bad input is rejected naming the field and changes nothing.

use crate::cmd::OutputExt;
use crate::{Node, Pod};
use serde_json::Value;
use std::fmt::Display;
use std::net::Ipv4Addr;

/// Asserts `ping` from `from` to `to` succeeds.
pub fn assert_ping(from: &Pod, to: impl Display) {
    let out = from.ping(&to);
    assert!(
        out.status.success(),
        "ping from {} ({}) to {to} failed: {}",
        from.name,
        from.ip,
        out.describe()
    );
}

/// Asserts `wget http://IP/` from `from` prints nginx's welcome page.
pub fn assert_wget_nginx(from: &Pod, ip: Ipv4Addr) {
    let out = from.wget(&format!("http://{ip}/"));
    assert!(
        out.status.success() && out.stdout_str().contains("Welcome to nginx"),
        "wget {ip} from {}: {}",
        from.name,
        out.describe()
    );
}

/// Asserts `vswitchctl ARGS` (a `port` command) fails with exit 1 or 2, names `field` on
/// stderr as a whole word, and leaves `port list` unchanged.
pub fn assert_port_rejected(node: &Node, args: &[&str], field: &str) {
    assert_rejected(node, args, "port list", Node::ports, |stderr| {
        assert!(
            names_word(stderr, field),
            "`vswitchctl {}`: stderr should name the field `{field}`: {stderr}",
            args.join(" ")
        );
    });
}

/// Asserts `vswitchctl ARGS` (a `service` command) fails with exit 1 or 2 naming `field` as
/// `error: FIELD: ...`, and leaves `service list` unchanged.
pub fn assert_service_rejected(node: &Node, args: &[&str], field: &str) {
    assert_rejected(node, args, "service list", Node::services, |stderr| {
        assert!(
            stderr.starts_with(&format!("error: {field}: ")),
            "`vswitchctl {}`: stderr should name the field `{field}`: {stderr}",
            args.join(" ")
        );
    });
}

/// Runs `vswitchctl ARGS`, asserts it failed with exit 1 or 2, runs `check_stderr` on its
/// stderr and asserts `list` (called `what`) gives what it gave before.
fn assert_rejected(
    node: &Node,
    args: &[&str],
    what: &str,
    list: fn(&Node) -> Vec<Value>,
    check_stderr: impl FnOnce(&str),
) {
    let before = list(node);
    let out = node.ctl(args);
    assert!(
        !out.status.success(),
        "`vswitchctl {}` should fail: {}",
        args.join(" "),
        out.describe()
    );
    assert!(
        matches!(out.code(), Some(1) | Some(2)),
        "`vswitchctl {}`: exit code should be 1 or 2: {}",
        args.join(" "),
        out.describe()
    );
    check_stderr(&out.stderr_str());
    assert_eq!(
        list(node),
        before,
        "`vswitchctl {}` changed the {what}",
        args.join(" ")
    );
}

/// True when `word` occurs in `text` as a whole word (`name` in `error: name: taken`, not in
/// `namespace`).
pub fn names_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(is_word)
            && !text[i + word.len()..].chars().next().is_some_and(is_word)
    })
}

/// Polls `f` every 100 ms until it returns `Ok`, for at most `within`; panics with `what`
/// and the last value seen otherwise.
pub fn wait_for<T>(
    what: &str,
    within: std::time::Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::names_word;

    #[test]
    fn names_word_matches_whole_words_only() {
        assert!(names_word("error: name: taken", "name"));
        assert!(names_word("name", "name"));
        assert!(!names_word("error: namespace: bad", "name"));
        assert!(!names_word("error: pod_name: bad", "name"));
        assert!(names_word("bad (mac)", "mac"));
    }
}
