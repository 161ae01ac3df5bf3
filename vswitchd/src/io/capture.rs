//! The engines' capture tap: where a running capture gets its frames from.
//!
//! Contract:
//! - Free when no capture runs: the engine core loads [`CaptureHub::sessions`] once per batch
//!   (one relaxed atomic load when none is active) and, per frame, only tests the `Option`
//!   it got.
//! - Bounded when one runs: each capture ([`Session`]) has a queue of at most
//!   [`QUEUE_FRAMES`] frames and [`QUEUE_BYTES`] bytes. The engine never waits for it: a
//!   matching frame that does not fit is counted in [`Session::lost`] and forwarding goes on.
//!   The copy (and, for the tunnel, the synthesized outer headers) is the only work per
//!   captured frame; the filter ([`vswitch_datapath::capture::Filter`]) runs first.
//! - A capture is forgotten when its [`Capture`] handle is dropped (the client went away,
//!   or the capture ended): the engines stop copying at their next batch.
//!
//! Where the engine taps (see `core.rs`): a port's frames as read from its TAP, before the
//! datapath looks at them (`in`), and as written to it, after every rewrite (`out`); the
//! tunnel's datagrams as received (after a UDP GRO receive is split: each datagram as it was
//! on the wire) and as sent (a segmented super-frame as its datagrams). Frames are not
//! segmented for a capture: a TSO/GRO super-frame of a port is one record with its real
//! length, up to 64 KiB, as tcpdump on a host with offloads shows them.

use arc_swap::ArcSwap;
use std::net::SocketAddrV4;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use vswitch_datapath::capture::{tunnel_frame, Filter, TUNNEL_HDRS_LEN};
use vswitch_datapath::PortId;
use vswitch_proto::capture::{Direction, MAX_CAPTURED_FRAME};

/// Most frames waiting in one capture's queue.
pub const QUEUE_FRAMES: usize = 1024;
/// Most bytes waiting in one capture's queue.
pub const QUEUE_BYTES: usize = 8 << 20;

/// What a capture listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One pod's port, both directions.
    Port(PortId),
    /// The tunnel socket, both directions.
    Tunnel,
}

/// A frame a capture took: a whole Ethernet frame.
pub struct Captured {
    pub dir: Direction,
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub data: Vec<u8>,
}

/// One running capture as the engines see it.
pub struct Session {
    pub target: Target,
    filter: Filter,
    tx: tokio::sync::mpsc::Sender<Captured>,
    /// Bytes in the queue.
    queued: AtomicUsize,
    /// Matching frames that did not fit the queue.
    lost: AtomicU64,
}

impl Session {
    /// A port's frame (`frame`: the Ethernet frame, no vnet header).
    pub fn port_frame(&self, dir: Direction, frame: &[u8]) {
        if self.filter.matches(frame) {
            self.offer(dir, frame.len(), |v| v.extend_from_slice(frame));
        }
    }

    /// A tunnel datagram (`payload`: the VXLAN header and the inner frame) from `src` to
    /// `dst`, written with synthesized outer headers.
    pub fn tunnel_datagram(
        &self,
        dir: Direction,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
    ) {
        if self.filter.matches_tunnel(*src.ip(), *dst.ip(), payload) {
            let len = TUNNEL_HDRS_LEN + payload.len();
            self.offer(dir, len, |v| tunnel_frame(src, dst, payload, v));
        }
    }

    /// Queues a frame of `len` bytes that `fill` writes, or counts it lost.
    fn offer(&self, dir: Direction, len: usize, fill: impl FnOnce(&mut Vec<u8>)) {
        let len = len.min(MAX_CAPTURED_FRAME);
        if self.queued.load(Relaxed) + len > QUEUE_BYTES {
            self.lost.fetch_add(1, Relaxed);
            return;
        }
        let mut data = Vec::with_capacity(len);
        fill(&mut data);
        data.truncate(MAX_CAPTURED_FRAME);
        let ts_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        // Counted before the send, so that the reader's subtraction never comes first.
        let n = data.len();
        self.queued.fetch_add(n, Relaxed);
        if self.tx.try_send(Captured { dir, ts_ns, data }).is_err() {
            self.queued.fetch_sub(n, Relaxed);
            self.lost.fetch_add(1, Relaxed);
        }
    }
}

/// The captures running on this node, shared by the engines and the control plane.
#[derive(Default)]
pub struct CaptureHub {
    /// True while at least one capture runs: the engines' one load per batch.
    active: AtomicBool,
    sessions: ArcSwap<Vec<Arc<Session>>>,
    /// Serialises changes of `sessions`.
    change: Mutex<()>,
}

/// The running captures, as an engine holds them for one batch.
pub type Sessions = Arc<Vec<Arc<Session>>>;

impl CaptureHub {
    /// The running captures, or `None` (the common case, one relaxed load) when there are
    /// none.
    #[inline]
    pub fn sessions(&self) -> Option<Sessions> {
        if self.active.load(Relaxed) {
            Some(self.sessions.load_full())
        } else {
            None
        }
    }

    /// Starts a capture of `target` through `filter`.
    pub fn start(self: &Arc<Self>, target: Target, filter: Filter) -> Capture {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_FRAMES);
        let session = Arc::new(Session {
            target,
            filter,
            tx,
            queued: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
        });
        self.change(|v| v.push(Arc::clone(&session)));
        Capture {
            hub: Arc::clone(self),
            session,
            rx,
        }
    }

    fn change(&self, f: impl FnOnce(&mut Vec<Arc<Session>>)) {
        let _g = self.change.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Arc<Session>> = self.sessions.load().as_ref().clone();
        f(&mut v);
        self.active.store(!v.is_empty(), Relaxed);
        self.sessions.store(Arc::new(v));
    }
}

/// A running capture, as the control plane holds it; dropping it ends the capture.
pub struct Capture {
    hub: Arc<CaptureHub>,
    session: Arc<Session>,
    rx: tokio::sync::mpsc::Receiver<Captured>,
}

impl Capture {
    /// The next captured frame (never `None` while the capture runs).
    pub async fn recv(&mut self) -> Option<Captured> {
        let c = self.rx.recv().await?;
        self.session.queued.fetch_sub(c.data.len(), Relaxed);
        Some(c)
    }

    /// A frame already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Captured> {
        let c = self.rx.try_recv().ok()?;
        self.session.queued.fetch_sub(c.data.len(), Relaxed);
        Some(c)
    }

    /// Matching frames that did not fit the queue so far.
    pub fn lost(&self) -> u64 {
        self.session.lost.load(Relaxed)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.hub
            .change(|v| v.retain(|s| !Arc::ptr_eq(s, &self.session)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use vswitch_datapath::capture::Term;

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
        f
    }

    #[test]
    fn no_capture_no_sessions_and_a_dropped_capture_is_forgotten() {
        let hub = Arc::new(CaptureHub::default());
        assert!(hub.sessions().is_none());
        let a = hub.start(Target::Tunnel, Filter::default());
        let b = hub.start(Target::Port(PortId::new(3)), Filter::default());
        assert_eq!(hub.sessions().unwrap().len(), 2);
        drop(a);
        let s = hub.sessions().unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].target, Target::Port(PortId::new(3)));
        drop(b);
        assert!(hub.sessions().is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn frames_are_filtered_queued_and_bounded() {
        let hub = Arc::new(CaptureHub::default());
        let mut arp = hub.start(Target::Tunnel, Filter::new(vec![Term::Arp]));
        let s = Arc::clone(&hub.sessions().unwrap()[0]);
        let mut ip = frame(60);
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        s.port_frame(Direction::In, &ip);
        assert!(arp.try_recv().is_none(), "filtered out");
        s.port_frame(Direction::Out, &frame(60));
        let got = arp.recv().await.unwrap();
        assert_eq!((got.dir, got.data.len()), (Direction::Out, 60));
        assert!(got.ts_ns > 0);
        // The frame count bound, then the byte bound: what does not fit is lost.
        for _ in 0..QUEUE_FRAMES + 5 {
            s.port_frame(Direction::In, &frame(60));
        }
        assert_eq!(arp.lost(), 5);
        while arp.try_recv().is_some() {}
        let big = frame(60_000);
        let fits = QUEUE_BYTES / 60_000;
        for _ in 0..fits + 3 {
            s.port_frame(Direction::In, &big);
        }
        assert_eq!(arp.lost(), 8);
        let mut n = 0;
        while arp.try_recv().is_some() {
            n += 1;
        }
        assert_eq!(n, fits);
    }

    #[test]
    fn tunnel_datagrams_get_outer_headers() {
        let hub = Arc::new(CaptureHub::default());
        let mut cap = hub.start(Target::Tunnel, Filter::default());
        let s = Arc::clone(&hub.sessions().unwrap()[0]);
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 2), 4789);
        let dst = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 1), 4789);
        s.tunnel_datagram(Direction::In, src, dst, &[0x08, 0, 0, 0, 0, 0, 1, 0]);
        let got = cap.try_recv().unwrap();
        assert_eq!(got.data.len(), TUNNEL_HDRS_LEN + 8);
        assert_eq!(&got.data[26..34], &[198, 19, 0, 2, 198, 19, 0, 1]);
    }
}
