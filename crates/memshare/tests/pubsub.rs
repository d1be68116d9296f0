//! Publish-subscribe within one process: fan-out, many publishers, history,
//! both overflow policies, limits, held samples, disconnects, inspection.
//! (Between processes, with kills: `pubsub_processes.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::{in_dev_shm, unique_name, write_publisher_head};
use memshare::channel::EndpointState;
use memshare::pubsub::{self, Overflow, Publisher, ServiceConfig, Subscriber};
use memshare::{Error, Segment};

/// Message `i` of a publisher: its length and bytes are a function of `i`.
fn message(tag: u8, i: u64) -> Vec<u8> {
    let len = (i * 7 % 300) as usize;
    (0..len)
        .map(|j| tag ^ (i as u8).wrapping_add(j as u8))
        .collect()
}

#[test]
fn every_subscriber_gets_every_message_in_order() {
    for overflow in [Overflow::Block, Overflow::DropOldest] {
        let name = unique_name("fanout");
        let config = ServiceConfig::new().depth(64).overflow(overflow);
        let mut publisher = Publisher::create(&name, config).unwrap();
        let subs: Vec<_> = (0..3).map(|_| Subscriber::open(&name).unwrap()).collect();
        for round in 0..10u64 {
            for i in round * 50..round * 50 + 50 {
                publisher.publish_copy(&message(1, i)).unwrap();
            }
            for sub in &subs {
                for i in round * 50..round * 50 + 50 {
                    let msg = sub.recv_timeout(Duration::from_secs(5)).unwrap();
                    assert_eq!(msg.sequence(), i);
                    assert_eq!(msg.publisher(), publisher.id());
                    assert_eq!(&*msg, &message(1, i)[..], "{overflow:?} message {i}");
                }
                assert!(sub.try_recv().unwrap().is_none());
            }
        }
        for sub in &subs {
            assert_eq!((sub.received(), sub.missed()), (500, 0));
        }
        drop((publisher, subs));
        assert!(!in_dev_shm(&name));
    }
}

/// Subscribers parked at once (each in a thread of its own, on the
/// service's one futex word, as subscriber processes are) are all woken by
/// one publish, at once: not one of them, the others at the end of their
/// park slice (Linux reads the count of a futex wake as an int, and a wake
/// of `u32::MAX` waiters woke one). A loaded machine may delay a whole
/// measurement: up to three are made, and one at once is enough (a missed
/// wake-up is late in every one).
#[test]
fn one_publish_wakes_every_parked_subscriber_at_once() {
    let mut medians = Vec::new();
    for _ in 0..3 {
        let (median, slowest) = last_parked_subscriber_woken();
        if median < Duration::from_millis(5) {
            return;
        }
        medians.push((median, slowest));
    }
    panic!(
        "the last of the parked subscribers woke late after a publish (median, then each \
         round), in each of 3 measurements: {medians:#?}"
    );
}

/// Three parked subscribers, fifteen publishes: the median time from a
/// publish to the last subscriber holding it, and each round's.
fn last_parked_subscriber_woken() -> (Duration, Vec<Duration>) {
    const SUBSCRIBERS: usize = 3;
    const ROUNDS: usize = 15;
    let name = unique_name("fanout-wake");
    let mut publisher = Publisher::create(&name, ServiceConfig::new().depth(64)).unwrap();
    let (got_tx, got) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut sub = Subscriber::open(&name).unwrap();
            sub.set_wait_strategy(memshare::channel::WaitStrategy::Park);
            let got_tx = got_tx.clone();
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    drop(sub.recv_timeout(Duration::from_secs(30)).unwrap());
                    got_tx.send(Instant::now()).unwrap();
                }
            })
        })
        .collect();
    let mut slowest = Vec::new();
    for _ in 0..ROUNDS {
        // Every subscriber is parked by now.
        std::thread::sleep(Duration::from_millis(5));
        let sent = Instant::now();
        publisher.publish_copy(b"wake up").unwrap();
        let last = (0..SUBSCRIBERS)
            .map(|_| got.recv_timeout(Duration::from_secs(30)).unwrap())
            .max()
            .unwrap();
        slowest.push(last.saturating_duration_since(sent));
    }
    for t in threads {
        t.join().unwrap();
    }
    drop(publisher);
    assert!(!in_dev_shm(&name));
    let mut sorted = slowest.clone();
    sorted.sort();
    (sorted[ROUNDS / 2], slowest)
}

/// A hostile process that writes a head of `u64::MAX` into a publisher
/// slot no publisher holds yet makes neither a subscriber that opens nor
/// the publisher that takes the slot overflow (a panic in a debug build; in
/// a release build the subscriber took the slot's empty entry for message
/// 0), and both go on with honest messages.
#[test]
fn a_hostile_head_in_a_free_publisher_slot_is_neither_a_panic_nor_a_message() {
    let name = unique_name("hostile-head");
    let config = ServiceConfig::new().max_publishers(2).max_subscribers(2);
    let mut first = Publisher::create(&name, config).unwrap();
    write_publisher_head(first.segment(), 1, u64::MAX);

    let sub = Subscriber::open(&name).unwrap();
    assert!(sub.try_recv().unwrap().is_none());
    let mut second = Publisher::open(&name).unwrap();
    assert_eq!(second.slot(), 1);
    assert!(second.next_sequence() < 1 << 62);
    first.publish_copy(b"first").unwrap();
    second.publish_copy(b"second").unwrap();
    let mut got: Vec<Vec<u8>> = (0..2)
        .map(|_| sub.recv_timeout(Duration::from_secs(5)).unwrap().to_vec())
        .collect();
    got.sort();
    assert_eq!(got, [b"first".to_vec(), b"second".to_vec()]);
    assert!(sub.try_recv().unwrap().is_none());
    drop((first, second, sub));
    assert!(!in_dev_shm(&name));
}

/// A head that no message stands behind, written into a publisher slot
/// nobody holds (a hostile process; or one that died after such a write),
/// does not keep a subscriber from learning that the publishers are gone:
/// once the last one leaves and its messages are received, `recv` says
/// `Disconnected` (it used to wait for ever, `recv_timeout` said
/// `TimedOut`), and a wait set holding the subscriber reports it.
#[test]
fn a_head_with_nothing_behind_it_does_not_hide_that_the_publishers_are_gone() {
    for head in [u64::MAX, 1 << 61, 3] {
        let name = unique_name("head-lie");
        let config = ServiceConfig::new().max_publishers(2).max_subscribers(2);
        let mut publisher = Publisher::create(&name, config).unwrap();
        let sub = Subscriber::open(&name).unwrap();
        write_publisher_head(publisher.segment(), 1, head);
        let mut set = memshare::WaitSet::new().unwrap();
        set.add(&sub).unwrap();
        publisher.publish_copy(b"last words").unwrap();
        drop(publisher);
        assert_eq!(
            &*sub.recv_timeout(Duration::from_secs(5)).unwrap(),
            b"last words"
        );
        let started = Instant::now();
        assert!(
            !set.wait_timeout(Duration::from_secs(5)).unwrap().is_empty(),
            "head {head}: the wait set did not report the subscriber"
        );
        match sub.recv_timeout(Duration::from_secs(5)) {
            Err(Error::Disconnected { .. }) => {}
            other => panic!("head {head}: expected Disconnected, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "head {head}");
        drop((set, sub));
        assert!(!in_dev_shm(&name));
    }
}

#[test]
fn many_publishers_reach_every_subscriber_each_in_order() {
    let name = unique_name("n-m");
    let config = ServiceConfig::new().max_publishers(3).depth(32);
    let mut first = Publisher::create(&name, config).unwrap();
    let mut others: Vec<_> = (0..2).map(|_| Publisher::open(&name).unwrap()).collect();
    let subs: Vec<_> = (0..2).map(|_| Subscriber::open(&name).unwrap()).collect();
    for i in 0..20u64 {
        first.publish_copy(&message(10, i)).unwrap();
        for (k, p) in others.iter_mut().enumerate() {
            p.publish_copy(&message(20 + k as u8, i)).unwrap();
        }
    }
    let ids = [first.id(), others[0].id(), others[1].id()];
    for sub in &subs {
        let mut next = [0u64; 3];
        for _ in 0..60 {
            let msg = sub.recv_timeout(Duration::from_secs(5)).unwrap();
            let k = ids.iter().position(|&id| id == msg.publisher()).unwrap();
            assert_eq!(msg.sequence(), next[k], "publisher {k} out of order");
            let tag = [10, 20, 21][k];
            assert_eq!(&*msg, &message(tag, next[k])[..]);
            next[k] += 1;
        }
        assert_eq!(next, [20, 20, 20]);
    }
}

#[test]
fn a_late_subscriber_receives_the_history_first() {
    let name = unique_name("history");
    let config = ServiceConfig::new().depth(8).history(3);
    let mut publisher = Publisher::create(&name, config).unwrap();
    for i in 0..10u64 {
        publisher.publish_copy(&message(3, i)).unwrap();
    }
    let late = Subscriber::open(&name).unwrap();
    for i in 7..10u64 {
        let msg = late.try_recv().unwrap().expect("history");
        assert_eq!((msg.sequence(), &*msg), (i, &message(3, i)[..]));
    }
    assert!(late.try_recv().unwrap().is_none());
    publisher.publish_copy(b"live").unwrap();
    assert_eq!(&*late.recv().unwrap(), b"live");
    // Without history, a late subscriber starts at the next message.
    let name = unique_name("no-history");
    let mut publisher = Publisher::create(&name, ServiceConfig::new()).unwrap();
    publisher.publish_copy(b"old").unwrap();
    let late = Subscriber::open(&name).unwrap();
    assert!(late.try_recv().unwrap().is_none());
}

#[test]
fn limits_are_clear_errors_naming_the_limit() {
    let name = unique_name("limits");
    let config = ServiceConfig::new().max_subscribers(2).max_held(2);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let a = Subscriber::open(&name).unwrap();
    let _b = Subscriber::open(&name).unwrap();
    match Subscriber::open(&name) {
        Err(e @ Error::LimitReached { limit: 2, .. }) => {
            assert!(e.to_string().contains("subscriber"), "{e}")
        }
        other => panic!("expected LimitReached, got {other:?}"),
    }
    match Publisher::open(&name) {
        Err(e @ Error::LimitReached { limit: 1, .. }) => {
            assert!(e.to_string().contains("publisher"), "{e}")
        }
        other => panic!("expected LimitReached, got {other:?}"),
    }
    // Held samples: two at once, a third is refused until one goes.
    for i in 0..3u64 {
        publisher.publish_copy(&message(4, i)).unwrap();
    }
    let one = a.recv().unwrap();
    let two = a.recv().unwrap();
    match a.try_recv() {
        Err(e @ Error::LimitReached { limit: 2, .. }) => {
            assert!(e.to_string().contains("holds"), "{e}")
        }
        other => panic!("expected LimitReached, got {other:?}"),
    }
    assert_eq!((one.sequence(), two.sequence()), (0, 1));
    drop(one);
    assert_eq!(a.recv().unwrap().sequence(), 2);
    drop(two);
    // A message too large, and configurations out of range.
    assert!(matches!(
        publisher.loan(4097),
        Err(Error::TooLarge { max: 4096, .. })
    ));
    for bad in [
        ServiceConfig::new().history(17),
        ServiceConfig::new().depth(0),
        ServiceConfig::new().max_subscribers(65),
        ServiceConfig::new().max_publishers(0),
        ServiceConfig::new().max_held(0),
    ] {
        assert!(
            matches!(
                Publisher::create(&unique_name("bad"), bad),
                Err(Error::OutOfRange { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn drop_oldest_counts_exactly_what_a_slow_subscriber_missed() {
    let name = unique_name("missed");
    let config = ServiceConfig::new().depth(4).overflow(Overflow::DropOldest);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let slow = Subscriber::open(&name).unwrap();
    for i in 0..100u64 {
        publisher.publish_copy(&message(5, i)).unwrap();
    }
    // The 4 newest are kept: 96..100.
    for i in 96..100u64 {
        let msg = slow.try_recv().unwrap().unwrap();
        assert_eq!((msg.sequence(), &*msg), (i, &message(5, i)[..]));
    }
    assert!(slow.try_recv().unwrap().is_none());
    assert_eq!(slow.missed(), 96);
    assert_eq!(slow.received() + slow.missed(), 100);
}

#[test]
fn a_held_sample_never_changes_while_the_publisher_laps() {
    let name = unique_name("held");
    let config = ServiceConfig::new()
        .depth(2)
        .max_held(1)
        .overflow(Overflow::DropOldest);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let sub = Subscriber::open(&name).unwrap();
    publisher.publish_copy(&[0xAA; 64]).unwrap();
    let held = sub.recv().unwrap();
    // Far more messages than the ring and the pool hold: every buffer but
    // the held one is reused many times over.
    for i in 0..1000u64 {
        publisher.publish_copy(&[i as u8; 64]).unwrap();
    }
    assert!(held.iter().all(|&b| b == 0xAA), "the held sample changed");
    drop(held);
    let next = sub.recv().unwrap();
    assert!(next.sequence() >= 998, "{}", next.sequence());
}

#[test]
fn block_makes_the_publisher_wait_for_the_slowest_subscriber() {
    let name = unique_name("block");
    let config = ServiceConfig::new().depth(3).overflow(Overflow::Block);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let fast = Subscriber::open(&name).unwrap();
    let slow = Subscriber::open(&name).unwrap();
    for i in 0..3u64 {
        assert!(publisher.try_publish_copy(&message(6, i)).unwrap());
        drop(fast.recv().unwrap());
    }
    // The slow one has 3 waiting: full, however fast the other is.
    assert!(!publisher.try_publish_copy(b"x").unwrap());
    assert!(matches!(
        publisher.publish_copy_timeout(b"x", Duration::from_millis(30)),
        Err(Error::TimedOut { .. })
    ));
    assert_eq!(slow.recv().unwrap().sequence(), 0);
    assert!(publisher.try_publish_copy(&message(6, 3)).unwrap());
    for i in 1..4u64 {
        assert_eq!(slow.recv().unwrap().sequence(), i);
    }
    assert_eq!(slow.missed(), 0);
    assert_eq!(fast.recv().unwrap().sequence(), 3);
    // A subscriber that goes away holds nobody back.
    drop(slow);
    for i in 4..20u64 {
        assert!(publisher.try_publish_copy(&message(6, i)).unwrap());
        assert_eq!(fast.recv().unwrap().sequence(), i);
    }
}

#[test]
fn subscribers_see_disconnected_after_draining_and_a_new_publisher_continues() {
    let name = unique_name("disconnect");
    let mut publisher = Publisher::create(&name, ServiceConfig::new()).unwrap();
    let sub = Subscriber::open(&name).unwrap();
    publisher.publish_copy(b"last words").unwrap();
    drop(publisher);
    assert_eq!(&*sub.recv().unwrap(), b"last words");
    assert!(matches!(sub.recv(), Err(Error::Disconnected { .. })));
    assert!(matches!(sub.try_recv(), Err(Error::Disconnected { .. })));
    // The service lives on (the subscriber holds it); a new publisher
    // continues the sequence.
    let mut again = Publisher::open(&name).unwrap();
    assert_eq!(again.next_sequence(), 1);
    again.publish_copy(b"back").unwrap();
    let msg = sub.recv().unwrap();
    assert_eq!((msg.sequence(), &*msg), (1, &b"back"[..]));
    assert_eq!(msg.publisher(), again.id());
}

#[test]
fn loans_dropped_unpublished_go_back_to_the_pool() {
    let name = unique_name("loans");
    let mut publisher = Publisher::create(&name, ServiceConfig::new().depth(2)).unwrap();
    let sub = Subscriber::open(&name).unwrap();
    for _ in 0..10_000 {
        let mut loan = publisher.loan(16).unwrap();
        loan.fill(7);
    }
    let mut loan = publisher.loan(3).unwrap();
    loan.copy_from_slice(b"yes");
    assert_eq!(loan.sequence(), 0);
    loan.publish();
    assert_eq!(&*sub.recv().unwrap(), b"yes");
}

#[test]
fn open_or_create_and_open_timeout_meet_on_one_service() {
    let name = unique_name("meet");
    let config = ServiceConfig::new().max_publishers(2);
    let waiting = {
        let name = name.clone();
        std::thread::spawn(move || Subscriber::open_timeout(&name, Duration::from_secs(5)))
    };
    std::thread::sleep(Duration::from_millis(20));
    let mut a = Publisher::open_or_create(&name, config).unwrap();
    let b = Publisher::open_or_create(&name, config).unwrap();
    assert_ne!(a.id(), b.id());
    let sub = waiting.join().unwrap().unwrap();
    a.publish_copy(b"met").unwrap();
    assert_eq!(&*sub.recv().unwrap(), b"met");
    assert!(matches!(
        Subscriber::open_timeout(&unique_name("never"), Duration::from_millis(20)),
        Err(Error::TimedOut { .. })
    ));
}

#[test]
fn a_service_found_before_its_creator_wrote_the_header_is_waited_for() {
    // The name of a new service appears a moment before its header; an
    // open in that moment waits for the header instead of failing.
    let real = Publisher::create(&unique_name("real"), ServiceConfig::new()).unwrap();
    for open in [0, 1] {
        let name = unique_name("unformatted");
        let creator = common::format_slowly(&name, real.segment(), Duration::from_millis(50));
        let opened = match open {
            0 => Subscriber::open(&name).map(|s| s.config()),
            _ => Publisher::open(&name).map(|p| p.config()),
        };
        let _segment = creator.join().unwrap();
        assert_eq!(opened.unwrap(), real.config(), "open {open}");
    }
    // A service is never seen without its creator attached (it would be
    // reported Disconnected): the creator attaches before the magic.
    for round in 0..300 {
        let name = unique_name("born");
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let creator = {
            let name = name.clone();
            std::thread::spawn(move || {
                let publisher = Publisher::create(&name, ServiceConfig::new()).unwrap();
                done_rx.recv().unwrap();
                drop(publisher);
            })
        };
        let sub = loop {
            match Subscriber::open(&name) {
                Err(Error::NotFound { .. }) => std::hint::spin_loop(),
                other => break other.unwrap_or_else(|e| panic!("round {round}: {e}")),
            }
        };
        let first = sub.try_recv().map(|s| s.is_none());
        assert!(matches!(first, Ok(true)), "round {round}: {first:?}");
        done_tx.send(()).unwrap();
        creator.join().unwrap();
    }
}

#[test]
fn a_segment_that_is_not_a_service_is_refused() {
    let plain = Segment::create(1 << 16).unwrap();
    assert!(matches!(
        Subscriber::attach(&plain),
        Err(Error::NotAService { .. })
    ));
    assert!(matches!(
        Publisher::attach(&plain),
        Err(Error::NotAService { .. })
    ));
    let channel = memshare::channel::Sender::create(4096).unwrap();
    assert!(matches!(
        Subscriber::attach(channel.segment()),
        Err(Error::NotAService { .. })
    ));
}

#[test]
fn inspection_shows_publishers_subscribers_lag_and_missed() {
    let name = unique_name("inspect");
    let config = ServiceConfig::new().depth(4).max_held(2);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let behind = Subscriber::open(&name).unwrap();
    let current = Subscriber::open(&name).unwrap();
    for i in 0..10u64 {
        publisher.publish_copy(&message(8, i)).unwrap();
        drop(current.recv().unwrap());
    }
    let held = current.try_recv().unwrap();
    assert!(held.is_none());
    let state = pubsub::inspect(publisher.segment()).unwrap();
    assert_eq!(state.config, config);
    assert_eq!(state.publishers.len(), 1);
    assert_eq!(state.publishers[0].state, EndpointState::Attached);
    assert_eq!(state.publishers[0].next_sequence, 10);
    assert_eq!(state.subscribers.len(), 2);
    assert_eq!(state.subscribers[0].lag, 10);
    assert_eq!(state.subscribers[1].lag, 0);
    assert_eq!(state.subscribers[1].received, 10);
    // The one behind catches up, missing what fell out.
    let first = behind.recv().unwrap();
    assert_eq!(first.sequence(), 6);
    let state = pubsub::inspect(publisher.segment()).unwrap();
    assert_eq!(state.subscribers[0].missed, 6);
    assert_eq!(state.subscribers[0].held, 1);
    drop(first);
    drop(behind);
    let state = pubsub::inspect(publisher.segment()).unwrap();
    assert_eq!(state.subscribers[0].state, EndpointState::Detached);
    // The machine's list knows the kind (Unix: Windows has no list).
    #[cfg(unix)]
    {
        let info = memshare::inspect::named_info(&name).unwrap();
        assert_eq!(info.kind, Some(memshare::inspect::SegmentKind::Pubsub));
    }
}

#[test]
fn typed_values_travel_whole_and_a_wrong_size_is_corrupted() {
    use memshare::pubsub::{TypedPublisher, TypedSubscriber};
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Tick {
        seq: u64,
        price: f64,
    }
    let name = unique_name("typed-ps");
    // max_message_len is raised to fit a Tick.
    let config = ServiceConfig::new().max_message_len(1).max_publishers(2);
    let mut ticks = TypedPublisher::<Tick>::create(&name, config).unwrap();
    let listener = TypedSubscriber::<Tick>::open(&name).unwrap();
    for i in 0..10u64 {
        ticks
            .publish(&Tick {
                seq: i,
                price: i as f64 / 2.0,
            })
            .unwrap();
    }
    for i in 0..10u64 {
        let (tick, publisher, seq) = listener.recv_with_origin().unwrap();
        assert_eq!(tick.seq, i);
        assert_eq!(seq, i);
        assert_eq!(publisher, ticks.inner_mut().id());
    }
    // A byte publisher sends 3 bytes: the typed side says so.
    let mut raw = Publisher::open(&name).unwrap();
    raw.publish_copy(&[1, 2, 3]).unwrap();
    match listener.recv() {
        Err(e @ Error::Corrupted { .. }) => assert!(e.to_string().contains("3 bytes"), "{e}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    // A service whose messages are too small for the type is refused.
    let small = unique_name("typed-small");
    let tiny = Publisher::create(&small, ServiceConfig::new().max_message_len(4)).unwrap();
    assert!(matches!(
        TypedPublisher::<Tick>::from_publisher(tiny),
        Err(Error::OutOfRange { .. })
    ));
}
