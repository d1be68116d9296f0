//! Channels between real processes: stress in every wait strategy, SIGKILL
//! of either side at random points, and a hostile process scribbling over
//! the shared memory. The test binary re-runs itself as the peer.

mod common;

// What only the Linux tests (ptrace) use.
#[cfg(target_os = "linux")]
use common::read_after;
#[cfg(target_os = "linux")]
use memshare::channel::WaitStrategy;
#[cfg(target_os = "linux")]
use std::io::{Read, Write};
#[cfg(target_os = "linux")]
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::chan::{
    receive_checked, rng, run_sender, send_messages, spawn_sender, strategy, HeaderWatch,
};
use common::{child, role, wait_for, Detections, Reaped, TIMEOUT};
use memshare::channel::{Receiver, Sender, LIVENESS_INTERVAL};
use memshare::{CommandExt, Error, Segment};

#[test]
fn a_killed_sender_loses_nothing_committed_and_is_noticed_in_the_liveness_interval_at_the_median() {
    const TEST: &str =
        "a_killed_sender_loses_nothing_committed_and_is_noticed_in_the_liveness_interval_at_the_median";
    if role().is_some() {
        run_sender(0);
        return;
    }
    let mut detections = Detections::new("a killed sender", LIVENESS_INTERVAL);
    let mut pick = rng(0x5eed);
    for round in 0..20 {
        let wait = ["spin", "spin-then-park", "park"][round % 3];
        let mut rx = Receiver::create(1 << 14).unwrap();
        rx.set_wait_strategy(strategy(wait));
        let sender = spawn_sender(TEST, rx.segment(), wait, 0);
        let pid = sender.pid();
        let delay = Duration::from_micros(pick() % 50_000);
        let watch = HeaderWatch::new(rx.segment());
        // Kill from another thread while the receiver is busy receiving,
        // once the sender has attached (a process that dies before it
        // attaches was never a sender; the receiver keeps waiting for one).
        let killer = std::thread::spawn(move || {
            wait_for(TIMEOUT, || watch.sender_attached().then_some(()));
            std::thread::sleep(delay);
            let killed = sender.kill(); // SIGKILL, then reaped
            (killed, watch)
        });
        let mut seq = 0;
        let end = receive_checked(&mut rx, &mut seq, u64::MAX);
        let noticed = Instant::now();
        let (killed, watch) = killer.join().unwrap();
        assert!(
            matches!(end, Some(Error::Disconnected { .. })),
            "round {round} (pid {pid}): {end:?}"
        );
        // Every message the sender committed was received: the receiver's
        // position is the sender's last one.
        let (committed, received) = (watch.write_pos(), watch.read_pos());
        assert_eq!(
            received, committed,
            "round {round} ({wait}): Disconnected after {seq} messages, at byte {received} of the {committed} committed"
        );
        detections.record(
            format!("{round} ({wait})"),
            noticed.saturating_duration_since(killed),
        );
    }
    detections.check();
}

#[test]
fn a_parked_receiver_notices_a_killed_sender_within_the_liveness_interval_at_the_median() {
    const TEST: &str =
        "a_parked_receiver_notices_a_killed_sender_within_the_liveness_interval_at_the_median";
    if role().is_some() {
        // Ten messages, then nothing: attached (the sender is not dropped)
        // until killed.
        let segment = Segment::inherited("chan").unwrap();
        let mut tx = Sender::attach(&segment).unwrap();
        send_messages(&mut tx, 0..10);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let mut detections = Detections::new("a parked receiver", LIVENESS_INTERVAL);
    let mut pick = rng(0xdead);
    for round in 0..12 {
        let wait = ["park", "spin-then-park", "spin"][round % 3];
        let mut rx = Receiver::create(1 << 16).unwrap();
        rx.set_wait_strategy(strategy(wait));
        let sender = spawn_sender(TEST, rx.segment(), wait, 10);
        // All ten: the sender has nothing more to send, and stays attached.
        let mut seq = 0;
        let end = receive_checked(&mut rx, &mut seq, 10);
        assert!(
            end.is_none(),
            "round {round} ({wait}): {end:?} after {seq} messages"
        );
        assert!(HeaderWatch::new(rx.segment()).sender_attached());
        // The receiver waits (parks) for more; the kill lands anywhere in
        // its park slices and liveness checks.
        let delay = Duration::from_micros(pick() % (5 * LIVENESS_INTERVAL.as_micros() as u64));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            sender.kill()
        });
        let end = rx.recv_timeout(TIMEOUT).map(drop);
        let noticed = Instant::now();
        let killed = killer.join().unwrap();
        assert!(
            matches!(end, Err(Error::Disconnected { .. })),
            "round {round} ({wait}): {end:?}"
        );
        // The killed sender's slot is free: its lock died with it (an
        // abandoned mutex on Windows).
        drop(Sender::attach(rx.segment()).unwrap());
        detections.record(
            format!("{round} ({wait})"),
            noticed.saturating_duration_since(killed),
        );
    }
    detections.check();
}

#[test]
fn a_killed_receiver_is_noticed_by_a_blocked_sender_within_the_liveness_interval_at_the_median() {
    const TEST: &str =
        "a_killed_receiver_is_noticed_by_a_blocked_sender_within_the_liveness_interval_at_the_median";
    /// The ring bytes one message of 100 bytes takes (8-byte header, padded to 8).
    const FRAME: u64 = 112;
    if role().is_some() {
        let segment = Segment::inherited("chan").unwrap();
        let mut rx = Receiver::attach(&segment).unwrap();
        // Take a few messages, then stop reading: the ring fills.
        for _ in 0..3 {
            drop(rx.recv_timeout(TIMEOUT).unwrap());
        }
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let mut detections = Detections::new("a blocked sender", LIVENESS_INTERVAL);
    let mut pick = rng(0xbeef);
    for round in 0..12 {
        let wait = ["park", "spin-then-park", "spin"][round % 3];
        let mut tx = Sender::create(1 << 12).unwrap();
        tx.set_wait_strategy(strategy(wait));
        let watch = HeaderWatch::new(tx.segment());
        let mut cmd = child(TEST, "receiver");
        cmd.share("chan", tx.segment());
        let receiver = Reaped::spawn(cmd);
        // Until the receiver has taken its three messages, then until the
        // ring is full: from now on the sender can only wait.
        while watch.read_pos() < 3 * FRAME {
            tx.send_timeout(&[7; 100], TIMEOUT).unwrap();
        }
        while tx.try_send(&[7; 100]).unwrap() {}
        let delay = Duration::from_micros(pick() % (5 * LIVENESS_INTERVAL.as_micros() as u64));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            receiver.kill()
        });
        let end = tx.send_timeout(&[7; 100], TIMEOUT);
        let noticed = Instant::now();
        let killed = killer.join().unwrap();
        assert!(
            matches!(end, Err(Error::Disconnected { .. })),
            "round {round} ({wait}): {end:?}"
        );
        detections.record(
            format!("{round} ({wait})"),
            noticed.saturating_duration_since(killed),
        );
    }
    detections.check();
}

/// Just enough ptrace to stop a thread of a child at the entry of a
/// chosen system call, and let it go on later.
#[cfg(target_os = "linux")]
mod trace {
    use std::ffi::c_void;
    use std::time::Instant;

    /// `struct ptrace_syscall_info` (linux/ptrace.h), as far as a syscall
    /// entry goes, with room for the rest.
    #[repr(C)]
    #[derive(Default)]
    struct SyscallInfo {
        op: u8,
        reserved: u8,
        flags: u16,
        arch: u32,
        instruction_pointer: u64,
        stack_pointer: u64,
        nr: u64,
        args: [u64; 6],
        rest: [u64; 4],
    }

    const SYSCALL_INFO_ENTRY: u8 = 1;

    /// A thread seized with `PTRACE_SEIZE`; detached when dropped.
    pub struct Traced {
        tid: libc::pid_t,
    }

    fn check(what: &str, r: libc::c_long) {
        assert!(
            r != -1,
            "ptrace({what}): {}",
            std::io::Error::last_os_error()
        );
    }

    impl Traced {
        /// Seizes thread `tid` (of a child of this process), without
        /// stopping it.
        pub fn seize(tid: libc::pid_t) -> Traced {
            // SAFETY: PTRACE_SEIZE reads no memory of ours; the options
            // travel in the data argument.
            let r = unsafe {
                libc::ptrace(
                    libc::PTRACE_SEIZE,
                    tid,
                    std::ptr::null_mut::<c_void>(),
                    libc::PTRACE_O_TRACESYSGOOD as usize as *mut c_void,
                )
            };
            check("PTRACE_SEIZE", r);
            Traced { tid }
        }

        /// Resumes the stopped thread with `request`, delivering `signal`.
        fn resume(&self, request: libc::c_uint, signal: libc::c_int) {
            // SAFETY: these requests read no memory of ours; the signal
            // travels in the data argument.
            let r = unsafe {
                libc::ptrace(
                    request,
                    self.tid,
                    std::ptr::null_mut::<c_void>(),
                    signal as usize as *mut c_void,
                )
            };
            check("resume", r);
        }

        /// Waits for the thread's next stop; returns the wait status.
        fn next_stop(&self) -> libc::c_int {
            let mut status = 0;
            // SAFETY: `status` is a valid int for waitpid to write.
            let r = unsafe { libc::waitpid(self.tid, &mut status, libc::__WALL) };
            assert_eq!(r, self.tid, "waitpid: {}", std::io::Error::last_os_error());
            assert!(
                libc::WIFSTOPPED(status),
                "the traced thread ended: status {status:#x}"
            );
            status
        }

        /// Returns once the thread is stopped at the entry of a system call
        /// `nr` whose argument `arg` is `value` (before the kernel runs it).
        pub fn stop_at_syscall(&self, nr: libc::c_long, arg: usize, value: u64, deadline: Instant) {
            // SAFETY: PTRACE_INTERRUPT reads no memory of ours.
            let r = unsafe {
                libc::ptrace(
                    libc::PTRACE_INTERRUPT,
                    self.tid,
                    std::ptr::null_mut::<c_void>(),
                    std::ptr::null_mut::<c_void>(),
                )
            };
            check("PTRACE_INTERRUPT", r);
            let mut status = self.next_stop();
            loop {
                assert!(
                    Instant::now() < deadline,
                    "the traced thread made no such system call in time"
                );
                let stop = (status >> 8) & 0xffff;
                // A syscall stop, or an event stop (the interrupt): no
                // signal to pass on. Otherwise the stop is the delivery of
                // a signal, which goes on to the thread.
                let signal = if stop == (libc::SIGTRAP | 0x80) || status >> 16 != 0 {
                    0
                } else {
                    libc::WSTOPSIG(status)
                };
                if stop == (libc::SIGTRAP | 0x80) {
                    let mut info = SyscallInfo::default();
                    // SAFETY: the kernel writes at most `size_of` bytes
                    // (the size it is given) into `info`.
                    let r = unsafe {
                        libc::ptrace(
                            libc::PTRACE_GET_SYSCALL_INFO,
                            self.tid,
                            std::mem::size_of::<SyscallInfo>() as *mut c_void,
                            &mut info as *mut SyscallInfo as *mut c_void,
                        )
                    };
                    check("PTRACE_GET_SYSCALL_INFO", r);
                    if info.op == SYSCALL_INFO_ENTRY
                        && info.nr == nr as u64
                        && info.args[arg] == value
                    {
                        return;
                    }
                }
                self.resume(libc::PTRACE_SYSCALL, signal);
                status = self.next_stop();
            }
        }
    }

    impl Drop for Traced {
        fn drop(&mut self) {
            // SAFETY: PTRACE_DETACH reads no memory of ours; the thread
            // goes on where it stopped.
            unsafe {
                libc::ptrace(
                    libc::PTRACE_DETACH,
                    self.tid,
                    std::ptr::null_mut::<c_void>(),
                    std::ptr::null_mut::<c_void>(),
                );
            }
        }
    }
}

/// The race that the receiver's last look guards against, made to happen:
/// the receiver has found the ring empty and is about to ask whether the
/// sender still lives (`F_OFD_GETLK` on its endpoint lock); it is stopped
/// there (ptrace) while the sender commits more messages and is killed.
/// Told the sender is gone, the receiver must still get those messages
/// before `Disconnected`.
#[cfg(target_os = "linux")]
#[test]
fn a_sender_killed_while_the_receiver_checks_on_it_loses_nothing_committed() {
    const TEST: &str = "a_sender_killed_while_the_receiver_checks_on_it_loses_nothing_committed";
    const FIRST: u64 = 10;
    const ALL: u64 = 15;
    match role().as_deref() {
        Some("receiver") => {
            let segment = Segment::inherited("chan").unwrap();
            let mut rx = Receiver::attach(&segment).unwrap();
            rx.set_wait_strategy(WaitStrategy::Park);
            println!("tid={}", rustix::thread::gettid().as_raw_nonzero());
            let mut seq = 0;
            let end = receive_checked(&mut rx, &mut seq, u64::MAX);
            assert!(matches!(end, Some(Error::Disconnected { .. })), "{end:?}");
            assert_eq!(
                seq, ALL,
                "the receiver was told Disconnected after {seq} of the {ALL} messages committed"
            );
            return;
        }
        Some("sender") => {
            let segment = Segment::inherited("chan").unwrap();
            let mut tx = Sender::attach(&segment).unwrap();
            send_messages(&mut tx, 0..FIRST);
            println!("sent-first");
            let mut go = [0u8; 1];
            std::io::stdin().read_exact(&mut go).unwrap();
            send_messages(&mut tx, FIRST..ALL);
            println!("sent-all");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    // The channel, made here and left (detached) to the two children.
    let segment = Receiver::create(1 << 12).unwrap().segment().clone();
    let watch = HeaderWatch::new(&segment);
    let mut cmd = child(TEST, "receiver");
    cmd.share("chan", &segment).stdout(Stdio::piped());
    let mut receiver = Reaped::spawn(cmd);
    let mut receiver_out = receiver.0.as_mut().unwrap().stdout.take().unwrap();
    let tid = read_after(&mut receiver_out, "tid=", TIMEOUT)
        .trim()
        .parse()
        .unwrap();
    wait_for(TIMEOUT, || watch.receiver_attached().then_some(()));
    let mut cmd = child(TEST, "sender");
    cmd.share("chan", &segment)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut sender = Reaped::spawn(cmd);
    let mut sender_out = sender.0.as_mut().unwrap().stdout.take().unwrap();
    read_after(&mut sender_out, "sent-first", TIMEOUT);
    // The receiver has all of the first messages, and waits for more.
    let first = watch.write_pos();
    wait_for(TIMEOUT, || (watch.read_pos() == first).then_some(()));

    let traced = trace::Traced::seize(tid);
    traced.stop_at_syscall(
        libc::SYS_fcntl,
        1,
        libc::F_OFD_GETLK as u64,
        Instant::now() + TIMEOUT,
    );
    // The receiver looked (the ring was empty) and is about to check on
    // the sender: the sender commits the rest, and dies.
    let stdin = sender.0.as_mut().unwrap().stdin.as_mut().unwrap();
    stdin.write_all(b"g").unwrap();
    read_after(&mut sender_out, "sent-all", TIMEOUT);
    let committed = watch.write_pos();
    assert!(committed > first);
    sender.kill();
    drop(traced); // the receiver goes on: the sender is gone
    receiver.wait_success(TIMEOUT);
    assert_eq!(
        watch.read_pos(),
        committed,
        "the receiver stopped short of what the sender committed"
    );
}

/// How late a timed-out wait may return: a few park slices of scheduling
/// noise on a busy 2-vCPU machine or under AddressSanitizer.
const LATE: Duration = Duration::from_nanos(5 * LIVENESS_INTERVAL.as_nanos() as u64);

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
            call.elapsed() < Duration::from_millis(20) + LATE,
            "a receive with a 20 ms timeout took {:?}",
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
        assert!(
            call.elapsed() < Duration::from_millis(20) + LATE,
            "a send with a 20 ms timeout took {:?}",
            call.elapsed()
        );
    }
    scribbler.kill();
    // The scribbler wrote the receiver's position: the sender saw it.
    assert!(corrupted > 0, "no corruption detected");
}

/// Sleeps until `at` (nanoseconds since the Unix epoch, this machine's
/// clock, which both processes read).
fn sleep_until_epoch_ns(at: u128) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    if let Some(left) = at.checked_sub(now) {
        std::thread::sleep(Duration::from_nanos(left as u64));
    }
}

/// The sender child of the test below: at `MST_AT`, `open_or_create`s the
/// channel `MST_NAME`, sends one message, and stays until the receiver has
/// attached (a channel whose last holder leaves goes with its name).
fn open_or_create_sender() {
    let name = common::env("MST_NAME");
    sleep_until_epoch_ns(common::env("MST_AT").parse().unwrap());
    let mut tx = Sender::open_or_create(&name, 4096).unwrap();
    tx.send(format!("met on {name}").as_bytes()).unwrap();
    wait_for(TIMEOUT, || {
        let state = memshare::channel::inspect(tx.segment()).unwrap();
        (state.receiver == memshare::channel::EndpointState::Attached).then_some(())
    });
}

/// Two processes that start at the same moment meet on one channel with
/// `open_or_create`, whichever comes first, with no retry loop of their
/// own: each round the parent's receiver and the child's sender call it at
/// one instant of the wall clock, the parent up to 2 ms earlier or later
/// (four rounds) or at once (24), so either may create it, or both try
/// at once and one finds the name taken, or finds the other's segment not
/// formatted yet, and opens it instead. The message arrives, and the name
/// is gone after.
#[test]
fn open_or_create_in_two_processes_started_at_once_meets_on_one_channel() {
    const TEST: &str = "open_or_create_in_two_processes_started_at_once_meets_on_one_channel";
    if role().is_some() {
        open_or_create_sender();
        return;
    }
    let mut pick = rng(0x00c);
    for round in 0..28 {
        let name = common::unique_name("ooc-procs");
        // A failed round (its child killed holding the channel) leaves no
        // name (after a round that passed, there is none to remove).
        let _sweep = common::OnDrop(|| drop(Segment::remove(&name)));
        let epoch_ns = |d: Duration| {
            (std::time::SystemTime::now() + d)
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        };
        // Far enough ahead for the child to start.
        let at = epoch_ns(Duration::from_millis(150));
        let mut cmd = child(TEST, "sender");
        cmd.env("MST_NAME", &name).env("MST_AT", at.to_string());
        let sender = Reaped::spawn(cmd);
        // A few rounds up to 2 ms apart (either order), then at once
        // (within 20 µs, before the sleeps' own jitter).
        let spread: u64 = if round < 4 { 2_000_000 } else { 20_000 };
        let skew = (pick() % (2 * spread)) as i128 - spread as i128;
        sleep_until_epoch_ns((at as i128 + skew) as u128);
        let mut rx = Receiver::open_or_create(&name, 4096).unwrap();
        let msg = rx.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(&*msg, format!("met on {name}").as_bytes(), "round {round}");
        drop(msg);
        sender.wait_success(TIMEOUT);
        drop(rx);
        assert!(
            !common::in_dev_shm(&name),
            "round {round}: the name is left"
        );
    }
}
