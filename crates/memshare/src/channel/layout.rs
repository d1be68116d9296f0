//! The channel's shared layout: offsets, constants, and typed access to the
//! header. `docs/channel-layout.md` is the same information for people who
//! implement the protocol in another language; keep the two in step.

use std::sync::atomic::{AtomicU32, AtomicU64};

/// The first 8 bytes of every channel segment.
pub const MAGIC: [u8; 8] = crate::CHANNEL_MAGIC;
/// The layout version this library writes and reads.
pub const VERSION: u32 = 1;
/// Bytes before the ring: the header. The two positions, written on every
/// message, each have a 128-byte block (a cache line and its
/// adjacent-line-prefetch partner) of their own; the rarely written words
/// (states, parking flags and futex words) share the other blocks.
pub const HEADER_LEN: usize = 1024;
/// The smallest ring, in bytes.
pub const MIN_CAPACITY: u64 = 64;
/// The largest ring, in bytes (1 TiB).
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Every frame starts with this many bytes: the payload length (u32) and a
/// reserved word (u32, zero).
pub const FRAME_HEADER: u64 = 8;
/// Frames start at multiples of this.
pub const FRAME_ALIGN: u64 = 8;
/// A frame length that means "padding: the next frame starts at ring offset 0".
pub const PAD: u32 = u32::MAX;
/// Positions found at attach must be below this (2^63). A channel cannot
/// have carried that much (about 2.9 years at 100 GB/s), and it leaves
/// 2^63 bytes of headroom, so a position a hostile peer left near
/// `u64::MAX` cannot make the arithmetic on positions overflow.
pub const MAX_POSITION: u64 = 1 << 63;

// Static block (written once, before the magic is published).
pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_HEADER_LEN: usize = 12;
pub(crate) const OFF_CAPACITY: usize = 16;
// Control block: endpoint states (rarely written).
pub(crate) const OFF_SENDER_STATE: usize = 64;
pub(crate) const OFF_RECEIVER_STATE: usize = 68;
// Producer block.
pub(crate) const OFF_WRITE_POS: usize = 128;
// Receiver's parking block (written when the receiver parks or is woken).
pub(crate) const OFF_RECV_FUTEX: usize = 256;
pub(crate) const OFF_RECV_WAITING: usize = 260;
// Consumer block.
pub(crate) const OFF_READ_POS: usize = 384;
// Sender's parking block.
pub(crate) const OFF_SEND_FUTEX: usize = 512;
pub(crate) const OFF_SEND_WAITING: usize = 516;

/// Endpoint state: never attached.
pub const STATE_NEW: u32 = 0;
/// Endpoint state: attached.
pub const STATE_ATTACHED: u32 = 1;
/// Endpoint state: detached cleanly (dropped).
pub const STATE_DETACHED: u32 = 2;

/// The endpoint-lock slot of each side (see `sys::EndpointLock`).
pub(crate) const SLOT_SENDER: u8 = 0;
pub(crate) const SLOT_RECEIVER: u8 = 1;

/// The bytes a message of `len` bytes takes in the ring, frame header and
/// padding to [`FRAME_ALIGN`] included; `None` if that overflows.
pub(crate) fn frame_len(len: u64) -> Option<u64> {
    len.checked_add(FRAME_HEADER + FRAME_ALIGN - 1)
        .map(|n| n & !(FRAME_ALIGN - 1))
}

/// The largest message a ring of `capacity` bytes can carry.
pub(crate) fn max_message(capacity: u64) -> u64 {
    (capacity - FRAME_HEADER).min(u64::from(u32::MAX - 1))
}

/// Typed access to the header of a mapped channel segment.
///
/// Holds raw pointers into a mapping that the owning endpoint keeps alive
/// for as long as this value exists.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    base: *mut u8,
}

macro_rules! field {
    ($name:ident, $off:expr, $ty:ty) => {
        pub(crate) fn $name(&self) -> &$ty {
            // The endpoint owns both the mapping and `self`; atomics may be
            // accessed concurrently by other processes.
            // SAFETY: `base` maps at least HEADER_LEN bytes for as long as
            // `self` lives; the constant offset is aligned (page-aligned base).
            unsafe { &*self.base.add($off).cast::<$ty>() }
        }
    };
}

impl Header {
    /// # Safety
    ///
    /// `base` must be page-aligned and point at a mapping of at least
    /// [`HEADER_LEN`] bytes that outlives the returned value.
    pub(crate) unsafe fn new(base: *mut u8) -> Header {
        Header { base }
    }

    field!(magic, OFF_MAGIC, AtomicU64);
    field!(version, OFF_VERSION, AtomicU32);
    field!(header_len, OFF_HEADER_LEN, AtomicU32);
    field!(capacity, OFF_CAPACITY, AtomicU64);
    field!(sender_state, OFF_SENDER_STATE, AtomicU32);
    field!(receiver_state, OFF_RECEIVER_STATE, AtomicU32);
    field!(write_pos, OFF_WRITE_POS, AtomicU64);
    field!(recv_futex, OFF_RECV_FUTEX, AtomicU32);
    field!(recv_waiting, OFF_RECV_WAITING, AtomicU32);
    field!(read_pos, OFF_READ_POS, AtomicU64);
    field!(send_futex, OFF_SEND_FUTEX, AtomicU32);
    field!(send_waiting, OFF_SEND_WAITING, AtomicU32);

    /// The start of the ring.
    pub(crate) fn ring(&self) -> *mut u8 {
        // SAFETY: the mapping is at least HEADER_LEN + capacity bytes
        // (checked at attach), so this stays inside it.
        unsafe { self.base.add(HEADER_LEN) }
    }
}
