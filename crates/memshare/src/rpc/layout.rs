//! The request/response service's shared layout: the constants (and,
//! inside the crate, the header page and a client region's control block
//! as `#[repr(C)]` types, and where everything lies for a configuration).
//! `docs/rpc-layout.md` is the normative text; keep the two in step.

use crate::primitive::{AtomicU32, AtomicU64, FutexWord};

/// The first 8 bytes of every request/response service segment.
pub const MAGIC: [u8; 8] = *b"MSRPC001";
/// The layout version this library writes and reads.
pub const VERSION: u32 = 1;
/// The header: the first page of the segment.
pub const HEADER_LEN: u64 = 4096;
/// Parts of a client region start at multiples of this (so that each side
/// maps what only the other writes read-only).
pub const PART_ALIGN: u64 = 4096;
/// Buffers are multiples of this long (a cache line).
pub const BUFFER_ALIGN: u64 = 64;
/// Bytes of a slot descriptor.
pub const SLOT_LEN: u64 = 64;
/// Offset of the request ring's head in a client region.
pub const RING_AT: u64 = 128;

/// The most clients a service can have (one bit each in the pending mask).
pub const MAX_CLIENTS: u32 = 256;
/// The most requests a client may have in flight.
pub const MAX_IN_FLIGHT: u32 = 64;
/// The largest request or response (lengths are u32).
pub const MAX_MESSAGE_LEN: u64 = u32::MAX as u64;
/// The largest segment a service may take (1 TiB).
pub const MAX_SEGMENT_LEN: u64 = 1 << 40;

/// Server state: never attached.
pub const SERVER_NEW: u32 = 0;
/// Server state: attached (its lock says whether it is alive).
pub const SERVER_ATTACHED: u32 = 1;
/// Server state: detached cleanly.
pub const SERVER_DETACHED: u32 = 2;

/// Client region state: free for a new client to claim.
pub const CLIENT_FREE: u32 = 0;
/// Client region state: a client is attached (its lock says whether it
/// is alive).
pub const CLIENT_ATTACHED: u32 = 1;
/// Client region state: its client detached; the server resets it.
pub const CLIENT_DETACHED: u32 = 2;
/// Client region state: the server stopped serving it (its client broke
/// the protocol); reset once the client is gone.
pub const CLIENT_EVICTED: u32 = 3;

/// Slot phase: not in use.
pub const SLOT_FREE: u64 = 0;
/// Slot phase: the client wrote a request; the server may take it.
pub const SLOT_REQUESTED: u64 = 1;
/// Slot phase: the server took the request and owes a response.
pub const SLOT_TAKEN: u64 = 2;
/// Slot phase: the response is in the slot's response buffer.
pub const SLOT_RESPONDED: u64 = 3;
/// Slot phase: the server dropped the request without a response.
pub const SLOT_DECLINED: u64 = 4;
/// A slot's state word: the request id shifted left by this, or'ed with
/// the phase.
pub const PHASE_BITS: u32 = 3;
/// The request ids a slot word can carry.
pub const ID_MASK: u64 = u64::MAX >> PHASE_BITS;

/// A slot's state word for request `id` in `phase`.
pub const fn slot_word(id: u64, phase: u64) -> u64 {
    ((id & ID_MASK) << PHASE_BITS) | phase
}

/// The phase of a slot's state word.
pub const fn phase_of(word: u64) -> u64 {
    word & ((1 << PHASE_BITS) - 1)
}

/// The request id of a slot's state word.
pub const fn id_of(word: u64) -> u64 {
    word >> PHASE_BITS
}

/// The byte of the segment whose lock says the server is alive.
pub(crate) const SERVER_LOCK_BYTE: u64 = (1 << 62) + 8192;

/// The byte of the segment whose lock says client `c` is alive.
pub(crate) fn client_lock_byte(c: u32) -> u64 {
    SERVER_LOCK_BYTE + 1 + u64::from(c)
}

/// The header page's fields (the rest of the page is reserved, zero).
/// Every endpoint maps it writable: the words both sides write to wake
/// each other live here.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) fixed: FixedBlock,
    pub(crate) server: ServerBlock,
    pub(crate) server_wake: WakeWords,
    _pad0: [u8; 120],
    /// 384: bit `c % 64` of word `c / 64` set while client `c` may have
    /// requests the server has not taken.
    pub(crate) pending: [AtomicU64; (MAX_CLIENTS / 64) as usize],
    _pad1: [u8; 608],
    /// 1024: how client `c` is woken when it waits for a response.
    pub(crate) client_wake: [WakeWords; MAX_CLIENTS as usize],
}

/// Bytes 0–127: the configuration, written once before the magic.
#[repr(C, align(128))]
pub(crate) struct FixedBlock {
    /// 0: [`MAGIC`] as a little-endian u64, stored last (Release).
    pub(crate) magic: AtomicU64,
    /// 8: [`VERSION`].
    pub(crate) version: AtomicU32,
    /// 12: reserved, zero.
    pub(crate) reserved0: AtomicU32,
    /// 16: client regions.
    pub(crate) max_clients: AtomicU32,
    /// 20: requests a client may have in flight (slots per region).
    pub(crate) max_in_flight: AtomicU32,
    /// 24: the largest request, bytes.
    pub(crate) max_request_len: AtomicU64,
    /// 32: the largest response, bytes.
    pub(crate) max_response_len: AtomicU64,
    /// 40: entries of a request ring (derived; checked).
    pub(crate) ring_len: AtomicU32,
    /// 44: reserved, zero.
    pub(crate) reserved1: AtomicU32,
    /// 48: bytes between two request buffers (derived; checked).
    pub(crate) request_stride: AtomicU64,
    /// 56: bytes between two response buffers (derived; checked).
    pub(crate) response_stride: AtomicU64,
    /// 64: bytes of a region's control part (derived; checked).
    pub(crate) control_len: AtomicU64,
    /// 72: bytes of a client region (derived; checked).
    pub(crate) region_len: AtomicU64,
    /// 80: the segment's length (derived; checked).
    pub(crate) total_len: AtomicU64,
}

/// Bytes 128–255: the server.
#[repr(C, align(128))]
pub(crate) struct ServerBlock {
    /// 128: `SERVER_*`.
    pub(crate) state: AtomicU32,
    /// 132: nonzero once a server that found this service's server dead
    /// replaced it (the name now belongs to another segment).
    pub(crate) retired: AtomicU32,
    /// 136: the server's instance id (nonzero, random).
    pub(crate) instance: AtomicU64,
    /// 144: the server's process id (informational).
    pub(crate) pid: AtomicU32,
}

/// A waiter's flag and futex word.
#[repr(C)]
pub(crate) struct WakeWords {
    /// Nonzero while the waiter may be asleep on `futex`.
    pub(crate) waiting: AtomicU32,
    /// The word the waiter sleeps on; the other side bumps it.
    pub(crate) futex: FutexWord,
}

/// The start of a client region's control part: the client's block
/// (0–127) and its request ring's head (128), whose entries follow.
#[repr(C)]
pub(crate) struct ClientBlock {
    /// 0: `CLIENT_*`.
    pub(crate) state: AtomicU32,
    /// 4: the client's process id (informational).
    pub(crate) pid: AtomicU32,
    /// 8: the client's instance id (nonzero, random).
    pub(crate) instance: AtomicU64,
    /// 16: the instance of the server it connected to.
    pub(crate) server_instance: AtomicU64,
    // 24: reserved, zero. This line is written only when the region
    // changes hands, so that the server reads `state` and `instance` for
    // every request without a cache miss (a count of requests sent here,
    // written by every send, cost one: the count is `head`).
    _pad: [u8; 104],
    /// 128: requests pushed onto the ring so far (the requests this
    /// client sent); entry `i % ring_len` (u32 slot indices from 136 on)
    /// holds the slot of request `i`.
    pub(crate) head: AtomicU64,
}

/// A slot descriptor: 64 bytes, one per request a client may have in
/// flight.
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// 0: [`slot_word`]: the request's id and the slot's phase.
    pub(crate) state: AtomicU64,
    /// 8: the request's length (the client writes it before `REQUESTED`).
    pub(crate) request_len: AtomicU32,
    /// 12: the response's length (the server writes it before
    /// `RESPONDED`).
    pub(crate) response_len: AtomicU32,
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Header>() == 1024 + 8 * MAX_CLIENTS as usize);
    assert!(size_of::<Header>() <= HEADER_LEN as usize);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, magic) == 0);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, version) == 8);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, max_clients) == 16);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, max_in_flight) == 20);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, max_request_len) == 24);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, max_response_len) == 32);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, ring_len) == 40);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, request_stride) == 48);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, response_stride) == 56);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, control_len) == 64);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, region_len) == 72);
    assert!(offset_of!(Header, fixed) + offset_of!(FixedBlock, total_len) == 80);
    assert!(offset_of!(Header, server) + offset_of!(ServerBlock, state) == 128);
    assert!(offset_of!(Header, server) + offset_of!(ServerBlock, retired) == 132);
    assert!(offset_of!(Header, server) + offset_of!(ServerBlock, instance) == 136);
    assert!(offset_of!(Header, server) + offset_of!(ServerBlock, pid) == 144);
    assert!(offset_of!(Header, server_wake) + offset_of!(WakeWords, waiting) == 256);
    assert!(offset_of!(Header, server_wake) + offset_of!(WakeWords, futex) == 260);
    assert!(offset_of!(Header, pending) == 384);
    assert!(offset_of!(Header, client_wake) == 1024);
    assert!(size_of::<WakeWords>() == 8);
    assert!(offset_of!(ClientBlock, state) == 0);
    assert!(offset_of!(ClientBlock, pid) == 4);
    assert!(offset_of!(ClientBlock, instance) == 8);
    assert!(offset_of!(ClientBlock, server_instance) == 16);
    assert!(offset_of!(ClientBlock, head) == RING_AT as usize);
    assert!(size_of::<ClientBlock>() == RING_AT as usize + 8);
    assert!(size_of::<Slot>() == SLOT_LEN as usize);
    assert!(offset_of!(Slot, state) == 0);
    assert!(offset_of!(Slot, request_len) == 8);
    assert!(offset_of!(Slot, response_len) == 12);
};

/// A service's configuration as stored in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) max_clients: u32,
    pub(crate) max_in_flight: u32,
    pub(crate) max_request_len: u64,
    pub(crate) max_response_len: u64,
}

/// Where everything lies for a [`Shape`]. Offsets inside a region are
/// from the region's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) shape: Shape,
    /// Entries of a request ring: the power of two at or above
    /// `max_in_flight`.
    pub(crate) ring_len: u32,
    /// Offset of the slot descriptors.
    pub(crate) slots_at: u64,
    /// Bytes of the control part (client block, ring, slots).
    pub(crate) control_len: u64,
    pub(crate) request_stride: u64,
    pub(crate) response_stride: u64,
    /// Offset of the request buffers (= `control_len`).
    pub(crate) requests_at: u64,
    /// Offset of the response buffers.
    pub(crate) responses_at: u64,
    pub(crate) region_len: u64,
    pub(crate) total_len: u64,
}

fn round_up(n: u64, to: u64) -> Option<u64> {
    n.checked_next_multiple_of(to)
}

impl Geometry {
    /// The geometry of `shape`, or why there is none (a limit, in words).
    pub(crate) fn of(shape: Shape) -> Result<Geometry, String> {
        let Shape {
            max_clients: c,
            max_in_flight: f,
            max_request_len: q,
            max_response_len: r,
        } = shape;
        if !(1..=MAX_CLIENTS).contains(&c) {
            return Err(format!("max_clients {c} is not in 1..={MAX_CLIENTS}"));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&f) {
            return Err(format!("max_in_flight {f} is not in 1..={MAX_IN_FLIGHT}"));
        }
        if !(1..=MAX_MESSAGE_LEN).contains(&q) {
            return Err(format!(
                "max_request_len {q} is not in 1..={MAX_MESSAGE_LEN}"
            ));
        }
        if !(1..=MAX_MESSAGE_LEN).contains(&r) {
            return Err(format!(
                "max_response_len {r} is not in 1..={MAX_MESSAGE_LEN}"
            ));
        }
        let too_large = || "the service would be larger than 1 TiB".to_owned();
        let ring_len = f.next_power_of_two();
        let slots_at =
            round_up(RING_AT + 8 + 4 * u64::from(ring_len), SLOT_LEN).ok_or_else(too_large)?;
        let control_len =
            round_up(slots_at + SLOT_LEN * u64::from(f), PART_ALIGN).ok_or_else(too_large)?;
        let request_stride = round_up(q, BUFFER_ALIGN).ok_or_else(too_large)?;
        let response_stride = round_up(r, BUFFER_ALIGN).ok_or_else(too_large)?;
        let part = |stride: u64| {
            stride
                .checked_mul(u64::from(f))
                .and_then(|n| round_up(n, PART_ALIGN))
        };
        let requests_at = control_len;
        let responses_at = part(request_stride)
            .and_then(|n| n.checked_add(requests_at))
            .ok_or_else(too_large)?;
        let region_len = part(response_stride)
            .and_then(|n| n.checked_add(responses_at))
            .ok_or_else(too_large)?;
        let total_len = region_len
            .checked_mul(u64::from(c))
            .and_then(|n| n.checked_add(HEADER_LEN))
            .filter(|&t| t <= MAX_SEGMENT_LEN)
            .ok_or_else(too_large)?;
        Ok(Geometry {
            shape,
            ring_len,
            slots_at,
            control_len,
            request_stride,
            response_stride,
            requests_at,
            responses_at,
            region_len,
            total_len,
        })
    }

    /// Offset of client `c`'s region.
    pub(crate) fn region_at(&self, c: u32) -> u64 {
        HEADER_LEN + u64::from(c) * self.region_len
    }

    /// Writes the header's configuration and derived fields (not the
    /// magic).
    pub(crate) fn store(&self, h: &Header) {
        use crate::primitive::Ordering::Relaxed;
        let f = &h.fixed;
        f.version.store(VERSION, Relaxed);
        f.max_clients.store(self.shape.max_clients, Relaxed);
        f.max_in_flight.store(self.shape.max_in_flight, Relaxed);
        f.max_request_len.store(self.shape.max_request_len, Relaxed);
        f.max_response_len
            .store(self.shape.max_response_len, Relaxed);
        f.ring_len.store(self.ring_len, Relaxed);
        f.request_stride.store(self.request_stride, Relaxed);
        f.response_stride.store(self.response_stride, Relaxed);
        f.control_len.store(self.control_len, Relaxed);
        f.region_len.store(self.region_len, Relaxed);
        f.total_len.store(self.total_len, Relaxed);
    }

    /// The geometry a header describes, checked field by field against the
    /// one its configuration derives and against the segment's length.
    pub(crate) fn load(h: &Header, segment: &crate::Segment) -> Result<Geometry, String> {
        use crate::primitive::Ordering::Relaxed;
        let f = &h.fixed;
        let shape = Shape {
            max_clients: f.max_clients.load(Relaxed),
            max_in_flight: f.max_in_flight.load(Relaxed),
            max_request_len: f.max_request_len.load(Relaxed),
            max_response_len: f.max_response_len.load(Relaxed),
        };
        let g = Geometry::of(shape)?;
        let stored = (
            f.ring_len.load(Relaxed),
            f.request_stride.load(Relaxed),
            f.response_stride.load(Relaxed),
            f.control_len.load(Relaxed),
            f.region_len.load(Relaxed),
            f.total_len.load(Relaxed),
        );
        let derived = (
            g.ring_len,
            g.request_stride,
            g.response_stride,
            g.control_len,
            g.region_len,
            g.total_len,
        );
        if stored != derived {
            return Err(format!(
                "the derived fields (ring, request stride, response stride, control part, region, total) {stored:?} are not the {derived:?} the configuration gives"
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

    pub(crate) fn wake() -> WakeWords {
        WakeWords {
            waiting: AtomicU32::new(0),
            futex: FutexWord::new(),
        }
    }

    pub(crate) fn slot() -> Slot {
        Slot {
            state: AtomicU64::new(0),
            request_len: AtomicU32::new(0),
            response_len: AtomicU32::new(0),
        }
    }
}
