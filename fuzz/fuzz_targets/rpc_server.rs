//! A request/response server with one client whose region, doorbell and
//! wake words are written by that client turned hostile (the fuzzer), and
//! an honest bystander client. Every server call must return cleanly and
//! hand out only requests within `max_request_len`; the bystander's calls
//! must always get their own answer, whatever the hostile client wrote.
//!
//! The input is a script of operations: write a word of the hostile
//! client's control part (anywhere, or its ring head, ring entries, slot
//! words and request lengths with plausible values), its pending bit or
//! wake words; send honestly from it (one request, or a batch published
//! together); take requests (holding up to four)
//! and answer or decline them; a bystander call.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use memshare::rpc::{Client, Server, ServerConfig};

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

const MAX_REQUEST: u64 = 64;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let name = format!("fz-rpc-srv-{}", std::process::id());
    let _ = memshare::Segment::remove(&name);
    let config = ServerConfig::new()
        .max_clients(2)
        .max_in_flight(4)
        .max_request_len(MAX_REQUEST)
        .max_response_len(32);
    let Ok(server) = Server::create(&name, config) else {
        return;
    };
    let (Ok(mut hostile), Ok(mut bystander)) = (Client::connect(&name), Client::connect(&name))
    else {
        return;
    };
    let segment = server.segment().clone();
    let view = segment.map(..).unwrap();
    let word = |at: usize| {
        let mut b = [0u8; 8];
        view.read_at(at, &mut b).unwrap();
        u64::from_le_bytes(b)
    };
    let (control_len, region_len) = (word(64) as usize, word(72) as usize);
    let slot = hostile.id().slot() as usize;
    let region = 4096 + slot * region_len;
    let slots_at = (136usize + 4 * 4).next_multiple_of(64);
    let mut pending = Vec::new();
    let mut held = Vec::new();
    let mut bystander_calls = 0u64;
    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 256 {
            break;
        }
        let sel = usize::from(op >> 4);
        match op % 8 {
            0 => {
                // Any 8-byte word of its control part.
                let at = region + (input.u64() as usize % (control_len / 8)) * 8;
                view.write_at(at, &input.u64().to_le_bytes()).unwrap();
            }
            1 => {
                // A slot word with a chosen phase and small id, or a length.
                let s = sel % 4;
                let at = region + slots_at + 64 * s;
                if op & 0x08 == 0 {
                    let value = (input.u64() % 8) << 3 | u64::from(op >> 6);
                    view.write_at(at, &value.to_le_bytes()).unwrap();
                } else {
                    let len = input.u64() as u32;
                    view.write_at(at + 8, &len.to_le_bytes()).unwrap();
                }
            }
            2 => {
                // The ring: its head, or an entry.
                let value = input.u64() % 16;
                let at = if op & 0x08 == 0 {
                    region + 128
                } else {
                    region + 136 + 4 * (sel % 4)
                };
                view.write_at(at, &(value as u32).to_le_bytes()).unwrap();
                if op & 0x08 == 0 {
                    view.write_at(at, &value.to_le_bytes()).unwrap();
                }
            }
            3 => {
                // The pending mask, its wake words, the server's wake words.
                let at = [384usize, 1024 + slot * 8, 1028 + slot * 8, 256, 260][sel % 5];
                let value = input.u64();
                if at == 384 {
                    view.write_at(at, &value.to_le_bytes()).unwrap();
                } else {
                    view.write_at(at, &(value as u32).to_le_bytes()).unwrap();
                }
            }
            4 => {
                if pending.len() < 8 && op & 0x08 != 0 {
                    // Honest requests published as one batch (the server
                    // reads them from one look at the head).
                    let mut batch = hostile.batch();
                    for n in 0..(sel % 3 + 1) {
                        if let Ok(p) = batch.send_request(&[op; 16][..sel.saturating_sub(n)]) {
                            pending.push(p);
                        }
                    }
                } else if pending.len() < 8 {
                    if let Ok(p) = hostile.send_request(&[op; 16][..sel]) {
                        pending.push(p);
                    }
                } else if let Some(p) = pending.pop() {
                    let _ = hostile.try_receive_response(&p).map(|r| r.map(|r| r.len()));
                }
            }
            5 => {
                // Take a request: within bounds, readable.
                if let Ok(Some(request)) = server.try_recv() {
                    assert!(request.len() as u64 <= MAX_REQUEST, "a request beyond max_request_len");
                    let sum: u32 = request.iter().map(|&b| u32::from(b)).sum();
                    std::hint::black_box(sum);
                    if held.len() < 4 && op & 0x80 != 0 {
                        held.push(request);
                    } else if op & 0x40 != 0 {
                        drop(request);
                    } else {
                        let _ = request.respond(&[1; 8]);
                    }
                }
            }
            6 => {
                if let Some(request) = held.pop() {
                    let _ = request.respond(&[2; 4]);
                }
            }
            _ => {
                // The bystander: its call always gets its own answer.
                bystander_calls += 1;
                let question = bystander_calls.to_le_bytes();
                let p = bystander.send_request(&question).expect("bystander send");
                let answered = loop {
                    let request = server
                        .recv_timeout(Duration::from_millis(100))
                        .expect("the server finds the bystander's request");
                    if request.client() == bystander.id() {
                        assert_eq!(&*request, &question[..], "the bystander's request changed");
                        let answer: Vec<u8> = request.iter().rev().copied().collect();
                        request.respond(&answer).unwrap();
                        break answer;
                    }
                    drop(request);
                };
                let response = bystander
                    .receive_response_timeout(&p, Duration::from_secs(1))
                    .expect("the bystander's response");
                assert_eq!(&*response, &answered[..], "the bystander got another answer");
            }
        }
    }
    drop(held);
    drop(pending);
    drop(hostile);
    drop(bystander);
    drop(view);
    drop(segment);
    drop(server);
    let _ = memshare::Segment::remove(&name);
});
