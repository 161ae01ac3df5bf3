//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19+): buffers handed to the
//! kernel in advance, from which multishot operations (`READ_MULTISHOT` on a TAP, 6.7+)
//! pick one per completion; the completion names the buffer id it used.
//!
//! Hand-written over the io-uring crate's registration call: the crate leaves the ring's
//! memory layout (shared with the kernel) to the caller.
//!
//! Layout (the kernel's `struct io_uring_buf_ring`): `entries` slots of 16 bytes
//! `{ addr: u64, len: u32, bid: u16, resv: u16 }`; the `resv` of slot 0 doubles as the ring's
//! tail, which the application advances (store-release) to publish new slots.

use io_uring::IoUring;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::sync::atomic::{AtomicU16, Ordering};

const SLOT: usize = 16;

/// A registered provided-buffer ring. Must outlive its registration: drop it only after
/// [`BufRing::unregister`] or after the `IoUring` itself is dropped.
pub struct BufRing {
    mem: *mut u8,
    layout: Layout,
    entries: u16,
    bgid: u16,
    /// Slots written so far (published or not); wraps like the kernel's u16 tail.
    tail: u16,
}

impl BufRing {
    /// Allocates `entries` (a power of two, at most 32768) slots and registers them as
    /// buffer group `bgid` of `ring`.
    pub fn new(ring: &IoUring, entries: u16, bgid: u16) -> std::io::Result<BufRing> {
        assert!(entries.is_power_of_two() && entries <= 32768);
        let layout = Layout::from_size_align(usize::from(entries) * SLOT, 4096)
            .map_err(std::io::Error::other)?;
        // SAFETY: the layout has a non-zero size (entries >= 1) and a valid alignment.
        let mem = unsafe { alloc_zeroed(layout) };
        if mem.is_null() {
            return Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory));
        }
        // SAFETY: `mem` is a zeroed, page-aligned allocation of `entries` slots that lives
        // until `drop`, which the caller orders after unregistering or dropping the ring.
        let reg = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(mem as u64, entries, bgid, 0)
        };
        if let Err(e) = reg {
            // SAFETY: allocated above with this layout, never shared (registration failed).
            unsafe { dealloc(mem, layout) };
            return Err(e);
        }
        Ok(BufRing {
            mem,
            layout,
            entries,
            bgid,
            tail: 0,
        })
    }

    /// The buffer group id operations name to pick from this ring.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Writes a slot offering `len` bytes at `addr` as buffer `bid`; visible to the kernel
    /// after [`BufRing::publish`]. The caller must not offer more buffers than `entries` at
    /// once, and must keep the memory valid until a completion hands `bid` back.
    pub fn push(&mut self, addr: *mut u8, len: u32, bid: u16) {
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `idx < entries`, so the 16-byte slot lies inside the allocation; only
        // `addr`, `len` and `bid` are written (never `resv`, which in slot 0 is the tail the
        // kernel reads); the kernel does not read a slot before the tail publishes it.
        unsafe {
            let slot = self.mem.add(idx * SLOT);
            std::ptr::write_unaligned(slot.cast::<u64>(), addr as u64);
            std::ptr::write_unaligned(slot.add(8).cast::<u32>(), len);
            std::ptr::write_unaligned(slot.add(12).cast::<u16>(), bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every slot pushed so far visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: bytes 14..16 of slot 0 are the ring's tail, 2-byte aligned inside a
        // page-aligned allocation; the kernel reads it with an acquire load, hence the
        // release store through an atomic view.
        let tail = unsafe { &*(self.mem.add(14).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Unregisters the ring from `ring` (before the memory may go).
    pub fn unregister(&self, ring: &IoUring) {
        let _ = ring.submitter().unregister_buf_ring(self.bgid);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; by contract the kernel no longer uses
        // it (unregistered, or the ring is gone).
        unsafe { dealloc(self.mem, self.layout) };
    }
}
