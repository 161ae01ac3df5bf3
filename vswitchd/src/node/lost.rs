//! Lost ports: a pod went away without `port del`. Two ways, two signals (measured on
//! Linux 6.18, tests/tests/faults.rs):
//!
//! - The pod's namespace is deleted (`ip netns del`, the runtime tearing a sandbox down). This
//!   does *not* destroy the TAP: the TAP's fd was opened inside the pod's namespace and its
//!   socket holds a reference to it, so the namespace lives on, nameless, with its `eth0`
//!   still working (its kernel stack even answers pings) for as long as the daemon holds the
//!   fd: nothing fails on the fd. So a periodic check ([`CHECK_PERIOD`]) compares each port's
//!   netns path with the namespace it was attached in ([`NetnsId`]): when the path is gone
//!   (or names another namespace now), the pod is gone. Closing the fd then drops the last
//!   reference and the kernel destroys the namespace with its TAP.
//! - The pod's interface is deleted (`ip link del eth0` in a namespace that lives on): the
//!   kernel detaches our fd and every read fails with `EBADFD`, in both engines. The engine
//!   stops serving the port at the first such failure and reports it (`io::is_port_lost`).
//!
//! - The pod's namespace was deleted while the daemon was down: at startup its path names
//!   nothing, the port cannot be re-attached, and it is removed the same way rather than
//!   kept `Detached` for ever (`Node::recover`, [`netns_missing`]).
//!
//! Either way the control plane cleans up as `port del` would (tables, persisted state, the
//! address, the pod's resolv.conf, the engine's fd), logs a `port lost` line naming the port
//! and counts it (`ports_lost` in `stats`).

use super::{Inner, Node, PortKey};
use crate::io::LostRx;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How often every port's namespace is checked.
const CHECK_PERIOD: Duration = Duration::from_secs(1);

/// A network namespace's identity: (device, inode) of its nsfs file.
pub type NetnsId = (u64, u64);

/// The identity of the namespace `path` names now, `None` when it names none (or cannot be
/// examined).
pub fn netns_identity(path: &str) -> Option<NetnsId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether the namespace a port was attached in (`was`) is gone from `path`: the path no
/// longer exists, or names another namespace. Any other failure to look (there is none for
/// root but ENOENT) keeps the port.
fn netns_gone(path: &str, was: NetnsId) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => (m.dev(), m.ino()) != was,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Whether the namespace path `path` names nothing now (at startup: a pod deleted while
/// the daemon was down). Only ENOENT counts: a path that cannot be examined otherwise keeps
/// its port (`Detached`).
pub fn netns_missing(path: &str) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

impl Node {
    /// Handles the engine's lost-port reports and checks the ports' namespaces every
    /// [`CHECK_PERIOD`], until the engine stops.
    pub async fn watch_lost(self: Arc<Self>, mut lost: LostRx) {
        let mut tick = tokio::time::interval(CHECK_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                id = lost.recv() => {
                    let Some(id) = id else { return };
                    let mut inner = self.inner.lock().await;
                    let key = inner.port_by_id(id);
                    // None: a `port del` came first.
                    if let Some(key) = key {
                        self.port_lost(&mut inner, key, "its TAP was deleted (reads fail)");
                    }
                }
                _ = tick.tick() => {
                    let mut inner = self.inner.lock().await;
                    let gone: Vec<PortKey> = inner
                        .ports
                        .iter()
                        .filter(|(_, p)| p.id.is_some())
                        .filter(|(_, p)| p.netns_id.is_some_and(|was| netns_gone(&p.rec.netns, was)))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in gone {
                        self.port_lost(&mut inner, key, "its network namespace was deleted");
                    }
                }
            }
        }
    }

    /// Removes port `key` from the tables and the persisted state, freeing its address
    /// (its Services lose it as an endpoint with the new snapshot), and closes its TAP.
    fn port_lost(&self, inner: &mut Inner, key: PortKey, why: &str) {
        let Some(port) = inner.ports.remove(&key) else {
            return;
        };
        self.ports_lost.fetch_add(1, Relaxed);
        if let Err(e) = self.persist(inner) {
            // Not a request that could be refused: the pod is gone either way. The state on
            // disk catches up with the next successful save; until then a restart would list
            // the port as Detached.
            warn!(port = %key.name, "saving the state after a lost port: {e:#}");
        }
        self.install(inner);
        if let Some(id) = port.id {
            // Closes the fd (if the engine still holds it): the last reference to a deleted
            // namespace, which the kernel then destroys with the TAP.
            self.io.del_port(id);
        }
        if !inner.ports.values().any(|p| p.rec.netns == port.rec.netns) {
            self.remove_pod_resolver(&port.rec.netns);
        }
        info!(
            port = %key.name, namespace = %key.namespace, ip = %port.rec.ip,
            netns = %port.rec.netns, "port lost: {why}; removed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_gone_when_its_path_is_or_names_another() {
        let dir = std::env::temp_dir().join(format!("vswitch-lost-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let a_s = a.to_str().unwrap();
        let was = netns_identity(a_s).expect("a exists");
        assert!(!netns_gone(a_s, was), "same file: still there");
        // The name now points at something else (a namespace recreated under the same name).
        std::fs::rename(&b, &a).unwrap();
        assert!(netns_gone(a_s, was), "another file under the name");
        std::fs::remove_file(&a).unwrap();
        assert!(netns_gone(a_s, was), "the name is gone");
        assert_eq!(netns_identity(a_s), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_try_again_errors_keep_a_tap() {
        for e in [libc::EAGAIN, libc::EINTR, libc::ECANCELED] {
            assert!(!crate::io::is_port_lost(e), "{e}");
        }
        for e in [libc::EBADFD, libc::EIO, libc::EFAULT, libc::ENODEV] {
            assert!(crate::io::is_port_lost(e), "{e}");
        }
    }
}
