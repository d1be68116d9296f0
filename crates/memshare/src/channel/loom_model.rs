//! The loom model of the channel protocol, on the protocol's own code.
//!
//! `ring.rs` (finding room and frames, publishing, parking) and the header
//! type of `layout.rs` are written against `crate::primitive`, which is loom's
//! atomics and a modelled futex under `--cfg loom`. So this model runs the
//! code the endpoints run, over every interleaving and every value the
//! memory model lets a load return, within loom's bounds (a preemption bound
//! per test, which `LOOM_MAX_PREEMPTIONS` overrides). The ring's bytes are
//! loom cells: a byte read while the other side may write it is reported as
//! a data race. The modelled futex has no timeout, so a lost wake-up is a
//! deadlock, which loom reports.
//!
//! Left out, because they do not take part in the handshake: spinning
//! before parking, deadlines, liveness checks and disconnection, and the
//! wake of a detach (it would hide a lost wake-up). What the endpoints
//! would turn into `Error::Corrupted` is a failed assertion here: with an
//! honest peer it must never happen.
//!
//! Run it with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p memshare --lib channel::loom_model`.

use crate::primitive::check;
use std::time::Duration;

use loom::sync::Arc;

use super::layout::{frame_len, Header, Side, FRAME_HEADER};
use super::ring::{park, Consumer, Producer, Ring};
use crate::primitive::{Ordering, Parkers};

/// A small ring, so that frames wrap, pad and fill it.
pub(crate) const CAPACITY: u64 = 32;

/// The shared part: a header and a ring in ordinary memory.
pub(crate) struct Channel {
    pub(crate) header: Header,
    pub(crate) ring: Ring,
    /// Each side's parkers (as in its endpoint's `Link`).
    pub(crate) send_parkers: Parkers,
    pub(crate) recv_parkers: Parkers,
}

impl Channel {
    pub(crate) fn new() -> Channel {
        Channel {
            header: Header::zeroed(),
            ring: Ring::zeroed(CAPACITY),
            send_parkers: Parkers::default(),
            recv_parkers: Parkers::default(),
        }
    }
}

/// `Sender::send` with `WaitStrategy::Park`: find room (parking while the
/// ring is full), write the payload, commit.
pub(crate) fn send(ch: &Channel, core: &mut Producer, msg: &[u8]) {
    let frame = frame_len(msg.len() as u64).unwrap();
    let slot = loop {
        if let Some(slot) = core.poll_space(&ch.header, &ch.ring, frame).unwrap() {
            break slot;
        }
        let write = core.write;
        park(
            &ch.header,
            Side::Sender,
            &ch.send_parkers,
            Duration::MAX,
            |h| Producer::still_full(h, CAPACITY, write, frame),
        );
    };
    ch.ring.write_bytes(slot.0 + FRAME_HEADER, msg);
    core.commit(&ch.header, &ch.ring, slot, msg.len() as u32);
}

/// `Receiver::recv` with `WaitStrategy::Park`, then reading the guard and
/// dropping it.
pub(crate) fn recv(ch: &Channel, core: &mut Consumer) -> Vec<u8> {
    let frame = loop {
        if let Some(frame) = core.poll(&ch.header, &ch.ring).unwrap() {
            break frame;
        }
        let read = core.read;
        park(
            &ch.header,
            Side::Receiver,
            &ch.recv_parkers,
            Duration::MAX,
            |h| Consumer::still_empty(h, read),
        );
    };
    let msg = ch.ring.read_bytes(frame.offset, frame.len);
    core.release(&ch.header, frame.next);
    msg
}

/// Message `i` of length `len`: bytes that say which message and which byte
/// they are, so that a mix-up or a stale byte shows.
pub(crate) fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 64 + j + 1) as u8).collect()
}

/// A sender thread sends messages of `lens`; this thread receives them and
/// checks each against what was sent.
fn run(lens: &'static [usize]) {
    let ch = Arc::new(Channel::new());
    let sender = ch.clone();
    let producer = loom::thread::spawn(move || {
        let mut core = Producer::default();
        for (i, &len) in lens.iter().enumerate() {
            send(&sender, &mut core, &message(i, len));
        }
    });
    let mut core = Consumer::default();
    for (i, &len) in lens.iter().enumerate() {
        assert_eq!(recv(&ch, &mut core), message(i, len), "message {i}");
    }
    producer.join().unwrap();
    // Nothing more was published than was received.
    let write = ch.header.position(Side::Sender).load(Ordering::Acquire);
    assert_eq!(write, core.read);
}

/// The receiver parks on an empty ring: whenever it sleeps, the sender's
/// publication wakes it.
#[test]
fn receiver_parked_on_an_empty_ring_is_woken() {
    check(5, || run(&[3, 5]));
}

/// The sender parks on a full ring (each message fills it): whenever it
/// sleeps, the receiver's freeing wakes it.
#[test]
fn sender_parked_on_a_full_ring_is_woken() {
    check(5, || run(&[24, 17]));
}

/// A frame that does not fit before the end of the ring: 12 bytes, frame
/// 24 at 0; 20 bytes: padding at 24, then the sender waits until the
/// receiver has freed the whole ring, and the frame of 32 fills it.
#[test]
fn a_padded_frame_that_fills_the_ring_arrives_intact() {
    check(3, || run(&[12, 20]));
}

/// Frames of different lengths that pad the end of the ring, start at
/// offset 0 and fill the whole ring: each message arrives once, in order,
/// intact, and no byte is read while it is written (loom's race check on
/// the ring cells). 5 bytes: frame 16 at 0. 12 bytes: padding at 16, frame
/// 24 at 0. 1 byte: padding at 24, frame 16 at 0. 20 bytes: padding at 16,
/// frame 32 (the whole ring) at 0.
#[test]
fn four_messages_with_padding_arrive_once_in_order_intact() {
    check(2, || run(&[5, 12, 1, 20]));
}
