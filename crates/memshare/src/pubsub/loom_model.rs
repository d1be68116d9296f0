//! The loom model of the publish-subscribe protocol, on its own code.
//!
//! `ring.rs` (publishing, the holds and their scan, polling with laps,
//! the cursors, both wake-ups) is written against `crate::primitive`, which
//! is loom's atomics and a modelled futex under `--cfg loom` (no timeout:
//! a lost wake-up is a deadlock loom reports). The buffers' bytes are loom
//! cells: a buffer reused while a subscriber reads it is a reported data
//! race. The pool keeps one spare buffer (`RECLAIM_BATCH` is 1 under
//! loom), so that a handful of messages already reuse buffers.
//!
//! Run it with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p memshare --lib pubsub::loom_model`.

use crate::primitive::check;
use std::time::Duration;

use loom::sync::Arc;

use super::layout::{
    model, Entry, Geometry, PublisherBlock, PublisherWake, Shape, SubscriberHead, WakeBlock,
};
use super::ring::{
    park_publisher, park_subscriber, Buffers, Limits, PubCore, PubView, SubCore, SubView,
};
use crate::primitive::{AtomicU32, AtomicU64};

/// A service with one publisher slot and one subscriber slot, in ordinary
/// memory.
pub(crate) struct Model {
    pub(crate) limits: Limits,
    max_held: usize,
    pub(crate) wake: WakeBlock,
    publisher_wake: PublisherWake,
    pub(crate) block: PublisherBlock,
    entries: Vec<Entry>,
    pub(crate) buffers: Buffers,
    sub: SubscriberHead,
    holds: Vec<AtomicU32>,
    cursors: Vec<AtomicU64>,
}

impl Model {
    pub(crate) fn new(depth: u32, max_held: u32, drop_oldest: bool) -> Model {
        let shape = Shape {
            max_publishers: 1,
            max_subscribers: 1,
            max_message_len: 8,
            depth,
            history: 0,
            max_held,
            overflow: u32::from(drop_oldest),
        };
        let g = Geometry::of(shape).unwrap();
        Model {
            limits: Limits::from(&g),
            max_held: max_held as usize,
            wake: model::wake(),
            publisher_wake: model::publisher_wake(),
            block: model::publisher(),
            entries: (0..g.ring_len).map(|_| model::entry()).collect(),
            buffers: Buffers::zeroed(g.pool_len, 8),
            sub: model::subscriber(),
            holds: (0..max_held).map(|_| AtomicU32::new(0)).collect(),
            cursors: vec![AtomicU64::new(0)],
        }
    }

    pub(crate) fn publisher(&self) -> PubView<'_> {
        PubView {
            block: &self.block,
            wake: &self.publisher_wake,
            entries: &self.entries,
            buffers: &self.buffers,
        }
    }

    pub(crate) fn subscriber(&self) -> SubView<'_> {
        SubView {
            head: &self.sub,
            holds: &self.holds,
            cursors: &self.cursors,
        }
    }
}

/// Message `i`: 8 bytes that say which message they are.
pub(crate) fn message(i: u64) -> [u8; 8] {
    (i * 0x0101_0101_0101_0101 + 0x0102_0304_0506_0708).to_le_bytes()
}

/// The publisher publishes `count` messages (waiting for room under
/// "block").
pub(crate) fn publish(m: &Model, count: u64) {
    let view = m.publisher();
    let mut core = PubCore::new(0, 1, m.limits, &view);
    for i in 0..count {
        if !m.limits.drop_oldest {
            while !core.room(std::iter::once(m.subscriber())) {
                let head = core.head;
                park_publisher(&m.publisher_wake, Duration::MAX, || {
                    PubCore::still_full(head, m.limits.depth, 0, std::iter::once(m.subscriber()))
                });
            }
        }
        let b = core
            .take_buffer(std::iter::once(m.subscriber()))
            .expect("the pool never runs dry");
        m.buffers.write(b, &message(i));
        core.publish(&view, &m.wake, b, 8);
    }
}

/// The subscriber receives until it has seen message `last` (parking when
/// there is nothing), holding up to `max_held` samples at once, reading
/// each while it holds it. Returns the sequences received and the count
/// missed.
fn subscribe(m: &Model, mut core: SubCore, last: u64) -> (Vec<u64>, u64) {
    let views = [m.publisher()];
    let pubs = &views[..];
    let sub = m.subscriber();
    // As the subscriber's `Link`'s.
    let parkers = crate::primitive::Parkers::default();
    let mut held = Vec::new();
    let mut seen = Vec::new();
    loop {
        match core.poll(&sub, pubs).expect("an honest publisher") {
            Some(got) => {
                // Read it while holding it: a reuse would be a data race.
                let bytes = m.buffers.read(got.buffer, got.len);
                assert_eq!(
                    bytes,
                    message(got.seq),
                    "message {} arrived changed",
                    got.seq
                );
                seen.push(got.seq);
                held.push(got.hold);
                if held.len() == m.max_held {
                    // Read them all once more, then let them go.
                    for h in held.drain(..) {
                        core.release(&sub, h);
                    }
                }
                if got.seq == last {
                    break;
                }
            }
            None => {
                let cursors = core.cursors.clone();
                park_subscriber(&m.wake, 0, &parkers, Duration::MAX, || {
                    SubCore::nothing_new(&cursors, m.limits.ring_len, pubs)
                });
            }
        }
        if !m.limits.drop_oldest {
            core.wake_publishers(pubs);
        }
    }
    for h in held {
        core.release(&sub, h);
    }
    (seen, core.missed)
}

/// "Block", depth 1: the publisher waits for the subscriber after every
/// message and the subscriber for the publisher; every message arrives
/// once, in order, and neither side sleeps through its wake-up.
#[test]
fn block_delivers_every_message_in_order_and_wakes_both_sides() {
    check(3, || {
        let m = Arc::new(Model::new(1, 1, false));
        // The subscriber starts before the first message.
        let core = SubCore::new(m.limits, &[m.publisher()][..]);
        let publisher = {
            let m = m.clone();
            loom::thread::spawn(move || publish(&m, 4))
        };
        let (seen, missed) = subscribe(&m, core, 3);
        publisher.join().unwrap();
        assert_eq!(seen, [0, 1, 2, 3]);
        assert_eq!(missed, 0);
    });
}

/// "Drop oldest", depth 1, the subscriber holding two samples at once:
/// the publisher laps it and reuses buffers, but never one the subscriber
/// holds (the buffer cells would report a race, and the bytes would not
/// be the message's); what it misses is counted exactly.
#[test]
fn drop_oldest_never_reuses_a_held_buffer_and_counts_what_is_missed() {
    check(2, || {
        let m = Arc::new(Model::new(1, 2, true));
        let core = SubCore::new(m.limits, &[m.publisher()][..]);
        let publisher = {
            let m = m.clone();
            loom::thread::spawn(move || publish(&m, 5))
        };
        let (seen, missed) = subscribe(&m, core, 4);
        publisher.join().unwrap();
        // In order, each once, and every sequence either seen or missed.
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.len() as u64 + missed, 5, "{seen:?}, missed {missed}");
    });
}
