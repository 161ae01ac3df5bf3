//! The service NAT state on disk: `conntrack.json` in the state directory, so that
//! connections through Service VIPs survive a restart of the daemon.
//!
//! - Written crash-safe ([`crate::state::write_atomic`]) on a graceful stop, after the I/O
//!   engine has stopped (nothing changes after the snapshot), and periodically from a
//!   blocking task (never on the packet thread, never blocking the control plane) when the
//!   datapath's conntrack generation moved, or every [`REFRESH`] to keep the lifetimes
//!   current.
//! - The periodic writes are whole-file rewrites, rate-limited by size ([`write_interval`]):
//!   after a write of `B` bytes the next one waits `max(1 s, B / MAX_WRITE_RATE)`, so that
//!   the checkpoint averages at most [`MAX_WRITE_RATE`] (1 MiB/s) of disk writes however
//!   fast a pod churns connections (at 65,536 entries, about 10 MB, one write every ~10 s
//!   instead of 10 MB every second). The price is the loss window: a SIGKILL loses the new
//!   connections and state changes since the last write, at most `max(1 s, B / 1 MiB/s)`
//!   plus the tick (1 s): about 2 s for a table of a few thousand entries, about 11 s
//!   for a full default table.
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
/// Most bytes a second the periodic checkpoint writes, on average (see [`write_interval`]).
pub const MAX_WRITE_RATE: u64 = 1 << 20;
/// Shortest time between two periodic writes.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How long after a periodic write of `bytes` bytes the next one may happen: long enough
/// that the writes average at most [`MAX_WRITE_RATE`] bytes a second, and at least
/// [`MIN_INTERVAL`]. This is also the loss window of a SIGKILL (plus the one-second tick).
pub fn write_interval(bytes: u64) -> Duration {
    let ms = bytes.saturating_mul(1000) / MAX_WRITE_RATE;
    Duration::from_millis(ms).max(MIN_INTERVAL)
}

/// Whether the periodic checkpoint writes now, `since` after its last write of `bytes`
/// bytes holding `entries` entries (`None`: nothing written yet), with the table `changed`
/// since: when the table changed or the last write holds entries older than [`REFRESH`],
/// and not before [`write_interval`] has passed.
pub fn write_due(changed: bool, last: Option<(Duration, u64, usize)>) -> bool {
    let Some((since, bytes, entries)) = last else {
        return true;
    };
    since >= write_interval(bytes) && (changed || (entries > 0 && since >= REFRESH))
}

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
    /// The file's size.
    bytes: u64,
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
                bytes: 0,
            }),
            stopped: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Writes the current state; the caller holds `written`.
    fn write(&self, w: &mut Written, now: Instant) -> Result<usize> {
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
            at: now,
            entries,
            bytes: bytes.len() as u64,
        };
        Ok(snapshot.conns.len())
    }

    /// The periodic checkpoint (blocking: run it off the runtime): writes when
    /// [`write_due`] says so. True when it wrote.
    pub fn tick(&self) -> bool {
        self.tick_at(Instant::now())
    }

    /// [`Checkpointer::tick`] at time `now`.
    fn tick_at(&self, now: Instant) -> bool {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if self.stopped.load(Relaxed) {
            return false;
        }
        let changed = w.generation != Some(self.datapath.conntrack_generation());
        let last = w
            .generation
            .map(|_| (now.saturating_duration_since(w.at), w.bytes, w.entries));
        if !write_due(changed, last) {
            return false;
        }
        match self.write(&mut w, now) {
            Ok(_) => true,
            Err(e) => {
                warn!("conntrack checkpoint: {e:#}");
                // Retried no sooner than a write of that size would allow.
                w.at = now;
                false
            }
        }
    }

    /// The last save, on a graceful stop once the I/O engine has stopped: no periodic save
    /// follows it.
    pub fn final_save(&self) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        self.stopped.store(true, Relaxed);
        match self.write(&mut w, Instant::now()) {
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

    /// The schedule of periodic writes: a small table is written a second after it
    /// changed; a large one no more often than its size allows at [`MAX_WRITE_RATE`], so a
    /// table churning every second costs at most about 1 MiB/s of writes whatever its size.
    #[test]
    fn write_schedule_bounds_the_bytes_per_second() {
        let s = Duration::from_secs;
        assert_eq!(write_interval(0), s(1));
        assert_eq!(write_interval(200_000), s(1));
        assert_eq!(write_interval(10 * MAX_WRITE_RATE), s(10));
        assert_eq!(write_interval(100 * MAX_WRITE_RATE), s(100));
        // Nothing written yet: write.
        assert!(write_due(false, None));
        // Changed: due once the interval is over.
        assert!(!write_due(
            true,
            Some((Duration::from_millis(999), 1000, 5))
        ));
        assert!(write_due(true, Some((s(1), 1000, 5))));
        let big = 10 * MAX_WRITE_RATE;
        assert!(!write_due(true, Some((s(9), big, 65536))));
        assert!(write_due(true, Some((s(10), big, 65536))));
        // Unchanged: only the refresh, and only with entries.
        assert!(!write_due(false, Some((s(59), 1000, 5))));
        assert!(write_due(false, Some((s(60), 1000, 5))));
        assert!(!write_due(false, Some((s(600), 1000, 0))));
        // A run of ten minutes, the table changing every second, ticks every second.
        for (entries, per_entry) in [(1_000u64, 150u64), (65_536, 160), (1 << 20, 160)] {
            let bytes = entries * per_entry;
            let (mut last, mut written, mut writes) = (None, 0u64, 0u64);
            let run = 600;
            for t in 0..run {
                let now = s(t);
                let l = last.map(|(at, b, e): (Duration, u64, usize)| (now - at, b, e));
                if write_due(true, l) {
                    written += bytes;
                    writes += 1;
                    last = Some((now, bytes, entries as usize));
                }
            }
            // At most the bound on average, give or take the first write.
            assert!(
                written <= MAX_WRITE_RATE * run + bytes,
                "{entries} entries: {written} bytes in {run} s"
            );
            if bytes <= MAX_WRITE_RATE {
                assert_eq!(writes, run, "a small table is written every second");
            }
        }
    }

    /// The checkpointer follows the schedule: after a write, an unchanged empty table is not
    /// written again, and a changed one not before the interval.
    #[test]
    fn the_checkpointer_follows_the_schedule() {
        let d = tempdir("sched");
        let ck = checkpointer(&d);
        let t0 = Instant::now();
        assert!(ck.tick_at(t0));
        assert!(
            !ck.tick_at(t0 + Duration::from_secs(120)),
            "unchanged, no entries"
        );
        // Pretend the last write was large and the table changed.
        {
            let mut w = ck.written.lock().unwrap();
            w.bytes = 5 * MAX_WRITE_RATE;
            w.generation = Some(u64::MAX);
            w.at = t0;
        }
        assert!(!ck.tick_at(t0 + Duration::from_secs(4)));
        assert!(ck.tick_at(t0 + Duration::from_secs(5)));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
