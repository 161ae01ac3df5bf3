//! The GRO hold: frames from the tunnel bound for a pod are held back one step, so that
//! [`gro_append`](crate::gro_append) can merge the next segment of the same flow into the
//! held one before it is written. Sans-IO: the hold only decides which buffer goes where;
//! the shell owns the buffers and writes them.
//!
//! The hold is generic over how the shell names a buffer (`B`): an index into the engine's
//! buffer pool, or an owned [`PacketBuf`]. [`GroFrames`] turns two such names into the two
//! frames [`gro_append`](crate::gro_append) works on. No allocation, no dynamic dispatch.
//!
//! Use, per batch of frames from the tunnel: [`GroHold::push`] every frame whose verdict is
//! `ToPort`, write what it hands back, and call [`GroHold::take`] at the end of the batch
//! (a frame is never held across batches, so holding adds no latency beyond the batch).

use crate::state::tables::PortId;
use crate::wire::buf::PacketBuf;
use crate::wire::gro::gro_append;

/// Access to the frames behind two buffer names, for merging.
pub trait GroFrames<B> {
    /// The held frame (mutable: the next one is appended to it) and the next frame, or
    /// `None` when they cannot be had both at once (the frames are then not merged).
    fn pair<'a>(
        &'a mut self,
        held: &'a mut B,
        next: &'a B,
    ) -> Option<(&'a mut PacketBuf, &'a PacketBuf)>;
}

/// Buffers the caller owns: the names are the buffers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Owned;

impl GroFrames<PacketBuf> for Owned {
    fn pair<'a>(
        &'a mut self,
        held: &'a mut PacketBuf,
        next: &'a PacketBuf,
    ) -> Option<(&'a mut PacketBuf, &'a PacketBuf)> {
        Some((held, next))
    }
}

/// A pool of buffers named by index.
impl GroFrames<u32> for [PacketBuf] {
    fn pair<'a>(
        &'a mut self,
        held: &'a mut u32,
        next: &'a u32,
    ) -> Option<(&'a mut PacketBuf, &'a PacketBuf)> {
        let (a, b) = (usize::try_from(*held).ok()?, usize::try_from(*next).ok()?);
        if a < b {
            let (x, y) = self.split_at_mut(b);
            Some((x.get_mut(a)?, y.first()?))
        } else if b < a {
            let (x, y) = self.split_at_mut(a);
            Some((y.first_mut()?, x.get(b)?))
        } else {
            None // one buffer cannot be merged into itself
        }
    }
}

/// What became of a frame handed to [`GroHold::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step<B> {
    /// Its payload was appended to the held frame: the buffer is the caller's again (free).
    Merged(B),
    /// It is held now; nothing is to be written yet.
    Held,
    /// It is held now, and the frame held before it (this buffer) is to be written to this
    /// port at once.
    Flush(PortId, B),
}

/// At most one frame held back on its way to a pod.
#[derive(Debug)]
pub struct GroHold<B> {
    held: Option<(PortId, B)>,
}

impl<B> Default for GroHold<B> {
    fn default() -> Self {
        GroHold { held: None }
    }
}

impl<B> GroHold<B> {
    /// An empty hold.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a frame is held.
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Offers `next`, a frame the datapath sends to `port`: it merges into the held frame
    /// when that one goes to the same port and [`gro_append`](crate::gro_append) accepts it;
    /// otherwise it takes the held frame's place and the held frame is handed back to be
    /// written.
    pub fn push<F>(&mut self, frames: &mut F, port: PortId, next: B) -> Step<B>
    where
        F: GroFrames<B> + ?Sized,
    {
        if let Some((held_port, held)) = &mut self.held {
            if *held_port == port {
                if let Some((h, n)) = frames.pair(held, &next) {
                    if gro_append(h, n) {
                        return Step::Merged(next);
                    }
                }
            }
        }
        match self.held.replace((port, next)) {
            Some((p, b)) => Step::Flush(p, b),
            None => Step::Held,
        }
    }

    /// Ends the batch: the held frame, if any, to be written to its port now.
    pub fn take(&mut self) -> Option<(PortId, B)> {
        self.held.take()
    }
}
