//! Millions of checked messages between two real processes in every wait
//! strategy: no loss, no duplicate, no reordering, every byte checked. In a
//! test binary of its own, so that no other test competes for the CPUs
//! while both processes spin.

mod common;

use std::time::Instant;

use common::chan::{receive_checked, run_sender, spawn_sender, strategy};
use common::{role, TIMEOUT};
use memshare::channel::Receiver;
use memshare::Error;

#[test]
fn millions_of_checked_messages_cross_processes_in_every_wait_strategy() {
    const TEST: &str = "millions_of_checked_messages_cross_processes_in_every_wait_strategy";
    if role().is_some() {
        run_sender(std::env::var("MST_COUNT").unwrap().parse().unwrap());
        return;
    }
    for (wait, count) in [
        ("spin", 1_000_000),
        ("spin-then-park", 1_000_000),
        ("park", 1_000_000),
    ] {
        let mut rx = Receiver::create(1 << 16).unwrap();
        rx.set_wait_strategy(strategy(wait));
        let sender = spawn_sender(TEST, rx.segment(), wait, count);
        let mut seq = 0;
        let started = Instant::now();
        let end = receive_checked(&mut rx, &mut seq, count);
        assert!(end.is_none(), "{wait}: {end:?} after {seq} messages");
        sender.wait_success(TIMEOUT);
        assert!(
            matches!(rx.recv(), Err(Error::Disconnected { .. })),
            "{wait}: no disconnect"
        );
        eprintln!("{wait}: {count} messages in {:?}", started.elapsed());
    }
}
