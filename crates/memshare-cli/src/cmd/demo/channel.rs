//! Step 4: a channel each way between parent and child (`channel::Sender`
//! and `channel::Receiver` in segments the child inherits), a few messages
//! echoed, and a small timed ping-pong.

use std::time::{Duration, Instant};

use memshare::channel::{Receiver, Sender};
use memshare::{CommandExt, Error, Segment};

use super::out::{Out, WINDOWS};
use super::peer::{self, Peer, TIMEOUT};
use crate::fail::Failure;

/// The ring size of each channel.
const CAPACITY: usize = 64 * 1024;
/// The messages the child prints and echoes.
const MESSAGES: [&str; 3] = [
    "hello",
    "through shared memory",
    "no system call while both run",
];
/// How many round trips are timed.
const ROUND_TRIPS: usize = 10_000;
/// The timing stops early after this long (a machine too busy for the two
/// processes to run at once), so that the demo stays quick.
const TIME_BUDGET: Duration = Duration::from_secs(1);
/// The child's first message: it is attached.
const READY: &str = "ready";
/// Announces the timed round trips: the child echoes them without a word.
const QUIET: &str = "quiet";

pub(super) fn parent(out: &Out) -> Result<(), Failure> {
    let mut ping = Sender::create(CAPACITY)?;
    let mut pong = Receiver::create(CAPACITY)?;
    out.say(format!(
        "Sender::create({CAPACITY}) \"ping\" and Receiver::create({CAPACITY}) \"pong\": \
         each a channel in an anonymous segment of {} bytes (1 KiB header, then the ring)",
        ping.segment().len()
    ));
    out.os(if WINDOWS {
        "CreateFileMappingW, MapViewOfFile; CreateMutexW(\"Local\\memshare-lock.<section>.<byte>\"), \
         taken by this process's lock thread: abandoned by the kernel when this end dies; \
         CreateEventW(\"Local\\memshare-wake.<section>.<offset>.0\"): the event this end sleeps on"
    } else {
        "memfd_create, ftruncate, F_ADD_SEALS, mmap; then open(\"/proc/self/fd/N\", O_RDWR) and \
         fcntl(F_OFD_SETLK) on one byte: a lock the kernel drops when this end dies"
    });
    out.say("start `memshare demo-peer 4`, sharing both segments (keys \"ping\", \"pong\")");
    let mut cmd = peer::command(4)?;
    cmd.share("ping", ping.segment())
        .share("pong", pong.segment());
    let mut child = Peer::spawn(&mut cmd)?;
    drop(cmd);

    // The child says it is attached before the first message, so that its
    // lines come first. Until it attaches, the channel cannot tell whether
    // it died: ask the process.
    let deadline = Instant::now() + TIMEOUT;
    let ready = loop {
        match pong.recv_timeout(Duration::from_millis(10)) {
            Ok(message) => break message.to_vec(),
            Err(Error::TimedOut { .. }) if Instant::now() < deadline => child.check_running()?,
            Err(e) => return Err(child.explain(e.into())),
        }
    };
    if ready != READY.as_bytes() {
        return Err(Failure::other("the child did not say it was ready"));
    }

    let mut talk = || -> Result<Vec<Duration>, Failure> {
        for message in MESSAGES {
            out.say(format!("send {message:?}"));
            ping.send(message.as_bytes())?;
            let echo = pong.recv_timeout(TIMEOUT)?;
            if *echo != *message.as_bytes() {
                return Err(Failure::other(format!(
                    "sent {message:?}, the echo was {:?}",
                    String::from_utf8_lossy(&echo)
                )));
            }
            out.say(format!(
                "recv → {:?}, read in place in the ring",
                String::from_utf8_lossy(&echo)
            ));
        }
        out.say(format!(
            "now {ROUND_TRIPS} round trips of 8 bytes (at most {} s), timed with a monotonic clock",
            TIME_BUDGET.as_secs()
        ));
        ping.send(QUIET.as_bytes())?;
        pong.recv_timeout(TIMEOUT)?;
        let mut round_trips = Vec::with_capacity(ROUND_TRIPS);
        let began = Instant::now();
        for i in 0..ROUND_TRIPS as u64 {
            if began.elapsed() > TIME_BUDGET {
                break;
            }
            let start = Instant::now();
            ping.send(&i.to_le_bytes())?;
            let echo = pong.recv_timeout(TIMEOUT)?;
            round_trips.push(start.elapsed());
            if *echo != i.to_le_bytes() {
                return Err(Failure::other(format!("round trip {i}: wrong echo")));
            }
        }
        Ok(round_trips)
    };
    let mut round_trips = talk().map_err(|e| child.explain(e))?;

    out.say("drop both ends: the child sees Disconnected");
    drop(ping);
    drop(pong);
    child.wait()?;

    round_trips.sort_unstable();
    let median = round_trips[round_trips.len() / 2];
    let p99 = round_trips[round_trips.len() * 99 / 100];
    out.say(format!(
        "median one-way latency {} (round trip {}, 99th percentile {}, {} round trips)",
        micros(median / 2),
        micros(median),
        micros(p99),
        round_trips.len()
    ));
    if round_trips.len() < ROUND_TRIPS {
        out.note(format!(
            "stopped after {} s: the machine is busy, and the two processes rarely run at once",
            TIME_BUDGET.as_secs()
        ));
    }
    out.note("a teaser: run `memshare bench` for real numbers");
    Ok(())
}

pub(super) fn child(out: &Out) -> Result<(), Failure> {
    let mut ping = Receiver::attach(&Segment::inherited("ping")?)?;
    let mut pong = Sender::attach(&Segment::inherited("pong")?)?;
    out.say(format!(
        "pid {}: Segment::inherited(\"ping\") and (\"pong\"), Receiver::attach and Sender::attach",
        std::process::id()
    ));
    out.os(if WINDOWS {
        "the checks of step 1, MapViewOfFile of each, our end's mutex and event; waiting: spin, \
         then WaitForSingleObject on our event, which the other end sets (SetEvent) only when \
         our waiting flag says we sleep"
    } else {
        "the checks of step 1, mmap of each, open(\"/proc/self/fd/N\", O_RDWR) + \
         fcntl(F_OFD_SETLK) on our end's byte; waiting: spin, then futex(FUTEX_WAIT)"
    });
    pong.send(READY.as_bytes())?;
    let mut quiet = false;
    loop {
        let message = match ping.recv() {
            Ok(message) => message,
            Err(Error::Disconnected { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        if !quiet {
            if *message == *QUIET.as_bytes() {
                quiet = true;
                out.say(format!(
                    "{QUIET:?}: echoing the next messages without a word"
                ));
            } else {
                out.say(format!(
                    "recv {:?} ({} bytes), send it back",
                    String::from_utf8_lossy(&message),
                    message.len()
                ));
            }
        }
        pong.send(&message)?;
    }
    out.say("recv → Disconnected: the parent's sender is gone; exit");
    out.note(if WINDOWS {
        "a peer that dies is noticed too: its mutex is abandoned (NtQueryMutant, every 20 ms while waiting)"
    } else {
        "a peer that dies is noticed too: its F_OFD_SETLK lock is gone (checked every 20 ms while waiting)"
    });
    Ok(())
}

/// A duration in microseconds, or nanoseconds below one.
fn micros(d: Duration) -> String {
    if d < Duration::from_micros(1) {
        format!("{} ns", d.as_nanos())
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}
