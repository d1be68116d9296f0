//! The protocol itself (docs/channel-layout.md §4–§7), free of the OS: the
//! ring's bytes, each side's private positions, finding room and frames
//! with every shared value validated, publishing, and parking. The
//! endpoints (`sender.rs`, `receiver.rs`) run it on a mapped segment; the
//! loom model (`loom_model.rs`) runs the same code on loom's atomics.

use std::time::Duration;

use super::layout::{self, frame_len, max_message, Header, Side};
use crate::primitive::{fence, Ordering, Parkers};

/// A contradiction in what the peer published: the caller turns it into
/// `Error::Corrupted`, naming the channel.
#[derive(Debug)]
pub(crate) struct Corruption(pub(crate) String);

/// The ring: `capacity` bytes after the header.
pub(crate) struct Ring {
    #[cfg(not(loom))]
    base: *mut u8,
    /// Under loom, each byte is a cell, so that an access the protocol does
    /// not order is reported as a data race.
    #[cfg(loom)]
    cells: Vec<loom::cell::UnsafeCell<u8>>,
    capacity: u64,
}

// SAFETY: the ring is memory shared by design; which side may touch which
// bytes when is the protocol's business, and every access goes through raw
// pointers (or loom's cells), never through references that outlive it.
unsafe impl Send for Ring {}
// SAFETY: as for `Send`.
unsafe impl Sync for Ring {}

impl Ring {
    /// The ring at `base`.
    ///
    /// # Safety
    ///
    /// `base` points at `capacity` mapped bytes, 8-aligned, that stay mapped
    /// as long as the ring is used.
    #[cfg(not(loom))]
    pub(crate) unsafe fn new(base: *mut u8, capacity: u64) -> Ring {
        Ring { base, capacity }
    }

    /// A ring of `capacity` zero bytes in ordinary memory, for the model.
    #[cfg(loom)]
    pub(crate) fn zeroed(capacity: u64) -> Ring {
        Ring {
            cells: (0..capacity)
                .map(|_| loom::cell::UnsafeCell::new(0))
                .collect(),
            capacity,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The first byte of the payload at ring offset `offset`.
    #[cfg(not(loom))]
    pub(crate) fn at(&self, offset: u64) -> *mut u8 {
        debug_assert!(offset <= self.capacity);
        // SAFETY: within the ring (callers pass validated offsets).
        unsafe { self.base.add(offset as usize) }
    }

    /// The length word of the frame at `offset` (a multiple of 8 below the
    /// capacity), read once.
    fn frame_len_at(&self, offset: u64) -> u32 {
        #[cfg(not(loom))]
        // SAFETY: `offset` is a multiple of 8 below `capacity`, so the 4
        // bytes are inside the ring and aligned; volatile: read once, the
        // value is checked before it is used.
        return unsafe { std::ptr::read_volatile(self.at(offset).cast::<u32>()) };
        #[cfg(loom)]
        return u32::from_ne_bytes(self.read_bytes(offset, 4).try_into().unwrap());
    }

    /// Writes the frame header at `offset`: the length, then the reserved
    /// zero word.
    fn write_frame_header(&self, offset: u64, len: u32) {
        #[cfg(not(loom))]
        // SAFETY: `offset` is a multiple of 8 below `capacity`, so 8 bytes
        // fit; the frame belongs to the sender until it is published.
        unsafe {
            let p = self.at(offset);
            std::ptr::write_volatile(p.cast::<u32>(), len);
            std::ptr::write_volatile(p.add(4).cast::<u32>(), 0);
        }
        #[cfg(loom)]
        {
            self.write_bytes(offset, &len.to_ne_bytes());
            self.write_bytes(offset + 4, &0u32.to_ne_bytes());
        }
    }

    #[cfg(loom)]
    pub(crate) fn write_bytes(&self, offset: u64, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: loom checks that no access to this byte is concurrent
            // with this one (that is what the model is for).
            self.cells[offset as usize + i].with_mut(|p| unsafe { *p = b });
        }
    }

    #[cfg(loom)]
    pub(crate) fn read_bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        (0..len)
            // SAFETY: as in `write_bytes`.
            .map(|i| self.cells[offset as usize + i].with(|p| unsafe { *p }))
            .collect()
    }
}

/// Publishes `value` as `side`'s position and wakes the peer if it is
/// parked.
///
/// The Release store publishes the frame (or the freed space). The SeqCst
/// fence here and the one in [`park`] make a store-buffering pair: either
/// this side sees the peer's "waiting" flag, or the peer, after setting it,
/// sees the new position and does not sleep. So no wake-up is lost (the
/// loom model checks it on this code). SeqCst read-modify-writes instead of
/// the fences would be cheaper on x86, but loom cannot check those.
#[inline]
pub(crate) fn publish(header: &Header, side: Side, value: u64) {
    header.position(side).store(value, Ordering::Release);
    fence(Ordering::SeqCst);
    let peer = header.park(side.peer());
    if peer.waiting.load(Ordering::Relaxed) != 0 {
        peer.futex.bump_and_wake();
    }
}

/// Parks `side` on its futex word for at most `slice`, unless `blocked()`
/// is already false after the "waiting" flag is set (the other half of the
/// pair in [`publish`]). `parkers`: the side's parkers in this process,
/// which share the flag.
pub(crate) fn park(
    header: &Header,
    side: Side,
    parkers: &Parkers,
    slice: Duration,
    blocked: impl Fn(&Header) -> bool,
) {
    let own = header.park(side);
    // Snapshot the word first: a wake after this point changes it, and the
    // futex wait below then returns at once.
    let seq = own.futex.load();
    parkers.arm_flag(&own.waiting);
    fence(Ordering::SeqCst);
    if blocked(header) && !slice.is_zero() {
        own.futex.wait(seq, slice);
    }
    parkers.disarm_flag(&own.waiting);
}

/// Wakes the peer of `side` whatever its flag says (a detach: the peer must
/// look at the state word now).
pub(crate) fn wake_peer(header: &Header, side: Side) {
    header.park(side.peer()).futex.bump_and_wake();
}

/// The sender's private view of the ring: where the next frame goes (the
/// truth, only ever published) and the receiver's position as last read
/// and validated.
#[derive(Debug, Default)]
pub(crate) struct Producer {
    pub(crate) write: u64,
    pub(crate) read: u64,
    /// Set when the receiver's position was seen to move.
    pub(crate) peer_moved: bool,
}

impl Producer {
    /// Finds room for a frame of `frame` bytes (`frame_len` of the payload,
    /// at most the capacity): `(ring offset, position)`, writing and
    /// publishing a padding frame first if the frame does not fit before
    /// the end of the ring. `None` if the ring is too full.
    pub(crate) fn poll_space(
        &mut self,
        header: &Header,
        ring: &Ring,
        frame: u64,
    ) -> Result<Option<(u64, u64)>, Corruption> {
        let capacity = ring.capacity();
        // At most two rounds: a padding frame to the end of the ring, then
        // the frame at offset 0.
        loop {
            let offset = self.write % capacity;
            let need = needed(capacity, self.write, frame);
            if capacity - (self.write - self.read) < need {
                self.refresh_read(header)?;
                if capacity - (self.write - self.read) < need {
                    return Ok(None);
                }
            }
            if need == frame {
                return Ok(Some((offset, self.write)));
            }
            // The frame does not fit before the end of the ring: publish a
            // padding frame to the end; the frame goes to offset 0 once the
            // receiver has freed enough there.
            ring.write_frame_header(offset, layout::PAD);
            self.write += need;
            publish(header, Side::Sender, self.write);
        }
    }

    /// Publishes the frame of `len` payload bytes reserved at `(offset,
    /// position)` by [`Producer::poll_space`], whose payload is written.
    pub(crate) fn commit(&mut self, header: &Header, ring: &Ring, slot: (u64, u64), len: u32) {
        let (offset, position) = slot;
        ring.write_frame_header(offset, len);
        self.write = position + frame_len(u64::from(len)).unwrap_or(0);
        // Release: the frame's bytes are visible to whoever acquires this.
        publish(header, Side::Sender, self.write);
    }

    /// Whether the ring is still too full for a frame of `frame` bytes at
    /// position `write` (the "blocked" test of a parked sender: one load).
    pub(crate) fn still_full(header: &Header, capacity: u64, write: u64, frame: u64) -> bool {
        let read = header.position(Side::Receiver).load(Ordering::Relaxed);
        capacity.saturating_sub(write.wrapping_sub(read)) < needed(capacity, write, frame)
    }

    /// Reads the receiver's position and checks it: it only moves forward,
    /// never past what was written, and never more than a ring behind.
    fn refresh_read(&mut self, header: &Header) -> Result<(), Corruption> {
        // Acquire: the receiver's reads of the frames it freed happen before
        // we overwrite them.
        let read = header.position(Side::Receiver).load(Ordering::Acquire);
        if read < self.read || read > self.write || read % layout::FRAME_ALIGN != 0 {
            return Err(Corruption(format!(
                "the receiver's position {read} is outside {}..={}",
                self.read, self.write
            )));
        }
        self.peer_moved |= read != self.read;
        self.read = read;
        Ok(())
    }
}

/// The free ring bytes needed at position `write` to make progress with a
/// frame of `frame` bytes: the frame itself if it fits before the end of
/// the ring, else the padding frame that fills the end.
fn needed(capacity: u64, write: u64, frame: u64) -> u64 {
    let contiguous = capacity - write % capacity;
    if frame <= contiguous {
        frame
    } else {
        contiguous
    }
}

/// Where a validated frame's payload lies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    /// Ring offset of the payload.
    pub(crate) offset: u64,
    pub(crate) len: usize,
    /// The position after this frame.
    pub(crate) next: u64,
}

/// The receiver's private view of the ring: where the next frame starts
/// (the truth, only ever published) and the sender's position as last read
/// and validated.
#[derive(Debug, Default)]
pub(crate) struct Consumer {
    pub(crate) read: u64,
    pub(crate) write: u64,
    /// Set when the sender's position was seen to move.
    pub(crate) peer_moved: bool,
}

impl Consumer {
    /// The next complete frame, validated, or `None` if the ring is empty.
    ///
    /// Every value read from shared memory is read once into a local and
    /// checked before it is used: the sender's position must move forward
    /// by at most a ring; a frame must lie inside the ring and inside what
    /// was published; a padding frame must reach the end of the ring (it is
    /// consumed here, and its space given back at once).
    pub(crate) fn poll(
        &mut self,
        header: &Header,
        ring: &Ring,
    ) -> Result<Option<Frame>, Corruption> {
        let capacity = ring.capacity();
        // At most two rounds: a padding frame, then the frame at offset 0.
        for _ in 0..2 {
            if self.read == self.write {
                // Acquire: the frames up to this position are visible.
                let write = header.position(Side::Sender).load(Ordering::Acquire);
                if write < self.write
                    || write - self.read > capacity
                    || write % layout::FRAME_ALIGN != 0
                {
                    return Err(Corruption(format!(
                        "the sender's position {write} is outside {}..={}",
                        self.write,
                        self.read + capacity
                    )));
                }
                self.peer_moved |= write != self.write;
                self.write = write;
                if write == self.read {
                    return Ok(None);
                }
            }
            let offset = self.read % capacity;
            let len = ring.frame_len_at(offset);
            let available = self.write - self.read;
            if len == layout::PAD {
                let pad = capacity - offset;
                if offset == 0 || pad > available {
                    return Err(Corruption(format!(
                        "padding frame at ring offset {offset} with {available} bytes published"
                    )));
                }
                self.read += pad;
                // Give the padding back now: the sender may be waiting for
                // the space at the start of the ring.
                publish(header, Side::Receiver, self.read);
                continue;
            }
            let frame = frame_len(u64::from(len)).unwrap_or(u64::MAX);
            if u64::from(len) > max_message(capacity)
                || frame > available
                || offset + frame > capacity
            {
                return Err(Corruption(format!(
                    "frame of {len} bytes at ring offset {offset} does not fit in the {available} bytes published"
                )));
            }
            return Ok(Some(Frame {
                offset: offset + layout::FRAME_HEADER,
                len: len as usize,
                next: self.read + frame,
            }));
        }
        Err(Corruption("two padding frames in a row".into()))
    }

    /// Gives the frame that ends at `next` back to the sender.
    pub(crate) fn release(&mut self, header: &Header, next: u64) {
        self.read = next;
        // Release: our reads of the frame happen before the sender reuses it.
        publish(header, Side::Receiver, self.read);
    }

    /// Whether the ring is still empty at position `read` (the "blocked"
    /// test of a parked receiver: one load).
    pub(crate) fn still_empty(header: &Header, read: u64) -> bool {
        header.position(Side::Sender).load(Ordering::Relaxed) == read
    }
}
