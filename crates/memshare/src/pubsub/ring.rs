//! The publish-subscribe protocol itself (docs/pubsub-layout.md §5–§8),
//! free of the OS: a publisher's ring of entries naming buffers of its
//! pool, the holds that keep a buffer a subscriber reads from being
//! reused, the cursors, publishing and polling with every shared value
//! validated, and the wake-ups. The endpoints (`publisher.rs`,
//! `subscriber.rs`) run it on mapped memory; the loom model
//! (`loom_model.rs`) runs the same code on loom's atomics.

use std::time::Duration;

use super::layout::{Entry, Geometry, PublisherBlock, PublisherWake, SubscriberHead, WakeBlock};
use crate::primitive::{fence, AtomicU32, AtomicU64, Ordering, Parkers};

/// A contradiction in what a peer wrote: the caller turns it into
/// `Error::Corrupted`, naming the service.
#[derive(Debug)]
pub(crate) struct Corruption(pub(crate) String);

/// A publisher's pool of buffers.
#[cfg_attr(not(loom), derive(Clone))]
pub(crate) struct Buffers {
    #[cfg(not(loom))]
    base: *mut u8,
    /// Under loom, each byte is a cell: a byte read while it may be
    /// written (a buffer reused while held) is a reported data race.
    #[cfg(loom)]
    cells: Vec<loom::cell::UnsafeCell<u8>>,
    stride: u64,
}

// SAFETY: shared memory by design; which side touches which buffer when is
// the protocol's business, and every access goes through raw pointers (or
// loom's cells).
unsafe impl Send for Buffers {}
// SAFETY: as for `Send`.
unsafe impl Sync for Buffers {}

impl Buffers {
    /// The pool at `base`.
    ///
    /// # Safety
    ///
    /// `base` points at `pool_len * stride` mapped bytes that stay mapped
    /// as long as the pool is used.
    #[cfg(not(loom))]
    pub(crate) unsafe fn new(base: *mut u8, stride: u64) -> Buffers {
        Buffers { base, stride }
    }

    #[cfg(loom)]
    pub(crate) fn zeroed(pool_len: u32, stride: u64) -> Buffers {
        Buffers {
            cells: (0..u64::from(pool_len) * stride)
                .map(|_| loom::cell::UnsafeCell::new(0))
                .collect(),
            stride,
        }
    }

    /// The first byte of buffer `b` (validated by the caller).
    #[cfg(not(loom))]
    pub(crate) fn at(&self, b: u32) -> *mut u8 {
        // SAFETY: within the pool: `b < pool_len` (checked by callers).
        unsafe { self.base.add((u64::from(b) * self.stride) as usize) }
    }

    #[cfg(loom)]
    pub(crate) fn write(&self, b: u32, bytes: &[u8]) {
        let start = (u64::from(b) * self.stride) as usize;
        for (i, &v) in bytes.iter().enumerate() {
            // SAFETY: loom checks that no access to this byte is
            // concurrent with this one.
            self.cells[start + i].with_mut(|p| unsafe { *p = v });
        }
    }

    #[cfg(loom)]
    pub(crate) fn read(&self, b: u32, len: usize) -> Vec<u8> {
        let start = (u64::from(b) * self.stride) as usize;
        (0..len)
            // SAFETY: as in `write`.
            .map(|i| self.cells[start + i].with(|p| unsafe { *p }))
            .collect()
    }
}

/// One publisher's shared state: its block, its ring and its pool (in its
/// region), and its wake words (in the header).
#[derive(Clone, Copy)]
pub(crate) struct PubView<'a> {
    pub(crate) block: &'a PublisherBlock,
    pub(crate) wake: &'a PublisherWake,
    pub(crate) entries: &'a [Entry],
    pub(crate) buffers: &'a Buffers,
}

/// Where a subscriber finds the publishers: every slot, by index (a slice
/// in the loom model, the mapped service in the endpoints: no allocation
/// per message).
pub(crate) trait Publishers<'a> {
    fn count(&self) -> usize;
    fn get(&self, p: usize) -> PubView<'a>;
}

impl<'a> Publishers<'a> for &[PubView<'a>] {
    fn count(&self) -> usize {
        self.len()
    }

    fn get(&self, p: usize) -> PubView<'a> {
        self[p]
    }
}

/// One subscriber's shared state: its block's fixed part, its hold words
/// and its cursors (one per publisher slot).
pub(crate) struct SubView<'a> {
    pub(crate) head: &'a SubscriberHead,
    pub(crate) holds: &'a [AtomicU32],
    pub(crate) cursors: &'a [AtomicU64],
}

/// The sizes every check is made against (from the validated geometry,
/// never re-read from shared memory).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) ring_len: u32,
    pub(crate) pool_len: u32,
    pub(crate) max_message_len: u64,
    pub(crate) depth: u32,
    pub(crate) history: u32,
    pub(crate) drop_oldest: bool,
}

impl From<&Geometry> for Limits {
    fn from(g: &Geometry) -> Limits {
        Limits {
            ring_len: g.ring_len,
            pool_len: g.pool_len,
            max_message_len: g.shape.max_message_len,
            depth: g.shape.depth,
            history: g.shape.history,
            drop_oldest: g.shape.overflow == super::layout::OVERFLOW_DROP_OLDEST,
        }
    }
}

const NO_BUFFER: u32 = u32::MAX;

/// A publisher's private state: the truth about its ring and pool, only
/// ever published.
#[derive(Debug)]
pub(crate) struct PubCore {
    /// This publisher's slot.
    pub(crate) index: u32,
    pub(crate) instance: u64,
    pub(crate) limits: Limits,
    /// The next sequence number.
    pub(crate) head: u64,
    /// The buffer each ring entry names.
    ring_buffers: Vec<u32>,
    /// Buffers nobody uses.
    free: Vec<u32>,
    /// Buffers no entry names any more, which a subscriber may still hold.
    retired: Vec<u32>,
    /// The lowest cursor of the subscribers, as last seen (only grows, but
    /// a late subscriber may start lower: see `room`).
    min_cursor: u64,
}

impl PubCore {
    /// A publisher in slot `index` of a ring whose entries `view` holds,
    /// continuing where the previous publisher of the slot stopped (a new
    /// slot's entries are all empty). Every buffer no valid entry names is
    /// retired: a subscriber may still hold it (it is freed by the first
    /// scan of the holds).
    pub(crate) fn new(index: u32, instance: u64, limits: Limits, view: &PubView<'_>) -> PubCore {
        let n = u64::from(limits.ring_len);
        // The head is past every sequence any entry holds: a publisher that
        // died after storing an entry but before its head loses nothing.
        let stored = view.block.head.load(Ordering::Acquire);
        // No honest publisher reaches 2^62 (as the entries' sequences
        // below): a larger head is a hostile writer's, and would overflow
        // the sequence arithmetic; start from the entries then.
        let mut head = if stored < 1 << 62 { stored } else { 0 };
        for e in view.entries {
            let seq = e.seq.load(Ordering::Acquire);
            if seq != 0 && seq < (1 << 62) {
                head = head.max(seq);
            }
        }
        let mut ring_buffers = vec![NO_BUFFER; limits.ring_len as usize];
        let mut named = vec![false; limits.pool_len as usize];
        for (slot, e) in view.entries.iter().enumerate() {
            let seq = e.seq.load(Ordering::Acquire);
            let b = e.buffer.load(Ordering::Relaxed);
            // An entry of the last ring's worth of sequences, naming a
            // buffer of the pool (each buffer once): still readable.
            let live = seq != 0
                && seq <= head
                && seq + n > head
                && (seq - 1) % n == slot as u64
                && b < limits.pool_len
                && !named[b as usize];
            if live {
                ring_buffers[slot] = b;
                named[b as usize] = true;
            }
        }
        let retired = (0..limits.pool_len)
            .filter(|&b| !named[b as usize])
            .collect();
        PubCore {
            index,
            instance,
            limits,
            head,
            ring_buffers,
            free: Vec::new(),
            retired,
            min_cursor: 0,
        }
    }

    /// A free buffer to lend, if there is one without a scan.
    pub(crate) fn pop_free(&mut self) -> Option<u32> {
        self.free.pop()
    }

    /// A buffer to lend: a free one, after scanning the holds of `subs` (the
    /// live subscribers) if none is free. `None` only if every buffer is
    /// held, which the pool's size rules out for honest subscribers.
    pub(crate) fn take_buffer<'a>(
        &mut self,
        subs: impl Iterator<Item = SubView<'a>>,
    ) -> Option<u32> {
        if self.free.is_empty() {
            self.reclaim(subs);
        }
        self.free.pop()
    }

    /// Gives back a buffer that was lent and not published.
    pub(crate) fn return_buffer(&mut self, b: u32) {
        self.free.push(b);
    }

    /// Frees every retired buffer that no subscriber holds.
    fn reclaim<'a>(&mut self, subs: impl Iterator<Item = SubView<'a>>) {
        // The other half of the store-buffering pair in `SubCore::look`:
        // either a subscriber's re-check of the entry sees it overwritten,
        // or this scan sees its hold. (`publish` fences after every
        // overwrite too; this one keeps the scan right on its own.)
        fence(Ordering::SeqCst);
        let mut held = Vec::new();
        for sub in subs {
            for h in sub.holds {
                // Acquire: a hold released (0) after the subscriber's last
                // read of the buffer makes that read happen before reuse.
                let word = h.load(Ordering::Acquire);
                if word == 0 {
                    continue;
                }
                let (p, b) = (
                    (word - 1) / self.limits.pool_len,
                    (word - 1) % self.limits.pool_len,
                );
                if p == self.index {
                    held.push(b);
                }
            }
        }
        let free = &mut self.free;
        self.retired.retain(|b| {
            if held.contains(b) {
                true
            } else {
                free.push(*b);
                false
            }
        });
    }

    /// Under the overflow policy "block": whether the next publication
    /// leaves every live subscriber in `subs` at most `depth` messages
    /// behind. Reads the subscribers' cursors only when the last ones seen
    /// say there is no room.
    pub(crate) fn room<'a>(&mut self, subs: impl Iterator<Item = SubView<'a>>) -> bool {
        if self.room_as_last_seen() {
            return true;
        }
        let depth = u64::from(self.limits.depth);
        let mut min = self.head;
        for sub in subs {
            // A cursor ahead of the head (a hostile subscriber) counts as
            // the head: it cannot hold the publisher back.
            let c = sub.cursors[self.index as usize].load(Ordering::Acquire);
            min = min.min(c);
        }
        self.min_cursor = min;
        self.head - min < depth
    }

    /// Whether the cursors last seen leave room (no shared memory read).
    pub(crate) fn room_as_last_seen(&self) -> bool {
        self.head - self.min_cursor < u64::from(self.limits.depth)
    }

    /// Whether a parked publisher is still without room: the "blocked"
    /// test of `park_publisher`.
    pub(crate) fn still_full<'a>(
        head: u64,
        depth: u32,
        index: u32,
        subs: impl Iterator<Item = SubView<'a>>,
    ) -> bool {
        subs.into_iter().any(|sub| {
            let c = sub.cursors[index as usize].load(Ordering::Relaxed);
            head.saturating_sub(c) >= u64::from(depth)
        })
    }

    /// Publishes buffer `b` (lent by `take_buffer`, its `len` bytes
    /// written) as the next message, then wakes parked subscribers.
    pub(crate) fn publish(&mut self, view: &PubView<'_>, wake: &WakeBlock, b: u32, len: u32) {
        let s = self.head;
        let slot = (s % u64::from(self.limits.ring_len)) as usize;
        let e = &view.entries[slot];
        // A seqlock: invalidate, write, publish. Release: the buffer's bytes
        // and the fields are visible to whoever acquires the new `seq`.
        e.seq.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        e.buffer.store(b, Ordering::Relaxed);
        e.len.store(len, Ordering::Relaxed);
        e.instance.store(self.instance, Ordering::Relaxed);
        e.seq.store(s + 1, Ordering::Release);
        self.head = s + 1;
        view.block.head.store(s + 1, Ordering::Release);
        let old = std::mem::replace(&mut self.ring_buffers[slot], b);
        if old != NO_BUFFER {
            self.retired.push(old);
        }
        // The store-buffering pair with a parking subscriber (see
        // `park_subscriber`): it sees the entry, or we see its bit.
        fence(Ordering::SeqCst);
        // The waker clears the bits: one wake per park, not one per
        // message while the woken subscribers have not run yet. It wakes
        // the subscribers whose bits it cleared (where the system cannot
        // wake a futex's waiters all at once: Windows' events).
        if wake.parked.load(Ordering::Relaxed) != 0 {
            let parked = wake.parked.swap(0, Ordering::Relaxed);
            if parked != 0 {
                wake.futex.bump_and_wake_waiters(parked);
            }
        }
    }
}

/// Where a polled message lies, and the hold that keeps its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Got {
    pub(crate) publisher: u32,
    pub(crate) buffer: u32,
    pub(crate) len: usize,
    pub(crate) seq: u64,
    pub(crate) instance: u64,
    /// The index of the hold word taken.
    pub(crate) hold: usize,
}

/// What one look at a publisher's next entry found.
enum Look {
    Message(Got),
    Nothing,
    /// The subscriber fell behind (drop oldest) and moved on: look again.
    Moved,
}

/// A subscriber's private state.
#[derive(Debug)]
pub(crate) struct SubCore {
    pub(crate) limits: Limits,
    /// The next sequence to receive from each publisher slot.
    pub(crate) cursors: Vec<u64>,
    /// Which hold words are in use.
    holds_used: u64,
    /// The publisher slot to look at first next time (fairness).
    next: usize,
    /// Messages lost to the overflow policy.
    pub(crate) missed: u64,
    pub(crate) received: u64,
    /// For each publisher slot, the park (its `waiting` tag) this
    /// subscriber last woke: one wake per park, not one per message.
    woken: Vec<u32>,
}

impl SubCore {
    /// A subscriber starting `history` messages back (at most what each
    /// ring still holds) in every publisher slot.
    pub(crate) fn new<'a>(limits: Limits, pubs: impl Publishers<'a>) -> SubCore {
        let cursors: Vec<u64> = (0..pubs.count())
            .map(|p| {
                let head = pubs.get(p).block.head.load(Ordering::Acquire);
                // A head past 2^62 is a hostile writer's (as in `lapped`):
                // start from 0 there, so that a cursor never overflows.
                let head = if head < 1 << 62 { head } else { 0 };
                head.saturating_sub(u64::from(limits.history))
            })
            .collect();
        let woken = vec![0; cursors.len()];
        SubCore {
            limits,
            cursors,
            holds_used: 0,
            next: 0,
            missed: 0,
            received: 0,
            woken,
        }
    }

    /// Whether a hold word is free: `false` if this subscriber holds
    /// `max_held` samples already.
    pub(crate) fn can_hold(&self, max_held: usize) -> bool {
        (self.holds_used.count_ones() as usize) < max_held
    }

    /// The next message of any publisher, held, or `None`. Publishers are
    /// looked at in turn, starting after the one that gave the last message.
    pub(crate) fn poll<'a>(
        &mut self,
        sub: &SubView<'_>,
        pubs: impl Publishers<'a>,
    ) -> Result<Option<Got>, Corruption> {
        let count = pubs.count();
        for i in 0..count {
            let p = (self.next + i) % count;
            // At most a few rounds: a lap moves the cursor to a valid entry.
            for _ in 0..4 {
                match self.look(p, sub, &pubs.get(p))? {
                    Look::Message(got) => {
                        self.next = (p + 1) % count;
                        return Ok(Some(got));
                    }
                    Look::Nothing => break,
                    Look::Moved => continue,
                }
            }
        }
        Ok(None)
    }

    fn look(&mut self, p: usize, sub: &SubView<'_>, pv: &PubView<'_>) -> Result<Look, Corruption> {
        let n = u64::from(self.limits.ring_len);
        let c = self.cursors[p];
        let e = &pv.entries[(c % n) as usize];
        // Acquire: the buffer's bytes and the entry's fields are visible.
        let seq = e.seq.load(Ordering::Acquire);
        if seq == c + 1 {
            let b = e.buffer.load(Ordering::Relaxed);
            let len = e.len.load(Ordering::Relaxed);
            let instance = e.instance.load(Ordering::Relaxed);
            let Some(hold) = (0..sub.holds.len()).find(|&h| self.holds_used & (1 << h) == 0) else {
                return Ok(Look::Nothing);
            };
            // Hold the buffer before trusting what the entry said: store the
            // hold, then re-check the entry (the store-buffering pair with
            // the publisher's scan in `PubCore::reclaim`). The re-check is
            // also the seqlock's: the fields read above belong to `seq`.
            let valid = b < self.limits.pool_len;
            if valid {
                sub.holds[hold].store(
                    super::layout::hold_word(self.limits.pool_len, p as u32, b),
                    Ordering::Relaxed,
                );
            }
            fence(Ordering::SeqCst);
            // Acquire: if the entry was overwritten, what the publisher did
            // before (its head) is visible to `lapped`.
            if e.seq.load(Ordering::Acquire) != c + 1 {
                // Overwritten meanwhile: the publisher lapped us.
                if valid {
                    sub.holds[hold].store(0, Ordering::Release);
                }
                return self.lapped(p, sub, pv).map(|()| Look::Moved);
            }
            if !valid || u64::from(len) > self.limits.max_message_len {
                if valid {
                    sub.holds[hold].store(0, Ordering::Release);
                }
                return Err(Corruption(format!(
                    "entry of sequence {c} of publisher {p} names buffer {b} of {} and {len} bytes (at most {})",
                    self.limits.pool_len, self.limits.max_message_len
                )));
            }
            self.holds_used |= 1 << hold;
            self.cursors[p] = c + 1;
            self.received += 1;
            // Release: our reads of earlier buffers (held ones aside)
            // happen before a publisher that sees this cursor reuses them.
            sub.cursors[p].store(c + 1, Ordering::Release);
            sub.head.received.store(self.received, Ordering::Relaxed);
            return Ok(Look::Message(Got {
                publisher: p as u32,
                buffer: b,
                len: len as usize,
                seq: c,
                instance,
                hold,
            }));
        }
        if seq == 0 || seq <= c {
            // Being written, or still the entry of an older sequence: not
            // published yet.
            return Ok(Look::Nothing);
        }
        // A newer sequence: this subscriber was lapped.
        self.lapped(p, sub, pv).map(|()| Look::Moved)
    }

    /// The publisher `p` published past this subscriber's entry: move on to
    /// the oldest message still kept for a subscriber (`depth` back from
    /// the head), counting what was skipped as missed.
    ///
    /// An honest publisher that overwrote the entry of `c` has a head of at
    /// least `c + ring_len`, more than `depth` past `c` (the ring is longer
    /// than the depth): a head that says otherwise is a lie.
    fn lapped(&mut self, p: usize, sub: &SubView<'_>, pv: &PubView<'_>) -> Result<(), Corruption> {
        let c = self.cursors[p];
        let head = pv.block.head.load(Ordering::Acquire);
        let oldest = head.saturating_sub(u64::from(self.limits.depth));
        if head >= 1 << 62 || oldest <= c {
            return Err(Corruption(format!(
                "publisher {p}: an entry holds a sequence past {c}, but its head {head} says it was not overwritten"
            )));
        }
        self.missed = self.missed.saturating_add(oldest - c);
        self.cursors[p] = oldest;
        sub.head.missed.store(self.missed, Ordering::Relaxed);
        sub.cursors[p].store(oldest, Ordering::Release);
        Ok(())
    }

    /// Puts this subscriber's true cursors back into its block where a
    /// peer wrote over them. Only the subscriber writes its published
    /// cursors, and wait sets and the async notifier read them as its
    /// truth (`SubscriberWatch::ready`): a peer that wrote other values
    /// there would have them report the subscriber ready at every look
    /// (news at the written cursor, or drained past a gone publisher's
    /// head) while its `try_recv` finds nothing, and a future would spin
    /// through the notifier. Called by the `try_` forms when they find
    /// nothing: a load per publisher slot of lines this subscriber writes,
    /// a store only after such a write.
    pub(crate) fn restore_cursors(&self, sub: &SubView<'_>) {
        for (published, &own) in sub.cursors.iter().zip(&self.cursors) {
            if published.load(Ordering::Relaxed) != own {
                // Release, as every publication of a cursor: it orders
                // nothing new (the reads it covers were released when it
                // was first published), but publishers load it with
                // Acquire.
                published.store(own, Ordering::Release);
            }
        }
    }

    /// Lets go of hold word `hold`: the publisher may reuse the buffer.
    pub(crate) fn release(&mut self, sub: &SubView<'_>, hold: usize) {
        // Release: our reads of the buffer happen before its reuse.
        sub.holds[hold].store(0, Ordering::Release);
        self.holds_used &= !(1 << hold);
    }

    /// Whether no publisher has a message for this subscriber (the
    /// "blocked" test of a parked subscriber).
    pub(crate) fn nothing_new<'a>(
        cursors: &[u64],
        ring_len: u32,
        pubs: impl Publishers<'a>,
    ) -> bool {
        cursors
            .iter()
            .enumerate()
            .all(|(p, &c)| !SubCore::news_at(&pubs.get(p), c, ring_len))
    }

    /// Whether the entry that cursor `c` names in publisher `pv`'s ring
    /// holds a sequence past it: a message, or a lap (one load). Being
    /// written (0) or older: nothing.
    pub(crate) fn news_at(pv: &PubView<'_>, c: u64, ring_len: u32) -> bool {
        let e = &pv.entries[(c % u64::from(ring_len)) as usize];
        let seq = e.seq.load(Ordering::Relaxed);
        seq != 0 && seq > c
    }

    /// After receiving: wakes publishers waiting for room (overflow policy
    /// "block"), the other half of the pair in `park_publisher`.
    ///
    /// Once per park: a publisher's `waiting` word names its park (a tag
    /// of the futex value it sleeps on, which every wake bumps), and a
    /// subscriber does not wake the same park twice. Without it, every
    /// message received while a woken publisher had not run yet (and not
    /// cleared its word) made a `futex_wake`: measured through
    /// memshare-bridge at 64 B under "block", about 0.5 system calls per
    /// message in the forwarding subscriber. The word is the publisher's
    /// alone (the subscriber only reads it), so the store-buffering pair
    /// is the same as before: a park this subscriber already woke has
    /// seen its bump (its futex wait returns at once), and a new park has
    /// a new tag.
    pub(crate) fn wake_publishers<'a>(&mut self, pubs: impl Publishers<'a>) {
        fence(Ordering::SeqCst);
        for (p, pv) in (0..pubs.count()).map(|p| (p, pubs.get(p))) {
            let tag = pv.wake.waiting.load(Ordering::Relaxed);
            if tag != 0 && self.woken.get(p) != Some(&tag) {
                if let Some(w) = self.woken.get_mut(p) {
                    *w = tag;
                }
                pv.wake.futex.bump_and_wake();
            }
        }
    }

    /// Wakes every publisher waiting for room, whichever park it is in
    /// (a subscriber that detaches).
    pub(crate) fn wake_all_publishers<'a>(pubs: impl Publishers<'a>) {
        fence(Ordering::SeqCst);
        for pv in (0..pubs.count()).map(|p| pubs.get(p)) {
            if pv.wake.waiting.load(Ordering::Relaxed) != 0 {
                pv.wake.futex.bump_and_wake();
            }
        }
    }
}

/// Parks subscriber `bit` on the service's futex for at most `slice`,
/// unless `blocked()` is already false once its parked bit is set.
/// `parkers`: the subscriber's parkers in this process, which share the
/// bit.
pub(crate) fn park_subscriber(
    wake: &WakeBlock,
    bit: u32,
    parkers: &Parkers,
    slice: Duration,
    blocked: impl FnOnce() -> bool,
) {
    let seq = wake.futex.load();
    parkers.arm(|| {
        wake.parked.fetch_or(1 << bit, Ordering::Relaxed);
    });
    // The other half of the pair in `PubCore::publish`.
    fence(Ordering::SeqCst);
    if blocked() && !slice.is_zero() {
        wake.futex.wait(seq, slice);
    }
    parkers.disarm(|| {
        wake.parked.fetch_and(!(1 << bit), Ordering::Relaxed);
    });
}

/// The `waiting` word of a publisher that parks on futex value `seq`:
/// nonzero, and different for the next value (a subscriber's wake bumps
/// the word, so a publisher that parks again after a wake has a new tag).
/// Values 2^31 apart share a tag: a subscriber that woke the one would
/// skip the other, which then sleeps its slice out (20 ms) at worst.
pub(crate) fn park_tag(seq: u32) -> u32 {
    seq | 1 << 31
}

/// Parks a publisher waiting for room on its own futex for at most
/// `slice`, unless `blocked()` is already false once its flag is set.
pub(crate) fn park_publisher(
    wake: &PublisherWake,
    slice: Duration,
    blocked: impl FnOnce() -> bool,
) {
    let seq = wake.futex.load();
    wake.waiting.store(park_tag(seq), Ordering::Relaxed);
    // The other half of the pair in `SubCore::wake_publishers`.
    fence(Ordering::SeqCst);
    if blocked() && !slice.is_zero() {
        wake.futex.wait(seq, slice);
    }
    wake.waiting.store(0, Ordering::Relaxed);
}
