//! The loom model of the request/response protocol, on its own code.
//!
//! `protocol.rs` (a request's way through its slot, the ring and the
//! pending bit, alone or published in a batch; the server's private copy
//! of the ring and its record of the slots it holds; the answer's way
//! back, a response or a decline; a slot reused for the next request once
//! answered, and the ring wrapping; both parks) is written against
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
pub(crate) struct Model {
    pub(crate) head: AtomicU64,
    pub(crate) entries: Vec<AtomicU32>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) client_wake: WakeWords,
    pub(crate) pending: AtomicU64,
    pub(crate) server_wake: WakeWords,
    pub(crate) requests: Vec<UnsafeCell<u32>>,
    pub(crate) responses: Vec<UnsafeCell<u32>>,
}

// SAFETY: the cells are accessed by protocol only (loom checks it).
unsafe impl Sync for Model {}

impl Model {
    pub(crate) fn new(slots: usize) -> Arc<Model> {
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

    pub(crate) fn region(&self) -> Region<'_> {
        Region {
            head: &self.head,
            entries: &self.entries,
            slots: &self.slots,
            wake: &self.client_wake,
        }
    }

    pub(crate) fn doorbell(&self) -> Doorbell<'_> {
        Doorbell {
            pending: &self.pending,
            bit: 1,
            server_wake: &self.server_wake,
        }
    }
}

/// One run of the model: how many requests the client sends through how
/// many slots, and how each side behaves.
#[derive(Clone, Copy)]
pub(crate) struct Case {
    /// Requests sent in all; request `i` (id 100 + i, value 10 + i) goes in
    /// slot `i % slots`, once the slot's earlier request is answered.
    requests: u32,
    /// The client's slots (`max_in_flight`).
    slots: u32,
    /// The client publishes its first `slots` requests together
    /// (`Client::batch`), not each at once.
    batch: bool,
    /// The server answers once every request is taken, in reverse order
    /// (needs `requests <= slots`), not each as it takes it.
    reverse: bool,
    /// The server declines the odd requests (`Request` dropped unanswered).
    decline_odd: bool,
    wait: Wait,
}

/// The client: sends the case's requests, then waits for every answer,
/// parking when there is none. A response must be its request's value
/// plus 1000; a declined request must be one the server declines.
pub(crate) fn client(m: &Model, case: Case) {
    // As the client's `Link`'s.
    let parkers = crate::primitive::Parkers::default();
    let mut head = 0;
    let mut answered = 0;
    for i in 0..case.requests {
        if i >= case.slots {
            // The slot is reused: its earlier request's answer first.
            await_answer(m, &parkers, case, answered);
            answered += 1;
        }
        let slot = i % case.slots;
        m.requests[slot as usize].with_mut(|p| {
            // SAFETY: the slot is the client's until it is pushed (its
            // earlier request is answered).
            unsafe { *p = 10 + i }
        });
        head = protocol::push(m.region(), head, slot, 100 + u64::from(i), 4);
        if !case.batch || i + 1 >= case.slots {
            protocol::publish(m.region(), m.doorbell(), head);
        }
    }
    while answered < case.requests {
        await_answer(m, &parkers, case, answered);
        answered += 1;
    }
}

/// The client: waits (parking) for the answer to request `i`, and checks
/// it.
fn await_answer(m: &Model, parkers: &crate::primitive::Parkers, case: Case, i: u32) {
    let slot = i % case.slots;
    let id = 100 + u64::from(i);
    loop {
        match protocol::answer(m.region(), slot, id) {
            Answer::Responded(len) => {
                assert!(!(case.decline_odd && i % 2 == 1), "request {i} answered");
                assert_eq!(len, 8);
                let value = m.responses[slot as usize].with(|p| {
                    // SAFETY: answered: the server wrote it, and is done.
                    unsafe { *p }
                });
                assert_eq!(value, 1010 + i, "request {i} got another's response");
                return;
            }
            Answer::Declined => {
                assert!(case.decline_odd && i % 2 == 1, "request {i} declined");
                return;
            }
            Answer::Waiting => {
                protocol::park_client(m.region(), parkers, slot, id, Duration::from_secs(1));
            }
            other => panic!("request {i}: {other:?}"),
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

/// The server: takes the case's requests from the client whose pending
/// bit is set (as `Server::poll`), waiting as the case says when it is
/// not, and answers each (or declines it) at once, or all in reverse once
/// all are taken.
pub(crate) fn server(m: &Model, case: Case) {
    // As the server's `Link`'s.
    let parkers = crate::primitive::Parkers::default();
    let mut ring = protocol::Ring::default();
    let mut taken = Vec::new();
    while taken.len() < case.requests as usize {
        if m.pending.load(crate::primitive::Ordering::Relaxed) & 1 == 0 {
            match case.wait {
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
                let i = taken.len() as u32;
                assert_eq!((slot, id, len), (i % case.slots, 100 + u64::from(i), 4));
                let value = m.requests[slot as usize].with(|p| {
                    // SAFETY: taken: the client wrote it, and is done.
                    unsafe { *p }
                });
                assert_eq!(value, 10 + i);
                if !case.reverse {
                    answer(m, &mut ring, case, slot, id, value);
                }
                taken.push((slot, id, value));
            }
            Take::Empty => {}
            Take::Violation(what) => panic!("{what}"),
        }
    }
    if case.reverse {
        for &(slot, id, value) in taken.iter().rev() {
            answer(m, &mut ring, case, slot, id, value);
        }
    }
}

/// The server answers request `id` (value `value`) in `slot`, or declines
/// it if the case says so.
fn answer(m: &Model, ring: &mut protocol::Ring, case: Case, slot: u32, id: u64, value: u32) {
    let response = if case.decline_odd && id % 2 == 1 {
        None
    } else {
        m.responses[slot as usize].with_mut(|p| {
            // SAFETY: the server owes this slot's answer: the client does
            // not read the response buffer before it is given.
            unsafe { *p = value + 1000 }
        });
        Some(8)
    };
    assert!(protocol::finish(m.region(), slot, id, response));
    ring.release(slot);
}

fn run(preemption_bound: usize, case: Case) {
    assert!(!case.reverse || case.requests <= case.slots);
    check(preemption_bound, move || {
        let m = Model::new(case.slots as usize);
        let s = {
            let m = Arc::clone(&m);
            loom::thread::spawn(move || server(&m, case))
        };
        client(&m, case);
        s.join().unwrap();
    });
}

/// `requests` requests, one slot each, published one at a time, answered
/// as taken, both sides parking: what the tests below vary.
pub(crate) fn case(requests: u32) -> Case {
    Case {
        requests,
        slots: requests,
        batch: false,
        reverse: false,
        decline_odd: false,
        wait: Wait::Park,
    }
}

#[test]
fn one_call_with_both_parks() {
    run(6, case(1));
}

#[test]
fn two_pipelined_requests_answered_in_reverse() {
    run(
        3,
        Case {
            reverse: true,
            ..case(2)
        },
    );
}

#[test]
fn two_pipelined_requests_answered_as_taken() {
    run(3, case(2));
}

/// Two requests published together (`Client::batch`): the server reads
/// both from one look at the head, and parks or is woken as for one.
#[test]
fn two_requests_published_as_a_batch() {
    run(
        3,
        Case {
            batch: true,
            ..case(2)
        },
    );
}

/// A server that never parks relies on the pending bit alone: a request
/// pushed while it clears the bit of an empty ring is still seen.
#[test]
fn a_spinning_server_sees_every_request() {
    run(
        3,
        Case {
            wait: Wait::Spin,
            ..case(2)
        },
    );
}

/// One slot (`max_in_flight(1)`) carries three calls in turn: the ring of
/// one entry wraps, the slot's word goes from one request's answer to the
/// next request, and an answer is never taken for the next request's.
#[test]
fn one_slot_reused_for_calls_in_turn() {
    run(
        3,
        Case {
            slots: 1,
            ..case(3)
        },
    );
}

/// A declined request (`Request` dropped unanswered) is `Declined` for
/// the client, its slot reused for the next, which is answered.
#[test]
fn a_declined_request_then_an_answered_one_in_its_slot() {
    run(
        3,
        Case {
            slots: 1,
            decline_odd: true,
            ..case(3)
        },
    );
}

/// Two slots, four calls, the odd ones declined: the client reuses each
/// slot while the other's request is in flight (the server's held bits
/// and the ring's wrap).
#[test]
fn two_slots_reused_while_the_other_is_in_flight() {
    run(
        2,
        Case {
            slots: 2,
            decline_odd: true,
            ..case(4)
        },
    );
}
