//! The service's shared layout: the constants (and, inside the crate, the
//! header page as a `#[repr(C)]` type and where every region lies for a
//! configuration). `docs/pubsub-layout.md` is the normative text; keep the
//! two in step.

use crate::primitive::{AtomicU32, AtomicU64, FutexWord};

/// The first 8 bytes of every publish-subscribe service segment.
pub const MAGIC: [u8; 8] = *b"MSPUBS01";
/// The layout version this library writes and reads.
pub const VERSION: u32 = 1;
/// The header: the first page of the segment.
pub const HEADER_LEN: u64 = 4096;
/// Regions start at multiples of this (so that each side can map what it
/// writes writable and the rest read-only).
pub const REGION_ALIGN: u64 = 4096;
/// Buffers are multiples of this long (a cache line).
pub const BUFFER_ALIGN: u64 = 64;
/// Bytes of a publisher's block (before its ring).
pub const PUBLISHER_BLOCK: u64 = 256;
/// Bytes of a ring entry.
pub const ENTRY_LEN: u64 = 32;
/// Buffers a publisher keeps beyond the ring and the subscribers' holds,
/// so that a scan of the holds frees at least this many at a time. (1 in
/// the loom model, so that a few messages already reuse buffers.)
pub const RECLAIM_BATCH: u32 = if cfg!(loom) { 1 } else { 8 };

/// The most publishers a service can have.
pub const MAX_PUBLISHERS: u32 = 64;
/// The most subscribers a service can have (one bit each in the parked
/// word).
pub const MAX_SUBSCRIBERS: u32 = 64;
/// The largest message (the length of an entry is a u32).
pub const MAX_MESSAGE_LEN: u64 = u32::MAX as u64;
/// The deepest queue a subscriber may have.
pub const MAX_DEPTH: u32 = 1 << 20;
/// The most samples a subscriber may hold at once.
pub const MAX_HELD: u32 = 64;
/// The largest segment a service may take (1 TiB).
pub const MAX_SEGMENT_LEN: u64 = 1 << 40;

/// Endpoint state: never attached (the slot is free).
pub const STATE_NEW: u32 = 0;
/// Endpoint state: attached (its lock says whether it is alive).
pub const STATE_ATTACHED: u32 = 1;
/// Endpoint state: detached cleanly.
pub const STATE_DETACHED: u32 = 2;

/// Overflow policy as stored in the header.
pub(crate) const OVERFLOW_BLOCK: u32 = 0;
pub(crate) const OVERFLOW_DROP_OLDEST: u32 = 1;

/// The byte of the segment whose lock says publisher `p` is alive.
pub(crate) fn publisher_lock_byte(p: u32) -> u64 {
    (1 << 62) + 1024 + u64::from(p)
}

/// The byte of the segment whose lock says subscriber `i` is alive.
pub(crate) fn subscriber_lock_byte(i: u32) -> u64 {
    (1 << 62) + 2048 + u64::from(i)
}

/// The header page's fields (the rest of the page is reserved, zero).
/// Every endpoint maps it writable: the words both sides write to wake
/// each other live here.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) fixed: FixedBlock,
    pub(crate) wake: WakeBlock,
    _reserved: [u8; 768],
    /// 1024: how publisher `p` is woken when it waits for room (overflow
    /// "block"): its flag and futex word, written by subscribers too (the
    /// publisher regions are read-only for them).
    pub(crate) publisher_wake: [PublisherWake; MAX_PUBLISHERS as usize],
}

/// A publisher's wake words, in the header page.
#[repr(C)]
pub(crate) struct PublisherWake {
    /// Nonzero while the publisher may be asleep on `futex`.
    pub(crate) waiting: AtomicU32,
    /// The word the publisher sleeps on; subscribers bump it.
    pub(crate) futex: FutexWord,
}

/// Bytes 0–127: the configuration, written once before the magic.
#[repr(C, align(128))]
pub(crate) struct FixedBlock {
    /// 0: [`MAGIC`] as a little-endian u64, stored last (Release).
    pub(crate) magic: AtomicU64,
    /// 8: [`VERSION`].
    pub(crate) version: AtomicU32,
    /// 12: the overflow policy (0 block, 1 drop oldest).
    pub(crate) overflow: AtomicU32,
    /// 16: publisher slots.
    pub(crate) max_publishers: AtomicU32,
    /// 20: subscriber slots.
    pub(crate) max_subscribers: AtomicU32,
    /// 24: the largest message, bytes.
    pub(crate) max_message_len: AtomicU64,
    /// 32: messages a subscriber may have waiting.
    pub(crate) depth: AtomicU32,
    /// 36: messages a late subscriber receives first.
    pub(crate) history: AtomicU32,
    /// 40: samples a subscriber may hold at once.
    pub(crate) max_held: AtomicU32,
    /// 44: entries per publisher ring (derived; checked).
    pub(crate) ring_len: AtomicU32,
    /// 48: buffers per publisher (derived; checked).
    pub(crate) pool_len: AtomicU32,
    /// 52: bytes of a subscriber block (derived; checked).
    pub(crate) subscriber_block: AtomicU32,
    /// 56: bytes between two buffers (derived; checked).
    pub(crate) buffer_stride: AtomicU64,
    /// 64: bytes of a publisher region (derived; checked).
    pub(crate) publisher_region: AtomicU64,
    /// 72: the segment's length (derived; checked).
    pub(crate) total_len: AtomicU64,
}

/// Bytes 128–255: how subscribers are woken.
#[repr(C, align(128))]
pub(crate) struct WakeBlock {
    /// 128: bit `i` set while subscriber `i` may be asleep on `futex`.
    pub(crate) parked: AtomicU64,
    /// 136: the word parked subscribers sleep on; every publisher bumps it
    /// when it sees a parked bit after publishing.
    pub(crate) futex: FutexWord,
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Header>() == 1024 + 8 * MAX_PUBLISHERS as usize);
    assert!(size_of::<Header>() <= HEADER_LEN as usize);
    assert!(offset_of!(Header, publisher_wake) == 1024);
    assert!(size_of::<PublisherWake>() == 8);
    assert!(offset_of!(PublisherWake, waiting) == 0);
    assert!(offset_of!(PublisherWake, futex) == 4);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, magic) == 0);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, version) == 8);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, overflow) == 12);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, max_publishers) == 16);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, max_subscribers) == 20);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, max_message_len) == 24);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, depth) == 32);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, history) == 36);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, max_held) == 40);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, ring_len) == 44);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, pool_len) == 48);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, subscriber_block) == 52);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, buffer_stride) == 56);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, publisher_region) == 64);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, total_len) == 72);
    assert!(offset_of!(Header, wake) + offset_of!(WakeBlock, parked) == 128);
    assert!(offset_of!(Header, wake) + offset_of!(WakeBlock, futex) == 136);
    assert!(size_of::<PublisherBlock>() == PUBLISHER_BLOCK as usize);
    assert!(offset_of!(PublisherBlock, state) == 0);
    assert!(offset_of!(PublisherBlock, pid) == 4);
    assert!(offset_of!(PublisherBlock, instance) == 16);
    assert!(offset_of!(PublisherBlock, head) == 128);
    assert!(size_of::<Entry>() == ENTRY_LEN as usize);
    assert!(offset_of!(Entry, seq) == 0);
    assert!(offset_of!(Entry, buffer) == 8);
    assert!(offset_of!(Entry, len) == 12);
    assert!(offset_of!(Entry, instance) == 16);
    assert!(offset_of!(SubscriberHead, state) == 0);
    assert!(offset_of!(SubscriberHead, instance) == 8);
    assert!(offset_of!(SubscriberHead, missed) == 16);
    assert!(offset_of!(SubscriberHead, received) == 24);
    assert!(size_of::<SubscriberHead>() == SUBSCRIBER_HEAD as usize);
};

/// A publisher's block, at the start of its region (which only the
/// publisher maps writable).
#[repr(C, align(128))]
pub(crate) struct PublisherBlock {
    /// 0: `STATE_*`.
    pub(crate) state: AtomicU32,
    /// 4: the publisher's process id, stored before its state (a hint for
    /// watching its death; 0: not known).
    pub(crate) pid: AtomicU32,
    _pad0: [u32; 2],
    /// 16: the current publisher's instance id (nonzero, random).
    pub(crate) instance: AtomicU64,
    _pad1: [u8; 104],
    /// 128: the next sequence number this publisher will publish.
    pub(crate) head: AtomicU64,
    _pad2: [u8; 120],
}

/// One ring entry: which buffer holds sequence `seq - 1`.
#[repr(C)]
pub(crate) struct Entry {
    /// 0: the sequence number published here, plus one; 0 while the entry
    /// is being (re)written.
    pub(crate) seq: AtomicU64,
    /// 8: the buffer's index in the publisher's pool.
    pub(crate) buffer: AtomicU32,
    /// 12: the message's length.
    pub(crate) len: AtomicU32,
    /// 16: the publisher instance that published it.
    pub(crate) instance: AtomicU64,
    /// 24: reserved, zero.
    pub(crate) reserved: AtomicU64,
}

/// Bytes of the fixed part of a subscriber block.
pub const SUBSCRIBER_HEAD: u64 = 32;

/// The fixed part of a subscriber's block; its hold words (u32, `max_held`
/// of them) follow at 32, and its cursors (u64, one per publisher slot)
/// after those, 8-aligned.
#[repr(C)]
pub(crate) struct SubscriberHead {
    /// 0: `STATE_*`.
    pub(crate) state: AtomicU32,
    _pad: u32,
    /// 8: the current subscriber's instance id (nonzero, random).
    pub(crate) instance: AtomicU64,
    /// 16: messages this subscriber lost (overflow policy "drop oldest").
    pub(crate) missed: AtomicU64,
    /// 24: messages this subscriber received.
    pub(crate) received: AtomicU64,
}

/// What a hold word says: nothing held, or buffer `buffer` of publisher
/// `publisher`.
pub(crate) fn hold_word(pool_len: u32, publisher: u32, buffer: u32) -> u32 {
    publisher * pool_len + buffer + 1
}

/// A service's configuration as stored in its header: what every size and
/// offset is derived from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) max_publishers: u32,
    pub(crate) max_subscribers: u32,
    pub(crate) max_message_len: u64,
    pub(crate) depth: u32,
    pub(crate) history: u32,
    pub(crate) max_held: u32,
    pub(crate) overflow: u32,
}

/// Where everything lies for a [`Shape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) shape: Shape,
    /// Entries per ring: a power of two above `depth`.
    pub(crate) ring_len: u32,
    /// Buffers per publisher.
    pub(crate) pool_len: u32,
    pub(crate) buffer_stride: u64,
    /// Bytes of one subscriber block (a multiple of 128).
    pub(crate) subscriber_block: u64,
    /// Offset of the hold words in a subscriber block.
    pub(crate) holds_at: u64,
    /// Offset of the cursors in a subscriber block.
    pub(crate) cursors_at: u64,
    /// Offset of the subscriber table.
    pub(crate) subscribers_at: u64,
    /// Offset of the first publisher region.
    pub(crate) publishers_at: u64,
    pub(crate) publisher_region: u64,
    /// Offset of the buffers within a publisher region.
    pub(crate) buffers_at: u64,
    pub(crate) total_len: u64,
}

fn round_up(n: u64, to: u64) -> Option<u64> {
    n.checked_next_multiple_of(to)
}

impl Geometry {
    /// The geometry of `shape`, or why there is none (a limit, in words).
    pub(crate) fn of(shape: Shape) -> Result<Geometry, String> {
        let Shape {
            max_publishers: p,
            max_subscribers: s,
            max_message_len: l,
            depth: d,
            history: h,
            max_held: k,
            overflow,
        } = shape;
        if !(1..=MAX_PUBLISHERS).contains(&p) {
            return Err(format!("max_publishers {p} is not in 1..={MAX_PUBLISHERS}"));
        }
        if !(1..=MAX_SUBSCRIBERS).contains(&s) {
            return Err(format!(
                "max_subscribers {s} is not in 1..={MAX_SUBSCRIBERS}"
            ));
        }
        if !(1..=MAX_MESSAGE_LEN).contains(&l) {
            return Err(format!(
                "max_message_len {l} is not in 1..={MAX_MESSAGE_LEN}"
            ));
        }
        if !(1..=MAX_DEPTH).contains(&d) {
            return Err(format!("depth {d} is not in 1..={MAX_DEPTH}"));
        }
        if h > d {
            return Err(format!("history {h} is larger than depth {d}"));
        }
        if !(1..=MAX_HELD).contains(&k) {
            return Err(format!("max_held {k} is not in 1..={MAX_HELD}"));
        }
        if overflow > OVERFLOW_DROP_OLDEST {
            return Err(format!("overflow policy {overflow} is not 0 or 1"));
        }
        let too_large = || "the service would be larger than 1 TiB".to_owned();
        // Entries for `depth + history` messages and one more: a publisher
        // decides it has room from the cursors it last saw, and a late
        // subscriber starts `history` back from the head it read; the entry
        // a publication overwrites must be one every subscriber has read
        // even then (docs/pubsub-layout.md §6).
        let ring_len = (d + h + 1).next_power_of_two();
        let pool_len = ring_len + s * k + RECLAIM_BATCH + 1;
        let buffer_stride = round_up(l, BUFFER_ALIGN).ok_or_else(too_large)?;
        let holds_at = SUBSCRIBER_HEAD;
        let cursors_at = round_up(holds_at + 4 * u64::from(k), 8).ok_or_else(too_large)?;
        let subscriber_block =
            round_up(cursors_at + 8 * u64::from(p), 128).ok_or_else(too_large)?;
        let subscribers_at = HEADER_LEN;
        let publishers_at = round_up(
            subscribers_at + u64::from(s) * subscriber_block,
            REGION_ALIGN,
        )
        .ok_or_else(too_large)?;
        let buffers_at = round_up(
            PUBLISHER_BLOCK + u64::from(ring_len) * ENTRY_LEN,
            REGION_ALIGN,
        )
        .ok_or_else(too_large)?;
        let publisher_region = u64::from(pool_len)
            .checked_mul(buffer_stride)
            .and_then(|b| b.checked_add(buffers_at))
            .and_then(|r| round_up(r, REGION_ALIGN))
            .ok_or_else(too_large)?;
        let total_len = u64::from(p)
            .checked_mul(publisher_region)
            .and_then(|r| r.checked_add(publishers_at))
            .filter(|&t| t <= MAX_SEGMENT_LEN)
            .ok_or_else(too_large)?;
        Ok(Geometry {
            shape,
            ring_len,
            pool_len,
            buffer_stride,
            subscriber_block,
            holds_at,
            cursors_at,
            subscribers_at,
            publishers_at,
            publisher_region,
            buffers_at,
            total_len,
        })
    }

    /// Offset of publisher `p`'s region.
    pub(crate) fn publisher_at(&self, p: u32) -> u64 {
        self.publishers_at + u64::from(p) * self.publisher_region
    }

    /// Writes the header's configuration and derived fields (not the
    /// magic).
    pub(crate) fn store(&self, h: &Header) {
        use crate::primitive::Ordering::Relaxed;
        let f = &h.fixed;
        f.version.store(VERSION, Relaxed);
        f.overflow.store(self.shape.overflow, Relaxed);
        f.max_publishers.store(self.shape.max_publishers, Relaxed);
        f.max_subscribers.store(self.shape.max_subscribers, Relaxed);
        f.max_message_len.store(self.shape.max_message_len, Relaxed);
        f.depth.store(self.shape.depth, Relaxed);
        f.history.store(self.shape.history, Relaxed);
        f.max_held.store(self.shape.max_held, Relaxed);
        f.ring_len.store(self.ring_len, Relaxed);
        f.pool_len.store(self.pool_len, Relaxed);
        f.subscriber_block
            .store(self.subscriber_block as u32, Relaxed);
        f.buffer_stride.store(self.buffer_stride, Relaxed);
        f.publisher_region.store(self.publisher_region, Relaxed);
        f.total_len.store(self.total_len, Relaxed);
    }

    /// The geometry a header describes, checked field by field against the
    /// one its configuration derives and against the segment's length:
    /// every derived field must be exactly what this library computes.
    pub(crate) fn load(h: &Header, segment: &crate::Segment) -> Result<Geometry, String> {
        use crate::primitive::Ordering::Relaxed;
        let f = &h.fixed;
        let shape = Shape {
            max_publishers: f.max_publishers.load(Relaxed),
            max_subscribers: f.max_subscribers.load(Relaxed),
            max_message_len: f.max_message_len.load(Relaxed),
            depth: f.depth.load(Relaxed),
            history: f.history.load(Relaxed),
            max_held: f.max_held.load(Relaxed),
            overflow: f.overflow.load(Relaxed),
        };
        let g = Geometry::of(shape)?;
        let stored = (
            f.ring_len.load(Relaxed),
            f.pool_len.load(Relaxed),
            u64::from(f.subscriber_block.load(Relaxed)),
            f.buffer_stride.load(Relaxed),
            f.publisher_region.load(Relaxed),
            f.total_len.load(Relaxed),
        );
        let derived = (
            g.ring_len,
            g.pool_len,
            g.subscriber_block,
            g.buffer_stride,
            g.publisher_region,
            g.total_len,
        );
        if stored != derived {
            return Err(format!(
                "the derived fields (ring, pool, subscriber block, buffer stride, publisher region, total) {stored:?} are not the {derived:?} the configuration gives"
            ));
        }
        // (To within a page where the system reports whole pages: a
        // Windows section opened by name.)
        if !segment.len_fits(g.total_len) {
            return Err(format!(
                "the service is {} bytes, the segment {}",
                g.total_len,
                segment.len()
            ));
        }
        Ok(g)
    }
}

/// Zeroed shared structures in ordinary memory, for the loom model.
#[cfg(loom)]
pub(crate) mod model {
    use super::*;

    pub(crate) fn wake() -> WakeBlock {
        WakeBlock {
            parked: AtomicU64::new(0),
            futex: FutexWord::new(),
        }
    }

    pub(crate) fn publisher_wake() -> PublisherWake {
        PublisherWake {
            waiting: AtomicU32::new(0),
            futex: FutexWord::new(),
        }
    }

    pub(crate) fn publisher() -> PublisherBlock {
        PublisherBlock {
            state: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            _pad0: [0; 2],
            instance: AtomicU64::new(0),
            _pad1: [0; 104],
            head: AtomicU64::new(0),
            _pad2: [0; 120],
        }
    }

    pub(crate) fn entry() -> Entry {
        Entry {
            seq: AtomicU64::new(0),
            buffer: AtomicU32::new(0),
            len: AtomicU32::new(0),
            instance: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
        }
    }

    pub(crate) fn subscriber() -> SubscriberHead {
        SubscriberHead {
            state: AtomicU32::new(0),
            _pad: 0,
            instance: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }
}
