//! Channels within one process: the API, the framing, the errors.

mod common;

use std::time::{Duration, Instant};

use memshare::channel::{
    Receiver, Sender, TypedReceiver, TypedSender, WaitStrategy, LIVENESS_INTERVAL,
};
use memshare::{Error, Segment};

/// How late a timed-out wait may return: a few park slices
/// ([`LIVENESS_INTERVAL`]) of scheduling noise on a busy 2-vCPU machine or
/// under AddressSanitizer.
const LATE: Duration = Duration::from_nanos(5 * LIVENESS_INTERVAL.as_nanos() as u64);

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn messages_arrive_in_order_with_their_lengths_across_many_wraps() {
    let mut tx = Sender::create(4096).unwrap();
    let mut rx = Receiver::attach(tx.segment()).unwrap();
    let max = tx.max_message_len();
    assert_eq!(max, 4096 - 8);
    let mut rng = Rng(7);
    for seq in 0u32..20_000 {
        let len = (rng.next() % (max as u64 / 3)) as usize;
        let byte = (seq % 251) as u8;
        let msg = vec![byte; len];
        tx.send(&msg).unwrap();
        if seq % 3 == 0 {
            let got = rx.recv().unwrap();
            assert_eq!(got.len(), len);
            assert!(got.iter().all(|&b| b == byte));
        } else {
            let mut buf = Vec::new();
            assert_eq!(rx.recv_into(&mut buf).unwrap(), len);
            assert_eq!(buf, msg);
        }
    }
    assert!(rx.try_recv().unwrap().is_none());
}

#[test]
fn the_largest_message_fits_and_a_larger_one_is_too_large_at_once() {
    let mut tx = Sender::create(1024).unwrap();
    let mut rx = Receiver::attach(tx.segment()).unwrap();
    let max = tx.max_message_len();
    // Make the next frame wrap: the biggest message needs the whole ring.
    tx.send(&[1; 100]).unwrap();
    drop(rx.recv().unwrap());
    // The sender pads the end of the ring, then needs the receiver to
    // consume the padding before the whole ring is free.
    assert!(!tx.try_send(&vec![2; max]).unwrap());
    assert!(rx.try_recv().unwrap().is_none());
    assert!(tx.try_send(&vec![2; max]).unwrap());
    assert_eq!(rx.recv().unwrap().len(), max);
    let start = Instant::now();
    match tx.send(&vec![0; max + 1]) {
        Err(Error::TooLarge { len, max: m, .. }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        tx.reserve(usize::MAX),
        Err(Error::TooLarge { .. })
    ));
    assert!(start.elapsed() < Duration::from_secs(1));
    tx.send(&[]).unwrap();
    assert_eq!(rx.recv().unwrap().len(), 0);
}

#[test]
fn reserve_without_commit_publishes_nothing() {
    let mut tx = Sender::create(256).unwrap();
    let mut rx = Receiver::attach(tx.segment()).unwrap();
    {
        let mut slot = tx.reserve(10).unwrap();
        slot.copy_from_slice(b"abandoned!");
    }
    assert!(rx.try_recv().unwrap().is_none());
    // A padding frame written for an abandoned reservation is harmless.
    tx.send(&[9; 200]).unwrap();
    drop(rx.recv().unwrap());
    assert_eq!(tx.reserve(100).unwrap().len(), 100); // would wrap: pads the end
    let mut slot = tx.reserve(5).unwrap();
    slot.copy_from_slice(b"kept.");
    slot.commit();
    assert_eq!(&*rx.recv().unwrap(), b"kept.");
}

#[test]
fn try_send_reports_full_and_send_timeout_times_out() {
    let mut tx = Sender::create(64).unwrap();
    let _rx = Receiver::attach(tx.segment()).unwrap();
    assert!(tx.try_send(&[0; 48]).unwrap());
    assert!(!tx.try_send(&[0; 8]).unwrap());
    for strategy in [
        WaitStrategy::Spin,
        WaitStrategy::Park,
        WaitStrategy::default(),
    ] {
        tx.set_wait_strategy(strategy);
        let start = Instant::now();
        match tx.send_timeout(&[0; 8], Duration::from_millis(30)) {
            Err(Error::TimedOut { .. }) => {}
            other => panic!("{strategy:?}: expected TimedOut, got {other:?}"),
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(30) && took < Duration::from_millis(30) + LATE,
            "{strategy:?}: a 30 ms timeout took {took:?}"
        );
    }
}

#[test]
fn recv_timeout_times_out_in_every_strategy() {
    let mut rx = Receiver::create(4096).unwrap();
    let _tx = Sender::attach(rx.segment()).unwrap();
    for strategy in [
        WaitStrategy::Spin,
        WaitStrategy::Park,
        WaitStrategy::default(),
    ] {
        rx.set_wait_strategy(strategy);
        let start = Instant::now();
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(30)),
            Err(Error::TimedOut { .. })
        ));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(30) && took < Duration::from_millis(30) + LATE,
            "{strategy:?}: a 30 ms timeout took {took:?}"
        );
    }
}

#[test]
fn each_side_attaches_once_at_a_time() {
    let tx = Sender::create(4096).unwrap();
    let segment = tx.segment().clone();
    match Sender::attach(&segment) {
        Err(e @ Error::AlreadyAttached { side: "sender", .. }) => {
            assert!(e.to_string().contains("already attached"))
        }
        other => panic!("expected AlreadyAttached, got {other:?}"),
    }
    let rx = Receiver::attach(&segment).unwrap();
    assert!(matches!(
        Receiver::attach(&segment),
        Err(Error::AlreadyAttached {
            side: "receiver",
            ..
        })
    ));
    drop(rx);
    // Detached: a new receiver may attach.
    let _rx = Receiver::attach(&segment).unwrap();
    drop(tx);
    let _tx = Sender::attach(&segment).unwrap();
}

#[test]
fn after_the_sender_drops_the_receiver_drains_then_is_disconnected() {
    let mut tx = Sender::create(4096).unwrap();
    let mut rx = Receiver::attach(tx.segment()).unwrap();
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    drop(tx);
    assert_eq!(&*rx.recv().unwrap(), b"one");
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"two");
    assert!(matches!(
        rx.recv(),
        Err(Error::Disconnected { peer: "sender", .. })
    ));
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected { .. })));
}

#[test]
fn a_parked_receiver_wakes_when_the_sender_drops() {
    let mut rx = Receiver::create(4096).unwrap();
    rx.set_wait_strategy(WaitStrategy::Park);
    let tx = Sender::attach(rx.segment()).unwrap();
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(tx);
        Instant::now()
    });
    let err = rx.recv().unwrap_err();
    let woke = Instant::now();
    let dropped = dropper.join().unwrap();
    assert!(matches!(err, Error::Disconnected { .. }));
    assert!(woke.duration_since(dropped) < Duration::from_millis(100));
}

#[test]
fn after_the_receiver_drops_the_sender_is_disconnected() {
    let mut tx = Sender::create(4096).unwrap();
    let rx = Receiver::attach(tx.segment()).unwrap();
    tx.send(b"x").unwrap();
    drop(rx);
    assert!(matches!(
        tx.send(b"y"),
        Err(Error::Disconnected {
            peer: "receiver",
            ..
        })
    ));
    assert!(matches!(tx.try_send(b"y"), Err(Error::Disconnected { .. })));
}

#[test]
fn a_sender_may_send_before_the_receiver_attaches() {
    let mut tx = Sender::create(4096).unwrap();
    tx.send(b"early").unwrap();
    let mut rx = Receiver::attach(tx.segment()).unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"early");
}

#[test]
fn threads_exchange_a_million_checked_messages_in_each_strategy() {
    for strategy in [
        WaitStrategy::Spin,
        WaitStrategy::default(),
        WaitStrategy::Park,
    ] {
        let mut tx = Sender::create(1 << 14).unwrap();
        let mut rx = Receiver::attach(tx.segment()).unwrap();
        tx.set_wait_strategy(strategy);
        rx.set_wait_strategy(strategy);
        let count: u64 = if strategy == WaitStrategy::Park {
            100_000
        } else {
            300_000
        };
        let producer = std::thread::spawn(move || {
            let mut rng = Rng(99);
            for seq in 0..count {
                let len = 8 + (rng.next() % 200) as usize;
                let mut slot = tx.reserve(len).unwrap();
                slot[..8].copy_from_slice(&seq.to_le_bytes());
                for (i, b) in slot[8..].iter_mut().enumerate() {
                    *b = (seq as usize + i) as u8;
                }
                slot.commit();
            }
        });
        for seq in 0..count {
            let msg = rx.recv().unwrap();
            assert_eq!(u64::from_le_bytes(msg[..8].try_into().unwrap()), seq);
            assert!(msg[8..]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (seq as usize + i) as u8));
        }
        producer.join().unwrap();
        assert!(matches!(rx.recv(), Err(Error::Disconnected { .. })));
    }
}

#[test]
fn typed_messages_are_checked_for_size() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C, align(16))]
    struct Wide {
        a: u64,
        b: u64,
        c: [u32; 4],
    }
    let mut tx = TypedSender::<Wide>::create(4096).unwrap();
    let mut rx = TypedReceiver::<Wide>::attach(tx.segment()).unwrap();
    let w = Wide {
        a: 1,
        b: 2,
        c: [3, 4, 5, 6],
    };
    tx.send(&w).unwrap();
    assert_eq!(rx.recv().unwrap(), w);
    // A byte sender on the same channel sends something of the wrong size.
    drop(tx);
    let mut raw = Sender::attach(rx.segment()).unwrap();
    raw.send(&[0; 7]).unwrap();
    match rx.recv() {
        Err(e @ Error::Corrupted { .. }) => assert!(e.to_string().contains("7 bytes"), "{e}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert!(rx.try_recv().unwrap().is_none());
}

#[test]
fn a_channel_found_before_its_creator_wrote_the_header_is_waited_for() {
    // The name of a new channel appears a moment before its header; an
    // open in that moment waits for the header instead of failing.
    let real = Sender::create(4096).unwrap();
    for side in ["receiver", "sender"] {
        let name = common::unique_name("unformatted");
        let creator = common::format_slowly(&name, real.segment(), Duration::from_millis(50));
        let opened = match side {
            "receiver" => Receiver::open(&name).map(|r| r.capacity()),
            _ => Sender::open(&name).map(|s| s.capacity()),
        };
        let _segment = creator.join().unwrap();
        assert_eq!(opened.unwrap(), real.capacity(), "{side}");
    }
}

#[test]
fn a_segment_that_is_not_a_channel_is_refused() {
    // Not a channel at all: its own error kind, not corruption.
    let plain = Segment::create(1024 + 4096).unwrap();
    match Receiver::attach(&plain) {
        Err(e @ Error::NotAChannel { .. }) => assert!(e.to_string().contains("magic"), "{e}"),
        other => panic!("expected NotAChannel, got {other:?}"),
    }
    let small = Segment::create(100).unwrap();
    assert!(matches!(
        Sender::attach(&small),
        Err(Error::NotAChannel { .. })
    ));
    // A ring that is not a power of two: no channel has that size.
    let odd = Sender::create(4096).unwrap().segment().clone();
    let odd_len = Segment::create(1024 + 3000).unwrap();
    let view = odd_len.map(..).unwrap();
    let mut header = [0u8; 24];
    odd.map_readonly(..24)
        .unwrap()
        .read_at(0, &mut header)
        .unwrap();
    view.write_at(0, &header).unwrap();
    match Receiver::attach(&odd_len) {
        Err(e @ Error::NotAChannel { .. }) => {
            assert!(e.to_string().contains("power of two"), "{e}")
        }
        other => panic!("expected NotAChannel, got {other:?}"),
    }
    // A channel header whose capacity lies about the segment.
    let tx = Sender::create(4096).unwrap();
    let view = tx.segment().map(..).unwrap();
    view.atomic_u64(16)
        .unwrap()
        .store(1 << 20, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(
        Receiver::attach(tx.segment()),
        Err(Error::Corrupted { .. })
    ));
    let ro = Segment::create(4096).unwrap().to_readonly().unwrap();
    assert!(matches!(
        Receiver::attach(&ro),
        Err(Error::PermissionDenied { .. })
    ));
}

#[test]
fn capacities_round_up_to_a_power_of_two() {
    let tx = Sender::create(1000).unwrap();
    assert_eq!(tx.capacity(), 1024);
    assert_eq!(tx.segment().len(), 1024 + 1024);
    assert_eq!(Sender::create(1).unwrap().capacity(), 64);
    assert!(matches!(
        Sender::create(usize::MAX),
        Err(Error::OutOfRange { .. })
    ));
}

#[test]
fn typed_channels_are_created_and_opened_by_name() {
    use memshare::channel::{TypedReceiver, TypedSender};
    let name = common::unique_name("typed");
    let mut tx = TypedSender::<[u32; 4]>::create_named(&name, 4096).unwrap();
    let mut rx = TypedReceiver::<[u32; 4]>::open(&name).unwrap();
    tx.send(&[1, 2, 3, 4]).unwrap();
    assert_eq!(rx.recv().unwrap(), [1, 2, 3, 4]);
    drop((tx, rx));
    let mut rx = TypedReceiver::<u16>::create_named(&name, 64).unwrap();
    let mut tx = TypedSender::<u16>::open(&name).unwrap();
    tx.send(&9).unwrap();
    assert_eq!(rx.try_recv().unwrap(), Some(9));
    assert_eq!(rx.try_recv().unwrap(), None);
    drop((tx, rx));
    assert!(!common::in_dev_shm(&name));
}

#[test]
fn open_or_create_meets_whichever_side_comes_first() {
    use memshare::channel::{Receiver, Sender};
    // Both orders, and two threads racing to create it.
    for sender_first in [true, false] {
        let name = common::unique_name("ooc");
        let (mut tx, mut rx) = if sender_first {
            let tx = Sender::open_or_create(&name, 4096).unwrap();
            (tx, Receiver::open_or_create(&name, 4096).unwrap())
        } else {
            let rx = Receiver::open_or_create(&name, 4096).unwrap();
            (Sender::open_or_create(&name, 4096).unwrap(), rx)
        };
        tx.send(b"met").unwrap();
        assert_eq!(&*rx.recv().unwrap(), b"met");
        drop((tx, rx));
        assert!(!common::in_dev_shm(&name));
    }
    for _ in 0..20 {
        let name = common::unique_name("ooc-race");
        let n = name.clone();
        let other = std::thread::spawn(move || Receiver::open_or_create(&n, 4096).unwrap());
        let mut tx = Sender::open_or_create(&name, 4096).unwrap();
        let mut rx = other.join().unwrap();
        // (Not the segments' lengths: on Windows the one opened by name is
        // reported in whole pages.)
        assert_eq!(tx.capacity(), rx.capacity());
        tx.send(b"one channel").unwrap();
        assert_eq!(&*rx.recv().unwrap(), b"one channel");
    }
}

#[test]
fn an_endpoint_made_on_a_thread_that_ended_is_alive_where_it_moved() {
    // Liveness belongs to the endpoint, not to the thread that attached it
    // (on Windows the lock is a mutex, which a thread owns: memshare's own
    // lock thread holds it, so the attaching thread may end).
    use memshare::channel::{inspect, EndpointState};
    let rx = Receiver::create(4096).unwrap();
    let segment = rx.segment().clone();
    let mut tx = std::thread::spawn(move || Sender::attach(&segment).unwrap())
        .join()
        .unwrap();
    assert_eq!(
        inspect(rx.segment()).unwrap().sender,
        EndpointState::Attached
    );
    // And a second sender is still refused: the slot is held.
    assert!(matches!(
        Sender::attach(rx.segment()),
        Err(Error::AlreadyAttached { .. })
    ));
    tx.send(b"moved").unwrap();
    let mut rx = rx;
    assert_eq!(&*rx.recv().unwrap(), b"moved");
    // Dropped on this thread: released, and the slot is free again.
    drop(tx);
    assert_eq!(
        inspect(rx.segment()).unwrap().sender,
        EndpointState::Detached
    );
    let _again = Sender::attach(rx.segment()).unwrap();
}
