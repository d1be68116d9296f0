//! A publisher of a service whose subscriber blocks and header page are
//! written by a hostile subscriber (the fuzzer), next to an honest
//! subscriber. Publishing must never fail (the pool never runs dry: a
//! subscriber can pin at most its `max_held` buffers) nor panic or hang;
//! under "drop oldest" the honest subscriber, which keeps up, receives
//! every message intact.
//!
//! The input is a mode byte, then a script of operations: write a word of
//! the hostile subscriber's block (hold words, cursors, state, instance),
//! write the parked bits, publish and let the honest subscriber receive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memshare::pubsub::{Overflow, Publisher, ServiceConfig, Subscriber};

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

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.byte().unwrap_or(0);
    let name = format!("fz-ps-pub-{}", std::process::id());
    let _ = memshare::Segment::remove(&name);
    let drop_oldest = mode & 1 == 0;
    let config = ServiceConfig::new()
        .max_subscribers(2)
        .max_message_len(32)
        .depth(2)
        .max_held(3)
        .overflow(if drop_oldest {
            Overflow::DropOldest
        } else {
            Overflow::Block
        });
    let Ok(mut publisher) = Publisher::create(&name, config) else {
        return;
    };
    let segment = publisher.segment().clone();
    let honest = Subscriber::attach(&segment).unwrap();
    let hostile = Subscriber::attach(&segment).unwrap();
    let view = segment.map(..).unwrap();
    let mut word = [0u8; 4];
    view.read_at(52, &mut word).unwrap();
    let block_len = u32::from_le_bytes(word) as usize;
    let block = 4096 + hostile.slot() as usize * block_len;
    let mut next = 0u64;
    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 512 {
            break;
        }
        match op % 3 {
            0 => {
                let at = block + (input.u64() as usize % (block_len / 4)) * 4;
                let value = input.u64() as u32;
                view.write_at(at, &value.to_le_bytes()).unwrap();
            }
            1 => {
                let value = input.u64();
                view.write_at(128, &value.to_le_bytes()).unwrap();
            }
            _ => {
                let msg = next.to_le_bytes();
                match publisher.try_publish_copy(&msg) {
                    Ok(true) => {
                        let sample = honest.try_recv().unwrap().expect("published");
                        assert_eq!(sample.sequence(), next);
                        assert_eq!(&*sample, &msg);
                        next += 1;
                    }
                    // "Block": the hostile cursor may say it is behind.
                    Ok(false) => assert!(!drop_oldest, "drop oldest never says full"),
                    Err(e) => panic!("publishing failed: {e}"),
                }
            }
        }
    }
    assert_eq!(honest.missed(), 0);
    drop((honest, hostile, publisher));
    let _ = memshare::Segment::remove(&name);
});
