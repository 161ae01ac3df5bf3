//! Network namespace references (`port add --netns`, CNI_NETNS): which files the daemon
//! will open, decided by the shape of the string alone, before anything is opened.

use super::Invalid;

/// Where `ip netns add NAME` mounts named namespaces; a bare NAME resolves here.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// The directories whose entries a path may name (`/var/run` is `/run` on current systems).
pub const NETNS_DIRS: [&str; 2] = [NETNS_RUN_DIR, "/run/netns"];

/// A network namespace reference that has the shape of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsRef {
    /// The file to open.
    pub path: String,
    /// `/proc/PID/ns/net`: its last component is a kernel symlink (a "magic link" to the
    /// process's namespace) that must be followed; every other reference is opened without
    /// following symlinks.
    pub proc: bool,
}

/// A network namespace reference: a bare NAME (`/var/run/netns/NAME`),
/// `/var/run/netns/NAME`, `/run/netns/NAME`, or `/proc/PID/ns/net`, and nothing else. NAME
/// is one path component (1-255 bytes, not `.` or `..`, no NUL). Only root can create files
/// in those directories, and /proc's are the kernel's: a client cannot make the daemon open
/// a FIFO, a device or a file of its choosing, nor learn whether another path exists (a
/// refused reference is refused for its shape, never after a look at the file system).
pub fn netns(field: &'static str, s: &str) -> Result<NetnsRef, Invalid> {
    let named = |name: &str| {
        is_name(name).then(|| NetnsRef {
            path: format!("{NETNS_RUN_DIR}/{name}"),
            proc: false,
        })
    };
    let found = if !s.contains('/') {
        named(s)
    } else if let Some(rest) = NETNS_DIRS
        .iter()
        .find_map(|d| s.strip_prefix(d)?.strip_prefix('/'))
    {
        named(rest).map(|_| NetnsRef {
            path: s.to_string(),
            proc: false,
        })
    } else {
        s.strip_prefix("/proc/")
            .and_then(|r| r.strip_suffix("/ns/net"))
            .filter(|pid| is_pid(pid))
            .map(|_| NetnsRef {
                path: s.to_string(),
                proc: true,
            })
    };
    found.ok_or_else(|| {
        Invalid::new(
            field,
            format!(
                "`{}` is not a network namespace reference: give a NAME (of \
                 {NETNS_RUN_DIR}/NAME), {NETNS_RUN_DIR}/NAME, /run/netns/NAME or /proc/PID/ns/net",
                s.escape_debug()
            ),
        )
    })
}

/// One path component: 1-255 bytes, not `.` or `..`, no `/` or NUL.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s != "." && s != ".." && !s.contains(['/', '\0'])
}

/// A process id as /proc spells it: decimal, no leading zero, at most 2^22 (`pid_max`'s
/// ceiling).
fn is_pid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 7
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0')
        && s.parse::<u32>().is_ok_and(|p| p <= 1 << 22)
}
