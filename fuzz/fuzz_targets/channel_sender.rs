//! The sending end of a channel whose shared header and ring are written by
//! a hostile peer (the fuzzer): `read_pos` above all, the states and the
//! parking words. Every call must return cleanly (`Ok`, or an error such as
//! `Corrupted`), never panic, never hang, and every frame the sender writes
//! must lie inside the ring.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use memshare::channel::layout::HEADER_LEN;
use memshare::channel::{Receiver, Sender};
use memshare::ViewMut;

const WRITE_POS: usize = 128;
const READ_POS: usize = 384;
/// Never published by a sender (not a multiple of 8).
const SENTINEL: u64 = u64::MAX;
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
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    }
}

fn read_u64(view: &ViewMut, off: usize) -> u64 {
    let mut b = [0u8; 8];
    view.read_at(off, &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn frame_len(len: usize) -> u64 {
    (len as u64 + 8 + 7) & !7
}

/// After a send of `len` bytes published `write`: the frame ends there, lies
/// inside the ring, and holds the message.
fn check_frame(view: &ViewMut, capacity: usize, write: u64, len: usize, fill: u8) {
    assert!(write % 8 == 0 && write != SENTINEL);
    let start = write - frame_len(len);
    let offset = (start % capacity as u64) as usize;
    assert!(
        offset as u64 + frame_len(len) <= capacity as u64,
        "frame outside the ring"
    );
    let mut header = [0u8; 4];
    view.read_at(HEADER_LEN + offset, &mut header).unwrap();
    assert_eq!(u32::from_le_bytes(header) as usize, len);
    let mut payload = vec![0u8; len];
    view.read_at(HEADER_LEN + offset + 8, &mut payload).unwrap();
    assert!(payload.iter().all(|&b| b == fill));
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let capacity = 64usize << (input.byte().unwrap_or(6) % 7); // 64..=4096
    let mode = input.byte().unwrap_or(0);

    let rx = Receiver::create(capacity).unwrap();
    let segment = rx.segment().clone();
    let view = segment.map(..).unwrap();
    if mode & 1 != 0 {
        // Hostile positions before the sender attaches (attach checks them).
        view.write_at(WRITE_POS, &input.u64().to_le_bytes())
            .unwrap();
        view.write_at(READ_POS, &input.u64().to_le_bytes()).unwrap();
    }
    // The receiver stays attached and alive, or is gone.
    let _rx = (mode & 2 != 0).then_some(rx);
    let mut tx = match Sender::attach(&segment) {
        Ok(tx) => tx,
        Err(_) => return,
    };

    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 256 {
            break;
        }
        let arg = op >> 2;
        match op % 4 {
            0 => {
                let (off, size) = WORDS[usize::from(arg) % WORDS.len()];
                let value = input.u64().to_le_bytes();
                view.write_at(off, &value[..size]).unwrap();
            }
            1 => {
                // Mostly read_pos: the word the sender trusts least.
                view.write_at(READ_POS, &input.u64().to_le_bytes()).unwrap();
            }
            2 => {
                // try_send / try_reserve, a bounded number of times.
                let size = match input.byte().unwrap_or(0) {
                    b @ 0..=239 => usize::from(b),
                    b => capacity + usize::from(b) - 248, // around the limits
                };
                let times = 1 + usize::from(arg) % 16;
                for i in 0..times {
                    view.write_at(WRITE_POS, &SENTINEL.to_le_bytes()).unwrap();
                    let fill = (steps as u8).wrapping_add(i as u8) | 1;
                    let sent = if arg & 1 == 0 {
                        tx.try_send(&vec![fill; size]).unwrap_or(false)
                    } else {
                        match tx.try_reserve(size) {
                            Ok(Some(mut slot)) => {
                                assert_eq!(slot.len(), size);
                                slot.fill(fill);
                                slot.commit();
                                true
                            }
                            _ => false,
                        }
                    };
                    if sent {
                        check_frame(&view, capacity, read_u64(&view, WRITE_POS), size, fill);
                    }
                }
            }
            _ => {
                // A reservation dropped without commit, or a send with no
                // time to wait.
                view.write_at(WRITE_POS, &SENTINEL.to_le_bytes()).unwrap();
                let size = usize::from(input.byte().unwrap_or(0));
                if arg & 1 == 0 {
                    if let Ok(Some(slot)) = tx.try_reserve(size) {
                        drop(slot);
                    }
                } else if tx.send_timeout(&vec![7; size], Duration::ZERO).is_ok() {
                    check_frame(&view, capacity, read_u64(&view, WRITE_POS), size, 7);
                }
            }
        }
    }
});
