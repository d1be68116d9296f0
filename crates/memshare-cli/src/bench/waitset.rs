//! `channel-wakeup`, `waitset-wakeup` and `async-wakeup`: the time from a
//! send to a parked receiver holding the message, alone (a channel
//! receiver, park-only waiting), through a wait set of 128 members (the
//! receiver and 127 channels that stay quiet), and as a task parked in
//! `recv_async` (woken by the memshare notifier's thread through its
//! waker, on the benchmark's own thread: see `asynch.rs`). The peer sends
//! a message stamped with the monotonic clock just before the send; the
//! benchmark reads the clock when it holds the message, then acknowledges
//! it, and the peer waits [`GAP`] after the acknowledgement before the
//! next: one message at a time (a benchmark held up by the host never
//! finds a queue of old ones), and the receiver is asleep when it comes.
//! (A ping-pong would not measure this: a side that is
//! slow to fall asleep, as a set of 128 is, often finds the answer before
//! it sleeps.) The ratio of the two medians is issue 14's wait-set floor.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use memshare::channel::{Receiver, Sender, WaitStrategy};
use memshare::wait_set::{Token, MAX_MEMBERS};
use memshare::{CommandExt, Segment, WaitSet};

use crate::fail::Failure;

/// From an acknowledgement to the next message: long enough for the
/// receiver to have parked again (that takes microseconds).
const GAP: Duration = Duration::from_micros(200);

/// Messages received before measuring.
const WARMUP: usize = 100;

/// The monotonic clock, in nanoseconds: the same clock in both processes.
fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// One side of a wake-up case: the stamped messages come over `rx` (to
/// the benchmark), the acknowledgements and the word to stop over the
/// other channel; with a set, the benchmark waits through it.
pub struct WakeLink {
    tx: Sender,
    rx: Receiver,
    set: Option<(WaitSet, Token)>,
    /// `async-wakeup`: the waker of the benchmark's thread.
    waker: Option<std::task::Waker>,
    /// The quiet members (each a receiver with its sender, never used).
    _quiet: Vec<(Receiver, Sender)>,
}

impl WakeLink {
    /// The benchmark's side: makes the channels and shares them with `cmd`;
    /// with `set`, a wait set of the receiver and 127 quiet channels; with
    /// `asynchronous`, receives with `recv_async`.
    pub fn parent(
        cmd: &mut std::process::Command,
        set: bool,
        asynchronous: bool,
    ) -> Result<WakeLink, Failure> {
        let tx = Sender::create(4096)?;
        let mut rx = Receiver::create(4096)?;
        rx.set_wait_strategy(WaitStrategy::Park);
        cmd.try_share("ping", tx.segment())?;
        cmd.try_share("pong", rx.segment())?;
        let mut quiet = Vec::new();
        let set = if set {
            let mut set = WaitSet::new()?;
            for _ in 1..MAX_MEMBERS {
                let r = Receiver::create(64)?;
                let s = Sender::attach(r.segment())?;
                set.add(&r)?;
                quiet.push((r, s));
            }
            let token = set.add(&rx)?;
            Some((set, token))
        } else {
            None
        };
        Ok(WakeLink {
            tx,
            rx,
            set,
            waker: asynchronous.then(super::asynch::waker),
            _quiet: quiet,
        })
    }

    /// The peer's side.
    pub fn peer() -> Result<WakeLink, Failure> {
        Ok(WakeLink {
            rx: Receiver::attach(&Segment::inherited("ping")?)?,
            tx: Sender::attach(&Segment::inherited("pong")?)?,
            set: None,
            waker: None,
            _quiet: Vec::new(),
        })
    }

    /// Waits for the next message (parked: alone, or through the set) and
    /// returns how long after its stamp this side held it.
    fn wake_up(&mut self, deadline: Instant) -> Result<Duration, Failure> {
        let late = || Failure::other("bench: the other side stopped sending");
        let stamp = loop {
            if let Some(waker) = &self.waker {
                let msg = super::asynch::block_on_until(waker, self.rx.recv_async(), deadline)
                    .ok_or_else(late)??;
                break stamp_of(&msg)?;
            }
            match &mut self.set {
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let msg = self.rx.recv_timeout(left).map_err(|_| late())?;
                    break stamp_of(&msg)?;
                }
                Some((set, token)) => {
                    if let Some(msg) = self.rx.try_recv()? {
                        break stamp_of(&msg)?;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    let ready = set.wait_timeout(left)?;
                    if ready.is_empty() {
                        return Err(late());
                    }
                    if !ready.contains(*token) {
                        return Err(Failure::other(
                            "bench: a quiet member of the wait set was reported",
                        ));
                    }
                }
            }
        };
        let late = Duration::from_nanos(now_ns().saturating_sub(stamp));
        self.tx.send(b"ack")?;
        Ok(late)
    }

    /// The benchmark's side: the wake-ups of `duration` (after a warm-up),
    /// in nanoseconds.
    pub fn measure(
        &mut self,
        duration: Duration,
        deadline: Instant,
    ) -> Result<Histogram<u64>, Failure> {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .map_err(|e| Failure::other(format!("bench: histogram: {e}")))?;
        for _ in 0..WARMUP {
            self.wake_up(deadline)?;
        }
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let late = self.wake_up(deadline)?;
            hist.saturating_record((late.as_nanos() as u64).max(1));
        }
        Ok(hist)
    }

    /// Tells the peer to stop.
    pub fn stop(&mut self) -> Result<(), Failure> {
        Ok(self.tx.send(b"stop")?)
    }

    /// The peer's side: a stamped message, then (after its
    /// acknowledgement) [`GAP`], until told to stop.
    pub fn send_stamped(&mut self, deadline: Instant) -> Result<(), Failure> {
        loop {
            std::thread::sleep(GAP);
            match self.tx.send(&now_ns().to_le_bytes()) {
                // The benchmark stopped and went meanwhile.
                Err(memshare::Error::Disconnected { .. }) => return Ok(()),
                other => other?,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .rx
                .recv_timeout(left)
                .map_err(|_| Failure::other("bench-peer: never told to stop"))?;
            if *reply == *b"stop" {
                return Ok(());
            }
        }
    }
}

fn stamp_of(msg: &[u8]) -> Result<u64, Failure> {
    let bytes: [u8; 8] = msg
        .try_into()
        .map_err(|_| Failure::other("bench: a wake-up message is not 8 bytes"))?;
    Ok(u64::from_le_bytes(bytes))
}
