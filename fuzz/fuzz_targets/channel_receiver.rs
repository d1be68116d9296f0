//! The receiving end of a channel whose shared header and ring are written
//! by a hostile peer (the fuzzer). Every call must return cleanly (`Ok`,
//! or an error such as `Corrupted`), never panic, never hang, and every
//! message handed out must lie inside the ring.
//!
//! The input is a capacity byte, a mode byte, then a script of operations:
//! write a header word, write ring bytes, receive. Writes between two
//! receives (and while a message is held) model a peer that changes what
//! was already checked (double fetches).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use memshare::channel::layout::{HEADER_LEN, STATE_DETACHED};
use memshare::channel::{Receiver, Sender};
use memshare::ViewMut;

const WRITE_POS: usize = 128;
const READ_POS: usize = 384;
/// Never published by a receiver (not a multiple of 8).
const SENTINEL: u64 = u64::MAX;
/// Header words a peer can write: states, positions, parking words.
const WORDS: [(usize, usize); 8] = [
    (64, 4),  // sender_state
    (68, 4),  // receiver_state
    (128, 8), // write_pos
    (256, 4), // recv_futex
    (260, 4), // recv_waiting
    (384, 8), // read_pos
    (512, 4), // send_futex
    (516, 4), // send_waiting
];

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let src = self.bytes(8);
        b[..src.len()].copy_from_slice(src);
        u64::from_le_bytes(b)
    }
}

fn read_u64(view: &ViewMut, off: usize) -> u64 {
    let mut b = [0u8; 8];
    view.read_at(off, &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A header word or ring bytes, written as the fuzzer says.
fn poke(input: &mut Input, view: &ViewMut, capacity: usize, op: u8) {
    if op & 1 == 0 {
        let (off, size) = WORDS[usize::from(op >> 1) % WORDS.len()];
        let value = input.u64().to_le_bytes();
        view.write_at(off, &value[..size]).unwrap();
    } else {
        let at = usize::from(u16::from_le_bytes([
            input.byte().unwrap_or(0),
            input.byte().unwrap_or(0),
        ])) % capacity;
        let len = usize::from(input.byte().unwrap_or(0)).min(capacity - at);
        let data = input.bytes(len).to_vec();
        view.write_at(HEADER_LEN + at, &data).unwrap();
    }
}

/// Checks a received message against the ring: it starts at `start`, its
/// frame lies inside the ring, and its bytes are the ring's.
/// (The frame header is checked only if the peer has not written since.)
fn check_message(view: &ViewMut, capacity: usize, start: u64, msg: &[u8], header: bool) {
    let offset = (start % capacity as u64) as usize;
    assert!(
        offset + 8 + msg.len() <= capacity,
        "message outside the ring"
    );
    let mut len = [0u8; 4];
    view.read_at(HEADER_LEN + offset, &mut len).unwrap();
    assert!(!header || u32::from_le_bytes(len) as usize == msg.len());
    let mut ring = vec![0u8; msg.len()];
    view.read_at(HEADER_LEN + offset + 8, &mut ring).unwrap();
    assert_eq!(ring, msg, "message bytes differ from the ring's");
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let capacity = 64usize << (input.byte().unwrap_or(6) % 7); // 64..=4096
    let mode = input.byte().unwrap_or(0);

    let tx = Sender::create(capacity).unwrap();
    let segment = tx.segment().clone();
    let view = segment.map(..).unwrap();
    // Some real traffic first, so that the ring holds well-formed frames.
    let mut tx = tx;
    for i in 0..(mode >> 4) {
        let _ = tx.try_send(&vec![i; usize::from(i) * 5]);
    }
    if mode & 1 != 0 {
        // Hostile positions before the receiver attaches (attach checks
        // them).
        view.write_at(WRITE_POS, &input.u64().to_le_bytes())
            .unwrap();
        view.write_at(READ_POS, &input.u64().to_le_bytes()).unwrap();
    }
    // Either the sender stays attached (and alive), or it is gone and the
    // fuzzer decides what its state word says.
    let keep_sender = mode & 2 != 0;
    let _tx = keep_sender.then_some(tx);
    let mut rx = match Receiver::attach(&segment) {
        Ok(rx) => rx,
        Err(_) => return,
    };
    // The receiver's own position, as far as this harness can tell: it is
    // what the receiver last published in read_pos.
    let mut read = read_u64(&view, READ_POS);

    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 256 {
            break;
        }
        match op % 4 {
            0 | 1 => poke(&mut input, &view, capacity, op >> 2),
            2 => {
                // try_recv, a bounded number of times.
                let times = 1 + usize::from(op >> 2) % 64;
                for _ in 0..times {
                    view.write_at(READ_POS, &SENTINEL.to_le_bytes()).unwrap();
                    match rx.try_recv() {
                        Ok(Some(msg)) => {
                            let published = read_u64(&view, READ_POS);
                            let start = if published == SENTINEL {
                                read
                            } else {
                                published
                            };
                            check_message(&view, capacity, start, &msg, true);
                            // A peer that changes the message under the guard:
                            // the guard still covers the same ring bytes.
                            if op & 0x80 != 0 {
                                if let Some(b) = input.byte() {
                                    poke(&mut input, &view, capacity, b);
                                }
                                check_message(&view, capacity, start, &msg, false);
                            }
                            drop(msg);
                            read = read_u64(&view, READ_POS);
                            assert!(read % 8 == 0 && read != SENTINEL);
                        }
                        Ok(None) | Err(_) => {
                            let published = read_u64(&view, READ_POS);
                            if published != SENTINEL {
                                read = published;
                            }
                        }
                    }
                }
            }
            _ => {
                // recv_into (blocks while empty: only once the sender is
                // known gone, so that it ends) or recv_timeout.
                view.write_at(READ_POS, &SENTINEL.to_le_bytes()).unwrap();
                let mut buf = Vec::new();
                let result = if !keep_sender && op & 4 != 0 {
                    view.write_at(64, &STATE_DETACHED.to_le_bytes()).unwrap();
                    rx.recv_into(&mut buf).map(|_| ())
                } else {
                    rx.recv_timeout(Duration::ZERO)
                        .map(|m| buf.extend_from_slice(&m))
                };
                let published = read_u64(&view, READ_POS);
                if result.is_ok() {
                    assert!(buf.len() <= capacity - 8);
                }
                if published != SENTINEL {
                    read = published;
                }
            }
        }
    }
});
