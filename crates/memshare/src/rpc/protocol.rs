//! The request/response protocol on one client region: how a request
//! travels from the client's slot to the server and its response back,
//! and how each side parks and is woken. Written against
//! `crate::primitive`, so that the loom model (`loom_model.rs`) runs this
//! very code. The argument, step by step, is `docs/rpc-layout.md` §6.

use std::time::Duration;

use super::layout::{
    id_of, phase_of, slot_word, Slot, WakeWords, SLOT_DECLINED, SLOT_REQUESTED, SLOT_RESPONDED,
    SLOT_TAKEN,
};
use crate::primitive::{fence, AtomicU32, AtomicU64, Ordering, Parkers};

/// What both sides see of one client region (and its wake words, which
/// live in the header).
#[derive(Clone, Copy)]
pub(crate) struct Region<'a> {
    /// Requests pushed so far (the client writes it).
    pub(crate) head: &'a AtomicU64,
    /// The request ring: `ring_len` slot indices.
    pub(crate) entries: &'a [AtomicU32],
    /// The slot descriptors: `max_in_flight` of them.
    pub(crate) slots: &'a [Slot],
    /// The client's flag and futex word (the server wakes it).
    pub(crate) wake: &'a WakeWords,
}

/// How a client tells the server it has pushed requests: its bit in the
/// pending mask, and the server's wake words.
#[derive(Clone, Copy)]
pub(crate) struct Doorbell<'a> {
    pub(crate) pending: &'a AtomicU64,
    pub(crate) bit: u64,
    pub(crate) server_wake: &'a WakeWords,
}

/// Client: writes request `id` in `slot` (its bytes already in the slot's
/// request buffer) as request number `head` of the ring, without telling
/// the server yet ([`publish`] does); returns the new head.
pub(crate) fn push(region: Region<'_>, head: u64, slot: u32, id: u64, len: u32) -> u64 {
    let s = &region.slots[slot as usize];
    s.request_len.store(len, Ordering::Relaxed);
    // Release: a server that sees REQUESTED sees the length and the bytes.
    s.state
        .store(slot_word(id, SLOT_REQUESTED), Ordering::Release);
    let ring_len = region.entries.len() as u64;
    region.entries[(head % ring_len) as usize].store(slot, Ordering::Relaxed);
    head + 1
}

/// Client: publishes the requests pushed up to `head` (one store of the
/// head, one fence and one look at the doorbell for however many).
pub(crate) fn publish(region: Region<'_>, doorbell: Doorbell<'_>, head: u64) {
    // Release: a server that sees the head sees the entries (and the
    // slots).
    region.head.store(head, Ordering::Release);
    // Pairs with the fence in `take` (the server clears the bit, then
    // looks at the head again) and with the one in `park_server` (it sets
    // its flag, then looks at every head): either the server sees this
    // head, or this side sees its cleared bit and its flag.
    fence(Ordering::SeqCst);
    if doorbell.pending.load(Ordering::Relaxed) & doorbell.bit == 0 {
        doorbell.pending.fetch_or(doorbell.bit, Ordering::Release);
    }
    if doorbell.server_wake.waiting.load(Ordering::Relaxed) != 0 {
        doorbell.server_wake.futex.bump_and_wake();
    }
}

/// Client: after a store the server must see (its state at attach or
/// detach), a SeqCst fence, then a wake if the server's flag is up. Pairs
/// with the fence after a waiter sets that flag (`park_server`, or an
/// async notifier's): either the waiter sees the store, or this side sees
/// the flag.
pub(crate) fn wake_server(server_wake: &WakeWords) {
    fence(Ordering::SeqCst);
    if server_wake.waiting.load(Ordering::Relaxed) != 0 {
        server_wake.futex.bump_and_wake();
    }
}

/// What a client finds in the slot of its request `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Not answered yet.
    Waiting,
    /// The response (this long) is in the slot's response buffer.
    Responded(u32),
    /// The server dropped the request without a response.
    Declined,
    /// The slot holds another request's id, or no valid phase: only a
    /// server breaking the protocol writes that.
    Broken(u64),
}

/// Client: what the slot of request `id` says now.
pub(crate) fn answer(region: Region<'_>, slot: u32, id: u64) -> Answer {
    let s = &region.slots[slot as usize];
    // Acquire: the response's length and bytes, written before.
    let word = s.state.load(Ordering::Acquire);
    if word == slot_word(id, SLOT_RESPONDED) {
        Answer::Responded(s.response_len.load(Ordering::Relaxed))
    } else if word == slot_word(id, SLOT_DECLINED) {
        Answer::Declined
    } else if id_of(word) == id && matches!(phase_of(word), SLOT_REQUESTED | SLOT_TAKEN) {
        Answer::Waiting
    } else {
        Answer::Broken(word)
    }
}

/// Client: parks for at most `slice` on its futex word, unless request
/// `id` in `slot` is answered once the flag is set. `parkers`: the
/// client's parkers in this process, which share the flag.
pub(crate) fn park_client(
    region: Region<'_>,
    parkers: &Parkers,
    slot: u32,
    id: u64,
    slice: Duration,
) {
    let seq = region.wake.futex.load();
    parkers.arm_flag(&region.wake.waiting);
    // Pairs with the fence in `finish`: either the server sees the flag,
    // or this side sees the answer.
    fence(Ordering::SeqCst);
    if answer(region, slot, id) == Answer::Waiting && !slice.is_zero() {
        region.wake.futex.wait(seq, slice);
    }
    parkers.disarm_flag(&region.wake.waiting);
}

/// What the server found at the tail of a client's ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Nothing (the pending bit is cleared).
    Empty,
    /// Request `id`, `len` bytes, in `slot`: now taken (the server owes
    /// it an answer).
    Request { slot: u32, id: u64, len: u32 },
    /// The client broke the protocol (what, in words).
    Violation(&'static str),
}

/// The most entries a request ring has (`MAX_IN_FLIGHT`, a power of two).
const RING_MAX: usize = super::layout::MAX_IN_FLIGHT as usize;

/// What the server keeps privately of one client's ring: how far it has
/// taken requests (`tail`), the entries it has read and not taken yet
/// (from `tail` up to `seen`, the head it last loaded; copied out when it
/// loaded that head, so that a batch of requests costs one look at the
/// line the client writes on every send, not one per request), and which
/// slots hold a request it took and has not answered.
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    /// Requests taken so far.
    pub(crate) tail: u64,
    /// The head last loaded: entries `tail..seen` are in `entries`.
    seen: u64,
    /// Entry `n` (for `tail <= n < seen`) at `n % RING_MAX`.
    entries: [u32; RING_MAX],
    /// A bit per slot whose request the server took and has not answered
    /// (a ring entry naming such a slot again is a violation: the server
    /// never lends one response buffer twice).
    pub(crate) held: u64,
    /// The held slots that an earlier instance of the region lent (a
    /// client that wrote its region free under a request the server held,
    /// which only a hostile one does): a request of the region's client in
    /// one of them waits until it is answered, rather than counting as a
    /// violation of that client's (it could not know).
    pub(crate) stale: u64,
    /// Whether the last take read a new batch (entries `tail - 1..seen`).
    fresh: bool,
}

impl Default for Ring {
    fn default() -> Ring {
        Ring {
            tail: 0,
            seen: 0,
            entries: [0; RING_MAX],
            held: 0,
            stale: 0,
            fresh: false,
        }
    }
}

impl Ring {
    /// A ring read from the start (a new client instance, a reset
    /// region), keeping the slots still held: answers the server still
    /// owes an earlier instance (only possible if a client rewrote its
    /// instance) keep their buffers.
    pub(crate) fn restart(&mut self) {
        *self = Ring {
            held: self.held,
            stale: self.held,
            ..Ring::default()
        };
    }

    /// If the last take read a new batch from the ring: the slots its
    /// entries name (the one just taken first), unchecked; once.
    pub(crate) fn fresh_batch(&mut self) -> Option<impl Iterator<Item = u32> + '_> {
        if !std::mem::take(&mut self.fresh) {
            return None;
        }
        let entries = &self.entries;
        Some((self.tail.wrapping_sub(1)..self.seen).map(move |n| entries[n as usize % RING_MAX]))
    }

    /// The request in `slot` is answered (or dropped): its buffers are no
    /// longer lent.
    pub(crate) fn release(&mut self, slot: u32) {
        self.held &= !(1u64 << (slot % 64));
        self.stale &= !(1u64 << (slot % 64));
    }
}

/// Server: takes the next request of a client, from the entries it read
/// before if any are left, else from the ring (all the entries the client
/// pushed so far are read at once). `max_len`: the largest request.
pub(crate) fn take(
    region: Region<'_>,
    doorbell: Doorbell<'_>,
    ring: &mut Ring,
    max_len: u64,
) -> Take {
    if ring.seen == ring.tail {
        let ring_len = region.entries.len() as u64;
        // Acquire: the entries and the slots written before the head.
        let mut head = region.head.load(Ordering::Acquire);
        if head == ring.tail {
            doorbell.pending.fetch_and(!doorbell.bit, Ordering::Relaxed);
            // Pairs with the fence in `publish`: a request pushed before the
            // bit was cleared is seen now; one pushed after sets the bit
            // again.
            fence(Ordering::SeqCst);
            head = region.head.load(Ordering::Acquire);
            if head == ring.tail {
                return Take::Empty;
            }
            // Taken now; the bit stays set for the rest.
            doorbell.pending.fetch_or(doorbell.bit, Ordering::Relaxed);
        }
        if head.wrapping_sub(ring.tail) > ring_len || ring_len as usize > RING_MAX {
            return Take::Violation(
                "its request ring's head is not within one ring of the requests taken",
            );
        }
        let mut n = ring.tail;
        while n != head {
            ring.entries[n as usize % RING_MAX] =
                region.entries[(n % ring_len) as usize].load(Ordering::Relaxed);
            n += 1;
        }
        ring.seen = head;
        ring.fresh = true;
    }
    let slot = ring.entries[ring.tail as usize % RING_MAX];
    ring.tail += 1;
    let Some(s) = region.slots.get(slot as usize).filter(|_| slot < 64) else {
        return Take::Violation("a ring entry names a slot beyond max_in_flight");
    };
    let bit = 1u64 << slot;
    if ring.stale & bit != 0 {
        // Lent by an earlier instance of the region: this request waits
        // (the entry is put back, the bit cleared: the server looks again
        // once that slot is answered).
        ring.tail -= 1;
        doorbell.pending.fetch_and(!doorbell.bit, Ordering::Relaxed);
        return Take::Empty;
    }
    if ring.held & bit != 0 {
        return Take::Violation("a ring entry names a slot whose request is not answered yet");
    }
    // Acquire: the request's length and bytes, written before (the head's
    // Acquire covers them too).
    let word = s.state.load(Ordering::Acquire);
    if phase_of(word) != SLOT_REQUESTED {
        return Take::Violation("a ring entry names a slot that holds no request");
    }
    let len = s.request_len.load(Ordering::Relaxed);
    if u64::from(len) > max_len {
        return Take::Violation("a request is longer than max_request_len");
    }
    ring.held |= bit;
    Take::Request {
        slot,
        id: id_of(word),
        len,
    }
}

/// Asks the processor to bring the cache line at `p` in for writing, ahead
/// of the write (the server does for the slots and response buffers of a
/// batch it reads: their lines then come across at once, not one after
/// another as each request is answered). Only a hint: nothing is read or
/// written, and no address faults.
#[inline(always)]
pub(crate) fn prefetch_write(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    if prefetchw_supported() {
        // SAFETY: PREFETCHW (supported, as CPUID said) only hints; it
        // neither reads nor writes memory, never faults, and changes no
        // register or flag.
        unsafe {
            std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly));
        }
    } else {
        prefetch_read(p);
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = p;
}

/// As [`prefetch_write`], for reading (the request buffers of a batch).
#[inline(always)]
pub(crate) fn prefetch_read(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: a prefetch only hints: it reads nothing architecturally and
    // never faults, whatever the address; SSE is in x86_64's baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = p;
}

/// Whether the processor has PREFETCHW (CPUID 8000_0001h, ECX bit 8),
/// asked once.
#[cfg(all(target_arch = "x86_64", not(loom)))]
// (`__cpuid` is safe from Rust 1.89 on, unsafe in the MSRV's.)
#[allow(unused_unsafe)]
fn prefetchw_supported() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
    static KNOWN: AtomicU8 = AtomicU8::new(0);
    match KNOWN.load(Relaxed) {
        1 => false,
        2 => true,
        _ => {
            // SAFETY: CPUID is on every x86_64 processor, and leaf
            // 8000_0001h is defined on every one.
            let leaf = unsafe { std::arch::x86_64::__cpuid(0x8000_0001) };
            let has = leaf.ecx & (1 << 8) != 0;
            KNOWN.store(if has { 2 } else { 1 }, Relaxed);
            has
        }
    }
}

/// Server: whether a client whose ring it has read up to `tail` has
/// pushed more (one load; for the check before parking).
pub(crate) fn has_requests(region: Region<'_>, tail: u64) -> bool {
    region.head.load(Ordering::Acquire) != tail
}

/// Server: answers request `id` in `slot`: with the response (`len`
/// bytes, already in the slot's response buffer), or declined (`None`).
/// False if the slot no longer holds that request taken (a client that
/// broke the protocol): nothing is answered then.
pub(crate) fn finish(region: Region<'_>, slot: u32, id: u64, response: Option<u32>) -> bool {
    let s = &region.slots[slot as usize];
    let phase = match response {
        Some(len) => {
            s.response_len.store(len, Ordering::Relaxed);
            SLOT_RESPONDED
        }
        None => SLOT_DECLINED,
    };
    // Release: the client that sees the answer sees the length and bytes.
    // The slot still holds the request as the client pushed it: the server
    // writes no phase between (taking a request is private to the server:
    // `Ring::held`), so that a call costs it one transaction on the slot's
    // line, this one.
    let answered = s
        .state
        .compare_exchange(
            slot_word(id, SLOT_REQUESTED),
            slot_word(id, phase),
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok();
    // Pairs with the fence in `park_client`.
    fence(Ordering::SeqCst);
    // The waker clears the flag: one wake per park of the client, not one
    // per answer given while the woken client has not run yet (it sets the
    // flag again if it parks again).
    if answered
        && region.wake.waiting.load(Ordering::Relaxed) != 0
        && region.wake.waiting.swap(0, Ordering::Relaxed) != 0
    {
        region.wake.futex.bump_and_wake();
    }
    answered
}

/// Server: parks for at most `slice` on its futex word, unless
/// `nothing_pushed()` (a look at every client's head) is false once the
/// flag is set. `parkers`: the server's parkers in this process, which
/// share the flag.
pub(crate) fn park_server(
    server_wake: &WakeWords,
    parkers: &Parkers,
    slice: Duration,
    nothing_pushed: impl FnOnce() -> bool,
) {
    let seq = server_wake.futex.load();
    parkers.arm_flag(&server_wake.waiting);
    // Pairs with the fence in `send`: either a client sees the flag, or
    // this side sees its head.
    fence(Ordering::SeqCst);
    if nothing_pushed() && !slice.is_zero() {
        server_wake.futex.wait(seq, slice);
    }
    parkers.disarm_flag(&server_wake.waiting);
}
