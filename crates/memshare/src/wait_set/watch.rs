//! The wait set's part of the wake-up handshakes, free of the OS: how a
//! set says "I may be asleep" to the peers of each member the way the
//! member's own park says it (so that the peers, unchanged, wake the set),
//! what "ready" means for each kind, and the park on all the words at
//! once. Written against `crate::primitive`, so that the loom model
//! (`loom_model.rs`) runs this very code with a channel sender, a
//! publisher, an rpc server's answer and an rpc client's publish as the
//! wakers.
//!
//! The argument, per member: the set snapshots the member's futex word,
//! sets its flag (or bit), issues a SeqCst fence, then looks whether the
//! member is ready; only if no member is, it sleeps on every snapshotted
//! word at once (`futex_waitv`). The member's waker publishes, issues a
//! SeqCst fence, then reads the flag and, if set, bumps the word and wakes
//! it. The two fences make a store-buffering pair: either the set's look
//! sees the publication, or the waker sees the flag; and a bump after the
//! snapshot makes the wait return at once. So no wake-up of any member is
//! lost, however many members share the sleep.

use std::time::Duration;

use crate::channel::layout::{self as channel, Side};
use crate::channel::ring::{Consumer, Producer};
use crate::primitive::{fence, AtomicU64, FutexWord, ManyWaiter, Ordering, Parkers};
use crate::pubsub::layout::{self as pubsub, WakeBlock};
use crate::pubsub::ring::{PubView, Publishers, SubCore};
use crate::rpc::layout::{phase_of, Slot, WakeWords, SLOT_REQUESTED, SLOT_TAKEN};
use crate::rpc::protocol::{self as rpc, Doorbell, Region};

/// What the set's park needs of each member.
pub(crate) trait Watch {
    /// The word the member's wakers bump.
    fn word(&self) -> &FutexWord;
    /// Says that the set may be asleep on the word, as the endpoint's own
    /// park says it (a flag, or the member's bit).
    fn arm(&self);
    /// Takes that back.
    fn disarm(&self);
    /// Whether the endpoint would find something now (only loads; what
    /// it would find is its own try_ form's business).
    fn ready(&self) -> bool;
}

impl<T: Watch + ?Sized> Watch for &T {
    fn word(&self) -> &FutexWord {
        (**self).word()
    }
    fn arm(&self) {
        (**self).arm()
    }
    fn disarm(&self) {
        (**self).disarm()
    }
    fn ready(&self) -> bool {
        (**self).ready()
    }
}

/// The members that are ready now, a bit each (at most 128 members).
pub(crate) fn levels<W: Watch>(watches: &[W]) -> u128 {
    let mut ready = 0;
    for (i, w) in watches.iter().enumerate() {
        if w.ready() {
            ready |= 1 << i;
        }
    }
    ready
}

/// Parks on every member's word at once for at most `slice`, unless a
/// member is ready once all the flags are set, or `may_sleep` (asked then,
/// with the flags set) says no; returns the members found ready then (0
/// if none: it slept, it did not, or the wait returned at once because a
/// word had moved). The flags are cleared before it returns. The sleep is
/// `waiter`'s, whose waits on the words may stay queued from one park to
/// the next (a wait queued before this park's snapshot sees every wake
/// after it: the argument above holds for it as for a fresh one).
pub(crate) fn park<W: Watch>(
    watches: &[W],
    slice: Duration,
    waiter: &mut ManyWaiter,
    may_sleep: impl FnOnce() -> bool,
) -> u128 {
    let (ready, words) = prepare(watches);
    if ready == 0 && !slice.is_zero() && may_sleep() {
        waiter.wait(&words, slice);
    }
    for w in watches {
        w.disarm();
    }
    ready
}

/// The first half of [`park`]: snapshots every member's word, sets its
/// flag (or bit), issues the SeqCst fence, then looks: the members ready
/// now, and the words to sleep on (each with its snapshot) if none is.
/// The caller sleeps on them (or not), then disarms every member. The
/// async notifier (`crate::aio`) runs this same code between its lock and
/// its sleep.
pub(crate) fn prepare<W: Watch>(watches: &[W]) -> (u128, Vec<(&FutexWord, u32)>) {
    let mut words: Vec<(usize, &FutexWord, u32)> = Vec::with_capacity(watches.len());
    for (i, w) in watches.iter().enumerate() {
        let word = w.word();
        // Snapshot first: a wake after this point changes the word, and
        // the wait then returns at once.
        let seq = word.load();
        w.arm();
        words.push((i, word, seq));
    }
    // Members of one publish-subscribe service share its word: wait on it
    // once, with the first member's snapshot (a later one can only be
    // newer, and an older one makes the wait return at once if the word
    // moved). Then back in the members' order, so that the model's
    // explorations do not depend on where the words lie.
    let addr = |word: &FutexWord| word as *const FutexWord as usize;
    words.sort_by_key(|&(_, word, _)| addr(word));
    words.dedup_by_key(|&mut (_, word, _)| addr(word));
    words.sort_unstable_by_key(|&(i, _, _)| i);
    let words: Vec<(&FutexWord, u32)> = words.into_iter().map(|(_, w, s)| (w, s)).collect();
    // The other half of the pair with each member's waker (module docs).
    fence(Ordering::SeqCst);
    (levels(watches), words)
}

/// A channel's end, as a member: a receiver waiting for a message, or a
/// sender (`add_writable`) waiting for room.
#[derive(Clone, Copy)]
pub(crate) struct ChannelWatch<'a> {
    pub(crate) header: &'a channel::Header,
    /// The member's side.
    pub(crate) side: Side,
    /// The side's parkers in this process (its endpoint's), which share
    /// its flag.
    pub(crate) parkers: &'a Parkers,
    /// The ring's size, as validated when the endpoint attached.
    pub(crate) capacity: u64,
    /// Sender: the frame it waits for room for (its pending
    /// `reserve_async`'s); 0 (or anything smaller): the smallest frame, an
    /// empty message's.
    pub(crate) frame: u64,
}

impl<'a> ChannelWatch<'a> {
    /// The side's own futex word, which the peer's `publish` bumps.
    pub(crate) fn word(self) -> &'a FutexWord {
        &self.header.park(self.side).futex
    }

    /// The side's "waiting" flag, as `ring::park` sets it.
    pub(crate) fn arm(self) {
        self.parkers.arm_flag(&self.header.park(self.side).waiting);
    }

    pub(crate) fn disarm(self) {
        self.parkers
            .disarm_flag(&self.header.park(self.side).waiting);
    }

    /// Receiver: a frame is published past the receiver's position.
    /// Sender: there is room for the smallest frame (an empty message), or
    /// for the frame its pending `reserve_async` waits for.
    /// Either: the peer detached (its drop wakes this word whatever the
    /// flag says). Each side's own position is read from the header,
    /// where it publishes every move of it, so it is the endpoint's own
    /// truth (see `Consumer::release`, `Producer::commit`).
    pub(crate) fn ready(self) -> bool {
        let h = self.header;
        let own = h.position(self.side).load(Ordering::Relaxed);
        let found = match self.side {
            Side::Receiver => !Consumer::still_empty(h, own),
            Side::Sender => {
                let smallest = channel::frame_len(0).unwrap_or(channel::FRAME_ALIGN);
                let frame = self.frame.clamp(smallest, self.capacity);
                !Producer::still_full(h, self.capacity, own, frame)
            }
        };
        found || h.state(self.side.peer()).load(Ordering::Relaxed) == channel::STATE_DETACHED
    }
}

impl Watch for ChannelWatch<'_> {
    fn word(&self) -> &FutexWord {
        (*self).word()
    }
    fn arm(&self) {
        (*self).arm()
    }
    fn disarm(&self) {
        (*self).disarm()
    }
    fn ready(&self) -> bool {
        (*self).ready()
    }
}

/// A subscriber, as a member: it parks on its service's word with its bit
/// in the parked mask, as `park_subscriber` does.
pub(crate) struct SubscriberWatch<'a, P> {
    pub(crate) wake: &'a WakeBlock,
    /// The subscriber's slot: its bit in the parked mask.
    pub(crate) bit: u32,
    /// The subscriber's parkers in this process, which share its bit.
    pub(crate) parkers: &'a Parkers,
    /// The subscriber's cursors as it publishes them in its block (one
    /// per publisher slot): where it will look next.
    pub(crate) cursors: &'a [AtomicU64],
    /// The publisher slots.
    pub(crate) publishers: P,
    pub(crate) ring_len: u32,
}

impl<'a, P: Publishers<'a> + Copy> SubscriberWatch<'a, P> {
    pub(crate) fn word(&self) -> &'a FutexWord {
        &self.wake.futex
    }

    pub(crate) fn arm(&self) {
        let parked = &self.wake.parked;
        self.parkers.arm(|| {
            parked.fetch_or(1 << self.bit, Ordering::Relaxed);
        });
    }

    pub(crate) fn disarm(&self) {
        let parked = &self.wake.parked;
        self.parkers.disarm(|| {
            parked.fetch_and(!(1 << self.bit), Ordering::Relaxed);
        });
    }

    /// Some publisher's entry at the subscriber's cursor holds a message
    /// (or a lap), as `SubCore::nothing_new` decides; or no publisher slot
    /// is attached, and with nothing at any cursor the subscriber has
    /// received everything (its `try_recv` then says `Disconnected`; a
    /// publisher's drop wakes the word whatever the bits say).
    pub(crate) fn ready(&self) -> bool {
        let count = self.publishers.count().min(self.cursors.len());
        let mut attached = false;
        for p in 0..count {
            let c = self.cursors[p].load(Ordering::Relaxed);
            let pv: PubView<'a> = self.publishers.get(p);
            if SubCore::news_at(&pv, c, self.ring_len) {
                return true;
            }
            attached |= pv.block.state.load(Ordering::Relaxed) == pubsub::STATE_ATTACHED;
        }
        !attached
    }
}

impl<'a, P: Publishers<'a> + Copy> Watch for SubscriberWatch<'a, P> {
    fn word(&self) -> &FutexWord {
        SubscriberWatch::word(self)
    }
    fn arm(&self) {
        SubscriberWatch::arm(self)
    }
    fn disarm(&self) {
        SubscriberWatch::disarm(self)
    }
    fn ready(&self) -> bool {
        SubscriberWatch::ready(self)
    }
}

/// A request/response endpoint's wake words, as a member: its flag and
/// word, as the endpoint's own park sets and sleeps on them
/// (`protocol::park_client` on the client's words, `park_server` on the
/// server's). Only the member's readiness differs: [`answered`] for a
/// client, [`pushed`] per client for a server.
#[derive(Clone, Copy)]
pub(crate) struct RpcWatch<'a> {
    pub(crate) wake: &'a WakeWords,
    /// The endpoint's parkers in this process, which share its flag.
    pub(crate) parkers: &'a Parkers,
}

impl<'a> RpcWatch<'a> {
    /// The word the peer bumps (`protocol::finish` for a client's,
    /// `protocol::publish` for the server's).
    pub(crate) fn word(self) -> &'a FutexWord {
        &self.wake.futex
    }

    pub(crate) fn arm(self) {
        self.parkers.arm_flag(&self.wake.waiting);
    }

    pub(crate) fn disarm(self) {
        self.parkers.disarm_flag(&self.wake.waiting);
    }
}

/// Client: whether a slot whose answer it waits for (`awaiting`, a bit
/// per slot) holds something other than its request, as taken or not: an
/// answer (or what no honest server writes, which the client's own look
/// then reports as `Corrupted`).
pub(crate) fn answered(slots: &[Slot], mut awaiting: u64) -> bool {
    while awaiting != 0 {
        let s = awaiting.trailing_zeros() as usize;
        awaiting &= awaiting - 1;
        let Some(slot) = slots.get(s) else { break };
        let phase = phase_of(slot.state.load(Ordering::Relaxed));
        if phase != SLOT_REQUESTED && phase != SLOT_TAKEN {
            return true;
        }
    }
    false
}

/// Server: whether a client whose ring it has taken requests from up to
/// `tail` pushed more; if so its pending bit is set (as
/// `Server::nothing_pushed` sets it for a client that died between its
/// head and its bit), so that the server's next poll takes them.
pub(crate) fn pushed(region: Region<'_>, doorbell: Doorbell<'_>, tail: u64) -> bool {
    if rpc::has_requests(region, tail) {
        doorbell.pending.fetch_or(doorbell.bit, Ordering::Relaxed);
        true
    } else {
        false
    }
}
