//! Publish-subscribe between real processes (the test binary re-runs itself
//! as the others): fan-out with checked contents under both policies,
//! SIGKILL of subscribers (they neither block the publisher nor pin its
//! buffers beyond the liveness interval) and of publishers (a clean prefix,
//! then `Disconnected`, then a new publisher continues), and a subscriber
//! that scribbles over its own block.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::chan::{message, rng};
use common::{
    child, env, in_dev_shm, role, spawn, unique_name, write_publisher_head, Detections, Output,
    Reaped, TIMEOUT,
};
use memshare::channel::LIVENESS_INTERVAL;
use memshare::pubsub::{Overflow, Publisher, ServiceConfig, Subscriber};
use memshare::{Error, Segment};

const MAX: usize = 1000;
/// How many samples the honest subscriber of the scribbling test holds.
const HELD: usize = 3;

/// The subscriber child: receives until `Disconnected`, checking every
/// message (sequence in order unless missed under drop-oldest; contents a
/// function of the sequence), then prints what it got.
fn checking_subscriber(slow: bool) {
    let sub = Subscriber::open_timeout(&env("MST_NAME"), TIMEOUT).unwrap();
    println!("ready=1");
    let mut buf = Vec::new();
    let mut next = 0u64;
    let mut received = 0u64;
    let mut pause = rng(u64::from(std::process::id()));
    loop {
        match sub.recv_timeout(TIMEOUT) {
            Ok(msg) => {
                assert!(msg.sequence() >= next, "{} after {next}", msg.sequence());
                message(msg.sequence(), MAX, &mut buf);
                assert_eq!(&*msg, &buf[..], "message {}", msg.sequence());
                next = msg.sequence() + 1;
                received += 1;
                if slow && pause() % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Err(Error::Disconnected { .. }) => break,
            Err(e) => panic!("subscriber: {e}"),
        }
    }
    println!("received={received} missed={} next={next}", sub.missed());
}

fn publish_all(publisher: &mut Publisher, count: u64) {
    let mut buf = Vec::new();
    for seq in 0..count {
        message(seq, MAX, &mut buf);
        let mut loan = publisher.loan(buf.len()).unwrap();
        loan.copy_from_slice(&buf);
        loan.publish();
    }
}

#[test]
fn block_fans_out_to_subscriber_processes_losing_nothing() {
    const TEST: &str = "block_fans_out_to_subscriber_processes_losing_nothing";
    if role().is_some() {
        checking_subscriber(false);
        return;
    }
    const COUNT: u64 = 20_000;
    let name = unique_name("ps-block");
    let config = ServiceConfig::new()
        .max_message_len(MAX as u64)
        .depth(16)
        .overflow(Overflow::Block);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let mut kids: Vec<_> = (0..3)
        .map(|_| spawn(TEST, "sub", &[("MST_NAME", name.clone())]))
        .collect();
    for (_, out) in &mut kids {
        out.after("ready=");
    }
    publish_all(&mut publisher, COUNT);
    drop(publisher);
    for (kid, mut out) in kids {
        let said = out.after("received=");
        assert_eq!(said, format!("{COUNT} missed=0 next={COUNT}"));
        kid.wait_success(TIMEOUT);
    }
}

#[test]
fn drop_oldest_counts_exactly_what_a_slow_subscriber_process_missed() {
    const TEST: &str = "drop_oldest_counts_exactly_what_a_slow_subscriber_process_missed";
    if role().is_some() {
        checking_subscriber(true);
        return;
    }
    const COUNT: u64 = 20_000;
    let name = unique_name("ps-drop");
    let config = ServiceConfig::new()
        .max_message_len(MAX as u64)
        .depth(8)
        .overflow(Overflow::DropOldest);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let (kid, mut out) = spawn(TEST, "sub", &[("MST_NAME", name.clone())]);
    out.after("ready=");
    publish_all(&mut publisher, COUNT);
    drop(publisher);
    let said = out.after("received=");
    let fields: Vec<u64> = said
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let (received, missed, next) = (fields[0], fields[1], fields[2]);
    assert_eq!(received + missed, COUNT, "{said}");
    assert_eq!(next, COUNT, "the last message is never lost: {said}");
    assert!(
        missed > 0,
        "the subscriber was never slow enough to miss: {said}"
    );
    kid.wait_success(TIMEOUT);
}

/// A publish-subscribe header's u32 field at `at` (`docs/pubsub-layout.md`
/// section 2).
fn header_u32(service: &Segment, at: usize) -> u32 {
    let view = service.map_readonly(..4096).unwrap();
    view.read_pod::<u32>(at).unwrap()
}

/// How many buffers each publisher has (`pool_len`).
fn pool_len(service: &Segment) -> u32 {
    header_u32(service, 48)
}

/// The buffers of publisher 0 that subscriber `slot`'s hold words name
/// (section 3: block `i` at `4096 + i·subscriber_block`, holds from byte
/// 32; a hold is `p·pool_len + b + 1`).
fn held_buffers(service: &Segment, slot: u64) -> Vec<u32> {
    let (max_held, block) = (header_u32(service, 40), header_u32(service, 52));
    let view = service.map_readonly(..).unwrap();
    (0..u64::from(max_held))
        .map(|h| view.read_pod::<u32>((4096 + slot * u64::from(block) + 32 + 4 * h) as usize))
        .map(Result::unwrap)
        .filter(|&word| word != 0 && word <= pool_len(service))
        .map(|word| word - 1)
        .collect()
}

/// The first 4 bytes of publisher 0's buffer `b` (section 4: buffers from
/// `buffers_at = round_up(256 + 32·ring_len, 4096)` of its region, which
/// starts at `publishers_at`).
fn buffer_start(service: &Segment, b: u32) -> [u8; 4] {
    let view = service.map_readonly(..).unwrap();
    let (subscribers, block) = (header_u32(service, 20), header_u32(service, 52));
    let publishers_at = (4096 + u64::from(subscribers) * u64::from(block)).next_multiple_of(4096);
    let buffers_at = (256 + 32 * u64::from(header_u32(service, 44))).next_multiple_of(4096);
    let stride = view.read_pod::<u64>(56).unwrap();
    view.read_pod::<[u8; 4]>((publishers_at + buffers_at + u64::from(b) * stride) as usize)
        .unwrap()
}

/// A subscriber that holds as many samples as it may and stops reading:
/// killed, it must not block the publisher (overflow "block") nor keep its
/// held buffers, beyond the liveness interval: the buffers its hold words
/// name are reused (read through a raw view: the pool is sized so that
/// pinned buffers would never run it dry, so only their bytes tell).
#[test]
fn a_killed_subscriber_neither_blocks_the_publisher_nor_pins_buffers() {
    const TEST: &str = "a_killed_subscriber_neither_blocks_the_publisher_nor_pins_buffers";
    if role().is_some() {
        let sub = Subscriber::open_timeout(&env("MST_NAME"), TIMEOUT).unwrap();
        println!("ready=1");
        let held: Vec<_> = (0..2).map(|_| sub.recv_timeout(TIMEOUT).unwrap()).collect();
        println!("slot={}", sub.slot());
        println!("holding={}", held.len());
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let name = unique_name("ps-kill-sub");
    let config = ServiceConfig::new()
        .max_message_len(64)
        .depth(4)
        .max_held(2)
        .overflow(Overflow::Block);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let mut detections = Detections::new("a killed subscriber", LIVENESS_INTERVAL);
    let mut pick = rng(0x5ab5);
    for round in 0..9u64 {
        let (kid, mut out) = spawn(TEST, "holder", &[("MST_NAME", name.clone())]);
        out.after("ready=");
        // Two messages for it to hold, then fill its queue.
        for _ in 0..2 {
            publisher.publish_copy_timeout(b"held", TIMEOUT).unwrap();
        }
        let slot: u64 = out.after("slot=").parse().unwrap();
        out.after("holding=");
        for _ in 0..4 {
            publisher.publish_copy_timeout(b"queued", TIMEOUT).unwrap();
        }
        // Its queue is full: the publisher waits for it.
        assert!(
            !publisher.try_publish_copy(b"full").unwrap(),
            "round {round}"
        );
        // Killed from another thread while the publisher waits, at a
        // random moment of its park slices and liveness checks.
        let delay = Duration::from_micros(pick() % (2 * LIVENESS_INTERVAL.as_micros() as u64));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            kid.kill()
        });
        publisher
            .publish_copy_timeout(b"free again", TIMEOUT)
            .unwrap_or_else(|e| panic!("round {round}: still blocked after the kill: {e}"));
        let noticed = Instant::now();
        let killed = killer.join().unwrap();
        detections.record(round, noticed.saturating_duration_since(killed));
        // Its held buffers come back too: the buffers its hold words name
        // (read before the next child takes the slot and clears them) are
        // reused once the pool has gone round twice.
        let pinned = held_buffers(publisher.segment(), slot);
        assert_eq!(pinned.len(), 2, "round {round}: its hold words {pinned:?}");
        for _ in 0..2 * pool_len(publisher.segment()) {
            publisher.publish_copy(b"more").unwrap();
        }
        for &b in &pinned {
            assert_eq!(
                buffer_start(publisher.segment(), b),
                *b"more",
                "round {round}: buffer {b}, held by the killed subscriber, was never reused"
            );
        }
    }
    // Promised: within the liveness interval.
    detections.check();
}

/// Publisher children killed at random points: the subscriber (this
/// process) gets each publisher's messages as a gap-free, in-order prefix
/// with intact contents, then `Disconnected`; the next publisher continues
/// the sequence.
#[test]
fn killed_publishers_leave_a_clean_prefix_and_the_next_continues() {
    const TEST: &str = "killed_publishers_leave_a_clean_prefix_and_the_next_continues";
    if role().is_some() {
        let mut publisher = Publisher::open(&env("MST_NAME")).unwrap();
        println!("first={}", publisher.next_sequence());
        let mut buf = Vec::new();
        loop {
            let seq = publisher.next_sequence();
            message(seq, MAX, &mut buf);
            let mut loan = publisher.loan(buf.len()).unwrap();
            loan.copy_from_slice(&buf);
            loan.publish();
        }
    }
    let name = unique_name("ps-kill-pub");
    let config = ServiceConfig::new()
        .max_message_len(MAX as u64)
        .depth(64)
        .overflow(Overflow::Block);
    // The service and its subscriber first; the creator steps aside for
    // the publisher children (the subscriber keeps the service alive).
    let creator = Publisher::create(&name, config).unwrap();
    let sub = Subscriber::open(&name).unwrap();
    drop(creator);
    assert!(matches!(sub.try_recv(), Err(Error::Disconnected { .. })));
    let mut dice = rng(0x5eed ^ u64::from(std::process::id()));
    let mut expect = 0u64;
    let mut buf = Vec::new();
    for round in 0..12u64 {
        let (kid, mut out) = spawn(TEST, "publisher", &[("MST_NAME", name.clone())]);
        let first: u64 = out.after("first=").parse().unwrap();
        assert_eq!(
            first, expect,
            "round {round}: the new publisher does not continue"
        );
        // Receive for a random while, then kill the publisher anywhere.
        let until = Instant::now() + Duration::from_micros(dice() % 20_000);
        while Instant::now() < until {
            let msg = sub.recv_timeout(TIMEOUT).unwrap();
            assert_eq!(msg.sequence(), expect, "round {round}");
            message(expect, MAX, &mut buf);
            assert_eq!(&*msg, &buf[..], "round {round}: message {expect}");
            expect += 1;
        }
        kid.kill();
        let killed_at = Instant::now();
        loop {
            match sub.recv_timeout(TIMEOUT) {
                Ok(msg) => {
                    assert_eq!(msg.sequence(), expect, "round {round}");
                    message(expect, MAX, &mut buf);
                    assert_eq!(&*msg, &buf[..], "round {round}: message {expect}");
                    expect += 1;
                }
                Err(Error::Disconnected { .. }) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        let noticed = killed_at.elapsed();
        assert!(
            noticed < 10 * LIVENESS_INTERVAL,
            "round {round}: Disconnected {noticed:?} after the kill"
        );
    }
}

/// A killed publisher, and a head with nothing behind it in the slot that
/// no publisher holds (a hostile write): a wait set holding the subscriber
/// reports it within the liveness interval, and the subscriber says
/// `Disconnected` once it has the publisher's last message. (Deciding by
/// the heads, the set never reported it and `recv` waited for ever.)
#[test]
fn a_killed_publisher_is_noticed_past_a_head_with_nothing_behind_it() {
    const TEST: &str = "a_killed_publisher_is_noticed_past_a_head_with_nothing_behind_it";
    if role().is_some() {
        let mut publisher = Publisher::open(&env("MST_NAME")).unwrap();
        publisher.publish_copy(b"last words").unwrap();
        println!("slot={}", publisher.slot());
        std::thread::sleep(TIMEOUT);
        return;
    }
    let name = unique_name("ps-head-lie");
    let config = ServiceConfig::new().max_publishers(2);
    let creator = Publisher::create(&name, config).unwrap();
    let sub = Subscriber::open(&name).unwrap();
    let segment = Segment::open(&name).unwrap();
    drop(creator);
    let (kid, mut out) = spawn(TEST, "publisher", &[("MST_NAME", name.clone())]);
    let slot: u64 = out.after("slot=").parse().unwrap();
    write_publisher_head(&segment, 1 - slot, 1 << 40);
    assert_eq!(&*sub.recv_timeout(TIMEOUT).unwrap(), b"last words");
    let mut set = memshare::WaitSet::new().unwrap();
    set.add(&sub).unwrap();
    let killed_at = kid.kill();
    let reported = set.wait_timeout(10 * LIVENESS_INTERVAL).unwrap();
    assert!(
        !reported.is_empty(),
        "the wait set did not report the subscriber within {:?}",
        10 * LIVENESS_INTERVAL
    );
    match sub.try_recv() {
        Err(Error::Disconnected { .. }) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(killed_at.elapsed() < 10 * LIVENESS_INTERVAL);
    drop((set, sub, segment));
    assert!(!in_dev_shm(&name), "{name} left behind");
}

/// A subscriber that writes garbage into its own block (hold words,
/// cursors, counters; not its state and instance, so that the publisher
/// keeps taking it for a live subscriber and reads the garbage) as fast as
/// it can: the publisher and an honest subscriber go on, nothing lost,
/// nothing corrupted, and the samples the honest one holds across
/// publications never change. Under "block" the garbage cursors may hold
/// the publisher back (a live subscriber that is behind does, by policy):
/// then a clean `TimedOut`, and once the scribbler is killed the publisher
/// goes on.
#[test]
fn a_scribbling_subscriber_cannot_hurt_the_others() {
    const TEST: &str = "a_scribbling_subscriber_cannot_hurt_the_others";
    if role().is_some() {
        let sub = Subscriber::open_timeout(&env("MST_NAME"), TIMEOUT).unwrap();
        let segment = Segment::open(&env("MST_NAME")).unwrap();
        // Its own block only: what the protocol gives it.
        let block_len = u64::from(
            segment
                .map_readonly(..4096)
                .unwrap()
                .atomic_u32(52)
                .unwrap()
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let at = 4096 + u64::from(sub.slot()) * block_len;
        let view = segment.map(at..at + block_len).unwrap();
        println!("ready=1");
        let mut next = rng(7);
        let mut stdin = std::io::stdin();
        let mut stop = [0u8; 1];
        // Scribble until the parent closes our standard input.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = stdin.read(&mut stop);
            let _ = tx.send(());
        });
        // From byte 16: missed, received, the hold words and the cursors.
        while rx.try_recv().is_err() {
            // Any value; or a small one, which as a hold word names a real
            // buffer and as a cursor's low half one behind the head; or 0.
            let word = match next() % 3 {
                0 => next(),
                1 => next() % 64,
                _ => 0,
            };
            let off = 16 + (next() % ((block_len - 16) / 4)) as usize * 4;
            view.atomic_u32(off)
                .unwrap()
                .store(word as u32, std::sync::atomic::Ordering::Relaxed);
        }
        return;
    }
    let name = unique_name("ps-scribble");
    for overflow in [Overflow::DropOldest, Overflow::Block] {
        let config = ServiceConfig::new()
            .max_message_len(MAX as u64)
            .depth(8)
            .max_held(HELD as u32 + 1)
            .overflow(overflow);
        let mut publisher = Publisher::create(&name, config).unwrap();
        let honest = Subscriber::open(&name).unwrap();
        // Samples the honest subscriber holds while the publisher goes on.
        let mut held = std::collections::VecDeque::new();
        let mut cmd = child(TEST, "scribbler");
        cmd.stdout(Stdio::piped())
            .stdin(Stdio::piped())
            .env("MST_NAME", &name);
        let mut kid = Reaped::spawn(cmd);
        let out = kid.0.as_mut().unwrap().stdout.take().unwrap();
        let mut out = Output::new(out);
        out.after("ready=");
        let mut buf = Vec::new();
        let mut seq = 0u64;
        let mut publish_and_check = |publisher: &mut Publisher, seq: u64| -> bool {
            message(seq, MAX, &mut buf);
            match publisher.publish_copy_timeout(&buf, Duration::from_secs(2)) {
                Ok(()) => {}
                // Under "block" a live subscriber whose cursor says it is
                // behind holds the publisher back, as a slow one may: that
                // is the policy, not harm. It must be a clean timeout.
                Err(Error::TimedOut { .. }) if overflow == Overflow::Block => return false,
                Err(e) => panic!("{overflow:?}: publisher: {e}"),
            }
            let msg = honest.recv_timeout(TIMEOUT).unwrap();
            assert_eq!(msg.sequence(), seq, "{overflow:?}");
            assert_eq!(&*msg, &buf[..], "{overflow:?}: message {seq}");
            // Every 20th kept, for 60 messages: long after the publisher
            // overwrote its ring entry (depth 8) and would reuse it but for
            // the hold.
            if seq % 20 == 0 {
                held.push_back(msg);
                if held.len() > HELD {
                    held.pop_front();
                }
            }
            for sample in &held {
                message(sample.sequence(), MAX, &mut buf);
                assert_eq!(
                    &**sample,
                    &buf[..],
                    "{overflow:?}: held sample {} changed by message {seq}",
                    sample.sequence()
                );
            }
            true
        };
        while seq < 20_000 && publish_and_check(&mut publisher, seq) {
            seq += 1;
        }
        if seq < 20_000 {
            // Held back under "block": the scribbler killed, the publisher
            // goes on within the liveness interval's look.
            assert_eq!(overflow, Overflow::Block);
            kid.kill();
            for _ in 0..1_000 {
                assert!(
                    publish_and_check(&mut publisher, seq),
                    "{overflow:?}: still held back after the scribbler was killed"
                );
                seq += 1;
            }
        } else {
            drop(kid.0.as_mut().unwrap().stdin.take());
            kid.wait_success(TIMEOUT);
        }
        drop(held);
        assert_eq!(honest.missed(), 0, "{overflow:?}");
        println!("{overflow:?}: {seq} messages");
    }
}
