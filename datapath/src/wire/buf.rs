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
        if b.len() < VNET_HDR_LEN {
            return None;
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn write(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
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
pub struct PacketBuf {
    data: Box<[u8]>,
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
        PacketBuf {
            data: vec![0u8; BUF_CAPACITY].into_boxed_slice(),
            start: HEADROOM,
            end: HEADROOM,
            vnet: VnetHdr::default(),
        }
    }

    /// Builds a buffer holding `frame` (for tests, fuzzing and locally made packets).
    pub fn from_frame(frame: &[u8]) -> PacketBuf {
        let mut b = PacketBuf::new();
        let n = frame.len().min(BUF_CAPACITY - HEADROOM);
        b.data[HEADROOM..HEADROOM + n].copy_from_slice(&frame[..n]);
        b.end = HEADROOM + n;
        b
    }

    /// The whole region a shell may hand to the kernel for I/O on this buffer (every read
    /// and write region lies inside it): for registering the buffer once, e.g. with io_uring.
    pub fn io_region(&mut self) -> &mut [u8] {
        &mut self.data[..]
    }

    /// Where a TAP read goes: the vnet header, then the frame.
    pub fn tap_read_region(&mut self) -> &mut [u8] {
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
        self.vnet =
            VnetHdr::parse(&self.data[HEADROOM - VNET_HDR_LEN..HEADROOM]).unwrap_or_default();
        true
    }

    /// Where a UDP receive goes (the VXLAN header then the inner frame).
    pub fn udp_read_region(&mut self) -> &mut [u8] {
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
    pub fn tap_write_region(&mut self) -> &[u8] {
        debug_assert!(self.start >= VNET_HDR_LEN);
        let h = self.start - VNET_HDR_LEN;
        let vnet = self.vnet;
        vnet.write(&mut self.data[h..self.start]);
        &self.data[h..self.end]
    }

    /// The frame.
    pub fn frame(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The frame, writable.
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
        Some(&mut self.data[self.start..self.start + n])
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
