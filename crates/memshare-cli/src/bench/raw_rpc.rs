//! `rpc-raw-pipeline` and `rpc-raw-pipeline-spin`: the raw form of
//! `rpc-pipeline`, the least any shared-memory request/response must do.
//! The same 4 client processes pipeline as many calls each to one server
//! thread, which echoes each request, but through bare rings: no service
//! header, no client slots, no liveness, no validation. Each call moves its
//! request's lines to the server and its response's lines back, and the
//! wake-ups when a client sleeps: what `rpc-pipeline` could reach at best
//! on this machine.
//!
//! Layout (one segment, client `c`'s region at `c * region_len`): `depth`
//! request slots, then `depth` response slots, then a control part of two
//! lines. A slot is a sequence word (`u32`) and, from byte 8, the payload;
//! slots are a multiple of 128 bytes apart. Call `n` of a client goes in
//! request slot `n % depth`, published by storing `n + 1` (wrapping) in its
//! sequence word; its response in response slot `n % depth`, published the
//! same way. A client sends call `n + depth` only after it has read
//! response `n`, so neither side ever writes a slot the other still reads.
//! The control part holds the client's end marker (`END`), and its
//! "asleep" flag and the futex word it sleeps on (`WAITING`, `BELL`: the
//! handshake of memshare's client, `docs/rpc-layout.md` section 8).

use std::hint::black_box;
use std::ptr;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use memshare::ViewMut;

use super::case::RPC_CLIENTS;
use super::link::rpc_depth;
use super::rpc::Served;
use super::run::touch;
use super::watch;
use crate::fail::Failure;

/// Where a slot's payload starts (its sequence word is at 0).
const DATA: usize = 8;

/// Offsets in a client's control part (two lines): its end marker; its
/// "asleep" flag and the bell it sleeps on.
const END: usize = 0;
const WAITING: usize = 64;
const BELL: usize = 68;

/// The layout of the rings for messages of one size.
#[derive(Clone, Copy)]
pub struct Rings {
    depth: usize,
    slot: usize,
}

impl Rings {
    pub fn new(size: usize) -> Rings {
        Rings {
            depth: rpc_depth(size),
            slot: (DATA + size).next_multiple_of(128),
        }
    }

    fn region(self) -> usize {
        2 * self.depth * self.slot + 128
    }

    /// The segment length for all the clients.
    pub fn len(self) -> usize {
        RPC_CLIENTS * self.region()
    }

    /// Offset of request (`response` false) or response slot `k` of client `c`.
    fn slot(self, c: usize, response: bool, k: usize) -> usize {
        c * self.region() + (usize::from(response) * self.depth + k) * self.slot
    }

    fn control(self, c: usize, word: usize) -> usize {
        c * self.region() + 2 * self.depth * self.slot + word
    }
}

/// Client `c`'s "asleep" flag and bell.
fn bells(view: &ViewMut, rings: Rings, c: usize) -> Result<[&AtomicU32; 2], Failure> {
    Ok([
        view.atomic_u32(rings.control(c, WAITING))?,
        view.atomic_u32(rings.control(c, BELL))?,
    ])
}

/// The value that publishes call `n`.
fn stamp(n: u64) -> u32 {
    (n as u32).wrapping_add(1)
}

/// Publishes a response (`value` into its sequence word) and, if its
/// client sleeps, bumps and wakes its bell, clearing its flag as it does:
/// a client that fell asleep once costs one wake, not one per response
/// given before it runs (memshare's server does the same,
/// `docs/rpc-layout.md` sections 7 and 8).
fn answer(word: &AtomicU32, [waiting, bell]: [&AtomicU32; 2], value: u32) {
    word.store(value, Ordering::Release);
    fence(Ordering::SeqCst);
    if waiting.load(Ordering::Relaxed) != 0 && waiting.swap(0, Ordering::Relaxed) != 0 {
        bell.fetch_add(1, Ordering::Release);
        memshare::sync::wake(bell, 1);
    }
}

/// Waits until `word` holds `want`: spins `spins` times, then sleeps on
/// the bell with the flag set (either the server sees the flag, or this
/// side sees the response). Gives up after `deadline`.
fn await_response(
    word: &AtomicU32,
    want: u32,
    [waiting, bell]: [&AtomicU32; 2],
    spins: u32,
    deadline: Instant,
) -> Result<(), Failure> {
    for n in 1..=spins {
        if word.load(Ordering::Acquire) == want {
            return Ok(());
        }
        std::hint::spin_loop();
        if n % 65_536 == 0 && Instant::now() > deadline {
            return Err(Failure::other("bench-peer: the server stopped answering"));
        }
    }
    while word.load(Ordering::Acquire) != want {
        let seq = bell.load(Ordering::Acquire);
        waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if word.load(Ordering::Acquire) != want {
            memshare::sync::wait(bell, seq, Duration::from_millis(50));
        }
        waiting.store(0, Ordering::Relaxed);
        if Instant::now() > deadline {
            return Err(Failure::other("bench-peer: the server stopped answering"));
        }
    }
    Ok(())
}

/// The server (the benchmark): echoes every client's calls in order until
/// each has set its end marker. Gives up after `deadline`.
pub fn serve(view: &ViewMut, size: usize, deadline: Instant) -> Result<Served, Failure> {
    let rings = Rings::new(size);
    if view.len() < rings.len() {
        return Err(Failure::other("bench: the raw rings' segment is too short"));
    }
    let start = Instant::now();
    let mut calls = vec![0u64; RPC_CLIENTS];
    let mut ended = [false; RPC_CLIENTS];
    let mut open = RPC_CLIENTS;
    let mut elapsed = Duration::ZERO;
    let mut idle = 0u32;
    while open > 0 {
        // (One load per pass: the others may call on long after one died.)
        if watch::peer_failed() {
            return Err(Failure::other("bench: a client failed"));
        }
        let mut served = false;
        for c in 0..RPC_CLIENTS {
            if ended[c] {
                continue;
            }
            // Every request of this client that has come.
            loop {
                let n = calls[c];
                let k = (n % rings.depth as u64) as usize;
                let request = rings.slot(c, false, k);
                if view.atomic_u32(request)?.load(Ordering::Acquire) != stamp(n) {
                    break;
                }
                let response = rings.slot(c, true, k);
                // The request is published, and its client writes it no more
                // until it has read this response; the response slot is this
                // side's until it publishes it (its client has read response
                // `n - depth`).
                // SAFETY: both payloads are in the view (`rings.len()`
                // checked above), in different slots, and this side's now.
                unsafe {
                    ptr::copy_nonoverlapping(
                        view.as_ptr().add(request + DATA),
                        view.as_mut_ptr().add(response + DATA),
                        size,
                    )
                };
                answer(view.atomic_u32(response)?, bells(view, rings, c)?, stamp(n));
                calls[c] += 1;
                served = true;
            }
            if view
                .atomic_u32(rings.control(c, END))?
                .load(Ordering::Acquire)
                != 0
            {
                ended[c] = true;
                open -= 1;
                elapsed = start.elapsed();
            }
        }
        if served {
            idle = 0;
        } else {
            std::hint::spin_loop();
            idle += 1;
            if idle % 65_536 == 0 && watch::expired(deadline) {
                return Err(Failure::other("bench: a client stopped calling"));
            }
        }
    }
    Ok(Served { calls, elapsed })
}

/// Client `c` (a peer): pipelines calls of `size` bytes for `duration`
/// (keeps `depth` in flight, reads every byte of each response, waits for
/// one spinning and then asleep as `raw-spin-futex` does), then waits for
/// the rest and sets its end marker.
pub fn call(
    view: &ViewMut,
    c: usize,
    size: usize,
    spins: u32,
    duration: Duration,
) -> Result<(), Failure> {
    let rings = Rings::new(size);
    if view.len() < rings.len() || c >= RPC_CLIENTS {
        return Err(Failure::other(
            "bench-peer: the raw rings' segment is too short",
        ));
    }
    let deadline = Instant::now() + duration + Duration::from_secs(30);
    let end = Instant::now() + duration;
    let check_every = if size >= 65_536 { 1 } else { 64 };
    let request: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let bell = bells(view, rings, c)?;
    let (mut sent, mut received) = (0u64, 0u64);
    let mut next_check = check_every;
    let mut ending = false;
    let mut acc = 0u64;
    while !ending || received < sent {
        while !ending && sent - received < rings.depth as u64 {
            let slot = rings.slot(c, false, (sent % rings.depth as u64) as usize);
            // SAFETY: inside the view (checked above); the slot is this
            // side's: the call it held last (`sent - depth`) was answered.
            unsafe {
                ptr::copy_nonoverlapping(request.as_ptr(), view.as_mut_ptr().add(slot + DATA), size)
            };
            view.atomic_u32(slot)?.store(stamp(sent), Ordering::Release);
            sent += 1;
        }
        // The oldest response, waited for, then every one that has come.
        let mut wait = true;
        while received < sent {
            let slot = rings.slot(c, true, (received % rings.depth as u64) as usize);
            let word = view.atomic_u32(slot)?;
            let want = stamp(received);
            if wait {
                await_response(word, want, bell, spins, deadline)?;
                wait = false;
            } else if word.load(Ordering::Acquire) != want {
                break;
            }
            let payload = view.as_ptr().wrapping_add(slot + DATA);
            // SAFETY: inside the view; the response is published and the
            // server writes this slot no more until this side sends call
            // `received + depth`.
            let payload = unsafe { std::slice::from_raw_parts(payload, size) };
            acc ^= touch(payload);
            received += 1;
        }
        if received >= next_check {
            next_check = received + check_every;
            ending = Instant::now() > end;
        }
    }
    black_box(acc);
    view.atomic_u32(rings.control(c, END))?
        .store(1, Ordering::Release);
    Ok(())
}
