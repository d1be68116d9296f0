//! A channel peer that hides its death: it zeroes its own state word (back
//! to "never attached") and dies. Once a side has seen its peer, it asks
//! the peer's liveness lock whatever the state word says, so the result is
//! `Disconnected` within the liveness interval, never a hang or `TimedOut`.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{child, role, unique_name, Reaped, TIMEOUT};
use memshare::channel::{Receiver, Sender, LIVENESS_INTERVAL};
use memshare::{Error, Segment};

/// Offsets of the state words (docs/channel-layout.md).
const SENDER_STATE: usize = 64;
const RECEIVER_STATE: usize = 68;

/// Zeroes `offset` of the segment called `name` and dies at once
/// (SIGKILL, `TerminateProcess`): nothing of this process can tell its
/// peer it left.
fn zero_and_die(segment: &Segment, offset: usize) -> ! {
    let view = segment.map(..).unwrap();
    view.atomic_u32(offset).unwrap().store(0, Ordering::Release);
    common::die_now()
}

/// A wait that must end in `Disconnected`: how long it took.
fn disconnected_within(what: &str, mut attempt: impl FnMut() -> memshare::Result<()>) -> Duration {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(()) => continue,
            Err(Error::Disconnected { .. }) => return start.elapsed(),
            Err(e) => panic!("{what}: expected Disconnected, got {e}"),
        }
    }
}

#[test]
fn a_sender_that_zeroes_its_state_before_dying_is_disconnected() {
    const TEST: &str = "a_sender_that_zeroes_its_state_before_dying_is_disconnected";
    if role().as_deref() == Some("sender") {
        let name = std::env::var("MST_NAME").unwrap();
        let mut tx = Sender::open(&name).unwrap();
        for i in 0u32..100 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        zero_and_die(tx.segment(), SENDER_STATE);
    }
    let name = unique_name("zero-tx");
    let mut rx = Receiver::create_named(&name, 4096).unwrap();
    let mut cmd = child(TEST, "sender");
    cmd.env("MST_NAME", &name);
    let _sender = Reaped::spawn(cmd);
    for i in 0u32..100 {
        let msg = rx.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(&*msg, &i.to_le_bytes());
    }
    // Every message arrived; now the sender is dead with its state word
    // saying "never attached".
    let took = disconnected_within("recv", || {
        rx.recv_timeout(Duration::from_secs(2)).map(|_| ())
    });
    // The death may have happened before the wait began: the bound is the
    // wait plus the liveness interval, with room for a slow machine.
    assert!(took < 10 * LIVENESS_INTERVAL, "took {took:?}");
}

#[test]
fn a_receiver_that_zeroes_its_state_before_dying_is_disconnected() {
    const TEST: &str = "a_receiver_that_zeroes_its_state_before_dying_is_disconnected";
    if role().as_deref() == Some("receiver") {
        let name = std::env::var("MST_NAME").unwrap();
        let mut rx = Receiver::open(&name).unwrap();
        for _ in 0..10 {
            rx.recv().unwrap();
        }
        zero_and_die(rx.segment(), RECEIVER_STATE);
    }
    let name = unique_name("zero-rx");
    let mut tx = Sender::create_named(&name, 4096).unwrap();
    let mut cmd = child(TEST, "receiver");
    cmd.env("MST_NAME", &name);
    let _receiver = Reaped::spawn(cmd);
    // Fill the ring over and over: once the receiver is dead the ring stays
    // full, and the sender must find out.
    disconnected_within("send", || {
        tx.send_timeout(&[7u8; 200], Duration::from_secs(2))
    });
}
