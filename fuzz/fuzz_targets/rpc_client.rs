//! A request/response client whose server turned hostile (the fuzzer
//! writes the client's slots, response lengths and the server's block and
//! wake words, besides answering honestly). Every client call must return
//! cleanly (a response within `max_response_len`, or an error such as
//! `Corrupted`, `NoResponse`, `Disconnected`, `TimedOut`), never panic or
//! hang.
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

const MAX_RESPONSE: usize = 48;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let name = format!("fz-rpc-cli-{}", std::process::id());
    let _ = memshare::Segment::remove(&name);
    let config = ServerConfig::new()
        .max_clients(1)
        .max_in_flight(4)
        .max_request_len(32)
        .max_response_len(MAX_RESPONSE as u64);
    let Ok(server) = Server::create(&name, config) else {
        return;
    };
    let Ok(mut client) = Client::connect(&name) else {
        return;
    };
    let segment = server.segment().clone();
    let view = segment.map(..).unwrap();
    let slots_at = 4096 + (136usize + 4 * 4).next_multiple_of(64);
    let mut pending = Vec::new();
    let mut held = Vec::new();
    let mut steps = 0;
    let check = |result: memshare::Result<usize>| match result {
        Ok(len) => assert!(len <= MAX_RESPONSE, "a response beyond max_response_len"),
        Err(_) => {}
    };
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 256 {
            break;
        }
        let sel = usize::from(op >> 4);
        match op % 7 {
            0 => {
                // A slot word: its phase changed, its id kept or not.
                let at = slots_at + 64 * (sel % 4);
                let mut b = [0u8; 8];
                view.read_at(at, &mut b).unwrap();
                let word = u64::from_le_bytes(b);
                let value = if op & 0x08 == 0 {
                    (word & !7) | (input.u64() % 8)
                } else {
                    input.u64()
                };
                view.write_at(at, &value.to_le_bytes()).unwrap();
            }
            1 => {
                // A response length.
                let len = input.u64() as u32;
                view.write_at(slots_at + 64 * (sel % 4) + 12, &len.to_le_bytes())
                    .unwrap();
            }
            2 => {
                // The server's block, the client's block and wake words.
                let at = [128usize, 132, 136, 1024, 1028, 4096, 4104][sel % 7];
                let value = input.u64();
                let bytes = if matches!(at, 136 | 4104) {
                    value.to_le_bytes().to_vec()
                } else {
                    (value as u32 % 5).to_le_bytes().to_vec()
                };
                view.write_at(at, &bytes).unwrap();
            }
            3 => {
                if op & 0x08 == 0 {
                    if pending.len() < 6 {
                        if let Ok(p) = client.send_request(&[op; 8]) {
                            pending.push(p);
                        }
                    }
                } else {
                    // A batch of up to 3, published together.
                    let mut batch = client.batch();
                    for _ in 0..(sel % 3 + 1) {
                        if pending.len() >= 6 {
                            break;
                        }
                        if let Ok(p) = batch.send_request(&[op; 8]) {
                            pending.push(p);
                        }
                    }
                }
            }
            4 => {
                // The server, honestly (or not answering).
                if let Ok(Some(request)) = server.try_recv() {
                    if op & 0x80 != 0 && held.len() < 4 {
                        held.push(request);
                    } else {
                        let len = sel % (MAX_RESPONSE + 1);
                        let _ = request.respond(&vec![op; len]);
                    }
                } else if let Some(request) = held.pop() {
                    let _ = request.respond(&[3; 5]);
                }
            }
            5 => {
                if let Some(p) = pending.pop() {
                    let result = if op & 0x80 != 0 {
                        client
                            .receive_response_timeout(&p, Duration::from_millis(1))
                            .map(|r| r.len())
                    } else {
                        client.try_receive_response(&p).map(|r| r.map_or(0, |r| r.len()))
                    };
                    check(result);
                }
            }
            _ => {
                let result = client
                    .call_timeout(&[op; 4], Duration::from_millis(1))
                    .map(|r| r.len());
                check(result);
            }
        }
    }
    drop(held);
    drop(pending);
    drop(client);
    drop(view);
    drop(segment);
    drop(server);
    let _ = memshare::Segment::remove(&name);
});
