//! Persistent state: what the daemon must remember across restarts (ports with their
//! addresses, peers, services (with their VIPs, allocated or not), namespaces, the allocator's cursor), written crash-safe, and the single-instance
//! lock on the state directory.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use tracing::{error, warn};

/// Version of the state file format.
const STATE_VERSION: u32 = 1;

/// The state file in the state directory.
pub const STATE_FILE: &str = "state.json";
/// The state before the last save: the fallback when [`STATE_FILE`] is damaged.
pub const PREV_FILE: &str = "state.json.prev";
/// Where a damaged [`STATE_FILE`] is kept after a fallback, for a post-mortem.
pub const CORRUPT_FILE: &str = "state.json.corrupt";

/// A port as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortRecord {
    pub name: String,
    pub namespace: String,
    /// The resolved network namespace path.
    pub netns: String,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The CNI container id, for ports attached through the CNI plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The runtime's name for the pod when `name` is a mapping of it
    /// (`vswitch_proto::PortInfo::runtime_name`); absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_name: Option<String>,
    /// The runtime's namespace when `namespace` is a mapping of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_namespace: Option<String>,
}

/// A peer as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub node: String,
    pub underlay: Ipv4Addr,
    pub pod_cidr: String,
    pub vtep_mac: String,
    /// `peer add` (absent in the file) or the datastore. Datastore peers are saved too, so
    /// that a restart while etcd is down keeps them (fail-static); the first list after it
    /// removes those whose lease is gone.
    #[serde(default, skip_serializing_if = "is_manual")]
    pub source: vswitch_proto::PeerSource,
}

fn is_manual(s: &vswitch_proto::PeerSource) -> bool {
    *s == vswitch_proto::PeerSource::Manual
}

/// One port of a Service as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePortRecord {
    /// May be empty.
    #[serde(default)]
    pub name: String,
    pub port: u16,
    pub target_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// An explicit Service endpoint as persisted: a pod address, and the port when fixed
/// (otherwise each service port's target port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub ip: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A Service as persisted (validated when it was added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub namespace: String,
    pub vip: Ipv4Addr,
    pub ports: Vec<ServicePortRecord>,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub endpoints: Vec<EndpointRecord>,
    /// ClientIP affinity timeout, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_seconds: Option<u32>,
    /// Stored in the datastore (by an `apply` on any node) rather than on this node only.
    /// Saved too, so that a restart while etcd is down keeps it (fail-static).
    #[serde(default, skip_serializing_if = "is_false")]
    pub from_datastore: bool,
}

/// A namespace as persisted (stored by `apply`; its labels include
/// `kubernetes.io/metadata.name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it was first applied, in seconds since the Unix epoch.
    #[serde(default)]
    pub created_unix: u64,
    /// Stored in the datastore rather than on this node only (see [`ServiceRecord`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub from_datastore: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Everything persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    pub version: u32,
    pub pod_cidr: String,
    pub ports: Vec<PortRecord>,
    pub peers: Vec<PeerRecord>,
    /// The last address handed out (allocation goes round-robin from here).
    pub last_allocated: Option<Ipv4Addr>,
    /// Services (absent in state files written before Services existed).
    #[serde(default)]
    pub services: Vec<ServiceRecord>,
    /// Namespaces stored by `apply` (absent in older state files).
    #[serde(default)]
    pub namespaces: Vec<NamespaceRecord>,
}

/// The state directory, locked for this daemon's lifetime.
pub struct Store {
    dir: PathBuf,
    // Held for the flock: dropping it releases the lock.
    _lock: nix::fcntl::Flock<File>,
    /// `state.json` holds a state this daemon loaded or saved: the next save keeps it as
    /// [`PREV_FILE`].
    current_good: AtomicBool,
}

impl Store {
    /// Opens (creating) the state directory, takes its lock and checks that no other
    /// daemon serves on `socket`. A stale socket file is removed.
    pub fn open(dir: &Path, socket: &Path) -> Result<Store> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("--state-dir: cannot create {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("lock"))
            .with_context(|| format!("--state-dir: cannot open {}/lock", dir.display()))?;
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| {
                anyhow::anyhow!(
                    "--state-dir: another vswitchd is running with state directory {}",
                    dir.display()
                )
            })?;
        if socket.exists() {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                bail!(
                    "--socket: another vswitchd is serving on {}",
                    socket.display()
                );
            }
            fs::remove_file(socket)
                .with_context(|| format!("removing stale socket {}", socket.display()))?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            current_good: AtomicBool::new(false),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Loads the state, or an empty one for a fresh directory. A `state.json` that cannot be
    /// read or parsed (truncated by a bad disk, corrupted, emptied) is not the end: the
    /// previous good state ([`PREV_FILE`], kept by every [`Store::save`]) is used, with an
    /// `error!` line naming both files, and a copy of the unusable file is kept as
    /// [`CORRUPT_FILE`] (the next save replaces the file itself). The previous state is one save behind: the last acknowledged change
    /// may be missing from it. Only when neither is usable does it fail, saying which files
    /// to move away. A state of another format version is refused as before (no fallback:
    /// it is not damage).
    pub fn load(&self) -> Result<PersistedState> {
        let (path, prev) = (self.path(), self.dir.join(PREV_FILE));
        match read_state(&path)? {
            Read::Good(st) => {
                self.current_good.store(true, Relaxed);
                Ok(st)
            }
            Read::Missing => match read_state(&prev)? {
                Read::Missing => Ok(PersistedState {
                    version: STATE_VERSION,
                    ..Default::default()
                }),
                Read::Good(st) => {
                    error!(
                        "{} is missing but {} exists: starting from that previous state (the \
                         last change before the loss may be missing)",
                        path.display(),
                        prev.display()
                    );
                    Ok(st)
                }
                Read::Unusable(e) => bail!(
                    "{} is missing and the previous state {} is unusable ({e:#}): move {} out \
                     of {} to start with an empty state (the pods of this node must then be \
                     added again), or put back a good copy of state.json",
                    path.display(),
                    prev.display(),
                    prev.display(),
                    self.dir.display()
                ),
            },
            Read::Unusable(e) => match read_state(&prev)? {
                Read::Good(st) => {
                    let aside = self.dir.join(CORRUPT_FILE);
                    // A copy (the file itself is replaced by the next save): loading is
                    // idempotent, and says the same thing when done twice.
                    let kept = match fs::copy(&path, &aside) {
                        Ok(_) => format!("a copy is kept as {}", aside.display()),
                        Err(r) => format!("could not be copied to {}: {r}", aside.display()),
                    };
                    error!(
                        "{} is unusable ({e:#}; {kept}): falling back to the previous good \
                         state {} ({} ports, {} peers, {} services; the last change before \
                         the damage may be missing)",
                        path.display(),
                        prev.display(),
                        st.ports.len(),
                        st.peers.len(),
                        st.services.len()
                    );
                    Ok(st)
                }
                Read::Missing => bail!(
                    "{} is unusable ({e:#}) and there is no previous state {}: move {} out of \
                     {} to start with an empty state (the pods of this node must then be added \
                     again), or put back a good copy",
                    path.display(),
                    prev.display(),
                    path.display(),
                    self.dir.display()
                ),
                Read::Unusable(e2) => bail!(
                    "neither {} ({e:#}) nor the previous state {} ({e2:#}) is usable: move both \
                     out of {} to start with an empty state (the pods of this node must then be \
                     added again), or put back a good copy of state.json",
                    path.display(),
                    prev.display(),
                    self.dir.display()
                ),
            },
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the state crash-safe ([`write_atomic`]). After it returns, a crash at any
    /// point keeps this state. The state it replaces is kept first as [`PREV_FILE`] (a hard
    /// link, renamed into place: no copy, and a crash leaves the old or the new previous
    /// state) when it is known good (loaded or saved by this daemon); a `state.json` found
    /// unusable never replaces a good previous state.
    pub fn save(&self, st: &PersistedState) -> Result<()> {
        let mut st = st.clone();
        st.version = STATE_VERSION;
        let bytes = serde_json::to_vec_pretty(&st)?;
        if self.current_good.load(Relaxed) {
            if let Err(e) = self.keep_previous() {
                // The save itself matters more: it goes on without a previous state.
                warn!("keeping the previous state as {PREV_FILE}: {e:#}");
            }
        }
        write_atomic(&self.dir, STATE_FILE, &bytes, 0o600)?;
        self.current_good.store(true, Relaxed);
        Ok(())
    }

    /// Links the current `state.json` as [`PREV_FILE`] (atomically replacing the old one).
    /// The directory is synced by the [`write_atomic`] that follows.
    fn keep_previous(&self) -> Result<()> {
        let tmp = self.dir.join(format!("{PREV_FILE}.tmp"));
        let _ = fs::remove_file(&tmp);
        match fs::hard_link(self.path(), &tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("linking {}", tmp.display())),
        }
        let prev = self.dir.join(PREV_FILE);
        fs::rename(&tmp, &prev).with_context(|| format!("renaming {} into place", tmp.display()))
    }
}

/// What one state file holds.
enum Read {
    /// It does not exist.
    Missing,
    /// A state of this format version.
    Good(PersistedState),
    /// It cannot be read or parsed (damage): why.
    Unusable(anyhow::Error),
}

/// Reads one state file. A state of another format version is an error, not damage.
fn read_state(path: &Path) -> Result<Read> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::Missing),
        Err(e) => {
            return Ok(Read::Unusable(
                anyhow::Error::new(e).context(format!("reading {}", path.display())),
            ))
        }
    };
    match serde_json::from_slice::<PersistedState>(&bytes) {
        Ok(st) if st.version == STATE_VERSION => Ok(Read::Good(st)),
        Ok(st) => bail!(
            "{}: state version {} is not supported (expected {STATE_VERSION})",
            path.display(),
            st.version
        ),
        Err(e) => Ok(Read::Unusable(
            anyhow::Error::new(e).context(format!("parsing {}", path.display())),
        )),
    }
}

/// Writes `dir/name` crash-safe, with permissions `mode` (less the umask): a temporary file
/// `name.tmp` beside it, fsync, rename over the old one, fsync of the directory. A crash at
/// any point leaves the old file or the new one. The one atomic write of the daemon (the
/// state file, the conntrack file, the pods' resolv.conf).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    let path = dir.join(name);
    fs::rename(&tmp, &path).with_context(|| format!("renaming {} into place", tmp.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vswitchd-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_then_load_round_trips() {
        let d = tempdir("rt");
        let store = Store::open(&d, &d.join("sock")).unwrap();
        assert_eq!(store.load().unwrap().ports.len(), 0);
        let st = PersistedState {
            version: STATE_VERSION,
            pod_cidr: "198.18.1.0/24".into(),
            ports: vec![PortRecord {
                name: "a".into(),
                namespace: "default".into(),
                netns: "/var/run/netns/a".into(),
                ifname: "eth0".into(),
                ip: "198.18.1.2".parse().unwrap(),
                prefix_len: 24,
                mac: "0a:58:c6:12:01:02".into(),
                labels: BTreeMap::new(),
                container_id: Some("c0ffee".into()),
                runtime_name: None,
                runtime_namespace: None,
            }],
            peers: vec![],
            last_allocated: Some("198.18.1.2".parse().unwrap()),
            services: vec![ServiceRecord {
                name: "nginx-service".into(),
                namespace: "default".into(),
                vip: "198.19.96.20".parse().unwrap(),
                ports: vec![ServicePortRecord {
                    name: "http".into(),
                    port: 80,
                    target_port: 8080,
                    protocol: "tcp".into(),
                }],
                selector: [("app".to_string(), "nginx".to_string())].into(),
                endpoints: vec![EndpointRecord {
                    ip: "198.18.2.5".parse().unwrap(),
                    port: Some(80),
                }],
                affinity_seconds: Some(10800),
                from_datastore: true,
            }],
            namespaces: vec![NamespaceRecord {
                name: "team-a".into(),
                labels: [("team".to_string(), "a".to_string())].into(),
                created_unix: 1_700_000_000,
                from_datastore: false,
            }],
        };
        store.save(&st).unwrap();
        assert_eq!(store.load().unwrap(), st);
        drop(store);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn state_without_services_loads() {
        let d = tempdir("nosvc");
        let store = Store::open(&d, &d.join("sock")).unwrap();
        fs::write(
            d.join("state.json"),
            r#"{"version":1,"pod_cidr":"198.18.1.0/24","ports":[],"peers":[],"last_allocated":null}"#,
        )
        .unwrap();
        let st = store.load().unwrap();
        assert!(st.services.is_empty());
        drop(store);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn write_atomic_replaces_the_file_with_its_mode_and_leaves_no_temporary() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempdir("atomic");
        fs::create_dir_all(&d).unwrap();
        for (text, mode) in [("one\n", 0o600), ("two\n", 0o644)] {
            fs::remove_file(d.join("f")).ok();
            write_atomic(&d, "f", text.as_bytes(), mode).unwrap();
            assert_eq!(fs::read_to_string(d.join("f")).unwrap(), text);
            let got = fs::metadata(d.join("f")).unwrap().permissions().mode() & 0o777;
            assert_eq!(got & !mode, 0, "{got:o} has bits {mode:o} does not");
            assert!(got & 0o600 == 0o600, "{got:o}");
        }
        write_atomic(&d, "f", b"three\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(d.join("f")).unwrap(), "three\n");
        assert!(!d.join("f.tmp").exists());
        let err = write_atomic(&d.join("missing"), "f", b"x", 0o600).unwrap_err();
        assert!(format!("{err:#}").contains("missing/f.tmp"), "{err:#}");
        fs::remove_dir_all(&d).unwrap();
    }

    fn state_with(ports: &[&str]) -> PersistedState {
        PersistedState {
            version: STATE_VERSION,
            pod_cidr: "198.18.1.0/24".into(),
            ports: ports
                .iter()
                .enumerate()
                .map(|(i, n)| PortRecord {
                    name: n.to_string(),
                    namespace: "default".into(),
                    netns: format!("/var/run/netns/{n}"),
                    ifname: "eth0".into(),
                    ip: Ipv4Addr::new(198, 18, 1, 2 + i as u8),
                    prefix_len: 24,
                    mac: "0a:58:c6:12:01:02".into(),
                    labels: BTreeMap::new(),
                    container_id: None,
                    runtime_name: None,
                    runtime_namespace: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn every_save_keeps_the_state_it_replaces() {
        let d = tempdir("prev");
        let store = Store::open(&d, &d.join("sock")).unwrap();
        let (one, two, three) = (
            state_with(&["a"]),
            state_with(&["a", "b"]),
            state_with(&["b"]),
        );
        store.save(&one).unwrap();
        assert!(!d.join(PREV_FILE).exists(), "nothing before the first save");
        store.save(&two).unwrap();
        let prev: PersistedState =
            serde_json::from_slice(&fs::read(d.join(PREV_FILE)).unwrap()).unwrap();
        assert_eq!(prev, one);
        store.save(&three).unwrap();
        let prev: PersistedState =
            serde_json::from_slice(&fs::read(d.join(PREV_FILE)).unwrap()).unwrap();
        assert_eq!(prev, two);
        assert_eq!(store.load().unwrap(), three);
        assert!(!d.join(format!("{PREV_FILE}.tmp")).exists());
        drop(store);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_state_falls_back_to_the_previous_one() {
        for damage in [
            &b""[..],
            b"{\"version\":1,\"pod_cidr\":\"198.18",
            b"\0\0\0\0",
            b"[]",
        ] {
            let d = tempdir("fallback");
            let (one, two) = (state_with(&["a"]), state_with(&["a", "b"]));
            {
                let store = Store::open(&d, &d.join("sock")).unwrap();
                store.save(&one).unwrap();
                store.save(&two).unwrap();
            }
            fs::write(d.join(STATE_FILE), damage).unwrap();
            let store = Store::open(&d, &d.join("sock")).unwrap();
            assert_eq!(store.load().unwrap(), one, "{damage:?}");
            // Loading again says the same (the datastore's start loads twice).
            assert_eq!(store.load().unwrap(), one, "{damage:?}");
            assert_eq!(fs::read(d.join(CORRUPT_FILE)).unwrap(), damage);
            // The next save must not keep the damaged file as the previous state.
            let three = state_with(&["c"]);
            store.save(&three).unwrap();
            let prev: PersistedState =
                serde_json::from_slice(&fs::read(d.join(PREV_FILE)).unwrap()).unwrap();
            assert_eq!(prev, one, "{damage:?}");
            assert_eq!(store.load().unwrap(), three);
            // From now on state.json is good again: the next save keeps it.
            store.save(&one).unwrap();
            let prev: PersistedState =
                serde_json::from_slice(&fs::read(d.join(PREV_FILE)).unwrap()).unwrap();
            assert_eq!(prev, three);
            drop(store);
            fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn nothing_usable_is_refused_with_what_to_do() {
        let d = tempdir("unusable");
        let store = Store::open(&d, &d.join("sock")).unwrap();
        // A damaged state.json, no previous state.
        fs::write(d.join(STATE_FILE), b"{\"version\":1,").unwrap();
        let e = format!("{:#}", store.load().unwrap_err());
        assert!(
            e.contains("state.json is unusable") && e.contains("parsing"),
            "{e}"
        );
        assert!(
            e.contains(&format!("move {}", d.join(STATE_FILE).display())),
            "{e}"
        );
        // Both damaged.
        fs::write(d.join(PREV_FILE), b"").unwrap();
        let e = format!("{:#}", store.load().unwrap_err());
        assert!(
            e.contains("neither") && e.contains(PREV_FILE) && e.contains("move both"),
            "{e}"
        );
        // Missing state.json, damaged previous state.
        fs::remove_file(d.join(STATE_FILE)).unwrap();
        let e = format!("{:#}", store.load().unwrap_err());
        assert!(
            e.contains(&format!("move {}", d.join(PREV_FILE).display())),
            "{e}"
        );
        // Missing state.json, good previous state: used.
        fs::write(
            d.join(PREV_FILE),
            serde_json::to_vec(&state_with(&["a"])).unwrap(),
        )
        .unwrap();
        assert_eq!(store.load().unwrap(), state_with(&["a"]));
        // Another format version is refused, not taken for damage.
        fs::write(
            d.join(STATE_FILE),
            br#"{"version":9,"pod_cidr":"","ports":[],"peers":[],"last_allocated":null}"#,
        )
        .unwrap();
        let e = format!("{:#}", store.load().unwrap_err());
        assert!(e.contains("state version 9 is not supported"), "{e}");
        drop(store);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn second_instance_is_refused() {
        let d = tempdir("lock");
        let first = Store::open(&d, &d.join("sock")).unwrap();
        let err = Store::open(&d, &d.join("sock")).err().unwrap().to_string();
        assert!(err.contains("another vswitchd"), "{err}");
        drop(first);
        fs::remove_dir_all(&d).unwrap();
    }
}
