//! `waitset-park`: the `channel-park` ping-pong with each side waiting
//! through a wait set of 128 members (its receiver and 127 channels that
//! stay quiet), so that every message is the wake-up of a set of 128
//! parked members. Compared with `channel-park` (a single parked receiver)
//! of the same run.

use std::time::Instant;

use memshare::channel::{Receiver, Sender, WaitStrategy};
use memshare::wait_set::{Token, MAX_MEMBERS};
use memshare::{Segment, WaitSet};

use crate::fail::Failure;

/// One side of the ping-pong: its two channel ends, and its set.
pub struct SetLink {
    tx: Sender,
    rx: Receiver,
    set: WaitSet,
    token: Token,
    /// The quiet members (each a receiver with its sender, never used).
    _quiet: Vec<(Receiver, Sender)>,
}

impl SetLink {
    /// `tx` and `rx` as `channel-park` has them, in a set with 127 quiet
    /// channels.
    fn new(mut tx: Sender, mut rx: Receiver) -> Result<SetLink, Failure> {
        tx.set_wait_strategy(WaitStrategy::Park);
        rx.set_wait_strategy(WaitStrategy::Park);
        let mut set = WaitSet::new()?;
        let mut quiet = Vec::with_capacity(MAX_MEMBERS - 1);
        for _ in 1..MAX_MEMBERS {
            let r = Receiver::create(64)?;
            let s = Sender::attach(r.segment())?;
            set.add(&r)?;
            quiet.push((r, s));
        }
        let token = set.add(&rx)?;
        Ok(SetLink {
            tx,
            rx,
            set,
            token,
            _quiet: quiet,
        })
    }

    /// The benchmark's side: makes the channels, shares them with `cmd`.
    pub fn parent(cmd: &mut std::process::Command) -> Result<SetLink, Failure> {
        use memshare::CommandExt;
        let tx = Sender::create(4096)?;
        let rx = Receiver::create(4096)?;
        cmd.try_share("ping", tx.segment())?;
        cmd.try_share("pong", rx.segment())?;
        SetLink::new(tx, rx)
    }

    /// The peer's side.
    pub fn peer() -> Result<SetLink, Failure> {
        let rx = Receiver::attach(&Segment::inherited("ping")?)?;
        let tx = Sender::attach(&Segment::inherited("pong")?)?;
        SetLink::new(tx, rx)
    }

    /// The next message, waiting through the set while there is none.
    fn receive(&mut self, deadline: Instant) -> Result<Vec<u8>, Failure> {
        loop {
            if let Some(msg) = self.rx.try_recv()? {
                return Ok(msg.to_vec());
            }
            let ready = self
                .set
                .wait_timeout(deadline.saturating_duration_since(Instant::now()))?;
            if ready.is_empty() {
                return Err(Failure::other("bench: the other side stopped answering"));
            }
            if !ready.contains(self.token) {
                return Err(Failure::other(
                    "bench: a quiet member of the wait set was reported",
                ));
            }
        }
    }

    /// One round trip from the benchmark's side: `msg` goes and comes
    /// back.
    pub fn round_trip(&mut self, msg: &[u8], deadline: Instant) -> Result<(), Failure> {
        self.tx.send(msg)?;
        if self.receive(deadline)? != msg {
            return Err(Failure::other("bench: the peer answered the wrong message"));
        }
        Ok(())
    }

    /// Tells the peer to stop.
    pub fn stop_pong(&mut self) -> Result<(), Failure> {
        Ok(self.tx.send(&[])?)
    }

    /// The peer's side: echoes each message (at most `size` bytes) until
    /// told to stop.
    pub fn pong(&mut self, size: usize, deadline: Instant) -> Result<(), Failure> {
        loop {
            let msg = self.receive(deadline)?;
            if msg.is_empty() {
                return Ok(());
            }
            self.tx.send(&msg[..msg.len().min(size)])?;
        }
    }
}
