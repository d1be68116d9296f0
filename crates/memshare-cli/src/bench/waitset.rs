//! `channel-wakeup`, `waitset-wakeup` and `async-wakeup`: the time from a
//! send to a parked receiver holding the message, alone (a channel
//! receiver, park-only waiting), through a wait set of 128 members (the
//! receiver and 127 channels that stay quiet), and as a task parked in
//! `recv_async` (woken by the memshare notifier's thread through its
//! waker, on the benchmark's own thread: see `asynch.rs`). Their raw
//! forms, `raw-wakeup` and `raw-wakeup-waitv`: the stamp in a shared word,
//! the benchmark asleep on a futex word alone, or with 127 more words,
//! each in a segment of its own as a wait set's members are, in one
//! `futex_waitv` (`memshare::sync::wait_many`): what the kernel's wake-up
//! of one word and of 128 costs, with no channel and no wait set. The peer sends
//! a message stamped with the monotonic clock just before the send; the
//! benchmark reads the clock when it holds the message, then acknowledges
//! it, and the peer waits [`GAP`] after the acknowledgement before the
//! next: one message at a time (a benchmark held up by the host never
//! finds a queue of old ones), and the receiver is asleep when it comes.
//! (A ping-pong would not measure this: a side that is
//! slow to fall asleep, as a set of 128 is, often finds the answer before
//! it sleeps.) The ratio of the two medians is issue 14's wait-set floor.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use memshare::channel::{Receiver, Sender, WaitStrategy};
use memshare::wait_set::{Token, MAX_MEMBERS};
use memshare::{CommandExt, Segment, ViewMut, WaitSet};

use super::watch;
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
    /// The raw forms: the stamps come in a shared word, not over `rx`.
    raw: Option<RawWords>,
}

/// How the benchmark's side of a wake-up case waits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// `channel-wakeup`: a receiver parked alone.
    Alone,
    /// `waitset-wakeup`: through a wait set of 128.
    Set,
    /// `async-wakeup`: a task awaiting `recv_async`.
    Async,
    /// `raw-wakeup`: a futex wait on the stamp's word.
    Raw,
    /// `raw-wakeup-waitv`: a wait on that word and 127 quiet ones.
    RawMany,
}

/// The raw forms' words: in the segment both sides map (shared as
/// "words"), the sequence word at byte 0 (bumped, then woken, for each
/// stamp) and the stamp at byte 8; the benchmark's side also maps the
/// quiet words (byte 0 of a segment each) it sleeps on with it.
struct RawWords {
    shared: ViewMut,
    quiet: Vec<ViewMut>,
    /// The sequence word's value when the last stamp was taken.
    seen: u32,
}

impl RawWords {
    fn words(view: &ViewMut) -> Result<(&AtomicU32, &AtomicU64), Failure> {
        Ok((view.atomic_u32(0)?, view.atomic_u64(8)?))
    }

    /// The benchmark's side: sleeps until a new stamp, and returns it.
    fn take(&mut self, deadline: Instant) -> Result<u64, Failure> {
        let (seq, stamp) = Self::words(&self.shared)?;
        loop {
            // Acquire: the stamp, written before the bump.
            let now = seq.load(Ordering::Acquire);
            if now != self.seen {
                self.seen = now;
                return Ok(stamp.load(Ordering::Relaxed));
            }
            // In slices: a peer killed sends nothing more.
            let left = watch::slice(deadline);
            if left.is_zero() {
                return Err(Failure::other("bench: the other side stopped sending"));
            }
            if self.quiet.is_empty() {
                memshare::sync::wait(seq, now, left);
            } else {
                let mut words = Vec::with_capacity(self.quiet.len() + 1);
                words.push((seq, now));
                for view in &self.quiet {
                    let word = view.atomic_u32(0)?;
                    words.push((word, word.load(Ordering::Relaxed)));
                }
                memshare::sync::wait_many(&words, left);
            }
        }
    }

    /// The peer's side: stamps, bumps the word and wakes it.
    fn give(view: &ViewMut) -> Result<(), Failure> {
        let (seq, stamp) = Self::words(view)?;
        stamp.store(now_ns(), Ordering::Relaxed);
        // Release: the stamp, for whoever sees the bump.
        seq.fetch_add(1, Ordering::Release);
        memshare::sync::wake(seq, 1);
        Ok(())
    }
}

impl WakeLink {
    /// The benchmark's side: makes the channels and shares them with `cmd`;
    /// waits as `waiting` says (a wait set of the receiver and 127 quiet
    /// channels; `recv_async`; the raw words, shared too).
    pub fn parent(cmd: &mut std::process::Command, waiting: Waiting) -> Result<WakeLink, Failure> {
        let set = waiting == Waiting::Set;
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
        let raw = if matches!(waiting, Waiting::Raw | Waiting::RawMany) {
            let shared = Segment::create(4096)?;
            cmd.try_share("words", &shared)?;
            let quiet = if waiting == Waiting::RawMany {
                (1..memshare::sync::WAIT_MANY_MAX)
                    .map(|_| Ok(Segment::create(4096)?.map(..)?))
                    .collect::<Result<Vec<_>, Failure>>()?
            } else {
                Vec::new()
            };
            Some(RawWords {
                shared: shared.map(..)?,
                quiet,
                seen: 0,
            })
        } else {
            None
        };
        Ok(WakeLink {
            tx,
            rx,
            set,
            waker: (waiting == Waiting::Async).then(super::asynch::waker),
            _quiet: quiet,
            raw,
        })
    }

    /// The peer's side (`raw`: of a raw form).
    pub fn peer(raw: bool) -> Result<WakeLink, Failure> {
        Ok(WakeLink {
            rx: Receiver::attach(&Segment::inherited("ping")?)?,
            tx: Sender::attach(&Segment::inherited("pong")?)?,
            set: None,
            waker: None,
            _quiet: Vec::new(),
            raw: if raw {
                Some(RawWords {
                    shared: Segment::inherited("words")?.map(..)?,
                    quiet: Vec::new(),
                    seen: 0,
                })
            } else {
                None
            },
        })
    }

    /// Waits for the next message (parked: alone, or through the set) and
    /// returns how long after its stamp this side held it.
    fn wake_up(&mut self, deadline: Instant) -> Result<Duration, Failure> {
        let late = || Failure::other("bench: the other side stopped sending");
        let stamp = loop {
            if let Some(raw) = &mut self.raw {
                break raw.take(deadline)?;
            }
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
            if let Some(raw) = &self.raw {
                RawWords::give(&raw.shared)?;
            } else {
                match self.tx.send(&now_ns().to_le_bytes()) {
                    // The benchmark stopped and went meanwhile.
                    Err(memshare::Error::Disconnected { .. }) => return Ok(()),
                    other => other?,
                }
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
