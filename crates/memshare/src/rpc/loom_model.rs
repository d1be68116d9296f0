//! The loom model of the request/response protocol, on its own code.
//!
//! `protocol.rs` (a request's way through its slot, the ring and the
//! pending bit, alone or published in a batch; the server's private copy
//! of the ring and its record of the slots it holds; the answer's way
//! back; both parks) is written against
//! `crate::primitive`: loom's atomics and a modelled futex under
//! `--cfg loom` (no timeout: a lost wake-up is a deadlock loom reports).
//! The request and response bytes are loom cells: a side that reads a
//! buffer before the other's writes are published is a reported data race.
//!
//! Run it with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p memshare --lib rpc::loom_model`.

use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::Arc;

use super::layout::{model, Slot, WakeWords};
use super::protocol::{self, Answer, Doorbell, Region, Take};
use crate::primitive::{check, AtomicU32, AtomicU64};

/// One client region, the pending mask and the server's wake words, in
/// ordinary memory; a request and a response buffer per slot (one u32
/// each).
struct Model {
    head: AtomicU64,
    entries: Vec<AtomicU32>,
    slots: Vec<Slot>,
    client_wake: WakeWords,
    pending: AtomicU64,
    server_wake: WakeWords,
    requests: Vec<UnsafeCell<u32>>,
    responses: Vec<UnsafeCell<u32>>,
}

// SAFETY: the cells are accessed by protocol only (loom checks it).
unsafe impl Sync for Model {}

impl Model {
    fn new(slots: usize) -> Arc<Model> {
        Arc::new(Model {
            head: AtomicU64::new(0),
            entries: (0..slots.next_power_of_two())
                .map(|_| AtomicU32::new(0))
                .collect(),
            slots: (0..slots).map(|_| model::slot()).collect(),
            client_wake: model::wake(),
            pending: AtomicU64::new(0),
            server_wake: model::wake(),
            requests: (0..slots).map(|_| UnsafeCell::new(0)).collect(),
            responses: (0..slots).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    fn region(&self) -> Region<'_> {
        Region {
            head: &self.head,
            entries: &self.entries,
            slots: &self.slots,
            wake: &self.client_wake,
        }
    }

    fn doorbell(&self) -> Doorbell<'_> {
        Doorbell {
            pending: &self.pending,
            bit: 1,
            server_wake: &self.server_wake,
        }
    }
}

/// The client: sends `requests` requests (slot i carries value 10 + i,
/// id 100 + i), each published at once or (`batch`) all published
/// together, then waits for every answer, parking when there is none;
/// each response must be its request's value plus 1000.
fn client(m: &Model, requests: u32, batch: bool) {
    // As the client's `Link`'s.
    let parkers = crate::primitive::Parkers::default();
    let mut head = 0;
    for i in 0..requests {
        m.requests[i as usize].with_mut(|p| {
            // SAFETY: the slot is the client's until it is pushed.
            unsafe { *p = 10 + i }
        });
        head = protocol::push(m.region(), head, i, 100 + u64::from(i), 4);
        if !batch {
            protocol::publish(m.region(), m.doorbell(), head);
        }
    }
    if batch {
        protocol::publish(m.region(), m.doorbell(), head);
    }
    for i in 0..requests {
        loop {
            match protocol::answer(m.region(), i, 100 + u64::from(i)) {
                Answer::Responded(len) => {
                    assert_eq!(len, 8);
                    let value = m.responses[i as usize].with(|p| {
                        // SAFETY: answered: the server wrote it, and is done.
                        unsafe { *p }
                    });
                    assert_eq!(value, 1010 + i, "request {i} got another's response");
                    break;
                }
                Answer::Waiting => {
                    protocol::park_client(
                        m.region(),
                        &parkers,
                        i,
                        100 + u64::from(i),
                        Duration::from_secs(1),
                    );
                }
                other => panic!("request {i}: {other:?}"),
            }
        }
    }
}

/// How the server waits when no pending bit is set.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    /// Parks, after a look at the head (as `Server::nothing_pushed`).
    Park,
    /// Only looks at the pending bits again (`WaitStrategy::Spin`).
    Spin,
}

/// The server: takes `requests` requests from the client whose pending
/// bit is set (as `Server::poll`), waiting as `wait` says when it is not,
/// and answers them in reverse order of arrival once all are taken (with
/// `reverse`) or each at once.
fn server(m: &Model, requests: u32, reverse: bool, wait: Wait) {
    // As the server's `Link`'s.
    let parkers = crate::primitive::Parkers::default();
    let mut ring = protocol::Ring::default();
    let mut taken = Vec::new();
    while taken.len() < requests as usize {
        if m.pending.load(crate::primitive::Ordering::Relaxed) & 1 == 0 {
            match wait {
                Wait::Spin => loom::thread::yield_now(),
                Wait::Park => {
                    let t = ring.tail;
                    protocol::park_server(&m.server_wake, &parkers, Duration::from_secs(1), || {
                        if protocol::has_requests(m.region(), t) {
                            m.pending.fetch_or(1, crate::primitive::Ordering::Relaxed);
                            false
                        } else {
                            true
                        }
                    });
                }
            }
            continue;
        }
        match protocol::take(m.region(), m.doorbell(), &mut ring, 4) {
            Take::Request { slot, id, len } => {
                assert_eq!((id, len), (100 + u64::from(slot), 4));
                let value = m.requests[slot as usize].with(|p| {
                    // SAFETY: taken: the client wrote it, and is done.
                    unsafe { *p }
                });
                assert_eq!(value, 10 + slot);
                if !reverse {
                    answer(m, &mut ring, slot, id, value);
                }
                taken.push((slot, id, value));
            }
            Take::Empty => {}
            Take::Violation(what) => panic!("{what}"),
        }
    }
    if reverse {
        for &(slot, id, value) in taken.iter().rev() {
            answer(m, &mut ring, slot, id, value);
        }
    }
}

fn answer(m: &Model, ring: &mut protocol::Ring, slot: u32, id: u64, value: u32) {
    m.responses[slot as usize].with_mut(|p| {
        // SAFETY: the server owes this slot's answer: the client does not
        // read the response buffer before it is given.
        unsafe { *p = value + 1000 }
    });
    assert!(protocol::finish(m.region(), slot, id, Some(8)));
    ring.release(slot);
}

fn run(preemption_bound: usize, requests: u32, reverse: bool, wait: Wait, batch: bool) {
    check(preemption_bound, move || {
        let m = Model::new(requests as usize);
        let s = {
            let m = Arc::clone(&m);
            loom::thread::spawn(move || server(&m, requests, reverse, wait))
        };
        client(&m, requests, batch);
        s.join().unwrap();
    });
}

#[test]
fn one_call_with_both_parks() {
    run(6, 1, false, Wait::Park, false);
}

#[test]
fn two_pipelined_requests_answered_in_reverse() {
    run(3, 2, true, Wait::Park, false);
}

#[test]
fn two_pipelined_requests_answered_as_taken() {
    run(3, 2, false, Wait::Park, false);
}

/// Two requests published together (`Client::batch`): the server reads
/// both from one look at the head, and parks or is woken as for one.
#[test]
fn two_requests_published_as_a_batch() {
    run(3, 2, false, Wait::Park, true);
}

/// A server that never parks relies on the pending bit alone: a request
/// pushed while it clears the bit of an empty ring is still seen.
#[test]
fn a_spinning_server_sees_every_request() {
    run(3, 2, false, Wait::Spin, false);
}
