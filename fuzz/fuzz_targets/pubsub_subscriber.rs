//! A subscriber of a service whose publisher regions and header page are
//! written by a hostile publisher (the fuzzer). Every call must return
//! cleanly (a message, nothing, or an error such as `Corrupted`), never
//! panic or hang, and every message handed out must lie inside a
//! publisher's pool and be no longer than the service allows.
//!
//! The input is a mode byte, then a script of operations: write a word of a
//! publisher's block or ring, write buffer bytes, write a header wake word,
//! publish honestly, receive (holding up to `max_held` samples, and
//! writing while holding, which models a publisher that changes what was
//! already checked).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use memshare::pubsub::{Overflow, Publisher, ServiceConfig, Subscriber};
use memshare::ViewMut;

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

fn field(view: &ViewMut, off: usize) -> u64 {
    let mut b = [0u8; 8];
    view.read_at(off, &mut b).unwrap();
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.byte().unwrap_or(0);
    let name = format!("fz-ps-sub-{}", std::process::id());
    let _ = memshare::Segment::remove(&name);
    let overflow = if mode & 1 == 0 {
        Overflow::DropOldest
    } else {
        Overflow::Block
    };
    let config = ServiceConfig::new()
        .max_publishers(2)
        .max_subscribers(2)
        .max_message_len(64)
        .depth(4)
        .history(1)
        .max_held(2)
        .overflow(overflow);
    let Ok(mut publisher) = Publisher::create(&name, config) else {
        return;
    };
    let segment = publisher.segment().clone();
    let view = segment.map(..).unwrap();
    let stride = field(&view, 56) as usize;
    let region = field(&view, 64) as usize;
    let total = field(&view, 72) as usize;
    let pool_len = u64::from(field(&view, 48) as u32) as usize;
    let ring_len = u64::from(field(&view, 44) as u32) as usize;
    let subscribers_at = 4096usize;
    let publishers_at = total - 2 * region;
    let buffers_at = (256 + 32 * ring_len).next_multiple_of(4096);
    assert!(subscribers_at < publishers_at);
    for i in 0..(mode >> 4) {
        let _ = publisher.try_publish_copy(&[i; 16]);
    }
    let keep = mode & 2 != 0;
    let mut publisher = keep.then_some(publisher);
    let Ok(subscriber) = Subscriber::attach(&segment) else {
        return;
    };
    let mut held = Vec::new();
    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 256 {
            break;
        }
        match op % 6 {
            0 => {
                // A word of a publisher's block or ring.
                let p = usize::from(op >> 3) % 2;
                let words = (256 + 32 * ring_len) / 4;
                let at = publishers_at + p * region + (input.u64() as usize % words) * 4;
                let value = input.u64() as u32;
                view.write_at(at, &value.to_le_bytes()).unwrap();
            }
            1 => {
                // An entry's sequence word, set to something plausible.
                let p = usize::from(op >> 3) % 2;
                let e = input.u64() as usize % ring_len;
                let seq = input.u64() % 64;
                view.write_at(publishers_at + p * region + 256 + 32 * e, &seq.to_le_bytes())
                    .unwrap();
            }
            2 => {
                // Buffer bytes.
                let p = usize::from(op >> 3) % 2;
                let b = input.u64() as usize % pool_len;
                let at = publishers_at + p * region + buffers_at + b * stride;
                let value = input.u64().to_le_bytes();
                view.write_at(at, &value).unwrap();
            }
            3 => {
                // The header's wake words (parked bits, futexes).
                let at = [128usize, 136, 1024, 1028, 1032, 1036][usize::from(op >> 3) % 6];
                let value = input.u64() as u32;
                view.write_at(at, &value.to_le_bytes()).unwrap();
            }
            4 => {
                if let Some(p) = publisher.as_mut() {
                    let _ = p.try_publish_copy(&[op; 8]);
                }
            }
            _ => {
                // Receive; hold up to two samples.
                let result = if op & 0x40 != 0 {
                    subscriber.recv_timeout(Duration::ZERO).map(Some)
                } else {
                    subscriber.try_recv()
                };
                if let Ok(Some(sample)) = result {
                    assert!(sample.len() <= 64, "a message longer than the service allows");
                    // Its bytes lie in the mapped pool: readable.
                    let sum: u32 = sample.iter().map(|&b| u32::from(b)).sum();
                    std::hint::black_box(sum);
                    if op & 0x80 != 0 && held.is_empty() {
                        held.push(sample);
                    }
                } else if op & 0x20 != 0 {
                    held.clear();
                }
            }
        }
    }
    drop(held);
    drop(subscriber);
    drop(publisher);
    let _ = memshare::Segment::remove(&name);
});
