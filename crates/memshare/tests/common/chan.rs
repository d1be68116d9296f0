//! Channel test helpers shared by the multi-process channel tests: the
//! checked message stream and the sender child.

use super::{child, Reaped, TIMEOUT};
use memshare::channel::{Receiver, Sender, WaitStrategy};
use memshare::{CommandExt, Error, Segment, View};
use std::sync::atomic::Ordering;

/// xorshift64: deterministic, so both sides derive the same messages.
pub fn rng(mut x: u64) -> impl FnMut() -> u64 {
    x |= 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Message `seq`: its length (0 up to `max`, mostly small) and contents
/// are a function of `seq`, so the receiver can check every byte, and a
/// loss, duplicate or reordering shows up as a mismatch.
pub fn message(seq: u64, max: usize, buf: &mut Vec<u8>) {
    let mut next = rng(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let r = next();
    let len = match r % 512 {
        0 => (next() % (max as u64 + 1)) as usize, // anything up to the maximum
        1 => max,
        2 => 0,
        _ => (next() % 256) as usize,
    };
    buf.clear();
    let mut word = next();
    for i in 0..len {
        if i % 8 == 0 {
            word = word.wrapping_mul(6364136223846793005).wrapping_add(seq);
        }
        buf.push((word >> ((i % 8) * 8)) as u8);
    }
}

pub fn strategy(name: &str) -> WaitStrategy {
    match name {
        "spin" => WaitStrategy::Spin,
        "park" => WaitStrategy::Park,
        _ => WaitStrategy::default(),
    }
}

/// Sends messages `0..count` (or forever if `count` is 0) on the channel
/// inherited under "chan".
pub fn run_sender(count: u64) {
    let segment = Segment::inherited("chan").unwrap();
    let mut tx = Sender::attach(&segment).unwrap();
    tx.set_wait_strategy(strategy(&std::env::var("MST_WAIT").unwrap_or_default()));
    send_messages(&mut tx, 0..if count == 0 { u64::MAX } else { count });
}

/// Sends the messages of sequence numbers `seqs`.
pub fn send_messages(tx: &mut Sender, seqs: std::ops::Range<u64>) {
    let max = tx.max_message_len();
    let mut buf = Vec::new();
    for seq in seqs {
        message(seq, max, &mut buf);
        let mut slot = tx.reserve_timeout(buf.len(), TIMEOUT).unwrap();
        slot.copy_from_slice(&buf);
        slot.commit();
    }
}

pub fn spawn_sender(test: &str, segment: &Segment, wait: &str, count: u64) -> Reaped {
    let mut cmd = child(test, "sender");
    cmd.env("MST_WAIT", wait)
        .env("MST_COUNT", count.to_string())
        .share("chan", segment);
    Reaped::spawn(cmd)
}

/// Receives and checks messages from sequence number `*seq` on, until the
/// channel reports an error, which is returned. A receive that waits longer
/// than [`TIMEOUT`] is an error too (`TimedOut`): a hang fails the test.
pub fn receive_checked(rx: &mut Receiver, seq: &mut u64, limit: u64) -> Option<Error> {
    let max = rx.capacity() - 8;
    let mut expect = Vec::new();
    while *seq < limit {
        match rx.recv_timeout(TIMEOUT) {
            Ok(msg) => {
                message(*seq, max, &mut expect);
                assert!(
                    *msg == expect[..],
                    "message {seq} differs (len {} vs {})",
                    msg.len(),
                    expect.len()
                );
                *seq += 1;
            }
            Err(e) => return Some(e),
        }
    }
    None
}

/// A read-only look at a channel's header from outside its endpoints (the
/// offsets are the published layout, `docs/channel-layout.md`).
pub struct HeaderWatch(View);

impl HeaderWatch {
    pub fn new(segment: &Segment) -> HeaderWatch {
        HeaderWatch(segment.map_readonly(..1024).unwrap())
    }

    fn word(&self, offset: usize) -> u32 {
        self.0.atomic_u32(offset).unwrap().load(Ordering::Acquire)
    }

    fn position(&self, offset: usize) -> u64 {
        self.0.atomic_u64(offset).unwrap().load(Ordering::Acquire)
    }

    /// Whether a sender is attached now (state 1).
    pub fn sender_attached(&self) -> bool {
        self.word(64) == 1
    }

    /// Whether a receiver is attached now (state 1).
    pub fn receiver_attached(&self) -> bool {
        self.word(68) == 1
    }

    /// The sender's published position: every byte committed.
    pub fn write_pos(&self) -> u64 {
        self.position(128)
    }

    /// The receiver's published position: every byte received and released.
    pub fn read_pos(&self) -> u64 {
        self.position(384)
    }
}
