//! Packet buffers with headroom, and the virtio-net header that TAPs opened with
//! `IFF_VNET_HDR` put in front of every frame.
//!
//! Layout of a [`PacketBuf`]: `[ headroom | frame | tailroom ]`. A TAP read lands at
//! `HEADROOM - VNET_HDR_LEN` so that the virtio-net header sits right before the frame; the
//! header is parsed into [`PacketBuf::vnet`] and written back right before the (possibly moved)
//! frame start when the buffer goes out to a TAP. Headers are pushed and pulled in place
//! ([`PacketBuf::push_front`], [`PacketBuf::pull_front`]): the payload is never copied.

/// Length of the virtio-net header (`struct virtio_net_hdr`, without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// Room kept in front of a frame for headers pushed in place (VXLAN) and the vnet header.
pub const HEADROOM: usize = 64;
/// Largest frame a TAP with TSO hands us (a 64 KiB IP packet plus its Ethernet header).
pub const MAX_FRAME: usize = 65535 + 14 + 4;
/// Bytes allocated per buffer.
pub const BUF_CAPACITY: usize = HEADROOM + MAX_FRAME + 64;
// The constant ranges of the regions below lie inside every buffer.
const _: () = assert!(VNET_HDR_LEN <= HEADROOM && HEADROOM < BUF_CAPACITY);

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
pub const VNET_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: checksums were verified.
pub const VNET_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VNET_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const VNET_GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`.
pub const VNET_GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const VNET_GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO).
pub const VNET_GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN` flag bit of `gso_type`.
pub const VNET_GSO_ECN: u8 = 0x80;

/// `struct virtio_net_hdr` (little-endian on the wire, as TAPs use it on x86 and arm64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VNET_F_*` flags.
    pub flags: u8,
    /// `VNET_GSO_*` type.
    pub gso_type: u8,
    /// Length of the headers to copy into each segment.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (offset from the frame start).
    pub csum_start: u16,
    /// Where the checksum is stored, relative to `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parses a header; `b` must hold at least [`VNET_HDR_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let [flags, gso_type, h0, h1, g0, g1, s0, s1, o0, o1] =
            crate::wire::bytes_at::<VNET_HDR_LEN>(b, 0).ok()?;
        Some(VnetHdr {
            flags,
            gso_type,
            hdr_len: u16::from_le_bytes([h0, h1]),
            gso_size: u16::from_le_bytes([g0, g1]),
            csum_start: u16::from_le_bytes([s0, s1]),
            csum_offset: u16::from_le_bytes([o0, o1]),
        })
    }

    /// The header's [`VNET_HDR_LEN`] bytes.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let [h0, h1] = self.hdr_len.to_le_bytes();
        let [g0, g1] = self.gso_size.to_le_bytes();
        let [s0, s1] = self.csum_start.to_le_bytes();
        let [o0, o1] = self.csum_offset.to_le_bytes();
        [self.flags, self.gso_type, h0, h1, g0, g1, s0, s1, o0, o1]
    }

    /// Writes the header into `b` (exactly [`VNET_HDR_LEN`] bytes: a shorter buffer does
    /// not type-check).
    pub fn write(&self, b: &mut [u8; VNET_HDR_LEN]) {
        *b = self.to_bytes();
    }

    /// True when the frame is a GSO super-frame that must be segmented before the wire.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !VNET_GSO_ECN != VNET_GSO_NONE
    }

    /// True when the frame carries a partial checksum to be completed before the wire.
    pub fn needs_csum(&self) -> bool {
        self.flags & VNET_F_NEEDS_CSUM != 0
    }
}

/// One packet buffer: owned storage with headroom, a frame window and its vnet header.
///
/// The storage never moves or reallocates, so the I/O shell may hand its address to the
/// kernel (io_uring) while the buffer is in flight.
///
/// Invariant, established by the constructors and kept by every method (checked by the
/// `window_invariant_holds` property test): `VNET_HDR_LEN <= start <= end <= BUF_CAPACITY`.
/// It is what makes the frame accessors and [`PacketBuf::tap_write_region`] infallible.
pub struct PacketBuf {
    data: Box<[u8; BUF_CAPACITY]>,
    start: usize,
    end: usize,
    /// The virtio-net header of the frame (all zero for frames that did not come from a TAP).
    pub vnet: VnetHdr,
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBuf {
    /// A new, empty buffer of [`BUF_CAPACITY`] bytes.
    pub fn new() -> PacketBuf {
        let data: Box<[u8]> = vec![0u8; BUF_CAPACITY].into_boxed_slice();
        PacketBuf {
            // The conversion cannot fail: the slice has exactly BUF_CAPACITY bytes.
            data: data
                .try_into()
                .unwrap_or_else(|_| Box::new([0u8; BUF_CAPACITY])),
            start: HEADROOM,
            end: HEADROOM,
            vnet: VnetHdr::default(),
        }
    }

    /// Builds a buffer holding `frame` (for tests, fuzzing and locally made packets).
    pub fn from_frame(frame: &[u8]) -> PacketBuf {
        let mut b = PacketBuf::new();
        let n = frame.len().min(BUF_CAPACITY - HEADROOM);
        if let (Some(d), Some(s)) = (b.data.get_mut(HEADROOM..HEADROOM + n), frame.get(..n)) {
            d.copy_from_slice(s);
            b.end = HEADROOM + n;
        }
        b
    }

    /// The whole region a shell may hand to the kernel for I/O on this buffer (every read
    /// and write region lies inside it): for registering the buffer once, e.g. with io_uring.
    pub fn io_region(&mut self) -> &mut [u8] {
        self.data.as_mut_slice()
    }

    /// Where a TAP read goes: the vnet header, then the frame.
    pub fn tap_read_region(&mut self) -> &mut [u8] {
        // Constant range: inside the array (checked at compile time below).
        #[allow(clippy::indexing_slicing)]
        &mut self.data[HEADROOM - VNET_HDR_LEN..]
    }

    /// Records that a TAP read returned `n` bytes (vnet header included) and parses the
    /// header. Returns false (and leaves an empty frame) when `n` is shorter than the header.
    pub fn set_tap_read_len(&mut self, n: usize) -> bool {
        self.start = HEADROOM;
        let avail = self.data.len() - (HEADROOM - VNET_HDR_LEN);
        if n < VNET_HDR_LEN || n > avail {
            self.end = HEADROOM;
            self.vnet = VnetHdr::default();
            return false;
        }
        self.end = HEADROOM - VNET_HDR_LEN + n;
        #[allow(clippy::indexing_slicing)] // constant range, checked at compile time below
        let hdr = &self.data[HEADROOM - VNET_HDR_LEN..];
        self.vnet = VnetHdr::parse(hdr).unwrap_or_default();
        true
    }

    /// Where a UDP receive goes (the VXLAN header then the inner frame).
    pub fn udp_read_region(&mut self) -> &mut [u8] {
        // Constant range: inside the array (checked at compile time below).
        #[allow(clippy::indexing_slicing)]
        &mut self.data[HEADROOM..]
    }

    /// Records that a UDP receive returned `n` bytes; the vnet header is cleared.
    pub fn set_udp_read_len(&mut self, n: usize) {
        self.start = HEADROOM;
        self.end = HEADROOM + n.min(self.data.len() - HEADROOM);
        self.vnet = VnetHdr::default();
    }

    /// Serializes [`Self::vnet`] in front of the frame and returns header + frame, the bytes
    /// a TAP write takes.
    ///
    /// Infallible: the invariant keeps [`VNET_HDR_LEN`] bytes of room in front of the frame
    /// (see [`PacketBuf::push_front`]).
    #[allow(clippy::indexing_slicing)] // VNET_HDR_LEN <= start <= end <= BUF_CAPACITY
    pub fn tap_write_region(&mut self) -> &[u8] {
        let h = self.start - VNET_HDR_LEN;
        let vnet = self.vnet.to_bytes();
        self.data[h..self.start].copy_from_slice(&vnet);
        &self.data[h..self.end]
    }

    /// The frame.
    #[allow(clippy::indexing_slicing)] // start <= end <= BUF_CAPACITY
    pub fn frame(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The frame, writable.
    #[allow(clippy::indexing_slicing)] // start <= end <= BUF_CAPACITY
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Grows the frame at the front by `n` bytes and returns them; `None` when the headroom
    /// (less the room the vnet header needs) is too small.
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        if self.start < n + VNET_HDR_LEN {
            return None;
        }
        self.start -= n;
        self.data.get_mut(self.start..self.start + n)
    }

    /// Removes `n` bytes from the front of the frame; false when the frame is shorter.
    pub fn pull_front(&mut self, n: usize) -> bool {
        if self.len() < n {
            return false;
        }
        self.start += n;
        true
    }

    /// Sets the frame length (shrinks, or grows into the tailroom); false when it does not fit.
    pub fn set_len(&mut self, len: usize) -> bool {
        if self.start + len > self.data.len() {
            return false;
        }
        self.end = self.start + len;
        true
    }

    /// Resets the buffer to an empty frame at the default offset (before reuse).
    pub fn reset(&mut self) {
        self.start = HEADROOM;
        self.end = HEADROOM;
        self.vnet = VnetHdr::default();
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // tests may panic
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window_ok(b: &PacketBuf) -> bool {
        VNET_HDR_LEN <= b.start && b.start <= b.end && b.end <= BUF_CAPACITY
    }

    #[test]
    fn vnet_header_round_trips_little_endian() {
        let v = VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            gso_type: VNET_GSO_TCPV4,
            hdr_len: 0x0102,
            gso_size: 0x0304,
            csum_start: 0x0506,
            csum_offset: 0x0708,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        v.write(&mut b);
        assert_eq!(b, [1, 1, 2, 1, 4, 3, 6, 5, 8, 7]);
        assert_eq!(VnetHdr::parse(&b), Some(v));
        assert_eq!(VnetHdr::parse(&b[..9]), None);
    }

    proptest! {
        /// Whatever the shell and the datapath do to a buffer, its window stays inside the
        /// storage with room for the vnet header, so the accessors cannot panic.
        #[test]
        fn window_invariant_holds(ops in proptest::collection::vec((0u8..7, 0usize..70_000), 0..40)) {
            let mut b = PacketBuf::from_frame(&[0xab; 100]);
            for (op, n) in ops {
                match op {
                    0 => { b.push_front(n % 128); }
                    1 => { b.pull_front(n); }
                    2 => { b.set_len(n); }
                    3 => { b.set_tap_read_len(n); }
                    4 => b.set_udp_read_len(n),
                    5 => b.reset(),
                    _ => { b = PacketBuf::from_frame(&vec![1u8; n]); }
                }
                prop_assert!(window_ok(&b));
                let len = b.len();
                prop_assert_eq!(b.frame().len(), len);
                prop_assert_eq!(b.tap_write_region().len(), len + VNET_HDR_LEN);
            }
        }
    }
}
