//! The service NAT state on disk: `conntrack.json` in the state directory, so that
//! connections through Service VIPs survive a restart of the daemon.
//!
//! - Written crash-safe ([`crate::state::write_atomic`]) on a graceful stop, after the I/O
//!   engine has stopped (nothing changes after the snapshot), and every second from a
//!   blocking task (never on the packet thread, never blocking the control plane) when the
//!   datapath's conntrack generation moved, or every [`REFRESH`] to keep the lifetimes
//!   current. A SIGKILL loses at most the last second's new connections and state changes.
//! - Read at start, against the recovered tables before they are installed (the tunnel is
//!   served from the start: a reply must meet its connection as soon as it meets its
//!   client's port) and before the pods' TAPs are served: the datapath validates every
//!   record against them (entries whose client, service port or endpoint is gone are
//!   dropped) and the file's age on the wall clock is taken off every lifetime. A file that does not parse is set aside as `conntrack.json.bad` and
//!   nothing is restored; a record that does not parse is skipped and counted.

use crate::state::write_atomic;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};
use vswitch_datapath::{AffinityRecord, ConnRecord, CtImport, CtSnapshot, Datapath, Tables};

/// The file's name in the state directory.
pub const FILE: &str = "conntrack.json";
/// Version of the file format.
const VERSION: u32 = 1;
/// How often the file is rewritten even without changes (lifetimes move on).
const REFRESH: Duration = Duration::from_secs(60);

/// The file as written.
#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    /// Wall-clock time of the snapshot, ms since the epoch.
    saved_unix_ms: u64,
    #[serde(flatten)]
    snapshot: &'a CtSnapshot,
}

/// The file as read: records one by one, so that a bad one costs only itself.
#[derive(Deserialize)]
struct FileIn {
    version: u32,
    saved_unix_ms: u64,
    #[serde(default)]
    snat_cursor: u32,
    #[serde(default)]
    conns: Vec<serde_json::Value>,
    #[serde(default)]
    affinities: Vec<serde_json::Value>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What was last written.
struct Written {
    generation: Option<u64>,
    at: Instant,
    entries: usize,
}

/// Saves and restores `conntrack.json` for one datapath.
pub struct Checkpointer {
    dir: PathBuf,
    datapath: Arc<Datapath>,
    /// The datapath's clock origin.
    epoch: Instant,
    /// Held while writing: the final save waits for a periodic one in progress.
    written: Mutex<Written>,
    /// Set by the final save: no periodic save after it.
    stopped: AtomicBool,
}

impl Checkpointer {
    pub fn new(dir: PathBuf, datapath: Arc<Datapath>, epoch: Instant) -> Checkpointer {
        Checkpointer {
            dir,
            datapath,
            epoch,
            written: Mutex::new(Written {
                generation: None,
                at: Instant::now(),
                entries: 0,
            }),
            stopped: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Writes the current state; the caller holds `written`.
    fn write(&self, w: &mut Written) -> Result<usize> {
        let generation = self.datapath.conntrack_generation();
        let snapshot = self.datapath.export_conntrack(self.now_ms());
        let out = FileOut {
            version: VERSION,
            saved_unix_ms: unix_ms(),
            snapshot: &snapshot,
        };
        let bytes = serde_json::to_vec(&out)?;
        write_atomic(&self.dir, FILE, &bytes, 0o600)?;
        let entries = snapshot.conns.len() + snapshot.affinities.len();
        *w = Written {
            generation: Some(generation),
            at: Instant::now(),
            entries,
        };
        Ok(snapshot.conns.len())
    }

    /// The periodic checkpoint (blocking: run it off the runtime): writes when the state
    /// changed since the last write, or when the last write holds entries and is older than
    /// [`REFRESH`].
    pub fn tick(&self) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if self.stopped.load(Relaxed) {
            return;
        }
        let changed = w.generation != Some(self.datapath.conntrack_generation());
        if changed || (w.entries > 0 && w.at.elapsed() >= REFRESH) {
            if let Err(e) = self.write(&mut w) {
                warn!("conntrack checkpoint: {e:#}");
            }
        }
    }

    /// The last save, on a graceful stop once the I/O engine has stopped: no periodic save
    /// follows it.
    pub fn final_save(&self) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        self.stopped.store(true, Relaxed);
        match self.write(&mut w) {
            Ok(n) => info!(connections = n, "conntrack saved to {FILE}"),
            Err(e) => warn!("saving conntrack: {e:#}"),
        }
    }

    /// Restores the saved state into the datapath, checked against `tables` (the snapshot
    /// about to be installed: restore, then install); logs one line.
    pub fn restore(&self, tables: &Tables) -> CtImport {
        let path = self.dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                info!("conntrack: no {FILE}, nothing restored");
                return CtImport::default();
            }
            Err(e) => {
                warn!(
                    "conntrack: reading {}: {e}; nothing restored",
                    path.display()
                );
                return CtImport::default();
            }
        };
        let file = match parse(&bytes) {
            Ok(f) => f,
            Err(e) => {
                let bad = self.dir.join(format!("{FILE}.bad"));
                let _ = std::fs::rename(&path, &bad);
                warn!(
                    "conntrack: {}: {e:#}; nothing restored (set aside as {})",
                    path.display(),
                    bad.display()
                );
                return CtImport::default();
            }
        };
        let mut unparsed = 0;
        let conns: Vec<ConnRecord> = records(file.conns, &mut unparsed);
        let affinities: Vec<AffinityRecord> = records(file.affinities, &mut unparsed);
        let snapshot = CtSnapshot {
            conns,
            affinities,
            snat_cursor: file.snat_cursor,
        };
        let age_ms = unix_ms().saturating_sub(file.saved_unix_ms);
        let mut r = self
            .datapath
            .import_conntrack_for(tables, &snapshot, age_ms, self.now_ms());
        r.invalid += unparsed;
        info!(
            connections = r.conns,
            affinities = r.affinities,
            invalid = r.invalid,
            stale = r.stale,
            expired = r.expired,
            duplicate = r.duplicate,
            over_limit = r.over_limit,
            age_ms,
            "conntrack: restored {} connections from {FILE}",
            r.conns
        );
        r
    }
}

/// The records of `values` that parse as `T`; counts the others in `bad`.
fn records<T: serde::de::DeserializeOwned>(
    values: Vec<serde_json::Value>,
    bad: &mut usize,
) -> Vec<T> {
    values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).map_err(|_| *bad += 1).ok())
        .collect()
}

fn parse(bytes: &[u8]) -> Result<FileIn> {
    let f: FileIn = serde_json::from_slice(bytes).context("does not parse")?;
    if f.version != VERSION {
        anyhow::bail!(
            "version {} is not supported (expected {VERSION})",
            f.version
        );
    }
    Ok(f)
}

/// Expires idle conntrack entries and affinities and checkpoints the table, once a second,
/// off the control plane's thread.
pub async fn run(ck: Arc<Checkpointer>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ck = ck.clone();
        let _ = tokio::task::spawn_blocking(move || {
            ck.datapath.expire(ck.now_ms());
            ck.tick();
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_datapath::{Ipv4Cidr, NodeConfig};

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vswitchd-ct-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn checkpointer(dir: &std::path::Path) -> Checkpointer {
        let cidr: Ipv4Cidr = crate::checked::cidr("cidr", "198.18.1.0/24").unwrap();
        let dp = Arc::new(Datapath::new(NodeConfig::for_subnet(cidr, 1450)));
        Checkpointer::new(dir.to_path_buf(), dp, Instant::now())
    }

    #[test]
    fn writes_on_change_and_not_after_the_final_save() {
        let d = tempdir("tick");
        let ck = checkpointer(&d);
        ck.tick();
        let text = std::fs::read_to_string(d.join(FILE)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        assert!(v["conns"].as_array().unwrap().is_empty());
        std::fs::remove_file(d.join(FILE)).unwrap();
        ck.tick();
        assert!(!d.join(FILE).exists(), "no change, no write");
        ck.final_save();
        assert!(d.join(FILE).exists());
        std::fs::remove_file(d.join(FILE)).unwrap();
        ck.tick();
        assert!(!d.join(FILE).exists(), "nothing after the final save");
        assert!(!d.join(format!("{FILE}.tmp")).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_files_and_records_restore_nothing_bad() {
        let d = tempdir("bad");
        let ck = checkpointer(&d);
        assert_eq!(
            ck.restore(&Tables::default()),
            CtImport::default(),
            "no file"
        );
        std::fs::write(d.join(FILE), b"{\"version\":1,\"saved_unix_ms\":").unwrap();
        assert_eq!(
            ck.restore(&Tables::default()),
            CtImport::default(),
            "truncated"
        );
        assert!(d.join(format!("{FILE}.bad")).exists(), "set aside");
        std::fs::write(d.join(FILE), br#"{"version":9,"saved_unix_ms":0}"#).unwrap();
        assert_eq!(
            ck.restore(&Tables::default()),
            CtImport::default(),
            "another version"
        );
        // Records of the wrong shape are counted; the datapath rejects the rest (no tables).
        let file = format!(
            r#"{{"version":1,"saved_unix_ms":{},"snat_cursor":7,"conns":[
                {{"proto":"sctp"}}, 42,
                {{"proto":"tcp","client":"198.18.1.2:1000","service":"198.19.96.20:80",
                  "endpoint":"198.18.1.3:8080","reply_to":"198.18.1.2:1000",
                  "state":"established","assured":true,"expires_in_ms":1000}}],
                "affinities":[{{"client":"x"}}]}}"#,
            unix_ms()
        );
        std::fs::write(d.join(FILE), file).unwrap();
        let r = ck.restore(&Tables::default());
        assert_eq!((r.conns, r.invalid, r.stale), (0, 3, 1), "{r:?}");
        assert_eq!(ck.datapath.conntrack_len(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
