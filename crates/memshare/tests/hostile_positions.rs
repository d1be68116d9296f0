//! Positions a hostile or broken peer leaves in a channel's header before
//! the other end attaches. Found by the `channel_sender` fuzz target
//! (`fuzz/`): positions near `u64::MAX` were accepted at attach, and the
//! first send overflowed the sender's position (a panic in debug builds,
//! a wrapped position in release builds).

use std::sync::atomic::Ordering;

use memshare::channel::{inspect, Receiver, Sender};
use memshare::Error;

const WRITE_POS: usize = 128;
const READ_POS: usize = 384;

#[test]
fn positions_near_the_end_of_u64_are_refused_at_attach() {
    for pos in [u64::MAX - 7, u64::MAX - 4095, 1 << 63] {
        let rx = Receiver::create(4096).unwrap();
        let view = rx.segment().map(..).unwrap();
        view.atomic_u64(WRITE_POS)
            .unwrap()
            .store(pos, Ordering::Relaxed);
        view.atomic_u64(READ_POS)
            .unwrap()
            .store(pos, Ordering::Relaxed);
        match Sender::attach(rx.segment()) {
            Err(Error::Corrupted { .. }) => {}
            Ok(mut tx) => {
                // Without the check, this overflowed.
                let sent = tx.try_send(b"x");
                panic!("positions {pos} accepted by the sender; the send gave {sent:?}");
            }
            Err(e) => panic!("positions {pos}: {e}"),
        }
        drop(rx);

        let tx = Sender::create(4096).unwrap();
        let view = tx.segment().map(..).unwrap();
        view.atomic_u64(WRITE_POS)
            .unwrap()
            .store(pos, Ordering::Relaxed);
        view.atomic_u64(READ_POS)
            .unwrap()
            .store(pos, Ordering::Relaxed);
        let segment = tx.segment().clone();
        drop(tx);
        assert!(
            matches!(Receiver::attach(&segment), Err(Error::Corrupted { .. })),
            "positions {pos} accepted by the receiver"
        );
    }
}

#[test]
fn positions_below_the_limit_still_work() {
    let pos = (1u64 << 63) - 8;
    let rx = Receiver::create(64).unwrap();
    let view = rx.segment().map(..).unwrap();
    view.atomic_u64(WRITE_POS)
        .unwrap()
        .store(pos, Ordering::Relaxed);
    view.atomic_u64(READ_POS)
        .unwrap()
        .store(pos, Ordering::Relaxed);
    let segment = rx.segment().clone();
    drop(rx);
    let mut rx = Receiver::attach(&segment).unwrap();
    let mut tx = Sender::attach(rx.segment()).unwrap();
    for i in 0..100u8 {
        tx.send(&[i; 20]).unwrap();
        assert_eq!(&*rx.recv().unwrap(), &[i; 20]);
    }
}

#[test]
fn inspect_does_not_overflow_on_positions_near_the_end_of_u64() {
    let tx = Sender::create(64).unwrap();
    let view = tx.segment().map(..).unwrap();
    view.atomic_u64(WRITE_POS)
        .unwrap()
        .store(u64::MAX - 7, Ordering::Relaxed);
    view.atomic_u64(READ_POS)
        .unwrap()
        .store(u64::MAX - 63, Ordering::Relaxed);
    // A 56-byte message at ring offset 0: its 64-byte frame is longer than
    // the 56 bytes published, and its end is past u64::MAX.
    view.write_at(1024, &56u32.to_le_bytes()).unwrap();
    let state = inspect(tx.segment()).unwrap();
    assert_eq!(state.messages_pending, None);
}
