//! Channels between real processes: stress in every wait strategy, SIGKILL
//! of either side at random points, and a hostile process scribbling over
//! the shared memory. The test binary re-runs itself as the peer.
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use common::chan::{receive_checked, rng, run_sender, spawn_sender, strategy};
use common::{child, role, Reaped, TIMEOUT};
use memshare::channel::{Receiver, Sender};
use memshare::{CommandExt, Error, Segment};

#[test]
fn a_killed_sender_loses_nothing_committed_and_is_noticed_within_100ms() {
    const TEST: &str = "a_killed_sender_loses_nothing_committed_and_is_noticed_within_100ms";
    if role().is_some() {
        run_sender(0);
        return;
    }
    let mut worst = Duration::ZERO;
    let mut pick = rng(0x5eed);
    for round in 0..20 {
        let wait = ["spin", "spin-then-park", "park"][round % 3];
        let mut rx = Receiver::create(1 << 14).unwrap();
        rx.set_wait_strategy(strategy(wait));
        let sender = spawn_sender(TEST, rx.segment(), wait, 0);
        let pid = sender.pid();
        let delay = Duration::from_micros(pick() % 50_000);
        let state = rx.segment().map_readonly(..64 + 4).unwrap();
        // Kill from another thread while the receiver is busy receiving,
        // once the sender has attached (a process that dies before it
        // attaches was never a sender; the receiver keeps waiting for one).
        let killer = std::thread::spawn(move || {
            common::wait_for(TIMEOUT, || {
                (state
                    .atomic_u32(64)
                    .unwrap()
                    .load(std::sync::atomic::Ordering::Acquire)
                    == 1)
                    .then_some(())
            });
            std::thread::sleep(delay);
            sender.kill(); // SIGKILL, then reaped
            Instant::now()
        });
        let mut seq = 0;
        let end = receive_checked(&mut rx, &mut seq, u64::MAX);
        let noticed = Instant::now();
        let reaped = killer.join().unwrap();
        assert!(
            matches!(end, Some(Error::Disconnected { .. })),
            "round {round} (pid {pid}): {end:?}"
        );
        let late = noticed.saturating_duration_since(reaped);
        worst = worst.max(late);
        assert!(
            late < Duration::from_millis(100),
            "round {round} ({wait}): noticed {late:?} after the kill"
        );
    }
    eprintln!("worst detection after reaping: {worst:?}");
}

#[test]
fn a_parked_receiver_notices_a_killed_sender_within_100ms() {
    const TEST: &str = "a_parked_receiver_notices_a_killed_sender_within_100ms";
    if role().is_some() {
        run_sender(10);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    for wait in ["park", "spin-then-park", "spin"] {
        let mut rx = Receiver::create(1 << 16).unwrap();
        rx.set_wait_strategy(strategy(wait));
        let sender = spawn_sender(TEST, rx.segment(), wait, 10);
        let mut seq = 0;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            sender.kill();
            Instant::now()
        });
        let end = receive_checked(&mut rx, &mut seq, u64::MAX);
        let noticed = Instant::now();
        let reaped = killer.join().unwrap();
        assert_eq!(seq, 10, "{wait}");
        assert!(
            matches!(end, Some(Error::Disconnected { .. })),
            "{wait}: {end:?}"
        );
        let late = noticed.saturating_duration_since(reaped);
        assert!(
            late < Duration::from_millis(100),
            "{wait}: noticed {late:?} after the kill"
        );
    }
}

#[test]
fn a_killed_receiver_is_noticed_by_a_blocked_sender_within_100ms() {
    const TEST: &str = "a_killed_receiver_is_noticed_by_a_blocked_sender_within_100ms";
    if role().is_some() {
        let segment = Segment::inherited("chan").unwrap();
        let mut rx = Receiver::attach(&segment).unwrap();
        // Take a few messages, then stop reading: the ring fills.
        for _ in 0..3 {
            drop(rx.recv().unwrap());
        }
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    for wait in ["park", "spin-then-park", "spin"] {
        let mut tx = Sender::create(1 << 12).unwrap();
        tx.set_wait_strategy(strategy(wait));
        let mut cmd = child(TEST, "receiver");
        cmd.share("chan", tx.segment());
        let receiver = Reaped::spawn(cmd);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            receiver.kill();
            Instant::now()
        });
        let end = loop {
            if let Err(e) = tx.send(&[7; 100]) {
                break e;
            }
        };
        let noticed = Instant::now();
        let reaped = killer.join().unwrap();
        assert!(matches!(end, Error::Disconnected { .. }), "{wait}: {end:?}");
        let late = noticed.saturating_duration_since(reaped);
        assert!(
            late < Duration::from_millis(100),
            "{wait}: noticed {late:?} after the kill"
        );
    }
}

/// Writes random words at random offsets of the inherited segment "chan"
/// (header and ring) until killed.
fn scribble() {
    let segment = Segment::inherited("chan").unwrap();
    let view = segment.map(..).unwrap();
    let mut next = rng(std::process::id() as u64);
    let len = view.len();
    loop {
        let r = next();
        // Mostly the header's live words, sometimes anywhere.
        let offset = if r % 2 == 0 {
            [64, 68, 128, 256, 260, 384, 512, 516][(r >> 8) as usize % 8]
        } else {
            ((r >> 8) as usize % len) & !7
        };
        let value = match next() % 4 {
            0 => 0,
            1 => u64::MAX,
            2 => next() % 4096,
            _ => next(),
        };
        if offset + 8 <= len {
            view.write_at(offset, &value.to_le_bytes()).unwrap();
        }
        if r % 64 == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

#[test]
fn a_scribbling_process_makes_the_receiver_fail_cleanly_never_crash_or_hang() {
    const TEST: &str = "a_scribbling_process_makes_the_receiver_fail_cleanly_never_crash_or_hang";
    match role().as_deref() {
        Some("sender") => {
            // The sender meets corruption too; it stops at its first error.
            let segment = Segment::inherited("chan").unwrap();
            let Ok(mut tx) = Sender::attach(&segment) else {
                return;
            };
            let mut seq = 0u64;
            while tx
                .send_timeout(&seq.to_le_bytes(), Duration::from_millis(50))
                .is_ok()
                || seq < 1_000_000
            {
                seq += 1;
            }
            return;
        }
        Some("scribbler") => scribble(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let mut rx = Receiver::create(1 << 12).unwrap();
    let mut cmd = child(TEST, "sender");
    cmd.share("chan", rx.segment());
    let sender = Reaped::spawn(cmd);
    let mut cmd = child(TEST, "scribbler");
    cmd.share("chan", rx.segment());
    let scribbler = Reaped::spawn(cmd);

    let max = rx.capacity() - 8;
    let (mut ok, mut corrupted, mut other) = (0u64, 0u64, 0u64);
    let mut buf = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let call = Instant::now();
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(msg) => {
                assert!(msg.len() <= max, "a message longer than the ring");
                buf.clear();
                buf.extend_from_slice(&msg);
                ok += 1;
            }
            Err(Error::Corrupted { .. }) => corrupted += 1,
            Err(Error::TimedOut { .. } | Error::Disconnected { .. }) => other += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
        assert!(
            call.elapsed() < Duration::from_secs(1),
            "a receive took {:?}",
            call.elapsed()
        );
    }
    scribbler.kill();
    sender.kill();
    eprintln!("scribbled: {ok} messages, {corrupted} corrupted, {other} timeouts/disconnects");
    assert!(
        corrupted > 0,
        "the scribbler never caused a detected corruption"
    );
}

#[test]
fn a_scribbling_receiver_makes_the_sender_fail_cleanly() {
    const TEST: &str = "a_scribbling_receiver_makes_the_sender_fail_cleanly";
    if role().is_some() {
        scribble();
    }
    let mut tx = Sender::create(1 << 12).unwrap();
    let _rx_slot = Receiver::attach(tx.segment()).unwrap(); // attached, never reads
    let mut cmd = child(TEST, "scribbler");
    cmd.share("chan", tx.segment());
    let scribbler = Reaped::spawn(cmd);
    let until = Instant::now() + Duration::from_secs(1);
    let mut corrupted = 0u64;
    while Instant::now() < until {
        let call = Instant::now();
        match tx.send_timeout(&[1; 300], Duration::from_millis(20)) {
            Ok(()) => {}
            Err(Error::Corrupted { .. }) => corrupted += 1,
            Err(Error::TimedOut { .. } | Error::Disconnected { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
        assert!(call.elapsed() < Duration::from_secs(1));
    }
    scribbler.kill();
    // The scribbler wrote the receiver's position: the sender saw it.
    assert!(corrupted > 0, "no corruption detected");
}
