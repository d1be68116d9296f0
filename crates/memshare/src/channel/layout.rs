//! The channel's shared layout: the constants, and the header as a
//! `#[repr(C)]` type whose offsets are checked at compile time.
//! `docs/channel-layout.md` is the normative text, for people who implement
//! the protocol in another language (it names `Header` and its blocks);
//! keep the two in step.

use crate::primitive::{AtomicU32, AtomicU64, FutexWord};

/// The first 8 bytes of every channel segment.
pub const MAGIC: [u8; 8] = *b"MSCHAN01";
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

/// Endpoint state: never attached.
pub const STATE_NEW: u32 = 0;
/// Endpoint state: attached.
pub const STATE_ATTACHED: u32 = 1;
/// Endpoint state: detached cleanly (dropped).
pub const STATE_DETACHED: u32 = 2;

/// The byte of the segment whose lock says that an endpoint of `side` is
/// attached and alive (docs/channel-layout.md §3.4): far beyond any data,
/// so that it never overlaps a range someone locks for their own reasons.
pub(crate) fn lock_byte(side: Side) -> u64 {
    const LOCK_BASE: u64 = 1 << 62;
    LOCK_BASE
        + match side {
            Side::Sender => 0,
            Side::Receiver => 1,
        }
}

/// Which end of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Sender,
    Receiver,
}

impl Side {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Sender => "sender",
            Side::Receiver => "receiver",
        }
    }

    pub(crate) fn peer(self) -> Side {
        match self {
            Side::Sender => Side::Receiver,
            Side::Receiver => Side::Sender,
        }
    }
}

/// The header: the first [`HEADER_LEN`] bytes of the segment, as
/// docs/channel-layout.md §2 lays them out. Each block is 128 bytes (a
/// cache line and its adjacent-line-prefetch partner): the two positions,
/// written on every message, have one each; the rarely written words share
/// the others. The offsets are checked at compile time below.
#[repr(C)]
pub(crate) struct Header {
    /// Bytes 0–127: written once before the magic is published, then the
    /// endpoint states.
    pub(crate) fixed: FixedBlock,
    /// Bytes 128–255: `write_pos`, the sender's.
    pub(crate) producer: PositionBlock,
    /// Bytes 256–383: the receiver's parking words.
    pub(crate) recv_park: ParkBlock,
    /// Bytes 384–511: `read_pos`, the receiver's.
    pub(crate) consumer: PositionBlock,
    /// Bytes 512–639: the sender's parking words.
    pub(crate) send_park: ParkBlock,
    /// Bytes 640–1023: reserved, zero.
    _reserved: [u8; 384],
}

/// Bytes 0–127 of the header.
#[repr(C, align(128))]
pub(crate) struct FixedBlock {
    /// 0: [`MAGIC`] as a little-endian u64, stored last (Release).
    pub(crate) magic: AtomicU64,
    /// 8: [`VERSION`].
    pub(crate) version: AtomicU32,
    /// 12: [`HEADER_LEN`].
    pub(crate) header_len: AtomicU32,
    /// 16: the ring's size in bytes.
    pub(crate) capacity: AtomicU64,
    _pad: [u8; 40],
    /// 64: the sender's state (`STATE_*`).
    pub(crate) sender_state: AtomicU32,
    /// 68: the receiver's state.
    pub(crate) receiver_state: AtomicU32,
    /// 72: the sender's process id, written when it attaches (0: not
    /// known, as written by a layout before it). A hint for watching the
    /// process's death, never trusted alone (§3.4).
    pub(crate) sender_pid: AtomicU32,
    /// 76: the receiver's process id, likewise.
    pub(crate) receiver_pid: AtomicU32,
}

/// A position (`write_pos` or `read_pos`) alone in its block.
#[repr(C, align(128))]
pub(crate) struct PositionBlock {
    pub(crate) pos: AtomicU64,
}

/// A side's parking words: the futex word it sleeps on, and its "waiting"
/// flag (nonzero while it may be asleep).
#[repr(C, align(128))]
pub(crate) struct ParkBlock {
    pub(crate) futex: FutexWord,
    pub(crate) waiting: AtomicU32,
}

// The layout of docs/channel-layout.md §2, checked (not under loom, whose
// atomics are larger than the real ones).
#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Header>() == HEADER_LEN);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, magic) == 0);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, version) == 8);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, header_len) == 12);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, capacity) == 16);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, sender_state) == 64);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, receiver_state) == 68);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, sender_pid) == 72);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, receiver_pid) == 76);
    assert!(offset_of!(Header, producer) + offset_of!(PositionBlock, pos) == 128);
    assert!(offset_of!(Header, recv_park) + offset_of!(ParkBlock, futex) == 256);
    assert!(offset_of!(Header, recv_park) + offset_of!(ParkBlock, waiting) == 260);
    assert!(offset_of!(Header, consumer) + offset_of!(PositionBlock, pos) == 384);
    assert!(offset_of!(Header, send_park) + offset_of!(ParkBlock, futex) == 512);
    assert!(offset_of!(Header, send_park) + offset_of!(ParkBlock, waiting) == 516);
    assert!(size_of::<FutexWord>() == 4);
};

impl Header {
    /// The state word of `side`.
    pub(crate) fn state(&self, side: Side) -> &AtomicU32 {
        match side {
            Side::Sender => &self.fixed.sender_state,
            Side::Receiver => &self.fixed.receiver_state,
        }
    }

    /// The process id `side` wrote when it attached (0: unknown).
    pub(crate) fn pid(&self, side: Side) -> &AtomicU32 {
        match side {
            Side::Sender => &self.fixed.sender_pid,
            Side::Receiver => &self.fixed.receiver_pid,
        }
    }

    /// The position `side` publishes (`write_pos` or `read_pos`).
    pub(crate) fn position(&self, side: Side) -> &AtomicU64 {
        match side {
            Side::Sender => &self.producer.pos,
            Side::Receiver => &self.consumer.pos,
        }
    }

    /// The parking words of `side`.
    pub(crate) fn park(&self, side: Side) -> &ParkBlock {
        match side {
            Side::Sender => &self.send_park,
            Side::Receiver => &self.recv_park,
        }
    }

    /// A header for the loom model, in ordinary memory, all zero.
    #[cfg(loom)]
    pub(crate) fn zeroed() -> Header {
        let position = || PositionBlock {
            pos: AtomicU64::new(0),
        };
        let park = || ParkBlock {
            futex: FutexWord::new(),
            waiting: AtomicU32::new(0),
        };
        Header {
            fixed: FixedBlock {
                magic: AtomicU64::new(0),
                version: AtomicU32::new(0),
                header_len: AtomicU32::new(0),
                capacity: AtomicU64::new(0),
                _pad: [0; 40],
                sender_state: AtomicU32::new(0),
                receiver_state: AtomicU32::new(0),
                sender_pid: AtomicU32::new(0),
                receiver_pid: AtomicU32::new(0),
            },
            producer: position(),
            recv_park: park(),
            consumer: position(),
            send_park: park(),
            _reserved: [0; 384],
        }
    }
}

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
